/*
 * test_limiter.c - the thread-safe token-bucket table (core/limiter.c):
 * exact token arithmetic with an injected clock, rate changes, giving a
 * token back, the bound on entries and what it evicts, and many threads
 * taking from one bucket and from their own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/limiter.h"
#include "herald.h"

#define SEC 1000000LL

static struct limiter_rate per_s(double r, int64_t burst)
{
	return (struct limiter_rate){.milli_per_s = (int64_t)(r * 1000 + 0.5), .burst = burst};
}

/* 2/s, burst 3: three at once, then one every 500 ms exactly. */
static void test_exact_arithmetic(void **state)
{
	(void)state;
	struct limiter *l;
	assert_int_equal(limiter_new(1024, &l), 0);
	struct limiter_rate r = per_s(2, 3);
	int64_t t0 = 1000 * SEC;
	assert_int_equal(limiter_take(l, "a", &r, t0), 0);
	assert_int_equal(limiter_take(l, "a", &r, t0), 0);
	assert_int_equal(limiter_take(l, "a", &r, t0), 0);
	assert_int_equal(limiter_take(l, "a", &r, t0), 500000);
	assert_int_equal(limiter_take(l, "a", &r, t0 + 1), 499999);
	assert_int_equal(limiter_take(l, "a", &r, t0 + 499999), 1);
	assert_int_equal(limiter_take(l, "a", &r, t0 + 500000), 0);
	assert_int_equal(limiter_take(l, "a", &r, t0 + 500000), 500000);
	/* Ten seconds idle refill only up to the burst. */
	int64_t t1 = t0 + 10 * SEC;
	for (int i = 0; i < 3; i++)
		assert_int_equal(limiter_take(l, "a", &r, t1), 0);
	assert_int_equal(limiter_take(l, "a", &r, t1), 500000);
	/* Another name has its own bucket. */
	assert_int_equal(limiter_take(l, "b", &r, t1), 0);
	/* Retry-After in whole seconds, rounded up. */
	assert_int_equal(limiter_retry_after_s(500000), 1);
	assert_int_equal(limiter_retry_after_s(1000000), 1);
	assert_int_equal(limiter_retry_after_s(1000001), 2);
	assert_int_equal(limiter_retry_after_s(0), 1);
	assert_int_equal(limiter_size(l), 2);
	limiter_free(l);
}

/* Fractional rates: 0.5/s is one token every two seconds; 1000/s one per ms. */
static void test_fractional_and_fast(void **state)
{
	(void)state;
	struct limiter *l;
	assert_int_equal(limiter_new(64, &l), 0);
	struct limiter_rate slow = per_s(0.5, 1), fast = per_s(1000, 1);
	assert_int_equal(limiter_take(l, "slow", &slow, 0), 0);
	assert_int_equal(limiter_take(l, "slow", &slow, 0), 2 * SEC);
	assert_int_equal(limiter_take(l, "slow", &slow, 1500000), 500000);
	assert_int_equal(limiter_take(l, "slow", &slow, 2 * SEC), 0);
	assert_int_equal(limiter_take(l, "fast", &fast, 0), 0);
	assert_int_equal(limiter_take(l, "fast", &fast, 0), 1000);
	assert_int_equal(limiter_take(l, "fast", &fast, 1000), 0);
	/* No limit: granted, no bucket kept. */
	struct limiter_rate none = {0, 0};
	for (int i = 0; i < 100; i++)
		assert_int_equal(limiter_take(l, "free", &none, 0), 0);
	assert_int_equal(limiter_size(l), 2);
	/* A time that goes back refills nothing and breaks nothing. */
	assert_int_equal(limiter_take(l, "fast", &fast, 500), 1000);
	limiter_free(l);
}

/* A changed rate applies from now: what the old rate earned stays, capped
 * at the new burst; giving back returns one token up to the burst. */
