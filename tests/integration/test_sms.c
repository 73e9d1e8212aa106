/*
 * test_sms.c - SMS through Twilio, end to end: real `herald sim` and
 * `herald serve` processes on loopback. A message is delivered with its
 * segment count stored and reached the provider once; a recipient replying
 * STOP is suppressed (a later message ends `suppressed` with the reason and
 * never reaches the provider) until START; Twilio's 21610 suppresses too; an
 * undelivered callback keeps Twilio's code; HELP gets the configured
 * auto-reply, queued and sent; badly signed callbacks get 401 and change
 * nothing; content SMS cannot carry is refused naming the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "harness.h"

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "tw-token-123"
#define HELP_TEXT "Acme alerts: reply STOP to opt out."
#define TWIML_EMPTY "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"

#define TO_OK "+15550001001"
#define TO_STOP "+15550001002"
#define TO_21610 "+15550001003"
#define TO_UNDELIVERED "+15550001004"
#define TO_HELP "+15550001005"
#define TO_SIG "+15550001006"
#define TO_IN "+919812345678"
#define TO_MMS "+15550001007"
#define TO_REORDER "+15550001008"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(
	    &W,
	    "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	    "        account_sid: " SID "\n        auth_token: " TOKEN "\n"
	    "        from: \"+15005550006\"\n"
	    "        help_text: \"" HELP_TEXT "\"\n        rate_limit: 50\n",
	    "      - {name: otp, channel: sms, language: en, body: \"Your code is {{1}}\",\n"
	    "         regulatory: {dlt_entity_id: \"1201159543060917386\",\n"
	    "                      dlt_template_id: 1107161234567890123}}\n",
	    "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	    "    reply_delay_ms: 10\n    recipients:\n"
	    "      \"" TO_STOP "\": {reply: STOP}\n"
	    "      \"" TO_21610 "\": {error: 21610}\n"
	    "      \"" TO_UNDELIVERED "\": {undelivered: 30003}\n",
	    NULL, NULL);
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

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* Counts audit events of a type (and status, if given) with applied as asked
 * (-1: either). */
static int events(json_t *m, const char *type, const char *status, int applied)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(str(e, "type"), type) != 0)
			continue;
		if (status && (!str(e, "status") || strcmp(str(e, "status"), status) != 0))
			continue;
		if (applied >= 0 && json_is_true(json_object_get(e, "applied")) != applied)
			continue;
		n++;
	}
	return n;
}

/* Sends a text; returns the message id (static buffer per call site). */
static void send_text(const char *to, const char *text, char id[32])
{
	json_t *req = json_pack("{s:s, s:s, s:s}", "channel", "sms", "to", to, "text", text);
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(&W, "/v1/messages", js);
	free(js);
	json_decref(req);
	if (r.status != 202)
		fail_msg("send to %s: HTTP %ld %s", to, r.status, r.body ? r.body : "");
	snprintf(id, 32, "%s", str(r.json, "id"));
	resp_free(&r);
}

static json_t *sim_get(const char *path)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.sim, path);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	json_t *j = r.status == 200 ? json_incref(r.json) : NULL;
	resp_free(&r);
	return j;
}

/* How many sends for a recipient the simulator received (0 if none). */
static long sim_requests(const char *to)
{
	char path[96];
	snprintf(path, sizeof path, "/sim/sms/recipients/%s", to);
	json_t *j = sim_get(path);
	long n = j ? (long)json_integer_value(json_object_get(j, "requests")) : 0;
	json_decref(j);
	return n;
}

/* The suppression reason for a number, or NULL (caller frees). */
static char *suppression(const char *to)
{
	struct resp r = api_get(&W, "/v1/suppressions?channel=sms");
	assert_int_equal(r.status, 200);
	char *reason = NULL;
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(r.json, "data"), i, s) if (strcmp(str(s, "to"), to) == 0)
	    reason = strdup(str(s, "reason") ? str(s, "reason") : "");
	resp_free(&r);
	return reason;
}

