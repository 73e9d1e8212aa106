/*
 * test_cli.c - `herald send` and `herald messages` against a fake API server
 * (a small MHD server on a loopback port that records each request and
 * answers what the test set). stdout and stderr are captured per call.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <jansson.h>
#include <microhttpd.h>

int cli_main(int argc, char **argv);

/* ---------------------------------------------------------------------------
 * The fake server.
 * ------------------------------------------------------------------------- */

static struct fake {
	pthread_mutex_t lock;
	/* What the next request gets. */
	unsigned status;
	char reply[4096];
	bool replayed;
	/* What the last request was. */
	char method[16];
	char url[1024];
	char auth[256];
	char idem[256];
	char ctype[128];
	char body[4096];
	int requests;
} F = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct MHD_Daemon *fake_mhd;
static char fake_url[64];
static char tmpdir[64];

struct fake_req {
	char body[4096];
	size_t len;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	(void)cls, (void)kind;
	size_t l = strlen(F.url);
	snprintf(F.url + l, sizeof F.url - l, "?%s=%s", key,
	         value ? value : "");
	return MHD_YES;
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload, size_t *upload_size, void **req)
{
	(void)cls, (void)version;
	struct fake_req *r = *req;
	if (!r) {
		*req = calloc(1, sizeof *r);
		return *req ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		if (n > sizeof r->body - 1 - r->len)
			n = sizeof r->body - 1 - r->len;
		memcpy(r->body + r->len, upload, n);
		r->len += n;
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&F.lock);
	F.requests++;
	snprintf(F.method, sizeof F.method, "%s", method);
	snprintf(F.url, sizeof F.url, "%s", url);
	/* Query arguments in order, decoded, as "?k=v?k2=v2". */
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, NULL);
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	snprintf(F.auth, sizeof F.auth, "%s", v ? v : "");
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	snprintf(F.idem, sizeof F.idem, "%s", v ? v : "");
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	snprintf(F.ctype, sizeof F.ctype, "%s", v ? v : "");
	r->body[r->len] = '\0';
	snprintf(F.body, sizeof F.body, "%s", r->body);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(F.reply), F.reply, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (F.replayed)
		MHD_add_response_header(resp, "Idempotent-Replayed", "true");
	unsigned status = F.status;
	pthread_mutex_unlock(&F.lock);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void fake_done(void *cls, struct MHD_Connection *c, void **req,
                      enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	free(*req);
	*req = NULL;
}

static void fake_answer(unsigned status, const char *reply, bool replayed)
{
	pthread_mutex_lock(&F.lock);
	F.status = status;
	snprintf(F.reply, sizeof F.reply, "%s", reply);
	F.replayed = replayed;
	F.requests = 0;
	F.body[0] = F.url[0] = F.idem[0] = F.auth[0] = '\0';
	pthread_mutex_unlock(&F.lock);
}

/* ---------------------------------------------------------------------------
 * Running the CLI with captured output.
 * ------------------------------------------------------------------------- */

struct run {
	int rc;
	char out[16384];
	char err[4096];
};

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs `herald ARGS...` (NULL-terminated) and captures stdout/stderr. */
static void run_cli(struct run *res, ...)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = "herald";
	va_list ap;
	va_start(ap, res);
	for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;

	char po[128], pe[128];
	snprintf(po, sizeof po, "%s/out", tmpdir);
	snprintf(pe, sizeof pe, "%s/err", tmpdir);
	fflush(stdout);
	fflush(stderr);
	int so = dup(1), se = dup(2);
	int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(so >= 0 && se >= 0 && fo >= 0 && fe >= 0);
	dup2(fo, 1);
	dup2(fe, 2);
	res->rc = cli_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so), close(se), close(fo), close(fe);
	slurp(po, res->out, sizeof res->out);
	slurp(pe, res->err, sizeof res->err);
}

#define assert_contains(hay, needle)                                               \
	do {                                                                       \
		if (!strstr((hay), (needle)))                                      \
			fail_msg("'%s' not in:\n%s", (needle), (hay));             \
	} while (0)

