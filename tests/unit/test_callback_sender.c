/*
 * test_callback_sender.c - callbacks to client systems (webhooks/callbacks.h;
 * the end-to-end test is tests/integration/test_callbacks.c):
 * the signature against a vector computed by another implementation, the
 * retry schedule, the body, the URL rules, the tenants' settings, and the
 * sender against a store and a receiver of its own (order per message,
 * retries, dead-lettering, the per-URL limit while a receiver hangs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/crypto.h"
#include "store_test.h"
#include "webhooks/callbacks.h"

/* ---------------------------------------------------------------------------
 * Pure rules.
 * ------------------------------------------------------------------------- */

/*
 * The vector, from OpenSSL's command line rather than Herald's code:
 *   printf '%s' '1700000000.{"id":1,"type":"message.status"}' |
 *     openssl dgst -sha256 -hmac 'whsec_test_secret'
 *   => c3db7c6a72af0ead1fd3c722f7252bc2c97437db775da71235b324c84e0caf16
 */
static void test_sign_vector(void **state)
{
	(void)state;
	const char *body = "{\"id\":1,\"type\":\"message.status\"}";
	char out[96];
	callback_sign("whsec_test_secret", 17, 1700000000, body, strlen(body), out);
	assert_string_equal(
	    out,
	    "t=1700000000,v1=c3db7c6a72af0ead1fd3c722f7252bc2c97437db775da71235b324c84e0caf16");
	/* Another time or one byte more of body: another signature. */
	callback_sign("whsec_test_secret", 17, 1700000001, body, strlen(body), out);
	assert_null(strstr(out, "c3db7c6a72af0ead"));
	callback_sign("whsec_test_secret", 17, 1700000000, body, strlen(body) - 1, out);
	assert_null(strstr(out, "c3db7c6a72af0ead"));
}

/* Exponential, capped, with equal jitter: jitter 0 is half the step,
 * jitter ~1 the whole step, never beyond the cap. */
static void test_backoff_schedule(void **state)
{
	(void)state;
	struct callback_opts o;
	callback_opts_default(&o);
	o.backoff_base_us = 1000000;
	o.backoff_max_us = 60000000;
	static const struct {
		int attempts;
		int64_t lo, hi;
	} t[] = {
	    {0, 500000, 1000000},    {1, 500000, 1000000},      {2, 1000000, 2000000},
	    {3, 2000000, 4000000},   {6, 16000000, 32000000},   {7, 30000000, 60000000},
	    {8, 30000000, 60000000}, {500, 30000000, 60000000},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		assert_int_equal(callback_backoff(&o, t[i].attempts, 0.0), t[i].lo);
		int64_t top = callback_backoff(&o, t[i].attempts, 0.9999999);
		assert_true(top <= t[i].hi && top >= t[i].hi - 10);
		int64_t mid = callback_backoff(&o, t[i].attempts, 0.5);
		assert_int_equal(mid, t[i].lo + (t[i].hi - t[i].lo) / 2);
		/* Out-of-range jitter is clamped. */
		assert_int_equal(callback_backoff(&o, t[i].attempts, -3), t[i].lo);
		assert_true(callback_backoff(&o, t[i].attempts, 7) <= t[i].hi);
	}
}

