/*
 * whatsapp.c - the WhatsApp Business Cloud API (Meta Graph API) adapter.
 *
 * Wire formats are those in PROVIDERS.md. Confirmed against public references
 * (docs search) while writing this file:
 *  - the send request's optional "biz_opaque_callback_data" (a string of up
 *    to 512 characters) is not processed by Cloud API and is echoed in the
 *    statuses[] objects of the sent/delivered/read webhooks (Meta's "Status
 *    messages webhook reference"; whatsapp-api-js ClientMessageRequest);
 *  - statuses[] objects carry id, status (sent|delivered|read|failed|played),
 *    timestamp (unix seconds as a string), recipient_id, optional
 *    conversation{id,expiration_timestamp,origin{type}} and pricing{billable,
 *    pricing_model,type,category}, and for failures errors[]{code (integer),
 *    title, message, error_data{details}, href}; a message read while its chat
 *    is open may get "read" without "delivered" first;
 *  - message types (Meta's "Messages" reference pages for text, interactive
 *    reply buttons, document and image messages, and the template
 *    components reference): text {body, preview_url}; interactive {type
 *    "button", body{text} (at most 1024 characters), action{buttons[1..3]
 *    {type "reply", reply{id (at most 256 characters, no leading or trailing
 *    space), title (1..20 characters, unique within the message)}}}};
 *    document {link, filename, caption}; image {link, caption}; captions at
 *    most 1024 characters;
 *  - template components, in the order header, body, button: header
 *    parameters [{type text, text} | {type image, image{link}} | {type
 *    document, document{link, filename}}] (a text header has one variable
 *    and at most 60 characters); body parameters [{type text, text}];
 *    buttons one component each {type "button", sub_type "quick_reply" |
 *    "url", index (a string, the button's position in the template),
 *    parameters [{type payload, payload} | {type text, text (URL suffix)}]};
 *  - inbound replies carry context{from, id}: a quick-reply press arrives as
 *    type "button" {payload, text}, a reply-button press as "interactive"
 *    {type "button_reply", button_reply{id, title}} (list_reply likewise).
 * WhatsApp has no regulatory fields: content.template.regulatory is accepted
 * and not sent.
 *
 * The adapter does no I/O: build_send makes the request, parse_send
 * classifies the answer, webhook_* verify and parse what Meta posts.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "channels/channel.h"
#include "core/phone.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/jsonr.h"
#include "core/jsonw.h"

/* Recipients are E.164 numbers without the '+' (WhatsApp's wa_id form). */
static int wa_normalize(const char *in, char out[HR_ADDR_MAX], struct hr_err *err)
{
	return phone_e164(in, false, out, err);
}

#define WA_DEFAULT_API_VERSION "21.0"
#define WA_TEXT_MAX 4096 /* characters (code points) in a text body */
#define WA_TEMPLATE_NAME_MAX 512
#define WA_PARAM_MAX 1024     /* characters per template parameter (Herald's bound) */
#define WA_HEADER_TEXT_MAX 60 /* a text header is at most 60 characters */
#define WA_INTERACTIVE_BODY_MAX 1024
#define WA_REPLY_BUTTONS_MAX 3
#define WA_BUTTON_ID_MAX 256
#define WA_BUTTON_TITLE_MAX 20
#define WA_TEMPLATE_BUTTONS_MAX 10
#define WA_CAPTION_MAX 1024
#define WA_FILENAME_MAX 240 /* Herald's bound: Meta documents none */
#define WA_URL_MAX 2048
#define WA_CHALLENGE_MAX 256
#define WA_SIG_HEADER "X-Hub-Signature-256"

/* Resolved per-account state, owned by acct->priv. */
struct wa_priv {
	char *messages_url; /* {base_url}/v{api_version}/{phone_number_id}/messages */
	char *auth_header;  /* "Authorization: Bearer <token>" */
	char *app_secret;
	char *verify_token;
};

static void wa_priv_free(struct wa_priv *p)
{
	if (!p)
		return;
	free(p->messages_url);
	hr_secret_free(p->auth_header); /* holds the token */
	hr_secret_free(p->app_secret);
	hr_secret_free(p->verify_token);
	free(p);
}

/* ---------------------------------------------------------------------------
 * Account configuration
 * ------------------------------------------------------------------------- */

static bool wa_is_version(const char *s)
{
	int dots = 0;
	if (!isdigit((unsigned char)*s))
		return false;
	for (; *s; s++) {
		if (*s == '.') {
			if (++dots > 1 || !isdigit((unsigned char)s[1]))
				return false;
		} else if (!isdigit((unsigned char)*s)) {
			return false;
		}
	}
	return true;
}

static bool wa_is_path_token(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* Validates the account's keys and resolves its secrets into acct->priv.
 * Cleans up after itself on failure. */
static int wa_account_load(struct channel_account *acct, struct hr_err *err)
{
	const char *base, *ver, *pnid;
	char field[96];
	int rc;
	if ((rc = channel_cfg_url(acct, "base_url", NULL, &base, err)) ||
	    (rc = channel_cfg_str(acct, "api_version", false, &ver, err)) ||
	    (rc = channel_cfg_str(acct, "phone_number_id", true, &pnid, err)))
		return rc;
	if (!ver)
		ver = WA_DEFAULT_API_VERSION;
	if (*ver == 'v')
		ver++;
	if (!wa_is_version(ver)) {
		channel_cfg_field(field, sizeof field, acct, "api_version");
		return hr_fail(err, HR_EINVAL, field, "%s must look like \"21.0\"", field);
	}
	if (!wa_is_path_token(pnid)) {
		channel_cfg_field(field, sizeof field, acct, "phone_number_id");
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be 1..64 letters, digits, '_' or '-'", field);
	}
	struct wa_priv *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	char *token = NULL;
	if ((rc = channel_cfg_secret(acct, "access_token", true, &token, err)) ||
	    (rc = channel_cfg_secret(acct, "app_secret", true, &p->app_secret, err)) ||
	    (rc = channel_cfg_secret(acct, "verify_token", true, &p->verify_token, err)))
		goto fail;
	size_t blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (asprintf(&p->messages_url, "%.*s/v%s/%s/messages", (int)blen, base, ver, pnid) < 0 ||
	    asprintf(&p->auth_header, "Authorization: Bearer %s", token) < 0) {
		p->messages_url = p->auth_header = NULL;
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		goto fail;
	}
	hr_secret_free(token);
	acct->priv = p;
	return 0;
fail:
	hr_secret_free(token);
	wa_priv_free(p);
	return rc;
}

static void wa_account_free(struct channel_account *acct)
{
	wa_priv_free(acct->priv);
	acct->priv = NULL;
}

/* ---------------------------------------------------------------------------
 * Recipients and content
 * ------------------------------------------------------------------------- */

/* Number of Unicode code points in valid UTF-8 (jansson guarantees validity). */
static size_t wa_utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static bool wa_template_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > WA_TEMPLATE_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

/* "en", "fil", "en_GB", "pt_BR": 2-3 lower-case letters, optionally _ and 2 capitals. */
static bool wa_language_ok(const char *s)
{
	size_t i = 0;
	while (s[i] >= 'a' && s[i] <= 'z')
		i++;
	if (i < 2 || i > 3)
		return false;
	if (s[i] == '\0')
		return true;
	return s[i] == '_' && s[i + 1] >= 'A' && s[i + 1] <= 'Z' && s[i + 2] >= 'A' &&
	       s[i + 2] <= 'Z' && s[i + 3] == '\0';
}

/* "base.key", or "key" alone at the top level. */
static void wa_path(char *out, size_t n, const char *base, const char *key)
{
	if (base && *base)
		snprintf(out, n, "%s.%s", base, key);
	else
		snprintf(out, n, "%s", key);
}

/*
 * Reads obj[key] as a string of 1..max characters into *out. Absent (or
 * JSON null) leaves *out NULL and is an error only when required. Errors
 * name the JSON path.
 */
static int wa_vstr(const json_t *obj, const char *key, const char *base, bool required, size_t max,
                   const char **out, struct hr_err *err)
{
	char path[96];
	wa_path(path, sizeof path, base, key);
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		hr_fail(err, HR_EINVAL, path, "%s is required", path);
		return HR_EINVAL;
	}
	const char *s = json_string_value(v);
	if (!s || !*s) {
		hr_fail(err, HR_EINVAL, path, "%s must be a non-empty string", path);
		return HR_EINVAL;
	}
	if (wa_utf8_chars(s) > max) {
		hr_fail(err, HR_EINVAL, path, "%s is longer than %zu characters on whatsapp", path,
		        max);
		return HR_EINVAL;
	}
	*out = s;
	return 0;
}

/* Refuses keys of obj not in allowed (NULL-terminated), naming the first. */
static int wa_only_keys(const json_t *obj, const char *const *allowed, const char *base,
                        struct hr_err *err)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		const char *const *a = allowed;
		while (*a && strcmp(*a, key) != 0)
			a++;
		if (*a)
			continue;
		char k[48], path[96], list[160] = "";
		hr_utf8_copy(k, key, sizeof k);
		wa_path(path, sizeof path, base, k);
		for (a = allowed; *a; a++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
			         a == allowed ? "" : ", ", *a);
		return hr_fail(err, HR_EINVAL, path, "%s is not supported on whatsapp (%s: %s)",
		               path, base && *base ? base : "content", list);
	}
	return 0;
}

