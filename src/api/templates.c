/*
 * templates.c - the tenant's message templates through the API:
 *
 *   GET    /v1/templates?limit=&cursor=             messages:read
 *   POST   /v1/templates {channel, name, language, body, header?, buttons?,
 *          regulatory?, delivery_policy?, route?, fallback_after_s?,
 *          fallback_text?}: 201 created, 200 updated  templates:write
 *   GET    /v1/templates/{channel}/{name}/{language}  messages:read
 *   DELETE /v1/templates/{channel}/{name}/{language}  templates:write
 *
 * A template's key is (channel, name, language) within the tenant; the
 * body's {{n}} placeholders and the extras are checked as the config
 * file's are (serve_template_config). Reads need messages:read, as reading
 * accounts does: a template is what the tenant's messages say, and whoever
 * reads the messages reads their text already; a separate read scope would
 * guard nothing more.
 *
 * Units own what they create, as with accounts (channels.c): a unit's
 * credential makes templates of its unit, sees and sends with its own and
 * the tenant's shared ones, may change and remove only its own (the
 * shared one: 409 to change, 403 to remove; a sibling's: 404 everywhere);
 * a tenant-wide credential sees and changes all of the tenant's, and what
 * it makes is shared. Another tenant's template is 404. Every change is
 * written with its audit row (before/after) in one transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/template.h"

#define TEMPLATE_BODY_MAX 4096
#define TEMPLATE_CONFIG_MAX (16u << 10)
#define TEMPLATES_PAGE 100

/* Names: 1..63 of letters, digits, '_', '-' and '.' (WhatsApp's are
 * lower-case letters, digits and '_'); languages such as "en", "en_GB",
 * "pt-BR": 2..15 letters, '_' or '-'. Both appear in paths. */
static bool name_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return false;
	}
	return true;
}

static bool language_ok(const char *s)
{
	if (strlen(s) < 2 || strlen(s) > 15)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
		      *s == '-'))
			return false;
	return true;
}

/* The API's view of a template. NULL when out of memory. */
static json_t *template_json(const struct template_row *t)
{
	json_t *cfg = NULL;
	if (t->config && *t->config) {
		json_error_t je;
		cfg = json_loads(t->config, 0, &je);
		if (!cfg)
			return NULL;
	}
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:s, s:i, s:s?}", "channel", t->channel, "name", t->name,
	              "language", t->language, "body", t->body ? t->body : "", "param_count",
	              t->param_count, "unit", t->unit_id[0] ? t->unit_id : NULL);
	if (!o) {
		json_decref(cfg);
		return NULL;
	}
	/* The extras as the client gave them (header, buttons, regulatory,
	 * delivery_policy; the route's three keys at the top level). */
	const char *k;
	json_t *v;
	bool ok = true;
	json_object_foreach(cfg, k, v)
	{
		if (!strcmp(k, "fallback")) {
			const char *fk;
			json_t *fv;
			json_object_foreach(v, fk, fv) ok = ok && json_object_set(o, fk, fv) == 0;
		} else {
			ok = ok && json_object_set(o, k, v) == 0;
		}
	}
	json_decref(cfg);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int not_found(const char *channel, const char *name, const char *lang, struct hr_err *err)
{
	char c[16], n[HR_NAME_MAX], l[16];
	return hr_fail(err, HR_ENOTFOUND, NULL, "no %s template '%s' in language '%s'",
	               api_clip(c, sizeof c, channel), api_clip(n, sizeof n, name),
	               api_clip(l, sizeof l, lang));
}

/* The path's template, visible to the caller (a sibling unit's is absent). */
static int path_template(struct api_req *r, struct template_row *out, struct hr_err *err)
{
	struct store *st = r->srv->o.store;
	int rc =
	    st->ops->template_get(st, r->tenant, r->path_channel, r->path_id, r->path_sub, out);
	if (rc == 0 && !api_unit_visible(r, out->unit_id, true)) {
		template_row_clear(out);
		rc = HR_ENOTFOUND;
	}
	if (rc == HR_ENOTFOUND)
		return not_found(r->path_channel, r->path_id, r->path_sub, err);
	return rc ? hr_fail(err, rc, NULL, "template lookup failed") : 0;
}

