/*
 * postgres_batch.c - the PostgreSQL backend's campaign (batch) rows: create,
 * read, list, the validated rows and the recount (sqlite_batch.c's twin).
 * What changes a batch after its creation is lifecycle code (lc_batch.c)
 * over postgres_tx.c's primitives.
 */
#include <stdlib.h>
#include <string.h>

#include "store/postgres_rows.h"

#define PG_BATCH_COLS                                                                              \
	"id, tenant_id, unit, name, channel, account_id, template_name, language, receipts, spec," \
	" status, error, retry_of, ingested, schedule_at, created_at, validated_at, started_at,"   \
	" completed_at, cancelled_at, failed_at, total, valid, invalid, duplicates, replied,"      \
	" n_queued, n_sending, n_sent, n_delivered, n_read, n_failed, n_undelivered,"              \
	" n_cancelled, n_expired, n_suppressed, n_unknown, paused_at, resumed_at, paused_by,"      \
	" resumed_by, cancelled_by, pause_reason, cancel_reason"

static int row_batch(const PGresult *r, int i, struct batch *b)
{
	const struct store_cols c = pg_cols(r, i);
	memset(b, 0, sizeof *b);
	return store_row_batch(&c, b, NULL);
}

struct job_batch {
	struct wr_job j;
	const struct batch *b;
};

static int run_create(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	const struct batch *b = ((struct job_batch *)j)->b;
	struct pg_params p = {0};
	pp_text(&p, b->id);
	pp_text(&p, b->tenant_id);
	pp_opt(&p, b->unit);
	pp_text(&p, b->name);
	pp_text(&p, b->channel);
	pp_text(&p, b->account_id);
	pp_opt(&p, b->template_name);
	pp_opt(&p, b->language);
	pp_bool(&p, b->receipts);
	pp_text(&p, b->spec);
	pp_opt(&p, b->retry_of);
	pp_i64(&p, b->schedule_at);
	pp_i64(&p, b->created_at ? b->created_at : s->gnow);
	int rc = pg_exec(&s->w, P_BATCH_CREATE,
	                 "INSERT INTO batch(id, tenant_id, unit, name, channel, account_id,"
	                 " template_name, language, receipts, spec, status, retry_of, schedule_at,"
	                 " created_at) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12,"
	                 " $13)",
	                 &p, NULL, &j->err, "batch");
	if (rc == HR_ECONFLICT)
		hr_fail(&j->err, rc, "id", "batch %s already exists", b->id);
	return rc;
}

int pg_batch_create(struct store *st, const struct batch *b, struct hr_err *err)
{
	if (!b || !hr_id_valid(b->id) || !b->tenant_id[0] || !b->name[0] || !b->channel[0] ||
	    !b->account_id[0])
		return hr_fail(err, HR_EINVAL, "batch",
		               "a batch needs an id, tenant, name, channel and account");
	struct job_batch c = {.j = {.run = run_create}, .b = b};
	return wr_run_blocking(&((struct pg_store *)st)->wr, &c.j, err);
}

int pg_batch_get(struct store *st, const char *tenant_id, const char *id, struct batch *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_text(&p, id ? id : "");
	pp_text(&p, tenant_id);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_BATCH_GET, -1,
	                 "SELECT " PG_BATCH_COLS " FROM batch WHERE id = $1"
	                 " AND ($2::text IS NULL OR tenant_id = $2)",
	                 &p, &r);
	if (rc)
		return rc;
	rc = PQntuples(r) ? row_batch(r, 0, out) : HR_ENOTFOUND;
	PQclear(r);
	if (rc)
		batch_clear(out);
	return rc;
}

