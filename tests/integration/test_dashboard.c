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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

static struct world W;

/* ---------------------------------------------------------------------------
 * HTTP with response headers (the harness's http() keeps only the body).
 * ------------------------------------------------------------------------- */

/* method on W.api + path; headers NULL-terminated (may be NULL); body may be
 * NULL (with one, Content-Type: application/json is sent after headers);
 * decode: let curl ask for and undo gzip. */
static struct hresp req(const char *method, const char *path, const char *const *headers,
                        const char *body, bool decode)
{
	const char *h[16];
	size_t n = 0;
	for (; headers && *headers; headers++) {
		assert_true(n < 14);
		h[n++] = *headers;
	}
	if (body)
		h[n++] = "Content-Type: application/json";
	h[n] = NULL;
	return http_h(&W, method, path, h, body, decode, NULL);
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
	assert_string_equal(hresp_header(&r, "Content-Type"), "text/html; charset=utf-8");
	assert_string_equal(hresp_header(&r, "Content-Security-Policy"), CSP);
	assert_string_equal(hresp_header(&r, "X-Content-Type-Options"), "nosniff");
	assert_string_equal(hresp_header(&r, "X-Frame-Options"), "DENY");
	assert_string_equal(hresp_header(&r, "Cache-Control"), "no-cache");
	assert_string_equal(hresp_header(&r, "Content-Encoding"), "");
	char etag[128];
	snprintf(etag, sizeof etag, "%s", hresp_header(&r, "ETag"));
	assert_int_equal(strlen(etag), 34); /* "32 hex digits" */
	hresp_free(&r);

	/* No inline script or style in the page: the CSP would refuse them. */
	assert_null(strstr(index, "<style"));
	assert_null(strstr(index, " style="));
	assert_null(strstr(index, "<script>"));

	/* gzip: the body decodes to the same bytes, under its own ETag. */
	r = req("GET", "/", NULL, NULL, true);
	assert_int_equal(r.status, 200);
	assert_string_equal(hresp_header(&r, "Content-Encoding"), "gzip");
	assert_string_equal(hresp_header(&r, "Vary"), "Accept-Encoding");
	assert_int_equal(r.len, ilen);
	assert_memory_equal(r.body, index, ilen);
	char gzetag[128];
	snprintf(gzetag, sizeof gzetag, "%s", hresp_header(&r, "ETag"));
	assert_string_not_equal(gzetag, etag);
	assert_int_equal(strncmp(gzetag, etag, 33), 0);
	hresp_free(&r);
	/* gzip;q=0 is a refusal. */
	const char *q0[] = {"Accept-Encoding: gzip;q=0, identity", NULL};
	r = req("GET", "/", q0, NULL, false);
	assert_int_equal(r.status, 200);
	assert_string_equal(hresp_header(&r, "Content-Encoding"), "");
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
	assert_string_equal(hresp_header(&r, "ETag"), etag);
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
		assert_string_equal(hresp_header(&r, "Content-Type"), files[i].ctype);
		assert_string_equal(hresp_header(&r, "Cache-Control"), files[i].cache);
		assert_string_equal(hresp_header(&r, "Content-Security-Policy"), CSP);
		hresp_free(&r);
		free(want);
	}
	/* HEAD: the headers, no body. */
	r = req("HEAD", "/ui/app.css", NULL, NULL, false);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	assert_string_equal(hresp_header(&r, "Content-Type"), "text/css; charset=utf-8");
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
	/* The files take no query: one is refused naming it, like on /v1. */
	const char *queried[] = {"/?x=1", "/ui/app.css?x=1", "/v1/session?x=1"};
	for (size_t i = 0; i < sizeof queried / sizeof *queried; i++) {
		r = req("GET", queried[i], NULL, NULL, false);
		if (r.status != 422 || !r.body || !strstr(r.body, "\"field\":\"x\""))
			fail_msg("GET %s: %ld %s", queried[i], r.status, r.body ? r.body : "");
		hresp_free(&r);
	}
	r = req("POST", "/", NULL, "{}", false);
	assert_int_equal(r.status, 405);
	assert_string_equal(hresp_header(&r, "Allow"), "GET, HEAD");
	hresp_free(&r);
}

/* ---------------------------------------------------------------------------
 * Slice 2: sign-in, CSRF, masking, sign-out.
 * ------------------------------------------------------------------------- */

#define ACME_KEY "hk_test_0123456789abcdef"
#define OTHER_KEY "hk_other_0123456789abcdef"

struct sess {
	char cookie[128]; /* "Cookie: herald_session=..." */
	char csrf[128];   /* "X-CSRF-Token: ..." */
	char tok[80];
};

static const char *errfield(const struct hresp *r)
{
	const char *f =
	    json_string_value(json_object_get(json_object_get(r->json, "error"), "field"));
	return f ? f : "";
}