/*
 * A media link: Cloud API fetches it itself, so it must be an absolute
 * http(s) URL with a host and no spaces or control characters.
 */
static int wa_vurl(const json_t *obj, const char *base, struct hr_err *err)
{
	const char *url;
	int rc = wa_vstr(obj, "url", base, true, WA_URL_MAX, &url, err);
	if (rc)
		return rc;
	char path[96];
	wa_path(path, sizeof path, base, "url");
	size_t skip = strncmp(url, "https://", 8) == 0  ? 8
	              : strncmp(url, "http://", 7) == 0 ? 7
	                                                : 0;
	bool ok = skip && url[skip] && url[skip] != '/';
	for (const unsigned char *p = (const unsigned char *)url; ok && *p; p++)
		ok = *p > 0x20 && *p != 0x7f;
	if (!ok)
		return hr_fail(err, HR_EINVAL, path,
		               "%s must be an absolute http:// or https:// URL without spaces",
		               path);
	return 0;
}

/*
 * Reply buttons of an interactive message: 1..3, each {"id","title"}, the
 * id at most 256 characters without surrounding spaces, the title 1..20
 * characters; ids and titles unique within the message (Meta requires unique
 * titles; unique ids are what lets a press be told apart).
 */
static int wa_validate_reply_buttons(const json_t *buttons, struct hr_err *err)
{
	static const char *const keys[] = {"id", "title", NULL};
	size_t n = json_array_size(buttons);
	if (!json_is_array(buttons) || n < 1 || n > WA_REPLY_BUTTONS_MAX)
		return hr_fail(err, HR_EINVAL, "buttons",
		               "buttons must be a list of 1 to %d reply buttons on whatsapp",
		               WA_REPLY_BUTTONS_MAX);
	const char *ids[WA_REPLY_BUTTONS_MAX], *titles[WA_REPLY_BUTTONS_MAX];
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_array_get(buttons, i);
		char base[32], path[64];
		snprintf(base, sizeof base, "buttons[%zu]", i);
		if (!json_is_object(b))
			return hr_fail(err, HR_EINVAL, base,
			               "%s must be an object with id and title", base);
		int rc;
		if ((rc = wa_only_keys(b, keys, base, err)) ||
		    (rc = wa_vstr(b, "id", base, true, WA_BUTTON_ID_MAX, &ids[i], err)) ||
		    (rc = wa_vstr(b, "title", base, true, WA_BUTTON_TITLE_MAX, &titles[i], err)))
			return rc;
		size_t il = strlen(ids[i]);
		snprintf(path, sizeof path, "%s.id", base);
		if (isspace((unsigned char)ids[i][0]) || isspace((unsigned char)ids[i][il - 1]))
			return hr_fail(err, HR_EINVAL, path,
			               "%s must not start or end with a space", path);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(ids[j], ids[i]) == 0)
				return hr_fail(err, HR_EINVAL, path, "%s repeats buttons[%zu].id",
				               path, j);
			if (strcmp(titles[j], titles[i]) == 0) {
				snprintf(path, sizeof path, "%s.title", base);
				return hr_fail(err, HR_EINVAL, path,
				               "%s repeats buttons[%zu].title", path, j);
			}
		}
	}
	return 0;
}

/*
 * A template's header values: {"type":"text","text":".."} or
 * {"type":"text","parameters":[".."]} (a text header has at most one
 * variable), {"type":"image","url":".."}, {"type":"document","url":"..",
 * "filename":".."}.
 */
static int wa_validate_header(const json_t *h, struct hr_err *err)
{
	static const char *const text_keys[] = {"type", "text", "parameters", NULL};
	static const char *const image_keys[] = {"type", "url", NULL};
	static const char *const doc_keys[] = {"type", "url", "filename", NULL};
	const char *base = "template.header", *type, *s;
	if (!json_is_object(h))
		return hr_fail(err, HR_EINVAL, base, "%s must be an object", base);
	int rc = wa_vstr(h, "type", base, true, 16, &type, err);
	if (rc)
		return rc;
	if (strcmp(type, "text") == 0) {
		json_t *params = json_object_get(h, "parameters");
		bool has_text = json_object_get(h, "text") != NULL;
		if ((rc = wa_only_keys(h, text_keys, base, err)))
			return rc;
		if (has_text == (params != NULL))
			return hr_fail(err, HR_EINVAL, "template.header.text",
			               "a text header needs its one value as template.header.text "
			               "or template.header.parameters[0]");
		if (has_text)
			return wa_vstr(h, "text", base, true, WA_HEADER_TEXT_MAX, &s, err);
		if (!json_is_array(params) || json_array_size(params) != 1)
			return hr_fail(err, HR_EINVAL, "template.header.parameters",
			               "template.header.parameters must hold exactly 1 string: a "
			               "whatsapp text header has one variable");
		const char *v = json_string_value(json_array_get(params, 0));
		if (!v || !*v)
			return hr_fail(err, HR_EINVAL, "template.header.parameters[0]",
			               "template.header.parameters[0] must be a non-empty string");
		if (wa_utf8_chars(v) > WA_HEADER_TEXT_MAX)
			return hr_fail(err, HR_EINVAL, "template.header.parameters[0]",
			               "template.header.parameters[0] is longer than WhatsApp's %d "
			               "characters",
			               WA_HEADER_TEXT_MAX);
		return 0;
	}
	if (strcmp(type, "image") == 0) {
		if ((rc = wa_only_keys(h, image_keys, base, err)))
			return rc;
		return wa_vurl(h, base, err);
	}
	if (strcmp(type, "document") == 0) {
		if ((rc = wa_only_keys(h, doc_keys, base, err)) || (rc = wa_vurl(h, base, err)))
			return rc;
		return wa_vstr(h, "filename", base, false, WA_FILENAME_MAX, &s, err);
	}
	return hr_fail(err, HR_EINVAL, "template.header.type",
	               "template.header.type must be text, image or document on whatsapp");
}

/*
 * A template's button values, by the button's position in the template:
 * {"index":0,"payload":".."} for a quick reply (the payload comes back when
 * it is pressed), {"index":1,"text":".."} for a URL button's suffix. An
 * optional "type" (quick_reply or url) must agree with the value given.
 */
static int wa_validate_template_buttons(const json_t *buttons, struct hr_err *err)
{
	static const char *const keys[] = {"index", "payload", "text", "type", NULL};
	size_t n = json_array_size(buttons);
	if (!json_is_array(buttons) || n > WA_TEMPLATE_BUTTONS_MAX)
		return hr_fail(err, HR_EINVAL, "template.buttons",
		               "template.buttons must be a list of at most %d buttons",
		               WA_TEMPLATE_BUTTONS_MAX);
	bool seen[WA_TEMPLATE_BUTTONS_MAX] = {false};
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_array_get(buttons, i);
		char base[48], path[80];
		snprintf(base, sizeof base, "template.buttons[%zu]", i);
		if (!json_is_object(b))
			return hr_fail(err, HR_EINVAL, base, "%s must be an object", base);
		int rc = wa_only_keys(b, keys, base, err);
		if (rc)
			return rc;
		json_t *idx = json_object_get(b, "index");
		snprintf(path, sizeof path, "%s.index", base);
		if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
		    json_integer_value(idx) >= WA_TEMPLATE_BUTTONS_MAX)
			return hr_fail(err, HR_EINVAL, path, "%s must be an integer from 0 to %d",
			               path, WA_TEMPLATE_BUTTONS_MAX - 1);
		int k = (int)json_integer_value(idx);
		if (seen[k])
			return hr_fail(err, HR_EINVAL, path, "%s: button %d is given twice", path,
			               k);
		seen[k] = true;
		const char *payload, *text, *type;
		if ((rc = wa_vstr(b, "payload", base, false, WA_PARAM_MAX, &payload, err)) ||
		    (rc = wa_vstr(b, "text", base, false, WA_PARAM_MAX, &text, err)) ||
		    (rc = wa_vstr(b, "type", base, false, 16, &type, err)))
			return rc;
		if (!payload == !text) {
			snprintf(path, sizeof path, "%s.payload", base);
			return hr_fail(err, HR_EINVAL, path,
			               "%s: give either %s.payload (quick reply) or %s.text (URL "
			               "suffix)",
			               path, base, base);
		}
		if (type && strcmp(type, payload ? "quick_reply" : "url") != 0) {
			snprintf(path, sizeof path, "%s.type", base);
			return hr_fail(err, HR_EINVAL, path,
			               "%s must be quick_reply with a payload or url with a text",
			               path);
		}
	}
	return 0;
}

