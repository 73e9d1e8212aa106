/*
 * test_policy.c - delivery policies under faults, against real `herald
 * serve` and `herald sim` processes (README "Guarantees").
 *
 *  - a provider that takes the request and answers after http_timeout_ms:
 *    at_most_once -> unknown, the provider received it exactly once, and
 *    the provider's later receipts (which carry the message id Herald sent)
 *    settle it; at_least_once -> sent again (the provider received it
 *    twice), the resend marked in the audit trail;
 *  - a connection closed after the request was read: at_most_once ->
 *    unknown, received once;
 *  - a refused connection (nothing listens): retried under at_most_once too,
 *    every attempt, then failed; never unknown;
 *  - kill -9 of herald serve while both kinds are in flight: after the
 *    restart the at_most_once message is unknown and never sent again, the
 *    at_least_once one is sent again and delivered;
 *  - a rate limit on one recipient (131056) delays that recipient only; one
 *    on the number (130429) pauses the whole account;
 *  - an outage (the provider hangs for a few seconds, then recovers): every
 *    at_least_once message is delivered afterwards, every at_most_once one
 *    caught by the outage reached the provider once and was never resent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "herald.h"

static struct world W;

/* Fast retries, a short provider timeout and lease: each test runs in a
 * few seconds. */
#define DISPATCH                                                                                   \
	"dispatch:\n  http_timeout_ms: 1000\n  backoff_base_ms: 100\n  backoff_max_ms: 200\n"      \
	"  lease_seconds: 3\n"

/* A loopback port nothing listens on (bound, then closed at once). */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void sim_knobs(const char *json)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/config", W.sim);
	struct resp r = http("POST", url, NULL, json, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

/* How many sends of message id the simulator accepted (0: none). */
static long sim_count(const char *id)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/messages/%s", W.sim, id);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	long n = r.status == 200 ? (long)json_integer_value(json_object_get(r.json, "count")) : 0;
	resp_free(&r);
	return n;
}

/* Accepts one text message; the id into id. */
static void send_one(const char *account, const char *to, const char *policy, char id[32])
{
	char body[512];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"%s\",\"text\":\"policy "
	         "test\",\"delivery_policy\":\"%s\"}",
	         account, to, policy);
	struct resp r = api_post(&W, "/v1/messages", body);
	assert_int_equal(r.status, 202);
	assert_string_equal(json_string_value(json_object_get(r.json, "delivery_policy")), policy);
	snprintf(id, 32, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
}

/* The message's GET answer (caller frees). */
static struct resp msg_get(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	return r;
}

static char status_buf[32];
static const char *status_of(const char *id)
{
	struct resp r = msg_get(id);
	snprintf(status_buf, sizeof status_buf, "%s",
	         json_string_value(json_object_get(r.json, "status")));
	resp_free(&r);
	return status_buf;
}

struct want {
	const char *id;
	const char *status; /* any of a '|'-separated list */
};

static bool status_is(struct world *w, void *arg)
{
	(void)w;
	const struct want *x = arg;
	const char *s = status_of(x->id);
	size_t n = strlen(s);
	for (const char *p = x->status; *p;) {
		size_t l = strcspn(p, "|");
		if (l == n && strncmp(p, s, n) == 0)
			return true;
		p += l + (p[l] == '|');
	}
	return false;
}

struct sim_want {
	const char *id;
	long count;
};

static bool sim_has(struct world *w, void *arg)
{
	(void)w;
	const struct sim_want *x = arg;
	return sim_count(x->id) >= x->count;
}

/* The message's audit events (caller decrefs). */
static json_t *events_of(const char *id)
{
	struct resp r = msg_get(id);
	json_t *data = json_incref(json_object_get(r.json, "events"));
	resp_free(&r);
	assert_non_null(data);
	return data;
}

/* How many events of `type` whose detail has key == value (value NULL: any
 * detail; value "" : the key present). */
