/*
 * test_authz.c - authorisation, proven against the route table itself, on
 * a real `herald serve` with `herald sim`.
 *
 * The routes come from api_route_info (src/api/server.c), not from a list
 * here: every route and method is attacked, and a route this file has no
 * fixture for fails the test, so a new route cannot ship unchecked. For
 * each one:
 *  - no credential: 401;
 *  - an acme key holding every scope but the route's: 403 naming it;
 *  - tenant "other" (every scope) on acme's objects: 404 (admin routes:
 *    404; operator routes: 403), never acme's data; on collections the
 *    answer holds none of acme's ids;
 *  - a key of acme's unit "cards" on objects of its sibling "loans": 404
 *    (routes not split by unit: 403), and collections hold none of them;
 *  - the positive control: "loans" reads its own objects (200).
 * /metrics: `metrics:read` on a tenant-wide key or token, and the
 * unauthenticated scrape listener (server.metrics_listen) serving it and
 * nothing else.
 * Then the credentials themselves: admin API (keys shown once, scopes no
 * wider than the creator's, revocation at once, expiry, disabled units and
 * tenants, last use recorded), the audit log, and JWTs (HS256 per server
 * and per tenant, RS256, ES256; expired, not yet valid, wrong audience or
 * issuer, wrong key, alg none, algorithm confusion, another tenant's
 * claims under acme's secret).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>

#include "api/api.h"
#include "core/crypto.h"
#include "harness.h"

#define BETA_KEY "hk_other_0123456789abcdef" /* tenant "other": every scope */
#define OPERATOR_KEY "op-0123456789abcdef0123456789abcdef-operator"
#define JWT_SECRET "server-jwt-secret-0123456789abcdef0123"
#define ACME_JWT_SECRET "acme-own-jwt-secret-0123456789abcdef01"

static struct world W;
static char g_dir[64]; /* this test's own files: JWT keys */
static char g_server_yaml[256], g_extra[1024], g_tenants[512];
static int g_metrics_port; /* server.metrics_listen */

/* Keys made through the admin API in setup. */
static char k_cards[96], k_loans[96], k_admin[96], k_admin_prefix[24];
static char k_not[9][96]; /* k_not[i]: every scope but bit i, tenant-wide */
/* acme's objects of unit "loans". */
static char msg_l[32], batch_l[32];
static const char *acct_l = "loans-wa";

static const char *const scope_names[] = {
    "messages:send",  "messages:read",      "campaigns:write", "campaigns:read", "templates:write",
    "accounts:write", "suppressions:write", "metrics:read",    "admin"};

static struct resp call(const char *method, const char *path, const char *key, const char *body)
{
	char url[1024];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http_t(method, url, key, body, NULL, 20000);
}

static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strdup(buf);
}

/* The error message of a JSON error answer ("" if none). */
static const char *errmsg(const struct resp *r)
{
	const char *m =
	    json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
	return m ? m : "";
}

/* POST as the operator; the answer must be `want`; returns the JSON (caller decrefs). */
static json_t *op_post(const char *path, const char *body, long want)
{
	struct resp r = call("POST", path, OPERATOR_KEY, body);
	if (r.status != want)
		fail_msg("POST %s: %ld %s", path, r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static void make_key(const char *by, const char *body, char out[96], char prefix[24])
{
	struct resp r = call("POST", "/v1/tenants/acme/keys", by, body);
	if (r.status != 201)
		fail_msg("key %s: %ld %s", body, r.status, r.body);
	const char *k = json_string_value(json_object_get(r.json, "key"));
	assert_non_null(k);
	snprintf(out, 96, "%s", k);
	if (prefix)
		snprintf(prefix, 24, "%s", json_string_value(json_object_get(r.json, "prefix")));
	resp_free(&r);
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/herald-authz-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/rsa.pem "
	   "2>/dev/null",
	   g_dir);
	sh("openssl pkey -in %s/rsa.pem -pubout -out %s/rsa.pub", g_dir, g_dir);
	sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/rsa2.pem "
	   "2>/dev/null",
	   g_dir);
	sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s/ec.pem", g_dir);
	sh("openssl pkey -in %s/ec.pem -pubout -out %s/ec.pub", g_dir, g_dir);
	setenv("HERALD_TEST_OPERATOR", OPERATOR_KEY, 1);
	setenv("HERALD_TEST_JWT", JWT_SECRET, 1);
	setenv("HERALD_TEST_ACME_JWT", ACME_JWT_SECRET, 1);
	setenv("HERALD_SECRET_ACME__WA_TOKEN", "acme-loans-wa-token", 1);

	g_metrics_port = harness_free_port();
	snprintf(g_server_yaml, sizeof g_server_yaml,
	         "  operator_keys: [env:HERALD_TEST_OPERATOR]\n  allowed_origins: [\"@SIM@\"]\n"
	         "  metrics_listen: 127.0.0.1:%d\n",
	         g_metrics_port);
	harness_server_extra(g_server_yaml);
	/* Tenant "jwtco" has its own HS256 secret: only it verifies tokens
	 * naming jwtco. */
	snprintf(g_tenants, sizeof g_tenants,
	         "  - id: jwtco\n    name: JWT Co\n    jwt:\n      hs256_secret: "
	         "env:HERALD_TEST_ACME_JWT\n");
	harness_tenants_extra(g_tenants);
	snprintf(g_extra, sizeof g_extra,
	         "auth:\n  jwt:\n    hs256_secret: env:HERALD_TEST_JWT\n"
	         "    public_keys: [\"file:%s/rsa.pub\", {pem: \"file:%s/ec.pub\", kid: ec1}]\n"
	         "    issuer: test-idp\n    audience: herald\n    leeway_seconds: 5\n",
	         g_dir, g_dir);
	world_init2(
	    &W,
	    "      - id: sim-knows-loans\n        channel: whatsapp\n        base_url: @SIM@\n"
	    "        phone_number_id: \"555000444\"\n"
	    "        access_token: acme-loans-wa-token\n"
	    "        app_secret: unused-secret\n        verify_token: unused\n",
	    NULL, NULL, NULL, g_extra);
	harness_server_extra(NULL);
	harness_tenants_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);

	/* The operator makes acme's units and keys. */
	json_decref(
	    op_post("/v1/tenants/acme/units", "{\"id\":\"cards\",\"name\":\"Cards\"}", 201));
	json_decref(op_post("/v1/tenants/acme/units", "{\"id\":\"loans\"}", 201));
	make_key(OPERATOR_KEY, "{\"scopes\":\"*\",\"unit\":\"cards\"}", k_cards, NULL);
	make_key(OPERATOR_KEY, "{\"scopes\":[\"*\"],\"unit\":\"loans\",\"label\":\"loans app\"}",
	         k_loans, NULL);
	make_key(OPERATOR_KEY, "{\"scopes\":[\"admin\",\"messages:read\"]}", k_admin,
	         k_admin_prefix);
	for (int i = 0; i < 9; i++) {
		char body[512] = "{\"scopes\":[";
		bool first = true;
		for (int k = 0; k < 9; k++) {
			if (k == i)
				continue;
			strcat(body, first ? "\"" : ",\"");
			strcat(body, scope_names[k]);
			strcat(body, "\"");
			first = false;
		}
		strcat(body, "]}");
		make_key(OPERATOR_KEY, body, k_not[i], NULL);
	}

	/* acme's objects of unit loans, made with the loans key. */
	char body[1024];
	snprintf(body, sizeof body,
	         "{\"id\":\"%s\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	         "\"phone_number_id\":\"555000444\","
	         "\"access_token\":\"env:HERALD_SECRET_ACME__WA_TOKEN\","
	         "\"app_secret\":\"env:HERALD_SECRET_ACME__WA_TOKEN\","
	         "\"verify_token\":\"env:HERALD_SECRET_ACME__WA_TOKEN\"}",
	         acct_l, W.sim);
	struct resp r = call("POST", "/v1/channels", k_loans, body);
	if (r.status != 201)
		fail_msg("loans account: %ld %s", r.status, r.body);
	resp_free(&r);
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"+447911000101\","
	         "\"text\":\"loans message\"}",
	         acct_l);
	r = call("POST", "/v1/messages", k_loans, body);
	if (r.status != 202)
		fail_msg("loans message: %ld %s", r.status, r.body);
	snprintf(msg_l, sizeof msg_l, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	snprintf(body, sizeof body,
	         "{\"name\":\"loans campaign\",\"channel\":\"whatsapp\",\"account\":\"%s\","
	         "\"text\":\"Hi {{1}}\",\"params\":[\"who\"],\"start\":false,"
	         "\"rows\":[{\"phone\":\"+447911000102\",\"who\":\"Ann\"}]}",
	         acct_l);
	r = call("POST", "/v1/batches", k_loans, body);
	if (r.status != 201)
		fail_msg("loans batch: %ld %s", r.status, r.body);
	snprintf(batch_l, sizeof batch_l, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "loans");
	resp_free(&r);
	r = call("POST", "/v1/templates", k_loans,
	         "{\"channel\":\"whatsapp\",\"name\":\"loans_tpl\",\"language\":\"en\","
	         "\"body\":\"Loan {{1}} due\"}");
	if (r.status != 201)
		fail_msg("loans template: %ld %s", r.status, r.body);
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "loans");
	resp_free(&r);
	r = call("POST", "/v1/suppressions", k_loans,
	         "{\"channel\":\"whatsapp\",\"to\":\"+447911000199\"}");
	if (r.status != 201 && r.status != 200)
		fail_msg("suppression: %ld %s", r.status, r.body);
	resp_free(&r);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	if (getenv("AUTHZ_KEEP_LOG")) { /* debugging: the server's log survives */
		char c[600];
		snprintf(c, sizeof c, "cp %s %s", W.serve.log, getenv("AUTHZ_KEEP_LOG"));
		if (system(c) != 0)
			fprintf(stderr, "cannot keep the log\n");
	}
	world_free(&W);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---------------------------------------------------------------------------
 * The route table, attacked entry by entry.
 * ------------------------------------------------------------------------- */

