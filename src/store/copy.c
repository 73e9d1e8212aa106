/*
 * copy.c - SQLite -> PostgreSQL copy of a whole installation, verified by
 * counts and checksums (copy.h says what it guarantees).
 *
 * The shape: the source opened read-only on its own connection, one read
 * transaction for the whole copy (WAL: a snapshot, whatever a server still
 * writes); the target's schema made by store_postgres.open (migrations and
 * partitions), then a connection of our own and one transaction: lock the
 * tables, refuse (or with --force empty) a non-empty target, make the
 * monthly partitions the source's messages need, COPY FROM STDIN each
 * table while computing the source side's checksum from the very values
 * sent, set the sequences past the copied ids, read every table back and
 * checksum it, ANALYZE, and only then COMMIT.
 *
 * The table list below is the schema both backends share (sqlite_schema.c,
 * postgres_schema.c). A migration on either side changes the schema
 * version, which the copier checks on both databases before it starts: a
 * copier that has not learnt the new shape refuses instead of leaving a
 * column behind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/copy.h"
#include "store/store.h"

enum cp_type { CT_TEXT, CT_INT, CT_BOOL, CT_BYTES };

struct cp_col {
	const char *name;
	enum cp_type type;
};

/* The most columns a copied table has (batch: 44). */
#define CP_COLS_MAX 48

struct cp_table {
	const char *name;
	const char *serial; /* a bigserial column whose sequence follows the ids, or NULL */
	struct cp_col cols[CP_COLS_MAX];
};

