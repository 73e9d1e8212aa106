/*
 * store_test.h - helpers shared by the store conformance suite (test_store.c)
 * and the SQLite backend's own tests (test_sqlite.c). Everything here talks
 * to a store only through struct store_ops, so it works on any backend.
 *
 * Include after <setjmp.h>, <stdarg.h>, <stddef.h> and <cmocka.h>. Helpers
 * fail the running test through cmocka: call them from the test's thread
 * only, never from a worker thread.
 */
#ifndef HR_TEST_STORE_TEST_H
#define HR_TEST_STORE_TEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "herald.h"
#include "store/store.h"

#define SEC 1000000LL
#define CONTENT "{\"type\":\"text\",\"text\":{\"body\":\"hello\"}}"

/* How long any test waits for something that should take milliseconds. */
#define WAIT_US (20 * SEC)

/* Polls until *v == want or timeout_us passes; true if it got there. */
static inline bool wait_int(atomic_int *v, int want, int64_t timeout_us)
{
	int64_t deadline = hr_mono_us() + timeout_us;
	while (atomic_load(v) != want && hr_mono_us() < deadline)
		usleep(500);
	return atomic_load(v) == want;
}

static inline void mk_msg(struct message *m, const char *tenant, const char *account, int prio,
                          int64_t due)
{
	memset(m, 0, sizeof *m);
	hr_id_new(m->id);
	hr_strlcpy(m->tenant_id, tenant, sizeof m->tenant_id);
	hr_strlcpy(m->account_id, account, sizeof m->account_id);
	strcpy(m->channel, "whatsapp");
	strcpy(m->recipient, "+447911123456");
	m->content = (char *)CONTENT;
	m->body = (char *)"hello";
	m->priority = prio;
	m->max_attempts = 5;
	m->due_at = due;
}

static inline int64_t count_msgs(struct store *st, const char *tenant)
{
	int64_t c[MSG__COUNT], total = 0;
	assert_int_equal(st->ops->message_counts(st, tenant, c), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		total += c[i];
	return total;
}

/* The status counts the store keeps (message_gauges, what /metrics shows)
 * against a recount of the message table: true if every status agrees;
 * otherwise false and why in why[size]. Callable from a teardown. */
static inline bool gauges_match(struct store *st, char *why, size_t size)
{
	int64_t g[MSG__COUNT], c[MSG__COUNT];
	int rc = st->ops->message_gauges(st, g);
	if (rc == 0)
		rc = st->ops->message_counts(st, NULL, c);
	if (rc) {
		snprintf(why, size, "reading the counts: %s", hr_code_name(rc));
		return false;
	}
	for (int i = 0; i < MSG__COUNT; i++)
		if (g[i] != c[i]) {
			snprintf(why, size, "status %s: the kept count says %lld, a recount %lld",
			         msg_status_name((enum msg_status)i), (long long)g[i],
			         (long long)c[i]);
			return false;
		}
	return true;
}

static inline void assert_gauges_match(struct store *st)
{
	char why[160];
	if (!gauges_match(st, why, sizeof why))
		fail_msg("message_status_count disagrees with the messages: %s", why);
}

static inline struct message msg_of(struct store *st, const char *id)
{
	struct message m;
	assert_int_equal(st->ops->message_get(st, NULL, id, &m), 0);
	return m;
}

static inline enum msg_status status_of(struct store *st, const char *id)
{
	struct message m = msg_of(st, id);
	enum msg_status s = m.status;
	message_clear(&m);
	return s;
}

/* Inserts one message (tenant t1) due a second ago and claims it: a
 * SENDING message, attempt 1. */
static inline void claimed_msg(struct store *st, const char *account, int max_attempts, int64_t now,
                               int64_t lease_us, char id[HR_ID_LEN + 1])
{
	struct message m, c;
	mk_msg(&m, "t1", account, 0, now - SEC);
	m.max_attempts = max_attempts;
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, account, now, lease_us, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c.id, m.id);
	assert_int_equal(c.attempts, 1);
	message_clear(&c);
	strcpy(id, m.id);
}

/* Inserts one message on its own account, claims it and records SEND_OK
 * with provider_id: a message in SENT with a known provider id. */
