/*
 * sqlite_schema.c - the SQLite schema as numbered migrations. Never edit a
 * migration that has shipped: append a new one. Each runs in its own
 * transaction together with its schema_migrations row (sqlite.c).
 *
 * Conventions: times are INTEGER microseconds UTC, ids TEXT, statuses the
 * enum msg_status integers of herald.h. Optional text columns hold NULL
 * rather than "" so partial indexes stay small. Partial index predicates use
 * literal constants: the queries repeat them verbatim so the planner can
 * prove the index usable (see the claim and inbox queries).
 */
#include "store/sqlite_int.h"

static const char migration_1[] =
	"CREATE TABLE tenant("
	" id TEXT PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" created_at INTEGER NOT NULL);"

	"CREATE TABLE api_key("
	" key_hash TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" label TEXT,"
	" created_at INTEGER NOT NULL);"

	"CREATE TABLE channel_account("
	" id TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" config TEXT NOT NULL DEFAULT '{}',"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL);"

	"CREATE TABLE template("
	" tenant_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" language TEXT NOT NULL,"
	" body TEXT NOT NULL,"
	" param_count INTEGER NOT NULL DEFAULT 0,"
	" config TEXT," /* JSON object: header, buttons, regulatory fields */
	" PRIMARY KEY(tenant_id, channel, name, language)) WITHOUT ROWID;"

	/* The queue and the lead record: one row per recipient per channel. */
	"CREATE TABLE message("
	" id TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" account_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" recipient TEXT NOT NULL,"
	" batch_id TEXT,"
	" content TEXT NOT NULL,"
	" body TEXT,"
	" status INTEGER NOT NULL,"
	" priority INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" max_attempts INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL,"
	" due_at INTEGER NOT NULL,"
	" lease_until INTEGER NOT NULL DEFAULT 0,"
	" provider_id TEXT,"
	" error_code TEXT,"
	" error_text TEXT,"
	" segments INTEGER NOT NULL DEFAULT 0);" /* SMS segments, 0 elsewhere */
	/* Claim: an index range scan in claim order; only QUEUED rows are in it. */
	"CREATE INDEX message_claim ON message(account_id, priority, due_at, id)"
	" WHERE status = 0;"
	/* Webhooks: provider ids are unique only within an account (Telegram's
	 * are per chat), so every lookup names the account too. */
	"CREATE INDEX message_provider ON message(account_id, provider_id)"
	" WHERE provider_id IS NOT NULL;"
	"CREATE INDEX message_lease ON message(lease_until) WHERE status = 1;"
	"CREATE INDEX message_tenant ON message(tenant_id, id);"

	"CREATE TABLE message_event("
	" id INTEGER PRIMARY KEY,"
	" message_id TEXT NOT NULL,"
	" at INTEGER NOT NULL,"
	" provider_at INTEGER NOT NULL DEFAULT 0,"
	" type TEXT NOT NULL,"
	" source TEXT NOT NULL,"
	" status INTEGER,"
	" applied INTEGER NOT NULL DEFAULT 1,"
	" detail TEXT,"
	" inbox_id INTEGER);" /* the webhook_inbox row a webhook event came from */
	"CREATE INDEX message_event_msg ON message_event(message_id, id);"

	/* state: 0 new, 1 done, 2 retry, 3 failed, 4 orphan. */
	"CREATE TABLE webhook_inbox("
	" id INTEGER PRIMARY KEY,"
	" account_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" dedupe_key TEXT NOT NULL DEFAULT '',"
	" received_at INTEGER NOT NULL,"
	" body BLOB NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_try_at INTEGER NOT NULL,"
	" error TEXT);"
	"CREATE UNIQUE INDEX webhook_inbox_dedupe ON webhook_inbox(account_id, dedupe_key)"
	" WHERE dedupe_key <> '';"
	"CREATE INDEX webhook_inbox_pending ON webhook_inbox(state, next_try_at)"
	" WHERE state IN (0, 2);"

	"CREATE TABLE idempotency_key("
	" tenant_id TEXT NOT NULL,"
	" key TEXT NOT NULL,"
	" request_hash TEXT NOT NULL,"
	" http_status INTEGER NOT NULL,"
	" response TEXT,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, key)) WITHOUT ROWID;"

	/* Customer replies; provider_msg_id '' when the provider gave none. */
	"CREATE TABLE inbound("
	" id INTEGER PRIMARY KEY,"
	" tenant_id TEXT,"
	" account_id TEXT NOT NULL,"
	" message_id TEXT,"
	" provider_msg_id TEXT NOT NULL DEFAULT '',"
	" sender TEXT NOT NULL,"
	" kind TEXT NOT NULL,"
	" text TEXT,"
	" payload TEXT,"
	" provider_at INTEGER NOT NULL DEFAULT 0,"
	" received_at INTEGER NOT NULL);"
	"CREATE UNIQUE INDEX inbound_provider ON inbound(provider_msg_id, account_id)"
	" WHERE provider_msg_id <> '';"
	"CREATE INDEX inbound_message ON inbound(message_id) WHERE message_id IS NOT NULL;"

	/* Opt-outs: a recipient here is never sent to on that tenant's channel.
	 * Claims look each message up by the primary key. */
	"CREATE TABLE suppression("
	" tenant_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" recipient TEXT NOT NULL,"
	" reason TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, channel, recipient)) WITHOUT ROWID;"

	/* Addresses that moved (a Telegram group became a supergroup): claims
	 * send what is queued for `old` to `new`. One hop: recording old -> new
	 * also repoints every alias that led to old. */
	"CREATE TABLE recipient_alias("
	" account_id TEXT NOT NULL,"
	" old TEXT NOT NULL,"
	" new TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY(account_id, old)) WITHOUT ROWID;";

