/*
 * test_callbacks.c - callbacks to client systems against real `herald
 * serve` and `herald sim` processes, with the client's receiver played by
 * this test (an HTTP listener on a free loopback port that counts what it
 * gets and checks every signature):
 *   - the receiver down (answering 503) for a few seconds, then back:
 *     every callback delivered exactly once afterwards, in order per
 *     message, each signature verifying, exact counts;
 *   - a receiver that hangs does not slow sending (measured), and holds at
 *     most callbacks.max_in_flight_per_url requests;
 *   - another tenant cannot list, read or replay this tenant's callbacks
 *     (404), and a tenant cannot name an origin that is not allowed or
 *     sign without a secret (422 naming callback_url).
 * The "a minute" down is a few seconds here (callbacks.backoff_*
 * shortened in the config); the shape is the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "core/crypto.h"
#include "harness.h"

#define SECRET "cb-secret-for-tests"
#define OTHER_KEY "hk_other_0123456789abcdef"
#define NMSG 40
#define PER_URL 4

/* ---------------------------------------------------------------------------
 * The receiver.
 * ------------------------------------------------------------------------- */

#define RX_MAX 4096
struct rx {
	int fd, port;
	pthread_t th;
	atomic_bool stop;
	atomic_int status; /* the answer; 0: hold the request until the client gives up */
	atomic_int requests, held, most_held, bad_sig;
	pthread_mutex_t lock;
	int n; /* 2xx answers recorded */
	char *body[RX_MAX];
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The signature header checked the way a client would: HMAC-SHA256 of
 * "t.body" with the shared secret, t within five minutes. */
static bool sig_ok(const char *head, const char *body, size_t len)
{
	const char *h = strcasestr(head, "\r\nHerald-Signature: ");
	long long t;
	char v1[65];
	if (!h || sscanf(h + 20, "t=%lld,v1=%64[0-9a-f]", &t, v1) != 2)
		return false;
	if (llabs((long long)time(NULL) - t) > 300)
		return false;
	char pre[32];
	int pl = snprintf(pre, sizeof pre, "%lld.", t);
	char *msg = malloc((size_t)pl + len);
	if (!msg)
		return false;
	memcpy(msg, pre, (size_t)pl);
	memcpy(msg + pl, body, len);
	char want[65];
	hr_hmac_sha256_hex(SECRET, strlen(SECRET), msg, (size_t)pl + len, want);
	free(msg);
	return strcmp(want, v1) == 0;
}

static void rx_serve(struct rx *r, int c)
{
	char buf[16384];
	size_t len = 0;
	char *end = NULL;
	size_t want = 0;
	int64_t deadline = now_us() + 10000000;
	while (!atomic_load(&r->stop) && now_us() < deadline) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t k = recv(c, buf + len, sizeof buf - 1 - len, 0);
		if (k <= 0)
			return;
		len += (size_t)k;
		buf[len] = '\0';
		if (!end && (end = strstr(buf, "\r\n\r\n"))) {
			const char *cl = strcasestr(buf, "Content-Length:");
			want = cl ? (size_t)atol(cl + 15) : 0;
		}
		if (end && len >= (size_t)(end + 4 - buf) + want)
			break;
	}
	if (!end)
		return;
	atomic_fetch_add(&r->requests, 1);
	int st = atomic_load(&r->status);
	if (st == 0) {
		int h = atomic_fetch_add(&r->held, 1) + 1, m;
		while ((m = atomic_load(&r->most_held)) < h &&
		       !atomic_compare_exchange_weak(&r->most_held, &m, h))
			;
		while (!atomic_load(&r->stop) && atomic_load(&r->status) == 0) {
			struct pollfd p = {.fd = c, .events = POLLIN};
			char b;
			if (poll(&p, 1, 10) > 0 && recv(c, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
				break;
		}
		atomic_fetch_sub(&r->held, 1);
		return;
	}
	const char *body = end + 4;
	if (!sig_ok(buf, body, want))
		atomic_fetch_add(&r->bad_sig, 1);
	if (st >= 200 && st < 300) {
		pthread_mutex_lock(&r->lock);
		if (r->n < RX_MAX)
			r->body[r->n++] = strndup(body, want);
		pthread_mutex_unlock(&r->lock);
	}
	char resp[160];
	int n = snprintf(resp, sizeof resp,
	                 "HTTP/1.1 %d X\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
	                 "receiver says",
	                 st);
	(void)!send(c, resp, (size_t)n, MSG_NOSIGNAL);
}

struct rx_conn {
	struct rx *r;
	int c;
};

static atomic_int rx_threads;

static void *rx_conn_main(void *arg)
{
	struct rx_conn *k = arg;
	rx_serve(k->r, k->c);
	close(k->c);
	free(k);
	atomic_fetch_sub(&rx_threads, 1);
	return NULL;
}

static void *rx_main(void *arg)
{
	struct rx *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd p = {.fd = r->fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept(r->fd, NULL, NULL);
		if (c < 0)
			continue;
		struct rx_conn *k = malloc(sizeof *k);
		pthread_t t;
		atomic_fetch_add(&rx_threads, 1);
		if (!k ||
		    (*k = (struct rx_conn){r, c}, pthread_create(&t, NULL, rx_conn_main, k))) {
			atomic_fetch_sub(&rx_threads, 1);
			close(c);
			free(k);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static void rx_start(struct rx *r, int status)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->lock, NULL);
	atomic_store(&r->status, status);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	int one = 1;
	setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(r->fd, 128), 0);
	socklen_t al = sizeof a;
	assert_int_equal(getsockname(r->fd, (struct sockaddr *)&a, &al), 0);
	r->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&r->th, NULL, rx_main, r), 0);
}

