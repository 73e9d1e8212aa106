/*
 * harness.c - see harness.h.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "pgtest.h"

#define DEMO_KEY "hk_test_0123456789abcdef"

/*
 * A port nothing listens on, for a server the test starts next. Picked at
 * random below the kernel's ephemeral range (32768-60999 on Linux), not by
 * bind(0): a port from that range may be taken by any outgoing connection
 * (the suite makes thousands) between this check and the server's bind,
 * and once was ("Address already in use", CI 2026-12-07).
 */
static int free_port(void)
{
	static unsigned seed;
	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (int tries = 0; tries < 1000; tries++) {
		int port = 20000 + (int)(rand_r(&seed) % 12000);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_port = htons((uint16_t)port),
		                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
		if (rc == 0)
			return port;
	}
	fail_msg("no free loopback port in 20000-31999");
	return -1;
}

static const char *server_extra, *tenants_extra;

void harness_server_extra(const char *yaml)
{
	server_extra = yaml;
}

void harness_tenants_extra(const char *yaml)
{
	tenants_extra = yaml;
}

/* Writes s to f with @API@ and @SIM@ replaced. */
static void put_subst(FILE *f, const struct world *w, const char *s)
{
	while (s && *s) {
		if (!strncmp(s, "@API@", 5)) {
			fputs(w->api, f);
			s += 5;
		} else if (!strncmp(s, "@SIM@", 5)) {
			fputs(w->sim, f);
			s += 5;
		} else {
			fputc(*s++, f);
		}
	}
}

/*
 * HERALD_IT_STORE=postgres: the worlds of this test process keep their data
 * in PostgreSQL instead of a SQLite file: one real server (tests/pgtest.h),
 * started by the first world and stopped at exit, and a fresh database per
 * world. The password goes through an env: reference as in production
 * (the test server trusts local connections, so its value is not checked).
 */
static struct pgtest it_pg;
static bool it_pg_started;
static int it_pg_seq;

static void it_pg_stop(void)
{
	if (it_pg_started && pgtest_stop(&it_pg) != 0)
		fprintf(stderr, "pgtest: %s\n", it_pg.err);
	it_pg_started = false;
}

bool harness_postgres(void)
{
	const char *v = getenv("HERALD_IT_STORE");
	return v && strcmp(v, "postgres") == 0;
}

void harness_pg_down(void)
{
	assert_true(it_pg_started);
	if (pgtest_server_down(&it_pg) != 0)
		fail_msg("pgtest: %s", it_pg.err);
}

void harness_pg_up(void)
{
	assert_true(it_pg_started);
	if (pgtest_server_up(&it_pg) != 0)
		fail_msg("pgtest: %s", it_pg.err);
}

/* A fresh database for one world; its conninfo goes into w->db. */
static void it_pg_db(struct world *w)
{
	if (!it_pg_started) {
		if (pgtest_start(&it_pg) != 0)
			fail_msg("pgtest: %s", it_pg.err);
		it_pg_started = true;
		atexit(it_pg_stop);
	}
	char name[32];
	snprintf(name, sizeof name, "w%d_%d", (int)getpid(), ++it_pg_seq);
	if (pgtest_createdb(&it_pg, name) != 0)
		fail_msg("pgtest: %s", it_pg.err);
	pgtest_conninfo(&it_pg, name, w->db, sizeof w->db);
	assert_int_equal(setenv("HERALD_IT_PGPASS", "unused-by-trust-auth", 1), 0);
}

void world_init(struct world *w, const char *sim_knobs, const char *extra)
{
	world_init2(w, NULL, NULL, NULL, sim_knobs, extra);
}

