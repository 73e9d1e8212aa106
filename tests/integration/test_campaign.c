/*
 * test_campaign.c - campaigns (POST /v1/batches) against real `herald serve`
 * and `herald sim` processes: a 10,000-row campaign reaches final states
 * with exact counters that equal a recount of its messages and every
 * recipient reached once; the validation report (dry run creates nothing;
 * a batch with errors waits for its start and sends only valid rows);
 * cancel stops exactly what was not sent; tenants see only their own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "herald.h"

static struct world W;

/* Recipients the simulator fails permanently (131026). */
#define FAIL_A "447400100007"
#define FAIL_B "447400100013"

static int setup(void **state)
{
	(void)state;
	/* A small window (the default is 50,000), so that the 10,000-row
	 * campaign is made as it is sent, and test_make_ahead can see it. */
	harness_server_extra("batches:\n  make_ahead: 1000\n");
	world_init(&W, "    fail_recipients: [\"" FAIL_A "\", \"" FAIL_B "\"]\n    webhook_batch: 20\n", NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

static const char *bstatus(json_t *b)
{
	return json_string_value(json_object_get(b, "status"));
}

struct want_status {
	const char *id, *status;
};

static bool batch_is(struct world *w, void *arg)
{
	(void)w;
	struct want_status *ws = arg;
	json_t *b = world_batch(&W, ws->id);
	bool ok = strcmp(bstatus(b), ws->status) == 0;
	json_decref(b);
	return ok;
}

struct want_read {
	const char *id;
	long read;
};

static bool read_count_is(struct world *w, void *arg)
{
	(void)w;
	struct want_read *wr = arg;
	json_t *b = world_batch(&W, wr->id);
	bool ok = batch_messages(b, "read") == wr->read;
	json_decref(b);
	return ok;
}

/* Every message of the batch through the API, counted by status. */
static void recount(const char *id, long counts[16], long *total)
{
	static const char *const names[] = {"queued", "sending", "sent", "delivered",
	                                    "read", "failed", "undelivered", "cancelled",
	                                    "expired", "suppressed", "unknown"};
	memset(counts, 0, 16 * sizeof *counts);
	*total = 0;
	char cursor[64] = "";
	for (;;) {
		char path[256];
		snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=1000%s%s", id,
		         cursor[0] ? "&cursor=" : "", cursor);
		struct resp r = api_get(&W, path);
		assert_int_equal(r.status, 200);
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(r.json, "data"), i, m) {
			const char *s = json_string_value(json_object_get(m, "status"));
			for (int k = 0; k < 11; k++)
				if (!strcmp(s, names[k]))
					counts[k]++;
			(*total)++;
		}
		json_t *next = json_object_get(r.json, "next_cursor");
		bool more = json_is_string(next);
		if (more)
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		resp_free(&r);
		if (!more)
			break;
	}
}

static void assert_counters_equal_recount(const char *id)
{
	static const char *const names[] = {"queued", "sending", "sent", "delivered",
	                                    "read", "failed", "undelivered", "cancelled",
	                                    "expired", "suppressed", "unknown"};
	long counts[16], total;
	recount(id, counts, &total);
	json_t *b = world_batch(&W, id);
	long sum = 0;
	bool same = true;
	for (int k = 0; k < 11; k++) {
		same &= batch_messages(b, names[k]) == counts[k];
		sum += counts[k];
	}
	if (!same) {
		for (int k = 0; k < 11; k++)
			print_error("  %-11s kept %6ld recounted %6ld\n", names[k],
			            batch_messages(b, names[k]), counts[k]);
		fail_msg("batch %s: the kept counters differ from a recount", id);
	}
	assert_int_equal(sum, total);
	json_decref(b);
}

