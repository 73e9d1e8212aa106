/*
 * test_search.c - message search (GET /v1/messages) and its CSV export
 * against real `herald serve` and `herald sim` processes, with two tenants
 * that hold the same phone number:
 *   - acme sends to +447911123456 on WhatsApp (stored "447911123456", with
 *     an Idempotency-Key) and on SMS (stored "+447911123456"), to another
 *     number on WhatsApp, and to a number the SMS simulator fails with
 *     21610; beta sends to +447911123456 on its own WhatsApp account;
 *   - each filter (phone in any written form, Herald id, provider id,
 *     idempotency key, campaign, status, channel, account, error code,
 *     time range) finds exactly the messages it should, with paging;
 *   - neither tenant ever finds the other's messages, by provider id,
 *     phone, id, key or account;
 *   - the export streams the same search as CSV, bounded by limit;
 *   - GET /openapi.json from the running server: ETag and 304.
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

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "tw-token-123"
#define BETA_KEY "hk_beta_0123456789abcdef"
#define PHONE "+447911123456"
#define OTHER "+447700900123"
#define TO_21610 "+15550001003"

static struct world W;
static char wa1[32], sms1[32], wa2[32], fail1[32], beta1[32];
static char wa1_pid[128], beta1_pid[128];

static int setup(void **state)
{
	(void)state;
	harness_tenants_extra(
	    "  - id: beta\n    name: Beta\n    api_keys: [" BETA_KEY "]\n"
	    "    accounts:\n"
	    "      - id: beta-wa\n        channel: whatsapp\n        base_url: @SIM@\n"
	    "        api_version: \"21.0\"\n        phone_number_id: \"106540352249999\"\n"
	    "        access_token: beta-token\n        app_secret: beta-secret-123\n"
	    "        verify_token: verify-beta\n        rate_limit: 5000\n");
	world_init2(&W,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: " SID "\n        auth_token: " TOKEN "\n"
	            "        from: \"+15005550006\"\n        rate_limit: 50\n",
	            NULL,
	            "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	            "    recipients:\n"
	            "      \"" TO_21610 "\": {error: 21610}\n",
	            NULL, NULL);
	harness_tenants_extra(NULL);
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

/* ---- helpers ---- */

static struct resp get_as(const char *key, const char *path)
{
	char url[1024];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http("GET", url, key, NULL, NULL);
}

