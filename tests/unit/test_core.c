/*
 * test_core.c - ids, status precedence, templates, crypto vectors, rate
 * limiting and backoff, config and secret references.
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
#include "core/crypto.h"
#include "core/ratelimit.h"
#include "core/segments.h"
#include "core/template.h"
#include "herald.h"

/* ---- ids ---- */

static void test_ids_sorted_unique(void **state)
{
	(void)state;
	char prev[HR_ID_LEN + 1] = "", cur[HR_ID_LEN + 1];
	for (int i = 0; i < 20000; i++) {
		hr_id_new(cur);
		assert_int_equal(strlen(cur), HR_ID_LEN);
		assert_true(hr_id_valid(cur));
		assert_true(strcmp(prev, cur) < 0);
		memcpy(prev, cur, sizeof cur);
	}
	assert_false(hr_id_valid("not-an-id"));
	assert_false(hr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU")); /* 'U' is not Crockford */
	assert_true(hr_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
}

static void test_id_time_prefix(void **state)
{
	(void)state;
	char id[HR_ID_LEN + 1];
	int64_t before = hr_now_us() / 1000;
	hr_id_new(id);
	/* Decode the 10-char time prefix. */
	const char *b32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64_t ms = 0;
	for (int i = 0; i < 10; i++)
		ms = ms * 32 + (uint64_t)(strchr(b32, id[i]) - b32);
	assert_true((int64_t)ms >= before && (int64_t)ms <= before + 1000);
}

/* An id made for a time carries that time; the time prefix of an instant
 * sorts between the ids of the millisecond before and those made at it. */
static void test_id_at_and_prefix(void **state)
{
	(void)state;
	/* 2024-01-01T00:00:00Z = 1704067200000 ms: the prefix PostgreSQL's
	 * herald_ulid_prefix('2024-01-01') gives (checked in test_postgres). */
	const int64_t jan = 1704067200000LL * 1000;
	char p[HR_ID_TIME_LEN + 1], id[HR_ID_LEN + 1], prev[HR_ID_LEN + 1];
	hr_id_time_prefix(jan, p);
	assert_string_equal(p, "01HK153X00");
	hr_id_time_prefix(jan + 999, p); /* same millisecond */
	assert_string_equal(p, "01HK153X00");
	hr_id_at(jan, id);
	assert_true(hr_id_valid(id));
	assert_memory_equal(id, "01HK153X00", HR_ID_TIME_LEN);
	assert_true(strcmp(id, p) > 0); /* at the instant: not below it */
	hr_id_at(jan - 1000, prev);     /* the millisecond before */
	assert_true(hr_id_valid(prev));
	assert_true(strcmp(prev, p) < 0);
	/* Random tails: two ids of one instant differ. */
	hr_id_at(jan, prev);
	assert_string_not_equal(id, prev);
	/* The ends of the 48-bit range are clamped, never wrapped. */
	hr_id_time_prefix(-5, p);
	assert_string_equal(p, "0000000000");
	hr_id_time_prefix(INT64_MAX, p);
	assert_string_equal(p, "7ZZZZZZZZZ");
	/* Now: the prefix of a fresh id. */
	int64_t now = hr_now_us();
	hr_id_new(id);
	hr_id_time_prefix(now - 1000, p);
	assert_true(strcmp(id, p) > 0);
}

/* ---- status precedence: the whole table ---- */

#define A STATUS_APPLY
#define I STATUS_APPLY_IMPLIED
#define D STATUS_IGNORE_DUP
#define S STATUS_IGNORE_STALE

/* rows: current status; columns: incoming status, in enum order:
 * queued sending sent delivered read failed undelivered cancelled expired suppressed unknown */
static const enum status_verdict table[MSG__COUNT][MSG__COUNT] = {
    /* queued      */ {D, A, A, A, I, A, A, A, A, A, S},
    /* sending     */ {A, D, A, A, I, A, A, S, S, S, A},
    /* sent        */ {S, S, D, A, I, A, A, S, S, S, S},
    /* delivered   */ {S, S, S, D, A, S, S, S, S, S, S},
    /* read        */ {S, S, S, S, D, S, S, S, S, S, S},
    /* failed      */ {S, S, S, A, I, D, S, S, S, S, S},
    /* undelivered */ {S, S, S, A, I, S, D, S, S, S, S},
    /* cancelled   */ {S, S, S, S, S, S, S, D, S, S, S},
    /* expired     */ {S, S, S, S, S, S, S, S, D, S, S},
    /* suppressed  */ {S, S, S, S, S, S, S, S, S, D, S},
    /* unknown     */ {S, S, A, A, I, A, A, S, S, S, D},
};

static void test_status_table(void **state)
{
	(void)state;
	for (int cur = 0; cur < MSG__COUNT; cur++)
		for (int next = 0; next < MSG__COUNT; next++) {
			enum status_verdict v = status_decide(cur, next);
			if (v != table[cur][next])
				fail_msg("%s -> %s: got %s, want %s", msg_status_name(cur),
				         msg_status_name(next), status_verdict_name(v),
				         status_verdict_name(table[cur][next]));
		}
}

static void test_status_names(void **state)
{
	(void)state;
	for (int s = 0; s < MSG__COUNT; s++) {
		enum msg_status out;
		assert_int_equal(msg_status_parse(msg_status_name(s), &out), 0);
		assert_int_equal(out, s);
	}
	enum msg_status out;
	assert_int_equal(msg_status_parse("bogus", &out), HR_EINVAL);
	assert_true(msg_status_final(MSG_READ, true));
	assert_false(msg_status_final(MSG_SENT, true));
	assert_true(msg_status_final(MSG_SENT, false)); /* Telegram */
	assert_false(msg_status_final(MSG_QUEUED, false));
}

/* What retention may remove: final, and DELIVERED. Closed under the status
 * table: no event moves a settled message back to an open status (so a
 * month found all settled stays so until it is dropped). */
static void test_status_settled(void **state)
{
	(void)state;
	static const bool want[MSG__COUNT][2] = {
	    /* [status] = {with receipts, without (Telegram)} */
	    [MSG_QUEUED] = {false, false},    [MSG_SENDING] = {false, false},
	    [MSG_SENT] = {false, true},       [MSG_DELIVERED] = {true, true},
	    [MSG_READ] = {true, true},        [MSG_FAILED] = {true, true},
	    [MSG_UNDELIVERED] = {true, true}, [MSG_CANCELLED] = {true, true},
	    [MSG_EXPIRED] = {true, true},     [MSG_SUPPRESSED] = {true, true},
	    [MSG_UNKNOWN] = {false, false},
	};
	for (int r = 0; r < 2; r++)
		for (int s = 0; s < MSG__COUNT; s++) {
			bool receipts = r == 0;
			if (msg_status_settled(s, receipts) != want[s][r])
				fail_msg("settled(%s, receipts %d)", msg_status_name(s), receipts);
			if (!msg_status_settled(s, receipts))
				continue;
			for (int next = 0; next < MSG__COUNT; next++) {
				enum status_verdict v = status_decide(s, next);
				if ((v == STATUS_APPLY || v == STATUS_APPLY_IMPLIED) &&
				    !msg_status_settled(next, receipts))
					fail_msg("%s -> %s reopens a settled message",
					         msg_status_name(s), msg_status_name(next));
			}
		}
}

/* The campaign status table, whole: forward only, the three end states
 * final, PAUSED a side state of PROCESSING (back to it, or stopped). */
static void test_batch_status_table(void **state)
{
	(void)state;
	enum {
		P = BATCH_PENDING,
		V = BATCH_VALIDATED,
		R = BATCH_PROCESSING,
		C = BATCH_COMPLETED,
		X = BATCH_CANCELLED,
		F = BATCH_FAILED,
		Z = BATCH_PAUSED
	};
	static const bool want[BATCH__COUNT][BATCH__COUNT] = {
	    [P] = {[V] = true, [X] = true, [F] = true},
	    [V] = {[R] = true, [X] = true, [F] = true},
	    [R] = {[C] = true, [X] = true, [F] = true, [Z] = true},
	    [Z] = {[R] = true, [X] = true, [F] = true},
	};
	for (int a = 0; a < BATCH__COUNT; a++)
		for (int b = 0; b < BATCH__COUNT; b++)
			if (batch_status_allowed((enum batch_status)a, (enum batch_status)b) !=
			    want[a][b])
				fail_msg("%s -> %s", batch_status_name((enum batch_status)a),
				         batch_status_name((enum batch_status)b));
	for (int a = 0; a < BATCH__COUNT; a++) {
		enum batch_status out;
		assert_int_equal(batch_status_parse(batch_status_name((enum batch_status)a), &out),
		                 0);
		assert_int_equal(out, a);
	}
	assert_string_equal(batch_status_name(BATCH_PAUSED), "paused");
	assert_int_equal(BATCH_PAUSED, 6); /* stored: never renumbered */
}

/* ---- templates ---- */

static void test_template_render(void **state)
{
	(void)state;
	struct hr_err err = {0};
	int n;
	assert_int_equal(template_param_count("Hi {{1}}, pay {{2}} by {{3}}. {{1}}!", &n, &err), 0);
	assert_int_equal(n, 3);
	const char *p[] = {"Ana", "£120.00", "Friday"};
	char *out = template_render("Hi {{1}}, pay {{2}} by {{3}}. {{1}}!", p, 3, &err);
	assert_string_equal(out, "Hi Ana, pay £120.00 by Friday. Ana!");
	free(out);
	out = template_render("No params", NULL, 0, &err);
	assert_string_equal(out, "No params");
	free(out);
}

static void test_template_errors(void **state)
{
	(void)state;
	struct hr_err err = {0};
	int n;
	const char *p[] = {"a", "b", "c"};
	assert_null(template_render("Hi {{1}} {{2}}", p, 1, &err));
	assert_int_equal(err.code, HR_EINVAL);
	assert_string_equal(err.field, "template.parameters");
	assert_non_null(strstr(err.msg, "{{2}} is missing"));
	assert_null(template_render("Hi {{1}}", p, 3, &err));
	assert_string_equal(err.field, "template.parameters[1]");
	assert_int_equal(template_param_count("gap {{1}} {{3}}", &n, &err), HR_EINVAL);
	assert_non_null(strstr(err.msg, "{{2}}"));
	assert_int_equal(template_param_count("bad {{x}}", &n, &err), HR_EINVAL);
	assert_int_equal(template_param_count("bad {{0}}", &n, &err), HR_EINVAL);
}

/* ---- crypto: vectors computed independently of Herald (PROVIDERS.md) ---- */

static void test_whatsapp_vector(void **state)
{
	(void)state;
	const char *body =
	    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\","
	    "\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"
	    "\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},"
	    "\"statuses\":[{\"id\":\"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3\",\"status\":"
	    "\"delivered\",\"timestamp\":\"1750263773\",\"recipient_id\":\"15550123456\"}]},"
	    "\"field\":\"messages\"}]}]}";
	char hex[65];
	hr_hmac_sha256_hex("app-secret-123", 14, body, strlen(body), hex);
	assert_string_equal(hex,
	                    "9ac0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f");
}

static void test_twilio_vector(void **state)
{
	(void)state;
	const char *s = "https://mycompany.com/myapp.php?foo=1&bar=2"
	                "CallSidCA1234567890ABCDECaller+12349013030Digits1234"
	                "From+12349013030To+18005551212";
	char b64[29];
	hr_hmac_sha1_b64("12345", 5, s, strlen(s), b64);
	assert_string_equal(b64, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
}

static void test_rbm_vector(void **state)
{
	(void)state;
	const char *data =
	    "eyJzZW5kZXJQaG9uZU51bWJlciI6IisxNTU1MDEyMzQ1NiIsImV2ZW50VHlwZSI6IkRFTElWRVJFRCIsImV2"
	    "ZW50SWQiOiJNeEFCQyIsIm1lc3NhZ2VJZCI6IjBmOWE2YzFlLTRjNzctNGE0ZS05ZDNlLTJiMWY3YTVkNmUw"
	    "MSIsInNlbmRUaW1lIjoiMjAyNi0wMS0xNVQxMDowMDowMC4xMjM0NTZaIiwiYWdlbnRJZCI6ImhlcmFsZF9k"
	    "ZW1vX2FnZW50In0=";
	size_t len;
	unsigned char *raw = hr_b64_decode(data, strlen(data), &len);
	assert_non_null(raw);
	assert_int_equal(len, strlen((char *)raw));
	assert_non_null(strstr((char *)raw, "\"eventType\":\"DELIVERED\""));
	char sig[89];
	hr_hmac_sha512_b64("SJENCPGJESMGUFPY", 16, raw, len, sig);
	assert_string_equal(sig, "KCGaIz53f71eIEwwsrk9nzo2mr4s6Lwyek//IAi+nra+hO5uKpkRRRh//NQQPCmT/"
	                         "R4sDIG/08SMM4h1iQP7HA==");
	char *again = hr_b64_encode(raw, len);
	assert_string_equal(again, data);
	free(again);
	free(raw);
	assert_null(hr_b64_decode("abc", 3, &len));
	assert_null(hr_b64_decode("ab!=", 4, &len));
}

static void test_sha256_and_consteq(void **state)
{
	(void)state;
	char hex[65];
	hr_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(hr_consteq("abc", 3, "abc", 3));
	assert_false(hr_consteq("abc", 3, "abd", 3));
	assert_false(hr_consteq("abc", 3, "abcd", 4));
	for (int i = 0; i < 1000; i++) {
		double u = hr_random_unit();
		assert_true(u >= 0 && u < 1);
	}
}

/* ---- rate limit and backoff ---- */

static void test_ratelimit(void **state)
{
	(void)state;
	struct ratelimit rl;
	int64_t t = 1000000;
	ratelimit_init(&rl, 80, 80, t);
	assert_int_equal(ratelimit_take(&rl, 100, t), 80); /* full burst */
	assert_int_equal(ratelimit_take(&rl, 1, t), 0);
	assert_int_equal(ratelimit_wait_us(&rl, t), 12500); /* 1/80 s */
	t += 500000;                                        /* half a second: 40 tokens */
	assert_int_equal(ratelimit_take(&rl, 100, t), 40);
	/* Over 10 simulated seconds, exactly rate*10 are granted. */
	int total = 0;
	for (int i = 0; i < 1000; i++) {
		t += 10000;
		total += ratelimit_take(&rl, 1000, t);
	}
	assert_int_equal(total, 800);
	ratelimit_pause(&rl, 2000000, t);
	assert_int_equal(ratelimit_take(&rl, 1, t + 1999999), 0);
	assert_int_equal(ratelimit_wait_us(&rl, t), 2000000);
	assert_true(ratelimit_take(&rl, 1, t + 2100000) >= 1);
}

static void test_backoff(void **state)
{
	(void)state;
	/* Full range at unit 0 and ~1, doubling per attempt, capped. */
	assert_int_equal(backoff_delay_us(1, 500000, 300000000, 0.0), 250000);
	assert_int_equal(backoff_delay_us(1, 500000, 300000000, 0.999999), 499999);
	assert_int_equal(backoff_delay_us(2, 500000, 300000000, 0.0), 500000);
	assert_int_equal(backoff_delay_us(3, 500000, 300000000, 0.0), 1000000);
	assert_int_equal(backoff_delay_us(30, 500000, 300000000, 0.0), 150000000);
	assert_true(backoff_delay_us(30, 500000, 300000000, 0.999999) <= 300000000);
	assert_int_equal(backoff_delay_us(0, 500000, 300000000, 0.0), 250000);
}

/* ---- config ---- */

static void test_config_yaml(void **state)
{
	(void)state;
	const char *y =
	    "server:\n  listen: 127.0.0.1:8080\n  threads: 4\n  flag: yes\n"
	    "tenants:\n  - id: demo\n    accounts:\n      - id: a\n        rate_limit: \"80\"\n";
	struct hr_err err = {0};
	json_t *c = hr_config_parse(y, strlen(y), &err);
	assert_non_null(c);
	assert_string_equal(hr_cfg_str(c, "server.listen", NULL, &err), "127.0.0.1:8080");
	assert_int_equal(hr_cfg_int(c, "server.threads", 2, 1, 64, &err), 4);
	assert_int_equal(hr_cfg_int(c, "server.missing", 7, 1, 64, &err), 7);
	assert_true(hr_cfg_bool(c, "server.flag", false, &err));
	assert_int_equal(err.code, 0);
	json_t *acct = json_array_get(
	    json_object_get(json_array_get(json_object_get(c, "tenants"), 0), "accounts"), 0);
	assert_int_equal((int)hr_cfg_num(acct, "rate_limit", 1, 0, 1e6, &err), 80);
	/* Errors name the key. */
	hr_cfg_int(c, "server.threads", 2, 1, 3, &err);
	assert_int_equal(err.code, HR_EINVAL);
	assert_string_equal(err.field, "server.threads");
	hr_err_clear(&err);
	hr_cfg_int(c, "server.listen", 2, 1, 3, &err);
	assert_string_equal(err.field, "server.listen");
	json_decref(c);

	assert_null(hr_config_parse("a: [1, 2", 8, &err));
	assert_int_equal(err.code, HR_EINVAL);
	assert_null(hr_config_parse("- just\n- a list\n", 16, &err));

	/* Bytes that are not UTF-8 (or a NUL) are refused before libfyaml,
	 * which never returned from such a byte in a directive
	 * (fuzz/regress/config/directive-not-utf8): the answer names the line. */
	static const struct {
		const char *text;
		size_t len;
		const char *msg;
	} bad[] = {
	    {"%\x80", 2, "config is not UTF-8 text (line 1, byte 2)"},
	    {"a: 1\n%A\xff\xfe", 9, "config is not UTF-8 text (line 2, byte 8)"},
	    {"a: \"\xc3\"\n", 7, "config is not UTF-8 text (line 1, byte 5)"},
	    {"a: 1\n\0b: 2\n", 11, "config is not UTF-8 text (line 2, byte 6)"},
	    {"a: \xed\xa0\x80\n", 7, "config is not UTF-8 text (line 1, byte 4)"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		hr_err_clear(&err);
		assert_null(hr_config_parse(bad[i].text, bad[i].len, &err));
		assert_int_equal(err.code, HR_EINVAL);
		assert_string_equal(err.msg, bad[i].msg);
	}
	/* Directives and non-ASCII text that is UTF-8 still load. */
	const char *ok = "%YAML 1.2\n---\nname: \"Caf\xc3\xa9 \xe2\x82\xac\"\n";
	hr_err_clear(&err);
	c = hr_config_parse(ok, strlen(ok), &err);
	assert_non_null(c);
	assert_string_equal(hr_cfg_str(c, "name", NULL, &err), "Caf\xc3\xa9 \xe2\x82\xac");
	json_decref(c);
	assert_int_equal(hr_utf8_check("ab\xc3\xa9", 4), 4);
	assert_int_equal(hr_utf8_check("ab\xc3\xa9", 3), 2); /* cut inside a character */
	assert_int_equal(hr_utf8_check("", 0), 0);
}

static void test_secrets(void **state)
{
	(void)state;
	struct hr_err err = {0};
	setenv("HERALD_TEST_SECRET", "s3cret", 1);
	char *v = hr_secret_resolve("env:HERALD_TEST_SECRET", "x", &err);
	assert_string_equal(v, "s3cret");
	free(v);
	assert_null(hr_secret_resolve("env:HERALD_TEST_NOPE", "accounts[a].app_secret", &err));
	assert_string_equal(err.field, "accounts[a].app_secret");
	assert_non_null(strstr(err.msg, "HERALD_TEST_NOPE"));
	char path[] = "/tmp/herald-secret-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "from-file\n", 10), 10);
	close(fd);
	char ref[64];
	snprintf(ref, sizeof ref, "file:%s", path);
	v = hr_secret_resolve(ref, "x", &err);
	assert_string_equal(v, "from-file");
	free(v);
	unlink(path);
	v = hr_secret_resolve("literal", "x", &err);
	assert_string_equal(v, "literal");
	free(v);
	assert_null(hr_secret_resolve(NULL, "x", &err));
}

static void test_utf8_copy(void **state)
{
	(void)state;
	char out[8];
	/* "aé€" = 1 + 2 + 3 bytes; a 6-byte buffer holds "aé" + NUL, not half of €. */
	assert_int_equal(hr_utf8_copy(out, "a\xc3\xa9\xe2\x82\xac", 6), 3);
	assert_string_equal(out, "a\xc3\xa9");
	assert_int_equal(hr_utf8_copy(out, "a\xc3\xa9\xe2\x82\xac", 7), 6);
	/* Invalid bytes become '?': a lone continuation, an overlong, a surrogate. */
	hr_utf8_copy(out, "x\x80y\xc0\xaf", sizeof out);
	assert_string_equal(out, "x?y??");
	hr_utf8_copy(out, "\xed\xa0\x80z", sizeof out);
	assert_string_equal(out, "???z");
	/* A truncated sequence at the end of the input. */
	hr_utf8_copy(out, "ab\xe2\x82", sizeof out);
	assert_string_equal(out, "ab??");
	/* Emoji (4 bytes) fits exactly or not at all. */
	assert_int_equal(hr_utf8_copy(out, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8), 4);
	json_t *j = json_string(out);
	assert_non_null(j);
	json_decref(j);
}

/* Builds a string of n copies of unit followed by tail. */
static char *rep(const char *unit, int n, const char *tail)
{
	size_t ul = strlen(unit), tl = strlen(tail);
	char *s = malloc(ul * (size_t)n + tl + 1), *p = s;
	for (int i = 0; i < n; i++, p += ul)
		memcpy(p, unit, ul);
	memcpy(p, tail, tl + 1);
	return s;
}

static void test_sms_segments(void **state)
{
	(void)state;
	const char *euro = "\xe2\x82\xac", *zhe = "\xd0\xb6", *smile = "\xf0\x9f\x98\x80";
	struct {
		const char *unit;
		int n;
		const char *tail;
		enum sms_encoding enc;
		int units, segments;
	} cases[] = {
	    {"a", 0, "", SMS_GSM7, 0, 1},
	    {"a", 160, "", SMS_GSM7, 160, 1},
	    {"a", 161, "", SMS_GSM7, 161, 2},
	    {"a", 306, "", SMS_GSM7, 306, 2},
	    {"a", 307, "", SMS_GSM7, 307, 3},
	    {"\xc3\xa9", 160, "", SMS_GSM7, 160, 1}, /* é is in the basic set */
	    {euro, 80, "", SMS_GSM7, 160, 1},        /* € costs two septets */
	    {euro, 81, "", SMS_GSM7, 162, 2},
	    {"a", 152, "\xe2\x82\xac", SMS_GSM7, 154, 1},
	    /* The escape pair does not straddle: 152 + [€] moves € to segment 2. */
	    {"a", 152,
	     "\xe2\x82\xac"
	     "aaaaaaaaaa",
	     SMS_GSM7, 164, 2},
	    {"a", 159, "{", SMS_GSM7, 161, 2},
	    {zhe, 70, "", SMS_UCS2, 70, 1},
	    {zhe, 71, "", SMS_UCS2, 71, 2},
	    {zhe, 134, "", SMS_UCS2, 134, 2},
	    {zhe, 135, "", SMS_UCS2, 135, 3},
	    {smile, 35, "", SMS_UCS2, 70, 1}, /* emoji: two UTF-16 units */
	    {smile, 36, "", SMS_UCS2, 72, 2},
	    /* 66 units then an emoji: the pair is not split, it starts segment 2. */
	    {"a", 66, "\xf0\x9f\x98\x80\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6", SMS_UCS2, 72, 2},
	    {"a", 10, "\xd0\xb6", SMS_UCS2, 11, 1}, /* one non-GSM char makes it all UCS-2 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = rep(cases[i].unit, cases[i].n, cases[i].tail);
		struct sms_info info;
		struct hr_err err = {0};
		assert_int_equal(sms_segments(s, &info, &err), 0);
		if (info.encoding != cases[i].enc || info.units != cases[i].units ||
		    info.segments != cases[i].segments)
			fail_msg("case %zu: got enc %d units %d segs %d, want %d %d %d", i,
			         info.encoding, info.units, info.segments, cases[i].enc,
			         cases[i].units, cases[i].segments);
		free(s);
	}
	struct sms_info info;
	struct hr_err err = {0};
	assert_int_equal(sms_segments("ok\xff", &info, &err), HR_EINVAL);
	assert_string_equal(err.field, "text");
	(void)euro;
}

static void test_time_format(void **state)
{
	(void)state;
	char out[32];
	hr_time_format(1768471200123456LL, out);
	assert_string_equal(out, "2026-01-15T10:00:00.123456Z");
	int64_t us = 0;
	assert_int_equal(hr_time_parse(out, &us), 0);
	assert_int_equal(us, 1768471200123456LL);
	assert_int_equal(hr_time_parse("2026-01-15T12:30:00.5+02:30", &us), 0);
	assert_int_equal(us, 1768471200500000LL);
	assert_int_equal(hr_time_parse("2026-01-15T10:00:00Z", &us), 0);
	assert_int_equal(us, 1768471200000000LL);
	const char *bad[] = {"2026-01-15",
	                     "2026-01-15T10:00:00",
	                     "2026-01-15T10:00:00.Z",
	                     "2026-01-15T10:00:00+2:00",
	                     "2026-01-15T10:00:00Zx",
	                     "yesterday"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(hr_time_parse(bad[i], &us), HR_EINVAL);
}

/* Impossible calendar dates are refused, not rolled over (February 30th
 * used to become March 2nd); leap years follow the Gregorian rule; every
 * field is fixed-width as RFC 3339 says. */
static void test_time_parse_calendar(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t secs; /* -1: HR_EINVAL */
	} cases[] = {
	    {"2024-02-29T00:00:00Z", 1709164800}, /* divisible by 4 */
	    {"2000-02-29T00:00:00Z", 951782400},  /* divisible by 400 */
	    {"2026-12-31T23:59:59Z", 1798761599},
	    {"2026-04-30T00:00:00Z", 1777507200},
	    {"1970-01-01T00:00:00Z", 0},
	    {"2026-03-01T01:00:00+01:00", 1772323200},
	    {"2026-02-30T00:00:00Z", -1},
	    {"2026-02-29T00:00:00Z", -1}, /* 2026 is not a leap year */
	    {"1900-02-29T00:00:00Z", -1}, /* divisible by 100, not 400 */
	    {"2026-04-31T00:00:00Z", -1},
	    {"2026-06-31T00:00:00Z", -1},
	    {"2026-13-01T00:00:00Z", -1},
	    {"2026-00-10T00:00:00Z", -1},
	    {"2026-01-00T00:00:00Z", -1},
	    {"2026-01-32T00:00:00Z", -1},
	    {"2026-01-15T24:00:00Z", -1},
	    {"2026-01-15T10:60:00Z", -1},
	    {"2026-01-15T10:00:60Z", -1},
	    {"2026-1-15T10:00:00Z", -1}, /* fields are fixed-width */
	    {"2026-01-5T10:00:00Z", -1},
	    {"2026-01-15T1:00:00Z", -1},
	    {" 2026-01-15T10:00:00Z", -1},
	    {"2026-01-15T10:00:00+24:00", -1},
	    {"+2026-01-15T10:00:00Z", -1},
	    {"", -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t us = 12345;
		int rc = hr_time_parse(cases[i].s, &us);
		if (cases[i].secs < 0) {
			if (rc != HR_EINVAL)
				fail_msg("'%s' accepted as %lld", cases[i].s, (long long)us);
			continue;
		}
		if (rc != 0)
			fail_msg("'%s' refused", cases[i].s);
		assert_int_equal(us, cases[i].secs * 1000000);
	}
}

/* hr_buf_put/hr_buf_printf: appends across the first buffer's size and
 * several doublings, always NUL-terminated, exact contents. */
static void test_buf(void **state)
{
	(void)state;
	struct hr_buf b = {0};
	hr_buf_printf(&b, "%s=%d", "a", 1);
	assert_string_equal(b.p, "a=1");
	assert_int_equal(b.len, 3);
	char big[1000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	hr_buf_printf(&b, "[%s]", big); /* grows past 256 in one append */
	assert_int_equal(b.len, 3 + 1001);
	assert_int_equal(b.p[3], '[');
	assert_int_equal(b.p[b.len - 1], ']');
	assert_int_equal(b.p[b.len], 0);
	for (int i = 0; i < 1000; i++)
		hr_buf_printf(&b, "%04d", i);
	assert_int_equal(b.len, 1004 + 4000);
	assert_memory_equal(b.p + 1004, "00000001", 8);
	assert_memory_equal(b.p + b.len - 4, "0999", 4);
	hr_buf_put(&b, "!", 1);
	assert_string_equal(b.p + b.len - 5, "0999!");
	assert_false(b.oom);
	free(b.p);
}

/* hr_utf8_put at each length's first and last code point. */
static void test_utf8_put(void **state)
{
	(void)state;
	static const struct {
		unsigned long cp;
		const char *want;
	} cases[] = {
	    {0x41, "A"},
	    {0x7f, "\x7f"},
	    {0x80, "\xc2\x80"},
	    {0x7ff, "\xdf\xbf"},
	    {0x800, "\xe0\xa0\x80"},
	    {0xffff, "\xef\xbf\xbf"},
	    {0x20ac, "\xe2\x82\xac"},
	    {0x10000, "\xf0\x90\x80\x80"},
	    {0x10ffff, "\xf4\x8f\xbf\xbf"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[4];
		size_t n = hr_utf8_put(out, cases[i].cp);
		assert_int_equal(n, strlen(cases[i].want));
		assert_memory_equal(out, cases[i].want, n);
		assert_int_equal(hr_utf8_seq((const unsigned char *)out, n), n);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ids_sorted_unique),
	    cmocka_unit_test(test_id_time_prefix),
	    cmocka_unit_test(test_id_at_and_prefix),
	    cmocka_unit_test(test_status_settled),
	    cmocka_unit_test(test_status_table),
	    cmocka_unit_test(test_status_names),
	    cmocka_unit_test(test_template_render),
	    cmocka_unit_test(test_template_errors),
	    cmocka_unit_test(test_whatsapp_vector),
	    cmocka_unit_test(test_twilio_vector),
	    cmocka_unit_test(test_rbm_vector),
	    cmocka_unit_test(test_sha256_and_consteq),
	    cmocka_unit_test(test_ratelimit),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_config_yaml),
	    cmocka_unit_test(test_secrets),
	    cmocka_unit_test(test_time_format),
	    cmocka_unit_test(test_utf8_copy),
	    cmocka_unit_test(test_utf8_put),
	    cmocka_unit_test(test_sms_segments),
	    cmocka_unit_test(test_time_parse_calendar),
	    cmocka_unit_test(test_buf),
	    cmocka_unit_test(test_batch_status_table),
	};
	return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
