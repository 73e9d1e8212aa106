/*
 * events.c - the deliverer of the plugins' after-commit events (issue 13;
 * store.h plugin_event_row). One thread reads pending events oldest first
 * (at most PEV_BATCH at a time), hands each to the pool (backpressure: it
 * waits for room in the queue instead of dropping, and leaves half of the
 * queue to the other hooks), waits for every hook of the batch to return,
 * and deletes the batch's done events in one transaction. Done is a hook
 * that returned, failed or timed out (those are logged and counted by the
 * pool as before) or an event with nothing to do (no plugin for its unit,
 * the message gone). An event not run because the server is stopping stays
 * pending, and so does everything after a crash: delivered again at the
 * next start (at least once).
 *
 * Order per message: an event waits for the previous event of its message
 * in the batch to finish before it is queued, and a batch ends before the
 * next is read, so a message's events run in commit order.
 *
 * Wake-ups: the store's observer (store_observe: a run that wrote events
 * committed) or PEV_POLL_MS without one (events written by another
 * process sharing the database, or a store error to retry).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugins/plugins_int.h"
#include "store/store.h"

#define PEV_BATCH 256    /* events read and deleted at once */
#define PEV_POLL_MS 1000 /* idle re-read, and the wait after a store error */

struct plugin_events {
	struct plugins *p;
	struct store *st;
	pthread_t thread;
	pthread_mutex_t lock; /* wake, and the cond */
	pthread_cond_t cond;
	bool wake;
	atomic_bool stop;
	atomic_ullong delivered;
};

/* Waits up to ms or for a wake-up. */
static void ev_sleep(struct plugin_events *e, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&e->lock);
	while (!e->wake && !atomic_load(&e->stop))
		if (pthread_cond_timedwait(&e->cond, &e->lock, &ts) != 0)
			break;
	e->wake = false;
	pthread_mutex_unlock(&e->lock);
}

/* Runs one batch: how many events it marked done, or -1 when the store
 * failed. */
static int ev_batch(struct plugin_events *e, struct plugin_job **jobs, int64_t *done)
{
	struct plugins *p = e->p;
	struct plugin_event_row *rows = NULL;
	size_t n = 0;
	int rc = e->st->ops->plugin_event_read(e->st, PEV_BATCH, &rows, &n);
	if (rc) {
		hr_log(HR_LOG_WARN, "plugin", "plugin events: the store could not be read (%s)",
		       hr_code_name(rc));
		return -1;
	}
	if (n == 0) {
		free(rows);
		return 0;
	}
	size_t room = p->queue_max / 2 ? p->queue_max / 2 : 1;
	size_t made = 0;
	for (size_t i = 0; i < n && !atomic_load(&e->stop); i++) {
		const struct plugin_event_row *r = &rows[i];
		jobs[i] =
		    plugins_event_job(p, r->message_id, r->tenant_id, r->kind == PLUGIN_EV_REPLY,
		                      r->prev_status, r->status, r->text, r->payload);
		made = i + 1;
		if (!jobs[i])
			break; /* out of memory: the rest next time */
		/* The message's previous event first. */
		for (size_t k = i; k-- > 0;)
			if (jobs[k] && strcmp(rows[k].message_id, r->message_id) == 0) {
				(void)plugins_job_await(p, jobs[k]);
				break;
			}
		if (plugins_job_submit_room(p, jobs[i], room, &e->stop) != PO_OK)
			break;
	}
	size_t nd = 0;
	for (size_t i = 0; i < made; i++) {
		if (!jobs[i])
			continue;
		enum plugin_outcome o = plugins_job_await(p, jobs[i]);
		if (o != PO_BUSY)
			done[nd++] = rows[i].id;
		plugins_job_release(jobs[i]);
		jobs[i] = NULL;
	}
	for (size_t i = 0; i < n; i++)
		plugin_event_row_clear(&rows[i]);
	free(rows);
	if (nd && (rc = e->st->ops->plugin_event_done(e->st, done, nd))) {
		/* Delivered, not yet marked: delivered again (at least once). */
		hr_log(HR_LOG_WARN, "plugin",
		       "plugin events: %zu delivered could not be marked (%s)", nd,
		       hr_code_name(rc));
		return -1;
	}
	atomic_fetch_add(&e->delivered, nd);
	return (int)nd;
}

