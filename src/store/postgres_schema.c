/*
 * postgres_schema.c - the PostgreSQL schema as numbered migrations, and the
 * monthly partitions of the message tables. Never edit a migration that has
 * shipped: append a new one. Each runs in its own transaction with its
 * schema_migrations row, under an advisory lock so that several nodes
 * starting at once (or `herald migrate` beside a running server) apply each
 * migration exactly once.
 *
 * The same conventions as SQLite (sqlite_schema.c): times are bigint
 * microseconds UTC, statuses the enum msg_status integers, optional text
 * NULL rather than "". Ids are ULIDs (26 Crockford base32 characters, the
 * first 10 the creation time in ms), compared byte-wise (COLLATE "C"
 * whatever the database's locale), so an id range is a time range.
 *
 * Why the shape (README, "PostgreSQL store"):
 * - message and message_event are RANGE-partitioned by message id, one
 *   partition per UTC month, made PG_PARTITION_MONTHS_AHEAD months ahead by
 *   herald_ensure_partitions() (at every open and migrate). An event lives
 *   in the partition of its message's month, so retention drops a month
 *   of messages and their audit trail as two tables instead of deleting
 *   rows (no dead tuples, no vacuum debt; postgres_retain.c, which also
 *   says why the DEFAULT partition makes that a plain, not a CONCURRENTLY,
 *   detach). A DEFAULT partition catches ids outside the prepared months
 *   (clock skew, foreign ids), so an insert never fails for want of a
 *   partition.
 * - Claims read a partial index of QUEUED rows per account in claim order
 *   (message_claim): its size is the backlog, not the table, and a claim
 *   is one statement (a MATERIALIZED CTE with FOR UPDATE SKIP LOCKED, then
 *   the UPDATE) per account and batch, so claimers on many nodes never
 *   wait for each other's rows.
 * - Hot tables (each message partition, webhook_inbox) vacuum early: the
 *   queue rewrites rows as they move QUEUED -> SENDING -> SENT, and dead
 *   tuples in the claim index are what slow such queues down. fillfactor
 *   leaves room on each page for those updates.
 */
#include <stdio.h>
#include <string.h>

#include "store/postgres_int.h"

