/*
 * test_postgres.c - what only the PostgreSQL backend has (the conformance
 * suite, test_store.c, covers everything store_ops promises): the schema's
 * monthly partitions, losing the server and getting it back (writes fail
 * cleanly with HR_EBUSY meanwhile, nothing is half-written, and the store
 * reconnects by itself), and two stores (nodes) migrating at once. One real
 * server (tests/pgtest.h) for the file, a fresh database per test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "herald.h"
#include "pgtest.h"
#include "store/postgres.h"
#include "store/store.h"
#include "store_test.h"

static struct pgtest pg;
static int seq;

struct fx {
	char name[32];
	char dsn[400];
	struct store *st;
};

static int group_setup(void **state)
{
	(void)state;
	if (pgtest_start(&pg) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return pgtest_stop(&pg) == 0 ? 0 : -1;
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	snprintf(f->name, sizeof f->name, "p%d", ++seq);
	if (pgtest_createdb(&pg, f->name) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
		free(f);
		return -1;
	}
	pgtest_conninfo(&pg, f->name, f->dsn, sizeof f->dsn);
	struct hr_err err = {0};
	if (store_postgres.open(f->dsn, NULL, &f->st, &err) != 0) {
		fprintf(stderr, "open: %s: %s\n", err.field, err.msg);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	store_postgres.close(f->st);
	free(f);
	return 0;
}

/* One text value from a query on the test's database (a side connection,
 * as an operator's psql would be). Caller frees. */
static char *query1(struct fx *f, const char *sql)
{
	PGconn *c = pgtest_connect(&pg, f->name);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 1);
	char *v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	assert_non_null(v);
	return v;
}

/* Messages land in the partition of their id's month, made ahead by open;
 * events in their message's month too, so retention drops both together. */
static void test_partitions(void **state)
{
	struct fx *f = *state;
	struct message m;
	mk_msg(&m, "t1", "acc", 0, 0);
	assert_int_equal(f->st->ops->message_insert(f->st, &m, 1, NULL, NULL, NULL), 0);

	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char want[32], sql[200];
	snprintf(want, sizeof want, "message_%04d%02d", tm.tm_year + 1900, tm.tm_mon + 1);
	snprintf(sql, sizeof sql, "SELECT tableoid::regclass::text FROM message WHERE id = '%s'",
	         m.id);
	char *part = query1(f, sql);
	assert_string_equal(part, want);
	free(part);
	snprintf(want, sizeof want, "message_event_%04d%02d", tm.tm_year + 1900, tm.tm_mon + 1);
	snprintf(sql, sizeof sql,
	         "SELECT tableoid::regclass::text FROM message_event WHERE message_id = '%s'",
	         m.id);
	part = query1(f, sql);
	assert_string_equal(part, want);
	free(part);

	/* The current month, one behind and three ahead, for both tables. */
	char *n =
	    query1(f, "SELECT count(*) FROM pg_inherits i JOIN pg_class c"
	              " ON c.oid = i.inhrelid WHERE c.relname ~ '^message(_event)?_[0-9]{6}$'");
	assert_string_equal(n, "10");
	free(n);
	/* Each partition vacuums early (the queue rewrites its rows). */
	snprintf(sql, sizeof sql,
	         "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = '%s'",
	         want);
	char *opts = query1(f, sql);
	assert_non_null(strstr(opts, "autovacuum_vacuum_scale_factor=0.02"));
	free(opts);

	/* An id outside every month (a foreign one) still has a home. */
	struct message odd;
	mk_msg(&odd, "t1", "acc", 0, 0);
	strcpy(odd.id, "00000000000000000000000001");
	assert_int_equal(f->st->ops->message_insert(f->st, &odd, 1, NULL, NULL, NULL), 0);
	part = query1(f, "SELECT tableoid::regclass::text FROM message"
	                 " WHERE id = '00000000000000000000000001'");
	assert_string_equal(part, "message_default");
	free(part);

	/* migrate (and every later open) finds the partitions there. */
	int applied = -1;
	struct hr_err err = {0};
	assert_int_equal(f->st->ops->migrate(f->st, &applied, &err), 0);
	assert_int_equal(applied, 0);
}

