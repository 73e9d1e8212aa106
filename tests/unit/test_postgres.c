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
#include "store/postgres_int.h"
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

/* After every test (months dropped whole, detaches finished later, row
 * deletes, outages): the status counts the store keeps for /metrics equal
 * a recount. */
static int fx_teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0;
	char why[160];
	if (f->st && !gauges_match(f->st, why, sizeof why)) {
		fprintf(stderr, "teardown: message_status_count disagrees with the messages: %s\n",
		        why);
		rc = -1;
	}
	store_postgres.close(f->st);
	free(f);
	return rc;
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

/* ---------------------------------------------------------------------------
 * Message retention: months dropped whole, row deletes for the rest.
 * ------------------------------------------------------------------------- */

#define DAY (86400 * SEC)

/* A side connection for commands (an operator's psql). */
static PGconn *side(struct fx *f)
{
	PGconn *c = pgtest_connect(&pg, f->name);
	assert_non_null(c);
	return c;
}

static void side_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

static void exec1(struct fx *f, const char *sql)
{
	PGconn *c = side(f);
	side_exec(c, sql);
	PQfinish(c);
}

static int64_t query_int(struct fx *f, const char *sql)
{
	char *v = query1(f, sql);
	int64_t n = strtoll(v, NULL, 10);
	free(v);
	return n;
}

/* The first instant of the UTC month `back` months before the current one. */
static int64_t month_start(int back)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_mon -= back;
	return (int64_t)timegm(&tm) * SEC;
}

/* "message_YYYYMM" (or another table's) of the month `back` months ago. */
static void month_table(const char *table, int back, char *out, size_t size)
{
	time_t t = (time_t)(month_start(back) / SEC);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, size, "%s_%04d%02d", table, tm.tm_year + 1900, tm.tm_mon + 1);
}

/* 1 if the table exists, 0 if not. */
static int64_t table_exists(struct fx *f, const char *table)
{
	char sql[160];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_class WHERE relname = '%s'", table);
	return query_int(f, sql);
}

/* 1 if the table is a partition (attached, or still being detached). */
static int64_t is_partition(struct fx *f, const char *table)
{
	char sql[200];
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
	         " WHERE c.relname = '%s'",
	         table);
	return query_int(f, sql);
}

static const char *const no_receipts[] = {"telegram"};

static int retain(struct store *st, int64_t before, struct msg_retention_stats *rs)
{
	struct msg_retention r = {
	    .before = before, .final_at_sent = no_receipts, .nfinal_at_sent = 1, .batch = 2};
	struct hr_err err = {0};
	int rc = st->ops->message_prune(st, &r, rs, &err);
	if (rc)
		fprintf(stderr, "message_prune: %d %s: %s\n", rc, err.field, err.msg);
	return rc;
}

/* One message per case, made in a month `back` months ago (day `day`), on
 * its own account. *events gets the sum of their audit events. */
struct old_case {
	const char *account, *channel;
	enum msg_status status;
	int back; /* months; -1: two years ago (no partition: DEFAULT) */
	int day;  /* day of that month */
	bool goes;
	char id[HR_ID_LEN + 1];
	size_t events;
};

#define OC(account, channel, status, back, day, goes)                                              \
	{                                                                                          \
		account, channel, status, back, day, goes, "", 0                                   \
	}

static void make_cases(struct store *st, struct old_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t at = c[i].back < 0 ? hr_now_us() - 730 * DAY
		                           : month_start(c[i].back) + (c[i].day - 1) * DAY;
		msg_at_status(st, c[i].account, c[i].channel, at + (int64_t)i * SEC, c[i].status,
		              c[i].id);
		c[i].events = count_events(st, c[i].id, NULL);
	}
}

/*
 * A month whose messages are all settled loses its two partitions (gone
 * from pg_inherits and from the catalog), empty months too; a month with
 * one open message keeps its partitions and loses its settled rows; old
 * rows in the DEFAULT partition are deleted row by row, open ones kept.
 * Replies linked to a dropped message stay. Counts are exact; a second run
 * finds nothing.
 */
