/*
 * test_sqlite.c - what only the SQLite store backend has: its schema
 * bookkeeping (schema_migrations, indexes), the file's journal mode, the
 * query plans of the hot queries, how its writer groups jobs into
 * transactions, failures provoked from a second connection (a trigger, a
 * held write lock), and the columns no store_ops read returns yet. The
 * behaviour every backend shares is in the conformance suite (test_store.c);
 * this file may look at the database directly, through a second raw
 * connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "herald.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "store_test.h"

struct fx {
	char dir[64];
	char path[128];
	struct store *st;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/hr_sqlite_XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof f->path, "%s/herald.db", f->dir);
	struct hr_err err = {0};
	if (store_sqlite.open(f->path, NULL, &f->st, &err) != 0) {
		fprintf(stderr, "open: %s: %s\n", err.field, err.msg);
		rmdir(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	store_sqlite.close(f->st);
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[160];
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Text of the first column of a query on a separate read-only connection
 * ("" for NULL or no row), into buf. */
static const char *qtext(struct fx *f, const char *sql, char *buf, size_t size)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "qtext: %s: %s\n", sqlite3_errmsg(db), sql);
	assert_int_equal(rc, SQLITE_OK);
	buf[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

/* One integer from a query on a separate read-only connection (-1: no row). */
static int64_t q1(struct fx *f, const char *sql)
{
	char buf[32];
	qtext(f, sql, buf, sizeof buf);
	return buf[0] ? strtoll(buf, NULL, 10) : -1;
}

/* Runs statements on a separate read-write connection. */
static void exec_raw(struct fx *f, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "exec_raw: %s: %s\n", msg, sql);
	sqlite3_free(msg);
	sqlite3_close(db);
	assert_int_equal(rc, SQLITE_OK);
}

/* ---------------------------------------------------------------------------
 * The file: schema bookkeeping, journal mode, query plans.
 * ------------------------------------------------------------------------- */

/* Each migration leaves one schema_migrations row, once, however often the
 * database is opened and migrated; a path that cannot be opened is refused. */
static void test_schema_migrations(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *sql;
		int64_t want;
	} checks[] = {
	    {"SELECT count(*) FROM schema_migrations WHERE version = 1", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 2", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 3", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 4", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 5", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 6", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 7", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 8", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 9", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 10", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 11", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 12", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 13", 1},
	    {"SELECT count(*) FROM schema_migrations WHERE version = 14", 1},
	    {"SELECT count(*) FROM schema_migrations", 14},
	    /* Migration 14: one index by provider id. */
	    {"SELECT count(*) FROM sqlite_master WHERE type = 'index'"
	     " AND name IN ('message_provider', 'message_provider_tenant')",
	     1},
	    /* Migration 11: who paused, resumed, cancelled, and why. */
	    {"SELECT count(*) FROM pragma_table_info('batch') WHERE name IN ('paused_at',"
	     " 'resumed_at', 'paused_by', 'resumed_by', 'cancelled_by', 'pause_reason',"
	     " 'cancel_reason')",
	     7},
	    {"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'message_claim'",
	     1},
	};
	struct hr_err err = {0};
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
			assert_int_equal(q1(f, checks[i].sql), checks[i].want);
		/* Reopen, and migrate from a second store on the same file. */
		store_sqlite.close(f->st);
		assert_int_equal(store_sqlite.open(f->path, NULL, &f->st, &err), 0);
		struct store *other;
		assert_int_equal(store_sqlite.open(f->path, NULL, &other, &err), 0);
		int applied = -1;
		assert_int_equal(other->ops->migrate(other, &applied, &err), 0);
		assert_int_equal(applied, 0);
		store_sqlite.close(other);
	}

	struct store *bad;
	err = (struct hr_err){0};
	assert_int_equal(store_sqlite.open("/nonexistent-dir/x/y.db", NULL, &bad, &err), HR_EIO);
	assert_string_equal(err.field, "dsn");
}

/* The file is in WAL mode: readers run beside the writer. */
static void test_wal_mode(void **state)
{
	struct fx *f = *state;
	char buf[16];
	assert_string_equal(qtext(f, "PRAGMA journal_mode", buf, sizeof buf), "wal");
}

/* The checkpointer copies the WAL into the database file by itself: after
 * 4,000 messages the file holds their pages within a few seconds (it
 * stayed one page, the WAL growing for ever, while the checkpointer's
 * connection had read nothing: such a connection does not know the file is
 * in WAL mode and its checkpoints did nothing). */
