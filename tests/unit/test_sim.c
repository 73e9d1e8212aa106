/*
 * test_sim.c - the provider simulator, in process: a sim on a free loopback
 * port, a tiny MHD server standing in for Herald's webhook ingress, and the
 * WhatsApp adapter on the client side (build_send makes the requests,
 * parse_send classifies the answers, webhook_verify/webhook_parse check what
 * the sim posts), so the sim is checked against the same code Herald runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>

#include "channels/channel.h"
#include "core/config.h"
#include "core/crypto.h"
#include "herald.h"
#include "sim/sim.h"

#define PNID "106540352242922"
#define SECRET1 "app-secret-123"
#define SECRET2 "second-secret"

/* ---------------------------------------------------------------------------
 * The fake Herald: records every webhook POST, can fail the next N.
 * ------------------------------------------------------------------------- */

struct hook {
	char path[128];
	char sig[128];
	char *body;
	size_t len;
};

struct recv {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct hook *hooks;
	size_t n, cap;
	int fail_next;
	int attempts;
};

struct rbuf {
	char *data;
	size_t len;
};

static enum MHD_Result recv_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls)
{
	(void)version;
	struct recv *rv = cls;
	struct rbuf *b = *con_cls;
	if (!b) {
		*con_cls = calloc(1, sizeof *b);
		return MHD_YES;
	}
	if (*upload_size) {
		b->data = realloc(b->data, b->len + *upload_size + 1);
		memcpy(b->data + b->len, upload, *upload_size);
		b->len += *upload_size;
		b->data[b->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	unsigned int status = 200;
	pthread_mutex_lock(&rv->lock);
	rv->attempts++;
	if (strcmp(method, "POST") != 0) {
		status = 405;
	} else if (rv->fail_next > 0) {
		rv->fail_next--;
		status = 500;
	} else {
		if (rv->n == rv->cap) {
			rv->cap = rv->cap ? rv->cap * 2 : 64;
			rv->hooks = realloc(rv->hooks, rv->cap * sizeof *rv->hooks);
		}
		struct hook *h = &rv->hooks[rv->n++];
		memset(h, 0, sizeof *h);
		hr_strlcpy(h->path, url, sizeof h->path);
		const char *sig =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hub-Signature-256");
		hr_strlcpy(h->sig, sig ? sig : "", sizeof h->sig);
		h->body = b->data ? b->data : strdup("");
		h->len = b->len;
		b->data = NULL;
	}
	pthread_cond_broadcast(&rv->cond);
	pthread_mutex_unlock(&rv->lock);
	struct MHD_Response *r = MHD_create_response_from_buffer(2, "{}", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void recv_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct rbuf *b = *con_cls;
	if (b) {
		free(b->data);
		free(b);
	}
	*con_cls = NULL;
}

static void recv_start(struct recv *rv)
{
	memset(rv, 0, sizeof *rv);
	pthread_mutex_init(&rv->lock, NULL);
	pthread_cond_init(&rv->cond, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	rv->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
	                         recv_access, rv, MHD_OPTION_SOCK_ADDR, &sa,
	                         MHD_OPTION_NOTIFY_COMPLETED, recv_done, rv, MHD_OPTION_END);
	assert_non_null(rv->d);
	rv->port = MHD_get_daemon_info(rv->d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void recv_clear(struct recv *rv)
{
	pthread_mutex_lock(&rv->lock);
	for (size_t i = 0; i < rv->n; i++)
		free(rv->hooks[i].body);
	rv->n = 0;
	rv->attempts = 0;
	pthread_mutex_unlock(&rv->lock);
}

static void recv_stop(struct recv *rv)
{
	MHD_stop_daemon(rv->d);
	recv_clear(rv);
	free(rv->hooks);
	pthread_mutex_destroy(&rv->lock);
	pthread_cond_destroy(&rv->cond);
}

/* Waits until at least n webhooks arrived; returns how many did. */
static size_t recv_wait(struct recv *rv, size_t n, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&rv->lock);
	while (rv->n < n && pthread_cond_timedwait(&rv->cond, &rv->lock, &ts) == 0)
		;
	size_t got = rv->n;
	pthread_mutex_unlock(&rv->lock);
	return got;
}

/* ---------------------------------------------------------------------------
 * HTTP client helpers
 * ------------------------------------------------------------------------- */

struct resp {
	long status;
	char *body;
	size_t len;
	char retry_after[32];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	r->body = realloc(r->body, r->len + sz * n + 1);
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t len = sz * n;
	if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		size_t k = 12;
		while (k < len && p[k] == ' ')
			k++;
		size_t e = len;
		while (e > k && (p[e - 1] == '\r' || p[e - 1] == '\n'))
			e--;
		snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(e - k), p + k);
	}
	return len;
}

/* One request; returns the parsed JSON answer (or NULL) and fills r. */
static json_t *http(const char *method, const char *url, struct curl_slist *headers,
                    const char *body, size_t blen, struct resp *r)
{
	memset(r, 0, sizeof *r);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
	/* A transport error leaves status 0 (this may run off the test thread,
	 * where cmocka's fail_msg must not be called). */
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(e);
	json_error_t je;
	return r->body ? json_loads(r->body, 0, &je) : NULL;
}

/* ---------------------------------------------------------------------------
 * One sim + one fake Herald per test.
 * ------------------------------------------------------------------------- */

struct env {
	struct recv rv;
	struct sim *sim;
	char base[64];
	struct channel_account *acct;  /* Herald's view of account wa1 */
	struct channel_account *acct2; /* and of wa2 */
};

static const char *config_fmt = "server:\n"
                                "  public_url: http://127.0.0.1:%d/\n"
                                "sim:\n"
                                "  listen: 127.0.0.1:0\n"
                                "  webhook_retry_s: 30\n"
                                "  whatsapp:\n"
                                "%s"
                                "%s"
                                "tenants:\n"
                                "  - id: t1\n"
                                "    accounts:\n"
                                "      - id: wa1\n"
                                "        channel: whatsapp\n"
                                "        phone_number_id: \"" PNID "\"\n"
                                "        access_token: tok-1\n"
                                "        app_secret: " SECRET1 "\n"
                                "        verify_token: v\n"
                                "      - id: sms1\n"
                                "        channel: sms\n"
                                "  - id: t2\n"
                                "    accounts:\n"
                                "      - id: wa2\n"
                                "        channel: whatsapp\n"
                                "        config:\n"
                                "          phone_number_id: 2000\n"
                                "          access_token: tok-2\n"
                                "          app_secret: env:SIM_TEST_SECRET2\n";

static struct channel_account *herald_account(const char *id, const char *base, const char *pnid,
                                              const char *tok, const char *secret)
{
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "{\"base_url\":\"%s\",\"phone_number_id\":\"%s\",\"access_token\":\"%s\","
	         "\"app_secret\":\"%s\",\"verify_token\":\"v\"}",
	         base, pnid, tok, secret);
	struct account_row row = {.tenant_id = "t1", .channel = "whatsapp", .config = cfg};
	hr_strlcpy(row.id, id, sizeof row.id);
	struct channel_account *a = NULL;
	struct hr_err err = {0};
	if (channel_account_new(&row, &a, &err))
		fail_msg("account: %s", err.msg);
	return a;
}

static struct env *env_start(const char *knobs)
{
	struct env *e = calloc(1, sizeof *e);
	recv_start(&e->rv);
	char yaml[2048];
	/* Fast default delays unless the test gives its own. */
	const char *delays = "    sent_delay_ms: 5\n    delivered_delay_ms: 25\n"
	                     "    read_delay_ms: 50\n";
	if (knobs && strstr(knobs, "delay_ms"))
		delays = "";
	snprintf(yaml, sizeof yaml, config_fmt, e->rv.port, delays, knobs ? knobs : "");
	struct hr_err err = {0};
	json_t *cfg = hr_config_parse(yaml, strlen(yaml), &err);
	if (!cfg)
		fail_msg("config: %s", err.msg);
	int rc = sim_start(cfg, NULL, &e->sim, &err);
	json_decref(cfg);
	if (rc)
		fail_msg("sim_start: %s (%s)", err.msg, err.field);
	snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", sim_port(e->sim));
	e->acct = herald_account("wa1", e->base, PNID, "tok-1", SECRET1);
	e->acct2 = herald_account("wa2", e->base, "2000", "tok-2", SECRET2);
	return e;
}

static void env_stop(struct env *e)
{
	sim_stop(e->sim);
	recv_stop(&e->rv);
	channel_account_free(e->acct);
	channel_account_free(e->acct2);
	free(e);
}

static int setup(void **state)
{
	(void)state;
	setenv("SIM_TEST_SECRET2", SECRET2, 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	hr_log_set_level(HR_LOG_ERROR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

/* Sends like Herald's dispatcher: the adapter builds, curl posts, the adapter
 * classifies. Returns the sim's JSON answer. */
static json_t *send_msg(struct env *e, struct channel_account *a, const char *id, const char *to,
                        const char *content, struct send_outcome *out, struct resp *r)
{
	struct message m = {0};
	hr_strlcpy(m.id, id, sizeof m.id);
	hr_strlcpy(m.recipient, to, sizeof m.recipient);
	m.content = (char *)content;
	struct http_req req;
	struct hr_err err = {0};
	if (a->ops->build_send(a, &m, &req, &err))
		fail_msg("build_send: %s", err.msg);
	(void)e;
	json_t *j = http("POST", req.url, req.headers, req.body, req.body_len, r);
	a->ops->parse_send(a, r->status, r->body, r->len, r->retry_after[0] ? r->retry_after : NULL,
	                   out);
	http_req_clear(&req);
	return j;
}

static json_t *send_text(struct env *e, const char *id, const char *to, const char *text,
                         struct send_outcome *out)
{
	char content[512];
	snprintf(content, sizeof content, "{\"type\":\"text\",\"text\":\"%s\"}", text);
	struct resp r;
	json_t *j = send_msg(e, e->acct, id, to, content, out, &r);
	free(r.body);
	return j;
}

static json_t *sim_get(struct env *e, const char *path, long *status)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", e->base, path);
	struct resp r;
	json_t *j = http("GET", url, NULL, NULL, 0, &r);
	if (status)
		*status = r.status;
	free(r.body);
	return j;
}

static json_t *sim_post(struct env *e, const char *path, const char *body, long *status)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", e->base, path);
	struct resp r;
	json_t *j = http("POST", url, NULL, body, strlen(body), &r);
	if (status)
		*status = r.status;
	free(r.body);
	return j;
}

static void set_knobs(struct env *e, const char *json)
{
	long status;
	json_t *j = sim_post(e, "/sim/config", json, &status);
	if (status != 200)
		fail_msg("/sim/config %s: %ld", json, status);
	json_decref(j);
}

static json_int_t stat(struct env *e, const char *a, const char *b)
{
	json_t *j = sim_get(e, "/sim/stats", NULL);
	json_t *v = json_object_get(j, a);
	if (b)
		v = json_object_get(v, b);
	assert_true(json_is_integer(v));
	json_int_t n = json_integer_value(v);
	json_decref(j);
	return n;
}

/* The counter once it equals want, or its value after ms: the sim counts a
 * webhook when the receiver's answer is in, after the receiver has it. */
static json_int_t stat_wait(struct env *e, const char *a, const char *b, json_int_t want, int ms)
{
	json_int_t n = stat(e, a, b);
	for (int waited = 0; n != want && waited < ms; waited += 10) {
		usleep(10000);
		n = stat(e, a, b);
	}
	return n;
}

/* Waits until the sim has no webhook left to deliver. */
static void wait_idle(struct env *e, int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		if (stat(e, "webhooks", "pending") == 0)
			return;
		usleep(10000);
	}
	fail_msg("webhooks still pending after %d ms", ms);
}

/* Verifies a received webhook the way Herald's ingress does and parses it. */
static const char *hook_header(void *ctx, const char *name)
{
	struct hook *h = ctx;
	return strcasecmp(name, "X-Hub-Signature-256") == 0 ? h->sig : NULL;
}

static void check_and_parse(struct channel_account *a, struct hook *h, struct wh_parsed *p)
{
	char hex[65], want[80];
	const char *secret = strcmp(a->id, "wa1") == 0 ? SECRET1 : SECRET2;
	hr_hmac_sha256_hex(secret, strlen(secret), h->body, h->len, hex);
	snprintf(want, sizeof want, "sha256=%s", hex);
	assert_string_equal(h->sig, want);
	struct wh_request req = {
	    .method = "POST", .body = h->body, .body_len = h->len, .header = hook_header, .ctx = h};
	struct hr_err err = {0};
	assert_int_equal(a->ops->webhook_verify(a, &req, &err), 0);
	memset(p, 0, sizeof *p);
	if (a->ops->webhook_parse(a, h->body, h->len, p, &err))
		fail_msg("webhook_parse: %s", err.msg);
}

/* Every status received, in arrival order. */
struct seen {
	char wamid[HR_PROVIDER_ID_MAX];
	enum msg_status st;
	char code[HR_ERRCODE_MAX];
};

static size_t collect(struct env *e, struct seen *out, size_t max, size_t *posts)
{
	size_t n = 0;
	pthread_mutex_lock(&e->rv.lock);
	for (size_t i = 0; i < e->rv.n; i++) {
		struct wh_parsed p;
		assert_string_equal(e->rv.hooks[i].path, "/webhooks/whatsapp/wa1");
		check_and_parse(e->acct, &e->rv.hooks[i], &p);
		for (size_t k = 0; k < p.nstatuses && n < max; k++, n++) {
			hr_strlcpy(out[n].wamid, p.statuses[k].provider_id, sizeof out[n].wamid);
			out[n].st = p.statuses[k].status;
			hr_strlcpy(out[n].code, p.statuses[k].error_code, sizeof out[n].code);
		}
		wh_parsed_clear(&p);
	}
	if (posts)
		*posts = e->rv.n;
	pthread_mutex_unlock(&e->rv.lock);
	return n;
}

/* The statuses of one wamid, in arrival order, as a string like "SDR". */
static void order_of(const struct seen *s, size_t n, const char *wamid, char *out, size_t outsz)
{
	static const char letter[] = {
	    [MSG_SENT] = 'S', [MSG_DELIVERED] = 'D', [MSG_READ] = 'R', [MSG_FAILED] = 'F'};
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < outsz; i++)
		if (strcmp(s[i].wamid, wamid) == 0)
			out[k++] = letter[s[i].st];
	out[k] = '\0';
}

