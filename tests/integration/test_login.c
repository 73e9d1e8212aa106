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
 *
 * a login of several tenants (tenants: [...] or "*") signs in to
 * its first tenant (or the one asked for), lists the tenants it may
 * switch to, and POST /v1/session/tenant moves it (CSRF required; its role
 * there): it then sees only that tenant's campaigns and messages; a tenant
 * it does not list, an unknown one and a disabled one are refused alike
 * (404); a login of one tenant, a key's session and a bearer key cannot
 * switch; the switch is audited in the tenant entered (the tenant left
 * for operators only); event streams opened before a switch end and show
 * nothing of the old tenant after it; a bad tenants list stops the start
 * naming the field.
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
#define BETA_KEY "hk_beta_0123456789abcdef"
#define OPERATOR_KEY "op-login-test-0123456789abcdef0123456789"

static struct world W;
static char msg_acme[32];
static char good_hash[160];                             /* a real hash, for the bad configs */
static char msg_beta[32], camp_acme[32], camp_beta[32];

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
	char ana[160], vic[160], bob[160], eve[160], sam[160], zed[160], extra[4096];
	hash_of("sam-pass-1", sam);
	hash_of("zed-pass-1", zed);
	hash_of("ana-pass-1", ana);
	snprintf(good_hash, sizeof good_hash, "%s", ana);
	hash_of("vic-pass-1", vic);
	hash_of("bob-pass-1", bob);
	hash_of("eve-pass-1", eve);
	snprintf(
	    extra, sizeof extra,
	    "dashboard:\n  users:\n"
	    "    - {name: ana, password_hash: \"%s\", tenant: acme, role: operator}\n"
	    "    - {name: vic, password_hash: \"%s\", tenant: acme, unit: cards, role: viewer}\n"
	    "    - {name: bob, password_hash: \"%s\", tenant: other, role: approver}\n"
	    "    - {name: eve, password_hash: \"%s\", tenant: acme, role: viewer}\n"
	    /* on-call staff of several tenants, and of all of them. */
	    "    - {name: sam, password_hash: \"%s\", role: operator,\n"
	    "       tenants: [acme, {id: beta, role: viewer}, gamma]}\n"
	    "    - {name: zed, password_hash: \"%s\", tenants: \"*\", role: viewer}\n",
	    ana, vic, bob, eve, sam, zed);
	setenv("HERALD_TEST_OPERATOR", OPERATOR_KEY, 1);
	harness_server_extra("  operator_keys: [env:HERALD_TEST_OPERATOR]\n");
	harness_tenants_extra(
	    "  - id: beta\n    name: Beta\n    api_keys: [" BETA_KEY "]\n"
	    "    accounts:\n"
	    "      - id: beta-wa\n        channel: whatsapp\n        base_url: @SIM@\n"
	    "        api_version: \"21.0\"\n        phone_number_id: \"106540352242933\"\n"
	    "        access_token: test-token\n        app_secret: app-secret-123\n"
	    "        verify_token: verify-me\n"
	    "  - id: gamma\n    name: Gamma\n    api_keys: [hk_gamma_0123456789abcdef]\n");
	world_init2(&W, NULL, NULL, NULL, NULL, extra);
	harness_server_extra(NULL);
	harness_tenants_extra(NULL);
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
	/* a message and a campaign (validated, so it never changes) in
	 * each of acme and beta. */
	char url[256];
	snprintf(url, sizeof url, "%s/v1/messages", W.api);
	r = http("POST", url, BETA_KEY,
	         "{\"channel\":\"whatsapp\",\"to\":\"+447400777901\",\"text\":\"o\"}", NULL);
	assert_int_equal(r.status, 202);
	snprintf(msg_beta, sizeof msg_beta, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	static const char camp[] =
	    "{\"name\":\"%s\",\"channel\":\"whatsapp\",\"account\":\"%s\",\"text\":\"x\","
	    "\"start\":false,"
	    "\"rows\":[{\"phone\":\"+447400777950\"}]}";
	char body[256];
	snprintf(url, sizeof url, "%s/v1/batches", W.api);
	const char *keys[2] = {ACME_KEY, BETA_KEY}, *names[2] = {"acme-camp", "beta-camp"},
	           *accts[2] = {"acme-wa", "beta-wa"};
	char *ids[2] = {camp_acme, camp_beta};
	for (int i = 0; i < 2; i++) {
		snprintf(body, sizeof body, camp, names[i], accts[i]);
		r = http("POST", url, keys[i], body, NULL);
		if (r.status != 201)
			fail_msg("campaign of %s: %ld %s", names[i], r.status, r.body);
		snprintf(ids[i], 32, "%s", json_string_value(json_object_get(r.json, "id")));
		resp_free(&r);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

/* ---- HTTP with the cookie (the harness keeps no headers) ---- */

/* The source address of the next requests (NULL: the system's choice,
 * 127.0.0.1): the loopback range, so that tests can be two clients. */
static const char *g_iface;

/* method on W.api + path, as JSON, with the session's cookie and CSRF token
 * when given. */
static struct hresp req(const char *method, const char *path, const char *cookie, const char *csrf,
                        const char *body)
{
	char ck[160], cs[160];
	const char *h[4] = {"Content-Type: application/json"};
	size_t n = 1;
	if (cookie) {
		snprintf(ck, sizeof ck, "Cookie: herald_session=%s", cookie);
		h[n++] = ck;
	}
	if (csrf) {
		snprintf(cs, sizeof cs, "X-CSRF-Token: %s", csrf);
		h[n++] = cs;
	}
	h[n] = NULL;
	return http_h(&W, method, path, h, body, false, g_iface);
}

struct sess {
	char tok[80], csrf[80];
};

static struct hresp login(const char *name, const char *pw, struct sess *s)
{
	char body[256];
	snprintf(body, sizeof body, "{\"name\":\"%s\",\"password\":\"%s\"}", name, pw);
	struct hresp r = req("POST", "/v1/session", NULL, NULL, body);
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
	struct hresp r = login("ana", "ana-pass-1", &s);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	assert_true(json_is_null(json_object_get(r.json, "unit")));
	assert_string_equal(jstr(r.json, "actor"), "user:ana");
	assert_true(has_scope(r.json, "campaigns:write"));
	assert_true(has_scope(r.json, "messages:send"));
	assert_false(has_scope(r.json, "accounts:write")); /* an approver's */
	assert_false(has_scope(r.json, "admin"));
	assert_non_null(strcasestr(r.headers, "HttpOnly"));
	hresp_free(&r);
	/* The session works like a key's: reads, and writes with the token. */
	char path[96];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	r = req("POST", "/v1/messages", s.tok, NULL,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777002\",\"text\":\"y\"}");
	assert_int_equal(r.status, 403); /* no CSRF token */
	hresp_free(&r);
	r = req("POST", "/v1/messages", s.tok, s.csrf,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777002\",\"text\":\"y\"}");
	assert_int_equal(r.status, 202);
	hresp_free(&r);
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
	hresp_free(&r);
	r = req("GET", "/v1/session", s.tok, NULL, NULL);
	assert_int_equal(r.status, 401);
	hresp_free(&r);
}

static void test_viewer_and_other_tenant(void **state)
{
	(void)state;
	struct sess v, b;
	struct hresp r = login("vic", "vic-pass-1", &v);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "unit"), "cards");
	assert_false(has_scope(r.json, "messages:send"));
	hresp_free(&r);
	r = req("POST", "/v1/messages", v.tok, v.csrf,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777003\",\"text\":\"z\"}");
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	/* bob is other's approver: acme's message does not exist for him. */
	r = login("bob", "bob-pass-1", &b);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "other");
	assert_true(has_scope(r.json, "accounts:write"));
	hresp_free(&r);
	char path[96];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, b.tok, NULL, NULL);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	r = req("GET", "/v1/messages", b.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	hresp_free(&r);
}

