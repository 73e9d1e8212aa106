/*
 * ratelimit.h - token bucket per sender account. Not thread-safe: each bucket
 * is owned by the dispatcher thread. Time is passed in so tests are exact.
 */
#ifndef HR_RATELIMIT_H
#define HR_RATELIMIT_H

#include <stdint.h>

struct ratelimit {
	double rate;  /* tokens per second (messages per second) */
	double burst; /* bucket capacity */
	double tokens;
	int64_t last_us;         /* monotonic us of the last refill */
	int64_t paused_until_us; /* set by a provider 429: no tokens before this */
};

void ratelimit_init(struct ratelimit *rl, double rate, double burst, int64_t now_us);
/* Takes up to `want` tokens; returns how many were granted (0..want). */
int ratelimit_take(struct ratelimit *rl, int want, int64_t now_us);
/* Microseconds until at least one token is available (0 if now). */
int64_t ratelimit_wait_us(const struct ratelimit *rl, int64_t now_us);
/* A provider said "slow down": no sends before now+delay, bucket emptied. */
void ratelimit_pause(struct ratelimit *rl, int64_t delay_us, int64_t now_us);

/*
 * Exponential backoff with full jitter (AWS architecture blog's "full
 * jitter"): delay = random in [base*2^(attempt-1)/2, base*2^(attempt-1)],
 * capped at max. attempt counts from 1. `unit` is a random number in [0,1)
 * (pass hr_random_unit(); tests pass fixed values).
 */
int64_t backoff_delay_us(int attempt, int64_t base_us, int64_t max_us, double unit);

#endif