static void test_body_shape(void **state)
{
	(void)state;
	struct callback_row r = {.id = 42,
	                         .tenant_id = "acme",
	                         .message_id = "01J0000000000000000000000A",
	                         .event = "message.status",
	                         .status = MSG_FAILED,
	                         .prev_status = MSG_SENT,
	                         .provider_id = "wamid.X",
	                         .error_code = "131026",
	                         .error_text = "Message undeliverable",
	                         .occurred_at = 1700000000123456LL};
	char *b = callback_body(&r);
	assert_non_null(b);
	assert_string_equal(
	    b, "{\"id\":42,\"type\":\"message.status\",\"tenant\":\"acme\","
	       "\"message_id\":\"01J0000000000000000000000A\",\"batch_id\":null,"
	       "\"status\":\"failed\",\"previous_status\":\"sent\",\"provider_id\":\"wamid.X\","
	       "\"error\":{\"code\":\"131026\",\"text\":\"Message undeliverable\"},"
	       "\"occurred_at\":\"2023-11-14T22:13:20.123456Z\"}");
	free(b);
	/* Delivered: no error object even if the row has an old one. */
	r.status = MSG_DELIVERED;
	b = callback_body(&r);
	assert_null(strstr(b, "\"error\""));
	free(b);
	/* A reply: no status, the reply object. */
	struct callback_row in = {.id = 7,
	                          .tenant_id = "acme",
	                          .event = "message.inbound",
	                          .status = -1,
	                          .prev_status = -1,
	                          .detail = (char *)"{\"kind\":\"button\",\"payload\":\"PAY\"}",
	                          .occurred_at = 1700000000000000LL};
	b = callback_body(&in);
	assert_string_equal(b, "{\"id\":7,\"type\":\"message.inbound\",\"tenant\":\"acme\","
	                       "\"message_id\":null,\"batch_id\":null,\"provider_id\":null,"
	                       "\"occurred_at\":\"2023-11-14T22:13:20.000000Z\","
	                       "\"reply\":{\"kind\":\"button\",\"payload\":\"PAY\"}}");
	free(b);
}

static void test_url_rules(void **state)
{
	(void)state;
	struct hr_err err;
	/* The text's length without its terminating NUL: a NUL is not YAML and
	 * hr_config_parse refuses it. */
	const char *yaml = "callbacks: {allowed_origins: [\"http://127.0.0.1:9999\"]}\n";
	json_t *cfg = hr_config_parse(yaml, strlen(yaml), &err);
	assert_non_null(cfg);
	struct callback_policy p;
	assert_int_equal(callback_policy_init(&p, cfg, &err), 0);
	json_decref(cfg);
	static const struct {
		const char *url;
		int rc;
	} t[] = {
	    {"https://hooks.example.com/herald", 0},
	    {"https://hooks.example.com:8443/a?b=c", 0},
	    {"http://127.0.0.1:9999/cb", 0},
	    {"http://127.0.0.1:9998/cb", HR_EINVAL}, /* http, not listed */
	    {"http://hooks.example.com/herald", HR_EINVAL},
	    {"https://user:pw@hooks.example.com/", HR_EINVAL},
	    {"https://hooks.example.com/#frag", HR_EINVAL},
	    {"ftp://hooks.example.com/", HR_EINVAL},
	    {"https://", HR_EINVAL},
	    {"https://hooks.example.com/a b", HR_EINVAL},
	    {"/relative", HR_EINVAL},
	    {"", HR_EINVAL},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		hr_err_clear(&err);
		assert_int_equal(callback_url_check(&p, t[i].url, "callback_url", &err), t[i].rc);
		if (t[i].rc)
			assert_string_equal(err.field, "callback_url");
	}
	char big[CALLBACK_URL_MAX + 32];
	snprintf(big, sizeof big, "https://h.example/%0*d", CALLBACK_URL_MAX, 0);
	assert_int_equal(callback_url_check(&p, big, "callback_url", &err), HR_EINVAL);
	callback_policy_clear(&p);

	cfg = hr_config_parse("callbacks: {allowed_origins: [\"not a url\"]}\n", 44, &err);
	assert_int_equal(callback_policy_init(&p, cfg, &err), HR_EINVAL);
	assert_string_equal(err.field, "callbacks.allowed_origins[0]");
	json_decref(cfg);
}

