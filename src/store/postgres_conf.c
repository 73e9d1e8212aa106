/*
 * postgres_conf.c - configuration rows synced from the config file at start
 * (tenants, API keys, channel accounts, templates), idempotency reads and
 * retention. Writes are upserts through the writer, so re-syncing the same
 * config (from any number of nodes) is harmless.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/argcheck.h"
#include "store/postgres_rows.h"

struct job_conf {
	struct wr_job j;
	const void *row;
	const char *a, *b, *c; /* api_key_put: tenant_id, key_hash, label */
};

static int run_tenant(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	const struct tenant_row *t = ((struct job_conf *)j)->row;
	struct pg_params p = {0};
	pp_text(&p, t->id);
	pp_text(&p, t->name);
	pp_i64(&p, s->gnow);
	pp_opt(&p, t->callback_url);
	return pg_exec(&s->w, P_TENANT_UPSERT,
	               "INSERT INTO tenant(id, name, created_at, callback_url)"
	               " VALUES($1, $2, $3, $4) ON CONFLICT(id) DO UPDATE SET"
	               " name = excluded.name, callback_url = excluded.callback_url",
	               &p, NULL, &j->err, "tenant");
}

int pg_tenant_upsert(struct store *st, const struct tenant_row *t, struct hr_err *err)
{
	if (!t || !t->id[0])
		return hr_fail(err, HR_EINVAL, "tenant.id", "tenant id is empty");
	struct job_conf c = {.j = {.run = run_tenant}, .row = t};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &c.j, err);
}

static int run_api_key(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_conf *c = (struct job_conf *)j;
	struct pg_params p = {0};
	pp_text(&p, c->b);
	pp_text(&p, c->a);
	pp_opt(&p, c->c);
	pp_i64(&p, s->gnow);
	return pg_exec(&s->w, P_APIKEY_PUT,
	               "INSERT INTO api_key(key_hash, tenant_id, label, created_at)"
	               " VALUES($1, $2, $3, $4) ON CONFLICT(key_hash) DO UPDATE SET"
	               " tenant_id = excluded.tenant_id, label = excluded.label",
	               &p, NULL, &j->err, "api_key");
}

int pg_api_key_put(struct store *st, const char *tenant_id, const char *key_hash, const char *label,
                   struct hr_err *err)
{
	if (!tenant_id || !*tenant_id)
		return hr_fail(err, HR_EINVAL, "tenant_id", "tenant id is empty");
	if (!key_hash || !*key_hash)
		return hr_fail(err, HR_EINVAL, "key_hash", "key hash is empty");
	struct job_conf c = {.j = {.run = run_api_key}, .a = tenant_id, .b = key_hash, .c = label};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &c.j, err);
}

struct job_prune {
	struct wr_job j;
	const char *tenant_id;
	const char *keep; /* JSON array of the hashes to keep */
	int deleted;
};

static int run_api_key_prune(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_prune *a = (struct job_prune *)j;
	struct pg_params p = {0};
	pp_text(&p, a->tenant_id);
	pp_text(&p, a->keep);
	PGresult *r;
	int rc = pg_exec(&s->w, P_APIKEY_PRUNE,
	                 "DELETE FROM api_key WHERE tenant_id = $1 AND NOT api_created AND key_hash <> ALL"
	                 " (ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))",
	                 &p, &r, &j->err, "api_key");
	if (rc == 0) {
		a->deleted = atoi(PQcmdTuples(r));
		PQclear(r);
	}
	return rc;
}

/* Revokes keys removed from the config in one DELETE; the keep list travels
 * as one JSON array parameter, whatever its length. */
int pg_api_key_prune(struct store *st, const char *tenant_id, const char *const *keep_hashes,
                     size_t n, struct hr_err *err)
{
	char *keep;
	int rc = store_key_keep_json(tenant_id, keep_hashes, n, &keep, err);
	if (rc)
		return rc;
	struct job_prune p = {
	    .j = {.run = run_api_key_prune}, .tenant_id = tenant_id, .keep = keep};
	rc = wr_run_blocking(&((struct pg_store *)st)->wr, &p.j, err);
	free(keep);
	if (rc == 0 && p.deleted > 0)
		hr_log(HR_LOG_INFO, "store", "revoked %d API key(s) of tenant %s", p.deleted,
		       tenant_id);
	return rc;
}