/* Accounts a tenant created through the API are loaded under the operator's
 * policy (channel.h: struct channel_policy); config accounts are not. */
static const char migration_2[] =
	"ALTER TABLE channel_account ADD COLUMN api_created INTEGER NOT NULL DEFAULT 0;";

/*
 * Campaigns (batches). A batch row carries its counters: n_<status> is how
 * many of its messages are in that status now, changed in the same
 * transaction as the messages (lc_batch.c), never recounted. batch_item is
 * the recipient record of each uploaded row as validated; the partial
 * unique index makes one message per (batch, recipient) a property of the
 * store, not of a check-then-insert (a batch has one channel).
 */
static const char migration_3[] =
	"CREATE TABLE batch("
	" id TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" unit TEXT,"
	" name TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" account_id TEXT NOT NULL,"
	" template_name TEXT,"
	" language TEXT,"
	" receipts INTEGER NOT NULL DEFAULT 1,"
	" spec TEXT,"
	" status INTEGER NOT NULL DEFAULT 0,"
	" error TEXT,"
	" retry_of TEXT,"
	" ingested INTEGER NOT NULL DEFAULT 0,"
	" schedule_at INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL DEFAULT 0,"
	" validated_at INTEGER NOT NULL DEFAULT 0,"
	" started_at INTEGER NOT NULL DEFAULT 0,"
	" completed_at INTEGER NOT NULL DEFAULT 0,"
	" cancelled_at INTEGER NOT NULL DEFAULT 0,"
	" failed_at INTEGER NOT NULL DEFAULT 0,"
	" total INTEGER NOT NULL DEFAULT 0,"
	" valid INTEGER NOT NULL DEFAULT 0,"
	" invalid INTEGER NOT NULL DEFAULT 0,"
	" duplicates INTEGER NOT NULL DEFAULT 0,"
	" replied INTEGER NOT NULL DEFAULT 0,"
	" n_queued INTEGER NOT NULL DEFAULT 0,"
	" n_sending INTEGER NOT NULL DEFAULT 0,"
	" n_sent INTEGER NOT NULL DEFAULT 0,"
	" n_delivered INTEGER NOT NULL DEFAULT 0,"
	" n_read INTEGER NOT NULL DEFAULT 0,"
	" n_failed INTEGER NOT NULL DEFAULT 0,"
	" n_undelivered INTEGER NOT NULL DEFAULT 0,"
	" n_cancelled INTEGER NOT NULL DEFAULT 0,"
	" n_expired INTEGER NOT NULL DEFAULT 0,"
	" n_suppressed INTEGER NOT NULL DEFAULT 0,"
	" n_unknown INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX batch_tenant ON batch(tenant_id, id);"
	"CREATE INDEX batch_retry ON batch(retry_of) WHERE retry_of IS NOT NULL;"
	"CREATE TABLE batch_item("
	" batch_id TEXT NOT NULL,"
	" row_no INTEGER NOT NULL,"
	" recipient TEXT NOT NULL,"
	" params TEXT,"
	" valid INTEGER NOT NULL,"
	" duplicate INTEGER NOT NULL DEFAULT 0,"
	" error_column TEXT,"
	" error TEXT,"
	" message_id TEXT,"
	" PRIMARY KEY(batch_id, row_no)) WITHOUT ROWID;"
	"CREATE UNIQUE INDEX batch_item_recipient ON batch_item(batch_id, recipient)"
	" WHERE valid = 1 AND duplicate = 0;"
	"CREATE INDEX message_batch ON message(batch_id, status) WHERE batch_id IS NOT NULL;";