/* Fills a route pattern with acme's objects (or, fake, with ids that exist
 * nowhere). false if this file has no fixture for it. */
static bool fill(const char *pattern, bool fake, char *out, size_t size)
{
	static const struct {
		const char *pattern, *real, *fake;
	} ids[] = {
	    {"/v1/messages/{id}", NULL, "/v1/messages/01KZZZZZZZZZZZZZZZZZZZZZZZ"},
	    {"/v1/channels/{id}", NULL, "/v1/channels/no-such-account"},
	    {"/v1/channels/{id}/capabilities", NULL, "/v1/channels/no-such-account/capabilities"},
	    {"/v1/suppressions/{channel}/{to}", "/v1/suppressions/whatsapp/+447911000199",
	     "/v1/suppressions/whatsapp/+447911000198"},
	    {"/v1/callbacks/{id}", "/v1/callbacks/1", "/v1/callbacks/999999"},
	    {"/v1/callbacks/{id}/replay", "/v1/callbacks/1/replay", "/v1/callbacks/999999/replay"},
	    {"/v1/tenants/{tenant}", "/v1/tenants/acme", "/v1/tenants/nobody"},
	    {"/v1/tenants/{tenant}/disable", "/v1/tenants/acme/disable",
	     "/v1/tenants/nobody/disable"},
	    {"/v1/tenants/{tenant}/enable", "/v1/tenants/acme/enable", "/v1/tenants/nobody/enable"},
	    {"/v1/tenants/{tenant}/units", "/v1/tenants/acme/units", "/v1/tenants/nobody/units"},
	    {"/v1/tenants/{tenant}/units/{unit}/disable", "/v1/tenants/acme/units/loans/disable",
	     "/v1/tenants/nobody/units/loans/disable"},
	    {"/v1/tenants/{tenant}/units/{unit}/enable", "/v1/tenants/acme/units/loans/enable",
	     "/v1/tenants/nobody/units/loans/enable"},
	    {"/v1/tenants/{tenant}/keys", "/v1/tenants/acme/keys", "/v1/tenants/nobody/keys"},
	    {"/v1/tenants/{tenant}/limits", "/v1/tenants/acme/limits", "/v1/tenants/nobody/limits"},
	    {"/v1/tenants/{tenant}/keys/{prefix}/revoke", NULL,
	     "/v1/tenants/nobody/keys/hk_00000000/revoke"},
	    {"/v1/templates/{channel}/{name}/{language}", "/v1/templates/whatsapp/loans_tpl/en",
	     "/v1/templates/whatsapp/no_such_tpl/en"},
	    {"/v1/units/{unit}/stats", "/v1/units/loans/stats", "/v1/units/no-such-unit/stats"},
	    {"/v1/units/{unit}/campaigns", "/v1/units/loans/campaigns",
	     "/v1/units/no-such-unit/campaigns"},
	    /* a recipient's history, by number or by message. */
	    {"/v1/recipients/{to}", "/v1/recipients/+447911000101", "/v1/recipients/+447911000198"},
	    {"/v1/messages/{id}/recipient", NULL,
	     "/v1/messages/01KZZZZZZZZZZZZZZZZZZZZZZZ/recipient"},
	    /* an account's health and its pause. */
	    {"/v1/channels/{id}/health", NULL, "/v1/channels/no-such-account/health"},
	    {"/v1/channels/{id}/pause", NULL, "/v1/channels/no-such-account/pause"},
	    {"/v1/channels/{id}/resume", NULL, "/v1/channels/no-such-account/resume"},
	};
	if (!strchr(pattern, '{')) {
		snprintf(out, size, "%s", pattern);
		return true;
	}
	if (strncmp(pattern, "/v1/batches/{id}", 16) == 0) {
		snprintf(out, size, "/v1/batches/%s%s",
		         fake ? "01KZZZZZZZZZZZZZZZZZZZZZZZ" : batch_l, pattern + 16);
		return true;
	}
	for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
		if (strcmp(pattern, ids[i].pattern) != 0)
			continue;
		if (fake)
			snprintf(out, size, "%s", ids[i].fake);
		else if (!strcmp(pattern, "/v1/messages/{id}"))
			snprintf(out, size, "/v1/messages/%s", msg_l);
		else if (!strcmp(pattern, "/v1/messages/{id}/recipient"))
			snprintf(out, size, "/v1/messages/%s/recipient", msg_l);
		else if (!strncmp(pattern, "/v1/channels/{id}/", 18))
			snprintf(out, size, "/v1/channels/%s/%s", acct_l, pattern + 18);
		else if (!strcmp(pattern, "/v1/channels/{id}"))
			snprintf(out, size, "/v1/channels/%s", acct_l);
		else if (!strcmp(pattern, "/v1/channels/{id}/capabilities"))
			snprintf(out, size, "/v1/channels/%s/capabilities", acct_l);
		else if (!strcmp(pattern, "/v1/tenants/{tenant}/keys/{prefix}/revoke"))
			snprintf(out, size, "/v1/tenants/acme/keys/%s/revoke", k_admin_prefix);
		else
			snprintf(out, size, "%s", ids[i].real);
		return true;
	}
	return false;
}

