/*
 * test_jsonw.c - the fixed-shape JSON writer (core/jsonw.h): its output is
 * byte for byte what jansson's json_dumps(JSON_COMPACT) writes for the same
 * values in the same order (every byte 0x01..0x7f alone, every control
 * character, quotes and backslashes, UTF-8 of 2, 3 and 4 bytes, U+2028,
 * empty strings, integers at their limits, nesting, and thousands of random
 * strings); invalid UTF-8 and NULs are refused as json_string refuses them;
 * the size bound holds to the byte; misuse is HR_EINTERNAL, never a crash.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/jsonw.h"
#include "herald.h"

/* {"k":s} written both ways: asserts byte equality. */
static void same_as_jansson(const char *s, size_t n)
{
	struct jsonw w;
	jsonw_init(&w, 1u << 20);
	jsonw_obj(&w);
	jsonw_key(&w, "k");
	jsonw_strn(&w, s, n);
	jsonw_obj_end(&w);
	size_t len = 0;
	int rc = -99;
	char *mine = jsonw_finish(&w, &len, &rc);
	json_t *o = json_object();
	json_t *v = json_stringn(s, n);
	assert_non_null(v);
	assert_int_equal(json_object_set_new(o, "k", v), 0);
	char *ref = json_dumps(o, JSON_COMPACT);
	if (!mine || strcmp(mine, ref) != 0)
		fail_msg("jsonw wrote %s (rc %d), jansson %s", mine ? mine : "NULL", rc, ref);
	assert_int_equal(rc, 0);
	assert_int_equal(len, strlen(ref));
	free(mine);
	free(ref);
	json_decref(o);
}

static void test_every_ascii_byte(void **state)
{
	(void)state;
	for (int c = 1; c < 0x80; c++) {
		char s[4] = {'a', (char)c, 'b', 0};
		same_as_jansson(s, 3);
		same_as_jansson(s + 1, 1);
	}
	/* All control characters in one string, and with the quote and backslash. */
	char all[64];
	size_t n = 0;
	for (int c = 1; c < 0x20; c++)
		all[n++] = (char)c;
	all[n++] = '"';
	all[n++] = '\\';
	all[n++] = '/';
	all[n++] = 0x7f;
	same_as_jansson(all, n);
	same_as_jansson("", 0);
	same_as_jansson("\\\\\"\"", 4);
	same_as_jansson("plain text with nothing to escape", 33);

	/* The exact forms, not only jansson's agreement. */
	struct jsonw w;
	jsonw_init(&w, 100);
	jsonw_arr(&w);
	jsonw_str(&w, "\x01\x1f\b\f\n\r\t\"\\/\x7f");
	jsonw_arr_end(&w);
	char *out = jsonw_finish(&w, NULL, NULL);
	assert_string_equal(out, "[\"\\u0001\\u001F\\b\\f\\n\\r\\t\\\"\\\\/\x7f\"]");
	free(out);
}

