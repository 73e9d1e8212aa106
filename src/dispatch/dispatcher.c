/*
 * dispatcher.c - claims due messages, sends them through curl multi, records
 * outcomes. One thread ("dispatch") owns every field of struct dloop
 * except those under watch_lock (sync-mode watchers, touched by API threads
 * and the store's writer thread) and the outstanding-write counter.
 *
 * Loop, each turn:
 *   1. every reconcile period: requeue messages whose lease expired
 *      (the process that held them died): at-least-once delivery;
 *   2. fill free transfer slots: accounts are served round-robin, each
 *      within its fair share of the in-flight slots (per tenant, then per
 *      account: see acct_room) and no more than its token bucket allows, so
 *      neither one account's 100,000-message batch nor a provider that
 *      answers slowly or not at all can starve another account's OTP; an
 *      account at its share is skipped, never waited for; within an
 *      account the store claims priority 0 (transactional) before 1 (bulk).
 *      A claim is asked of the store's writer and never waited for (struct
 *      pclaim): its answer wakes the loop, whose next turn starts the sends,
 *      so transfers finish, outcomes are recorded and other accounts are
 *      served while a claim waits behind the writer's other work;
 *   3. curl_multi_poll until a transfer finishes, a claim is due, or
 *      dispatcher_notify wakes it;
 *   4. classify finished transfers with the channel adapter and record them
 *      through the store's group-committing writer asynchronously. A
 *      transfer that failed after its request may have been written has an
 *      unknown outcome (xfer_unknown_reason): an at_most_once message then
 *      becomes UNKNOWN and is never sent again; an at_least_once one is
 *      retried, its audit event marking the resend as a possible duplicate.
 *
 * The plugin gate: a claimed message of a unit whose plugin has a
 * before_send hook is not sent at once. Its hook runs on the plugin pool
 * (plugins/plugins.h) while the message waits here in `gated` (counted in
 * flight, so the fair shares hold); each turn polls the gated jobs, never
 * waiting for one: allowed ones start, skipped ones become CANCELLED, and
 * a hook that failed, answered garbage or passed its deadline sends
 * nothing - the message is retried after a backoff (failed once its
 * attempts are spent) with the plugin's name and reason in its audit trail.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/crypto.h"
#include "core/ratelimit.h"
#include "dispatch/dispatch.h"
#include "obs/acct_health.h"
#include "obs/metrics.h"
#include "plugins/plugins.h"

#define CLAIM_MAX 256        /* messages per claim call */
#define CLAIM_GATHER_US 2000 /* longest an account gathers freed slots for a claim */
#define RESP_MAX (64 * 1024) /* provider answers are small; cap what we keep */
#define IDLE_POLL_US 200000  /* re-check the store this often when idle */
#define WATCH_BUCKETS 256

struct acct_state {
	struct channel_account *acct;
	struct ratelimit rl;
	int64_t idle_until; /* monotonic us: nothing due before this (0 = check now) */
	bool blocked;       /* provider said the account cannot send (token, ban) */
	bool paused;        /* an operator paused it (store account_pause) */
	bool claiming;      /* a claim of its messages is on the writer */
	int64_t claim_at;   /* monotonic us: when it last asked one */
	int inflight;       /* transfers of this account in flight (and claimed slots) */
	size_t tenant;      /* index in dispatcher.tenants */
};

/* A tenant's part of the in-flight slots (its accounts' transfers summed). */
struct tenant_state {
	char id[HR_NAME_MAX];
	int inflight;
	int wanting; /* accounts of the tenant that could use a slot this round */
};

/* How many accounts and tenants want slots in one round of fill(). */
struct shares {
	int accounts;
	int tenants;
};

struct xfer {
	struct xfer *prev, *next; /* in-flight list, for shutdown */
	CURL *easy;
	struct acct_state *as;
	struct http_req req;
	char message_id[HR_ID_LEN + 1];
	int attempts, max_attempts;
	enum delivery_policy policy;
	int64_t started;
	char *resp;
	size_t resp_len;
	char retry_after[32];
	char curl_err[CURL_ERROR_SIZE];
};

/*
 * A claim on the store's writer (claim_async): the loop never waits for
 * one. Its `want` slots are counted in flight from when it is asked until
 * its answer is taken, so the shares and max_in_flight hold; an account has
 * at most one at a time. The writer's thread answers it (claim_answered),
 * holds what it claimed and wakes the loop, which starts the sends
 * (claims_take); meanwhile the loop goes on sending and recording.
 */
struct pclaim {
	struct pclaim *next;   /* dispatcher.claiming (dispatch thread) or spare */
	struct pclaim *answer; /* dispatcher.answered (under claim_lock) */
	struct dloop *d;
	char account_id[HR_NAME_MAX];
	int want;
	int rc;
	size_t n;
	int64_t hold_until;
	struct message out[CLAIM_MAX]; /* zeroed between claims (message_clear) */
};

/* A claimed message waiting for its plugin's before_send (see the top). */
struct gated {
	struct gated *next;
	struct plugin_job *job; /* NULL: could not be made (out of memory) */
	struct acct_state *as;
	struct message m; /* owned: its heap fields are freed with message_clear */
};

/* Sync-mode watchers, one table for every loop (a watch names a message,
 * not its account, so whichever loop records the outcome fires it). */
struct watchtab {
	pthread_mutex_t lock;
	struct watch *b[WATCH_BUCKETS];
	int n;
};

struct watch {
	struct watch *next;
	char message_id[HR_ID_LEN + 1];
	int64_t deadline; /* monotonic us */
	dispatch_watch_fn cb;
	void *arg;
};

struct dloop {
	struct store *st;
	struct dispatch_opts o;
	struct account_set *set;
	unsigned set_gen;
	struct acct_state *accts;
	size_t naccts, rr;
	struct tenant_state *tenants;
	size_t ntenants;
	/* In-flight shares, from the options (see acct_room). */
	int acct_floor, tenant_floor; /* always allowed, whatever the split */
	int reserve;                  /* last free slots kept for newcomers */
	int reserve_quota;            /* what one newcomer may take of them */
	CURLM *multi;
	/* Finished transfers' easy handles, kept for the next sends (a handle
	 * made and freed per send was 7% of this thread): at most max_in_flight,
	 * each send setting every option it uses (easy_take). */
	CURL **idle;
	int nidle;
	struct xfer *xfers; /* in flight */
	int inflight;
	pthread_t thread;
	atomic_bool stop;
	atomic_bool notified;
	int64_t next_reconcile;
	int64_t next_pause_check; /* monotonic us: read the paused accounts again */

	struct pclaim *claiming;     /* on the writer: asked, answer not taken yet */
	struct pclaim *spare;        /* answered and taken: kept for the next claims */
	pthread_mutex_t claim_lock;  /* guards answered */
	struct pclaim *answered;     /* answered by the writer, not taken yet */
	atomic_bool claim_woken;     /* an answer came since the last take */
	struct gated *gated;         /* waiting for a plugin's before_send */
	atomic_bool gate_woken;      /* a gated job finished since the last poll */
	struct send_result *pending; /* outcomes not yet handed to the store */
	size_t npending, cappending;

	struct watchtab *w; /* the dispatcher's, shared by its loops */
	struct dispatcher *parent;
	unsigned shard; /* this loop serves the accounts acct_shard() gives it */

	pthread_mutex_t out_lock; /* outstanding async record_results, and held below */
	pthread_cond_t out_cond;
	int outstanding;
	/* Outcomes whose recording failed with the store unable to write (disk
	 * full, read-only, database unreachable): handed back by the writer
	 * thread, recorded again by the dispatch thread from held_retry_at on.
	 * Under out_lock. */
	struct send_result *held;
	size_t nheld, capheld;
	int64_t held_retry_at;
	int retrying;           /* record jobs carrying held outcomes, not answered yet */
	bool pending_has_held;  /* held outcomes sit in pending (dispatch thread's) */
	int64_t held_logged_us; /* last "kept and retried" line: one per 10 s, not per try */
	uint64_t held_failures; /* failed recordings since that line */
};

/* The dispatcher: its loops (dispatch.threads), each serving the accounts
 * acct_shard() gives it, and the watch table they share. */
struct dispatcher {
	struct store *st;
	struct account_set *set;
	struct watchtab w;
	int n;
	struct dloop *loop[]; /* n */
};

/* Which loop serves an account: FNV-1a of its id, so an account stays on
 * one loop for the process's life (its bucket, its claims, its order). */
static unsigned acct_shard(const char *id, int n)
{
	uint32_t h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return n > 1 ? h % (unsigned)n : 0;
}

#define HELD_RETRY_US 200000 /* between attempts to record held outcomes */

void dispatch_opts_default(struct dispatch_opts *o)
{
	o->threads = 1;
	o->max_in_flight = 256;
	o->max_in_flight_per_account = 0; /* max_in_flight / 4 */
	o->max_in_flight_per_tenant = 0;  /* max_in_flight / 2 */
	o->lease_us = 30 * 1000000LL;
	o->max_attempts = 8;
	o->backoff_base_us = 500000;
	o->backoff_max_us = 300 * 1000000LL;
	o->http_timeout_us = 15 * 1000000LL;
	o->reconcile_every_us = 1000000;
	o->plugins = NULL; /* no plugin gate */
}

static int sync_accounts(struct dloop *d, bool force);

/* ---- sync-mode watchers ------------------------------------------------ */

static unsigned watch_hash(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % WATCH_BUCKETS;
}

