/*
 * abi1.c - a plugin built against the ABI 1 header as it was before 1.1's
 * additions (herald/plugin.h beside this file, a frozen copy of the
 * header at commit 242ebeb): it must still load and run on this Herald
 * (tests/unit/test_plugin.c test_abi1_plugin). Its source directory comes
 * first on the include path (#include "..."), so the frozen copy is the
 * one compiled against, never include/herald/plugin.h.
 *
 *  prepare:     param 0 becomes "abi1:<param 0>".
 *  before_send: recipients ending in 9 are skipped ("abi1 skips 9").
 */
#include <string.h>

#include "herald/plugin.h"

#if defined(HERALD_PLUGIN_ABI_MINOR)
#error "abi1.c must be built against the frozen ABI 1.0 header"
#endif

static int prep(struct herald_ctx *c, const struct herald_record *r, struct herald_draft *d)
{
	(void)r;
	if (herald_draft_param_count(d) < 1)
		return HERALD_OK;
	const char *p0 = herald_draft_param(d, 0);
	char *v = herald_alloc(c, strlen(p0) + 6);
	if (!v)
		return herald_fail(c, "no memory");
	strcpy(v, "abi1:");
	strcat(v, p0);
	return herald_draft_set_param(d, 0, v);
}

static int before(struct herald_ctx *c, const struct herald_msg *m, struct herald_verdict *v)
{
	(void)c;
	const char *to = herald_msg_recipient(m);
	size_t n = strlen(to);
	if (n && to[n - 1] == '9')
		return herald_verdict_skip(v, "abi1 skips 9");
	return HERALD_OK;
}

HERALD_PLUGIN(.name = "abi1", .version = "1.0", .prepare = prep, .before_send = before);