struct async_rc {
	atomic_int calls, rc;
};

static void async_cb(void *arg, int rc, const struct hr_err *err)
{
	(void)err;
	struct async_rc *a = arg;
	atomic_store(&a->rc, rc);
	atomic_fetch_add(&a->calls, 1);
}

/*
 * The server goes away and comes back: meanwhile every write and read
 * answers HR_EBUSY (the API's 503) and leaves nothing behind; afterwards
 * the same store works again without being reopened. A big write in flight
 * when the server went down is all there or not there at all.
 */
static void test_server_restart(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct message a, b, c;
	mk_msg(&a, "t1", "acc", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &a, 1, NULL, NULL, NULL), 0);

	/* A large insert queued, then the server stopped under it. */
	enum { BIG = 3000 };
	struct message *big = calloc(BIG, sizeof *big);
	assert_non_null(big);
	for (int i = 0; i < BIG; i++)
		mk_msg(&big[i], "t1", "big", 1, 0);
	struct async_rc ar;
	atomic_store(&ar.calls, 0);
	atomic_store(&ar.rc, 1);
	assert_int_equal(st->ops->message_insert(st, big, BIG, NULL, async_cb, &ar), 0);
	assert_int_equal(pgtest_server_down(&pg), 0);
	assert_true(wait_int(&ar.calls, 1, WAIT_US));
	int big_rc = atomic_load(&ar.rc);
	assert_true(big_rc == 0 || big_rc == HR_EBUSY);

	/* Down: writes and reads fail cleanly, with the code the API maps to 503. */
	mk_msg(&b, "t1", "acc", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &b, 1, NULL, NULL, NULL), HR_EBUSY);
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, a.id, &g), HR_EBUSY);
	struct message out[4];
	size_t n = 9;
	assert_int_equal(st->ops->claim(st, "acc", 0, 30 * SEC, 4, out, &n), HR_EBUSY);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->inbox_append(st, "acc", "whatsapp", "", "{}", 2, NULL, NULL),
	                 HR_EBUSY);
	struct hr_err err = {0};
	struct tenant_row t = {.id = "t1", .name = "T"};
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), HR_EBUSY);
	assert_non_null(strstr(err.msg, "postgres"));

	/* Up again: the same store reconnects on its next call. */
	assert_int_equal(pgtest_server_up(&pg), 0);
	mk_msg(&c, "t1", "acc", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &c, 1, NULL, NULL, NULL), 0);
	assert_int_equal(status_of(st, a.id), MSG_QUEUED);
	assert_int_equal(status_of(st, c.id), MSG_QUEUED);
	assert_int_equal(st->ops->message_get(st, NULL, b.id, &g), HR_ENOTFOUND);
	assert_int_equal(count_events(st, b.id, NULL), 0);

	/* The big insert: whole or absent, never part (and whole if it said 0). */
	int64_t big_n = count_msgs(st, NULL) - 2;
	fprintf(stderr, "    insert in flight at the stop: rc %d, %lld of %d rows\n", big_rc,
	        (long long)big_n, BIG);
	assert_true(big_n == 0 || big_n == BIG);
	if (big_rc == 0)
		assert_int_equal(big_n, BIG);
	int64_t counts[MSG__COUNT];
	assert_int_equal(st->ops->message_counts(st, "t1", counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 2 + big_n);

	/* Claims, outcomes and the inbox work again too. */
	assert_int_equal(st->ops->claim(st, "acc", 0, 30 * SEC, 4, out, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		message_clear(&out[i]);
	assert_int_equal(st->ops->inbox_append(st, "acc", "whatsapp", "", "{}", 2, NULL, NULL), 0);
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 1);
	free(big);
}

/* Several nodes starting at once on an empty database: each migration is
 * applied once (the advisory lock), every node opens. */
struct opener {
	pthread_t th;
	const char *dsn;
	struct store *st;
	int rc;
};

static void *open_thread(void *arg)
{
	struct opener *o = arg;
	struct hr_err err = {0};
	o->rc = store_postgres.open(o->dsn, NULL, &o->st, &err);
	return NULL;
}

static void test_concurrent_open_migrates_once(void **state)
{
	(void)state;
	char name[32], dsn[400];
	snprintf(name, sizeof name, "p%d", ++seq);
	assert_int_equal(pgtest_createdb(&pg, name), 0);
	pgtest_conninfo(&pg, name, dsn, sizeof dsn);
	enum { K = 4 };
	struct opener o[K];
	for (int i = 0; i < K; i++) {
		o[i] = (struct opener){.dsn = dsn};
		assert_int_equal(pthread_create(&o[i].th, NULL, open_thread, &o[i]), 0);
	}
	for (int i = 0; i < K; i++) {
		pthread_join(o[i].th, NULL);
		assert_int_equal(o[i].rc, 0);
	}
	struct fx f = {0};
	snprintf(f.name, sizeof f.name, "%s", name);
	char *v = query1(&f, "SELECT count(*) FROM schema_migrations");
	assert_string_equal(v, "1");
	free(v);
	for (int i = 0; i < K; i++)
		store_postgres.close(o[i].st);
}

struct pj_outcome {
	atomic_int done;
	int rc;
	struct hr_err err;
};

static void pj_cb(void *arg, int rc, const struct hr_err *err)
{
	struct pj_outcome *o = arg;
	o->rc = rc;
	if (err)
		o->err = *err;
	atomic_store(&o->done, 1);
}

/*
 * Accepts queued together go in one pipeline; two of them fail there (a
 * message id already taken, an idempotency key already used): each fails
 * alone with its own field, nothing of it stays, and every other accept,
 * before and after the failing ones, is committed. The writer is held on a
 * table lock while the jobs queue, so they are one group for certain.
 */
static void test_pipeline_failures_isolated(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	PGconn *lock = pgtest_connect(&pg, f->name);
	assert_non_null(lock);
	PGresult *r = PQexec(lock, "BEGIN; LOCK TABLE idempotency_key IN SHARE ROW EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);

	enum { J = 21 };
	static struct message m[J];
	static struct pj_outcome o[J];
	struct idem_put k0 = {
	    .tenant_id = "t1", .key = "k0", .request_hash = "h", .http_status = 202};
	for (int i = 0; i < J; i++) {
		mk_msg(&m[i], "t1", "pipe", 0, 0);
		memset(&o[i], 0, sizeof o[i]);
	}
	memcpy(m[7].id, m[3].id, sizeof m[7].id); /* taken by job 3 */
	/* Job 0 (with a key) blocks the writer on the lock; the rest queue. */
	assert_int_equal(st->ops->message_insert(st, &m[0], 1, &k0, pj_cb, &o[0]), 0);
	for (int i = 1; i < J; i++)
		assert_int_equal(
		    st->ops->message_insert(st, &m[i], 1, i == 13 ? &k0 : NULL, pj_cb, &o[i]), 0);
	r = PQexec(lock, "COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(lock);
	for (int i = 0; i < J; i++)
		assert_true(wait_int(&o[i].done, 1, WAIT_US));

	for (int i = 0; i < J; i++) {
		if (i == 7) {
			assert_int_equal(o[i].rc, HR_ECONFLICT);
			assert_string_equal(o[i].err.field, "id");
		} else if (i == 13) {
			assert_int_equal(o[i].rc, HR_ECONFLICT);
			assert_string_equal(o[i].err.field, "Idempotency-Key");
			struct message g;
			assert_int_equal(st->ops->message_get(st, NULL, m[i].id, &g), HR_ENOTFOUND);
		} else {
			assert_int_equal(o[i].rc, 0);
			assert_int_equal(status_of(st, m[i].id), MSG_QUEUED);
			assert_int_equal(count_events(st, m[i].id, "accepted"), 1);
		}
	}
	assert_int_equal(count_msgs(st, "t1"), J - 2);
	uint64_t pipes = 0, failed = 0;
	store_postgres_pipe_stats(st, &pipes, &failed);
	fprintf(stderr, "    %llu pipeline round trips, %llu failed jobs in them\n",
	        (unsigned long long)pipes, (unsigned long long)failed);
	assert_int_equal(failed, 2);
	assert_true(pipes >= 3); /* the first, then a resend after each failure */
}

/* Runs sql (no rows back) on a side connection. */
static void side_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "side: %s: %s", sql, PQerrorMessage(c));
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
}

/* A trigger that makes every audit event whose detail matches `like` fail
 * on the server: the failure of a write sent ahead of its result. */
static void fail_events_like(struct fx *f, const char *like)
{
	PGconn *c = pgtest_connect(&pg, f->name);
	assert_non_null(c);
	char sql[600];
	snprintf(sql, sizeof sql,
	         "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
	         " IF NEW.detail LIKE '%s' THEN RAISE EXCEPTION 'boom on %%', NEW.message_id;"
	         " END IF; RETURN NEW; END $f$;"
	         "CREATE TRIGGER boom BEFORE INSERT ON message_event"
	         " FOR EACH ROW EXECUTE FUNCTION boom()",
	         like);
	side_exec(c, sql);
	PQfinish(c);
}

static uint64_t replays_of(struct store *st)
{
	uint64_t n = 0;
	store_postgres_tx_stats(st, NULL, &n);
	return n;
}

static uint64_t trips_of(struct store *st)
{
	uint64_t n = 0;
	store_postgres_tx_stats(st, &n, NULL);
	return n;
}

static struct send_result outcome(const char *id, enum send_kind kind, const char *pid,
                                  const char *text)
{
	struct send_result r = {.kind = kind, .attempt = 1, .due_at = hr_now_us() + 60 * SEC};
	hr_strlcpy(r.message_id, id, sizeof r.message_id);
	hr_strlcpy(r.provider_id, pid, sizeof r.provider_id);
	hr_strlcpy(r.error_text, text, sizeof r.error_text);
	return r;
}

/*
 * Writes of an outcome fail on the server after its item ended (its event
 * is refused; its message update went through before): that outcome is
 * undone alone, the cache forgets what it did (a second outcome for the
 * same message, later in the batch, meets the message as it was), and every
 * other outcome is recorded once. The run was undone and run again once,
 * each outcome then checked alone.
 */
static void test_outcome_fails_after_item_ended(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char m[5][27];
	for (int i = 0; i < 5; i++)
		claimed_msg(st, "late", 5, now, 30 * SEC, m[i]);
	fail_events_like(f, "%boom%");
	uint64_t replays = replays_of(st);
	struct send_result r[6] = {
	    outcome(m[0], SEND_OK, "wamid.0", ""),     outcome(m[1], SEND_FAILED, "", "boom one"),
	    outcome(m[1], SEND_OK, "wamid.1", ""),     outcome(m[2], SEND_OK, "wamid.2", ""),
	    outcome(m[3], SEND_RETRY, "", "boom two"), outcome(m[4], SEND_OK, "wamid.4", ""),
	};
	assert_int_equal(st->ops->record_results(st, r, 6, NULL, NULL), 0);
	assert_int_equal(replays_of(st) - replays, 1);
	for (int i = 0; i < 5; i++) {
		struct message g = msg_of(st, m[i]);
		if (i == 3) {
			assert_int_equal(g.status, MSG_SENDING);
			assert_string_equal(g.error_text, "");
			assert_int_equal(count_events(st, m[i], NULL), 1);
		} else {
			char pid[16];
			snprintf(pid, sizeof pid, "wamid.%d", i);
			assert_int_equal(g.status, MSG_SENT);
			assert_string_equal(g.provider_id, pid);
			assert_int_equal(count_events(st, m[i], NULL), 2);
			assert_int_equal(count_events(st, m[i], "sent"), 1);
		}
		message_clear(&g);
	}
}

/* Every outcome's event refused: one rerun, each checked alone, every one
 * fails; the call still succeeds and nothing is recorded. */
static void test_outcomes_all_fail(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char m[5][27];
	for (int i = 0; i < 5; i++)
		claimed_msg(st, "all", 5, now, 30 * SEC, m[i]);
	fail_events_like(f, "%\"attempt\":1%");
	uint64_t replays = replays_of(st);
	struct send_result r[5];
	for (int i = 0; i < 5; i++)
		r[i] = outcome(m[i], SEND_OK, "wamid.x", "");
	assert_int_equal(st->ops->record_results(st, r, 5, NULL, NULL), 0);
	assert_int_equal(replays_of(st) - replays, 1);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(status_of(st, m[i]), MSG_SENDING);
		assert_int_equal(count_events(st, m[i], NULL), 1);
	}
}

