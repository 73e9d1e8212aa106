/*
 * test_secrets.c - issue 11 part 6 against a real `herald serve` and
 * `herald sim`:
 *
 *  - rotation of a provider credential and a webhook secret kept in files:
 *    the files are replaced (rename, as secret mounts do) and the simulator
 *    told to expect the new ones; within server.secret_check_ms the server
 *    reloads the account by itself, every later send carries the new token
 *    (the simulator refuses the old one: zero refusals), and the statuses
 *    it signs with the new secret verify (the messages reach `read`). A
 *    webhook signed with the previous secret is accepted during
 *    server.secret_grace_s and refused after; one signed with anything else
 *    never;
 *  - re-registration through the API: an account re-POSTed with another
 *    reference is used by the dispatcher from the next send on (the first
 *    token is refused by the simulator, the second accepted), and its
 *    webhooks verify with the new secret (and the old one during the grace);
 *  - no secret is ever shown or logged: after a workload that uses every
 *    kind of secret the world configures (provider tokens, app secrets and
 *    verify tokens, API keys, an operator key, a JWT HS256 secret and a
 *    token made with it, the callback signing secret) through good and bad
 *    requests, every log the server and the simulator wrote and every API
 *    answer is searched for each secret's value: zero hits. The one answer
 *    that must show a secret, the 201 that creates an API key (shown once),
 *    is kept out of the search and checked to be the only place it appears.
 */
#include <arpa/inet.h>
#include <jwt.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "harness.h"
#include "herald.h"

#define TOKEN_V1 "EAAG-rot-token-v1-4b1d9e7c02"
#define TOKEN_V2 "EAAG-rot-token-v2-9c3e8a51f7"
#define SECRET_V1 "app-secret-v1-d41f0c6a93e2"
#define SECRET_V2 "app-secret-v2-77a0b5e1c4d8"
#define VERIFY_TOKEN "verify-token-5e0c1a7b"
#define API_TOKEN_BAD "EAAG-api-token-refused-31c7"
#define API_TOKEN_GOOD "EAAG-api-token-accepted-8f02"
#define API_SECRET_1 "api-app-secret-one-60dd1b"
#define API_SECRET_2 "api-app-secret-two-b73c42"
#define OPERATOR_KEY "hk_op_secret_0f5a9d3c7e21b8469a4c7e10"
#define JWT_SECRET "jwt-hs256-secret-2a7f61c09d4e8b35"
#define JWT_WRONG "jwt-not-the-secret-c5e1907b3a28"
#define CALLBACK_SECRET "callback-signing-secret-4e92d"
#define DEMO_KEY "hk_test_0123456789abcdef" /* harness.c */
#define OTHER_KEY "hk_other_0123456789abcdef"
#define TG_TOKEN "987654321:AAH-leaktest-bot-token-5d2e"
#define TG_SECRET "tg-webhook-secret-83b1c0"
#define GRACE_S 5

static struct world W;
static char g_dir[64], g_ns[128];
static char g_server[1024], g_acme[512], g_accounts[2048], g_extra[512];
static char g_made_key[128]; /* the key the admin API made (shown once) */
static char *g_jwt;          /* a token signed with JWT_SECRET */
static FILE *g_answers;      /* every API answer body, for the search */

static void put_file(const char *path, const char *text)
{
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void put_secret(const char *name, const char *text)
{
	char p[300];
	snprintf(p, sizeof p, "%s/%s", g_ns, name);
	put_file(p, text);
}

/* A loopback port nothing listens on (callbacks to it fail: the failure
 * path's logging is searched too). */
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

/* An API call whose answer is kept for the search (record false: the one
 * answer that shows a secret by design). */
static struct resp call_rec(const char *method, const char *path, const char *key, const char *body,
                            const char *const *headers, bool record)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", path[0] == '/' ? W.api : "", path);
	struct resp r = http(method, url, key, body, headers);
	if (record && r.body)
		fprintf(g_answers, "%s -> %ld\n%s\n", method, r.status,
		        r.body); /* not the path:
		                  * it is the request */
	return r;
}

static struct resp call(const char *method, const char *path, const char *key, const char *body)
{
	return call_rec(method, path, key, body, NULL, true);
}

