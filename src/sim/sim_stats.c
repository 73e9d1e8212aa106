/*
 * sim_stats.c - exact counts of what the simulator received: per callback
 * data (Herald's message id) and per (recipient, sha256 of the body). Two
 * small chained hash tables with one record allocation each, so a million
 * messages cost a few hundred bytes apiece; one mutex, never held for I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_int.h"

/* A send seen with a given biz_opaque_callback_data. */
struct msg_rec {
	struct msg_rec *next;
	uint64_t hash;
	uint32_t count;
	uint32_t nextra;
	char **extra;                /* wamids after the first */
	const char *cb, *to, *wamid; /* into buf */
	char buf[];
};

/* Sends seen with a given (recipient, body digest). */
struct body_rec {
	struct body_rec *next;
	uint64_t hash;
	uint32_t requests, accepted;
	unsigned char digest[32];
	char to[];
};

/* FNV-1a, 64 bit. */
static uint64_t hash_str(const char *s, uint64_t h)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

static uint64_t hash_body(const char *to, const unsigned char d[32])
{
	uint64_t h;
	memcpy(&h, d, sizeof h);
	return hash_str(to, FNV_BASIS) ^ h;
}

/* Both record types start with (next, hash), which is all the table needs. */
struct node {
	struct node *next;
	uint64_t hash;
};

static int table_grow(struct sim_table *t)
{
	if (t->n < t->nbuckets)
		return 0;
	size_t nb = t->nbuckets ? t->nbuckets * 2 : 1024;
	void **b = calloc(nb, sizeof *b);
	if (!b)
		return HR_ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct node *n = t->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

static void table_insert(struct sim_table *t, struct node *n)
{
	size_t i = n->hash & (t->nbuckets - 1);
	n->next = t->buckets[i];
	t->buckets[i] = n;
	t->n++;
}

static void table_clear(struct sim_table *t, bool is_msg)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct node *n = t->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			if (is_msg) {
				struct msg_rec *m = (struct msg_rec *)n;
				for (uint32_t k = 0; k < m->nextra; k++)
					free(m->extra[k]);
				free(m->extra);
			}
			free(n);
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof *t);
}

static struct msg_rec *msg_find(struct sim_table *t, const char *cb, uint64_t h)
{
	if (!t->nbuckets)
		return NULL;
	struct msg_rec *m = t->buckets[h & (t->nbuckets - 1)];
	for (; m; m = m->next)
		if (m->hash == h && strcmp(m->cb, cb) == 0)
			return m;
	return NULL;
}

static struct body_rec *body_find(struct sim_table *t, const char *to, const unsigned char d[32],
                                  uint64_t h)
{
	if (!t->nbuckets)
		return NULL;
	struct body_rec *b = t->buckets[h & (t->nbuckets - 1)];
	for (; b; b = b->next)
		if (b->hash == h && memcmp(b->digest, d, 32) == 0 && strcmp(b->to, to) == 0)
			return b;
	return NULL;
}

int sim_stats_init(struct sim_stats *st)
{
	memset(st, 0, sizeof *st);
	if (pthread_mutex_init(&st->lock, NULL))
		return HR_EINTERNAL;
	return 0;
}

void sim_stats_free(struct sim_stats *st)
{
	table_clear(&st->msgs, true);
	table_clear(&st->bodies, false);
	pthread_mutex_destroy(&st->lock);
}

void sim_stats_request(struct sim_stats *st)
{
	pthread_mutex_lock(&st->lock);
	st->requests++;
	pthread_mutex_unlock(&st->lock);
}

void sim_stats_reject(struct sim_stats *st, enum sim_reject why)
{
	pthread_mutex_lock(&st->lock);
	st->rejected[why]++;
	pthread_mutex_unlock(&st->lock);
}

/* Finds or creates the body record; NULL on OOM. Called with the lock held. */
static struct body_rec *body_get(struct sim_stats *st, const char *to, const unsigned char d[32])
{
	uint64_t h = hash_body(to, d);
	struct body_rec *b = body_find(&st->bodies, to, d, h);
	if (b)
		return b;
	if (table_grow(&st->bodies))
		return NULL;
	size_t tl = strlen(to) + 1;
	b = calloc(1, sizeof *b + tl);
	if (!b)
		return NULL;
	b->hash = h;
	memcpy(b->digest, d, 32);
	memcpy(b->to, to, tl);
	table_insert(&st->bodies, (struct node *)b);
	return b;
}

uint64_t sim_stats_attempt(struct sim_stats *st, const char *to, const unsigned char d[32])
{
	uint64_t prior = 0;
	pthread_mutex_lock(&st->lock);
	struct body_rec *b = body_get(st, to, d);
	if (b)
		prior = b->requests++;
	pthread_mutex_unlock(&st->lock);
	return prior;
}