/* A webhook batch has no items: one refused write fails the whole call,
 * and nothing of it stays (statuses, events, inbox marks). */
static void test_webhook_write_fails_whole_batch(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char x[27], y[27];
	sent_msg(st, "wf", "wamid.x", x);
	sent_msg(st, "wf", "wamid.y", y);
	fail_events_like(f, "%boom%");
	struct wh_status sx = {.provider_id = "wamid.x", .status = MSG_DELIVERED};
	struct wh_status sy = {
	    .provider_id = "wamid.y", .status = MSG_FAILED, .error_text = "boom"};
	struct inbox_parsed rows[2] = {
	    {.inbox_id = inbox_add(st, "wf"), .account_id = "wf", .statuses = &sx, .nstatuses = 1},
	    {.inbox_id = inbox_add(st, "wf"), .account_id = "wf", .statuses = &sy, .nstatuses = 1},
	};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, rows, 2, hr_now_us(), &s), HR_EIO);
	assert_int_equal(status_of(st, x), MSG_SENT);
	assert_int_equal(status_of(st, y), MSG_SENT);
	assert_int_equal(count_events(st, x, NULL), 2);
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 2);
	char *v = query1(f, "SELECT sum(attempts) FROM webhook_inbox");
	assert_string_equal(v, "0");
	free(v);
}

