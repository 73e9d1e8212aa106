/*
 * sim_telegram_int.h - what the Telegram simulator's files share: the
 * accounts, the knobs with their per-chat scripts, the update queue and
 * the state hanging off struct sim. Not used outside sim_telegram*.c.
 */
#ifndef HR_SIM_TELEGRAM_INT_H
#define HR_SIM_TELEGRAM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "herald.h"
#include "sim/sim_telegram.h"

struct tg_account {
	char id[HR_NAME_MAX];
	char *token;
	char *secret;
	char *webhook_url; /* {herald}/webhooks/telegram/{id} */
	long long bot_id;  /* the digits before the token's ':' */
};

/* One chat's scripted behaviour (sim.telegram.recipients."<chat>"). */
struct tg_script {
	char chat[HR_ADDR_MAX];
	bool blocked;
	char migrate_to[HR_ADDR_MAX]; /* "" = not migrated */
	char *press;                  /* callback data to press, or NULL */
	char *reply;                  /* text to reply with, or NULL */
};

/* Immutable once built; POST /sim/telegram/config swaps in a new one. */
struct tg_knobs {
	atomic_int refs;
	double latency_ms, latency_jitter_ms, rate_429, retry_after, rate_5xx, fail_rate;
	double answer_delay_ms, webhook_retry_s;
	bool has_seed;
	uint64_t seed;
	struct tg_script *scripts;
	size_t nscripts;
};

/* A record of the chat and callback tables: a string key and counters. */
struct tg_node {
	struct tg_node *next;
	uint64_t hash;
	long long a, b, c;
	char key[];
};

struct tg_table {
	struct tg_node **buckets;
	size_t nbuckets, n;
};

/* An update waiting to be posted (or re-posted) to Herald. */
struct tg_post {
	struct tg_post *next;
	int64_t due, first_at; /* monotonic us */
	int attempts;
	int acct;
	char *body;
};

struct sim_tg {
	struct tg_account *accounts;
	size_t naccounts;
	pthread_mutex_t knobs_lock;
	struct tg_knobs *knobs;

	pthread_mutex_t lock;      /* the tables and counters below */
	struct tg_table chats;     /* chat -> a: last message_id, b: sent, c: rejected */
	struct tg_table callbacks; /* callback query id -> a: answers */
	uint64_t sent, cb_issued, cb_answers, cb_repeat, cb_unknown;
	uint64_t migrations, blocked, presses, replies;
	long long msg_base; /* message ids of this run start above it */
	long long next_update;
	uint64_t cb_counter;
	uint32_t cb_prefix;

	/* The poster thread's queue, sorted by due time. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct tg_post *queue;
	bool stop;
	pthread_t thread;
	bool started;
	atomic_uint_fast64_t posted, failed, dropped;
	atomic_int_fast64_t pending;
};

/* ---- knobs (sim_telegram_knobs.c) ---- */
/* A copy of base with obj's keys applied; errors name "<prefix><key>". */
int sim_tg_knobs_apply(const struct tg_knobs *base, json_t *obj, const char *prefix,
                       struct tg_knobs **out, struct hr_err *err);
struct tg_knobs *sim_tg_knobs_get(struct sim_tg *t); /* caller unrefs */
void sim_tg_knobs_unref(struct tg_knobs *k);
json_t *sim_tg_knobs_json(const struct tg_knobs *k);
/* The script for a chat ("@names" compare without case), or NULL. */
const struct tg_script *sim_tg_script_find(const struct tg_knobs *k, const char *chat);

/* ---- the update poster (sim_telegram_post.c) ---- */
/* Queues an update (takes body, heap JSON) for account acct, posted after
 * delay_us; false if the simulator is stopping (body freed). */
bool sim_tg_post_submit(struct sim *s, int acct, char *body, int64_t delay_us);
/* The poster thread's body; arg is the struct sim. */
void *sim_tg_poster_main(void *arg);
void sim_tg_post_free(struct tg_post *p);

#endif
