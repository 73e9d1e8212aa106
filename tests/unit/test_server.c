/*
 * test_server.c - the HTTP server's own defences, in-process on a free
 * loopback port with raw sockets as the client (libcurl cannot send a NUL
 * byte in a header, a head of an exact size, or one byte at a time):
 * connection limits (total and per address, refused at once), the request
 * head and body deadlines, a suspended request outliving them, the head's
 * size limits answered at every size, and malformed heads answered 400.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <jansson.h>
#include <microhttpd.h>

#include "api/api_int.h"
#include "core/crypto.h"
#include "obs/metrics.h"

#define KEY "key-acme-0123456789"

struct env {
	char dir[64];
	struct store *st;
	struct account_set set;
	struct dispatcher *disp;
	struct api_server *srv;
	struct api_opts o; /* as started */
	int port;
};

/* ---------------------------------------------------------------------------
 * Fixture: a store with tenant acme (key KEY) and one WhatsApp account at
 * wa_url, the API on a free port with tweak's options.
 * ------------------------------------------------------------------------- */

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void env_start(struct env *e, const char *wa_url, bool dispatcher,
                      void (*tweak)(struct api_opts *o))
{
	memset(e, 0, sizeof *e);
	strcpy(e->dir, "/tmp/herald-test-server-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	char path[128];
	snprintf(path, sizeof path, "%s/herald.db", e->dir);
	struct store_opts so = {0};
	struct hr_err err;
	hr_err_clear(&err);
	if (store_sqlite.open(path, &so, &e->st, &err) != 0)
		fail_msg("store open: %s", err.msg);
	struct tenant_row t = {0};
	hr_strlcpy(t.id, "acme", sizeof t.id);
	hr_strlcpy(t.name, "Acme", sizeof t.name);
	assert_int_equal(e->st->ops->tenant_upsert(e->st, &t, &err), 0);
	char hash[65];
	hr_sha256_hex(KEY, strlen(KEY), hash);
	assert_int_equal(e->st->ops->api_key_put(e->st, "acme", hash, "test", &err), 0);
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "{\"base_url\":\"%s\",\"phone_number_id\":\"2001\",\"access_token\":\"tok\","
	         "\"app_secret\":\"app-secret-123\",\"verify_token\":\"vt-123\"}",
	         wa_url ? wa_url : "http://127.0.0.1:9");
	struct account_row a = {.config = cfg};
	hr_strlcpy(a.id, "acme-wa", sizeof a.id);
	hr_strlcpy(a.tenant_id, "acme", sizeof a.tenant_id);
	hr_strlcpy(a.channel, "whatsapp", sizeof a.channel);
	assert_int_equal(e->st->ops->account_upsert(e->st, &a, &err), 0);
	if (account_set_load(e->st, &e->set, &err) != 0)
		fail_msg("account_set_load: %s", err.msg);
	if (dispatcher) {
		struct dispatch_opts dop;
		dispatch_opts_default(&dop);
		dop.reconcile_every_us = 100000;
		if (dispatcher_start(e->st, &e->set, &dop, &e->disp, &err) != 0)
			fail_msg("dispatcher_start: %s", err.msg);
	}
	api_opts_default(&e->o);
	e->o.port = 0;
	e->o.store = e->st;
	e->o.accounts = &e->set;
	e->o.dispatcher = e->disp;
	if (tweak)
		tweak(&e->o);
	if (api_start(&e->o, &e->srv, &err) != 0)
		fail_msg("api_start: %s", err.msg);
	e->port = api_port(e->srv);
	assert_true(e->port > 0);
}

static void env_stop(struct env *e)
{
	api_stop(e->srv);
	dispatcher_stop(e->disp);
	account_set_clear(&e->set);
	e->st->ops->close(e->st);
	rm_tree(e->dir);
	memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------------------
 * A raw HTTP/1.1 client.
 * ------------------------------------------------------------------------- */

static int64_t ms_since(int64_t t0_us)
{
	return (hr_mono_us() - t0_us) / 1000;
}

/* A connected socket from source address src ("127.0.0.2"; NULL for any). */
static int dial(int port, const char *src)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	if (src) {
		struct sockaddr_in s = {.sin_family = AF_INET};
		assert_int_equal(inet_pton(AF_INET, src, &s.sin_addr), 1);
		if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0)
			fail_msg("bind %s: %s", src, strerror(errno));
	}
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

/* Sends what it can; the server may close early (a refused head). */
static void send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

struct raw {
	long status; /* 0: closed with no response */
	char head[2048];
	char *body;
	size_t blen;
};

