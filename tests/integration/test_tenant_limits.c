/*
 * test_tenant_limits.c - tenant limits on a real `herald serve` (README
 * "Limits"): a tenant over its request rate gets exactly its burst of 2xx,
 * then 429 with Retry-After and a JSON error naming the tenant, while
 * another tenant, unauthenticated callers and webhooks are unaffected, and
 * an operator's change applies at once; a credential over its own rate
 * likewise, its siblings unaffected; the daily message cap exact across
 * single sends, JSON batches and a restart; the cap on campaigns in
 * flight. Each test has its own server (and on PostgreSQL its own
 * database).
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

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define BETA_KEY "hk_other_0123456789abcdef" /* tenant "other" (harness.c) */
#define OPERATOR_KEY "op-limits-0123456789abcdef0123456789abcdef"

static struct world W;

/* ---- HTTP with the response's Retry-After ---- */

struct lresp {
	long status;
	json_t *json;
	char *body;
	char retry_after[32]; /* "" when absent */
};

struct sink {
	char *p;
	size_t n;
};

static size_t on_body(char *d, size_t sz, size_t nm, void *arg)
{
	struct sink *s = arg;
	size_t k = sz * nm;
	char *p = realloc(s->p, s->n + k + 1);
	if (!p)
		return 0;
	memcpy(p + s->n, d, k);
	s->p = p;
	s->n += k;
	s->p[s->n] = '\0';
	return k;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *arg)
{
	char *ra = arg;
	size_t k = sz * nm;
	if (k > 12 && strncasecmp(d, "Retry-After:", 12) == 0) {
		const char *v = d + 12;
		while (*v == ' ')
			v++;
		size_t n = strcspn(v, "\r\n");
		if (n >= 32)
			n = 31;
		memcpy(ra, v, n);
		ra[n] = '\0';
	}
	return k;
}

