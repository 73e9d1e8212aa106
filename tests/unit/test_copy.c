/*
 * test_copy.c - store/copy.h below the command line: the checksum's
 * canonical form (table-driven: what must and must not change it), and the
 * copier against a real PostgreSQL (tests/pgtest.h) on sources made with
 * the SQLite backend: messages months old get their month's partition, a
 * source row the target refuses fails the copy naming its table and leaves
 * the target empty, and sources that are not (or not yet) the schema the
 * copier knows are refused naming --from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "pgtest.h"
#include "store/copy.h"
#include "store/postgres_int.h"
#include "store/sqlite_int.h"
#include "store/store.h"

static struct pgtest pg;
static char tmpdir[64];
static int dbseq;

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/herald-copy-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	if (pgtest_start(&pg) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	int rc = system(cmd);
	return pgtest_stop(&pg) == 0 && rc == 0 ? 0 : -1;
}

/* ---- the checksum ---- */

static void sum_of(const struct store_copy_val *rows, size_t nrows, size_t ncols, char hex[65])
{
	struct store_copy_sum s = {0};
	for (size_t i = 0; i < nrows; i++)
		store_copy_sum_row(&s, rows + i * ncols, ncols);
	store_copy_sum_final(&s, hex);
}

#define V(s)                                                                                       \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
#define NUL                                                                                        \
	{                                                                                          \
		NULL, 0                                                                            \
	}

