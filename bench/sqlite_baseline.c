/*
 * sqlite_baseline.c - the raw SQLite limit for Herald's batch accept on this
 * machine: the same rows the batch endpoint's durable write produces (one
 * message row plus one "accepted" message_event row per message, ULID keys;
 * the tenant's daily counter once per request of --per-request messages; the
 * kept status count once per transaction), in the same schema with the same
 * indexes, inserted with plain prepared statements, WAL, synchronous NORMAL
 * and/or FULL. Herald's batch figure is reported as a ratio to this one.
 *
 * Fair to the baseline: --per-tx is set by bench/run.sh to the mean group
 * Herald's writer committed in the same run (herald_messages_accepted_total
 * over herald_store_commits_total), and WAL checkpoints run off the inserting
 * thread exactly as the store runs them (src/store/sqlite.c: a WAL hook
 * replaces SQLite's automatic checkpoint and wakes a thread that runs PASSIVE
 * checkpoints on its own connection, when the WAL passes 1,000 pages and at
 * least once a second). Nothing Herald-only is added: no savepoints, no
 * JSON, no HTTP.
 *
 * The schema is not copied here: each run opens a Herald store on a fresh
 * file (its migrations create the tables and indexes), closes it, and then
 * writes to that file with the same pragmas the store's writer connection
 * uses. So the baseline follows the schema when a migration changes it.
 *
 * usage: sqlite_baseline --dir DIR [--seconds S] [--max-messages N]
 *                        [--per-tx N] [--per-request N]
 *                        [--synchronous normal|full|both]
 * Prints one line per mode:
 *   sqlite_baseline synchronous=normal messages=N rows=R seconds=S
 *   rows_per_s=X messages_per_s=Y
 * and exits non-zero if anything fails (including a row count that does not
 * match what was inserted).
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "herald.h"
#include "store/store.h"

/* What the benchmark's batch request carries per message (bench/batch.lua). */
#define BL_TENANT "bench"
#define BL_ACCOUNT "bench-wa"
#define BL_CHANNEL "whatsapp"
#define BL_TEXT "Your Herald verification code is 482913. It expires in 10 minutes."
#define BL_MAX_ATTEMPTS 8
/* The store's checkpoint thresholds (src/store/sqlite.c SQ_CKPT_*). */
#define BL_CKPT_PAGES 1000
#define BL_CKPT_IDLE_MS 1000

struct bl_args {
	const char *dir;
	double seconds;
	long max_messages;
	int per_tx;
	int per_request;
	bool run_normal;
	bool run_full;
};

struct bl_result {
	long messages;
	long checkpoints;
	double seconds;
};

struct bl_conn {
	sqlite3 *db;
	sqlite3_stmt *begin, *commit, *msg, *event, *daily, *status;
	long in_request; /* messages since the last daily-counter update */
	/* The checkpointer: its connection, thread and wake-up. */
	sqlite3 *cdb;
	pthread_t ckpt;
	bool ckpt_running, ckpt_wanted, ckpt_stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long checkpoints;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sqlite_baseline --dir DIR [--seconds S] [--max-messages N]\n"
	           "                       [--per-tx N] [--synchronous normal|full|both]\n\n"
	           "  --dir           where the temporary database files go (removed after)\n"
	           "  --seconds       insert for about this long per mode (default 5)\n"
	           "  --max-messages  stop earlier after this many messages (default 5000000)\n"
	           "  --per-tx        messages per transaction (default 1000)\n"
	           "  --per-request   messages per API request: one daily-counter update\n"
	           "                  each (default 1000)\n"
	           "  --synchronous   which modes to run (default both)\n");
}

