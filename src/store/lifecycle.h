/*
 * lifecycle.h - the rules of a message's life, written once above every
 * store backend, and the small transaction interface a backend fills for
 * them (the shape of sqlite3_io_methods: a struct of functions over an
 * opaque handle).
 *
 * What lives in lifecycle.c, whatever the database: attempt fencing of send
 * outcomes, the status precedence of webhooks (status_decide), READ implying
 * DELIVERED, suppression screening and alias rewriting at claim, lease
 * expiry (requeue, or UNKNOWN on the last attempt), opt-out/opt-in and
 * auto-replies from inbound messages, the inbox's retry schedule, and the
 * audit event that goes with every change. Every status change of a message
 * goes through lc_transition (claims, whose QUEUED -> SENDING is one
 * statement in the backend, report theirs through lc_claimed), so counters
 * and hooks added later have exactly one place to live.
 *
 * What a backend does: run a function inside one transaction (grouping as
 * it likes, each run in its own savepoint so one failing run costs only
 * itself), and store, find and claim rows through struct store_tx_ops. It
 * decides nothing.
 *
 * Nothing outside src/store/ includes this.
 */
#ifndef HR_STORE_LIFECYCLE_H
#define HR_STORE_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"
#include "store/daily.h"
#include "store/store.h"

/* ---- audit-event details (evjson.c) ---- */

/* A growable text buffer for one JSON object at a time. */
struct ev_json {
	char *buf;
	size_t len, cap;
	bool oom;
};
/* Object building: keys and values escaped, invalid UTF-8 as U+FFFD. */
void ev_json_begin(struct ev_json *j);
void ev_json_str(struct ev_json *j, const char *key, const char *val);
void ev_json_int(struct ev_json *j, const char *key, int64_t val);
void ev_json_bool(struct ev_json *j, const char *key, bool val);
/* Closes the object; the text (valid until the next begin) or NULL on OOM. */
const char *ev_json_end(struct ev_json *j);

/* ---- what the rules see of a message ---- */

struct lc_msg {
	int64_t key; /* the backend's handle for the row (SQLite's rowid) */
	char id[HR_ID_LEN + 1];
	char tenant_id[HR_NAME_MAX];
	char account_id[HR_NAME_MAX];
	char channel[16];
	char recipient[HR_ADDR_MAX];
	enum msg_status status;
	int attempts;
	int max_attempts; /* 0 = the default (LC_MAX_ATTEMPTS_DEFAULT) */
	bool has_provider_id;
	int64_t lease_until;
	char batch_id[HR_ID_LEN + 1]; /* "" when not part of a batch */
	enum delivery_policy policy;
	int64_t expires_at; /* 0: never */
	/* Fallback routing (herald.h struct message): this message's step of
	 * route_steps (0: no route), the route's first message, and how long
	 * SENT waits for a receipt before falling back (0: it does not). */
	int route_step, route_steps;
	char route_root[HR_ID_LEN + 1];
	int64_t fallback_after;
	int64_t sent_at; /* when it last became SENT; 0 never */
	bool stale;      /* the reconciler settled or marked it stale */
	/* Whether the row has a callback URL, when the backend read it
	 * (LC_CB_UNKNOWN otherwise): a status change of a message without one
	 * queues no callback, and need not look for its URL. */
	unsigned char callback;
};

enum { LC_CB_UNKNOWN = 0, LC_CB_NONE, LC_CB_SOME };

#define LC_MAX_ATTEMPTS_DEFAULT 8

/*
 * A paused campaign's queued messages are held out of the claimable set by
 * moving their due_at this far into the future (year ~146,000): every claim
 * asks due_at <= now, so a held message is never claimed and the claim's
 * statement and index stay exactly as they are (no join, no per-claim
 * lookup). Resuming subtracts it again, so each message keeps the due time
 * (a retry's backoff) it had. Nothing else reads due_at of queued messages
 * but the dispatcher's next_due, which sees a held message as far away.
 */
#define LC_HOLD_BASE ((int64_t)1 << 62)