static void raw_free(struct raw *r)
{
	free(r->body);
	r->body = NULL;
}

/* Reads one response (head, then Content-Length bytes of body, or up to the
 * close) within timeout_ms; fails the test if the connection stays silent
 * and open that long. */
static void read_response(int fd, int timeout_ms, struct raw *out)
{
	memset(out, 0, sizeof *out);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	int64_t t0 = hr_mono_us();
	long need = -1; /* total bytes once the head is parsed */
	for (;;) {
		if (need >= 0 && n >= (size_t)need)
			break;
		int left = timeout_ms - (int)ms_since(t0);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, left) == 0)
			fail_msg("no response within %d ms (%zu bytes so far)", timeout_ms, n);
		if (n + 4096 > cap) {
			cap *= 2;
			char *nb = realloc(buf, cap);
			assert_non_null(nb);
			buf = nb;
		}
		ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break; /* closed (or reset) */
		n += (size_t)k;
		buf[n] = '\0';
		char *end = need < 0 ? strstr(buf, "\r\n\r\n") : NULL;
		if (end) {
			size_t hl = (size_t)(end - buf) + 4;
			const char *cl = strcasestr(buf, "\r\nContent-Length:");
			need = cl && cl < end ? (long)hl + strtol(cl + 17, NULL, 10) : -2;
		}
	}
	buf[n] = '\0';
	char *end = strstr(buf, "\r\n\r\n");
	if (n >= 12 && !strncmp(buf, "HTTP/1.", 7) && end) {
		out->status = strtol(buf + 9, NULL, 10);
		size_t hl = (size_t)(end - buf);
		hr_strlcpy(out->head, buf, hl + 1 < sizeof out->head ? hl + 1 : sizeof out->head);
		out->blen = n - hl - 4;
		out->body = malloc(out->blen + 1);
		assert_non_null(out->body);
		memcpy(out->body, end + 4, out->blen);
		out->body[out->blen] = '\0';
	}
	free(buf);
}

/* One request on its own connection from address src (may be NULL). */
static void request_from(int port, const char *src, const char *req, size_t len, struct raw *out)
{
	int fd = dial(port, src);
	send_all(fd, req, len);
	read_response(fd, 10000, out);
	close(fd);
}

static void request(int port, const char *req, struct raw *out)
{
	request_from(port, NULL, req, strlen(req), out);
}

/* Herald's error shape with this status, code and field (NULL: none). */
static void check_error(const struct raw *r, long status, const char *code, const char *field)
{
	if (r->status != status)
		fail_msg("status %ld, want %ld: %s", r->status, status, r->body ? r->body : "");
	assert_non_null(strcasestr(r->head, "\r\nContent-Type: application/json"));
	json_error_t je;
	json_t *j = json_loads(r->body, 0, &je);
	if (!j)
		fail_msg("%ld body is not JSON: %s", r->status, r->body);
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	assert_true(strlen(json_string_value(json_object_get(e, "message"))) > 0);
	const char *f = json_string_value(json_object_get(e, "field"));
	if (field ? !f || strcmp(f, field) != 0 : f != NULL)
		fail_msg("field %s, want %s: %s", f ? f : "(none)", field ? field : "(none)",
		         r->body);
	json_decref(j);
}

/* Milliseconds until the server closes fd (reading and dropping anything it
 * sends), or -1 if it is still open after timeout_ms. */
static int closed_within(int fd, int timeout_ms)
{
	int64_t t0 = hr_mono_us();
	char b[4096];
	for (;;) {
		int left = timeout_ms - (int)ms_since(t0);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, left) == 0)
			return -1;
		ssize_t k = recv(fd, b, sizeof b, 0);
		if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
			return (int)ms_since(t0);
	}
}

static int64_t metric(struct env *e, const char *name)
{
	char *out;
	size_t len;
	assert_int_equal(metrics_render(e->st, &out, &len), 0);
	const char *p = out ? strstr(out, name) : NULL;
	int64_t v = p ? strtoll(p + strlen(name) + 1, NULL, 10) : -1; /* -1 fails the caller */
	free(out);
	return v;
}

/* Polls until the server holds want connections (the guard's count). */
static void wait_open(struct env *e, int want)
{
	int64_t t0 = hr_mono_us();
	while (api_guard_open(e->srv->guard) != want) {
		if (ms_since(t0) > 5000)
			fail_msg("%d connections open, want %d", api_guard_open(e->srv->guard),
			         want);
		usleep(5000);
	}
}

/* ---------------------------------------------------------------------------
 * Connection limits.
 * ------------------------------------------------------------------------- */

