/*
 * test_account_health.c - a sender account's health and its pause
 * (GET /v1/channels/{id}/health, POST .../pause, .../resume) against real
 * `herald serve` and `herald sim` processes:
 *   - after 20 sends and one the provider refuses (131026), the figures are
 *     exact: 21 sends in the last minute, 20 ok and 1 failed in the last
 *     15 minutes with its error code, last success, failure and webhook
 *     times, an empty queue, the configured rate;
 *   - a paused account sends nothing (its messages stay queued and the
 *     queue depth says how many, while another account's message goes
 *     out), resuming sends them all; pause and resume are in the audit log
 *     with who and why; resuming an active account is a 409;
 *   - a pause needs a reason; unknown fields are refused naming them;
 *   - another tenant gets 404 for the account's health, pause and resume;
 *   - GET /v1/stats/daily: today's counters per channel exactly what the
 *     file sent (accepted, sent, delivered, read, failed), yesterday zeros,
 *     nothing for another tenant, 422 for a bad days.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "tw-token-123"
#define OTHER_KEY "hk_other_0123456789abcdef"
#define REFUSED "+447400990009"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(&W,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: " SID "\n        auth_token: " TOKEN "\n"
	            "        from: \"+15005550006\"\n        rate_limit: 50\n",
	            NULL, "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n",
	            "    recipients:\n      \"" REFUSED "\": {error: 131026}\n", NULL);
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

static struct resp call(const char *method, const char *key, const char *path, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http(method, url, key, body, NULL);
}

static json_t *health(void)
{
	struct resp r = call("GET", W.key, "/v1/channels/acme-wa/health", NULL);
	if (r.status != 200)
		fail_msg("health: %ld %s", r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static long long num(json_t *o, const char *path)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", path);
	char *dot = strchr(buf, '.');
	if (dot) {
		*dot = '\0';
		o = json_object_get(o, buf);
		path = dot + 1;
	}
	return (long long)json_integer_value(json_object_get(o, dot ? path : buf));
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static void send_wa(const char *to, char id[32])
{
	char body[160];
	snprintf(body, sizeof body, "{\"channel\":\"whatsapp\",\"to\":\"%s\",\"text\":\"x\"}", to);
	struct resp r = call("POST", W.key, "/v1/messages", body);
	if (r.status != 202)
		fail_msg("send: %ld %s", r.status, r.body);
	if (id)
		snprintf(id, 32, "%s", jstr(r.json, "id"));
	resp_free(&r);
}

struct want {
	const char *field;
	long long n;
};

static bool health_has(struct world *w, void *arg)
{
	(void)w;
	const struct want *x = arg;
	json_t *j = health();
	bool ok = num(j, x->field) == x->n;
	json_decref(j);
	return ok;
}

static void wait_health(const char *field, long long n)
{
	struct want x = {field, n};
	if (!wait_until(health_has, &W, &x, 60)) {
		json_t *j = health();
		char *d = json_dumps(j, 0);
		fail_msg("health %s never became %lld: %s", field, n, d);
	}
}

static bool status_is(struct world *w, void *arg)
{
	(void)w;
	const char **a = arg;
	char path[96];
	snprintf(path, sizeof path, "/v1/messages/%s", a[0]);
	struct resp r = call("GET", W.key, path, NULL);
	bool ok = r.status == 200 && !strcmp(jstr(r.json, "status"), a[1]);
	resp_free(&r);
	return ok;
}

static bool has_webhook(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	json_t *j = health();
	bool ok = json_is_string(json_object_get(j, "last_webhook_at"));
	json_decref(j);
	return ok;
}

static void test_figures(void **state)
{
	(void)state;
	char phone[32];
	for (int i = 0; i < 20; i++) {
		snprintf(phone, sizeof phone, "+4474009%05d", 20000 + i);
		send_wa(phone, NULL);
	}
	send_wa(REFUSED, NULL);
	/* Sends reach the last minute's window once their second is over. */
	wait_health("sent_last_minute", 21);
	json_t *j = health();
	assert_string_equal(jstr(j, "state"), "active");
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_string_equal(jstr(j, "figures"), "node");
	assert_int_equal(num(j, "recent.ok"), 20);
	assert_int_equal(num(j, "recent.failed"), 1);
	assert_int_equal(num(j, "recent.retried"), 0);
	assert_int_equal(num(j, "recent.window_s"), 900);
	double er = json_real_value(json_object_get(json_object_get(j, "recent"), "error_rate"));
	assert_true(er > 1.0 / 21 - 1e-9 && er < 1.0 / 21 + 1e-9);
	assert_string_equal(jstr(j, "last_error"), "131026");
	assert_true(json_is_string(json_object_get(j, "last_success_at")));
	assert_true(json_is_string(json_object_get(j, "last_failure_at")));
	assert_true(json_real_value(json_object_get(j, "configured_rate")) == 5000.0);
	assert_true(json_real_value(json_object_get(j, "observed_rate")) > 0.34 &&
	            json_real_value(json_object_get(j, "observed_rate")) < 0.36);
	assert_int_equal(num(j, "queue_depth"), 0);
	assert_false(json_is_true(json_object_get(j, "queue_depth_capped")));
	assert_true(json_is_null(json_object_get(j, "paused")));
	assert_false(json_is_true(json_object_get(j, "has_token")));
	assert_null(json_object_get(j, "token_expires_at")); /* WhatsApp: no expiring token */
	json_decref(j);
	/* The receipts came by webhook. */
	assert_true(wait_until(has_webhook, &W, NULL, 30));
}

