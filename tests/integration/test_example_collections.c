/*
 * test_example_collections.c - the collections example plugin end to end:
 * `herald serve` loads examples/plugins/collections (as built by CMake) for
 * acme's unit "collections"; a campaign of that unit reads its rows from a
 * real MariaDB server this test starts; the plugin shapes each reminder
 * (amount with currency) and skips the rows already paid or with nothing
 * due; `herald sim` delivers them, and the customer who replies "Paid" has
 * her payments marked paid in MariaDB by the plugin; the export carries the
 * plugin's paid/unpaid columns; the unit's stats come from the plugin.
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

static struct world W;
static struct mdbtest mdb;
static char plugdir[128];

static long mdb_one(const char *sql)
{
	MYSQL *c = mdbtest_connect(&mdb, NULL);
	assert_non_null(c);
	if (mysql_query(c, sql))
		fail_msg("%s: %s", sql, mysql_error(c));
	MYSQL_RES *r = mysql_store_result(c);
	assert_non_null(r);
	MYSQL_ROW row = mysql_fetch_row(r);
	assert_non_null(row);
	long v = row[0] ? atol(row[0]) : -1;
	mysql_free_result(r);
	mysql_close(c);
	return v;
}

static int setup(void **state)
{
	(void)state;
	const char *built = getenv("HERALD_EXAMPLE_PLUGINS");
	if (!built) {
		fprintf(stderr, "HERALD_EXAMPLE_PLUGINS is not set (CTest sets it)\n");
		return -1;
	}
	if (mdbtest_start(&mdb) != 0) {
		fprintf(stderr, "mdbtest: %s\n", mdb.err);
		return -1;
	}
	if (mdbtest_sql(
	        &mdb,
	        "CREATE DATABASE billing CHARACTER SET utf8mb4;"
	        "CREATE USER 'coll'@'localhost' IDENTIFIED BY 'coll-pw';"
	        "GRANT SELECT, UPDATE ON billing.* TO 'coll'@'localhost';"
	        "CREATE TABLE billing.payments (id INT PRIMARY KEY, msisdn VARCHAR(32), "
	        "customer VARCHAR(64), due DECIMAL(10,2), due_date DATE, "
	        "paid TINYINT NOT NULL DEFAULT 0, paid_at DATETIME NULL, "
	        "paid_message VARCHAR(32) NULL) CHARACTER SET utf8mb4;"
	        "INSERT INTO billing.payments (id, msisdn, customer, due, due_date, paid) VALUES "
	        "(1, '+447400600001', 'Zoë Adams', 300.25, '2026-12-01', 0),"
	        "(2, '+447400600002', 'Bob Brown', 0.00, '2026-12-02', 0),"
	        "(3, '+447400600003', 'Cy Chan', 10.00, '2026-12-03', 1),"
	        "(4, '+447400600004', 'Dee O''Neil', 42.00, '2026-12-04', 0),"
	        "(5, '+447400600005', 'Eve Ek', 7.50, '2026-12-05', 0),"
	        "(6, '+447400600006', 'Fay Fu', 12.00, '2026-12-06', 0);") != 0) {
		fprintf(stderr, "mariadb: %s\n", mdb.err);
		return -1;
	}
	snprintf(plugdir, sizeof plugdir, "/tmp/excoll-XXXXXX");
	if (!mkdtemp(plugdir))
		return -1;
	char src[300], dst[300];
	snprintf(src, sizeof src, "%s/collections.so", built);
	snprintf(dst, sizeof dst, "%s/collections.so", plugdir);
	if (symlink(src, dst) != 0)
		return -1;
	setenv("EXCOLL_PW", "coll-pw", 1);
	char extra[2048];
	snprintf(
	    extra, sizeof extra,
	    "data_sources:\n"
	    "  - name: billing\n    driver: mariadb\n    socket: \"%s\"\n    database: billing\n"
	    "    user: coll\n    password: env:EXCOLL_PW\n    tenants: [acme]\n"
	    "    queries:\n"
	    "      due: \"SELECT msisdn, customer, due, due_date, paid FROM payments "
	    "WHERE due_date <= ?1 ORDER BY id\"\n"
	    "plugins:\n  dir: %s\n  units: {acme/collections: collections}\n"
	    "  config: {collections: {source: billing, currency: \"£\"}}\n",
	    mdb.socket, plugdir);
	/* Zoë replies "Paid" once she has read the reminder; Dee "later". */
	world_init2(&W, NULL,
	            "      - {name: due_reminder, channel: whatsapp, language: en_GB,"
	            " body: \"Hi {{1}}, {{2}} is due on {{3}}. Reply PAID once paid.\"}\n"
	            "    units: [collections]\n",
	            NULL,
	            "    recipients:\n"
	            "      \"447400600001\": {reply: \"Paid\"}\n"
	            "      \"447400600004\": {reply: \"later\"}\n",
	            extra);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	int rc = mdbtest_stop(&mdb);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf %s", plugdir);
	if (system(cmd) != 0)
		rc = -1;
	return rc;
}

