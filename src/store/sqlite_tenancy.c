/*
 * sqlite_tenancy.c - tenants, business units, API keys and the admin audit
 * log (store.h, "tenancy"). Administrative writes are rare: their
 * statements are prepared per call rather than cached, except the two the
 * request path reaches (key_lookup on a cache miss, key_touch). Each write
 * job runs its change and its audit row in the writer's savepoint for the
 * job, so both land or neither does.
 */
#include <stdlib.h>
#include <string.h>

#include "store/lifecycle.h"
#include "store/argcheck.h"
#include "store/sqlite_rows.h"

/* Prepares sql on db; NULL with err filled on failure. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql, struct hr_err *err, const char *field)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		sq_fail(db, rc, err, field);
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

/* Steps an ad hoc write to its end and finalizes it; 0 or an HR_E* code. */
static int step_final(sqlite3 *db, sqlite3_stmt *st, struct hr_err *err, const char *field)
{
	int rc = sqlite3_step(st);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	int code = rc == SQLITE_DONE ? 0 : sq_fail(db, rc, err, field);
	sqlite3_finalize(st);
	return code;
}

int sq_audit_insert(struct sq_store *s, const struct audit_row *a, struct hr_err *err)
{
	if (!a)
		return 0;
	sqlite3_stmt *st =
	    prep(s->wdb,
	         "INSERT INTO admin_audit(tenant_id, actor, at, action, object, before,"
	         " after) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	         err, "admin_audit");
	if (!st)
		return err->code;
	sqlite3_bind_text(st, 1, a->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->actor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->at ? a->at : hr_now_us());
	sqlite3_bind_text(st, 4, a->action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, a->object, -1, SQLITE_STATIC);
	sq_bind_opt(st, 6, a->before);
	sq_bind_opt(st, 7, a->after);
	return step_final(s->wdb, st, err, "admin_audit");
}

/* One administrative write: the job's own statement (run), then its audit row. */
struct job_admin {
	struct wr_job j;
	int (*run)(struct sq_store *s, struct job_admin *a);
	const struct audit_row *audit;
	const void *row;
	const char *tenant_id, *id;
	bool flag;
	int64_t at;
	char *hash_out; /* key_revoke */
};

static int run_admin(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_admin *a = (struct job_admin *)j;
	int rc = a->run(s, a);
	if (rc == 0)
		rc = sq_audit_insert(s, a->audit, &j->err);
	return rc;
}

static int admin_do(struct sq_store *s, struct job_admin *a, struct hr_err *err)
{
	a->j.run = run_admin;
	return wr_run_blocking(&s->wr, &a->j, err);
}

/* ---- tenants ---- */

static int run_tenant_create(struct sq_store *s, struct job_admin *a)
{
	const struct tenant_info *t = a->row;
	sqlite3_stmt *st = prep(s->wdb,
	                        "INSERT INTO tenant(id, name, created_at, disabled)"
	                        " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO NOTHING",
	                        &a->j.err, "tenant");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->name[0] ? t->name : t->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, hr_now_us());
	sqlite3_bind_int(st, 4, t->disabled ? 1 : 0);
	int rc = step_final(s->wdb, st, &a->j.err, "tenant");
	if (rc == 0 && sqlite3_changes(s->wdb) == 0)
		rc = hr_fail(&a->j.err, HR_ECONFLICT, "id", "tenant '%s' exists", t->id);
	return rc;
}

int sq_tenant_create(struct store *st, const struct tenant_info *t, const struct audit_row *au,
                     struct hr_err *err)
{
	if (!t || !t->id[0])
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_tenant_create, .audit = au, .row = t};
	return admin_do((struct sq_store *)st, &a, err);
}

#define SQ_TENANT_COLS                                                                             \
	"id, name, disabled, created_at, rate_milli, rate_burst, daily_cap, campaign_cap"


/* Runs a read of rows into a heap array of `size`-byte rows filled by fill;
 * bind binds the parameters. *out NULL when none. */