static void test_refusals(void **state)
{
	(void)state;
	struct hresp a = login("ana", "wrong-pass", NULL);
	struct hresp b = login("nobody", "wrong-pass", NULL);
	assert_int_equal(a.status, 401);
	assert_int_equal(b.status, 401);
	assert_string_equal(a.body, b.body); /* nothing says which names exist */
	assert_non_null(strstr(a.body, "wrong name or password"));
	hresp_free(&a);
	hresp_free(&b);
	static const char *const bad[][2] = {
	    {"{\"name\":\"ana\"}", "password"},
	    {"{\"name\":\"\",\"password\":\"x\"}", "name"},
	    {"{\"name\":\"ana\",\"password\":7}", "password"},
	    {"{\"name\":\"ana\",\"password\":\"x\",\"api_key\":\"" ACME_KEY "\"}", "api_key"},
	    {"{\"name\":\"ana\",\"password\":\"x\",\"role\":\"admin\"}", "role"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct hresp r = req("POST", "/v1/session", NULL, NULL, bad[i][0]);
		const char *f = jstr(json_object_get(r.json, "error"), "field");
		if (r.status != 422 || strcmp(f, bad[i][1]) != 0)
			fail_msg("%s: %ld %s", bad[i][0], r.status, r.body);
		hresp_free(&r);
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
	    /* the tenants of a login of several. */
	    {"    - {name: x, password_hash: \"@H@\", tenants: [], role: viewer}\n",
	     "dashboard.users[0].tenants is empty"},
	    {"    - {name: x, password_hash: \"@H@\", tenants: [acme, nope], role: viewer}\n",
	     "dashboard.users[0].tenants[1]: no tenant 'nope'"},
	    {"    - {name: x, password_hash: \"@H@\", tenants: [acme, acme], role: viewer}\n",
	     "dashboard.users[0].tenants[1]: tenant 'acme' is listed twice"},
	    {"    - {name: x, password_hash: \"@H@\", tenants: all, role: viewer}\n",
	     "dashboard.users[0].tenants must be a list"},
	    {"    - {name: x, password_hash: \"@H@\", tenant: acme, tenants: [acme],"
	     " role: viewer}\n",
	     "not both"},
	    {"    - {name: x, password_hash: \"@H@\", tenants: [acme], unit: u,"
	     " role: viewer}\n",
	     "dashboard.users[0].unit"},
	    {"    - {name: x, password_hash: \"@H@\", role: viewer,"
	     " tenants: [{id: acme, role: boss}]}\n",
	     "dashboard.users[0].tenants[0].role"},
	    {"    - {name: x, password_hash: \"@H@\", tenant: nope, role: viewer}\n",
	     "dashboard.users[0].tenant: no tenant 'nope'"},
	};
	for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
		char path[400], cmd[1024], out[2048] = "";
		snprintf(path, sizeof path, "%s/bad-%zu.yaml", W.dir, i);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		char user[1024];
		const char *at = strstr(cfgs[i][0], "@H@");
		if (at)
			snprintf(user, sizeof user, "%.*s%s%s", (int)(at - cfgs[i][0]), cfgs[i][0],
			         good_hash, at + 3);
		else
			snprintf(user, sizeof user, "%s", cfgs[i][0]);
		fprintf(
		    f,
		    "server:\n  listen: 127.0.0.1:%d\nstore:\n  driver: sqlite\n  path: %s/bad.db\n"
		    "tenants:\n  - id: acme\n    name: Acme\n    api_keys: "
		    "[hk_bad_0123456789abcdef]\n"
		    "dashboard:\n  users:\n%s",
		    harness_free_port(), W.dir, user);
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

/* ---- logins of several tenants ---- */

static const char *errfield(const struct hresp *r)
{
	return jstr(json_object_get(r->json, "error"), "field");
}

/* The ids of a session's "tenants", comma-separated. */
static void tenant_ids(json_t *session, char *out, size_t size)
{
	out[0] = '\0';
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(session, "tenants"), i, t)
	{
		size_t l = strlen(out);
		snprintf(out + l, size - l, "%s%s", l ? "," : "", jstr(t, "id"));
	}
}

/* GET path with the session: the ids of its "data", comma-separated. */
static void data_ids(const struct sess *s, const char *path, char *out, size_t size)
{
	struct hresp r = req("GET", path, s->tok, NULL, NULL);
	if (r.status != 200)
		fail_msg("GET %s: %ld %s", path, r.status, r.body);
	out[0] = '\0';
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(r.json, "data"), i, d)
	{
		size_t l = strlen(out);
		snprintf(out + l, size - l, "%s%s", l ? "," : "", jstr(d, "id"));
	}
	hresp_free(&r);
}

