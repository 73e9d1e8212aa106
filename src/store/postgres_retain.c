/*
 * postgres_retain.c - message retention on PostgreSQL
 * (store.message_retention_days), by the rule of lifecycle.c
 * (lc_retention_prepare): settled messages older than the cutoff go with
 * their audit events.
 *
 * Two ways, cheapest first:
 *
 * 1. Whole months. message and message_event are range-partitioned by
 *    message id, one partition per UTC month (postgres_schema.c). A month
 *    whose whole range is older than the cutoff and that holds no message
 *    still open (one check: a scan of that month only) loses its two
 *    partitions: no row deletes, no dead tuples, no vacuum debt. The message
 *    partition goes first, then the event partition (once no message of the
 *    month is left anywhere, the DEFAULT partition included).
 *
 * 2. Row deletes, for what is left older than the cutoff: months that still
 *    hold open messages, the month the cutoff falls in, and the DEFAULT
 *    partition. Each batch is one writer job (it commits with the writer's
 *    group, so a client write waits for one batch at most): up to `batch`
 *    removable messages in id order, taken FOR UPDATE SKIP LOCKED (a
 *    message another node is updating right now is left for the next run,
 *    never waited for), deleted with their events in one statement.
 *
 * Locks, and how long inserts and claims can be held up:
 *  - Inserts and claims take ROW EXCLUSIVE on message (and on every
 *    partition a claim's plan reads: claims are not pruned by id, so they
 *    touch every month); reads take ACCESS SHARE.
 *  - The check and the counts (SELECT on one month) take ACCESS SHARE on
 *    that partition: they conflict with nothing but DDL.
 *  - With a DEFAULT partition (the schema has one, so that an insert never
 *    fails for want of a month), PostgreSQL refuses DETACH ... CONCURRENTLY
 *    ("cannot detach partitions concurrently when a default partition
 *    exists"). The month then goes by a plain DETACH in a transaction of its
 *    own: ACCESS EXCLUSIVE on the parent, the month's partition and the
 *    DEFAULT partition, held for the catalog change and the commit only
 *    (milliseconds), so inserts and claims ARE held up, that long. While
 *    it waits for that lock, statements on the table queue behind it, so
 *    the wait is bounded by lock_timeout (PG_RETAIN_LOCK_TIMEOUT): a month
 *    that cannot be had that fast is left for the next run (stats.more).
 *    Writers are thus held up by at most about that much, once per month
 *    and table (measured in test_postgres.c: the slowest insert during a
 *    detach that timed out took the 200 ms). The DROP (file unlinks, the
 *    slow part) comes after, in its own transaction, holding nothing but
 *    the detached table. The same transaction as the DETACH marks the
 *    table (PG_RETAIN_MARK, below), so a crash between the two leaves a
 *    table the next run recognises and drops.
 *  - Without a DEFAULT partition, DETACH ... CONCURRENTLY (autocommit, no
 *    transaction block): its first transaction takes SHARE UPDATE EXCLUSIVE
 *    on the parent and the partition (conflicts with neither ROW EXCLUSIVE
 *    nor ACCESS SHARE: inserts, claims and reads go on), and the partition
 *    disappears from new queries; its second waits for the queries that
 *    still see it, then takes ACCESS EXCLUSIVE on the partition alone, which
 *    nobody reads any more. A detach cut off between the two (a crash, a
 *    lock_timeout) stays "detach pending" in pg_inherits and is completed
 *    with DETACH ... FINALIZE on the next run. Before detaching, the
 *    partition is marked with a comment (PG_RETAIN_MARK), so a table left
 *    detached but not dropped by a crash is recognised as retention's and
 *    dropped, while a table an operator detached on purpose (to archive it)
 *    is never touched.
 *  - DROP TABLE of a detached partition: ACCESS EXCLUSIVE on that table
 *    only (nobody else uses it any more).
 *  - COMMENT ON TABLE (the mark): SHARE UPDATE EXCLUSIVE on the partition,
 *    which conflicts with neither ROW EXCLUSIVE nor ACCESS SHARE.
 *  - Row deletes: ROW EXCLUSIVE on the tables and row locks on the rows
 *    deleted, which only the applier (a late webhook for the same message)
 *    could want.
 *
 * Several nodes: a pass holds a session advisory lock (PG_RETAIN_LOCK) on
 * its own connection for its whole length; a runner that finds it taken
 * does nothing (stats.skipped). A runner that dies loses its connection and
 * with it the lock. herald_ensure_partitions (every open makes the previous
 * month) may make again a month a run dropped: it is empty, and goes again.
 *
 * The race that would matter, a message in a checked month becoming open
 * again before its partition goes, cannot happen: nothing moves a settled
 * status back to an open one (status.c, msg_status_settled), and new ids
 * are made at the current time, never in an old month (only a copy of old
 * rows into a live database, `herald migrate --to`, could put one there
 * between the check and the detach).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/postgres_int.h"

/* The advisory lock of a retention pass (7226400: migrations, 7226401:
 * herald_ensure_partitions). */
