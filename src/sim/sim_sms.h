/*
 * sim_sms.h - the simulator's Twilio Programmable Messaging side (Herald's
 * channel "sms"): sim_sms.c answers the REST API and the /sim/sms/...
 * control endpoints, sim_sms_post.c posts signed status callbacks and
 * inbound messages from its own thread. Not used outside src/sim/.
 *
 * HTTP surface:
 *   POST /2010-04-01/Accounts/{AccountSid}/Messages.json  send (Basic auth
 *        AccountSid:AuthToken or SK...:secret, form-encoded); 201 with the
 *        Message resource, or Twilio's error body {"code","message",
 *        "more_info","status"}: 20003 bad credentials (401), 20404 another
 *        account's URL (404), 21604 no To, 21211 invalid To, 21603 no
 *        From/MessagingServiceSid, 21606/21701 not the account's sender,
 *        21602 no Body or MediaUrl, 21617 Body over 1600 characters, 21624
 *        ValidityPeriod outside 1..36000, 21609 bad StatusCallback, 21900/21901
 *        malformed DltPEId/DltTemplateId, 21610 an opted-out recipient,
 *        20429 (429) and 20500 (500) by rate.
 *   GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json  the resource
 *   POST /sim/sms/inbound {"account","from","body"}  posts an inbound SMS to
 *        the account's webhook URL; 202 {"sid","account"}
 *   GET  /sim/sms/messages/{Sid}  {"resource","params" (the form received),
 *        "callbacks" (MessageStatus values posted, in order)}
 *   GET  /sim/sms/recipients/{E.164}  {"requests","accepted","rejected",
 *        "opted_out","last_body"} (404 if never seen; /sim/reset keeps these)
 *   GET|POST /sim/sms/config  read / change the knobs (the keys below)
 * Sends count into /sim/stats and /sim/duplicates like WhatsApp's: per
 * MessageSid and per (To, digest of From/Body/MediaUrl).
 *
 * After a 201 with a StatusCallback (loopback URLs only), callbacks follow as
 * Twilio sends them: no callback for the initial status; with a Messaging
 * Service queued, then sent, then delivered (or undelivered/failed with
 * ErrorCode); RawDlrDoneDate on the final one. Each is signed with
 * X-Twilio-Signature over that exact URL and its parameters and carries an
 * I-Twilio-Idempotency-Token that stays the same on retries and duplicates.
 *
 * Knobs (sim.sms.* or POST /sim/sms/config): latency_ms, latency_jitter_ms,
 * rate_429, rate_5xx, fail_rate (accepted, then undelivered 30003),
 * queued_delay_ms, sent_delay_ms, delivered_delay_ms, reply_delay_ms,
 * dup_rate (a callback posted twice), reorder_rate (the final status before
 * sent), webhook_retry_s, advanced_opt_out (inbound keywords carry
 * OptOutType), keep_messages (resources kept for GET, default 20000, oldest
 * dropped), seed, and recipients: {"+1555...": {"error": 21211} |
 * {"undelivered": 30003} | {"failed": 30008} | {"reply": "STOP"}}. A reply is posted to the
 * account's webhook URL after the message is delivered. Like Twilio, the sim remembers opt-outs:
 * after STOP (a reply or /sim/sms/inbound) a send to that number gets 21610 until START.
 */
#ifndef HR_SIM_SMS_H
#define HR_SIM_SMS_H

#include "sim/sim_int.h"

/* What an SMS route answers; sim_http.c turns it into its own reply. */
struct sim_sms_reply {
	unsigned int status;
	char *body; /* heap JSON; NULL means out of memory */
	int64_t delay_us;
};

/* Loads tenants[].accounts[] with channel sms and sim.sms; starts the
 * callback thread. config is borrowed for the call. */
int sim_sms_start(struct sim *s, json_t *config, struct hr_err *err);
/* Stops the thread (pending callbacks are dropped) and frees the SMS side.
 * Call after the HTTP daemon stopped. Safe if sim_sms_start never ran. */
