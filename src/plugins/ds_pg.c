/*
 * ds_pg.c - the libpq driver (PostgreSQL and Redshift): a non-blocking
 * connect and query, each bounded by the call's deadline, PQcancel at the
 * deadline, rows read one at a time (single-row mode) so a large result is
 * never held whole.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "herald.h"
#include "plugins/ds_int.h"

static void pg_errtext(PGconn *c, const char *what, char *err, size_t errlen)
{
	const char *m = c ? PQerrorMessage(c) : "out of memory";
	size_t n = strlen(m);
	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(err, errlen, "%s: %.*s", what, (int)n, m);
}

/* Server notices (a NOTICE from a function, the FATAL before a backend
 * goes) would go to stderr; the errors that matter reach the caller. */
static void pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static int pg_connect(const struct hr_ds_conf *c, int64_t deadline_us, void **out, char *err,
                      size_t errlen)
{
	const char *keys[12], *vals[12];
	char port[8], ct[16], app[80];
	int k = 0;
	keys[k] = "host";
	vals[k++] = c->socket ? c->socket : c->host;
	if (c->port) {
		snprintf(port, sizeof port, "%d", c->port);
		keys[k] = "port";
		vals[k++] = port;
	}
	keys[k] = "dbname";
	vals[k++] = c->database;
	if (c->user) {
		keys[k] = "user";
		vals[k++] = c->user;
	}
	if (c->password) {
		keys[k] = "password";
		vals[k++] = c->password;
	}
	/* A backstop only: the deadline below is what bounds the connect. */
	snprintf(ct, sizeof ct, "%d", (ds_ms_left(deadline_us) + 999) / 1000 + 1);
	keys[k] = "connect_timeout";
	vals[k++] = ct;
	keys[k] = "client_encoding";
	vals[k++] = "UTF8";
	/* herald/<source>: a DBA sees who holds each session. */
	snprintf(app, sizeof app, "herald/%s", c->name);
	keys[k] = "application_name";
	vals[k++] = app;
	keys[k] = NULL;
	vals[k] = NULL;

	PGconn *pg = PQconnectStartParams(keys, vals, 0);
	if (!pg || PQstatus(pg) == CONNECTION_BAD) {
		pg_errtext(pg, "connect", err, errlen);
		PQfinish(pg);
		return -1;
	}
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED) {
			pg_errtext(pg, "connect", err, errlen);
			PQfinish(pg);
			return -1;
		}
		int w = ds_wait_fd(PQsocket(pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		                   deadline_us);
		if (w <= 0) {
			snprintf(err, errlen, "connect: %s", w == 0 ? "timed out" : "poll failed");
			PQfinish(pg);
			return -1;
		}
		st = PQconnectPoll(pg);
	}
	PQsetNoticeProcessor(pg, pg_quiet, NULL);
	if (PQsetnonblocking(pg, 1) != 0) {
		pg_errtext(pg, "connect", err, errlen);
		PQfinish(pg);
		return -1;
	}
	*out = pg;
	return 0;
}

static void pg_close(void *conn)
{
	PQfinish(conn);
}

/* An idle connection has nothing to read: data (the FATAL a terminated
 * backend sends) or end of file means the server is done with it. */
static bool pg_alive(void *conn)
{
	PGconn *pg = conn;
	if (PQstatus(pg) != CONNECTION_OK)
		return false;
	struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
	if (p.fd < 0)
		return false;
	/* Anything readable (almost always the FATAL of a terminated backend,
	 * then end of file) retires it: a new connection costs less than a
	 * statement failing on this one. */
	return poll(&p, 1, 0) == 0;
}

/* Waits until libpq has a whole result (or none) to hand out; 0, or -1 with
 * the call's error set (cancelled at the deadline). */
