/*
 * jsonw.c - the fixed-shape JSON writer (jsonw.h says what it guarantees).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonw.h"
#include "herald.h"

#define JSONW_FIRST_CAP 512

void jsonw_init(struct jsonw *w, size_t max)
{
	memset(w, 0, sizeof *w);
	w->max = max;
}

void jsonw_free(struct jsonw *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}

static void jsonw_fail(struct jsonw *w, int code)
{
	if (!w->err)
		w->err = code;
}

/* Makes room for n more bytes (and the NUL); false (error set) if it cannot. */
static bool jsonw_room(struct jsonw *w, size_t n)
{
	if (w->err)
		return false;
	if (n > w->max || w->len > w->max - n) {
		jsonw_fail(w, HR_ELIMIT);
		return false;
	}
	if (w->len + n + 1 <= w->cap)
		return true;
	size_t cap = w->cap ? w->cap : JSONW_FIRST_CAP;
	while (cap < w->len + n + 1)
		cap *= 2;
	if (cap > w->max + 1)
		cap = w->max + 1;
	char *q = realloc(w->p, cap);
	if (!q) {
		jsonw_fail(w, HR_ENOMEM);
		return false;
	}
	w->p = q;
	w->cap = cap;
	return true;
}

static void jsonw_put(struct jsonw *w, const char *s, size_t n)
{
	if (!jsonw_room(w, n))
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void jsonw_putc(struct jsonw *w, char c)
{
	if (!jsonw_room(w, 1))
		return;
	w->p[w->len++] = c;
}

/* The comma before a value or key, when one is due at this level. */
static void jsonw_sep(struct jsonw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->more[w->depth])
		jsonw_putc(w, ',');
	w->more[w->depth] = true;
}

/* Appends "s" escaped. Runs of bytes that need nothing are copied at once. */
static void jsonw_quoted(struct jsonw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;
	jsonw_putc(w, '"');
	size_t run = 0; /* start of the pending run of plain bytes */
	for (size_t i = 0; i < n && !w->err;) {
		unsigned char c = u[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t k = hr_utf8_seq(u + i, n - i);
			if (!k) {
				jsonw_fail(w, HR_EINVAL);
				return;
			}
			i += k;
			continue;
		}
		if (c == 0) {
			jsonw_fail(w, HR_EINVAL);
			return;
		}
		jsonw_put(w, s + run, i - run);
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t elen = 2;
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			elen = 6;
		}
		jsonw_put(w, esc, elen);
		run = ++i;
	}
	jsonw_put(w, s + run, n - run);
	jsonw_putc(w, '"');
}

static void jsonw_open(struct jsonw *w, char c)
{
	jsonw_sep(w);
	if (w->depth >= JSONW_DEPTH_MAX) {
		jsonw_fail(w, HR_EINTERNAL);
		return;
	}
	jsonw_putc(w, c);
	w->more[++w->depth] = false;
}

static void jsonw_close(struct jsonw *w, char c)
{
	if (w->depth <= 0 || w->after_key) {
		jsonw_fail(w, HR_EINTERNAL);
		return;
	}
	w->depth--;
	jsonw_putc(w, c);
}

void jsonw_obj(struct jsonw *w)
{
	jsonw_open(w, '{');
}

void jsonw_obj_end(struct jsonw *w)
{
	jsonw_close(w, '}');
}

void jsonw_arr(struct jsonw *w)
{
	jsonw_open(w, '[');
}

void jsonw_arr_end(struct jsonw *w)
{
	jsonw_close(w, ']');
}

void jsonw_key(struct jsonw *w, const char *key)
{
	if (w->depth <= 0 || w->after_key) {
		jsonw_fail(w, HR_EINTERNAL);
		return;
	}
	jsonw_sep(w);
	jsonw_quoted(w, key, strlen(key));
	jsonw_putc(w, ':');
	w->after_key = true;
}

void jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
	if (!s) {
		jsonw_fail(w, HR_EINTERNAL); /* a value the caller expected is missing */
		return;
	}
	jsonw_sep(w);
	jsonw_quoted(w, s, n);
}

void jsonw_str(struct jsonw *w, const char *s)
{
	jsonw_strn(w, s, s ? strlen(s) : 0);
}

void jsonw_int(struct jsonw *w, long long v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%lld", v);
	jsonw_sep(w);
	jsonw_put(w, num, (size_t)n);
}

void jsonw_bool(struct jsonw *w, bool v)
{
	jsonw_sep(w);
	if (v)
		jsonw_put(w, "true", 4);
	else
		jsonw_put(w, "false", 5);
}

void jsonw_kstr(struct jsonw *w, const char *key, const char *s)
{
	jsonw_key(w, key);
	jsonw_str(w, s);
}

void jsonw_kint(struct jsonw *w, const char *key, long long v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}

void jsonw_kbool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	jsonw_bool(w, v);
}

char *jsonw_finish(struct jsonw *w, size_t *len, int *err)
{
	if (!w->err && (w->depth != 0 || w->after_key || w->len == 0))
		jsonw_fail(w, HR_EINTERNAL);
	if (w->err) {
		if (err)
			*err = w->err;
		jsonw_free(w);
		return NULL;
	}
	char *out = w->p;
	out[w->len] = '\0';
	if (len)
		*len = w->len;
	w->p = NULL;
	w->len = w->cap = 0;
	if (err)
		*err = 0;
	return out;
}
