/*
 * secret_watch.c - secret rotation without a restart (channel.h).
 *
 * Why polling and not inotify: secrets are usually mounted files that are
 * replaced by a rename or a symlink swap (Kubernetes' ..data), which an
 * inotify watch on the old inode misses, and inotify says nothing on NFS
 * or FUSE mounts. A stat per file: reference per pass costs about a
 * microsecond each, on the watcher's own thread: 1,000 accounts with three
 * file references each are 3,000 stats every server.secret_check_ms (5 s by
 * default). The send path never reads a file: the dispatcher only sees a
 * new account pointer in the set (account_set_replace), exactly as for an
 * account re-registered through the API.
 *
 * The fingerprint is taken before the files are read (channel_account_new
 * _policy), so a change between the stat and the read is seen on the next
 * pass (one extra reload), never missed. When the metadata changed, the
 * content is compared too (a SHA-256 taken at load, after the fingerprint
 * and before the adapter's own read): a file that was only touched, or
 * rewritten with the same secret, reloads nothing, so retired accounts
 * (kept for the process's life) grow with real rotations only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "channels/channel.h"

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL
/* How many replaced accounts' secrets a webhook may be tried with. */
#define VERIFY_DEPTH 4

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * FNV_PRIME;
	return h;
}

static uint64_t fnv_i64(uint64_t h, int64_t v)
{
	return fnv(h, &v, sizeof v);
}

uint64_t channel_secret_fingerprint(const struct channel_account *a)
{
	uint64_t h = FNV_OFFSET;
	for (const char *const *f = a && a->ops ? a->ops->secret_fields : NULL; f && *f; f++) {
		const char *ref = json_string_value(json_object_get(a->config, *f));
		if (!ref || strncmp(ref, "file:", 5) != 0)
			continue;
		h = fnv(h, *f, strlen(*f) + 1);
		struct stat st;
		if (stat(ref + 5, &st) != 0) {
			h = fnv_i64(h, -(int64_t)errno);
			continue;
		}
		h = fnv_i64(h, (int64_t)st.st_dev);
		h = fnv_i64(h, (int64_t)st.st_ino);
		h = fnv_i64(h, (int64_t)st.st_size);
		h = fnv_i64(h, (int64_t)st.st_mtim.tv_sec);
		h = fnv_i64(h, (int64_t)st.st_mtim.tv_nsec);
		h = fnv_i64(h, (int64_t)st.st_ctim.tv_sec);
		h = fnv_i64(h, (int64_t)st.st_ctim.tv_nsec);
	}
	return h;
}

