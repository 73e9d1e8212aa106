/*
 * store.h - the store interface: a struct of function pointers filled by one
 * backend file (sqlite.c now, postgres.c later), like sqlite3_vfs. Nothing
 * outside src/store/ sees SQL.
 *
 * Writes go through the backend's writer, which groups many small writes
 * into one transaction (group commit). Every write function takes
 * (cb, arg): with cb == NULL it blocks until the write is committed (or
 * failed) and returns the result; with cb != NULL it returns 0 at once (or an
 * error if the write could not be queued) and later calls cb(arg, rc, err)
 * from the writer thread after the commit. Inputs are borrowed until the
 * call returns (cb == NULL) or until cb has been called. A callback must be
 * quick and must not call back into the store synchronously.
 *
 * Times (`now`) that decide leases and due rows are the database's clock:
 * callers pass 0, and a backend shared by several processes reads one clock
 * for all of them. A non-zero `now` replaces it (tests travel in time).
 *
 * Reads may run on any thread concurrently with the writer (WAL readers).
 * Read results are owned by the caller: free with the matching _clear/_free.
 */
#ifndef HR_STORE_H
#define HR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"

struct store_ops;

/* A backend embeds this as its first member; callers use st->ops->fn(st, ...). */
struct store {
	const struct store_ops *ops;
};

typedef void (*store_done_fn)(void *arg, int rc, const struct hr_err *err);
struct message;
/* An asynchronous claim's answer (claim_async): on the writer's thread. */
typedef void (*store_claim_fn)(void *arg, int rc, struct message *out, size_t n);

/*
 * The messages this process is sending (hold.c says why): the dispatcher
 * holds each message it claims until its outcome is committed, and lease
 * expiry (requeue_expired) leaves held messages alone, so a slow but live
 * process never has its own sends queued again. A hold lapses at `until`
 * (us) in any case. Thread-safe. store_hold: 0 or HR_ENOMEM (then only the
 * lease protects the message). A backend's close forgets its holds.
 */
int store_hold(const struct store *st, const char *id, int64_t until);

/*
 * What a committed lifecycle run changed, for whoever watches from outside
 * the store (plugins' on_status / on_reply hooks): one note per status
 * change of a message (from -> to; from -1 for none) or per reply linked
 * to a message (kind "reply", to -1, text and payload). Called once the
 * run's transaction committed, on the thread that saw the commit (the
 * writer's): must be quick and never call the store. Notes are borrowed
 * for the call. A run rolled back notifies nothing. One observer per
 * process; NULL clears it (set before the store is used, cleared after).
 */
struct store_note {
	const char *message_id, *tenant_id;
	const char *kind; /* "status" or "reply" */
	int from, to;
	const char *text, *payload; /* replies; NULL otherwise */
};
typedef void (*store_observer_fn)(void *arg, const struct store_note *notes, size_t n);
void store_observe(store_observer_fn fn, void *arg);
void store_unhold(const struct store *st, const char *id);
bool store_held(const struct store *st, const char *id, int64_t now);
size_t store_hold_count(const struct store *st);
void store_hold_forget(const struct store *st);

struct store_opts {
	bool sync_full;          /* synchronous=FULL (power loss) vs NORMAL (process crash) */
	int group_max;           /* max writes per group commit (default 512) */
	int queue_max;           /* max writes queued before new client writes (message_insert,
	                          * inbox_append) get HR_EBUSY; internal writes are always
	                          * queued (default 65536) */
	const char *password;    /* postgres: the resolved store.password (overrides the
	                          * url's); borrowed until open returns. NULL: none */
};

struct tenant_row {
	char id[HR_NAME_MAX];
	char name[128];
	/* The tenant's callback URL (tenants[].callback_url), used for a reply
	 * that matched no message; borrowed, NULL or "" for none. Messages carry
	 * their own (struct message.callback_url). */
	const char *callback_url;
};

/*
 * Tenancy (issue 11): tenants own business units; API keys belong to a
 * tenant and optionally one of its units, carry scopes, and are stored as
 * the SHA-256 hex of the key (the key itself is shown once, never kept).
 */
/*
 * A tenant's own limits (README "Limits"); 0 in a field means none of its
 * own: the config's default for the request rate, no cap for the caps.
 * The caps are enforced by the store, in the transactions that accept
 * messages (daily_cap) and start campaigns (campaign_cap), so they are
 * exact however many threads and nodes write at once.
 */
struct tenant_limits {
	int64_t rate_milli;   /* API requests per second x 1000 */
	int64_t burst;        /* API requests at once */
	int64_t daily_cap;    /* messages accepted per UTC day (message_insert,
	                       * batch_enqueue; fallbacks and auto-replies are not
	                       * accepted requests and do not count) */
	int64_t campaign_cap; /* campaigns PROCESSING at once */
};

struct tenant_info {
	char id[HR_NAME_MAX];
	char name[128];
	bool disabled;               /* every credential of the tenant is refused */
	int64_t created_at;
	struct tenant_limits limits;
};

/* The UTC day of a time in us (days since 1970-01-01): the day the daily
 * cap counts in, by the store's clock. */
#define STORE_DAY_US 86400000000LL
static inline int64_t store_day(int64_t us)
{
	return us >= 0 ? us / STORE_DAY_US : -((-us + STORE_DAY_US - 1) / STORE_DAY_US);
}

struct unit_row {
	char tenant_id[HR_NAME_MAX];
	char id[HR_NAME_MAX];
	char name[128];
	bool disabled;               /* keys restricted to it are refused */
	int64_t created_at;
};

struct key_row {
	char hash[65];               /* sha256 hex of the key */
	char prefix[24];             /* the visible identifier ("hk_" + 8 chars) */
	char tenant_id[HR_NAME_MAX];
	char unit_id[HR_NAME_MAX];   /* "" = tenant-wide */
	char label[128];
	char scopes[256];            /* space-separated names; "*" = every scope */
	char created_by[96];         /* the actor that made it ("config" for seeded keys) */
	int64_t created_at;
	int64_t expires_at;          /* us; 0 = never */
	int64_t revoked_at;          /* us; 0 = live */
	int64_t last_used_at;        /* us; 0 = never (updated at most once a minute) */
	bool api_created;            /* made through the admin API (config pruning skips it) */
	/* Read by key_lookup only: the owners' state at the time of the read. */
	bool tenant_disabled, unit_disabled;
};

/* One administrative action. before/after are JSON object texts (heap on
 * reads, borrowed on writes), NULL for none. */
struct audit_row {
	int64_t id;
	char tenant_id[HR_NAME_MAX]; /* the tenant the object belongs to */
	char actor[96];              /* "key:<prefix>", "jwt:<sub>", "operator:<prefix>" */
	int64_t at;                  /* us; 0 on writes = now */
	char action[48];             /* "key.create", "unit.disable", "batch.cancel", ... */
	char object[160];            /* what it acted on ("key:hk_abcd1234", "unit:cards") */
	char *before, *after;
};
void audit_row_clear(struct audit_row *a);

struct account_row {
	char id[HR_NAME_MAX];        /* globally unique; appears in webhook URLs */
	char tenant_id[HR_NAME_MAX];
	char channel[16];            /* "whatsapp", ... */
	char *config;                /* JSON object text (secrets as references), heap */
	bool api_created;            /* a tenant made it through the API: restricted */
	char unit_id[HR_NAME_MAX];   /* owning business unit; "" = the tenant's, shared */
};
void account_row_clear(struct account_row *a);

