/*
 * test_isolation.c - two tenants on one real `herald serve` (with `herald
 * sim`), the second attacking the first as the black-box review did:
 *
 *  - beta (tenant "other") references alpha's ("acme") secrets from every
 *    channel's secret fields, by variable and by file, and reads system
 *    files: 403, and no answer quotes a value or tells whether a file exists;
 *  - beta points accounts at its own listener, at 169.254.169.254, at
 *    localhost and [::1], with userinfo: refused, and the listener never
 *    sees a connection (so no credential ever leaves);
 *  - every route that takes an account or message id answers beta the same
 *    for alpha's ids as for ids that exist nowhere, and beta may use an id
 *    alpha has for an account of its own without touching alpha's;
 *  - what an operator-allowed host that is not the provider answers is not
 *    echoed to the tenant (the provider's error code still is);
 *  - a positive control throughout: beta's own references work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "harness.h"

#define BETA_KEY "hk_other_0123456789abcdef"
#define ALPHA_WA_TOKEN "alpha-wa-token-7f3kQ"
#define ALPHA_TG "999:alphaBotToken_x"
#define BETA_WA_TOKEN "beta-wa-token-2mV9"
#define BETA_TG "888:betaBotToken_y"

static struct world W;
static char g_secrets[64];    /* server.secret_file_dir */
static char g_server_yaml[256];
static int g_listen_fd = -1;  /* beta's listener: must never see a connection */
static int g_listen_port;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void write_sa(const char *path, const char *token_uri)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	char *pem = NULL;
	long n = BIO_get_mem_data(b, &pem);
	char *key = strndup(pem, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	json_t *sa = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "private_key", key,
	                       "client_email", "it@x.iam.gserviceaccount.com", "token_uri",
	                       token_uri);
	assert_int_equal(json_dump_file(sa, path, 0), 0);
	json_decref(sa);
	free(key);
}

/* Connections the listener's kernel queue accepted so far (drained). */
static int listener_connections(void)
{
	int n = 0;
	for (;;) {
		int c = accept(g_listen_fd, NULL, NULL);
		if (c < 0)
			break;
		close(c);
		n++;
	}
	return n;
}

