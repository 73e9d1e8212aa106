/*
 * postgres_tx.c - the PostgreSQL backend's side of lifecycle.h: lifecycle
 * functions run as writer jobs (inside the group transaction, each in its
 * own savepoint), and struct store_tx_ops over the writer's connection and
 * prepared statements. Storage only: every decision is lifecycle.c's.
 *
 * Several nodes may run these transactions on one database at once, so the
 * rows a decision reads are locked as they are read: claims take QUEUED rows
 * with FOR UPDATE SKIP LOCKED (a row being claimed elsewhere is skipped, not
 * waited for), lease expiry likewise, and a single message read to decide
 * its next status (a send outcome, a webhook) with FOR UPDATE, so a lease
 * expiring on one node and a late outcome arriving on another are applied
 * one after the other, each seeing the other's result.
 */
#include <stdlib.h>
#include <string.h>

#include "store/postgres_int.h"

struct job_lc {
	struct wr_job j;
	lc_tx_fn fn;
	void *ctx;
	bool ctx_inline;
};

/* What the claim statement found out beside the rows (see tx_claim). */
#define PG_CLAIM_SUPP_MAX 8
struct pg_claim_probe {
	bool valid;
	char account[HR_NAME_MAX];
	int alias_any;
	int nsupp;
	struct {
		char tenant[HR_NAME_MAX];
		char channel[16];
		int any;
	} supp[PG_CLAIM_SUPP_MAX];
};

struct pg_tx {
	struct store_tx base;
	struct pg_store *s;
	struct wr_job *j;
	struct pg_claim_probe probe;
};

static const struct store_tx_ops pg_tx_ops;

static int run_lc(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_lc *l = (struct job_lc *)j;
	struct pg_tx tx = {.base = {.ops = &pg_tx_ops}, .s = s, .j = j};
	void *ctx = l->ctx_inline ? (void *)(l + 1) : l->ctx;
	return l->fn(&tx.base, ctx);
}

static int pg_lc_run(struct store *st, lc_tx_fn fn, void *ctx, size_t ctx_size, store_done_fn cb,
                     void *arg, struct hr_err *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!cb) {
		struct job_lc l = {.j = {.run = run_lc}, .fn = fn, .ctx = ctx};
		return wr_run_blocking(&s->wr, &l.j, err);
	}
	size_t size = sizeof(struct job_lc) + ctx_size;
	struct job_lc *l = calloc(1, size);
	if (!l)
		return HR_ENOMEM;
	l->j.run = run_lc;
	l->fn = fn;
	l->ctx_inline = true;
	memcpy(l + 1, ctx, ctx_size);
	int rc = wr_run_async(&s->wr, &l->j, size, cb, arg);
	free(l);
	return rc;
}

const struct lc_backend pg_lc_backend = {.run = pg_lc_run};

#define TX(t) ((struct pg_tx *)(t))
#define S(t) (TX(t)->s)
#define W(t) (&TX(t)->s->w)
#define E(t) (&TX(t)->j->err)

/* The database's clock when the group began (now()): one time for every
 * job of the transaction, from the one clock all nodes share. */
static int64_t tx_now(struct store_tx *t)
{
	return S(t)->gnow;
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
	return pg_simple(W(t), "SAVEPOINT item", E(t), "savepoint");
}

static int tx_item_end(struct store_tx *t, bool keep)
{
	int rc = 0;
	if (!keep && (rc = pg_simple(W(t), "ROLLBACK TO SAVEPOINT item", E(t), "savepoint")))
		return rc;
	return pg_simple(W(t), "RELEASE SAVEPOINT item", E(t), "savepoint");
}

/* A failed statement leaves the transaction aborted but recoverable (the
 * item's savepoint undoes it); only a lost connection, or a transaction
 * that is gone, is not. */