static int setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/herald-test-cli-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	fake_mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, fake_handler,
	                            NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
	                            fake_done, NULL, MHD_OPTION_END);
	assert_non_null(fake_mhd);
	snprintf(fake_url, sizeof fake_url, "http://127.0.0.1:%u",
	         MHD_get_daemon_info(fake_mhd, MHD_DAEMON_INFO_BIND_PORT)->port);
	setenv("HERALD_URL", fake_url, 1);
	setenv("HERALD_API_KEY", "k-123", 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	MHD_stop_daemon(fake_mhd);
	char p[128];
	snprintf(p, sizeof p, "%s/out", tmpdir);
	unlink(p);
	snprintf(p, sizeof p, "%s/err", tmpdir);
	unlink(p);
	rmdir(tmpdir);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Tests.
 * ------------------------------------------------------------------------- */

static void test_usage_errors(void **state)
{
	(void)state;
	static const struct {
		const char *args[12];
		const char *err;
	} cases[] = {
	    {{"send", "--text", "hi"}, "--to is required"},
	    {{"send", "--to", "1", "--text", "hi", "--template", "t", "--lang", "en"},
	     "exactly one of --text, --template, --document or --image"},
	    {{"send", "--to", "1"}, "exactly one of --text, --template, --document or --image"},
	    {{"send", "--to", "1", "--image", "u", "--document", "v"},
	     "exactly one of --text, --template, --document or --image"},
	    {{"send", "--to", "1", "--text", "hi", "--lang", "en"}, "go with --template"},
	    {{"send", "--to", "1", "--text", "hi", "--header-text", "x"},
	     "--header-text/--header-image/--header-document go with --template"},
	    {{"send", "--to", "1", "--template", "t", "--lang", "en", "--header-text", "x",
	      "--header-image", "u"},
	     "at most one of --header-text, --header-image or --header-document"},
	    {{"send", "--to", "1", "--image", "u", "--filename", "f"},
	     "--filename goes with --document or --header-document"},
	    {{"send", "--to", "1", "--text", "hi", "--caption", "c"},
	     "--caption goes with --document or --image"},
	    {{"send", "--to", "1", "--image", "u", "--button", "a:b"}, "--button goes with --text"},
	    {{"send", "--to", "1", "--text", "hi", "--button", "yes"},
	     "--button needs ID:TITLE, got 'yes'"},
	    {{"send", "--to", "1", "--text", "hi", "--button", ":Yes"},
	     "--button needs ID:TITLE, got ':Yes'"},
	    {{"send", "--to", "1", "--text", "hi", "--option", "=1"},
	     "--option needs KEY=VALUE, got '=1'"},
	    {{"send", "--to", "1", "--text", "hi", "--option", "ttl"},
	     "--option needs KEY=VALUE, got 'ttl'"},
	    {{"messages", "list", "--document", "u"}, "unexpected argument"},
	    {{"send", "--to", "1", "--template", "t"}, "--template needs --lang"},
	    {{"send", "--to", "1", "--text", "hi", "--param", "x"}, "go with --template"},
	    {{"send", "--to", "1", "--text", "hi", "--timeout-ms", "5"}, "goes with --sync"},
	    {{"send", "--to", "1", "--text", "hi", "--colour", "red"}, "unknown option '--colour'"},
	    {{"send", "--to"}, "--to needs a value"},
	    {{"send", "--to", "1", "--text", "hi", "--limit", "3"}, "belong to 'messages list'"},
	    {{"messages"}, "usage: herald messages"},
	    {{"messages", "delete", "X"}, "unknown subcommand 'delete'"},
	    {{"messages", "get"}, "give one message id"},
	    {{"messages", "get", "A", "B"}, "give one message id"},
	    {{"messages", "list", "--text", "x"}, "unexpected argument"},
	    {{"bogus"}, "unknown command 'bogus'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct run r;
		const char *const *a = cases[i].args;
		run_cli(&r, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
		        a[11], NULL);
		if (r.rc != 2)
			fail_msg("case %zu: rc %d, stderr: %s", i, r.rc, r.err);
		assert_contains(r.err, cases[i].err);
	}
	/* Nothing reached the server. */
	assert_int_equal(F.requests, 0);

	struct run r;
	run_cli(&r, "send", "--help", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "usage: herald send");
	run_cli(&r, "messages", "list", "--help", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "usage: herald messages get");

	/* No key anywhere. */
	unsetenv("HERALD_API_KEY");
	run_cli(&r, "send", "--to", "1", "--text", "hi", NULL);
	setenv("HERALD_API_KEY", "k-123", 1);
	assert_int_equal(r.rc, 2);
	assert_contains(r.err, "no API key: set HERALD_API_KEY or pass --key");
}

static void test_unreachable(void **state)
{
	(void)state;
	/* A port that was just free: bind, read the number, close. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t sl = sizeof sa;
	getsockname(s, (struct sockaddr *)&sa, &sl);
	close(s);
	char url[64], want[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%u", ntohs(sa.sin_port));
	snprintf(want, sizeof want, "herald: cannot reach %s: Connection refused", url);
	struct run r;
	run_cli(&r, "send", "--url", url, "--to", "1", "--text", "hi", NULL);
	assert_int_equal(r.rc, 3);
	assert_contains(r.err, want);
	assert_contains(r.err, "(is `herald serve` running?)");
	run_cli(&r, "messages", "list", "--url", url, NULL);
	assert_int_equal(r.rc, 3);
	assert_contains(r.err, want);
}

static void test_send_text(void **state)
{
	(void)state;
	fake_answer(202, "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ0\",\"status\":\"queued\",\"channel\":"
	                 "\"whatsapp\",\"account\":\"demo-wa\",\"to\":\"447911123456\"}", false);
	struct run r;
	run_cli(&r, "send", "--to", "+447911123456", "--text", "Hello \"you\"", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out,
	                "queued 01JABCDEFGHJKMNPQRSTVWXYZ0  whatsapp/demo-wa -> 447911123456");
	assert_string_equal(F.method, "POST");
	assert_string_equal(F.url, "/v1/messages");
	assert_string_equal(F.auth, "Bearer k-123");
	assert_string_equal(F.ctype, "application/json");
	assert_string_equal(F.idem, "");
	json_t *j = json_loads(F.body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "channel")), "whatsapp");
	assert_string_equal(json_string_value(json_object_get(j, "to")), "+447911123456");
	assert_string_equal(json_string_value(json_object_get(j, "text")), "Hello \"you\"");
	assert_null(json_object_get(j, "mode"));
	assert_null(json_object_get(j, "account"));
	assert_null(json_object_get(j, "template"));
	json_decref(j);

	/* --json prints the API's body as is. */
	run_cli(&r, "send", "--to", "1", "--text", "x", "--json", "--key", "other-key", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ0\",\"status\":\"queued\","
	                           "\"channel\":\"whatsapp\",\"account\":\"demo-wa\",\"to\":"
	                           "\"447911123456\"}\n");
	assert_string_equal(F.auth, "Bearer other-key");
}

static void test_send_template_sync(void **state)
{
	(void)state;
	fake_answer(200, "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ1\",\"status\":\"sent\",\"channel\":"
	                 "\"whatsapp\",\"account\":\"wa2\",\"to\":\"447911123456\","
	                 "\"provider_id\":\"wamid.XYZ\"}", true);
	struct run r;
	run_cli(&r, "send", "--to", "447911123456", "--template", "payment_reminder", "--lang",
	        "en_GB", "--param", "Ana", "--param", "\xc2\xa3" "120.00", "--account", "wa2",
	        "--sync", "--timeout-ms", "5000", "--idempotency-key", "order-42", "--priority",
	        "bulk", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "sent 01JABCDEFGHJKMNPQRSTVWXYZ1");
	assert_contains(r.out, "provider id wamid.XYZ");
	assert_contains(r.out, "(idempotent replay)");
	assert_string_equal(F.idem, "order-42");
	json_t *j = json_loads(F.body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "account")), "wa2");
	assert_string_equal(json_string_value(json_object_get(j, "mode")), "sync");
	assert_string_equal(json_string_value(json_object_get(j, "priority")), "bulk");
	assert_int_equal(json_integer_value(json_object_get(j, "timeout_ms")), 5000);
	assert_null(json_object_get(j, "text"));
	json_t *t = json_object_get(j, "template");
	assert_string_equal(json_string_value(json_object_get(t, "name")), "payment_reminder");
	assert_string_equal(json_string_value(json_object_get(t, "language")), "en_GB");
	json_t *p = json_object_get(t, "parameters");
	assert_int_equal(json_array_size(p), 2);
	assert_string_equal(json_string_value(json_array_get(p, 1)), "\xc2\xa3" "120.00");
	json_decref(j);

	/* A sync send that failed at the provider exits 1 and says why. */
	fake_answer(200, "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ2\",\"status\":\"failed\",\"channel\":"
	                 "\"whatsapp\",\"account\":\"wa2\",\"to\":\"1\",\"error\":{\"code\":"
	                 "\"131026\",\"message\":\"Message undeliverable\"}}", false);
	run_cli(&r, "send", "--to", "1", "--text", "x", "--sync", NULL);
	assert_int_equal(r.rc, 1);
	assert_contains(r.out, "failed 01JABCDEFGHJKMNPQRSTVWXYZ2");
	assert_contains(r.out, "error 131026: Message undeliverable");
}