/* Which fields an update writes (lc_update.set). */
enum {
	LC_SET_STATUS = 1 << 0,          /* status; lease_until becomes 0 */
	LC_SET_PROVIDER_ID = 1 << 1,     /* provider_id when given ("" keeps it) */
	LC_SET_ERROR = 1 << 2,           /* error_code/error_text ("" -> NULL) */
	LC_KEEP_ERROR = 1 << 3,          /* with LC_SET_ERROR: "" keeps the old value */
	LC_SET_DUE = 1 << 4,             /* due_at */
	LC_SET_RECIPIENT = 1 << 5,       /* recipient */
	LC_GIVE_BACK_ATTEMPT = 1 << 6,   /* attempts - 1 (never below 0) */
	LC_PROVIDER_ID_IF_NONE = 1 << 7, /* provider_id only where it is NULL */
	LC_SET_SENT_AT = 1 << 8,         /* sent_at */
	LC_SET_FALLBACK_AT = 1 << 9,     /* fallback_at (0: not waiting) */
	LC_SET_STALE = 1 << 10,          /* stale = 1 */
};

struct lc_update {
	unsigned set;
	enum msg_status status;
	const char *provider_id;
	const char *error_code, *error_text;
	int64_t due_at;
	const char *recipient;
	int64_t sent_at, fallback_at;
};

/* One audit-trail entry for a message. */
struct lc_event {
	const char *type;   /* "sent", "retry", "webhook_status", ... */
	const char *source; /* "dispatcher", "webhook", "reconciler", "api" */
	int status;         /* resulting or reported status, -1 for none */
	bool applied;
	int64_t provider_at;
	const char *detail; /* JSON object text or NULL */
	int64_t inbox_id;   /* the webhook row it came from, 0 for none */
};

/* An inbound reply as stored (texts already valid UTF-8). */
struct lc_inbound {
	const char *tenant_id; /* NULL: the account's tenant */
	const char *account_id;
	const char *message_id; /* the message it answers, NULL if none */
	const char *provider_msg_id, *from, *kind, *text, *payload;
	int64_t provider_at, received_at;
};

/* One callback to the client's system, as lc_callback.c decides it
 * (store.h: callback_row). The backend stores it only when the message
 * has a callback URL (message_id set) or, for a reply that matched no
 * message (message_id NULL), when the account's tenant has one; the URL,
 * tenant, batch, provider id and error of the row are the message's as
 * they are after this transaction's own writes. */
struct lc_callback {
	const char *event;      /* "message.status", "message.inbound" */
	const char *message_id; /* NULL: a reply that matched no message */
	const char *account_id; /* with message_id NULL: whose tenant's URL */
	int status, prev_status; /* -1 for none */
	const char *detail;     /* JSON object text or NULL */
};

/* One after-commit event for a business-unit plugin (lc_plugin.c; store.h
 * plugin_event_row): a status change (kind PLUGIN_EV_STATUS, from -> to)
 * or a reply (PLUGIN_EV_REPLY, text and payload, each may be NULL). */
struct lc_plugin_event {
	const char *message_id, *tenant_id;
	int kind;
	int prev_status, status; /* -1 for none */
	const char *text, *payload;
};

/* What the rules see of a campaign (batch) in a transaction. */
struct lc_batch_state {
	char tenant_id[HR_NAME_MAX];
	enum batch_status status;
	bool ingested;
	bool receipts;
	int64_t by_status[MSG__COUNT];
};

/* A tenant's caps and use as a campaign start sees them (0 caps: none). */
struct lc_start_limits {
	int64_t daily_cap, today;       /* messages per UTC day; accepted today */
	int64_t campaign_cap, processing; /* campaigns at once; PROCESSING now */
	int64_t valid;                  /* the batch's rows that will become messages */
};

/* The batch counters a run has moved so far (lc_batch.c); flushed into the
 * batch rows once, when the run's function returns. */
struct lc_acc;
struct store_tx;

/* The store a run of lifecycle.c is on (NULL outside one). */
const struct store *lc_tx_store(const struct store_tx *tx);

/* ---- the backend's side: one open transaction ---- */

struct store_tx;

/* A message the run will look up by its provider id (msg_by_provider),
 * for a status of webhook row inbox_id (0: for a reply's context): on a
 * retried row the run asks event_seen about it too. */
struct lc_pkey {
	const char *account_id;
	const char *provider_id;
	int64_t inbox_id;
};