static const char migration_1[] =
    "CREATE TABLE tenant("
    " id text COLLATE \"C\" PRIMARY KEY,"
    " name text NOT NULL,"
    " created_at bigint NOT NULL);"

    "CREATE TABLE api_key("
    " key_hash text COLLATE \"C\" PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " label text,"
    " created_at bigint NOT NULL);"
    "CREATE INDEX api_key_tenant ON api_key(tenant_id);"

    "CREATE TABLE channel_account("
    " id text COLLATE \"C\" PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " channel text NOT NULL,"
    " config text NOT NULL DEFAULT '{}',"
    " created_at bigint NOT NULL,"
    " updated_at bigint NOT NULL,"
    " api_created boolean NOT NULL DEFAULT false);"

    "CREATE TABLE template("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " channel text COLLATE \"C\" NOT NULL,"
    " name text COLLATE \"C\" NOT NULL,"
    " language text COLLATE \"C\" NOT NULL,"
    " body text NOT NULL,"
    " param_count integer NOT NULL DEFAULT 0,"
    " config text,"
    " PRIMARY KEY(tenant_id, channel, name, language));"

    /* The queue and the lead record: one row per recipient per channel. */
    "CREATE TABLE message("
    " id text COLLATE \"C\" NOT NULL,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " account_id text COLLATE \"C\" NOT NULL,"
    " channel text NOT NULL,"
    " recipient text COLLATE \"C\" NOT NULL,"
    " batch_id text COLLATE \"C\","
    " content text NOT NULL,"
    " body text,"
    " status smallint NOT NULL,"
    " priority integer NOT NULL DEFAULT 0,"
    " attempts integer NOT NULL DEFAULT 0,"
    " max_attempts integer NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL,"
    " updated_at bigint NOT NULL,"
    " due_at bigint NOT NULL,"
    " lease_until bigint NOT NULL DEFAULT 0,"
    " provider_id text COLLATE \"C\","
    " error_code text,"
    " error_text text,"
    " segments integer NOT NULL DEFAULT 0,"
    " PRIMARY KEY(id)) PARTITION BY RANGE (id);"
    /* Claim: an index range scan in claim order over QUEUED rows only. */
    "CREATE INDEX message_claim ON message(account_id, priority, due_at, id)"
    " WHERE status = 0;"
    "CREATE INDEX message_provider ON message(account_id, provider_id)"
    " WHERE provider_id IS NOT NULL;"
    "CREATE INDEX message_lease ON message(lease_until) WHERE status = 1;"
    "CREATE INDEX message_tenant ON message(tenant_id, id);"
    "CREATE INDEX message_batch ON message(batch_id, id) WHERE batch_id IS NOT NULL;"
    "CREATE TABLE message_default PARTITION OF message DEFAULT;"

    /* The audit trail, partitioned like its messages (by message_id). */
    "CREATE TABLE message_event("
    " id bigserial,"
    " message_id text COLLATE \"C\" NOT NULL,"
    " at bigint NOT NULL,"
    " provider_at bigint NOT NULL DEFAULT 0,"
    " type text NOT NULL,"
    " source text NOT NULL,"
    " status smallint,"
    " applied boolean NOT NULL DEFAULT true,"
    " detail text,"
    " inbox_id bigint,"
    " PRIMARY KEY(message_id, id)) PARTITION BY RANGE (message_id);"
    "CREATE TABLE message_event_default PARTITION OF message_event DEFAULT;"

    /* state: 0 new, 1 done, 2 retry, 3 failed, 4 orphan. Short-lived rows
     * (pruned after store.inbox_retention_hours), so not partitioned. */
    "CREATE TABLE webhook_inbox("
    " id bigserial PRIMARY KEY,"
    " account_id text COLLATE \"C\" NOT NULL,"
    " channel text NOT NULL,"
    " dedupe_key text COLLATE \"C\" NOT NULL DEFAULT '',"
    " received_at bigint NOT NULL,"
    " body bytea NOT NULL,"
    " state smallint NOT NULL DEFAULT 0,"
    " attempts integer NOT NULL DEFAULT 0,"
    " next_try_at bigint NOT NULL,"
    " error text)"
    " WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01,"
    " autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02);"
    "CREATE UNIQUE INDEX webhook_inbox_dedupe ON webhook_inbox(account_id, dedupe_key)"
    " WHERE dedupe_key <> '';"
    "CREATE INDEX webhook_inbox_pending ON webhook_inbox(next_try_at, id)"
    " WHERE state IN (0, 2);"
    "CREATE INDEX webhook_inbox_received ON webhook_inbox(received_at)"
    " WHERE state IN (1, 3, 4);"

    "CREATE TABLE idempotency_key("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " key text COLLATE \"C\" NOT NULL,"
    " request_hash text NOT NULL,"
    " http_status integer NOT NULL,"
    " response text,"
    " created_at bigint NOT NULL,"
    " PRIMARY KEY(tenant_id, key));"
    "CREATE INDEX idempotency_key_created ON idempotency_key(created_at);"

    "CREATE TABLE inbound("
    " id bigserial PRIMARY KEY,"
    " tenant_id text COLLATE \"C\","
    " account_id text COLLATE \"C\" NOT NULL,"
    " message_id text COLLATE \"C\","
    " provider_msg_id text COLLATE \"C\" NOT NULL DEFAULT '',"
    " sender text NOT NULL,"
    " kind text NOT NULL,"
    " text text,"
    " payload text,"
    " provider_at bigint NOT NULL DEFAULT 0,"
    " received_at bigint NOT NULL);"
    "CREATE UNIQUE INDEX inbound_provider ON inbound(provider_msg_id, account_id)"
    " WHERE provider_msg_id <> '';"
    "CREATE INDEX inbound_message ON inbound(message_id) WHERE message_id IS NOT NULL;"

    "CREATE TABLE suppression("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " channel text COLLATE \"C\" NOT NULL,"
    " recipient text COLLATE \"C\" NOT NULL,"
    " reason text NOT NULL,"
    " created_at bigint NOT NULL,"
    " PRIMARY KEY(tenant_id, channel, recipient));"

    "CREATE TABLE recipient_alias("
    " account_id text COLLATE \"C\" NOT NULL,"
    " old text COLLATE \"C\" NOT NULL,"
    " new text COLLATE \"C\" NOT NULL,"
    " created_at bigint NOT NULL,"
    " PRIMARY KEY(account_id, old));"
    "CREATE INDEX recipient_alias_new ON recipient_alias(account_id, new);"

    /* The first 10 characters of the ULIDs made at ts: the lower bound of
     * the ids of that instant. */
    "CREATE FUNCTION herald_ulid_prefix(ts timestamptz) RETURNS text"
    " LANGUAGE plpgsql IMMUTABLE AS $f$"
    " DECLARE ms bigint := floor(extract(epoch FROM ts) * 1000);"
    "  digits text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; out text := '';"
    " BEGIN"
    "  FOR i IN 1..10 LOOP"
    "   out := substr(digits, (ms % 32)::int + 1, 1) || out; ms := ms / 32;"
    "  END LOOP;"
    "  RETURN out;"
    " END $f$;"

    /* Makes the monthly partitions of message and message_event from
     * `back` months before the current UTC month to `ahead` months after
     * it; returns how many it made. Serialised by an advisory lock; a month
     * whose rows already sit in the DEFAULT partition cannot be made (the
     * rows stay where they are) and is skipped with a warning. */
    "CREATE FUNCTION herald_ensure_partitions(back int, ahead int) RETURNS int"
    " LANGUAGE plpgsql AS $f$"
    " DECLARE m timestamptz; t text; name text; made int := 0;"
    " BEGIN"
    "  PERFORM pg_advisory_xact_lock(7226401);"
    "  FOR k IN -back..ahead LOOP"
    "   m := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    "        + make_interval(months => k);"
    "   FOREACH t IN ARRAY ARRAY['message', 'message_event'] LOOP"
    "    name := t || '_' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM');"
    "    CONTINUE WHEN to_regclass(name) IS NOT NULL;"
    "    BEGIN"
    "     EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)"
    " WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,"
    " autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02)',"
    "      name, t, herald_ulid_prefix(m),"
    "      herald_ulid_prefix(m + interval '1 month'));"
    "     made := made + 1;"
    "    EXCEPTION WHEN check_violation OR invalid_object_definition THEN"
    "     RAISE WARNING 'partition % not made: %', name, SQLERRM;"
    "    END;"
    "   END LOOP;"
    "  END LOOP;"
    "  RETURN made;"
    " END $f$;";

