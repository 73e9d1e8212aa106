/*
 * test_e2e.c - real `herald sim` + `herald serve` processes on loopback:
 * 1,000 messages reach `read` with complete audit trails and reach the
 * provider exactly once; sync mode; permanent failures keep the provider's
 * code; 429s are retried; badly signed webhooks are refused and change
 * nothing; button replies are linked to their message; the CLI works.
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

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init(&W, "    fail_recipients: [\"15550000001\"]\n", NULL);
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

static bool all_read(struct world *w, void *arg)
{
	return count_status(w, "read") >= *(long *)arg;
}

static const char *status_of(json_t *m)
{
	return json_string_value(json_object_get(m, "status"));
}

/* Counts audit events of a type (and status name, if given) that were applied. */
static int events(json_t *m, const char *type, const char *status, int applied)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "type")), type) != 0)
			continue;
		if (status &&
		    (!json_is_string(json_object_get(e, "status")) ||
		     strcmp(json_string_value(json_object_get(e, "status")), status) != 0))
			continue;
		if (applied >= 0 && json_is_true(json_object_get(e, "applied")) != applied)
			continue;
		n++;
	}
	return n;
}

static void test_thousand_reach_read(void **state)
{
	(void)state;
	static char ids[1000][32];
	int n = 0;
	char body[512];
	/* 500 single sends. */
	for (int i = 0; i < 500; i++) {
		snprintf(
		    body, sizeof body,
		    "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 %06d\",\"text\":\"hello %d\"}", i,
		    i);
		struct resp r = api_post(&W, "/v1/messages", body);
		assert_int_equal(r.status, 202);
		assert_string_equal(json_string_value(json_object_get(r.json, "status")), "queued");
		snprintf(ids[n++], 32, "%s", json_string_value(json_object_get(r.json, "id")));
		resp_free(&r);
	}
	/* 500 more in five batches of 100, templates. */
	for (int b = 0; b < 5; b++) {
		json_t *msgs = json_array();
		for (int i = 0; i < 100; i++) {
			char to[32];
			snprintf(to, sizeof to, "4479%08d", 500 + b * 100 + i);
			json_array_append_new(
			    msgs, json_pack("{s:s,s:s,s:{s:s,s:s,s:[s,s]}}", "channel", "whatsapp",
			                    "to", to, "template", "name", "payment_reminder",
			                    "language", "en_GB", "parameters", "Ana", "£1.00"));
		}
		json_t *req = json_pack("{s:o}", "messages", msgs);
		char *js = json_dumps(req, JSON_COMPACT);
		struct resp r = api_post(&W, "/v1/messages:batch", js);
		free(js);
		json_decref(req);
		assert_int_equal(r.status, 202);
		json_t *arr = json_object_get(r.json, "messages");
		assert_int_equal(json_array_size(arr), 100);
		size_t i;
		json_t *m;
		json_array_foreach(arr, i, m)
		    snprintf(ids[n++], 32, "%s", json_string_value(json_object_get(m, "id")));
		resp_free(&r);
	}
	long want = 1000;
	assert_true(wait_until(all_read, &W, &want, 120));

	for (int i = 0; i < n; i++) {
		json_t *m = world_message(&W, ids[i]);
		assert_string_equal(status_of(m), "read");
		assert_int_equal(events(m, "accepted", "queued", 1), 1);
		assert_int_equal(events(m, "sent", NULL, 1), 1);
		assert_int_equal(events(m, "webhook_status", "read", 1), 1);
		/* delivered was applied once, reported or implied by read */
		assert_int_equal(events(m, "webhook_status", "delivered", 1), 1);
		assert_true(strncmp(json_string_value(json_object_get(m, "provider_id")), "wamid.",
		                    6) == 0);
		if (i >= 500)
			assert_string_equal(json_string_value(json_object_get(m, "body")),
			                    "Hi Ana, pay £1.00");
		json_decref(m);
	}

	/* Exactly once at the provider. */
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp s = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(s.status, 200);
	assert_int_equal(json_integer_value(json_object_get(s.json, "duplicates")), 0);
	assert_true(json_integer_value(json_object_get(s.json, "unique_messages")) >= 1000);
	resp_free(&s);
	for (int i = 0; i < n; i += 97) {
		snprintf(url, sizeof url, "%s/sim/messages/%s", W.sim, ids[i]);
		s = http("GET", url, NULL, NULL, NULL);
		assert_int_equal(s.status, 200);
		assert_int_equal(json_integer_value(json_object_get(s.json, "count")), 1);
		resp_free(&s);
	}
}