static void limits_small(struct api_opts *o)
{
	o->max_connections = 8;
	o->max_connections_per_ip = 3;
	o->threads = 2;
}

static const char healthz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/* Over the per-address limit a connection is closed at once, not left in the
 * listen backlog; other addresses are still served; over the total limit
 * everyone is refused at once; a slot freed is usable again. */
static void test_connection_limits(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, limits_small);
	int64_t per_ip0 = metric(&e, "herald_http_connections_refused_total{reason=\"per_ip\"}");
	int64_t limit0 = metric(&e, "herald_http_connections_refused_total{reason=\"limit\"}");

	int held[8];
	for (int i = 0; i < 3; i++)
		held[i] = dial(e.port, "127.0.0.2");
	wait_open(&e, 3);
	int over = dial(e.port, "127.0.0.2"); /* the TCP handshake completes in the kernel */
	int ms = closed_within(over, 2000);
	if (ms < 0)
		fail_msg("a 4th connection from one address was left open");
	close(over);
	struct raw r;
	const char *srcs[] = {"127.0.0.3", "127.0.0.1"};
	for (int i = 0; i < 2; i++) {
		request_from(e.port, srcs[i], healthz, strlen(healthz), &r);
		assert_int_equal(r.status, 200);
		raw_free(&r);
	}
	assert_int_equal(metric(&e, "herald_http_connections_refused_total{reason=\"per_ip\"}"),
	                 per_ip0 + 1);

	/* Fill the server: 3 + 3 + 2 from three addresses, once the server has
	 * closed its side of the two requests' connections. */
	wait_open(&e, 3);
	for (int i = 3; i < 6; i++)
		held[i] = dial(e.port, "127.0.0.3");
	for (int i = 6; i < 8; i++)
		held[i] = dial(e.port, "127.0.0.4");
	wait_open(&e, 8);
	int64_t t0 = hr_mono_us();
	int fd = dial(e.port, "127.0.0.5");
	send_all(fd, healthz, strlen(healthz));
	read_response(fd, 2000, &r);
	close(fd);
	assert_int_equal(r.status, 0);    /* closed unanswered ... */
	assert_true(ms_since(t0) < 1000); /* ... at once */
	raw_free(&r);
	assert_int_equal(metric(&e, "herald_http_connections_refused_total{reason=\"limit\"}"),
	                 limit0 + 1);
	assert_int_equal(api_guard_open(e.srv->guard), 8);

	close(held[0]);
	wait_open(&e, 7);
	request_from(e.port, "127.0.0.5", healthz, strlen(healthz), &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	for (int i = 1; i < 8; i++)
		close(held[i]);
	wait_open(&e, 0);
	env_stop(&e);
}

static void limits_16(struct api_opts *o)
{
	o->max_connections = 16; /* max_connections_per_ip left at its default */
}

/* By default one address may hold an eighth of the server (2 of 16): the
 * 150-idle-sockets-against-100 attack now holds 12 slots, not all of them. */