/*
 * Campaigns (batches): see the SQLite schema's migration 3 for what the
 * tables mean. batch_item is not partitioned (a unique key over (batch,
 * recipient) must not include a time column, and its rows go with their
 * batch); it vacuums early like the other hot tables.
 */
static const char migration_2[] =
    "CREATE TABLE batch("
    " id text COLLATE \"C\" PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " unit text COLLATE \"C\","
    " name text NOT NULL,"
    " channel text NOT NULL,"
    " account_id text COLLATE \"C\" NOT NULL,"
    " template_name text,"
    " language text,"
    " receipts boolean NOT NULL DEFAULT true,"
    " spec text,"
    " status smallint NOT NULL DEFAULT 0,"
    " error text,"
    " retry_of text COLLATE \"C\","
    " ingested boolean NOT NULL DEFAULT false,"
    " schedule_at bigint NOT NULL DEFAULT 0,"
    " created_at bigint NOT NULL DEFAULT 0,"
    " validated_at bigint NOT NULL DEFAULT 0,"
    " started_at bigint NOT NULL DEFAULT 0,"
    " completed_at bigint NOT NULL DEFAULT 0,"
    " cancelled_at bigint NOT NULL DEFAULT 0,"
    " failed_at bigint NOT NULL DEFAULT 0,"
    " total bigint NOT NULL DEFAULT 0,"
    " valid bigint NOT NULL DEFAULT 0,"
    " invalid bigint NOT NULL DEFAULT 0,"
    " duplicates bigint NOT NULL DEFAULT 0,"
    " replied bigint NOT NULL DEFAULT 0,"
    " n_queued bigint NOT NULL DEFAULT 0,"
    " n_sending bigint NOT NULL DEFAULT 0,"
    " n_sent bigint NOT NULL DEFAULT 0,"
    " n_delivered bigint NOT NULL DEFAULT 0,"
    " n_read bigint NOT NULL DEFAULT 0,"
    " n_failed bigint NOT NULL DEFAULT 0,"
    " n_undelivered bigint NOT NULL DEFAULT 0,"
    " n_cancelled bigint NOT NULL DEFAULT 0,"
    " n_expired bigint NOT NULL DEFAULT 0,"
    " n_suppressed bigint NOT NULL DEFAULT 0,"
    " n_unknown bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX batch_tenant ON batch(tenant_id, id);"
    "CREATE INDEX batch_retry ON batch(retry_of) WHERE retry_of IS NOT NULL;"
    "ALTER TABLE batch SET (autovacuum_vacuum_scale_factor = 0.01,"
    " autovacuum_vacuum_cost_delay = 1);"
    "CREATE TABLE batch_item("
    " batch_id text COLLATE \"C\" NOT NULL,"
    " row_no bigint NOT NULL,"
    " recipient text COLLATE \"C\" NOT NULL,"
    " params text,"
    " valid boolean NOT NULL,"
    " duplicate boolean NOT NULL DEFAULT false,"
    " error_column text,"
    " error text,"
    " message_id text COLLATE \"C\","
    " PRIMARY KEY(batch_id, row_no));"
    "CREATE UNIQUE INDEX batch_item_recipient ON batch_item(batch_id, recipient)"
    " WHERE valid AND NOT duplicate;"
    "ALTER TABLE batch_item SET (autovacuum_vacuum_scale_factor = 0.02);"
    "CREATE INDEX message_batch_status ON message(batch_id, status) WHERE batch_id IS NOT NULL;";

