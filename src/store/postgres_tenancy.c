/*
 * postgres_tenancy.c - tenants, business units, API keys and the admin
 * audit log (store.h, "tenancy"); the same statements as
 * sqlite_tenancy.c. Each write job runs its change and its audit row in the
 * writer's savepoint for the job: both land or neither does.
 */
#include <stdlib.h>
#include <string.h>

#include "store/argcheck.h"
#include "store/postgres_rows.h"

static int audit_insert(struct pg_store *s, const struct audit_row *a, struct hr_err *err)
{
	if (!a)
		return 0;
	struct pg_params p = {0};
	pp_text(&p, a->tenant_id);
	pp_text(&p, a->actor);
	pp_i64(&p, a->at ? a->at : s->gnow);
	pp_text(&p, a->action);
	pp_text(&p, a->object);
	pp_opt(&p, a->before);
	pp_opt(&p, a->after);
	return pg_exec(
	    &s->w, P_AUDIT_INSERT,
	    "INSERT INTO admin_audit(tenant_id, actor, at, action, object, before, after)"
	    " VALUES($1, $2, $3, $4, $5, $6, $7)",
	    &p, NULL, err, "admin_audit");
}

struct job_admin {
	struct wr_job j;
	int (*run)(struct pg_store *s, struct job_admin *a);
	const struct audit_row *audit;
	const void *row;
	const char *tenant_id, *id;
	bool flag;
	char *hash_out;
};

static int run_admin(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_admin *a = (struct job_admin *)j;
	int rc = a->run(s, a);
	if (rc == 0)
		rc = audit_insert(s, a->audit, &j->err);
	return rc;
}

static int admin_do(struct pg_store *s, struct job_admin *a, struct hr_err *err)
{
	a->j.run = run_admin;
	return wr_run_blocking(&s->wr, &a->j, err);
}

/* A write's affected row count. */
static int changed(PGresult *r)
{
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	return n;
}

/* ---- tenants ---- */

static int run_tenant_create(struct pg_store *s, struct job_admin *a)
{
	const struct tenant_info *t = a->row;
	struct pg_params p = {0};
	pp_text(&p, t->id);
	pp_text(&p, t->name[0] ? t->name : t->id);
	pp_i64(&p, s->gnow);
	pp_bool(&p, t->disabled);
	PGresult *r;
	int rc = pg_exec(&s->w, P_TENANT_CREATE,
	                 "INSERT INTO tenant(id, name, created_at, disabled) VALUES($1, $2, $3, $4)"
	                 " ON CONFLICT(id) DO NOTHING",
	                 &p, &r, &a->j.err, "tenant");
	if (rc == 0 && changed(r) == 0)
		rc = hr_fail(&a->j.err, HR_ECONFLICT, "id", "tenant '%s' exists", t->id);
	return rc;
}

int pg_tenant_create(struct store *st, const struct tenant_info *t, const struct audit_row *au,
                     struct hr_err *err)
{
	if (!t || !t->id[0])
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_tenant_create, .audit = au, .row = t};
	return admin_do((struct pg_store *)st, &a, err);
}

#define PG_TENANT_COLS                                                                             \
	"id, name, disabled, created_at, rate_milli, rate_burst, daily_cap, campaign_cap"


int pg_tenant_get(struct store *st, const char *id, struct tenant_info *out)
{
	struct pg_params p = {0};
	pp_text(&p, id ? id : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_TENANT_GET, -1,
	                 "SELECT " PG_TENANT_COLS " FROM tenant WHERE id = $1", &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0)
		rc = HR_ENOTFOUND;
	else
		pg_row_one(r, store_row_tenant, out, sizeof *out);
	PQclear(r);
	return rc;
}

