/*
 * test_openapi.c - the OpenAPI document (api/openapi.json, compiled into
 * the binary) against what the server does:
 *   - it is JSON, OpenAPI 3.1.x, and every "$ref" in it resolves;
 *   - its paths and methods are exactly the route table's (api_route_info),
 *     with the same scope and access on each operation, and every path
 *     parameter declared;
 *   - its ErrorCode list is exactly the server's error table
 *     (api_error_code_info) with the same HTTP statuses; every error
 *     response of every operation names only codes of its status; every
 *     authenticated operation documents 401 and 403;
 *   - no file of src/api builds an error body with a code of its own
 *     (api_error_json with a literal), so the table is the whole list;
 *   - GET /openapi.json from a running server answers the embedded bytes
 *     with an ETag, 304 to If-None-Match, and HEAD without a body.
 */
#include <dirent.h>
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
#include <jansson.h>

#include "api/api_int.h"
#include "core/crypto.h"

#define TENANT_KEY "key-acme-0123456789"
#define OPERATOR_KEY "key-operator-0123456789"

/* A member's string, "" when absent or not a string. */
static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static json_t *load_doc(void)
{
	size_t len;
	const unsigned char *p = api_openapi_doc(&len);
	assert_non_null(p);
	assert_true(len > 1000);
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc)
		fail_msg("api/openapi.json is not valid JSON: %s (line %d, column %d)", jerr.text,
		         jerr.line, jerr.column);
	return doc;
}

/* ---------------------------------------------------------------------------
 * The document's shape.
 * ------------------------------------------------------------------------- */

static void test_is_openapi_31(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	const char *v = json_string_value(json_object_get(doc, "openapi"));
	if (!v || strncmp(v, "3.1.", 4) != 0)
		fail_msg("openapi is %s, not 3.1.x", v ? v : "missing");
	json_t *info = json_object_get(doc, "info");
	assert_non_null(json_string_value(json_object_get(info, "title")));
	assert_non_null(json_string_value(json_object_get(info, "version")));
	assert_true(json_is_object(json_object_get(doc, "paths")));
	json_t *sec = json_object_get(json_object_get(doc, "components"), "securitySchemes");
	/* The bearer credential and the dashboard's session cookie + CSRF. */
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(sec, "apiKey"), "scheme")), "bearer");
	json_t *session = json_object_get(sec, "session");
	assert_string_equal(json_string_value(json_object_get(session, "in")), "cookie");
	assert_string_equal(json_string_value(json_object_get(session, "name")), "herald_session");
	json_t *csrf = json_object_get(sec, "csrf");
	assert_string_equal(json_string_value(json_object_get(csrf, "in")), "header");
	assert_string_equal(json_string_value(json_object_get(csrf, "name")), "X-CSRF-Token");
	json_decref(doc);
}

/* Follows a local "$ref" ("#/components/schemas/Error"); NULL when it does
 * not resolve. JSON Pointer escapes (~0, ~1) are not used by the document. */
static json_t *resolve(json_t *doc, const char *ref)
{
	if (strncmp(ref, "#/", 2) != 0)
		return NULL;
	json_t *at = doc;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", ref + 2);
	for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok && at;
	     tok = strtok_r(NULL, "/", &save))
		at = json_object_get(at, tok);
	return at;
}

static void check_refs(json_t *doc, json_t *v, int *n)
{
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x)
		{
			if (!strcmp(k, "$ref")) {
				const char *ref = json_string_value(x);
				if (!ref || !resolve(doc, ref))
					fail_msg("$ref %s does not resolve",
					         ref ? ref : "(not a string)");
				(*n)++;
			} else {
				check_refs(doc, x, n);
			}
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) check_refs(doc, x, n);
	}
}

static void test_refs_resolve(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	int n = 0;
	check_refs(doc, doc, &n);
	assert_true(n > 100);
	/* The check itself catches a broken one. */
	json_t *bad = json_pack("{s:s}", "$ref", "#/components/schemas/NoSuchThing");
	assert_null(resolve(doc, json_string_value(json_object_get(bad, "$ref"))));
	json_decref(bad);
	json_decref(doc);
}