/* True once a Herald connection waits for a row lock in `stmt` (deadline
 * WAIT_US). */
static bool herald_waits_in(struct fx *f, const char *stmt)
{
	char sql[300];
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'herald'"
	         " AND wait_event_type = 'Lock' AND query LIKE '%s'",
	         stmt);
	int64_t deadline = hr_mono_us() + WAIT_US;
	while (hr_mono_us() < deadline) {
		char *v = query1(f, sql);
		bool yes = strcmp(v, "0") != 0;
		free(v);
		if (yes)
			return true;
		usleep(2000);
	}
	return false;
}

/*
 * A message another node holds (locked, and changed: requeued) is not
 * waited for by the prefetch, nor answered from it: the single read waits
 * for the other transaction and then sees its change, so the outcome is
 * judged stale against it. The rest of the batch is recorded.
 */
static void test_prefetch_leaves_locked_row(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char x[27], y[27], sql[200];
	claimed_msg(st, "lk", 5, now, 30 * SEC, x);
	claimed_msg(st, "lk", 5, now, 30 * SEC, y);
	PGconn *side = pgtest_connect(&pg, f->name);
	assert_non_null(side);
	snprintf(sql, sizeof sql, "BEGIN; UPDATE message SET status = 0 WHERE id = '%s'", x);
	side_exec(side, sql);

	struct send_result r[2] = {outcome(x, SEND_OK, "wamid.x", ""),
	                           outcome(y, SEND_OK, "wamid.y", "")};
	struct outcome o = {0};
	assert_int_equal(st->ops->record_results(st, r, 2, outcome_cb, &o), 0);
	assert_true(
	    herald_waits_in(f, "SELECT id, tenant_id, %FROM message WHERE id = $1 FOR UPDATE"));
	assert_int_equal(atomic_load(&o.done), 0);
	side_exec(side, "COMMIT");
	PQfinish(side);
	wait_outcome(&o);
	assert_int_equal(o.rc, 0);

	struct message g = msg_of(st, x);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_string_equal(g.provider_id, "wamid.x"); /* a stale success keeps its id */
	message_clear(&g);
	struct events ev = events_of(st, x);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.e[1].type, "sent");
	assert_false(ev.e[1].applied);
	json_t *d = detail_of(&ev.e[1]);
	assert_string_equal(json_string_value(json_object_get(d, "current")), "queued");
	json_decref(d);
	events_free(&ev);
	assert_int_equal(status_of(st, y), MSG_SENT);
}

