/*
 * twilio.c - SMS (and MMS) through Twilio Programmable Messaging: channel "sms".
 *
 * Wire formats are those in PROVIDERS.md. Confirmed against public references
 * (docs search) while writing this file:
 *  - errors 21604 "A 'To' phone number is required", 21602 "Message body is
 *    required" (Body or MediaUrl), 21211 invalid 'To', 21624 "Invalid validity
 *    period value": ValidityPeriod is an integer 1..36000 s (10 hours);
 *  - a status callback is not sent for a message's initial status (queued
 *    without a Messaging Service; accepted or scheduled with one), so the first
 *    callback is queued (Messaging Service) or sending/sent;
 *  - Twilio's published Message create parameters (its OpenAPI: To, From,
 *    MessagingServiceSid, Body, MediaUrl, StatusCallback, ValidityPeriod,
 *    ContentSid, ...) have no DLT fields. India's DLT entity and template are
 *    registered with Twilio at Sender ID pre-registration, and Twilio's error
 *    dictionary has 21900 "DltPEId is invalid" and 21901 "DltTemplateId is
 *    invalid", i.e. the API does take DltPEId and DltTemplateId. So a template's
 *    regulatory "dlt_entity_id" (or "dlt_pe_id") is sent as DltPEId and
 *    "dlt_template_id" as DltTemplateId; a key already spelled as a Twilio
 *    parameter (CamelCase, e.g. "ContentSid") is sent as given; anything else
 *    is refused by validate() naming the key.
 *
 * Default rate (registry.c): 10 messages/s. Twilio accepts API requests far
 * faster (up to the account's REST concurrency limit, then 429/20429) and
 * queues them per sender, releasing them at the sender's throughput: 1
 * segment/s for a US long code, 3 for toll-free, 10 for numbers sending
 * outside +1, 30-100+ for short codes and Messaging Services with pools. 10/s
 * is the standard per-number rate and keeps a single sender's queue short;
 * accounts set rate_limit to their real throughput.
 *
 * The adapter does no I/O: build_send makes the form-encoded request,
 * parse_send classifies the answer, webhook_* verify and parse what Twilio
 * posts (status callbacks and inbound messages share the account's URL).
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

/* Recipients are E.164 numbers. */
static int tw_normalize(const char *in, char out[HR_ADDR_MAX], struct hr_err *err)
{
	return phone_e164(in, true, out, err);
}

#define TW_API_VERSION "2010-04-01"
#define TW_BODY_MAX 1600      /* characters, Twilio's 21617 limit */
#define TW_VALIDITY_MAX 36000 /* seconds, Twilio's 21624 range */
#define TW_REG_VALUE_MAX 256
#define TW_SIG_HEADER "X-Twilio-Signature"
#define TW_IDEM_HEADER "I-Twilio-Idempotency-Token"

/* Resolved per-account state, owned by acct->priv. */
struct tw_priv {
	char *messages_url; /* {base_url}/2010-04-01/Accounts/{sid}/Messages.json */
	char *userpwd;      /* "AC...:token" or "SK...:secret" */
	char *auth_token;   /* signs webhooks */
	char *from;         /* exactly one of from and service_sid */
	char *service_sid;
	char *help_text;       /* HELP/INFO auto-reply or NULL */
	char *status_callback; /* or NULL: the account's webhook_url */
};

static void tw_wipe_free(char *s)
{
	hr_secret_free(s);
}

static void tw_priv_free(struct tw_priv *p)
{
	if (!p)
		return;
	free(p->messages_url);
	tw_wipe_free(p->userpwd);
	tw_wipe_free(p->auth_token);
	free(p->from);
	free(p->service_sid);
	free(p->help_text);
	free(p->status_callback);
	free(p);
}

/* ---------------------------------------------------------------------------
 * Form encoding (application/x-www-form-urlencoded)
 * ------------------------------------------------------------------------- */

/* Appends name=value, the value percent-encoded by curl (RFC 3986: all but
 * unreserved characters), which Twilio decodes like any form. */
static void tw_form_add(struct hr_buf *b, const char *name, const char *value)
{
	if (b->oom)
		return;
	char *enc = curl_easy_escape(NULL, value, (int)strlen(value));
	if (!enc) {
		b->oom = true;
		return;
	}
	if (b->len)
		hr_buf_put(b, "&", 1);
	hr_buf_put(b, name, strlen(name));
	hr_buf_put(b, "=", 1);
	hr_buf_put(b, enc, strlen(enc));
	curl_free(enc);
}

struct tw_param {
	char *name;
	char *value;
	size_t vlen; /* bytes: a value may hold an encoded NUL */
};

struct tw_form {
	struct tw_param *p;
	size_t n;
};

static void tw_form_free(struct tw_form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		curl_free(f->p[i].name);
		curl_free(f->p[i].value);
	}
	free(f->p);
	memset(f, 0, sizeof *f);
}

/* Decodes one name or value: '+' is a space, %XX a byte (curl decodes). */
static char *tw_unescape(const char *s, size_t n, size_t *outlen)
{
	char *tmp = malloc(n + 1);
	if (!tmp)
		return NULL;
	for (size_t i = 0; i < n; i++)
		tmp[i] = s[i] == '+' ? ' ' : s[i];
	tmp[n] = '\0';
	int ol = 0;
	char *out = curl_easy_unescape(NULL, tmp, (int)n, &ol);
	free(tmp);
	*outlen = out ? (size_t)ol : 0;
	return out;
}

/*
 * Splits a form body into its parameters, in order, duplicates kept (Twilio
 * repeats MediaUrl). Empty pieces ("a=1&&b=2") are skipped; a piece without
 * '=' is a name with an empty value. HR_EINVAL for a name holding a NUL byte.
 */
