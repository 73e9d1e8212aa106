/*
 * test_limits.c - limits and config changes on a real server: a connection
 * beyond the connection limit is refused at once (not left waiting in the
 * listen backlog), idle connections holding the limit are cut at the request
 * head deadline so service resumes by itself, and an API key removed from the
 * config stops working after a restart.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

/* A kept-alive connection the server has certainly taken: one request
 * answered 200 on it. -1 if the server refused it (a slot was still held
 * by a connection of the harness's that the server had not closed yet). */
static int held_connection(int port)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	int fd = connect_to(port);
	if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
		close(fd);
		return -1;
	}
	char buf[1024];
	size_t n = 0;
	while (n < sizeof buf - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		assert_int_equal(poll(&p, 1, 5000), 1);
		ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = '\0';
		const char *end = strstr(buf, "\r\n\r\n");
		const char *cl = strstr(buf, "Content-Length: ");
		if (end && cl && n >= (size_t)(end + 4 - buf) + strtoul(cl + 16, NULL, 10))
			break;
	}
	buf[n] = '\0';
	if (strncmp(buf, "HTTP/1.1 200", 12) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool healthy(struct world *w, void *arg)
{
	(void)arg;
	char url[128];
	snprintf(url, sizeof url, "%s/healthz", w->api);
	struct resp r = http_t("GET", url, NULL, NULL, NULL, 1000);
	bool ok = r.status == 200;
	resp_free(&r);
	return ok;
}

static void test_connection_limit(void **state)
{
	(void)state;
	struct world w;
	/* All four from 127.0.0.1: no per-address limit, the total is tested. */
	harness_server_extra("  max_connections: 4\n  max_connections_per_ip: 0\n  threads: 1\n"
	                     "  request_head_timeout_ms: 1500\n");
	world_init(&w, NULL, NULL);
	harness_server_extra(NULL);
	world_start_sim(&w);
	world_start_serve(&w);
	char url[128];
	snprintf(url, sizeof url, "%s/healthz", w.api);

	int fds[4];
	int64_t t_end = now_ms() + 5000;
	for (int i = 0; i < 4; i++)
		while ((fds[i] = held_connection(w.api_port)) < 0)
			assert_true(now_ms() < t_end);
	/* Over the limit the connection is closed at once: the client learns
	 * it now instead of waiting in the listen backlog for its timeout. */
	int64_t t0 = now_ms();
	struct resp r = http_t("GET", url, NULL, NULL, NULL, 5000);
	int64_t took = now_ms() - t0;
	assert_int_equal(r.status, 0);
	resp_free(&r);
	if (took > 500)
		fail_msg("a connection over the limit took %lld ms to be refused", (long long)took);

	/* The four stay idle: they are cut 1.5 s after their responses and
	 * service resumes without their clients doing anything. */
	assert_true(wait_until(healthy, &w, NULL, 5.0));
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	world_free(&w);
}

static void test_key_revoked_on_restart(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, NULL, NULL);
	world_start_sim(&w);
	world_start_serve(&w);
	char url[128];
	snprintf(url, sizeof url, "%s/v1/messages", w.api);
	struct resp r = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	world_stop_serve(&w);

	/* Remove tenant "other"'s key from the config, keep the tenant. */
	char cmd[600];
	snprintf(cmd, sizeof cmd,
	         "sed -i 's/api_keys: \\[hk_other_0123456789abcdef\\]/api_keys: []/' %s", w.config);
	assert_int_equal(system(cmd), 0);
	world_start_serve(&w);
	r = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	r = http("GET", url, w.key, NULL, NULL); /* the kept key still works */
	assert_int_equal(r.status, 200);
	resp_free(&r);
	world_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connection_limit),
	    cmocka_unit_test(test_key_revoked_on_restart),
	};
	return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
