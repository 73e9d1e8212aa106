/*
 * test_pg_outage.c - `herald serve` on PostgreSQL while the database server
 * goes away and comes back: meanwhile the API answers 503 to sends, batches
 * and reads (and stays up), nothing of a refused request is stored, and
 * afterwards the same process sends again without a restart; every message
 * accepted before, during (none) and after ends `read`, each exactly once.
 * Always runs on PostgreSQL (it sets HERALD_IT_STORE itself).
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

static struct world W;

static bool reads_at_least(struct world *w, void *arg)
{
	return count_status(w, "read") >= *(long *)arg;
}

static void send_ok(int i, char id[32])
{
	char body[160];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 %06d\",\"text\":\"m%d\"}", i, i);
	struct resp r = api_post(&W, "/v1/messages", body);
	assert_int_equal(r.status, 202);
	if (id)
		snprintf(id, 32, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
}

static void test_database_restart(void **state)
{
	(void)state;
	world_init(&W, NULL, NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	char first[32];
	for (int i = 0; i < 10; i++)
		send_ok(i, i == 0 ? first : NULL);
	long want = 10;
	assert_true(wait_until(reads_at_least, &W, &want, 60));

	harness_pg_down();
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"whatsapp\",\"to\":\"+447911999999\",\"text\":\"x\"}");
	assert_int_equal(r.status, 503);
	resp_free(&r);
	r = api_post(
	    &W, "/v1/messages:batch",
	    "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"+447911999998\",\"text\":\"a\"},"
	    "{\"channel\":\"whatsapp\",\"to\":\"+447911999997\",\"text\":\"b\"}]}");
	assert_int_equal(r.status, 503);
	resp_free(&r);
	char path[80];
	snprintf(path, sizeof path, "/v1/messages/%s", first);
	r = api_get(&W, path);
	assert_int_equal(r.status, 503);
	resp_free(&r);
	r = http("GET", W.api, NULL, NULL, NULL); /* the process is still there */
	assert_true(r.status != 0);
	resp_free(&r);

	harness_pg_up();
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")), "read");
	resp_free(&r);
	for (int i = 10; i < 20; i++)
		send_ok(i, NULL);
	want = 20;
	assert_true(wait_until(reads_at_least, &W, &want, 60));
	/* Exactly the 20 accepted: nothing of the refused requests. */
	assert_int_equal(count_status(&W, "read"), 20);
	assert_int_equal(count_status(&W, "queued"), 0);
	assert_int_equal(count_status(&W, "failed"), 0);
	world_stop_serve(&W);
	world_free(&W);
}

int main(void)
{
	if (setenv("HERALD_IT_STORE", "postgres", 1) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_database_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
