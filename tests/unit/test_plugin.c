/*
 * test_plugin.c - the plugin loader, pool and host API (src/plugins/) with
 * the tiny plugins of tests/plugins/ (built beside the tests; the
 * directory is $HERALD_TEST_PLUGINS). Each test links the chosen .so files
 * into a fresh directory and loads it with a config.
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

#include "core/config.h"
#include "plugins/plugins.h"
#include "plugins/plugins_int.h" /* the handles the 1.1 setters fill */
#include "store/store.h"

static char plugdir[512];

static const char *built(void)
{
	const char *d = getenv("HERALD_TEST_PLUGINS");
	return d ? d : "tests/plugins";
}

/* A fresh directory holding symlinks to the named built plugins. */
static void dir_with(const char *first, ...)
{
	snprintf(plugdir, sizeof plugdir, "/tmp/hr_plug_XXXXXX");
	assert_non_null(mkdtemp(plugdir));
	va_list ap;
	va_start(ap, first);
	for (const char *n = first; n; n = va_arg(ap, const char *)) {
		char src[600], dst[600];
		snprintf(src, sizeof src, "%s/%s.so", built(), n);
		snprintf(dst, sizeof dst, "%s/%s.so", plugdir, n);
		assert_int_equal(symlink(src, dst), 0);
	}
	va_end(ap);
}

static void dir_rm(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", plugdir);
	assert_int_equal(system(cmd), 0);
}

/* Loads with YAML whose "@DIR@" is the plugin directory; the tenants acme
 * (units cards, loans, slowu) and beta (unit cards) always exist. */
static int load(const char *plugins_yaml, struct plugins **p, struct hr_err *err)
{
	char yaml[4096];
	char body[3000];
	const char *at = strstr(plugins_yaml, "@DIR@");
	if (at)
		snprintf(body, sizeof body, "%.*s%s%s", (int)(at - plugins_yaml), plugins_yaml,
		         plugdir, at + 5);
	else
		snprintf(body, sizeof body, "%s", plugins_yaml);
	snprintf(yaml, sizeof yaml,
	         "tenants:\n"
	         "  - id: acme\n    units: [cards, loans, slowu]\n"
	         "  - id: beta\n    units: [cards]\n"
	         "%s",
	         body);
	hr_err_clear(err);
	json_t *cfg = hr_config_parse(yaml, strlen(yaml), err);
	assert_non_null(cfg);
	int rc = plugins_load(cfg, NULL, p, err);
	json_decref(cfg);
	return rc;
}

static void expect_refused(const char *yaml, const char *want1, const char *want2)
{
	struct plugins *p = NULL;
	struct hr_err err;
	int rc = load(yaml, &p, &err);
	assert_int_not_equal(rc, 0);
	assert_null(p);
	if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
		fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err.msg, want1, want2 ? want2 : "");
}