static struct lresp call(const char *method, const char *path, const char *key, const char *body)
{
	struct lresp r = {0};
	struct sink s = {0};
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[512], auth[256];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	if (key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r.retry_after);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.body = s.p ? s.p : strdup("");
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

static void lresp_free(struct lresp *r)
{
	json_decref(r->json);
	free(r->body);
}

static const char *err_field(const struct lresp *r, const char *name)
{
	const char *v = json_string_value(json_object_get(json_object_get(r->json, "error"), name));
	return v ? v : "";
}

/* The operator's POST, which must answer `want`. */
static void op_post(const char *path, const char *body, long want)
{
	struct lresp r = call("POST", path, OPERATOR_KEY, body);
	if (r.status != want)
		fail_msg("POST %s: %ld %s (want %ld)", path, r.status, r.body, want);
	lresp_free(&r);
}

/* A new key of acme with every scope (its secret in out). */
static void make_key(char *out, size_t size)
{
	struct lresp r = call("POST", "/v1/tenants/acme/keys", OPERATOR_KEY, "{\"scopes\":\"*\"}");
	if (r.status != 201)
		fail_msg("key: %ld %s", r.status, r.body);
	const char *k = json_string_value(json_object_get(r.json, "key"));
	assert_non_null(k);
	snprintf(out, size, "%s", k);
	lresp_free(&r);
}

static long retry_after(const struct lresp *r)
{
	if (!r->retry_after[0])
		fail_msg("a %ld without Retry-After: %s", r->status, r->body);
	char *end;
	long v = strtol(r->retry_after, &end, 10);
	if (*end)
		fail_msg("Retry-After is not whole seconds: '%s'", r->retry_after);
	return v;
}

/* ---- worlds ---- */

static int world_up(const char *extra)
{
	setenv("HERALD_TEST_OPERATOR", OPERATOR_KEY, 1);
	harness_server_extra("  operator_keys: [env:HERALD_TEST_OPERATOR]\n");
	world_init(&W, NULL, extra);
	harness_server_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int setup_plain(void **state)
{
	(void)state;
	return world_up(NULL);
}

/* Every credential: 5 requests, then one every 100 s. */
static int setup_key_rate(void **state)
{
	(void)state;
	return world_up("limits:\n  key_requests_per_s: 0.01\n  key_burst: 5\n");
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	return 0;
}

/* ---- tests ---- */

/*
 * acme's own rate, set by the operator with the server running: 0.01/s,
 * burst 10. An unauthenticated flood first (spends nothing of acme's),
 * then acme's 15 requests: exactly 10 answered, 5 refused 429 with
 * Retry-After in whole seconds (the next token is 100 s away: 91..100
 * however slow this run) and the error naming the tenant. Tenant "other"
 * and webhook calls are unaffected throughout; clearing the rate lets acme
 * in at the next request.
 */
static void test_tenant_rate(void **state)
{
	(void)state;
	op_post("/v1/tenants/acme/limits", "{\"requests_per_s\":0.01,\"burst\":10}", 200);
	for (int i = 0; i < 50; i++) {
		struct lresp r = call("GET", "/v1/messages", "hk_not_a_key_of_anyone_0000", NULL);
		assert_int_equal(r.status, 401);
		lresp_free(&r);
	}
	int ok = 0, refused = 0;
	for (int i = 0; i < 15; i++) {
		struct lresp r = call("GET", "/v1/messages", W.key, NULL);
		if (r.status == 200) {
			if (refused)
				fail_msg("request %d answered after a refusal", i);
			ok++;
		} else {
			if (r.status != 429)
				fail_msg("request %d: %ld %s", i, r.status, r.body);
			long ra = retry_after(&r);
			if (ra < 91 || ra > 100)
				fail_msg("Retry-After %ld, want 91..100", ra);
			assert_string_equal(err_field(&r, "code"), "rate_limited");
			assert_string_equal(err_field(&r, "field"), "tenant");
			assert_non_null(strstr(err_field(&r, "message"), "tenant 'acme'"));
			assert_non_null(
			    strstr(err_field(&r, "message"), "0.01 requests per second"));
			refused++;
		}
		lresp_free(&r);
		/* The other tenant is not touched by acme's limit. */
		struct lresp b = call("GET", "/v1/messages", BETA_KEY, NULL);
		assert_int_equal(b.status, 200);
		lresp_free(&b);
	}
	assert_int_equal(ok, 10);
	assert_int_equal(refused, 5);
	/* A sending endpoint is refused the same way, before its body is read. */
	struct lresp r = call("POST", "/v1/messages", W.key,
	                      "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"x\"}");
	assert_int_equal(r.status, 429);
	lresp_free(&r);
	/* Webhooks are not tenant API calls: never limited by tenant. */
	for (int i = 0; i < 5; i++) {
		r = call("GET",
		         "/webhooks/whatsapp/acme-wa?hub.mode=subscribe&hub.verify_token=verify-me"
		         "&hub.challenge=4242",
		         NULL, NULL);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "4242");
		lresp_free(&r);
	}
	/* The operator sees acme's limits; clearing the rate applies at once. */
	r = call("GET", "/v1/tenants/acme", OPERATOR_KEY, NULL);
	assert_int_equal(r.status, 200);
	json_t *lim = json_object_get(r.json, "limits");
	assert_true(json_number_value(json_object_get(lim, "requests_per_s")) == 0.01);
	assert_int_equal(json_integer_value(json_object_get(lim, "burst")), 10);
	assert_true(json_is_null(json_object_get(lim, "messages_per_day")));
	lresp_free(&r);
	op_post("/v1/tenants/acme/limits", "{\"requests_per_s\":null,\"burst\":null}", 200);
	for (int i = 0; i < 20; i++) {
		r = call("GET", "/v1/messages", W.key, NULL);
		assert_int_equal(r.status, 200);
		lresp_free(&r);
	}
	/* Bad values are refused naming the field; tenants cannot set them. */
	r = call("POST", "/v1/tenants/acme/limits", OPERATOR_KEY, "{\"burst\":0}");
	assert_int_equal(r.status, 422);
	assert_string_equal(err_field(&r, "field"), "burst");
	lresp_free(&r);
	r = call("POST", "/v1/tenants/acme/limits", OPERATOR_KEY, "{\"rate\":5}");
	assert_int_equal(r.status, 422);
	assert_string_equal(err_field(&r, "field"), "rate");
	lresp_free(&r);
	r = call("POST", "/v1/tenants/acme/limits", W.key, "{\"requests_per_s\":1000}");
	assert_int_equal(r.status, 403);
	lresp_free(&r);
}

/*
 * Per credential (limits.key_requests_per_s 0.01, key_burst 5): a new key
 * gets exactly 5, then 429 naming the credential; its sibling key and the
 * config key of the same tenant keep their own 5 (the tenant has no limit).
 */
static void test_key_rate(void **state)
{
	(void)state;
	char k1[128], k2[128];
	make_key(k1, sizeof k1);
	make_key(k2, sizeof k2);
	for (int round = 0; round < 2; round++) {
		const char *key = round ? k2 : k1;
		int ok = 0, refused = 0;
		for (int i = 0; i < 8; i++) {
			struct lresp r = call("GET", "/v1/batches", key, NULL);
			if (r.status == 200) {
				assert_int_equal(refused, 0);
				ok++;
			} else {
				if (r.status != 429)
					fail_msg("%ld %s", r.status, r.body);
				long ra = retry_after(&r);
				if (ra < 91 || ra > 100)
					fail_msg("Retry-After %ld, want 91..100", ra);
				assert_string_equal(err_field(&r, "field"), "key");
				assert_non_null(strstr(err_field(&r, "message"), "key:hk_"));
				refused++;
			}
			lresp_free(&r);
		}
		assert_int_equal(ok, 5);
		assert_int_equal(refused, 3);
	}
	for (int i = 0; i < 5; i++) {
		struct lresp r = call("GET", "/v1/batches", W.key, NULL);
		assert_int_equal(r.status, 200);
		lresp_free(&r);
	}
	struct lresp r = call("GET", "/v1/batches", W.key, NULL);
	assert_int_equal(r.status, 429);
	lresp_free(&r);
}

/* n messages of acme, one single send or one JSON batch; the status. */
static long send_n(int n)
{
	char body[256];
	if (n == 1) {
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"+447911%06d\",\"text\":\"cap\"}",
		         rand() % 1000000);
		struct lresp r = call("POST", "/v1/messages", W.key, body);
		long st = r.status;
		if (st == 429) {
			assert_string_equal(err_field(&r, "code"), "daily_cap_reached");
			assert_string_equal(err_field(&r, "field"), "daily_cap");
		}
		lresp_free(&r);
		return st;
	}
	json_t *msgs = json_array();
	for (int i = 0; i < n; i++) {
		char to[32];
		snprintf(to, sizeof to, "+447911%06d", rand() % 1000000);
		json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "channel", "whatsapp", "to",
		                                      to, "text", "cap"));
	}
	json_t *req = json_pack("{s:o}", "messages", msgs);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct lresp r = call("POST", "/v1/messages:batch", W.key, js);
	free(js);
	long st = r.status;
	lresp_free(&r);
	return st;
}

