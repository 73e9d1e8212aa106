/*
 * template.h - message templates: a body with numbered placeholders {{1}},
 * {{2}}, ... as WhatsApp uses them. Rendering checks that exactly the
 * declared parameters are given, so a missing or extra one is a clear 422
 * before anything reaches a provider.
 */
#ifndef HR_TEMPLATE_H
#define HR_TEMPLATE_H

#include <stddef.h>

#include "herald.h"

/* Number of distinct placeholders {{1}}..{{n}} in body (the highest index);
 * HR_EINVAL if indexes are not 1..n without gaps or a placeholder is malformed. */
int template_param_count(const char *body, int *count, struct hr_err *err);

/* Renders body with params[0..nparams-1]. Returns a heap string (caller frees)
 * or NULL with err naming "template.parameters[i]" or the missing index. */
char *template_render(const char *body, const char *const *params, size_t nparams,
                      struct hr_err *err);

#endif
