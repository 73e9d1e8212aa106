/*
 * postgres_int.h - internals shared by the PostgreSQL backend's files
 * (postgres.c: connections, the writer, the reader pool, helpers;
 * postgres_schema.c: migrations and partitions; postgres_conf.c: tenants,
 * keys, accounts, templates, idempotency, retention; postgres_msg.c:
 * messages; postgres_hook.c: the webhook inbox; postgres_supp.c: the
 * suppression list and recipient aliases; postgres_tx.c: lifecycle.h's
 * transaction interface; postgres_retain.c: message retention). Nothing
 * outside src/store/ includes it.
 *
 * Threads: the writer thread ("herald-pgwrite", writer.h) owns `w`, the
 * writer's connection, and its prepared statements; nothing else touches
 * them once it runs. Readers borrow a connection from the pool for one call.
 *
 * Connections that break (the server restarted, the network dropped) are
 * dropped and opened again on next use: the writer before its next group,
 * readers when they are next borrowed. A write that was in the transaction
 * that broke fails with HR_EBUSY (the API answers 503): PostgreSQL rolled it
 * back, or, if the break came during COMMIT itself, it may have committed
 * whole; it is never half-written.
 */
#ifndef HR_POSTGRES_INT_H
#define HR_POSTGRES_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store/daily.h"
#include "store/lifecycle.h"
#include "store/store.h"
#include "store/writer.h"

/* ---- migrations (postgres_schema.c) ---- */
struct pg_migration {
	int version;
	const char *sql;
};
extern const struct pg_migration pg_migrations[];
extern const size_t pg_migration_count;
/* Months of message partitions made ahead of (and behind) the current one. */
#define PG_PARTITION_MONTHS_AHEAD 3
#define PG_PARTITION_MONTHS_BACK 1

/* Prepared statements, one name per slot on every connection ("h<slot>"),
 * prepared on a connection the first time it runs the slot. */