/* Each message's delivery policy (herald.h enum delivery_policy): what
 * lease expiry and the dispatcher do when a send's outcome is unknown.
 * Rows from before it were sent at-least-once, which 0 says. */
static const char migration_4[] =
	"ALTER TABLE message ADD COLUMN delivery_policy INTEGER NOT NULL DEFAULT 0;";

/*
 * Callbacks to client systems (store.h: callback_row). The URL a message's
 * callbacks go to is fixed at accept (message.callback_url); a tenant's own
 * (tenant.callback_url) serves replies that matched no message. The
 * outbox's partial indexes hold pending rows only (the claim's scan by due
 * time and its per-message order check), dead rows (metrics, bulk replay)
 * and delivered rows by age (retention), so a large delivered history
 * costs the claim nothing. AUTOINCREMENT: ids are never reused, so they
 * order the rows and page the API.
 */
static const char migration_5[] =
	"ALTER TABLE tenant ADD COLUMN callback_url TEXT;"
	"ALTER TABLE message ADD COLUMN callback_url TEXT;"
	"CREATE TABLE callback_outbox("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" tenant_id TEXT NOT NULL,"
	" message_id TEXT,"
	" batch_id TEXT,"
	" url TEXT NOT NULL,"
	" event TEXT NOT NULL,"
	" status INTEGER,"
	" prev_status INTEGER,"
	" provider_id TEXT,"
	" error_code TEXT,"
	" error_text TEXT,"
	" detail TEXT,"
	" occurred_at INTEGER NOT NULL,"
	" state INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_try_at INTEGER NOT NULL,"
	" lease_until INTEGER NOT NULL DEFAULT 0,"
	" last_http INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" delivered_at INTEGER NOT NULL DEFAULT 0,"
	" updated_at INTEGER NOT NULL);"
	"CREATE INDEX callback_due ON callback_outbox(next_try_at, id) WHERE state = 0;"
	"CREATE INDEX callback_order ON callback_outbox(message_id, id) WHERE state = 0;"
	"CREATE INDEX callback_tenant ON callback_outbox(tenant_id, state, id);"
	"CREATE INDEX callback_dead ON callback_outbox(id) WHERE state = 2;"
	"CREATE INDEX callback_delivered ON callback_outbox(updated_at) WHERE state = 1;";