/* Each message's delivery policy (herald.h enum delivery_policy); see the
 * SQLite schema's migration 4. Adding a column with a constant default
 * rewrites no rows (PostgreSQL 11+), on every partition at once. */
static const char migration_3[] =
    "ALTER TABLE message ADD COLUMN delivery_policy smallint NOT NULL DEFAULT 0;";

/* Callbacks to client systems: the same tables and indexes as SQLite's
 * migration 5 (sqlite_schema.c says why each index is there). */
static const char migration_4[] =
    "ALTER TABLE tenant ADD COLUMN callback_url text;"
    "ALTER TABLE message ADD COLUMN callback_url text;"
    "CREATE TABLE callback_outbox("
    " id bigserial PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " message_id text COLLATE \"C\","
    " batch_id text COLLATE \"C\","
    " url text COLLATE \"C\" NOT NULL,"
    " event text NOT NULL,"
    " status smallint,"
    " prev_status smallint,"
    " provider_id text,"
    " error_code text,"
    " error_text text,"
    " detail text,"
    " occurred_at bigint NOT NULL,"
    " state smallint NOT NULL DEFAULT 0,"
    " attempts integer NOT NULL DEFAULT 0,"
    " next_try_at bigint NOT NULL,"
    " lease_until bigint NOT NULL DEFAULT 0,"
    " last_http integer NOT NULL DEFAULT 0,"
    " last_error text,"
    " delivered_at bigint NOT NULL DEFAULT 0,"
    " updated_at bigint NOT NULL);"
    "CREATE INDEX callback_due ON callback_outbox(next_try_at, id) WHERE state = 0;"
    "CREATE INDEX callback_order ON callback_outbox(message_id, id) WHERE state = 0;"
    "CREATE INDEX callback_tenant ON callback_outbox(tenant_id, state, id);"
    "CREATE INDEX callback_dead ON callback_outbox(id) WHERE state = 2;"
    "CREATE INDEX callback_delivered ON callback_outbox(updated_at) WHERE state = 1;"
    "ALTER TABLE callback_outbox SET (autovacuum_vacuum_scale_factor = 0.02);";

/* Reconciliation and fallback routing: the same columns, indexes and
 * table as SQLite's migration 6 (sqlite_schema.c says why each is there).
 * Indexes on the partitioned message table are made on every partition. */