/* What a run is about to read, told to a backend that can read it all at
 * once (store_tx_ops.prefetch): messages by id and by provider id, inbox
 * rows, and (pkeys' inbox_id) what event_seen will ask of retried rows.
 * Borrowed for the call; entries may repeat. */
struct lc_want {
	const char *const *msg_ids; /* msg_get */
	size_t nmsg_ids;
	const struct lc_pkey *pkeys; /* msg_by_provider */
	size_t npkeys;
	const int64_t *inbox_ids; /* inbox_state */
	size_t ninbox;
};

struct store_tx_ops {
	/* The clock of this transaction (us): what leases, due times and
	 * event times are measured against. */
	int64_t (*now)(struct store_tx *tx);
	/* The transaction's error slot, named and filled by every call that
	 * fails; callers read it for the message. */
	struct hr_err *(*err)(struct store_tx *tx);
	/* A scratch JSON builder for event details, owned by the transaction. */
	struct ev_json *(*json)(struct store_tx *tx);

	/* Per-item isolation inside the transaction: mark, then keep or undo
	 * what was written since. item_end returns 0 when done as asked, < 0
	 * when the transaction is lost, and 1 when keep was asked but a write
	 * of the item failed as the backend sent it (a backend may send writes
	 * ahead of their results, so a write's failure can show only here):
	 * the item is undone and err says why, as if a call inside it had
	 * failed. */
	int (*item_begin)(struct store_tx *tx);
	int (*item_end)(struct store_tx *tx, bool keep);
	/* False once the backend lost the whole transaction (only aborting
	 * is left). */
	bool (*alive)(struct store_tx *tx);

	/* Optional (NULL: every read is cheap). What the run reads next, so a
	 * backend for which each read is a network round trip can read it all
	 * in one; the reads that follow must answer exactly as they would
	 * have without it (writes of the run included). 0, or an error that
	 * fails the run. */
	int (*prefetch)(struct store_tx *tx, const struct lc_want *want);

	/* Messages. HR_ENOTFOUND when absent. */
	int (*msg_get)(struct store_tx *tx, const char *id, struct lc_msg *out);
	/* The account's message the provider calls provider_id: 1 found, 0 not. */
	int (*msg_by_provider)(struct store_tx *tx, const char *account_id, const char *provider_id,
	                       struct lc_msg *out);
	int (*msg_update)(struct store_tx *tx, const struct lc_msg *m, const struct lc_update *u);
	/* One row, status QUEUED (no event: the caller records it). */
	int (*msg_insert)(struct store_tx *tx, const struct message *m);
	/* Up to limit QUEUED messages of the account due by now, lowest
	 * priority value, then due_at, then id first: set SENDING, attempts + 1,
	 * lease_until given, returned whole in out[] (caller's limit entries). */
	int (*claim)(struct store_tx *tx, const char *account_id, int64_t now, int64_t lease_until,
	             int limit, struct message *out, size_t *n);
	/* Up to limit SENDING messages whose lease ended before now. */
	int (*lease_expired)(struct store_tx *tx, int64_t now, int limit, struct lc_msg *out,
	                     size_t *n);
	int (*event_insert)(struct store_tx *tx, const char *message_id, const struct lc_event *e);
	/* 1 if the inbox row already recorded this webhook status for the
	 * message, 0 if not. */
	int (*event_seen)(struct store_tx *tx, const char *message_id, int64_t inbox_id,
	                  enum msg_status status);

	/* Suppression list and recipient aliases. */
	int (*supp_any)(struct store_tx *tx, const char *tenant_id, const char *channel);
	/* 1 and the reason (reason_size bytes) if suppressed, 0 if not. */
	int (*supp_reason)(struct store_tx *tx, const char *tenant_id, const char *channel,
	                   const char *recipient, char *reason, size_t reason_size);
	int (*supp_put)(struct store_tx *tx, const char *tenant_id, const char *channel,
	                const char *recipient, const char *reason);
	int (*supp_delete)(struct store_tx *tx, const char *tenant_id, const char *channel,
	                   const char *recipient);
	/* an account's pause row, put (replaced) or deleted (1 if
	 * there was one, 0 if not). */
	int (*pause_put)(struct store_tx *tx, const struct account_pause_row *p);
	int (*pause_delete)(struct store_tx *tx, const char *account_id);
	/* Appends one line to the suppression list's history (action "added",
	 * "updated" or "removed"; c's reason, message and actor). */
	int (*supp_log)(struct store_tx *tx, const struct supp_change *c, const char *action);
	int (*alias_any)(struct store_tx *tx, const char *account_id);
	/* 1 and the new address if old moved, 0 if not. */
	int (*alias_get)(struct store_tx *tx, const char *account_id, const char *old,
	                 char new_addr[HR_ADDR_MAX]);
	int (*alias_put)(struct store_tx *tx, const char *account_id, const char *old,
	                 const char *new_addr);