/*
 * Reconciliation and fallback routing (lifecycle.c, README "Guarantees").
 * expires_at: a QUEUED message past it is EXPIRED, never sent. sent_at:
 * when the message last became SENT (what "stale" is measured from);
 * stale: 1 once the reconciler settled or marked it stale (never again).
 * route*: the fallback route the message is one step of (herald.h);
 * fallback_at: when a SENT message with a next step falls back for want of
 * a receipt (0: not waiting). message_fallback holds one row per (route,
 * step) ever made: its primary key is what makes a follow-up exactly one,
 * whoever (webhook, reconciler, a replay after a crash) asks for it.
 */
static const char migration_6[] =
	"ALTER TABLE message ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN sent_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN route TEXT;"
	"ALTER TABLE message ADD COLUMN route_step INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN route_steps INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN route_root TEXT;"
	"ALTER TABLE message ADD COLUMN fallback_after INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE message ADD COLUMN fallback_at INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX message_expiry ON message(expires_at) WHERE status = 0 AND expires_at > 0;"
	"CREATE INDEX message_stale ON message(channel, sent_at) WHERE status = 2 AND stale = 0;"
	"CREATE INDEX message_fallback_due ON message(fallback_at)"
	" WHERE status = 2 AND fallback_at > 0;"
	"CREATE INDEX message_route ON message(route_root, route_step)"
	" WHERE route_root IS NOT NULL;"
	"CREATE TABLE message_fallback("
	" root_id TEXT NOT NULL,"
	" step INTEGER NOT NULL,"
	" message_id TEXT NOT NULL,"
	" from_id TEXT NOT NULL,"
	" reason TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY(root_id, step)) WITHOUT ROWID;"
	"CREATE INDEX webhook_inbox_parked ON webhook_inbox(account_id, id) WHERE state = 4;"
	/* Messages SENT before this have no sent_at: left alone rather than
	 * all found stale (and looked up) at the first pass after an upgrade. */
	"UPDATE message SET stale = 1 WHERE status = 2;";

/*
 * Tenancy (issue 11): business units under tenants; API keys with a visible
 * prefix, scopes, an optional unit, expiry, revocation and last use (keys
 * from before are config keys with every scope: scopes NULL); the unit that
 * owns each account, template and message (NULL: the tenant's, shared);
 * the audit log of administrative actions. Revoked keys stay (the audit
 * log names them). Migration 6 is the reconciler's.
 */
static const char migration_7[] =
	"ALTER TABLE tenant ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE business_unit("
	" tenant_id TEXT NOT NULL,"
	" id TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" disabled INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, id)) WITHOUT ROWID;"
	"ALTER TABLE api_key ADD COLUMN prefix TEXT;"
	"ALTER TABLE api_key ADD COLUMN unit_id TEXT;"
	"ALTER TABLE api_key ADD COLUMN scopes TEXT;"
	"ALTER TABLE api_key ADD COLUMN created_by TEXT;"
	"ALTER TABLE api_key ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE api_key ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE api_key ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE api_key ADD COLUMN api_created INTEGER NOT NULL DEFAULT 0;"
	"CREATE UNIQUE INDEX api_key_prefix ON api_key(prefix) WHERE prefix IS NOT NULL;"
	"CREATE INDEX api_key_tenant ON api_key(tenant_id);"
	"ALTER TABLE channel_account ADD COLUMN unit_id TEXT;"
	"ALTER TABLE template ADD COLUMN unit_id TEXT;"
	"ALTER TABLE message ADD COLUMN unit_id TEXT;"
	"CREATE TABLE admin_audit("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" tenant_id TEXT NOT NULL,"
	" actor TEXT NOT NULL,"
	" at INTEGER NOT NULL,"
	" action TEXT NOT NULL,"
	" object TEXT NOT NULL,"
	" before TEXT,"
	" after TEXT);"
	"CREATE INDEX admin_audit_tenant ON admin_audit(tenant_id, id);";

