/*
 * sqlite_recip.c - a recipient's history for the dashboard: the
 * suppression list's history rows (written by lc_supp.c through
 * tx_supp_log), the recipient's current suppression entries, and the
 * tenant's inbound replies from it. Every read is an index range: the
 * suppression primary key, suppression_event(tenant_id, recipient, id) and
 * inbound(tenant_id, sender, id) (migration 12), bounded by a limit.
 */
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/sqlite_rows.h"

extern const struct lc_backend sq_lc_backend; /* sqlite_tx.c */

int sq_supp_log(struct sq_store *s, const struct supp_change *c, const char *action, int64_t now,
                struct hr_err *err)
{
	char reason[SQ_REASON_MAX];
	hr_utf8_copy(reason, c->reason ? c->reason : "", sizeof reason);
	char actor[sizeof(((struct supp_event_row *)0)->actor)];
	hr_utf8_copy(actor, c->actor ? c->actor : "", sizeof actor);
	sqlite3_stmt *st =
	    sq_wstmt(s, W_SUPP_LOG,
	             "INSERT INTO suppression_event(tenant_id, channel, recipient, action, reason,"
	             " message_id, actor, at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "suppression_event");
	sqlite3_bind_text(st, 1, c->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, c->recipient, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, c->message_id ? c->message_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, actor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, now);
	return sq_step_done(s, st, err, "suppression_event");
}

int sq_suppression_change(struct store *st, const struct supp_change *c, struct hr_err *err)
{
	return lc_suppression_change(&sq_lc_backend, st, c, err);
}

/* Binds the forms to ?2..?4 (missing ones repeat the first). */
static int bind_forms(sqlite3_stmt *q, const char *const *v, size_t n)
{
	if (n < 1 || n > STORE_RECIP_FORMS)
		return HR_EINVAL;
	for (size_t k = 0; k < STORE_RECIP_FORMS; k++)
		sqlite3_bind_text(q, 2 + (int)k, v[k < n ? k : 0], -1, SQLITE_STATIC);
	return 0;
}

static int read_current(struct sq_reader *r, const char *tenant_id, const char *const *recips,
                        size_t nrec, struct suppression_row **out, size_t *n)
{
	sqlite3_stmt *q = sq_rstmt(r, R_RECIP_SUPP,
	                           "SELECT tenant_id, channel, recipient, reason, created_at"
	                           " FROM suppression WHERE tenant_id = ?1"
	                           " AND recipient IN (?2, ?3, ?4) ORDER BY channel, recipient");
	if (!q)
		return HR_EIO;
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	int rc = bind_forms(q, recips, nrec);
	if (rc)
		return rc;
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_suppression, NULL, NULL, &v, n);
	*out = v;
	return rc;
}

static int read_events(struct sq_reader *r, const char *tenant_id, const char *const *recips,
                       size_t nrec, int limit, struct supp_event_row **out, size_t *n)
{
	sqlite3_stmt *q =
	    sq_rstmt(r, R_RECIP_SUPP_EV,
	             "SELECT id, channel, recipient, action, reason, message_id, actor,"
	             " at FROM suppression_event WHERE tenant_id = ?1"
	             " AND recipient IN (?2, ?3, ?4) ORDER BY id DESC LIMIT ?5");
	if (!q)
		return HR_EIO;
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, limit);
	int rc = bind_forms(q, recips, nrec);
	if (rc)
		return rc;
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_supp_event, NULL, NULL, &v, n);
	*out = v;
	return rc;
}

int sq_recipient_supp(struct store *st, const char *tenant_id, const char *const *recips,
                      size_t nrec, int limit, struct suppression_row **cur, size_t *ncur,
                      struct supp_event_row **ev, size_t *nev)
{
	struct sq_store *s = (struct sq_store *)st;
	*cur = NULL;
	*ev = NULL;
	*ncur = *nev = 0;
	if (!store_recipient_args_ok(tenant_id, nrec, limit))
		return HR_EINVAL;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	rc = read_current(r, tenant_id, recips, nrec, cur, ncur);
	if (rc == 0)
		rc = read_events(r, tenant_id, recips, nrec, limit, ev, nev);
	sq_reader_put(s, r);
	if (rc) {
		free(*cur);
		free(*ev);
		*cur = NULL;
		*ev = NULL;
		*ncur = *nev = 0;
	}
	return rc;
}

