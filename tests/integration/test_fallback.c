/*
 * test_fallback.c - fallback routing under racing webhooks and reconciler,
 * against real `herald serve` and `herald sim` processes (README
 * "Guarantees", issue 10 part 6's last bullet).
 *
 * 40 recipients, each sent a WhatsApp message with the route
 * ["whatsapp","sms"] and fallback_after_s 2, while the simulator posts
 * every WhatsApp webhook twice (dup_rate 1) and the reconciler runs every
 * 50 ms:
 *   FAIL   the send is accepted, then a FAILED receipt comes (x2)
 *   REJECT the send itself is refused (131026): FAILED at once
 *   SILENT sent, and no receipt ever: the deadline falls back
 *   LATE   delivered 4 s after the send: the deadline falls back first,
 *          the late DELIVERED (x2) is recorded and makes nothing more
 *   OK     delivered after 100 ms: never falls back
 * Asserted from the simulator's own counts: exactly one SMS for each of
 * the first four groups, none for OK; and per message, one "fallback"
 * event, the route shown by GET /v1/messages/{id}, the channel that
 * reached the recipient, and herald_fallbacks_total by reason.
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

#include "harness.h"

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "tw-token-123"
#define PER_GROUP 8

enum { G_FAIL, G_REJECT, G_SILENT, G_LATE, G_OK, G__COUNT };
static const char *const group_name[G__COUNT] = {"fail", "reject", "silent", "late", "ok"};

static struct world W;

/* The WhatsApp number of recipient i of group g. */
static void number(int g, int i, char out[32])
{
	snprintf(out, 32, "4479113%02d%03d", g, i);
}

static int setup(void **state)
{
	(void)state;
	/* Each recipient's fate, by number, in the simulator's knobs. */
	static char knobs[12288];
	size_t n = (size_t)snprintf(knobs, sizeof knobs, "    dup_rate: 1\n    recipients:\n");
	for (int g = 0; g < G__COUNT; g++)
		for (int i = 0; i < (g == G_SILENT ? PER_GROUP + 12 : PER_GROUP); i++) {
			char to[32];
			number(g, i, to);
			const char *fate = g == G_FAIL     ? "{fate: failed}"
			                   : g == G_REJECT ? "{error: 131026}"
			                   : g == G_SILENT ? "{fate: silent}"
			                   : g == G_LATE   ? "{delivered_delay_ms: 4000}"
			                                   : "{delivered_delay_ms: 100}";
			n += (size_t)snprintf(knobs + n, sizeof knobs - n, "      \"%s\": %s\n", to,
			                      fate);
		}
	/* The campaign's recipients (test_campaign_route): two whose WhatsApp
	 * fails, two delivered. */
	for (int i = 0; i < 6; i++)
		n += (size_t)snprintf(knobs + n, sizeof knobs - n, "      \"44740090%04d\": %s\n", i,
		                      i < 2 || i == 4 ? "{fate: failed}" : "{delivered_delay_ms: 100}");
	world_init2(&W,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: " SID "\n        auth_token: " TOKEN "\n"
	            "        from: \"+15005550006\"\n        rate_limit: 200\n",
	            /* test_template_route: a template whose messages fall back. */
	            "      - {name: parcel_ready, channel: whatsapp, language: en_GB,"
	            " body: \"Parcel {{1}} is ready\", route: [whatsapp, sms],"
	            " fallback_text: \"SMS: your parcel is ready\"}\n",
	            "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n",
	            knobs,
	            /* Two dispatch loops: acme-wa hashes to loop 0 and acme-sms
	             * to loop 1, so every fallback here crosses loops. */
	            "reconcile:\n  interval_ms: 50\n  stale_after_s: {whatsapp: 0, sms: 0}\n"
	            "dispatch:\n  threads: 2\n");
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

static int events(json_t *m, const char *type)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e) n +=
	    strcmp(str(e, "type"), type) == 0;
	return n;
}

static long sms_accepted(const char *to)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/sms/recipients/%s", W.sim, to);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	long n =
	    r.status == 200 ? (long)json_integer_value(json_object_get(r.json, "accepted")) : 0;
	resp_free(&r);
	return n;
}

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

static char ids[G__COUNT][PER_GROUP][32];

/* Every message settled as its group must end: FAIL and REJECT failed,
 * SILENT sent, LATE and OK delivered or read; every needed SMS delivered. */
