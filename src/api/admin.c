/*
 * admin.c - the admin API: tenants (operators only), business units and
 * API keys of a tenant (its tenant-wide `admin` credentials, or an
 * operator), and the audit log of administrative actions.
 *
 *   GET  /v1/tenants                          POST /v1/tenants {id, name}
 *   GET  /v1/tenants/{t}                      POST /v1/tenants/{t}/disable|enable
 *   POST /v1/tenants/{t}/limits (limits.c)
 *   GET  /v1/tenants/{t}/units                POST /v1/tenants/{t}/units {id, name}
 *   POST /v1/tenants/{t}/units/{u}/disable|enable
 *   GET  /v1/tenants/{t}/keys                 POST /v1/tenants/{t}/keys
 *        {scopes, unit?, label?, expires_at? (RFC 3339)}: 201 with the key, shown once
 *   POST /v1/tenants/{t}/keys/{prefix}/revoke
 *   GET  /v1/audit?limit=&cursor=&tenant= (tenant: operators only)
 *
 * A key is "hk_" + 8 hex digits (its prefix: shown, listed, revoked by) +
 * "_" + 43 base64url characters of 256 random bits; the store keeps its
 * SHA-256 only. A new key's scopes must be among its creator's (an admin
 * cannot mint a key stronger than itself); operators may grant any.
 * Every change is written with its audit row in one transaction. A
 * revocation or a disable flushes this node's credential cache, so it
 * holds here from the next request; other nodes within the cache period.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/crypto.h"

#define AUDIT_DEFAULT 100
#define KEY_SECRET_BYTES 32

void api_audit_row(const struct api_req *r, const char *tenant, const char *action,
                   const char *object, struct audit_row *a)
{
	memset(a, 0, sizeof *a);
	hr_strlcpy(a->tenant_id, tenant, sizeof a->tenant_id);
	hr_strlcpy(a->actor, r->who.actor[0] ? r->who.actor : "unknown", sizeof a->actor);
	hr_strlcpy(a->action, action, sizeof a->action);
	hr_utf8_copy(a->object, object, sizeof a->object);
}

int api_audit_json(const struct api_req *r, const char *tenant, const char *action,
                   const char *object, json_t *before, json_t *after, struct audit_row *a)
{
	api_audit_row(r, tenant, action, object, a);
	a->before = before ? json_dumps(before, JSON_COMPACT) : NULL;
	a->after = after ? json_dumps(after, JSON_COMPACT) : NULL;
	bool oom = (before && !a->before) || (after && !a->after);
	json_decref(before);
	json_decref(after);
	if (oom) {
		api_audit_done(a);
		return HR_ENOMEM;
	}
	return 0;
}

void api_audit_done(struct audit_row *a)
{
	free(a->before);
	free(a->after);
	a->before = a->after = NULL;
}

/* Tenant and unit ids: 1..63 of [A-Za-z0-9_-] (they appear in paths, key
 * rows and secret namespaces). */
static int id_check(json_t *v, const char *field, char *out, size_t size, struct hr_err *err)
{
	const char *s = json_string_value(v);
	if (!s || !*s || strlen(s) >= size || strlen(s) > 63 ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
	        strlen(s))
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be 1..63 letters, digits, '_' or '-'", field);
	hr_strlcpy(out, s, size);
	return 0;
}

static int name_check(json_t *v, const char *field, char *out, size_t size, struct hr_err *err)
{
	if (!v) {
		out[0] = '\0';
		return 0;
	}
	const char *s = json_string_value(v);
	if (!s || strlen(s) >= size)
		return hr_fail(err, HR_EINVAL, field, "%s must be a string of at most %zu bytes",
		               field, size - 1);
	hr_strlcpy(out, s, size);
	return 0;
}

int api_keys_check(json_t *o, const char *const *allowed, struct hr_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		const char *const *p;
		for (p = allowed; *p && strcmp(*p, k) != 0; p++)
			;
		if (!*p) {
			char clip[64];
			return hr_fail(err, HR_EINVAL, api_clip(clip, sizeof clip, k),
			               "unknown field '%s'", clip);
		}
	}
	return 0;
}

static json_t *time_json(int64_t us)
{
	if (!us)
		return json_null();
	char t[32];
	hr_time_format(us, t);
	return json_string(t);
}

static json_t *tenant_json(const struct tenant_info *t)
{
	return json_pack("{s:s, s:s, s:b, s:o}", "id", t->id, "name", t->name, "disabled",
	                 t->disabled, "created_at", time_json(t->created_at));
}