int sq_recipient_inbound(struct store *st, const char *tenant_id, const char *const *senders,
                         size_t nrec, int limit, struct inbound_row **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (!store_recipient_args_ok(tenant_id, nrec, limit))
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(
	    s, R_RECIP_INBOUND,
	    "SELECT i.id, i.account_id, coalesce(i.message_id, ''), coalesce(m.unit_id, ''),"
	    " i.sender, i.kind, i.text, i.payload, i.provider_at, i.received_at"
	    " FROM inbound i LEFT JOIN message m ON m.id = i.message_id"
	    " AND m.tenant_id = i.tenant_id"
	    " WHERE i.tenant_id = ?1 AND i.sender IN (?2, ?3, ?4) ORDER BY i.id DESC LIMIT ?5",
	    &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, limit);
	rc = bind_forms(q, senders, nrec);
	void *v = NULL;
	if (rc == 0)
		rc = sq_rows_read(r, q, sizeof **out, store_row_inbound, NULL,
		                  store_row_inbound_clear, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

/* account health: the queue depth from the partial claim index
 * (message_claim holds QUEUED rows only), bounded by cap. */
int sq_account_queue_depth(struct store *st, const char *account_id, int64_t cap, int64_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*n = 0;
	if (!account_id || !*account_id || cap < 1)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc =
	    sq_read_begin(s, R_QUEUE_DEPTH,
	                  "SELECT count(*) FROM (SELECT 1 FROM message INDEXED BY message_claim"
	                  " WHERE account_id = ?1 AND status = 0 LIMIT ?2)",
	                  &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, cap);
	rc = sq_read_i64(r, q, n);
	sq_reader_put(s, r);
	return rc;
}

/* ---- account pauses ---- */

int sq_pause_put(struct sq_store *s, const struct account_pause_row *p, int64_t now,
                 struct hr_err *err)
{
	char reason[sizeof p->reason];
	hr_utf8_copy(reason, p->reason, sizeof reason);
	sqlite3_stmt *st =
	    sq_wstmt(s, W_PAUSE_PUT,
	             "INSERT INTO account_pause(account_id, tenant_id, reason, actor, at)"
	             " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(account_id) DO UPDATE SET"
	             " reason = excluded.reason, actor = excluded.actor, at = excluded.at");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "account_pause");
	sqlite3_bind_text(st, 1, p->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, p->actor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now);
	return sq_step_done(s, st, err, "account_pause");
}

int sq_pause_delete(struct sq_store *s, const char *account_id, struct hr_err *err)
{
	sqlite3_stmt *st =
	    sq_wstmt(s, W_PAUSE_DELETE, "DELETE FROM account_pause WHERE account_id = ?1");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "account_pause");
	sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
	int rc = sq_step_done(s, st, err, "account_pause");
	return rc ? rc : sqlite3_changes(s->wdb) > 0;
}

int sq_account_pause_set(struct store *st, const struct account_pause_row *p, bool paused,
                         const struct audit_row *a, struct hr_err *err)
{
	return lc_account_pause_set(&sq_lc_backend, st, p, paused, a, err);
}

int sq_account_pauses(struct store *st, struct account_pause_row **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_PAUSES,
	                       "SELECT account_id, tenant_id, reason, actor, at FROM account_pause"
	                       " ORDER BY account_id",
	                       &r, &q);
	if (rc)
		return rc;
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_pause, NULL, NULL, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

/* ---- daily counters (store/daily.h) ---- */

/* One upsert per (tenant, channel, day, kind) the group moved, in its
 * transaction: a failure fails the commit, so the counts never part from
 * the rows. Stripe 0 (one writer). */
int sq_daily_flush(struct sq_store *s, struct hr_err *err)
{
	daily_merge(&s->dd_group, &s->dd_job);
	daily_clear(&s->dd_job);
	if (s->dd_group.oom)
		return hr_fail(err, HR_ENOMEM, "daily_count", "out of memory");
	for (size_t i = 0; i < s->dd_group.n; i++) {
		const struct daily_ent *e = &s->dd_group.v[i];
		if (!e->n)
			continue;
		sqlite3_stmt *st = sq_wstmt(
		    s, W_DAILY_COUNT_ADD,
		    "INSERT INTO daily_count(tenant_id, channel, day, kind, code, stripe, n)"
		    " VALUES(?1, ?2, ?3, ?4, ?6, 0, ?5) ON CONFLICT(tenant_id, day, channel,"
		    " kind, code, stripe) DO UPDATE SET n = n + excluded.n");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, err, "daily_count");
		sqlite3_bind_text(st, 1, e->tenant_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, e->channel, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, e->day);
		sqlite3_bind_int(st, 4, e->kind);
		sqlite3_bind_int64(st, 5, e->n);
		sqlite3_bind_text(st, 6, e->code, -1, SQLITE_STATIC);
		int rc = sq_step_done(s, st, err, "daily_count");
		if (rc)
			return rc;
	}
	daily_clear(&s->dd_group);
	return 0;
}

int sq_daily_counts(struct store *st, const char *tenant_id, int32_t day_from, int32_t day_to,
                    struct daily_ent **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (!tenant_id || !*tenant_id || day_to < day_from || day_to - day_from > 366)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_DAILY,
	                       "SELECT channel, day, kind, code, sum(n) FROM daily_count"
	                       " WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3"
	                       " GROUP BY day, channel, kind, code"
	                       " ORDER BY day, channel, kind, code",
	                       &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, day_from);
	sqlite3_bind_int(q, 3, day_to);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_daily, (void *)tenant_id, NULL, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}