static bool all_settled(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	for (int g = 0; g < G__COUNT; g++)
		for (int i = 0; i < PER_GROUP; i++) {
			json_t *m = world_message(&W, ids[g][i]);
			const char *st = str(m, "status");
			bool ok = g <= G_REJECT ? strcmp(st, "failed") == 0
			          : g == G_SILENT
			              ? strcmp(st, "sent") == 0
			              : strcmp(st, "delivered") == 0 || strcmp(st, "read") == 0;
			if (ok && g != G_OK) {
				json_t *s1 = json_array_get(
				    json_object_get(json_object_get(m, "route"), "steps"), 1);
				const char *s1st = str(s1, "status");
				ok = s1st && strcmp(s1st, "delivered") == 0;
			}
			json_decref(m);
			if (!ok)
				return false;
		}
	return true;
}

static void test_fallback_race(void **state)
{
	(void)state;
	for (int i = 0; i < PER_GROUP; i++)
		for (int g = 0; g < G__COUNT; g++) {
			char to[32], body[512];
			number(g, i, to);
			snprintf(
			    body, sizeof body,
			    "{\"channel\":\"whatsapp\",\"to\":\"%s\",\"text\":\"parcel %d-%d\","
			    "\"route\":[\"whatsapp\",{\"channel\":\"sms\",\"account\":\"acme-sms\"}"
			    "],"
			    "\"fallback_after_s\":2,\"fallback_text\":\"SMS: parcel %d-%d\"}",
			    to, g, i, g, i);
			struct resp r = api_post(&W, "/v1/messages", body);
			if (r.status != 202)
				fprintf(stderr, "POST: %ld %s\n", r.status, r.body);
			assert_int_equal(r.status, 202);
			snprintf(ids[g][i], sizeof ids[g][i], "%s", str(r.json, "id"));
			resp_free(&r);
		}
	assert_true(wait_until(all_settled, &W, NULL, 45));
	/* The late receipts (4 s) land after the fallbacks (2 s): wait them out
	 * and a little more, so anything they could wrongly make would show. */
	sleep(2);

	for (int g = 0; g < G__COUNT; g++)
		for (int i = 0; i < PER_GROUP; i++) {
			char to[32], e164[40];
			number(g, i, to);
			snprintf(e164, sizeof e164, "+%s", to);
			long want = g == G_OK ? 0 : 1;
			long got = sms_accepted(e164);
			if (got != want)
				fprintf(stderr, "%s recipient %s: %ld SMS, want %ld\n",
				        group_name[g], to, got, want);
			assert_int_equal(got, want);
			json_t *m = world_message(&W, ids[g][i]);
			assert_int_equal(events(m, "fallback"), want);
			json_t *route = json_object_get(m, "route");
			assert_non_null(route);
			assert_string_equal(str(route, "root_id"), ids[g][i]);
			json_t *steps = json_object_get(route, "steps");
			assert_int_equal(json_array_size(steps), 2);
			json_t *s0 = json_array_get(steps, 0), *s1 = json_array_get(steps, 1);
			assert_string_equal(str(s0, "message_id"), ids[g][i]);
			assert_string_equal(str(s1, "channel"), "sms");
			assert_string_equal(str(s1, "account"), "acme-sms");
			json_t *reached = json_object_get(route, "reached_by");
			if (g == G_OK) {
				assert_true(json_is_null(json_object_get(s1, "message_id")));
				assert_string_equal(str(reached, "channel"), "whatsapp");
			} else if (g == G_LATE) {
				/* Both reached them: the first step is named. */
				assert_string_equal(str(reached, "channel"), "whatsapp");
				/* The late DELIVERED was recorded after the fallback. */
				assert_true(events(m, "webhook_status") >= 2);
			} else {
				assert_string_equal(str(reached, "channel"), "sms");
				/* The follow-up names the original. */
				json_t *f = world_message(&W, str(s1, "message_id"));
				assert_string_equal(str(f, "to"), e164);
				assert_string_equal(str(json_object_get(f, "route"), "root_id"),
				                    ids[g][i]);
				char text[64];
				snprintf(text, sizeof text, "SMS: parcel %d-%d", g, i);
				assert_string_equal(str(json_object_get(f, "content"), "text"),
				                    text);
				json_decref(f);
			}
			json_decref(m);
		}
	assert_int_equal(metric("herald_fallbacks_total{reason=\"failed\"}"), 2 * PER_GROUP);
	assert_int_equal(metric("herald_fallbacks_total{reason=\"no_receipt\"}"), 2 * PER_GROUP);
	assert_int_equal(metric("herald_fallbacks_total{reason=\"stale\"}"), 0);
}

