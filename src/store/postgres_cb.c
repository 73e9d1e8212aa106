/*
 * postgres_cb.c - the callback outbox on PostgreSQL (store.h:
 * callback_row): the statement lifecycle's callback_add sends inside a
 * change's transaction (postgres_tx.c), and the sender's and the API's
 * operations. The same rules as sqlite_cb.c; several nodes may run senders
 * on one database: a claim takes its rows FOR UPDATE SKIP LOCKED, and the
 * per-message order check sees a row another node has in flight as
 * pending (its lease runs), so no node sends a later event of that message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/postgres_rows.h"

#define CB_COLS                                                                                    \
	"id, tenant_id, message_id, batch_id, event, status, prev_status, provider_id,"            \
	" error_code, error_text, detail, url, occurred_at, state, attempts, next_try_at,"         \
	" lease_until, delivered_at, updated_at, last_http, last_error"

#define CB_INSERT                                                                                  \
	"INSERT INTO callback_outbox(tenant_id, message_id, batch_id, url, event, status,"         \
	" prev_status, provider_id, error_code, error_text, detail, occurred_at, next_try_at,"     \
	" updated_at) "

const char pg_sql_cb_add_msg[] =
    CB_INSERT "SELECT tenant_id, id, batch_id, callback_url, $2, $3::smallint, $4::smallint,"
              " provider_id, error_code, error_text, $5, $6::bigint, $6::bigint, $6::bigint"
              " FROM message WHERE id = $1 AND callback_url IS NOT NULL";
const char pg_sql_cb_add_tenant[] =
    CB_INSERT "SELECT t.id, NULL, NULL, t.callback_url, $2, $3::smallint, $4::smallint, NULL,"
              " NULL, NULL, $5, $6::bigint, $6::bigint, $6::bigint FROM channel_account a"
              " JOIN tenant t ON t.id = a.tenant_id WHERE a.id = $1"
              " AND t.callback_url IS NOT NULL";

void pg_cb_add_params(struct pg_params *p, const struct lc_callback *c, int64_t now)
{
	pp_text(p, c->message_id ? c->message_id : c->account_id ? c->account_id : "");
	pp_text(p, c->event);
	if (c->status >= 0)
		pp_i64(p, c->status);
	else
		pp_text(p, NULL);
	if (c->prev_status >= 0)
		pp_i64(p, c->prev_status);
	else
		pp_text(p, NULL);
	pp_text(p, c->detail);
	pp_i64(p, now);
}

/* Row i of a CB_COLS result; HR_ENOMEM if a text cannot be copied. */
static int row_cb(const PGresult *r, int i, struct callback_row *o)
{
	const struct store_cols c = pg_cols(r, i);
	memset(o, 0, sizeof *o);
	int rc = store_row_callback(&c, o, NULL);
	if (rc)
		callback_row_clear(o);
	return rc;
}

/* Up to max rows of r as a heap array; PQclears r. */
static int rows_cb(PGresult *r, size_t max, struct callback_row **out, size_t *n, bool *more)
{
	size_t rows = (size_t)PQntuples(r);
	if (more)
		*more = rows > max;
	if (rows > max)
		rows = max;
	struct callback_row *v = rows ? calloc(rows, sizeof *v) : NULL;
	int rc = rows && !v ? HR_ENOMEM : 0;
	size_t k = 0;
	for (; rc == 0 && k < rows; k++)
		if ((rc = row_cb(r, (int)k, &v[k])))
			break;
	PQclear(r);
	if (rc) {
		for (size_t i = 0; i < k; i++)
			callback_row_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = rows;
	return 0;
}

/* ---------------------------------------------------------------------------
 * The sender's writes.
 * ------------------------------------------------------------------------- */

struct job_cb_claim {
	struct wr_job j;
	int64_t now, lease_us;
	int limit;
	const char *skip; /* text[] literal */
	struct callback_row *out;
	size_t n;
};

static int run_cb_claim(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_cb_claim *a = (struct job_cb_claim *)j;
	int64_t now = a->now ? a->now : s->gnow;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, now > INT64_MAX - a->lease_us ? INT64_MAX : now + a->lease_us);
	pp_text(&p, a->skip);
	pp_i64(&p, a->limit);
	PGresult *r;
	int rc = pg_exec(
	    &s->w, P_CB_CLAIM,
	    "WITH c AS (SELECT o.id FROM callback_outbox o WHERE o.state = 0"
	    "  AND o.next_try_at <= $1 AND o.lease_until <= $1"
	    "  AND (o.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM callback_outbox p"
	    "   WHERE p.state = 0 AND p.message_id = o.message_id AND p.id < o.id))"
	    "  AND o.url <> ALL($3::text[])"
	    "  ORDER BY o.next_try_at, o.id LIMIT $4 FOR UPDATE SKIP LOCKED)"
	    " UPDATE callback_outbox u SET attempts = u.attempts + 1, lease_until = $2,"
	    " updated_at = $1 FROM c WHERE u.id = c.id RETURNING u.id, u.tenant_id, u.message_id,"
	    " u.batch_id, u.event, u.status, u.prev_status, u.provider_id, u.error_code,"
	    " u.error_text, u.detail, u.url, u.occurred_at, u.state, u.attempts, u.next_try_at,"
	    " u.lease_until, u.delivered_at, u.updated_at, u.last_http, u.last_error",
	    &p, &r, &j->err, "callback_outbox");
	if (rc)
		return rc;
	rc = rows_cb(r, (size_t)a->limit, &a->out, &a->n, NULL);
	if (rc)
		return hr_fail(&j->err, rc, "callback_outbox", "out of memory");
	return 0;
}

