/*
 * postgres_msg.c - messages: the durable accept and the reads of the API
 * and the dispatcher. The queue's writes (claims, outcomes, lease expiry)
 * are lifecycle.c's, over postgres_tx.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_rows.h"

/* ---------------------------------------------------------------------------
 * Durable accept.
 * ------------------------------------------------------------------------- */

struct job_insert {
	struct wr_job j;
	const struct message *msgs;
	size_t n;
	const struct idem_put *idem;
};

static int insert_idem(struct pg_store *s, struct wr_job *j, const struct idem_put *ip)
{
	struct pg_params p = {0};
	pp_text(&p, ip->tenant_id);
	pp_text(&p, ip->key);
	pp_text(&p, ip->request_hash ? ip->request_hash : "");
	pp_i64(&p, ip->http_status);
	pp_opt(&p, ip->response);
	pp_i64(&p, s->gnow);
	return pg_wdo(s, j, P_IDEM_INSERT,
	              "INSERT INTO idempotency_key(tenant_id, key, request_hash, http_status,"
	              " response, created_at) VALUES($1, $2, $3, $4, $5, $6)",
	              &p, "Idempotency-Key", "idempotency key already used");
}

/* The message's columns as parameters $1..$23, in the order both insert
 * statements name them. */
static void msg_params(struct pg_params *p, const struct message *m, int64_t now)
{
	int64_t created = m->created_at ? m->created_at : now;
	pp_text(p, m->id);
	pp_text(p, m->tenant_id);
	pp_text(p, m->account_id);
	pp_text(p, m->channel);
	pp_text(p, m->recipient);
	pp_opt(p, m->batch_id);
	pp_text(p, m->content);
	pp_text(p, m->body);
	pp_i64(p, m->priority);
	pp_i64(p, m->max_attempts);
	pp_i64(p, created);
	pp_i64(p, m->updated_at ? m->updated_at : created);
	pp_i64(p, m->due_at ? m->due_at : created);
	pp_i64(p, m->segments);
	pp_opt(p, m->callback_url);
	pp_i64(p, (int64_t)m->policy);
	pp_i64(p, m->expires_at);
	pp_opt(p, m->route);
	pp_i64(p, m->route_step);
	pp_i64(p, m->route ? m->route_steps : 0);
	pp_opt(p, m->route ? m->route_root : NULL);
	pp_i64(p, m->route ? m->fallback_after : 0);
	pp_opt(p, m->unit);
}

#define PG_MSG_INSERT                                                                              \
	"INSERT INTO message(id, tenant_id, account_id, channel, recipient, batch_id, content,"    \
	" body, status, priority, attempts, max_attempts, created_at, updated_at, due_at,"         \
	" lease_until, segments, callback_url, delivery_policy, expires_at, route, route_step,"   \
	" route_steps, route_root, fallback_after, unit_id)"                                       \
	" VALUES($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 0, $10, $11, $12, $13, 0, $14, $15, $16,"  \
	" $17, $18, $19, $20, $21, $22, $23)"

int pg_message_row_insert(struct pg_store *s, const struct message *m, int64_t now,
                          struct hr_err *err)
{
	struct pg_params p = {0};
	msg_params(&p, m, now);
	int rc = pg_exec(&s->w, P_MSG_INSERT, PG_MSG_INSERT, &p, NULL, err, "message");
	if (rc == HR_ECONFLICT)
		hr_fail(err, rc, "id", "message id %s already exists", m->id);
	return rc;
}


enum { IC_COLS = 23 };

bool pg_status_params(struct pg_params *p, int stripe, const int64_t delta[MSG__COUNT],
                      char buf[PG_STATUS_BUF])
{
	char *ss = buf, *ds = buf + PG_STATUS_BUF / 2;
	size_t sl = 0, dl = 0;
	ss[sl++] = '{';
	ds[dl++] = '{';
	for (int i = 0; i < MSG__COUNT; i++) {
		if (!delta[i])
			continue;
		sl +=
		    (size_t)snprintf(ss + sl, PG_STATUS_BUF / 2 - sl, "%s%d", sl > 1 ? "," : "", i);
		dl += (size_t)snprintf(ds + dl, PG_STATUS_BUF / 2 - dl, "%s%lld", dl > 1 ? "," : "",
		                       (long long)delta[i]);
	}
	if (sl == 1)
		return false;
	ss[sl++] = '}';
	ss[sl] = '\0';
	ds[dl++] = '}';
	ds[dl] = '\0';
	pp_i64(p, stripe);
	pp_text(p, ss);
	pp_text(p, ds);
	return true;
}