static void test_checkpoints_run(void **state)
{
	struct fx *f = *state;
	enum { T = 4, PER = 1000 };
	char(*ids)[HR_ID_LEN + 1] = calloc(T * PER, sizeof *ids);
	assert_non_null(ids);
	concurrent_inserts(f->st, T, PER, ids);
	free(ids);
	struct stat sb = {0};
	int64_t deadline = hr_mono_us() + 10000000;
	while (hr_mono_us() < deadline) {
		assert_int_equal(stat(f->path, &sb), 0);
		if (sb.st_size > 1000 * 1024)
			break;
		usleep(20000);
	}
	fprintf(stderr, "    database file %lld bytes after %d messages\n", (long long)sb.st_size,
	        T * PER);
	assert_true(sb.st_size > 1000 * 1024);
}

/* The hot queries must use their indexes (a regression here is a full scan). */
static void test_query_plans(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *sql, *index;
	} plans[] = {
	    {"SELECT id FROM message WHERE status = 0 AND account_id = 'a' AND due_at <= 5"
	     " ORDER BY priority, due_at, id LIMIT 10",
	     "message_claim"},
	    {"SELECT id FROM message WHERE account_id = 'a' AND provider_id = 'p'",
	     "message_provider"},
	    {"SELECT id FROM message WHERE status = 1 AND lease_until < 5", "message_lease"},
	    {"SELECT id FROM webhook_inbox WHERE state IN (0, 2) AND next_try_at <= 5"
	     " ORDER BY id LIMIT 5",
	     "webhook_inbox_pending"},
	    {"SELECT id FROM message_event WHERE message_id = 'x' ORDER BY id",
	     "message_event_msg"},
	    {"SELECT 1 FROM message_event WHERE message_id = 'x' AND inbox_id = 5"
	     " AND status = 3 AND type = 'webhook_status' LIMIT 1",
	     "message_event_msg"},
	    {"SELECT id FROM message WHERE tenant_id = 't' ORDER BY id DESC LIMIT 5",
	     "message_tenant"},
	    /* The claim's screening: probes and per-message lookups by key. */
	    {"SELECT 1 FROM suppression WHERE tenant_id = 't' AND channel = 'sms' LIMIT 1",
	     "PRIMARY KEY"},
	    {"SELECT reason FROM suppression WHERE tenant_id = 't' AND channel = 'sms'"
	     " AND recipient = '+1'",
	     "PRIMARY KEY"},
	    {"SELECT 1 FROM recipient_alias WHERE account_id = 'a' LIMIT 1", "PRIMARY KEY"},
	    {"SELECT new FROM recipient_alias WHERE account_id = 'a' AND old = 'x'", "PRIMARY KEY"},
	    /* Retention's pick (sqlite_retain.c): the id index, in its order. */
	    {"SELECT id FROM message WHERE id > '' AND id < '01HK153X00'"
	     " AND (((16 >> status) & 1) = 1"
	     "  OR (((4 >> status) & 1) = 1 AND channel IN (SELECT value FROM json_each('[]'))))"
	     " ORDER BY id LIMIT 1000",
	     "sqlite_autoindex_message_1"},
	    {"DELETE FROM message_event WHERE message_id = 'x'", "message_event_msg"},
	    /* Message search (sqlite_msg.c list_stmt, migration 10): each
	     * lookup by its tenant-scoped index, not a scan of the tenant. */
	    {"SELECT id FROM message INDEXED BY message_recipient WHERE 1 AND tenant_id = 't'"
	     " AND recipient IN ('+4479', '4479', NULL) AND status = 3 ORDER BY id DESC LIMIT 101",
	     "message_recipient"},
	    {"SELECT id FROM message WHERE 1 AND tenant_id = 't' AND recipient = '+4479'"
	     " ORDER BY id DESC LIMIT 101",
	     "message_recipient"},
	    {"SELECT id FROM message INDEXED BY message_provider WHERE 1 AND tenant_id = 't'"
	     " AND provider_id = 'wamid.x' AND account_id IN (SELECT id FROM channel_account"
	     " WHERE 't' IS NULL OR tenant_id = 't') ORDER BY id DESC LIMIT 101",
	     "message_provider"},
	    {"SELECT id FROM message WHERE 1 AND tenant_id = 't' AND idem_key = 'k'"
	     " ORDER BY id DESC LIMIT 101",
	     "message_idem"},
	    {"SELECT id FROM message WHERE 1 AND tenant_id = 't' AND error_code = '21610'"
	     " ORDER BY id DESC LIMIT 101",
	     "message_error"},
	};
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
		char sql[512];
		snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", plans[i].sql);
		sqlite3_stmt *st;
		assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
		bool uses = false, sorts = false;
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *d = (const char *)sqlite3_column_text(st, 3);
			uses |= strstr(d, plans[i].index) != NULL;
			sorts |= strstr(d, "TEMP B-TREE") != NULL;
		}
		sqlite3_finalize(st);
		if (!uses)
			fprintf(stderr, "plan %zu does not use %s\n", i, plans[i].index);
		assert_true(uses);
		if (i == 0 || strstr(plans[i].sql, "json_each"))
			assert_false(sorts); /* the order comes straight from the index */
	}
	sqlite3_close(db);
}

