/*
 * ds_mariadb.c - the libmariadb driver (MariaDB and MySQL): server-side
 * prepared statements (values never enter the SQL text), every value read
 * as text, rows streamed (no mysql_stmt_store_result: a large result is never
 * held whole), utf8mb4, LOAD DATA LOCAL off.
 *
 * Timeouts: libmariadb's connect, read and write timeouts are whole seconds
 * set when connecting; they are the source's timeout_ms rounded up, and a
 * read past them fails the statement and drops the connection. The call's
 * own timeout_ms still bounds the wait for a pooled connection and the
 * connect.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>
#include <errmsg.h>

#include "herald.h"
#include "plugins/ds_int.h"

/* Result cells grow to this at most; a longer value fails the statement. */
#define MDB_CELL_MAX (16u << 20)

static pthread_once_t mdb_once = PTHREAD_ONCE_INIT;
static int mdb_init_rc;

static void mdb_init(void)
{
	/* Not thread-safe itself, so once before any thread connects. */
	mdb_init_rc = mysql_library_init(0, NULL, NULL);
}

static unsigned secs_ceil(int ms)
{
	return ms <= 0 ? 1u : (unsigned)((ms + 999) / 1000);
}

struct mdb_conn {
	MYSQL *m;
	const struct hr_ds_conf *conf; /* for the KILL at a timeout */
};

static MYSQL *mdb_open(const struct hr_ds_conf *c, unsigned ct, unsigned rt, char *err,
                       size_t errlen)
{
	MYSQL *m = mysql_init(NULL);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	unsigned proto = c->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	my_bool off = 0;
	if (mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &ct) ||
	    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &rt) ||
	    mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &rt) ||
	    mysql_optionsv(m, MYSQL_OPT_PROTOCOL, &proto) ||
	    mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &off) ||
	    mysql_optionsv(m, MYSQL_OPT_RECONNECT, &off) ||
	    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4")) {
		snprintf(err, errlen, "setting connection options failed: %s", mysql_error(m));
		mysql_close(m);
		return NULL;
	}
	if (!mysql_real_connect(m, c->socket ? "localhost" : c->host, c->user, c->password,
	                        c->database, (unsigned)c->port, c->socket, 0)) {
		snprintf(err, errlen, "%s", mysql_error(m));
		mysql_close(m);
		return NULL;
	}
	return m;
}

static int mdb_connect(const struct hr_ds_conf *c, int64_t deadline_us, void **out, char *err,
                       size_t errlen)
{
	if (pthread_once(&mdb_once, mdb_init) != 0 || mdb_init_rc != 0) {
		snprintf(err, errlen, "libmariadb could not be initialised");
		return -1;
	}
	struct mdb_conn *mc = calloc(1, sizeof *mc);
	if (!mc) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	mc->conf = c;
	mc->m =
	    mdb_open(c, secs_ceil(ds_ms_left(deadline_us)), secs_ceil(c->timeout_ms), err, errlen);
	if (!mc->m) {
		free(mc);
		return -1;
	}
	*out = mc;
	return 0;
}

/* After a read timeout the server is still running the statement: end it
 * from a second, short-lived connection (best effort, 1 s). The thread id
 * is a number libmariadb gave, not text from anyone. */
static void mdb_kill(struct mdb_conn *mc)
{
	char err[256];
	unsigned long id = mysql_thread_id(mc->m);
	MYSQL *k = mdb_open(mc->conf, 1, 1, err, sizeof err);
	if (!k)
		return;
	if (mysql_kill(k, id)) {
		/* already gone, or not allowed: nothing more to do */
	}
	mysql_close(k);
}

static void mdb_close(void *conn)
{
	struct mdb_conn *mc = conn;
	mysql_close(mc->m);
	free(mc);
}

/* An idle connection has nothing to read; data or end of file means the
 * server closed it (KILL, wait_timeout, a restart). */
static bool mdb_alive(void *conn)
{
	MYSQL *m = ((struct mdb_conn *)conn)->m;
	struct pollfd p = {.fd = (int)mysql_get_socket(m), .events = POLLIN};
	if (p.fd < 0)
		return false;
	return poll(&p, 1, 0) == 0;
}

