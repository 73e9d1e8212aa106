/*
 * sim_rcs.c - the RCS Business Messaging (Google RBM) part of `herald sim`:
 * the OAuth token endpoint, agentMessages, capabilities, and signed Pub/Sub
 * webhooks. See sim_rcs.h for the HTTP surface and the knobs.
 *
 * Request threads decide everything under one mutex (tokens, knobs, the
 * messageId table, counters) and never do I/O while holding it; the poster
 * thread owns the curl handle and sends the pushes in due order.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/config.h"
#include "core/crypto.h"
#include "sim/sim_heap.h"
#include "sim/sim_int.h"
#include "sim/sim_knobtab.h"
#include "sim/sim_rcs.h"

#define RCS_SCOPE "https://www.googleapis.com/auth/rcsbusinessmessaging"
#define RCS_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define RCS_BODY_MAX (250 * 1024) /* the whole AgentMessage */
#define RCS_TEXT_MAX 3072
#define RCS_SUGGESTION_TEXT_MAX 25
#define RCS_POSTBACK_MAX 2048
#define RCS_TITLE_MAX 200
#define RCS_DESC_MAX 2000
#define RCS_URL_MAX 2048
#define RCS_POST_TIMEOUT_MS 10000L
#define RCS_RETRY_BASE_US 250000LL
#define RCS_RETRY_MAX_US 8000000LL

static const char *const rcs_default_features[] = {
    "REVOCATION",  "RICHCARD_STANDALONE", "RICHCARD_CAROUSEL",     "ACTION_CREATE_CALENDAR_EVENT",
    "ACTION_DIAL", "ACTION_OPEN_URL",     "ACTION_SHARE_LOCATION", "ACTION_VIEW_LOCATION",
    NULL};

struct rcs_account {
	char id[HR_NAME_MAX];
	char *agent_id;
	char *client_email;
	char *pub_pem;   /* public half of the service account's key */
	char *token_uri; /* the JWT's expected aud */
	char *client_token;
	char *webhook_url; /* {herald}/webhooks/rcs/{id} */
};

/* A recipient's script (sim.rcs.recipients."+1555..."). */
struct rcs_script {
	char to[HR_ADDR_MAX]; /* "+digits" */
	bool not_rcs;
	int error;        /* HTTP status to answer sends with, 0 if none */
	char *press;      /* button id to press after reading, or NULL */
	char *reply;      /* text to answer with after reading, or NULL */
	json_t *features; /* capability answer, or NULL for the default */
};

struct rcs_knobs {
	double latency_ms, rate_429, rate_5xx;
	double delivered_delay_ms, read_delay_ms, read_rate, dup_rate, reorder_rate;
	double answer_delay_ms, webhook_retry_s, token_ttl_s;
	bool has_seed;
	uint64_t seed;
	struct rcs_script *scripts;
	size_t nscripts;
};

struct rcs_token {
	char tok[64];
	int acct;
	int64_t expires; /* monotonic us */
};

/* One push: exact bytes, signed once, resent as they are. */
struct rcs_post {
	int acct;
	char *body;
	size_t len;
	char sig[128]; /* "X-Goog-Signature: ..." */
	int64_t due;   /* monotonic us */
	uint64_t seq;
	int attempts;
	int64_t first_at;
};

struct rcs_counts {
	uint64_t requests, accepted, duplicates;
	uint64_t rej_auth, rej_invalid, rej_not_found, rej_429, rej_5xx, rej_scripted;
	uint64_t tok_issued, tok_refused, caps, presses, presses_missed, replies;
	uint64_t posted, events, failed_attempts, dropped;
};

struct sim_rcs {
	struct rcs_account *accounts;
	size_t naccounts;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct rcs_knobs knobs;
	json_t *conf; /* the object the knobs were read from */
	struct rcs_token *tokens;
	size_t ntokens, captokens;
	json_t *messages; /* messageId -> {"to","accepted","attempts","conflicts","body"} */
	struct rcs_post **heap;
	size_t nheap, capheap;
	uint64_t seq, pubsub_next;
	struct rcs_counts c;
	bool stop, started;
	pthread_t thread;
};

/* ---------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------- */

static size_t rcs_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* "+digits" from any spelling; "" when it has no digits. */
static void rcs_e164(const char *in, char *out, size_t n)
{
	char d[HR_ADDR_MAX];
	sim_wire_digits(in, d, sizeof d);
	snprintf(out, n, "%s%s", d[0] ? "+" : "", d);
}