struct template_row {
	char tenant_id[HR_NAME_MAX];
	char channel[16];
	char name[HR_NAME_MAX];
	char language[16];
	char *body;                  /* "Hi {{1}}, ..." heap */
	int param_count;
	/* JSON object text or NULL, heap: what else the template declares,
	 * {"header":{"type":"text"|"image"|"document","params":N},
	 *  "buttons":[{"type":"quick_reply"|"url","params":N},...],
	 *  "regulatory":{...provider fields carried with every send, e.g. India's
	 *                DLT "dlt_entity_id","dlt_template_id"...}} */
	char *config;
	char unit_id[HR_NAME_MAX];   /* owning business unit; "" = the tenant's, shared */
};
void template_row_clear(struct template_row *t);

/* A template's key, the cursor of template_list. */
struct template_key {
	char channel[16];
	char name[HR_NAME_MAX];
	char language[16];
};

/* How many templates one tenant may have (template_put: HR_ELIMIT beyond). */
#define STORE_TEMPLATES_MAX 5000

struct idem_row {
	char request_hash[65];       /* sha256 hex of the canonical request */
	int http_status;
	char *response;              /* response body JSON, heap */
};
void idem_row_clear(struct idem_row *r);

/* Idempotency record written in the same transaction as the messages. */
struct idem_put {
	const char *tenant_id;
	const char *key;
	const char *request_hash;
	int http_status;
	const char *response;
	/* The key as the client sent it (key may carry a unit prefix): written
	 * to each message's idem_key, which message_list's idem_key filter
	 * finds. NULL: none. */
	const char *client_key;
};

struct msg_filter {
	int status;                  /* -1 = any */
	const char *channel;         /* NULL = any */
	const char *recipient;       /* NULL = any */
	const char *batch_id;        /* NULL = any */
	int64_t since_us;            /* 0 = unbounded; created_at >= since */
	int64_t until_us;            /* 0 = unbounded; created_at < until  */
	const char *before_id;       /* cursor: ids strictly less; NULL = start */
	const char *unit;            /* NULL = any; "" is not a filter */
	int limit;                   /* 1..1000 */
	/* Search (GET /v1/messages); each NULL = any, all exact. */
	const char *id;              /* Herald's message id */
	const char *provider_id;     /* the provider's message id, any account */
	const char *idem_key;        /* the Idempotency-Key it was accepted with */
	const char *account_id;      /* the sender account (global id) */
	const char *error_code;      /* the error code kept on the message */
	/* Other forms of recipient that match too (a phone number is stored
	 * "+447911123456" on SMS and RCS, "447911123456" on WhatsApp): with
	 * recipient set, recipient IN (recipient, alt[0], alt[1]); NULLs are
	 * ignored. */
	const char *recipient_alt[2];
};

/* Outcome of one send attempt, recorded by the dispatcher. */
enum send_kind {
	SEND_OK = 0,     /* provider accepted: status SENT, provider_id set */
	SEND_RETRY = 1,  /* transient or rate limited: back to QUEUED at due_at */
	SEND_FAILED = 2, /* permanent: status FAILED with the provider's error */
	/* The request was written and no answer came (timeout, connection
	 * lost), and it may not be sent again (at_most_once, or its attempts
	 * are spent): status UNKNOWN, never sent again by itself; a later
	 * receipt settles it. provider_id, when given, is the id the sender
	 * chose (RBM's messageId), so such a receipt finds the message. */
	SEND_UNKNOWN = 3,
	/* A plugin's before_send hook skipped it (plugins/plugins.h): status
	 * CANCELLED with error_code/error_text saying which plugin and why,
	 * event "skipped"; never sent. */
	SEND_SKIPPED = 4,
	/* A plugin's before_send moved it to another of its tenant's accounts
	 * (route_account/route_channel, route_text; the recipient as the new
	 * channel spells it): nothing
	 * was sent. It goes back to QUEUED on the new account, due now, its
	 * attempt given back, error_code "plugin_rerouted" with error_text
	 * "plugin <name>: <reason>", event "rerouted" naming both routes. The
	 * store checks the account is the message's tenant's and on
	 * route_channel; if not, the message is queued again as it was, error
	 * code "plugin_route_refused", event "route_refused". */
	SEND_REROUTE = 5,
	/* No change: an audit event only (route_note_type, e.g.
	 * "route_refused", error_code/error_text and the route_* fields that
	 * were asked for). The message is not unheld and sync waiters keep
	 * waiting: its send goes on. */
	SEND_NOTE = 6,
};

struct send_result {
	char message_id[HR_ID_LEN + 1];
	int attempt;                 /* the claim's attempt number: a result applies only
	                              * while the message is still SENDING with this
	                              * attempt (a late answer to an attempt whose lease
	                              * expired is recorded as ignored) */
	enum send_kind kind;
	int64_t due_at;              /* SEND_RETRY: next attempt time (us) */
	/* SEND_RETRY with a new address: the recipient moved (a Telegram group
	 * migrated to a supergroup). The message's recipient becomes this, the
	 * account remembers old -> new (claims map the old address from then
	 * on) and a "recipient_migrated" event is recorded. "" otherwise. */
	char new_recipient[HR_ADDR_MAX];
	/* The provider says the recipient opted out (Twilio 21610): add them to
	 * the tenant's suppression list for this channel, reason = error. */
	bool suppress;
	int http_status;             /* 0 if no HTTP answer (network error) */
	int64_t latency_us;
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	const char *error_class;     /* "transient", "rate_limited", "permanent" or NULL */
	/* SEND_UNKNOWN, or SEND_RETRY of a request that may have reached the
	 * provider (at_least_once: a possible duplicate, marked in the audit
	 * trail): why the outcome is unknown ("timeout_after_write",
	 * "connection_lost_after_write"); NULL otherwise. Static string. */
	const char *unknown_reason;
	/* A rate-limited outcome's scope ("account", "recipient"), else NULL.
	 * Static string. */
	const char *rate_scope;
	/* SEND_REROUTE / SEND_NOTE: the route a plugin asked for. route_text,
	 * heap and owned by the result (send_result_clear frees it), is the
	 * message's text on a new channel (content {"type":"text"}); NULL
	 * keeps its content (same channel). */
	char route_account[HR_NAME_MAX];
	char route_channel[16];
	char *route_text;
	const char *note_type; /* SEND_NOTE: the event's type, static */
};
/* Frees what a result owns (route_text); the struct itself is the caller's. */
void send_result_clear(struct send_result *r);

/* A raw webhook as received and verified by the ingress. */
struct inbox_row {
	int64_t id;
	char account_id[HR_NAME_MAX];
	char channel[16];
	char dedupe_key[128];        /* provider's idempotency token, "" if none */
	int64_t received_at;
	int attempts;                /* times the applier already tried it */
	char *body;                  /* raw bytes (NUL-terminated), heap */
	size_t body_len;
	char error[256];             /* inbox_parked: why it waited; "" elsewhere */
};
void inbox_row_clear(struct inbox_row *r);

/* A status reported by a provider webhook, parsed by the channel adapter. */
struct wh_status {
	char provider_id[HR_PROVIDER_ID_MAX];
	enum msg_status status;
	int64_t provider_at;         /* us, 0 if unknown */
	char provider_ts[40];        /* as given by the provider */
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	/* The message id Herald sent with the request and the provider echoes
	 * back (WhatsApp's biz_opaque_callback_data), "" if none: how a status
	 * finds a message whose send answer never came (UNKNOWN, no provider
	 * id stored yet). */
	char client_ref[HR_ID_LEN + 1];
};

/* A customer reply or button press, parsed by the channel adapter. */
struct wh_inbound {
	char provider_msg_id[HR_PROVIDER_ID_MAX]; /* the inbound message's own id */
	/* +1: an opt-out keyword (STOP...): add `from` to the tenant's suppression
	 * list for this channel; -1: opt back in (START...): remove it; 0: none. */
	int optout;
	/* Text to send back to `from` from the same account (HELP answers), heap
	 * or NULL. The store queues it as a new message in the same transaction,
	 * only when this inbound is new (a replayed webhook answers nothing). */
	char *auto_reply;
	char context_id[HR_PROVIDER_ID_MAX];      /* provider id of the message replied to, "" if none */
	char from[HR_ADDR_MAX];
	char kind[16];                /* "text", "button", "interactive" */
	char *text;                   /* heap, may be NULL */
	char *payload;                /* button payload/id, heap, may be NULL */
	int64_t provider_at;
};
void wh_inbound_clear(struct wh_inbound *in);