static int wa_validate_template(const json_t *content, struct hr_err *err)
{
	static const char *const keys[] = {"name",    "language",   "parameters", "header",
	                                   "buttons", "regulatory", NULL};
	json_t *t = json_object_get(content, "template");
	if (!json_is_object(t))
		return hr_fail(err, HR_EINVAL, "template", "template must be an object");
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name || !wa_template_name_ok(name))
		return hr_fail(err, HR_EINVAL, "template.name",
		               "template.name must be 1..%d characters of a-z, 0-9 and _",
		               WA_TEMPLATE_NAME_MAX);
	const char *lang = json_string_value(json_object_get(t, "language"));
	if (!lang || !wa_language_ok(lang))
		return hr_fail(err, HR_EINVAL, "template.language",
		               "template.language must look like \"en\" or \"en_GB\"");
	int rc = wa_only_keys(t, keys, "template", err);
	if (rc)
		return rc;
	json_t *params = json_object_get(t, "parameters");
	if (params && !json_is_null(params) && !json_is_array(params))
		return hr_fail(err, HR_EINVAL, "template.parameters",
		               "template.parameters must be an array of strings");
	size_t i;
	json_t *p;
	json_array_foreach(params, i, p)
	{
		char field[48];
		snprintf(field, sizeof field, "template.parameters[%zu]", i);
		const char *s = json_string_value(p);
		if (!s || !*s)
			return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string",
			               field);
		if (wa_utf8_chars(s) > WA_PARAM_MAX)
			return hr_fail(err, HR_EINVAL, field, "%s is longer than %d characters",
			               field, WA_PARAM_MAX);
	}
	json_t *h = json_object_get(t, "header");
	if (h && !json_is_null(h) && (rc = wa_validate_header(h, err)))
		return rc;
	json_t *b = json_object_get(t, "buttons");
	if (b && !json_is_null(b) && (rc = wa_validate_template_buttons(b, err)))
		return rc;
	json_t *reg = json_object_get(t, "regulatory");
	if (reg && !json_is_null(reg) && !json_is_object(reg))
		return hr_fail(err, HR_EINVAL, "template.regulatory",
		               "template.regulatory must be an object");
	return 0;
}

/* {"document":{"url","filename","caption"}} or {"image":{"url","caption"}}. */
static int wa_validate_media(const json_t *content, const char *type, struct hr_err *err)
{
	static const char *const doc_keys[] = {"url", "filename", "caption", NULL};
	static const char *const image_keys[] = {"url", "caption", NULL};
	bool doc = strcmp(type, "document") == 0;
	json_t *o = json_object_get(content, type);
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, type, "%s must be an object with a url", type);
	const char *s;
	int rc;
	if ((rc = wa_only_keys(o, doc ? doc_keys : image_keys, type, err)) ||
	    (rc = wa_vurl(o, type, err)) ||
	    (rc = wa_vstr(o, "caption", type, false, WA_CAPTION_MAX, &s, err)))
		return rc;
	return doc ? wa_vstr(o, "filename", type, false, WA_FILENAME_MAX, &s, err) : 0;
}

/* options: whatsapp knows {"preview_url": bool} (used by text messages). */
static int wa_validate_options(const json_t *content, struct hr_err *err)
{
	static const char *const keys[] = {"preview_url", NULL};
	json_t *o = json_object_get(content, "options");
	if (!o || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, "options", "options must be an object");
	int rc = wa_only_keys(o, keys, "options", err);
	if (rc)
		return rc;
	json_t *pu = json_object_get(o, "preview_url");
	if (pu && !json_is_boolean(pu))
		return hr_fail(err, HR_EINVAL, "options.preview_url",
		               "options.preview_url must be true or false");
	return 0;
}

/*
 * What WhatsApp can carry: text (with 1..3 reply buttons it becomes an
 * interactive message), template (body, header and button values), document
 * and image. RCS cards and carousels and call/URL actions have no WhatsApp
 * form here: refused naming the field, so the API answers 422.
 */
static int wa_validate(const json_t *content, struct hr_err *err)
{
	if (!json_is_object(content))
		return hr_fail(err, HR_EINVAL, "content", "content must be a JSON object");
	const char *type = json_string_value(json_object_get(content, "type"));
	if (!type)
		return hr_fail(err, HR_EINVAL, "type", "type is required");
	bool text = strcmp(type, "text") == 0;
	if (!text && strcmp(type, "template") != 0 && strcmp(type, "document") != 0 &&
	    strcmp(type, "image") != 0) {
		char t[32];
		hr_utf8_copy(t, type, sizeof t);
		return hr_fail(err, HR_EINVAL, "type",
		               "type '%s' is not supported on whatsapp (text, template, document, "
		               "image)",
		               t);
	}
	if (json_object_get(content, "actions"))
		return hr_fail(err, HR_EINVAL, "actions",
		               "actions (call or link suggestions) are not supported on whatsapp; "
		               "use reply buttons");
	json_t *buttons = json_object_get(content, "buttons");
	if (buttons && !text)
		return hr_fail(err, HR_EINVAL, "buttons",
		               "buttons go with a text message on whatsapp (template buttons "
		               "are template.buttons)");
	int rc = wa_validate_options(content, err);
	if (rc)
		return rc;
	if (text) {
		const char *s;
		size_t max = buttons ? WA_INTERACTIVE_BODY_MAX : WA_TEXT_MAX;
		if ((rc = wa_vstr(content, "text", "", true, max, &s, err)))
			return rc;
		return buttons ? wa_validate_reply_buttons(buttons, err) : 0;
	}
	if (strcmp(type, "template") == 0)
		return wa_validate_template(content, err);
	return wa_validate_media(content, type, err);
}

/* ---------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------- */

/* Sets o[key] = v (stealing v); false if v is NULL or the set failed. */
static bool wa_set(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

static bool wa_append(json_t *arr, json_t *v)
{
	return v && json_array_append_new(arr, v) == 0;
}

/* Copies src[from] (a string, if present) into dst[to]. */
static bool wa_copy_opt(json_t *dst, const char *to, const json_t *src, const char *from)
{
	json_t *v = json_object_get(src, from);
	return !json_is_string(v) || wa_set(dst, to, json_incref(v));
}

/* A media object: {"link", "filename"?, "caption"?} from {"url", ...}. */
static json_t *wa_media_json(const json_t *src, bool filename, bool caption)
{
	json_t *o = json_object();
	if (o && wa_set(o, "link", json_incref(json_object_get(src, "url"))) &&
	    (!filename || wa_copy_opt(o, "filename", src, "filename")) &&
	    (!caption || wa_copy_opt(o, "caption", src, "caption")))
		return o;
	json_decref(o);
	return NULL;
}

/* An interactive reply-button message from text + buttons. */
static json_t *wa_interactive_json(const json_t *content)
{
	json_t *list = json_array();
	size_t i;
	json_t *b;
	json_array_foreach(json_object_get(content, "buttons"), i, b)
	{
		if (!list || !wa_append(list, json_pack("{s:s, s:{s:O, s:O}}", "type", "reply",
		                                        "reply", "id", json_object_get(b, "id"),
		                                        "title", json_object_get(b, "title")))) {
			json_decref(list);
			return NULL;
		}
	}
	return list ? json_pack("{s:s, s:{s:O}, s:{s:o}}", "type", "button", "body", "text",
	                        json_object_get(content, "text"), "action", "buttons", list)
	            : NULL;
}

/* The header component: one parameter of the header's type. */
static json_t *wa_header_component(const json_t *h)
{
	const char *type = json_string_value(json_object_get(h, "type"));
	json_t *param;
	if (strcmp(type, "text") == 0) {
		json_t *v = json_object_get(h, "text");
		if (!v)
			v = json_array_get(json_object_get(h, "parameters"), 0);
		param = json_pack("{s:s, s:O}", "type", "text", "text", v);
	} else {
		bool doc = strcmp(type, "document") == 0;
		json_t *media = wa_media_json(h, doc, false);
		param = media ? json_pack("{s:s, s:o}", "type", type, type, media) : NULL;
	}
	return param ? json_pack("{s:s, s:[o]}", "type", "header", "parameters", param) : NULL;
}

/* One button component: quick_reply with a payload or url with a suffix. */
static json_t *wa_button_component(const json_t *b)
{
	char index[8];
	snprintf(index, sizeof index, "%lld",
	         (long long)json_integer_value(json_object_get(b, "index")));
	/* A null payload is absent (as wa_validate_template_buttons reads it):
	 * a URL button with its text. */
	json_t *payload = json_object_get(b, "payload");
	if (!json_is_string(payload))
		payload = NULL;
	json_t *param =
	    payload ? json_pack("{s:s, s:O}", "type", "payload", "payload", payload)
	            : json_pack("{s:s, s:O}", "type", "text", "text", json_object_get(b, "text"));
	if (!param)
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:[o]}", "type", "button", "sub_type",
	                 payload ? "quick_reply" : "url", "index", index, "parameters", param);
}

/*
 * The "template" object of a send: components header, body, buttons in
 * that order, each only when it has values (a template without variables
 * is sent with no components at all).
 */
static json_t *wa_template_json(const json_t *t)
{
	json_t *out = json_pack("{s:O, s:{s:O}}", "name", json_object_get(t, "name"), "language",
	                        "code", json_object_get(t, "language"));
	json_t *comps = json_array();
	if (!out || !comps)
		goto fail;
	json_t *h = json_object_get(t, "header");
	if (json_is_object(h) && !wa_append(comps, wa_header_component(h)))
		goto fail;
	json_t *params = json_object_get(t, "parameters");
	if (json_array_size(params) > 0) {
		json_t *plist = json_array();
		size_t i;
		json_t *p;
		json_array_foreach(params, i, p)
		{
			if (!plist ||
			    !wa_append(plist, json_pack("{s:s, s:O}", "type", "text", "text", p))) {
				json_decref(plist);
				goto fail;
			}
		}
		if (!wa_append(comps, json_pack("{s:s, s:o}", "type", "body", "parameters", plist)))
			goto fail;
	}
	size_t i;
	json_t *b;
	json_array_foreach(json_object_get(t, "buttons"), i, b)
	{
		if (!wa_append(comps, wa_button_component(b)))
			goto fail;
	}
	if (json_array_size(comps) == 0) {
		json_decref(comps);
		return out;
	}
	if (wa_set(out, "components", comps))
		return out;
	comps = NULL;
fail:
	json_decref(comps);
	json_decref(out);
	return NULL;
}

