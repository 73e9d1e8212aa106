/*
 * pgtest.h - a throwaway PostgreSQL server for tests (unit and integration).
 *
 * pgtest_start() runs Debian's own server binaries (no service, no cluster
 * of the system's, nothing mocked): initdb into a fresh temporary directory
 * (trust auth, UTF8, C locale, no fsync), then `postgres` in the foreground,
 * listening on a unix socket in that directory and on a free 127.0.0.1 port,
 * and returns once it accepts connections, with a database "herald" created.
 *
 * Process layout: the test process forks a small supervisor, which owns the
 * server (initdb and postgres are its children) and holds the read end of a
 * "lifeline" pipe whose write end only the test process holds (O_CLOEXEC, so
 * the gateways, simulators and other programs a test starts do not keep it).
 * When the pipe reaches end of file - pgtest_stop() closed it, or the test
 * process died in any way, SIGKILL and failed assertions included - the
 * supervisor shuts the server down (SIGINT = fast shutdown, SIGQUIT then
 * SIGKILL past a deadline), removes the directory and exits. The server
 * itself has PR_SET_PDEATHSIG(SIGQUIT) on the supervisor (single-threaded,
 * so the signal is reliable), so it also goes if the supervisor is killed
 * (a kill of the whole process tree: then only the directory stays, in /tmp).
 *
 * As root (CI): initdb and postgres refuse to run as root, so both run as
 * the `postgres` user the Debian package creates (`nobody` when there is
 * none; PGTEST_USER=name chooses another), with the directory chowned to it.
 * The test process connects over the unix socket (directory mode 0755) or
 * over TCP 127.0.0.1 with trust authentication, as the database superuser
 * "herald" (initdb -U herald), whatever its own OS user is.
 *
 * Binaries: $PGTEST_BINDIR, else `pg_config --bindir`, else the newest
 * /usr/lib/postgresql/N/bin, else the PATH; the directory must hold initdb
 * and postgres (`scripts/deps.sh test` installs them).
 *
 * Speed: initdb is most of a start (1.5-3 s on a busy 2-core machine). With
 * PGTEST_CACHE set (CTest sets it to <build>/pgtest-cache), the first start
 * keeps a copy of initdb's result there, keyed by the postgres binary, the
 * server's user and initdb's options, and later starts (any test process)
 * copy it instead (under 1 s in all). Without it, every start runs initdb.
 *
 * Not thread-safe; call from the test's main thread. A test process that
 * forks without exec while a server runs keeps the lifeline open in that
 * child until it exits, so pgtest_stop() waits for such children.
 */
#ifndef HR_PGTEST_H
#define HR_PGTEST_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

struct pgtest {
	char dir[128];         /* temp dir: data/, the unix socket, logs */
	char bindir[256];      /* where initdb and postgres were found */
	int port;              /* TCP port on 127.0.0.1 (and the socket's number) */
	char dbname[32];       /* "herald" */
	char user[32];         /* "herald", a superuser */
	char conninfo[320];    /* host=<dir> port=<port> dbname=herald user=herald */
	char conninfo_tcp[96]; /* the same over host=127.0.0.1 */
	pid_t server_pid;      /* the postmaster (from data/postmaster.pid) */
	pid_t supervisor;      /* 0 once stopped */
	int lifeline;          /* write end of the supervisor's pipe; -1 once stopped */
	double start_ms;       /* how long pgtest_start took */
	bool durable;          /* pgtest_start_with: fsync, default WAL segments */
	const char *settings[8]; /* pgtest_start_with: extra "name=value" (-c) */
	char err[1024];        /* why start/stop/createdb failed */
};

/* Starts a server as described above. Returns 0, or -1 with pg->err set
 * (and the server's or initdb's log on stderr). */
int pgtest_start(struct pgtest *pg);

/* The same, for a benchmark: with durable, the server runs with PostgreSQL's
 * defaults for durability (fsync, synchronous_commit and full_page_writes
 * on, initdb's default 16 MB WAL segments, no cached initdb result), and
 * settings (up to 8 "name=value" strings, NULL-terminated if fewer; may be
 * NULL) are passed to the server with -c, after the built-in ones. */
int pgtest_start_with(struct pgtest *pg, bool durable, const char *const *settings);

/* Stops the server (fast shutdown) and removes the directory; waits for both.
 * Returns 0 if the server shut down cleanly, -1 otherwise (pg->err). Safe to
 * call twice. */
int pgtest_stop(struct pgtest *pg);

/* Stops the server (fast shutdown: every connection is closed) and keeps
 * its data; returns once it no longer answers. 0 or -1 (pg->err). */
int pgtest_server_down(struct pgtest *pg);

/* Starts a server stopped by pgtest_server_down again, on the same port,
 * socket and data; returns once it accepts connections. 0 or -1. */
int pgtest_server_up(struct pgtest *pg);

/* A new connection to database dbname (NULL: pg->dbname) over the unix
 * socket; NULL with pg->err set on failure. PQfinish it. */
PGconn *pgtest_connect(struct pgtest *pg, const char *dbname);

/* CREATE DATABASE name (e.g. one fresh database per test). 0 or -1. */
int pgtest_createdb(struct pgtest *pg, const char *name);

/* Writes the unix-socket connection string for database dbname into buf. */
void pgtest_conninfo(const struct pgtest *pg, const char *dbname, char *buf, size_t len);

#endif
