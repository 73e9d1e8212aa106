/*
 * test_migrate_copy.c - `herald migrate --from sqlite:PATH --to
 * postgres:URL` on a real installation: `herald sim` + `herald serve` on
 * SQLite take a few hundred messages of several kinds to read (text,
 * template batches, a provider failure, a suppressed recipient, an
 * idempotent send, a button reply, an account a tenant created through the
 * API); serve stops; the copy goes into a real PostgreSQL (tests/pgtest.h)
 * as a process, exit 0 and every table verified; then `herald serve` on the
 * copy answers the same audit trails byte for byte, the same suppressions,
 * account and idempotent replay, takes the same API key, and sends new
 * messages to read. A non-empty target is refused and left as it was;
 * --force replaces it with the source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness.h"
#include "pgtest.h"

#define N_TEXT 200
#define N_TEMPLATE 100
#define TO_FAIL "15550000001"
#define TO_SUPPRESSED "447911999001"
#define IDEM_KEY "order-42-reminder"
#define IDEM_BODY "{\"channel\":\"whatsapp\",\"to\":\"447911888001\",\"text\":\"once only\"}"
/* Text + template + the idempotent one + the failed one + the suppressed one. */
#define N_MESSAGES (N_TEXT + N_TEMPLATE + 3)
#define N_READ (N_TEXT + N_TEMPLATE + 1)
#define N_SAMPLE 16

static struct world W;
static struct pgtest PG;
static bool pg_started;
static char g_dsn[400];
static char g_sqlite_db[300];

static char g_ids[N_MESSAGES][32];
static int g_nids;
static char g_idem_id[32], g_fail_id[32], g_supp_id[32], g_reply_id[32];
/* What the SQLite server answered, compared byte for byte later. */
static char *g_sample_id[N_SAMPLE];
static char *g_sample_json[N_SAMPLE];
static int g_nsample;
static char *g_suppressions, *g_account;

static int setup(void **state)
{
	(void)state;
	if (harness_postgres()) /* this test makes its own PostgreSQL target */
		return 0;
	assert_int_equal(setenv("HERALD_SECRET_ACME__OWN_TOKEN", "own-token-5Yq", 1), 0);
	assert_int_equal(setenv("HERALD_IT_PGPASS", "unused-by-trust-auth", 1), 0);
	harness_server_extra("  allowed_origins: [\"@SIM@\"]\n");
	world_init(&W, "    fail_recipients: [\"" TO_FAIL "\"]\n", NULL);
	harness_server_extra(NULL);
	snprintf(g_sqlite_db, sizeof g_sqlite_db, "%s", W.db);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (harness_postgres())
		return 0;
	world_free(&W);
	if (pg_started)
		assert_int_equal(pgtest_stop(&PG), 0);
	for (int i = 0; i < g_nsample; i++) {
		free(g_sample_id[i]);
		free(g_sample_json[i]);
	}
	free(g_suppressions);
	free(g_account);
	return 0;
}

/* The JSON text of GET path, keys sorted: what "identical" compares. */
static char *get_text(const char *path, long want_status)
{
	struct resp r = api_get(&W, path);
	if (r.status != want_status)
		fail_msg("GET %s: %ld %s", path, r.status, r.body);
	assert_non_null(r.json);
	char *s = json_dumps(r.json, JSON_SORT_KEYS | JSON_COMPACT);
	assert_non_null(s);
	resp_free(&r);
	return s;
}

static bool status_is(struct world *w, void *arg)
{
	(void)w;
	const char **a = arg;
	json_t *m = world_message(&W, a[0]);
	bool ok = strcmp(json_string_value(json_object_get(m, "status")), a[1]) == 0;
	json_decref(m);
	return ok;
}

static bool reads_at_least(struct world *w, void *arg)
{
	return count_status(w, "read") >= *(long *)arg;
}

/* Every webhook row applied: a status that came before its send's outcome
 * was recorded waits in the inbox for a retry, and is applied (or found
 * stale) only then, so the store is not settled before. */
static bool inbox_drained(struct world *w, void *arg)
{
	(void)arg;
	struct resp r = metrics_get(w);
	const char *p =
	    r.status == 200 && r.body ? strstr(r.body, "\nherald_webhook_inbox_pending ") : NULL;
	bool ok = p && atol(p + strlen("\nherald_webhook_inbox_pending ")) == 0;
	resp_free(&r);
	return ok;
}

