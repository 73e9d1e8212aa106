/*
 * daily.h - messages per tenant, channel, day and kind: how many
 * were accepted, reached sent, delivered, read, or failed each UTC day,
 * counted as messages change and never from a scan. The overview's "today
 * vs yesterday" reads them.
 *
 * The rule (daily_transition) is here, above the backends: a message counts
 * once per kind, on the day it reached it: accepted when made; sent when it
 * moves from below SENT to SENT, DELIVERED or READ; delivered when it
 * reaches DELIVERED or READ (a READ before any receipt implies it); read
 * when it reaches READ; failed when it becomes FAILED or UNDELIVERED.
 *
 * Cost on the hot path: each change adds to a small in-memory aggregate
 * (a linear array; a group's messages share a handful of keys), and the
 * backend writes one upsert per key per group commit, never one per
 * message (daily_acc is what a backend keeps per job and per group).
 */
#ifndef HR_STORE_DAILY_H
#define HR_STORE_DAILY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"

enum daily_kind {
	DAILY_ACCEPTED = 0,
	DAILY_SENT,
	DAILY_DELIVERED,
	DAILY_READ,
	DAILY_FAILED,
	DAILY__COUNT,
	/* Not a day's count of messages but of one failure code: a message
	 * that became FAILED or UNDELIVERED with a provider error code counts
	 * once under (its code, DAILY_ERROR), for the top failure codes. */
	DAILY_ERROR = DAILY__COUNT
};

const char *daily_kind_name(enum daily_kind k);

struct daily_ent {
	char tenant_id[HR_NAME_MAX];
	char channel[16];
	int32_t day; /* days since 1970-01-01, UTC */
	int8_t kind;
	char code[HR_ERRCODE_MAX]; /* DAILY_ERROR's error code; "" for the others */
	int64_t n;
};

/* An aggregate: one entry per key. oom: an addition was lost. */
struct daily_acc {
	struct daily_ent *v;
	size_t n, cap;
	bool oom;
};

int32_t daily_day(int64_t at_us);
void daily_add(struct daily_acc *a, const char *tenant_id, const char *channel, int32_t day,
               int kind, const char *code, int64_t n);
/* The same, answering the entry's index (-1: out of memory, or n 0). */
long daily_add_at(struct daily_acc *a, const char *tenant_id, const char *channel, int32_t day,
                  int kind, const char *code, int64_t n);
/* Whether a move counts its error code (DAILY_ERROR): it becomes FAILED or
 * UNDELIVERED from another status, with a code. */
bool daily_counts_error(int from, int to, const char *code);
/* The kinds a move from `from` (-1: new) to `to` counts, into kinds[];
 * how many. The one place the rule lives. */
int daily_kinds(int from, int to, int kinds[DAILY__COUNT]);
/* The rule above: what a message moving from `from` (-1: new) to `to` at
 * at_us adds. */
void daily_transition(struct daily_acc *a, const char *tenant_id, const char *channel,
                      int64_t at_us, int from, int to);
void daily_merge(struct daily_acc *into, const struct daily_acc *from);
/* Empties (keeps the memory); daily_free releases it. */
void daily_clear(struct daily_acc *a);
void daily_free(struct daily_acc *a);
/* Deep copy (into must be empty or cleared); false when out of memory. */
bool daily_copy(struct daily_acc *into, const struct daily_acc *from);

#endif
