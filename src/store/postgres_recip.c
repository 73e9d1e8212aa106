/*
 * postgres_recip.c - a recipient's history for the dashboard,
 * the same reads as sqlite_recip.c: the suppression list's history rows
 * (written by lc_supp.c through tx_supp_log), the recipient's current
 * suppression entries, and the tenant's inbound replies from it. Index
 * ranges only, bounded by a limit.
 */
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/postgres_rows.h"

extern const struct lc_backend pg_lc_backend; /* postgres_tx.c */

int pg_supp_log(struct pg_store *s, const struct supp_change *c, const char *action, int64_t now,
                struct hr_err *err)
{
	char reason[PG_REASON_MAX];
	hr_utf8_copy(reason, c->reason ? c->reason : "", sizeof reason);
	char actor[sizeof(((struct supp_event_row *)0)->actor)];
	hr_utf8_copy(actor, c->actor ? c->actor : "", sizeof actor);
	struct pg_params p = {0};
	pp_text(&p, c->tenant_id);
	pp_text(&p, c->channel);
	pp_text(&p, c->recipient);
	pp_text(&p, action);
	pp_text(&p, reason);
	pp_text(&p, c->message_id ? c->message_id : "");
	pp_text(&p, actor);
	pp_i64(&p, now);
	return pg_exec(
	    &s->w, P_SUPP_LOG,
	    "INSERT INTO suppression_event(tenant_id, channel, recipient, action, reason,"
	    " message_id, actor, at) VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
	    &p, NULL, err, "suppression_event");
}

int pg_suppression_change(struct store *st, const struct supp_change *c, struct hr_err *err)
{
	return lc_suppression_change(&pg_lc_backend, st, c, err);
}

/* $1 the tenant, $2..$4 the forms (missing ones repeat the first). */
static void forms_params(struct pg_params *p, const char *tenant_id, const char *const *v, size_t n)
{
	pp_text(p, tenant_id);
	for (size_t k = 0; k < STORE_RECIP_FORMS; k++)
		pp_text(p, v[k < n ? k : 0]);
}

int pg_recipient_supp(struct store *st, const char *tenant_id, const char *const *recips,
                      size_t nrec, int limit, struct suppression_row **cur, size_t *ncur,
                      struct supp_event_row **ev, size_t *nev)
{
	struct pg_store *s = (struct pg_store *)st;
	*cur = NULL;
	*ev = NULL;
	*ncur = *nev = 0;
	struct pg_params p = {0};
	if (!store_recipient_args_ok(tenant_id, nrec, limit))
		return HR_EINVAL;
	forms_params(&p, tenant_id, recips, nrec);
	PGresult *r;
	int rc = pg_read(s, P_RECIP_SUPP, -1,
	                 "SELECT tenant_id, channel, recipient, reason, created_at FROM suppression"
	                 " WHERE tenant_id = $1 AND recipient IN ($2, $3, $4)"
	                 " ORDER BY channel, recipient",
	                 &p, &r);
	if (rc)
		return rc;
	void *v;
	if ((rc = pg_rows_read(r, sizeof **cur, store_row_suppression, NULL, NULL, &v, ncur)))
		return rc;
	*cur = v;
	pp_i64(&p, limit);
	rc = pg_read(s, P_RECIP_SUPP_EV, -1,
	             "SELECT id, channel, recipient, action, reason, message_id, actor, at"
	             " FROM suppression_event WHERE tenant_id = $1 AND recipient IN ($2, $3, $4)"
	             " ORDER BY id DESC LIMIT $5",
	             &p, &r);
	if (rc == 0)
		rc = pg_rows_read(r, sizeof **ev, store_row_supp_event, NULL, NULL, &v, nev);
	if (rc) {
		free(*cur);
		*cur = NULL;
		*ncur = 0;
		return rc;
	}
	*ev = v;
	return 0;
}