/* What the applier parsed out of one inbox row. */
struct inbox_parsed {
	int64_t inbox_id;
	const char *account_id;       /* borrowed */
	bool malformed;               /* adapter could not parse: mark row failed */
	char error[256];
	struct wh_status *statuses;   /* borrowed arrays */
	size_t nstatuses;
	struct wh_inbound *inbound;
	size_t ninbound;
};

struct suppression_row {
	char tenant_id[HR_NAME_MAX];
	char channel[16];
	char recipient[HR_ADDR_MAX];
	char reason[256];            /* "inbound STOP", "twilio 21610: ..." */
	int64_t created_at;
};

/* ---- recipient history ---- */
struct daily_ent; /* store/daily.h: the daily counters */
/*
 * One change of a suppression entry, as a writer asks for it: added (or
 * its reason replaced) or removed, with what caused it. Every change of the
 * suppression list goes through lc_supp_change (lifecycle.c), which also
 * records it in the list's history (struct supp_event_row).
 */
struct supp_change {
	const char *tenant_id, *channel, *recipient;
	bool remove;
	const char *reason;     /* why it was added; NULL or "" for a removal */
	const char *message_id; /* the message that caused it, NULL for none */
	const char *actor;      /* "key:hk_...", "webhook", "provider" */
};

/* One line of a recipient's opt-out history, newest first when listed. */
struct supp_event_row {
	int64_t id;
	char channel[16];
	char recipient[HR_ADDR_MAX];
	char action[12]; /* "added", "updated", "removed" */
	char reason[256];
	char message_id[HR_ID_LEN + 1]; /* "" when no message caused it */
	char actor[96];
	int64_t at;
};

/* An account an operator paused: the dispatcher claims nothing
 * for it until it is resumed; its messages stay queued. */
struct account_pause_row {
	char account_id[HR_NAME_MAX]; /* the global id */
	char tenant_id[HR_NAME_MAX];
	char reason[256];
	char actor[96];
	int64_t at;
};

/* A customer's reply as stored (store_ops.recipient_inbound). */
struct inbound_row {
	int64_t id;
	char account_id[HR_NAME_MAX];
	char message_id[HR_ID_LEN + 1]; /* the message it answers, "" if none */
	char unit[HR_NAME_MAX];         /* that message's unit, "" if none */
	char sender[HR_ADDR_MAX];
	char kind[16];
	char *text, *payload; /* heap, may be NULL */
	int64_t provider_at, received_at;
};
void inbound_row_clear(struct inbound_row *r);

/* Per-call figures from apply_inbox. */
struct apply_stats {
	int applied;                  /* status changes made */
	int ignored;                  /* stale or duplicate, recorded as ignored */
	int unmatched;                /* provider id not (yet) known: row retried later */
	int inbound;                  /* replies recorded */
	int malformed;
};

/*
 * A campaign (batch). Counters are kept by the store in the same
 * transaction as every change that moves them (lifecycle.c), never
 * recomputed: by_status[s] is how many of the batch's messages are in
 * status s now (their sum is how many messages the batch has); total, valid,
 * invalid and duplicates are the upload's rows as validated; replied counts
 * messages with at least one reply.
 */
struct batch {
	char id[HR_ID_LEN + 1];
	char tenant_id[HR_NAME_MAX];
	char unit[HR_NAME_MAX];      /* business unit label, "" for none */
	char name[128];
	char channel[16];
	char account_id[HR_NAME_MAX];
	char template_name[HR_NAME_MAX]; /* "" when rows carry their own text */
	char language[16];
	bool receipts;               /* the channel reports delivery (batch_msg_settled) */
	char *spec;                  /* JSON: mapping, source file, options; heap, may be NULL */
	enum batch_status status;
	char error[256];             /* why FAILED, "" otherwise */
	char retry_of[HR_ID_LEN + 1]; /* the batch this one re-sends rows of, "" if none */
	bool ingested;               /* every valid row has its message */
	int64_t schedule_at;         /* 0: at once */
	int64_t created_at, validated_at, started_at, completed_at, cancelled_at, failed_at;
	/* The latest pause and resume (a batch may pause several times; the
	 * admin audit log keeps each): when, who (the audit actor), why. */
	int64_t paused_at, resumed_at;
	char paused_by[96], resumed_by[96], cancelled_by[96];
	char pause_reason[256], cancel_reason[256]; /* "" when none given */
	int64_t total, valid, invalid, duplicates, replied;
	int64_t by_status[MSG__COUNT];
};
void batch_clear(struct batch *b);

/* One row of an upload as validated: the recipient record. */
struct batch_item {
	int64_t row;                 /* row number in the file (1 = first data row) */
	char recipient[HR_ADDR_MAX]; /* normalised (E.164, chat id); "" if unusable */
	char *params;                /* JSON object of template parameters, heap, may be NULL */
	bool valid;
	bool duplicate;              /* valid, but a later copy of an earlier row's recipient */
	char error_column[64];       /* for an invalid row: the column (header) at fault */
	char error[256];             /* for an invalid row: why */
	char message_id[HR_ID_LEN + 1]; /* once queued, "" before */
};
void batch_item_clear(struct batch_item *it);

/*
 * One row of a campaign export (batch_export_rows): the uploaded row as
 * validated, and the outcome of its message. has_message is false for a row
 * that never had a message (invalid, duplicate, not yet queued) and for one
 * whose message retention has removed; the message fields are then empty.
 * Times are Herald's clock when it recorded the event (message_event.at, not
 * the provider's own timestamp), 0 when it never happened: sent_at the first
 * "sent" event; delivered_at / read_at the first applied "webhook_status"
 * event to DELIVERED / READ (a READ that implied DELIVERED records both).
 * The reply is the latest inbound message linked to this message.
 */
struct batch_export_row {
	struct batch_item item;
	bool has_message;
	enum msg_status status;
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	int64_t created_at, updated_at;
	int64_t sent_at, delivered_at, read_at;
	char reply_kind[16];   /* "text", "button", ...; "" when no reply */
	char *reply_text;      /* heap, may be NULL */
	char *reply_payload;   /* heap, may be NULL (a button's payload) */
	int64_t replied_at;    /* the reply's received_at, 0 when none */
};
void batch_export_row_clear(struct batch_export_row *r);

/* One line of a campaign's breakdown (batch_breakdown). */
#define BATCH_TALLY_MAX 50
struct batch_tally {
	char key[HR_ERRCODE_MAX]; /* failures: the provider's error code ("" none);
	                           * replies: the kind ("text", "button", ...) */
	char detail[128];         /* failures: one of its error texts; replies: the
	                           * button's payload ("" for a text) */
	int64_t count;
};

struct batch_filter {
	int status;                  /* -1 = any */
	const char *unit;            /* NULL = any */
	const char *name_like;       /* substring of the name, NULL = any */
	int64_t since_us, until_us;  /* created_at range, 0 = unbounded */
	const char *before_id;       /* cursor: ids strictly less; NULL = start */
	int limit;                   /* 1..1000 */
	/* Internal scans (the campaign runner, with tenant_id NULL = every
	 * tenant): processing batches not yet ingested; batches with queued
	 * messages. */
	bool not_ingested;
	bool has_queued;
	const char *retry_of;        /* batches made by a retry of this one; NULL = any */
};