static bool is_suppressed(struct world *w, void *arg)
{
	(void)w;
	char *r = suppression(arg);
	free(r);
	return r != NULL;
}

static bool not_suppressed(struct world *w, void *arg)
{
	return !is_suppressed(w, arg);
}

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

/* ---- tests ---- */

static void test_delivered_with_segments(void **state)
{
	(void)state;
	char text[256], id[32], id2[32];
	memset(text, 'a', 200); /* GSM-7, 200 septets: 153 + 47 */
	text[200] = '\0';
	send_text(TO_OK, text, id);
	/* UCS-2: 70 units fit one segment, 71 need two (67 + 4). */
	char uni[400] = "";
	for (int i = 0; i < 69; i++)
		strcat(uni, "x");
	strcat(uni, "\xe2\x82\xac\xf0\x9f\x98\x80"); /* € is GSM (ext), the emoji is not */
	send_text(TO_OK, uni, id2);
	world_wait_status(&W, id, "delivered", 30);
	world_wait_status(&W, id2, "delivered", 30);

	json_t *m = world_message(&W, id);
	assert_int_equal(json_integer_value(json_object_get(m, "segments")), 2);
	assert_string_equal(str(m, "to"), TO_OK);
	const char *sid = str(m, "provider_id");
	assert_non_null(sid);
	assert_int_equal(strlen(sid), 34);
	assert_true(strncmp(sid, "SM", 2) == 0);
	assert_int_equal(events(m, "accepted", "queued", 1), 1);
	assert_int_equal(events(m, "sent", NULL, 1), 1);
	assert_int_equal(events(m, "webhook_status", "delivered", 1), 1);
	/* The simulator got exactly this request, once. */
	char path[128];
	snprintf(path, sizeof path, "/sim/sms/messages/%s", sid);
	json_t *rec = sim_get(path);
	assert_non_null(rec);
	json_t *params = json_object_get(rec, "params");
	assert_string_equal(str(params, "To"), TO_OK);
	assert_string_equal(str(params, "From"), "+15005550006");
	assert_string_equal(str(params, "Body"), text);
	char cb[128];
	snprintf(cb, sizeof cb, "%s/webhooks/sms/acme-sms", W.api);
	assert_string_equal(str(params, "StatusCallback"), cb);
	assert_string_equal(str(json_object_get(rec, "resource"), "num_segments"), "2");
	json_decref(rec);
	snprintf(path, sizeof path, "/sim/messages/%s", sid);
	json_t *once = sim_get(path);
	assert_non_null(once);
	assert_int_equal(json_integer_value(json_object_get(once, "count")), 1);
	json_decref(once);
	json_decref(m);

	m = world_message(&W, id2);
	assert_int_equal(json_integer_value(json_object_get(m, "segments")), 2);
	json_decref(m);
	json_t *st = sim_get("/sim/stats");
	assert_int_equal(json_integer_value(json_object_get(st, "duplicates")), 0);
	json_decref(st);
}

static void test_stop_reply_suppresses_until_start(void **state)
{
	(void)state;
	char id[32];
	send_text(TO_STOP, "Big sale today", id);
	world_wait_status(&W, id, "delivered", 30);
	/* The sim's recipient replies STOP after delivery. */
	assert_true(wait_until(is_suppressed, &W, (void *)TO_STOP, 30));
	char *reason = suppression(TO_STOP);
	assert_non_null(strstr(reason, "STOP"));
	free(reason);
	assert_int_equal(sim_requests(TO_STOP), 1);

	char later[32];
	send_text(TO_STOP, "Another sale", later);
	world_wait_status(&W, later, "suppressed", 30);
	json_t *m = world_message(&W, later);
	assert_int_equal(events(m, "suppressed", NULL, -1), 1);
	assert_int_equal(events(m, "sent", NULL, -1), 0);
	json_t *err = json_object_get(m, "error");
	assert_string_equal(str(err, "code"), "suppressed");
	assert_non_null(strstr(str(err, "message"), "STOP"));
	json_decref(m);
	sleep(1);
	assert_int_equal(sim_requests(TO_STOP), 1); /* never reached the provider */

	/* START re-enables: the next message is sent (and delivered). */
	sim_inbound(TO_STOP, "start");
	assert_true(wait_until(not_suppressed, &W, (void *)TO_STOP, 30));
	char again[32];
	send_text(TO_STOP, "Welcome back", again);
	world_wait_status(&W, again, "delivered", 30);
	assert_int_equal(sim_requests(TO_STOP), 2);
}