static void test_default_per_address(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, limits_16);
	int a = dial(e.port, "127.0.0.7"), b = dial(e.port, "127.0.0.7");
	wait_open(&e, 2);
	int c = dial(e.port, "127.0.0.7");
	if (closed_within(c, 2000) < 0)
		fail_msg("a third connection from one address was left open");
	struct raw r;
	request_from(e.port, "127.0.0.8", healthz, strlen(healthz), &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	close(a);
	close(b);
	close(c);
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * Deadlines.
 * ------------------------------------------------------------------------- */

static void deadlines_short(struct api_opts *o)
{
	o->request_head_timeout_us = 600000;
	o->request_body_timeout_us = 600000;
	o->min_body_rate = 2000;
	o->threads = 1;
}

struct trickle {
	int fd;
	const char *bytes;
	size_t len;
	int every_ms;
	int sent; /* out: bytes sent before the server closed */
};

/* Sends one byte every every_ms until all are sent or the server closes. */
static void *trickle_run(void *arg)
{
	struct trickle *t = arg;
	for (size_t i = 0; i < t->len; i++) {
		if (send(t->fd, t->bytes + i, 1, MSG_NOSIGNAL) != 1)
			break;
		t->sent++;
		usleep((useconds_t)t->every_ms * 1000);
	}
	return NULL;
}

/* A head trickled a byte at a time is cut at its deadline however steadily
 * it arrives; a silent connection likewise; a kept-alive connection's next
 * head has its own deadline; a head sent in pieces within the deadline is
 * served. Other clients are served throughout. */
static void test_head_deadline(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, deadlines_short);
	int64_t cut0 = metric(&e, "herald_http_requests_cut_total{phase=\"head\"}");

	static const char endless[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
	                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	struct trickle t = {dial(e.port, NULL), endless, sizeof endless - 1, 50, 0};
	int idle = dial(e.port, NULL);
	pthread_t th;
	int64_t t0 = hr_mono_us();
	assert_int_equal(pthread_create(&th, NULL, trickle_run, &t), 0);
	struct raw r;
	request(e.port, healthz, &r); /* served while the slow one trickles */
	assert_int_equal(r.status, 200);
	raw_free(&r);
	int ms_idle = closed_within(idle, 3000);
	int ms_slow = closed_within(t.fd, 3000);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (ms_idle < 0 || ms_slow < 0)
		fail_msg("slow heads not cut: idle %d ms, trickle %d ms", ms_idle, ms_slow);
	int64_t took = ms_since(t0);
	/* 600 ms deadline, enforced by a reaper that runs every 150 ms. */
	if (took < 550 || took > 1500)
		fail_msg("cut after %lld ms, want about 600", (long long)took);
	assert_true(t.sent > 5 && (size_t)t.sent < sizeof endless - 1);
	close(idle);
	close(t.fd);
	assert_int_equal(metric(&e, "herald_http_requests_cut_total{phase=\"head\"}"), cut0 + 2);

	/* Keep-alive: the second request's head is due 600 ms after the first
	 * response, not after the connection's start. */
	int fd = dial(e.port, NULL);
	usleep(400000);
	send_all(fd, healthz, strlen(healthz));
	read_response(fd, 2000, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	usleep(400000); /* 800 ms since the connection began: not cut yet */
	send_all(fd, healthz, strlen(healthz));
	read_response(fd, 2000, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	t0 = hr_mono_us();
	int ms = closed_within(fd, 3000);
	assert_true(ms >= 0);
	if (ms_since(t0) < 450)
		fail_msg("idle kept-alive connection cut after %d ms", ms);
	close(fd);

	/* A head in three pieces within the deadline is fine. */
	fd = dial(e.port, NULL);
	send_all(fd, "GET /heal", 9);
	usleep(150000);
	send_all(fd, "thz HTTP/1.1\r\nHo", 16);
	usleep(150000);
	send_all(fd, "st: x\r\n\r\n", 9);
	read_response(fd, 2000, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	close(fd);
	env_stop(&e);
}

/* A body slower than the minimum rate is cut; one at a steady, sufficient
 * rate completes however long it takes. */
static void test_body_rate(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, deadlines_short);
	int64_t cut0 = metric(&e, "herald_http_requests_cut_total{phase=\"body\"}");

	/* {} and spaces: valid JSON, answered 422 (no channel) once complete. */
	enum { BODY = 3000 };
	char *body = malloc(BODY + 1);
	assert_non_null(body);
	memset(body, ' ', BODY);
	body[0] = '{';
	body[BODY - 1] = '}';
	body[BODY] = '\0';
	char head[256];
	snprintf(head, sizeof head,
	         "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
	         "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
	         BODY);

	/* 100 B/s against 2000 B/s required: cut at about 600 ms plus 50 ms. */
	int fd = dial(e.port, NULL);
	send_all(fd, head, strlen(head));
	int64_t t0 = hr_mono_us();
	struct trickle t = {fd, body, BODY, 10, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, trickle_run, &t), 0);
	int ms = closed_within(fd, 3000);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (ms < 0)
		fail_msg("a 100 B/s body was not cut");
	if (ms_since(t0) < 550 || ms_since(t0) > 1500)
		fail_msg("body cut after %lld ms, want about 650", (long long)ms_since(t0));
	close(fd);
	assert_int_equal(metric(&e, "herald_http_requests_cut_total{phase=\"body\"}"), cut0 + 1);

	/* 3000 bytes in 10 pieces over 1.35 s (about 2200 B/s): the deadline
	 * moves ahead of it, and the request is answered. */
	fd = dial(e.port, NULL);
	send_all(fd, head, strlen(head));
	for (int i = 0; i < 10; i++) {
		usleep(135000);
		send_all(fd, body + (size_t)i * (BODY / 10), BODY / 10);
	}
	struct raw r;
	read_response(fd, 3000, &r);
	check_error(&r, 422, "invalid", "channel");
	raw_free(&r);
	close(fd);
	free(body);
	assert_int_equal(metric(&e, "herald_http_requests_cut_total{phase=\"body\"}"), cut0 + 1);
	env_stop(&e);
}

static void deadlines_short_small_body(struct api_opts *o)
{
	deadlines_short(o);
	o->max_body_bytes = 1000;
}

struct chunker {
	int fd;
	int ms;   /* how long to keep sending */
	int sent; /* out: body bytes sent before the server closed */
};

/* Sends 200-byte chunks every 50 ms (4000 B/s, twice the minimum rate) for
 * c->ms or until the server closes. */
static void *chunker_run(void *arg)
{
	struct chunker *c = arg;
	char chunk[256] = "c8\r\n";
	memset(chunk + 4, ' ', 200);
	memcpy(chunk + 204, "\r\n", 2);
	int64_t t0 = hr_mono_us();
	while (ms_since(t0) < c->ms) {
		if (send(c->fd, chunk, 206, MSG_NOSIGNAL) != 206)
			break;
		c->sent += 200;
		usleep(50000);
	}
	return NULL;
}

/* Only the bytes Herald keeps earn the body time: the discarded rest of a
 * body over the limit must come within what the kept part earned, or a
 * client streaming garbage at the minimum rate holds its connection (and
 * the server's reading) forever. */
static void test_oversized_body_cut(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, deadlines_short_small_body);
	int64_t cut0 = metric(&e, "herald_http_requests_cut_total{phase=\"body\"}");
	static const char head[] =
	    "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	    "\r\nContent-Type: application/json\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n";
	int fd = dial(e.port, NULL);
	send_all(fd, head, strlen(head));
	int64_t t0 = hr_mono_us();
	struct chunker c = {fd, 4000, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, chunker_run, &c), 0);
	int ms = closed_within(fd, 5000);
	int64_t took = ms_since(t0);
	assert_int_equal(pthread_join(th, NULL), 0);
	close(fd);
	/* 600 ms plus 1000 bytes at 2000 B/s: about 1100 ms, reaped within 150. */
	if (ms < 0 || took > 2000)
		fail_msg("an endless body over the limit was cut after %lld ms (%d bytes sent)",
		         (long long)took, c.sent);
	assert_int_equal(metric(&e, "herald_http_requests_cut_total{phase=\"body\"}"), cut0 + 1);

	/* A body over the limit that ends in time is still answered 413. */
	fd = dial(e.port, NULL);
	send_all(fd, head, strlen(head));
	char chunk[1300] = "4b0\r\n";
	memset(chunk + 5, ' ', 1200);
	memcpy(chunk + 1205, "\r\n0\r\n\r\n", 7);
	send_all(fd, chunk, 1212);
	struct raw r;
	read_response(fd, 3000, &r);
	check_error(&r, 413, "too_large", NULL);
	raw_free(&r);
	close(fd);
	env_stop(&e);
}

