/*
 * postgres.c - the PostgreSQL store backend: connections, the
 * group-committing writer thread, the reader pool, shared helpers and
 * open/close/migrate. The operations live in postgres_conf.c,
 * postgres_msg.c, postgres_hook.c, postgres_supp.c and postgres_tx.c; this
 * file fills `store_postgres` with them.
 *
 * The writer ("herald-pgwrite") is writer.c's over one libpq connection:
 * it takes everything queued (up to group_max jobs), runs it in one BEGIN
 * ... COMMIT with a SAVEPOINT around each job (a failing job rolls back only
 * itself), and reports results only after COMMIT returned; this file gives
 * it those statements and the reconnection. The BEGIN also reads the
 * database's clock (now(), the same for the whole group), which is the
 * `now` of every job in it, so every node sharing the database measures
 * leases and due times by one clock.
 *
 * Readers: a pool of up to rmax connections, each with its own prepared
 * statements. A read that finds its connection broken (the server
 * restarted) is retried once on a new connection: reads are idempotent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "store/postgres.h"
#include "store/postgres_int.h"

#define PG_READERS_MAX 8

/* ---------------------------------------------------------------------------
 * Parameters and columns.
 * ------------------------------------------------------------------------- */

static int pp_slot(struct pg_params *p)
{
	/* The statements are fixed and have at most PG_PARAMS_MAX parameters. */
	if (p->n >= PG_PARAMS_MAX)
		abort();
	return p->n++;
}

void pp_text(struct pg_params *p, const char *s)
{
	int i = pp_slot(p);
	p->v[i] = s;
	p->len[i] = 0;
	p->fmt[i] = 0;
}

void pp_opt(struct pg_params *p, const char *s)
{
	pp_text(p, s && *s ? s : NULL);
}

void pp_i64(struct pg_params *p, int64_t v)
{
	int i = pp_slot(p);
	snprintf(p->num[i], sizeof p->num[i], "%lld", (long long)v);
	p->v[i] = p->num[i];
	p->len[i] = 0;
	p->fmt[i] = 0;
}

void pp_bool(struct pg_params *p, bool v)
{
	pp_text(p, v ? "t" : "f");
}

void pp_bytes(struct pg_params *p, const void *b, size_t len)
{
	int i = pp_slot(p);
	p->v[i] = b ? b : "";
	p->len[i] = (int)len;
	p->fmt[i] = 1;
}

void pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
	hr_utf8_copy(dst, PQgetvalue(r, row, col), size);
}

char *pg_col_dup(const PGresult *r, int row, int col, bool *oom)
{
	if (PQgetisnull(r, row, col))
		return NULL;
	char *p = strdup(PQgetvalue(r, row, col));
	if (!p)
		*oom = true;
	return p;
}

int64_t pg_col_i64(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return 0;
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool pg_col_bool(const PGresult *r, int row, int col)
{
	const char *v = PQgetvalue(r, row, col);
	return v[0] == 't' || v[0] == '1';
}

int pg_col_bytea(const PGresult *r, int row, int col, char **out, size_t *len)
{
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
	if (!raw)
		return HR_ENOMEM;
	char *p = malloc(n + 1);
	if (!p) {
		PQfreemem(raw);
		return HR_ENOMEM;
	}
	if (n)
		memcpy(p, raw, n);
	p[n] = '\0';
	PQfreemem(raw);
	*out = p;
	*len = n;
	return 0;
}

int pg_row_message(const PGresult *r, int row, int c, struct message *m)
{
	bool oom = false;
	memset(m, 0, sizeof *m);
	pg_col_copy(r, row, c + 0, m->id, sizeof m->id);
	pg_col_copy(r, row, c + 1, m->tenant_id, sizeof m->tenant_id);
	pg_col_copy(r, row, c + 2, m->account_id, sizeof m->account_id);
	pg_col_copy(r, row, c + 3, m->channel, sizeof m->channel);
	pg_col_copy(r, row, c + 4, m->recipient, sizeof m->recipient);
	pg_col_copy(r, row, c + 5, m->batch_id, sizeof m->batch_id);
	m->content = pg_col_dup(r, row, c + 6, &oom);
	m->body = pg_col_dup(r, row, c + 7, &oom);
	m->status = (enum msg_status)pg_col_i64(r, row, c + 8);
	m->priority = (int)pg_col_i64(r, row, c + 9);
	m->attempts = (int)pg_col_i64(r, row, c + 10);
	m->max_attempts = (int)pg_col_i64(r, row, c + 11);
	m->created_at = pg_col_i64(r, row, c + 12);
	m->updated_at = pg_col_i64(r, row, c + 13);
	m->due_at = pg_col_i64(r, row, c + 14);
	m->lease_until = pg_col_i64(r, row, c + 15);
	pg_col_copy(r, row, c + 16, m->provider_id, sizeof m->provider_id);
	pg_col_copy(r, row, c + 17, m->error_code, sizeof m->error_code);
	pg_col_copy(r, row, c + 18, m->error_text, sizeof m->error_text);
	m->segments = (int)pg_col_i64(r, row, c + 19);
	m->policy = (enum delivery_policy)pg_col_i64(r, row, c + 20);
	m->expires_at = pg_col_i64(r, row, c + 21);
	m->route = pg_col_dup(r, row, c + 22, &oom);
	m->route_step = (int)pg_col_i64(r, row, c + 23);
	m->route_steps = (int)pg_col_i64(r, row, c + 24);
	pg_col_copy(r, row, c + 25, m->route_root, sizeof m->route_root);
	m->fallback_after = pg_col_i64(r, row, c + 26);
	if (oom) {
		message_clear(m);
		return HR_ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Connections and statements.
 * ------------------------------------------------------------------------- */

static bool conn_ok(const struct pg_conn *c)
{
	return c->c && PQstatus(c->c) == CONNECTION_OK;
}

/*
 * SQLSTATE classes that mean "try again" (the API answers 503): a lost or
 * refused connection (08), a server shutting down or restarting (57P0x),
 * lock and serialisation conflicts (40001, 40P01, 55P03), exhausted
 * resources (53).
 */
int pg_fail(struct pg_conn *c, const PGresult *res, struct hr_err *err, const char *field)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : NULL;
	if (!msg || !*msg)
		msg = c->c ? PQerrorMessage(c->c) : "not connected";
	int code = HR_EIO;
	if (!conn_ok(c))
		code = HR_EBUSY;
	else if (state && strncmp(state, "23", 2) == 0)
		code = HR_ECONFLICT;
	else if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
	                   strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	                   strcmp(state, "55P03") == 0 || strncmp(state, "53", 2) == 0))
		code = HR_EBUSY;
	else if (state && strcmp(state, "22001") == 0)
		code = HR_ELIMIT;
	else if (state && strcmp(state, "HR429") == 0) {
		/* herald_daily_take (postgres_schema.c): its own words. */
		const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		return hr_fail(err, HR_EQUOTA, "daily_cap", "%s", primary ? primary : "daily cap");
	}
	char clean[200];
	hr_strlcpy(clean, msg, sizeof clean);
	size_t n = strlen(clean);
	while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
		clean[--n] = '\0';
	return hr_fail(err, code, field ? field : "store", "postgres: %s", clean);
}