static int read_rows(struct sq_store *s, const char *sql,
                     void (*bind)(sqlite3_stmt *, const void *), const void *args,
                     store_row_fn fill, size_t size, void **out, size_t *n, bool one)
{
	*n = 0;
	if (!one)
		*out = NULL;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = prep(r->db, sql, NULL, NULL);
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	if (bind)
		bind(q, args);
	if (one) {
		int src = sqlite3_step(q);
		if (src == SQLITE_ROW) {
			const struct store_cols c = sq_cols(q);
			memset(out, 0, size);
			rc = fill(&c, out, NULL);
		} else {
			rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
		}
	} else {
		rc = sq_rows_read(r, q, size, fill, NULL, NULL, out, n);
	}
	sqlite3_finalize(q);
	sq_reader_put(s, r);
	return rc;
}

static void bind_1(sqlite3_stmt *q, const void *a)
{
	const char *const *v = a;
	if (v[0])
		sqlite3_bind_text(q, 1, v[0], -1, SQLITE_STATIC);
}

static void bind_2(sqlite3_stmt *q, const void *a)
{
	const char *const *v = a;
	sqlite3_bind_text(q, 1, v[0], -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, v[1], -1, SQLITE_STATIC);
}

int sq_tenant_get(struct store *st, const char *id, struct tenant_info *out)
{
	const char *args[] = {id ? id : ""};
	size_t n;
	return read_rows((struct sq_store *)st,
	                 "SELECT " SQ_TENANT_COLS " FROM tenant WHERE id = ?1", bind_1, args,
	                 store_row_tenant, sizeof *out, (void **)out, &n, true);
}

int sq_tenant_list(struct store *st, struct tenant_info **out, size_t *n)
{
	return read_rows((struct sq_store *)st, "SELECT " SQ_TENANT_COLS " FROM tenant ORDER BY id",
	                 NULL, NULL, store_row_tenant, sizeof **out, (void **)out, n, false);
}

static int run_set_disabled(struct sq_store *s, struct job_admin *a, const char *sql,
                            const char *what)
{
	sqlite3_stmt *st = prep(s->wdb, sql, &a->j.err, what);
	if (!st)
		return a->j.err.code;
	sqlite3_bind_int(st, 1, a->flag ? 1 : 0);
	sqlite3_bind_text(st, 2, a->tenant_id, -1, SQLITE_STATIC);
	if (a->id)
		sqlite3_bind_text(st, 3, a->id, -1, SQLITE_STATIC);
	int rc = step_final(s->wdb, st, &a->j.err, what);
	if (rc == 0 && sqlite3_changes(s->wdb) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "id", "no such %s", what);
	return rc;
}

static int run_tenant_disable(struct sq_store *s, struct job_admin *a)
{
	return run_set_disabled(s, a, "UPDATE tenant SET disabled = ?1 WHERE id = ?2", "tenant");
}

int sq_tenant_set_disabled(struct store *st, const char *id, bool disabled,
                           const struct audit_row *au, struct hr_err *err)
{
	if (!id || !*id)
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {
	    .run = run_tenant_disable, .audit = au, .tenant_id = id, .flag = disabled};
	return admin_do((struct sq_store *)st, &a, err);
}

/* ---- limits ---- */

static void bind_limit(sqlite3_stmt *st, int i, int64_t v)
{
	if (v > 0)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

static int run_tenant_limits(struct sq_store *s, struct job_admin *a)
{
	const struct tenant_limits *l = a->row;
	sqlite3_stmt *st = prep(s->wdb,
	                        "UPDATE tenant SET rate_milli = ?2, rate_burst = ?3, daily_cap = ?4,"
	                        " campaign_cap = ?5 WHERE id = ?1",
	                        &a->j.err, "tenant");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_text(st, 1, a->tenant_id, -1, SQLITE_STATIC);
	bind_limit(st, 2, l->rate_milli);
	bind_limit(st, 3, l->burst);
	bind_limit(st, 4, l->daily_cap);
	bind_limit(st, 5, l->campaign_cap);
	int rc = step_final(s->wdb, st, &a->j.err, "tenant");
	if (rc == 0 && sqlite3_changes(s->wdb) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "id", "no such tenant");
	return rc;
}

int sq_tenant_set_limits(struct store *st, const char *id, const struct tenant_limits *l,
                         const struct audit_row *au, struct hr_err *err)
{
	if (!id || !*id)
		return hr_fail(err, HR_EINVAL, "id", "tenant id is empty");
	if (!l || l->rate_milli < 0 || l->burst < 0 || l->daily_cap < 0 || l->campaign_cap < 0)
		return hr_fail(err, HR_EINVAL, "limits", "limits cannot be negative");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_tenant_limits, .audit = au, .tenant_id = id, .row = l};
	return admin_do((struct sq_store *)st, &a, err);
}