static const char migration_5[] =
    "ALTER TABLE message ADD COLUMN expires_at bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN sent_at bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN stale smallint NOT NULL DEFAULT 0,"
    " ADD COLUMN route text,"
    " ADD COLUMN route_step integer NOT NULL DEFAULT 0,"
    " ADD COLUMN route_steps integer NOT NULL DEFAULT 0,"
    " ADD COLUMN route_root text COLLATE \"C\","
    " ADD COLUMN fallback_after bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN fallback_at bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX message_expiry ON message(expires_at) WHERE status = 0 AND expires_at > 0;"
    "CREATE INDEX message_stale ON message(channel, sent_at) WHERE status = 2 AND stale = 0;"
    "CREATE INDEX message_fallback_due ON message(fallback_at)"
    " WHERE status = 2 AND fallback_at > 0;"
    "CREATE INDEX message_route ON message(route_root, route_step)"
    " WHERE route_root IS NOT NULL;"
    "CREATE TABLE message_fallback("
    " root_id text COLLATE \"C\" NOT NULL,"
    " step integer NOT NULL,"
    " message_id text COLLATE \"C\" NOT NULL,"
    " from_id text COLLATE \"C\" NOT NULL,"
    " reason text NOT NULL,"
    " created_at bigint NOT NULL,"
    " PRIMARY KEY(root_id, step));"
    "CREATE INDEX webhook_inbox_parked ON webhook_inbox(account_id, id) WHERE state = 4;"
    "UPDATE message SET stale = 1 WHERE status = 2;";

/* Tenancy: the same tables and columns as SQLite's migration 7 (see there).
 * Migration 5 is the reconciler's. */
static const char migration_6[] =
    "ALTER TABLE tenant ADD COLUMN disabled boolean NOT NULL DEFAULT false;"
    "CREATE TABLE business_unit("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " id text COLLATE \"C\" NOT NULL,"
    " name text NOT NULL,"
    " disabled boolean NOT NULL DEFAULT false,"
    " created_at bigint NOT NULL,"
    " PRIMARY KEY(tenant_id, id));"
    "ALTER TABLE api_key ADD COLUMN prefix text COLLATE \"C\";"
    "ALTER TABLE api_key ADD COLUMN unit_id text COLLATE \"C\";"
    "ALTER TABLE api_key ADD COLUMN scopes text;"
    "ALTER TABLE api_key ADD COLUMN created_by text;"
    "ALTER TABLE api_key ADD COLUMN expires_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE api_key ADD COLUMN revoked_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE api_key ADD COLUMN last_used_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE api_key ADD COLUMN api_created boolean NOT NULL DEFAULT false;"
    "CREATE UNIQUE INDEX api_key_prefix ON api_key(prefix) WHERE prefix IS NOT NULL;"
    "ALTER TABLE channel_account ADD COLUMN unit_id text COLLATE \"C\";"
    "ALTER TABLE template ADD COLUMN unit_id text COLLATE \"C\";"
    "ALTER TABLE message ADD COLUMN unit_id text COLLATE \"C\";"
    "CREATE TABLE admin_audit("
    " id bigserial PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " actor text NOT NULL,"
    " at bigint NOT NULL,"
    " action text NOT NULL,"
    " object text NOT NULL,"
    " before text,"
    " after text);"
    "CREATE INDEX admin_audit_tenant ON admin_audit(tenant_id, id);";

/*
 * Tenant limits: the same columns, table and index as SQLite's migration 8
 * (see there), and herald_daily_take, which adds n to the tenant's count
 * for the day and raises SQLSTATE HR429 (postgres.c maps it to HR_EQUOTA)
 * when that passes the tenant's cap. One statement, so it rides in the
 * writer's pipeline like the insert it goes with; the row lock the upsert
 * takes orders concurrent writers on every node, and the raise rolls back
 * the job's savepoint with the messages. Migration 6 is tenancy's.
 */
static const char migration_7[] =
    "ALTER TABLE tenant ADD COLUMN rate_milli bigint,"
    " ADD COLUMN rate_burst bigint,"
    " ADD COLUMN daily_cap bigint,"
    " ADD COLUMN campaign_cap bigint;"
    "CREATE TABLE tenant_daily("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " day bigint NOT NULL,"
    " count bigint NOT NULL,"
    " PRIMARY KEY(tenant_id, day));"
    "CREATE INDEX batch_processing ON batch(tenant_id) WHERE status = 2;"
    "CREATE FUNCTION herald_daily_take(t text, d bigint, n bigint) RETURNS bigint"
    " LANGUAGE plpgsql AS $f$"
    " DECLARE cap bigint; c bigint;"
    " BEGIN"
    "  SELECT daily_cap INTO cap FROM tenant WHERE id = t;"
    "  INSERT INTO tenant_daily(tenant_id, day, count) VALUES(t, d, n)"
    "   ON CONFLICT(tenant_id, day) DO UPDATE SET count = tenant_daily.count + excluded.count"
    "   RETURNING count INTO c;"
    "  IF cap IS NOT NULL AND cap > 0 AND c > cap THEN"
    "   RAISE EXCEPTION 'tenant ''%'' has a daily cap of % messages: % accepted today"
    " (UTC), % more refused; the count resets at 00:00 UTC', t, cap, c - n, n"
    "    USING ERRCODE = 'HR429';"
    "  END IF;"
    "  RETURN c;"
    " END $f$;";

