/*
 * test_plugins.c - business-unit plugins in a real `herald serve`: broken
 * plugin directories refuse the start (exit code and message naming the
 * file); a plugin compiled here with nothing but include/herald/plugin.h
 * loads and answers; a CSV upload to a unit whose plugin prepares rows and
 * skips some before sending, with on_status counting, the stats endpoint
 * reporting, and a slow plugin on another unit timing out in its own
 * messages' audit trails without holding up the first unit.
 *
 * The plugins are the sources in tests/plugins/, built beside this test
 * ($HERALD_TEST_PLUGINS).
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *built(void)
{
	const char *d = getenv("HERALD_TEST_PLUGINS");
	return d ? d : "tests/plugins";
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* dir/plugins holding symlinks to the named built plugins; returns it. */
static const char *plugdir_with(struct world *w, const char *first, ...)
{
	static char dir[400];
	snprintf(dir, sizeof dir, "%s/plugins", w->dir);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s'", dir, dir);
	assert_int_equal(system(cmd), 0);
	va_list ap;
	va_start(ap, first);
	for (const char *n = first; n; n = va_arg(ap, const char *)) {
		char src[600], dst[600];
		snprintf(src, sizeof src, "%s/%s.so", built(), n);
		snprintf(dst, sizeof dst, "%s/%s.so", dir, n);
		assert_int_equal(symlink(src, dst), 0);
	}
	va_end(ap);
	return dir;
}

/* acme's units: a line that ends acme's templates list (harness.h). */
#define ACME_UNITS "    units: [cards, slowu, plain]\n"

/* Runs `herald serve` expecting it to refuse the start: its exit code
 * (waited for up to 30 s) and what it printed. */
static int serve_refused(struct world *w, char *out, size_t outlen)
{
	char log[400];
	snprintf(log, sizeof log, "%s/refused.log", w->dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		FILE *f = freopen(log, "w", stdout);
		if (!f || dup2(fileno(stdout), 2) < 0)
			_exit(126);
		const char *bin = getenv("HERALD_BIN");
		execl(bin ? bin : "./herald", "herald", "serve", "--config", w->config,
		      (char *)NULL);
		_exit(127);
	}
	int st = 0;
	double until = now_s() + 30;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_s() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fail_msg("herald serve did not refuse to start within 30 s");
		}
		usleep(20000);
	}
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	fclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_start_refused(void **state)
{
	(void)state;
	static const struct {
		const char *plugins[3];
		const char *extra;
		const char *want1, *want2;
	} cases[] = {
	    {{"abi", NULL}, "", "abi.so", "speaks plugin ABI 99; this Herald speaks ABI 1"},
	    {{"good", "dup", NULL}, "", "good.so", "like plugin"},
	    {{"nosym", NULL}, "", "nosym.so", "has no symbol herald_plugin"},
	    {{"undef", NULL}, "", "undef.so", "herald_no_such_function"},
	    {{"initfail", NULL},
	     "  config: {initfail: {db: payments}}\n",
	     "initfail.so",
	     "init failed: database payments unreachable"},
	    {{"good", NULL},
	     "  units: {acme/cards: nope}\n",
	     "plugins.units.acme/cards",
	     "plugin 'nope', which is not loaded"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct world w;
		world_init2(&w, NULL, ACME_UNITS, NULL, NULL, NULL);
		const char *dir = plugdir_with(&w, cases[i].plugins[0], cases[i].plugins[1], NULL);
		FILE *f = fopen(w.config, "a");
		assert_non_null(f);
		fprintf(f, "plugins:\n  dir: %s\n%s", dir, cases[i].extra);
		fclose(f);
		char out[4096];
		int code = serve_refused(&w, out, sizeof out);
		if (code != 1 || !strstr(out, cases[i].want1) || !strstr(out, cases[i].want2))
			fail_msg("case %zu: exit %d, output:\n%s", i, code, out);
		/* Nothing half-started: it never listened. */
		assert_null(strstr(out, "listening"));
		world_free(&w);
	}
}

/* A plugin written and compiled here, out of tree: its source and the one
 * public header, nothing else of Herald's. */
static void test_out_of_tree(void **state)
{
	(void)state;
	struct world w;
	world_init2(&w, NULL, ACME_UNITS, NULL, NULL, NULL);
	char dir[400], src[500], so[500], cmd[2000];
	snprintf(dir, sizeof dir, "%s/oot", w.dir);
	snprintf(src, sizeof src, "%s/hello.c", w.dir);
	snprintf(so, sizeof so, "%s/hello.so", dir);
	snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	FILE *f = fopen(src, "w");
	assert_non_null(f);
	fputs("#include <herald/plugin.h>\n"
	      "static int stats(struct herald_ctx *c, struct herald_kv *out)\n"
	      "{\n"
	      "\therald_metric_add(c, \"stats_calls\", 1);\n"
	      "\treturn herald_kv_put(out, \"greeting\", herald_config_get(c, \"greeting\"));\n"
	      "}\n"
	      "HERALD_PLUGIN(.name = \"hello\", .version = \"0.0.1\", .unit_stats = stats);\n",
	      f);
	fclose(f);
	const char *srcdir = getenv("HERALD_SRC");
	snprintf(cmd, sizeof cmd,
	         "cc -std=c17 -Wall -Wextra -Werror -shared -fPIC -I '%s/include' "
	         "'%s' -o '%s'",
	         srcdir ? srcdir : ".", src, so);
	assert_int_equal(system(cmd), 0);
	f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f,
	        "plugins:\n  dir: %s\n  units: {acme/cards: hello}\n"
	        "  config: {hello: {greeting: bonjour}}\n",
	        dir);
	fclose(f);
	world_start_serve(&w);
	struct resp r = api_get(&w, "/v1/plugins");
	assert_int_equal(r.status, 200);
	json_t *pl = json_object_get(r.json, "plugins");
	assert_int_equal(json_array_size(pl), 1);
	json_t *h = json_array_get(pl, 0);
	assert_string_equal(json_string_value(json_object_get(h, "name")), "hello");
	assert_string_equal(json_string_value(json_object_get(h, "version")), "0.0.1");
	assert_int_equal(json_integer_value(json_object_get(h, "abi")), 1);
	assert_int_equal(json_array_size(json_object_get(h, "hooks")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(h, "hooks"), 0)),
	                    "unit_stats");
	assert_string_equal(json_string_value(json_array_get(json_object_get(h, "units"), 0)),
	                    "acme/cards");
	resp_free(&r);
	r = api_get(&w, "/v1/units/cards/stats");
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "plugin")), "hello");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "stats"), "greeting")),
	    "bonjour");
	resp_free(&r);
	/* The CLI lists the same. */
	const char *bin = getenv("HERALD_BIN");
	snprintf(cmd, sizeof cmd, "'%s' plugins list --url %s --key %s", bin ? bin : "./herald",
	         w.api, w.key);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char out[2048];
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	assert_int_equal(pclose(p), 0);
	if (!strstr(out, "NAME") ||
	    !strstr(out, "hello                0.0.1      1   acme/cards                       "
	                 "unit_stats\n"))
		fail_msg("herald plugins list printed:\n%s", out);
	r = metrics_get(&w);
	assert_non_null(strstr(
	    r.body, "herald_plugin_metric_total{plugin=\"hello\",name=\"stats_calls\"} 1\n"));
	assert_non_null(
	    strstr(r.body, "herald_plugin_calls_total{plugin=\"hello\",hook=\"unit_stats\"} 1\n"));
	resp_free(&r);
	world_stop_serve(&w);
	world_free(&w);
}