static json_t *sim_stats(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static long sim_int(json_t *s, const char *key)
{
	json_t *v = json_object_get(s, key);
	if (!v) /* per channel */
		v = json_object_get(json_object_get(s, "whatsapp"), key);
	return (long)json_integer_value(v);
}

/* herald_resends_after_unknown_total summed over its labels: the sends
 * Herald made again because it could not know whether the provider got the
 * first (at_least_once), each marked a possible duplicate. */
static long resends_after_unknown(void)
{
	struct resp r = metrics_get(&W);
	assert_int_equal(r.status, 200);
	long sum = 0;
	static const char name[] = "herald_resends_after_unknown_total{";
	for (const char *p = r.body; (p = strstr(p, name)) != NULL;) {
		p = strchr(p, '}');
		assert_non_null(p);
		sum += strtol(p + 1, NULL, 10);
	}
	resp_free(&r);
	return sum;
}

static struct resp post_json(const char *path, json_t *req)
{
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(&W, path, js);
	free(js);
	json_decref(req);
	return r;
}

/*
 * 10,000 rows with national numbers (default region GB), 3 of them
 * invalid and 5 repeating an earlier recipient; two recipients fail at the
 * provider. Started with start=true (the invalid rows are left out). The
 * batch completes by itself; counters equal a recount; the provider got
 * each valid recipient exactly once.
 */
static void test_ten_thousand_rows(void **state)
{
	(void)state;
	json_t *sim0 = sim_stats();
	long unique0 = sim_int(sim0, "unique_messages");
	long dups0 = sim_int(sim0, "duplicates");
	json_decref(sim0);
	long resends0 = resends_after_unknown();
	json_t *rows = json_array();
	for (int i = 1; i <= 10000; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "07400 1%05d", i);
		if (i == 17 || i == 4242 || i == 9999)
			snprintf(phone, sizeof phone, i == 4242 ? "not a number" : "12%d", i);
		if (i % 2000 == 0) /* rows 2000, 4000, ... repeat row 1's recipient */
			snprintf(phone, sizeof phone, "+44 7400 100001");
		char amount[16];
		snprintf(amount, sizeof amount, "£%d.00", i % 97);
		json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "phone", phone, "name",
		                                      "Ana", "amount", amount));
	}
	json_t *req = json_pack("{s:s, s:s, s:{s:s, s:s}, s:[s, s], s:s, s:b, s:o}", "name",
	                        "December reminders", "channel", "whatsapp", "template", "name",
	                        "payment_reminder", "language", "en_GB", "params", "name",
	                        "amount", "default_region", "GB", "start", 1, "rows", rows);
	struct resp r = post_json("/v1/batches", req);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_int_equal(batch_rows(r.json, "total"), 10000);
	assert_int_equal(batch_rows(r.json, "invalid"), 3);
	assert_int_equal(batch_rows(r.json, "duplicates"), 5);
	assert_int_equal(batch_rows(r.json, "valid"), 9992);
	json_t *errs = json_object_get(r.json, "errors");
	assert_int_equal(json_array_size(errs), 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(errs, 0), "row")), 17);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(errs, 0), "column")), "phone");
	resp_free(&r);

	struct want_status done = {id, "completed"};
	if (!wait_until(batch_is, &W, &done, 240)) {
		json_t *b = world_batch(&W, id);
		char *d = json_dumps(b, JSON_INDENT(1));
		fail_msg("batch did not complete: %s", d);
	}
	/* Completed once every message was delivered (or failed); the READ
	 * receipts the simulator sends later still move the counters. */
	struct want_read all_read = {id, 9990};
	assert_true(wait_until(read_count_is, &W, &all_read, 120));
	json_t *b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "failed"), 2);
	assert_int_equal(batch_messages(b, "read"), 9990);
	assert_int_equal(batch_messages(b, "queued") + batch_messages(b, "sending") +
	                     batch_messages(b, "sent"),
	                 0);
	assert_true(json_is_string(json_object_get(json_object_get(b, "times"), "completed_at")));
	json_decref(b);
	assert_counters_equal_recount(id);
	json_t *sim = sim_stats();
	/* The two failures were refused: no provider message for them. */
	assert_int_equal(sim_int(sim, "unique_messages") - unique0, 9990);
	/* Each valid recipient once, except where Herald could not know whether
	 * the provider got a send (a timeout or reset on a loaded machine) and,
	 * the policy being at_least_once, sent it again: every such duplicate is
	 * one Herald counted and marked, none is silent. (Not ==: a resend is
	 * counted when the first send's fate is unknown, and the provider may
	 * never have got that one.) */
	long dups = sim_int(sim, "duplicates") - dups0;
	long resends = resends_after_unknown() - resends0;
	if (dups)
		print_message("provider saw %ld duplicates; Herald resent %ld after an unknown outcome\n",
		              dups, resends);
	assert_true(dups <= resends);
	json_decref(sim);

	/* Resend the failed only: a new batch of exactly those two rows, linked
	 * both ways; they fail again (the simulator refuses them). */
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/retry", id);
	r = api_post(&W, path, "{\"statuses\":[\"failed\"]}");
	if (r.status != 201)
		fail_msg("retry answered %ld: %s", r.status, r.body);
	char rid[64];
	snprintf(rid, sizeof rid, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_string_equal(json_string_value(json_object_get(r.json, "retry_of")), id);
	assert_int_equal(batch_rows(r.json, "total"), 2);
	assert_int_equal(batch_rows(r.json, "valid"), 2);
	resp_free(&r);
	struct want_status rdone = {rid, "completed"};
	assert_true(wait_until(batch_is, &W, &rdone, 60));
	b = world_batch(&W, rid);
	assert_int_equal(batch_messages(b, "failed"), 2);
	json_decref(b);
	assert_counters_equal_recount(rid);
	b = world_batch(&W, id);
	json_t *retries = json_object_get(b, "retries");
	assert_int_equal(json_array_size(retries), 1);
	assert_string_equal(json_string_value(json_array_get(retries, 0)), rid);
	json_decref(b);
	/* Nothing read has failed: a retry of read-only statuses finds none. */
	r = api_post(&W, path, "{\"statuses\":[\"undelivered\"]}");
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

/*
 * Messages are made ahead of the sending, a window at a time: 3,000 rows
 * scheduled for tomorrow (nothing is due) make exactly the window's 1,000
 * messages and no more; a cancel stops all 3,000 (the 2,000 rows never
 * made too), cancels the 1,000, and nothing is sent.
 */
static void test_make_ahead(void **state)
{
	(void)state;
	json_t *sim0 = sim_stats();
	long unique0 = sim_int(sim0, "unique_messages");
	json_decref(sim0);
	json_t *rows = json_array();
	for (int i = 1; i <= 3000; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474005%05d", i);
		json_array_append_new(rows, json_pack("{s:s, s:s}", "to", phone, "1", "hi"));
	}
	char when[40];
	hr_time_format(hr_now_us() + 24LL * 3600 * 1000000, when);
	json_t *req =
	    json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", "window", "channel", "whatsapp", "text",
	              "Hello {{1}}", "schedule_at", when, "rows", rows);
	struct resp r = post_json("/v1/batches", req);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	int64_t deadline = hr_mono_us() + 20000000;
	json_t *b = NULL;
	for (;;) {
		b = world_batch(&W, id);
		if (batch_messages(b, "queued") >= 1000 || hr_mono_us() >= deadline)
			break;
		json_decref(b);
		usleep(20000);
	}
	assert_int_equal(batch_messages(b, "queued"), 1000);
	json_decref(b);
	/* And it stays there: the runner looks again every 100 ms, so 1.5 s
	 * is fifteen chances to make more. */
	deadline = hr_mono_us() + 1500000;
	while (hr_mono_us() < deadline) {
		b = world_batch(&W, id);
		assert_int_equal(batch_messages(b, "queued"), 1000);
		json_t *prog = json_object_get(b, "progress");
		assert_int_equal(json_integer_value(json_object_get(prog, "made")), 1000);
		assert_false(
		    json_is_true(json_object_get(json_object_get(b, "times"), "ingested")));
		json_decref(b);
		usleep(100000);
	}
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", id);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "stopped")), 3000);
	resp_free(&r);
	deadline = hr_mono_us() + 20000000;
	for (;;) {
		b = world_batch(&W, id);
		if (batch_messages(b, "cancelled") >= 1000 || hr_mono_us() >= deadline)
			break;
		json_decref(b);
		usleep(20000);
	}
	assert_int_equal(batch_messages(b, "cancelled"), 1000);
	assert_int_equal(batch_messages(b, "queued"), 0);
	assert_string_equal(bstatus(b), "cancelled");
	json_decref(b);
	assert_counters_equal_recount(id);
	json_t *sim = sim_stats();
	assert_int_equal(sim_int(sim, "unique_messages"), unique0);
	json_decref(sim);
}

