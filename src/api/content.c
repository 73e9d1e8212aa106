/*
 * content.c - what a message says: the request's content keys turned into
 * the canonical content JSON of channels/channel.h, and the display body.
 *
 * A request carries exactly one of "text" (with optional "buttons" and
 * "actions"), "template", "document", "image", "card" or "carousel", and
 * optionally "options". The objects are copied as given (after a shape check
 * here, so a misspelt key is a 422 rather than silently dropped), templates
 * are rendered and checked against what the template declares (header,
 * buttons, regulatory fields), and then the account's adapter decides what
 * its channel supports. Every error names the request's field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/template.h"

/* The content kinds, in the order a "give only one" error names them. */
static const char *const content_kinds[] = {
    "text", "template", "document", "image", "card", "carousel", NULL,
};

bool api_content_key(const char *key)
{
	for (const char *const *k = content_kinds; *k; k++)
		if (strcmp(key, *k) == 0)
			return true;
	return !strcmp(key, "buttons") || !strcmp(key, "actions") || !strcmp(key, "options");
}

static bool in_list(const char *key, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(key, *list) == 0)
			return true;
	return false;
}

/* Refuses keys of object o (at path base) that are not in allowed. */
static int check_keys(json_t *o, const char *base, const char *const *allowed, struct hr_err *err)
{
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		if (!in_list(key, allowed)) {
			char k[HR_NAME_MAX], f[sizeof err->field];
			snprintf(f, sizeof f, "%s.%s", base, api_clip(k, sizeof k, key));
			return hr_fail(err, HR_EINVAL, f, "unknown field '%s' in %s", k, base);
		}
	}
	return 0;
}

/* A required non-empty string member. */
static int need_str(json_t *o, const char *key, const char *base, const char **out,
                    struct hr_err *err)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s || !*s) {
		char f[sizeof err->field];
		snprintf(f, sizeof f, "%s.%s", base, key);
		return hr_fail(err, HR_EINVAL, f, "%s must be a non-empty string", f);
	}
	*out = s;
	return 0;
}

/* An optional string member. */
static int opt_str(json_t *o, const char *key, const char *base, struct hr_err *err)
{
	json_t *v = json_object_get(o, key);
	if (v && !json_is_string(v)) {
		char f[sizeof err->field];
		snprintf(f, sizeof f, "%s.%s", base, key);
		return hr_fail(err, HR_EINVAL, f, "%s must be a string", f);
	}
	return 0;
}

static const char *opt_text(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

/* ---------------------------------------------------------------------------
 * Documents, images, cards.
 * ------------------------------------------------------------------------- */

static const char *const document_keys[] = {"url", "filename", "caption", NULL};
static const char *const image_keys[] = {"url", "caption", NULL};
static const char *const card_keys[] = {
    "title", "description", "media_url", "buttons", "actions", NULL,
};

static int check_media(json_t *o, const char *base, const char *const *keys, struct hr_err *err)
{
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, base, "%s must be an object with a url", base);
	const char *url;
	int rc;
	if ((rc = check_keys(o, base, keys, err)) || (rc = need_str(o, "url", base, &url, err)))
		return rc;
	for (const char *const *k = keys; *k; k++)
		if ((rc = opt_str(o, *k, base, err)))
			return rc;
	return 0;
}

static int check_card(json_t *o, const char *base, struct hr_err *err)
{
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, base, "%s must be an object", base);
	int rc = check_keys(o, base, card_keys, err);
	for (size_t i = 0; rc == 0 && i < 3; i++)
		rc = opt_str(o, card_keys[i], base, err);
	for (size_t i = 3; rc == 0 && i < 5; i++) {
		json_t *v = json_object_get(o, card_keys[i]);
		if (v && !json_is_array(v)) {
			char f[sizeof err->field];
			snprintf(f, sizeof f, "%s.%s", base, card_keys[i]);
			rc = hr_fail(err, HR_EINVAL, f, "%s must be an array", f);
		}
	}
	if (rc == 0 && !opt_text(o, "title") && !opt_text(o, "description") &&
	    !opt_text(o, "media_url"))
		rc = hr_fail(err, HR_EINVAL, base,
		             "%s needs at least one of title, description or media_url", base);
	return rc;
}