static struct hresp switch_to(const struct sess *s, const char *csrf, const char *tenant)
{
	char body[512];
	snprintf(body, sizeof body, "{\"tenant\":\"%s\"}", tenant);
	return req("POST", "/v1/session/tenant", s->tok, csrf, body);
}

/* The tenant's audit entries of action by actor, as GET /v1/audit shows
 * them to key (an operator: ?tenant=). *last gets the newest (decref). */
static int audit_count(const char *key, const char *tenant, const char *action, const char *actor,
                       json_t **last)
{
	char url[256];
	snprintf(url, sizeof url, "%s/v1/audit?limit=1000%s%s", W.api, tenant ? "&tenant=" : "",
	         tenant ? tenant : "");
	struct resp a = http("GET", url, key, NULL, NULL);
	if (a.status != 200)
		fail_msg("audit: %ld %s", a.status, a.body);
	int n = 0;
	size_t i;
	json_t *e;
	if (last)
		*last = NULL;
	json_array_foreach(json_object_get(a.json, "entries"), i, e)
	{
		if (strcmp(jstr(e, "action"), action) || strcmp(jstr(e, "actor"), actor))
			continue;
		if (last && !*last)
			*last = json_incref(e); /* newest first */
		n++;
	}
	resp_free(&a);
	return n;
}

