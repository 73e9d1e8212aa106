/*
 * test_metrics.c - counters, histogram buckets and store gauges render in
 * the exact Prometheus text format. The counters are process-wide, so each
 * test uses its own channel or metric and checks exact lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obs/metrics.h"
#include "store/store.h"

static char *render(struct store *st)
{
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(metrics_render(st, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

/* True if `line` appears as a whole line of text. */
static int has_line(const char *text, const char *line)
{
	size_t l = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[l] == '\n')
			return 1;
	return 0;
}

#define assert_line(text, line)                                                    \
	do {                                                                       \
		if (!has_line((text), (line)))                                     \
			fail_msg("missing line: %s\n--- output ---\n%s", (line), (text)); \
	} while (0)

static void test_send_counters(void **state)
{
	(void)state;
	metrics_send("whatsapp", M_SEND_ATTEMPTED, 3);
	metrics_send("whatsapp", M_SEND_SUCCEEDED, 2);
	metrics_send("whatsapp", M_SEND_RETRIED, 1);
	metrics_send("carrier-pigeon", M_SEND_FAILED, 4); /* unknown -> other */
	metrics_send(NULL, M_SEND_FAILED, 1);
	metrics_send("whatsapp", M_SEND_ATTEMPTED, 0);    /* ignored */
	metrics_send("whatsapp", M_SEND_ATTEMPTED, -5);   /* ignored */
	char *t = render(NULL);
	assert_line(t, "# HELP herald_sends_total Send attempts and their outcomes.");
	assert_line(t, "# TYPE herald_sends_total counter");
	assert_line(t, "herald_sends_total{channel=\"whatsapp\",outcome=\"attempted\"} 3");
	assert_line(t, "herald_sends_total{channel=\"whatsapp\",outcome=\"succeeded\"} 2");
	assert_line(t, "herald_sends_total{channel=\"whatsapp\",outcome=\"failed\"} 0");
	assert_line(t, "herald_sends_total{channel=\"whatsapp\",outcome=\"retried\"} 1");
	assert_line(t, "herald_sends_total{channel=\"other\",outcome=\"failed\"} 5");
	assert_line(t, "herald_sends_total{channel=\"telegram\",outcome=\"attempted\"} 0");
	/* No store: no store gauges. */
	assert_null(strstr(t, "herald_queue_depth"));
	assert_null(strstr(t, "herald_webhook_inbox_pending"));
	free(t);
}

static void test_histogram_buckets(void **state)
{
	(void)state;
	/* On a bound counts in that bucket (le is <=); just above goes to the next. */
	metrics_send_latency("sms", 1000);     /* le 0.001 */
	metrics_send_latency("sms", 1001);     /* le 0.0025 */
	metrics_send_latency("sms", 0);        /* le 0.001 */
	metrics_send_latency("sms", -7);       /* clamped to 0 */
	metrics_send_latency("sms", 300000);   /* le 0.5 */
	metrics_send_latency("sms", 20000000); /* only +Inf */
	char *t = render(NULL);
	assert_line(t, "# TYPE herald_send_latency_seconds histogram");
	static const char *const want[] = {
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.001\"} 3",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.0025\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.005\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.01\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.025\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.05\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.1\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.25\"} 4",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"0.5\"} 5",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"1\"} 5",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"2.5\"} 5",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"5\"} 5",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"10\"} 5",
		"herald_send_latency_seconds_bucket{channel=\"sms\",le=\"+Inf\"} 6",
		"herald_send_latency_seconds_sum{channel=\"sms\"} 20.302001",
		"herald_send_latency_seconds_count{channel=\"sms\"} 6",
		"herald_send_latency_seconds_count{channel=\"rcs\"} 0",
		"herald_send_latency_seconds_sum{channel=\"rcs\"} 0.000000",
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++)
		assert_line(t, want[i]);
	/* Buckets of one series are in increasing order of le, +Inf last. */
	const char *a = strstr(t, "{channel=\"sms\",le=\"0.001\"}");
	const char *b = strstr(t, "{channel=\"sms\",le=\"10\"}");
	const char *c = strstr(t, "{channel=\"sms\",le=\"+Inf\"}");
	assert_true(a && b && c && a < b && b < c);
	free(t);
}

static void test_gauges_http_accepted_webhooks(void **state)
{
	(void)state;
	metrics_inflight_add(5);
	metrics_inflight_add(-2);
	metrics_accepted(10);
	metrics_accepted(0);
	metrics_http(200);
	metrics_http(202);
	metrics_http(404);
	metrics_http(422);
	metrics_http(431);
	metrics_http(503);
	metrics_http(301); /* not a rendered class */
	metrics_http(0);
	metrics_webhook("telegram", M_WH_RECEIVED, 2);
	metrics_webhook("telegram", M_WH_REJECTED, 1);
	metrics_webhook("telegram", M_WH_APPLIED, 7);
	metrics_webhook("telegram", M_WH_IGNORED, 1);
	metrics_webhook("telegram", M_WH_INBOUND, 3);
	char *t = render(NULL);
	assert_line(t, "# TYPE herald_sends_in_flight gauge");
	assert_line(t, "herald_sends_in_flight 3");
	assert_line(t, "# TYPE herald_messages_accepted_total counter");
	assert_line(t, "herald_messages_accepted_total 10");
	assert_line(t, "# TYPE herald_http_responses_total counter");
	assert_line(t, "herald_http_responses_total{code=\"2xx\"} 2");
	assert_line(t, "herald_http_responses_total{code=\"4xx\"} 3");
	assert_line(t, "herald_http_responses_total{code=\"5xx\"} 1");
	assert_line(t, "# TYPE herald_webhooks_total counter");
	assert_line(t, "herald_webhooks_total{channel=\"telegram\",result=\"received\"} 2");
	assert_line(t, "herald_webhooks_total{channel=\"telegram\",result=\"rejected\"} 1");
	assert_line(t, "herald_webhooks_total{channel=\"telegram\",result=\"applied\"} 7");
	assert_line(t, "herald_webhooks_total{channel=\"telegram\",result=\"ignored\"} 1");
	assert_line(t, "herald_webhooks_total{channel=\"telegram\",result=\"inbound\"} 3");
	assert_line(t, "herald_webhooks_total{channel=\"whatsapp\",result=\"inbound\"} 0");
	free(t);
}

