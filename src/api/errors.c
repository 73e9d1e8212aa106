/*
 * errors.c - the one table from Herald result codes (and the few HTTP-only
 * errors) to HTTP statuses and stable error codes. Every error body has the
 * same shape: {"error":{"code":"...","message":"...","field":"..."}}, with
 * "field" (a JSON path, query parameter or header) left out when none.
 */
#include <string.h>

#include "api/api_int.h"

/*
 * Every error code the API answers with, its HTTP status and what it means:
 * the one list. The tables below point into it; api_error_code_info exposes
 * it, and test_openapi checks api/openapi.json lists exactly these codes
 * with these statuses (and that no file of src/api builds an error body
 * with a code of its own). A new code is a new row here and in the document.
 */
enum api_code {
	C_INVALID,
	C_NOT_FOUND,
	C_UNAUTHORIZED,
	C_FORBIDDEN,
	C_TOO_LARGE,
	C_BUSY,
	C_CONFLICT,
	C_RATE_LIMITED,
	C_INTERNAL,
	C_INVALID_JSON,
	C_IDEM_MISMATCH,
	C_METHOD,
	C_BAD_SIGNATURE,
	C_BAD_REQUEST,
	C_URI_TOO_LONG,
	C_HEAD_TOO_LARGE,
	C_DAILY_CAP,
	C_CAMPAIGN_CAP,
	C_PLUGIN_FAILED,
	C_PLUGIN_BUSY,
	C__COUNT
};

static const struct api_error_info api_codes[C__COUNT] = {
    [C_INVALID] = {"invalid", 422, "a field, query parameter or header is not acceptable"},
    [C_NOT_FOUND] = {"not_found", 404, "no such route or object (or another tenant's)"},
    [C_UNAUTHORIZED] = {"unauthorized", 401, "no credential, or one that is not valid"},
    [C_FORBIDDEN] = {"forbidden", 403, "the credential lacks the scope or access"},
    [C_TOO_LARGE] = {"too_large", 413, "the body or a list in it is over its limit"},
    [C_BUSY] = {"busy", 503, "the server is overloaded or stopping; retry (Retry-After)"},
    [C_CONFLICT] = {"conflict", 409, "the object's state does not allow this"},
    [C_RATE_LIMITED] = {"rate_limited", 429, "over a request rate; retry after Retry-After"},
    [C_INTERNAL] = {"internal", 500, "a server error (logged with the request)"},
    [C_INVALID_JSON] = {"invalid_json", 400, "the body is not valid JSON"},
    [C_IDEM_MISMATCH] = {"idempotency_mismatch", 422,
                         "the Idempotency-Key was used with another request body"},
    [C_METHOD] = {"method_not_allowed", 405, "the route exists; the method does not (Allow)"},
    [C_BAD_SIGNATURE] = {"bad_signature", 401, "a webhook's provider signature does not verify"},
    [C_BAD_REQUEST] = {"bad_request", 400, "the request is malformed at the HTTP level"},
    [C_URI_TOO_LONG] = {"uri_too_long", 414, "the URL is over server.max_url_bytes"},
    [C_HEAD_TOO_LARGE] = {"header_too_large", 431,
                          "the request head is over its byte or field limit"},
    [C_DAILY_CAP] = {"daily_cap_reached", 429,
                     "the tenant's daily message cap is used up until 00:00 UTC"},
    [C_CAMPAIGN_CAP] = {"campaign_cap_reached", 409,
                        "the tenant has as many campaigns processing as it may"},
    [C_PLUGIN_FAILED] = {"plugin_failed", 502,
                         "the unit's plugin hook failed, timed out or answered nothing usable"},
    [C_PLUGIN_BUSY] = {"plugin_busy", 503, "the plugin's queue is full; retry"},
};

size_t api_error_code_count(void)
{
	return C__COUNT;
}

int api_error_code_info(size_t i, struct api_error_info *out)
{
	if (i >= C__COUNT)
		return HR_ENOTFOUND;
	*out = api_codes[i];
	return 0;
}

static const struct api_errmap {
	int rc;
	enum api_code code;
} api_errmap[] = {
    {HR_EINVAL, C_INVALID},       {HR_ENOTFOUND, C_NOT_FOUND}, {HR_EAUTH, C_UNAUTHORIZED},
    {HR_EFORBIDDEN, C_FORBIDDEN}, {HR_ELIMIT, C_TOO_LARGE},    {HR_EBUSY, C_BUSY},
    {HR_ECONFLICT, C_CONFLICT},   {HR_EQUOTA, C_RATE_LIMITED},
};