#define PG_RETAIN_LOCK "7226402"
/* How long a plain DETACH may wait for its lock, holding up the table's
 * other users meanwhile. */
#define PG_RETAIN_LOCK_TIMEOUT "200ms"
/* DETACH CONCURRENTLY and FINALIZE hold up no writer while they wait. */
#define PG_RETAIN_LOCK_TIMEOUT_CONCURRENT "5s"
/* A bound on any one statement of the pass (a month's check is a scan). */
#define PG_RETAIN_STATEMENT_TIMEOUT "10min"
/* The comment that marks a partition retention is detaching. */
#define PG_RETAIN_MARK "herald retention: dropping"
#define PG_RETAIN_MONTHS_MAX 1200

/* The removable predicate of lifecycle.h's struct lc_retention over
 * parameters $1 (settled), $2 (settled_at_sent), $3 (channels). */
#define PG_REMOVABLE                                                                               \
	"((($1::bigint >> status) & 1) = 1 OR ((($2::bigint >> status) & 1) = 1"                   \
	" AND channel IN (SELECT jsonb_array_elements_text($3::jsonb))))"

/* What the catalog says about one month's two tables. */
struct pg_month {
	int ym; /* YYYYMM */
	struct pg_part {
		bool exists, attached, pending, marked;
	} msg, ev;
};

/* ---------------------------------------------------------------------------
 * The maintenance connection: statements and the catalog.
 * ------------------------------------------------------------------------- */

static int mc_exec(struct pg_conn *c, const char *sql, const struct pg_params *p, PGresult **out,
                   struct hr_err *err, const char *field)
{
	if (out)
		*out = NULL;
	PGresult *r =
	    p ? PQexecParams(c->c, sql, p->n, NULL, p->v, p->len, p->fmt, 0) : PQexec(c->c, sql);
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

static void removable_params(struct pg_params *p, const struct lc_retention *lr)
{
	pp_i64(p, lr->settled);
	pp_i64(p, lr->settled_at_sent);
	pp_text(p, lr->channels);
}

/* The first instant (us) of month ym + add months. */
static int64_t month_start_us(int ym, int add)
{
	int m = ym % 100 - 1 + add;
	struct tm tm = {.tm_year = ym / 100 - 1900 + m / 12, .tm_mon = m % 12, .tm_mday = 1};
	return (int64_t)timegm(&tm) * 1000000;
}

static int ym_of(int64_t us)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return 0;
	return (tm.tm_year + 1900) * 100 + tm.tm_mon + 1;
}

/*
 * The months whose whole range is older than the cutoff (before the
 * cutoff's month) and that have a table of ours: partitions of message or
 * message_event named <table>_YYYYMM in the current schema, or tables of
 * that name left detached with retention's mark. Oldest first.
 */