/* "carousel": an array of cards, or {"cards":[...]}; the cards go to *cards. */
static int check_carousel(json_t *v, json_t **cards, const char **prefix, struct hr_err *err)
{
	*prefix = "carousel";
	if (json_is_object(v)) {
		int rc = check_keys(v, "carousel", (const char *const[]){"cards", NULL}, err);
		if (rc)
			return rc;
		v = json_object_get(v, "cards");
		*prefix = "carousel.cards";
	}
	if (!json_is_array(v) || json_array_size(v) == 0)
		return hr_fail(err, HR_EINVAL, *prefix, "%s must be a non-empty array of cards",
		               *prefix);
	size_t i;
	json_t *c;
	json_array_foreach(v, i, c)
	{
		char base[48];
		snprintf(base, sizeof base, "%s[%zu]", *prefix, i);
		int rc = check_card(c, base, err);
		if (rc)
			return rc;
	}
	*cards = v;
	return 0;
}

/* The carousel's display body: its card titles, one per line. */
static char *carousel_body(json_t *cards, bool *oom)
{
	size_t len = 0, i;
	json_t *c;
	json_array_foreach(cards, i, c)
	{
		const char *t = opt_text(c, "title");
		len += t ? strlen(t) + 1 : 0;
	}
	if (len == 0)
		return NULL;
	char *b = malloc(len);
	if (!b) {
		*oom = true;
		return NULL;
	}
	size_t off = 0;
	json_array_foreach(cards, i, c)
	{
		const char *t = opt_text(c, "title");
		if (!t)
			continue;
		if (off)
			b[off++] = '\n';
		memcpy(b + off, t, strlen(t));
		off += strlen(t);
	}
	b[off] = '\0';
	return b;
}

/* ---------------------------------------------------------------------------
 * Templates: body parameters, then the declared header and buttons.
 * ------------------------------------------------------------------------- */

static const char *const template_keys[] = {
    "name", "language", "parameters", "header", "buttons", NULL,
};

/* A string array member (absent = empty); errors name base[i]. */
static int str_array(json_t *v, const char *base, struct hr_err *err)
{
	if (v && !json_is_array(v))
		return hr_fail(err, HR_EINVAL, base, "%s must be an array of strings", base);
	size_t i;
	json_t *p;
	json_array_foreach(v, i, p)
	{
		if (!json_is_string(p)) {
			char f[sizeof err->field];
			snprintf(f, sizeof f, "%s[%zu]", base, i);
			return hr_fail(err, HR_EINVAL, f, "%s must be a string", f);
		}
	}
	return 0;
}

/* Exactly want parameters: a missing one names the array, an extra one its
 * index (as template_render does for the body). */
static int param_count(size_t have, long long want, const char *base, struct hr_err *err)
{
	if ((long long)have < want)
		return hr_fail(err, HR_EINVAL, base, "%s needs %lld parameter%s, %zu given", base,
		               want, want == 1 ? "" : "s", have);
	if ((long long)have > want) {
		char f[sizeof err->field];
		snprintf(f, sizeof f, "%s[%lld]", base, want);
		return hr_fail(err, HR_EINVAL, f, "%s takes %lld parameter%s, %zu given", base,
		               want, want == 1 ? "" : "s", have);
	}
	return 0;
}

/*
 * The header: required when the template declares one (a text header
 * without parameters needs nothing), of the declared type, with the declared
 * number of parameters. A text header's values come as "parameters" (or its
 * single value as "text"); canonical content carries the one value as
 * "text". *out is the content header or NULL when none is sent.
 */
