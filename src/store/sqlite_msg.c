/*
 * sqlite_msg.c - messages: the durable accept, reads for the API, and the
 * queue side (claim with a lease, screened against opt-outs and moved
 * addresses; send outcomes; lease expiry).
 *
 * The message table is the queue. A claim is one UPDATE ... RETURNING over
 * the partial index of QUEUED rows, so claiming costs an index range scan no
 * matter how many sent messages the table holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

/* ---------------------------------------------------------------------------
 * Durable accept.
 * ------------------------------------------------------------------------- */

struct job_insert {
	struct wr_job j;
	const struct message *msgs;
	size_t n;
	const struct idem_put *idem;
};

static int insert_idem(struct sq_store *s, struct wr_job *j, const struct idem_put *p,
                       int64_t now)
{
	sqlite3_stmt *st = sq_wstmt(s, W_IDEM_INSERT,
		"INSERT INTO idempotency_key(tenant_id, key, request_hash, http_status, response,"
		" created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "idempotency_key");
	sqlite3_bind_text(st, 1, p->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, p->request_hash ? p->request_hash : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, p->http_status);
	sq_bind_opt(st, 5, p->response);
	sqlite3_bind_int64(st, 6, now);
	int rc = sq_step_done(s, st, &j->err, "Idempotency-Key");
	if (rc == HR_ECONFLICT)
		hr_fail(&j->err, rc, "Idempotency-Key", "idempotency key already used");
	return rc;
}

/* The accept's Idempotency-Key on one of its messages (search finds the
 * messages by it), in the accept's transaction. */
static int set_idem_key(struct sq_store *s, const char *id, const char *key, struct hr_err *err)
{
	sqlite3_stmt *st =
	    sq_wstmt(s, W_MSG_IDEM_KEY, "UPDATE message SET idem_key = ?2 WHERE id = ?1");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "message");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	return sq_step_done(s, st, err, "message");
}

int sq_message_row_insert(struct sq_store *s, const struct message *m, int64_t now,
                          struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_MSG_INSERT,
		"INSERT INTO message(id, tenant_id, account_id, channel, recipient,"
		" batch_id, content, body, status, priority, attempts, max_attempts,"
		" created_at, updated_at, due_at, lease_until, segments, callback_url,"
		" delivery_policy, expires_at, route, route_step, route_steps, route_root,"
		" fallback_after, unit_id)"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, 0, ?10, ?11, ?12, ?13, 0, ?14,"
		" ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, err, "message");
	int64_t created = m->created_at ? m->created_at : now;
	sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->recipient, -1, SQLITE_STATIC);
	sq_bind_opt(st, 6, m->batch_id);
	sqlite3_bind_text(st, 7, m->content, -1, SQLITE_STATIC);
	if (m->body)
		sqlite3_bind_text(st, 8, m->body, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_int(st, 9, m->priority);
	sqlite3_bind_int(st, 10, m->max_attempts);
	sqlite3_bind_int64(st, 11, created);
	sqlite3_bind_int64(st, 12, m->updated_at ? m->updated_at : created);
	sqlite3_bind_int64(st, 13, m->due_at ? m->due_at : created);
	sqlite3_bind_int(st, 14, m->segments);
	sq_bind_opt(st, 15, m->callback_url);
	sqlite3_bind_int(st, 16, (int)m->policy);
	sqlite3_bind_int64(st, 17, m->expires_at);
	sq_bind_opt(st, 18, m->route);
	sqlite3_bind_int(st, 19, m->route_step);
	sqlite3_bind_int(st, 20, m->route ? m->route_steps : 0);
	sq_bind_opt(st, 21, m->route ? m->route_root : NULL);
	sqlite3_bind_int64(st, 22, m->route ? m->fallback_after : 0);
	sq_bind_opt(st, 23, m->unit);
	int rc = sq_step_done(s, st, err, "message");
	if (rc == HR_ECONFLICT)
		hr_fail(err, rc, "id", "message id %s already exists", m->id);
	return rc;
}

/* The call's messages count against their tenants' daily caps (a call is
 * one tenant's in practice: each run of one tenant is one counter update). */
