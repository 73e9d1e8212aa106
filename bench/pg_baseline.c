/*
 * pg_baseline.c - the PostgreSQL side of `make bench` (bench/run.sh).
 *
 *   pg_baseline server
 *       Starts a throwaway PostgreSQL from Debian's server binaries
 *       (tests/pgtest.h) with PostgreSQL's default durability (fsync,
 *       synchronous_commit and full_page_writes on, 16 MB WAL segments: a
 *       commit waits for its WAL flush, as a SQLite commit with
 *       synchronous=FULL waits for its fsync), pg_stat_statements loaded and
 *       WAL I/O timed, listening on a free 127.0.0.1 port. Prints
 *         conninfo=host=127.0.0.1 port=N dbname=herald user=herald
 *         pid=POSTMASTER_PID
 *       then waits for SIGTERM or SIGINT, stops the server and removes its
 *       directory. The extension pg_stat_statements is created in database
 *       "postgres" (its view shows the statements of every database).
 *
 *   pg_baseline insert --conninfo CI [--seconds S] [--per-tx N]
 *       The raw PostgreSQL limit for Herald's batch accept: the rows the batch
 *       endpoint's durable write produces (one message row plus one
 *       "accepted" message_event row per message, ULID keys, the batch's
 *       content and body), into Herald's own schema (a fresh database
 *       "herald_baseline", made by the store's migrations, so the baseline
 *       follows the schema), N messages per transaction, over one libpq
 *       connection, by two methods that each run S seconds:
 *         copy:   COPY ... FROM STDIN (text format) for both tables;
 *         values: one multi-row INSERT ... VALUES per table per transaction,
 *                 prepared once (what a careful client does without COPY).
 *       Prints one line per method and a last line with the faster one:
 *         pg_baseline method=M messages=N seconds=S messages_per_s=X
 *         pg_baseline best=M messages_per_s=X
 *       Exits non-zero on any failure, including a row count that does not
 *       match what was inserted.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "herald.h"
#include "pgtest.h"
#include "store/store.h"

/* What the benchmark's batch request carries per message (bench/batch.lua). */
#define BL_TENANT "bench"
#define BL_ACCOUNT "bench-wa"
#define BL_CHANNEL "whatsapp"
#define BL_TEXT "Your Herald verification code is 482913. It expires in 10 minutes."
#define BL_CONTENT "{\"type\":\"text\",\"text\":\"" BL_TEXT "\"}"
#define BL_MAX_ATTEMPTS 8
#define BL_DB "herald_baseline"
#define MAX_PER_TX 10000

static volatile sig_atomic_t got_signal;
static void on_signal(int sig)
{
	got_signal = sig;
}

static int run_server(void)
{
	/* The server's settings beyond the durable defaults: statement and WAL
	 * statistics for run.sh's "where the time goes" report, and room for
	 * the WAL a 10 s batch phase writes (about 1.5 GB) so that phases are
	 * not measured across forced checkpoints of the default 1 GB. */
	static const char *const settings[] = {
		"shared_preload_libraries=pg_stat_statements",
		"pg_stat_statements.max=1000",
		"track_wal_io_timing=on",
		"track_io_timing=on",
		"max_wal_size=4GB",
		"max_connections=200",
		NULL};
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
		perror("pg_baseline: sigaction");
		return 1;
	}
	struct pgtest pg;
	if (pgtest_start_with(&pg, true, settings) != 0) {
		fprintf(stderr, "pg_baseline: %s\n", pg.err);
		return 1;
	}
	PGconn *c = pgtest_connect(&pg, "postgres");
	PGresult *r = c ? PQexec(c, "CREATE EXTENSION pg_stat_statements") : NULL;
	if (!c || PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "pg_baseline: CREATE EXTENSION pg_stat_statements: %s\n",
		        c ? PQerrorMessage(c) : pg.err);
		PQclear(r);
		PQfinish(c);
		pgtest_stop(&pg);
		return 1;
	}
	PQclear(r);
	PQfinish(c);
	printf("conninfo=%s\npid=%ld\n", pg.conninfo_tcp, (long)pg.server_pid);
	fflush(stdout);
	while (!got_signal)
		pause();
	if (pgtest_stop(&pg) != 0) {
		fprintf(stderr, "pg_baseline: %s\n", pg.err);
		return 1;
	}
	return 0;
}