int dispatcher_watch(struct dispatcher *dd, const char *message_id, int64_t timeout_us,
                     dispatch_watch_fn cb, void *arg)
{
	struct watchtab *t = &dd->w;
	struct watch *w = calloc(1, sizeof *w);
	if (!w)
		return HR_ENOMEM;
	hr_strlcpy(w->message_id, message_id, sizeof w->message_id);
	w->deadline = hr_mono_us() + timeout_us;
	w->cb = cb;
	w->arg = arg;
	unsigned b = watch_hash(message_id);
	pthread_mutex_lock(&t->lock);
	w->next = t->b[b];
	t->b[b] = w;
	t->n++;
	pthread_mutex_unlock(&t->lock);
	dispatcher_notify(dd);
	return 0;
}

/* Detaches the watchers of one message (or, with id NULL, those past their
 * deadline at `now`, or all when now < 0) into a list the caller fires
 * outside the lock. */
static struct watch *watch_take(struct watchtab *t, const char *id, int64_t now)
{
	struct watch *out = NULL;
	pthread_mutex_lock(&t->lock);
	if (t->n == 0) {
		pthread_mutex_unlock(&t->lock);
		return NULL;
	}
	for (unsigned b = id ? watch_hash(id) : 0; b < WATCH_BUCKETS; b++) {
		for (struct watch **pp = &t->b[b]; *pp;) {
			struct watch *w = *pp;
			bool take =
			    id ? strcmp(w->message_id, id) == 0 : (now < 0 || w->deadline <= now);
			if (take) {
				*pp = w->next;
				w->next = out;
				out = w;
				t->n--;
			} else {
				pp = &w->next;
			}
		}
		if (id)
			break;
	}
	pthread_mutex_unlock(&t->lock);
	return out;
}