static void test_21610_suppresses(void **state)
{
	(void)state;
	char id[32];
	send_text(TO_21610, "hello", id);
	world_wait_status(&W, id, "failed", 30);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(json_object_get(m, "error"), "code"), "21610");
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1); /* no retry */
	json_decref(m);
	assert_true(wait_until(is_suppressed, &W, (void *)TO_21610, 30));
	char *reason = suppression(TO_21610);
	assert_non_null(strstr(reason, "21610"));
	free(reason);
	char later[32];
	send_text(TO_21610, "hello again", later);
	world_wait_status(&W, later, "suppressed", 30);
	sleep(1);
	assert_int_equal(sim_requests(TO_21610), 1);
}

static void test_undelivered_keeps_code(void **state)
{
	(void)state;
	char id[32];
	send_text(TO_UNDELIVERED, "where are you", id);
	world_wait_status(&W, id, "undelivered", 30);
	json_t *m = world_message(&W, id);
	json_t *err = json_object_get(m, "error");
	assert_string_equal(str(err, "code"), "30003");
	assert_non_null(strstr(str(err, "message"), "Unreachable"));
	assert_int_equal(events(m, "webhook_status", "undelivered", 1), 1);
	json_decref(m);
}

struct help_arg {
	char id[32];
};

/* The auto-reply: a message to TO_HELP whose body is the help text. */
static bool help_delivered(struct world *w, void *arg)
{
	struct help_arg *h = arg;
	struct resp r = api_get(w, "/v1/messages?channel=sms&to=%2B15550001005");
	bool ok = false;
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(r.json, "data"), i, m)
	{
		if (str(m, "body") && strcmp(str(m, "body"), HELP_TEXT) == 0 &&
		    strcmp(str(m, "status"), "delivered") == 0) {
			snprintf(h->id, sizeof h->id, "%s", str(m, "id"));
			ok = true;
		}
	}
	resp_free(&r);
	return ok;
}

static void test_help_auto_reply(void **state)
{
	(void)state;
	sim_inbound(TO_HELP, "HELP");
	struct help_arg h = {""};
	assert_true(wait_until(help_delivered, &W, &h, 30));
	json_t *m = world_message(&W, h.id);
	assert_string_equal(str(m, "to"), TO_HELP);
	assert_int_equal(json_integer_value(json_object_get(m, "segments")), 1);
	json_decref(m);
	char path[96];
	snprintf(path, sizeof path, "/sim/sms/recipients/%s", TO_HELP);
	json_t *r = sim_get(path);
	assert_non_null(r);
	assert_string_equal(str(r, "last_body"), HELP_TEXT);
	assert_int_equal(json_integer_value(json_object_get(r, "accepted")), 1);
	json_decref(r);
	/* HELP is not an opt-out. */
	char *reason = suppression(TO_HELP);
	assert_null(reason);
}

static bool has_ignored_failed(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	bool ok = events(m, "webhook_status", "failed", 0) >= 1;
	json_decref(m);
	return ok;
}

