/*
 * test_jsonr.c - the token reader (core/jsonr.h). What it must never do is
 * accept a text jansson refuses, or read a value other than jansson's: the
 * channels fall back to jansson whenever it refuses, so that alone keeps
 * their outcomes the same. Proved on fixed cases (malformed, truncated,
 * trailing bytes, control characters, bad UTF-8, bad escapes, lone
 * surrogates, big numbers, duplicate keys), on thousands of random trees
 * jansson wrote (with and without \u escapes), and on 60,000 random
 * mutations of provider answers: whenever jsonr accepts one, jansson does
 * too and every value agrees.
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

#include "core/jsonr.h"
#include "herald.h"
#include "mutate_test.h"

/* Whether token t of r holds the same value as j (recursively). */
static bool same_value(const struct jsonr *r, int t, json_t *j)
{
	if (t < 0 || t >= r->ntok || !j)
		return false;
	const jsmntok_t *k = &r->tok[t];
	switch (k->type) {
	case JSMN_OBJECT: {
		if (!json_is_object(j))
			return false;
		/* Every key jsonr has, jansson has with the same (last) value,
		 * and jansson has no other. */
		size_t distinct = 0;
		int i = t + 1;
		for (int m = 0; m < k->size; m++) {
			char key[256];
			size_t kl = (size_t)(r->tok[i].end - r->tok[i].start);
			if (kl >= sizeof key)
				return false;
			memcpy(key, r->js + r->tok[i].start, kl);
			key[kl] = '\0';
			if (jsonr_get(r, t, key) == i + 1) /* the last of its name */
				distinct++;
			if (!same_value(r, jsonr_get(r, t, key), json_object_get(j, key)))
				return false;
			i = r->next[i + 1];
		}
		return distinct == json_object_size(j);
	}
	case JSMN_ARRAY:
		if (!json_is_array(j) || (size_t)k->size != json_array_size(j))
			return false;
		for (int m = 0; m < k->size; m++)
			if (!same_value(r, jsonr_at(r, t, (size_t)m), json_array_get(j, (size_t)m)))
				return false;
		return true;
	case JSMN_STRING: {
		if (!json_is_string(j))
			return false;
		static char buf[1 << 16];
		size_t n = 0;
		if (!jsonr_string(r, t, buf, sizeof buf, &n))
			return false;
		return n == json_string_length(j) && memcmp(buf, json_string_value(j), n) == 0;
	}
	case JSMN_PRIMITIVE: {
		char c = r->js[k->start];
		if (c == 't')
			return json_is_true(j) && jsonr_is_true(r, t);
		if (c == 'f')
			return json_is_false(j) && !jsonr_is_true(r, t);
		if (c == 'n')
			return json_is_null(j);
		long long v;
		if (jsonr_int(r, t, &v))
			return json_is_integer(j) && json_integer_value(j) == v;
		if (!json_is_real(j))
			return false;
		char num[64];
		size_t n = (size_t)(k->end - k->start);
		if (n >= sizeof num)
			return false;
		memcpy(num, r->js + k->start, n);
		num[n] = '\0';
		return strtod(num, NULL) == json_real_value(j);
	}
	default:
		return false;
	}
}

/* How many brackets s[0..n) has open at once at most, outside strings. */
static int max_depth(const char *s, size_t n)
{
	int d = 0, max = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++)
				i += s[i] == '\\';
		} else if (s[i] == '[' || s[i] == '{') {
			max = ++d > max ? d : max;
		} else if (s[i] == ']' || s[i] == '}') {
			d--;
		}
	}
	return max;
}

/* jsonr's verdict on s, checked against jansson's: accepted implies
 * jansson accepts and every value agrees; jsonr_parse_large gives the same
 * verdict (or refuses nesting past JSONR_DEPTH_MAX) and the same tokens.
 * Returns whether jsonr_parse accepted. */
