/*
 * reconciler.c - the reconciler's thread (reconciler.h): when to look, and
 * the provider lookups. What a finding does to a message is the store's
 * rule (lc_reconcile.c); this file never changes a status itself.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch/reconciler.h"

/* The most a lookup answer may be: Twilio's Message resource is ~2 KB. */
#define LOOKUP_RESP_MAX (64 * 1024)

struct reconciler {
	struct store *st;
	struct account_set *accounts;
	struct reconcile_opts o;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

void reconcile_opts_default(struct reconcile_opts *o)
{
	memset(o, 0, sizeof *o);
	o->interval_us = 1000000;
	o->batch = 500;
	o->inbox_park_after_us = 3600LL * 1000000;
	o->lookup_timeout_us = 5000000;
	o->lookup_budget_us = 2000000;
	static const char *const chans[] = {"whatsapp", "sms", "rcs"};
	for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++)
		reconcile_opts_stale(o, chans[i], 86400LL * 1000000);
}

int reconcile_opts_stale(struct reconcile_opts *o, const char *channel, int64_t after_us)
{
	for (size_t i = 0; i < o->nstale; i++)
		if (strcmp(o->stale[i].channel, channel) == 0) {
			o->stale[i].after_us = after_us;
			return 0;
		}
	if (o->nstale == RECONCILE_CHANNELS_MAX || strlen(channel) >= sizeof o->stale[0].channel)
		return HR_EINVAL;
	hr_strlcpy(o->stale[o->nstale].channel, channel, sizeof o->stale[0].channel);
	o->stale[o->nstale++].after_us = after_us;
	return 0;
}

/* ---- lookups ---------------------------------------------------------------- */