static json_t *unit_json(const struct unit_row *u)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:o}", "tenant", u->tenant_id, "id", u->id, "name",
	                 u->name, "disabled", u->disabled, "created_at", time_json(u->created_at));
}

static json_t *scopes_json(const char *text)
{
	json_t *a = json_array();
	unsigned sc;
	struct hr_err e;
	if (!a || api_scopes_parse(text, &sc, &e, "scopes") != 0)
		return a;
	for (unsigned b = 1; b <= SCOPE_ADMIN; b <<= 1)
		if (sc & b)
			json_array_append_new(a, json_string(api_scope_name(b)));
	return a;
}

static json_t *key_json(const struct key_row *k, const char *hash)
{
	char pfx[24];
	if (k->prefix[0])
		hr_strlcpy(pfx, k->prefix, sizeof pfx);
	else
		snprintf(pfx, sizeof pfx, "cfg_%.8s", hash);
	return json_pack("{s:s, s:s, s:s?, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:s}", "prefix", pfx,
	                 "tenant", k->tenant_id, "unit", k->unit_id[0] ? k->unit_id : NULL, "label",
	                 k->label, "scopes", scopes_json(k->scopes), "created_by", k->created_by,
	                 "created_at", time_json(k->created_at), "expires_at",
	                 time_json(k->expires_at), "revoked_at", time_json(k->revoked_at),
	                 "last_used_at", time_json(k->last_used_at), "source",
	                 k->api_created ? "api" : "config");
}

/* ---- tenants ---- */

enum MHD_Result api_tenants_list(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct tenant_info *v;
	size_t n;
	/* No parameters: one that is sent is refused, as on every route. */
	static const char *const none[] = {NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, none, &err);
	if (rc)
		return api_fail(r, rc, &err);
	rc = st->ops->tenant_list(st, &v, &n);
	if (rc)
		return api_fail(r, rc, NULL);
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, tenant_json(&v[i])))
			json_decref(a), a = NULL;
	free(v);
	return api_respond_json(r, 200, a ? json_pack("{s:o}", "tenants", a) : NULL, NULL);
}

enum MHD_Result api_tenants_post(struct api_req *r)
{
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"id", "name", NULL};
	struct tenant_info t = {0};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_keys_check(o, allowed, &err);
	if (!rc)
		rc = id_check(json_object_get(o, "id"), "id", t.id, sizeof t.id, &err);
	if (!rc)
		rc = name_check(json_object_get(o, "name"), "name", t.name, sizeof t.name, &err);
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	if (!t.name[0])
		hr_strlcpy(t.name, t.id, sizeof t.name);
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "tenant:%s", t.id);
	api_audit_row(r, t.id, "tenant.create", obj, &a);
	json_t *after = json_pack("{s:s}", "name", t.name);
	a.after = after ? json_dumps(after, JSON_COMPACT) : NULL;
	json_decref(after);
	struct store *st = r->srv->o.store;
	rc = st->ops->tenant_create(st, &t, &a, &err);
	free(a.after);
	if (rc)
		return api_fail(r, rc, &err);
	struct tenant_info got;
	if (st->ops->tenant_get(st, t.id, &got) == 0)
		t = got;
	return api_respond_json(r, 201, tenant_json(&t), NULL);
}

/* One tenant, with its limits and today's count of accepted messages
 * (README "Limits"). */
enum MHD_Result api_tenant_get(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, r->path_tenant, &t);
	if (rc)
		return api_fail(r, rc, NULL);
	int64_t today = 0;
	if ((rc = st->ops->tenant_usage(st, t.id, store_day(hr_now_us()), &today)) != 0)
		return api_fail(r, rc, NULL);
	json_t *j = tenant_json(&t);
	if (j && json_object_set_new(j, "limits", api_limits_json(&t.limits, today)) != 0) {
		json_decref(j);
		j = NULL;
	}
	return api_respond_json(r, 200, j, NULL);
}