static bool rcs_uuid_ok(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool rcs_http_url(const char *s)
{
	return s && (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) &&
	       strlen(s) <= RCS_URL_MAX;
}

static void rcs_now_rfc3339(int64_t us, char out[32])
{
	hr_time_format(us, out);
}

/* Google's error body. */
static char *rcs_gerror(int code, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *rcs_gerror(int code, const char *status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char clean[512];
	hr_utf8_copy(clean, msg, sizeof clean);
	json_t *e = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", code, "message", clean,
	                      "status", status);
	char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	return s;
}

static void rcs_fail(unsigned int *status, char **resp, int code, const char *gstatus,
                     const char *msg)
{
	*status = (unsigned int)code;
	*resp = rcs_gerror(code, gstatus, "%s", msg);
}

static const char *rcs_status_name(int code)
{
	switch (code) {
	case 400:
		return "INVALID_ARGUMENT";
	case 401:
		return "UNAUTHENTICATED";
	case 403:
		return "PERMISSION_DENIED";
	case 404:
		return "NOT_FOUND";
	case 409:
		return "ALREADY_EXISTS";
	case 429:
		return "RESOURCE_EXHAUSTED";
	case 503:
		return "UNAVAILABLE";
	default:
		return code >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
	}
}

/* ---------------------------------------------------------------------------
 * Knobs
 * ------------------------------------------------------------------------- */

/* clang-format off */
#define RN(f, lo, hi) {#f, offsetof(struct rcs_knobs, f), lo, hi}
/* clang-format on */
static const struct sim_knob_num rcs_nums[] = {
    RN(latency_ms, 0, 600000),
    RN(rate_429, 0, 1),
    RN(rate_5xx, 0, 1),
    RN(delivered_delay_ms, 0, 86400000),
    RN(read_delay_ms, 0, 86400000),
    RN(read_rate, 0, 1),
    RN(dup_rate, 0, 1),
    RN(reorder_rate, 0, 1),
    RN(answer_delay_ms, 0, 86400000),
    RN(webhook_retry_s, 0, 7 * 86400),
    RN(token_ttl_s, 1, 86400),
};

static void rcs_scripts_free(struct rcs_knobs *k)
{
	for (size_t i = 0; i < k->nscripts; i++) {
		free(k->scripts[i].press);
		free(k->scripts[i].reply);
		json_decref(k->scripts[i].features);
	}
	free(k->scripts);
	k->scripts = NULL;
	k->nscripts = 0;
}

static void rcs_knobs_default(struct rcs_knobs *k)
{
	memset(k, 0, sizeof *k);
	k->delivered_delay_ms = 50;
	k->read_delay_ms = 100;
	k->read_rate = 1.0;
	k->answer_delay_ms = 200;
	k->webhook_retry_s = 60;
	k->token_ttl_s = 3599;
}

static int rcs_script_parse(struct rcs_script *sc, const char *key, json_t *v, const char *base,
                            struct hr_err *err)
{
	char field[192];
	snprintf(field, sizeof field, "%s.%.64s", base, key);
	memset(sc, 0, sizeof *sc);
	rcs_e164(key, sc->to, sizeof sc->to);
	if (strlen(sc->to) < 6)
		return hr_fail(err, HR_EINVAL, field, "%s: the key must be a phone number", field);
	if (!json_is_object(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be an object", field);
	const char *k;
	json_t *x;
	json_object_foreach(v, k, x)
	{
		if (strcmp(k, "not_rcs") == 0 && json_is_boolean(x)) {
			sc->not_rcs = json_is_true(x);
		} else if (strcmp(k, "error") == 0 && json_is_integer(x) &&
		           json_integer_value(x) >= 400 && json_integer_value(x) <= 599) {
			sc->error = (int)json_integer_value(x);
		} else if (strcmp(k, "press") == 0 && json_is_string(x) && *json_string_value(x)) {
			sc->press = strdup(json_string_value(x));
		} else if (strcmp(k, "reply") == 0 && json_is_string(x) && *json_string_value(x)) {
			sc->reply = strdup(json_string_value(x));
		} else if (strcmp(k, "features") == 0 && json_is_array(x)) {
			sc->features = json_incref(x);
		} else {
			char f[224];
			snprintf(f, sizeof f, "%s.%.24s", field, k);
			return hr_fail(
			    err, HR_EINVAL, f,
			    "%s: expected not_rcs (bool), error (400..599), press, reply "
			    "(strings) or features (list)",
			    f);
		}
	}
	return 0;
}

/* Builds knobs from defaults plus obj (which may be NULL); errors name
 * "<prefix><key>". On failure *out is left untouched. */
static int rcs_knobs_parse(json_t *obj, const char *prefix, struct rcs_knobs *out,
                           struct hr_err *err)
{
	struct rcs_knobs k;
	rcs_knobs_default(&k);
	char field[160];
	if (obj && !json_is_object(obj)) {
		snprintf(field, sizeof field, "%.*s", (int)strlen(prefix) - 1, prefix);
		return hr_fail(err, HR_EINVAL, field, "%s must be an object", field);
	}
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		snprintf(field, sizeof field, "%s%.64s", prefix, key);
		const struct sim_knob_num *num = NULL;
		for (size_t i = 0; i < sizeof rcs_nums / sizeof rcs_nums[0]; i++)
			if (strcmp(rcs_nums[i].name, key) == 0)
				num = &rcs_nums[i];
		if (num) {
			double d;
			if (json_is_number(v)) {
				d = json_number_value(v);
			} else if (json_is_string(v)) {
				char *end;
				d = strtod(json_string_value(v), &end);
				if (*end || end == json_string_value(v))
					d = -1;
			} else {
				d = -1;
			}
			if (!(d >= num->min && d <= num->max)) {
				rcs_scripts_free(&k);
				return hr_fail(err, HR_EINVAL, field,
				               "%s must be a number in %g..%g", field, num->min,
				               num->max);
			}
			memcpy((char *)&k + num->off, &d, sizeof d);
		} else if (strcmp(key, "seed") == 0 && json_is_integer(v)) {
			k.has_seed = true;
			k.seed = (uint64_t)json_integer_value(v);
		} else if (strcmp(key, "recipients") == 0 && json_is_object(v)) {
			k.scripts = calloc(json_object_size(v) + 1, sizeof *k.scripts);
			if (!k.scripts)
				return hr_fail(err, HR_ENOMEM, field, "out of memory");
			const char *to;
			json_t *sv;
			json_object_foreach(v, to, sv)
			{
				int rc =
				    rcs_script_parse(&k.scripts[k.nscripts], to, sv, field, err);
				k.nscripts++;
				if (rc) {
					rcs_scripts_free(&k);
					return rc;
				}
			}
		} else {
			rcs_scripts_free(&k);
			return hr_fail(err, HR_EINVAL, field, "%s: unknown or malformed rcs knob",
			               field);
		}
	}
	rcs_scripts_free(out);
	*out = k;
	return 0;
}

static json_t *rcs_knobs_json(const struct rcs_knobs *k, json_t *conf)
{
	json_t *o = json_object();
	sim_knob_nums_json(o, rcs_nums, sizeof rcs_nums / sizeof rcs_nums[0], k);
	if (k->has_seed)
		json_object_set_new(o, "seed", json_integer((json_int_t)k->seed));
	json_t *r = json_object_get(conf, "recipients");
	if (r)
		json_object_set(o, "recipients", r);
	return o;
}

static const struct rcs_script *rcs_script_find(const struct rcs_knobs *k, const char *to)
{
	for (size_t i = 0; i < k->nscripts; i++)
		if (strcmp(k->scripts[i].to, to) == 0)
			return &k->scripts[i];
	return NULL;
}

/* ---------------------------------------------------------------------------
 * The poster: a min-heap of pushes by (due, seq), one thread sending them.
 * ------------------------------------------------------------------------- */

/* The heap holds pointers: due first, then in push order. */
static bool rcs_before(const void *pa, const void *pb)
{
	const struct rcs_post *a = *(struct rcs_post *const *)pa,
	                      *b = *(struct rcs_post *const *)pb;
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void rcs_post_free(struct rcs_post *p)
{
	if (p)
		free(p->body);
	free(p);
}

/* Caller holds t->lock. Takes ownership (frees on failure). */
static void rcs_heap_push(struct sim_rcs *t, struct rcs_post *p)
{
	if (t->nheap == t->capheap) {
		size_t cap = t->capheap ? t->capheap * 2 : 64;
		struct rcs_post **h = realloc(t->heap, cap * sizeof *h);
		if (!h) {
			t->c.dropped++;
			rcs_post_free(p);
			return;
		}
		t->heap = h;
		t->capheap = cap;
	}
	p->seq = t->seq++;
	size_t i = t->nheap++;
	t->heap[i] = p;
	sim_heap_up(t->heap, sizeof *t->heap, i, rcs_before);
	if (t->heap[0] == p)
		pthread_cond_signal(&t->wake);
}

static struct rcs_post *rcs_heap_pop(struct sim_rcs *t)
{
	struct rcs_post *top = t->heap[0];
	t->heap[0] = t->heap[--t->nheap];
	sim_heap_down(t->heap, sizeof *t->heap, t->nheap, 0, rcs_before);
	return top;
}

static bool rcs_post_once(CURL *e, const struct rcs_account *a, const struct rcs_post *p,
                          long *status)
{
	*status = 0;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	struct curl_slist *h2 = h ? curl_slist_append(h, p->sig) : NULL;
	struct curl_slist *h3 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
	if (!h3) {
		curl_slist_free_all(h);
		return false;
	}
	CURLcode cc =
	    sim_post_setup(e, a->webhook_url, p->body, p->len, h, NULL, RCS_POST_TIMEOUT_MS, 0);
	if (cc != CURLE_OK) {
		hr_log(HR_LOG_WARN, "sim", "rcs webhook to %s: cannot set up the transfer: %s",
		       a->id, curl_easy_strerror(cc));
		curl_slist_free_all(h);
		return false;
	}
	cc = curl_easy_perform(e);
	if (cc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	return cc == CURLE_OK && *status >= 200 && *status < 300;
}

/* The poster thread: sends what is due, retries with backoff. */
static void *rcs_poster_main(void *arg)
{
	struct sim *s = arg;
	struct sim_rcs *t = s->rcs;
	CURL *e = curl_easy_init();
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		if (t->nheap == 0) {
			pthread_cond_wait(&t->wake, &t->lock);
			continue;
		}
		int64_t now = hr_mono_us();
		if (t->heap[0]->due > now) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			int64_t wait = t->heap[0]->due - now;
			ts.tv_sec += (time_t)(wait / 1000000);
			ts.tv_nsec += (long)(wait % 1000000) * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&t->wake, &t->lock, &ts);
			continue;
		}
		struct rcs_post *p = rcs_heap_pop(t);
		double window_s = t->knobs.webhook_retry_s;
		pthread_mutex_unlock(&t->lock);
		if (!p->first_at)
			p->first_at = hr_mono_us();
		p->attempts++;
		long status = 0;
		bool ok = e && rcs_post_once(e, &t->accounts[p->acct], p, &status);
		pthread_mutex_lock(&t->lock);
		if (ok) {
			t->c.posted++;
			t->c.events++;
			rcs_post_free(p);
			continue;
		}
		t->c.failed_attempts++;
		now = hr_mono_us();
		if (t->stop || now - p->first_at >= (int64_t)(window_s * 1e6)) {
			t->c.dropped++;
			hr_log(HR_LOG_WARN, "sim",
			       "rcs webhook to %s dropped after %d attempts (last %ld)",
			       t->accounts[p->acct].id, p->attempts, status);
			rcs_post_free(p);
			continue;
		}
		int64_t backoff = RCS_RETRY_BASE_US << (p->attempts < 6 ? p->attempts - 1 : 5);
		p->due = now + (backoff > RCS_RETRY_MAX_US ? RCS_RETRY_MAX_US : backoff);
		rcs_heap_push(t, p);
	}
	pthread_mutex_unlock(&t->lock);
	curl_easy_cleanup(e);
	return NULL;
}

/*
 * A push of one decoded event (JSON object, consumed) for account acct,
 * due at the monotonic time `due`. Caller holds t->lock.
 */
static struct rcs_post *rcs_post_make(struct sim_rcs *t, int acct, json_t *event, int64_t due)
{
	const struct rcs_account *a = &t->accounts[acct];
	char *data = json_dumps(event, JSON_COMPACT);
	json_decref(event);
	if (!data)
		return NULL;
	char *b64 = hr_b64_encode(data, strlen(data));
	char sig[89];
	hr_hmac_sha512_b64(a->client_token, strlen(a->client_token), data, strlen(data), sig);
	free(data);
	char ps_id[32], when[32], sub[192];
	snprintf(ps_id, sizeof ps_id, "%llu", (unsigned long long)t->pubsub_next++);
	rcs_now_rfc3339(hr_now_us(), when);
	snprintf(sub, sizeof sub, "projects/rbm-%.64s/subscriptions/rbm-agent-subscription",
	         a->agent_id);
	json_t *env = b64 ? json_pack("{s:{s:s, s:s, s:s}, s:s}", "message", "data", b64,
	                              "messageId", ps_id, "publishTime", when, "subscription", sub)
	                  : NULL;
	free(b64);
	struct rcs_post *p = env ? calloc(1, sizeof *p) : NULL;
	if (p) {
		p->acct = acct;
		p->body = json_dumps(env, JSON_COMPACT);
		p->len = p->body ? strlen(p->body) : 0;
		p->due = due;
		snprintf(p->sig, sizeof p->sig, "X-Goog-Signature: %s", sig);
	}
	json_decref(env);
	if (p && !p->body) {
		free(p);
		p = NULL;
	}
	return p;
}

/* Queues an event push (and a duplicate of the same bytes when dup). Caller
 * holds t->lock. */
static void rcs_queue_event(struct sim_rcs *t, int acct, json_t *event, int64_t due, bool dup,
                            int64_t dup_after)
{
	struct rcs_post *p = rcs_post_make(t, acct, event, due);
	if (!p) {
		t->c.dropped++;
		return;
	}
	if (dup) {
		struct rcs_post *d = calloc(1, sizeof *d);
		if (d) {
			*d = *p;
			d->body = strdup(p->body);
			d->due = due + dup_after;
			if (d->body)
				rcs_heap_push(t, d);
			else
				free(d);
		}
	}
	rcs_heap_push(t, p);
}

/* ---------------------------------------------------------------------------
 * Accepted messages: their events and the scripted answers
 * ------------------------------------------------------------------------- */

static void rcs_user_id(char out[40])
{
	unsigned char r[12];
	hr_random_bytes(r, sizeof r);
	snprintf(out, 40, "MsU%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
	         r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]);
}

