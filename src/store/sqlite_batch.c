/*
 * sqlite_batch.c - the SQLite backend's campaign (batch) rows: create, read,
 * list, the validated rows and the recount. What changes a batch after its
 * creation (rows, status, ingestion, counters, cancellation) is lifecycle
 * code (lc_batch.c) over sqlite_tx.c's primitives.
 */
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

#define SQ_BATCH_COLS                                                                              \
	"id, tenant_id, unit, name, channel, account_id, template_name, language, receipts, spec," \
	" status, error, retry_of, ingested, schedule_at, created_at, validated_at, started_at,"   \
	" completed_at, cancelled_at, failed_at, total, valid, invalid, duplicates, replied,"      \
	" n_queued, n_sending, n_sent, n_delivered, n_read, n_failed, n_undelivered,"              \
	" n_cancelled, n_expired, n_suppressed, n_unknown, paused_at, resumed_at, paused_by,"      \
	" resumed_by, cancelled_by, pause_reason, cancel_reason"

static int row_batch(sqlite3_stmt *q, struct batch *b)
{
	const struct store_cols c = sq_cols(q);
	memset(b, 0, sizeof *b);
	return store_row_batch(&c, b, NULL);
}

struct job_batch {
	struct wr_job j;
	const struct batch *b;
};

static int run_create(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	const struct batch *b = ((struct job_batch *)j)->b;
	sqlite3_stmt *q = NULL;
	int src = sqlite3_prepare_v2(
	    s->wdb,
	    "INSERT INTO batch(id, tenant_id, unit, name, channel, account_id, template_name,"
	    " language, receipts, spec, status, retry_of, schedule_at, created_at)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?13)",
	    -1, &q, NULL);
	if (src != SQLITE_OK)
		return sq_fail(s->wdb, src, &j->err, "batch");
	sqlite3_bind_text(q, 1, b->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, b->tenant_id, -1, SQLITE_STATIC);
	sq_bind_opt(q, 3, b->unit[0] ? b->unit : NULL);
	sqlite3_bind_text(q, 4, b->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, b->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, b->account_id, -1, SQLITE_STATIC);
	sq_bind_opt(q, 7, b->template_name[0] ? b->template_name : NULL);
	sq_bind_opt(q, 8, b->language[0] ? b->language : NULL);
	sqlite3_bind_int(q, 9, b->receipts);
	sq_bind_opt(q, 10, b->spec);
	sq_bind_opt(q, 11, b->retry_of[0] ? b->retry_of : NULL);
	sqlite3_bind_int64(q, 12, b->schedule_at);
	sqlite3_bind_int64(q, 13, b->created_at ? b->created_at : hr_now_us());
	src = sqlite3_step(q);
	sqlite3_finalize(q);
	if (src == SQLITE_DONE)
		return 0;
	int rc = sq_fail(s->wdb, src, &j->err, "batch");
	if (rc == HR_ECONFLICT)
		hr_fail(&j->err, rc, "id", "batch %s already exists", b->id);
	return rc;
}

int sq_batch_create(struct store *st, const struct batch *b, struct hr_err *err)
{
	if (!b || !hr_id_valid(b->id) || !b->tenant_id[0] || !b->name[0] || !b->channel[0] ||
	    !b->account_id[0])
		return hr_fail(err, HR_EINVAL, "batch",
		               "a batch needs an id, tenant, name, channel and account");
	struct job_batch c = {.j = {.run = run_create}, .b = b};
	return wr_run_blocking(&((struct sq_store *)st)->wr, &c.j, err);
}

/* Runs a read on a pooled reader: prepared here (batches are read far less
 * often than messages), finalized after. */
static int read_prepare(struct sq_store *s, struct sq_reader **r, sqlite3_stmt **q,
                        const char *sql)
{
	int rc = sq_reader_get(s, r);
	if (rc)
		return rc;
	if (sqlite3_prepare_v2((*r)->db, sql, -1, q, NULL) != SQLITE_OK) {
		hr_log(HR_LOG_ERROR, "store", "prepare failed: %s", sqlite3_errmsg((*r)->db));
		sq_reader_put(s, *r);
		return HR_EIO;
	}
	return 0;
}

static void read_done(struct sq_store *s, struct sq_reader *r, sqlite3_stmt *q)
{
	sqlite3_finalize(q);
	sq_reader_put(s, r);
}

