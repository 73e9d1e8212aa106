/*
 * test_rcs.c - RCS through real `herald sim` + `herald serve` processes on
 * loopback: the adapter fetches a token with an RS256 JWT signed by a key
 * made here (the sim checks it with the public half), sends text with
 * suggestions, a card and a carousel that reach read through signed Pub/Sub
 * webhooks; a non-RCS recipient fails at once with not_rcs_capable; a
 * scripted button press comes back as an inbound event on its message; the
 * capability endpoint answers both ways; badly signed webhooks are refused;
 * a rate-limited send is retried with the same messageId; each message
 * reaches the provider exactly once.
 */
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
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/crypto.h"
#include "harness.h"
#include "herald.h"

#define CLIENT_TOKEN "rcs-client-token-1"

static struct world W;
static char sa_dir[64];
static char *sa_key; /* the service account's private key (PEM) */

/* The service account: a fresh RSA key and the simulator's token endpoint. */
static void write_service_account(const char *path, const char *token_uri)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	char *pem = NULL;
	long n = BIO_get_mem_data(b, &pem);
	char *key = strndup(pem, (size_t)n);
	sa_key = strdup(key);
	BIO_free(b);
	EVP_PKEY_free(k);
	json_t *sa = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id", "rbm-herald",
	    "private_key_id", "it-key-1", "private_key", key, "client_email",
	    "herald-it@rbm-herald.iam.gserviceaccount.com", "token_uri", token_uri);
	assert_int_equal(json_dump_file(sa, path, 0), 0);
	json_decref(sa);
	free(key);
}

static int setup(void **state)
{
	(void)state;
	snprintf(sa_dir, sizeof sa_dir, "/tmp/herald-rcs-it-XXXXXX");
	assert_non_null(mkdtemp(sa_dir));
	char accounts[1024];
	snprintf(accounts, sizeof accounts,
	         "      - id: acme-rcs\n        channel: rcs\n        base_url: @SIM@\n"
	         "        agent_id: herald_demo_agent\n"
	         "        service_account: file:%s/sa.json\n"
	         "        client_token: " CLIENT_TOKEN "\n        rate_limit: 500\n",
	         sa_dir);
	world_init2(&W, accounts, NULL,
	            "  rcs:\n    seed: 7\n    delivered_delay_ms: 20\n    read_delay_ms: 40\n"
	            "    answer_delay_ms: 30\n    webhook_retry_s: 120\n    recipients:\n"
	            "      \"+15550000404\": {not_rcs: true}\n"
	            "      \"+15550000777\": {press: \"yes\"}\n",
	            NULL, NULL);
	char path[128], uri[96];
	snprintf(path, sizeof path, "%s/sa.json", sa_dir);
	snprintf(uri, sizeof uri, "%s/token", W.sim);
	write_service_account(path, uri);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", sa_dir);
	assert_int_equal(system(cmd), 0);
	free(sa_key);
	return 0;
}

/* ---- helpers ---- */

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int events(json_t *m, const char *type, const char *status, int applied)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(str(e, "type"), type) != 0)
			continue;
		if (status && strcmp(str(e, "status"), status) != 0)
			continue;
		if (applied >= 0 && json_is_true(json_object_get(e, "applied")) != applied)
			continue;
		n++;
	}
	return n;
}

/* Sends one message (body: the request JSON); returns its id in id. */
static void send_msg(const char *body, char id[32])
{
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != 202)
		fail_msg("POST /v1/messages: %ld %s", r.status, r.body ? r.body : "");
	snprintf(id, 32, "%s", str(r.json, "id"));
	resp_free(&r);
}

/* What the simulator received for a messageId (the provider id). */
static json_t *sim_message(const char *uuid)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/rcs/messages/%s", W.sim, uuid);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static json_t *sim_stats_rcs(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_incref(json_object_get(r.json, "rcs"));
	resp_free(&r);
	assert_non_null(j);
	return j;
}