/* Each content option becomes the request's canonical shape. */
static void test_send_content(void **state)
{
	(void)state;
	fake_answer(202, "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ6\",\"status\":\"queued\",\"channel\":"
	                 "\"telegram\",\"account\":\"tg\",\"to\":\"42\"}", false);
	struct run r;
	run_cli(&r, "send", "--channel", "telegram", "--to", "42", "--text", "Pay now?", "--button",
	        "yes:Yes, pay", "--button", "no:Not now: later", "--option", "parse_mode=HTML",
	        "--option", "disable=true", "--option", "n=600", NULL);
	assert_int_equal(r.rc, 0);
	json_t *j = json_loads(F.body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "channel")), "telegram");
	assert_string_equal(json_string_value(json_object_get(j, "text")), "Pay now?");
	json_t *b = json_object_get(j, "buttons");
	assert_int_equal(json_array_size(b), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(b, 0), "id")), "yes");
	assert_string_equal(json_string_value(json_object_get(json_array_get(b, 0), "title")),
	                    "Yes, pay");
	assert_string_equal(json_string_value(json_object_get(json_array_get(b, 1), "id")), "no");
	assert_string_equal(json_string_value(json_object_get(json_array_get(b, 1), "title")),
	                    "Not now: later");
	json_t *o = json_object_get(j, "options");
	assert_int_equal(json_object_size(o), 3);
	assert_string_equal(json_string_value(json_object_get(o, "parse_mode")), "HTML");
	assert_true(json_is_true(json_object_get(o, "disable")));
	assert_int_equal(json_integer_value(json_object_get(o, "n")), 600);
	json_decref(j);

	run_cli(&r, "send", "--to", "1", "--document", "https://x.test/s.pdf", "--filename",
	        "s.pdf", "--caption", "Your statement", NULL);
	assert_int_equal(r.rc, 0);
	j = json_loads(F.body, 0, NULL);
	json_t *d = json_object_get(j, "document");
	assert_int_equal(json_object_size(d), 3);
	assert_string_equal(json_string_value(json_object_get(d, "url")), "https://x.test/s.pdf");
	assert_string_equal(json_string_value(json_object_get(d, "filename")), "s.pdf");
	assert_string_equal(json_string_value(json_object_get(d, "caption")), "Your statement");
	assert_null(json_object_get(j, "text"));
	assert_null(json_object_get(j, "options"));
	json_decref(j);

	run_cli(&r, "send", "--to", "1", "--image", "https://x.test/a.png", "--option",
	        "ttl=86400s", NULL);
	assert_int_equal(r.rc, 0);
	j = json_loads(F.body, 0, NULL);
	json_t *im = json_object_get(j, "image");
	assert_int_equal(json_object_size(im), 1);
	assert_string_equal(json_string_value(json_object_get(im, "url")), "https://x.test/a.png");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "options"),
	                                                      "ttl")),
	                    "86400s");
	json_decref(j);

	/* Template headers: text (its parameter), image, document (+ filename). */
	static const struct {
		const char *opt, *val, *type, *key;
	} hdrs[] = {
		{"--header-text", "Ana", "text", NULL},
		{"--header-image", "https://x.test/h.png", "image", "url"},
		{"--header-document", "https://x.test/h.pdf", "document", "url"},
	};
	for (size_t i = 0; i < sizeof hdrs / sizeof *hdrs; i++) {
		bool doc = !strcmp(hdrs[i].type, "document");
		run_cli(&r, "send", "--to", "1", "--template", "statement", "--lang", "en",
		        "--param", "May", hdrs[i].opt, hdrs[i].val, doc ? "--filename" : NULL,
		        "may.pdf", NULL);
		if (r.rc != 0)
			fail_msg("%s: rc %d: %s", hdrs[i].opt, r.rc, r.err);
		j = json_loads(F.body, 0, NULL);
		json_t *t = json_object_get(j, "template");
		assert_string_equal(json_string_value(json_object_get(t, "name")), "statement");
		assert_int_equal(json_array_size(json_object_get(t, "parameters")), 1);
		json_t *h = json_object_get(t, "header");
		assert_string_equal(json_string_value(json_object_get(h, "type")), hdrs[i].type);
		if (hdrs[i].key) {
			assert_string_equal(json_string_value(json_object_get(h, hdrs[i].key)),
			                    hdrs[i].val);
		} else {
			json_t *p = json_object_get(h, "parameters");
			assert_int_equal(json_array_size(p), 1);
			assert_string_equal(json_string_value(json_array_get(p, 0)), hdrs[i].val);
		}
		if (doc)
			assert_string_equal(json_string_value(json_object_get(h, "filename")),
			                    "may.pdf");
		else
			assert_null(json_object_get(h, "filename"));
		json_decref(j);
	}
}

