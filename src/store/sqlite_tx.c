/*
 * sqlite_tx.c - the SQLite backend's side of lifecycle.h: lifecycle
 * functions run as writer jobs (inside the group transaction, each in its
 * own savepoint), and struct store_tx_ops over the writer's connection and
 * cached statements. Storage only: every decision is lifecycle.c's.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "store/sqlite_int.h"

/* A lifecycle function as a writer job. The context follows the struct for
 * async jobs (copied with it); blocking jobs point at the caller's. */
struct job_lc {
	struct wr_job j;
	lc_tx_fn fn;
	void *ctx;
	bool ctx_inline;
};

/* The transaction handle lifecycle sees: the store and the running job. */
struct sq_tx {
	struct store_tx base;
	struct sq_store *s;
	struct wr_job *j;
	int64_t now;
};

static const struct store_tx_ops sq_tx_ops;

static int run_lc(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_lc *l = (struct job_lc *)j;
	struct sq_tx tx = {.base = {.ops = &sq_tx_ops}, .s = s, .j = j, .now = hr_now_us()};
	void *ctx = l->ctx_inline ? (void *)(l + 1) : l->ctx;
	return l->fn(&tx.base, ctx);
}

static int sq_lc_run(struct store *st, lc_tx_fn fn, void *ctx, size_t ctx_size, store_done_fn cb,
                     void *arg, struct hr_err *err)
{
	struct sq_store *s = (struct sq_store *)st;
	if (!cb) {
		/* Lifecycle functions may be run again (lifecycle.h, lc_tx_fn). */
		struct job_lc l = {.j = {.run = run_lc, .replayable = true}, .fn = fn, .ctx = ctx};
		return wr_run_blocking(&s->wr, &l.j, err);
	}
	size_t size = sizeof(struct job_lc) + ctx_size;
	struct job_lc *l = calloc(1, size);
	if (!l)
		return HR_ENOMEM;
	l->j.run = run_lc;
	l->j.replayable = true;
	l->fn = fn;
	l->ctx_inline = true;
	memcpy(l + 1, ctx, ctx_size);
	int rc = wr_run_async(&s->wr, &l->j, size, cb, arg);
	free(l);
	return rc;
}

const struct lc_backend sq_lc_backend = {.run = sq_lc_run};

/* ---------------------------------------------------------------------------
 * The transaction's primitives.
 * ------------------------------------------------------------------------- */

#define TX(t) ((struct sq_tx *)(t))
#define S(t) (TX(t)->s)
#define E(t) (&TX(t)->j->err)

static int64_t tx_now(struct store_tx *t)
{
	return TX(t)->now;
}

static struct hr_err *tx_err(struct store_tx *t)
{
	return E(t);
}

static struct ev_json *tx_json(struct store_tx *t)
{
	return &S(t)->json;
}

static int tx_item_begin(struct store_tx *t)
{
	if (sq_wexec(S(t), W_ITEM_SAVEPOINT, "SAVEPOINT item") != SQLITE_OK)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "savepoint");
	return 0;
}

static int tx_item_end(struct store_tx *t, bool keep)
{
	if (!keep && sq_wexec(S(t), W_ITEM_ROLLBACK_TO, "ROLLBACK TO item") != SQLITE_OK)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "savepoint");
	if (sq_wexec(S(t), W_ITEM_RELEASE, "RELEASE item") != SQLITE_OK)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "savepoint");
	return 0;
}

static bool tx_alive(struct store_tx *t)
{
	/* Autocommit again inside a job: SQLite rolled the transaction back. */
	return !sqlite3_get_autocommit(S(t)->wdb);
}

/* Reads the lc_msg columns (rowid first) of a statement's current row. */
#define LC_MSG_COLS                                                                                \
	"rowid, id, tenant_id, account_id, channel, recipient, status, attempts, max_attempts,"    \
	" provider_id IS NOT NULL, lease_until, batch_id, delivery_policy, expires_at,"            \
	" route_step, route_steps, route_root, fallback_after, sent_at, stale,"                    \
	" callback_url IS NOT NULL"

static void row_lc_msg(sqlite3_stmt *q, struct lc_msg *m)
{
	memset(m, 0, sizeof *m);
	m->key = sqlite3_column_int64(q, 0);
	sq_col_copy(q, 1, m->id, sizeof m->id);
	sq_col_copy(q, 2, m->tenant_id, sizeof m->tenant_id);
	sq_col_copy(q, 3, m->account_id, sizeof m->account_id);
	sq_col_copy(q, 4, m->channel, sizeof m->channel);
	sq_col_copy(q, 5, m->recipient, sizeof m->recipient);
	m->status = (enum msg_status)sqlite3_column_int(q, 6);
	m->attempts = sqlite3_column_int(q, 7);
	m->max_attempts = sqlite3_column_int(q, 8);
	m->has_provider_id = sqlite3_column_int(q, 9) != 0;
	m->lease_until = sqlite3_column_int64(q, 10);
	sq_col_copy(q, 11, m->batch_id, sizeof m->batch_id);
	m->policy = (enum delivery_policy)sqlite3_column_int(q, 12);
	m->expires_at = sqlite3_column_int64(q, 13);
	m->route_step = sqlite3_column_int(q, 14);
	m->route_steps = sqlite3_column_int(q, 15);
	sq_col_copy(q, 16, m->route_root, sizeof m->route_root);
	m->fallback_after = sqlite3_column_int64(q, 17);
	m->sent_at = sqlite3_column_int64(q, 18);
	m->stale = sqlite3_column_int(q, 19) != 0;
	m->callback = sqlite3_column_int(q, 20) ? LC_CB_SOME : LC_CB_NONE;
}