static int tw_form_parse(const char *body, size_t len, struct tw_form *out, struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	size_t cap = 0;
	const char *p = body ? body : "", *end = p + (body ? len : 0);
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if (stop > p) {
			const char *eq = memchr(p, '=', (size_t)(stop - p));
			const char *nend = eq ? eq : stop;
			if (out->n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct tw_param *np = realloc(out->p, nc * sizeof *np);
				if (!np)
					goto oom;
				out->p = np;
				cap = nc;
			}
			struct tw_param *t = &out->p[out->n];
			size_t nl = 0;
			t->name = tw_unescape(p, (size_t)(nend - p), &nl);
			t->value = eq ? tw_unescape(eq + 1, (size_t)(stop - eq - 1), &t->vlen)
			              : tw_unescape("", 0, &t->vlen);
			if (!t->name || !t->value) {
				curl_free(t->name);
				curl_free(t->value);
				goto oom;
			}
			out->n++;
			if (strlen(t->name) != nl) {
				tw_form_free(out);
				return hr_fail(err, HR_EINVAL, "body",
				               "body: a form field name holds a NUL byte");
			}
		}
		p = stop + 1;
	}
	return 0;
oom:
	tw_form_free(out);
	return hr_fail(err, HR_ENOMEM, "body", "out of memory");
}

/* The first value of a parameter, or NULL. */
static const char *tw_form_get(const struct tw_form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->p[i].name, name) == 0)
			return f->p[i].value;
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Account configuration
 * ------------------------------------------------------------------------- */

/* A Twilio SID: two given capital letters and 32 hex digits. */
static bool tw_is_sid(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, 2) != 0 || strlen(s) != 34)
		return false;
	for (s += 2; *s; s++)
		if (!isxdigit((unsigned char)*s))
			return false;
	return true;
}

/* A sender: an E.164 number, a short code (3-8 digits) or an alphanumeric
 * sender id (1-11 letters, digits and spaces, at least one letter). */
static bool tw_is_sender(const char *s)
{
	size_t n = strlen(s);
	if (s[0] == '+')
		return n >= 9 && n <= 16 && s[1] != '0' && strspn(s + 1, "0123456789") == n - 1;
	if (strspn(s, "0123456789") == n)
		return n >= 3 && n <= 8;
	bool letter = false;
	for (const char *p = s; *p; p++) {
		if (isalpha((unsigned char)*p))
			letter = true;
		else if (!isdigit((unsigned char)*p) && *p != ' ')
			return false;
	}
	return letter && n <= 11;
}

static bool tw_is_http_url(const char *s)
{
	if (!s)
		return false;
	return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

static size_t tw_utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Checks the account's SIDs, senders and URLs. */
static int tw_check_keys(struct channel_account *acct, const char *base, const char *sid,
                         const char *ksid, const char *from, const char *mssid, const char *cb,
                         const char *help, struct hr_err *err)
{
	char field[96];
	(void)base; /* checked by channel_cfg_url */
	if (!tw_is_sid(sid, "AC")) {
		channel_cfg_field(field, sizeof field, acct, "account_sid");
		return hr_fail(err, HR_EINVAL, field, "%s must be AC followed by 32 hex digits",
		               field);
	}
	if (ksid && !tw_is_sid(ksid, "SK")) {
		channel_cfg_field(field, sizeof field, acct, "api_key_sid");
		return hr_fail(err, HR_EINVAL, field, "%s must be SK followed by 32 hex digits",
		               field);
	}
	if (!from == !mssid) {
		channel_cfg_field(field, sizeof field, acct,
		                  from ? "messaging_service_sid" : "from");
		return hr_fail(err, HR_EINVAL, field,
		               "accounts[%s]: give exactly one of from and messaging_service_sid",
		               acct->id);
	}
	if (from && !tw_is_sender(from)) {
		channel_cfg_field(field, sizeof field, acct, "from");
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be an E.164 number (+...), a short code or an "
		               "alphanumeric sender id of up to 11 characters",
		               field);
	}
	if (mssid && !tw_is_sid(mssid, "MG")) {
		channel_cfg_field(field, sizeof field, acct, "messaging_service_sid");
		return hr_fail(err, HR_EINVAL, field, "%s must be MG followed by 32 hex digits",
		               field);
	}
	if (cb && !tw_is_http_url(cb)) {
		channel_cfg_field(field, sizeof field, acct, "status_callback");
		return hr_fail(err, HR_EINVAL, field, "%s must start with http:// or https://",
		               field);
	}
	if (help && tw_utf8_chars(help) > TW_BODY_MAX) {
		channel_cfg_field(field, sizeof field, acct, "help_text");
		return hr_fail(err, HR_EINVAL, field, "%s is longer than %d characters", field,
		               TW_BODY_MAX);
	}
	return 0;
}

/* Validates the account's keys and resolves its secrets into acct->priv.
 * Cleans up after itself on failure. */
static int tw_account_load(struct channel_account *acct, struct hr_err *err)
{
	const char *base, *sid, *ksid, *from, *mssid, *cb, *help;
	int rc;
	if ((rc = channel_cfg_url(acct, "base_url", NULL, &base, err)) ||
	    (rc = channel_cfg_str(acct, "account_sid", true, &sid, err)) ||
	    (rc = channel_cfg_str(acct, "api_key_sid", false, &ksid, err)) ||
	    (rc = channel_cfg_str(acct, "from", false, &from, err)) ||
	    (rc = channel_cfg_str(acct, "messaging_service_sid", false, &mssid, err)) ||
	    (rc = channel_cfg_str(acct, "status_callback", false, &cb, err)) ||
	    (rc = channel_cfg_str(acct, "help_text", false, &help, err)) ||
	    (rc = tw_check_keys(acct, base, sid, ksid, from, mssid, cb, help, err)))
		return rc;
	struct tw_priv *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	char *key_secret = NULL;
	if ((rc = channel_cfg_secret(acct, "auth_token", true, &p->auth_token, err)) ||
	    (rc = channel_cfg_secret(acct, "api_key_secret", ksid != NULL, &key_secret, err)))
		goto fail;
	if (key_secret && !ksid) {
		char field[96];
		channel_cfg_field(field, sizeof field, acct, "api_key_secret");
		rc = hr_fail(err, HR_EINVAL, field, "%s is given without api_key_sid", field);
		goto fail;
	}
	size_t blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (asprintf(&p->messages_url, "%.*s/" TW_API_VERSION "/Accounts/%s/Messages.json",
	             (int)blen, base, sid) < 0)
		p->messages_url = NULL;
	if (asprintf(&p->userpwd, "%s:%s", ksid ? ksid : sid, ksid ? key_secret : p->auth_token) <
	    0)
		p->userpwd = NULL;
	p->from = from ? strdup(from) : NULL;
	p->service_sid = mssid ? strdup(mssid) : NULL;
	p->help_text = help ? strdup(help) : NULL;
	p->status_callback = cb ? strdup(cb) : NULL;
	if (!p->messages_url || !p->userpwd || (from && !p->from) || (mssid && !p->service_sid) ||
	    (help && !p->help_text) || (cb && !p->status_callback)) {
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		goto fail;
	}
	tw_wipe_free(key_secret);
	acct->priv = p;
	return 0;
fail:
	tw_wipe_free(key_secret);
	tw_priv_free(p);
	return rc;
}