int pg_connect(struct pg_store *s, struct pg_conn *c, struct hr_err *err)
{
	memset(c->prep, 0, sizeof c->prep);
	memset(c->list_prep, 0, sizeof c->list_prep);
	/* Keywords before dbname are defaults the dsn may override; password
	 * after it overrides the dsn's (it comes resolved from a secret). */
	const char *kw[10], *val[10];
	int k = 0;
	kw[k] = "connect_timeout", val[k++] = "5";
	kw[k] = "application_name", val[k++] = "herald";
	/* A server that vanished without closing (a dead host) is noticed by
	 * TCP keepalives within about a minute, not the kernel's two hours. */
	kw[k] = "keepalives_idle", val[k++] = "30";
	kw[k] = "keepalives_interval", val[k++] = "10";
	kw[k] = "keepalives_count", val[k++] = "3";
	kw[k] = "dbname", val[k++] = s->dsn;
	if (s->password)
		kw[k] = "password", val[k++] = s->password;
	kw[k] = NULL, val[k] = NULL;
	c->c = PQconnectdbParams(kw, val, 1);
	if (!c->c)
		return hr_fail(err, HR_ENOMEM, "store.url", "out of memory");
	if (PQstatus(c->c) != CONNECTION_OK) {
		int rc = pg_fail(c, NULL, err, "store.url");
		PQfinish(c->c);
		c->c = NULL;
		return rc == HR_EIO ? HR_EBUSY : rc;
	}
	/* Times are stored as bigint microseconds; the session's zone only
	 * matters to the partition function (UTC months). */
	int rc = pg_simple(c, "SET TIME ZONE 'UTC'; SET client_min_messages = warning", err,
	                   "store.url");
	if (rc)
		pg_disconnect(c);
	return rc;
}

void pg_disconnect(struct pg_conn *c)
{
	if (c->c)
		PQfinish(c->c);
	c->c = NULL;
	memset(c->prep, 0, sizeof c->prep);
	memset(c->list_prep, 0, sizeof c->list_prep);
}

int pg_simple(struct pg_conn *c, const char *sql, struct hr_err *err, const char *field)
{
	if (!c->c)
		return hr_fail(err, HR_EBUSY, field ? field : "store", "postgres: not connected");
	PGresult *r = PQexec(c->c, sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = pg_fail(c, r, err, field);
	PQclear(r);
	return rc;
}

int pg_exec_named(struct pg_conn *c, const char *name, bool *prepared, const char *sql,
                  const struct pg_params *p, PGresult **out, struct hr_err *err, const char *field)
{
	if (out)
		*out = NULL;
	if (!c->c)
		return hr_fail(err, HR_EBUSY, field ? field : "store", "postgres: not connected");
	if (!*prepared) {
		PGresult *r = PQprepare(c->c, name, sql, 0, NULL);
		if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
			int rc = pg_fail(c, r, err, field);
			if (rc == HR_EIO)
				hr_log(HR_LOG_ERROR, "store", "prepare failed: %s: %s",
				       err ? err->msg : "", sql);
			PQclear(r);
			return rc;
		}
		PQclear(r);
		*prepared = true;
	}
	static const struct pg_params none;
	if (!p)
		p = &none;
	PGresult *r = PQexecPrepared(c->c, name, p->n, p->v, p->len, p->fmt, 0);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int rc = pg_fail(c, r, err, field);
		PQclear(r);
		return rc;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return 0;
}