/* The accept's Idempotency-Key on its messages (search finds them by it),
 * in the accept's transaction: one statement whatever their count. */
static int set_idem_key(struct pg_store *s, struct wr_job *j, const struct job_insert *a)
{
	if (!a->idem || !a->idem->client_key || a->n == 0)
		return 0;
	struct hr_buf ids = {0};
	for (size_t i = 0; i < a->n; i++)
		pg_arr_text(&ids, a->msgs[i].id);
	const char *v = pg_arr_end(&ids);
	int rc;
	if (!v) {
		rc = hr_fail(&j->err, HR_ENOMEM, "message", "out of memory");
	} else {
		struct pg_params p = {0};
		pp_text(&p, a->idem->client_key);
		pp_text(&p, v);
		rc = pg_wdo(s, j, P_MSG_IDEM_KEY,
		            "UPDATE message SET idem_key = $1 WHERE id = ANY($2::text[])", &p,
		            "Idempotency-Key", NULL);
	}
	free(ids.p);
	return rc;
}

/*
 * Every message of the call with its "accepted" event in one statement,
 * whatever the count: each column travels as one array and unnest() turns
 * them back into rows (one round trip for a 10,000-message batch, not
 * 10,000). The idempotency row goes first, so a replayed key costs nothing
 * before failing.
 */