/* A route is checked before anything is stored, naming the field. */
static void test_route_validation(void **state)
{
	(void)state;
	static const struct {
		const char *body, *field;
	} bad[] = {
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\",\"route\":[\"sms\","
	     "\"whatsapp\"]}",
	     "route[0]"},
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\",\"route\":["
	     "\"whatsapp\","
	     "\"telegram\"]}",
	     "route[1]"},
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\",\"route\":["
	     "\"whatsapp\"]}",
	     "route"},
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\",\"route\":["
	     "\"whatsapp\","
	     "\"rcs\"]}",
	     "route[1]"}, /* acme has no RCS account */
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\",\"route\":["
	     "\"whatsapp\","
	     "\"sms\"],\"fallback_after_s\":0}",
	     "fallback_after_s"},
	    {"{\"channel\":\"whatsapp\",\"to\":\"447911000001\",\"text\":\"x\","
	     "\"fallback_after_s\":5}",
	     "fallback_after_s"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct resp r = api_post(&W, "/v1/messages", bad[i].body);
		assert_int_equal(r.status, 422);
		assert_string_equal(str(json_object_get(r.json, "error"), "field"), bad[i].field);
		resp_free(&r);
	}
}

/* The route's steps as GET shows them: how many have a message. */
static int route_made(const char *id, char sms_id[32])
{
	json_t *m = world_message(&W, id);
	json_t *steps = json_object_get(json_object_get(m, "route"), "steps");
	int n = 0;
	size_t i;
	json_t *s;
	json_array_foreach(steps, i, s)
	{
		const char *mid = str(s, "message_id");
		if (mid) {
			n++;
			if (i == 1)
				snprintf(sms_id, 32, "%s", mid);
		}
	}
	json_decref(m);
	return n;
}

static char crash_ids[12][32];

static bool crash_all_fell_back(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	for (int i = 0; i < 12; i++) {
		char sms[32] = "";
		if (route_made(crash_ids[i], sms) != 2)
			return false;
		json_t *m = world_message(&W, sms);
		const char *st = str(m, "status");
		bool settled = strcmp(st, "delivered") == 0 || strcmp(st, "unknown") == 0;
		json_decref(m);
		if (!settled)
			return false;
	}
	return true;
}

/* kill -9 while the reconciler is making follow-ups (the deadlines of 12
 * silent recipients fall due around the kill), then a restart: each still
 * gets exactly one follow-up, and (at_most_once, so a send cut by the
 * kill is never repeated) the provider got at most one SMS each, exactly
 * one for every follow-up that is not unknown. */
static void test_fallback_crash(void **state)
{
	(void)state;
	for (int i = 0; i < 12; i++) {
		char to[32], body[512];
		number(G_SILENT, PER_GROUP + i, to);
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"%s\",\"text\":\"crash %d\","
		         "\"route\":[\"whatsapp\",\"sms\"],\"fallback_after_s\":%d,"
		         "\"delivery_policy\":\"at_most_once\"}",
		         to, i, 1 + i % 3);
		struct resp r = api_post(&W, "/v1/messages", body);
		assert_int_equal(r.status, 202);
		snprintf(crash_ids[i], sizeof crash_ids[i], "%s", str(r.json, "id"));
		resp_free(&r);
	}
	usleep(1900 * 1000);
	world_kill9_serve(&W);
	world_start_serve(&W);
	assert_true(wait_until(crash_all_fell_back, &W, NULL, 45));
	sleep(1);
	for (int i = 0; i < 12; i++) {
		char to[32], e164[40], sms[32] = "";
		number(G_SILENT, PER_GROUP + i, to);
		snprintf(e164, sizeof e164, "+%s", to);
		assert_int_equal(route_made(crash_ids[i], sms), 2);
		json_t *m = world_message(&W, crash_ids[i]);
		assert_int_equal(events(m, "fallback"), 1);
		json_decref(m);
		m = world_message(&W, sms);
		long want = strcmp(str(m, "status"), "unknown") == 0 ? -1 : 1;
		json_decref(m);
		long got = sms_accepted(e164);
		if (want == 1)
			assert_int_equal(got, 1);
		else
			assert_true(got <= 1);
	}
}

static bool batch_completed(struct world *w, void *arg)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s", (const char *)arg);
	struct resp r = api_get(w, path);
	bool done = r.status == 200 && !strcmp(str(r.json, "status"), "completed");
	resp_free(&r);
	return done;
}

/*
 * A campaign carries a route like a single message: a bad one refuses the
 * upload naming the field (nothing created); a good one gives every row's
 * message the route, so exactly the recipients whose WhatsApp failed get
 * one SMS, and the batch completes once the follow-ups settle.
 */