/* ---------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------- */

static void test_send_and_status_webhooks(void **state)
{
	(void)state;
	struct env *e = env_start(NULL);
	struct send_outcome o;
	json_t *j = send_text(e, "01JAAAAAAAAAAAAAAAAAAAAAA1", "+44 7911 123456", "Hello", &o);
	/* The real success shape. */
	assert_string_equal(json_string_value(json_object_get(j, "messaging_product")), "whatsapp");
	json_t *c0 = json_array_get(json_object_get(j, "contacts"), 0);
	assert_string_equal(json_string_value(json_object_get(c0, "input")), "+44 7911 123456");
	assert_string_equal(json_string_value(json_object_get(c0, "wa_id")), "447911123456");
	json_t *m0 = json_array_get(json_object_get(j, "messages"), 0);
	const char *wamid = json_string_value(json_object_get(m0, "id"));
	assert_non_null(wamid);
	assert_true(strncmp(wamid, "wamid.HBg", 9) == 0);
	assert_string_equal(json_string_value(json_object_get(m0, "message_status")), "accepted");
	assert_int_equal(o.cls, OUTCOME_OK);
	assert_string_equal(o.provider_id, wamid);

	assert_int_equal(recv_wait(&e->rv, 3, 5000), 3);
	wait_idle(e, 2000);
	struct seen s[8];
	size_t posts;
	size_t n = collect(e, s, 8, &posts);
	assert_int_equal(n, 3);
	assert_int_equal(posts, 3);
	char order[8];
	order_of(s, n, wamid, order, sizeof order);
	assert_string_equal(order, "SDR");

	/* Field by field: envelope, metadata, callback data, pricing only on sent/delivered. */
	for (size_t i = 0; i < 3; i++) {
		json_error_t je;
		json_t *b = json_loads(e->rv.hooks[i].body, 0, &je);
		assert_string_equal(json_string_value(json_object_get(b, "object")),
		                    "whatsapp_business_account");
		json_t *entry = json_array_get(json_object_get(b, "entry"), 0);
		json_t *change = json_array_get(json_object_get(entry, "changes"), 0);
		assert_string_equal(json_string_value(json_object_get(change, "field")),
		                    "messages");
		json_t *value = json_object_get(change, "value");
		assert_string_equal(json_string_value(json_object_get(
		                        json_object_get(value, "metadata"), "phone_number_id")),
		                    PNID);
		json_t *st = json_array_get(json_object_get(value, "statuses"), 0);
		assert_string_equal(json_string_value(json_object_get(st, "id")), wamid);
		assert_string_equal(json_string_value(json_object_get(st, "recipient_id")),
		                    "447911123456");
		assert_string_equal(
		    json_string_value(json_object_get(st, "biz_opaque_callback_data")),
		    "01JAAAAAAAAAAAAAAAAAAAAAA1");
		const char *status = json_string_value(json_object_get(st, "status"));
		json_t *conv = json_object_get(st, "conversation");
		if (strcmp(status, "read") == 0) {
			assert_null(conv);
			assert_null(json_object_get(st, "pricing"));
		} else {
			assert_non_null(json_object_get(conv, "id"));
			assert_string_equal(json_string_value(json_object_get(
			                        json_object_get(conv, "origin"), "type")),
			                    "service");
			assert_true(json_is_object(json_object_get(st, "pricing")));
			assert_int_equal(json_object_get(conv, "expiration_timestamp") != NULL,
			                 strcmp(status, "sent") == 0);
		}
		json_decref(b);
	}

	/* Counted once, by callback data. */
	long status;
	json_t *m = sim_get(e, "/sim/messages/01JAAAAAAAAAAAAAAAAAAAAAA1", &status);
	assert_int_equal(status, 200);
	assert_int_equal(json_integer_value(json_object_get(m, "count")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "wamids"), 0)),
	                    wamid);
	assert_string_equal(json_string_value(json_object_get(m, "to")), "+44 7911 123456");
	json_decref(m);
	json_decref(sim_get(e, "/sim/messages/nope", &status));
	assert_int_equal(status, 404);
	assert_int_equal(stat(e, "requests", NULL), 1);
	assert_int_equal(stat(e, "accepted", NULL), 1);
	assert_int_equal(stat_wait(e, "webhooks", "statuses", 3, 5000), 3);
	assert_int_equal(stat_wait(e, "webhooks", "posted", 3, 5000), 3);
	json_decref(j);

	/* A template send through the second account (keys under "config"). */
	struct resp r;
	json_decref(send_msg(e, e->acct2, "01JAAAAAAAAAAAAAAAAAAAAAA2", "447911123456",
	                     "{\"type\":\"template\",\"template\":{\"name\":\"otp\","
	                     "\"language\":\"en\",\"parameters\":[\"123456\"]}}",
	                     &o, &r));
	free(r.body);
	assert_int_equal(o.cls, OUTCOME_OK);
	assert_int_equal(recv_wait(&e->rv, 6, 5000), 6);
	pthread_mutex_lock(&e->rv.lock);
	for (size_t i = 3; i < 6; i++) {
		struct wh_parsed p;
		assert_string_equal(e->rv.hooks[i].path, "/webhooks/whatsapp/wa2");
		check_and_parse(e->acct2, &e->rv.hooks[i], &p);
		assert_int_equal(p.nstatuses, 1);
		assert_string_equal(p.statuses[0].provider_id, o.provider_id);
		wh_parsed_clear(&p);
	}
	pthread_mutex_unlock(&e->rv.lock);
	env_stop(e);
}

