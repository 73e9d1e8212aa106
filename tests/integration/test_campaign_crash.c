/*
 * test_campaign_crash.c - a campaign's crash guarantees against real
 * `herald serve` and `herald sim` processes, each test on a fresh world:
 *
 *  - kill -9 while the started batch's rows are being made into messages
 *    (progress.made strictly between 0 and the valid rows), restart: the
 *    runner carries on; every valid row has exactly one message, recipients
 *    unique, the counters equal a recount, and the simulator received each
 *    recipient once, plus at most one resend per send that was in flight at
 *    the kill (at-least-once: bounded by dispatch.max_in_flight);
 *  - the same with the kill once every message is made and sending is
 *    under way;
 *  - kill -9 while the upload itself is being validated (the batch is
 *    PENDING with part of its rows stored): after the restart the batch is
 *    FAILED saying the upload was interrupted, with no message, and the
 *    list shows it so; never PENDING, never half-sent.
 *
 * The row count is CRASH_ROWS_SQLITE or _POSTGRES (HERALD_IT_CRASH_ROWS
 * overrides it, for measuring); every CRASH_BAD_EVERY-th row has a bad number and every
 * CRASH_DUP_EVERY-th repeats row 1's recipient, so the valid count is
 * known exactly.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* What keeps the whole suite within its CI budget (under ASan, beside the
 * other tests, on 2 cores): 10,000 rows on SQLite, 8,000 on PostgreSQL,
 * which settles fewer messages a second there. The 100,000 rows
 * run with HERALD_IT_CRASH_ROWS=100000 (README "Tests"). */
#define CRASH_ROWS_SQLITE 10000
#define CRASH_ROWS_POSTGRES 8000
#define CRASH_BAD_EVERY 5000 /* rows 5000, 10000, ...: not a phone number */
#define CRASH_DUP_EVERY 7001 /* rows 7001, 14002, ...: row 1's recipient again */
#define MID_ROWS 100000      /* the upload killed mid-validation */
#define MAX_IN_FLIGHT 16

/*
 * Lease 5 s: a send in flight at the kill is sent again about 5 s after the
 * restart. The HTTP timeout is far above the simulator's answers, so only
 * the kill (never a slow answer) makes a resend.
 *
 * Why max_in_flight bounds the resends of one kill: a resend is a message
 * the provider accepted whose outcome was not committed. The dispatcher's
 * claims go through the store's one writer queue behind the outcomes it
 * queued before them, and it starts no transfer without a claim; so when a
 * claim returns, every outcome queued before it is committed, and what can
 * still be uncommitted at a kill is only the transfers in flight since the
 * last claim returned (the outcomes of a claim still waiting are of those
 * same transfers): at most max_in_flight.
 */
#define DISPATCH_YAML                                                                              \
	"dispatch:\n  lease_seconds: 5\n  http_timeout_ms: 3000\n  max_in_flight: 16\n"

static struct world W;

static int nrows(void)
{
	const char *v = getenv("HERALD_IT_CRASH_ROWS");
	int dflt = harness_postgres() ? CRASH_ROWS_POSTGRES : CRASH_ROWS_SQLITE;
	int n = v ? atoi(v) : dflt;
	return n >= 100 ? n : dflt;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the upload --------------------------------------------------------- */

struct expect {
	long total, valid, invalid, duplicates;
};

/* The JSON body of a text campaign of n rows ({"to", "1"}), and what its
 * validation must report. Caller frees. */
static char *campaign_body(const char *name, int n, bool start, struct expect *e)
{
	memset(e, 0, sizeof *e);
	json_t *rows = json_array();
	for (int i = 1; i <= n; i++) {
		char to[32], p[16];
		if (i % CRASH_BAD_EVERY == 0) {
			snprintf(to, sizeof to, "12%d", i);
			e->invalid++;
		} else if (i % CRASH_DUP_EVERY == 0) {
			snprintf(to, sizeof to, "+447400%06d", 1);
			e->duplicates++;
		} else {
			snprintf(to, sizeof to, "+447400%06d", i);
			e->valid++;
		}
		snprintf(p, sizeof p, "r%d", i);
		assert_int_equal(
		    json_array_append_new(rows, json_pack("{s:s, s:s}", "to", to, "1", p)), 0);
	}
	e->total = n;
	json_t *req = json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", name, "channel", "whatsapp",
	                        "text", "Crash test {{1}}", "start", start, "rows", rows);
	assert_non_null(req);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	assert_non_null(js);
	return js;
}

