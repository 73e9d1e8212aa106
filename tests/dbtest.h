/*
 * dbtest.h - throwaway MariaDB servers (and an ODBC setup over a pgtest
 * PostgreSQL server) for the data-source tests; PostgreSQL itself is
 * tests/pgtest.h.
 *
 * mdbtest_start() runs Debian's own binaries (mariadb-server): with
 * MDBTEST_CACHE (else PGTEST_CACHE with "-mariadb" appended) naming a cache
 * directory, mariadb-install-db runs once and later starts copy its result
 * (mariadb-install-db is 5-8 s on a busy 2-core machine, the copy well under
 * one); then mariadbd in the foreground on a unix socket in a fresh
 * temporary directory and on a free 127.0.0.1 port, returning once it
 * accepts connections. root@localhost has no password (socket only). The
 * server gets PR_SET_PDEATHSIG(SIGKILL), so it dies with the test process
 * (call from the main thread); only the directory can stay behind then.
 *
 * Not thread-safe; call from the test's main thread.
 */
#ifndef HR_DBTEST_H
#define HR_DBTEST_H

#include <mysql.h>
#include <stdbool.h>
#include <sys/types.h>

#include "pgtest.h"

struct mdbtest {
	char dir[128];    /* temp dir: data/, sock, logs */
	char socket[160]; /* <dir>/sock */
	int port;         /* 127.0.0.1 */
	pid_t pid;        /* mariadbd; 0 once stopped */
	double start_ms;
	char err[1024];
};

/* 0, or -1 with m->err (and the server's log on stderr). */
int mdbtest_start(struct mdbtest *m);
/* Stops the server (SIGTERM, SIGKILL past 20 s) and removes the directory.
 * Safe to call twice. 0 or -1. */
int mdbtest_stop(struct mdbtest *m);
/* A root connection over the socket to database db (NULL: none);
 * CLIENT_MULTI_STATEMENTS on. NULL with m->err. mysql_close() it. */
MYSQL *mdbtest_connect(struct mdbtest *m, const char *db);
/* Runs sql (several statements allowed) as root; 0 or -1 with m->err. */
int mdbtest_sql(struct mdbtest *m, const char *sql);

/*
 * Writes <dir>/odbcinst.ini (driver "PostgreSQL Unicode" = Debian's
 * psqlodbcw.so) and <dir>/odbc.ini (DSN dsn_name -> pg's socket, port and
 * database "herald") and points unixODBC at them (ODBCSYSINI, ODBCINI). Call
 * before the first ODBC call of the process. 0, or -1 with err.
 */
int dbtest_odbc_setup(const struct pgtest *pg, const char *dir, const char *dsn_name, char *err,
                      size_t errlen);

#endif