static int daily_take_all(struct sq_store *s, const struct message *msgs, size_t n, int64_t now,
                          struct hr_err *err)
{
	for (size_t i = 0; i < n;) {
		size_t k = i + 1;
		while (k < n && strcmp(msgs[k].tenant_id, msgs[i].tenant_id) == 0)
			k++;
		int rc = sq_daily_take(s, msgs[i].tenant_id, store_day(now), (int64_t)(k - i), err);
		if (rc)
			return rc;
		i = k;
	}
	return 0;
}

/* All messages of the call, each with its "accepted" event, and the
 * idempotency row first (so a replayed key costs nothing before failing). */
static int run_insert(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_insert *a = (struct job_insert *)j;
	int64_t now = hr_now_us();
	int rc;
	if (a->idem && (rc = insert_idem(s, j, a->idem, now)))
		return rc;
	if ((rc = daily_take_all(s, a->msgs, a->n, now, &j->err)))
		return rc;
	const char *ikey = a->idem && a->idem->client_key ? a->idem->client_key : NULL;
	for (size_t i = 0; i < a->n; i++) {
		const struct message *m = &a->msgs[i];
		if ((rc = sq_message_row_insert(s, m, now, &j->err)))
			return rc;
		rc = sq_event_insert(s, m->id, now, 0, "accepted", "api", MSG_QUEUED, true, NULL, 0,
		                     &j->err);
		if (rc)
			return rc;
		if (ikey && (rc = set_idem_key(s, m->id, ikey, &j->err)))
			return rc;
		daily_transition(&s->dd_job, m->tenant_id, m->channel, now, -1, MSG_QUEUED);
	}
	int64_t d[MSG__COUNT] = {[MSG_QUEUED] = (int64_t)a->n};
	return sq_status_add(s, d, &j->err);
}

int sq_status_add(struct sq_store *s, const int64_t delta[MSG__COUNT], struct hr_err *err)
{
	(void)err;
	for (int i = 0; i < MSG__COUNT; i++)
		s->sd_job[i] += delta[i];
	return 0;
}

/*
 * One upsert per status the group moved, in its transaction: a failure
 * fails the commit, so the counts never part from the rows. Stripe 0 only:
 * SQLite has one writer, so there is no contention to spread (PostgreSQL's
 * nodes each write their own stripe, postgres_msg.c). A row absent (a
 * status added after the migration that made the table) is made by the
 * upsert.
 */
int sq_status_flush(struct sq_store *s, struct hr_err *err)
{
	for (int i = 0; i < MSG__COUNT; i++)
		s->sd_group[i] += s->sd_job[i];
	memset(s->sd_job, 0, sizeof s->sd_job);
	const int64_t *delta = s->sd_group;
	for (int i = 0; i < MSG__COUNT; i++) {
		if (!delta[i])
			continue;
		sqlite3_stmt *st = sq_wstmt(
		    s, W_STATUS_ADD,
		    "INSERT INTO message_status_count(stripe, status, n) VALUES(0, ?1, ?2)"
		    " ON CONFLICT(stripe, status) DO UPDATE SET n = n + excluded.n");
		if (!st)
			return sq_fail(s->wdb, SQLITE_ERROR, err, "message_status_count");
		sqlite3_bind_int(st, 1, i);
		sqlite3_bind_int64(st, 2, delta[i]);
		int rc = sq_step_done(s, st, err, "message_status_count");
		if (rc)
			return rc;
	}
	return 0;
}

int sq_message_insert(struct store *st, const struct message *msgs, size_t n,
                      const struct idem_put *idem, store_done_fn cb, void *arg)
{
	struct sq_store *s = (struct sq_store *)st;
	if (n && !msgs)
		return HR_EINVAL;
	for (size_t i = 0; i < n; i++) {
		const struct message *m = &msgs[i];
		if (!m->id[0] || !m->tenant_id[0] || !m->account_id[0] || !m->channel[0] ||
		    !m->recipient[0] || !m->content)
			return HR_EINVAL;
	}
	if (idem && (!idem->tenant_id || !idem->key || !*idem->key))
		return HR_EINVAL;
	/* run_insert writes rows and the job's status deltas only: it can run
	 * again (writer.h, replayable). */
	struct job_insert a = {.j = {.run = run_insert, .limited = true, .replayable = true},
	                       .msgs = msgs,
	                       .n = n,
	                       .idem = idem};
	if (cb)
		return wr_run_async(&s->wr, &a.j, sizeof a, cb, arg);
	return wr_run_blocking(&s->wr, &a.j, NULL);
}