static int64_t today_count(void)
{
	struct lresp r = call("GET", "/v1/tenants/acme", OPERATOR_KEY, NULL);
	assert_int_equal(r.status, 200);
	int64_t n = json_integer_value(
	    json_object_get(json_object_get(r.json, "limits"), "messages_today"));
	lresp_free(&r);
	return n;
}

/* acme's messages in the store, from the API's own listing. */
static long acme_messages(void)
{
	long n = 0;
	char path[160] = "/v1/messages?limit=1000";
	for (;;) {
		struct lresp r = call("GET", path, W.key, NULL);
		assert_int_equal(r.status, 200);
		n += (long)json_array_size(json_object_get(r.json, "data"));
		const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
		if (!next) {
			lresp_free(&r);
			return n;
		}
		snprintf(path, sizeof path, "/v1/messages?limit=1000&cursor=%s", next);
		lresp_free(&r);
	}
}

/*
 * The daily cap, 5: three single sends, then a batch of 3 refused whole
 * (429 naming the cap, Retry-After the seconds to the next UTC midnight),
 * a batch of 2 accepted, the sixth refused. After a restart the count is
 * still 5 and the next send refused; a raised cap lets exactly one more in.
 * The other tenant is never counted.
 */
static void test_daily_cap(void **state)
{
	(void)state;
	srand((unsigned)time(NULL));
	op_post("/v1/tenants/acme/limits", "{\"messages_per_day\":5}", 200);
	for (int i = 0; i < 3; i++)
		assert_int_equal(send_n(1), 202);
	char body[512];
	snprintf(
	    body, sizeof body,
	    "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"+447911000001\",\"text\":\"a\"},"
	    "{\"channel\":\"whatsapp\",\"to\":\"+447911000002\",\"text\":\"b\"},"
	    "{\"channel\":\"whatsapp\",\"to\":\"+447911000003\",\"text\":\"c\"}]}");
	struct lresp r = call("POST", "/v1/messages:batch", W.key, body);
	assert_int_equal(r.status, 429);
	assert_string_equal(err_field(&r, "code"), "daily_cap_reached");
	assert_string_equal(err_field(&r, "field"), "daily_cap");
	const char *msg = err_field(&r, "message");
	assert_non_null(strstr(msg, "daily cap of 5 messages"));
	assert_non_null(strstr(msg, "3 accepted today"));
	assert_non_null(strstr(msg, "00:00 UTC"));
	assert_non_null(strstr(msg, "T00:00:00"));
	time_t now = time(NULL);
	long to_midnight = 86400 - (long)(now % 86400);
	long ra = retry_after(&r);
	if (ra < to_midnight - 30 || ra > to_midnight + 1)
		fail_msg("Retry-After %ld, want about %ld (the next UTC midnight)", ra,
		         to_midnight);
	lresp_free(&r);
	assert_int_equal(today_count(), 3);
	assert_int_equal(send_n(2), 202);
	assert_int_equal(send_n(1), 429);
	assert_int_equal(today_count(), 5);
	assert_int_equal(acme_messages(), 5);

	/* The count is in the store: it survives a restart. */
	world_stop_serve(&W);
	world_start_serve(&W);
	assert_int_equal(today_count(), 5);
	assert_int_equal(send_n(1), 429);
	assert_int_equal(send_n(2), 429);
	op_post("/v1/tenants/acme/limits", "{\"messages_per_day\":6}", 200);
	assert_int_equal(send_n(1), 202);
	assert_int_equal(send_n(1), 429);
	assert_int_equal(today_count(), 6);
	assert_int_equal(acme_messages(), 6);
	/* "other" has no cap and sent nothing: not counted with acme. */
	r = call("GET", "/v1/tenants/other", OPERATOR_KEY, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(
	                     json_object_get(json_object_get(r.json, "limits"), "messages_today")),
	                 0);
	lresp_free(&r);
}