static json_int_t num(json_t *o, const char *path)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", path);
	json_t *v = o;
	for (char *save = NULL, *p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
		v = json_object_get(v, p);
	return json_integer_value(v);
}

static bool uuid_shaped(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash != (s[i] == '-'))
			return false;
	}
	return true;
}

/* ---- tests ---- */

static void test_text_with_suggestions_reaches_read(void **state)
{
	(void)state;
	char id[32];
	send_msg(
	    "{\"channel\":\"rcs\",\"to\":\"+1 555 000 1001\",\"text\":\"Pay £5 now?\","
	    "\"buttons\":[{\"id\":\"yes\",\"title\":\"Yes\"},{\"id\":\"no\",\"title\":\"No\"}],"
	    "\"actions\":[{\"title\":\"Call us\",\"dial\":\"+15550100\"}],"
	    "\"options\":{\"ttl\":\"3600s\"}}",
	    id);
	world_wait_status(&W, id, "read", 30);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "to"), "+15550001001");
	assert_int_equal(events(m, "sent", NULL, 1), 1);
	assert_int_equal(events(m, "webhook_status", "delivered", 1), 1);
	assert_int_equal(events(m, "webhook_status", "read", 1), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
	const char *pid = str(m, "provider_id");
	assert_true(uuid_shaped(pid));

	/* What reached RBM, field by field. */
	json_t *sm = sim_message(pid);
	assert_true(json_is_true(json_object_get(sm, "accepted")));
	assert_int_equal(num(sm, "attempts"), 1);
	assert_string_equal(str(sm, "to"), "+15550001001");
	json_t *body = json_object_get(sm, "body");
	assert_string_equal(str(body, "ttl"), "3600s");
	json_t *cm = json_object_get(body, "contentMessage");
	assert_string_equal(str(cm, "text"), "Pay £5 now?");
	json_t *sg = json_object_get(cm, "suggestions");
	assert_int_equal(json_array_size(sg), 3);
	json_t *r0 = json_object_get(json_array_get(sg, 0), "reply");
	assert_string_equal(str(r0, "text"), "Yes");
	char pb[64];
	snprintf(pb, sizeof pb, "%s|yes", pid);
	assert_string_equal(str(r0, "postbackData"), pb);
	json_t *a2 = json_object_get(json_array_get(sg, 2), "action");
	assert_string_equal(str(json_object_get(a2, "dialAction"), "phoneNumber"), "+15550100");
	json_decref(sm);
	json_decref(m);
}

static void test_card_and_carousel(void **state)
{
	(void)state;
	char card[32], carousel[32];
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550001002\",\"card\":{\"title\":\"Order 42\","
	         "\"description\":\"Shipped today\",\"media_url\":\"https://cdn.example/box.png\","
	         "\"buttons\":[{\"id\":\"track\",\"title\":\"Track\"}]}}",
	         card);
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550001003\",\"carousel\":[{\"title\":\"Red\","
	         "\"media_url\":\"https://cdn.example/r.png\",\"buttons\":[{\"id\":\"red\","
	         "\"title\":\"Red one\"}]},{\"title\":\"Blue\",\"description\":\"Also nice\","
	         "\"buttons\":[{\"id\":\"blue\",\"title\":\"Blue one\"}]}]}",
	         carousel);
	world_wait_status(&W, card, "read", 30);
	world_wait_status(&W, carousel, "read", 30);
	json_t *m = world_message(&W, card);
	assert_int_equal(events(m, "webhook_status", "delivered", 1), 1);
	json_t *sm = sim_message(str(m, "provider_id"));
	json_t *sc = json_object_get(
	    json_object_get(json_object_get(json_object_get(sm, "body"), "contentMessage"),
	                    "richCard"),
	    "standaloneCard");
	assert_string_equal(str(sc, "cardOrientation"), "VERTICAL");
	json_t *cc = json_object_get(sc, "cardContent");
	assert_string_equal(str(cc, "title"), "Order 42");
	assert_string_equal(
	    str(json_object_get(json_object_get(cc, "media"), "contentInfo"), "fileUrl"),
	    "https://cdn.example/box.png");
	json_decref(sm);
	json_decref(m);

	m = world_message(&W, carousel);
	assert_int_equal(events(m, "webhook_status", "read", 1), 1);
	sm = sim_message(str(m, "provider_id"));
	json_t *cs = json_object_get(
	    json_object_get(json_object_get(json_object_get(sm, "body"), "contentMessage"),
	                    "richCard"),
	    "carouselCard");
	assert_string_equal(str(cs, "cardWidth"), "MEDIUM");
	assert_int_equal(json_array_size(json_object_get(cs, "cardContents")), 2);
	json_decref(sm);
	json_decref(m);
}