static bool has_inbound(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	size_t i;
	json_t *e;
	bool ok = false;
	json_array_foreach(json_object_get(m, "events"), i, e) ok |=
	    strcmp(json_string_value(json_object_get(e, "type")), "inbound") == 0;
	json_decref(m);
	return ok;
}

static void send_one(const char *body, const char *idem, char id_out[32])
{
	char url[128], hdr[128];
	snprintf(url, sizeof url, "%s/v1/messages", W.api);
	snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", idem ? idem : "");
	const char *extra[] = {hdr, NULL};
	struct resp r = http("POST", url, W.key, body, idem ? extra : NULL);
	if (r.status != 202)
		fail_msg("POST %s: %ld %s", body, r.status, r.body);
	snprintf(id_out, 32, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(strlen(id_out), 26);
	resp_free(&r);
}

/* Runs cmd, its output (stdout and stderr) into out; the exit code. */
static int run(const char *cmd, char *out, size_t size)
{
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int herald_copy(const char *extra_args, char *out, size_t size)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd,
	         "%s migrate --from sqlite:%s --to 'postgres:%s' --password-env HERALD_IT_PGPASS "
	         "%s 2>&1",
	         getenv("HERALD_BIN"), g_sqlite_db, g_dsn, extra_args ? extra_args : "");
	return run(cmd, out, size);
}

/* The rows column of the copy's summary line for table. */
static long summary_rows(const char *out, const char *table)
{
	char needle[48];
	snprintf(needle, sizeof needle, "\n%s ", table);
	const char *p = strstr(out, needle);
	if (!p)
		fail_msg("no summary line for %s in:\n%s", table, out);
	return strtol(p + strlen(needle), NULL, 10);
}