static int tx_msg_get(struct store_tx *t, const char *id, struct lc_msg *out)
{
	sqlite3_stmt *q =
	    sq_wstmt(S(t), W_MSG_STATE, "SELECT " LC_MSG_COLS " FROM message WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		row_lc_msg(q, out);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 0;
	if (src == SQLITE_DONE)
		return hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
	return sq_fail(S(t)->wdb, src, E(t), "message");
}

static int tx_msg_by_provider(struct store_tx *t, const char *account_id, const char *provider_id,
                              struct lc_msg *out)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_MSG_BY_PROVIDER,
	                           "SELECT " LC_MSG_COLS " FROM message"
	                           " WHERE account_id = ?1 AND provider_id = ?2 LIMIT 1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, provider_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		row_lc_msg(q, out);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "message");
}

/*
 * The columns an update names. SQLite rewrites every index over a column
 * its SET list names, and every partial index whose WHERE reads one, even
 * when the value stays the same (an index entry deleted and inserted again:
 * ~6 µs each, measured). So each update names only the columns it changes:
 * a receipt (SENT -> DELIVERED) no longer rewrites the recipient and both
 * provider-id indexes, a send's outcome no longer the recipient's. One
 * statement per combination, prepared on first use and kept; lifecycle
 * makes a handful of combinations.
 */
enum {
	UP_STATUS = 1 << 0,       /* status, lease_until = 0 */
	UP_PROV = 1 << 1,         /* provider_id = ?5 */
	UP_PROV_IF_NONE = 1 << 2, /* provider_id = coalesce(provider_id, ?5) */
	UP_ERR = 1 << 3,          /* error_code = ?7, error_text = ?8 (NULL clears) */
	UP_ERR_CODE = 1 << 4,     /* error_code = ?7 (kept when not given) */
	UP_ERR_TEXT = 1 << 5,     /* error_text = ?8 (kept when not given) */
	UP_DUE = 1 << 6,
	UP_RECIPIENT = 1 << 7,
	UP_GIVE_BACK = 1 << 8,
	UP_SENT_AT = 1 << 9,
	UP_FALLBACK_AT = 1 << 10,
	UP_STALE = 1 << 11,
	UP_BY_ID = 1 << 12, /* WHERE id = ?14, else WHERE rowid = ?1 */
};

static unsigned update_key(const struct lc_msg *m, const struct lc_update *u)
{
	unsigned f = u->set, k = 0;
	bool pid = u->provider_id && *u->provider_id;
	if (f & LC_SET_STATUS)
		k |= UP_STATUS;
	/* Where it is NULL only: a row read in this transaction that has one
	 * keeps it, so the column need not be named at all. */
	if ((f & LC_PROVIDER_ID_IF_NONE) && pid && !(m->key >= 0 && m->has_provider_id))
		k |= UP_PROV_IF_NONE;
	else if (!(f & LC_PROVIDER_ID_IF_NONE) && (f & LC_SET_PROVIDER_ID) && pid)
		k |= UP_PROV;
	if ((f & LC_SET_ERROR) && !(f & LC_KEEP_ERROR))
		k |= UP_ERR;
	else if (f & LC_SET_ERROR) {
		if (u->error_code && *u->error_code)
			k |= UP_ERR_CODE;
		if (u->error_text && *u->error_text)
			k |= UP_ERR_TEXT;
	}
	if (f & LC_SET_DUE)
		k |= UP_DUE;
	if ((f & LC_SET_RECIPIENT) && u->recipient && *u->recipient)
		k |= UP_RECIPIENT;
	if (f & LC_GIVE_BACK_ATTEMPT)
		k |= UP_GIVE_BACK;
	if (f & LC_SET_SENT_AT)
		k |= UP_SENT_AT;
	if (f & LC_SET_FALLBACK_AT)
		k |= UP_FALLBACK_AT;
	if (f & LC_SET_STALE)
		k |= UP_STALE;
	if (m->key < 0)
		k |= UP_BY_ID;
	return k;
}

static void update_sql(unsigned k, char *sql, size_t size)
{
	static const struct {
		unsigned bit;
		const char *set;
	} parts[] = {
	    {UP_STATUS, ", status = ?3, lease_until = 0"},
	    {UP_PROV, ", provider_id = ?5"},
	    {UP_PROV_IF_NONE, ", provider_id = coalesce(provider_id, ?5)"},
	    {UP_ERR, ", error_code = ?7, error_text = ?8"},
	    {UP_ERR_CODE, ", error_code = ?7"},
	    {UP_ERR_TEXT, ", error_text = ?8"},
	    {UP_DUE, ", due_at = ?10"},
	    {UP_RECIPIENT, ", recipient = ?11"},
	    {UP_GIVE_BACK, ", attempts = max(attempts - 1, 0)"},
	    {UP_SENT_AT, ", sent_at = ?16"},
	    {UP_FALLBACK_AT, ", fallback_at = ?18"},
	    {UP_STALE, ", stale = 1"},
	};
	size_t n = (size_t)snprintf(sql, size, "UPDATE message SET updated_at = ?13");
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (k & parts[i].bit)
			n += (size_t)snprintf(sql + n, size - n, "%s", parts[i].set);
	snprintf(sql + n, size - n, "%s", (k & UP_BY_ID) ? " WHERE id = ?14" : " WHERE rowid = ?1");
}

/* The kept statement for key k; *once is set when the cache is full and
 * the statement is the caller's to finalize. */
static sqlite3_stmt *update_stmt(struct sq_store *s, unsigned k, bool *once)
{
	*once = false;
	for (int i = 0; i < s->nupd; i++)
		if (s->upd[i].key == k)
			return s->upd[i].st;
	char sql[512];
	update_sql(k, sql, sizeof sql);
	bool keep = s->nupd < SQ_UPD_CACHE;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(s->wdb, sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) !=
	    SQLITE_OK) {
		hr_log(HR_LOG_ERROR, "store", "prepare failed: %s: %s", sqlite3_errmsg(s->wdb),
		       sql);
		sqlite3_finalize(st);
		return NULL;
	}
	if (keep) {
		s->upd[s->nupd].key = k;
		s->upd[s->nupd++].st = st;
	} else {
		*once = true;
	}
	return st;
}