static inline void sent_msg(struct store *st, const char *account, const char *provider_id,
                            char id[HR_ID_LEN + 1])
{
	claimed_msg(st, account, 5, hr_now_us() + SEC, 30 * SEC, id);
	struct send_result r = {
	    .kind = SEND_OK, .attempt = 1, .http_status = 200, .latency_us = 1500};
	strcpy(r.message_id, id);
	hr_strlcpy(r.provider_id, provider_id, sizeof r.provider_id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
}

struct events {
	struct message_event *e;
	size_t n;
};

static inline struct events events_of(struct store *st, const char *id)
{
	struct events ev;
	assert_int_equal(st->ops->message_events(st, id, &ev.e, &ev.n), 0);
	return ev;
}

static inline void events_free(struct events *ev)
{
	for (size_t i = 0; i < ev->n; i++)
		message_event_clear(&ev->e[i]);
	free(ev->e);
}

/* Events of the message with this type (NULL: all of them). */
static inline size_t count_events(struct store *st, const char *id, const char *type)
{
	struct events ev = events_of(st, id);
	size_t n = 0;
	for (size_t i = 0; i < ev.n; i++)
		n += !type || strcmp(ev.e[i].type, type) == 0;
	events_free(&ev);
	return n;
}

/* The detail of an event as parsed JSON (fails the test if it does not parse). */
static inline json_t *detail_of(const struct message_event *e)
{
	assert_non_null(e->detail);
	json_error_t jerr;
	json_t *j = json_loads(e->detail, 0, &jerr);
	if (!j)
		fprintf(stderr, "bad detail JSON: %s: %s\n", jerr.text, e->detail);
	assert_non_null(j);
	return j;
}

/* Appends a raw webhook on a channel and returns its inbox id (the newest
 * pending row). */
static inline int64_t inbox_add_on(struct store *st, const char *account, const char *channel)
{
	assert_int_equal(st->ops->inbox_append(st, account, channel, "", "{}", 2, NULL, NULL), 0);
	struct inbox_row *rows;
	size_t n;
	assert_int_equal(st->ops->inbox_fetch(st, INT64_MAX, 1000, &rows, &n), 0);
	assert_true(n > 0);
	int64_t id = 0;
	for (size_t i = 0; i < n; i++) {
		if (rows[i].id > id)
			id = rows[i].id;
		inbox_row_clear(&rows[i]);
	}
	free(rows);
	return id;
}

static inline int64_t inbox_add(struct store *st, const char *account)
{
	return inbox_add_on(st, account, "whatsapp");
}

/*
 * A message of tenant t1 made at `at` (its id's time and its created_at),
 * alone on `account` (which must have no other due message), brought to
 * `status` through the store's own operations: QUEUED (due in an hour: a
 * scheduled message), SENDING (claimed, lease one hour), SENT (provider id
 * "p-<account>"), DELIVERED or READ (a webhook after SENT), FAILED (a
 * permanent send failure), UNKNOWN (its only attempt's lease ran out),
 * SUPPRESSED (its recipient, "+1555<account's length>", opted out first).
 */
static inline void msg_at_status(struct store *st, const char *account, const char *channel,
                                 int64_t at, enum msg_status status, char id[HR_ID_LEN + 1])
{
	int64_t now = hr_now_us();
	struct message m, c;
	mk_msg(&m, "t1", account, 0, status == MSG_QUEUED ? now + 3600 * SEC : at);
	hr_id_at(at, m.id);
	hr_strlcpy(m.channel, channel, sizeof m.channel);
	m.created_at = at;
	m.max_attempts = status == MSG_UNKNOWN ? 1 : 5;
	struct hr_err err = {0};
	if (status == MSG_SUPPRESSED) {
		snprintf(m.recipient, sizeof m.recipient, "+1555%zu", strlen(account));
		assert_int_equal(
		    st->ops->suppression_put(st, "t1", channel, m.recipient, "test", &err), 0);
	}
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	strcpy(id, m.id);
	if (status != MSG_QUEUED) {
		size_t n;
		int64_t lease = status == MSG_UNKNOWN ? SEC : 3600 * SEC;
		assert_int_equal(st->ops->claim(st, account, now, lease, 1, &c, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(c.id, m.id);
		message_clear(&c);
	}
	if (status == MSG_UNKNOWN) {
		int k = 0;
		assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &k), 0);
		assert_true(k >= 1);
	}
	if (status == MSG_SENT || status == MSG_DELIVERED || status == MSG_READ ||
	    status == MSG_FAILED) {
		struct send_result r = {.attempt = 1, .http_status = 200, .latency_us = 1000};
		strcpy(r.message_id, m.id);
		if (status == MSG_FAILED) {
			r.kind = SEND_FAILED;
			r.http_status = 400;
			strcpy(r.error_code, "131026");
			strcpy(r.error_text, "undeliverable");
			r.error_class = "permanent";
		} else {
			r.kind = SEND_OK;
			snprintf(r.provider_id, sizeof r.provider_id, "p-%s", account);
		}
		assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	}
	if (status == MSG_DELIVERED || status == MSG_READ) {
		struct wh_status ws = {.status = status, .provider_at = now};
		snprintf(ws.provider_id, sizeof ws.provider_id, "p-%s", account);
		struct inbox_parsed row = {.inbox_id = inbox_add_on(st, account, channel),
		                           .account_id = account,
		                           .statuses = &ws,
		                           .nstatuses = 1};
		struct apply_stats stats;
		assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &stats), 0);
		assert_int_equal(stats.applied, 1);
	}
	assert_int_equal(status_of(st, m.id), status);
}

/* The result of one asynchronous write, filled by outcome_cb. */
struct outcome {
	atomic_int done;
	int rc;
	struct hr_err err;
};

static inline void outcome_cb(void *arg, int rc, const struct hr_err *err)
{
	struct outcome *o = arg;
	o->rc = rc;
	if (err)
		o->err = *err;
	atomic_store(&o->done, 1);
}

