/*
 * test_batch_source.c - campaigns whose rows come from an external data
 * source (POST /v1/batches {"source", "query", "query_params"}) against real
 * `herald serve` and `herald sim` processes and real PostgreSQL and MariaDB
 * servers this test starts (tests/pgtest.h, tests/dbtest.h): a batch from
 * each source is delivered with exact counters, the validation report
 * lists the bad rows of a query as of a file, the export has every row,
 * and two tenants cannot read each other's sources (404 both ways), nor
 * name SQL instead of a configured query.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dbtest.h"
#include "harness.h"
#include "herald.h"
#include "pgtest.h"

static struct world W;
static struct pgtest pg;
static struct mdbtest mdb;
static char plugdir[64];

#define OTHER_KEY "hk_other_0123456789abcdef"

static void pg_exec_ok(const char *sql)
{
	PGconn *c = pgtest_connect(&pg, NULL);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static int setup(void **state)
{
	(void)state;
	if (pgtest_start(&pg) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
		return -1;
	}
	if (mdbtest_start(&mdb) != 0) {
		fprintf(stderr, "mdbtest: %s\n", mdb.err);
		return -1;
	}
	/* 60 customers, 40 of them in the north; amounts as numerics. */
	pg_exec_ok("CREATE TABLE customers (id int PRIMARY KEY, phone text, name text, "
	           "amount numeric(10,2), region text);"
	           "INSERT INTO customers SELECT g, '+4474005' || lpad(g::text, 5, '0'), "
	           "'Ana ' || g, g * 1.5, CASE WHEN g <= 40 THEN 'north' ELSE 'south' END "
	           "FROM generate_series(1, 60) g;"
	           "CREATE TABLE secrets (x text); INSERT INTO secrets VALUES ('top');"
	           "CREATE TABLE statements (id serial PRIMARY KEY, phone text, name text, "
	           "month text, url text, sent_whatsapp timestamptz, sent_sms timestamptz);"
	           "INSERT INTO statements (phone, name, month, url) VALUES "
	           "('+447400800001', 'Ana', '2026-11', 'https://files.example/s/11.pdf'),"
	           "('+447400800002', 'Ben', '2026-11', 'https://files.example/s/12.pdf'),"
	           "('+447400800003', 'Cat', '2026-11', 'https://files.example/s/13.pdf'),"
	           "('+447400800001', 'Ana', '2026-10', 'https://files.example/s/01.pdf');");
	/* 30 due payments: row 7's phone is not one, row 12 repeats row 1's. */
	char sql[8192];
	size_t n = (size_t)snprintf(sql, sizeof sql,
	                            "CREATE DATABASE billing CHARACTER SET utf8mb4;"
	                            "CREATE USER 'herald'@'localhost' IDENTIFIED BY 'bill-pw';"
	                            "GRANT SELECT ON billing.* TO 'herald'@'localhost';"
	                            "CREATE TABLE billing.payments (id int PRIMARY KEY, msisdn "
	                            "varchar(32), customer varchar(64), due decimal(10,2), "
	                            "due_date date) CHARACTER SET utf8mb4;"
	                            "INSERT INTO billing.payments VALUES ");
	for (int i = 1; i <= 30; i++) {
		char phone[32];
		if (i == 7)
			snprintf(phone, sizeof phone, "call me");
		else
			snprintf(phone, sizeof phone, "+4474006%05d", i == 12 ? 1 : i);
		n += (size_t)snprintf(sql + n, sizeof sql - n,
		                      "%s(%d, '%s', 'Zoë %d', %d.25, '2026-12-%02d')",
		                      i > 1 ? "," : "", i, phone, i, i * 10, i);
	}
	snprintf(sql + n, sizeof sql - n, ";");
	if (mdbtest_sql(&mdb, sql) != 0) {
		fprintf(stderr, "mariadb: %s\n", mdb.err);
		return -1;
	}
	setenv("DS_IT_BILLING_PW", "bill-pw", 1);
	/* The statements example plugin, as CMake built it, for unit statements. */
	const char *built = getenv("HERALD_EXAMPLE_PLUGINS");
	snprintf(plugdir, sizeof plugdir, "/tmp/dsit-plug-XXXXXX");
	if (!built || !mkdtemp(plugdir)) {
		fprintf(stderr, "HERALD_EXAMPLE_PLUGINS is not set (CTest sets it)\n");
		return -1;
	}
	char so_src[300], so_dst[300];
	snprintf(so_src, sizeof so_src, "%s/statements.so", built);
	snprintf(so_dst, sizeof so_dst, "%s/statements.so", plugdir);
	if (symlink(so_src, so_dst) != 0)
		return -1;
	char extra[4096];
	snprintf(
	    extra, sizeof extra,
	    "data_sources:\n"
	    "  - name: crm\n    driver: postgres\n    socket: \"%s\"\n    port: %d\n"
	    "    database: herald\n    user: herald\n    timeout_ms: 1500\n    tenants: [acme]\n"
	    "    queries:\n"
	    "      due: \"SELECT phone, name, amount FROM customers WHERE region = ?1 ORDER BY "
	    "id\"\n"
	    "      slow: \"SELECT pg_sleep(5), phone FROM customers\"\n"
	    "  - name: billing\n    driver: mariadb\n    socket: \"%s\"\n    database: billing\n"
	    "    user: herald\n    password: env:DS_IT_BILLING_PW\n    timeout_ms: 1000\n"
	    "    tenants: [acme]\n"
	    "    queries:\n"
	    "      due: \"SELECT msisdn, customer, due, due_date FROM payments WHERE due_date "
	    "<= ?1 ORDER BY id\"\n"
	    "  - name: other_crm\n    driver: postgres\n    socket: \"%s\"\n    port: %d\n"
	    "    database: herald\n    user: herald\n    tenants: [other]\n"
	    "    queries:\n      all: \"SELECT x FROM secrets\"\n"
	    "  - name: stmts\n    driver: postgres\n    socket: \"%s\"\n    port: %d\n"
	    "    database: herald\n    user: herald\n    tenants: [acme]\n"
	    "    queries:\n      month: \"SELECT phone, name, month, url FROM statements "
	    "WHERE month = ?1 ORDER BY phone\"\n"
	    "plugins:\n  dir: %s\n  units: {acme/statements: statements}\n"
	    "  config: {statements: {source: stmts, link_prefix: \"https://files.example/\"}}\n",
	    pg.dir, pg.port, mdb.socket, pg.dir, pg.port, pg.dir, pg.port, plugdir);
	/* Statements: WhatsApp fails for 447400800001, whose statement then
	 * goes by SMS. */
	world_init2(&W,
	            "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	            "        account_sid: AC0123456789abcdef0123456789abcdef\n"
	            "        auth_token: tw-token-123\n        from: \"+15005550006\"\n"
	            "        rate_limit: 200\n",
	            "      - {name: due_reminder, channel: whatsapp, language: en_GB,"
	            " body: \"Hi {{1}}, {{2}} is due on {{3}}\"}\n"
	            "      - {name: monthly_statement, channel: whatsapp, language: en_GB,"
	            " body: \"Hi {{1}}, your {{2}} statement: {{3}}\", header: {type: document}}\n"
	            "    units: [statements]\n",
	            "  sms:\n    seed: 3\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n",
	            "    webhook_batch: 20\n    recipients:\n"
	            "      \"447400800001\": {fate: failed}\n",
	            extra);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	int rc = pgtest_stop(&pg);
	if (mdbtest_stop(&mdb) != 0)
		rc = -1;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", plugdir);
	if (plugdir[0] && system(cmd) != 0)
		rc = -1;
	return rc;
}

