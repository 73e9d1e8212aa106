/*
 * test_example_plugins.c - the example plugins (examples/plugins/collections
 * and statements), loaded as `herald serve` loads them (plugins_load: the
 * .so files CMake built, bound to units of tenant acme) with their data
 * sources on real servers this test starts: MariaDB for collections,
 * PostgreSQL for statements. Each hook is called through Herald's side of
 * the contract (plugins.h) and checked against the databases: reminders
 * prepared from the billing query's rows (and rows skipped with reasons),
 * "paid" replies written back to MariaDB, the export's paid/unpaid columns,
 * statements shaped for WhatsApp with the link for the SMS fallback, the
 * months listed, deliveries recorded in PostgreSQL, and both units' stats.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "dbtest.h"
#include "pgtest.h"
#include "plugins/datasource.h"
#include "plugins/plugins.h"
#include "store/store.h"

static struct pgtest pg;
static struct mdbtest mdb;
static char tmpdir[64];
static json_t *cfg;
static struct ds_registry *ds;
static struct plugins *plugs;
static struct store *st;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

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

/* Polls sql (one integer, on MariaDB or PostgreSQL) until it is want or
 * 10 s pass; returns the last value. */
static long wait_value(bool maria, const char *sql, long want)
{
	double until = now_ms() + 10000;
	long v;
	while ((v = maria ? mdb_one(sql) : pg_one(sql)) != want && now_ms() < until)
		sleep_ms(20);
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
	if (pgtest_start(&pg) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg.err);
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
	        "(4, '+447400600001', 'Zoë Adams', 5.00, '2026-11-01', 0),"
	        "(5, '+447400600005', 'Dee O''Neil', 42.00, '2026-12-05', 0);") != 0) {
		fprintf(stderr, "mariadb: %s\n", mdb.err);
		return -1;
	}
	pg_exec_ok("CREATE TABLE statements (id serial PRIMARY KEY, phone text, name text, "
	           "month text, url text, balance numeric(12,2), sent_whatsapp timestamptz, "
	           "sent_sms timestamptz);"
	           "INSERT INTO statements (phone, name, month, url, balance) VALUES "
	           "('+447400700001', 'Ana', '2026-10', 'https://files.example/s/1.pdf', 10),"
	           "('+447400700002', 'Ben', '2026-10', 'https://files.example/s/2.pdf', 20),"
	           "('+447400700001', 'Ana', '2026-11', 'https://files.example/s/3.pdf', 30),"
	           "('+447400700002', 'Ben', '2026-11', 'http://files.example/s/4.pdf', 40),"
	           "('+447400700003', 'Cat', '2026-11', NULL, 50);");
	snprintf(tmpdir, sizeof tmpdir, "/tmp/explug-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	/* The plugin directory holds exactly the two examples. */
	char plugdir[128], src[300], dst[300];
	snprintf(plugdir, sizeof plugdir, "%s/plugins", tmpdir);
	if (mkdir(plugdir, 0755) != 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		const char *n = i ? "statements" : "collections";
		snprintf(src, sizeof src, "%s/%s.so", built, n);
		snprintf(dst, sizeof dst, "%s/%s.so", plugdir, n);
		if (symlink(src, dst) != 0)
			return -1;
	}
	setenv("EXPLUG_BILLING_PW", "coll-pw", 1);
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
	         "tenants:\n  - id: acme\n    units: [collections, statements]\n"
	         "data_sources:\n"
	         "  - {name: billing, driver: mariadb, socket: \"%s\", database: billing,\n"
	         "     user: coll, password: \"env:EXPLUG_BILLING_PW\", pool_size: 2}\n"
	         "  - {name: statements, driver: postgres, socket: \"%s\", port: %d,\n"
	         "     database: herald, user: herald, pool_size: 2}\n"
	         "plugins:\n  dir: %s\n  workers: 1\n  hook_timeout_ms: 5000\n"
	         "  units: {acme/collections: collections, acme/statements: statements}\n"
	         "  config: {collections: {source: billing, currency: \"£\"},"
	         " statements: {source: statements, link_prefix: \"https://files.example/\"}}\n",
	         mdb.socket, pg.dir, pg.port, plugdir);
	struct hr_err err = {0};
	cfg = hr_config_parse(yaml, strlen(yaml), &err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err.msg);
		return -1;
	}
	char derr[512];
	if (ds_registry_open((const struct config *)cfg, &ds, derr, sizeof derr) != 0) {
		fprintf(stderr, "data sources: %s\n", derr);
		return -1;
	}
	if (plugins_load(cfg, ds, &plugs, &err) != 0) {
		fprintf(stderr, "plugins: %s\n", err.msg);
		return -1;
	}
	char db[128];
	snprintf(db, sizeof db, "%s/herald.db", tmpdir);
	struct store_opts so = {0};
	if (store_backend("sqlite")->open(db, &so, &st, &err) != 0) {
		fprintf(stderr, "store: %s\n", err.msg);
		return -1;
	}
	plugins_set_store(plugs, st);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	plugins_free(plugs);
	if (st)
		st->ops->close(st);
	ds_registry_close(ds);
	json_decref(cfg);
	int rc = pgtest_stop(&pg);
	if (mdbtest_stop(&mdb) != 0)
		rc = -1;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (tmpdir[0] && system(cmd) != 0)
		rc = -1;
	return rc;
}