/* Message retention adds what each pass removed; nothing and negative
 * figures add nothing. */
static void test_retention_counters(void **state)
{
	(void)state;
	metrics_retention(7, 30, 1);
	metrics_retention(0, 0, 0);
	metrics_retention(-1, -1, -1);
	metrics_retention(3, 9, 0);
	char *t = render(NULL);
	assert_line(t, "# TYPE herald_retention_removed_total counter");
	assert_line(t, "herald_retention_removed_total{what=\"messages\"} 10");
	assert_line(t, "herald_retention_removed_total{what=\"events\"} 39");
	assert_line(t, "# TYPE herald_retention_months_dropped_total counter");
	assert_line(t, "herald_retention_months_dropped_total 1");
	free(t);
}

/* A store that answers only the two reads metrics_render makes. */
struct fake_store {
	struct store base;
	int fail;
};

/* The kept counts (message_gauges); the scan (message_counts) is never
 * called: the fake has none, so a render that asked for it would crash. */
static int fake_counts(struct store *st, int64_t counts[MSG__COUNT])
{
	if (((struct fake_store *)st)->fail)
		return HR_EIO;
	for (int i = 0; i < MSG__COUNT; i++)
		counts[i] = i * 10;
	return 0;
}

static int fake_pending(struct store *st, int64_t *n)
{
	if (((struct fake_store *)st)->fail)
		return HR_EIO;
	*n = 42;
	return 0;
}

static void fake_write_stats(struct store *st, uint64_t *commits, uint64_t *jobs)
{
	(void)st;
	*commits = 7;
	*jobs = 123;
}

static void test_store_gauges(void **state)
{
	(void)state;
	static struct store_ops ops = {.name = "fake"};
	ops.message_gauges = fake_counts;
	ops.inbox_pending = fake_pending;
	ops.write_stats = fake_write_stats;
	struct fake_store fs = {.base = {.ops = &ops}};
	char *t = render(&fs.base);
	assert_line(t, "# TYPE herald_queue_depth gauge");
	assert_line(t, "herald_queue_depth{status=\"queued\"} 0");
	assert_line(t, "herald_queue_depth{status=\"sending\"} 10");
	assert_line(t, "herald_queue_depth{status=\"failed\"} 50");
	assert_line(t, "herald_queue_depth{status=\"unknown\"} 100");
	assert_line(t, "# TYPE herald_webhook_inbox_pending gauge");
	assert_line(t, "herald_webhook_inbox_pending 42");
	assert_line(t, "# TYPE herald_store_commits_total counter");
	assert_line(t, "herald_store_commits_total 7");
	assert_line(t, "# TYPE herald_store_jobs_total counter");
	assert_line(t, "herald_store_jobs_total 123");
	free(t);

	/* A failing store read leaves the gauge out rather than reporting 0. */
	fs.fail = 1;
	t = render(&fs.base);
	assert_null(strstr(t, "herald_queue_depth"));
	assert_null(strstr(t, "herald_webhook_inbox_pending"));
	assert_non_null(strstr(t, "herald_sends_total"));
	free(t);
}

/*
 * Structural check of the whole exposition: every sample belongs to a family
 * declared by a preceding # TYPE line, each family is declared once, and each
 * value parses as a number.
 */
static void test_format_valid(void **state)
{
	(void)state;
	char *t = render(NULL);
	char declared[32][64];
	int ndecl = 0, samples = 0;
	char *save = NULL;
	for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[64], type[16];
			assert_int_equal(sscanf(line + 7, "%63s %15s", name, type), 2);
			for (int i = 0; i < ndecl; i++)
				assert_string_not_equal(declared[i], name);
			assert_true(ndecl < 32);
			strcpy(declared[ndecl++], name);
			continue;
		}
		assert_true(line[0] != '#');
		size_t nl = strcspn(line, "{ ");
		int ok = 0;
		for (int i = 0; i < ndecl && !ok; i++) {
			size_t dl = strlen(declared[i]);
			if (nl >= dl && strncmp(line, declared[i], dl) == 0) {
				const char *suf = line + dl;
				ok = nl == dl || strncmp(suf, "_bucket", 7) == 0 ||
				     strncmp(suf, "_sum", 4) == 0 || strncmp(suf, "_count", 6) == 0;
			}
		}
		if (!ok)
			fail_msg("sample without a # TYPE: %s", line);
		const char *val = strrchr(line, ' ');
		assert_non_null(val);
		char *end;
		strtod(val + 1, &end);
		assert_true(*end == '\0' && end != val + 1);
		samples++;
	}
	assert_true(samples > 100);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_counters),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_gauges_http_accepted_webhooks),
		cmocka_unit_test(test_retention_counters),
		cmocka_unit_test(test_store_gauges),
		cmocka_unit_test(test_format_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
