/*
 * sqlite_cb.c - the callback outbox on SQLite (store.h: callback_row):
 * the row lifecycle.c adds inside a change's transaction, and the sender's
 * and the API's operations. Storage only: which changes make a row is
 * lc_callback.c's; retry times and dead-lettering are the sender's
 * (webhooks/callbacks.c). The order per message is the claim's NOT EXISTS,
 * the same predicate as postgres_cb.c's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/argcheck.h"
#include "store/sqlite_rows.h"

#define CB_COLS                                                                                    \
	"id, tenant_id, message_id, batch_id, event, status, prev_status, provider_id,"            \
	" error_code, error_text, detail, url, occurred_at, state, attempts, next_try_at,"         \
	" lease_until, delivered_at, updated_at, last_http, last_error"

/* A row of CB_COLS; HR_ENOMEM if a text cannot be copied. */
static int row_cb(sqlite3_stmt *q, struct callback_row *r)
{
	const struct store_cols c = sq_cols(q);
	memset(r, 0, sizeof *r);
	int rc = store_row_callback(&c, r, NULL);
	if (rc)
		callback_row_clear(r);
	return rc;
}

/* Collects the rows a stepped statement returns (at most max) into a heap
 * array; the statement is reset. */
static int collect(sqlite3 *db, sqlite3_stmt *q, size_t max, struct callback_row **out, size_t *n,
                   bool *more, struct hr_err *err)
{
	struct callback_row *v = NULL;
	size_t len = 0, cap = 0;
	int src, rc = 0;
	if (more)
		*more = false;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		if (len == max) {
			if (more)
				*more = true;
			continue; /* RETURNING: the statement must still run to its end */
		}
		if (len == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct callback_row *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				rc = HR_ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		if ((rc = row_cb(q, &v[len])))
			break;
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = sq_fail(db, src, err, "callback_outbox");
	else if (rc)
		hr_fail(err, rc, "callback_outbox", "out of memory");
	sqlite3_reset(q);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			callback_row_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Inside a change's transaction (lifecycle.c through sqlite_tx.c).
 * ------------------------------------------------------------------------- */

int sq_tx_callback_add(struct sq_store *s, const struct lc_callback *c, int64_t now,
                       struct hr_err *err)
{
	/* The URL, tenant, batch, provider id and error are the message's as
	 * this transaction left them; no URL, no row. */
	sqlite3_stmt *st =
	    c->message_id
	        ? sq_wstmt(
	              s, W_CB_ADD_MSG,
	              "INSERT INTO callback_outbox(tenant_id, message_id, batch_id, url, event,"
	              " status, prev_status, provider_id, error_code, error_text, detail,"
	              " occurred_at, next_try_at, updated_at)"
	              " SELECT tenant_id, id, batch_id, callback_url, ?2, ?3, ?4, provider_id,"
	              " error_code, error_text, ?5, ?6, ?6, ?6 FROM message"
	              " WHERE id = ?1 AND callback_url IS NOT NULL")
	        : sq_wstmt(
	              s, W_CB_ADD_TENANT,
	              "INSERT INTO callback_outbox(tenant_id, message_id, batch_id, url, event,"
	              " status, prev_status, provider_id, error_code, error_text, detail,"
	              " occurred_at, next_try_at, updated_at)"
	              " SELECT t.id, NULL, NULL, t.callback_url, ?2, ?3, ?4, NULL, NULL, NULL,"
	              " ?5, ?6, ?6, ?6 FROM channel_account a JOIN tenant t"
	              " ON t.id = a.tenant_id WHERE a.id = ?1 AND t.callback_url IS NOT NULL");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "callback_outbox");
	sqlite3_bind_text(st, 1,
	                  c->message_id   ? c->message_id
	                  : c->account_id ? c->account_id
	                                  : "",
	                  -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->event, -1, SQLITE_STATIC);
	if (c->status >= 0)
		sqlite3_bind_int(st, 3, c->status);
	else
		sqlite3_bind_null(st, 3);
	if (c->prev_status >= 0)
		sqlite3_bind_int(st, 4, c->prev_status);
	else
		sqlite3_bind_null(st, 4);
	sq_bind_opt(st, 5, c->detail);
	sqlite3_bind_int64(st, 6, now);
	return sq_step_done(s, st, err, "callback_outbox");
}

/* ---------------------------------------------------------------------------
 * The sender's writes.
 * ------------------------------------------------------------------------- */

struct job_cb_claim {
	struct wr_job j;
	int64_t now, lease_us;
	int limit;
	const char *skip; /* JSON array of URLs */
	struct callback_row *out;
	size_t n;
};

static int run_cb_claim(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_cb_claim *a = (struct job_cb_claim *)j;
	/* Run again (writer.h, replayable): what the run before read is freed
	 * and read afresh. */
	for (size_t i = 0; i < a->n; i++)
		callback_row_clear(&a->out[i]);
	free(a->out);
	a->out = NULL;
	a->n = 0;
	int64_t now = a->now ? a->now : hr_now_us();
	sqlite3_stmt *st = sq_wstmt(
	    s, W_CB_CLAIM,
	    "UPDATE callback_outbox SET attempts = attempts + 1, lease_until = ?2, updated_at = ?1"
	    " WHERE id IN (SELECT o.id FROM callback_outbox o WHERE o.state = 0"
	    "  AND o.next_try_at <= ?1 AND o.lease_until <= ?1"
	    "  AND (o.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM callback_outbox p"
	    "   WHERE p.state = 0 AND p.message_id = o.message_id AND p.id < o.id))"
	    "  AND o.url NOT IN (SELECT value FROM json_each(?3))"
	    "  ORDER BY o.next_try_at, o.id LIMIT ?4)"
	    " RETURNING " CB_COLS);
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "callback_outbox");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, now > INT64_MAX - a->lease_us ? INT64_MAX : now + a->lease_us);
	sqlite3_bind_text(st, 3, a->skip, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, a->limit);
	return collect(s->wdb, st, (size_t)a->limit, &a->out, &a->n, NULL, &j->err);
}

