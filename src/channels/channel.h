/*
 * channel.h - the channel adapter interface: one file per provider fills one
 * struct channel_ops (the shape of curl's struct Curl_ssl). Adapters do no
 * I/O: they build requests, classify responses, verify and parse webhooks.
 * The dispatcher does the sending (curl multi); the ingress and applier do
 * the storing.
 *
 * Canonical message content (the JSON the API stores in message.content).
 * The API copies these from the request as given and renders templates; each
 * adapter's validate() decides what its channel supports and names the field.
 *   {"type":"text","text":"Hello",
 *    "buttons":[{"id":"yes","title":"Yes"},...],          optional reply buttons
 *    "actions":[{"title":"Call us","dial":"+1555..."}|{"title":..,"url":..}],
 *    "options":{...}}                                      channel-specific knobs
 *   {"type":"template","template":{"name":"payment_reminder","language":"en_GB",
 *      "parameters":["Ana","£120.00"],                     body {{n}} values
 *      "header":{"type":"text","text":".."}|{"type":"image","url":".."}|
 *               {"type":"document","url":"..","filename":".."},
 *      "buttons":[{"index":0,"payload":"PAY_NOW"}|{"index":1,"text":"url-suffix"}],
 *      "regulatory":{...}}}   copied by the API from the template's config
 *   {"type":"document","document":{"url":"..","filename":"..","caption":".."}}
 *   {"type":"image","image":{"url":"..","caption":".."}}
 *   {"type":"card","card":{"title":"..","description":"..","media_url":"..",
 *      "buttons":[..],"actions":[..]}}                      RCS rich card
 *   {"type":"carousel","cards":[<card>,...]}                RCS carousel
 * "options" keys by channel: whatsapp {"preview_url":bool}; sms
 * {"validity_period":secs}; rcs {"ttl":"86400s"}; telegram
 * {"parse_mode":"HTML"|"MarkdownV2"}. Reply-button presses come back as
 * inbound events linked to the message; adapters that must put a reference to
 * the message in the button (RBM postbackData, Telegram callback_data) do so.
 */
#ifndef HR_CHANNEL_H
#define HR_CHANNEL_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"
#include "store/store.h"

struct channel_ops;

/*
 * What the operator lets tenants do with the accounts they create through the
 * API (accounts in the config file are the operator's own and unrestricted).
 * A tenant-created account:
 *  - reads secrets only from its tenant's own namespace: environment
 *    variables "<env_prefix>..." and files under "<file_dir>" (regular files
 *    inside that directory after resolving symlinks). By default the prefix
 *    is server.secret_env_prefix + the tenant id in upper case (runs of other
 *    characters as one '_') + "__", and the directory server.secret_file_dir
 *    + the tenant id + "/"; both may be set per tenant. The namespaces are
 *    checked at start to be prefix-free, so no tenant's can reach into
 *    another's. Errors never say what a reference holds or whether it exists.
 *  - sends only to https and its provider's public origin(s) (each adapter's
 *    provider_origins), or to an origin the operator lists in
 *    server.allowed_origins ("http://127.0.0.1:9090" for the simulator or a
 *    proxy); never to a URL with userinfo.
 */
struct channel_tenant_ns {
	char tenant_id[HR_NAME_MAX];
	char env_prefix[160];
	char file_dir[256]; /* ends with '/' */
};
struct channel_policy {
	char (*origins)[160]; /* "scheme://host:port", lower case, port explicit */
	size_t norigins;
	struct channel_tenant_ns *ns;
	size_t nns;
};
/* Reads server.secret_env_prefix, server.secret_file_dir, server.allowed_origins
 * and tenants[].{id, secret_env_prefix, secret_file_dir} from the config.
 * HR_EINVAL naming the key when namespaces overlap or an origin is bad. */
int channel_policy_init(struct channel_policy *p, json_t *config, struct hr_err *err);
void channel_policy_clear(struct channel_policy *p);
/* The tenant's namespace, or NULL when it has none (no references allowed). */
const struct channel_tenant_ns *channel_policy_ns(const struct channel_policy *p,
                                                  const char *tenant_id);
/* Canonical "scheme://host:port" of an absolute http(s) URL into out, or
 * HR_EINVAL (userinfo, other schemes, no host, unparsable). */
int channel_url_origin(const char *url, char *out, size_t outsz);