static int events_with(json_t *evs, const char *type, const char *key, const char *value)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(evs, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "type")), type) != 0)
			continue;
		if (!key) {
			n++;
			continue;
		}
		json_t *v = json_object_get(json_object_get(e, "detail"), key);
		if (!v)
			continue;
		if (!value || !*value || (json_is_string(v) && !strcmp(json_string_value(v), value)) ||
		    (json_is_true(v) && !strcmp(value, "true")))
			n++;
	}
	return n;
}

/* The simulator's count of sends it answered 429. */
static long sim_rejected_429(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	long n = (long)json_integer_value(json_object_get(json_object_get(r.json, "rejected"), "429"));
	resp_free(&r);
	return n;
}

/* The time (us) of the first event of `type`. */
static int64_t event_at(json_t *evs, const char *type)
{
	size_t i;
	json_t *e;
	json_array_foreach(evs, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "type")), type) != 0)
			continue;
		int64_t at = 0;
		assert_int_equal(hr_time_parse(json_string_value(json_object_get(e, "at")), &at), 0);
		return at;
	}
	fail_msg("no %s event", type);
	return 0;
}

static void world_up(const char *accounts, const char *extra)
{
	world_init2(&W, accounts, NULL, NULL, NULL, extra);
	world_start_sim(&W);
	world_start_serve(&W);
}

/* at_most_once, the provider answers after the timeout: unknown at once,
 * received exactly once, never sent again; its receipts, which come later
 * and carry the message id, make it read. */
static void test_hang_at_most_once(void **state)
{
	(void)state;
	world_up(NULL, DISPATCH "  max_attempts: 3\n");
	sim_knobs("{\"latency_ms\": 4000}");
	char id[32];
	send_one("acme-wa", "447700900001", "at_most_once", id);
	struct want w = {id, "unknown"};
	assert_true(wait_until(status_is, &W, &w, 3.5));
	assert_int_equal(sim_count(id), 1);
	struct resp r = msg_get(id);
	json_t *err = json_object_get(r.json, "error");
	assert_string_equal(json_string_value(json_object_get(err, "code")), "unknown_outcome");
	assert_int_equal(json_integer_value(json_object_get(r.json, "attempts")), 1);
	resp_free(&r);
	json_t *evs = events_of(id);
	assert_int_equal(events_with(evs, "unknown_outcome", "unknown_outcome",
	                             "timeout_after_write"),
	                 1);
	assert_int_equal(events_with(evs, "unknown_outcome", "policy", "at_most_once"), 1);
	assert_int_equal(events_with(evs, "retry", NULL, NULL), 0);
	json_decref(evs);

	/* The provider's receipts settle it; nothing was sent again. */
	w.status = "read";
	assert_true(wait_until(status_is, &W, &w, 15));
	assert_int_equal(sim_count(id), 1);
	evs = events_of(id);
	assert_int_equal(events_with(evs, "provider_id_learnt", "by", "client_ref"), 1);
	json_decref(evs);
	world_free(&W);
}

/* at_least_once, the same provider: sent again after the timeout, the
 * provider received it twice, the retry marked as a possible duplicate. */
static void test_hang_at_least_once(void **state)
{
	(void)state;
	world_up(NULL, DISPATCH "  max_attempts: 2\n");
	sim_knobs("{\"latency_ms\": 4000}");
	char id[32];
	send_one("acme-wa", "447700900002", "at_least_once", id);
	struct sim_want sw = {id, 2};
	assert_true(wait_until(sim_has, &W, &sw, 10));
	/* The second attempt times out too: its attempts are spent, and
	 * another would be a duplicate nobody allowed. */
	struct want w = {id, "unknown|sent|delivered|read"};
	assert_true(wait_until(status_is, &W, &w, 10));
	json_t *evs = events_of(id);
	assert_int_equal(events_with(evs, "retry", "reason", "resend after unknown outcome"), 1);
	assert_int_equal(events_with(evs, "retry", "possible_duplicate", "true"), 1);
	assert_int_equal(events_with(evs, "retry", "unknown_outcome", "timeout_after_write"), 1);
	json_decref(evs);
	w.status = "read";
	assert_true(wait_until(status_is, &W, &w, 15));
	assert_int_equal(sim_count(id), 2);
	world_free(&W);
}