enum MHD_Result api_templates_list(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const allowed[] = {"limit", "cursor", NULL};
	int rc = api_query_check(r, allowed, &err);
	if (rc)
		return api_fail(r, rc, &err);
	int limit = TEMPLATES_PAGE;
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "limit");
	if (v) {
		char *end;
		long l = strtol(v, &end, 10);
		if (!*v || *end || l < 1 || l > 1000) {
			hr_fail(&err, HR_EINVAL, "limit", "limit must be 1..1000");
			return api_fail(r, HR_EINVAL, &err);
		}
		limit = (int)l;
	}
	/* The cursor is the last key of the previous page: channel/name/language. */
	struct template_key after, *ap = NULL;
	const char *c = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "cursor");
	if (c) {
		memset(&after, 0, sizeof after);
		const char *s1 = strchr(c, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
		size_t l1 = s1 ? (size_t)(s1 - c) : 0, l2 = s2 ? (size_t)(s2 - s1 - 1) : 0;
		if (!s2 || l1 == 0 || l1 >= sizeof after.channel || l2 == 0 ||
		    l2 >= sizeof after.name || strlen(s2 + 1) == 0 ||
		    strlen(s2 + 1) >= sizeof after.language) {
			hr_fail(&err, HR_EINVAL, "cursor", "cursor is not one this API gave");
			return api_fail(r, HR_EINVAL, &err);
		}
		memcpy(after.channel, c, l1);
		memcpy(after.name, s1 + 1, l2);
		hr_strlcpy(after.language, s2 + 1, sizeof after.language);
		ap = &after;
	}
	struct store *st = r->srv->o.store;
	struct template_row *rows = NULL;
	size_t n = 0;
	bool more = false;
	rc = st->ops->template_list(st, r->tenant, r->who.unit[0] ? r->who.unit : NULL, ap, limit,
	                            &rows, &n, &more);
	if (rc)
		return api_fail(r, rc, NULL);
	json_t *data = json_array();
	bool ok = data != NULL;
	for (size_t i = 0; i < n; i++) {
		if (ok)
			ok = json_array_append_new(data, template_json(&rows[i])) == 0;
	}
	char next[sizeof after.channel + sizeof after.name + sizeof after.language + 4] = "";
	if (more && n)
		snprintf(next, sizeof next, "%s/%s/%s", rows[n - 1].channel, rows[n - 1].name,
		         rows[n - 1].language);
	for (size_t i = 0; i < n; i++)
		template_row_clear(&rows[i]);
	free(rows);
	json_t *o =
	    ok ? json_pack("{s:o, s:s?}", "data", data, "next_cursor", next[0] ? next : NULL)
	       : NULL;
	if (!o) {
		if (!ok)
			json_decref(data);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, o, NULL);
}

enum MHD_Result api_template_get(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	struct template_row t;
	int rc = path_template(r, &t, &err);
	if (rc)
		return api_fail(r, rc, &err);
	json_t *j = template_json(&t);
	template_row_clear(&t);
	return j ? api_respond_json(r, 200, j, NULL) : api_fail(r, HR_ENOMEM, NULL);
}

/* Checks the body's fields into t (borrowing from root); errors name the
 * request's field. */
static int template_from(json_t *root, struct template_row *t, struct hr_err *err)
{
	static const char *const allowed[] = {
	    "channel",          "name",          "language",        "body",
	    "header",           "buttons",       "regulatory",      "route",
	    "fallback_after_s", "fallback_text", "delivery_policy", "category", NULL};
	int rc = api_keys_check(root, allowed, err);
	if (rc)
		return rc;
	const char *ch = json_string_value(json_object_get(root, "channel"));
	if (!ch || !channel_find(ch))
		return hr_fail(err, HR_EINVAL, "channel",
		               "channel must be one of whatsapp, sms, rcs, telegram");
	const char *name = json_string_value(json_object_get(root, "name"));
	if (!name || !name_ok(name, HR_NAME_MAX - 1, "_-."))
		return hr_fail(err, HR_EINVAL, "name",
		               "name must be 1..63 letters, digits, '_', '-' or '.'");
	const char *lang = json_string_value(json_object_get(root, "language"));
	if (!lang || !language_ok(lang))
		return hr_fail(err, HR_EINVAL, "language",
		               "language must be 2..15 letters, '_' or '-' (such as en_GB)");
	const char *body = json_string_value(json_object_get(root, "body"));
	if (!body || !*body || strlen(body) > TEMPLATE_BODY_MAX)
		return hr_fail(err, HR_EINVAL, "body", "body must be text of 1..%d bytes",
		               TEMPLATE_BODY_MAX);
	rc = template_param_count(body, &t->param_count, err);
	if (rc) {
		hr_strlcpy(err->field, "body", sizeof err->field);
		return rc;
	}
	hr_strlcpy(t->channel, ch, sizeof t->channel);
	hr_strlcpy(t->name, name, sizeof t->name);
	hr_strlcpy(t->language, lang, sizeof t->language);
	t->body = (char *)body;
	/* The extras, checked as the config file's; their errors name
	 * "template.<key>": the client's field is "<key>". */
	if ((rc = serve_template_config(root, "template", &t->config, err))) {
		if (strncmp(err->field, "template.", 9) == 0) {
			char f[sizeof err->field];
			hr_strlcpy(f, err->field + 9, sizeof f);
			hr_strlcpy(err->field, f, sizeof err->field);
		}
		return rc;
	}
	if (t->config && strlen(t->config) > TEMPLATE_CONFIG_MAX) {
		free(t->config);
		t->config = NULL;
		return hr_fail(err, HR_ELIMIT, NULL, "the template's extras are over %u bytes",
		               TEMPLATE_CONFIG_MAX);
	}
	return 0;
}