/* A suggestion of the sent message whose postbackData names button id
 * ("...|id", or exactly id), searched where RBM shows suggestions. */
static json_t *rcs_find_suggestion(json_t *cm, const char *id, const char **type)
{
	json_t *lists[16];
	size_t n = 0;
	lists[n++] = json_object_get(cm, "suggestions");
	json_t *rc = json_object_get(cm, "richCard");
	lists[n++] = json_object_get(
	    json_object_get(json_object_get(rc, "standaloneCard"), "cardContent"), "suggestions");
	json_t *cards = json_object_get(json_object_get(rc, "carouselCard"), "cardContents");
	size_t i;
	json_t *card;
	json_array_foreach(cards, i, card)
	{
		if (n < sizeof lists / sizeof lists[0])
			lists[n++] = json_object_get(card, "suggestions");
	}
	size_t idl = strlen(id);
	for (size_t l = 0; l < n; l++) {
		json_t *sg;
		json_array_foreach(lists[l], i, sg)
		{
			json_t *inner = json_object_get(sg, "reply");
			*type = "REPLY";
			if (!inner) {
				inner = json_object_get(sg, "action");
				*type = "ACTION";
			}
			const char *pb = json_string_value(json_object_get(inner, "postbackData"));
			if (!pb)
				continue;
			size_t pl = strlen(pb);
			if (strcmp(pb, id) == 0 ||
			    (pl > idl && pb[pl - idl - 1] == '|' && strcmp(pb + pl - idl, id) == 0))
				return inner;
		}
	}
	return NULL;
}

/* The scripted answer event (press or reply) of a recipient, or NULL. Caller
 * holds t->lock (counters). */
static json_t *rcs_answer_event(struct sim_rcs *t, const struct rcs_account *a,
                                const struct rcs_script *sc, const char *to, json_t *cm,
                                int64_t wall)
{
	char uid[40], when[32];
	rcs_user_id(uid);
	rcs_now_rfc3339(wall, when);
	if (sc->press) {
		const char *type = "REPLY";
		json_t *sg = rcs_find_suggestion(cm, sc->press, &type);
		if (!sg) {
			t->c.presses_missed++;
			return NULL;
		}
		t->c.presses++;
		return json_pack("{s:s, s:s, s:s, s:s, s:{s:O, s:O, s:s}}", "senderPhoneNumber", to,
		                 "messageId", uid, "sendTime", when, "agentId", a->agent_id,
		                 "suggestionResponse", "postbackData",
		                 json_object_get(sg, "postbackData"), "text",
		                 json_object_get(sg, "text"), "type", type);
	}
	t->c.replies++;
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "senderPhoneNumber", to, "messageId", uid,
	                 "sendTime", when, "agentId", a->agent_id, "text", sc->reply);
}

static json_t *rcs_status_event(const struct rcs_account *a, const char *to, const char *type,
                                const char *mid, int64_t wall)
{
	char eid[40], when[32];
	rcs_user_id(eid);
	memcpy(eid, "MxE", 3);
	rcs_now_rfc3339(wall, when);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "senderPhoneNumber", to, "eventType",
	                 type, "eventId", eid, "messageId", mid, "sendTime", when, "agentId",
	                 a->agent_id);
}

/*
 * Plans an accepted message's webhooks: DELIVERED, READ (by read_rate, or
 * always when the recipient is scripted to answer), possibly swapped in
 * posting order or duplicated, then the scripted answer. All random draws
 * come from rng in a fixed order, so a seed reproduces them. Caller holds
 * t->lock.
 */
static void rcs_schedule(struct sim_rcs *t, int acct, const char *to, const char *mid, json_t *cm,
                         const struct rcs_script *sc, struct sim_rng *rng, int64_t delay_us)
{
	const struct rcs_knobs *k = &t->knobs;
	const struct rcs_account *a = &t->accounts[acct];
	bool answers = sc && (sc->press || sc->reply);
	bool read = sim_rng_unit(rng) < k->read_rate || answers;
	bool reorder = sim_rng_unit(rng) < k->reorder_rate;
	bool dup_d = sim_rng_unit(rng) < k->dup_rate, dup_r = sim_rng_unit(rng) < k->dup_rate;
	int64_t dup_after = 2000 + (int64_t)(sim_rng_next(rng) % 18000);
	int64_t mono = hr_mono_us() + delay_us, wall = hr_now_us() + delay_us;
	int64_t d_del = (int64_t)(k->delivered_delay_ms * 1000);
	int64_t d_read = (int64_t)(k->read_delay_ms * 1000);
	if (d_read < d_del)
		d_read = d_del;
	int64_t post_del = d_del, post_read = d_read;
	if (read && reorder) { /* READ arrives first, each keeping its own time */
		post_del = d_read + 1000;
		post_read = d_del;
	}
	rcs_queue_event(t, acct, rcs_status_event(a, to, "DELIVERED", mid, wall + d_del),
	                mono + post_del, dup_d, dup_after);
	if (read)
		rcs_queue_event(t, acct, rcs_status_event(a, to, "READ", mid, wall + d_read),
		                mono + post_read, dup_r, dup_after);
	if (answers) {
		int64_t d_ans = (post_del > post_read ? post_del : post_read) +
		                (int64_t)(k->answer_delay_ms * 1000);
		json_t *ev = rcs_answer_event(t, a, sc, to, cm, wall + d_ans);
		if (ev)
			rcs_queue_event(t, acct, ev, mono + d_ans, false, 0);
	}
}

