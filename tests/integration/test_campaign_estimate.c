/*
 * test_campaign_estimate.c - the cost estimate and SMS segments of an
 * upload's validation report, against a real `herald serve` with a
 * `pricing:` section: prices by channel, country (the number's calling
 * code) and WhatsApp category (the template's, or marketing assumed and
 * said), SMS by segment (GSM-7 and UCS-2 texts), only the rows that will
 * become messages counted (invalid and duplicate rows are not), the same
 * figures for a dry run and a real upload; a template's category through
 * POST /v1/templates is checked and named. The preview (POST /v1/batches
 * {"preview": N}): headers, the mapping (or why it cannot be resolved),
 * the first N rows with each recipient as given and normalised (or the
 * reason), each row's verdict, and nothing created. The campaign detail's
 * breakdown (GET /v1/batches/{id}/breakdown): failures by provider code
 * and replies by kind and button payload, exactly, another tenant 404.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(
	    &W,
	    "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	    "        account_sid: AC0123456789abcdef0123456789abcdef\n"
	    "        auth_token: tw-token-123\n        from: \"+15005550006\"\n"
	    "        rate_limit: 50\n",
	    "      - {name: otp_code, channel: whatsapp, language: en, category: authentication,\n"
	    "         body: \"Your code is {{1}}\"}\n",
	    "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n",
	    "    recipients:\n"
	    "      \"447400300041\": {press: PAY}\n"
	    "      \"447400300042\": {press: PAY}\n"
	    "      \"447400300043\": {press: LATER}\n"
	    "      \"447400300044\": {reply: \"how much?\"}\n"
	    "      \"447400300045\": {error: 131026}\n"
	    "      \"447400300046\": {error: 131026}\n"
	    "      \"447400300047\": {error: 131047}\n",
	    "pricing:\n  currency: EUR\n"
	    "  sms: {default: 0.05, \"44\": 0.035}\n"
	    "  whatsapp:\n"
	    "    marketing: {default: 0.06, \"44\": 0.0529}\n"
	    "    authentication: {\"44\": 0.03}\n");
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

static json_t *post(const char *body, long want)
{
	struct resp r = api_post(&W, "/v1/batches", body);
	if (r.status != want)
		fail_msg("POST /v1/batches: %ld %s", r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static json_t *group(json_t *est, const char *channel, int cc, const char *category)
{
	size_t i;
	json_t *g;
	json_array_foreach(json_object_get(est, "by"), i, g)
	{
		const char *cat = json_string_value(json_object_get(g, "category"));
		if (!strcmp(json_string_value(json_object_get(g, "channel")), channel) &&
		    json_integer_value(json_object_get(g, "country_code")) == cc &&
		    ((!category && !cat) || (category && cat && !strcmp(cat, category))))
			return g;
	}
	char *d = json_dumps(est, JSON_COMPACT);
	fail_msg("no group %s/%d/%s in %s", channel, cc, category ? category : "-", d);
	return NULL;
}

static double num(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static long integer(json_t *o, const char *k)
{
	return (long)json_integer_value(json_object_get(o, k));
}

/* WhatsApp template without a category (payment_reminder): 3 GB rows, 1
 * French, 1 invalid and 1 duplicate that do not count; marketing assumed
 * and said. Dry run and real upload agree. */
