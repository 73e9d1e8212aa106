/*
 * test_faults_crash.c - `kill -9` of `herald serve` at random moments
 * (seeded: HERALD_FAULTS_SEED, printed), again and again while a client
 * keeps submitting and Herald keeps sending a mix of at_least_once and
 * at_most_once messages on all four channels; the server is restarted on
 * the same store each time. Then:
 *  - 0 lost: every message the API accepted (answered 202, or replayed for
 *    the client's retry under the same Idempotency-Key) ends where it
 *    should (read on WhatsApp and RCS, delivered by SMS, sent on Telegram)
 *    or `unknown`;
 *  - every message Herald reports sent reached the provider;
 *  - an at_most_once message reached the provider at most once (RCS: one
 *    request for its messageId at most);
 *  - every extra send of an at_least_once message is marked in its audit
 *    trail (`possible_duplicate`), at least as many marks as extra sends.
 *
 * Size: HERALD_FAULTS_CRASH_N messages (20,000) and HERALD_FAULTS_CRASH_KILLS
 * kills (12); the client spreads its batches over the first part of the
 * kill period, so kills land while messages are accepted, sent, and their
 * receipts applied.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "faults_common.h"
#include "harness.h"

#define PER 200 /* messages per batch request */

struct msg {
	char id[32];
	char to[24];
	enum fc_channel ch;
	bool amo; /* at_most_once */
};

static struct world W;
static char sa_dir[64];
static struct msg *msgs;
static int total;
static atomic_int accepted_batches;
static atomic_bool feeder_failed;
static char feeder_error[512];
static double feed_period_s;
static unsigned long seed;
static atomic_long retried_batches;

/* Message i's channel and policy: channels in turn, and within each channel
 * the two policies in turn. */
static void plan(int i, struct msg *m)
{
	m->ch = (enum fc_channel)(i % FC_NCHANNELS);
	m->amo = (i / FC_NCHANNELS) % 2 == 1;
	fc_recipient(m->ch, i, m->to, sizeof m->to);
}

static char *batch_body(int b)
{
	json_t *arr = json_array();
	for (int i = b * PER; i < (b + 1) * PER && i < total; i++) {
		char text[64];
		snprintf(text, sizeof text, "crash run message %d", i);
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:s, s:s}", "channel", fc_channel_name[msgs[i].ch],
		                   "to", msgs[i].to, "text", text, "delivery_policy",
		                   msgs[i].amo ? "at_most_once" : "at_least_once"));
	}
	json_t *req = json_pack("{s:o}", "messages", arr);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return js;
}

static void feeder_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(feeder_error, sizeof feeder_error, fmt, ap);
	va_end(ap);
	atomic_store(&feeder_failed, true);
}

/*
 * The client: batches at an even pace, each under its own Idempotency-Key.
 * A batch that got no answer (the server died under it) is sent again, the
 * same bytes under the same key, until answered: the store either has it
 * (the replay returns the same ids) or not (it is accepted now). It never
 * asserts (cmocka's asserts belong to the main thread): it records why it
 * stopped.
 */