int sq_batch_get(struct store *st, const char *tenant_id, const char *id, struct batch *out)
{
	struct sq_store *s = (struct sq_store *)st;
	memset(out, 0, sizeof *out);
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = read_prepare(s, &r, &q,
	                      "SELECT " SQ_BATCH_COLS " FROM batch"
	                      " WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)");
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, id ? id : "", -1, SQLITE_STATIC);
	sq_bind_opt(q, 2, tenant_id);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		rc = row_batch(q, out);
	else
		rc = src == SQLITE_DONE ? HR_ENOTFOUND : HR_EIO;
	read_done(s, r, q);
	if (rc)
		batch_clear(out);
	return rc;
}

int sq_batch_list(struct store *st, const char *tenant_id, const struct batch_filter *f,
                  struct batch **out, size_t *n, bool *more)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	struct batch_filter none = {.status = -1, .limit = 100};
	if (!f)
		f = &none;
	int limit = f->limit < 1 ? 100 : f->limit > 1000 ? 1000 : f->limit;
	struct sq_reader *r;
	sqlite3_stmt *q;
	/* instr(): a plain substring test, with no LIKE wildcards to escape. */
	int rc = read_prepare(s, &r, &q,
	                      "SELECT " SQ_BATCH_COLS " FROM batch WHERE (?1 IS NULL OR tenant_id = ?1)"
	                      " AND (?2 < 0 OR status = ?2) AND (?3 IS NULL OR unit = ?3)"
	                      " AND (?4 IS NULL OR instr(name, ?4) > 0)"
	                      " AND (?5 = 0 OR created_at >= ?5) AND (?6 = 0 OR created_at < ?6)"
	                      " AND (?7 IS NULL OR id < ?7) AND (?9 = 0 OR NOT ingested)"
	                      " AND (?10 = 0 OR n_queued > 0) AND (?11 IS NULL OR retry_of = ?11)"
	                      " ORDER BY id DESC LIMIT ?8");
	if (rc)
		return rc;
	sq_bind_opt(q, 1, tenant_id);
	sqlite3_bind_int(q, 2, f->status);
	sq_bind_opt(q, 3, f->unit);
	sq_bind_opt(q, 4, f->name_like && *f->name_like ? f->name_like : NULL);
	sqlite3_bind_int64(q, 5, f->since_us);
	sqlite3_bind_int64(q, 6, f->until_us);
	sq_bind_opt(q, 7, f->before_id);
	sqlite3_bind_int(q, 8, limit + 1);
	sqlite3_bind_int(q, 9, f->not_ingested);
	sqlite3_bind_int(q, 10, f->has_queued);
	sq_bind_opt(q, 11, f->retry_of);
	struct batch *v = calloc((size_t)limit + 1, sizeof *v);
	if (!v) {
		read_done(s, r, q);
		return HR_ENOMEM;
	}
	size_t len = 0;
	int src;
	while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW && len <= (size_t)limit)
		rc = row_batch(q, &v[len++]);
	if (rc == 0 && src != SQLITE_ROW && src != SQLITE_DONE)
		rc = HR_EIO;
	read_done(s, r, q);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			batch_clear(&v[i]);
		free(v);
		return rc;
	}
	if (len > (size_t)limit) {
		batch_clear(&v[limit]);
		len = (size_t)limit;
		if (more)
			*more = true;
	}
	*out = v;
	*n = len;
	return 0;
}

/* The batch_item columns every row query selects first, in this order. */
#define SQ_ITEM_COLS(t)                                                                            \
	t "row_no, " t "recipient, " t "params, " t "valid, " t "duplicate, " t "error_column, " t   \
	"error, " t "message_id"

static void row_item(sqlite3_stmt *q, struct batch_item *it, bool *oom)
{
	const struct store_cols c = sq_cols(q);
	if (store_row_batch_item(&c, it, NULL))
		*oom = true;
}

/* Steps a bound row query into a heap array of at most limit items, then
 * gives back the statement and the reader. */