/* ---------------------------------------------------------------------------
 * Routes.
 * ------------------------------------------------------------------------- */

static const char *const doc_methods[] = {"get",   "post",    "delete", "put",
                                          "patch", "options", "trace",  "head"};

static void lower(char *out, const char *in, size_t size)
{
	size_t i = 0;
	for (; in[i] && i + 1 < size; i++)
		out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
	out[i] = '\0';
}

/* Every route and method of the table is in the document, with its scope
 * and access; and every operation of the document is in the table. */
static void test_routes_match(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	json_t *paths = json_object_get(doc, "paths");
	size_t n = api_route_count();
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		struct api_route_info ri;
		assert_int_equal(api_route_info(i, &ri), 0);
		char m[16];
		lower(m, ri.method, sizeof m);
		json_t *opn = json_object_get(json_object_get(paths, ri.path), m);
		if (!opn)
			fail_msg("%s %s is in the route table but not in api/openapi.json",
			         ri.method, ri.path);
		const char *access = json_string_value(json_object_get(opn, "x-herald-access"));
		const char *scope = json_string_value(json_object_get(opn, "x-herald-scope"));
		if (!strcmp(ri.access, "public")) {
			if (access || scope)
				fail_msg("%s %s is public but the document gives it %s/%s",
				         ri.method, ri.path, access ? access : "-",
				         scope ? scope : "-");
			json_t *sec = json_object_get(opn, "security");
			if (!json_is_array(sec) || json_array_size(sec) != 0)
				fail_msg("%s %s is public: its security must be []", ri.method,
				         ri.path);
		} else {
			if (!access || strcmp(access, ri.access) != 0)
				fail_msg("%s %s: access %s in the table, %s in the document",
				         ri.method, ri.path, ri.access, access ? access : "none");
			if (!scope || strcmp(scope, ri.scope) != 0)
				fail_msg("%s %s: scope %s in the table, %s in the document",
				         ri.method, ri.path, ri.scope, scope ? scope : "none");
		}
	}
	int ops = 0;
	const char *path;
	json_t *item;
	json_object_foreach(paths, path, item)
	{
		for (size_t k = 0; k < sizeof doc_methods / sizeof *doc_methods; k++) {
			json_t *opn = json_object_get(item, doc_methods[k]);
			if (!opn)
				continue;
			ops++;
			bool found = false;
			for (size_t i = 0; i < n && !found; i++) {
				struct api_route_info ri;
				assert_int_equal(api_route_info(i, &ri), 0);
				char m[16];
				lower(m, ri.method, sizeof m);
				found = !strcmp(ri.path, path) && !strcmp(m, doc_methods[k]);
			}
			if (!found)
				fail_msg("%s %s is in api/openapi.json but not in the route table",
				         doc_methods[k], path);
			/* Every {param} of the path is declared, in: path, required. */
			for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{')) {
				char name[64];
				size_t len = strcspn(p + 1, "}");
				snprintf(name, sizeof name, "%.*s", (int)len, p + 1);
				bool declared = false;
				size_t j;
				json_t *prm;
				json_array_foreach(json_object_get(opn, "parameters"), j, prm)
				{
					json_t *pr =
					    json_object_get(prm, "$ref")
					        ? resolve(doc, json_string_value(
					                           json_object_get(prm, "$ref")))
					        : prm;
					if (!strcmp(jstr(pr, "name"), name) &&
					    !strcmp(jstr(pr, "in"), "path") &&
					    json_is_true(json_object_get(pr, "required")))
						declared = true;
				}
				if (!declared)
					fail_msg("%s %s: path parameter %s is not declared",
					         doc_methods[k], path, name);
			}
		}
	}
	assert_int_equal(ops, (int)n);
	json_decref(doc);
}

/* ---------------------------------------------------------------------------
 * Error codes.
 * ------------------------------------------------------------------------- */

/* The HTTP status the document gives a code in ErrorCode, or -1. */
static int doc_code_status(json_t *doc, const char *code)
{
	json_t *one = json_object_get(resolve(doc, "#/components/schemas/ErrorCode"), "oneOf");
	size_t i;
	json_t *e;
	json_array_foreach(one, i, e)
	{
		if (!strcmp(jstr(e, "const"), code))
			return (int)json_integer_value(json_object_get(e, "x-herald-status"));
	}
	return -1;
}

