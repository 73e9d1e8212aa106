/*
 * datasource.h - external business databases ("data sources") that campaigns
 * and plugins read from and write back to: MariaDB/MySQL (libmariadb),
 * PostgreSQL and Redshift (libpq), and anything with an ODBC driver
 * (unixODBC: MSSQL through FreeTDS's tdsodbc, PostgreSQL's psqlODBC, ...).
 *
 * Config (src/core/config.h, hr_cfg_data_sources):
 *   data_sources:
 *     - name: billing              # [A-Za-z0-9_-], 1..63, unique
 *       driver: mariadb            # mariadb | postgres | redshift | odbc
 *       host: 127.0.0.1            # or socket: /run/mysqld/mysqld.sock
 *       port: 3306
 *       database: billing
 *       user: herald
 *       password: env:BILLING_PW   # env:/file: reference (a literal only for demos)
 *       dsn: "DSN=mssql"           # odbc only, instead of host/port/...: a DSN
 *                                  # name or a connection string; the password
 *                                  # is added as PWD={...}
 *       pool_size: 4               # connections at most [4], 1..64
 *       timeout_ms: 5000           # default bound of connect + query [5000]
 *       tenants: [acme]            # who may name it in a batch (none: nobody)
 *       queries:                   # the only SQL a tenant may run, by name
 *         due: "SELECT phone, name FROM payments WHERE due_date <= ?1"
 *
 * SQL and parameters. SQL comes only from config or from plugin code, never
 * from a tenant; values are always bound as parameters (?1..?n in the text,
 * rewritten per driver: $1 for libpq, ? in order for MariaDB and ODBC), never
 * pasted into the text. Placeholders inside '...', "...", `...`, $$...$$
 * and comments are left alone. Every value crosses as text; a NULL pointer
 * is SQL NULL both ways.
 *
 * Pool. Each source keeps at most pool_size connections, opened on demand;
 * a caller waits (within its timeout) for one to come back when all are in
 * use. A connection that failed (lost, timed out, cancelled) is closed, not
 * returned; an idle one the server closed (a killed session, a restart) is
 * noticed before use (its socket readable, or ODBC's SQL_ATTR_CONNECTION_DEAD)
 * and replaced, and a query that still finds its reused connection gone
 * before any row is retried once on a new one (ds_exec never retries).
 *
 * Timeouts. timeout_ms (<= 0: the source's) bounds the wait for a pooled
 * connection, the connect and the query together. libpq: non-blocking
 * connect and query with a deadline, PQcancel at the deadline. MariaDB:
 * MYSQL_OPT_CONNECT/READ/WRITE_TIMEOUT (whole seconds, rounded up). ODBC:
 * SQL_ATTR_LOGIN_TIMEOUT and SQL_ATTR_QUERY_TIMEOUT (whole seconds, rounded up).
 *
 * Errors: -1 and err = "data source \"billing\": <what>" (never the
 * password). Thread-safe: any number of threads may call ds_query/ds_exec at
 * once; ds_registry_open/close are not concurrent with them.
 */
#ifndef HR_DATASOURCE_H
#define HR_DATASOURCE_H

#include <stdbool.h>
#include <stddef.h>

struct ds_registry;
/* The loaded config's root as hr_config_load() returned it (a json_t *,
 * src/core/config.h), passed as this opaque type: (const struct config *)root. */
struct config;

/* Opens every configured source (no connection yet: they open on first use)
 * after checking the whole data_sources section. *out may be an empty
 * registry (no section). 0, or -1 with err naming the key; nothing is kept
 * on error. The passwords are held until ds_registry_close (wiped then). */
int ds_registry_open(const struct config *cfg, struct ds_registry **out, char *err, size_t errlen);
/* Closes every connection and wipes the passwords. NULL is fine. */
void ds_registry_close(struct ds_registry *r);

/* One row: names and values borrowed for the call only; values[i] NULL is
 * SQL NULL, else UTF-8 text. Return non-zero to stop (ds_query returns 0). */
typedef int (*ds_row_fn)(void *ctx, int ncols, const char *const *names, const char *const *values);

/* Parameterised query (placeholders ?1..?n translated per driver: $1 for libpq, ? for
 * MariaDB/ODBC); row() once per row (NULL value = SQL NULL), non-zero return stops early. 0, or -1
 * with err naming the source. timeout_ms bounds connect+query. Thread-safe (called from several
 * worker threads). */
int ds_query(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
             int nparams, int timeout_ms, ds_row_fn row, void *ctx, char *err, size_t errlen);
/* A statement without rows (INSERT/UPDATE/DELETE): *affected (may be NULL)
 * gets the rows it changed. Same rules as ds_query. Never retried. */
int ds_exec(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
            int nparams, int timeout_ms, long long *affected, char *err, size_t errlen);

/* --- For the campaign API: who may use a source, and its named queries. --- */

/* True if the source exists and lists tenant_id under tenants. */
bool ds_tenant_allowed(const struct ds_registry *r, const char *source, const char *tenant_id);
/* The SQL of the source's named query, or NULL. Borrowed until close. */
const char *ds_named_query(const struct ds_registry *r, const char *source, const char *name);
/* Number of configured sources. */
size_t ds_registry_count(const struct ds_registry *r);

/* Pool figures of a source, for tests and metrics: open connections (idle +
 * in use), the most ever open at once, and connections opened in all.
 * -1 if no such source. */
int ds_pool_stats(struct ds_registry *r, const char *source, int *open, int *peak,
                  long long *opened);

#endif