static void test_sum_canonical(void **state)
{
	(void)state;
	char a[65], b[65];
	/* An empty table: SHA-256 of nothing. */
	sum_of(NULL, 0, 0, a);
	assert_string_equal(a, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	/* The documented form: one row ("ab", NULL) is sha256(sha256("2:ab;N;")). */
	struct store_copy_val one[] = {V("ab"), NUL};
	sum_of(one, 1, 2, a);
	unsigned char d[32], d2[32];
	SHA256((const unsigned char *)"2:ab;N;", 7, d);
	SHA256(d, 32, d2);
	for (int i = 0; i < 32; i++)
		snprintf(b + 2 * i, 3, "%02x", d2[i]);
	assert_string_equal(a, b);

	static const struct {
		const char *what;
		struct store_copy_val x[4], y[4]; /* two rows of two columns each */
		bool same;
	} cases[] = {
	    {"row order", {V("1"), V("a"), V("2"), V("b")}, {V("2"), V("b"), V("1"), V("a")}, true},
	    {"NULL is not empty",
	     {V("1"), NUL, V("2"), V("b")},
	     {V("1"), V(""), V("2"), V("b")},
	     false},
	    {"column boundary",
	     {V("ab"), V("c"), V("2"), V("b")},
	     {V("a"), V("bc"), V("2"), V("b")},
	     false},
	    {"values swap rows",
	     {V("1"), V("a"), V("2"), V("b")},
	     {V("1"), V("b"), V("2"), V("a")},
	     false},
	    {"a separator in a value",
	     {V("1;"), V("a"), V("2"), V("b")},
	     {V("1"), V(";a"), V("2"), V("b")},
	     false},
	    {"one byte",
	     {V("1"), V("caf\xc3\xa9"), V("2"), V("b")},
	     {V("1"), V("caf\xc3\xa8"), V("2"), V("b")},
	     false},
	    {"a duplicate row counts",
	     {V("1"), V("a"), V("1"), V("a")},
	     {V("1"), V("a"), V("2"), V("b")},
	     false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sum_of(cases[i].x, 2, 2, a);
		sum_of(cases[i].y, 2, 2, b);
		if ((strcmp(a, b) == 0) != cases[i].same)
			fail_msg("%s: %s vs %s", cases[i].what, a, b);
	}
}

/* The copier knows the newest schema of both backends: a migration added
 * to either fails here until copy.c learns it. */
static void test_knows_both_schemas(void **state)
{
	(void)state;
	assert_int_equal(sq_migrations[sq_migration_count - 1].version, STORE_COPY_SQLITE_VERSION);
	assert_int_equal(pg_migrations[pg_migration_count - 1].version, STORE_COPY_PG_VERSION);
}

/* ---- the copier ---- */

/* A fresh SQLite store at path, with a tenant, an account and n messages
 * whose ids are from days_ago days back. */
static void make_source(const char *path, int n, int days_ago)
{
	struct store *st = NULL;
	struct hr_err err = {0};
	struct store_opts so = {0};
	if (store_sqlite.open(path, &so, &st, &err) != 0)
		fail_msg("open %s: %s", path, err.msg);
	struct tenant_row t = {.id = "acme", .name = "Acme"};
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);
	struct account_row a = {.id = "acme-wa",
	                        .tenant_id = "acme",
	                        .channel = "whatsapp",
	                        .config = (char *)"{\"id\":\"acme-wa\"}"};
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
	static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	int64_t ms = (int64_t)time(NULL) * 1000 - (int64_t)days_ago * 86400000;
	for (int i = 0; i < n; i++) {
		struct message m = {0};
		int64_t v = ms + i;
		for (int k = 9; k >= 0; k--, v /= 32)
			m.id[k] = digits[v % 32];
		snprintf(m.id + 10, sizeof m.id - 10, "%016d", i);
		strcpy(m.tenant_id, "acme");
		strcpy(m.account_id, "acme-wa");
		strcpy(m.channel, "whatsapp");
		snprintf(m.recipient, sizeof m.recipient, "4479110%05d", i);
		m.content = (char *)"{\"type\":\"text\",\"text\":{\"body\":\"hi\"}}";
		m.body = (char *)"hi\tthere\nback\\slash";
		assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	}
	assert_int_equal(
	    st->ops->suppression_put(st, "acme", "whatsapp", "447911999999", "STOP", &err), 0);
	const char body[] = "{\"raw\":\"\\u0000 and bytes\"}\n\x01\xff";
	assert_int_equal(
	    st->ops->inbox_append(st, "acme-wa", "whatsapp", "", body, sizeof body - 1, NULL, NULL),
	    0);
	st->ops->close(st);
}

static void sqlite_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

/* A fresh target database; its conninfo into dsn. */
static void make_target(char *name, size_t nsize, char *dsn, size_t dsize)
{
	snprintf(name, nsize, "c%d", ++dbseq);
	if (pgtest_createdb(&pg, name) != 0)
		fail_msg("pgtest: %s", pg.err);
	pgtest_conninfo(&pg, name, dsn, dsize);
}

static long long pg_int(const char *db, const char *sql)
{
	PGconn *c = pgtest_connect(&pg, db);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

static const struct store_copy_table *table(const struct store_copy_report *rep, const char *name)
{
	for (size_t i = 0; i < rep->n; i++)
		if (!strcmp(rep->t[i].name, name))
			return &rep->t[i];
	fail_msg("no table %s in the report", name);
	return NULL;
}

/* Messages 14 months old land in their month's partition, not DEFAULT;
 * binary inbox bodies and escaped text arrive intact. */
static void test_old_months_partitioned(void **state)
{
	(void)state;
	char src[128], name[32], dsn[400];
	snprintf(src, sizeof src, "%s/old.db", tmpdir);
	make_source(src, 50, 425);
	make_target(name, sizeof name, dsn, sizeof dsn);
	struct store_copy_opts o = {.sqlite_path = src, .pg_dsn = dsn};
	struct store_copy_report rep;
	struct hr_err err = {0};
	if (store_copy_sqlite_to_postgres(&o, &rep, &err) != 0)
		fail_msg("copy: %s: %s", err.field, err.msg);
	assert_true(rep.partitions_made >= 2 * 12);
	assert_int_equal(table(&rep, "message")->rows, 50);
	assert_int_equal(table(&rep, "message_event")->rows, 50);
	assert_int_equal(table(&rep, "webhook_inbox")->rows, 1);
	assert_string_equal(table(&rep, "message")->source_sum, table(&rep, "message")->target_sum);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM message_default"), 0);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM message_event_default"), 0);
	assert_int_equal(pg_int(name, "SELECT count(DISTINCT tableoid) FROM message"), 1);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM message"
	                              " WHERE body = E'hi\\tthere\\nback\\\\slash'"),
	                 50);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM webhook_inbox"
	                              " WHERE body = convert_to('{\"raw\":\"\\u0000 and bytes\"}',"
	                              " 'UTF8') || '\\x0a01ff'::bytea"),
	                 1);
	/* The sequences go on past the copied ids. */
	assert_int_equal(pg_int(name, "SELECT nextval('webhook_inbox_id_seq')"),
	                 pg_int(name, "SELECT max(id) FROM webhook_inbox") + 1);
}