static void test_whatsapp_estimate(void **state)
{
	(void)state;
	const char *rows = "[{\"phone\":\"+447400300001\",\"name\":\"A\",\"amount\":\"1\"},"
	                   "{\"phone\":\"+447400300002\",\"name\":\"B\",\"amount\":\"2\"},"
	                   "{\"phone\":\"+447400300003\",\"name\":\"C\",\"amount\":\"3\"},"
	                   "{\"phone\":\"+33612345678\",\"name\":\"D\",\"amount\":\"4\"},"
	                   "{\"phone\":\"not a number\",\"name\":\"E\",\"amount\":\"5\"},"
	                   "{\"phone\":\"+447400300001\",\"name\":\"A\",\"amount\":\"1\"}]";
	for (int dry = 1; dry >= 0; dry--) {
		char body[2048];
		snprintf(
		    body, sizeof body,
		    "{\"name\":\"estimate\",\"channel\":\"whatsapp\",\"template\":{\"name\":"
		    "\"payment_reminder\",\"language\":\"en_GB\"},\"params\":[\"name\",\"amount\"],"
		    "\"start\":false,\"dry_run\":%s,\"rows\":%s}",
		    dry ? "true" : "false", rows);
		json_t *j = post(body, dry ? 200 : 201);
		json_t *e = json_object_get(j, "estimate");
		assert_true(json_is_true(json_object_get(e, "priced")));
		assert_string_equal(json_string_value(json_object_get(e, "currency")), "EUR");
		assert_int_equal(integer(e, "messages"), 4);
		assert_int_equal(integer(e, "sms_segments"), 0);
		assert_int_equal(integer(e, "unpriced_messages"), 0);
		/* 3 x 0.0529 + 1 x 0.06 = 0.2187 */
		assert_true(num(e, "total") == 0.2187);
		json_t *g = group(e, "whatsapp", 44, "marketing");
		assert_int_equal(integer(g, "messages"), 3);
		assert_true(num(g, "unit_price") == 0.0529);
		g = group(e, "whatsapp", 33, "marketing");
		assert_true(num(g, "cost") == 0.06);
		assert_non_null(strstr(json_string_value(json_object_get(e, "category_note")),
		                       "payment_reminder"));
		json_decref(j);
	}
}

/* A template that declares its category is priced as that: authentication
 * has a GB price and no default, so the US row is unpriced (not free). */
static void test_declared_category(void **state)
{
	(void)state;
	json_t *j = post("{\"name\":\"otp\",\"channel\":\"whatsapp\",\"template\":{\"name\":"
	                 "\"otp_code\",\"language\":\"en\"},\"params\":[\"code\"],\"dry_run\":true,"
	                 "\"rows\":[{\"phone\":\"+447400300011\",\"code\":\"1\"},"
	                 "{\"phone\":\"+12025550123\",\"code\":\"2\"}]}",
	                 200);
	json_t *e = json_object_get(j, "estimate");
	assert_int_equal(integer(e, "messages"), 2);
	assert_int_equal(integer(e, "unpriced_messages"), 1);
	assert_true(num(e, "total") == 0.03);
	assert_null(json_object_get(e, "category_note"));
	json_t *g = group(e, "whatsapp", 1, "authentication");
	assert_true(json_is_null(json_object_get(g, "cost")));
	json_decref(j);
	/* The API checks a template's category like the config does. */
	struct resp r = api_post(&W, "/v1/templates",
	                         "{\"channel\":\"whatsapp\",\"name\":\"t2\",\"language\":\"en\","
	                         "\"body\":\"hi\",\"category\":\"promo\"}");
	assert_int_equal(r.status, 422);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
	    "category");
	resp_free(&r);
}

/* SMS by segment: a GSM-7 text of 1 segment, a 200-character one (2), and
 * a UCS-2 one of 80 characters (2); GB at 0.035, the rest at the default. */
static void test_sms_segments(void **state)
{
	(void)state;
	char long_text[256];
	memset(long_text, 'a', 200);
	long_text[200] = 0;
	/* "Привет " x 10 + "При": 73 characters outside GSM-7. */
	char ucs[512] = "";
	for (int i = 0; i < 10; i++)
		strcat(ucs, "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ");
	strcat(ucs, "\xd0\x9f\xd1\x80\xd0\xb8");
	char body[4096];
	snprintf(
	    body, sizeof body,
	    "{\"name\":\"sms\",\"channel\":\"sms\",\"account\":\"acme-sms\",\"text\":\"{{1}}\","
	    "\"params\":[\"t\"],\"dry_run\":true,\"rows\":["
	    "{\"phone\":\"+447400300021\",\"t\":\"short\"},"
	    "{\"phone\":\"+447400300022\",\"t\":\"%s\"},"
	    "{\"phone\":\"+33612345679\",\"t\":\"%s\"}]}",
	    long_text, ucs);
	json_t *j = post(body, 200);
	json_t *e = json_object_get(j, "estimate");
	/* "Привет " x 10 + "При": 73 UCS-2 units: 2 segments (67 per part). */
	assert_int_equal(integer(e, "messages"), 3);
	assert_int_equal(integer(e, "sms_segments"), 5);
	json_t *g = group(e, "sms", 44, NULL);
	assert_int_equal(integer(g, "messages"), 2);
	assert_int_equal(integer(g, "units"), 3);
	assert_true(num(g, "cost") == 0.105);
	g = group(e, "sms", 33, NULL);
	assert_int_equal(integer(g, "units"), 2);
	assert_true(num(g, "cost") == 0.1);
	assert_true(num(e, "total") == 0.205);
	json_decref(j);
}

