/*
 * test_dashboard.c - the dashboard's server side, on a real `herald serve`:
 *  - its files: served from the binary at / and /ui/..., byte for byte
 *    what web/ holds, with the strict CSP, content types, gzip for clients
 *    that take it, strong ETags and 304s, Cache-Control;
 *  - sign-in: POST /v1/session with an API key gives an HttpOnly,
 *    SameSite=Strict cookie carrying the key's tenant, unit and scopes;
 *    every /v1 route takes it like the key; mutating requests need the
 *    session's X-CSRF-Token (403 otherwise); sign-out ends it; a revoked
 *    key ends its sessions; sessions are bounded; two tenants' sessions see
 *    only their own; phone numbers masked until an audited unmask;
 *  - live events: GET /v1/events streams the tenant's campaigns, with
 *    heartbeats, a per-session cap and a global cap (429 beyond).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

static struct world W;

/* ---------------------------------------------------------------------------
 * HTTP with response headers (the harness's http() keeps only the body).
 * ------------------------------------------------------------------------- */

struct hresp {
	long status;
	char *body;
	size_t len;
	char *headers; /* every response header line, as received */
	json_t *json;
};

struct grow {
	char *p;
	size_t n;
};

static size_t grow_cb(char *d, size_t sz, size_t n, void *arg)
{
	struct grow *g = arg;
	char *p = realloc(g->p, g->n + sz * n + 1);
	if (!p)
		return 0;
	memcpy(p + g->n, d, sz * n);
	g->p = p;
	g->n += sz * n;
	g->p[g->n] = '\0';
	return sz * n;
}

static void hresp_free(struct hresp *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

/* The value of response header name ("" when absent), copied into a static
 * buffer (one at a time). */
static const char *hdr(const struct hresp *r, const char *name)
{
	static char v[1024];
	v[0] = '\0';
	size_t nl = strlen(name);
	for (const char *p = r->headers; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "") {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *s = p + nl + 1;
			while (*s == ' ')
				s++;
			size_t n = strcspn(s, "\r\n");
			if (n >= sizeof v)
				n = sizeof v - 1;
			memcpy(v, s, n);
			v[n] = '\0';
			return v;
		}
	}
	return v;
}

#define OPT(o, v) assert_int_equal(curl_easy_setopt(c, o, v), CURLE_OK)

/* method on W.api + path; headers NULL-terminated (may be NULL); body may be
 * NULL; decode: let curl ask for and undo gzip. */
static struct hresp req(const char *method, const char *path, const char *const *headers,
                        const char *body, bool decode)
{
	struct hresp r = {0};
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[1024];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	struct curl_slist *h = NULL;
	for (; headers && *headers; headers++)
		h = curl_slist_append(h, *headers);
	if (body)
		h = curl_slist_append(h, "Content-Type: application/json");
	struct grow b = {0}, hd = {0};
	OPT(CURLOPT_URL, url);
	if (!strcmp(method, "HEAD"))
		OPT(CURLOPT_NOBODY, 1L);
	else
		OPT(CURLOPT_CUSTOMREQUEST, method);
	if (body)
		OPT(CURLOPT_POSTFIELDS, body);
	OPT(CURLOPT_HTTPHEADER, h);
	OPT(CURLOPT_WRITEFUNCTION, grow_cb);
	OPT(CURLOPT_WRITEDATA, &b);
	OPT(CURLOPT_HEADERFUNCTION, grow_cb);
	OPT(CURLOPT_HEADERDATA, &hd);
	OPT(CURLOPT_TIMEOUT_MS, 20000L);
	OPT(CURLOPT_NOSIGNAL, 1L);
	if (decode)
		OPT(CURLOPT_ACCEPT_ENCODING, "gzip");
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.body = b.p ? b.p : strdup("");
	r.len = b.n;
	r.headers = hd.p ? hd.p : strdup("");
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return p;
}

static char *web_file(const char *rel, size_t *len)
{
	const char *src = getenv("HERALD_SRC");
	char path[512];
	snprintf(path, sizeof path, "%s/web/%s", src ? src : "..", rel);
	return slurp(path, len);
}

/* ---------------------------------------------------------------------------
 * Slice 1: the files.
 * ------------------------------------------------------------------------- */