/* Every table that carries state; schema_migrations is each side's own. */
static const struct cp_table cp_tables[] = {
    {"tenant",
     NULL,
     {{"id", CT_TEXT},
      {"name", CT_TEXT},
      {"created_at", CT_INT},
      {"callback_url", CT_TEXT},
      {"disabled", CT_BOOL},
      {"rate_milli", CT_INT},
      {"rate_burst", CT_INT},
      {"daily_cap", CT_INT},
      {"campaign_cap", CT_INT}}},
    {"tenant_daily", NULL, {{"tenant_id", CT_TEXT}, {"day", CT_INT}, {"count", CT_INT}}},
    {"business_unit",
     NULL,
     {{"tenant_id", CT_TEXT},
      {"id", CT_TEXT},
      {"name", CT_TEXT},
      {"disabled", CT_BOOL},
      {"created_at", CT_INT}}},
    {"api_key",
     NULL,
     {{"key_hash", CT_TEXT},
      {"tenant_id", CT_TEXT},
      {"label", CT_TEXT},
      {"created_at", CT_INT},
      {"prefix", CT_TEXT},
      {"unit_id", CT_TEXT},
      {"scopes", CT_TEXT},
      {"created_by", CT_TEXT},
      {"expires_at", CT_INT},
      {"revoked_at", CT_INT},
      {"last_used_at", CT_INT},
      {"api_created", CT_BOOL}}},
    {"channel_account",
     NULL,
     {{"id", CT_TEXT},
      {"tenant_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"config", CT_TEXT},
      {"created_at", CT_INT},
      {"updated_at", CT_INT},
      {"api_created", CT_BOOL},
      {"unit_id", CT_TEXT}}},
    {"template",
     NULL,
     {{"tenant_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"name", CT_TEXT},
      {"language", CT_TEXT},
      {"body", CT_TEXT},
      {"param_count", CT_INT},
      {"config", CT_TEXT},
      {"unit_id", CT_TEXT}}},
    {"batch",
     NULL,
     {{"id", CT_TEXT},
      {"tenant_id", CT_TEXT},
      {"unit", CT_TEXT},
      {"name", CT_TEXT},
      {"channel", CT_TEXT},
      {"account_id", CT_TEXT},
      {"template_name", CT_TEXT},
      {"language", CT_TEXT},
      {"receipts", CT_BOOL},
      {"spec", CT_TEXT},
      {"status", CT_INT},
      {"error", CT_TEXT},
      {"retry_of", CT_TEXT},
      {"ingested", CT_BOOL},
      {"schedule_at", CT_INT},
      {"created_at", CT_INT},
      {"validated_at", CT_INT},
      {"started_at", CT_INT},
      {"completed_at", CT_INT},
      {"cancelled_at", CT_INT},
      {"failed_at", CT_INT},
      {"total", CT_INT},
      {"valid", CT_INT},
      {"invalid", CT_INT},
      {"duplicates", CT_INT},
      {"replied", CT_INT},
      {"n_queued", CT_INT},
      {"n_sending", CT_INT},
      {"n_sent", CT_INT},
      {"n_delivered", CT_INT},
      {"n_read", CT_INT},
      {"n_failed", CT_INT},
      {"n_undelivered", CT_INT},
      {"n_cancelled", CT_INT},
      {"n_expired", CT_INT},
      {"n_suppressed", CT_INT},
      {"n_unknown", CT_INT},
      {"paused_at", CT_INT},
      {"resumed_at", CT_INT},
      {"paused_by", CT_TEXT},
      {"resumed_by", CT_TEXT},
      {"cancelled_by", CT_TEXT},
      {"pause_reason", CT_TEXT},
      {"cancel_reason", CT_TEXT}}},
    {"batch_item",
     NULL,
     {{"batch_id", CT_TEXT},
      {"row_no", CT_INT},
      {"recipient", CT_TEXT},
      {"params", CT_TEXT},
      {"valid", CT_BOOL},
      {"duplicate", CT_BOOL},
      {"error_column", CT_TEXT},
      {"error", CT_TEXT},
      {"message_id", CT_TEXT}}},
    {"message", NULL, {{"id", CT_TEXT},           {"tenant_id", CT_TEXT},
                       {"account_id", CT_TEXT},   {"channel", CT_TEXT},
                       {"recipient", CT_TEXT},    {"batch_id", CT_TEXT},
                       {"content", CT_TEXT},      {"body", CT_TEXT},
                       {"status", CT_INT},        {"priority", CT_INT},
                       {"attempts", CT_INT},      {"max_attempts", CT_INT},
                       {"created_at", CT_INT},    {"updated_at", CT_INT},
                       {"due_at", CT_INT},        {"lease_until", CT_INT},
                       {"provider_id", CT_TEXT},  {"error_code", CT_TEXT},
                       {"error_text", CT_TEXT},   {"segments", CT_INT},
                       {"callback_url", CT_TEXT}, {"delivery_policy", CT_INT},
                       {"expires_at", CT_INT},    {"sent_at", CT_INT},
                       {"stale", CT_INT},         {"route", CT_TEXT},
                       {"route_step", CT_INT},    {"route_steps", CT_INT},
                       {"route_root", CT_TEXT},   {"fallback_after", CT_INT},
                       {"fallback_at", CT_INT},   {"unit_id", CT_TEXT},
                       {"idem_key", CT_TEXT}}},
    {"message_fallback",
     NULL,
     {{"root_id", CT_TEXT},
      {"step", CT_INT},
      {"message_id", CT_TEXT},
      {"from_id", CT_TEXT},
      {"reason", CT_TEXT},
      {"created_at", CT_INT}}},
    {"message_event",
     "id",
     {{"id", CT_INT},
      {"message_id", CT_TEXT},
      {"at", CT_INT},
      {"provider_at", CT_INT},
      {"type", CT_TEXT},
      {"source", CT_TEXT},
      {"status", CT_INT},
      {"applied", CT_BOOL},
      {"detail", CT_TEXT},
      {"inbox_id", CT_INT}}},
    {"webhook_inbox",
     "id",
     {{"id", CT_INT},
      {"account_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"dedupe_key", CT_TEXT},
      {"received_at", CT_INT},
      {"body", CT_BYTES},
      {"state", CT_INT},
      {"attempts", CT_INT},
      {"next_try_at", CT_INT},
      {"error", CT_TEXT}}},
    {"idempotency_key",
     NULL,
     {{"tenant_id", CT_TEXT},
      {"key", CT_TEXT},
      {"request_hash", CT_TEXT},
      {"http_status", CT_INT},
      {"response", CT_TEXT},
      {"created_at", CT_INT}}},
    {"inbound",
     "id",
     {{"id", CT_INT},
      {"tenant_id", CT_TEXT},
      {"account_id", CT_TEXT},
      {"message_id", CT_TEXT},
      {"provider_msg_id", CT_TEXT},
      {"sender", CT_TEXT},
      {"kind", CT_TEXT},
      {"text", CT_TEXT},
      {"payload", CT_TEXT},
      {"provider_at", CT_INT},
      {"received_at", CT_INT}}},
    {"suppression",
     NULL,
     {{"tenant_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"recipient", CT_TEXT},
      {"reason", CT_TEXT},
      {"created_at", CT_INT}}},
    {"suppression_event",
     "id",
     {{"id", CT_INT},
      {"tenant_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"recipient", CT_TEXT},
      {"action", CT_TEXT},
      {"reason", CT_TEXT},
      {"message_id", CT_TEXT},
      {"actor", CT_TEXT},
      {"at", CT_INT}}},
    {"account_pause",
     NULL,
     {{"account_id", CT_TEXT},
      {"tenant_id", CT_TEXT},
      {"reason", CT_TEXT},
      {"actor", CT_TEXT},
      {"at", CT_INT}}},
    {"daily_count",
     NULL,
     {{"tenant_id", CT_TEXT},
      {"channel", CT_TEXT},
      {"day", CT_INT},
      {"kind", CT_INT},
      {"code", CT_TEXT},
      {"stripe", CT_INT},
      {"n", CT_INT}}},
    {"recipient_alias",
     NULL,
     {{"account_id", CT_TEXT}, {"old", CT_TEXT}, {"new", CT_TEXT}, {"created_at", CT_INT}}},
    {"callback_outbox",
     "id",
     {{"id", CT_INT},          {"tenant_id", CT_TEXT},   {"message_id", CT_TEXT},
      {"batch_id", CT_TEXT},   {"url", CT_TEXT},         {"event", CT_TEXT},
      {"status", CT_INT},      {"prev_status", CT_INT},  {"provider_id", CT_TEXT},
      {"error_code", CT_TEXT}, {"error_text", CT_TEXT},  {"detail", CT_TEXT},
      {"occurred_at", CT_INT}, {"state", CT_INT},        {"attempts", CT_INT},
      {"next_try_at", CT_INT}, {"lease_until", CT_INT},  {"last_http", CT_INT},
      {"last_error", CT_TEXT}, {"delivered_at", CT_INT}, {"updated_at", CT_INT}}},
    {"plugin_event",
     "id",
     {{"id", CT_INT},
      {"tenant_id", CT_TEXT},
      {"message_id", CT_TEXT},
      {"kind", CT_INT},
      {"prev_status", CT_INT},
      {"status", CT_INT},
      {"text", CT_TEXT},
      {"payload", CT_TEXT},
      {"created_at", CT_INT}}},
    {"admin_audit",
     "id",
     {{"id", CT_INT},
      {"tenant_id", CT_TEXT},
      {"actor", CT_TEXT},
      {"at", CT_INT},
      {"action", CT_TEXT},
      {"object", CT_TEXT},
      {"before", CT_TEXT},
      {"after", CT_TEXT}}},
};

#define CP_NTABLES (sizeof cp_tables / sizeof cp_tables[0])
_Static_assert(CP_NTABLES <= STORE_COPY_TABLES_MAX, "store_copy_report too small");

static size_t cp_ncols(const struct cp_table *t)
{
	size_t n = 0;
	while (n < sizeof t->cols / sizeof t->cols[0] && t->cols[n].name)
		n++;
	return n;
}

/* "a, b, c" of the table's columns into buf. */
static void cp_col_list(const struct cp_table *t, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < cp_ncols(t) && len < size; i++)
		len +=
		    (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", t->cols[i].name);
}

static double cp_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the checksum ---- */

static int cp_digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

void store_copy_sum_row(struct store_copy_sum *s, const struct store_copy_val *v, size_t n)
{
	if (s->oom)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		void *d = realloc(s->d, cap * sizeof *s->d);
		if (!d) {
			s->oom = true;
			return;
		}
		s->d = d;
		s->cap = cap;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int dlen = 0;
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
	for (size_t i = 0; ok && i < n; i++) {
		char head[24];
		int hl = v[i].p ? snprintf(head, sizeof head, "%zu:", v[i].len)
		                : snprintf(head, sizeof head, "N;");
		ok = EVP_DigestUpdate(ctx, head, (size_t)hl) == 1;
		if (ok && v[i].p)
			ok = EVP_DigestUpdate(ctx, v[i].p, v[i].len) == 1 &&
			     EVP_DigestUpdate(ctx, ";", 1) == 1;
	}
	ok = ok && EVP_DigestFinal_ex(ctx, s->d[s->n], &dlen) == 1 && dlen == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		s->oom = true;
	else
		s->n++;
}

void store_copy_sum_final(struct store_copy_sum *s, char hex[65])
{
	if (s->oom) {
		snprintf(hex, 65, "%s", "error");
	} else {
		if (s->n)
			qsort(s->d, s->n, sizeof *s->d, cp_digest_cmp);
		unsigned char out[32];
		unsigned int olen = 0;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		          (s->n == 0 || EVP_DigestUpdate(ctx, s->d, s->n * sizeof *s->d) == 1) &&
		          EVP_DigestFinal_ex(ctx, out, &olen) == 1 && olen == 32;
		EVP_MD_CTX_free(ctx);
		if (ok)
			for (int i = 0; i < 32; i++)
				snprintf(hex + 2 * i, 3, "%02x", out[i]);
		else
			snprintf(hex, 65, "%s", "error");
	}
	free(s->d);
	memset(s, 0, sizeof *s);
}

/* ---- COPY data and canonical values, built in struct hr_buf ---- */

static void cp_putc(struct hr_buf *b, char c)
{
	hr_buf_put(b, &c, 1);
}

static const char cp_hexdig[] = "0123456789abcdef";

static void cp_put_hex(struct hr_buf *b, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n && !b->oom; i++) {
		char two[2] = {cp_hexdig[p[i] >> 4], cp_hexdig[p[i] & 15]};
		hr_buf_put(b, two, 2);
	}
}

/* Text as COPY's text format wants it: backslash, tab, newline, CR escaped. */
static void cp_put_copy_text(struct hr_buf *b, const char *p, size_t n)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		const char *esc = p[i] == '\\'   ? "\\\\"
		                  : p[i] == '\t' ? "\\t"
		                  : p[i] == '\n' ? "\\n"
		                  : p[i] == '\r' ? "\\r"
		                                 : NULL;
		if (!esc)
			continue;
		hr_buf_put(b, p + run, i - run);
		hr_buf_put(b, esc, 2);
		run = i + 1;
	}
	hr_buf_put(b, p + run, n - run);
}

/* ---- errors ---- */

/* The server's message without its trailing newline. */
static int cp_pg_fail(PGconn *c, const PGresult *r, struct hr_err *err, int code, const char *field,
                      const char *what)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;
	if (!m || !*m)
		m = c ? PQerrorMessage(c) : "no connection";
	size_t n = strlen(m);
	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	return hr_fail(err, code, field, "%s: %.*s", what, (int)n, m);
}

static int cp_sq_fail(sqlite3 *db, struct hr_err *err, const char *field, const char *what)
{
	return hr_fail(err, HR_EIO, field, "%s: %s", what, sqlite3_errmsg(db));
}

/* Runs sql (no rows wanted). */
static int cp_exec(PGconn *c, const char *sql, struct hr_err *err, const char *field)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = cp_pg_fail(c, r, err, HR_EIO, field, field);
	PQclear(r);
	return rc;
}