static int read_items(struct sq_store *s, struct sq_reader *r, sqlite3_stmt *q, int limit,
                      struct batch_item **out, size_t *n)
{
	struct batch_item *v = calloc((size_t)limit, sizeof *v);
	if (!v) {
		read_done(s, r, q);
		return HR_ENOMEM;
	}
	size_t len = 0;
	int src;
	bool oom = false;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && len < (size_t)limit)
		row_item(q, &v[len++], &oom);
	int rc = oom ? HR_ENOMEM : src == SQLITE_DONE || src == SQLITE_ROW ? 0 : HR_EIO;
	read_done(s, r, q);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			batch_item_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_batch_items(struct store *st, const char *batch_id, enum batch_items_which which,
                   int64_t after_row, int limit, struct batch_item **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 100000)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = read_prepare(s, &r, &q,
	                      "SELECT " SQ_ITEM_COLS("") " FROM batch_item WHERE batch_id = ?1"
	                      " AND row_no > ?2 AND (?3 = 0 OR (?3 = 1 AND valid = 0)"
	                      "  OR (?3 = 2 AND valid = 1 AND duplicate = 0 AND message_id IS NULL))"
	                      " ORDER BY row_no LIMIT ?4");
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, after_row);
	sqlite3_bind_int(q, 3, (int)which);
	sqlite3_bind_int(q, 4, limit);
	return read_items(s, r, q, limit, out, n);
}

int sq_batch_items_by_status(struct store *st, const char *batch_id, unsigned status_mask,
                             int64_t after_row, int limit, struct batch_item **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 100000)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = read_prepare(s, &r, &q,
	                      "SELECT " SQ_ITEM_COLS("i.")
	                      " FROM batch_item i JOIN message m ON m.id = i.message_id"
	                      " WHERE i.batch_id = ?1 AND i.row_no > ?2"
	                      " AND ((?3 >> m.status) & 1) = 1 ORDER BY i.row_no LIMIT ?4");
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, after_row);
	sqlite3_bind_int64(q, 3, status_mask);
	sqlite3_bind_int(q, 4, limit);
	return read_items(s, r, q, limit, out, n);
}

int sq_batch_recount(struct store *st, const char *batch_id, int64_t by_status[MSG__COUNT],
                     int64_t *replied)
{
	struct sq_store *s = (struct sq_store *)st;
	memset(by_status, 0, sizeof(int64_t) * MSG__COUNT);
	*replied = 0;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = read_prepare(s, &r, &q,
	                      "SELECT status, count(*) FROM message WHERE batch_id = ?1"
	                      " GROUP BY status");
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		int st_ = sqlite3_column_int(q, 0);
		if (st_ >= 0 && st_ < MSG__COUNT)
			by_status[st_] = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	if (src != SQLITE_DONE) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	if (sqlite3_prepare_v2(r->db,
	                       "SELECT count(DISTINCT i.message_id) FROM inbound i"
	                       " JOIN message m ON m.id = i.message_id WHERE m.batch_id = ?1",
	                       -1, &q, NULL) != SQLITE_OK) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
	src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		*replied = sqlite3_column_int64(q, 0);
	read_done(s, r, q);
	return src == SQLITE_ROW ? 0 : HR_EIO;
}

/*
 * The export's page in one statement: each row LEFT JOINed with its message
 * (none for rows never queued, or whose message retention removed) and its
 * latest reply; the three event times are correlated subqueries over
 * message_event(message_id, id), a few events per message, so a page costs
 * a handful of index probes a row and nothing grows with the batch.
 */
