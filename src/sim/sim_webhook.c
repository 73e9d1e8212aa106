/*
 * sim_webhook.c - the schedule and the webhook thread.
 *
 * Everything the simulator does later goes through one min-heap of events
 * (status webhooks due, suspended connections to resume, webhook POSTs to
 * retry). Request threads push under sched_lock; the webhook thread pops what
 * is due, packs statuses per account into POSTs (up to webhook_batch each),
 * signs them and sends them with a curl multi handle, retrying failures with
 * backoff until webhook_retry_s has passed since the first attempt. The lock
 * is never held across network I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/ratelimit.h"
#include "sim/sim_heap.h"
#include "sim/sim_int.h"

#define SIM_POP_MAX 4096        /* events handled per loop turn */
#define SIM_PACK_WINDOW_US 5000 /* with webhook_batch > 1, gather this far ahead */
#define SIM_RETRY_BASE_US 250000
#define SIM_RETRY_MAX_US 8000000
#define SIM_POST_TIMEOUT_MS 10000L

/* ---------------------------------------------------------------------------
 * Messages and posts
 * ------------------------------------------------------------------------- */

struct sim_msg *sim_msg_new(int acct, const char *wamid, const char *to, const char *cb,
                            bool is_template, struct sim_rng *rng)
{
	size_t wl = strlen(wamid) + 1, tl = strlen(to) + 1, cl = cb ? strlen(cb) + 1 : 0;
	struct sim_msg *m = malloc(sizeof *m + wl + tl + cl);
	if (!m)
		return NULL;
	atomic_init(&m->refs, 1);
	m->acct = acct;
	memcpy(m->buf, wamid, wl);
	memcpy(m->buf + wl, to, tl);
	m->wamid = m->buf;
	m->to = m->buf + wl;
	m->cb = NULL;
	if (cb) {
		memcpy(m->buf + wl + tl, cb, cl);
		m->cb = m->buf + wl + tl;
	}
	m->category = is_template ? "utility" : "service";
	m->busy = 0;
	m->deferred = NULL;
	m->deferred_tail = &m->deferred;
	m->after_read = NULL;
	m->read_packed = false;
	snprintf(m->conv_id, sizeof m->conv_id, "%016llx%016llx",
	         (unsigned long long)sim_rng_next(rng), (unsigned long long)sim_rng_next(rng));
	return m;
}

/* A status event waiting for an earlier status of its message. It holds no
 * reference: the POST that keeps the message busy does. */
struct sim_deferred {
	struct sim_event ev;
	struct sim_deferred *next;
};

void sim_msg_unref(struct sim_msg *m)
{
	if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	while (m->deferred) { /* only at shutdown: a busy message is still referenced */
		struct sim_deferred *d = m->deferred;
		m->deferred = d->next;
		free(d);
	}
	sim_post_free(m->after_read); /* never read: the answer is never sent */
	free(m);
}

/* Takes ownership of body (heap). Signs it once: retries resend these bytes. */
struct sim_post *sim_post_new(const struct sim_account *a, int acct, char *body, int nitems,
                              bool inbound)
{
	struct sim_post *p = calloc(1, sizeof *p);
	if (!p || !body) {
		free(p);
		free(body);
		return NULL;
	}
	p->acct = acct;
	p->body = body;
	p->len = strlen(body);
	p->nitems = nitems;
	p->inbound = inbound;
	p->slot = -1;
	char hex[65];
	pthread_mutex_lock(a->secrets_lock);
	hr_hmac_sha256_hex(a->app_secret, strlen(a->app_secret), body, p->len, hex);
	pthread_mutex_unlock(a->secrets_lock);
	snprintf(p->sig, sizeof p->sig, "X-Hub-Signature-256: sha256=%s", hex);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && (p->headers = curl_slist_append(h, p->sig)) &&
	    curl_slist_append(p->headers, "Expect:"))
		return p;
	curl_slist_free_all(p->headers ? p->headers : h);
	p->headers = NULL;
	sim_post_free(p);
	return NULL;
}