static void test_auth_and_invalid_bodies(void **state)
{
	(void)state;
	struct env *e = env_start(NULL);
	char url[128];
	snprintf(url, sizeof url, "%s/v21.0/%s/messages", e->base, PNID);
	const char *ok = "{\"messaging_product\":\"whatsapp\",\"to\":\"447911123456\","
	                 "\"type\":\"text\",\"text\":{\"body\":\"hi\"}}";
	struct {
		const char *auth;
		const char *path; /* NULL: url */
		const char *body;
		long status;
		int code;
		const char *says;
	} cases[] = {
	    {NULL, NULL, ok, 401, 190, "access token"},
	    {"Authorization: Bearer wrong", NULL, ok, 401, 190, "access token"},
	    {"Authorization: Bearer tok-2", NULL, ok, 400, 100, "does not exist"},
	    {"Authorization: Bearer tok-1", "/v21.0/999/messages", ok, 400, 100, "'999'"},
	    {"Authorization: Bearer tok-1", NULL, "{nope", 400, 100, "JSON"},
	    {"Authorization: Bearer tok-1", NULL, "{\"to\":\"447911123456\"}", 400, 100,
	     "messaging_product"},
	    {"Authorization: Bearer tok-1", NULL,
	     "{\"messaging_product\":\"whatsapp\",\"type\":\"text\",\"text\":{\"body\":\"x\"}}",
	     400, 100, "parameter to"},
	    {"Authorization: Bearer tok-1", NULL,
	     "{\"messaging_product\":\"whatsapp\",\"to\":\"447911123456\",\"type\":\"text\","
	     "\"text\":{}}",
	     400, 100, "text['body']"},
	    {"Authorization: Bearer tok-1", NULL,
	     "{\"messaging_product\":\"whatsapp\",\"to\":\"447911123456\",\"type\":\"template\","
	     "\"template\":{\"name\":\"otp\"}}",
	     400, 100, "template['language']['code']"},
	    {"Authorization: Bearer tok-1", NULL,
	     "{\"messaging_product\":\"whatsapp\",\"to\":\"447911123456\",\"type\":\"template\","
	     "\"template\":{\"language\":{\"code\":\"en\"}}}",
	     400, 100, "template['name']"},
	    {"Authorization: Bearer tok-1", NULL,
	     "{\"messaging_product\":\"whatsapp\",\"to\":\"447911123456\",\"type\":\"sticker\"}",
	     400, 100, "type"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
		if (cases[i].auth)
			h = curl_slist_append(h, cases[i].auth);
		char u[160];
		if (cases[i].path)
			snprintf(u, sizeof u, "%s%s", e->base, cases[i].path);
		struct resp r;
		json_t *j = http("POST", cases[i].path ? u : url, h, cases[i].body,
		                 strlen(cases[i].body), &r);
		curl_slist_free_all(h);
		if (r.status != cases[i].status)
			fail_msg("case %zu: status %ld, want %ld (%s)", i, r.status,
			         cases[i].status, r.body);
		json_t *err = json_object_get(j, "error");
		assert_int_equal(json_integer_value(json_object_get(err, "code")), cases[i].code);
		const char *msg = json_string_value(json_object_get(err, "message"));
		if (!msg || !strstr(msg, cases[i].says))
			fail_msg("case %zu: message '%s' lacks '%s'", i, msg, cases[i].says);
		assert_non_null(json_object_get(err, "fbtrace_id"));
		json_decref(j);
		free(r.body);
	}
	assert_int_equal(stat(e, "requests", NULL), 11);
	assert_int_equal(stat(e, "accepted", NULL), 0);
	assert_int_equal(stat(e, "rejected", "auth"), 2);
	assert_int_equal(stat(e, "rejected", "invalid"), 9);
	/* Nothing rejected is announced by webhook. */
	usleep(100000);
	assert_int_equal(e->rv.n, 0);
	env_stop(e);
}

static void test_error_knobs(void **state)
{
	(void)state;
	struct env *e = env_start(NULL);
	struct send_outcome o;
	struct resp r;

	set_knobs(e, "{\"rate_429\":1}");
	json_t *j = send_msg(e, e->acct, "01JBBBBBBBBBBBBBBBBBBBBBB1", "447911123456",
	                     "{\"type\":\"text\",\"text\":\"x\"}", &o, &r);
	assert_int_equal(r.status, 429);
	assert_string_equal(r.retry_after, "1");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "code")),
	                 130429);
	assert_int_equal(o.cls, OUTCOME_RATE_LIMITED);
	assert_true(o.retry_after_us == 1000000);
	json_decref(j);
	free(r.body);

	set_knobs(e, "{\"rate_429\":0,\"rate_5xx\":1}");
	json_decref(send_text(e, "01JBBBBBBBBBBBBBBBBBBBBBB2", "447911123456", "x", &o));
	assert_int_equal(o.cls, OUTCOME_TRANSIENT);
	assert_string_equal(o.error_code, "131000");

	set_knobs(e, "{\"rate_5xx\":0,\"fail_rate\":1}");
	json_decref(send_text(e, "01JBBBBBBBBBBBBBBBBBBBBBB3", "447911123456", "x", &o));
	assert_int_equal(o.cls, OUTCOME_PERMANENT);
	assert_string_equal(o.error_code, "131026");

	set_knobs(e, "{\"fail_rate\":0,\"fail_recipients\":[\"+44 7911 000000\"]}");
	json_decref(send_text(e, "01JBBBBBBBBBBBBBBBBBBBBBB4", "447911000000", "x", &o));
	assert_int_equal(o.cls, OUTCOME_PERMANENT);
	assert_string_equal(o.error_code, "131026");
	json_decref(send_text(e, "01JBBBBBBBBBBBBBBBBBBBBBB5", "447911000001", "x", &o));
	assert_int_equal(o.cls, OUTCOME_OK);

	/* Half the sends rejected with 429: roughly half, reproducibly. */
	set_knobs(e, "{\"rate_429\":0.5,\"seed\":11}");
	int limited = 0;
	char fate[41];
	for (int i = 0; i < 40; i++) {
		char id[32], text[16];
		snprintf(id, sizeof id, "01JCCCCCCCCCCCCCCCCCCCCC%02d", i);
		snprintf(text, sizeof text, "m%d", i);
		json_decref(send_text(e, id, "447911123456", text, &o));
		fate[i] = o.cls == OUTCOME_RATE_LIMITED ? 'L' : 'o';
		limited += o.cls == OUTCOME_RATE_LIMITED;
	}
	fate[40] = '\0';
	assert_true(limited >= 8 && limited <= 32);

	long status;
	json_t *bad = sim_post(e, "/sim/config", "{\"rate_429\":1.5}", &status);
	assert_int_equal(status, 400);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(bad, "error"), "field")), "rate_429");
	json_decref(bad);
	bad = sim_post(e, "/sim/config", "{\"no_such_knob\":1}", &status);
	assert_int_equal(status, 400);
	json_decref(bad);
	json_t *cfg = sim_get(e, "/sim/config", &status);
	assert_true(json_number_value(json_object_get(cfg, "rate_429")) == 0.5);
	assert_int_equal(json_integer_value(json_object_get(cfg, "seed")), 11);
	json_decref(cfg);

	assert_int_equal(stat(e, "rejected", "429"), 1 + limited);
	assert_int_equal(stat(e, "rejected", "5xx"), 1);
	assert_int_equal(stat(e, "rejected", "permanent"), 2);
	assert_int_equal(stat(e, "accepted", NULL), 1 + 40 - limited);

	/* Same seed, same bodies, counters reset: the same fates. */
	json_decref(sim_post(e, "/sim/reset", "{}", NULL));
	for (int i = 0; i < 40; i++) {
		char id[32], text[16];
		snprintf(id, sizeof id, "01JCCCCCCCCCCCCCCCCCCCCC%02d", i);
		snprintf(text, sizeof text, "m%d", i);
		json_decref(send_text(e, id, "447911123456", text, &o));
		if ((o.cls == OUTCOME_RATE_LIMITED ? 'L' : 'o') != fate[i])
			fail_msg("send %d: fate differs with the same seed", i);
	}
	env_stop(e);
}

