/*
 * sim_wire.c - the WhatsApp Cloud API's JSON as Meta writes it: send
 * validation with Graph's error messages, success and error bodies, status
 * objects and the webhook envelope (shapes per PROVIDERS.md and Meta's
 * "Status messages webhook reference": conversation and pricing on sent and
 * delivered, expiration_timestamp on sent only, errors[] on failed).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/crypto.h"
#include "sim/sim_int.h"

#define WA_TEXT_MAX 4096
#define WA_CB_MAX 512
#define WA_CAPTION_MAX 1024
#define WA_INTERACTIVE_BODY_MAX 1024
#define WA_BUTTON_ID_MAX 256
#define WA_BUTTON_TITLE_MAX 20
#define WA_HEADER_TEXT_MAX 60
#define WA_ERROR_HREF "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

void sim_wire_digits(const char *in, char *out, size_t n)
{
	size_t k = 0;
	for (; in && *in && k + 1 < n; in++)
		if (*in >= '0' && *in <= '9')
			out[k++] = *in;
	out[k] = '\0';
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Formats a Graph error message into msg and returns false. */
__attribute__((format(printf, 3, 4))) static bool bad(char *msg, size_t msgsz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msgsz, fmt, ap);
	va_end(ap);
	return false;
}

/* A string of 1..max characters; what names it in Graph's words. */
static bool check_str(json_t *v, const char *what, size_t max, char *msg, size_t n)
{
	if (!v)
		return bad(msg, n, "(#100) The parameter %s is required.", what);
	const char *s = json_string_value(v);
	if (!s || !*s || utf8_chars(s) > max)
		return bad(msg, n, "(#100) Param %s must be between 1 and %zu characters long",
		           what, max);
	return true;
}