int pg_tenant_list(struct store *st, struct tenant_info **out, size_t *n)
{
	PGresult *r;
	struct pg_params p = {0};
	int rc = pg_read((struct pg_store *)st, P_TENANT_LIST, -1,
	                 "SELECT " PG_TENANT_COLS " FROM tenant ORDER BY id", &p, &r);
	if (rc) {
		*out = NULL;
		*n = 0;
		return rc;
	}
	return pg_rows_read(r, sizeof **out, store_row_tenant, NULL, NULL, (void **)out, n);
}

static int run_tenant_disable(struct pg_store *s, struct job_admin *a)
{
	struct pg_params p = {0};
	pp_bool(&p, a->flag);
	pp_text(&p, a->tenant_id);
	PGresult *r;
	int rc = pg_exec(&s->w, P_TENANT_DISABLE, "UPDATE tenant SET disabled = $1 WHERE id = $2",
	                 &p, &r, &a->j.err, "tenant");
	if (rc == 0 && changed(r) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "id", "no such tenant");
	return rc;
}

int pg_tenant_set_disabled(struct store *st, const char *id, bool disabled,
                           const struct audit_row *au, struct hr_err *err)
{
	if (!id || !*id)
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {
	    .run = run_tenant_disable, .audit = au, .tenant_id = id, .flag = disabled};
	return admin_do((struct pg_store *)st, &a, err);
}

/* ---- limits ---- */

static void pp_limit(struct pg_params *p, int64_t v)
{
	if (v > 0)
		pp_i64(p, v);
	else
		pp_text(p, NULL);
}

static int run_tenant_limits(struct pg_store *s, struct job_admin *a)
{
	const struct tenant_limits *l = a->row;
	struct pg_params p = {0};
	pp_text(&p, a->tenant_id);
	pp_limit(&p, l->rate_milli);
	pp_limit(&p, l->burst);
	pp_limit(&p, l->daily_cap);
	pp_limit(&p, l->campaign_cap);
	PGresult *r;
	int rc = pg_exec(&s->w, P_TENANT_LIMITS,
	                 "UPDATE tenant SET rate_milli = $2::bigint, rate_burst = $3::bigint,"
	                 " daily_cap = $4::bigint, campaign_cap = $5::bigint WHERE id = $1",
	                 &p, &r, &a->j.err, "tenant");
	if (rc == 0 && changed(r) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "id", "no such tenant");
	return rc;
}

int pg_tenant_set_limits(struct store *st, const char *id, const struct tenant_limits *l,
                         const struct audit_row *au, struct hr_err *err)
{
	if (!id || !*id)
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (!l || l->rate_milli < 0 || l->burst < 0 || l->daily_cap < 0 || l->campaign_cap < 0)
		return hr_fail(err, HR_EINVAL, "limits", "limits cannot be negative");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_tenant_limits, .audit = au, .tenant_id = id, .row = l};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_tenant_usage(struct store *st, const char *tenant_id, int64_t day, int64_t *count)
{
	*count = 0;
	struct pg_params p = {0};
	pp_text(&p, tenant_id ? tenant_id : "");
	pp_i64(&p, day);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_TENANT_USAGE, -1,
	                 "SELECT count FROM tenant_daily WHERE tenant_id = $1 AND day = $2", &p,
	                 &r);
	if (rc)
		return rc;
	if (PQntuples(r))
		*count = pg_col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

/* ---- units ---- */