static void test_campaign_route(void **state)
{
	(void)state;
	const char *bad = "{\"name\":\"route-bad\",\"channel\":\"whatsapp\",\"text\":\"Hi {{1}}\","
	                  "\"route\":[\"whatsapp\",\"telegram\"],"
	                  "\"rows\":[{\"to\":\"447400900009\",\"1\":\"a\"}]}";
	struct resp r = api_post(&W, "/v1/batches", bad);
	if (r.status != 422)
		fprintf(stderr, "POST /v1/batches: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 422);
	assert_string_equal(str(json_object_get(r.json, "error"), "field"), "route[1]");
	resp_free(&r);
	r = api_get(&W, "/v1/batches?name=route-bad");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);

	char body[1024];
	size_t n = (size_t)snprintf(body, sizeof body,
	                            "{\"name\":\"route-ok\",\"channel\":\"whatsapp\","
	                            "\"text\":\"Hi {{1}}\",\"route\":[\"whatsapp\",\"sms\"],"
	                            "\"fallback_text\":\"SMS for you\",\"start\":true,\"rows\":[");
	for (int i = 0; i < 4; i++)
		n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"to\":\"44740090%04d\",\"1\":\"r%d\"}",
		                      i ? "," : "", i, i);
	snprintf(body + n, sizeof body - n, "]}");
	r = api_post(&W, "/v1/batches", body);
	if (r.status != 201)
		fprintf(stderr, "POST /v1/batches: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 201);
	char id[64];
	snprintf(id, sizeof id, "%s", str(r.json, "id"));
	resp_free(&r);
	assert_true(wait_until(batch_completed, &W, id, 45));
	for (int i = 0; i < 4; i++) {
		char e164[40];
		snprintf(e164, sizeof e164, "+44740090%04d", i);
		assert_int_equal(sms_accepted(e164), i < 2 ? 1 : 0);
	}
	/* Every row's message carries the route (two steps). */
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=100", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	json_t *data = json_object_get(r.json, "data");
	size_t i, whatsapp = 0;
	json_t *m;
	json_array_foreach(data, i, m)
	{
		if (strcmp(str(m, "channel"), "whatsapp") != 0)
			continue;
		whatsapp++;
		json_t *full = world_message(&W, str(m, "id"));
		assert_int_equal(json_array_size(json_object_get(json_object_get(full, "route"), "steps")),
		                 2);
		json_decref(full);
	}
	assert_int_equal(whatsapp, 4);
	resp_free(&r);
}

/* A template that declares a route gives it to its messages (a message's
 * own route would win): its failing recipient gets one SMS with the
 * template's fallback text, the delivered one none. */
static void test_template_route(void **state)
{
	(void)state;
	char ids2[2][32];
	for (int i = 4; i < 6; i++) {
		char body[512];
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"44740090%04d\",\"template\":{\"name\":"
		         "\"parcel_ready\",\"language\":\"en_GB\",\"parameters\":[\"P%d\"]}}",
		         i, i);
		struct resp r = api_post(&W, "/v1/messages", body);
		if (r.status != 202)
			fprintf(stderr, "POST: %ld %s\n", r.status, r.body);
		assert_int_equal(r.status, 202);
		snprintf(ids2[i - 4], 32, "%s", str(r.json, "id"));
		resp_free(&r);
	}
	char sms_id[32] = "";
	for (int k = 0; k < 450 && route_made(ids2[0], sms_id) != 2; k++)
		usleep(100 * 1000);
	assert_int_equal(route_made(ids2[0], sms_id), 2);
	json_t *f = world_message(&W, sms_id);
	assert_string_equal(str(json_object_get(f, "content"), "text"), "SMS: your parcel is ready");
	json_decref(f);
	json_t *ok = world_message(&W, ids2[1]);
	assert_int_equal(json_array_size(json_object_get(json_object_get(ok, "route"), "steps")), 2);
	json_decref(ok);
	char e164[40];
	snprintf(e164, sizeof e164, "+44740090%04d", 4);
	for (int k = 0; k < 450 && sms_accepted(e164) < 1; k++)
		usleep(100 * 1000);
	assert_int_equal(sms_accepted(e164), 1);
	snprintf(e164, sizeof e164, "+44740090%04d", 5);
	assert_int_equal(sms_accepted(e164), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route_validation),
	    cmocka_unit_test(test_fallback_race),
	    cmocka_unit_test(test_fallback_crash),
	    cmocka_unit_test(test_campaign_route), /* these last: their fallbacks count */
	    cmocka_unit_test(test_template_route),
	};
	return cmocka_run_group_tests_name(harness_postgres() ? "fallback (postgres)" : "fallback",
	                                   tests, setup, teardown);
}