/* A body that names acme's objects where a route takes one. */
static const char *body_for(const char *path, const char *method)
{
	static char b[512];
	if (strcmp(method, "POST") != 0)
		return NULL;
	if (!strcmp(path, "/v1/messages")) {
		snprintf(b, sizeof b,
		         "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"+447911000103\","
		         "\"text\":\"x\"}",
		         acct_l);
		return b;
	}
	if (!strcmp(path, "/v1/messages:batch")) {
		snprintf(b, sizeof b,
		         "{\"messages\":[{\"channel\":\"whatsapp\",\"account\":\"%s\","
		         "\"to\":\"+447911000104\",\"text\":\"x\"}]}",
		         acct_l);
		return b;
	}
	if (!strcmp(path, "/v1/batches")) {
		snprintf(
		    b, sizeof b,
		    "{\"name\":\"x\",\"channel\":\"whatsapp\",\"account\":\"%s\",\"text\":\"x\","
		    "\"rows\":[{\"phone\":\"+447911000105\"}],\"dry_run\":true}",
		    acct_l);
		return b;
	}
	return "{}";
}

static bool public_ok(const char *path)
{
	/* The dashboard's files hold no data (test_dashboard). */
	return !strcmp(path, "/healthz") || !strcmp(path, "/readyz") ||
	       !strcmp(path, "/openapi.json") || /* documentation, no tenant data */
	       !strcmp(path, "/webhooks/{channel}/{account}") || !strcmp(path, "/") ||
	       !strcmp(path, "/ui/{path}") ||
	       /* Sign-in takes a key in its body; GET and DELETE authenticate
	        * the session cookie themselves (test_dashboard). */
	       !strcmp(path, "/v1/session");
}

/* The body holds none of acme's loans objects. */
static void no_leak(const struct resp *r, const char *who, const char *path)
{
	const char *secrets[] = {msg_l,           batch_l,         "+447911000101",
	                         "+447911000102", "+447911000199", "loans campaign",
	                         "loans_tpl",     "Loan {{1}} due"};
	for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
		if (r->body && strstr(r->body, secrets[i]) && !strstr(path, secrets[i]))
			fail_msg("%s on %s: the answer shows acme's %s: %s", who, path, secrets[i],
			         r->body);
}