static int run_unit_create(struct pg_store *s, struct job_admin *a)
{
	const struct unit_row *u = a->row;
	struct pg_params p = {0};
	pp_text(&p, u->tenant_id);
	PGresult *r;
	int rc = pg_exec(&s->w, P_UNIT_TENANT_CHECK, "SELECT 1 FROM tenant WHERE id = $1", &p, &r,
	                 &a->j.err, "tenant");
	if (rc)
		return rc;
	int found = PQntuples(r);
	PQclear(r);
	if (!found)
		return hr_fail(&a->j.err, HR_ENOTFOUND, "tenant", "no such tenant");
	struct pg_params q = {0};
	pp_text(&q, u->tenant_id);
	pp_text(&q, u->id);
	pp_text(&q, u->name[0] ? u->name : u->id);
	pp_bool(&q, u->disabled);
	pp_i64(&q, s->gnow);
	rc = pg_exec(&s->w, P_UNIT_CREATE,
	             "INSERT INTO business_unit(tenant_id, id, name, disabled, created_at)"
	             " VALUES($1, $2, $3, $4, $5) ON CONFLICT(tenant_id, id) DO NOTHING",
	             &q, &r, &a->j.err, "unit");
	if (rc == 0 && changed(r) == 0) {
		if (a->flag) {
			a->audit = NULL; /* nothing changed: nothing to record */
			return 0;
		}
		rc = hr_fail(&a->j.err, HR_ECONFLICT, "id", "unit '%s' exists", u->id);
	}
	return rc;
}

int pg_unit_create(struct store *st, const struct unit_row *u, bool if_absent,
                   const struct audit_row *au, struct hr_err *err)
{
	if (!u || !u->tenant_id[0] || !u->id[0])
		return hr_fail(err, HR_EINVAL, "id", "unit id or tenant is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_unit_create, .audit = au, .row = u, .flag = if_absent};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_unit_get(struct store *st, const char *tenant_id, const char *id, struct unit_row *out)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id ? tenant_id : "");
	pp_text(&p, id ? id : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_UNIT_GET, -1,
	                 "SELECT tenant_id, id, name, disabled, created_at FROM business_unit"
	                 " WHERE tenant_id = $1 AND id = $2",
	                 &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0)
		rc = HR_ENOTFOUND;
	else
		pg_row_one(r, store_row_unit, out, sizeof *out);
	PQclear(r);
	return rc;
}

int pg_unit_list(struct store *st, const char *tenant_id, struct unit_row **out, size_t *n)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id ? tenant_id : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_UNIT_LIST, -1,
	                 "SELECT tenant_id, id, name, disabled, created_at FROM business_unit"
	                 " WHERE tenant_id = $1 ORDER BY id",
	                 &p, &r);
	if (rc) {
		*out = NULL;
		*n = 0;
		return rc;
	}
	return pg_rows_read(r, sizeof **out, store_row_unit, NULL, NULL, (void **)out, n);
}

static int run_unit_disable(struct pg_store *s, struct job_admin *a)
{
	struct pg_params p = {0};
	pp_bool(&p, a->flag);
	pp_text(&p, a->tenant_id);
	pp_text(&p, a->id);
	PGresult *r;
	int rc = pg_exec(&s->w, P_UNIT_DISABLE,
	                 "UPDATE business_unit SET disabled = $1 WHERE tenant_id = $2 AND id = $3",
	                 &p, &r, &a->j.err, "unit");
	if (rc == 0 && changed(r) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "id", "no such unit");
	return rc;
}

int pg_unit_set_disabled(struct store *st, const char *tenant_id, const char *id, bool disabled,
                         const struct audit_row *au, struct hr_err *err)
{
	if (!tenant_id || !*tenant_id || !id || !*id)
		return hr_fail(err, HR_EINVAL, "id", "unit id or tenant is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_unit_disable,
	                      .audit = au,
	                      .tenant_id = tenant_id,
	                      .id = id,
	                      .flag = disabled};
	return admin_do((struct pg_store *)st, &a, err);
}

/* ---- keys ---- */

#define KEY_COLS                                                                                   \
	"k.key_hash, coalesce(k.prefix, ''), k.tenant_id, coalesce(k.unit_id, ''),"                \
	" coalesce(k.label, ''), coalesce(k.scopes, '*'), coalesce(k.created_by, 'config'),"       \
	" k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.api_created"

