/*
 * faults_common.h - what the fault tests (test_faults_*.c) share: a world
 * with an account on each of the four channels the simulator serves
 * (WhatsApp, SMS via Twilio, Telegram, RCS via Google RBM), one recipient
 * per message so the simulator's per-recipient counts (GET /sim/counts) are
 * per-message counts, the whole message listing in one call, and audit
 * trail helpers. Header-only (static inline): each test is one executable
 * linked with harness.c alone.
 */
#ifndef HR_FAULTS_COMMON_H
#define HR_FAULTS_COMMON_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define FC_SMS_SID "AC0123456789abcdef0123456789abcdef"
#define FC_SMS_TOKEN "tw-token-123"
#define FC_TG_TOKEN "123456789:AAH-sim_token"
#define FC_TG_SECRET "tg-secret-1"
#define FC_RCS_CLIENT_TOKEN "rcs-client-token-1"
#define FC_WA_APP_SECRET "app-secret-123" /* harness.c's acme-wa */

enum fc_channel { FC_WA, FC_SMS, FC_TG, FC_RCS, FC_NCHANNELS };
static const char *const fc_channel_name[FC_NCHANNELS] = {"whatsapp", "sms", "telegram", "rcs"};

/* The status a message of each channel ends in when all went well: the
 * simulator sends read receipts on WhatsApp and RCS, SMS stops at
 * delivered, Telegram has no receipts at all. */
static const char *const fc_final_ok[FC_NCHANNELS] = {"read", "delivered", "sent", "read"};

/* Message i's recipient on channel ch: every message its own. */
static inline void fc_recipient(enum fc_channel ch, int i, char *out, size_t n)
{
	switch (ch) {
	case FC_WA:
		snprintf(out, n, "4479%08d", i);
		break;
	case FC_SMS:
		snprintf(out, n, "+15551%06d", i % 1000000);
		break;
	case FC_TG:
		snprintf(out, n, "%d", 7000000 + i);
		break;
	default:
		snprintf(out, n, "+15552%06d", i % 1000000);
		break;
	}
}

/* A directory of the test's own (the RCS service account lives there; the
 * config must name the file before the world's directory exists). */
static inline void fc_tmpdir(char *dir, size_t n)
{
	snprintf(dir, n, "/tmp/herald-faults-XXXXXX");
	assert_non_null(mkdtemp(dir));
}

static inline void fc_rmdir(const char *dir)
{
	if (getenv("HERALD_KEEP"))
		return;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* The accounts of the three other channels (YAML for world_init2), every
 * one with a rate limit far above what a test sends. */
static inline void fc_accounts_yaml(const char *sa_dir, char *out, size_t n)
{
	snprintf(out, n,
	         "      - id: acme-sms\n        channel: sms\n        base_url: @SIM@\n"
	         "        account_sid: " FC_SMS_SID "\n        auth_token: " FC_SMS_TOKEN "\n"
	         "        from: \"+15005550006\"\n        rate_limit: 5000\n"
	         "      - id: acme-tg\n        channel: telegram\n        base_url: @SIM@\n"
	         "        bot_token: \"" FC_TG_TOKEN "\"\n"
	         "        webhook_secret: " FC_TG_SECRET "\n        rate_limit: 5000\n"
	         "      - id: acme-rcs\n        channel: rcs\n        base_url: @SIM@\n"
	         "        agent_id: herald_demo_agent\n"
	         "        service_account: file:%s/sa.json\n"
	         "        client_token: " FC_RCS_CLIENT_TOKEN "\n        rate_limit: 5000\n",
	         sa_dir);
}

/* The RCS service account: a fresh RSA key and the simulator's token
 * endpoint (the simulator checks the JWT with the public half). */
static inline void fc_write_service_account(const struct world *w, const char *sa_dir)
{
	char path[128], token_uri[96];
	snprintf(path, sizeof path, "%s/sa.json", sa_dir);
	snprintf(token_uri, sizeof token_uri, "%s/token", w->sim);
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	BIO *b = BIO_new(BIO_s_mem());
	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	char *pem = NULL;
	long len = BIO_get_mem_data(b, &pem);
	char *key = strndup(pem, (size_t)len);
	assert_non_null(key);
	BIO_free(b);
	EVP_PKEY_free(k);
	json_t *sa = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id", "rbm-herald",
	    "private_key_id", "it-key-1", "private_key", key, "client_email",
	    "herald-it@rbm-herald.iam.gserviceaccount.com", "token_uri", token_uri);
	assert_non_null(sa);
	assert_int_equal(json_dump_file(sa, path, 0), 0);
	json_decref(sa);
	free(key);
}