/* Signs in with key; 201 asserted, the cookie and token kept. */
static void signin(const char *key, struct sess *s)
{
	char body[256];
	snprintf(body, sizeof body, "{\"api_key\":\"%s\"}", key);
	struct hresp r = req("POST", "/v1/session", NULL, body, false);
	if (r.status != 201)
		fail_msg("sign-in with %s: %ld %s", key, r.status, r.body);
	const char *sc = hresp_header(&r, "Set-Cookie");
	assert_int_equal(strncmp(sc, "herald_session=", 15), 0);
	size_t n = strcspn(sc + 15, ";");
	assert_int_equal(n, 64);
	snprintf(s->tok, sizeof s->tok, "%.*s", (int)n, sc + 15);
	snprintf(s->cookie, sizeof s->cookie, "Cookie: herald_session=%s", s->tok);
	const char *csrf = json_string_value(json_object_get(r.json, "csrf_token"));
	assert_non_null(csrf);
	assert_int_equal(strlen(csrf), 64);
	snprintf(s->csrf, sizeof s->csrf, "X-CSRF-Token: %s", csrf);
	hresp_free(&r);
}

/* A request with the session's cookie, and its CSRF token when csrf. */
static struct hresp sreq(const struct sess *s, const char *method, const char *path,
                         const char *body, bool csrf)
{
	const char *h[] = {s->cookie, csrf ? s->csrf : NULL, NULL};
	return req(method, path, h, body, false);
}

static void send_one(const struct sess *s, const char *to, char id[64])
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"to\":\"%s\",\"text\":\"hi\"}",
	         to);
	struct hresp r = sreq(s, "POST", "/v1/messages", body, true);
	if (r.status != 202)
		fail_msg("send: %ld %s", r.status, r.body);
	snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "id")));
	hresp_free(&r);
}