bool channel_secret_sum(const struct channel_account *a, unsigned char out[32])
{
	memset(out, 0, 32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
	for (const char *const *f = a && a->ops ? a->ops->secret_fields : NULL; ok && f && *f;
	     f++) {
		const char *ref = json_string_value(json_object_get(a->config, *f));
		if (!ref || strncmp(ref, "file:", 5) != 0)
			continue;
		char *v = NULL;
		struct hr_err err;
		hr_err_clear(&err);
		int rc = channel_cfg_secret(a, *f, false, &v, &err);
		ok = EVP_DigestUpdate(ctx, *f, strlen(*f) + 1) == 1 &&
		     (rc == 0 && v ? EVP_DigestUpdate(ctx, v, strlen(v) + 1)
		                   : EVP_DigestUpdate(ctx, &rc, sizeof rc)) == 1;
		hr_secret_free(v);
	}
	unsigned int n = 0;
	ok = ok && EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Whether any declared secret of a is a file: reference (only those can
 * change under a running process). */
static bool has_file_refs(const struct channel_account *a)
{
	for (const char *const *f = a->ops ? a->ops->secret_fields : NULL; f && *f; f++) {
		const char *ref = json_string_value(json_object_get(a->config, *f));
		if (ref && strncmp(ref, "file:", 5) == 0)
			return true;
	}
	return false;
}

/* Loads a fresh copy of a from its own config (the same row it was made
 * from), which resolves its secrets again. */
static int reload(struct account_set *s, const struct channel_account *a,
                  struct channel_account **out, struct hr_err *err)
{
	struct account_row row;
	memset(&row, 0, sizeof row);
	hr_strlcpy(row.id, a->id, sizeof row.id);
	hr_strlcpy(row.tenant_id, a->tenant_id, sizeof row.tenant_id);
	hr_strlcpy(row.channel, a->ops->name, sizeof row.channel);
	hr_strlcpy(row.unit_id, a->unit, sizeof row.unit_id);
	row.api_created = a->restricted;
	row.config = json_dumps(a->config, JSON_COMPACT);
	if (!row.config)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	int rc = channel_account_new_policy(&row, s->policy, out, err);
	free(row.config);
	return rc;
}

void account_set_rotate(struct account_set *s, size_t *reloaded, size_t *failed)
{
	size_t nr = 0, nf = 0;
	struct channel_account *a;
	/* By index: the set never shrinks, and a replaced entry keeps its
	 * place, so every account is visited once per pass. */
	for (size_t i = 0; (a = account_set_at(s, i)) != NULL; i++) {
		if (!a->ops || !has_file_refs(a))
			continue;
		uint64_t fp = channel_secret_fingerprint(a);
		if (fp == a->secret_fp || fp == a->retry_fp)
			continue;
		/* The files were touched: reload only if what they hold changed
		 * (every reload retires an account for the process's life). */
		unsigned char sum[32];
		if (a->has_sum && channel_secret_sum(a, sum) &&
		    memcmp(sum, a->secret_sum, 32) == 0) {
			a->retry_fp = fp;
			continue;
		}
		struct hr_err err;
		hr_err_clear(&err);
		struct channel_account *na = NULL;
		int rc = reload(s, a, &na, &err);
		if (rc == 0 && (rc = account_set_replace(s, a, na)) != 0) {
			channel_account_free(na);
			/* HR_ECONFLICT: replaced meanwhile (an API update), and the
			 * new one read the files itself. */
			if (rc == HR_ECONFLICT)
				continue;
			hr_fail(&err, rc, NULL, "cannot publish the reloaded account");
		}
		if (rc) {
			/* Keep sending with the secrets it has; say so once per change.
			 * The message names the field, never what it holds. */
			a->retry_fp = fp;
			nf++;
			hr_log(
			    HR_LOG_WARN, "secrets",
			    "account %s: a secret file changed but the account does not load with "
			    "it, so it keeps its previous secrets: %s",
			    a->id, err.msg);
			continue;
		}
		nr++;
		if (s->grace_us > 0)
			hr_log(HR_LOG_INFO, "secrets",
			       "account %s: secret file changed; reloaded (the previous secrets "
			       "verify webhooks for %lld s more)",
			       a->id, (long long)(s->grace_us / 1000000));
		else
			hr_log(HR_LOG_INFO, "secrets", "account %s: secret file changed; reloaded",
			       a->id);
	}
	if (reloaded)
		*reloaded = nr;
	if (failed)
		*failed = nf;
}

int channel_webhook_verify_rotating(const struct channel_account *a, const struct wh_request *req,
                                    int64_t now, bool *by_prev, struct hr_err *err)
{
	if (by_prev)
		*by_prev = false;
	int rc = a->ops->webhook_verify(a, req, err);
	if (rc != HR_EAUTH)
		return rc;
	const struct channel_account *cur = a;
	for (int d = 0; d < VERIFY_DEPTH && cur->prev && now < cur->prev_until; d++) {
		const struct channel_account *p = cur->prev;
		struct hr_err perr;
		hr_err_clear(&perr);
		if (p->ops == a->ops && p->ops->webhook_verify(p, req, &perr) == 0) {
			if (by_prev)
				*by_prev = true;
			hr_err_clear(err);
			return 0;
		}
		cur = p;
	}
	return rc;
}

/* ---- the watcher thread ---- */

struct secret_watch {
	struct account_set *set;
	int64_t interval_us;
	void (*on_change)(void *);
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;
};

static void *watch_main(void *p)
{
	struct secret_watch *w = p;
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		int64_t ns = (int64_t)until.tv_nsec + (w->interval_us % 1000000) * 1000;
		until.tv_sec += (time_t)(w->interval_us / 1000000 + ns / 1000000000);
		until.tv_nsec = (long)(ns % 1000000000);
		while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
			;
		if (w->stop)
			break;
		pthread_mutex_unlock(&w->mu);
		size_t n = 0;
		account_set_rotate(w->set, &n, NULL);
		if (n > 0 && w->on_change)
			w->on_change(w->arg);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int secret_watch_start(struct account_set *s, int64_t interval_us, void (*on_change)(void *),
                       void *arg, struct secret_watch **out, struct hr_err *err)
{
	*out = NULL;
	if (interval_us < 10000)
		return hr_fail(err, HR_EINVAL, "server.secret_check_ms",
		               "server.secret_check_ms must be at least 10");
	struct secret_watch *w = calloc(1, sizeof *w);
	if (!w)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	w->set = s;
	w->interval_us = interval_us;
	w->on_change = on_change;
	w->arg = arg;
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc == 0) {
		rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		if (rc == 0)
			rc = pthread_cond_init(&w->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (rc != 0) {
		free(w);
		return hr_fail(err, HR_EINTERNAL, NULL,
		               "cannot make the secret watcher's condition");
	}
	pthread_mutex_init(&w->mu, NULL);
	if ((rc = pthread_create(&w->thread, NULL, watch_main, w)) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the secret watcher: %s",
		               strerror(rc));
	}
	*out = w;
	return 0;
}

void secret_watch_stop(struct secret_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