/* The provider reads the request, then closes the connection unanswered. */
static void test_reset_after_request(void **state)
{
	(void)state;
	world_up(NULL, DISPATCH "  max_attempts: 3\n");
	/* Receipts far off, so the statuses Herald chose stay to be seen. */
	sim_knobs("{\"drop_rate\": 1, \"sent_delay_ms\": 60000, \"delivered_delay_ms\": 60000,"
	          " \"read_delay_ms\": 60000}");
	char amo[32], alo[32];
	send_one("acme-wa", "447700900003", "at_most_once", amo);
	struct want w = {amo, "unknown"};
	bool ok = wait_until(status_is, &W, &w, 5);
	if (!ok) {
		struct resp r = msg_get(amo);
		print_message("%ld sends; %s\n", sim_count(amo), r.body);
		resp_free(&r);
	}
	assert_true(ok);
	json_t *evs = events_of(amo);
	assert_int_equal(events_with(evs, "unknown_outcome", "unknown_outcome",
	                             "connection_lost_after_write"),
	                 1);
	json_decref(evs);

	send_one("acme-wa", "447700900004", "at_least_once", alo);
	struct sim_want sw = {alo, 3};
	bool got = wait_until(sim_has, &W, &sw, 10);
	if (!got) {
		struct resp r = msg_get(alo);
		print_message("%ld sends; %s\n", sim_count(alo), r.body);
		resp_free(&r);
	}
	assert_true(got);
	w.id = alo;
	assert_true(wait_until(status_is, &W, &w, 5)); /* 3 attempts spent */
	evs = events_of(alo);
	assert_int_equal(events_with(evs, "retry", "possible_duplicate", "true"), 2);
	json_decref(evs);
	assert_int_equal(sim_count(amo), 1);
	assert_int_equal(sim_count(alo), 3);
	world_free(&W);
}

/* Nothing listens: no request can have reached anyone, so at_most_once
 * retries too, every attempt, and fails at the end (never unknown). */
static void test_refused_retried(void **state)
{
	(void)state;
	char accounts[512];
	snprintf(accounts, sizeof accounts,
	         "      - id: acme-down\n        channel: whatsapp\n"
	         "        base_url: http://127.0.0.1:%d\n"
	         "        api_version: \"21.0\"\n        phone_number_id: \"106540352242977\"\n"
	         "        access_token: test-token\n        app_secret: app-secret-123\n"
	         "        verify_token: verify-me\n        delivery_policy: at_most_once\n",
	         closed_port());
	world_up(accounts, DISPATCH "  max_attempts: 3\n");
	char id[32];
	/* The account's policy applies: the message names none. */
	struct resp r = api_post(&W, "/v1/messages",
	                         "{\"channel\":\"whatsapp\",\"account\":\"acme-down\","
	                         "\"to\":\"447700900005\",\"text\":\"refused\"}");
	assert_int_equal(r.status, 202);
	assert_string_equal(json_string_value(json_object_get(r.json, "delivery_policy")),
	                    "at_most_once");
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	struct want w = {id, "failed"};
	assert_true(wait_until(status_is, &W, &w, 10));
	r = msg_get(id);
	assert_int_equal(json_integer_value(json_object_get(r.json, "attempts")), 3);
	json_t *err = json_object_get(r.json, "error");
	assert_string_equal(json_string_value(json_object_get(err, "code")), "network");
	resp_free(&r);
	json_t *evs = events_of(id);
	assert_int_equal(events_with(evs, "retry", "class", "transient"), 2);
	assert_int_equal(events_with(evs, "retry", "unknown_outcome", ""), 0);
	assert_int_equal(events_with(evs, "unknown_outcome", NULL, NULL), 0);
	json_decref(evs);
	world_free(&W);
}