static void test_api_errors(void **state)
{
	(void)state;
	fake_answer(401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"invalid API key\","
	                 "\"field\":\"Authorization\"}}", false);
	struct run r;
	run_cli(&r, "send", "--to", "1", "--text", "x", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "herald: the API key was refused (401)\n");

	fake_answer(422, "{\"error\":{\"code\":\"invalid\",\"message\":\"to is required\","
	                 "\"field\":\"to\"}}", false);
	run_cli(&r, "send", "--to", "1", "--text", "x", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "herald: to is required (field: to)\n");

	fake_answer(404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no message X\"}}",
	            false);
	run_cli(&r, "messages", "get", "X", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "herald: no message X (404)\n");

	fake_answer(502, "<html>bad gateway</html>", false);
	run_cli(&r, "messages", "list", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "herald: the server answered HTTP 502\n");
}

static void test_messages_get(void **state)
{
	(void)state;
	fake_answer(200,
	            "{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ3\",\"channel\":\"whatsapp\",\"account\":"
	            "\"demo-wa\",\"to\":\"447911123456\",\"status\":\"read\",\"priority\":"
	            "\"transactional\",\"content\":{\"type\":\"text\",\"text\":\"hi\"},\"body\":"
	            "\"hi\",\"attempts\":1,\"provider_id\":\"wamid.A\",\"error\":null,"
	            "\"created_at\":\"2026-01-15T10:00:00.000001Z\",\"updated_at\":"
	            "\"2026-01-15T10:00:03.000000Z\",\"events\":["
	            "{\"id\":1,\"at\":\"2026-01-15T10:00:00.000001Z\",\"type\":\"accepted\","
	            "\"source\":\"api\",\"status\":\"queued\",\"applied\":true,"
	            "\"provider_at\":null,\"detail\":null},"
	            "{\"id\":7,\"at\":\"2026-01-15T10:00:03.000000Z\",\"type\":\"webhook_status\","
	            "\"source\":\"webhook\",\"status\":\"delivered\",\"applied\":false,"
	            "\"provider_at\":null,\"detail\":{\"ignored\":\"stale\"}}]}",
	            false);
	struct run r;
	run_cli(&r, "messages", "get", "01JABCDEFGHJKMNPQRSTVWXYZ3", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.method, "GET");
	assert_string_equal(F.url, "/v1/messages/01JABCDEFGHJKMNPQRSTVWXYZ3");
	assert_contains(r.out, "status     read\n");
	assert_contains(r.out, "channel    whatsapp (account demo-wa)\n");
	assert_contains(r.out, "provider   wamid.A\n");
	assert_contains(r.out, "TIME                         TYPE             STATUS       SOURCE"
	                       "      APPLIED  DETAIL\n");
	assert_contains(r.out, "2026-01-15T10:00:00.000001Z  accepted         queued       api   "
	                       "      yes      \n");
	assert_contains(r.out, "2026-01-15T10:00:03.000000Z  webhook_status   delivered    webhoo"
	                       "k     no       {\"ignored\":\"stale\"}\n");
}

