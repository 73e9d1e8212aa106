/*
 * sheet_num.c - numbers and dates as the user means them: exact digits for
 * numbers Excel stored as doubles, ISO 8601 for date-formatted serials, and
 * which number formats are dates. The rules are in sheet.h.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaigns/sheet_int.h"

enum sheet_numkind sheet_numfmt_builtin(unsigned id)
{
	if (id >= 14 && id <= 17)
		return SHEET_NK_DATE; /* m/d/yyyy, d-mmm-yy, d-mmm, mmm-yy */
	if (id >= 18 && id <= 21)
		return SHEET_NK_TIME; /* h:mm AM/PM ... h:mm:ss */
	if (id == 22)
		return SHEET_NK_DATETIME; /* m/d/yyyy h:mm */
	if (id == 45 || id == 47)
		return SHEET_NK_TIME; /* mm:ss, mmss.0 */
	if (id == 46)
		return SHEET_NK_ELAPSED; /* [h]:mm:ss */
	/* East Asian locales' built-in dates (27-31, 36, 50-58) and times
	 * (32-35); Excel writes these ids without a numFmt element there. */
	if ((id >= 27 && id <= 31) || id == 36 || (id >= 50 && id <= 58))
		return SHEET_NK_DATE;
	if (id >= 32 && id <= 35)
		return SHEET_NK_TIME;
	return SHEET_NK_NUMBER;
}

/* Is s (after an 'a' or 'A') "AM/PM" or "A/P" (case-insensitive)? */
static bool numfmt_ampm(const char *s)
{
	return strncasecmp(s, "am/pm", 5) == 0 || strncasecmp(s, "a/p", 3) == 0;
}

enum sheet_numkind sheet_numfmt_kind(const char *code)
{
	bool date = false, time = false, elapsed = false;
	char last = 0; /* the last date/time letter seen: 'h', 's', 'y', 'd', 'm' */
	for (const char *p = code; *p; p++) {
		char c = (char)tolower((unsigned char)*p);
		if (*p == '"') {
			const char *q = strchr(p + 1, '"');
			if (!q)
				break;
			p = q;
			continue;
		}
		if (*p == '\\' || *p == '_' || *p == '*') {
			if (!p[1])
				break;
			p++;
			continue;
		}
		if (*p == '[') {
			const char *q = strchr(p + 1, ']');
			if (!q)
				break;
			/* [h], [hh], [m], [mm], [s], [ss]: elapsed time. [Red],
			 * [$-409], [<100] and the like say nothing about dates. */
			size_t n = (size_t)(q - p - 1);
			char e = (char)tolower((unsigned char)p[1]);
			if (n >= 1 && n <= 2 && (e == 'h' || e == 'm' || e == 's') &&
			    tolower((unsigned char)p[n]) == e) {
				elapsed = true;
				last = e == 'm' ? 'h' : e; /* "[m]:ss": minutes */
			}
			p = q;
			continue;
		}
		switch (c) {
		case 'y':
		case 'd':
			date = true;
			last = c;
			break;
		case 'h':
		case 's':
			time = true;
			last = c;
			break;
		case 'm': {
			/* Minutes when right after an hour or right before seconds,
			 * else months (Excel's own rule). */
			const char *q = p;
			while (tolower((unsigned char)*q) == 'm')
				q++;
			while (*q && !isalpha((unsigned char)*q) && *q != '"' && *q != '[')
				q++;
			bool minutes = last == 'h' || tolower((unsigned char)*q) == 's';
			if (minutes)
				time = true;
			else
				date = true;
			last = 'm';
			p = q - 1;
			break;
		}
		case 'a':
			if (numfmt_ampm(p)) {
				time = true;
				p += strncasecmp(p, "am/pm", 5) == 0 ? 4 : 2;
			}
			break;
		default:
			break;
		}
	}
	if (elapsed && !date)
		return SHEET_NK_ELAPSED;
	if (date && (time || elapsed))
		return SHEET_NK_DATETIME;
	if (date)
		return SHEET_NK_DATE;
	if (time)
		return SHEET_NK_TIME;
	return SHEET_NK_NUMBER;
}

/* Writes v (>= 0 or negative) in decimal; returns the length. */
static int fmt_int(int64_t v, char *out)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	int k = 0;
	if (v < 0)
		out[k++] = '-';
	while (n)
		out[k++] = tmp[--n];
	out[k] = '\0';
	return k;
}

/* Significant digits in a %g rendering (leading and trailing zeros of the
 * mantissa are not significant). */
static int sig_digits(const char *s)
{
	int first = -1, last = -1, i = 0;
	for (const char *p = s; *p && *p != 'e' && *p != 'E'; p++) {
		if (!isdigit((unsigned char)*p))
			continue;
		if (*p != '0') {
			if (first < 0)
				first = i;
			last = i;
		}
		i++;
	}
	return first < 0 ? 0 : last - first + 1;
}

