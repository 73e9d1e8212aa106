/*
 * sqlite_int.h - internals shared by the SQLite backend's files (sqlite.c:
 * connections, writer and reader pool; sqlite_conf.c: tenants, keys,
 * accounts, templates, idempotency reads; sqlite_msg.c: messages and claims;
 * sqlite_hook.c: webhook inbox and the applier's transaction;
 * sqlite_supp.c: suppression list and recipient aliases;
 * sqlite_retain.c: message retention; sqlite_schema.c: migrations).
 * Nothing outside src/store/ includes it.
 *
 * Threads: the writer thread (writer.h) owns `wdb`, its prepared statements
 * (`ws`) and the JSON scratch buffer; nothing else touches them once it
 * runs. Readers borrow a connection from the pool for the length of one
 * call.
 */
#ifndef HR_SQLITE_INT_H
#define HR_SQLITE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/daily.h"
#include "store/lifecycle.h"
#include "store/store.h"
#include "store/writer.h"

/* ---- migrations (sqlite_schema.c) ---- */
struct sq_migration {
	int version;
	const char *sql;
};
extern const struct sq_migration sq_migrations[];
extern const size_t sq_migration_count;

/* Lifecycle update statements kept (one per combination of columns). */
#define SQ_UPD_CACHE 48

/* Writer-side statement slots, prepared on first use and kept. */
enum sq_wslot {
	W_BEGIN,
	W_COMMIT,
	W_ROLLBACK,
	W_SAVEPOINT,
	W_RELEASE,
	W_ROLLBACK_TO,
	W_ITEM_SAVEPOINT,
	W_ITEM_RELEASE,
	W_ITEM_ROLLBACK_TO,
	W_TENANT_UPSERT,
	W_APIKEY_PUT,
	W_APIKEY_PRUNE,
	W_INBOX_PRUNE,
	W_IDEM_PRUNE,
	W_ACCOUNT_UPSERT,
	W_TEMPLATE_UPSERT,
	W_MSG_INSERT,
	W_EVENT_INSERT,
	W_IDEM_INSERT,
	W_MSG_IDEM_KEY,
	W_CLAIM,
	W_MSG_STATE,
	W_LEASE_EXPIRED,
	W_INBOX_INSERT,
	W_INBOX_STATE,
	W_INBOX_MARK,
	W_INBOX_CLAIM,
	W_MSG_BY_PROVIDER,
	W_INBOUND_INSERT,
	W_EVENT_SEEN,
	W_SUPP_PUT,
	W_SUPP_DELETE,
	W_SUPP_GET,
	W_SUPP_ANY,
	W_ALIAS_PUT,
	W_ALIAS_REPOINT,
	W_ALIAS_GET,
	W_ALIAS_ANY,
	W_ALIAS_DELETE,
	W_ACCOUNT_TENANT,
	W_BATCH_STATE,
	W_BATCH_ADD,
	W_BATCH_ROWS_ADD,
	W_BATCH_SET,
	W_ITEM_INSERT,
	W_ITEM_TAKE,
	W_BATCH_QUEUED,
	W_INBOUND_EXISTS,
	W_RETAIN_PICK,
	W_RETAIN_EVENTS,
	W_RETAIN_MSG,
	W_STATUS_ADD,
	W_CB_ADD_MSG,
	W_CB_ADD_TENANT,
	W_CB_CLAIM,
	W_CB_DONE,
	W_CB_REPLAY_ONE,
	W_CB_REPLAY_DEAD,
	W_CB_PRUNE,
	W_MSG_EXPIRED,
	W_FALLBACK_DUE,
	W_MSG_ROUTE,
	W_FALLBACK_PUT,
	W_INBOX_WAITING,
	W_KEY_TOUCH,
	W_DAILY_CAP,
	W_DAILY_ADD,
	W_START_LIMITS,
	W_MSG_REROUTE, /* plugin route changes */
	W_BATCH_HOLD,
	W_BATCH_RELEASE,
	W_BATCH_NOTE,
	W_SUPP_LOG,
	W_PAUSE_PUT,
	W_PAUSE_DELETE,
	W_DAILY_COUNT_ADD,
	W_PEV_ADD,
	W_PEV_DONE, /* plugin after-commit events */
	W__COUNT
};