int pg_exec(struct pg_conn *c, enum pg_slot slot, const char *sql, const struct pg_params *p,
            PGresult **out, struct hr_err *err, const char *field)
{
	char name[16];
	snprintf(name, sizeof name, "h%d", (int)slot);
	return pg_exec_named(c, name, &c->prep[slot], sql, p, out, err, field);
}

static bool pcmd_push(struct pg_store *s, struct wr_job *j, int kind, enum pg_slot slot,
                      const char *field, const char *conflict)
{
	if (s->npcmd == s->pcap) {
		size_t nc = s->pcap ? s->pcap * 2 : 256;
		struct pg_pcmd *n = realloc(s->pcmd, nc * sizeof *n);
		if (!n)
			return false;
		s->pcmd = n;
		s->pcap = nc;
	}
	struct pg_pcmd *c = &s->pcmd[s->npcmd++];
	c->job = j;
	c->kind = kind;
	c->slot = slot;
	c->field = field;
	hr_strlcpy(c->conflict, conflict ? conflict : "", sizeof c->conflict);
	return true;
}

/* ---- array literals, so a whole batch travels as one parameter per column ---- */

/* Appends one element (NULL for SQL NULL) to an array literal being built:
 * quoted, with " and \ escaped, so any text survives. */
void pg_arr_text(struct hr_buf *a, const char *v)
{
	hr_buf_put(a, a->len ? "," : "{", 1);
	if (!v) {
		hr_buf_put(a, "NULL", 4);
		return;
	}
	hr_buf_put(a, "\"", 1);
	for (const char *p = v; *p;) {
		size_t run = strcspn(p, "\"\\");
		hr_buf_put(a, p, run);
		p += run;
		if (*p) {
			char esc[2] = {'\\', *p++};
			hr_buf_put(a, esc, 2);
		}
	}
	hr_buf_put(a, "\"", 1);
}

void pg_arr_i64(struct hr_buf *a, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%lld", (long long)v);
	hr_buf_put(a, a->len ? "," : "{", 1);
	hr_buf_put(a, num, (size_t)n);
}

void pg_arr_bool(struct hr_buf *a, bool v)
{
	hr_buf_put(a, a->len ? "," : "{", 1);
	hr_buf_put(a, v ? "t" : "f", 1);
}

const char *pg_arr_end(struct hr_buf *a)
{
	hr_buf_put(a, a->len ? "}" : "{}", a->len ? 1 : 2);
	return a->oom ? NULL : a->p;
}

int pg_wdo(struct pg_store *s, struct wr_job *j, enum pg_slot slot, const char *sql,
           const struct pg_params *p, const char *field, const char *conflict)
{
	if (!s->piping) {
		int rc = pg_exec(&s->w, slot, sql, p, NULL, &j->err, field);
		if (rc == HR_ECONFLICT && conflict)
			hr_fail(&j->err, rc, field, "%s", conflict);
		return rc;
	}
	char name[16];
	snprintf(name, sizeof name, "h%d", (int)slot);
	PGconn *c = s->w.c;
	if (!s->w.prep[slot]) {
		if (!PQsendPrepare(c, name, sql, 0, NULL) ||
		    !pcmd_push(s, j, PC_PREPARE, slot, field, NULL))
			return hr_fail(&j->err, HR_EBUSY, field, "postgres: cannot send: %s",
			               PQerrorMessage(c));
		s->w.prep[slot] = true; /* taken back if the prepare fails */
	}
	if (!PQsendQueryPrepared(c, name, p->n, p->v, p->len, p->fmt, 0) ||
	    !pcmd_push(s, j, PC_STMT, slot, field, conflict))
		return hr_fail(&j->err, HR_EBUSY, field, "postgres: cannot send: %s",
		               PQerrorMessage(c));
	return 0;
}

/* ---------------------------------------------------------------------------
 * The reader pool.
 * ------------------------------------------------------------------------- */

int pg_reader_get(struct pg_store *s, struct pg_conn **out)
{
	pthread_mutex_lock(&s->rlock);
	while (!s->rfree && s->rcount >= s->rmax)
		pthread_cond_wait(&s->rcond, &s->rlock);
	struct pg_conn *c = s->rfree;
	if (c)
		s->rfree = c->next;
	else
		s->rcount++;
	pthread_mutex_unlock(&s->rlock);
	if (!c && !(c = calloc(1, sizeof *c))) {
		pg_reader_put(s, NULL);
		return HR_ENOMEM;
	}
	if (conn_ok(c)) {
		*out = c;
		return 0;
	}
	pg_disconnect(c);
	int rc = pg_connect(s, c, NULL);
	if (rc) {
		free(c);
		pg_reader_put(s, NULL);
		return rc;
	}
	*out = c;
	return 0;
}