/* A sender account (e.g. one WhatsApp phone number) with resolved secrets. */
struct channel_account {
	char id[HR_NAME_MAX];
	char tenant_id[HR_NAME_MAX];
	char unit[HR_NAME_MAX]; /* the business unit that owns it; "" = the tenant's, shared */
	/* Created by a tenant through the API: the policy applies (secrets from
	 * the tenant's namespace only, provider origins only). */
	bool restricted;
	/* The account sends to a host that is not its provider's public origin
	 * and was created by a tenant: what such a host answers (raw bodies,
	 * network errors) is never echoed back (channel_outcome_sanitize). */
	bool mask_answers;
	const struct channel_policy *policy; /* borrowed; NULL = no tenant namespaces */
	/* Where this account's provider webhooks/callbacks reach Herald:
	 * {server.public_url}/webhooks/{channel}/{id}; "" until
	 * account_set_public_url() (Twilio's StatusCallback uses it). */
	char webhook_url[256];
	const struct channel_ops *ops;
	double rate_limit;   /* messages per second ("rate_limit" in config) */
	/* "delivery_policy" in config: what its messages do when a send's
	 * outcome is unknown, unless the template or message says otherwise
	 * (herald.h enum delivery_policy; default at_least_once). */
	enum delivery_policy delivery_policy;
	json_t *config;      /* the account's config object, owned */
	void *priv;          /* adapter state (resolved secrets, URLs), owned by ops */
	/* Secret rotation (secret_watch.c). secret_fp: what the files its
	 * file: secret references name looked like (inode, size, times) just
	 * before they were read; the watcher reloads the account when that
	 * changes. prev: the account this one replaced (a rotation or an API
	 * re-registration; retired, never freed, so the pointer stays valid),
	 * whose secrets still verify webhooks until prev_until (hr_now_us;
	 * 0: not at all). retry_fp: the watcher's own note of a fingerprint
	 * already handled (the reload failed, or the content had not changed;
	 * only the watcher thread reads or writes it). */
	uint64_t secret_fp;
	const struct channel_account *prev;
	int64_t prev_until;
	uint64_t retry_fp;
	/* SHA-256 of what its file: secrets held when it was loaded (read
	 * after secret_fp was taken, before the adapter read them): a file
	 * whose metadata changed but whose content did not (touched, or
	 * rewritten the same) does not reload the account. */
	unsigned char secret_sum[32];
	bool has_sum;
};

/* An HTTP request an adapter built. All fields heap-owned; http_req_clear frees. */
struct http_req {
	char *url;
	struct curl_slist *headers;
	char *body;
	size_t body_len;
	char *userpwd;       /* "user:password" for Basic auth, or NULL */
	/* The provider id this send will have when the sender chooses it (RBM's
	 * messageId), or "". Used when the provider accepts without echoing an
	 * id, e.g. RBM's 409 ALREADY_EXISTS for a retry of an accepted send. */
	char provider_id[HR_PROVIDER_ID_MAX];
};
void http_req_clear(struct http_req *r);
/* Sets the options every request to a provider carries (http_opts.c): r's
 * URL, POST body, headers and Basic auth (borrowed: r must outlive the
 * transfer), a whole-request timeout, http(s) only and no redirects
 * followed. 0; HR_ENOMEM when libcurl ran out of memory (may pass: retry
 * later); HR_EINTERNAL when it refused an option (will recur). err names
 * the option. The caller sets the rest (write callbacks, keep-alive). Every
 * option is set on every call, Basic auth cleared when r has none: a handle
 * used before (for another account) carries none of its options over. */
int http_req_setopts(CURL *e, const struct http_req *r, long timeout_ms, struct hr_err *err);
/* A PEM file of CA certificates trusted for HTTPS besides the system's
 * (dispatch.ca_file; NULL: the system's only). Set once at start, before any
 * request; the path is copied. 0, or HR_EINVAL naming the field when the file
 * cannot be read. */
int http_set_ca_file(const char *path, struct hr_err *err);
/* Sets the trusted CA options (http_set_ca_file) on e: for the requests
 * that do not go through http_req_setopts (RBM's token fetches). */
CURLcode http_set_tls(CURL *e);