static void test_not_rcs_capable_fails_once(void **state)
{
	(void)state;
	char id[32];
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550000404\",\"text\":\"hello\"}", id);
	world_wait_status(&W, id, "failed", 30);
	json_t *m = world_message(&W, id);
	json_t *err = json_object_get(m, "error");
	assert_string_equal(str(err, "code"), "not_rcs_capable");
	assert_non_null(strstr(str(err, "message"), "not RCS-capable"));
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
	assert_int_equal(events(m, "retry", NULL, -1), 0);
	json_decref(m);
	/* the overview's top failure codes say what it means. */
	char meaning[256];
	assert_int_equal(world_failure_code(&W, "rcs", "not_rcs_capable", meaning, sizeof meaning),
	                 1);
	assert_string_equal(meaning, "Recipient cannot receive RCS (device not capable or RCS off; "
	                             "404 NOT_FOUND): falls back when routed");
}

static bool has_inbound(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	bool ok = events(m, "inbound", NULL, 1) >= 1;
	json_decref(m);
	return ok;
}

static void test_button_press_is_inbound_on_message(void **state)
{
	(void)state;
	char id[32];
	send_msg(
	    "{\"channel\":\"rcs\",\"to\":\"+15550000777\",\"text\":\"Confirm?\","
	    "\"buttons\":[{\"id\":\"yes\",\"title\":\"Yes\"},{\"id\":\"no\",\"title\":\"No\"}]}",
	    id);
	assert_true(wait_until(has_inbound, &W, id, 30));
	world_wait_status(&W, id, "read", 30); /* a press does not change the status */
	json_t *m = world_message(&W, id);
	size_t i;
	json_t *e;
	int found = 0;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(str(e, "type"), "inbound") != 0)
			continue;
		json_t *d = json_object_get(e, "detail");
		assert_string_equal(str(d, "payload"), "yes");
		found++;
	}
	assert_int_equal(found, 1);
	json_decref(m);
	json_t *st = sim_stats_rcs();
	assert_true(num(st, "presses") >= 1);
	assert_int_equal(num(st, "presses_missed"), 0);
	json_decref(st);
}

