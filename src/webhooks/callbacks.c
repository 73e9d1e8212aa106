/*
 * callbacks.c - callbacks to client systems (callbacks.h): the URL rules,
 * the body and signature, the retry schedule, and the sender thread.
 *
 * The sender's loop:
 *   1. with free slots, claim due rows (store: in order per message, none
 *      for a URL already at its in-flight limit, and never more of one URL
 *      than it has room for), start one POST per row;
 *   2. curl_multi_poll until a transfer ends, the poll interval passes, or
 *      callbacks_stop wakes it;
 *   3. record what ended (delivered, retry at a backoff time, dead) in one
 *      store write.
 * Nothing here decides order or fencing: the store's claim and outcome
 * statements do (store.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "core/config.h"
#include "core/crypto.h"
#include "obs/metrics.h"
#include "webhooks/callbacks.h"

/* ---------------------------------------------------------------------------
 * Which URLs.
 * ------------------------------------------------------------------------- */

void callback_policy_clear(struct callback_policy *p)
{
	if (!p)
		return;
	free(p->origins);
	memset(p, 0, sizeof *p);
}

int callback_policy_init(struct callback_policy *p, json_t *cfg, struct hr_err *err)
{
	memset(p, 0, sizeof *p);
	json_t *list = hr_cfg_get(cfg, "callbacks.allowed_origins");
	if (list && !json_is_array(list) && !json_is_null(list))
		return hr_fail(err, HR_EINVAL, "callbacks.allowed_origins",
		               "callbacks.allowed_origins must be a list of origins");
	size_t n = json_array_size(list);
	if (n && !(p->origins = calloc(n, sizeof *p->origins)))
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *u = json_string_value(json_array_get(list, i));
		if (!u || channel_url_origin(u, p->origins[i], sizeof p->origins[i]) != 0) {
			char f[64];
			snprintf(f, sizeof f, "callbacks.allowed_origins[%zu]", i);
			callback_policy_clear(p);
			return hr_fail(
			    err, HR_EINVAL, f,
			    "%s must be an http(s) origin such as \"http://127.0.0.1:9090\"", f);
		}
		p->norigins++;
	}
	return 0;
}

static bool origin_allowed(const struct callback_policy *p, const char *origin)
{
	for (size_t i = 0; p && i < p->norigins; i++)
		if (strcmp(p->origins[i], origin) == 0)
			return true;
	return false;
}

