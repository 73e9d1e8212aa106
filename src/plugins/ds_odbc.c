/*
 * ds_odbc.c - the unixODBC driver (MSSQL through FreeTDS's tdsodbc, and any
 * other ODBC driver; tested with PostgreSQL's psqlODBC). Text crosses as
 * wide characters (SQL_C_WCHAR, UTF-16 in unixODBC) converted to and from
 * UTF-8 here, so values do not depend on the driver's idea of the locale.
 *
 * Timeouts: SQL_ATTR_LOGIN_TIMEOUT and SQL_ATTR_QUERY_TIMEOUT, whole seconds
 * rounded up from what is left of the call's timeout_ms.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sql.h>
#include <sqlext.h>
#include <sqlucode.h>

#include "herald.h"
#include "plugins/ds_int.h"

#define ODBC_CELL_MAX (16u << 20)

static pthread_once_t odbc_once = PTHREAD_ONCE_INIT;
static SQLHENV odbc_env = SQL_NULL_HENV;

static void odbc_init(void)
{
	SQLHENV env;
	if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env)))
		return;
	if (!SQL_SUCCEEDED(
	        SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, (SQLPOINTER)SQL_OV_ODBC3, 0))) {
		SQLFreeHandle(SQL_HANDLE_ENV, env);
		return;
	}
	odbc_env = env;
}

/* ---- UTF-8 <-> UTF-16 (SQLWCHAR is 16 bits in unixODBC) ---- */

/* A malloc'd NUL-terminated UTF-16 copy of s; *units gets its length. Bytes
 * that are not UTF-8 become U+FFFD. */
static SQLWCHAR *to_w(const char *s, size_t *units)
{
	size_t n = strlen(s);
	SQLWCHAR *w = malloc((n * 2 + 1) * sizeof *w);
	size_t k = 0;
	if (!w)
		return NULL;
	const unsigned char *p = (const unsigned char *)s, *e = p + n;
	while (p < e) {
		unsigned cp = 0xFFFD;
		int len = 1;
		if (p[0] < 0x80) {
			cp = p[0];
		} else if ((p[0] & 0xE0) == 0xC0 && e - p >= 2 && (p[1] & 0xC0) == 0x80) {
			cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
			len = cp >= 0x80 ? 2 : 1;
			if (len == 1)
				cp = 0xFFFD;
		} else if ((p[0] & 0xF0) == 0xE0 && e - p >= 3 && (p[1] & 0xC0) == 0x80 &&
		           (p[2] & 0xC0) == 0x80) {
			cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
			len = 3;
			if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
				cp = 0xFFFD;
		} else if ((p[0] & 0xF8) == 0xF0 && e - p >= 4 && (p[1] & 0xC0) == 0x80 &&
		           (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80) {
			cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) |
			     ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
			len = 4;
			if (cp < 0x10000 || cp > 0x10FFFF)
				cp = 0xFFFD;
		}
		p += len;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			w[k++] = (SQLWCHAR)(0xD800 + (cp >> 10));
			w[k++] = (SQLWCHAR)(0xDC00 + (cp & 0x3FF));
		} else {
			w[k++] = (SQLWCHAR)cp;
		}
	}
	w[k] = 0;
	if (units)
		*units = k;
	return w;
}

/* UTF-8 of n UTF-16 units appended to a growing buffer. 0 or -1 (memory). */
struct u8buf {
	char *p;
	size_t len, cap;
};

static int u8_put(struct u8buf *b, const SQLWCHAR *w, size_t n)
{
	if (b->len + n * 3 + 1 > b->cap) {
		size_t cap = (b->len + n * 3 + 1) * 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned cp = w[i];
		if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < n && w[i + 1] >= 0xDC00 &&
		    w[i + 1] <= 0xDFFF) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (w[i + 1] - 0xDC00u);
			i++;
		} else if (cp >= 0xD800 && cp <= 0xDFFF) {
			cp = 0xFFFD;
		}
		/* 4 bytes only from 2 units: still within n * 3 */
		b->len += hr_utf8_put(b->p + b->len, cp);
	}
	b->p[b->len] = '\0';
	return 0;
}

/* The first diagnostic record of a handle: "SQLSTATE: text". *state gets the
 * SQLSTATE ("08S01"). */