static int table_status(const char *code)
{
	for (size_t i = 0; i < api_error_code_count(); i++) {
		struct api_error_info e;
		assert_int_equal(api_error_code_info(i, &e), 0);
		if (!strcmp(e.code, code))
			return e.http;
	}
	return -1;
}

static void test_error_codes_match(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	size_t n = api_error_code_count();
	assert_true(n >= 20);
	struct api_error_info past;
	assert_int_equal(api_error_code_info(n, &past), HR_ENOTFOUND);
	for (size_t i = 0; i < n; i++) {
		struct api_error_info e;
		assert_int_equal(api_error_code_info(i, &e), 0);
		assert_true(e.description && *e.description);
		int st = doc_code_status(doc, e.code);
		if (st < 0)
			fail_msg("error code %s (%d) is not in the document's ErrorCode", e.code,
			         e.http);
		if (st != e.http)
			fail_msg("error code %s: %d in errors.c, %d in the document", e.code,
			         e.http, st);
		for (size_t k = 0; k < i; k++) {
			struct api_error_info o;
			assert_int_equal(api_error_code_info(k, &o), 0);
			if (!strcmp(o.code, e.code))
				fail_msg("error code %s is in the table twice", e.code);
		}
	}
	json_t *one = json_object_get(resolve(doc, "#/components/schemas/ErrorCode"), "oneOf");
	assert_int_equal(json_array_size(one), n);
	size_t i;
	json_t *x;
	json_array_foreach(one, i, x)
	{
		const char *c = json_string_value(json_object_get(x, "const"));
		if (!c || table_status(c) < 0)
			fail_msg("the document lists error code %s, which errors.c does not have",
			         c ? c : "(none)");
	}
	/* The table is what the server answers with. */
	assert_string_equal(api_error_code(HR_EINVAL), "invalid");
	assert_int_equal(api_http_status(HR_EINVAL), 422);
	assert_string_equal(api_error_code(HR_EINTERNAL), "internal");
	assert_int_equal(api_http_status(HR_EINTERNAL), 500);
	assert_string_equal(api_errkind_code(APIERR_DAILY_CAP), "daily_cap_reached");
	assert_int_equal(api_errkind_status(APIERR_CAMPAIGN_CAP), 409);
	for (int k = APIERR_INVALID_JSON; k <= APIERR_PLUGIN_BUSY; k++)
		assert_int_equal(table_status(api_errkind_code((enum api_errkind)k)),
		                 api_errkind_status((enum api_errkind)k));
	json_decref(doc);
}

/* The codes an error response allows (its schema's error.code enum). */
static json_t *response_codes(json_t *doc, json_t *resp)
{
	if (json_object_get(resp, "$ref"))
		resp = resolve(doc, json_string_value(json_object_get(resp, "$ref")));
	json_t *schema = json_object_get(
	    json_object_get(json_object_get(resp, "content"), "application/json"), "schema");
	json_t *code = json_object_get(
	    json_object_get(json_object_get(json_object_get(schema, "properties"), "error"),
	                    "properties"),
	    "code");
	return json_object_get(code, "enum");
}

static void test_operation_errors(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	const char *path;
	json_t *item;
	int checked = 0;
	json_object_foreach(json_object_get(doc, "paths"), path, item)
	{
		const char *m;
		json_t *opn;
		json_object_foreach(item, m, opn)
		{
			json_t *responses = json_object_get(opn, "responses");
			bool authed = json_object_get(opn, "x-herald-access") != NULL;
			bool ok = false;
			const char *st;
			json_t *resp;
			json_object_foreach(responses, st, resp)
			{
				int status = atoi(st);
				if (status < 400) {
					ok = ok || (status >= 200 && status < 300);
					continue;
				}
				json_t *codes = response_codes(doc, resp);
				if (!json_is_array(codes) || json_array_size(codes) == 0)
					fail_msg("%s %s %s: no error codes", m, path, st);
				size_t i;
				json_t *c;
				json_array_foreach(codes, i, c)
				{
					const char *code = json_string_value(c);
					int want = table_status(code ? code : "");
					if (want != status)
						fail_msg(
						    "%s %s: code %s under %d, but errors.c answers "
						    "it with %d",
						    m, path, code ? code : "?", status, want);
					checked++;
				}
			}
			if (!ok)
				fail_msg("%s %s documents no 2xx answer", m, path);
			if (authed && (!json_object_get(responses, "401") ||
			               !json_object_get(responses, "403")))
				fail_msg("%s %s needs a credential: document 401 and 403", m, path);
			if (!json_object_get(responses, "500"))
				fail_msg("%s %s: document 500 internal", m, path);
		}
	}
	assert_true(checked > 300);
	json_decref(doc);
}