enum pg_slot {
	/* writer */
	P_TENANT_UPSERT,
	P_APIKEY_PUT,
	P_APIKEY_PRUNE,
	P_INBOX_PRUNE,
	P_IDEM_PRUNE,
	P_ACCOUNT_UPSERT,
	P_TEMPLATE_UPSERT,
	P_MSG_INSERT,
	P_MSG_ACCEPT,
	P_MSG_ACCEPT_MANY,
	P_MSG_IDEM_KEY,
	P_EVENT_INSERT,
	P_IDEM_INSERT,
	P_CLAIM,
	P_MSG_STATE,
	P_LC_UPDATE,
	P_LEASE_EXPIRED,
	P_INBOX_INSERT,
	P_INBOX_STATE,
	P_INBOX_MARK,
	P_INBOX_CLAIM,
	P_MSG_BY_PROVIDER,
	P_INBOUND_INSERT,
	P_EVENT_SEEN,
	P_SUPP_PUT,
	P_SUPP_DELETE,
	P_SUPP_GET,
	P_SUPP_ANY,
	P_ALIAS_PUT,
	P_ALIAS_REPOINT,
	P_ALIAS_GET,
	P_ALIAS_ANY,
	P_ALIAS_DELETE,
	P_ACCOUNT_TENANT,
	P_PREFETCH_MSG,
	P_PREFETCH_PAIRS,
	P_PREFETCH_INBOX,
	P_PREFETCH_SEEN,
	P_RETAIN,
	P_STATUS_ADD, /* prep[] only: the commit's EXECUTE herald_status_add */
	P_CB_ADD_MSG,
	P_CB_ADD_TENANT,
	P_CB_CLAIM,
	P_CB_DONE,
	P_CB_REPLAY_ONE,
	P_CB_REPLAY_DEAD,
	P_CB_PRUNE,
	P_CB_LIST,
	P_CB_LIST_STATE,
	P_CB_GET,
	P_CB_GET_ANY,
	P_CB_COUNTS,
	P_MSG_EXPIRED,
	P_FALLBACK_DUE,
	P_MSG_ROUTE,
	P_FALLBACK_PUT,
	P_INBOX_WAITING,
	P_STALE_LIST,
	P_PARKED,
	P_ROUTE,
	/* readers */
	P_APIKEY,
	P_ACCOUNTS_ALL,
	P_ACCOUNTS_TENANT,
	P_TEMPLATE,
	P_MSG_GET,
	P_MSG_GET_PROVIDER,
	P_EVENTS,
	P_COUNTS_ALL,
	P_COUNTS_TENANT,
	P_GAUGES,
	P_NEXT_DUE,
	P_IDEM,
	P_INBOX_FETCH,
	P_INBOX_PENDING,
	P_SUPP_ALL,
	P_SUPP_CHANNEL,
	P_BATCH_STATE,
	P_BATCH_ADD,
	P_BATCH_ROWS_ADD,
	P_BATCH_SET,
	P_ITEM_INSERT,
	P_ITEM_DUP_INSERT,
	P_ITEM_TAKE,
	P_BATCH_QUEUED,
	P_BATCH_HOLD,
	P_BATCH_RELEASE,
	P_BATCH_NOTE,
	P_INBOUND_EXISTS,
	P_BATCH_GET,
	P_BATCH_LIST,
	P_BATCH_ITEMS,
	P_BATCH_RECOUNT,
	P_BATCH_FAIL_CODES,
	P_BATCH_REPLY_KINDS,
	P_BATCH_EXPORT,
	P_BATCH_REPLIED,
	P_BATCH_CREATE,
	P_BATCH_DELETE,
	P_BATCH_ITEMS_STATUS,
	P_BATCH_DELETE_ITEMS,
	P_LIST,
	P_AUDIT_INSERT,
	P_TENANT_CREATE,
	P_TENANT_GET,
	P_TENANT_LIST,
	P_TENANT_DISABLE,
	P_UNIT_TENANT_CHECK,
	P_UNIT_CREATE,
	P_UNIT_GET,
	P_UNIT_LIST,
	P_UNIT_DISABLE,
	P_KEY_UNIT_CHECK,
	P_KEY_CREATE,
	P_KEY_SEED,
	P_KEY_LOOKUP,
	P_KEY_LIST,
	P_KEY_REVOKE,
	P_KEY_TOUCH,
	P_AUDIT_LIST,
	P_TENANT_LIMITS,
	P_TENANT_USAGE,
	P_DAILY_TAKE,
	P_START_LIMITS,
	/* secrets branch: templates through the API, audit rows in lifecycle runs */
	P_AUDIT_INSERT_TX,
	P_TEMPLATE_UNIT,
	P_TEMPLATE_COUNT,
	P_TEMPLATE_INSERT,
	P_TEMPLATE_UPDATE,
	P_TEMPLATE_DELETE,
	P_TEMPLATE_LIST,
	P_MSG_REROUTE, /* plugin route changes */
	/* recipient history */
	P_SUPP_LOG,
	P_RECIP_SUPP,
	P_RECIP_SUPP_EV,
	P_RECIP_INBOUND,
	P_QUEUE_DEPTH, /* account health */
	P_PAUSE_PUT,
	P_PAUSE_DELETE,
	P_PAUSES,
	P_DAILY_COUNT_ADD, /* daily counters */
	P_DAILY,
	P_PEV_ADD,
	P_PEV_DONE,
	P_PEV_READ,
	P_PEV_COUNT,
	P_PEV_LEAD, /* plugin events */
	P__COUNT
};

/* message_list: one prepared statement per combination of optional filters. */
#define PG_LIST_VARIANTS 512

/* One connection and what has been prepared on it. */
struct pg_conn {
	struct pg_conn *next; /* the reader pool's free list */
	PGconn *c;
	bool prep[P__COUNT];
	bool list_prep[PG_LIST_VARIANTS];
};

/* Parameters of one statement, all sent as text except bytea (binary). */
/* The message insert has 22 parameters, 23 with the event time. */
#define PG_PARAMS_MAX 32
struct pg_params {
	int n;
	const char *v[PG_PARAMS_MAX];
	int len[PG_PARAMS_MAX];
	int fmt[PG_PARAMS_MAX];
	char num[PG_PARAMS_MAX][24];
};
void pp_text(struct pg_params *p, const char *s); /* NULL -> SQL NULL */
void pp_opt(struct pg_params *p, const char *s);  /* NULL or "" -> SQL NULL */
void pp_i64(struct pg_params *p, int64_t v);
void pp_bool(struct pg_params *p, bool v);
void pp_bytes(struct pg_params *p, const void *b, size_t len);
/* Array literals ('{"a","b"}') built element by element in an hr_buf, so a
 * batch of rows travels as one parameter per column (unnest on the server).
 * pg_arr_end closes the literal: its text, or NULL if memory ran out. */
