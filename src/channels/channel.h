/*
 * channel.h - the channel adapter interface: one file per provider fills one
 * struct channel_ops (the shape of curl's struct Curl_ssl). Adapters do no
 * I/O: they build requests, classify responses, verify and parse webhooks.
 * The dispatcher does the sending (curl multi); the ingress and applier do
 * the storing.
 *
 * Canonical message content (the JSON the API stores in message.content):
 *   {"type":"text","text":"Hello"}
 *   {"type":"template","template":{"name":"payment_reminder","language":"en_GB",
 *                                  "parameters":["Ana","£120.00"]}}
 * (later issues add media, interactive and per-component parameters).
 */
#ifndef HR_CHANNEL_H
#define HR_CHANNEL_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"
#include "store/store.h"

struct channel_ops;

/* A sender account (e.g. one WhatsApp phone number) with resolved secrets. */
struct channel_account {
	char id[HR_NAME_MAX];
	char tenant_id[HR_NAME_MAX];
	const struct channel_ops *ops;
	double rate_limit;   /* messages per second ("rate_limit" in config) */
	json_t *config;      /* the account's config object, owned */
	void *priv;          /* adapter state (resolved secrets, URLs), owned by ops */
};

/* An HTTP request an adapter built. All fields heap-owned; http_req_clear frees. */
struct http_req {
	char *url;
	struct curl_slist *headers;
	char *body;
	size_t body_len;
	char *userpwd;       /* "user:password" for Basic auth, or NULL */
};
void http_req_clear(struct http_req *r);

enum outcome_class {
	OUTCOME_OK = 0,
	OUTCOME_TRANSIENT = 1,     /* network, timeout, 5xx, "try again"     */
	OUTCOME_RATE_LIMITED = 2,  /* 429 or a provider throttle code        */
	OUTCOME_PERMANENT = 3,     /* will never succeed as sent             */
};
const char *outcome_class_name(enum outcome_class c); /* "ok", "transient", ... */

/* What a provider's answer to a send means. */
struct send_outcome {
	enum outcome_class cls;
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];   /* provider's code, e.g. "131026" */
	char error_text[HR_ERRTEXT_MAX];   /* provider's text */
	int64_t retry_after_us;            /* hint from Retry-After or the body, 0 if none */
	bool account_blocked;              /* stop this account's sends (token expired...) */
};

/* An incoming webhook request, as the ingress received it. Borrowed. */
struct wh_request {
	const char *method;        /* "GET" or "POST" */
	const char *url;           /* full public URL incl. query (for Twilio) */
	const char *body;
	size_t body_len;
	/* Returns a header's value (case-insensitive name) or NULL. */
	const char *(*header)(void *ctx, const char *name);
	/* Returns a query argument's value or NULL. */
	const char *(*query)(void *ctx, const char *name);
	void *ctx;
};

/* Events parsed from one webhook body. Arrays are heap; wh_parsed_clear frees. */
struct wh_parsed {
	struct wh_status *statuses;
	size_t nstatuses, capstatuses;
	struct wh_inbound *inbound;
	size_t ninbound, capinbound;
};
void wh_parsed_clear(struct wh_parsed *p);
/* Appends a zeroed entry and returns it (NULL on OOM). */
struct wh_status *wh_parsed_add_status(struct wh_parsed *p);
struct wh_inbound *wh_parsed_add_inbound(struct wh_parsed *p);

struct channel_ops {
	const char *name;          /* "whatsapp" */
	bool has_receipts;         /* false: messages are final at SENT (Telegram) */

	/* Validates acct->config and resolves secrets into acct->priv. The error
	 * names the config key ("accounts[demo-wa].app_secret"). */
	int (*account_load)(struct channel_account *acct, struct hr_err *err);
	void (*account_free)(struct channel_account *acct);

	/* Normalises a recipient address (e.g. "+44 7911 123456" -> "447911123456"
	 * for WhatsApp); HR_EINVAL naming field "to" if it is not one. */
	int (*normalize_recipient)(const char *in, char out[HR_ADDR_MAX], struct hr_err *err);
	/* Checks canonical content is sendable on this channel (lengths, types);
	 * errors name the JSON field ("text", "template.name"). */
	int (*validate)(const json_t *content, struct hr_err *err);

	/* Builds the provider request for one message. */
	int (*build_send)(const struct channel_account *acct, const struct message *m,
	                  struct http_req *out, struct hr_err *err);
	/* Classifies the provider's answer. http_status 0 means no answer
	 * (network error or timeout; body is then curl's error text). */
	void (*parse_send)(const struct channel_account *acct, long http_status,
	                   const char *body, size_t len, const char *retry_after,
	                   struct send_outcome *out);

	/* GET handshakes (WhatsApp hub.challenge). Sets *status and *body (heap,
	 * text/plain). NULL if the channel has none. */
	int (*webhook_handshake)(const struct channel_account *acct, const struct wh_request *req,
	                         int *status, char **body);
	/* Verifies the signature over the raw body: 0 or HR_EAUTH (err says why). */
	int (*webhook_verify)(const struct channel_account *acct, const struct wh_request *req,
	                      struct hr_err *err);
	/* A provider-given idempotency key for the raw request, or "" (out[128]). */
	void (*webhook_dedupe_key)(const struct wh_request *req, char out[128]);
	/* Parses a verified body into statuses and inbound messages. HR_EINVAL
	 * (err naming the JSON path) if malformed. */
	int (*webhook_parse)(const struct channel_account *acct, const char *body, size_t len,
	                     struct wh_parsed *out, struct hr_err *err);
};

extern const struct channel_ops channel_whatsapp;

/* The registry (registry.c): one line per channel. NULL if unknown. */
const struct channel_ops *channel_find(const char *name);

/* Makes a loaded account from a store row (config parsed, secrets resolved).
 * Caller frees with channel_account_free. */
int channel_account_new(const struct account_row *row, struct channel_account **out,
                        struct hr_err *err);
void channel_account_free(struct channel_account *a);

/* The set of all loaded accounts, looked up by id. Built once at start; read-
 * only afterwards, so any thread may look up without locking. */
struct account_set {
	struct channel_account **items;
	size_t n;
};
int account_set_load(struct store *st, struct account_set *out, struct hr_err *err);
struct channel_account *account_set_find(const struct account_set *s, const char *id);
void account_set_clear(struct account_set *s);

#endif