/* ---- the end-to-end world ---- */

/* POSTs a CSV as a multipart upload with the fields (name, value pairs). */
static struct resp upload_csv(struct world *w, const char *csv, const char *const *fields)
{
	char path[400];
	snprintf(path, sizeof path, "%s/upload.csv", w->dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(csv, f);
	fclose(f);
	return world_upload(w, path, "rows.csv", fields);
}

/* The batch's messages: recipient -> id and status. */
struct msgs {
	size_t n;
	char to[16][32], id[16][32], status[16][16];
};

static void batch_msgs(struct world *w, const char *batch, struct msgs *m)
{
	char path[200];
	snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=100", batch);
	struct resp r = api_get(w, path);
	assert_int_equal(r.status, 200);
	json_t *d = json_object_get(r.json, "data");
	m->n = json_array_size(d);
	assert_true(m->n <= 16);
	for (size_t i = 0; i < m->n; i++) {
		json_t *x = json_array_get(d, i);
		snprintf(m->to[i], sizeof m->to[i], "%s",
		         json_string_value(json_object_get(x, "to")));
		snprintf(m->id[i], sizeof m->id[i], "%s",
		         json_string_value(json_object_get(x, "id")));
		snprintf(m->status[i], sizeof m->status[i], "%s",
		         json_string_value(json_object_get(x, "status")));
	}
	resp_free(&r);
}

static const char *status_of(const struct msgs *m, const char *to)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->to[i], to) == 0)
			return m->status[i];
	return "(none)";
}

static const char *id_of(const struct msgs *m, const char *to)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->to[i], to) == 0)
			return m->id[i];
	fail_msg("no message to %s", to);
	return NULL;
}

static void dump_and_fail(struct world *w, const char *batch, const char *what)
{
	struct msgs m;
	batch_msgs(w, batch, &m);
	for (size_t i = 0; i < m.n; i++)
		fprintf(stderr, "  %s %s %s\n", m.to[i], m.id[i], m.status[i]);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "tail -30 %s >&2", w->serve.log);
	(void)system(cmd);
	fail_msg("%s", what);
}

struct want {
	const char *batch;
	const char *to[8];
	const char *status[8];
};

static bool settled(struct world *w, void *arg)
{
	struct want *x = arg;
	struct msgs m;
	batch_msgs(w, x->batch, &m);
	for (size_t i = 0; x->to[i]; i++)
		if (strcmp(status_of(&m, x->to[i]), x->status[i]) != 0)
			return false;
	return true;
}

/* A message's audit events of type `type` and error code `code` whose
 * detail's error_text starts with text: how many. */
static int events_with(struct world *w, const char *id, const char *type, const char *code,
                       const char *text)
{
	char path[200];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = api_get(w, path);
	assert_int_equal(r.status, 200);
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r.json, "events"), i, e)
	{
		json_t *d = json_object_get(e, "detail");
		if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 &&
		    strcmp(json_string_value(json_object_get(d, "error_code")), code) == 0 &&
		    strncmp(json_string_value(json_object_get(d, "error_text")), text,
		            strlen(text)) == 0)
			n++;
	}
	resp_free(&r);
	return n;
}

static long metric(struct world *w, const char *series)
{
	struct resp r = metrics_get(w);
	assert_int_equal(r.status, 200);
	/* The sample's line, not a # HELP or # TYPE line naming the series. */
	const char *p = r.body;
	while ((p = strstr(p, series)) &&
	       ((p != r.body && p[-1] != '\n') || p[strlen(series)] != ' '))
		p++;
	long v = -1;
	if (p)
		v = atol(p + strlen(series) + 1);
	resp_free(&r);
	return v;
}

struct metric_want {
	const char *series;
	long value;
};

static bool metric_is(struct world *w, void *arg)
{
	struct metric_want *m = arg;
	return metric(w, m->series) == m->value;
}

static void expect_metric(struct world *w, const char *series, long value)
{
	struct metric_want m = {series, value};
	if (!wait_until(metric_is, w, &m, 20))
		fail_msg("%s is %ld, want %ld", series, metric(w, series), value);
}

static const char *const reminder[] = {"template_name", "payment_reminder", "template_language",
                                       "en_GB"};

static struct resp upload_to(struct world *w, const char *unit, const char *name, const char *csv)
{
	const char *const fields[] = {"name",
	                              name,
	                              "channel",
	                              "whatsapp",
	                              reminder[0],
	                              reminder[1],
	                              reminder[2],
	                              reminder[3],
	                              "params",
	                              "who, amount",
	                              "recipient_column",
	                              "phone",
	                              "unit",
	                              unit,
	                              "start",
	                              "true",
	                              NULL};
	return upload_csv(w, csv, fields);
}