static int list_months(struct pg_conn *c, int before_ym, struct pg_month **out, size_t *n,
                       struct hr_err *err)
{
	*out = NULL;
	*n = 0;
	PGresult *r;
	int rc =
	    mc_exec(c,
	            "SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false),"
	            " coalesce(obj_description(c.oid, 'pg_class') = '" PG_RETAIN_MARK "', false)"
	            " FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid"
	            "  AND i.inhparent IN ('message'::regclass, 'message_event'::regclass)"
	            " WHERE c.relnamespace ="
	            "  (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
	            "  AND c.relkind = 'r' AND c.relname ~ '^message(_event)?_[0-9]{6}$'"
	            " ORDER BY right(c.relname, 6), c.relname",
	            NULL, &r, err, "partitions");
	if (rc)
		return rc;
	struct pg_month *v = NULL;
	size_t len = 0;
	for (int i = 0; i < PQntuples(r) && len < PG_RETAIN_MONTHS_MAX; i++) {
		const char *name = PQgetvalue(r, i, 0);
		size_t nl = strlen(name);
		int ym = atoi(name + nl - 6);
		if (ym >= before_ym || ym % 100 < 1 || ym % 100 > 12)
			continue;
		if (!len || v[len - 1].ym != ym) {
			struct pg_month *nv = realloc(v, (len + 1) * sizeof *v);
			if (!nv) {
				free(v);
				PQclear(r);
				return hr_fail(err, HR_ENOMEM, "partitions", "out of memory");
			}
			v = nv;
			memset(&v[len], 0, sizeof v[len]);
			v[len++].ym = ym;
		}
		struct pg_part *p =
		    strncmp(name, "message_event_", 14) == 0 ? &v[len - 1].ev : &v[len - 1].msg;
		p->exists = true;
		p->attached = pg_col_bool(r, i, 1);
		p->pending = pg_col_bool(r, i, 2);
		p->marked = pg_col_bool(r, i, 3);
	}
	PQclear(r);
	*out = v;
	*n = len;
	return 0;
}

/* Two counts of one table (NULL `where`: the second is 0). */
static int count_rows(struct pg_conn *c, const char *table, const struct lc_retention *lr,
                      int64_t *rows, int64_t *open, struct hr_err *err)
{
	char sql[400];
	struct pg_params p = {0};
	if (lr) {
		snprintf(sql, sizeof sql,
		         "SELECT count(*), count(*) FILTER (WHERE NOT " PG_REMOVABLE ") FROM %s",
		         table);
		removable_params(&p, lr);
	} else {
		snprintf(sql, sizeof sql, "SELECT count(*), 0 FROM %s", table);
	}
	PGresult *r;
	int rc = mc_exec(c, sql, lr ? &p : NULL, &r, err, table);
	if (rc)
		return rc;
	*rows = pg_col_i64(r, 0, 0);
	if (open)
		*open = pg_col_i64(r, 0, 1);
	PQclear(r);
	return 0;
}

/*
 * Removes one partition of parent (message or message_event) that holds
 * only rows retention removes; 0, or HR_EBUSY when a lock could not be had
 * within the timeout (nothing changed, or the detach left pending for
 * FINALIZE). The locks each way takes are in the comment at the top.
 */
/*
 * Drops a detached message partition and takes its messages out of the
 * status counts (message_status_count) in the same transaction, so the
 * counts never miss or count twice a month dropped whole. Detached, the
 * table changes no more: it is counted first, outside the transaction (a
 * month's scan holds no lock anyone waits for), and the transaction takes
 * the table's lock before touching the counter row, so the node's writer,
 * which moves the same row, never waits for the drop's lock.
 */
static int drop_counted(struct pg_conn *c, const char *table, int stripe, struct hr_err *err)
{
	char sql[400];
	PGresult *r;
	snprintf(sql, sizeof sql, "SELECT status, count(*) FROM %s GROUP BY status", table);
	int rc = mc_exec(c, sql, NULL, &r, err, table);
	if (rc)
		return rc;
	int64_t gone[MSG__COUNT] = {0};
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t st = pg_col_i64(r, i, 0);
		if (st >= 0 && st < MSG__COUNT)
			gone[st] = -pg_col_i64(r, i, 1);
	}
	PQclear(r);
	snprintf(sql, sizeof sql,
	         "BEGIN; SET LOCAL lock_timeout = '" PG_RETAIN_LOCK_TIMEOUT "';"
	         "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE",
	         table);
	if ((rc = mc_exec(c, sql, NULL, NULL, err, table)) == 0) {
		struct pg_params p = {0};
		char buf[PG_STATUS_BUF];
		if (pg_status_params(&p, stripe, gone, buf))
			rc = mc_exec(c, PG_STATUS_UPSERT, &p, NULL, err, "message_status_count");
	}
	if (rc == 0) {
		snprintf(sql, sizeof sql, "DROP TABLE %s; COMMIT", table);
		rc = mc_exec(c, sql, NULL, NULL, err, table);
	}
	if (rc && c->c && PQtransactionStatus(c->c) != PQTRANS_IDLE)
		PQclear(PQexec(c->c, "ROLLBACK"));
	return rc;
}