struct body {
	char *p;
	size_t len;
	bool truncated;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;
	if (b->len + n > LOOKUP_RESP_MAX) {
		b->truncated = true;
		return 0; /* stops the transfer: never act on half an answer */
	}
	char *p = realloc(b->p, b->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, data, n);
	b->p = p;
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

/* Asks the provider about one SENT message (blocking, bounded by
 * lookup_timeout) and fills a. Without a lookup, or when the request
 * cannot be made, a says why and is not answered. */
static void lookup_one(const struct reconcile_opts *o, const struct channel_account *acct,
                       const struct message *m, struct stale_answer *a)
{
	memset(a, 0, sizeof *a);
	hr_strlcpy(a->message_id, m->id, sizeof a->message_id);
	if (!acct || !acct->ops->build_lookup || !acct->ops->parse_lookup)
		return; /* no lookup on this channel: marked stale */
	struct http_req req;
	struct hr_err err = {0};
	if (acct->ops->build_lookup(acct, m->provider_id, &req, &err)) {
		snprintf(a->lookup_error, sizeof a->lookup_error, "%s", err.msg);
		return;
	}
	CURL *e = curl_easy_init();
	struct body b = {0};
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	int rc =
	    e ? http_req_setopts(e, &req, (long)(o->lookup_timeout_us / 1000), &err) : HR_ENOMEM;
	CURLcode cc = CURLE_OK;
	if (rc == 0) {
		/* http_req_setopts makes a POST; a lookup is a GET. */
		cc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		if (cc == CURLE_OK)
			cc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		if (cc == CURLE_OK)
			cc = curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
		if (cc == CURLE_OK)
			cc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
		if (cc == CURLE_OK)
			cc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		if (cc == CURLE_OK)
			cc = curl_easy_perform(e);
		if (cc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	}
	if (rc)
		snprintf(a->lookup_error, sizeof a->lookup_error, "%s",
		         err.msg[0] ? err.msg : "cannot start an HTTP transfer");
	else if (cc != CURLE_OK)
		snprintf(a->lookup_error, sizeof a->lookup_error, "%s",
		         b.truncated ? "the answer was too large"
		         : errbuf[0] ? errbuf
		                     : curl_easy_strerror(cc));
	else
		acct->ops->parse_lookup(acct, status, b.p ? b.p : "", b.len, a);
	if (e)
		curl_easy_cleanup(e);
	free(b.p);
	http_req_clear(&req);
}

/* The stale SENT messages of one channel: looked up where the provider
 * can be asked, then settled by the store's rule. */
static void stale_channel(struct store *st, struct account_set *accounts,
                          const struct reconcile_opts *o, const char *channel, int64_t after_us)
{
	struct message *v = NULL;
	size_t n = 0;
	int rc = st->ops->stale_list(st, channel, hr_now_us() - after_us, o->batch, &v, &n);
	if (rc) {
		hr_log(HR_LOG_WARN, "reconciler", "stale %s messages not read: %s", channel,
		       hr_code_name(rc));
		return;
	}
	if (n == 0)
		return;
	struct stale_answer *a = calloc(n, sizeof *a);
	if (a) {
		/* Lookups are blocking round trips: a pass spends at most
		 * lookup_budget on them, so lease expiry and the other scans of
		 * this thread are never held up for long; what is left is
		 * settled by the next pass. */
		int64_t t0 = hr_mono_us();
		size_t done = 0;
		for (; done < n; done++) {
			const struct channel_account *acct =
			    account_set_find(accounts, v[done].account_id);
			if (acct && acct->ops->build_lookup && done > 0 &&
			    hr_mono_us() - t0 > o->lookup_budget_us)
				break;
			lookup_one(o, acct, &v[done], &a[done]);
		}
		struct stale_stats ss;
		if ((rc = st->ops->stale_settle(st, a, done, &ss)))
			hr_log(HR_LOG_WARN, "reconciler", "stale %s messages not settled: %s",
			       channel, hr_code_name(rc));
		else if (ss.applied || ss.marked)
			hr_log(
			    HR_LOG_INFO, "reconciler",
			    "%s: %d stale message(s) settled by lookup, %d marked stale, %d fell "
			    "back",
			    channel, ss.applied, ss.marked, ss.fallbacks);
	}
	free(a);
	for (size_t i = 0; i < n; i++)
		message_clear(&v[i]);
	free(v);
}

void reconciler_pass(struct store *st, struct account_set *accounts, const struct reconcile_opts *o)
{
	int n = 0, rc;
	if ((rc = st->ops->requeue_expired(st, 0, &n)))
		hr_log(HR_LOG_WARN, "reconciler", "lease expiry: %s", hr_code_name(rc));
	else if (n)
		hr_log(HR_LOG_WARN, "reconciler", "%d message(s) whose lease expired", n);
	if ((rc = st->ops->reconcile_expire(st, 0, o->batch, &n)))
		hr_log(HR_LOG_WARN, "reconciler", "expiry: %s", hr_code_name(rc));
	else if (n)
		hr_log(HR_LOG_INFO, "reconciler", "%d queued message(s) expired", n);
	if ((rc = st->ops->reconcile_fallback_due(st, 0, o->batch, &n)))
		hr_log(HR_LOG_WARN, "reconciler", "fallback deadlines: %s", hr_code_name(rc));
	else if (n)
		hr_log(HR_LOG_INFO, "reconciler", "%d message(s) fell back: no receipt in time", n);
	for (size_t i = 0; i < o->nstale; i++)
		if (o->stale[i].after_us > 0)
			stale_channel(st, accounts, o, o->stale[i].channel, o->stale[i].after_us);
	if (o->inbox_park_after_us > 0 &&
	    (rc = st->ops->inbox_park(st, hr_now_us() - o->inbox_park_after_us, o->batch, &n)))
		hr_log(HR_LOG_WARN, "reconciler", "parking webhooks: %s", hr_code_name(rc));
}

static void *reconcile_main(void *arg)
{
	struct reconciler *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		pthread_mutex_unlock(&r->mu);
		reconciler_pass(r->st, r->accounts, &r->o);
		pthread_mutex_lock(&r->mu);
		if (r->stop)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t ns = ts.tv_nsec + (r->o.interval_us % 1000000) * 1000;
		ts.tv_sec += (time_t)(r->o.interval_us / 1000000 + ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int reconciler_start(struct store *st, struct account_set *accounts, const struct reconcile_opts *o,
                     struct reconciler **out, struct hr_err *err)
{
	*out = NULL;
	if (o->interval_us <= 0 || o->batch <= 0)
		return hr_fail(err, HR_EINVAL, "reconcile.interval_ms",
		               "the reconciler needs a positive interval and batch");
	struct reconciler *r = calloc(1, sizeof *r);
	if (!r)
		return hr_fail(err, HR_ENOMEM, "reconciler", "out of memory");
	r->st = st;
	r->accounts = accounts;
	r->o = *o;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&r->th, NULL, reconcile_main, r) != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return hr_fail(err, HR_EINTERNAL, "reconciler",
		               "cannot start the reconciler thread");
	}
	*out = r;
	return 0;
}

void reconciler_stop(struct reconciler *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->th, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