void pg_arr_text(struct hr_buf *a, const char *v); /* NULL -> NULL element */
void pg_arr_i64(struct hr_buf *a, int64_t v);
void pg_arr_bool(struct hr_buf *a, bool v);
const char *pg_arr_end(struct hr_buf *a);

/* One command sent in the writer's pipeline, and whose result it is. */
struct pg_pcmd {
	struct wr_job *job;
	enum pg_slot slot;
	enum { PC_SAVEPOINT, PC_RELEASE, PC_PREPARE, PC_STMT } kind;
	const char *field;
	char conflict[160]; /* the message for a unique violation, "" for pg_fail's */
};

struct pg_store {
	struct store base;
	struct store_opts opts;
	char *dsn;
	char *password;

	/* writer: the thread and queue (writer.c) and what it owns here. A job
	 * marked `pipeable` only writes and needs no result back (pg_wdo for
	 * all its statements): several such jobs in a group are sent in one
	 * pipeline. */
	struct wr wr;
	struct pg_conn w;
	int64_t gnow;         /* the database's clock at the group's BEGIN (us) */
	/* This store's row of message_status_count per status (picked at
	 * random at open, 0 .. PG_STATUS_STRIPES - 1): nodes sharing the
	 * database move their own rows, so their commits do not queue behind
	 * one another's lock on a shared counter row. */
	int stripe;
	/* Status deltas noted by the jobs of the open group (pg_status_note),
	 * one entry per job: written with one upsert just before COMMIT, for
	 * the jobs that succeeded (w_commit), so a group updates this node's
	 * counter rows once however many accepts and runs it holds. */
	struct pg_sd {
		const struct wr_job *job;
		int64_t d[MSG__COUNT];
	} *sd;
	size_t nsd, capsd;
	/* the daily counters (store/daily.h) noted per job the same
	 * way (pg_daily_note), written with one multi-row upsert into this
	 * node's stripe just before COMMIT for the jobs that succeeded. */
	struct pg_dd {
		const struct wr_job *job;
		struct daily_acc d;
	} * dd;
	size_t ndd, capdd;
	const void *sd_prep_conn; /* the writer connection PREPARE was tried on */
	bool piping;          /* the writer's connection is in pipeline mode */
	struct pg_pcmd *pcmd; /* the commands sent in the current pipeline */
	size_t npcmd, pcap;
	struct ev_json json;
	atomic_uint_fast64_t pipelines;   /* pipeline round trips */
	atomic_uint_fast64_t pipe_failed; /* jobs that failed inside one */
	atomic_uint_fast64_t tx_trips;    /* round trips of lifecycle runs (postgres_tx.c) */
	atomic_uint_fast64_t tx_replays;  /* lifecycle runs undone and run again */

	/* readers */
	pthread_mutex_t rlock;
	pthread_cond_t rcond;
	struct pg_conn *rfree;
	int rcount, rmax;
};

/* ---- postgres.c ---- */
/* Opens a connection with the store's dsn and password; 0 or HR_EBUSY. */
int pg_connect(struct pg_store *s, struct pg_conn *c, struct hr_err *err);
void pg_disconnect(struct pg_conn *c);
/*
 * Runs slot's statement (prepared from sql on first use on this connection)
 * with p. 0 and *out (PQclear it; out may be NULL) when it succeeded, else
 * an HR_E* code with err filled: HR_ECONFLICT for a constraint, HR_EBUSY for
 * a lost connection or a serialisation failure, HR_EIO otherwise.
 */
int pg_exec(struct pg_conn *c, enum pg_slot slot, const char *sql, const struct pg_params *p,
            PGresult **out, struct hr_err *err, const char *field);
/*
 * A write statement of a writer job that needs no result: run now (0 or an
 * HR_E* code in j->err), or, while the writer pipelines (s->piping), sent
 * and its result read later by the writer (0, or HR_EBUSY if it could not
 * be sent). conflict (may be NULL) replaces the message of a unique
 * violation, which then names `field`.
 */
int pg_wdo(struct pg_store *s, struct wr_job *j, enum pg_slot slot, const char *sql,
           const struct pg_params *p, const char *field, const char *conflict);