static int parse_args(int argc, char **argv, struct bl_args *a)
{
	static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
	                                     {"seconds", required_argument, NULL, 's'},
	                                     {"max-messages", required_argument, NULL, 'm'},
	                                     {"per-tx", required_argument, NULL, 't'},
	                                     {"per-request", required_argument, NULL, 'r'},
	                                     {"synchronous", required_argument, NULL, 'y'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	*a = (struct bl_args){.seconds = 5,
	                      .max_messages = 5000000,
	                      .per_tx = 1000,
	                      .per_request = 1000,
	                      .run_normal = true,
	                      .run_full = true};
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "d:s:m:t:r:y:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': a->dir = optarg; break;
		case 's':
			a->seconds = strtod(optarg, &end);
			if (*end || a->seconds <= 0 || a->seconds > 3600) {
				fprintf(stderr, "sqlite_baseline: --seconds must be in (0, 3600]\n");
				return 2;
			}
			break;
		case 'm':
			a->max_messages = strtol(optarg, &end, 10);
			if (*end || a->max_messages < 1) {
				fprintf(stderr, "sqlite_baseline: --max-messages must be >= 1\n");
				return 2;
			}
			break;
		case 't':
			a->per_tx = (int)strtol(optarg, &end, 10);
			if (*end || a->per_tx < 1 || a->per_tx > 1000000) {
				fprintf(stderr, "sqlite_baseline: --per-tx must be in 1..1000000\n");
				return 2;
			}
			break;
		case 'r':
			a->per_request = (int)strtol(optarg, &end, 10);
			if (*end || a->per_request < 1 || a->per_request > 1000000) {
				fprintf(stderr,
				        "sqlite_baseline: --per-request must be in 1..1000000\n");
				return 2;
			}
			break;
		case 'y':
			a->run_normal = !strcmp(optarg, "normal") || !strcmp(optarg, "both");
			a->run_full = !strcmp(optarg, "full") || !strcmp(optarg, "both");
			if (!a->run_normal && !a->run_full) {
				fprintf(stderr, "sqlite_baseline: --synchronous must be normal, full "
				                "or both, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 1;
		default: usage(stderr); return 2;
		}
	}
	if (!a->dir) {
		fprintf(stderr, "sqlite_baseline: --dir DIR is required\n");
		return 2;
	}
	return 0;
}

/* Removes a database and its WAL side files; missing files are fine. */
static void remove_db(const char *path)
{
	char side[4200];
	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
}

/* Lets Herald's own migrations build the schema, so the baseline writes into
 * exactly the tables and indexes the store uses. */
static int create_schema(const char *path, bool sync_full)
{
	struct store_opts so = {.sync_full = sync_full};
	struct store *st = NULL;
	struct hr_err err = {0};
	if (store_sqlite.open(path, &so, &st, &err) != 0) {
		fprintf(stderr, "sqlite_baseline: cannot create the Herald schema in %s: %s\n",
		        path, err.msg);
		return -1;
	}
	store_sqlite.close(st);
	return 0;
}

static int exec1(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "sqlite_baseline: %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Called by SQLite on the inserting thread after each commit, as the store's
 * wal_hook: only a wake-up, the checkpoint itself runs elsewhere. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	(void)db, (void)name;
	struct bl_conn *c = arg;
	if (pages >= BL_CKPT_PAGES) {
		pthread_mutex_lock(&c->lock);
		if (!c->ckpt_wanted) {
			c->ckpt_wanted = true;
			pthread_cond_signal(&c->cond);
		}
		pthread_mutex_unlock(&c->lock);
	}
	return SQLITE_OK;
}

/* The store's checkpointer (ckpt_main in src/store/sqlite.c): PASSIVE
 * checkpoints on its own connection when asked and at least once a second. */
static void *ckpt_main(void *arg)
{
	struct bl_conn *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->ckpt_stop) {
		if (!c->ckpt_wanted) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += BL_CKPT_IDLE_MS / 1000;
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
			if (c->ckpt_stop)
				break;
		}
		c->ckpt_wanted = false;
		pthread_mutex_unlock(&c->lock);
		int log = 0, done = 0;
		int rc =
		    sqlite3_wal_checkpoint_v2(c->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
			fprintf(stderr, "sqlite_baseline: checkpoint: %s\n",
			        sqlite3_errmsg(c->cdb));
		pthread_mutex_lock(&c->lock);
		c->checkpoints++;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void conn_close(struct bl_conn *c)
{
	if (c->ckpt_running) {
		pthread_mutex_lock(&c->lock);
		c->ckpt_stop = true;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->ckpt, NULL);
	}
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	sqlite3_close(c->cdb);
	sqlite3_finalize(c->daily);
	sqlite3_finalize(c->status);
	sqlite3_finalize(c->begin);
	sqlite3_finalize(c->commit);
	sqlite3_finalize(c->msg);
	sqlite3_finalize(c->event);
	sqlite3_close(c->db);
	memset(c, 0, sizeof *c);
}

/* Opens the file the way the store's writer connection does (same pragmas)
 * and prepares the two inserts once, as the store does on its hot path. */
static int conn_open(const char *path, bool sync_full, struct bl_conn *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite_baseline: cannot open %s: %s\n", path,
		        c->db ? sqlite3_errmsg(c->db) : "out of memory");
		conn_close(c);
		return -1;
	}
	if (exec1(c->db, "PRAGMA journal_mode=WAL") ||
	    exec1(c->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") ||
	    exec1(c->db, "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536;"
	                 "PRAGMA temp_store=MEMORY;")) {
		conn_close(c);
		return -1;
	}
	static const char msg_sql[] =
		"INSERT INTO message(id, tenant_id, account_id, channel, recipient, batch_id,"
		" content, body, status, priority, attempts, max_attempts, created_at, updated_at,"
		" due_at, lease_until) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11,"
		" ?12, ?12, ?12, 0)";
	static const char event_sql[] =
		"INSERT INTO message_event(message_id, at, provider_at, type, source, status,"
		" applied, detail) VALUES(?1, ?2, 0, 'accepted', 'api', ?3, 1, NULL)";
	static const char daily_sql[] =
	    "INSERT INTO tenant_daily(tenant_id, day, count) VALUES(?1, ?2, ?3)"
	    " ON CONFLICT(tenant_id, day) DO UPDATE SET count = count + excluded.count"
	    " RETURNING count";
	static const char status_sql[] =
	    "INSERT INTO message_status_count(stripe, status, n) VALUES(0, ?1, ?2)"
	    " ON CONFLICT(stripe, status) DO UPDATE SET n = n + excluded.n";
	unsigned pf = SQLITE_PREPARE_PERSISTENT;
	if (sqlite3_prepare_v3(c->db, "BEGIN IMMEDIATE", -1, pf, &c->begin, NULL) ||
	    sqlite3_prepare_v3(c->db, "COMMIT", -1, pf, &c->commit, NULL) ||
	    sqlite3_prepare_v3(c->db, msg_sql, -1, pf, &c->msg, NULL) ||
	    sqlite3_prepare_v3(c->db, event_sql, -1, pf, &c->event, NULL) ||
	    sqlite3_prepare_v3(c->db, daily_sql, -1, pf, &c->daily, NULL) ||
	    sqlite3_prepare_v3(c->db, status_sql, -1, pf, &c->status, NULL)) {
		fprintf(stderr, "sqlite_baseline: prepare: %s\n", sqlite3_errmsg(c->db));
		conn_close(c);
		return -1;
	}
	if (sqlite3_open_v2(path, &c->cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "sqlite_baseline: cannot open %s for checkpoints: %s\n", path,
		        c->cdb ? sqlite3_errmsg(c->cdb) : "out of memory");
		conn_close(c);
		return -1;
	}
	sqlite3_wal_hook(c->db, wal_hook, c);
	int rc = pthread_create(&c->ckpt, NULL, ckpt_main, c);
	if (rc) {
		fprintf(stderr, "sqlite_baseline: cannot start the checkpointer: %s\n",
		        strerror(rc));
		conn_close(c);
		return -1;
	}
	c->ckpt_running = true;
	return 0;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	while (rc == SQLITE_ROW) /* an upsert's RETURNING */
		rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "sqlite_baseline: %s: %s\n", what, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* One transaction of n messages, built the way the API builds a batch: each
 * message gets a fresh ULID, a distinct recipient, the canonical content JSON
 * and its rendered body, status QUEUED, bulk priority, due now. */
static int insert_tx(struct bl_conn *c, int n, long first, int per_request)
{
	char batch_id[HR_ID_LEN + 1], id[HR_ID_LEN + 1], to[HR_ADDR_MAX];
	static const char content[] = "{\"type\":\"text\",\"text\":\"" BL_TEXT "\"}";
	hr_id_new(batch_id);
	if (step_done(c->db, c->begin, "BEGIN"))
		return -1;
	int64_t now = hr_now_us();
	for (int i = 0; i < n; i++) {
		if (c->in_request == 0) {
			/* A request's messages count against the tenant's day. */
			long k = per_request;
			sqlite3_bind_text(c->daily, 1, BL_TENANT, -1, SQLITE_STATIC);
			sqlite3_bind_int64(c->daily, 2, store_day(now));
			sqlite3_bind_int64(c->daily, 3, k);
			if (step_done(c->db, c->daily, "tenant_daily"))
				goto fail;
		}
		if (++c->in_request == per_request)
			c->in_request = 0;
		hr_id_new(id);
		snprintf(to, sizeof to, "4479%08ld", (first + i) % 100000000);
		sqlite3_stmt *m = c->msg;
		sqlite3_bind_text(m, 1, id, HR_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(m, 2, BL_TENANT, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 3, BL_ACCOUNT, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 4, BL_CHANNEL, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 5, to, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 6, batch_id, HR_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(m, 7, content, (int)sizeof content - 1, SQLITE_STATIC);
		sqlite3_bind_text(m, 8, BL_TEXT, -1, SQLITE_STATIC);
		sqlite3_bind_int(m, 9, MSG_QUEUED);
		sqlite3_bind_int(m, 10, PRIO_BULK);
		sqlite3_bind_int(m, 11, BL_MAX_ATTEMPTS);
		sqlite3_bind_int64(m, 12, now);
		if (step_done(c->db, m, "INSERT message"))
			goto fail;
		sqlite3_stmt *e = c->event;
		sqlite3_bind_text(e, 1, id, HR_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(e, 2, now);
		sqlite3_bind_int(e, 3, MSG_QUEUED);
		if (step_done(c->db, e, "INSERT message_event"))
			goto fail;
	}
	sqlite3_bind_int(c->status, 1, MSG_QUEUED);
	sqlite3_bind_int64(c->status, 2, n);
	if (step_done(c->db, c->status, "message_status_count"))
		goto fail;
	if (step_done(c->db, c->commit, "COMMIT"))
		goto fail;
	return 0;
fail:
	sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static long count_rows(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* Runs one mode on a fresh file and checks that every row is really there. */
static int run_mode(const struct bl_args *a, bool sync_full, struct bl_result *res)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/sqlite_baseline_%s.db", a->dir,
	         sync_full ? "full" : "normal");
	remove_db(path);
	if (create_schema(path, sync_full))
		return -1;
	struct bl_conn c;
	if (conn_open(path, sync_full, &c)) {
		remove_db(path);
		return -1;
	}
	int rc = 0;
	long done = 0;
	int64_t start = hr_mono_us(), until = start + (int64_t)(a->seconds * 1e6);
	while (done < a->max_messages && (done == 0 || hr_mono_us() < until)) {
		int n = a->per_tx;
		if (a->max_messages - done < n)
			n = (int)(a->max_messages - done);
		if ((rc = insert_tx(&c, n, done, a->per_request)) != 0)
			break;
		done += n;
	}
	res->seconds = (double)(hr_mono_us() - start) / 1e6;
	res->messages = done;
	pthread_mutex_lock(&c.lock);
	res->checkpoints = c.checkpoints;
	pthread_mutex_unlock(&c.lock);
	if (rc == 0) {
		long m = count_rows(c.db, "SELECT count(*) FROM message");
		long e = count_rows(c.db, "SELECT count(*) FROM message_event"
		                          " WHERE type = 'accepted'");
		char qsql[96];
		snprintf(qsql, sizeof qsql,
		         "SELECT n FROM message_status_count WHERE stripe = 0 AND status = %d",
		         (int)MSG_QUEUED);
		long q = count_rows(c.db, qsql);
		if (m != done || e != done || q != done) {
			fprintf(stderr,
			        "sqlite_baseline: inserted %ld messages but found %ld "
			        "messages, %ld events and a queued count of %ld\n",
			        done, m, e, q);
			rc = -1;
		}
	}
	conn_close(&c);
	remove_db(path);
	return rc;
}

int main(int argc, char **argv)
{
	struct bl_args a;
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc == 1 ? 0 : rc;
	hr_log_set_level(HR_LOG_WARN);
	for (int mode = 0; mode < 2; mode++) {
		bool full = mode == 1;
		if ((full && !a.run_full) || (!full && !a.run_normal))
			continue;
		struct bl_result r = {0};
		if (run_mode(&a, full, &r))
			return 1;
		double secs = r.seconds > 0 ? r.seconds : 1e-9;
		printf("sqlite_baseline synchronous=%s per_tx=%d checkpoints=%ld messages=%ld "
		       "rows=%ld seconds=%.3f rows_per_s=%.0f messages_per_s=%.0f\n",
		       full ? "full" : "normal", a.per_tx, r.checkpoints, r.messages,
		       2 * r.messages, r.seconds, 2.0 * (double)r.messages / secs,
		       (double)r.messages / secs);
		fflush(stdout);
	}
	return 0;
}