static bool is_url(const char *s)
{
	size_t skip = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
	if (!skip || !s[skip] || s[skip] == '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* A media object (document, image, video) as a send or a template header
 * carries it: id or link (a URL), a caption and, for documents, a filename. */
static bool check_media(json_t *o, const char *type, const char *what, bool caption, char *msg,
                        size_t n)
{
	if (!json_is_object(o))
		return bad(msg, n, "(#100) The parameter %s is required.", what);
	const char *key;
	json_t *v;
	bool doc = strcmp(type, "document") == 0;
	json_object_foreach(o, key, v)
	{
		bool known = !strcmp(key, "id") || !strcmp(key, "link") ||
		             (caption && !strcmp(key, "caption")) ||
		             (doc && !strcmp(key, "filename"));
		if (!known)
			return bad(msg, n, "(#100) Unexpected key \"%.40s\" on param \"%s\".", key,
			           what);
		if (!json_is_string(v))
			return bad(msg, n, "(#100) Param %s['%s'] must be a string", what, key);
	}
	json_t *id = json_object_get(o, "id"), *link = json_object_get(o, "link");
	if (!id == !link)
		return bad(msg, n, "(#100) Param %s must contain either id or link", what);
	if (link && !is_url(json_string_value(link)))
		return bad(msg, n, "(#100) Param %s['link'] must be a valid URL", what);
	json_t *c = json_object_get(o, "caption");
	if (c && utf8_chars(json_string_value(c)) > WA_CAPTION_MAX)
		return bad(msg, n, "(#100) Param %s['caption'] must be at most %d characters long",
		           what, WA_CAPTION_MAX);
	json_t *f = json_object_get(o, "filename");
	if (f && !*json_string_value(f))
		return bad(msg, n, "(#100) Param %s['filename'] must not be empty", what);
	return true;
}

static bool check_text(json_t *body, char *msg, size_t n)
{
	json_t *t = json_object_get(body, "text");
	const char *b = json_string_value(json_object_get(t, "body"));
	if (!b)
		return bad(msg, n, "(#100) The parameter text['body'] is required.");
	if (!*b || utf8_chars(b) > WA_TEXT_MAX)
		return bad(msg, n,
		           "(#100) Param text['body'] must be between 1 and %d characters long",
		           WA_TEXT_MAX);
	json_t *pu = json_object_get(t, "preview_url");
	if (pu && !json_is_boolean(pu))
		return bad(msg, n, "(#100) Param text['preview_url'] must be a boolean");
	return true;
}

/* An interactive reply-button message: body text, 1..3 unique reply buttons. */
static bool check_interactive(json_t *body, struct sim_send *out, char *msg, size_t n)
{
	json_t *it = json_object_get(body, "interactive");
	if (!json_is_object(it))
		return bad(msg, n, "(#100) The parameter interactive is required.");
	const char *type = json_string_value(json_object_get(it, "type"));
	if (!type)
		return bad(msg, n, "(#100) The parameter interactive['type'] is required.");
	if (strcmp(type, "button") != 0)
		return bad(msg, n, "(#100) Param interactive['type'] must be one of {BUTTON}");
	if (!check_str(json_object_get(json_object_get(it, "body"), "text"),
	               "interactive['body']['text']", WA_INTERACTIVE_BODY_MAX, msg, n))
		return false;
	json_t *buttons = json_object_get(json_object_get(it, "action"), "buttons");
	size_t nb = json_array_size(buttons);
	if (!json_is_array(buttons))
		return bad(msg, n,
		           "(#100) The parameter interactive['action']['buttons'] is "
		           "required.");
	if (nb < 1 || nb > 3)
		return bad(msg, n,
		           "(#100) Param interactive['action']['buttons'] must contain at "
		           "least 1 and at most 3 elements");
	for (size_t i = 0; i < nb; i++) {
		json_t *b = json_array_get(buttons, i);
		char what[96];
		const char *bt = json_string_value(json_object_get(b, "type"));
		if (!bt || strcmp(bt, "reply") != 0)
			return bad(
			    msg, n,
			    "(#100) Param interactive['action']['buttons'][%zu]['type'] must be "
			    "one of {REPLY}",
			    i);
		json_t *r = json_object_get(b, "reply");
		snprintf(what, sizeof what, "interactive['action']['buttons'][%zu]['reply']['id']",
		         i);
		if (!check_str(json_object_get(r, "id"), what, WA_BUTTON_ID_MAX, msg, n))
			return false;
		snprintf(what, sizeof what,
		         "interactive['action']['buttons'][%zu]['reply']['title']", i);
		if (!check_str(json_object_get(r, "title"), what, WA_BUTTON_TITLE_MAX, msg, n))
			return false;
		for (size_t j = 0; j < i; j++) {
			json_t *o = json_object_get(json_array_get(buttons, j), "reply");
			if (json_equal(json_object_get(o, "id"), json_object_get(r, "id")))
				return bad(msg, n,
				           "(#131009) Parameter value is not valid: button "
				           "ids must be unique");
			if (json_equal(json_object_get(o, "title"), json_object_get(r, "title")))
				return bad(msg, n,
				           "(#131009) Parameter value is not valid: button "
				           "titles must be unique");
		}
	}
	out->reply_buttons = buttons;
	return true;
}

/* The one parameter of a header component: text, or a media object. */
static bool check_header_param(json_t *p, const char *base, char *msg, size_t n)
{
	char what[128];
	const char *type = json_string_value(json_object_get(p, "type"));
	snprintf(what, sizeof what, "%s['type']", base);
	if (!type)
		return bad(msg, n, "(#100) The parameter %s is required.", what);
	if (strcmp(type, "text") == 0) {
		snprintf(what, sizeof what, "%s['text']", base);
		return check_str(json_object_get(p, "text"), what, WA_HEADER_TEXT_MAX, msg, n);
	}
	if (strcmp(type, "image") && strcmp(type, "document") && strcmp(type, "video"))
		return bad(msg, n, "(#100) Param %s must be one of {TEXT, IMAGE, DOCUMENT, VIDEO}",
		           what);
	snprintf(what, sizeof what, "%s['%s']", base, type);
	return check_media(json_object_get(p, type), type, what, false, msg, n);
}

/* A button component: quick_reply with one payload, url with one text. */
static bool check_button(json_t *c, const char *base, bool seen[10], char *msg, size_t n)
{
	const char *sub = json_string_value(json_object_get(c, "sub_type"));
	if (!sub)
		return bad(msg, n, "(#100) The parameter %s['sub_type'] is required.", base);
	bool qr = strcasecmp(sub, "quick_reply") == 0;
	if (!qr && strcasecmp(sub, "url") != 0)
		return bad(msg, n, "(#100) Param %s['sub_type'] must be one of {QUICK_REPLY, URL}",
		           base);
	json_t *idx = json_object_get(c, "index");
	long k = -1;
	if (json_is_string(idx) && strlen(json_string_value(idx)) == 1 &&
	    json_string_value(idx)[0] >= '0' && json_string_value(idx)[0] <= '9')
		k = json_string_value(idx)[0] - '0';
	else if (json_is_integer(idx) && json_integer_value(idx) >= 0 &&
	         json_integer_value(idx) <= 9)
		k = (long)json_integer_value(idx);
	if (k < 0)
		return bad(msg, n, "(#100) Param %s['index'] must be a number from 0 to 9", base);
	if (seen[k])
		return bad(msg, n,
		           "(#131009) Parameter value is not valid: button index %ld is "
		           "given twice",
		           k);
	seen[k] = true;
	json_t *params = json_object_get(c, "parameters");
	if (json_array_size(params) != 1)
		return bad(msg, n, "(#100) Param %s['parameters'] must contain exactly 1 element",
		           base);
	json_t *p = json_array_get(params, 0);
	const char *want = qr ? "payload" : "text";
	const char *type = json_string_value(json_object_get(p, "type"));
	if (!type || strcmp(type, want) != 0)
		return bad(msg, n, "(#100) Param %s['parameters'][0]['type'] must be %s", base,
		           want);
	char what[128];
	snprintf(what, sizeof what, "%s['parameters'][0]['%s']", base, want);
	return check_str(json_object_get(p, want), what, 2000, msg, n);
}

/* template.components: header (one parameter), body (text parameters), buttons. */
static bool check_components(json_t *comps, char *msg, size_t n)
{
	if (!json_is_array(comps))
		return bad(msg, n, "(#100) Param template['components'] must be an array");
	bool seen[10] = {false};
	size_t i;
	json_t *c;
	json_array_foreach(comps, i, c)
	{
		char base[64], what[128];
		snprintf(base, sizeof base, "template['components'][%zu]", i);
		const char *type = json_string_value(json_object_get(c, "type"));
		if (!type)
			return bad(msg, n, "(#100) The parameter %s['type'] is required.", base);
		json_t *params = json_object_get(c, "parameters");
		bool header = strcasecmp(type, "header") == 0, body = strcasecmp(type, "body") == 0;
		if (strcasecmp(type, "button") == 0) {
			if (!check_button(c, base, seen, msg, n))
				return false;
			continue;
		}
		if (!header && !body)
			return bad(msg, n,
			           "(#100) Param %s['type'] must be one of {HEADER, BODY, "
			           "BUTTON}",
			           base);
		if (!json_is_array(params) || json_array_size(params) == 0)
			return bad(msg, n, "(#100) The parameter %s['parameters'] is required.",
			           base);
		if (header && json_array_size(params) != 1)
			return bad(msg, n,
			           "(#132000) Number of parameters does not match the expected "
			           "number of params: a header has one");
		size_t j;
		json_t *p;
		json_array_foreach(params, j, p)
		{
			snprintf(what, sizeof what, "%s['parameters'][%zu]", base, j);
			if (header) {
				if (!check_header_param(p, what, msg, n))
					return false;
				continue;
			}
			const char *pt = json_string_value(json_object_get(p, "type"));
			if (!pt)
				return bad(msg, n, "(#100) The parameter %s['type'] is required.",
				           what);
			if (strcmp(pt, "text") == 0) {
				char tw[160];
				snprintf(tw, sizeof tw, "%s['text']", what);
				if (!check_str(json_object_get(p, "text"), tw, 32768, msg, n))
					return false;
			} else if (strcmp(pt, "currency") && strcmp(pt, "date_time")) {
				return bad(msg, n,
				           "(#100) Param %s['type'] must be one of {TEXT, "
				           "CURRENCY, DATE_TIME}",
				           what);
			}
		}
	}
	return true;
}

static bool check_template(json_t *body, char *msg, size_t n)
{
	json_t *t = json_object_get(body, "template");
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name || !*name)
		return bad(msg, n, "(#100) The parameter template['name'] is required.");
	json_t *lang = json_object_get(t, "language");
	const char *code = json_string_value(json_object_get(lang, "code"));
	if (!code || !*code)
		return bad(msg, n,
		           "(#100) The parameter template['language']['code'] is required.");
	json_t *comps = json_object_get(t, "components");
	return !comps || check_components(comps, msg, n);
}

/*
 * Graph's checks, in Graph's words: "(#100) The parameter X is required." for
 * a missing field, "(#100) Param X must be ..." for a bad one. The types the
 * sim takes: text, template (with header/body/button components),
 * interactive reply buttons, document, image.
 */
static bool check_send(json_t *body, struct sim_send *out, char *msg, size_t msgsz);

bool sim_wire_check_send(json_t *body, struct sim_send *out, char *msg, size_t msgsz)
{
	if (check_send(body, out, msg, msgsz))
		return true;
	/* Every message above starts "(#<code>)": that is the error's code. */
	out->error_code = strncmp(msg, "(#", 2) == 0 ? atoi(msg + 2) : 100;
	if (out->error_code <= 0)
		out->error_code = 100;
	return false;
}

static bool check_send(json_t *body, struct sim_send *out, char *msg, size_t msgsz)
{
	memset(out, 0, sizeof *out);
	if (!json_is_object(body))
		return bad(msg, msgsz, "(#100) The parameter messaging_product is required.");
	const char *mp = json_string_value(json_object_get(body, "messaging_product"));
	if (!mp)
		return bad(msg, msgsz, "(#100) The parameter messaging_product is required.");
	if (strcmp(mp, "whatsapp") != 0)
		return bad(msg, msgsz, "(#100) Param messaging_product must be one of {WHATSAPP}");
	json_t *rt = json_object_get(body, "recipient_type");
	if (rt && (!json_is_string(rt) || (strcmp(json_string_value(rt), "individual") != 0 &&
	                                   strcmp(json_string_value(rt), "group") != 0)))
		return bad(msg, msgsz,
		           "(#100) Param recipient_type must be one of {INDIVIDUAL, GROUP}");
	out->to = json_string_value(json_object_get(body, "to"));
	char digits[HR_ADDR_MAX];
	sim_wire_digits(out->to, digits, sizeof digits);
	if (!out->to || !*out->to)
		return bad(msg, msgsz, "(#100) The parameter to is required.");
	if (strlen(digits) < 5 || strlen(out->to) >= HR_ADDR_MAX)
		return bad(msg, msgsz, "(#100) Param to must be a valid phone number");
	json_t *cb = json_object_get(body, "biz_opaque_callback_data");
	if (cb && (!json_is_string(cb) || utf8_chars(json_string_value(cb)) > WA_CB_MAX))
		return bad(msg, msgsz,
		           "(#100) Param biz_opaque_callback_data must be a string of at most %d "
		           "characters",
		           WA_CB_MAX);
	out->cb = cb && *json_string_value(cb) ? json_string_value(cb) : NULL;
	json_t *type = json_object_get(body, "type");
	out->type = type ? json_string_value(type) : "text";
	if (!out->type)
		out->type = "";
	if (strcmp(out->type, "text") == 0)
		return check_text(body, msg, msgsz);
	if (strcmp(out->type, "template") == 0)
		return check_template(body, msg, msgsz);
	if (strcmp(out->type, "interactive") == 0)
		return check_interactive(body, out, msg, msgsz);
	if (strcmp(out->type, "document") == 0 || strcmp(out->type, "image") == 0)
		return check_media(json_object_get(body, out->type), out->type, out->type, true,
		                   msg, msgsz);
	return bad(
	    msg, msgsz,
	    "(#100) Param type must be one of {TEXT, TEMPLATE, INTERACTIVE, DOCUMENT, IMAGE}");
}

/* Graph's error envelope. subcode 0 = none; details NULL = no error_data. */
char *sim_wire_error(int code, const char *message, const char *details, const char *type,
                     int subcode)
{
	char fbtrace[24];
	snprintf(fbtrace, sizeof fbtrace, "AsIm%07uQx", (unsigned)(hr_random_unit() * 1e7));
	json_t *e = json_pack("{s:s, s:s, s:i}", "message", message, "type", type, "code", code);
	if (subcode)
		json_object_set_new(e, "error_subcode", json_integer(subcode));
	if (details)
		json_object_set_new(
		    e, "error_data",
		    json_pack("{s:s, s:s}", "messaging_product", "whatsapp", "details", details));
	json_object_set_new(e, "fbtrace_id", json_string(fbtrace));
	json_t *root = json_pack("{s:o}", "error", e);
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	return s;
}

char *sim_wire_success(const char *to, const char *wamid)
{
	char wa_id[HR_ADDR_MAX];
	sim_wire_digits(to, wa_id, sizeof wa_id);
	json_t *root = json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}]}", "messaging_product",
	                         "whatsapp", "contacts", "input", to, "wa_id", wa_id, "messages",
	                         "id", wamid, "message_status", "accepted");
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	return s;
}