/* Uploads (and starts, unless start is false); returns the batch id in id
 * (the answer's counts are checked against e). */
static void upload_as(const char *name, int n, bool start, char id[64], struct expect *e)
{
	char *body = campaign_body(name, n, start, e);
	double t0 = now_s();
	char url[128];
	snprintf(url, sizeof url, "%s/v1/batches", W.api);
	struct resp r = http_t("POST", url, W.key, body, NULL, 300000);
	free(body);
	if (r.status != 201)
		fail_msg("upload answered %ld: %.300s", r.status, r.body);
	print_message("upload of %d rows answered in %.1f s\n", n, now_s() - t0);
	snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "id")));
	json_t *rows = json_object_get(r.json, "rows");
	assert_int_equal(json_integer_value(json_object_get(rows, "total")), e->total);
	assert_int_equal(json_integer_value(json_object_get(rows, "valid")), e->valid);
	assert_int_equal(json_integer_value(json_object_get(rows, "invalid")), e->invalid);
	assert_int_equal(json_integer_value(json_object_get(rows, "duplicates")), e->duplicates);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")),
	                    start ? "processing" : "validated");
	resp_free(&r);
}

static void upload(const char *name, int n, char id[64], struct expect *e)
{
	upload_as(name, n, true, id, e);
}

/* ---- reading a batch ------------------------------------------------------ */

static long progress(json_t *b, const char *what)
{
	return (long)json_integer_value(json_object_get(json_object_get(b, "progress"), what));
}

static const char *const STATUSES[] = {"queued",  "sending",    "sent",        "delivered",
                                       "read",    "failed",     "undelivered", "cancelled",
                                       "expired", "suppressed", "unknown"};
#define NSTATUS (sizeof STATUSES / sizeof *STATUSES)

/* Sent or later: what the provider has accepted. */
static long past_send(json_t *b)
{
	return batch_messages(b, "sent") + batch_messages(b, "delivered") +
	       batch_messages(b, "read");
}

struct done_arg {
	const char *id;
	long valid;
};

/* Completed, and every message delivered (the simulator sends no read
 * receipt here): the counters stop moving, so a recount can be compared
 * with them. */
static bool all_delivered(struct world *w, void *arg)
{
	(void)w;
	struct done_arg *d = arg;
	json_t *b = world_batch(&W, d->id);
	bool ok = !strcmp(json_string_value(json_object_get(b, "status")), "completed") &&
	          batch_messages(b, "delivered") == d->valid;
	json_decref(b);
	return ok;
}

/* ---- the recount ------------------------------------------------------------ */

struct recount {
	long by[NSTATUS];
	long total;
	char (*ids)[32];
	char (*to)[32];
	size_t cap;
};

static void recount_free(struct recount *rc)
{
	free(rc->ids);
	free(rc->to);
	memset(rc, 0, sizeof *rc);
}