static void expect(const char *method, const char *path, const char *key, const char *body,
                   long status)
{
	struct resp r = call(method, path, key, body);
	if (r.status != status)
		fail_msg("%s %s: want %ld, got %ld %s", method, path, status, r.status,
		         r.body ? r.body : "");
	resp_free(&r);
}

static char *send_on(const char *account, int i)
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"+44 7911 %06d\","
	         "\"text\":\"rotation %d\"}",
	         account, i, i);
	struct resp r = call("POST", "/v1/messages", DEMO_KEY, body);
	if (r.status != 202)
		fail_msg("send on %s: %ld %s", account, r.status, r.body ? r.body : "");
	char *id = strdup(json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	return id;
}

static char g_status[32];
static const char *status_of(const char *id)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r = call("GET", path, DEMO_KEY, NULL);
	assert_int_equal(r.status, 200);
	const char *s = json_string_value(json_object_get(r.json, "status"));
	snprintf(g_status, sizeof g_status, "%s", s ? s : "");
	resp_free(&r);
	return g_status;
}

struct want_status {
	char **ids;
	size_t n;
	const char *status;
};

static bool all_status(struct world *w, void *arg)
{
	(void)w;
	const struct want_status *ws = arg;
	for (size_t i = 0; i < ws->n; i++)
		if (strcmp(status_of(ws->ids[i]), ws->status) != 0)
			return false;
	return true;
}

static void wait_status(char **ids, size_t n, const char *status)
{
	struct want_status ws = {ids, n, status};
	if (!wait_until(all_status, &W, &ws, 20))
		for (size_t i = 0; i < n; i++)
			if (strcmp(status_of(ids[i]), status) != 0)
				fail_msg("message %s is %s, not %s", ids[i], g_status, status);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	size_t got = fread(b, 1, (size_t)n, f);
	b[got] = '\0';
	fclose(f);
	return b;
}

/* Lines of the server's log that contain needle. */
static int log_count(const char *needle)
{
	char *s = slurp(W.serve.log);
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(s);
	return n;
}

static bool log_has(struct world *w, void *arg)
{
	(void)w;
	return log_count(arg) > 0;
}

static long sim_auth_rejects(void)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	long n =
	    (long)json_integer_value(json_object_get(json_object_get(r.json, "rejected"), "auth"));
	resp_free(&r);
	return n;
}

/* POSTs a WhatsApp webhook body to account's URL signed with secret. */
static long post_webhook(const char *account, const char *secret)
{
	static const char body[] = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
	char hex[65], hdr[128], path[128];
	hr_hmac_sha256_hex(secret, strlen(secret), body, strlen(body), hex);
	snprintf(hdr, sizeof hdr, "X-Hub-Signature-256: sha256=%s", hex);
	const char *headers[] = {hdr, "Content-Type: application/json", NULL};
	snprintf(path, sizeof path, "/webhooks/whatsapp/%s", account);
	struct resp r = call_rec("POST", path, NULL, body, headers, true);
	long st = r.status;
	resp_free(&r);
	return st;
}