/* Errors that are not a result code: how the request was malformed at the
 * HTTP level, or a more specific code for an hr code. */
static const enum api_code api_errkinds[] = {
    [APIERR_INVALID_JSON] = C_INVALID_JSON,
    [APIERR_IDEM_MISMATCH] = C_IDEM_MISMATCH,
    [APIERR_METHOD] = C_METHOD,
    [APIERR_ROUTE] = C_NOT_FOUND,
    [APIERR_BAD_SIGNATURE] = C_BAD_SIGNATURE,
    [APIERR_BAD_REQUEST] = C_BAD_REQUEST,
    [APIERR_URI_TOO_LONG] = C_URI_TOO_LONG,
    [APIERR_HEAD_TOO_LARGE] = C_HEAD_TOO_LARGE,
    [APIERR_RATE_LIMITED] = C_RATE_LIMITED,
    [APIERR_DAILY_CAP] = C_DAILY_CAP,
    [APIERR_CAMPAIGN_CAP] = C_CAMPAIGN_CAP,
    [APIERR_PLUGIN_FAILED] = C_PLUGIN_FAILED,
    [APIERR_PLUGIN_BUSY] = C_PLUGIN_BUSY,
};

static const struct api_errmap *api_errmap_find(int rc)
{
	for (size_t i = 0; i < sizeof api_errmap / sizeof *api_errmap; i++)
		if (api_errmap[i].rc == rc)
			return &api_errmap[i];
	return NULL;
}

int api_http_status(int rc)
{
	const struct api_errmap *m = api_errmap_find(rc);
	return api_codes[m ? m->code : C_INTERNAL].http;
}

const char *api_error_code(int rc)
{
	const struct api_errmap *m = api_errmap_find(rc);
	return api_codes[m ? m->code : C_INTERNAL].code;
}

const char *api_clip(char *buf, size_t size, const char *s)
{
	hr_utf8_copy(buf, s ? s : "", size);
	return buf;
}

/* Messages and fields often quote what the client sent, already cut to fit
 * a fixed buffer by a printf: both go through hr_utf8_copy once more here,
 * the one place every error body is built. */
json_t *api_error_json(const char *code, const char *message, const char *field)
{
	char msg[sizeof((struct hr_err *)0)->msg + 128];
	char fld[sizeof((struct hr_err *)0)->field];
	api_clip(msg, sizeof msg, message ? message : code);
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (e && field && *field &&
	    json_object_set_new(e, "field", json_string(api_clip(fld, sizeof fld, field))) != 0) {
		json_decref(e);
		return NULL;
	}
	return e ? json_pack("{s:o}", "error", e) : NULL;
}

enum MHD_Result api_fail(struct api_req *r, int rc, const struct hr_err *err)
{
	if (rc == HR_EQUOTA)
		return api_quota_fail(r, err, 1);
	int http = api_http_status(rc);
	const char *msg = err && err->msg[0] ? err->msg : NULL;
	const char *field = err ? err->field : NULL;
	if (http == 500) {
		/* Internal details go to the log, not to the client; the query
		 * string stays out of it (it can carry a verify token). */
		hr_log(HR_LOG_ERROR, "api", "%s %.*s: %s (%s)", r->method,
		       (int)strcspn(r->raw_uri, "?"), r->raw_uri, hr_code_name(rc),
		       msg ? msg : "no detail");
		msg = "internal error";
		field = NULL;
	}
	if (!msg) {
		switch (rc) {
		case HR_ENOTFOUND:
			msg = "not found";
			break;
		case HR_EAUTH:
			msg = "unauthorized";
			break;
		case HR_EBUSY:
			msg = "busy, try again";
			break;
		default:
			msg = hr_code_name(rc);
			break;
		}
	}
	static const char *const retry[] = {"Retry-After", "1", NULL};
	return api_respond_json(r, http, api_error_json(api_error_code(rc), msg, field),
	                        rc == HR_EBUSY ? retry : NULL);
}

int api_errkind_status(enum api_errkind kind)
{
	return api_codes[api_errkinds[kind]].http;
}

const char *api_errkind_code(enum api_errkind kind)
{
	return api_codes[api_errkinds[kind]].code;
}

enum MHD_Result api_fail_kind(struct api_req *r, enum api_errkind kind, const char *message,
                              const char *field, const char *const *extra)
{
	const struct api_error_info *m = &api_codes[api_errkinds[kind]];
	return api_respond_json(r, m->http, api_error_json(m->code, message, field), extra);
}
