/*
 * test_writer.c - the group-committing writer (src/store/writer.c) over a
 * fake backend whose wr_ops write what they were asked to do into a trace:
 * how jobs are grouped (group_max, solo jobs alone), the savepoint around
 * each job of a group and the rollback of a failing one, that callers hear
 * only after the commit, the queue bound for limited jobs, what every job
 * of a group answers when the backend cannot begin, loses the transaction
 * or cannot commit, run_many, and that stopping drains the queue. The
 * backends' real transactions are covered by test_sqlite.c, test_postgres.c
 * and the conformance suite (test_store.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <pthread.h>

#include "herald.h"
#include "store/group_done.h"
#include "store/writer.h"

#define WAIT_US 10000000 /* deadline of every wait: 10 s */

/* The fake backend: what it is told to fail, and the trace of what it did. */
struct fake {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled on every callback and gate change */
	char trace[2048];
	int answered;      /* async callbacks so far */
	bool gate_open;    /* a gate job's run waits for this */
	bool gate_entered; /* a gate job is running */
	int ready_rc, begin_rc, commit_rc;
	int break_id; /* check() reports the transaction lost after this job */
	int many_rc;  /* what run_many answers for a run it takes */
	/* Set by code on the writer thread that finds something wrong (cmocka's
	 * asserts work on the test's thread only); finish() checks it. */
	const char *bad;
};

static struct fake F;
static struct wr W;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
	pthread_mutex_lock(&F.lock);
	size_t n = strlen(F.trace);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(F.trace + n, sizeof F.trace - n, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&F.lock);
}

struct tjob {
	struct wr_job j;
	int id;
	int rc;    /* what its run returns */
	bool gate; /* its run waits until the test opens the gate */
};

/* One job's answer, as a callback or a blocking call got it. */
struct answer {
	bool called;
	int rc;
	char msg[384];
	size_t at; /* length of the trace when it was answered */
};

static int run_job(void *be, struct wr_job *j)
{
	struct tjob *t = (struct tjob *)j;
	if (be != &F)
		F.bad = "run got the wrong backend";
	if (t->gate) {
		pthread_mutex_lock(&F.lock);
		F.gate_entered = true;
		pthread_cond_broadcast(&F.cond);
		while (!F.gate_open)
			pthread_cond_wait(&F.cond, &F.lock);
		pthread_mutex_unlock(&F.lock);
	}
	trace("j%d ", t->id);
	if (t->rc)
		return hr_fail(&j->err, t->rc, "job", "job %d failed", t->id);
	return 0;
}

static int f_ready(void *be, struct hr_err *e)
{
	(void)be;
	if (F.ready_rc)
		return hr_fail(e, F.ready_rc, "store", "fake: unavailable");
	return 0;
}

static int f_begin(void *be, struct hr_err *e)
{
	(void)be;
	trace("B ");
	if (F.begin_rc)
		return hr_fail(e, F.begin_rc, "store", "fake: cannot begin");
	return 0;
}

static int f_savepoint(void *be)
{
	(void)be;
	trace("S ");
	return 0;
}

static int f_rollback_to(void *be)
{
	(void)be;
	trace("T ");
	return 0;
}

static int f_release(void *be)
{
	(void)be;
	trace("R ");
	return 0;
}

static int f_check(void *be, struct wr_job *j)
{
	(void)be;
	return ((struct tjob *)j)->id == F.break_id ? HR_EIO : 0;
}

/* Takes a run of pipeable jobs (two or more), as PostgreSQL's pipeline does. */
static int f_run_many(void *be, struct wr_job *j, struct wr_job **last)
{
	if (!j->pipeable || !j->next || !j->next->pipeable)
		return WR_NOT_MINE;
	struct wr_job *l = j;
	while (l->next && l->next->pipeable)
		l = l->next;
	*last = l;
	trace("M[ ");
	for (struct wr_job *p = j;; p = p->next) {
		p->rc = p->run(be, p);
		if (p == l)
			break;
	}
	trace("] ");
	return F.many_rc;
}

static int f_abort(void *be, struct hr_err *e)
{
	(void)be;
	trace("A ");
	return hr_fail(e, HR_EIO, "store", "fake: transaction aborted");
}

static void f_rollback(void *be)
{
	(void)be;
	trace("X ");
}

static int f_commit(void *be, struct hr_err *e)
{
	(void)be;
	trace("C ");
	if (F.commit_rc)
		return hr_fail(e, F.commit_rc, "store", "fake: commit");
	return 0;
}