static void test_load_and_bind(void **state)
{
	(void)state;
	dir_with("good", "bare", NULL);
	struct plugins *p = NULL;
	struct hr_err err;
	int rc = load("plugins:\n  dir: @DIR@\n  units: {acme/cards: good, acme/loans: bare}\n", &p,
	              &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(plugins_count(p), 2);
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	assert_non_null(g);
	assert_string_equal(plugin_name(g), "good");
	assert_string_equal(plugin_name(plugins_for_unit(p, "acme", "loans")), "bare");
	/* Another tenant's unit of the same name is not bound. */
	assert_null(plugins_for_unit(p, "beta", "cards"));
	assert_null(plugins_for_unit(p, "acme", ""));
	assert_true(plugin_has(g, PH_BEFORE_SEND));
	assert_false(plugin_has(plugins_for_unit(p, "acme", "loans"), PH_BEFORE_SEND));
	assert_true(plugins_tenant_has(p, "acme", PH_ON_STATUS));
	assert_false(plugins_tenant_has(p, "beta", PH_ON_STATUS));

	json_t *all = plugins_describe(p, NULL);
	assert_int_equal(json_array_size(all), 2);
	json_t *b = json_array_get(all, 0); /* bare.so sorts first */
	assert_string_equal(json_string_value(json_object_get(b, "name")), "bare");
	assert_int_equal(json_integer_value(json_object_get(b, "abi")), 1);
	assert_int_equal(json_array_size(json_object_get(b, "hooks")), 0);
	assert_string_equal(json_string_value(json_object_get(b, "file")), "bare.so");
	json_t *gj = json_array_get(all, 1);
	assert_int_equal(json_array_size(json_object_get(gj, "hooks")), 7);
	assert_string_equal(json_string_value(json_array_get(json_object_get(gj, "units"), 0)),
	                    "acme/cards");
	json_decref(all);
	/* Scoped to beta: no units of acme, no file names. */
	json_t *bj = plugins_describe(p, "beta");
	assert_int_equal(json_array_size(bj), 2);
	assert_int_equal(json_array_size(json_object_get(json_array_get(bj, 1), "units")), 0);
	assert_null(json_object_get(json_array_get(bj, 1), "file"));
	json_decref(bj);
	plugins_free(p);
	dir_rm();
}

static void test_no_section(void **state)
{
	(void)state;
	struct plugins *p = NULL;
	struct hr_err err;
	assert_int_equal(load("", &p, &err), 0);
	assert_int_equal(plugins_count(p), 0);
	assert_null(plugins_for_unit(p, "acme", "cards"));
	plugins_free(p);
}

static void test_rejections(void **state)
{
	(void)state;
	dir_with("abi", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n", "abi.so", "ABI 99");
	dir_rm();

	dir_with("good", "dup", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n", "good.so", "dup.so");
	expect_refused("plugins:\n  dir: @DIR@\n", "named 'good'", NULL);
	dir_rm();

	dir_with("nosym", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n", "nosym.so", "no symbol herald_plugin");
	dir_rm();

	dir_with("undef", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n", "undef.so", "herald_no_such_function");
	dir_rm();

	dir_with("good", "initfail", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  config: {initfail: {db: payments}}\n",
	               "initfail.so", "init failed: database payments unreachable");
	dir_rm();

	dir_with("good", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  units: {acme/cards: nope}\n",
	               "plugins.units.acme/cards", "'nope', which is not loaded (loaded: good)");
	expect_refused("plugins:\n  dir: @DIR@\n  units: {acme/ghost: good}\n",
	               "tenant 'acme' has no unit 'ghost'", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  units: {cards: good}\n", "tenant/unit", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  config: {goood: {a: b}}\n",
	               "plugins.config.goood", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  colour: blue\n", "plugins.colour", NULL);
	expect_refused("plugins:\n  dir: @DIR@\n  config: {good: {a: [1]}}\n",
	               "plugins.config.good.a", NULL);
	expect_refused("plugins:\n  units: {}\n", "plugins.dir is required", NULL);
	dir_rm();
	expect_refused("plugins:\n  dir: /nonexistent/plugins\n", "/nonexistent/plugins", NULL);
}

static struct plugins *load_ok(const char *yaml)
{
	struct plugins *p = NULL;
	struct hr_err err;
	if (load(yaml, &p, &err))
		fail_msg("%s", err.msg);
	return p;
}

static void draft_init(struct plugin_draft *d, const char *to, int n, const char *p0)
{
	memset(d, 0, sizeof *d);
	hr_strlcpy(d->recipient, to, sizeof d->recipient);
	d->nparams = n;
	for (int i = 0; i < n; i++)
		d->params[i] = strdup(i == 0 ? p0 : "x");
}

static void test_prepare(void **state)
{
	(void)state;
	dir_with("good", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: good}\n");
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	const char *names[] = {"phone", "name", "skip", "garbage", "fail"};
	const char *vals[] = {"+447911000001", "Ana", "no", "no", "no"};
	struct plugin_draft d;
	char why[300];
	draft_init(&d, "+447911000001", 2, "120.00");
	assert_int_equal(
	    plugins_prepare(p, g, "acme", "cards", names, vals, 5, &d, why, sizeof why), PO_OK);
	assert_false(d.skip);
	assert_string_equal(d.params[0], "120.00 from Ana");
	assert_string_equal(d.params[1], "x");
	plugin_draft_clear(&d);

	vals[2] = "yes";
	draft_init(&d, "+447911000001", 1, "1");
	assert_int_equal(
	    plugins_prepare(p, g, "acme", "cards", names, vals, 5, &d, why, sizeof why), PO_OK);
	assert_true(d.skip);
	assert_string_equal(d.skip_reason, "plugin good: asked to skip");
	plugin_draft_clear(&d);

	vals[2] = "no", vals[3] = "yes";
	draft_init(&d, "+447911000001", 1, "1");
	assert_int_equal(
	    plugins_prepare(p, g, "acme", "cards", names, vals, 5, &d, why, sizeof why),
	    PO_GARBAGE);
	assert_non_null(strstr(why, "plugin good: prepare returned 42"));
	assert_string_equal(d.params[0], "1"); /* untouched */
	plugin_draft_clear(&d);

	vals[3] = "no", vals[4] = "yes";
	draft_init(&d, "+447911000001", 1, "1");
	assert_int_equal(
	    plugins_prepare(p, g, "acme", "cards", names, vals, 5, &d, why, sizeof why), PO_ERROR);
	assert_string_equal(why, "plugin good: prepare failed: row refused by good");
	plugin_draft_clear(&d);

	struct hr_buf b = {0};
	plugins_metrics_render(p, &b);
	assert_non_null(
	    strstr(b.p, "herald_plugin_calls_total{plugin=\"good\",hook=\"prepare\"} 4\n"));
	assert_non_null(
	    strstr(b.p, "herald_plugin_errors_total{plugin=\"good\",hook=\"prepare\"} 2\n"));
	assert_non_null(
	    strstr(b.p, "herald_plugin_metric_total{plugin=\"good\",name=\"prepared\"} 1\n"));
	free(b.p);
	plugins_free(p);
	dir_rm();
}

/* Many rows in one call (what an upload does): each row's own outcome, in
 * order, from one pool job; the limit on rows per call. */
static void test_prepare_rows(void **state)
{
	(void)state;
	dir_with("good", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: good}\n");
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	const char *names[] = {"phone", "name", "skip", "garbage", "fail"};
	enum { N = PLUGIN_PREPARE_ROWS_MAX };
	static const char *vals[N][5];
	static struct plugin_prep rows[N];
	for (int i = 0; i < N; i++) {
		/* Every 10th row skipped, every 10th + 1 garbage, + 2 an error. */
		vals[i][0] = "+447911000001";
		vals[i][1] = "Ana";
		vals[i][2] = i % 10 == 0 ? "yes" : "no";
		vals[i][3] = i % 10 == 1 ? "yes" : "no";
		vals[i][4] = i % 10 == 2 ? "yes" : "no";
		memset(&rows[i], 0, sizeof rows[i]);
		rows[i].values = vals[i];
		draft_init(&rows[i].d, "+447911000001", 1, "p");
	}
	assert_int_equal(plugins_prepare_rows(p, g, "acme", "cards", names, 5, rows, N), 0);
	int ok = 0, skipped = 0, garbage = 0, failed = 0;
	for (int i = 0; i < N; i++) {
		switch (i % 10) {
		case 0:
			assert_int_equal(rows[i].o, PO_OK);
			assert_true(rows[i].d.skip);
			assert_string_equal(rows[i].d.skip_reason, "plugin good: asked to skip");
			skipped++;
			break;
		case 1:
			assert_int_equal(rows[i].o, PO_GARBAGE);
			assert_string_equal(rows[i].d.params[0], "p"); /* untouched */
			garbage++;
			break;
		case 2:
			assert_int_equal(rows[i].o, PO_ERROR);
			assert_string_equal(rows[i].why,
			                    "plugin good: prepare failed: row refused by good");
			failed++;
			break;
		default:
			assert_int_equal(rows[i].o, PO_OK);
			assert_false(rows[i].d.skip);
			assert_string_equal(rows[i].d.params[0], "p from Ana");
			ok++;
		}
		plugin_draft_clear(&rows[i].d);
	}
	assert_int_equal(ok, 178);
	assert_int_equal(skipped + garbage + failed, 78);
	/* One row more than a call takes: refused, nothing run. */
	static struct plugin_prep more[N + 1];
	for (int i = 0; i <= N; i++)
		more[i].values = vals[0];
	assert_int_equal(plugins_prepare_rows(p, g, "acme", "cards", names, 5, more, N + 1),
	                 HR_EINVAL);
	struct hr_buf b = {0};
	plugins_metrics_render(p, &b);
	assert_non_null(
	    strstr(b.p, "herald_plugin_calls_total{plugin=\"good\",hook=\"prepare\"} 256\n"));
	assert_non_null(
	    strstr(b.p, "herald_plugin_errors_total{plugin=\"good\",hook=\"prepare\"} 52\n"));
	free(b.p);
	plugins_free(p);
	dir_rm();
}

/* The job's deadline: hook_timeout_ms (1000) for up to 64 rows. Rows of
 * 600 ms each (400 ms of slack for a loaded machine): the first finishes, the second passes the
 * job's deadline (its own error naming the plugin), the third is never reached; another job of the
 * same plugin runs normally afterwards. */
static void test_prepare_rows_deadline(void **state)
{
	(void)state;
	dir_with("slow", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  hook_timeout_ms: 1000\n"
	                            "  units: {acme/cards: slow}\n"
	                            "  config: {slow: {prepare_sleep_ms: 600}}\n");
	const struct plugin *s = plugins_for_unit(p, "acme", "cards");
	const char *names[] = {"phone"};
	const char *vals[] = {"+447911000001"};
	struct plugin_prep rows[3];
	memset(rows, 0, sizeof rows);
	for (int i = 0; i < 3; i++) {
		rows[i].values = vals;
		draft_init(&rows[i].d, "+447911000001", 0, NULL);
	}
	int64_t t0 = hr_mono_us();
	assert_int_equal(plugins_prepare_rows(p, s, "acme", "cards", names, 1, rows, 3), 0);
	int64_t took = hr_mono_us() - t0;
	assert_true(took >= 1000000 && took < 3000000);
	assert_int_equal(rows[0].o, PO_OK);
	assert_int_equal(rows[1].o, PO_TIMEOUT);
	assert_string_equal(rows[1].why, "plugin slow: prepare took more than 1000 ms");
	assert_int_equal(rows[2].o, PO_TIMEOUT);
	assert_string_equal(rows[2].why, "plugin slow: prepare not reached: the 3 rows of its "
	                                 "call took more than 1000 ms");
	for (int i = 0; i < 3; i++)
		plugin_draft_clear(&rows[i].d);
	/* The worker stopped after the second row: the next call runs. */
	memset(rows, 0, sizeof rows);
	rows[0].values = vals;
	draft_init(&rows[0].d, "+447911000001", 0, NULL);
	assert_int_equal(plugins_prepare_rows(p, s, "acme", "cards", names, 1, rows, 1), 0);
	assert_int_equal(rows[0].o, PO_OK);
	plugin_draft_clear(&rows[0].d);
	plugins_free(p);
	dir_rm();
}

struct notified {
	int n;
};

static void on_done(void *arg)
{
	__atomic_add_fetch(&((struct notified *)arg)->n, 1, __ATOMIC_SEQ_CST);
}

/* Polls j until done (the dispatcher's way), at most 5 s. */
static enum plugin_outcome poll_job(struct plugin_job *j, bool *skip, char *reason, size_t len)
{
	enum plugin_outcome o;
	int64_t until = hr_mono_us() + 5000000;
	while (!plugins_job_poll(j, hr_mono_us(), &o, skip, reason, len)) {
		assert_true(hr_mono_us() < until);
		usleep(1000);
	}
	return o;
}

static void test_before_send(void **state)
{
	(void)state;
	dir_with("good", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: good}\n");
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	static const struct {
		const char *to;
		enum plugin_outcome o;
		bool skip;
		const char *reason;
	} cases[] = {
	    {"+447911000001", PO_OK, false, ""},
	    {"+447911000009", PO_OK, true, "plugin good: ends in 9"},
	    {"+447911000008", PO_ERROR, false, "plugin good: before_send failed: refuses 8"},
	    {"+447911000007", PO_GARBAGE, false,
	     "plugin good: before_send returned 7 (not HERALD_OK or HERALD_ERROR)"},
	    /* Route changes: the verdict's route, the reason with the name. */
	    {"+447911000005", PO_OK, false, "plugin good: prefers sms"},
	    {"+447911000004", PO_OK, false, "plugin good: second number"},
	};
	struct notified nt = {0};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct message m = {0};
		hr_strlcpy(m.id, "01JTESTMSG0000000000000000", sizeof m.id);
		hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
		hr_strlcpy(m.unit, "cards", sizeof m.unit);
		hr_strlcpy(m.recipient, cases[i].to, sizeof m.recipient);
		struct plugin_job *j = plugins_before_send_submit(p, g, &m, on_done, &nt);
		assert_non_null(j);
		bool skip;
		char reason[300];
		assert_int_equal(poll_job(j, &skip, reason, sizeof reason), cases[i].o);
		assert_int_equal(skip, cases[i].skip);
		assert_string_equal(reason, cases[i].reason);
		struct plugin_route rt;
		bool routed = plugins_job_route(j, &rt);
		assert_int_equal(routed, i >= 4);
		if (i == 4) { /* by channel, with the plugin's text */
			assert_string_equal(rt.channel, "sms");
			assert_string_equal(rt.account, "");
			assert_string_equal(rt.text, "SMS from good");
		} else if (i == 5) { /* by account, no text */
			assert_string_equal(rt.channel, "");
			assert_string_equal(rt.account, "acme-wa2");
			assert_null(rt.text);
		}
		free(rt.text);
		plugins_job_release(j);
	}
	/* notify runs after the job is marked done: wait for the last one. */
	int64_t until = hr_mono_us() + 2000000;
	while (__atomic_load_n(&nt.n, __ATOMIC_SEQ_CST) < 6 && hr_mono_us() < until)
		usleep(1000);
	assert_int_equal(__atomic_load_n(&nt.n, __ATOMIC_SEQ_CST), 6);
	plugins_free(p);
	dir_rm();
}

/* A plugin built against the ABI 1.0 header, before 1.1's additions
 * (tests/plugins/abi1/): it loads beside a 1.1 plugin, its descriptor is
 * the size this Herald's is, and its hooks run as they did. */
static void test_abi1_plugin(void **state)
{
	(void)state;
	dir_with("abi1", "good", NULL);
	struct plugins *p =
	    load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: abi1, acme/loans: good}\n");
	assert_int_equal(plugins_count(p), 2);
	const struct plugin *a = plugins_for_unit(p, "acme", "cards");
	assert_non_null(a);
	assert_string_equal(plugin_name(a), "abi1");
	assert_true(plugin_has(a, PH_PREPARE));
	assert_true(plugin_has(a, PH_BEFORE_SEND));
	assert_false(plugin_has(a, PH_STATS));
	json_t *list = plugins_describe(p, NULL);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "abi")), 1);
	json_decref(list);

	const char *names[] = {"phone"};
	const char *vals[] = {"+447911000001"};
	struct plugin_draft d;
	char why[300];
	draft_init(&d, "+447911000001", 1, "120.00");
	assert_int_equal(
	    plugins_prepare(p, a, "acme", "cards", names, vals, 1, &d, why, sizeof why), PO_OK);
	assert_string_equal(d.params[0], "abi1:120.00");
	assert_string_equal(d.channel, ""); /* a 1.0 plugin sets none of 1.1's */
	plugin_draft_clear(&d);

	struct message m = {0};
	hr_strlcpy(m.id, "01JTESTMSG0000000000000000", sizeof m.id);
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.unit, "cards", sizeof m.unit);
	hr_strlcpy(m.recipient, "+447911000009", sizeof m.recipient);
	struct plugin_job *j = plugins_before_send_submit(p, a, &m, NULL, NULL);
	assert_non_null(j);
	bool skip;
	char reason[300];
	assert_int_equal(poll_job(j, &skip, reason, sizeof reason), PO_OK);
	assert_true(skip);
	assert_string_equal(reason, "plugin abi1: abi1 skips 9");
	struct plugin_route rt;
	assert_false(plugins_job_route(j, &rt));
	plugins_job_release(j);
	plugins_free(p);
	dir_rm();
}