	/* Webhooks. The account's tenant and channel: 1 found, 0 unknown. */
	int (*account_of)(struct store_tx *tx, const char *account_id, char tenant[HR_NAME_MAX],
	                  char channel[16]);
	/* 1 stored now, 0 already stored (same account and provider id). */
	int (*inbound_insert)(struct store_tx *tx, const struct lc_inbound *in);
	/* The inbox row's receipt time, attempts so far and channel: 1, or 0
	 * when the row is gone. */
	int (*inbox_state)(struct store_tx *tx, int64_t id, int64_t *received_at, int *attempts,
	                   char channel[16]);
	/* Up to limit rows due by now (state new or retry, next_try_at <= now),
	 * oldest first: their next_try_at becomes until; returned whole in
	 * out[] (caller's limit entries). */
	int (*inbox_claim)(struct store_tx *tx, int64_t now, int64_t until, int limit,
	                   struct inbox_row *out, size_t *n);
	/* next_try_at 0 keeps the old value; error NULL clears it. */
	int (*inbox_mark)(struct store_tx *tx, int64_t id, int state, int attempts,
	                  int64_t next_try_at, const char *error);

	/* Campaigns. The batch's state: 1 found, 0 no such batch. */
	int (*batch_state)(struct store_tx *tx, const char *batch_id, struct lc_batch_state *out);
	/* Adds delta[s] to the batch's count of messages in status s and
	 * replied to its replied count, and returns the state after: 1, or 0
	 * when there is no such batch (messages of a JSON batch request). */
	int (*batch_add)(struct store_tx *tx, const char *batch_id, const int64_t delta[MSG__COUNT],
	                 int64_t replied, struct lc_batch_state *after);
	/* Adds delta[s] to the count of messages in status s kept for
	 * /metrics (message_status_count; store.h message_gauges), in this
	 * transaction: written by the backend with its commit, and not at all
	 * if the run's job fails. Called once per run, with what it changed;
	 * a run made again calls it afresh (replacing, not adding). */
	int (*status_add)(struct store_tx *tx, const int64_t delta[MSG__COUNT]);
	/* the run's daily counters (store/daily.h), handed over when
	 * the run's function returns, even when empty: they replace what an
	 * undone attempt of the same run handed over. The backend writes them
	 * with the group's commit, one upsert per key. */
	int (*daily_add)(struct store_tx *tx, const struct daily_acc *d);
	/* Adds to the row counts (batch_items_put). */
	int (*batch_rows_add)(struct store_tx *tx, const char *batch_id, int64_t total,
	                      int64_t valid, int64_t invalid, int64_t duplicates);
	/* Sets status `to` stamped with at (its timestamp column), error (NULL
	 * keeps it) and, when ingested is 1, the ingested mark (-1 keeps it). */
	int (*batch_set)(struct store_tx *tx, const char *batch_id, enum batch_status to, int64_t at,
	                 const char *error, int ingested);
	/* Stores rows; HR_ECONFLICT (field "row") if a row number exists. A
	 * valid row whose recipient an earlier valid row of the batch already
	 * has is stored as a duplicate (the store's unique key decides, not a
	 * lookup first): *dups gets how many were. */
	int (*items_insert)(struct store_tx *tx, const char *batch_id, const struct batch_item *items,
	                    size_t n, int64_t *dups);
	/* The row takes message_id if it has none and is valid and not a
	 * duplicate: 1 taken, 0 not (already has one, or not sendable). */
	int (*item_take)(struct store_tx *tx, const char *batch_id, int64_t row,
	                 const char *message_id);
	/* Up to limit QUEUED messages of the batch. */
	int (*batch_queued)(struct store_tx *tx, const char *batch_id, int limit,
	                    struct lc_msg *out, size_t *n);
	/* Pause and resume (lc_batch.c): with hold, every QUEUED message of the
	 * batch not yet held gets due_at + LC_HOLD_BASE; without, every held
	 * one gets it back (never before the transaction's now). One statement
	 * over the (batch_id, status) index; *n gets how many rows moved. */
	int (*batch_hold)(struct store_tx *tx, const char *batch_id, bool hold, int64_t *n);
	/* Records a person's transition: to PAUSED (paused_at/by, pause
	 * reason), CANCELLED (cancelled_by, cancel reason) or, with resume,
	 * PROCESSING again (resumed_at/by). actor and reason may be NULL. */
	int (*batch_note)(struct store_tx *tx, const char *batch_id, enum batch_status to,
	                  bool resume, int64_t at, const char *actor, const char *reason);
	/* Deletes the batch row and its rows (batch_item). */
	int (*batch_delete)(struct store_tx *tx, const char *batch_id);
	/* Adds n accepted messages to the tenant's count for the UTC day of
	 * the transaction's clock: 0, or HR_EQUOTA naming "daily_cap" (the
	 * message says the cap and the count) when that passes the tenant's
	 * cap; the caller's run then rolls back. */
	int (*daily_take)(struct store_tx *tx, const char *tenant_id, int64_t n);
	/* What a campaign start checks, read where concurrent starts of the
	 * tenant are ordered (PostgreSQL: its tenant row locked until commit). */
	int (*start_limits)(struct store_tx *tx, const char *tenant_id, const char *batch_id,
	                    struct lc_start_limits *out);
	/* Appends an administrative action to admin_audit (at 0: now). */
	int (*audit_insert)(struct store_tx *tx, const struct audit_row *a);
	/* 1 if the message already has a stored reply, 0 if not. */
	int (*inbound_exists)(struct store_tx *tx, const char *message_id);