bool dispatcher_unwatch(struct dispatcher *dd, const char *message_id, void *arg)
{
	struct watchtab *t = &dd->w;
	struct watch *found = NULL;
	pthread_mutex_lock(&t->lock);
	for (struct watch **pp = &t->b[watch_hash(message_id)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->arg == arg && strcmp((*pp)->message_id, message_id) == 0) {
			found = *pp;
			*pp = found->next;
			t->n--;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	free(found);
	return found != NULL;
}

static void watch_fire(struct watch *list, const struct dispatch_result *r)
{
	while (list) {
		struct watch *next = list->next;
		list->cb(list->arg, r);
		free(list);
		list = next;
	}
}

static bool watch_pending(struct dloop *d)
{
	pthread_mutex_lock(&d->w->lock);
	bool any = d->w->n > 0;
	pthread_mutex_unlock(&d->w->lock);
	return any;
}

static void watch_expire(struct dloop *d, int64_t now)
{
	struct dispatch_result r = {.rc = HR_ETIMEOUT};
	watch_fire(watch_take(d->w, NULL, now), &r);
}

/* ---- recording outcomes ------------------------------------------------- */

static struct send_result *result_add(struct dloop *d, const char *message_id, int attempt);

struct record_job {
	struct dloop *d;
	struct send_result *r;
	size_t n;
	bool retry; /* carries outcomes held after a failed recording */
};

/*
 * Keeps outcomes the store could not write, to be recorded again (writer
 * thread). Dropping them, as before, left messages the provider had
 * accepted in SENDING until their lease expired: an at_least_once message
 * was then sent again (a duplicate caused by a full disk, not by an unknown
 * outcome) and an at_most_once one became `unknown` although its answer
 * was known. False if there was no memory to keep them.
 */
static bool hold_results(struct dloop *d, const struct send_result *r, size_t n)
{
	pthread_mutex_lock(&d->out_lock);
	bool ok = true;
	if (d->nheld + n > d->capheld) {
		size_t cap = d->capheld ? d->capheld : 64;
		while (cap < d->nheld + n)
			cap *= 2;
		struct send_result *p = realloc(d->held, cap * sizeof *p);
		if (p) {
			d->held = p;
			d->capheld = cap;
		} else {
			ok = false;
		}
	}
	if (ok) {
		memcpy(d->held + d->nheld, r, n * sizeof *r);
		d->nheld += n;
		d->held_retry_at = hr_mono_us() + HELD_RETRY_US;
	}
	pthread_mutex_unlock(&d->out_lock);
	/* Their messages stay held for as long as the outcomes are kept, not
	 * only the claim's 10 leases: a disk full for longer must not let
	 * lease expiry send them again once it can write. */
	int64_t until = hr_now_us() + 10 * d->o.lease_us;
	for (size_t i = 0; ok && i < n; i++)
		(void)store_hold(d->st, r[i].message_id, until);
	return ok;
}

/* Writer thread, after the outcomes are committed: unhold the messages,
 * tell sync waiters. When the store could not write them (HR_EBUSY: it
 * says "retry later"; HR_EIO) they are kept and recorded again; their
 * messages stay held and their waiters keep waiting. */
static void record_done(void *arg, int rc, const struct hr_err *err)
{
	struct record_job *job = arg;
	struct dloop *d = job->d;
	if (rc != 0) {
		bool held = (rc == HR_EBUSY || rc == HR_EIO) && hold_results(d, job->r, job->n);
		int64_t now = hr_mono_us();
		pthread_mutex_lock(&d->out_lock);
		bool say = !held || now - d->held_logged_us >= 10000000;
		uint64_t since = ++d->held_failures;
		if (say && held) {
			d->held_logged_us = now;
			d->held_failures = 0;
		}
		pthread_mutex_unlock(&d->out_lock);
		if (say)
			hr_log(HR_LOG_ERROR, "dispatch",
			       "recording %zu outcomes failed: %s%s (%" PRIu64 " failures)", job->n,
			       err ? err->msg : hr_code_name(rc),
			       held ? "; they are kept and retried every 200 ms" : "", since);
		if (held) {
			bool retry = job->retry;
			free(job->r);
			free(job);
			pthread_mutex_lock(&d->out_lock);
			d->outstanding--;
			d->retrying -= retry;
			pthread_cond_broadcast(&d->out_cond);
			pthread_mutex_unlock(&d->out_lock);
			return;
		}
	}
	bool rerouted = false;
	for (size_t i = 0; i < job->n; i++) {
		struct send_result *s = &job->r[i];
		send_result_clear(s);
		/* An audit note changes nothing: the message's send goes on. */
		if (s->kind == SEND_NOTE)
			continue;
		/* Committed (or failed for good): lease expiry may judge it now. */
		store_unhold(d->st, s->message_id);
		/* Queued on another account by its plugin: sync waiters wait for
		 * that send, and the loop looks at the accounts again at once. */
		if (s->kind == SEND_REROUTE) {
			rerouted = true;
			continue;
		}
		struct watch *w = watch_take(d->w, s->message_id, 0);
		if (!w)
			continue;
		struct dispatch_result dr = {
		    .rc = rc, .kind = s->kind, .http_status = s->http_status};
		hr_strlcpy(dr.provider_id, s->provider_id, sizeof dr.provider_id);
		hr_strlcpy(dr.error_code, s->error_code, sizeof dr.error_code);
		hr_strlcpy(dr.error_text, s->error_text, sizeof dr.error_text);
		watch_fire(w, &dr);
	}
	if (rerouted)
		dispatcher_notify(d->parent); /* the new account may be any loop's */
	bool retry = job->retry;
	if (retry && rc == 0)
		hr_log(HR_LOG_INFO, "dispatch", "recorded %zu outcomes kept after failures",
		       job->n);
	free(job->r);
	free(job);
	pthread_mutex_lock(&d->out_lock);
	d->outstanding--;
	d->retrying -= retry;
	if (retry && rc == 0) {
		d->held_logged_us = 0;
		d->held_failures = 0;
	}
	pthread_cond_broadcast(&d->out_cond);
	pthread_mutex_unlock(&d->out_lock);
}

/* Moves held outcomes (record_done) back into the pending list once their
 * retry is due (at once when `now` is 0). Dispatch thread. */
static void take_held(struct dloop *d, int64_t now)
{
	pthread_mutex_lock(&d->out_lock);
	if (d->nheld && (now == 0 || now >= d->held_retry_at)) {
		for (size_t i = 0; i < d->nheld; i++)
			*result_add(d, d->held[i].message_id, d->held[i].attempt) = d->held[i];
		d->nheld = 0;
		d->pending_has_held = true;
	}
	pthread_mutex_unlock(&d->out_lock);
}

/* Whether outcomes that failed to be recorded are still to be recorded:
 * held, back in pending, or in a record job not answered yet; the dispatch
 * loop then wakes every HELD_RETRY_US to try again. Dispatch thread. */
static bool holding(struct dloop *d)
{
	pthread_mutex_lock(&d->out_lock);
	bool any = d->nheld > 0 || d->retrying > 0 || d->pending_has_held;
	pthread_mutex_unlock(&d->out_lock);
	return any;
}

static void flush_results(struct dloop *d)
{
	take_held(d, hr_mono_us());
	if (d->npending == 0)
		return;
	struct record_job *job = malloc(sizeof *job);
	if (!job)
		abort();
	job->d = d;
	job->r = d->pending;
	job->n = d->npending;
	job->retry = d->pending_has_held;
	d->pending = NULL;
	d->npending = d->cappending = 0;
	pthread_mutex_lock(&d->out_lock);
	d->outstanding++;
	d->retrying += job->retry;
	d->pending_has_held = false;
	pthread_mutex_unlock(&d->out_lock);
	int rc = d->st->ops->record_results(d->st, job->r, job->n, record_done, job);
	if (rc != 0) {
		/* Not queued: keep the outcomes and try again next turn. Dropping
		 * them would leave messages the provider accepted in SENDING, to
		 * be sent again when their lease expires. */
		hr_log(HR_LOG_WARN, "dispatch", "could not queue %zu outcomes (%s); retrying",
		       job->n, hr_code_name(rc));
		d->pending = job->r;
		d->npending = d->cappending = job->n;
		pthread_mutex_lock(&d->out_lock);
		d->outstanding--;
		d->retrying -= job->retry;
		d->pending_has_held = job->retry;
		pthread_mutex_unlock(&d->out_lock);
		free(job);
	}
}

static struct send_result *result_add(struct dloop *d, const char *message_id, int attempt)
{
	if (d->npending == d->cappending) {
		size_t cap = d->cappending ? d->cappending * 2 : 64;
		struct send_result *p = realloc(d->pending, cap * sizeof *p);
		if (!p)
			abort();
		d->pending = p;
		d->cappending = cap;
	}
	struct send_result *r = &d->pending[d->npending++];
	memset(r, 0, sizeof *r);
	hr_strlcpy(r->message_id, message_id, sizeof r->message_id);
	r->attempt = attempt;
	return r;
}

/* ---- transfers ---------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	size_t keep = x->resp_len + n > RESP_MAX ? RESP_MAX - x->resp_len : n;
	if (keep) {
		char *r = realloc(x->resp, x->resp_len + keep + 1);
		if (!r)
			return 0;
		x->resp = r;
		memcpy(x->resp + x->resp_len, p, keep);
		x->resp_len += keep;
		x->resp[x->resp_len] = '\0';
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		const char *v = p + 12;
		while (*v == ' ')
			v++;
		size_t l = 0;
		while (l < sizeof x->retry_after - 1 && v + l < p + n && v[l] != '\r' &&
		       v[l] != '\n')
			l++;
		memcpy(x->retry_after, v, l);
		x->retry_after[l] = '\0';
	}
	return n;
}

/*
 * A handle for a new transfer: a kept one, or a new one. A kept one is not
 * reset (curl_easy_reset was 4% of this thread, freeing and setting again
 * every default): every option a send uses is set by every send, those a
 * send does not need cleared rather than left out (http_req_setopts,
 * xfer_setopts), so nothing of its last send, another account's
 * credentials least of all, carries over (test_dispatch
 * test_handle_reuse_carries_nothing).
 */
static CURL *easy_take(struct dloop *d)
{
	if (d->nidle > 0)
		return d->idle[--d->nidle];
	return curl_easy_init();
}

/* Keeps a finished transfer's handle (removed from the multi handle). */
static void easy_keep(struct dloop *d, struct xfer *x)
{
	if (d->idle && d->nidle < d->o.max_in_flight) {
		d->idle[d->nidle++] = x->easy;
		x->easy = NULL;
	}
}

static void xfer_free(struct xfer *x)
{
	if (x->easy)
		curl_easy_cleanup(x->easy);
	http_req_clear(&x->req);
	free(x->resp);
	free(x);
}

static void xfer_unlink(struct dloop *d, struct xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		d->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
}

static void fail_now(struct dloop *d, const struct message *m, const char *code, const char *text)
{
	struct send_result *r = result_add(d, m->id, m->attempts);
	r->kind = SEND_FAILED;
	hr_strlcpy(r->error_code, code, sizeof r->error_code);
	hr_strlcpy(r->error_text, text, sizeof r->error_text);
	r->error_class = "permanent";
	metrics_send(m->channel, M_SEND_FAILED, 1);
}

/* The store found the recipient opted out while claiming: nothing is sent
 * and the status is already recorded; answer a sync waiter now. */
static void suppressed(struct dloop *d, const struct message *m)
{
	struct watch *w = watch_take(d->w, m->id, 0);
	if (!w)
		return;
	struct dispatch_result r = {.rc = 0, .kind = SEND_FAILED};
	hr_strlcpy(r.error_code, m->error_code, sizeof r.error_code);
	hr_strlcpy(r.error_text, m->error_text, sizeof r.error_text);
	watch_fire(w, &r);
}

/* A transient failure before anything reached the provider: the message
 * goes back to the queue for another attempt after a backoff. */
static void retry_later(struct dloop *d, const struct message *m, const char *code,
                        const char *text)
{
	struct send_result *r = result_add(d, m->id, m->attempts);
	r->kind = SEND_RETRY;
	r->due_at = hr_now_us() + backoff_delay_us(m->attempts, d->o.backoff_base_us,
	                                           d->o.backoff_max_us, hr_random_unit());
	hr_strlcpy(r->error_code, code, sizeof r->error_code);
	hr_utf8_copy(r->error_text, text, sizeof r->error_text);
	r->error_class = "transient";
	metrics_send(m->channel, M_SEND_RETRIED, 1);
}

/* Sets a send's libcurl options: the common ones (http_req_setopts) and
 * this transfer's callbacks. 0, or HR_ENOMEM / HR_EINTERNAL with err naming
 * the option libcurl refused. */
static int xfer_setopts(struct dloop *d, struct xfer *x, struct hr_err *err)
{
	CURL *e = x->easy;
	int rc = http_req_setopts(e, &x->req, (long)(d->o.http_timeout_us / 1000), err);
	if (rc)
		return rc;
	CURLcode cc;
	const char *what = NULL;
#define XFER_SET(opt, val)                                                                         \
	do {                                                                                       \
		if ((cc = curl_easy_setopt(e, opt, val)) != CURLE_OK) {                            \
			what = #opt;                                                               \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)
	XFER_SET(CURLOPT_ERRORBUFFER, x->curl_err);
	XFER_SET(CURLOPT_WRITEFUNCTION, on_body);
	XFER_SET(CURLOPT_WRITEDATA, x);
	XFER_SET(CURLOPT_HEADERFUNCTION, on_header);
	XFER_SET(CURLOPT_HEADERDATA, x);
	XFER_SET(CURLOPT_PRIVATE, x);
	XFER_SET(CURLOPT_TCP_KEEPALIVE, 1L);
	/* libcurl sends a request again by itself when a reused keep-alive
	 * connection turns out closed before any answer byte came (its
	 * Curl_retry_request: "Connection died, retrying a fresh connect"):
	 * harmless when the peer had closed an idle connection, a duplicate
	 * when it read the request and then dropped the connection. An
	 * at_most_once send therefore goes on a connection of its own, which
	 * libcurl does not retry that way; the price is a TCP (and TLS)
	 * handshake per such send. (The tests here do not provoke that retry:
	 * the simulator's dropped connections are never reused.) */
	XFER_SET(CURLOPT_FRESH_CONNECT, x->policy == POLICY_AT_MOST_ONCE ? 1L : 0L);
#undef XFER_SET
	return 0;
fail:
	return hr_fail(err, cc == CURLE_OUT_OF_MEMORY ? HR_ENOMEM : HR_EINTERNAL, NULL,
	               "libcurl refused %s: %s", what, curl_easy_strerror(cc));
}

/* Starts one transfer for a claimed message. A message that cannot be
 * started is never left in SENDING: it is retried later (a passing
 * condition: the adapter not ready, libcurl out of memory) or failed with
 * the reason (anything that would recur on every attempt). */
static void start_send(struct dloop *d, struct acct_state *as, const struct message *m)
{
	struct hr_err err = {0};
	struct xfer *x = calloc(1, sizeof *x);
	if (!x)
		abort();
	x->as = as;
	hr_strlcpy(x->message_id, m->id, sizeof x->message_id);
	x->attempts = m->attempts;
	x->max_attempts = m->max_attempts > 0 ? m->max_attempts : d->o.max_attempts;
	x->policy = m->policy;
	bool retryable = x->attempts < x->max_attempts;
	int rc = as->acct->ops->build_send(as->acct, m, &x->req, &err);
	if (rc == HR_EBUSY && retryable) {
		retry_later(d, m, "not_ready", err.msg);
		xfer_free(x);
		return;
	}
	if (rc != 0) {
		fail_now(d, m, "build_failed", err.msg);
		xfer_free(x);
		return;
	}
	x->easy = easy_take(d);
	if (!x->easy)
		rc = hr_fail(&err, HR_ENOMEM, NULL, "libcurl could not make a transfer handle");
	else
		rc = xfer_setopts(d, x, &err);
	if (rc == HR_ENOMEM && retryable) {
		retry_later(d, m, "internal", err.msg);
		xfer_free(x);
		return;
	}
	if (rc != 0) {
		hr_log(HR_LOG_ERROR, "dispatch", "message %s not sent: %s", m->id, err.msg);
		fail_now(d, m, "internal", err.msg);
		xfer_free(x);
		return;
	}
	x->started = hr_mono_us();
	if (curl_multi_add_handle(d->multi, x->easy) != CURLM_OK) {
		fail_now(d, m, "internal", "could not start the HTTP transfer");
		xfer_free(x);
		return;
	}
	x->next = d->xfers;
	if (d->xfers)
		d->xfers->prev = x;
	d->xfers = x;
	d->inflight++;
	as->inflight++;
	d->tenants[as->tenant].inflight++;
	metrics_inflight_add(1);
	metrics_send(m->channel, M_SEND_ATTEMPTED, 1);
}

/*
 * Whether a transfer that ended without an HTTP answer may have delivered
 * its request to the provider: -1 when it provably did not, else the
 * reason (enum metric_unknown) the outcome is unknown.
 *
 * Provably not: libcurl failed before the HTTP request could be written.
 * Name resolution and TCP connect errors (CURLE_COULDNT_RESOLVE_HOST,
 * _RESOLVE_PROXY, _COULDNT_CONNECT) and TLS handshake errors
 * (CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION and the
 * certificate/cipher set-up errors) all come before the first byte of the
 * request. For any other error (a timeout, a send or receive error, an
 * empty reply) libcurl's timers say how far the transfer got:
 * CURLINFO_PRETRANSFER_TIME_T stays 0 until the connection (and TLS) is up
 * and the request is about to be written, and CURLINFO_REQUEST_SIZE counts
 * the request bytes issued. Both 0: the error struck while connecting
 * (e.g. the whole-request timeout ran out during a slow connect), nothing
 * was written. Either non-zero: some of the request may have gone out, and
 * a provider that got it whole may have accepted it, so the outcome is
 * unknown. The connect timer is not used: it reads 0 on a reused
 * keep-alive connection, where the request certainly was written. When a
 * timer cannot be read the answer is "unknown", the side that never sends
 * an at_most_once message twice.
 */
static int xfer_unknown_reason(CURL *e, CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return -1;
	default:
		break;
	}
	curl_off_t pretransfer = 1;
	long request_size = 1;
	if (curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) != CURLE_OK ||
	    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &request_size) != CURLE_OK)
		pretransfer = request_size = 1;
	if (pretransfer == 0 && request_size == 0)
		return -1;
	return cc == CURLE_OPERATION_TIMEDOUT ? M_UNK_TIMEOUT : M_UNK_CONN_LOST;
}

/* Turns a finished transfer into an outcome to record. */
static void finish_send(struct dloop *d, struct xfer *x, CURLcode cc)
{
	struct acct_state *as = x->as;
	const char *ch = as->acct->ops->name;
	long status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	int64_t now = hr_mono_us();
	int64_t latency = now - x->started;
	metrics_send_latency(ch, latency);

	struct send_outcome o = {0};
	const char *body = x->resp ? x->resp : "";
	size_t len = x->resp_len;
	if (cc != CURLE_OK) {
		body = x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc);
		len = strlen(body);
	}
	as->acct->ops->parse_send(as->acct, status, body, len,
	                          x->retry_after[0] ? x->retry_after : NULL, &o);
	channel_outcome_sanitize(as->acct, status, &o);

	if (o.cls == OUTCOME_OK && !o.provider_id[0] && x->req.provider_id[0])
		hr_strlcpy(o.provider_id, x->req.provider_id, sizeof o.provider_id);
	/* An HTTP 504 is a proxy in front of the provider saying it stopped
	 * waiting for it: the provider had the request and may have acted on
	 * it, exactly as when our own timeout runs out after the request was
	 * written. Other 5xx answers are the provider's own statement that it
	 * did not take the message (Graph 131000/131016, Twilio 20500/20503,
	 * RBM UNAVAILABLE), retried under both policies. */
	int unknown = cc != CURLE_OK ? xfer_unknown_reason(x->easy, cc)
	              : status == 504 ? (int)M_UNK_GATEWAY
	                              : -1;
	struct send_result *r = result_add(d, x->message_id, x->attempts);
	if (unknown >= 0) {
		r->unknown_reason = metrics_unknown_name((enum metric_unknown)unknown);
		/* Never sent again by itself: at_most_once, or no attempt left
		 * (another would be a duplicate nobody allowed). The id the
		 * sender chose (RBM's messageId) is kept, so that a receipt for
		 * this very request settles the message. */
		if (x->policy == POLICY_AT_MOST_ONCE || x->attempts >= x->max_attempts) {
			r->kind = SEND_UNKNOWN;
			r->http_status = 0;
			r->latency_us = latency;
			r->error_class = "unknown";
			hr_strlcpy(r->provider_id, x->req.provider_id, sizeof r->provider_id);
			hr_strlcpy(r->error_code, "unknown_outcome", sizeof r->error_code);
			hr_utf8_copy(r->error_text, o.error_text, sizeof r->error_text);
			metrics_unknown(ch, (enum metric_unknown)unknown, 1);
			health_send(as->acct->id, HEALTH_FAILED, "unknown_outcome", hr_now_us());
			return;
		}
		metrics_resend_unknown(ch, (enum metric_unknown)unknown, 1);
	}
	r->http_status = (int)status;
	r->latency_us = latency;
	hr_strlcpy(r->provider_id, o.provider_id, sizeof r->provider_id);
	hr_strlcpy(r->error_code, o.error_code, sizeof r->error_code);
	hr_utf8_copy(r->error_text, o.error_text, sizeof r->error_text);
	r->suppress = o.suppress_recipient;
	if (o.new_recipient[0]) {
		/* The recipient moved (Telegram group -> supergroup): resend there
		 * at once; the store rewrites and remembers the address. */
		hr_strlcpy(r->new_recipient, o.new_recipient, sizeof r->new_recipient);
		r->kind = SEND_RETRY;
		r->due_at = hr_now_us();
		r->error_class = "transient";
		metrics_send(ch, M_SEND_RETRIED, 1);
		health_send(as->acct->id, HEALTH_RETRIED, o.error_code, hr_now_us());
		return;
	}
	switch (o.cls) {
	case OUTCOME_OK:
		r->kind = SEND_OK;
		metrics_send(ch, M_SEND_SUCCEEDED, 1);
		health_send(as->acct->id, HEALTH_OK, NULL, hr_now_us());
		break;
	case OUTCOME_RATE_LIMITED:
	case OUTCOME_TRANSIENT: {
		r->error_class = o.cls == OUTCOME_RATE_LIMITED ? "rate_limited" : "transient";
		if (o.cls == OUTCOME_RATE_LIMITED)
			r->rate_scope = o.rate_scope == RATE_SCOPE_RECIPIENT ? "recipient" : "account";
		/* A limit on the sender pauses the whole account; a limit on one
		 * recipient (WhatsApp's pair rate) only delays this message below,
		 * so the account's other recipients keep their full rate. */
		if (o.cls == OUTCOME_RATE_LIMITED && o.rate_scope != RATE_SCOPE_RECIPIENT) {
			int64_t hold = o.retry_after_us > 0 ? o.retry_after_us : 1000000;
			ratelimit_pause(&as->rl, hold, now);
			char why[128];
			snprintf(why, sizeof why, "rate limited by the provider (%s)",
			         o.error_code[0] ? o.error_code : "429");
			health_hold(as->acct->id, hr_now_us() + hold, why);
		}
		if (x->attempts >= x->max_attempts) {
			r->kind = SEND_FAILED;
			char text[HR_ERRTEXT_MAX];
			snprintf(text, sizeof text, "gave up after %d attempts: %.440s",
			         x->attempts, o.error_text);
			hr_strlcpy(r->error_text, text, sizeof r->error_text);
			metrics_send(ch, M_SEND_FAILED, 1);
			health_send(as->acct->id, HEALTH_FAILED, o.error_code, hr_now_us());
			break;
		}
		int64_t delay = backoff_delay_us(x->attempts, d->o.backoff_base_us,
		                                 d->o.backoff_max_us, hr_random_unit());
		if (o.retry_after_us > delay)
			delay = o.retry_after_us;
		r->kind = SEND_RETRY;
		r->due_at = hr_now_us() + delay;
		metrics_send(ch, M_SEND_RETRIED, 1);
		health_send(as->acct->id, HEALTH_RETRIED, o.error_code, hr_now_us());
		break;
	}
	case OUTCOME_PERMANENT:
		r->kind = SEND_FAILED;
		r->error_class = "permanent";
		metrics_send(ch, M_SEND_FAILED, 1);
		health_send(as->acct->id, HEALTH_FAILED, o.error_code, hr_now_us());
		if (o.account_blocked && !as->blocked) {
			as->blocked = true;
			char why[128];
			snprintf(why, sizeof why, "the provider refused its credentials (%s)",
			         o.error_code);
			health_blocked(as->acct->id, true, why);
			hr_log(HR_LOG_ERROR, "dispatch",
			       "account %s stopped: the provider refused its credentials (%s %s)",
			       as->acct->id, o.error_code, o.error_text);
		}
		break;
	}
}

