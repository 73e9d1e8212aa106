/*
 * test_faults_storm.c - a storm of provider webhooks, 20% of them duplicates
 * (the same bytes and headers again, as a provider's redelivery), all
 * shuffled together and POSTed by several threads, on all four channels:
 *  - WhatsApp statuses (sent, delivered, read, or failed 131026), signed
 *    X-Hub-Signature-256 with the app secret;
 *  - Twilio status callbacks (sent, delivered, or undelivered 30003 /
 *    failed 30008), form-encoded, signed X-Twilio-Signature over the URL and
 *    the sorted parameters, each with its I-Twilio-Idempotency-Token;
 *  - RBM events (DELIVERED, READ, or TTL_EXPIRATION_REVOKED) as Pub/Sub
 *    pushes signed X-Goog-Signature over the event;
 *  - Telegram, which has no delivery receipts: a reply update to each sent
 *    message (X-Telegram-Bot-Api-Secret-Token), its update_id repeated by
 *    the duplicates.
 * Every message was really sent through `herald sim` (the provider ids are
 * the simulator's; its own receipts are held back a day so that only the
 * storm speaks). Each message's fate is drawn (seeded) before the storm;
 * afterwards every message's status is that fate, its audit trail shows no
 * applied status lower than one applied before it (0 downgrades), and each
 * Telegram message has exactly one reply.
 *
 * HERALD_FAULTS_STORM_N webhooks (CI: 10,000 under ASan; 100,000 were run
 * by hand on the release build, README "Guarantees"),
 * HERALD_FAULTS_STORM_THREADS posters (4).
 */
#include <curl/curl.h>
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

#include "core/crypto.h"
#include "faults_common.h"
#include "harness.h"

#define BATCH 1000

/* A status's place in the chain; a final failure outranks them all. */
enum { R_SENT = 1, R_DELIVERED = 2, R_READ = 3, R_FAILED = 4 };

struct msg {
	char id[32];
	char to[24];
	char pid[128]; /* the provider's id, from Herald */
	enum fc_channel ch;
	const char *want; /* the status the storm must leave */
	int nev;          /* unique webhooks planned for it */
};

struct post {
	int msg;
	char url[160];
	char *body;
	char *hdr[3]; /* heap header lines, NULL-terminated */
};

static struct world W;
static char sa_dir[64];
static struct msg *msgs;
static int nmsgs;
static struct post *posts; /* unique webhooks */
static int nposts;
static int *order; /* the storm: indices into posts, duplicates included */
static int norder;
static atomic_int next_post;
static atomic_long bad_status, retried_503;
static char bad_body[256];