/* The 1.1 setters take what fits and refuse the rest, leaving the verdict
 * or draft as it was: a plugin's bad argument never half-applies. */
static void test_setters_1_1(void **state)
{
	(void)state;
	struct herald_verdict v;
	memset(&v, 0, sizeof v);
	char longname[80];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	char longtext[1700];
	memset(longtext, 'x', sizeof longtext - 1);
	longtext[sizeof longtext - 1] = '\0';
	assert_int_equal(herald_verdict_route(NULL, "sms", NULL, NULL, "r"), HERALD_ERROR);
	assert_int_equal(herald_verdict_route(&v, NULL, NULL, NULL, "r"), HERALD_ERROR);
	assert_int_equal(herald_verdict_route(&v, "s m s", NULL, NULL, "r"), HERALD_ERROR);
	assert_int_equal(herald_verdict_route(&v, NULL, longname, NULL, "r"), HERALD_ERROR);
	assert_int_equal(herald_verdict_route(&v, "sms", NULL, longtext, "r"), HERALD_ERROR);
	assert_int_equal(herald_verdict_route(&v, "sms", NULL, "\xff\xfe", "r"), HERALD_ERROR);
	assert_false(v.route);
	assert_int_equal(herald_verdict_route(&v, "sms", NULL, "hi", NULL), HERALD_OK);
	assert_true(v.route);
	assert_string_equal(v.channel, "sms");
	assert_string_equal(v.text, "hi");
	assert_string_equal(v.reason, "route changed");
	/* A later route replaces the earlier one; a skip wins over both. */
	assert_int_equal(herald_verdict_route(&v, NULL, "acme-wa2", NULL, "second"), HERALD_OK);
	assert_string_equal(v.account, "acme-wa2");
	assert_null(v.text);
	assert_int_equal(herald_verdict_skip(&v, "no"), HERALD_OK);
	assert_int_equal(herald_verdict_route(&v, "sms", NULL, NULL, "later"), HERALD_OK);
	assert_string_equal(v.reason, "no");
	free(v.text);

	struct plugin_draft pd;
	memset(&pd, 0, sizeof pd);
	struct herald_draft d = {.d = &pd};
	assert_int_equal(herald_draft_set_channel(&d, NULL, NULL), HERALD_ERROR);
	assert_int_equal(herald_draft_set_channel(&d, "whatsapp-business-x", NULL), HERALD_ERROR);
	assert_int_equal(herald_draft_set_channel(&d, "sms", longname), HERALD_ERROR);
	assert_int_equal(herald_draft_set_policy(&d, ""), HERALD_ERROR);
	assert_int_equal(herald_draft_set_policy(&d, "at most once"), HERALD_ERROR);
	assert_int_equal(herald_draft_set_route(&d, NULL), HERALD_ERROR);
	assert_int_equal(herald_draft_set_route(&d, longtext), HERALD_ERROR);
	assert_string_equal(pd.channel, "");
	assert_string_equal(pd.policy, "");
	assert_string_equal(pd.route, "");
	/* What fits is kept as given: the upload checks its meaning. */
	assert_int_equal(herald_draft_set_channel(&d, "fax", "acme-fax"), HERALD_OK);
	assert_int_equal(herald_draft_set_policy(&d, "maybe"), HERALD_OK);
	assert_int_equal(herald_draft_set_route(&d, "whatsapp,,sms"), HERALD_OK);
	assert_string_equal(pd.channel, "fax");
	assert_string_equal(pd.account, "acme-fax");
	assert_string_equal(pd.policy, "maybe");
	assert_string_equal(pd.route, "whatsapp,,sms");
	assert_int_equal(herald_draft_set_route(&d, ""), HERALD_OK); /* back to the upload's */
	assert_string_equal(pd.route, "");
}