static void reap(struct dloop *d)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(d->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		CURL *e = msg->easy_handle;
		CURLcode cc = msg->data.result;
		if (curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x) != CURLE_OK || !x) {
			/* Every handle we add carries its xfer: a bug. */
			hr_log(HR_LOG_ERROR, "dispatch", "finished transfer without its state");
			abort();
		}
		curl_multi_remove_handle(d->multi, e);
		xfer_unlink(d, x);
		finish_send(d, x, cc);
		x->as->inflight--;
		d->tenants[x->as->tenant].inflight--;
		easy_keep(d, x);
		xfer_free(x);
		d->inflight--;
		metrics_inflight_add(-1);
	}
}

/* ---- claiming ----------------------------------------------------------- */

static int imin(int a, int b)
{
	return a < b ? a : b;
}

static int imax(int a, int b)
{
	return a > b ? a : b;
}

/* Whether an account could use a slot now: not stopped, not known to have
 * nothing due, and with a token to send. */
static bool acct_wants(const struct acct_state *as, int64_t now)
{
	return !as->blocked && !as->paused && as->idle_until <= now &&
	       ratelimit_wait_us(&as->rl, now) == 0;
}

/* which accounts an operator paused (POST /v1/channels/{id}/pause
 * on any node), read from the store every PAUSE_CHECK_US and whenever the
 * dispatcher is notified (this node's API notifies it at once). One small
 * read of the few paused accounts; when it fails the last answer holds. */