/* The URLs as a JSON array (heap), or NULL when memory ran out. */
static char *url_array(const char *const *urls, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(urls[i] ? urls[i] : "")) != 0) {
			json_decref(a);
			return NULL;
		}
	char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return s;
}

int sq_callback_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                      const char *const *skip_urls, size_t nskip, struct callback_row **out,
                      size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 0 || lease_us <= 0 || (nskip && !skip_urls))
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	char *skip = url_array(skip_urls, nskip);
	if (!skip)
		return HR_ENOMEM;
	/* Frees what a run before it read: it can run again (replayable). */
	struct job_cb_claim a = {.j = {.run = run_cb_claim, .replayable = true},
	                         .now = now,
	                         .lease_us = lease_us,
	                         .limit = limit,
	                         .skip = skip};
	int rc = wr_run_blocking(&((struct sq_store *)st)->wr, &a.j, NULL);
	free(skip);
	if (rc) {
		/* Rolled back: whatever was read was never claimed. */
		for (size_t i = 0; i < a.n; i++)
			callback_row_clear(&a.out[i]);
		free(a.out);
		return rc;
	}
	*out = a.out;
	*n = a.n;
	return 0;
}

struct job_cb_done {
	struct wr_job j;
	const struct callback_outcome *o;
	size_t n;
};