int sq_tenant_usage(struct store *st, const char *tenant_id, int64_t day, int64_t *count)
{
	struct sq_store *s = (struct sq_store *)st;
	*count = 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    prep(r->db, "SELECT count FROM tenant_daily WHERE tenant_id = ?1 AND day = ?2", NULL,
	         NULL);
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, tenant_id ? tenant_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, day);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		*count = sqlite3_column_int64(q, 0);
	else if (src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	sqlite3_finalize(q);
	sq_reader_put(s, r);
	return rc;
}

/*
 * The writer's side of the daily cap: adds n to the tenant's count for
 * `day` and checks the cap, inside the running job (its savepoint undoes
 * the count with the job when this fails). The one writer connection
 * orders every caller, so the count is exact.
 */
int sq_daily_take(struct sq_store *s, const char *tenant_id, int64_t day, int64_t n,
                  struct hr_err *err)
{
	if (n <= 0)
		return 0;
	sqlite3_stmt *q = sq_wstmt(s, W_DAILY_CAP, "SELECT daily_cap FROM tenant WHERE id = ?1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "tenant");
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	int64_t cap = src == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sq_fail(s->wdb, src, err, "tenant");
	q = sq_wstmt(s, W_DAILY_ADD,
	             "INSERT INTO tenant_daily(tenant_id, day, count) VALUES(?1, ?2, ?3)"
	             " ON CONFLICT(tenant_id, day) DO UPDATE SET count = count + excluded.count"
	             " RETURNING count");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "tenant_daily");
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, day);
	sqlite3_bind_int64(q, 3, n);
	src = sqlite3_step(q);
	int64_t count = src == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	if (src == SQLITE_ROW)
		src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src != SQLITE_DONE)
		return sq_fail(s->wdb, src, err, "tenant_daily");
	if (cap > 0 && count > cap)
		return hr_fail(err, HR_EQUOTA, "daily_cap",
		               "tenant '%s' has a daily cap of %lld messages: %lld accepted today"
		               " (UTC), %lld more refused; the count resets at 00:00 UTC",
		               tenant_id, (long long)cap, (long long)(count - n), (long long)n);
	return 0;
}

int sq_start_limits(struct sq_store *s, const char *tenant_id, const char *batch_id, int64_t day,
                    struct lc_start_limits *out, struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *q = sq_wstmt(
	    s, W_START_LIMITS,
	    "SELECT (SELECT daily_cap FROM tenant WHERE id = ?1),"
	    " (SELECT campaign_cap FROM tenant WHERE id = ?1),"
	    " (SELECT count FROM tenant_daily WHERE tenant_id = ?1 AND day = ?2),"
	    " (SELECT count(*) FROM batch WHERE tenant_id = ?1 AND status = 2),"
	    " (SELECT valid FROM batch WHERE id = ?3)");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "tenant");
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, day);
	sqlite3_bind_text(q, 3, batch_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		out->daily_cap = sqlite3_column_int64(q, 0);
		out->campaign_cap = sqlite3_column_int64(q, 1);
		out->today = sqlite3_column_int64(q, 2);
		out->processing = sqlite3_column_int64(q, 3);
		out->valid = sqlite3_column_int64(q, 4);
	}
	sqlite3_reset(q);
	return src == SQLITE_ROW ? 0 : sq_fail(s->wdb, src, err, "tenant");
}