static int f_solo(void *be, struct wr_job *j)
{
	trace("O ");
	return j->run(be, j);
}

static const struct wr_ops fake_ops = {
    .ready = f_ready,
    .begin = f_begin,
    .savepoint = f_savepoint,
    .rollback_to = f_rollback_to,
    .release = f_release,
    .check = f_check,
    .abort = f_abort,
    .rollback = f_rollback,
    .commit = f_commit,
    .solo = f_solo,
};

static struct wr_ops many_ops; /* fake_ops with run_many */

static int f_kept(void *be)
{
	(void)be;
	trace("K ");
	return 0;
}

static struct wr_ops kept_ops; /* fake_ops with kept: groups of replayable jobs */

static void start(const struct wr_ops *ops, int group_max, int queue_max)
{
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.lock, NULL);
	pthread_cond_init(&F.cond, NULL);
	wr_init(&W, ops, &F, group_max, queue_max);
	struct hr_err err = {0};
	assert_int_equal(wr_start(&W, "test-writer", &err), 0);
}

static void deadline_in(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += WAIT_US / 1000000;
}

static void on_done(void *arg, int rc, const struct hr_err *err)
{
	struct answer *a = arg;
	pthread_mutex_lock(&F.lock);
	if (a->called)
		F.bad = "a job answered twice";
	a->called = true;
	a->rc = rc;
	if ((rc < 0) != (err != NULL))
		F.bad = "an error given with a success or none with a failure";
	if (err)
		hr_strlcpy(a->msg, err->msg, sizeof a->msg);
	a->at = strlen(F.trace);
	F.answered++;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
}

static void queue_async(struct tjob *t, struct answer *a)
{
	assert_int_equal(wr_run_async(&W, &t->j, sizeof *t, on_done, a), 0);
}

static void wait_answered(int n)
{
	struct timespec ts;
	deadline_in(&ts);
	pthread_mutex_lock(&F.lock);
	while (F.answered < n && pthread_cond_timedwait(&F.cond, &F.lock, &ts) == 0)
		;
	int got = F.answered;
	pthread_mutex_unlock(&F.lock);
	assert_int_equal(got, n);
}

/* A solo gate job, queued async: the writer holds on it until open_gate, so
 * what the test queues meanwhile waits and is grouped as the test says. */
static struct tjob gate_job = {.j = {.run = run_job, .solo = true}, .id = 0, .gate = true};
static struct answer gate_answer;

static void close_gate(void)
{
	memset(&gate_answer, 0, sizeof gate_answer);
	queue_async(&gate_job, &gate_answer);
	struct timespec ts;
	deadline_in(&ts);
	pthread_mutex_lock(&F.lock);
	while (!F.gate_entered && pthread_cond_timedwait(&F.cond, &F.lock, &ts) == 0)
		;
	bool entered = F.gate_entered;
	pthread_mutex_unlock(&F.lock);
	assert_true(entered);
	assert_int_equal(wr_queued(&W), 0);
}

static void open_gate(void)
{
	pthread_mutex_lock(&F.lock);
	F.gate_open = true;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
}

static void finish(void)
{
	assert_null(F.bad);
}

/* After every test, passed or failed: a failed assert leaves the writer
 * running, perhaps held at the gate; the next test must not start beside
 * it. */
static int teardown(void **state)
{
	(void)state;
	open_gate();
	wr_stop(&W);
	wr_destroy(&W);
	pthread_mutex_destroy(&F.lock);
	pthread_cond_destroy(&F.cond);
	return 0;
}

static void mk(struct tjob *t, int id, int rc)
{
	memset(t, 0, sizeof *t);
	t->j.run = run_job;
	t->id = id;
	t->rc = rc;
}

/* n jobs that succeed, numbered from id. */
static void mk_jobs(struct tjob *t, int n, int id)
{
	for (int i = 0; i < n; i++)
		mk(&t[i], id + i, 0);
}

static void queue_jobs(struct tjob *t, struct answer *a, int n)
{
	memset(a, 0, (size_t)n * sizeof *a);
	for (int i = 0; i < n; i++)
		queue_async(&t[i], &a[i]);
}

/* Lets the writer go on past the gate; waits for `answered` callbacks in
 * all (the gate's included). */
static void release(int answered)
{
	open_gate();
	wait_answered(answered);
}

