/*
 * test_http2.c - sends to a provider over HTTPS go HTTP/2 and share one
 * multiplexed connection, and dispatch.ca_file makes a private CA trusted.
 *
 * The provider here is nginx (Debian's nginx-light: TLS with a certificate
 * this test makes with the openssl CLI, HTTP/2 by ALPN) in front of the
 * simulator: nginx logs each request's protocol and connection number, so
 * the test sees exactly how the dispatcher's sends travelled. Loopback only.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

#define NGINX "/usr/sbin/nginx"
#define N 300 /* messages sent through nginx */

static struct world W;
static char g_dir[64];
static int g_port;
static pid_t g_nginx = -1;

static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* nginx: TLS and HTTP/2 on g_port, proxying to the simulator over HTTP/1.1;
 * the access log has "protocol connection method uri status" per request. */
static void start_nginx(void)
{
	char conf[3072], path[128];
	snprintf(conf, sizeof conf,
	         "daemon off;\nmaster_process off;\nworker_processes 1;\n"
	         "pid %1$s/nginx.pid;\nerror_log %1$s/nginx-error.log warn;\n"
	         "events { worker_connections 256; }\n"
	         "http {\n"
	         "  log_format h2 '$server_protocol $connection $request_method $uri $status';\n"
	         "  access_log %1$s/access.log h2;\n"
	         "  client_body_temp_path %1$s/body;\n  proxy_temp_path %1$s/proxy;\n"
	         "  fastcgi_temp_path %1$s/fastcgi;\n  uwsgi_temp_path %1$s/uwsgi;\n"
	         "  scgi_temp_path %1$s/scgi;\n"
	         "  upstream sim { server 127.0.0.1:%2$d; keepalive 16; }\n"
	         "  server {\n"
	         "    listen 127.0.0.1:%3$d ssl http2;\n"
	         "    ssl_certificate %1$s/cert.pem;\n    ssl_certificate_key %1$s/key.pem;\n"
	         "    location / {\n"
	         "      proxy_pass http://sim;\n      proxy_http_version 1.1;\n"
	         "      proxy_set_header Connection \"\";\n"
	         "    }\n  }\n}\n",
	         g_dir, W.sim_port, g_port);
	snprintf(path, sizeof path, "%s/nginx.conf", g_dir);
	write_file(path, conf);
	g_nginx = fork();
	assert_true(g_nginx >= 0);
	if (g_nginx == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		char log[128];
		snprintf(log, sizeof log, "%s/nginx.out", g_dir);
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(127);
		execl(NGINX, "nginx", "-p", g_dir, "-c", path, (char *)NULL);
		_exit(127);
	}
	/* Up once it answers over TLS (its certificate is checked as Herald's
	 * sends will check it). */
	char cmd[512];
	snprintf(cmd, sizeof cmd,
	         "curl -s -o /dev/null --http2 --cacert %s/cert.pem https://127.0.0.1:%d/ "
	         ">/dev/null 2>&1",
	         g_dir, g_port);
	for (int i = 0; i < 200; i++) {
		if (system(cmd) == 0)
			return;
		int st;
		if (waitpid(g_nginx, &st, WNOHANG) == g_nginx) {
			g_nginx = -1;
			fail_msg("nginx exited (see %s/nginx.out)", g_dir);
		}
		usleep(50000);
	}
	fail_msg("nginx did not come up on port %d", g_port);
}

static int setup(void **state)
{
	(void)state;
	if (access(NGINX, X_OK) != 0) {
		print_error("%s is missing (scripts/deps.sh test installs nginx-light)\n", NGINX);
		return -1;
	}
	snprintf(g_dir, sizeof g_dir, "/tmp/herald-h2-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	sh("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
	   "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem "
	   ">/dev/null 2>&1",
	   g_dir, g_dir);
	g_port = harness_free_port();
	char accounts[512], extra[256];
	snprintf(accounts, sizeof accounts,
	         "      - id: acme-h2\n        channel: whatsapp\n"
	         "        base_url: https://127.0.0.1:%d\n"
	         "        api_version: \"21.0\"\n        phone_number_id: \"106540352242999\"\n"
	         "        access_token: test-token\n        app_secret: app-secret-123\n"
	         "        verify_token: verify-me\n        rate_limit: 5000\n",
	         g_port);
	/* 100 sends in flight at most: below nginx's 128 streams a connection
	 * (past a server's limit libcurl opens a further connection per send). */
	snprintf(extra, sizeof extra, "dispatch:\n  ca_file: %s/cert.pem\n  max_in_flight: 100\n",
	         g_dir);
	world_init2(&W, accounts, NULL, NULL, NULL, extra);
	world_start_sim(&W);
	start_nginx();
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	if (g_nginx > 0) {
		kill(g_nginx, SIGTERM);
		waitpid(g_nginx, NULL, 0);
	}
	if (g_dir[0] && !getenv("KEEP"))
		sh("rm -rf %s", g_dir);
	return 0;
}

