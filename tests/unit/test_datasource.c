/*
 * test_datasource.c - external data sources (src/plugins/datasource.h)
 * against real servers this test starts: PostgreSQL (tests/pgtest.h, with
 * password authentication for one role), MariaDB (tests/dbtest.h) and ODBC
 * through unixODBC with PostgreSQL's psqlODBC driver. Covers config errors,
 * placeholder translation, rows / NULLs / UTF-8, values that try to be SQL,
 * timeouts, bad passwords and unknown sources, the pool bound under
 * concurrent threads, and connections killed server-side.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "dbtest.h"
#include "pgtest.h"
#include "plugins/datasource.h"
#include "plugins/ds_int.h"

static struct pgtest pg;
static struct mdbtest mdb;
static char tmpdir[64];
static struct ds_registry *reg;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void pg_exec_ok(const char *sql)
{
	PGconn *c = pgtest_connect(&pg, NULL);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

/* One integer from the admin connection. */
static long pg_one(const char *sql)
{
	PGconn *c = pgtest_connect(&pg, NULL);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	long v = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

static long mdb_one(const char *sql)
{
	MYSQL *c = mdbtest_connect(&mdb, NULL);
	assert_non_null(c);
	if (mysql_query(c, sql))
		fail_msg("%s: %s", sql, mysql_error(c));
	MYSQL_RES *r = mysql_store_result(c);
	assert_non_null(r);
	MYSQL_ROW row = mysql_fetch_row(r);
	assert_non_null(row);
	long v = atol(row[0]);
	mysql_free_result(r);
	mysql_close(c);
	return v;
}

static struct ds_registry *open_yaml(const char *yaml, char *err, size_t errlen)
{
	struct hr_err e = {0};
	json_t *root = hr_config_parse(yaml, strlen(yaml), &e);
	if (!root) {
		snprintf(err, errlen, "%s", e.msg);
		return NULL;
	}
	struct ds_registry *r = NULL;
	int rc = ds_registry_open((const struct config *)root, &r, err, errlen);
	json_decref(root);
	return rc == 0 ? r : NULL;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/dstest-XXXXXX");
	/* Readable by the server's user (pgtest runs it as postgres when root). */
	if (!mkdtemp(tmpdir) || chmod(tmpdir, 0755) != 0)
		return -1;
	/* Trust for the fixture's superuser; passwords for everyone else. */
	char hba[128];
	snprintf(hba, sizeof hba, "%s/pg_hba.conf", tmpdir);
	FILE *f = fopen(hba, "w");
	if (!f)
		return -1;
	fprintf(f, "local all herald trust\nhost all herald 127.0.0.1/32 trust\n"
	           "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n");
	fclose(f);
	char hba_set[160];
	snprintf(hba_set, sizeof hba_set, "hba_file=%s", hba);
	const char *settings[] = {hba_set, NULL};
	if (pgtest_start_with(&pg, false, settings) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
		return -1;
	}
	if (mdbtest_start(&mdb) != 0) {
		fprintf(stderr, "mdbtest: %s\n", mdb.err);
		return -1;
	}
	fprintf(stderr, "servers: PostgreSQL in %.0f ms, MariaDB in %.0f ms\n", pg.start_ms,
	        mdb.start_ms);
	char err[512];
	if (dbtest_odbc_setup(&pg, tmpdir, "herald_pg", err, sizeof err) != 0) {
		fprintf(stderr, "odbc: %s\n", err);
		return -1;
	}
	pg_exec_ok("CREATE ROLE app LOGIN PASSWORD 'app-secret';"
	           "CREATE TABLE people (id int PRIMARY KEY, name text, phone text, note text);"
	           "INSERT INTO people VALUES (1, 'Zoë Ångström 😀', '+447700900001', NULL),"
	           "(2, 'O''Brien', '+447700900002', 'vip'), (3, NULL, '+447700900003', '');"
	           "CREATE TABLE notes (id serial PRIMARY KEY, body text);"
	           "GRANT ALL ON people, notes, notes_id_seq TO app;");
	if (mdbtest_sql(
	        &mdb, "CREATE DATABASE biz CHARACTER SET utf8mb4;"
	              "CREATE USER 'app'@'localhost' IDENTIFIED BY 'app-secret';"
	              "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app-secret';"
	              "GRANT ALL ON biz.* TO 'app'@'localhost';"
	              "GRANT ALL ON biz.* TO 'app'@'127.0.0.1';"
	              "CREATE TABLE biz.people (id int PRIMARY KEY, name text, phone text, "
	              "note text) CHARACTER SET utf8mb4;"
	              "INSERT INTO biz.people VALUES (1, 'Zoë Ångström 😀', '+447700900001', NULL),"
	              "(2, 'O''Brien', '+447700900002', 'vip'), (3, NULL, '+447700900003', '');"
	              "CREATE TABLE biz.notes (id int AUTO_INCREMENT PRIMARY KEY, body text) "
	              "CHARACTER SET utf8mb4;") != 0) {
		fprintf(stderr, "mariadb setup: %s\n", mdb.err);
		return -1;
	}
	setenv("DSTEST_PW", "app-secret", 1);
	setenv("DSTEST_BAD_PW", "not-the-password", 1);
	char yaml[4096];
	snprintf(
	    yaml, sizeof yaml,
	    "data_sources:\n"
	    "  - {name: pg, driver: postgres, socket: \"%s\", port: %d, database: herald,\n"
	    "     user: app, password: \"env:DSTEST_PW\", pool_size: 2, timeout_ms: 3000}\n"
	    "  - {name: pgtcp, driver: redshift, host: 127.0.0.1, port: %d, database: herald,\n"
	    "     user: app, password: \"env:DSTEST_PW\", pool_size: 1}\n"
	    "  - {name: pgbad, driver: postgres, host: 127.0.0.1, port: %d, database: herald,\n"
	    "     user: app, password: \"env:DSTEST_BAD_PW\"}\n"
	    "  - {name: mdb, driver: mariadb, socket: \"%s\", database: biz, user: app,\n"
	    "     password: \"env:DSTEST_PW\", pool_size: 2, timeout_ms: 500}\n"
	    "  - {name: mdbtcp, driver: mysql, host: 127.0.0.1, port: %d, database: biz,\n"
	    "     user: app, password: \"env:DSTEST_PW\"}\n"
	    "  - {name: mdbbad, driver: mariadb, socket: \"%s\", database: biz, user: app,\n"
	    "     password: \"env:DSTEST_BAD_PW\"}\n"
	    "  - {name: odbc, driver: odbc, dsn: \"DSN=herald_pg\", user: app,\n"
	    "     password: \"env:DSTEST_PW\", pool_size: 2, timeout_ms: 3000}\n",
	    pg.dir, pg.port, pg.port, pg.port, mdb.socket, mdb.port, mdb.socket);
	reg = open_yaml(yaml, err, sizeof err);
	if (!reg) {
		fprintf(stderr, "registry: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	ds_registry_close(reg);
	reg = NULL;
	int rc = pgtest_stop(&pg);
	if (mdbtest_stop(&mdb) != 0)
		rc = -1;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (tmpdir[0] && system(cmd) != 0)
		rc = -1;
	return rc;
}

/* ---- collecting rows ---- */

struct rows {
	int n;
	int ncols;
	char names[4][32];
	char v[16][4][64];
	bool null[16][4];
	int stop_after; /* 0: never */
};

static int collect(void *ctx, int ncols, const char *const *names, const char *const *values)
{
	struct rows *r = ctx;
	r->ncols = ncols;
	for (int i = 0; i < ncols && i < 4; i++) {
		snprintf(r->names[i], sizeof r->names[i], "%s", names[i]);
		if (r->n < 16) {
			r->null[r->n][i] = values[i] == NULL;
			snprintf(r->v[r->n][i], sizeof r->v[r->n][i], "%s",
			         values[i] ? values[i] : "");
		}
	}
	r->n++;
	return r->stop_after && r->n >= r->stop_after;
}

static void query_ok(const char *src, const char *sql, const char *const *params, int np,
                     struct rows *out)
{
	char err[512];
	memset(out, 0, sizeof *out);
	if (ds_query(reg, src, sql, params, np, 0, collect, out, err, sizeof err) != 0)
		fail_msg("%s: %s: %s", src, sql, err);
}

/* ---- config ---- */

static void test_config_errors(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		const char *want; /* in the error */
	} cases[] = {
	    {"data_sources: {name: x}", "data_sources must be a list"},
	    {"data_sources: [{driver: postgres, host: h, database: d}]",
	     "data_sources[0].name is required"},
	    {"data_sources: [{name: 'a b', driver: postgres, host: h, database: d}]",
	     "data_sources[0].name"},
	    {"data_sources: [{name: a, driver: oracle, host: h, database: d}]",
	     "data_sources[0].driver must be mariadb, postgres, redshift or odbc, not \"oracle\""},
	    {"data_sources: [{name: a, driver: postgres, host: h}]",
	     "data_sources[0].database: database is required"},
	    {"data_sources: [{name: a, driver: mariadb, database: d}]",
	     "host or socket is required"},
	    {"data_sources: [{name: a, driver: odbc}]",
	     "data_sources[0].dsn is required for the odbc driver"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, hots: x}]",
	     "data_sources[0].hots: unknown key"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, pool_size: 0}]",
	     "data_sources[0].pool_size must be an integer from 1 to 64"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, timeout_ms: 5}]",
	     "data_sources[0].timeout_ms"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, password: "
	     "'env:DSTEST_UNSET_VAR'}]",
	     "data_sources[0].password: environment variable DSTEST_UNSET_VAR is not set"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d},"
	     " {name: a, driver: mariadb, host: h, database: d}]",
	     "data_sources[1].name: \"a\" is already the name of data_sources[0]"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, queries: {'bad "
	     "name': 'SELECT 1'}}]",
	     "a query name is"},
	    {"data_sources: [{name: a, driver: postgres, host: h, database: d, tenants: [1]}]",
	     "data_sources[0].tenants[0] must be a tenant id"},
	};
	unsetenv("DSTEST_UNSET_VAR");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[512] = "";
		struct ds_registry *r = open_yaml(cases[i].yaml, err, sizeof err);
		if (r) {
			ds_registry_close(r);
			fail_msg("case %zu accepted: %s", i, cases[i].yaml);
		}
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].want);
	}
	/* No section: an empty registry. */
	char err[256];
	struct ds_registry *r = open_yaml("server: {listen: 1}", err, sizeof err);
	assert_non_null(r);
	assert_int_equal(ds_registry_count(r), 0);
	assert_int_equal(ds_query(r, "x", "SELECT 1", NULL, 0, 0, collect, NULL, err, sizeof err),
	                 -1);
	assert_string_equal(err, "data source \"x\": no such data source");
	ds_registry_close(r);
	/* Tenants and named queries. */
	r = open_yaml("data_sources: [{name: a, driver: postgres, host: h, database: d,"
	              " tenants: [t1], queries: {due: 'SELECT ?1'}}]",
	              err, sizeof err);
	assert_non_null(r);
	assert_true(ds_tenant_allowed(r, "a", "t1"));
	assert_false(ds_tenant_allowed(r, "a", "t2"));
	assert_false(ds_tenant_allowed(r, "b", "t1"));
	assert_string_equal(ds_named_query(r, "a", "due"), "SELECT ?1");
	assert_null(ds_named_query(r, "a", "other"));
	ds_registry_close(r);
}

