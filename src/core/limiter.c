/*
 * limiter.c - the striped, bounded token-bucket table (limiter.h).
 *
 * Each stripe is a small chained hash table over a fixed array of entries
 * (allocated once: the table never grows), with its own mutex held only
 * for the arithmetic of one bucket, never across I/O. The stripe is picked
 * by the name's hash and the chain by the hash's other bits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/limiter.h"
#include "herald.h"

#define NIL UINT32_MAX

struct lim_entry {
	char name[LIMITER_KEY_MAX];
	uint64_t hash;
	int64_t tokens;  /* units */
	int64_t last_us; /* when tokens were last brought up to date */
	int64_t used_us; /* last take or give: for eviction */
	struct limiter_rate rate;
	uint32_t next; /* chain, or free list */
};

struct lim_stripe {
	pthread_mutex_t lock;
	struct lim_entry *e;
	uint32_t *head; /* nhead chains */
	uint32_t nhead, cap, used;
	uint32_t free; /* free list of entries given back (forget, eviction) */
	/* Entries [bump, cap) were never used: taken in order before the free
	 * list runs dry, and e grows (doubling, up to cap) only as they are, so
	 * a table sized for the bound costs memory for the buckets it has held
	 * (65,536 allocated up front were 8.5 MB resident at start). */
	uint32_t bump, alloc;
};