static void test_switch_tenant(void **state)
{
	(void)state;
	struct sess s;
	struct hresp r = login("sam", "sam-pass-1", &s);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "acme"); /* the first it lists */
	assert_true(json_is_true(json_object_get(r.json, "tenant_switch")));
	char ids[512];
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme,beta,gamma");
	assert_true(has_scope(r.json, "messages:send")); /* an operator in acme */
	hresp_free(&r);
	/* GET /v1/session says the same, with the tenants' names. */
	r = req("GET", "/v1/session", s.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme,beta,gamma");
	assert_string_equal(jstr(json_array_get(json_object_get(r.json, "tenants"), 1), "name"),
	                    "Beta");
	hresp_free(&r);
	char list[1024];
	data_ids(&s, "/v1/batches", list, sizeof list);
	assert_string_equal(list, camp_acme);

	/* No CSRF token: refused, and nothing moved. */
	r = switch_to(&s, NULL, "beta");
	assert_int_equal(r.status, 403);
	assert_string_equal(errfield(&r), "X-CSRF-Token");
	hresp_free(&r);
	r = req("GET", "/v1/session", s.tok, NULL, NULL);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	hresp_free(&r);
	assert_int_equal(audit_count(BETA_KEY, NULL, "session.tenant", "user:sam", NULL), 0);

	/* With it: in beta, as the viewer the list makes it there. */
	r = switch_to(&s, s.csrf, "beta");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.json, "tenant"), "beta");
	assert_true(json_is_null(json_object_get(r.json, "unit")));
	assert_false(has_scope(r.json, "messages:send"));
	assert_true(has_scope(r.json, "campaigns:read"));
	assert_string_equal(jstr(r.json, "actor"), "user:sam");
	hresp_free(&r);
	/* Only beta's campaigns and messages now; acme's are not found. */
	data_ids(&s, "/v1/batches", list, sizeof list);
	assert_string_equal(list, camp_beta);
	data_ids(&s, "/v1/messages", list, sizeof list);
	assert_int_equal(strncmp(list, msg_beta, strlen(msg_beta)), 0);
	assert_null(strstr(list, msg_acme));
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s", camp_acme);
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	/* A viewer in beta cannot send. */
	r = req("POST", "/v1/messages", s.tok, s.csrf,
	        "{\"channel\":\"whatsapp\",\"to\":\"+447400777902\",\"text\":\"z\"}");
	assert_int_equal(r.status, 403);
	hresp_free(&r);

	/* Audited once, in beta's log: the tenant left is for operators. */
	json_t *e;
	assert_int_equal(audit_count(BETA_KEY, NULL, "session.tenant", "user:sam", &e), 1);
	assert_string_equal(jstr(e, "object"), "user:sam");
	assert_string_equal(jstr(json_object_get(e, "after"), "tenant"), "beta");
	assert_true(json_is_null(json_object_get(e, "before")));
	json_decref(e);
	assert_int_equal(audit_count(ACME_KEY, NULL, "session.tenant", "user:sam", NULL), 0);
	assert_int_equal(audit_count(OPERATOR_KEY, "beta", "session.tenant", "user:sam", &e), 1);
	assert_string_equal(jstr(json_object_get(e, "before"), "tenant"), "acme");
	assert_string_equal(jstr(json_object_get(e, "after"), "tenant"), "beta");
	json_decref(e);

	/* Bodies that say nothing usable: 422 naming the field. */
	static const char *const bad[][2] = {
	    {"{}", "tenant"},
	    {"{\"tenant\":7}", "tenant"},
	    {"{\"tenant\":\"\"}", "tenant"},
	    {"{\"tenant\":\"acme\",\"unit\":\"x\"}", "unit"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = req("POST", "/v1/session/tenant", s.tok, s.csrf, bad[i][0]);
		if (r.status != 422 || strcmp(errfield(&r), bad[i][1]) != 0)
			fail_msg("%s: %ld %s", bad[i][0], r.status, r.body);
		hresp_free(&r);
	}

	/* Back to acme: an operator again, acme's objects again. */
	r = switch_to(&s, s.csrf, "acme");
	assert_int_equal(r.status, 200);
	assert_true(has_scope(r.json, "messages:send"));
	hresp_free(&r);
	data_ids(&s, "/v1/batches", list, sizeof list);
	assert_string_equal(list, camp_acme);
	snprintf(path, sizeof path, "/v1/messages/%s", msg_acme);
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	assert_int_equal(audit_count(ACME_KEY, NULL, "session.tenant", "user:sam", NULL), 1);
	/* Signing in to beta directly. */
	struct sess s2;
	char body[160];
	snprintf(body, sizeof body,
	         "{\"name\":\"sam\",\"password\":\"sam-pass-1\",\"tenant\":\"beta\"}");
	r = req("POST", "/v1/session", NULL, NULL, body);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "beta");
	assert_false(has_scope(r.json, "messages:send"));
	hresp_free(&r);
	(void)s2;
}