static void test_translate(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int np;
		const char *dollar; /* NULL: an error */
		const char *qmark;
		const char *order; /* qmark binding order, as digits */
	} cases[] = {
	    {"SELECT 1", 0, "SELECT 1", "SELECT 1", ""},
	    {"SELECT ?1, ?2", 2, "SELECT $1, $2", "SELECT ?, ?", "01"},
	    {"SELECT ?2, ?1, ?2", 2, "SELECT $2, $1, $2", "SELECT ?, ?, ?", "101"},
	    {"SELECT '?1', \"?1\", `?1` , ?1", 1, "SELECT '?1', \"?1\", `?1` , $1",
	     "SELECT '?1', \"?1\", `?1` , ?", "0"},
	    {"SELECT 'it''s ?1', 'a\\'?1' -- ?1\n, ?1 /* ?1 */", 1,
	     "SELECT 'it''s ?1', 'a\\'?1' -- ?1\n, $1 /* ?1 */",
	     "SELECT 'it''s ?1', 'a\\'?1' -- ?1\n, ? /* ?1 */", "0"},
	    {"SELECT $$ ?1 $$, $t$ ?1 $t$, ?1", 1, "SELECT $$ ?1 $$, $t$ ?1 $t$, $1",
	     "SELECT $$ ?1 $$, $t$ ?1 $t$, ?", "0"},
	    {"SELECT ?10", 10, "SELECT $10", "SELECT ?", "9"},
	    {"SELECT ?3", 2, NULL, NULL, NULL},
	    {"SELECT 'open", 0, NULL, NULL, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (int ph = 0; ph < 2; ph++) {
			char *out = NULL, err[256] = "";
			int *order = NULL, norder = 0;
			int rc =
			    ds_sql_translate(cases[i].in, ph ? DS_PH_QMARK : DS_PH_DOLLAR,
			                     cases[i].np, &out, &order, &norder, err, sizeof err);
			const char *want = ph ? cases[i].qmark : cases[i].dollar;
			if (!want) {
				assert_int_equal(rc, -1);
				assert_true(err[0] != '\0');
				continue;
			}
			if (rc != 0)
				fail_msg("case %zu: %s", i, err);
			assert_string_equal(out, want);
			if (ph) {
				char o[16] = "";
				for (int k = 0; k < norder && k < 15; k++)
					o[k] = (char)('0' + order[k]);
				assert_string_equal(o, cases[i].order);
			}
			free(out);
			free(order);
		}
	}
	char *out = NULL, err[256];
	int *order = NULL, norder = 0;
	assert_int_equal(
	    ds_sql_translate("SELECT ?", DS_PH_QMARK, 1, &out, &order, &norder, err, sizeof err),
	    -1);
	assert_non_null(strstr(err, "bare ?"));
}