/* Which rows batch_items returns. */
enum batch_items_which {
	BATCH_ITEMS_ALL = 0,
	BATCH_ITEMS_INVALID = 1,     /* the validation report */
	BATCH_ITEMS_PENDING = 2,     /* valid, not a duplicate, no message yet */
};

/*
 * Message retention (store.message_retention_days): what message_prune
 * removes and how much per call. The rule, the same on every backend
 * (lifecycle.c, lc_retention_prepare): a message goes, with its whole audit
 * trail, when its id was made before `before` (an id's first characters are
 * its creation time; created_at for every message Herald made) and its
 * status is settled (msg_status_settled: final, or DELIVERED). A message
 * that is queued (scheduled ones too), sending, unknown, or SENT on a
 * channel with receipts stays whatever its age.
 */
struct msg_retention {
	int64_t before; /* us, UTC; > 0 */
	/* The channels without delivery receipts (channel_ops.has_receipts
	 * false: "telegram"), whose messages are final at SENT; names
	 * borrowed, at most 16, each [a-z0-9_-]{1,15}. */
	const char *const *final_at_sent;
	size_t nfinal_at_sent;
	int batch;       /* messages per transaction, 1..10000; 0 = 1000 */
	int max_batches; /* row-delete transactions per call; 0 = until none is left */
};

struct msg_retention_stats {
	int64_t messages; /* messages removed (row deletes and dropped months) */
	int64_t events;   /* their audit events removed */
	int months;       /* postgres: months whose partitions were dropped */
	int batches;      /* row-delete transactions that removed something */
	bool more;        /* stopped early (max_batches, a month's drop deferred) */
	bool skipped;     /* postgres: another runner held the retention lock */
};

/*
 * Callbacks to client systems: the durable outbox (callback_outbox). A row
 * is written in the same transaction as the change it reports
 * (lifecycle.c: every status change of a message that has a callback URL,
 * every reply), so a committed change always has its callback and a
 * rolled-back one never does. The sender (webhooks/callbacks.c) claims due
 * rows, POSTs them and records the outcome.
 *
 * Order per message: a row is claimable only while no earlier row of the
 * same message is still pending (CB_PENDING, in flight or waiting for a
 * retry), so a later event is never sent before an earlier one was
 * delivered or dead-lettered. Replies that matched no message have no
 * message and no order.
 */
enum callback_state {
	CB_PENDING = 0,   /* waiting to be sent, in flight, or waiting for a retry */
	CB_DELIVERED = 1, /* the receiver answered 2xx */
	CB_DEAD = 2,      /* given up after the attempt limit or age (replayable) */
	CB__COUNT
};
const char *callback_state_name(int state); /* "pending", "delivered", "dead" */
int callback_state_parse(const char *s);    /* the state, or -1 */

struct callback_row {
	int64_t id;
	char tenant_id[HR_NAME_MAX];
	char message_id[HR_ID_LEN + 1]; /* "" for a reply that matched no message */
	char batch_id[HR_ID_LEN + 1];   /* "" when none */
	char event[24];                 /* "message.status", "message.inbound" */
	int status, prev_status;        /* msg_status, -1 for none */
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	char *detail;                   /* JSON object text (a reply's content), heap, may be NULL */
	char *url;                      /* heap */
	int64_t occurred_at;            /* us, when the change was committed */
	enum callback_state state;
	int attempts;                   /* sends started (a claim counts one) */
	int64_t next_try_at, lease_until, delivered_at, updated_at;
	int last_http;                  /* the receiver's last HTTP status, 0 for none */
	char last_error[256];           /* why the last attempt failed, "" if none */
};
void callback_row_clear(struct callback_row *r);

/* What became of one claimed row (callback_done). */
struct callback_outcome {
	int64_t id;
	int attempt;                 /* the row's attempts at its claim: applies only while
	                              * still pending with this count (a stale answer to an
	                              * expired lease changes nothing) */
	enum callback_state state;   /* DELIVERED, PENDING (retry at next_try_at) or DEAD */
	int64_t next_try_at;
	int http_status;             /* 0 for no answer */
	char error[256];             /* "" when delivered */
};

/*
 * Plugin after-commit events (issue 13): the durable outbox of the
 * business-unit plugins' on_status / on_reply hooks (plugin_event). A row
 * is written in the same transaction as the status change or reply it
 * reports (lc_plugin.c), only for tenants in the set given here, so a
 * committed change always has its event and a rolled-back one never does.
 * The deliverer (plugins/events.c) reads pending rows oldest first, hands
 * them to the plugin pool and deletes them once the hook returned (done:
 * success, error or timeout alike); a crash before that delivers them
 * again (at least once). Ids grow in commit order per message (a message's
 * changes are ordered by its row lock), so reading in id order keeps each
 * message's events in order.
 */
enum plugin_event_kind { PLUGIN_EV_STATUS = 0, PLUGIN_EV_REPLY = 1 };
#define PLUGIN_EV_TEXT_MAX 16384 /* a reply's text and payload are cut here */
#define PLUGIN_EV_READ_MAX 10000 /* plugin_event_read's limit at most */
struct plugin_event_row {
	int64_t id;
	char tenant_id[HR_NAME_MAX];
	char message_id[HR_ID_LEN + 1];
	int kind;                /* enum plugin_event_kind */
	int prev_status, status; /* msg_status, -1 for none (replies) */
	char *text, *payload;    /* replies, heap, may be NULL */
	int64_t created_at;      /* us */
};
void plugin_event_row_clear(struct plugin_event_row *r);
/* Which tenants get events: those with a plugin whose on_status (status)
 * or on_reply (reply) hook is bound to one of their units. Process-wide,
 * replacing the set before (n 0: none, the default). Call it before the
 * store is used and again only while no write runs (the server calls it
 * at start, once plugins are loaded). Tenant ids are copied. 0 or
 * HR_ENOMEM (the set is then empty). */
struct store_plugin_tenant {
	const char *tenant_id;
	bool status, reply;
};
int store_plugin_tenants_set(const struct store_plugin_tenant *t, size_t n);

/*
 * The reconciler's view of a SENT message that got no receipt in time
 * (stale): what the provider said when asked (a lookup), or that it cannot
 * be asked. stale_settle applies it.
 */
struct stale_answer {
	char message_id[HR_ID_LEN + 1];
	bool answered;               /* the provider told its status */
	enum msg_status status;      /* when answered: as a webhook would report it */
	char provider_status[32];    /* the provider's own word ("delivered"), "" if none */
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	char lookup_error[256];      /* why a lookup gave no answer, "" when none was tried */
};

struct stale_stats {
	int applied;                 /* an answer moved the message (by precedence) */
	int marked;                  /* still SENT: marked stale (audit + metrics) */
	int fallbacks;               /* follow-ups made because of it */
	int skipped;                 /* no longer SENT, or already settled: nothing done */
};

struct store_ops {
	const char *name;            /* "sqlite", "postgres" */

	/* dsn: for sqlite, a file path; for postgres, a libpq conninfo or URI.
	 * Applies migrations and starts the writer. */
	int (*open)(const char *dsn, const struct store_opts *opts, struct store **out,
	            struct hr_err *err);
	/* Drains queued writes, stops the writer, closes everything. NULL is fine. */
	void (*close)(struct store *st);
	/* Applies pending numbered migrations; *applied gets how many. Idempotent. */
	int (*migrate)(struct store *st, int *applied, struct hr_err *err);

	/* ---- configuration (synced from the config file at start) ---- */
	int (*tenant_upsert)(struct store *st, const struct tenant_row *t, struct hr_err *err);
	/* key_hash: sha256 hex of the API key. */
	int (*api_key_put)(struct store *st, const char *tenant_id, const char *key_hash,
	                   const char *label, struct hr_err *err);
	/* HR_ENOTFOUND if no such key. */
	int (*api_key_lookup)(struct store *st, const char *key_hash,
	                      char tenant_id[HR_NAME_MAX]);
	/* Revocation: deletes the tenant's API keys whose hash is not one of
	 * keep_hashes[0..n) (n = 0: all of them), in one transaction. */
	int (*api_key_prune)(struct store *st, const char *tenant_id,
	                     const char *const *keep_hashes, size_t n, struct hr_err *err);