static int setup(void **state)
{
	(void)state;
	strcpy(g_secrets, "/tmp/herald-iso-sec-XXXXXX");
	assert_non_null(mkdtemp(g_secrets));
	char p[256];
	snprintf(p, sizeof p, "%s/acme", g_secrets);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/other", g_secrets);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/acme/wa_token", g_secrets);
	write_file(p, ALPHA_WA_TOKEN "\n");
	snprintf(p, sizeof p, "%s/acme/sa.json", g_secrets);
	write_sa(p, "https://oauth2.googleapis.com/token");
	snprintf(p, sizeof p, "%s/other/sa.json", g_secrets);
	write_sa(p, "https://oauth2.googleapis.com/token");
	setenv("HERALD_SECRET_ACME__WA_TOKEN", ALPHA_WA_TOKEN, 1);
	setenv("HERALD_SECRET_ACME__TG", ALPHA_TG, 1);
	setenv("HERALD_SECRET_OTHER__WA_TOKEN", BETA_WA_TOKEN, 1);
	setenv("HERALD_SECRET_OTHER__TG", BETA_TG, 1);
	setenv("HERALD_SECRET_OTHER__HOOK", "betahook", 1);

	g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(g_listen_fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(g_listen_fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(g_listen_fd, 64), 0);
	socklen_t len = sizeof a;
	assert_int_equal(getsockname(g_listen_fd, (struct sockaddr *)&a, &len), 0);
	g_listen_port = ntohs(a.sin_port);

	/* The simulator is an origin the operator allows (it is not a
	 * provider's host, so what it answers tenants' accounts is masked). */
	snprintf(g_server_yaml, sizeof g_server_yaml,
	         "  secret_file_dir: %s/\n  allowed_origins: [\"@SIM@\"]\n", g_secrets);
	harness_server_extra(g_server_yaml);
	/* The simulator learns which WhatsApp numbers and tokens exist from the
	 * config's accounts: this entry only tells it about the number beta's
	 * API-created accounts use (nothing in the tests sends through it). */
	world_init2(&W,
	            "      - id: sim-knows-beta\n        channel: whatsapp\n        base_url: @SIM@\n"
	            "        phone_number_id: \"555000333\"\n"
	            "        access_token: env:HERALD_SECRET_OTHER__WA_TOKEN\n"
	            "        app_secret: unused-secret\n        verify_token: unused\n",
	            NULL, NULL, "    fail_recipients: [\"15550000001\"]\n",
	            "dispatch:\n  max_attempts: 2\n  backoff_base_ms: 50\n  backoff_max_ms: 100\n");
	harness_server_extra(NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_stop_serve(&W);
	world_free(&W);
	close(g_listen_fd);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", g_secrets);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct resp beta(const char *method, const char *path, const char *body)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	return http(method, url, BETA_KEY, body, NULL);
}

static const char *err_field(const struct resp *r, const char *key)
{
	json_t *e = json_object_get(r->json, "error");
	const char *v = json_string_value(json_object_get(e, key));
	return v ? v : "";
}

/* Nothing of alpha's, and nothing of the files read, in an answer. */
static void assert_no_leak(const struct resp *r)
{
	assert_null(strstr(r->body, ALPHA_WA_TOKEN));
	assert_null(strstr(r->body, "alphaBotToken"));
	assert_null(strstr(r->body, "root"));
	assert_null(strstr(r->body, "PRIVATE KEY"));
	assert_null(strstr(r->body, "No such file"));
	assert_null(strstr(r->body, "Permission denied"));
}

/* A channel account body for beta with one field replaced (NULL: none). */
static char *account_body(const char *id, const char *channel, const char *base_url,
                          const char *field, const char *value)
{
	char sa[160];
	snprintf(sa, sizeof sa, "file:%s/other/sa.json", g_secrets);
	json_t *j;
	if (!strcmp(channel, "whatsapp"))
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "channel", channel,
		              "base_url", base_url, "phone_number_id", "555000333", "access_token",
		              "env:HERALD_SECRET_OTHER__WA_TOKEN", "app_secret",
		              "env:HERALD_SECRET_OTHER__WA_TOKEN", "verify_token",
		              "env:HERALD_SECRET_OTHER__WA_TOKEN");
	else if (!strcmp(channel, "sms"))
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "channel", channel,
		              "base_url", base_url, "account_sid",
		              "AC0123456789abcdef0123456789abcdef", "from", "+15005550006",
		              "auth_token", "env:HERALD_SECRET_OTHER__WA_TOKEN");
	else if (!strcmp(channel, "rcs"))
		j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "channel", channel,
		              "base_url", base_url, "agent_id", "beta-agent", "service_account", sa,
		              "client_token", "env:HERALD_SECRET_OTHER__HOOK");
	else
		j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "channel", channel, "base_url",
		              base_url, "bot_token", "env:HERALD_SECRET_OTHER__TG", "webhook_secret",
		              "env:HERALD_SECRET_OTHER__HOOK");
	assert_non_null(j);
	if (field)
		json_object_set_new(j, field, json_string(value));
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* Defects 1-3: alpha's secrets, by every declared field of every channel. */
static void test_cross_tenant_secrets(void **state)
{
	(void)state;
	char alpha_file[160], alpha_sa[160], escape[200];
	snprintf(alpha_file, sizeof alpha_file, "file:%s/acme/wa_token", g_secrets);
	snprintf(alpha_sa, sizeof alpha_sa, "file:%s/acme/sa.json", g_secrets);
	snprintf(escape, sizeof escape, "file:%s/other/../acme/wa_token", g_secrets);
	static const struct {
		const char *channel;
		const char *fields[4];
	} chans[] = {
	    {"whatsapp", {"access_token", "app_secret", "verify_token", NULL}},
	    {"sms", {"auth_token", "api_key_secret", NULL}},
	    {"rcs", {"service_account", "client_token", NULL}},
	    {"telegram", {"bot_token", "webhook_secret", NULL}},
	};
	const char *refs[] = {"env:HERALD_SECRET_ACME__WA_TOKEN", "env:HERALD_SECRET_ACME__TG",
	                      alpha_file, alpha_sa, escape, "file:/etc/shadow", "file:/etc/passwd",
	                      "env:PATH", NULL};
	int refused = 0;
	for (size_t c = 0; c < sizeof chans / sizeof *chans; c++) {
		for (size_t f = 0; chans[c].fields[f]; f++) {
			for (size_t r = 0; refs[r]; r++) {
				char *body = account_body("b-acct", chans[c].channel, W.sim,
				                          chans[c].fields[f], refs[r]);
				if (!strcmp(chans[c].fields[f], "api_key_secret")) {
					json_t *j = json_loads(body, 0, NULL);
					json_object_set_new(
					    j, "api_key_sid",
					    json_string("SK0123456789abcdef0123456789abcdef"));
					free(body);
					body = json_dumps(j, JSON_COMPACT);
					json_decref(j);
				}
				struct resp rs = beta("POST", "/v1/channels", body);
				free(body);
				if (rs.status != 403 ||
				    strcmp(err_field(&rs, "field"), chans[c].fields[f]) != 0)
					fail_msg("%s.%s = %s: %ld %s", chans[c].channel,
					         chans[c].fields[f], refs[r], rs.status, rs.body);
				assert_string_equal(err_field(&rs, "code"), "forbidden");
				assert_no_leak(&rs);
				resp_free(&rs);
				refused++;
			}
		}
	}
	assert_int_equal(refused, 9 * 8);
	/* None was created. */
	struct resp rs = beta("GET", "/v1/channels", NULL);
	assert_int_equal(rs.status, 200);
	assert_int_equal(json_array_size(json_object_get(rs.json, "data")), 0);
	resp_free(&rs);

	/* The same text whether a file exists or not. */
	char *b1 = account_body("b-acct", "whatsapp", W.sim, "access_token", "file:/etc/shadow");
	char *b2 = account_body("b-acct", "whatsapp", W.sim, "access_token", "file:/nonexistent");
	struct resp r1 = beta("POST", "/v1/channels", b1), r2 = beta("POST", "/v1/channels", b2);
	assert_string_equal(r1.body, r2.body);
	resp_free(&r1);
	resp_free(&r2);
	free(b1);
	free(b2);

	/* The positive control: beta's own references work, on every channel
	 * (RBM's token_uri is Google's, an allowed provider origin). */
	const char *chan_ids[][2] = {
	    {"whatsapp", "b-wa"}, {"sms", "b-sms"}, {"rcs", "b-rcs"}, {"telegram", "b-tg"}};
	for (size_t c = 0; c < 4; c++) {
		char *body = account_body(chan_ids[c][1], chan_ids[c][0], W.sim, NULL, NULL);
		rs = beta("POST", "/v1/channels", body);
		free(body);
		if (rs.status != 201)
			fail_msg("%s: %ld %s", chan_ids[c][0], rs.status, rs.body);
		assert_no_leak(&rs);
		resp_free(&rs);
	}
	rs = beta("GET", "/v1/channels", NULL);
	assert_int_equal(json_array_size(json_object_get(rs.json, "data")), 4);
	assert_null(strstr(rs.body, BETA_WA_TOKEN));
	resp_free(&rs);
}