static void test_sync_mode(void **state)
{
	(void)state;
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"otp 1234\","
	             "\"mode\":\"sync\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")), "sent");
	assert_true(
	    strncmp(json_string_value(json_object_get(r.json, "provider_id")), "wamid.", 6) == 0);
	resp_free(&r);
}

static bool is_status(struct world *w, void *arg)
{
	(void)w;
	const char **a = arg;
	json_t *m = world_message(&W, a[0]);
	bool ok = strcmp(status_of(m), a[1]) == 0;
	json_decref(m);
	return ok;
}

static void test_permanent_failure(void **state)
{
	(void)state;
	struct resp r = api_post(
	    &W, "/v1/messages", "{\"channel\":\"whatsapp\",\"to\":\"15550000001\",\"text\":\"x\"}");
	assert_int_equal(r.status, 202);
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	const char *want[] = {id, "failed"};
	assert_true(wait_until(is_status, &W, want, 30));
	json_t *m = world_message(&W, id);
	json_t *err = json_object_get(m, "error");
	assert_string_equal(json_string_value(json_object_get(err, "code")), "131026");
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1); /* no retry */
	assert_int_equal(events(m, "failed", "failed", 1), 1);
	json_decref(m);
}

static void sim_config(const char *js)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/config", W.sim);
	struct resp r = http("POST", url, NULL, js, NULL);
	assert_true(r.status >= 200 && r.status < 300);
	resp_free(&r);
}

static void test_rate_limited_retry(void **state)
{
	(void)state;
	sim_config("{\"rate_429\":1.0}");
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"447911000002\",\"text\":\"retry me\"}");
	assert_int_equal(r.status, 202);
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	sleep(2);
	sim_config("{\"rate_429\":0.0}");
	const char *want[] = {id, "read"};
	assert_true(wait_until(is_status, &W, want, 60));
	json_t *m = world_message(&W, id);
	assert_true(events(m, "retry", NULL, -1) >= 1);
	assert_true(json_integer_value(json_object_get(m, "attempts")) >= 2);
	json_decref(m);
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
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"447911000003\",\"text\":\"x\"}");
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	const char *want[] = {id, "read"};
	assert_true(wait_until(is_status, &W, want, 30));
	json_t *m = world_message(&W, id);
	char wamid[200];
	snprintf(wamid, sizeof wamid, "%s", json_string_value(json_object_get(m, "provider_id")));
	int nevents = (int)json_array_size(json_object_get(m, "events"));
	json_decref(m);

	char body[1024];
	snprintf(
	    body, sizeof body,
	    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"
	    "\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"statuses\":"
	    "[{\"id\":\"%s\",\"status\":\"failed\",\"timestamp\":\"1750263773\","
	    "\"recipient_id\":\"447911000003\"}]}}]}]}",
	    wamid);
	char url[256], sig[128];
	snprintf(url, sizeof url, "%s/webhooks/whatsapp/acme-wa", W.api);
	char hex[65];
	hr_hmac_sha256_hex("wrong-secret", 12, body, strlen(body), hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	const char *bad[] = {sig, NULL};
	r = http("POST", url, NULL, body, bad);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	r = http("POST", url, NULL, body, NULL); /* missing */
	assert_int_equal(r.status, 401);
	resp_free(&r);
	/* A correctly signed copy is accepted (and, failed after read, ignored). */
	hr_hmac_sha256_hex("app-secret-123", 14, body, strlen(body), hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	const char *good[] = {sig, NULL};
	r = http("POST", url, NULL, body, good);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_true(wait_until(has_ignored_failed, &W, id, 30));
	m = world_message(&W, id);
	assert_string_equal(status_of(m), "read");
	/* Exactly one new audit event: the signed one, recorded as ignored. */
	assert_int_equal((int)json_array_size(json_object_get(m, "events")), nevents + 1);
	assert_int_equal(events(m, "webhook_status", "failed", 0), 1);
	json_decref(m);
	/* Unknown account: 404. */
	snprintf(url, sizeof url, "%s/webhooks/whatsapp/nope", W.api);
	r = http("POST", url, NULL, body, good);
	assert_int_equal(r.status, 404);
	resp_free(&r);
}

static bool has_inbound(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	bool ok = events(m, "inbound", NULL, 1) >= 1;
	json_decref(m);
	return ok;
}

static void test_button_reply_linked(void **state)
{
	(void)state;
	struct resp r = api_post(&W, "/v1/messages",
	                         "{\"channel\":\"whatsapp\",\"to\":\"447911000004\",\"template\":"
	                         "{\"name\":\"payment_reminder\",\"language\":\"en_GB\","
	                         "\"parameters\":[\"Bo\",\"£2\"]}}");
	assert_int_equal(r.status, 202);
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	const char *want[] = {id, "read"};
	assert_true(wait_until(is_status, &W, want, 30));
	json_t *m = world_message(&W, id);
	char body[512];
	snprintf(
	    body, sizeof body,
	    "{\"account\":\"acme-wa\",\"from\":\"447911000004\",\"button_payload\":\"PAY_NOW\","
	    "\"button_text\":\"Pay now\",\"context_id\":\"%s\"}",
	    json_string_value(json_object_get(m, "provider_id")));
	json_decref(m);
	char url[128];
	snprintf(url, sizeof url, "%s/sim/whatsapp/inbound", W.sim);
	r = http("POST", url, NULL, body, NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	assert_true(wait_until(has_inbound, &W, id, 30));
	m = world_message(&W, id);
	size_t i;
	json_t *e;
	bool found = false;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "type")), "inbound") == 0) {
			json_t *d = json_object_get(e, "detail");
			assert_string_equal(json_string_value(json_object_get(d, "payload")),
			                    "PAY_NOW");
			found = true;
		}
	}
	assert_true(found);
	assert_string_equal(status_of(m), "read"); /* a reply does not change the status */
	json_decref(m);
}