int pg_batch_list(struct store *st, const char *tenant_id, const struct batch_filter *f,
                  struct batch **out, size_t *n, bool *more)
{
	*out = NULL;
	*n = 0;
	if (more)
		*more = false;
	struct batch_filter none = {.status = -1, .limit = 100};
	if (!f)
		f = &none;
	int limit = f->limit < 1 ? 100 : f->limit > 1000 ? 1000 : f->limit;
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, f->status);
	pp_text(&p, f->unit);
	pp_text(&p, f->name_like && *f->name_like ? f->name_like : NULL);
	pp_i64(&p, f->since_us);
	pp_i64(&p, f->until_us);
	pp_text(&p, f->before_id);
	pp_i64(&p, limit + 1);
	pp_bool(&p, f->not_ingested);
	pp_bool(&p, f->has_queued);
	pp_text(&p, f->retry_of);
	PGresult *r;
	/* strpos(): a plain substring test, with no LIKE wildcards to escape. */
	int rc = pg_read((struct pg_store *)st, P_BATCH_LIST, -1,
	                 "SELECT " PG_BATCH_COLS " FROM batch WHERE ($1::text IS NULL OR tenant_id = $1)"
	                 " AND ($2 < 0 OR status = $2) AND ($3::text IS NULL OR unit = $3)"
	                 " AND ($4::text IS NULL OR strpos(name, $4) > 0)"
	                 " AND ($5 = 0 OR created_at >= $5) AND ($6 = 0 OR created_at < $6)"
	                 " AND ($7::text IS NULL OR id < $7) AND (NOT $9 OR NOT ingested)"
	                 " AND (NOT $10 OR n_queued > 0) AND ($11::text IS NULL OR retry_of = $11)"
	                 " ORDER BY id DESC LIMIT $8",
	                 &p, &r);
	if (rc)
		return rc;
	int nr = PQntuples(r);
	size_t len = nr > limit ? (size_t)limit : (size_t)nr;
	struct batch *v = calloc(len ? len : 1, sizeof *v);
	if (!v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < len; i++)
		rc = row_batch(r, (int)i, &v[i]);
	PQclear(r);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			batch_clear(&v[i]);
		free(v);
		return rc;
	}
	if (more)
		*more = nr > limit;
	*out = v;
	*n = len;
	return 0;
}

/* The batch_item columns every row query selects first, in this order. */
#define PG_ITEM_COLS(t)                                                                            \
	t "row_no, " t "recipient, " t "params, " t "valid, " t "duplicate, " t "error_column, " t   \
	"error, " t "message_id"

static void row_item(const PGresult *r, int i, struct batch_item *it, bool *oom)
{
	const struct store_cols c = pg_cols(r, i);
	if (store_row_batch_item(&c, it, NULL))
		*oom = true;
}

/* Runs a row query (its parameters in p) into a heap array of items. */
static int read_items(struct store *st, enum pg_slot slot, const char *sql,
                      const struct pg_params *p, struct batch_item **out, size_t *n)
{
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, slot, -1, sql, p, &r);
	if (rc)
		return rc;
	int nr = PQntuples(r);
	struct batch_item *v = calloc(nr ? (size_t)nr : 1, sizeof *v);
	if (!v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	bool oom = false;
	for (int i = 0; i < nr; i++)
		row_item(r, i, &v[i], &oom);
	PQclear(r);
	if (oom) {
		for (int i = 0; i < nr; i++)
			batch_item_clear(&v[i]);
		free(v);
		return HR_ENOMEM;
	}
	*out = v;
	*n = (size_t)nr;
	return 0;
}

int pg_batch_items(struct store *st, const char *batch_id, enum batch_items_which which,
                   int64_t after_row, int limit, struct batch_item **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 100000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, batch_id ? batch_id : "");
	pp_i64(&p, after_row);
	pp_i64(&p, (int)which);
	pp_i64(&p, limit);
	return read_items(st, P_BATCH_ITEMS,
	                  "SELECT " PG_ITEM_COLS("") " FROM batch_item WHERE batch_id = $1"
	                  " AND row_no > $2 AND ($3 = 0 OR ($3 = 1 AND NOT valid)"
	                  "  OR ($3 = 2 AND valid AND NOT duplicate AND message_id IS NULL))"
	                  " ORDER BY row_no LIMIT $4",
	                  &p, out, n);
}