static void diag(SQLSMALLINT type, SQLHANDLE h, const char *what, char *err, size_t errlen,
                 char state[6])
{
	SQLCHAR st[6] = "", msg[512] = "";
	SQLINTEGER native = 0;
	SQLSMALLINT len = 0;
	if (!SQL_SUCCEEDED(SQLGetDiagRec(type, h, 1, st, &native, msg, sizeof msg, &len)))
		snprintf((char *)msg, sizeof msg, "no diagnostic from the driver");
	size_t n = strlen((char *)msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	snprintf(err, errlen, "%s: %s: %s", what, st[0] ? (char *)st : "?????", (char *)msg);
	if (state)
		memcpy(state, st, 6);
}

struct odbc_conn {
	SQLHDBC dbc;
};

/* Appends ;key=value to a connection string: as written when it is plain,
 * else as {value} with '}' doubled (ODBC's quoting; psqlODBC, for one, does
 * not undo braces around a plain value). */
static int cs_add(char *cs, size_t cap, size_t *len, const char *key, const char *val)
{
	size_t vl = strlen(val);
	bool brace = vl == 0 || val[0] == ' ' || val[vl - 1] == ' ' || strpbrk(val, ";{}=") != NULL;
	int n = snprintf(cs + *len, cap - *len, ";%s=%s", key, brace ? "{" : "");
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	for (const char *p = val; *p; p++) {
		if (*len + 3 >= cap)
			return -1;
		cs[(*len)++] = *p;
		if (brace && *p == '}')
			cs[(*len)++] = '}';
	}
	if (*len + 2 >= cap)
		return -1;
	if (brace)
		cs[(*len)++] = '}';
	cs[*len] = '\0';
	return 0;
}

static int odbc_connect(const struct hr_ds_conf *c, int64_t deadline_us, void **out, char *err,
                        size_t errlen)
{
	if (pthread_once(&odbc_once, odbc_init) != 0 || odbc_env == SQL_NULL_HENV) {
		snprintf(err, errlen, "the ODBC environment could not be set up");
		return -1;
	}
	struct odbc_conn *oc = calloc(1, sizeof *oc);
	if (!oc || !SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_DBC, odbc_env, &oc->dbc))) {
		free(oc);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	SQLULEN secs = (SQLULEN)((ds_ms_left(deadline_us) + 999) / 1000);
	if (secs == 0)
		secs = 1;
	if (!SQL_SUCCEEDED(
	        SQLSetConnectAttr(oc->dbc, SQL_ATTR_LOGIN_TIMEOUT, (SQLPOINTER)secs, 0))) {
		/* Some drivers refuse it: the connect is then bounded by theirs. */
	}
	char cs[8192];
	size_t len = (size_t)snprintf(cs, sizeof cs, "%s", c->dsn);
	int rc = len < sizeof cs ? 0 : -1;
	if (rc == 0 && c->user)
		rc = cs_add(cs, sizeof cs, &len, "UID", c->user);
	if (rc == 0 && c->password)
		rc = cs_add(cs, sizeof cs, &len, "PWD", c->password);
	if (rc != 0) {
		explicit_bzero(cs, sizeof cs);
		SQLFreeHandle(SQL_HANDLE_DBC, oc->dbc);
		free(oc);
		snprintf(err, errlen, "the connection string is too long");
		return -1;
	}
	SQLCHAR outcs[1024];
	SQLSMALLINT outlen = 0;
	SQLRETURN r = SQLDriverConnect(oc->dbc, NULL, (SQLCHAR *)cs, SQL_NTS, outcs, sizeof outcs,
	                               &outlen, SQL_DRIVER_NOPROMPT);
	explicit_bzero(cs, sizeof cs);
	explicit_bzero(outcs, sizeof outcs); /* the completed string holds PWD too */
	if (!SQL_SUCCEEDED(r)) {
		diag(SQL_HANDLE_DBC, oc->dbc, "connect", err, errlen, NULL);
		SQLFreeHandle(SQL_HANDLE_DBC, oc->dbc);
		free(oc);
		return -1;
	}
	*out = oc;
	return 0;
}

static void odbc_close(void *conn)
{
	struct odbc_conn *oc = conn;
	SQLDisconnect(oc->dbc);
	SQLFreeHandle(SQL_HANDLE_DBC, oc->dbc);
	free(oc);
}

/* ODBC has no way to look at the socket: ask the driver (psqlODBC and
 * FreeTDS know a connection they saw fail); a connection the server closed
 * while idle is otherwise found by the statement, and retried. */
