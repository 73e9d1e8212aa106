/*
 * test_store.c - the store conformance suite: every behaviour of a store
 * backend, checked only through struct store_ops (and the public _clear
 * helpers), so that every backend runs the same suite. HERALD_TEST_STORE
 * picks the backend ("sqlite" by default); CMakeLists.txt registers the suite
 * once per backend (unit/test_store_<backend>). What only one backend has
 * (SQLite's query plans, pragmas, schema rows, its writer's grouping) is
 * tested in that backend's own file (test_sqlite.c).
 *
 * Covered: opening and migrations, configuration rows, durable accept and
 * idempotency, the queue (claim order, leases, send outcomes, fencing), the
 * webhook inbox and its application by precedence, inbound replies and what
 * they ask for (opt-out, opt-in, auto-replies), suppression, recipient
 * aliases, listing, the writer's contract (async completion, failure
 * isolation, queue limits), and concurrency: claimers, late outcomes and
 * appliers racing each other. Each test gets a fresh, empty database.
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
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "herald.h"
#include "store/daily.h"
#include "store/store.h"
#include "pgtest.h"
#include "store_test.h"

/* ---------------------------------------------------------------------------
 * Backends under test.
 * ------------------------------------------------------------------------- */

/*
 * How to give one test an empty database of a backend. The suite opens,
 * reopens and closes stores through the backend's own store_ops (found by
 * name with store_backend(), as the server does); a fixture only makes the
 * database and removes it. Adding a backend is one entry in `fixtures` and
 * one herald_store_conformance() line in CMakeLists.txt.
 */
struct store_fixture {
	const char *name; /* HERALD_TEST_STORE value and store_backend() name */
	/* Makes an empty database for one test and writes its dsn: 0, or -1. */
	int (*create)(char *dsn, size_t size);
	/* Removes what create made; every store on it is closed by then. */
	void (*destroy)(const char *dsn);
	/* Releases what the fixture holds for the whole run (NULL: nothing). */
	void (*finish)(void);
};

/* SQLite: a file in a fresh mkdtemp() directory. */
static int sqlite_create(char *dsn, size_t size)
{
	char dir[] = "/tmp/hr_store_XXXXXX";
	if (!mkdtemp(dir))
		return -1;
	snprintf(dsn, size, "%s/herald.db", dir);
	return 0;
}

static void sqlite_destroy(const char *dsn)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[300];
	for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
		snprintf(p, sizeof p, "%s%s", dsn, sfx[i]);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s", dsn);
	char *slash = strrchr(p, '/');
	if (slash) {
		*slash = '\0';
		rmdir(p);
	}
}

/* PostgreSQL: one real server (tests/pgtest.h) for the whole run, started
 * by the first test, and a fresh database per test on it. */
static struct pgtest pg_server;
static bool pg_started;
static int pg_seq;

static int postgres_create(char *dsn, size_t size)
{
	if (!pg_started) {
		if (pgtest_start(&pg_server) != 0) {
			fprintf(stderr, "pgtest: %s\n", pg_server.err);
			return -1;
		}
		pg_started = true;
	}
	char name[32];
	snprintf(name, sizeof name, "t%d_%d", (int)getpid(), ++pg_seq);
	if (pgtest_createdb(&pg_server, name) != 0) {
		fprintf(stderr, "pgtest: %s\n", pg_server.err);
		return -1;
	}
	pgtest_conninfo(&pg_server, name, dsn, size);
	return 0;
}

static void postgres_destroy(const char *dsn)
{
	const char *db = strstr(dsn, "dbname=");
	if (!db)
		return;
	char name[32];
	snprintf(name, sizeof name, "%.*s", (int)strcspn(db + 7, " "), db + 7);
	PGconn *c = pgtest_connect(&pg_server, NULL);
	if (!c)
		return;
	char sql[96];
	snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "drop %s: %s", name, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static void postgres_finish(void)
{
	if (pg_started && pgtest_stop(&pg_server) != 0)
		fprintf(stderr, "pgtest: %s\n", pg_server.err);
	pg_started = false;
}

static const struct store_fixture fixtures[] = {
    {"sqlite", sqlite_create, sqlite_destroy, NULL},
    {"postgres", postgres_create, postgres_destroy, postgres_finish},
};

static const struct store_fixture *fixture; /* chosen in main() */
static const struct store_ops *backend;     /* store_backend(fixture->name) */

struct fx {
	char dsn[256];
	struct store *st;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	if (fixture->create(f->dsn, sizeof f->dsn) != 0) {
		fprintf(stderr, "%s: cannot create a database\n", fixture->name);
		free(f);
		return -1;
	}
	struct hr_err err = {0};
	if (backend->open(f->dsn, NULL, &f->st, &err) != 0) {
		fprintf(stderr, "open %s: %s: %s\n", f->dsn, err.field, err.msg);
		fixture->destroy(f->dsn);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* After every test, whatever it did (transitions, rollbacks, campaigns,
 * retention, webhooks, fallbacks, several stores on one database): the
 * status counts the store keeps for /metrics equal a recount. */
static int fx_teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0;
	char why[160];
	if (f->st && !gauges_match(f->st, why, sizeof why)) {
		fprintf(stderr, "teardown: message_status_count disagrees with the messages: %s\n",
		        why);
		rc = -1;
	}
	if (f->st)
		backend->close(f->st);
	fixture->destroy(f->dsn);
	free(f);
	return rc;
}

/* Closes the test's store and opens the same database again with opts. */
static void fx_reopen(struct fx *f, const struct store_opts *opts)
{
	if (f->st)
		backend->close(f->st);
	f->st = NULL;
	struct hr_err err = {0};
	assert_int_equal(backend->open(f->dsn, opts, &f->st, &err), 0);
}

/* ---------------------------------------------------------------------------
 * Helpers of this suite (the shared ones are in store_test.h).
 * ------------------------------------------------------------------------- */

/* True if inbox_fetch at `now` hands out row id; *attempts (if not NULL)
 * gets how often the applier already tried it. */
static bool inbox_has(struct store *st, int64_t now, int64_t id, int *attempts)
{
	struct inbox_row *rows;
	size_t n;
	assert_int_equal(st->ops->inbox_fetch(st, now, 1000, &rows, &n), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		if (rows[i].id == id) {
			found = true;
			if (attempts)
				*attempts = rows[i].attempts;
		}
		inbox_row_clear(&rows[i]);
	}
	free(rows);
	return found;
}

/* Applies one webhook status, arrived on `account`, in its own inbox row. */
static struct apply_stats hook_status(struct store *st, const char *account,
                                      const char *provider_id, enum msg_status status, int64_t now,
                                      int64_t *inbox_id)
{
	struct wh_status ws = {.status = status, .provider_at = 1750263773LL * SEC};
	hr_strlcpy(ws.provider_id, provider_id, sizeof ws.provider_id);
	strcpy(ws.provider_ts, "1750263773");
	if (status == MSG_FAILED) {
		strcpy(ws.error_code, "131026");
		strcpy(ws.error_text, "Message undeliverable");
	}
	struct inbox_parsed row = {.inbox_id = inbox_add(st, account),
	                           .account_id = account,
	                           .statuses = &ws,
	                           .nstatuses = 1};
	if (inbox_id)
		*inbox_id = row.inbox_id;
	struct apply_stats stats;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &stats), 0);
	return stats;
}

static void free_list(struct message *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		message_clear(&v[i]);
	free(v);
}

static void free_supp(struct suppression_row *v)
{
	free(v);
}

/* Number of suppressed recipients of a tenant (channel NULL: all channels). */
static size_t supp_count(struct store *st, const char *tenant, const char *channel)
{
	struct suppression_row *v;
	size_t n;
	assert_int_equal(st->ops->suppression_list(st, tenant, channel, &v, &n), 0);
	free_supp(v);
	return n;
}

/* Completion counting for asynchronous writes. */
static atomic_int cb_calls, cb_fail;

static void count_cb(void *arg, int rc, const struct hr_err *err)
{
	(void)arg;
	if (rc != 0 || err != NULL)
		atomic_fetch_add(&cb_fail, 1);
	atomic_fetch_add(&cb_calls, 1);
}

static void wait_calls(int n)
{
	wait_int(&cb_calls, n, WAIT_US);
	assert_int_equal(atomic_load(&cb_calls), n);
}

/* ---------------------------------------------------------------------------
 * Opening, migrations and the registry.
 * ------------------------------------------------------------------------- */

/* The registry finds the backend by its name. Migrations are idempotent:
 * nothing is applied twice on reopening, and a second store on the same
 * database (another process running `herald migrate`) is harmless and sees
 * what the first wrote. */
static void test_open_migrate_idempotent(void **state)
{
	struct fx *f = *state;
	assert_ptr_equal(store_backend(fixture->name), backend);
	assert_string_equal(backend->name, fixture->name);
	assert_null(store_backend("oracle"));
	assert_null(store_backend(NULL));

	int applied = -1;
	struct hr_err err = {0};
	assert_int_equal(f->st->ops->migrate(f->st, &applied, &err), 0);
	assert_int_equal(applied, 0);
	struct message m;
	mk_msg(&m, "t1", "acc", 0, 0);
	assert_int_equal(f->st->ops->message_insert(f->st, &m, 1, NULL, NULL, NULL), 0);

	fx_reopen(f, NULL);
	struct store *other;
	assert_int_equal(backend->open(f->dsn, NULL, &other, &err), 0);
	applied = -1;
	assert_int_equal(other->ops->migrate(other, &applied, &err), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(status_of(other, m.id), MSG_QUEUED);
	backend->close(other);
	applied = -1;
	assert_int_equal(f->st->ops->migrate(f->st, &applied, &err), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(status_of(f->st, m.id), MSG_QUEUED);
	assert_int_equal(count_msgs(f->st, NULL), 1);
}

/* ---------------------------------------------------------------------------
 * Configuration rows.
 * ------------------------------------------------------------------------- */

static void test_config_rows(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	/* Upserting a tenant twice is fine (no read op returns tenants; the
	 * stored name is checked in the backends' own tests). */
	struct tenant_row t = {.id = "acme", .name = "Acme"};
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);
	strcpy(t.name, "Acme Ltd");
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);
	assert_int_equal(st->ops->api_key_put(st, "acme", "abc123", "ci", &err), 0);
	char tenant[HR_NAME_MAX];
	assert_int_equal(st->ops->api_key_lookup(st, "abc123", tenant), 0);
	assert_string_equal(tenant, "acme");
	assert_int_equal(st->ops->api_key_lookup(st, "nope", tenant), HR_ENOTFOUND);
	assert_int_equal(st->ops->api_key_put(st, "", "k", NULL, &err), HR_EINVAL);
	assert_string_equal(err.field, "tenant_id");

	struct account_row a = {.id = "wa1",
	                        .tenant_id = "acme",
	                        .channel = "whatsapp",
	                        .config = (char *)"{\"phone_number_id\":\"1\"}"};
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
	struct account_row b = {.id = "sms1", .tenant_id = "other", .channel = "sms"};
	assert_int_equal(st->ops->account_upsert(st, &b, &err), 0);
	a.config = (char *)"{\"phone_number_id\":\"2\"}";
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
	struct account_row *rows;
	size_t n;
	assert_int_equal(st->ops->account_list(st, NULL, &rows, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		account_row_clear(&rows[i]);
	free(rows);
	assert_int_equal(st->ops->account_list(st, "acme", &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].id, "wa1");
	assert_string_equal(rows[0].channel, "whatsapp");
	assert_string_equal(rows[0].config, "{\"phone_number_id\":\"2\"}");
	account_row_clear(&rows[0]);
	free(rows);

	struct template_row tp = {.tenant_id = "acme",
	                          .channel = "whatsapp",
	                          .name = "otp",
	                          .language = "en",
	                          .body = (char *)"Code {{1}}",
	                          .param_count = 1};
	assert_int_equal(st->ops->template_upsert(st, &tp, &err), 0);
	struct template_row got;
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "otp", "en", &got), 0);
	assert_string_equal(got.body, "Code {{1}}");
	assert_int_equal(got.param_count, 1);
	template_row_clear(&got);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "otp", "pt", &got),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->template_get(st, "other", "whatsapp", "otp", "en", &got),
	                 HR_ENOTFOUND);
}

/* ---------------------------------------------------------------------------
 * Durable accept.
 * ------------------------------------------------------------------------- */

static void test_insert_get_events(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct message m;
	mk_msg(&m, "t1", "acc", PRIO_TRANSACTIONAL, 0);
	strcpy(m.batch_id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	int64_t before = hr_now_us();
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);

	struct message g;
	assert_int_equal(st->ops->message_get(st, "t1", m.id, &g), 0);
	assert_string_equal(g.id, m.id);
	assert_string_equal(g.tenant_id, "t1");
	assert_string_equal(g.account_id, "acc");
	assert_string_equal(g.channel, "whatsapp");
	assert_string_equal(g.recipient, "+447911123456");
	assert_string_equal(g.batch_id, m.batch_id);
	assert_string_equal(g.content, CONTENT);
	assert_string_equal(g.body, "hello");
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.attempts, 0);
	assert_int_equal(g.max_attempts, 5);
	assert_true(g.created_at >= before && g.created_at <= hr_now_us());
	assert_int_equal(g.due_at, g.created_at); /* due_at 0 means now */
	assert_int_equal(g.lease_until, 0);
	assert_string_equal(g.provider_id, "");
	message_clear(&g);

	/* Tenant isolation: another tenant's id is simply not there. */
	assert_int_equal(st->ops->message_get(st, "t2", m.id, &g), HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get(st, NULL, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &g),
	                 HR_ENOTFOUND);

	struct events ev = events_of(st, m.id);
	assert_int_equal(ev.n, 1);
	assert_string_equal(ev.e[0].type, "accepted");
	assert_string_equal(ev.e[0].source, "api");
	assert_int_equal(ev.e[0].status, MSG_QUEUED);
	assert_true(ev.e[0].applied);
	assert_string_equal(ev.e[0].message_id, m.id);
	events_free(&ev);

	/* Same id again: conflict, nothing new. Bad input: rejected up front. */
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), HR_ECONFLICT);
	assert_int_equal(count_events(st, m.id, NULL), 1);
	struct message bad = m;
	bad.content = NULL;
	assert_int_equal(st->ops->message_insert(st, &bad, 1, NULL, NULL, NULL), HR_EINVAL);
}

static void test_idempotency_conflict_rolls_back(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct message a[2], b[3];
	for (int i = 0; i < 2; i++)
		mk_msg(&a[i], "t1", "acc", 1, 0);
	for (int i = 0; i < 3; i++)
		mk_msg(&b[i], "t1", "acc", 1, 0);
	struct idem_put ip = {.tenant_id = "t1",
	                      .key = "K-1",
	                      .request_hash = "abc",
	                      .http_status = 202,
	                      .response = "{\"ok\":true}"};
	assert_int_equal(st->ops->message_insert(st, a, 2, &ip, NULL, NULL), 0);

	struct idem_row r;
	assert_int_equal(st->ops->idem_get(st, "t1", "K-1", &r), 0);
	assert_string_equal(r.request_hash, "abc");
	assert_int_equal(r.http_status, 202);
	assert_string_equal(r.response, "{\"ok\":true}");
	idem_row_clear(&r);
	assert_int_equal(st->ops->idem_get(st, "t2", "K-1", &r), HR_ENOTFOUND);

	ip.request_hash = "def";
	assert_int_equal(st->ops->message_insert(st, b, 3, &ip, NULL, NULL), HR_ECONFLICT);
	struct message g;
	for (int i = 0; i < 3; i++)
		assert_int_equal(st->ops->message_get(st, NULL, b[i].id, &g), HR_ENOTFOUND);
	assert_int_equal(count_msgs(st, NULL), 2);
	for (int i = 0; i < 3; i++)
		assert_int_equal(count_events(st, b[i].id, NULL), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(count_events(st, a[i].id, "accepted"), 1);
	assert_int_equal(st->ops->idem_get(st, "t1", "K-1", &r), 0);
	assert_string_equal(r.request_hash, "abc"); /* the original record stays */
	idem_row_clear(&r);

	/* The same key under another tenant is a different key. */
	ip.tenant_id = "t2";
	assert_int_equal(st->ops->message_insert(st, b, 3, &ip, NULL, NULL), 0);
	assert_int_equal(count_msgs(st, NULL), 5);
}

static void test_batch_insert_10000(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 10000 };
	struct message *m = calloc(N, sizeof *m);
	assert_non_null(m);
	for (int i = 0; i < N; i++) {
		mk_msg(&m[i], "t1", "bulk", PRIO_BULK, 0);
		snprintf(m[i].recipient, sizeof m[i].recipient, "+4479%08d", i);
	}
	int64_t t0 = hr_mono_us();
	assert_int_equal(st->ops->message_insert(st, m, N, NULL, NULL, NULL), 0);
	int64_t dt = hr_mono_us() - t0;
	fprintf(stderr, "    10000-message insert: %.1f ms\n", (double)dt / 1000.0);
	assert_int_equal(count_msgs(st, "t1"), N);
	for (int i = 0; i < N; i++) {
		struct events ev = events_of(st, m[i].id);
		assert_int_equal(ev.n, 1);
		assert_string_equal(ev.e[0].type, "accepted");
		events_free(&ev);
	}
	struct message g;
	assert_int_equal(st->ops->message_get(st, "t1", m[N - 1].id, &g), 0);
	assert_string_equal(g.recipient, m[N - 1].recipient);
	message_clear(&g);
	free(m);
}

/* ---------------------------------------------------------------------------
 * The queue.
 * ------------------------------------------------------------------------- */

static void test_claim_order_and_lease(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[5];
	mk_msg(&m[0], "t1", "a1", PRIO_BULK, now - 10 * SEC);            /* bulk, oldest */
	mk_msg(&m[1], "t1", "a1", PRIO_TRANSACTIONAL, now - 5 * SEC);    /* OTP         */
	mk_msg(&m[2], "t1", "a1", PRIO_TRANSACTIONAL, now + 3600 * SEC); /* not due  */
	mk_msg(&m[3], "t1", "a2", PRIO_TRANSACTIONAL, now - 20 * SEC);   /* other acct  */
	mk_msg(&m[4], "t1", "a1", PRIO_TRANSACTIONAL, now - 8 * SEC);    /* older OTP   */
	assert_int_equal(st->ops->message_insert(st, m, 5, NULL, NULL, NULL), 0);

	int64_t due;
	assert_int_equal(st->ops->next_due(st, "a1", &due), 0);
	assert_int_equal(due, now - 10 * SEC);

	struct message out[10];
	size_t n;
	assert_int_equal(st->ops->claim(st, "a1", now, 30 * SEC, 10, out, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(out[0].id, m[4].id); /* priority 0, older due first */
	assert_string_equal(out[1].id, m[1].id);
	assert_string_equal(out[2].id, m[0].id); /* then bulk */
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out[i].status, MSG_SENDING);
		assert_int_equal(out[i].attempts, 1);
		assert_int_equal(out[i].lease_until, now + 30 * SEC);
		assert_string_equal(out[i].content, CONTENT);
		assert_string_equal(out[i].account_id, "a1");
		message_clear(&out[i]);
	}
	assert_int_equal(status_of(st, m[0].id), MSG_SENDING);
	assert_int_equal(status_of(st, m[3].id), MSG_QUEUED);

	/* Nothing else is due; the future one is what next_due reports. */
	assert_int_equal(st->ops->claim(st, "a1", now, 30 * SEC, 10, out, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->next_due(st, "a1", &due), 0);
	assert_int_equal(due, now + 3600 * SEC);
	assert_int_equal(st->ops->next_due(st, "nobody", &due), 0);
	assert_int_equal(due, 0);

	/* A limit is a limit. */
	assert_int_equal(st->ops->claim(st, "a2", now, 30 * SEC, 1, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, m[3].id);
	message_clear(&out[0]);
	assert_int_equal(st->ops->claim(st, "a1", now + 7200 * SEC, SEC, 1, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, m[2].id);
	message_clear(&out[0]);
}

/* claim_async: answered once, from the writer, with what claim would give
 * in claim order; two asked back to back (both queued before either ran)
 * take disjoint rows; an account with nothing due gets n 0. */
struct async_claim {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int answers;
	int rc;
	size_t n;
};

static void async_claimed(void *arg, int rc, struct message *out, size_t n)
{
	(void)out;
	struct async_claim *a = arg;
	pthread_mutex_lock(&a->lock);
	a->answers++;
	a->rc = rc;
	a->n = n;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

static void async_wait(struct async_claim *a)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&a->lock);
	while (a->answers == 0 && pthread_cond_timedwait(&a->cond, &a->lock, &until) == 0)
		;
	pthread_mutex_unlock(&a->lock);
	assert_int_equal(a->answers, 1);
}

static void test_claim_async(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[5];
	for (int i = 0; i < 5; i++)
		mk_msg(&m[i], "t1", "ca", i == 3 ? PRIO_TRANSACTIONAL : PRIO_BULK,
		       now - 10 * SEC + i);
	assert_int_equal(st->ops->message_insert(st, m, 5, NULL, NULL, NULL), 0);

	struct message out1[3] = {0}, out2[3] = {0};
	struct async_claim a1 = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                         .cond = PTHREAD_COND_INITIALIZER};
	struct async_claim a2 = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                         .cond = PTHREAD_COND_INITIALIZER};
	assert_int_equal(st->ops->claim_async(st, "ca", now, 30 * SEC, 3, out1, async_claimed, &a1),
	                 0);
	assert_int_equal(st->ops->claim_async(st, "ca", now, 30 * SEC, 3, out2, async_claimed, &a2),
	                 0);
	async_wait(&a1);
	async_wait(&a2);
	assert_int_equal(a1.rc, 0);
	assert_int_equal(a1.n, 3);
	assert_int_equal(a2.rc, 0);
	assert_int_equal(a2.n, 2);
	/* The OTP first, then bulk oldest first; the second claim the rest. */
	assert_string_equal(out1[0].id, m[3].id);
	assert_string_equal(out1[1].id, m[0].id);
	assert_string_equal(out1[2].id, m[1].id);
	assert_string_equal(out2[0].id, m[2].id);
	assert_string_equal(out2[1].id, m[4].id);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(out1[i].status, MSG_SENDING);
		assert_int_equal(out1[i].attempts, 1);
		assert_int_equal(out1[i].lease_until, now + 30 * SEC);
		message_clear(&out1[i]);
	}
	for (int i = 0; i < 2; i++)
		message_clear(&out2[i]);
	for (int i = 0; i < 5; i++)
		assert_int_equal(status_of(st, m[i].id), MSG_SENDING);

	struct async_claim a3 = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                         .cond = PTHREAD_COND_INITIALIZER};
	assert_int_equal(st->ops->claim_async(st, "ca", now, 30 * SEC, 3, out1, async_claimed, &a3),
	                 0);
	async_wait(&a3);
	assert_int_equal(a3.rc, 0);
	assert_int_equal(a3.n, 0);
	/* Refused before queueing: no answer comes. */
	assert_int_equal(st->ops->claim_async(st, "", now, 30 * SEC, 3, out1, async_claimed, &a3),
	                 HR_EINVAL);
	assert_int_equal(st->ops->claim_async(st, "ca", now, 30 * SEC, 0, out1, async_claimed, &a3),
	                 HR_EINVAL);
	assert_int_equal(a3.answers, 1);
}

static void test_record_results(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[3], out[3];
	for (int i = 0; i < 3; i++)
		mk_msg(&m[i], "t1", "rr", 0, now - 3 * SEC + i);
	assert_int_equal(st->ops->message_insert(st, m, 3, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, "rr", now, 30 * SEC, 3, out, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		message_clear(&out[i]);

	struct send_result r[4] = {
	    {.kind = SEND_OK,
	     .attempt = 1,
	     .http_status = 200,
	     .latency_us = 12000,
	     .provider_id = "wamid.A"},
	    {.kind = SEND_RETRY,
	     .attempt = 1,
	     .http_status = 429,
	     .latency_us = 3000,
	     .due_at = now + 5 * SEC,
	     .error_code = "130429",
	     .error_text = "Rate limit hit",
	     .error_class = "rate_limited"},
	    {.kind = SEND_FAILED,
	     .attempt = 1,
	     .http_status = 400,
	     .error_code = "131026",
	     .error_text = "Message undeliverable",
	     .error_class = "permanent"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.nobody"}, /* unknown id */
	};
	for (int i = 0; i < 3; i++)
		strcpy(r[i].message_id, m[i].id);
	strcpy(r[3].message_id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	assert_int_equal(st->ops->record_results(st, r, 4, NULL, NULL), 0);

	struct message g;
	assert_int_equal(st->ops->message_get_by_provider_id(st, "rr", "wamid.A", &g), 0);
	assert_string_equal(g.id, m[0].id);
	assert_int_equal(g.status, MSG_SENT);
	assert_int_equal(g.lease_until, 0);
	message_clear(&g);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "other", "wamid.A", &g),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "rr", "wamid.nobody", &g),
	                 HR_ENOTFOUND);

	assert_int_equal(st->ops->message_get(st, NULL, m[1].id, &g), 0);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.due_at, now + 5 * SEC);
	assert_int_equal(g.lease_until, 0);
	assert_string_equal(g.error_code, "130429");
	assert_string_equal(g.error_text, "Rate limit hit");
	message_clear(&g);

	assert_int_equal(st->ops->message_get(st, NULL, m[2].id, &g), 0);
	assert_int_equal(g.status, MSG_FAILED);
	assert_string_equal(g.error_code, "131026");
	assert_string_equal(g.error_text, "Message undeliverable");
	message_clear(&g);

	static const struct {
		const char *type;
		int status;
		const char *key, *val;
	} want[3] = {
	    {"sent", MSG_SENT, "provider_id", "wamid.A"},
	    {"retry", MSG_QUEUED, "class", "rate_limited"},
	    {"failed", MSG_FAILED, "error_code", "131026"},
	};
	for (int i = 0; i < 3; i++) {
		struct events ev = events_of(st, m[i].id);
		assert_int_equal(ev.n, 2);
		assert_string_equal(ev.e[1].type, want[i].type);
		assert_string_equal(ev.e[1].source, "dispatcher");
		assert_int_equal(ev.e[1].status, want[i].status);
		assert_true(ev.e[1].applied);
		json_t *d = detail_of(&ev.e[1]);
		assert_string_equal(json_string_value(json_object_get(d, want[i].key)),
		                    want[i].val);
		assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
		assert_int_equal(json_integer_value(json_object_get(d, "http_status")),
		                 r[i].http_status);
		if (i == 0)
			assert_int_equal(json_integer_value(json_object_get(d, "latency_ms")), 12);
		json_decref(d);
		events_free(&ev);
	}

	/* A webhook moved it on: the same outcome recorded again (a replayed
	 * record) changes nothing, the provider id it had stays. */
	assert_int_equal(hook_status(st, "rr", "wamid.A", MSG_DELIVERED, now, NULL).applied, 1);
	struct send_result again = {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.A2"};
	strcpy(again.message_id, m[0].id);
	assert_int_equal(st->ops->record_results(st, &again, 1, NULL, NULL), 0);
	assert_int_equal(st->ops->message_get(st, NULL, m[0].id, &g), 0);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_string_equal(g.provider_id, "wamid.A");
	message_clear(&g);
	struct events ev = events_of(st, m[0].id);
	assert_string_equal(ev.e[ev.n - 1].type, "sent");
	assert_false(ev.e[ev.n - 1].applied);
	json_t *d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(d, "ignored")), "stale_attempt");
	assert_string_equal(json_string_value(json_object_get(d, "current")), "delivered");
	assert_null(json_object_get(d, "provider_id_stored"));
	json_decref(d);
	events_free(&ev);
}

/* Untrusted provider text with quotes, control bytes and broken UTF-8 must
 * still give a detail that parses; async recording calls back once. */
static void test_record_async_and_json(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct message m, out;
	mk_msg(&m, "t1", "js", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, "js", hr_now_us(), SEC, 1, &out, &n), 0);
	message_clear(&out);
	struct send_result r = {.kind = SEND_FAILED,
	                        .attempt = 1,
	                        .error_code = "x\"y",
	                        .error_text = "line1\nq\"b\\s\x01 caf\xc3\xa9 bad\xff\xc3 end"};
	strcpy(r.message_id, m.id);
	atomic_store(&cb_calls, 0);
	atomic_store(&cb_fail, 0);
	assert_int_equal(st->ops->record_results(st, &r, 1, count_cb, NULL), 0);
	wait_calls(1);
	assert_int_equal(atomic_load(&cb_fail), 0);
	struct events ev = events_of(st, m.id);
	assert_int_equal(ev.n, 2);
	json_t *d = detail_of(&ev.e[1]);
	assert_string_equal(json_string_value(json_object_get(d, "error_code")), "x\"y");
	assert_string_equal(json_string_value(json_object_get(d, "error_text")),
	                    "line1\nq\"b\\s\x01 caf\xc3\xa9 bad?? end");
	json_decref(d);
	events_free(&ev);
}

static void test_requeue_expired(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[2], out[2];
	mk_msg(&m[0], "t1", "lease", 0, now - SEC);
	mk_msg(&m[1], "t1", "lease", 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, "lease", now, SEC, 1, out, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&out[0]);
	assert_int_equal(st->ops->claim(st, "lease", now, 100 * SEC, 1, out, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&out[0]);

	int k = -1;
	assert_int_equal(st->ops->requeue_expired(st, now + SEC / 2, &k), 0);
	assert_int_equal(k, 0); /* leases still running */
	assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &k), 0);
	assert_int_equal(k, 1);
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, m[0].id, &g), 0);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.due_at, now + 2 * SEC);
	assert_int_equal(g.lease_until, 0);
	assert_int_equal(g.attempts, 1);
	message_clear(&g);
	assert_int_equal(status_of(st, m[1].id), MSG_SENDING);
	struct events ev = events_of(st, m[0].id);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.e[1].type, "lease_expired");
	assert_string_equal(ev.e[1].source, "reconciler");
	assert_int_equal(ev.e[1].status, MSG_QUEUED);
	json_t *d = detail_of(&ev.e[1]);
	assert_int_equal(json_integer_value(json_object_get(d, "lease_until")), now + SEC);
	json_decref(d);
	events_free(&ev);
	assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &k), 0);
	assert_int_equal(k, 0);

	/* Requeued means claimable again, with the attempt counted. */
	assert_int_equal(st->ops->claim(st, "lease", now + 3 * SEC, SEC, 2, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].attempts, 2);
	message_clear(&out[0]);
}

/* ---------------------------------------------------------------------------
 * Delivery policy (README "Guarantees").
 * ------------------------------------------------------------------------- */

/* The policy is stored with the message and comes back from every read:
 * get, list, claim. */
static void test_policy_stored(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[2], out[2];
	mk_msg(&m[0], "t1", "pol", 0, now - SEC);
	mk_msg(&m[1], "t1", "pol", 0, now - SEC);
	m[1].policy = POLICY_AT_MOST_ONCE;
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	struct message g = msg_of(st, m[0].id);
	assert_int_equal(g.policy, POLICY_AT_LEAST_ONCE);
	message_clear(&g);
	g = msg_of(st, m[1].id);
	assert_int_equal(g.policy, POLICY_AT_MOST_ONCE);
	message_clear(&g);
	size_t n;
	assert_int_equal(st->ops->claim(st, "pol", now, SEC, 2, out, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		bool amo = strcmp(out[i].id, m[1].id) == 0;
		assert_int_equal(out[i].policy, amo ? POLICY_AT_MOST_ONCE : POLICY_AT_LEAST_ONCE);
		message_clear(&out[i]);
	}
	/* A single insert (its own statement on PostgreSQL) keeps it too. */
	struct message one;
	mk_msg(&one, "t1", "pol1", 0, now);
	one.policy = POLICY_AT_MOST_ONCE;
	assert_int_equal(st->ops->message_insert(st, &one, 1, NULL, NULL, NULL), 0);
	g = msg_of(st, one.id);
	assert_int_equal(g.policy, POLICY_AT_MOST_ONCE);
	message_clear(&g);
}

/* The process holding a SENDING message stopped (its lease expired): an
 * at_most_once message becomes UNKNOWN on its first attempt and is never
 * claimed again; an at_least_once one goes back to the queue with its
 * event marking the next send as a possible duplicate. */
static void test_policy_lease_expiry(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[2], out[2];
	mk_msg(&m[0], "t1", "plx", 0, now - SEC);
	mk_msg(&m[1], "t1", "plx", 0, now - SEC);
	m[0].max_attempts = m[1].max_attempts = 5;
	m[1].policy = POLICY_AT_MOST_ONCE;
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, "plx", now, SEC, 2, out, &n), 0);
	assert_int_equal(n, 2);
	message_clear(&out[0]);
	message_clear(&out[1]);
	int k = -1;
	assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &k), 0);
	assert_int_equal(k, 2);
	assert_int_equal(status_of(st, m[0].id), MSG_QUEUED);
	assert_int_equal(status_of(st, m[1].id), MSG_UNKNOWN);

	struct events ev = events_of(st, m[1].id);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.e[1].type, "lease_expired");
	assert_int_equal(ev.e[1].status, MSG_UNKNOWN);
	json_t *d = detail_of(&ev.e[1]);
	assert_string_equal(json_string_value(json_object_get(d, "policy")), "at_most_once");
	assert_string_equal(json_string_value(json_object_get(d, "outcome")), "unknown");
	assert_string_equal(json_string_value(json_object_get(d, "unknown_outcome")),
	                    "lease_expired_in_flight");
	json_decref(d);
	events_free(&ev);

	ev = events_of(st, m[0].id);
	assert_int_equal(ev.n, 2);
	assert_int_equal(ev.e[1].status, MSG_QUEUED);
	d = detail_of(&ev.e[1]);
	assert_string_equal(json_string_value(json_object_get(d, "policy")), "at_least_once");
	assert_string_equal(json_string_value(json_object_get(d, "reason")),
	                    "resend after unknown outcome");
	assert_true(json_is_true(json_object_get(d, "possible_duplicate")));
	json_decref(d);
	events_free(&ev);

	/* Only the at_least_once message is claimed again. */
	assert_int_equal(st->ops->claim(st, "plx", now + 3 * SEC, SEC, 2, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, m[0].id);
	assert_int_equal(out[0].attempts, 2);
	message_clear(&out[0]);
}

/* A send whose answer never came under at_most_once: UNKNOWN with the
 * reason in its event, the id the sender chose kept; a later DELIVERED
 * receipt settles it, a stale SEND_RETRY for it changes nothing. */
static void test_policy_send_unknown(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[HR_ID_LEN + 1];
	claimed_msg(st, "pun", 5, hr_now_us() + SEC, 30 * SEC, id);
	struct send_result r = {.kind = SEND_UNKNOWN,
	                        .attempt = 1,
	                        .latency_us = 15000000,
	                        .error_code = "unknown_outcome",
	                        .error_text = "Operation timed out after 15000 milliseconds",
	                        .error_class = "unknown",
	                        .unknown_reason = "timeout_after_write",
	                        .provider_id = "chosen-by-herald-1"};
	strcpy(r.message_id, id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	struct message g = msg_of(st, id);
	assert_int_equal(g.status, MSG_UNKNOWN);
	assert_string_equal(g.error_code, "unknown_outcome");
	assert_string_equal(g.provider_id, "chosen-by-herald-1");
	assert_int_equal(g.attempts, 1);
	message_clear(&g);
	struct events ev = events_of(st, id);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.e[1].type, "unknown_outcome");
	assert_int_equal(ev.e[1].status, MSG_UNKNOWN);
	assert_true(ev.e[1].applied);
	json_t *d = detail_of(&ev.e[1]);
	assert_string_equal(json_string_value(json_object_get(d, "unknown_outcome")),
	                    "timeout_after_write");
	assert_string_equal(json_string_value(json_object_get(d, "class")), "unknown");
	json_decref(d);
	events_free(&ev);

	/* The same outcome recorded twice (a replayed group) changes nothing. */
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, id), MSG_UNKNOWN);
	ev = events_of(st, id);
	assert_int_equal(ev.n, 3);
	assert_false(ev.e[2].applied);
	events_free(&ev);

	/* Never claimed again. */
	struct message c;
	size_t n;
	assert_int_equal(st->ops->claim(st, "pun", hr_now_us() + 60 * SEC, SEC, 1, &c, &n), 0);
	assert_int_equal(n, 0);

	/* The provider's receipt for that request settles it. */
	struct apply_stats s =
	    hook_status(st, "pun", "chosen-by-herald-1", MSG_DELIVERED, hr_now_us(), NULL);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, id), MSG_DELIVERED);
}

/* A receipt whose provider id Herald never learnt (the send's answer was
 * lost) finds its message by the id Herald sent with it (client_ref), on
 * the same account only and only while the message has no provider id. */
static void test_policy_client_ref(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[HR_ID_LEN + 1];
	claimed_msg(st, "pcr", 5, hr_now_us() + SEC, 30 * SEC, id);
	struct send_result r = {.kind = SEND_UNKNOWN,
	                        .attempt = 1,
	                        .error_code = "unknown_outcome",
	                        .unknown_reason = "connection_lost_after_write"};
	strcpy(r.message_id, id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, id), MSG_UNKNOWN);

	/* Another account's webhook naming this message: not adopted. */
	struct wh_status ws = {.status = MSG_DELIVERED};
	strcpy(ws.provider_id, "wamid.other");
	strcpy(ws.client_ref, id);
	struct inbox_parsed row = {.inbox_id = inbox_add(st, "pcr-other"),
	                           .account_id = "pcr-other",
	                           .statuses = &ws,
	                           .nstatuses = 1};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.applied, 0);
	assert_int_equal(s.unmatched, 1);
	assert_int_equal(status_of(st, id), MSG_UNKNOWN);

	/* Its own account's: adopted, then applied. */
	strcpy(ws.provider_id, "wamid.lost");
	row = (struct inbox_parsed){.inbox_id = inbox_add(st, "pcr"),
	                            .account_id = "pcr",
	                            .statuses = &ws,
	                            .nstatuses = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.applied, 1);
	struct message g = msg_of(st, id);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_string_equal(g.provider_id, "wamid.lost");
	message_clear(&g);
	struct events ev = events_of(st, id);
	assert_int_equal(ev.n, 4);
	assert_string_equal(ev.e[2].type, "provider_id_learnt");
	assert_string_equal(ev.e[3].type, "webhook_status");
	assert_int_equal(ev.e[3].status, MSG_DELIVERED);
	events_free(&ev);

	/* A status of another copy (another provider id, same client_ref)
	 * does not take the message over. */
	strcpy(ws.provider_id, "wamid.copy");
	ws.status = MSG_READ;
	row.inbox_id = inbox_add(st, "pcr");
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.applied, 0);
	assert_int_equal(s.unmatched, 1);
	g = msg_of(st, id);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_string_equal(g.provider_id, "wamid.lost");
	message_clear(&g);
}

/* A late answer to an attempt whose lease expired must not undo the newer
 * attempt; it is recorded as ignored and only fills a missing provider id. */
static void test_record_stale_attempt_fenced(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char id[27];
	claimed_msg(st, "fence", 5, now, SEC, id);
	int k;
	assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &k), 0);
	assert_int_equal(k, 1);
	struct message c;
	size_t n;
	assert_int_equal(st->ops->claim(st, "fence", now + 3 * SEC, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c.attempts, 2);
	message_clear(&c);

	struct send_result r = {.kind = SEND_RETRY,
	                        .attempt = 1,
	                        .http_status = 503,
	                        .due_at = now + 60 * SEC,
	                        .error_code = "503",
	                        .error_text = "busy",
	                        .error_class = "transient"};
	strcpy(r.message_id, id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	struct message g = msg_of(st, id);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.attempts, 2);
	assert_int_equal(g.lease_until, now + 33 * SEC);
	assert_int_equal(g.due_at, now + 2 * SEC); /* as the lease expiry left it */
	assert_string_equal(g.error_code, "");
	assert_string_equal(g.error_text, "");
	message_clear(&g);
	struct events ev = events_of(st, id);
	const struct message_event *e = &ev.e[ev.n - 1];
	assert_string_equal(e->type, "retry");
	assert_false(e->applied);
	json_t *d = detail_of(e);
	assert_string_equal(json_string_value(json_object_get(d, "ignored")), "stale_attempt");
	assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
	assert_int_equal(json_integer_value(json_object_get(d, "current_attempt")), 2);
	assert_string_equal(json_string_value(json_object_get(d, "current")), "sending");
	json_decref(d);
	events_free(&ev);

	/* Attempt 1's copy was accepted after all: its id is kept (the message
	 * had none), nothing else moves. */
	struct send_result ok1 = {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.old"};
	strcpy(ok1.message_id, id);
	assert_int_equal(st->ops->record_results(st, &ok1, 1, NULL, NULL), 0);
	g = msg_of(st, id);
	assert_int_equal(g.status, MSG_SENDING);
	assert_string_equal(g.provider_id, "wamid.old");
	message_clear(&g);
	ev = events_of(st, id);
	assert_false(ev.e[ev.n - 1].applied);
	d = detail_of(&ev.e[ev.n - 1]);
	assert_true(json_is_true(json_object_get(d, "provider_id_stored")));
	json_decref(d);
	events_free(&ev);

	struct send_result ok2 = {
	    .kind = SEND_OK, .attempt = 2, .http_status = 200, .provider_id = "wamid.new"};
	strcpy(ok2.message_id, id);
	assert_int_equal(st->ops->record_results(st, &ok2, 1, NULL, NULL), 0);
	g = msg_of(st, id);
	assert_int_equal(g.status, MSG_SENT);
	assert_int_equal(g.lease_until, 0);
	assert_string_equal(g.provider_id, "wamid.new");
	message_clear(&g);
	ev = events_of(st, id);
	assert_true(ev.e[ev.n - 1].applied);
	assert_string_equal(ev.e[ev.n - 1].type, "sent");
	events_free(&ev);

	/* Too late for anything now: the other stale answers change nothing. */
	r.kind = SEND_FAILED;
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, id), MSG_SENT);
}

/* One outcome failing inside record_results (an invalid kind, an unknown
 * message id) is skipped alone: the rest of the batch is recorded. */
static void test_record_outcome_isolated(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], c[27], d[27];
	claimed_msg(st, "iso1", 5, now, 30 * SEC, a);
	claimed_msg(st, "iso3", 5, now, 30 * SEC, c);
	claimed_msg(st, "iso4", 5, now, 30 * SEC, d);

	struct send_result r[4] = {
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.a"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.x"},
	    {.kind = (enum send_kind)9, .attempt = 1},
	    {.kind = SEND_RETRY, .attempt = 1, .due_at = now + 9 * SEC},
	};
	strcpy(r[0].message_id, a);
	strcpy(r[1].message_id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	strcpy(r[2].message_id, d);
	strcpy(r[3].message_id, c);
	assert_int_equal(st->ops->record_results(st, r, 4, NULL, NULL), 0);
	assert_int_equal(status_of(st, a), MSG_SENT);
	assert_int_equal(status_of(st, c), MSG_QUEUED);
	assert_int_equal(status_of(st, d), MSG_SENDING);
	assert_int_equal(count_events(st, a, "sent"), 1);
	assert_int_equal(count_events(st, c, "retry"), 1);
	assert_int_equal(count_events(st, d, NULL), 1); /* "accepted" only */
}

/* What one audit event must be (want_events). */
struct ev_want {
	const char *type;
	int status;
	bool applied;
	const char *ignored; /* the detail's "ignored", NULL for none */
};

/* The message's events are exactly these, in order. */
static void want_events(struct store *st, const char *id, const struct ev_want *w, size_t n)
{
	struct events ev = events_of(st, id);
	if (ev.n != n) {
		for (size_t i = 0; i < ev.n; i++)
			fprintf(stderr, "    event %zu: %s %d %d %s\n", i, ev.e[i].type,
			        ev.e[i].status, ev.e[i].applied,
			        ev.e[i].detail ? ev.e[i].detail : "");
	}
	assert_int_equal(ev.n, n);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(ev.e[i].type, w[i].type);
		assert_int_equal(ev.e[i].status, w[i].status);
		assert_int_equal(ev.e[i].applied, w[i].applied);
		json_t *d = ev.e[i].detail ? detail_of(&ev.e[i]) : NULL;
		const char *ig = json_string_value(json_object_get(d, "ignored"));
		if (w[i].ignored)
			assert_string_equal(ig, w[i].ignored);
		else
			assert_null(ig);
		json_decref(d);
	}
	events_free(&ev);
}

static const struct ev_want ev_accepted = {"accepted", MSG_QUEUED, true, NULL};

/*
 * A batch of outcomes failing in the middle, in every way one can fail
 * from outside: an unknown message id, an invalid kind, an id that is not
 * even UTF-8. Each fails alone; every other outcome, before and after, is
 * recorded exactly once.
 */
static void test_record_batch_fails_in_middle(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char m[5][27];
	for (int i = 0; i < 5; i++)
		claimed_msg(st, "mid", 5, now, 30 * SEC, m[i]);
	struct send_result r[7] = {
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.m0"},
	    {.kind = SEND_RETRY, .attempt = 1, .due_at = now + 7 * SEC, .error_code = "503"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.nobody"},
	    {.kind = SEND_FAILED, .attempt = 1, .error_code = "131026", .error_text = "no"},
	    {.kind = (enum send_kind)9, .attempt = 1},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.bad"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.m4"},
	};
	strcpy(r[0].message_id, m[0]);
	strcpy(r[1].message_id, m[1]);
	strcpy(r[2].message_id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	strcpy(r[3].message_id, m[2]);
	strcpy(r[4].message_id, m[3]);
	strcpy(r[5].message_id, "01ARZ3NDEK\xff\xfeV4RRFFQ69G5FA");
	strcpy(r[6].message_id, m[4]);
	assert_int_equal(st->ops->record_results(st, r, 7, NULL, NULL), 0);

	const struct ev_want sent[] = {ev_accepted, {"sent", MSG_SENT, true, NULL}};
	const struct ev_want retry[] = {ev_accepted, {"retry", MSG_QUEUED, true, NULL}};
	const struct ev_want failed[] = {ev_accepted, {"failed", MSG_FAILED, true, NULL}};
	const struct ev_want none[] = {ev_accepted};
	want_events(st, m[0], sent, 2);
	want_events(st, m[1], retry, 2);
	want_events(st, m[2], failed, 2);
	want_events(st, m[3], none, 1);
	want_events(st, m[4], sent, 2);
	assert_int_equal(status_of(st, m[0]), MSG_SENT);
	assert_int_equal(status_of(st, m[1]), MSG_QUEUED);
	assert_int_equal(status_of(st, m[2]), MSG_FAILED);
	assert_int_equal(status_of(st, m[3]), MSG_SENDING);
	struct message g;
	assert_int_equal(st->ops->message_get_by_provider_id(st, "mid", "wamid.m4", &g), 0);
	assert_string_equal(g.id, m[4]);
	assert_int_equal(g.status, MSG_SENT);
	message_clear(&g);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "mid", "wamid.nobody", &g),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "mid", "wamid.bad", &g),
	                 HR_ENOTFOUND);
}

/*
 * Two outcomes for one message in one batch, interleaved with other
 * messages': the second is judged against what the first made of the
 * message. A retry then a late success: the success is stale but keeps its
 * provider id (the message had none). Two successes: the second is stale
 * and its id is not stored. An invalid outcome then a success: the success
 * applies as if alone.
 */
static void test_record_same_message_twice(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char x[27], y[27], z[27];
	claimed_msg(st, "twice", 5, now, 30 * SEC, x);
	claimed_msg(st, "twice", 5, now, 30 * SEC, y);
	claimed_msg(st, "twice", 5, now, 30 * SEC, z);
	struct send_result r[6] = {
	    {.kind = SEND_RETRY, .attempt = 1, .due_at = now + 5 * SEC, .error_code = "429"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.y1"},
	    {.kind = (enum send_kind)9, .attempt = 1},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.x"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.y2"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.z"},
	};
	const char *who[6] = {x, y, z, x, y, z};
	for (int i = 0; i < 6; i++)
		strcpy(r[i].message_id, who[i]);
	assert_int_equal(st->ops->record_results(st, r, 6, NULL, NULL), 0);

	struct message g = msg_of(st, x);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.due_at, now + 5 * SEC);
	assert_string_equal(g.error_code, "429");
	assert_string_equal(g.provider_id, "wamid.x");
	message_clear(&g);
	const struct ev_want wx[] = {ev_accepted,
	                             {"retry", MSG_QUEUED, true, NULL},
	                             {"sent", MSG_SENT, false, "stale_attempt"}};
	want_events(st, x, wx, 3);
	struct events ev = events_of(st, x);
	json_t *d = detail_of(&ev.e[2]);
	assert_true(json_is_true(json_object_get(d, "provider_id_stored")));
	assert_string_equal(json_string_value(json_object_get(d, "current")), "queued");
	json_decref(d);
	events_free(&ev);

	g = msg_of(st, y);
	assert_int_equal(g.status, MSG_SENT);
	assert_string_equal(g.provider_id, "wamid.y1");
	message_clear(&g);
	const struct ev_want wy[] = {ev_accepted,
	                             {"sent", MSG_SENT, true, NULL},
	                             {"sent", MSG_SENT, false, "stale_attempt"}};
	want_events(st, y, wy, 3);
	ev = events_of(st, y);
	d = detail_of(&ev.e[2]);
	assert_null(json_object_get(d, "provider_id_stored"));
	assert_string_equal(json_string_value(json_object_get(d, "current")), "sent");
	json_decref(d);
	events_free(&ev);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "twice", "wamid.y2", &g),
	                 HR_ENOTFOUND);

	g = msg_of(st, z);
	assert_int_equal(g.status, MSG_SENT);
	assert_string_equal(g.provider_id, "wamid.z");
	message_clear(&g);
	const struct ev_want wz[] = {ev_accepted, {"sent", MSG_SENT, true, NULL}};
	want_events(st, z, wz, 2);

	/* Receipts find each message by the provider id its record left. */
	assert_int_equal(hook_status(st, "twice", "wamid.x", MSG_DELIVERED, now, NULL).applied, 1);
	assert_int_equal(hook_status(st, "twice", "wamid.y1", MSG_DELIVERED, now, NULL).applied, 1);
	assert_int_equal(hook_status(st, "twice", "wamid.y2", MSG_DELIVERED, now, NULL).unmatched,
	                 1);
	assert_int_equal(status_of(st, x), MSG_DELIVERED);
	assert_int_equal(status_of(st, y), MSG_DELIVERED);
}

/* A lease that runs out on the last allowed attempt ends in UNKNOWN, not in
 * another attempt; max_attempts 0 means 8. A late answer to that same last
 * attempt still resolves it; one to an older attempt does not. */
static void test_requeue_attempt_limit(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t t = hr_now_us();
	struct message m[2];
	mk_msg(&m[0], "t1", "ua", 0, t - SEC);
	m[0].max_attempts = 2;
	mk_msg(&m[1], "t1", "ub", 0, t - SEC);
	m[1].max_attempts = 0;
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	for (int round = 1; round <= 8; round++) {
		struct message c;
		size_t n;
		assert_int_equal(st->ops->claim(st, "ua", t, SEC, 1, &c, &n), 0);
		assert_int_equal(n, round <= 2 ? 1 : 0);
		if (n)
			message_clear(&c);
		assert_int_equal(st->ops->claim(st, "ub", t, SEC, 1, &c, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(c.attempts, round);
		message_clear(&c);
		int k;
		assert_int_equal(st->ops->requeue_expired(st, t + 2 * SEC, &k), 0);
		assert_int_equal(k, round <= 2 ? 2 : 1);
		assert_int_equal(status_of(st, m[0].id), round < 2 ? MSG_QUEUED : MSG_UNKNOWN);
		assert_int_equal(status_of(st, m[1].id), round < 8 ? MSG_QUEUED : MSG_UNKNOWN);
		t += 3 * SEC;
	}
	static const struct {
		int msg, max;
	} want[2] = {{0, 2}, {1, 8}};
	for (int i = 0; i < 2; i++) {
		struct events ev = events_of(st, m[want[i].msg].id);
		const struct message_event *e = &ev.e[ev.n - 1];
		assert_string_equal(e->type, "lease_expired");
		assert_string_equal(e->source, "reconciler");
		assert_int_equal(e->status, MSG_UNKNOWN);
		json_t *d = detail_of(e);
		assert_string_equal(json_string_value(json_object_get(d, "outcome")), "unknown");
		assert_int_equal(json_integer_value(json_object_get(d, "attempt")), want[i].max);
		assert_int_equal(json_integer_value(json_object_get(d, "max_attempts")),
		                 want[i].max);
		assert_non_null(strstr(json_string_value(json_object_get(d, "reason")),
		                       "recording the answer"));
		json_decref(d);
		d = detail_of(&ev.e[ev.n - 2]); /* the lease expiry before: requeued */
		assert_string_equal(json_string_value(json_object_get(d, "outcome")), "requeued");
		json_decref(d);
		events_free(&ev);
		struct message g = msg_of(st, m[want[i].msg].id);
		assert_int_equal(g.lease_until, 0);
		message_clear(&g);
	}
	int k;
	assert_int_equal(st->ops->requeue_expired(st, t + 100 * SEC, &k), 0);
	assert_int_equal(k, 0);

	struct send_result r = {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.u1"};
	strcpy(r.message_id, m[0].id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, m[0].id), MSG_UNKNOWN);
	r = (struct send_result){.kind = SEND_RETRY, .attempt = 2, .due_at = t};
	strcpy(r.message_id, m[0].id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, m[0].id), MSG_UNKNOWN);
	r = (struct send_result){.kind = SEND_OK, .attempt = 2, .provider_id = "wamid.u2"};
	strcpy(r.message_id, m[0].id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	struct message g = msg_of(st, m[0].id);
	assert_int_equal(g.status, MSG_SENT);
	assert_string_equal(g.provider_id, "wamid.u2");
	message_clear(&g);
}

/* ---------------------------------------------------------------------------
 * Webhooks.
 * ------------------------------------------------------------------------- */

static void test_inbox_append_dedupe(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	const char body[] = "{\"a\":1}";
	for (int i = 0; i < 2; i++) /* the second is a replay */
		assert_int_equal(
		    st->ops->inbox_append(st, "acc", "whatsapp", "d1", body, 7, NULL, NULL), 0);
	assert_int_equal(st->ops->inbox_append(st, "acc2", "whatsapp", "d1", body, 7, NULL, NULL),
	                 0);
	assert_int_equal(st->ops->inbox_append(st, "acc", "whatsapp", "", body, 7, NULL, NULL), 0);
	assert_int_equal(st->ops->inbox_append(st, "acc", "whatsapp", "", body, 7, NULL, NULL), 0);
	int64_t pending;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 4);
	struct inbox_row *rows;
	size_t n;
	assert_int_equal(st->ops->inbox_fetch(st, hr_now_us(), 10, &rows, &n), 0);
	assert_int_equal(n, 4);
	assert_true(rows[0].id < rows[1].id);
	assert_string_equal(rows[0].account_id, "acc");
	assert_string_equal(rows[0].dedupe_key, "d1");
	assert_int_equal(rows[0].body_len, 7);
	assert_string_equal(rows[0].body, body);
	assert_int_equal(rows[0].attempts, 0);
	for (size_t i = 0; i < n; i++)
		inbox_row_clear(&rows[i]);
	free(rows);
	assert_int_equal(st->ops->inbox_fetch(st, hr_now_us(), 2, &rows, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		inbox_row_clear(&rows[i]);
	free(rows);
}

static void test_apply_precedence(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], b[27], c[27], d[27];
	sent_msg(st, "pa", "wamid.a", a);
	sent_msg(st, "pb", "wamid.b", b);
	sent_msg(st, "pc", "wamid.c", c);
	sent_msg(st, "pd", "wamid.d", d);

	/* sent -> delivered -> read, each applied. */
	int64_t inbox_id;
	struct apply_stats s = hook_status(st, "pa", "wamid.a", MSG_DELIVERED, now, &inbox_id);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, a), MSG_DELIVERED);
	s = hook_status(st, "pa", "wamid.a", MSG_READ, now, NULL);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, a), MSG_READ);
	assert_false(inbox_has(st, INT64_MAX, inbox_id, NULL)); /* done */

	/* Duplicate READ and late DELIVERED: recorded, ignored. */
	s = hook_status(st, "pa", "wamid.a", MSG_READ, now, NULL);
	assert_int_equal(s.applied, 0);
	assert_int_equal(s.ignored, 1);
	s = hook_status(st, "pa", "wamid.a", MSG_DELIVERED, now, NULL);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(status_of(st, a), MSG_READ);
	struct events ev = events_of(st, a);
	/* accepted, sent, delivered, read, read (dup), delivered (stale) */
	assert_int_equal(ev.n, 6);
	static const struct {
		int status;
		bool applied;
		const char *ignored;
	} want[4] = {
	    {MSG_DELIVERED, true, NULL},
	    {MSG_READ, true, NULL},
	    {MSG_READ, false, "duplicate"},
	    {MSG_DELIVERED, false, "stale"},
	};
	for (int i = 0; i < 4; i++) {
		const struct message_event *e = &ev.e[2 + i];
		assert_string_equal(e->type, "webhook_status");
		assert_string_equal(e->source, "webhook");
		assert_int_equal(e->status, want[i].status);
		assert_int_equal(e->applied, want[i].applied);
		assert_int_equal(e->provider_at, 1750263773LL * SEC);
		json_t *dj = detail_of(e);
		assert_string_equal(json_string_value(json_object_get(dj, "status")),
		                    msg_status_name(want[i].status));
		assert_string_equal(json_string_value(json_object_get(dj, "provider_ts")),
		                    "1750263773");
		assert_true(json_integer_value(json_object_get(dj, "inbox_id")) > 0);
		if (want[i].ignored) {
			assert_string_equal(json_string_value(json_object_get(dj, "ignored")),
			                    want[i].ignored);
			assert_string_equal(json_string_value(json_object_get(dj, "current")),
			                    "read");
		} else {
			assert_null(json_object_get(dj, "ignored"));
		}
		json_decref(dj);
	}
	events_free(&ev);

	/* READ before DELIVERED implies DELIVERED. */
	s = hook_status(st, "pb", "wamid.b", MSG_READ, now, NULL);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, b), MSG_READ);
	ev = events_of(st, b);
	assert_int_equal(ev.n, 4);
	assert_int_equal(ev.e[2].status, MSG_DELIVERED);
	assert_true(ev.e[2].applied);
	json_t *dj = detail_of(&ev.e[2]);
	assert_string_equal(json_string_value(json_object_get(dj, "implied_by")), "read");
	json_decref(dj);
	assert_int_equal(ev.e[3].status, MSG_READ);
	assert_true(ev.e[3].applied);
	events_free(&ev);

	/* FAILED after DELIVERED: ignored; FAILED after SENT: applied with errors. */
	hook_status(st, "pc", "wamid.c", MSG_DELIVERED, now, NULL);
	s = hook_status(st, "pc", "wamid.c", MSG_FAILED, now, NULL);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(status_of(st, c), MSG_DELIVERED);
	s = hook_status(st, "pd", "wamid.d", MSG_FAILED, now, NULL);
	assert_int_equal(s.applied, 1);
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, d, &g), 0);
	assert_int_equal(g.status, MSG_FAILED);
	assert_string_equal(g.error_code, "131026");
	assert_string_equal(g.error_text, "Message undeliverable");
	message_clear(&g);
	ev = events_of(st, d);
	dj = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(dj, "error_code")), "131026");
	json_decref(dj);
	events_free(&ev);
}

/* Several statuses in one call, one transaction: each sees the previous. */
static void test_apply_many_in_one_call(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char a[27];
	sent_msg(st, "pm", "wamid.m", a);
	struct wh_status ws[3] = {
	    {.provider_id = "wamid.m", .status = MSG_DELIVERED},
	    {.provider_id = "wamid.m", .status = MSG_READ},
	    {.provider_id = "wamid.m", .status = MSG_DELIVERED},
	};
	struct inbox_parsed rows[2] = {
	    {.inbox_id = inbox_add(st, "pm"), .account_id = "pm", .statuses = ws, .nstatuses = 2},
	    {.inbox_id = inbox_add(st, "pm"),
	     .account_id = "pm",
	     .statuses = &ws[2],
	     .nstatuses = 1},
	};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, rows, 2, hr_now_us(), &s), 0);
	assert_int_equal(s.applied, 2);
	assert_int_equal(s.ignored, 1);
	assert_int_equal(status_of(st, a), MSG_READ);
	int64_t pending;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
}

static void test_apply_unknown_retry_then_orphan(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us(), inbox_id;
	struct apply_stats s = hook_status(st, "late", "wamid.late", MSG_DELIVERED, now, &inbox_id);
	assert_int_equal(s.unmatched, 1);
	assert_int_equal(s.applied, 0);
	/* Kept for a retry in 2^0 * 200 ms, tried once. */
	int attempts = -1;
	assert_false(inbox_has(st, now + 199999, inbox_id, NULL));
	assert_true(inbox_has(st, now + 200000, inbox_id, &attempts));
	assert_int_equal(attempts, 1);

	int64_t pending;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 1);
	struct inbox_row *rows;
	size_t n;
	assert_int_equal(st->ops->inbox_fetch(st, now + 100000, 10, &rows, &n), 0);
	assert_int_equal(n, 0); /* not due yet */
	assert_int_equal(st->ops->inbox_fetch(st, now + 200000, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, inbox_id);
	assert_int_equal(rows[0].attempts, 1);
	inbox_row_clear(&rows[0]);
	free(rows);

	/* Still unknown on the second try: backoff doubles. */
	struct wh_status ws = {.provider_id = "wamid.late", .status = MSG_DELIVERED};
	struct inbox_parsed row = {
	    .inbox_id = inbox_id, .account_id = "late", .statuses = &ws, .nstatuses = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now + SEC, &s), 0);
	assert_int_equal(s.unmatched, 1);
	assert_false(inbox_has(st, now + SEC + 399999, inbox_id, NULL));
	assert_true(inbox_has(st, now + SEC + 400000, inbox_id, &attempts));
	assert_int_equal(attempts, 2);

	/* The send gets recorded; the retry now applies. */
	char id[27];
	sent_msg(st, "late", "wamid.late", id);
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now + 2 * SEC, &s), 0);
	assert_int_equal(s.applied, 1);
	assert_int_equal(s.unmatched, 0);
	assert_int_equal(status_of(st, id), MSG_DELIVERED);
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);

	/* Unknown for more than 24 h: orphan, no longer pending. */
	int64_t later = hr_now_us() + 25LL * 3600 * SEC;
	s = hook_status(st, "late", "wamid.never", MSG_READ, later, &inbox_id);
	assert_int_equal(s.unmatched, 1);
	assert_false(inbox_has(st, INT64_MAX, inbox_id, NULL));
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
}

static void test_apply_inbound_and_malformed(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err;
	struct account_row acct = {.id = "acc", .tenant_id = "t9", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	char id[27];
	sent_msg(st, "acc", "wamid.orig", id);

	struct wh_inbound in[2] = {
	    {.provider_msg_id = "wamid.IN1",
	     .context_id = "wamid.orig",
	     .from = "15550123456",
	     .kind = "button",
	     .text = (char *)"Pay now",
	     .payload = (char *)"PAY_NOW",
	     .provider_at = 5 * SEC},
	    {.provider_msg_id = "wamid.IN2",
	     .from = "15550123456",
	     .kind = "text",
	     .text = (char *)"STOP"},
	};
	struct inbox_parsed rows[2] = {
	    {.inbox_id = inbox_add(st, "acc"), .account_id = "acc", .inbound = in, .ninbound = 2},
	    {.inbox_id = inbox_add(st, "acc"),
	     .account_id = "acc",
	     .malformed = true,
	     .error = "entry[0]: missing changes"},
	};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, rows, 2, hr_now_us(), &s), 0);
	assert_int_equal(s.inbound, 2);
	assert_int_equal(s.malformed, 1);

	/* Both rows are finished: the malformed one is never handed out again. */
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
	assert_false(inbox_has(st, INT64_MAX, rows[1].inbox_id, NULL));

	/* IN1 quoted our message: linked to it in its audit trail. IN2 quoted
	 * nothing: stored (counted above), linked to nothing. */

	struct events ev = events_of(st, id);
	assert_int_equal(ev.n, 3);
	assert_string_equal(ev.e[2].type, "inbound");
	assert_string_equal(ev.e[2].source, "webhook");
	assert_true(ev.e[2].applied);
	assert_int_equal(ev.e[2].provider_at, 5 * SEC);
	json_t *d = detail_of(&ev.e[2]);
	assert_string_equal(json_string_value(json_object_get(d, "kind")), "button");
	assert_string_equal(json_string_value(json_object_get(d, "payload")), "PAY_NOW");
	assert_string_equal(json_string_value(json_object_get(d, "from")), "15550123456");
	assert_string_equal(json_string_value(json_object_get(d, "provider_msg_id")), "wamid.IN1");
	json_decref(d);
	events_free(&ev);

	/* The same reply delivered again changes nothing. */
	struct inbox_parsed again = {
	    .inbox_id = inbox_add(st, "acc"), .account_id = "acc", .inbound = in, .ninbound = 1};
	assert_int_equal(st->ops->apply_inbox(st, &again, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.inbound, 0);
	ev = events_of(st, id);
	assert_int_equal(ev.n, 3);
	events_free(&ev);
}

/* Provider ids are unique per account at most: a webhook on account A that
 * names B's provider id must not touch B's message (it stays unmatched and
 * is retried), and the same id on two accounts resolves per account. */
static void test_webhook_scoped_to_account(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us(), inbox_id;
	char b[27], a7[27], b7[27];
	sent_msg(st, "accB", "wamid.B", b);
	sent_msg(st, "accA", "7", a7); /* Telegram-style ids: per chat, they repeat */
	sent_msg(st, "accB", "7", b7);

	struct apply_stats s = hook_status(st, "accA", "wamid.B", MSG_DELIVERED, now, &inbox_id);
	assert_int_equal(s.unmatched, 1);
	assert_int_equal(s.applied, 0);
	assert_int_equal(status_of(st, b), MSG_SENT);
	assert_int_equal(count_events(st, b, "webhook_status"), 0);
	int attempts = -1;
	assert_true(inbox_has(st, now + 200000, inbox_id, &attempts)); /* retried later */
	assert_int_equal(attempts, 1);

	s = hook_status(st, "accA", "7", MSG_READ, now, NULL);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, a7), MSG_READ);
	assert_int_equal(status_of(st, b7), MSG_SENT);
	s = hook_status(st, "accB", "7", MSG_DELIVERED, now, NULL);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, b7), MSG_DELIVERED);
	assert_int_equal(status_of(st, a7), MSG_READ);

	/* A reply on A quoting B's message: A knows no such message, so the
	 * reply waits for it (its send may not be recorded yet), then is stored
	 * unlinked once it has waited 30 s; never linked to B's. */
	struct wh_inbound in = {.provider_msg_id = "wamid.R1",
	                        .context_id = "wamid.B",
	                        .from = "15550123456",
	                        .kind = "text",
	                        .text = (char *)"hi"};
	struct inbox_parsed row = {
	    .inbox_id = inbox_add(st, "accA"), .account_id = "accA", .inbound = &in, .ninbound = 1};
	int64_t arrived = hr_now_us();
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, arrived, &s), 0);
	assert_int_equal(s.inbound, 0);
	assert_int_equal(s.unmatched, 1);
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, arrived + 31 * SEC, &s), 0);
	assert_int_equal(s.inbound, 1);
	assert_int_equal(s.unmatched, 0);
	assert_int_equal(count_events(st, b, "inbound"), 0);
	assert_false(inbox_has(st, INT64_MAX, row.inbox_id, NULL)); /* done */

	/* A reply that overtakes the record of the send it quotes is linked
	 * once the send is recorded. */
	struct wh_inbound early = {.provider_msg_id = "wamid.R3",
	                           .context_id = "wamid.C",
	                           .from = "15550123456",
	                           .kind = "text",
	                           .text = (char *)"quick"};
	struct inbox_parsed erow = {
	    .inbox_id = inbox_add(st, "accB"), .account_id = "accB", .inbound = &early, .ninbound = 1};
	arrived = hr_now_us();
	assert_int_equal(st->ops->apply_inbox(st, &erow, 1, arrived, &s), 0);
	assert_int_equal(s.inbound, 0);
	assert_int_equal(s.unmatched, 1);
	char c_id[27];
	sent_msg(st, "accB", "wamid.C", c_id);
	assert_int_equal(st->ops->apply_inbox(st, &erow, 1, arrived + SEC, &s), 0);
	assert_int_equal(s.inbound, 1);
	assert_int_equal(s.unmatched, 0);
	assert_int_equal(count_events(st, c_id, "inbound"), 1);
	/* The same quote on B's own account links. */
	strcpy(in.provider_msg_id, "wamid.R2");
	row = (struct inbox_parsed){
	    .inbox_id = inbox_add(st, "accB"), .account_id = "accB", .inbound = &in, .ninbound = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &s), 0);
	assert_int_equal(s.inbound, 1);
	assert_int_equal(count_events(st, b, "inbound"), 1);
	struct events ev = events_of(st, b);
	json_t *d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(d, "provider_msg_id")), "wamid.R2");
	json_decref(d);
	events_free(&ev);

	struct message g;
	assert_int_equal(st->ops->message_get_by_provider_id(st, "accB", "wamid.B", &g), 0);
	assert_string_equal(g.id, b);
	message_clear(&g);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "accA", "wamid.B", &g),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "accA", "7", &g), 0);
	assert_string_equal(g.id, a7);
	message_clear(&g);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "accB", "7", &g), 0);
	assert_string_equal(g.id, b7);
	message_clear(&g);
}

/* An inbox row retried because one status was unmatched must not record
 * its other (matched) status again on every retry, nor store its reply
 * twice; the unmatched status is recorded once when its id appears. */
static void test_apply_retry_no_duplicate_events(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char known[27], later[27];
	sent_msg(st, "rx", "wamid.known", known);
	struct wh_status ws[2] = {
	    {.provider_id = "wamid.known", .status = MSG_DELIVERED},
	    {.provider_id = "wamid.later", .status = MSG_DELIVERED},
	};
	struct wh_inbound in = {.from = "15550123456", .kind = "text", .text = (char *)"ok"};
	struct inbox_parsed row = {.inbox_id = inbox_add(st, "rx"),
	                           .account_id = "rx",
	                           .statuses = ws,
	                           .nstatuses = 2,
	                           .inbound = &in,
	                           .ninbound = 1};
	int64_t now = hr_now_us();
	struct apply_stats s;
	for (int i = 0; i < 6; i++) {
		assert_int_equal(st->ops->apply_inbox(st, &row, 1, now + i * SEC, &s), 0);
		assert_int_equal(s.unmatched, 1);
		assert_int_equal(s.applied, i == 0 ? 1 : 0);
		assert_int_equal(s.ignored, 0);
		assert_int_equal(s.inbound, i == 0 ? 1 : 0);
	}
	assert_int_equal(count_events(st, known, "webhook_status"), 1);
	/* Of the known message's events, one names this inbox row. */
	struct events ev = events_of(st, known);
	size_t from_row = 0;
	for (size_t i = 0; i < ev.n; i++) {
		json_t *d = ev.e[i].detail ? detail_of(&ev.e[i]) : NULL;
		from_row += json_integer_value(json_object_get(d, "inbox_id")) == row.inbox_id;
		json_decref(d);
	}
	events_free(&ev);
	assert_int_equal(from_row, 1);
	int attempts = -1;
	assert_true(inbox_has(st, INT64_MAX, row.inbox_id, &attempts));
	assert_int_equal(attempts, 6);

	sent_msg(st, "rx", "wamid.later", later);
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now + 10 * SEC, &s), 0);
	assert_int_equal(s.unmatched, 0);
	assert_int_equal(s.applied, 1);
	assert_int_equal(status_of(st, later), MSG_DELIVERED);
	assert_int_equal(count_events(st, later, "webhook_status"), 1);
	assert_int_equal(count_events(st, known, "webhook_status"), 1);
	assert_false(inbox_has(st, INT64_MAX, row.inbox_id, NULL)); /* done */
}

/* Applies rows (one call, one transaction) and checks its stats. */
static void apply_rows(struct store *st, struct inbox_parsed *rows, size_t n, int64_t now,
                       int applied, int ignored, int unmatched)
{
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, rows, n, now, &s), 0);
	assert_int_equal(s.applied, applied);
	assert_int_equal(s.ignored, ignored);
	assert_int_equal(s.unmatched, unmatched);
}

/*
 * One message's statuses in one batch: SENT, DELIVERED and READ in one
 * row; the same spread over rows (with a late DELIVERED after them); READ
 * before DELIVERED in one row. Each status meets what the one before it
 * made of the message: exact audit events, exact final status.
 */
static void test_apply_one_message_statuses_in_batch(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], b[27], c[27];
	sent_msg(st, "sb", "wamid.a", a);
	sent_msg(st, "sb", "wamid.b", b);
	sent_msg(st, "sb", "wamid.c", c);

	struct wh_status one[3] = {{.provider_id = "wamid.a", .status = MSG_SENT},
	                           {.provider_id = "wamid.a", .status = MSG_DELIVERED},
	                           {.provider_id = "wamid.a", .status = MSG_READ}};
	struct inbox_parsed r1 = {
	    .inbox_id = inbox_add(st, "sb"), .account_id = "sb", .statuses = one, .nstatuses = 3};
	apply_rows(st, &r1, 1, now, 2, 1, 0);
	const struct ev_want w[] = {
	    ev_accepted,
	    {"sent", MSG_SENT, true, NULL},
	    {"webhook_status", MSG_SENT, false, "duplicate"},
	    {"webhook_status", MSG_DELIVERED, true, NULL},
	    {"webhook_status", MSG_READ, true, NULL},
	    {"webhook_status", MSG_DELIVERED, false, "stale"},
	};
	want_events(st, a, w, 5);
	assert_int_equal(status_of(st, a), MSG_READ);

	struct wh_status spread[4] = {{.provider_id = "wamid.b", .status = MSG_SENT},
	                              {.provider_id = "wamid.b", .status = MSG_DELIVERED},
	                              {.provider_id = "wamid.b", .status = MSG_READ},
	                              {.provider_id = "wamid.b", .status = MSG_DELIVERED}};
	struct inbox_parsed rows[3] = {
	    {.inbox_id = inbox_add(st, "sb"),
	     .account_id = "sb",
	     .statuses = spread,
	     .nstatuses = 2},
	    {.inbox_id = inbox_add(st, "sb"),
	     .account_id = "sb",
	     .statuses = &spread[2],
	     .nstatuses = 1},
	    {.inbox_id = inbox_add(st, "sb"),
	     .account_id = "sb",
	     .statuses = &spread[3],
	     .nstatuses = 1},
	};
	apply_rows(st, rows, 3, now, 2, 2, 0);
	want_events(st, b, w, 6);
	assert_int_equal(status_of(st, b), MSG_READ);

	struct wh_status rd[2] = {{.provider_id = "wamid.c", .status = MSG_READ},
	                          {.provider_id = "wamid.c", .status = MSG_DELIVERED}};
	struct inbox_parsed r3 = {
	    .inbox_id = inbox_add(st, "sb"), .account_id = "sb", .statuses = rd, .nstatuses = 2};
	apply_rows(st, &r3, 1, now, 1, 1, 0);
	const struct ev_want wc[] = {
	    ev_accepted,
	    {"sent", MSG_SENT, true, NULL},
	    {"webhook_status", MSG_DELIVERED, true, NULL},
	    {"webhook_status", MSG_READ, true, NULL},
	    {"webhook_status", MSG_DELIVERED, false, "stale"},
	};
	want_events(st, c, wc, 5);
	struct events ev = events_of(st, c);
	json_t *d = detail_of(&ev.e[2]);
	assert_string_equal(json_string_value(json_object_get(d, "implied_by")), "read");
	json_decref(d);
	events_free(&ev);
	assert_int_equal(status_of(st, c), MSG_READ);
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
}

/*
 * A retried row in a batch beside new rows about the same messages: what
 * the retried row recorded before is skipped (not recorded twice), the new
 * rows' statuses apply on top, and its unmatched status applies once its
 * message is known, before a newer row's status for it in the same batch.
 */
static void test_apply_retried_row_in_batch(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char k[27], l[27];
	sent_msg(st, "rb", "wamid.k", k);
	struct wh_status sa[2] = {{.provider_id = "wamid.k", .status = MSG_DELIVERED},
	                          {.provider_id = "wamid.l", .status = MSG_DELIVERED}};
	struct inbox_parsed ra = {
	    .inbox_id = inbox_add(st, "rb"), .account_id = "rb", .statuses = sa, .nstatuses = 2};
	apply_rows(st, &ra, 1, now, 1, 0, 1);
	int attempts = -1;
	assert_true(inbox_has(st, INT64_MAX, ra.inbox_id, &attempts));
	assert_int_equal(attempts, 1);

	struct wh_status sb = {.provider_id = "wamid.k", .status = MSG_READ};
	struct inbox_parsed two[2] = {
	    ra,
	    {.inbox_id = inbox_add(st, "rb"), .account_id = "rb", .statuses = &sb, .nstatuses = 1}};
	apply_rows(st, two, 2, now + SEC, 1, 0, 1);
	const struct ev_want wk[] = {
	    ev_accepted,
	    {"sent", MSG_SENT, true, NULL},
	    {"webhook_status", MSG_DELIVERED, true, NULL},
	    {"webhook_status", MSG_READ, true, NULL},
	};
	want_events(st, k, wk, 4);
	assert_int_equal(status_of(st, k), MSG_READ);
	assert_true(inbox_has(st, INT64_MAX, ra.inbox_id, &attempts));
	assert_int_equal(attempts, 2);

	sent_msg(st, "rb", "wamid.l", l);
	struct wh_status sc = {.provider_id = "wamid.l", .status = MSG_READ};
	two[1] = (struct inbox_parsed){
	    .inbox_id = inbox_add(st, "rb"), .account_id = "rb", .statuses = &sc, .nstatuses = 1};
	apply_rows(st, two, 2, now + 2 * SEC, 2, 0, 0);
	want_events(st, k, wk, 4);
	want_events(st, l, wk, 4);
	assert_int_equal(status_of(st, l), MSG_READ);
	assert_false(inbox_has(st, INT64_MAX, ra.inbox_id, NULL));
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
}

/*
 * A retried row that names one message several times: the first status
 * applies (READ, implying DELIVERED), and the later ones find what it just
 * recorded for this row and are skipped, as on any retry; nothing is
 * recorded twice.
 */
static void test_apply_retried_row_repeats_status(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct wh_status ws[3] = {{.provider_id = "wamid.rep", .status = MSG_READ},
	                          {.provider_id = "wamid.rep", .status = MSG_DELIVERED},
	                          {.provider_id = "wamid.rep", .status = MSG_READ}};
	struct inbox_parsed row = {
	    .inbox_id = inbox_add(st, "rr2"), .account_id = "rr2", .statuses = ws, .nstatuses = 3};
	apply_rows(st, &row, 1, now, 0, 0, 3); /* not known yet: retried */
	char x[27];
	sent_msg(st, "rr2", "wamid.rep", x);
	apply_rows(st, &row, 1, now + SEC, 1, 0, 0);
	const struct ev_want w[] = {
	    ev_accepted,
	    {"sent", MSG_SENT, true, NULL},
	    {"webhook_status", MSG_DELIVERED, true, NULL},
	    {"webhook_status", MSG_READ, true, NULL},
	};
	want_events(st, x, w, 4);
	assert_int_equal(status_of(st, x), MSG_READ);
	assert_false(inbox_has(st, INT64_MAX, row.inbox_id, NULL));
}

/* True if s is valid UTF-8 (jansson refuses anything else). */
static bool utf8_ok(const char *s)
{
	json_t *j = json_string(s);
	json_decref(j);
	return j != NULL;
}

/* Text from providers and customers is stored as valid UTF-8: a multi-byte
 * character cut by truncation and stray invalid bytes become '?', in the
 * message columns, the audit details and the inbound table alike. */
static void test_outside_text_stored_as_utf8(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char id[27];
	claimed_msg(st, "u8", 5, now, 30 * SEC, id);
	struct send_result r = {.kind = SEND_FAILED,
	                        .attempt = 1,
	                        .error_code = "E\xff"
	                                      "1"};
	/* A text filled to the brim with 2-byte characters, cut in the middle of
	 * the last one as a byte-wise copy into the fixed buffer would. */
	memset(r.error_text, 0, sizeof r.error_text);
	for (size_t i = 0; i + 1 < sizeof r.error_text; i += 2) {
		r.error_text[i] = (char)0xc3;
		if (i + 2 < sizeof r.error_text)
			r.error_text[i + 1] = (char)0xa9;
	}
	strcpy(r.message_id, id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	struct message g = msg_of(st, id);
	assert_int_equal(g.status, MSG_FAILED);
	assert_string_equal(g.error_code, "E?1");
	assert_true(utf8_ok(g.error_text));
	size_t len = strlen(g.error_text);
	assert_int_equal(len, sizeof r.error_text - 1);
	assert_int_equal(g.error_text[len - 1], '?');
	assert_memory_equal(g.error_text, r.error_text, len - 1);
	message_clear(&g);
	struct events ev = events_of(st, id);
	json_t *d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(d, "error_code")), "E?1");
	assert_int_equal(strlen(json_string_value(json_object_get(d, "error_text"))), len);
	json_decref(d);
	events_free(&ev);

	/* A webhook failure with the same kinds of damage. */
	char wid[27];
	sent_msg(st, "u8w", "wamid.u8", wid);
	struct wh_status ws = {.provider_id = "wamid.u8",
	                       .status = MSG_FAILED,
	                       .provider_ts = "17502\xe2\x82",
	                       .error_code = "13\xc3",
	                       .error_text = "caf\xc3\xa9 \xfe"};
	struct inbox_parsed row = {
	    .inbox_id = inbox_add(st, "u8w"), .account_id = "u8w", .statuses = &ws, .nstatuses = 1};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &s), 0);
	assert_int_equal(s.applied, 1);
	g = msg_of(st, wid);
	assert_string_equal(g.error_code, "13?");
	assert_string_equal(g.error_text, "caf\xc3\xa9 ?");
	message_clear(&g);
	ev = events_of(st, wid);
	d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(d, "provider_ts")), "17502?\?");
	assert_string_equal(json_string_value(json_object_get(d, "error_text")), "caf\xc3\xa9 ?");
	json_decref(d);
	events_free(&ev);

	/* An inbound reply: text, payload and sender. */
	struct wh_inbound in = {.provider_msg_id = "wamid.in\xff",
	                        .context_id = "wamid.u8",
	                        .from = "+1555\xc3",
	                        .kind = "button",
	                        .text = (char *)"pay \xe2\x82",
	                        .payload = (char *)"\xfe"
	                                           "X"};
	row = (struct inbox_parsed){
	    .inbox_id = inbox_add(st, "u8w"), .account_id = "u8w", .inbound = &in, .ninbound = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &s), 0);
	assert_int_equal(s.inbound, 1);
	ev = events_of(st, wid);
	assert_string_equal(ev.e[ev.n - 1].type, "inbound");
	d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(json_string_value(json_object_get(d, "text")), "pay ?\?");
	assert_string_equal(json_string_value(json_object_get(d, "payload")), "?X");
	assert_string_equal(json_string_value(json_object_get(d, "from")), "+1555?");
	assert_string_equal(json_string_value(json_object_get(d, "provider_msg_id")), "wamid.in?");
	json_decref(d);
	events_free(&ev);

	/* An adapter's parse error quoting raw bytes is taken (the stored text
	 * has no read op: test_sqlite.c checks it). */
	row = (struct inbox_parsed){.inbox_id = inbox_add(st, "u8w"),
	                            .account_id = "u8w",
	                            .malformed = true,
	                            .error = "bad byte \xff at 3"};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &s), 0);
	assert_int_equal(s.malformed, 1);
	assert_false(inbox_has(st, INT64_MAX, row.inbox_id, NULL));
}

/* Retention: finished inbox rows and old idempotency records go, a few per
 * call; pending inbox rows stay whatever their age. */
static void test_prune_retention(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t done_id = inbox_add_on(st, "acc", "whatsapp");
	int64_t bad_id = inbox_add_on(st, "acc", "whatsapp");
	inbox_add_on(st, "acc", "whatsapp"); /* stays pending */
	struct inbox_parsed rows[2] = {
	    {.inbox_id = done_id, .account_id = "acc"},
	    {.inbox_id = bad_id, .account_id = "acc", .malformed = true, .error = "bad"}};
	struct apply_stats stats = {0};
	assert_int_equal(st->ops->apply_inbox(st, rows, 2, hr_now_us(), &stats), 0);
	struct message m[1];
	mk_msg(&m[0], "t1", "acc", 1, 0);
	struct idem_put ip = {.tenant_id = "t1",
	                      .key = "old",
	                      .request_hash = "h",
	                      .http_status = 202,
	                      .response = "{}"};
	assert_int_equal(st->ops->message_insert(st, m, 1, &ip, NULL, NULL), 0);

	int64_t n = -1, pending = 0;
	assert_int_equal(st->ops->prune(st, 0, 0, 100, &n), 0); /* nothing is that old */
	assert_int_equal(n, 0);
	int64_t later = hr_now_us() + SEC;
	assert_int_equal(st->ops->prune(st, later, later, 1, &n), 0); /* limit 1 each */
	assert_int_equal(n, 2);
	assert_int_equal(st->ops->prune(st, later, later, 100, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st->ops->prune(st, later, later, 100, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 1);
	struct idem_row r;
	assert_int_equal(st->ops->idem_get(st, "t1", "old", &r), HR_ENOTFOUND);
}

/* ---------------------------------------------------------------------------
 * Message retention.
 * ------------------------------------------------------------------------- */

#define DAY (86400 * SEC)

static const char *const no_receipts[] = {"telegram"};

static struct msg_retention_stats retain(struct store *st, int64_t before, int batch,
                                         int max_batches)
{
	struct msg_retention r = {.before = before,
	                          .final_at_sent = no_receipts,
	                          .nfinal_at_sent = 1,
	                          .batch = batch,
	                          .max_batches = max_batches};
	struct msg_retention_stats out;
	struct hr_err err = {0};
	/* skipped: another store holds PostgreSQL's retention lock; a store an
	 * earlier test closed lets it go when its backend has ended, a moment
	 * after the close returned. */
	int64_t until = hr_mono_us() + 10 * SEC;
	for (;;) {
		int rc = st->ops->message_prune(st, &r, &out, &err);
		if (rc)
			fail_msg("message_prune: %d %s: %s", rc, err.field, err.msg);
		if (!out.skipped || hr_mono_us() > until)
			break;
		usleep(20000);
	}
	assert_false(out.skipped);
	return out;
}

/*
 * Old settled messages go with their whole audit trail, whatever tenant;
 * old open ones (scheduled, sending, SENT awaiting a receipt, unknown) and
 * recent settled ones stay untouched. Counts are exact, batches are
 * `batch` messages, and a second run finds nothing. What referred to a
 * removed message still works: its suppression stays, a late webhook for
 * it is unmatched like one for a message never seen, a get is not found.
 */
static void test_message_retention(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us(), old = now - 400 * DAY, cutoff = now - 30 * DAY;
	static const struct {
		const char *account, *channel;
		enum msg_status status;
		bool old, goes;
	} cases[] = {
	    {"r-failed", "whatsapp", MSG_FAILED, true, true},
	    {"r-deliv", "whatsapp", MSG_DELIVERED, true, true},
	    {"r-read", "whatsapp", MSG_READ, true, true},
	    {"r-tgsent", "telegram", MSG_SENT, true, true}, /* final at SENT */
	    {"r-supp", "sms", MSG_SUPPRESSED, true, true},
	    {"r-sched", "whatsapp", MSG_QUEUED, true, false},
	    {"r-sending", "whatsapp", MSG_SENDING, true, false},
	    {"r-wasent", "whatsapp", MSG_SENT, true, false}, /* a receipt may come */
	    {"r-unknown", "sms", MSG_UNKNOWN, true, false},
	    {"r-recent", "whatsapp", MSG_FAILED, false, false},
	    {"r-recent2", "telegram", MSG_SENT, false, false},
	};
	enum { N = sizeof cases / sizeof cases[0] };
	char ids[N][HR_ID_LEN + 1];
	size_t events[N];
	int64_t want_msgs = 0, want_events = 0;
	for (int i = 0; i < N; i++) {
		msg_at_status(st, cases[i].account, cases[i].channel,
		              cases[i].old ? old + i * SEC : now - 3600 * SEC + i * SEC,
		              cases[i].status, ids[i]);
		events[i] = count_events(st, ids[i], NULL);
		assert_true(events[i] >= 1);
		if (cases[i].goes) {
			want_msgs++;
			want_events += (int64_t)events[i];
		}
	}
	/* A second tenant's old failed message goes too. */
	struct message t2;
	mk_msg(&t2, "t2", "r-t2", 0, old);
	hr_id_at(old, t2.id);
	t2.created_at = old;
	assert_int_equal(st->ops->message_insert(st, &t2, 1, NULL, NULL, NULL), 0);
	size_t n;
	struct message c;
	assert_int_equal(st->ops->claim(st, "r-t2", now, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c);
	struct send_result fr = {.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
	strcpy(fr.message_id, t2.id);
	assert_int_equal(st->ops->record_results(st, &fr, 1, NULL, NULL), 0);
	int64_t t2_events = (int64_t)count_events(st, t2.id, NULL);
	want_msgs++;
	want_events += t2_events;
	/* A STOP that quoted one of them: its suppression outlives the message. */
	struct hr_err err = {0};
	struct account_row acct = {.id = "r-read", .tenant_id = "t1", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	struct wh_inbound in = {.optout = 1, .from = "+15550777", .kind = "text", .text = "STOP"};
	strcpy(in.provider_msg_id, "in-stop-1");
	strcpy(in.context_id, "p-r-read");
	struct inbox_parsed row = {.inbox_id = inbox_add(st, "r-read"),
	                           .account_id = "r-read",
	                           .inbound = &in,
	                           .ninbound = 1};
	struct apply_stats as;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &as), 0);
	assert_int_equal(as.inbound, 1);
	want_events++; /* the "inbound" event on the read message */
	int64_t total = count_msgs(st, NULL);
	assert_int_equal(total, N + 1);

	/* Nothing is older than a cutoff before everything. */
	struct msg_retention_stats rs = retain(st, old - DAY, 2, 0);
	assert_int_equal(rs.messages, 0);
	assert_int_equal(rs.events, 0);
	assert_int_equal(rs.batches, 0);
	assert_false(rs.more);

	rs = retain(st, cutoff, 2, 0);
	assert_int_equal(rs.messages, want_msgs);
	assert_int_equal(rs.events, want_events);
	assert_int_equal(rs.batches, 3); /* 6 messages, 2 a batch */
	assert_false(rs.more);
	assert_int_equal(count_msgs(st, NULL), total - want_msgs);
	for (int i = 0; i < N; i++) {
		struct message m;
		if (cases[i].goes) {
			assert_int_equal(st->ops->message_get(st, NULL, ids[i], &m), HR_ENOTFOUND);
			assert_int_equal(count_events(st, ids[i], NULL), 0);
		} else {
			assert_int_equal(status_of(st, ids[i]), cases[i].status);
			assert_int_equal(count_events(st, ids[i], NULL), events[i]);
		}
	}
	struct message m;
	assert_int_equal(st->ops->message_get(st, "t2", t2.id, &m), HR_ENOTFOUND);
	assert_int_equal(count_events(st, t2.id, NULL), 0);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "r-read", "p-r-read", &m),
	                 HR_ENOTFOUND);
	struct suppression_row *sv;
	assert_int_equal(st->ops->suppression_list(st, "t1", "whatsapp", &sv, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(sv[0].recipient, "+15550777");
	free(sv);
	assert_int_equal(st->ops->suppression_list(st, "t1", "sms", &sv, &n), 0);
	assert_int_equal(n, 1); /* the suppressed message's recipient */
	free(sv);

	/* A late receipt for a removed message: unmatched, kept for a retry. */
	struct apply_stats hs = hook_status(st, "r-deliv", "p-r-deliv", MSG_READ, now, NULL);
	assert_int_equal(hs.unmatched, 1);
	assert_int_equal(hs.applied, 0);

	/* A second run removes nothing. */
	rs = retain(st, cutoff, 2, 0);
	assert_int_equal(rs.messages, 0);
	assert_int_equal(rs.events, 0);
	assert_int_equal(rs.batches, 0);
	assert_false(rs.more);
	assert_int_equal(count_msgs(st, NULL), total - want_msgs);

	/* The scheduled one becomes due and is sent and fails: now it goes. */
	assert_int_equal(st->ops->claim(st, "r-sched", now + 7200 * SEC, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c);
	strcpy(fr.message_id, ids[5]);
	assert_int_equal(st->ops->record_results(st, &fr, 1, NULL, NULL), 0);
	rs = retain(st, cutoff, 2, 0);
	assert_int_equal(rs.messages, 1);
	assert_int_equal(rs.batches, 1);
	assert_int_equal(st->ops->message_get(st, NULL, ids[5], &m), HR_ENOTFOUND);
}

/* max_batches bounds one call; the next carries on where it stopped. */
static void test_message_retention_bounded(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t old = hr_now_us() - 100 * DAY;
	enum { N = 7 };
	struct message m[N];
	for (int i = 0; i < N; i++) {
		mk_msg(&m[i], "t1", "rb", 0, old);
		hr_id_at(old + i * SEC, m[i].id);
		m[i].created_at = old + i * SEC;
	}
	assert_int_equal(st->ops->message_insert(st, m, N, NULL, NULL, NULL), 0);
	size_t n;
	struct message c[N];
	assert_int_equal(st->ops->claim(st, "rb", hr_now_us(), 30 * SEC, N, c, &n), 0);
	assert_int_equal(n, N);
	struct send_result r[N];
	for (int i = 0; i < N; i++) {
		r[i] = (struct send_result){.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
		strcpy(r[i].message_id, c[i].id);
		message_clear(&c[i]);
	}
	assert_int_equal(st->ops->record_results(st, r, N, NULL, NULL), 0);
	int64_t cutoff = hr_now_us() - DAY;
	struct msg_retention_stats rs = retain(st, cutoff, 2, 2);
	assert_int_equal(rs.messages, 4);
	assert_int_equal(rs.batches, 2);
	assert_true(rs.more);
	/* The oldest went first. */
	struct message got;
	assert_int_equal(st->ops->message_get(st, NULL, m[3].id, &got), HR_ENOTFOUND);
	assert_int_equal(status_of(st, m[4].id), MSG_FAILED);
	rs = retain(st, cutoff, 2, 2);
	assert_int_equal(rs.messages, 3);
	assert_int_equal(rs.batches, 2);
	assert_false(rs.more); /* its second batch was short: nothing left */
	rs = retain(st, cutoff, 2, 2);
	assert_int_equal(rs.messages, 0);
	assert_false(rs.more);
	assert_int_equal(count_msgs(st, NULL), 0);
}

/* Bad arguments are refused before anything is touched, naming the field. */
static void test_message_retention_args(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[HR_ID_LEN + 1];
	msg_at_status(st, "ra", "whatsapp", hr_now_us() - 10 * DAY, MSG_FAILED, id);
	const char *bad_names[] = {"Tele gram"};
	const char *long_names[] = {"averyveryverylongchannel"};
	const char *empty_names[] = {""};
	static const char *many[17];
	for (int i = 0; i < 17; i++)
		many[i] = "telegram";
	const struct {
		struct msg_retention r;
		const char *field;
	} bad[] = {
	    {{.before = 0}, "before"},
	    {{.before = -5}, "before"},
	    {{.before = hr_now_us(), .batch = 10001}, "batch"},
	    {{.before = hr_now_us(), .batch = -1}, "batch"},
	    {{.before = hr_now_us(), .max_batches = -1}, "max_batches"},
	    {{.before = hr_now_us(), .final_at_sent = bad_names, .nfinal_at_sent = 1},
	     "final_at_sent"},
	    {{.before = hr_now_us(), .final_at_sent = long_names, .nfinal_at_sent = 1},
	     "final_at_sent"},
	    {{.before = hr_now_us(), .final_at_sent = empty_names, .nfinal_at_sent = 1},
	     "final_at_sent"},
	    {{.before = hr_now_us(), .final_at_sent = many, .nfinal_at_sent = 17}, "final_at_sent"},
	    {{.before = hr_now_us(), .final_at_sent = NULL, .nfinal_at_sent = 1}, "final_at_sent"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct hr_err err = {0};
		struct msg_retention_stats rs = {.messages = 99};
		assert_int_equal(st->ops->message_prune(st, &bad[i].r, &rs, &err), HR_EINVAL);
		assert_string_equal(err.field, bad[i].field);
		assert_int_equal(rs.messages, 0);
	}
	assert_int_equal(status_of(st, id), MSG_FAILED);
	/* No stats wanted: fine. */
	struct msg_retention ok = {.before = hr_now_us()};
	assert_int_equal(st->ops->message_prune(st, &ok, NULL, NULL), 0);
	struct message m;
	assert_int_equal(st->ops->message_get(st, NULL, id, &m), HR_ENOTFOUND);
}

/* ---------------------------------------------------------------------------
 * Listing.
 * ------------------------------------------------------------------------- */

static void test_list_filters_and_paging(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 25 };
	struct message m[N + 5];
	int64_t base = 1700000000LL * SEC;
	for (int i = 0; i < N; i++) {
		mk_msg(&m[i], "t1", i < 20 ? "la" : "lb", 0, 0);
		m[i].created_at = base + i * SEC;
		if (i % 5 == 0)
			strcpy(m[i].channel, "sms");
		if (i >= 10 && i < 16)
			strcpy(m[i].batch_id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
		if (i == 7)
			strcpy(m[i].recipient, "+15550001111");
	}
	for (int i = N; i < N + 5; i++)
		mk_msg(&m[i], "t2", "lc", 0, 0);
	assert_int_equal(st->ops->message_insert(st, m, N + 5, NULL, NULL, NULL), 0);
	struct message out[5];
	size_t n;
	assert_int_equal(st->ops->claim(st, "lb", base + 100 * SEC, SEC, 5, out, &n), 0);
	assert_int_equal(n, 5); /* m[20..24] now SENDING */
	for (size_t i = 0; i < n; i++)
		message_clear(&out[i]);

	/* Paging: newest first, limit+1 tells whether there is more. */
	struct msg_filter flt = {.status = -1, .limit = 10};
	struct message *v;
	bool more;
	int idx = N - 1;
	for (int page = 0; page < 3; page++) {
		assert_int_equal(st->ops->message_list(st, "t1", &flt, &v, &n, &more), 0);
		assert_int_equal(n, page < 2 ? 10 : 5);
		assert_int_equal(more, page < 2);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(v[i].id, m[idx--].id);
		static char cursor[HR_ID_LEN + 1];
		strcpy(cursor, v[n - 1].id);
		flt.before_id = cursor;
		free_list(v, n);
	}
	assert_int_equal(idx, -1);

	static const struct {
		struct msg_filter f;
		const char *tenant;
		size_t want;
	} cases[] = {
	    {{.status = -1, .channel = "sms", .limit = 100}, "t1", 5},
	    {{.status = -1, .batch_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV", .limit = 100}, "t1", 6},
	    {{.status = -1, .recipient = "+15550001111", .limit = 100}, "t1", 1},
	    {{.status = MSG_SENDING, .limit = 100}, "t1", 5},
	    {{.status = MSG_QUEUED, .channel = "sms", .limit = 100}, "t1", 4},
	    {{.status = -1, .since_us = 1700000010LL * SEC, .limit = 100}, "t1", 15},
	    {{.status = -1, .until_us = 1700000010LL * SEC, .limit = 100}, "t1", 10},
	    {{.status = -1,
	      .since_us = 1700000010LL * SEC,
	      .until_us = 1700000012LL * SEC,
	      .limit = 100},
	     "t1",
	     2},
	    {{.status = -1, .limit = 100}, "t2", 5},
	    {{.status = -1, .limit = 100}, NULL, 30},
	    {{.status = -1, .limit = 100}, "t3", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(
		    st->ops->message_list(st, cases[i].tenant, &cases[i].f, &v, &n, &more), 0);
		if (n != cases[i].want)
			fprintf(stderr, "list case %zu: got %zu want %zu\n", i, n, cases[i].want);
		assert_int_equal(n, cases[i].want);
		assert_false(more);
		for (size_t k = 1; k < n; k++)
			assert_true(strcmp(v[k - 1].id, v[k].id) > 0);
		free_list(v, n);
	}

	int64_t c[MSG__COUNT];
	assert_int_equal(st->ops->message_counts(st, "t1", c), 0);
	assert_int_equal(c[MSG_QUEUED], 20);
	assert_int_equal(c[MSG_SENDING], 5);
	assert_int_equal(c[MSG_SENT], 0);
	assert_int_equal(st->ops->message_counts(st, NULL, c), 0);
	assert_int_equal(c[MSG_QUEUED], 25);
}

/* The n messages a search finds, ids newest first in got (n <= 8). */
static size_t search(struct store *st, const char *tenant, const struct msg_filter *f,
                     char got[8][HR_ID_LEN + 1])
{
	struct message *v;
	size_t n;
	bool more;
	assert_int_equal(st->ops->message_list(st, tenant, f, &v, &n, &more), 0);
	assert_false(more);
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++)
		strcpy(got[i], v[i].id);
	free_list(v, n);
	return n;
}

/*
 * The search filters (GET /v1/messages): Herald id, provider id (on any of
 * the tenant's accounts), the Idempotency-Key an accept carried (every
 * message of it, the key as the client sent it), account, error code, and
 * a recipient in several stored forms; each combined with the others, and
 * never across tenants: t2 holds the same provider ids, recipients, keys
 * and error codes, and finds only its own.
 */
static void test_list_search_filters(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	/* t1: m[0] WhatsApp "447911123456", m[1] SMS "+447911123456" (one
	 * accept, key K1), m[2] on account s2; t2: m[3], m[4] the same. */
	struct message a[2], b, c[2];
	mk_msg(&a[0], "t1", "s1", 0, now - 5 * SEC);
	strcpy(a[0].recipient, "447911123456");
	mk_msg(&a[1], "t1", "s1sms", 0, now - 4 * SEC);
	strcpy(a[1].channel, "sms");
	mk_msg(&b, "t1", "s2", 0, now - 3 * SEC);
	strcpy(b.recipient, "+447700900001");
	mk_msg(&c[0], "t2", "x1", 0, now - 2 * SEC);
	strcpy(c[0].recipient, "447911123456");
	mk_msg(&c[1], "t2", "x1", 0, now - 1 * SEC);
	struct idem_put k1 = {.tenant_id = "t1",
	                      .key = "unit\x1fK1",
	                      .request_hash = "h",
	                      .http_status = 202,
	                      .response = "{}",
	                      .client_key = "K1"};
	struct idem_put k2 = {.tenant_id = "t2",
	                      .key = "K1",
	                      .request_hash = "h",
	                      .http_status = 202,
	                      .response = "{}",
	                      .client_key = "K1"};
	/* The accounts, each its tenant's: a search by provider id looks
	 * through the tenant's accounts (migration 14). */
	static const char *const acct_of[][3] = {{"s1", "t1", "whatsapp"},
	                                         {"s1sms", "t1", "sms"},
	                                         {"s2", "t1", "sms"},
	                                         {"x1", "t2", "whatsapp"}};
	for (size_t i = 0; i < 4; i++) {
		struct account_row ar = {0};
		hr_strlcpy(ar.id, acct_of[i][0], sizeof ar.id);
		hr_strlcpy(ar.tenant_id, acct_of[i][1], sizeof ar.tenant_id);
		hr_strlcpy(ar.channel, acct_of[i][2], sizeof ar.channel);
		struct hr_err aerr = {0};
		assert_int_equal(st->ops->account_upsert(st, &ar, &aerr), 0);
	}
	assert_int_equal(st->ops->message_insert(st, a, 2, &k1, NULL, NULL), 0);
	assert_int_equal(st->ops->message_insert(st, &b, 1, NULL, NULL, NULL), 0);
	assert_int_equal(st->ops->message_insert(st, c, 2, &k2, NULL, NULL), 0);

	/* Provider ids and error codes by send results: the same in both tenants. */
	const char *accts[] = {"s1", "s1sms", "s2", "x1"};
	struct message out[4];
	size_t n;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(st->ops->claim(st, accts[i], now, 30 * SEC, 4, out, &n), 0);
		for (size_t k = 0; k < n; k++)
			message_clear(&out[k]);
	}
	struct send_result r[5] = {
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.SAME"},
	    {.kind = SEND_FAILED, .attempt = 1, .error_code = "21610", .error_text = "stop"},
	    {.kind = SEND_FAILED, .attempt = 1, .error_code = "21610", .error_text = "stop"},
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.SAME"},
	    {.kind = SEND_FAILED, .attempt = 1, .error_code = "21610", .error_text = "stop"},
	};
	strcpy(r[0].message_id, a[0].id);
	strcpy(r[1].message_id, a[1].id);
	strcpy(r[2].message_id, b.id);
	strcpy(r[3].message_id, c[0].id);
	strcpy(r[4].message_id, c[1].id);
	assert_int_equal(st->ops->record_results(st, r, 5, NULL, NULL), 0);

	static const char *const none[2];
	const char *const forms[2] = {"447911123456", NULL};
	const struct {
		struct msg_filter f;
		const char *tenant;
		size_t want;
		const struct message *first;
	} cases[] = {
	    /* By Herald id: its own only; another tenant's id finds nothing. */
	    {{.status = -1, .limit = 100, .id = a[1].id}, "t1", 1, &a[1]},
	    {{.status = -1, .limit = 100, .id = c[0].id}, "t1", 0, NULL},
	    /* By provider id: the same id in both tenants. */
	    {{.status = -1, .limit = 100, .provider_id = "wamid.SAME"}, "t1", 1, &a[0]},
	    {{.status = -1, .limit = 100, .provider_id = "wamid.SAME"}, "t2", 1, &c[0]},
	    {{.status = -1, .limit = 100, .provider_id = "wamid.NONE"}, "t1", 0, NULL},
	    /* By idempotency key: both messages of the accept, client's form. */
	    {{.status = -1, .limit = 100, .idem_key = "K1"}, "t1", 2, &a[1]},
	    {{.status = -1, .limit = 100, .idem_key = "K1"}, "t2", 2, &c[1]},
	    {{.status = -1, .limit = 100, .idem_key = "unit\x1fK1"}, "t1", 0, NULL},
	    /* By account and error code, and both with a status. */
	    {{.status = -1, .limit = 100, .account_id = "s2"}, "t1", 1, &b},
	    {{.status = -1, .limit = 100, .account_id = "x1"}, "t1", 0, NULL},
	    {{.status = -1, .limit = 100, .error_code = "21610"}, "t1", 2, &b},
	    {{.status = -1, .limit = 100, .error_code = "21610"}, "t2", 1, &c[1]},
	    {{.status = MSG_FAILED, .limit = 100, .error_code = "21610", .account_id = "s1sms"},
	     "t1",
	     1,
	     &a[1]},
	    {{.status = MSG_SENT, .limit = 100, .error_code = "21610"}, "t1", 0, NULL},
	    /* A phone number in both stored forms, on both channels. */
	    {{.status = -1,
	      .limit = 100,
	      .recipient = "+447911123456",
	      .recipient_alt = {forms[0]}},
	     "t1",
	     2,
	     &a[1]},
	    {{.status = -1,
	      .limit = 100,
	      .recipient = "+447911123456",
	      .recipient_alt = {forms[0]}},
	     "t2",
	     2,
	     &c[1]},
	    {{.status = -1, .limit = 100, .recipient = "+447911123456", .recipient_alt = {none[0]}},
	     "t1",
	     1,
	     &a[1]},
	    {{.status = -1,
	      .limit = 100,
	      .recipient = "+447911123456",
	      .recipient_alt = {forms[0]},
	      .channel = "whatsapp"},
	     "t1",
	     1,
	     &a[0]},
	    {{.status = -1,
	      .limit = 100,
	      .recipient = "+447911123456",
	      .recipient_alt = {forms[0]},
	      .provider_id = "wamid.SAME",
	      .idem_key = "K1",
	      .id = a[0].id},
	     "t1",
	     1,
	     &a[0]},
	    {{.status = -1,
	      .limit = 100,
	      .recipient = "+447700900001",
	      .recipient_alt = {forms[0]}},
	     "t2",
	     1,
	     &c[0]},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char got[8][HR_ID_LEN + 1];
		n = search(st, cases[i].tenant, &cases[i].f, got);
		if (n != cases[i].want)
			fail_msg("search case %zu: got %zu want %zu", i, n, cases[i].want);
		if (cases[i].first)
			assert_string_equal(got[0], cases[i].first->id);
	}
	/* Paging with a search filter: one at a time, newest first. */
	struct msg_filter pf = {.status = -1, .limit = 1, .idem_key = "K1"};
	struct message *v;
	bool more;
	assert_int_equal(st->ops->message_list(st, "t1", &pf, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_true(more);
	assert_string_equal(v[0].id, a[1].id);
	static char cursor[HR_ID_LEN + 1];
	strcpy(cursor, v[0].id);
	free_list(v, n);
	pf.before_id = cursor;
	assert_int_equal(st->ops->message_list(st, "t1", &pf, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_string_equal(v[0].id, a[0].id);
	free_list(v, n);
	/* The same search many times over (a cached or a one-off statement):
	 * the same answer. */
	for (int i = 0; i < 50; i++) {
		char got[8][HR_ID_LEN + 1];
		struct msg_filter sf = {.status = -1, .limit = 100, .provider_id = "wamid.SAME"};
		assert_int_equal(search(st, "t2", &sf, got), 1);
		assert_string_equal(got[0], c[0].id);
	}
}

/* ---------------------------------------------------------------------------
 * The writer's contract: concurrent and async writes, failure isolation,
 * queue limits, draining on close.
 * ------------------------------------------------------------------------- */

/* Blocking inserts from many threads at once all commit, each with its
 * "accepted" event (how the writer groups them is a backend matter). */
static void test_concurrent_inserts(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { T = 8, PER = 500 };
	char(*ids)[HR_ID_LEN + 1] = calloc(T * PER, sizeof *ids);
	assert_non_null(ids);
	concurrent_inserts(st, T, PER, ids);
	assert_int_equal(count_msgs(st, "t1"), T * PER);
	for (int i = 0; i < T * PER; i++) {
		struct events ev = events_of(st, ids[i]);
		assert_int_equal(ev.n, 1);
		assert_string_equal(ev.e[0].type, "accepted");
		events_free(&ev);
	}
	free(ids);
}

static void test_async_inserts(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 1000 };
	struct message *m = calloc(N, sizeof *m); /* borrowed until each callback */
	assert_non_null(m);
	atomic_store(&cb_calls, 0);
	atomic_store(&cb_fail, 0);
	for (int i = 0; i < N; i++) {
		mk_msg(&m[i], "t1", "async", 0, 0);
		assert_int_equal(st->ops->message_insert(st, &m[i], 1, NULL, count_cb, NULL), 0);
	}
	wait_calls(N);
	assert_int_equal(atomic_load(&cb_fail), 0);
	assert_int_equal(count_msgs(st, "t1"), N);
	free(m);
}

/* Writes queued together, two of which fail (see failing_jobs_prepare): the
 * others are committed, the failing ones left nothing behind and say why. */
static void test_failing_job_isolated(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct failing_jobs fj;
	failing_jobs_prepare(st, &fj);
	failing_jobs_run(st, &fj);
	assert_int_equal(fj.ox.err.code, HR_ECONFLICT);
	assert_string_equal(fj.ox.err.field, "Idempotency-Key");
	assert_string_equal(fj.od.err.field, "id");

	assert_int_equal(status_of(st, fj.a.id), MSG_QUEUED);
	assert_int_equal(status_of(st, fj.c.id), MSG_QUEUED);
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, fj.b[0].id, &g), HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get(st, NULL, fj.b[1].id, &g), HR_ENOTFOUND);
	assert_int_equal(st->ops->message_get(st, NULL, fj.d[0].id, &g), HR_ENOTFOUND);
	assert_int_equal(count_events(st, fj.d[0].id, NULL), 0);
	assert_int_equal(count_events(st, fj.d[1].id, NULL), 1); /* the first one's */
	assert_int_equal(count_msgs(st, "t1"), FJ_BIG + 3);
	free(fj.big);
}

static void test_queue_limit_and_close_drains(void **state)
{
	struct fx *f = *state;
	struct store_opts o = {.queue_max = 2, .group_max = 4};
	fx_reopen(f, &o);
	struct store *st = f->st;

	enum { BIG = 5000, SMALL = 4 };
	struct message *big = calloc(BIG, sizeof *big);
	assert_non_null(big);
	for (int i = 0; i < BIG; i++)
		mk_msg(&big[i], "t1", "ql", 1, 0);
	struct message small[SMALL];
	atomic_store(&cb_calls, 0);
	atomic_store(&cb_fail, 0);
	assert_int_equal(st->ops->message_insert(st, big, BIG, NULL, count_cb, NULL), 0);
	int queued = 1, busy = 0;
	for (int i = 0; i < SMALL; i++) {
		mk_msg(&small[i], "t1", "ql", 0, 0);
		int rc = st->ops->message_insert(st, &small[i], 1, NULL, count_cb, NULL);
		assert_true(rc == 0 || rc == HR_EBUSY);
		if (rc == 0)
			queued++;
		else
			busy++;
	}
	assert_true(busy >= 1);
	/* Close right away: everything queued is committed before it returns. */
	backend->close(f->st);
	f->st = NULL;
	assert_int_equal(atomic_load(&cb_calls), queued);
	assert_int_equal(atomic_load(&cb_fail), 0);
	fx_reopen(f, NULL);
	assert_int_equal(count_msgs(f->st, NULL), BIG + queued - 1);
	free(big);
}

/* ---------------------------------------------------------------------------
 * Configuration sync: API keys, templates.
 * ------------------------------------------------------------------------- */

static bool key_present(struct store *st, const char *hash)
{
	char tenant[HR_NAME_MAX];
	int rc = st->ops->api_key_lookup(st, hash, tenant);
	assert_true(rc == 0 || rc == HR_ENOTFOUND);
	return rc == 0;
}

/* Keys removed from the config are revoked: the tenant's keys outside the
 * keep list go, other tenants' stay. */
static void test_api_key_prune(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	static const char *const acme[] = {"k1", "k2", "k3", "q\"uote"};
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(st->ops->api_key_put(st, "acme", acme[i], NULL, &err), 0);
	assert_int_equal(st->ops->api_key_put(st, "other", "o1", NULL, &err), 0);

	const char *keep[] = {"k1", "q\"uote", "o1", "absent"};
	assert_int_equal(st->ops->api_key_prune(st, "acme", keep, 4, &err), 0);
	assert_true(key_present(st, "k1"));
	assert_false(key_present(st, "k2"));
	assert_false(key_present(st, "k3"));
	assert_true(key_present(st, "q\"uote"));
	assert_true(key_present(st, "o1"));

	/* Bad input changes nothing. */
	const char *bad[] = {"k1", NULL};
	assert_int_equal(st->ops->api_key_prune(st, "acme", bad, 2, &err), HR_EINVAL);
	assert_string_equal(err.field, "keep_hashes");
	assert_int_equal(st->ops->api_key_prune(st, "", keep, 1, &err), HR_EINVAL);
	assert_string_equal(err.field, "tenant_id");
	assert_int_equal(st->ops->api_key_prune(st, "acme", NULL, 1, &err), HR_EINVAL);
	assert_true(key_present(st, "k1"));

	assert_int_equal(st->ops->api_key_prune(st, "acme", NULL, 0, &err), 0);
	assert_false(key_present(st, "k1"));
	assert_false(key_present(st, "q\"uote"));
	assert_true(key_present(st, "o1"));
	assert_int_equal(st->ops->api_key_prune(st, "nobody", NULL, 0, &err), 0);
	assert_true(key_present(st, "o1"));
}

static void test_template_config_roundtrip(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	const char *cfg = "{\"header\":{\"type\":\"document\",\"params\":1},"
	                  "\"buttons\":[{\"type\":\"quick_reply\",\"params\":1}],"
	                  "\"regulatory\":{\"dlt_entity_id\":\"1101\","
	                  "\"dlt_template_id\":\"1107\"}}";
	struct template_row t = {.tenant_id = "acme",
	                         .channel = "sms",
	                         .name = "otp",
	                         .language = "en",
	                         .body = (char *)"Code {{1}}",
	                         .param_count = 1,
	                         .config = (char *)cfg};
	assert_int_equal(st->ops->template_upsert(st, &t, &err), 0);
	struct template_row got;
	assert_int_equal(st->ops->template_get(st, "acme", "sms", "otp", "en", &got), 0);
	assert_non_null(got.config);
	assert_string_equal(got.config, cfg);
	assert_string_equal(got.body, "Code {{1}}");
	template_row_clear(&got);
	assert_null(got.config);

	/* Re-synced without config: the column follows (NULL). */
	t.config = NULL;
	assert_int_equal(st->ops->template_upsert(st, &t, &err), 0);
	assert_int_equal(st->ops->template_get(st, "acme", "sms", "otp", "en", &got), 0);
	assert_null(got.config);
	template_row_clear(&got);

	/* Not an object: refused, naming the field, nothing changed. */
	static const char *const bad[] = {"[1,2]", "{\"header\":", "\"x\"", "{\"a\":1,\"a\":2}"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t.config = (char *)bad[i];
		err = (struct hr_err){0};
		assert_int_equal(st->ops->template_upsert(st, &t, &err), HR_EINVAL);
		assert_string_equal(err.field, "template.config");
	}
	assert_int_equal(st->ops->template_get(st, "acme", "sms", "otp", "en", &got), 0);
	assert_null(got.config);
	assert_string_equal(got.body, "Code {{1}}");
	template_row_clear(&got);
}

/* ---------------------------------------------------------------------------
 * Suppression, recipient aliases, opt-out keywords, auto-replies, SMS
 * segments.
 * ------------------------------------------------------------------------- */

static void test_suppression_ops(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	assert_int_equal(
	    st->ops->suppression_put(st, "t1", "sms", "+15550001", "inbound STOP", &err), 0);
	assert_int_equal(st->ops->suppression_put(st, "t1", "whatsapp", "15550001", "manual", &err),
	                 0);
	assert_int_equal(
	    st->ops->suppression_put(st, "t2", "sms", "+15550001", "other tenant", &err), 0);
	struct suppression_row *v;
	size_t n;
	assert_int_equal(st->ops->suppression_list(st, "t1", "sms", &v, &n), 0);
	assert_int_equal(n, 1);
	int64_t first = v[0].created_at;
	assert_true(first > 0);
	free_supp(v);

	/* Again, once the clock has moved on: the reason changes, the row and
	 * its created_at stay. */
	while (hr_now_us() <= first + 1000)
		usleep(200);
	assert_int_equal(
	    st->ops->suppression_put(st, "t1", "sms", "+15550001", "21610: unsubscribed", &err), 0);
	assert_int_equal(supp_count(st, "t2", NULL), 1);

	assert_int_equal(st->ops->suppression_list(st, "t1", NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].channel, "sms");
	assert_string_equal(v[0].tenant_id, "t1");
	assert_string_equal(v[0].recipient, "+15550001");
	assert_string_equal(v[0].reason, "21610: unsubscribed");
	assert_int_equal(v[0].created_at, first);
	assert_string_equal(v[1].channel, "whatsapp");
	assert_string_equal(v[1].reason, "manual");
	free_supp(v);
	assert_int_equal(st->ops->suppression_list(st, "t1", "whatsapp", &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].recipient, "15550001");
	free_supp(v);
	assert_int_equal(st->ops->suppression_list(st, "t3", NULL, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);

	/* Delete: present once, then not found (naming the recipient). */
	assert_int_equal(st->ops->suppression_delete(st, "t1", "sms", "+15550001", &err), 0);
	err = (struct hr_err){0};
	assert_int_equal(st->ops->suppression_delete(st, "t1", "sms", "+15550001", &err),
	                 HR_ENOTFOUND);
	assert_string_equal(err.field, "recipient");
	assert_int_equal(supp_count(st, "t2", NULL), 1);

	/* Bad keys are refused before anything is queued, naming the field. */
	static const struct {
		const char *tenant, *channel, *recipient, *field;
	} bad[] = {
	    {"", "sms", "+1", "tenant_id"},
	    {"t1", NULL, "+1", "channel"},
	    {"t1", "a-channel-name-too-long", "+1", "channel"},
	    {"t1", "sms", "", "recipient"},
	    {"t1", "sms", "+1555\xff", "recipient"},
	    {"t1", "sms", "+1234567890123456789012345678901234567890123456789012345678901234567890",
	     "recipient"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err = (struct hr_err){0};
		assert_int_equal(st->ops->suppression_put(st, bad[i].tenant, bad[i].channel,
		                                          bad[i].recipient, "x", &err),
		                 HR_EINVAL);
		assert_string_equal(err.field, bad[i].field);
		err = (struct hr_err){0};
		assert_int_equal(st->ops->suppression_delete(st, bad[i].tenant, bad[i].channel,
		                                             bad[i].recipient, &err),
		                 HR_EINVAL);
		assert_string_equal(err.field, bad[i].field);
	}
	assert_int_equal(supp_count(st, "t1", NULL), 1);
	assert_int_equal(supp_count(st, "t2", NULL), 1);
	assert_int_equal(st->ops->suppression_list(st, NULL, NULL, &v, &n), HR_EINVAL);
}

/* A message for account/channel/recipient, inserted QUEUED and due now. */
static void queue_to(struct store *st, const char *tenant, const char *account, const char *channel,
                     const char *recipient, int64_t due, char id[HR_ID_LEN + 1])
{
	struct message m;
	mk_msg(&m, tenant, account, 0, due);
	hr_strlcpy(m.channel, channel, sizeof m.channel);
	hr_strlcpy(m.recipient, recipient, sizeof m.recipient);
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	strcpy(id, m.id);
}

/* The last event of a message (its type and parsed detail checked by callers). */
static struct message_event last_event(struct store *st, const char *id)
{
	struct events ev = events_of(st, id);
	assert_true(ev.n > 0);
	struct message_event e = ev.e[ev.n - 1];
	ev.e[ev.n - 1].detail = NULL; /* moved to the caller */
	events_free(&ev);
	return e;
}

static void test_claim_suppressed(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	int64_t now = hr_now_us();
	assert_int_equal(
	    st->ops->suppression_put(st, "t1", "sms", "+15550001", "inbound STOP", &err), 0);
	char stop1[27], stop2[27], ok1[27], wa[27], other[27];
	queue_to(st, "t1", "sms1", "sms", "+15550001", now - 5 * SEC, stop1);
	queue_to(st, "t1", "sms1", "sms", "+15550002", now - 4 * SEC, ok1);
	queue_to(st, "t1", "sms1", "sms", "+15550001", now - 3 * SEC, stop2);
	/* The same number on another channel or for another tenant is not suppressed. */
	queue_to(st, "t1", "wa1", "whatsapp", "+15550001", now - 3 * SEC, wa);
	queue_to(st, "t2", "sms2", "sms", "+15550001", now - 3 * SEC, other);

	struct message out[8];
	size_t n;
	assert_int_equal(st->ops->claim(st, "sms1", now, 30 * SEC, 8, out, &n), 0);
	/* The two opted-out ones come back marked SUPPRESSED (not to be sent),
	 * in claim order; only ok1 is SENDING. */
	assert_int_equal(n, 3);
	assert_string_equal(out[0].id, stop1);
	assert_int_equal(out[0].status, MSG_SUPPRESSED);
	assert_string_equal(out[0].error_code, "suppressed");
	assert_string_equal(out[0].error_text, "inbound STOP");
	assert_string_equal(out[1].id, ok1);
	assert_int_equal(out[1].status, MSG_SENDING);
	assert_string_equal(out[1].recipient, "+15550002");
	assert_string_equal(out[2].id, stop2);
	assert_int_equal(out[2].status, MSG_SUPPRESSED);
	for (size_t i = 0; i < n; i++)
		message_clear(&out[i]);

	const char *gone[] = {stop1, stop2};
	for (size_t i = 0; i < 2; i++) {
		struct message g = msg_of(st, gone[i]);
		assert_int_equal(g.status, MSG_SUPPRESSED);
		assert_string_equal(g.error_text, "inbound STOP");
		/* The API shows this code: a stable one, never "" (issue 8c). */
		assert_string_equal(g.error_code, "suppressed");
		assert_int_equal(g.attempts, 0); /* nothing was attempted */
		assert_int_equal(g.lease_until, 0);
		message_clear(&g);
		struct message_event e = last_event(st, gone[i]);
		assert_string_equal(e.type, "suppressed");
		assert_string_equal(e.source, "dispatcher");
		assert_int_equal(e.status, MSG_SUPPRESSED);
		assert_true(e.applied);
		json_t *d = detail_of(&e);
		assert_string_equal(json_string_value(json_object_get(d, "reason")),
		                    "inbound STOP");
		json_decref(d);
		message_event_clear(&e);
	}
	/* Suppressed messages are final: never claimed again. */
	assert_int_equal(st->ops->claim(st, "sms1", now + 60 * SEC, 30 * SEC, 8, out, &n), 0);
	assert_int_equal(n, 0);

	assert_int_equal(st->ops->claim(st, "wa1", now, 30 * SEC, 8, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, wa);
	message_clear(&out[0]);
	assert_int_equal(st->ops->claim(st, "sms2", now, 30 * SEC, 8, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, other);
	message_clear(&out[0]);

	/* Opted back in: sent again. */
	assert_int_equal(st->ops->suppression_delete(st, "t1", "sms", "+15550001", &err), 0);
	char later[27];
	queue_to(st, "t1", "sms1", "sms", "+15550001", now - SEC, later);
	assert_int_equal(st->ops->claim(st, "sms1", now, 30 * SEC, 8, out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0].id, later);
	message_clear(&out[0]);

	/* A suppression without a reason (the API allows "") still gives the
	 * message a code and a message to show, stored and returned alike. */
	assert_int_equal(st->ops->suppression_put(st, "t1", "sms", "+15550003", "", &err), 0);
	char quiet[27];
	queue_to(st, "t1", "sms1", "sms", "+15550003", now - SEC, quiet);
	assert_int_equal(st->ops->claim(st, "sms1", now, 30 * SEC, 8, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].status, MSG_SUPPRESSED);
	assert_string_equal(out[0].error_code, "suppressed");
	assert_string_equal(out[0].error_text, "the recipient opted out");
	message_clear(&out[0]);
	struct message g = msg_of(st, quiet);
	assert_int_equal(g.status, MSG_SUPPRESSED);
	assert_string_equal(g.error_code, "suppressed");
	assert_string_equal(g.error_text, "the recipient opted out");
	message_clear(&g);
}

/* Claims one message of the account (the only one due), which must be sent
 * (not suppressed), and returns its attempt. */
static int claim_one(struct store *st, const char *account, int64_t now, const char *id,
                     char recipient[HR_ADDR_MAX])
{
	struct message c;
	size_t n;
	assert_int_equal(st->ops->claim(st, account, now, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c.id, id);
	assert_int_equal(c.status, MSG_SENDING);
	int attempt = c.attempts;
	if (recipient)
		strcpy(recipient, c.recipient);
	message_clear(&c);
	return attempt;
}

/* Where the account's claims now send a message queued for `addr`: queues
 * one on tenant t1's telegram account, claims it and gives the recipient the
 * claim returned (the alias table, seen through the claim that uses it). */
static void claimed_address(struct store *st, const char *account, const char *addr, int64_t now,
                            char rcpt[HR_ADDR_MAX])
{
	char id[27];
	queue_to(st, "t1", account, "telegram", addr, now - SEC, id);
	claim_one(st, account, now, id, rcpt);
}

static void assert_migrated(struct store *st, const char *id, const char *from, const char *to)
{
	struct message_event e = last_event(st, id);
	assert_string_equal(e.type, "recipient_migrated");
	assert_string_equal(e.source, "dispatcher");
	assert_int_equal(e.status, -1);
	json_t *d = detail_of(&e);
	assert_string_equal(json_string_value(json_object_get(d, "from")), from);
	assert_string_equal(json_string_value(json_object_get(d, "to")), to);
	json_decref(d);
	message_event_clear(&e);
}

static void test_new_recipient_alias(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], b[27], c[27], rcpt[HR_ADDR_MAX];
	queue_to(st, "t1", "tg1", "telegram", "-100123", now - SEC, a);
	int attempt = claim_one(st, "tg1", now, a, NULL);

	/* The group became a supergroup: retry at the new address. */
	struct send_result r = {.kind = SEND_RETRY,
	                        .attempt = attempt,
	                        .due_at = now,
	                        .http_status = 400,
	                        .new_recipient = "-100999",
	                        .error_code = "400",
	                        .error_text = "group chat was upgraded to a supergroup chat",
	                        .error_class = "transient"};
	strcpy(r.message_id, a);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	struct message g = msg_of(st, a);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_string_equal(g.recipient, "-100999");
	message_clear(&g);
	assert_migrated(st, a, "-100123", "-100999");

	/* The retry goes to the new address, with no second migration. */
	attempt = claim_one(st, "tg1", now + SEC, a, rcpt);
	assert_string_equal(rcpt, "-100999");
	struct events ev = events_of(st, a);
	size_t migrations = 0;
	for (size_t i = 0; i < ev.n; i++)
		migrations += strcmp(ev.e[i].type, "recipient_migrated") == 0;
	events_free(&ev);
	assert_int_equal(migrations, 1);

	/* A message queued later for the old address is rewritten by the claim. */
	queue_to(st, "t1", "tg1", "telegram", "-100123", now - SEC, b);
	claim_one(st, "tg1", now + SEC, b, rcpt);
	assert_string_equal(rcpt, "-100999");
	g = msg_of(st, b);
	assert_string_equal(g.recipient, "-100999");
	assert_int_equal(g.status, MSG_SENDING);
	message_clear(&g);
	assert_migrated(st, b, "-100123", "-100999");

	/* The alias is per account: another account's -100123 is left alone. */
	char other[27];
	queue_to(st, "t1", "tg2", "telegram", "-100123", now - SEC, other);
	claim_one(st, "tg2", now + SEC, other, rcpt);
	assert_string_equal(rcpt, "-100123");

	/* It moved again: both old addresses now lead straight to the newest. */
	r.attempt = attempt;
	strcpy(r.new_recipient, "-100777");
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_migrated(st, a, "-100999", "-100777");
	queue_to(st, "t1", "tg1", "telegram", "-100123", now - SEC, c);
	struct message out[4];
	size_t n;
	assert_int_equal(st->ops->claim(st, "tg1", now + 2 * SEC, 30 * SEC, 4, out, &n), 0);
	assert_int_equal(n, 2); /* a (retry, already moved) and c */
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(out[i].recipient, "-100777");
		message_clear(&out[i]);
	}
	assert_migrated(st, c, "-100123", "-100777");
	claimed_address(st, "tg1", "-100999", now + 2 * SEC, rcpt);
	assert_string_equal(rcpt, "-100777");

	/* A stale outcome (its attempt is over) moves nothing. */
	char d[27];
	queue_to(st, "t1", "tg3", "telegram", "-5", now - SEC, d);
	attempt = claim_one(st, "tg3", now, d, NULL);
	r.attempt = attempt + 1;
	strcpy(r.message_id, d);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	g = msg_of(st, d);
	assert_string_equal(g.recipient, "-5");
	message_clear(&g);
	claimed_address(st, "tg3", "-5", now, rcpt);
	assert_string_equal(rcpt, "-5");
}

/* The address `addr` leads to in an alias table written "old>new;...". */
static void alias_in(const char *table, const char *addr, char out[HR_ADDR_MAX])
{
	hr_strlcpy(out, addr, HR_ADDR_MAX);
	size_t len = strlen(addr);
	for (const char *p = table; *p;) {
		const char *end = p + strcspn(p, ";");
		if ((size_t)(end - p) > len + 1 && strncmp(p, addr, len) == 0 && p[len] == '>')
			snprintf(out, HR_ADDR_MAX, "%.*s", (int)(end - p - (ptrdiff_t)len - 1),
			         p + len + 1);
		p = *end ? end + 1 : end;
	}
}

/* Aliases stay one hop deep and never loop, whatever order moves arrive in.
 * After each move, a message queued for each address shows where the
 * account's claims send it. */
static void test_alias_table_one_hop(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	static const struct {
		const char *to, *moved_to, *table; /* table: old>new, every alias there is */
	} steps[] = {
	    {"B", "A", "B>A"},
	    {"C", "B", "B>A;C>A"},     /* B had moved on to A: C goes straight there */
	    {"A", "B", "A>B;C>B"},     /* reversal: B>A dropped, C repointed to B */
	    {"D", "D", "A>B;C>B"},     /* "moved" to itself: nothing */
	    {"B", "E", "A>E;B>E;C>E"}, /* B moved: everything that led to B follows */
	};
	int64_t now = hr_now_us();
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		char id[27];
		queue_to(st, "t1", "tg4", "telegram", steps[i].to, now - SEC, id);
		struct message c;
		size_t n;
		assert_int_equal(st->ops->claim(st, "tg4", now, 30 * SEC, 1, &c, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(c.id, id);
		struct send_result r = {
		    .kind = SEND_RETRY, .attempt = c.attempts, .due_at = now + 3600 * SEC};
		hr_strlcpy(r.new_recipient, steps[i].moved_to, sizeof r.new_recipient);
		strcpy(r.message_id, id);
		message_clear(&c);
		assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
		static const char *const addrs[] = {"A", "B", "C", "D", "E"};
		for (size_t k = 0; k < sizeof addrs / sizeof addrs[0]; k++) {
			char want[HR_ADDR_MAX], got[HR_ADDR_MAX];
			alias_in(steps[i].table, addrs[k], want);
			claimed_address(st, "tg4", addrs[k], now, got);
			if (strcmp(got, want) != 0)
				fprintf(stderr, "step %zu: %s leads to %s, want %s\n", i, addrs[k],
				        got, want);
			assert_string_equal(got, want);
		}
	}
}

/* A moved address that then opted out: the old address is suppressed too. */
static void test_alias_then_suppressed(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	int64_t now = hr_now_us();
	char a[27], b[27];
	queue_to(st, "t1", "tg1", "telegram", "-1", now - SEC, a);
	int attempt = claim_one(st, "tg1", now, a, NULL);
	struct send_result r = {
	    .kind = SEND_RETRY, .attempt = attempt, .due_at = now, .new_recipient = "-2"};
	strcpy(r.message_id, a);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(st->ops->suppression_put(st, "t1", "telegram", "-2", "blocked", &err), 0);
	queue_to(st, "t1", "tg1", "telegram", "-1", now - SEC, b);
	struct message out[4];
	size_t n;
	assert_int_equal(st->ops->claim(st, "tg1", now + SEC, 30 * SEC, 4, out, &n), 0);
	assert_int_equal(n, 2); /* a (retried) and b: both marked, neither to send */
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out[i].status, MSG_SUPPRESSED);
		message_clear(&out[i]);
	}
	struct message g = msg_of(st, b);
	assert_int_equal(g.status, MSG_SUPPRESSED);
	assert_string_equal(g.recipient, "-2");
	assert_string_equal(g.error_text, "blocked");
	message_clear(&g);
	struct events ev = events_of(st, b);
	assert_int_equal(ev.n, 3);
	assert_string_equal(ev.e[1].type, "recipient_migrated");
	assert_string_equal(ev.e[2].type, "suppressed");
	events_free(&ev);
	assert_int_equal(status_of(st, a), MSG_SUPPRESSED);
}

static void test_record_suppress_flag(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	char a[27], b[27], c[27];
	queue_to(st, "t1", "sms1", "sms", "+15557654321", now - SEC, a);
	int attempt = claim_one(st, "sms1", now, a, NULL);
	struct send_result r = {.kind = SEND_FAILED,
	                        .attempt = attempt,
	                        .http_status = 400,
	                        .suppress = true,
	                        .error_code = "21610",
	                        .error_text = "Attempt to send to unsubscribed recipient",
	                        .error_class = "permanent"};
	strcpy(r.message_id, a);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(status_of(st, a), MSG_FAILED);
	struct suppression_row *v;
	size_t n;
	assert_int_equal(st->ops->suppression_list(st, "t1", "sms", &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].recipient, "+15557654321");
	assert_string_equal(v[0].reason, "21610: Attempt to send to unsubscribed recipient");
	free_supp(v);
	struct message_event e = last_event(st, a);
	assert_string_equal(e.type, "failed");
	json_t *d = detail_of(&e);
	assert_true(json_is_true(json_object_get(d, "recipient_suppressed")));
	json_decref(d);
	message_event_clear(&e);

	/* The next message to that number is suppressed, not sent. */
	queue_to(st, "t1", "sms1", "sms", "+15557654321", now - SEC, b);
	struct message out[2];
	assert_int_equal(st->ops->claim(st, "sms1", now + SEC, 30 * SEC, 2, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].status, MSG_SUPPRESSED);
	message_clear(&out[0]);
	assert_int_equal(status_of(st, b), MSG_SUPPRESSED);

	/* Without the flag nothing is suppressed; a stale outcome with it still
	 * records the opt-out (a fact about the number, not about the attempt). */
	queue_to(st, "t1", "sms1", "sms", "+15550000", now - SEC, c);
	attempt = claim_one(st, "sms1", now + SEC, c, NULL);
	r.suppress = false;
	r.attempt = attempt;
	strcpy(r.message_id, c);
	strcpy(r.error_code, "30003");
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(supp_count(st, "t1", NULL), 1);
	r.suppress = true;
	r.attempt = attempt + 7;
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(st->ops->suppression_list(st, "t1", "sms", &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].recipient, "+15550000");
	assert_string_equal(v[0].reason, "30003: Attempt to send to unsubscribed recipient");
	free_supp(v);
}

/* One inbound text on an sms account, in its own inbox row. */
static struct apply_stats inbound_sms(struct store *st, const char *account, struct wh_inbound *in,
                                      int64_t *inbox_id)
{
	struct inbox_parsed row = {.inbox_id = inbox_add_on(st, account, "sms"),
	                           .account_id = account,
	                           .inbound = in,
	                           .ninbound = 1};
	if (inbox_id)
		*inbox_id = row.inbox_id;
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &s), 0);
	return s;
}

static void test_inbound_stop_start(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err;
	struct account_row acct = {.id = "sms1", .tenant_id = "t9", .channel = "sms"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	char orig[27];
	sent_msg(st, "sms1", "SM0001", orig); /* tenant t1 message, linked below */

	/* Table: what each inbound leaves on the list (reason or NULL). */
	static const struct {
		const char *id, *text, *context;
		int optout;
		const char *reason; /* NULL: not suppressed afterwards */
	} steps[] = {
	    {"SMin1", "  stop \n", "SM0001", 1, "inbound STOP"},
	    {"SMin2", "Unsubscribe", "", 1, "inbound UNSUBSCRIBE"},
	    {"SMin3", "start", "", -1, NULL},
	    {"SMin4", "START", "", -1, NULL}, /* not on the list: fine */
	    {"SMin5", "stopall please, all of my numbers, right now, thanks", "", 1,
	     "inbound STOPALL PLEASE, ALL OF MY NUMBER"},
	    {"SMin6", "Hello there", "", 0, "inbound STOPALL PLEASE, ALL OF MY NUMBER"},
	    {"SMin7", "unstop", "", -1, NULL},
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		struct wh_inbound in = {.optout = steps[i].optout,
		                        .from = "+15550123",
		                        .kind = "text",
		                        .text = (char *)steps[i].text};
		strcpy(in.provider_msg_id, steps[i].id);
		strcpy(in.context_id, steps[i].context);
		struct apply_stats s = inbound_sms(st, "sms1", &in, NULL);
		assert_int_equal(s.inbound, 1);
		struct suppression_row *v;
		size_t n;
		assert_int_equal(st->ops->suppression_list(st, "t9", "sms", &v, &n), 0);
		if (!steps[i].reason) {
			assert_int_equal(n, 0);
		} else {
			assert_int_equal(n, 1);
			assert_string_equal(v[0].recipient, "+15550123");
			assert_string_equal(v[0].reason, steps[i].reason);
		}
		free_supp(v);
	}
	/* The tenant is the account's (t9), not the message's (t1). */
	assert_int_equal(supp_count(st, "t1", NULL), 0);

	/* The STOP linked to the message shows in its audit trail. */
	struct message_event e = last_event(st, orig);
	assert_string_equal(e.type, "inbound");
	json_t *d = detail_of(&e);
	assert_string_equal(json_string_value(json_object_get(d, "optout")), "stop");
	assert_string_equal(json_string_value(json_object_get(d, "text")), "  stop \n");
	json_decref(d);
	message_event_clear(&e);

	/* A replayed STOP (same provider id) after the START changes nothing. */
	struct wh_inbound again = {.provider_msg_id = "SMin2",
	                           .optout = 1,
	                           .from = "+15550123",
	                           .kind = "text",
	                           .text = (char *)"UNSUBSCRIBE"};
	struct apply_stats s = inbound_sms(st, "sms1", &again, NULL);
	assert_int_equal(s.inbound, 0);
	assert_int_equal(supp_count(st, "t9", NULL), 0);
	assert_int_equal(supp_count(st, "t1", NULL), 0);

	/* Opt-out on one channel leaves the tenant's other channels alone. */
	struct wh_inbound stop = {.provider_msg_id = "SMin8",
	                          .optout = 1,
	                          .from = "+15550123",
	                          .kind = "text",
	                          .text = (char *)"STOP"};
	assert_int_equal(inbound_sms(st, "sms1", &stop, NULL).inbound, 1);
	assert_int_equal(supp_count(st, "t9", "sms"), 1);
	assert_int_equal(supp_count(st, "t9", NULL), 1);
	char wa[27];
	queue_to(st, "t9", "wa9", "whatsapp", "+15550123", hr_now_us() - SEC, wa);
	claim_one(st, "wa9", hr_now_us(), wa, NULL);
}

static void test_auto_reply_once(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err;
	struct account_row acct = {.id = "sms1", .tenant_id = "t9", .channel = "sms"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);

	/* 161 GSM-7 characters (quotes and a newline among them): two segments. */
	char reply[200];
	int len = snprintf(reply, sizeof reply, "Acme: \"help\" line\nReply STOP to opt out. ");
	while (len < 161)
		reply[len++] = 'x';
	reply[len] = '\0';
	struct wh_inbound in = {.provider_msg_id = "SMhelp1",
	                        .from = "+15550123",
	                        .kind = "text",
	                        .text = (char *)"HELP",
	                        .auto_reply = reply};
	int64_t inbox_id;
	struct apply_stats s = inbound_sms(st, "sms1", &in, &inbox_id);
	assert_int_equal(s.inbound, 1);

	struct message *v;
	size_t n;
	bool more;
	struct msg_filter flt = {.status = -1, .limit = 10};
	assert_int_equal(st->ops->message_list(st, "t9", &flt, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	struct message *m = &v[0];
	assert_true(hr_id_valid(m->id));
	assert_string_equal(m->tenant_id, "t9");
	assert_string_equal(m->account_id, "sms1");
	assert_string_equal(m->channel, "sms");
	assert_string_equal(m->recipient, "+15550123");
	assert_int_equal(m->status, MSG_QUEUED);
	assert_int_equal(m->priority, 0);
	assert_int_equal(m->max_attempts, 0);
	assert_int_equal(m->attempts, 0);
	assert_int_equal(m->segments, 2);
	assert_string_equal(m->body, reply);
	json_error_t jerr;
	json_t *c = json_loads(m->content, 0, &jerr);
	assert_non_null(c);
	assert_int_equal(json_object_size(c), 2);
	assert_string_equal(json_string_value(json_object_get(c, "type")), "text");
	assert_string_equal(json_string_value(json_object_get(c, "text")), reply);
	json_decref(c);
	char id[27];
	strcpy(id, m->id);
	free_list(v, n);

	struct events ev = events_of(st, id);
	assert_int_equal(ev.n, 1);
	assert_string_equal(ev.e[0].type, "accepted");
	assert_string_equal(ev.e[0].source, "webhook");
	assert_int_equal(ev.e[0].status, MSG_QUEUED);
	json_t *d = detail_of(&ev.e[0]);
	assert_string_equal(json_string_value(json_object_get(d, "auto_reply_to")), "SMhelp1");
	json_decref(d);
	events_free(&ev);

	/* The same inbox row applied twice, and the same inbound redelivered in
	 * a new row: no second answer. */
	struct inbox_parsed row = {
	    .inbox_id = inbox_id, .account_id = "sms1", .inbound = &in, .ninbound = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.inbound, 0);
	s = inbound_sms(st, "sms1", &in, NULL);
	assert_int_equal(s.inbound, 0);
	assert_int_equal(count_msgs(st, "t9"), 1);

	/* The dispatcher sends it like any message (due now). */
	claim_one(st, "sms1", hr_now_us() + SEC, id, NULL);

	/* A HELP on another channel: no segments, the sender's address as given. */
	struct account_row wa = {.id = "wa9", .tenant_id = "t9", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &wa, &err), 0);
	struct wh_inbound in2 = {.provider_msg_id = "wamid.help",
	                         .from = "15550123",
	                         .kind = "text",
	                         .text = (char *)"help",
	                         .auto_reply = (char *)"See acme.example/help"};
	struct inbox_parsed row2 = {.inbox_id = inbox_add_on(st, "wa9", "whatsapp"),
	                            .account_id = "wa9",
	                            .inbound = &in2,
	                            .ninbound = 1};
	assert_int_equal(st->ops->apply_inbox(st, &row2, 1, hr_now_us(), &s), 0);
	flt.channel = "whatsapp";
	assert_int_equal(st->ops->message_list(st, "t9", &flt, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].segments, 0);
	assert_string_equal(v[0].recipient, "15550123");
	free_list(v, n);
}

/* The event of type `type` of a message (exactly one), detail parsed. */
static json_t *event_detail(struct store *st, const char *id, const char *type, int *count)
{
	struct events ev = events_of(st, id);
	json_t *d = NULL;
	*count = 0;
	for (size_t i = 0; i < ev.n; i++)
		if (strcmp(ev.e[i].type, type) == 0) {
			(*count)++;
			json_decref(d);
			d = detail_of(&ev.e[i]);
		}
	events_free(&ev);
	return d;
}

/*
 * A plugin's route change (SEND_REROUTE) in the rules above the
 * backend: the claimed message moves to another account of its tenant
 * (a new channel: the plugin's text, the recipient spelt for it), QUEUED
 * and due at once with its attempt given back, event "rerouted"; an
 * account of another tenant, an unknown one, or one on another channel
 * than asked is refused: queued again as it was, event "route_refused";
 * a stale result changes nothing; SEND_NOTE only records an event.
 */
static void test_record_reroute(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct account_row acc[] = {
	    {.id = "rr-wa", .tenant_id = "t1", .channel = "whatsapp"},
	    {.id = "rr-wa2", .tenant_id = "t1", .channel = "whatsapp"},
	    {.id = "rr-sms", .tenant_id = "t1", .channel = "sms"},
	    {.id = "rr-tg", .tenant_id = "t1", .channel = "telegram"},
	    {.id = "rr-beta", .tenant_id = "t2", .channel = "sms"},
	};
	for (size_t i = 0; i < sizeof acc / sizeof *acc; i++)
		assert_int_equal(st->ops->account_upsert(st, &acc[i], &err), 0);
	int64_t now = hr_now_us();
	enum { N = 6 };
	char id[N][27];
	for (int i = 0; i < N; i++)
		queue_to(st, "t1", "rr-wa", "whatsapp", "447911000001", now - (N - i) * SEC, id[i]);
	struct message out[N];
	size_t n;
	assert_int_equal(st->ops->claim(st, "rr-wa", now, 30 * SEC, N, out, &n), 0);
	assert_int_equal(n, N);
	struct send_result r[N + 1];
	memset(r, 0, sizeof r);
	static const struct {
		const char *account, *channel, *text;
	} to[N] = {
	    {"rr-sms", "sms", "Pay 10 today"}, /* moved to SMS */
	    {"rr-wa2", "whatsapp", NULL},      /* another number, same content */
	    {"rr-beta", "sms", "x"},           /* another tenant's: refused */
	    {"nope", "sms", "x"},              /* unknown: refused */
	    {"rr-sms", "whatsapp", NULL},      /* not on that channel: refused */
	    {"rr-tg", "telegram", "x"},        /* whatsapp cannot move to telegram */
	};
	for (int i = 0; i < N; i++) {
		hr_strlcpy(r[i].message_id, out[i].id, sizeof r[i].message_id);
		assert_string_equal(out[i].id, id[i]);
		r[i].attempt = out[i].attempts;
		r[i].kind = SEND_REROUTE;
		hr_strlcpy(r[i].error_code, "plugin_rerouted", sizeof r[i].error_code);
		hr_strlcpy(r[i].error_text, "plugin p: because", sizeof r[i].error_text);
		hr_strlcpy(r[i].route_account, to[i].account, sizeof r[i].route_account);
		hr_strlcpy(r[i].route_channel, to[i].channel, sizeof r[i].route_channel);
		r[i].route_text = to[i].text ? strdup(to[i].text) : NULL;
		message_clear(&out[i]);
	}
	/* A stale one: an older attempt of the first message. */
	r[N] = r[0];
	r[N].attempt = 0;
	r[N].route_text = NULL;
	assert_int_equal(st->ops->record_results(st, r, N + 1, NULL, NULL), 0);
	for (int i = 0; i <= N; i++)
		send_result_clear(&r[i]);

	struct message m = msg_of(st, id[0]);
	assert_int_equal(m.status, MSG_QUEUED);
	assert_string_equal(m.account_id, "rr-sms");
	assert_string_equal(m.channel, "sms");
	assert_string_equal(m.recipient, "+447911000001");
	assert_string_equal(m.body, "Pay 10 today");
	json_t *c = json_loads(m.content, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(c, "type")), "text");
	assert_string_equal(json_string_value(json_object_get(c, "text")), "Pay 10 today");
	json_decref(c);
	assert_int_equal(m.segments, 1);
	assert_int_equal(m.attempts, 0);
	assert_string_equal(m.error_code, "plugin_rerouted");
	assert_string_equal(m.error_text, "plugin p: because");
	message_clear(&m);
	int k;
	json_t *d = event_detail(st, id[0], "rerouted", &k);
	assert_int_equal(k, 2); /* the change, and the stale one recorded as ignored */
	assert_string_equal(json_string_value(json_object_get(d, "ignored")), "stale_attempt");
	json_decref(d);

	m = msg_of(st, id[1]);
	assert_int_equal(m.status, MSG_QUEUED);
	assert_string_equal(m.account_id, "rr-wa2");
	assert_string_equal(m.channel, "whatsapp");
	assert_string_equal(m.recipient, "447911000001");
	assert_string_equal(m.content, CONTENT); /* same channel: same content */
	message_clear(&m);
	d = event_detail(st, id[1], "rerouted", &k);
	assert_int_equal(k, 1);
	assert_string_equal(json_string_value(json_object_get(d, "from_account")), "rr-wa");
	assert_string_equal(json_string_value(json_object_get(d, "account_id")), "rr-wa2");
	json_decref(d);

	static const char *const why[] = {
	    "no such account of the message's tenant", "no such account of the message's tenant",
	    "the account is not on that channel", "a message cannot move between these channels"};
	for (int i = 2; i < N; i++) {
		m = msg_of(st, id[i]);
		assert_int_equal(m.status, MSG_QUEUED);
		assert_string_equal(m.account_id, "rr-wa");
		assert_string_equal(m.channel, "whatsapp");
		assert_string_equal(m.content, CONTENT);
		assert_string_equal(m.error_code, "plugin_route_refused");
		assert_int_equal(m.attempts, 0);
		message_clear(&m);
		d = event_detail(st, id[i], "route_refused", &k);
		assert_int_equal(k, 1);
		assert_string_equal(json_string_value(json_object_get(d, "refused")), why[i - 2]);
		json_decref(d);
		event_detail(st, id[i], "rerouted", &k);
		assert_int_equal(k, 0);
	}
	/* The moved ones are claimed by their new accounts; the refused ones
	 * by their own, once. */
	assert_int_equal(claim_one(st, "rr-sms", now + SEC, id[0], NULL), 1);
	assert_int_equal(claim_one(st, "rr-wa2", now + SEC, id[1], NULL), 1);
	assert_int_equal(st->ops->claim(st, "rr-wa", now + SEC, 30 * SEC, N, out, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		message_clear(&out[i]);

	/* A note changes nothing but the audit trail. */
	struct send_result note = {.kind = SEND_NOTE, .attempt = 1, .note_type = "route_refused"};
	hr_strlcpy(note.message_id, id[0], sizeof note.message_id);
	hr_strlcpy(note.error_code, "plugin_route_refused", sizeof note.error_code);
	hr_strlcpy(note.error_text, "plugin p: no", sizeof note.error_text);
	assert_int_equal(st->ops->record_results(st, &note, 1, NULL, NULL), 0);
	m = msg_of(st, id[0]);
	assert_int_equal(m.status, MSG_SENDING);
	assert_string_equal(m.account_id, "rr-sms");
	message_clear(&m);
	d = event_detail(st, id[0], "route_refused", &k);
	assert_int_equal(k, 1);
	assert_string_equal(json_string_value(json_object_get(d, "error_text")), "plugin p: no");
	json_decref(d);
}

static void test_segments_roundtrip(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[2];
	mk_msg(&m[0], "t1", "sms1", 0, now - SEC);
	strcpy(m[0].channel, "sms");
	m[0].segments = 3;
	mk_msg(&m[1], "t1", "sms1", 0, now - SEC + 1);
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);

	struct message g = msg_of(st, m[0].id);
	assert_int_equal(g.segments, 3);
	message_clear(&g);
	g = msg_of(st, m[1].id);
	assert_int_equal(g.segments, 0);
	message_clear(&g);

	struct message *v;
	size_t n;
	struct msg_filter flt = {.status = -1, .channel = "sms", .limit = 10};
	assert_int_equal(st->ops->message_list(st, "t1", &flt, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].segments, 3);
	free_list(v, n);

	struct message out[2];
	assert_int_equal(st->ops->claim(st, "sms1", now, 30 * SEC, 2, out, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].segments, 3);
	assert_int_equal(out[1].segments, 0);
	int attempt = out[0].attempts;
	message_clear(&out[0]);
	message_clear(&out[1]);

	/* Stored per message: outcomes and receipts leave it alone. */
	struct send_result r = {.kind = SEND_OK, .attempt = attempt, .provider_id = "SMseg"};
	strcpy(r.message_id, m[0].id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	assert_int_equal(st->ops->message_get_by_provider_id(st, "sms1", "SMseg", &g), 0);
	assert_int_equal(g.segments, 3);
	message_clear(&g);
}

/* ---------------------------------------------------------------------------
 * Concurrency: what must hold when several workers share one store (on a
 * shared backend, several processes). Worker threads only record what they
 * saw; the test's thread asserts, with exact counts, after joining them.
 * ------------------------------------------------------------------------- */

enum { CC_N = 300, CC_T = 4, CC_LIMIT = 7 };

struct claim_race {
	struct store *st;
	pthread_barrier_t start;
	atomic_int total;            /* messages handed out, all claimers */
	char (*seen)[HR_ID_LEN + 1]; /* CC_N + CC_T * CC_LIMIT slots, in hand-out order */
	int64_t deadline;            /* hr_mono_us() */
};

struct claimer {
	pthread_t th;
	struct claim_race *race;
	struct store *st; /* its own store (another node), or NULL: the race's */
	int rc, got;
	int odd; /* handed out but not SENDING on attempt 1 */
};

/* Claims from the shared account until every message is handed out (or the
 * deadline passes). A claim that finds nothing does not end a claimer while
 * messages are unclaimed: on a backend that skips rows another claim has
 * locked, it may find nothing for a moment. */
static void *claim_thread(void *arg)
{
	struct claimer *c = arg;
	struct claim_race *r = c->race;
	struct store *st = c->st ? c->st : r->st;
	pthread_barrier_wait(&r->start);
	struct message out[CC_LIMIT];
	while (atomic_load(&r->total) < CC_N && hr_mono_us() < r->deadline) {
		size_t n = 0;
		c->rc = st->ops->claim(st, "shared", hr_now_us(), 60 * SEC, CC_LIMIT, out, &n);
		if (c->rc != 0)
			break;
		for (size_t i = 0; i < n; i++) {
			int k = atomic_fetch_add(&r->total, 1);
			if (k < CC_N + CC_T * CC_LIMIT)
				memcpy(r->seen[k], out[i].id, HR_ID_LEN + 1);
			c->odd += out[i].status != MSG_SENDING || out[i].attempts != 1;
			message_clear(&out[i]);
		}
		c->got += (int)n;
	}
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Claimers started together on one account never get the same message, and
 * together get each queued message exactly once. With `separate`, each
 * claimer has its own store opened on the same database, as several nodes
 * (processes) would: on a shared backend their claims really run at once,
 * in separate transactions. */
static void claimers_run(struct fx *f, bool separate)
{
	struct store *st = f->st;
	struct message *m = calloc(CC_N, sizeof *m);
	char(*want)[HR_ID_LEN + 1] = calloc(CC_N, sizeof *want);
	struct claim_race r = {.st = st, .deadline = hr_mono_us() + WAIT_US};
	r.seen = calloc(CC_N + CC_T * CC_LIMIT, sizeof *r.seen);
	assert_non_null(m);
	assert_non_null(want);
	assert_non_null(r.seen);
	for (int i = 0; i < CC_N; i++) {
		mk_msg(&m[i], "t1", "shared", i % 2, 0);
		memcpy(want[i], m[i].id, sizeof want[i]);
	}
	assert_int_equal(st->ops->message_insert(st, m, CC_N, NULL, NULL, NULL), 0);
	free(m);

	struct claimer c[CC_T];
	assert_int_equal(pthread_barrier_init(&r.start, NULL, CC_T), 0);
	for (int i = 0; i < CC_T; i++) {
		c[i] = (struct claimer){.race = &r};
		struct hr_err err = {0};
		if (separate)
			assert_int_equal(backend->open(f->dsn, NULL, &c[i].st, &err), 0);
	}
	for (int i = 0; i < CC_T; i++)
		assert_int_equal(pthread_create(&c[i].th, NULL, claim_thread, &c[i]), 0);
	int sum = 0;
	for (int i = 0; i < CC_T; i++) {
		pthread_join(c[i].th, NULL);
		if (c[i].st)
			backend->close(c[i].st);
		fprintf(stderr, "    claimer %d: %d messages\n", i, c[i].got);
		assert_int_equal(c[i].rc, 0);
		assert_int_equal(c[i].odd, 0);
		sum += c[i].got;
	}
	pthread_barrier_destroy(&r.start);
	assert_int_equal(sum, CC_N);
	assert_int_equal(atomic_load(&r.total), CC_N);

	/* Handed out: exactly the inserted ids, each once. */
	qsort(r.seen, CC_N, sizeof r.seen[0], cmp_id);
	qsort(want, CC_N, sizeof want[0], cmp_id);
	for (int i = 0; i < CC_N; i++)
		assert_string_equal(r.seen[i], want[i]);

	struct message out[1];
	size_t n;
	assert_int_equal(st->ops->claim(st, "shared", hr_now_us(), 60 * SEC, 1, out, &n), 0);
	assert_int_equal(n, 0);
	int64_t counts[MSG__COUNT];
	assert_int_equal(st->ops->message_counts(st, "t1", counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 0);
	assert_int_equal(counts[MSG_SENDING], CC_N);
	struct msg_filter flt = {.status = MSG_SENDING, .limit = 1000};
	struct message *v;
	bool more;
	assert_int_equal(st->ops->message_list(st, "t1", &flt, &v, &n, &more), 0);
	assert_int_equal(n, CC_N);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].attempts, 1); /* nobody claimed one twice */
	free_list(v, n);
	free(want);
	free(r.seen);
}

/* ---------------------------------------------------------------------------
 * Campaigns (batches): counters kept with every change, equal to a recount.
 * ------------------------------------------------------------------------- */

static void mk_batch(struct batch *b, const char *tenant, const char *account)
{
	memset(b, 0, sizeof *b);
	hr_id_new(b->id);
	hr_strlcpy(b->tenant_id, tenant, sizeof b->tenant_id);
	strcpy(b->name, "December promo");
	strcpy(b->channel, "whatsapp");
	hr_strlcpy(b->account_id, account, sizeof b->account_id);
	b->receipts = true;
}

static struct batch batch_of(struct store *st, const char *id)
{
	struct batch b;
	assert_int_equal(st->ops->batch_get(st, NULL, id, &b), 0);
	return b;
}

/* The kept counters equal a recount of the message table, exactly. */
static void assert_counters_true(struct store *st, const char *id)
{
	struct batch b = batch_of(st, id);
	int64_t rc[MSG__COUNT], replied;
	assert_int_equal(st->ops->batch_recount(st, id, rc, &replied), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		if (b.by_status[i] != rc[i])
			fail_msg("batch %s: %s kept %lld, recount %lld", id,
			         msg_status_name((enum msg_status)i), (long long)b.by_status[i],
			         (long long)rc[i]);
	assert_int_equal(b.replied, replied);
	batch_clear(&b);
}

static void mk_item(struct batch_item *it, int64_t row, const char *to, bool valid)
{
	memset(it, 0, sizeof *it);
	it->row = row;
	hr_strlcpy(it->recipient, to, sizeof it->recipient);
	it->valid = valid;
	if (!valid) {
		strcpy(it->error_column, "phone");
		strcpy(it->error, "not a phone number");
	}
}

/* The batch's message for a row, as the campaign worker makes it. */
static void mk_row_msg(struct message *m, const struct batch *b, const char *to)
{
	mk_msg(m, b->tenant_id, b->account_id, PRIO_BULK, hr_now_us() - SEC);
	hr_strlcpy(m->recipient, to, sizeof m->recipient);
	strcpy(m->batch_id, b->id);
}

/* Rows 1..n valid (+4479000000<row>), validated, started and all queued. */
static void running_batch(struct store *st, struct batch *b, const char *account, int n)
{
	struct hr_err err = {0};
	mk_batch(b, "t1", account);
	assert_int_equal(st->ops->batch_create(st, b, &err), 0);
	struct batch_item it[16];
	struct message m[16];
	int64_t rows[16];
	char to[16][32];
	assert_true(n <= 16);
	for (int i = 0; i < n; i++) {
		snprintf(to[i], sizeof to[i], "+4479000000%02d", i + 1);
		mk_item(&it[i], i + 1, to[i], true);
		mk_row_msg(&m[i], b, to[i]);
		rows[i] = i + 1;
	}
	assert_int_equal(st->ops->batch_items_put(st, b->id, it, (size_t)n, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b->id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b->id, BATCH_PROCESSING, NULL, &err),
	                 0);
	size_t made;
	assert_int_equal(st->ops->batch_enqueue(st, b->id, rows, m, (size_t)n, true, &made, &err), 0);
	assert_int_equal(made, (size_t)n);
}

static void result(struct store *st, const char *id, enum send_kind kind, int attempt,
                   const char *pid)
{
	struct send_result r = {.kind = kind, .attempt = attempt, .http_status = 200};
	strcpy(r.message_id, id);
	if (pid)
		hr_strlcpy(r.provider_id, pid, sizeof r.provider_id);
	if (kind == SEND_FAILED) {
		r.http_status = 400;
		strcpy(r.error_code, "131026");
		strcpy(r.error_text, "Message undeliverable");
	}
	if (kind == SEND_RETRY)
		r.due_at = hr_now_us() - SEC;
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
}

/* The status counts are the gauges and the recount both. */
static void want_gauges(struct store *st, const int64_t want[MSG__COUNT])
{
	int64_t g[MSG__COUNT];
	assert_int_equal(st->ops->message_gauges(st, g), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		if (g[i] != want[i])
			fail_msg("gauge %s: %lld, want %lld", msg_status_name((enum msg_status)i),
			         (long long)g[i], (long long)want[i]);
	assert_gauges_match(st);
}

/*
 * The status counts /metrics reads (message_gauges) follow every way a
 * message comes, moves and goes, exactly: the API's accept (one and many),
 * an accept refused whole, claims, outcomes with one item of the call
 * undone, a campaign's messages and its cancellation, and retention's
 * deletes (messages in the store are counted; removed ones are not).
 */
static void test_status_gauges(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t want[MSG__COUNT] = {0};
	want_gauges(st, want);

	/* One of each status, long ago. */
	int64_t now = hr_now_us(), old = now - 400 * DAY;
	static const enum msg_status each[] = {MSG_FAILED,  MSG_DELIVERED, MSG_READ,
	                                       MSG_SENT,    MSG_QUEUED,    MSG_SENDING,
	                                       MSG_UNKNOWN, MSG_SUPPRESSED};
	char ids[8][HR_ID_LEN + 1];
	for (int i = 0; i < 8; i++) {
		char acct[16];
		snprintf(acct, sizeof acct, "g%d", i);
		msg_at_status(st, acct, "whatsapp", old + i * SEC, each[i], ids[i]);
		want[each[i]]++;
	}
	want_gauges(st, want);

	/* Three accepted in one call; then a call whose second message's id
	 * exists: refused whole, nothing counted. */
	struct message m[3];
	for (int i = 0; i < 3; i++)
		mk_msg(&m[i], "t1", "gq", 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, m, 3, NULL, NULL, NULL), 0);
	want[MSG_QUEUED] += 3;
	want_gauges(st, want);
	struct message dup[2];
	mk_msg(&dup[0], "t1", "gq", 0, now);
	dup[1] = m[0];
	assert_int_equal(st->ops->message_insert(st, dup, 2, NULL, NULL, NULL), HR_ECONFLICT);
	want_gauges(st, want);

	/* Claim the three; outcomes: one SENT, one FAILED, and one item of an
	 * unknown kind, which is undone (the message stays SENDING). */
	struct message c[3];
	size_t n;
	assert_int_equal(st->ops->claim(st, "gq", now, 30 * SEC, 3, c, &n), 0);
	assert_int_equal(n, 3);
	want[MSG_QUEUED] -= 3;
	want[MSG_SENDING] += 3;
	want_gauges(st, want);
	struct send_result r[3] = {
	    {.kind = SEND_OK, .attempt = 1, .provider_id = "wamid.g0"},
	    {.kind = (enum send_kind)9, .attempt = 1},
	    {.kind = SEND_FAILED, .attempt = 1, .http_status = 400},
	};
	for (int i = 0; i < 3; i++) {
		strcpy(r[i].message_id, c[i].id);
		message_clear(&c[i]);
	}
	assert_int_equal(st->ops->record_results(st, r, 3, NULL, NULL), 0);
	want[MSG_SENDING] -= 2;
	want[MSG_SENT]++;
	want[MSG_FAILED]++;
	want_gauges(st, want);

	/* A campaign of four, cancelled: every message CANCELLED. */
	struct batch b;
	struct hr_err err = {0};
	running_batch(st, &b, "gB", 4);
	want[MSG_QUEUED] += 4;
	want_gauges(st, want);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_CANCELLED, NULL, &err), 0);
	int64_t step;
	do
		assert_int_equal(st->ops->batch_cancel_step(st, b.id, 3, &step), 0);
	while (step > 0);
	want[MSG_QUEUED] -= 4;
	want[MSG_CANCELLED] += 4;
	want_gauges(st, want);

	/* Retention: the old settled ones go (FAILED, DELIVERED, READ,
	 * SUPPRESSED); the old open ones and today's stay. */
	struct msg_retention_stats rs = retain(st, now - 30 * DAY, 2, 0);
	assert_int_equal(rs.messages, 4);
	want[MSG_FAILED]--;
	want[MSG_DELIVERED]--;
	want[MSG_READ]--;
	want[MSG_SUPPRESSED]--;
	want_gauges(st, want);

	/* Another store on the same database (another node) moves the same
	 * counts: its claims and outcomes are seen by both. */
	struct store *other;
	assert_int_equal(backend->open(f->dsn, NULL, &other, &err), 0);
	struct message q;
	mk_msg(&q, "t1", "gq2", 0, now - SEC);
	assert_int_equal(other->ops->message_insert(other, &q, 1, NULL, NULL, NULL), 0);
	assert_int_equal(other->ops->claim(other, "gq2", now, 30 * SEC, 1, c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c[0]);
	result(other, q.id, SEND_OK, 1, "wamid.g1");
	want[MSG_SENT]++;
	want_gauges(st, want);
	want_gauges(other, want);
	backend->close(other);
}

/* The whole life of a campaign: rows (one invalid, one repeating an
 * earlier recipient, caught by the store's unique key), validation, a start
 * that is repeated (nothing made twice), claims, outcomes, receipts,
 * replies (counted once per message), completion by itself. After every
 * step the counters equal a recount. */
static void test_batch_life_and_counters(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	mk_batch(&b, "t1", "cA");
	assert_int_equal(st->ops->batch_create(st, &b, &err), 0);
	assert_int_equal(st->ops->batch_create(st, &b, &err), HR_ECONFLICT);

	struct batch_item it[5];
	mk_item(&it[0], 1, "+447900000001", true);
	mk_item(&it[1], 2, "+447900000002", true);
	mk_item(&it[2], 3, "+447900000003", true);
	mk_item(&it[3], 4, "", false);
	mk_item(&it[4], 5, "+447900000001", true); /* row 1's recipient again */
	it[0].params = (char *)"{\"name\":\"Ann\"}";
	assert_int_equal(st->ops->batch_items_put(st, b.id, it, 5, &err), 0);
	struct batch g = batch_of(st, b.id);
	assert_int_equal(g.status, BATCH_PENDING);
	assert_int_equal(g.total, 5);
	assert_int_equal(g.valid, 3);
	assert_int_equal(g.invalid, 1);
	assert_int_equal(g.duplicates, 1);
	assert_true(g.created_at > 0);
	assert_int_equal(g.validated_at, 0);
	batch_clear(&g);

	/* The report: the invalid row with its column and reason; the rows to send. */
	struct batch_item *v;
	size_t n;
	assert_int_equal(st->ops->batch_items(st, b.id, BATCH_ITEMS_INVALID, 0, 100, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].row, 4);
	assert_string_equal(v[0].error_column, "phone");
	assert_string_equal(v[0].error, "not a phone number");
	batch_item_clear(&v[0]);
	free(v);
	assert_int_equal(st->ops->batch_items(st, b.id, BATCH_ITEMS_PENDING, 0, 100, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].row, 1);
	assert_string_equal(v[0].params, "{\"name\":\"Ann\"}");
	assert_int_equal(v[2].row, 3);
	for (size_t i = 0; i < n; i++)
		batch_item_clear(&v[i]);
	free(v);
	assert_int_equal(st->ops->batch_items(st, b.id, BATCH_ITEMS_ALL, 2, 100, &v, &n), 0);
	assert_int_equal(n, 3); /* rows 3, 4, 5 */
	assert_int_equal(v[2].row, 5);
	assert_true(v[2].valid);
	assert_true(v[2].duplicate);
	for (size_t i = 0; i < n; i++)
		batch_item_clear(&v[i]);
	free(v);

	/* Status rules: no skipping validation, no messages before the start. */
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EINVAL);
	assert_string_equal(err.field, "status");
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_items_put(st, b.id, it, 1, &err), HR_EINVAL);
	struct message m[3];
	int64_t rows[3] = {1, 2, 3};
	const char *to[3] = {"+447900000001", "+447900000002", "+447900000003"};
	for (int i = 0; i < 3; i++)
		mk_row_msg(&m[i], &b, to[i]);
	size_t made = 99;
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows, m, 3, true, &made, &err), HR_EINVAL);
	assert_int_equal(made, 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err), 0);

	/* Rows 1-2, then the same again with fresh ids (a resumed start), then
	 * row 3 (last), then row 5 (a duplicate: never a message). */
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows, m, 2, false, &made, &err), 0);
	assert_int_equal(made, 2);
	struct message again[2];
	for (int i = 0; i < 2; i++)
		mk_row_msg(&again[i], &b, to[i]);
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows, again, 2, false, &made, &err), 0);
	assert_int_equal(made, 0);
	int64_t five = 5;
	struct message dup;
	mk_row_msg(&dup, &b, to[0]);
	assert_int_equal(st->ops->batch_enqueue(st, b.id, &five, &dup, 1, false, &made, &err), 0);
	assert_int_equal(made, 0);
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows + 2, m + 2, 1, true, &made, &err), 0);
	assert_int_equal(made, 1);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_QUEUED], 3);
	assert_true(g.ingested);
	assert_true(g.started_at > 0);
	assert_int_equal(g.status, BATCH_PROCESSING);
	batch_clear(&g);
	assert_counters_true(st, b.id);
	assert_int_equal(count_msgs(st, "t1"), 3);

	/* Two claimed, one sent and one failed; the third sent later. */
	struct message c[3];
	assert_int_equal(st->ops->claim(st, "cA", hr_now_us(), 30 * SEC, 2, c, &n), 0);
	assert_int_equal(n, 2);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_SENDING], 2);
	assert_int_equal(g.by_status[MSG_QUEUED], 1);
	batch_clear(&g);
	assert_counters_true(st, b.id);
	result(st, c[0].id, SEND_OK, 1, "wamid.c0");
	result(st, c[1].id, SEND_FAILED, 1, NULL);
	assert_counters_true(st, b.id);
	char c0[27], c1[27];
	strcpy(c0, c[0].id);
	strcpy(c1, c[1].id);
	message_clear(&c[0]);
	message_clear(&c[1]);
	assert_int_equal(st->ops->claim(st, "cA", hr_now_us(), 30 * SEC, 2, c, &n), 0);
	assert_int_equal(n, 1);
	result(st, c[0].id, SEND_RETRY, 1, NULL); /* back to the queue */
	assert_counters_true(st, b.id);
	message_clear(&c[0]);
	assert_int_equal(st->ops->claim(st, "cA", hr_now_us(), 30 * SEC, 2, c, &n), 0);
	assert_int_equal(n, 1);
	char c2[27];
	strcpy(c2, c[0].id);
	result(st, c2, SEND_OK, 2, "wamid.c2");
	message_clear(&c[0]);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_SENT], 2);
	assert_int_equal(g.by_status[MSG_FAILED], 1);
	assert_int_equal(g.status, BATCH_PROCESSING); /* SENT waits for receipts */
	batch_clear(&g);

	/* Receipts: DELIVERED for one, READ (DELIVERED implied) for the other. */
	hook_status(st, "cA", "wamid.c0", MSG_DELIVERED, hr_now_us(), NULL);
	assert_counters_true(st, b.id);
	g = batch_of(st, b.id);
	assert_int_equal(g.status, BATCH_PROCESSING);
	batch_clear(&g);
	hook_status(st, "cA", "wamid.c2", MSG_READ, hr_now_us(), NULL);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_DELIVERED], 1);
	assert_int_equal(g.by_status[MSG_READ], 1);
	assert_int_equal(g.by_status[MSG_FAILED], 1);
	assert_int_equal(g.status, BATCH_COMPLETED); /* every message settled */
	assert_true(g.completed_at >= g.started_at);
	batch_clear(&g);
	assert_counters_true(st, b.id);

	/* Replies: two to one message count it once; a READ after completion
	 * still moves the counters. */
	for (int k = 0; k < 2; k++) {
		struct wh_inbound in = {0};
		snprintf(in.provider_msg_id, sizeof in.provider_msg_id, "wamid.in%d", k);
		strcpy(in.context_id, "wamid.c0");
		strcpy(in.from, "447900000001");
		strcpy(in.kind, "text");
		in.text = (char *)"thanks";
		struct inbox_parsed row = {.inbox_id = inbox_add(st, "cA"),
		                           .account_id = "cA",
		                           .inbound = &in,
		                           .ninbound = 1};
		struct apply_stats as;
		assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &as), 0);
		assert_int_equal(as.inbound, 1);
	}
	hook_status(st, "cA", "wamid.c0", MSG_READ, hr_now_us(), NULL);
	g = batch_of(st, b.id);
	assert_int_equal(g.replied, 1);
	assert_int_equal(g.by_status[MSG_READ], 2);
	assert_int_equal(g.by_status[MSG_DELIVERED], 0);
	assert_int_equal(g.status, BATCH_COMPLETED);
	batch_clear(&g);
	assert_counters_true(st, b.id);
	(void)c1;
}

/* Applies one inbound reply to the message with provider id ctx. */
static void reply_to(struct store *st, const char *account, const char *ctx, const char *pmid,
                     const char *kind, const char *text, const char *payload, int64_t now)
{
	struct wh_inbound in = {0};
	hr_strlcpy(in.provider_msg_id, pmid, sizeof in.provider_msg_id);
	hr_strlcpy(in.context_id, ctx, sizeof in.context_id);
	strcpy(in.from, "447900000001");
	hr_strlcpy(in.kind, kind, sizeof in.kind);
	in.text = (char *)text;
	in.payload = (char *)payload;
	struct inbox_parsed row = {
	    .inbox_id = inbox_add(st, account), .account_id = account, .inbound = &in, .ninbound = 1};
	struct apply_stats as;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, now, &as), 0);
	assert_int_equal(as.inbound, 1);
}

/* The export's page: every uploaded row in row order (invalid and
 * duplicate rows with no message), each message's status, provider id,
 * error, the times of its first sent / delivered / read events (a READ
 * that implied DELIVERED gives both) and its latest reply; paging by row
 * number; the limit's bounds. */
static void test_batch_export_rows(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	mk_batch(&b, "t1", "cX");
	assert_int_equal(st->ops->batch_create(st, &b, &err), 0);
	struct batch_item it[5];
	mk_item(&it[0], 1, "+447900000001", true);
	mk_item(&it[1], 2, "+447900000002", true);
	mk_item(&it[2], 3, "", false);
	mk_item(&it[3], 4, "+447900000001", true); /* row 1's recipient again */
	mk_item(&it[4], 5, "+447900000005", true);
	it[0].params = (char *)"[\"Ann\",\"5\"]";
	assert_int_equal(st->ops->batch_items_put(st, b.id, it, 5, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err), 0);
	struct message m[3];
	int64_t rows[3] = {1, 2, 5};
	const char *to[3] = {"+447900000001", "+447900000002", "+447900000005"};
	for (int i = 0; i < 3; i++)
		mk_row_msg(&m[i], &b, to[i]);
	size_t made;
	assert_int_equal(st->ops->batch_enqueue(st, b.id, rows, m, 3, true, &made, &err), 0);
	assert_int_equal(made, 3);

	/* Rows 1 and 2 claimed: row 1 sent, then read (delivered implied), then
	 * two replies (the later, a button, is the one exported); row 2 failed.
	 * Row 5 stays queued. */
	int64_t t0 = hr_now_us();
	struct message c[2];
	size_t n;
	assert_int_equal(st->ops->claim(st, "cX", hr_now_us(), 30 * SEC, 2, c, &n), 0);
	assert_int_equal(n, 2);
	char id1[HR_ID_LEN + 1] = "", id2[HR_ID_LEN + 1] = "";
	for (size_t i = 0; i < n; i++) {
		bool first = strcmp(c[i].recipient, to[0]) == 0;
		hr_strlcpy(first ? id1 : id2, c[i].id, HR_ID_LEN + 1);
		result(st, c[i].id, first ? SEND_OK : SEND_FAILED, 1, first ? "wamid.x1" : NULL);
		message_clear(&c[i]);
	}
	int64_t t1 = hr_now_us();
	hook_status(st, "cX", "wamid.x1", MSG_READ, hr_now_us(), NULL);
	int64_t t2 = hr_now_us();
	reply_to(st, "cX", "wamid.x1", "wamid.r1", "text", "hello", NULL, hr_now_us());
	reply_to(st, "cX", "wamid.x1", "wamid.r2", "button", "Pay now", "PAY_NOW", hr_now_us());

	struct batch_export_row *v;
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 0, 100, &v, &n), 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].item.row, (int64_t)i + 1);
	/* Row 1: read, with every time and the latest reply. */
	assert_true(v[0].has_message);
	assert_string_equal(v[0].item.message_id, id1);
	assert_string_equal(v[0].item.params, "[\"Ann\",\"5\"]");
	assert_int_equal(v[0].status, MSG_READ);
	assert_string_equal(v[0].provider_id, "wamid.x1");
	assert_string_equal(v[0].error_code, "");
	assert_true(v[0].sent_at >= t0 && v[0].sent_at <= t1);
	/* Recorded by Herald's clock when the receipt was applied (the
	 * provider's own time, 1750263773 here, is not used). */
	assert_true(v[0].delivered_at >= t1 && v[0].delivered_at <= t2);
	assert_true(v[0].read_at >= v[0].delivered_at && v[0].read_at <= t2);
	assert_string_equal(v[0].reply_kind, "button");
	assert_string_equal(v[0].reply_text, "Pay now");
	assert_string_equal(v[0].reply_payload, "PAY_NOW");
	assert_true(v[0].replied_at > 0);
	/* Row 2: failed with the provider's error, never sent. */
	assert_true(v[1].has_message);
	assert_string_equal(v[1].item.message_id, id2);
	assert_int_equal(v[1].status, MSG_FAILED);
	assert_string_equal(v[1].provider_id, "");
	assert_string_equal(v[1].error_code, "131026");
	assert_string_equal(v[1].error_text, "Message undeliverable");
	assert_int_equal(v[1].sent_at, 0);
	assert_int_equal(v[1].delivered_at, 0);
	assert_string_equal(v[1].reply_kind, "");
	assert_null(v[1].reply_text);
	/* Row 3 invalid, row 4 a duplicate: no message. */
	assert_false(v[2].has_message);
	assert_false(v[2].item.valid);
	assert_string_equal(v[2].item.error_column, "phone");
	assert_string_equal(v[2].item.error, "not a phone number");
	assert_string_equal(v[2].item.message_id, "");
	assert_false(v[3].has_message);
	assert_true(v[3].item.valid);
	assert_true(v[3].item.duplicate);
	/* Row 5: queued, nothing happened yet. */
	assert_true(v[4].has_message);
	assert_int_equal(v[4].status, MSG_QUEUED);
	assert_int_equal(v[4].sent_at, 0);
	assert_true(v[4].created_at > 0);
	for (size_t i = 0; i < n; i++)
		batch_export_row_clear(&v[i]);
	free(v);

	/* Pages: after row 2, two rows (3 and 4); after row 4, the last one. */
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 2, 2, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].item.row, 3);
	assert_int_equal(v[1].item.row, 4);
	for (size_t i = 0; i < n; i++)
		batch_export_row_clear(&v[i]);
	free(v);
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 4, 2, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].item.row, 5);
	batch_export_row_clear(&v[0]);
	free(v);
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 5, 2, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
	assert_int_equal(st->ops->batch_export_rows(st, "nope", 0, 10, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 0, 0, &v, &n), HR_EINVAL);
	assert_int_equal(st->ops->batch_export_rows(st, b.id, 0, 10001, &v, &n), HR_EINVAL);
	assert_null(v);
	batch_clear(&b);
}

/* Cancel: the batch stops; every queued message is cancelled by the steps
 * (exact count), what was in flight finishes and is recorded; a message
 * claimed after the cancel but before the steps reach it is cancelled at
 * claim, not sent. */
static void test_batch_cancel(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	running_batch(st, &b, "cB", 8);
	struct message c[8];
	size_t n;
	assert_int_equal(st->ops->claim(st, "cB", hr_now_us(), 30 * SEC, 1, c, &n), 0);
	assert_int_equal(n, 1); /* in flight */
	assert_int_equal(st->ops->batch_set_status(st, "t2", b.id, BATCH_CANCELLED, NULL, &err),
	                 HR_ENOTFOUND); /* another tenant's */
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_CANCELLED, NULL, &err), 0);
	/* A claim before the steps: cancelled at claim, returned so, not sent. */
	struct message s[2];
	size_t sn;
	assert_int_equal(st->ops->claim(st, "cB", hr_now_us(), 30 * SEC, 2, s, &sn), 0);
	assert_int_equal(sn, 2);
	for (size_t i = 0; i < sn; i++) {
		assert_int_equal(s[i].status, MSG_CANCELLED);
		assert_string_equal(s[i].error_code, "cancelled");
		assert_int_equal(status_of(st, s[i].id), MSG_CANCELLED);
		message_clear(&s[i]);
	}
	assert_counters_true(st, b.id);
	int64_t total = 0, step;
	do {
		assert_int_equal(st->ops->batch_cancel_step(st, b.id, 2, &step), 0);
		total += step;
	} while (step > 0);
	assert_int_equal(total, 5);
	assert_int_equal(st->ops->claim(st, "cB", hr_now_us(), 30 * SEC, 8, s, &sn), 0);
	assert_int_equal(sn, 0);
	result(st, c[0].id, SEND_OK, 1, "wamid.cb0");
	message_clear(&c[0]);
	struct batch g = batch_of(st, b.id);
	assert_int_equal(g.status, BATCH_CANCELLED);
	assert_true(g.cancelled_at > 0);
	assert_int_equal(g.by_status[MSG_CANCELLED], 7);
	assert_int_equal(g.by_status[MSG_SENT], 1);
	assert_int_equal(g.by_status[MSG_QUEUED], 0);
	batch_clear(&g);
	assert_counters_true(st, b.id);
	/* Cancelled is final. */
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EINVAL);
}

static void pause_audit(struct audit_row *a, const char *tenant, const char *actor,
                        const char *action, const char *id)
{
	memset(a, 0, sizeof *a);
	hr_strlcpy(a->tenant_id, tenant, sizeof a->tenant_id);
	hr_strlcpy(a->actor, actor, sizeof a->actor);
	hr_strlcpy(a->action, action, sizeof a->action);
	snprintf(a->object, sizeof a->object, "batch:%s", id);
}

/* Pause and resume: the pause holds every queued message in its own
 * transaction (no claim takes one; counters unchanged), what was in flight
 * finishes; a message queued again while paused (a retry) is held at its
 * claim; nothing is made while paused; another tenant's batch is not
 * found; the resume puts them back and they are claimed; who, when and why
 * are recorded, and the state holds for another store on the same
 * database (a restart). After every step the counters equal a recount. */
static void test_batch_pause(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	running_batch(st, &b, "pB", 8);
	struct message c[8];
	size_t n;
	assert_int_equal(st->ops->claim(st, "pB", hr_now_us(), 30 * SEC, 2, c, &n), 0);
	assert_int_equal(n, 2); /* in flight */
	struct audit_row au;
	pause_audit(&au, "t2", "key:hk_other", "batch.pause", b.id);
	assert_int_equal(
	    st->ops->batch_set_status_audit(st, "t2", b.id, BATCH_PAUSED, "mine now", &au, &err),
	    HR_ENOTFOUND); /* another tenant's */
	pause_audit(&au, "t1", "key:hk_pauser", "batch.pause", b.id);
	assert_int_equal(st->ops->batch_set_status_audit(st, "t1", b.id, BATCH_PAUSED,
	                                                 "wrong template", &au, &err),
	                 0);
	struct message s[8];
	size_t sn;
	assert_int_equal(st->ops->claim(st, "pB", hr_now_us() + 3600 * SEC, 30 * SEC, 8, s, &sn),
	                 0);
	assert_int_equal(sn, 0); /* held: not claimable even an hour later */
	struct batch g = batch_of(st, b.id);
	assert_int_equal(g.status, BATCH_PAUSED);
	assert_true(g.paused_at > 0);
	int64_t started = g.started_at;
	assert_string_equal(g.paused_by, "key:hk_pauser");
	assert_string_equal(g.pause_reason, "wrong template");
	assert_int_equal(g.by_status[MSG_QUEUED], 6);
	assert_int_equal(g.by_status[MSG_SENDING], 2);
	batch_clear(&g);
	assert_counters_true(st, b.id);
	/* Paused twice, or started: refused; nothing is made while paused. */
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PAUSED, "again", &err),
	                 HR_EINVAL);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_COMPLETED, NULL, &err),
	                 HR_EINVAL);
	size_t made = 9;
	assert_int_equal(st->ops->batch_enqueue(st, b.id, NULL, NULL, 0, true, &made, &err),
	                 HR_EBUSY);
	assert_string_equal(err.field, "paused");
	assert_int_equal(made, 0);
	/* In flight finishes: one sent, one to be retried (due at once). The
	 * retried one is claimable again, and its claim holds it instead. */
	result(st, c[0].id, SEND_OK, 1, "wamid.pb0");
	result(st, c[1].id, SEND_RETRY, 1, NULL);
	assert_int_equal(status_of(st, c[1].id), MSG_QUEUED);
	assert_int_equal(st->ops->claim(st, "pB", hr_now_us(), 30 * SEC, 8, s, &sn), 0);
	assert_int_equal(sn, 1);
	assert_string_equal(s[0].id, c[1].id);
	assert_int_equal(s[0].status, MSG_QUEUED); /* returned not to be sent */
	assert_int_equal(s[0].attempts, 1);        /* its claim's attempt given back */
	message_clear(&s[0]);
	assert_int_equal(status_of(st, c[1].id), MSG_QUEUED);
	assert_int_equal(st->ops->claim(st, "pB", hr_now_us() + 3600 * SEC, 30 * SEC, 8, s, &sn),
	                 0);
	assert_int_equal(sn, 0);
	for (int i = 0; i < 2; i++)
		message_clear(&c[i]);
	assert_counters_true(st, b.id);
	/* Another store on the database (a restart) sees it paused, held. */
	struct store *other;
	assert_int_equal(backend->open(f->dsn, NULL, &other, &err), 0);
	assert_int_equal(other->ops->claim(other, "pB", hr_now_us(), 30 * SEC, 8, s, &sn), 0);
	assert_int_equal(sn, 0);
	g = batch_of(other, b.id);
	assert_int_equal(g.status, BATCH_PAUSED);
	assert_string_equal(g.pause_reason, "wrong template");
	batch_clear(&g);
	/* Resume (on the other store): every held message is claimable again,
	 * exactly the seven queued; started_at stays the first start. */
	pause_audit(&au, "t2", "key:hk_other", "batch.resume", b.id);
	assert_int_equal(other->ops->batch_set_status_audit(other, "t2", b.id, BATCH_PROCESSING,
	                                                    NULL, &au, &err),
	                 HR_ENOTFOUND);
	pause_audit(&au, "t1", "key:hk_resumer", "batch.resume", b.id);
	assert_int_equal(other->ops->batch_set_status_audit(other, "t1", b.id, BATCH_PROCESSING,
	                                                    NULL, &au, &err),
	                 0);
	backend->close(other);
	g = batch_of(st, b.id);
	assert_int_equal(g.status, BATCH_PROCESSING);
	assert_true(g.resumed_at >= g.paused_at);
	assert_int_equal(g.started_at, started);
	assert_string_equal(g.resumed_by, "key:hk_resumer");
	assert_string_equal(g.pause_reason, "wrong template"); /* the latest pause's, kept */
	batch_clear(&g);
	assert_int_equal(st->ops->claim(st, "pB", hr_now_us(), 30 * SEC, 8, s, &sn), 0);
	assert_int_equal(sn, 7);
	for (size_t i = 0; i < sn; i++) {
		assert_int_equal(s[i].status, MSG_SENDING);
		result(st, s[i].id, SEND_FAILED, s[i].attempts, NULL);
		message_clear(&s[i]);
	}
	assert_counters_true(st, b.id);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_FAILED], 7);
	assert_int_equal(g.by_status[MSG_SENT], 1);
	assert_int_equal(g.by_status[MSG_QUEUED], 0);
	batch_clear(&g);

	/* Cancel while paused: every held message is cancelled by the steps,
	 * with who and why recorded. */
	struct batch p;
	running_batch(st, &p, "pC", 4);
	assert_int_equal(st->ops->batch_set_status(st, "t1", p.id, BATCH_PAUSED, "hold on", &err),
	                 0);
	pause_audit(&au, "t1", "key:hk_canceller", "batch.cancel", p.id);
	assert_int_equal(st->ops->batch_set_status_audit(st, "t1", p.id, BATCH_CANCELLED,
	                                                 "customer complaint", &au, &err),
	                 0);
	int64_t total = 0, step;
	do {
		assert_int_equal(st->ops->batch_cancel_step(st, p.id, 3, &step), 0);
		total += step;
	} while (step > 0);
	assert_int_equal(total, 4);
	g = batch_of(st, p.id);
	assert_int_equal(g.status, BATCH_CANCELLED);
	assert_int_equal(g.by_status[MSG_CANCELLED], 4);
	assert_string_equal(g.cancelled_by, "key:hk_canceller");
	assert_string_equal(g.cancel_reason, "customer complaint");
	assert_string_equal(g.paused_by, ""); /* paused without an audit row */
	batch_clear(&g);
	assert_counters_true(st, p.id);
	assert_int_equal(st->ops->batch_set_status(st, "t1", p.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EINVAL); /* cancelled is final */

	/* Everything settles while paused: the batch waits, paused, and
	 * completes as its resume commits. */
	struct batch d;
	running_batch(st, &d, "pD", 1);
	assert_int_equal(st->ops->claim(st, "pD", hr_now_us(), 30 * SEC, 1, c, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st->ops->batch_set_status(st, "t1", d.id, BATCH_PAUSED, "wait", &err), 0);
	result(st, c[0].id, SEND_FAILED, 1, NULL);
	message_clear(&c[0]);
	g = batch_of(st, d.id);
	assert_int_equal(g.status, BATCH_PAUSED);
	batch_clear(&g);
	assert_int_equal(st->ops->batch_set_status(st, "t1", d.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	g = batch_of(st, d.id);
	assert_int_equal(g.status, BATCH_COMPLETED);
	assert_true(g.completed_at > 0);
	batch_clear(&g);
	assert_counters_true(st, d.id);

	/* The reconciler meanwhile: a lease that expires while paused queues
	 * its message again, and its next claim holds it (never sent); expiry
	 * finds nothing to expire among the held ones (they have no
	 * expires_at); the held ones are not taken for lost. */
	struct batch e;
	running_batch(st, &e, "pE", 3);
	int64_t t0 = hr_now_us();
	assert_int_equal(st->ops->claim(st, "pE", t0, SEC, 1, c, &n), 0);
	assert_int_equal(n, 1);
	char leased[HR_ID_LEN + 1];
	hr_strlcpy(leased, c[0].id, sizeof leased);
	message_clear(&c[0]);
	assert_int_equal(st->ops->batch_set_status(st, "t1", e.id, BATCH_PAUSED, "wait", &err), 0);
	int k = -1;
	assert_int_equal(st->ops->requeue_expired(st, t0 + 3600 * SEC, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(status_of(st, leased), MSG_QUEUED);
	int expired = -1;
	assert_int_equal(st->ops->reconcile_expire(st, t0 + 3600 * SEC, 100, &expired), 0);
	assert_int_equal(expired, 0);
	assert_int_equal(st->ops->claim(st, "pE", t0 + 3600 * SEC, 30 * SEC, 3, s, &sn), 0);
	assert_int_equal(sn, 1);
	assert_string_equal(s[0].id, leased);
	assert_int_equal(s[0].status, MSG_QUEUED);
	message_clear(&s[0]);
	assert_int_equal(st->ops->claim(st, "pE", t0 + 7200 * SEC, 30 * SEC, 3, s, &sn), 0);
	assert_int_equal(sn, 0);
	g = batch_of(st, e.id);
	assert_int_equal(g.by_status[MSG_QUEUED], 3);
	assert_int_equal(g.status, BATCH_PAUSED);
	batch_clear(&g);
	assert_counters_true(st, e.id);
	/* Resumed, each is due when it was (the requeued one at the test's
	 * clock, an hour on). */
	assert_int_equal(st->ops->batch_set_status(st, "t1", e.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	assert_int_equal(st->ops->claim(st, "pE", t0 + 7200 * SEC, 30 * SEC, 3, s, &sn), 0);
	assert_int_equal(sn, 3);
	for (size_t i = 0; i < sn; i++)
		message_clear(&s[i]);
	assert_counters_true(st, e.id);
	char why[256];
	if (!gauges_match(st, why, sizeof why))
		fail_msg("%s", why);
}

static void tally_reply(struct store *st, const char *account, const char *context,
                        const char *pmid, const char *kind, const char *text, const char *payload)
{
	struct wh_inbound in = {0};
	hr_strlcpy(in.provider_msg_id, pmid, sizeof in.provider_msg_id);
	hr_strlcpy(in.context_id, context, sizeof in.context_id);
	strcpy(in.from, "447900000001");
	hr_strlcpy(in.kind, kind, sizeof in.kind);
	in.text = (char *)text;
	in.payload = (char *)payload;
	struct inbox_parsed row = {.inbox_id = inbox_add(st, account),
	                           .account_id = account,
	                           .inbound = &in,
	                           .ninbound = 1};
	struct apply_stats as;
	assert_int_equal(st->ops->apply_inbox(st, &row, 1, hr_now_us(), &as), 0);
	assert_int_equal(as.inbound, 1);
}

/* The campaign detail's breakdowns: failures by provider code (only the
 * campaign's failed and undelivered messages, at most `sample` of them)
 * and replies by kind and button payload (among the latest `sample`
 * replies); another campaign's never counted. */
static void test_batch_breakdown(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct batch b, o;
	running_batch(st, &b, "bK", 6);
	running_batch(st, &o, "bO", 1);
	struct message c[6];
	size_t n;
	assert_int_equal(st->ops->claim(st, "bK", hr_now_us(), 30 * SEC, 6, c, &n), 0);
	assert_int_equal(n, 6);
	result(st, c[0].id, SEND_FAILED, 1, NULL); /* 131026 */
	result(st, c[1].id, SEND_FAILED, 1, NULL);
	struct send_result r = {.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
	strcpy(r.message_id, c[2].id);
	strcpy(r.error_code, "131047");
	strcpy(r.error_text, "Re-engagement message");
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	for (int i = 3; i < 6; i++) {
		char pid[32];
		snprintf(pid, sizeof pid, "wamid.bk%d", i);
		result(st, c[i].id, SEND_OK, 1, pid);
	}
	for (size_t i = 0; i < n; i++)
		message_clear(&c[i]);
	tally_reply(st, "bK", "wamid.bk3", "wamid.r1", "text", "yes please", NULL);
	tally_reply(st, "bK", "wamid.bk4", "wamid.r2", "button", "Pay now", "PAY");
	tally_reply(st, "bK", "wamid.bk5", "wamid.r3", "button", "Pay now", "PAY");
	tally_reply(st, "bK", "wamid.bk3", "wamid.r4", "button", "Later", "LATER");
	/* The other campaign: a failure and a reply, last. */
	assert_int_equal(st->ops->claim(st, "bO", hr_now_us(), 30 * SEC, 1, c, &n), 0);
	assert_int_equal(n, 1);
	result(st, c[0].id, SEND_OK, 1, "wamid.bo0");
	message_clear(&c[0]);
	tally_reply(st, "bO", "wamid.bo0", "wamid.r5", "button", "Pay now", "PAY");

	struct batch_tally *fl, *rp;
	size_t nf, nr;
	int64_t fs, rs;
	assert_int_equal(st->ops->batch_breakdown(st, b.id, 1000, &fl, &nf, &fs, &rp, &nr, &rs), 0);
	assert_int_equal(nf, 2);
	assert_int_equal(fs, 3);
	assert_string_equal(fl[0].key, "131026");
	assert_int_equal(fl[0].count, 2);
	assert_string_equal(fl[0].detail, "Message undeliverable");
	assert_string_equal(fl[1].key, "131047");
	assert_int_equal(fl[1].count, 1);
	assert_int_equal(nr, 3);
	assert_int_equal(rs, 4);
	assert_string_equal(rp[0].key, "button");
	assert_string_equal(rp[0].detail, "PAY");
	assert_int_equal(rp[0].count, 2);
	assert_string_equal(rp[1].key, "button");
	assert_string_equal(rp[1].detail, "LATER");
	assert_int_equal(rp[1].count, 1);
	assert_string_equal(rp[2].key, "text");
	assert_string_equal(rp[2].detail, "");
	assert_int_equal(rp[2].count, 1);
	free(fl);
	free(rp);
	/* Bounded: two failures read, and only the very latest reply (the
	 * other campaign's). */
	assert_int_equal(st->ops->batch_breakdown(st, b.id, 2, &fl, &nf, &fs, &rp, &nr, &rs), 0);
	assert_int_equal(fs, 2);
	free(fl);
	free(rp);
	assert_int_equal(st->ops->batch_breakdown(st, b.id, 1, &fl, &nf, &fs, &rp, &nr, &rs), 0);
	assert_int_equal(fs, 1);
	assert_int_equal(rs, 0);
	assert_int_equal(nr, 0);
	free(fl);
	free(rp);
	/* The other campaign sees its own only. */
	assert_int_equal(st->ops->batch_breakdown(st, o.id, 1000, &fl, &nf, &fs, &rp, &nr, &rs), 0);
	assert_int_equal(fs, 0);
	assert_int_equal(rs, 1);
	assert_string_equal(rp[0].detail, "PAY");
	free(fl);
	free(rp);
	assert_int_equal(st->ops->batch_breakdown(st, b.id, 0, &fl, &nf, &fs, &rp, &nr, &rs),
	                 HR_EINVAL);
	assert_int_equal(st->ops->batch_breakdown(st, b.id, 100001, &fl, &nf, &fs, &rp, &nr, &rs),
	                 HR_EINVAL);
}

/* Lease expiry and suppression at claim move the counters too; an empty
 * batch completes as soon as it is ingested; a row number stored twice
 * fails the whole call with nothing written; tenants see only their own;
 * lists filter and page. */
static void test_batch_rules_and_lists(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	running_batch(st, &b, "cC", 3);
	assert_int_equal(st->ops->suppression_put(st, "t1", "whatsapp", "+447900000003", "STOP",
	                                          &err), 0);
	struct message c[3];
	size_t n;
	int64_t now = hr_now_us();
	assert_int_equal(st->ops->claim(st, "cC", now, SEC, 3, c, &n), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		message_clear(&c[i]);
	int requeued = 0;
	assert_int_equal(st->ops->requeue_expired(st, now + 2 * SEC, &requeued), 0);
	assert_int_equal(requeued, 2);
	struct batch g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_QUEUED], 2);
	assert_int_equal(g.by_status[MSG_SUPPRESSED], 1);
	assert_int_equal(g.by_status[MSG_SENDING], 0);
	batch_clear(&g);
	assert_counters_true(st, b.id);

	/* Empty: no valid rows; completes on the ingest that finds none. */
	struct batch e;
	mk_batch(&e, "t1", "cC");
	strcpy(e.name, "empty list");
	assert_int_equal(st->ops->batch_create(st, &e, &err), 0);
	struct batch_item bad;
	mk_item(&bad, 1, "", false);
	assert_int_equal(st->ops->batch_items_put(st, e.id, &bad, 1, &err), 0);
	assert_int_equal(st->ops->batch_items_put(st, e.id, &bad, 1, &err), HR_ECONFLICT);
	assert_string_equal(err.field, "row");
	assert_int_equal(st->ops->batch_set_status(st, "t1", e.id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", e.id, BATCH_PROCESSING, NULL, &err), 0);
	size_t made;
	assert_int_equal(st->ops->batch_enqueue(st, e.id, NULL, NULL, 0, true, &made, &err), 0);
	g = batch_of(st, e.id);
	assert_int_equal(g.status, BATCH_COMPLETED);
	assert_int_equal(g.total, 1);
	assert_int_equal(g.invalid, 1);
	batch_clear(&g);

	/* A call with a row number already stored writes nothing at all. */
	struct batch p;
	mk_batch(&p, "t1", "cC");
	strcpy(p.name, "partial");
	assert_int_equal(st->ops->batch_create(st, &p, &err), 0);
	struct batch_item two[2];
	mk_item(&two[0], 1, "+447900000101", true);
	assert_int_equal(st->ops->batch_items_put(st, p.id, two, 1, &err), 0);
	mk_item(&two[0], 2, "+447900000102", true);
	mk_item(&two[1], 1, "+447900000103", true);
	assert_int_equal(st->ops->batch_items_put(st, p.id, two, 2, &err), HR_ECONFLICT);
	g = batch_of(st, p.id);
	assert_int_equal(g.total, 1);
	batch_clear(&g);
	struct batch_item *v;
	assert_int_equal(st->ops->batch_items(st, p.id, BATCH_ITEMS_ALL, 0, 10, &v, &n), 0);
	assert_int_equal(n, 1);
	batch_item_clear(&v[0]);
	free(v);

	/* Discard: only before any message; then it is gone with its rows. */
	assert_int_equal(st->ops->batch_discard(st, "t1", b.id, &err), HR_EINVAL);
	assert_string_equal(err.field, "status");
	assert_int_equal(st->ops->batch_discard(st, "t2", p.id, &err), HR_ENOTFOUND);
	assert_int_equal(st->ops->batch_discard(st, "t1", p.id, &err), 0);
	assert_int_equal(st->ops->batch_get(st, NULL, p.id, &g), HR_ENOTFOUND);
	assert_int_equal(st->ops->batch_items(st, p.id, BATCH_ITEMS_ALL, 0, 10, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
	struct batch p2;
	mk_batch(&p2, "t1", "cC");
	strcpy(p2.name, "partial");
	assert_int_equal(st->ops->batch_create(st, &p2, &err), 0);
	p = p2; /* the list below expects three batches */

	/* Another tenant sees none of it. */
	assert_int_equal(st->ops->batch_get(st, "t2", b.id, &g), HR_ENOTFOUND);
	struct batch *list;
	bool more;
	struct batch_filter flt = {.status = -1, .limit = 10};
	assert_int_equal(st->ops->batch_list(st, "t2", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 0);
	free(list);
	/* Lists: newest first, by status, by name, in pages. */
	assert_int_equal(st->ops->batch_list(st, "t1", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 3);
	assert_false(more);
	assert_string_equal(list[0].id, p.id);
	assert_string_equal(list[2].id, b.id);
	for (size_t i = 0; i < n; i++)
		batch_clear(&list[i]);
	free(list);
	flt.status = BATCH_COMPLETED;
	assert_int_equal(st->ops->batch_list(st, "t1", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, e.id);
	batch_clear(&list[0]);
	free(list);
	flt.status = -1;
	flt.name_like = "promo";
	assert_int_equal(st->ops->batch_list(st, "t1", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, b.id);
	batch_clear(&list[0]);
	free(list);
	flt.name_like = NULL;
	flt.limit = 2;
	assert_int_equal(st->ops->batch_list(st, "t1", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_true(more);
	char cursor[27];
	strcpy(cursor, list[1].id);
	for (size_t i = 0; i < n; i++)
		batch_clear(&list[i]);
	free(list);
	flt.before_id = cursor;
	assert_int_equal(st->ops->batch_list(st, "t1", &flt, &list, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_string_equal(list[0].id, b.id);
	batch_clear(&list[0]);
	free(list);
}

static void test_concurrent_claimers_exactly_once(void **state)
{
	claimers_run(*state, false);
}

static void test_claimers_on_separate_stores_exactly_once(void **state)
{
	claimers_run(*state, true);
}

/* Records a list of send outcomes a few at a time, after a shared start. */
struct recorder {
	pthread_t th;
	struct store *st;
	pthread_barrier_t *start;
	const struct send_result *r;
	size_t n;
	int rc;
};

static void *record_thread(void *arg)
{
	struct recorder *w = arg;
	pthread_barrier_wait(w->start);
	for (size_t i = 0; i < w->n && w->rc == 0; i += 3) {
		size_t k = w->n - i < 3 ? w->n - i : 3;
		w->rc = w->st->ops->record_results(w->st, w->r + i, k, NULL, NULL);
	}
	return NULL;
}

/* Claims every due message of the account at `now` (expecting exactly n),
 * checking each is on attempt `attempt`. */
static void claim_all(struct store *st, const char *account, int64_t now, int64_t lease_us,
                      size_t n, int attempt)
{
	struct message out[64];
	size_t total = 0, k;
	do {
		assert_int_equal(st->ops->claim(st, account, now, lease_us, 64, out, &k), 0);
		for (size_t i = 0; i < k; i++) {
			assert_int_equal(out[i].status, MSG_SENDING);
			assert_int_equal(out[i].attempts, attempt);
			message_clear(&out[i]);
		}
		total += k;
	} while (k > 0);
	assert_int_equal(total, n);
}

/*
 * Every message's attempt 1 lost its lease and the message was claimed
 * again (attempt 2). Attempt 2's outcomes and attempt 1's late ones (a
 * failure, a retry or a success, in the opposite order) are then recorded
 * at the same time from two threads. Whatever the interleaving, the late
 * ones change nothing: every message ends SENT on attempt 2 with attempt
 * 2's provider id, and each late outcome is in its audit trail as ignored.
 */
static void test_concurrent_late_outcomes_fenced(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	enum { N = 120 };
	static const char *const late_type[] = {
	    [SEND_OK] = "sent", [SEND_RETRY] = "retry", [SEND_FAILED] = "failed"};
	int64_t now = hr_now_us(), later = now + 3600 * SEC;
	struct message *m = calloc(N, sizeof *m);
	struct send_result *cur = calloc(N, sizeof *cur), *late = calloc(N, sizeof *late);
	assert_non_null(m);
	assert_non_null(cur);
	assert_non_null(late);
	for (int i = 0; i < N; i++)
		mk_msg(&m[i], "t1", "fence2", 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, m, N, NULL, NULL, NULL), 0);
	claim_all(st, "fence2", now, SEC, N, 1);
	int k = -1;
	assert_int_equal(st->ops->requeue_expired(st, later, &k), 0);
	assert_int_equal(k, N);
	claim_all(st, "fence2", later + 1, 60 * SEC, N, 2);

	for (int i = 0; i < N; i++) {
		cur[i] = (struct send_result){.kind = SEND_OK, .attempt = 2, .http_status = 200};
		strcpy(cur[i].message_id, m[i].id);
		snprintf(cur[i].provider_id, sizeof cur[i].provider_id, "p2-%d", i);
		int j = N - 1 - i; /* late answers come in the other order */
		late[j] = (struct send_result){.kind = (enum send_kind)(i % 3), .attempt = 1};
		strcpy(late[j].message_id, m[i].id);
		if (late[j].kind == SEND_OK) {
			snprintf(late[j].provider_id, sizeof late[j].provider_id, "p1-%d", i);
		} else {
			strcpy(late[j].error_code, "late");
			strcpy(late[j].error_text, "an answer to attempt 1");
			late[j].due_at = now;
		}
	}
	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
	struct recorder w[2] = {
	    {.st = st, .start = &start, .r = cur, .n = N},
	    {.st = st, .start = &start, .r = late, .n = N},
	};
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&w[i].th, NULL, record_thread, &w[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i].th, NULL);
		assert_int_equal(w[i].rc, 0);
	}
	pthread_barrier_destroy(&start);

	int64_t counts[MSG__COUNT];
	assert_int_equal(st->ops->message_counts(st, "t1", counts), 0);
	for (int s = 0; s < MSG__COUNT; s++)
		assert_int_equal(counts[s], s == MSG_SENT ? N : 0);
	for (int i = 0; i < N; i++) {
		struct message g = msg_of(st, m[i].id);
		char pid[32];
		snprintf(pid, sizeof pid, "p2-%d", i);
		assert_int_equal(g.status, MSG_SENT);
		assert_int_equal(g.attempts, 2);
		assert_string_equal(g.provider_id, pid);
		assert_int_equal(g.lease_until, 0);
		assert_string_equal(g.error_code, "");
		assert_string_equal(g.error_text, "");
		message_clear(&g);

		/* accepted, lease_expired, then attempt 2's and the late one's. */
		struct events ev = events_of(st, m[i].id);
		assert_int_equal(ev.n, 4);
		assert_string_equal(ev.e[0].type, "accepted");
		assert_string_equal(ev.e[1].type, "lease_expired");
		int applied = 0, ignored = 0;
		for (size_t e = 2; e < 4; e++) {
			json_t *d = detail_of(&ev.e[e]);
			if (ev.e[e].applied) {
				applied++;
				assert_string_equal(ev.e[e].type, "sent");
				assert_int_equal(json_integer_value(json_object_get(d, "attempt")),
				                 2);
			} else {
				ignored++;
				assert_string_equal(ev.e[e].type, late_type[i % 3]);
				assert_int_equal(json_integer_value(json_object_get(d, "attempt")),
				                 1);
				assert_int_equal(
				    json_integer_value(json_object_get(d, "current_attempt")), 2);
				assert_string_equal(
				    json_string_value(json_object_get(d, "ignored")),
				    "stale_attempt");
			}
			json_decref(d);
		}
		events_free(&ev);
		assert_int_equal(applied, 1);
		assert_int_equal(ignored, 1);
	}
	free(m);
	free(cur);
	free(late);
}

/*
 * Two appliers working through the same inbox at the same time, in lock
 * step so that the race happens every round: both fetch, then both apply
 * what they fetched, until a round where neither got a row. The rows are
 * made from a script: row i reports DELIVERED for the message sent as
 * "wamid.ap<i>"; every third row also carries a reply quoting it, asking
 * for an auto-reply; with `odd_rows`, one more row is malformed and one
 * names a provider id nobody knows.
 */
enum { AP_ROWS = 24, AP_LIMIT = 4, AP_ROUNDS = 2 * AP_ROWS };

struct appliers {
	struct store *st;
	int64_t now;
	pthread_barrier_t step;
	atomic_int got[AP_ROUNDS]; /* rows fetched in each round, both appliers */
};

struct applier {
	pthread_t th;
	struct appliers *race;
	int rc;
	int64_t ids[AP_ROUNDS * AP_LIMIT]; /* the rows it was handed */
	size_t nids;
	struct apply_stats sum;
};

/* Parses one row as the script says (body "<i>", "malformed" or "unknown"). */
static void ap_parse(const struct inbox_row *row, struct inbox_parsed *p, struct wh_status *ws,
                     struct wh_inbound *in)
{
	*p = (struct inbox_parsed){.inbox_id = row->id, .account_id = row->account_id};
	if (strcmp(row->body, "malformed") == 0) {
		p->malformed = true;
		strcpy(p->error, "not a webhook");
		return;
	}
	*ws = (struct wh_status){.status = MSG_DELIVERED};
	p->statuses = ws;
	p->nstatuses = 1;
	if (strcmp(row->body, "unknown") == 0) {
		strcpy(ws->provider_id, "wamid.nobody");
		return;
	}
	int i = atoi(row->body);
	snprintf(ws->provider_id, sizeof ws->provider_id, "wamid.ap%d", i);
	if (i % 3 == 0) {
		*in = (struct wh_inbound){.kind = "text",
		                          .text = (char *)"HELP",
		                          .auto_reply = (char *)"Reply STOP to opt out."};
		snprintf(in->provider_msg_id, sizeof in->provider_msg_id, "wamid.in%d", i);
		snprintf(in->from, sizeof in->from, "+1555000%04d", i);
		hr_strlcpy(in->context_id, ws->provider_id, sizeof in->context_id);
		p->inbound = in;
		p->ninbound = 1;
	}
}

static void *applier_thread(void *arg)
{
	struct applier *a = arg;
	struct appliers *r = a->race;
	for (int round = 0; round < AP_ROUNDS; round++) {
		pthread_barrier_wait(&r->step); /* the round starts together */
		struct inbox_row *rows = NULL;
		size_t n = 0;
		/* Claimed, as appliers do: a claimed row is out of the other's
		 * reach until applied or its lease ends (a minute: never here). */
		int rc = r->st->ops->inbox_claim(r->st, r->now, 60 * 1000000LL, AP_LIMIT, &rows, &n);
		pthread_barrier_wait(&r->step); /* both claimed before either applies */
		struct inbox_parsed p[AP_LIMIT];
		struct wh_status ws[AP_LIMIT];
		struct wh_inbound in[AP_LIMIT];
		for (size_t i = 0; i < n; i++) {
			ap_parse(&rows[i], &p[i], &ws[i], &in[i]);
			a->ids[a->nids++] = rows[i].id;
		}
		struct apply_stats s = {0};
		if (rc == 0 && n > 0)
			rc = r->st->ops->apply_inbox(r->st, p, n, r->now, &s);
		if (rc && !a->rc)
			a->rc = rc;
		a->sum.applied += s.applied;
		a->sum.ignored += s.ignored;
		a->sum.unmatched += s.unmatched;
		a->sum.inbound += s.inbound;
		a->sum.malformed += s.malformed;
		for (size_t i = 0; i < n; i++)
			inbox_row_clear(&rows[i]);
		free(rows);
		atomic_fetch_add(&r->got[round], (int)n);
		pthread_barrier_wait(&r->step); /* both applied: was there anything? */
		if (atomic_load(&r->got[round]) == 0)
			break;
	}
	return NULL;
}

/* What two appliers did with the script's rows. */
struct ap_result {
	char ids[AP_ROWS][HR_ID_LEN + 1]; /* message i: sent as "wamid.ap<i>" */
	int64_t rows[AP_ROWS + 2];        /* inbox row ids, in script order */
	size_t nrows;
	int64_t now;            /* the appliers' clock */
	size_t handed[2];       /* rows fetched by each applier */
	size_t handed_twice;    /* rows fetched by both */
	struct apply_stats sum; /* both appliers' apply_stats added up */
};

static void two_appliers_run(struct store *st, bool odd_rows, struct ap_result *res)
{
	memset(res, 0, sizeof *res);
	struct hr_err err;
	struct account_row acct = {.id = "ap", .tenant_id = "t9", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	for (int i = 0; i < AP_ROWS; i++) {
		char pid[32];
		snprintf(pid, sizeof pid, "wamid.ap%d", i);
		sent_msg(st, "ap", pid, res->ids[i]);
	}
	char body[16], key[16];
	for (int i = 0; i < AP_ROWS + (odd_rows ? 2 : 0); i++) {
		if (i < AP_ROWS)
			snprintf(body, sizeof body, "%d", i);
		else
			strcpy(body, i == AP_ROWS ? "malformed" : "unknown");
		snprintf(key, sizeof key, "d%d", i);
		assert_int_equal(st->ops->inbox_append(st, "ap", "whatsapp", key, body,
		                                       strlen(body), NULL, NULL),
		                 0);
	}
	struct appliers r = {.st = st, .now = hr_now_us()};
	res->now = r.now;
	struct inbox_row *rows;
	assert_int_equal(st->ops->inbox_fetch(st, r.now, 1000, &rows, &res->nrows), 0);
	assert_int_equal(res->nrows, AP_ROWS + (odd_rows ? 2 : 0));
	for (size_t i = 0; i < res->nrows; i++) {
		res->rows[i] = rows[i].id;
		inbox_row_clear(&rows[i]);
	}
	free(rows);

	struct applier *a = calloc(2, sizeof *a);
	assert_non_null(a);
	assert_int_equal(pthread_barrier_init(&r.step, NULL, 2), 0);
	for (int i = 0; i < 2; i++) {
		a[i].race = &r;
		assert_int_equal(pthread_create(&a[i].th, NULL, applier_thread, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(a[i].th, NULL);
	pthread_barrier_destroy(&r.step);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(a[i].rc, 0);
		res->handed[i] = a[i].nids;
		res->sum.applied += a[i].sum.applied;
		res->sum.ignored += a[i].sum.ignored;
		res->sum.unmatched += a[i].sum.unmatched;
		res->sum.inbound += a[i].sum.inbound;
		res->sum.malformed += a[i].sum.malformed;
	}
	for (size_t i = 0; i < a[0].nids; i++)
		for (size_t j = 0; j < a[1].nids; j++)
			res->handed_twice += a[0].ids[i] == a[1].ids[j];
	free(a);
	fprintf(stderr,
	        "    two appliers, %zu rows: handed out %zu + %zu (%zu to both); applied %d,"
	        " ignored %d, unmatched %d, inbound %d, malformed %d\n",
	        res->nrows, res->handed[0], res->handed[1], res->handed_twice, res->sum.applied,
	        res->sum.ignored, res->sum.unmatched, res->sum.inbound, res->sum.malformed);
}

/* Every effect of the script's status and reply rows, once. */
static void assert_ap_effects_once(struct store *st, const struct ap_result *res)
{
	enum { REPLIES = (AP_ROWS + 2) / 3 };
	assert_int_equal(res->sum.applied, AP_ROWS);
	assert_int_equal(res->sum.ignored, 0);
	assert_int_equal(res->sum.inbound, REPLIES);
	for (int i = 0; i < AP_ROWS; i++) {
		assert_int_equal(status_of(st, res->ids[i]), MSG_DELIVERED);
		assert_int_equal(count_events(st, res->ids[i], "webhook_status"), 1);
		assert_int_equal(count_events(st, res->ids[i], "inbound"), i % 3 == 0);
	}
	/* One auto-reply per reply, queued to its sender. */
	struct msg_filter flt = {.status = -1, .limit = 100};
	struct message *v;
	size_t n;
	bool more;
	assert_int_equal(st->ops->message_list(st, "t9", &flt, &v, &n, &more), 0);
	assert_int_equal(n, REPLIES);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(count_events(st, v[i].id, "accepted"), 1);
	free_list(v, n);
}

/* Whatever rows two racing appliers are handed, what the rows ask for is
 * done once: each status applied and audited once, each reply stored once
 * and answered once, nothing left pending. */
static void test_two_appliers_effects_once(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct ap_result res;
	two_appliers_run(st, false, &res);
	assert_ap_effects_once(st, &res);
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 0);
}

/* Each inbox row goes to one applier only, so the row's own bookkeeping is
 * done once too: a malformed row counted once, an unmatched row's retry
 * scheduled once (attempts 1, back after the first backoff step). */
static void test_two_appliers_rows_claimed_once(void **state)
{
	/* Before inbox_claim (appliers read with inbox_fetch), both appliers
	 * were handed all 26 rows every time and the row bookkeeping ran
	 * twice: the malformed row counted twice, the unmatched row's retry
	 * scheduled with attempts 2. */
	struct fx *f = *state;
	struct store *st = f->st;
	struct ap_result res;
	two_appliers_run(st, true, &res);
	assert_int_equal(res.handed_twice, 0);
	assert_int_equal(res.handed[0] + res.handed[1], res.nrows);
	assert_ap_effects_once(st, &res);
	assert_int_equal(res.sum.malformed, 1);
	assert_int_equal(res.sum.unmatched, 1);
	int64_t pending = -1;
	assert_int_equal(st->ops->inbox_pending(st, &pending), 0);
	assert_int_equal(pending, 1); /* the unmatched row, waiting for its retry */
	int64_t unknown = res.rows[AP_ROWS + 1];
	int attempts = -1;
	assert_false(inbox_has(st, res.now + 199999, unknown, NULL));
	assert_true(inbox_has(st, res.now + 200000, unknown, &attempts));
	assert_int_equal(attempts, 1);
}

/* ---------------------------------------------------------------------------
 * Callbacks to client systems: the outbox (store.h: callback_row).
 * ------------------------------------------------------------------------- */

#define CB_URL "https://cb.example/hook"

/* A SENT message of tenant t1 on `account` whose callbacks go to url
 * (NULL: none), with provider id pid. */
static void cb_sent_msg(struct store *st, const char *account, const char *url, const char *pid,
                        char id[HR_ID_LEN + 1])
{
	struct message m, c;
	int64_t now = hr_now_us();
	mk_msg(&m, "t1", account, 0, now - SEC);
	m.callback_url = (char *)url; /* borrowed: m is never cleared */
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, account, now + SEC, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c);
	struct send_result r = {.kind = SEND_OK, .attempt = 1, .http_status = 200};
	strcpy(r.message_id, m.id);
	hr_strlcpy(r.provider_id, pid, sizeof r.provider_id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	strcpy(id, m.id);
}

static void cb_free(struct callback_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		callback_row_clear(&v[i]);
	free(v);
}

/* The tenant's rows in one state (newest first); *n gets how many. */
static struct callback_row *cb_list(struct store *st, const char *tenant, int state, size_t *n)
{
	struct callback_row *v;
	bool more;
	assert_int_equal(st->ops->callback_list(st, tenant, state, 0, 1000, &v, n, &more), 0);
	assert_false(more);
	return v;
}

/* Claims at now; exactly want rows come back (freed unless kept). */
static struct callback_row *cb_claim(struct store *st, int64_t now, size_t want)
{
	struct callback_row *v;
	size_t n;
	assert_int_equal(st->ops->callback_claim(st, now, 60 * SEC, 100, NULL, 0, &v, &n), 0);
	assert_int_equal(n, want);
	return v;
}

static void cb_finish(struct store *st, const struct callback_row *r, enum callback_state to,
                      int64_t next_try_at)
{
	struct callback_outcome o = {
	    .id = r->id, .attempt = r->attempts, .state = to, .next_try_at = next_try_at};
	if (to != CB_DELIVERED) {
		o.http_status = 503;
		strcpy(o.error, "HTTP 503");
	} else {
		o.http_status = 200;
	}
	struct hr_err err = {0};
	assert_int_equal(st->ops->callback_done(st, &o, 1, &err), 0);
}

/*
 * Every status change a client hears of, and only those, makes one row in
 * the change's transaction (sent, delivered, read: not the claim), with
 * the message's URL, provider id and previous status; a message without a
 * URL makes none. Rows of one message are claimed one at a time, in order:
 * a retry waiting, a row in flight, hold the later ones back; a stale
 * outcome changes nothing; dead rows let the next one go.
 */
static void test_callback_outbox_order(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[27], quiet[27];
	cb_sent_msg(st, "cb1", CB_URL, "wamid.cb1", id);
	cb_sent_msg(st, "cb2", NULL, "wamid.cb2", quiet);
	int64_t now = hr_now_us();
	hook_status(st, "cb1", "wamid.cb1", MSG_DELIVERED, now, NULL);
	hook_status(st, "cb1", "wamid.cb1", MSG_READ, now, NULL);
	hook_status(st, "cb1", "wamid.cb1", MSG_DELIVERED, now, NULL); /* stale: no row */
	hook_status(st, "cb2", "wamid.cb2", MSG_DELIVERED, now, NULL);

	size_t n;
	struct callback_row *v = cb_list(st, "t1", CB_PENDING, &n);
	assert_int_equal(n, 3);
	const int want[3][2] = {{MSG_READ, MSG_DELIVERED},
	                        {MSG_DELIVERED, MSG_SENT},
	                        {MSG_SENT, MSG_SENDING}};
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(v[i].event, "message.status");
		assert_string_equal(v[i].message_id, id);
		assert_string_equal(v[i].tenant_id, "t1");
		assert_string_equal(v[i].url, CB_URL);
		assert_string_equal(v[i].provider_id, "wamid.cb1");
		assert_int_equal(v[i].status, want[i][0]);
		assert_int_equal(v[i].prev_status, want[i][1]);
		assert_int_equal(v[i].state, CB_PENDING);
		assert_int_equal(v[i].attempts, 0);
		assert_true(i == 0 || v[i].id < v[i - 1].id);
	}
	int64_t first = v[2].id, second = v[1].id, third = v[0].id;
	cb_free(v, n);
	int64_t counts[CB__COUNT];
	assert_int_equal(st->ops->callback_counts(st, counts), 0);
	assert_int_equal(counts[CB_PENDING], 3);
	assert_int_equal(counts[CB_DEAD], 0);

	/* One at a time: the first is in flight, the others wait. */
	v = cb_claim(st, 0, 1);
	assert_int_equal(v[0].id, first);
	assert_int_equal(v[0].attempts, 1);
	struct callback_row r1 = v[0];
	free(v);
	cb_free(cb_claim(st, 0, 0), 0);

	/* A retry an hour away: nothing of this message is due meanwhile. */
	cb_finish(st, &r1, CB_PENDING, now + 3600 * SEC);
	cb_free(cb_claim(st, 0, 0), 0);
	/* A stale outcome (an older attempt) changes nothing. */
	struct callback_outcome stale = {.id = first, .attempt = 0, .state = CB_DELIVERED};
	struct hr_err err = {0};
	assert_int_equal(st->ops->callback_done(st, &stale, 1, &err), 0);
	struct callback_row g;
	assert_int_equal(st->ops->callback_get(st, "t1", first, &g), 0);
	assert_int_equal(g.state, CB_PENDING);
	assert_int_equal(g.last_http, 503);
	assert_string_equal(g.last_error, "HTTP 503");
	callback_row_clear(&g);
	callback_row_clear(&r1);

	/* Two hours on: the first again (attempt 2), delivered; then the
	 * second, dead; then the third. */
	int64_t later = now + 7200 * SEC;
	v = cb_claim(st, later, 1);
	assert_int_equal(v[0].id, first);
	assert_int_equal(v[0].attempts, 2);
	cb_finish(st, &v[0], CB_DELIVERED, 0);
	cb_free(v, 1);
	v = cb_claim(st, later, 1);
	assert_int_equal(v[0].id, second);
	cb_finish(st, &v[0], CB_DEAD, 0);
	cb_free(v, 1);
	v = cb_claim(st, later, 1);
	assert_int_equal(v[0].id, third);
	cb_finish(st, &v[0], CB_DELIVERED, 0);
	cb_free(v, 1);
	cb_free(cb_claim(st, later, 0), 0);

	v = cb_list(st, "t1", CB_DELIVERED, &n);
	cb_free(v, n);
	assert_int_equal(n, 2);
	v = cb_list(st, "t1", CB_DEAD, &n);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, second);
	assert_int_equal(v[0].last_http, 503);
	cb_free(v, n);
	v = cb_list(st, "t1", CB_PENDING, &n);
	cb_free(v, n);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->callback_get(st, "t1", first, &g), 0);
	assert_true(g.delivered_at > 0);
	callback_row_clear(&g);
	assert_int_equal(st->ops->callback_counts(st, counts), 0);
	assert_int_equal(counts[CB_PENDING], 0);
	assert_int_equal(counts[CB_DEAD], 1);
}

/* A message of tenant, claimed and sent (provider id pid). */
static void pe_sent_msg(struct store *st, const char *tenant, const char *account, const char *pid,
                        char id[HR_ID_LEN + 1])
{
	struct message m, c;
	int64_t now = hr_now_us();
	mk_msg(&m, tenant, account, 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, account, now + SEC, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c);
	struct send_result r = {.kind = SEND_OK, .attempt = 1, .http_status = 200};
	strcpy(r.message_id, m.id);
	hr_strlcpy(r.provider_id, pid, sizeof r.provider_id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	strcpy(id, m.id);
}

static void pe_free(struct plugin_event_row *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		plugin_event_row_clear(&v[i]);
	free(v);
}

/*
 * Plugin after-commit events (issue 13): rows only for the tenants in the
 * set (status and reply separately), written with the change (a stale
 * receipt that changes nothing writes none), read oldest first within the
 * limit, deleted in a batch (absent ids no error), counted; the limits'
 * bounds; an empty set writes nothing more.
 */
static void test_plugin_events(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	const struct store_plugin_tenant set[] = {
	    {.tenant_id = "t1", .status = true, .reply = true},
	    {.tenant_id = "t3", .status = false, .reply = true},
	};
	assert_int_equal(store_plugin_tenants_set(set, 2), 0);
	char id[27], other[27], t3[27];
	pe_sent_msg(st, "t1", "pe1", "wamid.pe1", id);
	pe_sent_msg(st, "t2", "pe2", "wamid.pe2", other); /* not in the set */
	pe_sent_msg(st, "t3", "pe3", "wamid.pe3", t3);    /* replies only */
	int64_t now = hr_now_us();
	hook_status(st, "pe1", "wamid.pe1", MSG_DELIVERED, now, NULL);
	hook_status(st, "pe1", "wamid.pe1", MSG_READ, now, NULL);
	hook_status(st, "pe1", "wamid.pe1", MSG_DELIVERED, now, NULL); /* stale: no row */
	hook_status(st, "pe2", "wamid.pe2", MSG_DELIVERED, now, NULL);
	hook_status(st, "pe3", "wamid.pe3", MSG_DELIVERED, now, NULL);
	reply_to(st, "pe1", "wamid.pe1", "wamid.pe1r", "button", "Paid", "PAID", now);
	reply_to(st, "pe2", "wamid.pe2", "wamid.pe2r", "text", "hi", NULL, now);
	reply_to(st, "pe3", "wamid.pe3", "wamid.pe3r", "text", "paid too", NULL, now);

	int64_t count = -1;
	assert_int_equal(st->ops->plugin_event_count(st, &count), 0);
	assert_int_equal(count, 5);
	struct plugin_event_row *v = NULL;
	size_t n = 0;
	assert_int_equal(st->ops->plugin_event_read(st, 100, &v, &n), 0);
	assert_int_equal(n, 5);
	const struct {
		const char *msg;
		int kind, from, to;
		const char *text, *payload;
	} want[5] = {
	    {id, PLUGIN_EV_STATUS, MSG_SENDING, MSG_SENT, NULL, NULL},
	    {id, PLUGIN_EV_STATUS, MSG_SENT, MSG_DELIVERED, NULL, NULL},
	    {id, PLUGIN_EV_STATUS, MSG_DELIVERED, MSG_READ, NULL, NULL},
	    {id, PLUGIN_EV_REPLY, -1, -1, "Paid", "PAID"},
	    {t3, PLUGIN_EV_REPLY, -1, -1, "paid too", NULL},
	};
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(v[i].message_id, want[i].msg);
		assert_string_equal(v[i].tenant_id, want[i].msg == id ? "t1" : "t3");
		assert_int_equal(v[i].kind, want[i].kind);
		assert_int_equal(v[i].prev_status, want[i].from);
		assert_int_equal(v[i].status, want[i].to);
		if (want[i].text)
			assert_string_equal(v[i].text, want[i].text);
		else
			assert_null(v[i].text);
		if (want[i].payload)
			assert_string_equal(v[i].payload, want[i].payload);
		else
			assert_null(v[i].payload);
		assert_true(v[i].created_at > 0);
		assert_true(i == 0 || v[i].id > v[i - 1].id);
	}
	int64_t ids[5];
	for (size_t i = 0; i < 5; i++)
		ids[i] = v[i].id;
	pe_free(v, n);

	/* The limit: the oldest first. */
	assert_int_equal(st->ops->plugin_event_read(st, 2, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, ids[0]);
	assert_int_equal(v[1].id, ids[1]);
	pe_free(v, n);
	assert_int_equal(st->ops->plugin_event_read(st, 0, &v, &n), HR_EINVAL);
	assert_int_equal(st->ops->plugin_event_read(st, PLUGIN_EV_READ_MAX + 1, &v, &n), HR_EINVAL);

	/* A second store on the database: on PostgreSQL (several nodes) the
	 * first holds the deliverer's lock and the second reads nothing until
	 * the first closes; SQLite has one process per file. */
	struct store *st2 = NULL;
	struct hr_err oerr = {0};
	assert_int_equal(backend->open(f->dsn, NULL, &st2, &oerr), 0);
	bool shared = strcmp(fixture->name, "postgres") == 0;
	assert_int_equal(st2->ops->plugin_event_read(st2, 100, &v, &n), 0);
	assert_int_equal(n, shared ? 0 : 5);
	pe_free(v, n);
	assert_int_equal(st->ops->plugin_event_read(st, 100, &v, &n), 0);
	assert_int_equal(n, 5);
	pe_free(v, n);
	st->ops->close(st);
	f->st = st = st2;
	/* PostgreSQL lets the lock go when the closed connection's backend
	 * has ended, a moment after the close returned. */
	int64_t until = hr_mono_us() + 10 * SEC;
	for (;;) {
		assert_int_equal(st->ops->plugin_event_read(st, 100, &v, &n), 0);
		if (n == 5 || hr_mono_us() > until)
			break;
		pe_free(v, n);
		usleep(20000);
	}
	assert_int_equal(n, 5);
	assert_int_equal(v[0].id, ids[0]);
	pe_free(v, n);

	/* Done: deleted in one call, an absent id ignored. */
	int64_t done[3] = {ids[0], ids[1], 999999999};
	assert_int_equal(st->ops->plugin_event_done(st, done, 3), 0);
	assert_int_equal(st->ops->plugin_event_done(st, done, 0), 0);
	assert_int_equal(st->ops->plugin_event_done(st, done, PLUGIN_EV_READ_MAX + 1), HR_EINVAL);
	assert_int_equal(st->ops->plugin_event_count(st, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(st->ops->plugin_event_read(st, 100, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].id, ids[2]);
	pe_free(v, n);
	assert_int_equal(st->ops->plugin_event_done(st, ids + 2, 3), 0);
	assert_int_equal(st->ops->plugin_event_read(st, 100, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);

	/* No set: no rows, whoever changes. */
	assert_int_equal(store_plugin_tenants_set(NULL, 0), 0);
	char later[27];
	pe_sent_msg(st, "t1", "pe1", "wamid.pe1b", later);
	hook_status(st, "pe1", "wamid.pe1b", MSG_DELIVERED, now, NULL);
	assert_int_equal(st->ops->plugin_event_count(st, &count), 0);
	assert_int_equal(count, 0);
}

/*
 * Replay: a dead or delivered row is pending again (attempts 0, due now);
 * a pending one is a conflict; another tenant's id is not found, by get
 * and by replay alike; the bulk replay takes the tenant's dead rows only.
 * Claims skip the URLs they are told to, and retention removes delivered
 * rows only.
 */
static void test_callback_replay_and_prune(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[27];
	cb_sent_msg(st, "cb3", CB_URL, "wamid.cb3", id);
	int64_t now = hr_now_us();
	hook_status(st, "cb3", "wamid.cb3", MSG_DELIVERED, now, NULL);
	struct callback_row *v = cb_claim(st, 0, 1);
	int64_t sent_row = v[0].id;
	cb_finish(st, &v[0], CB_DEAD, 0);
	cb_free(v, 1);
	v = cb_claim(st, 0, 1);
	int64_t delivered_row = v[0].id;
	cb_finish(st, &v[0], CB_DELIVERED, 0);
	cb_free(v, 1);

	struct hr_err err = {0};
	int64_t n = -1;
	struct callback_row g;
	assert_int_equal(st->ops->callback_get(st, "t2", sent_row, &g), HR_ENOTFOUND);
	assert_int_equal(st->ops->callback_replay(st, "t2", sent_row, 0, &n, &err), HR_ENOTFOUND);
	assert_int_equal(st->ops->callback_replay(st, "t2", 0, 100, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->callback_replay(st, "t1", 0, 0, &n, &err), HR_EINVAL);

	/* The bulk replay: the dead row only. */
	assert_int_equal(st->ops->callback_replay(st, "t1", 0, 100, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st->ops->callback_get(st, "t1", sent_row, &g), 0);
	assert_int_equal(g.state, CB_PENDING);
	assert_int_equal(g.attempts, 0);
	callback_row_clear(&g);
	memset(&err, 0, sizeof err);
	assert_int_equal(st->ops->callback_replay(st, "t1", sent_row, 0, &n, &err), HR_ECONFLICT);
	assert_string_equal(err.field, "state");

	/* Skipped URLs are not claimed; others are. */
	const char *skip[] = {"https://other.example/x", CB_URL};
	size_t k;
	assert_int_equal(st->ops->callback_claim(st, 0, 60 * SEC, 10, skip, 2, &v, &k), 0);
	assert_int_equal(k, 0);
	free(v);
	assert_int_equal(st->ops->callback_claim(st, 0, 60 * SEC, 10, skip, 1, &v, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(v[0].id, sent_row);
	cb_finish(st, &v[0], CB_DELIVERED, 0);
	cb_free(v, k);

	/* A delivered row replayed one by one goes out once more. */
	assert_int_equal(st->ops->callback_replay(st, "t1", delivered_row, 0, &n, &err), 0);
	assert_int_equal(n, 1);
	v = cb_claim(st, 0, 1);
	assert_int_equal(v[0].id, delivered_row);
	assert_int_equal(v[0].attempts, 1);
	cb_finish(st, &v[0], CB_DELIVERED, 0);
	cb_free(v, 1);

	/* Retention: delivered rows older than the cutoff, a page at a time. */
	hook_status(st, "cb3", "wamid.cb3", MSG_READ, now, NULL); /* pending: stays */
	assert_int_equal(st->ops->callback_prune(st, hr_now_us() + 3600 * SEC, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st->ops->callback_prune(st, hr_now_us() + 3600 * SEC, 100, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st->ops->callback_prune(st, hr_now_us() + 3600 * SEC, 100, &n), 0);
	assert_int_equal(n, 0);
	size_t left;
	v = cb_list(st, "t1", -1, &left);
	cb_free(v, left);
	assert_int_equal(left, 1);
}

/*
 * Replies: one linked to a message with a URL gets a row on it (after that
 * message's own rows, in its order); one that matched no message gets a
 * row on the account's tenant's URL; one whose tenant has no URL gets
 * none; the same reply again makes nothing. Pages follow the cursor.
 */
static void test_callback_inbound_and_paging(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct tenant_row t1 = {.id = "t1", .name = "T1", .callback_url = "https://t1.example/cb"};
	struct tenant_row t2 = {.id = "t2", .name = "T2"};
	assert_int_equal(st->ops->tenant_upsert(st, &t1, &err), 0);
	assert_int_equal(st->ops->tenant_upsert(st, &t2, &err), 0);
	struct account_row a1 = {.id = "cbin", .tenant_id = "t1", .channel = "whatsapp"};
	struct account_row a2 = {.id = "cbin2", .tenant_id = "t2", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &a1, &err), 0);
	assert_int_equal(st->ops->account_upsert(st, &a2, &err), 0);
	char id[27];
	cb_sent_msg(st, "cbin", CB_URL, "wamid.q", id);

	struct wh_inbound in[2] = {
	    {.provider_msg_id = "wamid.R1",
	     .context_id = "wamid.q",
	     .from = "15550123456",
	     .kind = "button",
	     .text = (char *)"Pay now",
	     .payload = (char *)"PAY_NOW"},
	    {.provider_msg_id = "wamid.R2", .from = "15550123457", .kind = "text", .text = (char *)"hi"},
	};
	struct inbox_parsed rows[2] = {
	    {.inbox_id = inbox_add(st, "cbin"), .account_id = "cbin", .inbound = in, .ninbound = 2},
	    {.inbox_id = inbox_add(st, "cbin2"), .account_id = "cbin2", .inbound = &in[1], .ninbound = 1},
	};
	struct apply_stats s;
	assert_int_equal(st->ops->apply_inbox(st, rows, 2, hr_now_us(), &s), 0);
	assert_int_equal(s.inbound, 3);
	/* Replayed: nothing new. */
	rows[0].inbox_id = inbox_add(st, "cbin");
	assert_int_equal(st->ops->apply_inbox(st, rows, 1, hr_now_us(), &s), 0);
	assert_int_equal(s.inbound, 0);

	size_t n;
	struct callback_row *v = cb_list(st, "t1", CB_PENDING, &n);
	assert_int_equal(n, 3); /* sent, the linked reply, the unlinked one */
	assert_string_equal(v[0].event, "message.inbound");
	assert_string_equal(v[0].message_id, "");
	assert_string_equal(v[0].url, "https://t1.example/cb");
	assert_int_equal(v[0].status, -1);
	json_t *d = json_loads(v[0].detail, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(d, "text")), "hi");
	assert_string_equal(json_string_value(json_object_get(d, "from")), "15550123457");
	json_decref(d);
	assert_string_equal(v[1].event, "message.inbound");
	assert_string_equal(v[1].message_id, id);
	assert_string_equal(v[1].url, CB_URL);
	d = json_loads(v[1].detail, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(d, "kind")), "button");
	assert_string_equal(json_string_value(json_object_get(d, "payload")), "PAY_NOW");
	assert_string_equal(json_string_value(json_object_get(d, "provider_msg_id")), "wamid.R1");
	json_decref(d);
	assert_string_equal(v[2].event, "message.status");
	int64_t ids[3] = {v[0].id, v[1].id, v[2].id};
	cb_free(v, n);
	v = cb_list(st, "t2", -1, &n);
	cb_free(v, n);
	assert_int_equal(n, 0);

	/* The linked reply waits behind its message's sent row; the unlinked
	 * one has no order to keep. */
	v = cb_claim(st, 0, 2);
	assert_int_equal(v[0].id, ids[2]);
	assert_int_equal(v[1].id, ids[0]);
	cb_free(v, 2);

	/* Pages of one, newest first, by the cursor. */
	bool more;
	int64_t cursor = 0;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(st->ops->callback_list(st, "t1", -1, cursor, 1, &v, &n, &more), 0);
		assert_int_equal(n, 1);
		assert_int_equal(v[0].id, ids[i]);
		assert_int_equal(more, i < 2);
		cursor = v[0].id;
		cb_free(v, n);
	}
	assert_int_equal(st->ops->callback_list(st, "t1", -1, 0, 0, &v, &n, &more), HR_EINVAL);
	assert_int_equal(st->ops->callback_list(st, "t1", 7, 0, 10, &v, &n, &more), HR_EINVAL);
}

/* ---------------------------------------------------------------------------
 * The reconciler and fallback routing (lc_reconcile.c).
 * ------------------------------------------------------------------------- */

#define ROUTE_WA_SMS                                                                               \
	"{\"steps\":[{\"channel\":\"whatsapp\",\"account_id\":\"%s\"},"                            \
	"{\"channel\":\"sms\",\"account_id\":\"tw-fb\"}],\"fallback_after_s\":1,"                    \
	"\"text\":\"Your code is 1234\"}"

/* A SENT WhatsApp message with provider id pid on its own account, step 0
 * of a two-step route (then SMS on "tw-fb"), waiting fallback_after_us for
 * a receipt (0: not at all). */
static void routed_sent(struct store *st, const char *account, const char *pid,
                        int64_t fallback_after_us, char id[HR_ID_LEN + 1])
{
	int64_t now = hr_now_us();
	struct message m, c;
	mk_msg(&m, "t1", account, 0, now - SEC);
	char route[512];
	snprintf(route, sizeof route, ROUTE_WA_SMS, account);
	m.route = route;
	m.route_steps = 2;
	strcpy(m.route_root, m.id);
	m.fallback_after = fallback_after_us;
	strcpy(m.unit, "collections"); /* a follow-up belongs to the same unit */
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	size_t n;
	assert_int_equal(st->ops->claim(st, account, now, 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c.route_root, m.id);
	assert_int_equal(c.route_steps, 2);
	assert_non_null(c.route);
	assert_string_equal(c.unit, "collections"); /* the plugin gate reads it */
	message_clear(&c);
	struct send_result r = {.kind = SEND_OK, .attempt = 1, .http_status = 200};
	strcpy(r.message_id, m.id);
	hr_strlcpy(r.provider_id, pid, sizeof r.provider_id);
	assert_int_equal(st->ops->record_results(st, &r, 1, NULL, NULL), 0);
	strcpy(id, m.id);
}

/* The route of root: its messages by step (*n of them), caller frees. */
static struct message *route_of(struct store *st, const char *root, size_t *n)
{
	struct message *v = NULL;
	assert_int_equal(st->ops->message_route(st, "t1", root, &v, n), 0);
	return v;
}

static size_t route_len(struct store *st, const char *root)
{
	size_t n;
	struct message *v = route_of(st, root, &n);
	free_list(v, n);
	return n;
}

/* A queued message past its expiry is EXPIRED by the reconciler's scan and,
 * if a claim gets to it first, by the claim: never returned for sending. */
static void test_reconcile_expiry(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	int64_t now = hr_now_us();
	struct message m[3];
	mk_msg(&m[0], "t1", "exp", 0, now + 60 * SEC); /* scheduled later, expires first */
	mk_msg(&m[1], "t1", "exp", 0, now - SEC);
	mk_msg(&m[2], "t1", "exp", 0, now - SEC);
	m[0].expires_at = now + 5 * SEC;
	m[1].expires_at = now + 10 * SEC;
	assert_int_equal(st->ops->message_insert(st, m, 3, NULL, NULL, NULL), 0);
	struct message got = msg_of(st, m[0].id);
	assert_true(got.expires_at == now + 5 * SEC);
	message_clear(&got);

	int n = -1;
	assert_int_equal(st->ops->reconcile_expire(st, now, 100, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->reconcile_expire(st, now + 6 * SEC, 100, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(status_of(st, m[0].id), MSG_EXPIRED);
	struct events ev = events_of(st, m[0].id);
	assert_int_equal(ev.n, 2);
	assert_string_equal(ev.e[1].type, "expired");
	assert_string_equal(ev.e[1].source, "reconciler");
	assert_int_equal(ev.e[1].status, MSG_EXPIRED);
	events_free(&ev);

	/* A claim after m[1]'s expiry: m[1] comes back EXPIRED, m[2] to send. */
	struct message out[3];
	size_t k;
	assert_int_equal(st->ops->claim(st, "exp", now + 11 * SEC, SEC, 3, out, &k), 0);
	assert_int_equal(k, 2);
	int sending = 0, expired = 0;
	for (size_t i = 0; i < k; i++) {
		if (strcmp(out[i].id, m[1].id) == 0) {
			assert_int_equal(out[i].status, MSG_EXPIRED);
			assert_string_equal(out[i].error_code, "expired");
			expired++;
		} else {
			assert_string_equal(out[i].id, m[2].id);
			assert_int_equal(out[i].status, MSG_SENDING);
			sending++;
		}
		message_clear(&out[i]);
	}
	assert_int_equal(sending, 1);
	assert_int_equal(expired, 1);
	got = msg_of(st, m[1].id);
	assert_int_equal(got.status, MSG_EXPIRED);
	assert_int_equal(got.attempts, 0); /* nothing was attempted */
	message_clear(&got);
	assert_int_equal(count_events(st, m[1].id, "expired"), 1);
	/* Nothing left to expire. */
	assert_int_equal(st->ops->reconcile_expire(st, now + 100 * SEC, 100, &n), 0);
	assert_int_equal(n, 0);
}

/* A routed message that fails gets exactly one follow-up on the next step,
 * linked both ways; later failures, the deadline scan and a stale mark
 * make no second one, and a late DELIVERED is recorded and does nothing. */
static void test_fallback_on_failure_once(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[HR_ID_LEN + 1];
	routed_sent(st, "fb1", "wamid.fb1", 0, id);
	assert_int_equal(route_len(st, id), 1);
	struct apply_stats s = hook_status(st, "fb1", "wamid.fb1", MSG_FAILED, hr_now_us(), NULL);
	assert_int_equal(s.applied, 1);

	size_t n;
	struct message *r = route_of(st, id, &n);
	assert_int_equal(n, 2);
	assert_string_equal(r[0].id, id);
	assert_int_equal(r[0].status, MSG_FAILED);
	assert_int_equal(r[1].route_step, 1);
	assert_string_equal(r[1].route_root, id);
	assert_string_equal(r[1].channel, "sms");
	assert_string_equal(r[1].account_id, "tw-fb");
	struct message g;
	assert_int_equal(st->ops->message_get(st, NULL, r[1].id, &g), 0);
	assert_string_equal(g.unit, "collections");
	message_clear(&g);
	assert_string_equal(r[1].recipient, "+447911123456");
	assert_int_equal(r[1].status, MSG_QUEUED);
	assert_string_equal(r[1].body, "Your code is 1234");
	json_t *c = json_loads(r[1].content, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(c, "text")), "Your code is 1234");
	json_decref(c);
	char fid[HR_ID_LEN + 1];
	strcpy(fid, r[1].id);
	free_list(r, n);

	/* Each names the other. */
	struct events ev = events_of(st, id);
	const struct message_event *fb = &ev.e[ev.n - 1];
	assert_string_equal(fb->type, "fallback");
	json_t *d = detail_of(fb);
	assert_string_equal(json_string_value(json_object_get(d, "fallback_id")), fid);
	assert_string_equal(json_string_value(json_object_get(d, "reason")), "failed");
	json_decref(d);
	events_free(&ev);
	ev = events_of(st, fid);
	assert_int_equal(ev.n, 1);
	assert_string_equal(ev.e[0].type, "accepted");
	assert_string_equal(ev.e[0].source, "webhook");
	d = detail_of(&ev.e[0]);
	assert_string_equal(json_string_value(json_object_get(d, "fallback_of")), id);
	json_decref(d);
	events_free(&ev);

	/* Again and again: nothing more. */
	hook_status(st, "fb1", "wamid.fb1", MSG_UNDELIVERED, hr_now_us(), NULL);
	int k;
	assert_int_equal(st->ops->reconcile_fallback_due(st, hr_now_us() + 3600 * SEC, 100, &k), 0);
	assert_int_equal(k, 0);
	struct stale_answer a = {.answered = false};
	strcpy(a.message_id, id);
	struct stale_stats ss;
	assert_int_equal(st->ops->stale_settle(st, &a, 1, &ss), 0);
	assert_int_equal(ss.skipped, 1);
	assert_int_equal(route_len(st, id), 2);
	assert_int_equal(count_events(st, id, "fallback"), 1);
}

/* No receipt by the route's deadline: one follow-up ("no_receipt"); the
 * original stays SENT, a late FAILED or DELIVERED on it adds nothing. */
static void test_fallback_deadline(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char id[HR_ID_LEN + 1], other[HR_ID_LEN + 1];
	routed_sent(st, "fb2", "wamid.fb2", 2 * SEC, id);
	routed_sent(st, "fb2", "wamid.fb2b", 2 * SEC, other);
	/* other gets its receipt in time: never falls back. */
	hook_status(st, "fb2", "wamid.fb2b", MSG_DELIVERED, hr_now_us(), NULL);
	int64_t now = hr_now_us();
	int k = -1;
	assert_int_equal(st->ops->reconcile_fallback_due(st, now, 100, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(st->ops->reconcile_fallback_due(st, now + 3 * SEC, 100, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(st->ops->reconcile_fallback_due(st, now + 9 * SEC, 100, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(status_of(st, id), MSG_SENT);
	assert_int_equal(route_len(st, id), 2);
	assert_int_equal(route_len(st, other), 1);
	struct events ev = events_of(st, id);
	json_t *d = detail_of(&ev.e[ev.n - 1]);
	assert_string_equal(ev.e[ev.n - 1].source, "reconciler");
	assert_string_equal(json_string_value(json_object_get(d, "reason")), "no_receipt");
	json_decref(d);
	events_free(&ev);

	hook_status(st, "fb2", "wamid.fb2", MSG_FAILED, hr_now_us(), NULL);
	assert_int_equal(status_of(st, id), MSG_FAILED);
	hook_status(st, "fb2", "wamid.fb2", MSG_DELIVERED, hr_now_us(), NULL);
	assert_int_equal(route_len(st, id), 2);
	assert_int_equal(count_events(st, id, "fallback"), 1);
}

/* Stale SENT messages: listed by channel and age; an answer applies by
 * precedence, a message still SENT is marked once (and falls back when
 * routed); settled ones are not listed again. */
static void test_stale_settle(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char a0[HR_ID_LEN + 1], a1[HR_ID_LEN + 1], a2[HR_ID_LEN + 1];
	sent_msg(st, "st1", "p-a0", a0);
	sent_msg(st, "st1", "p-a1", a1);
	routed_sent(st, "st1", "p-a2", 0, a2);
	int64_t now = hr_now_us();
	struct message *v;
	size_t n;
	assert_int_equal(st->ops->stale_list(st, "sms", now + SEC, 100, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->stale_list(st, "whatsapp", now - 60 * SEC, 100, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->stale_list(st, "whatsapp", now + SEC, 100, &v, &n), 0);
	assert_int_equal(n, 3);
	free_list(v, n);

	struct stale_answer a[3] = {
	    {.answered = true, .status = MSG_DELIVERED, .provider_status = "delivered"},
	    {.answered = true, .status = MSG_SENT, .provider_status = "sent"},
	    {.answered = false, .lookup_error = "no lookup"}};
	strcpy(a[0].message_id, a0);
	strcpy(a[1].message_id, a1);
	strcpy(a[2].message_id, a2);
	struct stale_stats ss;
	assert_int_equal(st->ops->stale_settle(st, a, 3, &ss), 0);
	assert_int_equal(ss.applied, 1);
	assert_int_equal(ss.marked, 2);
	assert_int_equal(ss.fallbacks, 1);
	assert_int_equal(ss.skipped, 0);
	assert_int_equal(status_of(st, a0), MSG_DELIVERED);
	assert_int_equal(status_of(st, a1), MSG_SENT);
	assert_int_equal(count_events(st, a0, "lookup_status"), 1);
	assert_int_equal(count_events(st, a1, "stale"), 1);
	assert_int_equal(count_events(st, a2, "stale"), 1);
	assert_int_equal(route_len(st, a2), 2);
	assert_int_equal(st->ops->stale_list(st, "whatsapp", now + SEC, 100, &v, &n), 0);
	assert_int_equal(n, 0);
	/* Once: the same answers again change nothing. */
	assert_int_equal(st->ops->stale_settle(st, a, 3, &ss), 0);
	assert_int_equal(ss.skipped, 3);
	assert_int_equal(count_events(st, a1, "stale"), 1);
	assert_int_equal(route_len(st, a2), 2);
	/* A receipt after the mark still applies. */
	hook_status(st, "st1", "p-a1", MSG_DELIVERED, hr_now_us(), NULL);
	assert_int_equal(status_of(st, a1), MSG_DELIVERED);
}

/* A webhook that matched no message is retried, then parked by the
 * reconciler: listed (for the operator, and for the account's tenant). */
static void test_inbox_park(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct account_row acct = {.config = (char *)"{}"};
	strcpy(acct.id, "pk1");
	strcpy(acct.tenant_id, "t1");
	strcpy(acct.channel, "whatsapp");
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	int64_t now = hr_now_us(), inbox_id;
	struct apply_stats s = hook_status(st, "pk1", "wamid.nobody", MSG_DELIVERED, now, &inbox_id);
	assert_int_equal(s.unmatched, 1);
	int k = -1;
	assert_int_equal(st->ops->inbox_park(st, now - 60 * SEC, 100, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(st->ops->inbox_park(st, now + 60 * SEC, 100, &k), 0);
	assert_int_equal(k, 1);
	assert_false(inbox_has(st, INT64_MAX, inbox_id, NULL));
	struct inbox_row *rows;
	size_t n;
	bool more;
	assert_int_equal(st->ops->inbox_parked(st, NULL, 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_true(rows[0].id == inbox_id);
	assert_string_equal(rows[0].account_id, "pk1");
	assert_non_null(strstr(rows[0].error, "parked by the reconciler"));
	inbox_row_clear(&rows[0]);
	free(rows);
	assert_int_equal(st->ops->inbox_parked(st, "t1", 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 1);
	inbox_row_clear(&rows[0]);
	free(rows);
	assert_int_equal(st->ops->inbox_parked(st, "t2", 0, 10, &rows, &n, &more), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->inbox_parked(st, NULL, 0, 0, &rows, &n, &more), HR_EINVAL);
	assert_int_equal(st->ops->inbox_park(st, now + 60 * SEC, 100, &k), 0);
	assert_int_equal(k, 0);
}

/* Webhooks (on one store) and the reconciler (on another, over the same
 * database) race over the same routed messages: a FAILED status and the
 * deadline both ask for each one's follow-up at once. Exactly one each. */
#define RACE_N 40
struct race_arg {
	struct store *st;
	pthread_barrier_t *start;
	bool reconciler;
	int rc;
};

static void *race_thread(void *p)
{
	struct race_arg *a = p;
	pthread_barrier_wait(a->start);
	for (int round = 0; round < 20 && a->rc == 0; round++) {
		if (a->reconciler) {
			int k;
			a->rc = a->st->ops->reconcile_fallback_due(a->st, hr_now_us() + 3600 * SEC, 7,
			                                           &k);
		} else {
			for (int i = round; i < RACE_N && a->rc == 0; i += 20) {
				char pid[32];
				snprintf(pid, sizeof pid, "wamid.race%d", i);
				struct wh_status ws = {.status = MSG_FAILED};
				strcpy(ws.provider_id, pid);
				struct inbox_parsed row = {
				    .inbox_id = 0, .account_id = "race", .statuses = &ws, .nstatuses = 1};
				struct apply_stats s;
				a->rc = a->st->ops->apply_inbox(a->st, &row, 1, hr_now_us(), &s);
			}
		}
	}
	return NULL;
}

static void test_fallback_race_exactly_once(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	char ids[RACE_N][HR_ID_LEN + 1];
	for (int i = 0; i < RACE_N; i++) {
		char pid[32];
		snprintf(pid, sizeof pid, "wamid.race%d", i);
		routed_sent(st, "race", pid, 1, ids[i]);
	}
	usleep(10000);
	struct store *other;
	struct hr_err err = {0};
	assert_int_equal(backend->open(f->dsn, NULL, &other, &err), 0);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct race_arg a[2] = {{.st = st, .start = &start}, {.st = other, .start = &start, .reconciler = true}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &a[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(a[0].rc, 0);
	assert_int_equal(a[1].rc, 0);
	int k;
	assert_int_equal(other->ops->reconcile_fallback_due(other, hr_now_us() + 3600 * SEC, 100, &k), 0);
	backend->close(other);
	for (int i = 0; i < RACE_N; i++) {
		assert_int_equal(route_len(st, ids[i]), 2);
		assert_int_equal(count_events(st, ids[i], "fallback"), 1);
	}
}

/* A campaign's routed message that fails: its follow-up belongs to the
 * batch too, so the batch counts messages (the failed WhatsApp one and the
 * SMS one), its counters still equal a recount, and it completes only
 * once the follow-up is settled. */
static void test_batch_counts_fallback(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct batch b;
	mk_batch(&b, "t1", "bfb");
	assert_int_equal(st->ops->batch_create(st, &b, &err), 0);
	struct batch_item it;
	mk_item(&it, 1, "+447900000001", true);
	assert_int_equal(st->ops->batch_items_put(st, b.id, &it, 1, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_VALIDATED, NULL, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, "t1", b.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	struct message m;
	mk_row_msg(&m, &b, "447900000001");
	char route[512];
	snprintf(route, sizeof route, ROUTE_WA_SMS, "bfb");
	m.route = route;
	m.route_steps = 2;
	strcpy(m.route_root, m.id);
	int64_t row = 1;
	size_t made;
	assert_int_equal(st->ops->batch_enqueue(st, b.id, &row, &m, 1, true, &made, &err), 0);
	assert_int_equal(made, 1);
	struct message c;
	size_t n;
	assert_int_equal(st->ops->claim(st, "bfb", hr_now_us(), 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	message_clear(&c);
	result(st, m.id, SEND_FAILED, 1, NULL);
	assert_counters_true(st, b.id);
	struct batch g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_FAILED], 1);
	assert_int_equal(g.by_status[MSG_QUEUED], 1); /* the SMS */
	assert_int_equal(g.status, BATCH_PROCESSING);
	batch_clear(&g);
	struct message *v = route_of(st, m.id, &n);
	assert_int_equal(n, 2);
	assert_string_equal(v[1].batch_id, b.id);
	assert_string_equal(v[1].recipient, "+447900000001");
	char sms[HR_ID_LEN + 1];
	strcpy(sms, v[1].id);
	free_list(v, n);
	assert_int_equal(st->ops->claim(st, "tw-fb", hr_now_us(), 30 * SEC, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c.id, sms);
	message_clear(&c);
	result(st, sms, SEND_OK, 1, "SM-bfb");
	hook_status(st, "tw-fb", "SM-bfb", MSG_DELIVERED, hr_now_us(), NULL);
	assert_counters_true(st, b.id);
	g = batch_of(st, b.id);
	assert_int_equal(g.by_status[MSG_FAILED], 1);
	assert_int_equal(g.by_status[MSG_DELIVERED], 1);
	assert_int_equal(g.status, BATCH_COMPLETED);
	batch_clear(&g);
}

/* ---- tenancy: tenants, units, keys, audit (issue 11) ---- */

static struct audit_row mk_audit(const char *tenant, const char *action, const char *object)
{
	struct audit_row a = {0};
	snprintf(a.tenant_id, sizeof a.tenant_id, "%s", tenant);
	snprintf(a.actor, sizeof a.actor, "operator:test");
	snprintf(a.action, sizeof a.action, "%s", action);
	snprintf(a.object, sizeof a.object, "%s", object);
	return a;
}

static struct key_row mk_key(char c, const char *tenant, const char *unit, const char *scopes)
{
	struct key_row k = {0};
	memset(k.hash, c, 64);
	snprintf(k.prefix, sizeof k.prefix, "hk_%c%c%c%c%c%c%c%c", c, c, c, c, c, c, c, c);
	snprintf(k.tenant_id, sizeof k.tenant_id, "%s", tenant);
	snprintf(k.unit_id, sizeof k.unit_id, "%s", unit);
	snprintf(k.scopes, sizeof k.scopes, "%s", scopes);
	snprintf(k.created_by, sizeof k.created_by, "operator:test");
	return k;
}

/* Tenants and units: create, conflict, disable; each change audited in
 * the same transaction, a failed change audits nothing. */
static void test_tenancy_tenants_units(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct tenant_info t = {.id = "bank"};
	snprintf(t.name, sizeof t.name, "The Bank");
	struct audit_row a = mk_audit("bank", "tenant.create", "tenant:bank");
	a.after = "{\"name\":\"The Bank\"}";
	assert_int_equal(st->ops->tenant_create(st, &t, &a, &err), 0);
	assert_int_equal(st->ops->tenant_create(st, &t, &a, &err), HR_ECONFLICT);
	assert_string_equal(err.field, "id");
	struct tenant_info got;
	assert_int_equal(st->ops->tenant_get(st, "bank", &got), 0);
	assert_string_equal(got.name, "The Bank");
	assert_false(got.disabled);
	assert_true(got.created_at > 0);
	assert_int_equal(st->ops->tenant_get(st, "nobody", &got), HR_ENOTFOUND);

	struct unit_row u = {.tenant_id = "bank", .id = "cards"};
	struct audit_row ua = mk_audit("bank", "unit.create", "unit:cards");
	assert_int_equal(st->ops->unit_create(st, &u, false, &ua, &err), 0);
	assert_int_equal(st->ops->unit_create(st, &u, false, &ua, &err), HR_ECONFLICT);
	assert_int_equal(st->ops->unit_create(st, &u, true, &ua, &err), 0); /* seeding: no-op */
	struct unit_row bad = {.tenant_id = "nobody", .id = "x"};
	assert_int_equal(st->ops->unit_create(st, &bad, true, NULL, &err), HR_ENOTFOUND);
	assert_string_equal(err.field, "tenant");
	struct unit_row u2 = {.tenant_id = "bank", .id = "loans"};
	snprintf(u2.name, sizeof u2.name, "Loans");
	assert_int_equal(st->ops->unit_create(st, &u2, false, NULL, &err), 0);
	struct unit_row *units;
	size_t n;
	assert_int_equal(st->ops->unit_list(st, "bank", &units, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(units[0].id, "cards");
	assert_string_equal(units[0].name, "cards");
	assert_string_equal(units[1].name, "Loans");
	free(units);
	assert_int_equal(st->ops->unit_list(st, "nobody", &units, &n), 0);
	assert_int_equal(n, 0);

	struct audit_row da = mk_audit("bank", "unit.disable", "unit:loans");
	assert_int_equal(st->ops->unit_set_disabled(st, "bank", "loans", true, &da, &err), 0);
	assert_int_equal(st->ops->unit_get(st, "bank", "loans", &u2), 0);
	assert_true(u2.disabled);
	assert_int_equal(st->ops->unit_set_disabled(st, "bank", "nope", true, &da, &err),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->unit_get(st, "other", "loans", &u2), HR_ENOTFOUND);
	struct audit_row ta = mk_audit("bank", "tenant.disable", "tenant:bank");
	assert_int_equal(st->ops->tenant_set_disabled(st, "bank", true, &ta, &err), 0);
	assert_int_equal(st->ops->tenant_get(st, "bank", &got), 0);
	assert_true(got.disabled);
	assert_int_equal(st->ops->tenant_set_disabled(st, "nobody", true, &ta, &err), HR_ENOTFOUND);

	/* Audited: the successes only (tenant, unit, disable unit, disable
	 * tenant), newest first; the seeding no-op and failures left nothing. */
	struct audit_row *log;
	assert_int_equal(st->ops->audit_list(st, "bank", 0, 100, &log, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(log[0].action, "tenant.disable");
	assert_string_equal(log[1].action, "unit.disable");
	assert_string_equal(log[2].action, "unit.create");
	assert_string_equal(log[3].action, "tenant.create");
	assert_string_equal(log[3].after, "{\"name\":\"The Bank\"}");
	assert_null(log[3].before);
	assert_string_equal(log[3].actor, "operator:test");
	assert_true(log[0].id > log[1].id);
	/* Paging by id. */
	struct audit_row *page;
	size_t pn;
	assert_int_equal(st->ops->audit_list(st, "bank", log[1].id, 1, &page, &pn), 0);
	assert_int_equal(pn, 1);
	assert_string_equal(page[0].action, "unit.create");
	audit_row_clear(&page[0]);
	free(page);
	for (size_t i = 0; i < n; i++)
		audit_row_clear(&log[i]);
	free(log);
	assert_int_equal(st->ops->audit_list(st, "other", 0, 10, &log, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(st->ops->audit_list(st, NULL, 0, 0, &log, &n), HR_EINVAL);
}

/* Keys: create (unit checked), lookup with the owners' state, list,
 * revoke by prefix within a tenant only, touch, seeding keeps API keys. */
static void test_tenancy_keys(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct tenant_info ta = {.id = "a"}, tb = {.id = "b"};
	assert_int_equal(st->ops->tenant_create(st, &ta, NULL, &err), 0);
	assert_int_equal(st->ops->tenant_create(st, &tb, NULL, &err), 0);
	struct unit_row u = {.tenant_id = "a", .id = "cards"};
	assert_int_equal(st->ops->unit_create(st, &u, false, NULL, &err), 0);

	struct key_row k1 = mk_key('1', "a", "cards", "messages:send messages:read");
	k1.expires_at = 4102444800000000LL;
	struct audit_row ka = mk_audit("a", "key.create", "key:hk_11111111");
	assert_int_equal(st->ops->key_create(st, &k1, &ka, &err), 0);
	assert_int_equal(st->ops->key_create(st, &k1, &ka, &err), HR_ECONFLICT);
	struct key_row k2 = mk_key('2', "a", "", "*");
	assert_int_equal(st->ops->key_create(st, &k2, NULL, &err), 0);
	struct key_row k3 = mk_key('3', "a", "nounit", "admin");
	assert_int_equal(st->ops->key_create(st, &k3, NULL, &err), HR_ENOTFOUND);
	assert_string_equal(err.field, "unit");
	struct key_row k4 = mk_key('4', "b", "", "admin");
	assert_int_equal(st->ops->key_create(st, &k4, NULL, &err), 0);
	struct key_row bad = mk_key('5', "a", "", "");
	assert_int_equal(st->ops->key_create(st, &bad, NULL, &err), HR_EINVAL);
	assert_string_equal(err.field, "scopes");

	struct key_row got;
	assert_int_equal(st->ops->key_lookup(st, k1.hash, &got), 0);
	assert_string_equal(got.prefix, "hk_11111111");
	assert_string_equal(got.tenant_id, "a");
	assert_string_equal(got.unit_id, "cards");
	assert_string_equal(got.scopes, "messages:send messages:read");
	assert_string_equal(got.created_by, "operator:test");
	assert_true(got.expires_at == 4102444800000000LL);
	assert_int_equal(got.revoked_at, 0);
	assert_true(got.api_created);
	assert_false(got.tenant_disabled);
	assert_false(got.unit_disabled);
	assert_int_equal(st->ops->key_lookup(st, k2.hash, &got), 0);
	assert_string_equal(got.scopes, "*");
	assert_string_equal(got.unit_id, "");

	/* Tenant b cannot revoke a's key; a can; twice is not found. */
	char hash[65] = "";
	struct audit_row ra = mk_audit("a", "key.revoke", "key:hk_11111111");
	assert_int_equal(st->ops->key_revoke(st, "b", "hk_11111111", &ra, hash, &err),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->key_revoke(st, "a", "hk_11111111", &ra, hash, &err), 0);
	assert_string_equal(hash, k1.hash);
	assert_int_equal(st->ops->key_revoke(st, "a", "hk_11111111", &ra, hash, &err),
	                 HR_ENOTFOUND);
	assert_int_equal(st->ops->key_lookup(st, k1.hash, &got), 0);
	assert_true(got.revoked_at > 0);

	/* Owners' state comes with the key. */
	assert_int_equal(st->ops->unit_set_disabled(st, "a", "cards", true, NULL, &err), 0);
	assert_int_equal(st->ops->key_lookup(st, k1.hash, &got), 0);
	assert_true(got.unit_disabled);
	assert_int_equal(st->ops->tenant_set_disabled(st, "b", true, NULL, &err), 0);
	assert_int_equal(st->ops->key_lookup(st, k4.hash, &got), 0);
	assert_true(got.tenant_disabled);
	assert_int_equal(st->ops->key_lookup(st, k2.hash, &got), 0);
	assert_false(got.tenant_disabled);
	assert_false(got.unit_disabled);

	/* Touch: only forwards, synchronously and asynchronously. */
	assert_int_equal(st->ops->key_touch(st, k2.hash, 5000, NULL, NULL), 0);
	assert_int_equal(st->ops->key_touch(st, k2.hash, 4000, NULL, NULL), 0);
	assert_int_equal(st->ops->key_lookup(st, k2.hash, &got), 0);
	assert_true(got.last_used_at == 5000);
	assert_int_equal(st->ops->key_touch(st, "short", 1, NULL, NULL), HR_EINVAL);

	struct key_row *keys;
	size_t n;
	assert_int_equal(st->ops->key_list(st, "a", &keys, &n), 0);
	assert_int_equal(n, 2);
	free(keys);
	assert_int_equal(st->ops->key_list(st, NULL, &keys, &n), 0);
	assert_int_equal(n, 3);
	free(keys);

	/* Config seeding and pruning leave API-made keys alone. */
	struct key_row s1 = mk_key('6', "a", "", "*");
	s1.prefix[0] = '\0';
	assert_int_equal(st->ops->key_seed(st, &s1, &err), 0);
	assert_int_equal(st->ops->key_seed(st, &s1, &err), 0);
	assert_int_equal(st->ops->key_lookup(st, s1.hash, &got), 0);
	assert_false(got.api_created);
	assert_string_equal(got.created_by, "operator:test");
	assert_int_equal(st->ops->api_key_prune(st, "a", NULL, 0, &err), 0);
	assert_int_equal(st->ops->key_lookup(st, s1.hash, &got), HR_ENOTFOUND);
	assert_int_equal(st->ops->key_lookup(st, k2.hash, &got), 0);
	assert_int_equal(st->ops->key_lookup(st, k1.hash, &got), 0);
	assert_int_equal(st->ops->key_lookup(st, "nope", &got), HR_ENOTFOUND);

	struct audit_row *log;
	assert_int_equal(st->ops->audit_list(st, "a", 0, 10, &log, &n), 0);
	assert_int_equal(n, 2); /* create, revoke: the failures wrote nothing */
	assert_string_equal(log[0].action, "key.revoke");
	assert_string_equal(log[1].action, "key.create");
	for (size_t i = 0; i < n; i++)
		audit_row_clear(&log[i]);
	free(log);
	struct audit_row incomplete = mk_audit("a", "", "x");
	assert_int_equal(st->ops->audit_append(st, &incomplete, &err), HR_EINVAL);
	struct audit_row ok = mk_audit("a", "batch.cancel", "batch:01X");
	assert_int_equal(st->ops->audit_append(st, &ok, &err), 0);
	assert_int_equal(st->ops->audit_list(st, NULL, 0, 10, &log, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(log[0].action, "batch.cancel");
	for (size_t i = 0; i < n; i++)
		audit_row_clear(&log[i]);
	free(log);
}

/* Units on objects: a message's and an account's unit are stored and read
 * back; message_list filters by unit. */
static void test_tenancy_units_on_objects(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct message m[3];
	mk_msg(&m[0], "t1", "acc", 0, 0);
	mk_msg(&m[1], "t1", "acc", 0, 0);
	mk_msg(&m[2], "t1", "acc", 0, 0);
	snprintf(m[0].unit, sizeof m[0].unit, "cards");
	snprintf(m[1].unit, sizeof m[1].unit, "loans");
	assert_int_equal(st->ops->message_insert(st, m, 3, NULL, NULL, NULL), 0);
	struct message got;
	assert_int_equal(st->ops->message_get(st, "t1", m[0].id, &got), 0);
	assert_string_equal(got.unit, "cards");
	message_clear(&got);
	assert_int_equal(st->ops->message_get(st, "t1", m[2].id, &got), 0);
	assert_string_equal(got.unit, "");
	message_clear(&got);
	/* The single-message path too. */
	struct message one;
	mk_msg(&one, "t1", "acc", 0, 0);
	snprintf(one.unit, sizeof one.unit, "cards");
	assert_int_equal(st->ops->message_insert(st, &one, 1, NULL, NULL, NULL), 0);
	struct msg_filter mf = {.status = -1, .limit = 10, .unit = "cards"};
	struct message *v;
	size_t n;
	bool more;
	assert_int_equal(st->ops->message_list(st, "t1", &mf, &v, &n, &more), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].unit, "cards");
		message_clear(&v[i]);
	}
	free(v);
	mf.unit = NULL;
	assert_int_equal(st->ops->message_list(st, "t1", &mf, &v, &n, &more), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		message_clear(&v[i]);
	free(v);

	struct account_row a = {.id = "u-acc", .tenant_id = "t1", .channel = "whatsapp",
	                        .config = "{}", .unit_id = "cards"};
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
	struct account_row *accts;
	assert_int_equal(st->ops->account_list(st, "t1", &accts, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(accts[0].unit_id, "cards");
	account_row_clear(&accts[0]);
	free(accts);
}

/* ---------------------------------------------------------------------------
 * Tenant limits (issue 11, part 5): the tenant's own limits, the daily
 * message cap kept in the store with the messages, the caps a campaign
 * start checks.
 * ------------------------------------------------------------------------- */

static void mk_tenant(struct store *st, const char *id)
{
	struct hr_err err = {0};
	struct tenant_info t = {0};
	snprintf(t.id, sizeof t.id, "%s", id);
	assert_int_equal(st->ops->tenant_create(st, &t, NULL, &err), 0);
}

static void set_limits(struct store *st, const char *id, int64_t daily, int64_t campaigns)
{
	struct hr_err err = {0};
	struct tenant_limits l = {.daily_cap = daily, .campaign_cap = campaigns};
	assert_int_equal(st->ops->tenant_set_limits(st, id, &l, NULL, &err), 0);
}

static int64_t usage_today(struct store *st, const char *tenant)
{
	int64_t n = -1;
	assert_int_equal(st->ops->tenant_usage(st, tenant, store_day(hr_now_us()), &n), 0);
	return n;
}

/* Limits round-trip, are audited with the change, and are checked. */
static void test_tenant_limits_roundtrip(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	mk_tenant(st, "bank");
	struct tenant_info got;
	assert_int_equal(st->ops->tenant_get(st, "bank", &got), 0);
	assert_int_equal(got.limits.rate_milli, 0);
	assert_int_equal(got.limits.burst, 0);
	assert_int_equal(got.limits.daily_cap, 0);
	assert_int_equal(got.limits.campaign_cap, 0);
	struct tenant_limits l = {.rate_milli = 2500, .burst = 7, .daily_cap = 10,
	                          .campaign_cap = 2};
	struct audit_row a = mk_audit("bank", "tenant.limits", "tenant:bank");
	a.after = "{\"messages_per_day\":10}";
	assert_int_equal(st->ops->tenant_set_limits(st, "bank", &l, &a, &err), 0);
	assert_int_equal(st->ops->tenant_get(st, "bank", &got), 0);
	assert_int_equal(got.limits.rate_milli, 2500);
	assert_int_equal(got.limits.burst, 7);
	assert_int_equal(got.limits.daily_cap, 10);
	assert_int_equal(got.limits.campaign_cap, 2);
	struct tenant_info *all;
	size_t n;
	assert_int_equal(st->ops->tenant_list(st, &all, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(all[0].limits.daily_cap, 10);
	free(all);
	struct audit_row *rows;
	assert_int_equal(st->ops->audit_list(st, "bank", 0, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].action, "tenant.limits");
	audit_row_clear(&rows[0]);
	free(rows);
	assert_int_equal(st->ops->tenant_set_limits(st, "nobody", &l, &a, &err), HR_ENOTFOUND);
	struct tenant_limits bad = {.daily_cap = -1};
	assert_int_equal(st->ops->tenant_set_limits(st, "bank", &bad, NULL, &err), HR_EINVAL);
	/* The failed changes audited nothing; zeros clear. */
	assert_int_equal(st->ops->audit_list(st, "bank", 0, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	audit_row_clear(&rows[0]);
	free(rows);
	struct tenant_limits none = {0};
	assert_int_equal(st->ops->tenant_set_limits(st, "bank", &none, NULL, &err), 0);
	assert_int_equal(st->ops->tenant_get(st, "bank", &got), 0);
	assert_int_equal(got.limits.daily_cap, 0);
	assert_int_equal(got.limits.rate_milli, 0);
}

/*
 * The daily cap: every accepted message counts (single and many per
 * call); a call that would pass the cap is refused whole, writes nothing
 * (not its idempotency row either) and names the cap; a tenant without a
 * cap is counted and never refused; the count survives a reopen.
 */
static void test_daily_cap_exact(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	mk_tenant(st, "capped");
	set_limits(st, "capped", 5, 0);
	struct message m[4];
	for (int i = 0; i < 3; i++) {
		mk_msg(&m[0], "capped", "acct", 0, 0);
		assert_int_equal(st->ops->message_insert(st, m, 1, NULL, NULL, NULL), 0);
	}
	assert_int_equal(usage_today(st, "capped"), 3);
	for (int i = 0; i < 3; i++)
		mk_msg(&m[i], "capped", "acct", 0, 0);
	struct idem_put idem = {.tenant_id = "capped", .key = "k-1", .request_hash = "h",
	                        .http_status = 202, .response = "{}"};
	assert_int_equal(st->ops->message_insert(st, m, 3, &idem, NULL, NULL), HR_EQUOTA);
	struct idem_row ir;
	assert_int_equal(st->ops->idem_get(st, "capped", "k-1", &ir), HR_ENOTFOUND);
	assert_int_equal(count_msgs(st, "capped"), 3);
	assert_int_equal(usage_today(st, "capped"), 3);
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	assert_int_equal(usage_today(st, "capped"), 5);
	mk_msg(&m[0], "capped", "acct", 0, 0);
	assert_int_equal(st->ops->message_insert(st, m, 1, NULL, NULL, NULL), HR_EQUOTA);
	assert_int_equal(count_msgs(st, "capped"), 5);

	/* Uncapped tenants (and tenants the store has no row for) count. */
	mk_tenant(st, "free");
	for (int i = 0; i < 4; i++)
		mk_msg(&m[i], "free", "acct", 0, 0);
	assert_int_equal(st->ops->message_insert(st, m, 4, NULL, NULL, NULL), 0);
	assert_int_equal(usage_today(st, "free"), 4);
	assert_int_equal(usage_today(st, "capped"), 5);
	assert_int_equal(usage_today(st, "nobody"), 0);
	int64_t other = -1;
	assert_int_equal(st->ops->tenant_usage(st, "capped", store_day(hr_now_us()) - 1, &other), 0);
	assert_int_equal(other, 0);

	/* A raised cap takes effect at the next accept; the count stays. */
	fx_reopen(f, NULL);
	st = f->st;
	assert_int_equal(usage_today(st, "capped"), 5);
	mk_msg(&m[0], "capped", "acct", 0, 0);
	assert_int_equal(st->ops->message_insert(st, m, 1, NULL, NULL, NULL), HR_EQUOTA);
	set_limits(st, "capped", 6, 0);
	assert_int_equal(st->ops->message_insert(st, m, 1, NULL, NULL, NULL), 0);
	assert_int_equal(usage_today(st, "capped"), 6);
}

/* The error a refused accept reports (a blocking insert hands back no
 * hr_err: the async callback's is the one the API sees). */
struct cap_cb {
	atomic_int done, ok, refused;
	char field[96], msg[384];
	pthread_mutex_t lock;
};

static void cap_done(void *arg, int rc, const struct hr_err *err)
{
	struct cap_cb *c = arg;
	if (rc == 0) {
		atomic_fetch_add(&c->ok, 1);
	} else if (rc == HR_EQUOTA) {
		pthread_mutex_lock(&c->lock);
		if (err && !c->field[0]) {
			snprintf(c->field, sizeof c->field, "%s", err->field);
			snprintf(c->msg, sizeof c->msg, "%s", err->msg);
		}
		pthread_mutex_unlock(&c->lock);
		atomic_fetch_add(&c->refused, 1);
	}
	atomic_fetch_add(&c->done, 1);
}

struct cap_thread {
	struct store *st;
	struct cap_cb *cb;
	struct message m[50];
};

static void *cap_sender(void *arg)
{
	struct cap_thread *t = arg;
	for (int i = 0; i < 50; i++) {
		mk_msg(&t->m[i], "busy", "acct", 0, 0);
		if (t->st->ops->message_insert(t->st, &t->m[i], 1, NULL, cap_done, t->cb) != 0)
			atomic_fetch_add(&t->cb->done, 1);
	}
	return NULL;
}

/* Eight threads accept 400 single messages at once against a cap of
 * 100: exactly 100 are accepted (and counted), 300 refused naming the cap. */
static void test_daily_cap_concurrent(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	mk_tenant(st, "busy");
	set_limits(st, "busy", 100, 0);
	enum { T = 8 };
	struct cap_cb cb = {0};
	pthread_mutex_init(&cb.lock, NULL);
	struct cap_thread *th = calloc(T, sizeof *th);
	assert_non_null(th);
	pthread_t tid[T];
	for (int i = 0; i < T; i++) {
		th[i].st = st;
		th[i].cb = &cb;
		assert_int_equal(pthread_create(&tid[i], NULL, cap_sender, &th[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(tid[i], NULL);
	assert_true(wait_int(&cb.done, T * 50, WAIT_US));
	assert_int_equal(atomic_load(&cb.ok), 100);
	assert_int_equal(atomic_load(&cb.refused), T * 50 - 100);
	assert_string_equal(cb.field, "daily_cap");
	assert_non_null(strstr(cb.msg, "daily cap of 100 messages"));
	assert_non_null(strstr(cb.msg, "00:00 UTC"));
	assert_int_equal(count_msgs(st, "busy"), 100);
	assert_int_equal(usage_today(st, "busy"), 100);
	pthread_mutex_destroy(&cb.lock);
	free(th);
}

/* A validated batch of n rows of tenant (not started). */
static void validated_batch(struct store *st, struct batch *b, const char *tenant, int n)
{
	struct hr_err err = {0};
	mk_batch(b, tenant, "acct");
	assert_int_equal(st->ops->batch_create(st, b, &err), 0);
	struct batch_item it[16];
	char to[16][32];
	assert_true(n <= 16);
	for (int i = 0; i < n; i++) {
		snprintf(to[i], sizeof to[i], "+4479000001%02d", i + 1);
		mk_item(&it[i], i + 1, to[i], true);
	}
	assert_int_equal(st->ops->batch_items_put(st, b->id, it, (size_t)n, &err), 0);
	assert_int_equal(st->ops->batch_set_status(st, tenant, b->id, BATCH_VALIDATED, NULL, &err),
	                 0);
}

static int enqueue_all(struct store *st, const struct batch *b, int n, size_t *made,
                       struct hr_err *err)
{
	struct message m[16];
	int64_t rows[16];
	for (int i = 0; i < n; i++) {
		char to[32];
		snprintf(to, sizeof to, "+4479000001%02d", i + 1);
		mk_row_msg(&m[i], b, to);
		rows[i] = i + 1;
	}
	return st->ops->batch_enqueue(st, b->id, rows, m, (size_t)n, true, made, err);
}

/*
 * Campaign starts: refused past the campaign cap (naming it) and when the
 * batch's rows do not fit what is left of today's cap; the campaign's
 * messages count; a chunk that no longer fits (other sends took the room
 * after the start) is refused whole, writing nothing.
 */
static void test_campaign_caps(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	mk_tenant(st, "camp");
	set_limits(st, "camp", 0, 1);
	struct batch b1, b2, b3;
	size_t made = 0;
	validated_batch(st, &b1, "camp", 3);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b1.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	assert_int_equal(enqueue_all(st, &b1, 3, &made, &err), 0);
	assert_int_equal(made, 3);
	assert_int_equal(usage_today(st, "camp"), 3);

	validated_batch(st, &b2, "camp", 3);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b2.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EQUOTA);
	assert_string_equal(err.field, "campaign_cap");
	assert_non_null(strstr(err.msg, "1 campaign at once"));
	struct batch g = batch_of(st, b2.id);
	assert_int_equal(g.status, BATCH_VALIDATED);
	batch_clear(&g);

	/* Room for two more campaigns, but only 2 messages left today. */
	set_limits(st, "camp", 5, 3);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b2.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EQUOTA);
	assert_string_equal(err.field, "daily_cap");
	assert_non_null(strstr(err.msg, "daily cap of 5 messages"));
	set_limits(st, "camp", 7, 3);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b2.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	/* The cap is lowered and another send takes the room meanwhile: the
	 * chunk is refused whole. */
	set_limits(st, "camp", 6, 3);
	struct message m;
	mk_msg(&m, "camp", "acct", 0, 0);
	assert_int_equal(st->ops->message_insert(st, &m, 1, NULL, NULL, NULL), 0);
	assert_int_equal(enqueue_all(st, &b2, 3, &made, &err), HR_EQUOTA);
	assert_string_equal(err.field, "daily_cap");
	assert_int_equal(made, 0);
	g = batch_of(st, b2.id);
	assert_int_equal(g.by_status[MSG_QUEUED], 0);
	assert_false(g.ingested);
	batch_clear(&g);
	assert_int_equal(usage_today(st, "camp"), 4);
	assert_int_equal(count_msgs(st, "camp"), 4);
	set_limits(st, "camp", 0, 3);
	assert_int_equal(enqueue_all(st, &b2, 3, &made, &err), 0);
	assert_int_equal(made, 3);
	assert_int_equal(usage_today(st, "camp"), 7);

	/* Cap of 3 with two running: the third starts, a fourth does not. */
	validated_batch(st, &b3, "camp", 1);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b3.id, BATCH_PROCESSING, NULL, &err),
	                 0);
	struct batch b4;
	validated_batch(st, &b4, "camp", 1);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b4.id, BATCH_PROCESSING, NULL, &err),
	                 HR_EQUOTA);
	assert_string_equal(err.field, "campaign_cap");
	/* One ends: room again. */
	assert_int_equal(st->ops->batch_set_status(st, "camp", b3.id, BATCH_CANCELLED, NULL, &err),
	                 0);
	assert_int_equal(st->ops->batch_set_status(st, "camp", b4.id, BATCH_PROCESSING, NULL, &err),
	                 0);
}

struct starter {
	struct store *st;
	char id[HR_ID_LEN + 1];
	int rc;
};

static void *start_thread(void *arg)
{
	struct starter *s = arg;
	struct hr_err err = {0};
	s->rc = s->st->ops->batch_set_status(s->st, "race", s->id, BATCH_PROCESSING, NULL, &err);
	return NULL;
}

/* Six starts at once for the last place: exactly one gets it. */
static void test_campaign_cap_race(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	mk_tenant(st, "race");
	set_limits(st, "race", 0, 1);
	enum { K = 6 };
	struct starter s[K];
	pthread_t th[K];
	for (int i = 0; i < K; i++) {
		struct batch b;
		validated_batch(st, &b, "race", 1);
		s[i] = (struct starter){.st = st};
		snprintf(s[i].id, sizeof s[i].id, "%s", b.id);
	}
	for (int i = 0; i < K; i++)
		assert_int_equal(pthread_create(&th[i], NULL, start_thread, &s[i]), 0);
	int ok = 0, refused = 0;
	for (int i = 0; i < K; i++) {
		pthread_join(th[i], NULL);
		ok += s[i].rc == 0;
		refused += s[i].rc == HR_EQUOTA;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(refused, K - 1);
}

/* How many audit rows the tenant has. */
static size_t audit_count(struct store *st, const char *tenant)
{
	struct audit_row *log;
	size_t n = 0;
	assert_int_equal(st->ops->audit_list(st, tenant, 0, 1000, &log, &n), 0);
	for (size_t i = 0; i < n; i++)
		audit_row_clear(&log[i]);
	free(log);
	return n;
}

static struct template_row mk_tpl(const char *tenant, const char *unit, const char *name,
                                  const char *lang, const char *body)
{
	struct template_row t = {0};
	hr_strlcpy(t.tenant_id, tenant, sizeof t.tenant_id);
	hr_strlcpy(t.channel, "whatsapp", sizeof t.channel);
	hr_strlcpy(t.name, name, sizeof t.name);
	hr_strlcpy(t.language, lang, sizeof t.language);
	hr_strlcpy(t.unit_id, unit, sizeof t.unit_id);
	t.body = (char *)body;
	t.param_count = 1;
	return t;
}

/*
 * Templates written through the API (template_put, _delete, _list): each
 * change with its audit row in one transaction, a refused change with
 * none; units own what they create, may not change the tenant's shared
 * templates or a sibling's, and list their own and the shared ones; the
 * list pages by key.
 */
static void test_template_api_ops(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct audit_row a = mk_audit("acme", "template.create", "template:whatsapp/x/en");
	a.after = "{\"body\":\"Hi {{1}}\"}";
	/* Shared (tenant-wide writer), then a unit's. */
	struct template_row t = mk_tpl("acme", "", "reminder", "en", "Hi {{1}}");
	bool created = false;
	assert_int_equal(st->ops->template_put(st, &t, &a, &created, &err), 0);
	assert_true(created);
	struct template_row c = mk_tpl("acme", "cards", "card_due", "en", "Card {{1}}");
	assert_int_equal(st->ops->template_put(st, &c, &a, &created, &err), 0);
	assert_true(created);
	struct template_row l = mk_tpl("acme", "loans", "loan_due", "en", "Loan {{1}}");
	assert_int_equal(st->ops->template_put(st, &l, &a, &created, &err), 0);
	struct template_row o = mk_tpl("other", "", "reminder", "en", "Other {{1}}");
	struct audit_row oa = mk_audit("other", "template.create", "template:whatsapp/x/en");
	assert_int_equal(st->ops->template_put(st, &o, &oa, &created, &err), 0);
	assert_int_equal(audit_count(st, "acme"), 3);

	struct template_row got;
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "card_due", "en", &got), 0);
	assert_string_equal(got.unit_id, "cards");
	assert_string_equal(got.body, "Card {{1}}");
	template_row_clear(&got);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "reminder", "en", &got), 0);
	assert_string_equal(got.unit_id, "");
	template_row_clear(&got);

	/* A unit may not change the shared template or a sibling's: 409,
	 * nothing written, no audit row. */
	struct template_row bad = mk_tpl("acme", "cards", "reminder", "en", "Changed {{1}}");
	err = (struct hr_err){0};
	assert_int_equal(st->ops->template_put(st, &bad, &a, &created, &err), HR_ECONFLICT);
	assert_string_equal(err.field, "name");
	bad = mk_tpl("acme", "cards", "loan_due", "en", "Changed {{1}}");
	assert_int_equal(st->ops->template_put(st, &bad, &a, &created, &err), HR_ECONFLICT);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "loan_due", "en", &got), 0);
	assert_string_equal(got.body, "Loan {{1}}");
	template_row_clear(&got);
	assert_int_equal(audit_count(st, "acme"), 3);
	/* Its own: updated, keeping its unit. A tenant-wide writer may change a
	 * unit's template, which keeps the unit. */
	c.body = (char *)"Card v2 {{1}}";
	assert_int_equal(st->ops->template_put(st, &c, &a, &created, &err), 0);
	assert_false(created);
	struct template_row w = mk_tpl("acme", "", "loan_due", "en", "Loan v2 {{1}}");
	assert_int_equal(st->ops->template_put(st, &w, &a, &created, &err), 0);
	assert_false(created);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "loan_due", "en", &got), 0);
	assert_string_equal(got.unit_id, "loans");
	assert_string_equal(got.body, "Loan v2 {{1}}");
	template_row_clear(&got);
	assert_int_equal(audit_count(st, "acme"), 5);
	/* Bad rows and audit rows: refused before anything is written. */
	struct template_row nolang = mk_tpl("acme", "", "x", "", "b");
	err = (struct hr_err){0};
	assert_int_equal(st->ops->template_put(st, &nolang, NULL, NULL, &err), HR_EINVAL);
	struct template_row cfg = mk_tpl("acme", "", "y", "en", "b");
	cfg.config = (char *)"[1]";
	assert_int_equal(st->ops->template_put(st, &cfg, NULL, NULL, &err), HR_EINVAL);
	assert_string_equal(err.field, "template.config");
	struct audit_row noactor = a;
	noactor.actor[0] = '\0';
	struct template_row z = mk_tpl("acme", "", "z", "en", "b");
	assert_int_equal(st->ops->template_put(st, &z, &noactor, NULL, &err), HR_EINVAL);
	assert_string_equal(err.field, "audit");
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "z", "en", &got),
	                 HR_ENOTFOUND);

	/* Lists: the tenant's all (3), a unit's own and the shared (2),
	 * another tenant's its own (1); pages of one by key. */
	struct template_row *v;
	size_t n;
	bool more;
	assert_int_equal(st->ops->template_list(st, "acme", NULL, NULL, 100, &v, &n, &more), 0);
	assert_int_equal(n, 3);
	assert_false(more);
	assert_string_equal(v[0].name, "card_due");
	assert_string_equal(v[1].name, "loan_due");
	assert_string_equal(v[2].name, "reminder");
	for (size_t i = 0; i < n; i++)
		template_row_clear(&v[i]);
	free(v);
	assert_int_equal(st->ops->template_list(st, "acme", "cards", NULL, 100, &v, &n, &more), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "card_due");
	assert_string_equal(v[0].unit_id, "cards");
	assert_string_equal(v[1].name, "reminder");
	assert_string_equal(v[1].unit_id, "");
	for (size_t i = 0; i < n; i++)
		template_row_clear(&v[i]);
	free(v);
	struct template_key k = {0};
	size_t seen = 0;
	for (const struct template_key *after = NULL;; after = &k) {
		assert_int_equal(st->ops->template_list(st, "acme", NULL, after, 1, &v, &n, &more),
		                 0);
		assert_int_equal(n, 1);
		seen++;
		hr_strlcpy(k.channel, v[0].channel, sizeof k.channel);
		hr_strlcpy(k.name, v[0].name, sizeof k.name);
		hr_strlcpy(k.language, v[0].language, sizeof k.language);
		template_row_clear(&v[0]);
		free(v);
		if (!more)
			break;
	}
	assert_int_equal(seen, 3);
	assert_int_equal(st->ops->template_list(st, "other", NULL, NULL, 100, &v, &n, &more), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].body, "Other {{1}}");
	template_row_clear(&v[0]);
	free(v);
	assert_int_equal(st->ops->template_list(st, "acme", NULL, NULL, 0, &v, &n, &more),
	                 HR_EINVAL);
	assert_int_equal(st->ops->template_list(st, "acme", NULL, NULL, 1001, &v, &n, &more),
	                 HR_EINVAL);

	/* Delete: a unit only its own (a sibling's and the shared one are not
	 * found for it); each success with its audit row, a miss with none. */
	struct audit_row d = mk_audit("acme", "template.delete", "template:whatsapp/x/en");
	err = (struct hr_err){0};
	assert_int_equal(
	    st->ops->template_delete(st, "acme", "whatsapp", "loan_due", "en", "cards", &d, &err),
	    HR_ENOTFOUND);
	assert_int_equal(
	    st->ops->template_delete(st, "acme", "whatsapp", "reminder", "en", "cards", &d, &err),
	    HR_ENOTFOUND);
	assert_int_equal(
	    st->ops->template_delete(st, "other", "whatsapp", "card_due", "en", NULL, &d, &err),
	    HR_ENOTFOUND);
	assert_int_equal(audit_count(st, "acme"), 5);
	assert_int_equal(
	    st->ops->template_delete(st, "acme", "whatsapp", "card_due", "en", "cards", &d, &err),
	    0);
	assert_int_equal(
	    st->ops->template_delete(st, "acme", "whatsapp", "loan_due", "en", "", &d, &err), 0);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "card_due", "en", &got),
	                 HR_ENOTFOUND);
	assert_int_equal(audit_count(st, "acme"), 7);
	assert_int_equal(audit_count(st, "other"), 1);
	/* Config seeding leaves a template's unit alone. */
	struct template_row seed = mk_tpl("acme", "", "reminder", "en", "Seeded {{1}}");
	assert_int_equal(st->ops->template_upsert(st, &seed, &err), 0);
	assert_int_equal(st->ops->template_put(st, &l, NULL, NULL, &err), 0);
	struct template_row seed2 = mk_tpl("acme", "", "loan_due", "en", "Seeded {{1}}");
	assert_int_equal(st->ops->template_upsert(st, &seed2, &err), 0);
	assert_int_equal(st->ops->template_get(st, "acme", "whatsapp", "loan_due", "en", &got), 0);
	assert_string_equal(got.unit_id, "loans");
	assert_string_equal(got.body, "Seeded {{1}}");
	template_row_clear(&got);
}

/*
 * An account written and a campaign cancelled by a user carry their audit
 * row in the same transaction: a change that commits has it, one that is
 * refused (a transition not allowed, an incomplete audit row) has neither.
 */
static void test_audit_with_change(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct account_row acct = {.id = "acme~wa",
	                           .tenant_id = "acme",
	                           .channel = "whatsapp",
	                           .api_created = true,
	                           .unit_id = "cards"};
	acct.config = (char *)"{\"access_token\":\"env:X\"}";
	struct audit_row a = mk_audit("acme", "account.create", "account:wa");
	a.after = "{\"config\":{\"access_token\":\"env:X\"}}";
	assert_int_equal(st->ops->account_put(st, &acct, &a, &err), 0);
	struct account_row *rows;
	size_t n;
	assert_int_equal(st->ops->account_list(st, "acme", &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].unit_id, "cards");
	account_row_clear(&rows[0]);
	free(rows);
	struct audit_row *log;
	assert_int_equal(st->ops->audit_list(st, "acme", 0, 10, &log, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(log[0].action, "account.create");
	assert_string_equal(log[0].after, a.after);
	audit_row_clear(&log[0]);
	free(log);
	/* An incomplete audit row: nothing written. */
	struct audit_row bad = a;
	bad.object[0] = '\0';
	struct account_row acct2 = acct;
	hr_strlcpy(acct2.id, "acme~wa2", sizeof acct2.id);
	err = (struct hr_err){0};
	assert_int_equal(st->ops->account_put(st, &acct2, &bad, &err), HR_EINVAL);
	assert_string_equal(err.field, "audit");
	assert_int_equal(st->ops->account_list(st, "acme", &rows, &n), 0);
	assert_int_equal(n, 1);
	account_row_clear(&rows[0]);
	free(rows);
	assert_int_equal(audit_count(st, "acme"), 1);

	/* Campaign cancel: allowed once (with its row), then refused (none). */
	struct batch b;
	mk_batch(&b, "acme", "acme~wa");
	assert_int_equal(st->ops->batch_create(st, &b, &err), 0);
	struct audit_row ca = mk_audit("acme", "batch.cancel", "batch:x");
	ca.after = "{\"status\":\"cancelled\"}";
	assert_int_equal(
	    st->ops->batch_set_status_audit(st, "acme", b.id, BATCH_CANCELLED, NULL, &ca, &err), 0);
	struct batch got = batch_of(st, b.id);
	assert_int_equal(got.status, BATCH_CANCELLED);
	batch_clear(&got);
	assert_int_equal(audit_count(st, "acme"), 2);
	err = (struct hr_err){0};
	assert_int_equal(
	    st->ops->batch_set_status_audit(st, "acme", b.id, BATCH_CANCELLED, NULL, &ca, &err),
	    HR_EINVAL);
	assert_string_equal(err.field, "status");
	/* Another tenant's batch: not found, nothing recorded. */
	struct audit_row oa = mk_audit("other", "batch.cancel", "batch:x");
	struct batch b2;
	mk_batch(&b2, "acme", "acme~wa");
	assert_int_equal(st->ops->batch_create(st, &b2, &err), 0);
	assert_int_equal(
	    st->ops->batch_set_status_audit(st, "other", b2.id, BATCH_CANCELLED, NULL, &oa, &err),
	    HR_ENOTFOUND);
	got = batch_of(st, b2.id);
	assert_int_equal(got.status, BATCH_PENDING);
	batch_clear(&got);
	assert_int_equal(audit_count(st, "acme"), 2);
	assert_int_equal(audit_count(st, "other"), 0);
}

/* ---------------------------------------------------------------------------
 * Recipient history: every change of the suppression list, from
 * an inbound STOP, a provider's opt-out error or the API, leaves one history
 * row with its cause and actor; the reads are per tenant and address form.
 * ------------------------------------------------------------------------- */

static void supp_events(struct store *st, const char *tenant, int limit,
                        struct suppression_row **cur, size_t *ncur, struct supp_event_row **ev,
                        size_t *nev)
{
	const char *forms[] = {"+447911123456", "447911123456"};
	assert_int_equal(st->ops->recipient_supp(st, tenant, forms, 2, limit, cur, ncur, ev, nev),
	                 0);
}

static void test_recipient_history(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	struct account_row a1 = {.id = "rh-sms1", .tenant_id = "t1", .channel = "sms"};
	struct account_row a2 = {.id = "rh-sms2", .tenant_id = "t2", .channel = "sms"};
	assert_int_equal(st->ops->account_upsert(st, &a1, &err), 0);
	assert_int_equal(st->ops->account_upsert(st, &a2, &err), 0);
	int64_t now = hr_now_us();
	char m1[27], m2[27], w1[27];
	queue_to(st, "t1", "rh-sms1", "sms", "+447911123456", now - SEC, m1);
	int attempt = claim_one(st, "rh-sms1", now, m1, NULL);
	struct send_result ok = {.kind = SEND_OK, .attempt = attempt, .http_status = 201};
	strcpy(ok.message_id, m1);
	strcpy(ok.provider_id, "SMrh1");
	assert_int_equal(st->ops->record_results(st, &ok, 1, NULL, NULL), 0);
	queue_to(st, "t2", "rh-sms2", "sms", "+447911123456", now - SEC, m2);

	/* 1. The recipient answers t1's message with STOP. */
	struct wh_inbound stop = {.provider_msg_id = "SMrhin1",
	                          .optout = 1,
	                          .from = "+447911123456",
	                          .kind = "text",
	                          .text = (char *)"STOP"};
	strcpy(stop.context_id, "SMrh1");
	assert_int_equal(inbound_sms(st, "rh-sms1", &stop, NULL).inbound, 1);
	/* 2. An operator removes it; 3. adds it back; the same reason again is
	 * no change; 4. another reason replaces it. */
	struct supp_change c = {.tenant_id = "t1",
	                        .channel = "sms",
	                        .recipient = "+447911123456",
	                        .remove = true,
	                        .actor = "key:hk_rh"};
	assert_int_equal(st->ops->suppression_change(st, &c, &err), 0);
	err = (struct hr_err){0};
	assert_int_equal(st->ops->suppression_change(st, &c, &err), HR_ENOTFOUND);
	assert_string_equal(err.field, "recipient");
	c.remove = false;
	c.reason = "asked by phone";
	assert_int_equal(st->ops->suppression_change(st, &c, &err), 0);
	assert_int_equal(st->ops->suppression_change(st, &c, &err), 0);
	c.reason = "complaint";
	assert_int_equal(st->ops->suppression_change(st, &c, &err), 0);
	/* 5. The provider reports an opt-out on WhatsApp (stored without '+'). */
	queue_to(st, "t1", "rh-wa1", "whatsapp", "447911123456", now - SEC, w1);
	attempt = claim_one(st, "rh-wa1", now, w1, NULL);
	struct send_result fail = {.kind = SEND_FAILED,
	                           .attempt = attempt,
	                           .http_status = 400,
	                           .suppress = true,
	                           .error_code = "131050",
	                           .error_text = "user stopped marketing messages",
	                           .error_class = "permanent"};
	strcpy(fail.message_id, w1);
	assert_int_equal(st->ops->record_results(st, &fail, 1, NULL, NULL), 0);
	/* Another tenant removing an entry it does not have: nothing. */
	struct supp_change other = {.tenant_id = "t2",
	                            .channel = "sms",
	                            .recipient = "+447911123456",
	                            .remove = true,
	                            .actor = "key:hk_t2"};
	assert_int_equal(st->ops->suppression_change(st, &other, &err), HR_ENOTFOUND);

	struct suppression_row *cur;
	struct supp_event_row *ev;
	size_t ncur, nev;
	supp_events(st, "t1", 100, &cur, &ncur, &ev, &nev);
	assert_int_equal(ncur, 2);
	assert_string_equal(cur[0].channel, "sms");
	assert_string_equal(cur[0].reason, "complaint");
	assert_string_equal(cur[1].channel, "whatsapp");
	assert_string_equal(cur[1].recipient, "447911123456");
	assert_string_equal(cur[1].reason, "131050: user stopped marketing messages");
	static const struct {
		const char *channel, *action, *reason, *actor;
		int msg; /* 0 none, 1 m1, 2 w1 */
	} want[] = {
	    {"whatsapp", "added", "131050: user stopped marketing messages", "provider", 2},
	    {"sms", "updated", "complaint", "key:hk_rh", 0},
	    {"sms", "added", "asked by phone", "key:hk_rh", 0},
	    {"sms", "removed", "", "key:hk_rh", 0},
	    {"sms", "added", "inbound STOP", "webhook", 1},
	};
	assert_int_equal(nev, sizeof want / sizeof want[0]);
	for (size_t i = 0; i < nev; i++) {
		assert_string_equal(ev[i].channel, want[i].channel);
		assert_string_equal(ev[i].action, want[i].action);
		assert_string_equal(ev[i].reason, want[i].reason);
		assert_string_equal(ev[i].actor, want[i].actor);
		assert_string_equal(ev[i].message_id, want[i].msg == 1   ? m1
		                                      : want[i].msg == 2 ? w1
		                                                         : "");
		assert_true(ev[i].at > 0);
		if (i > 0)
			assert_true(ev[i].id < ev[i - 1].id);
	}
	free(cur);
	free(ev);
	/* The limit bounds the history, newest kept. */
	supp_events(st, "t1", 2, &cur, &ncur, &ev, &nev);
	assert_int_equal(nev, 2);
	assert_string_equal(ev[0].channel, "whatsapp");
	assert_string_equal(ev[1].action, "updated");
	free(cur);
	free(ev);
	/* t2 messaged the same number: none of t1's state or history. */
	supp_events(st, "t2", 100, &cur, &ncur, &ev, &nev);
	assert_int_equal(ncur, 0);
	assert_int_equal(nev, 0);
	free(cur);
	free(ev);

	/* Replies: t1's, with the message answered and its unit; none for t2. */
	const char *forms[] = {"+447911123456", "447911123456"};
	struct inbound_row *in;
	size_t nin;
	assert_int_equal(st->ops->recipient_inbound(st, "t1", forms, 2, 10, &in, &nin), 0);
	assert_int_equal(nin, 1);
	assert_string_equal(in[0].message_id, m1);
	assert_string_equal(in[0].account_id, "rh-sms1");
	assert_string_equal(in[0].sender, "+447911123456");
	assert_string_equal(in[0].kind, "text");
	assert_string_equal(in[0].text, "STOP");
	assert_string_equal(in[0].unit, "");
	assert_true(in[0].received_at > 0);
	inbound_row_clear(&in[0]);
	free(in);
	assert_int_equal(st->ops->recipient_inbound(st, "t2", forms, 2, 10, &in, &nin), 0);
	assert_int_equal(nin, 0);
	free(in);
	/* Bounds are checked. */
	assert_int_equal(st->ops->recipient_inbound(st, "t1", forms, 0, 10, &in, &nin), HR_EINVAL);
	assert_int_equal(st->ops->recipient_inbound(st, "t1", forms, 2, 0, &in, &nin), HR_EINVAL);
	assert_int_equal(st->ops->recipient_supp(st, "", forms, 2, 10, &cur, &ncur, &ev, &nev),
	                 HR_EINVAL);
	assert_int_equal(st->ops->recipient_supp(st, "t1", forms, 2, 1001, &cur, &ncur, &ev, &nev),
	                 HR_EINVAL);
	(void)m2;
}

/* an account's queue depth (the claim index, bounded) and its
 * pause with the audit row, one transaction. */
static void test_account_pause_and_depth(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	int64_t now = hr_now_us();
	char id[27];
	for (int i = 0; i < 7; i++)
		queue_to(st, "t1", "qd-wa", "whatsapp", "447911000001", now - SEC, id);
	queue_to(st, "t1", "qd-other", "whatsapp", "447911000002", now - SEC, id);
	int64_t n = -1;
	assert_int_equal(st->ops->account_queue_depth(st, "qd-wa", 1000, &n), 0);
	assert_int_equal(n, 7);
	assert_int_equal(st->ops->account_queue_depth(st, "qd-wa", 5, &n), 0);
	assert_int_equal(n, 5); /* capped */
	claim_one(st, "qd-other", now, id, NULL);
	assert_int_equal(st->ops->account_queue_depth(st, "qd-other", 1000, &n), 0);
	assert_int_equal(n, 0); /* sending is not waiting */
	assert_int_equal(st->ops->account_queue_depth(st, "", 10, &n), HR_EINVAL);
	assert_int_equal(st->ops->account_queue_depth(st, "qd-wa", 0, &n), HR_EINVAL);

	struct account_pause_row p = {
	    .account_id = "qd-wa", .tenant_id = "t1", .reason = "incident", .actor = "key:hk_x"};
	struct audit_row a = {.tenant_id = "t1",
	                      .actor = "key:hk_x",
	                      .action = "account.pause",
	                      .object = "account:qd-wa"};
	assert_int_equal(st->ops->account_pause_set(st, &p, true, &a, &err), 0);
	hr_strlcpy(p.reason, "still down", sizeof p.reason); /* again: replaced */
	assert_int_equal(st->ops->account_pause_set(st, &p, true, NULL, &err), 0);
	struct account_pause_row *v;
	size_t np;
	assert_int_equal(st->ops->account_pauses(st, &v, &np), 0);
	assert_int_equal(np, 1);
	assert_string_equal(v[0].account_id, "qd-wa");
	assert_string_equal(v[0].tenant_id, "t1");
	assert_string_equal(v[0].reason, "still down");
	assert_string_equal(v[0].actor, "key:hk_x");
	assert_true(v[0].at > 0);
	free(v);
	assert_int_equal(audit_count(st, "t1"), 1);
	struct account_pause_row r = {.account_id = "qd-wa"};
	assert_int_equal(st->ops->account_pause_set(st, &r, false, &a, &err), 0);
	assert_int_equal(audit_count(st, "t1"), 2);
	err = (struct hr_err){0};
	assert_int_equal(st->ops->account_pause_set(st, &r, false, &a, &err), HR_ENOTFOUND);
	assert_int_equal(audit_count(st, "t1"), 2); /* nothing half-written */
	assert_int_equal(st->ops->account_pauses(st, &v, &np), 0);
	assert_int_equal(np, 0);
	free(v);
}

/* the daily counters against a recount from the store's own
 * rows (messages and their audit trails), through store_ops only: a
 * message counts for a kind on the day of the first applied event that
 * reached it (accepted: its creation). */
static bool daily_in(int kind, int status)
{
	switch (kind) {
	case DAILY_SENT:
		return status == MSG_SENT || status == MSG_DELIVERED || status == MSG_READ;
	case DAILY_DELIVERED:
		return status == MSG_DELIVERED || status == MSG_READ;
	case DAILY_READ:
		return status == MSG_READ;
	case DAILY_FAILED:
		return status == MSG_FAILED || status == MSG_UNDELIVERED;
	}
	return false;
}

static void daily_recount(struct store *st, const char *tenant, const char *channel, int32_t day,
                          int64_t out[DAILY__COUNT])
{
	memset(out, 0, DAILY__COUNT * sizeof *out);
	struct msg_filter f = {.status = -1, .limit = 1000, .channel = channel};
	struct message *ms;
	size_t n;
	bool more;
	assert_int_equal(st->ops->message_list(st, tenant, &f, &ms, &n, &more), 0);
	assert_false(more);
	for (size_t i = 0; i < n; i++) {
		if (daily_day(ms[i].created_at) == day)
			out[DAILY_ACCEPTED]++;
		struct events ev = events_of(st, ms[i].id);
		for (int k = DAILY_SENT; k < DAILY__COUNT; k++)
			for (size_t e = 0; e < ev.n; e++)
				if (ev.e[e].applied && daily_in(k, ev.e[e].status)) {
					if (daily_day(ev.e[e].at) == day)
						out[k]++;
					break;
				}
		events_free(&ev);
		message_clear(&ms[i]);
	}
	free(ms);
}

static void daily_read(struct store *st, const char *tenant, const char *channel, int32_t day,
                       int64_t out[DAILY__COUNT])
{
	memset(out, 0, DAILY__COUNT * sizeof *out);
	struct daily_ent *v;
	size_t n;
	assert_int_equal(st->ops->daily_counts(st, tenant, day - 1, day + 1, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].tenant_id, tenant);
		assert_int_equal(v[i].day, day); /* nothing on other days */
		if (!strcmp(v[i].channel, channel) && v[i].kind < DAILY__COUNT)
			out[v[i].kind] += v[i].n;
	}
	free(v);
}

static void test_daily_counts(void **state)
{
	struct fx *f = *state;
	struct store *st = f->st;
	struct hr_err err = {0};
	int64_t now = hr_now_us();
	int32_t today = daily_day(now);
	struct account_row acct = {.id = "dc-wa", .tenant_id = "t1", .channel = "whatsapp"};
	assert_int_equal(st->ops->account_upsert(st, &acct, &err), 0);
	/* t1: six accepted on WhatsApp (one call), one on SMS; t2: one. */
	struct message m[6];
	for (int i = 0; i < 6; i++)
		mk_msg(&m[i], "t1", "dc-wa", 0, now - SEC);
	assert_int_equal(st->ops->message_insert(st, m, 6, NULL, NULL, NULL), 0);
	char sms[27], other[27];
	queue_to(st, "t1", "dc-sms", "sms", "+447911000003", now - SEC, sms);
	queue_to(st, "t2", "dc-t2", "whatsapp", "447911000004", now - SEC, other);
	/* Sends: four taken, one refused for good, one to try again. */
	struct message c[6];
	size_t n;
	assert_int_equal(st->ops->claim(st, "dc-wa", now, 30 * SEC, 6, c, &n), 0);
	assert_int_equal(n, 6);
	struct send_result r[6];
	memset(r, 0, sizeof r);
	char pid[6][32];
	for (int i = 0; i < 6; i++) {
		strcpy(r[i].message_id, c[i].id);
		r[i].attempt = c[i].attempts;
		snprintf(pid[i], sizeof pid[i], "wamid.dc%d", i);
		r[i].kind = i < 4 ? SEND_OK : i == 4 ? SEND_FAILED : SEND_RETRY;
		r[i].http_status = i < 4 ? 200 : 400;
		if (i < 4)
			strcpy(r[i].provider_id, pid[i]);
		if (i == 4)
			strcpy(r[i].error_code, "131026");
		if (i == 5)
			r[i].due_at = now + 3600 * SEC;
		message_clear(&c[i]);
	}
	assert_int_equal(st->ops->record_results(st, r, 6, NULL, NULL), 0);
	/* Receipts: delivered; read without a delivered first; delivered then
	 * read, with the delivered repeated (ignored); undelivered after sent. */
	hook_status(st, "dc-wa", pid[0], MSG_DELIVERED, now, NULL);
	hook_status(st, "dc-wa", pid[1], MSG_READ, now, NULL);
	hook_status(st, "dc-wa", pid[2], MSG_DELIVERED, now, NULL);
	hook_status(st, "dc-wa", pid[2], MSG_READ, now, NULL);
	hook_status(st, "dc-wa", pid[2], MSG_DELIVERED, now, NULL);
	hook_status(st, "dc-wa", pid[3], MSG_UNDELIVERED, now, NULL);

	int64_t got[DAILY__COUNT], want[DAILY__COUNT];
	daily_read(st, "t1", "whatsapp", today, got);
	daily_recount(st, "t1", "whatsapp", today, want);
	static const int64_t exact[DAILY__COUNT] = {6, 4, 3, 2, 2};
	for (int k = 0; k < DAILY__COUNT; k++) {
		if (got[k] != want[k] || got[k] != exact[k])
			fail_msg("%s: counter %lld, recount %lld, expected %lld",
			         daily_kind_name((enum daily_kind)k), (long long)got[k],
			         (long long)want[k], (long long)exact[k]);
	}
	/* The failure codes: the refused send's, once; the undelivered
	 * receipt had no code. */
	struct daily_ent *ev;
	size_t nev;
	assert_int_equal(st->ops->daily_counts(st, "t1", today, today, &ev, &nev), 0);
	int codes = 0;
	for (size_t i = 0; i < nev; i++)
		if (ev[i].kind == DAILY_ERROR) {
			codes++;
			assert_string_equal(ev[i].channel, "whatsapp");
			assert_string_equal(ev[i].code, "131026");
			assert_int_equal(ev[i].n, 1);
		} else {
			assert_string_equal(ev[i].code, "");
		}
	free(ev);
	assert_int_equal(codes, 1);
	daily_read(st, "t1", "sms", today, got);
	daily_recount(st, "t1", "sms", today, want);
	assert_memory_equal(got, want, sizeof got);
	assert_int_equal(got[DAILY_ACCEPTED], 1);
	daily_read(st, "t2", "whatsapp", today, got);
	assert_int_equal(got[DAILY_ACCEPTED], 1);
	assert_int_equal(got[DAILY_SENT], 0);
	/* Bounds. */
	struct daily_ent *v;
	assert_int_equal(st->ops->daily_counts(st, "t1", today, today - 1, &v, &n), HR_EINVAL);
	assert_int_equal(st->ops->daily_counts(st, "t1", today - 400, today, &v, &n), HR_EINVAL);
	assert_int_equal(st->ops->daily_counts(st, "", today, today, &v, &n), HR_EINVAL);
	assert_int_equal(st->ops->daily_counts(st, "t3", today - 1, today, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);
}

int main(void)
{
	hr_log_set_level(HR_LOG_WARN);
	const char *name = getenv("HERALD_TEST_STORE");
	if (!name || !*name)
		name = "sqlite";
	for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
		if (strcmp(fixtures[i].name, name) == 0)
			fixture = &fixtures[i];
	if (!fixture) {
		fprintf(stderr, "HERALD_TEST_STORE=%s: no fixture for that backend\n", name);
		return 1;
	}
	backend = store_backend(fixture->name);
	if (!backend) {
		fprintf(stderr, "HERALD_TEST_STORE=%s: no such backend built in\n", name);
		return 1;
	}
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	    T(test_recipient_history),
	    T(test_account_pause_and_depth),
	    T(test_daily_counts),
	    T(test_open_migrate_idempotent),
	    T(test_config_rows),
	    T(test_insert_get_events),
	    T(test_idempotency_conflict_rolls_back),
	    T(test_batch_insert_10000),
	    T(test_claim_order_and_lease),
	    T(test_claim_async),
	    T(test_record_results),
	    T(test_record_async_and_json),
	    T(test_requeue_expired),
	    T(test_policy_stored),
	    T(test_policy_lease_expiry),
	    T(test_policy_send_unknown),
	    T(test_policy_client_ref),
	    T(test_record_stale_attempt_fenced),
	    T(test_record_outcome_isolated),
	    T(test_record_batch_fails_in_middle),
	    T(test_record_same_message_twice),
	    T(test_requeue_attempt_limit),
	    T(test_inbox_append_dedupe),
	    T(test_apply_precedence),
	    T(test_apply_many_in_one_call),
	    T(test_apply_unknown_retry_then_orphan),
	    T(test_apply_inbound_and_malformed),
	    T(test_webhook_scoped_to_account),
	    T(test_apply_retry_no_duplicate_events),
	    T(test_apply_one_message_statuses_in_batch),
	    T(test_apply_retried_row_in_batch),
	    T(test_apply_retried_row_repeats_status),
	    T(test_outside_text_stored_as_utf8),
	    T(test_prune_retention),
	    T(test_message_retention),
	    T(test_message_retention_bounded),
	    T(test_status_gauges),
	    T(test_message_retention_args),
	    T(test_list_filters_and_paging),
	    T(test_list_search_filters),
	    T(test_concurrent_inserts),
	    T(test_async_inserts),
	    T(test_failing_job_isolated),
	    T(test_queue_limit_and_close_drains),
	    T(test_api_key_prune),
	    T(test_tenancy_tenants_units),
	    T(test_tenancy_keys),
	    T(test_tenancy_units_on_objects),
	    T(test_template_config_roundtrip),
	    T(test_template_api_ops),
	    T(test_audit_with_change),
	    T(test_suppression_ops),
	    T(test_claim_suppressed),
	    T(test_new_recipient_alias),
	    T(test_alias_table_one_hop),
	    T(test_alias_then_suppressed),
	    T(test_record_suppress_flag),
	    T(test_inbound_stop_start),
	    T(test_auto_reply_once),
	    T(test_segments_roundtrip),
	    T(test_record_reroute),
	    T(test_concurrent_claimers_exactly_once),
	    T(test_claimers_on_separate_stores_exactly_once),
	    T(test_concurrent_late_outcomes_fenced),
	    T(test_two_appliers_effects_once),
	    T(test_two_appliers_rows_claimed_once),
	    T(test_batch_life_and_counters),
	    T(test_batch_export_rows),
	    T(test_batch_cancel),
	    T(test_batch_pause),
	    T(test_batch_breakdown),
	    T(test_batch_rules_and_lists),
	    T(test_callback_outbox_order),
	    T(test_plugin_events),
	    T(test_callback_replay_and_prune),
	    T(test_callback_inbound_and_paging),
	    T(test_reconcile_expiry),
	    T(test_fallback_on_failure_once),
	    T(test_fallback_deadline),
	    T(test_stale_settle),
	    T(test_inbox_park),
	    T(test_fallback_race_exactly_once),
	    T(test_batch_counts_fallback),
	    T(test_tenant_limits_roundtrip),
	    T(test_daily_cap_exact),
	    T(test_daily_cap_concurrent),
	    T(test_campaign_caps),
	    T(test_campaign_cap_race),
#undef T
	};
	char group[80];
	snprintf(group, sizeof group, "store conformance (%s)", fixture->name);
	int failed = cmocka_run_group_tests_name(group, tests, NULL, NULL);
	if (fixture->finish)
		fixture->finish();
	return failed;
}
