/*
 * store_bench.c - single accepts and claims per second through struct
 * store_ops, on SQLite or PostgreSQL, so the two backends are compared by
 * the same code doing what the API and the dispatcher do.
 *
 * Phases (each `--seconds` long):
 *   insert-1:  one thread, blocking message_insert of one message at a time
 *              (latency-bound: one commit per message).
 *   insert-N:  --threads threads doing the same at once (what many API
 *              requests look like: the writer groups them into one commit).
 *   batch-1000: one thread inserting 1,000 messages per call (a campaign
 *              upload), 200,000 in all: the rows the claim phase takes.
 *   claim:     --accounts accounts, --threads claimers each taking --batch
 *              messages per claim from its own account (lease 60 s), on
 *              rows inserted beforehand; claims/s and messages/s.
 *   deliver:   the delivery path of the dispatcher and the applier, one
 *              thread: claim --batch messages, record their outcomes (sent,
 *              with a provider id) in one record_results, then apply their
 *              receipts as a webhook would bring them (delivered, 20
 *              statuses per inbox row, the rows appended and claimed
 *              first) in one apply_inbox; messages/s, and the mean time of
 *              record_results and apply_inbox per message (us).
 *
 * With --scrape N, only this instead: the store filled to N messages
 * (1,000 per insert), then what a /metrics scrape costs: the store's
 * messages by status as the old scrape read them (message_counts, a scan
 * of the message table), as it reads them now (message_gauges, the counts
 * kept as messages change), and a whole render (metrics_render); each the
 * mean of --reps runs, in ms, plus the gauges checked against the scan.
 *
 * PostgreSQL runs on a throwaway server started here (tests/pgtest.h: the
 * Debian server binaries, no fsync, unix socket), so its figures are the
 * backend's round trips and CPU, not a disk's; SQLite runs with
 * synchronous=NORMAL on a file in --dir (default /tmp).
 *
 * usage: store_bench --backend sqlite|postgres [--seconds S] [--threads T]
 *                    [--accounts A] [--batch B] [--dir DIR] [--scrape N [--reps R]]
 * Prints one line per phase: store_bench backend=B phase=P ops=N seconds=S
 * ops_per_s=X [messages_per_s=Y].
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "herald.h"
#include "obs/metrics.h"
#include "pgtest.h"
#include "store/store.h"

struct args {
	const char *backend, *dir;
	double seconds;
	int threads, accounts, batch;
	long scrape; /* --scrape N: the scrape phase alone, on N messages */
	int reps;
};

static struct store *st;
static atomic_int stop_flag;
static atomic_long ops, msgs;
static struct args A;

static void mk(struct message *m, const char *account)
{
	memset(m, 0, sizeof *m);
	hr_id_new(m->id);
	strcpy(m->tenant_id, "bench");
	hr_strlcpy(m->account_id, account, sizeof m->account_id);
	strcpy(m->channel, "whatsapp");
	strcpy(m->recipient, "+447911123456");
	m->content = (char *)"{\"type\":\"text\",\"text\":{\"body\":\"Your code is 482913\"}}";
	m->body = (char *)"Your code is 482913";
	m->max_attempts = 8;
}

static void *insert_thread(void *arg)
{
	(void)arg;
	struct message m;
	while (!atomic_load(&stop_flag)) {
		mk(&m, "bench-wa");
		int rc = st->ops->message_insert(st, &m, 1, NULL, NULL, NULL);
		if (rc) {
			fprintf(stderr, "insert: %d\n", rc);
			exit(1);
		}
		atomic_fetch_add(&ops, 1);
	}
	return NULL;
}

struct claimer {
	pthread_t th;
	char account[32];
};

static void *claim_thread(void *arg)
{
	struct claimer *c = arg;
	struct message *out = calloc((size_t)A.batch, sizeof *out);
	if (!out)
		exit(1);
	while (!atomic_load(&stop_flag)) {
		size_t n = 0;
		int rc = st->ops->claim(st, c->account, 0, 60000000LL, A.batch, out, &n);
		if (rc) {
			fprintf(stderr, "claim: %d\n", rc);
			exit(1);
		}
		for (size_t i = 0; i < n; i++)
			message_clear(&out[i]);
		atomic_fetch_add(&ops, 1);
		atomic_fetch_add(&msgs, (long)n);
		if (n == 0)
			break; /* the account ran dry: the phase was too long for its rows */
	}
	free(out);
	return NULL;
}