/* A campaign of n rows scheduled a day ahead (it stays PROCESSING while
 * its messages wait), started at once or not; the answer's status. */
static long campaign(int n, bool start, char id[64], struct lresp *out)
{
	json_t *rows = json_array();
	for (int i = 0; i < n; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474001%05d", rand() % 100000);
		json_array_append_new(rows, json_pack("{s:s}", "phone", phone));
	}
	char sched[32];
	time_t t = time(NULL) + 86400;
	strftime(sched, sizeof sched, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	json_t *req =
	    json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "name", "cap test", "channel", "whatsapp",
	              "text", "hello", "schedule_at", sched, "start", start, "rows", rows);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct lresp r = call("POST", "/v1/batches", W.key, js);
	free(js);
	long st = r.status;
	id[0] = '\0';
	const char *v = json_string_value(json_object_get(r.json, "id"));
	if (v)
		snprintf(id, 64, "%s", v);
	if (out)
		*out = r;
	else
		lresp_free(&r);
	return st;
}

static const char *batch_status(const char *id)
{
	static char st[32];
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s", id);
	struct lresp r = call("GET", path, W.key, NULL);
	assert_int_equal(r.status, 200);
	snprintf(st, sizeof st, "%s", json_string_value(json_object_get(r.json, "status")));
	lresp_free(&r);
	return st;
}

/*
 * Campaigns in flight, cap 1: the first starts; a second upload with
 * start is refused 409 naming the cap, kept validated (its id in the
 * message); its explicit start is refused the same way; after the first
 * is cancelled it starts. A start whose rows do not fit today's cap is
 * refused 429 naming the daily cap.
 */
