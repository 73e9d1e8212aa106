/*
 * api.h - the HTTP server (libmicrohttpd): the /v1 API, webhook ingress,
 * health and metrics. Requests that need a durable write or a provider's
 * answer suspend their connection and are resumed from the writer's or the
 * dispatcher's callback, so a few server threads serve thousands of
 * connections without blocking on disk or network.
 */
#ifndef HR_API_H
#define HR_API_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "channels/channel.h"
#include "dispatch/dispatch.h"
#include "store/store.h"
#include "webhooks/applier.h"
#include "webhooks/callbacks.h"

struct api_server;

/* Request rate limits (README "Limits"; limits.* in the config). Rates
 * are in thousandths of a request per second; 0 = no limit. A burst of 0
 * is one second's worth at the rate. */
#define API_LIMIT_BUCKETS_DEFAULT 65536
struct api_limit_opts {
	int64_t rate_milli, burst;         /* per tenant, unless the tenant has its own */
	int64_t key_rate_milli, key_burst; /* per credential (API key, JWT subject, operator key) */
	size_t max_buckets;                /* limits.max_buckets: the table's bound (0 = default) */
};

struct plugins;
/* The dashboard (README "Dashboard"; dashboard.* in the config). */
struct api_dash_opts {
	int max_sessions;           /* signed-in sessions in all (default 1024) */
	int sessions_per_key;       /* per API key: its oldest is ended beyond (default 8) */
	int64_t session_idle_us;    /* ended after this long unused (default 30 min) */
	int64_t session_max_age_us; /* and this long after sign-in (default 12 h) */
	int64_t unmask_us;          /* phone numbers shown after an unmask (default 15 min) */
	int max_event_streams;      /* GET /v1/events streams in all (default 64) */
	int streams_per_session;    /* per session or credential (default 4) */
	int64_t heartbeat_us;       /* a comment line on a quiet stream (default 15 s) */
	bool secure_cookie;         /* Secure: set when public_url is https */
};