static int run_key_create(struct pg_store *s, struct job_admin *a)
{
	const struct key_row *k = a->row;
	PGresult *r;
	int rc;
	if (k->unit_id[0]) {
		struct pg_params p = {0};
		pp_text(&p, k->tenant_id);
		pp_text(&p, k->unit_id);
		rc = pg_exec(&s->w, P_KEY_UNIT_CHECK,
		             "SELECT 1 FROM business_unit WHERE tenant_id = $1 AND id = $2", &p, &r,
		             &a->j.err, "unit");
		if (rc)
			return rc;
		int found = PQntuples(r);
		PQclear(r);
		if (!found)
			return hr_fail(&a->j.err, HR_ENOTFOUND, "unit", "no such unit");
	}
	struct pg_params p = {0};
	pp_text(&p, k->hash);
	pp_text(&p, k->tenant_id);
	pp_opt(&p, k->label);
	pp_i64(&p, s->gnow);
	pp_opt(&p, k->prefix);
	pp_opt(&p, k->unit_id);
	pp_opt(&p, strcmp(k->scopes, "*") == 0 ? NULL : k->scopes);
	pp_opt(&p, k->created_by);
	pp_i64(&p, k->expires_at);
	if (a->flag)
		return pg_exec(
		    &s->w, P_KEY_SEED,
		    "INSERT INTO api_key(key_hash, tenant_id, label, created_at, prefix,"
		    " unit_id, scopes, created_by, expires_at, api_created)"
		    " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, false)"
		    " ON CONFLICT(key_hash) DO UPDATE SET tenant_id = excluded.tenant_id,"
		    " label = excluded.label, prefix = excluded.prefix,"
		    " unit_id = excluded.unit_id, scopes = excluded.scopes,"
		    " expires_at = excluded.expires_at",
		    &p, NULL, &a->j.err, "api_key");
	return pg_exec(&s->w, P_KEY_CREATE,
	               "INSERT INTO api_key(key_hash, tenant_id, label, created_at, prefix,"
	               " unit_id, scopes, created_by, expires_at, api_created)"
	               " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, true)",
	               &p, NULL, &a->j.err, "api_key");
}

int pg_key_create(struct store *st, const struct key_row *k, const struct audit_row *au,
                  struct hr_err *err)
{
	if (store_key_check(k, err) || store_audit_check(au, err))
		return err->code;
	if (!k->prefix[0])
		return hr_fail(err, HR_EINVAL, "prefix", "key has no prefix");
	struct job_admin a = {.run = run_key_create, .audit = au, .row = k};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_key_seed(struct store *st, const struct key_row *k, struct hr_err *err)
{
	if (store_key_check(k, err))
		return err->code;
	struct job_admin a = {.run = run_key_create, .row = k, .flag = true};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_key_lookup(struct store *st, const char *hash, struct key_row *out)
{
	struct pg_params p = {0};
	pp_text(&p, hash ? hash : "");
	PGresult *r;
	int rc =
	    pg_read((struct pg_store *)st, P_KEY_LOOKUP, -1,
	            "SELECT " KEY_COLS ", coalesce(t.disabled, true),"
	            " coalesce(u.disabled, k.unit_id IS NOT NULL)"
	            " FROM api_key k LEFT JOIN tenant t ON t.id = k.tenant_id"
	            " LEFT JOIN business_unit u ON u.tenant_id = k.tenant_id AND u.id = k.unit_id"
	            " WHERE k.key_hash = $1",
	            &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0) {
		rc = HR_ENOTFOUND;
	} else {
		pg_row_one(r, store_row_key, out, sizeof *out);
		out->tenant_disabled = pg_col_bool(r, 0, 12);
		out->unit_disabled = pg_col_bool(r, 0, 13);
	}
	PQclear(r);
	return rc;
}

int pg_key_list(struct store *st, const char *tenant_id, struct key_row **out, size_t *n)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_KEY_LIST, -1,
	                 "SELECT " KEY_COLS " FROM api_key k WHERE ($1::text IS NULL OR"
	                 " k.tenant_id = $1) ORDER BY k.created_at DESC, k.key_hash",
	                 &p, &r);
	if (rc) {
		*out = NULL;
		*n = 0;
		return rc;
	}
	return pg_rows_read(r, sizeof **out, store_row_key, NULL, NULL, (void **)out, n);
}