/* A slow plugin's calls time out; the other plugin's calls, submitted
 * after them, still finish in time: a plugin holds at most workers - 1. */
static void test_slow_does_not_stall_others(void **state)
{
	(void)state;
	dir_with("good", "slow", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  workers: 3\n  hook_timeout_ms: 200\n"
	                            "  units: {acme/cards: good, acme/slowu: slow}\n"
	                            "  config: {slow: {sleep_ms: 600}}\n");
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	const struct plugin *s = plugins_for_unit(p, "acme", "slowu");
	struct message m = {0};
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.recipient, "+447911000001", sizeof m.recipient);
	struct plugin_job *sj[4], *gj[4];
	hr_strlcpy(m.unit, "slowu", sizeof m.unit);
	for (int i = 0; i < 4; i++)
		sj[i] = plugins_before_send_submit(p, s, &m, NULL, NULL);
	hr_strlcpy(m.unit, "cards", sizeof m.unit);
	int64_t t0 = hr_mono_us();
	for (int i = 0; i < 4; i++)
		gj[i] = plugins_before_send_submit(p, g, &m, NULL, NULL);
	int ok = 0, timeouts = 0;
	for (int i = 0; i < 4; i++) {
		bool skip;
		char reason[300];
		if (poll_job(gj[i], &skip, reason, sizeof reason) == PO_OK)
			ok++;
		plugins_job_release(gj[i]);
	}
	int64_t good_us = hr_mono_us() - t0;
	for (int i = 0; i < 4; i++) {
		bool skip;
		char reason[300];
		if (poll_job(sj[i], &skip, reason, sizeof reason) == PO_TIMEOUT)
			timeouts++;
		assert_non_null(strstr(reason, "plugin slow: before_send"));
		plugins_job_release(sj[i]);
	}
	assert_int_equal(ok, 4);
	assert_int_equal(timeouts, 4);
	assert_true(good_us < 200000); /* within the deadline, not behind the slow ones */
	/* The synchronous stats call times out too, and says so. */
	json_t *out = NULL;
	char why[300];
	assert_int_equal(plugins_stats(p, s, "acme", "slowu", &out, why, sizeof why), PO_TIMEOUT);
	assert_null(out);
	assert_string_equal(why, "plugin slow: unit_stats took more than 200 ms");
	plugins_free(p); /* waits for the sleeping hooks */
	dir_rm();
}