/* Returns c to the pool; a broken connection (or NULL: a slot whose
 * connection could not be made) gives its slot back instead. */
void pg_reader_put(struct pg_store *s, struct pg_conn *c)
{
	bool keep = c && conn_ok(c) && PQtransactionStatus(c->c) == PQTRANS_IDLE;
	if (c && !keep) {
		pg_disconnect(c);
		free(c);
	}
	pthread_mutex_lock(&s->rlock);
	if (keep) {
		c->next = s->rfree;
		s->rfree = c;
	} else {
		s->rcount--;
	}
	pthread_cond_signal(&s->rcond);
	pthread_mutex_unlock(&s->rlock);
}

/*
 * One read on a pooled connection, retried once on a fresh connection when
 * the pooled one turned out broken (a server restart closes idle
 * connections, which libpq notices only on their next use). list_mask >= 0
 * selects a message_list variant instead of slot.
 */
int pg_read(struct pg_store *s, enum pg_slot slot, int list_mask, const char *sql,
            const struct pg_params *p, PGresult **out)
{
	*out = NULL;
	int rc = HR_EBUSY;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct pg_conn *c;
		if ((rc = pg_reader_get(s, &c)))
			return rc;
		if (list_mask >= PG_LIST_VARIANTS) {
			/* A search's combination: the unnamed statement, planned
			 * for this call, so no connection keeps one per
			 * combination a client can ask for. */
			bool once = false;
			rc = pg_exec_named(c, "", &once, sql, p, out, NULL, NULL);
		} else if (list_mask >= 0) {
			char name[16];
			snprintf(name, sizeof name, "l%d", list_mask);
			rc = pg_exec_named(c, name, &c->list_prep[list_mask], sql, p, out, NULL,
			                   NULL);
		} else {
			rc = pg_exec(c, slot, sql, p, out, NULL, NULL);
		}
		bool broken = !conn_ok(c);
		pg_reader_put(s, c);
		if (!(rc && broken))
			break;
	}
	return rc;
}

/* ---------------------------------------------------------------------------
 * The writer.
 * ------------------------------------------------------------------------- */

/*
 * The writer's transaction (struct wr_ops for writer.c). Before each group
 * and solo job the writer's connection is made again if it broke; while the
 * server cannot be reached, every write answers HR_EBUSY (the API: 503).
 */
static int w_ready(void *be, struct hr_err *e)
{
	struct pg_store *s = be;
	if (conn_ok(&s->w))
		return 0;
	bool had = s->w.c != NULL;
	pg_disconnect(&s->w);
	struct hr_err err = {0};
	if (pg_connect(s, &s->w, &err)) {
		if (had)
			hr_log(HR_LOG_WARN, "store", "writer cannot reconnect: %s", err.msg);
		return hr_fail(e, HR_EBUSY, "store", "postgres: database unavailable");
	}
	if (had)
		hr_log(HR_LOG_INFO, "store", "writer reconnected to PostgreSQL");
	return 0;
}

/* BEGIN, reading the database's clock in the same round trip. A connection
 * found broken here (the server restarted while the writer was idle) is
 * made again once: nothing of the group has been sent yet. */
static void prepare_status_add(struct pg_store *s);

static int w_begin(void *be, struct hr_err *e)
{
	struct pg_store *s = be;
	s->nsd = 0;
	pg_daily_reset(s);
	prepare_status_add(s);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (attempt && w_ready(s, e))
			return e->code;
		PGresult *r =
		    PQexec(s->w.c, "BEGIN; SELECT (extract(epoch FROM now()) * 1000000)::bigint");
		if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
			s->gnow = pg_col_i64(r, 0, 0);
			PQclear(r);
			return 0;
		}
		PQclear(r);
		if (conn_ok(&s->w)) {
			PQclear(PQexec(s->w.c, "ROLLBACK"));
			return hr_fail(e, HR_EIO, "store", "postgres: cannot begin");
		}
	}
	return hr_fail(e, HR_EBUSY, "store", "postgres: database unavailable");
}

static bool simple_ok(struct pg_store *s, const char *sql)
{
	PGresult *r = PQexec(s->w.c, sql);
	bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok;
}

/* Jobs sent in one pipeline at most (each job's savepoint takes one of the
 * 64 subtransaction ids a backend caches). */
#define PG_PIPE_MAX 64

/*
 * Reads the results of the pipeline just sent (s->pcmd) and its sync.
 * *failed gets the index of the first command that failed (its job's rc
 * and err set), or -1. 0, or HR_EBUSY if the connection broke or the
 * results were not what was sent (the transaction is then lost).
 */