/* Uploads a two-row campaign (start=false), scheduled at `when` or not. */
static void upload_pair(struct world *w, const char *when, char *id, size_t idsz)
{
	json_t *req = json_pack("{s:s, s:s, s:s, s:b, s:[{s:s, s:s}, {s:s, s:s}]}", "name", "many",
	                        "channel", "whatsapp", "text", "Hello {{1}}", "start", 0, "rows",
	                        "to", "+447400600001", "1", "a", "to", "+447400600002", "1", "b");
	if (when)
		json_object_set_new(req, "schedule_at", json_string(when));
	char *js = json_dumps(req, JSON_COMPACT);
	struct resp r = api_post(w, "/v1/batches", js);
	free(js);
	json_decref(req);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	snprintf(id, idsz, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
}

static void start_batch(struct world *w, const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	struct resp r = api_post(w, path, "");
	if (r.status != 200)
		fail_msg("start %s answered %ld: %s", id, r.status, r.body);
	resp_free(&r);
}

/*
 * More campaigns waiting on their windows than the runner reads in one page
 * (100, newest first): with a window of one message, 110 two-row campaigns
 * scheduled for tomorrow each hold one message and wait for ever; 5 older
 * campaigns, started after them, still get made and complete.
 */
static void test_make_ahead_many(void **state)
{
	(void)state;
	struct world w2;
	harness_server_extra("batches:\n  make_ahead: 1\n");
	world_init(&w2, NULL, NULL);
	harness_server_extra(NULL);
	world_start_sim(&w2);
	world_start_serve(&w2);
	enum { OLD = 5, WAITING = 110 };
	static char old[OLD][64], waiting[WAITING][64];
	for (int b = 0; b < OLD; b++)
		upload_pair(&w2, NULL, old[b], sizeof old[b]);
	char when[40];
	hr_time_format(hr_now_us() + 24LL * 3600 * 1000000, when);
	for (int b = 0; b < WAITING; b++) {
		upload_pair(&w2, when, waiting[b], sizeof waiting[b]);
		start_batch(&w2, waiting[b]);
	}
	/* The waiting ones hold their one message each (the runner has seen
	 * them all) before the old ones start. */
	int64_t deadline = hr_mono_us() + 30000000;
	for (int b = 0; b < WAITING; b++) {
		char path[128];
		snprintf(path, sizeof path, "/v1/batches/%s", waiting[b]);
		long queued = 0;
		for (;;) {
			struct resp r = api_get(&w2, path);
			assert_int_equal(r.status, 200);
			queued = batch_messages(r.json, "queued");
			resp_free(&r);
			if (queued >= 1 || hr_mono_us() >= deadline)
				break;
			usleep(20000);
		}
		assert_int_equal(queued, 1);
	}
	for (int b = 0; b < OLD; b++)
		start_batch(&w2, old[b]);
	deadline = hr_mono_us() + 30000000;
	for (int b = 0; b < OLD; b++) {
		char path[128];
		snprintf(path, sizeof path, "/v1/batches/%s", old[b]);
		json_t *j = NULL;
		for (;;) {
			struct resp r = api_get(&w2, path);
			assert_int_equal(r.status, 200);
			json_decref(j);
			j = json_incref(r.json);
			resp_free(&r);
			if (!strcmp(bstatus(j), "completed") || hr_mono_us() >= deadline)
				break;
			usleep(20000);
		}
		if (strcmp(bstatus(j), "completed") != 0)
			fail_msg("old campaign %d (%s) is %s with %ld made", b + 1, old[b],
			         bstatus(j),
			         (long)json_integer_value(
			             json_object_get(json_object_get(j, "progress"), "made")));
		assert_int_equal(batch_messages(j, "delivered") + batch_messages(j, "read"), 2);
		json_decref(j);
	}
	world_free(&w2);
}

/* The report: a dry run creates nothing; a batch with errors waits; the
 * report lists each bad row with its column and reason, as JSON and CSV;
 * the start sends only the valid rows. */
static void test_validation_report(void **state)
{
	(void)state;
	struct resp r = api_post(&W, "/v1/suppressions",
	                         "{\"channel\":\"whatsapp\",\"to\":\"+447400200003\"}");
	assert_int_equal(r.status, 201);
	resp_free(&r);
	char longp[1100];
	memset(longp, 'x', sizeof longp - 1);
	longp[sizeof longp - 1] = 0;
	const char *phones[6] = {"07400 200001", "", "07400 200003", "+44 7400 200004",
	                         "0740020000", "07400 200001"};
	json_t *rows = json_array();
	for (int i = 0; i < 6; i++)
		json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "Phone", phones[i], "1",
		                                      "Bo", "2", i == 3 ? longp : "£5"));
	json_t *req = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:b, s:O}", "name", "report",
	                        "channel", "whatsapp", "template", "name", "payment_reminder",
	                        "language", "en_GB", "default_region", "GB", "dry_run", 1,
	                        "rows", rows);
	r = post_json("/v1/batches", req);
	if (r.status != 200)
		fail_msg("dry run answered %ld: %s", r.status, r.body);
	assert_true(json_is_true(json_object_get(r.json, "dry_run")));
	assert_int_equal(batch_rows(r.json, "total"), 6);
	if (batch_rows(r.json, "invalid") != 4)
		fail_msg("dry run: %s", r.body);
	assert_int_equal(batch_rows(r.json, "duplicates"), 1);
	assert_int_equal(batch_rows(r.json, "valid"), 1);
	static const struct {
		int row;
		const char *column, *reason;
	} want[4] = {{2, "Phone", "the recipient is empty"},
	             {3, "Phone", "the recipient opted out (suppressed)"},
	             {4, "2", "longer than 1024 bytes"},
	             {5, "Phone", NULL}};
	json_t *errs = json_object_get(r.json, "errors");
	assert_int_equal(json_array_size(errs), 4);
	for (int i = 0; i < 4; i++) {
		json_t *e = json_array_get(errs, (size_t)i);
		assert_int_equal(json_integer_value(json_object_get(e, "row")), want[i].row);
		assert_string_equal(json_string_value(json_object_get(e, "column")), want[i].column);
		if (want[i].reason)
			assert_string_equal(json_string_value(json_object_get(e, "reason")),
			                    want[i].reason);
		else
			assert_true(json_string_length(json_object_get(e, "reason")) > 0);
	}
	resp_free(&r);
	r = api_get(&W, "/v1/batches?name=report");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);

	/* For real: errors, so it waits VALIDATED. */
	req = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:o}", "name", "report", "channel",
	                "whatsapp", "template", "name", "payment_reminder", "language", "en_GB",
	                "default_region", "GB", "rows", rows);
	r = post_json("/v1/batches", req);
	assert_int_equal(r.status, 201);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	assert_string_equal(bstatus(r.json), "validated");
	resp_free(&r);
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/errors?limit=2", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
	assert_int_equal(json_integer_value(json_object_get(r.json, "next_after")), 3);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/errors?format=csv", id);
	r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "row,column,recipient,reason\r\n2,\"Phone\",\"\","
	                               "\"the recipient is empty\"\r\n"));
	resp_free(&r);
	/* Nothing was sent before the start. */
	snprintf(path, sizeof path, "/v1/batches/%s/messages", id);
	r = api_get(&W, path);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 200);
	resp_free(&r);
	struct want_status done = {id, "completed"};
	assert_true(wait_until(batch_is, &W, &done, 60));
	struct want_read one_read = {id, 1};
	assert_true(wait_until(read_count_is, &W, &one_read, 60));
	json_t *b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "read"), 1);
	json_decref(b);
	assert_counters_equal_recount(id);
	/* Another tenant can neither see nor touch any of it: every route of
	 * the batch answers 404, and nothing changes. */
	static const struct {
		const char *method, *tail, *body;
	} other[] = {{"GET", "", NULL},           {"GET", "/errors", NULL},
	             {"GET", "/messages", NULL},  {"GET", "/events", NULL},
	             {"GET", "/export.csv", NULL}, {"POST", "/start", ""},
	             {"POST", "/cancel", ""},     {"POST", "/retry", "{}"},
	             {"DELETE", "", NULL}};
	for (size_t k = 0; k < sizeof other / sizeof *other; k++) {
		snprintf(path, sizeof path, "%s/v1/batches/%s%s", W.api, id, other[k].tail);
		r = http(other[k].method, path, "hk_other_0123456789abcdef", other[k].body, NULL);
		if (r.status != 404)
			fail_msg("%s %s as another tenant answered %ld", other[k].method, other[k].tail,
			         r.status);
		resp_free(&r);
	}
	/* Nor use this tenant's account for a batch of its own. */
	snprintf(path, sizeof path, "%s/v1/batches", W.api);
	r = http("POST", path, "hk_other_0123456789abcdef",
	         "{\"name\":\"x\",\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"text\":\"x\","
	         "\"rows\":[{\"to\":\"+447400100001\"}]}",
	         NULL);
	assert_int_equal(r.status, 422);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "error"), "field")),
	                    "account");
	resp_free(&r);
	b = world_batch(&W, id);
	assert_string_equal(bstatus(b), "completed");
	json_decref(b);
	/* A started batch cannot start again. */
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

