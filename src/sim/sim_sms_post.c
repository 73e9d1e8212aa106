/*
 * sim_sms_post.c - the SMS side's webhook thread: signed form POSTs (status
 * callbacks to each message's StatusCallback, inbound messages to the
 * account's webhook URL) from a min-heap of due times.
 *
 * One thread owns one curl easy handle (kept alive across posts) and sends
 * one POST at a time, so callbacks leave in due order; a failed POST is
 * retried with backoff, same bytes and same idempotency token, until
 * webhook_retry_s has passed since its first attempt. The queue lock is never
 * held across network I/O.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/crypto.h"
#include "core/ratelimit.h"
#include "sim/sim_heap.h"
#include "sim/sim_sms.h"

#define SMS_RETRY_BASE_US 250000
#define SMS_RETRY_MAX_US 8000000
#define SMS_POST_TIMEOUT_MS 10000L

/* ---------------------------------------------------------------------------
 * Forms and posts
 * ------------------------------------------------------------------------- */

void sms_form_add(struct sms_form *f, const char *name, const char *value)
{
	if (f->oom)
		return;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		char **nn = realloc(f->names, cap * sizeof *nn);
		if (nn)
			f->names = nn;
		char **nv = nn ? realloc(f->values, cap * sizeof *nv) : NULL;
		if (!nn || !nv) {
			f->oom = true;
			return;
		}
		f->values = nv;
		f->cap = cap;
	}
	f->names[f->n] = strdup(name);
	f->values[f->n] = strdup(value ? value : "");
	if (!f->names[f->n] || !f->values[f->n]) {
		free(f->names[f->n]);
		free(f->values[f->n]);
		f->oom = true;
		return;
	}
	f->n++;
}

void sms_form_free(struct sms_form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->names[i]);
		free(f->values[i]);
	}
	free(f->names);
	free(f->values);
	memset(f, 0, sizeof *f);
}

/* Orders parameter indices by name (qsort_r passes the form along). */
static int by_name(const void *a, const void *b, void *ctx)
{
	const struct sms_form *f = ctx;
	return strcmp(f->names[*(const size_t *)a], f->names[*(const size_t *)b]);
}

void sms_sign(const char *token, const char *url, const struct sms_form *f, char out[29])
{
	size_t *idx = malloc((f->n ? f->n : 1) * sizeof *idx);
	size_t total = strlen(url) + 1;
	for (size_t i = 0; i < f->n; i++)
		total += strlen(f->names[i]) + strlen(f->values[i]);
	char *s = malloc(total);
	if (!idx || !s) {
		free(idx);
		free(s);
		out[0] = '\0';
		return;
	}
	for (size_t i = 0; i < f->n; i++)
		idx[i] = i;
	qsort_r(idx, f->n, sizeof *idx, by_name, (void *)f);
	size_t k = strlen(url);
	memcpy(s, url, k);
	for (size_t i = 0; i < f->n; i++) {
		size_t nl = strlen(f->names[idx[i]]), vl = strlen(f->values[idx[i]]);
		memcpy(s + k, f->names[idx[i]], nl);
		memcpy(s + k + nl, f->values[idx[i]], vl);
		k += nl + vl;
	}
	hr_hmac_sha1_b64(token, strlen(token), s, k, out);
	free(idx);
	free(s);
}

/* name=value&... with every value percent-encoded by curl. */
static char *form_encode(const struct sms_form *f, size_t *len)
{
	size_t cap = 64, n = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	out[0] = '\0';
	for (size_t i = 0; i < f->n; i++) {
		char *v = curl_easy_escape(NULL, f->values[i], (int)strlen(f->values[i]));
		if (!v) {
			free(out);
			return NULL;
		}
		size_t need = n + strlen(f->names[i]) + strlen(v) + 3;
		if (need > cap) {
			while (cap < need)
				cap *= 2;
			char *o = realloc(out, cap);
			if (!o) {
				curl_free(v);
				free(out);
				return NULL;
			}
			out = o;
		}
		n += (size_t)sprintf(out + n, "%s%s=%s", i ? "&" : "", f->names[i], v);
		curl_free(v);
	}
	*len = n;
	return out;
}