static char *mint(const char *secret)
{
	jwt_t *t;
	assert_int_equal(jwt_new(&t), 0);
	time_t now = time(NULL);
	assert_int_equal(jwt_add_grant(t, "sub", "ops@idp"), 0);
	assert_int_equal(jwt_add_grant(t, "tenant", "acme"), 0);
	assert_int_equal(jwt_add_grant(t, "iss", "test-idp"), 0);
	assert_int_equal(jwt_add_grant(t, "aud", "herald"), 0);
	assert_int_equal(jwt_add_grant(t, "scope", "messages:read messages:send"), 0);
	assert_int_equal(jwt_add_grant_int(t, "exp", (long)now + 300), 0);
	assert_int_equal(
	    jwt_set_alg(t, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)), 0);
	char *s = jwt_encode_str(t);
	assert_non_null(s);
	jwt_free(t);
	return s;
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/herald-secrets-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	char p[300];
	snprintf(p, sizeof p, "%s/ns", g_dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(g_ns, sizeof g_ns, "%s/ns/acme", g_dir);
	assert_int_equal(mkdir(g_ns, 0700), 0);
	snprintf(p, sizeof p, "%s/answers.log", g_dir);
	g_answers = fopen(p, "w");
	assert_non_null(g_answers);

	/* The rotated account's files, and the API account's. */
	put_secret("rot_token", TOKEN_V1 "\n");
	put_secret("rot_secret", SECRET_V1 "\n");
	put_secret("verify", VERIFY_TOKEN);
	put_secret("api_token_bad", API_TOKEN_BAD);
	put_secret("api_token_good", API_TOKEN_GOOD);
	put_secret("api_secret_1", API_SECRET_1);
	put_secret("api_secret_2", API_SECRET_2);
	assert_int_equal(setenv("HERALD_TEST_OPERATOR", OPERATOR_KEY, 1), 0);
	assert_int_equal(setenv("HERALD_TEST_JWT", JWT_SECRET, 1), 0);
	assert_int_equal(setenv("HERALD_SECRET_ACME__CALLBACK", CALLBACK_SECRET, 1), 0);

	int cb = closed_port();
	snprintf(g_server, sizeof g_server,
	         "  operator_keys: [env:HERALD_TEST_OPERATOR]\n  allowed_origins: [\"@SIM@\"]\n"
	         "  secret_file_dir: %s/ns\n  secret_check_ms: 100\n  secret_grace_s: %d\n",
	         g_dir, GRACE_S);
	harness_server_extra(g_server);
	snprintf(g_acme, sizeof g_acme,
	         "    callback_url: \"http://127.0.0.1:%d/cb\"\n"
	         "    callback_secret: env:HERALD_SECRET_ACME__CALLBACK\n",
	         cb);
	/* acme-rot: the rotated one. sim-knows-api: the simulator's view of
	 * the number the API-made account sends from (its token is the one
	 * the simulator accepts; its app secret signs that number's webhooks). */
	snprintf(g_accounts, sizeof g_accounts,
	         "      - id: acme-rot\n        channel: whatsapp\n        base_url: @SIM@\n"
	         "        phone_number_id: \"2000001\"\n"
	         "        access_token: file:%s/rot_token\n"
	         "        app_secret: file:%s/rot_secret\n"
	         "        verify_token: file:%s/verify\n        rate_limit: 1000\n"
	         "      - id: sim-knows-api\n        channel: whatsapp\n        base_url: @SIM@\n"
	         "        phone_number_id: \"2000002\"\n"
	         "        access_token: file:%s/api_token_good\n"
	         "        app_secret: file:%s/api_secret_2\n"
	         "        verify_token: file:%s/verify\n"
	         "      - id: acme-tg\n        channel: telegram\n        base_url: @SIM@\n"
	         "        bot_token: \"" TG_TOKEN "\"\n"
	         "        webhook_secret: " TG_SECRET "\n",
	         g_ns, g_ns, g_ns, g_ns, g_ns, g_ns);
	snprintf(g_extra, sizeof g_extra,
	         "auth:\n  jwt:\n    hs256_secret: env:HERALD_TEST_JWT\n    issuer: test-idp\n"
	         "    audience: herald\n"
	         "callbacks:\n  allowed_origins: [\"http://127.0.0.1:%d\"]\n  poll_ms: 50\n"
	         "  backoff_base_ms: 100\n  backoff_max_ms: 200\n  timeout_ms: 1000\n",
	         cb);
	world_init2(&W, g_accounts, g_acme,
	            "  telegram:\n    seed: 7\n    recipients:\n      \"1003\": {blocked: true}\n",
	            NULL, g_extra);
	harness_server_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	g_jwt = mint(JWT_SECRET);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	if (g_answers)
		fclose(g_answers);
	free(g_jwt);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A changed secret file is picked up without a restart. */
static void test_rotate_file(void **state)
{
	(void)state;
	char *before[3];
	for (int i = 0; i < 3; i++)
		before[i] = send_on("acme-rot", i);
	wait_status(before, 3, "read");
	assert_int_equal(sim_auth_rejects(), 0);

	/* Rotate at Herald's side and at the provider's. */
	put_secret("rot_token", TOKEN_V2 "\n");
	put_secret("rot_secret", SECRET_V2 "\n");
	char url[128];
	snprintf(url, sizeof url, "%s/sim/whatsapp/rotate", W.sim);
	struct resp r = http("POST", url, NULL, "{}", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(r.json, "rotated")), 1);
	resp_free(&r);
	const char *line = "account acme-rot: secret file changed; reloaded";
	assert_true(wait_until(log_has, &W, (void *)line, 10));
	int64_t reloaded_at = hr_mono_us();
	/* Webhooks: the new secret; the previous one during the grace; never
	 * another. */
	assert_int_equal(post_webhook("acme-rot", SECRET_V2), 200);
	assert_int_equal(post_webhook("acme-rot", SECRET_V1), 200);
	assert_int_equal(post_webhook("acme-rot", "not-any-secret"), 401);

	/* Every send from now on carries the new token; the statuses signed
	 * with the new secret verify (read is the last of them). */
	char *after[5];
	for (int i = 0; i < 5; i++)
		after[i] = send_on("acme-rot", 10 + i);
	wait_status(after, 5, "read");
	assert_int_equal(sim_auth_rejects(), 0);
	assert_int_equal(log_count(line), 1);

	/* After the grace the new secret only. */
	int64_t wait_us = reloaded_at + (GRACE_S + 1) * 1000000LL - hr_mono_us();
	if (wait_us > 0) {
		struct timespec ts = {(time_t)(wait_us / 1000000),
		                      (long)(wait_us % 1000000) * 1000};
		nanosleep(&ts, NULL); /* the grace is a span of time: waiting it out is the test */
	}
	assert_int_equal(post_webhook("acme-rot", SECRET_V1), 401);
	assert_int_equal(post_webhook("acme-rot", SECRET_V2), 200);
	/* The sends that ran during all this were all accepted. */
	wait_status(after, 5, "read");
	for (int i = 0; i < 3; i++)
		free(before[i]);
	for (int i = 0; i < 5; i++)
		free(after[i]);
}