	/* ---- tenancy: tenants, units, keys, the admin audit log ----
	 * Every administrative write takes an optional audit row, written in
	 * the same transaction as the change (both or neither). */
	/* HR_ECONFLICT naming "id" if the tenant exists. */
	int (*tenant_create)(struct store *st, const struct tenant_info *t, const struct audit_row *a,
	                     struct hr_err *err);
	/* HR_ENOTFOUND if absent. */
	int (*tenant_get)(struct store *st, const char *id, struct tenant_info *out);
	int (*tenant_list)(struct store *st, struct tenant_info **out, size_t *n);
	int (*tenant_set_disabled)(struct store *st, const char *id, bool disabled,
	                           const struct audit_row *a, struct hr_err *err);
	/* Replaces the tenant's limits (0 fields: none of its own); HR_ENOTFOUND
	 * naming "id" if no such tenant, HR_EINVAL naming a negative field. */
	int (*tenant_set_limits)(struct store *st, const char *id, const struct tenant_limits *l,
	                         const struct audit_row *a, struct hr_err *err);
	/* Messages accepted for the tenant on UTC day `day` (store_day): the
	 * counter the daily cap checks, 0 when none. */
	int (*tenant_usage)(struct store *st, const char *tenant_id, int64_t day, int64_t *count);
	/* HR_ENOTFOUND naming "tenant" if the tenant does not exist; with
	 * if_absent an existing unit is left as it is (config seeding), else
	 * HR_ECONFLICT naming "id". */
	int (*unit_create)(struct store *st, const struct unit_row *u, bool if_absent,
	                   const struct audit_row *a, struct hr_err *err);
	int (*unit_get)(struct store *st, const char *tenant_id, const char *id, struct unit_row *out);
	int (*unit_list)(struct store *st, const char *tenant_id, struct unit_row **out, size_t *n);
	int (*unit_set_disabled)(struct store *st, const char *tenant_id, const char *id,
	                         bool disabled, const struct audit_row *a, struct hr_err *err);
	/* A config-seeded key (api_created false): inserted, or its tenant,
	 * unit, label and scopes updated; revocation and last use are kept. */
	int (*key_seed)(struct store *st, const struct key_row *k, struct hr_err *err);
	/* A new key (api_created, hash and prefix unique: HR_ECONFLICT). */
	int (*key_create)(struct store *st, const struct key_row *k, const struct audit_row *a,
	                  struct hr_err *err);
	/* The key with this hash, with its tenant's and unit's disabled flags;
	 * HR_ENOTFOUND if none (revoked and expired keys are returned: the
	 * caller says why it refuses them). */
	int (*key_lookup)(struct store *st, const char *hash, struct key_row *out);
	/* The tenant's keys (NULL: every tenant's), newest first. */
	int (*key_list)(struct store *st, const char *tenant_id, struct key_row **out, size_t *n);
	/* Revokes the key with this prefix (of tenant_id; NULL: any tenant) at
	 * the database's clock; HR_ENOTFOUND if none is live. *hash (may be
	 * NULL) gets its hash, for the caller's cache. */
	int (*key_revoke)(struct store *st, const char *tenant_id, const char *prefix,
	                  const struct audit_row *a, char hash[65], struct hr_err *err);
	/* Records a use of the key (last_used_at = at, if later). Asynchronous
	 * with cb (the request path never waits on it). */
	int (*key_touch)(struct store *st, const char *hash, int64_t at, store_done_fn cb, void *arg);
	int (*audit_append)(struct store *st, const struct audit_row *a, struct hr_err *err);
	/* Newest first, ids below before_id (0: from the newest), at most limit
	 * (1..1000); tenant_id NULL = every tenant. */
	int (*audit_list)(struct store *st, const char *tenant_id, int64_t before_id, int limit,
	                  struct audit_row **out, size_t *n);
	int (*account_upsert)(struct store *st, const struct account_row *a, struct hr_err *err);
	/* All accounts (tenant_id NULL) or one tenant's. *out is a heap array. */
	int (*account_list)(struct store *st, const char *tenant_id, struct account_row **out,
	                    size_t *n);
	/* Config seeding: inserted or updated (body, params, config), keeping
	 * the unit of a template that exists. */
	int (*template_upsert)(struct store *st, const struct template_row *t, struct hr_err *err);
	/* HR_ENOTFOUND if the tenant has no such template for channel+language.
	 * out->unit_id is its unit ("" = shared). */
	int (*template_get)(struct store *st, const char *tenant_id, const char *channel,
	                    const char *name, const char *language, struct template_row *out);
	/*
	 * The API's write of a template, with its audit row (may be NULL) in the
	 * same transaction: both or neither. t->unit_id is the writer's unit
	 * ("" = a tenant-wide writer). A new template belongs to that unit; an
	 * existing one keeps its unit, and a unit may only change its own
	 * (HR_ECONFLICT naming "name" for the tenant's shared template or a
	 * sibling's; nothing written). A new template past STORE_TEMPLATES_MAX
	 * of the tenant is HR_ELIMIT. *created (may be NULL): inserted, not
	 * updated. HR_EINVAL (field named) for a missing key part or a config
	 * that is not a JSON object.
	 */
	int (*template_put)(struct store *st, const struct template_row *t, const struct audit_row *a,
	                    bool *created, struct hr_err *err);
	/* Removes the tenant's template with its audit row (may be NULL) in one
	 * transaction; unit non-NULL and non-empty: only if it belongs to that
	 * unit. HR_ENOTFOUND if there is none (nothing written). */
	int (*template_delete)(struct store *st, const char *tenant_id, const char *channel,
	                       const char *name, const char *language, const char *unit,
	                       const struct audit_row *a, struct hr_err *err);
	/* The tenant's templates by (channel, name, language), those after
	 * `after` (NULL: from the first), at most limit (1..1000, else
	 * HR_EINVAL); unit non-NULL: that unit's and the shared ones only.
	 * *more if another page exists. *out heap array (template_row_clear
	 * each). */
	int (*template_list)(struct store *st, const char *tenant_id, const char *unit,
	                     const struct template_key *after, int limit, struct template_row **out,
	                     size_t *n, bool *more);
	/* account_upsert with an audit row (may be NULL) in the same
	 * transaction: both or neither. */
	int (*account_put)(struct store *st, const struct account_row *a, const struct audit_row *au,
	                   struct hr_err *err);

	/* ---- messages ---- */
	/*
	 * Inserts n messages (status QUEUED) and an "accepted" event for each, plus
	 * the idempotency record if idem != NULL, in one durable transaction.
	 * HR_ECONFLICT if idem's (tenant, key) already exists (nothing written).
	 * Each message counts against its tenant's daily cap in the same
	 * transaction (tenant_usage, by the store's clock): HR_EQUOTA naming
	 * "daily_cap" if the messages would take the day's count past it
	 * (nothing written; the cap is all or nothing per call).
	 */
	int (*message_insert)(struct store *st, const struct message *msgs, size_t n,
	                      const struct idem_put *idem, store_done_fn cb, void *arg);
	/* tenant_id NULL = any tenant (internal use). HR_ENOTFOUND if absent. */
	int (*message_get)(struct store *st, const char *tenant_id, const char *id,
	                   struct message *out);
	/* Same, by the provider's message id (e.g. a wamid) on one channel account:
	 * provider ids are unique only within an account (Telegram's are per chat). */
	int (*message_get_by_provider_id)(struct store *st, const char *account_id,
	                                  const char *provider_id, struct message *out);
	/* The audit trail in order. *out is a heap array of n events. */
	int (*message_events)(struct store *st, const char *message_id,
	                      struct message_event **out, size_t *n);
	/* Newest first. *out heap array; *more set if another page exists. */
	int (*message_list)(struct store *st, const char *tenant_id, const struct msg_filter *f,
	                    struct message **out, size_t *n, bool *more);
	/* Counts per status (counts[MSG__COUNT]); tenant_id NULL = all. A
	 * scan of the message table: for tests, tools and recounts, never per
	 * scrape (message_gauges is). */
	int (*message_counts)(struct store *st, const char *tenant_id, int64_t counts[MSG__COUNT]);
	/* The same numbers for all tenants, kept as messages change: the
	 * message_status_count table, moved in the transaction of every insert,
	 * status change and deletion (lc_batch.c for lifecycle runs, the
	 * accept and retention paths of each backend). A read of a handful of
	 * rows whatever the table holds; /metrics reads it on each scrape. */
	int (*message_gauges)(struct store *st, int64_t counts[MSG__COUNT]);