	/* Callbacks: stores the row when its URL is there (struct
	 * lc_callback), nothing otherwise; 0 either way, or an error. */
	int (*callback_add)(struct store_tx *tx, const struct lc_callback *c);
	/* Plugin events (lc_plugin.c): appends the row to plugin_event. */
	int (*plugin_event_add)(struct store_tx *tx, const struct lc_plugin_event *e);

	/* ---- the reconciler and fallback routing ---- */
	/* Up to limit QUEUED messages whose expires_at (> 0) is at or before
	 * now, locked for this transaction. */
	int (*msg_expired)(struct store_tx *tx, int64_t now, int limit, struct lc_msg *out,
	                   size_t *n);
	/* Up to limit SENT messages whose fallback_at (> 0) is at or before now. */
	int (*fallback_due)(struct store_tx *tx, int64_t now, int limit, struct lc_msg *out,
	                    size_t *n);
	/* The message's route JSON and callback URL as stored (each heap, NULL
	 * when absent; the caller frees both) and its business unit ("" = the
	 * tenant's own), so a follow-up belongs where the original did.
	 * HR_ENOTFOUND when no message. */
	int (*msg_route)(struct store_tx *tx, const char *id, char **route, char **callback_url,
	                 char unit[HR_NAME_MAX]);
	/* The follow-up of step `step` of the route rooted at root_id: 1 stored
	 * now, 0 when the route already has one for that step (the primary key
	 * decides, never a lookup first). */
	int (*fallback_put)(struct store_tx *tx, const char *root_id, int step,
	                    const char *message_id, const char *from_id, const char *reason);
	/* Up to limit inbox rows waiting for a retry (state INBOX_RETRY) that
	 * were received before `before`: their ids into ids[] (limit entries). */
	int (*inbox_waiting)(struct store_tx *tx, int64_t before, int limit, int64_t *ids,
	                     size_t *n);

	/* ---- plugin route changes (lifecycle.c, SEND_REROUTE) ---- */
	/* Moves the message to account/channel/recipient; content and body
	 * replace the old ones when content is non-NULL (segments with them).
	 * No status change and no event: the caller's lc_transition does both. */
	int (*msg_reroute)(struct store_tx *tx, const struct lc_msg *m, const char *account_id,
	                   const char *channel, const char *recipient, const char *content,
	                   const char *body, int segments);
};