int callback_url_check(const struct callback_policy *p, const char *url, const char *field,
                       struct hr_err *err)
{
	char origin[160];
	size_t len = url ? strlen(url) : 0;
	if (len == 0 || len > CALLBACK_URL_MAX)
		return hr_fail(err, HR_EINVAL, field, "%s must be a URL of 1 to %d bytes", field,
		               CALLBACK_URL_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return hr_fail(
			    err, HR_EINVAL, field,
			    "%s must not contain spaces, control or non-ASCII characters "
			    "(percent-encode them)",
			    field);
	if (channel_url_origin(url, origin, sizeof origin) != 0 || strchr(url, '#'))
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be an absolute https:// URL with a host, without "
		               "user:password@, a #fragment or an IPv6 zone id",
		               field);
	if (strncmp(origin, "https://", 8) != 0 && !origin_allowed(p, origin))
		return hr_fail(err, HR_EINVAL, field,
		               "%s must use https (plain http only to an origin the operator lists "
		               "in callbacks.allowed_origins)",
		               field);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Body, signature, schedule.
 * ------------------------------------------------------------------------- */

void callback_sign(const char *secret, size_t secret_len, int64_t t, const char *body, size_t len,
                   char out[96])
{
	char head[32];
	int hl = snprintf(head, sizeof head, "%lld.", (long long)t);
	/* "t.body" without copying the body: HMAC over the two parts would
	 * need the streaming API; the body is bounded (callbacks.h), so one
	 * buffer is simpler and as safe. */
	char *msg = malloc((size_t)hl + len + 1);
	char hex[65] = "";
	if (msg) {
		memcpy(msg, head, (size_t)hl);
		memcpy(msg + hl, body, len);
		hr_hmac_sha256_hex(secret, secret_len, msg, (size_t)hl + len, hex);
		free(msg);
	}
	snprintf(out, 96, "t=%lld,v1=%s", (long long)t, hex);
}

static bool status_is_failure(int s)
{
	return s >= 0 && s != MSG_SENT && s != MSG_DELIVERED && s != MSG_READ && s != MSG_QUEUED &&
	       s != MSG_SENDING;
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

char *callback_body(const struct callback_row *r)
{
	char at[32];
	hr_time_format(r->occurred_at, at);
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= json_object_set_new(o, "id", json_integer(r->id));
	bad |= json_object_set_new(o, "type", json_string(r->event));
	bad |= json_object_set_new(o, "tenant", json_string(r->tenant_id));
	bad |= json_object_set_new(o, "message_id", str_or_null(r->message_id));
	bad |= json_object_set_new(o, "batch_id", str_or_null(r->batch_id));
	if (r->status >= 0) {
		bad |= json_object_set_new(
		    o, "status", json_string(msg_status_name((enum msg_status)r->status)));
		bad |= json_object_set_new(
		    o, "previous_status",
		    r->prev_status >= 0
		        ? json_string(msg_status_name((enum msg_status)r->prev_status))
		        : json_null());
	}
	bad |= json_object_set_new(o, "provider_id", str_or_null(r->provider_id));
	if (status_is_failure(r->status) && (r->error_code[0] || r->error_text[0]))
		bad |=
		    json_object_set_new(o, "error",
		                        json_pack("{s:o, s:o}", "code", str_or_null(r->error_code),
		                                  "text", str_or_null(r->error_text)));
	bad |= json_object_set_new(o, "occurred_at", json_string(at));
	if (r->detail) {
		json_t *d = json_loads(r->detail, 0, NULL);
		bad |= json_object_set_new(o, "reply", d ? d : json_null());
	}
	char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

void callback_opts_default(struct callback_opts *o)
{
	*o = (struct callback_opts){.max_in_flight = 32,
	                            .max_in_flight_per_url = 4,
	                            .timeout_us = 10 * 1000000LL,
	                            .max_attempts = 15,
	                            .backoff_base_us = 1000000LL,
	                            .backoff_max_us = 3600 * 1000000LL,
	                            .poll_us = 200000};
}

int64_t callback_backoff(const struct callback_opts *o, int attempts, double jitter)
{
	if (attempts < 1)
		attempts = 1;
	int64_t d = o->backoff_base_us;
	for (int i = 1; i < attempts && d < o->backoff_max_us; i++)
		d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
	if (d > o->backoff_max_us)
		d = o->backoff_max_us;
	if (jitter < 0)
		jitter = 0;
	if (jitter >= 1)
		jitter = 0.999999;
	return d / 2 + (int64_t)((double)(d - d / 2) * jitter);
}

/* ---------------------------------------------------------------------------
 * The sender.
 * ------------------------------------------------------------------------- */

/* One request in flight. */
struct cb_req {
	struct callbacks *c;
	CURL *easy;
	struct curl_slist *headers;
	struct callback_row row;
	char *body;
	bool listed;  /* the URL's origin is in callbacks.allowed_origins */
	bool blocked; /* refused: the address is loopback/private and not listed */
};

struct callbacks {
	struct store *st;
	struct callback_opts o;
	const struct callback_policy *policy;
	const struct callback_tenant *tenants;
	size_t ntenants;
	CURLM *multi;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	struct cb_req **req; /* max_in_flight slots, NULL = free */
	int inflight;
	struct callback_outcome *done; /* outcomes not yet recorded */
	size_t ndone;
};

static const struct callback_tenant *tenant_of(const struct callbacks *c, const char *id)
{
	for (size_t i = 0; i < c->ntenants; i++)
		if (strcmp(c->tenants[i].id, id) == 0)
			return &c->tenants[i];
	return NULL;
}

/* The receiver's answer is never kept or shown (only its status): read
 * and dropped. */
static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* Loopback, private, link-local, unspecified or multicast: not a tenant's
 * public receiver. */
static bool addr_internal(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		uint32_t h = ntohl(a4.s_addr);
		return (h >> 24) == 0 || (h >> 24) == 10 || (h >> 24) == 127 ||
		       (h >> 16) == 0xa9fe || (h >> 20) == 0xac1 || (h >> 16) == 0xc0a8 ||
		       (h >> 22) == (100u << 2 | 1) /* 100.64/10 */ || (h >> 28) == 0xe ||
		       h == 0xffffffffu;
	}
	if (inet_pton(AF_INET6, ip, &a6) == 1) {
		const uint8_t *b = a6.s6_addr;
		static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(b, v4mapped, 12) == 0) {
			char v4[INET_ADDRSTRLEN];
			return !inet_ntop(AF_INET, b + 12, v4, sizeof v4) || addr_internal(v4);
		}
		return IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_UNSPECIFIED(&a6) ||
		       IN6_IS_ADDR_LINKLOCAL(&a6) || IN6_IS_ADDR_MULTICAST(&a6) ||
		       (b[0] & 0xfe) == 0xfc; /* fc00::/7 */
	}
	return true; /* not an address we can judge: refuse */
}

/* Runs once the connection is up, before the request is sent: a URL
 * whose name resolved to an internal address is refused unless the
 * operator listed its origin (DNS can say anything). */
static int prereq(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                  int conn_local_port)
{
	(void)conn_local_ip;
	(void)conn_primary_port;
	(void)conn_local_port;
	struct cb_req *r = arg;
	if (!r->listed && addr_internal(conn_primary_ip)) {
		r->blocked = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static void req_free(struct cb_req *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	callback_row_clear(&r->row);
	free(r);
}

/* An outcome to record (the array has max_in_flight room: every claimed
 * row ends once). */
static void outcome(struct callbacks *c, const struct callback_row *row, enum callback_state s,
                    int http, const char *why)
{
	struct callback_outcome *o = &c->done[c->ndone++];
	memset(o, 0, sizeof *o);
	o->id = row->id;
	o->attempt = row->attempts;
	o->http_status = http;
	if (s == CB_DELIVERED) {
		o->state = CB_DELIVERED;
		metrics_callback(M_CB_SENT, 1);
		return;
	}
	hr_strlcpy(o->error, why ? why : "", sizeof o->error);
	metrics_callback(M_CB_FAILED, 1);
	if (s == CB_DEAD || row->attempts >= c->o.max_attempts) {
		o->state = CB_DEAD;
		metrics_callback(M_CB_DEAD, 1);
		hr_log(HR_LOG_WARN, "callbacks",
		       "callback %lld to tenant %s dead after %d attempts: %s", (long long)row->id,
		       row->tenant_id, row->attempts, o->error);
		return;
	}
	o->state = CB_PENDING;
	o->next_try_at = hr_now_us() + callback_backoff(&c->o, row->attempts, hr_random_unit());
}

/* Starts the POST of one claimed row; a row that cannot be sent (no
 * secret, a URL no longer allowed) ends at once. */
static void start(struct callbacks *c, struct callback_row *row)
{
	struct hr_err err = {0};
	const struct callback_tenant *t = tenant_of(c, row->tenant_id);
	if (!t || !t->secret) {
		outcome(c, row, CB_DEAD, 0,
		        "the tenant has no callbacks.callback_secret configured");
		callback_row_clear(row);
		return;
	}
	if (callback_url_check(c->policy, row->url, "url", &err) != 0) {
		outcome(c, row, CB_DEAD, 0, err.msg);
		callback_row_clear(row);
		return;
	}
	struct cb_req *r = calloc(1, sizeof *r);
	if (!r) {
		outcome(c, row, CB_PENDING, 0, "out of memory");
		callback_row_clear(row);
		return;
	}
	r->c = c;
	r->row = *row;
	memset(row, 0, sizeof *row);
	char origin[160];
	r->listed = channel_url_origin(r->row.url, origin, sizeof origin) == 0 &&
	            origin_allowed(c->policy, origin);
	r->body = callback_body(&r->row);
	char sig[96 + 20], id[48];
	int rc = r->body ? 0 : HR_ENOMEM;
	if (rc == 0) {
		size_t blen = strlen(r->body);
		char v[96];
		callback_sign(t->secret, t->secret_len, hr_now_us() / 1000000, r->body, blen, v);
		snprintf(sig, sizeof sig, "Herald-Signature: %s", v);
		snprintf(id, sizeof id, "Herald-Callback-Id: %lld", (long long)r->row.id);
		struct curl_slist *h = NULL, *n;
		const char *lines[] = {"Content-Type: application/json", sig, id, "Expect:"};
		for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
			if (!(n = curl_slist_append(h, lines[i]))) {
				rc = HR_ENOMEM;
				break;
			}
			h = n;
		}
		r->headers = h;
		struct http_req hr = {
		    .url = r->row.url, .headers = r->headers, .body = r->body, .body_len = blen};
		if (rc == 0 && !(r->easy = curl_easy_init()))
			rc = HR_ENOMEM;
		if (rc == 0)
			rc = http_req_setopts(r->easy, &hr, (long)(c->o.timeout_us / 1000), &err);
		if (rc == 0 &&
		    (curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK ||
		     curl_easy_setopt(r->easy, CURLOPT_PREREQFUNCTION, prereq) != CURLE_OK ||
		     curl_easy_setopt(r->easy, CURLOPT_PREREQDATA, r) != CURLE_OK ||
		     curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r) != CURLE_OK ||
		     curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "Herald-Callbacks/1") !=
		         CURLE_OK))
			rc = HR_EINTERNAL;
		if (rc == 0 && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
			rc = HR_EINTERNAL;
	}
	if (rc) {
		outcome(c, &r->row, CB_PENDING, 0,
		        rc == HR_ENOMEM ? "out of memory" : "the request could not be made");
		req_free(r);
		return;
	}
	for (int i = 0; i < c->o.max_in_flight; i++)
		if (!c->req[i]) {
			c->req[i] = r;
			break;
		}
	c->inflight++;
}

/* A transfer ended: its outcome. Only the status is kept of the answer. */
static void finished(struct callbacks *c, CURL *easy, CURLcode res)
{
	struct cb_req *r = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
	if (!r)
		return;
	long code = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	char why[160];
	if (res == CURLE_OK && code >= 200 && code < 300) {
		outcome(c, &r->row, CB_DELIVERED, (int)code, NULL);
	} else {
		if (r->blocked)
			snprintf(why, sizeof why,
			         "refused: the URL's host is a loopback, private or link-local "
			         "address");
		else if (res == CURLE_OPERATION_TIMEDOUT)
			snprintf(why, sizeof why, "no answer within %lld ms",
			         (long long)(c->o.timeout_us / 1000));
		else if (res != CURLE_OK)
			snprintf(why, sizeof why, "%s", curl_easy_strerror(res));
		else
			snprintf(why, sizeof why, "HTTP %ld", code);
		outcome(c, &r->row, r->blocked ? CB_DEAD : CB_PENDING,
		        res == CURLE_OK ? (int)code : 0, why);
	}
	curl_multi_remove_handle(c->multi, easy);
	for (int i = 0; i < c->o.max_in_flight; i++)
		if (c->req[i] == r)
			c->req[i] = NULL;
	c->inflight--;
	req_free(r);
}

/* Outcomes go to the store in one write; kept for the next try if it
 * fails (the rows' leases keep them from being claimed meanwhile). */
static void record(struct callbacks *c)
{
	if (!c->ndone)
		return;
	struct hr_err err = {0};
	int rc = c->st->ops->callback_done(c->st, c->done, c->ndone, &err);
	if (rc) {
		hr_log(HR_LOG_WARN, "callbacks", "recording %zu callback outcomes: %s", c->ndone,
		       err.msg[0] ? err.msg : "store error");
		return;
	}
	c->ndone = 0;
}

/*
 * Claims what fits: the URLs at their limit are skipped, and a claim takes
 * no more rows than the fullest URL still has room for, so no URL goes
 * over its limit whatever the claim returns. Returns how many rows were
 * claimed (< 0 on a store error).
 */
static int claim(struct callbacks *c)
{
	int free_slots = c->o.max_in_flight - c->inflight;
	if (free_slots <= 0 || c->ndone)
		return 0;
	int cap = c->o.max_in_flight_per_url, fullest = 0;
	const char **skip = calloc((size_t)c->o.max_in_flight + 1, sizeof *skip);
	if (!skip)
		return -1;
	size_t nskip = 0;
	for (int i = 0; i < c->o.max_in_flight; i++) {
		if (!c->req[i])
			continue;
		int n = 0;
		bool seen = false;
		for (int k = 0; k < c->o.max_in_flight; k++)
			if (c->req[k] && strcmp(c->req[k]->row.url, c->req[i]->row.url) == 0) {
				n++;
				seen |= k < i;
			}
		if (seen)
			continue;
		if (n >= cap)
			skip[nskip++] = c->req[i]->row.url;
		else if (n > fullest)
			fullest = n;
	}
	int limit = free_slots < cap - fullest ? free_slots : cap - fullest;
	struct callback_row *rows = NULL;
	size_t n = 0;
	int64_t lease = c->o.timeout_us + 30 * 1000000LL;
	int rc = c->st->ops->callback_claim(c->st, 0, lease, limit, skip, nskip, &rows, &n);
	free(skip);
	if (rc) {
		hr_log(HR_LOG_WARN, "callbacks", "claiming callbacks: store error %d", rc);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		start(c, &rows[i]);
	free(rows);
	return (int)n;
}

static void *sender_main(void *arg)
{
	struct callbacks *c = arg;
	int64_t next_claim = 0;
	while (!atomic_load(&c->stop)) {
		int64_t now = hr_mono_us();
		if (now >= next_claim) {
			int got = claim(c);
			/* A full claim: there may be more at once. */
			next_claim =
			    got > 0 && c->inflight < c->o.max_in_flight ? now : now + c->o.poll_us;
		}
		int running = 0;
		curl_multi_perform(c->multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(c->multi, &left)))
			if (m->msg == CURLMSG_DONE)
				finished(c, m->easy_handle, m->data.result);
		record(c);
		if (c->ndone) {
			/* The store refused the outcomes: try again after a pause. */
			next_claim = hr_mono_us() + c->o.poll_us;
		}
		int64_t wait = next_claim - hr_mono_us();
		if (wait > 0)
			curl_multi_poll(c->multi, NULL, 0, (int)(wait / 1000) + 1, NULL);
	}
	record(c);
	return NULL;
}

int callbacks_start(struct store *st, const struct callback_opts *o,
                    const struct callback_policy *policy, const struct callback_tenant *tenants,
                    size_t ntenants, struct callbacks **out, struct hr_err *err)
{
	*out = NULL;
	if (o->max_in_flight < 1 || o->max_in_flight_per_url < 1 || o->timeout_us <= 0 ||
	    o->max_attempts < 1 || o->backoff_base_us <= 0 || o->poll_us <= 0)
		return hr_fail(err, HR_EINVAL, "callbacks", "bad callback sender options");
	struct callbacks *c = calloc(1, sizeof *c);
	if (!c)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	c->st = st;
	c->o = *o;
	if (c->o.max_in_flight_per_url > c->o.max_in_flight)
		c->o.max_in_flight_per_url = c->o.max_in_flight;
	c->policy = policy;
	c->tenants = tenants;
	c->ntenants = ntenants;
	c->req = calloc((size_t)c->o.max_in_flight, sizeof *c->req);
	c->done = calloc((size_t)c->o.max_in_flight, sizeof *c->done);
	c->multi = curl_multi_init();
	if (!c->req || !c->done || !c->multi) {
		callbacks_stop(c);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->o.max_in_flight);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	                  (long)c->o.max_in_flight_per_url);
	if (pthread_create(&c->thread, NULL, sender_main, c) != 0) {
		callbacks_stop(c);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the callback sender");
	}
	c->started = true;
	pthread_setname_np(c->thread, "herald-callbacks");
	*out = c;
	return 0;
}

