/*
 * test_recipients.c - a recipient's history (GET /v1/recipients/{to} and
 * GET /v1/messages/{id}/recipient) against real `herald serve` and
 * `herald sim` processes, with two tenants that hold the same number:
 *   - acme sends to +447911123456 on WhatsApp and SMS and to another
 *     number; beta sends to +447911123456 on its own WhatsApp account;
 *   - the number answers acme's SMS with STOP (through the simulator), an
 *     operator removes the opt-out through the API and adds one on
 *     WhatsApp: the history shows each change, why, from which message and
 *     by whom, newest first, and the state per channel;
 *   - the number in any written form (and a national one with region)
 *     finds the same recipient; messages page by cursor, newest first;
 *   - neither tenant sees the other's messages, replies or opt-outs; a
 *     number the caller has nothing for is a 404 whether or not the other
 *     tenant messaged it; another tenant's message id is a 404;
 *   - bad parameters are 422s naming the parameter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "tw-token-123"
#define BETA_KEY "hk_beta_0123456789abcdef"
#define PHONE "+447911123456"
#define PHONE_ENC "%2B44%207911%20123456" /* "+44 7911 123456" */
#define OTHER "+447700900123"
#define NOBODY "+447700900555"

static struct world W;
static char wa1[32], sms1[32], wa2[32], beta1[32];

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
	            NULL, "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n",
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

static struct resp call(const char *method, const char *key, const char *path, const char *body)
{
	char url[1024];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http(method, url, key, body, NULL);
}