static void test_stats_export_list(void **state)
{
	(void)state;
	dir_with("good", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: good}\n"
	                            "  config: {good: {greeting: hello}}\n");
	const struct plugin *g = plugins_for_unit(p, "acme", "cards");
	json_t *out = NULL;
	char why[300];
	assert_int_equal(plugins_stats(p, g, "acme", "cards", &out, why, sizeof why), PO_OK);
	assert_int_equal(json_object_size(out), 3);
	assert_string_equal(json_string_value(json_object_get(out, "config_greeting")), "hello");
	assert_string_equal(json_string_value(json_object_get(out, "unit")), "cards");
	json_decref(out);

	const char *const *cols = plugin_export_columns(g);
	assert_string_equal(cols[0], "paid");
	assert_string_equal(cols[1], "plugin");
	assert_null(cols[2]);
	struct message m = {0};
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.unit, "cards", sizeof m.unit);
	hr_strlcpy(m.recipient, "+447911000001", sizeof m.recipient);
	assert_int_equal(plugins_export_row(p, g, &m, &out, why, sizeof why), PO_OK);
	assert_string_equal(json_string_value(json_object_get(out, "paid")), "yes");
	json_decref(out);

	json_t *f = json_pack("{s:s}", "n", "3");
	assert_int_equal(plugins_list(p, g, "acme", "cards", f, &out, why, sizeof why), PO_OK);
	assert_int_equal(json_array_size(out), 3);
	json_decref(out);
	/* More items than a list holds: the hook's own failure. */
	json_object_set_new(f, "n", json_string("1001"));
	assert_int_equal(plugins_list(p, g, "acme", "cards", f, &out, why, sizeof why), PO_ERROR);
	assert_non_null(strstr(why, "list full at 1000"));
	json_decref(f);
	plugins_free(p);
	dir_rm();
}