/* One bigint from a one-row query. */
static int cp_query_i64(PGconn *c, const char *sql, int64_t *out, struct hr_err *err,
                        const char *field)
{
	PGresult *r = PQexec(c, sql);
	int rc = 0;
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) < 1)
		rc = cp_pg_fail(c, r, err, HR_EIO, field, field);
	else
		*out = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return rc;
}

/* ---- the source ---- */

static int cp_open_source(const char *path, sqlite3 **out, struct hr_err *err)
{
	sqlite3 *db = NULL;
	/* URI off: a path is a path. Read-only: the copy never writes the source. */
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		int code = hr_fail(err, HR_EINVAL, "--from", "cannot open %s: %s", path,
		                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return code;
	}
	sqlite3_busy_timeout(db, 5000);
	/* One read transaction from here to the end: every table comes from
	 * the same snapshot. The first read starts it. */
	sqlite3_stmt *st = NULL;
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_migrations", -1, &st,
		                        NULL);
	int64_t version = -1;
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		version = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		int code =
		    hr_fail(err, HR_EINVAL, "--from", "%s is not a herald SQLite database (%s)",
		            path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return code;
	}
	if (version != STORE_COPY_SQLITE_VERSION) {
		int code =
		    hr_fail(err, HR_EINVAL, "--from",
		            "%s has SQLite schema version %lld; this copier knows version "
		            "%d%s",
		            path, (long long)version, STORE_COPY_SQLITE_VERSION,
		            version < STORE_COPY_SQLITE_VERSION
		                ? " (run `herald migrate --config FILE --db PATH` on it first)"
		                : " (use the herald that wrote it)");
		sqlite3_close(db);
		return code;
	}
	*out = db;
	return 0;
}