void sim_post_free(struct sim_post *p)
{
	if (!p)
		return;
	for (int i = 0; p->msgs && i < p->nitems; i++)
		sim_msg_unref(p->msgs[i]);
	free(p->msgs);
	curl_slist_free_all(p->headers);
	free(p->body);
	free(p);
}

/* ---------------------------------------------------------------------------
 * The heap (caller holds sched_lock)
 * ------------------------------------------------------------------------- */

/* Due first, then in push order. */
static bool ev_less(const void *pa, const void *pb)
{
	const struct sim_event *a = pa, *b = pb;
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_up(struct sim_event *h, size_t i)
{
	sim_heap_up(h, sizeof *h, i, ev_less);
}

static void heap_down(struct sim_event *h, size_t n, size_t i)
{
	sim_heap_down(h, sizeof *h, n, i, ev_less);
}

static struct sim_event heap_pop(struct sim *s)
{
	struct sim_event top = s->heap[0];
	s->heap[0] = s->heap[--s->nheap];
	heap_down(s->heap, s->nheap, 0);
	return top;
}

bool sim_sched_push(struct sim *s, const struct sim_event *ev, size_t n)
{
	int64_t statuses = 0;
	bool wake = false;
	pthread_mutex_lock(&s->sched_lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->sched_lock);
		return false;
	}
	if (s->nheap + n > s->capheap) {
		size_t cap = s->capheap ? s->capheap * 2 : 4096;
		while (cap < s->nheap + n)
			cap *= 2;
		struct sim_event *h = realloc(s->heap, cap * sizeof *h);
		if (!h) {
			pthread_mutex_unlock(&s->sched_lock);
			return false;
		}
		s->heap = h;
		s->capheap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		s->heap[s->nheap] = ev[i];
		s->heap[s->nheap].seq = s->seq++;
		heap_up(s->heap, s->nheap++);
		if (ev[i].kind == SIM_EV_STATUS)
			statuses++;
		if (ev[i].due < s->wake_at)
			wake = true;
	}
	if (wake)
		s->wake_at = s->heap[0].due;
	atomic_fetch_add(&s->stats.wh_pending, statuses);
	pthread_mutex_unlock(&s->sched_lock);
	if (wake)
		curl_multi_wakeup(s->multi);
	return true;
}

bool sim_post_submit(struct sim *s, struct sim_post *p)
{
	/* Counted before the push: once pushed, p may be sent and freed at once. */
	int n = p->nitems;
	atomic_fetch_add(&s->stats.wh_pending, n);
	struct sim_event ev = {.due = hr_mono_us(), .kind = SIM_EV_POST, .ptr = p};
	if (sim_sched_push(s, &ev, 1))
		return true;
	atomic_fetch_sub(&s->stats.wh_pending, n);
	return false;
}

/* ---------------------------------------------------------------------------
 * The webhook thread
 * ------------------------------------------------------------------------- */

/* One account's statuses gathered for its next POST. */
struct pack {
	json_t *arr;
	struct sim_msg **msgs; /* parallel to arr, each holding a reference */
	int cap;
};

struct wh_thread {
	struct sim *s;
	struct sim_event *batch;
	struct pack *packs; /* per account */
	int batch_max;      /* webhook_batch for this loop turn */
	struct sim_post *ready, **ready_tail;
	struct sim_post **slots; /* in flight, by slot */
	CURL **pool;             /* idle easy handles */
	int npool, inflight;
};

static void ready_append(struct wh_thread *t, struct sim_post *p)
{
	p->next = NULL;
	*t->ready_tail = p;
	t->ready_tail = &p->next;
}

static void release_msgs(struct wh_thread *t, struct sim_post *p);