/* Same for an ad hoc name (message_list variants): prepared flag given. */
int pg_exec_named(struct pg_conn *c, const char *name, bool *prepared, const char *sql,
                  const struct pg_params *p, PGresult **out, struct hr_err *err, const char *field);
/* Runs sql (no parameters, may hold several statements) as a simple query. */
int pg_simple(struct pg_conn *c, const char *sql, struct hr_err *err, const char *field);
/* Maps a failed result (or a NULL one) to an HR_E* code and fills err. */
int pg_fail(struct pg_conn *c, const PGresult *res, struct hr_err *err, const char *field);

int pg_reader_get(struct pg_store *s, struct pg_conn **out);
/* One read on a pooled connection (retried once on a fresh one if the
 * pooled one broke): 0 and *out (PQclear it) or an HR_E* code.
 * list_mask >= 0 runs message_list variant list_mask instead of slot. */
int pg_read(struct pg_store *s, enum pg_slot slot, int list_mask, const char *sql,
            const struct pg_params *p, PGresult **out);
void pg_reader_put(struct pg_store *s, struct pg_conn *c);

/* Column readers: "" / 0 for NULL. */
void pg_col_copy(const PGresult *r, int row, int col, char *dst, size_t size);
char *pg_col_dup(const PGresult *r, int row, int col, bool *oom);
int64_t pg_col_i64(const PGresult *r, int row, int col);
bool pg_col_bool(const PGresult *r, int row, int col);

/* The message columns every read returns, in struct order. */
#define PG_MSG_COLS                                                                                \
	"id, tenant_id, account_id, channel, recipient, batch_id, content, body, status, "         \
	"priority, attempts, max_attempts, created_at, updated_at, due_at, lease_until, "          \
	"provider_id, error_code, error_text, segments, delivery_policy, expires_at, route, "      \
	"route_step, route_steps, route_root, fallback_after"
#define PG_MSG_NCOLS 27 /* the columns of PG_MSG_COLS */
int pg_row_message(const PGresult *r, int row, int col, struct message *m);

/* ---- the reconciler (postgres_rec.c reads, postgres_tx.c lifecycle runs) ---- */
int pg_reconcile_expire(struct store *st, int64_t now, int limit, int *n);
int pg_reconcile_fallback_due(struct store *st, int64_t now, int limit, int *n);
int pg_stale_list(struct store *st, const char *channel, int64_t sent_before, int limit,
                  struct message **out, size_t *n);
int pg_stale_settle(struct store *st, const struct stale_answer *a, size_t n,
                    struct stale_stats *stats);
int pg_inbox_park(struct store *st, int64_t received_before, int limit, int *n);
int pg_inbox_parked(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                    struct inbox_row **out, size_t *n, bool *more);
int pg_message_route(struct store *st, const char *tenant_id, const char *root_id,
                     struct message **out, size_t *n);

/* ---- postgres_schema.c ---- */
/* Applies pending migrations (each in its own transaction) and makes the
 * partitions of the coming months. */
int pg_migrate_conn(struct pg_conn *c, int *applied, struct hr_err *err);

/* ---- postgres_msg.c ---- */
int pg_message_row_insert(struct pg_store *s, const struct message *m, int64_t now,
                          struct hr_err *err);

/* ---- postgres_supp.c: writer-side helpers ---- */
#define PG_REASON_MAX sizeof(((struct suppression_row *)0)->reason)
int pg_supp_put(struct pg_store *s, const char *tenant_id, const char *channel,
                const char *recipient, const char *reason, int64_t now, struct hr_err *err);
int pg_supp_delete(struct pg_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, int *deleted, struct hr_err *err);
int pg_supp_reason(struct pg_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, char reason[PG_REASON_MAX], struct hr_err *err);
int pg_supp_any(struct pg_store *s, const char *tenant_id, const char *channel, struct hr_err *err);
int pg_alias_put(struct pg_store *s, const char *account_id, const char *old, const char *new_addr,
                 int64_t now, struct hr_err *err);
int pg_alias_get(struct pg_store *s, const char *account_id, const char *old,
                 char new_addr[HR_ADDR_MAX], struct hr_err *err);
int pg_alias_any(struct pg_store *s, const char *account_id, struct hr_err *err);

