/*
 * fuzz_messages.c - the JSON API bodies of POST /v1/messages and
 * POST /v1/messages:batch (src/api/messages.c, src/api/content.c): the
 * envelope (channel, account, to, priority, mode, expiry, route and
 * fallback, callback_url), the content (text, buttons, actions, media,
 * card, carousel, template with header and buttons checked against the
 * template's declaration, rendered), then each channel adapter's
 * validation and recipient normalisation. Everything up to the store's
 * write, through api_messages_validate: no server, no connection, nothing
 * written.
 *
 * Byte 0: bit 0 batch (else single), bits 1-2 the caller's unit ("",
 * "cards", "loans"; a unit key). The rest is the body, decoded as
 * api_body_object decodes it (json_loadb, JSON_REJECT_DUPLICATES; a body
 * that is not an object is answered before validation).
 *
 * The accounts (tenant t1: one per channel, a unit's own SMS account;
 * tenant t2: one) are loaded by account_set_load_policy from a stand-in
 * store that only lists them and looks templates up from a table.
 * Oracles beyond the sanitizers: an accepted request's answer is a JSON
 * object naming as many messages as were given, each sent from the
 * caller's own tenant (never t2's account) and, for a unit caller, never a
 * sibling unit's; every refusal names a field or says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "api/api_int.h"
#include "webhooks/callbacks.h"

struct tpl {
	const char *channel, *name, *lang, *body, *config;
};
static const struct tpl TEMPLATES[] = {
    {"whatsapp", "payment_reminder", "en_GB", "Hi {{1}}, your payment of {{2}} is due on {{3}}.",
     "{\"header\":{\"type\":\"document\",\"params\":1},\"buttons\":[{\"type\":\"quick_reply\","
     "\"params\":1},{\"type\":\"url\",\"params\":1}],\"delivery_policy\":\"at_most_once\"}"},
    {"whatsapp", "otp", "en", "{{1}} is your verification code.",
     "{\"fallback\":{\"route\":[\"whatsapp\",\"sms\"],\"fallback_after_s\":60}}"},
    {"whatsapp", "hello", "en", "Hello!", NULL},
    {"sms", "otp", "en", "{{1}} is your Demo Bank code.",
     "{\"regulatory\":{\"dlt_entity_id\":\"1101\",\"dlt_template_id\":\"77\"}}"},
    {"rcs", "promo", "en", "Hello {{1}}, see {{2}}",
     "{\"header\":{\"type\":\"text\",\"params\":1}}"},
    {"telegram", "otp", "en", "Code: {{1}}",
     "{\"fallback\":{\"route\":[\"whatsapp\",\"sms\"],"
     "\"fallback_text\":\"Your code\"}}"},
};

static char *g_rbm_sa; /* the service-account JSON (env:FZ_MSG_RBM_SA) */

static int fake_template_get(struct store *st, const char *tenant, const char *channel,
                             const char *name, const char *language, struct template_row *out)
{
	(void)st;
	if (strcmp(tenant, "t1") != 0)
		return HR_ENOTFOUND;
	for (size_t i = 0; i < sizeof TEMPLATES / sizeof TEMPLATES[0]; i++) {
		const struct tpl *t = &TEMPLATES[i];
		if (strcmp(t->channel, channel) || strcmp(t->name, name) ||
		    strcmp(t->lang, language))
			continue;
		memset(out, 0, sizeof *out);
		hr_strlcpy(out->tenant_id, tenant, sizeof out->tenant_id);
		hr_strlcpy(out->channel, channel, sizeof out->channel);
		hr_strlcpy(out->name, name, sizeof out->name);
		hr_strlcpy(out->language, language, sizeof out->language);
		out->body = strdup(t->body);
		out->config = t->config ? strdup(t->config) : NULL;
		if (!out->body || (t->config && !out->config))
			abort();
		return 0;
	}
	return HR_ENOTFOUND;
}

struct acct {
	const char *id, *tenant, *unit, *channel, *config;
};
static const struct acct ACCOUNTS[] = {
    {"wa1", "t1", "", "whatsapp",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"phone_number_id\":\"106540352242922\","
     "\"access_token\":\"tok\",\"app_secret\":\"app-secret-123\",\"verify_token\":\"v\"}"},
    {"sms1", "t1", "", "sms",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"account_sid\":\"AC0123456789abcdef0123456789abcdef\","
     "\"auth_token\":\"12345\",\"from\":\"+15005550006\"}"},
    {"t1~cards-sms", "t1", "cards", "sms",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"account_sid\":\"AC0123456789abcdef0123456789abcdef\","
     "\"auth_token\":\"12345\",\"messaging_service_sid\":\"MG0123456789abcdef0123456789abcdef\"}"},
    {"rcs1", "t1", "", "rcs",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"agent_id\":\"herald_demo_agent\","
     "\"service_account\":\"env:FZ_MSG_RBM_SA\",\"client_token\":\"SJENCPGJESMGUFPY\"}"},
    {"tg1", "t1", "", "telegram",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"bot_token\":\"123456789:AAH-test_token\","
     "\"webhook_secret\":\"tg-Secret_42\"}"},
    {"wa2", "t2", "", "whatsapp",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"phone_number_id\":\"2\",\"access_token\":\"t\","
     "\"app_secret\":\"s\",\"verify_token\":\"v\"}"},
};
#define NACCT (sizeof ACCOUNTS / sizeof ACCOUNTS[0])