void world_init2(struct world *w, const char *accounts, const char *templates,
                 const char *sim_sections, const char *sim_knobs, const char *extra)
{
	memset(w, 0, sizeof *w);
	snprintf(w->dir, sizeof w->dir, "/tmp/herald-it-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->config, sizeof w->config, "%s/herald.yaml", w->dir);
	snprintf(w->db, sizeof w->db, "%s/herald.db", w->dir);
	w->api_port = free_port();
	do
		w->sim_port = free_port();
	while (w->sim_port == w->api_port);
	snprintf(w->api, sizeof w->api, "http://127.0.0.1:%d", w->api_port);
	snprintf(w->sim, sizeof w->sim, "http://127.0.0.1:%d", w->sim_port);
	w->key = DEMO_KEY;

	FILE *f = fopen(w->config, "w");
	assert_non_null(f);
	fprintf(f, "server:\n  listen: 127.0.0.1:%d\n  public_url: %s\n", w->api_port, w->api);
	if (!server_extra || !strstr(server_extra, "threads:"))
		fprintf(f, "  threads: 2\n");
	put_subst(f, w, server_extra);
	if (harness_postgres()) {
		it_pg_db(w);
		fprintf(f,
		        "store:\n  driver: postgres\n  url: \"%s\"\n"
		        "  password: env:HERALD_IT_PGPASS\n",
		        w->db);
	} else {
		fprintf(f, "store:\n  driver: sqlite\n  path: %s\n  synchronous: normal\n", w->db);
	}
	fprintf(f,
	        "tenants:\n"
	        "  - id: acme\n    name: Acme\n    api_keys: [" DEMO_KEY "]\n"
	        "    accounts:\n"
	        "      - id: acme-wa\n        channel: whatsapp\n        base_url: %s\n"
	        "        api_version: \"21.0\"\n        phone_number_id: \"106540352242922\"\n"
	        "        access_token: test-token\n        app_secret: app-secret-123\n"
	        "        verify_token: verify-me\n        rate_limit: 5000\n",
	        w->sim);
	put_subst(f, w, accounts);
	fprintf(f, "    templates:\n"
	           "      - {name: payment_reminder, channel: whatsapp, language: en_GB,"
	           " body: \"Hi {{1}}, pay {{2}}\"}\n");
	put_subst(f, w, templates);
	put_subst(f, w, tenants_extra);
	fprintf(f,
	        "  - id: other\n    name: Other\n    api_keys: [hk_other_0123456789abcdef]\n"
	        "sim:\n  listen: 127.0.0.1:%d\n",
	        w->sim_port);
	put_subst(f, w, sim_sections);
	fprintf(f, "  whatsapp:\n"
	           "    seed: 42\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	           "    read_delay_ms: 40\n    webhook_retry_s: 120\n");
	put_subst(f, w, sim_knobs);
	put_subst(f, w, extra);
	fclose(f);
}

static void spawn(struct proc *p, const char *dir, const char *name, char *const argv[])
{
	snprintf(p->log, sizeof p->log, "%s/%s.log", dir, name);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		/* A test that fails an assertion skips its cleanup: make sure the
		 * servers it started do not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
		execv(argv[0], argv);
		_exit(127);
	}
}

static const char *bin(void)
{
	const char *b = getenv("HERALD_BIN");
	return b ? b : "./herald";
}

static bool up(const char *url)
{
	struct resp r = http("GET", url, NULL, NULL, NULL);
	bool ok = r.status == 200;
	resp_free(&r);
	return ok;
}

static void wait_up(struct proc *p, const char *url)
{
	for (int i = 0; i < 300; i++) {
		if (up(url))
			return;
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			char cmd[600];
			snprintf(cmd, sizeof cmd, "cat %s >&2", p->log);
			(void)system(cmd);
			fail_msg("process exited while starting (log %s)", p->log);
		}
		usleep(50000);
	}
	fail_msg("%s did not come up", url);
}

void world_start_sim(struct world *w)
{
	char *argv[] = {(char *)bin(), "sim", "--config", w->config, NULL};
	spawn(&w->simp, w->dir, "sim", argv);
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", w->sim);
	wait_up(&w->simp, url);
}

void world_start_serve(struct world *w)
{
	char *argv[] = {(char *)bin(), "serve", "--config", w->config, NULL};
	spawn(&w->serve, w->dir, "serve", argv);
	char url[128];
	snprintf(url, sizeof url, "%s/healthz", w->api);
	wait_up(&w->serve, url);
}

static void stop(struct proc *p, int sig, bool want_clean)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, sig);
	int st = 0;
	for (int i = 0; i < 600; i++) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid)
			break;
		usleep(50000);
		if (i == 599) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			fail_msg("process %d did not stop (log %s)", p->pid, p->log);
		}
	}
	p->pid = 0;
	if (want_clean && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		char cmd[600];
		snprintf(cmd, sizeof cmd, "tail -n 60 %s >&2", p->log);
		(void)system(cmd);
		fail_msg("process did not exit cleanly (status %d; log %s)", st, p->log);
	}
}

void world_stop_serve(struct world *w)
{
	stop(&w->serve, SIGTERM, true);
}
void world_kill9_serve(struct world *w)
{
	stop(&w->serve, SIGKILL, false);
}

void world_free(struct world *w)
{
	stop(&w->serve, SIGTERM, true);
	stop(&w->simp, SIGTERM, true);
	if (!getenv("HERALD_KEEP")) {
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
		(void)system(cmd);
	}
}

/* ---- HTTP ---- */

struct buf {
	char *p;
	size_t n;
};

static size_t on_data(char *p, size_t s, size_t n, void *arg)
{
	struct buf *b = arg;
	b->p = realloc(b->p, b->n + s * n + 1);
	memcpy(b->p + b->n, p, s * n);
	b->n += s * n;
	b->p[b->n] = '\0';
	return s * n;
}

struct resp http(const char *method, const char *url, const char *key, const char *body,
                 const char *const *extra)
{
	return http_t(method, url, key, body, extra, 60000);
}

struct resp http_t(const char *method, const char *url, const char *key, const char *body,
                   const char *const *extra, long timeout_ms)
{
	struct resp r = {0};
	struct buf b = {0};
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char auth[4096]; /* a JWT bearer token runs to hundreds of bytes */
	/* Every header and option is checked (status 0 if one fails): a test
	 * never sends a request that lacks part of what it asked for. */
	CURLcode cc = c ? CURLE_OK : CURLE_FAILED_INIT;
#define HDR(line)                                                                                  \
	do {                                                                                       \
		if (cc == CURLE_OK) {                                                              \
			struct curl_slist *n_ = curl_slist_append(h, line);                        \
			if (n_)                                                                    \
				h = n_;                                                            \
			else                                                                       \
				cc = CURLE_OUT_OF_MEMORY;                                          \
		}                                                                                  \
	} while (0)
#define OPT(o, v)                                                                                  \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(c, o, v);                                            \
	} while (0)
	if (key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		HDR(auth);
	}
	if (body)
		HDR("Content-Type: application/json");
	for (; extra && *extra; extra++)
		HDR(*extra);
	OPT(CURLOPT_URL, url);
	OPT(CURLOPT_CUSTOMREQUEST, method);
	if (body)
		OPT(CURLOPT_POSTFIELDS, body);
	OPT(CURLOPT_HTTPHEADER, h);
	OPT(CURLOPT_WRITEFUNCTION, on_data);
	OPT(CURLOPT_WRITEDATA, &b);
	OPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	OPT(CURLOPT_NOSIGNAL, 1L);
	OPT(CURLOPT_PROTOCOLS_STR, "http,https");
	OPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#undef OPT
#undef HDR
	if (cc != CURLE_OK)
		fprintf(stderr, "harness: cannot set up %s %s: %s\n", method, url,
		        curl_easy_strerror(cc));
	else if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	r.body = b.p ? b.p : strdup("");
	r.json = json_loads(r.body, JSON_DECODE_ANY, NULL);
	return r;
}

void resp_free(struct resp *r)
{
	json_decref(r->json);
	free(r->body);
	memset(r, 0, sizeof *r);
}

struct resp api_post(struct world *w, const char *path, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", w->api, path);
	return http("POST", url, w->key, body, NULL);
}

struct resp api_get(struct world *w, const char *path)
{
	char url[1024];
	snprintf(url, sizeof url, "%s%s", w->api, path);
	return http("GET", url, w->key, NULL, NULL);
}

bool wait_until(bool (*pred)(struct world *, void *), struct world *w, void *arg, double timeout_s)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (pred(w, arg))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >
		    timeout_s)
			return false;
		usleep(100000);
	}
}