enum outcome_class {
	OUTCOME_OK = 0,
	OUTCOME_TRANSIENT = 1,     /* network, timeout, 5xx, "try again"     */
	OUTCOME_RATE_LIMITED = 2,  /* 429 or a provider throttle code        */
	OUTCOME_PERMANENT = 3,     /* will never succeed as sent             */
};
const char *outcome_class_name(enum outcome_class c); /* "ok", "transient", ... */

/*
 * Who a rate limit is on (PROVIDERS.md), declared by the adapter for every
 * OUTCOME_RATE_LIMITED answer it classifies:
 *  ACCOUNT:   the sender (phone number, Twilio account, bot, agent) is at
 *             its limit: the dispatcher pauses the whole account for the
 *             hinted delay (WhatsApp 130429/80007/4/131048, Twilio
 *             20429/14107/30001, Telegram 429 retry_after, RBM 429
 *             RESOURCE_EXHAUSTED, and a bare HTTP 429 that names no scope);
 *  RECIPIENT: only this sender-recipient pair is limited (WhatsApp 131056,
 *             the pair rate limit): this message waits, the account's other
 *             recipients keep their full rate.
 * NONE on any other outcome. A RATE_LIMITED outcome left at NONE is a bug
 * in its adapter; the dispatcher then pauses the account (the safe side).
 */
enum rate_scope {
	RATE_SCOPE_NONE = 0,
	RATE_SCOPE_ACCOUNT = 1,
	RATE_SCOPE_RECIPIENT = 2,
};
const char *rate_scope_name(enum rate_scope s); /* "none", "account", "recipient" */

/* What a provider's answer to a send means. */
struct send_outcome {
	enum outcome_class cls;
	char provider_id[HR_PROVIDER_ID_MAX];
	char error_code[HR_ERRCODE_MAX];   /* provider's code, e.g. "131026" */
	char error_text[HR_ERRTEXT_MAX];   /* provider's text */
	int64_t retry_after_us;            /* hint from Retry-After or the body, 0 if none */
	bool account_blocked;              /* stop this account's sends (token expired...) */
	/* cls RATE_LIMITED: whom the limit is on (enum rate_scope). */
	enum rate_scope rate_scope;
	/* The recipient moved (Telegram migrate_to_chat_id): resend there at
	 * once (cls TRANSIENT, retry_after 0) and remember it. "" otherwise. */
	char new_recipient[HR_ADDR_MAX];
	/* The recipient opted out at the provider (Twilio 21610): suppress. */
	bool suppress_recipient;
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
	/* Requests to make to the provider once the events are committed, e.g.
	 * Telegram's answerCallbackQuery (without it the button keeps spinning).
	 * The applier sends them (bounded timeout) and logs failures. */
	struct http_req *followups;
	size_t nfollowups, capfollowups;
};
void wh_parsed_clear(struct wh_parsed *p);
/* Appends a zeroed entry and returns it (NULL on OOM). */
struct wh_status *wh_parsed_add_status(struct wh_parsed *p);
struct wh_inbound *wh_parsed_add_inbound(struct wh_parsed *p);
struct http_req *wh_parsed_add_followup(struct wh_parsed *p);

/* What Herald answers to a webhook POST it accepted (stored), with status 200. */
struct wh_answer {
	const char *content_type;
	const char *body;
};

struct channel_ops {
	const char *name;          /* "whatsapp" */
	bool has_receipts;         /* false: messages are final at SENT (Telegram) */
	/* The config keys that hold secrets (NULL-terminated), by declaration:
	 * channel_cfg_secret reads only these, and the API takes only
	 * references for them. */
	const char *const *secret_fields;
	/* The provider's public origins ("https://graph.facebook.com"), the
	 * only ones a tenant-created account may send to unless the operator
	 * allows more (NULL-terminated). */
	const char *const *provider_origins;

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

	/* Builds the provider request for one message. HR_EBUSY: not now (e.g.
	 * no access token could be had): retried with backoff; any other error
	 * fails the message. */
	int (*build_send)(const struct channel_account *acct, const struct message *m,
	                  struct http_req *out, struct hr_err *err);
	/* Classifies the provider's answer. http_status 0 means no answer
	 * (network error or timeout; body is then curl's error text). */
	void (*parse_send)(const struct channel_account *acct, long http_status,
	                   const char *body, size_t len, const char *retry_after,
	                   struct send_outcome *out);

