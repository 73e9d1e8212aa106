/*
 * sim_int.h - what the simulator's files share: accounts, knobs, the
 * deterministic random stream, counters, the webhook schedule and the
 * WhatsApp wire formats. Not used outside src/sim/.
 */
#ifndef HR_SIM_INT_H
#define HR_SIM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "herald.h"
#include "sim/sim.h"

#define SIM_BODY_MAX ((size_t)1 << 20) /* request bodies larger than this are refused */

/* ---------------------------------------------------------------------------
 * Outgoing webhook POSTs (every poster: WhatsApp, Telegram, SMS, RCS).
 * ------------------------------------------------------------------------- */
static inline size_t sim_discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * nmemb;
}

/*
 * Sets e up for one POST of body (len bytes) to url with headers, the answer
 * discarded, http(s) only. ua (User-Agent) may be NULL; connect_ms 0 leaves
 * curl's connect timeout. Every option is checked: returns the first that
 * failed (stopping there), CURLE_OK when all took; a caller never performs a
 * half-configured transfer.
 */
static inline CURLcode sim_post_setup(CURL *e, const char *url, const char *body, size_t len,
                                      struct curl_slist *headers, const char *ua, long timeout_ms,
                                      long connect_ms)
{
	CURLcode cc = CURLE_OK;
#define SIM_OPT(o, v)                                                                              \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(e, o, v);                                            \
	} while (0)
	SIM_OPT(CURLOPT_URL, url);
	SIM_OPT(CURLOPT_POSTFIELDS, body);
	SIM_OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	SIM_OPT(CURLOPT_HTTPHEADER, headers);
	if (ua)
		SIM_OPT(CURLOPT_USERAGENT, ua);
	SIM_OPT(CURLOPT_WRITEFUNCTION, sim_discard);
	SIM_OPT(CURLOPT_NOSIGNAL, 1L);
	SIM_OPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	if (connect_ms)
		SIM_OPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SIM_OPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SIM_OPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#undef SIM_OPT
	return cc;
}

/* ---------------------------------------------------------------------------
 * Accounts (read-only after start).
 * ------------------------------------------------------------------------- */
struct sim_account {
	char id[HR_NAME_MAX];
	char *phone_number_id;
	/* access_token and app_secret change on POST /sim/whatsapp/rotate
	 * (sim_rotate_secrets): read them only under *secrets_lock. */
	char *access_token;
	char *app_secret;
	char *token_ref, *secret_ref; /* their references, as configured */
	pthread_mutex_t *secrets_lock; /* &sim.secrets_lock */
	char *display_phone; /* metadata.display_phone_number */
	char *waba_id;       /* entry[].id */
	char *webhook_url;   /* {herald_url}/webhooks/whatsapp/{id} */
};

/* ---------------------------------------------------------------------------
 * Knobs: an immutable, refcounted snapshot. /sim/config swaps in a new one;
 * a request holds a reference for as long as it reads it.
 * ------------------------------------------------------------------------- */
/* One recipient's scripted behaviour (sim.whatsapp.recipients."<wa id>"):
 * error != 0 answers every send with that Graph error; reply/press (heap or
 * NULL) make the recipient read the message and then answer it. */
struct sim_wa_recipient {
	char to[HR_ADDR_MAX]; /* digits only */
	int error;
	char *reply; /* an inbound text with context = the message */
	char *press; /* a button press: template quick reply payload, or a reply id */
	/* What becomes of an accepted send (fallback tests): SIM_FATE_FAILED
	 * posts sent then failed (131026), SIM_FATE_SILENT posts sent and
	 * nothing more; delivered_delay_ms >= 0 delivers after that long (no
	 * read). Defaults: SIM_FATE_NORMAL, -1. */
	int fate;
	double delivered_delay_ms;
};
enum { SIM_FATE_NORMAL = 0, SIM_FATE_FAILED = 1, SIM_FATE_SILENT = 2 };

