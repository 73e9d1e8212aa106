/*
 * ds_int.h - what the data-source core (datasource.c) and its drivers
 * (ds_pg.c, ds_mariadb.c, ds_odbc.c) share: a driver is one file filling one
 * struct ds_driver, the way a store backend fills struct store.
 */
#ifndef HR_DS_INT_H
#define HR_DS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "plugins/datasource.h"

/* One statement on one connection. The driver fills affected, rows and the
 * flags; err gets the driver's text (the core adds the source's name). */
struct ds_call {
	const char *sql;           /* already translated for the driver */
	const char *const *params; /* in the order the driver binds them */
	int nparams;
	int64_t deadline_us; /* hr_mono_us() clock */
	int timeout_ms;      /* for messages and whole-second timeouts */
	ds_row_fn row;       /* NULL: ds_exec */
	void *ctx;
	long long affected;
	long long rows; /* rows handed to row() */
	bool broken;    /* the connection must be closed, not pooled */
	bool not_sent;  /* failed before the statement could have run */
	char *err;
	size_t errlen;
};

enum ds_placeholder {
	DS_PH_DOLLAR, /* $1..$n (libpq) */
	DS_PH_QMARK,  /* ? bound in order of appearance (MariaDB, ODBC) */
};

struct ds_driver {
	const char *name;
	enum ds_placeholder placeholders;
	/* Opens a connection by deadline_us. 0 and *out, or -1 with err. */
	int (*connect)(const struct hr_ds_conf *c, int64_t deadline_us, void **out, char *err,
	               size_t errlen);
	void (*close)(void *conn);
	/* Cheap check of an idle pooled connection (no round trip where the
	 * driver allows): false when the server has closed it. */
	bool (*alive)(void *conn);
	/* Runs one statement: 0, or -1 with call->err (and broken/not_sent). */
	int (*run)(void *conn, struct ds_call *call);
};

extern const struct ds_driver ds_driver_pg;
extern const struct ds_driver ds_driver_mariadb;
extern const struct ds_driver ds_driver_odbc;

/*
 * Rewrites ?1..?n in sql for a driver: "$N" for DS_PH_DOLLAR, "?" for
 * DS_PH_QMARK with order[k] = N-1 for the k-th placeholder. Quoted text
 * ('..' with '' and \ escapes, "..", `..`, $tag$..$tag$) and comments are
 * copied as they are. Every N must be 1..nparams. *out (malloc) and *order
 * (malloc, *norder entries; NULL when none) are the caller's. 0, or -1 with
 * err.
 */
int ds_sql_translate(const char *sql, enum ds_placeholder ph, int nparams, char **out, int **order,
                     int *norder, char *err, size_t errlen);

/* Milliseconds left until deadline_us (0 when past). */
int ds_ms_left(int64_t deadline_us);
/* Waits for fd to be readable (events POLLIN) or writable (POLLOUT) until
 * deadline_us: 1 ready, 0 timed out, -1 error. */
int ds_wait_fd(int fd, short events, int64_t deadline_us);

#endif