static void test_e2e(void **state)
{
	(void)state;
	struct world w;
	world_init2(&w, NULL, ACME_UNITS, NULL, NULL,
	            "dispatch:\n  max_attempts: 2\n  backoff_base_ms: 50\n  backoff_max_ms: 100\n");
	const char *dir = plugdir_with(&w, "good", "slow", "bare", NULL);
	FILE *f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f,
	        "plugins:\n  dir: %s\n  workers: 3\n  hook_timeout_ms: 300\n"
	        "  units: {acme/cards: good, acme/slowu: slow, acme/plain: bare}\n"
	        "  config: {slow: {sleep_ms: 1500}}\n",
	        dir);
	fclose(f);
	world_start_sim(&w);
	world_start_serve(&w);

	/* The slow unit first: its messages hold two of the three workers. */
	struct resp r = upload_to(&w, "slowu", "slow",
	                          "phone,who,amount\n+447911000101,Sam,1\n+447911000102,Sue,2\n");
	if (r.status != 201)
		fail_msg("slow upload answered %ld: %s", r.status, r.body);
	char slow_batch[32];
	snprintf(slow_batch, sizeof slow_batch, "%s",
	         json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);

	double t0 = now_s();
	r = upload_to(&w, "cards", "cards",
	              "phone,who,amount,name,skip\n"
	              "+447911000001,Ana,10,Bank,no\n"
	              "+447911000002,Ben,20,Bank,yes\n"
	              "+447911000009,Cy,30,Bank,no\n"
	              "+447911000008,Di,40,Bank,no\n"
	              "+447911000003,Ed,50,Bank,no\n");
	if (r.status != 201)
		fail_msg("cards upload answered %ld: %s", r.status, r.body);
	char batch[32];
	snprintf(batch, sizeof batch, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 5);
	assert_int_equal(batch_rows(r.json, "valid"), 4);
	assert_int_equal(batch_rows(r.json, "invalid"), 1);
	resp_free(&r);
	/* The skipped row's reason, from the plugin, in the validation report. */
	char path[200];
	snprintf(path, sizeof path, "/v1/batches/%s/errors", batch);
	r = api_get(&w, path);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "plugin good: asked to skip"));
	resp_free(&r);

	/* 01 and 03 allowed (the sim delivers and reads them), 09 skipped by
	 * before_send, 08 refused twice (max_attempts 2): failed. */
	struct want cards = {batch,
	                     {"447911000001", "447911000003", "447911000009", "447911000008"},
	                     {"read", "read", "cancelled", "failed"}};
	if (!wait_until(settled, &w, &cards, 30))
		dump_and_fail(&w, batch, "the cards unit's messages did not settle");
	double cards_s = now_s() - t0;
	struct msgs m;
	batch_msgs(&w, batch, &m);
	assert_int_equal(m.n, 4);
	/* prepare changed the first parameter. */
	snprintf(path, sizeof path, "/v1/messages/%s", id_of(&m, "447911000001"));
	r = api_get(&w, path);
	assert_non_null(strstr(r.body, "Ana from Bank"));
	resp_free(&r);
	/* The audit trails: the plugin's name and reason, exactly once each. */
	assert_int_equal(events_with(&w, id_of(&m, "447911000009"), "skipped", "plugin_skip",
	                             "plugin good: ends in 9"),
	                 1);
	const char *refusal = "plugin good: before_send failed: refuses 8";
	assert_int_equal(
	    events_with(&w, id_of(&m, "447911000008"), "retry", "plugin_error", refusal), 1);
	assert_int_equal(
	    events_with(&w, id_of(&m, "447911000008"), "failed", "plugin_error", refusal), 1);

	/* on_status saw every committed change of the unit's messages:
	 * 2 x sent, delivered, read; 1 cancelled; 08 queued again once and
	 * failed once. */
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_read\"}", 2);
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_sent\"}", 2);
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_delivered\"}",
	              2);
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_cancelled\"}",
	              1);
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_failed\"}", 1);
	expect_metric(&w, "herald_plugin_metric_total{plugin=\"good\",name=\"status_queued\"}", 1);
	/* before_send ran 5 times: 01, 03, 09, and 08 twice. */
	assert_int_equal(
	    metric(&w, "herald_plugin_calls_total{plugin=\"good\",hook=\"before_send\"}"), 5);
	assert_int_equal(
	    metric(&w, "herald_plugin_errors_total{plugin=\"good\",hook=\"before_send\"}"), 2);
	assert_int_equal(metric(&w, "herald_plugin_calls_total{plugin=\"good\",hook=\"prepare\"}"),
	                 5);

	/* The slow unit: each message's hook timed out twice, then it failed;
	 * nothing was sent. The cards unit settled meanwhile. */
	struct want slow = {slow_batch, {"447911000101", "447911000102"}, {"failed", "failed"}};
	if (!wait_until(settled, &w, &slow, 30))
		dump_and_fail(&w, slow_batch, "the slow unit's messages did not fail");
	batch_msgs(&w, slow_batch, &m);
	/* Past its deadline running ("took more than 300 ms") or still queued
	 * behind the plugin's own sleeping calls ("not started within 300 ms"). */
	const char *late = "plugin slow: before_send ";
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(events_with(&w, m.id[i], "retry", "plugin_timeout", late), 1);
		assert_int_equal(events_with(&w, m.id[i], "failed", "plugin_timeout", late), 1);
	}
	assert_true(cards_s < 15);

	/* The export: the plugin's columns last, filled per row (01 is
	 * "paid" by the plugin's rule, every other row not). */
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", batch);
	r = api_get(&w, path);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "Replied at (UTC),paid,plugin\r\n"));
	int yes = 0, no = 0;
	for (const char *q = r.body; (q = strstr(q, ",yes,good\r\n")); q++)
		yes++;
	for (const char *q = r.body; (q = strstr(q, ",no,good\r\n")); q++)
		no++;
	assert_int_equal(yes, 1);
	assert_int_equal(no, 4);
	resp_free(&r);
	assert_int_equal(
	    metric(&w, "herald_plugin_calls_total{plugin=\"good\",hook=\"export_row\"}"), 5);

	/* The stats endpoint: the plugin's figures and Herald's own. */
	r = api_get(&w, "/v1/units/cards/stats");
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "plugin")), "good");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "stats"), "unit")), "cards");
	json_t *hj = json_object_get(r.json, "herald");
	assert_int_equal(json_integer_value(json_object_get(hj, "campaigns")), 1);
	assert_int_equal(json_integer_value(json_object_get(hj, "messages")), 4);
	resp_free(&r);
	/* A plugin without the hook (the default: no figures of its own), and a
	 * unit without a plugin. */
	r = api_get(&w, "/v1/units/plain/stats");
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(r.json, "plugin")), "bare");
	assert_int_equal(json_object_size(json_object_get(r.json, "stats")), 0);
	resp_free(&r);
	/* A hook past its deadline answers 502 naming the plugin, at once. */
	double t1 = now_s();
	r = api_get(&w, "/v1/units/slowu/stats");
	assert_int_equal(r.status, 502);
	assert_non_null(strstr(r.body, "plugin slow: unit_stats took more than 300 ms"));
	/* The code of errors.c's table (and the OpenAPI document), the outcome beside it. */
	json_t *pe = json_object_get(r.json, "error");
	assert_string_equal(json_string_value(json_object_get(pe, "code")), "plugin_failed");
	assert_non_null(json_string_value(json_object_get(pe, "outcome")));
	assert_true(now_s() - t1 < 5);
	/* errors.c's code (the document's ErrorCode), the hook's outcome beside it. */
	json_t *e502 = json_object_get(r.json, "error");
	assert_string_equal(json_string_value(json_object_get(e502, "code")), "plugin_failed");
	assert_string_equal(json_string_value(json_object_get(e502, "outcome")), "timeout");
	assert_int_equal(json_object_size(e502), 3);
	resp_free(&r);

	/* Another tenant sees none of acme's units or files. */
	char url[200];
	snprintf(url, sizeof url, "%s/v1/units/cards/stats", w.api);
	struct resp o = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(o.status, 404);
	resp_free(&o);
	snprintf(url, sizeof url, "%s/v1/plugins", w.api);
	o = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(o.status, 200);
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(o.json, "plugins"), i, x)
	{
		assert_int_equal(json_array_size(json_object_get(x, "units")), 0);
		assert_null(json_object_get(x, "file"));
	}
	assert_int_equal(json_array_size(json_object_get(o.json, "plugins")), 3);
	resp_free(&o);
	/* acme's own list names its bindings. */
	r = api_get(&w, "/v1/plugins");
	assert_non_null(strstr(r.body, "acme/cards"));
	assert_non_null(strstr(r.body, "acme/slowu"));
	resp_free(&r);

	world_stop_serve(&w); /* waits for the slow hooks still sleeping */
	world_free(&w);
}