json_t *sim_wire_envelope(const struct sim_account *a, json_t *value)
{
	json_t *v = json_pack("{s:s, s:{s:s, s:s}}", "messaging_product", "whatsapp", "metadata",
	                      "display_phone_number", a->display_phone, "phone_number_id",
	                      a->phone_number_id);
	json_object_update(v, value);
	json_decref(value);
	return json_pack("{s:s, s:[{s:s, s:[{s:o, s:s}]}]}", "object", "whatsapp_business_account",
	                 "entry", "id", a->waba_id, "changes", "value", v, "field", "messages");
}

static const char *status_names[] = {"sent", "delivered", "read", "failed"};

json_t *sim_wire_status(const struct sim_msg *m, int status, int64_t wall_us)
{
	char ts[24], wa_id[HR_ADDR_MAX];
	int64_t secs = wall_us / 1000000;
	snprintf(ts, sizeof ts, "%lld", (long long)secs);
	sim_wire_digits(m->to, wa_id, sizeof wa_id);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", m->wamid, "status",
	                      status_names[status], "timestamp", ts, "recipient_id", wa_id);
	if (!o)
		return NULL;
	if (m->cb)
		json_object_set_new(o, "biz_opaque_callback_data", json_string(m->cb));
	if (status == SIM_ST_SENT || status == SIM_ST_DELIVERED) {
		json_t *conv = json_pack("{s:s}", "id", m->conv_id);
		if (status == SIM_ST_SENT) {
			char exp[24];
			snprintf(exp, sizeof exp, "%lld", (long long)secs + 86400);
			json_object_set_new(conv, "expiration_timestamp", json_string(exp));
		}
		json_object_set_new(conv, "origin", json_pack("{s:s}", "type", m->category));
		json_object_set_new(o, "conversation", conv);
		bool billable = strcmp(m->category, "service") != 0;
		json_object_set_new(o, "pricing",
		                    json_pack("{s:b, s:s, s:s, s:s}", "billable", billable,
		                              "pricing_model", "PMP", "type",
		                              billable ? "regular" : "free_customer_service",
		                              "category", m->category));
	}
	if (status == SIM_ST_FAILED)
		json_object_set_new(
		    o, "errors",
		    json_pack("[{s:i, s:s, s:s, s:{s:s}, s:s}]", "code", 131026, "title",
		              "Message undeliverable", "message", "Message undeliverable",
		              "error_data", "details",
		              "Message Undeliverable: the recipient may not be on WhatsApp or "
		              "uses an old version.",
		              "href", WA_ERROR_HREF));
	return o;
}