static void test_route_table(void **state)
{
	(void)state;
	size_t n = api_route_count();
	assert_true(n >= 40); /* the table as of this test; it only grows */
	int checked = 0;
	for (size_t i = 0; i < n; i++) {
		struct api_route_info ri;
		assert_int_equal(api_route_info(i, &ri), 0);
		if (!strcmp(ri.access, "public")) {
			if (!public_ok(ri.path))
				fail_msg("%s %s is public: say why in test_authz (public_ok)",
				         ri.method, ri.path);
			assert_null(ri.scope);
			continue;
		}
		if (!ri.scope)
			fail_msg("%s %s: no scope", ri.method, ri.path);
		char real[512], fake[512];
		if (!fill(ri.path, false, real, sizeof real) ||
		    !fill(ri.path, true, fake, sizeof fake))
			fail_msg(
			    "%s %s has no fixture in test_authz: add one (its objects, for every "
			    "check)",
			    ri.method, ri.path);
		/* Server-Sent Events never end: only the answers before the stream. */
		bool stream = strstr(ri.path, "/events") != NULL;
		const char *body = body_for(ri.path, ri.method);
		bool has_id = strchr(ri.path, '{') != NULL;

		/* No credential. */
		struct resp r = call(ri.method, real, NULL, body);
		if (r.status != 401)
			fail_msg("%s %s without a credential: %ld", ri.method, real, r.status);
		resp_free(&r);

		/* Every scope but the route's: 403 naming it. */
		int bit = -1;
		for (int k = 0; k < 9; k++)
			if (!strcmp(scope_names[k], ri.scope))
				bit = k;
		assert_true(bit >= 0);
		r = call(ri.method, real, k_not[bit], body);
		if (r.status != 403 || !strstr(errmsg(&r), ri.scope))
			fail_msg("%s %s without %s: %ld %s", ri.method, real, ri.scope, r.status,
			         r.body);
		resp_free(&r);

		/* A stream of the caller's own (GET /v1/events) opens for any
		 * tenant and never ends: what it shows to whom is
		 * test_dashboard's (two tenants, two units). */
		if (stream && !has_id) {
			checked++;
			continue;
		}

		/* Tenant "other", every scope, on acme's objects. */
		r = call(ri.method, real, BETA_KEY, body);
		struct resp rf = stream ? (struct resp){0} : call(ri.method, fake, BETA_KEY, body);
		if (!strcmp(ri.access, "operator")) {
			if (r.status != 403)
				fail_msg("%s %s by another tenant: %ld", ri.method, real, r.status);
		} else if (!strcmp(ri.access, "admin") && has_id) {
			if (r.status != 404)
				fail_msg("%s %s by another tenant: %ld %s", ri.method, real,
				         r.status, r.body);
		} else if (has_id) {
			if (r.status != 404)
				fail_msg("%s %s by another tenant: %ld %s", ri.method, real,
				         r.status, r.body);
		} else if (!stream && r.status != rf.status) {
			fail_msg("%s %s by another tenant: %ld, but %ld for nothing of acme's",
			         ri.method, real, r.status, rf.status);
		}
		no_leak(&r, "another tenant", real);
		resp_free(&r);
		resp_free(&rf);

		/* acme's unit "cards" on its sibling's objects. */
		r = call(ri.method, real, k_cards, body);
		if (!strcmp(ri.access, "tenant")) {
			if (has_id && r.status != 404)
				fail_msg("%s %s by a sibling unit: %ld %s", ri.method, real,
				         r.status, r.body);
			/* Naming the sibling's account (or nothing valid) makes nothing. */
			if (!has_id && !strcmp(ri.method, "POST") && r.status >= 200 &&
			    r.status < 300)
				fail_msg("%s %s by a sibling unit with its objects: %ld %s",
				         ri.method, real, r.status, r.body);
		} else if (r.status != 403) {
			fail_msg("%s %s (%s) by a unit key: %ld %s", ri.method, real, ri.access,
			         r.status, r.body);
		}
		no_leak(&r, "a sibling unit", real);
		resp_free(&r);

		/* The positive control: the owner reaches its own objects (a
		 * WhatsApp account has no capability check: 422, not 404). */
		if (!strcmp(ri.access, "tenant") && has_id && !strcmp(ri.method, "GET") &&
		    !stream) {
			r = call(ri.method, real, k_loans, NULL);
			if (r.status != (strstr(ri.path, "capabilities") ? 422 : 200))
				fail_msg("%s %s by its owner: %ld %s", ri.method, real, r.status,
				         r.body);
			resp_free(&r);
		}
		checked++;
	}
	assert_true(checked >= 35);
}

/* ---------------------------------------------------------------------------
 * Keys, units, tenants, audit.
 * ------------------------------------------------------------------------- */

static bool key_used(struct world *w, void *arg)
{
	(void)w;
	struct resp r = call("GET", "/v1/tenants/acme/keys", k_admin, NULL);
	bool used = false;
	size_t i;
	json_t *k;
	json_array_foreach(
	    json_object_get(r.json, "keys"), i,
	    k) if (!strcmp(json_string_value(json_object_get(k, "prefix")), (const char *)arg))
	    used = json_is_string(json_object_get(k, "last_used_at"));
	resp_free(&r);
	return used;
}

static void test_keys_lifecycle(void **state)
{
	(void)state;
	/* The tenant's admin makes a key: shown once, its scopes within the
	 * admin's own. */
	struct resp r =
	    call("POST", "/v1/tenants/acme/keys", k_admin, "{\"scopes\":[\"messages:send\"]}");
	assert_int_equal(r.status, 403);
	assert_non_null(strstr(errmsg(&r), "messages:send"));
	resp_free(&r);
	r = call("POST", "/v1/tenants/acme/keys", k_admin, "{\"scopes\":[\"messages:reed\"]}");
	assert_int_equal(r.status, 422);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
	    "scopes");
	resp_free(&r);
	char key[96], prefix[24];
	make_key(k_admin, "{\"scopes\":[\"messages:read\"],\"label\":\"reader\"}", key, prefix);
	assert_int_equal(strncmp(key, prefix, strlen(prefix)), 0);
	assert_int_equal(strlen(key), strlen("hk_01234567_") + 43);
	r = call("GET", "/v1/tenants/acme/keys", k_admin, NULL);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, key + strlen(prefix) + 1)); /* the secret part, never again */
	char hash[65];
	hr_sha256_hex(key, strlen(key), hash);
	assert_null(strstr(r.body, hash));
	assert_non_null(strstr(r.body, prefix));
	resp_free(&r);

	r = call("GET", "/v1/messages", key, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* Its last use is recorded, off the request path. */
	assert_true(wait_until(key_used, &W, prefix, 10));

	/* Another tenant cannot revoke it; its tenant's admin can: the next
	 * request fails. */
	char path[128];
	snprintf(path, sizeof path, "/v1/tenants/acme/keys/%s/revoke", prefix);
	r = call("POST", path, BETA_KEY, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/tenants/other/keys/%s/revoke", prefix);
	r = call("POST", path, BETA_KEY, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	r = call("GET", "/v1/messages", key, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/tenants/acme/keys/%s/revoke", prefix);
	r = call("POST", path, k_admin, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	r = call("GET", "/v1/messages", key, NULL);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(errmsg(&r), "revoked"));
	resp_free(&r);
	r = call("POST", path, k_admin, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);

	/* Expiry. */
	r = call("POST", "/v1/tenants/acme/keys", k_admin,
	         "{\"scopes\":[\"messages:read\"],\"expires_at\":\"2001-01-01T00:00:00Z\"}");
	assert_int_equal(r.status, 422);
	resp_free(&r);
	char exp[64], body[160];
	time_t soon = time(NULL) + 2;
	strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&soon));
	snprintf(body, sizeof body, "{\"scopes\":[\"messages:read\"],\"expires_at\":\"%s\"}", exp);
	char shortk[96];
	make_key(k_admin, body, shortk, NULL);
	r = call("GET", "/v1/messages", shortk, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	for (int i = 0; i < 50 && time(NULL) <= soon; i++)
		usleep(100000);
	r = call("GET", "/v1/messages", shortk, NULL);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(errmsg(&r), "expired"));
	resp_free(&r);

	/* A disabled unit's keys stop at once; enabled, they work again. */
	json_decref(op_post("/v1/tenants/acme/units/loans/disable", NULL, 200));
	r = call("GET", "/v1/messages", k_loans, NULL);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(errmsg(&r), "unit"));
	resp_free(&r);
	json_decref(op_post("/v1/tenants/acme/units/loans/enable", NULL, 200));
	r = call("GET", "/v1/messages", k_loans, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* A disabled tenant's too; a tenant's admin cannot disable tenants. */
	r = call("POST", "/v1/tenants/other/disable", BETA_KEY, NULL);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	json_decref(op_post("/v1/tenants/other/disable", NULL, 200));
	r = call("GET", "/v1/messages", BETA_KEY, NULL);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(errmsg(&r), "disabled"));
	resp_free(&r);
	json_decref(op_post("/v1/tenants/other/enable", NULL, 200));
	r = call("GET", "/v1/messages", BETA_KEY, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);

	/* Operators manage; they read no tenant's data. */
	r = call("GET", "/v1/messages", OPERATOR_KEY, NULL);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	json_t *t = op_post("/v1/tenants", "{\"id\":\"newco\",\"name\":\"New Co\"}", 201);
	assert_string_equal(json_string_value(json_object_get(t, "id")), "newco");
	json_decref(t);
	json_decref(op_post("/v1/tenants", "{\"id\":\"newco\"}", 409));
	json_decref(op_post("/v1/tenants", "{\"id\":\"bad id\"}", 422));
	json_decref(op_post("/v1/tenants", "{\"id\":\"x\",\"admin\":true}", 422));
	r = call("POST", "/v1/tenants/nobody/keys", OPERATOR_KEY, "{\"scopes\":[\"admin\"]}");
	assert_int_equal(r.status, 404);
	resp_free(&r);
	/* Idempotency keys are per unit: the same key and request from two
	 * units make two messages, neither replaying the other's answer. */
	{
		const char *idem[] = {"Idempotency-Key: order-42", NULL};
		const char *msg = "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\","
		                  "\"to\":\"+447911000107\",\"text\":\"same\"}";
		char url[256];
		snprintf(url, sizeof url, "%s/v1/messages", W.api);
		struct resp a1 = http("POST", url, k_cards, msg, idem);
		struct resp a2 = http("POST", url, k_loans, msg, idem);
		struct resp a3 = http("POST", url, k_loans, msg, idem);
		assert_int_equal(a1.status, 202);
		assert_int_equal(a2.status, 202);
		const char *id1 = json_string_value(json_object_get(a1.json, "id"));
		const char *id2 = json_string_value(json_object_get(a2.json, "id"));
		const char *id3 = json_string_value(json_object_get(a3.json, "id"));
		assert_non_null(id1);
		assert_non_null(id2);
		assert_string_not_equal(id1, id2);
		assert_string_equal(id2, id3); /* the same unit: a replay */
		resp_free(&a1);
		resp_free(&a2);
		resp_free(&a3);
	}
	/* A unit key names its own unit's campaigns only. */
	r = call("POST", "/v1/batches", k_cards,
	         "{\"name\":\"x\",\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"text\":\"x\","
	         "\"unit\":\"loans\",\"rows\":[{\"phone\":\"+447911000106\"}],\"dry_run\":true}");
	assert_int_equal(r.status, 403);
	resp_free(&r);
}