static void test_bad_signature_refused(void **state)
{
	(void)state;
	char id[32];
	send_text(TO_SIG, "sign me", id);
	world_wait_status(&W, id, "delivered", 30);
	json_t *m = world_message(&W, id);
	char sid[64];
	snprintf(sid, sizeof sid, "%s", str(m, "provider_id"));
	json_decref(m);

	/* A "failed" callback for the delivered message, parameters sorted. */
	char body[512], s[1024], url[256];
	snprintf(body, sizeof body,
	         "AccountSid=" SID "&ErrorCode=30008&From=%%2B15005550006&MessageSid=%s"
	         "&MessageStatus=failed&To=%%2B15550001006",
	         sid);
	snprintf(url, sizeof url, "%s/webhooks/sms/acme-sms", W.api);
	snprintf(s, sizeof s,
	         "%sAccountSid" SID "ErrorCode30008From+15005550006MessageSid%s"
	         "MessageStatusfailedTo+15550001006",
	         url, sid);
	char good[29], wrong[29], h1[80], h2[80];
	hr_hmac_sha1_b64(TOKEN, strlen(TOKEN), s, strlen(s), good);
	hr_hmac_sha1_b64("not-the-token", 13, s, strlen(s), wrong);
	snprintf(h1, sizeof h1, "X-Twilio-Signature: %s", wrong);
	snprintf(h2, sizeof h2, "X-Twilio-Signature: %s", good);
	const char *ct = "Content-Type: application/x-www-form-urlencoded";
	const char *bad[] = {h1, ct, NULL};
	struct resp r = http("POST", url, NULL, body, bad);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	const char *none[] = {ct, NULL};
	r = http("POST", url, NULL, body, none);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	/* Signed for another URL (a query added): refused too. */
	char other[300];
	snprintf(other, sizeof other, "%s?x=1", url);
	const char *good_h[] = {h2, ct, NULL};
	r = http("POST", other, NULL, body, good_h);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	sleep(1);
	/* None of them reached the audit trail (the sim's own late callbacks
	 * may still add events: count only the forged status). */
	m = world_message(&W, id);
	assert_int_equal(events(m, "webhook_status", "failed", -1), 0);
	json_decref(m);

	/* The correctly signed copy is accepted, and (failed after delivered)
	 * recorded as ignored. */
	r = http("POST", url, NULL, body, good_h);
	assert_int_equal(r.status, 200);
	/* Answered with TwiML, as Twilio expects of every webhook. */
	assert_string_equal(r.body, TWIML_EMPTY);
	resp_free(&r);
	assert_true(wait_until(has_ignored_failed, &W, id, 30));
	m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "delivered");
	assert_int_equal(events(m, "webhook_status", "failed", -1), 1);
	assert_int_equal(events(m, "webhook_status", "failed", 0), 1);
	json_decref(m);
}

static void test_refused_content(void **state)
{
	(void)state;
	struct {
		const char *body, *field;
	} cases[] = {
	    {"{\"channel\":\"sms\",\"to\":\"" TO_OK "\",\"text\":\"x\",\"buttons\":[{\"id\":\"y\","
	     "\"title\":\"Yes\"}]}",
	     "buttons"},
	    {"{\"channel\":\"sms\",\"to\":\"" TO_OK "\",\"document\":{\"url\":"
	     "\"https://example.com/a.pdf\",\"filename\":\"a.pdf\"}}",
	     "type"},
	    {"{\"channel\":\"sms\",\"to\":\"12\",\"text\":\"x\"}", "to"},
	    {"{\"channel\":\"sms\",\"to\":\"" TO_OK "\",\"text\":\"x\",\"options\":{"
	     "\"validity_period\":99999}}",
	     "options.validity_period"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r = api_post(&W, "/v1/messages", cases[i].body);
		if (r.status != 422)
			fail_msg("case %zu: HTTP %ld %s", i, r.status, r.body ? r.body : "");
		if (!r.body || !strstr(r.body, cases[i].field))
			fail_msg("case %zu: %s does not name %s", i, r.body ? r.body : "",
			         cases[i].field);
		resp_free(&r);
	}
}

/* The simulator's record of a Herald message: what it received. */
static json_t *sim_record(const char *id)
{
	json_t *m = world_message(&W, id);
	char path[128];
	snprintf(path, sizeof path, "/sim/sms/messages/%s", str(m, "provider_id"));
	json_decref(m);
	json_t *rec = sim_get(path);
	assert_non_null(rec);
	return rec;
}

static void test_template_regulatory_and_options(void **state)
{
	(void)state;
	struct resp r = api_post(&W, "/v1/messages",
	                         "{\"channel\":\"sms\",\"to\":\"+91 98123 45678\",\"template\":"
	                         "{\"name\":\"otp\",\"language\":\"en\",\"parameters\":[\"4821\"]},"
	                         "\"options\":{\"validity_period\":600}}");
	if (r.status != 202)
		fail_msg("HTTP %ld %s", r.status, r.body ? r.body : "");
	char id[32];
	snprintf(id, sizeof id, "%s", str(r.json, "id"));
	resp_free(&r);
	world_wait_status(&W, id, "delivered", 30);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "to"), TO_IN);
	assert_string_equal(str(m, "body"), "Your code is 4821");
	assert_int_equal(json_integer_value(json_object_get(m, "segments")), 1);
	json_decref(m);
	json_t *rec = sim_record(id);
	json_t *p = json_object_get(rec, "params");
	assert_string_equal(str(p, "To"), TO_IN);
	assert_string_equal(str(p, "Body"), "Your code is 4821");
	assert_string_equal(str(p, "ValidityPeriod"), "600");
	assert_string_equal(str(p, "DltPEId"), "1201159543060917386");
	assert_string_equal(str(p, "DltTemplateId"), "1107161234567890123");
	json_decref(rec);
}