/* Every update lifecycle makes. The row is found by rowid when lifecycle
 * read it through this backend, else by id. */
static int tx_msg_update(struct store_tx *t, const struct lc_msg *m, const struct lc_update *u)
{
	unsigned k = update_key(m, u);
	bool once;
	sqlite3_stmt *st = update_stmt(S(t), k, &once);
	if (!st)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	int b = SQLITE_OK;
	if (k & UP_BY_ID)
		b |= sqlite3_bind_text(st, 14, m->id, -1, SQLITE_STATIC);
	else
		b |= sqlite3_bind_int64(st, 1, m->key);
	b |= sqlite3_bind_int64(st, 13, TX(t)->now);
	if (k & UP_STATUS)
		b |= sqlite3_bind_int(st, 3, (int)u->status);
	if (k & (UP_PROV | UP_PROV_IF_NONE))
		b |= sqlite3_bind_text(st, 5, u->provider_id, -1, SQLITE_STATIC);
	if (k & (UP_ERR | UP_ERR_CODE))
		b |= sq_bind_opt(st, 7, u->error_code);
	if (k & (UP_ERR | UP_ERR_TEXT))
		b |= sq_bind_opt(st, 8, u->error_text);
	if (k & UP_DUE)
		b |= sqlite3_bind_int64(st, 10, u->due_at);
	if (k & UP_RECIPIENT)
		b |= sqlite3_bind_text(st, 11, u->recipient, -1, SQLITE_STATIC);
	if (k & UP_SENT_AT)
		b |= sqlite3_bind_int64(st, 16, u->sent_at);
	if (k & UP_FALLBACK_AT)
		b |= sqlite3_bind_int64(st, 18, u->fallback_at);
	int rc = b != SQLITE_OK ? sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message")
	                        : sq_step_done(S(t), st, E(t), "message");
	if (once)
		sqlite3_finalize(st);
	else
		sqlite3_clear_bindings(st);
	return rc;
}

static int tx_msg_insert(struct store_tx *t, const struct message *m)
{
	return sq_message_row_insert(S(t), m, TX(t)->now, E(t));
}

static int tx_claim(struct store_tx *t, const char *account_id, int64_t now, int64_t lease_until,
                    int limit, struct message *out, size_t *n)
{
	*n = 0;
	sqlite3_stmt *st = sq_wstmt(S(t), W_CLAIM,
	                            "UPDATE message SET status = 1, attempts = attempts + 1,"
	                            " lease_until = ?3, updated_at = ?2"
	                            " WHERE rowid IN (SELECT rowid FROM message WHERE status = 0"
	                            "  AND account_id = ?1 AND due_at <= ?2"
	                            "  ORDER BY priority, due_at, id LIMIT ?4)"
	                            " RETURNING " SQ_MSG_COLS ", unit_id");
	if (!st)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "claim");
	sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, lease_until);
	sqlite3_bind_int(st, 4, limit);
	int src, rc = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n >= (size_t)limit)
			continue; /* cannot happen: LIMIT bounds the update */
		if ((rc = sq_row_message(st, 0, &out[*n])))
			break;
		/* The unit: the dispatcher's plugin gate needs it. */
		sq_col_copy(st, SQ_MSG_NCOLS, out[*n].unit, sizeof out[*n].unit);
		(*n)++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(S(t)->wdb, src, E(t), "claim");
	else if (rc)
		hr_fail(E(t), rc, "claim", "out of memory");
	sqlite3_reset(st);
	return rc;
}

static int tx_lease_expired(struct store_tx *t, int64_t now, int limit, struct lc_msg *out,
                            size_t *n)
{
	*n = 0;
	/* Walks the partial index of SENDING rows by lease_until. */
	sqlite3_stmt *q = sq_wstmt(S(t), W_LEASE_EXPIRED,
	                           "SELECT " LC_MSG_COLS " FROM message"
	                           " WHERE status = 1 AND lease_until < ?1 LIMIT ?2");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_int64(q, 1, now);
	sqlite3_bind_int(q, 2, limit);
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && *n < (size_t)limit)
		row_lc_msg(q, &out[(*n)++]);
	sqlite3_reset(q);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sq_fail(S(t)->wdb, src, E(t), "message");
	return 0;
}

static int tx_event_insert(struct store_tx *t, const char *message_id, const struct lc_event *e)
{
	return sq_event_insert(S(t), message_id, TX(t)->now, e->provider_at, e->type, e->source,
	                       e->status, e->applied, e->detail, e->inbox_id, E(t));
}

static int tx_event_seen(struct store_tx *t, const char *message_id, int64_t inbox_id,
                         enum msg_status status)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_EVENT_SEEN,
	                           "SELECT 1 FROM message_event WHERE message_id = ?1"
	                           " AND inbox_id = ?2 AND status = ?3"
	                           " AND type = 'webhook_status' LIMIT 1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message_event");
	sqlite3_bind_text(q, 1, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, inbox_id);
	sqlite3_bind_int(q, 3, (int)status);
	int src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "message_event");
}

static int tx_supp_any(struct store_tx *t, const char *tenant_id, const char *channel)
{
	return sq_supp_any(S(t), tenant_id, channel, E(t));
}

static int tx_supp_reason(struct store_tx *t, const char *tenant_id, const char *channel,
                          const char *recipient, char *reason, size_t reason_size)
{
	char r[SQ_REASON_MAX];
	int rc = sq_supp_reason(S(t), tenant_id, channel, recipient, r, E(t));
	if (rc == 1)
		hr_strlcpy(reason, r, reason_size);
	return rc;
}

