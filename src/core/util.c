/*
 * util.c - errors, clocks, logging, small string helpers, message memory.
 */
#include <pthread.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "herald.h"

const char *hr_code_name(int code)
{
	switch (code) {
	case HR_OK:
		return "ok";
	case HR_EINVAL:
		return "invalid";
	case HR_ENOTFOUND:
		return "not_found";
	case HR_ECONFLICT:
		return "conflict";
	case HR_EAUTH:
		return "unauthorized";
	case HR_ENOMEM:
		return "out_of_memory";
	case HR_EIO:
		return "storage_error";
	case HR_ELIMIT:
		return "too_large";
	case HR_EBUSY:
		return "busy";
	case HR_EQUOTA:
		return "quota_exceeded";
	case HR_ETIMEOUT:
		return "timeout";
	case HR_EFORBIDDEN:
		return "forbidden";
	default:
		return "internal";
	}
}

int hr_fail(struct hr_err *err, int code, const char *field, const char *fmt, ...)
{
	if (err) {
		err->code = code;
		hr_strlcpy(err->field, field ? field : "", sizeof err->field);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return code;
}

void hr_err_clear(struct hr_err *err)
{
	if (err)
		memset(err, 0, sizeof *err);
}

int64_t hr_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t hr_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void hr_time_format(int64_t us, char out[32])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[24];
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%.19s.%06dZ", buf, (int)(us % 1000000));
}

size_t hr_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);
	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

size_t hr_utf8_put(char out[4], unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

size_t hr_utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	size_t n;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000;
	else
		return 0;
	if (n > avail)
		return 0;
	unsigned cp = c & (0x3f >> (n - 1));
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

size_t hr_utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		size_t n = p[i] ? hr_utf8_seq(p + i, len - i) : 0;
		if (n == 0 || n > len - i)
			return i;
		i += n;
	}
	return len;
}

size_t hr_utf8_copy(char *dst, const char *src, size_t size)
{
	if (size == 0)
		return 0;
	const unsigned char *p = (const unsigned char *)src;
	size_t o = 0;
	while (*p) {
		size_t n = hr_utf8_seq(p, SIZE_MAX);
		if (n == 0) {
			if (o + 1 >= size)
				break;
			dst[o++] = '?';
			p++;
			continue;
		}
		if (o + n >= size)
			break;
		memcpy(dst + o, p, n);
		o += n;
		p += n;
	}
	dst[o] = '\0';
	return o;
}

void hr_buf_put(struct hr_buf *b, const void *p, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void hr_buf_printf(struct hr_buf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (!b->p || b->len + (size_t)n + 1 > b->cap) {
		size_t len = b->len;
		hr_buf_put(b, NULL, 0); /* makes b->p */
		size_t cap = b->cap;
		while (cap < len + (size_t)n + 1)
			cap *= 2;
		char *q = cap == b->cap ? b->p : realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
		va_start(ap, fmt);
		vsnprintf(b->p + len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void hr_secret_free(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

bool hr_consteq(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

void message_clear(struct message *m)
{
	free(m->content);
	free(m->body);
	free(m->callback_url);
	free(m->route);
	memset(m, 0, sizeof *m);
}

void message_event_clear(struct message_event *e)
{
	free(e->detail);
	memset(e, 0, sizeof *e);
}

static enum hr_log_level log_level = HR_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void hr_log_set_level(enum hr_log_level lvl)
{
	log_level = lvl;
}

void hr_log(enum hr_log_level lvl, const char *module, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (lvl < log_level)
		return;
	char ts[32];
	hr_time_format(hr_now_us(), ts);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s %-5s %-8s %s\n", ts, names[lvl], module, msg);
	pthread_mutex_unlock(&log_lock);
}

/* Reads exactly n digits at *p into *v and advances *p; false if any is not
 * a digit (so " 5", "+5" and short fields never pass). */
static bool fixed_digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		*v = *v * 10 + (c - '0');
	}
	*p += n;
	return true;
}

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (the
 * civil-from-days inverse by eras of 400 years, exact for every year). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * RFC 3339 ("2026-01-15T10:00:00.123456Z"; any number of fraction digits,
 * the first 6 kept, and a +hh:mm offset allowed) to UTC microseconds.
 * Every field is fixed-width and range-checked against the calendar: a date
 * that does not exist (February 30th, February 29th of a common year) is
 * HR_EINVAL, never rolled over into the next month as timegm() would. A
 * leap second (:60) is refused too: nothing Herald reads sends one, and
 * accepting it would mean inventing where it lands.
 */
int hr_time_parse(const char *s, int64_t *out)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s;
	int y, mo, d, h, mi, sec;
	if (!fixed_digits(&p, 4, &y) || *p++ != '-' || !fixed_digits(&p, 2, &mo) || *p++ != '-' ||
	    !fixed_digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
		return HR_EINVAL;
	p++;
	if (!fixed_digits(&p, 2, &h) || *p++ != ':' || !fixed_digits(&p, 2, &mi) || *p++ != ':' ||
	    !fixed_digits(&p, 2, &sec))
		return HR_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap_year(y)) || h > 23 ||
	    mi > 59 || sec > 59)
		return HR_EINVAL;
	int64_t frac = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 6)
				frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return HR_EINVAL;
		for (; digits < 6; digits++)
			frac *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '+' ? 1 : -1, oh, om;
		if (!fixed_digits(&p, 2, &oh) || *p++ != ':' || !fixed_digits(&p, 2, &om) ||
		    oh > 23 || om > 59)
			return HR_EINVAL;
		off = (int64_t)(oh * 3600 + om * 60) * sign;
	} else {
		return HR_EINVAL;
	}
	if (*p)
		return HR_EINVAL;
	int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec;
	*out = (t - off) * 1000000 + frac;
	return 0;
}