/* kill -9 while both kinds are with a provider that hangs; restart. */
static void test_kill9_in_flight(void **state)
{
	(void)state;
	world_up(NULL, "dispatch:\n  http_timeout_ms: 5000\n  backoff_base_ms: 100\n"
	               "  backoff_max_ms: 200\n  lease_seconds: 7\n");
	sim_knobs("{\"latency_ms\": 60000}");
	char amo[32], alo[32];
	send_one("acme-wa", "447700900006", "at_most_once", amo);
	send_one("acme-wa", "447700900007", "at_least_once", alo);
	struct sim_want a = {amo, 1}, b = {alo, 1};
	assert_true(wait_until(sim_has, &W, &a, 10));
	assert_true(wait_until(sim_has, &W, &b, 10));
	assert_string_equal(status_of(amo), "sending");
	assert_string_equal(status_of(alo), "sending");
	world_kill9_serve(&W);
	sim_knobs("{\"latency_ms\": 0}");
	world_start_serve(&W);

	struct want w = {alo, "read"};
	assert_true(wait_until(status_is, &W, &w, 20));
	w = (struct want){amo, "unknown"};
	assert_true(wait_until(status_is, &W, &w, 5));
	assert_int_equal(sim_count(alo), 2);
	assert_int_equal(sim_count(amo), 1);
	json_t *evs = events_of(amo);
	assert_int_equal(events_with(evs, "lease_expired", "policy", "at_most_once"), 1);
	assert_int_equal(events_with(evs, "lease_expired", "outcome", "unknown"), 1);
	json_decref(evs);
	evs = events_of(alo);
	assert_int_equal(events_with(evs, "lease_expired", "possible_duplicate", "true"), 1);
	json_decref(evs);
	/* Still once, after everything has settled. */
	usleep(1500000);
	assert_int_equal(sim_count(amo), 1);
	assert_string_equal(status_of(amo), "unknown");
	world_free(&W);
}

/* The metrics page counts them. */
static long metric(const char *line_prefix)
{
	struct resp r = metrics_get(&W);
	assert_int_equal(r.status, 200);
	const char *p = strstr(r.body, line_prefix);
	long v = p ? strtol(p + strlen(line_prefix), NULL, 10) : -1;
	resp_free(&r);
	return v;
}

/* A scripted recipient under the pair rate limit (131056) waits alone: a
 * message to another recipient, sent after it, goes out at once. Under the
 * number's limit (130429) the account pauses: the next message waits. */
static void test_rate_limit_scope(void **state)
{
	(void)state;
	world_up(NULL, "dispatch:\n  backoff_base_ms: 100\n  backoff_max_ms: 200\n"
	               "  max_attempts: 2\n");
	sim_knobs("{\"recipients\": {\"447700900010\": {\"error\": 131056},"
	          " \"447700900020\": {\"error\": 130429}}}");
	char limited[32], other[32];
	send_one("acme-wa", "447700900010", "at_least_once", limited);
	struct want w = {limited, "queued|failed"};
	assert_true(wait_until(status_is, &W, &w, 5));
	/* The pair limit's hint is 6 s; the account is not paused: another
	 * recipient's message is sent at once. */
	int64_t t0 = 0;
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t0 = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
	}
	send_one("acme-wa", "447700900011", "at_least_once", other);
	w = (struct want){other, "sent|delivered|read"};
	assert_true(wait_until(status_is, &W, &w, 3));
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long ms = (long)(ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 - t0);
	print_message("another recipient's send after a pair rate limit: %ld ms\n", ms);
	assert_true(ms < 2000);
	json_t *evs = events_of(limited);
	assert_int_equal(events_with(evs, "retry", "rate_scope", "recipient"), 1);
	json_decref(evs);

	/* The number's limit: the account pauses (Retry-After 1 s from the
	 * simulator), so a message accepted right after the limited answer
	 * waits for it. "Right after" is seen at the simulator (its 429 count),
	 * not through the store, whose commit may lag. */
	long r429 = sim_rejected_429();
	char acct_limited[32], next[32];
	send_one("acme-wa", "447700900020", "at_least_once", acct_limited);
	for (int i = 0; i < 500 && sim_rejected_429() == r429; i++)
		usleep(2000);
	assert_true(sim_rejected_429() > r429);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
	send_one("acme-wa", "447700900021", "at_least_once", next);
	w = (struct want){next, "sent|delivered|read"};
	assert_true(wait_until(status_is, &W, &w, 5));
	evs = events_of(next);
	int64_t sent_at = event_at(evs, "sent");
	json_decref(evs);
	evs = events_of(acct_limited);
	assert_true(events_with(evs, "retry", "rate_scope", "account") >= 1);
	json_decref(evs);
	struct resp r = msg_get(next);
	int64_t created = 0;
	assert_int_equal(
	    hr_time_parse(json_string_value(json_object_get(r.json, "created_at")), &created), 0);
	resp_free(&r);
	ms = (long)((sent_at - created) / 1000);
	print_message("the next send after the number's rate limit: %ld ms after it was accepted\n",
	              ms);
	assert_true(ms >= 500);
	world_free(&W);
}

