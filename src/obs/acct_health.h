/*
 * acct_health.h - each sender account's health as this node sees it
 *: sends per second over the last minute, outcomes over the last
 * 15 minutes, the last success, failure and webhook, and whether the
 * dispatcher holds the account back (a provider's rate limit, refused
 * credentials). Kept in memory as sends happen, never computed from the
 * store; per node (a cluster's figures are the sum over its dispatch
 * nodes; the last times, the latest of them).
 *
 * Writers: the dispatcher thread (sends, holds) and the webhook ingress
 * threads (last webhook). Every write is a few relaxed atomics on the
 * account's slot, found without a lock once it exists; a slot is made
 * under a mutex the first time an account is seen (at most
 * HEALTH_ACCOUNTS; beyond that an account's figures are not kept and
 * health_get says so). Readers (the API) take no lock.
 */
#ifndef HR_ACCT_HEALTH_H
#define HR_ACCT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"

#define HEALTH_ACCOUNTS 4096
#define HEALTH_RATE_WINDOW_S 60   /* observed send rate: the last minute */
#define HEALTH_ERROR_WINDOW_S 900 /* recent error rate: the last 15 minutes */

enum health_outcome {
	HEALTH_OK = 0,  /* the provider took the message */
	HEALTH_FAILED,  /* failed for good */
	HEALTH_RETRIED, /* transient or rate limited: tried again later */
};

/* One send's outcome on account (its global id), at now_us (wall clock). */
void health_send(const char *account_id, enum health_outcome o, const char *error_code,
                 int64_t now_us);
/* A verified webhook for the account was stored. */
void health_webhook(const char *account_id, int64_t now_us);
/* The dispatcher holds the account back until until_us (wall; 0: not
 * any more) because why ("rate_limited: 429 ..."). */
void health_hold(const char *account_id, int64_t until_us, const char *why);
/* The provider refused the account's credentials: it sends nothing until
 * its config changes (blocked false again). */
void health_blocked(const char *account_id, bool blocked, const char *why);
/* Whether the account is blocked now, without a lock (any thread; the
 * dispatch loop serving another account asks it). */
bool health_is_blocked(const char *account_id);

struct acct_health {
	bool known;                  /* false: nothing recorded on this node yet */
	int64_t sent_window;         /* sends that reached the provider, last minute */
	double observed_rate;        /* sent_window / 60, messages per second */
	int64_t ok, failed, retried; /* outcomes, last 15 minutes */
	int64_t last_success_us, last_failure_us, last_webhook_us; /* wall, 0 = never */
	char last_error[HR_ERRCODE_MAX];
	int64_t held_until_us; /* wall: held back by the dispatcher until then */
	char held_why[128];
	bool blocked;
	char blocked_why[128];
};

/* The account's figures at now_us (wall clock). */
void health_get(const char *account_id, int64_t now_us, struct acct_health *out);
/* Forgets everything (tests). */
void health_reset(void);

#endif