static enum MHD_Result tenant_set(struct api_req *r, bool disabled)
{
	struct store *st = r->srv->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, r->path_tenant, &t);
	if (rc)
		return api_fail(r, rc, NULL);
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "tenant:%s", t.id);
	api_audit_row(r, t.id, disabled ? "tenant.disable" : "tenant.enable", obj, &a);
	a.before = t.disabled ? "{\"disabled\":true}" : "{\"disabled\":false}";
	a.after = disabled ? "{\"disabled\":true}" : "{\"disabled\":false}";
	struct hr_err err;
	hr_err_clear(&err);
	if ((rc = st->ops->tenant_set_disabled(st, t.id, disabled, &a, &err)) != 0)
		return api_fail(r, rc, &err);
	api_keycache_flush(&r->srv->keys);
	t.disabled = disabled;
	return api_respond_json(r, 200, tenant_json(&t), NULL);
}

enum MHD_Result api_tenant_disable(struct api_req *r)
{
	return tenant_set(r, true);
}
enum MHD_Result api_tenant_enable(struct api_req *r)
{
	return tenant_set(r, false);
}

/* ---- units ---- */

enum MHD_Result api_units_list(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, r->path_tenant, &t);
	if (rc)
		return api_fail(r, rc, NULL);
	struct unit_row *v;
	size_t n;
	if ((rc = st->ops->unit_list(st, t.id, &v, &n)) != 0)
		return api_fail(r, rc, NULL);
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, unit_json(&v[i])))
			json_decref(a), a = NULL;
	free(v);
	return api_respond_json(r, 200, a ? json_pack("{s:o}", "units", a) : NULL, NULL);
}

enum MHD_Result api_units_post(struct api_req *r)
{
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"id", "name", NULL};
	struct unit_row u = {0};
	hr_strlcpy(u.tenant_id, r->path_tenant, sizeof u.tenant_id);
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_keys_check(o, allowed, &err);
	if (!rc)
		rc = id_check(json_object_get(o, "id"), "id", u.id, sizeof u.id, &err);
	if (!rc)
		rc = name_check(json_object_get(o, "name"), "name", u.name, sizeof u.name, &err);
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	if (!u.name[0])
		hr_strlcpy(u.name, u.id, sizeof u.name);
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "unit:%s", u.id);
	api_audit_row(r, u.tenant_id, "unit.create", obj, &a);
	json_t *after = json_pack("{s:s}", "name", u.name);
	a.after = after ? json_dumps(after, JSON_COMPACT) : NULL;
	json_decref(after);
	struct store *st = r->srv->o.store;
	rc = st->ops->unit_create(st, &u, false, &a, &err);
	free(a.after);
	if (rc == HR_ENOTFOUND) /* the tenant (an operator naming one that is not) */
		return api_fail(r, rc, NULL);
	if (rc)
		return api_fail(r, rc, &err);
	struct unit_row got;
	if (st->ops->unit_get(st, u.tenant_id, u.id, &got) == 0)
		u = got;
	return api_respond_json(r, 201, unit_json(&u), NULL);
}

static enum MHD_Result unit_set(struct api_req *r, bool disabled)
{
	struct store *st = r->srv->o.store;
	struct unit_row u;
	int rc = st->ops->unit_get(st, r->path_tenant, r->path_sub, &u);
	if (rc)
		return api_fail(r, rc, NULL);
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "unit:%s", u.id);
	api_audit_row(r, u.tenant_id, disabled ? "unit.disable" : "unit.enable", obj, &a);
	a.before = u.disabled ? "{\"disabled\":true}" : "{\"disabled\":false}";
	a.after = disabled ? "{\"disabled\":true}" : "{\"disabled\":false}";
	struct hr_err err;
	hr_err_clear(&err);
	if ((rc = st->ops->unit_set_disabled(st, u.tenant_id, u.id, disabled, &a, &err)) != 0)
		return api_fail(r, rc, &err);
	api_keycache_flush(&r->srv->keys);
	u.disabled = disabled;
	return api_respond_json(r, 200, unit_json(&u), NULL);
}

enum MHD_Result api_unit_disable(struct api_req *r)
{
	return unit_set(r, true);
}
enum MHD_Result api_unit_enable(struct api_req *r)
{
	return unit_set(r, false);
}

/* ---- keys ---- */

enum MHD_Result api_keys_list(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, r->path_tenant, &t);
	if (rc)
		return api_fail(r, rc, NULL);
	struct key_row *v;
	size_t n;
	if ((rc = st->ops->key_list(st, t.id, &v, &n)) != 0)
		return api_fail(r, rc, NULL);
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, key_json(&v[i], v[i].hash)))
			json_decref(a), a = NULL;
	explicit_bzero(v, n * sizeof *v);
	free(v);
	return api_respond_json(r, 200, a ? json_pack("{s:o}", "keys", a) : NULL, NULL);
}

