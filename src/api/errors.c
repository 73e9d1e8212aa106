/*
 * errors.c - the one table from Herald result codes (and the few HTTP-only
 * errors) to HTTP statuses and stable error codes. Every error body has the
 * same shape: {"error":{"code":"...","message":"...","field":"..."}}, with
 * "field" (a JSON path, query parameter or header) left out when none.
 */
#include <string.h>

#include "api/api_int.h"

static const struct api_errmap {
	int rc;
	int http;
	const char *code;
} api_errmap[] = {
    {HR_EINVAL, 422, "invalid"},     {HR_ENOTFOUND, 404, "not_found"},
    {HR_EAUTH, 401, "unauthorized"}, {HR_EFORBIDDEN, 403, "forbidden"},
    {HR_ELIMIT, 413, "too_large"},   {HR_EBUSY, 503, "busy"},
    {HR_ECONFLICT, 409, "conflict"},  {HR_EQUOTA, 429, "rate_limited"},
};

/* Errors that are not a result code: how the request was malformed at the
 * HTTP level, or a more specific code for an hr code. */
static const struct api_errkind_map {
	int http;
	const char *code;
} api_errkinds[] = {
    [APIERR_INVALID_JSON] = {400, "invalid_json"},
    [APIERR_IDEM_MISMATCH] = {422, "idempotency_mismatch"},
    [APIERR_METHOD] = {405, "method_not_allowed"},
    [APIERR_ROUTE] = {404, "not_found"},
    [APIERR_BAD_SIGNATURE] = {401, "bad_signature"},
    [APIERR_BAD_REQUEST] = {400, "bad_request"},
    [APIERR_URI_TOO_LONG] = {414, "uri_too_long"},
    [APIERR_HEAD_TOO_LARGE] = {431, "header_too_large"},
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
	return m ? m->http : 500;
}

const char *api_error_code(int rc)
{
	const struct api_errmap *m = api_errmap_find(rc);
	return m ? m->code : "internal";
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
	return api_errkinds[kind].http;
}

const char *api_errkind_code(enum api_errkind kind)
{
	return api_errkinds[kind].code;
}

enum MHD_Result api_fail_kind(struct api_req *r, enum api_errkind kind, const char *message,
                              const char *field, const char *const *extra)
{
	const struct api_errkind_map *m = &api_errkinds[kind];
	return api_respond_json(r, m->http, api_error_json(m->code, message, field), extra);
}