static int run_key_revoke(struct pg_store *s, struct job_admin *a)
{
	struct pg_params p = {0};
	pp_i64(&p, s->gnow);
	pp_text(&p, a->id);
	pp_text(&p, a->tenant_id);
	PGresult *r;
	int rc = pg_exec(&s->w, P_KEY_REVOKE,
	                 "UPDATE api_key SET revoked_at = $1 WHERE prefix = $2 AND revoked_at = 0"
	                 " AND ($3::text IS NULL OR tenant_id = $3) RETURNING key_hash",
	                 &p, &r, &a->j.err, "api_key");
	if (rc)
		return rc;
	int found = PQntuples(r);
	if (found && a->hash_out)
		pg_col_copy(r, 0, 0, a->hash_out, 65);
	PQclear(r);
	if (!found)
		return hr_fail(&a->j.err, HR_ENOTFOUND, "prefix", "no live key with this prefix");
	return 0;
}

int pg_key_revoke(struct store *st, const char *tenant_id, const char *prefix,
                  const struct audit_row *au, char hash[65], struct hr_err *err)
{
	if (!prefix || !*prefix)
		return hr_fail(err, HR_EINVAL, "prefix", "key prefix is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_key_revoke,
	                      .audit = au,
	                      .tenant_id = tenant_id,
	                      .id = prefix,
	                      .hash_out = hash};
	return admin_do((struct pg_store *)st, &a, err);
}

struct job_touch {
	struct wr_job j;
	char hash[65];
	int64_t at;
};

static int run_key_touch(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_touch *t = (struct job_touch *)j;
	struct pg_params p = {0};
	pp_text(&p, t->hash);
	pp_i64(&p, t->at);
	return pg_exec(&s->w, P_KEY_TOUCH,
	               "UPDATE api_key SET last_used_at = $2 WHERE key_hash = $1"
	               " AND last_used_at < $2",
	               &p, NULL, &j->err, "api_key");
}

int pg_key_touch(struct store *st, const char *hash, int64_t at, store_done_fn cb, void *arg)
{
	if (!hash || strlen(hash) != 64)
		return HR_EINVAL;
	struct job_touch t = {.j = {.run = run_key_touch}, .at = at};
	memcpy(t.hash, hash, 65);
	struct pg_store *s = (struct pg_store *)st;
	if (cb)
		return wr_run_async(&s->wr, &t.j, sizeof t, cb, arg);
	return wr_run_blocking(&s->wr, &t.j, NULL);
}

/* ---- audit ---- */

static int run_audit_only(struct pg_store *s, struct job_admin *a)
{
	(void)s, (void)a;
	return 0;
}

int pg_audit_append(struct store *st, const struct audit_row *au, struct hr_err *err)
{
	if (!au)
		return hr_fail(err, HR_EINVAL, "audit", "no audit row");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_audit_only, .audit = au};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_audit_list(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                  struct audit_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 1000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, before_id > 0 ? before_id : INT64_MAX);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_AUDIT_LIST, -1,
	                 "SELECT id, tenant_id, actor, at, action, object, before, after"
	                 " FROM admin_audit WHERE ($1::text IS NULL OR tenant_id = $1) AND id < $2"
	                 " ORDER BY id DESC LIMIT $3",
	                 &p, &r);
	if (rc)
		return rc;
	return pg_rows_read(r, sizeof **out, store_row_audit, NULL, NULL, (void **)out, n);
}

/* ---- accounts and templates written by the API (with their audit row) ---- */

static int run_account_put(struct pg_store *s, struct job_admin *a)
{
	return pg_account_write(s, a->row, &a->j.err);
}