/* Defect 4: requests to any address with credentials attached. */
static void test_no_requests_elsewhere(void **state)
{
	(void)state;
	char listener[64], localhost[64], v6[64], userinfo[160];
	snprintf(listener, sizeof listener, "http://127.0.0.1:%d", g_listen_port);
	snprintf(localhost, sizeof localhost, "http://localhost:%d", g_listen_port);
	snprintf(v6, sizeof v6, "http://[::1]:%d", g_listen_port);
	snprintf(userinfo, sizeof userinfo, "http://user:pw@%s", W.sim + strlen("http://"));
	const struct {
		const char *url;
		long status;
	} cases[] = {
	    {listener, 403},
	    {localhost, 403},
	    {v6, 403},
	    {"http://169.254.169.254/latest", 403},
	    {"https://graph.facebook.com.evil.test", 403},
	    {"http://graph.facebook.com", 403},
	    {"https://user:pw@graph.facebook.com", 422},
	    {userinfo, 422},
	    {"gopher://127.0.0.1:70", 422},
	};
	const char *channels[] = {"whatsapp", "sms", "rcs", "telegram"};
	for (size_t c = 0; c < 4; c++) {
		for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
			char *body = account_body("b-evil", channels[c], cases[i].url, NULL, NULL);
			struct resp rs = beta("POST", "/v1/channels", body);
			free(body);
			if (rs.status != cases[i].status || strcmp(err_field(&rs, "field"), "base_url"))
				fail_msg("%s %s: %ld %s", channels[c], cases[i].url, rs.status,
				         rs.body);
			resp_free(&rs);
		}
	}
	/* A send naming the refused account finds nothing to send through. */
	struct resp rs = beta("POST", "/v1/messages",
	                      "{\"channel\":\"whatsapp\",\"account\":\"b-evil\",\"to\":"
	                      "\"447911123456\",\"text\":\"x\"}");
	assert_int_equal(rs.status, 422);
	assert_string_equal(err_field(&rs, "field"), "account");
	resp_free(&rs);
	assert_int_equal(listener_connections(), 0);
}