static int fake_account_list(struct store *st, const char *tenant_id, struct account_row **out,
                             size_t *n)
{
	(void)st, (void)tenant_id;
	struct account_row *rows = calloc(NACCT, sizeof *rows);
	if (!rows)
		abort();
	for (size_t i = 0; i < NACCT; i++) {
		hr_strlcpy(rows[i].id, ACCOUNTS[i].id, sizeof rows[i].id);
		hr_strlcpy(rows[i].tenant_id, ACCOUNTS[i].tenant, sizeof rows[i].tenant_id);
		hr_strlcpy(rows[i].unit_id, ACCOUNTS[i].unit, sizeof rows[i].unit_id);
		hr_strlcpy(rows[i].channel, ACCOUNTS[i].channel, sizeof rows[i].channel);
		rows[i].config = strdup(ACCOUNTS[i].config);
	}
	*out = rows;
	*n = NACCT;
	return 0;
}

static const struct store_ops FAKE_OPS = {
    .account_list = fake_account_list,
    .template_get = fake_template_get,
};
static struct store g_store = {.ops = &FAKE_OPS};
static struct account_set g_accounts;
static struct callback_policy g_cbpol;
static struct callback_tenant g_cbt[2];
static struct api_server g_srv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	char *pem;
	if (!k || !b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	long pn = BIO_get_mem_data(b, &pem);
	char *pemz = strndup(pem, (size_t)pn);
	json_t *sa =
	    json_pack("{s:s, s:s, s:s}", "private_key", pemz, "client_email",
	              "h@rbm.iam.gserviceaccount.com", "token_uri", "http://127.0.0.1:9/t");
	g_rbm_sa = sa ? json_dumps(sa, JSON_COMPACT) : NULL;
	if (!g_rbm_sa)
		abort();
	setenv("FZ_MSG_RBM_SA", g_rbm_sa, 1);
	json_decref(sa);
	free(pemz);
	BIO_free(b);
	EVP_PKEY_free(k);

	struct hr_err err = {0};
	if (account_set_load_policy(&g_store, NULL, &g_accounts, &err) != 0 ||
	    g_accounts.n != NACCT) {
		fprintf(stderr, "fuzz: accounts: %s\n", err.msg);
		abort();
	}
	/* t1 signs callbacks (so a callback_url is taken); t2 has none. */
	hr_strlcpy(g_cbt[0].id, "t1", sizeof g_cbt[0].id);
	g_cbt[0].url = strdup("https://client.example/herald");
	g_cbt[0].secret = strdup("callback-secret");
	g_cbt[0].secret_len = strlen(g_cbt[0].secret);
	hr_strlcpy(g_cbt[1].id, "t2", sizeof g_cbt[1].id);

	api_opts_default(&g_srv.o);
	g_srv.o.store = &g_store;
	g_srv.o.accounts = &g_accounts;
	g_srv.o.callback_policy = &g_cbpol;
	g_srv.o.callback_tenants = g_cbt;
	g_srv.o.ncallback_tenants = 2;
	g_srv.o.max_batch = 64; /* the limit's path, without 10,000-item inputs */
	g_srv.o.sync_timeout_us = 10000000;
	g_srv.o.sync_max_timeout_us = 60000000;
	g_srv.max_attempts = 8;
	return 0;
}

static const char *const UNITS[] = {"", "cards", "loans", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	bool batch = data[0] & 1;
	const char *unit = UNITS[(data[0] >> 1) & 3];
	json_t *root = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return 0;
	}
	struct api_req r;
	memset(&r, 0, sizeof r);
	r.srv = &g_srv;
	hr_strlcpy(r.tenant, "t1", sizeof r.tenant);
	hr_strlcpy(r.who.tenant, "t1", sizeof r.who.tenant);
	hr_strlcpy(r.who.unit, unit, sizeof r.who.unit);
	r.who.scopes = SCOPE_ALL;
	char *resp = NULL;
	struct hr_err err = {0};
	int rc = api_messages_validate(&r, root, batch, &resp, &err);
	if (getenv(
	        "FUZZ_VERBOSE")) /* what each seed gets: FUZZ_VERBOSE=1 fuzz_messages -runs=0 DIR */
		fprintf(stderr, "rc %d field '%s': %s\n%s\n", rc, err.field, err.msg,
		        resp ? resp : "");
	if (rc == 0) {
		json_t *a = resp ? json_loads(resp, 0, NULL) : NULL;
		if (!json_is_object(a))
			abort();
		if (batch) {
			size_t n = json_array_size(json_object_get(root, "messages"));
			if ((size_t)json_integer_value(json_object_get(a, "count")) != n ||
			    json_array_size(json_object_get(a, "messages")) != n)
				abort();
		} else {
			const char *acc = json_string_value(json_object_get(a, "account"));
			if (!acc || strcmp(acc, "wa2") == 0 ||
			    (unit[0] && strcmp(acc, "cards-sms") == 0 &&
			     strcmp(unit, "cards") != 0))
				abort();
		}
		json_decref(a);
	} else if (err.msg[0] == '\0' ||
	           (rc == HR_EINVAL && err.field[0] == '\0' && !strstr(err.msg, "JSON object") &&
	            strcmp(err.msg, "unknown field ''") != 0)) {
		abort();
	}
	free(resp);
	json_decref(root);
	return 0;
}