/* The type-specific part of a send: sets root's "type" and its object. */
static bool wa_body_json(json_t *root, const json_t *content)
{
	const char *type = json_string_value(json_object_get(content, "type"));
	if (strcmp(type, "text") == 0 && json_object_get(content, "buttons"))
		return wa_set(root, "type", json_string("interactive")) &&
		       wa_set(root, "interactive", wa_interactive_json(content));
	if (!wa_set(root, "type", json_string(type)))
		return false;
	if (strcmp(type, "text") == 0) {
		json_t *pu = json_object_get(json_object_get(content, "options"), "preview_url");
		return wa_set(root, "text",
		              json_pack("{s:b, s:O}", "preview_url", json_is_true(pu), "body",
		                        json_object_get(content, "text")));
	}
	if (strcmp(type, "template") == 0)
		return wa_set(root, "template",
		              wa_template_json(json_object_get(content, "template")));
	bool doc = strcmp(type, "document") == 0;
	return wa_set(root, type, wa_media_json(json_object_get(content, type), doc, true));
}

/* ---------------------------------------------------------------------------
 * the same bodies written directly (core/jsonw.h), for every type
 * WhatsApp takes here (text, interactive reply buttons, template, document,
 * image): each is a fixed shape once wa_validate has passed the content.
 * The jansson builders above stay as the reference the unit tests compare
 * against (channel_fast_json off), key for key and byte for byte.
 * ------------------------------------------------------------------------- */

/* The bound on a body: proportional to its content, which the API bounded
 * (server.max_body_bytes). Escaping turns a byte into at most six, and the
 * body's own keys add less than 32 bytes for each 1 of content (a template
 * parameter "x", is {"type":"text","text":"x"}, in the body), so a body
 * never meets it; it is there so that no bug can grow one without end. */
#define WA_BODY_MAX(content_len) (32 * (content_len) + 4096)

static const char *wa_jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* {"link", "filename"?, "caption"?} from {"url", ...}. */
static void wa_media_w(struct jsonw *w, const json_t *src, bool filename, bool caption)
{
	const char *url = wa_jstr(src, "url"), *fn = wa_jstr(src, "filename"),
	           *cap = wa_jstr(src, "caption");
	jsonw_obj(w);
	jsonw_kstr(w, "link", url ? url : "");
	if (filename && fn)
		jsonw_kstr(w, "filename", fn);
	if (caption && cap)
		jsonw_kstr(w, "caption", cap);
	jsonw_obj_end(w);
}

static void wa_interactive_w(struct jsonw *w, const json_t *content)
{
	jsonw_obj(w);
	jsonw_kstr(w, "type", "button");
	jsonw_key(w, "body");
	jsonw_obj(w);
	jsonw_kstr(w, "text", wa_jstr(content, "text"));
	jsonw_obj_end(w);
	jsonw_key(w, "action");
	jsonw_obj(w);
	jsonw_key(w, "buttons");
	jsonw_arr(w);
	size_t i;
	json_t *b;
	json_array_foreach(json_object_get(content, "buttons"), i, b)
	{
		jsonw_obj(w);
		jsonw_kstr(w, "type", "reply");
		jsonw_key(w, "reply");
		jsonw_obj(w);
		jsonw_kstr(w, "id", wa_jstr(b, "id"));
		jsonw_kstr(w, "title", wa_jstr(b, "title"));
		jsonw_obj_end(w);
		jsonw_obj_end(w);
	}
	jsonw_arr_end(w);
	jsonw_obj_end(w);
	jsonw_obj_end(w);
}

static void wa_template_w(struct jsonw *w, const json_t *t)
{
	jsonw_obj(w);
	jsonw_kstr(w, "name", wa_jstr(t, "name"));
	jsonw_key(w, "language");
	jsonw_obj(w);
	jsonw_kstr(w, "code", wa_jstr(t, "language"));
	jsonw_obj_end(w);
	json_t *h = json_object_get(t, "header");
	json_t *params = json_object_get(t, "parameters");
	json_t *buttons = json_object_get(t, "buttons");
	if (json_is_object(h) || json_array_size(params) > 0 || json_array_size(buttons) > 0) {
		jsonw_key(w, "components");
		jsonw_arr(w);
		if (json_is_object(h)) {
			const char *type = wa_jstr(h, "type");
			jsonw_obj(w);
			jsonw_kstr(w, "type", "header");
			jsonw_key(w, "parameters");
			jsonw_arr(w);
			jsonw_obj(w);
			if (strcmp(type, "text") == 0) {
				const char *v = wa_jstr(h, "text");
				if (!v)
					v = json_string_value(
					    json_array_get(json_object_get(h, "parameters"), 0));
				jsonw_kstr(w, "type", "text");
				jsonw_kstr(w, "text", v);
			} else {
				jsonw_kstr(w, "type", type);
				jsonw_key(w, type);
				wa_media_w(w, h, strcmp(type, "document") == 0, false);
			}
			jsonw_obj_end(w);
			jsonw_arr_end(w);
			jsonw_obj_end(w);
		}
		size_t i;
		json_t *v;
		if (json_array_size(params) > 0) {
			jsonw_obj(w);
			jsonw_kstr(w, "type", "body");
			jsonw_key(w, "parameters");
			jsonw_arr(w);
			json_array_foreach(params, i, v)
			{
				jsonw_obj(w);
				jsonw_kstr(w, "type", "text");
				jsonw_kstr(w, "text", json_string_value(v));
				jsonw_obj_end(w);
			}
			jsonw_arr_end(w);
			jsonw_obj_end(w);
		}
		json_array_foreach(buttons, i, v)
		{
			char index[24];
			snprintf(index, sizeof index, "%lld",
			         (long long)json_integer_value(json_object_get(v, "index")));
			const char *payload = wa_jstr(v, "payload");
			jsonw_obj(w);
			jsonw_kstr(w, "type", "button");
			jsonw_kstr(w, "sub_type", payload ? "quick_reply" : "url");
			jsonw_kstr(w, "index", index);
			jsonw_key(w, "parameters");
			jsonw_arr(w);
			jsonw_obj(w);
			if (payload) {
				jsonw_kstr(w, "type", "payload");
				jsonw_kstr(w, "payload", payload);
			} else {
				jsonw_kstr(w, "type", "text");
				jsonw_kstr(w, "text", wa_jstr(v, "text"));
			}
			jsonw_obj_end(w);
			jsonw_arr_end(w);
			jsonw_obj_end(w);
		}
		jsonw_arr_end(w);
	}
	jsonw_obj_end(w);
}

/*
 * The whole body of a validated content; heap, NULL on failure with *rc
 * (HR_ENOMEM, or HR_ELIMIT past WA_BODY_MAX).
 */
static char *wa_body_fast(const struct message *m, const json_t *content, size_t *len, int *rc)
{
	struct jsonw w;
	jsonw_init(&w, WA_BODY_MAX(strlen(m->content)));
	const char *type = wa_jstr(content, "type");
	jsonw_obj(&w);
	jsonw_kstr(&w, "messaging_product", "whatsapp");
	jsonw_kstr(&w, "recipient_type", "individual");
	jsonw_kstr(&w, "to", m->recipient);
	if (strcmp(type, "text") == 0 && json_object_get(content, "buttons")) {
		jsonw_kstr(&w, "type", "interactive");
		jsonw_key(&w, "interactive");
		wa_interactive_w(&w, content);
	} else if (strcmp(type, "text") == 0) {
		json_t *pu = json_object_get(json_object_get(content, "options"), "preview_url");
		jsonw_kstr(&w, "type", "text");
		jsonw_key(&w, "text");
		jsonw_obj(&w);
		jsonw_kbool(&w, "preview_url", json_is_true(pu));
		jsonw_kstr(&w, "body", wa_jstr(content, "text"));
		jsonw_obj_end(&w);
	} else if (strcmp(type, "template") == 0) {
		jsonw_kstr(&w, "type", "template");
		jsonw_key(&w, "template");
		wa_template_w(&w, json_object_get(content, "template"));
	} else {
		jsonw_kstr(&w, "type", type);
		jsonw_key(&w, type);
		wa_media_w(&w, json_object_get(content, type), strcmp(type, "document") == 0, true);
	}
	if (m->id[0])
		jsonw_kstr(&w, "biz_opaque_callback_data", m->id);
	jsonw_obj_end(&w);
	return jsonw_finish(&w, len, rc);
}

/*
 * the commonest content, a plain text ({"type":"text","text":..}
 * with no buttons, actions or options; other keys are ignored, as
 * wa_validate ignores them), read with jsonr instead of a jansson tree and
 * checked as wa_validate checks it (a non-empty string of at most
 * WA_TEXT_MAX characters), then written as wa_body_fast writes it. NULL
 * declines: anything else, or anything wa_validate would refuse, goes the
 * jansson way, which builds or refuses it as before.
 */