int pg_api_key_lookup(struct store *st, const char *key_hash, char tenant_id[HR_NAME_MAX])
{
	struct pg_params p = {0};
	pp_text(&p, key_hash ? key_hash : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_APIKEY, -1,
	                 "SELECT tenant_id FROM api_key WHERE key_hash = $1", &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0)
		rc = HR_ENOTFOUND;
	else
		pg_col_copy(r, 0, 0, tenant_id, HR_NAME_MAX);
	PQclear(r);
	return rc;
}

static int run_account(void *be, struct wr_job *j)
{
	return pg_account_write(be, ((struct job_conf *)j)->row, &j->err);
}

int pg_account_write(struct pg_store *s, const struct account_row *a, struct hr_err *err)
{
	struct pg_params p = {0};
	pp_text(&p, a->id);
	pp_text(&p, a->tenant_id);
	pp_text(&p, a->channel);
	pp_text(&p, a->config ? a->config : "{}");
	pp_i64(&p, s->gnow);
	pp_bool(&p, a->api_created);
	pp_opt(&p, a->unit_id);
	return pg_exec(&s->w, P_ACCOUNT_UPSERT,
	               "INSERT INTO channel_account(id, tenant_id, channel, config, created_at,"
	               " updated_at, api_created, unit_id) VALUES($1, $2, $3, $4, $5, $5, $6, $7)"
	               " ON CONFLICT(id) DO UPDATE SET tenant_id = excluded.tenant_id,"
	               " channel = excluded.channel, config = excluded.config,"
	               " updated_at = excluded.updated_at, api_created = excluded.api_created,"
	               " unit_id = excluded.unit_id",
	               &p, NULL, err, "channel_account");
}

int pg_account_upsert(struct store *st, const struct account_row *a, struct hr_err *err)
{
	if (!a || !a->id[0])
		return hr_fail(err, HR_EINVAL, "account.id", "account id is empty");
	if (!a->tenant_id[0])
		return hr_fail(err, HR_EINVAL, "account.tenant_id", "account has no tenant");
	if (!a->channel[0])
		return hr_fail(err, HR_EINVAL, "account.channel", "account has no channel");
	struct job_conf c = {.j = {.run = run_account}, .row = a};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &c.j, err);
}

int pg_account_list(struct store *st, const char *tenant_id, struct account_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	struct pg_params p = {0};
	PGresult *r;
	int rc;
	if (tenant_id) {
		pp_text(&p, tenant_id);
		rc = pg_read((struct pg_store *)st, P_ACCOUNTS_TENANT, -1,
		             "SELECT id, tenant_id, channel, config, api_created, unit_id"
		             " FROM channel_account WHERE tenant_id = $1 ORDER BY id",
		             &p, &r);
	} else {
		rc = pg_read((struct pg_store *)st, P_ACCOUNTS_ALL, -1,
		             "SELECT id, tenant_id, channel, config, api_created, unit_id"
		             " FROM channel_account ORDER BY id",
		             &p, &r);
	}
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_account, NULL, store_row_account_clear, &v, n);
	*out = v;
	return rc;
}

static int run_template(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	const struct template_row *t = ((struct job_conf *)j)->row;
	struct pg_params p = {0};
	pp_text(&p, t->tenant_id);
	pp_text(&p, t->channel);
	pp_text(&p, t->name);
	pp_text(&p, t->language);
	pp_text(&p, t->body ? t->body : "");
	pp_i64(&p, t->param_count);
	pp_opt(&p, t->config);
	return pg_exec(&s->w, P_TEMPLATE_UPSERT,
	               "INSERT INTO template(tenant_id, channel, name, language, body, param_count,"
	               " config) VALUES($1, $2, $3, $4, $5, $6, $7)"
	               " ON CONFLICT(tenant_id, channel, name, language) DO UPDATE SET"
	               " body = excluded.body, param_count = excluded.param_count,"
	               " config = excluded.config",
	               &p, NULL, &j->err, "template");
}