int sheet_fmt_number(const char *v, size_t n, char out[SHEET_NUM_MAX], unsigned *flags, double *val)
{
	/* The common case, an integer of up to 15 digits written plainly, is
	 * already in its final form: no strtod or printf needed. */
	size_t i = v[0] == '-' ? 1 : 0;
	size_t digits = n - i;
	if (digits >= 1 && digits <= 15 && (v[i] != '0' || digits == 1)) {
		size_t j = i;
		int64_t acc = 0; /* exact: at most 15 digits */
		while (j < n && v[j] >= '0' && v[j] <= '9')
			acc = acc * 10 + (v[j++] - '0');
		if (j == n) {
			if (acc == 0) {
				memcpy(out, "0", 2); /* "-0" too */
				*val = 0;
				return 1;
			}
			memcpy(out, v, n);
			out[n] = '\0';
			*val = (double)(i ? -acc : acc);
			return (int)n;
		}
	}
	/* strtod accepts what Excel never writes (hex, "inf", "nan", leading
	 * space): allow only a decimal number. */
	for (size_t k = 0; k < n; k++) {
		char c = v[k];
		if (!(isdigit((unsigned char)c) || c == '-' || c == '+' || c == '.' || c == 'e' ||
		      c == 'E'))
			return -1;
	}
	char *end;
	double d = strtod(v, &end);
	if (n == 0 || end != v + n || !isfinite(d))
		return -1;
	*val = d;
	if (d == 0) {
		memcpy(out, "0", 2);
		return 1;
	}
	if (d == floor(d) && fabs(d) < 9007199254740992.0) { /* 2^53 */
		int len = fmt_int((int64_t)d, out);
		if (fabs(d) >= 1e15)
			*flags |= SHEET_LOSSY_NUMBER;
		return len;
	}
	int len = 0;
	for (int prec = 15; prec <= 17; prec++) {
		len = snprintf(out, SHEET_NUM_MAX, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	if (sig_digits(out) > 15 || (d == floor(d) && fabs(d) >= 1e15))
		*flags |= SHEET_LOSSY_NUMBER;
	return len;
}

/* Howard Hinnant's civil_from_days: days since 1970-01-01 to y-m-d. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t yy = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

/* n as exactly `width` digits (n < 10^width) at o; returns o past them.
 * Dates are formatted by hand: snprintf cost more than the XML around a
 * date cell. */
static char *put_digits(char *o, unsigned n, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		o[i] = (char)('0' + n % 10);
		n /= 10;
	}
	return o + width;
}

static int put_time(char *out, int len, int64_t hours, int mi, int ss, int frac)
{
	char *o = out + len;
	if (hours >= 100)
		o += fmt_int(hours, o);
	else
		o = put_digits(o, (unsigned)hours, 2);
	*o++ = ':';
	o = put_digits(o, (unsigned)mi, 2);
	*o++ = ':';
	o = put_digits(o, (unsigned)ss, 2);
	if (frac) {
		*o++ = '.';
		o = put_digits(o, (unsigned)frac, 3);
	}
	*o = '\0';
	return (int)(o - out);
}

int sheet_fmt_serial(double serial, enum sheet_numkind kind, bool date1904, char out[SHEET_NUM_MAX])
{
	if (!isfinite(serial) || serial < 0 || serial > 3e6)
		return -1;
	/* Rounded to the millisecond: 14:30 is 0.604166666..., never exact. */
	int64_t ms = llround(serial * 86400000.0);
	int64_t days = ms / 86400000;
	int64_t tod = ms % 86400000;
	int hh = (int)(tod / 3600000), mi = (int)(tod / 60000 % 60), ss = (int)(tod / 1000 % 60);
	int frac = (int)(tod % 1000);
	int len = 0;
	if (kind == SHEET_NK_ELAPSED)
		return put_time(out, 0, ms / 3600000, mi, ss, frac);
	if (kind == SHEET_NK_DATE || kind == SHEET_NK_DATETIME) {
		int64_t y;
		unsigned m, d;
		if (date1904) {
			civil_from_days(days - 24107, &y, &m, &d); /* 1904-01-01 */
		} else if (days == 60) {
			/* Excel's 29 February 1900, which never was: Lotus 1-2-3
			 * thought 1900 a leap year and Excel kept the serials. */
			y = 1900, m = 2, d = 29;
		} else if (days < 60) {
			civil_from_days(days - 25568, &y, &m, &d); /* serial 1 = 1900-01-01 */
		} else {
			civil_from_days(days - 25569, &y, &m, &d); /* serial 61 = 1900-03-01 */
		}
		if (y < 1900 || y > 9999)
			return -1;
		char *o = put_digits(out, (unsigned)y, 4);
		*o++ = '-';
		o = put_digits(o, m, 2);
		*o++ = '-';
		o = put_digits(o, d, 2);
		*o = '\0';
		len = (int)(o - out);
		if (kind == SHEET_NK_DATE)
			return len;
		out[len++] = 'T';
	}
	return put_time(out, len, hh, mi, ss, frac);
}