static void test_rate_change_and_give(void **state)
{
	(void)state;
	struct limiter *l;
	assert_int_equal(limiter_new(64, &l), 0);
	struct limiter_rate r1 = per_s(1, 10), r2 = per_s(4, 2);
	for (int i = 0; i < 10; i++)
		assert_int_equal(limiter_take(l, "t", &r1, 0), 0);
	assert_int_equal(limiter_take(l, "t", &r1, 0), SEC);
	/* 0.5 s at 1/s earned half a token; the new rate fills the other half
	 * in 125 ms. */
	assert_int_equal(limiter_take(l, "t", &r2, SEC / 2), 125000);
	assert_int_equal(limiter_take(l, "t", &r2, SEC / 2 + 125000), 0);
	/* A lowered burst drops what is above it. */
	assert_int_equal(limiter_take(l, "u", &r1, 0), 0); /* 9 left */
	assert_int_equal(limiter_take(l, "u", &r2, 0), 0); /* capped at 2, then 1 */
	assert_int_equal(limiter_take(l, "u", &r2, 0), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 0), 250000);
	limiter_give(l, "u", 0);
	assert_int_equal(limiter_take(l, "u", &r2, 0), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 0), 250000);
	/* Giving to a full bucket keeps it at its burst. */
	limiter_give(l, "u", 10 * SEC);
	limiter_give(l, "u", 10 * SEC);
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 250000);
	/* Forgotten: the next take starts full. */
	limiter_forget(l, "u");
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 0);
	assert_int_equal(limiter_take(l, "u", &r2, 10 * SEC), 250000);
	limiter_give(l, "nobody", 0); /* no bucket: nothing */
	assert_int_equal(limiter_size(l), 2);
	limiter_free(l);
}

/*
 * The bound: 64 stripes of 10 entries. A drained bucket that is used
 * survives a flood of new names as long as refilled buckets can make the
 * room (each flood name refills within the 10 us before the next one), and
 * the table never holds more than its bound.
 */
static void test_bound_and_eviction(void **state)
{
	(void)state;
	struct limiter *l;
	assert_int_equal(limiter_new(640, &l), 0);
	struct limiter_rate hot = per_s(0.001, 1), cold = per_s(1000000, 1);
	assert_int_equal(limiter_take(l, "hot", &hot, 0), 0);
	assert_true(limiter_take(l, "hot", &hot, 0) > 0);
	char name[32];
	for (int i = 0; i < 2640; i++) {
		int64_t t = SEC + i * 10;
		snprintf(name, sizeof name, "cold-%d", i);
		assert_int_equal(limiter_take(l, name, &cold, t), 0);
		/* Evicted, "hot" would start full and be granted. */
		assert_true(limiter_take(l, "hot", &hot, t) > 0);
		assert_true(limiter_size(l) <= 640);
	}
	assert_int_equal(limiter_size(l) + limiter_evictions(l), 2641);
	assert_true(limiter_evictions(l) >= 2001);
	limiter_free(l);
	assert_int_equal(limiter_new(0, &l), HR_EINVAL);
}

/* ---- threads ---- */

struct th_arg {
	struct limiter *l;
	const char *name;
	int tries;
	int granted;
};

static void *th_take(void *p)
{
	struct th_arg *a = p;
	struct limiter_rate r = {.milli_per_s = 1, .burst = 1000};
	for (int i = 0; i < a->tries; i++)
		if (limiter_take(a->l, a->name, &r, 5 * SEC) == 0)
			a->granted++;
	return NULL;
}

/* Eight threads take 1000 times each from one bucket of 1000 at one
 * instant: exactly 1000 are granted. Each also has a bucket of its own,
 * where all 1000 of its tries are. */
static void test_threads(void **state)
{
	(void)state;
	struct limiter *l;
	assert_int_equal(limiter_new(4096, &l), 0);
	enum { NTH = 8 };
	pthread_t th[2 * NTH];
	struct th_arg shared[NTH], own[NTH];
	char names[NTH][16];
	for (int i = 0; i < NTH; i++) {
		shared[i] = (struct th_arg){.l = l, .name = "shared", .tries = 1000};
		snprintf(names[i], sizeof names[i], "own-%d", i);
		own[i] = (struct th_arg){.l = l, .name = names[i], .tries = 1000};
		assert_int_equal(pthread_create(&th[2 * i], NULL, th_take, &shared[i]), 0);
		assert_int_equal(pthread_create(&th[2 * i + 1], NULL, th_take, &own[i]), 0);
	}
	int total = 0;
	for (int i = 0; i < NTH; i++) {
		pthread_join(th[2 * i], NULL);
		pthread_join(th[2 * i + 1], NULL);
		total += shared[i].granted;
		assert_int_equal(own[i].granted, 1000);
	}
	assert_int_equal(total, 1000);
	assert_int_equal(limiter_size(l), NTH + 1);
	limiter_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exact_arithmetic),
	    cmocka_unit_test(test_fractional_and_fast),
	    cmocka_unit_test(test_rate_change_and_give),
	    cmocka_unit_test(test_bound_and_eviction),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests_name("limiter", tests, NULL, NULL);
}