void callbacks_stop(struct callbacks *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, true);
	if (c->started) {
		curl_multi_wakeup(c->multi);
		pthread_join(c->thread, NULL);
	}
	for (int i = 0; c->req && i < c->o.max_in_flight; i++)
		if (c->req[i]) {
			curl_multi_remove_handle(c->multi, c->req[i]->easy);
			req_free(c->req[i]);
		}
	/* What ended but was not recorded goes out again after its lease. */
	if (c->multi)
		curl_multi_cleanup(c->multi);
	free(c->req);
	free(c->done);
	free(c);
}

/* ---------------------------------------------------------------------------
 * Tenants' settings from the config.
 * ------------------------------------------------------------------------- */

void callback_tenants_free(struct callback_tenant *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].url);
		hr_secret_free(v[i].secret);
	}
	free(v);
}

int callback_tenants_load(json_t *cfg, const struct channel_policy *ns,
                          const struct callback_policy *p, struct callback_tenant **out, size_t *n,
                          struct hr_err *err)
{
	*out = NULL;
	*n = 0;
	json_t *tenants = hr_cfg_get(cfg, "tenants");
	size_t nt = json_array_size(tenants);
	struct callback_tenant *v = nt ? calloc(nt, sizeof *v) : NULL;
	if (nt && !v)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < nt; i++) {
		json_t *t = json_array_get(tenants, i);
		char f[96];
		const char *id = json_string_value(json_object_get(t, "id"));
		if (!id || strlen(id) >= sizeof v[i].id) {
			snprintf(f, sizeof f, "tenants[%zu].id", i);
			rc = hr_fail(err, HR_EINVAL, f, "%s is required (1..63 chars)", f);
			break;
		}
		hr_strlcpy(v[i].id, id, sizeof v[i].id);
		json_t *ju = json_object_get(t, "callback_url"),
		       *js = json_object_get(t, "callback_secret");
		snprintf(f, sizeof f, "tenants[%zu].callback_secret", i);
		if (js && !json_is_null(js)) {
			const char *ref = json_string_value(js);
			const struct channel_tenant_ns *tn = channel_policy_ns(ns, id);
			if (!ref) {
				rc = hr_fail(err, HR_EINVAL, f,
				             "%s must be an env: or file: reference", f);
				break;
			}
			/* The tenant's own namespace, as for the accounts it creates:
			 * a secret is usable only by the tenant it belongs to. */
			v[i].secret = hr_secret_resolve_ns(ref, tn ? tn->env_prefix : NULL,
			                                   tn ? tn->file_dir : NULL, f, err);
			if (!v[i].secret) {
				rc = err->code ? err->code : HR_EINVAL;
				break;
			}
			v[i].secret_len = strlen(v[i].secret);
		}
		if (ju && !json_is_null(ju)) {
			snprintf(f, sizeof f, "tenants[%zu].callback_url", i);
			const char *url = json_string_value(ju);
			if (!url) {
				rc = hr_fail(err, HR_EINVAL, f, "%s must be a string", f);
				break;
			}
			if ((rc = callback_url_check(p, url, f, err)))
				break;
			if (!v[i].secret) {
				rc = hr_fail(
				    err, HR_EINVAL, f,
				    "%s needs tenants[%zu].callback_secret to sign callbacks with",
				    f, i);
				break;
			}
			if (!(v[i].url = strdup(url))) {
				rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
				break;
			}
		}
	}
	if (rc) {
		callback_tenants_free(v, nt);
		return rc;
	}
	*out = v;
	*n = nt;
	return 0;
}
