/*
 * callbacks_api.c - callbacks to client systems through the API: which URL
 * an accepted message's callbacks go to (api_callback_url, used by message
 * and batch accepts), and the outbox's routes, each scoped to the caller's
 * tenant (another tenant's id is 404, never 403):
 *   GET  /v1/callbacks?status=pending|delivered|dead&limit=&cursor=
 *   GET  /v1/callbacks/{id}
 *   POST /v1/callbacks/{id}/replay       a dead or delivered one, again
 *   POST /v1/callbacks/replay?status=dead   up to `limit` (1000) dead ones
 * A row shows what was sent and the receiver's last HTTP status, never
 * its answer's body (Herald does not keep it).
 */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define LIST_DEFAULT 100
#define REPLAY_DEFAULT 1000

static const struct callback_tenant *tenant_cfg(const struct api_server *s, const char *tenant)
{
	for (size_t i = 0; i < s->o.ncallback_tenants; i++)
		if (strcmp(s->o.callback_tenants[i].id, tenant) == 0)
			return &s->o.callback_tenants[i];
	return NULL;
}

int api_callback_url(const struct api_server *s, const char *tenant, json_t *given,
                     const char *field, const char *fallback, char **out, struct hr_err *err)
{
	*out = NULL;
	const struct callback_tenant *t = tenant_cfg(s, tenant);
	const char *url = NULL;
	if (given && !json_is_null(given)) {
		url = json_string_value(given);
		if (!url)
			return hr_fail(err, HR_EINVAL, field, "%s must be a string", field);
		int rc = callback_url_check(s->o.callback_policy, url, field, err);
		if (rc)
			return rc;
		if (!t || !t->secret)
			return hr_fail(
			    err, HR_EINVAL, field,
			    "%s: this tenant has no callback secret to sign callbacks with "
			    "(the operator sets tenants[].callback_secret)",
			    field);
	} else if (fallback && *fallback) {
		url = fallback;
	} else if (t && t->url) {
		url = t->url;
	}
	if (url && !(*out = strdup(url)))
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return 0;
}

static json_t *row_json(const struct callback_row *c)
{
	char *body = callback_body(c);
	json_t *payload = body ? json_loads(body, 0, NULL) : NULL;
	free(body);
	char upd[32], nt[32], dl[32];
	hr_time_format(c->updated_at, upd);
	hr_time_format(c->next_try_at, nt);
	hr_time_format(c->delivered_at, dl);
	return json_pack("{s:I, s:s, s:s, s:s, s:i, s:o, s:o, s:s, s:o, s:o, s:o}", "id",
	                 (json_int_t)c->id, "state", callback_state_name(c->state), "url", c->url,
	                 "event", c->event, "attempts", c->attempts, "last_http_status",
	                 c->last_http ? json_integer(c->last_http) : json_null(), "last_error",
	                 c->last_error[0] ? json_string(c->last_error) : json_null(), "updated_at",
	                 upd, "next_try_at", c->state == CB_PENDING ? json_string(nt) : json_null(),
	                 "delivered_at", c->delivered_at ? json_string(dl) : json_null(), "payload",
	                 payload ? payload : json_null());
}

/* {id} of /v1/callbacks/{id}: a positive decimal, else 404 (no such row). */
static bool path_id(const struct api_req *r, int64_t *id)
{
	const char *p = r->path_id;
	if (!*p || strlen(p) > 18 || strspn(p, "0123456789") != strlen(p))
		return false;
	*id = strtoll(p, NULL, 10);
	return *id > 0;
}

static int state_arg(struct api_req *r, int *state, struct hr_err *err)
{
	const char *v = api_query(r, "status");
	*state = -1;
	if (v && (*state = callback_state_parse(v)) < 0) {
		char c[64];
		return hr_fail(err, HR_EINVAL, "status",
		               "status must be pending, delivered or dead (got '%s')",
		               api_clip(c, sizeof c, v));
	}
	return 0;
}

