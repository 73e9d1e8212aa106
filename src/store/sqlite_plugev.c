/*
 * sqlite_plugev.c - the plugins' after-commit events on SQLite (store.h:
 * plugin_event_row): the row lc_plugin.c adds inside a change's
 * transaction, the deliverer's read (oldest first) and its batched delete
 * once delivered. Storage only: which changes make a row is lc_plugin.c's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

int sq_tx_plugin_event_add(struct sq_store *s, const struct lc_plugin_event *e, int64_t now,
                           struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_PEV_ADD,
	                            "INSERT INTO plugin_event(tenant_id, message_id, kind,"
	                            " prev_status, status, text, payload, created_at)"
	                            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "plugin_event");
	sqlite3_bind_text(st, 1, e->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, e->kind);
	if (e->prev_status >= 0)
		sqlite3_bind_int(st, 4, e->prev_status);
	else
		sqlite3_bind_null(st, 4);
	if (e->status >= 0)
		sqlite3_bind_int(st, 5, e->status);
	else
		sqlite3_bind_null(st, 5);
	if (e->text)
		sqlite3_bind_text(st, 6, e->text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	if (e->payload)
		sqlite3_bind_text(st, 7, e->payload, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	sqlite3_bind_int64(st, 8, now);
	return sq_step_done(s, st, err, "plugin_event");
}

struct job_pev_done {
	struct wr_job j;
	const int64_t *ids;
	size_t n;
};

static int run_pev_done(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_pev_done *a = (struct job_pev_done *)j;
	for (size_t i = 0; i < a->n; i++) {
		sqlite3_stmt *st =
		    sq_wstmt(s, W_PEV_DONE, "DELETE FROM plugin_event WHERE id = ?1");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "plugin_event");
		sqlite3_bind_int64(st, 1, a->ids[i]);
		int rc = sq_step_done(s, st, &j->err, "plugin_event");
		if (rc)
			return rc;
	}
	return 0;
}

int sq_plugin_event_done(struct store *st, const int64_t *ids, size_t n)
{
	if (n > PLUGIN_EV_READ_MAX || (n && !ids))
		return HR_EINVAL;
	if (n == 0)
		return 0;
	/* Deletes only: it can run again (writer.h, replayable). */
	struct job_pev_done a = {
	    .j = {.run = run_pev_done, .replayable = true}, .ids = ids, .n = n};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &a.j, NULL);
}

int sq_plugin_event_read(struct store *st, int limit, struct plugin_event_row **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > PLUGIN_EV_READ_MAX)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_PEV_READ,
	                       "SELECT id, tenant_id, message_id, kind, prev_status, status,"
	                       " text, payload, created_at FROM plugin_event"
	                       " ORDER BY id LIMIT ?1",
	                       &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_int(q, 1, limit);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_plugin_event, NULL,
	                  store_row_plugin_event_clear, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

int sq_plugin_event_count(struct store *st, int64_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*n = 0;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_PEV_COUNT, "SELECT count(*) FROM plugin_event", &r, &q);
	if (rc)
		return rc;
	rc = sq_read_i64(r, q, n);
	sq_reader_put(s, r);
	return rc;
}
