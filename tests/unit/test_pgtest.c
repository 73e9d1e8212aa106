/*
 * test_pgtest.c - the PostgreSQL test fixture (tests/pgtest.h) against a real
 * server from Debian's packages: start, SQL over the unix socket and TCP,
 * a second connection seeing committed data only, stop, and cleanup when the
 * test process dies without stopping.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pgtest.h"

static struct pgtest pg; /* shared by the SQL tests */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state)
{
	(void)state;
	if (pgtest_start(&pg) != 0) {
		fprintf(stderr, "pgtest_start: %s\n", pg.err);
		return -1;
	}
	fprintf(stderr, "pgtest: PostgreSQL (%s) up in %.0f ms at %s, port %d\n", pg.bindir,
	        pg.start_ms, pg.dir, pg.port);
	return 0;
}

/* A no-op unless a test failed before test_stop_cleans_up. */
static int group_teardown(void **state)
{
	(void)state;
	int rc = pgtest_stop(&pg);
	if (rc != 0)
		fprintf(stderr, "pgtest_stop: %s\n", pg.err);
	return rc;
}

static PGconn *connect_ok(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* The single value of a one-row, one-column query, copied into buf. */
static const char *one(PGconn *c, const char *sql, char *buf, size_t len)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1)
		fail_msg("%s: %s (%d rows)", sql, PQerrorMessage(c), PQntuples(r));
	snprintf(buf, len, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

/* The server is what the fixture promises: our database and superuser,
 * UTF8, no fsync, loopback only, not running as root. */
static void test_server_settings(void **state)
{
	(void)state;
	PGconn *c = pgtest_connect(&pg, NULL);
	if (!c)
		fail_msg("%s", pg.err);
	char v[128];
	assert_string_equal(one(c, "SELECT current_database()", v, sizeof v), "herald");
	assert_string_equal(one(c, "SELECT current_user", v, sizeof v), "herald");
	assert_string_equal(
	    one(c, "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'herald'", v, sizeof v),
	    "true");
	assert_string_equal(one(c, "SHOW server_encoding", v, sizeof v), "UTF8");
	assert_string_equal(one(c, "SHOW fsync", v, sizeof v), "off");
	assert_string_equal(one(c, "SHOW listen_addresses", v, sizeof v), "127.0.0.1");
	assert_string_equal(one(c, "SHOW unix_socket_directories", v, sizeof v), pg.dir);
	char port[16];
	snprintf(port, sizeof port, "%d", pg.port);
	assert_string_equal(one(c, "SHOW port", v, sizeof v), port);
	/* Over the socket, the server has no address for us. */
	assert_string_equal(one(c, "SELECT inet_server_addr() IS NULL", v, sizeof v), "t");
	assert_int_equal(PQserverVersion(c) >= 120000, 1);
	PQfinish(c);

	/* The postmaster runs unprivileged: as us, or as postgres/nobody for root. */
	assert_true(pg.server_pid > 0);
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pg.server_pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	long uid = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Uid: %*d %ld", &uid) == 1)
			break;
	fclose(f);
	if (geteuid() == 0)
		assert_true(uid > 0);
	else
		assert_int_equal(uid, (long)geteuid());
}

/* Create a table, insert with parameters, read back exact values. */
static void test_roundtrip(void **state)
{
	(void)state;
	PGconn *c = pgtest_connect(&pg, NULL);
	if (!c)
		fail_msg("%s", pg.err);
	exec_ok(c, "CREATE TABLE msg (id bigint PRIMARY KEY, body text NOT NULL, "
	           "sent_at timestamptz, n int NOT NULL DEFAULT 0)");
	const char *bodies[] = {"hello", "h\xc3\xa9llo \xe2\x9c\x93", "it's \"quoted\"\n"};
	for (int i = 0; i < 3; i++) {
		char id[16], n[16];
		snprintf(id, sizeof id, "%d", 10 + i);
		snprintf(n, sizeof n, "%d", 2 * (10 + i));
		const char *params[] = {id, bodies[i], n};
		PGresult *r = PQexecParams(c, "INSERT INTO msg (id, body, n) VALUES ($1, $2, $3)",
		                           3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fail_msg("insert: %s", PQerrorMessage(c));
		assert_string_equal(PQcmdTuples(r), "1");
		PQclear(r);
	}
	/* A duplicate key is refused with the SQLSTATE a store will look at. */
	PGresult *r = PQexec(c, "INSERT INTO msg (id, body) VALUES (11, 'dup')");
	assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
	assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23505");
	PQclear(r);

	r = PQexec(c,
	           "SELECT id, body, n, sent_at IS NULL, octet_length(body) FROM msg ORDER BY id");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), 3);
	assert_int_equal(PQnfields(r), 5);
	const char *want_n[] = {"20", "22", "24"}, *want_len[] = {"5", "10", "14"};
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof id, "%d", 10 + i);
		assert_string_equal(PQgetvalue(r, i, 0), id);
		assert_string_equal(PQgetvalue(r, i, 1), bodies[i]);
		assert_string_equal(PQgetvalue(r, i, 2), want_n[i]);
		assert_string_equal(PQgetvalue(r, i, 3), "t");
		assert_string_equal(PQgetvalue(r, i, 4), want_len[i]);
	}
	PQclear(r);
	char v[64];
	assert_string_equal(one(c, "SELECT sum(n) FROM msg", v, sizeof v), "66");
	PQfinish(c);
}