/* ---- prepare over a query's rows ---- */

struct prep {
	const struct plugin *pl;
	const char *unit;
	int n;
	enum plugin_outcome out[8];
	struct plugin_draft d[8];
	char why[8][300];
};

static int prep_row(void *ctx, int ncols, const char *const *names, const char *const *values)
{
	struct prep *p = ctx;
	if (p->n >= 8)
		return 1;
	int i = p->n++;
	/* As a campaign hands it over: the mapping's values for a template of
	 * three parameters (here empty), which prepare replaces. */
	p->d[i].nparams = 3;
	for (int k = 0; k < 3; k++)
		p->d[i].params[k] = strdup("");
	p->out[i] = plugins_prepare(plugs, p->pl, "acme", p->unit, names, values, (size_t)ncols,
	                            &p->d[i], p->why[i], sizeof p->why[i]);
	return 0;
}

static void prep_free(struct prep *p)
{
	for (int i = 0; i < p->n; i++)
		plugin_draft_clear(&p->d[i]);
}

static void test_collections_prepare(void **state)
{
	(void)state;
	const struct plugin *pl = plugins_for_unit(plugs, "acme", "collections");
	assert_non_null(pl);
	assert_string_equal(plugin_name(pl), "collections");
	struct prep p = {.pl = pl, .unit = "collections"};
#define PFX "plugin collections: "
	char err[512];
	assert_int_equal(ds_query(ds, "billing",
	                          "SELECT msisdn, customer, due, due_date, paid FROM payments "
	                          "WHERE due_date <= ?1 ORDER BY id",
	                          (const char *[]){"2026-12-31"}, 1, 0, prep_row, &p, err,
	                          sizeof err),
	                 0);
	assert_int_equal(p.n, 5);
	for (int i = 0; i < 5; i++)
		if (p.out[i] != PO_OK)
			fail_msg("row %d: %s", i + 1, p.why[i]);
	assert_false(p.d[0].skip);
	assert_string_equal(p.d[0].recipient, "+447400600001");
	assert_int_equal(p.d[0].nparams, 3);
	assert_string_equal(p.d[0].params[0], "Zoë Adams");
	assert_string_equal(p.d[0].params[1], "£300.25");
	assert_string_equal(p.d[0].params[2], "2026-12-01");
	assert_true(p.d[1].skip);
	assert_string_equal(p.d[1].skip_reason, PFX "nothing is due");
	assert_true(p.d[2].skip);
	assert_string_equal(p.d[2].skip_reason, PFX "already paid");
	assert_false(p.d[3].skip);
	assert_string_equal(p.d[3].params[1], "£5.00");
	assert_false(p.d[4].skip);
	assert_string_equal(p.d[4].params[0], "Dee O'Neil");
	prep_free(&p);
#undef PFX
	/* A row without the columns the unit needs: the hook's own error,
	 * named with the plugin and hook. */
	struct plugin_draft d = {0};
	char why[300];
	const char *names[] = {"phone"}, *vals[] = {"+447400600001"};
	assert_int_equal(
	    plugins_prepare(plugs, pl, "acme", "collections", names, vals, 1, &d, why, sizeof why),
	    PO_ERROR);
	assert_non_null(strstr(why, "plugin collections"));
	assert_non_null(strstr(why, "needs msisdn, customer, due and due_date"));
	plugin_draft_clear(&d);
}

