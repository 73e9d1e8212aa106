/*
 * dispatch.h - the dispatcher: a loop thread that claims due messages with a
 * lease, rate-limits per sender account, sends through libcurl's multi
 * interface (many transfers in flight, connections reused) and records each
 * outcome through the store's group-committing writer. With threads > 1 the
 * accounts are sharded across that many loops (each account on one loop,
 * by a hash of its id), for a machine where one core cannot keep up.
 */
#ifndef HR_DISPATCH_H
#define HR_DISPATCH_H

#include <stdint.h>

#include "channels/channel.h"
#include "herald.h"
#include "store/store.h"

struct dispatcher;

#define DISPATCH_THREADS_MAX 16

struct dispatch_opts {
	/* Loops (threads), 1..DISPATCH_THREADS_MAX (default 1). Each has its own
	 * part of max_in_flight and of max_in_flight_per_tenant (an even part;
	 * an account's cap is its loop's), its own libcurl connections, and
	 * serves the accounts whose id hashes to it. */
	int threads;
	int max_in_flight;          /* concurrent HTTP transfers (default 256) */
	int64_t lease_us;           /* visibility timeout of a claim (default 30 s) */
	int max_attempts;           /* attempts before a transient error fails (default 8) */
	int64_t backoff_base_us;    /* first retry delay (default 500 ms) */
	int64_t backoff_max_us;     /* cap (default 5 min) */
	int64_t http_timeout_us;    /* per request (default 15 s) */
	int64_t reconcile_every_us; /* lease-expiry sweep period (default 1 s); 0: none here,
	                             * the reconciler's thread does it (reconciler.h) */
	/* Fair shares of those transfers (dispatcher.c acct_room): the most an
	 * account (a tenant) holds while others have work waiting, unless its
	 * even share of the pool is larger; alone it may use the pool less a
	 * small reserve kept so that another account's send starts at once even
	 * while a slow or dead provider holds the rest. 0: max_in_flight / 4
	 * (per tenant: / 2). */
	int max_in_flight_per_account;
	int max_in_flight_per_tenant;
	/* Loaded plugins (plugins/plugins.h), borrowed; NULL: none. Messages
	 * of a unit whose plugin has before_send pass its gate before they
	 * are sent (dispatcher.c, gate_*). */
	struct plugins *plugins;
};
void dispatch_opts_default(struct dispatch_opts *o);

/* What a sync-mode waiter learns about its message's first outcome. */
struct dispatch_result {
	int rc; /* 0 when an outcome arrived, HR_ETIMEOUT otherwise */
	enum send_kind kind;
	int http_status;
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
};
/* Called exactly once, from a dispatcher (or the store's writer) thread;
 * must be quick. */
typedef void (*dispatch_watch_fn)(void *arg, const struct dispatch_result *r);

/* Starts the dispatcher's threads. accounts is borrowed for the dispatcher's
 * life. HR_EINVAL naming dispatch.threads past DISPATCH_THREADS_MAX. */
int dispatcher_start(struct store *st, struct account_set *accounts,
                     const struct dispatch_opts *opts, struct dispatcher **out, struct hr_err *err);
/* Stops claiming, waits (up to the HTTP timeout) for transfers in flight to
 * finish and be recorded, then stops the thread. Transfers still unanswered
 * after that are abandoned: their leases expire, and they are sent again
 * (at_least_once) or become UNKNOWN (at_most_once). NULL is fine. */
void dispatcher_stop(struct dispatcher *d);
/* New messages were accepted: wake the dispatcher now rather than at its
 * next poll. Thread-safe, cheap. */
void dispatcher_notify(struct dispatcher *d);
/* Calls cb once the message's next send attempt has been recorded, or with
 * rc HR_ETIMEOUT after timeout_us. Register before the message is inserted:
 * then no backend, however it orders its writes and callbacks, can claim,
 * send and record the message before the watch exists. */
int dispatcher_watch(struct dispatcher *d, const char *message_id, int64_t timeout_us,
                     dispatch_watch_fn cb, void *arg);
/* Removes the watch of message_id registered with arg, if it has not fired:
 * true when removed (its cb will never be called), false when it already
 * fired or is firing (its cb has been or is being called). */
bool dispatcher_unwatch(struct dispatcher *d, const char *message_id, void *arg);

#endif