static void test_messages_list(void **state)
{
	(void)state;
	fake_answer(200,
	            "{\"data\":[{\"id\":\"01JABCDEFGHJKMNPQRSTVWXYZ5\",\"channel\":\"whatsapp\","
	            "\"account\":\"demo-wa\",\"to\":\"447911123456\",\"status\":\"queued\","
	            "\"created_at\":\"2026-01-15T10:00:00.000001Z\",\"body\":\"line one\\nline two "
	            "and a long tail that will not fit in the column\"}],"
	            "\"next_cursor\":\"01JABCDEFGHJKMNPQRSTVWXYZ5\"}",
	            false);
	struct run r;
	run_cli(&r, "messages", "list", "--status", "queued", "--to", "+44 7911", "--since",
	        "2026-01-01T00:00:00Z", "--limit", "1", "--cursor", "01JABCDEFGHJKMNPQRSTVWXYZ9",
	        "--channel", "whatsapp", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/messages?status=queued?channel=whatsapp?to=+44 7911"
	                           "?since=2026-01-01T00:00:00Z?limit=1"
	                           "?cursor=01JABCDEFGHJKMNPQRSTVWXYZ9");
	assert_contains(r.out, "ID                          CREATED");
	assert_contains(r.out, "01JABCDEFGHJKMNPQRSTVWXYZ5  2026-01-15T10:00:00.000001Z  queued   "
	                       "    whatsapp   447911123456      "
	                       "line one line two and a long tail tha...\n");
	assert_contains(r.out, "1 message; next page: --cursor 01JABCDEFGHJKMNPQRSTVWXYZ5\n");
}

/* ---------------------------------------------------------------------------
 * herald batch
 * ------------------------------------------------------------------------- */

#define BATCH_JSON(status)                                                                 \
	"{\"id\":\"01JBATCH000000000000000001\",\"name\":\"spring\",\"status\":\"" status     \
	"\",\"channel\":\"whatsapp\",\"account\":\"demo-wa\",\"template\":null,"              \
	"\"rows\":{\"total\":3,\"valid\":2,\"invalid\":1,\"duplicates\":0},"                   \
	"\"messages\":{\"queued\":0,\"delivered\":1,\"failed\":1},"                            \
	"\"progress\":{\"made\":2,\"settled\":2,\"per_second\":1.5,\"eta_seconds\":null},"    \
	"\"times\":{\"created_at\":\"2026-01-15T10:00:00Z\"},\"stopped\":2,"                  \
	"\"errors\":[{\"row\":3,\"column\":\"phone\",\"reason\":\"not a \\u001b[31mnumber\"}],"  \
	"\"retries\":[]}"