/* ---- before_send changes the route (issue 13) ---- */

#define RR_SID "AC0123456789abcdef0123456789abcdef"

/* WhatsApp sends the simulator accepted for a recipient (digits). */
static long wa_accepted(struct world *w, const char *to)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/counts", w->sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	long n = (long)json_integer_value(json_object_get(json_object_get(r.json, "sends"), to));
	resp_free(&r);
	return n;
}

/* SMS sends the simulator accepted for a recipient (E.164). */
static long sms_accepted(struct world *w, const char *to)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/sms/recipients/%s", w->sim, to);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	long n =
	    r.status == 200 ? (long)json_integer_value(json_object_get(r.json, "accepted")) : 0;
	resp_free(&r);
	return n;
}

static json_t *message_json(struct world *w, const char *id)
{
	char path[200];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = api_get(w, path);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

/* Events of the message of type `type`: how many. */
static int events_of(json_t *m, const char *type)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e) n +=
	    strcmp(jstr(e, "type"), type) == 0;
	return n;
}

/*
 * The plugin (good.c) moves 05 to SMS with its own text, 04 to acme's second
 * WhatsApp number, and tries 06 on another tenant's SMS account and 10 on an
 * account that does not exist: both refused, sent as they were. 01 goes as
 * it is. What the simulator received, per channel and recipient, is exact;
 * the audit trails name the plugin and reason once; before_send ran once
 * per message (a moved message is not asked again).
 */