/* A stored message of tenant acme's unit, as the applier would find it. */
static void put_message(const char *unit, const char *channel, const char *to,
                        char id[HR_ID_LEN + 1])
{
	struct message m;
	memset(&m, 0, sizeof m);
	hr_id_new(m.id);
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.account_id, "acme-wa", sizeof m.account_id);
	hr_strlcpy(m.channel, channel, sizeof m.channel);
	hr_strlcpy(m.recipient, to, sizeof m.recipient);
	hr_strlcpy(m.unit, unit, sizeof m.unit);
	m.content = (char *)"{\"type\":\"text\",\"text\":{\"body\":\"hello\"}}";
	m.body = (char *)"hello";
	m.priority = 1;
	m.max_attempts = 5;
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	memcpy(id, m.id, HR_ID_LEN + 1);
}

static void export_of(const char *to, json_t **out)
{
	const struct plugin *pl = plugins_for_unit(plugs, "acme", "collections");
	struct message m = {0};
	hr_strlcpy(m.tenant_id, "acme", sizeof m.tenant_id);
	hr_strlcpy(m.unit, "collections", sizeof m.unit);
	hr_strlcpy(m.recipient, to, sizeof m.recipient);
	char why[300];
	if (plugins_export_row(plugs, pl, &m, out, why, sizeof why) != PO_OK)
		fail_msg("export_row: %s", why);
}

static void test_collections_paid_reply_and_export(void **state)
{
	(void)state;
	const struct plugin *pl = plugins_for_unit(plugs, "acme", "collections");
	const char *const *cols = plugin_export_columns(pl);
	assert_string_equal(cols[0], "paid");
	assert_string_equal(cols[1], "paid_at");
	assert_null(cols[2]);
	json_t *x = NULL;
	export_of("+447400600001", &x);
	assert_string_equal(json_string_value(json_object_get(x, "paid")), "unpaid");
	assert_string_equal(json_string_value(json_object_get(x, "paid_at")), "");
	json_decref(x);
	export_of("+447400600003", &x);
	assert_string_equal(json_string_value(json_object_get(x, "paid")), "paid");
	json_decref(x);
	export_of("+447400600099", &x); /* not in the table: empty columns */
	assert_int_equal(json_object_size(x), 0);
	json_decref(x);

	char m1[HR_ID_LEN + 1], m2[HR_ID_LEN + 1], m5[HR_ID_LEN + 1];
	put_message("collections", "whatsapp", "+447400600001", m1);
	put_message("collections", "whatsapp", "+447400600002", m2);
	put_message("collections", "whatsapp", "+447400600005", m5);
	/* One worker: events run in order. "thanks" changes nothing; " PAID "
	 * marks both of customer 1's unpaid payments, with the message's id. */
	plugins_reply_event(plugs, m2, "acme", "thanks!", NULL);
	plugins_reply_event(plugs, m1, "acme", " PAID \n", NULL);
	char sql[256];
	snprintf(
	    sql, sizeof sql,
	    "SELECT COUNT(*) FROM billing.payments WHERE msisdn = '+447400600001' AND paid = 1 "
	    "AND paid_message = '%s' AND paid_at IS NOT NULL",
	    m1);
	assert_int_equal(wait_value(true, sql, 2), 2);
	assert_int_equal(mdb_one("SELECT COUNT(*) FROM billing.payments WHERE paid = 1"), 3);
	/* A button press with the payload "paid" does the same. */
	plugins_reply_event(plugs, m5, "acme", "Paid it", "paid");
	assert_int_equal(
	    wait_value(true, "SELECT paid FROM billing.payments WHERE msisdn = '+447400600005'", 1),
	    1);
	assert_int_equal(mdb_one("SELECT COUNT(*) FROM billing.payments WHERE paid = 1"), 4);
	assert_int_equal(mdb_one("SELECT paid FROM billing.payments WHERE id = 2"), 0);
	/* A reply to another unit's message never reaches collections. */
	char s1[HR_ID_LEN + 1];
	put_message("statements", "whatsapp", "+447400600002", s1);
	plugins_reply_event(plugs, s1, "acme", "paid", NULL);
	plugins_reply_event(plugs, m2, "acme", "no", NULL); /* runs after the one above */
	double until = now_ms() + 2000;
	while (plugins_queue_len(plugs) > 0 && now_ms() < until)
		sleep_ms(10);
	sleep_ms(50);
	assert_int_equal(mdb_one("SELECT paid FROM billing.payments WHERE id = 2"), 0);

	export_of("+447400600001", &x);
	assert_string_equal(json_string_value(json_object_get(x, "paid")), "paid");
	assert_int_equal(strlen(json_string_value(json_object_get(x, "paid_at"))), 19);
	json_decref(x);

	json_t *stats = NULL;
	char why[300];
	assert_int_equal(plugins_stats(plugs, pl, "acme", "collections", &stats, why, sizeof why),
	                 PO_OK);
	assert_string_equal(json_string_value(json_object_get(stats, "payments")), "5");
	assert_string_equal(json_string_value(json_object_get(stats, "paid")), "4");
	assert_string_equal(json_string_value(json_object_get(stats, "unpaid")), "1");
	assert_string_equal(json_string_value(json_object_get(stats, "outstanding")), "0.00");
	json_decref(stats);
}