static int cb_cmp(const void *x, const void *y)
{
	const struct callback_row *a = x, *b = y;
	if (a->next_try_at != b->next_try_at)
		return a->next_try_at < b->next_try_at ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

int pg_callback_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                      const char *const *skip_urls, size_t nskip, struct callback_row **out,
                      size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 0 || lease_us <= 0 || (nskip && !skip_urls))
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	struct hr_buf b = {0};
	for (size_t i = 0; i < nskip; i++)
		pg_arr_text(&b, skip_urls[i] ? skip_urls[i] : "");
	const char *skip = nskip ? pg_arr_end(&b) : "{}";
	if (!skip) {
		free(b.p);
		return HR_ENOMEM;
	}
	struct job_cb_claim a = {.j = {.run = run_cb_claim},
	                         .now = now,
	                         .lease_us = lease_us,
	                         .limit = limit,
	                         .skip = skip};
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &a.j, NULL);
	free(b.p);
	if (rc) {
		for (size_t i = 0; i < a.n; i++)
			callback_row_clear(&a.out[i]);
		free(a.out);
		return rc;
	}
	/* UPDATE ... RETURNING does not keep the claim's order. */
	if (a.n > 1)
		qsort(a.out, a.n, sizeof *a.out, cb_cmp);
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
	struct pg_store *s = be;
	struct job_cb_done *a = (struct job_cb_done *)j;
	for (size_t i = 0; i < a->n; i++) {
		const struct callback_outcome *o = &a->o[i];
		char why[sizeof o->error];
		hr_utf8_copy(why, o->error, sizeof why);
		struct pg_params p = {0};
		pp_i64(&p, o->id);
		pp_i64(&p, o->attempt);
		pp_i64(&p, (int)o->state);
		pp_i64(&p, o->next_try_at);
		pp_i64(&p, o->http_status);
		pp_opt(&p, why);
		pp_i64(&p, s->gnow);
		int rc = pg_exec(
		    &s->w, P_CB_DONE,
		    "UPDATE callback_outbox SET state = $3::smallint,"
		    " next_try_at = CASE WHEN $3::int = 0 THEN $4::bigint ELSE next_try_at END,"
		    " lease_until = 0, last_http = $5::int, last_error = $6::text,"
		    " delivered_at = CASE WHEN $3::int = 1 THEN $7::bigint ELSE delivered_at END,"
		    " updated_at = $7::bigint WHERE id = $1 AND state = 0 AND attempts = $2::int",
		    &p, NULL, &j->err, "callback_outbox");
		if (rc)
			return rc;
	}
	return 0;
}