/* Turns one account's gathered statuses into a signed POST. */
static void pack_flush(struct wh_thread *t, int acct)
{
	struct pack *pk = &t->packs[acct];
	if (!pk->arr)
		return;
	json_t *arr = pk->arr;
	struct sim_msg **msgs = pk->msgs;
	int n = (int)json_array_size(arr);
	memset(pk, 0, sizeof *pk);
	const struct sim_account *a = &t->s->accounts[acct];
	json_t *env = sim_wire_envelope(a, json_pack("{s:o}", "statuses", arr));
	char *body = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	struct sim_post *p = sim_post_new(a, acct, body, n, false);
	if (!p) {
		hr_log(HR_LOG_ERROR, "sim", "out of memory building a webhook: %d statuses lost",
		       n);
		atomic_fetch_add(&t->s->stats.wh_dropped, (uint_fast64_t)n);
		atomic_fetch_sub(&t->s->stats.wh_pending, n);
		struct sim_post lost = {.msgs = msgs, .nitems = n};
		release_msgs(t, &lost);
		for (int i = 0; i < n; i++)
			sim_msg_unref(msgs[i]);
		free(msgs);
		return;
	}
	p->msgs = msgs;
	ready_append(t, p);
}

static void status_lost(struct wh_thread *t, struct sim_msg *m)
{
	atomic_fetch_add(&t->s->stats.wh_dropped, 1);
	atomic_fetch_sub(&t->s->stats.wh_pending, 1);
	sim_msg_unref(m);
}

/* Adds a due status to its account's pack, or defers it behind an earlier
 * status of the same message that is still on its way. Takes ev's reference. */
static void add_status(struct wh_thread *t, const struct sim_event *ev)
{
	struct sim_msg *m = ev->ptr;
	if (m->busy > 0) {
		struct sim_deferred *d = malloc(sizeof *d);
		if (!d) {
			status_lost(t, m);
			return;
		}
		d->ev = *ev;
		d->next = NULL;
		*m->deferred_tail = d;
		m->deferred_tail = &d->next;
		sim_msg_unref(m); /* the busy POST keeps m alive */
		return;
	}
	struct pack *pk = &t->packs[m->acct];
	json_t *st = sim_wire_status(m, ev->status, ev->wall_us);
	if (!st || (!pk->arr && !(pk->arr = json_array()))) {
		json_decref(st);
		status_lost(t, m);
		return;
	}
	int n = (int)json_array_size(pk->arr);
	if (n == pk->cap) {
		int cap = pk->cap ? pk->cap * 2 : 8;
		struct sim_msg **x = realloc(pk->msgs, (size_t)cap * sizeof *x);
		if (!x) {
			json_decref(st);
			status_lost(t, m);
			return;
		}
		pk->msgs = x;
		pk->cap = cap;
	}
	json_array_append_new(pk->arr, st);
	pk->msgs[n] = m;
	m->busy++;
	if (ev->status == SIM_ST_READ)
		m->read_packed = true;
	if (n + 1 >= t->batch_max)
		pack_flush(t, m->acct);
}

/* A POST finished (delivered or given up): its messages' next statuses may go. */
static void release_msgs(struct wh_thread *t, struct sim_post *p)
{
	for (int i = 0; p->msgs && i < p->nitems; i++) {
		struct sim_msg *m = p->msgs[i];
		if (--m->busy > 0 || !m->deferred)
			continue;
		struct sim_deferred *d = m->deferred;
		m->deferred = NULL;
		m->deferred_tail = &m->deferred;
		while (d) {
			struct sim_deferred *next = d->next;
			atomic_fetch_add(&m->refs, 1);
			add_status(t, &d->ev);
			free(d);
			d = next;
		}
	}
}

/* Pops what is due; resumes suspended connections right here, under the
 * lock, so sim_webhook_quiesce knows none is being resumed after it. */