/*
 * Migration 10 on a database that had messages and idempotency records
 * before it: each message accepted with a key gets the key as the client
 * sent it (a unit's prefix dropped; a single send's answer and every
 * message of a messages:batch answer), never another tenant's message,
 * and a record whose answer is not JSON is passed over.
 */
static void test_migration_10_fills_keys(void **state)
{
	struct fx *f = *state;
	store_sqlite.close(f->st);
	f->st = NULL;
	/* Back to before migration 10. */
	exec_raw(f, "DROP INDEX message_idem; DROP INDEX message_recipient;"
	            " DROP INDEX IF EXISTS message_provider_tenant; DROP INDEX message_error;"
	            " ALTER TABLE message DROP COLUMN idem_key;"
	            " DELETE FROM schema_migrations WHERE version = 10;");
	exec_raw(
	    f,
	    "INSERT INTO message(id, tenant_id, account_id, channel, recipient, content, status,"
	    " created_at, updated_at, due_at) VALUES"
	    " ('01KAAAAAAAAAAAAAAAAAAAAAA1','acme','a','whatsapp','4479','{}',0,1,1,1),"
	    " ('01KAAAAAAAAAAAAAAAAAAAAAA2','acme','a','whatsapp','4479','{}',0,1,1,1),"
	    " ('01KAAAAAAAAAAAAAAAAAAAAAA3','acme','a','whatsapp','4479','{}',0,1,1,1),"
	    " ('01KAAAAAAAAAAAAAAAAAAAAAA4','beta','a','whatsapp','4479','{}',0,1,1,1),"
	    " ('01KAAAAAAAAAAAAAAAAAAAAAA5','acme','a','whatsapp','4479','{}',0,1,1,1);"
	    "INSERT INTO idempotency_key(tenant_id, key, request_hash, http_status, response,"
	    " created_at) VALUES"
	    " ('acme','single','h',202,'{\"id\":\"01KAAAAAAAAAAAAAAAAAAAAAA1\"}',1),"
	    " ('acme','cards'||char(31)||'bk','h',202,'{\"count\":2,\"messages\":["
	    "{\"id\":\"01KAAAAAAAAAAAAAAAAAAAAAA2\"},{\"id\":\"01KAAAAAAAAAAAAAAAAAAAAAA3\"}]}',1),"
	    " ('acme','theirs','h',202,'{\"id\":\"01KAAAAAAAAAAAAAAAAAAAAAA4\"}',1),"
	    " ('acme','broken','h',202,'not json',1);");
	struct hr_err err = {0};
	assert_int_equal(store_sqlite.open(f->path, NULL, &f->st, &err), 0);
	static const struct {
		const char *id, *key;
	} want[] = {
	    {"01KAAAAAAAAAAAAAAAAAAAAAA1", "single"}, {"01KAAAAAAAAAAAAAAAAAAAAAA2", "bk"},
	    {"01KAAAAAAAAAAAAAAAAAAAAAA3", "bk"},     {"01KAAAAAAAAAAAAAAAAAAAAAA4", ""},
	    {"01KAAAAAAAAAAAAAAAAAAAAAA5", ""},
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		char sql[128], got[64];
		snprintf(sql, sizeof sql, "SELECT idem_key FROM message WHERE id = '%s'",
		         want[i].id);
		assert_string_equal(qtext(f, sql, got, sizeof got), want[i].key);
	}
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE idem_key IS NOT NULL"), 3);
	/* And the search finds them by it. */
	struct msg_filter mf = {.status = -1, .limit = 10, .idem_key = "bk"};
	struct message *v;
	size_t n;
	bool more;
	assert_int_equal(f->st->ops->message_list(f->st, "acme", &mf, &v, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, "01KAAAAAAAAAAAAAAAAAAAAAA3");
	for (size_t i = 0; i < n; i++)
		message_clear(&v[i]);
	free(v);
}

/* ---------------------------------------------------------------------------
 * The writer: group commit, failures inside a group.
 * ------------------------------------------------------------------------- */

/* Blocking inserts from many threads are grouped into fewer transactions
 * than jobs. */
static void test_group_commit(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { T = 8, PER = 500 };
	char(*ids)[HR_ID_LEN + 1] = calloc(T * PER, sizeof *ids);
	assert_non_null(ids);
	uint64_t c0, j0, c1, j1;
	store_sqlite_stats(st, &c0, &j0);
	concurrent_inserts(st, T, PER, ids);
	store_sqlite_stats(st, &c1, &j1);
	fprintf(stderr, "    %llu jobs in %llu commits\n", (unsigned long long)(j1 - j0),
	        (unsigned long long)(c1 - c0));
	assert_int_equal(j1 - j0, T * PER);
	assert_true(c1 - c0 < j1 - j0); /* the writer grouped them */
	assert_int_equal(q1(f, "SELECT count(*) FROM message"), T * PER);
	assert_int_equal(q1(f, "SELECT count(*) FROM message_event"), T * PER);
	free(ids);
}

/* The failing jobs of failing_jobs_run share their transaction with the
 * good ones (big alone or with them, then one group). Inserts can run
 * again, so the group first ran without savepoints; the failures rolled it
 * back and it ran once more, a savepoint each, which undid the failing jobs
 * alone. The kept status counts saw each message once. */
static void test_failing_jobs_in_one_group(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct failing_jobs fj;
	failing_jobs_prepare(st, &fj);
	uint64_t c0, j0, c1, j1, r0 = store_sqlite_replays(st);
	store_sqlite_stats(st, &c0, &j0);
	failing_jobs_run(st, &fj);
	store_sqlite_stats(st, &c1, &j1);
	assert_int_equal(store_sqlite_replays(st) - r0, 1);
	assert_int_equal(q1(f, "SELECT sum(n) FROM message_status_count WHERE status = 0"),
	                 FJ_BIG + 3);
	free(fj.big);
	assert_int_equal(j1 - j0, 5);
	assert_true(c1 - c0 <= 2);
	char q[128];
	snprintf(q, sizeof q, "SELECT count(*) FROM message_event WHERE message_id = '%s'",
	         fj.d[0].id);
	assert_int_equal(q1(f, q), 0);
	assert_int_equal(q1(f, "SELECT count(*) FROM message"), FJ_BIG + 3);
}

/* One outcome whose audit event is refused (a trigger, after its message
 * row was already updated) is rolled back alone: its UPDATE is undone with
 * its event, the rest of the batch is recorded. */
static void test_record_outcome_rolled_back_alone(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], b[27], c[27];
	claimed_msg(st, "iso1", 5, now, 30 * SEC, a);
	claimed_msg(st, "iso2", 5, now, 30 * SEC, b);
	claimed_msg(st, "iso3", 5, now, 30 * SEC, c);
	char sql[256];
	snprintf(sql, sizeof sql,
	         "CREATE TRIGGER boom BEFORE INSERT ON message_event"
	         " WHEN NEW.message_id = '%s' BEGIN SELECT RAISE(ABORT, 'boom'); END",
	         b);
	exec_raw(f, sql);

	struct send_result r[3] = {
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.a"},
	    {.kind = SEND_FAILED, .attempt = 1, .error_code = "1", .error_text = "no"},
	    {.kind = SEND_RETRY, .attempt = 1, .due_at = now + 9 * SEC},
	};
	strcpy(r[0].message_id, a);
	strcpy(r[1].message_id, b);
	strcpy(r[2].message_id, c);
	assert_int_equal(st->ops->record_results(st, r, 3, NULL, NULL), 0);
	assert_int_equal(status_of(st, a), MSG_SENT);
	assert_int_equal(status_of(st, c), MSG_QUEUED);
	struct message g = msg_of(st, b);
	assert_int_equal(g.status, MSG_SENDING);
	assert_string_equal(g.error_code, "");
	message_clear(&g);
	assert_int_equal(q1(f, "SELECT count(*) FROM message_event WHERE type IN"
	                       " ('sent', 'retry', 'failed')"),
	                 2);
}