static int tx_supp_put(struct store_tx *t, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason)
{
	return sq_supp_put(S(t), tenant_id, channel, recipient, reason, TX(t)->now, E(t));
}

static int tx_pause_put(struct store_tx *t, const struct account_pause_row *p)
{
	return sq_pause_put(S(t), p, TX(t)->now, E(t));
}

static int tx_pause_delete(struct store_tx *t, const char *account_id)
{
	return sq_pause_delete(S(t), account_id, E(t));
}

static int tx_supp_log(struct store_tx *t, const struct supp_change *c, const char *action)
{
	return sq_supp_log(S(t), c, action, TX(t)->now, E(t));
}

static int tx_supp_delete(struct store_tx *t, const char *tenant_id, const char *channel,
                          const char *recipient)
{
	return sq_supp_delete(S(t), tenant_id, channel, recipient, NULL, E(t));
}

static int tx_alias_any(struct store_tx *t, const char *account_id)
{
	return sq_alias_any(S(t), account_id, E(t));
}

static int tx_alias_get(struct store_tx *t, const char *account_id, const char *old,
                        char new_addr[HR_ADDR_MAX])
{
	return sq_alias_get(S(t), account_id, old, new_addr, E(t));
}

static int tx_alias_put(struct store_tx *t, const char *account_id, const char *old,
                        const char *new_addr)
{
	return sq_alias_put(S(t), account_id, old, new_addr, TX(t)->now, E(t));
}

static int tx_account_of(struct store_tx *t, const char *account_id, char tenant[HR_NAME_MAX],
                         char channel[16])
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_ACCOUNT_TENANT,
	                           "SELECT tenant_id, channel FROM channel_account WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "channel_account");
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		sq_col_copy(q, 0, tenant, HR_NAME_MAX);
		sq_col_copy(q, 1, channel, 16);
	}
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "channel_account");
}

static int tx_inbound_insert(struct store_tx *t, const struct lc_inbound *in)
{
	sqlite3_stmt *st = sq_wstmt(
	    S(t), W_INBOUND_INSERT,
	    "INSERT OR IGNORE INTO inbound(tenant_id, account_id, message_id, provider_msg_id,"
	    " sender, kind, text, payload, provider_at, received_at)"
	    " VALUES(coalesce(?1, (SELECT tenant_id FROM channel_account WHERE id = ?2)),"
	    " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
	if (!st)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "inbound");
	sq_bind_opt(st, 1, in->tenant_id);
	sqlite3_bind_text(st, 2, in->account_id, -1, SQLITE_STATIC);
	sq_bind_opt(st, 3, in->message_id);
	sqlite3_bind_text(st, 4, in->provider_msg_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, in->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, in->kind, -1, SQLITE_STATIC);
	sq_bind_opt(st, 7, in->text);
	sq_bind_opt(st, 8, in->payload);
	sqlite3_bind_int64(st, 9, in->provider_at);
	sqlite3_bind_int64(st, 10, in->received_at);
	int rc = sq_step_done(S(t), st, E(t), "inbound");
	if (rc)
		return rc;
	return sqlite3_changes(S(t)->wdb) > 0 ? 1 : 0;
}

static int tx_inbox_state(struct store_tx *t, int64_t id, int64_t *received_at, int *attempts,
                          char channel[16])
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_INBOX_STATE,
	                           "SELECT received_at, attempts, channel FROM webhook_inbox"
	                           " WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "webhook_inbox");
	sqlite3_bind_int64(q, 1, id);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		*received_at = sqlite3_column_int64(q, 0);
		*attempts = sqlite3_column_int(q, 1);
		sq_col_copy(q, 2, channel, 16);
	}
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "webhook_inbox");
}

static int tx_inbox_claim(struct store_tx *t, int64_t now, int64_t until, int limit,
                          struct inbox_row *out, size_t *n)
{
	*n = 0;
	/* New rows carry next_try_at = received_at, so one range condition on
	 * the partial index covers new rows and retries that are due. */
	sqlite3_stmt *st = sq_wstmt(S(t), W_INBOX_CLAIM,
	                            "UPDATE webhook_inbox SET next_try_at = ?2"
	                            " WHERE id IN (SELECT id FROM webhook_inbox"
	                            "  WHERE state IN (0, 2) AND next_try_at <= ?1"
	                            "  ORDER BY id LIMIT ?3)"
	                            " RETURNING id, account_id, channel, dedupe_key, received_at,"
	                            " attempts, body");
	if (!st)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "webhook_inbox");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, until);
	sqlite3_bind_int(st, 3, limit);
	int src, rc = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n >= (size_t)limit)
			continue; /* cannot happen: LIMIT bounds the update */
		if (sq_row_inbox(st, &out[*n]) != 0) {
			rc = hr_fail(E(t), HR_ENOMEM, "webhook_inbox", "out of memory");
			break;
		}
		(*n)++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(S(t)->wdb, src, E(t), "webhook_inbox");
	sqlite3_reset(st);
	return rc;
}

static int tx_inbox_mark(struct store_tx *t, int64_t id, int state, int attempts,
                         int64_t next_try_at, const char *error)
{
	sqlite3_stmt *u = sq_wstmt(S(t), W_INBOX_MARK,
	                           "UPDATE webhook_inbox SET state = ?2, attempts = ?3,"
	                           " next_try_at = coalesce(?4, next_try_at), error = ?5"
	                           " WHERE id = ?1");
	if (!u)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "webhook_inbox");
	sqlite3_bind_int64(u, 1, id);
	sqlite3_bind_int(u, 2, state);
	sqlite3_bind_int(u, 3, attempts);
	if (next_try_at)
		sqlite3_bind_int64(u, 4, next_try_at);
	else
		sqlite3_bind_null(u, 4);
	sq_bind_opt(u, 5, error);
	return sq_step_done(S(t), u, E(t), "webhook_inbox");
}