static void test_reorder_and_dup(void **state)
{
	(void)state;
	struct env *e = env_start("    reorder_rate: 1\n    dup_rate: 1\n    seed: 5\n");
	char wamids[3][HR_PROVIDER_ID_MAX];
	for (int i = 0; i < 3; i++) {
		struct send_outcome o;
		char id[32];
		snprintf(id, sizeof id, "01JDDDDDDDDDDDDDDDDDDDDDD%d", i);
		json_decref(send_text(e, id, "447911123456", "hello", &o));
		assert_int_equal(o.cls, OUTCOME_OK);
		hr_strlcpy(wamids[i], o.provider_id, sizeof wamids[i]);
	}
	assert_int_equal(recv_wait(&e->rv, 18, 5000), 18);
	wait_idle(e, 2000);
	struct seen s[32];
	size_t n = collect(e, s, 32, NULL);
	assert_int_equal(n, 18);
	for (int i = 0; i < 3; i++) {
		char order[16];
		order_of(s, n, wamids[i], order, sizeof order);
		/* Each status twice; read arrives before delivered. */
		assert_string_equal(order, "SSRRDD");
	}
	assert_int_equal(stat_wait(e, "webhooks", "statuses", 18, 5000), 18);
	env_stop(e);
}

static void test_partial_reorder_reproducible(void **state)
{
	(void)state;
	struct env *e = env_start("    reorder_rate: 0.5\n    seed: 1234\n    sent_delay_ms: 5\n"
	                          "    delivered_delay_ms: 15\n    read_delay_ms: 40\n");
	char first[17] = "", second[17] = "";
	for (int round = 0; round < 2; round++) {
		char wamids[16][HR_PROVIDER_ID_MAX];
		for (int i = 0; i < 16; i++) {
			struct send_outcome o;
			char id[32], text[16];
			snprintf(id, sizeof id, "01JEEEEEEEEEEEEEEEEEEEEE%02d", i);
			snprintf(text, sizeof text, "t%d", i);
			json_decref(send_text(e, id, "447911123456", text, &o));
			assert_int_equal(o.cls, OUTCOME_OK);
			hr_strlcpy(wamids[i], o.provider_id, sizeof wamids[i]);
		}
		assert_int_equal(recv_wait(&e->rv, 48, 5000), 48);
		wait_idle(e, 2000);
		struct seen s[64];
		size_t n = collect(e, s, 64, NULL);
		char *out = round ? second : first;
		for (int i = 0; i < 16; i++) {
			char order[8];
			order_of(s, n, wamids[i], order, sizeof order);
			if (strcmp(order, "SDR") != 0 && strcmp(order, "SRD") != 0)
				fail_msg("round %d message %d: order %s", round, i, order);
			out[i] = order[1];
		}
		out[16] = '\0';
		recv_clear(&e->rv);
		json_decref(sim_post(e, "/sim/reset", "{}", NULL));
	}
	assert_string_equal(first, second);
	assert_non_null(strchr(first, 'R'));
	assert_non_null(strchr(first, 'D'));
	env_stop(e);
}

