/*
 * jsonr.h - reads a few fields of a JSON text without building a tree.
 *
 * The channels' success answers (a WhatsApp messages[0].id, a Twilio sid, a
 * Telegram result.message_id) are parsed on the dispatcher's thread once per
 * message. jsonr tokenizes the answer with jsmn (a header-only tokenizer that
 * allocates nothing) into a token array of bounded size held in the struct
 * (on the caller's stack), then checks what jsmn does not: the grammar
 * between tokens (commas, colons, nothing after the value), every literal
 * and number, every string's escapes and UTF-8.
 *
 * jsonr_parse accepts a strict subset of what jansson's json_loadb (flags 0)
 * accepts, and for everything it accepts the values it reads are the ones
 * jansson would give: so a caller that falls back to its jansson path
 * whenever jsonr_parse refuses, or a field is not what it expects, gets the
 * very same outcome as with jansson alone. It refuses (HR_EINVAL) what
 * jansson refuses (malformed, truncated, trailing bytes, control characters
 * or invalid UTF-8 in strings, \u0000, lone surrogates, a top level that is
 * not an object or array, integers outside long long) and, to stay simple,
 * also some JSON that jansson takes: more than JSONR_TOKENS_MAX tokens
 * (HR_ELIMIT), numbers with an exponent or more than 18 digits, and object
 * keys with escapes (so that duplicate keys resolve as jansson does: the
 * last one wins).
 *
 * Bodies bigger than a success answer (the applier's webhooks: ten statuses
 * are ~300 tokens) go through jsonr_parse_large: the same subset, with the
 * tokens on the heap when they do not fit in the struct, up to a cap the
 * caller gives (JSONR_TOKENS_LARGE_MAX at most), and brackets nested at
 * most JSONR_DEPTH_MAX deep (jansson refuses 2,048; the bound also keeps
 * jr_walk's recursion and jsmn's walks up to a bracket's parent short).
 */
#ifndef HR_JSONR_H
#define HR_JSONR_H

#include <stdbool.h>
#include <stddef.h>

/* Only the types here; jsonr.c holds the (static, strict) tokenizer. */
#ifndef JSMN_H
#define JSMN_HEADER
#define JSMN_PARENT_LINKS /* jsmntok_t has .parent: as jsonr.c builds jsmn */
#include <jsmn.h>
#undef JSMN_HEADER
#endif

#define JSONR_TOKENS_MAX 256
#define JSONR_TOKENS_LARGE_MAX 65536
#define JSONR_DEPTH_MAX 64 /* brackets open at once, in jsonr_parse_large */

/*
 * tok and next point into the struct's own arrays, or to the heap after a
 * jsonr_parse_large that needed more: a struct jsonr is not to be copied.
 */
struct jsonr {
	const char *js; /* borrowed: the answer, outlives the reader */
	size_t len;
	int ntok;
	jsmntok_t *tok;
	int *next; /* the token after each token's subtree */
	jsmntok_t tok_in[JSONR_TOKENS_MAX];
	int next_in[JSONR_TOKENS_MAX];
};

/* 0 when js[0..len) is one JSON object or array in the subset above; the
 * root is token 0. HR_EINVAL or HR_ELIMIT otherwise. Allocates nothing. */
int jsonr_parse(struct jsonr *r, const char *js, size_t len);
/*
 * The same for a text of up to max_tokens tokens (at most
 * JSONR_TOKENS_LARGE_MAX): more is HR_ELIMIT, brackets nested deeper than
 * JSONR_DEPTH_MAX HR_EINVAL; HR_ENOMEM when the tokens cannot be
 * allocated. Up to JSONR_TOKENS_MAX tokens it allocates nothing; past that
 * the tokens move to the heap, which doubles as needed (one pass over the
 * text). Call jsonr_free afterwards, whatever it returned.
 */
int jsonr_parse_large(struct jsonr *r, const char *js, size_t len, int max_tokens);
/* Frees what jsonr_parse_large allocated (nothing after jsonr_parse); the
 * reader reads nothing afterwards. */
void jsonr_free(struct jsonr *r);

/* The value of obj's member key (the last one if repeated), or -1 when obj
 * is not an object (or -1) or has no such member. */
int jsonr_get(const struct jsonr *r, int obj, const char *key);
/* The i-th element of array arr, or -1. */
int jsonr_at(const struct jsonr *r, int arr, size_t i);

/* The members of an object or elements of an array, in order: t's first
 * child is t + 1 (an object's: the first key, its value key + 1), and the
 * next sibling of child c is jsonr_after(r, c) (of a key k: after k + 1). */
int jsonr_size(const struct jsonr *r, int t);  /* -1 when t is neither */
int jsonr_after(const struct jsonr *r, int t); /* the token after t's subtree */

bool jsonr_is_object(const struct jsonr *r, int t);
bool jsonr_is_array(const struct jsonr *r, int t);
bool jsonr_is_string(const struct jsonr *r, int t);
bool jsonr_is_true(const struct jsonr *r, int t);
bool jsonr_is_null(const struct jsonr *r, int t);
/* Whether t is a string whose unescaped value is s. */
bool jsonr_string_is(const struct jsonr *r, int t, const char *s);
/*
 * The string t unescaped into out (size n, NUL-terminated) and its length
 * in *outlen (may be NULL). false when t is not a string or it does not fit
 * (out is then "").
 */
bool jsonr_string(const struct jsonr *r, int t, char *out, size_t n, size_t *outlen);
/* The string t unescaped on the heap (the caller frees), its length in
 * *outlen (may be NULL); NULL when t is not a string or out of memory. */
char *jsonr_strdup(const struct jsonr *r, int t, size_t *outlen);
/* An integer (no fraction or exponent) into *out; false otherwise. */
bool jsonr_int(const struct jsonr *r, int t, long long *out);

#endif