static void test_reroute(void **state)
{
	(void)state;
	struct world w;
	harness_tenants_extra(
	    "  - id: beta\n    name: Beta\n    api_keys: [hk_beta_0123456789abcdef0]\n"
	    "    accounts:\n"
	    "      - id: beta-sms\n        channel: sms\n        base_url: @SIM@\n"
	    "        account_sid: " RR_SID "\n        auth_token: tw-token-123\n"
	    "        from: \"+15005550007\"\n");
	world_init2(&w,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: " RR_SID "\n        auth_token: tw-token-123\n"
	            "        from: \"+15005550006\"\n        rate_limit: 200\n"
	            "      - id: acme-wa2\n        channel: whatsapp\n        base_url: @SIM@\n"
	            "        api_version: \"21.0\"\n        phone_number_id: \"106540352242999\"\n"
	            "        access_token: test-token\n        app_secret: app-secret-123\n"
	            "        verify_token: verify-me\n        rate_limit: 5000\n",
	            ACME_UNITS,
	            "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	            "    recipients:\n      \"+447911000055\": {undelivered: 30003}\n",
	            /* Two dispatch loops: acme-wa hashes to loop 0, acme-sms to
	             * loop 1, so the reroutes below cross loops. */
	            NULL, "dispatch:\n  threads: 2\n");
	harness_tenants_extra(NULL);
	const char *dir = plugdir_with(&w, "good", NULL);
	FILE *f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f, "plugins:\n  dir: %s\n  units: {acme/cards: good}\n", dir);
	fclose(f);
	world_start_sim(&w);
	world_start_serve(&w);

	struct resp r = upload_to(&w, "cards", "routes",
	                          "phone,who,amount\n"
	                          "+447911000005,Eve,5\n"
	                          "+447911000004,Flo,4\n"
	                          "+447911000006,Gus,6\n"
	                          "+447911000010,Hal,10\n"
	                          "+447911000001,Ivy,1\n");
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	char batch[32];
	snprintf(batch, sizeof batch, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "valid"), 5);
	resp_free(&r);

	/* SMS stops at delivered; WhatsApp is read. The list shows each
	 * message's recipient as its channel now spells it. */
	struct want all = {
	    batch,
	    {"+447911000005", "447911000004", "447911000006", "447911000010", "447911000001"},
	    {"delivered", "read", "read", "read", "read"}};
	if (!wait_until(settled, &w, &all, 30))
		dump_and_fail(&w, batch, "the rerouted campaign did not settle");
	struct msgs m;
	batch_msgs(&w, batch, &m);
	assert_int_equal(m.n, 5);

	/* What the simulator saw: 05 by SMS only, the others by WhatsApp only,
	 * each exactly once. */
	assert_int_equal(sms_accepted(&w, "+447911000005"), 1);
	assert_int_equal(wa_accepted(&w, "447911000005"), 0);
	static const char *const wa[] = {"447911000004", "447911000006", "447911000010",
	                                 "447911000001"};
	for (size_t i = 0; i < 4; i++) {
		char e164[40];
		snprintf(e164, sizeof e164, "+%s", wa[i]);
		assert_int_equal(wa_accepted(&w, wa[i]), 1);
		assert_int_equal(sms_accepted(&w, e164), 0);
	}
	char url[160];
	snprintf(url, sizeof url, "%s/sim/stats", w.sim);
	r = http("GET", url, NULL, NULL, NULL);
	/* Every channel's sends counted together: 4 WhatsApp and 1 SMS, nothing
	 * else (no second send of a moved message on its old route). */
	assert_int_equal(json_integer_value(json_object_get(r.json, "accepted")), 5);
	assert_int_equal(json_integer_value(json_object_get(r.json, "duplicates")), 0);
	resp_free(&r);

	/* 05: on SMS now, saying the plugin's text; one "rerouted" event. */
	json_t *j = message_json(&w, id_of(&m, "+447911000005"));
	assert_string_equal(jstr(j, "channel"), "sms");
	assert_string_equal(jstr(j, "account"), "acme-sms");
	assert_string_equal(jstr(j, "body"), "SMS from good");
	assert_string_equal(jstr(json_object_get(j, "content"), "type"), "text");
	assert_string_equal(jstr(json_object_get(j, "content"), "text"), "SMS from good");
	assert_int_equal(json_integer_value(json_object_get(j, "segments")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
	assert_int_equal(events_of(j, "rerouted"), 1);
	assert_int_equal(events_of(j, "route_refused"), 0);
	assert_int_equal(events_with(&w, id_of(&m, "+447911000005"), "rerouted", "plugin_rerouted",
	                             "plugin good: prefers sms"),
	                 1);
	json_decref(j);
	/* 04: the second WhatsApp number, the same content. */
	j = message_json(&w, id_of(&m, "447911000004"));
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_string_equal(jstr(j, "account"), "acme-wa2");
	assert_int_equal(events_with(&w, id_of(&m, "447911000004"), "rerouted", "plugin_rerouted",
	                             "plugin good: second number"),
	                 1);
	json_decref(j);
	/* 06 and 10: refused, sent as they were, the refusal audited once
	 * (another tenant's account reads like an unknown one). */
	static const char *const refused[][2] = {
	    {"447911000006", "plugin good: tries beta's account (route to beta-sms refused: no "
	                     "such account of the message's tenant)"},
	    {"447911000010", "plugin good: tries an unknown account (route to nope refused: no "
	                     "such account of the message's tenant)"}};
	for (size_t i = 0; i < 2; i++) {
		j = message_json(&w, id_of(&m, refused[i][0]));
		assert_string_equal(jstr(j, "channel"), "whatsapp");
		assert_string_equal(jstr(j, "account"), "acme-wa");
		assert_int_equal(events_of(j, "rerouted"), 0);
		assert_int_equal(events_with(&w, id_of(&m, refused[i][0]), "route_refused",
		                             "plugin_route_refused", refused[i][1]),
		                 1);
		json_decref(j);
	}
	/* before_send ran once per message. */
	assert_int_equal(
	    metric(&w, "herald_plugin_calls_total{plugin=\"good\",hook=\"before_send\"}"), 5);

	/* prepare sets a row's channel, policy and route (issue 13 item 2;
	 * row numbers count the header as row 1):
	 * checked like the upload's own fields, a bad one a row error naming
	 * the row and the field; the good rows go on. A text campaign, so the
	 * text can go on SMS. */
	const char *const text_fields[] = {
	    "name", "sending",          "channel", "whatsapp", "text",  "Hi {{1}}", "params",
	    "who",  "recipient_column", "phone",   "unit",     "cards", "start",    "true",
	    NULL};
	r = upload_csv(&w,
	               "phone,who,send_by,send_account,policy,route\n"
	               "+447911000021,Ann,sms,,,\n"
	               "+447911000022,Bob,,,at_most_once,\n"
	               "+447911000023,Cat,,,,\"whatsapp,sms:acme-sms\"\n"
	               "+447911000031,Dan,fax,,,\n"
	               "+447911000032,Eli,sms,beta-sms,,\n"
	               "+447911000033,Fay,,,maybe,\n"
	               "+447911000041,Gil,,,,\"sms,whatsapp\"\n"
	               "+447911000042,Hob,,,,\"whatsapp,,sms\"\n",
	               text_fields);
	if (r.status != 201)
		fail_msg("sending upload answered %ld: %s", r.status, r.body);
	snprintf(batch, sizeof batch, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 8);
	if (batch_rows(r.json, "valid") != 3)
		fail_msg("valid rows: %s", strstr(r.body, "\"errors\""));
	assert_int_equal(batch_rows(r.json, "valid"), 3);
	assert_int_equal(batch_rows(r.json, "invalid"), 5);
	static const struct {
		long row;
		const char *column, *reason;
	} bad[] = {
	    {5, "channel", "plugin good set channel: unknown channel 'fax'"},
	    {6, "account", "plugin good set account: no account 'beta-sms' for this tenant"},
	    {7, "delivery_policy", "plugin good set delivery_policy: delivery_policy must be "},
	    {8, "route", "plugin good set route: the route's first step is the message itself"},
	    {9, "route",
	     "plugin good: route 'whatsapp,,sms' must be channels separated by "
	     "commas, each with ':account' or not (step 2 is empty)"},
	};
	json_t *errs = json_object_get(r.json, "errors");
	assert_int_equal(json_array_size(errs), 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(errs, i);
		assert_int_equal(json_integer_value(json_object_get(e, "row")), bad[i].row);
		assert_string_equal(jstr(e, "column"), bad[i].column);
		if (strncmp(jstr(e, "reason"), bad[i].reason, strlen(bad[i].reason)) != 0)
			fail_msg("row %ld: reason '%s', want '%s...'", bad[i].row,
			         jstr(e, "reason"), bad[i].reason);
	}
	resp_free(&r);
	struct want sending = {batch,
	                       {"+447911000021", "447911000022", "447911000023"},
	                       {"delivered", "read", "read"}};
	if (!wait_until(settled, &w, &sending, 30))
		dump_and_fail(&w, batch, "the per-row sending campaign did not settle");
	batch_msgs(&w, batch, &m);
	assert_int_equal(m.n, 3);
	assert_int_equal(sms_accepted(&w, "+447911000021"), 1);
	assert_int_equal(wa_accepted(&w, "447911000021"), 0);
	assert_int_equal(wa_accepted(&w, "447911000022"), 1);
	assert_int_equal(wa_accepted(&w, "447911000023"), 1);
	assert_int_equal(sms_accepted(&w, "+447911000023"), 0); /* read: no fallback */
	j = message_json(&w, id_of(&m, "+447911000021"));
	assert_string_equal(jstr(j, "channel"), "sms");
	assert_string_equal(jstr(j, "account"), "acme-sms");
	assert_string_equal(jstr(j, "body"), "Hi Ann");
	json_decref(j);
	j = message_json(&w, id_of(&m, "447911000022"));
	assert_string_equal(jstr(j, "delivery_policy"), "at_most_once");
	json_decref(j);
	j = message_json(&w, id_of(&m, "447911000023"));
	assert_string_equal(jstr(j, "delivery_policy"), "at_least_once");
	json_decref(j);

	/* Fallback still makes at most one follow-up per step: 55's route is
	 * [whatsapp, sms] (set by prepare); before_send moves step 0 to SMS,
	 * where it is undelivered; the route's one follow-up (step 1, SMS) is
	 * made once, before_send keeps it where it is (the same account), and
	 * it is undelivered too: two SMS, no WhatsApp, two messages. */
	r = upload_csv(&w,
	               "phone,who,send_by,send_account,policy,route\n"
	               "+447911000055,Kim,,,,\"whatsapp,sms:acme-sms\"\n",
	               text_fields);
	if (r.status != 201)
		fail_msg("routed upload answered %ld: %s", r.status, r.body);
	snprintf(batch, sizeof batch, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "valid"), 1);
	resp_free(&r);
	double until = now_s() + 30;
	for (;;) {
		batch_msgs(&w, batch, &m);
		if (m.n == 2 && strcmp(m.status[0], "undelivered") == 0 &&
		    strcmp(m.status[1], "undelivered") == 0)
			break;
		if (now_s() > until)
			dump_and_fail(&w, batch,
			              "the routed message and its follow-up did not settle");
		usleep(100000);
	}
	assert_int_equal(sms_accepted(&w, "+447911000055"), 2);
	assert_int_equal(wa_accepted(&w, "447911000055"), 0);
	int rerouted = 0, fallbacks = 0;
	for (size_t i = 0; i < 2; i++) {
		j = message_json(&w, m.id[i]);
		assert_string_equal(jstr(j, "channel"), "sms");
		assert_string_equal(jstr(j, "account"), "acme-sms");
		rerouted += events_of(j, "rerouted");
		fallbacks += events_of(j, "fallback");
		json_decref(j);
	}
	assert_int_equal(rerouted, 1);
	assert_int_equal(fallbacks, 1);
	/* before_send: 5 + 3 + the routed message and its follow-up. */
	assert_int_equal(
	    metric(&w, "herald_plugin_calls_total{plugin=\"good\",hook=\"before_send\"}"), 10);

	/* beta sees none of it: acme's message is 404 to beta's key. */
	snprintf(url, sizeof url, "%s/v1/messages/%s", w.api, m.id[0]);
	struct resp o = http("GET", url, "hk_beta_0123456789abcdef0", NULL, NULL);
	assert_int_equal(o.status, 404);
	resp_free(&o);

	world_stop_serve(&w);
	world_free(&w);
}

