/*
 * test_chaos.c - duplicated and reordered webhooks (and provider 5xx) leave
 * the right final states: every message ends `read`, DELIVERED and READ are
 * each applied exactly once per message, and every duplicate or late event is
 * in the audit trail marked as ignored.
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

#define N 300

static struct world W;

static bool all_read(struct world *w, void *arg)
{
	return count_status(w, "read") >= *(long *)arg;
}

static int count(json_t *m, const char *status, int applied)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		const char *st = json_string_value(json_object_get(e, "status"));
		if (strcmp(json_string_value(json_object_get(e, "type")), "webhook_status") == 0 &&
		    st && strcmp(st, status) == 0 &&
		    json_is_true(json_object_get(e, "applied")) == applied)
			n++;
	}
	return n;
}

static void test_dup_and_reorder(void **state)
{
	(void)state;
	world_init(&W,
	           "    dup_rate: 0.5\n    reorder_rate: 0.5\n    rate_5xx: 0.1\n"
	           "    webhook_batch: 5\n",
	           "dispatch:\n  backoff_base_ms: 50\n  backoff_max_ms: 500\n");
	world_start_sim(&W);
	world_start_serve(&W);

	static char ids[N][32];
	json_t *msgs = json_array();
	for (int i = 0; i < N; i++) {
		char to[32];
		snprintf(to, sizeof to, "4479%08d", i);
		json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "channel", "whatsapp", "to",
		                                      to, "text", "chaos"));
	}
	json_t *req = json_pack("{s:o}", "messages", msgs);
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(&W, "/v1/messages:batch", js);
	free(js);
	json_decref(req);
	assert_int_equal(r.status, 202);
	for (int i = 0; i < N; i++)
		snprintf(ids[i], 32, "%s",
		         json_string_value(json_object_get(
		             json_array_get(json_object_get(r.json, "messages"), i), "id")));
	resp_free(&r);

	long want = N;
	assert_true(wait_until(all_read, &W, &want, 120));

	int ignored = 0, implied = 0;
	for (int i = 0; i < N; i++) {
		char path[128];
		snprintf(path, sizeof path, "/v1/messages/%s", ids[i]);
		r = api_get(&W, path);
		assert_int_equal(r.status, 200);
		assert_string_equal(json_string_value(json_object_get(r.json, "status")), "read");
		assert_int_equal(count(r.json, "read", 1), 1);
		assert_int_equal(count(r.json, "delivered", 1), 1);
		assert_true(count(r.json, "sent", 1) <= 1);
		ignored += count(r.json, "read", 0) + count(r.json, "delivered", 0) +
		           count(r.json, "sent", 0);
		size_t k;
		json_t *e;
		json_array_foreach(json_object_get(r.json, "events"), k, e)
		{
			json_t *d = json_object_get(e, "detail");
			char *s = d ? json_dumps(d, 0) : NULL;
			if (s && strstr(s, "implied"))
				implied++;
			free(s);
		}
		resp_free(&r);
	}
	/* With these rates, both duplicates and read-before-delivered happened. */
	assert_true(ignored > N / 4);
	assert_true(implied > 0);

	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(json_integer_value(json_object_get(r.json, "duplicates")), 0);
	resp_free(&r);
	world_free(&W);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_dup_and_reorder)};
	return cmocka_run_group_tests_name("chaos", tests, NULL, NULL);
}