/* Reader-side statement slots, per pooled connection. */
enum sq_rslot {
	R_APIKEY,
	R_ACCOUNTS_ALL,
	R_ACCOUNTS_TENANT,
	R_TEMPLATE,
	R_MSG_GET,
	R_MSG_GET_PROVIDER,
	R_EVENTS,
	R_COUNTS_ALL,
	R_COUNTS_TENANT,
	R_NEXT_DUE,
	R_IDEM,
	R_INBOX_FETCH,
	R_INBOX_PENDING,
	R_SUPP_ALL,
	R_SUPP_CHANNEL,
	R_CB_LIST,
	R_CB_LIST_STATE,
	R_CB_GET,
	R_CB_GET_ANY,
	R_CB_COUNTS,
	R_STALE_LIST,
	R_PARKED,
	R_ROUTE,
	R_KEY,
	R_GAUGES,
	R_RECIP_SUPP,
	R_RECIP_SUPP_EV,
	R_RECIP_INBOUND,
	R_QUEUE_DEPTH,
	R_PAUSES,
	R_DAILY,
	R_PEV_READ,
	R_PEV_COUNT, /* plugin after-commit events */
	R__COUNT
};

/* message_list caches one statement per combination of optional filters. */
#define SQ_LIST_VARIANTS 512

struct sq_reader {
	struct sq_reader *next;
	sqlite3 *db;
	sqlite3_stmt *st[R__COUNT];
	sqlite3_stmt *list[SQ_LIST_VARIANTS];
};

struct sq_store {
	struct store base;
	struct store_opts opts;
	char *path;

	/* writer: the thread and queue (writer.c) and what it owns here */
	struct wr wr;
	sqlite3 *wdb;
	sqlite3_stmt *ws[W__COUNT];
	/* Lifecycle updates, one statement per set of columns named
	 * (sqlite_tx.c tx_msg_update), prepared on first use and kept. */
	struct {
		unsigned key;
		sqlite3_stmt *st;
	} upd[SQ_UPD_CACHE];
	int nupd;
	struct ev_json json;
	/* Status count deltas (message_status_count) of the open group
	 * transaction: the jobs kept so far (sd_group) and the running one
	 * (sd_job, dropped if its savepoint is rolled back). Written with one
	 * upsert per status that moved, just before COMMIT (w_commit), so a
	 * group of accepts costs one counter write, not one per accept. */
	int64_t sd_group[MSG__COUNT], sd_job[MSG__COUNT];
	/* the daily counters (store/daily.h), kept the same way: the
	 * group's and the running job's, one upsert per key at the commit. */
	struct daily_acc dd_group, dd_job;
	/* The writer's disk trouble (full, read-only): failed transactions
	 * since the last report and when that was, so an operator reads one
	 * line per 10 s, not one per request, and one when writes succeed again. */
	uint64_t disk_failures;
	int64_t disk_logged_us;

	/* checkpointer: WAL checkpoints (and their fsyncs) run on their own
	 * connection and thread, so no commit waits behind one. */
	sqlite3 *cdb;
	pthread_t ckpt;
	bool ckpt_running;
	pthread_mutex_t clock;       /* guards the two fields below */
	pthread_cond_t ccond;
	bool ckpt_wanted, ckpt_stop;

	/* readers */
	pthread_mutex_t rlock;
	pthread_cond_t rcond;
	struct sq_reader *rfree;
	int rcount, rmax;
};

/* ---- sqlite.c ---- */
/* Maps an SQLite result to an HR_E* code and fills err with the db message. */
int sq_fail(sqlite3 *db, int rc, struct hr_err *err, const char *field);
/* The writer's cached statement for slot (prepared from sql on first use), reset. */
sqlite3_stmt *sq_wstmt(struct sq_store *s, enum sq_wslot slot, const char *sql);
/* Same for a pooled reader connection. */
sqlite3_stmt *sq_rstmt(struct sq_reader *r, enum sq_rslot slot, const char *sql);
int sq_reader_get(struct sq_store *s, struct sq_reader **out);
void sq_reader_put(struct sq_store *s, struct sq_reader *r);
/* Runs a parameterless writer statement (BEGIN, SAVEPOINT, ...); an SQLite code. */
int sq_wexec(struct sq_store *s, enum sq_wslot slot, const char *sql);
/* Steps a write statement to completion; 0 or an HR_E* code (err filled). */
int sq_step_done(struct sq_store *s, sqlite3_stmt *st, struct hr_err *err, const char *field);