static int template_header(const char *tname, json_t *decl, json_t *req, json_t **out,
                           struct hr_err *err)
{
	*out = NULL;
	if (!decl) {
		if (req && !json_is_null(req))
			return hr_fail(err, HR_EINVAL, "template.header",
			               "template '%s' declares no header", tname);
		return 0;
	}
	const char *dtype = json_string_value(json_object_get(decl, "type"));
	json_int_t dparams = json_integer_value(json_object_get(decl, "params"));
	if (!dtype)
		return hr_fail(err, HR_EINTERNAL, NULL, "template '%s' has a bad header", tname);
	bool text = strcmp(dtype, "text") == 0;
	if (!req || json_is_null(req)) {
		if (text && dparams == 0)
			return 0;
		return hr_fail(err, HR_EINVAL, "template.header", "template '%s' needs a %s header",
		               tname, dtype);
	}
	if (!json_is_object(req))
		return hr_fail(err, HR_EINVAL, "template.header",
		               "template.header must be an object");
	const char *rtype = json_string_value(json_object_get(req, "type"));
	if (!rtype || strcmp(rtype, dtype) != 0)
		return hr_fail(err, HR_EINVAL, "template.header.type",
		               "template '%s' has a %s header: template.header.type must be \"%s\"",
		               tname, dtype, dtype);
	int rc;
	if (!text) {
		const char *const *keys =
		    strcmp(dtype, "document") == 0
		        ? (const char *const[]){"type", "url", "filename", NULL}
		        : (const char *const[]){"type", "url", NULL};
		const char *url;
		if ((rc = check_keys(req, "template.header", keys, err)) ||
		    (rc = need_str(req, "url", "template.header", &url, err)) ||
		    (rc = opt_str(req, "filename", "template.header", err)))
			return rc;
		*out = json_deep_copy(req);
		return *out ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	if ((rc = check_keys(req, "template.header",
	                     (const char *const[]){"type", "parameters", "text", NULL}, err)))
		return rc;
	json_t *params = json_object_get(req, "parameters"), *jt = json_object_get(req, "text");
	if (params && jt)
		return hr_fail(err, HR_EINVAL, "template.header.text",
		               "give template.header.parameters or .text, not both");
	if (jt && !json_is_string(jt))
		return hr_fail(err, HR_EINVAL, "template.header.text",
		               "template.header.text must be a string");
	if ((rc = str_array(params, "template.header.parameters", err)))
		return rc;
	size_t have = jt ? 1 : json_array_size(params);
	if (jt && dparams != 1)
		return hr_fail(err, HR_EINVAL, "template.header.text",
		               "template '%s' has a text header with %lld parameters: give "
		               "template.header.parameters",
		               tname, (long long)dparams);
	if ((rc = param_count(have, dparams, "template.header.parameters", err)))
		return rc;
	if (have == 0)
		return 0;
	*out = json_pack("{s:s, s:O}", "type", "text", "text", jt ? jt : json_array_get(params, 0));
	if (*out && have > 1 && json_object_set(*out, "parameters", params) != 0) {
		json_decref(*out);
		*out = NULL;
	}
	return *out ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
}

/*
 * Button parameters: one entry {"index":i,"payload":..} (quick_reply) or
 * {"index":i,"text":..} (url suffix) per declared button that takes a
 * parameter; "index" defaults to the entry's position. A given entry's
 * errors name its position (template.buttons[j].payload); a missing entry is
 * named by the declared index it should have had. *out is sorted by index,
 * or NULL when there are none.
 */
static int template_buttons(const char *tname, json_t *decl, json_t *req, json_t **out,
                            struct hr_err *err)
{
	*out = NULL;
	size_t ndecl = json_array_size(decl);
	if (req && !json_is_null(req) && !json_is_array(req))
		return hr_fail(err, HR_EINVAL, "template.buttons",
		               "template.buttons must be an array of {index, payload|text}");
	size_t nreq = json_array_size(req);
	json_t **by_index = ndecl ? calloc(ndecl, sizeof *by_index) : NULL;
	if (ndecl && !by_index)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	char f[sizeof err->field];
	int rc = 0;
	for (size_t j = 0; rc == 0 && j < nreq; j++) {
		json_t *b = json_array_get(req, j);
		snprintf(f, sizeof f, "template.buttons[%zu]", j);
		if (!json_is_object(b)) {
			rc = hr_fail(err, HR_EINVAL, f, "%s must be an object", f);
			break;
		}
		if ((rc = check_keys(b, f, (const char *const[]){"index", "payload", "text", NULL},
		                     err)))
			break;
		json_t *ji = json_object_get(b, "index");
		json_int_t idx = (json_int_t)j;
		if (ji) {
			if (!json_is_integer(ji) || json_integer_value(ji) < 0) {
				snprintf(f, sizeof f, "template.buttons[%zu].index", j);
				rc = hr_fail(err, HR_EINVAL, f, "%s must be an integer >= 0", f);
				break;
			}
			idx = json_integer_value(ji);
		}
		if ((size_t)idx >= ndecl) {
			snprintf(f, sizeof f, "template.buttons[%zu]%s", j, ji ? ".index" : "");
			rc = hr_fail(err, HR_EINVAL, f,
			             "template '%s' has %zu button%s, no button %lld", tname, ndecl,
			             ndecl == 1 ? "" : "s", (long long)idx);
			break;
		}
		json_t *d = json_array_get(decl, (size_t)idx);
		const char *dtype = json_string_value(json_object_get(d, "type"));
		if (json_integer_value(json_object_get(d, "params")) <= 0) {
			rc = hr_fail(err, HR_EINVAL, f,
			             "button %lld of template '%s' takes no parameter",
			             (long long)idx, tname);
			break;
		}
		if (by_index[idx]) {
			snprintf(f, sizeof f, "template.buttons[%zu]%s", j, ji ? ".index" : "");
			rc = hr_fail(err, HR_EINVAL, f, "button %lld is given twice",
			             (long long)idx);
			break;
		}
		bool url = dtype && strcmp(dtype, "url") == 0;
		const char *want = url ? "text" : "payload", *other = url ? "payload" : "text";
		const char *val;
		if (json_object_get(b, other)) {
			snprintf(f, sizeof f, "template.buttons[%zu].%s", j, other);
			rc = hr_fail(err, HR_EINVAL, f,
			             "button %lld is a %s button: give %s, not %s", (long long)idx,
			             dtype ? dtype : "?", want, other);
			break;
		}
		snprintf(f, sizeof f, "template.buttons[%zu]", j);
		if ((rc = need_str(b, want, f, &val, err)))
			break;
		by_index[idx] = b;
	}
	json_t *list = rc == 0 ? json_array() : NULL;
	if (rc == 0 && !list)
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; rc == 0 && i < ndecl; i++) {
		json_t *d = json_array_get(decl, i);
		if (json_integer_value(json_object_get(d, "params")) <= 0)
			continue;
		const char *dtype = json_string_value(json_object_get(d, "type"));
		bool url = dtype && strcmp(dtype, "url") == 0;
		const char *key = url ? "text" : "payload";
		if (!by_index[i]) {
			snprintf(f, sizeof f, "template.buttons[%zu].%s", i, key);
			rc = hr_fail(
			    err, HR_EINVAL, f,
			    "template '%s' button %zu (%s) needs {\"index\":%zu,\"%s\":...}", tname,
			    i, dtype ? dtype : "?", i, key);
			break;
		}
		if (json_array_append_new(list, json_pack("{s:I, s:O}", "index", (json_int_t)i, key,
		                                          json_object_get(by_index[i], key))) != 0)
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	free(by_index);
	if (rc == 0 && json_array_size(list) > 0)
		*out = list;
	else
		json_decref(list);
	return rc;
}

/*
 * Template content: the request's shape, then the tenant's template (a
 * name or language it does not have is a 422 on template.name), the body
 * rendered with exactly the declared parameters, the header and buttons
 * checked against the declaration, and the template's regulatory fields
 * copied in for the provider. *tpl gets the template's declared delivery
 * policy and fallback route, when it declares them.
 */
static int build_template(const struct api_server *s, const char *tenant, const char *unit,
                          const struct channel_account *acct, json_t *t, json_t **content,
                          char **body, struct tpl_defaults *tpl, struct hr_err *err)
{
	if (!json_is_object(t))
		return hr_fail(err, HR_EINVAL, "template",
		               "template must be an object with name, language and parameters");
	int rc = check_keys(t, "template", template_keys, err);
	if (rc)
		return rc;
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name)
		return hr_fail(err, HR_EINVAL, "template.name", "template.name must be a string");
	const char *lang = json_string_value(json_object_get(t, "language"));
	if (!lang)
		return hr_fail(err, HR_EINVAL, "template.language",
		               "template.language must be a string");
	json_t *params = json_object_get(t, "parameters");
	if ((rc = str_array(params, "template.parameters", err)))
		return rc;