/* ---- rows, NULLs, UTF-8 on each driver ---- */

static void check_people(const char *src)
{
	struct rows r;
	query_ok(src, "SELECT id, name, phone, note FROM people WHERE id >= ?1 ORDER BY id",
	         (const char *[]){"1"}, 1, &r);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ncols, 4);
	assert_string_equal(r.names[0], "id");
	assert_string_equal(r.names[3], "note");
	assert_string_equal(r.v[0][0], "1");
	assert_string_equal(r.v[0][1], "Zoë Ångström 😀");
	assert_true(r.null[0][3]);
	assert_string_equal(r.v[1][1], "O'Brien");
	assert_string_equal(r.v[1][3], "vip");
	assert_true(r.null[2][1]);
	assert_false(r.null[2][3]); /* '' is not NULL */
	assert_string_equal(r.v[2][3], "");
	/* A UTF-8 parameter matches; a NULL parameter is SQL NULL. */
	query_ok(src, "SELECT id FROM people WHERE name = ?1", (const char *[]){"Zoë Ångström 😀"},
	         1, &r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.v[0][0], "1");
	query_ok(src, "SELECT COUNT(*) FROM people WHERE CAST(?1 AS text) IS NULL",
	         (const char *[]){NULL}, 1, &r);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.v[0][0], "3");
}