/* The process's CPU time (us, every thread: the writer's too). */
static int64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}
static int64_t cpu0, cpu1; /* around the last run_phase */

/* Runs nthreads of fn for A.seconds; returns the elapsed seconds. */
static double run_phase(void *(*fn)(void *), int nthreads, void *args, size_t arg_size)
{
	pthread_t *th = calloc((size_t)nthreads, sizeof *th);
	if (!th)
		exit(1);
	atomic_store(&stop_flag, 0);
	atomic_store(&ops, 0);
	atomic_store(&msgs, 0);
	int64_t t0 = hr_mono_us();
	cpu0 = cpu_us();
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, fn,
		                   args ? (char *)args + (size_t)i * arg_size : NULL))
			exit(1);
	usleep((useconds_t)(A.seconds * 1e6));
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	cpu1 = cpu_us();
	free(th);
	return (double)(hr_mono_us() - t0) / 1e6;
}

/* The delivery path (see the header): rounds of claim, record_results,
 * inbox_append + inbox_claim, apply_inbox on account bench-dl. */
#define DL_PER_ROW 20
static atomic_long rec_us, apply_us;

static void *deliver_thread(void *arg)
{
	(void)arg;
	size_t b = (size_t)A.batch, nrows = (b + DL_PER_ROW - 1) / DL_PER_ROW;
	struct message *out = calloc(b, sizeof *out);
	struct send_result *r = calloc(b, sizeof *r);
	struct wh_status *ws = calloc(b, sizeof *ws);
	struct inbox_parsed *rows = calloc(nrows, sizeof *rows);
	if (!out || !r || !ws || !rows)
		exit(1);
	while (!atomic_load(&stop_flag)) {
		size_t n = 0;
		if (st->ops->claim(st, "bench-dl", 0, 60000000LL, A.batch, out, &n) != 0)
			exit(1);
		if (n == 0)
			break; /* ran dry: the phase was too long for its rows */
		for (size_t i = 0; i < n; i++) {
			r[i] = (struct send_result){
			    .kind = SEND_OK, .attempt = out[i].attempts, .http_status = 200};
			hr_strlcpy(r[i].message_id, out[i].id, sizeof r[i].message_id);
			snprintf(r[i].provider_id, sizeof r[i].provider_id, "wamid.%s", out[i].id);
			ws[i] = (struct wh_status){.status = MSG_DELIVERED};
			hr_strlcpy(ws[i].provider_id, r[i].provider_id, sizeof ws[i].provider_id);
			message_clear(&out[i]);
		}
		int64_t t0 = hr_mono_us();
		if (st->ops->record_results(st, r, n, NULL, NULL) != 0)
			exit(1);
		int64_t t1 = hr_mono_us();
		size_t k = (n + DL_PER_ROW - 1) / DL_PER_ROW;
		for (size_t i = 0; i < k; i++)
			if (st->ops->inbox_append(st, "bench-dl", "whatsapp", "", "{}", 2, NULL,
			                          NULL))
				exit(1);
		struct inbox_row *ir = NULL;
		size_t got = 0;
		if (st->ops->inbox_claim(st, 0, 60000000LL, (int)k, &ir, &got) != 0 || got != k)
			exit(1);
		for (size_t i = 0; i < k; i++) {
			size_t first = i * DL_PER_ROW;
			rows[i] = (struct inbox_parsed){
			    .inbox_id = ir[i].id,
			    .account_id = "bench-dl",
			    .statuses = &ws[first],
			    .nstatuses = first + DL_PER_ROW <= n ? DL_PER_ROW : n - first};
			inbox_row_clear(&ir[i]);
		}
		free(ir);
		int64_t t2 = hr_mono_us();
		struct apply_stats as;
		if (st->ops->apply_inbox(st, rows, k, 0, &as) != 0 || as.applied != (int)n)
			exit(1);
		int64_t t3 = hr_mono_us();
		atomic_fetch_add(&rec_us, (long)(t1 - t0));
		atomic_fetch_add(&apply_us, (long)(t3 - t2));
		atomic_fetch_add(&ops, 1);
		atomic_fetch_add(&msgs, (long)n);
	}
	free(out);
	free(r);
	free(ws);
	free(rows);
	return NULL;
}