/* Headers of a webhook: the body type, the signature and the token. */
static struct curl_slist *post_headers(const char *sig, const char *token)
{
	char sh[80], th[80];
	snprintf(sh, sizeof sh, "X-Twilio-Signature: %s", sig);
	snprintf(th, sizeof th, "I-Twilio-Idempotency-Token: %s", token);
	const char *lines[] = {"Content-Type: application/x-www-form-urlencoded", sh, th,
	                       "Expect:", NULL};
	struct curl_slist *h = NULL;
	for (int i = 0; lines[i]; i++) {
		struct curl_slist *n = curl_slist_append(h, lines[i]);
		if (!n) {
			curl_slist_free_all(h);
			return NULL;
		}
		h = n;
	}
	return h;
}

struct sms_post *sms_post_new(const char *url, const struct sms_form *f, const char *token)
{
	if (f->oom)
		return NULL;
	struct sms_post *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->acct = -1;
	char sig[29], idem[40];
	sms_sign(token, url, f, sig);
	unsigned char rnd[16];
	hr_random_bytes(rnd, sizeof rnd);
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(idem + 2 * i, 3, "%02x", rnd[i]);
	p->url = strdup(url);
	p->body = form_encode(f, &p->len);
	p->headers = sig[0] ? post_headers(sig, idem) : NULL;
	if (!p->url || !p->body || !p->headers) {
		sms_post_free(p);
		return NULL;
	}
	return p;
}

struct sms_post *sms_post_dup(const struct sms_post *src)
{
	struct sms_post *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	*p = *src;
	p->url = strdup(src->url);
	p->body = malloc(src->len + 1);
	p->headers = NULL;
	for (struct curl_slist *h = src->headers; h; h = h->next) {
		struct curl_slist *n = curl_slist_append(p->headers, h->data);
		if (!n) {
			curl_slist_free_all(p->headers);
			p->headers = NULL;
			break;
		}
		p->headers = n;
	}
	if (!p->url || !p->body || !p->headers) {
		sms_post_free(p);
		return NULL;
	}
	memcpy(p->body, src->body, src->len + 1);
	return p;
}

void sms_post_free(struct sms_post *p)
{
	if (!p)
		return;
	free(p->url);
	free(p->body);
	curl_slist_free_all(p->headers);
	free(p);
}

/* ---------------------------------------------------------------------------
 * The queue and the thread
 * ------------------------------------------------------------------------- */

struct sms_ev {
	int64_t due;
	uint64_t seq;
	struct sms_post *post;
};

struct sms_sched {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	struct sms_ev *heap;
	size_t n, cap;
	uint64_t seq;
	bool stop;
	pthread_t thread;
	bool started;
	CURL *easy;
};