struct call {
	pthread_t th;
	struct store *st;
	int which, rc;
	size_t n;
	char id[27];
	int64_t inbox_id, now;
};

enum { CALL_CLAIM, CALL_REQUEUE, CALL_APPLY, CALL_TENANT, CALL__COUNT };

static void *call_thread(void *arg)
{
	struct call *c = arg;
	struct store *st = c->st;
	switch (c->which) {
	case CALL_CLAIM: {
		struct message m;
		c->rc = st->ops->claim(st, "qm", c->now, 30 * SEC, 1, &m, &c->n);
		if (c->rc == 0 && c->n == 1) {
			strcpy(c->id, m.id);
			message_clear(&m);
		}
		break;
	}
	case CALL_REQUEUE: {
		int k = 0;
		c->rc = st->ops->requeue_expired(st, c->now, &k);
		c->n = (size_t)k;
		break;
	}
	case CALL_APPLY: {
		struct wh_status ws = {.provider_id = "wamid.qm", .status = MSG_DELIVERED};
		struct inbox_parsed row = {
		    .inbox_id = c->inbox_id, .account_id = "qm", .statuses = &ws, .nstatuses = 1};
		struct apply_stats s;
		c->rc = st->ops->apply_inbox(st, &row, 1, c->now, &s);
		c->n = (size_t)s.applied;
		break;
	}
	default: {
		struct tenant_row t = {.id = "qm", .name = "Queue Max"};
		c->rc = st->ops->tenant_upsert(st, &t, NULL);
	}
	}
	return NULL;
}