int pg_recipient_inbound(struct store *st, const char *tenant_id, const char *const *senders,
                         size_t nrec, int limit, struct inbound_row **out, size_t *n)
{
	struct pg_store *s = (struct pg_store *)st;
	*out = NULL;
	*n = 0;
	struct pg_params p = {0};
	if (!store_recipient_args_ok(tenant_id, nrec, limit))
		return HR_EINVAL;
	forms_params(&p, tenant_id, senders, nrec);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_read(
	    s, P_RECIP_INBOUND, -1,
	    "SELECT i.id, i.account_id, coalesce(i.message_id, ''), coalesce(m.unit_id, ''),"
	    " i.sender, i.kind, i.text, i.payload, i.provider_at, i.received_at"
	    " FROM inbound i LEFT JOIN message m ON m.id = i.message_id"
	    " AND m.tenant_id = i.tenant_id"
	    " WHERE i.tenant_id = $1 AND i.sender IN ($2, $3, $4) ORDER BY i.id DESC LIMIT $5",
	    &p, &r);
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_inbound, NULL, store_row_inbound_clear, &v, n);
	*out = v;
	return rc;
}

/* account health: the queue depth from the partial claim index
 * (QUEUED rows only), bounded by cap. */
int pg_account_queue_depth(struct store *st, const char *account_id, int64_t cap, int64_t *n)
{
	*n = 0;
	if (!account_id || !*account_id || cap < 1)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_i64(&p, cap);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_QUEUE_DEPTH, -1,
	                 "SELECT count(*) FROM (SELECT 1 FROM message WHERE account_id = $1"
	                 " AND status = 0 LIMIT $2) q",
	                 &p, &r);
	if (rc)
		return rc;
	*n = PQntuples(r) > 0 ? pg_col_i64(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

/* ---- account pauses ---- */

int pg_pause_put(struct pg_store *s, const struct account_pause_row *p, int64_t now,
                 struct hr_err *err)
{
	char reason[sizeof p->reason];
	hr_utf8_copy(reason, p->reason, sizeof reason);
	struct pg_params q = {0};
	pp_text(&q, p->account_id);
	pp_text(&q, p->tenant_id);
	pp_text(&q, reason);
	pp_text(&q, p->actor);
	pp_i64(&q, now);
	return pg_exec(&s->w, P_PAUSE_PUT,
	               "INSERT INTO account_pause(account_id, tenant_id, reason, actor, at)"
	               " VALUES($1, $2, $3, $4, $5) ON CONFLICT(account_id) DO UPDATE SET"
	               " reason = excluded.reason, actor = excluded.actor, at = excluded.at",
	               &q, NULL, err, "account_pause");
}

int pg_pause_delete(struct pg_store *s, const char *account_id, struct hr_err *err)
{
	struct pg_params q = {0};
	pp_text(&q, account_id);
	PGresult *r;
	int rc = pg_exec(&s->w, P_PAUSE_DELETE, "DELETE FROM account_pause WHERE account_id = $1",
	                 &q, &r, err, "account_pause");
	if (rc)
		return rc;
	int deleted = atoi(PQcmdTuples(r)) > 0;
	PQclear(r);
	return deleted;
}

int pg_account_pause_set(struct store *st, const struct account_pause_row *p, bool paused,
                         const struct audit_row *a, struct hr_err *err)
{
	return lc_account_pause_set(&pg_lc_backend, st, p, paused, a, err);
}

int pg_account_pauses(struct store *st, struct account_pause_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	struct pg_params q = {0};
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_PAUSES, -1,
	                 "SELECT account_id, tenant_id, reason, actor, at FROM account_pause"
	                 " ORDER BY account_id",
	                 &q, &r);
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_pause, NULL, NULL, &v, n);
	*out = v;
	return rc;
}

/* ---- daily counters (store/daily.h) ---- */

/* The job's counters, replacing what it noted before (a rerun). */
int pg_daily_note(struct pg_store *s, const struct wr_job *job, const struct daily_acc *d,
                  struct hr_err *err)
{
	size_t i = s->ndd;
	while (i > 0 && s->dd[i - 1].job != job)
		i--;
	if (i == 0) {
		if (s->ndd == s->capdd) {
			size_t cap = s->capdd ? s->capdd * 2 : 64;
			struct pg_dd *n = realloc(s->dd, cap * sizeof *n);
			if (!n)
				return hr_fail(err, HR_ENOMEM, "daily_count", "out of memory");
			memset(n + s->capdd, 0, (cap - s->capdd) * sizeof *n);
			s->dd = n;
			s->capdd = cap;
		}
		i = ++s->ndd;
		s->dd[i - 1].job = job;
	}
	if (!daily_copy(&s->dd[i - 1].d, d))
		return hr_fail(err, HR_ENOMEM, "daily_count", "out of memory");
	return 0;
}

