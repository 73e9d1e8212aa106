/*
 * fuzz_json.c - the fixed-shape JSON writer and the token reader
 * (src/core/jsonw.c, src/core/jsonr.c), each against jansson.
 * Input layout: byte 0 picks the part (even: the reader, odd: the writer);
 * the rest is the text to read, or the bytes of a string to write.
 * Oracles beyond the sanitizers: whatever jsonr accepts (jsonr_parse, and
 * jsonr_parse_large with its tokens on the heap), jansson's json_loadb
 * accepts too and reads the same values (the channels fall back to jansson
 * whenever jsonr refuses); jsonr_parse_large takes whatever jsonr_parse
 * takes but nesting past JSONR_DEPTH_MAX; jsonw writes a string exactly when
 * json_stringn takes it (and it holds no NUL), and then byte for byte what
 * json_dumps writes.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonr.h"
#include "core/jsonw.h"
#include "herald.h"

/* Whether token t of r holds the same value as j (recursively). */
static bool fz_same(const struct jsonr *r, int t, json_t *j)
{
	if (t < 0 || t >= r->ntok || !j)
		return false;
	const jsmntok_t *k = &r->tok[t];
	if (k->type == JSMN_OBJECT) {
		if (!json_is_object(j))
			return false;
		size_t distinct = 0;
		int i = t + 1;
		for (int m = 0; m < k->size; m++) {
			size_t kl = (size_t)(r->tok[i].end - r->tok[i].start);
			char *key = malloc(kl + 1);
			if (!key)
				abort();
			memcpy(key, r->js + r->tok[i].start, kl);
			key[kl] = '\0';
			if (strlen(key) != kl)
				abort(); /* jsonr let a NUL into a key */
			if (jsonr_get(r, t, key) == i + 1)
				distinct++;
			bool same = fz_same(r, jsonr_get(r, t, key), json_object_get(j, key));
			free(key);
			if (!same)
				return false;
			i = r->next[i + 1];
		}
		return distinct == json_object_size(j);
	}
	if (k->type == JSMN_ARRAY) {
		if (!json_is_array(j) || (size_t)k->size != json_array_size(j))
			return false;
		for (int m = 0; m < k->size; m++)
			if (!fz_same(r, jsonr_at(r, t, (size_t)m), json_array_get(j, (size_t)m)))
				return false;
		return true;
	}
	if (k->type == JSMN_STRING) {
		static char buf[1 << 17];
		size_t n = 0;
		return json_is_string(j) && jsonr_string(r, t, buf, sizeof buf, &n) &&
		       n == json_string_length(j) && memcmp(buf, json_string_value(j), n) == 0 &&
		       jsonr_string_is(r, t, json_string_value(j)) &&
		       (n == 0 || !jsonr_string_is(r, t, json_string_value(j) + 1));
	}
	char c = r->js[k->start];
	if (c == 't')
		return json_is_true(j) && jsonr_is_true(r, t);
	if (c == 'f')
		return json_is_false(j);
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

/* How many brackets s[0..n) has open at once at most, outside strings. */
static int fz_depth(const char *s, size_t n)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	if ((data[0] & 1) == 0) {
		static struct jsonr r;
		int rc = jsonr_parse(&r, s, n);
		if (rc != 0 && rc != HR_EINVAL && rc != HR_ELIMIT)
			abort();
		json_error_t je;
		json_t *j = json_loadb(s, n, 0, &je);
		if (rc == 0 && (!j || !fz_same(&r, 0, j)))
			abort();
		static struct jsonr big;
		int brc = jsonr_parse_large(&big, s, n, JSONR_TOKENS_LARGE_MAX);
		if (brc != 0 && brc != HR_EINVAL && brc != HR_ELIMIT && brc != HR_ENOMEM)
			abort();
		if (brc == 0 && (!j || !fz_same(&big, 0, j) || (rc == 0 && big.ntok != r.ntok)))
			abort();
		if (rc == 0 && brc != 0 && (brc != HR_EINVAL || fz_depth(s, n) <= JSONR_DEPTH_MAX))
			abort();
		jsonr_free(&big);
		json_decref(j);
		return 0;
	}
	struct jsonw w;
	jsonw_init(&w, 16 * n + 16);
	jsonw_arr(&w);
	jsonw_strn(&w, s, n);
	jsonw_arr_end(&w);
	size_t len = 0;
	int rc = 0;
	char *mine = jsonw_finish(&w, &len, &rc);
	json_t *v = memchr(s, 0, n) ? NULL : json_stringn(s, n);
	if (!mine != !v || (!mine && rc != HR_EINVAL))
		abort();
	if (v) {
		json_t *a = json_array();
		json_array_append_new(a, v);
		char *ref = json_dumps(a, JSON_COMPACT);
		if (!ref || strcmp(ref, mine) != 0 || len != strlen(ref))
			abort();
		free(ref);
		json_decref(a);
	}
	free(mine);
	return 0;
}