static long batch_count(void)
{
	struct resp r = api_get(&W, "/v1/batches?limit=1000");
	assert_int_equal(r.status, 200);
	long n = (long)json_array_size(json_object_get(r.json, "data"));
	resp_free(&r);
	return n;
}

static void test_preview(void **state)
{
	(void)state;
	long before = batch_count();
	const char *rows = "[{\"phone\":\"07400 300031\",\"name\":\"Ann\",\"amount\":\"1\"},"
	                   "{\"phone\":\"12345\",\"name\":\"Bob\",\"amount\":\"2\"},"
	                   "{\"phone\":\"+44 7400 300031\",\"name\":\"Ann\",\"amount\":\"3\"},"
	                   "{\"phone\":\"+33 6 12 34 56 78\",\"name\":\"Dee\",\"amount\":\"4\"}]";
	char body[2048];
	/* No params: the template's two placeholders have no columns named 1
	 * and 2; the mapping says so, and the numbers are still checked. */
	snprintf(body, sizeof body,
	         "{\"name\":\"p\",\"channel\":\"whatsapp\",\"template\":{\"name\":"
	         "\"payment_reminder\",\"language\":\"en_GB\"},\"default_region\":\"GB\","
	         "\"preview\":3,\"rows\":%s}",
	         rows);
	json_t *j = post(body, 200);
	assert_true(json_is_true(json_object_get(j, "preview")));
	assert_int_equal(json_array_size(json_object_get(j, "headers")), 3);
	json_t *map = json_object_get(j, "mapping");
	assert_string_equal(json_string_value(json_object_get(map, "recipient_column")), "phone");
	assert_int_equal(integer(map, "placeholders"), 2);
	assert_true(json_is_null(json_object_get(map, "params")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(map, "error"), "field")), "params");
	json_t *rs = json_object_get(j, "rows");
	assert_int_equal(json_array_size(rs), 3);
	assert_true(json_is_true(json_object_get(j, "more")));
	json_t *r0 = json_object_get(json_array_get(rs, 0), "recipient");
	assert_string_equal(json_string_value(json_object_get(r0, "given")), "07400 300031");
	assert_string_equal(json_string_value(json_object_get(r0, "e164")), "+447400300031");
	assert_string_equal(json_string_value(json_object_get(r0, "normalized")), "447400300031");
	assert_true(json_is_null(json_object_get(r0, "reason")));
	json_t *r1 = json_object_get(json_array_get(rs, 1), "recipient");
	assert_true(json_is_null(json_object_get(r1, "e164")));
	assert_true(strlen(json_string_value(json_object_get(r1, "reason"))) > 0);
	assert_int_equal(integer(json_array_get(rs, 1), "row"), 2);   /* JSON rows count from 1 */
	assert_null(json_object_get(json_array_get(rs, 0), "valid")); /* not mapped: no verdict */
	json_decref(j);
	/* Mapped: each row's verdict as the upload would give it. */
	snprintf(body, sizeof body,
	         "{\"name\":\"p\",\"channel\":\"whatsapp\",\"template\":{\"name\":"
	         "\"payment_reminder\",\"language\":\"en_GB\"},\"default_region\":\"GB\","
	         "\"params\":[\"name\",\"amount\"],\"preview\":50,\"rows\":%s}",
	         rows);
	j = post(body, 200);
	map = json_object_get(j, "mapping");
	assert_null(json_object_get(map, "error"));
	assert_string_equal(json_string_value(json_array_get(json_object_get(map, "params"), 1)),
	                    "amount");
	rs = json_object_get(j, "rows");
	assert_int_equal(json_array_size(rs), 4);
	assert_false(json_is_true(json_object_get(j, "more")));
	assert_true(json_is_true(json_object_get(json_array_get(rs, 0), "valid")));
	assert_false(json_is_true(json_object_get(json_array_get(rs, 1), "valid")));
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_array_get(rs, 1), "error"), "column")),
	                    "phone");
	assert_true(json_is_true(json_object_get(json_array_get(rs, 2), "duplicate")));
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_array_get(rs, 3), "recipient"), "e164")),
	                    "+33612345678");
	json_decref(j);
	/* Bounds, named; nothing was created by any of it. */
	static const char *const bad[] = {"0", "51", "\"3\"", "true"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(body, sizeof body,
		         "{\"name\":\"p\",\"channel\":\"whatsapp\",\"text\":\"hi\","
		         "\"preview\":%s,\"rows\":%s}",
		         bad[i], rows);
		struct resp r = api_post(&W, "/v1/batches", body);
		assert_int_equal(r.status, 422);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
		    "preview");
		resp_free(&r);
	}
	assert_int_equal(batch_count(), before);
}