/* The fake provider answers after FAKE_DELAY_MS: longer than every deadline
 * of deadlines_short, so a sync request is suspended past them. */
#define FAKE_DELAY_MS 1500

static enum MHD_Result fake_wa(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req)
{
	(void)cls, (void)url, (void)method, (void)version, (void)upload;
	if (!*req) {
		*req = conn;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	usleep(FAKE_DELAY_MS * 1000);
	static const char body[] = "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":"
	                           "\"447911123456\",\"wa_id\":\"447911123456\"}],\"messages\":[{"
	                           "\"id\":\"wamid.SLOW\"}]}";
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
	assert_non_null(r);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* A request suspended waiting for the provider is never cut, however long
 * past the head and body deadlines it waits. */
static void test_suspended_not_cut(void **state)
{
	(void)state;
	struct MHD_Daemon *wa = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL, fake_wa,
	    NULL, MHD_OPTION_SOCK_ADDR,
	    &(struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)},
	    MHD_OPTION_END);
	assert_non_null(wa);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%u",
	         MHD_get_daemon_info(wa, MHD_DAEMON_INFO_BIND_PORT)->port);
	struct env e;
	env_start(&e, url, true, deadlines_short);
	int64_t cut0 = metric(&e, "herald_http_requests_cut_total{phase=\"head\"}") +
	               metric(&e, "herald_http_requests_cut_total{phase=\"body\"}");
	static const char body[] = "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\","
	                           "\"text\":\"hi\",\"mode\":\"sync\",\"timeout_ms\":5000}";
	char req[512];
	snprintf(req, sizeof req,
	         "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
	         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	         sizeof body - 1, body);
	int64_t t0 = hr_mono_us();
	struct raw r;
	request(e.port, req, &r);
	if (r.status != 200)
		fail_msg("sync send: %ld %s", r.status, r.body ? r.body : "");
	assert_true(ms_since(t0) >= FAKE_DELAY_MS);
	assert_non_null(strstr(r.body, "\"status\":\"sent\""));
	assert_non_null(strstr(r.body, "wamid.SLOW"));
	raw_free(&r);
	assert_int_equal(metric(&e, "herald_http_requests_cut_total{phase=\"head\"}") +
	                     metric(&e, "herald_http_requests_cut_total{phase=\"body\"}"),
	                 cut0);
	env_stop(&e);
	MHD_stop_daemon(wa);
}