struct store_tx {
	const struct store_tx_ops *ops;
	struct lc_acc *acc; /* set by lifecycle.c while one of its runs is on */
};

/*
 * A function run inside one backend transaction; 0 commits it (with the
 * others of its group), an HR_E* code rolls back what it wrote.
 *
 * A backend that sends writes ahead of their results may find, after an
 * item ended, that one of its writes failed. It then undoes everything the
 * function did and runs it again from the start, each item then checked
 * at its own item_end (which returns 1 if it fails again). So a function
 * with items must not carry state from one call to the next in ctx: it
 * sets what it reports, never adds to it (lc_run's counters start afresh
 * with each call).
 */
typedef int (*lc_tx_fn)(struct store_tx *tx, void *ctx);

/* What a backend gives the rules: a way to run a function in a
 * transaction. ctx (ctx_size bytes) is borrowed when cb is NULL (the call
 * blocks until committed); with cb it is copied and cb(arg, rc, err) is
 * called after the commit, as for every store write (store.h). */
struct lc_backend {
	int (*run)(struct store *st, lc_tx_fn fn, void *ctx, size_t ctx_size, store_done_fn cb,
	           void *arg, struct hr_err *err);
};

/* ---- the rules: store_ops entries every backend shares ---- */

/* The one place a message's status changes: writes u (which must set
 * LC_SET_STATUS) and the event that says why, and keeps *m current. */
int lc_transition(struct store_tx *tx, struct lc_msg *m, const struct lc_update *u,
                  const struct lc_event *ev);
/* The backend's claim statement moved these from QUEUED to SENDING. */
void lc_claimed(struct store_tx *tx, const struct message *msgs, size_t n);

int lc_claim(const struct lc_backend *b, struct store *st, const char *account_id, int64_t now,
             int64_t lease_us, int limit, struct message *out, size_t *n);
int lc_claim_async(const struct lc_backend *b, struct store *st, const char *account_id,
                   int64_t now, int64_t lease_us, int limit, struct message *out, store_claim_fn cb,
                   void *arg);
int lc_record_results(const struct lc_backend *b, struct store *st, const struct send_result *r,
                      size_t n, store_done_fn cb, void *arg);
int lc_requeue_expired(const struct lc_backend *b, struct store *st, int64_t now, int *n);
int lc_inbox_claim(const struct lc_backend *b, struct store *st, int64_t now, int64_t lease_us,
                   int limit, struct inbox_row **out, size_t *n);
int lc_apply_inbox(const struct lc_backend *b, struct store *st, const struct inbox_parsed *rows,
                   size_t n, int64_t now, struct apply_stats *stats);

/* Runs fn in one backend transaction with the batch counters it moves
 * (lc_count, lc_batch_touch) written, and finished batches completed,
 * before it commits. Every lifecycle entry point runs through this. */
int lc_run(const struct lc_backend *b, struct store *st, lc_tx_fn fn, void *ctx,
           size_t ctx_size, store_done_fn cb, void *arg, struct hr_err *err);
/* Per-item isolation with the counters kept in step: what an item undone
 * (lc_item_end(tx, false), or the backend's item_end answering 1) counted
 * is forgotten. lc_item_end returns what item_end does. */
int lc_item_begin(struct store_tx *tx);
int lc_item_end(struct store_tx *tx, bool keep);
/* Counts a message leaving status `from` (-1: new) for `to` (-1: none) in
 * the store's status counts, and for its batch (batch_id "": none) that
 * and a first reply (replied). Every message inserted or changing status
 * inside a run must pass here once: the status counts are what /metrics
 * reports (store.h message_gauges). */
void lc_count(struct store_tx *tx, const char *batch_id, int from, int to, bool replied);
/* a message of tenant_id on channel moving from `from` (-1: new)
 * to `to` (with the provider's error code, or NULL), for the daily counters
 * (store/daily.h); undone with its item. */
void lc_daily(struct store_tx *tx, const char *tenant_id, const char *channel, int from, int to,
              const char *error_code);