static void test_switch_refused(void **state)
{
	(void)state;
	struct sess s;
	struct hresp r = login("sam", "sam-pass-1", &s);
	assert_int_equal(r.status, 201);
	hresp_free(&r);
	/* gamma is in sam's list, then disabled: from then on it answers as
	 * a tenant that does not exist, and so does one sam does not list. */
	char url[256];
	snprintf(url, sizeof url, "%s/v1/tenants/gamma/disable", W.api);
	struct resp d = http("POST", url, OPERATOR_KEY, "{}", NULL);
	assert_int_equal(d.status, 200);
	resp_free(&d);
	struct hresp a = switch_to(&s, s.csrf, "other"); /* exists, not listed */
	struct hresp b = switch_to(&s, s.csrf, "no-such-tenant");
	struct hresp c = switch_to(&s, s.csrf, "gamma"); /* listed, disabled */
	assert_int_equal(a.status, 404);
	assert_int_equal(b.status, 404);
	assert_int_equal(c.status, 404);
	assert_string_equal(a.body, b.body);
	assert_string_equal(c.body, b.body);
	assert_string_equal(errfield(&a), "tenant");
	hresp_free(&a);
	hresp_free(&b);
	hresp_free(&c);
	char x[200];
	memset(x, 'x', 150);
	x[150] = '\0';
	a = switch_to(&s, s.csrf, x); /* too long for an id: the same answer */
	assert_int_equal(a.status, 404);
	hresp_free(&a);
	r = req("GET", "/v1/session", s.tok, NULL, NULL);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	char ids[512];
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme,beta"); /* gamma disabled */
	hresp_free(&r);
	/* Nor can sam sign in to them. */
	static const char *const no[] = {"other", "gamma", "no-such-tenant"};
	for (size_t i = 0; i < 3; i++) {
		char body[160];
		snprintf(body, sizeof body,
		         "{\"name\":\"sam\",\"password\":\"sam-pass-1\",\"tenant\":\"%s\"}", no[i]);
		r = req("POST", "/v1/session", NULL, NULL, body);
		if (r.status != 404 || strcmp(errfield(&r), "tenant"))
			fail_msg("sign-in to %s: %ld %s", no[i], r.status, r.body);
		hresp_free(&r);
	}

	/* A login of one tenant cannot switch, not even to its own. */
	struct sess one;
	r = login("ana", "ana-pass-1", &one);
	assert_int_equal(r.status, 201);
	assert_false(json_is_true(json_object_get(r.json, "tenant_switch")));
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme");
	hresp_free(&r);
	static const char *const targets[] = {"beta", "acme", "no-such-tenant"};
	for (size_t i = 0; i < 3; i++) {
		r = switch_to(&one, one.csrf, targets[i]);
		if (r.status != 403 || strcmp(errfield(&r), "tenant"))
			fail_msg("ana to %s: %ld %s", targets[i], r.status, r.body);
		hresp_free(&r);
	}
	r = req("POST", "/v1/session", NULL, NULL,
	        "{\"name\":\"ana\",\"password\":\"ana-pass-1\",\"tenant\":\"beta\"}");
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	/* An API key's session neither; a bearer key has no session. */
	r = req("POST", "/v1/session", NULL, NULL, "{\"api_key\":\"" ACME_KEY "\"}");
	assert_int_equal(r.status, 201);
	struct sess k;
	const char *ck = strstr(r.headers, "herald_session=");
	assert_non_null(ck);
	snprintf(k.tok, sizeof k.tok, "%.*s", (int)strcspn(ck + 15, ";"), ck + 15);
	snprintf(k.csrf, sizeof k.csrf, "%s", jstr(r.json, "csrf_token"));
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme");
	hresp_free(&r);
	r = switch_to(&k, k.csrf, "beta");
	assert_int_equal(r.status, 403);
	hresp_free(&r);
	r = req("POST", "/v1/session", NULL, NULL,
	        "{\"api_key\":\"" ACME_KEY "\",\"tenant\":\"beta\"}");
	assert_int_equal(r.status, 422);
	assert_string_equal(errfield(&r), "tenant");
	hresp_free(&r);
	snprintf(url, sizeof url, "%s/v1/session/tenant", W.api);
	d = http("POST", url, ACME_KEY, "{\"tenant\":\"beta\"}", NULL);
	assert_int_equal(d.status, 422);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(d.json, "error"), "field")),
	    "session");
	resp_free(&d);

	/* "*": every enabled tenant, now and later. */
	struct sess z;
	r = login("zed", "zed-pass-1", &z);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	tenant_ids(r.json, ids, sizeof ids);
	assert_string_equal(ids, "acme,beta,other");
	hresp_free(&r);
	r = switch_to(&z, z.csrf, "other");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.json, "tenant"), "other");
	hresp_free(&r);
	r = switch_to(&z, z.csrf, "gamma");
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	snprintf(url, sizeof url, "%s/v1/tenants/gamma/enable", W.api);
	d = http("POST", url, OPERATOR_KEY, "{}", NULL);
	assert_int_equal(d.status, 200);
	resp_free(&d);
	r = switch_to(&z, z.csrf, "gamma");
	assert_int_equal(r.status, 200);
	hresp_free(&r);
}