/* ---------------------------------------------------------------------------
 * Reads.
 * ------------------------------------------------------------------------- */

static int get_one(struct sq_store *s, enum sq_rslot slot, const char *sql, const char *p1,
                   const char *p2, struct message *out)
{
	memset(out, 0, sizeof *out);
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = sq_rstmt(r, slot, sql);
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, p1 ? p1 : "", -1, SQLITE_STATIC);
	if (p2)
		sqlite3_bind_text(q, 2, p2, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 2);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		rc = sq_row_message(q, 0, out);
		if (rc == 0 && sqlite3_column_count(q) > SQ_MSG_NCOLS)
			sq_col_copy(q, SQ_MSG_NCOLS, out->unit, sizeof out->unit);
	} else {
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	}
	sq_reader_put(s, r);
	return rc;
}

int sq_message_get(struct store *st, const char *tenant_id, const char *id,
                   struct message *out)
{
	return get_one((struct sq_store *)st, R_MSG_GET,
	               "SELECT " SQ_MSG_COLS ", unit_id FROM message"
	               " WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
	               id, tenant_id, out);
}

int sq_message_get_by_provider_id(struct store *st, const char *account_id,
                                  const char *provider_id, struct message *out)
{
	if (!account_id || !*account_id || !provider_id || !*provider_id) {
		memset(out, 0, sizeof *out);
		return HR_ENOTFOUND;
	}
	return get_one((struct sq_store *)st, R_MSG_GET_PROVIDER,
	               "SELECT " SQ_MSG_COLS " FROM message"
	               " WHERE account_id = ?1 AND provider_id = ?2 LIMIT 1",
	               account_id, provider_id, out);
}

int sq_message_events(struct store *st, const char *message_id,
                      struct message_event **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(
	    s, R_EVENTS,
	    "SELECT id, message_id, at, provider_at, type, source, status, applied, detail"
	    " FROM message_event WHERE message_id = ?1 ORDER BY id",
	    &r, &q);
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, message_id ? message_id : "", -1, SQLITE_STATIC);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, store_row_message_event, NULL,
	                  store_row_message_event_clear, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

/* Optional filters of message_list, one bit each. The statement for each
 * combination of the first nine (the listings the API and the campaign
 * screens page through) is built once per reader connection and cached;
 * one with a search filter (LF_ID and up: the search screen's lookups) is
 * prepared for the call and finalized after it, so the cache stays
 * SQ_LIST_VARIANTS entries whatever combinations clients ask for. */
enum {
	LF_TENANT = 1 << 0,
	LF_STATUS = 1 << 1,
	LF_CHANNEL = 1 << 2,
	LF_RECIPIENT = 1 << 3,
	LF_BATCH = 1 << 4,
	LF_SINCE = 1 << 5,
	LF_UNTIL = 1 << 6,
	LF_BEFORE = 1 << 7,
	LF_UNIT = 1 << 8,
	LF_ID = 1 << 9,
	LF_PROVIDER = 1 << 10,
	LF_IDEM = 1 << 11,
	LF_ACCOUNT = 1 << 12,
	LF_ERROR = 1 << 13,
	LF_RALT = 1 << 14,
};
#define LF_NBITS 15

