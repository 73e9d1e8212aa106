/*
 * api_int.h - what the files of the HTTP server share: the server and
 * per-request structs, the route table's handlers, the error table and the
 * suspend/resume helpers. Not used outside src/api/.
 *
 * Threads: MHD's pool threads run the handlers; the store's writer thread
 * and the dispatcher run the completion callbacks, which only fill the
 * request's result fields (the insert's also registers a sync request's
 * dispatcher watch) and resume its connection. A request's fields are
 * touched by one thread at a time: the suspend/resume pair, or the watch
 * registration, hands it over.
 */
#ifndef HR_API_INT_H
#define HR_API_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "api/api.h"

/*
 * Scopes a credential carries (README "Security"): each route and method
 * needs one. Config keys without a `scopes` list carry them all.
 */
enum api_scope {
	SCOPE_MESSAGES_SEND = 1u << 0,
	SCOPE_MESSAGES_READ = 1u << 1,
	SCOPE_CAMPAIGNS_WRITE = 1u << 2,
	SCOPE_CAMPAIGNS_READ = 1u << 3,
	SCOPE_TEMPLATES_WRITE = 1u << 4,
	SCOPE_ACCOUNTS_WRITE = 1u << 5,
	SCOPE_SUPPRESSIONS_WRITE = 1u << 6,
	SCOPE_METRICS_READ = 1u << 7,
	SCOPE_ADMIN = 1u << 8,
	SCOPE_ALL = (1u << 9) - 1,
};

/* Who a route and method admits, besides its scope. */
enum api_access {
	ACCESS_PUBLIC,      /* no bearer credential (health, webhooks: signed) */
	ACCESS_TENANT,      /* a tenant's objects; a unit key sees its unit's only */
	ACCESS_TENANT_WIDE, /* a tenant's objects not split by unit: no unit key */
	ACCESS_ADMIN,       /* /v1/tenants/{tenant}/...: that tenant's tenant-wide admin,
	                     * or an operator */
	ACCESS_OPERATOR,    /* operators only (tenants themselves) */
};

/* The authenticated caller of a request. */
struct api_principal {
	char tenant[HR_NAME_MAX]; /* "" for an operator */
	char unit[HR_NAME_MAX];   /* "" = tenant-wide */
	unsigned scopes;          /* enum api_scope bits */
	bool operator;            /* a server.operator_keys key */
	char actor[96];           /* for the audit log: "key:hk_…", "jwt:<sub>", "operator:…" */
};

/* Cache of API key hash -> principal. Entries live auth_cache_us (5 s):
 * a key revoked (or a tenant or unit disabled) on another node stops
 * working here within that; on this node the admin handlers flush it at
 * once. Failed lookups are never cached. */
#define API_KEYCACHE_SLOTS 256
struct api_keycache {
	pthread_rwlock_t lock;
	int64_t ttl_us;
	struct {
		char hash[65];
		struct api_principal who;
		int64_t expires_at; /* the key's own expiry (us, wall clock); 0 never */
		int64_t fetched;    /* monotonic us when read from the store */
		int64_t touched;    /* wall us of the last use recorded (store or here) */
	} slot[API_KEYCACHE_SLOTS];
};

struct api_jwt;

struct api_guard;
struct guard_conn;

struct api_server {
	/* Everything below is set up (api_start's end): until then a request
	 * is answered 503 busy, never handled half-started. */
	atomic_bool ready;
	struct api_opts o; /* copy; strings and pointers borrowed */
	struct MHD_Daemon *mhd;
	struct api_guard *guard; /* connection limits and request deadlines */
	int max_attempts;        /* o.max_attempts, or the dispatcher's default */
	struct api_keycache keys;
	struct api_jwt *jwt;     /* NULL when JWTs are not configured */
	/* Async operations in flight (a suspended connection waiting for a
	 * callback). api_stop waits for zero so no callback outlives the server. */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int pending;
	bool stopping;
	/* Serialises POST /v1/channels (check owner, write, put in the set), so
	 * two tenants racing for one account id cannot both pass the check.
	 * Only that handler takes it. */
	pthread_mutex_t channels_lock;
	struct api_limits *limits;   /* request rates (limits.c) */
	struct batch_runner *runner; /* NULL when this server does not send */
	struct sse_hub *sse;         /* campaign event streams (batch_events.c) */
	struct MHD_Daemon *metrics_mhd; /* server.metrics_listen; NULL: none */
	struct api_sessions *sessions;  /* dashboard sign-ins (session.c) */
	struct api_events *events;      /* GET /v1/events streams (sse.c) */
};

/* The scrape listener (metrics_listen.c): started when o.metrics_listen_addr
 * is set;
 * 0 or HR_EIO naming server.metrics_listen. Stop is a no-op without one. */
int api_metrics_listen_start(struct api_server *s, struct hr_err *err);
void api_metrics_listen_stop(struct api_server *s);