struct want {
	const char *id;
	long read;
};

/* Completed, and every message read (the simulator's last receipt). */
static bool all_read(struct world *w, void *arg)
{
	(void)w;
	struct want *x = arg;
	json_t *b = world_batch(&W, x->id);
	bool ok = !strcmp(json_string_value(json_object_get(b, "status")), "completed") &&
	          batch_messages(b, "read") == x->read;
	json_decref(b);
	return ok;
}

static long sim_unique(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *v = json_object_get(r.json, "unique_messages");
	if (!v)
		v = json_object_get(json_object_get(r.json, "whatsapp"), "unique_messages");
	long n = (long)json_integer_value(v);
	resp_free(&r);
	return n;
}

static struct resp post_as(const char *key, const char *body)
{
	char url[128];
	snprintf(url, sizeof url, "%s/v1/batches", W.api);
	return http("POST", url, key, body, NULL);
}

/* PostgreSQL: the 40 northern customers, started at once, each reached. */
static void test_batch_from_postgres(void **state)
{
	(void)state;
	long u0 = sim_unique();
	struct resp r =
	    api_post(&W, "/v1/batches",
	             "{\"name\":\"North reminders\",\"channel\":\"whatsapp\","
	             "\"template\":{\"name\":\"payment_reminder\",\"language\":\"en_GB\"},"
	             "\"params\":[\"name\",\"amount\"],\"source\":\"crm\",\"query\":\"due\","
	             "\"query_params\":[\"north\"],\"start\":true}");
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 40);
	assert_int_equal(batch_rows(r.json, "valid"), 40);
	assert_int_equal(batch_rows(r.json, "invalid"), 0);
	resp_free(&r);
	struct want w = {id, 40};
	assert_true(wait_until(all_read, &W, &w, 120));
	json_t *b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "read"), 40);
	assert_int_equal(batch_messages(b, "failed"), 0);
	assert_int_equal(batch_messages(b, "queued") + batch_messages(b, "sending") +
	                     batch_messages(b, "sent"),
	                 0);
	json_decref(b);
	assert_int_equal(sim_unique() - u0, 40);
	/* The rendered text carries the row's values (numeric as text). */
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_non_null(r.body);
	long lines = 0;
	for (const char *p = r.body; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 41); /* a header and one line per row */
	assert_non_null(strstr(r.body, "Ana 40"));
	assert_non_null(strstr(r.body, "60.00"));
	assert_null(strstr(r.body, "Ana 41"));
	resp_free(&r);
}

