/*
 * limiter.h - request rate limits shared by many threads: a bounded table
 * of token buckets keyed by a name (a tenant id, a credential's actor),
 * split into stripes that each have their own mutex, so the API's pool
 * threads contend only when two requests hash to the same stripe.
 *
 * Arithmetic is integral, so tests with an injected clock are exact: a
 * token is LIMITER_UNIT units and a rate of r tokens per second adds
 * r * 1000 units per microsecond (rates are given in thousandths of a token
 * per second). Time is the caller's (monotonic microseconds).
 *
 * The bound: at most max_entries buckets (rounded up to a multiple of the
 * stripe count). A new name in a full stripe takes the place of the
 * stripe's least recently used bucket that has refilled to its burst
 * (nothing is lost: a new bucket starts full); if none has, of its least
 * recently used bucket, which then starts afresh with a full burst (a
 * name that comes back after that gets its burst again: the only way past
 * a limit, and it needs as many active names as the table holds). Names
 * are only ever authenticated tenants and credentials, so the entries an
 * attacker can create are bounded by the credentials it holds.
 */
#ifndef HR_LIMITER_H
#define HR_LIMITER_H

#include <stddef.h>
#include <stdint.h>

#define LIMITER_UNIT 1000000000LL /* units per token */
#define LIMITER_KEY_MAX 128       /* names are cut to this (with NUL) */
#define LIMITER_STRIPES 64
#define LIMITER_RATE_MAX 1000000000LL /* milli-tokens per second: 1,000,000 / s */
#define LIMITER_BURST_MAX 1000000LL

struct limiter;

struct limiter_rate {
	int64_t milli_per_s; /* tokens per second x 1000; <= 0: no limit */
	int64_t burst;       /* bucket capacity in tokens, 1..LIMITER_BURST_MAX */
};

/* HR_EINVAL for max_entries 0, HR_ENOMEM. */
int limiter_new(size_t max_entries, struct limiter **out);
void limiter_free(struct limiter *l);

/*
 * Takes one token from name's bucket at now_us: 0 if granted, otherwise
 * how many microseconds until one will be (> 0; nothing taken). A name
 * seen for the first time starts with a full bucket. A rate or burst that
 * differs from the bucket's last one applies from now (tokens above a
 * lowered burst are dropped). A rate <= 0 grants at once and keeps no
 * bucket.
 */
int64_t limiter_take(struct limiter *l, const char *name, const struct limiter_rate *rate,
                     int64_t now_us);
/* Returns one token taken at now_us (another limit refused the request it
 * was taken for); nothing if the bucket is gone or full. */
void limiter_give(struct limiter *l, const char *name, int64_t now_us);
/* Forgets name's bucket (the next take starts full). */
void limiter_forget(struct limiter *l, const char *name);
/* Buckets held now, and buckets dropped for room so far (for tests and
 * /metrics). */
size_t limiter_size(struct limiter *l);
uint64_t limiter_evictions(struct limiter *l);
/* Whole seconds a client should wait for wait_us, rounded up (at least 1). */
int64_t limiter_retry_after_s(int64_t wait_us);

#endif