enum api_route {
	ROUTE_NONE = 0,
	ROUTE_HEALTHZ,
	ROUTE_READYZ,
	ROUTE_METRICS,
	ROUTE_MESSAGES,          /* GET list, POST accept */
	ROUTE_MESSAGES_BATCH,    /* POST */
	ROUTE_MESSAGE,           /* GET one */
	ROUTE_WEBHOOK,           /* GET handshake, POST event */
	ROUTE_SUPPRESSIONS,      /* GET list, POST add */
	ROUTE_SUPPRESSION,       /* DELETE /v1/suppressions/{channel}/{to} */
	ROUTE_CHANNELS,          /* GET list, POST create or update */
	ROUTE_CHANNEL,           /* GET one */
	ROUTE_CAPABILITIES,      /* GET /v1/channels/{id}/capabilities */
	ROUTE_BATCHES,           /* GET list, POST create (upload) */
	ROUTE_BATCH,             /* GET one */
	ROUTE_BATCH_START,       /* POST /v1/batches/{id}/start */
	ROUTE_BATCH_CANCEL,      /* POST /v1/batches/{id}/cancel */
	ROUTE_BATCH_ERRORS,      /* GET /v1/batches/{id}/errors: the validation report */
	ROUTE_BATCH_MESSAGES,    /* GET /v1/batches/{id}/messages */
	ROUTE_BATCH_RETRY,       /* POST /v1/batches/{id}/retry */
	ROUTE_BATCH_EVENTS,      /* GET /v1/batches/{id}/events: Server-Sent Events */
	ROUTE_BATCH_EXPORT_CSV,  /* GET /v1/batches/{id}/export.csv */
	ROUTE_BATCH_EXPORT_XLSX, /* GET /v1/batches/{id}/export.xlsx */
	ROUTE_BATCH_PAUSE,       /* POST /v1/batches/{id}/pause {"reason"} */
	ROUTE_BATCH_RESUME,      /* POST /v1/batches/{id}/resume */
	ROUTE_BATCH_BREAKDOWN,   /* GET /v1/batches/{id}/breakdown */
	ROUTE_CALLBACKS,         /* GET /v1/callbacks */
	ROUTE_CALLBACKS_REPLAY,  /* POST /v1/callbacks/replay?status=dead */
	ROUTE_CALLBACK,          /* GET /v1/callbacks/{id} */
	ROUTE_CALLBACK_REPLAY,   /* POST /v1/callbacks/{id}/replay */
	ROUTE_WEBHOOKS_PARKED,   /* GET /v1/webhooks/parked */
	ROUTE_TENANTS,           /* GET list, POST create (operator) */
	ROUTE_TENANT,            /* GET /v1/tenants/{tenant} */
	ROUTE_TENANT_DISABLE,    /* POST /v1/tenants/{tenant}/disable */
	ROUTE_TENANT_ENABLE,     /* POST /v1/tenants/{tenant}/enable */
	ROUTE_UNITS,             /* GET list, POST create */
	ROUTE_UNIT_DISABLE,      /* POST /v1/tenants/{tenant}/units/{unit}/disable */
	ROUTE_UNIT_ENABLE,       /* POST /v1/tenants/{tenant}/units/{unit}/enable */
	ROUTE_KEYS,              /* GET list, POST create */
	ROUTE_KEY_REVOKE,        /* POST /v1/tenants/{tenant}/keys/{prefix}/revoke */
	ROUTE_AUDIT,             /* GET /v1/audit */
	ROUTE_TENANT_LIMITS,     /* POST /v1/tenants/{tenant}/limits (operator) */
	ROUTE_TEMPLATES,         /* GET list, POST create or update */
	ROUTE_TEMPLATE,          /* GET, DELETE /v1/templates/{channel}/{name}/{language} */
	ROUTE_OPENAPI,           /* GET /openapi.json (public) */
	ROUTE_MESSAGES_EXPORT,   /* GET /v1/messages/export.csv */
	ROUTE_PLUGINS,           /* GET /v1/plugins */
	ROUTE_UNIT_STATS,        /* GET /v1/units/{unit}/stats */
	ROUTE_UNIT_CAMPAIGNS,    /* GET /v1/units/{unit}/campaigns */
	/* The dashboard (web.c, session.c, sse.c). */
	ROUTE_WEB_INDEX,      /* GET / */
	ROUTE_WEB_FILE,       /* GET /ui/{path}: path_id holds the rest of the path */
	ROUTE_SESSION,        /* GET, POST (sign in), DELETE (sign out) /v1/session */
	ROUTE_SESSION_UNMASK, /* POST /v1/session/unmask */
	ROUTE_EVENTS,         /* GET /v1/events: the tenant's live events (SSE) */
	/* recipient history (recipients.c). */
	ROUTE_RECIPIENT,         /* GET /v1/recipients/{to} */
	ROUTE_MESSAGE_RECIPIENT, /* GET /v1/messages/{id}/recipient */
	/* sender account health (channels_health.c). */
	ROUTE_CHANNEL_HEALTH, /* GET /v1/channels/{id}/health */
	ROUTE_CHANNEL_PAUSE,  /* POST /v1/channels/{id}/pause */
	ROUTE_CHANNEL_RESUME, /* POST /v1/channels/{id}/resume */
	ROUTE_STATS_DAILY,    /* GET /v1/stats/daily (stats_daily.c) */
	ROUTE_SESSION_VIEW,   /* POST /v1/session/view (session.c) */
	ROUTE_SESSION_TENANT, /* POST /v1/session/tenant (session.c) */
};

