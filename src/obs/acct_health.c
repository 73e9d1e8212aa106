/*
 * acct_health.c - per-account send health in memory (acct_health.h).
 *
 * A fixed table of slots, found by the account id's hash with linear
 * probing. A slot is claimed once, under slots_lock, and never freed (an
 * account removed keeps its slot; HEALTH_ACCOUNTS bounds them), so lookups
 * need no lock: a slot's id is written before its state turns READY with
 * release order, and readers load the state with acquire order.
 *
 * Counts live in ring buckets stamped with their second (last minute) or
 * minute (last 15 minutes): a writer finding an old stamp zeroes the
 * bucket and restamps it; a reader adds only buckets whose stamp is inside
 * the window. An account's sends have one writer (the dispatch loop that
 * serves it: dispatcher.c acct_shard), so a bucket is never restamped by
 * two threads at once. The short strings (last error,
 * why held) sit under the slot's mutex, which the dispatcher only ever
 * tries (pthread_mutex_trylock): when a reader holds it, that one string
 * update is skipped rather than waited for.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "obs/acct_health.h"

#define RATE_BUCKETS HEALTH_RATE_WINDOW_S
#define ERR_BUCKETS (HEALTH_ERROR_WINDOW_S / 60)

enum { SLOT_EMPTY = 0, SLOT_READY = 1 };

struct sec_bucket {
	atomic_llong stamp; /* the unix second counted here */
	atomic_llong n;
};

struct min_bucket {
	atomic_llong stamp; /* the unix minute counted here */
	atomic_llong ok, failed, retried;
};

struct slot {
	atomic_int state;
	char id[HR_NAME_MAX];
	struct sec_bucket sent[RATE_BUCKETS];
	struct min_bucket out[ERR_BUCKETS];
	atomic_llong last_success, last_failure, last_webhook, held_until;
	atomic_bool blocked;
	pthread_mutex_t text_lock; /* the strings below */
	char last_error[HR_ERRCODE_MAX];
	char held_why[128];
	char blocked_why[128];
};

static struct slot slots[HEALTH_ACCOUNTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)(h % HEALTH_ACCOUNTS);
}

/* The account's slot, or NULL (not made yet: create false; table full). */
static struct slot *slot_of(const char *id, bool create)
{
	if (!id || !*id || strlen(id) >= HR_NAME_MAX)
		return NULL;
	size_t h = hash_id(id);
	for (size_t i = 0; i < HEALTH_ACCOUNTS; i++) {
		struct slot *s = &slots[(h + i) % HEALTH_ACCOUNTS];
		if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
			break;
		if (strcmp(s->id, id) == 0)
			return s;
	}
	if (!create)
		return NULL;
	pthread_mutex_lock(&slots_lock);
	struct slot *found = NULL;
	for (size_t i = 0; i < HEALTH_ACCOUNTS && !found; i++) {
		struct slot *s = &slots[(h + i) % HEALTH_ACCOUNTS];
		if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY) {
			if (strcmp(s->id, id) == 0)
				found = s;
			continue;
		}
		hr_strlcpy(s->id, id, sizeof s->id);
		pthread_mutex_init(&s->text_lock, NULL);
		atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
		found = s;
	}
	pthread_mutex_unlock(&slots_lock);
	return found;
}

static void text_set(struct slot *s, char *dst, size_t size, const char *v, bool wait)
{
	if (wait ? pthread_mutex_lock(&s->text_lock) != 0
	         : pthread_mutex_trylock(&s->text_lock) != 0)
		return; /* a reader holds it: skip this update, never wait */
	hr_strlcpy(dst, v ? v : "", size);
	pthread_mutex_unlock(&s->text_lock);
}

void health_send(const char *account_id, enum health_outcome o, const char *error_code,
                 int64_t now_us)
{
	struct slot *s = slot_of(account_id, true);
	if (!s)
		return;
	long long sec = now_us / 1000000, min = sec / 60;
	struct sec_bucket *b = &s->sent[sec % RATE_BUCKETS];
	if (atomic_load_explicit(&b->stamp, memory_order_relaxed) != sec) {
		atomic_store_explicit(&b->n, 0, memory_order_relaxed);
		atomic_store_explicit(&b->stamp, sec, memory_order_release);
	}
	atomic_fetch_add_explicit(&b->n, 1, memory_order_relaxed);
	struct min_bucket *m = &s->out[min % ERR_BUCKETS];
	if (atomic_load_explicit(&m->stamp, memory_order_relaxed) != min) {
		atomic_store_explicit(&m->ok, 0, memory_order_relaxed);
		atomic_store_explicit(&m->failed, 0, memory_order_relaxed);
		atomic_store_explicit(&m->retried, 0, memory_order_relaxed);
		atomic_store_explicit(&m->stamp, min, memory_order_release);
	}
	switch (o) {
	case HEALTH_OK:
		atomic_fetch_add_explicit(&m->ok, 1, memory_order_relaxed);
		atomic_store_explicit(&s->last_success, now_us, memory_order_relaxed);
		break;
	case HEALTH_FAILED:
	case HEALTH_RETRIED:
		atomic_fetch_add_explicit(o == HEALTH_FAILED ? &m->failed : &m->retried, 1,
		                          memory_order_relaxed);
		atomic_store_explicit(&s->last_failure, now_us, memory_order_relaxed);
		text_set(s, s->last_error, sizeof s->last_error, error_code, false);
		break;
	}
}