static int drop_partition(struct pg_conn *c, const char *parent, const char *table,
                          const struct pg_part *part, bool concurrent, int stripe, const char **how,
                          struct hr_err *err)
{
	char sql[300];
	int rc = 0;
	*how = part->pending     ? "a pending detach finalised"
	       : !part->attached ? "left detached earlier"
	       : concurrent      ? "detached concurrently"
	                         : "detached";
	if (part->pending) {
		if ((rc = mc_exec(c, "SET lock_timeout = '" PG_RETAIN_LOCK_TIMEOUT_CONCURRENT "'",
		                  NULL, NULL, err, table)))
			return rc;
		snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s FINALIZE", parent,
		         table);
		if ((rc = mc_exec(c, sql, NULL, NULL, err, table)))
			return rc;
	} else if (part->attached && !concurrent) {
		snprintf(sql, sizeof sql,
		         "BEGIN; SET LOCAL lock_timeout = '" PG_RETAIN_LOCK_TIMEOUT "';"
		         "COMMENT ON TABLE %s IS '" PG_RETAIN_MARK "';"
		         "ALTER TABLE %s DETACH PARTITION %s; COMMIT",
		         table, parent, table);
		rc = mc_exec(c, sql, NULL, NULL, err, table);
		if (rc && c->c && PQtransactionStatus(c->c) != PQTRANS_IDLE)
			PQclear(PQexec(c->c, "ROLLBACK"));
		if (rc)
			return rc;
	} else if (part->attached) {
		snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS '" PG_RETAIN_MARK "'", table);
		if ((rc = mc_exec(c, sql, NULL, NULL, err, table)))
			return rc;
		/* One statement per call: CONCURRENTLY refuses a multi-statement
		 * string (an implicit transaction block). */
		if ((rc = mc_exec(c, "SET lock_timeout = '" PG_RETAIN_LOCK_TIMEOUT_CONCURRENT "'",
		                  NULL, NULL, err, table)))
			return rc;
		snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY", parent,
		         table);
		if ((rc = mc_exec(c, sql, NULL, NULL, err, table)))
			return rc;
	}
	if (strcmp(parent, "message") != 0) {
		snprintf(sql, sizeof sql, "DROP TABLE %s", table);
		return mc_exec(c, sql, NULL, NULL, err, table);
	}
	return drop_counted(c, table, stripe, err);
}

struct pass {
	struct pg_conn *c;
	const struct lc_retention *lr;
	bool concurrent_msg, concurrent_ev; /* the parent has no DEFAULT partition */
	int stripe;                         /* the store's (message_status_count) */
	struct msg_retention_stats *stats;
	/* A month whose message partition could not be dropped this time
	 * (the months after it are not looked at either): ids from its start
	 * to the start of the cutoff's month [lo, hi) are left out of the row
	 * deletes, so those months are dropped whole next time rather than
	 * emptied row by row now. */
	bool deferred;
	char lo[HR_ID_TIME_LEN + 1], hi[HR_ID_TIME_LEN + 1];
};

/*
 * A failure on one month (a lock not had in time, a statement cut off) is
 * logged and the month waits for the next run (stats->more); only a lost
 * connection stops the pass.
 */
static int month_failed(struct pass *p, const char *table, int rc, const struct hr_err *e,
                        struct hr_err *err)
{
	hr_log(HR_LOG_WARN, "store", "retention: %s not dropped this time: %s", table, e->msg);
	p->stats->more = true;
	if (p->c->c && PQstatus(p->c->c) == CONNECTION_OK)
		return 0;
	if (err)
		*err = *e;
	return rc;
}

/* A table of ours: attached and not being detached by someone else, or
 * marked by retention (detached by hand, not marked: an operator's). */
static bool part_ours(const struct pg_part *t)
{
	return t->exists && (t->marked || (t->attached && !t->pending));
}

/*
 * One month older than the cutoff: its message partition goes if nothing in
 * it is open, then its event partition once no message of the month is left
 * anywhere. 0 also when the month stays (row deletes then take its settled
 * messages) or waits for the next run.
 */