struct api_req;
typedef enum MHD_Result (*api_handler_fn)(struct api_req *r);

/* One HTTP request: created by the URI-log callback, freed when MHD says the
 * request is complete. */
struct api_req {
	struct api_server *srv;
	struct MHD_Connection *conn;
	struct guard_conn *gconn; /* the connection's deadline record (guard.c) */
	char *raw_uri;            /* as on the request line, query included */
	const char *uri_at;       /* where MHD had it: compared, never read (hidden_bytes) */
	const char *method;
	enum api_route route;
	api_handler_fn handler;
	bool started, responded;
	bool complete;                   /* the whole body has arrived */
	char tenant[HR_NAME_MAX];        /* set by auth for /v1 routes (who.tenant) */
	struct api_principal who;        /* set by auth for /v1 routes */
	char path_tenant[HR_NAME_MAX];   /* {tenant} of /v1/tenants/{tenant}/... */
	char path_sub[HR_NAME_MAX];      /* {unit} or {prefix} below it */
	char path_id[HR_NAME_MAX];       /* {id} of /v1/messages/{id}, /v1/channels/{id};
	                                  * {to} of /v1/suppressions/{channel}/{to} */
	char path_channel[16];           /* {channel} of /webhooks/{channel}/{account} and
	                                  * /v1/suppressions/{channel}/{to} */
	struct channel_account *account; /* the webhook's account */

	/* Body accumulated up to `limit`; beyond it the rest is discarded. */
	char *body;
	size_t len, cap, limit;
	bool too_large, oom;

	/* A multipart/form-data upload (POST /v1/batches), streamed to a temp
	 * file instead of into body (upload.c). */
	struct api_upload *upload;

	/* A dashboard session's id (the SHA-256 hex of its cookie; "" for a
	 * bearer credential), and whether its answers mask phone numbers. */
	char session[65];
	bool masked;
	bool unit_view;         /* a tenant-wide session narrowed to who.unit (session.c) */
	unsigned session_epoch; /* the session's tenant switches when r was authenticated */

	/* The handler's own state machine across suspend/resume. */
	int stage;
	void *priv;
	void (*priv_free)(void *priv);
};

/* ---- server.c ---- */
/* MHD's per-connection memory pool for these options: room for a head of
 * max_header_bytes with max_header_fields fields, and the reply. */
size_t api_pool_bytes(const struct api_opts *o);
/* Queues a response (body heap, owned; may be NULL) and counts it. extra is a
 * NULL-terminated list of header name, value pairs, or NULL. */
enum MHD_Result api_respond(struct api_req *r, int status, char *body, size_t len,
                            const char *ctype, const char *const *extra);
/* Queues a JSON response: takes ownership of j (decref'd). */
enum MHD_Result api_respond_json(struct api_req *r, int status, json_t *j,
                                 const char *const *extra);
/* Suspends the connection for an async operation. HR_EBUSY when stopping
 * (nothing suspended). Call before starting the operation. */
int api_async_begin(struct api_req *r);
/* Resumes a connection suspended by api_async_begin; any thread, once. */
void api_async_end(struct api_req *r);
/* Work that must run before api_stop returns, started while a request is
 * pending (so never after api_stop saw none): counted as one more pending
 * request until released. */
void api_pending_hold(struct api_server *s);
void api_pending_release(struct api_server *s);
/* The request body as a JSON object (caller decrefs), or NULL after
 * answering 400 (not JSON) or 422 (not an object) with *ret the result. */
json_t *api_body_object(struct api_req *r, enum MHD_Result *ret);
/* A query argument's value, or NULL when absent or empty. */
const char *api_query(struct api_req *r, const char *name);
/* 422 naming the first query argument not in allowed (NULL-terminated);
 * 0 when all are known. */
int api_query_check(struct api_req *r, const char *const *allowed, struct hr_err *err);

/* ---- upload.c ---- */
struct api_upload;
/* Starts streaming a multipart/form-data body of r (r->upload). */
int api_upload_begin(struct api_req *r, struct hr_err *err);
/* Feeds body bytes; 0, or the first problem's code (kept for finish). */
int api_upload_feed(struct api_req *r, const char *data, size_t n);
/* The body is complete: 0 with the file and fields ready, or the problem. */
int api_upload_finish(struct api_req *r, struct hr_err *err);
void api_upload_free(struct api_upload *u);
/* The file part as a readable path (/proc/self/fd/N), the client's file
 * name (a label; its extension tells the format), the other fields. */
