/*
 * writer.c - the group-committing writer (see writer.h): the queue, the
 * grouping, the thread, and answering the callers after the commit. The
 * transaction itself is the backend's, through struct wr_ops.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "store/group_done.h"
#include "store/writer.h"

/* What the callbacks of the group this thread is answering asked to run
 * after it (store_group_done); `answering` only inside complete(). */
#define WR_AFTER_MAX 8
static _Thread_local struct {
	bool answering;
	int n;
	struct {
		void (*fn)(void *);
		void *arg;
	} a[WR_AFTER_MAX];
} wr_after;

int store_group_done(void (*fn)(void *arg), void *arg)
{
	if (!wr_after.answering)
		return -1;
	for (int i = 0; i < wr_after.n; i++)
		if (wr_after.a[i].fn == fn && wr_after.a[i].arg == arg)
			return 0;
	if (wr_after.n == WR_AFTER_MAX)
		return -1;
	wr_after.a[wr_after.n].fn = fn;
	wr_after.a[wr_after.n].arg = arg;
	wr_after.n++;
	return 1;
}

void wr_init(struct wr *w, const struct wr_ops *ops, void *be, int group_max, int queue_max)
{
	memset(w, 0, sizeof *w);
	w->ops = ops;
	w->be = be;
	w->group_max = group_max > 0 ? group_max : WR_GROUP_MAX_DEFAULT;
	w->queue_max = queue_max > 0 ? queue_max : WR_QUEUE_MAX_DEFAULT;
	pthread_mutex_init(&w->qlock, NULL);
	pthread_cond_init(&w->qcond, NULL);
	pthread_mutex_init(&w->dlock, NULL);
	atomic_init(&w->commits, 0);
	atomic_init(&w->jobs, 0);
	atomic_init(&w->replays, 0);
}

void wr_destroy(struct wr *w)
{
	pthread_mutex_destroy(&w->qlock);
	pthread_cond_destroy(&w->qcond);
	pthread_mutex_destroy(&w->dlock);
}

/* Queues j with its answer (cb, or a blocking waiter when NULL); HR_EBUSY
 * if the writer is stopping or a limited job finds the queue full. */
static int enqueue(struct wr *w, struct wr_job *j, store_done_fn cb, void *arg, bool heap)
{
	j->next = NULL;
	j->cb = cb;
	j->arg = arg;
	j->heap = heap;
	j->done = false;
	j->rc = 0;
	j->err.code = 0;
	pthread_mutex_lock(&w->qlock);
	if (w->stopping || (j->limited && w->qlen >= w->queue_max)) {
		pthread_mutex_unlock(&w->qlock);
		return HR_EBUSY;
	}
	if (w->qtail)
		w->qtail->next = j;
	else
		w->qhead = j;
	w->qtail = j;
	w->qlen++;
	pthread_cond_signal(&w->qcond);
	pthread_mutex_unlock(&w->qlock);
	return 0;
}

int wr_run_blocking(struct wr *w, struct wr_job *j, struct hr_err *err)
{
	pthread_cond_init(&j->cv, NULL);
	int rc = enqueue(w, j, NULL, NULL, false);
	if (rc == 0) {
		pthread_mutex_lock(&w->dlock);
		while (!j->done)
			pthread_cond_wait(&j->cv, &w->dlock);
		pthread_mutex_unlock(&w->dlock);
		rc = j->rc;
		if (rc < 0 && err)
			*err = j->err;
	} else {
		hr_fail(err, rc, "store", "write queue full or store closing");
	}
	pthread_cond_destroy(&j->cv);
	return rc;
}

int wr_run_async(struct wr *w, struct wr_job *j, size_t size, store_done_fn cb, void *arg)
{
	assert(size >= sizeof *j);
	struct wr_job *h = malloc(size);
	if (!h)
		return HR_ENOMEM;
	memcpy(h, j, size);
	int rc = enqueue(w, h, cb, arg, true);
	if (rc)
		free(h);
	return rc;
}