/* A tenant's secret comes from its own namespace only; a URL needs one. */
static void test_tenants_load(void **state)
{
	(void)state;
	setenv("HERALD_SECRET_ACME__CB", "s3cret", 1);
	setenv("OTHER_SECRET", "nope", 1);
	static const struct {
		const char *yaml;
		int rc;
		const char *field;
	} t[] = {
	    {"tenants: [{id: acme, callback_url: \"https://h.example/cb\","
	     " callback_secret: \"env:HERALD_SECRET_ACME__CB\"}]\n",
	     0, NULL},
	    {"tenants: [{id: acme, callback_url: \"https://h.example/cb\"}]\n", HR_EINVAL,
	     "tenants[0].callback_url"},
	    {"tenants: [{id: acme, callback_secret: \"env:OTHER_SECRET\"}]\n", HR_EFORBIDDEN,
	     "tenants[0].callback_secret"},
	    {"tenants: [{id: acme, callback_url: \"http://h.example/cb\","
	     " callback_secret: \"env:HERALD_SECRET_ACME__CB\"}]\n",
	     HR_EINVAL, "tenants[0].callback_url"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct hr_err err;
		hr_err_clear(&err);
		json_t *cfg = hr_config_parse(t[i].yaml, strlen(t[i].yaml), &err);
		assert_non_null(cfg);
		struct channel_policy ns;
		assert_int_equal(channel_policy_init(&ns, cfg, &err), 0);
		struct callback_policy p = {0};
		struct callback_tenant *v = NULL;
		size_t n = 0;
		assert_int_equal(callback_tenants_load(cfg, &ns, &p, &v, &n, &err), t[i].rc);
		if (t[i].rc == 0) {
			assert_int_equal(n, 1);
			assert_string_equal(v[0].secret, "s3cret");
			assert_int_equal(v[0].secret_len, 6);
			assert_string_equal(v[0].url, "https://h.example/cb");
		} else {
			assert_string_equal(err.field, t[i].field);
		}
		callback_tenants_free(v, n);
		channel_policy_clear(&ns);
		json_decref(cfg);
	}
}

/* ---------------------------------------------------------------------------
 * The sender against a store and a receiver in this test.
 * ------------------------------------------------------------------------- */

/* A tiny HTTP receiver on a loopback port: answers each request with the
 * current `status` (0: never answers, holding the connection), records the
 * Herald-Signature and body of each 2xx it gives. */
#define RX_MAX 64
struct rx {
	int fd, port;
	pthread_t th;
	atomic_bool stop;
	atomic_int status;
	atomic_int requests, held;
	pthread_mutex_t lock;
	/* Held connections, to count the ones still open when another is
	 * held: each holder notices its client's close only at its next poll
	 * round, so a count kept by the holders alone can briefly include a
	 * connection the client has already closed. */
	int held_fd[RX_MAX];
	int most_open;
	char sig[RX_MAX][96];
	char body[RX_MAX][1024];
	int n; /* 2xx answers recorded */
};

static void rx_serve(struct rx *r, int c)
{
	char buf[8192];
	size_t len = 0;
	int64_t deadline = hr_mono_us() + 5 * SEC;
	char *end = NULL;
	while (!atomic_load(&r->stop) && hr_mono_us() < deadline) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t k = recv(c, buf + len, sizeof buf - 1 - len, 0);
		if (k <= 0)
			return;
		len += (size_t)k;
		buf[len] = '\0';
		if ((end = strstr(buf, "\r\n\r\n"))) {
			const char *cl = strcasestr(buf, "Content-Length:");
			size_t want = cl ? (size_t)atol(cl + 15) : 0;
			if (len >= (size_t)(end + 4 - buf) + want)
				break;
		}
	}
	if (!end)
		return;
	atomic_fetch_add(&r->requests, 1);
	int st = atomic_load(&r->status);
	if (st == 0) {
		/* Held until the client gives up (closes) or the test ends. */
		atomic_fetch_add(&r->held, 1);
		pthread_mutex_lock(&r->lock);
		int open = 1, slot = -1;
		for (int i = 0; i < RX_MAX; i++) {
			if (r->held_fd[i] <= 0) {
				if (slot < 0)
					slot = i;
				continue;
			}
			char b;
			ssize_t k = recv(r->held_fd[i], &b, 1, MSG_PEEK | MSG_DONTWAIT);
			if (k > 0 || (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
				open++;
		}
		if (slot >= 0)
			r->held_fd[slot] = c;
		if (open > r->most_open)
			r->most_open = open;
		pthread_mutex_unlock(&r->lock);
		while (!atomic_load(&r->stop) && atomic_load(&r->status) == 0) {
			struct pollfd p = {.fd = c, .events = POLLIN};
			char b;
			if (poll(&p, 1, 10) > 0 && recv(c, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
				break;
		}
		pthread_mutex_lock(&r->lock);
		if (slot >= 0)
			r->held_fd[slot] = 0;
		pthread_mutex_unlock(&r->lock);
		atomic_fetch_sub(&r->held, 1);
		return;
	}
	if (st >= 200 && st < 300) {
		pthread_mutex_lock(&r->lock);
		if (r->n < RX_MAX) {
			const char *s = strcasestr(buf, "Herald-Signature: ");
			if (s)
				sscanf(s + 18, "%95[^\r]", r->sig[r->n]);
			hr_strlcpy(r->body[r->n], end + 4, sizeof r->body[r->n]);
			r->n++;
		}
		pthread_mutex_unlock(&r->lock);
	}
	char resp[128];
	int n = snprintf(resp, sizeof resp,
	                 "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", st);
	(void)!send(c, resp, (size_t)n, MSG_NOSIGNAL);
}

struct rx_conn {
	struct rx *r;
	int c;
};

static void *rx_conn_main(void *arg)
{
	struct rx_conn *k = arg;
	rx_serve(k->r, k->c);
	close(k->c);
	free(k);
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
		if (!k) {
			close(c);
			continue;
		}
		*k = (struct rx_conn){r, c};
		if (pthread_create(&t, NULL, rx_conn_main, k) != 0) {
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
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(r->fd, 64), 0);
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
	/* Connection threads notice stop within a poll round. */
	int64_t deadline = hr_mono_us() + 5 * SEC;
	while (atomic_load(&r->held) > 0 && hr_mono_us() < deadline)
		usleep(1000);
	usleep(100000);
	pthread_mutex_destroy(&r->lock);
}

struct sender_fx {
	char path[128];
	struct store *st;
	struct callback_policy pol;
	struct callback_tenant t;
	struct callbacks *cb;
};

/* A SQLite store with nmsg SENT messages of tenant t1, each with a
 * callback to url: one pending row each. */
static void sender_setup(struct sender_fx *f, const char *url, int nmsg, char ids[][27])
{
	memset(f, 0, sizeof *f);
	snprintf(f->path, sizeof f->path, "/tmp/herald-test-callbacks-%d.db", getpid());
	unlink(f->path);
	struct hr_err err = {0};
	assert_int_equal(store_sqlite.open(f->path, NULL, &f->st, &err), 0);
	for (int i = 0; i < nmsg; i++) {
		struct message m, c;
		int64_t now = hr_now_us();
		char acct[16];
		snprintf(acct, sizeof acct, "a%d", i);
		mk_msg(&m, "t1", acct, 0, now - SEC);
		m.callback_url = (char *)url;
		assert_int_equal(f->st->ops->message_insert(f->st, &m, 1, NULL, NULL, NULL), 0);
		size_t n;
		assert_int_equal(f->st->ops->claim(f->st, acct, now + SEC, 30 * SEC, 1, &c, &n), 0);
		message_clear(&c);
		struct send_result r = {.kind = SEND_OK, .attempt = 1, .provider_id = "p"};
		strcpy(r.message_id, m.id);
		assert_int_equal(f->st->ops->record_results(f->st, &r, 1, NULL, NULL), 0);
		if (ids)
			strcpy(ids[i], m.id);
	}
	char origin[64];
	json_t *cfg = json_object();
	snprintf(origin, sizeof origin, "%.*s", (int)(strchr(url + 7, '/') - url), url);
	json_object_set_new(cfg, "callbacks", json_pack("{s:[s]}", "allowed_origins", origin));
	assert_int_equal(callback_policy_init(&f->pol, cfg, &err), 0);
	json_decref(cfg);
	strcpy(f->t.id, "t1");
	f->t.secret = strdup("k");
	f->t.secret_len = 1;
}

static void sender_teardown(struct sender_fx *f)
{
	callbacks_stop(f->cb);
	f->st->ops->close(f->st);
	callback_policy_clear(&f->pol);
	free(f->t.secret);
	unlink(f->path);
	char side[160];
	snprintf(side, sizeof side, "%s-wal", f->path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", f->path);
	unlink(side);
}

static int64_t pending_of(struct store *st)
{
	int64_t c[CB__COUNT];
	assert_int_equal(st->ops->callback_counts(st, c), 0);
	return c[CB_PENDING];
}

/*
 * Down (503) then up: every row is retried with backoff and delivered once
 * when the receiver is back, the later events of a message after the
 * earlier ones, each signature verifying.
 */
static void test_sender_retry_then_deliver(void **state)
{
	(void)state;
	struct rx rx;
	rx_start(&rx, 503);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/cb", rx.port);
	struct sender_fx f;
	char ids[3][27];
	sender_setup(&f, url, 3, ids);
	/* A second event of message 0 (DELIVERED): sent after its first only. */
	int64_t now = hr_now_us();
	struct wh_status ws = {.provider_id = "p", .status = MSG_DELIVERED};
	struct inbox_parsed row = {
	    .inbox_id = inbox_add(f.st, "a0"), .account_id = "a0", .statuses = &ws, .nstatuses = 1};
	struct apply_stats as;
	assert_int_equal(f.st->ops->apply_inbox(f.st, &row, 1, now, &as), 0);
	assert_int_equal(as.applied, 1);
	assert_int_equal(pending_of(f.st), 4);
	struct callback_opts o;
	callback_opts_default(&o);
	o.backoff_base_us = 20000;
	o.backoff_max_us = 100000;
	o.poll_us = 10000;
	o.max_attempts = 1000;
	struct hr_err err = {0};
	assert_int_equal(callbacks_start(f.st, &o, &f.pol, &f.t, 1, &f.cb, &err), 0);
	int64_t deadline = hr_mono_us() + WAIT_US;
	while (atomic_load(&rx.requests) < 9 && hr_mono_us() < deadline)
		usleep(2000);
	assert_true(atomic_load(&rx.requests) >= 9); /* each row tried 3 times at least */
	assert_int_equal(rx.n, 0);
	atomic_store(&rx.status, 200);
	deadline = hr_mono_us() + WAIT_US;
	while (pending_of(f.st) != 0 && hr_mono_us() < deadline)
		usleep(2000);
	assert_int_equal(pending_of(f.st), 0);
	pthread_mutex_lock(&rx.lock);
	assert_int_equal(rx.n, 4);
	int sent_at = -1, delivered_at = -1;
	for (int i = 0; i < rx.n; i++) {
		/* t=<unix>,v1=<hex> over "t.body" with the tenant's secret. */
		long long t = 0;
		assert_int_equal(sscanf(rx.sig[i], "t=%lld,", &t), 1);
		assert_true(t >= now / SEC - 5 && t <= hr_now_us() / SEC + 5);
		char want[96];
		callback_sign("k", 1, t, rx.body[i], strlen(rx.body[i]), want);
		assert_string_equal(rx.sig[i], want);
		json_t *b = json_loads(rx.body[i], 0, NULL);
		assert_non_null(b);
		const char *status = json_string_value(json_object_get(b, "status"));
		if (strcmp(json_string_value(json_object_get(b, "message_id")), ids[0]) == 0) {
			if (strcmp(status, "sent") == 0)
				sent_at = i;
			else if (strcmp(status, "delivered") == 0)
				delivered_at = i;
		} else {
			assert_string_equal(status, "sent");
		}
		json_decref(b);
	}
	pthread_mutex_unlock(&rx.lock);
	assert_true(sent_at >= 0 && delivered_at > sent_at);
	struct callback_row *v;
	size_t n;
	bool more;
	assert_int_equal(f.st->ops->callback_list(f.st, "t1", CB_DELIVERED, 0, 100, &v, &n, &more),
	                 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i].attempts >= 1);
		assert_int_equal(v[i].last_http, 200);
		callback_row_clear(&v[i]);
	}
	free(v);
	sender_teardown(&f);
	rx_stop(&rx);
}

/* The attempt limit dead-letters a row; a dead row lets the next event of
 * its message go. */
static void test_sender_dead_letter(void **state)
{
	(void)state;
	struct rx rx;
	rx_start(&rx, 500);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/cb", rx.port);
	struct sender_fx f;
	sender_setup(&f, url, 1, NULL);
	struct callback_opts o;
	callback_opts_default(&o);
	o.backoff_base_us = 1000;
	o.backoff_max_us = 2000;
	o.poll_us = 10000;
	o.max_attempts = 3;
	struct hr_err err = {0};
	assert_int_equal(callbacks_start(f.st, &o, &f.pol, &f.t, 1, &f.cb, &err), 0);
	int64_t deadline = hr_mono_us() + WAIT_US;
	int64_t c[CB__COUNT] = {0};
	while (hr_mono_us() < deadline) {
		assert_int_equal(f.st->ops->callback_counts(f.st, c), 0);
		if (c[CB_DEAD] == 1)
			break;
		usleep(2000);
	}
	assert_int_equal(c[CB_DEAD], 1);
	assert_int_equal(atomic_load(&rx.requests), 3);
	struct callback_row *v;
	size_t n;
	bool more;
	assert_int_equal(f.st->ops->callback_list(f.st, "t1", CB_DEAD, 0, 10, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].attempts, 3);
	assert_int_equal(v[0].last_http, 500);
	assert_string_equal(v[0].last_error, "HTTP 500");
	callback_row_clear(&v[0]);
	free(v);
	sender_teardown(&f);
	rx_stop(&rx);
}

/* A receiver that never answers holds at most max_in_flight_per_url
 * requests; each times out and is retried; others' sends are unaffected
 * (the sender is its own thread: measured in the integration test). */
static void test_sender_hanging_receiver_bounded(void **state)
{
	(void)state;
	struct rx rx;
	rx_start(&rx, 0);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/cb", rx.port);
	struct sender_fx f;
	sender_setup(&f, url, 10, NULL);
	struct callback_opts o;
	callback_opts_default(&o);
	o.max_in_flight = 8;
	o.max_in_flight_per_url = 2;
	o.timeout_us = 300000;
	o.backoff_base_us = 1000;
	o.backoff_max_us = 2000;
	o.poll_us = 10000;
	struct hr_err err = {0};
	assert_int_equal(callbacks_start(f.st, &o, &f.pol, &f.t, 1, &f.cb, &err), 0);
	/* Several rounds of timeouts: each round holds 2 until they time out
	 * and are retried. */
	int64_t deadline = hr_mono_us() + 20 * SEC;
	while (atomic_load(&rx.requests) < 6 && hr_mono_us() < deadline)
		usleep(10000);
	pthread_mutex_lock(&rx.lock);
	int most = rx.most_open;
	pthread_mutex_unlock(&rx.lock);
	assert_int_equal(most, 2);
	/* Timeouts were retried: three rounds of requests at least. */
	assert_true(atomic_load(&rx.requests) >= 6);
	assert_int_equal(pending_of(f.st), 10);
	sender_teardown(&f);
	rx_stop(&rx);
}

int main(void)
{
	hr_log_set_level(HR_LOG_ERROR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_vector),
	    cmocka_unit_test(test_backoff_schedule),
	    cmocka_unit_test(test_body_shape),
	    cmocka_unit_test(test_url_rules),
	    cmocka_unit_test(test_tenants_load),
	    cmocka_unit_test(test_sender_retry_then_deliver),
	    cmocka_unit_test(test_sender_dead_letter),
	    cmocka_unit_test(test_sender_hanging_receiver_bounded),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
