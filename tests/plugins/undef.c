/* undef.c - a plugin calling a host function Herald does not have. */
#include "herald/plugin.h"

void herald_no_such_function(struct herald_ctx *c);

static int init(struct herald_ctx *c)
{
	herald_no_such_function(c);
	return HERALD_OK;
}

HERALD_PLUGIN(.name = "undef", .version = "1", .init = init);