/* Notes for the store's observer (store.h store_observe), handed over once
 * the run commits; nothing when no observer is set. */
void lc_note_status(struct store_tx *tx, const char *message_id, const char *tenant_id, int from,
                    int to);
void lc_note_reply(struct store_tx *tx, const char *message_id, const char *tenant_id,
                   const char *text, const char *payload);

/* ---- the reconciler and fallback routing (lc_reconcile.c) ---- */
/* The recipient as channel spells it: WhatsApp digits only, SMS and RCS
 * E.164 with its '+'; other channels keep it as it is. */
void lc_route_address(const char *channel, const char *in, char out[HR_ADDR_MAX]);
/* m just moved (from -> m->status, written): a failure of a routed message
 * makes its follow-up (lc_fallback). Called by lc_transition. */
int lc_fallback_on_status(struct store_tx *tx, struct lc_msg *m, enum msg_status from,
                          const struct lc_update *u, const char *source);
/* Exactly one follow-up on the route's next step (nothing when m has no
 * next step, or when one was made already, by whoever): the new QUEUED
 * message and its "accepted" event, a "fallback" event on m naming it, and
 * m no longer waiting for its deadline. reason: "failed", "undelivered",
 * "unknown", "not_rcs_capable", "no_receipt", "stale". source: who asked.
 * 1 made now, 0 not, or an error. */
int lc_fallback(struct store_tx *tx, struct lc_msg *m, const char *reason, const char *source);
/* Counts a follow-up made by the running lc_run, published to /metrics
 * (herald_fallbacks_total) when the run's function has succeeded. reason
 * is a static string. */
#define LC_FB_REASONS 8
void lc_note_fallback(struct store_tx *tx, const char *reason);
int lc_reconcile_expire(const struct lc_backend *b, struct store *st, int64_t now, int limit,
                        int *n);
int lc_reconcile_fallback_due(const struct lc_backend *b, struct store *st, int64_t now,
                              int limit, int *n);
int lc_stale_settle(const struct lc_backend *b, struct store *st,
                    const struct stale_answer *a, size_t n, struct stale_stats *stats);
int lc_inbox_park(const struct lc_backend *b, struct store *st, int64_t received_before,
                  int limit, int *n);
/* Whether a claimed message is past its expiry: then it is moved to
 * EXPIRED (attempt given back) and returned so, never sent. 1 expired,
 * 0 not, or an error. */
int lc_claim_expired(struct store_tx *tx, struct message *m, struct lc_msg *lm, int64_t now);

/* ---- callbacks to client systems (lc_callback.c) ---- */
/* A status change of m (from -> m->status, already written): its callback,
 * if the change is one a client hears of (not the dispatcher's own QUEUED
 * <-> SENDING). */
int lc_callback_status(struct store_tx *tx, const struct lc_msg *m, enum msg_status from);
/* A reply stored now (not a replay): its callback, on the linked message
 * (message_id) or, unlinked, on the account's tenant. */
int lc_callback_inbound(struct store_tx *tx, const char *message_id, const char *account_id,
                        const struct lc_inbound *in);
/* The first id's checks every backend's callback calls share. */
int lc_callback_check_list(int state, int64_t before_id, int limit);

/* ---- plugin after-commit events (lc_plugin.c) ---- */
/* A status change of m (from -> m->status, written) or a reply linked to
 * message_id stored now: its plugin_event row, in this transaction, when
 * the tenant is in the set store_plugin_tenants_set gave (nothing
 * otherwise: one atomic load when the set is empty, a binary search when
 * not). 0, or an error (the run then rolls back). */
int lc_plugin_status(struct store_tx *tx, const struct lc_msg *m, enum msg_status from);
int lc_plugin_reply(struct store_tx *tx, const char *message_id, const char *tenant_id,
                    const char *text, const char *payload);

/* ---- campaigns (lc_batch.c): store_ops entries every backend shares ---- */
/* A closing store's entries in lc_batch.c's cache of ids that have no batch. */
void lc_batch_forget_store(const struct store *st);
int lc_batch_items_put(const struct lc_backend *b, struct store *st, const char *batch_id,
                       const struct batch_item *items, size_t n, struct hr_err *err);
