/*
 * server.c - the libmicrohttpd glue: daemon setup, routing, body limits,
 * responses, suspend/resume bookkeeping, and the three small routes that
 * need no file of their own (/healthz, /readyz, /metrics).
 *
 * Request flow: MHD calls the URI-log callback first (we create the request
 * context there, which is also the only place that sees the raw query
 * string), then the access handler once with the headers (routing, method,
 * auth, Content-Length are checked then, so a refused request never sends
 * its body), then once per body chunk, then once with no data: the route's
 * handler runs there. A handler that needs a durable write or a provider's
 * answer suspends the connection; the completion callback resumes it and
 * MHD calls the handler again, which continues from r->stage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "api/api_int.h"
#include "obs/metrics.h"

/* MHD's own timeout: silence on a connection that has no guard deadline (a
 * response the client stops reading). The request's head and body have
 * their own deadlines (guard.c). */
#define API_CONN_TIMEOUT_S 30
/* What MHD keeps in a connection's memory pool per header field, cookie or
 * query parameter (struct MHD_HTTP_Header, 56 bytes rounded up to the pool's
 * 16-byte alignment; libmicrohttpd 0.9.75). */
#define API_POOL_FIELD_BYTES 64
/* Room left in the pool for the response's status line and headers. */
#define API_POOL_REPLY_BYTES 4096
#define API_BODY_PREALLOC (64u << 10)
/* Query parameter names check_head keeps on its stack before it allocates. */
#define API_HEAD_ARGS_STACK 32
#define API_SYNC_TIMEOUT_US (10 * 1000000LL)
#define API_SYNC_MAX_TIMEOUT_US (60 * 1000000LL)

void api_opts_default(struct api_opts *o)
{
	memset(o, 0, sizeof *o);
	o->listen_addr = "127.0.0.1";
	o->port = 8080;
	o->public_url = "http://127.0.0.1:8080";
	o->threads = 2;
	o->max_connections = 1024;
	o->max_body_bytes = 4u << 20;
	o->max_webhook_bytes = 1u << 20;
	o->max_header_bytes = 16u << 10;
	o->max_url_bytes = 8u << 10;
	o->max_header_fields = 128;
	o->max_connections_per_ip = -1; /* max_connections / 8 */
	o->request_head_timeout_us = 10 * 1000000LL;
	o->request_body_timeout_us = 10 * 1000000LL;
	o->min_body_rate = 1024;
	o->max_batch = 10000;
	o->max_batch_rows = 1000000;
	o->make_ahead = 50000;
	o->max_upload_bytes = 200u << 20;
	o->sync_timeout_us = API_SYNC_TIMEOUT_US;
	o->sync_max_timeout_us = API_SYNC_MAX_TIMEOUT_US;
	o->max_attempts = 0; /* the dispatcher's default */
	o->dash.max_sessions = 1024;
	o->dash.sessions_per_key = 8;
	o->dash.session_idle_us = 30 * 60 * 1000000LL;
	o->dash.session_max_age_us = 12 * 3600 * 1000000LL;
	o->dash.unmask_us = 15 * 60 * 1000000LL;
	o->dash.max_event_streams = 64;
	o->dash.streams_per_session = 4;
	o->dash.heartbeat_us = 15 * 1000000LL;
}

/*
 * The size of MHD's per-connection memory pool. It holds the whole request
 * head (MHD parses it in place), an index entry per header field, cookie and
 * query parameter, a copy of the Cookie header, then the response's status
 * line and headers. MHD gives half of it to the read buffer at the start of
 * every request, and the index, the cookie copy and the reply come out of
 * the other half; so a head of up to max_header_bytes with up to
 * max_header_fields fields always reaches Herald's checks, with room left to
 * answer. Pools over 32 KiB are mmap()ed, so an idle connection costs only
 * the pages it touched (MHD zeroes the pool between kept-alive requests).
 */
size_t api_pool_bytes(const struct api_opts *o)
{
	return 2 * (o->max_header_bytes + (size_t)o->max_header_fields * API_POOL_FIELD_BYTES +
	            API_POOL_REPLY_BYTES);
}

/* ---------------------------------------------------------------------------
 * Responses and suspend/resume.
 * ------------------------------------------------------------------------- */

enum MHD_Result api_respond(struct api_req *r, int status, char *body, size_t len,
                            const char *ctype, const char *const *extra)
{
	struct MHD_Response *resp =
	    body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
	         : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (; extra && extra[0]; extra += 2)
		MHD_add_response_header(resp, extra[0], extra[1]);
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http(status);
	return ret;
}

/* A NULL j means building the response failed (out of memory, or text that
 * is not UTF-8 slipped through): never a partial answer, a logged 500. */
enum MHD_Result api_respond_json(struct api_req *r, int status, json_t *j, const char *const *extra)
{
	if (j && r->masked)
		api_mask_json(j); /* a dashboard session before an unmask (session.c) */
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!body) {
		hr_log(HR_LOG_ERROR, "api", "%s %.*s: cannot build the JSON response (status %d)",
		       r->method, (int)strcspn(r->raw_uri, "?"), r->raw_uri, status);
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
		char *b = strdup(oom);
		return api_respond(r, 500, b, b ? strlen(b) : 0, "application/json", NULL);
	}
	return api_respond(r, status, body, strlen(body), "application/json", extra);
}

int api_async_begin(struct api_req *r)
{
	struct api_server *s = r->srv;
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return HR_EBUSY;
	}
	s->pending++;
	pthread_mutex_unlock(&s->lock);
	/* Suspend before the operation starts, so its callback always finds a
	 * suspended connection to resume (MHD requires that order). */
	MHD_suspend_connection(r->conn);
	return 0;
}

void api_async_end(struct api_req *r)
{
	/* r may be freed as soon as the connection is resumed: read srv first. */
	struct api_server *s = r->srv;
	MHD_resume_connection(r->conn);
	api_pending_release(s);
}

void api_pending_hold(struct api_server *s)
{
	pthread_mutex_lock(&s->lock);
	s->pending++;
	pthread_mutex_unlock(&s->lock);
}

void api_pending_release(struct api_server *s)
{
	pthread_mutex_lock(&s->lock);
	if (--s->pending == 0)
		pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
}

json_t *api_body_object(struct api_req *r, enum MHD_Result *ret)
{
	json_error_t jerr;
	json_t *root = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson's text can quote the offending bytes ("near '...'"). */
		char text[sizeof jerr.text], msg[256];
		snprintf(msg, sizeof msg, "body is not valid JSON: %s (line %d, column %d)",
		         api_clip(text, sizeof text, jerr.text), jerr.line, jerr.column);
		*ret = api_fail_kind(r, APIERR_INVALID_JSON, msg, NULL, NULL);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		struct hr_err err;
		hr_fail(&err, HR_EINVAL, NULL, "the request body must be a JSON object");
		*ret = api_fail(r, HR_EINVAL, &err);
		return NULL;
	}
	return root;
}