/* Every message of the batch through GET /v1/batches/{id}/messages. */
static void recount(const char *id, struct recount *rc)
{
	memset(rc, 0, sizeof *rc);
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
			bool known = false;
			for (size_t k = 0; k < NSTATUS; k++)
				if (!strcmp(s, STATUSES[k])) {
					rc->by[k]++;
					known = true;
				}
			assert_true(known);
			if ((size_t)rc->total == rc->cap) {
				rc->cap = rc->cap ? rc->cap * 2 : 4096;
				rc->ids = realloc(rc->ids, rc->cap * sizeof *rc->ids);
				rc->to = realloc(rc->to, rc->cap * sizeof *rc->to);
				assert_non_null(rc->ids);
				assert_non_null(rc->to);
			}
			snprintf(rc->ids[rc->total], 32, "%s",
			         json_string_value(json_object_get(m, "id")));
			snprintf(rc->to[rc->total], 32, "%s",
			         json_string_value(json_object_get(m, "to")));
			rc->total++;
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

static int cmp32(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* How many entries of a sorted array equal their predecessor. */
static long repeats(char (*v)[32], long n)
{
	long k = 0;
	for (long i = 1; i < n; i++)
		k += strcmp(v[i - 1], v[i]) == 0;
	return k;
}

/* ---- the simulator ---------------------------------------------------------- */

static json_t *sim_get(const char *path)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.sim, path);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	if (r.status != 200)
		fail_msg("GET %s answered %ld", url, r.status);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static long jint(json_t *o, const char *k)
{
	return (long)json_integer_value(json_object_get(o, k));
}

/*
 * After a run with `kills` kill -9s: the batch's truth.
 *  - its counters: every valid row made and delivered, nothing else;
 *  - the recount: as many messages as valid rows, no recipient twice, the
 *    same counts by status as the counters;
 *  - the simulator: it saw exactly the batch's messages (this world sends
 *    nothing else), each at least once; a message sent more than once is a
 *    resend of a send in flight at a kill, at most max_in_flight per kill;
 *    and since recipients are unique among the messages, the per-message
 *    counts are the per-recipient counts. Returns the resends measured.
 */
static long verify(const char *id, const struct expect *e, int kills)
{
	json_t *b = world_batch(&W, id);
	assert_string_equal(json_string_value(json_object_get(b, "status")), "completed");
	assert_int_equal(progress(b, "made"), e->valid);
	assert_int_equal(batch_messages(b, "delivered"), e->valid);
	json_t *rows = json_object_get(b, "rows");
	assert_int_equal(jint(rows, "total"), e->total);
	assert_int_equal(jint(rows, "valid"), e->valid);
	assert_int_equal(jint(rows, "invalid"), e->invalid);
	assert_int_equal(jint(rows, "duplicates"), e->duplicates);

	struct recount rc;
	recount(id, &rc);
	assert_int_equal(rc.total, e->valid);
	bool same = true;
	for (size_t k = 0; k < NSTATUS; k++)
		same &= batch_messages(b, STATUSES[k]) == rc.by[k];
	if (!same) {
		for (size_t k = 0; k < NSTATUS; k++)
			print_error("  %-11s kept %6ld recounted %6ld\n", STATUSES[k],
			            batch_messages(b, STATUSES[k]), rc.by[k]);
		fail_msg("batch %s: the kept counters differ from a recount", id);
	}
	json_decref(b);

	/* Spot checks that the simulator's record is of these messages, to
	 * these recipients (before sorting: ids[i] goes with to[i]). */
	for (long i = 0; i < rc.total; i += 997) {
		char path[96];
		snprintf(path, sizeof path, "/sim/messages/%s", rc.ids[i]);
		json_t *m = sim_get(path);
		const char *sim_to = json_string_value(json_object_get(m, "to"));
		assert_non_null(sim_to);
		/* The provider's wire form has no '+'. */
		assert_string_equal(sim_to[0] == '+' ? sim_to + 1 : sim_to,
		                    rc.to[i][0] == '+' ? rc.to[i] + 1 : rc.to[i]);
		assert_true(jint(m, "count") >= 1);
		json_decref(m);
	}
	qsort(rc.to, (size_t)rc.total, sizeof *rc.to, cmp32);
	assert_int_equal(repeats(rc.to, rc.total), 0);
	qsort(rc.ids, (size_t)rc.total, sizeof *rc.ids, cmp32);
	assert_int_equal(repeats(rc.ids, rc.total), 0);

	json_t *st = sim_get("/sim/stats");
	long uniq = jint(st, "unique_messages"), dups = jint(st, "duplicates");
	long bodies = jint(st, "unique_bodies");
	json_decref(st);
	/* Every message reached the provider; nothing else did. */
	assert_int_equal(uniq, e->valid);
	assert_int_equal(bodies, e->valid);
	/* The resends, message by message: each one of the batch's, each sent
	 * at most once more per kill, and in all at most what was in flight. */
	json_t *d = sim_get("/sim/duplicates");
	const char *mid;
	json_t *cnt;
	long extra = 0;
	json_object_foreach(json_object_get(d, "messages"), mid, cnt) {
		char key[32];
		snprintf(key, sizeof key, "%s", mid);
		assert_non_null(bsearch(key, rc.ids, (size_t)rc.total, sizeof *rc.ids, cmp32));
		long c = (long)json_integer_value(cnt);
		assert_true(c >= 2 && c <= 1 + kills);
		extra += c - 1;
	}
	json_decref(d);
	assert_int_equal(extra, dups);
	print_message("provider: %ld messages, %ld resends after %d kill(s) (bound %d)\n", uniq,
	              dups, kills, MAX_IN_FLIGHT * kills);
	assert_true(dups <= (long)MAX_IN_FLIGHT * kills);
	recount_free(&rc);
	return dups;
}

/* ---- the world ------------------------------------------------------------------ */

static void world_up(void)
{
	/* The body of 100,000 rows is about 4 MB, the default limit. */
	harness_server_extra("  max_body_bytes: 67108864\n");
	/* No read receipts: a third fewer webhooks to apply, so more rows fit
	 * the time; DELIVERED settles a message as well as READ does. */
	world_init(&W, "    read_rate: 0\n    webhook_batch: 20\n", DISPATCH_YAML);
	harness_server_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);
}