static int run_cb_done(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_cb_done *a = (struct job_cb_done *)j;
	int64_t now = hr_now_us();
	for (size_t i = 0; i < a->n; i++) {
		const struct callback_outcome *o = &a->o[i];
		sqlite3_stmt *st =
		    sq_wstmt(s, W_CB_DONE,
		             "UPDATE callback_outbox SET state = ?3, next_try_at = iif(?3 = 0, ?4, "
		             "next_try_at),"
		             " lease_until = 0, last_http = ?5, last_error = ?6,"
		             " delivered_at = iif(?3 = 1, ?7, delivered_at), updated_at = ?7"
		             " WHERE id = ?1 AND state = 0 AND attempts = ?2");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "callback_outbox");
		char why[sizeof o->error];
		hr_utf8_copy(why, o->error, sizeof why);
		sqlite3_bind_int64(st, 1, o->id);
		sqlite3_bind_int(st, 2, o->attempt);
		sqlite3_bind_int(st, 3, (int)o->state);
		sqlite3_bind_int64(st, 4, o->next_try_at);
		sqlite3_bind_int(st, 5, o->http_status);
		sq_bind_opt(st, 6, why);
		sqlite3_bind_int64(st, 7, now);
		int rc = sq_step_done(s, st, &j->err, "callback_outbox");
		if (rc)
			return rc;
	}
	return 0;
}

int sq_callback_done(struct store *st, const struct callback_outcome *o, size_t n,
                     struct hr_err *err)
{
	int rc = store_callback_done_check(o, n, err);
	if (rc || n == 0)
		return rc;
	/* Updates only: it can run again (writer.h, replayable). */
	struct job_cb_done a = {.j = {.run = run_cb_done, .replayable = true}, .o = o, .n = n};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &a.j, err);
}

/* ---------------------------------------------------------------------------
 * The API's operations and retention.
 * ------------------------------------------------------------------------- */

struct job_cb_replay {
	struct wr_job j;
	const char *tenant_id;
	int64_t id;
	int limit;
	int64_t n;
};

static int run_cb_replay(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_cb_replay *a = (struct job_cb_replay *)j;
	int64_t now = hr_now_us();
	sqlite3_stmt *st;
	if (a->id > 0) {
		st =
		    sq_wstmt(s, W_CB_REPLAY_ONE,
		             "UPDATE callback_outbox SET state = 0, attempts = 0, next_try_at = ?3,"
		             " lease_until = 0, updated_at = ?3"
		             " WHERE id = ?1 AND tenant_id = ?2 AND state <> 0");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "callback_outbox");
		sqlite3_bind_int64(st, 1, a->id);
		sqlite3_bind_text(st, 2, a->tenant_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
	} else {
		st =
		    sq_wstmt(s, W_CB_REPLAY_DEAD,
		             "UPDATE callback_outbox SET state = 0, attempts = 0, next_try_at = ?3,"
		             " lease_until = 0, updated_at = ?3"
		             " WHERE id IN (SELECT id FROM callback_outbox"
		             "  WHERE tenant_id = ?1 AND state = 2 ORDER BY id LIMIT ?2)");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "callback_outbox");
		sqlite3_bind_text(st, 1, a->tenant_id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, a->limit);
		sqlite3_bind_int64(st, 3, now);
	}
	int rc = sq_step_done(s, st, &j->err, "callback_outbox");
	if (rc == 0)
		a->n = sqlite3_changes(s->wdb);
	return rc;
}

int sq_callback_replay(struct store *st, const char *tenant_id, int64_t id, int limit, int64_t *n,
                       struct hr_err *err)
{
	if (n)
		*n = 0;
	if (store_callback_replay_check(tenant_id, id, limit, err))
		return HR_EINVAL;
	struct job_cb_replay a = {.j = {.run = run_cb_replay, .limited = true},
	                          .tenant_id = tenant_id,
	                          .id = id,
	                          .limit = limit};
	int rc = wr_run_blocking(&((struct sq_store *)st)->wr, &a.j, err);
	if (rc == 0 && id > 0 && a.n == 0) /* not the tenant's, or still pending */
		rc = store_callback_replay_none(st, tenant_id, id, err);
	if (rc == 0 && n)
		*n = a.n;
	return rc;
}

struct job_cb_prune {
	struct wr_job j;
	int64_t before;
	int limit;
	int64_t n;
};