static bool tx_alive(struct store_tx *t)
{
	PGconn *c = W(t)->c;
	if (!c || PQstatus(c) != CONNECTION_OK)
		return false;
	PGTransactionStatusType ts = PQtransactionStatus(c);
	return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

#define LC_MSG_COLS                                                                                \
	"id, tenant_id, account_id, channel, recipient, status, attempts, max_attempts,"           \
	" provider_id IS NOT NULL, lease_until, batch_id"

static void row_lc_msg(const PGresult *r, int i, struct lc_msg *m)
{
	memset(m, 0, sizeof *m);
	m->key = -1; /* rows are found again by id */
	pg_col_copy(r, i, 0, m->id, sizeof m->id);
	pg_col_copy(r, i, 1, m->tenant_id, sizeof m->tenant_id);
	pg_col_copy(r, i, 2, m->account_id, sizeof m->account_id);
	pg_col_copy(r, i, 3, m->channel, sizeof m->channel);
	pg_col_copy(r, i, 4, m->recipient, sizeof m->recipient);
	m->status = (enum msg_status)pg_col_i64(r, i, 5);
	m->attempts = (int)pg_col_i64(r, i, 6);
	m->max_attempts = (int)pg_col_i64(r, i, 7);
	m->has_provider_id = pg_col_bool(r, i, 8);
	m->lease_until = pg_col_i64(r, i, 9);
	pg_col_copy(r, i, 10, m->batch_id, sizeof m->batch_id);
}

static int tx_msg_get(struct store_tx *t, const char *id, struct lc_msg *out)
{
	struct pg_params p = {0};
	pp_text(&p, id);
	PGresult *r;
	int rc = pg_exec(W(t), P_MSG_STATE,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE id = $1 FOR UPDATE", &p, &r,
	                 E(t), "message");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found)
		row_lc_msg(r, 0, out);
	PQclear(r);
	return found ? 0 : hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
}

static int tx_msg_by_provider(struct store_tx *t, const char *account_id, const char *provider_id,
                              struct lc_msg *out)
{
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_text(&p, provider_id);
	PGresult *r;
	int rc = pg_exec(W(t), P_MSG_BY_PROVIDER,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE account_id = $1"
	                 " AND provider_id = $2 LIMIT 1 FOR UPDATE",
	                 &p, &r, E(t), "message");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found)
		row_lc_msg(r, 0, out);
	PQclear(r);
	return found;
}

/* One statement for every update lifecycle makes: each optional part is
 * switched by a flag parameter, so it is prepared once. */
static int tx_msg_update(struct store_tx *t, const struct lc_msg *m, const struct lc_update *u)
{
	unsigned f = u->set;
	struct pg_params p = {0};
	pp_text(&p, m->id);
	pp_bool(&p, (f & LC_SET_STATUS) != 0);
	pp_i64(&p, (int)u->status);
	pp_i64(&p, (f & LC_PROVIDER_ID_IF_NONE) ? 2 : (f & LC_SET_PROVIDER_ID) ? 1 : 0);
	pp_opt(&p, u->provider_id);
	pp_i64(&p, !(f & LC_SET_ERROR) ? 0 : (f & LC_KEEP_ERROR) ? 2 : 1);
	pp_opt(&p, u->error_code);
	pp_opt(&p, u->error_text);
	pp_bool(&p, (f & LC_SET_DUE) != 0);
	pp_i64(&p, u->due_at);
	pp_opt(&p, (f & LC_SET_RECIPIENT) ? u->recipient : NULL);
	pp_bool(&p, (f & LC_GIVE_BACK_ATTEMPT) != 0);
	pp_i64(&p, S(t)->gnow);
	return pg_exec(
	    W(t), P_LC_UPDATE,
	    "UPDATE message SET"
	    " status = CASE WHEN $2::boolean THEN $3::smallint ELSE status END,"
	    " lease_until = CASE WHEN $2::boolean THEN 0 ELSE lease_until END,"
	    " provider_id = CASE WHEN $4::int = 1 THEN coalesce($5::text, provider_id)"
	    "  WHEN $4::int = 2 THEN coalesce(provider_id, $5::text) ELSE provider_id END,"
	    " error_code = CASE WHEN $6::int = 1 THEN $7::text"
	    "  WHEN $6::int = 2 THEN coalesce($7::text, error_code) ELSE error_code END,"
	    " error_text = CASE WHEN $6::int = 1 THEN $8::text"
	    "  WHEN $6::int = 2 THEN coalesce($8::text, error_text) ELSE error_text END,"
	    " due_at = CASE WHEN $9::boolean THEN $10::bigint ELSE due_at END,"
	    " recipient = coalesce($11::text, recipient),"
	    " attempts = CASE WHEN $12::boolean THEN greatest(attempts - 1, 0) ELSE attempts END,"
	    " updated_at = $13::bigint"
	    " WHERE id = $1",
	    &p, NULL, E(t), "message");
}

