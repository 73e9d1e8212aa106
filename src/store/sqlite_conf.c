/*
 * sqlite_conf.c - configuration rows synced from the config file at start
 * (tenants, API keys, channel accounts, templates) and idempotency reads.
 * Writes are upserts through the writer, so re-syncing the same config is
 * harmless.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/argcheck.h"
#include "store/sqlite_rows.h"

struct job_conf {
	struct wr_job j;
	const void *row;
	const char *a, *b, *c; /* api_key_put: tenant_id, key_hash, label */
};

static int run_tenant(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	const struct tenant_row *t = ((struct job_conf *)j)->row;
	sqlite3_stmt *st = sq_wstmt(s, W_TENANT_UPSERT,
		"INSERT INTO tenant(id, name, created_at, callback_url) VALUES(?1, ?2, ?3, ?4)"
		" ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
		" callback_url = excluded.callback_url");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "tenant");
	sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, hr_now_us());
	sq_bind_opt(st, 4, t->callback_url);
	return sq_step_done(s, st, &j->err, "tenant");
}

int sq_tenant_upsert(struct store *st, const struct tenant_row *t, struct hr_err *err)
{
	if (!t || !t->id[0])
		return hr_fail(err, HR_EINVAL, "tenant.id", "tenant id is empty");
	struct job_conf c = {.j = {.run = run_tenant}, .row = t};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &c.j, err);
}

static int run_api_key(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_conf *c = (struct job_conf *)j;
	sqlite3_stmt *st = sq_wstmt(s, W_APIKEY_PUT,
		"INSERT INTO api_key(key_hash, tenant_id, label, created_at) VALUES(?1, ?2, ?3, ?4)"
		" ON CONFLICT(key_hash) DO UPDATE SET tenant_id = excluded.tenant_id,"
		" label = excluded.label");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "api_key");
	sqlite3_bind_text(st, 1, c->b, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->a, -1, SQLITE_STATIC);
	sq_bind_opt(st, 3, c->c);
	sqlite3_bind_int64(st, 4, hr_now_us());
	return sq_step_done(s, st, &j->err, "api_key");
}

int sq_api_key_put(struct store *st, const char *tenant_id, const char *key_hash,
                   const char *label, struct hr_err *err)
{
	if (!tenant_id || !*tenant_id)
		return hr_fail(err, HR_EINVAL, "tenant_id", "tenant id is empty");
	if (!key_hash || !*key_hash)
		return hr_fail(err, HR_EINVAL, "key_hash", "key hash is empty");
	struct job_conf c = {.j = {.run = run_api_key}, .a = tenant_id, .b = key_hash, .c = label};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &c.j, err);
}

struct job_prune {
	struct wr_job j;
	const char *tenant_id;
	const char *keep; /* JSON array of the hashes to keep */
	int deleted;
};

static int run_api_key_prune(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_prune *p = (struct job_prune *)j;
	sqlite3_stmt *st = sq_wstmt(s, W_APIKEY_PRUNE,
		"DELETE FROM api_key WHERE tenant_id = ?1 AND api_created = 0"
		" AND key_hash NOT IN (SELECT value FROM json_each(?2))");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "api_key");
	sqlite3_bind_text(st, 1, p->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->keep, -1, SQLITE_STATIC);
	int rc = sq_step_done(s, st, &j->err, "api_key");
	if (rc == 0)
		p->deleted = sqlite3_changes(s->wdb);
	return rc;
}

/*
 * Revokes keys removed from the config: one DELETE (so one transaction) of
 * the tenant's keys outside the keep list. The list travels as a JSON array
 * (json_each) so any number of hashes is one bound parameter.
 */
int sq_api_key_prune(struct store *st, const char *tenant_id, const char *const *keep_hashes,
                     size_t n, struct hr_err *err)
{
	char *keep;
	int rc = store_key_keep_json(tenant_id, keep_hashes, n, &keep, err);
	if (rc)
		return rc;
	struct job_prune p = {.j = {.run = run_api_key_prune}, .tenant_id = tenant_id,
	                      .keep = keep};
	rc = wr_run_blocking(&((struct sq_store *)st)->wr, &p.j, err);
	free(keep);
	if (rc == 0 && p.deleted > 0)
		hr_log(HR_LOG_INFO, "store", "revoked %d API key(s) of tenant %s", p.deleted,
		       tenant_id);
	return rc;
}