/* s with every `from` replaced by `to` (heap). */
static char *subst(const char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	char *out = malloc(strlen(s) * (tl > fl ? tl : 1) + 1);
	assert_non_null(out);
	while (*s) {
		if (strncmp(s, from, fl) == 0) {
			memcpy(out + n, to, tl);
			n += tl;
			s += fl;
		} else {
			out[n++] = *s++;
		}
	}
	out[n] = '\0';
	return out;
}

/* Defect 7 (ids): every route answers beta alike for alpha's ids and for ids
 * that exist nowhere; beta may have an account of the same id. */
static void test_ids_invisible(void **state)
{
	(void)state;
	/* Something of alpha's to look for. */
	struct resp rs = api_post(&W, "/v1/messages",
	                          "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"a\"}");
	assert_int_equal(rs.status, 202);
	char alpha_msg[64];
	snprintf(alpha_msg, sizeof alpha_msg, "%s", json_string_value(json_object_get(rs.json, "id")));
	resp_free(&rs);

	const struct {
		const char *method, *fmt, *body_fmt;
	} routes[] = {
	    {"GET", "/v1/channels/%s", NULL},
	    {"GET", "/v1/channels/%s/capabilities?to=%%2B447911123456", NULL},
	    {"POST", "/v1/messages",
	     "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"447911123456\",\"text\":\"x\"}"},
	};
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
		char path[256], body[256], path2[256], body2[256];
		snprintf(path, sizeof path, routes[i].fmt, "acme-wa");
		snprintf(path2, sizeof path2, routes[i].fmt, "zz-nowhere");
		if (routes[i].body_fmt) {
			snprintf(body, sizeof body, routes[i].body_fmt, "acme-wa");
			snprintf(body2, sizeof body2, routes[i].body_fmt, "zz-nowhere");
		}
		struct resp a = beta(routes[i].method, path, routes[i].body_fmt ? body : NULL);
		struct resp b = beta(routes[i].method, path2, routes[i].body_fmt ? body2 : NULL);
		if (a.status != b.status || strcmp(err_field(&a, "code"), err_field(&b, "code")) ||
		    strcmp(err_field(&a, "field"), err_field(&b, "field")))
			fail_msg("%s %s: %ld %s vs %ld %s", routes[i].method, path, a.status, a.body,
			         b.status, b.body);
		assert_true(a.status == 404 || a.status == 422);
		/* The texts differ only by the id. */
		char *m = subst(err_field(&a, "message"), "acme-wa", "zz-nowhere");
		assert_string_equal(m, err_field(&b, "message"));
		free(m);
		resp_free(&a);
		resp_free(&b);
	}
	char path[128];
	snprintf(path, sizeof path, "/v1/messages/%s", alpha_msg);
	struct resp a = beta("GET", path, NULL);
	struct resp b = beta("GET", "/v1/messages/01JZZZZZZZZZZZZZZZZZZZZZZZ", NULL);
	assert_int_equal(a.status, 404);
	assert_int_equal(b.status, 404);
	assert_string_equal(err_field(&a, "code"), err_field(&b, "code"));
	resp_free(&a);
	resp_free(&b);

	/* beta creates "acme-wa" of its own: 201, in its id space... */
	char *body = account_body("acme-wa", "whatsapp", W.sim, NULL, NULL);
	rs = beta("POST", "/v1/channels", body);
	free(body);
	if (rs.status != 201)
		fail_msg("create: %ld %s", rs.status, rs.body);
	assert_string_equal(json_string_value(json_object_get(rs.json, "id")), "acme-wa");
	assert_non_null(strstr(json_string_value(json_object_get(rs.json, "webhook_url")),
	                       "/webhooks/whatsapp/other~acme-wa"));
	resp_free(&rs);
	/* ... alpha's is untouched ... */
	rs = api_get(&W, "/v1/channels/acme-wa");
	assert_int_equal(rs.status, 200);
	json_t *cfg = json_object_get(rs.json, "config");
	assert_string_equal(json_string_value(json_object_get(cfg, "phone_number_id")),
	                    "106540352242922");
	const char *wh = json_string_value(json_object_get(rs.json, "webhook_url"));
	assert_non_null(wh);
	assert_non_null(strstr(wh, "/webhooks/whatsapp/acme-wa"));
	resp_free(&rs);
	/* ... and a send through "acme-wa" by beta goes through beta's. */
	rs = beta("POST", "/v1/messages",
	          "{\"channel\":\"whatsapp\",\"account\":\"acme-wa\",\"to\":\"447911123456\","
	          "\"text\":\"beta's\",\"mode\":\"sync\"}");
	if (rs.status != 200)
		fail_msg("beta send: %ld %s", rs.status, rs.body);
	assert_string_equal(json_string_value(json_object_get(rs.json, "account")), "acme-wa");
	assert_string_equal(json_string_value(json_object_get(rs.json, "status")), "sent");
	resp_free(&rs);
	assert_int_equal(listener_connections(), 0);
}