static int tx_msg_insert(struct store_tx *t, const struct message *m)
{
	return pg_message_row_insert(S(t), m, S(t)->gnow, E(t));
}

/* Claim order, which UPDATE ... RETURNING does not keep. */
static int claim_cmp(const void *a, const void *b)
{
	const struct message *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

/*
 * One statement per account and batch: the MATERIALIZED CTE walks the
 * partial index of QUEUED rows in claim order and locks up to limit of
 * them, skipping rows another claimer holds, then the UPDATE moves exactly
 * those. (Without MATERIALIZED the planner may inline the subquery and run
 * the LIMIT more than once.) Each returned row also says whether the
 * account has any recipient alias and whether its tenant has any
 * suppressed recipient on its channel: the two probes lifecycle's screening
 * asks next, answered from here (tx_alias_any, tx_supp_any) instead of two
 * more round trips.
 */
static int tx_claim(struct store_tx *t, const char *account_id, int64_t now, int64_t lease_until,
                    int limit, struct message *out, size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_i64(&p, now);
	pp_i64(&p, lease_until);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_exec(
	    W(t), P_CLAIM,
	    "WITH c AS MATERIALIZED (SELECT id FROM message WHERE status = 0"
	    "  AND account_id = $1 AND due_at <= $2 ORDER BY priority, due_at, id LIMIT $4"
	    "  FOR UPDATE SKIP LOCKED)"
	    " UPDATE message m SET status = 1, attempts = m.attempts + 1, lease_until = $3,"
	    " updated_at = $2 FROM c WHERE m.id = c.id"
	    " RETURNING m.id, m.tenant_id, m.account_id, m.channel, m.recipient, m.batch_id,"
	    " m.content, m.body, m.status, m.priority, m.attempts, m.max_attempts, m.created_at,"
	    " m.updated_at, m.due_at, m.lease_until, m.provider_id, m.error_code, m.error_text,"
	    " m.segments,"
	    " EXISTS(SELECT 1 FROM recipient_alias WHERE account_id = $1),"
	    " EXISTS(SELECT 1 FROM suppression s WHERE s.tenant_id = m.tenant_id"
	    "  AND s.channel = m.channel)",
	    &p, &r, E(t), "claim");
	if (rc)
		return rc;
	int rows = PQntuples(r);
	struct pg_claim_probe *pr = &TX(t)->probe;
	memset(pr, 0, sizeof *pr);
	pr->valid = rows > 0;
	hr_strlcpy(pr->account, account_id, sizeof pr->account);
	for (int i = 0; i < rows && i < limit; i++) {
		if ((rc = pg_row_message(r, i, 0, &out[*n]))) {
			hr_fail(E(t), rc, "claim", "out of memory");
			break;
		}
		const struct message *m = &out[*n];
		pr->alias_any = pg_col_bool(r, i, 20);
		int k = 0;
		while (k < pr->nsupp && (strcmp(pr->supp[k].tenant, m->tenant_id) != 0 ||
		                         strcmp(pr->supp[k].channel, m->channel) != 0))
			k++;
		if (k == pr->nsupp && k < PG_CLAIM_SUPP_MAX) {
			hr_strlcpy(pr->supp[k].tenant, m->tenant_id, sizeof pr->supp[k].tenant);
			hr_strlcpy(pr->supp[k].channel, m->channel, sizeof pr->supp[k].channel);
			pr->supp[k].any = pg_col_bool(r, i, 21);
			pr->nsupp++;
		}
		(*n)++;
	}
	if (rc)
		pr->valid = false;
	PQclear(r);
	if (rc) {
		for (size_t i = 0; i < *n; i++)
			message_clear(&out[i]);
		*n = 0;
		return rc;
	}
	qsort(out, *n, sizeof *out, claim_cmp);
	return 0;
}

static int tx_lease_expired(struct store_tx *t, int64_t now, int limit, struct lc_msg *out,
                            size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, limit);
	PGresult *r;
	/* Walks the partial index of SENDING rows by lease_until. */
	int rc = pg_exec(W(t), P_LEASE_EXPIRED,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE status = 1 AND lease_until < $1"
	                 " LIMIT $2 FOR UPDATE SKIP LOCKED",
	                 &p, &r, E(t), "message");
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r) && i < limit; i++)
		row_lc_msg(r, i, &out[(*n)++]);
	PQclear(r);
	return 0;
}