/* Binds text, or NULL when s is NULL or empty (optional columns). */
int sq_bind_opt(sqlite3_stmt *st, int idx, const char *s);
/* Copies column text into a fixed buffer ("" for NULL), as valid UTF-8 that is
 * never cut inside a character. */
void sq_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size);
/* Heap copy of column text, NULL for SQL NULL; *oom set if allocation failed. */
char *sq_col_dup(sqlite3_stmt *st, int col, bool *oom);

/*
 * Heap copy of text that came from outside (provider, customer) as valid
 * UTF-8 (hr_utf8_copy: invalid bytes become '?'); NULL for NULL. *oom set if
 * allocation failed. Caller frees.
 */
char *sq_utf8_dup(const char *s, bool *oom);


/* Inserts one audit event through the writer's statement. detail may be NULL;
 * inbox_id is the webhook_inbox row a webhook event came from, 0 for none. */
int sq_event_insert(struct sq_store *s, const char *message_id, int64_t at,
                    int64_t provider_at, const char *type, const char *source, int status,
                    bool applied, const char *detail, int64_t inbox_id, struct hr_err *err);

/* The message columns every read returns, in struct order, and the row reader. */
#define SQ_MSG_COLS \
	"id, tenant_id, account_id, channel, recipient, batch_id, content, body, status, " \
	"priority, attempts, max_attempts, created_at, updated_at, due_at, lease_until, " \
	"provider_id, error_code, error_text, segments, delivery_policy, expires_at, route, " \
	"route_step, route_steps, route_root, fallback_after"
#define SQ_MSG_NCOLS 27 /* the columns of SQ_MSG_COLS */
int sq_row_message(sqlite3_stmt *st, int col, struct message *m);
/* An inbox row from columns id, account_id, channel, dedupe_key, received_at,
 * attempts, body (in that order); HR_ENOMEM if the body cannot be copied. */
int sq_row_inbox(sqlite3_stmt *st, struct inbox_row *row);

/* ---- the reconciler (sqlite_rec.c reads, sqlite_tx.c lifecycle runs) ---- */
int sq_reconcile_expire(struct store *st, int64_t now, int limit, int *n);
int sq_reconcile_fallback_due(struct store *st, int64_t now, int limit, int *n);
int sq_stale_list(struct store *st, const char *channel, int64_t sent_before, int limit,
                  struct message **out, size_t *n);
int sq_stale_settle(struct store *st, const struct stale_answer *a, size_t n,
                    struct stale_stats *stats);
int sq_inbox_park(struct store *st, int64_t received_before, int limit, int *n);
int sq_inbox_parked(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                    struct inbox_row **out, size_t *n, bool *more);
int sq_message_route(struct store *st, const char *tenant_id, const char *root_id,
                     struct message **out, size_t *n);

/* ---- sqlite_msg.c: shared with the applier (auto-replies) ---- */
/* Inserts one message row, status QUEUED, without its "accepted" event (the
 * caller records that with its own source). Times of 0 default to now. */
int sq_message_row_insert(struct sq_store *s, const struct message *m, int64_t now,
                          struct hr_err *err);

/* ---- sqlite_supp.c: writer-side helpers (run inside a writer job) ---- */
#define SQ_REASON_MAX sizeof(((struct suppression_row *)0)->reason)
/* Upserts (tenant, channel, recipient): a known entry gets the new reason
 * and keeps its created_at (when the recipient first opted out). */
int sq_supp_put(struct sq_store *s, const char *tenant_id, const char *channel,
                const char *recipient, const char *reason, int64_t now, struct hr_err *err);
/* Deletes the entry; *deleted (may be NULL) gets 1 or 0. */
int sq_supp_delete(struct sq_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, int *deleted, struct hr_err *err);
/* 1 and the reason if suppressed, 0 if not, or a negative HR_E* code. */
int sq_supp_reason(struct sq_store *s, const char *tenant_id, const char *channel,
                   const char *recipient, char reason[SQ_REASON_MAX], struct hr_err *err);