static void test_audit(void **state)
{
	(void)state;
	/* Cancel acme's loans campaign (audited), then read acme's log. */
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", batch_l);
	struct resp r = call("POST", path, k_loans, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	r = call("GET", "/v1/audit?limit=1000", k_admin, NULL);
	assert_int_equal(r.status, 200);
	json_t *e = json_object_get(r.json, "entries");
	bool unit_create = false, key_revoke = false, cancel = false, account = false;
	size_t i;
	json_t *x;
	json_array_foreach(e, i, x)
	{
		const char *action = json_string_value(json_object_get(x, "action"));
		const char *actor = json_string_value(json_object_get(x, "actor"));
		assert_string_equal(json_string_value(json_object_get(x, "tenant")), "acme");
		if (!strcmp(action, "unit.create"))
			unit_create = unit_create || !strncmp(actor, "operator:", 9);
		if (!strcmp(action, "key.revoke")) {
			char want[40];
			snprintf(want, sizeof want, "key:%s", k_admin_prefix);
			key_revoke = key_revoke || !strcmp(actor, want);
			assert_true(
			    json_is_true(json_object_get(json_object_get(x, "after"), "revoked")));
		}
		if (!strcmp(action, "batch.cancel"))
			cancel =
			    !strcmp(json_string_value(json_object_get(x, "object")) + 6, batch_l);
		if (!strcmp(action, "account.create"))
			account = account || strstr(json_string_value(json_object_get(x, "object")),
			                            acct_l) != NULL;
		/* Secrets are references in what is logged, never values. */
		char *dump = json_dumps(x, 0);
		assert_null(strstr(dump, "acme-loans-wa-token"));
		free(dump);
	}
	assert_true(unit_create);
	assert_true(key_revoke);
	assert_true(cancel);
	assert_true(account);
	resp_free(&r);
	/* Another tenant's admin sees none of it, and cannot ask for it. */
	r = call("GET", "/v1/audit", BETA_KEY, NULL);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "\"acme\""));
	resp_free(&r);
	r = call("GET", "/v1/audit?tenant=acme", BETA_KEY, NULL);
	assert_int_equal(r.status, 422);
	resp_free(&r);
	r = call("GET", "/v1/audit?tenant=acme&limit=2", OPERATOR_KEY, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "entries")), 2);
	assert_non_null(json_object_get(r.json, "next_cursor"));
	resp_free(&r);
}

/* ---------------------------------------------------------------------------
 * JWTs.
 * ------------------------------------------------------------------------- */

static char *mint(jwt_alg_t alg, const char *key_file_or_secret, const char *tenant,
                  const char *unit, const char *scope, long exp_in, long nbf_in, const char *aud,
                  const char *iss, const char *kid)
{
	jwt_t *t;
	assert_int_equal(jwt_new(&t), 0);
	time_t now = time(NULL);
	jwt_add_grant(t, "sub", "alice@idp");
	if (tenant)
		jwt_add_grant(t, "tenant", tenant);
	if (unit)
		jwt_add_grant(t, "unit", unit);
	if (scope)
		jwt_add_grant(t, "scope", scope);
	if (aud)
		jwt_add_grant(t, "aud", aud);
	if (iss)
		jwt_add_grant(t, "iss", iss);
	jwt_add_grant_int(t, "exp", (long)now + exp_in);
	if (nbf_in)
		jwt_add_grant_int(t, "nbf", (long)now + nbf_in);
	if (kid)
		jwt_add_header(t, "kid", kid);
	char *key = NULL;
	int klen;
	if (alg == JWT_ALG_HS256) {
		key = strdup(key_file_or_secret);
		klen = (int)strlen(key);
	} else {
		key = slurp(key_file_or_secret);
		klen = (int)strlen(key);
	}
	assert_int_equal(jwt_set_alg(t, alg, (const unsigned char *)key, klen), 0);
	char *s = jwt_encode_str(t);
	assert_non_null(s);
	free(key);
	jwt_free(t);
	return s;
}