/* A second connection (over TCP 127.0.0.1) sees another's rows only once
 * they are committed, and the exact committed values. */
static void test_second_connection_sees_committed(void **state)
{
	(void)state;
	PGconn *a = pgtest_connect(&pg, NULL);
	if (!a)
		fail_msg("%s", pg.err);
	PGconn *b = connect_ok(pg.conninfo_tcp);
	char v[64];
	assert_string_equal(one(b, "SELECT host(inet_server_addr())", v, sizeof v), "127.0.0.1");
	exec_ok(a, "CREATE TABLE acct (id text PRIMARY KEY, balance int NOT NULL)");
	exec_ok(a, "BEGIN");
	exec_ok(a, "INSERT INTO acct VALUES ('a', 100), ('b', 250)");
	assert_string_equal(one(a, "SELECT count(*) FROM acct", v, sizeof v), "2");
	assert_string_equal(one(b, "SELECT count(*) FROM acct", v, sizeof v), "0");
	exec_ok(a, "COMMIT");
	assert_string_equal(one(b, "SELECT count(*) FROM acct", v, sizeof v), "2");
	assert_string_equal(one(b, "SELECT balance FROM acct WHERE id = 'b'", v, sizeof v), "250");

	/* An update rolled back is never seen; one committed is. */
	exec_ok(a, "BEGIN");
	exec_ok(a, "UPDATE acct SET balance = balance - 30 WHERE id = 'a'");
	exec_ok(a, "ROLLBACK");
	assert_string_equal(one(b, "SELECT balance FROM acct WHERE id = 'a'", v, sizeof v), "100");
	exec_ok(a, "UPDATE acct SET balance = balance - 30 WHERE id = 'a'");
	assert_string_equal(one(b, "SELECT balance FROM acct WHERE id = 'a'", v, sizeof v), "70");
	assert_string_equal(one(b, "SELECT sum(balance) FROM acct", v, sizeof v), "320");
	PQfinish(a);
	PQfinish(b);

	/* A database of its own, e.g. one per test of a future store suite. */
	assert_int_equal(pgtest_createdb(&pg, "fresh"), 0);
	PGconn *f = pgtest_connect(&pg, "fresh");
	if (!f)
		fail_msg("%s", pg.err);
	assert_string_equal(
	    one(f, "SELECT count(*) FROM pg_tables WHERE tablename = 'acct'", v, sizeof v), "0");
	PQfinish(f);
}

static bool gone(pid_t pid)
{
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return true;
	/* Orphans are reaped by PID 1, which may not reap: a zombie is gone too. */
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && (p[2] == 'Z' || p[2] == 'X');
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Waits up to ms for the server to be gone and its directory removed. */
static bool cleaned_up(pid_t server, const char *dir, double ms)
{
	double deadline = now_ms() + ms;
	while (now_ms() < deadline) {
		if (gone(server) && !exists(dir))
			return true;
		struct timespec ts = {0, 10000000L};
		nanosleep(&ts, NULL);
	}
	return false;
}

/* pgtest_stop (of the shared server, so this runs after the SQL tests):
 * the server is gone, nothing listens on its port or socket, the directory
 * is removed; a second stop (the group teardown's) is harmless. */
static void test_stop_cleans_up(void **state)
{
	(void)state;
	char sock[200];
	snprintf(sock, sizeof sock, "%s/.s.PGSQL.%d", pg.dir, pg.port);
	assert_true(exists(sock));
	assert_int_equal(PQping(pg.conninfo_tcp), PQPING_OK);
	PGconn *idle = pgtest_connect(&pg, NULL); /* fast shutdown ends sessions */
	assert_non_null(idle);
	double t0 = now_ms();
	assert_int_equal(pgtest_stop(&pg), 0);
	fprintf(stderr, "pgtest: stopped in %.0f ms\n", now_ms() - t0);
	PQfinish(idle);
	assert_true(gone(pg.server_pid));
	assert_false(exists(pg.dir));
	assert_int_equal(PQping(pg.conninfo_tcp), PQPING_NO_RESPONSE);
	assert_int_equal(PQping(pg.conninfo), PQPING_NO_RESPONSE);
	assert_int_equal(pgtest_stop(&pg), 0);
}

/* A test process killed with SIGKILL (no pgtest_stop, no atexit) leaves
 * no server and no directory behind. */
static void test_killed_test_process_cleans_up(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(fds[0]);
		struct pgtest p;
		if (pgtest_start(&p) != 0) {
			fprintf(stderr, "child pgtest_start: %s\n", p.err);
			_exit(1);
		}
		if (write(fds[1], &p, sizeof p) != (ssize_t)sizeof p)
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	close(fds[1]);
	struct pgtest p;
	ssize_t n = read(fds[0], &p, sizeof p);
	close(fds[0]);
	int st;
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_int_equal(n, (ssize_t)sizeof p);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_true(p.server_pid > 0);
	double t0 = now_ms();
	assert_true(cleaned_up(p.server_pid, p.dir, 20000));
	fprintf(stderr,
	        "pgtest: (started in %.0f ms) after SIGKILL of its test process, server and "
	        "directory gone in %.0f ms\n",
	        p.start_ms, now_ms() - t0);
	assert_int_equal(PQping(p.conninfo_tcp), PQPING_NO_RESPONSE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_server_settings),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_second_connection_sees_committed),
	    cmocka_unit_test(test_stop_cleans_up),
	    cmocka_unit_test(test_killed_test_process_cleans_up),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