static void report(const char *phase, double secs, bool with_msgs)
{
	long n = atomic_load(&ops);
	printf("store_bench backend=%s phase=%s ops=%ld seconds=%.2f ops_per_s=%.0f", A.backend,
	       phase, n, secs, (double)n / secs);
	if (with_msgs)
		printf(" messages_per_s=%.0f", (double)atomic_load(&msgs) / secs);
	if (n)
		printf(" cpu_us_per_op=%.1f", (double)(cpu1 - cpu0) / (double)n);
	printf("\n");
	fflush(stdout);
}

/* Mean ms of reps calls of fn (each must answer 0). */
static double time_ms(int (*fn)(void), const char *what)
{
	int64_t t0 = hr_mono_us();
	for (int r = 0; r < A.reps; r++)
		if (fn() != 0) {
			fprintf(stderr, "scrape: %s failed\n", what);
			exit(1);
		}
	return (double)(hr_mono_us() - t0) / 1000.0 / A.reps;
}

static int scan_once(void)
{
	int64_t c[MSG__COUNT];
	return st->ops->message_counts(st, NULL, c);
}

static int gauges_once(void)
{
	int64_t c[MSG__COUNT];
	return st->ops->message_gauges(st, c);
}

static int render_once(void)
{
	char *out;
	size_t len;
	int rc = metrics_render(st, &out, &len);
	if (rc == 0)
		free(out);
	return rc;
}

/* The --scrape phase (see the header). */
static int scrape_phase(void)
{
	enum { CHUNK = 1000 };
	struct message *m = calloc(CHUNK, sizeof *m);
	if (!m)
		return 1;
	int64_t t0 = hr_mono_us();
	for (long done = 0; done < A.scrape; done += CHUNK) {
		int n = A.scrape - done < CHUNK ? (int)(A.scrape - done) : CHUNK;
		for (int i = 0; i < n; i++)
			mk(&m[i], "bench-scrape");
		if (st->ops->message_insert(st, m, (size_t)n, NULL, NULL, NULL) != 0)
			return 1;
	}
	free(m);
	double fill = (double)(hr_mono_us() - t0) / 1e6;
	int64_t scan[MSG__COUNT], kept[MSG__COUNT];
	/* Once each first: both read warm pages, as a scrape every 15 s would. */
	if (st->ops->message_counts(st, NULL, scan) || st->ops->message_gauges(st, kept))
		return 1;
	for (int i = 0; i < MSG__COUNT; i++)
		if (scan[i] != kept[i]) {
			fprintf(stderr, "scrape: status %d: kept %lld, scan %lld\n", i,
			        (long long)kept[i], (long long)scan[i]);
			return 1;
		}
	double scan_ms = time_ms(scan_once, "message_counts");
	double kept_ms = time_ms(gauges_once, "message_gauges");
	double render_ms = time_ms(render_once, "metrics_render");
	printf("store_bench backend=%s phase=scrape messages=%ld fill_seconds=%.1f reps=%d"
	       " scan_ms=%.3f gauges_ms=%.3f render_ms=%.3f\n",
	       A.backend, A.scrape, fill, A.reps, scan_ms, kept_ms, render_ms);
	return 0;
}