/* ---------------------------------------------------------------------------
 * Checking an AgentMessage like RBM does
 * ------------------------------------------------------------------------- */

struct rcs_chk {
	char *msg;
	size_t n;
};

static bool rcs_bad(struct rcs_chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool rcs_bad(struct rcs_chk *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, c->n, fmt, ap);
	va_end(ap);
	return false;
}

/* Refuses members not in allowed (RBM: "Unknown name ... Cannot find field"). */
static bool rcs_known(struct rcs_chk *c, json_t *obj, const char *path, const char *const *allowed)
{
	if (!json_is_object(obj))
		return rcs_bad(c, "Invalid value at '%s': expected an object", path);
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		const char *const *a = allowed;
		while (*a && strcmp(*a, key) != 0)
			a++;
		if (!*a)
			return rcs_bad(c,
			               "Invalid JSON payload received. Unknown name \"%.40s\" at "
			               "'%s': Cannot find field.",
			               key, path);
	}
	return true;
}

static bool rcs_str(struct rcs_chk *c, json_t *obj, const char *key, const char *path,
                    bool required, size_t max)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return required ? rcs_bad(c, "%s.%s is required", path, key) : true;
	if (!json_is_string(v) || !*json_string_value(v))
		return rcs_bad(c, "Invalid value at '%s.%s': expected a non-empty string", path,
		               key);
	if (max && rcs_chars(json_string_value(v)) > max)
		return rcs_bad(c, "%s.%s is longer than %zu characters", path, key, max);
	return true;
}

static bool rcs_content_info(struct rcs_chk *c, json_t *ci, const char *path)
{
	static const char *const k[] = {"fileUrl", "thumbnailUrl", "forceRefresh", "altText", NULL};
	if (!rcs_known(c, ci, path, k) || !rcs_str(c, ci, "fileUrl", path, true, 0))
		return false;
	if (!rcs_http_url(json_string_value(json_object_get(ci, "fileUrl"))))
		return rcs_bad(c, "%s.fileUrl must be a public http(s) URL", path);
	return true;
}

static bool rcs_suggestions(struct rcs_chk *c, json_t *arr, const char *path, size_t max)
{
	static const char *const sk[] = {"reply", "action", NULL};
	static const char *const rk[] = {"text", "postbackData", NULL};
	static const char *const ak[] = {
	    "text",          "postbackData",        "fallbackUrl",
	    "dialAction",    "viewLocationAction",  "createCalendarEventAction",
	    "openUrlAction", "shareLocationAction", NULL};
	static const char *const dk[] = {"phoneNumber", NULL};
	static const char *const uk[] = {"url", "application", "webviewViewMode", "description",
	                                 NULL};
	static const char *const acts[] = {"dialAction", "viewLocationAction",
	                                   "createCalendarEventAction", "openUrlAction",
	                                   "shareLocationAction"};
	if (!arr)
		return true;
	if (!json_is_array(arr))
		return rcs_bad(c, "Invalid value at '%s': expected a list", path);
	if (json_array_size(arr) > max)
		return rcs_bad(c, "%s: at most %zu suggestions are allowed", path, max);
	size_t i;
	json_t *sg;
	json_array_foreach(arr, i, sg)
	{
		char p[160], q[192];
		snprintf(p, sizeof p, "%s[%zu]", path, i);
		if (!rcs_known(c, sg, p, sk))
			return false;
		json_t *r = json_object_get(sg, "reply"), *a = json_object_get(sg, "action");
		if ((r != NULL) == (a != NULL))
			return rcs_bad(c, "%s must hold exactly one of reply or action", p);
		snprintf(q, sizeof q, "%s.%s", p, r ? "reply" : "action");
		json_t *in = r ? r : a;
		if (!rcs_known(c, in, q, r ? rk : ak) ||
		    !rcs_str(c, in, "text", q, true, RCS_SUGGESTION_TEXT_MAX) ||
		    !rcs_str(c, in, "postbackData", q, r != NULL, RCS_POSTBACK_MAX))
			return false;
		if (r)
			continue;
		int nact = 0;
		for (size_t j = 0; j < sizeof acts / sizeof acts[0]; j++)
			nact += json_object_get(a, acts[j]) != NULL;
		if (nact != 1)
			return rcs_bad(c, "%s must hold exactly one action", q);
		json_t *dial = json_object_get(a, "dialAction");
		json_t *url = json_object_get(a, "openUrlAction");
		char w[224];
		if (dial) {
			snprintf(w, sizeof w, "%s.dialAction", q);
			const char *ph = json_string_value(json_object_get(dial, "phoneNumber"));
			if (!rcs_known(c, dial, w, dk))
				return false;
			if (!ph || ph[0] != '+' || strspn(ph + 1, "0123456789") != strlen(ph + 1) ||
			    strlen(ph) < 4)
				return rcs_bad(c, "%s.phoneNumber must be an E.164 number", w);
		} else if (url) {
			snprintf(w, sizeof w, "%s.openUrlAction", q);
			if (!rcs_known(c, url, w, uk))
				return false;
			if (!rcs_http_url(json_string_value(json_object_get(url, "url"))))
				return rcs_bad(c, "%s.url must be an http(s) URL", w);
		}
	}
	return true;
}

static bool rcs_card_content(struct rcs_chk *c, json_t *cc, const char *path)
{
	static const char *const k[] = {"title", "description", "media", "suggestions", NULL};
	static const char *const mk[] = {"height", "contentInfo", "uploadedRbmFile", NULL};
	static const char *const heights[] = {"SHORT", "MEDIUM", "TALL"};
	if (!rcs_known(c, cc, path, k) || !rcs_str(c, cc, "title", path, false, RCS_TITLE_MAX) ||
	    !rcs_str(c, cc, "description", path, false, RCS_DESC_MAX))
		return false;
	json_t *media = json_object_get(cc, "media");
	if (!media && !json_object_get(cc, "title") && !json_object_get(cc, "description"))
		return rcs_bad(c, "%s needs a title, a description or media", path);
	if (media) {
		char p[160], q[176];
		snprintf(p, sizeof p, "%s.media", path);
		if (!rcs_known(c, media, p, mk))
			return false;
		const char *h = json_string_value(json_object_get(media, "height"));
		bool hok = false;
		for (int i = 0; h && i < 3; i++)
			hok = hok || strcmp(h, heights[i]) == 0;
		if (!hok)
			return rcs_bad(c, "%s.height must be SHORT, MEDIUM or TALL", p);
		snprintf(q, sizeof q, "%s.contentInfo", p);
		if (!rcs_content_info(c, json_object_get(media, "contentInfo"), q))
			return false;
	}
	char s[160];
	snprintf(s, sizeof s, "%s.suggestions", path);
	return rcs_suggestions(c, json_object_get(cc, "suggestions"), s, 4);
}

static bool rcs_rich_card(struct rcs_chk *c, json_t *rc)
{
	static const char *const k[] = {"standaloneCard", "carouselCard", NULL};
	static const char *const sk[] = {"cardOrientation", "thumbnailImageAlignment",
	                                 "cardContent", NULL};
	static const char *const ck[] = {"cardWidth", "cardContents", NULL};
	const char *path = "contentMessage.richCard";
	if (!rcs_known(c, rc, path, k))
		return false;
	json_t *sa = json_object_get(rc, "standaloneCard"),
	       *ca = json_object_get(rc, "carouselCard");
	if ((sa != NULL) == (ca != NULL))
		return rcs_bad(c, "%s must hold exactly one of standaloneCard or carouselCard",
		               path);
	if (sa) {
		const char *p = "contentMessage.richCard.standaloneCard";
		if (!rcs_known(c, sa, p, sk))
			return false;
		const char *o = json_string_value(json_object_get(sa, "cardOrientation"));
		if (!o || (strcmp(o, "VERTICAL") != 0 && strcmp(o, "HORIZONTAL") != 0))
			return rcs_bad(c, "%s.cardOrientation must be VERTICAL or HORIZONTAL", p);
		return rcs_card_content(c, json_object_get(sa, "cardContent"),
		                        "contentMessage.richCard.standaloneCard.cardContent");
	}
	const char *p = "contentMessage.richCard.carouselCard";
	if (!rcs_known(c, ca, p, ck))
		return false;
	const char *w = json_string_value(json_object_get(ca, "cardWidth"));
	if (!w || (strcmp(w, "SMALL") != 0 && strcmp(w, "MEDIUM") != 0))
		return rcs_bad(c, "%s.cardWidth must be SMALL or MEDIUM", p);
	json_t *cards = json_object_get(ca, "cardContents");
	size_t n = json_array_size(cards);
	if (!json_is_array(cards) || n < 2 || n > 10)
		return rcs_bad(c, "%s.cardContents must hold 2 to 10 cards", p);
	size_t i;
	json_t *cc;
	json_array_foreach(cards, i, cc)
	{
		char q[96];
		snprintf(q, sizeof q, "%s.cardContents[%zu]", p, i);
		if (!rcs_card_content(c, cc, q))
			return false;
	}
	return true;
}