static void rx_stop(struct rx *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	close(r->fd);
	int64_t deadline = now_us() + 5000000;
	while (atomic_load(&rx_threads) > 0 && now_us() < deadline)
		usleep(1000);
	for (int i = 0; i < r->n; i++)
		free(r->body[i]);
	pthread_mutex_destroy(&r->lock);
}

/* ---------------------------------------------------------------------------
 * The world: acme's callbacks signed with SECRET, the receivers' origins
 * allowed (plain http on loopback), retries shortened to fractions of a
 * second.
 * ------------------------------------------------------------------------- */

static struct world W;
static struct rx RX, HANG;

static int setup(void **state)
{
	(void)state;
	rx_start(&RX, 503);
	rx_start(&HANG, 0);
	assert_int_equal(setenv("HERALD_SECRET_ACME__CALLBACK", SECRET, 1), 0);
	char acme[256], extra[512];
	/* After acme's templates: keys of acme itself (4 spaces). */
	snprintf(acme, sizeof acme,
	         "    callback_url: \"http://127.0.0.1:%d/tenant-default\"\n"
	         "    callback_secret: env:HERALD_SECRET_ACME__CALLBACK\n",
	         RX.port);
	snprintf(extra, sizeof extra,
	         "callbacks:\n"
	         "  allowed_origins: [\"http://127.0.0.1:%d\", \"http://127.0.0.1:%d\"]\n"
	         "  max_in_flight: 16\n  max_in_flight_per_url: %d\n  timeout_ms: 1000\n"
	         "  backoff_base_ms: 100\n  backoff_max_ms: 400\n  max_attempts: 1000\n"
	         "  poll_ms: 50\n",
	         RX.port, HANG.port, PER_URL);
	world_init2(&W, NULL, acme, NULL, NULL, extra);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	rx_stop(&RX);
	rx_stop(&HANG);
	return 0;
}