struct when_arg {
	const char *id;
	long valid;
	bool sending; /* false: mid-ingest; true: all made, sending under way */
	long made, past, queued;
};

static bool kill_point(struct world *w, void *arg)
{
	(void)w;
	struct when_arg *a = arg;
	json_t *b = world_batch(&W, a->id);
	a->made = progress(b, "made");
	a->past = past_send(b);
	a->queued = batch_messages(b, "queued") + batch_messages(b, "sending");
	bool ingested = json_is_true(json_object_get(json_object_get(b, "times"), "ingested"));
	json_decref(b);
	if (!a->sending)
		return a->made >= 1 && a->made < a->valid && !ingested;
	/* All made, some sent, at least a tenth still to send. */
	return a->made == a->valid && a->past > 0 && a->queued * 10 >= a->valid;
}

static void run_kill(bool sending)
{
	world_up();
	int n = nrows();
	struct expect e;
	char id[64];
	double t0 = now_s();
	upload(sending ? "crash-sending" : "crash-ingest", n, id, &e);
	struct when_arg when = {.id = id, .valid = e.valid, .sending = sending};
	/* The poll is every 100 ms; a chunk is 1,000 rows. */
	if (!wait_until(kill_point, &W, &when, 120))
		fail_msg("no kill point (%s): made %ld, sent %ld, queued %ld of %ld",
		         sending ? "sending" : "ingest", when.made, when.past, when.queued,
		         e.valid);
	world_kill9_serve(&W);
	print_message("kill -9 at %.1f s: %ld of %ld made, %ld sent or later, %ld to send\n",
	              now_s() - t0, when.made, e.valid, when.past, when.queued);
	world_start_serve(&W);
	struct done_arg done = {id, e.valid};
	if (!wait_until(all_delivered, &W, &done, 240)) {
		json_t *b = world_batch(&W, id);
		char *s = json_dumps(b, JSON_COMPACT);
		fail_msg("batch did not complete after the restart: %s", s);
	}
	print_message("completed and delivered at %.1f s\n", now_s() - t0);
	verify(id, &e, 1);
	print_message("verified at %.1f s\n", now_s() - t0);
	world_free(&W);
}

static void test_kill9_during_ingest(void **state)
{
	(void)state;
	run_kill(false);
}

static void test_kill9_while_sending(void **state)
{
	(void)state;
	run_kill(true);
}

/*
 * kill -9 once an upload is validated and answered, before anyone starts
 * it: after the restart the batch is still VALIDATED with its report and
 * no message; started then, every valid row is sent exactly once (no kill
 * happened while anything was in flight, so no resend is allowed).
 */
static void test_kill9_after_validation(void **state)
{
	(void)state;
	world_up();
	/* A quarter of the rows: what is tested is the restart between
	 * validation and start, not the volume (the other tests have it). */
	int n = nrows() / 4;
	struct expect e;
	char id[64];
	upload_as("crash-validated", n, false, id, &e);
	world_kill9_serve(&W);
	world_start_serve(&W);
	json_t *b = world_batch(&W, id);
	assert_string_equal(json_string_value(json_object_get(b, "status")), "validated");
	json_t *rows = json_object_get(b, "rows");
	assert_int_equal(jint(rows, "total"), e.total);
	assert_int_equal(jint(rows, "valid"), e.valid);
	assert_int_equal(jint(rows, "invalid"), e.invalid);
	assert_int_equal(jint(rows, "duplicates"), e.duplicates);
	assert_int_equal(progress(b, "made"), 0);
	json_decref(b);
	json_t *st = sim_get("/sim/stats");
	assert_int_equal(jint(st, "requests"), 0);
	json_decref(st);
	char path[128];
	snprintf(path, sizeof path, "/v1/batches/%s/start", id);
	struct resp r = api_post(&W, path, "");
	assert_int_equal(r.status, 200);
	resp_free(&r);
	struct done_arg done = {id, e.valid};
	if (!wait_until(all_delivered, &W, &done, 240))
		fail_msg("the batch started after the restart did not complete");
	verify(id, &e, 0);
	world_free(&W);
}