/* ---- units ---- */

static int run_unit_create(struct sq_store *s, struct job_admin *a)
{
	const struct unit_row *u = a->row;
	sqlite3_stmt *st = prep(s->wdb, "SELECT 1 FROM tenant WHERE id = ?1", &a->j.err, "tenant");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_text(st, 1, u->tenant_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	sqlite3_finalize(st);
	if (src == SQLITE_DONE)
		return hr_fail(&a->j.err, HR_ENOTFOUND, "tenant", "no such tenant");
	if (src != SQLITE_ROW)
		return sq_fail(s->wdb, src, &a->j.err, "tenant");
	st = prep(s->wdb,
	          "INSERT INTO business_unit(tenant_id, id, name, disabled, created_at)"
	          " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(tenant_id, id) DO NOTHING",
	          &a->j.err, "unit");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_text(st, 1, u->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, u->name[0] ? u->name : u->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, u->disabled ? 1 : 0);
	sqlite3_bind_int64(st, 5, hr_now_us());
	int rc = step_final(s->wdb, st, &a->j.err, "unit");
	if (rc == 0 && sqlite3_changes(s->wdb) == 0) {
		if (a->flag) {
			a->audit = NULL; /* nothing changed: nothing to record */
			return 0;
		}
		rc = hr_fail(&a->j.err, HR_ECONFLICT, "id", "unit '%s' exists", u->id);
	}
	return rc;
}

int sq_unit_create(struct store *st, const struct unit_row *u, bool if_absent,
                   const struct audit_row *au, struct hr_err *err)
{
	if (!u || !u->tenant_id[0] || !u->id[0])
		return hr_fail(err, HR_EINVAL, "id", "unit id or tenant is empty");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_unit_create, .audit = au, .row = u, .flag = if_absent};
	return admin_do((struct sq_store *)st, &a, err);
}

int sq_unit_get(struct store *st, const char *tenant_id, const char *id, struct unit_row *out)
{
	const char *args[] = {tenant_id ? tenant_id : "", id ? id : ""};
	size_t n;
	return read_rows((struct sq_store *)st,
	                 "SELECT tenant_id, id, name, disabled, created_at FROM business_unit"
	                 " WHERE tenant_id = ?1 AND id = ?2",
	                 bind_2, args, store_row_unit, sizeof *out, (void **)out, &n, true);
}

int sq_unit_list(struct store *st, const char *tenant_id, struct unit_row **out, size_t *n)
{
	const char *args[] = {tenant_id ? tenant_id : ""};
	return read_rows((struct sq_store *)st,
	                 "SELECT tenant_id, id, name, disabled, created_at FROM business_unit"
	                 " WHERE tenant_id = ?1 ORDER BY id",
	                 bind_1, args, store_row_unit, sizeof **out, (void **)out, n, false);
}

static int run_unit_disable(struct sq_store *s, struct job_admin *a)
{
	return run_set_disabled(
	    s, a, "UPDATE business_unit SET disabled = ?1 WHERE tenant_id = ?2 AND id = ?3",
	    "unit");
}

int sq_unit_set_disabled(struct store *st, const char *tenant_id, const char *id, bool disabled,
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
	return admin_do((struct sq_store *)st, &a, err);
}

/* ---- keys ---- */

#define KEY_COLS                                                                                   \
	"k.key_hash, coalesce(k.prefix, ''), k.tenant_id, coalesce(k.unit_id, ''),"                \
	" coalesce(k.label, ''), coalesce(k.scopes, '*'), coalesce(k.created_by, 'config'),"       \
	" k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.api_created"