/* Five queued jobs make one transaction: a savepoint around each, the
 * failing one rolled back to its savepoint alone, one commit; every caller
 * answered after the commit, in queue order, with its own result. */
static void test_group_savepoints(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	close_gate();
	struct tjob t[5];
	struct answer a[5];
	mk_jobs(t, 5, 1);
	t[2].rc = HR_ECONFLICT;
	queue_jobs(t, a, 5);
	assert_int_equal(wr_queued(&W), 5);
	release(6);
	assert_string_equal(F.trace, "O j0 B S j1 R S j2 R S j3 T R S j4 R S j5 R C ");
	size_t committed = strlen(F.trace);
	for (int i = 0; i < 5; i++) {
		assert_true(a[i].called);
		assert_int_equal(a[i].rc, i == 2 ? HR_ECONFLICT : 0);
		assert_int_equal(a[i].at, committed);
	}
	assert_string_equal(a[2].msg, "job 3 failed");
	assert_int_equal(gate_answer.rc, 0);
	/* jobs is counted once a group's callbacks have returned: stop first. */
	wr_stop(&W);
	uint64_t commits, jobs;
	wr_stats(&W, &commits, &jobs);
	assert_int_equal(commits, 2); /* the solo gate and the group */
	assert_int_equal(jobs, 6);
	finish();
}

/* group_max bounds a group; a solo job ends the group before it and runs
 * alone; a group of one job has no savepoint. */
static void test_group_max_and_solo(void **state)
{
	(void)state;
	start(&fake_ops, 2, 0);
	close_gate();
	struct tjob t[6];
	struct answer a[6];
	mk_jobs(t, 6, 1);
	t[3].j.solo = true;
	queue_jobs(t, a, 6);
	release(7);
	assert_string_equal(F.trace, "O j0 "
	                             "B S j1 R S j2 R C "
	                             "B j3 C "
	                             "O j4 "
	                             "B S j5 R S j6 R C ");
	uint64_t commits;
	wr_stats(&W, &commits, NULL);
	assert_int_equal(commits, 5);
	finish();
}

/* A group of one failing job is rolled back whole, and nothing commits. */
static void test_single_failure_rolls_back(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	struct tjob t;
	mk(&t, 1, HR_EINVAL);
	struct hr_err err = {0};
	assert_int_equal(wr_run_blocking(&W, &t.j, &err), HR_EINVAL);
	assert_string_equal(err.msg, "job 1 failed");
	assert_string_equal(F.trace, "B j1 X ");
	mk(&t, 2, 0);
	t.j.solo = true;
	t.rc = HR_EIO;
	assert_int_equal(wr_run_blocking(&W, &t.j, &err), HR_EIO);
	uint64_t commits, jobs;
	wr_stats(&W, &commits, &jobs);
	assert_int_equal(commits, 0);
	assert_int_equal(jobs, 2);
	finish();
}

/* With queue_max jobs waiting, limited (client) jobs are refused with
 * HR_EBUSY, blocking or not; internal ones are still queued and run. */
static void test_queue_max_limited_only(void **state)
{
	(void)state;
	start(&fake_ops, 0, 1);
	close_gate();
	struct tjob t1, t2, t3, t4;
	struct answer a1 = {0}, a3 = {0};
	mk(&t1, 1, 0);
	t1.j.limited = true;
	queue_async(&t1, &a1);
	mk(&t2, 2, 0);
	t2.j.limited = true;
	assert_int_equal(wr_run_async(&W, &t2.j, sizeof t2, on_done, NULL), HR_EBUSY);
	struct hr_err err = {0};
	assert_int_equal(wr_run_blocking(&W, &t2.j, &err), HR_EBUSY);
	assert_string_equal(err.msg, "write queue full or store closing");
	mk(&t3, 3, 0);
	queue_async(&t3, &a3);
	assert_int_equal(wr_queued(&W), 2);
	release(3);
	assert_int_equal(a1.rc, 0);
	assert_int_equal(a3.rc, 0);
	assert_string_equal(F.trace, "O j0 B S j1 R S j3 R C ");
	/* The queue is empty again: a limited job goes through. */
	mk(&t4, 4, 0);
	t4.j.limited = true;
	assert_int_equal(wr_run_blocking(&W, &t4.j, &err), 0);
	finish();
}

/* A backend that cannot be used (ready) or cannot begin fails every job
 * of the group with its error, and runs none of them; a solo job likewise. */