/* ---------------------------------------------------------------------------
 * The head's size: every size gets an answer with the right status.
 * ------------------------------------------------------------------------- */

/* A GET /healthz whose head (request line to the blank line) is exactly
 * `bytes` long, with `fields` headers (Host and fields - 1 X-Pad-i headers
 * sharing the padding). Returns the length; buf must hold bytes + 1. */
static size_t head_of(char *buf, size_t bytes, int fields)
{
	size_t n = (size_t)sprintf(buf, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
	for (int i = 1; i < fields; i++) {
		/* This header's share of what is left, less the final CRLF. */
		size_t left = bytes - n - 2;
		size_t share = i == fields - 1 ? left : left / (size_t)(fields - i);
		int k = sprintf(buf + n, "X-Pad-%d: ", i);
		assert_true(share >= (size_t)k + 3);
		memset(buf + n + k, 'a', share - (size_t)k - 2);
		memcpy(buf + n + share - 2, "\r\n", 2);
		n += share;
	}
	memcpy(buf + n, "\r\n", 2);
	n += 2;
	buf[n] = '\0';
	assert_int_equal(n, bytes);
	return n;
}

static void limits_default_one_thread(struct api_opts *o)
{
	o->threads = 1;
}

/* Heads of every size from 1 KiB to four times the limit, and byte by byte
 * across the limit, the old silent band (17,058-17,133 bytes with the old
 * 17 KiB pool) and where MHD's pool runs out (for f fields, about
 * pool - 64 f bytes: each field costs MHD a 64-byte index entry), with 2, 40
 * and 120 fields: each gets an HTTP answer, 200 up to max_header_bytes and
 * 431 beyond; Herald's JSON up to twice the limit (past its pool,
 * libmicrohttpd answers 431 itself). */
static void test_head_size_sweep(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, limits_default_one_thread);
	const size_t max = e.o.max_header_bytes, pool = api_pool_bytes(&e.o);
	char *buf = malloc(4 * max + 1);
	assert_non_null(buf);
	static const int fields[] = {2, 40, 120};
	int checked = 0;
	for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
		size_t end = pool - 64 * (size_t)fields[f];
		for (size_t bytes = 1024 + 16 * (size_t)fields[f]; bytes <= 4 * max; bytes++) {
			bool fine = (bytes >= max - 8 && bytes <= max + 8) ||
			            (bytes >= 17040 && bytes <= 17150) ||
			            (bytes + 384 >= end && bytes <= end + 128);
			if (!fine && bytes % 197 != 0)
				continue;
			size_t n = head_of(buf, bytes, fields[f]);
			struct raw r;
			request_from(e.port, NULL, buf, n, &r);
			long want = bytes <= max ? 200 : 431;
			if (r.status != want)
				fail_msg("%zu-byte head in %d fields: status %ld, want %ld", bytes,
				         fields[f], r.status, want);
			if (want == 431 && bytes <= 2 * max)
				check_error(&r, 431, "header_too_large", NULL);
			raw_free(&r);
			checked++;
		}
	}
	assert_true(checked > 2500);
	free(buf);
	/* Still serving. */
	struct raw r;
	request(e.port, healthz, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	env_stop(&e);
}

/* 100 headers totalling 11 KB pass (MHD's own pool used to refuse them);
 * max_header_fields fields pass and one more is 431; a URL over
 * max_url_bytes is 414 in Herald's JSON, and one too long even for MHD's
 * pool still gets a 414. */