static void test_capability_endpoint(void **state)
{
	(void)state;
	struct resp r = api_get(&W, "/v1/channels/acme-rcs/capabilities?to=%2B15550001001");
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(r.json, "capable")));
	assert_string_equal(str(r.json, "to"), "+15550001001");
	json_t *f = json_object_get(r.json, "features");
	assert_true(json_array_size(f) > 0);
	bool carousel = false;
	size_t i;
	json_t *x;
	json_array_foreach(f, i, x)
	{
		carousel |= strcmp(json_string_value(x), "RICHCARD_CAROUSEL") == 0;
	}
	assert_true(carousel);
	resp_free(&r);

	r = api_get(&W, "/v1/channels/acme-rcs/capabilities?to=%2B15550000404");
	assert_int_equal(r.status, 200);
	assert_true(json_is_false(json_object_get(r.json, "capable")));
	assert_string_equal(str(r.json, "reason"), "not_rcs_capable");
	resp_free(&r);

	/* A bare '+' in a query string is a space: still the same number. */
	r = api_get(&W, "/v1/channels/acme-rcs/capabilities?to=+15550001001");
	assert_int_equal(r.status, 200);
	assert_string_equal(str(r.json, "to"), "+15550001001");
	resp_free(&r);

	struct {
		const char *path;
		long status;
		const char *field;
	} bad[] = {
	    {"/v1/channels/acme-wa/capabilities?to=%2B15550001001", 422, "account"},
	    {"/v1/channels/nope/capabilities?to=%2B15550001001", 404, NULL},
	    {"/v1/channels/acme-rcs/capabilities", 422, "to"},
	    {"/v1/channels/acme-rcs/capabilities?to=abc", 422, "to"},
	    {"/v1/channels/acme-rcs/capabilities?to=%2B15550001001&x=1", 422, "x"},
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		r = api_get(&W, bad[k].path);
		if (r.status != bad[k].status)
			fail_msg("%s: %ld %s", bad[k].path, r.status, r.body ? r.body : "");
		if (bad[k].field)
			assert_string_equal(str(json_object_get(r.json, "error"), "field"),
			                    bad[k].field);
		resp_free(&r);
	}
	/* Another tenant cannot use this account. */
	char url[160];
	snprintf(url, sizeof url, "%s/v1/channels/acme-rcs/capabilities?to=%%2B15550001001", W.api);
	r = http("GET", url, "hk_other_0123456789abcdef", NULL, NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
}

static void test_webhook_signatures_and_handshake(void **state)
{
	(void)state;
	char id[32];
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550001004\",\"text\":\"sig test\"}", id);
	world_wait_status(&W, id, "read", 30);
	json_t *m = world_message(&W, id);
	char pid[64];
	snprintf(pid, sizeof pid, "%s", str(m, "provider_id"));
	size_t nev = json_array_size(json_object_get(m, "events"));
	json_decref(m);

	char url[160];
	snprintf(url, sizeof url, "%s/webhooks/rcs/acme-rcs", W.api);
	/* The set-up handshake echoes the secret; a wrong token is not one. */
	struct resp r =
	    http("POST", url, NULL,
	         "{\"clientToken\":\"" CLIENT_TOKEN "\",\"secret\":\"echo-me-42\"}", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "echo-me-42");
	resp_free(&r);
	r = http("POST", url, NULL, "{\"clientToken\":\"wrong\",\"secret\":\"x\"}", NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);

	/* A DELIVERED event for the (read) message, badly signed and unsigned. */
	char event[512];
	snprintf(event, sizeof event,
	         "{\"senderPhoneNumber\":\"+15550001004\",\"eventType\":\"DELIVERED\","
	         "\"eventId\":\"EvForged1\",\"messageId\":\"%s\",\"sendTime\":"
	         "\"2026-01-15T10:00:00Z\",\"agentId\":\"herald_demo_agent\"}",
	         pid);
	char *data = hr_b64_encode(event, strlen(event));
	char body[1024];
	snprintf(body, sizeof body,
	         "{\"message\":{\"data\":\"%s\",\"messageId\":\"991\",\"publishTime\":"
	         "\"2026-01-15T10:00:00Z\"},\"subscription\":\"projects/x/subscriptions/y\"}",
	         data);
	free(data);
	char sig[89], hdr[128];
	hr_hmac_sha512_b64("not-the-token", 13, event, strlen(event), sig);
	snprintf(hdr, sizeof hdr, "X-Goog-Signature: %s", sig);
	const char *badh[] = {hdr, NULL};
	r = http("POST", url, NULL, body, badh);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	r = http("POST", url, NULL, body, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	/* Signed right, it is accepted (and, delivered after read, ignored). */
	hr_hmac_sha512_b64(CLIENT_TOKEN, strlen(CLIENT_TOKEN), event, strlen(event), sig);
	snprintf(hdr, sizeof hdr, "X-Goog-Signature: %s", sig);
	const char *goodh[] = {hdr, NULL};
	r = http("POST", url, NULL, body, goodh);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	for (int i = 0; i < 100; i++) {
		m = world_message(&W, id);
		size_t n = json_array_size(json_object_get(m, "events"));
		json_decref(m);
		if (n > nev)
			break;
		usleep(100000);
	}
	m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "read");
	assert_int_equal(json_array_size(json_object_get(m, "events")), nev + 1);
	assert_int_equal(events(m, "webhook_status", "delivered", 0), 1);
	json_decref(m);
}