static int pg_wait(PGconn *pg, struct ds_call *call)
{
	for (;;) {
		if (PQflush(pg) < 0) {
			pg_errtext(pg, "query", call->err, call->errlen);
			call->broken = true;
			return -1;
		}
		if (!PQisBusy(pg))
			return 0;
		int w = ds_wait_fd(PQsocket(pg), POLLIN, call->deadline_us);
		if (w == 0) {
			PGcancel *cn = PQgetCancel(pg);
			char buf[256];
			if (cn) {
				if (!PQcancel(cn, buf, sizeof buf))
					buf[0] = '\0';
				PQfreeCancel(cn);
			}
			snprintf(call->err, call->errlen, "query timed out after %d ms (cancelled)",
			         call->timeout_ms);
			call->broken = true;
			return -1;
		}
		if (w < 0 || !PQconsumeInput(pg)) {
			pg_errtext(pg, "query", call->err, call->errlen);
			call->broken = true;
			return -1;
		}
	}
}

static int pg_run(void *conn, struct ds_call *call)
{
	PGconn *pg = conn;
	if (!PQsendQueryParams(pg, call->sql, call->nparams, NULL, call->params, NULL, NULL, 0)) {
		pg_errtext(pg, "query", call->err, call->errlen);
		call->broken = true;
		call->not_sent = true;
		return -1;
	}
	if (call->row && !PQsetSingleRowMode(pg)) {
		snprintf(call->err, call->errlen, "query: single-row mode refused");
		call->broken = true;
		return -1;
	}
	int rc = 0;
	bool stopped = false;
	const char **names = NULL, **vals = NULL;
	int nf = 0;
	for (;;) {
		if (pg_wait(pg, call) != 0) {
			if (!stopped)
				rc = -1; /* else the rows asked for were all handed out */
			break;
		}
		PGresult *res = PQgetResult(pg);
		if (!res)
			break;
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_SINGLE_TUPLE && rc == 0 && !stopped) {
			if (!names) {
				nf = PQnfields(res);
				names = calloc((size_t)nf + 1, sizeof *names);
				vals = calloc((size_t)nf + 1, sizeof *vals);
				if (!names || !vals) {
					snprintf(call->err, call->errlen, "out of memory");
					rc = -1;
					call->broken = true; /* the rest is not read */
				}
			}
			if (rc == 0) {
				/* Names and values point into this row's result. */
				for (int i = 0; i < nf; i++) {
					names[i] = PQfname(res, i);
					vals[i] =
					    PQgetisnull(res, 0, i) ? NULL : PQgetvalue(res, 0, i);
				}
				call->rows++;
				if (call->row(call->ctx, nf, names, vals) != 0) {
					/* Stop the server sending the rest; what is
					 * already on the way is read and dropped. */
					stopped = true;
					PGcancel *cn = PQgetCancel(pg);
					char buf[256];
					if (cn) {
						if (!PQcancel(cn, buf, sizeof buf))
							buf[0] = '\0';
						PQfreeCancel(cn);
					}
				}
			}
		} else if (st == PGRES_COMMAND_OK) {
			call->affected = atoll(PQcmdTuples(res));
		} else if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
		           st == PGRES_NONFATAL_ERROR) {
			if (stopped) {
				/* the cancel we sent after the caller stopped */
			} else if (rc == 0) {
				const char *m = PQresultErrorMessage(res);
				size_t n = strlen(m);
				while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
					n--;
				snprintf(call->err, call->errlen, "query: %.*s", (int)n, m);
				rc = -1;
			} else {
				rc = -1;
			}
		}
		PQclear(res);
		if (call->broken)
			break;
	}
	free(names);
	free(vals);
	if (PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) != PQTRANS_IDLE)
		call->broken = true; /* lost, or a transaction left open */
	return rc;
}

const struct ds_driver ds_driver_pg = {
    .name = "postgres",
    .placeholders = DS_PH_DOLLAR,
    .connect = pg_connect,
    .close = pg_close,
    .alive = pg_alive,
    .run = pg_run,
};
