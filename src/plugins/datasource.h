/*
 * datasource.h - named external data sources (MariaDB/MySQL, PostgreSQL,
 * ODBC) that plugins query with parameters. The interface the plugin core
 * codes against; datasource*.c implements it (owned by the data-source
 * work), ds_none.c stands in with "no data source" until that lands.
 */
#ifndef HR_PLUGINS_DATASOURCE_H
#define HR_PLUGINS_DATASOURCE_H

#include <stddef.h>

struct ds_registry;
struct config; /* src/core/config.h */
int ds_registry_open(const struct config *cfg, struct ds_registry **out, char *err,
                     size_t errlen); /* *out may be an empty registry */
void ds_registry_close(struct ds_registry *r);
/* Runs a parameterised query (placeholders ?1..?n are translated per
 * driver), calls row() once per row with column names and values (NULL =
 * SQL NULL); row() returning non-zero stops early. Returns 0, or -1 with
 * err naming the source. timeout_ms bounds connect+query. */
typedef int (*ds_row_fn)(void *ctx, int ncols, const char *const *names, const char *const *values);
int ds_query(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
             int nparams, int timeout_ms, ds_row_fn row, void *ctx, char *err, size_t errlen);
/* Statement without rows (UPDATE/INSERT); *affected gets the row count. */
int ds_exec(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
            int nparams, int timeout_ms, long long *affected, char *err, size_t errlen);

#endif