	/* Set-up handshakes, tried on every webhook request before the signature
	 * check (WhatsApp: GET hub.challenge; RBM: POST with clientToken and secret).
	 * Returns 1 if this request was a handshake and *status and *body (heap,
	 * text/plain) are the answer; 0 if it is not one (go on to verify and
	 * store it). NULL if the channel has none. */
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
	/* The answer to an accepted webhook POST, or NULL for the default ("{}"
	 * as application/json). Providers that read the answer as instructions
	 * need their own: Twilio takes it as TwiML and logs an error for
	 * anything else. Static, never freed. */
	const struct wh_answer *webhook_answer;

	/* Optional (NULL if the channel has none): asks the provider whether a
	 * recipient can receive this channel (RBM's capability check). Blocking
	 * network I/O with a bounded timeout: never from the dispatcher. 0 and
	 * *features (a JSON array, caller decrefs); HR_ENOTFOUND when the
	 * recipient is not capable; HR_EBUSY when the provider did not answer
	 * usefully; HR_EINVAL for a bad recipient. err says which. */
	int (*capability)(const struct channel_account *acct, const char *recipient,
	                  json_t **features, struct hr_err *err);
	/* Optional: waits until the account can send (RBM: its first access
	 * token, fetched in the background as the account loads, came or its
	 * fetch failed) or until deadline_us (monotonic); true if ready. Used
	 * once at start so the first sends do not go out unauthenticated. */
	bool (*await_ready)(const struct channel_account *acct, int64_t deadline_us);
	/* Optional (NULL if the provider has no status lookup): the request
	 * that asks for a sent message's status by its provider id (Twilio's
	 * GET Message resource), and what the answer says. The reconciler
	 * does the I/O (GET, bounded timeout) for messages that got no receipt
	 * in time. build_lookup: HR_EINVAL naming "provider_id" for an id that
	 * cannot be asked about. parse_lookup fills out->answered, status,
	 * provider_status and the error (a status that is no receipt yet, such
	 * as "queued", is answered with QUEUED), or out->lookup_error. */
	int (*build_lookup)(const struct channel_account *acct, const char *provider_id,
	                    struct http_req *out, struct hr_err *err);
	void (*parse_lookup)(const struct channel_account *acct, long http_status, const char *body,
	                     size_t len, struct stale_answer *out);
	/* optional (NULL: the channel's credentials do not expire):
	 * the access token the adapter holds for the account (RBM's OAuth
	 * token). *expires_us the wall-clock time it stops being valid (0: none
	 * held yet); error (error_size bytes) the last fetch's failure, "" if
	 * none. Takes only the adapter's own short lock. */
	void (*token_state)(const struct channel_account *acct, int64_t *expires_us, char *error,
	                    size_t error_size);
	/* optional: what one of the provider's error codes means, from
	 * the adapter's own error table ("Message undeliverable"), or NULL when
	 * it does not know the code. For the overview's top failure codes. */
	const char *(*error_meaning)(const char *code);
};

extern const struct channel_ops channel_whatsapp;
extern const struct channel_ops channel_sms;       /* twilio.c, name "sms"   */
extern const struct channel_ops channel_rcs;       /* rbm.c, name "rcs"      */
extern const struct channel_ops channel_telegram;  /* telegram.c             */

/* Waits (until deadline_us, monotonic) for RBM's token thread to end once
 * every RBM account is freed; a fetch still running for a freed account is
 * aborted. Call before curl_global_cleanup() at exit. Whether it ended. */
bool rbm_refresher_quiesce(int64_t deadline_us);

/*
 * whether adapters build request bodies with the fixed-shape
 * writer (core/jsonw.h) and read success answers with the token reader
 * (core/jsonr.h) instead of jansson trees; true unless turned off. Both
 * ways give the same bytes and outcomes: the unit tests turn it off to get
 * jansson's result and compare. Set before any thread sends.
 */
extern bool channel_fast_json;
/* How many bodies and answers this thread built or read the fast way (the
 * tests check that the fast path, not its jansson fallback, served). */
extern _Thread_local unsigned long channel_fast_json_hits;
/* the text of the commonest content, a plain text
 * ({"type":"text","text":"..."} with none of the keys named in refuse, a
 * NULL-terminated list; other keys are ignored, as the adapters' validate
 * ignores them), read with jsonr: unescaped and non-empty, on the heap
 * (the caller frees), or NULL to decline (the jansson way then builds or
 * refuses the message as before). The adapter checks its own length. */