static bool odbc_alive(void *conn)
{
	struct odbc_conn *oc = conn;
	SQLUINTEGER dead = SQL_CD_FALSE;
	if (!SQL_SUCCEEDED(SQLGetConnectAttr(oc->dbc, SQL_ATTR_CONNECTION_DEAD, &dead, 0, NULL)))
		return true;
	return dead != SQL_CD_TRUE;
}

static void stmt_fail(SQLHSTMT st, const char *what, struct ds_call *call)
{
	char state[6] = "";
	diag(SQL_HANDLE_STMT, st, what, call->err, call->errlen, state);
	/* 08xxx: the connection failed; HYT00/HYT01: timed out (the driver may
	 * leave it mid-statement). */
	if (!strncmp(state, "08", 2) || !strncmp(state, "HYT", 3) || !strcmp(state, "57P01"))
		call->broken = true;
	if (!strncmp(state, "HYT", 3) || strstr(call->err, "statement timeout") ||
	    strstr(call->err, "canceling statement"))
		snprintf(call->err, call->errlen, "query timed out after %d ms", call->timeout_ms);
}

static int odbc_rows(SQLHSTMT st, SQLSMALLINT ncols, struct ds_call *call)
{
	int rc = 0;
	size_t n = (size_t)ncols + 1;
	char **names = calloc(n, sizeof *names);
	struct u8buf *cells = calloc(n, sizeof *cells);
	const char **vals = calloc(n, sizeof *vals);
	SQLWCHAR chunk[2048];
	if (!names || !cells || !vals) {
		snprintf(call->err, call->errlen, "out of memory");
		rc = -1;
		goto out;
	}
	for (SQLSMALLINT i = 0; i < ncols; i++) {
		SQLWCHAR wn[256];
		SQLSMALLINT wl = 0, type, dec, nullable;
		SQLULEN size;
		if (!SQL_SUCCEEDED(SQLDescribeColW(st, (SQLUSMALLINT)(i + 1), wn, 256, &wl, &type,
		                                   &size, &dec, &nullable))) {
			stmt_fail(st, "describing the result", call);
			rc = -1;
			goto out;
		}
		struct u8buf b = {0};
		if (wl > 255)
			wl = 255;
		if (u8_put(&b, wn, (size_t)wl) != 0) {
			snprintf(call->err, call->errlen, "out of memory");
			rc = -1;
			goto out;
		}
		names[i] = b.p;
	}
	for (;;) {
		SQLRETURN f = SQLFetch(st);
		if (f == SQL_NO_DATA)
			break;
		if (!SQL_SUCCEEDED(f)) {
			stmt_fail(st, "reading rows", call);
			rc = -1;
			break;
		}
		for (SQLSMALLINT i = 0; rc == 0 && i < ncols; i++) {
			cells[i].len = 0;
			vals[i] = NULL;
			for (;;) {
				SQLLEN ind = 0;
				SQLRETURN g = SQLGetData(st, (SQLUSMALLINT)(i + 1), SQL_C_WCHAR,
				                         chunk, sizeof chunk, &ind);
				if (g == SQL_NO_DATA)
					break;
				if (!SQL_SUCCEEDED(g)) {
					stmt_fail(st, "reading a value", call);
					rc = -1;
					break;
				}
				if (ind == SQL_NULL_DATA)
					break;
				/* Whole units in the buffer, less the terminator when
				 * the value continues (SQL_SUCCESS_WITH_INFO, 01004). */
				size_t units = sizeof chunk / sizeof chunk[0] - 1;
				if (ind != SQL_NO_TOTAL && (size_t)ind / sizeof(SQLWCHAR) < units)
					units = (size_t)ind / sizeof(SQLWCHAR);
				if (cells[i].len + units * 3 > ODBC_CELL_MAX) {
					snprintf(call->err, call->errlen,
					         "a value of row %lld is longer than %u bytes",
					         call->rows + 1, ODBC_CELL_MAX);
					rc = -1;
					break;
				}
				if (u8_put(&cells[i], chunk, units) != 0) {
					snprintf(call->err, call->errlen, "out of memory");
					rc = -1;
					break;
				}
				vals[i] = cells[i].p;
				if (g == SQL_SUCCESS)
					break;
			}
		}
		if (rc != 0)
			break;
		call->rows++;
		if (call->row(call->ctx, ncols, (const char *const *)names, vals) != 0)
			break;
	}
out:
	for (size_t i = 0; names && i < (size_t)ncols; i++)
		free(names[i]);
	for (size_t i = 0; cells && i < (size_t)ncols; i++)
		free(cells[i].p);
	free(names);
	free(cells);
	free(vals);
	return rc;
}