/* A row the target refuses (text that is not UTF-8) in the last table
 * copied: the copy fails naming it, and nothing of the earlier tables
 * stays behind. */
static void test_failed_copy_leaves_target(void **state)
{
	(void)state;
	char src[128], name[32], dsn[400];
	snprintf(src, sizeof src, "%s/bad.db", tmpdir);
	make_source(src, 20, 0);
	sqlite_exec(src, "INSERT INTO recipient_alias(account_id, old, new, created_at)"
	                 " VALUES('acme-wa', CAST(x'61ff62' AS TEXT), 'b', 1)");
	make_target(name, sizeof name, dsn, sizeof dsn);
	struct store_copy_opts o = {.sqlite_path = src, .pg_dsn = dsn};
	struct store_copy_report rep;
	struct hr_err err = {0};
	assert_int_equal(store_copy_sqlite_to_postgres(&o, &rep, &err), HR_EIO);
	assert_string_equal(err.field, "recipient_alias");
	assert_int_equal(table(&rep, "message")->rows, 20);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM message"), 0);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM tenant"), 0);
	/* ... and once the row is fixed, the same target takes the copy. */
	sqlite_exec(src, "UPDATE recipient_alias SET old = 'a'");
	if (store_copy_sqlite_to_postgres(&o, &rep, &err) != 0)
		fail_msg("copy: %s: %s", err.field, err.msg);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM message"), 20);
	assert_int_equal(pg_int(name, "SELECT count(*) FROM recipient_alias"), 1);
}

/* Sources the copier does not know are refused before the target is touched. */
static void test_sources_refused(void **state)
{
	(void)state;
	char name[32], dsn[400], path[128];
	make_target(name, sizeof name, dsn, sizeof dsn);
	static const struct {
		const char *file, *sql, *says;
	} cases[] = {
	    {"none.db", NULL, "cannot open"},
	    {"empty.db", "CREATE TABLE x(y)", "not a herald SQLite database"},
	    {"v1.db",
	     "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at INTEGER);"
	     "INSERT INTO schema_migrations VALUES(1, 0)",
	     "herald migrate --config"},
	    {"v99.db",
	     "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at INTEGER);"
	     "INSERT INTO schema_migrations VALUES(99, 0)",
	     "use the herald that wrote it"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, cases[i].file);
		if (cases[i].sql)
			sqlite_exec(path, cases[i].sql);
		struct store_copy_opts o = {.sqlite_path = path, .pg_dsn = dsn};
		struct store_copy_report rep;
		struct hr_err err = {0};
		assert_int_not_equal(store_copy_sqlite_to_postgres(&o, &rep, &err), 0);
		assert_string_equal(err.field, "--from");
		if (!strstr(err.msg, cases[i].says))
			fail_msg("%s: %s", cases[i].file, err.msg);
	}
	/* Nothing reached the target, not even the schema. */
	assert_int_equal(pg_int(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
	                 0);
	/* An unreachable target names --to. */
	snprintf(path, sizeof path, "%s/old.db", tmpdir);
	struct store_copy_opts o = {.sqlite_path = path,
	                            .pg_dsn = "host=127.0.0.1 port=1 dbname=x connect_timeout=2"};
	struct store_copy_report rep;
	struct hr_err err = {0};
	assert_int_not_equal(store_copy_sqlite_to_postgres(&o, &rep, &err), 0);
	assert_string_equal(err.field, "--to");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sum_canonical),
	    cmocka_unit_test(test_knows_both_schemas),
	    cmocka_unit_test(test_old_months_partitioned),
	    cmocka_unit_test(test_failed_copy_leaves_target),
	    cmocka_unit_test(test_sources_refused),
	};
	return cmocka_run_group_tests_name("copy", tests, group_setup, group_teardown);
}
