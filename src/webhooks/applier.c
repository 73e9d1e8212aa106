/*
 * applier.c - works through the webhook inbox. The ingress only verified and
 * stored raw events; here each is parsed by its channel adapter and a whole
 * batch of rows is applied in one store transaction, so a spike of webhooks
 * costs one commit per few hundred events rather than one per event.
 *
 * Thread "applier" owns everything here except `wake` (notify from any thread).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "obs/metrics.h"
#include "webhooks/applier.h"

#define RETRY_POLL_US 200000      /* rows waiting for a retry are re-checked this often */
/* How long a claimed inbox row stays out of other appliers' reach; applying
 * takes milliseconds, so this only matters when an applier died. */
#define APPLIER_LEASE_US (30 * 1000000LL)
#define FOLLOWUP_TIMEOUT_MS 5000L /* a follow-up request's whole time */

struct applier {
	struct store *st;
	struct account_set *accounts;
	int batch;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool wake;
	atomic_bool stop;
};

static size_t discard(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p, (void)arg;
	return size * nmemb;
}

/*
 * Makes one follow-up request an adapter asked for (Telegram's
 * answerCallbackQuery), after its events are committed. Bounded: a provider
 * that does not answer within 5 s costs one log line, never the inbox. A
 * follow-up is a courtesy to the user's client (a spinner stops); losing one
 * on a crash is acceptable, so it is not queued durably, and one libcurl
 * refused to set up is logged and dropped, never sent half-configured. The
 * log never shows the URL: Telegram's carries the bot token.
 */
static void followup(const struct http_req *r)
{
	struct hr_err err = {0};
	CURL *c = curl_easy_init();
	int rc = c ? http_req_setopts(c, r, FOLLOWUP_TIMEOUT_MS, &err)
	           : hr_fail(&err, HR_ENOMEM, NULL, "libcurl could not make a handle");
	CURLcode cc = CURLE_OK;
	if (rc == 0 && (cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard)) != CURLE_OK)
		rc = hr_fail(&err, HR_EINTERNAL, NULL, "libcurl refused CURLOPT_WRITEFUNCTION: %s",
		             curl_easy_strerror(cc));
	if (rc) {
		hr_log(HR_LOG_WARN, "applier", "follow-up request not sent: %s", err.msg);
		curl_easy_cleanup(c);
		return;
	}
	cc = curl_easy_perform(c);
	long status = 0;
	if (cc == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	if (cc != CURLE_OK || status < 200 || status >= 300)
		hr_log(HR_LOG_WARN, "applier", "follow-up request failed: %s (HTTP %ld)",
		       curl_easy_strerror(cc), status);
	curl_easy_cleanup(c);
}

/* Parses and applies one fetched batch; returns how many rows it handled. */
static size_t apply_batch(struct applier *a, struct inbox_row *rows, size_t n)
{
	struct inbox_parsed *parsed = calloc(n, sizeof *parsed);
	struct wh_parsed *events = calloc(n, sizeof *events);
	if (!parsed || !events)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct inbox_parsed *p = &parsed[i];
		p->inbox_id = rows[i].id;
		p->account_id = rows[i].account_id;
		struct channel_account *acct = account_set_find(a->accounts, rows[i].account_id);
		if (!acct) {
			p->malformed = true;
			snprintf(p->error, sizeof p->error, "unknown account %.63s",
			         rows[i].account_id);
			continue;
		}
		struct hr_err err = {0};
		if (acct->ops->webhook_parse(acct, rows[i].body, rows[i].body_len, &events[i],
		                             &err) != 0) {
			p->malformed = true;
			snprintf(p->error, sizeof p->error, "%.90s%s%.150s", err.field,
			         err.field[0] ? ": " : "", err.msg);
			continue;
		}
		p->statuses = events[i].statuses;
		p->nstatuses = events[i].nstatuses;
		p->inbound = events[i].inbound;
		p->ninbound = events[i].ninbound;
	}
	struct apply_stats stats = {0};
	int rc = a->st->ops->apply_inbox(a->st, parsed, n, 0, &stats);
	if (rc != 0) {
		hr_log(HR_LOG_ERROR, "applier", "applying %zu inbox rows failed: %s", n,
		       hr_code_name(rc));
	} else {
		/* Attribute to the first row's channel: an inbox batch is almost
		 * always one channel, and per-event attribution would cost a
		 * second pass for a metric. */
		const char *ch = rows[0].channel;
		metrics_webhook(ch, M_WH_APPLIED, stats.applied);
		metrics_webhook(ch, M_WH_IGNORED, stats.ignored);
		metrics_webhook(ch, M_WH_INBOUND, stats.inbound);
		if (stats.malformed)
			hr_log(HR_LOG_WARN, "applier", "%d malformed webhook rows marked failed",
			       stats.malformed);
	}
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < events[i].nfollowups; k++)
				followup(&events[i].followups[k]);
	for (size_t i = 0; i < n; i++)
		wh_parsed_clear(&events[i]);
	free(events);
	free(parsed);
	return rc == 0 ? n : 0;
}

static void *applier_main(void *arg)
{
	struct applier *a = arg;
	while (!atomic_load(&a->stop)) {
		struct inbox_row *rows = NULL;
		size_t n = 0;
		/* Claimed, not just read: another applier (a second process on a
		 * shared database) skips these rows until the lease ends, and if
		 * this process dies they come back to someone else then. */
		int rc = a->st->ops->inbox_claim(a->st, 0, APPLIER_LEASE_US, a->batch,
		                                 &rows, &n);
		size_t done = 0;
		if (rc == 0 && n > 0)
			done = apply_batch(a, rows, n);
		for (size_t i = 0; i < n; i++)
			inbox_row_clear(&rows[i]);
		free(rows);
		if (done == (size_t)a->batch)
			continue; /* more may be waiting */

		/* Sleep until notified, or until rows waiting for a retry may be due. */
		pthread_mutex_lock(&a->lock);
		if (!a->wake && !atomic_load(&a->stop)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns =
			    ts.tv_nsec + (int64_t)(rc == 0 ? RETRY_POLL_US : 1000000) * 1000;
			ts.tv_sec += ns / 1000000000;
			ts.tv_nsec = ns % 1000000000;
			pthread_cond_timedwait(&a->cond, &a->lock, &ts);
		}
		a->wake = false;
		pthread_mutex_unlock(&a->lock);
	}
	return NULL;
}

int applier_start(struct store *st, struct account_set *accounts, int batch, struct applier **out,
                  struct hr_err *err)
{
	struct applier *a = calloc(1, sizeof *a);
	if (!a)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	a->st = st;
	a->accounts = accounts;
	a->batch = batch > 0 ? batch : 500;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	if (pthread_create(&a->thread, NULL, applier_main, a) == 0) {
		pthread_setname_np(a->thread, "herald-applier");
	} else {
		free(a);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the applier thread");
	}
	*out = a;
	return 0;
}

void applier_notify(struct applier *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	if (!a->wake) {
		a->wake = true;
		pthread_cond_signal(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
}

void applier_stop(struct applier *a)
{
	if (!a)
		return;
	atomic_store(&a->stop, true);
	applier_notify(a);
	pthread_join(a->thread, NULL);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}
