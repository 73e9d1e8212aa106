/*
 * reconciler.h - the reconciler: one thread, never the dispatcher's loop or
 * an HTTP thread, that looks every reconcile.interval_ms for what went
 * quiet and has the store's rules (lc_reconcile.c) deal with it:
 *  (a) SENDING messages whose lease expired (requeued, or UNKNOWN under
 *      at_most_once / on the last attempt);
 *  (b) SENT messages with no receipt after the channel's stale_after: on a
 *      channel whose provider can be asked (Twilio) the answer is applied
 *      by precedence; otherwise, or when the answer is still no receipt,
 *      the message is marked stale once and falls back if it has a route;
 *      and routed SENT messages past their route's deadline fall back;
 *  (c) QUEUED messages past their expiry become EXPIRED;
 *  (d) webhooks that matched no message for inbox_park_after are parked
 *      (listed by GET /v1/webhooks/parked).
 * Every action is an audit event with source "reconciler" and counted in
 * herald_reconciler_actions_total{action}.
 */
#ifndef HR_RECONCILER_H
#define HR_RECONCILER_H

#include <stdint.h>

#include "channels/channel.h"
#include "store/store.h"

#define RECONCILE_CHANNELS_MAX 8

struct reconcile_opts {
	int64_t interval_us;         /* reconcile.interval_ms (default 1000) */
	int batch;                   /* rows per scan and transaction (default 500) */
	int64_t inbox_park_after_us; /* reconcile.inbox_park_after_s (default 3600) */
	int64_t lookup_timeout_us;   /* reconcile.lookup_timeout_ms (default 5000) */
	int64_t lookup_budget_us;    /* lookups per pass stop after this (default 2000 ms) */
	/* reconcile.stale_after_s.<channel>: how long SENT may wait for a
	 * receipt; 0 (or a channel not named): never stale. Defaults: whatsapp,
	 * sms and rcs 86400 s (a day). */
	struct {
		char channel[16];
		int64_t after_us;
	} stale[RECONCILE_CHANNELS_MAX];
	size_t nstale;
};
void reconcile_opts_default(struct reconcile_opts *o);
/* Sets (or adds) a channel's stale_after; HR_EINVAL when the table is full. */
int reconcile_opts_stale(struct reconcile_opts *o, const char *channel, int64_t after_us);

struct reconciler;

/* Starts the thread. accounts is borrowed for the reconciler's life. */
int reconciler_start(struct store *st, struct account_set *accounts, const struct reconcile_opts *o,
                     struct reconciler **out, struct hr_err *err);
/* Stops the thread (a pass under way finishes first). NULL is fine. */
void reconciler_stop(struct reconciler *r);

/* One pass of everything, now (tests and the thread). */
void reconciler_pass(struct store *st, struct account_set *accounts,
                     const struct reconcile_opts *o);

#endif