static void test_utf8(void **state)
{
	(void)state;
	static const char *const texts[] = {
	    "é",                            /* 2 bytes */
	    "£120.00",                      /* 2 bytes in ASCII */
	    "\xe2\x82\xac 5",               /* € */
	    "\xe2\x80\xa8\xe2\x80\xa9",     /* U+2028, U+2029: passed through */
	    "\xf0\x9f\x98\x80 smile",       /* 4 bytes */
	    "\xef\xbf\xbf\xf4\x8f\xbf\xbf", /* U+FFFF, U+10FFFF */
	    "\xc2\x80\xdf\xbf\xe0\xa0\x80", /* the smallest of each length */
	    "Olá \"Ana\", o seu código é 482913.\n",
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
		same_as_jansson(texts[i], strlen(texts[i]));
}

/* Invalid UTF-8 and NULs: refused (json_stringn refuses them too). */
static void test_invalid_refused(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
	    {"\xc0\x80", 2},         /* overlong NUL */
	    {"\xc1\xbf", 2},         /* overlong */
	    {"\xe0\x80\xaf", 3},     /* overlong '/' */
	    {"\xed\xa0\x80", 3},     /* a surrogate */
	    {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
	    {"\xf5\x80\x80\x80", 4}, /* never a first byte */
	    {"\x80", 1},             /* a lone continuation */
	    {"ab\xe2\x82", 4},       /* cut short at the end */
	    {"\xe2\x82z", 3},        /* cut short before ASCII */
	    {"\xff", 1},
	    {"a\0b", 3}, /* a NUL inside */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *j = json_stringn(bad[i].s, bad[i].n);
		if (j && i != 10)
			fail_msg("jansson took case %zu", i);
		json_decref(j);
		struct jsonw w;
		jsonw_init(&w, 1000);
		jsonw_obj(&w);
		jsonw_key(&w, "k");
		jsonw_strn(&w, bad[i].s, bad[i].n);
		jsonw_kstr(&w, "after", "ignored"); /* errors stick */
		jsonw_obj_end(&w);
		int rc = 0;
		assert_null(jsonw_finish(&w, NULL, &rc));
		assert_int_equal(rc, HR_EINVAL);
		assert_null(w.p);
	}
}

/* A random valid UTF-8 string of up to max code points, biased to the
 * characters that need care. */
static size_t random_text(char *out, size_t max, unsigned *seed)
{
	size_t n = 0, k = (size_t)rand_r(seed) % (max + 1);
	for (size_t i = 0; i < k; i++) {
		unsigned r = (unsigned)rand_r(seed) % 10, cp;
		switch (r) {
		case 0:
			cp = 1 + (unsigned)rand_r(seed) % 0x1f; /* control */
			break;
		case 1:
			cp = "\"\\/"[rand_r(seed) % 3];
			break;
		case 2:
			cp = 0x80 + (unsigned)rand_r(seed) % 0x780;
			break;
		case 3:
			do
				cp = 0x800 + (unsigned)rand_r(seed) % 0xf800;
			while (cp >= 0xd800 && cp <= 0xdfff);
			break;
		case 4:
			cp = 0x10000 + (unsigned)rand_r(seed) % 0x100000;
			break;
		default:
			cp = 0x20 + (unsigned)rand_r(seed) % 0x60;
		}
		n += hr_utf8_put(out + n, cp);
	}
	out[n] = '\0';
	return n;
}

static void test_random_strings(void **state)
{
	(void)state;
	unsigned seed = 20261207;
	char s[4 * 200 + 1];
	for (int i = 0; i < 5000; i++) {
		size_t n = random_text(s, 200, &seed);
		same_as_jansson(s, n);
	}
}

/* Nesting, integers, booleans, many members: the whole text equal. */
static void test_shapes(void **state)
{
	(void)state;
	struct jsonw w;
	jsonw_init(&w, 1u << 20);
	json_t *ref = json_object(), *arr = json_array();
	jsonw_obj(&w);
	jsonw_kstr(&w, "messaging_product", "whatsapp");
	jsonw_kint(&w, "min", LLONG_MIN);
	jsonw_kint(&w, "max", LLONG_MAX);
	jsonw_kint(&w, "zero", 0);
	jsonw_kbool(&w, "t", true);
	jsonw_kbool(&w, "f", false);
	json_object_set_new(ref, "messaging_product", json_string("whatsapp"));
	json_object_set_new(ref, "min", json_integer(LLONG_MIN));
	json_object_set_new(ref, "max", json_integer(LLONG_MAX));
	json_object_set_new(ref, "zero", json_integer(0));
	json_object_set_new(ref, "t", json_true());
	json_object_set_new(ref, "f", json_false());
	jsonw_key(&w, "list");
	jsonw_arr(&w);
	for (int i = 0; i < 300; i++) {
		char v[16];
		snprintf(v, sizeof v, "p%d\n", i);
		jsonw_obj(&w);
		jsonw_kstr(&w, "type", "text");
		jsonw_kstr(&w, "text", v);
		jsonw_key(&w, "empty");
		jsonw_arr(&w);
		jsonw_arr_end(&w);
		jsonw_key(&w, "o");
		jsonw_obj(&w);
		jsonw_obj_end(&w);
		jsonw_obj_end(&w);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:[], s:{}}", "type", "text",
		                                     "text", v, "empty", "o"));
	}
	jsonw_arr_end(&w);
	jsonw_key(&w, "nested");
	for (int d = 0; d < JSONW_DEPTH_MAX - 1; d++)
		jsonw_arr(&w);
	jsonw_int(&w, -1);
	for (int d = 0; d < JSONW_DEPTH_MAX - 1; d++)
		jsonw_arr_end(&w);
	jsonw_obj_end(&w);
	json_object_set_new(ref, "list", arr);
	json_t *nested = json_integer(-1);
	for (int d = 0; d < JSONW_DEPTH_MAX - 1; d++) {
		json_t *a = json_array();
		json_array_append_new(a, nested);
		nested = a;
	}
	json_object_set_new(ref, "nested", nested);
	size_t len;
	int rc;
	char *mine = jsonw_finish(&w, &len, &rc);
	char *want = json_dumps(ref, JSON_COMPACT);
	assert_non_null(mine);
	assert_string_equal(mine, want);
	assert_int_equal(len, strlen(want));
	json_error_t je;
	json_t *back = json_loads(mine, 0, &je);
	assert_true(json_equal(back, ref));
	json_decref(back);
	json_decref(ref);
	free(mine);
	free(want);
}

