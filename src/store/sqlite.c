/*
 * sqlite.c - the SQLite store backend: connections, migrations, the
 * group-committing writer thread, the reader pool and shared helpers. The
 * operations themselves live in sqlite_conf.c, sqlite_msg.c, sqlite_hook.c
 * and sqlite_supp.c; this file fills `store_sqlite` with them.
 *
 * Writer ("herald-writer" thread, writer.c): every write call becomes a job
 * on its queue; it runs them in groups in one BEGIN IMMEDIATE ... COMMIT
 * with a SAVEPOINT around each job, and reports results only after the
 * COMMIT returned: a reported success is durable (to the level of
 * synchronous=NORMAL or FULL). This file gives it those statements.
 *
 * Readers: a pool of up to rmax connections (query_only), each with its own
 * cached statements. WAL lets them read while the writer writes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite.h"
#include "store/sqlite_int.h"

#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_READERS_MAX 8

/* ---------------------------------------------------------------------------
 * Small helpers shared by the backend's files.
 * ------------------------------------------------------------------------- */

/*
 * What a failed SQLite call says about the disk under the store: "write"
 * when the store cannot write (the disk is full, the file or its filesystem
 * became read-only, a write, sync or truncate failed), "read" for another
 * I/O error, NULL when it is not the disk's doing. Such a failure is the
 * disk's state, not the request's fault, and it passes once space is freed
 * or the file is writable again: SQLite keeps nothing of the failed
 * transaction and the next one tries afresh, on the same connection. So it
 * is HR_EBUSY (503, "retry later", as PostgreSQL's class 53, disk full, is
 * in pg_fail), never a 500 that tells the client nothing.
 */
static const char *sq_disk_trouble(int xrc)
{
	switch (xrc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_READONLY: return "write";
	case SQLITE_CANTOPEN: return "open its files";
	case SQLITE_IOERR:
		switch (xrc) {
		case SQLITE_IOERR_READ:
		case SQLITE_IOERR_SHORT_READ:
		case SQLITE_IOERR_FSTAT:
		case SQLITE_IOERR_ACCESS: return "read";
		default: return "write";
		}
	default: return NULL;
	}
}