static void *ev_main(void *arg)
{
	struct plugin_events *e = arg;
	struct plugin_job **jobs = calloc(PEV_BATCH, sizeof *jobs);
	int64_t *done = calloc(PEV_BATCH, sizeof *done);
	while (jobs && done && !atomic_load(&e->stop)) {
		/* Nothing done (none pending, a store error): a wake-up or
		 * the poll; otherwise the next batch at once. */
		if (ev_batch(e, jobs, done) <= 0)
			ev_sleep(e, PEV_POLL_MS);
	}
	if (!jobs || !done)
		hr_log(HR_LOG_ERROR, "plugin", "plugin events: out of memory, not delivered");
	free(jobs);
	free(done);
	return NULL;
}

int plugins_events_start(struct plugins *p, struct store *st, struct hr_err *err)
{
	if (!p || !st)
		return 0;
	p->st = st;
	/* Which tenants get events: those with an on_status / on_reply bound. */
	struct store_plugin_tenant *t = calloc(p->nbind ? p->nbind : 1, sizeof *t);
	if (!t)
		return hr_fail(err, HR_ENOMEM, "plugins", "out of memory");
	size_t nt = 0;
	for (size_t i = 0; i < p->nbind; i++) {
		bool s = plugin_has(p->bind[i].pl, PH_ON_STATUS);
		bool r = plugin_has(p->bind[i].pl, PH_ON_REPLY);
		if (s || r)
			t[nt++] = (struct store_plugin_tenant){
			    .tenant_id = p->bind[i].tenant, .status = s, .reply = r};
	}
	int rc = store_plugin_tenants_set(t, nt);
	free(t);
	if (rc)
		return hr_fail(err, rc, "plugins", "out of memory");
	/* With no such tenant left, still started: it drains the events an
	 * earlier configuration left (no plugin for them: done). */
	if (p->npl == 0 || !p->nworkers || !st->ops->plugin_event_read)
		return 0;
	struct plugin_events *e = calloc(1, sizeof *e);
	if (!e) {
		store_plugin_tenants_set(NULL, 0);
		return hr_fail(err, HR_ENOMEM, "plugins", "out of memory");
	}
	e->p = p;
	e->st = st;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&e->thread, NULL, ev_main, e) != 0) {
		pthread_mutex_destroy(&e->lock);
		pthread_cond_destroy(&e->cond);
		free(e);
		store_plugin_tenants_set(NULL, 0);
		return hr_fail(err, HR_EINTERNAL, "plugins", "could not start the event deliverer");
	}
	p->ev = e;
	return 0;
}

void plugins_events_wake(struct plugins *p)
{
	struct plugin_events *e = p ? p->ev : NULL;
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->wake = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

void plugins_events_stop(struct plugins *p)
{
	struct plugin_events *e = p ? p->ev : NULL;
	if (!e)
		return;
	atomic_store(&e->stop, true);
	plugins_events_wake(p);
	plugins_pool_kick(p);
	pthread_join(e->thread, NULL);
	p->ev = NULL;
	store_plugin_tenants_set(NULL, 0);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e);
}

void plugins_events_metrics(const struct plugins *p, struct hr_buf *b)
{
	const struct plugin_events *e = p->ev;
	int64_t pending = 0;
	if (e && e->st->ops->plugin_event_count(e->st, &pending) != 0)
		pending = -1;
	hr_buf_printf(b,
	              "# HELP herald_plugin_events_pending After-commit plugin events (on_status, "
	              "on_reply) written and not yet delivered.\n"
	              "# TYPE herald_plugin_events_pending gauge\n"
	              "herald_plugin_events_pending %lld\n",
	              (long long)(pending < 0 ? 0 : pending));
	hr_buf_printf(b,
	              "# HELP herald_plugin_events_delivered_total After-commit plugin events "
	              "delivered (the hook returned, failed or timed out).\n"
	              "# TYPE herald_plugin_events_delivered_total counter\n"
	              "herald_plugin_events_delivered_total %llu\n",
	              e ? (unsigned long long)atomic_load(&e->delivered) : 0ULL);
}