static void test_retention_months(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	/* The SQL and C time prefixes agree (core's test pins the C one). */
	char *pfx = query1(f, "SELECT herald_ulid_prefix('2024-01-01 00:00:00+00')");
	assert_string_equal(pfx, "01HK153X00");
	free(pfx);
	int64_t made = query_int(f, "SELECT herald_ensure_partitions(6, 3)");
	assert_int_equal(made, 10); /* months -6..-2, two tables each */

	struct old_case c[] = {
	    OC("m4-failed", "whatsapp", MSG_FAILED, 4, 3, true),
	    OC("m4-read", "whatsapp", MSG_READ, 4, 10, true),
	    OC("m4-tg", "telegram", MSG_SENT, 4, 27, true),
	    OC("m3-failed", "whatsapp", MSG_FAILED, 3, 2, true),
	    OC("m3-deliv", "sms", MSG_DELIVERED, 3, 5, true),
	    OC("m3-sending", "whatsapp", MSG_SENDING, 3, 20, false),
	    OC("d-failed", "whatsapp", MSG_FAILED, -1, 0, true),
	    OC("d-sched", "whatsapp", MSG_QUEUED, -1, 0, false),
	    OC("m1-failed", "whatsapp", MSG_FAILED, 1, 1, false), /* after the cutoff */
	};
	enum { N = sizeof c / sizeof c[0] };
	make_cases(st, c, N);
	/* A reply quoting the read message of month -4. */
	struct hr_err err = {0};
	struct account_row acct = {.id = "m4-read", .tenant_id = "t1", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	struct wh_inbound in = {.from = "+15550777", .kind = "text", .text = "thanks"};
	strcpy(in.provider_msg_id, "in-1");
	strcpy(in.context_id, "p-m4-read");
	struct inbox_parsed row = {.inbox_id = inbox_add(st, "m4-read"),
	                           .account_id = "m4-read",
	                           .inbound = &in,
	                           .ninbound = 1};
	struct apply_stats as;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &as), 0);
	assert_int_equal(as.inbound, 1);
	c[1].events = count_events(st, c[1].id, NULL);

	char sql[300], m4[32], e4[32], m3[32], e3[32], m5[32], m6[32], e6[32];
	month_table("message", 4, m4, sizeof m4);
	month_table("message_event", 4, e4, sizeof e4);
	month_table("message", 3, m3, sizeof m3);
	month_table("message_event", 3, e3, sizeof e3);
	month_table("message", 5, m5, sizeof m5);
	month_table("message", 6, m6, sizeof m6);
	month_table("message_event", 6, e6, sizeof e6);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", m4);
	assert_int_equal(query_int(f, sql), 3);
	assert_int_equal(query_int(f, "SELECT count(*) FROM message_default"), 2);

	int64_t want_msgs = 0, want_events = 0, total = count_msgs(st, NULL);
	for (int i = 0; i < N; i++)
		if (c[i].goes) {
			want_msgs++;
			want_events += (int64_t)c[i].events;
		}
	/* The cutoff: the first of the month two months ago, so months -6 to -3
	 * are wholly older; -6 and -5 are empty. */
	struct msg_retention_stats rs;
	assert_int_equal(retain(st, month_start(2), &rs), 0);
	assert_int_equal(rs.months, 3); /* -6, -5, -4 */
	assert_int_equal(rs.messages, want_msgs);
	assert_int_equal(rs.events, want_events);
	assert_int_equal(rs.batches, 2); /* three rows (DEFAULT's, month -3's), two a batch */
	assert_false(rs.more);
	assert_false(rs.skipped);

	assert_int_equal(is_partition(f, m4), 0);
	assert_int_equal(is_partition(f, e4), 0);
	assert_int_equal(table_exists(f, m4), 0);
	assert_int_equal(table_exists(f, e4), 0);
	assert_int_equal(table_exists(f, m5), 0);
	assert_int_equal(table_exists(f, m6), 0);
	assert_int_equal(table_exists(f, e6), 0);
	assert_int_equal(is_partition(f, m3), 1); /* its sending message holds it */
	assert_int_equal(is_partition(f, e3), 1);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", m3);
	assert_int_equal(query_int(f, sql), 1);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", e3);
	assert_int_equal(query_int(f, sql), (int64_t)c[5].events);
	assert_int_equal(query_int(f, "SELECT count(*) FROM message_default"), 1);
	for (int i = 0; i < N; i++) {
		struct message m;
		if (c[i].goes) {
			assert_int_equal(st->ops->message_get(st, NULL, c[i].id, &m), HR_ENOTFOUND);
			assert_int_equal(count_events(st, c[i].id, NULL), 0);
		} else {
			assert_int_equal(status_of(st, c[i].id), c[i].status);
			assert_int_equal(count_events(st, c[i].id, NULL), c[i].events);
		}
	}
	assert_int_equal(count_msgs(st, NULL), total - want_msgs);
	/* The reply stays, still naming the message it answered. */
	snprintf(sql, sizeof sql, "SELECT count(*) FROM inbound WHERE message_id = '%s'", c[1].id);
	assert_int_equal(query_int(f, sql), 1);
	/* The months still there: -3 to +3 (ensure_partitions keeps -1..+3). */
	assert_int_equal(query_int(f, "SELECT count(*) FROM pg_inherits i JOIN pg_class c"
	                              " ON c.oid = i.inhrelid"
	                              " WHERE c.relname ~ '^message(_event)?_[0-9]{6}$'"),
	                 14);

	assert_int_equal(retain(st, month_start(2), &rs), 0);
	assert_int_equal(rs.months, 0);
	assert_int_equal(rs.messages, 0);
	assert_int_equal(rs.events, 0);
	assert_int_equal(rs.batches, 0);

	/* The sending message settles: now its month goes whole. */
	struct send_result fr = {.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
	strcpy(fr.message_id, c[5].id);
	assert_int_equal(st->ops->record_results(st, &fr, 1, NULL, NULL), 0);
	size_t ev5 = count_events(st, c[5].id, NULL);
	assert_int_equal(retain(st, month_start(2), &rs), 0);
	assert_int_equal(rs.months, 1);
	assert_int_equal(rs.messages, 1);
	assert_int_equal(rs.events, (int64_t)ev5);
	assert_int_equal(rs.batches, 0);
	assert_int_equal(table_exists(f, m3), 0);
	assert_int_equal(table_exists(f, e3), 0);
}