int sq_api_key_lookup(struct store *st, const char *key_hash, char tenant_id[HR_NAME_MAX])
{
	struct sq_store *s = (struct sq_store *)st;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = sq_rstmt(r, R_APIKEY,
	                           "SELECT tenant_id FROM api_key WHERE key_hash = ?1");
	if (!q) {
		rc = HR_EIO;
	} else {
		sqlite3_bind_text(q, 1, key_hash ? key_hash : "", -1, SQLITE_STATIC);
		int src = sqlite3_step(q);
		if (src == SQLITE_ROW)
			sq_col_copy(q, 0, tenant_id, HR_NAME_MAX);
		rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? HR_ENOTFOUND
		                                                  : sq_fail(r->db, src, NULL, NULL);
	}
	sq_reader_put(s, r);
	return rc;
}

static int run_account(void *be, struct wr_job *j)
{
	return sq_account_write(be, ((struct job_conf *)j)->row, &j->err);
}

int sq_account_write(struct sq_store *s, const struct account_row *a, struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_ACCOUNT_UPSERT,
		"INSERT INTO channel_account(id, tenant_id, channel, config, created_at,"
		" updated_at, api_created, unit_id) VALUES(?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)"
		" ON CONFLICT(id) DO UPDATE SET tenant_id = excluded.tenant_id,"
		" channel = excluded.channel, config = excluded.config,"
		" updated_at = excluded.updated_at, api_created = excluded.api_created,"
		" unit_id = excluded.unit_id");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "channel_account");
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->config ? a->config : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, hr_now_us());
	sqlite3_bind_int(st, 6, a->api_created ? 1 : 0);
	sq_bind_opt(st, 7, a->unit_id);
	return sq_step_done(s, st, err, "channel_account");
}

int sq_account_upsert(struct store *st, const struct account_row *a, struct hr_err *err)
{
	if (!a || !a->id[0])
		return hr_fail(err, HR_EINVAL, "account.id", "account id is empty");
	if (!a->tenant_id[0])
		return hr_fail(err, HR_EINVAL, "account.tenant_id", "account has no tenant");
	if (!a->channel[0])
		return hr_fail(err, HR_EINVAL, "account.channel", "account has no channel");
	struct job_conf c = {.j = {.run = run_account}, .row = a};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &c.j, err);
}

int sq_account_list(struct store *st, const char *tenant_id, struct account_row **out,
                    size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = tenant_id
		? sq_rstmt(r, R_ACCOUNTS_TENANT, "SELECT id, tenant_id, channel, config, api_created,"
		           " unit_id FROM channel_account WHERE tenant_id = ?1 ORDER BY id")
		: sq_rstmt(r, R_ACCOUNTS_ALL, "SELECT id, tenant_id, channel, config, api_created,"
		           " unit_id FROM channel_account ORDER BY id");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	if (tenant_id)
		sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_account, NULL, store_row_account_clear, &v,
	                  n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

static int run_template(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	const struct template_row *t = ((struct job_conf *)j)->row;
	sqlite3_stmt *st = sq_wstmt(s, W_TEMPLATE_UPSERT,
		"INSERT INTO template(tenant_id, channel, name, language, body, param_count,"
		" config) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
		" ON CONFLICT(tenant_id, channel, name, language) DO UPDATE SET"
		" body = excluded.body, param_count = excluded.param_count,"
		" config = excluded.config");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "template");
	sqlite3_bind_text(st, 1, t->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, t->language, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, t->body ? t->body : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, t->param_count);
	sq_bind_opt(st, 7, t->config);
	return sq_step_done(s, st, &j->err, "template");
}

/* The config is stored as given, but only if it is a JSON object: adapters
 * parse it at send time, where a broken one could only fail every message. */