#define PAUSE_CHECK_US 2000000
static void pauses_refresh(struct dloop *d, int64_t now)
{
	d->next_pause_check = now + PAUSE_CHECK_US;
	struct account_pause_row *v = NULL;
	size_t n = 0;
	if (!d->st->ops->account_pauses || d->st->ops->account_pauses(d->st, &v, &n) != 0)
		return;
	for (size_t i = 0; i < d->naccts; i++) {
		bool paused = false;
		for (size_t k = 0; k < n && !paused; k++)
			paused = strcmp(v[k].account_id, d->accts[i].acct->id) == 0;
		if (d->accts[i].paused && !paused)
			d->accts[i].idle_until = 0; /* resumed: look at once */
		d->accts[i].paused = paused;
	}
	free(v);
}

/* Counts the accounts, and per tenant, that want slots this round. */
static struct shares shares_count(struct dloop *d, int64_t now)
{
	struct shares sh = {0, 0};
	for (size_t i = 0; i < d->ntenants; i++)
		d->tenants[i].wanting = 0;
	for (size_t i = 0; i < d->naccts; i++) {
		if (!acct_wants(&d->accts[i], now))
			continue;
		sh.accounts++;
		if (d->tenants[d->accts[i].tenant].wanting++ == 0)
			sh.tenants++;
	}
	return sh;
}

/*
 * How many more transfers an account may start now; 0 means skip it this
 * turn (it keeps its place, nothing waits). A slow or dead provider holds
 * its slots for seconds, so slots are shared by who holds them, not by who
 * sends the most:
 *  - the pool is split evenly among the tenants that want slots, and a
 *    tenant's part evenly among its accounts that want slots, so a tenant
 *    with many accounts gets no more than one with a single account;
 *  - whatever the split, an account may reach max_in_flight_per_account and
 *    a tenant max_in_flight_per_tenant (floors), so a share is never uselessly
 *    small; and an account alone uses the whole pool (work-conserving) ...
 *  - ... except the last `reserve` free slots, which only an account and
 *    tenant with fewer than `reserve_quota` transfers in flight may take: a
 *    newcomer's send starts at once even while slow providers hold all the
 *    rest. Transfers are never taken back: an account above its share
 *    (because others arrived) gets none of the slots that free up until it
 *    is back under it, so shares converge as the slow transfers end;
 *  - in one round an account takes at most its share of the free slots, so
 *    one claim never takes what the next account in the round is due.
 */
static int acct_room(const struct dloop *d, const struct acct_state *as, const struct shares *sh)
{
	const struct tenant_state *t = &d->tenants[as->tenant];
	int pool = d->o.max_in_flight;
	int tenants = imax(sh->tenants, 1), accounts = imax(t->wanting, 1);
	int tenant_cap = imax(d->tenant_floor, (pool + tenants - 1) / tenants);
	int acct_cap = imax(d->acct_floor, (tenant_cap + accounts - 1) / accounts);
	int free_slots = pool - d->inflight;
	int open = imax(free_slots - d->reserve, 0);
	int held = imax(as->inflight, t->inflight);
	if (held < d->reserve_quota)
		open += imin(d->reserve_quota - held, imin(free_slots, d->reserve));
	int room = imin(acct_cap - as->inflight, tenant_cap - t->inflight);
	room = imin(room, open);
	room = imin(room, imax(free_slots / tenants / accounts, 1));
	return imax(imin(room, CLAIM_MAX), 0);
}

/* ---- the plugin gate (see the top) -------------------------------------- */

/* A worker finished a gated job: wake the loop (cheap, any thread). */
static void gate_wake(void *arg)
{
	struct dloop *d = arg;
	if (!atomic_exchange(&d->gate_woken, true))
		curl_multi_wakeup(d->multi);
}

/* The plugin whose before_send m passes first, or NULL. A message its
 * plugin just moved to another route (or whose route change the store
 * refused) is sent without asking again: a plugin cannot bounce a message
 * between accounts. */
static const struct plugin *gate_plugin(const struct dloop *d, const struct message *m)
{
	if (!d->o.plugins || !m->unit[0])
		return NULL;
	if (strcmp(m->error_code, "plugin_rerouted") == 0 ||
	    strcmp(m->error_code, "plugin_route_refused") == 0)
		return NULL;
	const struct plugin *pl = plugins_for_unit(d->o.plugins, m->tenant_id, m->unit);
	return plugin_has(pl, PH_BEFORE_SEND) ? pl : NULL;
}

static void gate_count(struct dloop *d, struct acct_state *as, int delta)
{
	d->inflight += delta;
	as->inflight += delta;
	d->tenants[as->tenant].inflight += delta;
}

/* Takes m (its heap fields move to the gate; m is left zeroed) and submits
 * its hook. Never waits. */
static void gate_enter(struct dloop *d, struct acct_state *as, struct message *m,
                       const struct plugin *pl)
{
	struct gated *g = calloc(1, sizeof *g);
	if (!g)
		abort();
	g->as = as;
	g->m = *m;
	memset(m, 0, sizeof *m);
	g->job = plugins_before_send_submit(d->o.plugins, pl, &g->m, gate_wake, d);
	g->next = d->gated;
	d->gated = g;
	gate_count(d, as, 1);
}

/* The hook did not answer in a usable way: nothing is sent. The message
 * is retried later like a transient failure, or fails once its attempts
 * are spent; either way its audit event names the plugin and the reason. */
static void gate_fail(struct dloop *d, const struct message *m, enum plugin_outcome o,
                      const char *reason)
{
	const char *code = o == PO_TIMEOUT ? "plugin_timeout"
	                   : o == PO_BUSY  ? "plugin_busy"
	                                   : "plugin_error";
	int max = m->max_attempts > 0 ? m->max_attempts : d->o.max_attempts;
	if (m->attempts < max) {
		retry_later(d, m, code, reason);
		return;
	}
	struct send_result *r = result_add(d, m->id, m->attempts);
	r->kind = SEND_FAILED;
	hr_strlcpy(r->error_code, code, sizeof r->error_code);
	hr_utf8_copy(r->error_text, reason, sizeof r->error_text);
	r->error_class = "permanent";
	metrics_send(m->channel, M_SEND_FAILED, 1);
}

static void gate_skip(struct dloop *d, const struct message *m, const char *reason)
{
	struct send_result *r = result_add(d, m->id, m->attempts);
	r->kind = SEND_SKIPPED;
	hr_strlcpy(r->error_code, "plugin_skip", sizeof r->error_code);
	hr_utf8_copy(r->error_text, reason, sizeof r->error_text);
}

/* Whether a message may move from channel `from` to `to` (the store checks
 * it again: lifecycle.c reroute_one). */
static bool route_channels_ok(const char *from, const char *to)
{
	static const char *const phone[] = {"whatsapp", "sms", "rcs"};
	if (strcmp(from, to) == 0)
		return true;
	bool a = false, b = false;
	for (size_t i = 0; i < 3; i++) {
		a = a || strcmp(from, phone[i]) == 0;
		b = b || strcmp(to, phone[i]) == 0;
	}
	return a && b;
}

/*
 * before_send asked for another route (herald_verdict_route). Checked here
 * against the accounts this dispatcher knows, without a store call (the
 * loop never waits): an account of the message's tenant, on the channel
 * asked for, that can send, a channel that can carry the message. A
 * refused change is an audit note and the message is sent as it was, now.
 * An accepted one sends nothing: SEND_REROUTE queues the message on the
 * new account (the store checks the tenant again), where it is claimed
 * under that account's rate limit and share like any other. The same
 * account as now is no change at all.
 */
static void gate_route(struct dloop *d, struct gated *g, struct plugin_route *rt,
                       const char *reason)
{
	const struct message *m = &g->m;
	/* Any account of the set, not only this loop's: the new account may
	 * be served by another loop (dispatch.threads), which claims it once
	 * it is queued there. */
	const struct channel_account *to = NULL, *a;
	/* An account the API made is "<tenant>~<name>" and its tenant calls it
	 * <name>; a unit sends from its own accounts and the tenant's shared
	 * ones (a sibling unit's is as unknown as another tenant's), as the
	 * API's resolve_account. */
	char gid[2 * HR_NAME_MAX];
	snprintf(gid, sizeof gid, "%s~%s", m->tenant_id, rt->account);
	for (size_t i = 0; !to && (a = account_set_at(d->set, i)); i++) {
		if (strcmp(a->tenant_id, m->tenant_id) != 0 ||
		    (a->unit[0] && strcmp(a->unit, m->unit) != 0))
			continue;
		if (rt->account[0] ? strcmp(a->id, rt->account) == 0 || strcmp(a->id, gid) == 0
		                   : strcmp(a->ops->name, rt->channel) == 0)
			to = a;
	}
	const char *chan = rt->channel[0] ? rt->channel : to ? to->ops->name : "";
	const char *text = rt->text ? rt->text : m->body;
	const char *refused = NULL;
	if (!to)
		refused = rt->account[0] ? "no such account of the message's tenant"
		                         : "the tenant has no account on that channel";
	else if (strcmp(to->ops->name, chan) != 0)
		refused = "the account is not on that channel";
	else if (health_is_blocked(to->id)) /* its loop's verdict, read lock-free */
		refused = "the account cannot send: the provider refused its credentials";
	else if (!route_channels_ok(m->channel, chan))
		refused = "a message cannot move between these channels";
	else if (strcmp(m->channel, chan) != 0 && (!text || !*text))
		refused = "no text to send on the new channel";
	if (!refused && strcmp(to->id, g->as->acct->id) == 0) {
		start_send(d, g->as, m);
		return;
	}
	struct send_result *r = result_add(d, m->id, m->attempts);
	hr_strlcpy(r->route_channel, chan, sizeof r->route_channel);
	hr_strlcpy(r->route_account, to ? to->id : rt->account, sizeof r->route_account);
	if (refused) {
		r->kind = SEND_NOTE;
		r->note_type = "route_refused";
		hr_strlcpy(r->error_code, "plugin_route_refused", sizeof r->error_code);
		snprintf(r->error_text, sizeof r->error_text, "%.300s (route to %s refused: %s)",
		         reason, rt->account[0] ? rt->account : rt->channel, refused);
		start_send(d, g->as, m);
		return;
	}
	if (strcmp(m->channel, chan) != 0 && !(r->route_text = strdup(text))) {
		/* Out of memory: the message goes as it was, the change noted. */
		r->kind = SEND_NOTE;
		r->note_type = "route_refused";
		hr_strlcpy(r->error_code, "plugin_route_refused", sizeof r->error_code);
		snprintf(r->error_text, sizeof r->error_text, "%.300s (route to %s refused: out of memory)",
		         reason, rt->account[0] ? rt->account : rt->channel);
		start_send(d, g->as, m);
		return;
	}
	r->kind = SEND_REROUTE;
	hr_strlcpy(r->error_code, "plugin_rerouted", sizeof r->error_code);
	hr_utf8_copy(r->error_text, reason, sizeof r->error_text);
}