/* As SQLite: the config is stored as given, but only if it is a JSON object. */
int pg_template_upsert(struct store *st, const struct template_row *t, struct hr_err *err)
{
	if (!t || !t->tenant_id[0] || !t->channel[0] || !t->name[0])
		return hr_fail(err, HR_EINVAL, "template",
		               "template needs tenant, channel and name");
	int crc = store_template_config_check(t, err);
	if (crc)
		return crc;
	struct job_conf c = {.j = {.run = run_template}, .row = t};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &c.j, err);
}

int pg_template_get(struct store *st, const char *tenant_id, const char *channel, const char *name,
                    const char *language, struct template_row *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_text(&p, tenant_id ? tenant_id : "");
	pp_text(&p, channel ? channel : "");
	pp_text(&p, name ? name : "");
	pp_text(&p, language ? language : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_TEMPLATE, -1,
	                 "SELECT tenant_id, channel, name, language, body, param_count, config,"
	                 " unit_id FROM template WHERE tenant_id = $1 AND channel = $2"
	                 " AND name = $3 AND language = $4",
	                 &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return HR_ENOTFOUND;
	}
	rc = pg_row_one(r, store_row_template, out, sizeof *out);
	PQclear(r);
	if (rc)
		template_row_clear(out);
	return rc;
}

int pg_idem_get(struct store *st, const char *tenant_id, const char *key, struct idem_row *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_text(&p, tenant_id ? tenant_id : "");
	pp_text(&p, key ? key : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_IDEM, -1,
	                 "SELECT request_hash, http_status, response FROM idempotency_key"
	                 " WHERE tenant_id = $1 AND key = $2",
	                 &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return HR_ENOTFOUND;
	}
	bool oom = false;
	pg_col_copy(r, 0, 0, out->request_hash, sizeof out->request_hash);
	out->http_status = (int)pg_col_i64(r, 0, 1);
	out->response = pg_col_dup(r, 0, 2, &oom);
	PQclear(r);
	return oom ? HR_ENOMEM : 0;
}

struct job_retention {
	struct wr_job j;
	int64_t inbox_before, idem_before;
	int limit;
	int64_t deleted;
};

static int run_retention(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_retention *a = (struct job_retention *)j;
	struct pg_params p = {0};
	pp_i64(&p, a->inbox_before);
	pp_i64(&p, a->limit);
	PGresult *r;
	int rc = pg_exec(&s->w, P_INBOX_PRUNE,
	                 "DELETE FROM webhook_inbox WHERE id IN (SELECT id FROM webhook_inbox"
	                 " WHERE received_at < $1 AND state IN (1, 3, 4) ORDER BY id LIMIT $2)",
	                 &p, &r, &j->err, "webhook_inbox");
	if (rc)
		return rc;
	a->deleted += atoll(PQcmdTuples(r));
	PQclear(r);
	p = (struct pg_params){0};
	pp_i64(&p, a->idem_before);
	pp_i64(&p, a->limit);
	rc = pg_exec(&s->w, P_IDEM_PRUNE,
	             "DELETE FROM idempotency_key WHERE (tenant_id, key) IN (SELECT tenant_id, key"
	             " FROM idempotency_key WHERE created_at < $1 LIMIT $2)",
	             &p, &r, &j->err, "idempotency_key");
	if (rc == 0) {
		a->deleted += atoll(PQcmdTuples(r));
		PQclear(r);
	}
	return rc;
}

int pg_prune(struct store *st, int64_t inbox_before, int64_t idem_before, int limit, int64_t *n)
{
	struct job_retention p = {.j = {.run = run_retention},
	                          .inbox_before = inbox_before,
	                          .idem_before = idem_before,
	                          .limit = limit > 0 ? limit : 10000};
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &p.j, NULL);
	if (n)
		*n = rc == 0 ? p.deleted : 0;
	return rc;
}