/* 43 base64url characters of 32 random bytes. */
static void key_secret(char out[44])
{
	unsigned char b[KEY_SECRET_BYTES];
	hr_random_bytes(b, sizeof b);
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < sizeof b; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16;
		if (i + 1 < sizeof b)
			v |= (uint32_t)b[i + 1] << 8;
		if (i + 2 < sizeof b)
			v |= b[i + 2];
		size_t take = i + 2 < sizeof b ? 4 : i + 1 < sizeof b ? 3 : 2;
		for (size_t k = 0; k < take; k++)
			out[o++] = alpha[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
	explicit_bzero(b, sizeof b);
}

enum MHD_Result api_keys_post(struct api_req *r)
{
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"scopes", "unit", "label", "expires_at", NULL};
	struct key_row k = {0};
	hr_strlcpy(k.tenant_id, r->path_tenant, sizeof k.tenant_id);
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_keys_check(o, allowed, &err);
	unsigned scopes = 0;
	json_t *sc = json_object_get(o, "scopes");
	if (!rc) {
		/* A list of names, or one space-separated string. */
		char text[512] = "";
		if (json_is_string(sc)) {
			hr_strlcpy(text, json_string_value(sc), sizeof text);
		} else if (json_is_array(sc)) {
			size_t i;
			json_t *v;
			json_array_foreach(sc, i, v)
			{
				char f[32];
				snprintf(f, sizeof f, "scopes[%zu]", i);
				const char *s = json_string_value(v);
				if (!s || strchr(s, ' ') || strchr(s, ',') ||
				    strlen(text) + strlen(s) + 2 > sizeof text) {
					rc = hr_fail(&err, HR_EINVAL, f,
					             "%s must be one scope name", f);
					break;
				}
				if (text[0])
					strcat(text, " ");
				strcat(text, s);
			}
		} else {
			rc = hr_fail(&err, HR_EINVAL, "scopes",
			             "scopes is required: a list of scope names, or \"*\"");
		}
		if (!rc)
			rc = api_scopes_parse(text, &scopes, &err, "scopes");
	}
	if (!rc && !r->who.operator&&(scopes & ~r->who.scopes)) {
		char want[256];
		rc = hr_fail(&err, HR_EFORBIDDEN, "scopes",
		             "a key cannot have scopes its creator lacks (asked: %s)",
		             api_scopes_text(scopes & ~r->who.scopes, want, sizeof want));
	}
	json_t *unit = json_object_get(o, "unit");
	if (!rc && unit && !json_is_null(unit))
		rc = id_check(unit, "unit", k.unit_id, sizeof k.unit_id, &err);
	if (!rc)
		rc =
		    name_check(json_object_get(o, "label"), "label", k.label, sizeof k.label, &err);
	json_t *exp = json_object_get(o, "expires_at");
	if (!rc && exp && !json_is_null(exp)) {
		if (!json_is_string(exp) ||
		    hr_time_parse(json_string_value(exp), &k.expires_at) != 0)
			rc = hr_fail(&err, HR_EINVAL, "expires_at",
			             "expires_at must be an RFC 3339 time (2026-01-31T00:00:00Z)");
		else if (k.expires_at <= hr_now_us())
			rc = hr_fail(&err, HR_EINVAL, "expires_at", "expires_at is in the past");
	}
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	api_scopes_text(scopes, k.scopes, sizeof k.scopes);
	hr_strlcpy(k.created_by, r->who.actor, sizeof k.created_by);

	unsigned char id[4];
	hr_random_bytes(id, sizeof id);
	snprintf(k.prefix, sizeof k.prefix, "hk_%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
	char secret[44], key[96];
	key_secret(secret);
	snprintf(key, sizeof key, "%s_%s", k.prefix, secret);
	explicit_bzero(secret, sizeof secret);
	hr_sha256_hex(key, strlen(key), k.hash);

	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "key:%s", k.prefix);
	api_audit_row(r, k.tenant_id, "key.create", obj, &a);
	json_t *after =
	    json_pack("{s:s?, s:s, s:s, s:o}", "unit", k.unit_id[0] ? k.unit_id : NULL, "scopes",
	              k.scopes, "label", k.label, "expires_at", time_json(k.expires_at));
	a.after = after ? json_dumps(after, JSON_COMPACT) : NULL;
	json_decref(after);
	struct store *st = r->srv->o.store;
	/* The tenant must exist (an operator may name any). */
	struct tenant_info t;
	rc = st->ops->tenant_get(st, k.tenant_id, &t);
	if (rc == 0)
		rc = st->ops->key_create(st, &k, &a, &err);
	free(a.after);
	if (rc) {
		explicit_bzero(key, sizeof key);
		return api_fail(r, rc, rc == HR_ENOTFOUND && !err.field[0] ? NULL : &err);
	}
	k.created_at = hr_now_us();
	k.api_created = true;
	json_t *j = key_json(&k, k.hash);
	if (j && json_object_set_new(j, "key", json_string(key)))
		json_decref(j), j = NULL;
	explicit_bzero(key, sizeof key);
	static const char *const nostore[] = {"Cache-Control", "no-store", NULL};
	return api_respond_json(r, 201, j, nostore);
}