static void expect(const char *method, const char *path, const char *tok, long status,
                   const char *reason);

/* The herald_queue_depth lines of a scrape, in order (caller frees). */
static char *depth_lines(const char *body)
{
	size_t cap = 4096, len = 0;
	char *out = calloc(1, cap);
	assert_non_null(out);
	for (const char *p = body; p && (p = strstr(p, "\nherald_queue_depth{")) != NULL; p++) {
		size_t n = strcspn(p + 1, "\n") + 1;
		assert_true(len + n + 1 < cap);
		memcpy(out + len, p + 1, n);
		len += n;
		out[len - 1] = '\n';
	}
	return out;
}

/*
 * /metrics on the API port: 401 without a credential, 200 for a key or a
 * token holding only `metrics:read`, 403 (naming the scope) for a key
 * without it, 403 for a unit's key (the figures are every tenant's) and
 * for an operator. The scrape listener: the same figures with no
 * credential, /metrics only, no body read.
 */
static void test_metrics_access(void **state)
{
	(void)state;
	char k_metrics[96], k_unit_metrics[96];
	make_key(OPERATOR_KEY, "{\"scopes\":[\"metrics:read\"]}", k_metrics, NULL);
	make_key(OPERATOR_KEY, "{\"scopes\":[\"metrics:read\"],\"unit\":\"cards\"}", k_unit_metrics,
	         NULL);
	expect("GET", "/metrics", NULL, 401, "missing API key");
	expect("GET", "/metrics", k_not[7], 403, "metrics:read");
	expect("GET", "/metrics", k_unit_metrics, 403, "tenant-wide");
	expect("GET", "/metrics", OPERATOR_KEY, 403, NULL);
	expect("GET", "/v1/messages", k_metrics, 403, "messages:read"); /* nothing more */
	struct resp r = call("GET", "/metrics", k_metrics, NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "# TYPE herald_queue_depth gauge"));
	char *main_depth = depth_lines(r.body);
	resp_free(&r);
	/* Every status, once. */
	int lines = 0;
	for (const char *p = main_depth; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	assert_int_equal(lines, MSG__COUNT);
	char *t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "metrics:read", 300, 0, "herald",
	               "test-idp", NULL);
	expect("GET", "/metrics", t, 200, NULL);
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/metrics", t, 403, "metrics:read");
	free(t);

	/* The scrape listener. Nothing changes messages meanwhile in this
	 * world, so both ports show the same store counts. */
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", g_metrics_port);
	r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	char *listen_depth = depth_lines(r.body);
	assert_string_equal(listen_depth, main_depth);
	resp_free(&r);
	free(listen_depth);
	free(main_depth);
	r = http("GET", url, NULL, "{}", NULL); /* a body: refused, never read */
	assert_int_equal(r.status, 413);
	resp_free(&r);
	r = http("POST", url, NULL, "{}", NULL);
	assert_int_equal(r.status, 405);
	resp_free(&r);
	r = http("GET", url, k_metrics, NULL, NULL); /* a credential changes nothing */
	assert_int_equal(r.status, 200);
	resp_free(&r);
	static const char *const others[] = {"/v1/messages", "/healthz", "/metrics/", "/",
	                                     "/v1/tenants"};
	for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
		snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_metrics_port, others[i]);
		r = http("GET", url, NULL, NULL, NULL);
		if (r.status != 404)
			fail_msg("GET %s on the metrics listener: %ld", others[i], r.status);
		resp_free(&r);
	}
}

static void expect(const char *method, const char *path, const char *tok, long status,
                   const char *reason)
{
	struct resp r = call(method, path, tok, NULL);
	if (r.status != status || (reason && !strstr(errmsg(&r), reason)))
		fail_msg("%s %s with %s: want %ld (%s), got %ld %s", method, path, tok, status,
		         reason ? reason : "", r.status, r.body);
	resp_free(&r);
}