static int run_key_create(struct sq_store *s, struct job_admin *a)
{
	const struct key_row *k = a->row;
	if (k->unit_id[0]) {
		sqlite3_stmt *st =
		    prep(s->wdb, "SELECT 1 FROM business_unit WHERE tenant_id = ?1 AND id = ?2",
		         &a->j.err, "unit");
		if (!st)
			return a->j.err.code;
		sqlite3_bind_text(st, 1, k->tenant_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, k->unit_id, -1, SQLITE_STATIC);
		int src = sqlite3_step(st);
		sqlite3_finalize(st);
		if (src == SQLITE_DONE)
			return hr_fail(&a->j.err, HR_ENOTFOUND, "unit", "no such unit");
		if (src != SQLITE_ROW)
			return sq_fail(s->wdb, src, &a->j.err, "unit");
	}
	sqlite3_stmt *st = prep(
	    s->wdb,
	    a->flag ? "INSERT INTO api_key(key_hash, tenant_id, label, created_at, prefix, unit_id,"
	              " scopes, created_by, expires_at, api_created)"
	              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)"
	              " ON CONFLICT(key_hash) DO UPDATE SET tenant_id = excluded.tenant_id,"
	              " label = excluded.label, prefix = excluded.prefix,"
	              " unit_id = excluded.unit_id, scopes = excluded.scopes,"
	              " expires_at = excluded.expires_at"
	            : "INSERT INTO api_key(key_hash, tenant_id, label, created_at, prefix, unit_id,"
	              " scopes, created_by, expires_at, api_created)"
	              " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
	    &a->j.err, "api_key");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_text(st, 1, k->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, k->tenant_id, -1, SQLITE_STATIC);
	sq_bind_opt(st, 3, k->label);
	sqlite3_bind_int64(st, 4, hr_now_us());
	sq_bind_opt(st, 5, k->prefix);
	sq_bind_opt(st, 6, k->unit_id);
	/* "*" is stored as NULL: every scope, as keys from before scopes. */
	sq_bind_opt(st, 7, strcmp(k->scopes, "*") == 0 ? NULL : k->scopes);
	sq_bind_opt(st, 8, k->created_by);
	sqlite3_bind_int64(st, 9, k->expires_at);
	return step_final(s->wdb, st, &a->j.err, "api_key");
}

int sq_key_create(struct store *st, const struct key_row *k, const struct audit_row *au,
                  struct hr_err *err)
{
	if (store_key_check(k, err) || store_audit_check(au, err))
		return err->code;
	if (!k->prefix[0])
		return hr_fail(err, HR_EINVAL, "prefix", "key has no prefix");
	struct job_admin a = {.run = run_key_create, .audit = au, .row = k};
	return admin_do((struct sq_store *)st, &a, err);
}

int sq_key_seed(struct store *st, const struct key_row *k, struct hr_err *err)
{
	if (store_key_check(k, err))
		return err->code;
	struct job_admin a = {.run = run_key_create, .row = k, .flag = true};
	return admin_do((struct sq_store *)st, &a, err);
}

int sq_key_lookup(struct store *st, const char *hash, struct key_row *out)
{
	struct sq_store *s = (struct sq_store *)st;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(
	    s, R_KEY,
	    "SELECT " KEY_COLS ", coalesce(t.disabled, 1), coalesce(u.disabled, 0)"
	    " FROM api_key k LEFT JOIN tenant t ON t.id = k.tenant_id"
	    " LEFT JOIN business_unit u ON u.tenant_id = k.tenant_id AND u.id = k.unit_id"
	    " WHERE k.key_hash = ?1",
	    &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, hash ? hash : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		const struct store_cols c = sq_cols(q);
		memset(out, 0, sizeof *out);
		store_row_key(&c, out, NULL);
		out->tenant_disabled = sqlite3_column_int(q, 12) != 0;
		/* A unit that no longer exists is as good as disabled. */
		out->unit_disabled = sqlite3_column_int(q, 13) != 0 ||
		                     (out->unit_id[0] && sqlite3_column_type(q, 13) == SQLITE_NULL);
		rc = 0;
	} else {
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	}
	sqlite3_reset(q);
	sq_reader_put(s, r);
	return rc;
}

