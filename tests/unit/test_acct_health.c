/*
 * test_acct_health.c - per-account send health in memory (obs/acct_health.c):
 * the last-minute send rate and the 15-minute outcomes by their windows,
 * last times and error, provider holds and blocks with their reasons, the
 * bounded table of accounts, and a writer racing a reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "obs/acct_health.h"

#define SEC 1000000LL
#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z, a minute boundary */

static int reset(void **state)
{
	(void)state;
	health_reset();
	return 0;
}

static void test_windows(void **state)
{
	(void)state;
	struct acct_health h;
	health_get("acme-wa", T0, &h);
	assert_false(h.known);
	for (int i = 0; i < 3; i++)
		health_send("acme-wa", HEALTH_OK, NULL, T0 + 10 * SEC + i);
	health_send("acme-wa", HEALTH_FAILED, "131026", T0 + 10 * SEC + 5);
	health_send("acme-wa", HEALTH_RETRIED, "130429", T0 + 10 * SEC + 6);
	health_send("acme-sms", HEALTH_OK, NULL, T0 + 10 * SEC);

	/* The second still filling is not in the rate's window. */
	health_get("acme-wa", T0 + 10 * SEC + 500000, &h);
	assert_true(h.known);
	assert_int_equal(h.sent_window, 0);
	assert_int_equal(h.ok, 3);

	health_get("acme-wa", T0 + 11 * SEC, &h);
	assert_int_equal(h.sent_window, 5);
	assert_true(h.observed_rate > 5.0 / 60 - 1e-9 && h.observed_rate < 5.0 / 60 + 1e-9);
	assert_int_equal(h.ok, 3);
	assert_int_equal(h.failed, 1);
	assert_int_equal(h.retried, 1);
	assert_string_equal(h.last_error, "130429");
	assert_int_equal(h.last_success_us, T0 + 10 * SEC + 2);
	assert_int_equal(h.last_failure_us, T0 + 10 * SEC + 6);
	assert_int_equal(h.last_webhook_us, 0);

	/* The other account has its own. */
	health_get("acme-sms", T0 + 11 * SEC, &h);
	assert_int_equal(h.sent_window, 1);
	assert_int_equal(h.failed, 0);

	/* 60 s later the send is out of the minute, still in the 15 minutes. */
	health_get("acme-wa", T0 + 71 * SEC, &h);
	assert_int_equal(h.sent_window, 0);
	assert_int_equal(h.ok, 3);
	/* A send 70 s on lands in the same ring slot: the old second is
	 * replaced, not added to. */
	health_send("acme-wa", HEALTH_OK, NULL, T0 + 70 * SEC);
	health_get("acme-wa", T0 + 71 * SEC, &h);
	assert_int_equal(h.sent_window, 1);
	assert_int_equal(h.ok, 4);
	/* 15 minutes on: the first minute's outcomes are gone, and so is the
	 * second minute's 16 minutes on. */
	health_get("acme-wa", T0 + 15 * 60 * SEC, &h);
	assert_int_equal(h.ok, 1);
	health_get("acme-wa", T0 + 16 * 60 * SEC, &h);
	assert_int_equal(h.ok, 0);
	assert_int_equal(h.failed, 0);
	assert_int_equal(h.last_success_us, T0 + 70 * SEC); /* times stay */
	/* A minute bucket reused 15 minutes on starts from zero. */
	health_send("acme-wa", HEALTH_FAILED, "x", T0 + 15 * 60 * SEC + 5);
	health_get("acme-wa", T0 + 15 * 60 * SEC + 6, &h);
	assert_int_equal(h.failed, 1);
	assert_int_equal(h.ok, 1); /* minute 1's, still inside */
}