/* MariaDB: 30 rows with one bad phone and one repeated recipient: the
 * report says so (row and column), the batch waits, and its start sends
 * the 28 others exactly once. */
static void test_batch_from_mariadb_with_report(void **state)
{
	(void)state;
	long u0 = sim_unique();
	struct resp r = api_post(&W, "/v1/batches",
	                         "{\"name\":\"Due soon\",\"channel\":\"whatsapp\","
	                         "\"template\":{\"name\":\"due_reminder\",\"language\":\"en_GB\"},"
	                         "\"recipient_column\":\"msisdn\","
	                         "\"params\":[\"customer\",\"due\",\"due_date\"],"
	                         "\"source\":\"billing\",\"query\":\"due\","
	                         "\"query_params\":[\"2026-12-31\"]}");
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 30);
	assert_int_equal(batch_rows(r.json, "invalid"), 1);
	assert_int_equal(batch_rows(r.json, "duplicates"), 1);
	assert_int_equal(batch_rows(r.json, "valid"), 28);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")), "validated");
	json_t *e0 = json_array_get(json_object_get(r.json, "errors"), 0);
	/* Row 8 of the query's sheet: the header is row 1. */
	assert_int_equal(json_integer_value(json_object_get(e0, "row")), 8);
	assert_string_equal(json_string_value(json_object_get(e0, "column")), "msisdn");
	resp_free(&r);
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	r = api_post(&W, path, "");
	if (r.status != 200)
		fail_msg("start answered %ld: %s", r.status, r.body);
	resp_free(&r);
	struct want w = {id, 28};
	assert_true(wait_until(all_read, &W, &w, 120));
	json_t *b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "read"), 28);
	assert_int_equal(batch_messages(b, "failed"), 0);
	json_decref(b);
	assert_int_equal(sim_unique() - u0, 28);
	/* The date and decimal reached the text. */
	snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=100", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 28);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "2026-12-30"));
	assert_non_null(strstr(r.body, "300.25"));
	assert_non_null(strstr(r.body, "Zoë 30"));
	resp_free(&r);
}

/* Two tenants: neither reads the other's source, and the answer is the
 * one a source that does not exist gets. No SQL from a request. */