/* ---------------------------------------------------------------------------
 * Campaigns.
 * ------------------------------------------------------------------------- */

_Static_assert(MSG__COUNT == 11, "one n_<status> column per message status");
#define SQ_BATCH_N                                                                                 \
	"n_queued, n_sending, n_sent, n_delivered, n_read, n_failed, n_undelivered, n_cancelled,"  \
	" n_expired, n_suppressed, n_unknown"
#define SQ_BATCH_STATE "tenant_id, status, ingested, receipts, " SQ_BATCH_N

static void row_batch_state(sqlite3_stmt *q, struct lc_batch_state *s)
{
	memset(s, 0, sizeof *s);
	sq_col_copy(q, 0, s->tenant_id, sizeof s->tenant_id);
	s->status = (enum batch_status)sqlite3_column_int(q, 1);
	s->ingested = sqlite3_column_int(q, 2) != 0;
	s->receipts = sqlite3_column_int(q, 3) != 0;
	for (int i = 0; i < MSG__COUNT; i++)
		s->by_status[i] = sqlite3_column_int64(q, 4 + i);
}

/* Steps a statement that returns the batch state or nothing: 1, 0 or an error. */
static int step_state(struct store_tx *t, sqlite3_stmt *q, struct lc_batch_state *out)
{
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		row_batch_state(q, out);
	if (src == SQLITE_ROW && sqlite3_step(q) != SQLITE_DONE)
		src = SQLITE_ERROR;
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "batch");
}

static int tx_batch_state(struct store_tx *t, const char *batch_id, struct lc_batch_state *out)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_BATCH_STATE,
	                           "SELECT " SQ_BATCH_STATE " FROM batch WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		row_batch_state(q, out);
	sqlite3_reset(q);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, rc, E(t), "batch");
}

static int tx_batch_add(struct store_tx *t, const char *batch_id, const int64_t delta[MSG__COUNT],
                        int64_t replied, struct lc_batch_state *after)
{
	sqlite3_stmt *q = sq_wstmt(
	    S(t), W_BATCH_ADD,
	    "UPDATE batch SET n_queued = n_queued + ?2, n_sending = n_sending + ?3,"
	    " n_sent = n_sent + ?4, n_delivered = n_delivered + ?5, n_read = n_read + ?6,"
	    " n_failed = n_failed + ?7, n_undelivered = n_undelivered + ?8,"
	    " n_cancelled = n_cancelled + ?9, n_expired = n_expired + ?10,"
	    " n_suppressed = n_suppressed + ?11, n_unknown = n_unknown + ?12,"
	    " replied = replied + ?13 WHERE id = ?1 RETURNING " SQ_BATCH_STATE);
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	for (int i = 0; i < MSG__COUNT; i++)
		sqlite3_bind_int64(q, 2 + i, delta[i]);
	sqlite3_bind_int64(q, 13, replied);
	return step_state(t, q, after);
}

/* the run's daily counters replace the job's (lifecycle.h). */
static int tx_daily_add(struct store_tx *t, const struct daily_acc *d)
{
	if (!daily_copy(&S(t)->dd_job, d))
		return hr_fail(E(t), HR_ENOMEM, "daily_count", "out of memory");
	return 0;
}

static int tx_status_add(struct store_tx *t, const int64_t delta[MSG__COUNT])
{
	return sq_status_add(S(t), delta, E(t));
}

static int tx_batch_rows_add(struct store_tx *t, const char *batch_id, int64_t total,
                             int64_t valid, int64_t invalid, int64_t duplicates)
{
	sqlite3_stmt *q =
	    sq_wstmt(S(t), W_BATCH_ROWS_ADD,
	             "UPDATE batch SET total = total + ?2, valid = valid + ?3,"
	             " invalid = invalid + ?4, duplicates = duplicates + ?5 WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, total);
	sqlite3_bind_int64(q, 3, valid);
	sqlite3_bind_int64(q, 4, invalid);
	sqlite3_bind_int64(q, 5, duplicates);
	return sq_step_done(S(t), q, E(t), "batch");
}

static int tx_batch_set(struct store_tx *t, const char *batch_id, enum batch_status to, int64_t at,
                        const char *error, int ingested)
{
	sqlite3_stmt *q = sq_wstmt(
	    S(t), W_BATCH_SET,
	    "UPDATE batch SET status = ?2,"
	    " validated_at = iif(?2 = 1 AND ?3 > 0, ?3, validated_at),"
	    " started_at = iif(?2 = 2 AND ?3 > 0, ?3, started_at),"
	    " completed_at = iif(?2 = 3 AND ?3 > 0, ?3, completed_at),"
	    " cancelled_at = iif(?2 = 4 AND ?3 > 0, ?3, cancelled_at),"
	    " failed_at = iif(?2 = 5 AND ?3 > 0, ?3, failed_at),"
	    " error = coalesce(?4, error), ingested = iif(?5 >= 0, ?5, ingested) WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)to);
	sqlite3_bind_int64(q, 3, at);
	sq_bind_opt(q, 4, error);
	sqlite3_bind_int(q, 5, ingested);
	return sq_step_done(S(t), q, E(t), "batch");
}

static int tx_items_insert(struct store_tx *t, const char *batch_id,
                           const struct batch_item *items, size_t n, int64_t *dups)
{
	*dups = 0;
	sqlite3_stmt *q = sq_wstmt(
	    S(t), W_ITEM_INSERT,
	    "INSERT INTO batch_item(batch_id, row_no, recipient, params, valid, duplicate,"
	    " error_column, error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch_item");
	for (size_t i = 0; i < n; i++) {
		const struct batch_item *it = &items[i];
		bool dup = it->valid && it->duplicate;
		for (int attempt = 0; attempt < 2; attempt++) {
			sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(q, 2, it->row);
			sqlite3_bind_text(q, 3, it->recipient, -1, SQLITE_STATIC);
			sq_bind_opt(q, 4, it->params);
			sqlite3_bind_int(q, 5, it->valid);
			sqlite3_bind_int(q, 6, dup);
			sq_bind_opt(q, 7, it->valid ? NULL : it->error_column);
			sq_bind_opt(q, 8, it->valid ? NULL : it->error);
			int src = sqlite3_step(q);
			int ext = sqlite3_extended_errcode(S(t)->wdb);
			sqlite3_reset(q);
			if (src == SQLITE_DONE)
				break;
			if (ext == SQLITE_CONSTRAINT_UNIQUE && it->valid && !dup) {
				dup = true; /* the recipient is an earlier row's */
				(*dups)++;
				continue;
			}
			if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
				return hr_fail(E(t), HR_ECONFLICT, "row", "row %lld is already stored",
				               (long long)it->row);
			return sq_fail(S(t)->wdb, src, E(t), "batch_item");
		}
	}
	return 0;
}

static int tx_item_take(struct store_tx *t, const char *batch_id, int64_t row,
                        const char *message_id)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_ITEM_TAKE,
	                           "UPDATE batch_item SET message_id = ?3 WHERE batch_id = ?1"
	                           " AND row_no = ?2 AND message_id IS NULL AND valid = 1"
	                           " AND duplicate = 0");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch_item");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, row);
	sqlite3_bind_text(q, 3, message_id, -1, SQLITE_STATIC);
	int rc = sq_step_done(S(t), q, E(t), "batch_item");
	return rc ? rc : sqlite3_changes(S(t)->wdb) > 0;
}