static unsigned long rng_state;
static unsigned long rnd(void)
{
	/* xorshift64*: a reproducible stream from the printed seed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned long)(rng_state * 2685821657736338717ULL >> 11);
}

static void post_add(int m, const char *url, char *body, const char *h1, const char *h2)
{
	struct post *p = &posts[nposts++];
	p->msg = m;
	snprintf(p->url, sizeof p->url, "%s", url);
	p->body = body;
	p->hdr[0] = h1 ? strdup(h1) : NULL;
	p->hdr[1] = h2 ? strdup(h2) : NULL;
	p->hdr[2] = NULL;
	msgs[m].nev++;
}

/* ---- the providers' webhooks ---- */

static void wa_status(int m, const char *status, long ts)
{
	const struct msg *x = &msgs[m];
	json_t *st = json_pack("{s:s, s:s, s:s, s:s}", "id", x->pid, "status", status, "timestamp",
	                       "0", "recipient_id", x->to);
	char t[24];
	snprintf(t, sizeof t, "%ld", ts);
	json_object_set_new(st, "timestamp", json_string(t));
	if (strcmp(status, "failed") == 0)
		json_object_set_new(
		    st, "errors",
		    json_pack("[{s:i, s:s}]", "code", 131026, "title", "Message undeliverable"));
	json_t *body =
	    json_pack("{s:s, s:[{s:s, s:[{s:s, s:{s:s, s:{s:s, s:s}, s:[o]}}]}]}", "object",
	              "whatsapp_business_account", "entry", "id", "102290129340398", "changes",
	              "field", "messages", "value", "messaging_product", "whatsapp", "metadata",
	              "display_phone_number", "15550783881", "phone_number_id", "106540352242922",
	              "statuses", st);
	char *js = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	char hex[65], sig[100], url[160];
	hr_hmac_sha256_hex(FC_WA_APP_SECRET, strlen(FC_WA_APP_SECRET), js, strlen(js), hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	snprintf(url, sizeof url, "%s/webhooks/whatsapp/acme-wa", W.api);
	post_add(m, url, js, sig, "Content-Type: application/json");
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A Twilio status callback: the form, and its signature over the URL and
 * every name+value in name order. */
static void sms_status(int m, const char *status, const char *error_code, int seq)
{
	const struct msg *x = &msgs[m];
	const char *kv[][2] = {
	    {"MessageSid", x->pid},
	    {"SmsSid", x->pid},
	    {"MessageStatus", status},
	    {"SmsStatus", status},
	    {"To", x->to},
	    {"From", "+15005550006"},
	    {"AccountSid", FC_SMS_SID},
	    {"ApiVersion", "2010-04-01"},
	    {"ErrorCode", error_code},
	};
	int n = error_code ? 9 : 8;
	char url[160];
	snprintf(url, sizeof url, "%s/webhooks/sms/acme-sms", W.api);
	char *pairs[9];
	char *body = calloc(1, 2048);
	assert_non_null(body);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(kv[i][0]) + strlen(kv[i][1]) + 1;
		pairs[i] = malloc(l);
		snprintf(pairs[i], l, "%s%s", kv[i][0], kv[i][1]);
		char *v = curl_easy_escape(NULL, kv[i][1], 0);
		assert_non_null(v);
		snprintf(body + strlen(body), 2048 - strlen(body), "%s%s=%s", i ? "&" : "",
		         kv[i][0], v);
		curl_free(v);
	}
	qsort(pairs, (size_t)n, sizeof *pairs, by_name);
	char signed_s[2048];
	snprintf(signed_s, sizeof signed_s, "%s", url);
	for (int i = 0; i < n; i++) {
		snprintf(signed_s + strlen(signed_s), sizeof signed_s - strlen(signed_s), "%s",
		         pairs[i]);
		free(pairs[i]);
	}
	char sig[29], h1[80], h2[100];
	hr_hmac_sha1_b64(FC_SMS_TOKEN, strlen(FC_SMS_TOKEN), signed_s, strlen(signed_s), sig);
	snprintf(h1, sizeof h1, "X-Twilio-Signature: %s", sig);
	snprintf(h2, sizeof h2, "I-Twilio-Idempotency-Token: storm-%d-%d", m, seq);
	post_add(m, url, body, h1, h2);
}

static int rcs_pubsub_seq;

static void rcs_event(int m, const char *type, const char *when)
{
	const struct msg *x = &msgs[m];
	char eid[48];
	snprintf(eid, sizeof eid, "MxE%08d", ++rcs_pubsub_seq);
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "senderPhoneNumber", x->to,
	                       "eventType", type, "eventId", eid, "messageId", x->pid, "sendTime",
	                       when, "agentId", "herald_demo_agent");
	char *data = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	char *b64 = hr_b64_encode(data, strlen(data));
	char sig[89], h1[120], ps_id[24], url[160];
	hr_hmac_sha512_b64(FC_RCS_CLIENT_TOKEN, strlen(FC_RCS_CLIENT_TOKEN), data, strlen(data),
	                   sig);
	free(data);
	snprintf(ps_id, sizeof ps_id, "%d", rcs_pubsub_seq);
	json_t *env =
	    json_pack("{s:{s:s, s:s, s:s}, s:s}", "message", "data", b64, "messageId", ps_id,
	              "publishTime", when, "subscription",
	              "projects/rbm-herald_demo_agent/subscriptions/rbm-agent-subscription");
	free(b64);
	char *js = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	snprintf(h1, sizeof h1, "X-Goog-Signature: %s", sig);
	snprintf(url, sizeof url, "%s/webhooks/rcs/acme-rcs", W.api);
	post_add(m, url, js, h1, "Content-Type: application/json");
}

static void tg_reply(int m, long update_id)
{
	const struct msg *x = &msgs[m];
	const char *colon = strchr(x->pid, ':');
	assert_non_null(colon);
	long long chat = strtoll(x->pid, NULL, 10), mid = strtoll(colon + 1, NULL, 10);
	char *body = malloc(512);
	assert_non_null(body);
	snprintf(body, 512,
	         "{\"update_id\":%ld,\"message\":{\"message_id\":%lld,\"from\":{\"id\":%lld,"
	         "\"is_bot\":false,\"first_name\":\"Storm\"},\"chat\":{\"id\":%lld,\"type\":"
	         "\"private\"},\"date\":1767225600,\"text\":\"got it\",\"reply_to_message\":{"
	         "\"message_id\":%lld,\"chat\":{\"id\":%lld,\"type\":\"private\"},\"date\":1}}}",
	         update_id, mid + 1000000, chat, chat, mid, chat);
	char url[160];
	snprintf(url, sizeof url, "%s/webhooks/telegram/acme-tg", W.api);
	post_add(m, url, body, "X-Telegram-Bot-Api-Secret-Token: " FC_TG_SECRET,
	         "Content-Type: application/json");
}

/* Draws message m's fate and plans its webhooks. */
static void plan(int m)
{
	struct msg *x = &msgs[m];
	unsigned long r = rnd() % 100;
	long ts = 1767225600 + m % 1000;
	switch (x->ch) {
	case FC_WA:
		if (r < 15) {
			wa_status(m, "sent", ts);
			wa_status(m, "failed", ts + 1);
			x->want = "failed";
		} else {
			static const char *const chain[] = {"sent", "delivered", "read"};
			int k = 1 + (int)(r % 3);
			for (int i = 0; i < k; i++)
				wa_status(m, chain[i], ts + i);
			x->want = chain[k - 1];
		}
		break;
	case FC_SMS:
		sms_status(m, "sent", NULL, 0);
		if (r < 10) {
			sms_status(m, "undelivered", "30003", 1);
			x->want = "undelivered";
		} else if (r < 20) {
			sms_status(m, "failed", "30008", 1);
			x->want = "failed";
		} else if (r < 40) {
			x->want = "sent";
		} else {
			sms_status(m, "delivered", NULL, 1);
			x->want = "delivered";
		}
		break;
	case FC_RCS:
		if (r < 10) {
			rcs_event(m, "TTL_EXPIRATION_REVOKED", "2026-01-01T00:00:00.000000Z");
			x->want = "undelivered";
		} else {
			rcs_event(m, "DELIVERED", "2026-01-01T00:00:01.000000Z");
			x->want = "delivered";
			if (r >= 40) {
				rcs_event(m, "READ", "2026-01-01T00:00:02.000000Z");
				x->want = "read";
			}
		}
		break;
	default:
		tg_reply(m, 500000000L + m);
		x->want = "sent";
		break;
	}
}

/* ---- the storm ---- */

static size_t sink(char *p, size_t s, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return s * n;
}

/* One poster: a kept-alive connection, the next webhook of the storm until
 * none is left. A 503 (the store says "later") is retried, as providers do;
 * anything else but 200 is counted as bad. */
static void *poster(void *arg)
{
	(void)arg;
	CURL *c = curl_easy_init();
	if (!c) {
		atomic_fetch_add(&bad_status, 1);
		return NULL;
	}
	for (;;) {
		int i = atomic_fetch_add(&next_post, 1);
		if (i >= norder)
			break;
		const struct post *p = &posts[order[i]];
		struct curl_slist *h = NULL;
		for (int k = 0; p->hdr[k]; k++)
			h = curl_slist_append(h, p->hdr[k]);
		if (strstr(p->url, "/sms/"))
			h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
		h = curl_slist_append(h, "Expect:");
		long status = 0;
		for (int attempt = 0; attempt < 50; attempt++) {
			CURLcode cc = CURLE_OK;
			if (curl_easy_setopt(c, CURLOPT_URL, p->url) != CURLE_OK ||
			    curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->body) != CURLE_OK ||
			    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) != CURLE_OK ||
			    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink) != CURLE_OK ||
			    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L) != CURLE_OK ||
			    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK)
				cc = CURLE_FAILED_INIT;
			if (cc == CURLE_OK)
				cc = curl_easy_perform(c);
			status = 0;
			if (cc == CURLE_OK)
				curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
			if (status != 503)
				break;
			atomic_fetch_add(&retried_503, 1);
			usleep(100000);
		}
		curl_slist_free_all(h);
		if (status != 200 && atomic_fetch_add(&bad_status, 1) == 0)
			snprintf(bad_body, sizeof bad_body, "%ld for %s %.120s", status, p->url,
			         p->body);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/* ---- checks ---- */