/* ---------------------------------------------------------------------------
 * Scripted recipients (sim.whatsapp.recipients)
 * ------------------------------------------------------------------------- */

/* What Graph answers for the error codes a test may script. */
struct wa_error {
	int code;
	unsigned int http;
	const char *type;
	const char *message;
	const char *details;
};

static const struct wa_error wa_errors[] = {
    {130429, 429, "OAuthException", "(#130429) Rate limit hit",
     "Cloud API message throughput has been reached."},
    {131056, 400, "OAuthException",
     "(#131056) (Business Account, Consumer Account) pair rate limit hit",
     "Message failed to send because there were too many messages sent from this phone "
     "number to the same phone number in a short period of time."},
    {131048, 400, "OAuthException", "(#131048) Spam rate limit hit",
     "Message failed to send because there are restrictions on how many messages can be "
     "sent from this phone number."},
    {80007, 400, "OAuthException", "(#80007) Rate limit issues",
     "The WhatsApp Business Account has reached its rate limit."},
    {4, 400, "OAuthException", "(#4) Application request limit reached", NULL},
    {131000, 500, "OAuthException", "(#131000) Something went wrong", "Something went wrong"},
    {131016, 503, "OAuthException", "(#131016) Service unavailable",
     "A service is temporarily unavailable."},
    {131026, 400, "OAuthException", "(#131026) Message Undeliverable.", "Message Undeliverable."},
    {131047, 400, "OAuthException", "(#131047) Re-engagement message",
     "Message failed to send because more than 24 hours have passed since the customer "
     "last replied to this number."},
    {131049, 400, "OAuthException",
     "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
     "In order to maintain a healthy ecosystem engagement, the message failed to be "
     "delivered."},
    {131051, 400, "OAuthException", "(#131051) Unsupported message type",
     "Message type is not currently supported."},
    {132000, 400, "OAuthException",
     "(#132000) Number of parameters does not match the expected number of params",
     "The number of variable parameter values does not match the number of variables "
     "defined in the template."},
    {132001, 404, "OAuthException", "(#132001) Template name does not exist in the translation",
     "The template does not exist in the specified language or has not been approved."},
    {132012, 400, "OAuthException",
     "(#132012) Parameter format does not match format in the created template",
     "Variable parameter values formatted incorrectly."},
    {132015, 400, "OAuthException", "(#132015) Template is Paused",
     "The template has been paused due to low quality."},
    {132016, 400, "OAuthException", "(#132016) Template is Disabled",
     "The template has been paused too many times due to low quality and is now "
     "permanently disabled."},
    {131009, 400, "OAuthException", "(#131009) Parameter value is not valid",
     "One or more parameter values are invalid."},
    {100, 400, "OAuthException", "(#100) Invalid parameter", NULL},
    {190, 401, "OAuthException", "Error validating access token: Session has expired", NULL},
    {368, 400, "OAuthException", "Temporarily blocked for policies violations", NULL},
    {131031, 400, "OAuthException", "(#131031) Business Account locked",
     "The WhatsApp Business Account associated with the app has been restricted or "
     "disabled."},
};

