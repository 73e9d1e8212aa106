/*
 * test_campaign_pause.c - pausing and resuming a campaign against real
 * `herald serve` and `herald sim` processes: a pause stops the sending
 * (what was in flight finishes; after that the dispatcher sends other
 * messages on the same account while the campaign's counters stay exactly
 * where they were), a paused campaign stays paused across a restart of the
 * server, the resume sends the rest and the campaign completes with every
 * recipient reached and counters equal to a recount; a reason is required
 * and recorded with who and when; cancel works on a paused campaign;
 * another tenant's campaign answers 404; a viewer key cannot pause.
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

#include "harness.h"
#include "herald.h"

static struct world W;

#define OTHER_KEY "hk_other_0123456789abcdef"
#define ROWS 150

static int setup(void **state)
{
	(void)state;
	/* A slow account of its own (20 sends a second), so a campaign of 150
	 * takes several seconds and can be paused part way. */
	world_init2(&W,
	            "      - id: acme-slow\n        channel: whatsapp\n        base_url: @SIM@\n"
	            "        api_version: \"21.0\"\n        phone_number_id: \"106540352242999\"\n"
	            "        access_token: test-token\n        app_secret: app-secret-123\n"
	            "        verify_token: verify-me\n        rate_limit: 20\n",
	            NULL, NULL, NULL, NULL);
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

static struct resp call(const char *method, const char *path, const char *key, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http(method, url, key, body, NULL);
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static const char *const NAMES[] = {"queued",  "sending",    "sent",        "delivered",
                                    "read",    "failed",     "undelivered", "cancelled",
                                    "expired", "suppressed", "unknown"};
#define NNAMES 11

/* Every message of the batch through the API, counted by status, against
 * the kept counters: exactly equal. */
static void assert_counters_equal_recount(const char *id)
{
	long counts[NNAMES] = {0}, total = 0;
	char cursor[64] = "";
	for (;;) {
		char path[256];
		snprintf(path, sizeof path, "/v1/batches/%s/messages?limit=1000%s%s", id,
		         cursor[0] ? "&cursor=" : "", cursor);
		struct resp r = api_get(&W, path);
		assert_int_equal(r.status, 200);
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(r.json, "data"), i, m)
		{
			const char *s = jstr(m, "status");
			for (int k = 0; k < NNAMES; k++)
				if (!strcmp(s, NAMES[k]))
					counts[k]++;
			total++;
		}
		json_t *next = json_object_get(r.json, "next_cursor");
		bool more = json_is_string(next);
		if (more)
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		resp_free(&r);
		if (!more)
			break;
	}
	json_t *b = world_batch(&W, id);
	long sum = 0;
	for (int k = 0; k < NNAMES; k++) {
		if (batch_messages(b, NAMES[k]) != counts[k])
			fail_msg("batch %s: %s kept %ld, recounted %ld", id, NAMES[k],
			         batch_messages(b, NAMES[k]), counts[k]);
		sum += counts[k];
	}
	assert_int_equal(sum, total);
	json_decref(b);
}

struct want {
	const char *id;
	const char *status; /* batch status, or NULL */
	long settled_min;   /* sent + delivered + read + failed at least */
	bool no_sending;    /* nothing in flight */
	bool receipts_in;   /* nothing sent or delivered waits for a receipt */
};

static bool batch_reached(struct world *w, void *arg)
{
	(void)w;
	struct want *x = arg;
	json_t *b = world_batch(&W, x->id);
	long settled = batch_messages(b, "sent") + batch_messages(b, "delivered") +
	               batch_messages(b, "read") + batch_messages(b, "failed");
	bool ok =
	    (!x->status || !strcmp(jstr(b, "status"), x->status)) && settled >= x->settled_min &&
	    (!x->no_sending || batch_messages(b, "sending") == 0) &&
	    (!x->receipts_in || batch_messages(b, "sent") + batch_messages(b, "delivered") == 0);
	json_decref(b);
	return ok;
}

/* Waits for x; on a timeout fails with the batch as it is. */
static void wait_batch(struct want *x, double timeout_s)
{
	if (wait_until(batch_reached, &W, x, timeout_s))
		return;
	json_t *b = world_batch(&W, x->id);
	char *d = json_dumps(b, JSON_COMPACT);
	fail_msg("batch %s did not reach %s (settled >= %ld%s): %s", x->id,
	         x->status ? x->status : "any status", x->settled_min,
	         x->no_sending ? ", none sending" : "", d);
}

struct want_msg {
	const char *id;
};

static bool message_left_queue(struct world *w, void *arg)
{
	(void)w;
	struct want_msg *x = arg;
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", x->id);
	struct resp r = api_get(&W, path);
	const char *s = jstr(r.json, "status");
	bool ok = r.status == 200 &&
	          (!strcmp(s, "sent") || !strcmp(s, "delivered") || !strcmp(s, "read"));
	resp_free(&r);
	return ok;
}