static void tw_account_free(struct channel_account *acct)
{
	tw_priv_free(acct->priv);
	acct->priv = NULL;
}

/* ---------------------------------------------------------------------------
 * Recipients and content
 * ------------------------------------------------------------------------- */

/* Twilio parameters a regulatory key may not set: Herald sets these itself. */
static const char *const tw_reserved[] = {
    "To",       "From",           "Body", "MessagingServiceSid", "StatusCallback", "ValidityPeriod",
    "MediaUrl", "ApplicationSid", NULL,
};

/* Herald's regulatory keys and the Twilio parameter each becomes. */
static const struct {
	const char *key, *param;
} tw_reg_map[] = {
    {"dlt_entity_id", "DltPEId"},
    {"dlt_pe_id", "DltPEId"},
    {"dlt_template_id", "DltTemplateId"},
};

/* The Twilio parameter for a regulatory key, or NULL if it cannot be sent. */
static const char *tw_reg_param(const char *key)
{
	for (size_t i = 0; i < sizeof tw_reg_map / sizeof tw_reg_map[0]; i++)
		if (strcmp(key, tw_reg_map[i].key) == 0)
			return tw_reg_map[i].param;
	size_t n = strlen(key);
	if (n < 2 || n > 64 || !isupper((unsigned char)key[0]))
		return NULL;
	for (const char *p = key; *p; p++)
		if (!isalnum((unsigned char)*p))
			return NULL;
	for (size_t i = 0; tw_reserved[i]; i++)
		if (strcmp(key, tw_reserved[i]) == 0)
			return NULL;
	return key;
}

/* A regulatory value as text: a string, or a non-negative integer (YAML
 * reads an unquoted 19-digit DLT id as one). false if neither. */
static bool tw_reg_value(json_t *v, char *out, size_t n)
{
	if (json_is_string(v) && *json_string_value(v) &&
	    strlen(json_string_value(v)) < TW_REG_VALUE_MAX) {
		hr_strlcpy(out, json_string_value(v), n);
		return true;
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		snprintf(out, n, "%lld", (long long)json_integer_value(v));
		return true;
	}
	return false;
}

static int tw_validate_regulatory(json_t *reg, struct hr_err *err)
{
	if (!reg || json_is_null(reg))
		return 0;
	if (!json_is_object(reg))
		return hr_fail(err, HR_EINVAL, "template.regulatory",
		               "template.regulatory must be an object");
	const char *key;
	json_t *v;
	json_object_foreach(reg, key, v)
	{
		char field[96], buf[TW_REG_VALUE_MAX];
		snprintf(field, sizeof field, "template.regulatory.%.60s", key);
		if (!tw_reg_param(key))
			return hr_fail(err, HR_EINVAL, field,
			               "%s cannot be sent to Twilio (known: dlt_entity_id, "
			               "dlt_template_id, or a Twilio parameter name such as "
			               "ContentSid)",
			               field);
		if (!tw_reg_value(v, buf, sizeof buf))
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be a non-empty string (under %d bytes) or a "
			               "non-negative integer",
			               field, TW_REG_VALUE_MAX);
	}
	return 0;
}

static int tw_validate_text(const char *field, const char *text, bool required, struct hr_err *err)
{
	if (!text) {
		if (!required)
			return 0;
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	}
	if (required && !*text)
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	if (tw_utf8_chars(text) > TW_BODY_MAX)
		return hr_fail(err, HR_EINVAL, field, "%s is longer than Twilio's %d characters",
		               field, TW_BODY_MAX);
	return 0;
}

static int tw_validate_options(json_t *opts, struct hr_err *err)
{
	if (!opts || json_is_null(opts))
		return 0;
	if (!json_is_object(opts))
		return hr_fail(err, HR_EINVAL, "options", "options must be an object");
	const char *key;
	json_t *v;
	json_object_foreach(opts, key, v)
	{
		char field[96];
		snprintf(field, sizeof field, "options.%.60s", key);
		if (strcmp(key, "validity_period") != 0)
			return hr_fail(err, HR_EINVAL, field,
			               "%s is not an sms option (validity_period)", field);
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > TW_VALIDITY_MAX)
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be an integer number of seconds, 1 to %d", field,
			               TW_VALIDITY_MAX);
	}
	return 0;
}

static int tw_validate_template(json_t *t, struct hr_err *err)
{
	if (!json_is_object(t))
		return hr_fail(err, HR_EINVAL, "template", "template must be an object");
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name || !*name)
		return hr_fail(err, HR_EINVAL, "template.name",
		               "template.name must be a non-empty string");
	if (json_object_get(t, "header"))
		return hr_fail(err, HR_EINVAL, "template.header",
		               "template.header: sms templates are text only, no header");
	if (json_object_get(t, "buttons"))
		return hr_fail(err, HR_EINVAL, "template.buttons",
		               "template.buttons: sms has no buttons");
	json_t *params = json_object_get(t, "parameters");
	if (params && !json_is_null(params)) {
		if (!json_is_array(params))
			return hr_fail(err, HR_EINVAL, "template.parameters",
			               "template.parameters must be an array of strings");
		size_t i;
		json_t *p;
		json_array_foreach(params, i, p)
		{
			if (!json_is_string(p)) {
				char field[48];
				snprintf(field, sizeof field, "template.parameters[%zu]", i);
				return hr_fail(err, HR_EINVAL, field, "%s must be a string", field);
			}
		}
	}
	return tw_validate_regulatory(json_object_get(t, "regulatory"), err);
}

/*
 * SMS carries text: plain text, rendered templates (the API renders the body;
 * the template may carry regulatory fields) and images as MMS (MediaUrl, the
 * caption as Body). Buttons, actions and every other type are refused,
 * naming the field.
 */
