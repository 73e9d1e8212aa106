/*
 * jsonw.h - a small JSON writer for request bodies of a fixed shape.
 *
 * The channels build one provider request per message on the dispatcher's
 * thread. A jansson tree for a body whose shape the code already knows costs
 * one allocation per node and a second pass to serialise it; this writer
 * appends the text directly into one growable buffer, which is handed over as
 * the request body.
 *
 * Output is what jansson's json_dumps(JSON_COMPACT) writes for the same
 * values in the same key order, byte for byte (tests/unit/test_jsonw.c
 * proves it): strings escaped per RFC 8259 with jansson's choices ('"' and
 * '\\' escaped, \b \t \n \f \r in their short forms, every other control
 * character below 0x20 as \u00XX with upper-case hex; '/', DEL, U+2028 and
 * U+2029 and all other valid UTF-8 passed through as they are).
 *
 * Errors stick: the first failure is kept in w->err and every later call does
 * nothing, so a builder checks once, at jsonw_finish. A string that is not
 * valid UTF-8 or holds a NUL is HR_EINVAL (jansson's json_string refuses it
 * too); a body growing past its bound is HR_ELIMIT; a failed allocation
 * HR_ENOMEM; unbalanced or too deep nesting HR_EINTERNAL (a bug).
 */
#ifndef HR_JSONW_H
#define HR_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#define JSONW_DEPTH_MAX 16

struct jsonw {
	char *p;
	size_t len, cap;
	size_t max; /* bound on the body's bytes (the NUL not counted) */
	int err;    /* the first error (a negative HR_E code), 0 while fine */
	int depth;
	bool after_key;                 /* a key was written: its value comes next */
	bool more[JSONW_DEPTH_MAX + 1]; /* a value was written at this level */
};

/* Starts an empty writer whose output may grow to max bytes (max > 0). */
void jsonw_init(struct jsonw *w, size_t max);
/* Frees what the writer holds (after a failure, or instead of finishing). */
void jsonw_free(struct jsonw *w);

void jsonw_obj(struct jsonw *w);
void jsonw_obj_end(struct jsonw *w);
void jsonw_arr(struct jsonw *w);
void jsonw_arr_end(struct jsonw *w);
/* An object member's key; its value is the next call. */
void jsonw_key(struct jsonw *w, const char *key);
/* A string value: s NUL-terminated (jsonw_strn: n bytes, no NUL inside);
 * NULL is HR_EINTERNAL (a value the caller expected is missing). */
void jsonw_str(struct jsonw *w, const char *s);
void jsonw_strn(struct jsonw *w, const char *s, size_t n);
void jsonw_int(struct jsonw *w, long long v);
void jsonw_bool(struct jsonw *w, bool v);

/* Key and value in one call. */
void jsonw_kstr(struct jsonw *w, const char *key, const char *s);
void jsonw_kint(struct jsonw *w, const char *key, long long v);
void jsonw_kbool(struct jsonw *w, const char *key, bool v);

/*
 * The finished text (heap, NUL-terminated, caller frees) and its length in
 * *len (may be NULL); the writer is left empty. NULL when any call failed or
 * the nesting is not closed: *err (may be NULL) gets the code and the writer
 * has freed its buffer.
 */
char *jsonw_finish(struct jsonw *w, size_t *len, int *err);

#endif