/* The count of messages per status kept as messages change: the same
 * table as SQLite's migration 9 (see there). Each node moves its own
 * stripe (postgres_int.h PG_STATUS_STRIPES); the recount starts in stripe
 * 0, in the migration's transaction. The table is locked first so no
 * message changes between the recount and the commit (a node of the older
 * version still running would otherwise change rows the count has
 * already read, uncounted). Migration 7 is the request limits'. */
static const char migration_8[] =
    "LOCK TABLE message IN SHARE MODE;"
    "CREATE TABLE message_status_count("
    " stripe smallint NOT NULL,"
    " status smallint NOT NULL,"
    " n bigint NOT NULL,"
    " PRIMARY KEY(stripe, status));"
    "INSERT INTO message_status_count(stripe, status, n)"
    " SELECT 0, status, count(*) FROM message GROUP BY status;";

/*
 * Message search: the same as SQLite's migration 10 (see there). The keys
 * of messages accepted before come from the idempotency records still
 * kept. Number 10: migration 9 belongs to another change.
 */
static const char migration_9[] =
    "ALTER TABLE message ADD COLUMN idem_key text COLLATE \"C\";"
    "CREATE INDEX message_recipient ON message(tenant_id, recipient, id);"
    "CREATE INDEX message_provider_tenant ON message(tenant_id, provider_id, id)"
    " WHERE provider_id IS NOT NULL;"
    "CREATE INDEX message_idem ON message(tenant_id, idem_key, id) WHERE idem_key IS NOT NULL;"
    "CREATE INDEX message_error ON message(tenant_id, error_code, id)"
    " WHERE error_code IS NOT NULL;"
    "UPDATE message m SET idem_key = x.k FROM ("
    " SELECT i.tenant_id AS t, substr(i.key, strpos(i.key, chr(31)) + 1) AS k,"
    "  coalesce(i.response::jsonb->>'id', j.e->>'id') AS mid"
    " FROM idempotency_key i LEFT JOIN LATERAL jsonb_array_elements("
    "  CASE WHEN jsonb_typeof(i.response::jsonb->'messages') = 'array'"
    "  THEN i.response::jsonb->'messages' END) AS j(e) ON true"
    " WHERE i.response IS NOT NULL) x"
    " WHERE m.id = x.mid AND m.tenant_id = x.t;";

/* Pause and resume of campaigns (sqlite_schema.c, migration 11, says why). */
static const char migration_10[] =
    "ALTER TABLE batch ADD COLUMN paused_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE batch ADD COLUMN resumed_at bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE batch ADD COLUMN paused_by text;"
    "ALTER TABLE batch ADD COLUMN resumed_by text;"
    "ALTER TABLE batch ADD COLUMN cancelled_by text;"
    "ALTER TABLE batch ADD COLUMN pause_reason text;"
    "ALTER TABLE batch ADD COLUMN cancel_reason text;";

/* the recipient history, as SQLite's migration 12 (see there). */
static const char migration_11[] =
    "CREATE TABLE suppression_event("
    " id bigserial PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " channel text COLLATE \"C\" NOT NULL,"
    " recipient text COLLATE \"C\" NOT NULL,"
    " action text NOT NULL,"
    " reason text NOT NULL DEFAULT '',"
    " message_id text COLLATE \"C\" NOT NULL DEFAULT '',"
    " actor text NOT NULL DEFAULT '',"
    " at bigint NOT NULL);"
    "CREATE INDEX suppression_event_recipient ON suppression_event(tenant_id, recipient, id);"
    "CREATE INDEX inbound_sender ON inbound(tenant_id, sender, id);"
    "CREATE TABLE account_pause("
    " account_id text COLLATE \"C\" PRIMARY KEY,"
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " reason text NOT NULL DEFAULT '',"
    " actor text NOT NULL DEFAULT '',"
    " at bigint NOT NULL);"
    "CREATE TABLE daily_count("
    " tenant_id text COLLATE \"C\" NOT NULL,"
    " channel text COLLATE \"C\" NOT NULL,"
    " day integer NOT NULL,"
    " kind smallint NOT NULL,"
    " code text COLLATE \"C\" NOT NULL DEFAULT '',"
    " stripe smallint NOT NULL DEFAULT 0,"
    " n bigint NOT NULL,"
    " PRIMARY KEY(tenant_id, day, channel, kind, code, stripe));";