static int tw_validate(const json_t *content, struct hr_err *err)
{
	if (!json_is_object(content))
		return hr_fail(err, HR_EINVAL, "content", "content must be a JSON object");
	const char *type = json_string_value(json_object_get(content, "type"));
	if (!type)
		return hr_fail(err, HR_EINVAL, "type", "type is required");
	if (json_object_get(content, "buttons"))
		return hr_fail(err, HR_EINVAL, "buttons", "buttons: sms has no reply buttons");
	if (json_object_get(content, "actions"))
		return hr_fail(err, HR_EINVAL, "actions", "actions: sms has no suggested actions");
	int rc = tw_validate_options(json_object_get(content, "options"), err);
	if (rc)
		return rc;
	if (strcmp(type, "text") == 0)
		return tw_validate_text("text", json_string_value(json_object_get(content, "text")),
		                        true, err);
	if (strcmp(type, "template") == 0)
		return tw_validate_template(json_object_get(content, "template"), err);
	if (strcmp(type, "image") == 0) {
		json_t *img = json_object_get(content, "image");
		if (!json_is_object(img))
			return hr_fail(err, HR_EINVAL, "image", "image must be an object");
		const char *url = json_string_value(json_object_get(img, "url"));
		if (!url || !tw_is_http_url(url))
			return hr_fail(err, HR_EINVAL, "image.url",
			               "image.url must be an http:// or https:// URL");
		json_t *cap = json_object_get(img, "caption");
		if (cap && !json_is_string(cap))
			return hr_fail(err, HR_EINVAL, "image.caption",
			               "image.caption must be a string");
		return tw_validate_text("image.caption", json_string_value(cap), false, err);
	}
	return hr_fail(err, HR_EINVAL, "type",
	               "type '%s' is not supported on sms (text, template, image)", type);
}

/* ---------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------- */

/* Adds the template's regulatory fields (validated) under Twilio's names. */
static void tw_form_regulatory(struct hr_buf *b, json_t *reg)
{
	const char *key;
	json_t *v;
	json_object_foreach(reg, key, v)
	{
		char buf[TW_REG_VALUE_MAX];
		const char *param = tw_reg_param(key);
		if (param && tw_reg_value(v, buf, sizeof buf))
			tw_form_add(b, param, buf);
	}
}

/*
 * the commonest content, a plain text ({"type":"text","text":..}
 * with no buttons, actions, options or template; other keys are ignored, as
 * tw_validate ignores them), read with jsonr instead of a jansson tree and
 * checked as tw_validate checks it (a non-empty string of at most
 * TW_BODY_MAX characters): the text unescaped (heap, caller frees), or NULL
 * to decline: anything else, or anything tw_validate would refuse, goes the
 * jansson way, which builds or refuses it as before.
 */
static char *tw_text_fast(const struct message *m)
{
	static const char *const refuse[] = {"buttons", "actions", "options", "template", NULL};
	char *text = channel_plain_text(m->content, refuse);
	if (text && tw_utf8_chars(text) > TW_BODY_MAX) {
		free(text);
		text = NULL;
	}
	return text;
}

static int tw_build_send(const struct channel_account *acct, const struct message *m,
                         struct http_req *out, struct hr_err *err)
{
	const struct tw_priv *p = acct->priv;
	memset(out, 0, sizeof *out);
	/* A plain text read fast, or the content parsed and validated. */
	char *text = channel_fast_json ? tw_text_fast(m) : NULL;
	json_t *content = NULL;
	const char *body = NULL, *media = NULL;
	if (text) {
		channel_fast_json_hits++;
		body = text;
	} else {
		json_error_t je;
		content = m->content ? json_loads(m->content, 0, &je) : NULL;
		if (!content)
			return hr_fail(err, HR_EINVAL, "content",
			               "message content is not valid JSON");
		int rc = tw_validate(content, err);
		if (rc) {
			json_decref(content);
			return rc;
		}
		const char *type = json_string_value(json_object_get(content, "type"));
		if (strcmp(type, "text") == 0) {
			body = json_string_value(json_object_get(content, "text"));
		} else if (strcmp(type, "image") == 0) {
			json_t *img = json_object_get(content, "image");
			media = json_string_value(json_object_get(img, "url"));
			body = json_string_value(json_object_get(img, "caption"));
		} else {
			body = m->body; /* a template: the API rendered it */
			if (!body || !*body || tw_utf8_chars(body) > TW_BODY_MAX) {
				json_decref(content);
				return hr_fail(err, HR_EINVAL, "body",
				               "the rendered template body must be 1 to %d "
				               "characters",
				               TW_BODY_MAX);
			}
		}
	}
	struct hr_buf b = {0};
	tw_form_add(&b, "To", m->recipient);
	if (p->service_sid)
		tw_form_add(&b, "MessagingServiceSid", p->service_sid);
	else
		tw_form_add(&b, "From", p->from);
	if (body && *body)
		tw_form_add(&b, "Body", body);
	if (media)
		tw_form_add(&b, "MediaUrl", media);
	const char *cb = p->status_callback ? p->status_callback : acct->webhook_url;
	if (cb && *cb)
		tw_form_add(&b, "StatusCallback", cb);
	json_t *vp = json_object_get(json_object_get(content, "options"), "validity_period");
	if (json_is_integer(vp)) {
		char num[24];
		snprintf(num, sizeof num, "%lld", (long long)json_integer_value(vp));
		tw_form_add(&b, "ValidityPeriod", num);
	}
	json_t *reg = json_object_get(json_object_get(content, "template"), "regulatory");
	if (json_is_object(reg))
		tw_form_regulatory(&b, reg);
	json_decref(content); /* NULL (the text read fast) is fine */
	free(text);

