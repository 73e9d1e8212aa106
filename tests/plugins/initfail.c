/* initfail.c - a plugin whose init fails (its data is unreachable). */
#include "herald/plugin.h"

static int init(struct herald_ctx *c)
{
	return herald_fail(c, "database %s unreachable",
	                   herald_config_get(c, "db") ? herald_config_get(c, "db") : "?");
}

HERALD_PLUGIN(.name = "initfail", .version = "1", .init = init);