struct want_done {
	const char *id;
};

static bool breakdown_ready(struct world *w, void *arg)
{
	(void)w;
	struct want_done *x = arg;
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s", x->id);
	struct resp r = api_get(&W, path);
	bool ok = r.status == 200 &&
	          !strcmp(json_string_value(json_object_get(r.json, "status")), "completed") &&
	          json_integer_value(json_object_get(r.json, "replied")) == 4;
	resp_free(&r);
	return ok;
}

static void test_breakdown(void **state)
{
	(void)state;
	char rows[1024] = "[";
	for (int i = 41; i <= 48; i++)
		snprintf(rows + strlen(rows), sizeof rows - strlen(rows),
		         "%s{\"phone\":\"+4474003000%02d\",\"name\":\"N\",\"amount\":\"1\"}",
		         i > 41 ? "," : "", i);
	strcat(rows, "]");
	char body[2048];
	snprintf(body, sizeof body,
	         "{\"name\":\"bd\",\"channel\":\"whatsapp\",\"template\":{\"name\":"
	         "\"payment_reminder\",\"language\":\"en_GB\"},\"params\":[\"name\",\"amount\"],"
	         "\"start\":true,\"rows\":%s}",
	         rows);
	json_t *b = post(body, 201);
	char id[64], path[160];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(b, "id")));
	json_decref(b);
	struct want_done w = {id};
	assert_true(wait_until(breakdown_ready, &W, &w, 60));
	snprintf(path, sizeof path, "/v1/batches/%s/breakdown", id);
	struct resp r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	json_t *f = json_object_get(r.json, "failures");
	assert_int_equal(integer(f, "total"), 3);
	assert_int_equal(integer(f, "counted"), 3);
	assert_false(json_is_true(json_object_get(f, "sampled")));
	json_t *codes = json_object_get(f, "by_code");
	assert_int_equal(json_array_size(codes), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(codes, 0), "code")),
	                    "131026");
	assert_int_equal(integer(json_array_get(codes, 0), "count"), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(codes, 1), "code")),
	                    "131047");
	json_t *rp = json_object_get(r.json, "replies");
	assert_int_equal(integer(rp, "replied_messages"), 4);
	assert_int_equal(integer(rp, "counted"), 4);
	json_t *by = json_object_get(rp, "by");
	assert_int_equal(json_array_size(by), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(by, 0), "kind")),
	                    "button");
	assert_string_equal(json_string_value(json_object_get(json_array_get(by, 0), "payload")),
	                    "PAY");
	assert_int_equal(integer(json_array_get(by, 0), "count"), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(by, 2), "kind")),
	                    "text");
	assert_true(json_is_null(json_object_get(json_array_get(by, 2), "payload")));
	resp_free(&r);
	/* Another tenant's campaign does not exist for it; no query parameters. */
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	r = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/breakdown?limit=5", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whatsapp_estimate), cmocka_unit_test(test_declared_category),
	    cmocka_unit_test(test_sms_segments),      cmocka_unit_test(test_preview),
	    cmocka_unit_test(test_breakdown),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
