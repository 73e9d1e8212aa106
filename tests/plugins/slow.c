/*
 * slow.c - a test plugin whose before_send and unit_stats take
 * plugins.config.slow.sleep_ms (default 1000 ms) and whose prepare takes
 * prepare_sleep_ms (default 0) before answering: before_send then allows,
 * unit_stats answers {"slept": "yes"}, prepare leaves the row as it is.
 */
#include <stdlib.h>
#include <time.h>

#include "herald/plugin.h"

static void nap_for(struct herald_ctx *c, const char *key, long def)
{
	const char *s = herald_config_get(c, key);
	long ms = s ? atol(s) : def;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void nap(struct herald_ctx *c)
{
	nap_for(c, "sleep_ms", 1000);
}

static int before(struct herald_ctx *c, const struct herald_msg *m, struct herald_verdict *v)
{
	(void)m;
	(void)v;
	nap(c);
	return HERALD_OK;
}

static int stats(struct herald_ctx *c, struct herald_kv *out)
{
	nap(c);
	return herald_kv_put(out, "slept", "yes");
}

static int prep(struct herald_ctx *c, const struct herald_record *r, struct herald_draft *d)
{
	(void)r;
	(void)d;
	nap_for(c, "prepare_sleep_ms", 0);
	return HERALD_OK;
}

HERALD_PLUGIN(.name = "slow", .version = "1", .before_send = before, .unit_stats = stats,
              .prepare = prep);