static sqlite3_stmt *list_stmt(struct sq_reader *r, unsigned mask)
{
	bool cached = mask < SQ_LIST_VARIANTS;
	if (cached && r->list[mask]) {
		sqlite3_reset(r->list[mask]);
		return r->list[mask];
	}
	static const char *const terms[LF_NBITS] = {
	    " AND tenant_id = ?1",
	    " AND status = ?2",
	    " AND channel = ?3",
	    " AND recipient = ?4",
	    " AND batch_id = ?5",
	    " AND created_at >= ?6",
	    " AND created_at < ?7",
	    " AND id < ?8",
	    " AND unit_id = ?10",
	    " AND id = ?11",
	    /* message_provider, once per account of the tenant (migration 14) */
	    " AND provider_id = ?12"
	    " AND account_id IN (SELECT id FROM channel_account WHERE ?1 IS NULL OR tenant_id = "
	    "?1)",
	    " AND idem_key = ?13",
	    " AND account_id = ?14",
	    " AND error_code = ?15",
	    " AND recipient IN (?4, ?16, ?17)",
	};
	/* The other forms of a recipient replace its one-value term. */
	unsigned terms_mask = mask & LF_RALT ? mask & ~(unsigned)LF_RECIPIENT : mask;
	char sql[2048];
	/* A recipient in several forms is an IN list, which the planner (with
	 * no statistics) would rather answer by walking the tenant's messages
	 * in id order than by the recipient index and a sort of the few rows
	 * it finds: name the index. */
	const char *by = mask & LF_PROVIDER                       ? " INDEXED BY message_provider"
	                 : (mask & LF_RALT) && (mask & LF_TENANT) ? " INDEXED BY message_recipient"
	                                                          : "";
	size_t len = (size_t)snprintf(sql, sizeof sql,
	                              "SELECT " SQ_MSG_COLS ", unit_id FROM message%s WHERE 1", by);
	for (unsigned b = 0; b < LF_NBITS; b++)
		if (terms_mask & (1u << b))
			len += (size_t)snprintf(sql + len, sizeof sql - len, "%s", terms[b]);
	snprintf(sql + len, sizeof sql - len, " ORDER BY id DESC LIMIT ?9");
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v3(r->db, sql, -1, cached ? SQLITE_PREPARE_PERSISTENT : 0, &q, NULL) !=
	    SQLITE_OK) {
		sqlite3_finalize(q);
		return NULL;
	}
	if (cached)
		r->list[mask] = q;
	return q;
}

int sq_message_list(struct store *st, const char *tenant_id, const struct msg_filter *f,
                    struct message **out, size_t *n, bool *more)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	struct msg_filter none = {.status = -1, .limit = 100};
	if (!f)
		f = &none;
	int limit = f->limit < 1 ? 100 : f->limit > 1000 ? 1000 : f->limit;
	unsigned mask = 0;
	if (tenant_id)
		mask |= LF_TENANT;
	if (f->status >= 0)
		mask |= LF_STATUS;
	if (f->channel)
		mask |= LF_CHANNEL;
	if (f->recipient)
		mask |= LF_RECIPIENT;
	if (f->batch_id)
		mask |= LF_BATCH;
	if (f->since_us)
		mask |= LF_SINCE;
	if (f->until_us)
		mask |= LF_UNTIL;
	if (f->before_id)
		mask |= LF_BEFORE;
	if (f->unit && f->unit[0])
		mask |= LF_UNIT;
	if (f->id)
		mask |= LF_ID;
	if (f->provider_id)
		mask |= LF_PROVIDER;
	if (f->idem_key)
		mask |= LF_IDEM;
	if (f->account_id)
		mask |= LF_ACCOUNT;
	if (f->error_code)
		mask |= LF_ERROR;
	if (f->recipient && (f->recipient_alt[0] || f->recipient_alt[1]))
		mask |= LF_RALT;

	struct message *v = calloc((size_t)limit, sizeof *v);
	if (!v)
		return HR_ENOMEM;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc) {
		free(v);
		return rc;
	}
	sqlite3_stmt *q = list_stmt(r, mask);
	if (!q) {
		sq_reader_put(s, r);
		free(v);
		return HR_EIO;
	}
	if (mask & LF_TENANT)
		sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	if (mask & LF_STATUS)
		sqlite3_bind_int(q, 2, f->status);
	if (mask & LF_CHANNEL)
		sqlite3_bind_text(q, 3, f->channel, -1, SQLITE_STATIC);
	if (mask & LF_RECIPIENT)
		sqlite3_bind_text(q, 4, f->recipient, -1, SQLITE_STATIC);
	if (mask & LF_BATCH)
		sqlite3_bind_text(q, 5, f->batch_id, -1, SQLITE_STATIC);
	if (mask & LF_SINCE)
		sqlite3_bind_int64(q, 6, f->since_us);
	if (mask & LF_UNTIL)
		sqlite3_bind_int64(q, 7, f->until_us);
	if (mask & LF_BEFORE)
		sqlite3_bind_text(q, 8, f->before_id, -1, SQLITE_STATIC);
	if (mask & LF_UNIT)
		sqlite3_bind_text(q, 10, f->unit, -1, SQLITE_STATIC);
	if (mask & LF_ID)
		sqlite3_bind_text(q, 11, f->id, -1, SQLITE_STATIC);
	if (mask & LF_PROVIDER)
		sqlite3_bind_text(q, 12, f->provider_id, -1, SQLITE_STATIC);
	if (mask & LF_IDEM)
		sqlite3_bind_text(q, 13, f->idem_key, -1, SQLITE_STATIC);
	if (mask & LF_ACCOUNT)
		sqlite3_bind_text(q, 14, f->account_id, -1, SQLITE_STATIC);
	if (mask & LF_ERROR)
		sqlite3_bind_text(q, 15, f->error_code, -1, SQLITE_STATIC);
	if (mask & LF_RALT) {
		/* Unbound parameters are NULL, which matches nothing. */
		for (int k = 0; k < 2; k++)
			if (f->recipient_alt[k])
				sqlite3_bind_text(q, 16 + k, f->recipient_alt[k], -1,
				                  SQLITE_STATIC);
	}
	sqlite3_bind_int(q, 9, limit + 1);
	size_t len = 0;
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		if (len == (size_t)limit) {
			if (more)
				*more = true;
			src = SQLITE_DONE;
			break;
		}
		if ((rc = sq_row_message(q, 0, &v[len])))
			break;
		sq_col_copy(q, SQ_MSG_NCOLS, v[len].unit, sizeof v[len].unit);
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	if (mask >= SQ_LIST_VARIANTS)
		sqlite3_finalize(q); /* a search's one-off statement */
	else
		sqlite3_clear_bindings(q); /* no pointer into f outlives the call */
	sq_reader_put(s, r);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			message_clear(&v[i]);
		free(v);
		return rc;
	}
	if (len == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = len;
	return 0;
}