int sq_fail(sqlite3 *db, int rc, struct hr_err *err, const char *field)
{
	int code;
	int xrc = db ? sqlite3_extended_errcode(db) : rc;
	if ((xrc & 0xff) != (rc & 0xff))
		xrc = rc; /* the handle's code is not this call's */
	const char *disk = sq_disk_trouble(xrc);
	if (disk)
		return hr_fail(err, HR_EBUSY, field ? field : "store",
		               "the store cannot %s: %s; retry later", disk,
		               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT: code = HR_ECONFLICT; break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: code = HR_EBUSY; break;
	case SQLITE_NOMEM: code = HR_ENOMEM; break;
	case SQLITE_TOOBIG: code = HR_ELIMIT; break;
	default: code = HR_EIO; break;
	}
	return hr_fail(err, code, field ? field : "store", "sqlite: %s",
	               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int sq_bind_opt(sqlite3_stmt *st, int idx, const char *s)
{
	if (!s || !*s)
		return sqlite3_bind_null(st, idx);
	return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

void sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	hr_utf8_copy(dst, t ? t : "", size);
}

char *sq_utf8_dup(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1; /* the copy is never longer: one '?' per bad byte */
	char *p = malloc(n);
	if (!p) {
		*oom = true;
		return NULL;
	}
	hr_utf8_copy(p, s, n);
	return p;
}

char *sq_col_dup(sqlite3_stmt *st, int col, bool *oom)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	if (!t)
		return NULL;
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *p = malloc(n + 1);
	if (!p) {
		*oom = true;
		return NULL;
	}
	memcpy(p, t, n + 1);
	return p;
}

int sq_row_message(sqlite3_stmt *st, int c, struct message *m)
{
	bool oom = false;
	memset(m, 0, sizeof *m);
	sq_col_copy(st, c + 0, m->id, sizeof m->id);
	sq_col_copy(st, c + 1, m->tenant_id, sizeof m->tenant_id);
	sq_col_copy(st, c + 2, m->account_id, sizeof m->account_id);
	sq_col_copy(st, c + 3, m->channel, sizeof m->channel);
	sq_col_copy(st, c + 4, m->recipient, sizeof m->recipient);
	sq_col_copy(st, c + 5, m->batch_id, sizeof m->batch_id);
	m->content = sq_col_dup(st, c + 6, &oom);
	m->body = sq_col_dup(st, c + 7, &oom);
	m->status = (enum msg_status)sqlite3_column_int(st, c + 8);
	m->priority = sqlite3_column_int(st, c + 9);
	m->attempts = sqlite3_column_int(st, c + 10);
	m->max_attempts = sqlite3_column_int(st, c + 11);
	m->created_at = sqlite3_column_int64(st, c + 12);
	m->updated_at = sqlite3_column_int64(st, c + 13);
	m->due_at = sqlite3_column_int64(st, c + 14);
	m->lease_until = sqlite3_column_int64(st, c + 15);
	sq_col_copy(st, c + 16, m->provider_id, sizeof m->provider_id);
	sq_col_copy(st, c + 17, m->error_code, sizeof m->error_code);
	sq_col_copy(st, c + 18, m->error_text, sizeof m->error_text);
	m->segments = sqlite3_column_int(st, c + 19);
	m->policy = (enum delivery_policy)sqlite3_column_int(st, c + 20);
	m->expires_at = sqlite3_column_int64(st, c + 21);
	m->route = sq_col_dup(st, c + 22, &oom);
	m->route_step = sqlite3_column_int(st, c + 23);
	m->route_steps = sqlite3_column_int(st, c + 24);
	sq_col_copy(st, c + 25, m->route_root, sizeof m->route_root);
	m->fallback_after = sqlite3_column_int64(st, c + 26);
	if (oom) {
		message_clear(m);
		return HR_ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Statements.
 * ------------------------------------------------------------------------- */

static sqlite3_stmt *prepare_cached(sqlite3 *db, sqlite3_stmt **slot, const char *sql)
{
	if (!*slot) {
		if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) !=
		    SQLITE_OK) {
			hr_log(HR_LOG_ERROR, "store", "prepare failed: %s: %s", sqlite3_errmsg(db),
			       sql);
			*slot = NULL;
			return NULL;
		}
	} else {
		sqlite3_reset(*slot);
	}
	return *slot;
}

sqlite3_stmt *sq_wstmt(struct sq_store *s, enum sq_wslot slot, const char *sql)
{
	return prepare_cached(s->wdb, &s->ws[slot], sql);
}

sqlite3_stmt *sq_rstmt(struct sq_reader *r, enum sq_rslot slot, const char *sql)
{
	return prepare_cached(r->db, &r->st[slot], sql);
}

int sq_step_done(struct sq_store *s, sqlite3_stmt *st, struct hr_err *err, const char *field)
{
	int rc = sqlite3_step(st);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		int code = sq_fail(s->wdb, rc, err, field);
		sqlite3_reset(st);
		return code;
	}
	sqlite3_reset(st);
	return 0;
}

/* Resets every statement still holding a cursor, so no read transaction or
 * pending write outlives the call that started it. */
static void reset_busy(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	while ((st = sqlite3_next_stmt(db, st)))
		if (sqlite3_stmt_busy(st))
			sqlite3_reset(st);
}

static void finalize_all(sqlite3 *db)
{
	sqlite3_stmt *st;
	while ((st = sqlite3_next_stmt(db, NULL)))
		sqlite3_finalize(st);
}