	out->url = strdup(p->messages_url);
	out->userpwd = strdup(p->userpwd);
	out->headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	struct curl_slist *h = out->headers;
	if (h && (h = curl_slist_append(h, "Accept: application/json")))
		h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
	out->body = b.p;
	out->body_len = b.len;
	if (b.oom || !out->body || !out->url || !out->userpwd || !h) {
		if (b.oom) {
			free(b.p);
			out->body = NULL;
		}
		http_req_clear(out);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	return 0;
}

/* How each Twilio error code is handled (PROVIDERS.md's table and the
 * account-level codes). Unknown codes fall back to the HTTP status. */
struct tw_code {
	long code;
	enum outcome_class cls;
	bool blocked;  /* every send of the account would fail the same way */
	bool suppress; /* the recipient opted out */
	const char *text;
	/* Rate limits: all of Twilio's are on the account (or its sender
	 * number / Messaging Service queue), none on one recipient. */
	enum rate_scope scope;
};

static const struct tw_code tw_codes[] = {
    {20429, OUTCOME_RATE_LIMITED, false, false, "Too Many Requests", RATE_SCOPE_ACCOUNT},
    {14107, OUTCOME_RATE_LIMITED, false, false, "SMS send rate limit exceeded",
     RATE_SCOPE_ACCOUNT},
    {30001, OUTCOME_RATE_LIMITED, false, false, "Queue overflow", RATE_SCOPE_ACCOUNT},
    {20500, OUTCOME_TRANSIENT, false, false, "Internal server error", RATE_SCOPE_NONE},
    {20503, OUTCOME_TRANSIENT, false, false, "Service unavailable", RATE_SCOPE_NONE},
    {20003, OUTCOME_PERMANENT, true, false, "Authentication failed", RATE_SCOPE_NONE},
    {20404, OUTCOME_PERMANENT, true, false, "Resource not found (wrong account SID?)", RATE_SCOPE_NONE},
    {30002, OUTCOME_PERMANENT, true, false, "Account suspended", RATE_SCOPE_NONE},
    {21606, OUTCOME_PERMANENT, true, false, "From number is not a valid sender", RATE_SCOPE_NONE},
    {21701, OUTCOME_PERMANENT, true, false, "The Messaging Service does not exist", RATE_SCOPE_NONE},
    {21705, OUTCOME_PERMANENT, true, false, "The Messaging Service is invalid", RATE_SCOPE_NONE},
    {21211, OUTCOME_PERMANENT, false, false, "Invalid 'To' phone number", RATE_SCOPE_NONE},
    {21614, OUTCOME_PERMANENT, false, false, "'To' number is not a valid mobile number", RATE_SCOPE_NONE},
    {21408, OUTCOME_PERMANENT, false, false, "Permission to send to this region not enabled", RATE_SCOPE_NONE},
    {21610, OUTCOME_PERMANENT, false, true, "Attempt to send to unsubscribed recipient", RATE_SCOPE_NONE},
    {21612, OUTCOME_PERMANENT, false, false, "Cannot route between the From and To numbers", RATE_SCOPE_NONE},
    {21602, OUTCOME_PERMANENT, false, false, "Message body is required", RATE_SCOPE_NONE},
    {21604, OUTCOME_PERMANENT, false, false, "'To' phone number is required", RATE_SCOPE_NONE},
    {21617, OUTCOME_PERMANENT, false, false, "Message body exceeds 1600 characters", RATE_SCOPE_NONE},
    {21603, OUTCOME_PERMANENT, false, false, "'From' phone number is required", RATE_SCOPE_NONE},
    {21609, OUTCOME_PERMANENT, false, false, "Invalid 'StatusCallback'", RATE_SCOPE_NONE},
    {21624, OUTCOME_PERMANENT, false, false, "Invalid validity period value", RATE_SCOPE_NONE},
    {21900, OUTCOME_PERMANENT, false, false, "DltPEId is invalid", RATE_SCOPE_NONE},
    {21901, OUTCOME_PERMANENT, false, false, "DltTemplateId is invalid", RATE_SCOPE_NONE},
    {30003, OUTCOME_PERMANENT, false, false, "Unreachable destination handset", RATE_SCOPE_NONE},
    {30004, OUTCOME_PERMANENT, false, false, "Message blocked", RATE_SCOPE_NONE},
    {30005, OUTCOME_PERMANENT, false, false, "Unknown destination handset", RATE_SCOPE_NONE},
    {30006, OUTCOME_PERMANENT, false, false, "Landline or unreachable carrier", RATE_SCOPE_NONE},
    {30007, OUTCOME_PERMANENT, false, false, "Message filtered by the carrier", RATE_SCOPE_NONE},
    /* "Unknown error": recorded, not resent automatically (PROVIDERS.md). */
    {30008, OUTCOME_PERMANENT, false, false, "Unknown error", RATE_SCOPE_NONE},
    {30034, OUTCOME_PERMANENT, false, false, "Message from an unregistered number", RATE_SCOPE_NONE},
    {30036, OUTCOME_PERMANENT, false, false, "Validity period expired", RATE_SCOPE_NONE},
};

static const struct tw_code *tw_code_find(long code)
{
	for (size_t i = 0; i < sizeof tw_codes / sizeof tw_codes[0]; i++)
		if (tw_codes[i].code == code)
			return &tw_codes[i];
	return NULL;
}

/*
 * a success answer's "sid" read without a jansson tree
 * (core/jsonr.h). The request body is a form, built without jansson
 * already. true and out filled (OK) only when the answer is one jsonr reads
 * and the sid is there, non-empty and fits; anything else goes the jansson
 * way, which decides as before.
 */
static bool tw_sent_fast(const char *body, size_t len, struct send_outcome *out)
{
	struct jsonr r;
	size_t n = 0;
	if (jsonr_parse(&r, body, len) != 0)
		return false;
	if (!jsonr_string(&r, jsonr_get(&r, 0, "sid"), out->provider_id, sizeof out->provider_id,
	                  &n) ||
	    n == 0) {
		out->provider_id[0] = '\0';
		return false;
	}
	out->cls = OUTCOME_OK;
	channel_fast_json_hits++;
	return true;
}

/*
 * Classifies an answer to a send. A 2xx with a "sid" is accepted; a 2xx
 * without one is transient (the send's fate is unknown; the dispatcher's
 * policy decides). Otherwise Twilio's "code" decides when known (21610 also
 * asks for the recipient's suppression), else the HTTP status: 429 rate
 * limited, 5xx and 408 transient, other 4xx permanent.
 */
static void tw_parse_send(const struct channel_account *acct, long http_status, const char *body,
                          size_t len, const char *retry_after, struct send_outcome *out)
{
	(void)acct;
	memset(out, 0, sizeof *out);
	out->retry_after_us = channel_retry_after_us(retry_after);
	if (channel_network_outcome(http_status, body, len, out))
		return;
	if (http_status >= 200 && http_status < 300 && channel_fast_json &&
	    tw_sent_fast(body, len, out))
		return;
	json_error_t je;
	json_t *root = (body && len) ? json_loadb(body, len, 0, &je) : NULL;
	if (http_status >= 200 && http_status < 300) {
		const char *sid = json_string_value(json_object_get(root, "sid"));
		if (sid && *sid && strlen(sid) < sizeof out->provider_id) {
			out->cls = OUTCOME_OK;
			hr_strlcpy(out->provider_id, sid, sizeof out->provider_id);
		} else {
			out->cls = OUTCOME_TRANSIENT;
			snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
			hr_strlcpy(out->error_text, "success answer without a sid",
			           sizeof out->error_text);
		}
		json_decref(root);
		return;
	}
	json_t *jcode = json_object_get(root, "code");
	const struct tw_code *known = NULL;
	long code = 0;
	if (json_is_integer(jcode))
		code = (long)json_integer_value(jcode);
	else if (json_is_string(jcode))
		code = strtol(json_string_value(jcode), NULL, 10);
	if (code > 0) {
		snprintf(out->error_code, sizeof out->error_code, "%ld", code);
		known = tw_code_find(code);
	} else {
		snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
	}
	const char *msg = json_string_value(json_object_get(root, "message"));
	if (msg && *msg)
		hr_utf8_copy(out->error_text, msg, sizeof out->error_text);
	else if (known)
		hr_strlcpy(out->error_text, known->text, sizeof out->error_text);
	else
		channel_body_excerpt(body, len, out->error_text, sizeof out->error_text);
	if (!out->error_text[0])
		snprintf(out->error_text, sizeof out->error_text, "HTTP %ld", http_status);
	json_decref(root);

	if (known) {
		out->cls = known->cls;
		out->account_blocked = known->blocked;
		out->suppress_recipient = known->suppress;
		out->rate_scope = known->scope;
	} else {
		channel_http_outcome(out, http_status);
	}
}

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

static int tw_param_cmp(const void *x, const void *y)
{
	const struct tw_param *a = *(const struct tw_param *const *)x;
	const struct tw_param *b = *(const struct tw_param *const *)y;
	int c = strcmp(a->name, b->name);
	if (c)
		return c;
	size_t n = a->vlen < b->vlen ? a->vlen : b->vlen;
	c = memcmp(a->value, b->value, n);
	return c ? c : (a->vlen > b->vlen) - (a->vlen < b->vlen);
}

/*
 * Twilio's signature: base64(HMAC-SHA1(auth token, URL + each POST parameter
 * sorted by name, as name then value, no separators)). Repeated names are
 * ordered by value, as Twilio's own validators do. HR_ENOMEM on OOM.
 */
static int tw_signature(const char *token, const char *url, const struct tw_form *f, char out[29])
{
	const struct tw_param **sorted = f->n ? malloc(f->n * sizeof *sorted) : NULL;
	if (f->n && !sorted)
		return HR_ENOMEM;
	for (size_t i = 0; i < f->n; i++)
		sorted[i] = &f->p[i];
	if (f->n > 1)
		qsort(sorted, f->n, sizeof *sorted, tw_param_cmp);
	struct hr_buf b = {0};
	hr_buf_put(&b, url, strlen(url));
	for (size_t i = 0; i < f->n; i++) {
		hr_buf_put(&b, sorted[i]->name, strlen(sorted[i]->name));
		hr_buf_put(&b, sorted[i]->value, sorted[i]->vlen);
	}
	free(sorted);
	if (b.oom) {
		free(b.p);
		return HR_ENOMEM;
	}
	hr_hmac_sha1_b64(token, strlen(token), b.p, b.len, out);
	free(b.p);
	return 0;
}

static int tw_webhook_verify(const struct channel_account *acct, const struct wh_request *req,
                             struct hr_err *err)
{
	const struct tw_priv *p = acct->priv;
	const char *sig = req->header ? req->header(req->ctx, TW_SIG_HEADER) : NULL;
	if (!sig || !*sig)
		return hr_fail(err, HR_EAUTH, TW_SIG_HEADER, "missing %s header", TW_SIG_HEADER);
	struct tw_form f;
	int rc = tw_form_parse(req->body, req->body_len, &f, err);
	if (rc)
		return rc == HR_ENOMEM ? rc
		                       : hr_fail(err, HR_EAUTH, TW_SIG_HEADER,
		                                 "the body is not a form Twilio could have signed");
	char want[29];
	rc = tw_signature(p->auth_token, req->url ? req->url : "", &f, want);
	tw_form_free(&f);
	if (rc)
		return hr_fail(err, rc, NULL, "out of memory");
	if (!hr_consteq(sig, strlen(sig), want, strlen(want)))
		return hr_fail(err, HR_EAUTH, TW_SIG_HEADER,
		               "%s does not match (wrong auth token, altered body, or a URL "
		               "other than server.public_url + the path Twilio called)",
		               TW_SIG_HEADER);
	return 0;
}

/* Twilio's idempotency token is the same on its retries of one request. */
static void tw_webhook_dedupe_key(const struct wh_request *req, char out[128])
{
	const char *t = req->header ? req->header(req->ctx, TW_IDEM_HEADER) : NULL;
	out[0] = '\0';
	if (!t || !*t)
		return;
	if (strlen(t) < 128) {
		hr_strlcpy(out, t, 128);
		return;
	}
	char hex[65]; /* a long token is hashed whole: a prefix could collide */
	hr_sha256_hex(t, strlen(t), hex);
	snprintf(out, 128, "sha256:%s", hex);
}

/* A small table of status callback error texts (callbacks carry only the code). */
static void tw_error_text(const char *code, const char *given, char *out, size_t n)
{
	if (given && *given) {
		hr_utf8_copy(out, given, n);
		return;
	}
	char *end;
	long c = strtol(code, &end, 10);
	const struct tw_code *k = (*code && !*end) ? tw_code_find(c) : NULL;
	if (k)
		hr_strlcpy(out, k->text, n);
	else
		snprintf(out, n, "Twilio error %.24s", code);
}

/*
 * RawDlrDoneDate (on delivered/undelivered callbacks) is the carrier's
 * YYMMDDhhmm in UTC. 0 if absent or not that shape.
 */
static int64_t tw_dlr_date_us(const char *s)
{
	if (!s || strlen(s) != 10 || strspn(s, "0123456789") != 10)
		return 0;
	int v[5];
	for (int i = 0; i < 5; i++)
		v[i] = (s[2 * i] - '0') * 10 + (s[2 * i + 1] - '0');
	if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59)
		return 0;
	struct tm tm = {.tm_year = 100 + v[0],
	                .tm_mon = v[1] - 1,
	                .tm_mday = v[2],
	                .tm_hour = v[3],
	                .tm_min = v[4]};
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (int64_t)t * 1000000LL;
}