static int int_arg(struct api_req *r, const char *name, int def, int max, int *out,
                   struct hr_err *err)
{
	const char *v = api_query(r, name);
	*out = def;
	if (!v)
		return 0;
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < 1 || n > max)
		return hr_fail(err, HR_EINVAL, name, "%s must be an integer from 1 to %d", name,
		               max);
	*out = (int)n;
	return 0;
}

enum MHD_Result api_callbacks_list(struct api_req *r)
{
	static const char *const allowed[] = {"status", "limit", "cursor", NULL};
	struct hr_err err = {0};
	int state, limit, rc = api_query_check(r, allowed, &err);
	if (rc == 0)
		rc = state_arg(r, &state, &err);
	if (rc == 0)
		rc = int_arg(r, "limit", LIST_DEFAULT, 1000, &limit, &err);
	int64_t before = 0;
	const char *cur = api_query(r, "cursor");
	if (rc == 0 && cur) {
		char *end;
		before = strtoll(cur, &end, 10);
		if (*end || before < 1)
			rc = hr_fail(&err, HR_EINVAL, "cursor",
			             "cursor must be the next_cursor of a previous page");
	}
	if (rc)
		return api_fail(r, rc, &err);
	struct store *st = r->srv->o.store;
	struct callback_row *v = NULL;
	size_t n = 0;
	bool more = false;
	rc = st->ops->callback_list(st, r->tenant, state, before, limit, &v, &n, &more);
	if (rc)
		return api_fail(r, rc, NULL);
	int64_t last = n ? v[n - 1].id : 0;
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++) {
		if (data && json_array_append_new(data, row_json(&v[i])) != 0) {
			json_decref(data);
			data = NULL;
		}
		callback_row_clear(&v[i]);
	}
	json_t *next = more && n ? json_sprintf("%lld", (long long)last) : json_null();
	free(v);
	if (!data) {
		json_decref(next);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, json_pack("{s:o, s:o}", "data", data, "next_cursor", next),
	                        NULL);
}

enum MHD_Result api_callback_get(struct api_req *r)
{
	int64_t id;
	if (!path_id(r, &id))
		return api_fail(r, HR_ENOTFOUND, NULL);
	struct store *st = r->srv->o.store;
	struct callback_row c;
	int rc = st->ops->callback_get(st, r->tenant, id, &c);
	if (rc)
		return api_fail(r, rc, NULL);
	json_t *j = row_json(&c);
	callback_row_clear(&c);
	return j ? api_respond_json(r, 200, j, NULL) : api_fail(r, HR_ENOMEM, NULL);
}

enum MHD_Result api_callback_replay(struct api_req *r)
{
	int64_t id, n = 0;
	if (!path_id(r, &id))
		return api_fail(r, HR_ENOTFOUND, NULL);
	struct store *st = r->srv->o.store;
	struct hr_err err = {0};
	int rc = st->ops->callback_replay(st, r->tenant, id, 0, &n, &err);
	if (rc)
		return api_fail(r, rc, &err);
	return api_respond_json(
	    r, 202, json_pack("{s:I, s:I}", "replayed", (json_int_t)n, "id", (json_int_t)id), NULL);
}

enum MHD_Result api_callbacks_replay(struct api_req *r)
{
	static const char *const allowed[] = {"status", "limit", NULL};
	struct hr_err err = {0};
	int state, limit, rc = api_query_check(r, allowed, &err);
	if (rc == 0)
		rc = state_arg(r, &state, &err);
	if (rc == 0 && state != CB_DEAD)
		rc = hr_fail(&err, HR_EINVAL, "status",
		             "status=dead is required: only dead callbacks are replayed in bulk "
		             "(replay a delivered one by its id)");
	if (rc == 0)
		rc = int_arg(r, "limit", REPLAY_DEFAULT, 10000, &limit, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct store *st = r->srv->o.store;
	int64_t n = 0;
	rc = st->ops->callback_replay(st, r->tenant, 0, limit, &n, &err);
	if (rc)
		return api_fail(r, rc, &err);
	return api_respond_json(
	    r, 202, json_pack("{s:I, s:b}", "replayed", (json_int_t)n, "more", n == limit), NULL);
}