/* True if body is an AgentMessage RBM would take; else msg says why. */
static bool rcs_check_message(json_t *body, char *msg, size_t n)
{
	static const char *const k[] = {"contentMessage", "ttl", "expireTime", "messageTrafficType",
	                                NULL};
	static const char *const ck[] = {
	    "text", "richCard", "contentInfo", "uploadedRbmFile", "suggestions", NULL};
	struct rcs_chk c = {msg, n};
	if (!rcs_known(&c, body, "agent_message", k))
		return false;
	json_t *cm = json_object_get(body, "contentMessage");
	if (!cm)
		return rcs_bad(&c, "contentMessage is required");
	if (!rcs_known(&c, cm, "contentMessage", ck))
		return false;
	static const char *const kinds[] = {"text", "richCard", "contentInfo", "uploadedRbmFile"};
	int nk = 0;
	for (int i = 0; i < 4; i++)
		nk += json_object_get(cm, kinds[i]) != NULL;
	if (nk != 1)
		return rcs_bad(&c, "contentMessage must hold exactly one of text, richCard, "
		                   "contentInfo or uploadedRbmFile");
	if (json_object_get(cm, "text") &&
	    !rcs_str(&c, cm, "text", "contentMessage", true, RCS_TEXT_MAX))
		return false;
	if (json_object_get(cm, "richCard") && !rcs_rich_card(&c, json_object_get(cm, "richCard")))
		return false;
	if (json_object_get(cm, "contentInfo") &&
	    !rcs_content_info(&c, json_object_get(cm, "contentInfo"), "contentMessage.contentInfo"))
		return false;
	if (!rcs_suggestions(&c, json_object_get(cm, "suggestions"), "contentMessage.suggestions",
	                     11))
		return false;
	json_t *ttl = json_object_get(body, "ttl");
	if (ttl) {
		const char *s = json_string_value(ttl);
		size_t d = s ? strspn(s, "0123456789.") : 0;
		if (!s || d == 0 || strcmp(s + d, "s") != 0)
			return rcs_bad(&c, "Invalid value at 'agent_message.ttl': a duration like "
			                   "\"86400s\" is expected");
	}
	if (ttl && json_object_get(body, "expireTime"))
		return rcs_bad(&c, "only one of ttl or expireTime may be set");
	return true;
}

/* ---------------------------------------------------------------------------
 * The API
 * ------------------------------------------------------------------------- */

/* Resolves the Bearer token to the account of agentId; answers 401/403 and
 * returns -1 otherwise. Caller holds t->lock. */
static int rcs_auth(struct sim_rcs *t, struct MHD_Connection *c, const char *agent,
                    unsigned int *status, char **resp)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *tok = NULL;
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		tok = auth + 7;
		while (*tok == ' ')
			tok++;
	}
	if (!tok || !*tok) {
		t->c.rej_auth++;
		rcs_fail(status, resp, 401, "UNAUTHENTICATED",
		         "Request is missing required authentication credential. Expected OAuth 2 "
		         "access token, login cookie or other valid authentication credential.");
		return -1;
	}
	int64_t now = hr_mono_us();
	for (size_t i = 0; i < t->ntokens; i++) {
		if (strcmp(t->tokens[i].tok, tok) != 0 || t->tokens[i].expires <= now)
			continue;
		int acct = t->tokens[i].acct;
		if (!agent || strcmp(t->accounts[acct].agent_id, agent) != 0) {
			t->c.rej_auth++;
			rcs_fail(status, resp, 403, "PERMISSION_DENIED",
			         "The caller does not have permission");
			return -1;
		}
		return acct;
	}
	t->c.rej_auth++;
	rcs_fail(status, resp, 401, "UNAUTHENTICATED",
	         "Request had invalid authentication credentials. Expected OAuth 2 access token, "
	         "login cookie or other valid authentication credential.");
	return -1;
}

/* Matches "/v1/phones/{phone}/{rest}"; phone is copied. */
static bool rcs_match_phone(const char *url, const char *rest, char *phone, size_t n)
{
	if (strncmp(url, "/v1/phones/", 11) != 0)
		return false;
	const char *p = url + 11, *slash = strchr(p, '/');
	if (!slash || slash == p || (size_t)(slash - p) >= n || strcmp(slash + 1, rest) != 0)
		return false;
	memcpy(phone, p, (size_t)(slash - p));
	phone[slash - p] = '\0';
	return true;
}

static bool rcs_phone_ok(const char *p)
{
	size_t n = strlen(p);
	return n >= 9 && n <= 16 && p[0] == '+' && p[1] != '0' &&
	       strspn(p + 1, "0123456789") == n - 1;
}

static void rcs_send(struct sim *s, struct MHD_Connection *c, const char *phone, const char *body,
                     size_t len, bool too_large, unsigned int *status, char **resp,
                     int64_t *delay_us)
{
	struct sim_rcs *t = s->rcs;
	const char *agent = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "agentId");
	const char *mid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "messageId");
	char msg[512];
	json_error_t je;
	json_t *root = NULL;
	pthread_mutex_lock(&t->lock);
	t->c.requests++;
	*delay_us = (int64_t)(t->knobs.latency_ms * 1000);
	int acct = rcs_auth(t, c, agent, status, resp);
	if (acct < 0)
		goto out;
	if (!rcs_phone_ok(phone)) {
		t->c.rej_invalid++;
		rcs_fail(status, resp, 400, "INVALID_ARGUMENT",
		         "Invalid phone number: phones/{E.164} is expected");
		goto out;
	}
	if (!rcs_uuid_ok(mid)) {
		t->c.rej_invalid++;
		rcs_fail(status, resp, 400, "INVALID_ARGUMENT",
		         "Invalid messageId: it must be a UUID as defined in RFC 4122");
		goto out;
	}
	if (too_large || len > RCS_BODY_MAX) {
		t->c.rej_invalid++;
		rcs_fail(status, resp, 400, "INVALID_ARGUMENT", "The AgentMessage exceeds 250 KB");
		goto out;
	}
	root = json_loadb(body ? body : "", len, 0, &je);
	if (!root || !rcs_check_message(root, msg, sizeof msg)) {
		if (!root)
			snprintf(msg, sizeof msg, "Invalid JSON payload received. %s", je.text);
		t->c.rej_invalid++;
		rcs_fail(status, resp, 400, "INVALID_ARGUMENT", msg);
		goto out;
	}
	const struct rcs_script *sc = rcs_script_find(&t->knobs, phone);
	if (sc && sc->not_rcs) {
		t->c.rej_not_found++;
		rcs_fail(status, resp, 404, "NOT_FOUND", "Requested entity was not found.");
		goto out;
	}
	if (sc && sc->error) {
		t->c.rej_scripted++;
		rcs_fail(status, resp, sc->error, rcs_status_name(sc->error),
		         "Scripted error for this recipient");
		goto out;
	}
	json_t *rec = json_object_get(t->messages, mid);
	uint64_t attempt = rec ? (uint64_t)json_integer_value(json_object_get(rec, "attempts")) : 0;
	unsigned char digest[32];
	unsigned int dl = 0;
	EVP_Digest(mid, strlen(mid), digest, &dl, EVP_sha256(), NULL);
	struct sim_rng rng;
	sim_rng_init(&rng, t->knobs.has_seed ? t->knobs.seed : s->random_seed, digest, attempt);
	double u429 = sim_rng_unit(&rng), u5xx = sim_rng_unit(&rng);
	if (!rec) {
		rec = json_pack("{s:s, s:b, s:i, s:i}", "to", phone, "accepted", 0, "attempts", 0,
		                "conflicts", 0);
		json_object_set_new(t->messages, mid, rec);
	}
	json_object_set_new(rec, "attempts", json_integer((json_int_t)attempt + 1));
	if (json_is_true(json_object_get(rec, "accepted"))) {
		t->c.duplicates++;
		json_object_set_new(
		    rec, "conflicts",
		    json_integer(json_integer_value(json_object_get(rec, "conflicts")) + 1));
		*status = 409;
		*resp = rcs_gerror(409, "ALREADY_EXISTS",
		                   "Requested entity already exists: phones/%s/agentMessages/%s",
		                   phone, mid);
	} else if (u429 < t->knobs.rate_429) {
		t->c.rej_429++;
		rcs_fail(status, resp, 429, "RESOURCE_EXHAUSTED",
		         "Quota exceeded for quota metric 'Agent messages' of service "
		         "'rcsbusinessmessaging.googleapis.com'.");
	} else if (u5xx < t->knobs.rate_5xx) {
		t->c.rej_5xx++;
		rcs_fail(status, resp, 503, "UNAVAILABLE", "The service is currently unavailable.");
	} else {
		t->c.accepted++;
		json_t *cm = json_object_get(root, "contentMessage");
		json_object_set_new(rec, "accepted", json_true());
		json_object_set(rec, "body", root);
		char name[160], when[32];
		snprintf(name, sizeof name, "phones/%s/agentMessages/%s", phone, mid);
		rcs_now_rfc3339(hr_now_us(), when);
		json_t *out = json_pack("{s:s, s:s, s:O}", "name", name, "sendTime", when,
		                        "contentMessage", cm);
		*status = 200;
		*resp = out ? json_dumps(out, JSON_COMPACT) : NULL;
		json_decref(out);
		rcs_schedule(t, acct, phone, mid, cm, sc, &rng, *delay_us);
	}