/* A full queue refuses at once (PO_BUSY), never blocks the caller. */
static void test_queue_full(void **state)
{
	(void)state;
	dir_with("slow", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  workers: 1\n  queue_max: 2\n"
	                            "  hook_timeout_ms: 100\n  units: {acme/slowu: slow}\n"
	                            "  config: {slow: {sleep_ms: 150}}\n");
	const struct plugin *s = plugins_for_unit(p, "acme", "slowu");
	struct message m = {0};
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.unit, "slowu", sizeof m.unit);
	struct plugin_job *j[5];
	/* One may be taken by the worker at once: 1 running + 2 queued fit. */
	j[0] = plugins_before_send_submit(p, s, &m, NULL, NULL);
	int64_t until = hr_mono_us() + 2000000;
	while (plugins_queue_len(p) > 0 && hr_mono_us() < until) /* the worker takes it */
		usleep(1000);
	assert_int_equal(plugins_queue_len(p), 0);
	int busy = 0;
	for (int i = 1; i < 5; i++) {
		j[i] = plugins_before_send_submit(p, s, &m, NULL, NULL);
		bool skip;
		char reason[300];
		enum plugin_outcome o;
		if (plugins_job_poll(j[i], hr_mono_us(), &o, &skip, reason, sizeof reason) &&
		    o == PO_BUSY) {
			busy++;
			assert_non_null(strstr(reason, "queue is full"));
		}
	}
	assert_int_equal(busy, 2);
	for (int i = 0; i < 5; i++)
		plugins_job_release(j[i]);
	plugins_free(p);
	dir_rm();
}