#define OUTAGE_N 10

/* The provider hangs past the timeout for a few seconds, then recovers. */
static void test_outage(void **state)
{
	(void)state;
	world_up(NULL, "dispatch:\n  http_timeout_ms: 800\n  backoff_base_ms: 300\n"
	               "  backoff_max_ms: 1000\n  lease_seconds: 3\n  max_attempts: 12\n");
	/* Receipts far off: what is checked is what Herald did, not what the
	 * late receipts settle afterwards. */
	sim_knobs("{\"latency_ms\": 1500, \"sent_delay_ms\": 120000,"
	          " \"delivered_delay_ms\": 120000, \"read_delay_ms\": 120000}");
	char amo[OUTAGE_N][32], alo[OUTAGE_N][32];
	for (int i = 0; i < OUTAGE_N; i++) {
		char to[32];
		snprintf(to, sizeof to, "4477009001%02d", i);
		send_one("acme-wa", to, "at_most_once", amo[i]);
		snprintf(to, sizeof to, "4477009002%02d", i);
		send_one("acme-wa", to, "at_least_once", alo[i]);
	}
	sleep(3);
	sim_knobs("{\"latency_ms\": 0}");
	for (int i = 0; i < OUTAGE_N; i++) {
		struct want w = {alo[i], "sent|delivered|read"};
		assert_true(wait_until(status_is, &W, &w, 20));
	}
	long resent = 0;
	for (int i = 0; i < OUTAGE_N; i++) {
		struct want w = {amo[i], "unknown"};
		assert_true(wait_until(status_is, &W, &w, 5));
		assert_int_equal(sim_count(amo[i]), 1);
		json_t *evs = events_of(alo[i]);
		int dups = events_with(evs, "retry", "possible_duplicate", "true");
		json_decref(evs);
		assert_true(dups >= 1); /* each was caught by the outage */
		assert_int_equal(sim_count(alo[i]), dups + 1);
		resent += dups;
	}
	print_message("outage: %d at_most_once unknown (each received once), %d at_least_once "
	              "sent, %ld resends after unknown outcome\n",
	              OUTAGE_N, OUTAGE_N, resent);
	assert_int_equal(
	    metric("herald_messages_unknown_total{channel=\"whatsapp\",reason=\"timeout_after_write\"} "),
	    OUTAGE_N);
	assert_int_equal(metric("herald_resends_after_unknown_total{channel=\"whatsapp\","
	                        "reason=\"timeout_after_write\"} "),
	                 resent);
	world_free(&W);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reset_after_request),
	    cmocka_unit_test(test_hang_at_most_once),
	    cmocka_unit_test(test_hang_at_least_once),
	    cmocka_unit_test(test_refused_retried),
	    cmocka_unit_test(test_kill9_in_flight),
	    cmocka_unit_test(test_rate_limit_scope),
	    cmocka_unit_test(test_outage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