static void test_rows_pg(void **state)
{
	(void)state;
	check_people("pg");
	check_people("pgtcp");
}

static void test_rows_mariadb(void **state)
{
	(void)state;
	struct rows r;
	query_ok("mdb", "SELECT id, name, phone, note FROM people WHERE id >= ?1 ORDER BY id",
	         (const char *[]){"1"}, 1, &r);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.v[0][1], "Zoë Ångström 😀");
	assert_true(r.null[0][3]);
	assert_string_equal(r.v[1][1], "O'Brien");
	assert_true(r.null[2][1]);
	assert_false(r.null[2][3]);
	query_ok("mdb", "SELECT id FROM people WHERE name = ?1", (const char *[]){"Zoë Ångström 😀"},
	         1, &r);
	assert_int_equal(r.n, 1);
	/* ?1 twice: bound twice in order. NULL <=> NULL is MariaDB's IS NOT DISTINCT FROM. */
	query_ok("mdb", "SELECT COUNT(*) FROM people WHERE note <=> ?1 OR ?1 IS NULL",
	         (const char *[]){NULL}, 1, &r);
	assert_string_equal(r.v[0][0], "3");
	/* A value longer than the first buffer (256 bytes) comes back whole. */
	char long_val[3001];
	memset(long_val, 'x', 3000);
	long_val[3000] = '\0';
	struct rows lr;
	memset(&lr, 0, sizeof lr);
	char err[256];
	assert_int_equal(ds_query(reg, "mdb", "SELECT LENGTH(?1), ?1, 'short'",
	                          (const char *[]){long_val}, 1, 0, collect, &lr, err, sizeof err),
	                 0);
	assert_string_equal(lr.v[0][0], "3000");
	assert_int_equal(strlen(lr.v[0][1]), 63); /* the collector keeps 63 */
	assert_string_equal(lr.v[0][2], "short");
	/* Numbers and dates as text. */
	query_ok("mdb", "SELECT 12.50, DATE('2026-03-05'), 7", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "12.50");
	assert_string_equal(r.v[0][1], "2026-03-05");
	assert_string_equal(r.v[0][2], "7");
	query_ok("mdbtcp", "SELECT COUNT(*) FROM people", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "3");
}