static size_t pop_due(struct wh_thread *t, int64_t now, int64_t window, int64_t *next)
{
	struct sim *s = t->s;
	size_t n = 0;
	pthread_mutex_lock(&s->sched_lock);
	while (s->nheap && n < SIM_POP_MAX) {
		int64_t w = s->heap[0].kind == SIM_EV_STATUS ? window : 0;
		if (s->heap[0].due > now + w)
			break;
		struct sim_event ev = heap_pop(s);
		if (ev.kind == SIM_EV_RESUME)
			MHD_resume_connection(ev.ptr);
		else
			t->batch[n++] = ev;
	}
	*next = s->nheap ? s->heap[0].due : INT64_MAX;
	s->wake_at = *next;
	pthread_mutex_unlock(&s->sched_lock);
	return n;
}

static void post_done(struct wh_thread *t, struct sim_post *p, bool ok, const char *why,
                      double retry_s);

static void start_transfers(struct wh_thread *t, double retry_s)
{
	struct sim *s = t->s;
	while (t->ready && t->inflight < s->webhook_concurrency) {
		struct sim_post *p = t->ready;
		t->ready = p->next;
		if (!t->ready)
			t->ready_tail = &t->ready;
		CURL *e = t->npool ? t->pool[--t->npool] : curl_easy_init();
		if (!e) {
			ready_append(t, p); /* try again next turn */
			return;
		}
		if (!p->first_at)
			p->first_at = hr_mono_us();
		curl_easy_reset(e);
		CURLcode cc =
		    sim_post_setup(e, s->accounts[p->acct].webhook_url, p->body, p->len, p->headers,
		                   "facebookexternalua", SIM_POST_TIMEOUT_MS, 3000L);
		if (cc == CURLE_OK)
			cc = curl_easy_setopt(e, CURLOPT_PRIVATE, p);
		CURLMcode mc = cc == CURLE_OK ? curl_multi_add_handle(s->multi, e) : CURLM_OK;
		if (cc != CURLE_OK || mc != CURLM_OK) {
			/* Never sent: a failed attempt, retried like any other. */
			char why[96];
			snprintf(why, sizeof why, "cannot set up the transfer: %s",
			         cc != CURLE_OK ? curl_easy_strerror(cc) : curl_multi_strerror(mc));
			t->pool[t->npool++] = e;
			post_done(t, p, false, why, retry_s);
			continue;
		}
		int slot = 0;
		while (t->slots[slot])
			slot++;
		t->slots[slot] = p;
		p->slot = slot;
		p->easy = e;
		t->inflight++;
	}
}

/*
 * A POST finished for good: a message whose "read" it carried now lets its
 * recipient's scripted answer go. Called before release_msgs, so a "read"
 * packed only now (released by this very POST) does not count yet.
 */
static void release_answers(struct wh_thread *t, struct sim_post *p)
{
	for (int i = 0; p->msgs && i < p->nitems; i++) {
		struct sim_msg *m = p->msgs[i];
		if (!m->read_packed || !m->after_read)
			continue;
		struct sim_post *a = m->after_read;
		m->after_read = NULL;
		atomic_fetch_add(&t->s->stats.wh_pending, a->nitems);
		ready_append(t, a);
	}
}