/* ---- the target ---- */

static int cp_connect(const struct store_copy_opts *o, PGconn **out, struct hr_err *err)
{
	const char *kw[6], *val[6];
	int k = 0;
	kw[k] = "connect_timeout", val[k++] = "10";
	kw[k] = "application_name", val[k++] = "herald-migrate";
	kw[k] = "dbname", val[k++] = o->pg_dsn;
	if (o->pg_password)
		kw[k] = "password", val[k++] = o->pg_password;
	kw[k] = NULL, val[k] = NULL;
	PGconn *c = PQconnectdbParams(kw, val, 1);
	if (!c)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		int rc = cp_pg_fail(c, NULL, err, HR_EIO, "--to", "cannot connect to the target");
		PQfinish(c);
		return rc;
	}
	int64_t version = 0;
	int rc = cp_exec(c,
	                 "SET TIME ZONE 'UTC'; SET client_min_messages = warning;"
	                 " SET bytea_output = 'hex'; SET extra_float_digits = 3",
	                 err, "--to");
	if (rc == 0)
		rc = cp_query_i64(c, "SELECT max(version) FROM schema_migrations", &version, err,
		                  "--to");
	if (rc == 0 && version != STORE_COPY_PG_VERSION)
		rc = hr_fail(err, HR_EINVAL, "--to",
		             "the target has PostgreSQL schema version %lld; this copier knows "
		             "version %d (use the herald that migrated it)",
		             (long long)version, STORE_COPY_PG_VERSION);
	if (rc) {
		PQfinish(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* Locks every table against writes for the transaction, counts what each
 * holds, and refuses a non-empty target or (force) empties it. */
static int cp_prepare_target(PGconn *c, const struct store_copy_opts *o,
                             struct store_copy_report *rep, struct hr_err *err)
{
	struct hr_buf q = {0};
	hr_buf_put(&q, "LOCK TABLE ", 11);
	for (size_t i = 0; i < CP_NTABLES; i++) {
		if (i)
			hr_buf_put(&q, ", ", 2);
		hr_buf_put(&q, cp_tables[i].name, strlen(cp_tables[i].name));
	}
	/* --force truncates, which takes ACCESS EXCLUSIVE anyway. */
	const char *mode = o->force ? " IN ACCESS EXCLUSIVE MODE" : " IN EXCLUSIVE MODE";
	hr_buf_put(&q, mode, strlen(mode));
	if (q.oom) {
		free(q.p);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	int rc = cp_exec(c, q.p, err, "--to");
	free(q.p);
	if (rc)
		return rc;

	char msg[sizeof err->msg] = "";
	size_t mlen = 0;
	int64_t total = 0;
	for (size_t i = 0; i < CP_NTABLES; i++) {
		char sql[128];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", cp_tables[i].name);
		int64_t n = 0;
		if ((rc = cp_query_i64(c, sql, &n, err, cp_tables[i].name)))
			return rc;
		rep->t[i].cleared = n;
		total += n;
		if (n && mlen < sizeof msg)
			mlen += (size_t)snprintf(msg + mlen, sizeof msg - mlen, "%s%s %lld",
			                         mlen ? ", " : "", cp_tables[i].name, (long long)n);
	}
	if (total == 0)
		return 0;
	if (!o->force) {
		for (size_t i = 0; i < CP_NTABLES; i++)
			rep->t[i].cleared = 0;
		return hr_fail(err, HR_ECONFLICT, "--to",
		               "the target is not empty (rows: %s); refusing to merge into it "
		               "(--force empties these tables first)",
		               msg);
	}
	q = (struct hr_buf){0};
	hr_buf_put(&q, "TRUNCATE ", 9);
	for (size_t i = 0; i < CP_NTABLES; i++) {
		if (i)
			hr_buf_put(&q, ", ", 2);
		hr_buf_put(&q, cp_tables[i].name, strlen(cp_tables[i].name));
	}
	if (q.oom) {
		free(q.p);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	rc = cp_exec(c, q.p, err, "--to");
	free(q.p);
	return rc;
}

/* Milliseconds in the first 10 characters of a ULID (Crockford base32). */
static bool cp_ulid_ms(const char *id, int64_t *ms)
{
	static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	int64_t v = 0;
	for (int i = 0; i < 10; i++) {
		const char *p = id[i] ? strchr(digits, id[i]) : NULL;
		if (!p)
			return false;
		v = v * 32 + (p - digits);
	}
	*ms = v;
	return true;
}

/*
 * The target makes monthly partitions of message and message_event from a
 * month back to three ahead (postgres_schema.c); older messages would land
 * in the DEFAULT partition, which retention cannot drop by month. So make
 * the months back to the source's oldest message first (at most ten
 * years; ids that are not ULIDs change nothing).
 */
static int cp_partitions(sqlite3 *db, PGconn *c, struct store_copy_report *rep, struct hr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT min(id) FROM message", -1, &st, NULL);
	char oldest[32] = "";
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		if (t)
			snprintf(oldest, sizeof oldest, "%s", (const char *)t);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return cp_sq_fail(db, err, "message", "reading the source");
	int64_t ms = 0;
	if (!cp_ulid_ms(oldest, &ms))
		return 0;
	time_t then = (time_t)(ms / 1000), now = time(NULL);
	struct tm a, b;
	if (!gmtime_r(&then, &a) || !gmtime_r(&now, &b))
		return 0;
	int back = (b.tm_year - a.tm_year) * 12 + (b.tm_mon - a.tm_mon);
	if (back <= 1)
		return 0;
	if (back > 120)
		back = 120;
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT herald_ensure_partitions(%d, 3)", back);
	int64_t made = 0;
	rc = cp_query_i64(c, sql, &made, err, "partitions");
	rep->partitions_made = (int)made;
	return rc;
}

/* Sends what buf holds as COPY data. */
static int cp_flush(PGconn *c, struct hr_buf *b, const char *table, struct hr_err *err)
{
	if (b->oom)
		return hr_fail(err, HR_ENOMEM, table, "out of memory");
	if (b->len && PQputCopyData(c, b->p, (int)b->len) != 1)
		return cp_pg_fail(c, NULL, err, HR_EIO, table, "copying");
	b->len = 0;
	return 0;
}

#define CP_FLUSH_BYTES (512 * 1024)

/*
 * Copies one table: SELECT from the source, COPY FROM STDIN into the
 * target, and the source's checksum from the canonical form of each value
 * sent (the same value, not a second read).
 */
static int cp_copy_table(sqlite3 *db, PGconn *c, const struct cp_table *t,
                         struct store_copy_table *out, struct hr_err *err)
{
	char cols[1024], sql[1200];
	cp_col_list(t, cols, sizeof cols);
	size_t nc = cp_ncols(t);
	snprintf(sql, sizeof sql, "SELECT %s FROM %s", cols, t->name);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cp_sq_fail(db, err, t->name, "reading the source");
	snprintf(sql, sizeof sql, "COPY %s(%s) FROM STDIN", t->name, cols);
	PGresult *r = PQexec(c, sql);
	if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
		int rc = cp_pg_fail(c, r, err, HR_EIO, t->name, "copying");
		PQclear(r);
		sqlite3_finalize(st);
		return rc;
	}
	PQclear(r);

	struct hr_buf data = {0}, canon = {0};
	struct store_copy_sum sum = {0};
	struct store_copy_val v[CP_COLS_MAX];
	size_t off[CP_COLS_MAX], len[CP_COLS_MAX];
	bool null[CP_COLS_MAX];
	int rc = 0, src;
	int64_t rows = 0;
	while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
		canon.len = 0;
		for (size_t i = 0; i < nc; i++) {
			if (i)
				cp_putc(&data, '\t');
			off[i] = canon.len;
			null[i] = sqlite3_column_type(st, (int)i) == SQLITE_NULL;
			if (null[i]) {
				hr_buf_put(&data, "\\N", 2);
				len[i] = 0;
				continue;
			}
			char num[24];
			int64_t x;
			switch (t->cols[i].type) {
			case CT_INT:
				x = sqlite3_column_int64(st, (int)i);
				snprintf(num, sizeof num, "%lld", (long long)x);
				hr_buf_put(&data, num, strlen(num));
				hr_buf_put(&canon, num, strlen(num));
				break;
			case CT_BOOL:
				x = sqlite3_column_int64(st, (int)i);
				cp_putc(&data, x ? 't' : 'f');
				cp_putc(&canon, x ? '1' : '0');
				break;
			case CT_BYTES: {
				const unsigned char *p = sqlite3_column_blob(st, (int)i);
				size_t n = (size_t)sqlite3_column_bytes(st, (int)i);
				hr_buf_put(&data, "\\\\x", 3);
				size_t at = data.len;
				cp_put_hex(&data, p, n);
				if (!data.oom)
					hr_buf_put(&canon, data.p + at, data.len - at);
				break;
			}
			case CT_TEXT: {
				const char *p = (const char *)sqlite3_column_text(st, (int)i);
				size_t n = (size_t)sqlite3_column_bytes(st, (int)i);
				if (!p) {
					canon.oom = true;
					break;
				}
				cp_put_copy_text(&data, p, n);
				hr_buf_put(&canon, p, n);
				break;
			}
			}
			len[i] = canon.len - off[i];
		}
		cp_putc(&data, '\n');
		if (canon.oom || data.oom) {
			rc = hr_fail(err, HR_ENOMEM, t->name, "out of memory");
			break;
		}
		/* Point at the canonical values only now that canon no longer moves. */
		for (size_t i = 0; i < nc; i++) {
			v[i].p = null[i] ? NULL : canon.p ? canon.p + off[i] : "";
			v[i].len = len[i];
		}
		store_copy_sum_row(&sum, v, nc);
		rows++;
		if (data.len >= CP_FLUSH_BYTES)
			rc = cp_flush(c, &data, t->name, err);
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = cp_sq_fail(db, err, t->name, "reading the source");
	if (rc == 0)
		rc = cp_flush(c, &data, t->name, err);
	if (rc == 0 && sum.oom)
		rc = hr_fail(err, HR_ENOMEM, t->name, "out of memory");
	/* End the COPY whatever happened: an error message aborts it. */
	if (PQputCopyEnd(c, rc ? "herald migrate: copy abandoned" : NULL) != 1 && rc == 0)
		rc = cp_pg_fail(c, NULL, err, HR_EIO, t->name, "copying");
	while ((r = PQgetResult(c)) != NULL) {
		if (rc == 0 && PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = cp_pg_fail(c, r, err, HR_EIO, t->name, "copying");
		PQclear(r);
	}
	store_copy_sum_final(&sum, out->source_sum);
	out->rows = rows;
	free(data.p);
	free(canon.p);
	sqlite3_finalize(st);
	return rc;
}

/* Sets the table's sequence so the next id is past every copied one. */
static int cp_sequence(PGconn *c, const struct cp_table *t, struct hr_err *err)
{
	if (!t->serial)
		return 0;
	char sql[256];
	snprintf(sql, sizeof sql,
	         "SELECT setval(pg_get_serial_sequence('%s', '%s'),"
	         " coalesce(max(%s), 0) + 1, false) FROM %s",
	         t->name, t->serial, t->serial, t->name);
	return cp_exec(c, sql, err, t->name);
}

/* Reads the table back from the target (single-row mode: no table is held
 * in memory whole) and checksums it as cp_copy_table did the source. */
static int cp_verify_table(PGconn *c, const struct cp_table *t, struct store_copy_table *out,
                           struct hr_err *err)
{
	char cols[1024], sql[1200];
	cp_col_list(t, cols, sizeof cols);
	size_t nc = cp_ncols(t);
	snprintf(sql, sizeof sql, "SELECT %s FROM %s", cols, t->name);
	if (PQsendQuery(c, sql) != 1 || PQsetSingleRowMode(c) != 1)
		return cp_pg_fail(c, NULL, err, HR_EIO, t->name, "verifying");
	struct store_copy_sum sum = {0};
	struct store_copy_val v[CP_COLS_MAX];
	char nums[CP_COLS_MAX][24];
	int rc = 0;
	int64_t rows = 0;
	PGresult *r;
	while ((r = PQgetResult(c)) != NULL) {
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_SINGLE_TUPLE && rc == 0 && (size_t)PQnfields(r) == nc) {
			for (size_t i = 0; i < nc; i++) {
				int col = (int)i;
				if (PQgetisnull(r, 0, col)) {
					v[i].p = NULL;
					v[i].len = 0;
					continue;
				}
				const char *p = PQgetvalue(r, 0, col);
				size_t n = (size_t)PQgetlength(r, 0, col);
				switch (t->cols[i].type) {
				case CT_INT:
					snprintf(nums[i], sizeof nums[i], "%lld",
					         strtoll(p, NULL, 10));
					v[i].p = nums[i];
					v[i].len = strlen(nums[i]);
					break;
				case CT_BOOL:
					v[i].p = p[0] == 't' ? "1" : "0";
					v[i].len = 1;
					break;
				case CT_BYTES:
					/* hex output: "\x" then lowercase digits */
					if (n < 2 || p[0] != '\\' || p[1] != 'x') {
						rc =
						    hr_fail(err, HR_EIO, t->name,
						            "%s: bytea not in hex output", t->name);
						break;
					}
					v[i].p = p + 2;
					v[i].len = n - 2;
					break;
				case CT_TEXT:
					v[i].p = p;
					v[i].len = n;
					break;
				}
			}
			if (rc == 0) {
				store_copy_sum_row(&sum, v, nc);
				rows++;
			}
		} else if (s == PGRES_SINGLE_TUPLE && rc == 0) {
			rc = hr_fail(err, HR_EINTERNAL, t->name, "%s: unexpected columns", t->name);
		} else if (s != PGRES_TUPLES_OK && s != PGRES_SINGLE_TUPLE && rc == 0) {
			rc = cp_pg_fail(c, r, err, HR_EIO, t->name, "verifying");
		}
		PQclear(r);
	}
	if (rc == 0 && sum.oom)
		rc = hr_fail(err, HR_ENOMEM, t->name, "out of memory");
	store_copy_sum_final(&sum, out->target_sum);
	out->target_rows = rows;
	return rc;
}

int store_copy_sqlite_to_postgres(const struct store_copy_opts *o, struct store_copy_report *rep,
                                  struct hr_err *err)
{
	memset(rep, 0, sizeof *rep);
	for (size_t i = 0; i < CP_NTABLES; i++)
		rep->t[i].name = cp_tables[i].name;
	rep->n = CP_NTABLES;
	if (!o->sqlite_path || !*o->sqlite_path)
		return hr_fail(err, HR_EINVAL, "--from", "--from needs sqlite:PATH");
	if (!o->pg_dsn || !*o->pg_dsn)
		return hr_fail(err, HR_EINVAL, "--to", "--to needs postgres:URL");
	double t0 = cp_now_s();

	sqlite3 *db = NULL;
	int rc = cp_open_source(o->sqlite_path, &db, err);
	if (rc)
		return rc;

	/* The target's schema, made or upgraded exactly as a server would. */
	const struct store_ops *pg = store_backend("postgres");
	struct store *st = NULL;
	struct store_opts so = {.password = o->pg_password};
	if (!pg) {
		rc = hr_fail(err, HR_EINTERNAL, "--to", "no postgres store backend in this build");
	} else if ((rc = pg->open(o->pg_dsn, &so, &st, err)) != 0) {
		if (!err->field[0] || strcmp(err->field, "--to") != 0) {
			char msg[sizeof err->msg];
			snprintf(msg, sizeof msg, "%s", err->msg);
			hr_fail(err, rc, "--to", "cannot open the target: %s", msg);
		}
	} else {
		pg->close(st);
	}
	PGconn *c = NULL;
	if (rc == 0)
		rc = cp_connect(o, &c, err);
	if (rc == 0)
		rc = cp_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ", err, "--to");
	if (rc == 0)
		rc = cp_prepare_target(c, o, rep, err);
	if (rc == 0)
		rc = cp_partitions(db, c, rep, err);
	for (size_t i = 0; rc == 0 && i < CP_NTABLES; i++) {
		double a = cp_now_s();
		rc = cp_copy_table(db, c, &cp_tables[i], &rep->t[i], err);
		if (rc == 0)
			rc = cp_sequence(c, &cp_tables[i], err);
		rep->t[i].copy_s = cp_now_s() - a;
		rep->rows += rep->t[i].rows;
	}
	/* The status counts /metrics reads (message_status_count) are not
	 * copied but made again from the copied messages: the target's own
	 * rows (a --force over an old copy) would otherwise stay, and one scan
	 * of what was just written is certain where merging stripes is not. */
	if (rc == 0)
		rc = cp_exec(c,
		             "DELETE FROM message_status_count;"
		             "INSERT INTO message_status_count(stripe, status, n)"
		             " SELECT 0, status, count(*) FROM message GROUP BY status",
		             err, "--to");
	/* Verification, inside the transaction: a mismatch commits nothing. */
	for (size_t i = 0; rc == 0 && i < CP_NTABLES; i++) {
		struct store_copy_table *t = &rep->t[i];
		double a = cp_now_s();
		rc = cp_verify_table(c, &cp_tables[i], t, err);
		t->verify_s = cp_now_s() - a;
		if (rc == 0 && t->rows != t->target_rows)
			rc = hr_fail(err, HR_EIO, t->name,
			             "verification failed for table %s: %lld rows in the source, "
			             "%lld in the target",
			             t->name, (long long)t->rows, (long long)t->target_rows);
		else if (rc == 0 && strcmp(t->source_sum, t->target_sum) != 0)
			rc = hr_fail(
			    err, HR_EIO, t->name,
			    "verification failed for table %s: checksum %.16s in the source, "
			    "%.16s in the target",
			    t->name, t->source_sum, t->target_sum);
	}
	/* Fresh statistics, so the first queries on the copy plan well. */
	if (rc == 0)
		rc = cp_exec(c, "ANALYZE", err, "--to");
	if (rc == 0)
		rc = cp_exec(c, "COMMIT", err, "--to");
	else if (c && PQstatus(c) == CONNECTION_OK)
		(void)cp_exec(c, "ROLLBACK", NULL, NULL);
	if (c)
		PQfinish(c);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	rep->seconds = cp_now_s() - t0;
	return rc;
}