int main(int argc, char **argv)
{
	A = (struct args){.backend = "sqlite",
	                  .dir = "/tmp",
	                  .seconds = 5,
	                  .threads = 16,
	                  .accounts = 4,
	                  .batch = 50,
	                  .reps = 5};
	static const struct option lo[] = {
	    {"backend", 1, 0, 'b'},  {"seconds", 1, 0, 's'}, {"threads", 1, 0, 't'},
	    {"accounts", 1, 0, 'a'}, {"batch", 1, 0, 'n'},   {"dir", 1, 0, 'd'},
	    {"scrape", 1, 0, 'S'},   {"reps", 1, 0, 'r'},    {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			A.backend = optarg;
			break;
		case 's':
			A.seconds = atof(optarg);
			break;
		case 't':
			A.threads = atoi(optarg);
			break;
		case 'a':
			A.accounts = atoi(optarg);
			break;
		case 'n':
			A.batch = atoi(optarg);
			break;
		case 'd':
			A.dir = optarg;
			break;
		case 'S':
			A.scrape = atol(optarg);
			break;
		case 'r':
			A.reps = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (A.seconds <= 0 || A.threads < 1 || A.accounts < 1 || A.batch < 1 || A.scrape < 0 ||
	    A.reps < 1)
		return 2;
	hr_log_set_level(HR_LOG_WARN);
	const struct store_ops *ops_ = store_backend(A.backend);
	if (!ops_) {
		fprintf(stderr, "unknown backend %s\n", A.backend);
		return 2;
	}
	char dsn[400], dir[300] = "";
	struct pgtest pg;
	bool postgres = strcmp(A.backend, "postgres") == 0;
	if (postgres) {
		if (pgtest_start(&pg) != 0) {
			fprintf(stderr, "pgtest: %s\n", pg.err);
			return 1;
		}
		pgtest_conninfo(&pg, NULL, dsn, sizeof dsn);
	} else {
		snprintf(dir, sizeof dir, "%s/store_bench_XXXXXX", A.dir);
		if (!mkdtemp(dir))
			return 1;
		snprintf(dsn, sizeof dsn, "%s/herald.db", dir);
	}
	struct hr_err err = {0};
	if (ops_->open(dsn, NULL, &st, &err) != 0) {
		fprintf(stderr, "open: %s\n", err.msg);
		return 1;
	}

	if (A.scrape) {
		int rc = scrape_phase();
		if (rc)
			return rc;
		goto done;
	}
	run_phase(insert_thread, 1, NULL, 0);
	report("insert-1", A.seconds, false);
	double secs = run_phase(insert_thread, A.threads, NULL, 0);
	report("insert-N", secs, false);

	/* Rows for the claim phase: enough for every claimer to stay busy. */
	struct claimer *cl = calloc((size_t)A.threads, sizeof *cl);
	enum { CHUNK = 1000 };
	struct message *m = calloc(CHUNK, sizeof *m);
	if (!cl || !m)
		return 1;
	long per_account = 200000 / A.accounts;
	int64_t t0 = hr_mono_us();
	for (int a = 0; a < A.accounts; a++) {
		char acc[32];
		snprintf(acc, sizeof acc, "bench-%d", a);
		for (long done = 0; done < per_account; done += CHUNK) {
			for (int i = 0; i < CHUNK; i++)
				mk(&m[i], acc);
			if (st->ops->message_insert(st, m, CHUNK, NULL, NULL, NULL) != 0)
				return 1;
		}
	}
	free(m);
	secs = (double)(hr_mono_us() - t0) / 1e6;
	long total = per_account / CHUNK * CHUNK * A.accounts;
	printf("store_bench backend=%s phase=batch-%d ops=%ld seconds=%.2f ops_per_s=%.0f"
	       " messages_per_s=%.0f\n",
	       A.backend, CHUNK, total / CHUNK, secs, (double)(total / CHUNK) / secs,
	       (double)total / secs);
	for (int i = 0; i < A.threads; i++)
		snprintf(cl[i].account, sizeof cl[i].account, "bench-%d", i % A.accounts);
	secs = run_phase(claim_thread, A.threads, cl, sizeof *cl);
	report("claim", secs, true);
	free(cl);

	/* The delivery path, on rows of its own. */
	if (!(m = calloc(CHUNK, sizeof *m)))
		return 1;
	for (long done = 0; done < 100000; done += CHUNK) {
		for (int i = 0; i < CHUNK; i++)
			mk(&m[i], "bench-dl");
		if (st->ops->message_insert(st, m, CHUNK, NULL, NULL, NULL) != 0)
			return 1;
	}
	free(m);
	atomic_store(&rec_us, 0);
	atomic_store(&apply_us, 0);
	secs = run_phase(deliver_thread, 1, NULL, 0);
	long dl = atomic_load(&msgs);
	printf("store_bench backend=%s phase=deliver ops=%ld seconds=%.2f messages_per_s=%.0f"
	       " record_us_per_message=%.1f apply_us_per_message=%.1f\n",
	       A.backend, atomic_load(&ops), secs, (double)dl / secs,
	       dl ? (double)atomic_load(&rec_us) / (double)dl : 0.0,
	       dl ? (double)atomic_load(&apply_us) / (double)dl : 0.0);

done:
	ops_->close(st);
	if (postgres) {
		pgtest_stop(&pg);
	} else {
		char p[400];
		static const char *const sfx[] = {"", "-wal", "-shm"};
		for (int i = 0; i < 3; i++) {
			snprintf(p, sizeof p, "%s%s", dsn, sfx[i]);
			unlink(p);
		}
		rmdir(dir);
	}
	return 0;
}
