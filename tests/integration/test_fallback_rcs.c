/*
 * test_fallback_rcs.c - the RCS step of a fallback route against real
 * `herald serve` and `herald sim` (README "Fallback routing"): a message on
 * the route ["rcs","sms"] to a phone that is not RCS-capable (RBM answers
 * 404 NOT_FOUND) fails with not_rcs_capable and makes exactly one SMS with
 * that reason; one to a capable phone is delivered over RCS and makes none.
 * And an `unknown` step falls back too: an at_most_once WhatsApp message
 * whose connection the provider closes after taking the request (the
 * simulator's drop_rate) becomes unknown, is never resent, and makes
 * exactly one SMS (its late receipts may still settle it).
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

#include "faults_common.h"

#define NOT_RCS "+447400950000"
#define CAPABLE "+447400950001"

static struct world W;
static char sa_dir[64];

static int setup(void **state)
{
	(void)state;
	fc_tmpdir(sa_dir, sizeof sa_dir);
	char accounts[2048];
	fc_accounts_yaml(sa_dir, accounts, sizeof accounts);
	world_init2(&W, accounts, NULL,
	            "  sms:\n    seed: 31\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	            "  rcs:\n    seed: 32\n    delivered_delay_ms: 20\n    read_delay_ms: 40\n"
	            "    recipients:\n      \"" NOT_RCS "\": {not_rcs: true}\n",
	            NULL, "reconcile:\n  interval_ms: 100\n");
	fc_write_service_account(&W, sa_dir);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	fc_rmdir(sa_dir);
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
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

static void send_routed(const char *to, char id[32])
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"rcs\",\"to\":\"%s\",\"text\":\"Your parcel is ready\","
	         "\"route\":[\"rcs\",\"sms\"]}",
	         to);
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != 202)
		fprintf(stderr, "POST: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, 202);
	snprintf(id, 32, "%s", str(r.json, "id"));
	resp_free(&r);
}

struct settled_arg {
	const char *id;
	const char *status;
};

static bool message_is(struct world *w, void *arg)
{
	(void)w;
	struct settled_arg *a = arg;
	json_t *m = world_message(&W, a->id);
	bool ok = !strcmp(str(m, "status"), a->status);
	json_decref(m);
	return ok;
}

static bool sms_delivered(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	json_t *s1 = json_array_get(json_object_get(json_object_get(m, "route"), "steps"), 1);
	const char *st = str(s1, "status");
	bool ok = st && !strcmp(st, "delivered");
	json_decref(m);
	return ok;
}

static void test_not_rcs_capable_falls_back(void **state)
{
	(void)state;
	char not_rcs[32], capable[32];
	send_routed(NOT_RCS, not_rcs);
	send_routed(CAPABLE, capable);
	if (!wait_until(sms_delivered, &W, not_rcs, 30)) {
		json_t *m = world_message(&W, not_rcs);
		char *d = json_dumps(m, JSON_COMPACT);
		fail_msg("no SMS step delivered: %.1500s", d ? d : "");
	}
	struct settled_arg read = {capable, "read"};
	assert_true(wait_until(message_is, &W, &read, 30));

	json_t *m = world_message(&W, not_rcs);
	assert_string_equal(str(m, "status"), "failed");
	assert_string_equal(str(json_object_get(m, "error"), "code"), "not_rcs_capable");
	json_t *route = json_object_get(m, "route");
	assert_string_equal(str(json_object_get(route, "reached_by"), "channel"), "sms");
	json_decref(m);
	assert_int_equal(sms_accepted(NOT_RCS), 1);
	assert_int_equal(metric("herald_fallbacks_total{reason=\"not_rcs_capable\"}"), 1);

	/* The capable phone was reached over RCS: its SMS step never made. */
	m = world_message(&W, capable);
	json_t *s1 = json_array_get(json_object_get(json_object_get(m, "route"), "steps"), 1);
	assert_true(json_is_null(json_object_get(s1, "message_id")));
	json_decref(m);
	assert_int_equal(sms_accepted(CAPABLE), 0);
}

static void test_unknown_falls_back(void **state)
{
	(void)state;
	const char *to = "447400950002";
	fc_sim_config(&W, "", "{\"drop_rate\":1}");
	char body[256], id[32];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"to\":\"%s\",\"text\":\"Your code is 4321\","
	         "\"delivery_policy\":\"at_most_once\",\"route\":[\"whatsapp\",\"sms\"]}",
	         to);
	struct resp r = api_post(&W, "/v1/messages", body);
	assert_int_equal(r.status, 202);
	snprintf(id, sizeof id, "%s", str(r.json, "id"));
	resp_free(&r);
	bool fell = wait_until(sms_delivered, &W, id, 30);
	fc_sim_config(&W, "", "{\"drop_rate\":0}");
	if (!fell) {
		json_t *m = world_message(&W, id);
		char *d = json_dumps(m, JSON_COMPACT);
		fail_msg("no SMS step delivered: %.1500s", d ? d : "");
	}
	/* It went through unknown (and fell back then); the provider had it,
	 * so its receipts may settle it later (unknown -> delivered/read),
	 * which makes nothing more. */
	json_t *m = world_message(&W, id);
	int unknown = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		const char *st = str(e, "status");
		unknown += st && !strcmp(st, "unknown") && json_is_true(json_object_get(e, "applied"));
	}
	assert_int_equal(unknown, 1);
	json_decref(m);
	char e164[32];
	snprintf(e164, sizeof e164, "+%s", to);
	assert_int_equal(sms_accepted(e164), 1);
	/* The WhatsApp request reached the provider once and was never resent. */
	json_t *c = fc_sim_counts(&W);
	assert_int_equal(fc_count(c, FC_WA, to, NULL), 1);
	json_decref(c);
	assert_int_equal(metric("herald_fallbacks_total{reason=\"unknown\"}"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_rcs_capable_falls_back),
	    cmocka_unit_test(test_unknown_falls_back),
	};
	return cmocka_run_group_tests_name(harness_postgres() ? "fallback rcs (postgres)"
	                                                      : "fallback rcs",
	                                   tests, setup, teardown);
}