int sq_event_insert(struct sq_store *s, const char *message_id, int64_t at,
                    int64_t provider_at, const char *type, const char *source, int status,
                    bool applied, const char *detail, int64_t inbox_id, struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_EVENT_INSERT,
		"INSERT INTO message_event(message_id, at, provider_at, type, source, status,"
		" applied, detail, inbox_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "message_event");
	sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, at);
	sqlite3_bind_int64(st, 3, provider_at);
	sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, source, -1, SQLITE_STATIC);
	if (status < 0)
		sqlite3_bind_null(st, 6);
	else
		sqlite3_bind_int(st, 6, status);
	sqlite3_bind_int(st, 7, applied ? 1 : 0);
	if (detail)
		sqlite3_bind_text(st, 8, detail, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 8);
	if (inbox_id)
		sqlite3_bind_int64(st, 9, inbox_id);
	else
		sqlite3_bind_null(st, 9);
	return sq_step_done(s, st, err, "message_event");
}

/* ---------------------------------------------------------------------------
 * Connections and migrations.
 * ------------------------------------------------------------------------- */

static int exec_sql(sqlite3 *db, const char *sql, struct hr_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		int code = sq_fail(db, rc, err, "store");
		if (msg && err)
			snprintf(err->msg, sizeof err->msg, "sqlite: %s", msg);
		sqlite3_free(msg);
		return code;
	}
	return 0;
}

static int open_conn(const char *path, bool create, sqlite3 **out, struct hr_err *err)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		int code = hr_fail(err, HR_EIO, "dsn", "cannot open %s: %s", path,
		                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return code;
	}
	sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(db, 1);
	*out = db;
	return 0;
}

/* Reads one integer from a single-row query (PRAGMA or SELECT). */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*out = 0;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * Applies each migration newer than the recorded version in its own
 * transaction together with its schema_migrations row. BEGIN IMMEDIATE and
 * the re-check inside make concurrent `herald migrate` runs safe: the second
 * one finds the version present and skips it.
 */
static int migrate_conn(sqlite3 *db, int *applied, struct hr_err *err)
{
	int rc = exec_sql(db,
		"CREATE TABLE IF NOT EXISTS schema_migrations("
		" version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)", err);
	if (rc)
		return rc;
	int done = 0;
	for (size_t i = 0; i < sq_migration_count; i++) {
		const struct sq_migration *m = &sq_migrations[i];
		if ((rc = exec_sql(db, "BEGIN IMMEDIATE", err)))
			return rc;
		char q[96];
		snprintf(q, sizeof q, "SELECT count(*) FROM schema_migrations WHERE version=%d",
		         m->version);
		int64_t have = 0;
		int src = query_int(db, q, &have);
		if (src != SQLITE_OK) {
			rc = sq_fail(db, src, err, "schema_migrations");
			goto rollback;
		}
		if (have) {
			exec_sql(db, "ROLLBACK", NULL);
			continue;
		}
		if ((rc = exec_sql(db, m->sql, err))) {
			if (err)
				snprintf(err->field, sizeof err->field, "migration %d", m->version);
			goto rollback;
		}
		snprintf(q, sizeof q,
		         "INSERT INTO schema_migrations(version, applied_at) VALUES(%d, %lld)",
		         m->version, (long long)hr_now_us());
		if ((rc = exec_sql(db, q, err)) || (rc = exec_sql(db, "COMMIT", err)))
			goto rollback;
		done++;
		hr_log(HR_LOG_INFO, "store", "applied migration %d", m->version);
	}
	if (applied)
		*applied = done;
	return 0;
rollback:
	if (!sqlite3_get_autocommit(db))
		exec_sql(db, "ROLLBACK", NULL);
	if (applied)
		*applied = done;
	return rc;
}