static void test_failed_after_sent_and_no_read(void **state)
{
	(void)state;
	struct env *e = env_start("    failed_after_sent_rate: 1\n");
	struct send_outcome o;
	json_decref(send_text(e, "01JFFFFFFFFFFFFFFFFFFFFFF1", "447911123456", "x", &o));
	assert_int_equal(o.cls, OUTCOME_OK);
	char wamid[HR_PROVIDER_ID_MAX];
	hr_strlcpy(wamid, o.provider_id, sizeof wamid);
	assert_int_equal(recv_wait(&e->rv, 2, 5000), 2);
	wait_idle(e, 2000);
	struct seen s[8];
	size_t n = collect(e, s, 8, NULL);
	char order[8];
	order_of(s, n, wamid, order, sizeof order);
	assert_string_equal(order, "SF");
	assert_string_equal(s[1].code, "131026");
	json_error_t je;
	json_t *b = json_loads(e->rv.hooks[1].body, 0, &je);
	json_t *st = json_array_get(
	    json_object_get(
	        json_object_get(
	            json_array_get(
	                json_object_get(json_array_get(json_object_get(b, "entry"), 0), "changes"),
	                0),
	            "value"),
	        "statuses"),
	    0);
	json_t *err0 = json_array_get(json_object_get(st, "errors"), 0);
	assert_int_equal(json_integer_value(json_object_get(err0, "code")), 131026);
	assert_non_null(json_object_get(json_object_get(err0, "error_data"), "details"));
	json_decref(b);

	recv_clear(&e->rv);
	set_knobs(e, "{\"failed_after_sent_rate\":0,\"read_rate\":0}");
	json_decref(send_text(e, "01JFFFFFFFFFFFFFFFFFFFFFF2", "447911123456", "x", &o));
	hr_strlcpy(wamid, o.provider_id, sizeof wamid);
	assert_int_equal(recv_wait(&e->rv, 2, 5000), 2);
	wait_idle(e, 2000);
	usleep(60000); /* a read would be due by now */
	n = collect(e, s, 8, NULL);
	order_of(s, n, wamid, order, sizeof order);
	assert_string_equal(order, "SD");
	env_stop(e);
}

static void test_webhook_batch(void **state)
{
	(void)state;
	struct env *e = env_start("    webhook_batch: 50\n    sent_delay_ms: 40\n"
	                          "    delivered_delay_ms: 80\n    read_delay_ms: 120\n");
	for (int i = 0; i < 10; i++) {
		struct send_outcome o;
		char id[32];
		snprintf(id, sizeof id, "01JGGGGGGGGGGGGGGGGGGGGG%02d", i);
		json_decref(send_text(e, id, "447911123456", "batch", &o));
		assert_int_equal(o.cls, OUTCOME_OK);
	}
	usleep(150000);
	wait_idle(e, 3000);
	struct seen s[64];
	size_t posts;
	size_t n = collect(e, s, 64, &posts);
	assert_int_equal(n, 30);
	assert_true(posts < 30);
	assert_int_equal(stat(e, "webhooks", "posted"), (json_int_t)posts);
	assert_int_equal(stat(e, "webhooks", "statuses"), 30);
	env_stop(e);
}

static void test_counts_and_duplicates(void **state)
{
	(void)state;
	struct env *e = env_start(NULL);
	struct send_outcome o;
	char w1[HR_PROVIDER_ID_MAX];
	json_decref(send_text(e, "01JHHHHHHHHHHHHHHHHHHHHHH1", "447911123456", "same", &o));
	hr_strlcpy(w1, o.provider_id, sizeof w1);
	json_decref(send_text(e, "01JHHHHHHHHHHHHHHHHHHHHHH1", "447911123456", "same", &o));
	assert_string_not_equal(w1, o.provider_id);
	char w2[HR_PROVIDER_ID_MAX];
	hr_strlcpy(w2, o.provider_id, sizeof w2);
	json_decref(send_text(e, "01JHHHHHHHHHHHHHHHHHHHHHH2", "447911123456", "other", &o));
	assert_int_equal(stat(e, "accepted", NULL), 3);
	assert_int_equal(stat(e, "unique_messages", NULL), 2);
	assert_int_equal(stat(e, "duplicates", NULL), 1);
	assert_int_equal(stat(e, "unique_bodies", NULL), 2);
	assert_int_equal(stat(e, "body_duplicates", NULL), 1);
	long status;
	json_t *m = sim_get(e, "/sim/messages/01JHHHHHHHHHHHHHHHHHHHHHH1", &status);
	assert_int_equal(json_integer_value(json_object_get(m, "count")), 2);
	json_t *w = json_object_get(m, "wamids");
	assert_int_equal(json_array_size(w), 2);
	assert_string_equal(json_string_value(json_array_get(w, 0)), w1);
	assert_string_equal(json_string_value(json_array_get(w, 1)), w2);
	json_decref(m);
	json_t *d = sim_get(e, "/sim/duplicates", &status);
	assert_int_equal(status, 200);
	assert_int_equal(json_integer_value(json_object_get(d, "count")), 1);
	json_t *msgs = json_object_get(d, "messages");
	assert_int_equal(json_object_size(msgs), 1);
	assert_int_equal(json_integer_value(json_object_get(msgs, "01JHHHHHHHHHHHHHHHHHHHHHH1")),
	                 2);
	json_t *b0 = json_array_get(json_object_get(d, "bodies"), 0);
	assert_int_equal(json_integer_value(json_object_get(b0, "count")), 2);
	assert_string_equal(json_string_value(json_object_get(b0, "to")), "447911123456");
	assert_int_equal(strlen(json_string_value(json_object_get(b0, "sha256"))), 64);
	json_decref(d);

	wait_idle(e, 3000);
	json_decref(sim_post(e, "/sim/reset", "{}", &status));
	assert_int_equal(status, 200);
	assert_int_equal(stat(e, "accepted", NULL), 0);
	assert_int_equal(stat(e, "requests", NULL), 0);
	assert_int_equal(stat(e, "duplicates", NULL), 0);
	assert_int_equal(stat(e, "webhooks", "statuses"), 0);
	json_decref(sim_get(e, "/sim/messages/01JHHHHHHHHHHHHHHHHHHHHHH1", &status));
	assert_int_equal(status, 404);
	d = sim_get(e, "/sim/duplicates", NULL);
	assert_int_equal(json_integer_value(json_object_get(d, "count")), 0);
	json_decref(d);
	env_stop(e);
}