void pg_daily_reset(struct pg_store *s)
{
	for (size_t i = 0; i < s->ndd; i++)
		daily_clear(&s->dd[i].d);
	s->ndd = 0;
}

/* Appends v to an array literal ("{...}"): each element quoted, '"' and
 * '\\' escaped, so any text is one element. */
static void arr_text(struct hr_buf *b, const char *v, bool first)
{
	hr_buf_put(b, first ? "\"" : ",\"", first ? 1 : 2);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			hr_buf_put(b, "\\", 1);
		hr_buf_put(b, p, 1);
	}
	hr_buf_put(b, "\"", 1);
}

/* One multi-row upsert of the group's counters (the jobs that succeeded)
 * into this node's stripe, before COMMIT: a failure fails the commit. */
int pg_daily_flush(struct pg_store *s, struct hr_err *err)
{
	struct daily_acc t = {0};
	for (size_t i = 0; i < s->ndd; i++)
		if (s->dd[i].job->rc == 0)
			daily_merge(&t, &s->dd[i].d);
	pg_daily_reset(s);
	if (t.oom) {
		daily_free(&t);
		return hr_fail(err, HR_ENOMEM, "daily_count", "out of memory");
	}
	size_t k = 0;
	struct hr_buf ten = {0}, ch = {0}, day = {0}, kind = {0}, n = {0}, code = {0};
	for (size_t i = 0; i < t.n; i++) {
		const struct daily_ent *e = &t.v[i];
		if (!e->n)
			continue;
		bool first = k++ == 0;
		arr_text(&ten, e->tenant_id, first);
		arr_text(&ch, e->channel, first);
		hr_buf_printf(&day, "%s%d", first ? "" : ",", (int)e->day);
		hr_buf_printf(&kind, "%s%d", first ? "" : ",", (int)e->kind);
		hr_buf_printf(&n, "%s%lld", first ? "" : ",", (long long)e->n);
		arr_text(&code, e->code, first);
	}
	daily_free(&t);
	int rc = 0;
	if (k) {
		struct hr_buf *bufs[] = {&ten, &ch, &day, &kind, &n, &code};
		char *lits[6] = {0};
		bool oom = false;
		for (int b = 0; b < 6; b++) {
			size_t len = bufs[b]->len;
			lits[b] = malloc(len + 3);
			if (!lits[b] || bufs[b]->oom) {
				oom = true;
				continue;
			}
			lits[b][0] = '{';
			memcpy(lits[b] + 1, bufs[b]->p, len);
			lits[b][len + 1] = '}';
			lits[b][len + 2] = '\0';
		}
		if (oom) {
			rc = hr_fail(err, HR_ENOMEM, "daily_count", "out of memory");
		} else {
			struct pg_params p = {0};
			for (int b = 0; b < 6; b++)
				pp_text(&p, lits[b]);
			pp_i64(&p, s->stripe);
			rc = pg_exec(
			    &s->w, P_DAILY_COUNT_ADD,
			    "INSERT INTO daily_count(tenant_id, channel, day, kind, code, stripe, "
			    "n)"
			    " SELECT t, c, d, k, e, $7, n FROM unnest($1::text[], $2::text[],"
			    " $3::int[], $4::smallint[], $5::bigint[], $6::text[])"
			    " AS u(t, c, d, k, n, e)"
			    " ON CONFLICT (tenant_id, day, channel, kind, code, stripe)"
			    " DO UPDATE SET n = daily_count.n + excluded.n",
			    &p, NULL, err, "daily_count");
		}
		for (int b = 0; b < 6; b++)
			free(lits[b]);
	}
	free(ten.p);
	free(ch.p);
	free(day.p);
	free(kind.p);
	free(n.p);
	free(code.p);
	return rc;
}

int pg_daily_counts(struct store *st, const char *tenant_id, int32_t day_from, int32_t day_to,
                    struct daily_ent **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!tenant_id || !*tenant_id || day_to < day_from || day_to - day_from > 366)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, day_from);
	pp_i64(&p, day_to);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_DAILY, -1,
	                 "SELECT channel, day, kind, code, sum(n)::bigint FROM daily_count"
	                 " WHERE tenant_id = $1 AND day BETWEEN $2 AND $3"
	                 " GROUP BY day, channel, kind, code ORDER BY day, channel, kind, code",
	                 &p, &r);
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_daily, (void *)tenant_id, NULL, &v, n);
	*out = v;
	return rc;
}