/* The reason of the invalid rows of a batch from row `after` + 1 on (the
 * first `n` of them), into reasons[]. */
static size_t error_reasons(struct world *w, const char *batch, long after, size_t n, long rows[],
                            char reasons[][160])
{
	char path[200];
	snprintf(path, sizeof path, "/v1/batches/%s/errors?after=%ld&limit=%zu", batch, after, n);
	struct resp r = api_get(w, path);
	assert_int_equal(r.status, 200);
	json_t *d = json_object_get(r.json, "data");
	size_t k = json_array_size(d);
	for (size_t i = 0; i < k && i < n; i++) {
		json_t *e = json_array_get(d, i);
		rows[i] = (long)json_integer_value(json_object_get(e, "row"));
		snprintf(reasons[i], 160, "%s", jstr(e, "reason"));
	}
	resp_free(&r);
	return k;
}

/*
 * A prepare that hangs, on an upload of 1,000 rows: rows go to the plugin
 * 256 per call, each call with 4 x hook_timeout_ms (300 ms); the first row
 * of each call is still running at its deadline (its own error), the
 * others are not reached; after 3 such calls the rest of the upload is
 * refused without calling the plugin. Exact counts and reasons, and the
 * upload takes seconds, not 1,000 x 1.5 s.
 */
static void test_prepare_timeouts(void **state)
{
	(void)state;
	struct world w;
	world_init2(&w, NULL, ACME_UNITS, NULL, NULL, NULL);
	const char *dir = plugdir_with(&w, "slow", NULL);
	FILE *f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f,
	        "plugins:\n  dir: %s\n  hook_timeout_ms: 300\n  units: {acme/slowu: slow}\n"
	        "  config: {slow: {prepare_sleep_ms: 1500}}\n",
	        dir);
	fclose(f);
	world_start_sim(&w);
	world_start_serve(&w);
	char *csv = malloc(40 * 1001 + 32);
	assert_non_null(csv);
	size_t o = (size_t)sprintf(csv, "phone,who,amount\n");
	for (int i = 0; i < 1000; i++)
		o += (size_t)sprintf(csv + o, "+4479110%05d,N%d,%d\n", i, i, i);
	double t0 = now_s();
	struct resp r = upload_to(&w, "slowu", "hangs", csv);
	double took = now_s() - t0;
	free(csv);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	assert_int_equal(batch_rows(r.json, "total"), 1000);
	assert_int_equal(batch_rows(r.json, "valid"), 0);
	assert_int_equal(batch_rows(r.json, "invalid"), 1000);
	char batch[32];
	snprintf(batch, sizeof batch, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	assert_true(took < 20);
	/* File rows 2..257, 258..513, 514..769 were three calls; 770..1001
	 * were not called. */
	long rows[4];
	char why[4][160];
	static const long first[] = {1, 257, 513};
	for (size_t c = 0; c < 3; c++) {
		assert_int_equal(error_reasons(&w, batch, first[c], 2, rows, why), 2);
		assert_int_equal(rows[0], first[c] + 1);
		assert_string_equal(why[0], "plugin slow: prepare took more than 300 ms");
		assert_int_equal(rows[1], first[c] + 2);
		assert_string_equal(why[1], "plugin slow: prepare not reached: the 256 rows of its "
		                            "call took more than 1200 ms");
	}
	assert_int_equal(error_reasons(&w, batch, 768, 2, rows, why), 2);
	assert_int_equal(rows[0], 769);
	assert_string_equal(why[0], "plugin slow: prepare not reached: the 256 rows of its call "
	                            "took more than 1200 ms");
	assert_int_equal(rows[1], 770);
	assert_string_equal(why[1], "plugin slow: prepare not called: 3 of its calls in this "
	                            "upload timed out");
	assert_int_equal(error_reasons(&w, batch, 1000, 4, rows, why), 1);
	assert_int_equal(rows[0], 1001);
	/* 765 not reached, and the 3 rows still running, counted as each
	 * returns. */
	expect_metric(&w, "herald_plugin_timeouts_total{plugin=\"slow\",hook=\"prepare\"}", 768);
	world_stop_serve(&w); /* waits for the hooks still sleeping */
	world_free(&w);
}