static int tx_batch_queued(struct store_tx *t, const char *batch_id, int limit,
                           struct lc_msg *out, size_t *n)
{
	*n = 0;
	sqlite3_stmt *q = sq_wstmt(S(t), W_BATCH_QUEUED,
	                           "SELECT " LC_MSG_COLS " FROM message"
	                           " WHERE batch_id = ?1 AND status = 0 LIMIT ?2");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, limit);
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && *n < (size_t)limit)
		row_lc_msg(q, &out[(*n)++]);
	sqlite3_reset(q);
	return src == SQLITE_DONE || src == SQLITE_ROW ? 0 : sq_fail(S(t)->wdb, src, E(t), "message");
}

static int tx_batch_hold(struct store_tx *t, const char *batch_id, bool hold, int64_t *n)
{
	*n = 0;
	sqlite3_stmt *q =
	    hold ? sq_wstmt(S(t), W_BATCH_HOLD,
	                    "UPDATE message SET due_at = due_at + ?2 WHERE batch_id = ?1"
	                    " AND status = 0 AND due_at < ?2")
	         : sq_wstmt(S(t), W_BATCH_RELEASE,
	                    "UPDATE message SET due_at = max(due_at - ?2, ?3) WHERE batch_id = ?1"
	                    " AND status = 0 AND due_at >= ?2");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, LC_HOLD_BASE);
	if (!hold)
		sqlite3_bind_int64(q, 3, TX(t)->now);
	int rc = sq_step_done(S(t), q, E(t), "message");
	if (rc == 0)
		*n = sqlite3_changes(S(t)->wdb);
	return rc;
}

static int tx_batch_note(struct store_tx *t, const char *batch_id, enum batch_status to,
                         bool resume, int64_t at, const char *actor, const char *reason)
{
	sqlite3_stmt *q = sq_wstmt(
	    S(t), W_BATCH_NOTE,
	    "UPDATE batch SET"
	    " paused_at = iif(?2 = 6, ?3, paused_at), paused_by = iif(?2 = 6, ?4, paused_by),"
	    " pause_reason = iif(?2 = 6, ?5, pause_reason),"
	    " resumed_at = iif(?6, ?3, resumed_at), resumed_by = iif(?6, ?4, resumed_by),"
	    " cancelled_by = iif(?2 = 4, ?4, cancelled_by),"
	    " cancel_reason = iif(?2 = 4, ?5, cancel_reason) WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "batch");
	sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, (int)to);
	sqlite3_bind_int64(q, 3, at);
	sq_bind_opt(q, 4, actor && *actor ? actor : NULL);
	sq_bind_opt(q, 5, reason && *reason ? reason : NULL);
	sqlite3_bind_int(q, 6, resume);
	return sq_step_done(S(t), q, E(t), "batch");
}

static int tx_batch_delete(struct store_tx *t, const char *batch_id)
{
	static const char *const sql[] = {"DELETE FROM batch_item WHERE batch_id = ?1",
	                                  "DELETE FROM batch WHERE id = ?1"};
	for (int i = 0; i < 2; i++) {
		sqlite3_stmt *q = NULL;
		int src = sqlite3_prepare_v2(S(t)->wdb, sql[i], -1, &q, NULL);
		if (src == SQLITE_OK) {
			sqlite3_bind_text(q, 1, batch_id, -1, SQLITE_STATIC);
			src = sqlite3_step(q);
		}
		sqlite3_finalize(q);
		if (src != SQLITE_DONE)
			return sq_fail(S(t)->wdb, src, E(t), "batch");
	}
	return 0;
}

static int tx_audit_insert(struct store_tx *t, const struct audit_row *a)
{
	return sq_audit_insert(S(t), a, E(t));
}

static int tx_inbound_exists(struct store_tx *t, const char *message_id)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_INBOUND_EXISTS,
	                           "SELECT 1 FROM inbound WHERE message_id = ?1 LIMIT 1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "inbound");
	sqlite3_bind_text(q, 1, message_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(S(t)->wdb, src, E(t), "inbound");
}

static int tx_callback_add(struct store_tx *t, const struct lc_callback *c)
{
	return sq_tx_callback_add(S(t), c, TX(t)->now, E(t));
}