static void test_rows_odbc(void **state)
{
	(void)state;
	check_people("odbc");
}

/* ---- values that try to be SQL ---- */

static void check_injection(const char *src)
{
	const char *evil[] = {"x' OR '1'='1", "1; DROP TABLE people; --",
	                      "Robert'); DROP TABLE notes;--", "\\'; SELECT 1; --", "?1 $1 ?"};
	char err[512];
	for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
		struct rows r;
		query_ok(src, "SELECT COUNT(*) FROM people WHERE name = ?1",
		         (const char *[]){evil[i]}, 1, &r);
		assert_string_equal(r.v[0][0], "0");
		long long a = -1;
		if (ds_exec(reg, src, "INSERT INTO notes (body) VALUES (?1)",
		            (const char *[]){evil[i]}, 1, 0, &a, err, sizeof err) != 0)
			fail_msg("%s: %s", src, err);
		assert_int_equal(a, 1);
		query_ok(src, "SELECT body FROM notes WHERE body = ?1", (const char *[]){evil[i]},
		         1, &r);
		assert_int_equal(r.n, 1);
		assert_string_equal(r.v[0][0], evil[i]);
	}
	struct rows r;
	query_ok(src, "SELECT COUNT(*) FROM people", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "3"); /* nothing dropped */
	long long a = -1;
	assert_int_equal(ds_exec(reg, src, "DELETE FROM notes WHERE body <> ?1",
	                         (const char *[]){""}, 1, 0, &a, err, sizeof err),
	                 0);
	assert_int_equal(a, 5);
}

static void test_injection(void **state)
{
	(void)state;
	check_injection("pg");
	check_injection("mdb");
	check_injection("odbc");
}

/* ---- timeouts ---- */

static void check_timeout(const char *src, const char *sql, int timeout_ms, double max_ms)
{
	char err[512];
	struct rows r = {0};
	double t0 = now_ms();
	int rc = ds_query(reg, src, sql, NULL, 0, timeout_ms, collect, &r, err, sizeof err);
	double took = now_ms() - t0;
	fprintf(stderr, "timeout %s: %.0f ms: %s\n", src, took, err);
	assert_int_equal(rc, -1);
	assert_true(took < max_ms);
	assert_true(took >= timeout_ms * 0.9);
	char want[64];
	snprintf(want, sizeof want, "data source \"%s\": ", src);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, "timed out"));
	/* The source still works: the timed-out connection was replaced. */
	query_ok(src, "SELECT 1", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "1");
}