static int rank(const char *status)
{
	if (!strcmp(status, "sent"))
		return R_SENT;
	if (!strcmp(status, "delivered"))
		return R_DELIVERED;
	if (!strcmp(status, "read"))
		return R_READ;
	if (!strcmp(status, "failed") || !strcmp(status, "undelivered"))
		return R_FAILED;
	return 0;
}

static bool all_as_planned(struct world *w, void *arg)
{
	long *wrong = arg;
	json_t *all = fc_list_all(w);
	long n = 0;
	for (int i = 0; i < nmsgs; i++)
		n += strcmp(fc_str(json_object_get(all, msgs[i].id), "status"), msgs[i].want) != 0;
	json_decref(all);
	*wrong = n;
	return n == 0;
}

static bool all_sent(struct world *w, void *arg)
{
	(void)arg;
	json_t *all = fc_list_all(w);
	bool ok = true;
	for (int i = 0; i < nmsgs && ok; i++) {
		json_t *m = json_object_get(all, msgs[i].id);
		ok = strcmp(fc_str(m, "status"), "sent") == 0;
		if (ok)
			snprintf(msgs[i].pid, sizeof msgs[i].pid, "%s", fc_str(m, "provider_id"));
	}
	json_decref(all);
	return ok;
}

static void test_webhook_storm(void **state)
{
	(void)state;
	long total = fc_env_long("HERALD_FAULTS_STORM_N", 10000);
	int nthreads = (int)fc_env_long("HERALD_FAULTS_STORM_THREADS", 4);
	unsigned long seed = fc_seed();
	rng_state = seed * 2654435761UL + 1;
	long unique = total * 4 / 5;
	print_message("seed %lu, %ld webhooks (%ld unique), %d threads\n", seed, total, unique,
	              nthreads);

	fc_tmpdir(sa_dir, sizeof sa_dir);
	char accounts[2048];
	fc_accounts_yaml(sa_dir, accounts, sizeof accounts);
	/* The simulator's own receipts wait a day: only the storm speaks. */
	world_init2(&W, accounts, NULL,
	            "  sms:\n    seed: 31\n    queued_delay_ms: 86400000\n"
	            "    sent_delay_ms: 86400000\n    delivered_delay_ms: 86400000\n"
	            "  rcs:\n    seed: 32\n    delivered_delay_ms: 86400000\n"
	            "    read_delay_ms: 86400000\n"
	            "  telegram:\n    seed: 33\n",
	            NULL, "dispatch:\n  max_in_flight: 64\n");
	fc_write_service_account(&W, sa_dir);
	world_start_sim(&W);
	fc_sim_config(&W, "",
	              "{\"sent_delay_ms\": 86400000, \"delivered_delay_ms\": 86400000,"
	              " \"read_delay_ms\": 86400000}");
	world_start_serve(&W);

	/* Messages until their planned webhooks number `unique`: planned as
	 * they are sent, after the send (the provider ids are needed). The
	 * number of messages is fixed first from the mean webhooks per message
	 * (about 1.6), then the plan fills exactly. */
	int cap = (int)(unique / 1.5) + 16;
	msgs = calloc((size_t)cap, sizeof *msgs);
	posts = calloc((size_t)unique + 8, sizeof *posts);
	assert_non_null(msgs);
	assert_non_null(posts);
	nmsgs = (int)(unique / 1.55);
	if (nmsgs < 8)
		nmsgs = 8;
	double t0 = fc_now();
	for (int b = 0; b * BATCH < nmsgs; b++) {
		json_t *arr = json_array();
		int end = (b + 1) * BATCH < nmsgs ? (b + 1) * BATCH : nmsgs;
		for (int i = b * BATCH; i < end; i++) {
			msgs[i].ch = (enum fc_channel)(i % FC_NCHANNELS);
			fc_recipient(msgs[i].ch, i, msgs[i].to, sizeof msgs[i].to);
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "channel",
			                                     fc_channel_name[msgs[i].ch], "to",
			                                     msgs[i].to, "text", "storm"));
		}
		json_t *req = json_pack("{s:o}", "messages", arr);
		char *js = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		struct resp r = api_post(&W, "/v1/messages:batch", js);
		free(js);
		assert_int_equal(r.status, 202);
		for (int i = b * BATCH; i < end; i++)
			snprintf(msgs[i].id, 32, "%s",
			         fc_str(json_array_get(json_object_get(r.json, "messages"),
			                               (size_t)(i - b * BATCH)),
			                "id"));
		resp_free(&r);
	}
	assert_true(wait_until(all_sent, &W, NULL, 300));
	double t_sent = fc_now();
	for (int i = 0; i < nmsgs; i++) {
		plan(i);
		if (nposts >= unique)
			break;
	}
	for (int i = 0; i < nmsgs; i++)
		if (msgs[i].nev == 0)
			msgs[i].want = "sent"; /* no webhook planned: stays as sent */

	/* The storm: every unique webhook once, plus duplicates of randomly
	 * chosen ones up to the total, shuffled. */
	norder = (int)total;
	order = malloc((size_t)norder * sizeof *order);
	assert_non_null(order);
	for (int i = 0; i < nposts; i++)
		order[i] = i;
	for (int i = nposts; i < norder; i++)
		order[i] = (int)(rnd() % (unsigned long)nposts);
	for (int i = norder - 1; i > 0; i--) {
		int j = (int)(rnd() % (unsigned long)(i + 1));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	pthread_t th[16];
	if (nthreads > 16)
		nthreads = 16;
	double t_storm = fc_now();
	for (int i = 0; i < nthreads; i++)
		assert_int_equal(pthread_create(&th[i], NULL, poster, NULL), 0);
	for (int i = 0; i < nthreads; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	double t_posted = fc_now();
	if (atomic_load(&bad_status))
		fail_msg("%ld webhooks not answered 200; first: %s", atomic_load(&bad_status),
		         bad_body);

	long wrong = 0;
	bool ok = wait_until(all_as_planned, &W, &wrong, 120);
	double t_applied = fc_now();
	if (!ok) {
		json_t *all = fc_list_all(&W);
		int shown = 0;
		for (int i = 0; i < nmsgs && shown < 5; i++) {
			const char *st = fc_str(json_object_get(all, msgs[i].id), "status");
			if (strcmp(st, msgs[i].want) != 0) {
				print_message("%s (%s): %s, want %s\n", msgs[i].id,
				              fc_channel_name[msgs[i].ch], st, msgs[i].want);
				shown++;
			}
		}
		json_decref(all);
		fail_msg("%ld messages not in their planned state", wrong);
	}

	/* No downgrade in any audit trail; one reply per Telegram message. */
	long downgrades = 0, applied = 0, ignored = 0, replies_wrong = 0;
	for (int i = 0; i < nmsgs; i++) {
		json_t *m = fc_message(&W, msgs[i].id);
		int hi = 0, replies = 0;
		size_t k;
		json_t *e;
		json_array_foreach(json_object_get(m, "events"), k, e)
		{
			const char *type = fc_str(e, "type");
			if (!strcmp(type, "inbound"))
				replies++;
			if (strcmp(type, "webhook_status") != 0)
				continue;
			if (!json_is_true(json_object_get(e, "applied"))) {
				ignored++;
				continue;
			}
			applied++;
			int r = rank(fc_str(e, "status"));
			if (r <= hi) {
				char *ev = json_dumps(json_object_get(m, "events"), JSON_COMPACT);
				print_message("downgrade in %s: %s\n", msgs[i].id, ev);
				free(ev);
				downgrades++;
			}
			if (r > hi)
				hi = r;
		}
		if (msgs[i].ch == FC_TG && replies != (msgs[i].nev ? 1 : 0)) {
			print_message("%s: %d replies\n", msgs[i].id, replies);
			replies_wrong++;
		}
		json_decref(m);
	}
	print_message("storm: %d messages on 4 channels sent in %.1f s; %d webhooks (%ld unique + "
	              "%ld duplicates, shuffled) posted by %d threads in %.1f s (%.0f/s, %ld "
	              "answered 503 and retried), all applied %.1f s later; %ld statuses applied, "
	              "%ld ignored as duplicate or stale, %ld downgrades, every final state as "
	              "planned\n",
	              nmsgs, t_sent - t0, norder, (long)nposts, (long)(norder - nposts), nthreads,
	              t_posted - t_storm, norder / (t_posted - t_storm), atomic_load(&retried_503),
	              t_applied - t_posted, applied, ignored, downgrades);
	assert_int_equal(downgrades, 0);
	assert_int_equal(replies_wrong, 0);

	for (int i = 0; i < nposts; i++) {
		free(posts[i].body);
		for (int k = 0; posts[i].hdr[k]; k++)
			free(posts[i].hdr[k]);
	}
	free(posts);
	free(order);
	free(msgs);
	world_free(&W);
	fc_rmdir(sa_dir);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_webhook_storm)};
	int rc = cmocka_run_group_tests_name("faults_storm", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