/* ---- an upload killed mid-validation ------------------------------------------- */

struct post_arg {
	char url[128];
	const char *key;
	char *body;
	long status;
};

static void *post_main(void *arg)
{
	struct post_arg *p = arg;
	struct resp r = http_t("POST", p->url, p->key, p->body, NULL, 300000);
	p->status = r.status;
	resp_free(&r);
	return NULL;
}

struct pending_arg {
	long total; /* rows stored so far */
	char id[64];
	const char *status;
};

/* The upload's batch is listed PENDING with some of its rows stored. */
static bool upload_half_stored(struct world *w, void *arg)
{
	struct pending_arg *p = arg;
	struct resp r = api_get(w, "/v1/batches?name=interrupted");
	bool ok = false;
	json_t *b = json_array_get(json_object_get(r.json, "data"), 0);
	if (r.status == 200 && b) {
		snprintf(p->id, sizeof p->id, "%s", json_string_value(json_object_get(b, "id")));
		p->total = jint(json_object_get(b, "rows"), "total");
		ok = !strcmp(json_string_value(json_object_get(b, "status")), "pending") &&
		     p->total > 0;
	}
	resp_free(&r);
	return ok;
}

static void test_kill9_mid_validation(void **state)
{
	(void)state;
	world_up();
	/* A file of 100,000 rows: its validation takes seconds. */
	int n = MID_ROWS;
	struct expect e;
	struct post_arg pa = {.key = W.key, .status = -1};
	pa.body = campaign_body("interrupted", n, true, &e);
	snprintf(pa.url, sizeof pa.url, "%s/v1/batches", W.api);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, post_main, &pa), 0);
	struct pending_arg p = {0};
	bool seen = wait_until(upload_half_stored, &W, &p, 120);
	world_kill9_serve(&W);
	assert_int_equal(pthread_join(th, NULL), 0);
	free(pa.body);
	if (!seen)
		fail_msg("the upload was never seen pending (answered %ld)", pa.status);
	print_message("kill -9 with %ld of %d rows stored\n", p.total, n);
	assert_int_equal(pa.status, 0); /* the client saw the connection die */
	assert_true(p.total < n);

	world_start_serve(&W);
	/* Marked failed before the server listens: its first answer says so. */
	char path[128];
	json_t *b = world_batch(&W, p.id);
	assert_string_equal(json_string_value(json_object_get(b, "status")), "failed");
	const char *why = json_string_value(json_object_get(b, "error"));
	assert_non_null(why);
	assert_non_null(strstr(why, "upload was interrupted"));
	assert_true(json_is_string(json_object_get(json_object_get(b, "times"), "failed_at")));
	assert_int_equal(progress(b, "made"), 0);
	for (size_t k = 0; k < NSTATUS; k++)
		assert_int_equal(batch_messages(b, STATUSES[k]), 0);
	json_decref(b);
	struct recount rc;
	recount(p.id, &rc);
	assert_int_equal(rc.total, 0);
	recount_free(&rc);
	/* The list says the same: one batch of that name, failed; none pending. */
	struct resp r = api_get(&W, "/v1/batches?name=interrupted");
	assert_int_equal(r.status, 200);
	json_t *data = json_object_get(r.json, "data");
	assert_int_equal(json_array_size(data), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(data, 0), "status")),
	                    "failed");
	resp_free(&r);
	r = api_get(&W, "/v1/batches?status=pending");
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
	resp_free(&r);
	/* A failed batch cannot be started; nothing ever reaches the provider. */
	snprintf(path, sizeof path, "/v1/batches/%s/start", p.id);
	r = api_post(&W, path, "");
	assert_int_equal(r.status, 422);
	resp_free(&r);
	json_t *st = sim_get("/sim/stats");
	assert_int_equal(jint(st, "requests"), 0);
	json_decref(st);
	world_free(&W);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill9_after_validation),
	    cmocka_unit_test(test_kill9_mid_validation),
	    cmocka_unit_test(test_kill9_during_ingest),
	    cmocka_unit_test(test_kill9_while_sending),
	};
	return cmocka_run_group_tests_name("campaign_crash", tests, NULL, NULL);
}
