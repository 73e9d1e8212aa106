/*
 * jsonr.c - reading a few fields of a JSON text, a success answer or a
 * webhook body (jsonr.h says what is accepted and why that gives jansson's
 * outcome).
 *
 * jsmn (Debian: libjsmn-dev) is a header-only tokenizer: this file holds its
 * only copy, static and in strict mode. jsmn alone is lenient (it takes
 * {"a" 1}, [1 2], tru, and control characters in strings), so after it has
 * cut the text into tokens, jr_walk checks every byte between them.
 */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS /* as jsonr.h: closing a bracket walks up, not back */
#include <jsmn.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonr.h"
#include "herald.h"

#define JSONR_NUM_DIGITS_MAX 18 /* below 10^18: any such integer fits long long */

static size_t jr_ws(const char *js, size_t pos, size_t end)
{
	while (pos < end &&
	       (js[pos] == ' ' || js[pos] == '\t' || js[pos] == '\n' || js[pos] == '\r'))
		pos++;
	return pos;
}

static int jr_hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
		        : c >= 'a' && c <= 'f' ? c - 'a' + 10
		        : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                               : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/*
 * Checks a string token's content s[0..n) (s[n] is its closing quote) as
 * jansson's lexer would: no control characters, valid UTF-8, escapes among
 * \" \\ \/ \b \f \n \r \t \uXXXX, no \u0000, surrogates only in pairs.
 * *escaped tells whether any escape is present.
 */
static bool jr_string_ok(const char *s, size_t n, bool *escaped)
{
	*escaped = false;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20)
			return false;
		if (c >= 0x80) {
			size_t run = i;
			while (run < n && (unsigned char)s[run] >= 0x80)
				run++;
			/* s[run] is readable: a byte below 0x80 or the quote. */
			if (hr_utf8_check(s + i, run - i) != run - i)
				return false;
			i = run;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		*escaped = true;
		if (i + 1 >= n)
			return false;
		char e = s[i + 1];
		if (strchr("\"\\/bfnrt", e) && e) {
			i += 2;
			continue;
		}
		if (e != 'u' || i + 6 > n)
			return false;
		int cp = jr_hex4(s + i + 2);
		if (cp <= 0) /* not hex, or \u0000 */
			return false;
		i += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return false; /* a low surrogate first */
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u')
				return false;
			int lo = jr_hex4(s + i + 2);
			if (lo < 0xdc00 || lo > 0xdfff)
				return false;
			i += 6;
		}
	}
	return true;
}

/* A string token: within its quotes, and its content as jr_string_ok wants. */
static bool jr_string_tok(const struct jsonr *r, const jsmntok_t *k, bool *escaped)
{
	return k->start >= 1 && r->js[k->start - 1] == '"' && (size_t)k->end < r->len &&
	       r->js[k->end] == '"' &&
	       jr_string_ok(r->js + k->start, (size_t)(k->end - k->start), escaped);
}

/* true, false, null, or a number of the subset (jsonr.h). */
static bool jr_primitive_ok(const char *p, size_t n)
{
	if ((n == 4 && memcmp(p, "true", 4) == 0) || (n == 5 && memcmp(p, "false", 5) == 0) ||
	    (n == 4 && memcmp(p, "null", 4) == 0))
		return true;
	size_t i = 0, digits = 0;
	if (i < n && p[i] == '-')
		i++;
	if (i >= n || p[i] < '0' || p[i] > '9')
		return false;
	if (p[i] == '0') {
		i++, digits++;
	} else {
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++, digits++;
	}
	if (i < n && p[i] == '.') {
		i++;
		size_t frac = 0;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++, frac++;
		if (!frac)
			return false;
		digits += frac;
	}
	/* An exponent (e/E) is refused here: jansson may overflow on it. */
	return i == n && digits <= JSONR_NUM_DIGITS_MAX;
}

/*
 * Checks token t and its subtree against the text, byte by byte between
 * tokens; returns the index after the subtree, or -1. Fills r->next. t is
 * inside depth - 1 brackets: one more than depth_max open at once is -1.
 */