/* A store that knows two messages of acme: one of unit cards (bound to
 * good), one of unit loans (no plugin). Only message_get is there: the
 * events' workers read nothing else. */
static int fake_get(struct store *st, const char *tenant, const char *id, struct message *out)
{
	(void)st;
	if (strcmp(tenant, "acme") != 0)
		return HR_ENOTFOUND;
	memset(out, 0, sizeof *out);
	hr_strlcpy(out->id, id, sizeof out->id);
	hr_strlcpy(out->tenant_id, "acme", sizeof out->tenant_id);
	hr_strlcpy(out->unit, strcmp(id, "01JCARDS000000000000000000") == 0 ? "cards" : "loans",
	           sizeof out->unit);
	hr_strlcpy(out->recipient, "447911000001", sizeof out->recipient);
	out->status = MSG_DELIVERED;
	return 0;
}

static const struct store_ops fake_ops = {.name = "fake", .message_get = fake_get};

/* The metric line's value in the plugin metrics, or -1. */
static long plugin_metric(struct plugins *p, const char *name)
{
	struct hr_buf b = {0};
	plugins_metrics_render(p, &b);
	char want[160];
	snprintf(want, sizeof want, "herald_plugin_metric_total{plugin=\"good\",name=\"%s\"} ",
	         name);
	const char *at = b.p ? strstr(b.p, want) : NULL;
	long v = at ? atol(at + strlen(want)) : -1;
	free(b.p);
	return v;
}