struct sim_knobs {
	atomic_int refs;
	double latency_ms, latency_jitter_ms;
	double fail_rate, rate_429, rate_5xx;
	double sent_delay_ms, delivered_delay_ms, read_delay_ms;
	double read_rate, dup_rate, reorder_rate, failed_after_sent_rate;
	/* Of the sends it accepts (counted, statuses scheduled), the share
	 * whose connection is closed instead of answered: the sender cannot
	 * know whether it went out (a reset after the request was read). */
	double drop_rate;
	int webhook_batch;
	double webhook_retry_s;
	char **fail_recipients; /* digits only */
	size_t nfail;
	struct sim_wa_recipient *recipients; /* sim.whatsapp.recipients, by wa id */
	size_t nrecipients;
	bool has_seed;
	uint64_t seed;
};

/* The config's accounts: how many tenants[].accounts[] entries there are (an
 * upper bound for one channel's table), and a walk calling fn for each entry
 * of one channel with its config path ("tenants[0].accounts[2]") for errors.
 * Stops at, and returns, the first non-zero rc. */
typedef int (*sim_account_fn)(struct sim *s, json_t *entry, const char *base, struct hr_err *err);
size_t sim_config_account_slots(json_t *config);
int sim_config_each_account(struct sim *s, json_t *config, const char *channel, sim_account_fn fn,
                            struct hr_err *err);

struct sim_knobs *sim_knobs_default(void);
/* A copy of base with obj's keys applied; errors name "<prefix><key>". */
int sim_knobs_apply(const struct sim_knobs *base, json_t *obj, const char *prefix,
                    struct sim_knobs **out, struct hr_err *err);
json_t *sim_knobs_json(const struct sim_knobs *k);
void sim_knobs_ref(struct sim_knobs *k);
void sim_knobs_unref(struct sim_knobs *k);
bool sim_knobs_fails_recipient(const struct sim_knobs *k, const char *to);
/* The scripted behaviour for a recipient (any spelling of the number), or NULL. */
const struct sim_wa_recipient *sim_knobs_recipient(const struct sim_knobs *k, const char *to);

/* ---------------------------------------------------------------------------
 * A reproducible random stream per send: seeded from (seed, body digest,
 * attempt number), so a given message meets the same fate whatever the
 * thread interleaving.
 * ------------------------------------------------------------------------- */
struct sim_rng {
	uint64_t s;
};
void sim_rng_init(struct sim_rng *r, uint64_t seed, const unsigned char digest[32],
                  uint64_t attempt);
uint64_t sim_rng_next(struct sim_rng *r);
double sim_rng_unit(struct sim_rng *r); /* [0,1) */

/* ---------------------------------------------------------------------------
 * Counters (sim_stats.c). One mutex, held for table updates only.
 * ------------------------------------------------------------------------- */
enum sim_reject { SIM_REJ_429, SIM_REJ_5XX, SIM_REJ_PERMANENT, SIM_REJ_AUTH, SIM_REJ_INVALID };

struct sim_table {
	void **buckets;
	size_t nbuckets, n;
};

struct sim_stats {
	pthread_mutex_t lock;
	uint64_t requests, accepted, duplicates, body_duplicates;
	uint64_t rejected[5];
	struct sim_table msgs;   /* by biz_opaque_callback_data */
	struct sim_table bodies; /* by (recipient, sha256 of the body) */
	/* Webhook figures, updated by the webhook thread without the lock. */
	atomic_uint_fast64_t wh_posted, wh_statuses, wh_inbound, wh_failed, wh_dropped;
	atomic_int_fast64_t wh_pending;
};

int sim_stats_init(struct sim_stats *st);
void sim_stats_free(struct sim_stats *st);
void sim_stats_request(struct sim_stats *st);
/* Counts a well-formed request for (to, digest); returns how many came before. */
uint64_t sim_stats_attempt(struct sim_stats *st, const char *to, const unsigned char d[32]);
void sim_stats_reject(struct sim_stats *st, enum sim_reject why);
/* Records an accepted send. cb may be NULL (no callback data). */
int sim_stats_accept(struct sim_stats *st, const char *to, const unsigned char d[32],
                     const char *cb, const char *wamid);