static void test_campaign_cap(void **state)
{
	(void)state;
	srand((unsigned)time(NULL) ^ 0x5a5a);
	op_post("/v1/tenants/acme/limits", "{\"campaigns_in_flight\":1}", 200);
	char a[64], b[64], path[128];
	assert_int_equal(campaign(3, true, a, NULL), 201);
	assert_string_equal(batch_status(a), "processing");
	struct lresp r;
	long st = campaign(2, true, b, &r);
	if (st != 409)
		fail_msg("second campaign: %ld %s", st, r.body);
	assert_string_equal(err_field(&r, "code"), "campaign_cap_reached");
	assert_string_equal(err_field(&r, "field"), "campaign_cap");
	const char *msg = err_field(&r, "message");
	assert_non_null(strstr(msg, "1 campaign at once"));
	const char *kept = strstr(msg, "; campaign ");
	assert_non_null(kept);
	snprintf(b, sizeof b, "%.26s", kept + 11);
	lresp_free(&r);
	assert_string_equal(batch_status(b), "validated");
	snprintf(path, sizeof path, "/v1/batches/%s/start", b);
	r = call("POST", path, W.key, NULL);
	assert_int_equal(r.status, 409);
	assert_string_equal(err_field(&r, "field"), "campaign_cap");
	lresp_free(&r);
	/* The runner makes the first campaign's 3 messages (counted today)
	 * before it is cancelled. */
	for (int i = 0; i < 200 && today_count() < 3; i++)
		usleep(50000);
	assert_int_equal(today_count(), 3);
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", a);
	r = call("POST", path, W.key, NULL);
	assert_int_equal(r.status, 200);
	lresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/start", b);
	r = call("POST", path, W.key, NULL);
	if (r.status != 200)
		fail_msg("start after cancel: %ld %s", r.status, r.body);
	lresp_free(&r);
	assert_string_equal(batch_status(b), "processing");

	/* Daily cap: 3 + 2 made today (once the runner has made them); a
	 * 4-row campaign does not fit a cap of 8. */
	for (int i = 0; i < 200 && today_count() < 5; i++)
		usleep(50000);
	assert_int_equal(today_count(), 5);
	op_post("/v1/tenants/acme/limits", "{\"campaigns_in_flight\":5,\"messages_per_day\":8}",
	        200);
	char c[64];
	st = campaign(4, true, c, &r);
	if (st != 429)
		fail_msg("over the daily cap: %ld %s", st, r.body);
	assert_string_equal(err_field(&r, "code"), "daily_cap_reached");
	assert_non_null(strstr(err_field(&r, "message"), "the campaign's 4 rows do not fit"));
	retry_after(&r);
	lresp_free(&r);
	assert_int_equal(campaign(3, true, c, NULL), 201);
}

/*
 * A campaign the daily cap stops part way: 20,000 rows fit the cap of
 * 20,000 at the start, then the operator lowers it to 300 while the
 * runner is making the messages. The runner's next chunk that does not
 * fit is refused whole; the campaign ends FAILED saying why, and the day's
 * count is exactly the messages it made (whole chunks of 250, no more).
 */
static void test_campaign_stops_at_cap(void **state)
{
	(void)state;
	enum { ROWS = 20000 };
	op_post("/v1/tenants/acme/limits", "{\"messages_per_day\":20000}", 200);
	json_t *rows = json_array();
	for (int i = 0; i < ROWS; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474002%05d", i);
		json_array_append_new(rows, json_pack("{s:s}", "phone", phone));
	}
	json_t *req = json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", "stopped", "channel",
	                        "whatsapp", "text", "hello", "start", 0, "rows", rows);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct lresp r = call("POST", "/v1/batches", W.key, js);
	free(js);
	if (r.status != 201)
		fail_msg("upload: %ld %s", r.status, r.body);
	char id[64], path[128];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	lresp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	r = call("POST", path, W.key, NULL);
	assert_int_equal(r.status, 200);
	lresp_free(&r);
	op_post("/v1/tenants/acme/limits", "{\"messages_per_day\":300}", 200);
	snprintf(path, sizeof path, "/v1/batches/%s", id);
	json_t *b = NULL;
	for (int i = 0; i < 1200; i++) {
		r = call("GET", path, W.key, NULL);
		assert_int_equal(r.status, 200);
		const char *st = json_string_value(json_object_get(r.json, "status"));
		if (st && strcmp(st, "processing") != 0) {
			b = json_incref(r.json);
			lresp_free(&r);
			break;
		}
		lresp_free(&r);
		usleep(50000);
	}
	assert_non_null(b);
	assert_string_equal(json_string_value(json_object_get(b, "status")), "failed");
	const char *why = json_string_value(json_object_get(b, "error"));
	assert_non_null(why);
	assert_non_null(strstr(why, "stopped at the daily message cap"));
	int64_t made = json_integer_value(json_object_get(json_object_get(b, "progress"), "made"));
	json_decref(b);
	assert_true(made > 0 && made < ROWS);
	assert_int_equal(made % 250, 0);
	assert_int_equal(today_count(), made);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_tenant_rate, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(test_key_rate, setup_key_rate, teardown),
	    cmocka_unit_test_setup_teardown(test_daily_cap, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(test_campaign_cap, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(test_campaign_stops_at_cap, setup_plain, teardown),
	};
	int rc = cmocka_run_group_tests_name("tenant limits", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