/* Waits until the writer's queue holds exactly n jobs. */
static void wait_queued(struct store *st, int n)
{
	int64_t deadline = hr_mono_us() + WAIT_US;
	while (store_sqlite_queued(st) != n && hr_mono_us() < deadline)
		usleep(500);
	assert_int_equal(store_sqlite_queued(st), n);
}

/* Big jobs on the writer without temp_store=MEMORY (sqlite.c: its
 * sub-journal, what SAVEPOINT job and each statement's savepoint need,
 * spills to a temporary file past 64 KiB). A store
 * that already holds 20,000 messages with random recipients, so a job's
 * writes touch thousands of existing pages: a claim of 2,000 and their
 * 2,000 outcomes in one call each succeed, and one outcome that fails is
 * rolled back alone. */
static void test_big_jobs_spill_subjournal(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 20000, CHUNK = 5000, K = 2000 };
	int64_t now = hr_now_us();
	struct message *m = calloc(CHUNK, sizeof *m);
	assert_non_null(m);
	unsigned seed = 7;
	for (int c = 0; c < N / CHUNK; c++) {
		for (int i = 0; i < CHUNK; i++) {
			mk_msg(&m[i], "t1", "spill", 0, now - SEC);
			snprintf(m[i].recipient, sizeof m[i].recipient, "+4479%08d",
			         rand_r(&seed) % 100000000);
		}
		assert_int_equal(st->ops->message_insert(st, m, CHUNK, NULL, NULL, NULL), 0);
	}
	free(m);
	/* Provider ids already in both provider-id indexes, so the outcomes'
	 * new ones land on existing pages all over them. */
	exec_raw(f, "UPDATE message SET provider_id = 'old.' || abs(random())");
	struct message *c = calloc(K, sizeof *c);
	assert_non_null(c);
	size_t n = 0;
	assert_int_equal(st->ops->claim(st, "spill", now + SEC, 60 * SEC, K, c, &n), 0);
	assert_int_equal(n, K);
	char sql[256];
	snprintf(sql, sizeof sql,
	         "CREATE TRIGGER boom BEFORE INSERT ON message_event"
	         " WHEN NEW.message_id = '%s' BEGIN SELECT RAISE(ABORT, 'boom'); END",
	         c[K / 2].id);
	exec_raw(f, sql);
	struct send_result *r = calloc(K, sizeof *r);
	assert_non_null(r);
	for (int i = 0; i < K; i++) {
		r[i].kind = SEND_OK;
		r[i].attempt = 1;
		snprintf(r[i].provider_id, sizeof r[i].provider_id, "old.%u",
		         (unsigned)rand_r(&seed));
		strcpy(r[i].message_id, c[i].id);
	}
	assert_int_equal(st->ops->record_results(st, r, K, NULL, NULL), 0);
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE status = 2"), K - 1);
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE status = 1"), 1);
	assert_int_equal(status_of(st, c[K / 2].id), MSG_SENDING);
	assert_int_equal(status_of(st, c[K / 2 - 1].id), MSG_SENT);
	assert_int_equal(status_of(st, c[K / 2 + 1].id), MSG_SENT);
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE status = 0"), N - K);
	for (int i = 0; i < K; i++)
		message_clear(&c[i]);
	free(c);
	free(r);
}

/* With the queue full (queue_max 1, the writer held up by another
 * connection's write lock), client writes get HR_EBUSY but send outcomes,
 * claims, lease expiry, the applier and config writes are still queued. */