/* A single message on the campaign's account, waited for until the
 * provider has it: proof that the dispatcher claimed on that account after
 * whatever came before. */
static void single_send_goes_out(const char *to)
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"acme-slow\",\"to\":\"%s\","
	         "\"text\":\"single send\"}",
	         to);
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != 202)
		fail_msg("single send: %ld %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
	resp_free(&r);
	struct want_msg m = {id};
	assert_true(wait_until(message_left_queue, &W, &m, 60));
}

static void upload(int rows, const char *first_phone_prefix, char id[64])
{
	json_t *arr = json_array();
	for (int i = 1; i <= rows; i++) {
		char phone[32];
		snprintf(phone, sizeof phone, "%s%04d", first_phone_prefix, i);
		json_array_append_new(arr, json_pack("{s:s, s:s}", "phone", phone, "who", "Ana"));
	}
	json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:[s], s:b, s:o}", "name", "pause me",
	                        "channel", "whatsapp", "account", "acme-slow", "text", "Hi {{1}}",
	                        "params", "who", "start", 1, "rows", arr);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct resp r = api_post(&W, "/v1/batches", js);
	free(js);
	if (r.status != 201)
		fail_msg("upload: %ld %s", r.status, r.body);
	snprintf(id, 64, "%s", jstr(r.json, "id"));
	resp_free(&r);
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

