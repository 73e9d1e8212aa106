/*
 * postgres_plugev.c - the plugins' after-commit events on PostgreSQL
 * (store.h: plugin_event_row): the statement lc_plugin.c's rows send inside
 * a change's transaction (postgres_tx.c), the deliverer's read (oldest
 * first) and its batched delete once delivered. The same rules as
 * sqlite_plugev.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_rows.h"

const char pg_sql_pev_add[] =
    "INSERT INTO plugin_event(tenant_id, message_id, kind, prev_status, status, text, payload,"
    " created_at) VALUES($1, $2, $3::smallint, $4::smallint, $5::smallint, $6, $7, $8::bigint)";

void pg_pev_add_params(struct pg_params *p, const struct lc_plugin_event *e, int64_t now)
{
	pp_text(p, e->tenant_id);
	pp_text(p, e->message_id);
	pp_i64(p, e->kind);
	if (e->prev_status >= 0)
		pp_i64(p, e->prev_status);
	else
		pp_text(p, NULL);
	if (e->status >= 0)
		pp_i64(p, e->status);
	else
		pp_text(p, NULL);
	pp_text(p, e->text);
	pp_text(p, e->payload);
	pp_i64(p, now);
}

struct job_pev_done {
	struct wr_job j;
	const char *ids; /* array literal */
};

static int run_pev_done(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_pev_done *a = (struct job_pev_done *)j;
	struct pg_params p = {0};
	pp_text(&p, a->ids);
	PGresult *r;
	int rc = pg_exec(&s->w, P_PEV_DONE, "DELETE FROM plugin_event WHERE id = ANY($1::bigint[])",
	                 &p, &r, &j->err, "plugin_event");
	if (rc)
		return rc;
	PQclear(r);
	return 0;
}

int pg_plugin_event_done(struct store *st, const int64_t *ids, size_t n)
{
	if (n > PLUGIN_EV_READ_MAX || (n && !ids))
		return HR_EINVAL;
	if (n == 0)
		return 0;
	struct hr_buf b = {0};
	for (size_t i = 0; i < n; i++)
		pg_arr_i64(&b, ids[i]);
	const char *lit = pg_arr_end(&b);
	if (!lit) {
		free(b.p);
		return HR_ENOMEM;
	}
	struct job_pev_done a = {.j = {.run = run_pev_done}, .ids = lit};
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &a.j, NULL);
	free(b.p);
	return rc;
}

/*
 * Several nodes on one database: only one delivers. The deliverer's lock
 * is a session advisory lock of the writer's connection, taken by the
 * first read (pg_try_advisory_lock: never waits) and held until that
 * connection ends (its node stops or dies), so another node's read takes
 * over then. A node that holds it does not take it again (the lock would
 * count up).
 */
#define PEV_LOCK 7226403 /* 7226400 migrations, 7226401 partitions, 7226402 retention */

struct job_pev_lead {
	struct wr_job j;
	bool leader;
};

static int run_pev_lead(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_pev_lead *a = (struct job_pev_lead *)j;
	struct pg_params p = {0};
	PGresult *r;
	int rc = pg_exec(&s->w, P_PEV_LEAD,
	                 "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = "
	                 "'advisory' AND pid = pg_backend_pid() AND classid = 0 AND objid = 7226403"
	                 " AND objsubid = 1 AND granted) THEN true"
	                 " ELSE pg_try_advisory_lock(7226403) END",
	                 &p, &r, &j->err, "plugin_event");
	if (rc)
		return rc;
	a->leader = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return 0;
}

_Static_assert(PEV_LOCK == 7226403, "the lock's key is spelt out in run_pev_lead's SQL");

int pg_plugin_event_read(struct store *st, int limit, struct plugin_event_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > PLUGIN_EV_READ_MAX)
		return HR_EINVAL;
	struct job_pev_lead lead = {.j = {.run = run_pev_lead}};
	int lrc = wr_run_blocking(&((struct pg_store *)st)->wr, &lead.j, NULL);
	if (lrc)
		return lrc;
	if (!lead.leader)
		return 0; /* another node delivers */
	struct pg_params p = {0};
	pp_i64(&p, limit);
	PGresult *r;
	int rc =
	    pg_read((struct pg_store *)st, P_PEV_READ, -1,
	            "SELECT id, tenant_id, message_id, kind, prev_status, status, text, payload,"
	            " created_at FROM plugin_event ORDER BY id LIMIT $1",
	            &p, &r);
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_plugin_event, NULL,
	                  store_row_plugin_event_clear, &v, n);
	*out = v;
	return rc;
}

int pg_plugin_event_count(struct store *st, int64_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_PEV_COUNT, -1,
	                 "SELECT count(*) FROM plugin_event", &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 1)
		*n = pg_col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}