/* Cancel: scheduled for tomorrow, so nothing is due; the cancel answers how
 * many it stopped, and every one of them ends cancelled, none sent. */
static void test_cancel_scheduled(void **state)
{
	(void)state;
	json_t *sim0 = sim_stats();
	long unique0 = sim_int(sim0, "unique_messages");
	json_decref(sim0);
	json_t *rows = json_array();
	for (int i = 1; i <= 300; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474003%05d", i);
		json_array_append_new(rows, json_pack("{s:s, s:s}", "to", phone, "1", "hi"));
	}
	char when[40];
	hr_time_format(hr_now_us() + 24LL * 3600 * 1000000, when);
	json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", "tomorrow", "channel",
	                        "whatsapp", "text", "Hello {{1}}", "schedule_at", when, "rows",
	                        rows);
	struct resp r = post_json("/v1/batches", req);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	/* All 300 made (queued, not due). */
	for (int k = 0; k < 400; k++) {
		json_t *b = world_batch(&W, id);
		bool in = batch_messages(b, "queued") == 300;
		json_decref(b);
		if (in)
			break;
		usleep(50000);
	}
	json_t *b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "queued"), 300);
	json_decref(b);
	char path[160];
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", id);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "stopped")), 300);
	assert_string_equal(bstatus(r.json), "cancelled");
	resp_free(&r);
	for (int k = 0; k < 400; k++) {
		b = world_batch(&W, id);
		bool all = batch_messages(b, "cancelled") == 300;
		json_decref(b);
		if (all)
			break;
		usleep(50000);
	}
	b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "cancelled"), 300);
	assert_int_equal(batch_messages(b, "queued"), 0);
	json_decref(b);
	assert_counters_equal_recount(id);
	json_t *sim = sim_stats();
	assert_int_equal(sim_int(sim, "unique_messages"), unique0);
	json_decref(sim);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 422); /* cancelled is final */
	resp_free(&r);
}

