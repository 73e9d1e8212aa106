/*
 * template.c - {{n}} placeholder counting and rendering.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/template.h"

#define TEMPLATE_MAX_PARAMS 100

/* Scans one placeholder at p ("{{" seen); returns its index or -1. */
static int placeholder(const char *p, const char **end)
{
	const char *q = p + 2;
	int idx = 0, digits = 0;
	while (*q >= '0' && *q <= '9' && digits < 4) {
		idx = idx * 10 + (*q - '0');
		q++, digits++;
	}
	if (digits == 0 || q[0] != '}' || q[1] != '}' || idx < 1)
		return -1;
	*end = q + 2;
	return idx;
}

int template_param_count(const char *body, int *count, struct hr_err *err)
{
	bool seen[TEMPLATE_MAX_PARAMS + 1] = {0};
	int max = 0;
	for (const char *p = body; (p = strstr(p, "{{")) != NULL;) {
		const char *end;
		int idx = placeholder(p, &end);
		if (idx < 0)
			return hr_fail(err, HR_EINVAL, "body", "malformed placeholder at offset %d",
			               (int)(p - body));
		if (idx > TEMPLATE_MAX_PARAMS)
			return hr_fail(err, HR_EINVAL, "body", "placeholder {{%d}} exceeds %d", idx,
			               TEMPLATE_MAX_PARAMS);
		seen[idx] = true;
		if (idx > max)
			max = idx;
		p = end;
	}
	for (int i = 1; i <= max; i++)
		if (!seen[i])
			return hr_fail(err, HR_EINVAL, "body", "placeholder {{%d}} is missing", i);
	*count = max;
	return 0;
}

char *template_render(const char *body, const char *const *params, size_t nparams,
                      struct hr_err *err)
{
	int count;
	if (template_param_count(body, &count, err) != 0)
		return NULL;
	if (nparams < (size_t)count) {
		hr_fail(err, HR_EINVAL, "template.parameters",
		        "template needs %d parameters, %zu given: {{%zu}} is missing", count,
		        nparams, nparams + 1);
		return NULL;
	}
	if (nparams > (size_t)count) {
		char field[64];
		snprintf(field, sizeof field, "template.parameters[%d]", count);
		hr_fail(err, HR_EINVAL, field,
		        "template takes %d parameters, %zu given: parameter %d is extra", count,
		        nparams, count + 1);
		return NULL;
	}
	size_t len = 1;
	for (const char *p = body; *p;) {
		const char *end;
		int idx = (p[0] == '{' && p[1] == '{') ? placeholder(p, &end) : -1;
		if (idx > 0) {
			len += strlen(params[idx - 1]);
			p = end;
		} else {
			len++, p++;
		}
	}
	char *out = malloc(len), *o = out;
	if (!out) {
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	for (const char *p = body; *p;) {
		const char *end;
		int idx = (p[0] == '{' && p[1] == '{') ? placeholder(p, &end) : -1;
		if (idx > 0) {
			size_t l = strlen(params[idx - 1]);
			memcpy(o, params[idx - 1], l);
			o += l;
			p = end;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}