static int run_insert(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_insert *a = (struct job_insert *)j;
	int rc;
	if (a->idem && (rc = insert_idem(s, j, a->idem)))
		return rc;
	if (a->n == 0)
		return 0;
	/* The daily cap's counter first (herald_daily_take raises past the
	 * cap, which rolls the job back): one statement per run of one
	 * tenant's messages, so the job stays pipeable. */
	for (size_t i = 0; i < a->n;) {
		size_t k = i + 1;
		while (k < a->n && strcmp(a->msgs[k].tenant_id, a->msgs[i].tenant_id) == 0)
			k++;
		struct pg_params dp = {0};
		pp_text(&dp, a->msgs[i].tenant_id);
		pp_i64(&dp, store_day(s->gnow));
		pp_i64(&dp, (int64_t)(k - i));
		if ((rc = pg_wdo(s, j, P_DAILY_TAKE, "SELECT herald_daily_take($1, $2, $3)", &dp,
		                 "daily_cap", NULL)))
			return rc;
		i = k;
	}
	/* The messages join this node's QUEUED count with the group's commit
	 * (postgres.c w_commit), if this job's statement succeeds. */
	int64_t d[MSG__COUNT] = {[MSG_QUEUED] = (int64_t)a->n};
	if ((rc = pg_status_note(s, j, d, &j->err)))
		return rc;
	/* and the daily "accepted" counters, the same way. */
	struct daily_acc dd = {0};
	for (size_t i = 0; i < a->n; i++)
		daily_transition(&dd, a->msgs[i].tenant_id, a->msgs[i].channel, s->gnow, -1,
		                 MSG_QUEUED);
	rc = pg_daily_note(s, j, &dd, &j->err);
	daily_free(&dd);
	if (rc)
		return rc;
	if (a->n == 1) { /* the API's single send: a plain VALUES plans cheaper */
		const struct message *m = &a->msgs[0];
		struct pg_params p = {0};
		msg_params(&p, m, s->gnow);
		pp_i64(&p, s->gnow);
		char conflict[80];
		snprintf(conflict, sizeof conflict, "message id %s already exists", m->id);
		rc =
		    pg_wdo(s, j, P_MSG_ACCEPT,
		           "WITH m AS (" PG_MSG_INSERT " RETURNING id)"
		           " INSERT INTO message_event(message_id, at, provider_at, type, source,"
		           " status, applied) SELECT id, $24, 0, 'accepted', 'api', 0, true FROM m",
		           &p, "id", conflict);
		return rc ? rc : set_idem_key(s, j, a);
	}
	struct hr_buf col[IC_COLS] = {0};
	for (size_t i = 0; i < a->n; i++) {
		const struct message *m = &a->msgs[i];
		int64_t created = m->created_at ? m->created_at : s->gnow;
		pg_arr_text(&col[0], m->id);
		pg_arr_text(&col[1], m->tenant_id);
		pg_arr_text(&col[2], m->account_id);
		pg_arr_text(&col[3], m->channel);
		pg_arr_text(&col[4], m->recipient);
		pg_arr_text(&col[5], m->batch_id[0] ? m->batch_id : NULL);
		pg_arr_text(&col[6], m->content);
		pg_arr_text(&col[7], m->body);
		pg_arr_i64(&col[8], m->priority);
		pg_arr_i64(&col[9], m->max_attempts);
		pg_arr_i64(&col[10], created);
		pg_arr_i64(&col[11], m->updated_at ? m->updated_at : created);
		pg_arr_i64(&col[12], m->due_at ? m->due_at : created);
		pg_arr_i64(&col[13], m->segments);
		pg_arr_text(&col[14],
		            m->callback_url && m->callback_url[0] ? m->callback_url : NULL);
		pg_arr_i64(&col[15], (int64_t)m->policy);
		pg_arr_i64(&col[16], m->expires_at);
		pg_arr_text(&col[17], m->route);
		pg_arr_i64(&col[18], m->route_step);
		pg_arr_i64(&col[19], m->route ? m->route_steps : 0);
		pg_arr_text(&col[20], m->route && m->route_root[0] ? m->route_root : NULL);
		pg_arr_i64(&col[21], m->route ? m->fallback_after : 0);
		pg_arr_text(&col[22], m->unit[0] ? m->unit : NULL);
	}
	struct pg_params p = {0};
	bool oom = false;
	for (int c = 0; c < IC_COLS; c++) {
		const char *v = pg_arr_end(&col[c]);
		oom |= v == NULL;
		pp_text(&p, v ? v : "{}");
	}
	pp_i64(&p, s->gnow);
	if (oom)
		rc = hr_fail(&j->err, HR_ENOMEM, "message", "out of memory");
	else
		rc = pg_wdo(
		    s, j, P_MSG_ACCEPT_MANY,
		    "WITH m AS (INSERT INTO message(id, tenant_id, account_id, channel,"
		    " recipient, batch_id, content, body, status, priority, attempts,"
		    " max_attempts, created_at, updated_at, due_at, lease_until, segments,"
		    " callback_url, delivery_policy, expires_at, route, route_step, route_steps,"
		    " route_root, fallback_after, unit_id)"
		    " SELECT id, tenant_id, account_id, channel, recipient, batch_id, content,"
		    " body, 0, priority, 0, max_attempts, created_at, updated_at, due_at, 0,"
		    " segments, callback_url, delivery_policy, expires_at, route, route_step,"
		    " route_steps, route_root, fallback_after, unit_id FROM unnest($1::text[],"
		    " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
		    " $8::text[], $9::int[], $10::int[], $11::bigint[], $12::bigint[],"
		    " $13::bigint[], $14::int[], $15::text[], $16::smallint[], $17::bigint[],"
		    " $18::text[], $19::int[], $20::int[], $21::text[], $22::bigint[], $23::text[])"
		    " AS u(id, tenant_id, account_id, channel, recipient, batch_id, content,"
		    " body, priority, max_attempts, created_at, updated_at, due_at, segments,"
		    " callback_url, delivery_policy, expires_at, route, route_step, route_steps,"
		    " route_root, fallback_after, unit_id)"
		    " RETURNING id)"
		    " INSERT INTO message_event(message_id, at, provider_at, type, source,"
		    " status, applied) SELECT id, $24, 0, 'accepted', 'api', 0, true FROM m",
		    &p, "id", "a message id of the batch already exists");
	for (int c = 0; c < IC_COLS; c++)
		free(col[c].p);
	return rc ? rc : set_idem_key(s, j, a);
}