out:
	pthread_mutex_unlock(&t->lock);
	json_decref(root);
}

static void rcs_capability(struct sim *s, struct MHD_Connection *c, const char *phone,
                           unsigned int *status, char **resp, int64_t *delay_us)
{
	struct sim_rcs *t = s->rcs;
	const char *agent = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "agentId");
	const char *rid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "requestId");
	pthread_mutex_lock(&t->lock);
	t->c.requests++;
	*delay_us = (int64_t)(t->knobs.latency_ms * 1000);
	if (rcs_auth(t, c, agent, status, resp) < 0)
		goto out;
	t->c.caps++;
	if (!rcs_phone_ok(phone) || !rcs_uuid_ok(rid)) {
		t->c.rej_invalid++;
		rcs_fail(status, resp, 400, "INVALID_ARGUMENT",
		         !rcs_phone_ok(phone) ? "Invalid phone number: phones/{E.164} is expected"
		                              : "Invalid requestId: it must be a UUID");
		goto out;
	}
	const struct rcs_script *sc = rcs_script_find(&t->knobs, phone);
	if (sc && sc->not_rcs) {
		t->c.rej_not_found++;
		rcs_fail(status, resp, 404, "NOT_FOUND", "Requested entity was not found.");
		goto out;
	}
	json_t *f = sc && sc->features ? json_incref(sc->features) : json_array();
	for (size_t i = 0; !(sc && sc->features) && rcs_default_features[i]; i++)
		json_array_append_new(f, json_string(rcs_default_features[i]));
	json_t *out = json_pack("{s:o}", "features", f);
	*status = 200;
	*resp = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
out:
	pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------------------------
 * The token endpoint
 * ------------------------------------------------------------------------- */

/* A form value (decoded, heap) or NULL. */
static char *rcs_form(const char *body, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = body; p && *p;) {
		size_t vl = strcspn(p, "&");
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			int ol = 0;
			char *v = curl_easy_unescape(NULL, p + kl + 1, (int)(vl - kl - 1), &ol);
			char *out = v ? strndup(v, (size_t)ol) : NULL;
			curl_free(v);
			return out;
		}
		p += vl;
		if (*p == '&')
			p++;
	}
	return NULL;
}