/* Client-side errors (CR_*, 2000..2999) are about the connection itself. */
static bool conn_error(unsigned e)
{
	return e >= 2000 && e < 3000;
}

static void stmt_err(MYSQL_STMT *st, const char *what, struct ds_call *call)
{
	unsigned e = mysql_stmt_errno(st);
	if (conn_error(e))
		call->broken = true;
	if (e == CR_SERVER_LOST && ds_ms_left(call->deadline_us) == 0)
		snprintf(call->err, call->errlen, "%s timed out after %d ms", what,
		         call->timeout_ms);
	else
		snprintf(call->err, call->errlen, "%s: %s (%u)", what, mysql_stmt_error(st), e);
}

struct mdb_cols {
	MYSQL_BIND *bind;
	unsigned long *len;
	my_bool *isnull;
	my_bool *trunc;
	char **buf;
	unsigned long *cap;
	const char **names;
	const char **vals;
	unsigned n;
};

static void cols_free(struct mdb_cols *c)
{
	for (unsigned i = 0; c->buf && i < c->n; i++)
		free(c->buf[i]);
	free(c->bind);
	free(c->len);
	free(c->isnull);
	free(c->trunc);
	free(c->buf);
	free(c->cap);
	free(c->names);
	free(c->vals);
}

static int cols_init(struct mdb_cols *c, MYSQL_RES *meta)
{
	c->n = mysql_num_fields(meta);
	size_t n = (size_t)c->n + 1;
	c->bind = calloc(n, sizeof *c->bind);
	c->len = calloc(n, sizeof *c->len);
	c->isnull = calloc(n, sizeof *c->isnull);
	c->trunc = calloc(n, sizeof *c->trunc);
	c->buf = calloc(n, sizeof *c->buf);
	c->cap = calloc(n, sizeof *c->cap);
	c->names = calloc(n, sizeof *c->names);
	c->vals = calloc(n, sizeof *c->vals);
	if (!c->bind || !c->len || !c->isnull || !c->trunc || !c->buf || !c->cap || !c->names ||
	    !c->vals)
		return -1;
	MYSQL_FIELD *f = mysql_fetch_fields(meta);
	for (unsigned i = 0; i < c->n; i++) {
		c->names[i] = f[i].name;
		c->cap[i] = 256;
		if (!(c->buf[i] = malloc(c->cap[i])))
			return -1;
		c->bind[i].buffer_type = MYSQL_TYPE_STRING;
		c->bind[i].buffer = c->buf[i];
		c->bind[i].buffer_length = c->cap[i] - 1; /* room for the NUL */
		c->bind[i].length = &c->len[i];
		c->bind[i].is_null = &c->isnull[i];
		c->bind[i].error = &c->trunc[i];
	}
	return 0;
}

static int mdb_rows(MYSQL_STMT *st, MYSQL_RES *meta, struct ds_call *call)
{
	struct mdb_cols c = {0};
	int rc = 0;
	if (cols_init(&c, meta) != 0) {
		snprintf(call->err, call->errlen, "out of memory");
		cols_free(&c);
		call->broken = true;
		return -1;
	}
	if (mysql_stmt_bind_result(st, c.bind)) {
		stmt_err(st, "binding the result", call);
		cols_free(&c);
		return -1;
	}
	for (;;) {
		int f = mysql_stmt_fetch(st);
		if (f == MYSQL_NO_DATA)
			break;
		if (f == 1) {
			stmt_err(st, "reading rows", call);
			rc = -1;
			break;
		}
		for (unsigned i = 0; rc == 0 && i < c.n; i++) {
			if (c.isnull[i]) {
				c.vals[i] = NULL;
				continue;
			}
			if (c.len[i] >= c.cap[i]) {
				/* Truncated (MYSQL_DATA_TRUNCATED): grow and read the
				 * column again. */
				if (c.len[i] >= MDB_CELL_MAX) {
					snprintf(call->err, call->errlen,
					         "column %s of row %lld is longer than %u bytes",
					         c.names[i], call->rows + 1, MDB_CELL_MAX);
					rc = -1;
					break;
				}
				char *nb = realloc(c.buf[i], c.len[i] + 1);
				if (!nb) {
					snprintf(call->err, call->errlen, "out of memory");
					rc = -1;
					break;
				}
				c.buf[i] = nb;
				c.cap[i] = c.len[i] + 1;
				c.bind[i].buffer = nb;
				c.bind[i].buffer_length = c.cap[i] - 1;
				if (mysql_stmt_fetch_column(st, &c.bind[i], i, 0)) {
					stmt_err(st, "reading a long value", call);
					rc = -1;
					break;
				}
			}
			c.buf[i][c.len[i]] = '\0';
			c.vals[i] = c.buf[i];
		}
		if (rc != 0)
			break;
		/* Long values made new buffers: bind them for the next rows. */
		if (f == MYSQL_DATA_TRUNCATED && mysql_stmt_bind_result(st, c.bind)) {
			stmt_err(st, "binding the result", call);
			rc = -1;
			break;
		}
		call->rows++;
		if (call->row(call->ctx, (int)c.n, c.names, c.vals) != 0)
			break; /* mysql_stmt_close() skips the rest */
	}
	cols_free(&c);
	return rc;
}