struct limiter {
	struct lim_stripe s[LIMITER_STRIPES];
	atomic_uint_least64_t evictions;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

int limiter_new(size_t max_entries, struct limiter **out)
{
	*out = NULL;
	if (max_entries == 0 || max_entries > (size_t)LIMITER_STRIPES * (UINT32_MAX / 4))
		return HR_EINVAL;
	struct limiter *l = calloc(1, sizeof *l);
	if (!l)
		return HR_ENOMEM;
	uint32_t cap = (uint32_t)((max_entries + LIMITER_STRIPES - 1) / LIMITER_STRIPES);
	uint32_t nhead = 1;
	while (nhead < cap)
		nhead *= 2;
	for (int i = 0; i < LIMITER_STRIPES; i++) {
		struct lim_stripe *s = &l->s[i];
		pthread_mutex_init(&s->lock, NULL);
		s->head = malloc(nhead * sizeof *s->head);
		if (!s->head) {
			limiter_free(l);
			return HR_ENOMEM;
		}
		s->cap = cap;
		s->nhead = nhead;
		for (uint32_t k = 0; k < nhead; k++)
			s->head[k] = NIL;
		s->free = NIL;
		s->bump = 0;
	}
	atomic_init(&l->evictions, 0);
	*out = l;
	return 0;
}

void limiter_free(struct limiter *l)
{
	if (!l)
		return;
	for (int i = 0; i < LIMITER_STRIPES; i++) {
		pthread_mutex_destroy(&l->s[i].lock);
		free(l->s[i].e);
		free(l->s[i].head);
	}
	free(l);
}

static struct lim_stripe *stripe_of(struct limiter *l, uint64_t h)
{
	return &l->s[h % LIMITER_STRIPES];
}

static uint32_t chain_of(const struct lim_stripe *s, uint64_t h)
{
	return (uint32_t)((h / LIMITER_STRIPES) & (s->nhead - 1));
}

/* The entry of name in s, or NIL; *prev gets its predecessor in the chain
 * (NIL for the head). Under s->lock. */
static uint32_t find(const struct lim_stripe *s, uint64_t h, const char *name, uint32_t *prev)
{
	uint32_t p = NIL;
	for (uint32_t k = s->head[chain_of(s, h)]; k != NIL; p = k, k = s->e[k].next)
		if (s->e[k].hash == h && strcmp(s->e[k].name, name) == 0) {
			if (prev)
				*prev = p;
			return k;
		}
	return NIL;
}

static void unlink_entry(struct lim_stripe *s, uint32_t k)
{
	uint32_t *pp = &s->head[chain_of(s, s->e[k].hash)];
	while (*pp != k)
		pp = &s->e[*pp].next;
	*pp = s->e[k].next;
	s->e[k].next = s->free;
	s->free = k;
	s->used--;
}

/* Brings e's tokens up to now at its rate, capped at its burst. */
static void refill(struct lim_entry *e, int64_t now_us)
{
	int64_t full = e->rate.burst * LIMITER_UNIT;
	if (now_us > e->last_us && e->tokens < full) {
		int64_t room = full - e->tokens;
		int64_t elapsed = now_us - e->last_us;
		/* elapsed * rate overflows only far beyond the room left. */
		if (elapsed > room / e->rate.milli_per_s)
			e->tokens = full;
		else
			e->tokens += elapsed * e->rate.milli_per_s;
	}
	if (now_us > e->last_us)
		e->last_us = now_us;
	if (e->tokens > full)
		e->tokens = full;
}

/* Room for one more entry in a full stripe: the least recently used
 * bucket that has refilled to its burst, else the least recently used. */
static void evict_one(struct limiter *l, struct lim_stripe *s, int64_t now_us)
{
	uint32_t best = NIL, best_full = NIL;
	for (uint32_t k = 0; k < s->bump; k++) {
		struct lim_entry *e = &s->e[k];
		if (!e->name[0])
			continue;
		refill(e, now_us);
		if (best == NIL || e->used_us < s->e[best].used_us)
			best = k;
		if (e->tokens >= e->rate.burst * LIMITER_UNIT &&
		    (best_full == NIL || e->used_us < s->e[best_full].used_us))
			best_full = k;
	}
	uint32_t k = best_full != NIL ? best_full : best;
	if (k == NIL)
		return;
	unlink_entry(s, k);
	s->e[k].name[0] = '\0';
	atomic_fetch_add(&l->evictions, 1);
}

static bool rate_ok(const struct limiter_rate *r)
{
	return r->milli_per_s > 0;
}

int64_t limiter_take(struct limiter *l, const char *name, const struct limiter_rate *rate,
                     int64_t now_us)
{
	if (!rate_ok(rate))
		return 0;
	struct limiter_rate rt = *rate;
	if (rt.milli_per_s > LIMITER_RATE_MAX)
		rt.milli_per_s = LIMITER_RATE_MAX;
	if (rt.burst < 1)
		rt.burst = 1;
	if (rt.burst > LIMITER_BURST_MAX)
		rt.burst = LIMITER_BURST_MAX;
	char key[LIMITER_KEY_MAX];
	hr_strlcpy(key, name, sizeof key);
	uint64_t h = name_hash(key);
	struct lim_stripe *s = stripe_of(l, h);
	pthread_mutex_lock(&s->lock);
	uint32_t k = find(s, h, key, NULL);
	if (k == NIL) {
		if (s->free == NIL && s->bump == s->cap) {
			evict_one(l, s, now_us);
			if (s->free == NIL) { /* a full stripe always has one to evict */
				pthread_mutex_unlock(&s->lock);
				return 0;
			}
		}
		if (s->free != NIL) {
			k = s->free;
			s->free = s->e[k].next;
		} else {
			if (s->bump == s->alloc) {
				uint32_t n = s->alloc ? s->alloc * 2 : 8;
				if (n > s->cap)
					n = s->cap;
				struct lim_entry *ne = realloc(s->e, n * sizeof *ne);
				if (!ne) { /* out of memory: let the request through */
					pthread_mutex_unlock(&s->lock);
					return 0;
				}
				s->e = ne;
				s->alloc = n;
			}
			k = s->bump++;
		}
		struct lim_entry *e = &s->e[k];
		memcpy(e->name, key, sizeof e->name);
		e->hash = h;
		e->rate = rt;
		e->tokens = rt.burst * LIMITER_UNIT;
		e->last_us = now_us;
		uint32_t c = chain_of(s, h);
		e->next = s->head[c];
		s->head[c] = k;
		s->used++;
	}
	struct lim_entry *e = &s->e[k];
	/* Tokens earned so far at the old rate; the new one from now. */
	refill(e, now_us);
	e->rate = rt;
	refill(e, now_us);
	e->used_us = now_us;
	int64_t wait = 0;
	if (e->tokens >= LIMITER_UNIT) {
		e->tokens -= LIMITER_UNIT;
	} else {
		int64_t need = LIMITER_UNIT - e->tokens;
		wait = (need + rt.milli_per_s - 1) / rt.milli_per_s;
		if (wait < 1)
			wait = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return wait;
}

void limiter_give(struct limiter *l, const char *name, int64_t now_us)
{
	char key[LIMITER_KEY_MAX];
	hr_strlcpy(key, name, sizeof key);
	uint64_t h = name_hash(key);
	struct lim_stripe *s = stripe_of(l, h);
	pthread_mutex_lock(&s->lock);
	uint32_t k = find(s, h, key, NULL);
	if (k != NIL) {
		struct lim_entry *e = &s->e[k];
		refill(e, now_us);
		e->tokens += LIMITER_UNIT;
		if (e->tokens > e->rate.burst * LIMITER_UNIT)
			e->tokens = e->rate.burst * LIMITER_UNIT;
	}
	pthread_mutex_unlock(&s->lock);
}

void limiter_forget(struct limiter *l, const char *name)
{
	char key[LIMITER_KEY_MAX];
	hr_strlcpy(key, name, sizeof key);
	uint64_t h = name_hash(key);
	struct lim_stripe *s = stripe_of(l, h);
	pthread_mutex_lock(&s->lock);
	uint32_t k = find(s, h, key, NULL);
	if (k != NIL) {
		unlink_entry(s, k);
		s->e[k].name[0] = '\0';
	}
	pthread_mutex_unlock(&s->lock);
}

size_t limiter_size(struct limiter *l)
{
	size_t n = 0;
	for (int i = 0; i < LIMITER_STRIPES; i++) {
		pthread_mutex_lock(&l->s[i].lock);
		n += l->s[i].used;
		pthread_mutex_unlock(&l->s[i].lock);
	}
	return n;
}

uint64_t limiter_evictions(struct limiter *l)
{
	return atomic_load(&l->evictions);
}

int64_t limiter_retry_after_s(int64_t wait_us)
{
	if (wait_us <= 0)
		return 1;
	int64_t s = (wait_us + 999999) / 1000000;
	return s < 1 ? 1 : s;
}