/* Settles every gated message whose hook finished or whose deadline passed;
 * returns the earliest deadline still pending (0: none). */
static int64_t gate_poll(struct dloop *d)
{
	atomic_store(&d->gate_woken, false);
	int64_t now = hr_mono_us(), next = 0;
	struct gated **pp = &d->gated;
	while (*pp) {
		struct gated *g = *pp;
		enum plugin_outcome o = PO_BUSY;
		bool skip = false;
		char reason[PLUGIN_REASON_MAX];
		if (!g->job)
			snprintf(reason, sizeof reason, "before_send not run: out of memory");
		else if (!plugins_job_poll(g->job, now, &o, &skip, reason, sizeof reason)) {
			int64_t dl = plugins_job_deadline(g->job);
			if (!next || dl < next)
				next = dl;
			pp = &g->next;
			continue;
		}
		*pp = g->next;
		gate_count(d, g->as, -1);
		struct plugin_route rt;
		if (o == PO_OK && !skip && plugins_job_route(g->job, &rt)) {
			gate_route(d, g, &rt, reason);
			free(rt.text);
		} else if (o == PO_OK && !skip)
			start_send(d, g->as, &g->m);
		else if (o == PO_OK)
			gate_skip(d, &g->m, reason);
		else
			gate_fail(d, &g->m, o, reason);
		plugins_job_release(g->job);
		message_clear(&g->m);
		free(g);
	}
	return next;
}

/* On the writer's thread, once the claim's transaction ended: every
 * message it claimed is held at once (store/hold.c), before the loop even
 * sees it, and the loop is woken. */
static void claim_answered(void *arg, int rc, struct message *out, size_t n)
{
	struct pclaim *c = arg;
	struct dloop *d = c->d;
	c->rc = rc;
	c->n = n;
	for (size_t i = 0; i < n; i++)
		if (out[i].status == MSG_SENDING)
			(void)store_hold(d->st, out[i].id, c->hold_until);
	pthread_mutex_lock(&d->claim_lock);
	c->answer = d->answered;
	d->answered = c;
	pthread_mutex_unlock(&d->claim_lock);
	if (!atomic_exchange(&d->claim_woken, true))
		curl_multi_wakeup(d->multi);
}

/* Asks the writer for up to `want` (tokens already taken, slots counted
 * here) of the account's due messages. false when it could not be asked
 * (the tokens and slots are given back). */
static bool claim_ask(struct dloop *d, struct acct_state *as, int want)
{
	struct pclaim *c = d->spare;
	if (c)
		d->spare = c->next;
	else if (!(c = calloc(1, sizeof *c)))
		return false;
	c->d = d;
	hr_strlcpy(c->account_id, as->acct->id, sizeof c->account_id);
	c->want = want;
	c->rc = 0;
	c->n = 0;
	c->hold_until = hr_now_us() + 10 * d->o.lease_us;
	gate_count(d, as, want);
	as->claiming = true;
	c->next = d->claiming;
	d->claiming = c;
	int rc = d->st->ops->claim_async(d->st, as->acct->id, 0, d->o.lease_us, want, c->out,
	                                 claim_answered, c);
	if (rc == 0)
		return true;
	hr_log(HR_LOG_WARN, "dispatch", "claim for %s failed: %s", as->acct->id, hr_code_name(rc));
	d->claiming = c->next;
	as->claiming = false;
	gate_count(d, as, -want);
	as->rl.tokens += want;
	c->next = d->spare;
	d->spare = c;
	return false;
}

static struct acct_state *acct_find(struct dloop *d, const char *id)
{
	for (size_t i = 0; i < d->naccts; i++)
		if (strcmp(d->accts[i].acct->id, id) == 0)
			return &d->accts[i];
	return NULL;
}

static int64_t acct_idle(struct dloop *d, struct acct_state *as, int64_t now);

/* Starts what one answered claim gave; its slots and unused tokens go back. */
static void claim_start(struct dloop *d, struct pclaim *c)
{
	struct acct_state *as = acct_find(d, c->account_id);
	if (!as) { /* the account set never shrinks: cannot happen */
		hr_log(HR_LOG_ERROR, "dispatch", "claim answered for unknown account %s",
		       c->account_id);
		d->inflight -= c->want;
		for (size_t i = 0; i < c->n; i++) {
			store_unhold(d->st, c->out[i].id);
			message_clear(&c->out[i]);
		}
		return;
	}
	gate_count(d, as, -c->want);
	as->claiming = false;
	if (c->rc != 0)
		hr_log(HR_LOG_WARN, "dispatch", "claim for %s failed: %s", as->acct->id,
		       hr_code_name(c->rc));
	int sent = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct message *m = &c->out[i];
		if (m->status == MSG_SUPPRESSED) {
			suppressed(d, m);
		} else if (m->status == MSG_SENDING) {
			/* Held (claim_answered) until its outcome is committed
			 * (record_done). Every path of start_send ends in an outcome. */
			const struct plugin *pl = gate_plugin(d, m);
			if (pl)
				gate_enter(d, as, m, pl);
			else
				start_send(d, as, m);
			sent++;
		}
		/* else: screened at claim (a cancelled campaign's): not sent */
		message_clear(m);
	}
	/* Give back tokens we did not use. */
	as->rl.tokens += c->want - sent;
	if (c->rc != 0 || (int)c->n < c->want)
		(void)acct_idle(d, as, hr_mono_us()); /* drained: sleep until its next due */
	else
		as->idle_until = 0; /* more may be due: ask again at once */
}

/* Takes the claims the writer answered and starts their sends. Never waits
 * (the lock guards a list push). */