static void test_jwt(void **state)
{
	(void)state;
	char rsa[128], rsa2[128], ec[128];
	snprintf(rsa, sizeof rsa, "%s/rsa.pem", g_dir);
	snprintf(rsa2, sizeof rsa2, "%s/rsa2.pem", g_dir);
	snprintf(ec, sizeof ec, "%s/ec.pem", g_dir);
	char *t;
	/* HS256 with the server's secret: scopes from the claim. */
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read openid", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 200, NULL);
	expect("GET", "/v1/messages", t, 200, NULL); /* the cached path */
	{
		struct resp r = call("POST", "/v1/messages", t, "{}");
		assert_int_equal(r.status, 403);
		assert_non_null(strstr(errmsg(&r), "messages:send"));
		resp_free(&r);
	}
	free(t);
	/* RS256 and ES256 (by kid). */
	t = mint(JWT_ALG_RS256, rsa, "acme", NULL, "messages:read", 300, 0, "herald", "test-idp",
	         NULL);
	expect("GET", "/v1/messages", t, 200, NULL);
	free(t);
	t = mint(JWT_ALG_ES256, ec, "acme", NULL, "messages:read", 300, 0, "herald", "test-idp",
	         "ec1");
	expect("GET", "/v1/messages", t, 200, NULL);
	free(t);
	/* A unit's token sees its unit's objects only. */
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", msg_l);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", "cards", "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", path, t, 404, NULL);
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", "loans", "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", path, t, 200, NULL);
	free(t);
	/* Refused, each with its reason. */
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read", -3600, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "expired");
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read", 7200, 3600, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "not yet valid");
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read", 300, 0, "other-service",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "audience");
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "acme", NULL, "messages:read", 300, 0, "herald",
	         "evil-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "issuer");
	free(t);
	t = mint(JWT_ALG_HS256, "not-the-secret-0123456789abcdef0123456", "acme", NULL,
	         "messages:read", 300, 0, "herald", "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "signature");
	free(t);
	t = mint(JWT_ALG_RS256, rsa2, "acme", NULL, "messages:read", 300, 0, "herald", "test-idp",
	         NULL);
	expect("GET", "/v1/messages", t, 401, "signature");
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "nobody", NULL, "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "tenant");
	free(t);
	/* Algorithm confusion: HS256 keyed with the RSA public key's PEM. */
	char pub[128];
	snprintf(pub, sizeof pub, "%s/rsa.pub", g_dir);
	char *pem = slurp(pub);
	t = mint(JWT_ALG_HS256, pem, "acme", NULL, "messages:read", 300, 0, "herald", "test-idp",
	         NULL);
	expect("GET", "/v1/messages", t, 401, "signature");
	free(t);
	free(pem);
	/* alg none, made by hand (libjwt would sign nothing). */
	{
		char tok[512], payload[256];
		snprintf(payload, sizeof payload,
		         "{\"tenant\":\"acme\",\"scope\":\"messages:read\",\"aud\":\"herald\","
		         "\"iss\":\"test-idp\",\"exp\":%ld}",
		         (long)time(NULL) + 300);
		const char *hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
		char *h = hr_b64_encode(hdr, strlen(hdr));
		char *p = hr_b64_encode(payload, strlen(payload));
		/* base64 -> base64url, no padding */
		for (char *c = h; *c; c++)
			*c = *c == '+' ? '-' : *c == '/' ? '_' : *c == '=' ? '\0' : *c;
		for (char *c = p; *c; c++)
			*c = *c == '+' ? '-' : *c == '/' ? '_' : *c == '=' ? '\0' : *c;
		snprintf(tok, sizeof tok, "%s.%s.", h, p);
		expect("GET", "/v1/messages", tok, 401, "alg none");
		snprintf(tok, sizeof tok, "%s.%s.c2ln", h, p);
		expect("GET", "/v1/messages", tok, 401, "alg none");
		free(h);
		free(p);
	}
	/* Tenant jwtco has its own secret: a token naming jwtco verifies only
	 * with it, and jwtco's secret cannot vouch for acme. */
	t = mint(JWT_ALG_HS256, ACME_JWT_SECRET, "jwtco", NULL, "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 200, NULL);
	free(t);
	t = mint(JWT_ALG_HS256, JWT_SECRET, "jwtco", NULL, "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "signature");
	free(t);
	t = mint(JWT_ALG_HS256, ACME_JWT_SECRET, "acme", NULL, "messages:read", 300, 0, "herald",
	         "test-idp", NULL);
	expect("GET", "/v1/messages", t, 401, "signature");
	free(t);
	/* Garbage. */
	expect("GET", "/v1/messages", "a.b.c", 401, NULL);
	expect("GET", "/v1/messages", "....", 401, NULL);
}

/* ---------------------------------------------------------------------------
 * The CLI over the same API.
 * ------------------------------------------------------------------------- */

/* Runs `herald ARGS` with the operator's key; its stdout in out. */
static int herald_cli(const char *args, const char *key, char *out, size_t size)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "HERALD_URL=%s HERALD_API_KEY='%s' %s %s 2>&1", W.api, key,
	         getenv("HERALD_BIN"), args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
	(void)state;
	char out[8192];
	assert_int_equal(herald_cli("units create acme collections --name Collections",
	                            OPERATOR_KEY, out, sizeof out),
	                 0);
	assert_non_null(strstr(out, "collections"));
	assert_int_equal(herald_cli("keys create acme --scope messages:read --unit collections "
	                            "--label cli",
	                            OPERATOR_KEY, out, sizeof out),
	                 0);
	char *k = strstr(out, "key: ");
	assert_non_null(k);
	char key[96];
	assert_int_equal(sscanf(k + 5, "%95s", key), 1);
	struct resp r = call("GET", "/v1/messages", key, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	char prefix[24];
	snprintf(prefix, sizeof prefix, "%.11s", key);
	char args[128];
	snprintf(args, sizeof args, "keys revoke acme %s", prefix);
	assert_int_equal(herald_cli(args, OPERATOR_KEY, out, sizeof out), 0);
	r = call("GET", "/v1/messages", key, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	assert_int_equal(herald_cli("keys list acme", OPERATOR_KEY, out, sizeof out), 0);
	assert_non_null(strstr(out, prefix));
	assert_null(strstr(out, key));
	assert_int_equal(herald_cli("audit --tenant acme --limit 5", OPERATOR_KEY, out, sizeof out),
	                 0);
	assert_non_null(strstr(out, "key.revoke"));
	/* Usage and refusals, with the documented exit codes. */
	assert_int_equal(herald_cli("keys create acme", OPERATOR_KEY, out, sizeof out), 2);
	assert_int_equal(herald_cli("units create acme ../x", OPERATOR_KEY, out, sizeof out), 2);
	assert_int_equal(herald_cli("tenants create evil", BETA_KEY, out, sizeof out), 1);
	assert_int_equal(herald_cli("tenants list", "wrong-key-0123456789", out, sizeof out), 1);
}

/* ---------------------------------------------------------------------------
 * Templates through the API: units own what they make.
 * ------------------------------------------------------------------------- */

static size_t template_count(const char *key)
{
	struct resp r = call("GET", "/v1/templates?limit=1000", key, NULL);
	assert_int_equal(r.status, 200);
	size_t n = json_array_size(json_object_get(r.json, "data"));
	resp_free(&r);
	return n;
}

static void expect_field(const char *method, const char *path, const char *key, const char *body,
                         long status, const char *field)
{
	struct resp r = call(method, path, key, body);
	const char *f =
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "field"));
	if (r.status != status || (field && (!f || strcmp(f, field) != 0)))
		fail_msg("%s %s %s: want %ld naming %s, got %ld %s", method, path, body ? body : "",
		         status, field ? field : "-", r.status, r.body);
	resp_free(&r);
}

static void test_templates(void **state)
{
	(void)state;
	/* Seen: loans its own and the tenant's shared one (from the config);
	 * cards the shared one; the tenant-wide admin-scoped key all of them
	 * (it lacks messages:read: 403); another tenant none. */
	assert_int_equal(template_count(k_loans), 2);
	assert_int_equal(template_count(k_cards), 1);
	assert_int_equal(template_count(k_not[0]), 2); /* tenant-wide, all but messages:send */
	assert_int_equal(template_count(BETA_KEY), 0);
	expect_field("GET", "/v1/templates", k_not[1], NULL, 403, "scope");

	/* A unit cannot take a sibling's name or change the shared template. */
	const char *shared = "{\"channel\":\"whatsapp\",\"name\":\"payment_reminder\","
	                     "\"language\":\"en_GB\",\"body\":\"Changed {{1}}\"}";
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"loans_tpl\",\"language\":\"en\","
	             "\"body\":\"Mine {{1}}\"}",
	             409, "name");
	expect_field("POST", "/v1/templates", k_cards, shared, 409, "name");
	struct resp r = call("GET", "/v1/templates/whatsapp/loans_tpl/en", k_loans, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "body")), "Loan {{1}} due");
	assert_int_equal(json_integer_value(json_object_get(r.json, "param_count")), 1);
	resp_free(&r);
	/* Validation names the field. */
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"t\",\"language\":\"en\"}", 422, "body");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"fax\",\"name\":\"t\",\"language\":\"en\",\"body\":\"x\"}", 422,
	             "channel");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"a/b\",\"language\":\"en\","
	             "\"body\":\"x\"}",
	             422, "name");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"t\",\"language\":\"e\","
	             "\"body\":\"x\"}",
	             422, "language");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"t\",\"language\":\"en\","
	             "\"body\":\"Hi {{0}}\"}",
	             422, "body");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"t\",\"language\":\"en\","
	             "\"body\":\"x\",\"header\":{\"type\":\"video\"}}",
	             422, "header");
	expect_field("POST", "/v1/templates", k_cards,
	             "{\"channel\":\"whatsapp\",\"name\":\"t\",\"language\":\"en\","
	             "\"body\":\"x\",\"colour\":\"red\"}",
	             422, "colour");
	assert_int_equal(template_count(k_cards), 1); /* none of those was written */

	/* cards makes its own: loans cannot see it or send with it; cards can. */
	r = call("POST", "/v1/templates", k_cards,
	         "{\"channel\":\"whatsapp\",\"name\":\"cards_tpl\",\"language\":\"en\","
	         "\"body\":\"Card {{1}} ready\",\"buttons\":[{\"type\":\"quick_reply\"}]}");
	if (r.status != 201)
		fail_msg("cards template: %ld %s", r.status, r.body);
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "cards");
	assert_int_equal(json_array_size(json_object_get(r.json, "buttons")), 1);
	resp_free(&r);
	expect_field("GET", "/v1/templates/whatsapp/cards_tpl/en", k_loans, NULL, 404, NULL);
	expect_field("DELETE", "/v1/templates/whatsapp/cards_tpl/en", k_loans, NULL, 404, NULL);
	expect_field("GET", "/v1/templates/whatsapp/cards_tpl/en", BETA_KEY, NULL, 404, NULL);
	char body[512];
	snprintf(
	    body, sizeof body,
	    "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"to\":\"+447911000150\","
	    "\"template\":{\"name\":\"cards_tpl\",\"language\":\"en\",\"parameters\":[\"A\"]}}");
	expect_field("POST", "/v1/messages", k_loans, body, 422, "template.name");
	r = call("POST", "/v1/messages", k_cards, body);
	if (r.status != 202)
		fail_msg("cards sends with its template: %ld %s", r.status, r.body);
	resp_free(&r);
	/* Its own is updated (200) and stays its own. */
	r = call("POST", "/v1/templates", k_cards,
	         "{\"channel\":\"whatsapp\",\"name\":\"cards_tpl\",\"language\":\"en\","
	         "\"body\":\"Card {{1}} is ready\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "unit")), "cards");
	resp_free(&r);

	/* Removing: not the shared one by a unit (403); its own (200, then 404). */
	expect_field("DELETE", "/v1/templates/whatsapp/payment_reminder/en_GB", k_cards, NULL, 403,
	             NULL);
	r = call("DELETE", "/v1/templates/whatsapp/cards_tpl/en", k_cards, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	expect_field("GET", "/v1/templates/whatsapp/cards_tpl/en", k_cards, NULL, 404, NULL);
	expect_field("DELETE", "/v1/templates/whatsapp/cards_tpl/en", k_cards, NULL, 404, NULL);

	/* The audit log: create, update, delete of cards_tpl by cards' key, with
	 * before and after. */
	r = call("GET", "/v1/audit?limit=1000", k_admin, NULL);
	assert_int_equal(r.status, 200);
	int create = 0, update = 0, del = 0;
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r.json, "entries"), i, x)
	{
		const char *action = json_string_value(json_object_get(x, "action"));
		const char *object = json_string_value(json_object_get(x, "object"));
		if (!object || strcmp(object, "template:whatsapp/cards_tpl/en") != 0)
			continue;
		json_t *before = json_object_get(x, "before"), *after = json_object_get(x, "after");
		if (!strcmp(action, "template.create")) {
			create++;
			assert_true(json_is_null(before) || !before);
			assert_string_equal(json_string_value(json_object_get(after, "body")),
			                    "Card {{1}} ready");
		} else if (!strcmp(action, "template.update")) {
			update++;
			assert_string_equal(json_string_value(json_object_get(before, "body")),
			                    "Card {{1}} ready");
			assert_string_equal(json_string_value(json_object_get(after, "body")),
			                    "Card {{1}} is ready");
		} else if (!strcmp(action, "template.delete")) {
			del++;
			assert_string_equal(json_string_value(json_object_get(before, "body")),
			                    "Card {{1}} is ready");
		}
	}
	resp_free(&r);
	assert_int_equal(create, 1);
	assert_int_equal(update, 1);
	assert_int_equal(del, 1);

	/* The CLI, with cards' key: add, list (its own and the shared one, not
	 * loans'), rm; a second rm is an API error (1), a bad name a usage
	 * error (2). */
	char out[8192];
	assert_int_equal(
	    herald_cli("templates add whatsapp cli_tpl en 'Hi {{1}}'", k_cards, out, sizeof out),
	    0);
	assert_non_null(strstr(out, "cli_tpl"));
	assert_int_equal(herald_cli("templates list", k_cards, out, sizeof out), 0);
	assert_non_null(strstr(out, "cli_tpl"));
	assert_non_null(strstr(out, "payment_reminder"));
	assert_null(strstr(out, "loans_tpl"));
	assert_int_equal(herald_cli("templates rm whatsapp cli_tpl en", k_cards, out, sizeof out),
	                 0);
	assert_int_equal(herald_cli("templates rm whatsapp cli_tpl en", k_cards, out, sizeof out),
	                 1);
	assert_int_equal(herald_cli("templates rm whatsapp ../x en", k_cards, out, sizeof out), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route_table),    cmocka_unit_test(test_jwt),
	    cmocka_unit_test(test_metrics_access), cmocka_unit_test(test_keys_lifecycle),
	    cmocka_unit_test(test_audit),          cmocka_unit_test(test_templates),
	    cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
