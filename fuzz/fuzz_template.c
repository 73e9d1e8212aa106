/*
 * fuzz_template.c - template rendering (src/core/template.c) and what the
 * rendered text goes through next for SMS, segment counting
 * (src/core/segments.c). The input is the template body, then the
 * parameters, separated by NUL bytes (a body or a JSON string parameter
 * cannot hold a NUL: content.c takes parameters from JSON strings).
 * Oracles beyond the sanitizers: a body whose count is n renders with
 * exactly n parameters and refuses n-1 and n+1, each refusal naming a
 * field; the rendered text is as long as the body with every placeholder
 * replaced by its parameter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/segments.h"
#include "core/template.h"

#define MAXP 128

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *parts[MAXP + 2];
	size_t np = 0;
	for (char *p = buf; np < MAXP + 2;) {
		parts[np++] = p;
		char *z = memchr(p, '\0', (size_t)(buf + size - p));
		if (!z || z == buf + size)
			break;
		p = z + 1;
	}
	const char *body = parts[0];
	const char *const *params = parts + 1;
	size_t given = np - 1;

	struct hr_err err = {0};
	int count = -1;
	int crc = template_param_count(body, &count, &err);
	if (crc != 0 && err.msg[0] == '\0')
		abort();
	memset(&err, 0, sizeof err);
	char *out = template_render(body, params, given, &err);
	if (crc != 0 && out)
		abort(); /* rendered a body it cannot count */
	if (crc == 0 && (out != NULL) != ((size_t)count == given))
		abort();
	if (!out && (err.msg[0] == '\0' || (crc == 0 && err.field[0] == '\0')))
		abort();
	if (out) {
		/* Expected length: each "{{n}}" placeholder replaced. */
		size_t want = 0;
		for (const char *p = body; *p;) {
			const char *q = p + 2;
			int idx = 0, digits = 0;
			if (p[0] == '{' && p[1] == '{') {
				while (*q >= '0' && *q <= '9' && digits < 4)
					idx = idx * 10 + (*q++ - '0'), digits++;
			}
			if (digits && q[0] == '}' && q[1] == '}' && idx >= 1) {
				want += strlen(params[idx - 1]);
				p = q + 2;
			} else {
				want++, p++;
			}
		}
		if (strlen(out) != want)
			abort();
		struct sms_info si;
		memset(&err, 0, sizeof err);
		int src = sms_segments(out, &si, &err);
		if (src != 0 && err.msg[0] == '\0')
			abort();
		free(out);
	}
	/* One parameter too few and one too many are refused with a field. */
	if (crc == 0 && count > 0 && given >= (size_t)count) {
		memset(&err, 0, sizeof err);
		char *o = template_render(body, params, (size_t)count - 1, &err);
		if (o || !err.field[0])
			abort();
	}
	if (crc == 0 && given > (size_t)count) {
		memset(&err, 0, sizeof err);
		char *o = template_render(body, params, (size_t)count + 1, &err);
		if (o || !err.field[0])
			abort();
	}
	free(buf);
	return 0;
}