const char *api_query(struct api_req *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

struct query_unknown {
	const char *const *allowed;
	char name[HR_NAME_MAX];
};

static enum MHD_Result query_find_unknown(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
	(void)kind, (void)value;
	struct query_unknown *u = cls;
	for (const char *const *p = u->allowed; *p; p++)
		if (strcmp(key, *p) == 0)
			return MHD_YES;
	api_clip(u->name, sizeof u->name, key); /* MHD has decoded %XX: any bytes */
	return MHD_NO;
}

int api_query_check(struct api_req *r, const char *const *allowed, struct hr_err *err)
{
	struct query_unknown u = {allowed, ""};
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_find_unknown, &u);
	if (u.name[0])
		return hr_fail(err, HR_EINVAL, u.name, "unknown query parameter '%s'", u.name);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Small routes.
 * ------------------------------------------------------------------------- */

static enum MHD_Result api_healthz(struct api_req *r)
{
	return api_respond_json(r, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

/* Ready when the store answers a cheap read (the inbox backlog count is an
 * index lookup, unlike counting all messages). */
static enum MHD_Result api_readyz(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	int64_t n;
	int rc = st->ops->inbox_pending(st, &n);
	if (rc != 0)
		return api_respond_json(
		    r, 503,
		    json_pack("{s:s, s:s}", "status", "unavailable", "store", hr_code_name(rc)),
		    NULL);
	return api_respond_json(r, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

static enum MHD_Result api_metrics(struct api_req *r)
{
	char *out;
	size_t len;
	int rc = metrics_render(r->srv->o.store, &out, &len);
	if (rc != 0)
		return api_fail(r, rc, NULL);
	return api_respond(r, 200, out, len, "text/plain; version=0.0.4; charset=utf-8", NULL);
}

/* ---------------------------------------------------------------------------
 * Routing.
 * ------------------------------------------------------------------------- */

/* One method of a route: its handler, the scope it needs and who it
 * admits (api_int.h). A route's authorisation lives here, beside its
 * handler, so a route cannot be added without one; test_authz enumerates
 * this table (api_route_info) and attacks every entry. */
struct api_method_def {
	api_handler_fn fn;
	unsigned scope;
	enum api_access access;
};

struct api_route_def {
	const char *path; /* exact path, or a pattern matched in route_match */
	enum api_route route;
	struct api_method_def get, post, del;
	const char *allow;
};

#define PUBLIC(fn) {fn, 0, ACCESS_PUBLIC}
#define TENANT(fn, scope) {fn, scope, ACCESS_TENANT}
#define WIDE(fn, scope) {fn, scope, ACCESS_TENANT_WIDE}
#define ADMIN(fn) {fn, SCOPE_ADMIN, ACCESS_ADMIN}
#define OPERATOR(fn) {fn, SCOPE_ADMIN, ACCESS_OPERATOR}
#define NONE {NULL, 0, ACCESS_PUBLIC}

/* /metrics needs `metrics:read` on a tenant-wide credential: the figures
 * are the whole service's (every tenant's, no tenant label), so a unit key
 * is refused like on other routes not split by unit. A scraper that cannot
 * send a bearer token scrapes server.metrics_listen instead
 * (metrics_listen.c). */
static const struct api_route_def api_routes[] = {
    {"/healthz", ROUTE_HEALTHZ, PUBLIC(api_healthz), NONE, NONE, "GET, HEAD"},
    {"/readyz", ROUTE_READYZ, PUBLIC(api_readyz), NONE, NONE, "GET, HEAD"},
    {"/metrics", ROUTE_METRICS, WIDE(api_metrics, SCOPE_METRICS_READ), NONE, NONE, "GET, HEAD"},
    /* Public: documentation of routes whose existence is no secret. */
    {"/openapi.json", ROUTE_OPENAPI, PUBLIC(api_openapi), NONE, NONE, "GET, HEAD"},
    {"/v1/messages", ROUTE_MESSAGES, TENANT(api_messages_list, SCOPE_MESSAGES_READ),
     TENANT(api_messages_post, SCOPE_MESSAGES_SEND), NONE, "GET, HEAD, POST"},
    {"/v1/messages:batch", ROUTE_MESSAGES_BATCH, NONE,
     TENANT(api_messages_batch, SCOPE_MESSAGES_SEND), NONE, "POST"},
    {"/v1/messages/export.csv", ROUTE_MESSAGES_EXPORT,
     TENANT(api_messages_export_csv, SCOPE_MESSAGES_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/messages/{id}", ROUTE_MESSAGE, TENANT(api_message_get, SCOPE_MESSAGES_READ), NONE, NONE,
     "GET, HEAD"},
    {"/v1/suppressions", ROUTE_SUPPRESSIONS, WIDE(api_suppressions_list, SCOPE_MESSAGES_READ),
     TENANT(api_suppressions_post, SCOPE_SUPPRESSIONS_WRITE), NONE, "GET, HEAD, POST"},
    {"/v1/suppressions/{channel}/{to}", ROUTE_SUPPRESSION, NONE, NONE,
     WIDE(api_suppression_delete, SCOPE_SUPPRESSIONS_WRITE), "DELETE"},
    {"/v1/channels", ROUTE_CHANNELS, TENANT(api_channels_list, SCOPE_MESSAGES_READ),
     TENANT(api_channels_post, SCOPE_ACCOUNTS_WRITE), NONE, "GET, HEAD, POST"},
    {"/v1/channels/{id}", ROUTE_CHANNEL, TENANT(api_channel_get, SCOPE_MESSAGES_READ), NONE, NONE,
     "GET, HEAD"},
    {"/v1/channels/{id}/capabilities", ROUTE_CAPABILITIES,
     TENANT(api_channel_capabilities, SCOPE_MESSAGES_READ), NONE, NONE, "GET, HEAD"},
    {"/webhooks/{channel}/{account}", ROUTE_WEBHOOK, PUBLIC(api_webhook), PUBLIC(api_webhook), NONE,
     "GET, HEAD, POST"},
    {"/v1/batches", ROUTE_BATCHES, TENANT(api_batches_list, SCOPE_CAMPAIGNS_READ),
     TENANT(api_batches_post, SCOPE_CAMPAIGNS_WRITE), NONE, "GET, HEAD, POST"},
    {"/v1/batches/{id}", ROUTE_BATCH, TENANT(api_batch_get, SCOPE_CAMPAIGNS_READ), NONE,
     TENANT(api_batch_delete, SCOPE_CAMPAIGNS_WRITE), "GET, HEAD, DELETE"},
    {"/v1/batches/{id}/start", ROUTE_BATCH_START, NONE,
     TENANT(api_batch_start, SCOPE_CAMPAIGNS_WRITE), NONE, "POST"},
    {"/v1/batches/{id}/cancel", ROUTE_BATCH_CANCEL, NONE,
     TENANT(api_batch_cancel, SCOPE_CAMPAIGNS_WRITE), NONE, "POST"},
    {"/v1/batches/{id}/retry", ROUTE_BATCH_RETRY, NONE,
     TENANT(api_batch_retry, SCOPE_CAMPAIGNS_WRITE), NONE, "POST"},
    /* Pause and resume: the scope that may cancel. */
    {"/v1/batches/{id}/pause", ROUTE_BATCH_PAUSE, NONE,
     TENANT(api_batch_pause, SCOPE_CAMPAIGNS_WRITE), NONE, "POST"},
    {"/v1/batches/{id}/resume", ROUTE_BATCH_RESUME, NONE,
     TENANT(api_batch_resume, SCOPE_CAMPAIGNS_WRITE), NONE, "POST"},
    {"/v1/batches/{id}/breakdown", ROUTE_BATCH_BREAKDOWN,
     TENANT(api_batch_breakdown, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/batches/{id}/events", ROUTE_BATCH_EVENTS, TENANT(api_batch_events, SCOPE_CAMPAIGNS_READ),
     NONE, NONE, "GET"},
    {"/v1/batches/{id}/errors", ROUTE_BATCH_ERRORS, TENANT(api_batch_errors, SCOPE_CAMPAIGNS_READ),
     NONE, NONE, "GET, HEAD"},
    {"/v1/batches/{id}/messages", ROUTE_BATCH_MESSAGES,
     TENANT(api_batch_messages, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/batches/{id}/export.csv", ROUTE_BATCH_EXPORT_CSV,
     TENANT(api_batch_export_csv, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/batches/{id}/export.xlsx", ROUTE_BATCH_EXPORT_XLSX,
     TENANT(api_batch_export_xlsx, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/callbacks", ROUTE_CALLBACKS, WIDE(api_callbacks_list, SCOPE_MESSAGES_READ), NONE, NONE,
     "GET, HEAD"},
    {"/v1/callbacks/replay", ROUTE_CALLBACKS_REPLAY, NONE,
     WIDE(api_callbacks_replay, SCOPE_MESSAGES_SEND), NONE, "POST"},
    {"/v1/callbacks/{id}", ROUTE_CALLBACK, WIDE(api_callback_get, SCOPE_MESSAGES_READ), NONE, NONE,
     "GET, HEAD"},
    {"/v1/callbacks/{id}/replay", ROUTE_CALLBACK_REPLAY, NONE,
     WIDE(api_callback_replay, SCOPE_MESSAGES_SEND), NONE, "POST"},
    {"/v1/tenants", ROUTE_TENANTS, OPERATOR(api_tenants_list), OPERATOR(api_tenants_post), NONE,
     "GET, HEAD, POST"},
    {"/v1/tenants/{tenant}", ROUTE_TENANT, ADMIN(api_tenant_get), NONE, NONE, "GET, HEAD"},
    {"/v1/tenants/{tenant}/disable", ROUTE_TENANT_DISABLE, NONE, OPERATOR(api_tenant_disable), NONE,
     "POST"},
    {"/v1/tenants/{tenant}/enable", ROUTE_TENANT_ENABLE, NONE, OPERATOR(api_tenant_enable), NONE,
     "POST"},
    {"/v1/tenants/{tenant}/units", ROUTE_UNITS, ADMIN(api_units_list), ADMIN(api_units_post), NONE,
     "GET, HEAD, POST"},
    {"/v1/webhooks/parked", ROUTE_WEBHOOKS_PARKED, WIDE(api_webhooks_parked, SCOPE_MESSAGES_READ),
     NONE, NONE, "GET, HEAD"},
    {"/v1/tenants/{tenant}/units/{unit}/disable", ROUTE_UNIT_DISABLE, NONE, ADMIN(api_unit_disable),
     NONE, "POST"},
    {"/v1/tenants/{tenant}/units/{unit}/enable", ROUTE_UNIT_ENABLE, NONE, ADMIN(api_unit_enable),
     NONE, "POST"},
    {"/v1/tenants/{tenant}/keys", ROUTE_KEYS, ADMIN(api_keys_list), ADMIN(api_keys_post), NONE,
     "GET, HEAD, POST"},
    {"/v1/tenants/{tenant}/keys/{prefix}/revoke", ROUTE_KEY_REVOKE, NONE, ADMIN(api_key_revoke),
     NONE, "POST"},
    {"/v1/audit", ROUTE_AUDIT, ADMIN(api_audit_list), NONE, NONE, "GET, HEAD"},
    {"/v1/tenants/{tenant}/limits", ROUTE_TENANT_LIMITS, NONE, OPERATOR(api_tenant_limits), NONE,
     "POST"},
    {"/v1/templates", ROUTE_TEMPLATES, TENANT(api_templates_list, SCOPE_MESSAGES_READ),
     TENANT(api_templates_post, SCOPE_TEMPLATES_WRITE), NONE, "GET, HEAD, POST"},
    {"/v1/templates/{channel}/{name}/{language}", ROUTE_TEMPLATE,
     TENANT(api_template_get, SCOPE_MESSAGES_READ), NONE,
     TENANT(api_template_delete, SCOPE_TEMPLATES_WRITE), "GET, HEAD, DELETE"},
    {"/v1/plugins", ROUTE_PLUGINS, ADMIN(api_plugins_list), NONE, NONE, "GET, HEAD"},
    {"/v1/units/{unit}/stats", ROUTE_UNIT_STATS, TENANT(api_unit_stats, SCOPE_CAMPAIGNS_READ), NONE,
     NONE, "GET, HEAD"},
    {"/v1/units/{unit}/campaigns", ROUTE_UNIT_CAMPAIGNS,
     TENANT(api_unit_campaigns, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET, HEAD"},
    /* The dashboard (README "Dashboard"): its files are public (they hold
     * no data; every read behind them is a /v1 call). */
    {"/", ROUTE_WEB_INDEX, PUBLIC(api_web_get), NONE, NONE, "GET, HEAD"},
    {"/ui/{path}", ROUTE_WEB_FILE, PUBLIC(api_web_get), NONE, NONE, "GET, HEAD"},
    /* Sign-in takes an API key in its body; GET and DELETE act on the
     * session of the cookie, authenticated by session.c itself. */
    {"/v1/session", ROUTE_SESSION, PUBLIC(api_session_get), PUBLIC(api_session_post),
     PUBLIC(api_session_delete), "GET, HEAD, POST, DELETE"},
    {"/v1/session/unmask", ROUTE_SESSION_UNMASK, NONE,
     TENANT(api_session_unmask, SCOPE_MESSAGES_READ), NONE, "POST"},
    {"/v1/events", ROUTE_EVENTS, TENANT(api_events_get, SCOPE_CAMPAIGNS_READ), NONE, NONE, "GET"},
    /* recipient history (recipients.c). */
    {"/v1/recipients/{to}", ROUTE_RECIPIENT, TENANT(api_recipient_get, SCOPE_MESSAGES_READ), NONE,
     NONE, "GET, HEAD"},
    {"/v1/messages/{id}/recipient", ROUTE_MESSAGE_RECIPIENT,
     TENANT(api_message_recipient_get, SCOPE_MESSAGES_READ), NONE, NONE, "GET, HEAD"},
    /* sender account health and pause (channels_health.c). */
    {"/v1/channels/{id}/health", ROUTE_CHANNEL_HEALTH,
     TENANT(api_channel_health, SCOPE_MESSAGES_READ), NONE, NONE, "GET, HEAD"},
    {"/v1/channels/{id}/pause", ROUTE_CHANNEL_PAUSE, NONE,
     TENANT(api_channel_pause, SCOPE_ACCOUNTS_WRITE), NONE, "POST"},
    {"/v1/channels/{id}/resume", ROUTE_CHANNEL_RESUME, NONE,
     TENANT(api_channel_resume, SCOPE_ACCOUNTS_WRITE), NONE, "POST"},
    /* the overview's daily counters (stats_daily.c). */
    {"/v1/stats/daily", ROUTE_STATS_DAILY, WIDE(api_stats_daily, SCOPE_MESSAGES_READ), NONE, NONE,
     "GET, HEAD"},
    {"/v1/session/view", ROUTE_SESSION_VIEW, NONE, TENANT(api_session_view, SCOPE_MESSAGES_READ),
     NONE, "POST"},
    /* a login of several tenants moves its session to another. */
    {"/v1/session/tenant", ROUTE_SESSION_TENANT, NONE,
     TENANT(api_session_tenant, SCOPE_MESSAGES_READ), NONE, "POST"},
};

#define API_NROUTES (sizeof api_routes / sizeof *api_routes)

size_t api_route_count(void)
{
	size_t n = 0;
	for (size_t i = 0; i < API_NROUTES; i++)
		n += (api_routes[i].get.fn != NULL) + (api_routes[i].post.fn != NULL) +
		     (api_routes[i].del.fn != NULL);
	return n;
}

int api_route_info(size_t k, struct api_route_info *out)
{
	static const char *const access_names[] = {"public", "tenant", "tenant_wide", "admin",
	                                           "operator"};
	for (size_t i = 0; i < API_NROUTES; i++) {
		const struct api_method_def *m[3] = {&api_routes[i].get, &api_routes[i].post,
		                                     &api_routes[i].del};
		static const char *const names[3] = {"GET", "POST", "DELETE"};
		for (int j = 0; j < 3; j++) {
			if (!m[j]->fn)
				continue;
			if (k-- == 0) {
				out->path = api_routes[i].path;
				out->method = names[j];
				out->scope = api_scope_name(m[j]->scope);
				out->access = access_names[m[j]->access];
				return 0;
			}
		}
	}
	return HR_ENOTFOUND;
}

/* Copies one path segment (up to '/' or the end) if it fits and is non-empty. */
static const char *segment(const char *p, char *out, size_t size)
{
	size_t n = strcspn(p, "/");
	if (n == 0 || n >= size)
		return NULL;
	memcpy(out, p, n);
	out[n] = '\0';
	return p + n;
}

static const struct api_route_def *route_def(enum api_route route)
{
	for (size_t i = 0; i < API_NROUTES; i++)
		if (api_routes[i].route == route)
			return &api_routes[i];
	return NULL;
}

/* Exact paths from the table; the patterns by hand (one segment each). MHD
 * has already %-decoded the path, so a segment may hold any byte but '/'. */
static const struct api_route_def *route_match(struct api_req *r, const char *url,
                                               char account[HR_NAME_MAX])
{
	for (size_t i = 0; i < API_NROUTES; i++)
		if (!strchr(api_routes[i].path, '{') && strcmp(url, api_routes[i].path) == 0)
			return &api_routes[i];
	const char *p;
	if (strncmp(url, "/v1/messages/", 13) == 0) {
		p = segment(url + 13, r->path_id, sizeof r->path_id);
		if (p && *p == '\0')
			return route_def(ROUTE_MESSAGE);
		if (p && strcmp(p, "/recipient") == 0)
			return route_def(ROUTE_MESSAGE_RECIPIENT);
	} else if (strncmp(url, "/v1/recipients/", 15) == 0) {
		p = segment(url + 15, r->path_id, sizeof r->path_id);
		if (p && *p == '\0')
			return route_def(ROUTE_RECIPIENT);
	} else if (strncmp(url, "/v1/channels/", 13) == 0) {
		p = segment(url + 13, r->path_id, sizeof r->path_id);
		if (p && *p == '\0')
			return route_def(ROUTE_CHANNEL);
		if (p && strcmp(p, "/capabilities") == 0)
			return route_def(ROUTE_CAPABILITIES);
		if (p && strcmp(p, "/health") == 0)
			return route_def(ROUTE_CHANNEL_HEALTH);
		if (p && strcmp(p, "/pause") == 0)
			return route_def(ROUTE_CHANNEL_PAUSE);
		if (p && strcmp(p, "/resume") == 0)
			return route_def(ROUTE_CHANNEL_RESUME);
	} else if (strncmp(url, "/v1/batches/", 12) == 0) {
		static const struct {
			const char *tail;
			enum api_route route;
		} sub[] = {{"", ROUTE_BATCH},
		           {"/start", ROUTE_BATCH_START},
		           {"/cancel", ROUTE_BATCH_CANCEL},
		           {"/retry", ROUTE_BATCH_RETRY},
		           {"/events", ROUTE_BATCH_EVENTS},
		           {"/errors", ROUTE_BATCH_ERRORS},
		           {"/messages", ROUTE_BATCH_MESSAGES},
		           {"/export.csv", ROUTE_BATCH_EXPORT_CSV},
		           {"/export.xlsx", ROUTE_BATCH_EXPORT_XLSX},
		           {"/pause", ROUTE_BATCH_PAUSE},
		           {"/resume", ROUTE_BATCH_RESUME},
		           {"/breakdown", ROUTE_BATCH_BREAKDOWN}};
		p = segment(url + 12, r->path_id, sizeof r->path_id);
		for (size_t i = 0; p && i < sizeof sub / sizeof *sub; i++)
			if (strcmp(p, sub[i].tail) == 0)
				return route_def(sub[i].route);
	} else if (strncmp(url, "/v1/units/", 10) == 0) {
		p = segment(url + 10, r->path_id, sizeof r->path_id);
		if (p && strcmp(p, "/stats") == 0)
			return route_def(ROUTE_UNIT_STATS);
		if (p && strcmp(p, "/campaigns") == 0)
			return route_def(ROUTE_UNIT_CAMPAIGNS);
	} else if (strncmp(url, "/v1/callbacks/", 14) == 0) {
		p = segment(url + 14, r->path_id, sizeof r->path_id);
		if (p && *p == '\0')
			return route_def(ROUTE_CALLBACK);
		if (p && strcmp(p, "/replay") == 0)
			return route_def(ROUTE_CALLBACK_REPLAY);
	} else if (strncmp(url, "/v1/suppressions/", 17) == 0) {
		p = segment(url + 17, r->path_channel, sizeof r->path_channel);
		if (p && *p == '/') {
			p = segment(p + 1, r->path_id, sizeof r->path_id);
			if (p && *p == '\0')
				return route_def(ROUTE_SUPPRESSION);
		}
	} else if (strncmp(url, "/v1/tenants/", 12) == 0) {
		p = segment(url + 12, r->path_tenant, sizeof r->path_tenant);
		if (p && *p == '\0')
			return route_def(ROUTE_TENANT);
		if (p && strcmp(p, "/disable") == 0)
			return route_def(ROUTE_TENANT_DISABLE);
		if (p && strcmp(p, "/enable") == 0)
			return route_def(ROUTE_TENANT_ENABLE);
		if (p && strcmp(p, "/units") == 0)
			return route_def(ROUTE_UNITS);
		if (p && strcmp(p, "/keys") == 0)
			return route_def(ROUTE_KEYS);
		if (p && strcmp(p, "/limits") == 0)
			return route_def(ROUTE_TENANT_LIMITS);
		if (p && strncmp(p, "/units/", 7) == 0) {
			p = segment(p + 7, r->path_sub, sizeof r->path_sub);
			if (p && strcmp(p, "/disable") == 0)
				return route_def(ROUTE_UNIT_DISABLE);
			if (p && strcmp(p, "/enable") == 0)
				return route_def(ROUTE_UNIT_ENABLE);
		} else if (p && strncmp(p, "/keys/", 6) == 0) {
			p = segment(p + 6, r->path_sub, sizeof r->path_sub);
			if (p && strcmp(p, "/revoke") == 0)
				return route_def(ROUTE_KEY_REVOKE);
		}
	} else if (strncmp(url, "/v1/templates/", 14) == 0) {
		p = segment(url + 14, r->path_channel, sizeof r->path_channel);
		if (p && *p == '/')
			p = segment(p + 1, r->path_id, sizeof r->path_id);
		else
			p = NULL;
		if (p && *p == '/')
			p = segment(p + 1, r->path_sub, sizeof r->path_sub);
		else
			p = NULL;
		if (p && *p == '\0')
			return route_def(ROUTE_TEMPLATE);
	} else if (strncmp(url, "/ui/", 4) == 0) {
		/* The rest of the path, slashes included; web.c looks it up. */
		size_t n = strlen(url + 4);
		if (n > 0 && n < sizeof r->path_id) {
			memcpy(r->path_id, url + 4, n + 1);
			return route_def(ROUTE_WEB_FILE);
		}
	} else if (strncmp(url, "/webhooks/", 10) == 0) {
		p = segment(url + 10, r->path_channel, sizeof r->path_channel);
		if (p && *p == '/') {
			p = segment(p + 1, account, HR_NAME_MAX);
			if (p && *p == '\0')
				return route_def(ROUTE_WEBHOOK);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------------
 * The request head: Herald's limits, and what MHD lets through that Herald
 * refuses. Checked first, before routing and authentication.
 * ------------------------------------------------------------------------- */

/*
 * Answers an over-long URL (414) or an oversized head (431) by writing the
 * response straight to the socket, then has MHD close the connection.
 *
 * Why not MHD_queue_response: MHD builds the status line and headers in the
 * connection's pool, which still holds the whole head. A head that nearly
 * fills the pool leaves no room for them and MHD closes without a word (with
 * the old 17 KiB pool, heads of 17,058-17,133 bytes got no answer at all).
 * Here nothing has been written for this request yet (MHD reads a request
 * only once the previous response is out), the answer is a few hundred
 * bytes, and the connection is closed anyway, so one non-blocking send into
 * the socket's send buffer is enough. Plain TCP only: Herald starts MHD
 * without TLS.
 */
static enum MHD_Result respond_and_close(struct api_req *r, enum api_errkind kind, const char *msg)
{
	r->responded = true;
	int status = api_errkind_status(kind);
	json_t *j = api_error_json(api_errkind_code(kind), msg, NULL);
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	const union MHD_ConnectionInfo *fdi =
	    MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	char head[256];
	int hn =
	    snprintf(head, sizeof head,
	             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             status, MHD_get_reason_phrase_for((unsigned)status), body ? strlen(body) : 0);
	bool sent = false;
	if (body && fdi && hn > 0 && (size_t)hn < sizeof head) {
		struct iovec iov[2] = {{head, (size_t)hn}, {body, strlen(body)}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		size_t want = iov[0].iov_len + iov[1].iov_len;
		ssize_t n;
		do
			n = sendmsg(fdi->connect_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		sent = n == (ssize_t)want;
		if (!sent)
			hr_log(HR_LOG_DEBUG, "api", "%d answer not sent whole (%zd of %zu bytes)",
			       status, n, want);
	}
	free(body);
	if (sent)
		metrics_http(status);
	return MHD_NO; /* MHD closes the connection: the rest of it is not read */
}

/* Headers Herald or MHD act on (authentication, body framing, idempotency,
 * the providers' webhook signatures, named as in src/channels/): with two
 * copies it is ambiguous which one was checked (MHD returns the first, a
 * proxy in front may have used the last), so a second copy is refused; and
 * Host, for which RFC 7230 section 5.4 requires it. Others may repeat. */
static const char *const api_single_headers[] = {
    "Authorization",      "Content-Length",
    "Transfer-Encoding",  "Host",
    "Idempotency-Key",    "X-Hub-Signature-256",
    "X-Twilio-Signature", "I-Twilio-Idempotency-Token",
    "X-Goog-Signature",   "X-Telegram-Bot-Api-Secret-Token",
};
#define API_SINGLE_HEADERS (sizeof api_single_headers / sizeof *api_single_headers)

struct head_scan {
	int seen[API_SINGLE_HEADERS];
	/* Query parameter names so far (at most max_header_fields of them). */
	const char **args;
	size_t *arg_len;
	int nargs;
	/* The first problem found. */
	char field[HR_NAME_MAX];
	const char *why;
};

static void head_scan_fail(struct head_scan *h, const char *name, const char *why)
{
	api_clip(h->field, sizeof h->field, name);
	h->why = why;
}

/* A query parameter's name and value come with their decoded lengths: a
 * shorter C string means %00, which every later strcmp and strlen would
 * silently cut at. (MHD measures header values with strlen itself, so a NUL
 * there is found by hidden_bytes instead.) */
static enum MHD_Result head_scan_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
	struct head_scan *h = cls;
	if (kind == MHD_COOKIE_KIND)
		return MHD_YES; /* counted, never read */
	bool arg = kind == MHD_GET_ARGUMENT_KIND;
	if (arg && (strlen(key) != key_size || (value && strlen(value) != value_size))) {
		head_scan_fail(h, key, "query parameter '%s' contains a NUL byte (%%00)");
		return MHD_NO;
	}
	if (!arg) {
		for (size_t i = 0; i < API_SINGLE_HEADERS; i++)
			if (strcasecmp(key, api_single_headers[i]) == 0 && ++h->seen[i] > 1) {
				head_scan_fail(h, api_single_headers[i],
				               "header '%s' is repeated: send it once");
				return MHD_NO;
			}
		return MHD_YES;
	}
	for (int i = 0; i < h->nargs; i++)
		if (h->arg_len[i] == key_size && memcmp(h->args[i], key, key_size) == 0) {
			head_scan_fail(h, key, "query parameter '%s' is repeated: send it once");
			return MHD_NO;
		}
	h->args[h->nargs] = key;
	h->arg_len[h->nargs++] = key_size;
	return MHD_YES;
}

/* Where a raw NUL byte hid part of the head (see hidden_bytes). */
struct head_layout {
	const char *start, *end; /* the raw head in MHD's pool */
	const char *prev_key, *prev_end;
	const char *hid; /* the header whose value ends early */
	bool foreign;    /* not laid out as expected: no verdict */
	/* A header folded over lines (obs-fold): MHD 0.9.75 gives it a name
	 * outside the head (folded_name), its value in place. */
	bool fold;
	char folded[HR_NAME_MAX];
};

/* The name a folded header was sent with. MHD 0.9.75 moves the name out of
 * the head with the continuation glued on ("X-Note: a\r\n b" becomes
 * "X-Noteb": "a"), and leaves the continuation line in place after the
 * value's line end: the name as sent is the glued one minus it. */
static void folded_name(const struct head_layout *l, const char *key, const char *value,
                        size_t value_size, char out[HR_NAME_MAX])
{
	const char *c = value + value_size;
	while (c < l->end && *c == '\0')
		c++;
	while (c < l->end && (*c == ' ' || *c == '\t'))
		c++;
	size_t kl = strlen(key), cl = strnlen(c, (size_t)(l->end - c));
	size_t n = cl > 0 && cl < kl && memcmp(key + kl - cl, c, cl) == 0 ? kl - cl : kl;
	char name[HR_NAME_MAX];
	if (n >= sizeof name)
		n = sizeof name - 1;
	memcpy(name, key, n);
	name[n] = '\0';
	api_clip(out, HR_NAME_MAX, name);
}

static bool all_nul(const char *p, const char *q)
{
	for (; p < q; p++)
		if (*p)
			return false;
	return true;
}

static enum MHD_Result layout_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
	(void)kind, (void)key_size;
	struct head_layout *l = cls;
	if (!value || value < l->start || value + value_size >= l->end) {
		l->foreign = true;
		return MHD_NO;
	}
	if (key < l->start || key >= l->end || value < key) {
		/* Only folding moves a name out of the head: refused, never
		 * skipped (skipping it would skip every other header's check). */
		l->fold = true;
		folded_name(l, key, value, value_size, l->folded);
		return MHD_NO;
	}
	/* Between a value's end and the next line: its CRLF (or LF) as NULs. */
	if (l->prev_end &&
	    (key - l->prev_end < 1 || key - l->prev_end > 2 || !all_nul(l->prev_end, key))) {
		l->hid = l->prev_key;
		return MHD_NO;
	}
	l->prev_key = key;
	l->prev_end = value + value_size;
	return MHD_YES;
}

/*
 * MHD hands header values and the request line over as C strings, so a raw
 * NUL byte ends them early: "Authorization: Bearer <key>\0junk" would read as
 * the key alone. MHD 0.9.75 parses the head in place in its pool (each line's
 * CRLF or LF becomes NULs, the colon a NUL, the value starts after the
 * spaces), so the strings lie end to end in the raw head and any bytes
 * between one value's end and the next line are what a NUL hid; likewise the
 * URI as the URI-log callback saw it must reach the space before the HTTP
 * version, and the method the space before the URI. Returns the header
 * hiding bytes ("path" for the request line), or the one folded over lines
 * (*folded: RFC 7230 3.2.4 lets a server refuse obs-fold, and MHD 0.9.75
 * mangles its name), or NULL. If the pointers are not laid out like that
 * (another MHD), no verdict: test_server's NUL cases would then fail, not
 * pass silently.
 */
static const char *hidden_bytes(struct api_req *r, const char *version, char name[HR_NAME_MAX],
                                bool *folded)
{
	*folded = false;
	const union MHD_ConnectionInfo *hs =
	    MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (!hs || !r->uri_at || !version || !*version)
		return NULL;
	struct head_layout l = {.start = r->method, .end = r->method + hs->header_size};
	if (version < l.start || version >= l.end)
		return NULL;
	if (r->uri_at + strlen(r->raw_uri) + 1 != version)
		return "path";
	/* The method ends at the first space (now a NUL); only more spaces may
	 * come before the URI ("GET\0junk /x" would read as GET). */
	const char *m_end = r->method + strlen(r->method);
	for (const char *p = m_end + 1; p < r->uri_at; p++)
		if (*p != ' ')
			return "path";
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, layout_one, &l);
	if (l.fold) {
		*folded = true;
		return memcpy(name, l.folded, HR_NAME_MAX);
	}
	if (l.foreign)
		return NULL;
	/* The last value, its line end and the blank line end the head. */
	if (!l.hid && l.prev_end &&
	    (l.end - l.prev_end < 2 || l.end - l.prev_end > 4 || !all_nul(l.prev_end, l.end)))
		l.hid = l.prev_key;
	return l.hid ? api_clip(name, HR_NAME_MAX, l.hid) : NULL;
}

/*
 * The head's limits and well-formedness: 414 for a long URL, 431 for a long
 * head or too many fields (both written by respond_and_close), 400 for a NUL
 * byte in a header or query parameter, a repeated header that Herald reads
 * or a repeated query parameter (which would otherwise silently take the
 * first), %00 in the path, and ambiguous body framing. Returns MHD_YES with
 * nothing answered when the head is fine.
 */
static enum MHD_Result check_head(struct api_req *r, const char *version)
{
	const struct api_opts *o = &r->srv->o;
	char msg[160];
	size_t ulen = strlen(r->raw_uri);
	if (ulen > o->max_url_bytes) {
		snprintf(msg, sizeof msg, "the URL is %zu bytes, over the limit of %zu", ulen,
		         o->max_url_bytes);
		return respond_and_close(r, APIERR_URI_TOO_LONG, msg);
	}
	const union MHD_ConnectionInfo *hs =
	    MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (hs && hs->header_size > o->max_header_bytes) {
		snprintf(msg, sizeof msg, "the request head is %zu bytes, over the limit of %zu",
		         hs->header_size, o->max_header_bytes);
		return respond_and_close(r, APIERR_HEAD_TOO_LARGE, msg);
	}
	int fields = MHD_get_connection_values_n(
	    r->conn, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND, NULL, NULL);
	if (fields > o->max_header_fields) {
		snprintf(msg, sizeof msg,
		         "the request has %d header fields, cookies and query parameters, over "
		         "the limit of %d",
		         fields, o->max_header_fields);
		return respond_and_close(r, APIERR_HEAD_TOO_LARGE, msg);
	}

	/* The query's names: on the stack for the usual head, else the heap. */
	struct head_scan h = {.field = ""};
	const char *args_buf[API_HEAD_ARGS_STACK];
	size_t len_buf[API_HEAD_ARGS_STACK];
	bool heap = fields + 1 > API_HEAD_ARGS_STACK;
	h.args = heap ? malloc((size_t)(fields + 1) * sizeof *h.args) : args_buf;
	h.arg_len = heap ? malloc((size_t)(fields + 1) * sizeof *h.arg_len) : len_buf;
	if (heap && (!h.args || !h.arg_len)) {
		free(h.args);
		free(h.arg_len);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	MHD_get_connection_values_n(
	    r->conn, MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND, head_scan_one, &h);
	if (heap) {
		free(h.args);
		free(h.arg_len);
	}
	if (h.why) {
		snprintf(msg, sizeof msg, h.why, h.field);
		return api_fail_kind(r, APIERR_BAD_REQUEST, msg, h.field, NULL);
	}
	char hid[HR_NAME_MAX];
	bool folded;
	const char *hider = hidden_bytes(r, version, hid, &folded);
	if (hider) {
		if (folded)
			snprintf(msg, sizeof msg,
			         "header '%s' is folded over several lines: send it on one line",
			         hider);
		else if (strcmp(hider, "path") == 0)
			snprintf(msg, sizeof msg, "the request line contains a NUL byte");
		else
			snprintf(msg, sizeof msg, "header '%s' contains a NUL byte", hider);
		return api_fail_kind(r, APIERR_BAD_REQUEST, msg, hider, NULL);
	}
	/* MHD has decoded the path before Herald sees it: %00 would end the
	 * route's strings early ("/v1/messages/a%00b" read as message "a"). */
	const char *nul = strstr(r->raw_uri, "%00");
	if (nul && (size_t)(nul - r->raw_uri) < strcspn(r->raw_uri, "?"))
		return api_fail_kind(r, APIERR_BAD_REQUEST, "the path contains %00", "path", NULL);
	/* Body framing: a Content-Length beside a Transfer-Encoding (MHD would
	 * silently use the latter), or a coding other than chunked (which MHD
	 * cannot frame at all), is how request smuggling starts. */
	const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_TRANSFER_ENCODING);
	if (te && strcasecmp(te, "chunked") != 0)
		return api_fail_kind(r, APIERR_BAD_REQUEST,
		                     "Transfer-Encoding must be chunked (or absent)",
		                     MHD_HTTP_HEADER_TRANSFER_ENCODING, NULL);
	if (te &&
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH))
		return api_fail_kind(r, APIERR_BAD_REQUEST,
		                     "send either Content-Length or Transfer-Encoding, not both",
		                     MHD_HTTP_HEADER_CONTENT_LENGTH, NULL);
	return MHD_YES;
}

static enum MHD_Result too_large(struct api_req *r)
{
	if (r->route == ROUTE_WEBHOOK)
		metrics_webhook(r->path_channel, M_WH_REJECTED, 1);
	struct hr_err err;
	hr_fail(&err, HR_ELIMIT, NULL, "request body exceeds the limit of %zu bytes", r->limit);
	return api_fail(r, HR_ELIMIT, &err);
}

/* The headers are in: route, check the method, authenticate, check the
 * declared length. Anything refused here is answered before the body. */
static enum MHD_Result start_request(struct api_req *r, const char *url, const char *version)
{
	struct api_server *s = r->srv;
	enum MHD_Result hret = check_head(r, version);
	if (r->responded || hret != MHD_YES)
		return hret;
	/* libmicrohttpd listens before the sessions, event streams and campaign
	 * runner exist (api_start makes them after it): a request in between
	 * is told to come back, never handled against half a server. */
	if (!atomic_load(&s->ready)) {
		struct hr_err busy = {0};
		hr_fail(&busy, HR_EBUSY, NULL, "the server is starting; retry (Retry-After)");
		return api_fail(r, HR_EBUSY, &busy);
	}
	char account[HR_NAME_MAX] = "";
	const struct api_route_def *def = route_match(r, url, account);
	if (!def)
		return api_fail_kind(r, APIERR_ROUTE, "no such route", NULL, NULL);
	r->route = def->route;
	bool get =
	    !strcmp(r->method, MHD_HTTP_METHOD_GET) || !strcmp(r->method, MHD_HTTP_METHOD_HEAD);
	const struct api_method_def *md = get                                        ? &def->get
	                                  : !strcmp(r->method, MHD_HTTP_METHOD_POST)   ? &def->post
	                                  : !strcmp(r->method, MHD_HTTP_METHOD_DELETE) ? &def->del
	                                                                               : NULL;
	r->handler = md ? md->fn : NULL;
	if (!r->handler) {
		const char *allow[] = {"Allow", def->allow, NULL};
		char msg[96], method[17];
		snprintf(msg, sizeof msg, "method %s not allowed here (allowed: %s)",
		         api_clip(method, sizeof method, r->method), def->allow);
		return api_fail_kind(r, APIERR_METHOD, msg, NULL, allow);
	}

	struct hr_err err;
	hr_err_clear(&err);
	int rc;
	/* The rates after authentication (a flood without a valid credential
	 * spends no tenant's tokens) and before anything else: a refused
	 * request costs no store read. */
	int64_t retry_s = 0;
	if (md->access != ACCESS_PUBLIC && (rc = api_auth(r, &err)) == 0 &&
	    (rc = api_limits_check(s, &r->who, &retry_s, &err)) != 0)
		return api_quota_fail(r, &err, retry_s);
	if (md->access != ACCESS_PUBLIC &&
	    (rc != 0 || (rc = api_authorize(r, md->scope, md->access, &err)) != 0 ||
	     (rc = api_unit_precheck(r, &err)) != 0))
		return api_fail(r, rc, &err);
	if (r->route == ROUTE_WEBHOOK && api_webhook_resolve(r, r->path_channel, account) != 0) {
		metrics_webhook(r->path_channel, M_WH_REJECTED, 1);
		return api_fail_kind(r, APIERR_ROUTE, "unknown webhook account", NULL, NULL);
	}

	r->limit = r->route == ROUTE_WEBHOOK ? s->o.max_webhook_bytes : s->o.max_body_bytes;
	/* A campaign file: streamed to disk, under its own, larger limit. */
	const char *ctype =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (r->route == ROUTE_BATCHES && md == &def->post && ctype &&
	    strncasecmp(ctype, "multipart/form-data", 19) == 0) {
		if ((rc = api_upload_begin(r, &err)) != 0)
			return api_fail(r, rc, &err);
		r->limit = s->o.max_upload_bytes;
	}
	const char *cl =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno || *end || n > r->limit)
			return too_large(r);
		/* Sized from the declared length, but only up to 64 KiB before the
		 * bytes arrive: a header alone must not reserve megabytes. */
		if (n > 0 && !r->upload) {
			r->cap = n + 1 < API_BODY_PREALLOC ? (size_t)n + 1 : API_BODY_PREALLOC;
			r->body = malloc(r->cap);
			if (!r->body)
				return api_fail(r, HR_ENOMEM, NULL);
		}
	}
	return MHD_YES;
}

/* Appends a chunk, or drops the body once it is over the limit: the rest of
 * an oversized upload is read and discarded, never stored. */
static void body_append(struct api_req *r, const char *data, size_t n)
{
	if (r->too_large)
		return;
	if (n > r->limit - r->len) {
		r->too_large = true;
		free(r->body);
		r->body = NULL;
		r->len = r->cap = 0;
		return;
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap > r->limit + 1)
			cap = r->limit + 1;
		char *b = realloc(r->body, cap);
		if (!b) {
			r->too_large = r->oom = true; /* the rest is discarded too */
			free(r->body);
			r->body = NULL;
			r->len = r->cap = 0;
			return;
		}
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	struct api_server *s = cls;
	struct api_req *r = *req_cls;
	if (!r)
		return MHD_NO; /* the URI-log callback ran out of memory */
	if (!r->started) {
		r->started = true;
		r->conn = conn;
		r->method = method;
		r->gconn = api_guard_conn(conn);
		api_guard_head_done(s->guard, r->gconn);
		enum MHD_Result ret = start_request(r, url, version);
		if (r->responded) /* answered early: no body deadline while it is sent */
			api_guard_ready(s->guard, r->gconn);
		return ret;
	}
	if (*upload_data_size) {
		if (r->upload && !r->responded && !r->too_large) {
			if (*upload_data_size > r->limit - r->len)
				r->too_large = true; /* the rest is read and discarded */
			else {
				r->len += *upload_data_size;
				api_upload_feed(r, upload_data, *upload_data_size);
			}
		} else if (!r->responded)
			body_append(r, upload_data, *upload_data_size);
		/* Only bytes kept earn body time: the discarded rest of a body over
		 * the limit must come within what the kept part earned, or a steady
		 * stream of it would hold the connection forever. */
		if (!r->too_large)
			api_guard_body(s->guard, r->gconn, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!r->complete) {
		/* The whole request is in: from here it may wait (suspended) for
		 * the writer or a provider as long as its handler says. */
		r->complete = true;
		api_guard_ready(s->guard, r->gconn);
	}
	if (r->responded)
		return MHD_YES;
	if (r->oom)
		return api_fail(r, HR_ENOMEM, NULL);
	if (r->too_large)
		return too_large(r);
	if (r->upload) {
		struct hr_err err;
		hr_err_clear(&err);
		int rc = api_upload_finish(r, &err);
		if (rc)
			return api_fail(r, rc, &err);
	}
	if (!r->body) {
		r->body = strdup("");
		if (!r->body)
			return api_fail(r, HR_ENOMEM, NULL);
	}
	return r->handler(r);
}

/* Runs when MHD has the request line, before it splits off the query and
 * decodes the path in place: raw_uri is the target as sent. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)conn;
	struct api_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->srv = cls;
	r->uri_at = uri;
	r->raw_uri = strdup(uri);
	if (!r->raw_uri) {
		free(r);
		return NULL;
	}
	r->method = "";
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	struct api_server *s = cls;
	/* The response is out (or the connection is closing): a kept-alive
	 * connection's next request starts its head deadline now. */
	api_guard_request_done(s->guard, api_guard_conn(conn));
	struct api_req *r = *req_cls;
	if (!r)
		return;
	if (r->priv_free)
		r->priv_free(r->priv);
	api_upload_free(r->upload);
	free(r->body);
	free(r->raw_uri);
	free(r);
	*req_cls = NULL;
}

/* MHD's messages about one client's bad request (a malformed or oversized
 * head, a connection the client dropped, one Herald closed on purpose) go
 * to the debug level: any client can trigger them at will, and they must
 * not flood the log. The rest (sockets, threads, memory) are warnings. */
static const char *const mhd_client_noise[] = {
    "Error processing request",         "Application reported internal error",
    "Failed to parse `Content-Length'", "Too large value of 'Content-Length'",
    "Not enough memory in pool",        "Socket has been disconnected",
    "Connection socket is closed",      "Received HTTP/1.1 request without `Host'",
};

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	enum hr_log_level lvl = HR_LOG_WARN;
	for (size_t i = 0; i < sizeof mhd_client_noise / sizeof *mhd_client_noise; i++)
		if (strncmp(msg, mhd_client_noise[i], strlen(mhd_client_noise[i])) == 0)
			lvl = HR_LOG_DEBUG;
	hr_log(lvl, "http", "%s", msg);
}

/* ---------------------------------------------------------------------------
 * Start and stop.
 * ------------------------------------------------------------------------- */

int api_start(const struct api_opts *opts, struct api_server **out, struct hr_err *err)
{
	if (!opts->store || !opts->accounts)
		return hr_fail(err, HR_EINVAL, "api", "store and accounts are required");
	if (opts->max_batch < 1 || opts->max_body_bytes < 1 || opts->max_webhook_bytes < 1)
		return hr_fail(err, HR_EINVAL, "api", "limits must be positive");
	if (opts->port < 0 || opts->port > 65535)
		return hr_fail(err, HR_EINVAL, "server.port", "port %d out of range", opts->port);
	if (opts->max_attempts < 0)
		return hr_fail(err, HR_EINVAL, "dispatch.max_attempts",
		               "max_attempts must be positive (or 0 for the default)");

	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} addr;
	memset(&addr, 0, sizeof addr);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	const char *host = opts->listen_addr ? opts->listen_addr : "127.0.0.1";
	if (inet_pton(AF_INET, host, &addr.in4.sin_addr) == 1) {
		addr.in4.sin_family = AF_INET;
		addr.in4.sin_port = htons((uint16_t)opts->port);
	} else if (inet_pton(AF_INET6, host, &addr.in6.sin6_addr) == 1) {
		addr.in6.sin6_family = AF_INET6;
		addr.in6.sin6_port = htons((uint16_t)opts->port);
		flags |= MHD_USE_IPv6;
	} else {
		return hr_fail(err, HR_EINVAL, "server.listen", "not an IP address: %s", host);
	}

	struct api_server *s = calloc(1, sizeof *s);
	if (!s)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	s->o = *opts;
	if (s->o.threads < 1)
		s->o.threads = 1;
	struct api_opts def;
	api_opts_default(&def);
	if (s->o.max_connections < 1)
		s->o.max_connections = def.max_connections;
	/* By default one address may hold an eighth of the server: a single
	 * source cannot take it all, and a client's pool of a dozen or more
	 * kept-alive connections still fits at the default 1024 (128). */
	if (s->o.max_connections_per_ip < 0)
		s->o.max_connections_per_ip =
		    s->o.max_connections >= 8 ? s->o.max_connections / 8 : 1;
	if (s->o.max_header_bytes < 1)
		s->o.max_header_bytes = def.max_header_bytes;
	if (s->o.max_url_bytes < 1)
		s->o.max_url_bytes = def.max_url_bytes;
	if (s->o.max_header_fields < 1)
		s->o.max_header_fields = def.max_header_fields;
	if (s->o.request_head_timeout_us <= 0)
		s->o.request_head_timeout_us = def.request_head_timeout_us;
	if (s->o.request_body_timeout_us <= 0)
		s->o.request_body_timeout_us = def.request_body_timeout_us;
	if (s->o.min_body_rate < 1)
		s->o.min_body_rate = def.min_body_rate;
	if (s->o.dash.max_sessions < 1)
		s->o.dash = def.dash;
	s->o.dash.secure_cookie = s->o.public_url && strncmp(s->o.public_url, "https:", 6) == 0;
	if (!s->o.public_url)
		s->o.public_url = "";
	/* A configured default wait is honoured as given: the cap on per-request
	 * waits grows to it rather than cutting it down. */
	if (s->o.sync_timeout_us <= 0)
		s->o.sync_timeout_us = API_SYNC_TIMEOUT_US;
	if (s->o.sync_max_timeout_us <= 0)
		s->o.sync_max_timeout_us = API_SYNC_MAX_TIMEOUT_US;
	if (s->o.sync_max_timeout_us < s->o.sync_timeout_us)
		s->o.sync_max_timeout_us = s->o.sync_timeout_us;
	if (s->o.max_attempts > 0) {
		s->max_attempts = s->o.max_attempts;
	} else {
		struct dispatch_opts dop;
		dispatch_opts_default(&dop);
		s->max_attempts = dop.max_attempts;
	}
	struct api_guard_limits lim = {
	    .max_connections = s->o.max_connections,
	    .max_per_addr = s->o.max_connections_per_ip,
	    .head_us = s->o.request_head_timeout_us,
	    .body_us = s->o.request_body_timeout_us,
	    .min_rate = s->o.min_body_rate,
	};
	int rc = api_guard_new(&lim, &s->guard, err);
	if (rc != 0) {
		free(s);
		return rc;
	}
	api_keycache_init(&s->keys, s->o.auth_cache_us);
	if ((rc = api_jwt_load(s->o.auth_cfg, &s->jwt, err)) != 0) {
		api_guard_free(s->guard);
		api_keycache_destroy(&s->keys);
		free(s);
		return rc;
	}
	if ((rc = api_limits_new(&s->o.limits, s->o.auth_cache_us, &s->limits, err)) != 0) {
		api_guard_free(s->guard);
		api_keycache_destroy(&s->keys);
		api_jwt_free(s->jwt);
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	pthread_mutex_init(&s->channels_lock, NULL);

	struct MHD_OptionItem ops[] = {
	    {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, s}, /* first, or MHD warns */
	    {MHD_OPTION_SOCK_ADDR, 0, &addr.sa},
	    {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)api_guard_mhd_limit(s->guard), NULL},
	    {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)api_guard_notify, s->guard},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)api_pool_bytes(&s->o), NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, API_CONN_TIMEOUT_S, NULL},
	    {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, s},
	    {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
	    {s->o.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
	     (intptr_t)s->o.threads, NULL},
	    {MHD_OPTION_END, 0, NULL},
	};
	/* Before listening: a PENDING batch is then surely an upload the last
	 * process died in, never one this process is reading. */
	if (s->o.dispatcher)
		batch_runner_fail_interrupted(s);
	s->mhd = MHD_start_daemon(flags, 0, api_guard_accept, s->guard, on_request, s,
	                          MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
	if (!s->mhd) {
		int e = errno;
		api_guard_free(s->guard);
		api_keycache_destroy(&s->keys);
		api_jwt_free(s->jwt);
		api_limits_free(s->limits);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->idle);
		pthread_mutex_destroy(&s->channels_lock);
		free(s);
		return hr_fail(err, HR_EIO, "server.listen", "cannot listen on %s:%d: %s", host,
		               opts->port, e ? strerror(e) : "libmicrohttpd refused the options");
	}
	/* Campaigns are turned into messages only where messages are sent. */
	if ((rc = api_metrics_listen_start(s, err)) != 0 ||
	    (rc = api_sse_start(&s->sse, err)) != 0 ||
	    (rc = api_sessions_new(&s->o.dash, &s->sessions, err)) != 0 ||
	    (rc = api_events_new(&s->o.dash, &s->events, err)) != 0 ||
	    (s->o.dispatcher && (rc = batch_runner_start(s, &s->runner, err)) != 0)) {
		api_stop(s);
		return rc;
	}
	atomic_store(&s->ready, true);
	*out = s;
	return 0;
}

int api_port(const struct api_server *s)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	return info ? (int)info->port : -1;
}

/*
 * Stops accepting, lets every suspended request finish (durable writes
 * complete within a group commit; sync waits end by their timeout), then
 * stops MHD. Stop the API before the dispatcher and the store: the callbacks
 * it waits for come from them.
 */
void api_stop(struct api_server *s)
{
	if (!s)
		return;
	api_metrics_listen_stop(s);
	/* New connections are closed as soon as they are accepted (the guard's
	 * accept policy). Not MHD_quiesce_daemon: with a thread pool and epoll
	 * it takes the listen socket out of each worker's epoll set while the
	 * worker, seeing was_quiesced, may do the same, and whichever comes
	 * second aborts the process ("Failed to remove listen FD from epoll
	 * set", libmicrohttpd 0.9.75 to 1.0.1; seen once in CI, at a stop). */
	if (s->guard)
		api_guard_close(s->guard);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	while (s->pending > 0)
		pthread_cond_wait(&s->idle, &s->lock);
	pthread_mutex_unlock(&s->lock);
	api_sse_quiesce(s->sse); /* no stream left suspended */
	api_events_quiesce(s->events);
	MHD_stop_daemon(s->mhd);
	api_sse_free(s->sse);
	api_events_free(s->events);
	api_sessions_free(s->sessions); /* after the streams that count in it */
	batch_runner_stop(s->runner); /* after the requests that may wake it */
	api_guard_free(s->guard); /* after MHD: every connection is closed */
	api_keycache_destroy(&s->keys);
	api_jwt_free(s->jwt);
	api_limits_free(s->limits);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->channels_lock);
	free(s);
}
