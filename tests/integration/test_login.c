/*
 * test_login.c - configured dashboard logins (dashboard.users, src/api/
 * users.c) against a real `herald serve`: hashes made by `herald
 * hash-password`; sign-in with a name and password gives a session with
 * the user's tenant, unit and role's scopes (viewer, operator, approver),
 * audited; a wrong password and an unknown name get the same 401; another
 * tenant's user sees none of acme's; a viewer cannot send; a bad users
 * config stops `herald serve` naming the field; too many failures for a
 * name or from an address are 429 with Retry-After, even with the right
 * password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define ACME_KEY "hk_test_0123456789abcdef"

static struct world W;
static char msg_acme[32];

/* `herald hash-password` of pw (asserted to work). */
static void hash_of(const char *pw, char out[160])
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | %s hash-password", pw,
	         getenv("HERALD_BIN"));
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, 160, p));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(p), 0);
	assert_int_equal(strncmp(out, "$y$", 3), 0);
}

static int setup(void **state)
{
	(void)state;
	char ana[160], vic[160], bob[160], eve[160], extra[2048];
	hash_of("ana-pass-1", ana);
	hash_of("vic-pass-1", vic);
	hash_of("bob-pass-1", bob);
	hash_of("eve-pass-1", eve);
	snprintf(
	    extra, sizeof extra,
	    "dashboard:\n  users:\n"
	    "    - {name: ana, password_hash: \"%s\", tenant: acme, role: operator}\n"
	    "    - {name: vic, password_hash: \"%s\", tenant: acme, unit: cards, role: viewer}\n"
	    "    - {name: bob, password_hash: \"%s\", tenant: other, role: approver}\n"
	    "    - {name: eve, password_hash: \"%s\", tenant: acme, role: viewer}\n",
	    ana, vic, bob, eve);
	world_init2(&W, NULL, NULL, NULL, NULL, extra);
	world_start_sim(&W);
	world_start_serve(&W);
	struct resp r =
	    api_post(&W, "/v1/tenants/acme/units", "{\"id\":\"cards\",\"name\":\"Cards\"}");
	assert_int_equal(r.status, 201);
	resp_free(&r);
	r = api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"+447400777001\",\"text\":\"x\"}");
	assert_int_equal(r.status, 202);
	snprintf(msg_acme, sizeof msg_acme, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

/* ---- HTTP with the cookie (the harness keeps no headers) ---- */

struct buf {
	char *p;
	size_t n;
};

static size_t put_cb(char *d, size_t sz, size_t n, void *arg)
{
	struct buf *b = arg;
	char *p = realloc(b->p, b->n + sz * n + 1);
	if (!p)
		return 0;
	memcpy(p + b->n, d, sz * n);
	b->p = p;
	b->n += sz * n;
	p[b->n] = '\0';
	return sz * n;
}

struct hres {
	long status;
	json_t *json;
	char *body, *headers;
};

static void hres_free(struct hres *r)
{
	json_decref(r->json);
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof *r);
}

#define OPT(o, v) assert_int_equal(curl_easy_setopt(c, o, v), CURLE_OK)

/* The source address of the next requests (NULL: the system's choice,
 * 127.0.0.1): the loopback range, so that tests can be two clients. */
static const char *g_iface;

static struct hres req(const char *method, const char *path, const char *cookie, const char *csrf,
                       const char *body)
{
	struct hres r = {0};
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[512], ck[160], cs[160];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (cookie) {
		snprintf(ck, sizeof ck, "Cookie: herald_session=%s", cookie);
		h = curl_slist_append(h, ck);
	}
	if (csrf) {
		snprintf(cs, sizeof cs, "X-CSRF-Token: %s", csrf);
		h = curl_slist_append(h, cs);
	}
	struct buf b = {0}, hd = {0};
	OPT(CURLOPT_URL, url);
	OPT(CURLOPT_CUSTOMREQUEST, method);
	if (body)
		OPT(CURLOPT_POSTFIELDS, body);
	OPT(CURLOPT_HTTPHEADER, h);
	OPT(CURLOPT_WRITEFUNCTION, put_cb);
	OPT(CURLOPT_WRITEDATA, &b);
	OPT(CURLOPT_HEADERFUNCTION, put_cb);
	OPT(CURLOPT_HEADERDATA, &hd);
	OPT(CURLOPT_TIMEOUT_MS, 20000L);
	OPT(CURLOPT_NOSIGNAL, 1L);
	if (g_iface)
		OPT(CURLOPT_INTERFACE, g_iface);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.body = b.p ? b.p : strdup("");
	r.headers = hd.p ? hd.p : strdup("");
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

struct sess {
	char tok[80], csrf[80];
};

static struct hres login(const char *name, const char *pw, struct sess *s)
{
	char body[256];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"password\":\"%s\"}", name, pw);
	struct hres r = req("POST", "/v1/session", NULL, NULL, body);
	if (r.status == 201 && s) {
		const char *c = strstr(r.headers, "herald_session=");
		assert_non_null(c);
		snprintf(s->tok, sizeof s->tok, "%.*s", (int)strcspn(c + 15, ";"), c + 15);
		snprintf(s->csrf, sizeof s->csrf, "%s",
		         json_string_value(json_object_get(r.json, "csrf_token")));
	}
	return r;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static bool has_scope(json_t *session, const char *scope)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(session, "scopes"), i,
	                   v) if (!strcmp(json_string_value(v), scope)) return true;
	return false;
}