static void test_inbound(void **state)
{
	(void)state;
	struct env *e = env_start(NULL);
	long status;
	json_t *j =
	    sim_post(e, "/sim/whatsapp/inbound",
	             "{\"account\":\"wa1\",\"from\":\"+44 7911 123456\",\"text\":\"hi\"}", &status);
	assert_int_equal(status, 202);
	char id1[HR_PROVIDER_ID_MAX];
	hr_strlcpy(id1, json_string_value(json_object_get(j, "id")), sizeof id1);
	json_decref(j);
	j = sim_post(
	    e, "/sim/whatsapp/inbound",
	    "{\"account\":\"wa2\",\"from\":\"447911123456\",\"button_payload\":\"PAY_NOW\","
	    "\"button_text\":\"Pay now\",\"context_id\":\"wamid.X\"}",
	    &status);
	assert_int_equal(status, 202);
	json_decref(j);
	assert_int_equal(recv_wait(&e->rv, 2, 5000), 2);
	j = sim_post(e, "/sim/whatsapp/inbound",
	             "{\"account\":\"wa1\",\"from\":\"447911123456\",\"reply_id\":\"yes\","
	             "\"reply_title\":\"Yes\",\"context_id\":\"wamid.Y\"}",
	             &status);
	assert_int_equal(status, 202);
	json_decref(j);
	assert_int_equal(recv_wait(&e->rv, 3, 5000), 3);

	pthread_mutex_lock(&e->rv.lock);
	struct wh_parsed p;
	bool first_is_wa1 = strcmp(e->rv.hooks[0].path, "/webhooks/whatsapp/wa1") == 0;
	struct hook *h1 = &e->rv.hooks[first_is_wa1 ? 0 : 1];
	struct hook *h2 = &e->rv.hooks[first_is_wa1 ? 1 : 0];
	assert_string_equal(h2->path, "/webhooks/whatsapp/wa2");
	check_and_parse(e->acct, h1, &p);
	assert_int_equal(p.ninbound, 1);
	assert_int_equal(p.nstatuses, 0);
	assert_string_equal(p.inbound[0].kind, "text");
	assert_string_equal(p.inbound[0].text, "hi");
	assert_string_equal(p.inbound[0].from, "447911123456");
	assert_string_equal(p.inbound[0].provider_msg_id, id1);
	assert_string_equal(p.inbound[0].context_id, "");
	wh_parsed_clear(&p);
	check_and_parse(e->acct2, h2, &p);
	assert_int_equal(p.ninbound, 1);
	assert_string_equal(p.inbound[0].kind, "button");
	assert_string_equal(p.inbound[0].payload, "PAY_NOW");
	assert_string_equal(p.inbound[0].text, "Pay now");
	assert_string_equal(p.inbound[0].context_id, "wamid.X");
	wh_parsed_clear(&p);
	check_and_parse(e->acct, &e->rv.hooks[2], &p);
	assert_string_equal(p.inbound[0].kind, "interactive");
	assert_string_equal(p.inbound[0].payload, "yes");
	assert_string_equal(p.inbound[0].text, "Yes");
	assert_string_equal(p.inbound[0].context_id, "wamid.Y");
	wh_parsed_clear(&p);
	/* The contact block Meta sends with messages. */
	json_error_t je;
	json_t *b = json_loads(h1->body, 0, &je);
	json_t *value = json_object_get(
	    json_array_get(
	        json_object_get(json_array_get(json_object_get(b, "entry"), 0), "changes"), 0),
	    "value");
	json_t *contact = json_array_get(json_object_get(value, "contacts"), 0);
	assert_string_equal(json_string_value(json_object_get(contact, "wa_id")), "447911123456");
	json_decref(b);
	pthread_mutex_unlock(&e->rv.lock);

	struct {
		const char *body;
		long status;
	} bad[] = {
	    {"{\"account\":\"nope\",\"from\":\"447911123456\",\"text\":\"x\"}", 404},
	    {"{\"from\":\"447911123456\",\"text\":\"x\"}", 400},
	    {"{\"account\":\"wa1\",\"text\":\"x\"}", 400},
	    {"{\"account\":\"wa1\",\"from\":\"447911123456\"}", 400},
	    {"{\"account\":\"wa1\",\"from\":\"447911123456\",\"text\":\"x\","
	     "\"button_payload\":\"P\"}",
	     400},
	    {"not json", 400},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_decref(sim_post(e, "/sim/whatsapp/inbound", bad[i].body, &status));
		if (status != bad[i].status)
			fail_msg("bad case %zu: %ld", i, status);
	}
	assert_int_equal(stat_wait(e, "webhooks", "inbound", 3, 5000), 3);
	env_stop(e);
}

static void test_webhook_retry_and_give_up(void **state)
{
	(void)state;
	struct env *e = env_start("    read_rate: 0\n");
	pthread_mutex_lock(&e->rv.lock);
	e->rv.fail_next = 2;
	pthread_mutex_unlock(&e->rv.lock);
	struct send_outcome o;
	json_decref(send_text(e, "01JJJJJJJJJJJJJJJJJJJJJJJ1", "447911123456", "x", &o));
	assert_int_equal(recv_wait(&e->rv, 2, 8000), 2);
	wait_idle(e, 8000);
	assert_int_equal(stat(e, "webhooks", "failed_attempts"), 2);
	assert_int_equal(stat(e, "webhooks", "statuses"), 2);
	assert_int_equal(stat(e, "webhooks", "dropped"), 0);
	assert_int_equal(e->rv.attempts, 4);
	struct seen s[8];
	size_t n = collect(e, s, 8, NULL);
	assert_int_equal(n, 2);

	/* No retry budget: given up after the first failure. */
	set_knobs(e, "{\"webhook_retry_s\":0}");
	pthread_mutex_lock(&e->rv.lock);
	e->rv.fail_next = 100;
	pthread_mutex_unlock(&e->rv.lock);
	json_decref(send_text(e, "01JJJJJJJJJJJJJJJJJJJJJJJ2", "447911123456", "x", &o));
	usleep(60000);
	wait_idle(e, 3000);
	assert_int_equal(stat(e, "webhooks", "dropped"), 2);
	assert_int_equal(stat(e, "webhooks", "failed_attempts"), 4);
	env_stop(e);
}