static void test_pause_resume(void **state)
{
	(void)state;
	struct resp r = call("POST", W.key, "/v1/channels/acme-wa/pause",
	                     "{\"reason\":\"provider incident INC-42\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.json, "state"), "paused");
	json_t *p = json_object_get(r.json, "paused");
	assert_string_equal(jstr(p, "reason"), "provider incident INC-42");
	assert_true(strncmp(jstr(p, "by"), "key:", 4) == 0);
	resp_free(&r);

	char ids[5][32];
	for (int i = 0; i < 5; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474009%05d", 30000 + i);
		send_wa(phone, ids[i]);
	}
	wait_health("queue_depth", 5);
	/* Another account keeps sending: once its message is out, the
	 * dispatcher has had its turns, and the paused one's are still queued. */
	r = call("POST", W.key, "/v1/messages",
	         "{\"channel\":\"sms\",\"to\":\"+447400930001\",\"text\":\"y\"}");
	assert_int_equal(r.status, 202);
	const char *args[2] = {jstr(r.json, "id"), "delivered"};
	char sms_id[32];
	snprintf(sms_id, sizeof sms_id, "%s", args[0]);
	args[0] = sms_id;
	resp_free(&r);
	assert_true(wait_until(status_is, &W, args, 30));
	json_t *j = health();
	assert_int_equal(num(j, "queue_depth"), 5);
	assert_string_equal(jstr(j, "state"), "paused");
	json_decref(j);
	for (int i = 0; i < 5; i++) {
		const char *q[2] = {ids[i], "queued"};
		assert_true(status_is(&W, q));
	}

	r = call("POST", W.key, "/v1/channels/acme-wa/resume", "{\"reason\":\"incident over\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(jstr(r.json, "state"), "active");
	resp_free(&r);
	wait_health("queue_depth", 0);
	for (int i = 0; i < 5; i++) {
		const char *q[2] = {ids[i], "read"};
		assert_true(wait_until(status_is, &W, q, 30));
	}
	/* Resuming an active account: 409. */
	r = call("POST", W.key, "/v1/channels/acme-wa/resume", "{}");
	assert_int_equal(r.status, 409);
	resp_free(&r);

	/* Both are in the audit log, with who and why. */
	r = call("GET", W.key, "/v1/audit?limit=100", NULL);
	assert_int_equal(r.status, 200);
	int pauses = 0, resumes = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r.json, "entries"), i, e)
	{
		char *after = json_dumps(json_object_get(e, "after"), 0);
		if (!strcmp(jstr(e, "action"), "account.pause") &&
		    !strcmp(jstr(e, "object"), "account:acme-wa") && strstr(after, "INC-42"))
			pauses++;
		if (!strcmp(jstr(e, "action"), "account.resume") && strstr(after, "incident over"))
			resumes++;
		assert_true(strncmp(jstr(e, "actor"), "key:", 4) == 0);
		free(after);
	}
	assert_int_equal(pauses, 1);
	assert_int_equal(resumes, 1);
	resp_free(&r);
}