int pg_account_put(struct store *st, const struct account_row *acct, const struct audit_row *au,
                   struct hr_err *err)
{
	if (!acct || !acct->id[0] || !acct->tenant_id[0] || !acct->channel[0])
		return hr_fail(err, HR_EINVAL, "account", "account needs id, tenant and channel");
	int rc = store_audit_check(au, err);
	if (rc)
		return rc;
	struct job_admin a = {.run = run_account_put, .audit = au, .row = acct};
	return admin_do((struct pg_store *)st, &a, err);
}

static void tpl_key(struct pg_params *p, const struct template_row *t)
{
	pp_text(p, t->tenant_id);
	pp_text(p, t->channel);
	pp_text(p, t->name);
	pp_text(p, t->language);
}

/* As SQLite's: look, check, then insert or update, in the job's savepoint.
 * The row is locked (FOR UPDATE) so a concurrent writer on another node
 * waits; two inserts of one new key race to the primary key (the loser
 * gets an error and writes nothing). */
static int run_template_put(struct pg_store *s, struct job_admin *a)
{
	const struct template_row *t = a->row;
	struct hr_err *err = &a->j.err;
	struct pg_params p = {0};
	tpl_key(&p, t);
	PGresult *r;
	int rc = pg_exec(&s->w, P_TEMPLATE_UNIT,
	                 "SELECT coalesce(unit_id, '') FROM template WHERE tenant_id = $1"
	                 " AND channel = $2 AND name = $3 AND language = $4 FOR UPDATE",
	                 &p, &r, err, "template");
	if (rc)
		return rc;
	bool exists = PQntuples(r) > 0;
	char unit[HR_NAME_MAX] = "";
	if (exists)
		pg_col_copy(r, 0, 0, unit, sizeof unit);
	PQclear(r);
	if (exists && t->unit_id[0] && strcmp(unit, t->unit_id) != 0)
		return hr_fail(err, HR_ECONFLICT, "name",
		               "template '%s' (%s, %s) is not this unit's to change", t->name,
		               t->channel, t->language);
	if (!exists) {
		struct pg_params c = {0};
		pp_text(&c, t->tenant_id);
		if ((rc = pg_exec(&s->w, P_TEMPLATE_COUNT,
		                  "SELECT count(*) FROM template WHERE tenant_id = $1", &c, &r, err,
		                  "template")))
			return rc;
		int64_t n = pg_col_i64(r, 0, 0);
		PQclear(r);
		if (n >= STORE_TEMPLATES_MAX)
			return hr_fail(err, HR_ELIMIT, "name",
			               "the tenant has %d templates, the most it may have",
			               STORE_TEMPLATES_MAX);
	}
	pp_text(&p, t->body ? t->body : "");
	pp_i64(&p, t->param_count);
	pp_opt(&p, t->config);
	if (exists)
		rc = pg_exec(
		    &s->w, P_TEMPLATE_UPDATE,
		    "UPDATE template SET body = $5, param_count = $6, config = $7"
		    " WHERE tenant_id = $1 AND channel = $2 AND name = $3 AND language = $4",
		    &p, NULL, err, "template");
	else {
		pp_opt(&p, t->unit_id);
		rc =
		    pg_exec(&s->w, P_TEMPLATE_INSERT,
		            "INSERT INTO template(tenant_id, channel, name, language, body,"
		            " param_count, config, unit_id) VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
		            &p, NULL, err, "template");
	}
	if (rc == 0)
		a->flag = !exists; /* created */
	return rc;
}

int pg_template_put(struct store *st, const struct template_row *t, const struct audit_row *au,
                    bool *created, struct hr_err *err)
{
	int rc = store_template_check(t, err);
	if (rc || (rc = store_audit_check(au, err)))
		return rc;
	struct job_admin a = {.run = run_template_put, .audit = au, .row = t};
	rc = admin_do((struct pg_store *)st, &a, err);
	if (rc == 0 && created)
		*created = a.flag;
	return rc;
}

