/*
 * ratelimit.c - token bucket and backoff.
 */
#include <math.h>

#include "core/ratelimit.h"

void ratelimit_init(struct ratelimit *rl, double rate, double burst, int64_t now_us)
{
	rl->rate = rate > 0 ? rate : 1;
	rl->burst = burst >= 1 ? burst : 1;
	rl->tokens = rl->burst;
	rl->last_us = now_us;
	rl->paused_until_us = 0;
}

static void refill(struct ratelimit *rl, int64_t now_us)
{
	if (now_us > rl->last_us) {
		rl->tokens += (double)(now_us - rl->last_us) * rl->rate / 1e6;
		if (rl->tokens > rl->burst)
			rl->tokens = rl->burst;
		rl->last_us = now_us;
	}
}

int ratelimit_take(struct ratelimit *rl, int want, int64_t now_us)
{
	if (now_us < rl->paused_until_us || want <= 0)
		return 0;
	refill(rl, now_us);
	int got = (int)floor(rl->tokens);
	if (got > want)
		got = want;
	rl->tokens -= got;
	return got;
}

int64_t ratelimit_wait_us(const struct ratelimit *rl, int64_t now_us)
{
	if (now_us < rl->paused_until_us)
		return rl->paused_until_us - now_us;
	double tokens = rl->tokens;
	if (now_us > rl->last_us)
		tokens += (double)(now_us - rl->last_us) * rl->rate / 1e6;
	if (tokens >= 1)
		return 0;
	return (int64_t)ceil((1 - tokens) * 1e6 / rl->rate);
}

void ratelimit_pause(struct ratelimit *rl, int64_t delay_us, int64_t now_us)
{
	if (now_us + delay_us > rl->paused_until_us)
		rl->paused_until_us = now_us + delay_us;
	rl->tokens = 0;
	rl->last_us = rl->paused_until_us;
}

int64_t backoff_delay_us(int attempt, int64_t base_us, int64_t max_us, double unit)
{
	if (attempt < 1)
		attempt = 1;
	int64_t cap = base_us;
	for (int i = 1; i < attempt && cap < max_us; i++)
		cap *= 2;
	if (cap > max_us)
		cap = max_us;
	/* Half fixed, half jitter: never retries sooner than cap/2. */
	return cap / 2 + (int64_t)((double)(cap - cap / 2) * unit);
}