struct slow_call {
	struct env *e;
	long status;
	int64_t took_us;
};

static void *slow_send(void *arg)
{
	struct slow_call *c = arg;
	struct send_outcome o;
	struct resp r;
	int64_t t0 = hr_mono_us();
	json_decref(send_msg(c->e, c->e->acct, "01JKKKKKKKKKKKKKKKKKKKKKK2", "447911123456",
	                     "{\"type\":\"text\",\"text\":\"slow\"}", &o, &r));
	c->took_us = hr_mono_us() - t0;
	c->status = r.status;
	free(r.body);
	return NULL;
}

static void test_latency_and_stop_while_suspended(void **state)
{
	(void)state;
	struct env *e = env_start("    latency_ms: 300\n");
	struct send_outcome o;
	int64_t t0 = hr_mono_us();
	json_decref(send_text(e, "01JKKKKKKKKKKKKKKKKKKKKKK1", "447911123456", "x", &o));
	int64_t took = hr_mono_us() - t0;
	assert_int_equal(o.cls, OUTCOME_OK);
	assert_true(took >= 290000);
	/* Status webhooks count from the answer, not from the request. */
	assert_int_equal(recv_wait(&e->rv, 1, 5000), 1);

	set_knobs(e, "{\"latency_ms\":10000}");
	struct slow_call call = {.e = e};
	pthread_t th;
	pthread_create(&th, NULL, slow_send, &call);
	usleep(300000); /* the request is now suspended in the sim */
	int64_t s0 = hr_mono_us();
	sim_stop(e->sim);
	e->sim = NULL;
	pthread_join(th, NULL);
	assert_true(hr_mono_us() - s0 < 3000000);
	assert_int_equal(call.status, 200);
	assert_true(call.took_us < 5000000);
	env_stop(e);
}

/* Finds the index of the first POST carrying an inbound message; -1 if none. */
static int first_inbound_post(struct env *e, struct wh_parsed *out)
{
	int found = -1;
	pthread_mutex_lock(&e->rv.lock);
	for (size_t i = 0; i < e->rv.n && found < 0; i++) {
		struct wh_parsed p;
		check_and_parse(e->acct, &e->rv.hooks[i], &p);
		if (p.ninbound) {
			found = (int)i;
			*out = p;
		} else {
			wh_parsed_clear(&p);
		}
	}
	pthread_mutex_unlock(&e->rv.lock);
	return found;
}

/* The index of the POST carrying wamid's "read"; -1 if none. */
static int read_post(struct env *e, const char *wamid)
{
	int found = -1;
	pthread_mutex_lock(&e->rv.lock);
	for (size_t i = 0; i < e->rv.n && found < 0; i++) {
		struct wh_parsed p;
		check_and_parse(e->acct, &e->rv.hooks[i], &p);
		for (size_t k = 0; k < p.nstatuses; k++)
			if (p.statuses[k].status == MSG_READ &&
			    strcmp(p.statuses[k].provider_id, wamid) == 0)
				found = (int)i;
		wh_parsed_clear(&p);
	}
	pthread_mutex_unlock(&e->rv.lock);
	return found;
}

/*
 * sim.whatsapp.recipients: a scripted error refuses every send; a scripted
 * press or reply makes the recipient read (even with read_rate 0) and then,
 * after the POST carrying "read" is done, answer with context = the message.
 */
static void test_scripted_recipients(void **state)
{
	(void)state;
	struct env *e =
	    env_start("    read_rate: 0\n"
	              "    recipients:\n"
	              "      \"+44 7911 000001\": {press: \"no\"}\n"
	              "      \"447911000002\": {reply: \"ok, thanks\", press: PAY_NOW}\n"
	              "      \"447911000003\": {error: 131047}\n");
	struct send_outcome o;
	struct resp r;

	/* The scripted error, every time, classified as Herald classifies it. */
	for (int i = 0; i < 2; i++) {
		json_t *j = send_msg(e, e->acct, "01JCCCCCCCCCCCCCCCCCCCCCC1", "447911000003",
		                     "{\"type\":\"text\",\"text\":\"hi\"}", &o, &r);
		assert_int_equal(r.status, 400);
		json_t *err = json_object_get(j, "error");
		assert_int_equal(json_integer_value(json_object_get(err, "code")), 131047);
		assert_non_null(
		    strstr(json_string_value(json_object_get(err, "message")), "Re-engagement"));
		assert_int_equal(o.cls, OUTCOME_PERMANENT);
		assert_string_equal(o.error_code, "131047");
		json_decref(j);
		free(r.body);
	}
	assert_int_equal(stat(e, "rejected", "permanent"), 2);

	/* An interactive message: the press picks the button named "no". */
	json_t *j = send_msg(e, e->acct, "01JCCCCCCCCCCCCCCCCCCCCCC2", "447911000001",
	                     "{\"type\":\"text\",\"text\":\"Pay?\",\"buttons\":[{\"id\":\"yes\","
	                     "\"title\":\"Yes\"},{\"id\":\"no\",\"title\":\"No\"}]}",
	                     &o, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(o.cls, OUTCOME_OK);
	char wamid1[HR_PROVIDER_ID_MAX];
	hr_strlcpy(wamid1, o.provider_id, sizeof wamid1);
	json_decref(j);
	free(r.body);
	assert_true(recv_wait(&e->rv, 4, 5000) >= 4); /* sent, delivered, read, the press */
	wait_idle(e, 5000);
	struct wh_parsed p;
	int at = first_inbound_post(e, &p);
	assert_true(at >= 0);
	assert_true(at > read_post(e, wamid1)); /* read first, then the press */
	assert_true(read_post(e, wamid1) >= 0);
	assert_int_equal(p.ninbound, 1);
	assert_string_equal(p.inbound[0].kind, "interactive");
	assert_string_equal(p.inbound[0].payload, "no");
	assert_string_equal(p.inbound[0].text, "No");
	assert_string_equal(p.inbound[0].context_id, wamid1);
	assert_string_equal(p.inbound[0].from, "447911000001");
	wh_parsed_clear(&p);
	recv_clear(&e->rv);

	/* A template: a text reply and the quick-reply press, in one POST. */
	j = send_msg(e, e->acct, "01JCCCCCCCCCCCCCCCCCCCCCC3", "447911000002",
	             "{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\","
	             "\"language\":\"en_GB\",\"parameters\":[\"Ana\"],\"buttons\":[{\"index\":0,"
	             "\"payload\":\"PAY_NOW\"}]}}",
	             &o, &r);
	assert_int_equal(r.status, 200);
	char wamid2[HR_PROVIDER_ID_MAX];
	hr_strlcpy(wamid2, o.provider_id, sizeof wamid2);
	json_decref(j);
	free(r.body);
	assert_true(recv_wait(&e->rv, 4, 5000) >= 4);
	wait_idle(e, 5000);
	at = first_inbound_post(e, &p);
	assert_true(at > read_post(e, wamid2) && read_post(e, wamid2) >= 0);
	assert_int_equal(p.ninbound, 2);
	assert_string_equal(p.inbound[0].kind, "text");
	assert_string_equal(p.inbound[0].text, "ok, thanks");
	assert_string_equal(p.inbound[0].context_id, wamid2);
	assert_string_equal(p.inbound[1].kind, "button");
	assert_string_equal(p.inbound[1].payload, "PAY_NOW");
	assert_string_equal(p.inbound[1].context_id, wamid2);
	assert_string_not_equal(p.inbound[0].provider_msg_id, p.inbound[1].provider_msg_id);
	wh_parsed_clear(&p);
	recv_clear(&e->rv);

	/* A plain text has no button to press: read, and nothing more. */
	j = send_text(e, "01JCCCCCCCCCCCCCCCCCCCCCC4", "447911000001", "plain", &o);
	json_decref(j);
	assert_true(recv_wait(&e->rv, 3, 5000) >= 3);
	wait_idle(e, 5000);
	usleep(100000);
	assert_true(read_post(e, o.provider_id) >= 0);
	assert_int_equal(first_inbound_post(e, &p), -1);
	assert_int_equal(e->rv.n, 3);
	recv_clear(&e->rv);

	/* /sim/config shows the scripts and can drop them. */
	json_t *cfg = sim_get(e, "/sim/config", NULL);
	json_t *rs = json_object_get(cfg, "recipients");
	assert_int_equal(json_object_size(rs), 3);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(rs, "447911000003"), "error")),
	    131047);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(rs, "447911000001"), "press")), "no");
	json_decref(cfg);
	long status;
	j = sim_post(e, "/sim/config", "{\"recipients\":{\"447911000003\":{\"bogus\":1}}}",
	             &status);
	assert_int_equal(status, 400);
	json_decref(j);
	set_knobs(e, "{\"recipients\":null}");
	j = send_text(e, "01JCCCCCCCCCCCCCCCCCCCCCC5", "447911000003", "now?", &o);
	assert_int_equal(o.cls, OUTCOME_OK);
	json_decref(j);
	env_stop(e);
}