	/*
	 * Claims up to limit QUEUED messages of one account with due_at <= now,
	 * lowest priority value first, then oldest: sets SENDING, attempts += 1,
	 * lease_until = now + lease_us. Claimed messages are returned in out[]
	 * (caller allocates limit entries, message_clear()s each). Goes through
	 * the writer (a claim is a write) and waits for it; claim_async below
	 * does not (the dispatcher uses that one).
	 * A claimed message whose recipient is on the tenant's suppression list
	 * for its channel becomes SUPPRESSED with an event "suppressed" (detail:
	 * the reason) in the same transaction and is returned with status
	 * MSG_SUPPRESSED, error_code "suppressed" and the reason as error_text:
	 * the caller must not send it (the dispatcher answers sync waiters). A recipient
	 * the account has an alias for (see send_result.new_recipient) is
	 * rewritten to the new address (event "recipient_migrated").
	 */
	int (*claim)(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
	             int limit, struct message *out, size_t *n);
	/*
	 * The same claim without waiting for it: queued on the writer and
	 * answered by cb on the writer's thread once its transaction ended,
	 * with rc 0 and the claimed rows in out[0..n) in claim order (the
	 * caller's from then on: it message_clear()s each), or with rc an
	 * HR_E* code and n 0 (rolled back: nothing was claimed). out (limit
	 * zeroed entries) must live until cb. Returns 0 when queued (cb then
	 * comes exactly once), else an HR_E* code and cb never comes. cb must
	 * not call the store: it runs between the writer's transactions.
	 */
	int (*claim_async)(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
	                   int limit, struct message *out, store_claim_fn cb, void *arg);
	/*
	 * Records n send outcomes, each with an audit event, in one transaction;
	 * each outcome in its own savepoint, so one that fails (unknown message
	 * id, ...) is skipped and logged without costing the others. An outcome
	 * applies only while its message is SENDING with attempts == r.attempt;
	 * otherwise (a late answer to an expired lease) it is recorded as ignored
	 * ("stale_attempt") and changes nothing but a missing provider_id.
	 */
	int (*record_results)(struct store *st, const struct send_result *r, size_t n,
	                      store_done_fn cb, void *arg);
	/* SENDING messages whose lease ended before now go back to QUEUED, or to
	 * UNKNOWN when their policy is at_most_once (the request may have gone
	 * out before the process holding it stopped) or once attempts >=
	 * max_attempts (0 = 8), each with a "lease_expired" event. *n gets how
	 * many. */
	int (*requeue_expired)(struct store *st, int64_t now, int *n);
	/* Earliest due_at among QUEUED messages of the account, or 0 if none. */
	int (*next_due)(struct store *st, const char *account_id, int64_t *due_at);

	/* ---- suppression (opt-outs), per tenant and channel ---- */
	/* Upsert: an entry already there takes the new reason and keeps its
	 * created_at. Client writes: HR_EBUSY when the write queue is full;
	 * HR_EINVAL (field named) for an empty or oversized key part. */
	int (*suppression_put)(struct store *st, const char *tenant_id, const char *channel,
	                       const char *recipient, const char *reason, struct hr_err *err);
	/* HR_ENOTFOUND if the recipient was not suppressed. */
	int (*suppression_delete)(struct store *st, const char *tenant_id, const char *channel,
	                          const char *recipient, struct hr_err *err);
	/* Rows as a heap array, by channel then recipient; channel NULL = all
	 * channels. tenant_id is required. */
	int (*suppression_list)(struct store *st, const char *tenant_id, const char *channel,
	                        struct suppression_row **out, size_t *n);

	/* ---- recipient history ---- */
	/* Adds or removes a suppression entry with its history row, in one
	 * transaction (lc_supp_change). A removal of an entry not there is
	 * HR_ENOTFOUND; HR_EINVAL (field named) for a bad key part. */
	int (*suppression_change)(struct store *st, const struct supp_change *c,
	                          struct hr_err *err);
	/* A recipient's opt-out state: the tenant's suppression entries for any
	 * of the nrec forms of the address (e.g. "+447911123456" and
	 * "447911123456"), by channel, and at most limit history rows for them,
	 * newest first. Index reads only. *cur and *ev are heap arrays. */
	int (*recipient_supp)(struct store *st, const char *tenant_id, const char *const *recips,
	                      size_t nrec, int limit, struct suppression_row **cur, size_t *ncur,
	                      struct supp_event_row **ev, size_t *nev);
	/* The tenant's inbound replies from any of the nrec forms of a sender,
	 * newest first, at most limit, each with the unit of the message it
	 * answers. *out heap array: inbound_row_clear each, then free. */
	/* Pauses (p given: the row, replaced if paused already) or resumes
	 * (paused false: only p->account_id is read) an account, with the
	 * audit row (may be NULL) in the same transaction. Resuming an account
	 * that is not paused is HR_ENOTFOUND. */
	int (*account_pause_set)(struct store *st, const struct account_pause_row *p, bool paused,
	                         const struct audit_row *a, struct hr_err *err);
	/* Every paused account (few): *out heap array. */
	int (*account_pauses)(struct store *st, struct account_pause_row **out, size_t *n);
	/* the tenant's daily counters (store/daily.h) for days
	 * day_from..day_to (days since 1970-01-01 UTC, at most 367 days),
	 * summed over the nodes' stripes, by day, channel and kind. *out heap
	 * array. */
	int (*daily_counts)(struct store *st, const char *tenant_id, int32_t day_from,
	                    int32_t day_to, struct daily_ent **out, size_t *n);
	/* The account's queue depth: its QUEUED messages, counted in the claim
	 * index (only queued rows are in it), at most cap (*n == cap means
	 * "cap or more"). */
	int (*account_queue_depth)(struct store *st, const char *account_id, int64_t cap,
	                           int64_t *n);
	int (*recipient_inbound)(struct store *st, const char *tenant_id,
	                         const char *const *senders, size_t nrec, int limit,
	                         struct inbound_row **out, size_t *n);

	/* ---- idempotency ---- */
	int (*idem_get)(struct store *st, const char *tenant_id, const char *key,
	                struct idem_row *out);