static long sim_unique(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *v = json_object_get(r.json, "unique_messages");
	if (!v)
		v = json_object_get(json_object_get(r.json, "whatsapp"), "unique_messages");
	long n = (long)json_integer_value(v);
	resp_free(&r);
	return n;
}

static bool sim_has(struct world *w, void *arg)
{
	(void)w;
	return sim_unique() >= *(long *)arg;
}

/*
 * N sends through nginx at once: every one arrives over HTTP/2, all on one
 * connection (the dispatcher's transfers wait for the first connection and
 * multiplex on it, up to 100 at a time), and the simulator got each exactly
 * once.
 */
static void test_multiplexed(void **state)
{
	(void)state;
	long base = sim_unique();
	json_t *msgs = json_array();
	for (int i = 0; i < N; i++) {
		char to[32];
		snprintf(to, sizeof to, "4479%08d", 500000 + i);
		json_array_append_new(msgs,
		                      json_pack("{s:s, s:s, s:s, s:s}", "channel", "whatsapp",
		                                "account", "acme-h2", "to", to, "text", "h2"));
	}
	json_t *req = json_pack("{s:o}", "messages", msgs);
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(&W, "/v1/messages:batch", js);
	free(js);
	json_decref(req);
	if (r.status != 202)
		fail_msg("messages:batch answered %ld: %s", r.status, r.body);
	resp_free(&r);
	long want = base + N;
	assert_true(wait_until(sim_has, &W, &want, 60));
	assert_int_equal(sim_unique(), base + N);

	/* nginx writes a request's log line when it has answered it: the last
	 * ones may trail the simulator's count by a moment. */
	char path[128];
	snprintf(path, sizeof path, "%s/access.log", g_dir);
	long sends = 0, other = 0, conns[512];
	int nconn = 0;
	for (int tries = 0; tries < 100; tries++) {
		sends = other = 0;
		nconn = 0;
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		char proto[32], method[16], uri[256];
		long conn;
		int status;
		while (fscanf(f, "%31s %ld %15s %255s %d", proto, &conn, method, uri, &status) ==
		       5) {
			if (strcmp(method, "POST") != 0 || !strstr(uri, "/messages"))
				continue; /* the readiness probe */
			if (strcmp(proto, "HTTP/2.0") != 0 || status != 200) {
				other++;
				continue;
			}
			sends++;
			bool seen = false;
			for (int k = 0; k < nconn; k++)
				seen |= conns[k] == conn;
			if (!seen && nconn < 512)
				conns[nconn++] = conn;
		}
		fclose(f);
		if (sends + other >= N)
			break;
		usleep(50000);
	}
	assert_int_equal(other, 0);
	assert_int_equal(sends, N);
	print_message("%ld sends on %d connections\n", sends, nconn);
	assert_int_equal(nconn, 1);
}

/* A ca_file that cannot be read stops the start, naming the field. */
static void test_bad_ca_file(void **state)
{
	(void)state;
	char cfg[160], out[160];
	snprintf(cfg, sizeof cfg, "%s/bad.yaml", g_dir);
	snprintf(out, sizeof out, "%s/bad.out", g_dir);
	sh("sed 's|ca_file: .*|ca_file: %s/no-such.pem|' %s > %s", g_dir, W.config, cfg);
	const char *bin = getenv("HERALD_BIN");
	assert_non_null(bin);
	char cmd[512];
	snprintf(cmd, sizeof cmd, "timeout 30 %s serve --config %s >%s 2>&1", bin, cfg, out);
	int st = system(cmd);
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	assert_int_not_equal(WEXITSTATUS(st), 124); /* it did not start and wait */
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	char text[4096];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	if (!strstr(text, "dispatch.ca_file") || !strstr(text, "no-such.pem"))
		fail_msg("the error does not name dispatch.ca_file: %s", text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multiplexed),
	    cmocka_unit_test(test_bad_ca_file),
	};
	return cmocka_run_group_tests_name("http2", tests, setup, teardown);
}
