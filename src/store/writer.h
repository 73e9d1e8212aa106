/*
 * writer.h - the group-committing writer both store backends share: a
 * queue of write jobs and one thread that runs them, many to a transaction.
 * Nothing outside src/store/ includes it.
 *
 * Every write call of a backend becomes a job on the queue. The writer takes
 * everything queued (up to group_max jobs), runs it in one transaction with a
 * savepoint around each job so a failing job rolls back only itself (jobs
 * that can be run again go without, and the group runs again with them only
 * if one fails: wr_ops.kept), and reports results only after the COMMIT
 * returned: a reported success is
 * durable. While it commits, new jobs queue up, so the group size grows with
 * the load and one commit (one fsync) serves many writers.
 *
 * The backend supplies the transaction's primitives (struct wr_ops) over its
 * one writer connection; the queue, the grouping, the waiting and the
 * answering are here.
 *
 * Threads: the writer thread calls every wr_ops function and every job's
 * `run`; the connection they use is the writer thread's alone once it runs.
 * wr_run_blocking, wr_run_async, wr_queued and wr_stats are safe from any
 * thread.
 */
#ifndef HR_STORE_WRITER_H
#define HR_STORE_WRITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define WR_GROUP_MAX_DEFAULT 512
#define WR_QUEUE_MAX_DEFAULT 65536
/* Groups run with savepoints after one had to run again (wr_ops.kept). */
#define WR_CLASSIC_AFTER_REPLAY 16

/*
 * One unit of write work. Ops embed it as the first member of their own
 * argument struct; blocking calls keep that struct on the caller's stack,
 * async calls copy it to the heap (`heap`) and the writer frees it after the
 * callback. `run` executes inside the group transaction (inside its own
 * savepoint), or alone outside any transaction when `solo` is set; `be` is
 * the backend given to wr_init. It returns 0 or an HR_E* code with `err`
 * filled.
 * `limited` marks writes that come from clients (message_insert,
 * inbox_append): only they are refused with HR_EBUSY once queue_max jobs
 * wait. Internal writes (send outcomes, claims, lease expiry, the applier,
 * config) are always queued: refusing them would only strand work the
 * process already holds, and they are what drains the queue.
 * `pipeable` is a hint for the backend's run_many (PostgreSQL: the job's
 * statements only write and need no result back); the writer ignores it.
 * `replayable` says `run` may be run again from the start after its writes
 * were rolled back, with the same outcome and nothing left over from the
 * first run (it sets what it reports, never adds to it, and frees what a
 * run before it left): a group of such jobs can run without a savepoint
 * each (wr_ops.optimistic).
 */
struct wr_job {
	struct wr_job *next;
	int (*run)(void *be, struct wr_job *j);
	store_done_fn cb;
	void *arg;
	bool solo;
	bool limited;
	bool pipeable;
	bool replayable;
	bool heap;
	bool done;
	pthread_cond_t cv;
	int rc;
	struct hr_err err;
};

/*
 * A backend's transaction primitives, all called on the writer thread with
 * the `be` given to wr_init. Those returning int answer 0 for success; any
 * other value means what the comment says.
 */