static int pipe_read(struct pg_store *s, long *failed)
{
	PGconn *c = s->w.c;
	*failed = -1;
	for (size_t i = 0; i < s->npcmd; i++) {
		struct pg_pcmd *d = &s->pcmd[i];
		PGresult *r = PQgetResult(c);
		if (!r)
			return HR_EBUSY;
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			if (d->kind == PC_PREPARE)
				s->w.prep[d->slot] = false;
			if (st != PGRES_PIPELINE_ABORTED && *failed < 0) {
				*failed = (long)i;
				int rc = pg_fail(&s->w, r, &d->job->err, d->field);
				if (rc == HR_ECONFLICT && d->conflict[0])
					hr_fail(&d->job->err, rc, d->field, "%s", d->conflict);
				d->job->rc = rc;
			}
		}
		PQclear(r);
		if ((r = PQgetResult(c))) { /* each command's results end with NULL */
			PQclear(r);
			return HR_EBUSY;
		}
	}
	PGresult *r = PQgetResult(c);
	bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	if (!synced || !PQexitPipelineMode(c))
		return HR_EBUSY;
	return conn_ok(&s->w) ? 0 : HR_EBUSY;
}

/*
 * Runs the pipeable jobs [first, end) of a group with one round trip: each
 * job's SAVEPOINT, statements and RELEASE are sent back to back, then one
 * sync, then the results are read. A statement that fails makes the server
 * skip the rest until the sync: that job is rolled back to its savepoint
 * and marked failed, the jobs before it stand, and the jobs after it are
 * sent again. 0, or non-zero if the transaction is lost.
 */
static int pipe_run(struct pg_store *s, struct wr_job *first, const struct wr_job *end)
{
	PGconn *c = s->w.c;
	while (first != end) {
		if (!PQenterPipelineMode(c))
			return HR_EBUSY;
		s->piping = true;
		s->npcmd = 0;
		bool sent = true;
		for (struct wr_job *j = first; j != end && sent; j = j->next) {
			sent =
			    PQsendQueryParams(c, "SAVEPOINT job", 0, NULL, NULL, NULL, NULL, 0) &&
			    pcmd_push(s, j, PC_SAVEPOINT, P__COUNT, "store", NULL);
			if (sent) {
				j->err.code = 0;
				j->rc = j->run(s, j); /* queues its statements (pg_wdo) */
				if (j->rc == HR_EBUSY && !conn_ok(&s->w))
					sent = false;
			}
			/* A job that failed before sending all it meant to (out of
			 * memory) is undone in the same pipeline. */
			if (sent && j->rc < 0)
				sent = PQsendQueryParams(c, "ROLLBACK TO SAVEPOINT job", 0, NULL,
				                         NULL, NULL, NULL, 0) &&
				       pcmd_push(s, j, PC_RELEASE, P__COUNT, "store", NULL);
			sent = sent &&
			       PQsendQueryParams(c, "RELEASE SAVEPOINT job", 0, NULL, NULL, NULL,
			                         NULL, 0) &&
			       pcmd_push(s, j, PC_RELEASE, P__COUNT, "store", NULL);
		}
		s->piping = false;
		if (!sent || !PQpipelineSync(c))
			return HR_EBUSY;
		long failed;
		if (pipe_read(s, &failed))
			return HR_EBUSY;
		atomic_fetch_add(&s->pipelines, 1);
		if (failed < 0)
			return 0;
		atomic_fetch_add(&s->pipe_failed, 1);
		struct pg_pcmd *d = &s->pcmd[failed];
		if (d->kind == PC_SAVEPOINT || d->kind == PC_RELEASE)
			return HR_EIO;
		if (!simple_ok(s, "ROLLBACK TO SAVEPOINT job") ||
		    !simple_ok(s, "RELEASE SAVEPOINT job"))
			return HR_EIO;
		first = d->job->next; /* the ones after it were skipped: again */
	}
	return 0;
}

/* Sends a group's runs of pipeable jobs (two or more in a row) in one
 * pipeline each; the writer runs every other job alone. */
static int w_run_many(void *be, struct wr_job *j, struct wr_job **last)
{
	if (!j->pipeable || !j->next || !j->next->pipeable)
		return WR_NOT_MINE;
	struct wr_job *l = j;
	for (int n = 1; n < PG_PIPE_MAX && l->next && l->next->pipeable; n++)
		l = l->next;
	*last = l;
	return pipe_run(be, j, l->next);
}

static int w_savepoint(void *be)
{
	return simple_ok(be, "SAVEPOINT job") ? 0 : HR_EIO;
}

static int w_rollback_to(void *be)
{
	return simple_ok(be, "ROLLBACK TO SAVEPOINT job") ? 0 : HR_EIO;
}

static int w_release(void *be)
{
	return simple_ok(be, "RELEASE SAVEPOINT job") ? 0 : HR_EIO;
}

/* A job that reports success but left the transaction in the aborted state
 * (a statement failed and it did not notice) counts as failed. */
static int w_check(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	if (!conn_ok(&s->w))
		return HR_EBUSY;
	if (j->rc == 0 && PQtransactionStatus(s->w.c) == PQTRANS_INERROR)
		j->rc = hr_fail(&j->err, HR_EIO, "store", "postgres: statement failed");
	return 0;
}