static void test_queue_max_spares_internal_writes(void **state)
{
	struct fx *f = *state;
	store_sqlite.close(f->st);
	struct store_opts o = {.queue_max = 1, .group_max = 4};
	struct hr_err err;
	assert_int_equal(store_sqlite.open(f->path, &o, &f->st, &err), 0);
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char sent[27], rec[27], exp[27];
	sent_msg(st, "qm", "wamid.qm", sent);
	claimed_msg(st, "qm", 5, now, 30 * SEC, rec);
	claimed_msg(st, "qm", 5, now, SEC, exp);
	struct message queued;
	mk_msg(&queued, "t1", "qm", 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, &queued, 1, NULL, NULL, NULL), 0);
	int64_t inbox_id = inbox_add(st, "qm");

	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct message x, y, z;
	mk_msg(&x, "t1", "other", 0, 0);
	mk_msg(&y, "t1", "other", 0, 0);
	mk_msg(&z, "t1", "other", 0, 0);
	struct outcome ox = {0}, oy = {0}, orec = {0};
	assert_int_equal(st->ops->message_insert(st, &x, 1, NULL, outcome_cb, &ox), 0);
	wait_queued(st, 0); /* the writer took x and waits for the lock */
	assert_int_equal(st->ops->message_insert(st, &y, 1, NULL, outcome_cb, &oy), 0);
	assert_int_equal(store_sqlite_queued(st), 1);
	assert_int_equal(st->ops->message_insert(st, &z, 1, NULL, NULL, NULL), HR_EBUSY);
	assert_int_equal(st->ops->inbox_append(st, "qm", "whatsapp", "", "{}", 2, NULL, NULL),
	                 HR_EBUSY);

	struct send_result r = {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.rec"};
	strcpy(r.message_id, rec);
	assert_int_equal(st->ops->record_results(st, &r, 1, outcome_cb, &orec), 0);
	struct call calls[CALL__COUNT];
	for (int i = 0; i < CALL__COUNT; i++) {
		calls[i] = (struct call){
		    .st = st, .which = i, .now = now + 2 * SEC, .inbox_id = inbox_id, .rc = 1};
		assert_int_equal(pthread_create(&calls[i].th, NULL, call_thread, &calls[i]), 0);
	}
	wait_queued(st, 2 + CALL__COUNT);
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	for (int i = 0; i < CALL__COUNT; i++) {
		pthread_join(calls[i].th, NULL);
		assert_int_equal(calls[i].rc, 0);
	}
	wait_outcome(&ox);
	wait_outcome(&oy);
	wait_outcome(&orec);
	assert_int_equal(ox.rc, 0);
	assert_int_equal(oy.rc, 0);
	assert_int_equal(orec.rc, 0);
	assert_int_equal(status_of(st, rec), MSG_SENT);
	assert_int_equal(calls[CALL_CLAIM].n, 1);
	assert_string_equal(calls[CALL_CLAIM].id, queued.id);
	assert_int_equal(calls[CALL_REQUEUE].n, 1);
	assert_int_equal(status_of(st, exp), MSG_QUEUED);
	assert_int_equal(calls[CALL_APPLY].n, 1);
	assert_int_equal(status_of(st, sent), MSG_DELIVERED);
	assert_int_equal(q1(f, "SELECT count(*) FROM tenant WHERE id = 'qm'"), 1);
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, z.id, &g), HR_ENOTFOUND);
}

/* ---------------------------------------------------------------------------
 * Columns no store_ops read returns yet: the tenant's name, the inbox rows'
 * states and errors, the stored inbound replies. The conformance suite
 * checks what of this the interface shows (pending counts, fetches, audit
 * events, apply_stats); these are the SQLite rows behind it.
 * ------------------------------------------------------------------------- */

/* The id of the inbox row appended with this dedupe key (pending or not). */
static int64_t inbox_id_of(struct fx *f, const char *key)
{
	char q[128];
	snprintf(q, sizeof q, "SELECT id FROM webhook_inbox WHERE dedupe_key = '%s'", key);
	int64_t id = q1(f, q);
	assert_true(id > 0);
	return id;
}