static void fail_all(struct wr_job *list, const struct hr_err *e)
{
	for (struct wr_job *j = list; j; j = j->next) {
		j->err = *e;
		j->rc = e->code;
	}
}

/*
 * The group's jobs with no savepoint (wr_ops.kept), in the transaction
 * begun: 0 when every job succeeded; 1 when one failed, the transaction
 * then rolled back and every job's result cleared for the run again; < 0
 * when the transaction was lost (the caller aborts it).
 */
static int run_optimistic(struct wr *w, struct wr_job *list)
{
	const struct wr_ops *o = w->ops;
	void *be = w->be;
	bool failed = false;
	for (struct wr_job *j = list; j && !failed; j = j->next) {
		j->rc = j->run(be, j);
		if (o->check(be, j))
			return HR_EIO;
		failed = j->rc < 0;
		if (!failed && o->kept(be))
			return HR_EIO;
	}
	if (!failed)
		return 0;
	o->rollback(be);
	for (struct wr_job *j = list; j; j = j->next) {
		j->rc = 0;
		hr_err_clear(&j->err);
	}
	atomic_fetch_add(&w->replays, 1);
	w->classic_left = WR_CLASSIC_AFTER_REPLAY;
	return 1;
}

/* Whether every job of the group may run again from the start. */
static bool all_replayable(const struct wr_job *list)
{
	for (const struct wr_job *j = list; j; j = j->next)
		if (!j->replayable)
			return false;
	return true;
}

/*
 * Runs a group of jobs in one transaction. Each job gets a savepoint unless
 * it is alone (then a failure rolls back the whole, empty-otherwise,
 * transaction), or unless every job of the group can be run again
 * (run_optimistic: then none has one, and only a failing job makes the
 * group run again, a savepoint each). If the transaction itself is lost (an
 * I/O error, a full disk, a dropped connection), every job of the group
 * fails: none of them is durable.
 */
static void run_group(struct wr *w, struct wr_job *list, int k)
{
	const struct wr_ops *o = w->ops;
	void *be = w->be;
	struct hr_err e = {0};
	if ((o->ready && o->ready(be, &e)) || o->begin(be, &e)) {
		fail_all(list, &e);
		return;
	}
	bool single = k == 1, broken = false;
	/* After a group ran twice, the next ones take savepoints: a client
	 * whose writes keep failing (a tenant at its daily cap, a reused
	 * idempotency key) would otherwise make every group it joins run
	 * twice, other tenants' jobs with it. */
	bool optimistic = !single && o->kept && all_replayable(list);
	if (optimistic && w->classic_left > 0) {
		w->classic_left--;
		optimistic = false;
	}
	if (optimistic) {
		int orc = run_optimistic(w, list);
		if (orc < 0) {
			o->abort(be, &e);
			fail_all(list, &e);
			return;
		}
		if (orc == 0)
			goto commit;
		if (o->begin(be, &e)) {
			fail_all(list, &e);
			return;
		}
	}
	for (struct wr_job *j = list; j; j = j->next) {
		if (!single && o->run_many) {
			struct wr_job *last = j;
			int mrc = o->run_many(be, j, &last);
			if (mrc < 0) {
				broken = true;
				break;
			}
			if (mrc == 0) {
				j = last;
				continue;
			}
		}
		if (!single && o->savepoint(be)) {
			broken = true;
			break;
		}
		j->rc = j->run(be, j);
		if (o->check(be, j)) {
			broken = true;
			break;
		}
		if (single)
			break;
		if (j->rc < 0 && o->rollback_to(be)) {
			broken = true;
			break;
		}
		if (o->release(be)) {
			broken = true;
			break;
		}
	}
	if (broken) {
		o->abort(be, &e);
		fail_all(list, &e);
		return;
	}
	if (single && list->rc < 0) {
		o->rollback(be);
		return;
	}
commit:
	if (o->commit(be, &e)) {
		fail_all(list, &e);
		return;
	}
	atomic_fetch_add(&w->commits, 1);
}