static CURLM *multi; /* the streams held open together */

/* A stream with the session's cookie. */
static void stream_open(struct hstream *st, const char *path, const struct sess *s)
{
	char ck[160];
	snprintf(ck, sizeof ck, "Cookie: herald_session=%s", s->tok);
	const char *h[] = {ck, NULL};
	hstream_open(multi, &W, st, path, h);
}

struct has {
	struct hstream *st;
	const char *text;
};

static bool stream_has(void *arg)
{
	struct has *h = arg;
	return h->st->b.p && strstr(h->st->b.p, h->text);
}

static bool both_done(void *arg)
{
	struct hstream *st = arg;
	return st[0].done && st[1].done;
}

/* Streams opened before a switch end, and show nothing of the tenant
 * left after it; one opened after shows the tenant entered. */
static void test_switch_ends_streams(void **state)
{
	(void)state;
	multi = curl_multi_init();
	assert_non_null(multi);
	struct sess s;
	struct hresp r = login("sam", "sam-pass-1", &s);
	assert_int_equal(r.status, 201);
	assert_string_equal(jstr(r.json, "tenant"), "acme");
	hresp_free(&r);
	struct hstream st[2];
	char path[128];
	stream_open(&st[0], "/v1/events", &s);
	snprintf(path, sizeof path, "/v1/batches/%s/events", camp_acme);
	stream_open(&st[1], path, &s);
	struct has h0 = {&st[0], "acme-camp"}, h1 = {&st[1], camp_acme};
	assert_true(hstreams_until(multi, stream_has, &h0, 20));
	assert_true(hstreams_until(multi, stream_has, &h1, 20));
	assert_false(st[0].done || st[1].done);
	size_t at[2] = {st[0].b.n, st[1].b.n};

	r = switch_to(&s, s.csrf, "beta");
	assert_int_equal(r.status, 200);
	hresp_free(&r);
	/* A change in acme after the switch: a stream still open would show
	 * it within a tick. */
	char url[256];
	snprintf(url, sizeof url, "%s/v1/batches/%s/cancel", W.api, camp_acme);
	struct resp c = http("POST", url, ACME_KEY, "{}", NULL);
	assert_int_equal(c.status, 200);
	resp_free(&c);
	/* Both end (the browser's EventSource would reconnect, as beta). */
	if (!hstreams_until(multi, both_done, st, 10))
		fail_msg("streams still open after the switch: %d %d", st[0].done, st[1].done);
	for (int i = 0; i < 2; i++) {
		const char *after = st[i].b.p ? st[i].b.p + at[i] : "";
		if (strstr(after, "acme-camp") || strstr(after, "cancelled"))
			fail_msg("stream %d after the switch: %s", i, after);
	}
	hstream_close(multi, &st[0]);
	hstream_close(multi, &st[1]);
	/* Opened now: beta's campaigns, none of acme's. */
	stream_open(&st[0], "/v1/events", &s);
	struct has hb = {&st[0], "beta-camp"};
	assert_true(hstreams_until(multi, stream_has, &hb, 20));
	assert_null(strstr(st[0].b.p, "acme-camp"));
	/* And acme's campaign stream is not found from beta. */
	r = req("GET", path, s.tok, NULL, NULL);
	assert_int_equal(r.status, 404);
	hresp_free(&r);
	hstream_close(multi, &st[0]);
	curl_multi_cleanup(multi);
	multi = NULL;
}