/*
 * Plugin after-commit events (issue 13; store.h plugin_event_row): the
 * same table as SQLite's migration 13.
 */
static const char migration_12[] =
    "CREATE TABLE plugin_event("
    " id bigserial PRIMARY KEY,"
    " tenant_id text NOT NULL,"
    " message_id text NOT NULL,"
    " kind smallint NOT NULL,"
    " prev_status smallint,"
    " status smallint,"
    " text text,"
    " payload text,"
    " created_at bigint NOT NULL);";

/* One index by provider id, not two: SQLite's migration 14 says why. */
static const char migration_13[] = "DROP INDEX message_provider_tenant;";

const struct pg_migration pg_migrations[] = {
    {1, migration_1},   {2, migration_2},   {3, migration_3},   {4, migration_4},
    {5, migration_5},   {6, migration_6},   {7, migration_7},   {8, migration_8},
    {9, migration_9},   {10, migration_10}, {11, migration_11}, {12, migration_12},
    {13, migration_13},
};

const size_t pg_migration_count = sizeof pg_migrations / sizeof pg_migrations[0];

/* Reads one integer from a one-row query; 0 if no row. */
static int query_int(struct pg_conn *c, const char *sql, int64_t *out, struct hr_err *err)
{
	PGresult *r = PQexec(c->c, sql);
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = pg_fail(c, r, err, "schema_migrations");
		PQclear(r);
		return rc;
	}
	*out = PQntuples(r) ? pg_col_i64(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

/*
 * Applies each migration newer than the recorded version in its own
 * transaction with its schema_migrations row, all under a session advisory
 * lock (two nodes migrating at once: the second waits, then finds every
 * version present). Then makes the coming months' partitions.
 */
int pg_migrate_conn(struct pg_conn *c, int *applied, struct hr_err *err)
{
	int done = 0;
	int rc = pg_simple(c, "SELECT pg_advisory_lock(7226400)", err, "schema_migrations");
	if (rc)
		return rc;
	rc = pg_simple(c,
	               "CREATE TABLE IF NOT EXISTS schema_migrations("
	               " version integer PRIMARY KEY, applied_at bigint NOT NULL)",
	               err, "schema_migrations");
	for (size_t i = 0; rc == 0 && i < pg_migration_count; i++) {
		const struct pg_migration *m = &pg_migrations[i];
		char q[160];
		snprintf(q, sizeof q, "SELECT count(*) FROM schema_migrations WHERE version = %d",
		         m->version);
		int64_t have = 0;
		if ((rc = query_int(c, q, &have, err)) || have)
			continue;
		if ((rc = pg_simple(c, "BEGIN", err, "schema_migrations")))
			break;
		char field[32];
		snprintf(field, sizeof field, "migration %d", m->version);
		snprintf(q, sizeof q,
		         "INSERT INTO schema_migrations(version, applied_at)"
		         " VALUES(%d, (extract(epoch FROM now()) * 1000000)::bigint)",
		         m->version);
		if ((rc = pg_simple(c, m->sql, err, field)) ||
		    (rc = pg_simple(c, q, err, "schema_migrations")) ||
		    (rc = pg_simple(c, "COMMIT", err, "schema_migrations"))) {
			if (c->c && PQtransactionStatus(c->c) != PQTRANS_IDLE)
				pg_simple(c, "ROLLBACK", NULL, NULL);
			break;
		}
		done++;
		hr_log(HR_LOG_INFO, "store", "applied postgres migration %d", m->version);
	}
	if (rc == 0) {
		char q[96];
		snprintf(q, sizeof q, "SELECT herald_ensure_partitions(%d, %d)",
		         PG_PARTITION_MONTHS_BACK, PG_PARTITION_MONTHS_AHEAD);
		rc = pg_simple(c, q, err, "partitions");
	}
	if (c->c && PQstatus(c->c) == CONNECTION_OK)
		pg_simple(c, "SELECT pg_advisory_unlock(7226400)", NULL, NULL);
	if (applied)
		*applied = done;
	return rc;
}
