/*
 * segments.c - see segments.h.
 */
#include <string.h>

#include "core/segments.h"

/* Code points of the GSM 03.38 basic character set (one septet each). */
static const unsigned gsm_basic[] = {
    '@',   0xa3, '$',  0xa5,  0xe8, 0xe9,  0xf9,  0xec,  0xf2,  0xc7,  '\n',  0xd8,  0xf8,
    '\r',  0xc5, 0xe5, 0x394, '_',  0x3a6, 0x393, 0x39b, 0x3a9, 0x3a0, 0x3a8, 0x3a3, 0x398,
    0x39e, 0xc6, 0xe6, 0xdf,  0xc9, ' ',   '!',   '"',   '#',   0xa4,  '%',   '&',   '\'',
    '(',   ')',  '*',  '+',   ',',  '-',   '.',   '/',   ':',   ';',   '<',   '=',   '>',
    '?',   0xa1, 0xc4, 0xd6,  0xd1, 0xdc,  0xa7,  0xbf,  0xe4,  0xf6,  0xf1,  0xfc,  0xe0,
};
/* The extension table (escape + one septet). */
static const unsigned gsm_ext[] = {'^', '{', '}', '\\', '[', '~', ']', '|', 0x20ac, '\f'};

/* Septets for code point cp in GSM-7, or 0 if it is not representable. */
static int gsm_cost(unsigned cp)
{
	if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'))
		return 1;
	for (size_t i = 0; i < sizeof gsm_basic / sizeof gsm_basic[0]; i++)
		if (gsm_basic[i] == cp)
			return 1;
	for (size_t i = 0; i < sizeof gsm_ext / sizeof gsm_ext[0]; i++)
		if (gsm_ext[i] == cp)
			return 2;
	return 0;
}

/* Decodes one UTF-8 code point at *p; returns bytes used, 0 if invalid. */
static int utf8_next(const unsigned char *p, unsigned *cp)
{
	unsigned c = p[0];
	int n;
	unsigned min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000;
	else
		return 0;
	unsigned v = c & (0x3fu >> (n - 1));
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Packs characters of the given unit costs into segments of `per` units,
 * never splitting one character across two. */
static int pack(const unsigned char *s, bool gsm, int per)
{
	int segs = 1, used = 0;
	unsigned cp;
	for (int n; *s; s += n) {
		n = utf8_next(s, &cp);
		int cost = gsm ? gsm_cost(cp) : (cp > 0xffff ? 2 : 1);
		if (used + cost > per) {
			segs++;
			used = 0;
		}
		used += cost;
	}
	return segs;
}

int sms_segments(const char *text, struct sms_info *out, struct hr_err *err)
{
	const unsigned char *s = (const unsigned char *)text;
	int septets = 0, units = 0;
	bool gsm = true;
	unsigned cp;
	for (int n; *s; s += n) {
		n = utf8_next(s, &cp);
		if (n == 0)
			return hr_fail(err, HR_EINVAL, "text", "text is not valid UTF-8 at byte %d",
			               (int)(s - (const unsigned char *)text));
		int c = gsm_cost(cp);
		if (c == 0)
			gsm = false;
		septets += c;
		units += cp > 0xffff ? 2 : 1;
	}
	out->encoding = gsm ? SMS_GSM7 : SMS_UCS2;
	out->units = gsm ? septets : units;
	int single = gsm ? 160 : 70, per = gsm ? 153 : 67;
	out->segments = out->units <= single ? 1 : pack((const unsigned char *)text, gsm, per);
	return 0;
}