int sim_stats_accept(struct sim_stats *st, const char *to, const unsigned char d[32],
                     const char *cb, const char *wamid)
{
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	st->accepted++;
	struct body_rec *b = body_get(st, to, d);
	if (b && ++b->accepted == 2)
		st->body_duplicates++;
	if (!b)
		rc = HR_ENOMEM;
	if (cb) {
		uint64_t h = hash_str(cb, FNV_BASIS);
		struct msg_rec *m = msg_find(&st->msgs, cb, h);
		if (m) {
			st->duplicates++;
			char **x = realloc(m->extra, (m->nextra + 1) * sizeof *x);
			if (x) {
				m->extra = x;
				if ((x[m->nextra] = strdup(wamid)))
					m->nextra++;
			}
			m->count++;
		} else if (table_grow(&st->msgs) == 0) {
			size_t cl = strlen(cb) + 1, tl = strlen(to) + 1, wl = strlen(wamid) + 1;
			m = calloc(1, sizeof *m + cl + tl + wl);
			if (m) {
				m->hash = h;
				m->count = 1;
				memcpy(m->buf, cb, cl);
				memcpy(m->buf + cl, to, tl);
				memcpy(m->buf + cl + tl, wamid, wl);
				m->cb = m->buf;
				m->to = m->buf + cl;
				m->wamid = m->buf + cl + tl;
				table_insert(&st->msgs, (struct node *)m);
			} else {
				rc = HR_ENOMEM;
			}
		} else {
			rc = HR_ENOMEM;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void sim_stats_reset(struct sim_stats *st)
{
	pthread_mutex_lock(&st->lock);
	table_clear(&st->msgs, true);
	table_clear(&st->bodies, false);
	st->requests = st->accepted = st->duplicates = st->body_duplicates = 0;
	memset(st->rejected, 0, sizeof st->rejected);
	pthread_mutex_unlock(&st->lock);
	atomic_store(&st->wh_posted, 0);
	atomic_store(&st->wh_statuses, 0);
	atomic_store(&st->wh_inbound, 0);
	atomic_store(&st->wh_failed, 0);
	atomic_store(&st->wh_dropped, 0);
}

json_t *sim_stats_json(struct sim_stats *st)
{
	pthread_mutex_lock(&st->lock);
	json_t *o = json_pack(
	    "{s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I}", "requests",
	    (json_int_t)st->requests, "accepted", (json_int_t)st->accepted, "rejected", "429",
	    (json_int_t)st->rejected[SIM_REJ_429], "5xx", (json_int_t)st->rejected[SIM_REJ_5XX],
	    "permanent", (json_int_t)st->rejected[SIM_REJ_PERMANENT], "auth",
	    (json_int_t)st->rejected[SIM_REJ_AUTH], "invalid",
	    (json_int_t)st->rejected[SIM_REJ_INVALID], "unique_messages", (json_int_t)st->msgs.n,
	    "duplicates", (json_int_t)st->duplicates, "unique_bodies", (json_int_t)st->bodies.n,
	    "body_duplicates", (json_int_t)st->body_duplicates);
	pthread_mutex_unlock(&st->lock);
	if (o)
		json_object_set_new(o, "webhooks",
		                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "posted",
		                              (json_int_t)atomic_load(&st->wh_posted), "statuses",
		                              (json_int_t)atomic_load(&st->wh_statuses), "inbound",
		                              (json_int_t)atomic_load(&st->wh_inbound),
		                              "failed_attempts",
		                              (json_int_t)atomic_load(&st->wh_failed), "dropped",
		                              (json_int_t)atomic_load(&st->wh_dropped), "pending",
		                              (json_int_t)atomic_load(&st->wh_pending)));
	return o;
}

json_t *sim_stats_message_json(struct sim_stats *st, const char *cb)
{
	json_t *o = NULL;
	pthread_mutex_lock(&st->lock);
	struct msg_rec *m = msg_find(&st->msgs, cb, hash_str(cb, FNV_BASIS));
	if (m) {
		json_t *w = json_array();
		json_array_append_new(w, json_string(m->wamid));
		for (uint32_t i = 0; i < m->nextra; i++)
			json_array_append_new(w, json_string(m->extra[i]));
		o = json_pack("{s:I, s:o, s:s}", "count", (json_int_t)m->count, "wamids", w, "to",
		              m->to);
	}
	pthread_mutex_unlock(&st->lock);
	return o;
}

json_t *sim_stats_duplicates_json(struct sim_stats *st)
{
	json_t *msgs = json_object(), *bodies = json_array();
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->msgs.nbuckets; i++)
		for (struct msg_rec *m = st->msgs.buckets[i]; m; m = m->next)
			if (m->count > 1)
				json_object_set_new(msgs, m->cb, json_integer(m->count));
	for (size_t i = 0; i < st->bodies.nbuckets; i++) {
		for (struct body_rec *b = st->bodies.buckets[i]; b; b = b->next) {
			if (b->accepted < 2)
				continue;
			char hex[65];
			for (size_t k = 0; k < 32; k++)
				snprintf(hex + 2 * k, 3, "%02x", b->digest[k]);
			json_array_append_new(bodies,
			                      json_pack("{s:s, s:s, s:I}", "to", b->to, "sha256",
			                                hex, "count", (json_int_t)b->accepted));
		}
	}
	pthread_mutex_unlock(&st->lock);
	return json_pack("{s:I, s:o, s:o}", "count", (json_int_t)json_object_size(msgs), "messages",
	                 msgs, "bodies", bodies);
}

json_t *sim_stats_counts_json(struct sim_stats *st)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	bool oom = false;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->bodies.nbuckets && !oom; i++) {
		for (struct body_rec *b = st->bodies.buckets[i]; b && !oom; b = b->next) {
			json_t *v = json_object_get(o, b->to);
			json_int_t n = (v ? json_integer_value(v) : 0) + (json_int_t)b->accepted;
			oom = json_object_set_new(o, b->to, json_integer(n)) != 0;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (oom) {
		json_decref(o);
		return NULL;
	}
	return o;
}