static inline void wait_outcome(struct outcome *o)
{
	assert_true(wait_int(&o->done, 1, WAIT_US));
}

/* ---------------------------------------------------------------------------
 * Scenarios both files run: the conformance suite checks what they leave
 * behind through store_ops, test_sqlite.c how the SQLite writer grouped them.
 * ------------------------------------------------------------------------- */

struct inserter {
	pthread_t th;
	struct store *st;
	int n, failures;
	char (*ids)[HR_ID_LEN + 1]; /* n entries: the ids inserted */
};

static inline void *insert_thread(void *arg)
{
	struct inserter *in = arg;
	for (int i = 0; i < in->n; i++) {
		struct message m;
		mk_msg(&m, "t1", "gc", 0, 0);
		if (in->st->ops->message_insert(in->st, &m, 1, NULL, NULL, NULL) != 0)
			in->failures++;
		memcpy(in->ids[i], m.id, sizeof m.id);
	}
	return NULL;
}

/*
 * T threads each make PER blocking single-message inserts at once; ids gets
 * the T * PER ids (caller allocates). Each thread's failures are asserted 0.
 */
static inline void concurrent_inserts(struct store *st, int T, int PER, char (*ids)[HR_ID_LEN + 1])
{
	struct inserter *in = calloc((size_t)T, sizeof *in);
	assert_non_null(in);
	int64_t t0 = hr_mono_us();
	for (int i = 0; i < T; i++) {
		in[i] = (struct inserter){.st = st, .n = PER, .ids = ids + (size_t)i * PER};
		assert_int_equal(pthread_create(&in[i].th, NULL, insert_thread, &in[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(in[i].th, NULL);
	int64_t dt = hr_mono_us() - t0;
	fprintf(stderr, "    %d blocking inserts from %d threads: %.0f/s\n", T * PER, T,
	        T * PER / ((double)dt / 1e6));
	for (int i = 0; i < T; i++)
		assert_int_equal(in[i].failures, 0);
	free(in);
}

/*
 * A big job keeps the writer busy while four more queue up behind it, two
 * of which fail: x (messages b) on an idempotency key already taken, d on a
 * duplicate message id after it had already written a first message (its
 * savepoint must undo that). failing_jobs_prepare writes the message and
 * key they collide with; failing_jobs_run queues the five jobs and waits.
 */
enum { FJ_BIG = 5000 };

struct failing_jobs {
	struct message *big; /* FJ_BIG, heap: free it */
	struct message a, b[2], c, d[2];
	struct idem_put taken;
	struct outcome ob, oa, ox, oc, od;
};

static inline void failing_jobs_prepare(struct store *st, struct failing_jobs *fj)
{
	memset(fj, 0, sizeof *fj);
	fj->big = calloc(FJ_BIG, sizeof *fj->big);
	assert_non_null(fj->big);
	for (int i = 0; i < FJ_BIG; i++)
		mk_msg(&fj->big[i], "t1", "iso", 1, 0);
	mk_msg(&fj->a, "t1", "iso", 0, 0);
	mk_msg(&fj->b[0], "t1", "iso", 0, 0);
	mk_msg(&fj->b[1], "t1", "iso", 0, 0);
	mk_msg(&fj->c, "t1", "iso", 0, 0);
	fj->taken = (struct idem_put){
	    .tenant_id = "t1", .key = "dup", .request_hash = "h", .http_status = 202};
	struct message first;
	mk_msg(&first, "t1", "iso", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &first, 1, &fj->taken, NULL, NULL), 0);
	mk_msg(&fj->d[0], "t1", "iso", 0, 0);
	fj->d[1] = first; /* d[0] is written, then the duplicate fails the job */
}

static inline void failing_jobs_run(struct store *st, struct failing_jobs *fj)
{
	assert_int_equal(st->ops->message_insert(st, fj->big, FJ_BIG, NULL, outcome_cb, &fj->ob),
	                 0);
	assert_int_equal(st->ops->message_insert(st, &fj->a, 1, NULL, outcome_cb, &fj->oa), 0);
	assert_int_equal(st->ops->message_insert(st, fj->b, 2, &fj->taken, outcome_cb, &fj->ox), 0);
	assert_int_equal(st->ops->message_insert(st, fj->d, 2, NULL, outcome_cb, &fj->od), 0);
	assert_int_equal(st->ops->message_insert(st, &fj->c, 1, NULL, outcome_cb, &fj->oc), 0);
	wait_outcome(&fj->ob);
	wait_outcome(&fj->od);
	wait_outcome(&fj->oa);
	wait_outcome(&fj->ox);
	wait_outcome(&fj->oc);
	assert_int_equal(fj->ob.rc, 0);
	assert_int_equal(fj->oa.rc, 0);
	assert_int_equal(fj->oc.rc, 0);
	assert_int_equal(fj->ox.rc, HR_ECONFLICT);
	assert_int_equal(fj->od.rc, HR_ECONFLICT);
}

#endif