static void test_cli(void **state)
{
	(void)state;
	char cmd[1024];
	const char *bin = getenv("HERALD_BIN");
	snprintf(
	    cmd, sizeof cmd,
	    "HERALD_URL=%s HERALD_API_KEY=%s %s send --to +447911000005 --text 'from cli' --json",
	    W.api, W.key, bin);
	FILE *p = popen(cmd, "r");
	char out[4096] = {0};
	size_t n = fread(out, 1, sizeof out - 1, p);
	assert_int_equal(pclose(p), 0);
	out[n] = '\0';
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	const char *want[] = {id, "read"};
	assert_true(wait_until(is_status, &W, want, 30));
	snprintf(cmd, sizeof cmd, "HERALD_URL=%s HERALD_API_KEY=%s %s messages get %s", W.api,
	         W.key, bin, id);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof out - 1, p);
	assert_int_equal(pclose(p), 0);
	out[n] = '\0';
	assert_non_null(strstr(out, "accepted"));
	assert_non_null(strstr(out, "read"));
	/* Wrong key: a clear error and exit code 1. */
	snprintf(cmd, sizeof cmd, "HERALD_URL=%s HERALD_API_KEY=wrong %s messages list 2>&1", W.api,
	         bin);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof out - 1, p);
	int st = pclose(p);
	out[n] = '\0';
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_non_null(strstr(out, "401"));
	/* Unreachable: exit code 3. */
	snprintf(cmd, sizeof cmd,
	         "HERALD_URL=http://127.0.0.1:1 HERALD_API_KEY=x %s messages list 2>&1", bin);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof out - 1, p);
	st = pclose(p);
	assert_int_equal(WEXITSTATUS(st), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_thousand_reach_read),
	    cmocka_unit_test(test_sync_mode),
	    cmocka_unit_test(test_permanent_failure),
	    cmocka_unit_test(test_rate_limited_retry),
	    cmocka_unit_test(test_bad_signature_refused),
	    cmocka_unit_test(test_button_reply_linked),
	    cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests_name("e2e", tests, setup, teardown);
}