static void test_unavailable_and_begin_failure(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	close_gate();
	F.ready_rc = HR_EBUSY;
	struct tjob t[3];
	struct answer a[3];
	mk_jobs(t, 3, 1);
	t[2].j.solo = true;
	queue_jobs(t, a, 3);
	release(4);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(a[i].rc, HR_EBUSY);
		assert_string_equal(a[i].msg, "fake: unavailable");
	}
	assert_string_equal(F.trace, "O j0 "); /* only the gate ran, before */

	F.ready_rc = 0;
	F.begin_rc = HR_EIO;
	struct tjob b;
	mk(&b, 4, 0);
	struct hr_err err = {0};
	assert_int_equal(wr_run_blocking(&W, &b.j, &err), HR_EIO);
	assert_string_equal(err.msg, "fake: cannot begin");
	assert_string_equal(err.field, "store");
	assert_string_equal(F.trace, "O j0 B ");
	uint64_t commits;
	wr_stats(&W, &commits, NULL);
	assert_int_equal(commits, 1);
	finish();
}

/* A job that breaks the transaction fails the whole group, the jobs that
 * succeeded before it too (none is durable), with the backend's reason;
 * so does a failed commit. */
static void test_lost_transaction_fails_group(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	close_gate();
	F.break_id = 2;
	struct tjob t[3];
	struct answer a[3];
	mk_jobs(t, 3, 1);
	queue_jobs(t, a, 3);
	release(4);
	assert_string_equal(F.trace, "O j0 B S j1 R S j2 A ");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(a[i].rc, HR_EIO);
		assert_string_equal(a[i].msg, "fake: transaction aborted");
	}

	F.break_id = 0;
	F.commit_rc = HR_EBUSY;
	F.trace[0] = '\0';
	struct tjob c;
	mk(&c, 4, 0);
	struct hr_err err = {0};
	assert_int_equal(wr_run_blocking(&W, &c.j, &err), HR_EBUSY);
	assert_string_equal(err.msg, "fake: commit");
	assert_string_equal(F.trace, "B j4 C ");
	uint64_t commits;
	wr_stats(&W, &commits, NULL);
	assert_int_equal(commits, 1); /* the gate only */
	finish();
}

/* run_many takes the runs of jobs it wants (here two or more pipeable in a
 * row) and the writer runs the others alone in their savepoints; a group of
 * one never goes to run_many; a run_many that loses the transaction fails
 * the group. */
static void test_run_many(void **state)
{
	(void)state;
	many_ops = fake_ops;
	many_ops.run_many = f_run_many;
	start(&many_ops, 0, 0);
	close_gate();
	static const bool pipe[6] = {true, true, false, true, false, true};
	struct tjob t[6];
	struct answer a[6];
	mk_jobs(t, 6, 1);
	for (int i = 0; i < 6; i++)
		t[i].j.pipeable = pipe[i];
	t[1].rc = HR_ECONFLICT;
	queue_jobs(t, a, 6);
	release(7);
	assert_string_equal(F.trace, "O j0 B M[ j1 j2 ] S j3 R S j4 R S j5 R S j6 R C ");
	for (int i = 0; i < 6; i++)
		assert_int_equal(a[i].rc, i == 1 ? HR_ECONFLICT : 0);

	F.trace[0] = '\0';
	struct tjob one;
	mk(&one, 7, 0);
	one.j.pipeable = true;
	assert_int_equal(wr_run_blocking(&W, &one.j, NULL), 0);
	assert_string_equal(F.trace, "B j7 C ");

	F.many_rc = HR_EBUSY;
	F.trace[0] = '\0';
	F.gate_open = false;
	F.gate_entered = false;
	close_gate();
	struct tjob p[2];
	struct answer pa[2];
	mk_jobs(p, 2, 8);
	p[0].j.pipeable = p[1].j.pipeable = true;
	queue_jobs(p, pa, 2);
	release(10);
	assert_string_equal(F.trace, "O j0 B M[ j8 j9 ] A ");
	assert_int_equal(pa[0].rc, HR_EIO);
	assert_int_equal(pa[1].rc, HR_EIO);
	finish();
}

static void *stop_thread(void *arg)
{
	(void)arg;
	wr_stop(&W);
	return NULL;
}

/* Stopping refuses new jobs at once but runs every job already queued
 * before the writer ends. */