static void test_hold_block_webhook(void **state)
{
	(void)state;
	struct acct_health h;
	health_hold("acme-wa", T0 + 5 * SEC, "rate limited by the provider (130429)");
	health_webhook("acme-wa", T0 + 2 * SEC);
	health_get("acme-wa", T0 + SEC, &h);
	assert_int_equal(h.held_until_us, T0 + 5 * SEC);
	assert_string_equal(h.held_why, "rate limited by the provider (130429)");
	assert_int_equal(h.last_webhook_us, T0 + 2 * SEC);
	assert_false(h.blocked);
	health_get("acme-wa", T0 + 6 * SEC, &h);
	assert_int_equal(h.held_until_us, 0);
	assert_string_equal(h.held_why, "");

	health_blocked("acme-wa", true, "the provider refused its credentials (190)");
	health_get("acme-wa", T0, &h);
	assert_true(h.blocked);
	assert_string_equal(h.blocked_why, "the provider refused its credentials (190)");
	health_blocked("acme-wa", false, NULL);
	health_get("acme-wa", T0, &h);
	assert_false(h.blocked);
	assert_string_equal(h.blocked_why, "");

	/* Ids that cannot be kept are ignored, never cut to another's. */
	char longid[HR_NAME_MAX + 8];
	memset(longid, 'a', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	health_send(longid, HEALTH_OK, NULL, T0);
	health_get(longid, T0 + SEC, &h);
	assert_false(h.known);
	health_send("", HEALTH_OK, NULL, T0);
	health_send(NULL, HEALTH_OK, NULL, T0);
}

/* The table holds HEALTH_ACCOUNTS accounts; one more is not kept (and
 * nothing else is disturbed). */
static void test_bounded(void **state)
{
	(void)state;
	char id[32];
	for (int i = 0; i < HEALTH_ACCOUNTS; i++) {
		snprintf(id, sizeof id, "acct-%d", i);
		health_send(id, HEALTH_OK, NULL, T0 + i % 7);
	}
	struct acct_health h;
	for (int i = 0; i < HEALTH_ACCOUNTS; i++) {
		snprintf(id, sizeof id, "acct-%d", i);
		health_get(id, T0 + 10 * SEC, &h);
		if (!h.known || h.sent_window != 1)
			fail_msg("%s: known %d, sent %lld", id, h.known, (long long)h.sent_window);
	}
	health_send("one-too-many", HEALTH_OK, NULL, T0);
	health_get("one-too-many", T0 + SEC, &h);
	assert_false(h.known);
}

/* One writer (as the dispatcher) and readers at once: every read is
 * within bounds and the final count is exact. */
#define RACE_N 200000
static void *race_writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < RACE_N; i++)
		health_send("race", i % 10 ? HEALTH_OK : HEALTH_FAILED, "e", T0 + 30 * SEC);
	return NULL;
}

static void test_writer_and_readers(void **state)
{
	(void)state;
	health_send("race", HEALTH_OK, NULL, T0); /* made before the race */
	pthread_t w;
	assert_int_equal(pthread_create(&w, NULL, race_writer, NULL), 0);
	for (int k = 0; k < 2000; k++) {
		struct acct_health h;
		health_get("race", T0 + 31 * SEC, &h);
		if (h.sent_window < 1 || h.sent_window > RACE_N + 1 || h.ok + h.failed > RACE_N + 1)
			fail_msg("read %lld sends, %lld outcomes", (long long)h.sent_window,
			         (long long)(h.ok + h.failed));
	}
	pthread_join(w, NULL);
	struct acct_health h;
	health_get("race", T0 + 31 * SEC, &h);
	assert_int_equal(h.sent_window, RACE_N + 1);
	assert_int_equal(h.ok, RACE_N - RACE_N / 10 + 1);
	assert_int_equal(h.failed, RACE_N / 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_windows, reset),
	    cmocka_unit_test_setup(test_hold_block_webhook, reset),
	    cmocka_unit_test_setup(test_bounded, reset),
	    cmocka_unit_test_setup(test_writer_and_readers, reset),
	};
	return cmocka_run_group_tests_name("acct_health", tests, NULL, NULL);
}
