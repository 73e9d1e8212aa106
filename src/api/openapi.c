/*
 * openapi.c - GET /openapi.json: the OpenAPI 3.1 document of the whole API
 * (api/openapi.json, compiled in by cmake/embed_file.cmake), public like
 * any API documentation. Served from the binary's read-only data with a
 * strong ETag (a hash of the bytes, computed once), so a client or the
 * dashboard revalidates with If-None-Match and gets a bodiless 304.
 * test_openapi checks the document against the route table and the error
 * codes, so what is served here is what the server does.
 */
#include <pthread.h>
#include <string.h>

#include "api/api_int.h"
#include "core/crypto.h"
#include "obs/metrics.h"

extern const unsigned char hr_openapi_json[];
extern const size_t hr_openapi_json_len;

const unsigned char *api_openapi_doc(size_t *len)
{
	*len = hr_openapi_json_len;
	return hr_openapi_json;
}

static pthread_once_t etag_once = PTHREAD_ONCE_INIT;
static char etag[2 + 32 + 1]; /* "<first 32 hex digits of SHA-256>" */

static void etag_make(void)
{
	char hex[65];
	hr_sha256_hex((const char *)hr_openapi_json, hr_openapi_json_len, hex);
	snprintf(etag, sizeof etag, "\"%.32s\"", hex);
}

/* True when If-None-Match (a list of entity tags, or "*") names ours. A weak
 * tag (W/"...") matches too: RFC 9110 13.1.2 compares weakly here. */
static bool etag_matches(const char *inm)
{
	size_t el = strlen(etag);
	while (inm && *inm) {
		inm += strspn(inm, " \t,");
		size_t n = strcspn(inm, ",");
		size_t t = n;
		while (t && (inm[t - 1] == ' ' || inm[t - 1] == '\t'))
			t--;
		const char *tag = inm;
		if (t >= 2 && tag[0] == 'W' && tag[1] == '/') {
			tag += 2;
			t -= 2;
		}
		if ((t == 1 && tag[0] == '*') || (t == el && memcmp(tag, etag, el) == 0))
			return true;
		inm += n;
	}
	return false;
}

enum MHD_Result api_openapi(struct api_req *r)
{
	static const char *const none[] = {NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, none, &err);
	if (rc)
		return api_fail(r, rc, &err);
	pthread_once(&etag_once, etag_make);
	const char *inm =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	bool fresh = etag_matches(inm);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    fresh ? 0 : hr_openapi_json_len, fresh ? (void *)"" : (void *)hr_openapi_json,
	    MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	int status = fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
	bool ok =
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag) == MHD_YES &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES &&
	    (fresh || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                                      "application/json") == MHD_YES) &&
	    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES;
	if (!ok) {
		MHD_destroy_response(resp);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http(status);
	return ret;
}