static int jr_walk(struct jsonr *r, int t, int depth, int depth_max)
{
	if (t >= r->ntok)
		return -1;
	const jsmntok_t *k = &r->tok[t];
	const char *js = r->js;
	bool esc;
	if (k->start < 0 || k->end < k->start || (size_t)k->end > r->len)
		return -1;
	switch (k->type) {
	case JSMN_STRING:
		if (!jr_string_tok(r, k, &esc))
			return -1;
		r->next[t] = t + 1;
		return t + 1;
	case JSMN_PRIMITIVE:
		if (!jr_primitive_ok(js + k->start, (size_t)(k->end - k->start)))
			return -1;
		r->next[t] = t + 1;
		return t + 1;
	case JSMN_OBJECT:
	case JSMN_ARRAY:
		break;
	default:
		return -1;
	}
	bool obj = k->type == JSMN_OBJECT;
	if (depth > depth_max)
		return -1;
	if (js[k->start] != (obj ? '{' : '[') || k->end - k->start < 2 ||
	    js[k->end - 1] != (obj ? '}' : ']'))
		return -1;
	size_t end = (size_t)k->end - 1; /* the closing bracket */
	size_t pos = jr_ws(js, (size_t)k->start + 1, end);
	int i = t + 1;
	for (int m = 0; m < k->size; m++) {
		if (m > 0) {
			if (pos >= end || js[pos] != ',')
				return -1;
			pos = jr_ws(js, pos + 1, end);
		}
		if (obj) {
			if (i >= r->ntok)
				return -1;
			const jsmntok_t *key = &r->tok[i];
			if (key->type != JSMN_STRING || (size_t)key->start != pos + 1 ||
			    !jr_string_tok(r, key, &esc) || esc)
				return -1; /* escaped: keys compare as raw bytes (jsonr.h) */
			r->next[i] = i + 1;
			pos = jr_ws(js, (size_t)key->end + 1, end);
			if (pos >= end || js[pos] != ':')
				return -1;
			pos = jr_ws(js, pos + 1, end);
			i++;
		}
		if (i >= r->ntok)
			return -1;
		const jsmntok_t *v = &r->tok[i];
		size_t vstart = v->type == JSMN_STRING ? (size_t)v->start - 1 : (size_t)v->start;
		if (v->start < 1 || vstart != pos)
			return -1;
		int j = jr_walk(r, i, depth + 1, depth_max);
		if (j < 0)
			return -1;
		pos = jr_ws(js, v->type == JSMN_STRING ? (size_t)v->end + 1 : (size_t)v->end, end);
		i = j;
	}
	if (pos != end)
		return -1;
	r->next[t] = i;
	return i;
}

static void jr_reset(struct jsonr *r, const char *js, size_t len)
{
	r->js = js;
	r->len = len;
	r->ntok = 0;
	r->tok = r->tok_in;
	r->next = r->next_in;
}

/* Checks the n tokens jsmn made of r's text (or its error n), brackets
 * nested at most depth_max deep. */
static int jr_check(struct jsonr *r, int n, int depth_max)
{
	if (n == JSMN_ERROR_NOMEM)
		return HR_ELIMIT;
	if (n < 1)
		return HR_EINVAL;
	r->ntok = n;
	const char *js = r->js;
	size_t len = r->len;
	if (r->tok[0].type != JSMN_OBJECT && r->tok[0].type != JSMN_ARRAY)
		goto bad;
	if (jr_ws(js, 0, len) != (size_t)r->tok[0].start || jr_walk(r, 0, 1, depth_max) != n)
		goto bad;
	if (jr_ws(js, (size_t)r->tok[0].end, len) != len)
		goto bad; /* anything after the value, a NUL included */
	return 0;
bad:
	r->ntok = 0;
	return HR_EINVAL;
}

int jsonr_parse(struct jsonr *r, const char *js, size_t len)
{
	jr_reset(r, js, len);
	if (!js || len == 0 || len > INT_MAX)
		return HR_EINVAL;
	jsmn_parser p;
	jsmn_init(&p);
	/* 256 tokens nest at most 256 deep: no depth bound of its own. */
	return jr_check(r, jsmn_parse(&p, js, len, r->tok, JSONR_TOKENS_MAX), JSONR_TOKENS_MAX);
}

