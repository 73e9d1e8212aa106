/*
 * ds_none.c - the data-source interface (datasource.h) with no driver:
 * every query answers "no data source named X". Stands in until
 * datasource.c provides these symbols; then this file is removed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "plugins/datasource.h"

struct ds_registry {
	int unused;
};

int ds_registry_open(const struct config *cfg, struct ds_registry **out, char *err, size_t errlen)
{
	(void)cfg;
	(void)err;
	(void)errlen;
	*out = calloc(1, sizeof **out);
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

void ds_registry_close(struct ds_registry *r)
{
	free(r);
}

int ds_query(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
             int nparams, int timeout_ms, ds_row_fn row, void *ctx, char *err, size_t errlen)
{
	(void)r, (void)sql, (void)params, (void)nparams, (void)timeout_ms, (void)row, (void)ctx;
	snprintf(err, errlen, "no data source named %s", source ? source : "(null)");
	return -1;
}

int ds_exec(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
            int nparams, int timeout_ms, long long *affected, char *err, size_t errlen)
{
	(void)r, (void)sql, (void)params, (void)nparams, (void)timeout_ms;
	if (affected)
		*affected = 0;
	snprintf(err, errlen, "no data source named %s", source ? source : "(null)");
	return -1;
}