char *channel_plain_text(const char *content, const char *const *refuse);

/* Helpers every adapter uses (registry.c). */
/* Retry-After as delta seconds or an HTTP date, in microseconds from now,
 * capped at a day; 0 when absent or unparseable. */
int64_t channel_retry_after_us(const char *value);
/* A short printable excerpt of a non-JSON answer, for error texts. */
void channel_body_excerpt(const char *body, size_t len, char *out, size_t outsz);
/* For parse_send: when there was no HTTP answer (http_status 0), fills out as
 * a transient "network" failure with curl's text and returns true. */
bool channel_network_outcome(long http_status, const char *body, size_t len,
                             struct send_outcome *out);
/* The class of an HTTP error status with no better information (PROVIDERS.md):
 * 429 rate limited, 5xx and 408 transient, any other status permanent. */
enum outcome_class channel_http_class(long http_status);
/* Sets out->cls from channel_http_class; a 429 that names no scope limits
 * the account (rate_scope ACCOUNT). */
void channel_http_outcome(struct send_outcome *out, long http_status);
/* what the codes every adapter may record itself mean: "network"
 * (no answer) and "http_<status>" (an answer without the provider's own
 * error body), by status class; NULL for any other code. For an adapter's
 * error_meaning, after its own table. */
const char *channel_common_meaning(const char *code);

/* Account config readers for adapters' account_load. Errors name the key as
 * "accounts[<id>].<key>". */
void channel_cfg_field(char *out, size_t n, const struct channel_account *a, const char *key);
/* A non-empty string; *out NULL when absent and not required. */
int channel_cfg_str(const struct channel_account *a, const char *key, bool required,
                    const char **out, struct hr_err *err);
/* A secret reference ("env:X", "file:/p" or a literal) resolved into *out
 * (heap, caller frees with hr_secret_free); NULL when absent and not
 * required. key must be one of ops->secret_fields (HR_EINTERNAL otherwise).
 * For a restricted account the reference must lie in its tenant's namespace
 * (HR_EFORBIDDEN), and errors never quote what it holds. */
int channel_cfg_secret(const struct channel_account *a, const char *key, bool required,
                       char **out, struct hr_err *err);
/* Whether key is one of ops' declared secret fields. */
bool channel_secret_field(const struct channel_ops *ops, const char *key);
/* An absolute http(s) URL without userinfo (config key `key`, or def when
 * absent and def != NULL). A restricted account's URL must be https on one
 * of the provider's origins or an operator-allowed origin (HR_EFORBIDDEN).
 * Sets a->mask_answers when a restricted account's URL is not a provider
 * origin. *out borrowed from the config (or def). */
int channel_cfg_url(struct channel_account *a, const char *key, const char *def,
                    const char **out, struct hr_err *err);
/* The same check for a URL found elsewhere (e.g. a service account's
 * token_uri); field names it in errors. */
int channel_url_check(struct channel_account *a, const char *url, const char *field,
                      struct hr_err *err);
/* After parse_send: for accounts with mask_answers, replaces the error text
 * (which may quote what the host answered, or curl's text on which ports
 * are open) with a neutral one, so a tenant cannot use Herald to read what
 * an address answers. */
void channel_outcome_sanitize(const struct channel_account *a, long http_status,
                              struct send_outcome *out);

/* The registry (registry.c): one line per channel. NULL if unknown. */
const struct channel_ops *channel_find(const char *name);
/* The names of the channels without delivery receipts (has_receipts
 * false), whose messages are final at SENT: up to max into names[]
 * (static strings); returns how many. */
size_t channel_final_at_sent(const char **names, size_t max);

/* Makes a loaded account from a store row (config parsed, secrets resolved).
 * Caller frees with channel_account_free. */
int channel_account_new(const struct account_row *row, struct channel_account **out,
                        struct hr_err *err);
/* The same under a policy (borrowed, outlives the account): a row with
 * api_created set is loaded restricted. */
int channel_account_new_policy(const struct account_row *row, const struct channel_policy *policy,
                               struct channel_account **out, struct hr_err *err);
void channel_account_free(struct channel_account *a);