/* Clear errors naming the field or column, nothing created. */
static void test_bad_uploads(void **state)
{
	(void)state;
	static const struct {
		const char *body, *field;
		long status;
	} cases[] = {
	    {"{\"channel\":\"whatsapp\",\"text\":\"x\",\"rows\":[{\"to\":\"+447400100001\"}]}",
	     "name", 422},
	    {"{\"name\":\"a\",\"channel\":\"fax\",\"text\":\"x\",\"rows\":[{\"to\":\"1\"}]}",
	     "channel", 422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"rows\":[{\"to\":\"1\"}]}", "template",
	     422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"text\":\"x\",\"rows\":[{\"cell\":\"1\"}]}",
	     "recipient_column", 422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"text\":\"Hi {{1}}\","
	     "\"rows\":[{\"to\":\"+447400100001\"}]}",
	     "params", 422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"text\":\"x\",\"rows\":[{\"to\":\"1\"},"
	     "{\"to\":\"2\",\"extra\":\"3\"}]}",
	     "rows[1]", 422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"text\":\"x\",\"default_region\":\"XX\","
	     "\"rows\":[{\"to\":\"1\"}]}",
	     "default_region", 422},
	    {"{\"name\":\"a\",\"channel\":\"whatsapp\",\"text\":\"x\",\"bogus\":1,"
	     "\"rows\":[{\"to\":\"1\"}]}",
	     "bogus", 422},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct resp r = api_post(&W, "/v1/batches", cases[i].body);
		if (r.status != cases[i].status)
			fail_msg("case %zu answered %ld: %s", i, r.status, r.body);
		json_t *e = json_object_get(r.json, "error");
		assert_string_equal(json_string_value(json_object_get(e, "field")), cases[i].field);
		resp_free(&r);
	}
	struct resp r = api_get(&W, "/v1/batches?name=a");
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);
}