/* Reports results: async callbacks in queue order, then what they asked to
 * run once for the group (store_group_done), then wakes every blocking
 * waiter under one lock. Runs before the next transaction starts. */
static void complete(struct wr *w, struct wr_job *list)
{
	struct wr_job *waiters = NULL, **wtail = &waiters;
	int n = 0;
	wr_after.answering = true;
	wr_after.n = 0;
	for (struct wr_job *j = list, *next; j; j = next) {
		next = j->next;
		n++;
		if (j->cb) {
			j->cb(j->arg, j->rc, j->rc < 0 ? &j->err : NULL);
			if (j->heap)
				free(j);
		} else {
			*wtail = j;
			wtail = &j->next;
			j->next = NULL;
		}
	}
	wr_after.answering = false;
	for (int i = 0; i < wr_after.n; i++)
		wr_after.a[i].fn(wr_after.a[i].arg);
	wr_after.n = 0;
	atomic_fetch_add(&w->jobs, (uint_fast64_t)n);
	if (!waiters)
		return;
	pthread_mutex_lock(&w->dlock);
	for (struct wr_job *j = waiters, *next; j; j = next) {
		next = j->next; /* j may be gone once signalled and unlocked */
		j->done = true;
		pthread_cond_signal(&j->cv);
	}
	pthread_mutex_unlock(&w->dlock);
}

/* The writer thread: takes the next group (or one solo job) off the queue,
 * runs it and answers it; once stopping, it empties the queue and ends. */
static void *writer_main(void *arg)
{
	struct wr *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->qlock);
		while (!w->qhead && !w->stopping)
			pthread_cond_wait(&w->qcond, &w->qlock);
		if (!w->qhead) {
			pthread_mutex_unlock(&w->qlock);
			break;
		}
		struct wr_job *first = w->qhead, *last = first;
		int k = 1;
		if (!first->solo)
			while (last->next && !last->next->solo && k < w->group_max) {
				last = last->next;
				k++;
			}
		w->qhead = last->next;
		if (!w->qhead)
			w->qtail = NULL;
		last->next = NULL;
		w->qlen -= k;
		pthread_mutex_unlock(&w->qlock);

		if (first->solo) {
			struct hr_err e = {0};
			if (w->ops->ready && w->ops->ready(w->be, &e)) {
				fail_all(first, &e);
			} else {
				first->rc = w->ops->solo(w->be, first);
				if (first->rc == 0)
					atomic_fetch_add(&w->commits, 1);
			}
		} else {
			run_group(w, first, k);
		}
		complete(w, first);
	}
	return NULL;
}

int wr_start(struct wr *w, const char *name, struct hr_err *err)
{
	int rc = pthread_create(&w->thread, NULL, writer_main, w);
	if (rc)
		return hr_fail(err, HR_EIO, "store", "cannot start writer: %s", strerror(rc));
	pthread_setname_np(w->thread, name);
	w->running = true;
	return 0;
}

void wr_stop(struct wr *w)
{
	if (!w->running)
		return;
	pthread_mutex_lock(&w->qlock);
	w->stopping = true;
	pthread_cond_signal(&w->qcond);
	pthread_mutex_unlock(&w->qlock);
	pthread_join(w->thread, NULL);
	w->running = false;
}

int wr_queued(struct wr *w)
{
	pthread_mutex_lock(&w->qlock);
	int n = w->qlen;
	pthread_mutex_unlock(&w->qlock);
	return n;
}

uint64_t wr_replays(struct wr *w)
{
	return atomic_load(&w->replays);
}

void wr_stats(struct wr *w, uint64_t *commits, uint64_t *jobs)
{
	if (commits)
		*commits = atomic_load(&w->commits);
	if (jobs)
		*jobs = atomic_load(&w->jobs);
}