static const char CSP[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static void test_files(void **state)
{
	(void)state;
	size_t ilen;
	char *index = web_file("index.html", &ilen);

	/* The page, uncompressed: exactly web/index.html. */
	struct hresp r = req("GET", "/", NULL, NULL, false);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, ilen);
	assert_memory_equal(r.body, index, ilen);
	assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
	assert_string_equal(hdr(&r, "Content-Security-Policy"), CSP);
	assert_string_equal(hdr(&r, "X-Content-Type-Options"), "nosniff");
	assert_string_equal(hdr(&r, "X-Frame-Options"), "DENY");
	assert_string_equal(hdr(&r, "Cache-Control"), "no-cache");
	assert_string_equal(hdr(&r, "Content-Encoding"), "");
	char etag[128];
	snprintf(etag, sizeof etag, "%s", hdr(&r, "ETag"));
	assert_int_equal(strlen(etag), 34); /* "32 hex digits" */
	hresp_free(&r);

	/* No inline script or style in the page: the CSP would refuse them. */
	assert_null(strstr(index, "<style"));
	assert_null(strstr(index, " style="));
	assert_null(strstr(index, "<script>"));

	/* gzip: the body decodes to the same bytes, under its own ETag. */
	r = req("GET", "/", NULL, NULL, true);
	assert_int_equal(r.status, 200);
	assert_string_equal(hdr(&r, "Content-Encoding"), "gzip");
	assert_string_equal(hdr(&r, "Vary"), "Accept-Encoding");
	assert_int_equal(r.len, ilen);
	assert_memory_equal(r.body, index, ilen);
	char gzetag[128];
	snprintf(gzetag, sizeof gzetag, "%s", hdr(&r, "ETag"));
	assert_string_not_equal(gzetag, etag);
	assert_int_equal(strncmp(gzetag, etag, 33), 0);
	hresp_free(&r);
	/* gzip;q=0 is a refusal. */
	const char *q0[] = {"Accept-Encoding: gzip;q=0, identity", NULL};
	r = req("GET", "/", q0, NULL, false);
	assert_int_equal(r.status, 200);
	assert_string_equal(hdr(&r, "Content-Encoding"), "");
	assert_int_equal(r.len, ilen);
	hresp_free(&r);

	/* If-None-Match: 304 with no body for the matching tag (also weak, also
	 * in a list); 200 for another. */
	char inm[256];
	snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
	const char *h1[] = {inm, NULL};
	r = req("GET", "/", h1, NULL, false);
	assert_int_equal(r.status, 304);
	assert_int_equal(r.len, 0);
	assert_string_equal(hdr(&r, "ETag"), etag);
	hresp_free(&r);
	snprintf(inm, sizeof inm, "If-None-Match: \"abc\", W/%s", etag);
	r = req("GET", "/", h1, NULL, false);
	assert_int_equal(r.status, 304);
	hresp_free(&r);
	const char *h2[] = {"If-None-Match: \"0123\"", NULL};
	r = req("GET", "/", h2, NULL, false);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, ilen);
	hresp_free(&r);
	/* The identity tag does not validate the gzip copy. */
	snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
	r = req("GET", "/", h1, NULL, true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	free(index);

	/* The app's modules, the stylesheet and the vendored chart library
	 * (with its licence), each with its type. */
	static const struct {
		const char *path, *ctype, *cache;
	} files[] = {
	    {"js/app.js", "text/javascript; charset=utf-8", "no-cache"},
	    {"app.css", "text/css; charset=utf-8", "no-cache"},
	    {"favicon.svg", "image/svg+xml", "no-cache"},
	    {"vendor/uPlot-1.6.32.iife.min.js", "text/javascript; charset=utf-8",
	     "public, max-age=31536000, immutable"},
	    {"vendor/uPlot-LICENSE.txt", "text/plain; charset=utf-8",
	     "public, max-age=31536000, immutable"},
	};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		size_t n;
		char *want = web_file(files[i].path, &n);
		char path[256];
		snprintf(path, sizeof path, "/ui/%s", files[i].path);
		r = req("GET", path, NULL, NULL, true);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.len, n);
		assert_memory_equal(r.body, want, n);
		assert_string_equal(hdr(&r, "Content-Type"), files[i].ctype);
		assert_string_equal(hdr(&r, "Cache-Control"), files[i].cache);
		assert_string_equal(hdr(&r, "Content-Security-Policy"), CSP);
		hresp_free(&r);
		free(want);
	}
	/* HEAD: the headers, no body. */
	r = req("HEAD", "/ui/app.css", NULL, NULL, false);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	assert_string_equal(hdr(&r, "Content-Type"), "text/css; charset=utf-8");
	hresp_free(&r);

	/* Nothing else: unknown files, paths out of web/, other methods. */
	const char *bad[] = {
	    "/ui/nope.js", "/ui/../herald.yaml", "/ui/%2e%2e/herald.yaml", "/ui/", "/ui/js/",
	    "/index.html", "/ui/vendor"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = req("GET", bad[i], NULL, NULL, false);
		if (r.status != 404)
			fail_msg("GET %s: %ld", bad[i], r.status);
		hresp_free(&r);
	}
	r = req("POST", "/", NULL, "{}", false);
	assert_int_equal(r.status, 405);
	assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
	hresp_free(&r);
}

static int setup(void **state)
{
	(void)state;
	world_init(&W, NULL, NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