/* Copies a required parameter; names it when missing or too long. */
static int tw_need(const struct tw_form *f, const char *name, const char *alt, char *dst, size_t n,
                   struct hr_err *err)
{
	const char *v = tw_form_get(f, name);
	if ((!v || !*v) && alt)
		v = tw_form_get(f, alt);
	if (!v || !*v)
		return hr_fail(err, HR_EINVAL, name, "%s is missing", name);
	if (strlen(v) >= n)
		return hr_fail(err, HR_EINVAL, name, "%s is too long", name);
	hr_strlcpy(dst, v, n);
	return 0;
}

static int tw_parse_status(const struct tw_form *f, const char *st, struct wh_parsed *out,
                           struct hr_err *err)
{
	static const struct {
		const char *name;
		int status; /* -1: nothing to apply */
	} map[] = {
	    {"queued", -1},
	    {"accepted", -1},
	    {"scheduled", -1},
	    {"canceled", -1},
	    {"sending", MSG_SENT},
	    {"sent", MSG_SENT},
	    {"delivered", MSG_DELIVERED},
	    {"undelivered", MSG_UNDELIVERED},
	    {"failed", MSG_FAILED},
	    {"read", MSG_READ},
	};
	int status = -1;
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcasecmp(st, map[i].name) == 0)
			status = map[i].status;
	struct wh_status tmp = {.status = (enum msg_status)(status < 0 ? 0 : status)};
	int rc = tw_need(f, "MessageSid", "SmsSid", tmp.provider_id, sizeof tmp.provider_id, err);
	if (rc || status < 0)
		return rc; /* queued, accepted, ... and unknown values: nothing to apply */
	const char *code = tw_form_get(f, "ErrorCode");
	if (code && *code) {
		hr_utf8_copy(tmp.error_code, code, sizeof tmp.error_code);
		tw_error_text(tmp.error_code, tw_form_get(f, "ErrorMessage"), tmp.error_text,
		              sizeof tmp.error_text);
	}
	const char *dlr = tw_form_get(f, "RawDlrDoneDate");
	if (dlr && (tmp.provider_at = tw_dlr_date_us(dlr)) > 0)
		hr_strlcpy(tmp.provider_ts, dlr, sizeof tmp.provider_ts);
	struct wh_status *dst = wh_parsed_add_status(out);
	if (!dst)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	*dst = tmp;
	return 0;
}