/* No handler builds an error body with a code of its own: every code goes
 * through errors.c's table (api_fail, api_fail_kind), which the checks
 * above compare with the document. */
static void test_no_stray_codes(void **state)
{
	(void)state;
	const char *src = getenv("HERALD_SRC");
	if (!src)
		fail_msg("HERALD_SRC is not set (CTest sets it)");
	char dir[512];
	snprintf(dir, sizeof dir, "%s/src/api", src);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	int files = 0;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l < 3 || strcmp(e->d_name + l - 2, ".c") != 0 || !strcmp(e->d_name, "errors.c"))
			continue;
		char p[1024];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "r");
		assert_non_null(f);
		char line[4096];
		int no = 0;
		while (fgets(line, sizeof line, f)) {
			no++;
			const char *at = strstr(line, "api_error_json(");
			if (at && at[15] == '"')
				fail_msg(
				    "src/api/%s:%d builds an error with a literal code: add it "
				    "to errors.c's table and the document instead",
				    e->d_name, no);
			/* A body by hand: as a JSON text, or packed with jansson. */
			if (strstr(line, "\"error\", \"code\"") ||
			    (strstr(line, "\\\"error\\\":{\\\"code\\\":\\\"") &&
			     !strstr(line, "\\\"code\\\":\\\"internal\\\"")))
				fail_msg("src/api/%s:%d writes an error body by hand", e->d_name,
				         no);
		}
		fclose(f);
		files++;
	}
	closedir(d);
	assert_true(files > 20);
}

/* ---------------------------------------------------------------------------
 * Serving: a running server (in this process, on a free loopback port).
 * ------------------------------------------------------------------------- */

struct env {
	char dir[64];
	struct store *st;
	struct account_set set;
	struct api_server *srv;
	char op_hash[1][65];
	int port;
};

static void env_start(struct env *e)
{
	memset(e, 0, sizeof *e);
	strcpy(e->dir, "/tmp/herald-test-openapi-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	char path[128];
	snprintf(path, sizeof path, "%s/herald.db", e->dir);
	struct store_opts so = {0};
	struct hr_err err;
	hr_err_clear(&err);
	if (store_sqlite.open(path, &so, &e->st, &err) != 0)
		fail_msg("store open: %s", err.msg);
	/* Tenant acme with a key of every scope; an operator key. */
	struct tenant_row t = {0};
	hr_strlcpy(t.id, "acme", sizeof t.id);
	hr_strlcpy(t.name, "Acme", sizeof t.name);
	assert_int_equal(e->st->ops->tenant_upsert(e->st, &t, &err), 0);
	char hash[65];
	hr_sha256_hex(TENANT_KEY, strlen(TENANT_KEY), hash);
	assert_int_equal(e->st->ops->api_key_put(e->st, "acme", hash, "test", &err), 0);
	hr_sha256_hex(OPERATOR_KEY, strlen(OPERATOR_KEY), e->op_hash[0]);
	if (account_set_load(e->st, &e->set, &err) != 0)
		fail_msg("account_set_load: %s", err.msg);
	struct api_opts o;
	api_opts_default(&o);
	o.port = 0;
	o.store = e->st;
	o.accounts = &e->set;
	o.operator_hashes = (const char(*)[65])e->op_hash;
	o.noperator = 1;
	if (api_start(&o, &e->srv, &err) != 0)
		fail_msg("api_start: %s", err.msg);
	e->port = api_port(e->srv);
	assert_true(e->port > 0);
}

static void env_stop(struct env *e)
{
	char p[128];
	api_stop(e->srv);
	account_set_clear(&e->set);
	e->st->ops->close(e->st);
	const char *files[] = {"herald.db", "herald.db-wal", "herald.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", e->dir, files[i]);
		unlink(p);
	}
	rmdir(e->dir);
}