/* ---- op entry points (filled into store_postgres by postgres.c) ---- */
int pg_tenant_upsert(struct store *st, const struct tenant_row *t, struct hr_err *err);
int pg_api_key_put(struct store *st, const char *tenant_id, const char *key_hash, const char *label,
                   struct hr_err *err);
int pg_api_key_lookup(struct store *st, const char *key_hash, char tenant_id[HR_NAME_MAX]);
int pg_prune(struct store *st, int64_t inbox_before, int64_t idem_before, int limit, int64_t *n);
int pg_api_key_prune(struct store *st, const char *tenant_id, const char *const *keep_hashes,
                     size_t n, struct hr_err *err);
int pg_account_upsert(struct store *st, const struct account_row *a, struct hr_err *err);
/* The account upsert's statement on the writer (postgres_conf.c). */
int pg_account_write(struct pg_store *s, const struct account_row *a, struct hr_err *err);
int pg_account_put(struct store *st, const struct account_row *a, const struct audit_row *au,
                   struct hr_err *err);
int pg_template_put(struct store *st, const struct template_row *t, const struct audit_row *au,
                    bool *created, struct hr_err *err);
int pg_template_delete(struct store *st, const char *tenant_id, const char *channel,
                       const char *name, const char *language, const char *unit,
                       const struct audit_row *au, struct hr_err *err);
int pg_template_list(struct store *st, const char *tenant_id, const char *unit,
                     const struct template_key *after, int limit, struct template_row **out,
                     size_t *n, bool *more);
int pg_batch_set_status_audit(struct store *st, const char *tenant_id, const char *id,
                              enum batch_status to, const char *error, const struct audit_row *a,
                              struct hr_err *err);
int pg_account_list(struct store *st, const char *tenant_id, struct account_row **out, size_t *n);
int pg_template_upsert(struct store *st, const struct template_row *t, struct hr_err *err);
int pg_template_get(struct store *st, const char *tenant_id, const char *channel, const char *name,
                    const char *language, struct template_row *out);
int pg_idem_get(struct store *st, const char *tenant_id, const char *key, struct idem_row *out);

int pg_message_insert(struct store *st, const struct message *msgs, size_t n,
                      const struct idem_put *idem, store_done_fn cb, void *arg);
int pg_message_get(struct store *st, const char *tenant_id, const char *id, struct message *out);
int pg_message_get_by_provider_id(struct store *st, const char *account_id, const char *provider_id,
                                  struct message *out);
int pg_message_events(struct store *st, const char *message_id, struct message_event **out,
                      size_t *n);
int pg_message_list(struct store *st, const char *tenant_id, const struct msg_filter *f,
                    struct message **out, size_t *n, bool *more);
int pg_message_counts(struct store *st, const char *tenant_id, int64_t counts[MSG__COUNT]);
int pg_message_gauges(struct store *st, int64_t counts[MSG__COUNT]);

/* message_status_count's stripes: enough that a few nodes rarely share one
 * (two that do only wait for each other, they count right), few enough
 * that reading the gauges is a read of at most this many rows per status. */
#define PG_STATUS_STRIPES 16
/* Notes job's status deltas (replacing what it noted before: a job run
 * again notes afresh); written at the group's commit if the job succeeds.
 * 0 or HR_ENOMEM (err filled). */
int pg_status_note(struct pg_store *s, const struct wr_job *job, const int64_t d[MSG__COUNT],
                   struct hr_err *err);
/* PG_STATUS_UPSERT's parameters for stripe and delta[] (zeros left out),
 * the arrays' text in buf: false when nothing moved. */
#define PG_STATUS_BUF (2 * (MSG__COUNT * 22 + 4))
bool pg_status_params(struct pg_params *p, int stripe, const int64_t delta[MSG__COUNT],
                      char buf[PG_STATUS_BUF]);
/* Adds u(s, d) (unnest of $2::smallint[], $3::bigint[]) to stripe $1. */
#define PG_STATUS_UPSERT                                                                           \
	"INSERT INTO message_status_count(stripe, status, n)"                                      \
	" SELECT $1, s, d FROM unnest($2::smallint[], $3::bigint[]) AS u(s, d)"                    \
	" ON CONFLICT (stripe, status) DO UPDATE SET n = message_status_count.n + excluded.n"
int pg_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us, int limit,
             struct message *out, size_t *n);