static void test_signin(void **state)
{
	(void)state;
	/* Sign-in takes JSON only (a cross-site form cannot send it). */
	const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct hresp r = req("POST", "/v1/session", form, "api_key=" ACME_KEY, false);
	assert_int_equal(r.status, 422);
	assert_string_equal(errfield(&r), "Content-Type");
	assert_string_equal(hresp_header(&r, "Set-Cookie"), "");
	hresp_free(&r);
	static const struct {
		const char *body, *field;
		long status;
	} bad[] = {
	    {"{\"api_key\":\"hk_nope_0123456789abcdef\"}", "api_key", 401},
	    {"{\"api_key\":\"\"}", "api_key", 401},
	    {"{\"api_key\":12}", "api_key", 422},
	    {"{}", "api_key", 422},
	    {"{\"api_key\":\"" ACME_KEY "\",\"tenant\":\"other\"}", "tenant", 422},
	    {"{\"api_key\":\"a.b.c\"}", "api_key", 422},
	    {"[]", "", 422},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = req("POST", "/v1/session", NULL, bad[i].body, false);
		if (r.status != bad[i].status || strcmp(errfield(&r), bad[i].field) != 0)
			fail_msg("sign-in %s: %ld %s", bad[i].body, r.status, r.body);
		assert_string_equal(hresp_header(&r, "Set-Cookie"), "");
		hresp_free(&r);
	}

	r = req("POST", "/v1/session", NULL, "{\"api_key\":\"" ACME_KEY "\"}", false);
	assert_int_equal(r.status, 201);
	const char *sc = hresp_header(&r, "Set-Cookie");
	assert_non_null(strstr(sc, "; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"));
	assert_null(strstr(sc, "Secure")); /* public_url is http */
	assert_string_equal(hresp_header(&r, "Cache-Control"), "no-store");
	assert_string_equal(json_string_value(json_object_get(r.json, "tenant")), "acme");
	assert_true(json_is_null(json_object_get(r.json, "unit")));
	assert_int_equal(json_array_size(json_object_get(r.json, "scopes")), 9);
	assert_true(json_is_true(json_object_get(r.json, "masked")));
	hresp_free(&r);

	struct sess s;
	signin(ACME_KEY, &s);
	/* Reads need the cookie only. */
	r = sreq(&s, "GET", "/v1/messages", NULL, false);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	r = req("GET", "/v1/messages", NULL, NULL, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
	/* A change needs the session's own token: none, another, a prefix. */
	const char *send = "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\","
	                   "\"to\":\"+447911123456\",\"text\":\"hi\"}";
	r = sreq(&s, "POST", "/v1/messages", send, false);
	assert_int_equal(r.status, 403);
	assert_string_equal(errfield(&r), "X-CSRF-Token");
	hresp_free(&r);
	struct sess s2;
	signin(ACME_KEY, &s2);
	const char *cross[] = {s.cookie, s2.csrf, NULL};
	r = req("POST", "/v1/messages", cross, send, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	char half[128];
	snprintf(half, sizeof half, "%.*s", (int)strlen(s.csrf) - 1, s.csrf);
	const char *pre[] = {s.cookie, half, NULL};
	r = req("POST", "/v1/messages", pre, send, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	char id[64];
	send_one(&s, "+447911123456", id);

	/* GET /v1/session: the same principal and token. */
	r = sreq(&s, "GET", "/v1/session", NULL, false);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "csrf_token")),
	                    s.csrf + strlen("X-CSRF-Token: "));
	hresp_free(&r);

	/* Masked: the number is hidden in the session's answers, not the key's. */
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	const char *bearer[] = {"Authorization: Bearer " ACME_KEY, NULL};
	r = req("GET", path, bearer, NULL, false);
	char full[64];
	snprintf(full, sizeof full, "%s", json_string_value(json_object_get(r.json, "to")));
	assert_non_null(strstr(full, "447911123456"));
	hresp_free(&r);
	/* The prefix (country and operator) and the last two digits stay. */
	char want[128];
	size_t keep = full[0] == '+' ? 5 : 4, o = 0;
	memcpy(want, full, keep);
	o = keep;
	for (size_t k = keep; k + 2 < strlen(full); k++, o += 3)
		memcpy(want + o, "•", 3);
	snprintf(want + o, sizeof want - o, "%s", full + strlen(full) - 2);
	r = sreq(&s, "GET", path, NULL, false);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "to")), want);
	assert_null(strstr(r.body, "7911123456"));
	hresp_free(&r);
	r = sreq(&s, "GET", "/v1/messages?limit=100", NULL, false);
	assert_null(strstr(r.body, "7911123456"));
	hresp_free(&r);

	/* Unmask: a reason is required, the change is audited, then numbers show. */
	r = sreq(&s, "POST", "/v1/session/unmask", "{}", true);
	assert_int_equal(r.status, 422);
	assert_string_equal(errfield(&r), "reason");
	hresp_free(&r);
	r = sreq(&s, "POST", "/v1/session/unmask", "{\"reason\":\"ticket 4711\"}", false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	r = req("POST", "/v1/session/unmask", bearer, "{\"reason\":\"ticket 4711\"}", false);
	assert_int_equal(r.status, 422); /* a key sees numbers anyway */
	assert_string_equal(errfield(&r), "session");
	hresp_free(&r);
	r = sreq(&s, "POST", "/v1/session/unmask", "{\"reason\":\"ticket 4711\"}", true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	r = sreq(&s, "GET", path, NULL, false);
	assert_string_equal(json_string_value(json_object_get(r.json, "to")), full);
	hresp_free(&r);
	r = sreq(&s2, "GET", path, NULL, false); /* the other session stays masked */
	assert_null(strstr(r.body, "7911123456"));
	hresp_free(&r);
	r = req("GET", "/v1/audit", bearer, NULL, false);
	assert_int_equal(r.status, 200);
	size_t i, unmasks = 0;
	json_t *a;
	json_array_foreach(json_object_get(r.json, "entries"), i, a)
	{
		if (strcmp(json_string_value(json_object_get(a, "action")), "session.unmask") != 0)
			continue;
		unmasks++;
		json_t *after = json_object_get(a, "after");
		if (json_is_string(after))
			assert_non_null(strstr(json_string_value(after), "ticket 4711"));
		else
			assert_string_equal(json_string_value(json_object_get(after, "reason")),
			                    "ticket 4711");
	}
	assert_int_equal(unmasks, 1);
	hresp_free(&r);

	/* The cookie twice is refused (which one was meant is a guess). */
	char two[300];
	snprintf(two, sizeof two, "Cookie: herald_session=%s; herald_session=%s", s.tok, s2.tok);
	const char *h2[] = {two, NULL};
	r = req("GET", "/v1/messages", h2, NULL, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);

	/* Sign-out: needs the token; afterwards the cookie is nothing. */
	r = sreq(&s, "DELETE", "/v1/session", NULL, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	r = sreq(&s, "DELETE", "/v1/session", NULL, true);
	assert_int_equal(r.status, 204);
	assert_non_null(strstr(hresp_header(&r, "Set-Cookie"), "herald_session=; "));
	assert_non_null(strstr(hresp_header(&r, "Set-Cookie"), "Max-Age=0"));
	hresp_free(&r);
	r = sreq(&s, "GET", "/v1/messages", NULL, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
	r = sreq(&s, "GET", "/v1/session", NULL, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
	r = sreq(&s2, "GET", "/v1/session", NULL, false); /* the other one lives on */
	assert_int_equal(r.status, 200);
	hresp_free(&r);
}

/* Two tenants, and two units of one tenant: a session holds its key's
 * tenant, unit and scopes, nothing more. */
static char unit_key_cards[96], unit_key_loans[96], reader_key[96], reader_prefix[32];

static void make_key(const char *body, char out[96], char prefix[32])
{
	const char *bearer[] = {"Authorization: Bearer " ACME_KEY, NULL};
	struct hresp r = req("POST", "/v1/tenants/acme/keys", bearer, body, false);
	if (r.status != 201)
		fail_msg("key %s: %ld %s", body, r.status, r.body);
	snprintf(out, 96, "%s", json_string_value(json_object_get(r.json, "key")));
	if (prefix)
		snprintf(prefix, 32, "%s", json_string_value(json_object_get(r.json, "prefix")));
	hresp_free(&r);
}

static void make_keys(void)
{
	if (unit_key_cards[0])
		return;
	const char *bearer[] = {"Authorization: Bearer " ACME_KEY, NULL};
	const char *units[] = {"{\"id\":\"cards\",\"name\":\"Cards\"}",
	                       "{\"id\":\"loans\",\"name\":\"Loans\"}"};
	for (int i = 0; i < 2; i++) {
		struct hresp r = req("POST", "/v1/tenants/acme/units", bearer, units[i], false);
		if (r.status != 201)
			fail_msg("unit: %ld %s", r.status, r.body);
		hresp_free(&r);
	}
	make_key("{\"scopes\":[\"campaigns:read\",\"campaigns:write\",\"messages:read\"],"
	         "\"unit\":\"cards\"}",
	         unit_key_cards, NULL);
	make_key("{\"scopes\":[\"campaigns:read\",\"campaigns:write\",\"messages:read\"],"
	         "\"unit\":\"loans\"}",
	         unit_key_loans, NULL);
	make_key("{\"scopes\":[\"messages:read\"]}", reader_key, reader_prefix);
}

static void make_campaign(const struct sess *s, const char *name, int rows, const char *prefix,
                          bool start, char id[64])
{
	json_t *rs = json_array();
	for (int i = 0; i < rows; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "%s%04d", prefix, i);
		json_array_append_new(rs, json_pack("{s:s}", "to", phone));
	}
	json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", name, "channel", "whatsapp",
	                      "account", "acme-wa", "text", "hello", "rows", rs);
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	struct hresp r = sreq(s, "POST", "/v1/batches", body, true);
	free(body);
	if (r.status != 201)
		fail_msg("campaign %s: %ld %s", name, r.status, r.body);
	snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "id")));
	/* JSON rows start at once; an upload waits for its start. */
	bool waiting = strcmp(json_string_value(json_object_get(r.json, "status")), "processing");
	hresp_free(&r);
	if (start && waiting) {
		char path[128];
		snprintf(path, sizeof path, "/v1/batches/%s/start", id);
		r = sreq(s, "POST", path, "", true);
		if (r.status != 200)
			fail_msg("start %s: %ld %s", name, r.status, r.body);
		hresp_free(&r);
	}
}