/* Steps q, (status, n) rows, into counts and gives the reader back. */
static int read_status_counts(struct sq_store *s, struct sq_reader *r, sqlite3_stmt *q,
                              int64_t counts[MSG__COUNT])
{
	int rc = 0, src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		int status = sqlite3_column_int(q, 0);
		if (status >= 0 && status < MSG__COUNT)
			counts[status] = sqlite3_column_int64(q, 1);
	}
	if (src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	return rc;
}

int sq_message_counts(struct store *st, const char *tenant_id, int64_t counts[MSG__COUNT])
{
	struct sq_store *s = (struct sq_store *)st;
	memset(counts, 0, sizeof(int64_t) * MSG__COUNT);
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = tenant_id
		? sq_rstmt(r, R_COUNTS_TENANT, "SELECT status, count(*) FROM message"
		           " WHERE tenant_id = ?1 GROUP BY status")
		: sq_rstmt(r, R_COUNTS_ALL, "SELECT status, count(*) FROM message GROUP BY status");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	if (tenant_id)
		sqlite3_bind_text(q, 1, tenant_id, -1, SQLITE_STATIC);
	return read_status_counts(s, r, q, counts);
}

int sq_message_gauges(struct store *st, int64_t counts[MSG__COUNT])
{
	struct sq_store *s = (struct sq_store *)st;
	memset(counts, 0, sizeof(int64_t) * MSG__COUNT);
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(
	    s, R_GAUGES, "SELECT status, sum(n) FROM message_status_count GROUP BY status", &r, &q);
	if (rc)
		return rc;
	return read_status_counts(s, r, q, counts);
}

int sq_next_due(struct store *st, const char *account_id, int64_t *due_at)
{
	struct sq_store *s = (struct sq_store *)st;
	*due_at = 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	/* One min() per priority class: each is a single seek in message_claim,
	 * where a min() over the whole account would walk all its queued rows. */
	sqlite3_stmt *q = sq_rstmt(r, R_NEXT_DUE,
		"SELECT min(d) FROM ("
		" SELECT min(due_at) AS d FROM message"
		"  WHERE status = 0 AND account_id = ?1 AND priority = 0"
		" UNION ALL SELECT min(due_at) FROM message"
		"  WHERE status = 0 AND account_id = ?1 AND priority = 1"
		" UNION ALL SELECT min(due_at) FROM message"
		"  WHERE status = 0 AND account_id = ?1 AND (priority < 0 OR priority > 1))");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, account_id ? account_id : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		*due_at = sqlite3_column_int64(q, 0); /* NULL reads as 0: none queued */
	else if (src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	return rc;
}

