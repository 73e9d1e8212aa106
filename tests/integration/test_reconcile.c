/*
 * test_reconcile.c - the reconciler (src/dispatch/reconciler.c) against
 * real `herald serve` and `herald sim` processes (README "Guarantees"):
 *
 *  - an SMS whose delivery report is lost: past stale_after_s the
 *    reconciler asks Twilio (the simulator answers GET Messages/{Sid}.json
 *    from its own record) and applies the answer: delivered, with a
 *    "lookup_status" event from the reconciler;
 *  - a WhatsApp message that never gets a receipt (no lookup there): marked
 *    stale once and, having a route, falls back to exactly one SMS;
 *  - an OTP with ttl_seconds whose sends are rate-limited until it expires:
 *    expired in the queue, the provider never accepted it (count 0);
 *  - a status webhook for a message Herald never sent: retried, then parked
 *    and listed by GET /v1/webhooks/parked (its tenant only), and counted.
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

#define SMS_LOST "+15550002001"   /* delivered, the report never posted */
#define WA_SILENT "447911200001"  /* sent, never a receipt */
#define WA_LIMITED "447911200002" /* every send rate-limited (130429) */
#define WA_OK "447911200003"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(&W,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: " SID "\n        auth_token: " TOKEN "\n"
	            "        from: \"+15005550006\"\n        rate_limit: 50\n",
	            NULL,
	            "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	            "    recipients:\n"
	            "      \"" SMS_LOST "\": {lose_receipts: true}\n",
	            "    recipients:\n"
	            "      \"" WA_SILENT "\": {fate: silent}\n"
	            "      \"" WA_LIMITED "\": {error: 130429}\n",
	            "reconcile:\n  interval_ms: 200\n  inbox_park_after_s: 2\n"
	            "  stale_after_s: {whatsapp: 2, sms: 2}\n"
	            "dispatch:\n  backoff_base_ms: 300\n  backoff_max_ms: 1000\n");
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void post(const char *body, char id[32])
{
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != 202)
		fprintf(stderr, "POST /v1/messages: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 202);
	snprintf(id, 32, "%s", str(r.json, "id"));
	resp_free(&r);
}

/* Events of the message of this type and source (NULL: any). */
static int events(json_t *m, const char *type, const char *source)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		n += strcmp(str(e, "type"), type) == 0 &&
		     (!source || strcmp(str(e, "source"), source) == 0);
	}
	return n;
}

struct want {
	const char *id, *status;
};

static bool is_status(struct world *w, void *arg)
{
	(void)w;
	const struct want *x = arg;
	json_t *m = world_message(&W, x->id);
	bool ok = strcmp(str(m, "status"), x->status) == 0;
	json_decref(m);
	return ok;
}

struct ev_want {
	const char *id, *type;
};

static bool has_event(struct world *w, void *arg)
{
	(void)w;
	const struct ev_want *x = arg;
	json_t *m = world_message(&W, x->id);
	bool ok = events(m, x->type, NULL) > 0;
	json_decref(m);
	return ok;
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

/* SMS the simulator accepted for a number (0 when it saw none). */
static long sms_accepted(const char *to)
{
	char path[96];
	snprintf(path, sizeof path, "/sim/sms/recipients/%s", to);
	json_t *j = sim_get(path);
	long n = j ? (long)json_integer_value(json_object_get(j, "accepted")) : 0;
	json_decref(j);
	return n;
}

/* WhatsApp sends the simulator accepted for a message id. */
static long wa_accepted(const char *id)
{
	char path[96];
	snprintf(path, sizeof path, "/sim/messages/%s", id);
	json_t *j = sim_get(path);
	long n = j ? (long)json_integer_value(json_object_get(j, "count")) : 0;
	json_decref(j);
	return n;
}

/* One line of /metrics ("name{labels}"), or -1 when absent. */
static long metric(const char *line)
{
	struct resp r = metrics_get(&W);
	long v = -1;
	size_t n = strlen(line);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, line, n) == 0 && p[n] == ' ')
			v = strtol(p + n + 1, NULL, 10);
	resp_free(&r);
	return v;
}

/* ---- tests ---- */

static void test_twilio_stale_settled_by_lookup(void **state)
{
	(void)state;
	char id[32];
	post("{\"channel\":\"sms\",\"to\":\"" SMS_LOST "\",\"text\":\"where is my receipt\"}", id);
	const struct want sent = {id, "sent"};
	assert_true(wait_until(is_status, &W, (void *)&sent, 20));
	/* No report comes; after stale_after_s the reconciler asks. */
	const struct want del = {id, "delivered"};
	assert_true(wait_until(is_status, &W, (void *)&del, 30));
	json_t *m = world_message(&W, id);
	assert_int_equal(events(m, "lookup_status", "reconciler"), 1);
	assert_int_equal(events(m, "stale", NULL), 0);
	assert_int_equal(events(m, "webhook_status", "webhook"), 1); /* "sent" only */
	json_decref(m);
	assert_int_equal(sms_accepted(SMS_LOST), 1);
	assert_true(metric("herald_reconciler_actions_total{action=\"lookup_applied\"}") >= 1);
}