int pg_claim_async(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
                   int limit, struct message *out, store_claim_fn cb, void *arg);
int pg_record_results(struct store *st, const struct send_result *r, size_t n, store_done_fn cb,
                      void *arg);
int pg_requeue_expired(struct store *st, int64_t now, int *n);
int pg_next_due(struct store *st, const char *account_id, int64_t *due_at);

int pg_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason, struct hr_err *err);
int pg_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, struct hr_err *err);
int pg_suppression_list(struct store *st, const char *tenant_id, const char *channel,
                        struct suppression_row **out, size_t *n);
/* recipient history (postgres_recip.c) */
int pg_suppression_change(struct store *st, const struct supp_change *c, struct hr_err *err);
int pg_supp_log(struct pg_store *s, const struct supp_change *c, const char *action, int64_t now,
                struct hr_err *err);
int pg_recipient_supp(struct store *st, const char *tenant_id, const char *const *recips,
                      size_t nrec, int limit, struct suppression_row **cur, size_t *ncur,
                      struct supp_event_row **ev, size_t *nev);
int pg_pause_put(struct pg_store *s, const struct account_pause_row *p, int64_t now,
                 struct hr_err *err);
int pg_pause_delete(struct pg_store *s, const char *account_id, struct hr_err *err);
int pg_account_pause_set(struct store *st, const struct account_pause_row *p, bool paused,
                         const struct audit_row *a, struct hr_err *err);
int pg_account_pauses(struct store *st, struct account_pause_row **out, size_t *n);
int pg_daily_note(struct pg_store *s, const struct wr_job *job, const struct daily_acc *d,
                  struct hr_err *err);
void pg_daily_reset(struct pg_store *s);
int pg_daily_flush(struct pg_store *s, struct hr_err *err);
int pg_daily_counts(struct store *st, const char *tenant_id, int32_t day_from, int32_t day_to,
                    struct daily_ent **out, size_t *n);
int pg_account_queue_depth(struct store *st, const char *account_id, int64_t cap, int64_t *n);
int pg_recipient_inbound(struct store *st, const char *tenant_id, const char *const *senders,
                         size_t nrec, int limit, struct inbound_row **out, size_t *n);

int pg_inbox_append(struct store *st, const char *account_id, const char *channel,
                    const char *dedupe_key, const char *body, size_t len, store_done_fn cb,
                    void *arg);
int pg_inbox_fetch(struct store *st, int64_t now, int limit, struct inbox_row **out, size_t *n);
int pg_inbox_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                   struct inbox_row **out, size_t *n);
int pg_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats);
int pg_batch_create(struct store *st, const struct batch *b, struct hr_err *err);
int pg_batch_get(struct store *st, const char *tenant_id, const char *id, struct batch *out);
int pg_batch_list(struct store *st, const char *tenant_id, const struct batch_filter *f,
                  struct batch **out, size_t *n, bool *more);
int pg_batch_items_put(struct store *st, const char *batch_id, const struct batch_item *items,
                       size_t n, struct hr_err *err);
int pg_batch_items(struct store *st, const char *batch_id, enum batch_items_which which,
                   int64_t after_row, int limit, struct batch_item **out, size_t *n);
int pg_batch_set_status(struct store *st, const char *tenant_id, const char *id,
                        enum batch_status to, const char *error, struct hr_err *err);
int pg_batch_enqueue(struct store *st, const char *batch_id, const int64_t *rows,
                     const struct message *msgs, size_t n, bool last, size_t *made,
                     struct hr_err *err);
int pg_batch_discard(struct store *st, const char *tenant_id, const char *id,
                     struct hr_err *err);
int pg_batch_cancel_step(struct store *st, const char *batch_id, int limit, int64_t *n);
int pg_batch_items_by_status(struct store *st, const char *batch_id, unsigned status_mask,
                             int64_t after_row, int limit, struct batch_item **out,
                             size_t *n);
int pg_batch_recount(struct store *st, const char *batch_id, int64_t by_status[MSG__COUNT],
                     int64_t *replied);
int pg_batch_breakdown(struct store *st, const char *batch_id, int sample,
                       struct batch_tally **fail, size_t *nfail, int64_t *failed_seen,
                       struct batch_tally **rep, size_t *nrep, int64_t *replies_seen);
int pg_batch_export_rows(struct store *st, const char *batch_id, int64_t after_row,
                         int limit, struct batch_export_row **out, size_t *n);