static int month_pass(struct pass *p, const struct pg_month *m, struct hr_err *err)
{
	char msg[32], ev[32], lo[HR_ID_TIME_LEN + 1], hi[HR_ID_TIME_LEN + 1];
	snprintf(msg, sizeof msg, "message_%06d", m->ym);
	snprintf(ev, sizeof ev, "message_event_%06d", m->ym);
	hr_id_time_prefix(month_start_us(m->ym, 0), lo);
	hr_id_time_prefix(month_start_us(m->ym, 1), hi);
	struct hr_err e = {0};
	const char *how = "";
	int rc;

	if (m->msg.exists && !part_ours(&m->msg))
		return 0;
	if (m->msg.exists) {
		int64_t rows = 0, open = 0;
		rc = count_rows(p->c, msg, p->lr, &rows, &open, &e);
		if (rc == 0 && open && !m->msg.attached)
			hr_log(HR_LOG_ERROR, "store",
			       "retention: %s, detached, holds %lld open messages: not dropped",
			       msg, (long long)open);
		if (rc == 0 && open)
			return 0; /* row deletes take its settled messages */
		if (rc == 0)
			rc = drop_partition(p->c, "message", msg, &m->msg, p->concurrent_msg,
			                    p->stripe, &how, &e);
		if (rc) {
			p->deferred = true;
			memcpy(p->lo, lo, sizeof lo);
			hr_id_time_prefix(month_start_us(ym_of(p->lr->before), 0), p->hi);
			return month_failed(p, msg, rc, &e, err);
		}
		p->stats->messages += rows;
		p->stats->months++;
		hr_log(HR_LOG_INFO, "store", "retention: dropped %s (%lld messages; %s)", msg,
		       (long long)rows, how);
	}
	if (!part_ours(&m->ev))
		return 0;
	/* Events of messages of this month that live elsewhere (the DEFAULT
	 * partition, when the month was made after they arrived) stay with
	 * them: the row deletes take them together. */
	struct pg_params q = {0};
	pp_text(&q, lo);
	pp_text(&q, hi);
	PGresult *r;
	if ((rc = mc_exec(p->c, "SELECT EXISTS(SELECT 1 FROM message WHERE id >= $1 AND id < $2)",
	                  &q, &r, &e, "message")))
		return month_failed(p, ev, rc, &e, err);
	bool left = pg_col_bool(r, 0, 0);
	PQclear(r);
	if (left)
		return 0;
	int64_t rows = 0;
	if ((rc = count_rows(p->c, ev, NULL, &rows, NULL, &e)) ||
	    (rc = drop_partition(p->c, "message_event", ev, &m->ev, p->concurrent_ev, p->stripe,
	                         &how, &e)))
		return month_failed(p, ev, rc, &e, err);
	p->stats->events += rows;
	hr_log(HR_LOG_INFO, "store", "retention: dropped %s (%lld events; %s)", ev, (long long)rows,
	       how);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Row deletes through the writer.
 * ------------------------------------------------------------------------- */

struct job_retain {
	struct wr_job j;
	const struct lc_retention *lr;
	char after[HR_ID_LEN + 1]; /* ids above this... */
	const char *upto;          /* ...and below this */
	int64_t picked, messages, events;
};

static int run_retain(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_retain *a = (struct job_retain *)j;
	a->picked = a->messages = a->events = 0;
	struct pg_params p = {0};
	removable_params(&p, a->lr);
	pp_text(&p, a->after);
	pp_text(&p, a->upto);
	pp_i64(&p, a->lr->batch);
	pp_i64(&p, s->stripe);
	PGresult *r;
	/* The messages removed leave the status counts in the same statement. */
	int rc =
	    pg_exec(&s->w, P_RETAIN,
	            "WITH v AS MATERIALIZED (SELECT id FROM message WHERE id > $4 AND id < $5"
	            "  AND " PG_REMOVABLE " ORDER BY id LIMIT $6 FOR UPDATE SKIP LOCKED),"
	            " e AS (DELETE FROM message_event WHERE message_id IN (SELECT id FROM v)"
	            "  RETURNING 1),"
	            " d AS (DELETE FROM message m USING v WHERE m.id = v.id RETURNING m.status),"
	            " c AS (INSERT INTO message_status_count(stripe, status, n)"
	            "  SELECT $7::smallint, status, -count(*) FROM d GROUP BY status"
	            "  ON CONFLICT (stripe, status)"
	            "  DO UPDATE SET n = message_status_count.n + excluded.n)"
	            " SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM d),"
	            " (SELECT count(*) FROM e), (SELECT max(id) FROM v)",
	            &p, &r, &j->err, "message");
	if (rc)
		return rc;
	a->picked = pg_col_i64(r, 0, 0);
	a->messages = pg_col_i64(r, 0, 1);
	a->events = pg_col_i64(r, 0, 2);
	if (a->picked)
		pg_col_copy(r, 0, 3, a->after, sizeof a->after);
	PQclear(r);
	return 0;
}

/* Row deletes of the removable messages with ids in (after, upto), in
 * batches, until none is left or max_batches (stats->more) ran. */
static int delete_rows(struct pg_store *s, const struct lc_retention *lr, const char *after,
                       const char *upto, struct msg_retention_stats *stats, struct hr_err *err)
{
	struct job_retain a = {.j = {.run = run_retain}, .lr = lr, .upto = upto};
	hr_strlcpy(a.after, after, sizeof a.after);
	for (;;) {
		if (lr->max_batches && stats->batches >= lr->max_batches) {
			stats->more = true;
			return 0;
		}
		int rc = wr_run_blocking(&s->wr, &a.j, err);
		if (rc)
			return rc;
		if (a.picked == 0)
			return 0;
		stats->batches++;
		stats->messages += a.messages;
		stats->events += a.events;
		if (a.picked < lr->batch)
			return 0;
	}
}

/* ---------------------------------------------------------------------------
 * The pass.
 * ------------------------------------------------------------------------- */

/* The pass on its connection, once the lock is held. */
static int run_pass(struct pg_store *s, struct pass *p, struct hr_err *err)
{
	struct pg_month *months = NULL;
	size_t n = 0;
	int rc = list_months(p->c, ym_of(p->lr->before), &months, &n, err);
	for (size_t i = 0; rc == 0 && i < n && !p->deferred; i++)
		rc = month_pass(p, &months[i], err);
	free(months);
	if (rc)
		return rc;
	if (!p->deferred)
		return delete_rows(s, p->lr, "", p->lr->before_id, p->stats, err);
	/* hi is a time prefix: "id > hi" takes every id of hi's millisecond on. */
	if ((rc = delete_rows(s, p->lr, "", p->lo, p->stats, err)))
		return rc;
	return delete_rows(s, p->lr, p->hi, p->lr->before_id, p->stats, err);
}

int pg_message_prune(struct store *st, const struct msg_retention *r,
                     struct msg_retention_stats *stats, struct hr_err *err)
{
	struct pg_store *s = (struct pg_store *)st;
	struct msg_retention_stats sum = {0};
	if (stats)
		*stats = sum;
	struct lc_retention lr;
	int rc = lc_retention_prepare(r, &lr, err);
	if (rc)
		return rc;
	struct pg_conn c = {0};
	if ((rc = pg_connect(s, &c, err)))
		return rc;
	PGresult *res;
	rc = mc_exec(&c,
	             "SET statement_timeout = '" PG_RETAIN_STATEMENT_TIMEOUT "';"
	             "SELECT pg_try_advisory_lock(" PG_RETAIN_LOCK "),"
	             " (SELECT partdefid = 0 FROM pg_partitioned_table"
	             "  WHERE partrelid = 'message'::regclass),"
	             " (SELECT partdefid = 0 FROM pg_partitioned_table"
	             "  WHERE partrelid = 'message_event'::regclass)",
	             NULL, &res, err, "store");
	if (rc == 0) {
		struct pass p = {.c = &c,
		                 .lr = &lr,
		                 .stats = &sum,
		                 .concurrent_msg = pg_col_bool(res, 0, 1),
		                 .concurrent_ev = pg_col_bool(res, 0, 2),
		                 .stripe = s->stripe};
		bool locked = pg_col_bool(res, 0, 0);
		PQclear(res);
		if (locked)
			rc = run_pass(s, &p, err);
		else
			sum.skipped = true;
	}
	pg_disconnect(&c); /* ends the session: the advisory lock goes with it */
	if (stats)
		*stats = sum;
	return rc;
}