void sim_sms_stop(struct sim *s);
/* Answers the request if its URL is Twilio's or /sim/sms/...; false if not. */
bool sim_sms_route(struct sim *s, struct MHD_Connection *c, const char *url, const char *method,
                   const char *body, size_t len, bool too_large, struct sim_sms_reply *rep);

/* ---------------------------------------------------------------------------
 * Shared by sim_sms.c and sim_sms_post.c.
 * ------------------------------------------------------------------------- */

struct sms_account {
	char id[HR_NAME_MAX];
	char *account_sid, *auth_token;
	char *api_key_sid, *api_key_secret; /* NULL when not configured */
	char *from, *service_sid;           /* the configured sender */
	char *sender;                       /* From of callbacks / To of inbound messages */
	char *webhook_url;                  /* {herald_url}/webhooks/sms/{id}: inbound messages */
};

/* A webhook request: exact bytes, signed once, resent as they are. */
struct sms_post {
	char *url;
	char *body;
	size_t len;
	struct curl_slist *headers;
	char sid[40];    /* the message it reports on ("" for inbound) */
	char status[16]; /* MessageStatus it reports ("" for inbound) */
	int error_code;  /* its ErrorCode, 0 if none */
	int acct;        /* index into the SMS accounts */
	int optout;      /* inbound keyword: +1 STOP..., -1 START..., applied when posted */
	char from[HR_ADDR_MAX];
	int attempts;
	int64_t first_at; /* monotonic us of the first attempt, 0 before */
	/* The provider's record moves (a lookup sees it) but the receipt is
	 * never posted: a lost delivery report (recipients.<n>.lose_receipts). */
	bool silent;
};

struct sms_sched; /* the callback thread's queue (sim_sms_post.c) */

struct sms_knobs;

struct sim_sms {
	struct sms_account *accounts;
	size_t naccounts;
	pthread_mutex_t lock; /* knobs, messages, ring, optouts, recipients */
	struct sms_knobs *knobs;
	json_t *messages; /* sid -> {"resource","params","callbacks"} */
	char **ring;      /* sids in creation order, for keep_messages */
	size_t ring_cap, ring_head, ring_n;
	json_t *optouts;    /* "<account index>:<digits>" -> true */
	json_t *recipients; /* digits -> counters */
	struct sms_sched *sched;
};

/* A form parameter list being built, in order. */
struct sms_form {
	char **names, **values;
	size_t n, cap;
	bool oom;
};
void sms_form_add(struct sms_form *f, const char *name, const char *value);
void sms_form_free(struct sms_form *f);

/*
 * Builds a POST to url from f: encodes the body, signs it as Twilio does
 * (X-Twilio-Signature over url + the parameters sorted by name) with token
 * and adds a fresh I-Twilio-Idempotency-Token. NULL on OOM.
 */
struct sms_post *sms_post_new(const char *url, const struct sms_form *f, const char *token);
struct sms_post *sms_post_dup(const struct sms_post *p); /* same bytes and token */
void sms_post_free(struct sms_post *p);
/* Twilio's signature of url + params (exposed for the tests' cross-check). */
void sms_sign(const char *token, const char *url, const struct sms_form *f, char out[29]);

int sms_sched_start(struct sim *s, struct hr_err *err);
void sms_sched_stop(struct sim *s);
/* Queues a post due at the monotonic time `due`; takes ownership (frees it
 * when the simulator is stopping). */
void sms_sched_push(struct sim *s, struct sms_post *p, int64_t due);
/* Called by the callback thread when a post is about to go out (records the
 * status on the message and applies inbound opt-outs). sim_sms.c. */
void sms_on_post(struct sim *s, const struct sms_post *p);
double sms_retry_window_s(struct sim *s); /* webhook_retry_s of the current knobs */

#endif