/*
 * Tenant limits (issue 11, part 5): a tenant's own request rate and caps
 * (NULL: none of its own), and the daily message counter the cap checks,
 * one row per tenant and UTC day (days since 1970-01-01), moved in the
 * same transaction as the messages it counts. The partial index makes
 * "campaigns processing for this tenant" an index count at start.
 */
static const char migration_8[] =
	"ALTER TABLE tenant ADD COLUMN rate_milli INTEGER;"
	"ALTER TABLE tenant ADD COLUMN rate_burst INTEGER;"
	"ALTER TABLE tenant ADD COLUMN daily_cap INTEGER;"
	"ALTER TABLE tenant ADD COLUMN campaign_cap INTEGER;"
	"CREATE TABLE tenant_daily("
	" tenant_id TEXT NOT NULL,"
	" day INTEGER NOT NULL,"
	" count INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, day)) WITHOUT ROWID;"
	"CREATE INDEX batch_processing ON batch(tenant_id) WHERE status = 2;";

/*
 * The count of messages per status, kept as messages change (/metrics reads
 * it instead of counting the message table on each scrape): moved in the
 * transaction of every insert, status change and retention delete
 * (store.h message_gauges), one upsert per status per group commit
 * (sqlite.c w_commit). Rows are (stripe, status); the gauge of a status
 * is the sum over stripes. SQLite writes stripe 0 only; PostgreSQL's nodes
 * each their own (its migration 8), so the shape is the same. Started from
 * a recount, in the migration's transaction. Migration 8 is the request
 * limits'.
 */
static const char migration_9[] =
	"CREATE TABLE message_status_count("
	" stripe INTEGER NOT NULL,"
	" status INTEGER NOT NULL,"
	" n INTEGER NOT NULL,"
	" PRIMARY KEY(stripe, status)) WITHOUT ROWID;"
	"INSERT INTO message_status_count(stripe, status, n)"
	" SELECT 0, status, count(*) FROM message GROUP BY status;";

/*
 * Message search (GET /v1/messages, the dashboard's search screen): the
 * Idempotency-Key each message was accepted with (the client's key, without
 * the unit prefix idempotency_key.key carries; written in the accept's
 * transaction), and indexes for the tenant-scoped lookups by recipient,
 * provider id, idempotency key and error code. The keys of messages
 * accepted before are filled from the idempotency records still kept (a
 * single send's answer has its id, a messages:batch answer its messages'
 * ids).
 */
static const char migration_10[] =
	"ALTER TABLE message ADD COLUMN idem_key TEXT;"
	"CREATE INDEX message_recipient ON message(tenant_id, recipient, id);"
	"CREATE INDEX message_provider_tenant ON message(tenant_id, provider_id, id)"
	" WHERE provider_id IS NOT NULL;"
	"CREATE INDEX message_idem ON message(tenant_id, idem_key, id) WHERE idem_key IS NOT NULL;"
	"CREATE INDEX message_error ON message(tenant_id, error_code, id)"
	" WHERE error_code IS NOT NULL;"
	"UPDATE message SET idem_key = x.k FROM ("
	" SELECT i.tenant_id AS t, substr(i.key, instr(i.key, char(31)) + 1) AS k,"
	"  coalesce(json_extract(i.response, '$.id'), json_extract(j.value, '$.id')) AS mid"
	" FROM idempotency_key i LEFT JOIN json_each(i.response, '$.messages') j"
	" WHERE json_valid(i.response)) x"
	" WHERE message.id = x.mid AND message.tenant_id = x.t;";

/*
 * Pause and resume of campaigns (status 6, PAUSED): when and by whom the
 * latest pause and resume happened and why, and who cancelled and why (the
 * admin audit log keeps every one). A paused campaign's queued messages are
 * held by their due_at (lifecycle.h, LC_HOLD_BASE): no index changes.
 */