int pg_batch_items_by_status(struct store *st, const char *batch_id, unsigned status_mask,
                             int64_t after_row, int limit, struct batch_item **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 100000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, batch_id ? batch_id : "");
	pp_i64(&p, after_row);
	pp_i64(&p, status_mask);
	pp_i64(&p, limit);
	return read_items(st, P_BATCH_ITEMS_STATUS,
	                  "SELECT " PG_ITEM_COLS("i.")
	                  " FROM batch_item i JOIN message m ON m.id = i.message_id"
	                  " WHERE i.batch_id = $1 AND i.row_no > $2"
	                  " AND (($3::bigint >> m.status) & 1) = 1 ORDER BY i.row_no LIMIT $4",
	                  &p, out, n);
}

int pg_batch_recount(struct store *st, const char *batch_id, int64_t by_status[MSG__COUNT],
                     int64_t *replied)
{
	memset(by_status, 0, sizeof(int64_t) * MSG__COUNT);
	*replied = 0;
	struct pg_params p = {0};
	pp_text(&p, batch_id ? batch_id : "");
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_BATCH_RECOUNT, -1,
	                 "SELECT status, count(*) FROM message WHERE batch_id = $1 GROUP BY status",
	                 &p, &r);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t s = pg_col_i64(r, i, 0);
		if (s >= 0 && s < MSG__COUNT)
			by_status[s] = pg_col_i64(r, i, 1);
	}
	PQclear(r);
	rc = pg_read((struct pg_store *)st, P_BATCH_REPLIED, -1,
	             "SELECT count(DISTINCT i.message_id) FROM inbound i"
	             " JOIN message m ON m.id = i.message_id WHERE m.batch_id = $1",
	             &p, &r);
	if (rc)
		return rc;
	*replied = PQntuples(r) ? pg_col_i64(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

/* The export's page in one statement (sqlite_batch.c's twin, which says
 * why it is shaped so). */
int pg_batch_export_rows(struct store *st, const char *batch_id, int64_t after_row, int limit,
                         struct batch_export_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit < 1 || limit > 10000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, batch_id ? batch_id : "");
	pp_i64(&p, after_row);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_read(
	    (struct pg_store *)st, P_BATCH_EXPORT, -1,
	    "SELECT bi.row_no, bi.recipient, bi.params, bi.valid, bi.duplicate, bi.error_column,"
	    " bi.error, bi.message_id, m.id IS NOT NULL, m.status, m.provider_id, m.error_code,"
	    " m.error_text, m.created_at, m.updated_at,"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id AND e.type = 'sent'),"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id"
	    "   AND e.type = 'webhook_status' AND e.applied AND e.status = 3),"
	    " (SELECT min(e.at) FROM message_event e WHERE e.message_id = m.id"
	    "   AND e.type = 'webhook_status' AND e.applied AND e.status = 4),"
	    " i.kind, i.text, i.payload, i.received_at"
	    " FROM batch_item bi LEFT JOIN message m ON m.id = bi.message_id"
	    " LEFT JOIN inbound i ON i.id = (SELECT max(i2.id) FROM inbound i2"
	    "   WHERE i2.message_id = bi.message_id)"
	    " WHERE bi.batch_id = $1 AND bi.row_no > $2 ORDER BY bi.row_no LIMIT $3",
	    &p, &r);
	if (rc)
		return rc;
	int nr = PQntuples(r);
	struct batch_export_row *v = calloc(nr ? (size_t)nr : 1, sizeof *v);
	if (!v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	bool oom = false;
	for (int i = 0; i < nr; i++) {
		struct batch_export_row *x = &v[i];
		row_item(r, i, &x->item, &oom);
		x->has_message = pg_col_bool(r, i, 8);
		int64_t status = pg_col_i64(r, i, 9);
		x->status = status >= 0 && status < MSG__COUNT ? (enum msg_status)status : MSG_UNKNOWN;
		pg_col_copy(r, i, 10, x->provider_id, sizeof x->provider_id);
		pg_col_copy(r, i, 11, x->error_code, sizeof x->error_code);
		pg_col_copy(r, i, 12, x->error_text, sizeof x->error_text);
		x->created_at = pg_col_i64(r, i, 13);
		x->updated_at = pg_col_i64(r, i, 14);
		x->sent_at = pg_col_i64(r, i, 15);
		x->delivered_at = pg_col_i64(r, i, 16);
		x->read_at = pg_col_i64(r, i, 17);
		pg_col_copy(r, i, 18, x->reply_kind, sizeof x->reply_kind);
		x->reply_text = pg_col_dup(r, i, 19, &oom);
		x->reply_payload = pg_col_dup(r, i, 20, &oom);
		x->replied_at = pg_col_i64(r, i, 21);
	}
	PQclear(r);
	if (oom) {
		for (int i = 0; i < nr; i++)
			batch_export_row_clear(&v[i]);
		free(v);
		return HR_ENOMEM;
	}
	*out = v;
	*n = (size_t)nr;
	return 0;
}