static int tx_event_insert(struct store_tx *t, const char *message_id, const struct lc_event *e)
{
	return pg_event_insert(S(t), message_id, S(t)->gnow, e->provider_at, e->type, e->source,
	                       e->status, e->applied, e->detail, e->inbox_id, E(t));
}

static int tx_event_seen(struct store_tx *t, const char *message_id, int64_t inbox_id,
                         enum msg_status status)
{
	struct pg_params p = {0};
	pp_text(&p, message_id);
	pp_i64(&p, inbox_id);
	pp_i64(&p, (int)status);
	PGresult *r;
	int rc = pg_exec(W(t), P_EVENT_SEEN,
	                 "SELECT 1 FROM message_event WHERE message_id = $1 AND inbox_id = $2"
	                 " AND status = $3 AND type = 'webhook_status' LIMIT 1",
	                 &p, &r, E(t), "message_event");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

static int tx_supp_any(struct store_tx *t, const char *tenant_id, const char *channel)
{
	const struct pg_claim_probe *pr = &TX(t)->probe;
	for (int k = 0; pr->valid && k < pr->nsupp; k++)
		if (strcmp(pr->supp[k].tenant, tenant_id) == 0 &&
		    strcmp(pr->supp[k].channel, channel) == 0)
			return pr->supp[k].any;
	return pg_supp_any(S(t), tenant_id, channel, E(t));
}

static int tx_supp_reason(struct store_tx *t, const char *tenant_id, const char *channel,
                          const char *recipient, char *reason, size_t reason_size)
{
	char r[PG_REASON_MAX];
	int rc = pg_supp_reason(S(t), tenant_id, channel, recipient, r, E(t));
	if (rc == 1)
		hr_strlcpy(reason, r, reason_size);
	return rc;
}

static int tx_supp_put(struct store_tx *t, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason)
{
	TX(t)->probe.valid = false; /* the claim's probes no longer hold */
	return pg_supp_put(S(t), tenant_id, channel, recipient, reason, S(t)->gnow, E(t));
}

static int tx_supp_delete(struct store_tx *t, const char *tenant_id, const char *channel,
                          const char *recipient)
{
	TX(t)->probe.valid = false; /* the claim's probes no longer hold */
	return pg_supp_delete(S(t), tenant_id, channel, recipient, NULL, E(t));
}

static int tx_alias_any(struct store_tx *t, const char *account_id)
{
	const struct pg_claim_probe *pr = &TX(t)->probe;
	if (pr->valid && strcmp(pr->account, account_id) == 0)
		return pr->alias_any;
	return pg_alias_any(S(t), account_id, E(t));
}

static int tx_alias_get(struct store_tx *t, const char *account_id, const char *old,
                        char new_addr[HR_ADDR_MAX])
{
	return pg_alias_get(S(t), account_id, old, new_addr, E(t));
}

static int tx_alias_put(struct store_tx *t, const char *account_id, const char *old,
                        const char *new_addr)
{
	TX(t)->probe.valid = false; /* the claim's probes no longer hold */
	return pg_alias_put(S(t), account_id, old, new_addr, S(t)->gnow, E(t));
}

static int tx_account_of(struct store_tx *t, const char *account_id, char tenant[HR_NAME_MAX],
                         char channel[16])
{
	struct pg_params p = {0};
	pp_text(&p, account_id);
	PGresult *r;
	int rc = pg_exec(W(t), P_ACCOUNT_TENANT,
	                 "SELECT tenant_id, channel FROM channel_account WHERE id = $1", &p, &r,
	                 E(t), "channel_account");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found) {
		pg_col_copy(r, 0, 0, tenant, HR_NAME_MAX);
		pg_col_copy(r, 0, 1, channel, 16);
	}
	PQclear(r);
	return found;
}