static void test_pause_restart_resume(void **state)
{
	(void)state;
	long unique0 = sim_unique();
	char id[64], path[160];
	upload(ROWS, "+44740050", id);
	struct want some = {id, "processing", 15, false, false};
	wait_batch(&some, 60);

	/* Refusals first: another tenant's campaign does not exist for it; a
	 * key that may only read is forbidden; no reason, an empty one, a
	 * control character or an unknown field is named. */
	snprintf(path, sizeof path, "/v1/batches/%s/pause", id);
	struct resp r = call("POST", path, OTHER_KEY, "{\"reason\":\"mine\"}");
	assert_int_equal(r.status, 404);
	resp_free(&r);
	/* A key of the tenant that may read campaigns but not cancel them. */
	r = api_post(&W, "/v1/tenants/acme/keys", "{\"scopes\":[\"campaigns:read\"]}");
	if (r.status != 201)
		fail_msg("viewer key: %ld %s", r.status, r.body);
	char viewer[128];
	snprintf(viewer, sizeof viewer, "%s", jstr(r.json, "key"));
	resp_free(&r);
	r = call("POST", path, viewer, "{\"reason\":\"mine\"}");
	assert_int_equal(r.status, 403);
	resp_free(&r);
	char rpath[160];
	snprintf(rpath, sizeof rpath, "/v1/batches/%s/resume", id);
	r = call("POST", rpath, viewer, NULL);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	static const char *const bad[] = {NULL,
	                                  "{}",
	                                  "{\"reason\":\"\"}",
	                                  "{\"reason\":\"a\\u0007b\"}",
	                                  "{\"reason\":\"x\",\"by\":\"me\"}",
	                                  "{\"reason\":7}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = api_post(&W, path, bad[i]);
		if (r.status != 422)
			fail_msg("pause body %s: %ld %s", bad[i] ? bad[i] : "(none)", r.status,
			         r.body);
		json_t *e = json_object_get(r.json, "error");
		const char *field = jstr(e, "field");
		assert_true(!strcmp(field, "reason") || !strcmp(field, "by"));
		resp_free(&r);
	}
	char longr[260];
	memset(longr, 'x', 201);
	longr[201] = 0;
	char body[400];
	snprintf(body, sizeof body, "{\"reason\":\"%s\"}", longr);
	r = api_post(&W, path, body);
	assert_int_equal(r.status, 422);
	resp_free(&r);
	json_t *b = world_batch(&W, id);
	assert_string_equal(jstr(b, "status"), "processing"); /* none of them paused it */
	json_decref(b);

	r = api_post(&W, path, "{\"reason\":\"wrong amount in the template\"}");
	if (r.status != 200)
		fail_msg("pause: %ld %s", r.status, r.body);
	assert_string_equal(jstr(r.json, "status"), "paused");
	json_t *op = json_object_get(r.json, "operator");
	assert_string_equal(jstr(op, "pause_reason"), "wrong amount in the template");
	assert_true(strlen(jstr(op, "paused_by")) > 0);
	assert_true(json_is_string(json_object_get(json_object_get(r.json, "times"), "paused_at")));
	resp_free(&r);
	/* Paused twice, or started: refused, naming the status. */
	r = api_post(&W, path, "{\"reason\":\"again\"}");
	assert_int_equal(r.status, 422);
	assert_string_equal(jstr(json_object_get(r.json, "error"), "field"), "status");
	resp_free(&r);
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	r = api_post(&W, path, NULL);
	assert_int_equal(r.status, 422);
	resp_free(&r);

	/* What was in flight finishes (and its receipts come in: the
	 * simulator reads every message); then the dispatcher sends other
	 * messages on the account, and the campaign does not move. */
	struct want drained = {id, "paused", 0, true, true};
	wait_batch(&drained, 60);
	json_t *at_pause = world_batch(&W, id);
	long queued = batch_messages(at_pause, "queued");
	long made = 0;
	for (int k = 0; k < NNAMES; k++)
		made += batch_messages(at_pause, NAMES[k]);
	print_message("paused with %ld of %d queued\n", queued, ROWS);
	assert_true(queued > 0);
	long unique_paused = sim_unique();
	single_send_goes_out("+447400999001");
	single_send_goes_out("+447400999002");
	json_t *later = world_batch(&W, id);
	assert_int_equal(batch_messages(later, "queued"), queued);
	assert_int_equal(batch_messages(later, "sending"), 0);
	/* The pace's clock stopped at the pause: the rate does not decay. */
	json_t *p0 = json_object_get(at_pause, "progress"),
	       *p1 = json_object_get(later, "progress");
	assert_true(json_real_value(json_object_get(p0, "per_second")) > 0);
	assert_true(json_real_value(json_object_get(p0, "per_second")) ==
	            json_real_value(json_object_get(p1, "per_second")));
	assert_true(json_is_null(json_object_get(p1, "eta_seconds")));
	assert_int_equal(sim_unique() - unique_paused, 2); /* only the two single sends */
	json_decref(later);
	json_decref(at_pause);
	assert_counters_equal_recount(id);

	/* A restart keeps it paused and held. */
	world_stop_serve(&W);
	world_start_serve(&W);
	b = world_batch(&W, id);
	assert_string_equal(jstr(b, "status"), "paused");
	assert_int_equal(batch_messages(b, "queued"), queued);
	json_decref(b);
	single_send_goes_out("+447400999003");
	b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "queued"), queued);
	assert_string_equal(jstr(b, "status"), "paused");
	json_decref(b);

	/* Resume: another tenant cannot; a body is refused; then it goes on
	 * and completes, each recipient reached once. */
	snprintf(path, sizeof path, "/v1/batches/%s/resume", id);
	r = call("POST", path, OTHER_KEY, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	r = api_post(&W, path, "{\"reason\":\"x\"}");
	assert_int_equal(r.status, 422);
	resp_free(&r);
	r = api_post(&W, path, NULL);
	if (r.status != 200)
		fail_msg("resume: %ld %s", r.status, r.body);
	assert_string_equal(jstr(r.json, "status"), "processing");
	assert_true(strlen(jstr(json_object_get(r.json, "operator"), "resumed_by")) > 0);
	assert_true(
	    json_is_string(json_object_get(json_object_get(r.json, "times"), "resumed_at")));
	resp_free(&r);
	r = api_post(&W, path, NULL); /* not paused any more */
	assert_int_equal(r.status, 422);
	resp_free(&r);
	struct want done = {id, "completed", ROWS, true, true};
	wait_batch(&done, 120);
	b = world_batch(&W, id);
	made = 0;
	for (int k = 0; k < NNAMES; k++)
		made += batch_messages(b, NAMES[k]);
	assert_int_equal(made, ROWS);
	assert_int_equal(batch_messages(b, "failed") + batch_messages(b, "cancelled") +
	                     batch_messages(b, "queued"),
	                 0);
	json_decref(b);
	assert_counters_equal_recount(id);
	/* Every recipient once, plus the three single sends. */
	assert_int_equal(sim_unique() - unique0, ROWS + 3);

	/* The audit log has the pause and the resume, with their actor. */
	r = api_get(&W, "/v1/audit?limit=20");
	assert_int_equal(r.status, 200);
	int pauses = 0, resumes = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r.json, "entries"), i, e)
	{
		if (strstr(jstr(e, "object"), id)) {
			pauses += !strcmp(jstr(e, "action"), "batch.pause");
			resumes += !strcmp(jstr(e, "action"), "batch.resume");
		}
	}
	assert_int_equal(pauses, 1);
	assert_int_equal(resumes, 1);
	resp_free(&r);
}

/* Cancel a paused campaign, with a reason: every held message is stopped
 * (the answer says how many), nothing more is sent. */