/* The bound holds to the byte: a body of exactly max bytes is written, one
 * more is HR_ELIMIT. */
static void test_limit(void **state)
{
	(void)state;
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	/* ["xxx..."] is strlen + 4 bytes. */
	size_t need = strlen(big) + 4;
	for (size_t max = need - 1; max <= need; max++) {
		struct jsonw w;
		jsonw_init(&w, max);
		jsonw_arr(&w);
		jsonw_str(&w, big);
		jsonw_arr_end(&w);
		size_t len = 0;
		int rc = 0;
		char *out = jsonw_finish(&w, &len, &rc);
		if (max < need) {
			assert_null(out);
			assert_int_equal(rc, HR_ELIMIT);
		} else {
			assert_non_null(out);
			assert_int_equal(len, need);
			assert_int_equal(strlen(out), need);
			free(out);
		}
	}
	/* Escapes count: 600 control characters are 3600 bytes. */
	char ctl[601];
	memset(ctl, 0x01, 600);
	ctl[600] = '\0';
	struct jsonw w;
	jsonw_init(&w, 3600 + 3);
	jsonw_arr(&w);
	jsonw_str(&w, ctl);
	jsonw_arr_end(&w);
	int rc = 0;
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_ELIMIT);
	jsonw_init(&w, 3600 + 4);
	jsonw_arr(&w);
	jsonw_str(&w, ctl);
	jsonw_arr_end(&w);
	char *out = jsonw_finish(&w, NULL, &rc);
	assert_non_null(out);
	assert_int_equal(strlen(out), 3604);
	free(out);
}

/* Misuse is a bug the writer reports (HR_EINTERNAL), not a crash or bad text. */
static void test_misuse(void **state)
{
	(void)state;
	struct jsonw w;
	int rc;
	/* Not closed. */
	jsonw_init(&w, 100);
	jsonw_obj(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* Closed twice, or the wrong way round. */
	jsonw_init(&w, 100);
	jsonw_arr(&w);
	jsonw_arr_end(&w);
	jsonw_arr_end(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* A key outside an object's level, or two keys in a row. */
	jsonw_init(&w, 100);
	jsonw_key(&w, "k");
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	jsonw_init(&w, 100);
	jsonw_obj(&w);
	jsonw_key(&w, "a");
	jsonw_key(&w, "b");
	jsonw_str(&w, "v");
	jsonw_obj_end(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* A key left without its value. */
	jsonw_init(&w, 100);
	jsonw_obj(&w);
	jsonw_key(&w, "a");
	jsonw_obj_end(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* A missing string (NULL). */
	jsonw_init(&w, 100);
	jsonw_obj(&w);
	jsonw_kstr(&w, "a", NULL);
	jsonw_obj_end(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* Too deep. */
	jsonw_init(&w, 1000);
	for (int d = 0; d <= JSONW_DEPTH_MAX; d++)
		jsonw_arr(&w);
	for (int d = 0; d <= JSONW_DEPTH_MAX; d++)
		jsonw_arr_end(&w);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* Nothing written. */
	jsonw_init(&w, 100);
	assert_null(jsonw_finish(&w, NULL, &rc));
	assert_int_equal(rc, HR_EINTERNAL);
	/* jsonw_free after some writing, instead of finishing. */
	jsonw_init(&w, 100);
	jsonw_obj(&w);
	jsonw_kstr(&w, "a", "b");
	jsonw_free(&w);
	assert_null(w.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_ascii_byte), cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_invalid_refused),  cmocka_unit_test(test_random_strings),
	    cmocka_unit_test(test_shapes),           cmocka_unit_test(test_limit),
	    cmocka_unit_test(test_misuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