unsigned int sim_wire_error_for(int code, char *msg, size_t msgsz, const char **details,
                                const char **type)
{
	for (size_t i = 0; i < sizeof wa_errors / sizeof wa_errors[0]; i++) {
		if (wa_errors[i].code != code)
			continue;
		hr_strlcpy(msg, wa_errors[i].message, msgsz);
		*details = wa_errors[i].details;
		*type = wa_errors[i].type;
		return wa_errors[i].http;
	}
	snprintf(msg, msgsz, "(#%d) Simulated error", code);
	*details = "Scripted by sim.whatsapp.recipients.";
	*type = "OAuthException";
	return 400;
}

/*
 * One messages[] entry from the recipient, replying to wamid: a text, a
 * template quick-reply press (type "button": payload and text) or a
 * reply-button press (type "interactive", button_reply id and title).
 */
static json_t *answer_msg(const struct sim_account *a, const char *from, const char *ctx,
                          const char *id, const char *ts, const char *type, const char *v1,
                          const char *v2)
{
	json_t *m =
	    json_pack("{s:{s:s, s:s}, s:s, s:s, s:s, s:s}", "context", "from", a->display_phone,
	              "id", ctx, "from", from, "id", id, "timestamp", ts, "type", type);
	json_t *o = NULL;
	if (strcmp(type, "text") == 0)
		o = json_pack("{s:s}", "body", v1);
	else if (strcmp(type, "button") == 0)
		o = json_pack("{s:s, s:s}", "payload", v1, "text", v2);
	else
		o = json_pack("{s:s, s:{s:s, s:s}}", "type", "button_reply", "button_reply", "id",
		              v1, "title", v2);
	if (!m || !o || json_object_set_new(m, type, o) != 0) {
		json_decref(m);
		return NULL;
	}
	return m;
}