static char *wa_text_fast(const struct message *m)
{
	static const char *const refuse[] = {"buttons", "actions", "options", NULL};
	char *text = channel_plain_text(m->content, refuse);
	if (!text)
		return NULL;
	char *body = NULL;
	if (wa_utf8_chars(text) <= WA_TEXT_MAX) {
		struct jsonw w;
		jsonw_init(&w, WA_BODY_MAX(strlen(m->content)));
		jsonw_obj(&w);
		jsonw_kstr(&w, "messaging_product", "whatsapp");
		jsonw_kstr(&w, "recipient_type", "individual");
		jsonw_kstr(&w, "to", m->recipient);
		jsonw_kstr(&w, "type", "text");
		jsonw_key(&w, "text");
		jsonw_obj(&w);
		jsonw_kbool(&w, "preview_url", false);
		jsonw_kstr(&w, "body", text);
		jsonw_obj_end(&w);
		if (m->id[0])
			jsonw_kstr(&w, "biz_opaque_callback_data", m->id);
		jsonw_obj_end(&w);
		body = jsonw_finish(&w, NULL, NULL);
	}
	free(text);
	return body;
}

/*
 * The body of any content: parsed and validated with jansson, then written
 * by wa_body_fast or (switched off, or it failed: a bug there must not stop
 * a send) by the jansson builder. *body heap, or NULL (out of memory) when
 * 0 is returned; the content's error otherwise.
 */
static int wa_body(const struct message *m, char **body, struct hr_err *err)
{
	*body = NULL;
	json_error_t je;
	json_t *content = m->content ? json_loads(m->content, 0, &je) : NULL;
	if (!content)
		return hr_fail(err, HR_EINVAL, "content", "message content is not valid JSON");
	int rc = wa_validate(content, err);
	if (rc) {
		json_decref(content);
		return rc;
	}
	*body = channel_fast_json ? wa_body_fast(m, content, NULL, NULL) : NULL;
	if (*body) {
		channel_fast_json_hits++;
	} else {
		json_t *root = json_pack("{s:s, s:s, s:s}", "messaging_product", "whatsapp",
		                         "recipient_type", "individual", "to", m->recipient);
		bool ok =
		    root && wa_body_json(root, content) &&
		    (!m->id[0] || wa_set(root, "biz_opaque_callback_data", json_string(m->id)));
		*body = ok ? json_dumps(root, JSON_COMPACT) : NULL;
		json_decref(root);
	}
	json_decref(content);
	return 0;
}