/* A number from /metrics, -1 if absent. */
static long metric(const char *needle)
{
	struct resp r = metrics_get(&W);
	long n = -1;
	const char *p = r.body ? strstr(r.body, needle) : NULL;
	if (p)
		n = strtol(p + strlen(needle), NULL, 10);
	resp_free(&r);
	return n;
}

static bool reached(struct world *w, void *arg)
{
	const long *want = arg;
	return count_status(w, "read") >= want[0] &&
	       metric("herald_callback_outbox_depth{state=\"pending\"} ") == want[1];
}

static char *send_one(int i, const char *callback_url)
{
	char body[512];
	if (callback_url)
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 %06d\",\"text\":\"cb %d\","
		         "\"callback_url\":\"%s\"}",
		         i, i, callback_url);
	else
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 %06d\",\"text\":\"cb %d\"}",
		         i, i);
	struct resp r = api_post(&W, "/v1/messages", body);
	assert_int_equal(r.status, 202);
	char *id = strdup(json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	return id;
}

/* Every delivered row of acme, through the API's pages. */
static long list_count(const char *state, const char *key)
{
	long n = 0;
	char cursor[32] = "";
	for (;;) {
		char url[256];
		snprintf(url, sizeof url, "%s/v1/callbacks?status=%s&limit=50%s%s", W.api, state,
		         cursor[0] ? "&cursor=" : "", cursor);
		struct resp r = http("GET", url, key, NULL, NULL);
		if (r.status != 200)
			fprintf(stderr, "GET %s: %ld %s\n", url, r.status, r.body ? r.body : "");
		assert_int_equal(r.status, 200);
		n += (long)json_array_size(json_object_get(r.json, "data"));
		json_t *next = json_object_get(r.json, "next_cursor");
		bool more = json_is_string(next);
		if (more)
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		resp_free(&r);
		if (!more)
			return n;
	}
}

/*
 * Down for a few seconds (503), then back: NMSG messages, half with their
 * own callback_url and half taking the tenant's, each reaching `read` with
 * three callbacks (sent, delivered, read). Afterwards: exactly 3 * NMSG
 * delivered, each outbox id once, each message's in order, every signature
 * good; the receiver's answers never show through the API.
 */