/* Due first, then in push order. */
static bool ev_less(const void *pa, const void *pb)
{
	const struct sms_ev *a = pa, *b = pb;
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_up(struct sms_ev *h, size_t i)
{
	sim_heap_up(h, sizeof *h, i, ev_less);
}

static void heap_down(struct sms_ev *h, size_t n, size_t i)
{
	sim_heap_down(h, sizeof *h, n, i, ev_less);
}

void sms_sched_push(struct sim *s, struct sms_post *p, int64_t due)
{
	struct sms_sched *q = s->sms ? s->sms->sched : NULL;
	if (!p)
		return;
	if (!q) {
		sms_post_free(p);
		return;
	}
	/* Counted before the push: once pushed, p may be sent and freed at once. */
	bool first = p->attempts == 0;
	if (first)
		atomic_fetch_add(&s->stats.wh_pending, 1);
	bool pushed = false;
	pthread_mutex_lock(&q->lock);
	if (!q->stop && q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 256;
		struct sms_ev *h = realloc(q->heap, cap * sizeof *h);
		if (h) {
			q->heap = h;
			q->cap = cap;
		}
	}
	if (!q->stop && q->n < q->cap) {
		q->heap[q->n] = (struct sms_ev){.due = due, .seq = q->seq++, .post = p};
		heap_up(q->heap, q->n++);
		pushed = true;
		if (q->heap[0].post == p)
			pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
	if (!pushed) {
		hr_log(HR_LOG_WARN, "sim",
		       "sms: a webhook was dropped (stopping or out of memory)");
		atomic_fetch_sub(&s->stats.wh_pending, 1);
		atomic_fetch_add(&s->stats.wh_dropped, 1);
		sms_post_free(p);
	}
}

/* Sends one POST; true on a 2xx. */
static bool post_once(struct sms_sched *q, const struct sms_post *p, char *why, size_t whyn)
{
	CURL *e = q->easy;
	curl_easy_reset(e);
	CURLcode rc = sim_post_setup(e, p->url, p->body, p->len, p->headers, "TwilioProxy/1.1",
	                             SMS_POST_TIMEOUT_MS, 3000L);
	if (rc != CURLE_OK) {
		snprintf(why, whyn, "cannot set up the transfer: %s", curl_easy_strerror(rc));
		return false;
	}
	rc = curl_easy_perform(e);
	long status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK)
		snprintf(why, whyn, "%s", curl_easy_strerror(rc));
	else
		snprintf(why, whyn, "HTTP %ld", status);
	return rc == CURLE_OK && status >= 200 && status < 300;
}

/* Posts one due event and settles its counters; retries go back on the heap. */
static void deliver(struct sim *s, struct sms_post *p)
{
	struct sms_sched *q = s->sms->sched;
	if (!p->attempts)
		sms_on_post(s, p);
	if (p->silent) {
		atomic_fetch_add(&s->stats.wh_dropped, 1);
		atomic_fetch_sub(&s->stats.wh_pending, 1);
		sms_post_free(p);
		return;
	}
	if (!p->first_at)
		p->first_at = hr_mono_us();
	char why[128];
	bool ok = post_once(q, p, why, sizeof why);
	p->attempts++;
	if (ok) {
		atomic_fetch_add(&s->stats.wh_posted, 1);
		atomic_fetch_add(p->status[0] ? &s->stats.wh_statuses : &s->stats.wh_inbound, 1);
		atomic_fetch_sub(&s->stats.wh_pending, 1);
		sms_post_free(p);
		return;
	}
	atomic_fetch_add(&s->stats.wh_failed, 1);
	int64_t now = hr_mono_us();
	int64_t delay =
	    backoff_delay_us(p->attempts, SMS_RETRY_BASE_US, SMS_RETRY_MAX_US, hr_random_unit());
	if (now + delay - p->first_at <= (int64_t)(sms_retry_window_s(s) * 1e6)) {
		hr_log(HR_LOG_DEBUG, "sim", "sms webhook to %s failed (%s), retry %d in %lld ms",
		       p->url, why, p->attempts, (long long)(delay / 1000));
		sms_sched_push(s, p, now + delay);
		return;
	}
	hr_log(HR_LOG_WARN, "sim", "sms webhook to %s given up after %d attempts (%s)", p->url,
	       p->attempts, why);
	atomic_fetch_add(&s->stats.wh_dropped, 1);
	atomic_fetch_sub(&s->stats.wh_pending, 1);
	sms_post_free(p);
}

static void *sms_thread(void *arg)
{
	struct sim *s = arg;
	struct sms_sched *q = s->sms->sched;
	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		if (q->n == 0) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		int64_t now = hr_mono_us();
		if (q->heap[0].due > now) {
			int64_t due = q->heap[0].due;
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000),
			                      .tv_nsec = (long)(due % 1000000) * 1000};
			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
			continue;
		}
		struct sms_post *p = q->heap[0].post;
		q->heap[0] = q->heap[--q->n];
		heap_down(q->heap, q->n, 0);
		pthread_mutex_unlock(&q->lock);
		deliver(s, p);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int sms_sched_start(struct sim *s, struct hr_err *err)
{
	struct sms_sched *q = calloc(1, sizeof *q);
	if (!q)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->sms->sched = q;
	if (!(q->easy = curl_easy_init()))
		return hr_fail(err, HR_EINTERNAL, NULL, "curl_easy_init failed");
	if (pthread_create(&q->thread, NULL, sms_thread, s))
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the sms webhook thread");
	pthread_setname_np(q->thread, "sim-sms");
	q->started = true;
	return 0;
}

void sms_sched_stop(struct sim *s)
{
	struct sms_sched *q = s->sms ? s->sms->sched : NULL;
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (q->started)
		pthread_join(q->thread, NULL);
	for (size_t i = 0; i < q->n; i++)
		sms_post_free(q->heap[i].post);
	free(q->heap);
	if (q->easy)
		curl_easy_cleanup(q->easy);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
	s->sms->sched = NULL;
}
