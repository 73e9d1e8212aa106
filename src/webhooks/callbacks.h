/*
 * callbacks.h - callbacks to client systems: the sender that POSTs the
 * outbox's rows (store.h: callback_row) to each tenant's URL, signed, and
 * the rules it and the API share (which URLs a tenant may name, the body,
 * the signature, the retry schedule).
 *
 * The sender is one thread of its own ("herald-callbacks") driving a
 * libcurl multi handle: never the dispatcher's or an HTTP thread, so a
 * receiver that is slow, down or hanging costs sending and webhook
 * ingestion nothing. What it holds is bounded: at most max_in_flight
 * requests (each with one row and its body), at most max_in_flight_per_url
 * of them to one URL, so one hanging receiver cannot take every slot.
 *
 * Delivery is at least once: a row is claimed with a lease longer than the
 * request timeout; if the process dies mid-request the row is sent again
 * after the lease. Receivers deduplicate by the body's "id" (the outbox
 * row's id, stable across retries and replays).
 */
#ifndef HR_CALLBACKS_H
#define HR_CALLBACKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "channels/channel.h"
#include "store/store.h"

#define CALLBACK_URL_MAX 2048

/* Which URLs tenants may name, read from callbacks.allowed_origins. */
struct callback_policy {
	char (*origins)[160]; /* "scheme://host:port", as channel_url_origin makes them */
	size_t norigins;
};

/* Reads callbacks.allowed_origins (a list of http(s) origins); HR_EINVAL
 * naming the entry that is not one. */
int callback_policy_init(struct callback_policy *p, json_t *cfg, struct hr_err *err);
void callback_policy_clear(struct callback_policy *p);

/*
 * Whether a tenant may have callbacks POSTed to url: an absolute https URL
 * with a host, no user:password@, no fragment, no IPv6 zone, at most
 * CALLBACK_URL_MAX bytes; plain http only to an origin the operator lists
 * (callbacks.allowed_origins, e.g. "http://127.0.0.1:9090" in tests).
 * HR_EINVAL naming field otherwise. The sender checks again before every
 * request (the list may have shrunk since) and refuses loopback, private
 * and link-local addresses unless the origin is listed.
 */
int callback_url_check(const struct callback_policy *p, const char *url, const char *field,
                       struct hr_err *err);

/* The Herald-Signature header's value for body sent at unix time t:
 * "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>". out needs 96 bytes. */
void callback_sign(const char *secret, size_t secret_len, int64_t t, const char *body, size_t len,
                   char out[96]);

/* The JSON body of a row (caller frees), or NULL when memory ran out. Keys:
 * id, type, tenant, message_id, batch_id, status, previous_status,
 * provider_id, error {code, text}, occurred_at (RFC 3339, UTC, us) and,
 * for replies, reply {kind, from, text, payload, provider_msg_id}. */
char *callback_body(const struct callback_row *r);

struct callback_opts {
	int max_in_flight;         /* requests at once (32) */
	int max_in_flight_per_url; /* of them to one URL (4) */
	int64_t timeout_us;        /* per request (10 s) */
	int max_attempts;          /* attempts before a row is dead (15) */
	int64_t backoff_base_us;   /* first retry after about this (1 s) */
	int64_t backoff_max_us;    /* retries at most this far apart (1 h) */
	int64_t poll_us;           /* looks for new rows this often when idle (200 ms) */
};
void callback_opts_default(struct callback_opts *o);

/*
 * The delay before retry number `attempts` (1 = after the first failure):
 * base * 2^(attempts-1) capped at max, then "equal jitter": half of it
 * fixed, the other half scaled by jitter in [0,1) — so retries of many
 * rows that failed together spread out, and none comes sooner than half
 * the schedule.
 */
int64_t callback_backoff(const struct callback_opts *o, int attempts, double jitter);

/* A tenant's callback settings: its URL (tenants[].callback_url, for
 * messages and batches that name none) and signing secret
 * (tenants[].callback_secret, resolved in the tenant's namespace). */
struct callback_tenant {
	char id[HR_NAME_MAX];
	char *url;    /* heap, NULL for none */
	char *secret; /* heap (hr_secret_free), NULL for none */
	size_t secret_len;
};

/* Reads every tenant's callback_url and callback_secret from cfg: *out a
 * heap array of *n (callback_tenants_free). The secret is an env:/file:
 * reference inside the tenant's secret namespace (ns: channel_policy_ns),
 * the URL checked by callback_url_check; a URL needs a secret. Errors name
 * the key (tenants[i].callback_url). */
int callback_tenants_load(json_t *cfg, const struct channel_policy *ns,
                          const struct callback_policy *p, struct callback_tenant **out, size_t *n,
                          struct hr_err *err);
void callback_tenants_free(struct callback_tenant *v, size_t n);

struct callbacks;

/* Starts the sender thread. tenants[] and policy are borrowed for its
 * life. */
int callbacks_start(struct store *st, const struct callback_opts *o,
                    const struct callback_policy *policy, const struct callback_tenant *tenants,
                    size_t ntenants, struct callbacks **out, struct hr_err *err);
/* Stops it: requests in flight are abandoned (their rows go out again
 * after their lease). NULL is fine. */
void callbacks_stop(struct callbacks *c);

#endif