/* A secret re-registered through the API is picked up without a restart. */
static void test_reregister(void **state)
{
	(void)state;
	char body[1024];
	const char *fmt = "{\"id\":\"api-wa\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	                  "\"phone_number_id\":\"2000002\",\"access_token\":\"file:%s/%s\","
	                  "\"app_secret\":\"file:%s/%s\",\"verify_token\":\"file:%s/verify\"}";
	snprintf(body, sizeof body, fmt, W.sim, g_ns, "api_token_bad", g_ns, "api_secret_1", g_ns);
	expect("POST", "/v1/channels", DEMO_KEY, body, 201);
	long rejects = sim_auth_rejects();
	char *m1 = send_on("api-wa", 100);
	wait_status(&m1, 1, "failed");
	assert_int_equal(sim_auth_rejects(), rejects + 1);
	assert_int_equal(post_webhook("acme~api-wa", API_SECRET_1), 200);
	assert_int_equal(post_webhook("acme~api-wa", API_SECRET_2), 401);

	/* Re-registered with the other token and secret. */
	snprintf(body, sizeof body, fmt, W.sim, g_ns, "api_token_good", g_ns, "api_secret_2", g_ns);
	expect("POST", "/v1/channels", DEMO_KEY, body, 200);
	assert_int_equal(post_webhook("acme~api-wa", API_SECRET_2), 200);
	assert_int_equal(post_webhook("acme~api-wa", API_SECRET_1), 200); /* the grace */
	assert_int_equal(post_webhook("acme~api-wa", "neither"), 401);
	char *m2 = send_on("api-wa", 101);
	wait_status(&m2, 1, "sent");
	assert_int_equal(sim_auth_rejects(), rejects + 1);
	free(m1);
	free(m2);
}

