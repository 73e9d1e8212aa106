/*
 * sqlite_rec.c - the reconciler's reads (stale SENT messages, parked
 * webhooks) and a route's messages, for the SQLite backend. The writes are
 * lifecycle runs (sqlite_tx.c, lc_reconcile.c).
 */
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

/* Steps every row of q into a heap array of messages (at most limit). */
static int read_messages(struct sq_reader *r, sqlite3_stmt *q, int limit, struct message **out,
                         size_t *n)
{
	struct message *v = calloc((size_t)limit, sizeof *v);
	if (!v)
		return HR_ENOMEM;
	size_t len = 0;
	int src, rc = 0;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && len < (size_t)limit) {
		if ((rc = sq_row_message(q, 0, &v[len])))
			break;
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = sq_fail(r->db, src, NULL, NULL);
	if (rc || len == 0) {
		for (size_t i = 0; i < len; i++)
			message_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_stale_list(struct store *st, const char *channel, int64_t sent_before, int limit,
                  struct message **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (!channel || limit < 0 || limit > 10000)
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	/* The partial index of SENT rows not yet settled, by channel and age. */
	sqlite3_stmt *q =
	    sq_rstmt(r, R_STALE_LIST,
	             "SELECT " SQ_MSG_COLS " FROM message WHERE status = 2 AND stale = 0"
	             " AND channel = ?1 AND sent_at <= ?2 ORDER BY sent_at LIMIT ?3");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, channel, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, sent_before);
	sqlite3_bind_int(q, 3, limit);
	rc = read_messages(r, q, limit, out, n);
	sq_reader_put(s, r);
	return rc;
}

int sq_message_route(struct store *st, const char *tenant_id, const char *root_id,
                     struct message **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (!root_id || !*root_id)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_ROUTE,
	                       "SELECT " SQ_MSG_COLS " FROM message WHERE route_root = ?1"
	                       " AND (?2 IS NULL OR tenant_id = ?2) ORDER BY route_step, id"
	                       " LIMIT 64",
	                       &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, root_id, -1, SQLITE_STATIC);
	if (tenant_id)
		sqlite3_bind_text(q, 2, tenant_id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 2);
	rc = read_messages(r, q, 64, out, n);
	sq_reader_put(s, r);
	return rc;
}

int sq_inbox_parked(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                    struct inbox_row **out, size_t *n, bool *more)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	if (limit < 1 || limit > 1000 || before_id < 0)
		return HR_EINVAL;
	struct inbox_row *v = calloc((size_t)limit + 1, sizeof *v);
	if (!v)
		return HR_ENOMEM;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc) {
		free(v);
		return rc;
	}
	sqlite3_stmt *q = sq_rstmt(
	    r, R_PARKED,
	    "SELECT i.id, i.account_id, i.channel, i.dedupe_key, i.received_at, i.attempts, i.body,"
	    " i.error FROM webhook_inbox i"
	    " WHERE i.state = 4 AND (?1 = 0 OR i.id < ?1)"
	    " AND (?2 IS NULL OR i.account_id IN"
	    "  (SELECT id FROM channel_account WHERE tenant_id = ?2))"
	    " ORDER BY i.id DESC LIMIT ?3");
	if (!q) {
		sq_reader_put(s, r);
		free(v);
		return HR_EIO;
	}
	sqlite3_bind_int64(q, 1, before_id);
	if (tenant_id)
		sqlite3_bind_text(q, 2, tenant_id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 2);
	sqlite3_bind_int(q, 3, limit + 1);
	size_t len = 0;
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && len < (size_t)limit + 1) {
		if ((rc = sq_row_inbox(q, &v[len])) != 0)
			break;
		sq_col_copy(q, 7, v[len].error, sizeof v[len].error);
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	if (rc == 0 && len > (size_t)limit) {
		inbox_row_clear(&v[limit]);
		len = (size_t)limit;
		if (more)
			*more = true;
	}
	if (rc || len == 0) {
		for (size_t i = 0; i < len; i++)
			inbox_row_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}