int pg_inbox_pending(struct store *st, int64_t *n);

/* postgres_cb.c: callbacks to client systems. The statement lifecycle's
 * callback_add sends (postgres_tx.c) with its parameters. */
extern const char pg_sql_cb_add_msg[], pg_sql_cb_add_tenant[];
void pg_cb_add_params(struct pg_params *p, const struct lc_callback *c, int64_t now);
int pg_callback_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                      const char *const *skip_urls, size_t nskip, struct callback_row **out,
                      size_t *n);
int pg_callback_done(struct store *st, const struct callback_outcome *o, size_t n,
                     struct hr_err *err);
int pg_callback_list(struct store *st, const char *tenant_id, int state, int64_t before_id,
                     int limit, struct callback_row **out, size_t *n, bool *more);
int pg_callback_get(struct store *st, const char *tenant_id, int64_t id,
                    struct callback_row *out);
int pg_callback_replay(struct store *st, const char *tenant_id, int64_t id, int limit,
                       int64_t *n, struct hr_err *err);
int pg_callback_counts(struct store *st, int64_t counts[CB__COUNT]);
int pg_callback_prune(struct store *st, int64_t before, int limit, int64_t *n);
/* postgres_plugev.c: plugin after-commit events */
extern const char pg_sql_pev_add[];
void pg_pev_add_params(struct pg_params *p, const struct lc_plugin_event *e, int64_t now);
int pg_plugin_event_read(struct store *st, int limit, struct plugin_event_row **out, size_t *n);
int pg_plugin_event_done(struct store *st, const int64_t *ids, size_t n);
int pg_plugin_event_count(struct store *st, int64_t *n);

/* postgres_retain.c */
int pg_message_prune(struct store *st, const struct msg_retention *r,
                     struct msg_retention_stats *stats, struct hr_err *err);

/* Fills v[] (PQntuples(r) entries) from inbox rows selected or returned
 * as id, account_id, channel, dedupe_key, received_at, attempts, body. */
int pg_inbox_rows(PGresult *r, struct inbox_row *v, size_t *n);

/* Reads a bytea column (text format) into a NUL-terminated heap copy. */
int pg_col_bytea(const PGresult *r, int row, int col, char **out, size_t *len);


/* ---- postgres_tenancy.c ---- */
int pg_tenant_create(struct store *st, const struct tenant_info *t, const struct audit_row *a,
                     struct hr_err *err);
int pg_tenant_get(struct store *st, const char *id, struct tenant_info *out);
int pg_tenant_list(struct store *st, struct tenant_info **out, size_t *n);
int pg_tenant_set_limits(struct store *st, const char *id, const struct tenant_limits *l,
                         const struct audit_row *au, struct hr_err *err);
int pg_tenant_usage(struct store *st, const char *tenant_id, int64_t day, int64_t *count);
int pg_tenant_set_disabled(struct store *st, const char *id, bool disabled,
                           const struct audit_row *a, struct hr_err *err);
int pg_unit_create(struct store *st, const struct unit_row *u, bool if_absent,
                   const struct audit_row *a, struct hr_err *err);
int pg_unit_get(struct store *st, const char *tenant_id, const char *id, struct unit_row *out);
int pg_unit_list(struct store *st, const char *tenant_id, struct unit_row **out, size_t *n);
int pg_unit_set_disabled(struct store *st, const char *tenant_id, const char *id, bool disabled,
                         const struct audit_row *a, struct hr_err *err);
int pg_key_create(struct store *st, const struct key_row *k, const struct audit_row *a,
                  struct hr_err *err);
int pg_key_seed(struct store *st, const struct key_row *k, struct hr_err *err);
int pg_key_lookup(struct store *st, const char *hash, struct key_row *out);
int pg_key_list(struct store *st, const char *tenant_id, struct key_row **out, size_t *n);
int pg_key_revoke(struct store *st, const char *tenant_id, const char *prefix,
                  const struct audit_row *a, char hash[65], struct hr_err *err);
int pg_key_touch(struct store *st, const char *hash, int64_t at, store_done_fn cb, void *arg);
int pg_audit_append(struct store *st, const struct audit_row *a, struct hr_err *err);
int pg_audit_list(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                  struct audit_row **out, size_t *n);

#endif