/* on_status and on_reply: queued after the commit, the message's unit
 * picks the plugin; messages of other units or tenants reach no plugin. */
static void test_events(void **state)
{
	(void)state;
	dir_with("good", NULL);
	struct plugins *p = load_ok("plugins:\n  dir: @DIR@\n  units: {acme/cards: good}\n");
	struct store st = {.ops = &fake_ops};
	plugins_set_store(p, &st);
	plugins_status_event(p, "01JCARDS000000000000000000", "acme", MSG_SENT, MSG_DELIVERED);
	plugins_status_event(p, "01JCARDS000000000000000000", "acme", MSG_DELIVERED, MSG_READ);
	plugins_status_event(p, "01JLOANS000000000000000000", "acme", MSG_SENT, MSG_DELIVERED);
	plugins_status_event(p, "01JCARDS000000000000000000", "beta", MSG_SENT, MSG_DELIVERED);
	plugins_reply_event(p, "01JCARDS000000000000000000", "acme", "paid", "PAID");
	plugins_reply_event(p, "01JLOANS000000000000000000", "acme", "paid", NULL);
	int64_t until = hr_mono_us() + 5000000;
	while (plugins_pending(p) > 0 && hr_mono_us() < until) /* every event handled */
		usleep(1000);
	assert_int_equal(plugins_pending(p), 0);
	assert_int_equal(plugin_metric(p, "replies"), 1);
	assert_int_equal(plugin_metric(p, "status_delivered"), 1); /* not loans' */
	assert_int_equal(plugin_metric(p, "status_read"), 1);
	struct hr_buf b = {0};
	plugins_metrics_render(p, &b);
	assert_non_null(
	    strstr(b.p, "herald_plugin_calls_total{plugin=\"good\",hook=\"on_status\"} 2\n"));
	assert_non_null(
	    strstr(b.p, "herald_plugin_calls_total{plugin=\"good\",hook=\"on_reply\"} 1\n"));
	free(b.p);
	plugins_free(p);
	dir_rm();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_and_bind),
	    cmocka_unit_test(test_no_section),
	    cmocka_unit_test(test_rejections),
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_prepare_rows),
	    cmocka_unit_test(test_prepare_rows_deadline),
	    cmocka_unit_test(test_before_send),
	    cmocka_unit_test(test_abi1_plugin),
	    cmocka_unit_test(test_setters_1_1),
	    cmocka_unit_test(test_slow_does_not_stall_others),
	    cmocka_unit_test(test_stats_export_list),
	    cmocka_unit_test(test_queue_full),
	    cmocka_unit_test(test_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