static int mdb_run(void *conn, struct ds_call *call)
{
	struct mdb_conn *mc = conn;
	MYSQL *m = mc->m;
	MYSQL_STMT *st = mysql_stmt_init(m);
	if (!st) {
		snprintf(call->err, call->errlen, "out of memory");
		call->broken = true;
		call->not_sent = true;
		return -1;
	}
	int rc = -1;
	MYSQL_BIND *pb = NULL;
	unsigned long *plen = NULL;
	my_bool *pnull = NULL;
	MYSQL_RES *meta = NULL;
	if (mysql_stmt_prepare(st, call->sql, strlen(call->sql))) {
		stmt_err(st, "preparing", call);
		call->not_sent = true; /* nothing runs before EXECUTE */
		goto out;
	}
	if (mysql_stmt_param_count(st) != (unsigned long)call->nparams) {
		snprintf(call->err, call->errlen, "the statement takes %lu parameters, %d given",
		         mysql_stmt_param_count(st), call->nparams);
		goto out;
	}
	size_t np = (size_t)call->nparams + 1;
	pb = calloc(np, sizeof *pb);
	plen = calloc(np, sizeof *plen);
	pnull = calloc(np, sizeof *pnull);
	if (!pb || !plen || !pnull) {
		snprintf(call->err, call->errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < call->nparams; i++) {
		const char *v = call->params[i];
		pb[i].buffer_type = MYSQL_TYPE_STRING;
		pb[i].buffer = (void *)(v ? v : "");
		plen[i] = v ? (unsigned long)strlen(v) : 0;
		pb[i].buffer_length = plen[i];
		pb[i].length = &plen[i];
		pnull[i] = v == NULL;
		pb[i].is_null = &pnull[i];
	}
	if (call->nparams > 0 && mysql_stmt_bind_param(st, pb)) {
		stmt_err(st, "binding parameters", call);
		goto out;
	}
	if (mysql_stmt_execute(st)) {
		stmt_err(st, "query", call);
		goto out;
	}
	meta = mysql_stmt_result_metadata(st);
	if (!meta) {
		if (mysql_stmt_errno(st)) {
			stmt_err(st, "reading the result", call);
			goto out;
		}
		my_ulonglong a = mysql_stmt_affected_rows(st);
		call->affected = a == (my_ulonglong)-1 ? 0 : (long long)a;
		rc = 0;
		goto out;
	}
	if (!call->row) {
		rc = 0; /* ds_exec of a statement with rows: they are skipped */
		goto out;
	}
	rc = mdb_rows(st, meta, call);
out:
	if (rc != 0 && mysql_stmt_errno(st) == CR_SERVER_LOST)
		mdb_kill(mc); /* a read timeout: the statement may still run */
	if (meta)
		mysql_free_result(meta);
	if (mysql_stmt_close(st))
		call->broken = true;
	free(pb);
	free(plen);
	free(pnull);
	return rc;
}

const struct ds_driver ds_driver_mariadb = {
    .name = "mariadb",
    .placeholders = DS_PH_QMARK,
    .connect = mdb_connect,
    .close = mdb_close,
    .alive = mdb_alive,
    .run = mdb_run,
};