/* The set of all loaded accounts, looked up by id. Loaded at start; accounts
 * added or changed later through the API are put in with account_set_put.
 * Lookups take a read lock; a looked-up account stays valid until
 * account_set_clear (a replaced account is retired, not freed), so callers
 * may keep the pointer. `generation` changes on every put, so the
 * dispatcher can notice new accounts. */
struct account_set {
	struct channel_account **items;
	size_t n, cap;
	struct channel_account **retired;
	size_t nretired;
	char public_url[192];
	const struct channel_policy *policy; /* borrowed, may be NULL */
	unsigned generation;
	/* How long a replaced account's secrets still verify webhooks
	 * (server.secret_grace_s; 0: the new secrets only). */
	int64_t grace_us;
	pthread_rwlock_t lock;
};
int account_set_load(struct store *st, struct account_set *out, struct hr_err *err);
/* The same under a policy (kept in the set, borrowed). A tenant-created
 * account that no longer loads under it (the operator narrowed the policy)
 * is left out with a warning instead of stopping the start. */
int account_set_load_policy(struct store *st, const struct channel_policy *policy,
                            struct account_set *out, struct hr_err *err);
/* Sets server.public_url and fills every account's webhook_url. */
void account_set_public_url(struct account_set *s, const char *public_url);
/* Adds a loaded account, or replaces the one with the same id. Takes ownership. */
int account_set_put(struct account_set *s, struct channel_account *a);
/* Replaces old with a only if old is still the set's account of that id
 * (HR_ECONFLICT otherwise: someone replaced it meanwhile; a is not taken).
 * Takes ownership of a on success. */
int account_set_replace(struct account_set *s, const struct channel_account *old,
                        struct channel_account *a);
struct channel_account *account_set_find(struct account_set *s, const char *id);
/* The i-th account (sorted by id) or NULL past the end; for iteration. */
struct channel_account *account_set_at(struct account_set *s, size_t i);
/* Waits (until deadline_us, monotonic) for every account's await_ready;
 * returns how many were still not ready. */
size_t account_set_await_ready(struct account_set *s, int64_t deadline_us);
unsigned account_set_generation(struct account_set *s);
void account_set_clear(struct account_set *s);

/*
 * Secret rotation without a restart (secret_watch.c). A changed secret file
 * is noticed by polling: a watcher thread stats the file: references of
 * every account every interval and reloads (re-resolves and re-validates)
 * an account whose files changed, publishing the new account with
 * account_set_replace; the dispatcher and the webhook ingress find it on
 * their next lookup. Nothing on the send path reads a file or waits for
 * the watcher. env: references cannot change in a running process.
 */
/* FNV-1a over each declared secret's reference and, for file: references,
 * the file's device, inode, size, mtime and ctime (or the stat error). */
uint64_t channel_secret_fingerprint(const struct channel_account *a);
/* SHA-256 over each file: secret's field name and value as the account
 * would resolve it now (or the error it gets). false when it could not be
 * computed (compare as changed). */
bool channel_secret_sum(const struct channel_account *a, unsigned char out[32]);
/* One pass over the set: reloads each account whose fingerprint changed
 * and whose files' content differs from what it loaded.
 * *reloaded (may be NULL) gets how many were replaced, *failed (may be
 * NULL) how many changed but did not load (they keep their old secrets; a
 * warning names the account and the field, never a value; retried when
 * the files change again). */
void account_set_rotate(struct account_set *s, size_t *reloaded, size_t *failed);
/* Verifies a webhook with the account's secrets and, if that fails, with
 * those of the accounts it replaced while their grace runs (at most 4
 * back). 0 and *by_prev (may be NULL) true when an older secret verified;
 * else the current account's error. */
int channel_webhook_verify_rotating(const struct channel_account *a, const struct wh_request *req,
                                    int64_t now, bool *by_prev, struct hr_err *err);

struct secret_watch;
/* Starts the watcher over s (borrowed; outlives the watcher): a pass every
 * interval_us (>= 10 ms); on_change(arg) (may be NULL) after a pass that
 * replaced accounts (serve wakes the dispatcher with it). */
int secret_watch_start(struct account_set *s, int64_t interval_us, void (*on_change)(void *),
                       void *arg, struct secret_watch **out, struct hr_err *err);
/* Stops and frees it; NULL is fine. */
void secret_watch_stop(struct secret_watch *w);

#endif