/* Sends one message as key; its id into id. */
static void send_msg(const char *key, const char *body, const char *idem, char id[32])
{
	char url[256], h[300];
	snprintf(url, sizeof url, "%s/v1/messages", W.api);
	snprintf(h, sizeof h, "Idempotency-Key: %s", idem ? idem : "");
	const char *hdr[] = {h, NULL};
	struct resp r = http("POST", url, key, body, idem ? hdr : NULL);
	if (r.status != 202)
		fail_msg("send %s: %ld %s", body, r.status, r.body);
	snprintf(id, 32, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static const char *key_of(const char *who)
{
	return !strcmp(who, "beta") ? BETA_KEY : W.key;
}

/* The ids a search answers (one page), comma-joined into out; the count. */
static size_t ids_of(const char *who, const char *query, char *out, size_t size)
{
	char path[900];
	snprintf(path, sizeof path, "/v1/messages?%s", query);
	struct resp r = get_as(key_of(who), path);
	if (r.status != 200)
		fail_msg("%s GET %s: %ld %s", who, path, r.status, r.body);
	json_t *data = json_object_get(r.json, "data");
	size_t n = json_array_size(data), len = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(
		    out + len, size - len, "%s%s", i ? "," : "",
		    json_string_value(json_object_get(json_array_get(data, i), "id")));
	resp_free(&r);
	return n;
}

/* Asserts a search finds exactly the listed ids (newest first). */
static void expect(const char *who, const char *query, const char *want)
{
	char got[512];
	ids_of(who, query, got, sizeof got);
	if (strcmp(got, want) != 0)
		fail_msg("%s ?%s: got [%s], want [%s]", who, query, got, want);
}

struct wait_status {
	const char *who, *id, *status;
};

static bool has_status(struct world *w, void *arg)
{
	(void)w;
	struct wait_status *ws = arg;
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", ws->id);
	struct resp r = get_as(key_of(ws->who), path);
	bool ok = r.status == 200 && !strcmp(jstr(r.json, "status"), ws->status);
	resp_free(&r);
	return ok;
}

static void wait_status(const char *who, const char *id, const char *status)
{
	struct wait_status ws = {who, id, status};
	if (!wait_until(has_status, &W, &ws, 30))
		fail_msg("%s's message %s never became %s", who, id, status);
}

static void provider_id_of(const char *who, const char *id, char out[128])
{
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = get_as(key_of(who), path);
	assert_int_equal(r.status, 200);
	const char *p = json_string_value(json_object_get(r.json, "provider_id"));
	assert_non_null(p);
	snprintf(out, 128, "%s", p);
	resp_free(&r);
}

/* ---- the test ---- */

static void test_search(void **state)
{
	(void)state;
	send_msg(W.key, "{\"channel\":\"whatsapp\",\"to\":\"" PHONE "\",\"text\":\"a\"}",
	         "order-42", wa1);
	send_msg(W.key, "{\"channel\":\"sms\",\"to\":\"" PHONE "\",\"text\":\"b\"}", NULL, sms1);
	send_msg(W.key, "{\"channel\":\"whatsapp\",\"to\":\"" OTHER "\",\"text\":\"c\"}", NULL,
	         wa2);
	send_msg(W.key, "{\"channel\":\"sms\",\"to\":\"" TO_21610 "\",\"text\":\"d\"}", NULL,
	         fail1);
	/* beta: the same phone and the same Idempotency-Key. */
	send_msg(BETA_KEY, "{\"channel\":\"whatsapp\",\"to\":\"" PHONE "\",\"text\":\"e\"}",
	         "order-42", beta1);
	wait_status("acme", wa1, "read");
	wait_status("acme", sms1, "delivered");
	wait_status("acme", wa2, "read");
	wait_status("acme", fail1, "failed");
	wait_status("beta", beta1, "read");
	provider_id_of("acme", wa1, wa1_pid);
	provider_id_of("beta", beta1, beta1_pid);
	assert_string_not_equal(wa1_pid, beta1_pid);

	char both[80], all[200];
	snprintf(both, sizeof both, "%s,%s", sms1, wa1);
	snprintf(all, sizeof all, "%s,%s,%s,%s", fail1, wa2, sms1, wa1);
	expect("acme", "", all);
	expect("beta", "", beta1);

	/* A phone number, however written, on both channels' stored forms. */
	expect("acme", "to=%2B447911123456", both);
	expect("acme", "to=447911123456", both);
	expect("acme", "to=%2B44%207911%20123456", both);
	expect("acme", "to=0044-7911-123456", both);
	expect("acme", "to=07911%20123456&region=GB", both);
	expect("acme", "to=%2B44%207911%20123456&channel=whatsapp", wa1);
	expect("acme", "to=447911123456&channel=sms", sms1);
	expect("beta", "to=%2B44%207911%20123456", beta1);
	expect("acme", "to=%2B447911000000", "");

	/* Herald id, provider id, idempotency key: each tenant its own only. */
	char q[300];
	snprintf(q, sizeof q, "id=%s", wa1);
	expect("acme", q, wa1);
	expect("beta", q, "");
	snprintf(q, sizeof q, "provider_id=%s", wa1_pid);
	expect("acme", q, wa1);
	expect("beta", q, "");
	snprintf(q, sizeof q, "provider_id=%s", beta1_pid);
	expect("beta", q, beta1);
	expect("acme", q, "");
	expect("acme", "idempotency_key=order-42", wa1);
	expect("beta", "idempotency_key=order-42", beta1);
	expect("acme", "idempotency_key=order-43", "");

	/* Status, channel, account, error code, combined. */
	expect("acme", "status=failed", fail1);
	expect("acme", "error_code=21610", fail1);
	expect("beta", "error_code=21610", "");
	expect("acme", "error_code=21610&status=delivered", "");
	snprintf(q, sizeof q, "%s,%s", fail1, sms1);
	expect("acme", "channel=sms", q);
	expect("acme", "account=acme-sms", q);
	snprintf(q, sizeof q, "%s,%s", wa2, wa1);
	expect("acme", "account=acme-wa&channel=whatsapp", q);
	expect("acme", "status=read&to=447911123456", wa1);

	/* Time range: nothing before 2020 or after 9999; all since 2020. */
	expect("acme", "until=1577836800", "");
	expect("acme", "since=2020-01-01T00:00:00Z", all);

	/* Paging a search: one at a time, newest first, then the end. */
	char path[300];
	snprintf(path, sizeof path, "/v1/messages?to=447911123456&limit=1");
	struct resp r = get_as(W.key, path);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 1);
	const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
	assert_non_null(next);
	assert_string_equal(next, sms1);
	snprintf(q, sizeof q, "to=447911123456&limit=1&cursor=%s", next);
	resp_free(&r);
	expect("acme", q, wa1);

	/* Another tenant's account name is as unknown as a made-up one; a
	 * bad filter is a 422 naming it. */
	static const struct {
		const char *who, *query, *field;
	} bad[] = {
	    {"beta", "account=acme-wa", "account"},
	    {"acme", "account=beta-wa", "account"},
	    {"acme", "id=nope", "id"},
	    {"acme", "batch_id=nope", "batch_id"},
	    {"acme", "to=07911123456&region=XX", "region"},
	    {"acme", "region=GB", "region"},
	    {"acme", "to=12&region=GB", "to"},
	    {"acme", "status=lost", "status"},
	    {"acme", "nosuch=1", "nosuch"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(path, sizeof path, "/v1/messages?%s", bad[i].query);
		r = get_as(key_of(bad[i].who), path);
		json_t *e = json_object_get(r.json, "error");
		if (r.status != 422 || strcmp(jstr(e, "field"), bad[i].field) != 0)
			fail_msg("%s ?%s: %ld %s", bad[i].who, bad[i].query, r.status, r.body);
		resp_free(&r);
	}
	char longkey[300];
	memset(longkey, 'k', 290);
	longkey[290] = '\0';
	snprintf(path, sizeof path, "/v1/messages?idempotency_key=%s", longkey);
	r = get_as(W.key, path);
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

/* The CSV lines of an export (the header first), or fails. */
static size_t export_lines(const char *who, const char *query, char *body, size_t size)
{
	char path[600];
	snprintf(path, sizeof path, "/v1/messages/export.csv?%s", query);
	struct resp r = get_as(key_of(who), path);
	if (r.status != 200)
		fail_msg("%s export ?%s: %ld %s", who, query, r.status, r.body);
	snprintf(body, size, "%s", r.body);
	size_t n = 0;
	for (const char *p = r.body; (p = strstr(p, "\r\n")); p += 2)
		n++;
	resp_free(&r);
	return n;
}

static void test_export(void **state)
{
	(void)state;
	char body[8192];
	/* The header, then acme's two messages to the phone, newest first. */
	assert_int_equal(export_lines("acme", "to=447911123456", body, sizeof body), 3);
	assert_true(
	    !strncmp(body, "\xEF\xBB\xBFid,created_at,updated_at,channel,account,to,status,", 46));
	char *l1 = strstr(body, "\r\n") + 2, *l2 = strstr(l1, "\r\n") + 2;
	assert_true(!strncmp(l1, sms1, strlen(sms1)));
	assert_true(!strncmp(l2, wa1, strlen(wa1)));
	assert_non_null(strstr(l1, ",sms,acme-sms,+447911123456,delivered,"));
	assert_non_null(strstr(l2, ",whatsapp,acme-wa,447911123456,read,"));
	assert_non_null(strstr(l2, wa1_pid));
	assert_null(strstr(body, beta1));
	/* beta: its own one; by acme's provider id, nothing but the header. */
	assert_int_equal(export_lines("beta", "to=%2B447911123456", body, sizeof body), 2);
	assert_non_null(strstr(body, beta1));
	char q[200];
	snprintf(q, sizeof q, "provider_id=%s", wa1_pid);
	assert_int_equal(export_lines("beta", q, body, sizeof body), 1);
	/* Every message of acme; limit bounds the rows, cursor continues. */
	assert_int_equal(export_lines("acme", "", body, sizeof body), 5);
	assert_non_null(strstr(body, ",failed,,21610,"));
	assert_int_equal(export_lines("acme", "limit=3", body, sizeof body), 4);
	assert_null(strstr(body, wa1));
	snprintf(q, sizeof q, "cursor=%s", sms1);
	assert_int_equal(export_lines("acme", q, body, sizeof body), 2);
	assert_non_null(strstr(body, wa1));
	/* Filters are checked as for the search; a credential is needed. */
	struct resp r = get_as(W.key, "/v1/messages/export.csv?limit=1000001");
	assert_int_equal(r.status, 422);
	resp_free(&r);
	r = get_as(NULL, "/v1/messages/export.csv");
	assert_int_equal(r.status, 401);
	resp_free(&r);
}

/* ---- GET /openapi.json from the running server ---- */

static size_t keep_etag(char *p, size_t size, size_t n, void *arg)
{
	char *etag = arg;
	if (n * size > 6 && !strncasecmp(p, "ETag:", 5))
		snprintf(etag, 80, "%.*s", (int)strcspn(p + 6, "\r\n"), p + 6);
	return size * n;
}

static size_t count_body(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	*(size_t *)arg += size * n;
	return size * n;
}

static long fetch_doc(const char *inm, char etag[80], size_t *len)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[128], h[128];
	snprintf(url, sizeof url, "%s/openapi.json", W.api);
	struct curl_slist *hl = NULL;
	if (inm) {
		snprintf(h, sizeof h, "If-None-Match: %s", inm);
		hl = curl_slist_append(hl, h);
	}
	etag[0] = '\0';
	*len = 0;
	long status = 0;
	assert_int_equal(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep_etag), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERDATA, etag), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_body), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEDATA, len), CURLE_OK);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), CURLE_OK);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return status;
}

static void test_openapi_served(void **state)
{
	(void)state;
	struct resp r = get_as(NULL, "/openapi.json");
	assert_int_equal(r.status, 200);
	assert_non_null(r.json);
	assert_string_equal(json_string_value(json_object_get(r.json, "openapi")), "3.1.0");
	assert_non_null(
	    json_object_get(json_object_get(r.json, "paths"), "/v1/messages/export.csv"));
	resp_free(&r);
	char etag[80], again[80];
	size_t len;
	assert_int_equal(fetch_doc(NULL, etag, &len), 200);
	assert_true(len > 10000);
	assert_true(strlen(etag) == 34);
	assert_int_equal(fetch_doc(etag, again, &len), 304);
	assert_int_equal(len, 0);
	assert_string_equal(again, etag);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_search),
	    cmocka_unit_test(test_export),
	    cmocka_unit_test(test_openapi_served),
	};
	return cmocka_run_group_tests_name("search", tests, setup, teardown);
}