/* 1 if the tenant has any suppressed recipient on channel, 0 if none, or < 0. */
int sq_supp_any(struct sq_store *s, const char *tenant_id, const char *channel,
                struct hr_err *err);
/* Records old -> new for the account and repoints aliases that led to old. */
int sq_alias_put(struct sq_store *s, const char *account_id, const char *old,
                 const char *new_addr, int64_t now, struct hr_err *err);
/* 1 and the new address if old has moved, 0 if not, or a negative HR_E* code. */
int sq_alias_get(struct sq_store *s, const char *account_id, const char *old,
                 char new_addr[HR_ADDR_MAX], struct hr_err *err);
/* 1 if the account has any alias, 0 if none, or < 0. */
int sq_alias_any(struct sq_store *s, const char *account_id, struct hr_err *err);

/* ---- op entry points (filled into store_sqlite by sqlite.c) ---- */
int sq_tenant_upsert(struct store *st, const struct tenant_row *t, struct hr_err *err);
int sq_api_key_put(struct store *st, const char *tenant_id, const char *key_hash,
                   const char *label, struct hr_err *err);
int sq_api_key_lookup(struct store *st, const char *key_hash, char tenant_id[HR_NAME_MAX]);
int sq_prune(struct store *st, int64_t inbox_before, int64_t idem_before, int limit,
             int64_t *n);
int sq_api_key_prune(struct store *st, const char *tenant_id, const char *const *keep_hashes,
                     size_t n, struct hr_err *err);
int sq_account_upsert(struct store *st, const struct account_row *a, struct hr_err *err);
/* An admin_audit row on the writer (sqlite_tenancy.c); NULL: nothing. */
int sq_audit_insert(struct sq_store *s, const struct audit_row *a, struct hr_err *err);
/* The account upsert's statement, on the writer (sqlite_conf.c). */
int sq_account_write(struct sq_store *s, const struct account_row *a, struct hr_err *err);
int sq_account_put(struct store *st, const struct account_row *a, const struct audit_row *au,
                   struct hr_err *err);
int sq_template_put(struct store *st, const struct template_row *t, const struct audit_row *au,
                    bool *created, struct hr_err *err);
int sq_template_delete(struct store *st, const char *tenant_id, const char *channel,
                       const char *name, const char *language, const char *unit,
                       const struct audit_row *au, struct hr_err *err);
int sq_template_list(struct store *st, const char *tenant_id, const char *unit,
                     const struct template_key *after, int limit, struct template_row **out,
                     size_t *n, bool *more);
int sq_batch_set_status_audit(struct store *st, const char *tenant_id, const char *id,
                              enum batch_status to, const char *error, const struct audit_row *a,
                              struct hr_err *err);
int sq_account_list(struct store *st, const char *tenant_id, struct account_row **out,
                    size_t *n);
int sq_template_upsert(struct store *st, const struct template_row *t, struct hr_err *err);
int sq_template_get(struct store *st, const char *tenant_id, const char *channel,
                    const char *name, const char *language, struct template_row *out);
int sq_idem_get(struct store *st, const char *tenant_id, const char *key,
                struct idem_row *out);

int sq_message_insert(struct store *st, const struct message *msgs, size_t n,
                      const struct idem_put *idem, store_done_fn cb, void *arg);
int sq_message_get(struct store *st, const char *tenant_id, const char *id,
                   struct message *out);
int sq_message_get_by_provider_id(struct store *st, const char *account_id,
                                  const char *provider_id, struct message *out);
int sq_message_events(struct store *st, const char *message_id,
                      struct message_event **out, size_t *n);
int sq_message_list(struct store *st, const char *tenant_id, const struct msg_filter *f,
                    struct message **out, size_t *n, bool *more);
int sq_message_counts(struct store *st, const char *tenant_id, int64_t counts[MSG__COUNT]);
int sq_message_gauges(struct store *st, int64_t counts[MSG__COUNT]);
/* Adds delta[s] to message_status_count's row for status s as part of the
 * running job (writer thread): written when the group commits, dropped
 * with the job if it is rolled back. Cannot fail; 0. */
int sq_status_add(struct sq_store *s, const int64_t delta[MSG__COUNT], struct hr_err *err);
/* Writes the group's status deltas (w_commit, inside the transaction). */
int sq_status_flush(struct sq_store *s, struct hr_err *err);
int sq_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
             int limit, struct message *out, size_t *n);