static void batch_file(char *path, size_t size, const char *name, const char *content)
{
	snprintf(path, size, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
}

static void test_batch_usage_errors(void **state)
{
	(void)state;
	char csv[128];
	batch_file(csv, sizeof csv, "people.csv", "phone,who\n+447400300001,Ann\n");
	static const struct {
		const char *args[12];
		const char *err;
	} cases[] = {
	    {{"batch"}, "usage: herald batch upload"},
	    {{"batch", "frobnicate"}, "unknown subcommand 'frobnicate'"},
	    {{"batch", "upload", "--name", "n", "--channel", "whatsapp", "--text", "t"},
	     "give the file to upload"},
	    {{"batch", "upload", "@CSV", "--channel", "whatsapp", "--text", "t"},
	     "--name is required"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--text", "t"}, "--channel is required"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w"},
	     "give exactly one of --text or --template"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--template", "x"},
	     "give exactly one of --text or --template"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--template", "x"},
	     "--template needs --language"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--language", "en"},
	     "--language goes with --template"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--start", "soon"},
	     "--start needs auto, true or false, got 'soon'"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--separator", ";;"},
	     "--separator needs one character, got ';;'"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--region", "GBR"},
	     "--region needs a two-letter region such as GB, got 'GBR'"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--dry-run", "--watch"},
	     "--watch does not go with --dry-run"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--start", "false", "--watch"},
	     "--watch does not go with --start false"},
	    {{"batch", "upload", "/nonexistent/x.csv", "--name", "n", "--channel", "w", "--text",
	      "t"},
	     "cannot read '/nonexistent/x.csv': No such file or directory"},
	    {{"batch", "upload", "@CSV", "--name", "n", "--channel", "w", "--text", "t",
	      "--csv"},
	     "--csv does not go with 'upload'"},
	    {{"batch", "upload", "@CSV", "--name"}, "--name needs a value"},
	    {{"batch", "list", "--colour", "red"}, "unknown option '--colour'"},
	    {{"batch", "list", "X"}, "unexpected argument 'X'"},
	    {{"batch", "list", "--statuses", "failed"}, "--statuses does not go with 'list'"},
	    {{"batch", "status"}, "give the batch id"},
	    {{"batch", "status", "A", "B"}, "too many arguments"},
	    {{"batch", "status", "A", "--watch"}, "--watch does not go with 'status'"},
	    {{"batch", "cancel", "A", "--force"}, "--force does not go with 'cancel'"},
	    {{"batch", "retry", "A", "--start", "auto"}, "--start needs true or false, got 'auto'"},
	    {{"batch", "retry", "A", "--statuses", "failed,,sent"},
	     "--statuses needs names such as failed,undelivered"},
	    {{"batch", "report", "A", "--format", "csv"}, "--format does not go with 'report'"},
	    {{"batch", "export", "A", "-o", "x.xlsx"}, "--format is required (xlsx or csv)"},
	    {{"batch", "export", "A", "--format", "pdf", "-o", "x.pdf"},
	     "--format needs xlsx or csv, got 'pdf'"},
	    {{"batch", "export", "A", "--format", "csv"}, "-o FILE is required"},
	    {{"batch", "export", "A", "--format", "csv", "-o", "@CSV"},
	     "exists: pass --force to overwrite it"},
	    {{"batch", "export", "A", "--format", "csv", "-o"}, "-o needs a value"},
	};
	fake_answer(200, "{}", false);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct run r;
		const char *a[12];
		for (int k = 0; k < 12; k++)
			a[k] = cases[i].args[k] && !strcmp(cases[i].args[k], "@CSV") ? csv
			                                                             : cases[i].args[k];
		run_cli(&r, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
		        a[11], NULL);
		if (r.rc != 2)
			fail_msg("case %zu: rc %d, stderr: %s", i, r.rc, r.err);
		assert_contains(r.err, cases[i].err);
	}
	assert_int_equal(F.requests, 0);

	/* Usage first, then the key. */
	struct run r;
	unsetenv("HERALD_API_KEY");
	run_cli(&r, "batch", "status", "A", NULL);
	setenv("HERALD_API_KEY", "k-123", 1);
	assert_int_equal(r.rc, 2);
	assert_contains(r.err, "no API key");
	run_cli(&r, "batch", "--help", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "herald batch export ID --format xlsx|csv -o FILE [--force]");
	unlink(csv);
}

/* The file and every field go as multipart/form-data; the answer is
 * summarised, with the server's escape codes neutralised. */