struct got {
	long status;
	char *body;
	size_t len;
	char etag[80];
	char ctype[80];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct got *g = arg;
	char *b = realloc(g->body, g->len + size * n + 1);
	assert_non_null(b);
	memcpy(b + g->len, p, size * n);
	g->body = b;
	g->len += size * n;
	b[g->len] = '\0';
	return size * n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	size_t vl = n - nl - 1;
	while (vl && (*v == ' '))
		v++, vl--;
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	snprintf(out, size, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct got *g = arg;
	header_value(p, size * n, "ETag", g->etag, sizeof g->etag);
	header_value(p, size * n, "Content-Type", g->ctype, sizeof g->ctype);
	return size * n;
}

static struct got fetch_as(int port, const char *path, bool head, const char *if_none_match,
                           const char *key)
{
	struct got g = {0};
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[256], inm[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	struct curl_slist *h = NULL;
	if (if_none_match) {
		snprintf(inm, sizeof inm, "If-None-Match: %s", if_none_match);
		h = curl_slist_append(h, inm);
		assert_non_null(h);
	}
	char auth[128];
	if (key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
		assert_non_null(h);
	}
	assert_int_equal(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_NOBODY, head ? 1L : 0L), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HTTPHEADER, h), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEDATA, &g), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERDATA, &g), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L), CURLE_OK);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g.status), CURLE_OK);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return g;
}

static struct got fetch(int port, const char *path, bool head, const char *if_none_match)
{
	return fetch_as(port, path, head, if_none_match, NULL);
}

/* A value of a query parameter's schema the server can read. */
static void sample_value(json_t *doc, json_t *schema, char *out, size_t size)
{
	if (json_object_get(schema, "$ref"))
		schema = resolve(doc, jstr(schema, "$ref"));
	json_t *e = json_object_get(schema, "enum");
	const char *type = jstr(schema, "type");
	if (json_is_array(e) && json_is_string(json_array_get(e, 0)))
		snprintf(out, size, "%s", json_string_value(json_array_get(e, 0)));
	else if (json_is_string(json_object_get(schema, "const")))
		snprintf(out, size, "%s", jstr(schema, "const"));
	else if (!strcmp(type, "integer"))
		snprintf(out, size, "1");
	else
		snprintf(out, size, "x");
}

/*
 * Every query parameter the document gives a GET route without path
 * parameters is one the server takes: asked with it, the server never
 * answers "unknown query parameter" naming it (a value it refuses is fine:
 * the parameter is known). Each route is asked as the credential it admits
 * (an operator for operator routes, a tenant's key of every scope else).
 * And every such /v1 route refuses a parameter it does not take, so a
 * client's misspelt filter is an error, never a silently wider answer.
 */