static void test_image_as_mms(void **state)
{
	(void)state;
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"sms\",\"to\":\"" TO_MMS "\",\"image\":{\"url\":"
	             "\"https://cdn.example.com/receipt.png\",\"caption\":\"Your receipt\"}}");
	if (r.status != 202)
		fail_msg("HTTP %ld %s", r.status, r.body ? r.body : "");
	char id[32];
	snprintf(id, sizeof id, "%s", str(r.json, "id"));
	resp_free(&r);
	world_wait_status(&W, id, "delivered", 30);
	json_t *m = world_message(&W, id);
	assert_true(strncmp(str(m, "provider_id"), "MM", 2) == 0);
	json_decref(m);
	json_t *rec = sim_record(id);
	json_t *p = json_object_get(rec, "params");
	assert_string_equal(str(p, "MediaUrl"), "https://cdn.example.com/receipt.png");
	assert_string_equal(str(p, "Body"), "Your receipt");
	json_decref(rec);
}

static void sim_sms_config(const char *js)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/sms/config", W.sim);
	struct resp r = http("POST", url, NULL, js, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

static bool has_ignored_sent(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	bool ok = events(m, "webhook_status", "sent", 0) >= 1;
	json_decref(m);
	return ok;
}

/* delivered before sent, and every callback posted twice (a retry with the
 * same idempotency token): one delivered event, sent recorded as stale. */
static void test_reorder_and_duplicates(void **state)
{
	(void)state;
	sim_sms_config("{\"reorder_rate\":1,\"dup_rate\":1}");
	char id[32];
	send_text(TO_REORDER, "out of order", id);
	world_wait_status(&W, id, "delivered", 30);
	assert_true(wait_until(has_ignored_sent, &W, id, 30));
	sim_sms_config("{\"reorder_rate\":0,\"dup_rate\":0}");
	sleep(1);
	json_t *rec = sim_record(id);
	json_t *cbs = json_object_get(rec, "callbacks");
	assert_int_equal(json_array_size(cbs), 4);
	assert_string_equal(json_string_value(json_array_get(cbs, 0)), "delivered");
	json_decref(rec);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "delivered");
	assert_int_equal(events(m, "webhook_status", "delivered", -1), 1);
	assert_int_equal(events(m, "webhook_status", "sent", -1), 1);
	json_decref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_delivered_with_segments),
	    cmocka_unit_test(test_stop_reply_suppresses_until_start),
	    cmocka_unit_test(test_21610_suppresses),
	    cmocka_unit_test(test_undelivered_keeps_code),
	    cmocka_unit_test(test_help_auto_reply),
	    cmocka_unit_test(test_bad_signature_refused),
	    cmocka_unit_test(test_refused_content),
	    cmocka_unit_test(test_template_regulatory_and_options),
	    cmocka_unit_test(test_image_as_mms),
	    cmocka_unit_test(test_reorder_and_duplicates),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