const char *api_upload_path(const struct api_upload *u);
const char *api_upload_filename(const struct api_upload *u);
json_t *api_upload_fields(const struct api_upload *u);

/* A CSV field (RFC 4180 quoting); text from outside (free_text) that starts
 * like a formula gets a leading apostrophe (batch_export.c). */
void api_csv_field(struct hr_buf *b, const char *s, bool free_text);
/* GET /v1/messages/export.csv (messages_read.c). */
enum MHD_Result api_messages_export_csv(struct api_req *r);

/* ---- errors.c ---- */
enum api_errkind {
	APIERR_INVALID_JSON,   /* 400 invalid_json */
	APIERR_IDEM_MISMATCH,  /* 422 idempotency_mismatch */
	APIERR_METHOD,         /* 405 method_not_allowed */
	APIERR_ROUTE,          /* 404 not_found */
	APIERR_BAD_SIGNATURE,  /* 401 bad_signature */
	APIERR_BAD_REQUEST,    /* 400 bad_request: malformed at the HTTP level */
	APIERR_URI_TOO_LONG,   /* 414 uri_too_long */
	APIERR_HEAD_TOO_LARGE, /* 431 header_too_large */
	APIERR_RATE_LIMITED,   /* 429 rate_limited (with Retry-After) */
	APIERR_DAILY_CAP,      /* 429 daily_cap_reached */
	APIERR_CAMPAIGN_CAP,   /* 409 campaign_cap_reached */
	APIERR_PLUGIN_FAILED,  /* 502 plugin_failed: a plugin's hook failed or timed out */
	APIERR_PLUGIN_BUSY,    /* 503 plugin_busy: the plugin pool's queue was full */
};
/* HTTP status and stable code for an hr code (the one table). */
int api_http_status(int rc);
const char *api_error_code(int rc);
/* {"error":{"code","message","field"?}}; message and field are made valid
 * UTF-8 here, so an error that echoes client bytes is never a 500. */
json_t *api_error_json(const char *code, const char *message, const char *field);
/* Copies outside text (a JSON key, a query value, a provider's error) into
 * buf as valid UTF-8, cut on a character boundary (hr_utf8_copy); returns
 * buf, so it can stand in an argument list. */
const char *api_clip(char *buf, size_t size, const char *s);
/* HR_EINVAL naming the first key of the object o not in allowed (a
 * NULL-terminated list): "unknown field 'x'" (the name clipped). */
int api_keys_check(json_t *o, const char *const *allowed, struct hr_err *err);
/* Account ids as tenants see them (channels.c): the tenant's account called
 * name (its own config account, or one it created, stored as
 * "<tenant>~<name>"), or NULL; and the name a tenant sees for a global id. */
struct channel_account *api_account_lookup(const struct api_server *s, const char *tenant,
                                           const char *name);
const char *api_account_name(const char *tenant, const char *global_id);
/* Responds with the table's mapping of rc; err may be NULL. */
enum MHD_Result api_fail(struct api_req *r, int rc, const struct hr_err *err);
/* The HTTP status and stable code of one of the errors that are not hr codes. */
int api_errkind_status(enum api_errkind kind);
const char *api_errkind_code(enum api_errkind kind);
/* Responds with one of the errors that are not hr codes. */
enum MHD_Result api_fail_kind(struct api_req *r, enum api_errkind kind, const char *message,
                              const char *field, const char *const *extra);

/* ---- guard.c ---- */
struct api_guard_limits {
	int max_connections;
	int max_per_addr; /* 0 = none */
	int64_t head_us, body_us;
	int min_rate; /* body bytes per second */
};
/* Starts the reaper thread. */
int api_guard_new(const struct api_guard_limits *lim, struct api_guard **out, struct hr_err *err);
/* After MHD_stop_daemon (every connection notified closed). NULL is a no-op. */
void api_guard_free(struct api_guard *g);
/* MHD_start_daemon's accept policy and MHD_OPTION_NOTIFY_CONNECTION's
 * callback; cls is the guard. */
enum MHD_Result api_guard_accept(void *cls, const struct sockaddr *sa, socklen_t len);
void api_guard_notify(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_ConnectionNotificationCode code);
/* MHD's own connection limit: above the guard's, so MHD always accepts and
 * the guard refuses the surplus at once. */
unsigned api_guard_mhd_limit(const struct api_guard *g);
/* From now on every new connection is closed as soon as it is accepted
 * (api_stop, instead of MHD_quiesce_daemon: see there). */
void api_guard_close(struct api_guard *g);
/* Connections held now (for tests). */
int api_guard_open(struct api_guard *g);
/* The connection's record (NULL if untracked; every call takes NULL). The
 * request's progress, from the thread serving it: head complete, body bytes
 * arrived, complete or answered (no deadline until the next request), and
 * the response sent (the next request's head deadline starts). */