/* One integer from the target. */
static long long pg_int(const char *sql)
{
	PGconn *c = pgtest_connect(&PG, "copy");
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

/* A digest of the whole target, to prove a refused copy changed nothing. */
static char *pg_fingerprint(void)
{
	PGconn *c = pgtest_connect(&PG, "copy");
	assert_non_null(c);
	PGresult *r = PQexec(
	    c,
	    "SELECT (SELECT count(*) FROM tenant) || '/' || (SELECT count(*) FROM message) || '/'"
	    " || (SELECT count(*) FROM message_event) || '/' || (SELECT count(*) FROM suppression)"
	    " || '/' || (SELECT md5(string_agg(id || ':' || status || ':' || updated_at, ','"
	    " ORDER BY id)) FROM message) || '/' || (SELECT md5(string_agg(id::text || type,"
	    " ',' ORDER BY id)) FROM message_event)");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("fingerprint: %s", PQresultErrorMessage(r));
	char *s = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return s;
}

/* 1. The installation on SQLite. */
static void test_fill_sqlite(void **state)
{
	(void)state;
	if (harness_postgres())
		skip();
	char body[512];
	for (int i = 0; i < N_TEXT; i++) {
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 %06d\",\"text\":\"hello %d\\n"
		         "tab\\there, back\\\\slash, caf\\u00e9\"}",
		         i, i);
		send_one(body, NULL, g_ids[g_nids++]);
	}
	json_t *msgs = json_array();
	for (int i = 0; i < N_TEMPLATE; i++) {
		char to[32];
		snprintf(to, sizeof to, "4479%08d", 500 + i);
		assert_int_equal(
		    json_array_append_new(
		        msgs, json_pack("{s:s,s:s,s:{s:s,s:s,s:[s,s]}}", "channel", "whatsapp",
		                        "to", to, "template", "name", "payment_reminder",
		                        "language", "en_GB", "parameters", "Ana", "£1.00")),
		    0);
	}
	json_t *req = json_pack("{s:o}", "messages", msgs);
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(&W, "/v1/messages:batch", js);
	free(js);
	json_decref(req);
	assert_int_equal(r.status, 202);
	size_t i;
	json_t *m;
	assert_int_equal(json_array_size(json_object_get(r.json, "messages")), N_TEMPLATE);
	json_array_foreach(json_object_get(r.json, "messages"), i, m)
	    snprintf(g_ids[g_nids++], 32, "%s", json_string_value(json_object_get(m, "id")));
	resp_free(&r);

	send_one(IDEM_BODY, IDEM_KEY, g_idem_id);
	snprintf(g_ids[g_nids++], 32, "%s", g_idem_id);
	send_one("{\"channel\":\"whatsapp\",\"to\":\"" TO_FAIL "\",\"text\":\"x\"}", NULL,
	         g_fail_id);
	snprintf(g_ids[g_nids++], 32, "%s", g_fail_id);

	r = api_post(&W, "/v1/suppressions",
	             "{\"channel\":\"whatsapp\",\"to\":\"" TO_SUPPRESSED "\",\"reason\":\"asked by "
	             "phone\"}");
	assert_true(r.status == 200 || r.status == 201);
	resp_free(&r);
	send_one("{\"channel\":\"whatsapp\",\"to\":\"" TO_SUPPRESSED "\",\"text\":\"no\"}", NULL,
	         g_supp_id);
	snprintf(g_ids[g_nids++], 32, "%s", g_supp_id);
	assert_int_equal(g_nids, N_MESSAGES);

	/* An account the tenant creates itself (stored api_created). */
	snprintf(body, sizeof body,
	         "{\"id\":\"own-wa\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	         "\"phone_number_id\":\"555000444\","
	         "\"access_token\":\"env:HERALD_SECRET_ACME__OWN_TOKEN\","
	         "\"app_secret\":\"env:HERALD_SECRET_ACME__OWN_TOKEN\","
	         "\"verify_token\":\"env:HERALD_SECRET_ACME__OWN_TOKEN\"}",
	         W.sim);
	r = api_post(&W, "/v1/channels", body);
	if (r.status != 201)
		fail_msg("POST /v1/channels: %ld %s", r.status, r.body);
	resp_free(&r);

	long want = N_READ;
	assert_true(wait_until(reads_at_least, &W, &want, 180));
	const char *failed[] = {g_fail_id, "failed"}, *supp[] = {g_supp_id, "suppressed"};
	assert_true(wait_until(status_is, &W, failed, 30));
	assert_true(wait_until(status_is, &W, supp, 30));

	/* A customer's button reply, linked to one of the messages. */
	snprintf(g_reply_id, sizeof g_reply_id, "%s", g_ids[N_TEXT + 7]);
	m = world_message(&W, g_reply_id);
	snprintf(body, sizeof body,
	         "{\"account\":\"acme-wa\",\"from\":\"4479%08d\",\"button_payload\":\"PAY_NOW\","
	         "\"button_text\":\"Pay now\",\"context_id\":\"%s\"}",
	         507, json_string_value(json_object_get(m, "provider_id")));
	json_decref(m);
	char url[128];
	snprintf(url, sizeof url, "%s/sim/whatsapp/inbound", W.sim);
	r = http("POST", url, NULL, body, NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	assert_true(wait_until(has_inbound, &W, g_reply_id, 30));
	assert_true(wait_until(inbox_drained, &W, NULL, 60));
	assert_int_equal(count_status(&W, "read"), N_READ);

	/* What the SQLite server says, for the comparison after the copy. */
	const char *special[] = {g_idem_id, g_fail_id, g_supp_id, g_reply_id};
	for (int k = 0; k < 4; k++)
		g_sample_id[g_nsample++] = strdup(special[k]);
	for (int k = 0; g_nsample < N_SAMPLE; k += 25)
		g_sample_id[g_nsample++] = strdup(g_ids[k]);
	for (int k = 0; k < g_nsample; k++) {
		char path[128];
		snprintf(path, sizeof path, "/v1/messages/%s", g_sample_id[k]);
		g_sample_json[k] = get_text(path, 200);
	}
	g_suppressions = get_text("/v1/suppressions", 200);
	assert_non_null(strstr(g_suppressions, TO_SUPPRESSED));
	g_account = get_text("/v1/channels/own-wa", 200);
	world_stop_serve(&W);
}

/* 2. The copy, as a process, and what it says. */
static void test_copy(void **state)
{
	(void)state;
	if (harness_postgres())
		skip();
	if (pgtest_start(&PG) != 0)
		fail_msg("pgtest: %s", PG.err);
	pg_started = true;
	assert_int_equal(pgtest_createdb(&PG, "copy"), 0);
	pgtest_conninfo(&PG, "copy", g_dsn, sizeof g_dsn);

	static char out[16384];
	/* Bad arguments name themselves and exit 2. */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "%s migrate --from %s --to 'postgres:%s' 2>&1",
	         getenv("HERALD_BIN"), g_sqlite_db, g_dsn);
	assert_int_equal(run(cmd, out, sizeof out), 2);
	assert_non_null(strstr(out, "--from"));
	snprintf(cmd, sizeof cmd, "%s migrate --from sqlite:%s --to mysql:x 2>&1",
	         getenv("HERALD_BIN"), g_sqlite_db);
	assert_int_equal(run(cmd, out, sizeof out), 2);
	assert_non_null(strstr(out, "--to"));
	snprintf(
	    cmd, sizeof cmd,
	    "%s migrate --from sqlite:%s --to 'postgres:%s' --password-env HERALD_IT_NOPE 2>&1",
	    getenv("HERALD_BIN"), g_sqlite_db, g_dsn);
	assert_int_equal(run(cmd, out, sizeof out), 2);
	assert_non_null(strstr(out, "--password-env"));
	/* A source that does not exist: exit 1, the target untouched. */
	snprintf(cmd, sizeof cmd, "%s migrate --from sqlite:%s.nope --to 'postgres:%s' 2>&1",
	         getenv("HERALD_BIN"), g_sqlite_db, g_dsn);
	assert_int_equal(run(cmd, out, sizeof out), 1);
	assert_non_null(strstr(out, "--from"));

	int rc = herald_copy(NULL, out, sizeof out);
	printf("%s", out);
	if (rc != 0)
		fail_msg("herald migrate exited %d:\n%s", rc, out);
	assert_non_null(strstr(out, "verified: every table's row count and checksum match"));
	assert_int_equal(summary_rows(out, "tenant"), 2);
	assert_int_equal(summary_rows(out, "message"), N_MESSAGES);
	assert_int_equal(summary_rows(out, "suppression"), 1);
	assert_int_equal(summary_rows(out, "idempotency_key"), 1);
	assert_int_equal(summary_rows(out, "inbound"), 1);
	assert_true(summary_rows(out, "message_event") >= 4L * N_READ);
	assert_true(summary_rows(out, "webhook_inbox") > 0);
	assert_true(summary_rows(out, "api_key") >= 2);

	/* Independently of the copier: the target holds what it said. */
	assert_int_equal(pg_int("SELECT count(*) FROM message"), N_MESSAGES);
	assert_int_equal(pg_int("SELECT count(*) FROM message WHERE status = 4"), N_READ);
	assert_int_equal(
	    pg_int("SELECT count(*) FROM channel_account WHERE id = 'acme~own-wa' AND api_created"),
	    1);
	assert_int_equal(pg_int("SELECT count(*) FROM channel_account WHERE NOT api_created"), 1);
	/* The sequences continue after the copied ids. */
	assert_true(pg_int("SELECT last_value FROM message_event_id_seq") >
	            pg_int("SELECT max(id) FROM message_event"));
}