enum MHD_Result api_key_revoke(struct api_req *r)
{
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "key:%s", r->path_sub);
	api_audit_row(r, r->path_tenant, "key.revoke", obj, &a);
	a.before = "{\"revoked\":false}";
	a.after = "{\"revoked\":true}";
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	char hash[65] = "";
	int rc = st->ops->key_revoke(st, r->path_tenant, r->path_sub, &a, hash, &err);
	if (rc == HR_ENOTFOUND)
		return api_fail(r, rc, NULL);
	if (rc)
		return api_fail(r, rc, &err);
	api_keycache_flush(&r->srv->keys);
	char clip[HR_NAME_MAX];
	return api_respond_json(r, 200,
	                        json_pack("{s:s, s:b}", "prefix",
	                                  api_clip(clip, sizeof clip, r->path_sub), "revoked", 1),
	                        NULL);
}

/* ---- audit ---- */

enum MHD_Result api_audit_list(struct api_req *r)
{
	static const char *const allowed[] = {"limit", "cursor", "tenant", NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, allowed, &err);
	if (rc)
		return api_fail(r, rc, &err);
	long limit = AUDIT_DEFAULT;
	const char *l = api_query(r, "limit");
	if (l) {
		char *end;
		limit = strtol(l, &end, 10);
		if (*end || limit < 1 || limit > 1000)
			return api_fail(
			    r, hr_fail(&err, HR_EINVAL, "limit", "limit must be 1..1000"), &err);
	}
	long long before = 0;
	const char *c = api_query(r, "cursor");
	if (c) {
		char *end;
		before = strtoll(c, &end, 10);
		if (*end || before < 1)
			return api_fail(r, hr_fail(&err, HR_EINVAL, "cursor", "not a cursor"),
			                &err);
	}
	const char *tenant = r->who.tenant;
	const char *qt = api_query(r, "tenant");
	if (r->who.operator)
		tenant = qt; /* NULL: every tenant */
	else if (qt && strcmp(qt, r->who.tenant) != 0)
		return api_fail(
		    r, hr_fail(&err, HR_EINVAL, "tenant", "only operators choose the tenant"),
		    &err);
	struct store *st = r->srv->o.store;
	struct audit_row *v;
	size_t n;
	if ((rc = st->ops->audit_list(st, tenant, before, (int)limit, &v, &n)) != 0)
		return api_fail(r, rc, NULL);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *b = v[i].before ? json_loads(v[i].before, 0, NULL) : NULL;
		/* a tenant switch is in the log of the tenant entered; the
		 * tenant left is another customer's name, for operators only. */
		if (!r->who.operator&& !strcmp(v[i].action, "session.tenant")) {
			json_decref(b);
			b = NULL;
		}
		json_t *f = v[i].after ? json_loads(v[i].after, 0, NULL) : NULL;
		json_t *e =
		    json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:o, s:o}", "id", (json_int_t)v[i].id,
		              "tenant", v[i].tenant_id, "actor", v[i].actor, "at",
		              time_json(v[i].at), "action", v[i].action, "object", v[i].object,
		              "before", b ? b : json_null(), "after", f ? f : json_null());
		if (!a || !e || json_array_append_new(a, e)) {
			json_decref(a);
			a = NULL;
		}
		audit_row_clear(&v[i]);
	}
	bool more = n == (size_t)limit;
	json_t *out = a ? json_pack("{s:o}", "entries", a) : NULL;
	if (out && more) {
		char cur[24];
		snprintf(cur, sizeof cur, "%lld", (long long)v[n - 1].id);
		json_object_set_new(out, "next_cursor", json_string(cur));
	}
	free(v);
	return api_respond_json(r, 200, out, NULL);
}