int sq_claim_async(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
                   int limit, struct message *out, store_claim_fn cb, void *arg);
int sq_record_results(struct store *st, const struct send_result *r, size_t n,
                      store_done_fn cb, void *arg);
int sq_requeue_expired(struct store *st, int64_t now, int *n);
int sq_next_due(struct store *st, const char *account_id, int64_t *due_at);

int sq_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason, struct hr_err *err);
int sq_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, struct hr_err *err);
int sq_suppression_list(struct store *st, const char *tenant_id, const char *channel,
                        struct suppression_row **out, size_t *n);
/* recipient history (sqlite_recip.c) */
int sq_suppression_change(struct store *st, const struct supp_change *c, struct hr_err *err);
int sq_supp_log(struct sq_store *s, const struct supp_change *c, const char *action, int64_t now,
                struct hr_err *err);
int sq_recipient_supp(struct store *st, const char *tenant_id, const char *const *recips,
                      size_t nrec, int limit, struct suppression_row **cur, size_t *ncur,
                      struct supp_event_row **ev, size_t *nev);
int sq_pause_put(struct sq_store *s, const struct account_pause_row *p, int64_t now,
                 struct hr_err *err);
int sq_pause_delete(struct sq_store *s, const char *account_id, struct hr_err *err);
int sq_account_pause_set(struct store *st, const struct account_pause_row *p, bool paused,
                         const struct audit_row *a, struct hr_err *err);
int sq_account_pauses(struct store *st, struct account_pause_row **out, size_t *n);
int sq_daily_flush(struct sq_store *s, struct hr_err *err);
int sq_daily_counts(struct store *st, const char *tenant_id, int32_t day_from, int32_t day_to,
                    struct daily_ent **out, size_t *n);
int sq_account_queue_depth(struct store *st, const char *account_id, int64_t cap, int64_t *n);
int sq_recipient_inbound(struct store *st, const char *tenant_id, const char *const *senders,
                         size_t nrec, int limit, struct inbound_row **out, size_t *n);

int sq_inbox_append(struct store *st, const char *account_id, const char *channel,
                    const char *dedupe_key, const char *body, size_t len, store_done_fn cb,
                    void *arg);
int sq_inbox_fetch(struct store *st, int64_t now, int limit, struct inbox_row **out,
                   size_t *n);
int sq_inbox_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                   struct inbox_row **out, size_t *n);
int sq_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats);
int sq_batch_create(struct store *st, const struct batch *b, struct hr_err *err);
int sq_batch_get(struct store *st, const char *tenant_id, const char *id, struct batch *out);
int sq_batch_list(struct store *st, const char *tenant_id, const struct batch_filter *f,
                  struct batch **out, size_t *n, bool *more);
int sq_batch_items_put(struct store *st, const char *batch_id, const struct batch_item *items,
                       size_t n, struct hr_err *err);
int sq_batch_items(struct store *st, const char *batch_id, enum batch_items_which which,
                   int64_t after_row, int limit, struct batch_item **out, size_t *n);
int sq_batch_set_status(struct store *st, const char *tenant_id, const char *id,
                        enum batch_status to, const char *error, struct hr_err *err);
int sq_batch_enqueue(struct store *st, const char *batch_id, const int64_t *rows,
                     const struct message *msgs, size_t n, bool last, size_t *made,
                     struct hr_err *err);
int sq_batch_discard(struct store *st, const char *tenant_id, const char *id,
                     struct hr_err *err);
int sq_batch_cancel_step(struct store *st, const char *batch_id, int limit, int64_t *n);
int sq_batch_items_by_status(struct store *st, const char *batch_id, unsigned status_mask,
                             int64_t after_row, int limit, struct batch_item **out,
                             size_t *n);
int sq_batch_recount(struct store *st, const char *batch_id, int64_t by_status[MSG__COUNT],
                     int64_t *replied);
int sq_batch_breakdown(struct store *st, const char *batch_id, int sample,
                       struct batch_tally **fail, size_t *nfail, int64_t *failed_seen,
                       struct batch_tally **rep, size_t *nrep, int64_t *replies_seen);
int sq_batch_export_rows(struct store *st, const char *batch_id, int64_t after_row,
                         int limit, struct batch_export_row **out, size_t *n);