static bool check(const char *s, size_t n)
{
	static struct jsonr r, big;
	int rc = jsonr_parse(&r, s, n);
	int brc = jsonr_parse_large(&big, s, n, JSONR_TOKENS_LARGE_MAX);
	json_error_t je;
	json_t *j = json_loadb(s, n, 0, &je);
	if (rc == 0) {
		if (!j)
			fail_msg("jsonr took what jansson refuses (%s): %.*s", je.text, (int)n, s);
		if (!same_value(&r, 0, j))
			fail_msg("jsonr read other values than jansson: %.*s", (int)n, s);
	} else {
		assert_true(rc == HR_EINVAL || rc == HR_ELIMIT);
		assert_int_equal(r.ntok, 0);
	}
	if (brc == 0) {
		if (!j || !same_value(&big, 0, j))
			fail_msg("jsonr_parse_large took or read otherwise: %.*s", (int)n, s);
		if (rc == 0)
			assert_int_equal(big.ntok, r.ntok);
	} else {
		assert_true(brc == HR_EINVAL || brc == HR_ELIMIT);
		assert_int_equal(big.ntok, 0);
		if (rc == 0 && (brc != HR_EINVAL || max_depth(s, n) <= JSONR_DEPTH_MAX))
			fail_msg("jsonr_parse_large refused (%d) what jsonr_parse took: %.*s", brc,
			         (int)n, s);
	}
	if (rc == HR_EINVAL)
		assert_int_not_equal(brc, 0);
	jsonr_free(&big);
	json_decref(j);
	return rc == 0;
}

static bool accepts(const char *s)
{
	return check(s, strlen(s));
}