static void test_stop_drains(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	close_gate();
	struct tjob t[3];
	struct answer a[3];
	mk_jobs(t, 3, 1);
	queue_jobs(t, a, 3);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, stop_thread, NULL), 0);
	/* Wait until the stop is under way: new jobs are refused. */
	struct tjob late;
	mk(&late, 9, 0);
	int64_t deadline = hr_mono_us() + WAIT_US;
	bool stopping = false;
	while (!stopping && hr_mono_us() < deadline) {
		pthread_mutex_lock(&W.qlock);
		stopping = W.stopping;
		pthread_mutex_unlock(&W.qlock);
		struct timespec ts = {0, 200000};
		if (!stopping)
			nanosleep(&ts, NULL);
	}
	assert_true(stopping);
	struct hr_err err = {0};
	assert_int_equal(wr_run_blocking(&W, &late.j, &err), HR_EBUSY);
	assert_string_equal(err.msg, "write queue full or store closing");
	assert_int_equal(F.answered, 0);
	open_gate();
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(F.answered, 4);
	for (int i = 0; i < 3; i++)
		assert_int_equal(a[i].rc, 0);
	assert_string_equal(F.trace, "O j0 B S j1 R S j2 R S j3 R C ");
	assert_false(W.running);
	finish(); /* its wr_stop is a second stop: it does nothing */
}

/* Many blocking callers at once: each gets its own result and error. */
struct blocker {
	struct tjob t;
	int rc;
	struct hr_err err;
};

static void *block_thread(void *arg)
{
	struct blocker *b = arg;
	b->rc = wr_run_blocking(&W, &b->t.j, &b->err);
	return NULL;
}