struct wr_ops {
	/* Optional (NULL: always usable). Before each group and each solo job:
	 * 0 if the connection can be used, made again if it broke; otherwise an
	 * HR_E* code with e filled, and every job of the group fails with it. */
	int (*ready)(void *be, struct hr_err *e);
	/* Opens the group's transaction; else an HR_E* code with e filled and
	 * nothing left open. */
	int (*begin)(void *be, struct hr_err *e);
	/* Around each job of a group of more than one; failing means the
	 * transaction is lost. */
	int (*savepoint)(void *be);
	int (*rollback_to)(void *be); /* only after a job that failed */
	int (*release)(void *be);
	/* After each job's run: non-zero if the job broke the transaction (the
	 * connection dropped, the database abandoned it). May turn a success
	 * into a failure (j->rc, j->err) the job did not notice. */
	int (*check)(void *be, struct wr_job *j);
	/* Optional. In a group of more than one: runs j and some of the jobs
	 * after it together, each in its own savepoint, setting their rc and
	 * err, and *last to the last one run: 0; WR_NOT_MINE if j is not for it
	 * (the writer runs j alone); or a negative HR_E* code if the
	 * transaction is lost. */
	int (*run_many)(void *be, struct wr_job *j, struct wr_job **last);
	/* The transaction is lost (a failing savepoint, check or run_many):
	 * fills e with why (every job of the group fails with it) and rolls
	 * back what is left; returns e's code. */
	int (*abort)(void *be, struct hr_err *e);
	/* Rolls back the transaction of a group whose only job failed. */
	void (*rollback)(void *be);
	/* Commits; else an HR_E* code with e filled, nothing left open. */
	int (*commit)(void *be, struct hr_err *e);
	/* Runs a solo job outside any transaction; returns its rc. */
	int (*solo)(void *be, struct wr_job *j);
	/*
	 * Optional (NULL: every group has a savepoint per job). A group whose
	 * jobs are all `replayable` first runs with no savepoint at all, kept()
	 * after each job that succeeded (what release does to the backend's
	 * own bookkeeping, without the statement). If a job fails, the whole
	 * transaction is rolled back (rollback) and the group runs again, a
	 * savepoint per job, as any other. SQLite copies every page a savepoint
	 * changes into its sub-journal, a temporary file past 64 KiB: for a
	 * group of batch inserts that was nearly three times the bytes of the
	 * WAL itself; a failing job is rare.
	 */
	int (*kept)(void *be);
};

#define WR_NOT_MINE 1

struct wr {
	const struct wr_ops *ops;
	void *be;
	int group_max, queue_max;
	pthread_t thread;
	bool running;

	pthread_mutex_t qlock; /* guards the queue fields below */
	pthread_cond_t qcond;  /* signalled when work arrives or on stop */
	struct wr_job *qhead, *qtail;
	int qlen;
	bool stopping;

	pthread_mutex_t dlock; /* guards wr_job.done of blocking jobs */

	atomic_uint_fast64_t commits; /* transactions committed (solo jobs: runs that succeeded) */
	atomic_uint_fast64_t jobs;    /* jobs answered */
	atomic_uint_fast64_t replays; /* groups run again with savepoints after a job failed */
	int classic_left;             /* writer thread: groups still to run with savepoints */
};

/* Sets w up (not started); group_max and queue_max <= 0 take the defaults.
 * wr_destroy undoes it, whether or not the writer was started. */
void wr_init(struct wr *w, const struct wr_ops *ops, void *be, int group_max, int queue_max);
/* Starts the writer thread, named `name`; 0 or HR_EIO with err filled. */
int wr_start(struct wr *w, const char *name, struct hr_err *err);
/* Refuses new jobs, lets the writer finish every job queued, and joins it.
 * Does nothing if it was not started. */
void wr_stop(struct wr *w);
void wr_destroy(struct wr *w);

/* Queues j and blocks until it is committed (or failed); returns its rc and
 * copies its err. HR_EBUSY if the queue is full (a limited job) or the writer
 * is stopping. */
int wr_run_blocking(struct wr *w, struct wr_job *j, struct hr_err *err);
/* Copies the job (size bytes, wr_job first) to the heap and queues it; cb
 * gets the result after the commit, on the writer thread. */
int wr_run_async(struct wr *w, struct wr_job *j, size_t size, store_done_fn cb, void *arg);

/* Jobs waiting in the queue now. */
int wr_queued(struct wr *w);
/* Commits and jobs answered since wr_init (either may be NULL). */
void wr_stats(struct wr *w, uint64_t *commits, uint64_t *jobs);
/* Groups run without savepoints that a failing job made run again. */
uint64_t wr_replays(struct wr *w);

#endif