static int tx_plugin_event_add(struct store_tx *t, const struct lc_plugin_event *e)
{
	return sq_tx_plugin_event_add(S(t), e, TX(t)->now, E(t));
}

/* Up to limit rows of a SELECT of LC_MSG_COLS bound to (?1 now, ?2 limit). */
static int lc_msg_scan(struct store_tx *t, enum sq_wslot slot, const char *sql, int64_t now,
                       int limit, struct lc_msg *out, size_t *n)
{
	*n = 0;
	sqlite3_stmt *q = sq_wstmt(S(t), slot, sql);
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_int64(q, 1, now);
	sqlite3_bind_int(q, 2, limit);
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && *n < (size_t)limit)
		row_lc_msg(q, &out[(*n)++]);
	sqlite3_reset(q);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sq_fail(S(t)->wdb, src, E(t), "message");
	return 0;
}

static int tx_msg_expired(struct store_tx *t, int64_t now, int limit, struct lc_msg *out,
                          size_t *n)
{
	/* The partial index of QUEUED rows with an expiry, by expiry. */
	return lc_msg_scan(t, W_MSG_EXPIRED,
	                   "SELECT " LC_MSG_COLS " FROM message WHERE status = 0 AND expires_at > 0"
	                   " AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
	                   now, limit, out, n);
}

static int tx_fallback_due(struct store_tx *t, int64_t now, int limit, struct lc_msg *out,
                           size_t *n)
{
	return lc_msg_scan(t, W_FALLBACK_DUE,
	                   "SELECT " LC_MSG_COLS " FROM message WHERE status = 2 AND fallback_at > 0"
	                   " AND fallback_at <= ?1 ORDER BY fallback_at LIMIT ?2",
	                   now, limit, out, n);
}

static int tx_msg_route(struct store_tx *t, const char *id, char **route, char **callback_url,
                        char unit[HR_NAME_MAX])
{
	*route = *callback_url = NULL;
	unit[0] = '\0';
	sqlite3_stmt *q = sq_wstmt(S(t), W_MSG_ROUTE,
	                           "SELECT route, callback_url, unit_id FROM message WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	bool oom = false;
	if (src == SQLITE_ROW) {
		*route = sq_col_dup(q, 0, &oom);
		*callback_url = sq_col_dup(q, 1, &oom);
		sq_col_copy(q, 2, unit, HR_NAME_MAX);
	}
	sqlite3_reset(q);
	if (src == SQLITE_DONE)
		return hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
	if (src != SQLITE_ROW)
		return sq_fail(S(t)->wdb, src, E(t), "message");
	if (oom) {
		free(*route);
		free(*callback_url);
		*route = *callback_url = NULL;
		return hr_fail(E(t), HR_ENOMEM, "message", "out of memory");
	}
	return 0;
}

static int tx_fallback_put(struct store_tx *t, const char *root_id, int step,
                           const char *message_id, const char *from_id, const char *reason)
{
	sqlite3_stmt *q = sq_wstmt(S(t), W_FALLBACK_PUT,
	                           "INSERT INTO message_fallback(root_id, step, message_id, from_id,"
	                           " reason, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
	                           " ON CONFLICT(root_id, step) DO NOTHING");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message_fallback");
	sqlite3_bind_text(q, 1, root_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 2, step);
	sqlite3_bind_text(q, 3, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, from_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, TX(t)->now);
	int rc = sq_step_done(S(t), q, E(t), "message_fallback");
	if (rc)
		return rc;
	return sqlite3_changes(S(t)->wdb) > 0 ? 1 : 0;
}

static int tx_inbox_waiting(struct store_tx *t, int64_t before, int limit, int64_t *ids,
                            size_t *n)
{
	*n = 0;
	sqlite3_stmt *q = sq_wstmt(S(t), W_INBOX_WAITING,
	                           "SELECT id FROM webhook_inbox WHERE state = 2"
	                           " AND received_at < ?1 ORDER BY id LIMIT ?2");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "webhook_inbox");
	sqlite3_bind_int64(q, 1, before);
	sqlite3_bind_int(q, 2, limit);
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && *n < (size_t)limit)
		ids[(*n)++] = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sq_fail(S(t)->wdb, src, E(t), "webhook_inbox");
	return 0;
}

/* A plugin's route change (lifecycle.c SEND_REROUTE): the row's account,
 * channel and recipient, and its content when the channel changed. */
static int tx_msg_reroute(struct store_tx *t, const struct lc_msg *m, const char *account_id,
                          const char *channel, const char *recipient, const char *content,
                          const char *body, int segments)
{
	sqlite3_stmt *q =
	    sq_wstmt(S(t), W_MSG_REROUTE,
	             "UPDATE message SET account_id = ?2, channel = ?3, recipient = ?4,"
	             " content = coalesce(?5, content),"
	             " body = iif(?5 IS NULL, body, ?6),"
	             " segments = iif(?5 IS NULL, segments, ?7) WHERE id = ?1");
	if (!q)
		return sq_fail(S(t)->wdb, SQLITE_ERROR, E(t), "message");
	sqlite3_bind_text(q, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, recipient, -1, SQLITE_STATIC);
	sq_bind_opt(q, 5, content);
	sq_bind_opt(q, 6, body);
	sqlite3_bind_int(q, 7, segments);
	return sq_step_done(S(t), q, E(t), "message");
}

static int tx_daily_take(struct store_tx *t, const char *tenant_id, int64_t n)
{
	return sq_daily_take(S(t), tenant_id, store_day(TX(t)->now), n, E(t));
}

static int tx_start_limits(struct store_tx *t, const char *tenant_id, const char *batch_id,
                           struct lc_start_limits *out)
{
	/* The one writer connection orders every start: no lock needed. */
	return sq_start_limits(S(t), tenant_id, batch_id, store_day(TX(t)->now), out, E(t));
}