static void test_tenants_and_queries(void **state)
{
	(void)state;
	static const struct {
		const char *key, *body;
		long status;
		const char *field, *says;
	} cases[] = {
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"other_crm\","
	     "\"query\":\"all\"}",
	     404, "source", "no data source 'other_crm'"},
	    {OTHER_KEY,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"due\",\"query_params\":[\"north\"]}",
	     404, "source", "no data source 'crm'"},
	    {OTHER_KEY,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"billing\","
	     "\"query\":\"due\"}",
	     404, "source", "no data source 'billing'"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"nope\","
	     "\"query\":\"due\"}",
	     404, "source", "no data source 'nope'"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"SELECT x FROM secrets\"}",
	     404, "query", "SQL is never taken from a request"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"all\"}",
	     404, "query", "SQL is never taken from a request"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"due\",\"query_params\":[{\"a\":1}]}",
	     422, "query_params[0]", NULL},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"due\",\"query_params\":[\"nowhere\"]}",
	     422, "query", "returned no rows"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"due\",\"rows\":[{\"phone\":\"+447400100001\"}]}",
	     422, "source", "not two of them"},
	    {NULL, "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"query\":\"due\"}",
	     422, "source", "go with a source"},
	    {NULL,
	     "{\"name\":\"x\",\"channel\":\"whatsapp\",\"text\":\"hi\",\"source\":\"crm\","
	     "\"query\":\"slow\"}",
	     503, "source", "the query timed out"},
	};
	struct resp r = api_get(&W, "/v1/batches?limit=100");
	assert_int_equal(r.status, 200);
	size_t nb0 = json_array_size(json_object_get(r.json, "data"));
	resp_free(&r);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		r = post_as(cases[i].key ? cases[i].key : W.key, cases[i].body);
		json_t *e = json_object_get(r.json, "error");
		const char *field = json_string_value(json_object_get(e, "field"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		if (r.status != cases[i].status || !field || strcmp(field, cases[i].field) ||
		    (cases[i].says && (!msg || !strstr(msg, cases[i].says))))
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		/* Nothing of the other tenant's data in any answer. */
		assert_null(strstr(r.body, "top"));
		resp_free(&r);
	}
	/* Nothing was created by any of them. */
	r = api_get(&W, "/v1/batches?limit=100");
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), nb0);
	resp_free(&r);
}

/* Statements: each a WhatsApp template whose document header is the row's
 * link (document_param), routed [whatsapp, sms]; the one WhatsApp fails
 * for goes by SMS, whose text carries the link. */
static json_t *messages_to(const char *channel, const char *to_enc)
{
	char path[200];
	snprintf(path, sizeof path, "/v1/messages?channel=%s&to=%s&limit=10", channel, to_enc);
	struct resp r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	json_t *d = json_incref(json_object_get(r.json, "data"));
	resp_free(&r);
	return d;
}

static bool sms_delivered(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	json_t *d = messages_to("sms", "%2B447400800001");
	bool ok = json_array_size(d) == 1 &&
	          !strcmp(json_string_value(json_object_get(json_array_get(d, 0), "status")),
	                  "delivered");
	json_decref(d);
	return ok;
}