int harness_free_port(void)
{
	return free_port();
}

json_t *api_get_json(struct world *w, const char *path)
{
	struct resp r = api_get(w, path);
	if (r.status != 200 || !r.json)
		fail_msg("GET %s: %ld %s", path, r.status, r.body ? r.body : "");
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

json_t *world_message(struct world *w, const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	return api_get_json(w, path);
}

struct status_want {
	const char *id, *status;
};

static bool has_status(struct world *w, void *arg)
{
	const struct status_want *x = arg;
	json_t *m = world_message(w, x->id);
	const char *st = json_string_value(json_object_get(m, "status"));
	bool ok = st && strcmp(st, x->status) == 0;
	json_decref(m);
	return ok;
}

void world_wait_status(struct world *w, const char *id, const char *status, double timeout_s)
{
	struct status_want x = {id, status};
	if (wait_until(has_status, w, &x, timeout_s))
		return;
	static char shown[8192];
	json_t *m = world_message(w, id);
	char *s = json_dumps(m, JSON_INDENT(1));
	snprintf(shown, sizeof shown, "%s", s ? s : "");
	free(s);
	json_decref(m);
	fail_msg("message %s did not reach %s in %.0f s: %s", id, status, timeout_s, shown);
}

long world_failure_code(struct world *w, const char *channel, const char *code, char *meaning,
                        size_t size)
{
	json_t *j = api_get_json(w, "/v1/stats/daily");
	long n = -1;
	meaning[0] = '\0';
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(j, "failure_codes"), i, f)
	{
		const char *ch = json_string_value(json_object_get(f, "channel"));
		const char *c = json_string_value(json_object_get(f, "code"));
		if (!ch || !c || strcmp(ch, channel) || strcmp(c, code))
			continue;
		n = (long)json_integer_value(json_object_get(f, "count"));
		const char *mean = json_string_value(json_object_get(f, "meaning"));
		snprintf(meaning, size, "%s", mean ? mean : "");
	}
	json_decref(j);
	return n;
}