static const struct store_tx_ops sq_tx_ops = {
    .now = tx_now,
    .err = tx_err,
    .json = tx_json,
    .item_begin = tx_item_begin,
    .item_end = tx_item_end,
    .alive = tx_alive,
    .prefetch = NULL, /* every read is a function call away */
    .msg_get = tx_msg_get,
    .msg_by_provider = tx_msg_by_provider,
    .msg_update = tx_msg_update,
    .msg_insert = tx_msg_insert,
    .claim = tx_claim,
    .lease_expired = tx_lease_expired,
    .event_insert = tx_event_insert,
    .event_seen = tx_event_seen,
    .supp_any = tx_supp_any,
    .supp_reason = tx_supp_reason,
    .supp_put = tx_supp_put,
    .supp_delete = tx_supp_delete,
    .supp_log = tx_supp_log,
    .pause_put = tx_pause_put,
    .pause_delete = tx_pause_delete,
    .alias_any = tx_alias_any,
    .alias_get = tx_alias_get,
    .alias_put = tx_alias_put,
    .account_of = tx_account_of,
    .inbound_insert = tx_inbound_insert,
    .inbox_state = tx_inbox_state,
    .inbox_claim = tx_inbox_claim,
    .inbox_mark = tx_inbox_mark,
    .batch_state = tx_batch_state,
    .batch_add = tx_batch_add,
    .status_add = tx_status_add,
    .daily_add = tx_daily_add,
    .batch_rows_add = tx_batch_rows_add,
    .batch_set = tx_batch_set,
    .items_insert = tx_items_insert,
    .item_take = tx_item_take,
    .batch_queued = tx_batch_queued,
    .batch_hold = tx_batch_hold,
    .batch_note = tx_batch_note,
    .inbound_exists = tx_inbound_exists,
    .batch_delete = tx_batch_delete,
    .audit_insert = tx_audit_insert,
    .callback_add = tx_callback_add,
    .plugin_event_add = tx_plugin_event_add,
    .msg_expired = tx_msg_expired,
    .fallback_due = tx_fallback_due,
    .msg_route = tx_msg_route,
    .fallback_put = tx_fallback_put,
    .inbox_waiting = tx_inbox_waiting,
    .msg_reroute = tx_msg_reroute,
    .daily_take = tx_daily_take,
    .start_limits = tx_start_limits,
};

/* ---- the shared rules, bound to this backend (filled into store_sqlite) ---- */

int sq_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us, int limit,
             struct message *out, size_t *n)
{
	return lc_claim(&sq_lc_backend, st, account_id, now, lease_us, limit, out, n);
}

int sq_claim_async(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
                   int limit, struct message *out, store_claim_fn cb, void *arg)
{
	return lc_claim_async(&sq_lc_backend, st, account_id, now, lease_us, limit, out, cb, arg);
}

int sq_record_results(struct store *st, const struct send_result *r, size_t n, store_done_fn cb,
                      void *arg)
{
	return lc_record_results(&sq_lc_backend, st, r, n, cb, arg);
}

int sq_requeue_expired(struct store *st, int64_t now, int *n)
{
	return lc_requeue_expired(&sq_lc_backend, st, now, n);
}

int sq_inbox_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                   struct inbox_row **out, size_t *n)
{
	return lc_inbox_claim(&sq_lc_backend, st, now, lease_us, limit, out, n);
}

int sq_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats)
{
	return lc_apply_inbox(&sq_lc_backend, st, rows, n, now, stats);
}

int sq_batch_items_put(struct store *st, const char *batch_id, const struct batch_item *items,
                       size_t n, struct hr_err *err)
{
	return lc_batch_items_put(&sq_lc_backend, st, batch_id, items, n, err);
}

int sq_batch_set_status_audit(struct store *st, const char *tenant_id, const char *id,
                              enum batch_status to, const char *error, const struct audit_row *a,
                              struct hr_err *err)
{
	return lc_batch_set_status_audit(&sq_lc_backend, st, tenant_id, id, to, error, a, err);
}

int sq_batch_set_status(struct store *st, const char *tenant_id, const char *id,
                        enum batch_status to, const char *error, struct hr_err *err)
{
	return lc_batch_set_status(&sq_lc_backend, st, tenant_id, id, to, error, err);
}

int sq_batch_enqueue(struct store *st, const char *batch_id, const int64_t *rows,
                     const struct message *msgs, size_t n, bool last, size_t *made,
                     struct hr_err *err)
{
	return lc_batch_enqueue(&sq_lc_backend, st, batch_id, rows, msgs, n, last, made, err);
}

int sq_batch_discard(struct store *st, const char *tenant_id, const char *id,
                     struct hr_err *err)
{
	return lc_batch_discard(&sq_lc_backend, st, tenant_id, id, err);
}

int sq_batch_cancel_step(struct store *st, const char *batch_id, int limit, int64_t *n)
{
	return lc_batch_cancel_step(&sq_lc_backend, st, batch_id, limit, n);
}

int sq_reconcile_expire(struct store *st, int64_t now, int limit, int *n)
{
	return lc_reconcile_expire(&sq_lc_backend, st, now, limit, n);
}

int sq_reconcile_fallback_due(struct store *st, int64_t now, int limit, int *n)
{
	return lc_reconcile_fallback_due(&sq_lc_backend, st, now, limit, n);
}

int sq_stale_settle(struct store *st, const struct stale_answer *a, size_t n,
                    struct stale_stats *stats)
{
	return lc_stale_settle(&sq_lc_backend, st, a, n, stats);
}

int sq_inbox_park(struct store *st, int64_t received_before, int limit, int *n)
{
	return lc_inbox_park(&sq_lc_backend, st, received_before, limit, n);
}
