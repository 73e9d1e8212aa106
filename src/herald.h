/*
 * herald.h - the nouns of Herald in one place: result codes, errors, ids,
 * message statuses, messages and their audit events, channel accounts.
 *
 * Every subsystem includes this header. Subsystem interfaces live beside their
 * code (store/store.h, channels/channel.h, ...); this file only holds what
 * more than one of them needs to agree on.
 */
#ifndef HERALD_H
#define HERALD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C linkage for the C++ shims that include this header (core/phone.cc). */
#ifdef __cplusplus
extern "C" {
#endif

#define HERALD_VERSION "0.1.0"

/* ---------------------------------------------------------------------------
 * Result codes. Functions return 0 on success or one of these (negative).
 * The API maps them to HTTP statuses in one table (api/errors.c).
 * ------------------------------------------------------------------------- */
enum hr_code {
	HR_OK = 0,
	HR_EINVAL = -1,      /* bad input: 400/422, names the field          */
	HR_ENOTFOUND = -2,   /* 404                                          */
	HR_ECONFLICT = -3,   /* unique key taken, idempotency mismatch: 409/422 */
	HR_EAUTH = -4,       /* missing/bad credentials or signature: 401    */
	HR_ENOMEM = -5,      /* allocation failed                            */
	HR_EIO = -6,         /* store or file I/O failed: 500/503            */
	HR_ELIMIT = -7,      /* a size or count limit was exceeded: 413      */
	HR_EBUSY = -8,       /* try again later: 503                         */
	HR_ETIMEOUT = -9,    /* a bounded wait ran out                       */
	HR_EINTERNAL = -10,  /* a bug: 500                                   */
	HR_EFORBIDDEN = -11, /* authenticated but not allowed: 403           */
	HR_EQUOTA = -12,     /* a tenant's rate or quota is used up: 429 (the
	                      * field names which: "daily_cap", "tenant", "key") */
};

const char *hr_code_name(int code); /* "invalid", "not_found", ... */

/*
 * An error with a human message and the offending field (JSON path, header
 * name, config key or row). Optional everywhere: pass NULL to ignore.
 */
struct hr_err {
	int code;
	char field[96];
	char msg[384];
};

/* Sets err (if not NULL) and returns code, so callers can `return hr_fail(...)`. */
int hr_fail(struct hr_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void hr_err_clear(struct hr_err *err);

/* ---------------------------------------------------------------------------
 * Time and ids.
 * ------------------------------------------------------------------------- */

/* Wall clock in microseconds since the Unix epoch (UTC). */
int64_t hr_now_us(void);
/* Monotonic clock in microseconds, for timeouts and rate limits. */
int64_t hr_mono_us(void);
/* Formats micros as RFC 3339 UTC with microseconds: 2026-01-15T10:00:00.123456Z */
void hr_time_format(int64_t us, char out[32]);
/* Parses RFC 3339 (fraction and +hh:mm offset allowed) into UTC microseconds;
 * HR_EINVAL if it is not one. */
int hr_time_parse(const char *s, int64_t *out);

/*
 * Time-ordered ids (ULID: 48-bit millisecond time + 80 bits of randomness,
 * Crockford base32, 26 chars). Monotonic within one process even within a
 * millisecond, so ids sort in creation order and B-tree inserts append.
 * Thread-safe.
 */
#define HR_ID_LEN 26
void hr_id_new(char out[HR_ID_LEN + 1]);
bool hr_id_valid(const char *s);
/* An id as if made at time us (random tail, no monotonic guarantee): for
 * tests and for rows that carry an old time. */
void hr_id_at(int64_t us, char out[HR_ID_LEN + 1]);
/* The first HR_ID_TIME_LEN characters of every id made in the millisecond
 * of us: ids made before us sort (byte-wise) below it, ids made at or after
 * it at or above it. The same as PostgreSQL's herald_ulid_prefix(). */
#define HR_ID_TIME_LEN 10
void hr_id_time_prefix(int64_t us, char out[HR_ID_TIME_LEN + 1]);

/* ---------------------------------------------------------------------------
 * Message lifecycle (see DESIGN.md "Message lifecycle"). The numeric values
 * are stored in the database: never renumber, only append.
 * ------------------------------------------------------------------------- */
enum msg_status {
	MSG_QUEUED = 0,
	MSG_SENDING = 1,
	MSG_SENT = 2,
	MSG_DELIVERED = 3,
	MSG_READ = 4,
	MSG_FAILED = 5,
	MSG_UNDELIVERED = 6,
	MSG_CANCELLED = 7,
	MSG_EXPIRED = 8,
	MSG_SUPPRESSED = 9,
	MSG_UNKNOWN = 10,
	MSG__COUNT
};

const char *msg_status_name(enum msg_status s);               /* "queued", ...  */
int msg_status_parse(const char *name, enum msg_status *out); /* 0 or HR_EINVAL */
/* True for a status after which nothing more is expected on this channel. */
bool msg_status_final(enum msg_status s, bool channel_has_receipts);
/* True for a status that retention may remove (store.message_retention_days):
 * final, or DELIVERED (only a READ receipt can still come). QUEUED, SENDING,
 * UNKNOWN and SENT on a channel with receipts are never settled. */
bool msg_status_settled(enum msg_status s, bool channel_has_receipts);

/*
 * What happens when an event reporting status `next` meets a message in
 * status `cur` (status/status.c holds the table and its reasons).
 */
enum status_verdict {
	STATUS_APPLY = 0,         /* move to next                             */
	STATUS_APPLY_IMPLIED = 1, /* READ over SENT: record DELIVERED, then READ */
	STATUS_IGNORE_DUP = 2,    /* same status again: change nothing        */
	STATUS_IGNORE_STALE = 3,  /* ranks at or below cur: record as ignored */
};
enum status_verdict status_decide(enum msg_status cur, enum msg_status next);
const char *status_verdict_name(enum status_verdict v);

/*
 * A campaign (batch) of messages from one upload: PENDING (created, rows
 * being read) -> VALIDATED (every row checked, report ready) -> PROCESSING
 * (started: valid rows becoming messages, messages being sent) ->
 * COMPLETED (every message settled, see batch_msg_settled); or CANCELLED,
 * or FAILED (with a reason) from any state before COMPLETED. A PROCESSING
 * batch may be PAUSED by an operator (its messages not yet handed to a
 * provider wait, held out of the claimable set) and resumed back to
 * PROCESSING; a paused batch may be cancelled. Stored numbers: never
 * renumber, only append.
 */
enum batch_status {
	BATCH_PENDING = 0,
	BATCH_VALIDATED = 1,
	BATCH_PROCESSING = 2,
	BATCH_COMPLETED = 3,
	BATCH_CANCELLED = 4,
	BATCH_FAILED = 5,
	BATCH_PAUSED = 6,
	BATCH__COUNT
};
const char *batch_status_name(enum batch_status s);               /* "pending", ... */
int batch_status_parse(const char *name, enum batch_status *out); /* 0 or HR_EINVAL */
/* Whether a batch may move from cur to next (the table in status.c). */
bool batch_status_allowed(enum batch_status cur, enum batch_status next);
/* True once a message of a batch needs nothing more for the batch to be
 * done: a final status, DELIVERED (READ may follow, but nobody waits for
 * it), UNKNOWN (never sent again by itself), or SENT on a channel that
 * reports no receipts. */
bool batch_msg_settled(enum msg_status s, bool channel_has_receipts);

/* Message priority classes: lower is claimed first. */
enum msg_priority {
	PRIO_TRANSACTIONAL = 0, /* single API sends, OTPs */
	PRIO_BULK = 1,          /* batch endpoint, campaigns */
};

/*
 * What Herald may do when it cannot tell whether the provider got a send
 * (the request was written, then the answer never came: a timeout, a reset
 * connection, the process killed mid-request). Stored numbers: never
 * renumber, only append.
 *  AT_LEAST_ONCE: send again (an OTP must arrive; a duplicate is the price,
 *                 marked in the audit trail as a resend after an unknown
 *                 outcome).
 *  AT_MOST_ONCE:  never send again by itself: the message becomes UNKNOWN
 *                 (a marketing blast must not reach anyone twice); a later
 *                 receipt still settles it.
 * A send that provably never reached the provider (connection refused, DNS,
 * TLS handshake failure) is retried under either.
 */
enum delivery_policy {
	POLICY_AT_LEAST_ONCE = 0,
	POLICY_AT_MOST_ONCE = 1,
	POLICY__COUNT
};
const char *delivery_policy_name(enum delivery_policy p); /* "at_least_once", ... */
int delivery_policy_parse(const char *name, enum delivery_policy *out); /* 0 or HR_EINVAL */

/* Sizes of the fixed string fields below (including the terminating NUL). */
#define HR_NAME_MAX 64 /* tenant, account, channel, template names   */
#define HR_ADDR_MAX 64 /* recipient address: E.164 or chat id        */
#define HR_PROVIDER_ID_MAX 160
#define HR_ERRCODE_MAX 32
#define HR_ERRTEXT_MAX 512

/*
 * One message: one recipient on one channel. `content` is the canonical JSON
 * (see channels/channel.h for its shape) and is owned by the message
 * (message_clear frees it). `body` is the rendered text for display/search.
 */
struct message {
	char id[HR_ID_LEN + 1];
	char tenant_id[HR_NAME_MAX];
	char account_id[HR_NAME_MAX];
	char channel[16];
	char recipient[HR_ADDR_MAX];
	char batch_id[HR_ID_LEN + 1]; /* "" when not part of a batch */
	char *content;                /* canonical JSON, heap        */
	char *body;                   /* rendered text, heap, may be NULL */
	enum msg_status status;
	int priority;
	int attempts;
	int max_attempts;
	int64_t created_at;  /* us */
	int64_t updated_at;  /* us */
	int64_t due_at;      /* us: not claimed before this */
	int64_t lease_until; /* us: 0 unless SENDING */
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];
	char error_text[HR_ERRTEXT_MAX];
	int segments; /* SMS segments (core/segments.h); 0 on other channels */
	/* Where status changes and replies of this message are POSTed (the
	 * client's callback URL, the most specific of message, batch and tenant,
	 * fixed at accept). Written by inserts, heap (message_clear frees it);
	 * reads leave it NULL. NULL or "": no callbacks. */
	char *callback_url;
	enum delivery_policy policy; /* what to do when a send's outcome is unknown */
	/* us; 0: never. A QUEUED message past it becomes EXPIRED (the
	 * reconciler, and every claim) and is never sent. */
	int64_t expires_at;
	/*
	 * Fallback routing (README "Fallback"): the route this message is one
	 * step of, as JSON text (heap, message_clear frees it; NULL: no route):
	 *   {"steps":[{"channel":"whatsapp","account_id":"wa"},
	 *             {"channel":"sms","account_id":"tw"}],
	 *    "fallback_after_s":60,"text":"what a follow-up says"}
	 * Every message of one route carries the same text; route_step is this
	 * message's index in steps and route_root the id of step 0 (its own id
	 * there). Reads fill route only where they say so.
	 */
	char *route;
	int route_step;
	int route_steps; /* how many steps the route has (0: none) */
	char route_root[HR_ID_LEN + 1];
	/* us; 0: none. How long a SENT message with a next step waits for a
	 * receipt before its follow-up is made. */
	int64_t fallback_after;
	/* The business unit that made it ("" = the tenant's own). Written by
	 * inserts; read back by message_get, message_list and claim only. */
	char unit[HR_NAME_MAX];
};

void message_clear(struct message *m); /* frees content/body, zeroes */

/*
 * One audit-trail entry. `type` says what happened ("accepted", "attempt",
 * "sent", "retry", "failed", "webhook_status", "inbound", "lease_expired",
 * ...); `applied` is false for webhook events that were recorded but changed
 * nothing (stale or duplicate). `detail` is a JSON object, heap, owned.
 */
struct message_event {
	int64_t id;
	char message_id[HR_ID_LEN + 1];
	int64_t at;          /* us, when Herald recorded it   */
	int64_t provider_at; /* us, provider's timestamp or 0 */
	char type[32];
	char source[16]; /* "api", "dispatcher", "webhook", "reconciler" */
	int status;      /* resulting/reported status or -1 */
	bool applied;
	char *detail; /* JSON object text, heap, may be NULL */
};

void message_event_clear(struct message_event *e);

/* ---------------------------------------------------------------------------
 * Small helpers used everywhere.
 * ------------------------------------------------------------------------- */

/* strlcpy semantics: always NUL-terminates, returns strlen(src). */
size_t hr_strlcpy(char *dst, const char *src, size_t size);
/*
 * Copies text that came from outside (provider errors, client input) into a
 * fixed buffer as valid UTF-8: never cuts a multi-byte character in half and
 * replaces each invalid byte with '?', so the result can always be put in
 * JSON. Always NUL-terminates; returns the bytes written.
 */
size_t hr_utf8_copy(char *dst, const char *src, size_t size);
/* Offset of the first byte of s[0..len) that is not part of valid UTF-8 or
 * is a NUL, or len when there is none. s[len] must be readable ('\0'). */
size_t hr_utf8_check(const char *s, size_t len);
/* Length of the valid UTF-8 sequence at p, at most avail bytes (1 for
 * ASCII, NUL included), or 0 if it is not one (overlong, a surrogate,
 * above U+10FFFF, cut short by avail or by a byte that does not continue
 * it, a NUL among them). */
size_t hr_utf8_seq(const unsigned char *p, size_t avail);
/* Code point cp (at most U+10FFFF; the caller keeps surrogates out) as
 * UTF-8 into out; its length, 1 to 4. */
size_t hr_utf8_put(char out[4], unsigned long cp);
/* A growable byte string: NUL-terminated once anything was put; `oom`
 * sticks after a failed allocation, so callers check it once at the end.
 * Start zeroed; the caller frees p. */
struct hr_buf {
	char *p;
	size_t len, cap;
	bool oom;
};
void hr_buf_put(struct hr_buf *b, const void *p, size_t n);
/* Appends printf-formatted text (oom as for hr_buf_put). */
void hr_buf_printf(struct hr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Wipes a NUL-terminated secret with explicit_bzero (a memset before free
 * may be optimised away) and frees it. NULL is fine. */
void hr_secret_free(char *s);
/* Constant-time comparison of two byte strings (length leaks, content not). */
bool hr_consteq(const void *a, size_t alen, const void *b, size_t blen);

/* Logging to stderr with a level and a module word. No secrets, ever. */
enum hr_log_level { HR_LOG_DEBUG, HR_LOG_INFO, HR_LOG_WARN, HR_LOG_ERROR };
void hr_log_set_level(enum hr_log_level lvl);
void hr_log(enum hr_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif /* HERALD_H */