static void test_head_fields_and_url(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, limits_default_one_thread);
	char *buf = malloc(200000);
	assert_non_null(buf);
	struct raw r;
	size_t n = head_of(buf, 11000, 100);
	request_from(e.port, NULL, buf, n, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	n = head_of(buf, 12000, e.o.max_header_fields);
	request_from(e.port, NULL, buf, n, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	n = head_of(buf, 12000, e.o.max_header_fields + 1);
	request_from(e.port, NULL, buf, n, &r);
	check_error(&r, 431, "header_too_large", NULL);
	raw_free(&r);
	/* Query parameters count as fields too. */
	n = (size_t)sprintf(buf, "GET /healthz?");
	for (int i = 0; i < e.o.max_header_fields; i++)
		n += (size_t)sprintf(buf + n, "p%d=1&", i);
	n = n - 1 + (size_t)sprintf(buf + n - 1, " HTTP/1.1\r\nHost: x\r\n\r\n");
	request_from(e.port, NULL, buf, n, &r);
	check_error(&r, 431, "header_too_large", NULL);
	raw_free(&r);

	static const size_t urls[] = {8192, 8193, 16000, 120000};
	for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
		/* "/healthz?x=aaa..." of exactly urls[i] bytes */
		n = (size_t)sprintf(buf, "GET /healthz?x=");
		memset(buf + n, 'a', urls[i] - 11);
		n += urls[i] - 11;
		n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
		request_from(e.port, NULL, buf, n, &r);
		if (urls[i] <= e.o.max_url_bytes)
			assert_int_equal(r.status, 200);
		else if (urls[i] < api_pool_bytes(&e.o) / 2)
			check_error(&r, 414, "uri_too_long", NULL);
		else
			assert_int_equal(r.status, 414);
		raw_free(&r);
	}
	free(buf);
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * Malformed heads.
 * ------------------------------------------------------------------------- */

/* A second Authorization header, a NUL byte inside the key, a repeated
 * Content-Length and other repeated headers Herald reads, a NUL in any
 * header or in the request line, and ambiguous body framing: all 400 naming
 * the header (or "path"). */
static void test_header_smuggling(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, NULL);
	static const struct {
		const char *req;
		size_t len; /* 0: strlen */
		const char *field;
	} cases[] = {
	    {"GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\r\nAuthorization: Bearer " KEY "\r\n\r\n",
	     0, "Authorization"},
	    {"GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
	     "nope\r\n"
	     "authorization: Bearer " KEY "\r\n\r\n",
	     0, "Authorization"},
	    {"GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\0trailing\r\n\r\n",
	     sizeof("GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: "
	            "Bearer " KEY "\0trailing\r\n\r\n") -
	         1,
	     "Authorization"},
	    {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\0b\r\n\r\n",
	     sizeof("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\0b\r\n\r\n") - 1, "X-Note"},
	    {"GET /v1/messages?limit=1\0&limit=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\r\n\r\n",
	     sizeof("GET /v1/messages?limit=1\0&limit=x HTTP/1.1\r\nHost: x\r\nAuthorization: "
	            "Bearer " KEY "\r\n\r\n") -
	         1,
	     "path"},
	    {"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
	     0, "Content-Length"},
	    {"POST /webhooks/whatsapp/acme-wa HTTP/1.1\r\nHost: "
	     "x\r\nX-Hub-Signature-256: a\r\n"
	     "X-Hub-Signature-256: b\r\nContent-Length: 2\r\n\r\n{}",
	     0, "X-Hub-Signature-256"},
	    /* A NUL in the method: read as "GET" alone. */
	    {"GET\0junk /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
	     sizeof("GET\0junk /healthz HTTP/1.1\r\nHost: x\r\n\r\n") - 1, "path"},
	    {"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 0, "Host"},
	    /* A header folded over two lines (obs-fold): MHD 0.9.75 moves its
	     * name out of the head, which must not switch the NUL check off
	     * for every other header. */
	    {"GET /v1/messages HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n b\r\nAuthorization: Bearer " KEY
	     "\0trailing\r\n\r\n",
	     sizeof("GET /v1/messages HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n b\r\nAuthorization: "
	            "Bearer " KEY "\0trailing\r\n\r\n") -
	         1,
	     "X-Note"},
	    {"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n\tb\r\n\r\n", 0, "X-Note"},
	    {"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\r\nTransfer-Encoding: gzip\r\n\r\n",
	     0, "Transfer-Encoding"},
	    {"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	     "\r\nTransfer-Encoding: chunked\r\nContent-Length: "
	     "2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
	     0, "Content-Length"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct raw r;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].req);
		request_from(e.port, NULL, cases[i].req, len, &r);
		check_error(&r, 400, "bad_request", cases[i].field);
		raw_free(&r);
	}
	/* Other headers may repeat (curl sends two Content-Types when asked to). */
	struct raw r;
	request(e.port,
	        "GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
	        "\r\nX-Note: a\r\nX-Note: b\r\nContent-Type: text/plain\r\n"
	        "Content-Type: application/json\r\n\r\n",
	        &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	env_stop(&e);
}

/* %00 in a query value or the path, and a repeated query parameter: 400
 * naming it; an impossible date in since/until: 422 naming it. */
static void test_query_checks(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, NULL);
	static const struct {
		const char *target;
		long status;
		const char *code, *field;
	} cases[] = {
	    {"/v1/messages?limit=1&limit=500", 400, "bad_request", "limit"},
	    {"/v1/messages?status=queued&to=1&status=sent", 400, "bad_request", "status"},
	    {"/v1/messages?to=%2B447911123456%00junk", 400, "bad_request", "to"},
	    {"/v1/messages?li%00mit=1", 400, "bad_request", "li"},
	    {"/v1/messages/abc%00def", 400, "bad_request", "path"},
	    {"/v1/messages?since=2026-02-30T00:00:00Z", 422, "invalid", "since"},
	    {"/v1/messages?until=2026-02-29T00:00:00Z", 422, "invalid", "until"},
	    {"/v1/suppressions?channel=whatsapp&channel=sms", 400, "bad_request", "channel"},
	};
	char req[512];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(req, sizeof req,
		         "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n\r\n",
		         cases[i].target);
		struct raw r;
		request(e.port, req, &r);
		check_error(&r, cases[i].status, cases[i].code, cases[i].field);
		raw_free(&r);
	}
	snprintf(req, sizeof req,
	         "GET /v1/messages?since=2024-02-29T00:00:00Z&limit=5 "
	         "HTTP/1.1\r\nHost: x\r\n"
	         "Authorization: Bearer " KEY "\r\n\r\n");
	struct raw r;
	request(e.port, req, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	env_stop(&e);
}