/* ---- insert ------------------------------------------------------------- */

struct ins_args {
	const char *conninfo;
	double seconds;
	int per_tx;
};

static int exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	PQclear(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "pg_baseline: %s: %s", sql, PQerrorMessage(c));
		return -1;
	}
	return 0;
}

/* The connection string for database db: the given one with dbname=db
 * appended (libpq takes the last of repeated keywords). */
static void with_db(const char *conninfo, const char *db, char *out, size_t len)
{
	snprintf(out, len, "%s dbname=%s", conninfo, db);
}

static void quiet(void *arg, const char *msg)
{
	(void)arg, (void)msg; /* "database ... does not exist, skipping" */
}

static PGconn *connect_db(const char *conninfo, const char *db)
{
	char ci[1024];
	with_db(conninfo, db, ci, sizeof ci);
	PGconn *c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pg_baseline: connect %s: %s", ci, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

/* A fresh database with Herald's schema, made by the store's migrations. */
static int fresh_schema(const char *conninfo)
{
	PGconn *c = connect_db(conninfo, "postgres");
	if (!c || exec_ok(c, "DROP DATABASE IF EXISTS " BL_DB " WITH (FORCE)") ||
	    exec_ok(c, "CREATE DATABASE " BL_DB)) {
		PQfinish(c);
		return -1;
	}
	PQfinish(c);
	char ci[1024];
	with_db(conninfo, BL_DB, ci, sizeof ci);
	struct store_opts so = {0};
	struct store *st = NULL;
	struct hr_err err = {0};
	if (store_postgres.open(ci, &so, &st, &err) != 0) {
		fprintf(stderr, "pg_baseline: cannot create the Herald schema: %s\n", err.msg);
		return -1;
	}
	store_postgres.close(st);
	return 0;
}

static int drop_db(const char *conninfo)
{
	PGconn *c = connect_db(conninfo, "postgres");
	int rc = c ? exec_ok(c, "DROP DATABASE IF EXISTS " BL_DB " WITH (FORCE)") : -1;
	PQfinish(c);
	return rc;
}

/* One message as the API makes it in a batch: fresh ULID, distinct
 * recipient, status QUEUED, bulk priority, due now. */
struct row {
	char id[HR_ID_LEN + 1];
	char to[24];
};

static void make_rows(struct row *rows, int n, long first)
{
	for (int i = 0; i < n; i++) {
		hr_id_new(rows[i].id);
		snprintf(rows[i].to, sizeof rows[i].to, "4479%08ld", (first + i) % 100000000);
	}
}

static int copy_end(PGconn *c, const char *what)
{
	if (PQputCopyEnd(c, NULL) != 1) {
		fprintf(stderr, "pg_baseline: %s: %s", what, PQerrorMessage(c));
		return -1;
	}
	PGresult *r;
	int rc = 0;
	while ((r = PQgetResult(c))) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "pg_baseline: %s: %s", what, PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

static int copy_start(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COPY_IN;
	PQclear(r);
	if (!ok)
		fprintf(stderr, "pg_baseline: %s: %s", sql, PQerrorMessage(c));
	return ok ? 0 : -1;
}

/* One transaction of n messages by COPY: both tables' rows built as COPY
 * text in one buffer each and sent with one PQputCopyData. */
static int tx_copy(PGconn *c, struct hr_buf *b, int n, long first)
{
	static struct row rows[MAX_PER_TX];
	char batch_id[HR_ID_LEN + 1];
	hr_id_new(batch_id);
	make_rows(rows, n, first);
	int64_t now = hr_now_us();
	if (exec_ok(c, "BEGIN") ||
	    copy_start(c, "COPY message(id, tenant_id, account_id, channel, recipient, batch_id,"
	                  " content, body, status, priority, attempts, max_attempts, created_at,"
	                  " updated_at, due_at, lease_until, segments) FROM STDIN"))
		goto fail;
	b->len = 0;
	for (int i = 0; i < n; i++)
		hr_buf_printf(b,
		              "%s\t" BL_TENANT "\t" BL_ACCOUNT "\t" BL_CHANNEL "\t%s\t%s\t" BL_CONTENT
		              "\t" BL_TEXT "\t%d\t%d\t0\t%d\t%lld\t%lld\t%lld\t0\t0\n",
		              rows[i].id, rows[i].to, batch_id, MSG_QUEUED, PRIO_BULK,
		              BL_MAX_ATTEMPTS, (long long)now, (long long)now, (long long)now);
	if (b->oom || PQputCopyData(c, b->p, (int)b->len) != 1 || copy_end(c, "COPY message"))
		goto fail;
	if (copy_start(c, "COPY message_event(message_id, at, provider_at, type, source, status,"
	                  " applied) FROM STDIN"))
		goto fail;
	b->len = 0;
	for (int i = 0; i < n; i++)
		hr_buf_printf(b, "%s\t%lld\t0\taccepted\tapi\t%d\tt\n", rows[i].id, (long long)now,
		              MSG_QUEUED);
	if (b->oom || PQputCopyData(c, b->p, (int)b->len) != 1 ||
	    copy_end(c, "COPY message_event") || exec_ok(c, "COMMIT"))
		goto fail;
	return 0;
fail:
	PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

enum { MSG_COLS = 13, EV_COLS = 3 };

/* "INSERT ... VALUES ($1, ..., $k), (...), ..." for n rows of k parameters,
 * with the constant columns written as literals. */
static int prepare_values(PGconn *c, struct hr_buf *b, int n)
{
	b->len = 0;
	hr_buf_printf(b, "INSERT INTO message(id, tenant_id, account_id, channel, recipient,"
	                 " batch_id, content, body, status, priority, attempts, max_attempts,"
	                 " created_at, updated_at, due_at, lease_until, segments) VALUES ");
	for (int i = 0; i < n; i++) {
		int p = i * MSG_COLS;
		hr_buf_printf(b, "%s($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d::smallint,"
		                 " $%d::int, 0, $%d::int, $%d::bigint, $%d::bigint, $%d::bigint, 0, 0)",
		              i ? ", " : "", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8,
		              p + 9, p + 10, p + 11, p + 12, p + 12, p + 13);
	}
	if (b->oom)
		return -1;
	PGresult *r = PQprepare(c, "msg", b->p, 0, NULL);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	b->len = 0;
	hr_buf_printf(b, "INSERT INTO message_event(message_id, at, provider_at, type, source,"
	                 " status, applied) VALUES ");
	for (int i = 0; i < n; i++) {
		int p = i * EV_COLS;
		hr_buf_printf(b, "%s($%d, $%d::bigint, 0, 'accepted', 'api', $%d::smallint, true)",
		              i ? ", " : "", p + 1, p + 2, p + 3);
	}
	if (!ok || b->oom) {
		fprintf(stderr, "pg_baseline: prepare: %s", PQerrorMessage(c));
		return -1;
	}
	r = PQprepare(c, "ev", b->p, 0, NULL);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		fprintf(stderr, "pg_baseline: prepare: %s", PQerrorMessage(c));
	return ok ? 0 : -1;
}

static int exec_prepared(PGconn *c, const char *name, int np, const char *const *v)
{
	PGresult *r = PQexecPrepared(c, name, np, v, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok)
		fprintf(stderr, "pg_baseline: EXECUTE %s: %s", name, PQerrorMessage(c));
	return ok ? 0 : -1;
}

/* One transaction of n messages by the two prepared multi-row INSERTs. */
static int tx_values(PGconn *c, int n, long first)
{
	static struct row rows[MAX_PER_TX];
	static const char *v[MAX_PER_TX * MSG_COLS];
	char batch_id[HR_ID_LEN + 1], now_s[24], st_s[8], prio_s[8], att_s[8];
	hr_id_new(batch_id);
	make_rows(rows, n, first);
	snprintf(now_s, sizeof now_s, "%lld", (long long)hr_now_us());
	snprintf(st_s, sizeof st_s, "%d", MSG_QUEUED);
	snprintf(prio_s, sizeof prio_s, "%d", PRIO_BULK);
	snprintf(att_s, sizeof att_s, "%d", BL_MAX_ATTEMPTS);
	for (int i = 0; i < n; i++) {
		const char **p = &v[i * MSG_COLS];
		p[0] = rows[i].id, p[1] = BL_TENANT, p[2] = BL_ACCOUNT, p[3] = BL_CHANNEL;
		p[4] = rows[i].to, p[5] = batch_id, p[6] = BL_CONTENT, p[7] = BL_TEXT;
		p[8] = st_s, p[9] = prio_s, p[10] = att_s, p[11] = now_s, p[12] = now_s;
	}
	if (exec_ok(c, "BEGIN") || exec_prepared(c, "msg", n * MSG_COLS, v))
		goto fail;
	for (int i = 0; i < n; i++) {
		const char **p = &v[i * EV_COLS];
		p[0] = rows[i].id, p[1] = now_s, p[2] = st_s;
	}
	if (exec_prepared(c, "ev", n * EV_COLS, v) || exec_ok(c, "COMMIT"))
		goto fail;
	return 0;
fail:
	PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}

static long count_rows(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;
	PQclear(r);
	return n;
}

/* Runs one method on a fresh database; checks that every row is there. */
static int run_method(const struct ins_args *a, bool copy, long *messages, double *secs)
{
	if (fresh_schema(a->conninfo))
		return -1;
	PGconn *c = connect_db(a->conninfo, BL_DB);
	struct hr_buf b = {0};
	int rc = c ? 0 : -1;
	if (!rc && !copy)
		rc = prepare_values(c, &b, a->per_tx);
	long done = 0;
	int64_t start = hr_mono_us(), until = start + (int64_t)(a->seconds * 1e6);
	while (!rc && (done == 0 || hr_mono_us() < until)) {
		rc = copy ? tx_copy(c, &b, a->per_tx, done) : tx_values(c, a->per_tx, done);
		if (!rc)
			done += a->per_tx;
	}
	*secs = (double)(hr_mono_us() - start) / 1e6;
	*messages = done;
	if (!rc) {
		long m = count_rows(c, "SELECT count(*) FROM message");
		long e = count_rows(c, "SELECT count(*) FROM message_event WHERE type = 'accepted'");
		if (m != done || e != done) {
			fprintf(stderr, "pg_baseline: inserted %ld messages but found %ld messages "
			                "and %ld events\n", done, m, e);
			rc = -1;
		}
	}
	free(b.p);
	PQfinish(c);
	if (drop_db(a->conninfo))
		rc = -1;
	return rc;
}

static int run_insert(int argc, char **argv)
{
	static const struct option opts[] = {{"conninfo", required_argument, NULL, 'c'},
	                                     {"seconds", required_argument, NULL, 's'},
	                                     {"per-tx", required_argument, NULL, 't'},
	                                     {NULL, 0, NULL, 0}};
	struct ins_args a = {.seconds = 5, .per_tx = 1000};
	int o;
	char *end;
	while ((o = getopt_long(argc, argv, "c:s:t:", opts, NULL)) != -1) {
		switch (o) {
		case 'c': a.conninfo = optarg; break;
		case 's':
			a.seconds = strtod(optarg, &end);
			if (*end || a.seconds <= 0 || a.seconds > 3600) {
				fprintf(stderr, "pg_baseline: --seconds must be in (0, 3600]\n");
				return 2;
			}
			break;
		case 't':
			a.per_tx = (int)strtol(optarg, &end, 10);
			/* values: 13 parameters a row, at most 65535 in a statement */
			if (*end || a.per_tx < 1 || a.per_tx > 5000) {
				fprintf(stderr, "pg_baseline: --per-tx must be in 1..5000\n");
				return 2;
			}
			break;
		default: return 2;
		}
	}
	if (!a.conninfo) {
		fprintf(stderr, "pg_baseline: insert needs --conninfo\n");
		return 2;
	}
	hr_log_set_level(HR_LOG_WARN);
	double best = 0;
	const char *best_name = NULL;
	for (int m = 0; m < 2; m++) {
		bool copy = m == 0;
		long n;
		double secs;
		if (run_method(&a, copy, &n, &secs))
			return 1;
		double rate = (double)n / (secs > 0 ? secs : 1e-9);
		printf("pg_baseline method=%s messages=%ld seconds=%.3f messages_per_s=%.0f\n",
		       copy ? "copy" : "values", n, secs, rate);
		fflush(stdout);
		if (rate > best) {
			best = rate;
			best_name = copy ? "copy" : "values";
		}
	}
	printf("pg_baseline best=%s messages_per_s=%.0f\n", best_name, best);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return run_server();
	if (argc >= 2 && !strcmp(argv[1], "insert"))
		return run_insert(argc - 1, argv + 1);
	fprintf(stderr, "usage: pg_baseline server\n"
	                "       pg_baseline insert --conninfo CI [--seconds S] [--per-tx N]\n");
	return 2;
}