/* Good and bad uses of every other kind of secret, each answer recorded. */
static void workload(void)
{
	char path[512];
	/* API keys: the tenant's, another tenant's, a wrong one. */
	expect("GET", "/v1/channels", DEMO_KEY, NULL, 200);
	expect("GET", "/v1/channels/acme-wa", DEMO_KEY, NULL, 200);
	expect("GET", "/v1/channels/acme-rot", DEMO_KEY, NULL, 200);
	expect("GET", "/v1/channels/api-wa", DEMO_KEY, NULL, 200);
	expect("GET", "/v1/channels", OTHER_KEY, NULL, 200);
	expect("GET", "/v1/channels", "hk_test_0123456789abcdeX", NULL, 401);
	/* A secret given as a value is refused without being repeated; a
	 * reference outside the tenant's namespace too. */
	char body[512];
	snprintf(body, sizeof body,
	         "{\"id\":\"leaky\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	         "\"phone_number_id\":\"1\",\"access_token\":\"%s\",\"app_secret\":\"env:X\","
	         "\"verify_token\":\"env:X\"}",
	         W.sim, TOKEN_V2);
	expect("POST", "/v1/channels", DEMO_KEY, body, 422);
	snprintf(body, sizeof body,
	         "{\"id\":\"leaky\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	         "\"phone_number_id\":\"1\",\"access_token\":\"env:HERALD_TEST_JWT\","
	         "\"app_secret\":\"env:HERALD_TEST_JWT\",\"verify_token\":\"env:HERALD_TEST_JWT\"}",
	         W.sim);
	expect("POST", "/v1/channels", DEMO_KEY, body, 403);
	/* The operator key; a key made (shown once) and used, revoked, refused. */
	expect("GET", "/v1/tenants", OPERATOR_KEY, NULL, 200);
	struct resp r =
	    call_rec("POST", "/v1/tenants/acme/keys", OPERATOR_KEY,
	             "{\"scopes\":[\"messages:read\"],\"label\":\"leak test\"}", NULL, false);
	assert_int_equal(r.status, 201);
	snprintf(g_made_key, sizeof g_made_key, "%s",
	         json_string_value(json_object_get(r.json, "key")));
	const char *prefix = json_string_value(json_object_get(r.json, "prefix"));
	assert_non_null(prefix);
	snprintf(path, sizeof path, "/v1/tenants/acme/keys/%s/revoke", prefix);
	resp_free(&r);
	assert_true(strlen(g_made_key) > 20);
	expect("GET", "/v1/messages?limit=5", g_made_key, NULL, 200);
	expect("GET", "/v1/tenants/acme/keys", OPERATOR_KEY, NULL, 200);
	expect("POST", path, OPERATOR_KEY, "{}", 200);
	expect("GET", "/v1/messages?limit=5", g_made_key, NULL, 401);
	expect("GET", "/v1/audit?limit=100", OPERATOR_KEY, NULL, 200);
	/* JWTs: good, and signed with a wrong secret. */
	expect("GET", "/v1/messages?limit=5", g_jwt, NULL, 200);
	char *bad = mint(JWT_WRONG);
	expect("GET", "/v1/messages?limit=5", bad, NULL, 401);
	free(bad);
	/* The verify-token handshake, right and wrong. */
	snprintf(path, sizeof path,
	         "/webhooks/whatsapp/acme-rot?hub.mode=subscribe&hub.verify_token=%s"
	         "&hub.challenge=8812",
	         VERIFY_TOKEN);
	r = call("GET", path, NULL, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "8812");
	resp_free(&r);
	expect("GET",
	       "/webhooks/whatsapp/acme-rot?hub.mode=subscribe&hub.verify_token=nope"
	       "&hub.challenge=1",
	       NULL, NULL, 403);
	/* Sends on the config account: the tenant's callback URL signs with the
	 * callback secret (the receiver is down: failures are logged). */
	char *ids[3];
	for (int i = 0; i < 3; i++) {
		snprintf(
		    body, sizeof body,
		    "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"to\":\"+44 7911 %06d\","
		    "\"text\":\"cb %d\"}",
		    200 + i, i);
		r = call("POST", "/v1/messages", g_jwt, body);
		assert_int_equal(r.status, 202);
		ids[i] = strdup(json_string_value(json_object_get(r.json, "id")));
		resp_free(&r);
	}
	wait_status(ids, 3, "read");
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/v1/messages/%s", ids[i]);
		expect("GET", path, DEMO_KEY, NULL, 200);
		free(ids[i]);
	}
	/* Telegram: the bot token is part of every request's URL; a send the
	 * bot may not make (a blocked chat: 403) and a webhook with a wrong
	 * secret token. */
	char *tg[2];
	for (int i = 0; i < 2; i++) {
		snprintf(body, sizeof body,
		         "{\"channel\":\"telegram\",\"account\":\"acme-tg\",\"to\":\"%s\","
		         "\"text\":\"tg %d\"}",
		         i ? "1003" : "1000", i);
		r = call("POST", "/v1/messages", DEMO_KEY, body);
		assert_int_equal(r.status, 202);
		tg[i] = strdup(json_string_value(json_object_get(r.json, "id")));
		resp_free(&r);
	}
	wait_status(&tg[0], 1, "sent");
	wait_status(&tg[1], 1, "failed");
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "/v1/messages/%s", tg[i]);
		expect("GET", path, DEMO_KEY, NULL, 200);
		free(tg[i]);
	}
	const char *tgh[] = {"X-Telegram-Bot-Api-Secret-Token: wrong-secret-token", NULL};
	r = call_rec("POST", "/webhooks/telegram/acme-tg", NULL, "{\"update_id\":1}", tgh, true);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	expect("GET", "/v1/callbacks?limit=50", DEMO_KEY, NULL, 200);
	expect("GET", "/v1/webhooks/parked?limit=50", DEMO_KEY, NULL, 200);
}