int pg_message_insert(struct store *st, const struct message *msgs, size_t n,
                      const struct idem_put *idem, store_done_fn cb, void *arg)
{
	struct pg_store *s = (struct pg_store *)st;
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
	/* Large batches are one statement already and run alone: a pipeline
	 * of them would hold every one's arrays in libpq's buffer at once. */
	struct job_insert a = {.j = {.run = run_insert, .limited = true, .pipeable = n <= 64},
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

static int get_one(struct pg_store *s, enum pg_slot slot, const char *sql, const char *p1,
                   const char *p2, struct message *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_text(&p, p1 ? p1 : "");
	pp_text(&p, p2);
	PGresult *r;
	int rc = pg_read(s, slot, -1, sql, &p, &r);
	if (rc)
		return rc;
	rc = PQntuples(r) ? pg_row_message(r, 0, 0, out) : HR_ENOTFOUND;
	if (rc == 0 && PQnfields(r) > PG_MSG_NCOLS)
		pg_col_copy(r, 0, PG_MSG_NCOLS, out->unit, sizeof out->unit);
	PQclear(r);
	return rc;
}

int pg_message_get(struct store *st, const char *tenant_id, const char *id, struct message *out)
{
	return get_one((struct pg_store *)st, P_MSG_GET,
	               "SELECT " PG_MSG_COLS ", unit_id FROM message"
	               " WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)",
	               id, tenant_id, out);
}

int pg_message_get_by_provider_id(struct store *st, const char *account_id, const char *provider_id,
                                  struct message *out)
{
	if (!account_id || !*account_id || !provider_id || !*provider_id) {
		memset(out, 0, sizeof *out);
		return HR_ENOTFOUND;
	}
	return get_one((struct pg_store *)st, P_MSG_GET_PROVIDER,
	               "SELECT " PG_MSG_COLS " FROM message"
	               " WHERE account_id = $1 AND provider_id = $2 LIMIT 1",
	               account_id, provider_id, out);
}

int pg_message_events(struct store *st, const char *message_id, struct message_event **out,
                      size_t *n)
{
	*out = NULL;
	*n = 0;
	struct pg_params p = {0};
	pp_text(&p, message_id ? message_id : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_EVENTS, -1,
	                 "SELECT id, message_id, at, provider_at, type, source, status, applied,"
	                 " detail FROM message_event WHERE message_id = $1 ORDER BY id",
	                 &p, &r);
	if (rc)
		return rc;
	void *v;
	rc = pg_rows_read(r, sizeof **out, store_row_message_event, NULL,
	                  store_row_message_event_clear, &v, n);
	*out = v;
	return rc;
}

/* Optional filters of message_list, one bit each; each combination is its
 * own prepared statement (PostgreSQL plans it for exactly those terms). */
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
	/* Search filters: a combination with any of these is prepared unnamed
	 * for the call (pg_read), not kept per connection. */
	LF_ID = 1 << 9,
	LF_PROVIDER = 1 << 10,
	LF_IDEM = 1 << 11,
	LF_ACCOUNT = 1 << 12,
	LF_ERROR = 1 << 13,
	LF_RALT = 1 << 14,
};

int pg_message_list(struct store *st, const char *tenant_id, const struct msg_filter *f,
                    struct message **out, size_t *n, bool *more)
{
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	struct msg_filter none = {.status = -1, .limit = 100};
	if (!f)
		f = &none;
	int limit = f->limit < 1 ? 100 : f->limit > 1000 ? 1000 : f->limit;
	unsigned mask = 0;
	struct pg_params p = {0};
	char sql[2048];
	size_t len =
	    (size_t)snprintf(sql, sizeof sql, "SELECT " PG_MSG_COLS ", unit_id FROM message WHERE true");
#define TERM(bit, cond, fmt, bind)                                                                 \
	if (cond) {                                                                                \
		mask |= bit;                                                                       \
		bind;                                                                              \
		len += (size_t)snprintf(sql + len, sizeof sql - len, fmt, p.n);                    \
	}
	TERM(LF_TENANT, tenant_id, " AND tenant_id = $%d", pp_text(&p, tenant_id));
	TERM(LF_STATUS, f->status >= 0, " AND status = $%d", pp_i64(&p, f->status));
	TERM(LF_CHANNEL, f->channel, " AND channel = $%d", pp_text(&p, f->channel));
	bool ralt = f->recipient && (f->recipient_alt[0] || f->recipient_alt[1]);
	TERM(LF_RECIPIENT, f->recipient && !ralt, " AND recipient = $%d",
	     pp_text(&p, f->recipient));
	if (ralt) {
		/* The other forms of the recipient (store.h); NULLs match nothing. */
		mask |= LF_RALT;
		pp_text(&p, f->recipient);
		pp_opt(&p, f->recipient_alt[0]);
		pp_opt(&p, f->recipient_alt[1]);
		len += (size_t)snprintf(sql + len, sizeof sql - len,
		                        " AND recipient IN ($%d, $%d, $%d)", p.n - 2, p.n - 1, p.n);
	}
	TERM(LF_BATCH, f->batch_id, " AND batch_id = $%d", pp_text(&p, f->batch_id));
	TERM(LF_SINCE, f->since_us, " AND created_at >= $%d", pp_i64(&p, f->since_us));
	TERM(LF_UNTIL, f->until_us, " AND created_at < $%d", pp_i64(&p, f->until_us));
	TERM(LF_BEFORE, f->before_id, " AND id < $%d", pp_text(&p, f->before_id));
	TERM(LF_UNIT, f->unit && f->unit[0], " AND unit_id = $%d", pp_text(&p, f->unit));
	TERM(LF_ID, f->id, " AND id = $%d", pp_text(&p, f->id));
	/* message_provider, once per account of the tenant (SQLite's
	 * migration 14 says why there is no tenant-wide provider id index). */
	TERM(LF_PROVIDER, f->provider_id,
	     tenant_id
	         ? " AND provider_id = $%d"
	           " AND account_id IN (SELECT id FROM channel_account WHERE tenant_id = $1)"
	         : " AND provider_id = $%d AND account_id IN (SELECT id FROM channel_account)",
	     pp_text(&p, f->provider_id));
	TERM(LF_IDEM, f->idem_key, " AND idem_key = $%d", pp_text(&p, f->idem_key));
	TERM(LF_ACCOUNT, f->account_id, " AND account_id = $%d", pp_text(&p, f->account_id));
	TERM(LF_ERROR, f->error_code, " AND error_code = $%d", pp_text(&p, f->error_code));
#undef TERM
	pp_i64(&p, limit + 1);
	snprintf(sql + len, sizeof sql - len, " ORDER BY id DESC LIMIT $%d", p.n);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_LIST, (int)mask, sql, &p, &r);
	if (rc)
		return rc;
	int rows = PQntuples(r);
	if (rows > limit) {
		rows = limit;
		if (more)
			*more = true;
	}
	struct message *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	for (int i = 0; i < rows && rc == 0; i++) {
		if ((rc = pg_row_message(r, i, 0, &v[i])))
			for (int k = 0; k < i; k++)
				message_clear(&v[k]);
		else
			pg_col_copy(r, i, PG_MSG_NCOLS, v[i].unit, sizeof v[i].unit);
	}
	PQclear(r);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_message_counts(struct store *st, const char *tenant_id, int64_t counts[MSG__COUNT])
{
	memset(counts, 0, sizeof(int64_t) * MSG__COUNT);
	struct pg_params p = {0};
	PGresult *r;
	int rc;
	if (tenant_id) {
		pp_text(&p, tenant_id);
		rc = pg_read((struct pg_store *)st, P_COUNTS_TENANT, -1,
		             "SELECT status, count(*) FROM message WHERE tenant_id = $1"
		             " GROUP BY status",
		             &p, &r);
	} else {
		rc = pg_read((struct pg_store *)st, P_COUNTS_ALL, -1,
		             "SELECT status, count(*) FROM message GROUP BY status", &p, &r);
	}
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t status = pg_col_i64(r, i, 0);
		if (status >= 0 && status < MSG__COUNT)
			counts[status] = pg_col_i64(r, i, 1);
	}
	PQclear(r);
	return 0;
}