/* ---- the after-commit events' outbox (issue 13) ---- */

/* A CSV of n rows to +44791100<base + i> (4 digits). Heap. */
static char *rows_csv(int n, int base)
{
	size_t cap = 64 + (size_t)n * 40;
	char *csv = malloc(cap);
	assert_non_null(csv);
	size_t len = (size_t)snprintf(csv, cap, "phone,who,amount\n");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(csv + len, cap - len, "+44791100%04d,Who%d,%d\n", base + i,
		                        i, i);
	return csv;
}

struct evline {
	char id[32], from[16], to[16];
	size_t seq;
};

static int evline_cmp(const void *a, const void *b)
{
	const struct evline *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

/*
 * Checks evlog's log: every message's on_status calls, in the order they
 * ran, are one chain (each call's `from` the previous call's `to`) from
 * sending -> sent to `last`, each change once. With exact, no call
 * repeats; without (after a crash), a repeat of a change already seen is
 * skipped (at least once). Returns the lines read; *msgs the messages.
 */
/* The calls in the log whose new status is `to`. */
static size_t evlog_count_to(const char *path, const char *to)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char buf[256], id[32], from[16], got[16];
	size_t n = 0;
	while (fgets(buf, sizeof buf, f))
		if (sscanf(buf, "%31s %15s %15s", id, from, got) == 3 && strcmp(got, to) == 0)
			n++;
	fclose(f);
	return n;
}

static size_t evlog_check(const char *path, bool exact, const char *last, size_t *msgs)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t cap = 1024, n = 0;
	struct evline *v = malloc(cap * sizeof *v);
	assert_non_null(v);
	char buf[256];
	while (fgets(buf, sizeof buf, f)) {
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof *v);
			assert_non_null(v);
		}
		struct evline *e = &v[n];
		if (sscanf(buf, "%31s %15s %15s", e->id, e->from, e->to) != 3)
			fail_msg("evlog line not understood: %s", buf);
		e->seq = n++;
	}
	fclose(f);
	qsort(v, n, sizeof *v, evline_cmp);
	*msgs = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && strcmp(v[j].id, v[i].id) == 0)
			j++;
		(*msgs)++;
		const char *prev = "sending";
		for (size_t k = i; k < j; k++) {
			bool seen = false;
			for (size_t q = i; q < k && !exact; q++)
				seen |= strcmp(v[q].from, v[k].from) == 0 &&
				        strcmp(v[q].to, v[k].to) == 0;
			if (seen)
				continue;
			/* A send retried (a timeout on a loaded machine) went back to
			 * queued; its next claim (queued -> sending) is not a change
			 * the store reports, so the next call starts from sending. */
			bool reclaimed = strcmp(prev, "queued") == 0 && strcmp(v[k].from, "sending") == 0;
			if (strcmp(v[k].from, prev) != 0 && !reclaimed)
				fail_msg("message %s: on_status %s -> %s after a call ending in %s "
				         "(a change lost, repeated or out of order)",
				         v[k].id, v[k].from, v[k].to, prev);
			prev = v[k].to;
		}
		if (strcmp(prev, last) != 0)
			fail_msg("message %s: its last on_status call ends in %s, not %s", v[i].id,
			         prev, last);
		i = j;
	}
	free(v);
	return n;
}

struct read_all {
	long n;
};

static bool all_read_and_delivered(struct world *w, void *arg)
{
	struct read_all *x = arg;
	return count_status(w, "read") == x->n && metric(w, "herald_plugin_events_pending") == 0;
}

/* n messages' status changes through the plugin with these pool settings:
 * every change reaches the plugin exactly once, in order per message;
 * nothing dropped, nothing given up. */