void sim_stats_reset(struct sim_stats *st);
json_t *sim_stats_json(struct sim_stats *st);
json_t *sim_stats_message_json(struct sim_stats *st, const char *cb); /* NULL: unknown */
json_t *sim_stats_duplicates_json(struct sim_stats *st);
/* Accepted sends per recipient, summed over every body sent to it: {"<to>": n}
 * (NULL on OOM). A test that gives each message its own recipient reads
 * every message's count in one request. */
json_t *sim_stats_counts_json(struct sim_stats *st);

/* ---------------------------------------------------------------------------
 * The webhook schedule (sim_webhook.c).
 * ------------------------------------------------------------------------- */
enum sim_wa_status { SIM_ST_SENT, SIM_ST_DELIVERED, SIM_ST_READ, SIM_ST_FAILED };

struct sim_deferred;

/*
 * One accepted message, shared (refcounted) by its status events and the
 * POSTs carrying them. busy/deferred belong to the webhook thread alone: a
 * status waits while an earlier one of the same message is still being
 * delivered, so a message's webhooks arrive in the order they were planned
 * (reorder_rate is then the only source of disorder, retries aside).
 */
struct sim_msg {
	atomic_int refs;
	int acct;                    /* index into sim->accounts */
	const char *wamid, *to, *cb; /* point into buf; cb NULL if none */
	const char *category;        /* "utility" (templates) or "service" (text) */
	char conv_id[33];
	int busy; /* its statuses in POSTs not yet finished */
	struct sim_deferred *deferred, **deferred_tail;
	/* The recipient's scripted answer (reply, press), posted once the POST
	 * carrying this message's "read" has finished; owned, NULL if none. */
	struct sim_post *after_read;
	bool read_packed; /* a "read" status of it went into a POST */
	char buf[];
};
struct sim_msg *sim_msg_new(int acct, const char *wamid, const char *to, const char *cb,
                            bool is_template, struct sim_rng *rng);
void sim_msg_unref(struct sim_msg *m);

enum sim_ev_kind { SIM_EV_STATUS, SIM_EV_RESUME, SIM_EV_POST };

struct sim_event {
	int64_t due;  /* monotonic us */
	uint64_t seq; /* push order breaks ties */
	int kind;
	int status;      /* SIM_EV_STATUS: enum sim_wa_status */
	int64_t wall_us; /* SIM_EV_STATUS: the event's own time, for "timestamp" */
	void *ptr;       /* sim_msg, MHD_Connection or sim_post */
};

/* A webhook POST: exact bytes, signed once, retried as they are. */
struct sim_post {
	int acct;
	char *body;
	size_t len;
	char sig[96];          /* "X-Hub-Signature-256: sha256=<hex>" */
	int nitems;            /* statuses or messages it carries */
	struct sim_msg **msgs; /* status posts: the message of each status (refs) */
	bool inbound;
	int attempts;
	int64_t first_at; /* monotonic us of the first attempt */
	struct curl_slist *headers;
	CURL *easy;            /* while in flight */
	int slot;              /* index in the webhook thread's in-flight table */
	struct sim_post *next; /* ready queue */
};

struct wh_thread;
struct sim_tg;
struct sim_sms;
struct sim_rcs;

/* ---------------------------------------------------------------------------
 * The simulator.
 * ------------------------------------------------------------------------- */
struct sim {
	struct MHD_Daemon *daemon;
	int port;
	char host[64];
	struct sim_account *accounts;
	size_t naccounts;
	char *herald_url;
	uint64_t random_seed; /* used when the knobs give no seed */
	atomic_uint_fast64_t id_counter;
	uint32_t id_prefix;

	pthread_mutex_t knobs_lock;
	struct sim_knobs *knobs;
	pthread_mutex_t secrets_lock; /* the accounts' access_token and app_secret */

	struct sim_stats stats;

