/*
 * metrics.h - process-wide Prometheus metrics. Counters are lock-free atomics
 * indexed by channel slot, so hot paths pay one atomic add. Rendering walks
 * them and appends gauges read from the store (queue depth by status, inbox
 * backlog) in the Prometheus text exposition format 0.0.4.
 */
#ifndef HR_METRICS_H
#define HR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "herald.h"

struct store;

enum metric_send {
	M_SEND_ATTEMPTED = 0,
	M_SEND_SUCCEEDED,
	M_SEND_FAILED,  /* permanent failure */
	M_SEND_RETRIED, /* transient / rate limited, will retry */
	M_SEND__COUNT
};

enum metric_webhook {
	M_WH_RECEIVED = 0, /* verified and stored in the inbox */
	M_WH_REJECTED,     /* bad signature, unknown account, too big */
	M_WH_APPLIED,      /* status events that changed a message */
	M_WH_IGNORED,      /* status events recorded as stale/duplicate */
	M_WH_INBOUND,      /* replies and button presses recorded */
	M_WH__COUNT
};

void metrics_send(const char *channel, enum metric_send what, int n);
/* Provider round trip of one send, in microseconds (histogram by channel). */
void metrics_send_latency(const char *channel, int64_t us);
void metrics_inflight_add(int delta);
void metrics_webhook(const char *channel, enum metric_webhook what, int n);
void metrics_http(int status);
/* What the HTTP server's connection guard did (src/api/guard.c). */
enum metric_http_guard {
	M_GUARD_REFUSED_LIMIT = 0, /* accept refused: server.max_connections */
	M_GUARD_REFUSED_ADDR,      /* accept refused: server.max_connections_per_ip */
	M_GUARD_CUT_HEAD,          /* closed: request head not in by its deadline */
	M_GUARD_CUT_BODY,          /* closed: request body slower than the minimum rate */
	M_GUARD__COUNT
};
void metrics_http_guard(enum metric_http_guard what);
void metrics_accepted(int n); /* messages durably accepted by the API */
/* Why a send's outcome is unknown (README "Guarantees"): the request was
 * written and its answer never came, or the process holding it stopped. */
enum metric_unknown {
	M_UNK_TIMEOUT = 0, /* "timeout_after_write" */
	M_UNK_CONN_LOST,   /* "connection_lost_after_write" */
	M_UNK_LEASE,       /* "lease_expired_in_flight": the process stopped mid-send */
	M_UNK_GATEWAY,     /* "gateway_timeout": HTTP 504, a proxy gave up on the provider */
	M_UNK__COUNT
};
/* The reason's label, or NULL for a value out of range. */
const char *metrics_unknown_name(enum metric_unknown why);
/* Messages moved to UNKNOWN (at_most_once, or attempts spent) for why:
 * herald_messages_unknown_total{channel, reason}. */
void metrics_unknown(const char *channel, enum metric_unknown why, int n);
/* at_least_once messages queued again after an unknown outcome (each a
 * possible duplicate): herald_resends_after_unknown_total{channel, reason}. */
void metrics_resend_unknown(const char *channel, enum metric_unknown why, int n);
/* What message retention removed (store.message_retention_days). */
void metrics_retention(int64_t messages, int64_t events, int months);

/* Callbacks to client systems (webhooks/callbacks.c): attempts delivered,
 * attempts that failed, rows dead-lettered. */
enum metric_callback { M_CB_SENT = 0, M_CB_FAILED, M_CB_DEAD, M_CB__COUNT };
void metrics_callback(enum metric_callback what, int n);

/* What the reconciler did (src/dispatch/reconciler.c, lifecycle):
 * herald_reconciler_actions_total{action}. */
enum metric_reconcile {
	M_REC_LEASE_REQUEUED = 0, /* a lease expired: queued again */
	M_REC_LEASE_UNKNOWN,      /* a lease expired: UNKNOWN (never resent) */
	M_REC_EXPIRED,            /* a queued message past its expiry: EXPIRED */
	M_REC_LOOKUP_APPLIED,     /* a provider lookup moved a stale message */
	M_REC_STALE,              /* still SENT past its deadline: marked stale */
	M_REC_FALLBACK_DUE,       /* no receipt by the route's deadline: fell back */
	M_REC_INBOX_PARKED,       /* a webhook that matched no message: parked */
	M_REC__COUNT
};
void metrics_reconcile(enum metric_reconcile what, int n);
/* Follow-ups made on a route's next channel: herald_fallbacks_total{reason};
 * reason one of "failed", "undelivered", "unknown", "not_rcs_capable",
 * "no_receipt", "stale" (others are counted as "other"). */
void metrics_fallback(const char *reason, int n);

/* A renderer of more series appended to every render (the plugins',
 * plugins/plugins.h), or NULL for none. Set before the server starts and
 * cleared after it stopped: not synchronised with renders. */
struct hr_buf;
void metrics_set_extra(void (*fn)(void *arg, struct hr_buf *b), void *arg);

/* Renders all metrics (plus store gauges when st != NULL) into a heap buffer. */
int metrics_render(struct store *st, char **out, size_t *len);

#endif