	struct store *st = s->o.store;
	struct template_row row;
	memset(&row, 0, sizeof row);
	rc = st->ops->template_get(st, tenant, acct->ops->name, name, lang, &row);
	/* A unit sends with its own templates and the tenant's shared ones; a
	 * sibling's is as absent as one that does not exist. */
	if (rc == 0 && unit && unit[0] && row.unit_id[0] && strcmp(row.unit_id, unit) != 0) {
		template_row_clear(&row);
		rc = HR_ENOTFOUND;
	}
	if (rc != 0) {
		if (rc == HR_ENOTFOUND) {
			char cn[HR_NAME_MAX], cl[32];
			api_clip(cn, sizeof cn, name);
			api_clip(cl, sizeof cl, lang);
			return hr_fail(err, HR_EINVAL, "template.name",
			               "no %s template '%s' in language '%s'", acct->ops->name, cn,
			               cl);
		}
		return hr_fail(err, rc, NULL, "template lookup failed");
	}
	char tname[HR_NAME_MAX];
	api_clip(tname, sizeof tname, row.name);

	size_t np = json_array_size(params);
	const char **pv = np ? calloc(np, sizeof *pv) : NULL;
	if (np && !pv) {
		template_row_clear(&row);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	for (size_t i = 0; i < np; i++)
		pv[i] = json_string_value(json_array_get(params, i));
	*body = template_render(row.body ? row.body : "", pv, np, err);
	free(pv);
	if (!*body) {
		template_row_clear(&row);
		return err && err->code ? err->code : HR_EINVAL;
	}

	json_t *decl = NULL;
	if (row.config && *row.config) {
		decl = json_loads(row.config, 0, NULL);
		if (!json_is_object(decl)) {
			json_decref(decl);
			template_row_clear(&row);
			return hr_fail(err, HR_EINTERNAL, NULL,
			               "template '%s' has a config that is "
			               "not a JSON object",
			               tname);
		}
	}
	template_row_clear(&row);
	/* Checked when the config was loaded (serve.c template_config). */
	enum delivery_policy dp;
	if (delivery_policy_parse(json_string_value(json_object_get(decl, "delivery_policy")),
	                          &dp) == 0)
		tpl->policy = (int)dp;
	json_t *fb = json_object_get(decl, "fallback");
	if (json_is_object(fb))
		tpl->fallback = json_incref(fb);
	json_t *header = NULL, *buttons = NULL;
	rc = template_header(tname, json_object_get(decl, "header"), json_object_get(t, "header"),
	                     &header, err);
	if (rc == 0)
		rc = template_buttons(tname, json_object_get(decl, "buttons"),
		                      json_object_get(t, "buttons"), &buttons, err);
	json_t *tc = NULL;
	if (rc == 0) {
		tc = json_pack("{s:s, s:s, s:o}", "name", name, "language", lang, "parameters",
		               params ? json_incref(params) : json_array());
		json_t *reg = json_object_get(decl, "regulatory");
		if (!tc || (header && json_object_set(tc, "header", header)) ||
		    (buttons && json_object_set(tc, "buttons", buttons)) ||
		    (json_is_object(reg) && json_object_set(tc, "regulatory", reg)))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	json_decref(header);
	json_decref(buttons);
	json_decref(decl);
	if (rc == 0) {
		*content = json_pack("{s:s, s:o}", "type", "template", "template", tc);
		tc = NULL;
		if (!*content)
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	json_decref(tc);
	if (rc) {
		free(*body);
		*body = NULL;
	}
	return rc;
}

/* ---------------------------------------------------------------------------
 * The request.
 * ------------------------------------------------------------------------- */

/* The adapter names fields of the content; say them as the request does:
 * its "type" is the request's content key, a carousel's "cards" is the
 * request's "carousel" (or "carousel.cards"). */
static void rename_field(struct hr_err *err, const char *kind, const char *cards_prefix)
{
	if (!err)
		return;
	char f[sizeof err->field];
	if (strcmp(err->field, "type") == 0) {
		hr_strlcpy(err->field, kind, sizeof err->field);
	} else if (cards_prefix && strncmp(err->field, "cards", 5) == 0) {
		snprintf(f, sizeof f, "%s%s", cards_prefix, err->field + 5);
		hr_strlcpy(err->field, f, sizeof err->field);
	}
}

int api_content_build(const struct api_server *s, const char *tenant, const char *unit,
                      const struct channel_account *acct, json_t *o, json_t **content, char **body,
                      struct tpl_defaults *tpl, struct hr_err *err)
{
	*content = NULL;
	*body = NULL;
	tpl->policy = -1;
	tpl->fallback = NULL;
	const char *kind = NULL;
	for (const char *const *k = content_kinds; *k; k++) {
		if (!json_object_get(o, *k))
			continue;
		if (kind)
			return hr_fail(err, HR_EINVAL, *k, "give only one of %s and %s", kind, *k);
		kind = *k;
	}
	if (!kind)
		return hr_fail(err, HR_EINVAL, "text",
		               "one of text, template, document, image, card or carousel is "
		               "required");
	json_t *v = json_object_get(o, kind);
	json_t *buttons = json_object_get(o, "buttons"), *actions = json_object_get(o, "actions");
	json_t *options = json_object_get(o, "options");
	if (strcmp(kind, "text") != 0 && (buttons || actions))
		return hr_fail(err, HR_EINVAL, buttons ? "buttons" : "actions",
		               "%s go with text (a card carries its own)",
		               buttons ? "buttons" : "actions");
	if (buttons && !json_is_array(buttons))
		return hr_fail(err, HR_EINVAL, "buttons", "buttons must be an array");
	if (actions && !json_is_array(actions))
		return hr_fail(err, HR_EINVAL, "actions", "actions must be an array");
	if (options && !json_is_object(options))
		return hr_fail(err, HR_EINVAL, "options", "options must be an object");

	json_t *c = NULL;
	const char *cards_prefix = NULL;
	bool oom = false;
	int rc = 0;
	if (strcmp(kind, "text") == 0) {
		if (!json_is_string(v))
			return hr_fail(err, HR_EINVAL, "text", "text must be a string");
		c = json_pack("{s:s, s:O}", "type", "text", "text", v);
		if (c && ((buttons && json_object_set(c, "buttons", buttons)) ||
		          (actions && json_object_set(c, "actions", actions))))
			oom = true;
		*body = dup_or_null(json_string_value(v), &oom);
	} else if (strcmp(kind, "template") == 0) {
		if ((rc = build_template(s, tenant, unit, acct, v, &c, body, tpl, err)))
			return rc;
	} else if (strcmp(kind, "document") == 0 || strcmp(kind, "image") == 0) {
		bool doc = kind[0] == 'd';
		if ((rc = check_media(v, kind, doc ? document_keys : image_keys, err)))
			return rc;
		c = json_pack("{s:s, s:O}", "type", kind, kind, v);
		const char *b = opt_text(v, "caption");
		*body = dup_or_null(b ? b : doc ? opt_text(v, "filename") : NULL, &oom);
	} else if (strcmp(kind, "card") == 0) {
		if ((rc = check_card(v, "card", err)))
			return rc;
		c = json_pack("{s:s, s:O}", "type", "card", "card", v);
		const char *b = opt_text(v, "title");
		*body = dup_or_null(b ? b : opt_text(v, "description"), &oom);
	} else {
		json_t *cards = NULL;
		if ((rc = check_carousel(v, &cards, &cards_prefix, err)))
			return rc;
		c = json_pack("{s:s, s:O}", "type", "carousel", "cards", cards);
		*body = carousel_body(cards, &oom);
	}
	if (c && options && json_object_set(c, "options", options) != 0)
		oom = true;
	if (!c || oom) {
		json_decref(c);
		free(*body);
		*body = NULL;
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	rc = acct->ops->validate(c, err);
	if (rc != 0) {
		rename_field(err, kind, cards_prefix);
		json_decref(c);
		free(*body);
		*body = NULL;
		return rc;
	}
	*content = c;
	return 0;
}