static void post_done(struct wh_thread *t, struct sim_post *p, bool ok, const char *why,
                      double retry_s)
{
	struct sim *s = t->s;
	p->attempts++;
	if (ok) {
		atomic_fetch_add(&s->stats.wh_posted, 1);
		atomic_fetch_add(p->inbound ? &s->stats.wh_inbound : &s->stats.wh_statuses,
		                 (uint_fast64_t)p->nitems);
		atomic_fetch_sub(&s->stats.wh_pending, p->nitems);
		release_answers(t, p);
		release_msgs(t, p);
		sim_post_free(p);
		return;
	}
	atomic_fetch_add(&s->stats.wh_failed, 1);
	int64_t now = hr_mono_us();
	int64_t delay =
	    backoff_delay_us(p->attempts, SIM_RETRY_BASE_US, SIM_RETRY_MAX_US, hr_random_unit());
	if (now + delay - p->first_at <= (int64_t)(retry_s * 1e6)) {
		struct sim_event ev = {.due = now + delay, .kind = SIM_EV_POST, .ptr = p};
		hr_log(HR_LOG_DEBUG, "sim", "webhook to %s failed (%s), retry %d in %lld ms",
		       s->accounts[p->acct].webhook_url, why, p->attempts,
		       (long long)(delay / 1000));
		if (sim_sched_push(s, &ev, 1))
			return;
	}
	hr_log(HR_LOG_WARN, "sim", "webhook to %s given up after %d attempts (%s)",
	       s->accounts[p->acct].webhook_url, p->attempts, why);
	atomic_fetch_add(&s->stats.wh_dropped, (uint_fast64_t)p->nitems);
	atomic_fetch_sub(&s->stats.wh_pending, p->nitems);
	release_answers(t, p);
	release_msgs(t, p);
	sim_post_free(p);
}

static void reap(struct wh_thread *t, double retry_s)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(t->s->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *e = msg->easy_handle;
		CURLcode res = msg->data.result;
		struct sim_post *p = NULL;
		long status = 0;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&p);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(t->s->multi, e);
		t->pool[t->npool++] = e;
		t->slots[p->slot] = NULL;
		p->easy = NULL;
		t->inflight--;
		char why[64];
		if (res != CURLE_OK)
			snprintf(why, sizeof why, "%s", curl_easy_strerror(res));
		else
			snprintf(why, sizeof why, "HTTP %ld", status);
		post_done(t, p, res == CURLE_OK && status >= 200 && status < 300, why, retry_s);
	}
}

static void *webhook_main(void *arg)
{
	struct wh_thread *t = arg;
	struct sim *s = t->s;
	while (!atomic_load(&s->thread_stop)) {
		struct sim_knobs *k = sim_knobs_get(s);
		int batch_max = k->webhook_batch;
		double retry_s = k->webhook_retry_s;
		sim_knobs_unref(k);
		t->batch_max = batch_max;
		int64_t now = hr_mono_us(), next;
		size_t n = pop_due(t, now, batch_max > 1 ? SIM_PACK_WINDOW_US : 0, &next);
		for (size_t i = 0; i < n; i++) {
			if (t->batch[i].kind == SIM_EV_POST)
				ready_append(t, t->batch[i].ptr);
			else
				add_status(t, &t->batch[i]);
		}
		int running = 0;
		curl_multi_perform(s->multi, &running);
		reap(t, retry_s); /* finished POSTs may release deferred statuses */
		for (size_t a = 0; a < s->naccounts; a++)
			pack_flush(t, (int)a);
		start_transfers(t, retry_s);

		long timeout_ms = 1000;
		if (n == SIM_POP_MAX || (t->ready && t->inflight < s->webhook_concurrency)) {
			timeout_ms = 0;
		} else if (next != INT64_MAX) {
			int64_t d = next - hr_mono_us();
			timeout_ms = d <= 0 ? 0 : (long)((d + 999) / 1000);
			if (timeout_ms > 1000)
				timeout_ms = 1000;
		}
		long curl_to = -1;
		curl_multi_timeout(s->multi, &curl_to);
		if (curl_to >= 0 && curl_to < timeout_ms)
			timeout_ms = curl_to;
		if (timeout_ms > 0)
			curl_multi_poll(s->multi, NULL, 0, (int)timeout_ms, NULL);
	}
	return NULL;
}