static void test_bad_and_foreign(void **state)
{
	(void)state;
	static const struct {
		const char *path, *body, *field;
	} bad[] = {
	    {"/v1/channels/acme-wa/pause", "{}", "reason"},
	    {"/v1/channels/acme-wa/pause", "{\"reason\":\"\"}", "reason"},
	    {"/v1/channels/acme-wa/pause", "{\"reason\":7}", "reason"},
	    {"/v1/channels/acme-wa/pause", "{\"reason\":\"x\",\"until\":1}", "until"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct resp r = call("POST", W.key, bad[i].path, bad[i].body);
		json_t *e = json_object_get(r.json, "error");
		if (r.status != 422 || strcmp(jstr(e, "field"), bad[i].field) != 0)
			fail_msg("POST %s %s: %ld %s", bad[i].path, bad[i].body, r.status, r.body);
		resp_free(&r);
	}
	json_t *j = health();
	assert_string_equal(jstr(j, "state"), "active"); /* nothing half-done */
	json_decref(j);
	/* Another tenant: the account does not exist for it. */
	static const char *const m[][2] = {{"GET", "/v1/channels/acme-wa/health"},
	                                   {"POST", "/v1/channels/acme-wa/pause"},
	                                   {"POST", "/v1/channels/acme-wa/resume"},
	                                   {"GET", "/v1/channels/nope/health"}};
	for (size_t i = 0; i < 4; i++) {
		struct resp r = call(m[i][0], OTHER_KEY, m[i][1],
		                     !strcmp(m[i][0], "POST") ? "{\"reason\":\"x\"}" : NULL);
		if (r.status != 404)
			fail_msg("%s %s by another tenant: %ld %s", m[i][0], m[i][1], r.status,
			         r.body);
		resp_free(&r);
	}
	j = health();
	assert_string_equal(jstr(j, "state"), "active");
	json_decref(j);
}

/* the daily counters through GET /v1/stats/daily, after every
 * send of this file: WhatsApp 26 accepted, 25 sent, delivered and read, 1
 * refused; SMS 1 accepted, sent and delivered (no reads on SMS). */
static json_t *today_of(const char *key, const char *channel)
{
	struct resp r = call("GET", key, "/v1/stats/daily", NULL);
	if (r.status != 200)
		fail_msg("stats: %ld %s", r.status, r.body);
	json_t *days = json_object_get(r.json, "days");
	assert_int_equal(json_array_size(days), 2);
	json_t *today = json_array_get(days, 1), *found = NULL;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(today, "channels"), i,
	                   c) if (!strcmp(jstr(c, "channel"), channel)) found = json_incref(c);
	resp_free(&r);
	return found;
}

static bool all_read(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	json_t *c = today_of(W.key, "whatsapp");
	bool ok = c && num(c, "read") == 25;
	json_decref(c);
	return ok;
}

static void test_daily_stats(void **state)
{
	(void)state;
	if (!wait_until(all_read, &W, NULL, 60)) {
		json_t *c = today_of(W.key, "whatsapp");
		fail_msg("whatsapp today: %s", c ? json_dumps(c, 0) : "none");
	}
	json_t *c = today_of(W.key, "whatsapp");
	assert_int_equal(num(c, "accepted"), 26);
	assert_int_equal(num(c, "sent"), 25);
	assert_int_equal(num(c, "delivered"), 25);
	assert_int_equal(num(c, "read"), 25);
	assert_int_equal(num(c, "failed"), 1);
	assert_true(json_real_value(json_object_get(c, "delivery_rate")) == 1.0);
	json_decref(c);
	/* The top failure codes, with their meaning from the channel's table. */
	struct resp fr = call("GET", W.key, "/v1/stats/daily", NULL);
	json_t *codes = json_object_get(fr.json, "failure_codes");
	assert_int_equal(json_array_size(codes), 1);
	json_t *fc = json_array_get(codes, 0);
	assert_string_equal(jstr(fc, "channel"), "whatsapp");
	assert_string_equal(jstr(fc, "code"), "131026");
	assert_int_equal(num(fc, "count"), 1);
	assert_string_equal(jstr(fc, "meaning"), "Message undeliverable");
	resp_free(&fr);
	c = today_of(W.key, "sms");
	assert_int_equal(num(c, "accepted"), 1);
	assert_int_equal(num(c, "sent"), 1);
	assert_int_equal(num(c, "delivered"), 1);
	assert_int_equal(num(c, "read"), 0);
	assert_int_equal(num(c, "failed"), 0);
	json_decref(c);
	/* Yesterday: zeros on every channel of the tenant. */
	struct resp r = call("GET", W.key, "/v1/stats/daily?days=2", NULL);
	json_t *y = json_array_get(json_object_get(r.json, "days"), 0);
	assert_int_equal(json_array_size(json_object_get(y, "channels")), 2);
	size_t i;
	json_t *ch;
	json_array_foreach(json_object_get(y, "channels"), i, ch)
	{
		assert_int_equal(num(ch, "accepted"), 0);
		assert_true(json_is_null(json_object_get(ch, "delivery_rate")));
	}
	resp_free(&r);
	/* Another tenant sees none of it. */
	r = call("GET", OTHER_KEY, "/v1/stats/daily?days=31", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "days")), 31);
	json_array_foreach(json_object_get(r.json, "days"), i, ch)
	    assert_int_equal(json_array_size(json_object_get(ch, "channels")), 0);
	resp_free(&r);
	static const char *const bad[] = {"/v1/stats/daily?days=0", "/v1/stats/daily?days=32",
	                                  "/v1/stats/daily?days=x", "/v1/stats/daily?day=1"};
	for (size_t k = 0; k < 4; k++) {
		r = call("GET", W.key, bad[k], NULL);
		if (r.status != 422)
			fail_msg("GET %s: %ld %s", bad[k], r.status, r.body);
		resp_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_figures),
	    cmocka_unit_test(test_pause_resume),
	    cmocka_unit_test(test_bad_and_foreign),
	    cmocka_unit_test(test_daily_stats),
	};
	return cmocka_run_group_tests_name("account_health", tests, setup, teardown);
}