/* Server-Sent Events: progress while it runs, one final "end" event with
 * the completed counters, then the server closes the stream. */
static void test_events_stream(void **state)
{
	(void)state;
	json_t *rows = json_array();
	for (int i = 1; i <= 200; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "+4474004%05d", i);
		json_array_append_new(rows, json_pack("{s:s}", "to", phone));
	}
	json_t *req = json_pack("{s:s, s:s, s:s, s:o}", "name", "streamed", "channel", "whatsapp",
	                        "text", "Hello", "rows", rows);
	struct resp r = post_json("/v1/batches", req);
	assert_int_equal(r.status, 201);
	char id[64], url[256];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	snprintf(url, sizeof url, "%s/v1/batches/%s/events", W.api, id);
	r = http_t("GET", url, W.key, NULL, NULL, 120000);
	assert_int_equal(r.status, 200);
	/* Events in order; the last is "end" with the batch completed. */
	int progress = 0, ends = 0;
	const char *last_data = NULL;
	for (const char *p = r.body; (p = strstr(p, "event: ")); p++) {
		if (!strncmp(p, "event: progress\n", 16))
			progress++;
		else if (!strncmp(p, "event: end\n", 11))
			ends++;
		last_data = strstr(p, "data: ");
	}
	assert_int_equal(ends, 1);
	assert_true(progress >= 1);
	assert_non_null(last_data);
	json_t *fin = json_loadb(last_data + 6, strcspn(last_data + 6, "\n"), 0, NULL);
	assert_non_null(fin);
	assert_string_equal(bstatus(fin), "completed");
	assert_int_equal(batch_messages(fin, "delivered") + batch_messages(fin, "read"), 200);
	json_decref(fin);
	resp_free(&r);
	/* A finished batch: one end event at once. */
	r = http_t("GET", url, W.key, NULL, NULL, 30000);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "event: end\n"));
	assert_null(strstr(r.body, "event: progress"));
	resp_free(&r);
	/* Another tenant's: 404. */
	r = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_uploads),       cmocka_unit_test(test_validation_report),
	    cmocka_unit_test(test_cancel_scheduled),  cmocka_unit_test(test_make_ahead),
	    cmocka_unit_test(test_make_ahead_many),   cmocka_unit_test(test_events_stream),
	    cmocka_unit_test(test_ten_thousand_rows),
	};
	return cmocka_run_group_tests_name("campaign", tests, setup, teardown);
}