static void test_timeouts(void **state)
{
	(void)state;
	check_timeout("pg", "SELECT pg_sleep(5)", 500, 1000);
	/* The server-side statement was cancelled, not left running. */
	double until = now_ms() + 5000;
	while (pg_one("SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'"
	              " AND state = 'active'") != 0 &&
	       now_ms() < until)
		sleep_ms(20);
	assert_int_equal(pg_one("SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE "
	                        "'SELECT pg_sleep(5)%' AND state = 'active'"),
	                 0);
	/* MariaDB and ODBC count whole seconds: 500 ms is 1 s. */
	check_timeout("mdb", "SELECT SLEEP(5)", 500, 2000);
	/* Killed on the server too, not left to sleep on. */
	until = now_ms() + 5000;
	while (mdb_one("SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE "
	               "'SELECT SLEEP(5)%'") != 0 &&
	       now_ms() < until)
		sleep_ms(20);
	assert_int_equal(mdb_one("SELECT COUNT(*) FROM information_schema.processlist WHERE info "
	                         "LIKE 'SELECT SLEEP(5)%'"),
	                 0);
	check_timeout("odbc", "SELECT pg_sleep(5)", 500, 2000);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
	(void)state;
	char err[512];
	struct rows r = {0};
	assert_int_equal(
	    ds_query(reg, "pgbad", "SELECT 1", NULL, 0, 0, collect, &r, err, sizeof err), -1);
	assert_non_null(strstr(err, "data source \"pgbad\": cannot connect: "));
	assert_non_null(strstr(err, "password authentication failed"));
	assert_null(strstr(err, "not-the-password"));
	assert_int_equal(
	    ds_query(reg, "mdbbad", "SELECT 1", NULL, 0, 0, collect, &r, err, sizeof err), -1);
	assert_non_null(strstr(err, "data source \"mdbbad\": cannot connect: Access denied"));
	assert_null(strstr(err, "not-the-password"));
	assert_int_equal(
	    ds_query(reg, "nope", "SELECT 1", NULL, 0, 0, collect, &r, err, sizeof err), -1);
	assert_string_equal(err, "data source \"nope\": no such data source");
	/* SQL errors name the source and keep the connection usable. */
	assert_int_equal(ds_query(reg, "pg", "SELECT * FROM missing_table", NULL, 0, 0, collect, &r,
	                          err, sizeof err),
	                 -1);
	assert_non_null(
	    strstr(err, "data source \"pg\": query: ERROR:  relation \"missing_table\""));
	assert_int_equal(ds_query(reg, "mdb", "SELECT * FROM missing_table", NULL, 0, 0, collect,
	                          &r, err, sizeof err),
	                 -1);
	assert_non_null(
	    strstr(err, "data source \"mdb\": preparing: Table 'biz.missing_table' doesn't exist"));
	assert_int_equal(ds_query(reg, "odbc", "SELECT * FROM missing_table", NULL, 0, 0, collect,
	                          &r, err, sizeof err),
	                 -1);
	assert_non_null(strstr(err, "data source \"odbc\": "));
	assert_non_null(strstr(err, "missing_table"));
	assert_int_equal(ds_query(reg, "pg", "SELECT ?2", (const char *[]){"a"}, 1, 0, collect, &r,
	                          err, sizeof err),
	                 -1);
	assert_non_null(strstr(err, "data source \"pg\": SQL names parameter ?2"));
	/* A stop after the first row of many: 0, and the source goes on. */
	memset(&r, 0, sizeof r);
	r.stop_after = 1;
	assert_int_equal(ds_query(reg, "pg", "SELECT g FROM generate_series(1, 100000) g", NULL, 0,
	                          0, collect, &r, err, sizeof err),
	                 0);
	assert_int_equal(r.n, 1);
	memset(&r, 0, sizeof r);
	r.stop_after = 1;
	assert_int_equal(ds_query(reg, "mdb", "SELECT seq FROM seq_1_to_100000", NULL, 0, 0,
	                          collect, &r, err, sizeof err),
	                 0);
	assert_int_equal(r.n, 1);
	query_ok("pg", "SELECT 2", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "2");
	query_ok("mdb", "SELECT 2", NULL, 0, &r);
	assert_string_equal(r.v[0][0], "2");
}

/* ---- the pool bound under concurrent threads ---- */

struct worker {
	const char *src;
	const char *sql;
	int ok;
	char err[512];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 10; i++) {
		struct rows r = {0};
		if (ds_query(reg, w->src, w->sql, NULL, 0, 10000, collect, &r, w->err,
		             sizeof w->err) == 0 &&
		    r.n == 1)
			w->ok++;
	}
	return NULL;
}

static void check_pool(const char *src, const char *sql, const char *count_sql, bool pg_side)
{
	struct worker w[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){.src = src, .sql = sql};
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		if (w[i].ok != 10)
			fail_msg("%s worker %d: %d of 10: %s", src, i, w[i].ok, w[i].err);
	}
	int open = -1, peak = -1;
	long long opened = -1;
	assert_int_equal(ds_pool_stats(reg, src, &open, &peak, &opened), 0);
	fprintf(stderr, "pool %s: open %d, peak %d, opened %lld\n", src, open, peak, opened);
	assert_int_equal(peak, 2); /* pool_size: 2, and 8 threads wanted more */
	assert_true(open <= 2);
	/* The server agrees: at most two sessions of the source's user. */
	long sessions = pg_side ? pg_one(count_sql) : mdb_one(count_sql);
	assert_int_equal(sessions, open);
}