	/* ---- webhooks ---- */
	/*
	 * Appends a verified raw webhook. If dedupe_key is non-empty and the same
	 * (account, dedupe_key) exists, nothing is written and rc is 0 (a replay).
	 */
	int (*inbox_append)(struct store *st, const char *account_id, const char *channel,
	                    const char *dedupe_key, const char *body, size_t len,
	                    store_done_fn cb, void *arg);
	/* Up to limit rows that are new, or waiting for a retry due before now,
	 * oldest first. *out heap array. A read: the same rows come back until
	 * they are applied (for inspection; appliers use inbox_claim). */
	int (*inbox_fetch)(struct store *st, int64_t now, int limit, struct inbox_row **out,
	                   size_t *n);
	/* The same rows, claimed: none of them is returned by another claim
	 * until now + lease_us, unless apply_inbox gave it a new time first
	 * (a retry) — so several appliers, in one process or many, never apply
	 * one row at the same time, and the rows of an applier that died come
	 * back when its lease ends. Oldest first. *out heap array. */
	int (*inbox_claim)(struct store *st, int64_t now, int64_t lease_us, int limit,
	                   struct inbox_row **out, size_t *n);
	/*
	 * Applies parsed webhooks in one transaction: each status by precedence
	 * (status_decide) with an audit event (applied or ignored); each inbound
	 * reply stored and linked (by context_id) to its message with an audit
	 * event; each row marked done, or, if it had a status whose provider id
	 * is not known yet, kept for a retry at now + backoff (given up as
	 * "orphan" after 24 h). Malformed rows are marked failed with the error.
	 */
	int (*apply_inbox)(struct store *st, const struct inbox_parsed *rows, size_t n,
	                   int64_t now, struct apply_stats *stats);
	/*
	 * Retention: deletes webhook inbox rows that are finished (applied,
	 * failed or orphaned) and were received before inbox_before, and
	 * idempotency records created before idem_before — at most `limit` of
	 * each per call, so each call is one short transaction; *n gets how many
	 * rows went. Pending inbox rows are never deleted.
	 */
	int (*prune)(struct store *st, int64_t inbox_before, int64_t idem_before, int limit,
	             int64_t *n);
	/*
	 * Message retention by the rule of struct msg_retention. Nothing else
	 * goes: an inbound reply linked to a removed message keeps its
	 * message_id (it then finds nothing, as a reply quoting an unknown
	 * message does), suppressions, aliases, accounts and tenants stay; a
	 * webhook for a removed message is unmatched like one for a message
	 * never seen. Row deletes run through the writer in transactions of at
	 * most r->batch messages each, so writers wait for one short batch at
	 * most. PostgreSQL first drops whole months of partitions where it can
	 * (postgres_retain.c). Runs on several nodes at once are safe (the
	 * second skips: stats->skipped). stats may be NULL. HR_EINVAL (field
	 * named) for a bad r.
	 */
	int (*message_prune)(struct store *st, const struct msg_retention *r,
	                     struct msg_retention_stats *stats, struct hr_err *err);
	/* Number of inbox rows not yet done (for /metrics). */
	int (*inbox_pending)(struct store *st, int64_t *n);

	/* ---- campaigns (batches) ---- */
	/* Stores a new batch as given (status PENDING, counters zero; id,
	 * tenant_id, name, channel and account_id required). HR_ECONFLICT if
	 * the id exists. */
	int (*batch_create)(struct store *st, const struct batch *b, struct hr_err *err);
	/* tenant_id NULL = any tenant (internal use). HR_ENOTFOUND if absent.
	 * batch_clear() it. */
	int (*batch_get)(struct store *st, const char *tenant_id, const char *id, struct batch *out);
	/* Newest first; tenant_id NULL = every tenant (internal use). *out
	 * heap array (batch_clear each); *more if another page exists. */
	int (*batch_list)(struct store *st, const char *tenant_id, const struct batch_filter *f,
	                  struct batch **out, size_t *n, bool *more);
	/* Stores validated rows (row numbers unique within the batch) while it
	 * is PENDING, adding them to total/valid/invalid/duplicates, in one
	 * transaction. HR_ECONFLICT if a row number is already stored (nothing
	 * written); HR_EINVAL if the batch is no longer PENDING. */
	int (*batch_items_put)(struct store *st, const char *batch_id, const struct batch_item *items,
	                       size_t n, struct hr_err *err);
	/* Rows with row number > after_row, in row order, at most limit. *out
	 * heap array (batch_item_clear each). */
	int (*batch_items)(struct store *st, const char *batch_id, enum batch_items_which which,
	                   int64_t after_row, int limit, struct batch_item **out, size_t *n);
	/* Moves the batch to status `to` if batch_status_allowed (HR_EINVAL
	 * naming "status" if not, HR_ENOTFOUND if no such batch of the tenant),
	 * stamping the transition's time; error is the reason for FAILED.
	 * Cancelling also cancels every message of the batch not yet claimed
	 * (see batch_cancel_step). Starting (PROCESSING) checks the tenant's
	 * caps in the same transaction: HR_EQUOTA naming "campaign_cap" when
	 * it already has that many campaigns PROCESSING, or "daily_cap" when
	 * the batch's valid rows exceed what is left of today's cap. */
	int (*batch_set_status)(struct store *st, const char *tenant_id, const char *id,
	                        enum batch_status to, const char *error, struct hr_err *err);
	/* The same with an administrative action's audit row (a cancel by a
	 * user) written in the same transaction: both or neither. For a
	 * person's transition (to PAUSED, CANCELLED, or PROCESSING from
	 * PAUSED: a resume) error is the reason they gave (NULL: none), and
	 * the batch records it with a->actor and the time. Pausing holds
	 * every QUEUED message of the batch out of the claimable set in the
	 * same transaction (counters unchanged: they stay QUEUED), resuming
	 * puts them back; a resume counts against the tenant's campaign cap
	 * like a start (HR_EQUOTA "campaign_cap"). */
	int (*batch_set_status_audit)(struct store *st, const char *tenant_id, const char *id,
	                              enum batch_status to, const char *error,
	                              const struct audit_row *a, struct hr_err *err);
	/*
	 * Makes messages of PENDING rows while the batch is PROCESSING: for each
	 * msgs[i] (built by the caller from rows[i], QUEUED, batch_id set), the
	 * row takes the message id and the message is inserted with its
	 * "accepted" event, in one transaction; a row that already has a
	 * message is skipped (a retried or resumed start never makes two).
	 * With last set, the batch is marked ingested (and may complete at
	 * once). *made gets how many messages were made. HR_EINVAL naming
	 * "status" if the batch is not PROCESSING (nothing written). The
	 * messages made count against the tenant's daily cap: HR_EQUOTA
	 * naming "daily_cap" past it (nothing written).
	 */
	int (*batch_enqueue)(struct store *st, const char *batch_id, const int64_t *rows,
	                     const struct message *msgs, size_t n, bool last, size_t *made,
	                     struct hr_err *err);
	/* Cancels up to limit QUEUED messages of a CANCELLED batch (each with
	 * an event "cancelled"), in one short transaction; *n gets how many.
	 * Callers repeat until 0. Claims of a cancelled batch's messages cancel
	 * them too, so nothing is sent meanwhile. */
	int (*batch_cancel_step)(struct store *st, const char *batch_id, int limit, int64_t *n);
	/* Rows whose message's status is in status_mask (1 << msg_status), in
	 * row order after after_row, at most limit: what a retry re-sends. *out
	 * heap array (batch_item_clear each). */
	int (*batch_items_by_status)(struct store *st, const char *batch_id, unsigned status_mask,
	                             int64_t after_row, int limit, struct batch_item **out,
	                             size_t *n);
	/* Removes a batch that has no messages (PENDING, VALIDATED, or FAILED
	 * before its start) with its rows: an upload given up, or a report the
	 * user discards. HR_EINVAL naming "status" for a batch with messages
	 * (cancel it instead), HR_ENOTFOUND if not the tenant's (NULL: any). */
	int (*batch_discard)(struct store *st, const char *tenant_id, const char *id,
	                     struct hr_err *err);
	/* Counts the batch's messages by status from the message table (for
	 * tests and audits: must equal the kept counters) and those with at
	 * least one reply. */
	int (*batch_recount)(struct store *st, const char *batch_id, int64_t by_status[MSG__COUNT],
	                     int64_t *replied);
	/* The export's page: rows with row number > after_row, in row order, at
	 * most limit (1..10000, else HR_EINVAL), each joined with its message,
	 * its event times and its latest reply (struct batch_export_row), in one
	 * query. *out heap array (batch_export_row_clear each). The caller has
	 * checked the batch's tenant. */
	int (*batch_export_rows)(struct store *st, const char *batch_id, int64_t after_row,
	                         int limit, struct batch_export_row **out, size_t *n);
	/*
	 * The campaign detail's breakdowns, each from a bounded read (never a
	 * scan of the campaign's messages): its FAILED and UNDELIVERED messages
	 * by provider error code, from at most `sample` of them (the (batch,
	 * status) index reads failed ones only); and its replies by kind and
	 * button payload, among the store's latest `sample` replies (the newest
	 * inbound rows, each probing its message by key). At most
	 * BATCH_TALLY_MAX lines each, largest first; *failed_seen and
	 * *replies_seen get how many rows were counted. sample 1..100000 (else
	 * HR_EINVAL). *fail and *rep heap arrays (free). The caller has checked
	 * the batch's tenant.
	 */
	int (*batch_breakdown)(struct store *st, const char *batch_id, int sample,
	                       struct batch_tally **fail, size_t *nfail, int64_t *failed_seen,
	                       struct batch_tally **rep, size_t *nrep, int64_t *replies_seen);

