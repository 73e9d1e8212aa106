/*
 * sqlite_supp.c - the suppression list (recipients who opted out, per tenant
 * and channel) and recipient aliases (addresses that moved, per account).
 *
 * Both tables are keyed for the claim: it looks each claimed message up by
 * primary key, after one existence probe per claim that lets the common case
 * (a tenant with no opt-outs, an account with no moved addresses) skip the
 * per-message lookups entirely. The writer-side helpers here run inside
 * writer jobs of sqlite_msg.c (claim, send outcomes) and sqlite_hook.c
 * (inbound STOP/START); the API-facing operations are jobs of their own.
 */
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/sqlite_rows.h"

/* ---------------------------------------------------------------------------
 * Writer-side helpers.
 * ------------------------------------------------------------------------- */

int sq_supp_put(struct sq_store *s, const char *tenant_id, const char *channel,
                const char *recipient, const char *reason, int64_t now, struct hr_err *err)
{
	char clean[SQ_REASON_MAX];
	hr_utf8_copy(clean, reason ? reason : "", sizeof clean);
	sqlite3_stmt *st = sq_wstmt(s, W_SUPP_PUT,
		"INSERT INTO suppression(tenant_id, channel, recipient, reason, created_at)"
		" VALUES(?1, ?2, ?3, ?4, ?5)"
		" ON CONFLICT(tenant_id, channel, recipient) DO UPDATE SET"
		" reason = excluded.reason");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "suppression");
	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, recipient, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, clean, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now);
	return sq_step_done(s, st, err, "suppression");
}

int sq_supp_delete(struct sq_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, int *deleted, struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_SUPP_DELETE,
		"DELETE FROM suppression WHERE tenant_id = ?1 AND channel = ?2 AND recipient = ?3");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "suppression");
	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, recipient, -1, SQLITE_STATIC);
	int rc = sq_step_done(s, st, err, "suppression");
	if (rc == 0 && deleted)
		*deleted = sqlite3_changes(s->wdb);
	return rc;
}

int sq_supp_reason(struct sq_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, char reason[SQ_REASON_MAX], struct hr_err *err)
{
	sqlite3_stmt *q = sq_wstmt(s, W_SUPP_GET,
		"SELECT reason FROM suppression"
		" WHERE tenant_id = ?1 AND channel = ?2 AND recipient = ?3");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "suppression");
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, recipient, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		sq_col_copy(q, 0, reason, SQ_REASON_MAX);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, err, "suppression");
}

int sq_supp_any(struct sq_store *s, const char *tenant_id, const char *channel,
                struct hr_err *err)
{
	sqlite3_stmt *q = sq_wstmt(s, W_SUPP_ANY,
		"SELECT 1 FROM suppression WHERE tenant_id = ?1 AND channel = ?2 LIMIT 1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "suppression");
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, channel, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, err, "suppression");
}

/*
 * old -> new, kept one hop deep so a claim needs a single lookup: when new
 * had itself moved on (new -> y), old maps straight to y; aliases that led
 * to old are repointed to the same target. A reversal (the table says
 * new -> old, the provider now says old -> new) drops the stale row instead
 * of storing a loop that would bounce messages between the two forever.
 */
int sq_alias_put(struct sq_store *s, const char *account_id, const char *old,
                 const char *new_addr, int64_t now, struct hr_err *err)
{
	char target[HR_ADDR_MAX], next[HR_ADDR_MAX];
	hr_strlcpy(target, new_addr, sizeof target);
	int rc = sq_alias_get(s, account_id, new_addr, next, err);
	if (rc < 0)
		return rc;
	if (rc == 1 && strcmp(next, old) != 0) {
		hr_strlcpy(target, next, sizeof target);
	} else if (rc == 1) {
		sqlite3_stmt *d = sq_wstmt(s, W_ALIAS_DELETE,
			"DELETE FROM recipient_alias WHERE account_id = ?1 AND old = ?2");
		if (!d)
			return sq_fail(s->wdb, SQLITE_ERROR, err, "recipient_alias");
		sqlite3_bind_text(d, 1, account_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 2, new_addr, -1, SQLITE_STATIC);
		if ((rc = sq_step_done(s, d, err, "recipient_alias")))
			return rc;
	}
	sqlite3_stmt *u = sq_wstmt(s, W_ALIAS_REPOINT,
		"UPDATE recipient_alias SET new = ?3 WHERE account_id = ?1 AND new = ?2");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "recipient_alias");
	sqlite3_bind_text(u, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 2, old, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 3, target, -1, SQLITE_STATIC);
	if ((rc = sq_step_done(s, u, err, "recipient_alias")))
		return rc;
	sqlite3_stmt *st = sq_wstmt(s, W_ALIAS_PUT,
		"INSERT INTO recipient_alias(account_id, old, new, created_at)"
		" VALUES(?1, ?2, ?3, ?4)"
		" ON CONFLICT(account_id, old) DO UPDATE SET new = excluded.new,"
		" created_at = excluded.created_at");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "recipient_alias");
	sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, old, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	return sq_step_done(s, st, err, "recipient_alias");
}

int sq_alias_get(struct sq_store *s, const char *account_id, const char *old,
                 char new_addr[HR_ADDR_MAX], struct hr_err *err)
{
	sqlite3_stmt *q = sq_wstmt(s, W_ALIAS_GET,
		"SELECT new FROM recipient_alias WHERE account_id = ?1 AND old = ?2");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "recipient_alias");
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, old, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		sq_col_copy(q, 0, new_addr, HR_ADDR_MAX);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, err, "recipient_alias");
}

int sq_alias_any(struct sq_store *s, const char *account_id, struct hr_err *err)
{
	sqlite3_stmt *q = sq_wstmt(s, W_ALIAS_ANY,
		"SELECT 1 FROM recipient_alias WHERE account_id = ?1 LIMIT 1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "recipient_alias");
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, err, "recipient_alias");
}

/* ---------------------------------------------------------------------------
 * The API-facing operations.
 * ------------------------------------------------------------------------- */

/* The API-facing writes go through lc_supp_change (lc_supp.c) like every
 * other change of the list, so each has its history row; these two keep
 * the older signatures (actor "api"). */
int sq_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason, struct hr_err *err)
{
	return store_suppression_put(st, tenant_id, channel, recipient, reason, err);
}

int sq_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, struct hr_err *err)
{
	return store_suppression_delete(st, tenant_id, channel, recipient, err);
}

int sq_suppression_list(struct store *st, const char *tenant_id, const char *channel,
                        struct suppression_row **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (!tenant_id || !*tenant_id)
		return HR_EINVAL;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	/* Primary-key order: the rows come straight from the index. */
	sqlite3_stmt *q = channel
		? sq_rstmt(r, R_SUPP_CHANNEL, "SELECT tenant_id, channel, recipient, reason,"
		           " created_at FROM suppression WHERE tenant_id = ?1 AND channel = ?2"
		           " ORDER BY channel, recipient")
		: sq_rstmt(r, R_SUPP_ALL, "SELECT tenant_id, channel, recipient, reason,"
		           " created_at FROM suppression WHERE tenant_id = ?1"
		           " ORDER BY channel, recipient");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	if (channel)
		sqlite3_bind_text(q, 2, channel, -1, SQLITE_STATIC);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_suppression, NULL, NULL, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}
