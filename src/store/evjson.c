/*
 * evjson.c - audit-event details as JSON objects, built into one reusable
 * buffer without per-row allocations (the store writes one per message
 * change). Backend-neutral: the lifecycle rules build details, backends
 * store the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/lifecycle.h"

static void json_reserve(struct ev_json *j, size_t extra)
{
	if (j->oom || j->len + extra + 1 <= j->cap)
		return;
	size_t cap = j->cap ? j->cap : 512;
	while (cap < j->len + extra + 1)
		cap *= 2;
	char *p = realloc(j->buf, cap);
	if (!p) {
		j->oom = true;
		return;
	}
	j->buf = p;
	j->cap = cap;
}

static void json_raw(struct ev_json *j, const char *s, size_t n)
{
	json_reserve(j, n);
	if (j->oom)
		return;
	memcpy(j->buf + j->len, s, n);
	j->len += n;
}

/* Length of the valid UTF-8 sequence at p, or 0 if it is not valid. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
			return 0; /* overlong or surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/*
 * Writes s as a JSON string. Provider error texts and customer replies are
 * untrusted bytes: invalid UTF-8 becomes U+FFFD so the stored detail always
 * parses.
 */
static void json_string(struct ev_json *j, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	json_reserve(j, n * 6 + 2);
	if (j->oom)
		return;
	char *o = j->buf + j->len;
	const unsigned char *p = (const unsigned char *)s;
	*o++ = '"';
	while (*p) {
		unsigned c = *p;
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
			p++;
		} else if (c < 0x20) {
			*o++ = '\\';
			switch (c) {
			case '\n':
				*o++ = 'n';
				break;
			case '\r':
				*o++ = 'r';
				break;
			case '\t':
				*o++ = 't';
				break;
			default:
				memcpy(o, "u00", 3);
				o += 3;
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
			p++;
		} else {
			size_t k = utf8_seq(p);
			if (k == 0) {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				p++;
			} else {
				memcpy(o, p, k);
				o += k;
				p += k;
			}
		}
	}
	*o++ = '"';
	j->len = (size_t)(o - j->buf);
}

void ev_json_begin(struct ev_json *j)
{
	j->len = 0;
	j->oom = false;
	json_raw(j, "{", 1);
}

static void json_key(struct ev_json *j, const char *key)
{
	if (j->len > 1)
		json_raw(j, ",", 1);
	json_string(j, key);
	json_raw(j, ":", 1);
}

void ev_json_str(struct ev_json *j, const char *key, const char *val)
{
	if (!val)
		return;
	json_key(j, key);
	json_string(j, val);
}

void ev_json_int(struct ev_json *j, const char *key, int64_t val)
{
	char b[24];
	int n = snprintf(b, sizeof b, "%lld", (long long)val);
	json_key(j, key);
	json_raw(j, b, (size_t)n);
}

void ev_json_bool(struct ev_json *j, const char *key, bool val)
{
	json_key(j, key);
	json_raw(j, val ? "true" : "false", val ? 4 : 5);
}

const char *ev_json_end(struct ev_json *j)
{
	json_raw(j, "}", 1);
	json_reserve(j, 0);
	if (j->oom)
		return NULL;
	j->buf[j->len] = '\0';
	return j->buf;
}