int sq_batch_export_rows(struct store *st, const char *batch_id, int64_t after_row, int limit,
                         struct batch_export_row **out, size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 10000)
		return HR_EINVAL;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = read_prepare(
	    s, &r, &q,
	    "SELECT bi.row_no, bi.recipient, bi.params, bi.valid, bi.duplicate, bi.error_column,"
	    " bi.error, bi.message_id, m.id IS NOT NULL, m.status, m.provider_id, m.error_code,"
	    " m.error_text, m.created_at, m.updated_at,"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id AND e.type = 'sent'),"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id"
	    "   AND e.type = 'webhook_status' AND e.applied <> 0 AND e.status = 3),"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id"
	    "   AND e.type = 'webhook_status' AND e.applied <> 0 AND e.status = 4),"
	    " i.kind, i.text, i.payload, i.received_at"
	    " FROM batch_item bi LEFT JOIN message m ON m.id = bi.message_id"
	    " LEFT JOIN inbound i ON i.id = (SELECT max(i2.id) FROM inbound i2"
	    "   WHERE i2.message_id = bi.message_id)"
	    " WHERE bi.batch_id = ?1 AND bi.row_no > ?2 ORDER BY bi.row_no LIMIT ?3");
	if (rc)
		return rc;
	sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, after_row);
	sqlite3_bind_int(q, 3, limit);
	struct batch_export_row *v = calloc((size_t)limit, sizeof *v);
	if (!v) {
		read_done(s, r, q);
		return HR_ENOMEM;
	}
	size_t len = 0;
	int src;
	bool oom = false;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && len < (size_t)limit) {
		struct batch_export_row *x = &v[len++];
		row_item(q, &x->item, &oom);
		x->has_message = sqlite3_column_int(q, 8) != 0;
		int status = sqlite3_column_int(q, 9);
		x->status = status >= 0 && status < MSG__COUNT ? (enum msg_status)status : MSG_UNKNOWN;
		sq_col_copy(q, 10, x->provider_id, sizeof x->provider_id);
		sq_col_copy(q, 11, x->error_code, sizeof x->error_code);
		sq_col_copy(q, 12, x->error_text, sizeof x->error_text);
		x->created_at = sqlite3_column_int64(q, 13);
		x->updated_at = sqlite3_column_int64(q, 14);
		x->sent_at = sqlite3_column_int64(q, 15);
		x->delivered_at = sqlite3_column_int64(q, 16);
		x->read_at = sqlite3_column_int64(q, 17);
		sq_col_copy(q, 18, x->reply_kind, sizeof x->reply_kind);
		x->reply_text = sq_col_dup(q, 19, &oom);
		x->reply_payload = sq_col_dup(q, 20, &oom);
		x->replied_at = sqlite3_column_int64(q, 21);
	}
	rc = oom ? HR_ENOMEM : src == SQLITE_DONE || src == SQLITE_ROW ? 0 : HR_EIO;
	read_done(s, r, q);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			batch_export_row_clear(&v[i]);
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

/* Steps a tally query (key, detail, count) into a heap array. */
static int read_tally(sqlite3_stmt *q, struct batch_tally **out, size_t *n, int64_t *seen)
{
	*out = calloc(BATCH_TALLY_MAX, sizeof **out);
	if (!*out)
		return HR_ENOMEM;
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && *n < BATCH_TALLY_MAX) {
		struct batch_tally *t = &(*out)[(*n)++];
		sq_col_copy(q, 0, t->key, sizeof t->key);
		sq_col_copy(q, 1, t->detail, sizeof t->detail);
		t->count = sqlite3_column_int64(q, 2);
		*seen += t->count;
	}
	return src == SQLITE_DONE || src == SQLITE_ROW ? 0 : HR_EIO;
}

int sq_batch_breakdown(struct store *st, const char *batch_id, int sample,
                       struct batch_tally **fail, size_t *nfail, int64_t *failed_seen,
                       struct batch_tally **rep, size_t *nrep, int64_t *replies_seen)
{
	struct sq_store *s = (struct sq_store *)st;
	*fail = *rep = NULL;
	*nfail = *nrep = 0;
	*failed_seen = *replies_seen = 0;
	if (sample < 1 || sample > 100000)
		return HR_EINVAL;
	static const char *const sql[2] = {
	    "SELECT coalesce(error_code, ''), coalesce(max(error_text), ''), count(*) FROM"
	    " (SELECT error_code, error_text FROM message WHERE batch_id = ?1 AND status IN (5, 6)"
	    "  LIMIT ?2) f GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 50",
	    /* The newest replies first, then one probe by key per reply (a
	     * correlated lookup: never the campaign's messages walked). */
	    "SELECT kind, coalesce(payload, ''), count(*) FROM"
	    " (SELECT kind, payload, message_id FROM inbound WHERE message_id IS NOT NULL"
	    "  AND id > coalesce((SELECT max(id) FROM inbound), 0) - ?2 ORDER BY id DESC LIMIT ?2) "
	    "i"
	    " WHERE (SELECT batch_id FROM message WHERE id = i.message_id) = ?1"
	    " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50"};
	int rc = 0;
	for (int k = 0; k < 2 && rc == 0; k++) {
		struct sq_reader *r;
		sqlite3_stmt *q;
		if ((rc = read_prepare(s, &r, &q, sql[k])))
			break;
		sqlite3_bind_text(q, 1, batch_id ? batch_id : "", -1, SQLITE_STATIC);
		sqlite3_bind_int(q, 2, sample);
		rc = k == 0 ? read_tally(q, fail, nfail, failed_seen)
		            : read_tally(q, rep, nrep, replies_seen);
		read_done(s, r, q);
	}
	if (rc) {
		free(*fail);
		free(*rep);
		*fail = *rep = NULL;
		*nfail = *nrep = 0;
	}
	return rc;
}