/* Writes a config for the same world with the store in PostgreSQL. */
static void write_pg_config(char *path, size_t size)
{
	FILE *f = fopen(W.config, "r");
	assert_non_null(f);
	static char text[16384];
	size_t n = fread(text, 1, sizeof text - 1, f);
	text[n] = '\0';
	assert_int_equal(fclose(f), 0);
	char *st = strstr(text, "store:\n"), *tn = strstr(text, "tenants:\n");
	assert_non_null(st);
	assert_non_null(tn);
	assert_true(tn > st);
	snprintf(path, size, "%s/herald-pg.yaml", W.dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fwrite(text, 1, (size_t)(st - text), f) == (size_t)(st - text));
	fprintf(f, "store:\n  driver: postgres\n  url: \"%s\"\n  password: env:HERALD_IT_PGPASS\n",
	        g_dsn);
	fputs(tn, f);
	assert_int_equal(fclose(f), 0);
}

/* 3. `herald serve` on the copy. */
static void test_serve_on_copy(void **state)
{
	(void)state;
	if (harness_postgres())
		skip();
	write_pg_config(W.config, sizeof W.config);
	world_start_serve(&W);

	/* The same audit trails, exactly. */
	for (int k = 0; k < g_nsample; k++) {
		char path[128];
		snprintf(path, sizeof path, "/v1/messages/%s", g_sample_id[k]);
		char *now = get_text(path, 200);
		if (strcmp(now, g_sample_json[k]) != 0)
			fail_msg("%s differs:\nsqlite:   %s\npostgres: %s", g_sample_id[k],
			         g_sample_json[k], now);
		free(now);
	}
	char *s = get_text("/v1/suppressions", 200);
	assert_string_equal(s, g_suppressions);
	free(s);
	s = get_text("/v1/channels/own-wa", 200);
	assert_string_equal(s, g_account);
	free(s);
	assert_int_equal(count_status(&W, "read"), N_READ);
	assert_int_equal(count_status(&W, "failed"), 1);
	assert_int_equal(count_status(&W, "suppressed"), 1);

	/* The key works, a wrong one does not. */
	char url[128];
	snprintf(url, sizeof url, "%s/v1/messages?limit=1", W.api);
	struct resp r = http("GET", url, "hk_test_wrong_wrong_wrong", NULL, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);

	/* The idempotency key still answers the first send's message. */
	snprintf(url, sizeof url, "%s/v1/messages", W.api);
	const char *hdr[] = {"Idempotency-Key: " IDEM_KEY, NULL};
	r = http("POST", url, W.key, IDEM_BODY, hdr);
	assert_true(r.status == 200 || r.status == 202);
	assert_string_equal(json_string_value(json_object_get(r.json, "id")), g_idem_id);
	resp_free(&r);

	/* New sends go out and reach read; the suppression still holds. */
	char body[256], ids[20][32];
	for (int i = 0; i < 20; i++) {
		snprintf(body, sizeof body,
		         "{\"channel\":\"whatsapp\",\"to\":\"4479770%05d\",\"text\":\"after %d\"}",
		         i, i);
		send_one(body, NULL, ids[i]);
	}
	char supp2[32];
	send_one("{\"channel\":\"whatsapp\",\"to\":\"" TO_SUPPRESSED "\",\"text\":\"still no\"}",
	         NULL, supp2);
	long want = N_READ + 20;
	assert_true(wait_until(reads_at_least, &W, &want, 120));
	const char *supp[] = {supp2, "suppressed"};
	assert_true(wait_until(status_is, &W, supp, 30));
	for (int i = 0; i < 20; i++) {
		json_t *m = world_message(&W, ids[i]);
		assert_string_equal(json_string_value(json_object_get(m, "status")), "read");
		json_decref(m);
	}
	assert_int_equal(count_status(&W, "read"), N_READ + 20);
	assert_int_equal(count_status(&W, "suppressed"), 2);
	world_stop_serve(&W);
}