static void test_batch_upload(void **state)
{
	(void)state;
	char csv[128];
	batch_file(csv, sizeof csv, "people.csv", "phone,who\n+447400300001,Ann\n");
	fake_answer(201, BATCH_JSON("validated"), false);
	struct run r;
	run_cli(&r, "batch", "upload", csv, "--name", "spring", "--channel", "whatsapp",
	        "--account", "demo-wa", "--template", "promo", "--language", "en", "--params",
	        "who,amount", "--recipient-column", "phone", "--region", "GB", "--unit", "north",
	        "--schedule-at", "2026-12-24T09:00:00Z", "--start", "auto", "--sheet", "Data",
	        "--separator", ";", NULL);
	if (r.rc != 0)
		fail_msg("rc %d: %s", r.rc, r.err);
	assert_string_equal(F.method, "POST");
	assert_string_equal(F.url, "/v1/batches");
	assert_int_equal(strncmp(F.ctype, "multipart/form-data; boundary=", 30), 0);
	assert_contains(F.body, "name=\"file\"; filename=\"people.csv\"");
	assert_contains(F.body, "phone,who\n+447400300001,Ann\n");
	static const char *const fields[][2] = {
	    {"name", "spring"},          {"channel", "whatsapp"},
	    {"account", "demo-wa"},      {"template_name", "promo"},
	    {"template_language", "en"}, {"params", "who,amount"},
	    {"recipient_column", "phone"}, {"default_region", "GB"},
	    {"unit", "north"},           {"schedule_at", "2026-12-24T09:00:00Z"},
	    {"start", "auto"},           {"sheet", "Data"},
	    {"separator", ";"},
	};
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
		char want[128];
		snprintf(want, sizeof want, "name=\"%s\"\r\n\r\n%s\r\n", fields[i][0], fields[i][1]);
		assert_contains(F.body, want);
	}
	assert_null(strstr(F.body, "dry_run"));
	assert_contains(r.out, "batch 01JBATCH000000000000000001 \"spring\" validated\n"
	                       "rows        3 total, 2 valid, 1 invalid, 0 duplicates\n"
	                       "  row 3, column phone: not a ?[31mnumber\n"
	                       "not started (it has invalid rows): start it with 'herald batch "
	                       "start 01JBATCH000000000000000001'\n");
	/* Not a terminal: progress as plain lines. */
	assert_contains(r.err, "the server is checking the rows\n");
	assert_null(strchr(r.err, '\033'));
	assert_null(strchr(r.out, '\033'));

	/* A dry run says so. */
	fake_answer(200, "{\"dry_run\":true,\"rows\":{\"total\":1,\"valid\":1,\"invalid\":0,"
	                 "\"duplicates\":0},\"errors\":[],\"errors_truncated\":false}",
	            false);
	run_cli(&r, "batch", "upload", csv, "--name", "n", "--channel", "sms", "--text", "hi",
	        "--dry-run", NULL);
	assert_int_equal(r.rc, 0);
	assert_contains(F.body, "name=\"dry_run\"\r\n\r\ntrue\r\n");
	assert_contains(F.body, "name=\"text\"\r\n\r\nhi\r\n");
	assert_contains(r.out, "dry run: nothing was created\n"
	                       "rows        1 total, 1 valid, 0 invalid, 0 duplicates\n");

	/* The API's refusal names the field; exit 1. */
	fake_answer(422, "{\"error\":{\"code\":\"invalid\",\"message\":\"unknown channel\","
	                 "\"field\":\"channel\"}}",
	            false);
	run_cli(&r, "batch", "upload", csv, "--name", "n", "--channel", "fax", "--text", "hi",
	        NULL);
	assert_int_equal(r.rc, 1);
	assert_contains(r.err, "herald: unknown channel (field: channel)\n");
	unlink(csv);
}

/* --watch: one GET a second until a final status; completed exits 0, any
 * other final status 1. */
static void test_batch_watch(void **state)
{
	(void)state;
	char csv[128];
	batch_file(csv, sizeof csv, "w.csv", "phone\n+447400300001\n");
	fake_answer(201, BATCH_JSON("completed"), false);
	struct run r;
	run_cli(&r, "batch", "upload", csv, "--name", "n", "--channel", "whatsapp", "--text",
	        "hi", "--watch", NULL);
	assert_int_equal(r.rc, 0);
	assert_int_equal(F.requests, 2); /* the upload and one GET */
	assert_string_equal(F.method, "GET");
	assert_string_equal(F.url, "/v1/batches/01JBATCH000000000000000001");
	assert_contains(r.out, "batch 01JBATCH000000000000000001 completed: 2 of 2 settled "
	                       "(delivered 1, failed 1)\n");
	fake_answer(200, BATCH_JSON("cancelled"), false);
	run_cli(&r, "batch", "start", "01JBATCH000000000000000001", "--watch", NULL);
	assert_int_equal(r.rc, 1);
	assert_contains(r.out, "batch 01JBATCH000000000000000001 cancelled: 2 of 2 settled");
	assert_null(strchr(r.out, '\033'));
	unlink(csv);
}