static int tx_inbound_insert(struct store_tx *t, const struct lc_inbound *in)
{
	struct pg_params p = {0};
	pp_opt(&p, in->tenant_id);
	pp_text(&p, in->account_id);
	pp_opt(&p, in->message_id);
	pp_text(&p, in->provider_msg_id ? in->provider_msg_id : "");
	pp_text(&p, in->from);
	pp_text(&p, in->kind);
	pp_opt(&p, in->text);
	pp_opt(&p, in->payload);
	pp_i64(&p, in->provider_at);
	pp_i64(&p, in->received_at);
	PGresult *r;
	int rc = pg_exec(
	    W(t), P_INBOUND_INSERT,
	    "INSERT INTO inbound(tenant_id, account_id, message_id, provider_msg_id, sender, kind,"
	    " text, payload, provider_at, received_at)"
	    " VALUES(coalesce($1::text, (SELECT tenant_id FROM channel_account WHERE id = $2)),"
	    " $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	    " ON CONFLICT (provider_msg_id, account_id) WHERE provider_msg_id <> '' DO NOTHING",
	    &p, &r, E(t), "inbound");
	if (rc)
		return rc;
	int stored = atoi(PQcmdTuples(r)) > 0;
	PQclear(r);
	return stored;
}

static int tx_inbox_state(struct store_tx *t, int64_t id, int64_t *received_at, int *attempts,
                          char channel[16])
{
	struct pg_params p = {0};
	pp_i64(&p, id);
	PGresult *r;
	int rc = pg_exec(W(t), P_INBOX_STATE,
	                 "SELECT received_at, attempts, channel FROM webhook_inbox WHERE id = $1",
	                 &p, &r, E(t), "webhook_inbox");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found) {
		*received_at = pg_col_i64(r, 0, 0);
		*attempts = (int)pg_col_i64(r, 0, 1);
		pg_col_copy(r, 0, 2, channel, 16);
	}
	PQclear(r);
	return found;
}

static int inbox_cmp(const void *a, const void *b)
{
	const struct inbox_row *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int tx_inbox_claim(struct store_tx *t, int64_t now, int64_t until, int limit,
                          struct inbox_row *out, size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, until);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_exec(W(t), P_INBOX_CLAIM,
	                 "WITH c AS MATERIALIZED (SELECT id FROM webhook_inbox"
	                 "  WHERE state IN (0, 2) AND next_try_at <= $1 ORDER BY id LIMIT $3"
	                 "  FOR UPDATE SKIP LOCKED)"
	                 " UPDATE webhook_inbox w SET next_try_at = $2 FROM c WHERE w.id = c.id"
	                 " RETURNING w.id, w.account_id, w.channel, w.dedupe_key, w.received_at,"
	                 " w.attempts, w.body",
	                 &p, &r, E(t), "webhook_inbox");
	if (rc)
		return rc;
	if (PQntuples(r) > limit) {
		PQclear(r);
		return hr_fail(E(t), HR_EINTERNAL, "webhook_inbox", "claim returned too many rows");
	}
	rc = pg_inbox_rows(r, out, n);
	PQclear(r);
	if (rc)
		return hr_fail(E(t), rc, "webhook_inbox", "out of memory");
	qsort(out, *n, sizeof *out, inbox_cmp);
	return 0;
}

static int tx_inbox_mark(struct store_tx *t, int64_t id, int state, int attempts,
                         int64_t next_try_at, const char *error)
{
	struct pg_params p = {0};
	pp_i64(&p, id);
	pp_i64(&p, state);
	pp_i64(&p, attempts);
	if (next_try_at)
		pp_i64(&p, next_try_at);
	else
		pp_text(&p, NULL);
	pp_opt(&p, error);
	return pg_exec(W(t), P_INBOX_MARK,
	               "UPDATE webhook_inbox SET state = $2, attempts = $3,"
	               " next_try_at = coalesce($4, next_try_at), error = $5 WHERE id = $1",
	               &p, NULL, E(t), "webhook_inbox");
}

/* ---------------------------------------------------------------------------
 * Campaigns.
 * ------------------------------------------------------------------------- */

_Static_assert(MSG__COUNT == 11, "one n_<status> column per message status");
#define PG_BATCH_STATE                                                                             \
	"tenant_id, status, ingested, receipts, n_queued, n_sending, n_sent, n_delivered, n_read," \
	" n_failed, n_undelivered, n_cancelled, n_expired, n_suppressed, n_unknown"