static void test_down_then_back(void **state)
{
	(void)state;
	char own[96];
	snprintf(own, sizeof own, "http://127.0.0.1:%d/own", RX.port);
	char *ids[NMSG];
	for (int i = 0; i < NMSG; i++)
		ids[i] = send_one(i, i % 2 ? own : NULL);
	/* All read while the receiver is down: the callbacks wait. */
	long want_read[2] = {NMSG, 3 * NMSG};
	assert_true(wait_until(reached, &W, want_read, 60));
	int64_t down_until = now_us() + 4000000;
	while (now_us() < down_until)
		usleep(50000);
	int failed_attempts = atomic_load(&RX.requests);
	assert_true(failed_attempts >= NMSG); /* each message's first row, retried */
	assert_int_equal(RX.n, 0);
	assert_int_equal(metric("herald_callback_outbox_depth{state=\"pending\"} "), 3 * NMSG);

	atomic_store(&RX.status, 200);
	long want_done[2] = {NMSG, 0};
	int64_t t0 = now_us();
	assert_true(wait_until(reached, &W, want_done, 60));
	double drain_s = (double)(now_us() - t0) / 1e6;

	pthread_mutex_lock(&RX.lock);
	int n = RX.n;
	pthread_mutex_unlock(&RX.lock);
	assert_int_equal(n, 3 * NMSG);
	assert_int_equal(atomic_load(&RX.bad_sig), 0);
	/* Each outbox id once; each message sent < delivered < read. */
	json_int_t *seen = calloc((size_t)n, sizeof *seen);
	int order[NMSG][3];
	memset(order, -1, sizeof order);
	for (int i = 0; i < n; i++) {
		json_t *b = json_loads(RX.body[i], 0, NULL);
		assert_non_null(b);
		json_int_t id = json_integer_value(json_object_get(b, "id"));
		for (int k = 0; k < i; k++)
			assert_true(seen[k] != id);
		seen[i] = id;
		assert_string_equal(json_string_value(json_object_get(b, "type")),
		                    "message.status");
		assert_string_equal(json_string_value(json_object_get(b, "tenant")), "acme");
		const char *mid = json_string_value(json_object_get(b, "message_id"));
		const char *st = json_string_value(json_object_get(b, "status"));
		int m = -1;
		for (int k = 0; k < NMSG; k++)
			if (strcmp(ids[k], mid) == 0)
				m = k;
		assert_true(m >= 0);
		int s = !strcmp(st, "sent")        ? 0
		        : !strcmp(st, "delivered") ? 1
		        : !strcmp(st, "read")      ? 2
		                                   : -1;
		assert_true(s >= 0);
		assert_int_equal(order[m][s], -1);
		order[m][s] = i;
		json_decref(b);
	}
	for (int k = 0; k < NMSG; k++) {
		assert_true(order[k][0] >= 0 && order[k][0] < order[k][1]);
		assert_true(order[k][1] < order[k][2]);
	}
	free(seen);
	assert_int_equal(list_count("delivered", W.key), 3 * NMSG);
	assert_int_equal(list_count("pending", W.key), 0);
	assert_int_equal(list_count("dead", W.key), 0);
	assert_true(metric("herald_callbacks_total{outcome=\"sent\"} ") == 3 * NMSG);
	assert_true(metric("herald_callbacks_total{outcome=\"failed\"} ") >= NMSG);
	printf("    receiver down 4 s: %d failed attempts; %d callbacks delivered once each "
	       "in %.2f s after it came back\n",
	       failed_attempts, n, drain_s);

	/* One of them replayed on purpose: it goes out once more. */
	char url[256];
	snprintf(url, sizeof url, "%s/v1/callbacks?status=delivered&limit=1", W.api);
	struct resp r = http("GET", url, W.key, NULL, NULL);
	json_t *row = json_array_get(json_object_get(r.json, "data"), 0);
	json_int_t rid = json_integer_value(json_object_get(row, "id"));
	assert_int_equal(json_integer_value(json_object_get(row, "last_http_status")), 200);
	assert_null(strstr(r.body, "receiver says"));
	resp_free(&r);
	snprintf(url, sizeof url, "%s/v1/callbacks/%lld/replay", W.api, (long long)rid);
	r = http("POST", url, W.key, "", NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	int64_t deadline = now_us() + 20000000;
	while (now_us() < deadline) {
		pthread_mutex_lock(&RX.lock);
		n = RX.n;
		pthread_mutex_unlock(&RX.lock);
		if (n == 3 * NMSG + 1)
			break;
		usleep(20000);
	}
	assert_int_equal(n, 3 * NMSG + 1);
	json_t *b = json_loads(RX.body[n - 1], 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(b, "id")), rid);
	json_decref(b);
	snprintf(url, sizeof url, "%s/v1/callbacks/replay?status=dead", W.api);
	r = http("POST", url, W.key, "", NULL);
	assert_int_equal(r.status, 202);
	assert_int_equal(json_integer_value(json_object_get(r.json, "replayed")), 0);
	resp_free(&r);
	for (int i = 0; i < NMSG; i++)
		free(ids[i]);
}

/*
 * A receiver that never answers: sending goes on at full speed (messages
 * reach `read` as fast as with no callbacks at all), and it holds at most
 * max_in_flight_per_url requests at once.
 */
