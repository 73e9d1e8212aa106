/*
 * hold.c - the messages this process is sending: claimed, and their
 * outcome not yet committed (store.h: store_hold).
 *
 * Why: a lease says how long a claim may go unanswered before the message
 * is taken back, for a process that died mid-send. A process that is alive
 * but slow (a provider answering at the HTTP timeout, then outcomes
 * waiting behind a busy writer on a loaded machine) could see its own
 * leases run out, and lease expiry would queue the message again while
 * its outcome was on the way: a duplicate the provider receives, for no
 * crash at all (seen on PostgreSQL under load: 16 of a 10,000-message
 * campaign). So lease expiry in this process leaves the messages this
 * process still holds alone; only a process that stopped loses its holds.
 * Each hold also has a deadline (ten leases), so an outcome that never
 * comes back (a bug) cannot keep a message SENDING for ever.
 *
 * Another node of a shared PostgreSQL store does not see these holds: for
 * it, the lease is the only word (see DESIGN.md).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define HOLD_BUCKETS 4096

struct hold {
	struct hold *next;
	const struct store *st;
	int64_t until;
	char id[HR_ID_LEN + 1];
};

static struct {
	pthread_mutex_t lock;
	struct hold *b[HOLD_BUCKETS];
} H = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned bucket(const char *id)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % HOLD_BUCKETS;
}

static struct hold **find(const struct store *st, const char *id)
{
	struct hold **pp = &H.b[bucket(id)];
	while (*pp && ((*pp)->st != st || strcmp((*pp)->id, id) != 0))
		pp = &(*pp)->next;
	return pp;
}

int store_hold(const struct store *st, const char *id, int64_t until)
{
	if (!st || !id || strlen(id) > HR_ID_LEN)
		return HR_EINVAL;
	pthread_mutex_lock(&H.lock);
	struct hold **pp = find(st, id);
	int rc = 0;
	if (*pp) {
		(*pp)->until = until;
	} else {
		struct hold *h = calloc(1, sizeof *h);
		if (h) {
			h->st = st;
			h->until = until;
			hr_strlcpy(h->id, id, sizeof h->id);
			*pp = h;
		} else {
			rc = HR_ENOMEM; /* the lease alone protects this one */
		}
	}
	pthread_mutex_unlock(&H.lock);
	return rc;
}

void store_unhold(const struct store *st, const char *id)
{
	if (!st || !id)
		return;
	pthread_mutex_lock(&H.lock);
	struct hold **pp = find(st, id);
	struct hold *h = *pp;
	if (h)
		*pp = h->next;
	pthread_mutex_unlock(&H.lock);
	free(h);
}

bool store_held(const struct store *st, const char *id, int64_t now)
{
	if (!st || !id)
		return false;
	pthread_mutex_lock(&H.lock);
	struct hold *h = *find(st, id);
	bool yes = h && h->until > now;
	pthread_mutex_unlock(&H.lock);
	return yes;
}

size_t store_hold_count(const struct store *st)
{
	size_t n = 0;
	pthread_mutex_lock(&H.lock);
	for (size_t i = 0; i < HOLD_BUCKETS; i++)
		for (struct hold *h = H.b[i]; h; h = h->next)
			n += h->st == st;
	pthread_mutex_unlock(&H.lock);
	return n;
}

void store_hold_forget(const struct store *st)
{
	pthread_mutex_lock(&H.lock);
	for (size_t i = 0; i < HOLD_BUCKETS; i++) {
		struct hold **pp = &H.b[i];
		while (*pp) {
			if ((*pp)->st == st) {
				struct hold *h = *pp;
				*pp = h->next;
				free(h);
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	pthread_mutex_unlock(&H.lock);
}