static int state_result(PGresult *r, struct lc_batch_state *out)
{
	int found = PQntuples(r) > 0;
	if (found) {
		memset(out, 0, sizeof *out);
		pg_col_copy(r, 0, 0, out->tenant_id, sizeof out->tenant_id);
		out->status = (enum batch_status)pg_col_i64(r, 0, 1);
		out->ingested = pg_col_bool(r, 0, 2);
		out->receipts = pg_col_bool(r, 0, 3);
		for (int i = 0; i < MSG__COUNT; i++)
			out->by_status[i] = pg_col_i64(r, 0, 4 + i);
	}
	PQclear(r);
	return found;
}

/* A plain read, no FOR SHARE: the run usually updates the same row at its
 * end (batch_add), and two runs holding SHARE locks and then both asking
 * for the row's update lock would deadlock. A claim racing a cancel that
 * commits at the same moment may still send what it claimed: in flight,
 * as the cancel's answer says. */
static int tx_batch_state(struct store_tx *t, const char *batch_id, struct lc_batch_state *out)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	PGresult *r;
	int rc = pg_exec(W(t), P_BATCH_STATE,
	                 "SELECT " PG_BATCH_STATE " FROM batch WHERE id = $1", &p, &r,
	                 E(t), "batch");
	return rc ? rc : state_result(r, out);
}

static int tx_batch_add(struct store_tx *t, const char *batch_id, const int64_t delta[MSG__COUNT],
                        int64_t replied, struct lc_batch_state *after)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	for (int i = 0; i < MSG__COUNT; i++)
		pp_i64(&p, delta[i]);
	pp_i64(&p, replied);
	PGresult *r;
	int rc = pg_exec(
	    W(t), P_BATCH_ADD,
	    "UPDATE batch SET n_queued = n_queued + $2, n_sending = n_sending + $3,"
	    " n_sent = n_sent + $4, n_delivered = n_delivered + $5, n_read = n_read + $6,"
	    " n_failed = n_failed + $7, n_undelivered = n_undelivered + $8,"
	    " n_cancelled = n_cancelled + $9, n_expired = n_expired + $10,"
	    " n_suppressed = n_suppressed + $11, n_unknown = n_unknown + $12,"
	    " replied = replied + $13 WHERE id = $1 RETURNING " PG_BATCH_STATE,
	    &p, &r, E(t), "batch");
	return rc ? rc : state_result(r, after);
}

static int tx_batch_rows_add(struct store_tx *t, const char *batch_id, int64_t total,
                             int64_t valid, int64_t invalid, int64_t duplicates)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, total);
	pp_i64(&p, valid);
	pp_i64(&p, invalid);
	pp_i64(&p, duplicates);
	return pg_exec(W(t), P_BATCH_ROWS_ADD,
	               "UPDATE batch SET total = total + $2, valid = valid + $3,"
	               " invalid = invalid + $4, duplicates = duplicates + $5 WHERE id = $1",
	               &p, NULL, E(t), "batch");
}

static int tx_batch_set(struct store_tx *t, const char *batch_id, enum batch_status to, int64_t at,
                        const char *error, int ingested)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, (int)to);
	pp_i64(&p, at);
	pp_text(&p, error);
	pp_i64(&p, ingested);
	return pg_exec(
	    W(t), P_BATCH_SET,
	    "UPDATE batch SET status = $2::smallint,"
	    " validated_at = CASE WHEN $2 = 1 AND $3::bigint > 0 THEN $3::bigint ELSE validated_at END,"
	    " started_at = CASE WHEN $2 = 2 AND $3::bigint > 0 THEN $3::bigint ELSE started_at END,"
	    " completed_at = CASE WHEN $2 = 3 AND $3::bigint > 0 THEN $3::bigint ELSE completed_at END,"
	    " cancelled_at = CASE WHEN $2 = 4 AND $3::bigint > 0 THEN $3::bigint ELSE cancelled_at END,"
	    " failed_at = CASE WHEN $2 = 5 AND $3::bigint > 0 THEN $3::bigint ELSE failed_at END,"
	    " error = coalesce($4, error),"
	    " ingested = CASE WHEN $5::int >= 0 THEN $5::int > 0 ELSE ingested END WHERE id = $1",
	    &p, NULL, E(t), "batch");
}

enum { ITEM_COLS = 7 };