int pg_callback_done(struct store *st, const struct callback_outcome *o, size_t n,
                     struct hr_err *err)
{
	int rc = store_callback_done_check(o, n, err);
	if (rc || n == 0)
		return rc;
	struct job_cb_done a = {.j = {.run = run_cb_done}, .o = o, .n = n};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &a.j, err);
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
	struct pg_store *s = be;
	struct job_cb_replay *a = (struct job_cb_replay *)j;
	struct pg_params p = {0};
	PGresult *r;
	int rc;
	if (a->id > 0) {
		pp_i64(&p, a->id);
		pp_text(&p, a->tenant_id);
		pp_i64(&p, s->gnow);
		rc = pg_exec(&s->w, P_CB_REPLAY_ONE,
		             "UPDATE callback_outbox SET state = 0, attempts = 0, next_try_at = $3,"
		             " lease_until = 0, updated_at = $3"
		             " WHERE id = $1 AND tenant_id = $2 AND state <> 0",
		             &p, &r, &j->err, "callback_outbox");
	} else {
		pp_text(&p, a->tenant_id);
		pp_i64(&p, a->limit);
		pp_i64(&p, s->gnow);
		rc = pg_exec(&s->w, P_CB_REPLAY_DEAD,
		             "UPDATE callback_outbox SET state = 0, attempts = 0, next_try_at = $3,"
		             " lease_until = 0, updated_at = $3"
		             " WHERE id IN (SELECT id FROM callback_outbox"
		             "  WHERE tenant_id = $1 AND state = 2 ORDER BY id LIMIT $2"
		             "  FOR UPDATE SKIP LOCKED)",
		             &p, &r, &j->err, "callback_outbox");
	}
	if (rc)
		return rc;
	a->n = atoll(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

int pg_callback_replay(struct store *st, const char *tenant_id, int64_t id, int limit, int64_t *n,
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
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &a.j, err);
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
	struct pg_store *s = be;
	struct job_cb_prune *a = (struct job_cb_prune *)j;
	struct pg_params p = {0};
	pp_i64(&p, a->before);
	pp_i64(&p, a->limit);
	PGresult *r;
	int rc = pg_exec(&s->w, P_CB_PRUNE,
	                 "DELETE FROM callback_outbox WHERE id IN (SELECT id FROM callback_outbox"
	                 " WHERE state = 1 AND updated_at < $1 LIMIT $2)",
	                 &p, &r, &j->err, "callback_outbox");
	if (rc)
		return rc;
	a->n = atoll(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

int pg_callback_prune(struct store *st, int64_t before, int limit, int64_t *n)
{
	if (n)
		*n = 0;
	if (limit < 1)
		return HR_EINVAL;
	struct job_cb_prune a = {.j = {.run = run_cb_prune}, .before = before, .limit = limit};
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &a.j, NULL);
	if (rc == 0 && n)
		*n = a.n;
	return rc;
}

/* ---------------------------------------------------------------------------
 * Reads.
 * ------------------------------------------------------------------------- */

int pg_callback_list(struct store *st, const char *tenant_id, int state, int64_t before_id,
                     int limit, struct callback_row **out, size_t *n, bool *more)
{
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (!tenant_id || !*tenant_id || lc_callback_check_list(state, before_id, limit))
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, state);
	pp_i64(&p, before_id > 0 ? before_id : INT64_MAX);
	pp_i64(&p, limit + 1);
	PGresult *r;
	int rc = state >= 0 ? pg_read((struct pg_store *)st, P_CB_LIST_STATE, -1,
	                              "SELECT " CB_COLS " FROM callback_outbox WHERE tenant_id = $1"
	                              " AND state = $2::smallint AND id < $3"
	                              " ORDER BY id DESC LIMIT $4",
	                              &p, &r)
	                    : pg_read((struct pg_store *)st, P_CB_LIST, -1,
	                              "SELECT " CB_COLS " FROM callback_outbox WHERE tenant_id = $1"
	                              " AND $2::int = -1 AND id < $3 ORDER BY id DESC LIMIT $4",
	                              &p, &r);
	if (rc)
		return rc;
	return rows_cb(r, (size_t)limit, out, n, more);
}

int pg_callback_get(struct store *st, const char *tenant_id, int64_t id, struct callback_row *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_i64(&p, id);
	PGresult *r;
	int rc;
	if (tenant_id) {
		pp_text(&p, tenant_id);
		rc = pg_read((struct pg_store *)st, P_CB_GET, -1,
		             "SELECT " CB_COLS
		             " FROM callback_outbox WHERE id = $1 AND tenant_id = $2",
		             &p, &r);
	} else {
		rc = pg_read((struct pg_store *)st, P_CB_GET_ANY, -1,
		             "SELECT " CB_COLS " FROM callback_outbox WHERE id = $1", &p, &r);
	}
	if (rc)
		return rc;
	rc = PQntuples(r) ? row_cb(r, 0, out) : HR_ENOTFOUND;
	PQclear(r);
	return rc;
}

int pg_callback_counts(struct store *st, int64_t counts[CB__COUNT])
{
	memset(counts, 0, CB__COUNT * sizeof *counts);
	struct pg_params p = {0};
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_CB_COUNTS, -1,
	                 "SELECT (SELECT count(*) FROM callback_outbox WHERE state = 0),"
	                 " (SELECT count(*) FROM callback_outbox WHERE state = 2)",
	                 &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 1) {
		counts[CB_PENDING] = pg_col_i64(r, 0, 0);
		counts[CB_DEAD] = pg_col_i64(r, 0, 1);
	}
	PQclear(r);
	return 0;
}