static int odbc_run(void *conn, struct ds_call *call)
{
	struct odbc_conn *oc = conn;
	SQLHSTMT st = SQL_NULL_HSTMT;
	SQLWCHAR **pw = NULL;
	SQLLEN *pind = NULL;
	SQLWCHAR *wsql = NULL;
	int rc = -1;
	if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, oc->dbc, &st))) {
		char state[6] = "";
		diag(SQL_HANDLE_DBC, oc->dbc, "query", call->err, call->errlen, state);
		call->broken = true;
		call->not_sent = true;
		return -1;
	}
	SQLULEN secs = (SQLULEN)((ds_ms_left(call->deadline_us) + 999) / 1000);
	if (secs == 0)
		secs = 1;
	if (!SQL_SUCCEEDED(SQLSetStmtAttr(st, SQL_ATTR_QUERY_TIMEOUT, (SQLPOINTER)secs, 0))) {
		stmt_fail(st, "setting the query timeout", call);
		goto out;
	}
	size_t wl;
	if (!(wsql = to_w(call->sql, &wl))) {
		snprintf(call->err, call->errlen, "out of memory");
		goto out;
	}
	if (!SQL_SUCCEEDED(SQLPrepareW(st, wsql, (SQLINTEGER)wl))) {
		stmt_fail(st, "preparing", call);
		call->not_sent = true;
		goto out;
	}
	size_t np = (size_t)call->nparams + 1;
	pw = calloc(np, sizeof *pw);
	pind = calloc(np, sizeof *pind);
	if (!pw || !pind) {
		snprintf(call->err, call->errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < call->nparams; i++) {
		size_t units = 0;
		const char *v = call->params[i];
		if (!(pw[i] = to_w(v ? v : "", &units))) {
			snprintf(call->err, call->errlen, "out of memory");
			goto out;
		}
		pind[i] = v ? (SQLLEN)(units * sizeof(SQLWCHAR)) : SQL_NULL_DATA;
		if (!SQL_SUCCEEDED(
		        SQLBindParameter(st, (SQLUSMALLINT)(i + 1), SQL_PARAM_INPUT, SQL_C_WCHAR,
		                         SQL_WVARCHAR, units > 0 ? units : 1, 0, pw[i],
		                         (SQLLEN)((units + 1) * sizeof(SQLWCHAR)), &pind[i]))) {
			stmt_fail(st, "binding parameters", call);
			goto out;
		}
	}
	SQLRETURN x = SQLExecute(st);
	if (x != SQL_NO_DATA && !SQL_SUCCEEDED(x)) {
		stmt_fail(st, "query", call);
		goto out;
	}
	SQLSMALLINT ncols = 0;
	if (!SQL_SUCCEEDED(SQLNumResultCols(st, &ncols))) {
		stmt_fail(st, "reading the result", call);
		goto out;
	}
	if (ncols == 0) {
		SQLLEN n = 0;
		if (x != SQL_NO_DATA && !SQL_SUCCEEDED(SQLRowCount(st, &n))) {
			stmt_fail(st, "reading the row count", call);
			goto out;
		}
		call->affected = n < 0 ? 0 : (long long)n;
		rc = 0;
		goto out;
	}
	rc = call->row ? odbc_rows(st, ncols, call) : 0;
out:
	/* Some drivers report a lost connection with a general SQLSTATE
	 * (psqlODBC: HY000 "server closed the connection"); ask. */
	if (rc != 0 && !call->broken && !odbc_alive(oc))
		call->broken = true;
	if (st != SQL_NULL_HSTMT) {
		SQLFreeStmt(st, SQL_CLOSE);
		SQLFreeHandle(SQL_HANDLE_STMT, st);
	}
	for (int i = 0; pw && i < call->nparams; i++)
		free(pw[i]);
	free(pw);
	free(pind);
	free(wsql);
	return rc;
}

const struct ds_driver ds_driver_odbc = {
    .name = "odbc",
    .placeholders = DS_PH_QMARK,
    .connect = odbc_connect,
    .close = odbc_close,
    .alive = odbc_alive,
    .run = odbc_run,
};