int pg_message_gauges(struct store *st, int64_t counts[MSG__COUNT])
{
	memset(counts, 0, sizeof(int64_t) * MSG__COUNT);
	struct pg_params p = {0};
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_GAUGES, -1,
	                 "SELECT status, sum(n) FROM message_status_count GROUP BY status", &p, &r);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t status = pg_col_i64(r, i, 0);
		if (status >= 0 && status < MSG__COUNT)
			counts[status] = pg_col_i64(r, i, 1);
	}
	PQclear(r);
	return 0;
}

int pg_next_due(struct store *st, const char *account_id, int64_t *due_at)
{
	*due_at = 0;
	struct pg_params p = {0};
	pp_text(&p, account_id ? account_id : "");
	PGresult *r;
	/* One min() per priority class, each a single seek in message_claim. */
	int rc = pg_read((struct pg_store *)st, P_NEXT_DUE, -1,
	                 "SELECT min(d) FROM ("
	                 " SELECT min(due_at) AS d FROM message"
	                 "  WHERE status = 0 AND account_id = $1 AND priority = 0"
	                 " UNION ALL SELECT min(due_at) FROM message"
	                 "  WHERE status = 0 AND account_id = $1 AND priority = 1"
	                 " UNION ALL SELECT min(due_at) FROM message"
	                 "  WHERE status = 0 AND account_id = $1 AND (priority < 0 OR priority > 1)"
	                 ") AS q",
	                 &p, &r);
	if (rc)
		return rc;
	if (PQntuples(r))
		*due_at = pg_col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}