/* Rows [0, n) of items whose take[] is set, as unnest arrays in p. */
static int item_arrays(struct store_tx *t, struct pg_params *p, struct hr_buf col[ITEM_COLS],
                       const struct batch_item *items, size_t n, const bool *take, bool dup)
{
	for (size_t i = 0; i < n; i++) {
		const struct batch_item *it = &items[i];
		if (!take[i])
			continue;
		pg_arr_i64(&col[0], it->row);
		pg_arr_text(&col[1], it->recipient);
		pg_arr_text(&col[2], it->params);
		pg_arr_bool(&col[3], it->valid);
		pg_arr_bool(&col[4], dup || (it->valid && it->duplicate));
		pg_arr_text(&col[5], it->valid ? NULL : it->error_column);
		pg_arr_text(&col[6], it->valid ? NULL : it->error);
	}
	for (int c = 0; c < ITEM_COLS; c++) {
		const char *v = pg_arr_end(&col[c]);
		if (!v)
			return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
		pp_text(p, v);
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

#define PG_ITEM_INSERT                                                                             \
	"INSERT INTO batch_item(batch_id, row_no, recipient, params, valid, duplicate,"            \
	" error_column, error) SELECT $1, r, rc, pa, v, d, ec, e FROM unnest($2::bigint[],"        \
	" $3::text[], $4::text[], $5::boolean[], $6::boolean[], $7::text[], $8::text[])"          \
	" AS u(r, rc, pa, v, d, ec, e)"

/*
 * All the rows in one statement; the unique key over (batch, recipient) of
 * the valid rows turns a repeated recipient into nothing inserted (ON
 * CONFLICT DO NOTHING also covers two such rows within the statement), and
 * those rows go in again, as duplicates, with a second statement. A row
 * number stored before fails the whole call (primary key).
 */
static int tx_items_insert(struct store_tx *t, const char *batch_id,
                           const struct batch_item *items, size_t n, int64_t *dups)
{
	*dups = 0;
	if (n == 0)
		return 0;
	bool *take = malloc(n * sizeof *take);
	if (!take)
		return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
	for (size_t i = 0; i < n; i++)
		take[i] = true;
	struct hr_buf col[ITEM_COLS] = {0};
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	PGresult *r = NULL;
	int rc = item_arrays(t, &p, col, items, n, take, false);
	if (!rc)
		rc = pg_exec(W(t), P_ITEM_INSERT,
		             PG_ITEM_INSERT " ON CONFLICT (batch_id, recipient)"
		                            " WHERE valid AND NOT duplicate DO NOTHING RETURNING row_no",
		             &p, &r, E(t), "batch_item");
	for (int c = 0; c < ITEM_COLS; c++)
		free(col[c].p), col[c] = (struct hr_buf){0};
	if (rc == HR_ECONFLICT)
		rc = hr_fail(E(t), rc, "row", "a row number of these rows is already stored");
	if (rc) {
		free(take);
		return rc;
	}
	/* Inserted rows come back (row numbers are unique within the call,
	 * else the statement failed); the others repeat a recipient. */
	int nr = PQntuples(r);
	int64_t *got = malloc(((size_t)nr + 1) * sizeof *got);
	if (!got) {
		PQclear(r);
		free(take);
		return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
	}
	for (int k = 0; k < nr; k++)
		got[k] = pg_col_i64(r, k, 0);
	PQclear(r);
	qsort(got, (size_t)nr, sizeof *got, cmp_i64);
	for (size_t i = 0; i < n; i++)
		take[i] = !bsearch(&items[i].row, got, (size_t)nr, sizeof *got, cmp_i64);
	free(got);
	size_t left = n - (size_t)nr;
	if (left) {
		struct pg_params q = {0};
		pp_text(&q, batch_id);
		rc = item_arrays(t, &q, col, items, n, take, true);
		if (!rc)
			rc = pg_exec(W(t), P_ITEM_DUP_INSERT, PG_ITEM_INSERT, &q, NULL, E(t),
			             "batch_item");
		for (int c = 0; c < ITEM_COLS; c++)
			free(col[c].p);
		*dups = (int64_t)left;
	}
	free(take);
	return rc;
}

static int tx_item_take(struct store_tx *t, const char *batch_id, int64_t row,
                        const char *message_id)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, row);
	pp_text(&p, message_id);
	PGresult *r;
	int rc = pg_exec(W(t), P_ITEM_TAKE,
	                 "UPDATE batch_item SET message_id = $3 WHERE batch_id = $1 AND row_no = $2"
	                 " AND message_id IS NULL AND valid AND NOT duplicate RETURNING 1",
	                 &p, &r, E(t), "batch_item");
	if (rc)
		return rc;
	int taken = PQntuples(r) > 0;
	PQclear(r);
	return taken;
}