static void test_pool_bound(void **state)
{
	(void)state;
	check_pool("pg", "SELECT pg_sleep(0.01)",
	           "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = 'app' AND "
	           "application_name = 'herald/pg'",
	           true);
	check_pool("mdb", "SELECT SLEEP(0.01)",
	           "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'app' AND "
	           "db = 'biz' AND host = 'localhost'",
	           false);
}

/* ---- connections killed server-side ---- */

static void test_killed_connection(void **state)
{
	(void)state;
	struct rows r;
	char sql[128];
	/* PostgreSQL: terminate every session of the pooled user. */
	query_ok("pg", "SELECT pg_backend_pid()", NULL, 0, &r);
	long before = atol(r.v[0][0]);
	snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld)", before);
	assert_int_equal(pg_one("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                        "WHERE usename = 'app' AND application_name = 'herald/pg'") >= 1,
	                 1);
	double until = now_ms() + 5000;
	while (pg_one("SELECT COUNT(*) FROM pg_stat_activity WHERE usename = 'app' AND "
	              "application_name = 'herald/pg'") != 0 &&
	       now_ms() < until)
		sleep_ms(20);
	long long opened0 = 0, opened1 = 0;
	assert_int_equal(ds_pool_stats(reg, "pg", NULL, NULL, &opened0), 0);
	query_ok("pg", "SELECT pg_backend_pid()", NULL, 0, &r);
	assert_int_not_equal(atol(r.v[0][0]), before);
	assert_int_equal(ds_pool_stats(reg, "pg", NULL, NULL, &opened1), 0);
	assert_int_equal(opened1, opened0 + 1);

	/* MariaDB: KILL every connection of the pooled user. */
	query_ok("mdb", "SELECT CONNECTION_ID()", NULL, 0, &r);
	long mbefore = atol(r.v[0][0]);
	MYSQL *adm = mdbtest_connect(&mdb, NULL);
	assert_non_null(adm);
	assert_int_equal(mysql_query(adm, "SELECT id FROM information_schema.processlist WHERE "
	                                  "user = 'app' AND db = 'biz'"),
	                 0);
	MYSQL_RES *res = mysql_store_result(adm);
	assert_non_null(res);
	long ids[8];
	int nids = 0;
	MYSQL_ROW row;
	while ((row = mysql_fetch_row(res)) && nids < 8)
		ids[nids++] = atol(row[0]);
	mysql_free_result(res);
	assert_true(nids >= 1);
	for (int i = 0; i < nids; i++) {
		snprintf(sql, sizeof sql, "KILL CONNECTION %ld", ids[i]);
		assert_int_equal(mysql_query(adm, sql), 0);
	}
	mysql_close(adm);
	until = now_ms() + 5000;
	while (mdb_one("SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'app' AND "
	               "db = 'biz'") != 0 &&
	       now_ms() < until)
		sleep_ms(20);
	assert_int_equal(ds_pool_stats(reg, "mdb", NULL, NULL, &opened0), 0);
	query_ok("mdb", "SELECT CONNECTION_ID()", NULL, 0, &r);
	assert_int_not_equal(atol(r.v[0][0]), mbefore);
	assert_int_equal(ds_pool_stats(reg, "mdb", NULL, NULL, &opened1), 0);
	assert_int_equal(opened1, opened0 + 1);

	/* ODBC: the driver only learns of it by using the connection: the
	 * query is retried once on a new one. */
	query_ok("odbc", "SELECT pg_backend_pid()", NULL, 0, &r);
	long obefore = atol(r.v[0][0]);
	snprintf(sql, sizeof sql, "SELECT COUNT(pg_terminate_backend(%ld))", obefore);
	assert_int_equal(pg_one(sql), 1);
	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %ld", obefore);
	until = now_ms() + 5000;
	while (pg_one(sql) != 0 && now_ms() < until)
		sleep_ms(20);
	query_ok("odbc", "SELECT pg_backend_pid()", NULL, 0, &r);
	assert_int_not_equal(atol(r.v[0][0]), obefore);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_errors), cmocka_unit_test(test_translate),
	    cmocka_unit_test(test_rows_pg),       cmocka_unit_test(test_rows_mariadb),
	    cmocka_unit_test(test_rows_odbc),     cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_errors),        cmocka_unit_test(test_timeouts),
	    cmocka_unit_test(test_pool_bound),    cmocka_unit_test(test_killed_connection),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
