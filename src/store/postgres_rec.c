/*
 * postgres_rec.c - the reconciler's reads (stale SENT messages, parked
 * webhooks) and a route's messages, for the PostgreSQL backend. The writes
 * are lifecycle runs (postgres_tx.c, lc_reconcile.c).
 */
#include <stdlib.h>
#include <string.h>

#include "store/postgres_int.h"

/* Every row of r as a heap array of messages. */
static int read_messages(PGresult *r, struct message **out, size_t *n)
{
	int rows = PQntuples(r);
	if (rows == 0)
		return 0;
	struct message *v = calloc((size_t)rows, sizeof *v);
	if (!v)
		return HR_ENOMEM;
	for (int i = 0; i < rows; i++) {
		int rc = pg_row_message(r, i, 0, &v[i]);
		if (rc) {
			for (int k = 0; k < i; k++)
				message_clear(&v[k]);
			free(v);
			return rc;
		}
	}
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_stale_list(struct store *st, const char *channel, int64_t sent_before, int limit,
                  struct message **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!channel || limit < 0 || limit > 10000)
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	struct pg_params p = {0};
	pp_text(&p, channel);
	pp_i64(&p, sent_before);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_STALE_LIST, -1,
	                 "SELECT " PG_MSG_COLS " FROM message WHERE status = 2 AND stale = 0"
	                 " AND channel = $1 AND sent_at <= $2 ORDER BY sent_at LIMIT $3",
	                 &p, &r);
	if (rc)
		return rc;
	rc = read_messages(r, out, n);
	PQclear(r);
	return rc;
}

int pg_message_route(struct store *st, const char *tenant_id, const char *root_id,
                     struct message **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!root_id || !*root_id)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, root_id);
	pp_text(&p, tenant_id);
	PGresult *r;
	int rc =
	    pg_read((struct pg_store *)st, P_ROUTE, -1,
	            "SELECT " PG_MSG_COLS " FROM message WHERE route_root = $1"
	            " AND ($2::text IS NULL OR tenant_id = $2) ORDER BY route_step, id LIMIT 64",
	            &p, &r);
	if (rc)
		return rc;
	rc = read_messages(r, out, n);
	PQclear(r);
	return rc;
}

int pg_inbox_parked(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                    struct inbox_row **out, size_t *n, bool *more)
{
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (limit < 1 || limit > 1000 || before_id < 0)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_i64(&p, before_id);
	pp_text(&p, tenant_id);
	pp_i64(&p, limit + 1);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_PARKED, -1,
	                 "SELECT i.id, i.account_id, i.channel, i.dedupe_key, i.received_at,"
	                 " i.attempts, i.body, i.error FROM webhook_inbox i"
	                 " WHERE i.state = 4 AND ($1 = 0 OR i.id < $1)"
	                 " AND ($2::text IS NULL OR i.account_id IN"
	                 "  (SELECT id FROM channel_account WHERE tenant_id = $2))"
	                 " ORDER BY i.id DESC LIMIT $3",
	                 &p, &r);
	if (rc)
		return rc;
	int rows = PQntuples(r);
	struct inbox_row *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	size_t got = 0;
	rc = pg_inbox_rows(r, v, &got);
	for (size_t i = 0; rc == 0 && i < got; i++)
		pg_col_copy(r, (int)i, 7, v[i].error, sizeof v[i].error);
	PQclear(r);
	if (rc) {
		free(v);
		return rc;
	}
	if (got > (size_t)limit) {
		inbox_row_clear(&v[limit]);
		got = (size_t)limit;
		if (more)
			*more = true;
	}
	if (got == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = got;
	return 0;
}