static void test_config_errors_and_port_file(void **state)
{
	(void)state;
	struct {
		const char *yaml;
		const char *field;
	} cases[] = {
	    {"sim:\n  whatsapp:\n    fail_rate: 2\n", "sim.whatsapp.fail_rate"},
	    {"sim:\n  whatsapp:\n    bogus: 1\n", "sim.whatsapp.bogus"},
	    {"sim:\n  whatsapp:\n    webhook_batch: 0\n", "sim.whatsapp.webhook_batch"},
	    {"sim:\n  webhook_retry_s: -1\n", "sim.webhook_retry_s"},
	    {"sim:\n  whatsapp:\n    recipients: [1]\n", "sim.whatsapp.recipients"},
	    {"sim:\n  whatsapp:\n    recipients:\n      abc: {reply: hi}\n",
	     "sim.whatsapp.recipients"},
	    {"sim:\n  whatsapp:\n    recipients:\n      \"+44 7911 000001\": 5\n",
	     "sim.whatsapp.recipients"},
	    {"sim:\n  whatsapp:\n    recipients:\n      \"+44 7911 000001\": {error: x}\n",
	     "sim.whatsapp.recipients.447911000001.error"},
	    {"sim:\n  whatsapp:\n    recipients:\n      \"447911000001\": {error: 0}\n",
	     "sim.whatsapp.recipients.447911000001.error"},
	    {"sim:\n  whatsapp:\n    recipients:\n      \"447911000001\": {reply: \"\"}\n",
	     "sim.whatsapp.recipients.447911000001.reply"},
	    {"sim:\n  whatsapp:\n    recipients:\n      \"447911000001\": {shout: hi}\n",
	     "sim.whatsapp.recipients.447911000001.shout"},
	    {"sim:\n  listen: nonsense\n", "sim.listen"},
	    {"sim:\n  listen: localhost:0\n", "sim.listen"},
	    {"tenants:\n  - id: t\n    accounts:\n      - id: a\n        channel: whatsapp\n"
	     "        phone_number_id: 1\n        access_token: t\n",
	     "tenants[0].accounts[0].app_secret"},
	    {"tenants:\n  - id: t\n    accounts:\n      - id: a\n        channel: whatsapp\n"
	     "        access_token: t\n        app_secret: s\n",
	     "tenants[0].accounts[0].phone_number_id"},
	    {"tenants:\n  - id: t\n    accounts:\n      - id: a\n        channel: whatsapp\n"
	     "        phone_number_id: 1\n        access_token: env:SIM_TEST_UNSET_VAR\n"
	     "        app_secret: s\n",
	     "tenants[0].accounts[0].access_token"},
	    {"tenants:\n  - id: t\n    accounts:\n      - id: a\n        channel: whatsapp\n"
	     "        phone_number_id: 1\n        access_token: t\n        app_secret: s\n"
	     "      - id: b\n        channel: whatsapp\n"
	     "        phone_number_id: 1\n        access_token: t\n        app_secret: s\n",
	     "tenants[0].accounts[1]"},
	};
	unsetenv("SIM_TEST_UNSET_VAR");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err = {0};
		json_t *cfg = hr_config_parse(cases[i].yaml, strlen(cases[i].yaml), &err);
		assert_non_null(cfg);
		struct sim *s = NULL;
		struct sim_overrides o = {
		    .listen = strstr(cases[i].yaml, "listen") ? NULL : "127.0.0.1:0"};
		int rc = sim_start(cfg, &o, &s, &err);
		json_decref(cfg);
		if (rc != HR_EINVAL)
			fail_msg("case %zu: rc %d", i, rc);
		assert_null(s);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
	}

	char dir[] = "/tmp/test_sim_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof path, "%s/port", dir);
	json_t *cfg = json_object();
	struct sim_overrides o = {
	    .listen = "127.0.0.1:0", .port_file = path, .herald_url = "http://127.0.0.1:1"};
	struct sim *s = NULL;
	struct hr_err err = {0};
	assert_int_equal(sim_start(cfg, &o, &s, &err), 0);
	json_decref(cfg);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int port = 0;
	assert_int_equal(fscanf(f, "%d", &port), 1);
	fclose(f);
	assert_int_equal(port, sim_port(s));
	assert_true(port > 0);
	sim_stop(s);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_send_and_status_webhooks),
	    cmocka_unit_test(test_auth_and_invalid_bodies),
	    cmocka_unit_test(test_error_knobs),
	    cmocka_unit_test(test_reorder_and_dup),
	    cmocka_unit_test(test_partial_reorder_reproducible),
	    cmocka_unit_test(test_failed_after_sent_and_no_read),
	    cmocka_unit_test(test_webhook_batch),
	    cmocka_unit_test(test_counts_and_duplicates),
	    cmocka_unit_test(test_inbound),
	    cmocka_unit_test(test_webhook_retry_and_give_up),
	    cmocka_unit_test(test_latency_and_stop_while_suspended),
	    cmocka_unit_test(test_scripted_recipients),
	    cmocka_unit_test(test_config_errors_and_port_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