/*
 * jsmn stops with JSMN_ERROR_NOMEM where a token does not fit, its parser
 * ready to go on from there with a larger array holding the tokens so far
 * (jsmn.h's documented use): so the tokens start in the struct and move to
 * the heap, doubling, only for a text with more; one pass over the text.
 */
int jsonr_parse_large(struct jsonr *r, const char *js, size_t len, int max_tokens)
{
	jr_reset(r, js, len);
	if (!js || len == 0 || len > INT_MAX)
		return HR_EINVAL;
	if (max_tokens > JSONR_TOKENS_LARGE_MAX)
		max_tokens = JSONR_TOKENS_LARGE_MAX;
	if (max_tokens < 1)
		return HR_ELIMIT;
	jsmn_parser p;
	jsmn_init(&p);
	int cap = max_tokens < JSONR_TOKENS_MAX ? max_tokens : JSONR_TOKENS_MAX;
	int n = jsmn_parse(&p, js, len, r->tok, (unsigned)cap);
	while (n == JSMN_ERROR_NOMEM && cap < max_tokens) {
		int grown = cap > max_tokens / 2 ? max_tokens : 2 * cap;
		jsmntok_t *t = r->tok == r->tok_in ? malloc((size_t)grown * sizeof *t)
		                                   : realloc(r->tok, (size_t)grown * sizeof *t);
		if (!t) {
			jsonr_free(r);
			return HR_ENOMEM;
		}
		if (r->tok == r->tok_in)
			memcpy(t, r->tok_in, (size_t)cap * sizeof *t);
		r->tok = t;
		cap = grown;
		n = jsmn_parse(&p, js, len, r->tok, (unsigned)cap);
	}
	if (n > 0 && r->tok != r->tok_in) {
		r->next = malloc((size_t)n * sizeof *r->next);
		if (!r->next) {
			jsonr_free(r);
			return HR_ENOMEM;
		}
	}
	return jr_check(r, n, JSONR_DEPTH_MAX);
}

void jsonr_free(struct jsonr *r)
{
	if (r->tok != r->tok_in)
		free(r->tok);
	if (r->next != r->next_in)
		free(r->next);
	r->tok = r->tok_in;
	r->next = r->next_in;
	r->ntok = 0;
}

int jsonr_get(const struct jsonr *r, int obj, const char *key)
{
	if (obj < 0 || obj >= r->ntok || r->tok[obj].type != JSMN_OBJECT)
		return -1;
	size_t klen = strlen(key);
	int found = -1;
	int i = obj + 1;
	for (int m = 0; m < r->tok[obj].size; m++) {
		const jsmntok_t *k = &r->tok[i];
		if ((size_t)(k->end - k->start) == klen && memcmp(r->js + k->start, key, klen) == 0)
			found = i + 1; /* the last one wins, as in jansson */
		i = r->next[i + 1];
	}
	return found;
}

int jsonr_at(const struct jsonr *r, int arr, size_t idx)
{
	if (arr < 0 || arr >= r->ntok || r->tok[arr].type != JSMN_ARRAY ||
	    idx >= (size_t)r->tok[arr].size)
		return -1;
	int i = arr + 1;
	for (size_t m = 0; m < idx; m++)
		i = r->next[i];
	return i;
}

int jsonr_size(const struct jsonr *r, int t)
{
	if (t < 0 || t >= r->ntok ||
	    (r->tok[t].type != JSMN_OBJECT && r->tok[t].type != JSMN_ARRAY))
		return -1;
	return r->tok[t].size;
}

int jsonr_after(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok ? r->next[t] : -1;
}

bool jsonr_is_object(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok && r->tok[t].type == JSMN_OBJECT;
}

bool jsonr_is_array(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok && r->tok[t].type == JSMN_ARRAY;
}

bool jsonr_is_string(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok && r->tok[t].type == JSMN_STRING;
}