static void test_stored_columns(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct tenant_row t = {.id = "acme", .name = "Acme"};
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);
	strcpy(t.name, "Acme Ltd");
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);

	struct account_row acct = {.id = "acc", .tenant_id = "t9", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	char id[27];
	sent_msg(st, "acc", "wamid.orig", id); /* tenant t1 */
	static const char *const keys[] = {"done",    "retry",   "orphan", "failed",
	                                   "badbyte", "inbound", "replay"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		assert_int_equal(
		    st->ops->inbox_append(st, "acc", "whatsapp", keys[i], "{}", 2, NULL, NULL), 0);

	struct wh_status delivered = {.provider_id = "wamid.orig", .status = MSG_DELIVERED};
	struct wh_status unknown = {.provider_id = "wamid.late", .status = MSG_DELIVERED};
	struct wh_inbound in[3] = {
	    {.provider_msg_id = "wamid.IN1",
	     .context_id = "wamid.orig",
	     .from = "15550123456",
	     .kind = "button",
	     .text = (char *)"Pay now",
	     .payload = (char *)"PAY_NOW"},
	    {.provider_msg_id = "wamid.IN2",
	     .from = "15550123456",
	     .kind = "text",
	     .text = (char *)"STOP"},
	    {.provider_msg_id = "wamid.in\xff",
	     .from = "+1555\xc3",
	     .kind = "button",
	     .text = (char *)"pay \xe2\x82",
	     .payload = (char *)"\xfeX"},
	};
	struct inbox_parsed rows[] = {
	    {.inbox_id = inbox_id_of(f, "done"),
	     .account_id = "acc",
	     .statuses = &delivered,
	     .nstatuses = 1},
	    {.inbox_id = inbox_id_of(f, "retry"),
	     .account_id = "acc",
	     .statuses = &unknown,
	     .nstatuses = 1},
	    {.inbox_id = inbox_id_of(f, "failed"),
	     .account_id = "acc",
	     .malformed = true,
	     .error = "entry[0]: missing changes"},
	    {.inbox_id = inbox_id_of(f, "badbyte"),
	     .account_id = "acc",
	     .malformed = true,
	     .error = "bad byte \xff at 3"},
	    {.inbox_id = inbox_id_of(f, "inbound"),
	     .account_id = "acc",
	     .inbound = in,
	     .ninbound = 3},
	    /* The same replies again in a new row: stored once. */
	    {.inbox_id = inbox_id_of(f, "replay"),
	     .account_id = "acc",
	     .inbound = in,
	     .ninbound = 3},
	};
	struct apply_stats s;
	int64_t now = hr_now_us();
	assert_int_equal(st->ops->apply_inbox(st, rows, sizeof rows / sizeof rows[0], now, &s), 0);
	assert_int_equal(s.inbound, 3);
	struct inbox_parsed orphan = {.inbox_id = inbox_id_of(f, "orphan"),
	                              .account_id = "acc",
	                              .statuses = &unknown,
	                              .nstatuses = 1};
	assert_int_equal(st->ops->apply_inbox(st, &orphan, 1, now + 25LL * 3600 * SEC, &s), 0);
	assert_int_equal(s.unmatched, 1);

	char linked[200];
	snprintf(linked, sizeof linked,
	         "SELECT count(*) FROM inbound WHERE provider_msg_id = 'wamid.IN1'"
	         " AND message_id = '%s' AND tenant_id = 't1' AND payload = 'PAY_NOW'",
	         id);
	const struct {
		const char *sql;
		int64_t want;
	} checks[] = {
	    {"SELECT count(*) FROM tenant WHERE id = 'acme' AND name = 'Acme Ltd'", 1},
	    /* Inbox states: 1 done, 2 retry, 3 failed, 4 orphan; errors as UTF-8. */
	    {"SELECT state * 1000 + attempts FROM webhook_inbox WHERE dedupe_key = 'done'", 1001},
	    {"SELECT state * 1000 + attempts FROM webhook_inbox WHERE dedupe_key = 'retry'", 2001},
	    {"SELECT state FROM webhook_inbox WHERE dedupe_key = 'failed'"
	     " AND error = 'entry[0]: missing changes'",
	     3},
	    {"SELECT state FROM webhook_inbox WHERE dedupe_key = 'badbyte'"
	     " AND error = 'bad byte ? at 3'",
	     3},
	    {"SELECT state FROM webhook_inbox WHERE dedupe_key = 'orphan'"
	     " AND error = 'unknown provider id wamid.late after 24 h'",
	     4},
	    /* Replies: linked ones take the message's tenant, the others the
	     * account's; texts stored as UTF-8; each stored once. */
	    {linked, 1},
	    {"SELECT count(*) FROM inbound WHERE provider_msg_id = 'wamid.IN2'"
	     " AND message_id IS NULL AND tenant_id = 't9'",
	     1},
	    {"SELECT count(*) FROM inbound WHERE text = 'pay ?\?' AND payload = '?X'"
	     " AND sender = '+1555?' AND provider_msg_id = 'wamid.in?'",
	     1},
	    {"SELECT count(*) FROM inbound", 3},
	};
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		int64_t got = q1(f, checks[i].sql);
		if (got != checks[i].want)
			fprintf(stderr, "check %zu: got %lld want %lld: %s\n", i, (long long)got,
			        (long long)checks[i].want, checks[i].sql);
		assert_int_equal(got, checks[i].want);
	}
}

/* Inserts one message at a time until told to stop, timing each. */
struct timed_writer {
	pthread_t th;
	struct store *st;
	atomic_int stop;
	int n, failed;
	int64_t max_us;
};