/*
 * The press a scripted recipient makes: on a template its quick reply (the
 * payload is the scripted value), on an interactive message the reply
 * button whose id is the scripted value, else the first one. Other types
 * have no buttons: nothing to press.
 */
static json_t *answer_press(struct sim *s, const struct sim_account *a, const char *from,
                            const struct sim_send *snd, const char *wamid, const char *ts,
                            const char *press)
{
	char id[128];
	if (strcmp(snd->type, "template") == 0) {
		sim_wamid_new(s, from, true, id, sizeof id);
		return answer_msg(a, from, wamid, id, ts, "button", press, press);
	}
	if (!json_array_size(snd->reply_buttons))
		return NULL;
	json_t *pick = json_object_get(json_array_get(snd->reply_buttons, 0), "reply");
	size_t i;
	json_t *b;
	json_array_foreach(snd->reply_buttons, i, b)
	{
		json_t *r = json_object_get(b, "reply");
		if (strcmp(json_string_value(json_object_get(r, "id")), press) == 0)
			pick = r;
	}
	sim_wamid_new(s, from, true, id, sizeof id);
	return answer_msg(a, from, wamid, id, ts, "interactive",
	                  json_string_value(json_object_get(pick, "id")),
	                  json_string_value(json_object_get(pick, "title")));
}