static void claims_take(struct dloop *d)
{
	if (!atomic_exchange(&d->claim_woken, false))
		return;
	pthread_mutex_lock(&d->claim_lock);
	struct pclaim *list = d->answered;
	d->answered = NULL;
	pthread_mutex_unlock(&d->claim_lock);
	while (list) {
		struct pclaim *c = list;
		list = c->answer;
		for (struct pclaim **pp = &d->claiming; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		claim_start(d, c);
		c->n = 0;
		c->next = d->spare;
		d->spare = c;
	}
}

/* The account had nothing more due: it sleeps until its next due message
 * (or a notify). Returns when to look again. */
static int64_t acct_idle(struct dloop *d, struct acct_state *as, int64_t now)
{
	int64_t due = 0;
	int rc = d->st->ops->next_due(d->st, as->acct->id, &due);
	if (rc != 0) {
		hr_log(HR_LOG_WARN, "dispatch", "next due time for %s failed: %s", as->acct->id,
		       hr_code_name(rc));
		due = 0; /* look again after the idle poll */
	}
	int64_t until = now + IDLE_POLL_US;
	if (due > 0) {
		int64_t delta = due - hr_now_us();
		if (delta < IDLE_POLL_US)
			until = now + (delta > 0 ? delta : 0);
	}
	as->idle_until = until > now ? until : now + 1000;
	return as->idle_until;
}

/* Fills free transfer slots fairly across tenants and accounts (acct_room).
 * Returns the monotonic time at which claiming should be tried again if
 * nothing wakes us. Never waits for a slot: an account at its share is
 * skipped until a transfer ends (which wakes the loop). */
static int64_t fill(struct dloop *d)
{
	int64_t now = hr_mono_us();
	int64_t wake = now + IDLE_POLL_US;
	bool again = true, recounted = false;
	while (again && d->inflight < d->o.max_in_flight) {
		again = false;
		struct shares sh = shares_count(d, now);
		bool capped = false, drained = false;
		for (size_t k = 0; k < d->naccts && d->inflight < d->o.max_in_flight; k++) {
			struct acct_state *as = &d->accts[(d->rr + k) % d->naccts];
			if (as->blocked || as->paused || as->claiming || as->idle_until > now)
				continue;
			if (!acct_wants(as, now)) { /* no token yet */
				int64_t w = ratelimit_wait_us(&as->rl, now);
				if (now + w < wake)
					wake = now + w;
				continue;
			}
			int want = acct_room(d, as, &sh);
			if (want == 0) {
				capped = true;
				continue;
			}
			/* A claim costs a writer job whatever its size, and an
			 * account asks one at a time: while its transfers run, it
			 * gathers freed slots until a quarter of what it may hold
			 * is free (each transfer that ends wakes the loop), for at
			 * most CLAIM_GATHER_US after its last claim, so slots a slow
			 * provider keeps do not leave the rest unused. */
			if (as->inflight > 0 && want < imin(as->inflight + want, CLAIM_MAX) / 4 &&
			    now - as->claim_at < CLAIM_GATHER_US) {
				if (as->claim_at + CLAIM_GATHER_US < wake)
					wake = as->claim_at + CLAIM_GATHER_US;
				continue;
			}
			as->claim_at = now;
			int tokens = ratelimit_take(&as->rl, want, now);
			if (tokens == 0)
				continue; /* acct_wants saw a token: cannot happen */
			/* Asked, not waited for: the answer wakes the loop. An account
			 * that could not be asked is looked at again after the idle
			 * poll. */
			if (!claim_ask(d, as, tokens)) {
				as->idle_until = now + IDLE_POLL_US;
				drained = true;
			}
		}
		/* An account that drained leaves a bigger share to those held at
		 * theirs: count again, once per fill so a store that keeps saying
		 * "due now" cannot spin the loop. */
		if (capped && drained && !recounted)
			again = recounted = true;
		d->rr = (d->rr + 1) % (d->naccts ? d->naccts : 1);
		now = hr_mono_us();
	}
	return wake;
}

static void *dispatch_main(void *arg)
{
	struct dloop *d = arg;
	int64_t drain_until = 0;
	for (;;) {
		/* Claims the writer answered start first: their sends are due. */
		claims_take(d);
		int64_t now = hr_mono_us();
		bool stopping = atomic_load(&d->stop);
		if (stopping) {
			/* Stop claiming, but let transfers in flight finish and be
			 * recorded: abandoning them would send each one again when
			 * its lease expired (a duplicate on every restart). A claim
			 * still on the writer is always waited for (the writer
			 * answers it within its group; it holds the claim's slots,
			 * so inflight is not 0 before), and what it claimed is sent:
			 * left claimed, an at_most_once message would become UNKNOWN
			 * at its lease's end although it never went out. */
			if (!drain_until)
				drain_until = now + d->o.http_timeout_us + 1000000;
			if (!d->claiming && (d->inflight == 0 || now >= drain_until))
				break;
		}
		/* reconcile_every_us 0: the reconciler's thread expires leases
		 * (reconciler.c) and wakes us with dispatcher_notify. Messages
		 * whose outcomes are kept after a failed recording stay held
		 * (store_hold: record_done unholds only once they are committed),
		 * so neither expiry sends them again nor fences the outcome out. */
		if (!stopping && d->o.reconcile_every_us > 0 && now >= d->next_reconcile) {
			int n = 0;
			if (d->st->ops->requeue_expired(d->st, 0, &n) == 0 && n > 0) {
				hr_log(HR_LOG_WARN, "dispatch",
				       "requeued %d messages whose lease expired", n);
				/* Every loop looks at its accounts again (they may be
				 * any loop's). */
				dispatcher_notify(d->parent);
			}
			d->next_reconcile = now + d->o.reconcile_every_us;
		}
		watch_expire(d, now);
		if (atomic_exchange(&d->notified, false)) {
			sync_accounts(d, false);
			for (size_t i = 0; i < d->naccts; i++)
				d->accts[i].idle_until = 0;
			pauses_refresh(d, now);
		} else if (!stopping && now >= d->next_pause_check) {
			pauses_refresh(d, now);
		}

		int64_t wake = stopping ? now + 50000 : fill(d);
		if (d->o.reconcile_every_us > 0 && wake > d->next_reconcile)
			wake = d->next_reconcile;

		int running = 0;
		curl_multi_perform(d->multi, &running);
		reap(d);
		int64_t gate_next = d->gated ? gate_poll(d) : 0;
		flush_results(d);

		now = hr_mono_us();
		if (gate_next && gate_next < wake)
			wake = gate_next;
		int timeout_ms = wake > now ? (int)((wake - now + 999) / 1000) : 0;
		if (timeout_ms > 1000)
			timeout_ms = 1000;
		/* Sync waiters time out with 20 ms precision. */
		if (timeout_ms > 20 && watch_pending(d))
			timeout_ms = 20;
		if (timeout_ms > HELD_RETRY_US / 1000 && holding(d))
			timeout_ms = HELD_RETRY_US / 1000;
		if (!atomic_load(&d->notified) && !atomic_load(&d->gate_woken) &&
		    !atomic_load(&d->claim_woken))
			curl_multi_poll(d->multi, NULL, 0, timeout_ms, NULL);
		claims_take(d);
		curl_multi_perform(d->multi, &running);
		reap(d);
		if (d->gated)
			(void)gate_poll(d);
		flush_results(d);
	}
	flush_results(d);
	return NULL;
}

/* ---- accounts ------------------------------------------------------------- */

/*
 * Brings the per-account state in line with the account set when accounts
 * were added or changed (through the API). State of accounts that remain
 * (token bucket, pauses, blocked) is kept; a changed rate limit restarts the
 * bucket. Runs on the dispatcher thread, or before it starts.
 */
static int sync_accounts(struct dloop *d, bool force)
{
	unsigned gen = account_set_generation(d->set);
	if (!force && gen == d->set_gen)
		return 0;
	size_t all = 0;
	while (account_set_at(d->set, all))
		all++;
	struct acct_state *na = calloc(all ? all : 1, sizeof *na);
	if (!na)
		return HR_ENOMEM;
	int64_t now = hr_mono_us();
	size_t n = 0;
	for (size_t j = 0; j < all; j++) {
		struct channel_account *a = account_set_at(d->set, j);
		if (!a) /* the set cannot shrink; defensive */
			break;
		if (acct_shard(a->id, d->parent->n) != d->shard)
			continue;
		size_t i = n++;
		struct acct_state *old = NULL;
		for (size_t k = 0; k < d->naccts; k++)
			if (strcmp(d->accts[k].acct->id, a->id) == 0)
				old = &d->accts[k];
		if (old && old->rl.rate == (a->rate_limit > 0 ? a->rate_limit : 1)) {
			na[i] = *old;
		} else {
			double rate = a->rate_limit;
			ratelimit_init(&na[i].rl, rate, rate < 1 ? 1 : rate, now);
		}
		na[i].acct = a;
		if (old && old->acct != a && old->blocked) {
			na[i].blocked = false; /* new credentials: try again */
			health_blocked(a->id, false, NULL);
		}
	}
	/* Tenants, in order of first appearance. */
	struct tenant_state *nt = calloc(n ? n : 1, sizeof *nt);
	if (!nt) {
		free(na);
		return HR_ENOMEM;
	}
	size_t ntenants = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < ntenants && strcmp(nt[k].id, na[i].acct->tenant_id) != 0)
			k++;
		if (k == ntenants)
			hr_strlcpy(nt[ntenants++].id, na[i].acct->tenant_id, sizeof nt[0].id);
		na[i].tenant = k;
		na[i].inflight = 0;
	}
	/* In-flight transfers point at states: remap them, and count them
	 * again (an account may have moved to another tenant). */
	for (struct xfer *x = d->xfers; x; x = x->next)
		for (size_t i = 0; i < n; i++)
			if (strcmp(na[i].acct->id, x->as->acct->id) == 0) {
				x->as = &na[i];
				na[i].inflight++;
				nt[na[i].tenant].inflight++;
			}
	for (struct gated *g = d->gated; g; g = g->next)
		for (size_t i = 0; i < n; i++)
			if (strcmp(na[i].acct->id, g->as->acct->id) == 0) {
				g->as = &na[i];
				na[i].inflight++;
				nt[na[i].tenant].inflight++;
			}
	/* Claims on the writer hold their slots, and their accounts ask no
	 * other claim until theirs is answered. */
	for (size_t i = 0; i < n; i++)
		na[i].claiming = false;
	for (struct pclaim *c = d->claiming; c; c = c->next)
		for (size_t i = 0; i < n; i++)
			if (strcmp(na[i].acct->id, c->account_id) == 0) {
				na[i].claiming = true;
				na[i].inflight += c->want;
				nt[na[i].tenant].inflight += c->want;
			}
	free(d->accts);
	free(d->tenants);
	d->accts = na;
	d->naccts = n;
	d->tenants = nt;
	d->ntenants = ntenants;
	d->set_gen = gen;
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

/*
 * One loop: its own libcurl multi handle, transfers, claims and shares, for
 * its own thread (started by dispatcher_start once every loop exists: a
 * loop wakes the others). `o` is this loop's part of the options
 * (loops_opts).
 */