enum MHD_Result api_templates_post(struct api_req *r)
{
	enum MHD_Result ret;
	json_t *root = api_body_object(r, &ret);
	if (!root)
		return ret;
	struct hr_err err;
	hr_err_clear(&err);
	struct template_row t;
	memset(&t, 0, sizeof t);
	hr_strlcpy(t.tenant_id, r->tenant, sizeof t.tenant_id);
	hr_strlcpy(t.unit_id, r->who.unit, sizeof t.unit_id);
	int rc = template_from(root, &t, &err);
	struct store *st = r->srv->o.store;
	/* The template as it was, for the answer's status and the audit log
	 * (read just before the write; the write itself checks ownership). */
	struct template_row old;
	memset(&old, 0, sizeof old);
	bool had = false;
	if (rc == 0) {
		int g = st->ops->template_get(st, r->tenant, t.channel, t.name, t.language, &old);
		if (g != 0 && g != HR_ENOTFOUND)
			rc = hr_fail(&err, g, NULL, "template lookup failed");
		had = g == 0;
		/* A sibling's template: its name is taken (409), and nothing of it
		 * is shown. */
		if (had && !api_unit_visible(r, old.unit_id, true))
			rc = hr_fail(&err, HR_ECONFLICT, "name", "template name '%s' is taken",
			             t.name);
	}
	struct audit_row au;
	bool created = false;
	json_t *after = NULL;
	if (rc == 0) {
		char obj[160];
		snprintf(obj, sizeof obj, "template:%s/%s/%s", t.channel, t.name, t.language);
		struct template_row shown = t;
		hr_strlcpy(shown.unit_id, had ? old.unit_id : t.unit_id, sizeof shown.unit_id);
		after = template_json(&shown);
		rc = after
		         ? api_audit_json(r, r->tenant, had ? "template.update" : "template.create",
		                          obj, had ? template_json(&old) : NULL, json_incref(after),
		                          &au)
		         : HR_ENOMEM;
		if (rc)
			hr_fail(&err, rc, NULL, "out of memory");
	}
	if (rc == 0) {
		rc = st->ops->template_put(st, &t, &au, &created, &err);
		api_audit_done(&au);
	}
	template_row_clear(&old);
	free(t.config);
	json_decref(root); /* t.body borrowed from it */
	if (rc) {
		json_decref(after);
		return api_fail(r, rc, &err);
	}
	hr_log(HR_LOG_INFO, "api", "tenant %s %s template %s/%s/%s", r->tenant,
	       created ? "created" : "updated",
	       json_string_value(json_object_get(after, "channel")),
	       json_string_value(json_object_get(after, "name")),
	       json_string_value(json_object_get(after, "language")));
	return api_respond_json(r, created ? 201 : 200, after, NULL);
}

enum MHD_Result api_template_delete(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	struct template_row t;
	int rc = path_template(r, &t, &err);
	if (rc)
		return api_fail(r, rc, &err);
	if (!api_unit_visible(r, t.unit_id, false)) {
		template_row_clear(&t);
		hr_fail(&err, HR_EFORBIDDEN, NULL,
		        "this template is the tenant's, shared by its units: a unit's credential "
		        "cannot remove it");
		return api_fail(r, HR_EFORBIDDEN, &err);
	}
	char obj[160];
	snprintf(obj, sizeof obj, "template:%s/%s/%s", t.channel, t.name, t.language);
	struct audit_row au;
	rc = api_audit_json(r, r->tenant, "template.delete", obj, template_json(&t), NULL, &au);
	template_row_clear(&t);
	if (rc)
		return api_fail(r, rc, NULL);
	struct store *st = r->srv->o.store;
	rc = st->ops->template_delete(st, r->tenant, r->path_channel, r->path_id, r->path_sub,
	                              r->who.unit, &au, &err);
	api_audit_done(&au);
	if (rc == HR_ENOTFOUND)
		return api_fail(r, rc, &err); /* removed meanwhile */
	if (rc)
		return api_fail(r, rc, &err);
	return api_respond_json(r, 200,
	                        json_pack("{s:s, s:s, s:s, s:b}", "channel", r->path_channel,
	                                  "name", r->path_id, "language", r->path_sub, "deleted",
	                                  1),
	                        NULL);
}