bool jsonr_is_true(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok && r->tok[t].type == JSMN_PRIMITIVE &&
	       r->js[r->tok[t].start] == 't';
}

bool jsonr_is_null(const struct jsonr *r, int t)
{
	return t >= 0 && t < r->ntok && r->tok[t].type == JSMN_PRIMITIVE &&
	       r->js[r->tok[t].start] == 'n';
}

/*
 * The next piece of a string token's content s at *i, unescaped into b: a
 * plain byte, or an escape's UTF-8 (a surrogate pair as one character).
 * Its length; *i moves past it. Escapes were checked by jr_string_ok when
 * the text was parsed.
 */
static size_t jr_unescape_next(const char *s, size_t *i, char b[4])
{
	if (s[*i] != '\\') {
		b[0] = s[(*i)++];
		return 1;
	}
	char e = s[*i + 1];
	*i += 2;
	unsigned cp;
	switch (e) {
	case 'b':
		cp = '\b';
		break;
	case 'f':
		cp = '\f';
		break;
	case 'n':
		cp = '\n';
		break;
	case 'r':
		cp = '\r';
		break;
	case 't':
		cp = '\t';
		break;
	case 'u':
		cp = (unsigned)jr_hex4(s + *i);
		*i += 4;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			unsigned lo = (unsigned)jr_hex4(s + *i + 2);
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			*i += 6;
		}
		break;
	default: /* " \ / */
		cp = (unsigned char)e;
	}
	return hr_utf8_put(b, cp);
}

bool jsonr_string(const struct jsonr *r, int t, char *out, size_t n, size_t *outlen)
{
	if (n == 0)
		return false;
	out[0] = '\0';
	if (!jsonr_is_string(r, t))
		return false;
	const char *s = r->js + r->tok[t].start;
	size_t len = (size_t)(r->tok[t].end - r->tok[t].start), o = 0;
	for (size_t i = 0; i < len;) {
		char b[4];
		size_t k = jr_unescape_next(s, &i, b);
		if (o + k >= n) {
			out[0] = '\0';
			return false;
		}
		memcpy(out + o, b, k);
		o += k;
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return true;
}

bool jsonr_string_is(const struct jsonr *r, int t, const char *str)
{
	if (!jsonr_is_string(r, t))
		return false;
	const char *s = r->js + r->tok[t].start;
	size_t len = (size_t)(r->tok[t].end - r->tok[t].start), o = 0;
	for (size_t i = 0; i < len;) {
		char b[4];
		size_t k = jr_unescape_next(s, &i, b);
		/* str ends at its NUL, which no piece holds (no \u0000). */
		for (size_t j = 0; j < k; j++, o++)
			if (str[o] != b[j])
				return false;
	}
	return str[o] == '\0';
}

char *jsonr_strdup(const struct jsonr *r, int t, size_t *outlen)
{
	if (!jsonr_is_string(r, t))
		return NULL;
	/* Unescaping never lengthens: \uXXXX (6 bytes) gives at most 3, a
	 * surrogate pair (12) gives 4. */
	size_t cap = (size_t)(r->tok[t].end - r->tok[t].start) + 1;
	char *s = malloc(cap);
	if (s && !jsonr_string(r, t, s, cap, outlen)) {
		free(s);
		s = NULL;
	}
	return s;
}

bool jsonr_int(const struct jsonr *r, int t, long long *out)
{
	if (t < 0 || t >= r->ntok || r->tok[t].type != JSMN_PRIMITIVE)
		return false;
	const char *p = r->js + r->tok[t].start;
	size_t n = (size_t)(r->tok[t].end - r->tok[t].start);
	if (p[0] != '-' && (p[0] < '0' || p[0] > '9'))
		return false;
	if (memchr(p, '.', n))
		return false;
	/* At most 18 digits (jr_primitive_ok): no overflow. */
	long long v = 0;
	size_t i = p[0] == '-';
	for (; i < n; i++)
		v = v * 10 + (p[i] - '0');
	*out = p[0] == '-' ? -v : v;
	return true;
}