static int wa_build_send(const struct channel_account *acct, const struct message *m,
                         struct http_req *out, struct hr_err *err)
{
	const struct wa_priv *p = acct->priv;
	memset(out, 0, sizeof *out);
	out->body = channel_fast_json ? wa_text_fast(m) : NULL;
	if (out->body) {
		channel_fast_json_hits++;
	} else {
		int rc = wa_body(m, &out->body, err);
		if (rc)
			return rc;
	}
	out->url = strdup(p->messages_url);
	out->headers = curl_slist_append(NULL, p->auth_header);
	if (out->headers)
		out->headers = curl_slist_append(out->headers, "Content-Type: application/json");
	/* No "Expect: 100-continue" round trip before larger bodies. */
	if (out->headers && out->headers->next)
		out->headers = curl_slist_append(out->headers, "Expect:");
	if (!out->body || !out->url || !out->headers || !out->headers->next ||
	    !out->headers->next->next) {
		http_req_clear(out);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	out->body_len = strlen(out->body);
	return 0;
}

/* How each Graph API error code is handled (PROVIDERS.md's table). retry_us is a
 * default hint when the answer carries no Retry-After. `scope`, for the rate
 * limits: RECIPIENT when the limit is on this business number and one
 * recipient (the pair rate limit), so only this message waits (pausing the
 * whole account would delay every other recipient for a limit they are not
 * under); ACCOUNT when the number, the WhatsApp Business account or the app
 * is at its limit, so every send of the account would meet it. */
struct wa_code {
	long code;
	enum outcome_class cls;
	bool blocked;
	int64_t retry_us;
	enum rate_scope scope;
};

static const struct wa_code wa_codes[] = {
    {130429, OUTCOME_RATE_LIMITED, false, 0, RATE_SCOPE_ACCOUNT},    /* number throughput */
    {131056, OUTCOME_RATE_LIMITED, false, 6000000, RATE_SCOPE_RECIPIENT}, /* pair rate */
    {80007, OUTCOME_RATE_LIMITED, false, 0, RATE_SCOPE_ACCOUNT},     /* WABA request limit */
    {4, OUTCOME_RATE_LIMITED, false, 0, RATE_SCOPE_ACCOUNT},         /* application limit */
    {131048, OUTCOME_RATE_LIMITED, false, 60000000, RATE_SCOPE_ACCOUNT}, /* spam limit  */
    {131000, OUTCOME_TRANSIENT, false, 0, RATE_SCOPE_NONE},           /* something went wrong    */
    {131016, OUTCOME_TRANSIENT, false, 0, RATE_SCOPE_NONE},           /* service unavailable     */
    {1, OUTCOME_TRANSIENT, false, 0, RATE_SCOPE_NONE},
    {2, OUTCOME_TRANSIENT, false, 0, RATE_SCOPE_NONE},
    {131026, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* undeliverable           */
    {131047, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* 24 h window closed      */
    {131049, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* marketing frequency cap */
    {131051, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* unsupported type        */
    {132000, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* template param count    */
    {132001, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* template missing        */
    {132012, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* param format            */
    {132015, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* template paused         */
    {132016, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* template disabled       */
    {131009, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE}, /* invalid parameter       */
    {100, OUTCOME_PERMANENT, false, 0, RATE_SCOPE_NONE},    /* invalid parameter       */
    {190, OUTCOME_PERMANENT, true, 0, RATE_SCOPE_NONE},     /* token expired/invalid   */
    {368, OUTCOME_PERMANENT, true, 0, RATE_SCOPE_NONE},     /* account blocked         */
    {131031, OUTCOME_PERMANENT, true, 0, RATE_SCOPE_NONE},  /* account locked          */
};

static const struct wa_code *wa_code_find(long code)
{
	for (size_t i = 0; i < sizeof wa_codes / sizeof wa_codes[0]; i++)
		if (wa_codes[i].code == code)
			return &wa_codes[i];
	return NULL;
}

/*
 * a success answer's messages[0].id read without a jansson tree
 * (core/jsonr.h). true and out filled (OK) only when the answer is one jsonr
 * reads and the id is there, non-empty and fits: everything else goes the
 * jansson way below, which decides as before.
 */
static bool wa_sent_fast(const char *body, size_t len, struct send_outcome *out)
{
	struct jsonr r;
	size_t n = 0;
	if (jsonr_parse(&r, body, len) != 0)
		return false;
	int id = jsonr_get(&r, jsonr_at(&r, jsonr_get(&r, 0, "messages"), 0), "id");
	if (!jsonr_string(&r, id, out->provider_id, sizeof out->provider_id, &n) || n == 0) {
		out->provider_id[0] = '\0';
		return false;
	}
	out->cls = OUTCOME_OK;
	channel_fast_json_hits++;
	return true;
}

/*
 * Classifies an answer to a send. The provider's error code decides when it
 * is known; otherwise the HTTP status does (429 rate limited, 5xx and 408
 * transient, other 4xx permanent). A 2xx without messages[0].id is treated as
 * transient: the send's fate is unknown and the dispatcher's policy decides.
 */
static void wa_parse_send(const struct channel_account *acct, long http_status, const char *body,
                          size_t len, const char *retry_after, struct send_outcome *out)
{
	(void)acct;
	memset(out, 0, sizeof *out);
	out->retry_after_us = channel_retry_after_us(retry_after);
	if (channel_network_outcome(http_status, body, len, out))
		return;
	if (http_status >= 200 && http_status < 300 && channel_fast_json &&
	    wa_sent_fast(body, len, out))
		return;
	json_error_t je;
	json_t *root = (body && len) ? json_loadb(body, len, 0, &je) : NULL;
	if (http_status >= 200 && http_status < 300) {
		json_t *msgs = json_object_get(root, "messages");
		const char *id = json_string_value(json_object_get(json_array_get(msgs, 0), "id"));
		if (id && *id && strlen(id) < sizeof out->provider_id) {
			out->cls = OUTCOME_OK;
			hr_strlcpy(out->provider_id, id, sizeof out->provider_id);
		} else {
			out->cls = OUTCOME_TRANSIENT;
			snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
			hr_strlcpy(out->error_text, "success answer without messages[0].id",
			           sizeof out->error_text);
		}
		json_decref(root);
		return;
	}
	json_t *e = json_object_get(root, "error");
	json_t *jcode = json_object_get(e, "code");
	const struct wa_code *known = NULL;
	if (json_is_integer(jcode)) {
		long code = (long)json_integer_value(jcode);
		snprintf(out->error_code, sizeof out->error_code, "%ld", code);
		known = wa_code_find(code);
	} else {
		snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
	}
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (!msg)
		msg =
		    json_string_value(json_object_get(json_object_get(e, "error_data"), "details"));
	if (msg)
		hr_utf8_copy(out->error_text, msg, sizeof out->error_text);
	else
		channel_body_excerpt(body, len, out->error_text, sizeof out->error_text);
	if (!out->error_text[0])
		snprintf(out->error_text, sizeof out->error_text, "HTTP %ld", http_status);
	json_decref(root);

	if (known) {
		out->cls = known->cls;
		out->account_blocked = known->blocked;
		out->rate_scope = known->scope;
		if (!out->retry_after_us)
			out->retry_after_us = known->retry_us;
	} else {
		channel_http_outcome(out, http_status);
	}
}

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

/* Meta's subscription check: echo hub.challenge if the verify token matches. */
static int wa_webhook_handshake(const struct channel_account *acct, const struct wh_request *req,
                                int *status, char **body)
{
	const struct wa_priv *p = acct->priv;
	if (strcmp(req->method, "GET") != 0)
		return 0; /* events are POSTs: not a handshake */
	const char *mode = req->query ? req->query(req->ctx, "hub.mode") : NULL;
	const char *token = req->query ? req->query(req->ctx, "hub.verify_token") : NULL;
	const char *challenge = req->query ? req->query(req->ctx, "hub.challenge") : NULL;
	bool ok = mode && strcmp(mode, "subscribe") == 0 && token &&
	          hr_consteq(token, strlen(token), p->verify_token, strlen(p->verify_token)) &&
	          challenge && *challenge && strlen(challenge) <= WA_CHALLENGE_MAX;
	*status = ok ? 200 : 403;
	*body = strdup(ok ? challenge : "verification failed");
	return *body ? 1 : HR_ENOMEM;
}

static int wa_webhook_verify(const struct channel_account *acct, const struct wh_request *req,
                             struct hr_err *err)
{
	const struct wa_priv *p = acct->priv;
	const char *sig = req->header ? req->header(req->ctx, WA_SIG_HEADER) : NULL;
	if (!sig || !*sig)
		return hr_fail(err, HR_EAUTH, WA_SIG_HEADER, "missing %s header", WA_SIG_HEADER);
	char given[65];
	bool ok = strncasecmp(sig, "sha256=", 7) == 0 && strlen(sig + 7) == 64;
	for (size_t i = 0; ok && i < 64; i++) {
		unsigned char c = (unsigned char)sig[7 + i];
		ok = isxdigit(c);
		given[i] = (char)tolower(c);
	}
	if (!ok)
		return hr_fail(err, HR_EAUTH, WA_SIG_HEADER,
		               "malformed %s header (expected sha256=<64 hex digits>)",
		               WA_SIG_HEADER);
	given[64] = '\0';
	char want[65];
	hr_hmac_sha256_hex(p->app_secret, strlen(p->app_secret), req->body ? req->body : "",
	                   req->body_len, want);
	if (!hr_consteq(given, 64, want, 64))
		return hr_fail(err, HR_EAUTH, WA_SIG_HEADER,
		               "%s does not match the body (wrong app secret or altered body)",
		               WA_SIG_HEADER);
	return 0;
}

static void wa_webhook_dedupe_key(const struct wh_request *req, char out[128])
{
	(void)req;
	out[0] = '\0'; /* Meta gives no event id: the applier's precedence rules dedupe */
}

static int wa_bad(struct hr_err *err, const char *path, const char *what)
{
	return hr_fail(err, HR_EINVAL, path, "%s %s", path, what);
}

/*
 * Copies obj[key] (a string) into dst (size n), naming base.key on error.
 * Absent and not required leaves dst as it is.
 */
static int wa_str(json_t *obj, const char *key, bool required, const char *base, char *dst,
                  size_t n, struct hr_err *err)
{
	char path[96];
	snprintf(path, sizeof path, "%s.%s", base, key);
	json_t *v = json_object_get(obj, key);
	if (!v)
		return required ? wa_bad(err, path, "is missing") : 0;
	if (!json_is_string(v) || (required && !*json_string_value(v)))
		return wa_bad(err, path, "must be a non-empty string");
	if (strlen(json_string_value(v)) >= n)
		return wa_bad(err, path, "is too long");
	hr_strlcpy(dst, json_string_value(v), n);
	return 0;
}

/* Duplicates obj[key] (a string) into *dst (heap); absent leaves it NULL. */
static int wa_strdup(json_t *obj, const char *key, bool required, const char *base, char **dst,
                     struct hr_err *err)
{
	char path[96];
	snprintf(path, sizeof path, "%s.%s", base, key);
	json_t *v = json_object_get(obj, key);
	if (!v)
		return required ? wa_bad(err, path, "is missing") : 0;
	if (!json_is_string(v))
		return wa_bad(err, path, "must be a string");
	free(*dst);
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : hr_fail(err, HR_ENOMEM, path, "out of memory");
}

/* Unix seconds given as a string of digits (as Meta sends) or an integer. */
static int wa_timestamp(json_t *obj, const char *base, char ts[40], int64_t *us, struct hr_err *err)
{
	char path[96];
	snprintf(path, sizeof path, "%s.timestamp", base);
	json_t *v = json_object_get(obj, "timestamp");
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= 999999999999LL) { /* 12 digits, like strings */
		snprintf(ts, 40, "%lld", (long long)json_integer_value(v));
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = strlen(s);
		if (n == 0 || n > 12 || strspn(s, "0123456789") != n)
			return wa_bad(err, path, "must be unix seconds");
		hr_strlcpy(ts, s, 40);
	} else {
		return wa_bad(err, path, v ? "must be unix seconds" : "is missing");
	}
	*us = strtoll(ts, NULL, 10) * 1000000LL;
	return 0;
}

static int wa_parse_status(json_t *s, const char *base, struct wh_parsed *out, struct hr_err *err)
{
	if (!json_is_object(s))
		return wa_bad(err, base, "must be an object");
	char path[96];
	snprintf(path, sizeof path, "%s.status", base);
	const char *st = json_string_value(json_object_get(s, "status"));
	if (!st)
		return wa_bad(err, path, "must be a string");
	enum msg_status status;
	if (strcmp(st, "sent") == 0)
		status = MSG_SENT;
	else if (strcmp(st, "delivered") == 0)
		status = MSG_DELIVERED;
	else if (strcmp(st, "read") == 0)
		status = MSG_READ;
	else if (strcmp(st, "failed") == 0)
		status = MSG_FAILED;
	else
		return 0; /* "played", "deleted", "warning", ...: nothing to apply */
	struct wh_status tmp = {.status = status};
	int rc;
	if ((rc = wa_str(s, "id", true, base, tmp.provider_id, sizeof tmp.provider_id, err)) ||
	    (rc = wa_timestamp(s, base, tmp.provider_ts, &tmp.provider_at, err)))
		return rc;
	/* Herald's message id, sent as biz_opaque_callback_data and echoed
	 * here: anything else in it is not ours and is ignored. */
	const char *ref = json_string_value(json_object_get(s, "biz_opaque_callback_data"));
	if (ref && hr_id_valid(ref))
		hr_strlcpy(tmp.client_ref, ref, sizeof tmp.client_ref);
	json_t *errors = json_object_get(s, "errors");
	if (errors && !json_is_array(errors)) {
		snprintf(path, sizeof path, "%s.errors", base);
		return wa_bad(err, path, "must be an array");
	}
	json_t *e0 = json_array_get(errors, 0);
	if (e0) {
		snprintf(path, sizeof path, "%s.errors[0]", base);
		if (!json_is_object(e0))
			return wa_bad(err, path, "must be an object");
		json_t *code = json_object_get(e0, "code");
		if (json_is_integer(code))
			snprintf(tmp.error_code, sizeof tmp.error_code, "%lld",
			         (long long)json_integer_value(code));
		else if (json_is_string(code))
			hr_utf8_copy(tmp.error_code, json_string_value(code),
			             sizeof tmp.error_code);
		const char *text = json_string_value(json_object_get(e0, "title"));
		if (!text)
			text = json_string_value(json_object_get(e0, "message"));
		if (text)
			hr_utf8_copy(tmp.error_text, text, sizeof tmp.error_text);
	}
	struct wh_status *dst = wh_parsed_add_status(out);
	if (!dst)
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	*dst = tmp;
	return 0;
}

/* Fills text/payload of a reply from its type-specific object. */
static int wa_parse_reply_body(json_t *m, const char *type, const char *base, struct wh_inbound *in,
                               struct hr_err *err)
{
	char sub[96];
	json_t *o = json_object_get(m, type);
	snprintf(sub, sizeof sub, "%s.%s", base, type);
	if (strcmp(type, "text") == 0) {
		if (!json_is_object(o))
			return wa_bad(err, sub, "must be an object");
		return wa_strdup(o, "body", true, sub, &in->text, err);
	}
	if (strcmp(type, "button") == 0) {
		if (!json_is_object(o))
			return wa_bad(err, sub, "must be an object");
		int rc = wa_strdup(o, "payload", true, sub, &in->payload, err);
		return rc ? rc : wa_strdup(o, "text", false, sub, &in->text, err);
	}
	if (strcmp(type, "interactive") == 0) {
		if (!json_is_object(o))
			return wa_bad(err, sub, "must be an object");
		const char *itype = json_string_value(json_object_get(o, "type"));
		if (!itype) {
			snprintf(sub, sizeof sub, "%s.interactive.type", base);
			return wa_bad(err, sub, "must be a string");
		}
		if (strcmp(itype, "button_reply") != 0 && strcmp(itype, "list_reply") != 0)
			return 0; /* e.g. a flow's nfm_reply: recorded without text */
		json_t *r = json_object_get(o, itype);
		snprintf(sub, sizeof sub, "%s.interactive.%s", base, itype);
		if (!json_is_object(r))
			return wa_bad(err, sub, "must be an object");
		int rc = wa_strdup(r, "id", true, sub, &in->payload, err);
		return rc ? rc : wa_strdup(r, "title", false, sub, &in->text, err);
	}
	if (json_is_object(o) && json_is_string(json_object_get(o, "caption")))
		return wa_strdup(o, "caption", false, sub, &in->text, err);
	if (strcmp(type, "reaction") == 0 && json_is_object(o)) {
		int rc = wa_strdup(o, "emoji", false, sub, &in->text, err);
		if (rc == 0 && !in->context_id[0])
			rc = wa_str(o, "message_id", false, sub, in->context_id,
			            sizeof in->context_id, err);
		return rc;
	}
	return 0;
}

static int wa_parse_message(json_t *m, const char *base, struct wh_parsed *out, struct hr_err *err)
{
	if (!json_is_object(m))
		return wa_bad(err, base, "must be an object");
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in)
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	/* `in` is now owned by out: the caller's rollback frees what we set. */
	char type[32] = "";
	char ts[40];
	int rc;
	if ((rc = wa_str(m, "id", true, base, in->provider_msg_id, sizeof in->provider_msg_id,
	                 err)) ||
	    (rc = wa_str(m, "from", true, base, in->from, sizeof in->from, err)) ||
	    (rc = wa_timestamp(m, base, ts, &in->provider_at, err)) ||
	    (rc = wa_str(m, "type", true, base, type, sizeof type, err)))
		return rc;
	hr_strlcpy(in->kind, type, sizeof in->kind);
	json_t *ctx = json_object_get(m, "context");
	if (ctx) {
		char sub[96];
		snprintf(sub, sizeof sub, "%s.context", base);
		if (!json_is_object(ctx))
			return wa_bad(err, sub, "must be an object");
		if ((rc =
		         wa_str(ctx, "id", false, sub, in->context_id, sizeof in->context_id, err)))
			return rc;
	}
	return wa_parse_reply_body(m, type, base, in, err);
}

static int wa_parse_array(json_t *value, const char *key, const char *base, struct wh_parsed *out,
                          struct hr_err *err)
{
	json_t *arr = json_object_get(value, key);
	char path[96];
	if (!arr)
		return 0;
	snprintf(path, sizeof path, "%s.%s", base, key);
	if (!json_is_array(arr))
		return wa_bad(err, path, "must be an array");
	size_t i;
	json_t *item;
	json_array_foreach(arr, i, item)
	{
		snprintf(path, sizeof path, "%s.%s[%zu]", base, key, i);
		int rc = strcmp(key, "statuses") == 0 ? wa_parse_status(item, path, out, err)
		                                      : wa_parse_message(item, path, out, err);
		if (rc)
			return rc;
	}
	return 0;
}

static int wa_parse_entries(json_t *root, struct wh_parsed *out, struct hr_err *err)
{
	if (!json_is_object(root))
		return wa_bad(err, "body", "must be a JSON object");
	const char *object = json_string_value(json_object_get(root, "object"));
	if (!object || strcmp(object, "whatsapp_business_account") != 0)
		return wa_bad(err, "object", "must be \"whatsapp_business_account\"");
	json_t *entries = json_object_get(root, "entry");
	if (!json_is_array(entries))
		return wa_bad(err, "entry", "must be an array");
	size_t i, j;
	json_t *entry, *change;
	char path[96];
	json_array_foreach(entries, i, entry)
	{
		snprintf(path, sizeof path, "entry[%zu]", i);
		if (!json_is_object(entry))
			return wa_bad(err, path, "must be an object");
		json_t *changes = json_object_get(entry, "changes");
		snprintf(path, sizeof path, "entry[%zu].changes", i);
		if (!json_is_array(changes))
			return wa_bad(err, path, "must be an array");
		json_array_foreach(changes, j, change)
		{
			snprintf(path, sizeof path, "entry[%zu].changes[%zu]", i, j);
			if (!json_is_object(change))
				return wa_bad(err, path, "must be an object");
			const char *field = json_string_value(json_object_get(change, "field"));
			if (field && strcmp(field, "messages") != 0)
				continue; /* template or account updates: not ours to apply */
			json_t *value = json_object_get(change, "value");
			snprintf(path, sizeof path, "entry[%zu].changes[%zu].value", i, j);
			if (!json_is_object(value))
				return wa_bad(err, path, "must be an object");
			int rc = wa_parse_array(value, "statuses", path, out, err);
			if (!rc)
				rc = wa_parse_array(value, "messages", path, out, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/*
 * The fast way (channel_fast_json): the same walk as wa_parse_entries and
 * the functions it calls, over jsonr's tokens instead of a jansson tree.
 * Each wa_f* function takes what its jansson twin accepts and gives the
 * same values; wherever the twin would fail (an error with its field) it
 * returns false instead, and so does every text jsonr refuses: the caller
 * then drops what was added and runs the jansson way on the same body, which
 * gives the error. So out, and any error, are what jansson alone gives.
 */

/* wa_str: false where wa_str fails (dst may then be clobbered). */
static bool wa_fstr(const struct jsonr *r, int obj, const char *key, bool required, char *dst,
                    size_t n)
{
	int v = jsonr_get(r, obj, key);
	if (v < 0)
		return !required;
	size_t len;
	/* jsonr_string refuses a string of n bytes or more: "is too long". */
	return jsonr_string(r, v, dst, n, &len) && (!required || len > 0);
}

/* wa_strdup: false where wa_strdup fails, and when out of memory. */
static bool wa_fstrdup(const struct jsonr *r, int obj, const char *key, bool required, char **dst)
{
	int v = jsonr_get(r, obj, key);
	if (v < 0)
		return !required;
	if (!jsonr_is_string(r, v))
		return false;
	free(*dst);
	*dst = jsonr_strdup(r, v, NULL);
	return *dst != NULL;
}

/* wa_timestamp. */
static bool wa_ftimestamp(const struct jsonr *r, int obj, char ts[40], int64_t *us)
{
	int v = jsonr_get(r, obj, "timestamp");
	long long iv;
	if (jsonr_int(r, v, &iv)) {
		if (iv < 0 || iv > 999999999999LL)
			return false;
		snprintf(ts, 40, "%lld", iv);
	} else {
		size_t n;
		if (!jsonr_string(r, v, ts, 40, &n) || n == 0 || n > 12 ||
		    strspn(ts, "0123456789") != n)
			return false;
	}
	*us = strtoll(ts, NULL, 10) * 1000000LL;
	return true;
}

/* hr_utf8_copy of string t into dst (size n); false only when out of memory. */
static bool wa_futf8(const struct jsonr *r, int t, char *dst, size_t n)
{
	char *s = jsonr_strdup(r, t, NULL);
	if (!s)
		return false;
	hr_utf8_copy(dst, s, n);
	free(s);
	return true;
}

/* wa_parse_status. */
static bool wa_fparse_status(const struct jsonr *r, int s, struct wh_parsed *out)
{
	if (!jsonr_is_object(r, s))
		return false;
	int st = jsonr_get(r, s, "status");
	if (!jsonr_is_string(r, st))
		return false;
	enum msg_status status;
	if (jsonr_string_is(r, st, "sent"))
		status = MSG_SENT;
	else if (jsonr_string_is(r, st, "delivered"))
		status = MSG_DELIVERED;
	else if (jsonr_string_is(r, st, "read"))
		status = MSG_READ;
	else if (jsonr_string_is(r, st, "failed"))
		status = MSG_FAILED;
	else
		return true; /* nothing to apply */
	struct wh_status tmp = {.status = status};
	if (!wa_fstr(r, s, "id", true, tmp.provider_id, sizeof tmp.provider_id) ||
	    !wa_ftimestamp(r, s, tmp.provider_ts, &tmp.provider_at))
		return false;
	/* A string that does not fit is longer than an id: not ours. */
	char ref[HR_ID_LEN + 1];
	if (jsonr_string(r, jsonr_get(r, s, "biz_opaque_callback_data"), ref, sizeof ref, NULL) &&
	    hr_id_valid(ref))
		hr_strlcpy(tmp.client_ref, ref, sizeof tmp.client_ref);
	int errors = jsonr_get(r, s, "errors");
	if (errors >= 0 && !jsonr_is_array(r, errors))
		return false;
	int e0 = jsonr_at(r, errors, 0);
	if (e0 >= 0) {
		if (!jsonr_is_object(r, e0))
			return false;
		int code = jsonr_get(r, e0, "code");
		long long c;
		if (jsonr_int(r, code, &c))
			snprintf(tmp.error_code, sizeof tmp.error_code, "%lld", c);
		else if (jsonr_is_string(r, code) &&
		         !wa_futf8(r, code, tmp.error_code, sizeof tmp.error_code))
			return false;
		int text = jsonr_get(r, e0, "title");
		if (!jsonr_is_string(r, text))
			text = jsonr_get(r, e0, "message");
		if (jsonr_is_string(r, text) &&
		    !wa_futf8(r, text, tmp.error_text, sizeof tmp.error_text))
			return false;
	}
	struct wh_status *dst = wh_parsed_add_status(out);
	if (!dst)
		return false;
	*dst = tmp;
	return true;
}

/* wa_parse_reply_body. */
static bool wa_fparse_reply_body(const struct jsonr *r, int m, const char *type,
                                 struct wh_inbound *in)
{
	int o = jsonr_get(r, m, type); /* keys hold no escapes: raw bytes compare */
	if (strcmp(type, "text") == 0)
		return jsonr_is_object(r, o) && wa_fstrdup(r, o, "body", true, &in->text);
	if (strcmp(type, "button") == 0)
		return jsonr_is_object(r, o) && wa_fstrdup(r, o, "payload", true, &in->payload) &&
		       wa_fstrdup(r, o, "text", false, &in->text);
	if (strcmp(type, "interactive") == 0) {
		if (!jsonr_is_object(r, o))
			return false;
		int it = jsonr_get(r, o, "type");
		if (!jsonr_is_string(r, it))
			return false;
		const char *itype = jsonr_string_is(r, it, "button_reply") ? "button_reply"
		                    : jsonr_string_is(r, it, "list_reply") ? "list_reply"
		                                                           : NULL;
		if (!itype)
			return true;
		int rep = jsonr_get(r, o, itype);
		return jsonr_is_object(r, rep) && wa_fstrdup(r, rep, "id", true, &in->payload) &&
		       wa_fstrdup(r, rep, "title", false, &in->text);
	}
	if (jsonr_is_object(r, o) && jsonr_is_string(r, jsonr_get(r, o, "caption")))
		return wa_fstrdup(r, o, "caption", false, &in->text);
	if (strcmp(type, "reaction") == 0 && jsonr_is_object(r, o))
		return wa_fstrdup(r, o, "emoji", false, &in->text) &&
		       (in->context_id[0] ||
		        wa_fstr(r, o, "message_id", false, in->context_id, sizeof in->context_id));
	return true;
}

/* wa_parse_message. */
static bool wa_fparse_message(const struct jsonr *r, int m, struct wh_parsed *out)
{
	if (!jsonr_is_object(r, m))
		return false;
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in)
		return false;
	char type[32] = "";
	char ts[40];
	if (!wa_fstr(r, m, "id", true, in->provider_msg_id, sizeof in->provider_msg_id) ||
	    !wa_fstr(r, m, "from", true, in->from, sizeof in->from) ||
	    !wa_ftimestamp(r, m, ts, &in->provider_at) ||
	    !wa_fstr(r, m, "type", true, type, sizeof type))
		return false;
	hr_strlcpy(in->kind, type, sizeof in->kind);
	int ctx = jsonr_get(r, m, "context");
	if (ctx >= 0 && (!jsonr_is_object(r, ctx) ||
	                 !wa_fstr(r, ctx, "id", false, in->context_id, sizeof in->context_id)))
		return false;
	return wa_fparse_reply_body(r, m, type, in);
}

/* wa_parse_array. */
static bool wa_fparse_array(const struct jsonr *r, int value, const char *key,
                            struct wh_parsed *out)
{
	int arr = jsonr_get(r, value, key);
	if (arr < 0)
		return true;
	int n = jsonr_size(r, arr);
	if (!jsonr_is_array(r, arr))
		return false;
	bool statuses = strcmp(key, "statuses") == 0;
	for (int k = 0, item = arr + 1; k < n; k++, item = jsonr_after(r, item))
		if (!(statuses ? wa_fparse_status(r, item, out) : wa_fparse_message(r, item, out)))
			return false;
	return true;
}

/* wa_parse_entries. */
static bool wa_fparse_entries(const struct jsonr *r, struct wh_parsed *out)
{
	if (!jsonr_is_object(r, 0) ||
	    !jsonr_string_is(r, jsonr_get(r, 0, "object"), "whatsapp_business_account"))
		return false;
	int entries = jsonr_get(r, 0, "entry");
	if (!jsonr_is_array(r, entries))
		return false;
	int ne = jsonr_size(r, entries);
	for (int i = 0, entry = entries + 1; i < ne; i++, entry = jsonr_after(r, entry)) {
		if (!jsonr_is_object(r, entry))
			return false;
		int changes = jsonr_get(r, entry, "changes");
		if (!jsonr_is_array(r, changes))
			return false;
		int nc = jsonr_size(r, changes);
		for (int j = 0, ch = changes + 1; j < nc; j++, ch = jsonr_after(r, ch)) {
			if (!jsonr_is_object(r, ch))
				return false;
			int field = jsonr_get(r, ch, "field");
			if (jsonr_is_string(r, field) && !jsonr_string_is(r, field, "messages"))
				continue; /* not ours to apply */
			int value = jsonr_get(r, ch, "value");
			if (!jsonr_is_object(r, value) ||
			    !wa_fparse_array(r, value, "statuses", out) ||
			    !wa_fparse_array(r, value, "messages", out))
				return false;
		}
	}
	return true;
}

/* Drops what a parse added to out past ns statuses and ni replies. */
static void wa_parsed_rollback(struct wh_parsed *out, size_t ns, size_t ni)
{
	for (size_t k = ni; k < out->ninbound; k++) {
		free(out->inbound[k].text);
		free(out->inbound[k].payload);
	}
	out->nstatuses = ns;
	out->ninbound = ni;
}

/* Parses every status and reply in the body; on error out is left as it was. */
static int wa_webhook_parse(const struct channel_account *acct, const char *body, size_t len,
                            struct wh_parsed *out, struct hr_err *err)
{
	(void)acct;
	size_t ns = out->nstatuses, ni = out->ninbound;
	if (channel_fast_json && body) {
		struct jsonr r;
		bool ok = jsonr_parse_large(&r, body, len, JSONR_TOKENS_LARGE_MAX) == 0 &&
		          wa_fparse_entries(&r, out);
		jsonr_free(&r);
		if (ok) {
			channel_fast_json_hits++;
			return 0;
		}
		wa_parsed_rollback(out, ns, ni);
	}
	json_error_t je;
	json_t *root = json_loadb(body ? body : "", len, 0, &je);
	if (!root) {
		char field[32];
		snprintf(field, sizeof field, "body[%d]", je.position);
		return hr_fail(err, HR_EINVAL, field, "%s: body is not JSON (%s)", field, je.text);
	}
	int rc = wa_parse_entries(root, out, err);
	json_decref(root);
	if (rc)
		wa_parsed_rollback(out, ns, ni);
	return rc;
}

static const char *const wa_secrets[] = {"access_token", "app_secret", "verify_token", NULL};
static const char *const wa_origins[] = {"https://graph.facebook.com", NULL};

/* the meanings of the codes above (Graph API error codes) and of
 * the ones receipts carry, for the overview's top failure codes. */
static const struct {
	long code;
	const char *text;
} wa_meanings[] = {
    {130429, "Rate limit hit: the number's throughput"},
    {131056, "Pair rate limit hit: too many messages to this recipient"},
    {80007, "Rate limit hit: the WhatsApp Business account's"},
    {4, "Rate limit hit: the app's"},
    {131048, "Spam rate limit hit"},
    {131000, "Something went wrong at the provider"},
    {131016, "Service unavailable"},
    {131026, "Message undeliverable"},
    {131047, "Re-engagement message: more than 24 hours since the customer last replied"},
    {131049, "Not delivered to keep a healthy ecosystem (marketing frequency cap)"},
    {131050, "The user stopped marketing messages"},
    {131051, "Unsupported message type"},
    {131052, "Media download error"},
    {131053, "Media upload error"},
    {132000, "Template parameter count mismatch"},
    {132001, "Template does not exist"},
    {132012, "Template parameter format mismatch"},
    {132015, "Template is paused"},
    {132016, "Template is disabled"},
    {131009, "Parameter value is not valid"},
    {100, "Invalid parameter"},
    {190, "Access token expired or invalid"},
    {368, "The account is temporarily blocked for policy violations"},
    {131031, "The account has been locked"},
};

static const char *wa_error_meaning(const char *code)
{
	char *end;
	long c = code && *code ? strtol(code, &end, 10) : 0;
	if (!code || !*code || *end)
		return NULL;
	for (size_t i = 0; i < sizeof wa_meanings / sizeof wa_meanings[0]; i++)
		if (wa_meanings[i].code == c)
			return wa_meanings[i].text;
	return NULL;
}

const struct channel_ops channel_whatsapp = {
    .name = "whatsapp",
    .error_meaning = wa_error_meaning,
    .has_receipts = true,
    .secret_fields = wa_secrets,
    .provider_origins = wa_origins,
    .account_load = wa_account_load,
    .account_free = wa_account_free,
    .normalize_recipient = wa_normalize,
    .validate = wa_validate,
    .build_send = wa_build_send,
    .parse_send = wa_parse_send,
    .webhook_handshake = wa_webhook_handshake,
    .webhook_verify = wa_webhook_verify,
    .webhook_dedupe_key = wa_webhook_dedupe_key,
    .webhook_parse = wa_webhook_parse,
};