static void send_msg(const char *key, const char *body, char id[32])
{
	struct resp r = call("POST", key, "/v1/messages", body);
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

struct wait_status {
	const char *key, *id, *status;
};

static bool has_status(struct world *w, void *arg)
{
	(void)w;
	struct wait_status *ws = arg;
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", ws->id);
	struct resp r = call("GET", ws->key, path, NULL);
	bool ok = r.status == 200 && !strcmp(jstr(r.json, "status"), ws->status);
	resp_free(&r);
	return ok;
}

static void wait_status(const char *key, const char *id, const char *status)
{
	struct wait_status ws = {key, id, status};
	if (!wait_until(has_status, &W, &ws, 30))
		fail_msg("message %s never became %s", id, status);
}

/* GET path as key: the answer must be `want`; returns the JSON (caller decrefs). */
static json_t *get_json(const char *key, const char *path, long want)
{
	struct resp r = call("GET", key, path, NULL);
	if (r.status != want)
		fail_msg("GET %s: %ld (want %ld) %s", path, r.status, want, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

/* The ids of a JSON array of objects, comma-joined. */
static const char *ids(json_t *arr, char *out, size_t size)
{
	size_t i, len = 0;
	json_t *v;
	out[0] = '\0';
	json_array_foreach(arr, i, v) len +=
	    (size_t)snprintf(out + len, size - len, "%s%s", i ? "," : "", jstr(v, "id"));
	return out;
}

static bool sms_opted_out(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	struct resp r = call("GET", W.key, "/v1/suppressions?channel=sms", NULL);
	bool found = false;
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(r.json, "data"), i, s) if (!strcmp(jstr(s, "to"), PHONE))
	    found = true;
	resp_free(&r);
	return found;
}

/* The recipient answers on SMS through the simulator's inbound hook. */
static void sim_inbound(const char *from, const char *body)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/sms/inbound", W.sim);
	json_t *req =
	    json_pack("{s:s, s:s, s:s}", "account", "acme-sms", "from", from, "body", body);
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = http("POST", url, NULL, js, NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	free(js);
	json_decref(req);
}

/* The opt-out state of a channel in an answer: 1, 0, or -1 when absent. */
static int suppressed_on(json_t *j, const char *channel)
{
	size_t i;
	json_t *v;
	json_array_foreach(
	    json_object_get(j, "opt_out"), i,
	    v) if (!strcmp(jstr(v, "channel"),
	                   channel)) return json_is_true(json_object_get(v, "suppressed"));
	return -1;
}

/* ---- the test ---- */

static void test_recipient_history(void **state)
{
	(void)state;
	send_msg(W.key, "{\"channel\":\"whatsapp\",\"to\":\"" PHONE "\",\"text\":\"a\"}", wa1);
	send_msg(W.key, "{\"channel\":\"sms\",\"to\":\"" PHONE "\",\"text\":\"b\"}", sms1);
	send_msg(W.key, "{\"channel\":\"whatsapp\",\"to\":\"" OTHER "\",\"text\":\"c\"}", wa2);
	send_msg(BETA_KEY, "{\"channel\":\"whatsapp\",\"to\":\"" PHONE "\",\"text\":\"d\"}", beta1);
	wait_status(W.key, wa1, "read");
	wait_status(W.key, sms1, "delivered");
	wait_status(BETA_KEY, beta1, "read");

	/* 1. STOP by SMS; 2. an operator removes it; 3. and opts the number
	 * out of WhatsApp. */
	sim_inbound(PHONE, "STOP");
	assert_true(wait_until(sms_opted_out, &W, NULL, 30));
	struct resp r = call("DELETE", W.key, "/v1/suppressions/sms/" PHONE_ENC, NULL);
	assert_int_equal(r.status, 204);
	resp_free(&r);
	r = call("POST", W.key, "/v1/suppressions",
	         "{\"channel\":\"whatsapp\",\"to\":\"" PHONE "\",\"reason\":\"asked by phone\"}");
	assert_int_equal(r.status, 201);
	resp_free(&r);

	/* acme, the number as a person writes it. */
	char got[512], want[512];
	json_t *j = get_json(W.key, "/v1/recipients/" PHONE_ENC, 200);
	assert_string_equal(jstr(j, "to"), PHONE);
	snprintf(want, sizeof want, "%s,%s", sms1, wa1);
	assert_string_equal(ids(json_object_get(j, "messages"), got, sizeof got), want);
	assert_true(json_is_null(json_object_get(j, "next_cursor")));
	json_t *replies = json_object_get(j, "replies");
	assert_int_equal(json_array_size(replies), 1);
	json_t *rep = json_array_get(replies, 0);
	assert_string_equal(jstr(rep, "text"), "STOP");
	assert_string_equal(jstr(rep, "channel"), "sms");
	assert_string_equal(jstr(rep, "account"), "acme-sms");
	assert_string_equal(jstr(rep, "from"), PHONE);
	assert_int_equal(suppressed_on(j, "sms"), 0);
	assert_int_equal(suppressed_on(j, "whatsapp"), 1);
	json_t *h = json_object_get(j, "opt_out_history");
	assert_int_equal(json_array_size(h), 3);
	static const struct {
		const char *channel, *action, *reason, *by;
	} hw[] = {
	    {"whatsapp", "added", "asked by phone", "key:"},
	    {"sms", "removed", "", "key:"},
	    {"sms", "added", "inbound STOP", "webhook"},
	};
	for (size_t i = 0; i < 3; i++) {
		json_t *e = json_array_get(h, i);
		assert_string_equal(jstr(e, "channel"), hw[i].channel);
		assert_string_equal(jstr(e, "action"), hw[i].action);
		assert_string_equal(jstr(e, "reason"), hw[i].reason);
		assert_true(strncmp(jstr(e, "by"), hw[i].by, strlen(hw[i].by)) == 0);
		assert_true(json_is_string(json_object_get(e, "at")));
	}
	/* The STOP answered no message by its context: no cause recorded
	 * unless the store linked it to acme's own SMS. */
	json_t *cause = json_object_get(json_array_get(h, 2), "message_id");
	assert_true(json_is_null(cause) || !strcmp(json_string_value(cause), sms1));
	/* Nothing of beta's, nothing of the other number. */
	char *dump = json_dumps(j, 0);
	assert_null(strstr(dump, beta1));
	assert_null(strstr(dump, wa2));
	free(dump);
	json_decref(j);

	/* The other written forms and a national number find the same. */
	static const char *const forms[] = {"/v1/recipients/447911123456",
	                                    "/v1/recipients/00447911123456",
	                                    "/v1/recipients/07911123456?region=GB"};
	for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
		j = get_json(W.key, forms[i], 200);
		assert_string_equal(jstr(j, "to"), PHONE);
		assert_int_equal(json_array_size(json_object_get(j, "messages")), 2);
		json_decref(j);
	}

	/* Paging: one message a page, newest first. */
	j = get_json(W.key, "/v1/recipients/" PHONE_ENC "?limit=1", 200);
	assert_string_equal(ids(json_object_get(j, "messages"), got, sizeof got), sms1);
	assert_string_equal(jstr(j, "next_cursor"), sms1);
	json_decref(j);
	char path[256];
	snprintf(path, sizeof path, "/v1/recipients/%s?limit=1&cursor=%s", PHONE_ENC, sms1);
	j = get_json(W.key, path, 200);
	assert_string_equal(ids(json_object_get(j, "messages"), got, sizeof got), wa1);
	assert_true(json_is_null(json_object_get(j, "next_cursor")));
	json_decref(j);

	/* By message: the same recipient, from either channel's message. */
	snprintf(path, sizeof path, "/v1/messages/%s/recipient", wa1);
	j = get_json(W.key, path, 200);
	assert_string_equal(jstr(j, "to"), PHONE);
	assert_int_equal(json_array_size(json_object_get(j, "messages")), 2);
	assert_int_equal(json_array_size(json_object_get(j, "opt_out_history")), 3);
	json_decref(j);

	/* beta: its own message only, none of acme's replies or opt-outs. */
	j = get_json(BETA_KEY, "/v1/recipients/" PHONE_ENC, 200);
	assert_string_equal(ids(json_object_get(j, "messages"), got, sizeof got), beta1);
	assert_int_equal(json_array_size(json_object_get(j, "replies")), 0);
	assert_int_equal(json_array_size(json_object_get(j, "opt_out_history")), 0);
	assert_int_equal(suppressed_on(j, "whatsapp"), 0);
	assert_int_equal(suppressed_on(j, "sms"), -1); /* beta has no SMS account */
	dump = json_dumps(j, 0);
	assert_null(strstr(dump, wa1));
	assert_null(strstr(dump, sms1));
	assert_null(strstr(dump, "STOP"));
	assert_null(strstr(dump, "asked by phone"));
	free(dump);
	json_decref(j);
	/* acme's message id and acme-only number: 404, as for nothing at all. */
	snprintf(path, sizeof path, "/v1/messages/%s/recipient", wa1);
	struct resp a = call("GET", BETA_KEY, path, NULL);
	struct resp b =
	    call("GET", BETA_KEY, "/v1/messages/01KZZZZZZZZZZZZZZZZZZZZZZZ/recipient", NULL);
	assert_int_equal(a.status, 404);
	assert_int_equal(b.status, 404);
	resp_free(&a);
	resp_free(&b);
	a = call("GET", BETA_KEY, "/v1/recipients/" OTHER, NULL);
	b = call("GET", BETA_KEY, "/v1/recipients/" NOBODY, NULL);
	assert_int_equal(a.status, 404);
	assert_int_equal(b.status, 404);
	assert_string_equal(a.body, b.body);
	resp_free(&a);
	resp_free(&b);
	snprintf(path, sizeof path, "/v1/messages/%s/recipient", beta1);
	a = call("GET", W.key, path, NULL);
	assert_int_equal(a.status, 404);
	resp_free(&a);

	/* Bad parameters: 422 invalid naming each. */
	static const struct {
		const char *path, *field;
	} bad[] = {
	    {"/v1/recipients/" PHONE_ENC "?limit=0", "limit"},
	    {"/v1/recipients/" PHONE_ENC "?limit=201", "limit"},
	    {"/v1/recipients/" PHONE_ENC "?cursor=nope", "cursor"},
	    {"/v1/recipients/" PHONE_ENC "?region=XX", "region"},
	    {"/v1/recipients/" PHONE_ENC "?status=sent", "status"},
	    {"/v1/recipients/07911?region=GB", "to"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = call("GET", W.key, bad[i].path, NULL);
		json_t *e = json_object_get(r.json, "error");
		if (r.status != 422 || strcmp(jstr(e, "field"), bad[i].field) != 0)
			fail_msg("GET %s: %ld %s (want 422 naming %s)", bad[i].path, r.status,
			         r.body, bad[i].field);
		resp_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_recipient_history),
	};
	return cmocka_run_group_tests_name("recipients", tests, setup, teardown);
}