struct tpl_key_args {
	const char *tenant_id, *channel, *name, *language, *unit;
};

static int run_template_delete(struct pg_store *s, struct job_admin *a)
{
	const struct tpl_key_args *k = a->row;
	struct pg_params p = {0};
	pp_text(&p, k->tenant_id);
	pp_text(&p, k->channel);
	pp_text(&p, k->name);
	pp_text(&p, k->language);
	pp_opt(&p, k->unit);
	PGresult *r;
	int rc = pg_exec(&s->w, P_TEMPLATE_DELETE,
	                 "DELETE FROM template WHERE tenant_id = $1 AND channel = $2 AND name = $3"
	                 " AND language = $4 AND ($5::text IS NULL OR unit_id = $5)",
	                 &p, &r, &a->j.err, "template");
	if (rc == 0 && changed(r) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, NULL, "no template '%s' (%s, %s)", k->name,
		             k->channel, k->language);
	return rc;
}

int pg_template_delete(struct store *st, const char *tenant_id, const char *channel,
                       const char *name, const char *language, const char *unit,
                       const struct audit_row *au, struct hr_err *err)
{
	if (!tenant_id || !channel || !name || !language)
		return hr_fail(err, HR_EINVAL, "template", "a template key is required");
	int rc = store_audit_check(au, err);
	if (rc)
		return rc;
	struct tpl_key_args k = {tenant_id, channel, name, language, unit && *unit ? unit : NULL};
	struct job_admin a = {.run = run_template_delete, .audit = au, .row = &k};
	return admin_do((struct pg_store *)st, &a, err);
}

int pg_template_list(struct store *st, const char *tenant_id, const char *unit,
                     const struct template_key *after, int limit, struct template_row **out,
                     size_t *n, bool *more)
{
	*out = NULL;
	*n = 0;
	*more = false;
	if (!tenant_id || limit < 1 || limit > 1000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_opt(&p, unit);
	pp_text(&p, after ? after->channel : "");
	pp_text(&p, after ? after->name : "");
	pp_text(&p, after ? after->language : "");
	pp_i64(&p, limit + 1);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_TEMPLATE_LIST, -1,
	                 "SELECT tenant_id, channel, name, language, body, param_count, config,"
	                 " coalesce(unit_id, '') FROM template WHERE tenant_id = $1"
	                 " AND ($2::text IS NULL OR unit_id IS NULL OR unit_id = $2)"
	                 " AND (channel, name, language) > ($3, $4, $5)"
	                 " ORDER BY channel, name, language LIMIT $6",
	                 &p, &r);
	if (rc)
		return rc;
	int rows = PQntuples(r);
	if (rows > limit) {
		rows = limit;
		*more = true;
	}
	struct template_row *v = calloc((size_t)limit, sizeof *v);
	if (!v) {
		PQclear(r);
		*more = false;
		return HR_ENOMEM;
	}
	bool oom = false;
	for (int i = 0; i < rows; i++) {
		struct template_row *t = &v[i];
		pg_col_copy(r, i, 0, t->tenant_id, sizeof t->tenant_id);
		pg_col_copy(r, i, 1, t->channel, sizeof t->channel);
		pg_col_copy(r, i, 2, t->name, sizeof t->name);
		pg_col_copy(r, i, 3, t->language, sizeof t->language);
		t->body = pg_col_dup(r, i, 4, &oom);
		t->param_count = (int)pg_col_i64(r, i, 5);
		t->config = pg_col_dup(r, i, 6, &oom);
		pg_col_copy(r, i, 7, t->unit_id, sizeof t->unit_id);
	}
	PQclear(r);
	if (oom) {
		for (int i = 0; i < rows; i++)
			template_row_clear(&v[i]);
		free(v);
		*more = false;
		return HR_ENOMEM;
	}
	*out = v;
	*n = (size_t)rows;
	return 0;
}