int sq_key_list(struct store *st, const char *tenant_id, struct key_row **out, size_t *n)
{
	const char *args[] = {tenant_id};
	return read_rows((struct sq_store *)st,
	                 tenant_id ? "SELECT " KEY_COLS " FROM api_key k WHERE k.tenant_id = ?1"
	                             " ORDER BY k.created_at DESC, k.key_hash"
	                           : "SELECT " KEY_COLS " FROM api_key k"
	                             " ORDER BY k.created_at DESC, k.key_hash",
	                 bind_1, args, store_row_key, sizeof **out, (void **)out, n, false);
}

static int run_key_revoke(struct sq_store *s, struct job_admin *a)
{
	sqlite3_stmt *st = prep(s->wdb,
	                        "UPDATE api_key SET revoked_at = ?1 WHERE prefix = ?2"
	                        " AND revoked_at = 0 AND (?3 IS NULL OR tenant_id = ?3)"
	                        " RETURNING key_hash",
	                        &a->j.err, "api_key");
	if (!st)
		return a->j.err.code;
	sqlite3_bind_int64(st, 1, hr_now_us());
	sqlite3_bind_text(st, 2, a->id, -1, SQLITE_STATIC);
	if (a->tenant_id)
		sqlite3_bind_text(st, 3, a->tenant_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	bool found = src == SQLITE_ROW;
	if (found && a->hash_out)
		sq_col_copy(st, 0, a->hash_out, 65);
	while (src == SQLITE_ROW)
		src = sqlite3_step(st);
	int rc = src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, &a->j.err, "api_key");
	sqlite3_finalize(st);
	if (rc == 0 && !found)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, "prefix", "no live key with this prefix");
	return rc;
}

int sq_key_revoke(struct store *st, const char *tenant_id, const char *prefix,
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
	return admin_do((struct sq_store *)st, &a, err);
}

struct job_touch {
	struct wr_job j;
	char hash[65];
	int64_t at;
};

static int run_key_touch(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_touch *t = (struct job_touch *)j;
	sqlite3_stmt *st = sq_wstmt(s, W_KEY_TOUCH,
	                            "UPDATE api_key SET last_used_at = ?2"
	                            " WHERE key_hash = ?1 AND last_used_at < ?2");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "api_key");
	sqlite3_bind_text(st, 1, t->hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, t->at);
	return sq_step_done(s, st, &j->err, "api_key");
}

int sq_key_touch(struct store *st, const char *hash, int64_t at, store_done_fn cb, void *arg)
{
	if (!hash || strlen(hash) != 64)
		return HR_EINVAL;
	/* One update: it can run again (writer.h, replayable). */
	struct job_touch t = {.j = {.run = run_key_touch, .replayable = true}, .at = at};
	memcpy(t.hash, hash, 65);
	struct sq_store *s = (struct sq_store *)st;
	if (cb)
		return wr_run_async(&s->wr, &t.j, sizeof t, cb, arg);
	return wr_run_blocking(&s->wr, &t.j, NULL);
}

/* ---- audit ---- */

static int run_audit_only(struct sq_store *s, struct job_admin *a)
{
	(void)s, (void)a;
	return 0;
}

int sq_audit_append(struct store *st, const struct audit_row *au, struct hr_err *err)
{
	if (!au)
		return hr_fail(err, HR_EINVAL, "audit", "no audit row");
	if (store_audit_check(au, err))
		return err->code;
	struct job_admin a = {.run = run_audit_only, .audit = au};
	return admin_do((struct sq_store *)st, &a, err);
}

struct audit_args {
	const char *tenant_id;
	int64_t before_id;
	int limit;
};

static void bind_audit(sqlite3_stmt *q, const void *p)
{
	const struct audit_args *a = p;
	if (a->tenant_id)
		sqlite3_bind_text(q, 1, a->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, a->before_id > 0 ? a->before_id : INT64_MAX);
	sqlite3_bind_int(q, 3, a->limit);
}

