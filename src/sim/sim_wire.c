/*
 * sim_wire.c - the WhatsApp Cloud API's JSON as Meta writes it: send
 * validation with Graph's error messages, success and error bodies, status
 * objects and the webhook envelope (shapes per PROVIDERS.md and Meta's
 * "Status messages webhook reference": conversation and pricing on sent and
 * delivered, expiration_timestamp on sent only, errors[] on failed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "sim/sim_int.h"

#define WA_TEXT_MAX 4096
#define WA_CB_MAX 512
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

/*
 * Graph's checks, in Graph's words: "(#100) The parameter X is required." for
 * a missing field, "(#100) Param X must be ..." for a bad one.
 */
bool sim_wire_check_send(json_t *body, struct sim_send *out, char *msg, size_t msgsz)
{
	memset(out, 0, sizeof *out);
	if (!json_is_object(body)) {
		snprintf(msg, msgsz, "(#100) The parameter messaging_product is required.");
		return false;
	}
	const char *mp = json_string_value(json_object_get(body, "messaging_product"));
	if (!mp) {
		snprintf(msg, msgsz, "(#100) The parameter messaging_product is required.");
		return false;
	}
	if (strcmp(mp, "whatsapp") != 0) {
		snprintf(msg, msgsz, "(#100) Param messaging_product must be one of {WHATSAPP}");
		return false;
	}
	json_t *rt = json_object_get(body, "recipient_type");
	if (rt && (!json_is_string(rt) || (strcmp(json_string_value(rt), "individual") != 0 &&
	                                   strcmp(json_string_value(rt), "group") != 0))) {
		snprintf(msg, msgsz,
		         "(#100) Param recipient_type must be one of {INDIVIDUAL, GROUP}");
		return false;
	}
	out->to = json_string_value(json_object_get(body, "to"));
	char digits[HR_ADDR_MAX];
	sim_wire_digits(out->to, digits, sizeof digits);
	if (!out->to || !*out->to) {
		snprintf(msg, msgsz, "(#100) The parameter to is required.");
		return false;
	}
	if (strlen(digits) < 5 || strlen(out->to) >= HR_ADDR_MAX) {
		snprintf(msg, msgsz, "(#100) Param to must be a valid phone number");
		return false;
	}
	json_t *cb = json_object_get(body, "biz_opaque_callback_data");
	if (cb && (!json_is_string(cb) || utf8_chars(json_string_value(cb)) > WA_CB_MAX)) {
		snprintf(msg, msgsz,
		         "(#100) Param biz_opaque_callback_data must be a string of at most %d "
		         "characters",
		         WA_CB_MAX);
		return false;
	}
	out->cb = cb && *json_string_value(cb) ? json_string_value(cb) : NULL;
	json_t *type = json_object_get(body, "type");
	out->type = type ? json_string_value(type) : "text";
	if (!out->type || (strcmp(out->type, "text") != 0 && strcmp(out->type, "template") != 0)) {
		snprintf(msg, msgsz, "(#100) Param type must be one of {TEXT, TEMPLATE}");
		return false;
	}
	if (strcmp(out->type, "text") == 0) {
		json_t *t = json_object_get(body, "text");
		const char *b = json_string_value(json_object_get(t, "body"));
		if (!b) {
			snprintf(msg, msgsz, "(#100) The parameter text['body'] is required.");
			return false;
		}
		if (!*b || utf8_chars(b) > WA_TEXT_MAX) {
			snprintf(
			    msg, msgsz,
			    "(#100) Param text['body'] must be between 1 and %d characters long",
			    WA_TEXT_MAX);
			return false;
		}
		return true;
	}
	json_t *t = json_object_get(body, "template");
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name || !*name) {
		snprintf(msg, msgsz, "(#100) The parameter template['name'] is required.");
		return false;
	}
	json_t *lang = json_object_get(t, "language");
	const char *code = json_string_value(json_object_get(lang, "code"));
	if (!code || !*code) {
		snprintf(msg, msgsz,
		         "(#100) The parameter template['language']['code'] is required.");
		return false;
	}
	json_t *comps = json_object_get(t, "components");
	if (comps && !json_is_array(comps)) {
		snprintf(msg, msgsz, "(#100) Param template['components'] must be an array");
		return false;
	}
	return true;
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