static json_t *get(const char *path)
{
	struct resp r = api_get(&W, path);
	if (r.status != 200)
		fail_msg("GET %s: %ld %s", path, r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

struct want {
	const char *id;
};

static bool done_and_read(struct world *w, void *arg)
{
	(void)w;
	struct want *x = arg;
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s", x->id);
	json_t *b = get(path);
	bool ok = !strcmp(json_string_value(json_object_get(b, "status")), "completed") &&
	          json_integer_value(json_object_get(json_object_get(b, "messages"), "read")) == 4;
	json_decref(b);
	return ok;
}

static bool zoe_paid(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	return mdb_one("SELECT COUNT(*) FROM billing.payments WHERE msisdn = '+447400600001' AND "
	               "paid = 1 AND paid_message IS NOT NULL") == 1;
}

static void test_collections_end_to_end(void **state)
{
	(void)state;
	struct resp r = api_post(
	    &W, "/v1/batches",
	    "{\"name\":\"December dues\",\"channel\":\"whatsapp\",\"unit\":\"collections\","
	    "\"template\":{\"name\":\"due_reminder\",\"language\":\"en_GB\"},"
	    "\"recipient_column\":\"msisdn\","
	    "\"params\":[\"customer\",\"due\",\"due_date\"],"
	    "\"source\":\"billing\",\"query\":\"due\","
	    "\"query_params\":[\"2026-12-31\"],\"start\":true}");
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	json_t *rows = json_object_get(r.json, "rows");
	assert_int_equal(json_integer_value(json_object_get(rows, "total")), 6);
	assert_int_equal(json_integer_value(json_object_get(rows, "valid")), 4);
	assert_int_equal(json_integer_value(json_object_get(rows, "invalid")), 2);
	/* The plugin's reasons, on the query's rows 3 and 4 (row 1: the names). */
	json_t *errs = json_object_get(r.json, "errors");
	assert_int_equal(json_array_size(errs), 2);
	char *ej = json_dumps(errs, JSON_COMPACT);
	assert_non_null(strstr(ej, "nothing is due"));
	assert_non_null(strstr(ej, "already paid"));
	free(ej);
	resp_free(&r);
	struct want w = {id};
	assert_true(wait_until(done_and_read, &W, &w, 120));
	/* The reminders' text is the plugin's (currency before the amount). */
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=100", id);
	json_t *ms = get(path);
	assert_int_equal(json_array_size(json_object_get(ms, "data")), 4);
	char *mj = json_dumps(ms, JSON_COMPACT);
	assert_non_null(strstr(mj, "Hi Zoë Adams, £300.25 is due on 2026-12-01."));
	assert_non_null(strstr(mj, "£42.00"));
	free(mj);
	json_decref(ms);
	/* Zoë's "Paid" reached MariaDB through the plugin; Dee's "later" did not. */
	assert_true(wait_until(zoe_paid, &W, NULL, 60));
	assert_int_equal(mdb_one("SELECT paid FROM billing.payments WHERE id = 4"), 0);
	assert_int_equal(mdb_one("SELECT COUNT(*) FROM billing.payments WHERE paid = 1"), 2);
	/* The export's extra columns. */
	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	const char *nl = strchr(r.body, '\n');
	assert_non_null(nl);
	char head[512];
	snprintf(head, sizeof head, "%.*s", (int)(nl - r.body), r.body);
	assert_non_null(strstr(head, "paid"));
	assert_non_null(strstr(head, "paid_at"));
	/* Every row of the campaign is exported (the skipped ones too): Zoë
	 * paid by her reply, Cy before; Bob (nothing due), Dee, Eve, Fay not. */
	long unpaid = 0;
	for (const char *p = r.body; (p = strstr(p, ",unpaid,")) != NULL; p += 8)
		unpaid++;
	if (unpaid != 4 || !strstr(r.body, "Zoë Adams,£300.25,2026-12-01,valid,") ||
	    !strstr(r.body, ",text,Paid,,") || !strstr(r.body, ",paid,2026-") ||
	    !strstr(r.body, "already paid,,,,,,,,,,,,,,paid,"))
		fail_msg("export: %ld unpaid:\n%s", unpaid, r.body);
	resp_free(&r);
	/* The unit's figures, from the plugin. */
	json_t *st = get("/v1/units/collections/stats");
	char *sj = json_dumps(st, JSON_COMPACT);
	assert_non_null(strstr(sj, "\"payments\":\"6\""));
	assert_non_null(strstr(sj, "\"paid\":\"2\""));
	free(sj);
	json_decref(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_collections_end_to_end),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