static void test_accepts(void **state)
{
	(void)state;
	static const char *const ok[] = {
	    "{}",
	    "[]",
	    " \t\r\n{ } \n",
	    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"447911123456\","
	    "\"wa_id\":\"447911123456\"}],\"messages\":[{\"id\":\"wamid.HBgM\","
	    "\"message_status\":\"accepted\"}]}",
	    "{\"a\":[1,-1,0,-0,12.5,-0.25,true,false,null,\"\",[],{}]}",
	    "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\"}",
	    "{\"u\":\"é € 😀 \xe2\x80\xa8\"}",
	    "[ 1 , 2 ,\n3 ]",
	    "{\"big\":999999999999999999,\"neg\":-999999999999999999}",
	    "{\"dup\":1,\"dup\":2}",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (!accepts(ok[i]))
			fail_msg("refused %s", ok[i]);
}

static void test_refuses(void **state)
{
	(void)state;
	/* Malformed or not jansson's: all refused. */
	static const char *const bad[] = {
	    "",
	    " ",
	    "\"a string\"", /* not an object or array (no JSON_DECODE_ANY) */
	    "1",
	    "true",
	    "{",
	    "{\"a\":1", /* truncated */
	    "{\"a\":\"b",
	    "{\"a\":\"b\\",
	    "{\"a\":\"\\u12",
	    "{\"a\":1}}",
	    "{\"a\":1} x", /* trailing bytes */
	    "{\"a\":1}{}",
	    "[1 2]", /* jsmn alone takes these */
	    "{\"a\" 1}",
	    "{\"a\":1 \"b\":2}",
	    "{\"a\":1,}",
	    "[1,]",
	    "[,1]",
	    "{,}",
	    "{\"a\"::1}",
	    "{\"a\":}",
	    "{\"a\"}",
	    "[tru]",
	    "[nul]",
	    "[truee]",
	    "[True]",
	    "[01]",
	    "[-]",
	    "[1.]",
	    "[.5]",
	    "[+1]",
	    "[1.5.5]",
	    "[--1]",
	    "[0x10]",
	    "[\"a\x01\"]", /* a raw control character */
	    "[\"tab\there\"]",
	    "[\"\xc3\"]",         /* cut-short UTF-8 */
	    "[\"\xc0\x80\"]",     /* overlong */
	    "[\"\xed\xa0\x80\"]", /* a surrogate in UTF-8 */
	    "[\"\xff\"]",
	    "[\"\\x41\"]", /* not an escape */
	    "[\"\\u00G0\"]",
	    "[\"\\u0000\"]", /* jansson refuses NUL without JSON_ALLOW_NUL */
	    "[\"\\ud83d\"]", /* a lone high surrogate */
	    "[\"\\ud83dx\"]",
	    "[\"\\ud83d\\u0041\"]",
	    "[\"\\ude00\"]", /* a lone low surrogate */
	    "{1:2}",
	    "{\"a\":1,2}",
	    "[}",
	    "{]",
	    "[\xef\xbb\xbf]", /* a BOM is no value */
	    "\xef\xbb\xbf{}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (accepts(bad[i]))
			fail_msg("took %s", bad[i]);
		json_error_t je;
		json_t *j = json_loads(bad[i], 0, &je);
		if (j)
			fail_msg("jansson takes %s: the case proves nothing", bad[i]);
	}
	/* A NUL inside or after the text. */
	assert_false(check("{\"a\":1}\0", 8));
	assert_false(check("{\"a\":\"x\0y\"}", 11));
	assert_false(check("{\"a\"\0:1}", 8));

	/* Refused although jansson takes them (jsonr.h's subset): callers then
	 * use jansson. */
	static const char *const subset[] = {
	    "[1e5]",
	    "[1E-5]",
	    "[2.5e+3]",
	    "[1234567890123456789]", /* 19 digits */
	    "[-1234567890123456789]",
	    "[0.1234567890123456789]",
	    "{\"\\u0069d\":\"x\"}", /* an escaped key */
	};
	for (size_t i = 0; i < sizeof subset / sizeof subset[0]; i++) {
		assert_false(accepts(subset[i]));
		json_error_t je;
		json_t *j = json_loads(subset[i], 0, &je);
		assert_non_null(j);
		json_decref(j);
	}
	/* jansson refuses these too. */
	assert_false(accepts("[99999999999999999999]"));
	assert_false(accepts("[1e400]"));
}

/* The reader's own answers: lookups, last key wins, escapes unescaped. */
static void test_reads(void **state)
{
	(void)state;
	static struct jsonr r;
	const char *doc =
	    "{\"messages\":[{\"id\":\"first\"},{\"id\":\"second\"}],"
	    "\"id\":\"wamid.A\\/B\\u00e9\\ud83d\\ude00\\n\",\"dup\":\"a\",\"dup\":\"b\","
	    "\"n\":-42,\"r\":1.5,\"t\":true,\"f\":false,\"z\":null,\"e\":\"\"}";
	assert_int_equal(jsonr_parse(&r, doc, strlen(doc)), 0);
	char buf[64];
	size_t n;
	int msgs = jsonr_get(&r, 0, "messages");
	assert_true(
	    jsonr_string(&r, jsonr_get(&r, jsonr_at(&r, msgs, 0), "id"), buf, sizeof buf, NULL));
	assert_string_equal(buf, "first");
	assert_true(
	    jsonr_string(&r, jsonr_get(&r, jsonr_at(&r, msgs, 1), "id"), buf, sizeof buf, &n));
	assert_string_equal(buf, "second");
	assert_int_equal(n, 6);
	assert_int_equal(jsonr_at(&r, msgs, 2), -1);
	assert_int_equal(jsonr_at(&r, 0, 0), -1); /* not an array */
	assert_true(jsonr_string(&r, jsonr_get(&r, 0, "id"), buf, sizeof buf, &n));
	assert_string_equal(buf, "wamid.A/B\xc3\xa9\xf0\x9f\x98\x80\n");
	assert_int_equal(n, strlen("wamid.A/B\xc3\xa9\xf0\x9f\x98\x80\n"));
	/* It fits exactly, or not at all. */
	char small[32];
	assert_true(jsonr_string(&r, jsonr_get(&r, 0, "id"), small, n + 1, NULL));
	assert_false(jsonr_string(&r, jsonr_get(&r, 0, "id"), small, n, NULL));
	assert_string_equal(small, "");
	assert_true(jsonr_string(&r, jsonr_get(&r, 0, "dup"), buf, sizeof buf, NULL));
	assert_string_equal(buf, "b");
	assert_true(jsonr_string(&r, jsonr_get(&r, 0, "e"), buf, sizeof buf, &n));
	assert_int_equal(n, 0);
	long long v = 0;
	assert_true(jsonr_int(&r, jsonr_get(&r, 0, "n"), &v));
	assert_int_equal(v, -42);
	assert_false(jsonr_int(&r, jsonr_get(&r, 0, "r"), &v));
	assert_false(jsonr_int(&r, jsonr_get(&r, 0, "t"), &v));
	assert_false(jsonr_int(&r, jsonr_get(&r, 0, "e"), &v));
	assert_true(jsonr_is_true(&r, jsonr_get(&r, 0, "t")));
	assert_false(jsonr_is_true(&r, jsonr_get(&r, 0, "f")));
	assert_false(jsonr_is_true(&r, jsonr_get(&r, 0, "z")));
	assert_false(jsonr_string(&r, jsonr_get(&r, 0, "n"), buf, sizeof buf, NULL));
	assert_int_equal(jsonr_get(&r, 0, "absent"), -1);
	assert_int_equal(jsonr_get(&r, msgs, "id"), -1); /* not an object */
	assert_int_equal(jsonr_get(&r, -1, "id"), -1);
	assert_false(jsonr_is_string(&r, -1));
}

/* More tokens than the array holds: HR_ELIMIT, and jansson is the fallback. */
static void test_token_limit(void **state)
{
	(void)state;
	static struct jsonr r;
	char doc[4 * JSONR_TOKENS_MAX + 8];
	size_t n = 0;
	doc[n++] = '[';
	for (int i = 0; i < JSONR_TOKENS_MAX - 1; i++) { /* the array + 255 = 256 tokens */
		if (i)
			doc[n++] = ',';
		doc[n++] = '1';
	}
	doc[n++] = ']';
	assert_int_equal(jsonr_parse(&r, doc, n), 0);
	assert_int_equal(r.ntok, JSONR_TOKENS_MAX);
	doc[n - 1] = ',';
	doc[n++] = '1';
	doc[n++] = ']';
	assert_int_equal(jsonr_parse(&r, doc, n), HR_ELIMIT);
	/* Deep nesting within the bound is fine. */
	n = 0;
	for (int i = 0; i < 200; i++)
		doc[n++] = '[';
	for (int i = 0; i < 200; i++)
		doc[n++] = ']';
	assert_true(check(doc, n));
}

/* A random tree jansson can write: objects, arrays, strings, integers,
 * booleans and null (no reals: jansson may write them with an exponent). */
static json_t *random_tree(unsigned *seed, int depth, int *budget)
{
	int kind = depth > 3 || *budget <= 0 ? 2 + rand_r(seed) % 5 : rand_r(seed) % 7;
	(*budget)--;
	if (kind == 0 || kind == 1) {
		json_t *c = kind == 0 ? json_object() : json_array();
		int n = rand_r(seed) % 5;
		for (int i = 0; i < n; i++) {
			json_t *v = random_tree(seed, depth + 1, budget);
			if (kind == 1) {
				json_array_append_new(c, v);
			} else {
				char key[8];
				snprintf(key, sizeof key, "k%d", rand_r(seed) % 6);
				json_object_set_new(c, key, v);
			}
		}
		return c;
	}
	if (kind == 2 || kind == 3) {
		char s[64];
		int n = rand_r(seed) % 12, k = 0;
		static const char *const parts[] = {"a",    "\"", "\\", "/", "\n",           "\x01",
		                                    "\x1f", "é",  "€",  "😀", "\xe2\x80\xa8", " ",
		                                    "Z"};
		for (int i = 0; i < n; i++) {
			const char *p = parts[rand_r(seed) % 13];
			size_t l = strlen(p);
			memcpy(s + k, p, l);
			k += (int)l;
		}
		return json_stringn(s, (size_t)k);
	}
	if (kind == 4)
		return json_integer((json_int_t)(rand_r(seed) % 1000000000) *
		                    (rand_r(seed) % 2 ? -1 : 1) *
		                    (json_int_t)(rand_r(seed) % 1000000000)); /* < 10^18 */
	if (kind == 5)
		return json_boolean(rand_r(seed) % 2);
	return json_null();
}

static void test_random_trees(void **state)
{
	(void)state;
	unsigned seed = 12345;
	int accepted = 0;
	for (int i = 0; i < 3000; i++) {
		int budget = 60;
		json_t *root = json_object();
		json_object_set_new(root, "v", random_tree(&seed, 0, &budget));
		size_t flags =
		    (i % 2 ? JSON_ENSURE_ASCII : 0) | (i % 3 ? JSON_COMPACT : JSON_INDENT(2));
		char *text = json_dumps(root, flags);
		assert_non_null(text);
		if (check(text, strlen(text)))
			accepted++;
		else
			fail_msg("refused what jansson wrote: %s", text);
		free(text);
		json_decref(root);
	}
	assert_int_equal(accepted, 3000);
}

/* "[1,1,...]" with k tokens (the array and k - 1 elements) into doc; its length. */
static size_t flat_array(char *doc, int k)
{
	size_t n = 0;
	doc[n++] = '[';
	for (int i = 0; i < k - 1; i++) {
		if (i)
			doc[n++] = ',';
		doc[n++] = '1';
	}
	doc[n++] = ']';
	return n;
}

/* jsonr_parse_large: the cap exactly, the struct's own arrays up to
 * JSONR_TOKENS_MAX tokens and the heap past it, the largest cap. */
static void test_large_cap(void **state)
{
	(void)state;
	static struct jsonr r;
	static char doc[2 * JSONR_TOKENS_LARGE_MAX + 16];
	size_t n = flat_array(doc, 1000);
	assert_int_equal(jsonr_parse(&r, doc, n), HR_ELIMIT);
	assert_int_equal(jsonr_parse_large(&r, doc, n, 1000), 0);
	assert_int_equal(r.ntok, 1000);
	assert_true(r.tok != r.tok_in && r.next != r.next_in);
	assert_int_equal(jsonr_size(&r, 0), 999);
	assert_int_equal(jsonr_at(&r, 0, 998), 999);
	assert_int_equal(jsonr_after(&r, 0), 1000);
	jsonr_free(&r);
	assert_true(r.tok == r.tok_in);
	assert_int_equal(r.ntok, 0);
	assert_int_equal(jsonr_parse_large(&r, doc, n, 999), HR_ELIMIT);
	assert_int_equal(r.ntok, 0);
	jsonr_free(&r);
	/* Grown to a cap that is not a doubling of the struct's 256. */
	n = flat_array(doc, 300);
	assert_int_equal(jsonr_parse_large(&r, doc, n, 300), 0);
	assert_int_equal(r.ntok, 300);
	jsonr_free(&r);
	assert_int_equal(jsonr_parse_large(&r, doc, n, 299), HR_ELIMIT);
	jsonr_free(&r);
	assert_int_equal(jsonr_parse_large(&r, "[]", 2, 1), 0);
	assert_int_equal(jsonr_parse_large(&r, "[1]", 3, 1), HR_ELIMIT);
	assert_int_equal(jsonr_parse_large(&r, "[]", 2, 0), HR_ELIMIT);
	jsonr_free(&r);
	/* Within the struct: no allocation, the same as jsonr_parse. */
	n = flat_array(doc, JSONR_TOKENS_MAX);
	assert_int_equal(jsonr_parse_large(&r, doc, n, JSONR_TOKENS_LARGE_MAX), 0);
	assert_int_equal(r.ntok, JSONR_TOKENS_MAX);
	assert_true(r.tok == r.tok_in && r.next == r.next_in);
	jsonr_free(&r);
	n = flat_array(doc, JSONR_TOKENS_MAX + 1);
	assert_int_equal(jsonr_parse_large(&r, doc, n, JSONR_TOKENS_LARGE_MAX), 0);
	assert_int_equal(r.ntok, JSONR_TOKENS_MAX + 1);
	assert_true(r.tok != r.tok_in);
	jsonr_free(&r);
	/* The largest cap, and a larger one asked for is that cap. */
	n = flat_array(doc, JSONR_TOKENS_LARGE_MAX);
	assert_int_equal(jsonr_parse_large(&r, doc, n, INT_MAX), 0);
	assert_int_equal(r.ntok, JSONR_TOKENS_LARGE_MAX);
	assert_int_equal(jsonr_at(&r, 0, JSONR_TOKENS_LARGE_MAX - 2), JSONR_TOKENS_LARGE_MAX - 1);
	assert_int_equal(jsonr_at(&r, 0, JSONR_TOKENS_LARGE_MAX - 1), -1);
	jsonr_free(&r);
	n = flat_array(doc, JSONR_TOKENS_LARGE_MAX + 1);
	assert_int_equal(jsonr_parse_large(&r, doc, n, INT_MAX), HR_ELIMIT);
	jsonr_free(&r);
	assert_true(check(doc, n) == false);
	/* Malformed past the cap of the struct: refused, nothing kept. */
	n = flat_array(doc, 1000);
	doc[n - 1] = ',';
	assert_int_equal(jsonr_parse_large(&r, doc, n, JSONR_TOKENS_LARGE_MAX), HR_EINVAL);
	assert_int_equal(r.ntok, 0);
	jsonr_free(&r);
	assert_int_equal(jsonr_parse_large(&r, NULL, 0, 10), HR_EINVAL);
	jsonr_free(&r);
	jsonr_free(&r); /* twice is harmless */
}

/* Nesting: JSONR_DEPTH_MAX brackets open at once are read, one more is
 * refused (jansson's own limit, 2,048, is far above; jsonr_parse, bounded by
 * its 256 tokens, has none of its own); brackets in strings do not count. */
static void test_large_depth(void **state)
{
	(void)state;
	static struct jsonr r;
	char doc[4 * JSONR_DEPTH_MAX + 64];
	for (int d = JSONR_DEPTH_MAX; d <= JSONR_DEPTH_MAX + 1; d++) {
		size_t n = 0;
		for (int i = 0; i < d; i++)
			n += (size_t)snprintf(doc + n, sizeof doc - n, i % 2 ? "[" : "{\"k\":");
		doc[n++] = '1';
		for (int i = d - 1; i >= 0; i--)
			doc[n++] = i % 2 ? ']' : '}';
		int rc = jsonr_parse_large(&r, doc, n, JSONR_TOKENS_LARGE_MAX);
		assert_int_equal(rc, d == JSONR_DEPTH_MAX ? 0 : HR_EINVAL);
		assert_int_equal(jsonr_parse(&r, doc, n), 0);
		if (rc == 0)
			assert_int_equal(r.ntok, d + (d + 1) / 2 + 1); /* containers, keys, the 1 */
		jsonr_free(&r);
	}
	const char *quoted =
	    "[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	    "\\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"]";
	assert_int_equal(jsonr_parse_large(&r, quoted, strlen(quoted), 8), 0);
	assert_int_equal(r.ntok, 2);
	jsonr_free(&r);
	assert_true(accepts(quoted));
}

/* A large document read alike by jansson: 3,000 members, the last of a
 * repeated key wins, strings unescaped, iteration by jsonr_after. */
static void test_large_doc(void **state)
{
	(void)state;
	static struct jsonr r;
	json_t *root = json_object(), *arr = json_array();
	for (int i = 0; i < 3000; i++) {
		char key[16], val[32];
		snprintf(key, sizeof key, "k%d", i);
		snprintf(val, sizeof val, "v\"%d\u00e9\U0001F600", i);
		json_object_set_new(root, key, json_string(val));
		json_array_append_new(arr, json_pack("{s:i, s:[b, n]}", "n", i, "x", i % 2));
	}
	json_object_set_new(root, "arr", arr);
	char *text = json_dumps(root, JSON_ENSURE_ASCII | JSON_COMPACT);
	assert_non_null(text);
	size_t n = strlen(text);
	/* A repeated key at the end: jansson and jsonr both take the last. */
	text = realloc(text, n + 32);
	assert_non_null(text);
	n--; /* the closing brace */
	n += (size_t)sprintf(text + n, ",\"k7\":\"last\"}");
	assert_int_equal(jsonr_parse_large(&r, text, n, JSONR_TOKENS_LARGE_MAX), 0);
	/* root, 3,002 keys, 3,001 strings, the array and its 3,000 objects of
	 * 2 keys, a number and an array of 2: */
	assert_int_equal(r.ntok, 1 + 3002 + 3001 + 1 + 3000 * 7);
	assert_int_equal(jsonr_size(&r, 0), 3002);
	char buf[64];
	assert_true(jsonr_string(&r, jsonr_get(&r, 0, "k7"), buf, sizeof buf, NULL));
	assert_string_equal(buf, "last");
	size_t len = 0;
	char *dup = jsonr_strdup(&r, jsonr_get(&r, 0, "k2999"), &len);
	assert_non_null(dup);
	assert_string_equal(dup, "v\"2999\u00e9\U0001F600");
	assert_int_equal(len, strlen(dup));
	free(dup);
	assert_null(jsonr_strdup(&r, jsonr_get(&r, 0, "arr"), NULL));
	int a = jsonr_get(&r, 0, "arr");
	assert_true(jsonr_is_array(&r, a) && !jsonr_is_object(&r, a));
	int el = a + 1;
	long long sum = 0;
	for (int i = 0; i < jsonr_size(&r, a); i++, el = jsonr_after(&r, el)) {
		long long v = -1;
		assert_true(jsonr_is_object(&r, el));
		assert_true(jsonr_int(&r, jsonr_get(&r, el, "n"), &v));
		assert_int_equal(v, i);
		assert_int_equal(jsonr_is_true(&r, jsonr_at(&r, jsonr_get(&r, el, "x"), 0)), i % 2);
		sum += v;
	}
	assert_int_equal(el, r.ntok - 2); /* past the last element: the repeated key */
	assert_int_equal(sum, 2999LL * 3000 / 2);
	assert_int_equal(jsonr_size(&r, jsonr_get(&r, 0, "k1")), -1);
	assert_int_equal(jsonr_after(&r, -1), -1);
	assert_int_equal(jsonr_after(&r, r.ntok), -1);
	jsonr_free(&r);
	check(text, n);
	json_decref(root);
	free(text);
}

/* Comparing a string's value without copying it; null. */
static void test_string_is(void **state)
{
	(void)state;
	static struct jsonr r;
	const char *doc = "{\"a\":\"read\",\"b\":\"r\\u0065ad\",\"c\":\"\\ud83d\\ude00\\n\","
	                  "\"d\":\"\",\"e\":null,\"f\":\"n\",\"g\":\"\\\"q\\/\"}";
	assert_int_equal(jsonr_parse(&r, doc, strlen(doc)), 0);
	int a = jsonr_get(&r, 0, "a"), b = jsonr_get(&r, 0, "b"), c = jsonr_get(&r, 0, "c");
	assert_true(jsonr_string_is(&r, a, "read"));
	assert_true(jsonr_string_is(&r, b, "read"));
	assert_false(jsonr_string_is(&r, a, "rea"));
	assert_false(jsonr_string_is(&r, a, "reads"));
	assert_false(jsonr_string_is(&r, b, "re"));
	assert_false(jsonr_string_is(&r, b, "readx"));
	assert_false(jsonr_string_is(&r, b, ""));
	assert_true(jsonr_string_is(&r, c, "\xf0\x9f\x98\x80\n"));
	assert_false(jsonr_string_is(&r, c, "\xf0\x9f\x98\x80"));
	assert_true(jsonr_string_is(&r, jsonr_get(&r, 0, "d"), ""));
	assert_false(jsonr_string_is(&r, jsonr_get(&r, 0, "d"), "x"));
	assert_true(jsonr_string_is(&r, jsonr_get(&r, 0, "g"), "\"q/"));
	assert_false(jsonr_string_is(&r, jsonr_get(&r, 0, "e"), "null"));
	assert_false(jsonr_string_is(&r, -1, ""));
	assert_false(jsonr_string_is(&r, 0, ""));
	assert_true(jsonr_is_null(&r, jsonr_get(&r, 0, "e")));
	assert_false(jsonr_is_null(&r, jsonr_get(&r, 0, "f")));
	assert_false(jsonr_is_null(&r, -1));
	assert_false(jsonr_is_null(&r, 0));
}

/* Random trees bigger than JSONR_TOKENS_MAX, read alike through check. */
static void test_large_random_trees(void **state)
{
	(void)state;
	unsigned seed = 4242;
	int large = 0;
	for (int i = 0; i < 200; i++) {
		json_t *root = json_array();
		for (int k = 0; k < 150; k++) {
			int budget = 60;
			json_array_append_new(root, random_tree(&seed, 0, &budget));
		}
		char *text = json_dumps(root, i % 2 ? JSON_ENSURE_ASCII : JSON_COMPACT);
		assert_non_null(text);
		static struct jsonr r;
		int rc = jsonr_parse_large(&r, text, strlen(text), JSONR_TOKENS_LARGE_MAX);
		if (rc)
			fail_msg("refused (%d) what jansson wrote: %s", rc, text);
		large += r.ntok > JSONR_TOKENS_MAX;
		jsonr_free(&r);
		check(text, strlen(text));
		free(text);
		json_decref(root);
	}
	print_message("large random trees: %d of 200 past JSONR_TOKENS_MAX\n", large);
	assert_true(large > 150);
}

/* Answers as the providers send them, mutated at random: a byte changed,
 * deleted or inserted, or the text cut short. Whatever jsonr accepts,
 * jansson reads the same. */
static void test_mutations(void **state)
{
	(void)state;
	static const char *const seeds[] = {
	    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"447911123456\","
	    "\"wa_id\":\"447911123456\"}],\"messages\":[{\"id\":\"wamid.HBgM\\u00e9\","
	    "\"message_status\":\"accepted\"}]}",
	    "{\"ok\":true,\"result\":{\"message_id\":42,\"from\":{\"id\":1,\"is_bot\":true},"
	    "\"chat\":{\"id\":-1001234567890,\"type\":\"private\"},\"date\":1750263773,"
	    "\"text\":\"Hi \\\"Ana\\\"\\n\\ud83d\\ude00\"}}",
	    "{\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\",\"price\":null,"
	    "\"num_segments\":\"1\",\"error_code\":null,\"uri\":\"/2010-04-01/Accounts/AC1/"
	    "Messages/SM1.json\",\"amount\":-0.0075}",
	    "{\"name\":\"phones/+15551234567/agentMessages/0f8e2a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b\","
	    "\"sendTime\":\"2026-12-07T18:00:00Z\",\"contentMessage\":{\"text\":\"Olá\"}}",
	};
	static const char pool[] =
	    "\"\\{}[],:0123456789-.eEtrufalsn u/\x01\x1f\x7f\x80\xc3\xa9\xff";
	unsigned seed = 777;
	int accepted = 0, refused = 0;
	char buf[512];
	for (int i = 0; i < 60000; i++) {
		const char *s = seeds[i % 4];
		size_t n = strlen(s);
		memcpy(buf, s, n);
		n = mutate(buf, n, sizeof buf - 1, &seed, 3, true, pool);
		if (check(buf, n))
			accepted++;
		else
			refused++;
	}
	/* Both sides exercised: many mutations keep the text valid (a digit
	 * for a digit, a letter inside a string), many break it. */
	print_message("mutations: %d accepted by jsonr (and read alike by jansson), %d refused\n",
	              accepted, refused);
	assert_true(accepted > 5000);
	assert_true(refused > 5000);
	assert_int_equal(accepted + refused, 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepts),      cmocka_unit_test(test_refuses),
	    cmocka_unit_test(test_reads),        cmocka_unit_test(test_token_limit),
	    cmocka_unit_test(test_random_trees), cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_large_cap),    cmocka_unit_test(test_large_depth),
	    cmocka_unit_test(test_large_doc),    cmocka_unit_test(test_large_random_trees),
	    cmocka_unit_test(test_string_is),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