static long pg_one(const char *sql)
{
	PGconn *c = pgtest_connect(&pg, NULL);
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	long v = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

/* Two statements delivered on WhatsApp and one by SMS, as the plugin
 * records them. */
static bool stmt_recorded(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	return pg_one("SELECT COUNT(*) FROM statements WHERE sent_whatsapp IS NOT NULL") == 2 &&
	       pg_one("SELECT COUNT(*) FROM statements WHERE sent_sms IS NOT NULL") == 1;
}

static void test_statements_document_with_sms_fallback(void **state)
{
	(void)state;
	struct resp r = api_post(
	    &W, "/v1/batches",
	    "{\"name\":\"November statements\",\"channel\":\"whatsapp\",\"unit\":\"statements\","
	    "\"template\":{\"name\":\"monthly_statement\",\"language\":\"en_GB\"},"
	    "\"params\":[\"name\",\"month\",\"url\"],\"document_param\":3,"
	    "\"document_filename\":\"statement.pdf\","
	    "\"route\":[\"whatsapp\",\"sms\"],\"source\":\"stmts\","
	    "\"query\":\"month\",\"query_params\":[\"2026-11\"],\"start\":true}");
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 3);
	assert_int_equal(batch_rows(r.json, "valid"), 3);
	resp_free(&r);
	assert_true(wait_until(sms_delivered, &W, NULL, 120));
	/* The WhatsApp messages carried the statement as their document. */
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=100", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	size_t i;
	json_t *m;
	int wa = 0;
	json_array_foreach(json_object_get(r.json, "data"), i, m)
	{
		if (strcmp(json_string_value(json_object_get(m, "channel")), "whatsapp"))
			continue;
		wa++;
		json_t *c = json_object_get(m, "content");
		if (json_is_string(c))
			c = json_loads(json_string_value(c), 0, NULL);
		else
			json_incref(c);
		char *js = json_dumps(c, JSON_COMPACT);
		assert_non_null(js);
		assert_non_null(strstr(js, "\"document\""));
		assert_non_null(strstr(js, "https://files.example/s/1"));
		assert_non_null(strstr(js, "statement.pdf"));
		free(js);
		json_decref(c);
	}
	assert_int_equal(wa, 3);
	resp_free(&r);
	/* Exactly one SMS: to the recipient WhatsApp failed for, with the link. */
	json_t *d = messages_to("sms", "%2B447400800001");
	assert_int_equal(json_array_size(d), 1);
	const char *body = json_string_value(json_object_get(json_array_get(d, 0), "body"));
	assert_non_null(body);
	assert_non_null(strstr(body, "https://files.example/s/11.pdf"));
	json_decref(d);
	d = messages_to("sms", "%2B447400800002");
	assert_int_equal(json_array_size(d), 0);
	json_decref(d);
	d = messages_to("sms", "%2B447400800003");
	assert_int_equal(json_array_size(d), 0);
	json_decref(d);
	/* The statements plugin recorded each delivery on its channel, on the
	 * November statement only. */
	if (!wait_until(stmt_recorded, &W, NULL, 60))
		fail_msg("recorded: %ld by WhatsApp, %ld by SMS",
		         pg_one("SELECT COUNT(*) FROM statements WHERE sent_whatsapp IS NOT NULL"),
		         pg_one("SELECT COUNT(*) FROM statements WHERE sent_sms IS NOT NULL"));
	assert_int_equal(pg_one("SELECT COUNT(*) FROM statements WHERE sent_sms IS NOT NULL"), 1);
	assert_int_equal(pg_one("SELECT COUNT(*) FROM statements WHERE sent_sms IS NOT NULL AND "
	                        "phone = '+447400800001' AND month = '2026-11'"),
	                 1);
	assert_int_equal(pg_one("SELECT COUNT(*) FROM statements WHERE month = '2026-10' AND "
	                        "(sent_sms IS NOT NULL OR sent_whatsapp IS NOT NULL)"),
	                 0);
	r = api_get(&W, "/v1/units/statements/stats");
	assert_int_equal(r.status, 200);
	char *sj = json_dumps(r.json, JSON_COMPACT);
	assert_non_null(strstr(sj, "\"by_sms\":\"1\""));
	assert_non_null(strstr(sj, "\"by_whatsapp\":\"2\""));
	free(sj);
	resp_free(&r);
	/* A document_param that is not one of the template's parameters. */
	r = api_post(&W, "/v1/batches",
	             "{\"name\":\"x\",\"channel\":\"whatsapp\","
	             "\"template\":{\"name\":\"monthly_statement\",\"language\":\"en_GB\"},"
	             "\"params\":[\"name\",\"month\",\"url\"],\"document_param\":4,"
	             "\"source\":\"stmts\",\"query\":\"month\",\"query_params\":[\"2026-11\"]}");
	assert_int_equal(r.status, 422);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
	    "document_param");
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batch_from_postgres),
	    cmocka_unit_test(test_batch_from_mariadb_with_report),
	    cmocka_unit_test(test_tenants_and_queries),
	    cmocka_unit_test(test_statements_document_with_sms_fallback),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