void health_webhook(const char *account_id, int64_t now_us)
{
	struct slot *s = slot_of(account_id, true);
	if (s)
		atomic_store_explicit(&s->last_webhook, now_us, memory_order_relaxed);
}

void health_hold(const char *account_id, int64_t until_us, const char *why)
{
	struct slot *s = slot_of(account_id, true);
	if (!s)
		return;
	atomic_store_explicit(&s->held_until, until_us, memory_order_relaxed);
	text_set(s, s->held_why, sizeof s->held_why, why, false);
}

void health_blocked(const char *account_id, bool blocked, const char *why)
{
	struct slot *s = slot_of(account_id, true);
	if (!s)
		return;
	text_set(s, s->blocked_why, sizeof s->blocked_why, blocked ? why : "", false);
	atomic_store_explicit(&s->blocked, blocked, memory_order_relaxed);
}

bool health_is_blocked(const char *account_id)
{
	struct slot *s = slot_of(account_id, false);
	return s && atomic_load_explicit(&s->blocked, memory_order_relaxed);
}

void health_get(const char *account_id, int64_t now_us, struct acct_health *out)
{
	memset(out, 0, sizeof *out);
	struct slot *s = slot_of(account_id, false);
	if (!s)
		return;
	out->known = true;
	long long sec = now_us / 1000000, min = sec / 60;
	for (size_t i = 0; i < RATE_BUCKETS; i++) {
		long long st = atomic_load_explicit(&s->sent[i].stamp, memory_order_acquire);
		/* The current second is still filling: the window is the 60
		 * whole seconds before it. */
		if (st < sec && st >= sec - RATE_BUCKETS)
			out->sent_window +=
			    atomic_load_explicit(&s->sent[i].n, memory_order_relaxed);
	}
	out->observed_rate = (double)out->sent_window / RATE_BUCKETS;
	for (size_t i = 0; i < ERR_BUCKETS; i++) {
		long long st = atomic_load_explicit(&s->out[i].stamp, memory_order_acquire);
		if (st > min - ERR_BUCKETS && st <= min) {
			out->ok += atomic_load_explicit(&s->out[i].ok, memory_order_relaxed);
			out->failed +=
			    atomic_load_explicit(&s->out[i].failed, memory_order_relaxed);
			out->retried +=
			    atomic_load_explicit(&s->out[i].retried, memory_order_relaxed);
		}
	}
	out->last_success_us = atomic_load_explicit(&s->last_success, memory_order_relaxed);
	out->last_failure_us = atomic_load_explicit(&s->last_failure, memory_order_relaxed);
	out->last_webhook_us = atomic_load_explicit(&s->last_webhook, memory_order_relaxed);
	out->held_until_us = atomic_load_explicit(&s->held_until, memory_order_relaxed);
	if (out->held_until_us <= now_us)
		out->held_until_us = 0;
	out->blocked = atomic_load_explicit(&s->blocked, memory_order_relaxed);
	pthread_mutex_lock(&s->text_lock);
	hr_strlcpy(out->last_error, s->last_error, sizeof out->last_error);
	if (out->held_until_us)
		hr_strlcpy(out->held_why, s->held_why, sizeof out->held_why);
	if (out->blocked)
		hr_strlcpy(out->blocked_why, s->blocked_why, sizeof out->blocked_why);
	pthread_mutex_unlock(&s->text_lock);
}

void health_reset(void)
{
	pthread_mutex_lock(&slots_lock);
	for (size_t i = 0; i < HEALTH_ACCOUNTS; i++) {
		struct slot *s = &slots[i];
		if (atomic_load(&s->state) == SLOT_READY)
			pthread_mutex_destroy(&s->text_lock);
		memset(s, 0, sizeof *s);
	}
	pthread_mutex_unlock(&slots_lock);
}
