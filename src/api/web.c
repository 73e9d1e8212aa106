/*
 * web.c - the dashboard's static files: GET / (index.html) and /ui/<path>,
 * from the copies compiled into the binary (web_assets.h).
 *
 * Every answer carries a strict Content-Security-Policy (scripts, styles,
 * images and connections from this origin only; no inline script or style,
 * no framing), nosniff and no-referrer. A client that accepts gzip gets the
 * copy compressed at build time. Each representation has a strong ETag (the
 * SHA-256 of the file, "-gz" for the compressed copy), and If-None-Match
 * naming it is answered 304 with no body. Cache-Control: the page and the
 * app's own files are revalidated on every load (no-cache: a new binary's
 * files are picked up at once, an unchanged file costs a 304); vendored
 * files carry their version in their name and are immutable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/web_assets.h"
#include "obs/metrics.h"

static const char web_csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static const struct {
	const char *ext, *ctype;
} web_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *web_ctype(const char *path)
{
	size_t n = strlen(path);
	for (size_t i = 0; i < sizeof web_types / sizeof *web_types; i++) {
		size_t e = strlen(web_types[i].ext);
		if (n > e && strcmp(path + n - e, web_types[i].ext) == 0)
			return web_types[i].ctype;
	}
	return "application/octet-stream";
}

static const struct web_asset *web_find(const char *path)
{
	/* The table is sorted by path (cmake/embed_web.cmake). */
	unsigned lo = 0, hi = web_nassets;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(path, web_assets[mid].path);
		if (c == 0)
			return &web_assets[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Whether Accept-Encoding admits gzip: the token present and not q=0
 * (RFC 9110 12.5.3; "*" counts too). */
static bool web_accepts_gzip(const char *ae)
{
	if (!ae)
		return false;
	const char *p = ae;
	while (*p) {
		p += strspn(p, " \t,");
		size_t n = strcspn(p, ",;");
		size_t t = n;
		while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
			t--;
		bool match = (t == 4 && strncasecmp(p, "gzip", 4) == 0) || (t == 1 && *p == '*');
		const char *q = p + n;
		bool zero = false;
		if (*q == ';') {
			const char *end = q + strcspn(q, ",");
			const char *qv = strstr(q, "q=");
			if (qv && qv < end)
				zero = strtod(qv + 2, NULL) == 0.0;
			q = end;
		}
		if (match)
			return !zero;
		p = q;
	}
	return false;
}

/* If-None-Match names etag (weak comparison, as RFC 9110 13.1.2 asks for
 * this header), or is "*". */
static bool web_etag_matches(const char *inm, const char *etag)
{
	if (!inm)
		return false;
	size_t el = strlen(etag);
	const char *p = inm;
	while (*p) {
		p += strspn(p, " \t,");
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		size_t n = strcspn(p, ", \t");
		if (n == el && memcmp(p, etag, el) == 0)
			return true;
		p += n;
	}
	return false;
}

enum MHD_Result api_web_get(struct api_req *r)
{
	const char *path = r->route == ROUTE_WEB_INDEX ? "index.html" : r->path_id;
	const struct web_asset *a = web_find(path);
	if (!a)
		return api_fail_kind(r, APIERR_ROUTE, "no such file", NULL, NULL);
	const char *ae =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
	bool gz = a->gz && web_accepts_gzip(ae);
	char etag[48];
	snprintf(etag, sizeof etag, "\"%.32s%s\"", a->sha256, gz ? "-gz" : "");
	const char *inm =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	bool not_modified = web_etag_matches(inm, etag);
	struct MHD_Response *resp =
	    not_modified ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
	                 : MHD_create_response_from_buffer(gz ? a->gzlen : a->len,
	                                                   (void *)(gz ? a->gz : a->data),
	                                                   MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	bool ok = MHD_add_response_header(resp, "ETag", etag) == MHD_YES &&
	          MHD_add_response_header(resp, "Vary", "Accept-Encoding") == MHD_YES &&
	          MHD_add_response_header(resp, "Cache-Control",
	                                  strncmp(path, "vendor/", 7) == 0
	                                      ? "public, max-age=31536000, immutable"
	                                      : "no-cache") == MHD_YES &&
	          MHD_add_response_header(resp, "Content-Security-Policy", web_csp) == MHD_YES &&
	          MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES &&
	          MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") == MHD_YES &&
	          MHD_add_response_header(resp, "X-Frame-Options", "DENY") == MHD_YES;
	if (ok && !not_modified)
		ok = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, web_ctype(path)) ==
		         MHD_YES &&
		     (!gz || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
		                                     "gzip") == MHD_YES);
	if (!ok) {
		MHD_destroy_response(resp);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	unsigned status = not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK;
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http((int)status);
	return ret;
}
