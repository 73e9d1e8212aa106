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

#include "store/sqlite_int.h"

/* ---------------------------------------------------------------------------
 * Durable accept.
 * ------------------------------------------------------------------------- */

struct job_insert {
	struct sq_job j;
	const struct message *msgs;
	size_t n;
	const struct idem_put *idem;
};

static int insert_idem(struct sq_store *s, struct sq_job *j, const struct idem_put *p,
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

int sq_message_row_insert(struct sq_store *s, const struct message *m, int64_t now,
                          struct hr_err *err)
{
	sqlite3_stmt *st = sq_wstmt(s, W_MSG_INSERT,
		"INSERT INTO message(id, tenant_id, account_id, channel, recipient,"
		" batch_id, content, body, status, priority, attempts, max_attempts,"
		" created_at, updated_at, due_at, lease_until, segments)"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, 0, ?10, ?11, ?12, ?13, 0, ?14)");
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
	int rc = sq_step_done(s, st, err, "message");
	if (rc == HR_ECONFLICT)
		hr_fail(err, rc, "id", "message id %s already exists", m->id);
	return rc;
}

/* All messages of the call, each with its "accepted" event, and the
 * idempotency row first (so a replayed key costs nothing before failing). */
static int run_insert(struct sq_store *s, struct sq_job *j)
{
	struct job_insert *a = (struct job_insert *)j;
	int64_t now = hr_now_us();
	int rc;
	if (a->idem && (rc = insert_idem(s, j, a->idem, now)))
		return rc;
	for (size_t i = 0; i < a->n; i++) {
		const struct message *m = &a->msgs[i];
		if ((rc = sq_message_row_insert(s, m, now, &j->err)))
			return rc;
		rc = sq_event_insert(s, m->id, now, 0, "accepted", "api", MSG_QUEUED, true, NULL, 0,
		                     &j->err);
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
	struct job_insert a = {.j = {.run = run_insert, .limited = true}, .msgs = msgs, .n = n,
	                       .idem = idem};
	if (cb)
		return sq_run_async(s, &a.j, sizeof a, cb, arg);
	return sq_run_blocking(s, &a.j, NULL);
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
	if (src == SQLITE_ROW)
		rc = sq_row_message(q, 0, out);
	else
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	return rc;
}

int sq_message_get(struct store *st, const char *tenant_id, const char *id,
                   struct message *out)
{
	return get_one((struct sq_store *)st, R_MSG_GET,
	               "SELECT " SQ_MSG_COLS " FROM message"
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
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = sq_rstmt(r, R_EVENTS,
		"SELECT id, message_id, at, provider_at, type, source, status, applied, detail"
		" FROM message_event WHERE message_id = ?1 ORDER BY id");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, message_id ? message_id : "", -1, SQLITE_STATIC);
	struct message_event *v = NULL;
	size_t len = 0, cap = 0;
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		if (len == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct message_event *nv = realloc(v, nc * sizeof *v);
			if (!nv) {
				rc = HR_ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		struct message_event *e = &v[len];
		bool oom = false;
		memset(e, 0, sizeof *e);
		e->id = sqlite3_column_int64(q, 0);
		sq_col_copy(q, 1, e->message_id, sizeof e->message_id);
		e->at = sqlite3_column_int64(q, 2);
		e->provider_at = sqlite3_column_int64(q, 3);
		sq_col_copy(q, 4, e->type, sizeof e->type);
		sq_col_copy(q, 5, e->source, sizeof e->source);
		e->status = sqlite3_column_type(q, 6) == SQLITE_NULL ? -1
		                                                      : sqlite3_column_int(q, 6);
		e->applied = sqlite3_column_int(q, 7) != 0;
		e->detail = sq_col_dup(q, 8, &oom);
		if (oom) {
			rc = HR_ENOMEM;
			break;
		}
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			message_event_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

/* Optional filters of message_list, one bit each; the statement for each
 * combination is built once per reader connection and cached. */
enum {
	LF_TENANT = 1 << 0, LF_STATUS = 1 << 1, LF_CHANNEL = 1 << 2, LF_RECIPIENT = 1 << 3,
	LF_BATCH = 1 << 4, LF_SINCE = 1 << 5, LF_UNTIL = 1 << 6, LF_BEFORE = 1 << 7,
};

static sqlite3_stmt *list_stmt(struct sq_reader *r, unsigned mask)
{
	if (r->list[mask]) {
		sqlite3_reset(r->list[mask]);
		return r->list[mask];
	}
	static const char *const terms[] = {
		" AND tenant_id = ?1", " AND status = ?2", " AND channel = ?3",
		" AND recipient = ?4", " AND batch_id = ?5", " AND created_at >= ?6",
		" AND created_at < ?7", " AND id < ?8",
	};
	char sql[1024];
	size_t len = (size_t)snprintf(sql, sizeof sql,
	                              "SELECT " SQ_MSG_COLS " FROM message WHERE 1");
	for (unsigned b = 0; b < 8; b++)
		if (mask & (1u << b))
			len += (size_t)snprintf(sql + len, sizeof sql - len, "%s", terms[b]);
	snprintf(sql + len, sizeof sql - len, " ORDER BY id DESC LIMIT ?9");
	if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &r->list[mask],
	                       NULL) != SQLITE_OK) {
		r->list[mask] = NULL;
		return NULL;
	}
	return r->list[mask];
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
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
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
	int src;
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

/* ---------------------------------------------------------------------------
 * Claim.
 * ------------------------------------------------------------------------- */

struct job_claim {
	struct sq_job j;
	const char *account_id;
	int64_t now, lease_us;
	int limit;
	struct message *out;
	size_t n;
};

/* The message's recipient moved (old -> to): rewritten, with its event. */
static int migrate_recipient(struct sq_store *s, struct sq_job *j, const char *id,
                             const char *from, const char *to, int64_t now)
{
	sqlite3_stmt *u = sq_wstmt(s, W_MSG_RECIPIENT,
		"UPDATE message SET recipient = ?2, updated_at = ?3 WHERE id = ?1");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	sqlite3_bind_text(u, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 2, to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(u, 3, now);
	int rc = sq_step_done(s, u, &j->err, "message");
	if (rc)
		return rc;
	sq_json_begin(&s->json);
	sq_json_str(&s->json, "from", from);
	sq_json_str(&s->json, "to", to);
	const char *detail = sq_json_end(&s->json);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	return sq_event_insert(s, id, now, 0, "recipient_migrated", "dispatcher", -1, true, detail,
	                       0, &j->err);
}

/* The error text of a suppressed message whose suppression has no reason. */
#define SQ_SUPPRESSED_TEXT "the recipient opted out"

/* A claimed message whose recipient opted out: SUPPRESSED instead of
 * SENDING, with the attempt the claim counted given back (nothing was
 * attempted), error code "suppressed" (the API shows it; clients match on
 * it), the reason as its error text, and a "suppressed" event. */
static int suppress_claimed(struct sq_store *s, struct sq_job *j, const char *id,
                            const char *reason, int64_t now)
{
	sqlite3_stmt *u = sq_wstmt(s, W_MSG_SUPPRESSED,
		"UPDATE message SET status = 9, attempts = max(attempts - 1, 0), lease_until = 0,"
		" error_code = 'suppressed', error_text = coalesce(nullif(?2, ''), ?4),"
		" updated_at = ?3 WHERE id = ?1");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	sqlite3_bind_text(u, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(u, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(u, 3, now);
	sqlite3_bind_text(u, 4, SQ_SUPPRESSED_TEXT, -1, SQLITE_STATIC);
	int rc = sq_step_done(s, u, &j->err, "message");
	if (rc)
		return rc;
	sq_json_begin(&s->json);
	sq_json_str(&s->json, "reason", reason);
	const char *detail = sq_json_end(&s->json);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	return sq_event_insert(s, id, now, 0, "suppressed", "dispatcher", MSG_SUPPRESSED, true,
	                       detail, 0, &j->err);
}

/*
 * Screens the claimed rows: an address the account knows has moved is
 * rewritten (and returned rewritten), then a recipient on the tenant's
 * suppression list for the channel (under its old or new address) becomes
 * SUPPRESSED and is returned with that status (the caller must not send
 * it). One probe per claim for aliases and one per (tenant, channel) for
 * suppressions decide whether any per-message lookup is needed, so the
 * common case costs two index seeks per claim.
 */
static int claim_screen(struct sq_store *s, struct job_claim *c)
{
	struct sq_job *j = &c->j;
	int alias = sq_alias_any(s, c->account_id, &j->err);
	if (alias < 0)
		return alias;
	char tenant[HR_NAME_MAX] = "", channel[16] = "";
	int supp = -1, rc;
	for (size_t i = 0; i < c->n; i++) {
		struct message *m = &c->out[i];
		char orig[HR_ADDR_MAX], to[HR_ADDR_MAX];
		bool moved = false;
		hr_strlcpy(orig, m->recipient, sizeof orig);
		if (alias && (rc = sq_alias_get(s, c->account_id, orig, to, &j->err)) != 0) {
			if (rc < 0)
				return rc;
			if (strcmp(to, orig) != 0) {
				if ((rc = migrate_recipient(s, j, m->id, orig, to, c->now)))
					return rc;
				hr_strlcpy(m->recipient, to, sizeof m->recipient);
				moved = true;
			}
		}
		if (supp < 0 || strcmp(tenant, m->tenant_id) != 0 ||
		    strcmp(channel, m->channel) != 0) {
			hr_strlcpy(tenant, m->tenant_id, sizeof tenant);
			hr_strlcpy(channel, m->channel, sizeof channel);
			if ((supp = sq_supp_any(s, tenant, channel, &j->err)) < 0)
				return supp;
		}
		if (!supp)
			continue;
		char reason[SQ_REASON_MAX];
		rc = sq_supp_reason(s, tenant, channel, m->recipient, reason, &j->err);
		if (rc == 0 && moved)
			rc = sq_supp_reason(s, tenant, channel, orig, reason, &j->err);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			if ((rc = suppress_claimed(s, j, m->id, reason, c->now)))
				return rc;
			/* Returned marked, not sent: the dispatcher tells a sync
			 * waiter at once instead of letting it time out. */
			m->status = MSG_SUPPRESSED;
			hr_utf8_copy(m->error_text, reason[0] ? reason : SQ_SUPPRESSED_TEXT,
			             sizeof m->error_text);
			hr_strlcpy(m->error_code, "suppressed", sizeof m->error_code);
		}
	}
	return 0;
}

static int run_claim(struct sq_store *s, struct sq_job *j)
{
	struct job_claim *c = (struct job_claim *)j;
	sqlite3_stmt *st = sq_wstmt(s, W_CLAIM,
		"UPDATE message SET status = 1, attempts = attempts + 1, lease_until = ?3,"
		" updated_at = ?2"
		" WHERE id IN (SELECT id FROM message WHERE status = 0 AND account_id = ?1"
		"  AND due_at <= ?2 ORDER BY priority, due_at, id LIMIT ?4)"
		" RETURNING " SQ_MSG_COLS);
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "claim");
	sqlite3_bind_text(st, 1, c->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, c->now);
	sqlite3_bind_int64(st, 3, c->now + c->lease_us);
	sqlite3_bind_int(st, 4, c->limit);
	int src, rc = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (c->n >= (size_t)c->limit)
			continue; /* cannot happen: LIMIT bounds the update */
		if ((rc = sq_row_message(st, 0, &c->out[c->n])))
			break;
		c->n++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(s->wdb, src, &j->err, "claim");
	else if (rc)
		hr_fail(&j->err, rc, "claim", "out of memory");
	sqlite3_reset(st);
	if (rc == 0 && c->n)
		rc = claim_screen(s, c);
	return rc;
}

static int claim_order(const void *a, const void *b)
{
	const struct message *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

int sq_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
             int limit, struct message *out, size_t *n)
{
	*n = 0;
	if (!account_id || !*account_id || limit < 0)
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	struct job_claim c = {.j = {.run = run_claim}, .account_id = account_id, .now = now,
	                      .lease_us = lease_us, .limit = limit, .out = out};
	int rc = sq_run_blocking((struct sq_store *)st, &c.j, NULL);
	if (rc) {
		/* Rolled back: the rows read into out[] were never claimed. */
		for (size_t i = 0; i < c.n; i++)
			message_clear(&out[i]);
		return rc;
	}
	/* RETURNING does not promise the subquery's order; callers want it. */
	qsort(out, c.n, sizeof *out, claim_order);
	*n = c.n;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Send outcomes and lease expiry.
 * ------------------------------------------------------------------------- */

struct job_results {
	struct sq_job j;
	const struct send_result *r;
	size_t n;
};

/* Lease expiry with no attempt left: the default of max_attempts = 0 rows. */
#define SQ_MAX_ATTEMPTS_DEFAULT 8

/*
 * Whether an outcome may change its message. Only the claim that is still
 * current may: the message is SENDING with the attempt number the claim
 * gave it. A result for an older attempt (its lease expired, the message
 * was claimed again) is stale: applying it would overwrite the newer
 * attempt's state. The one exception is a message that lease expiry gave up
 * on as UNKNOWN: a late SENT or FAILED for that same last attempt is exactly
 * the answer that was missing (no claim can have happened since).
 */
static bool result_current(const struct send_result *r, enum msg_status cur, int attempts)
{
	if (attempts != r->attempt)
		return false;
	return cur == MSG_SENDING || (cur == MSG_UNKNOWN && r->kind != SEND_RETRY);
}

/*
 * The provider said the recipient opted out (Twilio 21610): a fact about the
 * address, not about this attempt, so it is recorded even for a stale
 * outcome. Reason "<error_code>: <error_text>".
 */
static int suppress_from_result(struct sq_store *s, struct sq_job *j, const char *tenant,
                                const char *channel, const char *recipient, const char *code,
                                const char *text, int64_t now)
{
	char reason[SQ_REASON_MAX];
	const char *one = code[0] ? code : text[0] ? text : "provider reported an opt-out";
	if (code[0] && text[0])
		snprintf(reason, sizeof reason, "%s: %s", code, text);
	else
		snprintf(reason, sizeof reason, "%s", one);
	return sq_supp_put(s, tenant, channel, recipient, reason, now, &j->err);
}

/*
 * The recipient moved (new_recipient): the message follows it, and the
 * account remembers old -> new so later claims of messages still addressed
 * to the old address send them to the new one. Only for a current outcome:
 * a stale one must not rewrite a message a newer attempt owns (that attempt
 * will meet the same answer).
 */
static int move_from_result(struct sq_store *s, struct sq_job *j, const struct send_result *r,
                            const char *account, const char *recipient, int64_t now)
{
	char to[HR_ADDR_MAX];
	hr_utf8_copy(to, r->new_recipient, sizeof to);
	if (!to[0] || strcmp(to, recipient) == 0)
		return 0;
	int rc = migrate_recipient(s, j, r->message_id, recipient, to, now);
	if (rc == 0)
		rc = sq_alias_put(s, account, recipient, to, now, &j->err);
	return rc;
}

/*
 * One outcome: the status move if the result is current (result_current)
 * and its audit event either way. A stale SEND_OK still stores its provider
 * id when the message has none: the provider did accept that copy, and its
 * receipts must find the message. Then what the outcome says about the
 * recipient: an opt-out (suppress) and a new address (new_recipient). Texts
 * from the provider are stored as valid UTF-8. HR_ENOTFOUND for a message
 * id that does not exist.
 */
static int record_one(struct sq_store *s, struct sq_job *j, const struct send_result *r,
                      int64_t now)
{
	char pid[HR_PROVIDER_ID_MAX], code[HR_ERRCODE_MAX], text[HR_ERRTEXT_MAX];
	hr_utf8_copy(pid, r->provider_id, sizeof pid);
	hr_utf8_copy(code, r->error_code, sizeof code);
	hr_utf8_copy(text, r->error_text, sizeof text);

	enum msg_status next;
	const char *type;
	switch (r->kind) {
	case SEND_OK: next = MSG_SENT; type = "sent"; break;
	case SEND_RETRY: next = MSG_QUEUED; type = "retry"; break;
	case SEND_FAILED: next = MSG_FAILED; type = "failed"; break;
	default:
		return hr_fail(&j->err, HR_EINVAL, "kind", "unknown send result kind %d", r->kind);
	}

	sqlite3_stmt *q = sq_wstmt(s, W_MSG_STATE,
		"SELECT rowid, status, attempts, provider_id IS NULL, tenant_id, account_id,"
		" channel, recipient FROM message WHERE id = ?1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	sqlite3_bind_text(q, 1, r->message_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src != SQLITE_ROW) {
		sqlite3_reset(q);
		if (src == SQLITE_DONE)
			return hr_fail(&j->err, HR_ENOTFOUND, "message_id", "no message %s",
			               r->message_id);
		return sq_fail(s->wdb, src, &j->err, "message");
	}
	int64_t rowid = sqlite3_column_int64(q, 0);
	enum msg_status cur = (enum msg_status)sqlite3_column_int(q, 1);
	int attempts = sqlite3_column_int(q, 2);
	bool no_pid = sqlite3_column_int(q, 3) != 0;
	char tenant[HR_NAME_MAX], account[HR_NAME_MAX], channel[16], recipient[HR_ADDR_MAX];
	sq_col_copy(q, 4, tenant, sizeof tenant);
	sq_col_copy(q, 5, account, sizeof account);
	sq_col_copy(q, 6, channel, sizeof channel);
	sq_col_copy(q, 7, recipient, sizeof recipient);
	sqlite3_reset(q);

	bool apply = result_current(r, cur, attempts);
	bool pid_stored = false;
	sqlite3_stmt *u = NULL;
	if (apply && r->kind == SEND_OK) {
		u = sq_wstmt(s, W_RESULT_OK,
			"UPDATE message SET status = 2, provider_id = coalesce(?2, provider_id),"
			" lease_until = 0, updated_at = ?3, error_code = NULL, error_text = NULL"
			" WHERE rowid = ?1");
		if (u) {
			sq_bind_opt(u, 2, pid);
			sqlite3_bind_int64(u, 3, now);
		}
	} else if (apply && r->kind == SEND_RETRY) {
		u = sq_wstmt(s, W_RESULT_RETRY,
			"UPDATE message SET status = 0, due_at = ?2, lease_until = 0,"
			" error_code = ?3, error_text = ?4, updated_at = ?5 WHERE rowid = ?1");
		if (u) {
			sqlite3_bind_int64(u, 2, r->due_at);
			sq_bind_opt(u, 3, code);
			sq_bind_opt(u, 4, text);
			sqlite3_bind_int64(u, 5, now);
		}
	} else if (apply) {
		u = sq_wstmt(s, W_RESULT_FAILED,
			"UPDATE message SET status = 5, lease_until = 0, error_code = ?2,"
			" error_text = ?3, updated_at = ?4 WHERE rowid = ?1");
		if (u) {
			sq_bind_opt(u, 2, code);
			sq_bind_opt(u, 3, text);
			sqlite3_bind_int64(u, 4, now);
		}
	} else if (r->kind == SEND_OK && pid[0] && no_pid) {
		u = sq_wstmt(s, W_RESULT_STALE,
			"UPDATE message SET provider_id = ?2, updated_at = ?3"
			" WHERE rowid = ?1 AND provider_id IS NULL");
		if (u) {
			sqlite3_bind_text(u, 2, pid, -1, SQLITE_STATIC);
			sqlite3_bind_int64(u, 3, now);
		}
		pid_stored = true;
	}
	if (apply || pid_stored) {
		if (!u)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
		sqlite3_bind_int64(u, 1, rowid);
		int rc = sq_step_done(s, u, &j->err, "message");
		if (rc)
			return rc;
	}

	struct sq_json *js = &s->json;
	sq_json_begin(js);
	if (r->http_status)
		sq_json_int(js, "http_status", r->http_status);
	sq_json_int(js, "latency_ms", r->latency_us / 1000);
	sq_json_int(js, "attempt", r->attempt);
	if (pid[0])
		sq_json_str(js, "provider_id", pid);
	if (code[0])
		sq_json_str(js, "error_code", code);
	if (text[0])
		sq_json_str(js, "error_text", text);
	if (r->error_class)
		sq_json_str(js, "class", r->error_class);
	if (r->kind == SEND_RETRY)
		sq_json_int(js, "due_at", r->due_at);
	if (r->suppress)
		sq_json_bool(js, "recipient_suppressed", true);
	if (!apply) {
		sq_json_str(js, "ignored", "stale_attempt");
		sq_json_int(js, "current_attempt", attempts);
		sq_json_str(js, "current", msg_status_name(cur));
		if (pid_stored)
			sq_json_bool(js, "provider_id_stored", true);
	}
	const char *detail = sq_json_end(js);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	int rc = sq_event_insert(s, r->message_id, now, 0, type, "dispatcher", next, apply,
	                         detail, 0, &j->err);
	if (rc)
		return rc;
	if (r->suppress && (rc = suppress_from_result(s, j, tenant, channel, recipient, code,
	                                               text, now)))
		return rc;
	return apply ? move_from_result(s, j, r, account, recipient, now) : 0;
}

/*
 * Each outcome in its own savepoint: one that fails is rolled back alone and
 * logged, the others stay, and the job succeeds. Only losing the whole
 * transaction (SQLite rolled it back: disk full, I/O error) fails the job.
 */
static int run_results(struct sq_store *s, struct sq_job *j)
{
	struct job_results *a = (struct job_results *)j;
	int64_t now = hr_now_us();
	for (size_t i = 0; i < a->n; i++) {
		if (sq_wexec(s, W_ITEM_SAVEPOINT, "SAVEPOINT item") != SQLITE_OK)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "record_results");
		int rc = record_one(s, j, &a->r[i], now);
		if (sqlite3_get_autocommit(s->wdb))
			return rc ? rc : hr_fail(&j->err, HR_EIO, "record_results",
			                         "transaction aborted");
		if (rc) {
			hr_log(HR_LOG_WARN, "store", "send outcome for %s not recorded: %s",
			       a->r[i].message_id, j->err.msg);
			hr_err_clear(&j->err);
			if (sq_wexec(s, W_ITEM_ROLLBACK_TO, "ROLLBACK TO item") != SQLITE_OK)
				return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "record_results");
		}
		if (sq_wexec(s, W_ITEM_RELEASE, "RELEASE item") != SQLITE_OK)
			return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "record_results");
	}
	return 0;
}

int sq_record_results(struct store *st, const struct send_result *r, size_t n,
                      store_done_fn cb, void *arg)
{
	struct sq_store *s = (struct sq_store *)st;
	if (n && !r)
		return HR_EINVAL;
	struct job_results a = {.j = {.run = run_results}, .r = r, .n = n};
	if (cb)
		return sq_run_async(s, &a.j, sizeof a, cb, arg);
	return sq_run_blocking(s, &a.j, NULL);
}

struct job_requeue {
	struct sq_job j;
	int64_t now;
	int n;
};

/*
 * The events first (they read the rows about to change), then the update;
 * both walk the partial index of SENDING rows by lease_until. A message
 * whose lease ran out on its last allowed attempt goes to UNKNOWN, not
 * back to the queue: the provider may well have accepted it (the process
 * stopped between the send and recording the answer), and another attempt
 * beyond the limit would be a duplicate nobody allowed.
 */
static int run_requeue(struct sq_store *s, struct sq_job *j)
{
	struct job_requeue *a = (struct job_requeue *)j;
	sqlite3_stmt *e = sq_wstmt(s, W_REQUEUE_EVENTS,
		"INSERT INTO message_event(message_id, at, provider_at, type, source, status,"
		" applied, detail)"
		" SELECT id, ?1, 0, 'lease_expired', 'reconciler', iif(spent, 10, 0), 1,"
		"  '{\"lease_until\":' || lease_until || ',\"attempt\":' || attempts"
		"  || ',\"max_attempts\":' || lim || iif(spent,"
		"   ',\"outcome\":\"unknown\",\"reason\":\"lease expired on the last attempt:"
		" the process stopped between handing the message to the provider and"
		" recording the answer\"}',"
		"   ',\"outcome\":\"requeued\"}')"
		" FROM (SELECT id, lease_until, attempts, lim, attempts >= lim AS spent"
		"  FROM (SELECT id, lease_until, attempts,"
		"   iif(max_attempts > 0, max_attempts, ?2) AS lim"
		"   FROM message WHERE status = 1 AND lease_until < ?1))");
	if (!e)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message_event");
	sqlite3_bind_int64(e, 1, a->now);
	sqlite3_bind_int(e, 2, SQ_MAX_ATTEMPTS_DEFAULT);
	int rc = sq_step_done(s, e, &j->err, "message_event");
	if (rc)
		return rc;
	sqlite3_stmt *u = sq_wstmt(s, W_REQUEUE,
		"UPDATE message SET"
		" status = iif(attempts >= iif(max_attempts > 0, max_attempts, ?2), 10, 0),"
		" due_at = iif(attempts >= iif(max_attempts > 0, max_attempts, ?2), due_at, ?1),"
		" lease_until = 0, updated_at = ?1"
		" WHERE status = 1 AND lease_until < ?1");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	sqlite3_bind_int64(u, 1, a->now);
	sqlite3_bind_int(u, 2, SQ_MAX_ATTEMPTS_DEFAULT);
	if ((rc = sq_step_done(s, u, &j->err, "message")))
		return rc;
	a->n = sqlite3_changes(s->wdb);
	return 0;
}

int sq_requeue_expired(struct store *st, int64_t now, int *n)
{
	struct job_requeue a = {.j = {.run = run_requeue}, .now = now};
	int rc = sq_run_blocking((struct sq_store *)st, &a.j, NULL);
	if (n)
		*n = rc ? 0 : a.n;
	return rc;
}