struct guard_conn *api_guard_conn(struct MHD_Connection *c);
void api_guard_head_done(struct api_guard *g, struct guard_conn *gc);
void api_guard_body(struct api_guard *g, struct guard_conn *gc, size_t n);
void api_guard_ready(struct api_guard *g, struct guard_conn *gc);
void api_guard_request_done(struct api_guard *g, struct guard_conn *gc);

/* ---- auth.c ---- */
void api_keycache_init(struct api_keycache *c, int64_t ttl_us);
void api_keycache_destroy(struct api_keycache *c);
/* Forgets every cached key (after a revocation or a disable on this node). */
void api_keycache_flush(struct api_keycache *c);
/* Resolves the request's Bearer credential (API key, operator key or JWT)
 * to r->who and r->tenant: HR_EAUTH with the reason otherwise. */
int api_auth(struct api_req *r, struct hr_err *err);
/* What the route and method admit (r->who against scope and access):
 * HR_EFORBIDDEN naming the scope, or HR_ENOTFOUND for another tenant's
 * /v1/tenants/{tenant}. */
int api_authorize(struct api_req *r, unsigned scope, enum api_access access, struct hr_err *err);
/* "messages:send" for one bit; NULL for none or several. */
const char *api_scope_name(unsigned scope);
/* Parses space- or comma-separated scope names ("*" = all); HR_EINVAL
 * naming the unknown one in err. */
int api_scopes_parse(const char *text, unsigned *out, struct hr_err *err, const char *field);
/* The scopes as text, space-separated ("*" for all); buf returned. */
const char *api_scopes_text(unsigned scopes, char *buf, size_t size);
/* True if the principal may see an object of `unit` ("" = the tenant's own,
 * shared): tenant-wide principals see all; a unit key its unit's, and
 * shared objects only when shared_ok. */
bool api_unit_visible(const struct api_req *r, const char *unit, bool shared_ok);
/* 404 for a unit credential on another unit's campaign (any batch route). */
int api_unit_precheck(struct api_req *r, struct hr_err *err);

/* ---- limits.c ---- */
struct api_limits;
/* The rate table and the tenant-limits cache (ttl_us: how long a tenant's
 * own limits read from the store are trusted). */
int api_limits_new(const struct api_limit_opts *o, int64_t ttl_us, struct api_limits **out,
                   struct hr_err *err);
void api_limits_free(struct api_limits *l);
/* Re-read the tenant's own limits at its next request (after a change). */
void api_limits_forget_tenant(struct api_limits *l, const char *tenant);
/* An authenticated request within its credential's and tenant's rates:
 * 0, or HR_EQUOTA naming "key" or "tenant" with *retry_s (whole seconds,
 * rounded up). */
int api_limits_check(struct api_server *s, const struct api_principal *who, int64_t *retry_s,
                     struct hr_err *err);
/* Answers an HR_EQUOTA: "daily_cap" 429 with Retry-After until the next
 * UTC midnight, "campaign_cap" 409, rates 429 with Retry-After retry_s. */
enum MHD_Result api_quota_fail(struct api_req *r, const struct hr_err *err, int64_t retry_s);
/* A tenant's limits as the API shows them (today < 0: without the day's
 * count). Caller decrefs. */
json_t *api_limits_json(const struct tenant_limits *l, int64_t today);
enum MHD_Result api_tenant_limits(struct api_req *r);

/* ---- jwt.c ---- */
/* Reads auth.jwt from the config (NULL *out when absent). */
int api_jwt_load(json_t *cfg, struct api_jwt **out, struct hr_err *err);
void api_jwt_free(struct api_jwt *j);
/* Verifies a compact JWS and maps its claims to a principal; *expires_us
 * gets when it stops being valid (exp plus the leeway). */
int api_jwt_verify(const struct api_jwt *j, const char *token, size_t len,
                   struct api_principal *who, int64_t *expires_us, struct hr_err *err);

/* ---- admin.c ---- */
enum MHD_Result api_tenants_list(struct api_req *r);
enum MHD_Result api_tenants_post(struct api_req *r);
enum MHD_Result api_tenant_get(struct api_req *r);
enum MHD_Result api_tenant_disable(struct api_req *r);
enum MHD_Result api_tenant_enable(struct api_req *r);
enum MHD_Result api_units_list(struct api_req *r);
enum MHD_Result api_units_post(struct api_req *r);
enum MHD_Result api_unit_disable(struct api_req *r);
enum MHD_Result api_unit_enable(struct api_req *r);
enum MHD_Result api_keys_list(struct api_req *r);
enum MHD_Result api_keys_post(struct api_req *r);
enum MHD_Result api_key_revoke(struct api_req *r);
enum MHD_Result api_audit_list(struct api_req *r);
/* Fills an audit row for r's principal (before/after borrowed texts). */
void api_audit_row(const struct api_req *r, const char *tenant, const char *action,
                   const char *object, struct audit_row *a);
