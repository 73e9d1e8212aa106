/*
 * test_limits.c - limits and config changes on a real server: the connection
 * limit holds (a connection beyond it is not served while the others are
 * open, and service resumes when they leave), and an API key removed from the config stops working
 * after a restart.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

static void test_connection_limit(void **state)
{
	(void)state;
	struct world w;
	harness_server_extra("  max_connections: 4\n  threads: 1\n");
	world_init(&w, NULL, NULL);
	harness_server_extra(NULL);
	world_start_sim(&w);
	world_start_serve(&w);
	char url[128];
	snprintf(url, sizeof url, "%s/healthz", w.api);

	int fds[4];
	for (int i = 0; i < 4; i++)
		fds[i] = connect_to(w.api_port);
	usleep(200000); /* let the server accept them */
	/* Over the limit the server does not take the connection: it waits in
	 * the listen backlog and gets no answer while the four are open. */
	struct resp r = http_t("GET", url, NULL, NULL, NULL, 1500);
	assert_int_equal(r.status, 0);
	resp_free(&r);

	for (int i = 0; i < 4; i++)
		close(fds[i]);
	usleep(300000);
	r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
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