/* 4. A target that holds rows is refused and left as it was; --force
 *    replaces it with the source. */
static void test_non_empty_target(void **state)
{
	(void)state;
	if (harness_postgres())
		skip();
	char *before = pg_fingerprint();
	static char out[16384];
	assert_int_equal(herald_copy(NULL, out, sizeof out), 1);
	assert_non_null(strstr(out, "not empty"));
	assert_non_null(strstr(out, "--force"));
	assert_non_null(strstr(out, "message "));
	char *after = pg_fingerprint();
	assert_string_equal(before, after);
	free(after);
	assert_int_equal(pg_int("SELECT count(*) FROM message"), N_MESSAGES + 21);

	int rc = herald_copy("--force", out, sizeof out);
	if (rc != 0)
		fail_msg("herald migrate --force exited %d:\n%s", rc, out);
	assert_non_null(strstr(out, "--force emptied"));
	assert_non_null(strstr(out, "verified"));
	assert_int_equal(pg_int("SELECT count(*) FROM message"), N_MESSAGES);
	after = pg_fingerprint();
	assert_string_not_equal(before, after);
	free(before);
	free(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fill_sqlite),
	    cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_serve_on_copy),
	    cmocka_unit_test(test_non_empty_target),
	};
	return cmocka_run_group_tests_name("migrate_copy", tests, setup, teardown);
}