static void w_rollback(void *be)
{
	struct pg_store *s = be;
	s->nsd = 0;
	pg_daily_reset(s);
	PQclear(PQexec(s->w.c, "ROLLBACK"));
}

static int w_abort(void *be, struct hr_err *e)
{
	struct pg_store *s = be;
	s->nsd = 0;
	pg_daily_reset(s);
	/* A pipeline left half-read cannot be rolled back in place: the
	 * connection goes (the server rolls back), the next group makes a new
	 * one. */
	if (s->w.c && PQpipelineStatus(s->w.c) != PQ_PIPELINE_OFF)
		pg_disconnect(&s->w);
	if (!conn_ok(&s->w))
		return hr_fail(e, HR_EBUSY, "store",
		               "postgres: connection lost, transaction rolled back");
	w_rollback(s);
	return hr_fail(e, HR_EIO, "store", "postgres: transaction aborted");
}

int pg_status_note(struct pg_store *s, const struct wr_job *job, const int64_t d[MSG__COUNT],
                   struct hr_err *err)
{
	size_t i = s->nsd;
	while (i > 0 && s->sd[i - 1].job != job)
		i--;
	if (i == 0) {
		if (s->nsd == s->capsd) {
			size_t cap = s->capsd ? s->capsd * 2 : 64;
			struct pg_sd *n = realloc(s->sd, cap * sizeof *n);
			if (!n)
				return hr_fail(err, HR_ENOMEM, "message_status_count", "out of memory");
			s->sd = n;
			s->capsd = cap;
		}
		i = ++s->nsd;
		s->sd[i - 1].job = job;
	}
	memcpy(s->sd[i - 1].d, d, sizeof s->sd[i - 1].d);
	return 0;
}

/*
 * The status counts of the group's jobs that succeeded (a job that failed
 * was rolled back to its savepoint, its rows with it), as one upsert sent
 * with the COMMIT in one round trip: EXECUTE of a statement prepared once
 * per connection, so a commit plans nothing. The values are integers this
 * process formats, so they go into the text safely. 0, or an error (the
 * PREPARE failed: the transaction is lost).
 */
static int commit_sql(struct pg_store *s, char *sql, size_t size, struct hr_err *e)
{
	int64_t t[MSG__COUNT] = {0};
	for (size_t i = 0; i < s->nsd; i++)
		if (s->sd[i].job->rc == 0)
			for (int k = 0; k < MSG__COUNT; k++)
				t[k] += s->sd[i].d[k];
	s->nsd = 0;
	struct pg_params p = {0};
	char buf[PG_STATUS_BUF];
	if (!pg_status_params(&p, s->stripe, t, buf)) {
		snprintf(sql, size, "COMMIT");
		return 0;
	}
	(void)e;
	if (s->w.prep[P_STATUS_ADD])
		snprintf(sql, size, "EXECUTE herald_status_add(%d, '%s', '%s'); COMMIT", s->stripe,
		         p.v[1], p.v[2]);
	else /* not prepared on this connection (yet): planned each time */
		snprintf(sql, size,
		         "INSERT INTO message_status_count(stripe, status, n)"
		         " SELECT %d, s, d FROM unnest('%s'::smallint[], '%s'::bigint[]) AS u(s, d)"
		         " ON CONFLICT (stripe, status) DO UPDATE SET n = message_status_count.n + "
		         "excluded.n; COMMIT",
		         s->stripe, p.v[1], p.v[2]);
	return 0;
}

/* The commit's status upsert, prepared once per connection outside any
 * transaction (so no rollback can take it away); a failure leaves the
 * commit's planned form (commit_sql). */
static void prepare_status_add(struct pg_store *s)
{
	if (s->w.prep[P_STATUS_ADD] || !conn_ok(&s->w) || s->sd_prep_conn == s->w.c)
		return;
	s->sd_prep_conn = s->w.c; /* tried on this connection: once */
	PGresult *r = PQexec(s->w.c, "PREPARE herald_status_add(smallint, smallint[], bigint[])"
	                             " AS " PG_STATUS_UPSERT);
	s->w.prep[P_STATUS_ADD] = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!s->w.prep[P_STATUS_ADD])
		hr_log(HR_LOG_WARN, "store",
		       "cannot prepare the status counts' upsert (%s): commits plan it each time",
		       r ? PQresultErrorMessage(r) : PQerrorMessage(s->w.c));
	PQclear(r);
}

/* COMMIT is checked by its command tag: PostgreSQL answers COMMIT on an
 * aborted transaction with a successful ROLLBACK (so also when the status
 * counts' upsert before it failed: the whole group fails, counts and
 * rows together). */