static void test_statements(void **state)
{
	(void)state;
	const struct plugin *pl = plugins_for_unit(plugs, "acme", "statements");
	assert_non_null(pl);
	struct prep p = {.pl = pl, .unit = "statements"};
#define PFX "plugin statements: "
	char err[512];
	assert_int_equal(ds_query(ds, "statements",
	                          "SELECT phone, name, month, url FROM statements WHERE month = ?1 "
	                          "ORDER BY id",
	                          (const char *[]){"2026-11"}, 1, 0, prep_row, &p, err, sizeof err),
	                 0);
	assert_int_equal(p.n, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(p.out[i], PO_OK);
	assert_false(p.d[0].skip);
	assert_string_equal(p.d[0].recipient, "+447400700001");
	assert_int_equal(p.d[0].nparams, 3);
	assert_string_equal(p.d[0].params[0], "Ana");
	assert_string_equal(p.d[0].params[1], "2026-11");
	assert_string_equal(p.d[0].params[2], "https://files.example/s/3.pdf");
	assert_true(p.d[1].skip);
	assert_string_equal(p.d[1].skip_reason,
	                    PFX "the statement link is not under the configured prefix");
	assert_true(p.d[2].skip);
	assert_string_equal(p.d[2].skip_reason, PFX "the statement has no link yet");
	prep_free(&p);
#undef PFX

	json_t *out = NULL, *f = json_object();
	char why[300];
	assert_int_equal(plugins_list(plugs, pl, "acme", "statements", f, &out, why, sizeof why),
	                 PO_OK);
	assert_int_equal(json_array_size(out), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "month")),
	                    "2026-11");
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(out, 0), "statements")), "3");
	assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "month")),
	                    "2026-10");
	json_decref(out);
	json_object_set_new(f, "limit", json_string("1"));
	assert_int_equal(plugins_list(plugs, pl, "acme", "statements", f, &out, why, sizeof why),
	                 PO_OK);
	assert_int_equal(json_array_size(out), 1);
	json_decref(out);
	json_object_set_new(f, "limit", json_string("1; DROP TABLE statements"));
	assert_int_equal(plugins_list(plugs, pl, "acme", "statements", f, &out, why, sizeof why),
	                 PO_ERROR);
	assert_non_null(strstr(why, "limit must be a number"));
	json_decref(f);

	/* Delivered on WhatsApp, then (another statement) by the SMS fallback:
	 * each recorded once in the table. */
	char w[HR_ID_LEN + 1], s[HR_ID_LEN + 1];
	put_message("statements", "whatsapp", "+447400700001", w);
	put_message("statements", "sms", "+447400700002", s);
	plugins_status_event(plugs, w, "acme", MSG_SENT, MSG_DELIVERED);
	plugins_status_event(plugs, s, "acme", MSG_SENT, MSG_DELIVERED);
	assert_int_equal(
	    wait_value(false, "SELECT COUNT(*) FROM statements WHERE sent_sms IS NOT NULL", 2), 2);
	assert_int_equal(pg_one("SELECT COUNT(*) FROM statements WHERE sent_whatsapp IS NOT NULL"),
	                 2);
	assert_int_equal(pg_one("SELECT COUNT(*) FROM statements WHERE phone = '+447400700001' AND "
	                        "sent_sms IS NOT NULL"),
	                 0);
	json_t *stats = NULL;
	assert_int_equal(plugins_stats(plugs, pl, "acme", "statements", &stats, why, sizeof why),
	                 PO_OK);
	assert_string_equal(json_string_value(json_object_get(stats, "statements")), "5");
	assert_string_equal(json_string_value(json_object_get(stats, "months")), "2");
	assert_string_equal(json_string_value(json_object_get(stats, "by_whatsapp")), "2");
	assert_string_equal(json_string_value(json_object_get(stats, "by_sms")), "2");
	json_decref(stats);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_collections_prepare),
	    cmocka_unit_test(test_collections_paid_reply_and_export),
	    cmocka_unit_test(test_statements),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