static bool callbacks_tried(struct world *w, void *arg)
{
	(void)w;
	(void)arg;
	struct resp r = call("GET", "/v1/callbacks?limit=50", DEMO_KEY, NULL);
	bool tried = false;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(r.json, "data"), i, c)
	{
		if (json_integer_value(json_object_get(c, "attempts")) >= 2)
			tried = true;
	}
	resp_free(&r);
	return tried;
}

static void test_no_secret_shown_or_logged(void **state)
{
	(void)state;
	workload();
	/* The callback sender has signed and tried (and failed) a few times. */
	assert_true(wait_until(callbacks_tried, &W, NULL, 20));
	/* Stop both processes so their logs are complete. */
	world_stop_serve(&W);
	fflush(g_answers);

	const char *secrets[] = {
	    TOKEN_V1,
	    TOKEN_V2,
	    SECRET_V1,
	    SECRET_V2,
	    VERIFY_TOKEN,
	    API_TOKEN_BAD,
	    API_TOKEN_GOOD,
	    API_SECRET_1,
	    API_SECRET_2,
	    OPERATOR_KEY,
	    JWT_SECRET,
	    JWT_WRONG,
	    g_jwt,
	    CALLBACK_SECRET,
	    DEMO_KEY,
	    OTHER_KEY,
	    g_made_key,
	    "test-token",
	    "app-secret-123",
	    "verify-me",
	    "unused-by-trust-auth", /* the PostgreSQL password (HERALD_IT_STORE=postgres) */
	    TG_TOKEN,
	    TG_SECRET,
	    "AAH-leaktest-bot-token-5d2e", /* the token's secret part */
	};
	char ans[300];
	snprintf(ans, sizeof ans, "%s/answers.log", g_dir);
	const char *files[] = {W.serve.log, W.simp.log, ans};
	size_t nsecrets = sizeof secrets / sizeof *secrets, hits = 0;
	for (size_t f = 0; f < 3; f++) {
		char *text = slurp(files[f]);
		/* Not a vacuous search: the server's log and the answers hold what
		 * the workload made (the simulator logs little). */
		if (f != 1)
			assert_true(strlen(text) > 1000);
		for (size_t i = 0; i < nsecrets; i++) {
			const char *p = strstr(text, secrets[i]);
			if (p) {
				const char *ls = p;
				while (ls > text && ls[-1] != '\n')
					ls--;
				const char *le = strchr(p, '\n');
				fprintf(stderr, "secret %zu found in %s: %.*s\n", i, files[f],
				        (int)(le ? le - ls : 200), ls);
				hits++;
			}
		}
		free(text);
	}
	assert_int_equal(hits, 0);
	/* The logs say what happened without the values. */
	assert_int_equal(log_count("account acme-rot: secret file changed; reloaded"), 1);
	assert_true(log_count("verified with the account's previous secret") >= 2);
	/* Restarted for teardown's clean stop. */
	world_start_serve(&W);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rotate_file),
	    cmocka_unit_test(test_reregister),
	    cmocka_unit_test(test_no_secret_shown_or_logged),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