static int run_cb_prune(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_cb_prune *a = (struct job_cb_prune *)j;
	sqlite3_stmt *st =
	    sq_wstmt(s, W_CB_PRUNE,
	             "DELETE FROM callback_outbox WHERE id IN (SELECT id FROM callback_outbox"
	             " WHERE state = 1 AND updated_at < ?1 LIMIT ?2)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "callback_outbox");
	sqlite3_bind_int64(st, 1, a->before);
	sqlite3_bind_int(st, 2, a->limit);
	int rc = sq_step_done(s, st, &j->err, "callback_outbox");
	if (rc == 0)
		a->n = sqlite3_changes(s->wdb);
	return rc;
}

int sq_callback_prune(struct store *st, int64_t before, int limit, int64_t *n)
{
	if (n)
		*n = 0;
	if (limit < 1)
		return HR_EINVAL;
	struct job_cb_prune a = {.j = {.run = run_cb_prune}, .before = before, .limit = limit};
	int rc = wr_run_blocking(&((struct sq_store *)st)->wr, &a.j, NULL);
	if (rc == 0 && n)
		*n = a.n;
	return rc;
}

/* ---------------------------------------------------------------------------
 * Reads.
 * ------------------------------------------------------------------------- */

int sq_callback_list(struct store *st, const char *tenant_id, int state, int64_t before_id,
                     int limit, struct callback_row **out, size_t *n, bool *more)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (!tenant_id || !*tenant_id || lc_callback_check_list(state, before_id, limit))
		return HR_EINVAL;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    state >= 0 ? sq_rstmt(r, R_CB_LIST_STATE,
	                          "SELECT " CB_COLS " FROM callback_outbox WHERE tenant_id = ?1"
	                          " AND state = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4")
	               : sq_rstmt(r, R_CB_LIST,
	                          "SELECT " CB_COLS " FROM callback_outbox WHERE tenant_id = ?1"
	                          " AND id < ?3 ORDER BY id DESC LIMIT ?4");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	if (state >= 0)
		sqlite3_bind_int(q, 2, state);
	sqlite3_bind_int64(q, 3, before_id > 0 ? before_id : INT64_MAX);
	sqlite3_bind_int(q, 4, limit + 1);
	rc = collect(r->db, q, (size_t)limit, out, n, more, NULL);
	sq_reader_put(s, r);
	return rc;
}

int sq_callback_get(struct store *st, const char *tenant_id, int64_t id, struct callback_row *out)
{
	struct sq_store *s = (struct sq_store *)st;
	memset(out, 0, sizeof *out);
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = tenant_id
	                      ? sq_rstmt(r, R_CB_GET,
	                                 "SELECT " CB_COLS " FROM callback_outbox WHERE id = ?1"
	                                 " AND tenant_id = ?2")
	                      : sq_rstmt(r, R_CB_GET_ANY,
	                                 "SELECT " CB_COLS " FROM callback_outbox WHERE id = ?1");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_int64(q, 1, id);
	if (tenant_id)
		sqlite3_bind_text(q, 2, tenant_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		rc = row_cb(q, out);
	else
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	sqlite3_reset(q);
	sq_reader_put(s, r);
	return rc;
}

int sq_callback_counts(struct store *st, int64_t counts[CB__COUNT])
{
	struct sq_store *s = (struct sq_store *)st;
	memset(counts, 0, CB__COUNT * sizeof *counts);
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	/* Each count walks its partial index only. */
	sqlite3_stmt *q = sq_rstmt(r, R_CB_COUNTS,
	                           "SELECT (SELECT count(*) FROM callback_outbox WHERE state = 0),"
	                           " (SELECT count(*) FROM callback_outbox WHERE state = 2)");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		counts[CB_PENDING] = sqlite3_column_int64(q, 0);
		counts[CB_DEAD] = sqlite3_column_int64(q, 1);
	} else {
		rc = sq_fail(r->db, src, NULL, NULL);
	}
	sqlite3_reset(q);
	sq_reader_put(s, r);
	return rc;
}