int sq_audit_list(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                  struct audit_row **out, size_t *n)
{
	if (limit < 1 || limit > 1000)
		return HR_EINVAL;
	struct audit_args args = {tenant_id, before_id, limit};
	return read_rows((struct sq_store *)st,
	                 "SELECT id, tenant_id, actor, at, action, object, before, after"
	                 " FROM admin_audit WHERE (?1 IS NULL OR tenant_id = ?1) AND id < ?2"
	                 " ORDER BY id DESC LIMIT ?3",
	                 bind_audit, &args, store_row_audit, sizeof **out, (void **)out, n, false);
}

/* ---- accounts and templates written by the API (with their audit row) ---- */

static int run_account_put(struct sq_store *s, struct job_admin *a)
{
	return sq_account_write(s, a->row, &a->j.err);
}

int sq_account_put(struct store *st, const struct account_row *acct, const struct audit_row *au,
                   struct hr_err *err)
{
	if (!acct || !acct->id[0] || !acct->tenant_id[0] || !acct->channel[0])
		return hr_fail(err, HR_EINVAL, "account", "account needs id, tenant and channel");
	int rc = store_audit_check(au, err);
	if (rc)
		return rc;
	struct job_admin a = {.run = run_account_put, .audit = au, .row = acct};
	return admin_do((struct sq_store *)st, &a, err);
}

/* The template's current unit: 1 found (unit copied, "" = shared), 0 not. */
static int template_unit(struct sq_store *s, const struct template_row *t, char *unit, size_t size,
                         struct hr_err *err)
{
	sqlite3_stmt *q = prep(s->wdb,
	                       "SELECT coalesce(unit_id, '') FROM template WHERE tenant_id = ?1"
	                       " AND channel = ?2 AND name = ?3 AND language = ?4",
	                       err, "template");
	if (!q)
		return err->code;
	sqlite3_bind_text(q, 1, t->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, t->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, t->language, -1, SQLITE_STATIC);
	int src = sqlite3_step(q), rc = 0;
	if (src == SQLITE_ROW) {
		sq_col_copy(q, 0, unit, size);
		rc = 1;
	} else if (src != SQLITE_DONE) {
		rc = sq_fail(s->wdb, src, err, "template");
	}
	sqlite3_finalize(q);
	return rc;
}

static int run_template_put(struct sq_store *s, struct job_admin *a)
{
	const struct template_row *t = a->row;
	struct hr_err *err = &a->j.err;
	char unit[HR_NAME_MAX] = "";
	int rc = template_unit(s, t, unit, sizeof unit, err);
	if (rc < 0)
		return rc;
	bool exists = rc == 1;
	if (exists && t->unit_id[0] && strcmp(unit, t->unit_id) != 0)
		return hr_fail(err, HR_ECONFLICT, "name",
		               "template '%s' (%s, %s) is not this unit's to change", t->name,
		               t->channel, t->language);
	if (!exists) {
		sqlite3_stmt *q = prep(s->wdb, "SELECT count(*) FROM template WHERE tenant_id = ?1",
		                       err, "template");
		if (!q)
			return err->code;
		sqlite3_bind_text(q, 1, t->tenant_id, -1, SQLITE_STATIC);
		int src = sqlite3_step(q);
		int64_t n = src == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
		sqlite3_finalize(q);
		if (n < 0)
			return sq_fail(s->wdb, src, err, "template");
		if (n >= STORE_TEMPLATES_MAX)
			return hr_fail(err, HR_ELIMIT, "name",
			               "the tenant has %d templates, the most it may have",
			               STORE_TEMPLATES_MAX);
	}
	sqlite3_stmt *q =
	    prep(s->wdb,
	         exists ? "UPDATE template SET body = ?5, param_count = ?6, config = ?7"
	                  " WHERE tenant_id = ?1 AND channel = ?2 AND name = ?3"
	                  " AND language = ?4"
	                : "INSERT INTO template(tenant_id, channel, name, language,"
	                  " body, param_count, config, unit_id)"
	                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	         err, "template");
	if (!q)
		return err->code;
	sqlite3_bind_text(q, 1, t->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, t->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, t->language, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, t->body ? t->body : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 6, t->param_count);
	sq_bind_opt(q, 7, t->config);
	if (!exists)
		sq_bind_opt(q, 8, t->unit_id);
	if ((rc = step_final(s->wdb, q, err, "template")))
		return rc;
	a->flag = !exists; /* created */
	return 0;
}