static void test_query_params_known(void **state)
{
	(void)state;
	json_t *doc = load_doc();
	struct env e;
	env_start(&e);
	int asked = 0;
	const char *path;
	json_t *item;
	json_object_foreach(json_object_get(doc, "paths"), path, item)
	{
		json_t *opn = json_object_get(item, "get");
		if (!opn || strchr(path, '{'))
			continue;
		const char *key = !strcmp(jstr(opn, "x-herald-access"), "operator") ? OPERATOR_KEY
		                  : json_object_get(opn, "x-herald-access")         ? TENANT_KEY
		                                                                    : NULL;
		size_t i;
		json_t *prm;
		json_array_foreach(json_object_get(opn, "parameters"), i, prm)
		{
			if (json_object_get(prm, "$ref"))
				prm = resolve(doc, jstr(prm, "$ref"));
			if (strcmp(jstr(prm, "in"), "query") != 0)
				continue;
			const char *name = jstr(prm, "name");
			char v[64], url[256];
			sample_value(doc, json_object_get(prm, "schema"), v, sizeof v);
			snprintf(url, sizeof url, "%s?%s=%s", path, name, v);
			struct got g = fetch_as(e.port, url, false, NULL, key);
			if (g.status == 401 || g.status == 403)
				fail_msg("GET %s as its credential: %ld %s", url, g.status, g.body);
			json_t *body = g.body ? json_loads(g.body, 0, NULL) : NULL;
			json_t *err = json_object_get(body, "error");
			if (g.status == 422 && !strcmp(jstr(err, "field"), name) &&
			    strstr(jstr(err, "message"), "unknown query parameter"))
				fail_msg(
				    "GET %s: the document names query parameter %s, the server "
				    "does not take it",
				    path, name);
			json_decref(body);
			free(g.body);
			asked++;
		}
		/* The check itself: a parameter no route takes is refused. */
		char url[256];
		snprintf(url, sizeof url, "%s?no_such_param=1", path);
		struct got g = fetch_as(e.port, url, false, NULL, key);
		/* The probes and the dashboard's pages read no query at all; the
		 * session route answers its cookie first. */
		if (!strncmp(path, "/v1/", 4) ? !key : strcmp(path, "/openapi.json") != 0) {
			free(g.body);
			continue;
		}
		if (g.status != 422 || !strstr(g.body, "no_such_param"))
			fail_msg("GET %s: an unknown query parameter answered %ld %s", path,
			         g.status, g.body ? g.body : "");
		free(g.body);
	}
	assert_true(asked >= 40);
	env_stop(&e);
	json_decref(doc);
}

static void test_served_with_etag(void **state)
{
	(void)state;
	struct env e;
	env_start(&e);
	size_t len;
	const unsigned char *doc = api_openapi_doc(&len);

	/* No credential needed; the embedded bytes exactly. */
	struct got g = fetch(e.port, "/openapi.json", false, NULL);
	assert_int_equal(g.status, 200);
	assert_int_equal(g.len, len);
	assert_memory_equal(g.body, doc, len);
	assert_string_equal(g.ctype, "application/json");
	assert_int_equal(strlen(g.etag), 34); /* a quoted 32-digit hash */
	assert_true(g.etag[0] == '"' && g.etag[33] == '"');
	char etag[80];
	strcpy(etag, g.etag);
	free(g.body);

	/* The same tag: 304, no body. In a list, weak, or "*" too. */
	const char *match[4];
	char list[200], weak[90];
	snprintf(list, sizeof list, "\"0000\", %s", etag);
	snprintf(weak, sizeof weak, "W/%s", etag);
	match[0] = etag;
	match[1] = list;
	match[2] = weak;
	match[3] = "*";
	for (int i = 0; i < 4; i++) {
		g = fetch(e.port, "/openapi.json", false, match[i]);
		if (g.status != 304)
			fail_msg("If-None-Match: %s answered %ld", match[i], g.status);
		assert_int_equal(g.len, 0);
		assert_string_equal(g.etag, etag);
		free(g.body);
	}
	/* Another tag: the document again. */
	g = fetch(e.port, "/openapi.json", false, "\"0123456789abcdef0123456789abcdef\"");
	assert_int_equal(g.status, 200);
	assert_int_equal(g.len, len);
	free(g.body);
	/* HEAD: the headers, no body. */
	g = fetch(e.port, "/openapi.json", true, NULL);
	assert_int_equal(g.status, 200);
	assert_int_equal(g.len, 0);
	assert_string_equal(g.etag, etag);
	free(g.body);
	/* Query parameters it does not take are refused, naming them. */
	g = fetch(e.port, "/openapi.json?x=1", false, NULL);
	assert_int_equal(g.status, 422);
	assert_non_null(strstr(g.body, "\"field\":\"x\""));
	free(g.body);
	env_stop(&e);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_is_openapi_31),    cmocka_unit_test(test_refs_resolve),
	    cmocka_unit_test(test_routes_match),     cmocka_unit_test(test_error_codes_match),
	    cmocka_unit_test(test_operation_errors), cmocka_unit_test(test_no_stray_codes),
	    cmocka_unit_test(test_served_with_etag), cmocka_unit_test(test_query_params_known),
	};
	int rc = cmocka_run_group_tests_name("openapi", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