struct sim_post *sim_wire_answer_post(struct sim *s, int acct, const struct sim_send *snd,
                                      const char *wamid, const struct sim_wa_recipient *r,
                                      int64_t at_us)
{
	const struct sim_account *a = &s->accounts[acct];
	char from[HR_ADDR_MAX], ts[24], id[128];
	sim_wire_digits(snd->to, from, sizeof from);
	snprintf(ts, sizeof ts, "%lld", (long long)(at_us / 1000000));
	json_t *msgs = json_array();
	if (msgs && r->reply) {
		sim_wamid_new(s, from, true, id, sizeof id);
		json_t *m = answer_msg(a, from, wamid, id, ts, "text", r->reply, NULL);
		if (!m || json_array_append_new(msgs, m) != 0)
			goto fail;
	}
	if (msgs && r->press) {
		json_t *m = answer_press(s, a, from, snd, wamid, ts, r->press);
		if (m && json_array_append_new(msgs, m) != 0)
			goto fail;
	}
	if (!msgs || json_array_size(msgs) == 0)
		goto fail;
	int n = (int)json_array_size(msgs);
	json_t *value = json_pack("{s:[{s:{s:s}, s:s}], s:o}", "contacts", "profile", "name",
	                          "Sim User", "wa_id", from, "messages", msgs);
	msgs = NULL;
	json_t *env = value ? sim_wire_envelope(a, value) : NULL;
	char *body = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	return sim_post_new(a, acct, body, n, true);
fail:
	json_decref(msgs);
	return NULL;
}