static int loop_new(struct dispatcher *dd, unsigned shard, const struct dispatch_opts *o,
                    struct dloop **out, struct hr_err *err)
{
	struct dloop *d = calloc(1, sizeof *d);
	if (!d)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	d->st = dd->st;
	d->o = *o;
	d->parent = dd;
	d->w = &dd->w;
	d->shard = shard;
	int pool = d->o.max_in_flight;
	d->acct_floor =
	    d->o.max_in_flight_per_account > 0 ? d->o.max_in_flight_per_account : imax(pool / 4, 1);
	d->tenant_floor =
	    d->o.max_in_flight_per_tenant > 0 ? d->o.max_in_flight_per_tenant : imax(pool / 2, 1);
	d->acct_floor = imin(d->acct_floor, pool);
	d->tenant_floor = imin(d->tenant_floor, pool);
	/* 1/16 of the pool (4 of 64, 16 of 256) kept for newcomers, a quarter
	 * of that for each: a few accounts can start at once, and an account
	 * alone still gets 15/16 of the pool. */
	d->reserve = imax(pool / 16, 1);
	d->reserve_quota = imax(d->reserve / 4, 1);
	d->set = dd->set;
	d->idle = calloc((size_t)imax(d->o.max_in_flight, 1), sizeof *d->idle);
	if (!d->idle || sync_accounts(d, true) != 0) {
		free(d->idle);
		free(d);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	pthread_mutex_init(&d->claim_lock, NULL);
	pthread_mutex_init(&d->out_lock, NULL);
	pthread_cond_init(&d->out_cond, NULL);
	int rc = 0;
	d->multi = curl_multi_init();
	CURLMcode mc =
	    d->multi ? curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)d->o.max_in_flight)
	             : CURLM_OUT_OF_MEMORY;
	const char *what = "CURLMOPT_MAXCONNECTS";
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(d->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
		what = "CURLMOPT_PIPELINING";
	}
	/* HTTP/2: every send to a host on one connection. libcurl's own cap
	 * (100 streams a connection) made each transfer past it open a
	 * connection of its own (measured: 300 sends at once to nginx, 200
	 * connections); nghttp2 keeps the streams past the server's
	 * SETTINGS_MAX_CONCURRENT_STREAMS queued on the connection instead. */
	if (d->multi && mc == CURLM_OK) {
		mc = curl_multi_setopt(d->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
		                       (long)(d->o.max_in_flight > 100 ? d->o.max_in_flight : 100));
		what = "CURLMOPT_MAX_CONCURRENT_STREAMS";
	}
	if (!d->multi)
		rc = hr_fail(err, HR_ENOMEM, NULL, "libcurl could not make a multi handle");
	else if (mc != CURLM_OK)
		rc = hr_fail(err, HR_EINTERNAL, NULL, "libcurl refused %s: %s", what,
		             curl_multi_strerror(mc));
	if (rc) {
		if (d->multi)
			curl_multi_cleanup(d->multi);
		pthread_mutex_destroy(&d->claim_lock);
		pthread_mutex_destroy(&d->out_lock);
		pthread_cond_destroy(&d->out_cond);
		free(d->idle);
		free(d->accts);
		free(d->tenants);
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

/* Asks the loop to stop (it drains its transfers first). */
static void loop_signal_stop(struct dloop *d)
{
	atomic_store(&d->stop, true);
	curl_multi_wakeup(d->multi);
}

/*
 * Joins a loop asked to stop (if its thread ran) and waits until the writer
 * answered every outcome it handed over. Its struct stays: an answer to
 * another loop's outcome may still wake every loop (record_done), so no
 * loop is freed before all are drained.
 */
static void loop_drain(struct dloop *d, bool started)
{
	if (started)
		pthread_join(d->thread, NULL);

	/* Transfers still in flight after the drain deadline are abandoned:
	 * their leases expire and they are sent again (at-least-once). */
	while (d->xfers) {
		struct xfer *x = d->xfers;
		xfer_unlink(d, x);
		curl_multi_remove_handle(d->multi, x->easy);
		xfer_free(x);
		metrics_inflight_add(-1);
	}
	/* Messages still at the plugin gate: their leases expire (as above).
	 * A released job never calls gate_wake again. */
	while (d->gated) {
		struct gated *g = d->gated;
		d->gated = g->next;
		plugins_job_release(g->job);
		message_clear(&g->m);
		free(g);
	}
	take_held(d, 0);
	flush_results(d);
	pthread_mutex_lock(&d->out_lock);
	while (d->outstanding > 0)
		pthread_cond_wait(&d->out_cond, &d->out_lock);
	/* One last try was made; what the store still cannot take is left to
	 * lease expiry after the restart, as a killed process's would be. */
	if (d->nheld)
		hr_log(HR_LOG_ERROR, "dispatch",
		       "stopping with %zu outcomes the store could not record; their messages "
		       "are found again when their leases expire",
		       d->nheld);
	for (size_t i = 0; i < d->nheld; i++)
		send_result_clear(&d->held[i]);
	free(d->held);
	d->held = NULL;
	d->nheld = d->capheld = 0;
	pthread_mutex_unlock(&d->out_lock);
}

/* Frees a drained loop. */
static void loop_destroy(struct dloop *d)
{
	for (int i = 0; i < d->nidle; i++)
		curl_easy_cleanup(d->idle[i]);
	free(d->idle);
	curl_multi_cleanup(d->multi);
	pthread_mutex_destroy(&d->claim_lock);
	pthread_mutex_destroy(&d->out_lock);
	pthread_cond_destroy(&d->out_cond);
	for (size_t i = 0; i < d->npending; i++)
		send_result_clear(&d->pending[i]);
	free(d->pending);
	/* The loop ended with no claim on the writer (dispatch_main). */
	while (d->spare) {
		struct pclaim *c = d->spare;
		d->spare = c->next;
		free(c);
	}
	free(d->accts);
	free(d->tenants);
	free(d);
}

/*
 * Loop k's part of the options: an even part of the pool (the first loops
 * take the remainder) and of the per-tenant cap, since a tenant's accounts
 * may be on every loop; the per-account cap as it is (an account is on one
 * loop), within the loop's pool. Only loop 0 expires leases itself.
 */
static void loops_opts(const struct dispatch_opts *all, int n, int k, struct dispatch_opts *o)
{
	*o = *all;
	int pool = imax(all->max_in_flight, 1);
	o->max_in_flight = imax(pool / n + (k < pool % n ? 1 : 0), 1);
	if (o->max_in_flight_per_account > o->max_in_flight)
		o->max_in_flight_per_account = o->max_in_flight;
	if (all->max_in_flight_per_tenant > 0)
		o->max_in_flight_per_tenant =
		    imin(imax(all->max_in_flight_per_tenant / n, 1), o->max_in_flight);
	if (k > 0)
		o->reconcile_every_us = 0;
}

int dispatcher_start(struct store *st, struct account_set *accounts,
                     const struct dispatch_opts *opts, struct dispatcher **out, struct hr_err *err)
{
	struct dispatch_opts all;
	if (opts)
		all = *opts;
	else
		dispatch_opts_default(&all);
	int n = all.threads < 1 ? 1 : all.threads;
	if (n > DISPATCH_THREADS_MAX)
		return hr_fail(err, HR_EINVAL, "dispatch.threads", "dispatch.threads is at most %d",
		               DISPATCH_THREADS_MAX);
	if (all.max_in_flight < n)
		all.max_in_flight = n; /* a slot for each loop at least */
	struct dispatcher *dd = calloc(1, sizeof *dd + (size_t)n * sizeof dd->loop[0]);
	if (!dd)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	dd->st = st;
	dd->set = accounts;
	dd->n = n;
	pthread_mutex_init(&dd->w.lock, NULL);
	/* Every loop exists before any thread runs: a loop wakes the others
	 * (lease expiry, a reroute), from its first turn on. */
	int rc = 0, made = 0, started = 0;
	for (; made < n && rc == 0; made++) {
		struct dispatch_opts o;
		loops_opts(&all, n, made, &o);
		if ((rc = loop_new(dd, (unsigned)made, &o, &dd->loop[made], err)))
			break;
	}
	while (rc == 0 && started < n) {
		struct dloop *d = dd->loop[started];
		if (pthread_create(&d->thread, NULL, dispatch_main, d) != 0) {
			rc = hr_fail(err, HR_EINTERNAL, NULL, "cannot start a dispatcher thread");
			break;
		}
		/* Every loop's thread has the same name: bench/stages.sh sorts
		 * its samples by it. */
		pthread_setname_np(d->thread, "herald-dispatch");
		started++;
	}
	if (rc) {
		for (int k = 0; k < made; k++)
			loop_signal_stop(dd->loop[k]);
		for (int k = 0; k < made; k++)
			loop_drain(dd->loop[k], k < started);
		for (int k = 0; k < made; k++)
			loop_destroy(dd->loop[k]);
		pthread_mutex_destroy(&dd->w.lock);
		free(dd);
		return rc;
	}
	*out = dd;
	return 0;
}

void dispatcher_notify(struct dispatcher *dd)
{
	if (!dd)
		return;
	for (int k = 0; k < dd->n; k++) {
		struct dloop *d = dd->loop[k];
		if (!atomic_exchange(&d->notified, true))
			curl_multi_wakeup(d->multi);
	}
}

void dispatcher_stop(struct dispatcher *dd)
{
	if (!dd)
		return;
	/* All loops drain at once: the stop takes one HTTP timeout at most,
	 * not one per loop. */
	for (int k = 0; k < dd->n; k++)
		loop_signal_stop(dd->loop[k]);
	for (int k = 0; k < dd->n; k++)
		loop_drain(dd->loop[k], true);
	for (int k = 0; k < dd->n; k++)
		loop_destroy(dd->loop[k]);
	struct dispatch_result r = {.rc = HR_ETIMEOUT};
	watch_fire(watch_take(&dd->w, NULL, -1), &r);
	pthread_mutex_destroy(&dd->w.lock);
	free(dd);
}