static void rcs_oauth_fail(unsigned int *status, char **resp, const char *error, const char *desc)
{
	json_t *o = json_pack("{s:s, s:s}", "error", error, "error_description", desc);
	*status = 400;
	*resp = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

/* Verifies the JWT bearer assertion like Google's token endpoint and issues
 * an access token for its service account. */
static void rcs_token(struct sim *s, const char *body, size_t len, bool too_large,
                      unsigned int *status, char **resp)
{
	struct sim_rcs *t = s->rcs;
	char *text = too_large ? NULL : strndup(body ? body : "", len);
	char *grant = text ? rcs_form(text, "grant_type") : NULL;
	char *assertion = text ? rcs_form(text, "assertion") : NULL;
	free(text);
	jwt_t *unverified = NULL, *jwt = NULL;
	int acct = -1;
	const char *why = NULL, *error = "invalid_grant";
	if (!grant || strcmp(grant, RCS_GRANT) != 0) {
		error = "unsupported_grant_type";
		why = "Invalid grant_type: the JWT bearer grant is expected";
	} else if (!assertion || jwt_decode(&unverified, assertion, NULL, 0) != 0) {
		why = "Invalid JWT: the assertion is not a JWT";
	} else {
		const char *iss = jwt_get_grant(unverified, "iss");
		for (size_t i = 0; iss && i < t->naccounts; i++)
			if (strcmp(t->accounts[i].client_email, iss) == 0)
				acct = (int)i;
		if (acct < 0)
			why = "Invalid grant: account not found";
	}
	if (!why) {
		const struct rcs_account *a = &t->accounts[acct];
		long now = (long)(hr_now_us() / 1000000);
		if (jwt_decode(&jwt, assertion, (const unsigned char *)a->pub_pem,
		               (int)strlen(a->pub_pem)) != 0 ||
		    jwt_get_alg(jwt) != JWT_ALG_RS256) {
			why = "Invalid JWT Signature.";
		} else {
			const char *aud = jwt_get_grant(jwt, "aud");
			const char *scope = jwt_get_grant(jwt, "scope");
			long iat = jwt_get_grant_int(jwt, "iat"),
			     exp = jwt_get_grant_int(jwt, "exp");
			if (!aud || strcmp(aud, a->token_uri) != 0) {
				why =
				    "Invalid JWT: Failed audience check. The right audience is the "
				    "token_uri of the service account.";
			} else if (iat <= 0 || exp <= now || exp - iat > 3600 || iat > now + 300) {
				why = "Invalid JWT: Token must be a short-lived token (60 minutes) "
				      "and in a "
				      "reasonable timeframe. Check your iat and exp values in the "
				      "JWT claim.";
			} else if (!scope || !strstr(scope, RCS_SCOPE)) {
				error = "invalid_scope";
				why = "The scope "
				      "https://www.googleapis.com/auth/rcsbusinessmessaging is "
				      "required.";
			}
		}
	}
	jwt_free(unverified);
	jwt_free(jwt);
	free(grant);
	free(assertion);
	pthread_mutex_lock(&t->lock);
	t->c.requests++;
	if (why) {
		t->c.tok_refused++;
		pthread_mutex_unlock(&t->lock);
		rcs_oauth_fail(status, resp, error, why);
		return;
	}
	int64_t now = hr_mono_us();
	size_t keep = 0; /* drop expired tokens */
	for (size_t i = 0; i < t->ntokens; i++)
		if (t->tokens[i].expires > now)
			t->tokens[keep++] = t->tokens[i];
	t->ntokens = keep;
	if (t->ntokens == t->captokens) {
		size_t cap = t->captokens ? t->captokens * 2 : 16;
		struct rcs_token *tk = realloc(t->tokens, cap * sizeof *tk);
		if (!tk) {
			pthread_mutex_unlock(&t->lock);
			rcs_fail(status, resp, 500, "INTERNAL", "out of memory");
			return;
		}
		t->tokens = tk;
		t->captokens = cap;
	}
	struct rcs_token *tk = &t->tokens[t->ntokens++];
	unsigned char r[16];
	hr_random_bytes(r, sizeof r);
	int n = snprintf(tk->tok, sizeof tk->tok, "ya29.sim-");
	for (int i = 0; i < 16; i++)
		n += snprintf(tk->tok + n, sizeof tk->tok - (size_t)n, "%02x", r[i]);
	tk->acct = acct;
	int ttl = (int)t->knobs.token_ttl_s;
	tk->expires = now + (int64_t)ttl * 1000000;
	t->c.tok_issued++;
	json_t *o = json_pack("{s:s, s:i, s:s}", "access_token", tk->tok, "expires_in", ttl,
	                      "token_type", "Bearer");
	pthread_mutex_unlock(&t->lock);
	*status = 200;
	*resp = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

/* ---------------------------------------------------------------------------
 * Control endpoints
 * ------------------------------------------------------------------------- */

static void rcs_ctl_error(unsigned int *status, char **resp, unsigned int code, const char *field,
                          const char *msg)
{
	json_t *e = json_pack("{s:{s:s}}", "error", "message", msg);
	if (field)
		json_object_set_new(json_object_get(e, "error"), "field", json_string(field));
	*status = code;
	*resp = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
}

static const struct rcs_account *rcs_account_by_id(struct sim_rcs *t, const char *id, int *idx)
{
	for (size_t i = 0; id && i < t->naccounts; i++)
		if (strcmp(t->accounts[i].id, id) == 0) {
			*idx = (int)i;
			return &t->accounts[i];
		}
	return NULL;
}

static void rcs_ctl_inbound(struct sim *s, json_t *o, unsigned int *status, char **resp)
{
	struct sim_rcs *t = s->rcs;
	int idx = -1;
	const char *id = json_string_value(json_object_get(o, "account"));
	const struct rcs_account *a = rcs_account_by_id(t, id, &idx);
	char from[HR_ADDR_MAX];
	rcs_e164(json_string_value(json_object_get(o, "from")), from, sizeof from);
	const char *text = json_string_value(json_object_get(o, "text"));
	const char *pb = json_string_value(json_object_get(o, "postback_data"));
	if (!a) {
		rcs_ctl_error(status, resp, id ? 404 : 400, "account",
		              id ? "no rcs account with that id" : "account is required");
		return;
	}
	if (strlen(from) < 6) {
		rcs_ctl_error(status, resp, 400, "from", "from must be a phone number");
		return;
	}
	if (!text || (!*text && !pb)) {
		rcs_ctl_error(status, resp, 400, "text", "text is required");
		return;
	}
	char uid[40], when[32];
	rcs_user_id(uid);
	rcs_now_rfc3339(hr_now_us(), when);
	json_t *ev =
	    pb ? json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "senderPhoneNumber", from,
	                   "messageId", uid, "sendTime", when, "agentId", a->agent_id,
	                   "suggestionResponse", "postbackData", pb, "text", text, "type", "REPLY")
	       : json_pack("{s:s, s:s, s:s, s:s, s:s}", "senderPhoneNumber", from, "messageId", uid,
	                   "sendTime", when, "agentId", a->agent_id, "text", text);
	pthread_mutex_lock(&t->lock);
	if (pb)
		t->c.presses++;
	else
		t->c.replies++;
	rcs_queue_event(t, idx, ev, hr_mono_us(), false, 0);
	pthread_mutex_unlock(&t->lock);
	json_t *out = json_pack("{s:s, s:s}", "messageId", uid, "account", a->id);
	*status = 202;
	*resp = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
}

static void rcs_ctl_config(struct sim *s, json_t *o, unsigned int *status, char **resp)
{
	struct sim_rcs *t = s->rcs;
	pthread_mutex_lock(&t->lock);
	if (o) {
		json_t *merged = json_deep_copy(t->conf);
		json_object_update(merged, o);
		struct hr_err err = {0};
		struct rcs_knobs k;
		rcs_knobs_default(&k);
		if (rcs_knobs_parse(merged, "", &k, &err) != 0) {
			pthread_mutex_unlock(&t->lock);
			json_decref(merged);
			rcs_ctl_error(status, resp, 400, err.field, err.msg);
			return;
		}
		rcs_scripts_free(&t->knobs);
		t->knobs = k;
		json_decref(t->conf);
		t->conf = merged;
	}
	json_t *out = rcs_knobs_json(&t->knobs, t->conf);
	pthread_mutex_unlock(&t->lock);
	*status = 200;
	*resp = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
}

bool sim_rcs_route(struct sim *s, struct MHD_Connection *c, const char *url, const char *method,
                   const char *body, size_t len, bool too_large, unsigned int *status, char **resp,
                   int64_t *delay_us)
{
	struct sim_rcs *t = s->rcs;
	if (!t)
		return false;
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	char phone[HR_ADDR_MAX];
	*delay_us = 0;
	if (rcs_match_phone(url, "agentMessages", phone, sizeof phone)) {
		if (post)
			rcs_send(s, c, phone, body, len, too_large, status, resp, delay_us);
		else
			rcs_fail(status, resp, 405, "UNIMPLEMENTED",
			         "agentMessages are created by POST");
		return true;
	}
	if (rcs_match_phone(url, "capabilities", phone, sizeof phone)) {
		if (get)
			rcs_capability(s, c, phone, status, resp, delay_us);
		else
			rcs_fail(status, resp, 405, "UNIMPLEMENTED",
			         "capabilities are read by GET");
		return true;
	}
	if (strcmp(url, "/token") == 0) {
		if (post)
			rcs_token(s, body, len, too_large, status, resp);
		else
			rcs_oauth_fail(status, resp, "invalid_request",
			               "the token endpoint takes POST");
		return true;
	}
	if (strncmp(url, "/sim/rcs/", 9) != 0)
		return false;
	const char *sub = url + 9;
	json_error_t je;
	json_t *o = post && !too_large ? json_loadb(body ? body : "", len, 0, &je) : NULL;
	if (post && !json_is_object(o)) {
		rcs_ctl_error(status, resp, 400, "body", "the body must be a JSON object");
	} else if (post && strcmp(sub, "inbound") == 0) {
		rcs_ctl_inbound(s, o, status, resp);
	} else if ((get || post) && strcmp(sub, "config") == 0) {
		rcs_ctl_config(s, post ? o : NULL, status, resp);
	} else if (get && strncmp(sub, "messages/", 9) == 0 && sub[9]) {
		pthread_mutex_lock(&t->lock);
		json_t *m = json_object_get(t->messages, sub + 9);
		json_t *copy = m ? json_deep_copy(m) : NULL;
		pthread_mutex_unlock(&t->lock);
		if (copy) {
			*status = 200;
			*resp = json_dumps(copy, JSON_COMPACT);
			json_decref(copy);
		} else {
			rcs_ctl_error(status, resp, 404, NULL,
			              "no agent message with that messageId");
		}
	} else {
		rcs_ctl_error(status, resp, 404, NULL, "unknown path");
	}
	json_decref(o);
	return true;
}

void sim_rcs_counts_add(struct sim *s, json_t *counts)
{
	struct sim_rcs *t = s->rcs;
	if (!t || !counts)
		return;
	json_t *by_to = json_object();
	if (!by_to)
		return;
	pthread_mutex_lock(&t->lock);
	const char *k;
	json_t *v;
	json_object_foreach(t->messages, k, v)
	{
		const char *to = json_string_value(json_object_get(v, "to"));
		if (!to)
			continue;
		json_t *c = json_object_get(by_to, to);
		if (!c) {
			c = json_pack("{s:i, s:i}", "accepted", 0, "requests", 0);
			if (!c || json_object_set_new(by_to, to, c) != 0)
				break;
		}
		json_int_t acc = json_integer_value(json_object_get(c, "accepted")) +
		                 json_is_true(json_object_get(v, "accepted"));
		json_int_t req = json_integer_value(json_object_get(c, "requests")) +
		                 json_integer_value(json_object_get(v, "attempts"));
		json_object_set_new(c, "accepted", json_integer(acc));
		json_object_set_new(c, "requests", json_integer(req));
	}
	pthread_mutex_unlock(&t->lock);
	json_object_set_new(counts, "rcs", by_to);
}

void sim_rcs_stats_add(struct sim *s, json_t *stats)
{
	struct sim_rcs *t = s->rcs;
	if (!t || !stats)
		return;
	pthread_mutex_lock(&t->lock);
	struct rcs_counts c = t->c;
	size_t pending = t->nheap, accepted_unique = 0;
	const char *k;
	json_t *v;
	json_object_foreach(t->messages, k, v) accepted_unique +=
	    json_is_true(json_object_get(v, "accepted"));
	pthread_mutex_unlock(&t->lock);
	json_object_set_new(
	    stats, "rcs",
	    json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:I, "
	              "s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}",
	              "requests", (json_int_t)c.requests, "accepted", (json_int_t)c.accepted,
	              "duplicates", (json_int_t)c.duplicates, "unique_messages",
	              (json_int_t)accepted_unique, "rejected", "auth", (json_int_t)c.rej_auth,
	              "invalid", (json_int_t)c.rej_invalid, "not_found",
	              (json_int_t)c.rej_not_found, "429", (json_int_t)c.rej_429, "5xx",
	              (json_int_t)c.rej_5xx, "scripted", (json_int_t)c.rej_scripted, "tokens",
	              "issued", (json_int_t)c.tok_issued, "refused", (json_int_t)c.tok_refused,
	              "capability_checks", (json_int_t)c.caps, "presses", (json_int_t)c.presses,
	              "presses_missed", (json_int_t)c.presses_missed, "replies",
	              (json_int_t)c.replies, "webhooks", "posted", (json_int_t)c.posted, "events",
	              (json_int_t)c.events, "failed_attempts", (json_int_t)c.failed_attempts,
	              "dropped", (json_int_t)c.dropped, "pending", (json_int_t)pending));
}