static void test_whatsapp_stale_marked_falls_back(void **state)
{
	(void)state;
	char id[32];
	post("{\"channel\":\"whatsapp\",\"to\":\"" WA_SILENT "\",\"text\":\"are you there\","
	     "\"route\":[\"whatsapp\",\"sms\"]}",
	     id);
	const struct ev_want st = {id, "stale"};
	assert_true(wait_until(has_event, &W, (void *)&st, 30));
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "sent");
	assert_int_equal(events(m, "stale", "reconciler"), 1);
	assert_int_equal(events(m, "fallback", "reconciler"), 1);
	json_t *route = json_object_get(m, "route");
	assert_non_null(route);
	json_t *s1 = json_array_get(json_object_get(route, "steps"), 1);
	assert_string_equal(str(s1, "channel"), "sms");
	char sms_id[32];
	snprintf(sms_id, sizeof sms_id, "%s", str(s1, "message_id"));
	json_decref(m);
	const struct want del = {sms_id, "delivered"};
	assert_true(wait_until(is_status, &W, (void *)&del, 20));
	m = world_message(&W, id);
	route = json_object_get(m, "route");
	json_t *reached = json_object_get(route, "reached_by");
	assert_string_equal(str(reached, "channel"), "sms");
	assert_string_equal(str(reached, "message_id"), sms_id);
	json_decref(m);
	m = world_message(&W, sms_id);
	assert_string_equal(str(m, "to"), "+" WA_SILENT);
	assert_string_equal(str(json_object_get(m, "content"), "text"), "are you there");
	json_decref(m);
	/* Once: later passes add nothing. */
	sleep(1);
	m = world_message(&W, id);
	assert_int_equal(events(m, "stale", NULL), 1);
	assert_int_equal(events(m, "fallback", NULL), 1);
	json_decref(m);
	assert_int_equal(sms_accepted("+" WA_SILENT), 1);
	assert_true(metric("herald_fallbacks_total{reason=\"stale\"}") >= 1);
}

static void test_otp_expires_in_queue(void **state)
{
	(void)state;
	char otp[32], ok[32];
	post("{\"channel\":\"whatsapp\",\"to\":\"" WA_LIMITED "\",\"text\":\"code 123456\","
	     "\"ttl_seconds\":2}",
	     otp);
	post("{\"channel\":\"whatsapp\",\"to\":\"" WA_OK "\",\"text\":\"code 654321\","
	     "\"ttl_seconds\":60}",
	     ok);
	json_t *m = world_message(&W, otp);
	assert_non_null(json_object_get(m, "expires_at"));
	json_decref(m);
	const struct want exp = {otp, "expired"};
	assert_true(wait_until(is_status, &W, (void *)&exp, 20));
	m = world_message(&W, otp);
	assert_string_equal(str(json_object_get(m, "error"), "code"), "expired");
	assert_int_equal(events(m, "expired", NULL), 1);
	json_decref(m);
	assert_int_equal(wa_accepted(otp), 0);
	const struct want del = {ok, "read"};
	assert_true(wait_until(is_status, &W, (void *)&del, 20));
	assert_int_equal(wa_accepted(ok), 1);
	/* ttl_seconds and expires_at are checked, naming the field. */
	struct resp r = api_post(&W, "/v1/messages",
	                         "{\"channel\":\"whatsapp\",\"to\":\"" WA_OK "\",\"text\":\"x\","
	                         "\"ttl_seconds\":0}");
	assert_int_equal(r.status, 422);
	assert_string_equal(str(json_object_get(r.json, "error"), "field"), "ttl_seconds");
	resp_free(&r);
	r = api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"" WA_OK "\",\"text\":\"x\","
	             "\"expires_at\":\"2001-01-01T00:00:00Z\"}");
	assert_int_equal(r.status, 422);
	assert_string_equal(str(json_object_get(r.json, "error"), "field"), "expires_at");
	resp_free(&r);
}

static bool parked_one(struct world *w, void *arg)
{
	(void)arg;
	struct resp r = api_get(w, "/v1/webhooks/parked");
	bool ok = r.status == 200 && json_array_size(json_object_get(r.json, "data")) == 1;
	resp_free(&r);
	return ok;
}

static void test_unmatched_webhook_parked(void **state)
{
	(void)state;
	const char *body =
	    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"
	    "\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"statuses\":"
	    "[{\"id\":\"wamid.NEVER-SENT-BY-HERALD\",\"status\":\"delivered\",\"timestamp\":"
	    "\"1750263773\",\"recipient_id\":\"447911000009\"}]}}]}]}";
	char url[256], sig[128], hex[65];
	snprintf(url, sizeof url, "%s/webhooks/whatsapp/acme-wa", W.api);
	hr_hmac_sha256_hex("app-secret-123", 14, body, strlen(body), hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	const char *h[] = {sig, NULL};
	struct resp r = http("POST", url, NULL, body, h);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_true(wait_until(parked_one, &W, NULL, 30));
	r = api_get(&W, "/v1/webhooks/parked");
	json_t *p = json_array_get(json_object_get(r.json, "data"), 0);
	assert_string_equal(str(p, "account"), "acme-wa");
	assert_string_equal(str(p, "channel"), "whatsapp");
	assert_non_null(strstr(str(p, "reason"), "parked by the reconciler"));
	assert_non_null(strstr(str(p, "body"), "wamid.NEVER-SENT-BY-HERALD"));
	assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
	resp_free(&r);
	/* Another tenant sees none of it. */
	char ourl[160];
	snprintf(ourl, sizeof ourl, "%s/v1/webhooks/parked", W.api);
	r = http("GET", ourl, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);
	assert_int_equal(metric("herald_reconciler_actions_total{action=\"inbox_parked\"}"), 1);
	r = api_get(&W, "/v1/webhooks/parked?limit=0");
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_twilio_stale_settled_by_lookup),
	    cmocka_unit_test(test_whatsapp_stale_marked_falls_back),
	    cmocka_unit_test(test_otp_expires_in_queue),
	    cmocka_unit_test(test_unmatched_webhook_parked),
	};
	return cmocka_run_group_tests_name(
	    harness_postgres() ? "reconcile (postgres)" : "reconcile", tests, setup, teardown);
}