/*
 * Without a DEFAULT partition retention detaches CONCURRENTLY: a detach
 * left half-done (here: cut off by a statement timeout while an old
 * transaction still saw the partition; in life, a crash) is finalised and
 * dropped; a table detached by retention but not dropped is dropped; a
 * table an operator detached (to archive it) is left alone.
 */
static void test_retention_detach_concurrently(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	exec1(f, "ALTER TABLE message DETACH PARTITION message_default;"
	         " DROP TABLE message_default;"
	         " ALTER TABLE message_event DETACH PARTITION message_event_default;"
	         " DROP TABLE message_event_default");
	assert_int_equal(query_int(f, "SELECT herald_ensure_partitions(6, 3)"), 10);
	struct old_case c[] = {
	    OC("c6", "whatsapp", MSG_FAILED, 6, 2, true), /* its month: archived by hand */
	    OC("c5", "whatsapp", MSG_FAILED, 5, 2, true), /* half-done detach */
	    OC("c4a", "whatsapp", MSG_READ, 4, 2, true),  /* detached, not dropped */
	    OC("c3", "telegram", MSG_SENT, 3, 2, true),   /* detached concurrently now */
	};
	enum { N = sizeof c / sizeof c[0] };
	make_cases(st, c, N);
	char m6[32], m5[32], e5[32], m4[32], m3[32], e3[32], sql[300];
	month_table("message", 6, m6, sizeof m6);
	month_table("message", 5, m5, sizeof m5);
	month_table("message_event", 5, e5, sizeof e5);
	month_table("message", 4, m4, sizeof m4);
	month_table("message", 3, m3, sizeof m3);
	month_table("message_event", 3, e3, sizeof e3);

	/* An operator archived month -6's messages: not retention's to drop. */
	snprintf(sql, sizeof sql, "ALTER TABLE message DETACH PARTITION %s", m6);
	exec1(f, sql);
	/* Month -4: detached by retention (marked), then the process died. */
	snprintf(sql, sizeof sql,
	         "COMMENT ON TABLE %s IS 'herald retention: dropping';"
	         " ALTER TABLE message DETACH PARTITION %s",
	         m4, m4);
	exec1(f, sql);
	/* Month -5: DETACH CONCURRENTLY cut off in its second transaction,
	 * which waits for an old transaction that still uses the table. */
	PGconn *old = side(f);
	side_exec(old, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	side_exec(old, "SELECT count(*) FROM message");
	PGconn *d = side(f);
	snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS 'herald retention: dropping'", m5);
	side_exec(d, sql);
	side_exec(d, "SET statement_timeout = '500ms'");
	snprintf(sql, sizeof sql, "ALTER TABLE message DETACH PARTITION %s CONCURRENTLY", m5);
	PGresult *r = PQexec(d, sql);
	assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
	PQclear(r);
	PQfinish(d);
	side_exec(old, "COMMIT");
	PQfinish(old);
	snprintf(sql, sizeof sql,
	         "SELECT inhdetachpending::text FROM pg_inherits WHERE inhrelid = '%s'::regclass",
	         m5);
	char *pending = query1(f, sql);
	assert_string_equal(pending, "true");
	free(pending);

	int64_t want_events = (int64_t)(c[1].events + c[2].events + c[3].events);
	struct msg_retention_stats rs;
	assert_int_equal(retain(st, month_start(2), &rs), 0);
	assert_int_equal(rs.months, 3);   /* -5 (finalised), -4 (leftover), -3 */
	assert_int_equal(rs.messages, 3); /* not the archived one */
	assert_int_equal(rs.events, want_events);
	assert_false(rs.more);
	/* The operator's archive, and the events of its month, untouched. */
	char e6[32];
	month_table("message_event", 6, e6, sizeof e6);
	assert_int_equal(table_exists(f, m6), 1);
	assert_int_equal(is_partition(f, e6), 1);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", m6);
	assert_int_equal(query_int(f, sql), 1);
	assert_int_equal(table_exists(f, m5), 0);
	assert_int_equal(table_exists(f, e5), 0);
	assert_int_equal(table_exists(f, m4), 0);
	assert_int_equal(table_exists(f, m3), 0);
	assert_int_equal(table_exists(f, e3), 0);
	assert_int_equal(query_int(f, "SELECT count(*) FROM pg_inherits WHERE inhdetachpending"),
	                 0);
	assert_int_equal(retain(st, month_start(2), &rs), 0);
	assert_int_equal(rs.months, 0);
	assert_int_equal(rs.messages, 0);

	/* The status counts: the months retention dropped left them with
	 * their messages (-5 finalised, -4 left over, -3 concurrently); the
	 * month the operator archived by hand is still counted (README,
	 * "Status counts"), exactly its one message, until a recount. */
	int64_t g[MSG__COUNT], n[MSG__COUNT];
	assert_int_equal(st->ops->message_gauges(st, g), 0);
	assert_int_equal(st->ops->message_counts(st, NULL, n), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		assert_int_equal(g[i] - n[i], i == MSG_FAILED ? 1 : 0);
	exec1(f, "BEGIN; DELETE FROM message_status_count;"
	         " INSERT INTO message_status_count SELECT 0, status, count(*) FROM message"
	         " GROUP BY status; COMMIT");
	assert_gauges_match(st);
}

/* Inserts one message at a time until told to stop, timing each. */
struct writer {
	pthread_t th;
	struct store *st;
	atomic_int stop;
	int n, failed;
	int64_t max_us;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	do {
		struct message m;
		mk_msg(&m, "t1", "lw", 0, 0);
		int64_t t0 = hr_mono_us();
		if (w->st->ops->message_insert(w->st, &m, 1, NULL, NULL, NULL))
			w->failed++;
		int64_t dt = hr_mono_us() - t0;
		if (dt > w->max_us)
			w->max_us = dt;
		w->n++;
		usleep(5000);
	} while (!atomic_load(&w->stop));
	return NULL;
}

/*
 * A plain DETACH that cannot have its lock within lock_timeout (a long
 * transaction reads the table) gives up at once: the month waits for the
 * next run (stats.more) and is not emptied row by row meanwhile, while
 * rows below it and in the cutoff's month are still deleted. Another
 * runner holding the retention lock makes a run skip.
 */
static void test_retention_lock_timeout_and_runners(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	assert_int_equal(query_int(f, "SELECT herald_ensure_partitions(4, 3)"), 6);
	int64_t cutoff = month_start(2) + 5 * DAY;
	struct old_case c[] = {
	    OC("l4", "whatsapp", MSG_FAILED, 4, 2, true),
	    OC("l3", "whatsapp", MSG_FAILED, 3, 2, true),
	    OC("ld", "whatsapp", MSG_FAILED, -1, 0, true), /* DEFAULT, below month -4 */
	    OC("l2", "whatsapp", MSG_FAILED, 2, 2, true),  /* the cutoff's month */
	};
	enum { N = sizeof c / sizeof c[0] };
	make_cases(st, c, N);

	PGconn *reader = side(f);
	side_exec(reader, "BEGIN");
	side_exec(reader, "SELECT count(*) FROM message");
	/* Inserts go on meanwhile; the slowest shows how long the DETACH's
	 * queued lock held writers up. */
	struct writer w = {.st = st};
	assert_int_equal(pthread_create(&w.th, NULL, writer_main, &w), 0);
	struct msg_retention_stats rs;
	int64_t t0 = hr_mono_us();
	assert_int_equal(retain(st, cutoff, &rs), 0);
	int64_t took = hr_mono_us() - t0;
	atomic_store(&w.stop, 1);
	pthread_join(w.th, NULL);
	fprintf(stderr,
	        "    retention deferred by a held lock after %lld ms; %d inserts meanwhile,"
	        " slowest %lld ms\n",
	        (long long)took / 1000, w.n, (long long)w.max_us / 1000);
	assert_int_equal(w.failed, 0);
	assert_true(w.n > 0);
	assert_true(w.max_us < 2 * SEC); /* the lock_timeout is 200 ms */
	assert_int_equal(rs.months, 0);
	assert_true(rs.more);
	assert_int_equal(rs.messages, 2); /* the DEFAULT's and month -2's */
	assert_int_equal(status_of(st, c[0].id), MSG_FAILED);
	assert_int_equal(status_of(st, c[1].id), MSG_FAILED);
	side_exec(reader, "COMMIT");

	/* Another node's pass holds the lock: this one does nothing. */
	side_exec(reader, "SELECT pg_advisory_lock(7226402)");
	assert_int_equal(retain(st, cutoff, &rs), 0);
	assert_true(rs.skipped);
	assert_int_equal(rs.messages, 0);
	assert_int_equal(rs.months, 0);
	side_exec(reader, "SELECT pg_advisory_unlock(7226402)");

	assert_int_equal(retain(st, cutoff, &rs), 0);
	assert_false(rs.skipped);
	assert_int_equal(rs.months, 2);
	assert_int_equal(rs.messages, 2);
	assert_false(rs.more);
	PQfinish(reader);
}

struct runner {
	pthread_t th;
	struct store *st;
	int64_t before;
	int rc;
	struct msg_retention_stats rs;
};

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	r->rc = retain(r->st, r->before, &r->rs);
	return NULL;
}

/* Two nodes run retention at once on the same database: no error, and
 * between them every old settled message goes exactly once. */
static void test_retention_two_nodes(void **state)
{
	struct fx *f = *state;
	assert_int_equal(query_int(f, "SELECT herald_ensure_partitions(4, 3)"), 6);
	enum { N = 40 };
	struct message m[N];
	for (int i = 0; i < N; i++) {
		/* Half in month -4 (dropped whole), half in DEFAULT (row deletes). */
		int64_t at =
		    i % 2 ? month_start(4) + DAY + i * SEC : hr_now_us() - 800 * DAY + i * SEC;
		mk_msg(&m[i], "t1", "n2", 0, at);
		hr_id_at(at, m[i].id);
		m[i].created_at = at;
	}
	assert_int_equal(f->st->ops->message_insert(f->st, m, N, NULL, NULL, NULL), 0);
	struct message cl[N];
	size_t n;
	assert_int_equal(f->st->ops->claim(f->st, "n2", hr_now_us(), 30 * SEC, N, cl, &n), 0);
	assert_int_equal(n, N);
	struct send_result r[N];
	for (int i = 0; i < N; i++) {
		r[i] = (struct send_result){.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
		strcpy(r[i].message_id, cl[i].id);
		message_clear(&cl[i]);
	}
	assert_int_equal(f->st->ops->record_results(f->st, r, N, NULL, NULL), 0);
	struct store *other;
	struct hr_err err = {0};
	assert_int_equal(store_postgres.open(f->dsn, NULL, &other, &err), 0);
	struct runner a = {.st = f->st, .before = month_start(2)},
	              b = {.st = other, .before = month_start(2)};
	assert_int_equal(pthread_create(&a.th, NULL, runner_main, &a), 0);
	assert_int_equal(pthread_create(&b.th, NULL, runner_main, &b), 0);
	pthread_join(a.th, NULL);
	pthread_join(b.th, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	fprintf(stderr, "    two runners: %lld + %lld messages, skipped %d/%d\n",
	        (long long)a.rs.messages, (long long)b.rs.messages, a.rs.skipped, b.rs.skipped);
	/* One ran while the other skipped, or they ran one after the other. */
	assert_false(a.rs.skipped && b.rs.skipped);
	assert_int_equal(a.rs.messages + b.rs.messages, N);
	assert_int_equal(a.rs.months + b.rs.months, 2); /* -4, and -3 (empty) */
	assert_int_equal(count_msgs(f->st, NULL), 0);
	store_postgres.close(other);
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
	char want[16];
	snprintf(want, sizeof want, "%zu", pg_migration_count); /* every one, applied */
	assert_string_equal(v, want);
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

/* A trigger that makes every audit event whose detail matches `like` fail
 * on the server: the failure of a write sent ahead of its result. */
static void fail_events_like(struct fx *f, const char *like)
{
	char sql[600];
	snprintf(sql, sizeof sql,
	         "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
	         " IF NEW.detail LIKE '%s' THEN RAISE EXCEPTION 'boom on %%', NEW.message_id;"
	         " END IF; RETURN NEW; END $f$;"
	         "CREATE TRIGGER boom BEFORE INSERT ON message_event"
	         " FOR EACH ROW EXECUTE FUNCTION boom()",
	         like);
	exec1(f, sql);
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

/*
 * Campaign counters through a rerun: a batch's outcomes, one refused on the
 * server after its item ended. The run is undone and run again; the
 * refused outcome's counter moves are forgotten with it, the others' are
 * counted once: the kept counters equal a recount of the messages.
 */
static void test_counters_through_rerun(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	memset(&b, 0, sizeof b);
	hr_id_new(b.id);
	strcpy(b.tenant_id, "t1");
	strcpy(b.name, "rerun");
	strcpy(b.channel, "whatsapp");
	strcpy(b.account_id, "camp");
	b.receipts = true;
	assert_int_equal(st->ops->batch_create(st, &b, &err), 0);
	enum { N = 4 };
	struct batch_item it[N];
	struct message m[N], out[N];
	int64_t rows[N];
	for (int i = 0; i < N; i++) {
		memset(&it[i], 0, sizeof it[i]);
		it[i].row = rows[i] = i + 1;
		it[i].valid = true;
		snprintf(it[i].recipient, sizeof it[i].recipient, "+44790000001%d", i);
		mk_msg(&m[i], "t1", "camp", PRIO_BULK, hr_now_us() - SEC);
		strcpy(m[i].recipient, it[i].recipient);
		strcpy(m[i].batch_id, b.id);
	}
	assert_int_equal(st->ops->batch_items_put(st, b.id, it, N, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	size_t made = 0, n = 0;
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows, m, N, true, &made, &err), 0);
	assert_int_equal(made, N);
	assert_int_equal(st->ops->claim(st, "camp", 0, 30 * SEC, N, out, &n), 0);
	assert_int_equal(n, N);
	fail_events_like(f, "%boom%");
	struct send_result r[N];
	for (int i = 0; i < N; i++) {
		char pid[16];
		snprintf(pid, sizeof pid, "wamid.c%d", i);
		r[i] =
		    outcome(out[i].id, i == 1 ? SEND_FAILED : SEND_OK, pid, i == 1 ? "boom" : "");
		message_clear(&out[i]);
	}
	uint64_t replays = replays_of(st);
	assert_int_equal(st->ops->record_results(st, r, N, NULL, NULL), 0);
	assert_int_equal(replays_of(st) - replays, 1);

	struct batch g;
	assert_int_equal(st->ops->batch_get(st, NULL, b.id, &g), 0);
	int64_t rc[MSG__COUNT], replied;
	assert_int_equal(st->ops->batch_recount(st, b.id, rc, &replied), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		assert_int_equal(g.by_status[i], rc[i]);
	assert_int_equal(g.by_status[MSG_SENT], N - 1);
	assert_int_equal(g.by_status[MSG_SENDING], 1);
	assert_int_equal(g.by_status[MSG_FAILED], 0);
	batch_clear(&g);
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
	char x[27], y[27], sql[400];
	claimed_msg(st, "lk", 5, now, 30 * SEC, x);
	claimed_msg(st, "lk", 5, now, 30 * SEC, y);
	PGconn *holder = side(f);
	/* The row (and, as the store would, the status counts) changed by
	 * another transaction that holds it. */
	snprintf(sql, sizeof sql,
	         "BEGIN; UPDATE message SET status = 0 WHERE id = '%s';"
	         " INSERT INTO message_status_count VALUES(0, 0, 1), (0, 1, -1)"
	         " ON CONFLICT (stripe, status) DO UPDATE SET n = message_status_count.n + excluded.n",
	         x);
	side_exec(holder, sql);

	struct send_result r[2] = {outcome(x, SEND_OK, "wamid.x", ""),
	                           outcome(y, SEND_OK, "wamid.y", "")};
	struct outcome o = {0};
	assert_int_equal(st->ops->record_results(st, r, 2, outcome_cb, &o), 0);
	assert_true(
	    herald_waits_in(f, "SELECT id, tenant_id, %FROM message WHERE id = $1 FOR UPDATE"));
	assert_int_equal(atomic_load(&o.done), 0);
	side_exec(holder, "COMMIT");
	PQfinish(holder);
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
/*
 * Migration 9 on a database that had messages and idempotency records
 * before it (as SQLite's 10, test_sqlite): the key as the client sent it on
 * each message its record's answer names, a unit's prefix dropped, never
 * another tenant's message, and the search finds them by it.
 */
static void test_migration_9_fills_keys(void **state)
{
	struct fx *f = *state;
	struct message m[4];
	for (int i = 0; i < 4; i++)
		mk_msg(&m[i], i == 3 ? "t2" : "t1", "acc", 0, 0);
	assert_int_equal(f->st->ops->message_insert(f->st, m, 3, NULL, NULL, NULL), 0);
	assert_int_equal(f->st->ops->message_insert(f->st, &m[3], 1, NULL, NULL, NULL), 0);
	store_postgres.close(f->st);
	f->st = NULL;
	char sql[1024];
	snprintf(sql, sizeof sql,
	         "DROP INDEX IF EXISTS message_recipient, message_provider_tenant, message_error;"
	         " ALTER TABLE message DROP COLUMN idem_key;"
	         " DELETE FROM schema_migrations WHERE version = 9;"
	         "INSERT INTO idempotency_key(tenant_id, key, request_hash, http_status, response,"
	         " created_at) VALUES"
	         " ('t1', 'single', 'h', 202, '{\"id\":\"%s\"}', 1),"
	         " ('t1', 'cards' || chr(31) || 'bk', 'h', 202,"
	         "  '{\"count\":2,\"messages\":[{\"id\":\"%s\"},{\"id\":\"%s\"}]}', 1),"
	         " ('t1', 'theirs', 'h', 202, '{\"id\":\"%s\"}', 1),"
	         " ('t1', 'none', 'h', 202, NULL, 1)",
	         m[0].id, m[1].id, m[2].id, m[3].id);
	exec1(f, sql);
	struct hr_err err = {0};
	if (store_postgres.open(f->dsn, NULL, &f->st, &err) != 0)
		fail_msg("reopen: %s: %s", err.field, err.msg);
	const char *want[4] = {"single", "bk", "bk", ""};
	for (int i = 0; i < 4; i++) {
		snprintf(sql, sizeof sql,
		         "SELECT coalesce(idem_key, '') FROM message WHERE id = '%s'", m[i].id);
		char *v = query1(f, sql);
		assert_string_equal(v, want[i]);
		free(v);
	}
	struct msg_filter mf = {.status = -1, .limit = 10, .idem_key = "bk"};
	struct message *v;
	size_t n;
	bool more;
	assert_int_equal(f->st->ops->message_list(f->st, "t1", &mf, &v, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, m[2].id);
	for (size_t i = 0; i < n; i++)
		message_clear(&v[i]);
	free(v);
	mf.idem_key = "theirs";
	assert_int_equal(f->st->ops->message_list(f->st, "t2", &mf, &v, &n, &more), 0);
	assert_int_equal(n, 0);
}

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
	char want[16];
	snprintf(want, sizeof want, "%zu", pg_migration_count); /* every one, applied */
	assert_string_equal(v, want);
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
	hr_log_set_level(getenv("TEST_LOG_INFO") ? HR_LOG_INFO : HR_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_partitions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_server_restart, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_pipeline_failures_isolated, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_outcome_fails_after_item_ended, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_outcomes_all_fail, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_counters_through_rerun, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_webhook_write_fails_whole_batch, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_prefetch_leaves_locked_row, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_lifecycle_round_trips, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_migration_9_fills_keys, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retention_months, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retention_detach_concurrently, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retention_lock_timeout_and_runners, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retention_two_nodes, fx_setup, fx_teardown),
	    cmocka_unit_test(test_concurrent_open_migrates_once),
	    cmocka_unit_test(test_herald_migrate),
	};
	return cmocka_run_group_tests_name("postgres backend", tests, group_setup, group_teardown);
}