void sim_rcs_reset(struct sim *s)
{
	struct sim_rcs *t = s->rcs;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	memset(&t->c, 0, sizeof t->c);
	pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------- */

static void rcs_account_free(struct rcs_account *a)
{
	free(a->agent_id);
	free(a->client_email);
	free(a->pub_pem);
	free(a->token_uri);
	free(a->client_token);
	free(a->webhook_url);
}

static int rcs_cfg_secret(json_t *cfg, const char *key, const char *base, char **out,
                          struct hr_err *err)
{
	char field[192];
	snprintf(field, sizeof field, "%s.%s", base, key);
	const char *ref = json_string_value(json_object_get(cfg, key));
	if (!ref || !*ref)
		return hr_fail(err, HR_EINVAL, field, "%s is required", field);
	*out = hr_secret_resolve(ref, field, err);
	return *out ? 0 : (err && err->code ? err->code : HR_EINVAL);
}

/* The public key (PEM) of a private key (PEM), heap, or NULL. */
static char *rcs_public_pem(const char *priv)
{
	BIO *in = BIO_new_mem_buf(priv, -1);
	EVP_PKEY *k = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
	BIO_free(in);
	BIO *out = k ? BIO_new(BIO_s_mem()) : NULL;
	char *pem = NULL;
	if (out && PEM_write_bio_PUBKEY(out, k) == 1) {
		char *p = NULL;
		long n = BIO_get_mem_data(out, &p);
		pem = n > 0 ? strndup(p, (size_t)n) : NULL;
	}
	BIO_free(out);
	EVP_PKEY_free(k);
	return pem;
}

static int rcs_load_account(struct sim *s, json_t *entry, const char *base, struct hr_err *err)
{
	struct sim_rcs *t = s->rcs;
	struct rcs_account *a = &t->accounts[t->naccounts];
	memset(a, 0, sizeof *a);
	char cbase[160];
	json_t *cfg = sim_account_entry(entry, base, a->id, sizeof a->id, cbase, sizeof cbase, err);
	if (!cfg)
		return err && err->code ? err->code : HR_EINVAL;
	char field[192];
	char *sa_text = NULL;
	int rc;
	const char *agent = json_string_value(json_object_get(cfg, "agent_id"));
	if (!agent || !*agent) {
		snprintf(field, sizeof field, "%s.agent_id", cbase);
		return hr_fail(err, HR_EINVAL, field, "%s is required", field);
	}
	if ((rc = rcs_cfg_secret(cfg, "service_account", cbase, &sa_text, err)) ||
	    (rc = rcs_cfg_secret(cfg, "client_token", cbase, &a->client_token, err))) {
		free(sa_text);
		rcs_account_free(a);
		return rc;
	}
	snprintf(field, sizeof field, "%s.service_account", cbase);
	json_error_t je;
	json_t *sa = json_loads(sa_text, 0, &je);
	free(sa_text);
	const char *email = json_string_value(json_object_get(sa, "client_email"));
	const char *key = json_string_value(json_object_get(sa, "private_key"));
	const char *uri = json_string_value(json_object_get(sa, "token_uri"));
	a->agent_id = strdup(agent);
	a->client_email = email ? strdup(email) : NULL;
	a->token_uri = uri ? strdup(uri) : NULL;
	a->pub_pem = key ? rcs_public_pem(key) : NULL;
	json_decref(sa);
	size_t hl = strlen(s->herald_url);
	while (hl && s->herald_url[hl - 1] == '/')
		hl--;
	if (asprintf(&a->webhook_url, "%.*s/webhooks/rcs/%s", (int)hl, s->herald_url, a->id) < 0)
		a->webhook_url = NULL;
	if (!a->client_email || !a->token_uri || !a->pub_pem || !a->agent_id || !a->webhook_url) {
		rcs_account_free(a);
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be a service-account JSON with client_email, token_uri and "
		               "an RSA private_key",
		               field);
	}
	for (size_t i = 0; i < t->naccounts; i++)
		if (strcmp(t->accounts[i].id, a->id) == 0) {
			rcs_account_free(a);
			return hr_fail(err, HR_EINVAL, base, "%s: account id '%s' is used twice",
			               base, a->id);
		}
	t->naccounts++;
	return 0;
}

static int rcs_load_accounts(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_rcs *t = s->rcs;
	t->accounts = calloc(sim_config_account_slots(config) + 1, sizeof *t->accounts);
	if (!t->accounts)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return sim_config_each_account(s, config, "rcs", rcs_load_account, err);
}

int sim_rcs_start(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_rcs *t = calloc(1, sizeof *t);
	if (!t)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	s->rcs = t;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->wake, &ca);
	pthread_condattr_destroy(&ca);
	rcs_knobs_default(&t->knobs);
	t->messages = json_object();
	unsigned char r[4];
	hr_random_bytes(r, sizeof r);
	t->pubsub_next =
	    1000000000000000ULL +
	    ((uint64_t)r[0] << 24 | (uint64_t)r[1] << 16 | (uint64_t)r[2] << 8 | r[3]) * 1000;
	json_t *conf = hr_cfg_get(config, "sim.rcs");
	t->conf = conf && json_is_object(conf) ? json_deep_copy(conf) : json_object();
	int rc = t->messages && t->conf ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	if (!rc && conf && !json_is_null(conf))
		rc = rcs_knobs_parse(conf, "sim.rcs.", &t->knobs, err);
	if (!rc)
		rc = rcs_load_accounts(s, config, err);
	if (!rc) {
		if (pthread_create(&t->thread, NULL, rcs_poster_main, s) != 0)
			rc = hr_fail(err, HR_EINTERNAL, NULL, "cannot start the rcs poster thread");
		else
			t->started = true;
	}
	return rc; /* on failure sim_stop calls sim_rcs_stop */
}

void sim_rcs_stop(struct sim *s)
{
	struct sim_rcs *t = s ? s->rcs : NULL;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);
	if (t->started)
		pthread_join(t->thread, NULL);
	for (size_t i = 0; i < t->nheap; i++)
		rcs_post_free(t->heap[i]);
	free(t->heap);
	for (size_t i = 0; i < t->naccounts; i++)
		rcs_account_free(&t->accounts[i]);
	free(t->accounts);
	free(t->tokens);
	rcs_scripts_free(&t->knobs);
	json_decref(t->conf);
	json_decref(t->messages);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	free(t);
	s->rcs = NULL;
}