static struct wh_thread *wh_thread_new(struct sim *s)
{
	struct wh_thread *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->s = s;
	t->ready_tail = &t->ready;
	t->batch = calloc(SIM_POP_MAX, sizeof *t->batch);
	t->packs = calloc(s->naccounts ? s->naccounts : 1, sizeof *t->packs);
	t->slots = calloc((size_t)s->webhook_concurrency, sizeof *t->slots);
	t->pool = calloc((size_t)s->webhook_concurrency, sizeof *t->pool);
	if (!t->batch || !t->packs || !t->slots || !t->pool) {
		free(t->batch);
		free(t->packs);
		free(t->slots);
		free(t->pool);
		free(t);
		return NULL;
	}
	return t;
}

int sim_webhook_start(struct sim *s, struct hr_err *err)
{
	s->multi = curl_multi_init();
	if (!s->multi)
		return hr_fail(err, HR_EINTERNAL, NULL, "curl_multi_init failed");
	long n = s->webhook_concurrency;
	CURLMcode mc = curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
	if (mc == CURLM_OK)
		mc = curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
	if (mc == CURLM_OK)
		mc = curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, n);
	if (mc != CURLM_OK) /* sim_webhook_stop frees the multi handle */
		return hr_fail(err, HR_EINTERNAL, NULL,
		               "cannot configure the webhook transfers: %s",
		               curl_multi_strerror(mc));
	struct wh_thread *t = wh_thread_new(s);
	if (!t)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	s->wh = t;
	s->wake_at = INT64_MAX;
	if (pthread_create(&s->thread, NULL, webhook_main, t))
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the webhook thread");
	pthread_setname_np(s->thread, "sim-webhook");
	s->thread_started = true;
	return 0;
}

void sim_webhook_quiesce(struct sim *s)
{
	pthread_mutex_lock(&s->sched_lock);
	s->stopping = true;
	size_t k = 0;
	for (size_t i = 0; i < s->nheap; i++) {
		if (s->heap[i].kind == SIM_EV_RESUME)
			MHD_resume_connection(s->heap[i].ptr);
		else
			s->heap[k++] = s->heap[i];
	}
	s->nheap = k;
	for (size_t i = k / 2; i-- > 0;)
		heap_down(s->heap, s->nheap, i);
	pthread_mutex_unlock(&s->sched_lock);
}

static void free_event(struct sim_event *ev)
{
	if (ev->kind == SIM_EV_STATUS)
		sim_msg_unref(ev->ptr);
	else if (ev->kind == SIM_EV_POST)
		sim_post_free(ev->ptr);
}

void sim_webhook_stop(struct sim *s)
{
	struct wh_thread *t = s->wh;
	if (s->thread_started) {
		atomic_store(&s->thread_stop, true);
		curl_multi_wakeup(s->multi);
		pthread_join(s->thread, NULL);
		s->thread_started = false;
	}
	if (t) {
		for (int i = 0; i < s->webhook_concurrency; i++) {
			struct sim_post *p = t->slots[i];
			if (!p)
				continue;
			curl_multi_remove_handle(s->multi, p->easy);
			curl_easy_cleanup(p->easy);
			sim_post_free(p);
		}
		for (int i = 0; i < t->npool; i++)
			curl_easy_cleanup(t->pool[i]);
		while (t->ready) {
			struct sim_post *p = t->ready;
			t->ready = p->next;
			sim_post_free(p);
		}
		for (size_t a = 0; a < s->naccounts; a++) {
			struct pack *pk = &t->packs[a];
			for (size_t i = 0; pk->arr && i < json_array_size(pk->arr); i++)
				sim_msg_unref(pk->msgs[i]);
			json_decref(pk->arr);
			free(pk->msgs);
		}
		free(t->batch);
		free(t->packs);
		free(t->slots);
		free(t->pool);
		free(t);
		s->wh = NULL;
	}
	for (size_t i = 0; i < s->nheap; i++)
		free_event(&s->heap[i]);
	free(s->heap);
	s->heap = NULL;
	s->nheap = s->capheap = 0;
	if (s->multi)
		curl_multi_cleanup(s->multi);
	s->multi = NULL;
}