	/* ---- callbacks to client systems (the outbox; see callback_row) ---- */
	/*
	 * Claims up to limit pending rows due by now (next_try_at <= now, no
	 * lease running, no earlier pending row of the same message) whose url
	 * is not one of skip_urls[0..nskip) (URLs whose in-flight limit is
	 * reached), oldest due first: attempts += 1, lease_until = now +
	 * lease_us. *out heap array (callback_row_clear each). now 0: the
	 * database's clock.
	 */
	int (*callback_claim)(struct store *st, int64_t now, int64_t lease_us, int limit,
	                      const char *const *skip_urls, size_t nskip, struct callback_row **out,
	                      size_t *n);
	/* Records outcomes of claimed rows in one transaction (callback_outcome:
	 * fenced by attempt; lease cleared; delivered_at stamped). */
	int (*callback_done)(struct store *st, const struct callback_outcome *o, size_t n,
	                     struct hr_err *err);
	/* The tenant's rows, newest first: state -1 = any; before_id > 0 is the
	 * cursor (ids strictly less); limit 1..1000. *more if another page
	 * exists. *out heap array (callback_row_clear each). */
	int (*callback_list)(struct store *st, const char *tenant_id, int state, int64_t before_id,
	                     int limit, struct callback_row **out, size_t *n, bool *more);
	/* One row of the tenant (NULL: any); HR_ENOTFOUND if absent or another's. */
	int (*callback_get)(struct store *st, const char *tenant_id, int64_t id,
	                    struct callback_row *out);
	/*
	 * Sends again: with id > 0 that row of the tenant, if dead or delivered
	 * (HR_ENOTFOUND if not the tenant's, HR_ECONFLICT naming "state" if it is
	 * pending); with id 0 up to limit (1..10000) of the tenant's dead rows.
	 * A replayed row is pending again with attempts 0, due now; *n gets how
	 * many rows were replayed.
	 */
	int (*callback_replay)(struct store *st, const char *tenant_id, int64_t id, int limit,
	                       int64_t *n, struct hr_err *err);
	/* Rows per state over every tenant, for /metrics (counts[CB__COUNT];
	 * delivered is not counted and stays 0: it only grows until retention). */
	int (*callback_counts)(struct store *st, int64_t counts[CB__COUNT]);
	/* Retention: deletes at most limit delivered rows last updated before
	 * `before`; *n gets how many. Pending and dead rows stay. */
	int (*callback_prune)(struct store *st, int64_t before, int limit, int64_t *n);

	/* ---- plugin after-commit events (see plugin_event_row) ---- */
	/* Up to limit (1..PLUGIN_EV_READ_MAX, else HR_EINVAL) pending events,
	 * oldest (lowest id) first. *out heap array (plugin_event_row_clear
	 * each). On a database several processes share (PostgreSQL), one
	 * store at a time gets rows, the others none: the first to read holds
	 * the deliverer's lock until it closes (or its connection is lost). */
	int (*plugin_event_read)(struct store *st, int limit, struct plugin_event_row **out,
	                         size_t *n);
	/* Done: deletes the rows with these ids (absent ones are no error), in
	 * one transaction; n at most PLUGIN_EV_READ_MAX. */
	int (*plugin_event_done)(struct store *st, const int64_t *ids, size_t n);
	/* How many events are pending (herald_plugin_events_pending). */
	int (*plugin_event_count)(struct store *st, int64_t *n);

	/* ---- the reconciler (src/dispatch/reconciler.c) and fallback routing ---- */
	/* Up to limit QUEUED messages past their expires_at become EXPIRED,
	 * each with an "expired" event (source reconciler); *n gets how many.
	 * now 0: the database's clock. */
	int (*reconcile_expire)(struct store *st, int64_t now, int limit, int *n);
	/* Up to limit SENT messages whose route's deadline passed without a
	 * receipt get their follow-up (reason "no_receipt"); *n gets how many. */
	int (*reconcile_fallback_due)(struct store *st, int64_t now, int limit, int *n);
	/* A read: up to limit SENT messages of the channel, not yet settled by
	 * the reconciler, that became SENT at or before sent_before, oldest
	 * first. *out heap array (message_clear each). */
	int (*stale_list)(struct store *st, const char *channel, int64_t sent_before, int limit,
	                  struct message **out, size_t *n);
	/* Applies what the reconciler learnt of stale messages (struct
	 * stale_answer), each in its own item: an answer by status precedence,
	 * then a message still SENT is marked stale once (event "stale") and
	 * falls back if it has a route. stats may be NULL. */
	int (*stale_settle)(struct store *st, const struct stale_answer *a, size_t n,
	                    struct stale_stats *stats);
	/* Parks inbox rows still waiting for their message (state retry) that
	 * were received before received_before: state orphan ("parked"), listed
	 * by inbox_parked. Up to limit; *n gets how many. */
	int (*inbox_park)(struct store *st, int64_t received_before, int limit, int *n);
	/* Parked rows (state orphan) of the tenant's accounts (tenant_id NULL:
	 * every tenant, for the operator), newest first; before_id > 0 is the
	 * cursor; limit 1..1000. *out heap array (inbox_row_clear each). */
	int (*inbox_parked)(struct store *st, const char *tenant_id, int64_t before_id, int limit,
	                    struct inbox_row **out, size_t *n, bool *more);
	/* The messages of the route rooted at root_id, by step (tenant_id NULL:
	 * any tenant). *out heap array (message_clear each); n 0 when none. */
	int (*message_route)(struct store *st, const char *tenant_id, const char *root_id,
	                     struct message **out, size_t *n);
	/* The writer's totals since open: transactions committed and jobs run
	 * (so jobs / commits is the mean group). May be NULL; never fails. */
	void (*write_stats)(struct store *st, uint64_t *commits, uint64_t *jobs);
};

/* For backends: a template write's key parts and config (a JSON object
 * or NULL), and an audit row's required fields (NULL is fine). 0 or
 * HR_EINVAL naming the field. */
/* The template's config, when it has one, must be a JSON object: adapters
 * parse it at send time, where a broken one could only fail every message. */
int store_template_config_check(const struct template_row *t, struct hr_err *err);
int store_template_check(const struct template_row *t, struct hr_err *err);
int store_audit_check(const struct audit_row *a, struct hr_err *err);

extern const struct store_ops store_sqlite;
extern const struct store_ops store_postgres;

/* Finds a backend by name ("sqlite", "postgres"); NULL if unknown. */
const struct store_ops *store_backend(const char *name);

#endif