struct api_opts {
	const char *listen_addr;    /* "127.0.0.1" */
	int port;                   /* 0 = any free port (see api_port) */
	const char *public_url;     /* "http://127.0.0.1:8080", for signature URLs */
	int threads;                /* MHD thread pool size (default 2) */
	int max_connections;        /* default 1024 */
	size_t max_body_bytes;      /* API bodies (default 4 MiB, batch requests) */
	size_t max_webhook_bytes;   /* webhook bodies (default 1 MiB) */
	size_t max_header_bytes;    /* the request head: request line and headers
	                             * (default 16 KiB; 431 beyond) */
	size_t max_url_bytes;       /* the request target, query included (default
	                             * 8 KiB; 414 beyond) */
	int max_header_fields;      /* header fields, cookies and query parameters
	                             * together (default 128; 431 beyond) */
	int max_connections_per_ip; /* per IPv4 address or IPv6 /64 (0 = no
	                             * per-address limit; default -1: an eighth of
	                             * max_connections, at least 1) */
	/* A request's head must be complete within request_head_timeout_us of
	 * its start (the connection's start, or the previous response's end);
	 * its body within request_body_timeout_us of the head plus one second
	 * for every min_body_rate bytes received. Defaults 10 s, 10 s,
	 * 1024 B/s. */
	int64_t request_head_timeout_us;
	int64_t request_body_timeout_us;
	int min_body_rate;
	int max_batch; /* messages per batch request (default 10000) */
	int max_batch_rows; /* rows per campaign upload (default 1,000,000) */
	/* Messages a processing campaign may have made and not yet claimed
	 * (batches.make_ahead, default 50,000; 0: make every row at once). */
	int64_t make_ahead;
	size_t max_upload_bytes; /* a multipart campaign upload (default 200 MiB) */
	const char *upload_dir;  /* where uploads are spooled (default /tmp) */
	/* mode=sync: the wait when a request gives no timeout_ms (default 10 s)
	 * and the largest timeout_ms a request may ask for (default 60 s); <= 0
	 * means the default. A configured wait is never cut down: api_start
	 * raises the cap to sync_timeout_us when that is larger. */
	int64_t sync_timeout_us;
	int64_t sync_max_timeout_us;
	int max_attempts;            /* dispatch.max_attempts, stored on each accepted
	                              * message (0 = the dispatcher's default, 8) */
	/* The scrape listener (server.metrics_listen): GET /metrics without a
	 * credential, and nothing else, on its own address; metrics_listen_addr
	 * NULL (the default) means none; metrics_port 0 any free port
	 * (api_metrics_port). The main port's /metrics needs `metrics:read`
	 * either way. */
	const char *metrics_listen_addr;
	int metrics_port;
	struct store *store;
	/* Accounts tenants create through /v1/channels are loaded under
	 * accounts->policy (channel.h): secrets from the tenant's own namespace,
	 * provider origins only. */
	struct account_set *accounts;
	struct dispatcher *dispatcher; /* may be NULL (api-only role) */
	/* External data sources (plugins/datasource.h) campaigns may read
	 * from (POST /v1/batches {"source", "query"}); borrowed, NULL: none. */
	struct ds_registry *datasources;
	/* The config's prices (campaigns/pricing.h) for the uploads' cost
	 * estimates; borrowed, NULL: none configured. */
	const struct pricing *pricing;
	/* Callbacks to client systems (webhooks/callbacks.h): which URLs a
	 * tenant may name and each tenant's URL and secret; borrowed. */
	const struct callback_policy *callback_policy;
	const struct callback_tenant *callback_tenants;
	size_t ncallback_tenants;
	struct applier *applier;       /* may be NULL */
	struct plugins *plugins;       /* the loaded plugins (plugins/plugins.h); may be NULL */
	/* Authentication (README "Security"). Operator keys' SHA-256 hex
	 * hashes (server.operator_keys), borrowed; how long a key read from
	 * the store is trusted (server.auth_cache_ms, default 5 s: the bound on
	 * revocation across nodes); the config whose auth.jwt and
	 * tenants[].jwt say which JWTs are accepted (NULL: none), borrowed. */
	const char (*operator_hashes)[65];
	size_t noperator;
	int64_t auth_cache_us;
	json_t *auth_cfg;
	struct api_limit_opts limits;
	struct api_dash_opts dash;
};
void api_opts_default(struct api_opts *o);

int api_start(const struct api_opts *opts, struct api_server **out, struct hr_err *err);
int api_port(const struct api_server *s);
/* The scrape listener's port, or -1 when there is none. */
int api_metrics_port(const struct api_server *s);
void api_stop(struct api_server *s);

/* The route table as tests enumerate it (tests/integration/test_authz.c):
 * one entry per route and method, in table order. */
struct api_route_info {
	const char *path;   /* "/v1/batches/{id}/start" */
	const char *method; /* "GET", "POST", "DELETE" */
	const char *scope;  /* "messages:send"; NULL for public routes */
	const char *access; /* "public", "tenant", "tenant_wide", "admin", "operator" */
};
size_t api_route_count(void);
/* 0, or HR_ENOTFOUND past the end. */
int api_route_info(size_t i, struct api_route_info *out);

/* Every error code the API answers with (errors.c), as tests and the
 * OpenAPI check (tests/unit/test_openapi.c) enumerate them. */
struct api_error_info {
	const char *code;        /* "invalid" */
	int http;                /* 422 */
	const char *description; /* what it means, for the document */
};
size_t api_error_code_count(void);
/* 0, or HR_ENOTFOUND past the end. */
int api_error_code_info(size_t i, struct api_error_info *out);

/* The OpenAPI 3.1 document served at GET /openapi.json (api/openapi.json,
 * embedded at build time): its bytes (not NUL-terminated) and length. */
const unsigned char *api_openapi_doc(size_t *len);

#endif