static void test_hanging_receiver_does_not_slow_sending(void **state)
{
	(void)state;
	char hang[96];
	snprintf(hang, sizeof hang, "http://127.0.0.1:%d/hang", HANG.port);
	long before = count_status(&W, "read");
	int64_t t0 = now_us();
	char *ids[NMSG];
	for (int i = 0; i < NMSG; i++)
		ids[i] = send_one(1000 + i, hang);
	double accept_s = (double)(now_us() - t0) / 1e6;
	long want[2] = {before + NMSG, -2};
	bool all_read = false;
	int64_t deadline = now_us() + 60000000;
	while (now_us() < deadline && !(all_read = count_status(&W, "read") >= want[0]))
		usleep(20000);
	assert_true(all_read);
	double read_s = (double)(now_us() - t0) / 1e6;
	assert_true(atomic_load(&HANG.requests) >= 1);
	assert_int_equal(atomic_load(&HANG.most_held), PER_URL);
	printf("    receiver hanging: %d messages accepted in %.2f s and read in %.2f s; "
	       "at most %d requests held by it\n",
	       NMSG, accept_s, read_s, atomic_load(&HANG.most_held));
	/* Every one of them well inside a second's margin per message. */
	assert_true(read_s < 30.0);
	for (int i = 0; i < NMSG; i++)
		free(ids[i]);
}

/* Tenants' walls, and URLs a tenant may not name. */
static void test_isolation_and_url_rules(void **state)
{
	(void)state;
	char url[256];
	snprintf(url, sizeof url, "%s/v1/callbacks?status=delivered&limit=1", W.api);
	struct resp r = http("GET", url, W.key, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_int_t rid = json_integer_value(
	    json_object_get(json_array_get(json_object_get(r.json, "data"), 0), "id"));
	assert_true(rid > 0);
	resp_free(&r);

	/* Another tenant: nothing listed, 404 on acme's id, by GET and replay. */
	assert_int_equal(list_count("delivered", OTHER_KEY), 0);
	snprintf(url, sizeof url, "%s/v1/callbacks/%lld", W.api, (long long)rid);
	r = http("GET", url, OTHER_KEY, NULL, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	r = http("GET", url, W.key, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	snprintf(url, sizeof url, "%s/v1/callbacks/%lld/replay", W.api, (long long)rid);
	r = http("POST", url, OTHER_KEY, "", NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	snprintf(url, sizeof url, "%s/v1/callbacks/replay?status=dead", W.api);
	r = http("POST", url, OTHER_KEY, "", NULL);
	assert_int_equal(r.status, 202);
	assert_int_equal(json_integer_value(json_object_get(r.json, "replayed")), 0);
	resp_free(&r);

	/* URLs: not allowed origins, userinfo, plain http elsewhere; and a
	 * tenant without a secret. Each a 422 naming callback_url. */
	static const char *const bad[] = {"http://example.com/cb", "https://user:pw@example.com/cb",
	                                  "ftp://example.com/", "http://127.0.0.1:1/not-listed",
	                                  "not a url"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *req = json_pack("{s:s, s:s, s:s, s:s}", "channel", "whatsapp", "to",
		                        "+447911000001", "text", "x", "callback_url", bad[i]);
		char *js = json_dumps(req, JSON_COMPACT);
		r = api_post(&W, "/v1/messages", js);
		assert_int_equal(r.status, 422);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
		    "callback_url");
		resp_free(&r);
		free(js);
		json_decref(req);
	}
	snprintf(url, sizeof url, "%s/v1/messages", W.api);
	r = http("POST", url, OTHER_KEY,
	         "{\"channel\":\"whatsapp\",\"to\":\"+447911000002\",\"text\":\"x\","
	         "\"callback_url\":\"https://hooks.example.com/cb\"}",
	         NULL);
	assert_int_equal(r.status, 422);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
	    "callback_url");
	resp_free(&r);
	/* And the bulk replay wants status=dead. */
	snprintf(url, sizeof url, "%s/v1/callbacks/replay?status=delivered", W.api);
	r = http("POST", url, W.key, "", NULL);
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_down_then_back),
	    cmocka_unit_test(test_hanging_receiver_does_not_slow_sending),
	    cmocka_unit_test(test_isolation_and_url_rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