/* Opt-out (+1), opt-in (-1) and help (2) keywords: the whole trimmed body,
 * any case (Twilio's defaults plus OPTOUT and REVOKE). */
static int tw_keyword(const char *body)
{
	static const struct {
		const char *word;
		int kind;
	} words[] = {
	    {"STOP", 1}, {"STOPALL", 1}, {"UNSUBSCRIBE", 1}, {"CANCEL", 1}, {"END", 1},
	    {"QUIT", 1}, {"OPTOUT", 1},  {"REVOKE", 1},      {"START", -1}, {"UNSTOP", -1},
	    {"YES", -1}, {"HELP", 2},    {"INFO", 2},
	};
	if (!body)
		return 0;
	while (isspace((unsigned char)*body))
		body++;
	size_t n = strlen(body);
	while (n > 0 && isspace((unsigned char)body[n - 1]))
		n--;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strlen(words[i].word) == n && strncasecmp(body, words[i].word, n) == 0)
			return words[i].kind;
	return 0;
}

static int tw_parse_inbound(const struct tw_priv *p, const struct tw_form *f, struct wh_parsed *out,
                            struct hr_err *err)
{
	struct wh_inbound tmp = {0};
	int rc;
	if ((rc = tw_need(f, "MessageSid", "SmsMessageSid", tmp.provider_msg_id,
	                  sizeof tmp.provider_msg_id, err)) ||
	    (rc = tw_need(f, "From", NULL, tmp.from, sizeof tmp.from, err)))
		return rc;
	char norm[HR_ADDR_MAX];
	if (tw_normalize(tmp.from, norm, NULL) == 0) /* short codes stay as given */
		hr_strlcpy(tmp.from, norm, sizeof tmp.from);
	const char *body = tw_form_get(f, "Body");
	const char *num_media = tw_form_get(f, "NumMedia");
	const char *media = tw_form_get(f, "MediaUrl0");
	bool has_media = num_media && atoi(num_media) > 0 && media && *media;
	hr_strlcpy(tmp.kind, has_media ? "media" : "text", sizeof tmp.kind);
	/* Advanced Opt-Out names the keyword class itself; else match the body. */
	const char *oot = tw_form_get(f, "OptOutType");
	int kw = 0;
	if (oot && *oot)
		kw = strcasecmp(oot, "STOP") == 0    ? 1
		     : strcasecmp(oot, "START") == 0 ? -1
		     : strcasecmp(oot, "HELP") == 0  ? 2
		                                     : 0;
	else
		kw = tw_keyword(body);
	tmp.optout = kw == 1 ? 1 : kw == -1 ? -1 : 0;
	tmp.text = body ? strdup(body) : NULL;
	tmp.payload = has_media ? strdup(media) : NULL;
	tmp.auto_reply = (kw == 2 && p->help_text) ? strdup(p->help_text) : NULL;
	struct wh_inbound *dst = NULL;
	if ((body && !tmp.text) || (has_media && !tmp.payload) ||
	    (kw == 2 && p->help_text && !tmp.auto_reply) || !(dst = wh_parsed_add_inbound(out))) {
		free(tmp.text);
		free(tmp.payload);
		free(tmp.auto_reply);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	*dst = tmp; /* context_id stays "": an SMS reply names no message */
	return 0;
}

/*
 * Parses one verified form: a status callback (MessageStatus present) or an
 * inbound message (Body present). HR_EINVAL naming the parameter otherwise;
 * on error out is left as it was.
 */
static int tw_webhook_parse(const struct channel_account *acct, const char *body, size_t len,
                            struct wh_parsed *out, struct hr_err *err)
{
	struct tw_form f;
	int rc = tw_form_parse(body, len, &f, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < f.n; i++) {
		if (strlen(f.p[i].value) != f.p[i].vlen) {
			rc = hr_fail(err, HR_EINVAL, f.p[i].name, "%.60s holds a NUL byte",
			             f.p[i].name);
			tw_form_free(&f);
			return rc;
		}
	}
	const char *st = tw_form_get(&f, "MessageStatus");
	if (st && *st)
		rc = tw_parse_status(&f, st, out, err);
	else if (tw_form_get(&f, "Body"))
		rc = tw_parse_inbound(acct->priv, &f, out, err);
	else
		rc = hr_fail(err, HR_EINVAL, "MessageStatus",
		             "neither MessageStatus (a status callback) nor Body (an inbound "
		             "message) is present");
	tw_form_free(&f);
	return rc;
}

static const char *const tw_secrets[] = {"auth_token", "api_key_secret", NULL};
static const char *const tw_origins[] = {"https://api.twilio.com", NULL};

/* Twilio reads the answer to every webhook (status callbacks and inbound
 * messages alike) as TwiML instructions, and logs error 12300 on the
 * account for any other content type. The empty <Response/> says "nothing
 * to do": replies such as HELP's go out as ordinary sends. */
static const struct wh_answer tw_webhook_answer = {
    .content_type = "text/xml",
    .body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
};

/* ---------------------------------------------------------------------------
 * Status lookup (the reconciler asks about messages with no receipt)
 * ------------------------------------------------------------------------- */

/* GET {base}/2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json. A Message
 * SID is letters and digits (SM..., MM...): anything else is refused, so the
 * id can never reshape the URL. */
static int tw_build_lookup(const struct channel_account *acct, const char *provider_id,
                           struct http_req *out, struct hr_err *err)
{
	const struct tw_priv *p = acct->priv;
	memset(out, 0, sizeof *out);
	size_t n = provider_id ? strlen(provider_id) : 0;
	if (n == 0 || n > 64)
		return hr_fail(err, HR_EINVAL, "provider_id", "no Message SID to look up");
	for (size_t i = 0; i < n; i++)
		if (!((provider_id[i] >= 'A' && provider_id[i] <= 'Z') ||
		      (provider_id[i] >= 'a' && provider_id[i] <= 'z') ||
		      (provider_id[i] >= '0' && provider_id[i] <= '9')))
			return hr_fail(err, HR_EINVAL, "provider_id",
			               "a Message SID is letters and digits only");
	size_t base = strlen(p->messages_url);
	if (base < 5 || strcmp(p->messages_url + base - 5, ".json") != 0)
		return hr_fail(err, HR_EINTERNAL, "base_url", "unexpected Messages URL");
	struct hr_buf b = {0};
	hr_buf_put(&b, p->messages_url, base - 5);
	hr_buf_printf(&b, "/%s.json", provider_id);
	out->url = b.p;
	out->userpwd = strdup(p->userpwd);
	if (b.oom || !out->url || !out->userpwd) {
		http_req_clear(out);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	return 0;
}

static void tw_parse_lookup(const struct channel_account *acct, long http_status,
                            const char *body, size_t len, struct stale_answer *out)
{
	(void)acct;
	out->answered = false;
	if (http_status != 200) {
		char ex[160];
		channel_body_excerpt(body ? body : "", body ? len : 0, ex, sizeof ex);
		snprintf(out->lookup_error, sizeof out->lookup_error, "HTTP %ld: %s", http_status,
		         http_status ? ex : "no answer");
		return;
	}
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je);
	const char *st = json_string_value(json_object_get(root, "status"));
	static const struct {
		const char *name;
		enum msg_status status;
	} map[] = {
	    {"queued", MSG_QUEUED},       {"accepted", MSG_QUEUED},
	    {"scheduled", MSG_QUEUED},    {"sending", MSG_SENT},
	    {"sent", MSG_SENT},           {"delivered", MSG_DELIVERED},
	    {"undelivered", MSG_UNDELIVERED}, {"failed", MSG_FAILED},
	    {"read", MSG_READ},           {"canceled", MSG_FAILED},
	};
	for (size_t i = 0; st && i < sizeof map / sizeof map[0]; i++)
		if (strcasecmp(st, map[i].name) == 0) {
			out->answered = true;
			out->status = map[i].status;
		}
	if (!out->answered) {
		snprintf(out->lookup_error, sizeof out->lookup_error, "no known status in the answer");
		json_decref(root);
		return;
	}
	hr_utf8_copy(out->provider_status, st, sizeof out->provider_status);
	json_t *code = json_object_get(root, "error_code");
	if (json_is_integer(code))
		snprintf(out->error_code, sizeof out->error_code, "%lld",
		         (long long)json_integer_value(code));
	else if (json_is_string(code))
		hr_utf8_copy(out->error_code, json_string_value(code), sizeof out->error_code);
	const char *msg = json_string_value(json_object_get(root, "error_message"));
	if (out->error_code[0])
		tw_error_text(out->error_code, msg, out->error_text, sizeof out->error_text);
	json_decref(root);
}

/* a code's meaning from the table above. */
static const char *tw_error_meaning(const char *code)
{
	char *end;
	long c = code && *code ? strtol(code, &end, 10) : 0;
	if (!code || !*code || *end)
		return NULL;
	const struct tw_code *k = tw_code_find(c);
	return k ? k->text : NULL;
}

const struct channel_ops channel_sms = {
    .name = "sms",
    .error_meaning = tw_error_meaning,
    .has_receipts = true,
    .secret_fields = tw_secrets,
    .provider_origins = tw_origins,
    .account_load = tw_account_load,
    .account_free = tw_account_free,
    .normalize_recipient = tw_normalize,
    .validate = tw_validate,
    .build_send = tw_build_send,
    .parse_send = tw_parse_send,
    .webhook_handshake = NULL,
    .webhook_verify = tw_webhook_verify,
    .webhook_dedupe_key = tw_webhook_dedupe_key,
    .webhook_parse = tw_webhook_parse,
    .webhook_answer = &tw_webhook_answer,
    .build_lookup = tw_build_lookup,
    .parse_lookup = tw_parse_lookup,
};