static int w_commit(void *be, struct hr_err *e)
{
	struct pg_store *s = be;
	char sql[PG_STATUS_BUF + 100];
	/* the daily counters first, in the same transaction. */
	if (pg_daily_flush(s, e) != 0) {
		s->nsd = 0;
		if (conn_ok(&s->w) && PQtransactionStatus(s->w.c) != PQTRANS_IDLE)
			w_rollback(s);
		return e->code ? e->code : HR_EIO;
	}
	if (commit_sql(s, sql, sizeof sql, e) != 0) {
		if (conn_ok(&s->w) && PQtransactionStatus(s->w.c) != PQTRANS_IDLE)
			w_rollback(s);
		return e->code ? e->code : HR_EIO;
	}
	PGresult *r = PQexec(s->w.c, sql);
	bool ok =
	    r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
	PQclear(r);
	if (ok)
		return 0;
	/* A connection lost during COMMIT leaves the outcome unknown to us, but
	 * whole either way: the group committed entirely or not at all. */
	if (!conn_ok(&s->w))
		return hr_fail(e, HR_EBUSY, "store", "postgres: connection lost at commit");
	if (PQtransactionStatus(s->w.c) != PQTRANS_IDLE)
		w_rollback(s);
	return hr_fail(e, HR_EIO, "store", "postgres: commit");
}

/* A solo job (migrations) runs outside any transaction: no BEGIN reads the
 * database's clock, so its `now` is this host's. */
static int w_solo(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	s->gnow = hr_now_us();
	s->nsd = 0; /* a solo job (migrations) writes the counts itself */
	pg_daily_reset(s);
	int rc = j->run(s, j);
	s->nsd = 0;
	pg_daily_reset(s);
	return rc;
}

static const struct wr_ops pg_wr_ops = {
    .ready = w_ready,
    .begin = w_begin,
    .savepoint = w_savepoint,
    .rollback_to = w_rollback_to,
    .release = w_release,
    .check = w_check,
    .run_many = w_run_many,
    .abort = w_abort,
    .rollback = w_rollback,
    .commit = w_commit,
    .solo = w_solo,
};

/* ---------------------------------------------------------------------------
 * open / close / migrate.
 * ------------------------------------------------------------------------- */

static void pg_free(struct pg_store *s)
{
	pg_disconnect(&s->w);
	while (s->rfree) {
		struct pg_conn *c = s->rfree;
		s->rfree = c->next;
		pg_disconnect(c);
		free(c);
	}
	wr_destroy(&s->wr);
	pthread_mutex_destroy(&s->rlock);
	pthread_cond_destroy(&s->rcond);
	free(s->json.buf);
	free(s->pcmd);
	free(s->sd);
	for (size_t i = 0; i < s->capdd; i++)
		daily_free(&s->dd[i].d);
	free(s->dd);
	free(s->dsn);
	if (s->password) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	free(s);
}