/* POSTs knobs to the simulator's config endpoint of one channel ("" for
 * WhatsApp's /sim/config, "sms", "rcs", "telegram"). */
static inline void fc_sim_config(const struct world *w, const char *channel, const char *json)
{
	char url[160];
	if (*channel)
		snprintf(url, sizeof url, "%s/sim/%s/config", w->sim, channel);
	else
		snprintf(url, sizeof url, "%s/sim/config", w->sim);
	struct resp r = http("POST", url, NULL, json, NULL);
	if (r.status != 200)
		fail_msg("sim config %s %s: %ld %s", url, json, r.status, r.body);
	resp_free(&r);
}

/* GET /sim/counts (caller decrefs). */
static inline json_t *fc_sim_counts(const struct world *w)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/counts", w->sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	assert_non_null(j);
	return j;
}

/* How many times the provider accepted message sent to `to` on channel ch
 * (RCS: how many sends of its messageId reached it, accepted or answered
 * 409 ALREADY_EXISTS, in *requests; accepted at most once by RBM's rule). */
static inline long fc_count(json_t *counts, enum fc_channel ch, const char *to, long *requests)
{
	if (ch == FC_RCS) {
		json_t *c = json_object_get(json_object_get(counts, "rcs"), to);
		if (requests)
			*requests =
			    c ? (long)json_integer_value(json_object_get(c, "requests")) : 0;
		return c ? (long)json_integer_value(json_object_get(c, "accepted")) : 0;
	}
	json_t *v = json_object_get(json_object_get(counts, "sends"), to);
	long n = v ? (long)json_integer_value(v) : 0;
	if (requests)
		*requests = n;
	return n;
}

/* Every message of the demo tenant, by id (caller decrefs): {"<id>": {...}}. */
static inline json_t *fc_list_all(struct world *w)
{
	json_t *all = json_object();
	char cursor[64] = "";
	for (;;) {
		char path[160];
		snprintf(path, sizeof path, "/v1/messages?limit=1000%s%s",
		         cursor[0] ? "&cursor=" : "", cursor);
		struct resp r = api_get(w, path);
		if (r.status != 200)
			fail_msg("GET %s: %ld %s", path, r.status, r.body);
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(r.json, "data"), i, m)
		    json_object_set(all, json_string_value(json_object_get(m, "id")), m);
		const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
		snprintf(cursor, sizeof cursor, "%s", next ? next : "");
		resp_free(&r);
		if (!cursor[0])
			break;
	}
	return all;
}

static inline const char *fc_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

/* One message with its audit trail (caller decrefs). */
static inline json_t *fc_message(struct world *w, const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = api_get(w, path);
	if (r.status != 200)
		fail_msg("GET %s: %ld %s", path, r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

/* Audit events of m marked as a possible duplicate: a resend after an
 * unknown outcome (type retry) or after a lease that expired in flight. */
static inline int fc_dup_marks(json_t *m)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (json_is_true(
		        json_object_get(json_object_get(e, "detail"), "possible_duplicate")))
			n++;
	}
	return n;
}

static inline double fc_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A seed from HERALD_FAULTS_SEED, else the clock; printed by the caller so a
 * failing run can be repeated. */
static inline unsigned long fc_seed(void)
{
	const char *s = getenv("HERALD_FAULTS_SEED");
	if (s && *s)
		return strtoul(s, NULL, 10);
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (unsigned long)(t.tv_nsec ^ t.tv_sec) % 1000000007UL;
}

/* An integer knob from the environment (CI defaults in the callers). */
static inline long fc_env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtol(s, NULL, 10) : dflt;
}

#endif
