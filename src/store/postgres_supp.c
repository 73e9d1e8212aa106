/*
 * postgres_supp.c - the suppression list (recipients who opted out, per
 * tenant and channel) and recipient aliases (addresses that moved, per
 * account): the writer-side helpers lifecycle.c uses through postgres_tx.c,
 * and the API's operations. The same rules as sqlite_supp.c.
 */
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/postgres_rows.h"

/* 1 if the query returned a row, 0 if none, or the error. */
static int exists(struct pg_store *s, enum pg_slot slot, const char *sql, const struct pg_params *p,
                  struct hr_err *err, const char *field, char *copy0, size_t copy_size)
{
	PGresult *r;
	int rc = pg_exec(&s->w, slot, sql, p, &r, err, field);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found && copy0)
		pg_col_copy(r, 0, 0, copy0, copy_size);
	PQclear(r);
	return found;
}

int pg_supp_put(struct pg_store *s, const char *tenant_id, const char *channel,
                const char *recipient, const char *reason, int64_t now, struct hr_err *err)
{
	char clean[PG_REASON_MAX];
	hr_utf8_copy(clean, reason ? reason : "", sizeof clean);
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_text(&p, channel);
	pp_text(&p, recipient);
	pp_text(&p, clean);
	pp_i64(&p, now);
	return pg_exec(&s->w, P_SUPP_PUT,
	               "INSERT INTO suppression(tenant_id, channel, recipient, reason, created_at)"
	               " VALUES($1, $2, $3, $4, $5) ON CONFLICT(tenant_id, channel, recipient)"
	               " DO UPDATE SET reason = excluded.reason",
	               &p, NULL, err, "suppression");
}

int pg_supp_delete(struct pg_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, int *deleted, struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_text(&p, channel);
	pp_text(&p, recipient);
	PGresult *r;
	int rc = pg_exec(&s->w, P_SUPP_DELETE,
	                 "DELETE FROM suppression WHERE tenant_id = $1 AND channel = $2"
	                 " AND recipient = $3",
	                 &p, &r, err, "suppression");
	if (rc)
		return rc;
	if (deleted)
		*deleted = atoi(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

int pg_supp_reason(struct pg_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, char reason[PG_REASON_MAX], struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_text(&p, channel);
	pp_text(&p, recipient);
	return exists(s, P_SUPP_GET,
	              "SELECT reason FROM suppression WHERE tenant_id = $1 AND channel = $2"
	              " AND recipient = $3",
	              &p, err, "suppression", reason, PG_REASON_MAX);
}

int pg_supp_any(struct pg_store *s, const char *tenant_id, const char *channel, struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_text(&p, channel);
	return exists(s, P_SUPP_ANY,
	              "SELECT 1 FROM suppression WHERE tenant_id = $1 AND channel = $2 LIMIT 1", &p,
	              err, "suppression", NULL, 0);
}

/*
 * old -> new, kept one hop deep (see sqlite_supp.c's sq_alias_put): when new
 * had itself moved on, old maps straight to its target; aliases that led to
 * old are repointed; a reversal drops the stale row instead of a loop.
 */
int pg_alias_put(struct pg_store *s, const char *account_id, const char *old, const char *new_addr,
                 int64_t now, struct hr_err *err)
{
	char target[HR_ADDR_MAX], next[HR_ADDR_MAX];
	hr_strlcpy(target, new_addr, sizeof target);
	int rc = pg_alias_get(s, account_id, new_addr, next, err);
	if (rc < 0)
		return rc;
	struct pg_params p = {0};
	if (rc == 1 && strcmp(next, old) != 0) {
		hr_strlcpy(target, next, sizeof target);
	} else if (rc == 1) {
		pp_text(&p, account_id);
		pp_text(&p, new_addr);
		if ((rc = pg_exec(&s->w, P_ALIAS_DELETE,
		                  "DELETE FROM recipient_alias WHERE account_id = $1 AND old = $2",
		                  &p, NULL, err, "recipient_alias")))
			return rc;
	}
	p = (struct pg_params){0};
	pp_text(&p, account_id);
	pp_text(&p, old);
	pp_text(&p, target);
	if ((rc = pg_exec(&s->w, P_ALIAS_REPOINT,
	                  "UPDATE recipient_alias SET new = $3 WHERE account_id = $1 AND new = $2",
	                  &p, NULL, err, "recipient_alias")))
		return rc;
	pp_i64(&p, now);
	return pg_exec(&s->w, P_ALIAS_PUT,
	               "INSERT INTO recipient_alias(account_id, old, new, created_at)"
	               " VALUES($1, $2, $3, $4) ON CONFLICT(account_id, old) DO UPDATE SET"
	               " new = excluded.new, created_at = excluded.created_at",
	               &p, NULL, err, "recipient_alias");
}

int pg_alias_get(struct pg_store *s, const char *account_id, const char *old,
                 char new_addr[HR_ADDR_MAX], struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_text(&p, old);
	return exists(s, P_ALIAS_GET,
	              "SELECT new FROM recipient_alias WHERE account_id = $1 AND old = $2", &p, err,
	              "recipient_alias", new_addr, HR_ADDR_MAX);
}

int pg_alias_any(struct pg_store *s, const char *account_id, struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, account_id);
	return exists(s, P_ALIAS_ANY, "SELECT 1 FROM recipient_alias WHERE account_id = $1 LIMIT 1",
	              &p, err, "recipient_alias", NULL, 0);
}

/* ---------------------------------------------------------------------------
 * The API-facing operations.
 * ------------------------------------------------------------------------- */

/* The API-facing writes go through lc_supp_change (lc_supp.c) like every
 * other change of the list, so each has its history row; these two keep
 * the older signatures (actor "api"). */
int pg_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason, struct hr_err *err)
{
	return store_suppression_put(st, tenant_id, channel, recipient, reason, err);
}

int pg_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, struct hr_err *err)
{
	return store_suppression_delete(st, tenant_id, channel, recipient, err);
}

int pg_suppression_list(struct store *st, const char *tenant_id, const char *channel,
                        struct suppression_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!tenant_id || !*tenant_id)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	PGresult *r;
	int rc;
	if (channel) {
		pp_text(&p, channel);
		rc = pg_read(
		    (struct pg_store *)st, P_SUPP_CHANNEL, -1,
		    "SELECT tenant_id, channel, recipient, reason, created_at FROM suppression"
		    " WHERE tenant_id = $1 AND channel = $2 ORDER BY channel, recipient",
		    &p, &r);
	} else {
		rc = pg_read(
		    (struct pg_store *)st, P_SUPP_ALL, -1,
		    "SELECT tenant_id, channel, recipient, reason, created_at FROM suppression"
		    " WHERE tenant_id = $1 ORDER BY channel, recipient",
		    &p, &r);
	}
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_suppression, NULL, NULL, &v, n);
	*out = v;
	return rc;
}