/* api_audit_row with before/after (JSON, references taken, either may be
 * NULL) dumped into a for a store write that records it in the same
 * transaction as the change. 0 or HR_ENOMEM (nothing to free then);
 * api_audit_done frees the texts. */
int api_audit_json(const struct api_req *r, const char *tenant, const char *action,
                   const char *object, json_t *before, json_t *after, struct audit_row *a);
void api_audit_done(struct audit_row *a);
/* ---- templates.c ---- */
enum MHD_Result api_templates_list(struct api_req *r);
enum MHD_Result api_templates_post(struct api_req *r);
enum MHD_Result api_template_get(struct api_req *r);
/* plugins_api.c */
enum MHD_Result api_plugins_list(struct api_req *r);
enum MHD_Result api_unit_stats(struct api_req *r);
enum MHD_Result api_unit_campaigns(struct api_req *r);
enum MHD_Result api_template_delete(struct api_req *r);
/* serve.c: a template's declared extras (header, buttons, regulatory,
 * delivery_policy, route, fallback_after_s, fallback_text) from tp as one
 * JSON object text (*out heap, NULL when none); errors name "<f>.<key>". */
int serve_template_config(json_t *tp, const char *f, char **out, struct hr_err *err);

/* ---- content.c ---- */
/* Builds a message's canonical content (channels/channel.h) from a request
 * object o: exactly one of text, template, document, image, card, carousel,
 * plus buttons/actions (with text) and options; templates are looked up,
 * rendered and checked against their declared header and buttons. Then the
 * account's adapter validates it. *content (caller decrefs) and *body (the
 * display text, heap, may be NULL) are set on success; errors name the
 * request's field. *tpl_policy gets the delivery policy a template
 * declares, or -1 (none, or not a template). unit: the sender's business
 * unit ("" or NULL: tenant-wide), which may use its own templates and the
 * tenant's shared ones only. */
struct tpl_defaults {
	int policy;       /* the delivery policy a template declares, or -1 */
	json_t *fallback; /* its route, fallback_after_s, fallback_text; NULL: none.
	                     Borrowed from nothing: the caller decrefs it */
};
int api_content_build(const struct api_server *s, const char *tenant, const char *unit,
                      const struct channel_account *acct, json_t *o, json_t **content, char **body,
                      struct tpl_defaults *tpl, struct hr_err *err);
/* True for the request keys api_content_build reads. */
bool api_content_key(const char *key);

/* ---- messages.c ---- */
enum MHD_Result api_messages_post(struct api_req *r);
/* One message from a request object as a batch item would carry it
 * (channel, account, to, content; bulk priority), due at now, part of
 * batch_id: the same checks as POST /v1/messages:batch. m's content and body
 * are heap (message_clear). Errors name the object's field. */
int api_message_build(const struct api_server *s, const char *tenant, const char *unit, json_t *o,
                      const char *batch_id, int64_t now, struct message *m, struct hr_err *err);
enum MHD_Result api_messages_batch(struct api_req *r);
/* What POST /v1/messages (batch false) or /v1/messages:batch does with a
 * parsed body before anything is written: every check, with nothing
 * stored. 0 and *resp (the 202 body, heap), or the error naming the field.
 * r needs srv, tenant and who.unit only (no connection). For
 * fuzz/fuzz_messages.c, which reaches the validation without a server. */
int api_messages_validate(struct api_req *r, json_t *root, bool batch, char **resp,
                          struct hr_err *err);

/* ---- messages_read.c ---- */
enum MHD_Result api_message_get(struct api_req *r);
enum MHD_Result api_messages_list(struct api_req *r);
/* GET /openapi.json (openapi.c). */
enum MHD_Result api_openapi(struct api_req *r);
/* The same listing, of one batch's messages only (batch_id NULL: all). */
enum MHD_Result api_messages_list_in(struct api_req *r, const char *batch_id);

/* ---- channels_health.c ---- */
enum MHD_Result api_channel_health(struct api_req *r);
enum MHD_Result api_channel_pause(struct api_req *r);
enum MHD_Result api_channel_resume(struct api_req *r);

/* POST /v1/session/view {"unit"}: a tenant-wide session narrowed to one
 * unit, or back to the whole tenant (session.c). */
enum MHD_Result api_session_view(struct api_req *r);
/* ---- users.c: configured dashboard logins ---- */
/* Checks config's dashboard.users (at start): HR_EINVAL naming the field. */
int api_users_check(json_t *cfg, struct hr_err *err);
/* A role's scopes (viewer, operator, approver); false for another name. */
bool api_user_scopes(const char *role, unsigned *scopes);
/* Verifies name and password against config's dashboard.users: 0 and *who;
 * HR_EAUTH for a wrong name or password (the same answer and cost for
 * both); HR_EQUOTA with *retry_s after too many failures for the name or
 * from addr. */
int api_user_verify(json_t *cfg, const char *name, const char *password, const char *addr,
                    struct api_principal *who, int64_t *retry_s, struct hr_err *err);