static int pg_open(const char *dsn, const struct store_opts *opts, struct store **out,
                   struct hr_err *err)
{
	if (!dsn || !*dsn)
		return hr_fail(err, HR_EINVAL, "store.url", "postgres needs a connection string");
	struct pg_store *s = calloc(1, sizeof *s);
	if (!s || !(s->dsn = strdup(dsn))) {
		free(s);
		return hr_fail(err, HR_ENOMEM, "store", "out of memory");
	}
	s->base.ops = &store_postgres;
	if (opts)
		s->opts = *opts;
	s->rmax = PG_READERS_MAX;
	uint32_t pick;
	hr_random_bytes(&pick, sizeof pick);
	s->stripe = (int)(pick % PG_STATUS_STRIPES);
	wr_init(&s->wr, &pg_wr_ops, s, s->opts.group_max, s->opts.queue_max);
	pthread_mutex_init(&s->rlock, NULL);
	pthread_cond_init(&s->rcond, NULL);
	atomic_init(&s->pipelines, 0);
	atomic_init(&s->pipe_failed, 0);
	if (opts && opts->password && !(s->password = strdup(opts->password))) {
		pg_free(s);
		return hr_fail(err, HR_ENOMEM, "store", "out of memory");
	}
	int rc = pg_connect(s, &s->w, err);
	if (rc || (rc = pg_migrate_conn(&s->w, NULL, err)))
		goto fail;
	if ((rc = wr_start(&s->wr, "herald-pgwrite", err)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	pg_free(s);
	return rc;
}

static void pg_close(struct store *st)
{
	if (!st)
		return;
	lc_batch_forget_store(st);
	store_hold_forget(st);
	struct pg_store *s = (struct pg_store *)st;
	wr_stop(&s->wr);
	pthread_mutex_lock(&s->rlock);
	while (s->rcount > 0) {
		while (!s->rfree)
			pthread_cond_wait(&s->rcond, &s->rlock);
		struct pg_conn *c = s->rfree;
		s->rfree = c->next;
		s->rcount--;
		pg_disconnect(c);
		free(c);
	}
	pthread_mutex_unlock(&s->rlock);
	pg_free(s);
}

struct job_migrate {
	struct wr_job j;
	int applied;
};

static int run_migrate(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_migrate *m = (struct job_migrate *)j;
	return pg_migrate_conn(&s->w, &m->applied, &j->err);
}

/* A solo job on the writer: migrations need their own transactions. */
static int pg_migrate(struct store *st, int *applied, struct hr_err *err)
{
	struct job_migrate m = {.j = {.run = run_migrate, .solo = true}};
	int rc = wr_run_blocking(&((struct pg_store *)st)->wr, &m.j, err);
	if (applied)
		*applied = m.applied;
	return rc;
}

void store_postgres_stats(struct store *st, uint64_t *commits, uint64_t *jobs)
{
	wr_stats(&((struct pg_store *)st)->wr, commits, jobs);
}

void store_postgres_pipe_stats(struct store *st, uint64_t *pipelines, uint64_t *failed_jobs)
{
	struct pg_store *s = (struct pg_store *)st;
	if (pipelines)
		*pipelines = atomic_load(&s->pipelines);
	if (failed_jobs)
		*failed_jobs = atomic_load(&s->pipe_failed);
}

const struct store_ops store_postgres = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .migrate = pg_migrate,
    .tenant_upsert = pg_tenant_upsert,
    .api_key_put = pg_api_key_put,
    .api_key_lookup = pg_api_key_lookup,
    .api_key_prune = pg_api_key_prune,
    .tenant_create = pg_tenant_create,
    .tenant_get = pg_tenant_get,
    .tenant_list = pg_tenant_list,
    .tenant_set_disabled = pg_tenant_set_disabled,
    .tenant_set_limits = pg_tenant_set_limits,
    .tenant_usage = pg_tenant_usage,
    .unit_create = pg_unit_create,
    .unit_get = pg_unit_get,
    .unit_list = pg_unit_list,
    .unit_set_disabled = pg_unit_set_disabled,
    .key_seed = pg_key_seed,
    .key_create = pg_key_create,
    .key_lookup = pg_key_lookup,
    .key_list = pg_key_list,
    .key_revoke = pg_key_revoke,
    .key_touch = pg_key_touch,
    .audit_append = pg_audit_append,
    .audit_list = pg_audit_list,
    .prune = pg_prune,
    .account_upsert = pg_account_upsert,
    .account_list = pg_account_list,
    .template_upsert = pg_template_upsert,
    .template_get = pg_template_get,
    .template_put = pg_template_put,
    .template_delete = pg_template_delete,
    .template_list = pg_template_list,
    .account_put = pg_account_put,
    .message_insert = pg_message_insert,
    .message_get = pg_message_get,
    .message_get_by_provider_id = pg_message_get_by_provider_id,
    .message_events = pg_message_events,
    .message_list = pg_message_list,
    .message_counts = pg_message_counts,
    .message_gauges = pg_message_gauges,
    .write_stats = store_postgres_stats,
    .claim = pg_claim,
    .claim_async = pg_claim_async,
    .record_results = pg_record_results,
    .requeue_expired = pg_requeue_expired,
    .next_due = pg_next_due,
    .suppression_put = pg_suppression_put,
    .suppression_delete = pg_suppression_delete,
    .suppression_list = pg_suppression_list,
    .suppression_change = pg_suppression_change,
    .recipient_supp = pg_recipient_supp,
    .recipient_inbound = pg_recipient_inbound,
    .account_queue_depth = pg_account_queue_depth,
    .account_pause_set = pg_account_pause_set,
    .account_pauses = pg_account_pauses,
    .daily_counts = pg_daily_counts,
    .idem_get = pg_idem_get,
    .inbox_append = pg_inbox_append,
    .inbox_fetch = pg_inbox_fetch,
    .inbox_claim = pg_inbox_claim,
    .apply_inbox = pg_apply_inbox,
    .inbox_pending = pg_inbox_pending,
    .batch_create = pg_batch_create,
    .batch_get = pg_batch_get,
    .batch_list = pg_batch_list,
    .batch_items_put = pg_batch_items_put,
    .batch_items = pg_batch_items,
    .batch_set_status = pg_batch_set_status,
    .batch_set_status_audit = pg_batch_set_status_audit,
    .batch_enqueue = pg_batch_enqueue,
    .batch_cancel_step = pg_batch_cancel_step,
    .batch_recount = pg_batch_recount,
    .batch_export_rows = pg_batch_export_rows,
    .batch_breakdown = pg_batch_breakdown,
    .callback_claim = pg_callback_claim,
    .callback_done = pg_callback_done,
    .callback_list = pg_callback_list,
    .callback_get = pg_callback_get,
    .callback_replay = pg_callback_replay,
    .callback_counts = pg_callback_counts,
    .callback_prune = pg_callback_prune,
    .plugin_event_read = pg_plugin_event_read,
    .plugin_event_done = pg_plugin_event_done,
    .plugin_event_count = pg_plugin_event_count,
    .batch_discard = pg_batch_discard,
    .batch_items_by_status = pg_batch_items_by_status,
    .message_prune = pg_message_prune,
    .reconcile_expire = pg_reconcile_expire,
    .reconcile_fallback_due = pg_reconcile_fallback_due,
    .stale_list = pg_stale_list,
    .stale_settle = pg_stale_settle,
    .inbox_park = pg_inbox_park,
    .inbox_parked = pg_inbox_parked,
    .message_route = pg_message_route,
};