static void events_exact(int n, int workers, int queue_max, int timeout_ms, int sleep_ms)
{
	struct world w;
	world_init2(&w, NULL, ACME_UNITS, NULL, NULL, NULL);
	const char *dir = plugdir_with(&w, "evlog", NULL);
	char log[400];
	snprintf(log, sizeof log, "%s/evlog.txt", w.dir);
	FILE *f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f,
	        "plugins:\n  dir: %s\n  workers: %d\n  queue_max: %d\n  hook_timeout_ms: %d\n"
	        "  units: {acme/cards: evlog}\n  config: {evlog: {log: \"%s\", sleep_ms: %d}}\n",
	        dir, workers, queue_max, timeout_ms, log, sleep_ms);
	fclose(f);
	world_start_sim(&w);
	world_start_serve(&w);
	char *csv = rows_csv(n, 0);
	struct resp r = upload_to(&w, "cards", "many", csv);
	free(csv);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	if (batch_rows(r.json, "valid") != n)
		fail_msg("upload: %s", r.body);
	resp_free(&r);
	struct read_all want = {n};
	if (!wait_until(all_read_and_delivered, &w, &want, 120))
		fail_msg("read %ld of %d, events pending %ld", count_status(&w, "read"), n,
		         metric(&w, "herald_plugin_events_pending"));
	size_t msgs = 0;
	size_t lines = evlog_check(log, true, "read", &msgs);
	assert_int_equal(msgs, n);
	/* sent, delivered, read at least; a receipt may skip delivered; and a
	 * send retried after a timeout (a loaded machine) went sending ->
	 * queued once more, a change the plugin hears too. */
	size_t retried = evlog_count_to(log, "queued");
	if (lines < 2 * (size_t)n || lines > 3 * (size_t)n + retried)
		fail_msg("%zu on_status calls for %d messages, %zu of them retries (log %s)", lines,
		         n, retried, log);
	assert_int_equal(metric(&w, "herald_plugin_events_delivered_total"), (long)lines);
	assert_int_equal(metric(&w, "herald_plugin_metric_total{plugin=\"evlog\",name=\"events\"}"),
	                 (long)lines);
	assert_int_equal(
	    metric(&w, "herald_plugin_calls_total{plugin=\"evlog\",hook=\"on_status\"}"),
	    (long)lines);
	/* None timed out (a slow hook may pass its 100 ms on a loaded machine:
	 * it ran, its line is there; an event given up in the queue would
	 * have broken its message's chain above). */
	if (sleep_ms == 0)
		assert_int_equal(
		    metric(&w, "herald_plugin_timeouts_total{plugin=\"evlog\",hook=\"on_status\"}"),
		    0);
	assert_int_equal(metric(&w, "herald_plugin_events_pending"), 0);
	world_stop_serve(&w);
	world_free(&w);
}

/* Hundreds of status changes through a queue of 4. */
static void test_events_exact(void **state)
{
	(void)state;
	events_exact(300, 2, 4, 5000, 0);
}

/* A hook taking 60 ms of its 100: the events queued behind it wait longer
 * than a hook's timeout, and are still run, not given up. */
static void test_events_slow_hook(void **state)
{
	(void)state;
	events_exact(30, 1, 4, 100, 60);
}

struct pending_some {
	long read_want;
};

static bool read_with_pending(struct world *w, void *arg)
{
	struct pending_some *x = arg;
	return count_status(w, "read") == x->read_want &&
	       metric(w, "herald_plugin_events_pending") > 0;
}

/* kill -9 of serve once the changes are committed and before their hooks
 * ran (a plugin that sleeps): after the restart every event is delivered
 * (at least once), in order per message. */
static void test_events_crash(void **state)
{
	(void)state;
	enum { N = 60 };
	struct world w;
	world_init2(&w, NULL, ACME_UNITS, NULL, NULL, NULL);
	const char *dir = plugdir_with(&w, "evlog", NULL);
	char log[400];
	snprintf(log, sizeof log, "%s/evlog.txt", w.dir);
	FILE *f = fopen(w.config, "a");
	assert_non_null(f);
	fprintf(f,
	        "plugins:\n  dir: %s\n  workers: 1\n  queue_max: 2\n  hook_timeout_ms: 5000\n"
	        "  units: {acme/cards: evlog}\n  config: {evlog: {log: \"%s\", sleep_ms: 40}}\n",
	        dir, log);
	fclose(f);
	world_start_sim(&w);
	world_start_serve(&w);
	char *csv = rows_csv(N, 500);
	struct resp r = upload_to(&w, "cards", "crash", csv);
	free(csv);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	resp_free(&r);
	/* Every message read (committed) while its events wait: about 3 x 60
	 * calls of 40 ms on one worker. */
	struct pending_some ps = {N};
	if (!wait_until(read_with_pending, &w, &ps, 60))
		fail_msg("read %ld of %d with events pending %ld", count_status(&w, "read"), N,
		         metric(&w, "herald_plugin_events_pending"));
	long pending = metric(&w, "herald_plugin_events_pending");
	world_kill9_serve(&w);
	size_t msgs = 0;
	FILE *pre = fopen(log, "r");
	size_t before = 0;
	if (pre) {
		int ch;
		while ((ch = fgetc(pre)) != EOF)
			before += ch == '\n';
		fclose(pre);
	}
	assert_true(pending > 0);
	world_start_serve(&w);
	struct read_all want = {N};
	if (!wait_until(all_read_and_delivered, &w, &want, 60))
		fail_msg("after the restart, events pending %ld",
		         metric(&w, "herald_plugin_events_pending"));
	size_t lines = evlog_check(log, false, "read", &msgs);
	assert_int_equal(msgs, N);
	/* The restart delivered what was pending (and at most the batch in
	 * flight again: delivered, not yet marked when killed); every call of
	 * the new process is one line. */
	long after = (long)(lines - before);
	assert_true(after > 0);
	assert_int_equal(metric(&w, "herald_plugin_events_delivered_total"), after);
	world_stop_serve(&w);
	world_free(&w);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_start_refused),
	    cmocka_unit_test(test_out_of_tree),
	    cmocka_unit_test(test_e2e),
	    cmocka_unit_test(test_reroute),
	    cmocka_unit_test(test_prepare_timeouts),
	    cmocka_unit_test(test_events_exact),
	    cmocka_unit_test(test_events_slow_hook),
	    cmocka_unit_test(test_events_crash),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