static void test_batch_commands(void **state)
{
	(void)state;
	struct run r;
	fake_answer(200, BATCH_JSON("processing"), false);
	run_cli(&r, "batch", "status", "01JBATCH000000000000000001", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches/01JBATCH000000000000000001");
	assert_contains(r.out, "status      processing\n");
	assert_contains(r.out, "progress    2 of 2 settled, 2 made, 1.5/s\n");
	assert_contains(r.out, "messages    delivered 1, failed 1\n");
	run_cli(&r, "batch", "status", "a/b c", "--json", NULL);
	/* Sent percent-encoded (curl refuses a raw space); the fake's MHD
	 * decodes the path it records. */
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches/a/b c");
	assert_contains(r.out, "\"status\":\"processing\"");

	run_cli(&r, "batch", "cancel", "01JBATCH000000000000000001", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.method, "POST");
	assert_string_equal(F.url, "/v1/batches/01JBATCH000000000000000001/cancel");
	assert_string_equal(r.out, "batch 01JBATCH000000000000000001 processing: 2 messages "
	                           "stopped\n");

	run_cli(&r, "batch", "retry", "01JBATCH000000000000000001", "--statuses",
	        "failed, undelivered", "--start", "false", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches/01JBATCH000000000000000001/retry");
	json_t *body = json_loads(F.body, 0, NULL);
	json_t *want = json_pack("{s:[s,s], s:b}", "statuses", "failed", "undelivered", "start", 0);
	assert_true(json_equal(body, want));
	json_decref(body);
	json_decref(want);

	run_cli(&r, "batch", "list", "--status", "processing", "--name", "spr ing", "--limit", "5",
	        NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches?status=processing?name=spr ing?limit=5");

	fake_answer(204, "", false);
	run_cli(&r, "batch", "discard", "01JBATCH000000000000000001", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.method, "DELETE");
	assert_string_equal(r.out, "batch 01JBATCH000000000000000001 discarded\n");
	fake_answer(422, "{\"error\":{\"code\":\"invalid\",\"message\":\"the batch has sent\"}}",
	            false);
	run_cli(&r, "batch", "discard", "01JBATCH000000000000000001", NULL);
	assert_int_equal(r.rc, 1);
	assert_contains(r.err, "the batch has sent (422)");
}

/* report pages with ?after= until next_after is null; a server whose next
 * page does not move forward is not followed twice. */
static void test_batch_report(void **state)
{
	(void)state;
	fake_answer(200, "{\"data\":[{\"row\":5,\"column\":\"phone\",\"recipient\":\"x\","
	                 "\"reason\":\"not a phone number\"}],\"next_after\":5}",
	            false);
	struct run r;
	run_cli(&r, "batch", "report", "B1", NULL);
	assert_int_equal(r.rc, 0);
	assert_int_equal(F.requests, 2);
	assert_string_equal(F.url, "/v1/batches/B1/errors?limit=1000?after=5");
	assert_contains(r.out, "     ROW  COLUMN                REASON\n"
	                       "       5  phone                 not a phone number\n"
	                       "       5  phone                 not a phone number\n"
	                       "2 invalid rows\n");
	fake_answer(200, "row,column,recipient,reason\r\n5,\"phone\",\"x\",\"bad\"\r\n", false);
	run_cli(&r, "batch", "report", "B1", "--csv", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches/B1/errors?format=csv");
	assert_string_equal(r.out, "row,column,recipient,reason\r\n5,\"phone\",\"x\",\"bad\"\r\n");
}

/* export streams to a temporary file moved into place when complete; an
 * existing file needs --force; a refusal leaves nothing behind. */
static void test_batch_export(void **state)
{
	(void)state;
	char out[128];
	snprintf(out, sizeof out, "%s/results.csv", tmpdir);
	fake_answer(200, "id,status\r\n1,delivered\r\n", false);
	struct run r;
	run_cli(&r, "batch", "export", "B1", "--format", "csv", "-o", out, NULL);
	if (r.rc != 0)
		fail_msg("rc %d: %s", r.rc, r.err);
	assert_string_equal(F.url, "/v1/batches/B1/export.csv");
	char got[256];
	slurp(out, got, sizeof got);
	assert_string_equal(got, "id,status\r\n1,delivered\r\n");
	assert_contains(r.out, "(24 bytes)");

	fake_answer(200, "new", false);
	run_cli(&r, "batch", "export", "B1", "--format", "xlsx", "--output", out, NULL);
	assert_int_equal(r.rc, 2);
	assert_int_equal(F.requests, 0);
	slurp(out, got, sizeof got);
	assert_string_equal(got, "id,status\r\n1,delivered\r\n");
	run_cli(&r, "batch", "export", "B1", "--format", "xlsx", "-o", out, "--force", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(F.url, "/v1/batches/B1/export.xlsx");
	slurp(out, got, sizeof got);
	assert_string_equal(got, "new");
	unlink(out);

	fake_answer(404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such batch\"}}",
	            false);
	run_cli(&r, "batch", "export", "B2", "--format", "csv", "-o", out, NULL);
	assert_int_equal(r.rc, 1);
	assert_contains(r.err, "no such batch (404)");
	assert_int_equal(access(out, F_OK), -1);
	/* No temporary file left either: the directory holds only out/err. */
	char cmd[256];
	snprintf(cmd, sizeof cmd, "ls %s | grep -c results", tmpdir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char n[16] = "";
	assert_non_null(fgets(n, sizeof n, p));
	pclose(p);
	assert_string_equal(n, "0\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_send_text),
		cmocka_unit_test(test_send_template_sync),
		cmocka_unit_test(test_send_content),
		cmocka_unit_test(test_api_errors),
		cmocka_unit_test(test_messages_get),
		cmocka_unit_test(test_messages_list),
		cmocka_unit_test(test_batch_usage_errors),
		cmocka_unit_test(test_batch_upload),
		cmocka_unit_test(test_batch_watch),
		cmocka_unit_test(test_batch_commands),
		cmocka_unit_test(test_batch_report),
		cmocka_unit_test(test_batch_export),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
