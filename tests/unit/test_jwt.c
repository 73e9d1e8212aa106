/*
 * test_jwt.c - the JWT verifier (src/api/jwt.c) in process: what the
 * config must say, and every refusal with its reason. Tokens are made with
 * libjwt; test_authz checks the same through a real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jwt.h>

#include "api/api_int.h"

#define SECRET "server-jwt-secret-0123456789abcdef0123"
#define TENANT_SECRET "tenant-jwt-secret-0123456789abcdef0123"

static struct api_jwt *load(const char *json, int want, const char *field)
{
	json_error_t je;
	json_t *cfg = json_loads(json, 0, &je);
	assert_non_null(cfg);
	struct api_jwt *j = NULL;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_jwt_load(cfg, &j, &err);
	json_decref(cfg);
	if (rc != want)
		fail_msg("load %s: %d %s", json, rc, err.msg);
	if (field)
		assert_string_equal(err.field, field);
	return j;
}

static char *mint(const char *secret, const char *tenant, const char *unit, long exp_in,
                  long nbf_in, const char *aud)
{
	jwt_t *t;
	assert_int_equal(jwt_new(&t), 0);
	time_t now = time(NULL);
	jwt_add_grant(t, "sub", "bob");
	if (tenant)
		jwt_add_grant(t, "tenant", tenant);
	if (unit)
		jwt_add_grant(t, "unit", unit);
	jwt_add_grant(t, "scope", "messages:read campaigns:read unknown:scope");
	if (aud)
		jwt_add_grant(t, "aud", aud);
	jwt_add_grant(t, "iss", "idp");
	jwt_add_grant_int(t, "exp", (long)now + exp_in);
	if (nbf_in)
		jwt_add_grant_int(t, "nbf", (long)now + nbf_in);
	assert_int_equal(
	    jwt_set_alg(t, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)), 0);
	char *s = jwt_encode_str(t);
	jwt_free(t);
	assert_non_null(s);
	return s;
}

static int verify(struct api_jwt *j, const char *tok, struct api_principal *w, char *msg,
                  size_t size)
{
	struct hr_err err;
	hr_err_clear(&err);
	int64_t exp = 0;
	int rc = api_jwt_verify(j, tok, strlen(tok), w, &exp, &err);
	snprintf(msg, size, "%s", err.msg);
	if (rc == 0)
		assert_true(exp > hr_now_us());
	return rc;
}

static void test_config(void **state)
{
	(void)state;
	setenv("HERALD_TEST_JWT", SECRET, 1);
	setenv("HERALD_TEST_SHORT", "short", 1);
	assert_null(load("{}", 0, NULL));
	load("{\"auth\":{\"jwt\":{\"hs256_secret\":\"env:HERALD_TEST_JWT\"}}}", HR_EINVAL,
	     "auth.jwt.audience");
	load("{\"auth\":{\"jwt\":{\"audience\":\"a\"}}}", HR_EINVAL, "auth.jwt");
	load("{\"auth\":{\"jwt\":{\"audience\":\"a\",\"hs256_secret\":\"env:HERALD_TEST_SHORT\"}}}",
	     HR_EINVAL, "auth.jwt.hs256_secret");
	load("{\"auth\":{\"jwt\":{\"audience\":\"a\",\"public_keys\":[\"file:/etc/hostname\"]}}}",
	     HR_EINVAL, "auth.jwt.public_keys[0]");
	load("{\"auth\":{\"jwt\":{\"audience\":\"a\",\"jwks_file\":\"/nonexistent\"}}}", HR_EINVAL,
	     "auth.jwt.jwks_file");
	load("{\"tenants\":[{\"id\":\"t\",\"jwt\":{\"hs256_secret\":\"env:HERALD_TEST_JWT\"}}]}",
	     HR_EINVAL, "auth.jwt");
	struct api_jwt *j = load(
	    "{\"auth\":{\"jwt\":{\"audience\":\"a\",\"hs256_secret\":\"env:HERALD_TEST_JWT\"}}}", 0,
	    NULL);
	assert_non_null(j);
	api_jwt_free(j);
}

static void test_verify(void **state)
{
	(void)state;
	setenv("HERALD_TEST_JWT", SECRET, 1);
	setenv("HERALD_TEST_TJWT", TENANT_SECRET, 1);
	struct api_jwt *j = load(
	    "{\"auth\":{\"jwt\":{\"audience\":\"herald\",\"issuer\":\"idp\",\"leeway_seconds\":5,"
	    "\"hs256_secret\":\"env:HERALD_TEST_JWT\"}},"
	    "\"tenants\":[{\"id\":\"own\",\"jwt\":{\"hs256_secret\":\"env:HERALD_TEST_TJWT\"}}]}",
	    0, NULL);
	assert_non_null(j);
	struct api_principal w;
	char msg[256];
	char *t = mint(SECRET, "acme", "cards", 300, 0, "herald");
	if (verify(j, t, &w, msg, sizeof msg) != 0)
		fail_msg("a good token: %s", msg);
	assert_string_equal(w.tenant, "acme");
	assert_string_equal(w.unit, "cards");
	assert_int_equal(w.scopes, SCOPE_MESSAGES_READ | SCOPE_CAMPAIGNS_READ);
	assert_string_equal(w.actor, "jwt:bob");
	assert_false(w.operator);
	free(t);

	static const struct {
		const char *secret, *tenant;
		long exp, nbf;
		const char *aud, *reason;
	} bad[] = {
	    {SECRET, "acme", -3600, 0, "herald", "expired"},
	    {SECRET, "acme", -3, 0, "herald", NULL}, /* within the leeway: accepted */
	    {SECRET, "acme", 7200, 3600, "herald", "not yet valid"},
	    {SECRET, "acme", 300, 0, "elsewhere", "audience"},
	    {SECRET, "acme", 300, 0, NULL, "audience"},
	    {SECRET, NULL, 300, 0, "herald", "no tenant"},
	    {"wrong-secret-0123456789abcdef0123456789", "acme", 300, 0, "herald", "signature"},
	    {SECRET, "own", 300, 0, "herald", "signature"},         /* own's secret only */
	    {TENANT_SECRET, "acme", 300, 0, "herald", "signature"}, /* own's secret, acme's claim */
	    {TENANT_SECRET, "own", 300, 0, "herald", NULL},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		t = mint(bad[i].secret, bad[i].tenant, NULL, bad[i].exp, bad[i].nbf, bad[i].aud);
		int rc = verify(j, t, &w, msg, sizeof msg);
		if (bad[i].reason ? (rc != HR_EAUTH || !strstr(msg, bad[i].reason)) : rc != 0)
			fail_msg("case %zu: %d %s", i, rc, msg);
		free(t);
	}
	/* Dates beyond year 9999 are refused, not converted
	 * (fuzz/regress/jwt/exp-overflow: exp in microseconds overflowed int64). */
	static const struct {
		const char *claim, *json, *reason;
	} dates[] = {
	    {"exp", "410244480000000", "exp claim is not a date"},
	    {"exp", "9.2e18", "exp claim is not a date"},
	    {"exp", "-1e300", "exp claim is not a date"},
	    {"exp", "\"4102444800\"", "exp claim is not a date"},
	    {"exp", "253402300799", NULL}, /* 9999-12-31T23:59:59Z: accepted */
	    {"nbf", "1e19", "nbf claim is not a date"},
	};
	for (size_t i = 0; i < sizeof dates / sizeof *dates; i++) {
		jwt_t *jt;
		assert_int_equal(jwt_new(&jt), 0);
		char grants[256];
		snprintf(grants, sizeof grants,
		         "{\"tenant\":\"acme\",\"aud\":\"herald\",\"iss\":\"idp\",\"%s\":%s%s}",
		         dates[i].claim, dates[i].json,
		         strcmp(dates[i].claim, "exp") ? ",\"exp\":4102444800" : "");
		assert_int_equal(jwt_add_grants_json(jt, grants), 0);
		assert_int_equal(jwt_set_alg(jt, JWT_ALG_HS256, (const unsigned char *)SECRET,
		                             (int)strlen(SECRET)),
		                 0);
		t = jwt_encode_str(jt);
		jwt_free(jt);
		assert_non_null(t);
		int rc = verify(j, t, &w, msg, sizeof msg);
		if (dates[i].reason ? (rc != HR_EAUTH || !strstr(msg, dates[i].reason)) : rc != 0)
			fail_msg("date %zu: %d %s", i, rc, msg);
		free(t);
	}
	static const char *const junk[] = {"a.b.c",
	                                   "....",
	                                   "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJhY21lIn0.",
	                                   "eyJhbGciOiJOT05FIn0.eyJ0ZW5hbnQiOiJhY21lIn0.eA",
	                                   "eyJhbGciOiJIUzUxMiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.eA",
	                                   "eyJhbGciOiJIUzI1NiJ9.e30."};
	static const char *const why[] = {"malformed", "malformed",    "alg none",
	                                  "alg none",  "not accepted", "no signature"};
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
		int rc = verify(j, junk[i], &w, msg, sizeof msg);
		if (rc != HR_EAUTH || !strstr(msg, why[i]))
			fail_msg("junk %zu: %d %s", i, rc, msg);
	}
	api_jwt_free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config),
	    cmocka_unit_test(test_verify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