int sq_template_upsert(struct store *st, const struct template_row *t, struct hr_err *err)
{
	if (!t || !t->tenant_id[0] || !t->channel[0] || !t->name[0])
		return hr_fail(err, HR_EINVAL, "template",
		               "template needs tenant, channel and name");
	int crc = store_template_config_check(t, err);
	if (crc)
		return crc;
	struct job_conf c = {.j = {.run = run_template}, .row = t};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &c.j, err);
}

int sq_template_get(struct store *st, const char *tenant_id, const char *channel,
                    const char *name, const char *language, struct template_row *out)
{
	struct sq_store *s = (struct sq_store *)st;
	memset(out, 0, sizeof *out);
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(
	    s, R_TEMPLATE,
	    "SELECT tenant_id, channel, name, language, body, param_count, config, unit_id"
	    " FROM template WHERE tenant_id = ?1 AND channel = ?2 AND name = ?3 AND language = ?4",
	    &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, tenant_id ? tenant_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, channel ? channel : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, name ? name : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, language ? language : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		const struct store_cols c = sq_cols(q);
		if ((rc = store_row_template(&c, out, NULL)) != 0)
			template_row_clear(out);
	} else {
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	}
	sq_reader_put(s, r);
	return rc;
}

int sq_idem_get(struct store *st, const char *tenant_id, const char *key,
                struct idem_row *out)
{
	struct sq_store *s = (struct sq_store *)st;
	memset(out, 0, sizeof *out);
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_IDEM,
	                       "SELECT request_hash, http_status, response FROM idempotency_key"
	                       " WHERE tenant_id = ?1 AND key = ?2",
	                       &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, tenant_id ? tenant_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key ? key : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		bool oom = false;
		sq_col_copy(q, 0, out->request_hash, sizeof out->request_hash);
		out->http_status = sqlite3_column_int(q, 1);
		out->response = sq_col_dup(q, 2, &oom);
		rc = oom ? HR_ENOMEM : 0;
	} else {
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	}
	sq_reader_put(s, r);
	return rc;
}

struct job_retention {
	struct wr_job j;
	int64_t inbox_before, idem_before;
	int limit;
	int64_t deleted;
};

static int run_retention(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_retention *p = (struct job_retention *)j;
	/* Inbox ids grow with received_at, so scanning from the oldest id finds
	 * the expired rows first and the LIMIT ends the scan early. */
	sqlite3_stmt *st = sq_wstmt(s, W_INBOX_PRUNE,
		"DELETE FROM webhook_inbox WHERE id IN (SELECT id FROM webhook_inbox"
		" WHERE received_at < ?1 AND state IN (1, 3, 4) ORDER BY id LIMIT ?2)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "webhook_inbox");
	sqlite3_bind_int64(st, 1, p->inbox_before);
	sqlite3_bind_int(st, 2, p->limit);
	int rc = sq_step_done(s, st, &j->err, "webhook_inbox");
	if (rc)
		return rc;
	p->deleted += sqlite3_changes(s->wdb);
	st = sq_wstmt(s, W_IDEM_PRUNE,
		"DELETE FROM idempotency_key WHERE (tenant_id, key) IN (SELECT tenant_id, key"
		" FROM idempotency_key WHERE created_at < ?1 LIMIT ?2)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "idempotency_key");
	sqlite3_bind_int64(st, 1, p->idem_before);
	sqlite3_bind_int(st, 2, p->limit);
	rc = sq_step_done(s, st, &j->err, "idempotency_key");
	if (rc == 0)
		p->deleted += sqlite3_changes(s->wdb);
	return rc;
}

int sq_prune(struct store *st, int64_t inbox_before, int64_t idem_before, int limit,
             int64_t *n)
{
	struct job_retention p = {.j = {.run = run_retention}, .inbox_before = inbox_before,
	                          .idem_before = idem_before, .limit = limit > 0 ? limit : 10000};
	int rc = wr_run_blocking(&((struct sq_store *)st)->wr, &p.j, NULL);
	if (n)
		*n = rc == 0 ? p.deleted : 0;
	return rc;
}