static const char migration_11[] =
	"ALTER TABLE batch ADD COLUMN paused_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE batch ADD COLUMN resumed_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE batch ADD COLUMN paused_by TEXT;"
	"ALTER TABLE batch ADD COLUMN resumed_by TEXT;"
	"ALTER TABLE batch ADD COLUMN cancelled_by TEXT;"
	"ALTER TABLE batch ADD COLUMN pause_reason TEXT;"
	"ALTER TABLE batch ADD COLUMN cancel_reason TEXT;";

/*
 * the recipient history. Every change of the suppression list
 * (added, reason replaced, removed) with what caused it (the message, the
 * actor), written with the change (lc_supp.c); replies found by their
 * sender. Both read per tenant and address, newest first.
 */
static const char migration_12[] =
	"CREATE TABLE suppression_event("
	" id INTEGER PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" recipient TEXT NOT NULL,"
	" action TEXT NOT NULL,"
	" reason TEXT NOT NULL DEFAULT '',"
	" message_id TEXT NOT NULL DEFAULT '',"
	" actor TEXT NOT NULL DEFAULT '',"
	" at INTEGER NOT NULL);"
	"CREATE INDEX suppression_event_recipient ON suppression_event(tenant_id, recipient, id);"
	"CREATE INDEX inbound_sender ON inbound(tenant_id, sender, id);"
	/* Accounts an operator paused: the dispatcher reads them all (few). */
	"CREATE TABLE account_pause("
	" account_id TEXT PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" reason TEXT NOT NULL DEFAULT '',"
	" actor TEXT NOT NULL DEFAULT '',"
	" at INTEGER NOT NULL) WITHOUT ROWID;"
	/* Messages per tenant, day, channel and kind (store/daily.h), added to
	 * once per key per group commit; read per tenant and day range. */
	"CREATE TABLE daily_count("
	" tenant_id TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" day INTEGER NOT NULL,"
	" kind INTEGER NOT NULL,"
	" code TEXT NOT NULL DEFAULT '',"
	" stripe INTEGER NOT NULL DEFAULT 0,"
	" n INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, day, channel, kind, code, stripe)) WITHOUT ROWID;";

/*
 * Plugin after-commit events (issue 13; store.h plugin_event_row): the
 * durable outbox of the plugins' on_status / on_reply hooks, written in
 * the change's transaction for tenants with such a plugin, deleted once
 * delivered. kind 0 status (prev_status -> status), 1 reply (text,
 * payload).
 */
static const char migration_13[] =
	"CREATE TABLE plugin_event("
	" id INTEGER PRIMARY KEY,"
	" tenant_id TEXT NOT NULL,"
	" message_id TEXT NOT NULL,"
	" kind INTEGER NOT NULL,"
	" prev_status INTEGER,"
	" status INTEGER,"
	" text TEXT,"
	" payload TEXT,"
	" created_at INTEGER NOT NULL);";

/*
 * One index by provider id, not two (issue 12). Webhooks look messages up
 * by (account, provider id): message_provider. A search by provider id
 * within a tenant (GET /v1/messages?provider_id=) probes the same index
 * once per account of the tenant (sqlite_msg.c list_stmt): an account
 * belongs to one tenant, and a tenant has few accounts. The dropped index
 * cost every send's outcome a random B-tree insert: ~5 µs of the writer's
 * CPU, and on a store of millions of messages a page written to the WAL
 * and checkpointed for each message.
 */
static const char migration_14[] = "DROP INDEX message_provider_tenant;";

const struct sq_migration sq_migrations[] = {
    {1, migration_1},   {2, migration_2},   {3, migration_3},   {4, migration_4},
    {5, migration_5},   {6, migration_6},   {7, migration_7},   {8, migration_8},
    {9, migration_9},   {10, migration_10}, {11, migration_11}, {12, migration_12},
    {13, migration_13}, {14, migration_14},
};

const size_t sq_migration_count = sizeof sq_migrations / sizeof sq_migrations[0];