static int reader_open(struct sq_store *s, struct sq_reader **out)
{
	struct sq_reader *r = calloc(1, sizeof *r);
	if (!r)
		return HR_ENOMEM;
	int rc = open_conn(s->path, false, &r->db, NULL);
	if (rc == 0)
		rc = exec_sql(r->db, "PRAGMA query_only=1; PRAGMA cache_size=-8192;", NULL);
	if (rc) {
		sqlite3_close(r->db);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static void reader_close(struct sq_reader *r)
{
	finalize_all(r->db);
	sqlite3_close(r->db);
	free(r);
}

int sq_reader_get(struct sq_store *s, struct sq_reader **out)
{
	pthread_mutex_lock(&s->rlock);
	while (!s->rfree && s->rcount >= s->rmax)
		pthread_cond_wait(&s->rcond, &s->rlock);
	if (s->rfree) {
		*out = s->rfree;
		s->rfree = s->rfree->next;
		pthread_mutex_unlock(&s->rlock);
		return 0;
	}
	s->rcount++;
	pthread_mutex_unlock(&s->rlock);
	int rc = reader_open(s, out);
	if (rc) {
		pthread_mutex_lock(&s->rlock);
		s->rcount--;
		pthread_cond_signal(&s->rcond);
		pthread_mutex_unlock(&s->rlock);
	}
	return rc;
}

void sq_reader_put(struct sq_store *s, struct sq_reader *r)
{
	reset_busy(r->db);
	pthread_mutex_lock(&s->rlock);
	r->next = s->rfree;
	s->rfree = r;
	pthread_cond_signal(&s->rcond);
	pthread_mutex_unlock(&s->rlock);
}

/* ---------------------------------------------------------------------------
 * The writer.
 * ------------------------------------------------------------------------- */

int sq_wexec(struct sq_store *s, enum sq_wslot slot, const char *sql)
{
	sqlite3_stmt *st = sq_wstmt(s, slot, sql);
	if (!st)
		return SQLITE_ERROR;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * The writer's transaction (struct wr_ops for writer.c): BEGIN IMMEDIATE,
 * a SAVEPOINT per job, COMMIT. If SQLite itself abandoned the transaction
 * (I/O error, disk full: autocommit is back on), every job of the group
 * fails: none of them is durable.
 */
/* The status deltas of a transaction that ends (sq_status_flush). */
static void status_reset(struct sq_store *s)
{
	memset(s->sd_group, 0, sizeof s->sd_group);
	memset(s->sd_job, 0, sizeof s->sd_job);
	daily_clear(&s->dd_group);
	daily_clear(&s->dd_job);
}

static void w_rollback(void *be)
{
	status_reset(be);
	sq_wexec(be, W_ROLLBACK, "ROLLBACK");
}

/* HR_EIO naming the step that failed with SQLite's message (HR_EBUSY when
 * the disk is the reason: sq_disk_trouble, reported to the log once per
 * 10 s); a transaction still open is rolled back. */
static int w_fail(struct sq_store *s, const char *step, struct hr_err *e)
{
	const char *disk = sq_disk_trouble(sqlite3_extended_errcode(s->wdb));
	int rc = disk ? hr_fail(e, HR_EBUSY, "store", "the store cannot %s: %s (%s); retry later",
	                        disk, sqlite3_errmsg(s->wdb), step)
	              : hr_fail(e, HR_EIO, "store", "%s: %s", step, sqlite3_errmsg(s->wdb));
	if (disk) {
		int64_t now = hr_now_us();
		s->disk_failures++;
		if (now - s->disk_logged_us >= 10000000) {
			hr_log(HR_LOG_ERROR, "store",
			       "%s: %" PRIu64 " write transactions failed (last: %s); requests "
			       "are answered 503 until it can write again",
			       s->path, s->disk_failures, e ? e->msg : disk);
			s->disk_logged_us = now;
			s->disk_failures = 0;
		}
	}
	if (!sqlite3_get_autocommit(s->wdb))
		w_rollback(s);
	status_reset(s);
	return rc;
}

static int w_begin(void *be, struct hr_err *e)
{
	status_reset(be);
	if (sq_wexec(be, W_BEGIN, "BEGIN IMMEDIATE") != SQLITE_OK)
		return w_fail(be, "begin", e);
	return 0;
}

static int w_savepoint(void *be)
{
	return sq_wexec(be, W_SAVEPOINT, "SAVEPOINT job") != SQLITE_OK ? HR_EIO : 0;
}

/* A job undone takes its status deltas with it; one kept adds them to
 * the group's (sq_status_flush writes them at the commit). */
static int w_rollback_to(void *be)
{
	struct sq_store *s = be;
	memset(s->sd_job, 0, sizeof s->sd_job);
	daily_clear(&s->dd_job);
	return sq_wexec(be, W_ROLLBACK_TO, "ROLLBACK TO job") != SQLITE_OK ? HR_EIO : 0;
}

/* A job of a group without savepoints succeeded: its deltas join the
 * group's, as at a release. */
static int w_kept(void *be)
{
	struct sq_store *s = be;
	for (int i = 0; i < MSG__COUNT; i++)
		s->sd_group[i] += s->sd_job[i];
	memset(s->sd_job, 0, sizeof s->sd_job);
	daily_merge(&s->dd_group, &s->dd_job);
	daily_clear(&s->dd_job);
	return 0;
}

static int w_release(void *be)
{
	w_kept(be);
	return sq_wexec(be, W_RELEASE, "RELEASE job") != SQLITE_OK ? HR_EIO : 0;
}

/* No statement of a job keeps its cursor past the job; a transaction SQLite
 * abandoned during it is lost. */
static int w_check(void *be, struct wr_job *j)
{
	(void)j;
	struct sq_store *s = be;
	reset_busy(s->wdb);
	return sqlite3_get_autocommit(s->wdb) ? HR_EIO : 0;
}

static int w_abort(void *be, struct hr_err *e)
{
	return w_fail(be, "transaction aborted", e);
}

static int w_commit(void *be, struct hr_err *e)
{
	struct sq_store *s = be;
	struct hr_err fe = {0};
	if (sq_status_flush(s, &fe) != 0)
		return w_fail(be, "status counts", e);
	if (sq_daily_flush(s, &fe) != 0)
		return w_fail(be, "daily counts", e);
	status_reset(s);
	if (sq_wexec(be, W_COMMIT, "COMMIT") != SQLITE_OK)
		return w_fail(be, "commit", e);
	if (s->disk_logged_us) {
		hr_log(HR_LOG_INFO, "store", "%s: writing again", s->path);
		s->disk_logged_us = 0;
		s->disk_failures = 0;
	}
	return 0;
}

static int w_solo(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	status_reset(s); /* a solo job (migrations) writes the counts itself */
	int rc = j->run(s, j);
	status_reset(s);
	reset_busy(s->wdb);
	return rc;
}

static const struct wr_ops sq_wr_ops = {
    .begin = w_begin,
    .savepoint = w_savepoint,
    .rollback_to = w_rollback_to,
    .release = w_release,
    .check = w_check,
    .abort = w_abort,
    .rollback = w_rollback,
    .commit = w_commit,
    .solo = w_solo,
    .kept = w_kept,
};

/* ---------------------------------------------------------------------------
 * open / close / migrate.
 * ------------------------------------------------------------------------- */

static pthread_once_t sq_init_once = PTHREAD_ONCE_INIT;

/* Without memory statistics SQLite's allocator takes no global mutex, which
 * matters with many reader threads. Fails harmlessly if SQLite is already
 * initialised by someone else. */
static void sq_global_init(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* WAL pages after which a commit asks the checkpointer to run (SQLite's own
 * automatic checkpoint uses the same threshold, but inside the commit). */
#define SQ_CKPT_PAGES 1000
#define SQ_CKPT_IDLE_MS 1000

/* Called by SQLite on the writer thread after each commit. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	(void)db, (void)name;
	struct sq_store *s = arg;
	if (pages >= SQ_CKPT_PAGES) {
		pthread_mutex_lock(&s->clock);
		if (!s->ckpt_wanted) {
			s->ckpt_wanted = true;
			pthread_cond_signal(&s->ccond);
		}
		pthread_mutex_unlock(&s->clock);
	}
	return SQLITE_OK;
}

/*
 * Thread "herald-ckpt": PASSIVE checkpoints on its own connection, when the
 * writer reports a big WAL and at least once a second. PASSIVE never blocks
 * the writer or readers; a checkpoint that cannot finish (a reader holds an
 * old snapshot) simply copies what it can and the next one continues.
 */
static void *ckpt_main(void *arg)
{
	struct sq_store *s = arg;
	pthread_mutex_lock(&s->clock);
	while (!s->ckpt_stop) {
		if (!s->ckpt_wanted) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += SQ_CKPT_IDLE_MS / 1000;
			pthread_cond_timedwait(&s->ccond, &s->clock, &ts);
			if (s->ckpt_stop)
				break;
		}
		s->ckpt_wanted = false;
		pthread_mutex_unlock(&s->clock);
		int log = 0, done = 0;
		int rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
		                                   &done);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
			hr_log(HR_LOG_WARN, "store", "checkpoint failed: %s", sqlite3_errmsg(s->cdb));
		pthread_mutex_lock(&s->clock);
	}
	pthread_mutex_unlock(&s->clock);
	return NULL;
}

static void ckpt_stop(struct sq_store *s)
{
	if (!s->ckpt_running)
		return;
	pthread_mutex_lock(&s->clock);
	s->ckpt_stop = true;
	pthread_cond_signal(&s->ccond);
	pthread_mutex_unlock(&s->clock);
	pthread_join(s->ckpt, NULL);
	s->ckpt_running = false;
}

static void sq_free(struct sq_store *s)
{
	ckpt_stop(s);
	if (s->cdb)
		sqlite3_close(s->cdb);
	if (s->wdb) {
		finalize_all(s->wdb);
		sqlite3_close(s->wdb);
	}
	while (s->rfree) {
		struct sq_reader *r = s->rfree;
		s->rfree = r->next;
		reader_close(r);
	}
	wr_destroy(&s->wr);
	pthread_mutex_destroy(&s->rlock);
	pthread_cond_destroy(&s->rcond);
	pthread_mutex_destroy(&s->clock);
	pthread_cond_destroy(&s->ccond);
	free(s->json.buf);
	free(s->path);
	daily_free(&s->dd_group);
	daily_free(&s->dd_job);
	free(s);
}

static int sq_open(const char *dsn, const struct store_opts *opts, struct store **out,
                   struct hr_err *err)
{
	if (!dsn || !*dsn)
		return hr_fail(err, HR_EINVAL, "dsn", "sqlite needs a file path");
	pthread_once(&sq_init_once, sq_global_init);
	struct sq_store *s = calloc(1, sizeof *s);
	if (!s || !(s->path = strdup(dsn))) {
		free(s);
		return hr_fail(err, HR_ENOMEM, "store", "out of memory");
	}
	s->base.ops = &store_sqlite;
	if (opts)
		s->opts = *opts;
	s->rmax = SQ_READERS_MAX;
	wr_init(&s->wr, &sq_wr_ops, s, s->opts.group_max, s->opts.queue_max);
	pthread_mutex_init(&s->rlock, NULL);
	pthread_cond_init(&s->rcond, NULL);
	pthread_mutex_init(&s->clock, NULL);
	pthread_cond_init(&s->ccond, NULL);

	int rc = open_conn(dsn, true, &s->wdb, err);
	if (rc)
		goto fail;
	int64_t ok = 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->wdb, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			ok = sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
		sqlite3_finalize(st);
	}
	if (!ok) {
		rc = hr_fail(err, HR_EIO, "dsn", "cannot enable WAL on %s: %s", dsn,
		             sqlite3_errmsg(s->wdb));
		goto fail;
	}
	/* No temp_store=MEMORY here. With it, SQLite keeps the writer's
	 * sub-journal (what SAVEPOINT job and each statement's own savepoint
	 * need to roll back) in memory in 1 KiB chunks, and releasing each
	 * statement's savepoint truncates it by walking that chunk list from
	 * its start: with a job's thousands of pages journaled, 14% of the
	 * writer's time (bench/stages.sh, accept -> sent: the writer's CPU per
	 * message 69-87 -> 57 µs without it). Without it the sub-journal is
	 * kept in memory up to 64 KiB (SQLite's default) and spills to a
	 * temporary file past that, which is never walked: SQLite puts it in
	 * SQLITE_TMPDIR, TMPDIR or /var/tmp, so one of them must be writable
	 * (README, Configuration). A larger spill is not possible: SQLite's
	 * unix VFS writes at most 128 KiB at a time, so spilling a larger
	 * chunk fails with SQLITE_FULL (seen with 4 MiB). */
	rc = exec_sql(s->wdb,
	              s->opts.sync_full ? "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
	                                  "PRAGMA cache_size=-65536;"
	                                  "PRAGMA journal_size_limit=67108864;"
	                                : "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
	                                  "PRAGMA cache_size=-65536;"
	                                  "PRAGMA journal_size_limit=67108864;",
	              err);
	if (rc || (rc = migrate_conn(s->wdb, NULL, err)))
		goto fail;
	/* Checkpoints move off the writer (the hook replaces SQLite's automatic
	 * checkpoint, which would run inside a commit and stall every caller
	 * grouped into it behind its fsync). */
	if ((rc = open_conn(dsn, false, &s->cdb, err)))
		goto fail;
	/* A connection that has read nothing yet has not seen that the file is
	 * in WAL mode, and sqlite3_wal_checkpoint_v2() on it does nothing at all
	 * (SQLITE_OK, log -1): one read first, or the WAL would only grow (it
	 * did: test_faults_disk's 8 MiB tmpfs filled with WAL while herald.db
	 * stayed one page). */
	if ((rc = exec_sql(s->cdb, "PRAGMA schema_version;", err)))
		goto fail;
	sqlite3_wal_hook(s->wdb, wal_hook, s);
	rc = pthread_create(&s->ckpt, NULL, ckpt_main, s);
	if (rc) {
		rc = hr_fail(err, HR_EIO, "store", "cannot start checkpointer: %s", strerror(rc));
		goto fail;
	}
	pthread_setname_np(s->ckpt, "herald-ckpt");
	s->ckpt_running = true;
	if ((rc = wr_start(&s->wr, "herald-writer", err)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	sq_free(s);
	return rc;
}

static void sq_close(struct store *st)
{
	if (!st)
		return;
	lc_batch_forget_store(st);
	store_hold_forget(st);
	struct sq_store *s = (struct sq_store *)st;
	wr_stop(&s->wr);
	pthread_mutex_lock(&s->rlock);
	while (s->rcount > 0) {
		while (!s->rfree)
			pthread_cond_wait(&s->rcond, &s->rlock);
		struct sq_reader *r = s->rfree;
		s->rfree = r->next;
		s->rcount--;
		reader_close(r);
	}
	pthread_mutex_unlock(&s->rlock);
	sq_free(s);
}

struct job_migrate {
	struct wr_job j;
	int applied;
};

static int run_migrate(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_migrate *m = (struct job_migrate *)j;
	return migrate_conn(s->wdb, &m->applied, &j->err);
}

/* Runs on the writer as a solo job: migrations need their own transactions. */
static int sq_migrate(struct store *st, int *applied, struct hr_err *err)
{
	struct sq_store *s = (struct sq_store *)st;
	struct job_migrate m = {.j = {.run = run_migrate, .solo = true}};
	int rc = wr_run_blocking(&s->wr, &m.j, err);
	if (applied)
		*applied = m.applied;
	return rc;
}

void store_sqlite_stats(struct store *st, uint64_t *commits, uint64_t *jobs)
{
	wr_stats(&((struct sq_store *)st)->wr, commits, jobs);
}

uint64_t store_sqlite_replays(struct store *st)
{
	return wr_replays(&((struct sq_store *)st)->wr);
}

int store_sqlite_queued(struct store *st)
{
	return wr_queued(&((struct sq_store *)st)->wr);
}

const struct store_ops store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .migrate = sq_migrate,
    .tenant_upsert = sq_tenant_upsert,
    .api_key_put = sq_api_key_put,
    .api_key_lookup = sq_api_key_lookup,
    .api_key_prune = sq_api_key_prune,
    .tenant_create = sq_tenant_create,
    .tenant_get = sq_tenant_get,
    .tenant_list = sq_tenant_list,
    .tenant_set_disabled = sq_tenant_set_disabled,
    .tenant_set_limits = sq_tenant_set_limits,
    .tenant_usage = sq_tenant_usage,
    .unit_create = sq_unit_create,
    .unit_get = sq_unit_get,
    .unit_list = sq_unit_list,
    .unit_set_disabled = sq_unit_set_disabled,
    .key_seed = sq_key_seed,
    .key_create = sq_key_create,
    .key_lookup = sq_key_lookup,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .key_touch = sq_key_touch,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .prune = sq_prune,
    .account_upsert = sq_account_upsert,
    .account_list = sq_account_list,
    .template_upsert = sq_template_upsert,
    .template_get = sq_template_get,
    .template_put = sq_template_put,
    .template_delete = sq_template_delete,
    .template_list = sq_template_list,
    .account_put = sq_account_put,
    .message_insert = sq_message_insert,
    .message_get = sq_message_get,
    .message_get_by_provider_id = sq_message_get_by_provider_id,
    .message_events = sq_message_events,
    .message_list = sq_message_list,
    .message_counts = sq_message_counts,
    .message_gauges = sq_message_gauges,
    .write_stats = store_sqlite_stats,
    .claim = sq_claim,
    .claim_async = sq_claim_async,
    .record_results = sq_record_results,
    .requeue_expired = sq_requeue_expired,
    .next_due = sq_next_due,
    .suppression_put = sq_suppression_put,
    .suppression_delete = sq_suppression_delete,
    .suppression_list = sq_suppression_list,
    .suppression_change = sq_suppression_change,
    .recipient_supp = sq_recipient_supp,
    .recipient_inbound = sq_recipient_inbound,
    .account_queue_depth = sq_account_queue_depth,
    .account_pause_set = sq_account_pause_set,
    .account_pauses = sq_account_pauses,
    .daily_counts = sq_daily_counts,
    .idem_get = sq_idem_get,
    .inbox_append = sq_inbox_append,
    .inbox_fetch = sq_inbox_fetch,
    .inbox_claim = sq_inbox_claim,
    .apply_inbox = sq_apply_inbox,
    .inbox_pending = sq_inbox_pending,
    .batch_create = sq_batch_create,
    .batch_get = sq_batch_get,
    .batch_list = sq_batch_list,
    .batch_items_put = sq_batch_items_put,
    .batch_items = sq_batch_items,
    .batch_set_status = sq_batch_set_status,
    .batch_set_status_audit = sq_batch_set_status_audit,
    .batch_enqueue = sq_batch_enqueue,
    .batch_cancel_step = sq_batch_cancel_step,
    .batch_recount = sq_batch_recount,
    .batch_export_rows = sq_batch_export_rows,
    .batch_breakdown = sq_batch_breakdown,
    .callback_claim = sq_callback_claim,
    .callback_done = sq_callback_done,
    .callback_list = sq_callback_list,
    .callback_get = sq_callback_get,
    .callback_replay = sq_callback_replay,
    .callback_counts = sq_callback_counts,
    .callback_prune = sq_callback_prune,
    .plugin_event_read = sq_plugin_event_read,
    .plugin_event_done = sq_plugin_event_done,
    .plugin_event_count = sq_plugin_event_count,
    .batch_discard = sq_batch_discard,
    .batch_items_by_status = sq_batch_items_by_status,
    .message_prune = sq_message_prune,
    .reconcile_expire = sq_reconcile_expire,
    .reconcile_fallback_due = sq_reconcile_fallback_due,
    .stale_list = sq_stale_list,
    .stale_settle = sq_stale_settle,
    .inbox_park = sq_inbox_park,
    .inbox_parked = sq_inbox_parked,
    .message_route = sq_message_route,
};