/* Last: it locks names and addresses out for the window. */
static void test_failure_limit(void **state)
{
	(void)state;
	/* Per name: five failures for eve from 127.0.0.2, then even the right
	 * password from another address (127.0.0.3) waits. */
	g_iface = "127.0.0.2";
	for (int i = 0; i < 5; i++) {
		struct hresp r = login("eve", "not-it", NULL);
		assert_int_equal(r.status, 401);
		hresp_free(&r);
	}
	g_iface = "127.0.0.3";
	struct hresp r = login("eve", "eve-pass-1", NULL);
	assert_int_equal(r.status, 429);
	assert_non_null(strcasestr(r.headers, "Retry-After:"));
	assert_string_equal(jstr(json_object_get(r.json, "error"), "code"), "rate_limited");
	hresp_free(&r);
	/* Another name from 127.0.0.3 is fine. */
	r = login("vic", "vic-pass-1", NULL);
	assert_int_equal(r.status, 201);
	hresp_free(&r);
	/* Per address: 127.0.0.1 had two failures (test_refusals); three more,
	 * each for a different name, and then ana's right password from there
	 * waits too. */
	g_iface = "127.0.0.1";
	static const char *const names[] = {"x1", "x2", "x3"};
	for (int i = 0; i < 3; i++) {
		r = login(names[i], "nope", NULL);
		assert_int_equal(r.status, 401);
		hresp_free(&r);
	}
	r = login("ana", "ana-pass-1", NULL);
	assert_int_equal(r.status, 429);
	hresp_free(&r);
	g_iface = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_operator_login), cmocka_unit_test(test_viewer_and_other_tenant),
	    cmocka_unit_test(test_refusals),       cmocka_unit_test(test_switch_tenant),
	    cmocka_unit_test(test_switch_refused), cmocka_unit_test(test_switch_ends_streams),
	    cmocka_unit_test(test_failure_limit),
	};
	return cmocka_run_group_tests_name("login", tests, setup, teardown);
}