/* Forgets every failed attempt (tests). */
void api_user_fails_reset(void);
/* logins of several tenants (dashboard.users[].tenants). */
/* The login may see more than one tenant ("*" or a list of two or more). */
bool api_user_multi(json_t *cfg, const char *name);
/* The principal of login name in tenant (NULL: its tenant, or the first of
 * its tenants that is enabled): tenant, unit, the role's scopes there,
 * actor "user:<name>". HR_ENOTFOUND naming "tenant" when the login may not
 * see tenant or it is unknown or disabled (one answer for all three). */
int api_user_principal(json_t *cfg, struct store *st, const char *name, const char *tenant,
                       struct api_principal *who, struct hr_err *err);
/* The enabled tenants login name may see, the store's order (by id), at
 * most 1,000: *out heap (caller frees), *n. */
int api_user_tenants(json_t *cfg, struct store *st, const char *name, struct tenant_info **out,
                     size_t *n);
/* At start, after the config's tenants are in the store: every tenant a
 * login names exists (HR_EINVAL naming dashboard.users[i].tenants[k]). */
int api_users_check_tenants(json_t *cfg, struct store *st, struct hr_err *err);
/* POST /v1/session/tenant {"tenant"} (session.c). */
enum MHD_Result api_session_tenant(struct api_req *r);

/* ---- stats_daily.c ---- */
enum MHD_Result api_stats_daily(struct api_req *r);

/* ---- recipients.c ---- */
/* GET /v1/recipients/{to} and GET /v1/messages/{id}/recipient: a
 * recipient's messages, replies, opt-out state and its history. */
enum MHD_Result api_recipient_get(struct api_req *r);
enum MHD_Result api_message_recipient_get(struct api_req *r);
/* From messages_read.c: a recipient as the search reads it (phone numbers
 * in any written form; *n forms, the first the E.164 one), and a message as
 * JSON (NULL when out of memory). */
int api_recipient_forms(struct api_req *r, const char *v, const char *region,
                        char forms[2][HR_ADDR_MAX], size_t *n, struct hr_err *err);
json_t *api_message_json(const struct message *m);
/* Also messages_read.c's: a time (us) as RFC 3339 text, null when <= 0;
 * stored outside text as a JSON string (invalid UTF-8 shown as '?'), null
 * when NULL or empty. NULL when out of memory. */
json_t *api_time_json(int64_t us);
json_t *api_text_or_null(const char *s);

/* ---- callbacks_api.c ---- */
/* The callback URL of a message being accepted: given (the request's
 * field, checked: callback_url_check, and the tenant must have a secret),
 * else fallback (the batch's), else the tenant's; *out a heap copy or
 * NULL for none. HR_EINVAL naming field. */
int api_callback_url(const struct api_server *s, const char *tenant, json_t *given,
                     const char *field, const char *fallback, char **out, struct hr_err *err);
enum MHD_Result api_callbacks_list(struct api_req *r);
enum MHD_Result api_webhooks_parked(struct api_req *r); /* parked.c */
enum MHD_Result api_callback_get(struct api_req *r);
enum MHD_Result api_callback_replay(struct api_req *r);
enum MHD_Result api_callbacks_replay(struct api_req *r);

/* ---- suppressions.c ---- */
enum MHD_Result api_suppressions_list(struct api_req *r);
enum MHD_Result api_suppressions_post(struct api_req *r);
enum MHD_Result api_suppression_delete(struct api_req *r);

/* ---- channels.c ---- */
enum MHD_Result api_channels_list(struct api_req *r);
enum MHD_Result api_channels_post(struct api_req *r);
enum MHD_Result api_channel_get(struct api_req *r);

/* ---- batches.c: campaigns ---- */
enum MHD_Result api_batches_list(struct api_req *r);
enum MHD_Result api_batches_post(struct api_req *r);
enum MHD_Result api_batch_get(struct api_req *r);
enum MHD_Result api_batch_delete(struct api_req *r);
enum MHD_Result api_batch_retry(struct api_req *r);
enum MHD_Result api_batch_events(struct api_req *r);
/* The JSON of a batch as GET /v1/batches/{id} shows it (caller decrefs). */
json_t *api_batch_json(const struct batch *b);
/* Campaign event streams (batch_events.c): the ticker that wakes them,
 * ending every stream before the server stops. */
struct sse_hub;
int api_sse_start(struct sse_hub **out, struct hr_err *err);
void api_sse_quiesce(struct sse_hub *h);
void api_sse_free(struct sse_hub *h);
enum MHD_Result api_batch_start(struct api_req *r);
enum MHD_Result api_batch_cancel(struct api_req *r);
enum MHD_Result api_batch_pause(struct api_req *r);
enum MHD_Result api_batch_resume(struct api_req *r);
enum MHD_Result api_batch_breakdown(struct api_req *r);
enum MHD_Result api_batch_errors(struct api_req *r);
enum MHD_Result api_batch_messages(struct api_req *r);
/* ---- batch_export.c ---- */
/* The campaign export, one line per uploaded row (streamed CSV; XLSX with a
 * Summary sheet, built in a temp file and sent from its fd). */