int sq_inbox_pending(struct store *st, int64_t *n);

/* sqlite_cb.c: callbacks to client systems */
int sq_tx_callback_add(struct sq_store *s, const struct lc_callback *c, int64_t now,
                       struct hr_err *err);
int sq_callback_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                      const char *const *skip_urls, size_t nskip, struct callback_row **out,
                      size_t *n);
int sq_callback_done(struct store *st, const struct callback_outcome *o, size_t n,
                     struct hr_err *err);
int sq_callback_list(struct store *st, const char *tenant_id, int state, int64_t before_id,
                     int limit, struct callback_row **out, size_t *n, bool *more);
int sq_callback_get(struct store *st, const char *tenant_id, int64_t id,
                    struct callback_row *out);
int sq_callback_replay(struct store *st, const char *tenant_id, int64_t id, int limit,
                       int64_t *n, struct hr_err *err);
int sq_callback_counts(struct store *st, int64_t counts[CB__COUNT]);
int sq_callback_prune(struct store *st, int64_t before, int limit, int64_t *n);

/* sqlite_plugev.c: plugin after-commit events */
int sq_tx_plugin_event_add(struct sq_store *s, const struct lc_plugin_event *e, int64_t now,
                           struct hr_err *err);
int sq_plugin_event_read(struct store *st, int limit, struct plugin_event_row **out, size_t *n);
int sq_plugin_event_done(struct store *st, const int64_t *ids, size_t n);
int sq_plugin_event_count(struct store *st, int64_t *n);

/* sqlite_retain.c */
int sq_message_prune(struct store *st, const struct msg_retention *r,
                     struct msg_retention_stats *stats, struct hr_err *err);


/* ---- sqlite_tenancy.c ---- */
int sq_tenant_create(struct store *st, const struct tenant_info *t, const struct audit_row *a,
                     struct hr_err *err);
int sq_tenant_get(struct store *st, const char *id, struct tenant_info *out);
int sq_tenant_list(struct store *st, struct tenant_info **out, size_t *n);
int sq_tenant_set_limits(struct store *st, const char *id, const struct tenant_limits *l,
                         const struct audit_row *au, struct hr_err *err);
int sq_tenant_usage(struct store *st, const char *tenant_id, int64_t day, int64_t *count);
/* Writer side, inside a running job (sqlite_tenancy.c): the daily cap's
 * counter (HR_EQUOTA naming "daily_cap" past the cap) and what a campaign
 * start checks. */
int sq_daily_take(struct sq_store *s, const char *tenant_id, int64_t day, int64_t n,
                  struct hr_err *err);
struct lc_start_limits;
int sq_start_limits(struct sq_store *s, const char *tenant_id, const char *batch_id, int64_t day,
                    struct lc_start_limits *out, struct hr_err *err);
int sq_tenant_set_disabled(struct store *st, const char *id, bool disabled,
                           const struct audit_row *a, struct hr_err *err);
int sq_unit_create(struct store *st, const struct unit_row *u, bool if_absent,
                   const struct audit_row *a, struct hr_err *err);
int sq_unit_get(struct store *st, const char *tenant_id, const char *id, struct unit_row *out);
int sq_unit_list(struct store *st, const char *tenant_id, struct unit_row **out, size_t *n);
int sq_unit_set_disabled(struct store *st, const char *tenant_id, const char *id, bool disabled,
                         const struct audit_row *a, struct hr_err *err);
int sq_key_create(struct store *st, const struct key_row *k, const struct audit_row *a,
                  struct hr_err *err);
int sq_key_seed(struct store *st, const struct key_row *k, struct hr_err *err);
int sq_key_lookup(struct store *st, const char *hash, struct key_row *out);
int sq_key_list(struct store *st, const char *tenant_id, struct key_row **out, size_t *n);
int sq_key_revoke(struct store *st, const char *tenant_id, const char *prefix,
                  const struct audit_row *a, char hash[65], struct hr_err *err);
int sq_key_touch(struct store *st, const char *hash, int64_t at, store_done_fn cb, void *arg);
int sq_audit_append(struct store *st, const struct audit_row *a, struct hr_err *err);
int sq_audit_list(struct store *st, const char *tenant_id, int64_t before_id, int limit,
                  struct audit_row **out, size_t *n);

#endif