static void *timed_writer_main(void *arg)
{
	struct timed_writer *w = arg;
	do {
		struct message m;
		mk_msg(&m, "t1", "live", 0, 0);
		int64_t t0 = hr_mono_us();
		if (w->st->ops->message_insert(w->st, &m, 1, NULL, NULL, NULL))
			w->failed++;
		int64_t dt = hr_mono_us() - t0;
		if (dt > w->max_us)
			w->max_us = dt;
		w->n++;
		usleep(1000);
	} while (!atomic_load(&w->stop));
	return NULL;
}

/*
 * Retention of a big backlog: one writer job (one short transaction, with
 * whatever the writer grouped with it) per batch of 1,000 messages, so
 * inserts made meanwhile wait for one batch at most, never for the pass.
 * Replies linked to removed messages stay.
 */
static void test_retention_batches(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 20000, CHUNK = 5000 };
	int64_t old = hr_now_us() - 400 * 86400 * SEC;
	struct message *m = calloc(CHUNK, sizeof *m);
	assert_non_null(m);
	for (int c = 0; c < N / CHUNK; c++) {
		for (int i = 0; i < CHUNK; i++) {
			int64_t at = old + (int64_t)(c * CHUNK + i) * 1000;
			mk_msg(&m[i], "t1", "bulk", 1, at);
			hr_id_at(at, m[i].id);
			m[i].created_at = at;
		}
		assert_int_equal(st->ops->message_insert(st, m, CHUNK, NULL, NULL, NULL), 0);
	}
	free(m);
	/* Settled, with two more events each, and a reply linked to one: set
	 * by hand (the conformance suite makes them the real way). */
	exec_raw(f, "UPDATE message SET status = 5;"
	            "INSERT INTO message_event(message_id, at, type, source, status)"
	            " SELECT id, 1, 'claimed', 'dispatcher', 1 FROM message;"
	            "INSERT INTO message_event(message_id, at, type, source, status)"
	            " SELECT id, 2, 'failed', 'dispatcher', 5 FROM message;"
	            "INSERT INTO inbound(tenant_id, account_id, message_id, sender, kind,"
	            " received_at) SELECT 't1', 'bulk', min(id), '+1555', 'text', 1 FROM message");
	assert_int_equal(q1(f, "SELECT count(*) FROM message_event"), 3 * N);

	struct timed_writer w = {.st = st};
	assert_int_equal(pthread_create(&w.th, NULL, timed_writer_main, &w), 0);
	uint64_t c0, j0, c1, j1;
	store_sqlite_stats(st, &c0, &j0);
	struct msg_retention r = {.before = hr_now_us() - 86400 * SEC};
	struct msg_retention_stats rs;
	struct hr_err err = {0};
	int64_t t0 = hr_mono_us();
	assert_int_equal(st->ops->message_prune(st, &r, &rs, &err), 0);
	int64_t took = hr_mono_us() - t0;
	store_sqlite_stats(st, &c1, &j1);
	atomic_store(&w.stop, 1);
	pthread_join(w.th, NULL);
	fprintf(stderr,
	        "    %d messages and %d events removed in %lld ms (%d batches);"
	        " %d inserts meanwhile, slowest %lld ms\n",
	        N, 3 * N, (long long)took / 1000, rs.batches, w.n, (long long)w.max_us / 1000);
	assert_int_equal(rs.messages, N);
	assert_int_equal(rs.events, 3 * N);
	assert_int_equal(rs.batches, N / 1000);
	assert_int_equal(rs.months, 0);
	assert_false(rs.more);
	assert_int_equal(w.failed, 0);
	/* One job per batch, plus the last that found nothing, plus the
	 * inserts; grouped into no more commits than jobs. */
	assert_true(j1 - j0 >= (uint64_t)N / 1000 + 1);
	assert_true(c1 - c0 <= j1 - j0);
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE account_id = 'bulk'"), 0);
	assert_int_equal(q1(f, "SELECT count(*) FROM message_event WHERE at <= 2"), 0);
	assert_int_equal(q1(f, "SELECT count(*) FROM inbound"), 1);
	assert_int_equal(q1(f, "SELECT count(*) FROM message WHERE account_id = 'live'"), w.n);
}

int main(void)
{
	hr_log_set_level(HR_LOG_WARN);
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	    T(test_schema_migrations),
	    T(test_wal_mode),
	    T(test_checkpoints_run),
	    T(test_query_plans),
	    T(test_migration_10_fills_keys),
	    T(test_group_commit),
	    T(test_failing_jobs_in_one_group),
	    T(test_record_outcome_rolled_back_alone),
	    T(test_big_jobs_spill_subjournal),
	    T(test_queue_max_spares_internal_writes),
	    T(test_stored_columns),
	    T(test_retention_batches),
#undef T
	};
	return cmocka_run_group_tests_name("sqlite backend", tests, NULL, NULL);
}