/* What a batch costs in round trips: one to read it, one to write it,
 * however many outcomes or statuses it has. */
static void test_lifecycle_round_trips(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 20 };
	struct message m[N], out[N];
	for (int i = 0; i < N; i++)
		mk_msg(&m[i], "t1", "rt", 0, 0);
	assert_int_equal(st->ops->message_insert(st, m, N, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, "rt", 0, 30 * SEC, N, out, &n), 0);
	assert_int_equal(n, N);
	struct send_result r[N];
	struct wh_status ws[N];
	for (int i = 0; i < N; i++) {
		char pid[40];
		snprintf(pid, sizeof pid, "wamid.rt%d", i);
		r[i] = outcome(out[i].id, SEND_OK, pid, "");
		ws[i] = (struct wh_status){.status = MSG_DELIVERED};
		hr_strlcpy(ws[i].provider_id, pid, sizeof ws[i].provider_id);
		message_clear(&out[i]);
	}
	uint64_t t0 = trips_of(st);
	assert_int_equal(st->ops->record_results(st, r, 1, NULL, NULL), 0);
	uint64_t t1 = trips_of(st);
	assert_int_equal(st->ops->record_results(st, r + 1, N - 1, NULL, NULL), 0);
	uint64_t t2 = trips_of(st);
	fprintf(stderr, "    record_results: 1 outcome %llu round trips, %d outcomes %llu\n",
	        (unsigned long long)(t1 - t0), N - 1, (unsigned long long)(t2 - t1));
	assert_int_equal(t1 - t0, 2);
	assert_int_equal(t2 - t1, 2);

	struct inbox_parsed rows[4];
	for (int i = 0; i < 4; i++)
		rows[i] = (struct inbox_parsed){.inbox_id = inbox_add(st, "rt"),
		                                .account_id = "rt",
		                                .statuses = &ws[i * 5],
		                                .nstatuses = 5};
	struct apply_stats s;
	t0 = trips_of(st);
	assert_int_equal(st->ops->apply_inbox(st, rows, 4, hr_now_us(), &s), 0);
	t1 = trips_of(st);
	fprintf(stderr, "    apply_inbox: 4 rows of 5 statuses %llu round trips\n",
	        (unsigned long long)(t1 - t0));
	assert_int_equal(s.applied, N);
	assert_int_equal(t1 - t0, 2);
	for (int i = 0; i < N; i++)
		assert_int_equal(status_of(st, m[i].id), MSG_DELIVERED);

	/* Retried rows: which of their statuses they recorded before is one
	 * more round trip for the batch, not one per status. */
	struct wh_status rs[6];
	for (int i = 0; i < 6; i++) {
		rs[i] = (struct wh_status){.status = i < 5 ? MSG_READ : MSG_DELIVERED};
		if (i < 5)
			hr_strlcpy(rs[i].provider_id, ws[i].provider_id, sizeof rs[i].provider_id);
		else
			strcpy(rs[i].provider_id, "wamid.rt-unknown");
	}
	struct inbox_parsed rr = {
	    .inbox_id = inbox_add(st, "rt"), .account_id = "rt", .statuses = rs, .nstatuses = 6};
	assert_int_equal(st->ops->apply_inbox(st, &rr, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.applied, 5);
	assert_int_equal(s.unmatched, 1);
	t0 = trips_of(st);
	assert_int_equal(st->ops->apply_inbox(st, &rr, 1, hr_now_us(), &s), 0);
	t1 = trips_of(st);
	fprintf(stderr, "    apply_inbox: a retried row of 6 statuses %llu round trips\n",
	        (unsigned long long)(t1 - t0));
	assert_int_equal(s.applied, 0);
	assert_int_equal(s.ignored, 0);
	assert_int_equal(s.unmatched, 1);
	assert_int_equal(t1 - t0, 3);
	for (int i = 0; i < 5; i++)
		assert_int_equal(count_events(st, m[i].id, "webhook_status"), 2);
	assert_int_equal(replays_of(st), 0);
}