/* What libmicrohttpd answers before Herald sees the request: a malformed or
 * overflowing Content-Length. Herald cannot shape these (no hook); they must
 * still be answered with the right status, and the server must go on. A
 * length that parses but is over the limit is Herald's 413. */
static void test_content_length(void **state)
{
	(void)state;
	struct env e;
	env_start(&e, NULL, false, NULL);
	static const struct {
		const char *value;
		long status;
	} cases[] = {
	    {"abc", 400},
	    {"12abc", 400},
	    {"-1", 400},
	    {"99999999999999999999999", 413},
	};
	char req[512];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(req, sizeof req,
		         "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: "
		         "Bearer " KEY "\r\n"
		         "Content-Length: %s\r\n\r\n{}",
		         cases[i].value);
		struct raw r;
		request(e.port, req, &r);
		if (r.status != cases[i].status)
			fail_msg("Content-Length: %s: %ld, want %ld", cases[i].value, r.status,
			         cases[i].status);
		raw_free(&r);
	}
	snprintf(req, sizeof req,
	         "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY "\r\n"
	         "Content-Length: 5000000\r\n\r\n");
	struct raw r;
	request(e.port, req, &r);
	check_error(&r, 413, "too_large", NULL);
	raw_free(&r);
	request(e.port, healthz, &r);
	assert_int_equal(r.status, 200);
	raw_free(&r);
	env_stop(&e);
}

/* A closed guard (api_stop) refuses every new socket; an open one takes
 * them. */
static void test_guard_close(void **state)
{
	(void)state;
	struct api_guard_limits lim = {
	    .max_connections = 8, .head_us = 1000000, .body_us = 1000000, .min_rate = 1};
	struct api_guard *g = NULL;
	struct hr_err err = {0};
	assert_int_equal(api_guard_new(&lim, &g, &err), 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(1234)};
	sa.sin_addr.s_addr = htonl(0x7f000001);
	assert_int_equal(api_guard_accept(g, (struct sockaddr *)&sa, sizeof sa), MHD_YES);
	assert_int_equal(api_guard_open(g), 1);
	api_guard_close(g);
	/* The reservation above was never started: this call gives it back. */
	assert_int_equal(api_guard_accept(g, (struct sockaddr *)&sa, sizeof sa), MHD_NO);
	assert_int_equal(api_guard_open(g), 0);
	assert_int_equal(api_guard_accept(g, (struct sockaddr *)&sa, sizeof sa), MHD_NO);
	assert_int_equal(api_guard_open(g), 0);
	api_guard_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connection_limits),  cmocka_unit_test(test_default_per_address),
	    cmocka_unit_test(test_head_deadline),      cmocka_unit_test(test_body_rate),
	    cmocka_unit_test(test_oversized_body_cut), cmocka_unit_test(test_suspended_not_cut),
	    cmocka_unit_test(test_head_size_sweep),    cmocka_unit_test(test_head_fields_and_url),
	    cmocka_unit_test(test_header_smuggling),   cmocka_unit_test(test_query_checks),
	    cmocka_unit_test(test_content_length),     cmocka_unit_test(test_guard_close),
	};
	return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