static int tx_batch_queued(struct store_tx *t, const char *batch_id, int limit,
                           struct lc_msg *out, size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = pg_exec(W(t), P_BATCH_QUEUED,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE batch_id = $1 AND status = 0"
	                 " LIMIT $2 FOR UPDATE SKIP LOCKED",
	                 &p, &r, E(t), "message");
	if (rc)
		return rc;
	int nr = PQntuples(r);
	for (int i = 0; i < nr && i < limit; i++)
		row_lc_msg(r, i, &out[(*n)++]);
	PQclear(r);
	return 0;
}

static int tx_batch_delete(struct store_tx *t, const char *batch_id)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	int rc = pg_exec(W(t), P_BATCH_DELETE_ITEMS, "DELETE FROM batch_item WHERE batch_id = $1",
	                 &p, NULL, E(t), "batch");
	return rc ? rc
	          : pg_exec(W(t), P_BATCH_DELETE, "DELETE FROM batch WHERE id = $1", &p, NULL, E(t),
	                    "batch");
}

static int tx_inbound_exists(struct store_tx *t, const char *message_id)
{
	struct pg_params p = {0};
	pp_text(&p, message_id);
	PGresult *r;
	int rc = pg_exec(W(t), P_INBOUND_EXISTS, "SELECT 1 FROM inbound WHERE message_id = $1 LIMIT 1",
	                 &p, &r, E(t), "inbound");
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

static const struct store_tx_ops pg_tx_ops = {
    .now = tx_now,
    .err = tx_err,
    .json = tx_json,
    .item_begin = tx_item_begin,
    .item_end = tx_item_end,
    .alive = tx_alive,
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
    .batch_rows_add = tx_batch_rows_add,
    .batch_set = tx_batch_set,
    .items_insert = tx_items_insert,
    .item_take = tx_item_take,
    .batch_queued = tx_batch_queued,
    .inbound_exists = tx_inbound_exists,
    .batch_delete = tx_batch_delete,
};

/* ---- the shared rules, bound to this backend (filled into store_postgres) ---- */

int pg_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us, int limit,
             struct message *out, size_t *n)
{
	return lc_claim(&pg_lc_backend, st, account_id, now, lease_us, limit, out, n);
}

int pg_record_results(struct store *st, const struct send_result *r, size_t n, store_done_fn cb,
                      void *arg)
{
	return lc_record_results(&pg_lc_backend, st, r, n, cb, arg);
}

int pg_requeue_expired(struct store *st, int64_t now, int *n)
{
	return lc_requeue_expired(&pg_lc_backend, st, now, n);
}

int pg_inbox_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                   struct inbox_row **out, size_t *n)
{
	return lc_inbox_claim(&pg_lc_backend, st, now, lease_us, limit, out, n);
}

int pg_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats)
{
	return lc_apply_inbox(&pg_lc_backend, st, rows, n, now, stats);
}

int pg_batch_items_put(struct store *st, const char *batch_id, const struct batch_item *items,
                       size_t n, struct hr_err *err)
{
	return lc_batch_items_put(&pg_lc_backend, st, batch_id, items, n, err);
}

int pg_batch_set_status(struct store *st, const char *tenant_id, const char *id,
                        enum batch_status to, const char *error, struct hr_err *err)
{
	return lc_batch_set_status(&pg_lc_backend, st, tenant_id, id, to, error, err);
}

int pg_batch_enqueue(struct store *st, const char *batch_id, const int64_t *rows,
                     const struct message *msgs, size_t n, bool last, size_t *made,
                     struct hr_err *err)
{
	return lc_batch_enqueue(&pg_lc_backend, st, batch_id, rows, msgs, n, last, made, err);
}

int pg_batch_discard(struct store *st, const char *tenant_id, const char *id,
                     struct hr_err *err)
{
	return lc_batch_discard(&pg_lc_backend, st, tenant_id, id, err);
}

int pg_batch_cancel_step(struct store *st, const char *batch_id, int limit, int64_t *n)
{
	return lc_batch_cancel_step(&pg_lc_backend, st, batch_id, limit, n);
}