int sq_template_put(struct store *st, const struct template_row *t, const struct audit_row *au,
                    bool *created, struct hr_err *err)
{
	int rc = store_template_check(t, err);
	if (rc || (rc = store_audit_check(au, err)))
		return rc;
	struct job_admin a = {.run = run_template_put, .audit = au, .row = t};
	rc = admin_do((struct sq_store *)st, &a, err);
	if (rc == 0 && created)
		*created = a.flag;
	return rc;
}

struct tpl_key_args {
	const char *tenant_id, *channel, *name, *language, *unit;
};

static int run_template_delete(struct sq_store *s, struct job_admin *a)
{
	const struct tpl_key_args *k = a->row;
	sqlite3_stmt *q = prep(s->wdb,
	                       "DELETE FROM template WHERE tenant_id = ?1 AND channel = ?2"
	                       " AND name = ?3 AND language = ?4 AND (?5 IS NULL OR unit_id = ?5)",
	                       &a->j.err, "template");
	if (!q)
		return a->j.err.code;
	sqlite3_bind_text(q, 1, k->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, k->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, k->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, k->language, -1, SQLITE_STATIC);
	sq_bind_opt(q, 5, k->unit);
	int rc = step_final(s->wdb, q, &a->j.err, "template");
	if (rc == 0 && sqlite3_changes(s->wdb) == 0)
		rc = hr_fail(&a->j.err, HR_ENOTFOUND, NULL, "no template '%s' (%s, %s)", k->name,
		             k->channel, k->language);
	return rc;
}

int sq_template_delete(struct store *st, const char *tenant_id, const char *channel,
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
	return admin_do((struct sq_store *)st, &a, err);
}

int sq_template_list(struct store *st, const char *tenant_id, const char *unit,
                     const struct template_key *after, int limit, struct template_row **out,
                     size_t *n, bool *more)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	*more = false;
	if (!tenant_id || limit < 1 || limit > 1000)
		return HR_EINVAL;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q =
	    prep(r->db,
	         "SELECT tenant_id, channel, name, language, body, param_count, config,"
	         " coalesce(unit_id, '') FROM template WHERE tenant_id = ?1"
	         " AND (?2 IS NULL OR unit_id IS NULL OR unit_id = ?2)"
	         " AND (channel, name, language) > (?3, ?4, ?5)"
	         " ORDER BY channel, name, language LIMIT ?6",
	         NULL, NULL);
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	sq_bind_opt(q, 2, unit);
	sqlite3_bind_text(q, 3, after ? after->channel : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, after ? after->name : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, after ? after->language : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 6, limit + 1);
	struct template_row *v = calloc((size_t)limit, sizeof *v);
	size_t len = 0;
	int src = SQLITE_DONE;
	if (!v)
		rc = HR_ENOMEM;
	while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
		if (len == (size_t)limit) {
			*more = true;
			break;
		}
		struct template_row *t = &v[len++];
		bool oom = false;
		sq_col_copy(q, 0, t->tenant_id, sizeof t->tenant_id);
		sq_col_copy(q, 1, t->channel, sizeof t->channel);
		sq_col_copy(q, 2, t->name, sizeof t->name);
		sq_col_copy(q, 3, t->language, sizeof t->language);
		t->body = sq_col_dup(q, 4, &oom);
		t->param_count = sqlite3_column_int(q, 5);
		t->config = sq_col_dup(q, 6, &oom);
		sq_col_copy(q, 7, t->unit_id, sizeof t->unit_id);
		if (oom)
			rc = HR_ENOMEM;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = sq_fail(r->db, src, NULL, NULL);
	sqlite3_finalize(q);
	sq_reader_put(s, r);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			template_row_clear(&v[i]);
		free(v);
		*more = false;
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}