static void test_cancel_paused(void **state)
{
	(void)state;
	char id[64], path[160];
	upload(60, "+44740060", id);
	struct want some = {id, "processing", 5, false, false};
	wait_batch(&some, 60);
	snprintf(path, sizeof path, "/v1/batches/%s/pause", id);
	struct resp r = api_post(&W, path, "{\"reason\":\"hold\"}");
	assert_int_equal(r.status, 200);
	resp_free(&r);
	struct want drained = {id, "paused", 0, true, true};
	wait_batch(&drained, 60);
	json_t *b = world_batch(&W, id);
	long queued = batch_messages(b, "queued");
	json_decref(b);
	long unique0 = sim_unique();
	snprintf(path, sizeof path, "/v1/batches/%s/cancel", id);
	r = api_post(&W, path, "{\"reason\":\"\"}");
	assert_int_equal(r.status, 422); /* a reason given empty */
	resp_free(&r);
	r = call("POST", path, OTHER_KEY, "{\"reason\":\"theirs\"}");
	assert_int_equal(r.status, 404);
	resp_free(&r);
	r = api_post(&W, path, "{\"reason\":\"customer complaint\"}");
	if (r.status != 200)
		fail_msg("cancel: %ld %s", r.status, r.body);
	assert_string_equal(jstr(r.json, "status"), "cancelled");
	assert_int_equal(json_integer_value(json_object_get(r.json, "stopped")), queued);
	json_t *op = json_object_get(r.json, "operator");
	assert_string_equal(jstr(op, "cancel_reason"), "customer complaint");
	assert_string_equal(jstr(op, "pause_reason"), "hold");
	resp_free(&r);
	struct want none_queued = {id, "cancelled", 0, true, true};
	wait_batch(&none_queued, 60);
	single_send_goes_out("+447400999004");
	b = world_batch(&W, id);
	assert_int_equal(batch_messages(b, "cancelled"), queued);
	assert_int_equal(batch_messages(b, "queued"), 0);
	json_decref(b);
	assert_int_equal(sim_unique() - unique0, 1);
	assert_counters_equal_recount(id);
}

/* `herald ARGS` with the world's URL and key: exit code and output. */
static int cli(const char *args, char *out, size_t size)
{
	char cmd[1024], path[300];
	snprintf(path, sizeof path, "%s/cli.out", W.dir);
	snprintf(cmd, sizeof cmd, "HERALD_URL=%s HERALD_API_KEY=%s %s %s >%s 2>&1 </dev/null",
	         W.api, W.key, getenv("HERALD_BIN"), args, path);
	int st = system(cmd);
	assert_true(st != -1 && WIFEXITED(st));
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	fclose(f);
	unlink(path);
	return WEXITSTATUS(st);
}

/* The CLI: pause needs --reason (usage, exit 2, nothing paused); pause,
 * resume and cancel with a reason, each recorded. */
static void test_cli(void **state)
{
	(void)state;
	char id[64], args[512], out[4096];
	upload(60, "+44740070", id);
	struct want some = {id, "processing", 3, false, false};
	wait_batch(&some, 60);
	snprintf(args, sizeof args, "batch pause %s", id);
	assert_int_equal(cli(args, out, sizeof out), 2);
	if (!strstr(out, "--reason"))
		fail_msg("pause without --reason: %s", out);
	json_t *b = world_batch(&W, id);
	assert_string_equal(jstr(b, "status"), "processing");
	json_decref(b);
	snprintf(args, sizeof args, "batch pause %s --reason 'checking the list'", id);
	if (cli(args, out, sizeof out) != 0 || !strstr(out, " paused: ") || !strstr(out, "held"))
		fail_msg("pause: %s", out);
	b = world_batch(&W, id);
	assert_string_equal(jstr(b, "status"), "paused");
	assert_string_equal(jstr(json_object_get(b, "operator"), "pause_reason"),
	                    "checking the list");
	json_decref(b);
	snprintf(args, sizeof args, "batch list --status paused");
	if (cli(args, out, sizeof out) != 0 || !strstr(out, id))
		fail_msg("list --status paused: %s", out);
	snprintf(args, sizeof args, "batch resume %s", id);
	if (cli(args, out, sizeof out) != 0 || !strstr(out, "processing"))
		fail_msg("resume: %s", out);
	snprintf(args, sizeof args, "batch cancel %s --reason 'wrong list'", id);
	if (cli(args, out, sizeof out) != 0 || !strstr(out, "stopped"))
		fail_msg("cancel: %s", out);
	b = world_batch(&W, id);
	assert_string_equal(jstr(b, "status"), "cancelled");
	assert_string_equal(jstr(json_object_get(b, "operator"), "cancel_reason"), "wrong list");
	assert_true(strlen(jstr(json_object_get(b, "operator"), "resumed_by")) > 0);
	json_decref(b);
	struct want settled = {id, "cancelled", 0, true, true};
	wait_batch(&settled, 60);
	assert_counters_equal_recount(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pause_restart_resume),
	    cmocka_unit_test(test_cancel_paused),
	    cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