/* Runs `herald migrate` with a config naming this database; its exit
 * status, and its output in out (size bytes). */
static int herald_migrate(const char *yaml, char *out, size_t size)
{
	const char *bin = getenv("HERALD_BIN");
	assert_non_null(bin);
	char dir[] = "/tmp/hr_pgmig_XXXXXX", path[64], cmd[600];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/herald.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(yaml, f);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof cmd, "%s migrate --config %s 2>&1", bin, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	unlink(path);
	rmdir(dir);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `herald migrate` on store.driver postgres: store.url, the password as
 * an env: reference; a reference that does not resolve stops it, naming
 * the key and not the secret. */
static void test_herald_migrate(void **state)
{
	(void)state;
	char name[32], dsn[400], yaml[800], out[2048];
	snprintf(name, sizeof name, "p%d", ++seq);
	assert_int_equal(pgtest_createdb(&pg, name), 0);
	pgtest_conninfo(&pg, name, dsn, sizeof dsn);
	assert_int_equal(setenv("HR_TEST_PGPASS", "s3cret-not-checked", 1), 0);
	/* A URI over TCP this time (the store tests use conninfo over the socket). */
	snprintf(yaml, sizeof yaml,
	         "store:\n  driver: postgres\n"
	         "  url: \"postgresql://%s@127.0.0.1:%d/%s?application_name=migrate\"\n"
	         "  password: env:HR_TEST_PGPASS\n",
	         pg.user, pg.port, name);
	assert_int_equal(herald_migrate(yaml, out, sizeof out), 0);
	assert_non_null(strstr(out, "schema up to date (postgres)"));
	struct fx f = {0};
	snprintf(f.name, sizeof f.name, "%s", name);
	char *v = query1(&f, "SELECT count(*) FROM schema_migrations");
	assert_string_equal(v, "1");
	free(v);

	snprintf(
	    yaml, sizeof yaml,
	    "store:\n  driver: postgres\n  url: \"%s\"\n  password: env:HR_TEST_PGPASS_UNSET\n",
	    dsn);
	unsetenv("HR_TEST_PGPASS_UNSET");
	assert_int_equal(herald_migrate(yaml, out, sizeof out), 1);
	assert_non_null(strstr(out, "store.password"));
	assert_null(strstr(out, "s3cret"));
	assert_int_equal(herald_migrate("store:\n  driver: postgres\n", out, sizeof out), 1);
	assert_non_null(strstr(out, "store.url"));
}

int main(void)
{
	hr_log_set_level(HR_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_partitions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_server_restart, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_pipeline_failures_isolated, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_outcome_fails_after_item_ended, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_outcomes_all_fail, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_webhook_write_fails_whole_batch, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_prefetch_leaves_locked_row, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_lifecycle_round_trips, fx_setup, fx_teardown),
	    cmocka_unit_test(test_concurrent_open_migrates_once),
	    cmocka_unit_test(test_herald_migrate),
	};
	return cmocka_run_group_tests_name("postgres backend", tests, group_setup, group_teardown);
}