struct resp metrics_get(struct world *w)
{
	char url[128];
	snprintf(url, sizeof url, "%s/metrics", w->api);
	return http("GET", url, w->key, NULL, NULL);
}

long count_status(struct world *w, const char *status)
{
	struct resp r = metrics_get(w);
	char needle[96];
	snprintf(needle, sizeof needle, "herald_queue_depth{status=\"%s\"} ", status);
	long n = -1;
	const char *p = r.body ? strstr(r.body, needle) : NULL;
	if (p)
		n = strtol(p + strlen(needle), NULL, 10);
	resp_free(&r);
	return n;
}

/* ---------------------------------------------------------------------------
 * Campaigns.
 * ------------------------------------------------------------------------- */

json_t *world_batch(struct world *w, const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s", id);
	return api_get_json(w, path);
}

long batch_messages(json_t *b, const char *status)
{
	return (long)json_integer_value(json_object_get(json_object_get(b, "messages"), status));
}

long batch_rows(json_t *b, const char *what)
{
	return (long)json_integer_value(json_object_get(json_object_get(b, "rows"), what));
}

static size_t hbuf_cb(char *d, size_t sz, size_t n, void *arg);

struct resp world_upload(struct world *w, const char *path, const char *filename,
                         const char *const *fields)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	curl_mime *m = curl_mime_init(c);
	curl_mimepart *part = curl_mime_addpart(m);
	assert_int_equal(curl_mime_name(part, "file"), CURLE_OK);
	assert_int_equal(curl_mime_filedata(part, path), CURLE_OK);
	assert_int_equal(curl_mime_filename(part, filename), CURLE_OK);
	for (const char *const *f = fields; f && *f; f += 2) {
		part = curl_mime_addpart(m);
		assert_int_equal(curl_mime_name(part, f[0]), CURLE_OK);
		assert_int_equal(curl_mime_data(part, f[1], CURL_ZERO_TERMINATED), CURLE_OK);
	}
	char url[128], auth[128];
	snprintf(url, sizeof url, "%s/v1/batches", w->api);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", w->key);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	struct hbuf body = {0};
	assert_int_equal(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_MIMEPOST, m), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HTTPHEADER, h), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hbuf_cb), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEDATA, &body), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L), CURLE_OK);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		fail_msg("upload of %s: %s", path, curl_easy_strerror(rc));
	struct resp r = {0};
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	r.body = body.p ? body.p : strdup("");
	r.json = json_loads(r.body, 0, NULL);
	curl_slist_free_all(h);
	curl_mime_free(m);
	curl_easy_cleanup(c);
	return r;
}

/* ---------------------------------------------------------------------------
 * HTTP with the response's headers, and event streams held open.
 * ------------------------------------------------------------------------- */