/* ---- the tests ---- */

static void test_operator_login(void **state)
{
	(void)state;
	struct sess s;
	struct hres r = login("ana", "ana-pass-1", &s);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	assert_true(json_is_null(json_object_get(r.json, "unit")));
	assert_string_equal(jstr(r.json, "actor"), "user:ana");
	assert_true(has_scope(r.json, "campaigns:write"));
	assert_true(has_scope(r.json, "messages:send"));
	assert_false(has_scope(r.json, "accounts:write")); /* an approver's */
	assert_false(has_scope(r.json, "admin"));
	assert_non_null(strcasestr(r.headers, "HttpOnly"));
	hres_free(&r);
	/* The session works like a key's: reads, and writes with the token. */
	char path[96];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	hres_free(&r);
	r = req("POST", "/v1/messages", s.tok, NULL,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777002\",\"text\":\"y\"}");
	assert_int_equal(r.status, 403); /* no CSRF token */
	hres_free(&r);
	r = req("POST", "/v1/messages", s.tok, s.csrf,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777002\",\"text\":\"y\"}");
	assert_int_equal(r.status, 202);
	hres_free(&r);
	/* The sign-in is in the tenant's audit log, with the address. */
	struct resp a = api_get(&W, "/v1/audit?limit=100");
	assert_int_equal(a.status, 200);
	int found = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(a.json, "entries"), i, e)
	{
		char *after = json_dumps(json_object_get(e, "after"), 0);
		if (!strcmp(jstr(e, "action"), "session.signin") &&
		    !strcmp(jstr(e, "actor"), "user:ana") &&
		    !strcmp(jstr(e, "object"), "user:ana") && strstr(after, "127.0.0.1"))
			found++;
		free(after);
	}
	resp_free(&a);
	assert_int_equal(found, 1);
	r = req("DELETE", "/v1/session", s.tok, s.csrf, NULL);
	assert_int_equal(r.status, 204);
	hres_free(&r);
	r = req("GET", "/v1/session", s.tok, NULL, NULL);
	assert_int_equal(r.status, 401);
	hres_free(&r);
}

static void test_viewer_and_other_tenant(void **state)
{
	(void)state;
	struct sess v, b;
	struct hres r = login("vic", "vic-pass-1", &v);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "unit"), "cards");
	assert_false(has_scope(r.json, "messages:send"));
	hres_free(&r);
	r = req("POST", "/v1/messages", v.tok, v.csrf,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777003\",\"text\":\"z\"}");
	assert_int_equal(r.status, 403);
	hres_free(&r);
	/* bob is other's approver: acme's message does not exist for him. */
	r = login("bob", "bob-pass-1", &b);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "other");
	assert_true(has_scope(r.json, "accounts:write"));
	hres_free(&r);
	char path[96];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, b.tok, NULL, NULL);
	assert_int_equal(r.status, 404);
	hres_free(&r);
	r = req("GET", "/v1/messages", b.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	hres_free(&r);
}