static void *feeder(void *arg)
{
	(void)arg;
	int nb = (total + PER - 1) / PER;
	double t0 = fc_now();
	char url[128];
	snprintf(url, sizeof url, "%s/v1/messages:batch", W.api);
	for (int b = 0; b < nb; b++) {
		double due = t0 + feed_period_s * b / nb;
		while (fc_now() < due)
			usleep(5000);
		char *body = batch_body(b);
		char key[96];
		snprintf(key, sizeof key, "Idempotency-Key: crash-%lu-%d", seed, b);
		const char *hdrs[] = {key, NULL};
		bool first = true;
		double give_up = fc_now() + 60;
		for (;;) {
			struct resp r = http_t("POST", url, W.key, body, hdrs, 15000);
			if (r.status == 202) {
				json_t *arr = json_object_get(r.json, "messages");
				if (json_array_size(arr) !=
				    (size_t)((b + 1) * PER <= total ? PER : total - b * PER)) {
					feeder_fail("batch %d: %zu ids in the answer", b,
					            json_array_size(arr));
					resp_free(&r);
					free(body);
					return NULL;
				}
				size_t i;
				json_t *m;
				json_array_foreach(arr, i, m)
				    snprintf(msgs[b * PER + (int)i].id, 32, "%s", fc_str(m, "id"));
				resp_free(&r);
				break;
			}
			/* No answer, or the server answered it is not ready (starting,
			 * recovering): the same request again. */
			if ((r.status != 0 && r.status != 503) || fc_now() > give_up) {
				feeder_fail("batch %d: %ld %s", b, r.status, r.body);
				resp_free(&r);
				free(body);
				return NULL;
			}
			resp_free(&r);
			if (first)
				atomic_fetch_add(&retried_batches, 1);
			first = false;
			usleep(50000);
		}
		free(body);
		atomic_fetch_add(&accepted_batches, 1);
	}
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether every message is settled; *unsettled says how many are not. */
static bool all_settled(json_t *all, long *unsettled)
{
	long n = 0;
	for (int i = 0; i < total; i++) {
		json_t *m = json_object_get(all, msgs[i].id);
		const char *st = fc_str(m, "status");
		if (strcmp(st, fc_final_ok[msgs[i].ch]) != 0 && strcmp(st, "unknown") != 0)
			n++;
	}
	*unsettled = n;
	return n == 0;
}

static void test_kill9_storm(void **state)
{
	(void)state;
	total = (int)fc_env_long("HERALD_FAULTS_CRASH_N", 20000);
	int kills = (int)fc_env_long("HERALD_FAULTS_CRASH_KILLS", 12);
	seed = fc_seed();
	srand((unsigned)seed);
	print_message("seed %lu (HERALD_FAULTS_SEED to repeat), %d messages, %d kills\n", seed,
	              total, kills);
	msgs = calloc((size_t)total, sizeof *msgs);
	assert_non_null(msgs);
	for (int i = 0; i < total; i++)
		plan(i, &msgs[i]);

	fc_tmpdir(sa_dir, sizeof sa_dir);
	char accounts[2048];
	fc_accounts_yaml(sa_dir, accounts, sizeof accounts);
	/* Receipts come fast and WhatsApp's in POSTs of 20 statuses, as Meta
	 * batches them; no webhook is ever given up on (the server is down a
	 * lot). Short leases: a send in flight at a kill is found again 5 s
	 * after the restart. A generous provider timeout: a send that times out
	 * on a loaded machine is an unknown outcome this test is not about. */
	world_init2(&W, accounts, NULL,
	            "  sms:\n    seed: 11\n    sent_delay_ms: 5\n    delivered_delay_ms: 20\n"
	            "    webhook_retry_s: 3600\n"
	            "  rcs:\n    seed: 12\n    delivered_delay_ms: 20\n    read_delay_ms: 40\n"
	            "    webhook_retry_s: 3600\n"
	            "  telegram:\n    seed: 13\n    webhook_retry_s: 3600\n",
	            "    webhook_batch: 20\n",
	            "dispatch:\n  lease_seconds: 5\n  http_timeout_ms: 3000\n  max_in_flight: 32\n"
	            "  backoff_base_ms: 100\n  backoff_max_ms: 500\n  max_attempts: 20\n");
	fc_write_service_account(&W, sa_dir);
	world_start_sim(&W);
	world_start_serve(&W);

	/* The client submits over about the first 60% of the kill period. */
	feed_period_s = 1.2 * kills * 0.6;
	double t0 = fc_now();
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, feeder, NULL), 0);
	double down_total = 0;
	for (int k = 0; k < kills; k++) {
		/* 0.2 to 2.0 s after the server came up: during start-up recovery,
		 * a burst of accepts, sends or receipts, whatever is going on. */
		useconds_t wait = (useconds_t)(200000 + rand() % 1800000);
		usleep(wait);
		if (atomic_load(&feeder_failed))
			break;
		world_kill9_serve(&W);
		double d0 = fc_now();
		world_start_serve(&W);
		down_total += fc_now() - d0;
		print_message("kill %d at %.1f s (%.2f s after the restart), %d of %d batches "
		              "accepted\n",
		              k + 1, d0 - t0, wait / 1e6, atomic_load(&accepted_batches),
		              (total + PER - 1) / PER);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	if (atomic_load(&feeder_failed))
		fail_msg("client: %s", feeder_error);
	double t_fed = fc_now();

	/* Everything settles: receipts included. */
	json_t *all = NULL;
	long unsettled = total;
	double deadline = fc_now() + 180;
	double next_note = fc_now() + 15;
	for (;;) {
		json_decref(all);
		all = fc_list_all(&W);
		if (all_settled(all, &unsettled) || fc_now() > deadline)
			break;
		if (fc_now() > next_note) {
			print_message("%ld messages not settled yet\n", unsettled);
			next_note += 15;
		}
		/* The whole listing is 20 pages: not every second on a busy
		 * machine. */
		sleep(3);
	}
	double t_settled = fc_now();

	/* Every accepted id is distinct and stored. */
	const char **ids = calloc((size_t)total, sizeof *ids);
	assert_non_null(ids);
	for (int i = 0; i < total; i++)
		ids[i] = msgs[i].id;
	qsort(ids, (size_t)total, sizeof *ids, cmp_str);
	for (int i = 1; i < total; i++)
		assert_true(strcmp(ids[i - 1], ids[i]) != 0);
	free(ids);
	assert_int_equal(json_object_size(all), total);

	json_t *counts = fc_sim_counts(&W);
	long lost = 0, unknown[2] = {0, 0}, dups = 0, dup_msgs = 0, amo_multi = 0, unmarked = 0;
	long sent_not_received = 0, rcs_conflicts = 0;
	for (int i = 0; i < total; i++) {
		const struct msg *m = &msgs[i];
		json_t *j = json_object_get(all, m->id);
		const char *st = fc_str(j, "status");
		bool unk = strcmp(st, "unknown") == 0;
		if (!j || (!unk && strcmp(st, fc_final_ok[m->ch]) != 0)) {
			if (lost < 5)
				print_message("lost? %s (%s, %s): %s\n", m->id,
				              fc_channel_name[m->ch],
				              m->amo ? "at_most_once" : "at_least_once", st);
			lost++;
			continue;
		}
		assert_string_equal(fc_str(j, "delivery_policy"),
		                    m->amo ? "at_most_once" : "at_least_once");
		if (unk)
			unknown[m->amo]++;
		long requests = 0;
		long n = fc_count(counts, m->ch, m->to, &requests);
		if (!unk && n < 1) {
			print_message("%s is %s, the provider never got it\n", m->id, st);
			sent_not_received++;
		}
		/* RCS: RBM takes a messageId once (409 afterwards); Herald's extra
		 * requests are what the policy is about. */
		long sends = m->ch == FC_RCS ? requests : n;
		if (m->ch == FC_RCS && requests > 1)
			rcs_conflicts += requests - 1;
		if (sends <= 1)
			continue;
		if (m->amo) {
			print_message("at_most_once %s (%s) reached the provider %ld times\n",
			              m->id, fc_channel_name[m->ch], sends);
			amo_multi++;
			continue;
		}
		if (m->ch != FC_RCS) {
			dups += sends - 1;
			dup_msgs++;
		}
		json_t *full = fc_message(&W, m->id);
		int marks = fc_dup_marks(full);
		if (marks < sends - 1) {
			char *ev = json_dumps(json_object_get(full, "events"), JSON_COMPACT);
			print_message("%s (%s) sent %ld times, %d marked: %s\n", m->id,
			              fc_channel_name[m->ch], sends, marks, ev);
			free(ev);
			unmarked++;
		}
		json_decref(full);
	}
	print_message(
	    "runs 1, kills %d (%.1f s restarting), messages %d (%ld batches retried after "
	    "no answer), lost %ld, unknown %ld at_least_once + %ld at_most_once, "
	    "duplicates %ld extra sends the provider took, of %ld at_least_once messages, all "
	    "marked: %s (and %ld RCS resends answered 409 ALREADY_EXISTS), at_most_once sent "
	    "twice %ld; fed in %.1f s, settled %.1f s later\n",
	    kills, down_total, total, atomic_load(&retried_batches), lost, unknown[0], unknown[1],
	    dups, dup_msgs, unmarked ? "no" : "yes", rcs_conflicts, amo_multi, t_fed - t0,
	    t_settled - t_fed);
	assert_int_equal(unsettled, 0);
	assert_int_equal(lost, 0);
	assert_int_equal(sent_not_received, 0);
	assert_int_equal(amo_multi, 0);
	assert_int_equal(unmarked, 0);
	json_decref(counts);
	json_decref(all);
	world_free(&W);
	fc_rmdir(sa_dir);
	free(msgs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill9_storm)};
	return cmocka_run_group_tests_name("faults_crash", tests, NULL, NULL);
}