/* A tally result (key, detail, count) into a heap array. */
static int pg_tally(PGresult *r, struct batch_tally **out, size_t *n, int64_t *seen)
{
	*out = calloc(BATCH_TALLY_MAX, sizeof **out);
	if (!*out)
		return HR_ENOMEM;
	int nr = PQntuples(r);
	for (int i = 0; i < nr && *n < BATCH_TALLY_MAX; i++) {
		struct batch_tally *t = &(*out)[(*n)++];
		pg_col_copy(r, i, 0, t->key, sizeof t->key);
		pg_col_copy(r, i, 1, t->detail, sizeof t->detail);
		t->count = pg_col_i64(r, i, 2);
		*seen += t->count;
	}
	return 0;
}

int pg_batch_breakdown(struct store *st, const char *batch_id, int sample,
                       struct batch_tally **fail, size_t *nfail, int64_t *failed_seen,
                       struct batch_tally **rep, size_t *nrep, int64_t *replies_seen)
{
	*fail = *rep = NULL;
	*nfail = *nrep = 0;
	*failed_seen = *replies_seen = 0;
	if (sample < 1 || sample > 100000)
		return HR_EINVAL;
	struct pg_params p = {0};
	pp_text(&p, batch_id ? batch_id : "");
	pp_i64(&p, sample);
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_BATCH_FAIL_CODES, -1,
	                 "SELECT coalesce(error_code, ''), coalesce(max(error_text), ''), count(*)"
	                 " FROM (SELECT error_code, error_text FROM message WHERE batch_id = $1"
	                 "  AND status IN (5, 6) LIMIT $2::bigint) f"
	                 " GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 50",
	                 &p, &r);
	if (rc == 0) {
		rc = pg_tally(r, fail, nfail, failed_seen);
		PQclear(r);
	}
	if (rc == 0 &&
	    (rc = pg_read((struct pg_store *)st, P_BATCH_REPLY_KINDS, -1,
	                  "SELECT kind, coalesce(payload, ''), count(*) FROM"
	                  " (SELECT kind, payload, message_id FROM inbound"
	                  "  WHERE message_id IS NOT NULL"
	                  "  AND id > coalesce((SELECT max(id) FROM inbound), 0) - $2::bigint"
	                  "  ORDER BY id DESC LIMIT $2::bigint) i"
	                  " WHERE (SELECT batch_id FROM message WHERE id = i.message_id) = $1"
	                  " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50",
	                  &p, &r)) == 0) {
		rc = pg_tally(r, rep, nrep, replies_seen);
		PQclear(r);
	}
	if (rc) {
		free(*fail);
		free(*rep);
		*fail = *rep = NULL;
		*nfail = *nrep = 0;
	}
	return rc;
}