int lc_batch_set_status(const struct lc_backend *b, struct store *st, const char *tenant_id,
                        const char *id, enum batch_status to, const char *error,
                        struct hr_err *err);
/* lc_batch_set_status with an audit row in the same transaction. */
int lc_batch_set_status_audit(const struct lc_backend *b, struct store *st, const char *tenant_id,
                              const char *id, enum batch_status to, const char *error,
                              const struct audit_row *a, struct hr_err *err);
int lc_batch_enqueue(const struct lc_backend *b, struct store *st, const char *batch_id,
                     const int64_t *rows, const struct message *msgs, size_t n, bool last,
                     size_t *made, struct hr_err *err);
int lc_batch_discard(const struct lc_backend *b, struct store *st, const char *tenant_id,
                     const char *id, struct hr_err *err);
int lc_batch_cancel_step(const struct lc_backend *b, struct store *st, const char *batch_id,
                         int limit, int64_t *n);
/* Claims: a claimed message of a cancelled or failed batch is cancelled
 * instead of sent (returned with status CANCELLED). The cache (start it
 * {.status = -1}) remembers the last batch looked up, as a claim's
 * messages are mostly of one batch. 0 or an error. */
struct lc_screen_cache {
	char batch_id[HR_ID_LEN + 1];
	int status; /* of batch_id; -1: none looked up */
};
int lc_batch_screen(struct store_tx *tx, struct lc_screen_cache *c, struct message *m,
                    struct lc_msg *lm);

/* The key of a suppression entry a client gives (API writes): each part
 * non-empty, fitting its field, valid UTF-8 (lists return it as JSON).
 * HR_EINVAL naming tenant_id, channel or recipient. */
int lc_check_supp_keys(const char *tenant_id, const char *channel, const char *recipient,
                       struct hr_err *err);

/* ---- suppression changes (lc_supp.c) ---- */
/* The one function that changes the suppression list: adds or removes the
 * entry and records the change in its history in the running transaction.
 * 1 when something changed, 0 when there was nothing to do (a removal of an
 * absent entry, an add with the same reason), or an error. */
int lc_supp_change(struct store_tx *tx, const struct supp_change *c);
/* store_ops.suppression_change for every backend: lc_supp_change in a
 * transaction of its own; a removal that removed nothing is HR_ENOTFOUND. */
int lc_suppression_change(const struct lc_backend *b, struct store *st, const struct supp_change *c,
                          struct hr_err *err);

/* store_ops.account_pause_set for every backend (lc_supp.c). */
int lc_account_pause_set(const struct lc_backend *b, struct store *st,
                         const struct account_pause_row *p, bool paused, const struct audit_row *a,
                         struct hr_err *err);

/* ---- message retention: the rule, once (store.h: struct msg_retention) ---- */

#define LC_RETENTION_BATCH_DEFAULT 1000
#define LC_RETENTION_BATCH_MAX 10000
#define LC_RETENTION_CHANNELS_MAX 16

/*
 * A checked msg_retention as a backend's SQL takes it. A message is
 * removable when
 *   id < before_id
 *   AND ((settled >> status) & 1 = 1
 *        OR ((settled_at_sent >> status) & 1 = 1 AND channel IN channels))
 * Backends bind these three values and repeat that predicate verbatim
 * (SQLite with json_each, PostgreSQL with jsonb_array_elements_text).
 */
struct lc_retention {
	char before_id[HR_ID_TIME_LEN + 1];                /* hr_id_time_prefix(before) */
	int64_t before;                                    /* us */
	int64_t settled;                                   /* bit s: settled on every channel */
	int64_t settled_at_sent;                           /* bit s: settled on `channels` only */
	char channels[LC_RETENTION_CHANNELS_MAX * 20 + 3]; /* JSON array of names */
	int batch;
	int max_batches; /* 0 = no limit */
};

/* Checks r and fills out; HR_EINVAL naming the field otherwise. */
int lc_retention_prepare(const struct msg_retention *r, struct lc_retention *out,
                         struct hr_err *err);

/* Inbox row states (webhook_inbox.state). */
enum {
	INBOX_NEW = 0,
	INBOX_DONE = 1,
	INBOX_RETRY = 2,
	INBOX_FAILED = 3,
	INBOX_ORPHAN = 4,
};

#endif