struct msg_wait {
	const char *key;
	char path[128];
	const char *status;
};

static bool msg_has_status(struct world *w, void *arg)
{
	struct msg_wait *m = arg;
	char url[256];
	snprintf(url, sizeof url, "%s%s", w->api, m->path);
	struct resp r = http("GET", url, m->key, NULL, NULL);
	bool ok = r.status == 200 &&
	          json_string_value(json_object_get(r.json, "status")) &&
	          !strcmp(json_string_value(json_object_get(r.json, "status")), m->status);
	resp_free(&r);
	return ok;
}

/* What a non-provider host answers stays with Herald; the operator's own
 * account through the same host shows the provider's text. */
static void test_answers_masked(void **state)
{
	(void)state;
	const char *send = "{\"channel\":\"whatsapp\",\"account\":\"b-wa\",\"to\":\"15550000001\","
	                   "\"text\":\"fails\"}";
	struct resp rs = beta("POST", "/v1/messages", send);
	assert_int_equal(rs.status, 202);
	struct msg_wait m = {.key = BETA_KEY, .status = "failed"};
	snprintf(m.path, sizeof m.path, "/v1/messages/%s",
	         json_string_value(json_object_get(rs.json, "id")));
	resp_free(&rs);
	assert_true(wait_until(msg_has_status, &W, &m, 20));
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.api, m.path);
	rs = http("GET", url, BETA_KEY, NULL, NULL);
	json_t *e = json_object_get(rs.json, "error");
	const char *text = json_string_value(json_object_get(e, "message"));
	assert_non_null(text);
	assert_string_equal(text, "HTTP 400 (answer withheld: not a provider's host)");
	/* The class and the provider's code still count. */
	assert_true(strlen(json_string_value(json_object_get(e, "code"))) > 0);
	resp_free(&rs);

	rs = api_post(&W, "/v1/messages",
	              "{\"channel\":\"whatsapp\",\"to\":\"15550000001\",\"text\":\"fails\"}");
	assert_int_equal(rs.status, 202);
	struct msg_wait m2 = {.key = W.key, .status = "failed"};
	snprintf(m2.path, sizeof m2.path, "/v1/messages/%s",
	         json_string_value(json_object_get(rs.json, "id")));
	resp_free(&rs);
	assert_true(wait_until(msg_has_status, &W, &m2, 20));
	rs = api_get(&W, m2.path);
	text = json_string_value(json_object_get(json_object_get(rs.json, "error"), "message"));
	assert_non_null(text);
	assert_null(strstr(text, "withheld"));
	resp_free(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cross_tenant_secrets),
	    cmocka_unit_test(test_no_requests_elsewhere),
	    cmocka_unit_test(test_ids_invisible),
	    cmocka_unit_test(test_answers_masked),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