static size_t hbuf_cb(char *d, size_t sz, size_t n, void *arg)
{
	struct hbuf *b = arg;
	char *p = realloc(b->p, b->n + sz * n + 1);
	if (!p)
		return 0;
	memcpy(p + b->n, d, sz * n);
	b->p = p;
	b->n += sz * n;
	p[b->n] = '\0';
	return sz * n;
}

void hresp_free(struct hresp *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

#define HOPT(o, v) assert_int_equal(curl_easy_setopt(c, o, v), CURLE_OK)

struct hresp http_h(struct world *w, const char *method, const char *path,
                    const char *const *headers, const char *body, bool gzip, const char *iface)
{
	struct hresp r = {0};
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[1024];
	snprintf(url, sizeof url, "%s%s", w->api, path);
	struct curl_slist *h = NULL;
	for (; headers && *headers; headers++)
		h = curl_slist_append(h, *headers);
	struct hbuf b = {0}, hd = {0};
	HOPT(CURLOPT_URL, url);
	if (!strcmp(method, "HEAD"))
		HOPT(CURLOPT_NOBODY, 1L);
	else
		HOPT(CURLOPT_CUSTOMREQUEST, method);
	if (body)
		HOPT(CURLOPT_POSTFIELDS, body);
	HOPT(CURLOPT_HTTPHEADER, h);
	HOPT(CURLOPT_WRITEFUNCTION, hbuf_cb);
	HOPT(CURLOPT_WRITEDATA, &b);
	HOPT(CURLOPT_HEADERFUNCTION, hbuf_cb);
	HOPT(CURLOPT_HEADERDATA, &hd);
	HOPT(CURLOPT_TIMEOUT_MS, 20000L);
	HOPT(CURLOPT_NOSIGNAL, 1L);
	if (gzip)
		HOPT(CURLOPT_ACCEPT_ENCODING, "gzip");
	if (iface)
		HOPT(CURLOPT_INTERFACE, iface);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.body = b.p ? b.p : strdup("");
	r.len = b.n;
	r.headers = hd.p ? hd.p : strdup("");
	r.json = json_loads(r.body, 0, NULL);
	return r;
}

const char *hresp_header(const struct hresp *r, const char *name)
{
	static char v[1024];
	v[0] = '\0';
	size_t nl = strlen(name);
	for (const char *p = r->headers; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "") {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *s = p + nl + 1;
			while (*s == ' ')
				s++;
			size_t n = strcspn(s, "\r\n");
			if (n >= sizeof v)
				n = sizeof v - 1;
			memcpy(v, s, n);
			v[n] = '\0';
			return v;
		}
	}
	return v;
}

void hstream_open(CURLM *multi, struct world *w, struct hstream *st, const char *path,
                  const char *const *headers)
{
	memset(st, 0, sizeof *st);
	CURL *c = st->c = curl_easy_init();
	assert_non_null(c);
	char url[512];
	snprintf(url, sizeof url, "%s%s", w->api, path);
	for (; headers && *headers; headers++)
		st->h = curl_slist_append(st->h, *headers);
	HOPT(CURLOPT_URL, url);
	HOPT(CURLOPT_HTTPHEADER, st->h);
	HOPT(CURLOPT_WRITEFUNCTION, hbuf_cb);
	HOPT(CURLOPT_WRITEDATA, &st->b);
	HOPT(CURLOPT_NOSIGNAL, 1L);
	HOPT(CURLOPT_PRIVATE, st);
	assert_int_equal(curl_multi_add_handle(multi, c), CURLM_OK);
}

void hstream_close(CURLM *multi, struct hstream *st)
{
	if (!st->c)
		return;
	curl_multi_remove_handle(multi, st->c);
	curl_easy_cleanup(st->c);
	curl_slist_free_all(st->h);
	free(st->b.p);
	memset(st, 0, sizeof *st);
}

bool hstreams_until(CURLM *multi, bool (*pred)(void *), void *arg, double timeout_s)
{
	for (double waited = 0;; waited += 0.05) {
		int running, left, nfds;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		while ((m = curl_multi_info_read(multi, &left)))
			if (m->msg == CURLMSG_DONE) {
				struct hstream *st;
				curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&st);
				st->done = true;
			}
		if (pred(arg))
			return true;
		if (waited >= timeout_s)
			return false;
		curl_multi_poll(multi, NULL, 0, 50, &nfds);
	}
}