static void test_blocking_callers(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	enum { N = 16 };
	struct blocker b[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		memset(&b[i], 0, sizeof b[i]);
		mk(&b[i].t, i + 1, i % 3 == 0 ? HR_ECONFLICT : 0);
		assert_int_equal(pthread_create(&th[i], NULL, block_thread, &b[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(b[i].rc, i % 3 == 0 ? HR_ECONFLICT : 0);
		if (i % 3 == 0) {
			char want[32];
			snprintf(want, sizeof want, "job %d failed", i + 1);
			assert_string_equal(b[i].err.msg, want);
		} else {
			assert_int_equal(b[i].err.code, 0);
		}
	}
	uint64_t jobs;
	wr_stats(&W, NULL, &jobs);
	assert_int_equal(jobs, N);
	finish();
}

/* What a callback hands to the end of its group (store_group_done): run
 * once per group after the group's last callback, however many of its
 * callbacks ask (the first asking is told 1, the others 0); asked outside a
 * group's answers, -1 and nothing runs. */
static void after_group(void *arg)
{
	trace("%s ", (const char *)arg);
	pthread_mutex_lock(&F.lock);
	F.answered++;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
}

static void on_done_defer(void *arg, int rc, const struct hr_err *err)
{
	struct tjob *t = arg;
	(void)err;
	int first = store_group_done(after_group, "N");
	int again = store_group_done(after_group, "N");
	trace("a%d:%d:%d%d ", t->id, rc, first, again);
	if (t->id == 2 && store_group_done(after_group, "M") != 1)
		F.bad = "M was not queued";
	pthread_mutex_lock(&F.lock);
	F.answered++;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
}

static void test_group_done(void **state)
{
	(void)state;
	start(&fake_ops, 0, 0);
	close_gate();
	struct tjob t[3];
	mk_jobs(t, 3, 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(wr_run_async(&W, &t[i].j, sizeof t[i], on_done_defer, &t[i]), 0);
	/* The gate's answer, three callbacks, then N and M once each. */
	release(1 + 3 + 2);
	assert_string_equal(F.trace, "O j0 B S j1 R S j2 R S j3 R C a1:0:10 a2:0:00 a3:0:00 N M ");
	/* A second group asks again: its own run. */
	struct tjob u;
	mk(&u, 4, 0);
	assert_int_equal(wr_run_async(&W, &u.j, sizeof u, on_done_defer, &u), 0);
	wait_answered(1 + 3 + 2 + 2);
	assert_string_equal(F.trace, "O j0 B S j1 R S j2 R S j3 R C a1:0:10 a2:0:00 a3:0:00 N M "
	                             "B j4 C a4:0:10 N ");
	/* Outside a group's answers (here, the test's thread): nothing queued,
	 * nothing run; the caller does it itself. */
	assert_int_equal(store_group_done(after_group, "Z"), -1);
	assert_int_equal(F.answered, 1 + 3 + 2 + 2);
	assert_null(strstr(F.trace, "Z"));
	finish();
}

/* Between rounds of one test: an empty trace, no answers yet, the gate
 * ready to hold the writer again. */
static void round_reset(void)
{
	pthread_mutex_lock(&F.lock);
	F.trace[0] = '\0';
	F.answered = 0;
	F.gate_open = false;
	F.gate_entered = false;
	pthread_mutex_unlock(&F.lock);
}

/* One round: the gate closed, n jobs queued behind it, all answered. */
static void round_run(struct tjob *t, struct answer *a, int n)
{
	round_reset();
	close_gate();
	queue_jobs(t, a, n);
	release(n + 1);
}

/* n replayable jobs, numbered from id. */
static void mk_replayable(struct tjob *t, int n, int id)
{
	mk_jobs(t, n, id);
	for (int i = 0; i < n; i++)
		t[i].j.replayable = true;
}

/*
 * A backend with kept(): a group of replayable jobs runs with no savepoint
 * (kept after each); one failing job rolls the whole transaction back and
 * the group runs again, a savepoint each, every caller then answered once
 * with its own result; the next groups take savepoints
 * (WR_CLASSIC_AFTER_REPLAY), and a group with one job that cannot run
 * again always does.
 */
static void test_optimistic_groups(void **state)
{
	(void)state;
	kept_ops = fake_ops;
	kept_ops.kept = f_kept;
	start(&kept_ops, 0, 0);

	struct tjob t[4];
	struct answer a[4];
	mk_replayable(t, 4, 1);
	round_run(t, a, 4);
	assert_string_equal(F.trace, "O j0 B j1 K j2 K j3 K j4 K C ");
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i].rc, 0);
	assert_int_equal(wr_replays(&W), 0);

	/* One fails: rolled back, run again with savepoints. */
	struct tjob u[4];
	struct answer b[4];
	mk_replayable(u, 4, 11);
	u[2].rc = HR_ELIMIT;
	round_run(u, b, 4);
	assert_string_equal(F.trace,
	                    "O j0 B j11 K j12 K j13 X B S j11 R S j12 R S j13 T R S j14 R C ");
	size_t committed = strlen(F.trace);
	for (int i = 0; i < 4; i++) {
		assert_true(b[i].called);
		assert_int_equal(b[i].rc, i == 2 ? HR_ELIMIT : 0);
		assert_int_equal(b[i].at, committed);
	}
	assert_string_equal(b[2].msg, "job 13 failed");
	assert_int_equal(wr_replays(&W), 1);

	/* The groups after it take savepoints, replayable or not. */
	for (int g = 0; g < WR_CLASSIC_AFTER_REPLAY + 1; g++) {
		struct tjob v[2];
		struct answer c[2];
		mk_replayable(v, 2, 21);
		round_run(v, c, 2);
		assert_string_equal(F.trace, g < WR_CLASSIC_AFTER_REPLAY
		                                 ? "O j0 B S j21 R S j22 R C "
		                                 : "O j0 B j21 K j22 K C ");
	}

	/* One job that cannot run again: savepoints for the whole group. */
	struct tjob x[3];
	struct answer d[3];
	mk_replayable(x, 3, 31);
	x[1].j.replayable = false;
	round_run(x, d, 3);
	assert_string_equal(F.trace, "O j0 B S j31 R S j32 R S j33 R C ");
	assert_int_equal(wr_replays(&W), 1);
	finish();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_group_savepoints, teardown),
	    cmocka_unit_test_teardown(test_group_max_and_solo, teardown),
	    cmocka_unit_test_teardown(test_single_failure_rolls_back, teardown),
	    cmocka_unit_test_teardown(test_queue_max_limited_only, teardown),
	    cmocka_unit_test_teardown(test_unavailable_and_begin_failure, teardown),
	    cmocka_unit_test_teardown(test_lost_transaction_fails_group, teardown),
	    cmocka_unit_test_teardown(test_run_many, teardown),
	    cmocka_unit_test_teardown(test_stop_drains, teardown),
	    cmocka_unit_test_teardown(test_blocking_callers, teardown),
	    cmocka_unit_test_teardown(test_group_done, teardown),
	    cmocka_unit_test_teardown(test_optimistic_groups, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