enum MHD_Result api_batch_export_csv(struct api_req *r);
enum MHD_Result api_batch_export_xlsx(struct api_req *r);
/* A started batch's messages from its stored rows (made as validation made
 * them, due at the batch's schedule): out[i] and rows[i] for items[i].
 * Errors name the row. */
int api_batch_messages_of(const struct api_server *s, const struct batch *bt,
                          const struct batch_item *items, size_t n, struct message *out,
                          int64_t *rows, struct hr_err *err);
/* The campaign runner (batch_runner.c): a thread that turns started
 * batches' rows into messages in chunks and cancels stopped batches'
 * queued messages; resumes both after a restart. */
struct batch_runner;
int batch_runner_start(struct api_server *s, struct batch_runner **out, struct hr_err *err);
void batch_runner_wake(struct batch_runner *br);
void batch_runner_stop(struct batch_runner *br);
/* Marks FAILED, with the reason, the batches left PENDING by uploads the
 * previous process died in; before the API listens. */
void batch_runner_fail_interrupted(struct api_server *s);

/* ---- capabilities.c ---- */
enum MHD_Result api_channel_capabilities(struct api_req *r);

/* ---- serve.c ---- */
/* Copies the config's tenants, API keys, accounts and templates (with
 * their header/buttons/regulatory declarations) into the store. */
int serve_sync_config(json_t *cfg, struct store *st, struct hr_err *err);
/* What expires (read at start, so a bad value stops the server before it
 * listens). */
struct retention_opts {
	int64_t inbox_keep_us;   /* store.inbox_retention_hours */
	int64_t idem_keep_us;    /* store.idempotency_ttl_hours */
	int64_t message_keep_us; /* store.message_retention_days (0..3650); 0 = forever */
	int64_t callback_keep_us; /* callbacks.retention_hours: delivered callbacks; 0 = forever */
};
int serve_retention_opts(json_t *cfg, struct retention_opts *o, struct hr_err *err);
/* One pass of retention, as the server runs it once a minute: expired
 * webhook rows and idempotency records, then old settled messages. */
void serve_retention_tick(struct store *st, const struct retention_opts *ro);

/* ---- web.c: the dashboard's files ---- */
enum MHD_Result api_web_get(struct api_req *r);

/* ---- session.c: dashboard sign-in ---- */
struct api_sessions;
int api_sessions_new(const struct api_dash_opts *o, struct api_sessions **out, struct hr_err *err);
void api_sessions_free(struct api_sessions *ss);
/* The request carries the session cookie (herald_session). */
bool api_session_cookie(struct api_req *r);
/* Authenticates r by its session cookie: the session live (idle and
 * absolute lifetime), the key it was made from still valid (r->who is
 * that key's principal now), X-CSRF-Token equal to the session's on any
 * method but GET and HEAD (HR_EFORBIDDEN naming it), and exports refused
 * while numbers are masked. Sets r->session and r->masked. */
int api_session_auth(struct api_req *r, struct hr_err *err);
/* Same, from the key's hash (auth.c): a session re-checks its key this
 * way at every request, so revoking the key ends its sessions. */
int api_auth_key_hash(struct api_req *r, const char hash[65], struct hr_err *err);
enum MHD_Result api_session_post(struct api_req *r);
enum MHD_Result api_session_get(struct api_req *r);
enum MHD_Result api_session_delete(struct api_req *r);
enum MHD_Result api_session_unmask(struct api_req *r);
/* Masks phone numbers in an answer for a masked session (in place). */
void api_mask_json(json_t *j);
/* An event stream opened by session sid ("" for a bearer credential:
 * counted per credential actor instead): 0, or HR_EQUOTA over the
 * per-session (per-credential) cap. Release once per successful acquire. */
int api_session_stream_acquire(struct api_server *s, const char *sid, unsigned epoch,
                               const char *actor, struct hr_err *err);
void api_session_stream_release(struct api_server *s, const char *sid, const char *actor);
/* The session is still signed in and still sees what it saw at epoch
 * (api_req.session_epoch): a stream of an ended session ends, and so does
 * one opened before a tenant switch. */
bool api_session_alive(struct api_server *s, const char *sid, unsigned epoch);

/* ---- sse.c: GET /v1/events ---- */
struct api_events;
int api_events_new(const struct api_dash_opts *o, struct api_events **out, struct hr_err *err);
void api_events_quiesce(struct api_events *ev);
void api_events_free(struct api_events *ev);
enum MHD_Result api_events_get(struct api_req *r);

/* ---- webhooks.c ---- */
/* Early check at the headers stage: the account exists for the channel. */
int api_webhook_resolve(struct api_req *r, const char *channel, const char *account);
enum MHD_Result api_webhook(struct api_req *r);

#endif