static void test_rate_limited_is_retried_once_at_provider(void **state)
{
	(void)state;
	char url[128];
	snprintf(url, sizeof url, "%s/sim/rcs/config", W.sim);
	struct resp r = http("POST", url, NULL, "{\"rate_429\":1.0}", NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	char id[32];
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550001005\",\"text\":\"retry me\"}", id);
	sleep(2);
	r = http("POST", url, NULL, "{\"rate_429\":0.0}", NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	world_wait_status(&W, id, "read", 30);
	json_t *m = world_message(&W, id);
	assert_true(json_integer_value(json_object_get(m, "attempts")) >= 2);
	assert_true(events(m, "retry", NULL, -1) >= 1);
	json_t *sm = sim_message(str(m, "provider_id"));
	assert_true(num(sm, "attempts") >= 2); /* the same messageId every time */
	assert_true(json_is_true(json_object_get(sm, "accepted")));
	json_decref(sm);
	json_decref(m);
}

/* Every push twice and READ before DELIVERED: the message still ends at read,
 * with each status applied once. */
static void test_duplicate_and_reordered_webhooks(void **state)
{
	(void)state;
	char url[128];
	snprintf(url, sizeof url, "%s/sim/rcs/config", W.sim);
	struct resp r = http("POST", url, NULL, "{\"dup_rate\":1.0,\"reorder_rate\":1.0}", NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	json_t *before = sim_stats_rcs();
	char id[32];
	send_msg("{\"channel\":\"rcs\",\"to\":\"+15550001008\",\"text\":\"twice\"}", id);
	world_wait_status(&W, id, "read", 30);
	for (int i = 0; i < 50; i++) { /* let the late DELIVERED and the copies land */
		json_t *st = sim_stats_rcs();
		bool done = num(st, "webhooks.posted") >= num(before, "webhooks.posted") + 4 &&
		            num(st, "webhooks.pending") == 0;
		json_decref(st);
		if (done)
			break;
		usleep(100000);
	}
	usleep(500000); /* the applier runs behind the ingress */
	r = http("POST", url, NULL, "{\"dup_rate\":0.0,\"reorder_rate\":0.0}", NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "read");
	assert_int_equal(events(m, "webhook_status", "read", 1), 1);
	assert_int_equal(events(m, "webhook_status", "delivered", 1), 1);
	json_decref(m);
	json_t *after = sim_stats_rcs();
	assert_true(num(after, "webhooks.posted") >= num(before, "webhooks.posted") + 4);
	json_decref(after);
	json_decref(before);
}

static void test_sync_and_exactly_once(void **state)
{
	(void)state;
	struct resp r =
	    api_post(&W, "/v1/messages",
	             "{\"channel\":\"rcs\",\"to\":\"+15550001006\",\"text\":\"otp 1234\","
	             "\"mode\":\"sync\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(str(r.json, "status"), "sent");
	assert_true(uuid_shaped(str(r.json, "provider_id")));
	resp_free(&r);

	json_t *st = sim_stats_rcs();
	assert_int_equal(num(st, "duplicates"), 0);
	assert_int_equal(num(st, "unique_messages"), num(st, "accepted"));
	assert_true(num(st, "tokens.issued") >= 1);
	assert_int_equal(num(st, "tokens.refused"), 0);
	assert_int_equal(num(st, "rejected.auth"), 0);
	assert_int_equal(num(st, "rejected.invalid"), 0);
	assert_true(num(st, "capability_checks") >= 2);
	json_decref(st);
}

/* A JWT for the simulator's token endpoint; alg RS256 with key, or HS256. */
static char *make_jwt(const char *key, jwt_alg_t alg, const char *aud, const char *scope, long iat,
                      long exp)
{
	jwt_t *j = NULL;
	assert_int_equal(jwt_new(&j), 0);
	jwt_add_grant(j, "iss", "herald-it@rbm-herald.iam.gserviceaccount.com");
	jwt_add_grant(j, "scope", scope);
	jwt_add_grant(j, "aud", aud);
	jwt_add_grant_int(j, "iat", iat);
	jwt_add_grant_int(j, "exp", exp);
	assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
	char *s = jwt_encode_str(j);
	jwt_free(j);
	assert_non_null(s);
	return s;
}

static struct resp token_request(const char *grant, const char *assertion)
{
	char *body = NULL;
	assert_true(asprintf(&body, "grant_type=%s&assertion=%s", grant, assertion) > 0);
	char url[128];
	snprintf(url, sizeof url, "%s/token", W.sim);
	const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct resp r = http("POST", url, NULL, body, h);
	free(body);
	return r;
}

/* The simulator's side of the contract: it refuses what Google refuses. */
static void test_sim_checks_tokens_and_sends(void **state)
{
	(void)state;
	const char *grant = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
	const char *scope = "https://www.googleapis.com/auth/rcsbusinessmessaging";
	char aud[96];
	snprintf(aud, sizeof aud, "%s/token", W.sim);
	long now = (long)time(NULL);
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);
	char *other_key = strndup(p, (size_t)n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, k);
	n = BIO_get_mem_data(b, &p);
	char *other_pub = strndup(p, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	struct {
		const char *key;
		jwt_alg_t alg;
		const char *aud, *scope, *grant;
		long iat, exp;
		long status;
		const char *error;
	} cases[] = {
	    {NULL, JWT_ALG_RS256, aud, scope, grant, now, now + 3600, 200, NULL},
	    {other_key, JWT_ALG_RS256, aud, scope, grant, now, now + 3600, 400, "invalid_grant"},
	    {other_pub, JWT_ALG_HS256, aud, scope, grant, now, now + 3600, 400, "invalid_grant"},
	    {NULL, JWT_ALG_RS256, "https://oauth2.googleapis.com/token", scope, grant, now,
	     now + 3600, 400, "invalid_grant"},
	    {NULL, JWT_ALG_RS256, aud, scope, grant, now, now + 7200, 400, "invalid_grant"},
	    {NULL, JWT_ALG_RS256, aud, scope, grant, now - 7200, now - 3700, 400, "invalid_grant"},
	    {NULL, JWT_ALG_RS256, aud, "https://www.googleapis.com/auth/cloud-platform", grant, now,
	     now + 3600, 400, "invalid_scope"},
	    {NULL, JWT_ALG_RS256, aud, scope, "client_credentials", now, now + 3600, 400,
	     "unsupported_grant_type"},
	};
	char token[128] = "";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *jwt = make_jwt(cases[i].key ? cases[i].key : sa_key, cases[i].alg,
		                     cases[i].aud, cases[i].scope, cases[i].iat, cases[i].exp);
		struct resp r = token_request(cases[i].grant, jwt);
		free(jwt);
		if (r.status != cases[i].status)
			fail_msg("case %zu: %ld %s", i, r.status, r.body ? r.body : "");
		if (cases[i].error)
			assert_string_equal(str(r.json, "error"), cases[i].error);
		else
			snprintf(token, sizeof token, "Authorization: Bearer %s",
			         str(r.json, "access_token"));
		resp_free(&r);
	}
	free(other_key);
	free(other_pub);

	/* Sends straight to the sim with that token. */
	const char *mid = "9b2f6c1e-4c77-4a4e-9d3e-2b1f7a5d6e01";
	const char *body = "{\"contentMessage\":{\"text\":\"direct\"}}";
	struct {
		const char *auth, *agent, *id, *body;
		long status;
		const char *gstatus;
	} sends[] = {
	    {NULL, "herald_demo_agent", mid, body, 401, "UNAUTHENTICATED"},
	    {"Authorization: Bearer ya29.forged", "herald_demo_agent", mid, body, 401,
	     "UNAUTHENTICATED"},
	    {token, "someone_else", mid, body, 403, "PERMISSION_DENIED"},
	    {token, "herald_demo_agent", "not-a-uuid", body, 400, "INVALID_ARGUMENT"},
	    {token, "herald_demo_agent", mid, "{\"contentMessage\":{\"txt\":\"x\"}}", 400,
	     "INVALID_ARGUMENT"},
	    {token, "herald_demo_agent", mid,
	     "{\"contentMessage\":{\"text\":\"x\",\"suggestions\":[{\"reply\":{\"text\":"
	     "\"This title is far too long\",\"postbackData\":\"p\"}}]}}",
	     400, "INVALID_ARGUMENT"},
	    {token, "herald_demo_agent", mid, body, 200, NULL},
	    {token, "herald_demo_agent", mid, body, 409, "ALREADY_EXISTS"},
	};
	for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
		char url[256];
		snprintf(url, sizeof url,
		         "%s/v1/phones/+15550001007/agentMessages?messageId=%s&agentId=%s", W.sim,
		         sends[i].id, sends[i].agent);
		const char *h[] = {"Content-Type: application/json", sends[i].auth, NULL};
		struct resp r = http("POST", url, NULL, sends[i].body, h);
		if (r.status != sends[i].status)
			fail_msg("send %zu: %ld %s", i, r.status, r.body ? r.body : "");
		if (sends[i].gstatus)
			assert_string_equal(str(json_object_get(r.json, "error"), "status"),
			                    sends[i].gstatus);
		else
			assert_non_null(strstr(str(r.json, "name"), mid));
		resp_free(&r);
	}
}

/* the account's health shows the access token rbm.c holds, its
 * expiry in the future, and no fetch error. */
static bool token_shown(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	struct resp r = api_get(&W, "/v1/channels/acme-rcs/health");
	bool ok = r.status == 200 && json_is_string(json_object_get(r.json, "token_expires_at"));
	resp_free(&r);
	return ok;
}

static void test_health_token_expiry(void **state)
{
	(void)state;
	assert_true(wait_until(token_shown, &W, NULL, 30));
	struct resp r = api_get(&W, "/v1/channels/acme-rcs/health");
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(r.json, "has_token")));
	assert_true(json_is_null(json_object_get(r.json, "token_error")));
	int64_t exp = 0;
	assert_int_equal(
	    hr_time_parse(json_string_value(json_object_get(r.json, "token_expires_at")), &exp), 0);
	assert_true(exp > hr_now_us());
	assert_string_equal(json_string_value(json_object_get(r.json, "channel")), "rcs");
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_with_suggestions_reaches_read),
	    cmocka_unit_test(test_card_and_carousel),
	    cmocka_unit_test(test_not_rcs_capable_fails_once),
	    cmocka_unit_test(test_button_press_is_inbound_on_message),
	    cmocka_unit_test(test_capability_endpoint),
	    cmocka_unit_test(test_health_token_expiry),
	    cmocka_unit_test(test_webhook_signatures_and_handshake),
	    cmocka_unit_test(test_rate_limited_is_retried_once_at_provider),
	    cmocka_unit_test(test_duplicate_and_reordered_webhooks),
	    cmocka_unit_test(test_sync_and_exactly_once),
	    cmocka_unit_test(test_sim_checks_tokens_and_sends), /* last: it counts rejections */
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