static void test_isolation(void **state)
{
	(void)state;
	make_keys();
	struct sess acme, other, cards, loans, reader;
	signin(ACME_KEY, &acme);
	signin(OTHER_KEY, &other);
	signin(unit_key_cards, &cards);
	signin(unit_key_loans, &loans);
	signin(reader_key, &reader);
	char id[64];
	send_one(&acme, "+447911555001", id);
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct hresp r = sreq(&other, "GET", path, NULL, false);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	r = sreq(&other, "GET", "/v1/messages?limit=100", NULL, false);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, id));
	hresp_free(&r);
	/* Another tenant's session token is no use on acme's session. */
	const char *cross[] = {acme.cookie, other.csrf, NULL};
	r = req("POST", "/v1/session/unmask", cross, "{\"reason\":\"xyz\"}", false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);

	/* Units: each session sees its unit's campaign only. */
	char bc[64], bl[64];
	make_campaign(&cards, "cards-only", 3, "+44740060", false, bc);
	make_campaign(&loans, "loans-only", 3, "+44740061", false, bl);
	r = sreq(&cards, "GET", "/v1/batches", NULL, false);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, bc));
	assert_null(strstr(r.body, bl));
	hresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s", bl);
	r = sreq(&cards, "GET", path, NULL, false);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", bl);
	r = sreq(&cards, "POST", path, "{}", true);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	r = sreq(&other, "GET", "/v1/batches", NULL, false);
	assert_null(strstr(r.body, bc));
	assert_null(strstr(r.body, bl));
	hresp_free(&r);
	/* Scopes: a reader's session cannot send, even with its token. */
	r = sreq(&reader, "POST", "/v1/messages",
	         "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"to\":\"+447911555002\","
	         "\"text\":\"hi\"}",
	         true);
	assert_int_equal(r.status, 403);
	assert_string_equal(errfield(&r), "scope");
	hresp_free(&r);
	r = sreq(&reader, "GET", "/v1/session", NULL, false);
	assert_int_equal(json_array_size(json_object_get(r.json, "scopes")), 1);
	hresp_free(&r);
	r = sreq(&cards, "GET", "/v1/session", NULL, false);
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "cards");
	hresp_free(&r);
	/* A unit session cannot reach tenant-wide routes. */
	r = sreq(&cards, "GET", "/v1/suppressions", NULL, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	/* Exports wait for an unmask: a campaign's, and a message search's. */
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", bc);
	r = sreq(&cards, "GET", path, NULL, false);
	assert_int_equal(r.status, 403);
	assert_string_equal(errfield(&r), "unmask");
	hresp_free(&r);
	r = sreq(&cards, "GET", "/v1/messages/export.csv", NULL, false);
	assert_int_equal(r.status, 403);
	assert_string_equal(errfield(&r), "unmask");
	hresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/errors?format=csv", bc);
	r = sreq(&cards, "GET", path, NULL, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", bc);
	r = sreq(&cards, "POST", "/v1/session/unmask", "{\"reason\":\"export for audit\"}", true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	r = sreq(&cards, "GET", path, NULL, false);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	r = sreq(&cards, "GET", "/v1/messages/export.csv", NULL, false);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
}

static bool session_refused(struct world *w, void *arg)
{
	(void)w;
	struct hresp r = sreq(arg, "GET", "/v1/messages", NULL, false);
	bool refused = r.status == 401;
	hresp_free(&r);
	return refused;
}

/* A revoked key ends its sessions (within the key cache's TTL, 200 ms here). */
static void test_revoked_key(void **state)
{
	(void)state;
	char key[96], prefix[32];
	make_key("{\"scopes\":[\"messages:read\"]}", key, prefix);
	struct sess s;
	signin(key, &s);
	struct hresp r = sreq(&s, "GET", "/v1/messages", NULL, false);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	char path[128];
	snprintf(path, sizeof path, "/v1/tenants/acme/keys/%s/revoke", prefix);
	const char *bearer[] = {"Authorization: Bearer " ACME_KEY, NULL};
	r = req("POST", path, bearer, "{}", false);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	assert_true(wait_until(session_refused, &W, &s, 10));
	/* Nor can it sign in again. */
	char body[160];
	snprintf(body, sizeof body, "{\"api_key\":\"%s\"}", key);
	r = req("POST", "/v1/session", NULL, body, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
}

/* ---------------------------------------------------------------------------
 * Slice 3: GET /v1/events.
 * ------------------------------------------------------------------------- */

static CURLM *multi; /* the streams held open together */

static long stream_status(struct hstream *st)
{
	long code = 0;
	curl_easy_getinfo(st->c, CURLINFO_RESPONSE_CODE, &code);
	return st->status = code;
}

struct heads {
	struct hstream *s;
	int n;
};

static bool all_heads(void *arg)
{
	struct heads *h = arg;
	for (int i = 0; i < h->n; i++)
		if (stream_status(&h->s[i]) == 0)
			return false;
	return true;
}

/* The last "campaigns" event's data on a stream (caller decrefs), or NULL. */
static json_t *last_event(struct hstream *st)
{
	if (!st->b.p)
		return NULL;
	const char *at = NULL;
	for (const char *p = st->b.p; (p = strstr(p, "event: campaigns\ndata: ")); p++)
		at = p;
	if (!at)
		return NULL;
	at += strlen("event: campaigns\ndata: ");
	const char *end = strstr(at, "\n\n");
	if (!end)
		return NULL;
	return json_loadb(at, (size_t)(end - at), 0, NULL);
}

struct want_done {
	struct hstream *st;
	const char *id;
	int rows;
};

/* The campaign has reached its end in the stream, with exact counters. */
static bool campaign_final(void *arg)
{
	struct want_done *w = arg;
	json_t *e = last_event(w->st);
	bool ok = false;
	size_t i;
	json_t *b;
	json_array_foreach(json_object_get(e, "data"), i, b)
	{
		if (strcmp(json_string_value(json_object_get(b, "id")), w->id) != 0)
			continue;
		ok = !strcmp(json_string_value(json_object_get(b, "status")), "completed");
	}
	json_decref(e);
	return ok;
}

static bool has_text(void *arg)
{
	struct want_done *w = arg;
	return w->st->b.p && strstr(w->st->b.p, w->id);
}

static bool stream_done(void *arg)
{
	return ((struct hstream *)arg)->done;
}

static bool credential_capped(struct world *w, void *arg)
{
	(void)w, (void)arg;
	const char *ob[] = {"Authorization: Bearer " OTHER_KEY, NULL};
	struct hresp r = req("GET", "/v1/events", ob, NULL, false);
	bool capped = r.status == 429 && strstr(r.body, "this credential");
	if (r.status != 429)
		fail_msg("a third stream of one key: %ld", r.status);
	hresp_free(&r);
	return capped;
}

static void test_events(void **state)
{
	(void)state;
	make_keys();
	multi = curl_multi_init();
	assert_non_null(multi);
	struct sess acme, other, cards;
	signin(ACME_KEY, &acme);
	signin(OTHER_KEY, &other);
	signin(unit_key_cards, &cards);

	/* No credential: 401; a reader without campaigns:read: 403. */
	struct hresp r = req("GET", "/v1/events", NULL, NULL, false);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
	struct sess reader;
	signin(reader_key, &reader);
	r = sreq(&reader, "GET", "/v1/events", NULL, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	r = sreq(&acme, "GET", "/v1/events?batch=01KZZZZZZZZZZZZZZZZZZZZZZZ", NULL, false);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	r = sreq(&acme, "GET", "/v1/events?tenant=other", NULL, false);
	assert_int_equal(r.status, 422);
	hresp_free(&r);

	/* acme's stream, other's stream, the unit's stream. */
	struct hstream st[4];
	const char *ha[] = {acme.cookie, NULL}, *ho[] = {other.cookie, NULL},
	           *hc[] = {cards.cookie, NULL};
	hstream_open(multi, &W, &st[0], "/v1/events", ha);
	hstream_open(multi, &W, &st[1], "/v1/events", ho);
	struct heads h = {st, 2};
	assert_true(hstreams_until(multi, all_heads, &h, 10));
	assert_int_equal(st[0].status, 200);
	assert_int_equal(st[1].status, 200);
	/* Live counters: a 40-row campaign, followed to its end. */
	char id[64];
	make_campaign(&acme, "live", 40, "+44740070", true, id);
	struct want_done w = {&st[0], id, 40};
	assert_true(hstreams_until(multi, campaign_final, &w, 60));
	json_t *e = last_event(&st[0]);
	size_t i;
	json_t *b;
	int seen = 0;
	json_array_foreach(json_object_get(e, "data"), i, b)
	{
		if (strcmp(json_string_value(json_object_get(b, "id")), id) != 0)
			continue;
		seen++;
		json_t *rows = json_object_get(b, "rows");
		assert_int_equal(json_integer_value(json_object_get(rows, "total")), 40);
		assert_int_equal(json_integer_value(json_object_get(rows, "valid")), 40);
		json_t *pr = json_object_get(b, "progress");
		assert_int_equal(json_integer_value(json_object_get(pr, "made")), 40);
		assert_int_equal(json_integer_value(json_object_get(pr, "settled")), 40);
		assert_null(json_object_get(pr, "per_second")); /* changes by itself */
		json_t *ms = json_object_get(b, "messages");
		long sum = 0;
		const char *k;
		json_t *v;
		json_object_foreach(ms, k, v) sum += (long)json_integer_value(v);
		assert_int_equal(sum, 40);
	}
	assert_int_equal(seen, 1);
	json_decref(e);
	assert_non_null(strstr(st[0].b.p, "retry: 3000\n\n"));
	/* More than one step was shown on the way (the counters moved live). */
	int events = 0;
	for (const char *p = st[0].b.p; (p = strstr(p, "event: campaigns")); p++)
		events++;
	assert_true(events >= 2);
	/* The other tenant's stream never showed it; heartbeats kept it alive. */
	struct want_done hb = {&st[1], ": heartbeat\n\n", 0};
	assert_true(hstreams_until(multi, has_text, &hb, 10));
	assert_null(strstr(st[1].b.p, id));
	assert_null(strstr(st[1].b.p, "live"));

	/* Caps (max_event_streams 4, streams_per_session 2): acme's second is
	 * fine, its third is over its own cap; the unit's first takes the last
	 * place, its second is over the server's. */
	hstream_open(multi, &W, &st[2], "/v1/events", ha);
	h = (struct heads){&st[2], 1};
	assert_true(hstreams_until(multi, all_heads, &h, 10));
	assert_int_equal(st[2].status, 200);
	r = sreq(&acme, "GET", "/v1/events", NULL, false);
	assert_int_equal(r.status, 429);
	assert_string_equal(hresp_header(&r, "Retry-After"), "5");
	assert_non_null(strstr(r.body, "this session"));
	hresp_free(&r);
	hstream_open(multi, &W, &st[3], "/v1/events", hc);
	h = (struct heads){&st[3], 1};
	assert_true(hstreams_until(multi, all_heads, &h, 10));
	assert_int_equal(st[3].status, 200);
	r = sreq(&cards, "GET", "/v1/events", NULL, false);
	assert_int_equal(r.status, 429);
	assert_non_null(strstr(r.body, "on this server"));
	hresp_free(&r);
	const char *bearer[] = {"Authorization: Bearer " OTHER_KEY, NULL};
	r = req("GET", "/v1/events", bearer, NULL, false);
	assert_int_equal(r.status, 429);
	hresp_free(&r);
	/* Sign-out ends the session's streams; their places are free again. */
	r = sreq(&acme, "DELETE", "/v1/session", NULL, true);
	assert_int_equal(r.status, 204);
	hresp_free(&r);
	assert_true(hstreams_until(multi, stream_done, &st[0], 10));
	assert_true(hstreams_until(multi, stream_done, &st[2], 10));
	hstream_close(multi, &st[0]);
	hstream_close(multi, &st[2]);
	/* The unit's stream: its own campaigns only. */
	char bc[64], bl[64];
	struct sess loans;
	signin(unit_key_loans, &loans);
	make_campaign(&cards, "cards-live", 2, "+44740071", false, bc);
	make_campaign(&loans, "loans-live", 2, "+44740072", false, bl);
	struct want_done wc = {&st[3], bc, 0};
	assert_true(hstreams_until(multi, has_text, &wc, 10));
	assert_null(strstr(st[3].b.p, bl));
	assert_null(strstr(st[3].b.p, id)); /* acme's tenant-wide campaign */
	/* A bearer credential is capped per credential like a session. */
	hstream_close(multi, &st[1]);
	const char *ob[] = {"Authorization: Bearer " OTHER_KEY, NULL};
	hstream_open(multi, &W, &st[0], "/v1/events", ob);
	hstream_open(multi, &W, &st[2], "/v1/events", ob);
	h = (struct heads){&st[0], 1};
	assert_true(hstreams_until(multi, all_heads, &h, 10));
	h = (struct heads){&st[2], 1};
	assert_true(hstreams_until(multi, all_heads, &h, 10));
	assert_int_equal(st[0].status, 200);
	assert_int_equal(st[2].status, 200);
	/* (The closed stream's place is freed when the server next writes to
	 * it, within a heartbeat: until then the server's cap answers.) */
	assert_true(wait_until(credential_capped, &W, NULL, 10));
	hstream_close(multi, &st[2]);
	/* ?batch= follows one campaign; a sibling unit's is not found. */
	char path[128];
	snprintf(path, sizeof path, "/v1/events?batch=%s", bl);
	r = sreq(&cards, "GET", path, NULL, false);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	hstream_close(multi, &st[0]);
	hstream_close(multi, &st[1]);
	hstream_close(multi, &st[3]);
	curl_multi_cleanup(multi);
}

/* The bounds of the session table, in a world of their own (4 sessions,
 * 2 per key, 2 s idle, 4 s in all). */
static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long sess_status(const struct sess *s)
{
	struct hresp r = sreq(s, "GET", "/v1/session", NULL, false);
	long st = r.status;
	hresp_free(&r);
	return st;
}

/* a tenant-wide session narrowed to one unit (POST
 * /v1/session/view) sees exactly what that unit's key does, and back;
 * a unit key's session cannot switch; an API key has no view; a unit of
 * another tenant is no unit. */
static void batch_names(const struct sess *s, char *out, size_t size)
{
	struct hresp r = sreq(s, "GET", "/v1/batches?limit=100", NULL, false);
	assert_int_equal(r.status, 200);
	out[0] = '\0';
	size_t i, len = 0;
	json_t *b;
	json_array_foreach(json_object_get(r.json, "data"), i, b)
	{
		const char *n = json_string_value(json_object_get(b, "name"));
		if (n && !strncmp(n, "view-", 5))
			len += (size_t)snprintf(out + len, size - len, "%s%s", len ? "," : "", n);
	}
	hresp_free(&r);
}

static void test_unit_view(void **state)
{
	(void)state;
	make_keys();
	struct sess t, cards, loans, other;
	signin(ACME_KEY, &t);
	signin(unit_key_cards, &cards);
	signin(unit_key_loans, &loans);
	signin(OTHER_KEY, &other);
	char id[64], names[256];
	make_campaign(&cards, "view-cards", 2, "+4474005001", false, id);
	make_campaign(&loans, "view-loans", 2, "+4474005002", false, id);

	/* The tenant's session lists its units for the switcher. */
	struct hresp r = sreq(&t, "GET", "/v1/session", NULL, false);
	assert_int_equal(r.status, 200);
	assert_true(json_is_null(json_object_get(r.json, "unit")));
	assert_false(json_is_true(json_object_get(r.json, "unit_view")));
	char *units = json_dumps(json_object_get(r.json, "units"), JSON_COMPACT);
	assert_non_null(strstr(units, "\"cards\""));
	assert_non_null(strstr(units, "\"loans\""));
	free(units);
	hresp_free(&r);
	batch_names(&t, names, sizeof names);
	assert_string_equal(names, "view-loans,view-cards");

	/* Without the CSRF token: refused, nothing changed. */
	r = sreq(&t, "POST", "/v1/session/view", "{\"unit\":\"cards\"}", false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	r = sreq(&t, "POST", "/v1/session/view", "{\"unit\":\"cards\"}", true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	batch_names(&t, names, sizeof names);
	assert_string_equal(names, "view-cards");
	r = sreq(&t, "GET", "/v1/session", NULL, false);
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "cards");
	assert_true(json_is_true(json_object_get(r.json, "unit_view")));
	hresp_free(&r);
	/* As the unit's key would: tenant-wide routes are refused. */
	r = sreq(&t, "GET", "/v1/suppressions", NULL, false);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	/* Switch to the other unit, then back to the whole tenant. */
	r = sreq(&t, "POST", "/v1/session/view", "{\"unit\":\"loans\"}", true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	batch_names(&t, names, sizeof names);
	assert_string_equal(names, "view-loans");
	r = sreq(&t, "POST", "/v1/session/view", "{\"unit\":null}", true);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	batch_names(&t, names, sizeof names);
	assert_string_equal(names, "view-loans,view-cards");

	/* Bad views: 422 naming the field, the view unchanged. */
	static const char *const bad[][2] = {{"{\"unit\":\"nope\"}", "unit"},
	                                     {"{}", "unit"},
	                                     {"{\"unit\":7}", "unit"},
	                                     {"{\"unit\":\"cards\",\"x\":1}", "x"}};
	for (size_t i = 0; i < 4; i++) {
		r = sreq(&t, "POST", "/v1/session/view", bad[i][0], true);
		if (r.status != 422 || strcmp(errfield(&r), bad[i][1]) != 0)
			fail_msg("view %s: %ld %s", bad[i][0], r.status, r.body);
		hresp_free(&r);
	}
	batch_names(&t, names, sizeof names);
	assert_string_equal(names, "view-loans,view-cards");
	/* A unit key's session cannot look at its sibling. */
	r = sreq(&cards, "POST", "/v1/session/view", "{\"unit\":\"loans\"}", true);
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	batch_names(&cards, names, sizeof names);
	assert_string_equal(names, "view-cards");
	/* Another tenant has no unit "cards". */
	r = sreq(&other, "POST", "/v1/session/view", "{\"unit\":\"cards\"}", true);
	assert_int_equal(r.status, 422);
	hresp_free(&r);
	/* An API key has no view. */
	const char *bearer[] = {"Authorization: Bearer " ACME_KEY, NULL};
	r = req("POST", "/v1/session/view", bearer, "{\"unit\":\"cards\"}", false);
	assert_int_equal(r.status, 422);
	assert_string_equal(errfield(&r), "session");
	hresp_free(&r);
}

static void test_session_bounds(void **state)
{
	(void)state;
	struct world w1 = W;
	harness_server_extra(NULL);
	harness_tenants_extra("  - id: extra\n    name: Extra\n"
	                      "    api_keys: [hk_extra_0123456789abcdef]\n");
	world_init2(&W, NULL, NULL, NULL, NULL,
	            "dashboard:\n  max_sessions: 4\n  sessions_per_key: 2\n"
	            "  session_idle_s: 2\n  session_max_age_s: 4\n");
	harness_tenants_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);

	/* Per key: the third sign-in ends the key's oldest session. */
	struct sess a1, a2, a3, o1, o2, x;
	signin(ACME_KEY, &a1);
	signin(ACME_KEY, &a2);
	signin(ACME_KEY, &a3);
	assert_int_equal(sess_status(&a1), 401);
	assert_int_equal(sess_status(&a2), 200);
	assert_int_equal(sess_status(&a3), 200);
	/* In all: 4; a fifth is refused while they live (503, nothing set). */
	signin(OTHER_KEY, &o1);
	signin(OTHER_KEY, &o2);
	struct hresp r =
	    req("POST", "/v1/session", NULL, "{\"api_key\":\"hk_extra_0123456789abcdef\"}", false);
	assert_int_equal(r.status, 503);
	assert_string_equal(hresp_header(&r, "Set-Cookie"), "");
	hresp_free(&r);
	/* Signing out frees a place. */
	r = sreq(&o2, "DELETE", "/v1/session", NULL, true);
	assert_int_equal(r.status, 204);
	hresp_free(&r);
	signin("hk_extra_0123456789abcdef", &x);

	/* Idle: a session unused for 2 s is over; one in use lives on. */
	double t0 = mono_s();
	while (mono_s() - t0 < 2.3) {
		assert_int_equal(sess_status(&a3), 200);
		usleep(200000);
	}
	assert_int_equal(sess_status(&a2), 401); /* unused since sign-in */
	assert_int_equal(sess_status(&a3), 200);
	/* Absolute: 4 s after sign-in even a busy session ends. */
	while (mono_s() - t0 < 4.5 && sess_status(&a3) == 200)
		usleep(200000);
	assert_int_equal(sess_status(&a3), 401);
	assert_true(mono_s() - t0 >= 3.0);
	world_free(&W);
	W = w1;
}

static int setup(void **state)
{
	(void)state;
	harness_server_extra("  auth_cache_ms: 200\n");
	world_init2(&W, NULL, NULL, NULL, NULL,
	            "dashboard:\n  heartbeat_ms: 300\n  max_event_streams: 4\n"
	            "  streams_per_session: 2\n");
	harness_server_extra(NULL);
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
	    cmocka_unit_test(test_files),          cmocka_unit_test(test_signin),
	    cmocka_unit_test(test_isolation),      cmocka_unit_test(test_revoked_key),
	    cmocka_unit_test(test_events),         cmocka_unit_test(test_unit_view),
	    cmocka_unit_test(test_session_bounds),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