	/* Schedule: heap of events, guarded by sched_lock. */
	pthread_mutex_t sched_lock;
	struct sim_event *heap;
	size_t nheap, capheap;
	uint64_t seq;
	int64_t wake_at;      /* when the webhook thread plans to wake */
	bool stopping;        /* no more suspends accepted */
	atomic_int suspended; /* requests suspended and not yet completed */
	atomic_bool thread_stop;
	CURLM *multi;
	struct wh_thread *wh; /* the webhook thread's own state */
	pthread_t thread;
	bool thread_started;
	int webhook_concurrency;
	struct sim_tg *tg;   /* the Telegram side (sim_telegram.c) */
	struct sim_sms *sms; /* the SMS (Twilio) side (sim_sms.c) */
	struct sim_rcs *rcs; /* the RCS (Google RBM) side (sim_rcs.c) */
};

struct sim_knobs *sim_knobs_get(struct sim *s); /* caller unrefs */
/* Resolves every WhatsApp account's access_token and app_secret references
 * again (a provider whose credentials were rotated): from then on only the
 * new token is accepted and webhooks are signed with the new secret. All or
 * nothing. *n gets how many accounts changed. */
int sim_rotate_secrets(struct sim *s, size_t *n, struct hr_err *err);
uint64_t sim_seed(struct sim *s, const struct sim_knobs *k);
/* "wamid.<unique>" into out (size >= 96). */
void sim_wamid_new(struct sim *s, const char *to, bool inbound, char *out, size_t n);
const struct sim_account *sim_account_by_id(const struct sim *s, const char *id);

/* Pushes events; false if the sim is stopping (nothing pushed). */
bool sim_sched_push(struct sim *s, const struct sim_event *ev, size_t n);
int sim_webhook_start(struct sim *s, struct hr_err *err);
/* Resumes every suspended connection and refuses new suspends. */
void sim_webhook_quiesce(struct sim *s);
void sim_webhook_stop(struct sim *s);
/* Queues a POST built elsewhere (inbound messages) for immediate sending. */
bool sim_post_submit(struct sim *s, struct sim_post *p);
struct sim_post *sim_post_new(const struct sim_account *a, int acct, char *body, int nitems,
                              bool inbound);
void sim_post_free(struct sim_post *p);

/* ---------------------------------------------------------------------------
 * WhatsApp wire formats (sim_wire.c).
 * ------------------------------------------------------------------------- */
struct sim_send {
	const char *to;
	const char *type;      /* "text", "template", "interactive", "document", "image" */
	const char *cb;        /* biz_opaque_callback_data or NULL */
	json_t *reply_buttons; /* interactive: action.buttons (borrowed from the body) */
	int error_code;        /* when the check fails: Graph's code (100, 131009...) */
};
/* Checks a send body like Graph does; on failure *msg names the field. */
bool sim_wire_check_send(json_t *body, struct sim_send *out, char *msg, size_t msgsz);
char *sim_wire_error(int code, const char *message, const char *details, const char *type,
                     int subcode);
char *sim_wire_success(const char *to, const char *wamid);
/* The HTTP status, message and details (may be NULL) Graph answers an error
 * code with; msg is filled for codes the table does not know. */
unsigned int sim_wire_error_for(int code, char *msg, size_t msgsz, const char **details,
                                const char **type);
/* A recipient's scripted answer to an accepted message (a signed messages[]
 * POST with context = wamid, timestamped at_us), or NULL if it has none. */
struct sim_post *sim_wire_answer_post(struct sim *s, int acct, const struct sim_send *snd,
                                      const char *wamid, const struct sim_wa_recipient *r,
                                      int64_t at_us);
/* The value object shared by status and message webhooks. */
json_t *sim_wire_envelope(const struct sim_account *a, json_t *value);
json_t *sim_wire_status(const struct sim_msg *m, int status, int64_t wall_us);
void sim_wire_digits(const char *in, char *out, size_t n);

/* ---------------------------------------------------------------------------
 * HTTP (sim_http.c).
 * ------------------------------------------------------------------------- */
int sim_http_start(struct sim *s, const char *host, int port, int threads, struct hr_err *err);

#endif