static void test_refusals(void **state)
{
	(void)state;
	struct hres a = login("ana", "wrong-pass", NULL);
	struct hres b = login("nobody", "wrong-pass", NULL);
	assert_int_equal(a.status, 401);
	assert_int_equal(b.status, 401);
	assert_string_equal(a.body, b.body); /* nothing says which names exist */
	assert_non_null(strstr(a.body, "wrong name or password"));
	hres_free(&a);
	hres_free(&b);
	static const char *const bad[][2] = {
	    {"{\"name\":\"ana\"}", "password"},
	    {"{\"name\":\"\",\"password\":\"x\"}", "name"},
	    {"{\"name\":\"ana\",\"password\":7}", "password"},
	    {"{\"name\":\"ana\",\"password\":\"x\",\"api_key\":\"" ACME_KEY "\"}", "api_key"},
	    {"{\"name\":\"ana\",\"password\":\"x\",\"role\":\"admin\"}", "role"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct hres r = req("POST", "/v1/session", NULL, NULL, bad[i][0]);
		const char *f = jstr(json_object_get(r.json, "error"), "field");
		if (r.status != 422 || strcmp(f, bad[i][1]) != 0)
			fail_msg("%s: %ld %s", bad[i][0], r.status, r.body);
		hres_free(&r);
	}
	/* Bad users configs stop `herald serve`, naming the field. */
	static const char *const cfgs[][2] = {
	    {"    - {name: x, password_hash: \"$y$j9T$abc\", tenant: acme, role: boss}\n",
	     "dashboard.users[0]"},
	    {"    - {name: x, password_hash: \"plain\", tenant: acme, role: viewer}\n",
	     "password_hash"},
	    {"    - {name: \"a b\", password_hash: \"$y$j9T$abc\", tenant: acme, role: viewer}\n",
	     "name"},
	    {"    - {name: x, password: \"p\", tenant: acme, role: viewer}\n",
	     "dashboard.users[0].password"},
	};
	for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
		char path[400], cmd[1024], out[2048] = "";
		snprintf(path, sizeof path, "%s/bad-%zu.yaml", W.dir, i);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fprintf(
		    f,
		    "server:\n  listen: 127.0.0.1:%d\nstore:\n  driver: sqlite\n  path: %s/bad.db\n"
		    "tenants:\n  - id: acme\n    name: Acme\n    api_keys: "
		    "[hk_bad_0123456789abcdef]\n"
		    "dashboard:\n  users:\n%s",
		    harness_free_port(), W.dir, cfgs[i][0]);
		fclose(f);
		snprintf(cmd, sizeof cmd, "timeout 20 %s serve --config %s 2>&1",
		         getenv("HERALD_BIN"), path);
		FILE *p = popen(cmd, "r");
		assert_non_null(p);
		size_t n = fread(out, 1, sizeof out - 1, p);
		out[n] = '\0';
		int st = pclose(p);
		if (st == 0 || !strstr(out, cfgs[i][1]))
			fail_msg("config %zu: exit %d, %s", i, st, out);
	}
}

/* Last: it locks names and addresses out for the window. */
static void test_failure_limit(void **state)
{
	(void)state;
	/* Per name: five failures for eve from 127.0.0.2, then even the right
	 * password from another address (127.0.0.3) waits. */
	g_iface = "127.0.0.2";
	for (int i = 0; i < 5; i++) {
		struct hres r = login("eve", "not-it", NULL);
		assert_int_equal(r.status, 401);
		hres_free(&r);
	}
	g_iface = "127.0.0.3";
	struct hres r = login("eve", "eve-pass-1", NULL);
	assert_int_equal(r.status, 429);
	assert_non_null(strcasestr(r.headers, "Retry-After:"));
	assert_string_equal(jstr(json_object_get(r.json, "error"), "code"), "rate_limited");
	hres_free(&r);
	/* Another name from 127.0.0.3 is fine. */
	r = login("vic", "vic-pass-1", NULL);
	assert_int_equal(r.status, 201);
	hres_free(&r);
	/* Per address: 127.0.0.1 had two failures (test_refusals); three more,
	 * each for a different name, and then ana's right password from there
	 * waits too. */
	g_iface = "127.0.0.1";
	static const char *const names[] = {"x1", "x2", "x3"};
	for (int i = 0; i < 3; i++) {
		r = login(names[i], "nope", NULL);
		assert_int_equal(r.status, 401);
		hres_free(&r);
	}
	r = login("ana", "ana-pass-1", NULL);
	assert_int_equal(r.status, 429);
	hres_free(&r);
	g_iface = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_operator_login),
	    cmocka_unit_test(test_viewer_and_other_tenant),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_failure_limit),
	};
	return cmocka_run_group_tests_name("login", tests, setup, teardown);
}
