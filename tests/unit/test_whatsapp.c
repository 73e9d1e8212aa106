/*
 * test_whatsapp.c - the WhatsApp adapter and the channel registry: the
 * PROVIDERS.md signature vector, handshakes, request bodies field by field,
 * error classification, webhook parsing (and its error paths), recipient
 * normalisation, content validation, account loading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "channels/channel.h"
#include "core/crypto.h"
#include "core/jsonr.h"
#include "herald.h"
#include "fastbody_test.h"
#include "webhook_same_test.h"

#include "channel_test.h"

#define VEC_SECRET "app-secret-123"
#define VEC_BODY                                                                                   \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\","        \
	"\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"               \
	"\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},"       \
	"\"statuses\":[{\"id\":\"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3\",\"status\":\"delivered\","   \
	"\"timestamp\":\"1750263773\",\"recipient_id\":\"15550123456\"}]},\"field\":"              \
	"\"messages\"}]}]}"
#define VEC_SIG "sha256=9ac0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f"

#define ACCT_CONFIG                                                                                \
	"{\"base_url\":\"http://127.0.0.1:9090/\",\"phone_number_id\":\"106540352242922\","        \
	"\"access_token\":\"tok-123\",\"app_secret\":\"" VEC_SECRET "\","                          \
	"\"verify_token\":\"env:WA_TEST_VERIFY\"}"

static struct channel_account *load(const char *id, const char *config, struct hr_err *err)
{
	return channel_test_load("whatsapp", id, config, err);
}

static int setup(void **state)
{
	(void)state;
	setenv("WA_TEST_VERIFY", "verify-me", 1);
	return 0;
}

/* ---- a fake wh_request: headers and query arguments from small tables ---- */

struct kv {
	const char *k, *v;
};
struct fake_req {
	struct kv headers[4];
	struct kv query[4];
};

static const char *fake_header(void *ctx, const char *name)
{
	struct fake_req *f = ctx;
	for (int i = 0; i < 4 && f->headers[i].k; i++)
		if (strcasecmp(f->headers[i].k, name) == 0)
			return f->headers[i].v;
	return NULL;
}

static const char *fake_query(void *ctx, const char *name)
{
	struct fake_req *f = ctx;
	for (int i = 0; i < 4 && f->query[i].k; i++)
		if (strcmp(f->query[i].k, name) == 0)
			return f->query[i].v;
	return NULL;
}

static struct wh_request mkreq(struct fake_req *f, const char *method, const char *body)
{
	struct wh_request r = {.method = method,
	                       .url = "http://127.0.0.1/webhooks/whatsapp/wa1",
	                       .body = body,
	                       .body_len = body ? strlen(body) : 0,
	                       .header = fake_header,
	                       .query = fake_query,
	                       .ctx = f};
	return r;
}

/* ---- signatures ---- */

static void test_signature_vector(void **state)
{
	(void)state;
	char hex[65];
	hr_hmac_sha256_hex(VEC_SECRET, strlen(VEC_SECRET), VEC_BODY, strlen(VEC_BODY), hex);
	assert_string_equal(hex, VEC_SIG + 7);

	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct fake_req f = {.headers = {{"x-hub-signature-256", VEC_SIG}}};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);

	/* Upper-case hex is the same signature. */
	char upper[80];
	hr_strlcpy(upper, VEC_SIG, sizeof upper);
	for (char *p = upper + 7; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	f.headers[0].v = upper;
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	channel_account_free(a);
}

static void test_signature_rejections(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	char wrong[80];
	hr_strlcpy(wrong, VEC_SIG, sizeof wrong);
	wrong[20] = wrong[20] == '0' ? '1' : '0';
	struct {
		const char *sig;
		const char *body;
		const char *says;
	} cases[] = {
	    {NULL, VEC_BODY, "missing"},
	    {"", VEC_BODY, "missing"},
	    {"sha1=9ac0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f", VEC_BODY,
	     "malformed"},
	    {"sha256=9ac0e078", VEC_BODY, "malformed"},
	    {"sha256=zzc0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f", VEC_BODY,
	     "malformed"},
	    {wrong, VEC_BODY, "does not match"},
	    {VEC_SIG, VEC_BODY " ", "does not match"}, /* one extra byte */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fake_req f = {.headers = {{"X-Hub-Signature-256", cases[i].sig}}};
		if (!cases[i].sig)
			f.headers[0].k = NULL;
		struct wh_request r = mkreq(&f, "POST", cases[i].body);
		hr_err_clear(&err);
		assert_int_equal(a->ops->webhook_verify(a, &r, &err), HR_EAUTH);
		assert_string_equal(err.field, "X-Hub-Signature-256");
		if (!strstr(err.msg, cases[i].says))
			fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, cases[i].says);
	}
	/* Same body, another account's secret. */
	a = (channel_account_free(a), NULL);
	a = load("wa2",
	         "{\"base_url\":\"http://127.0.0.1:1\",\"phone_number_id\":\"1\","
	         "\"access_token\":\"t\",\"app_secret\":\"other\",\"verify_token\":\"v\"}",
	         &err);
	assert_non_null(a);
	struct fake_req f = {.headers = {{"X-Hub-Signature-256", VEC_SIG}}};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), HR_EAUTH);
	channel_account_free(a);
}

static void test_handshake(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct {
		const char *mode, *token, *challenge;
		int status;
	} cases[] = {
	    {"subscribe", "verify-me", "1158201444", 200},
	    {"subscribe", "verify-mE", "1158201444", 403},
	    {"subscribe", "verify-me-too", "1158201444", 403},
	    {"unsubscribe", "verify-me", "1158201444", 403},
	    {NULL, "verify-me", "1158201444", 403},
	    {"subscribe", NULL, "1158201444", 403},
	    {"subscribe", "verify-me", NULL, 403},
	    {"subscribe", "verify-me", "", 403},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fake_req f = {.query = {{"hub.mode", cases[i].mode},
		                               {"hub.verify_token", cases[i].token},
		                               {"hub.challenge", cases[i].challenge}}};
		/* A NULL value means the argument is absent. */
		for (int k = 0; k < 3; k++)
			if (!f.query[k].v)
				f.query[k].k = "absent";
		struct wh_request r = mkreq(&f, "GET", NULL);
		int status = 0;
		char *body = NULL;
		assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &body), 1);
		assert_non_null(body);
		if (status != cases[i].status)
			fail_msg("case %zu: status %d, want %d", i, status, cases[i].status);
		if (status == 200)
			assert_string_equal(body, cases[i].challenge);
		free(body);
	}
	char key[128] = "x";
	struct fake_req f = {0};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	/* An event POST is not a handshake: it goes on to the signature check. */
	int status = 0;
	char *body = NULL;
	assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &body), 0);
	assert_null(body);
	a->ops->webhook_dedupe_key(&r, key);
	assert_string_equal(key, "");
	channel_account_free(a);
}

/* ---- accounts and the registry ---- */

static void test_account_config_errors(void **state)
{
	(void)state;
	struct {
		const char *config;
		const char *field;
	} cases[] = {
	    {"[1]", "accounts[wa1]"},
	    {"{\"phone_number_id\":\"1\",\"access_token\":\"t\",\"app_secret\":\"s\","
	     "\"verify_token\":\"v\"}",
	     "accounts[wa1].base_url"},
	    {"{\"base_url\":\"ftp://x\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"app_secret\":\"s\",\"verify_token\":\"v\"}",
	     "accounts[wa1].base_url"},
	    {"{\"base_url\":\"http://127.0.0.1:1\",\"access_token\":\"t\",\"app_secret\":\"s\","
	     "\"verify_token\":\"v\"}",
	     "accounts[wa1].phone_number_id"},
	    {"{\"base_url\":\"http://127.0.0.1:1\",\"phone_number_id\":\"1/../2\","
	     "\"access_token\":\"t\",\"app_secret\":\"s\",\"verify_token\":\"v\"}",
	     "accounts[wa1].phone_number_id"},
	    {"{\"base_url\":\"http://127.0.0.1:1\",\"phone_number_id\":\"1\","
	     "\"api_version\":\"latest\",\"access_token\":\"t\",\"app_secret\":\"s\","
	     "\"verify_token\":\"v\"}",
	     "accounts[wa1].api_version"},
	    {"{\"base_url\":\"http://127.0.0.1:1\",\"phone_number_id\":\"1\",\"app_secret\":\"s\","
	     "\"verify_token\":\"v\"}",
	     "accounts[wa1].access_token"},
	    {"{\"base_url\":\"http://"
	     "127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"verify_token\":\"v\"}",
	     "accounts[wa1].app_secret"},
	    {"{\"base_url\":\"http://"
	     "127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"app_secret\":\"env:WA_TEST_SURELY_UNSET\",\"verify_token\":\"v\"}",
	     "accounts[wa1].app_secret"},
	    {"{\"base_url\":\"http://"
	     "127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"app_secret\":\"s\"}",
	     "accounts[wa1].verify_token"},
	    {"{\"base_url\":\"http://"
	     "127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"app_secret\":\"s\",\"verify_token\":\"v\",\"rate_limit\":\"fast\"}",
	     "accounts[wa1].rate_limit"},
	    {"{\"base_url\":\"http://"
	     "127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":\"t\","
	     "\"app_secret\":\"s\",\"verify_token\":\"v\",\"rate_limit\":0}",
	     "accounts[wa1].rate_limit"},
	};
	unsetenv("WA_TEST_SURELY_UNSET");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err = {0};
		struct channel_account *a = load("wa1", cases[i].config, &err);
		if (a)
			fail_msg("case %zu loaded", i);
		assert_int_equal(err.code, HR_EINVAL);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
	}
	struct account_row row = {.id = "x", .tenant_id = "t", .channel = "pigeon", .config = "{}"};
	struct channel_account *a = NULL;
	struct hr_err err = {0};
	assert_int_equal(channel_account_new(&row, &a, &err), HR_EINVAL);
	assert_string_equal(err.field, "accounts[x].channel");
	assert_null(channel_find("pigeon"));
	assert_ptr_equal(channel_find("whatsapp"), &channel_whatsapp);
	assert_true(channel_whatsapp.has_receipts);
}

static void test_account_rate_limit(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	assert_true(a->rate_limit == 80.0);
	assert_string_equal(a->tenant_id, "t1");
	channel_account_free(a);
	a = load("wa1",
	         "{\"base_url\":\"http://127.0.0.1:1\",\"phone_number_id\":\"1\",\"access_token\":"
	         "\"t\",\"app_secret\":\"s\",\"verify_token\":\"v\",\"rate_limit\":\"250\"}",
	         &err);
	assert_non_null(a);
	assert_true(a->rate_limit == 250.0);
	channel_account_free(a);
}

/* A store that only lists accounts, for account_set_load. */
struct fake_store {
	struct store base;
	const char *configs[3];
	const char *ids[3];
	size_t n;
};

static int fake_account_list(struct store *st, const char *tenant_id, struct account_row **out,
                             size_t *n)
{
	(void)tenant_id;
	struct fake_store *fs = (struct fake_store *)st;
	*out = calloc(fs->n, sizeof **out);
	for (size_t i = 0; i < fs->n; i++) {
		hr_strlcpy((*out)[i].id, fs->ids[i], sizeof(*out)[i].id);
		hr_strlcpy((*out)[i].tenant_id, "t1", sizeof(*out)[i].tenant_id);
		hr_strlcpy((*out)[i].channel, "whatsapp", sizeof(*out)[i].channel);
		(*out)[i].config = strdup(fs->configs[i]);
	}
	*n = fs->n;
	return 0;
}

static const struct store_ops fake_ops = {.name = "fake", .account_list = fake_account_list};

static void test_account_set(void **state)
{
	(void)state;
	struct fake_store fs = {.base = {&fake_ops},
	                        .n = 3,
	                        .ids = {"zeta", "alpha", "mid"},
	                        .configs = {ACCT_CONFIG, ACCT_CONFIG, ACCT_CONFIG}};
	struct account_set set;
	struct hr_err err = {0};
	assert_int_equal(account_set_load(&fs.base, &set, &err), 0);
	assert_int_equal(set.n, 3);
	assert_string_equal(account_set_find(&set, "mid")->id, "mid");
	assert_string_equal(account_set_find(&set, "zeta")->id, "zeta");
	assert_string_equal(account_set_find(&set, "alpha")->id, "alpha");
	assert_null(account_set_find(&set, "beta"));
	assert_null(account_set_find(&set, NULL));
	account_set_clear(&set);
	assert_int_equal(set.n, 0);

	/* One bad account fails the set and is named. */
	fs.configs[1] = "{\"base_url\":\"http://127.0.0.1:1\"}";
	assert_int_equal(account_set_load(&fs.base, &set, &err), HR_EINVAL);
	assert_string_equal(err.field, "accounts[alpha].phone_number_id");
	assert_int_equal(set.n, 0);
	assert_null(set.items);
}

/* ---- recipients and content ---- */

static void test_normalize_recipient(void **state)
{
	(void)state;
	static const struct recipient_case cases[] = {
	    {"+44 7911 123456", "447911123456"},
	    {"447911123456", "447911123456"},
	    {"(44) 7911-123456", "447911123456"},
	    {"+1 (555) 012-3456", "15550123456"},
	    {"(+44) 7911 123456", "447911123456"},
	    {"12345678", "12345678"},
	    {"123456789012345", "123456789012345"},
	    {"1234567", NULL},          /* too short */
	    {"1234567890123456", NULL}, /* 16 digits */
	    {"++447911123456", NULL},
	    {"44+7911123456", NULL},
	    {"447911.123456", "447911123456"}, /* dots are separators, as for SMS and RCS */
	    {"07911 123456", NULL},            /* national format */
	    {"+44 7911 12345a", NULL},
	    {"", NULL},
	    {"   ", NULL},
	    {NULL, NULL},
	};
	check_recipients(&channel_whatsapp, cases, sizeof cases / sizeof cases[0]);
}

static char *repeat(const char *unit, size_t n)
{
	size_t u = strlen(unit);
	char *s = malloc(u * n + 1);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	s[u * n] = '\0';
	return s;
}

static void test_validate(void **state)
{
	(void)state;
	char *t4096 = repeat("é", 4096); /* 8192 bytes, 4096 characters: fits */
	char *t4097 = repeat("a", 4097);
	char *p1025 = repeat("x", 1025);
	char *n513 = repeat("a", 513);
	struct {
		json_t *content;
		const char *field; /* NULL: valid */
	} cases[] = {
	    {json_pack("{s:s,s:s}", "type", "text", "text", "Hello"), NULL},
	    {json_pack("{s:s,s:s}", "type", "text", "text", t4096), NULL},
	    {json_pack("{s:s,s:s}", "type", "text", "text", t4097), "text"},
	    {json_pack("{s:s,s:s}", "type", "text", "text", ""), "text"},
	    {json_pack("{s:s,s:i}", "type", "text", "text", 5), "text"},
	    {json_pack("{s:s}", "text", "no type"), "type"},
	    {json_pack("{s:s}", "type", "card"), "type"},
	    {json_pack("{s:s}", "type", "image"), "image"},
	    {json_pack("[]"), "content"},
	    {json_pack("{s:s,s:{s:s,s:s,s:[s,s]}}", "type", "template", "template", "name",
	               "payment_reminder", "language", "en_GB", "parameters", "Ana", "£120.00"),
	     NULL},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", "otp",
	               "language", "en"),
	     NULL},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", "otp",
	               "language", "fil"),
	     NULL},
	    {json_pack("{s:s,s:s}", "type", "template", "template", "x"), "template"},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", "Payment",
	               "language", "en"),
	     "template.name"},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", n513,
	               "language", "en"),
	     "template.name"},
	    {json_pack("{s:s,s:{s:s}}", "type", "template", "template", "language", "en"),
	     "template.name"},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", "otp",
	               "language", "english"),
	     "template.language"},
	    {json_pack("{s:s,s:{s:s,s:s}}", "type", "template", "template", "name", "otp",
	               "language", "en_gb"),
	     "template.language"},
	    {json_pack("{s:s,s:{s:s}}", "type", "template", "template", "name", "otp"),
	     "template.language"},
	    {json_pack("{s:s,s:{s:s,s:s,s:s}}", "type", "template", "template", "name", "otp",
	               "language", "en", "parameters", "Ana"),
	     "template.parameters"},
	    {json_pack("{s:s,s:{s:s,s:s,s:[s,s,s]}}", "type", "template", "template", "name", "otp",
	               "language", "en", "parameters", "a", "b", ""),
	     "template.parameters[2]"},
	    {json_pack("{s:s,s:{s:s,s:s,s:[s,i]}}", "type", "template", "template", "name", "otp",
	               "language", "en", "parameters", "a", 7),
	     "template.parameters[1]"},
	    {json_pack("{s:s,s:{s:s,s:s,s:[s]}}", "type", "template", "template", "name", "otp",
	               "language", "en", "parameters", p1025),
	     "template.parameters[0]"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_non_null(cases[i].content);
		struct hr_err err = {0};
		int rc = channel_whatsapp.validate(cases[i].content, &err);
		if (!cases[i].field && rc)
			fail_msg("case %zu rejected: %s", i, err.msg);
		if (cases[i].field) {
			if (rc != HR_EINVAL)
				fail_msg("case %zu accepted", i);
			if (strcmp(err.field, cases[i].field) != 0)
				fail_msg("case %zu: field '%s', want '%s'", i, err.field,
				         cases[i].field);
		}
		json_decref(cases[i].content);
	}
	free(t4096);
	free(t4097);
	free(p1025);
	free(n513);
}

/*
 * Every content shape of channel.h against WhatsApp's rules, as JSON text:
 * NULL field means valid, otherwise the field the error must name.
 */
static void test_validate_types(void **state)
{
	(void)state;
#define TPL(extra)                                                                                 \
	"{\"type\":\"template\",\"template\":{\"name\":\"statement\",\"language\":\"en_GB\"" extra \
	"}}"
	char *t1024 = repeat("b", 1024), *t1025 = repeat("b", 1025), *id256 = repeat("i", 256);
	char *id257 = repeat("i", 257), *t61 = repeat("h", 61), *c1025 = repeat("ç", 1025);
	char long_body[1200], long_id[400], long_id2[400], head61[200], cap[2200], okbody[1200];
	snprintf(okbody, sizeof okbody,
	         "{\"type\":\"text\",\"text\":\"%s\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"}]}",
	         t1024);
	snprintf(long_body, sizeof long_body,
	         "{\"type\":\"text\",\"text\":\"%s\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"}]}",
	         t1025);
	snprintf(long_id, sizeof long_id,
	         "{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"%s\",\"title\":\"A\"}]}",
	         id256);
	snprintf(long_id2, sizeof long_id2,
	         "{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"%s\",\"title\":\"A\"}]}",
	         id257);
	snprintf(head61, sizeof head61, TPL(",\"header\":{\"type\":\"text\",\"text\":\"%s\"}"),
	         t61);
	snprintf(
	    cap, sizeof cap,
	    "{\"type\":\"image\",\"image\":{\"url\":\"https://x.test/a.png\",\"caption\":\"%s\"}}",
	    c1025);
	struct {
		const char *content;
		const char *field;
	} cases[] = {
	    /* text + reply buttons (interactive) */
	    {"{\"type\":\"text\",\"text\":\"Pay?\",\"buttons\":[{\"id\":\"yes\",\"title\":\"Yes\"},"
	     "{\"id\":\"no\",\"title\":\"No\"},{\"id\":\"later\",\"title\":\"Ask me later!\"}]}",
	     NULL},
	    {okbody, NULL},
	    {long_body, "text"},
	    {long_id, NULL},
	    {long_id2, "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[]}", "buttons"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":{}}", "buttons"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{"
	     "\"id\":"
	     "\"b\",\"title\":\"B\"},{\"id\":\"c\",\"title\":\"C\"},{\"id\":\"d\",\"title\":\"D\"}]"
	     "}",
	     "buttons"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[\"yes\"]}", "buttons[0]"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"title\":\"A\"}]}", "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\"}]}", "buttons[0].title"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"\"}]}",
	     "buttons[0].title"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":"
	     "\"123456789012345678901\"}]}",
	     "buttons[0].title"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":"
	     "\"ééééééééééééééééééé👍\"}]}",
	     NULL}, /* 20 characters, 42 bytes */
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\" a\",\"title\":\"A\"}]}",
	     "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{"
	     "\"id\":\"a\","
	     "\"title\":\"B\"}]}",
	     "buttons[1].id"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{"
	     "\"id\":\"b\","
	     "\"title\":\"A\"}]}",
	     "buttons[1].title"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\","
	     "\"url\":\"https://x\"}]}",
	     "buttons[0].url"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"actions\":[{\"title\":\"Call\",\"dial\":\"+"
	     "1555\"}]}",
	     "actions"},
	    /* options */
	    {"{\"type\":\"text\",\"text\":\"see "
	     "https://x.test\",\"options\":{\"preview_url\":true}}",
	     NULL},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":{\"preview_url\":\"yes\"}}",
	     "options.preview_url"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":{\"parse_mode\":\"HTML\"}}",
	     "options.parse_mode"},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":[]}", "options"},
	    /* document and image */
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.test/s.pdf\","
	     "\"filename\":\"statement.pdf\",\"caption\":\"Your statement\"}}",
	     NULL},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"http://127.0.0.1:1/s.pdf\"}}", NULL},
	    {"{\"type\":\"document\",\"document\":{\"filename\":\"s.pdf\"}}", "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"ftp://x.test/s.pdf\"}}",
	     "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://\"}}", "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.test/a b.pdf\"}}",
	     "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.test/"
	     "s.pdf\",\"filename\":7}}",
	     "document.filename"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.test/"
	     "s.pdf\",\"name\":\"s\"}}",
	     "document.name"},
	    {"{\"type\":\"document\",\"document\":\"https://x.test/s.pdf\"}", "document"},
	    {"{\"type\":\"document\"}", "document"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.test/s.pdf\"},"
	     "\"buttons\":[{\"id\":\"a\",\"title\":\"A\"}]}",
	     "buttons"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x.test/"
	     "a.png\",\"caption\":\"Look\"}}",
	     NULL},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x.test/a.png\",\"filename\":\"a\"}}",
	     "image.filename"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x.test/a.png\",\"caption\":\"\"}}",
	     "image.caption"},
	    {cap, "image.caption"},
	    /* templates with header and buttons */
	    {TPL(",\"parameters\":[\"Ana\"],\"header\":{\"type\":\"document\",\"url\":"
	         "\"https://x.test/s.pdf\",\"filename\":\"s.pdf\"},\"buttons\":[{\"index\":0,"
	         "\"payload\":\"PAY_NOW\"},{\"index\":1,\"text\":\"inv/42\",\"type\":\"url\"}],"
	         "\"regulatory\":{\"dlt_entity_id\":\"1\"}"),
	     NULL},
	    {TPL(",\"header\":{\"type\":\"text\",\"text\":\"Order 42\"}"), NULL},
	    {TPL(",\"header\":{\"type\":\"text\",\"parameters\":[\"Order 42\"]}"), NULL},
	    {TPL(",\"header\":{\"type\":\"image\",\"url\":\"https://x.test/a.png\"}"), NULL},
	    {head61, "template.header.text"},
	    {TPL(",\"header\":{\"type\":\"text\"}"), "template.header.text"},
	    {TPL(",\"header\":{\"type\":\"text\",\"text\":\"a\",\"parameters\":[\"a\"]}"),
	     "template.header.text"},
	    {TPL(",\"header\":{\"type\":\"text\",\"parameters\":[\"a\",\"b\"]}"),
	     "template.header.parameters"},
	    {TPL(",\"header\":{\"type\":\"text\",\"parameters\":[5]}"),
	     "template.header.parameters[0]"},
	    {TPL(",\"header\":{\"type\":\"video\",\"url\":\"https://x.test/v.mp4\"}"),
	     "template.header.type"},
	    {TPL(",\"header\":{\"url\":\"https://x.test/v.mp4\"}"), "template.header.type"},
	    {TPL(",\"header\":\"Order 42\""), "template.header"},
	    {TPL(",\"header\":{\"type\":\"document\"}"), "template.header.url"},
	    {TPL(",\"header\":{\"type\":\"image\",\"url\":\"https://x.test/a.png\",\"filename\":"
	         "\"a.png\"}"),
	     "template.header.filename"},
	    {TPL(",\"buttons\":{}"), "template.buttons"},
	    {TPL(",\"buttons\":[{\"payload\":\"P\"}]"), "template.buttons[0].index"},
	    {TPL(",\"buttons\":[{\"index\":10,\"payload\":\"P\"}]"), "template.buttons[0].index"},
	    {TPL(",\"buttons\":[{\"index\":\"0\",\"payload\":\"P\"}]"),
	     "template.buttons[0].index"},
	    {TPL(",\"buttons\":[{\"index\":0,\"payload\":\"P\"},{\"index\":0,\"payload\":\"Q\"}]"),
	     "template.buttons[1].index"},
	    {TPL(",\"buttons\":[{\"index\":0}]"), "template.buttons[0].payload"},
	    {TPL(",\"buttons\":[{\"index\":0,\"payload\":\"P\",\"text\":\"t\"}]"),
	     "template.buttons[0].payload"},
	    {TPL(",\"buttons\":[{\"index\":0,\"payload\":\"\"}]"), "template.buttons[0].payload"},
	    {TPL(",\"buttons\":[{\"index\":0,\"payload\":\"P\",\"type\":\"url\"}]"),
	     "template.buttons[0].type"},
	    {TPL(",\"buttons\":[{\"index\":0,\"payload\":\"P\",\"title\":\"Pay\"}]"),
	     "template.buttons[0].title"},
	    {TPL(",\"regulatory\":\"x\""), "template.regulatory"},
	    {TPL(",\"category\":\"utility\""), "template.category"},
	    /* RCS-only shapes */
	    {"{\"type\":\"card\",\"card\":{\"title\":\"t\"}}", "type"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"t\"}]}", "type"},
	    {"{\"type\":\"sticker\"}", "type"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_error_t je;
		json_t *c = json_loads(cases[i].content, 0, &je);
		if (!c)
			fail_msg("case %zu: bad JSON in the test: %s", i, je.text);
		struct hr_err err = {0};
		int rc = channel_whatsapp.validate(c, &err);
		json_decref(c);
		if (!cases[i].field && rc)
			fail_msg("case %zu rejected: %s (%s)", i, err.msg, err.field);
		if (cases[i].field) {
			if (rc != HR_EINVAL)
				fail_msg("case %zu accepted", i);
			if (strcmp(err.field, cases[i].field) != 0)
				fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
				         cases[i].field, err.msg);
			assert_non_null(strstr(err.msg, cases[i].field));
		}
	}
#undef TPL
	free(t1024);
	free(t1025);
	free(id256);
	free(id257);
	free(t61);
	free(c1025);
}

/* ---- build_send ---- */

static bool has_header(const struct curl_slist *h, const char *line)
{
	for (; h; h = h->next)
		if (strcmp(h->data, line) == 0)
			return true;
	return false;
}

static json_t *build(struct channel_account *a, const char *content, struct http_req *req)
{
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0", .recipient = "447911123456"};
	m.content = (char *)content;
	struct hr_err err = {0};
	int rc = a->ops->build_send(a, &m, req, &err);
	if (rc)
		fail_msg("build_send: %s", err.msg);
	assert_int_equal(req->body_len, strlen(req->body));
	json_error_t je;
	json_t *body = json_loads(req->body, 0, &je);
	assert_non_null(body);
	return body;
}

static const char *jstr(json_t *root, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(root, a);
	if (b)
		v = json_object_get(v, b);
	if (c)
		v = json_object_get(v, c);
	return json_string_value(v);
}

static void test_build_send_text(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct http_req req;
	json_t *b = build(a, "{\"type\":\"text\",\"text\":\"Hello \\\"Ana\\\" é\"}", &req);
	assert_string_equal(req.url, "http://127.0.0.1:9090/v21.0/106540352242922/messages");
	assert_true(has_header(req.headers, "Authorization: Bearer tok-123"));
	assert_true(has_header(req.headers, "Content-Type: application/json"));
	assert_null(req.userpwd);
	assert_int_equal(json_object_size(b), 6);
	assert_string_equal(jstr(b, "messaging_product", NULL, NULL), "whatsapp");
	assert_string_equal(jstr(b, "recipient_type", NULL, NULL), "individual");
	assert_string_equal(jstr(b, "to", NULL, NULL), "447911123456");
	assert_string_equal(jstr(b, "type", NULL, NULL), "text");
	assert_string_equal(jstr(b, "text", "body", NULL), "Hello \"Ana\" é");
	assert_true(json_is_false(json_object_get(json_object_get(b, "text"), "preview_url")));
	assert_int_equal(json_object_size(json_object_get(b, "text")), 2);
	assert_string_equal(jstr(b, "biz_opaque_callback_data", NULL, NULL),
	                    "01JABCDEFGHJKMNPQRSTVWXYZ0");
	json_decref(b);
	http_req_clear(&req);
	assert_null(req.url);

	/* Bad content is refused, nothing allocated. */
	struct message m = {.id = "x", .recipient = "447911123456", .content = "{\"type\":1"};
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_null(req.body);
	channel_account_free(a);
}

static void test_build_send_template(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a =
	    load("wa1",
	         "{\"base_url\":\"https://graph.example\",\"api_version\":\"v19.0\","
	         "\"phone_number_id\":\"42\",\"access_token\":\"env:WA_TEST_VERIFY\","
	         "\"app_secret\":\"s\",\"verify_token\":\"v\"}",
	         &err);
	assert_non_null(a);
	struct http_req req;
	json_t *b = build(a,
	                  "{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\","
	                  "\"language\":\"en_GB\",\"parameters\":[\"Ana\",\"£120.00\"]}}",
	                  &req);
	assert_string_equal(req.url, "https://graph.example/v19.0/42/messages");
	assert_true(has_header(req.headers, "Authorization: Bearer verify-me"));
	assert_string_equal(jstr(b, "messaging_product", NULL, NULL), "whatsapp");
	assert_string_equal(jstr(b, "to", NULL, NULL), "447911123456");
	assert_string_equal(jstr(b, "type", NULL, NULL), "template");
	assert_null(json_object_get(b, "text"));
	assert_string_equal(jstr(b, "template", "name", NULL), "payment_reminder");
	assert_string_equal(jstr(b, "template", "language", "code"), "en_GB");
	json_t *comps = json_object_get(json_object_get(b, "template"), "components");
	assert_int_equal(json_array_size(comps), 1);
	json_t *c0 = json_array_get(comps, 0);
	assert_string_equal(jstr(c0, "type", NULL, NULL), "body");
	json_t *params = json_object_get(c0, "parameters");
	assert_int_equal(json_array_size(params), 2);
	assert_string_equal(jstr(json_array_get(params, 0), "type", NULL, NULL), "text");
	assert_string_equal(jstr(json_array_get(params, 0), "text", NULL, NULL), "Ana");
	assert_string_equal(jstr(json_array_get(params, 1), "type", NULL, NULL), "text");
	assert_string_equal(jstr(json_array_get(params, 1), "text", NULL, NULL), "£120.00");
	assert_string_equal(jstr(b, "biz_opaque_callback_data", NULL, NULL),
	                    "01JABCDEFGHJKMNPQRSTVWXYZ0");
	json_decref(b);
	http_req_clear(&req);

	/* No parameters: no components at all. */
	b = build(
	    a,
	    "{\"type\":\"template\",\"template\":{\"name\":\"hello_world\",\"language\":\"en\"}}",
	    &req);
	json_t *tpl = json_object_get(b, "template");
	assert_int_equal(json_object_size(tpl), 2);
	assert_null(json_object_get(tpl, "components"));
	json_decref(b);
	http_req_clear(&req);
	channel_account_free(a);
}

/* Asserts obj has exactly the given keys (NULL-terminated). */
static void keys_are(json_t *obj, ...)
{
	va_list ap;
	va_start(ap, obj);
	size_t n = 0;
	for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *), n++)
		if (!json_object_get(obj, k))
			fail_msg("key '%s' missing in %s", k, json_dumps(obj, JSON_COMPACT));
	va_end(ap);
	if (json_object_size(obj) != n)
		fail_msg("%zu keys, want %zu: %s", json_object_size(obj), n,
		         json_dumps(obj, JSON_COMPACT));
}

/* The fields every send carries, whatever its type. */
static void check_envelope(json_t *b, const char *type)
{
	assert_string_equal(jstr(b, "messaging_product", NULL, NULL), "whatsapp");
	assert_string_equal(jstr(b, "recipient_type", NULL, NULL), "individual");
	assert_string_equal(jstr(b, "to", NULL, NULL), "447911123456");
	assert_string_equal(jstr(b, "type", NULL, NULL), type);
	assert_string_equal(jstr(b, "biz_opaque_callback_data", NULL, NULL),
	                    "01JABCDEFGHJKMNPQRSTVWXYZ0");
	keys_are(b, "messaging_product", "recipient_type", "to", "type", "biz_opaque_callback_data",
	         type, NULL);
}

static void test_build_send_interactive(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct http_req req;
	json_t *b = build(a,
	                  "{\"type\":\"text\",\"text\":\"Pay £120 now?\",\"buttons\":["
	                  "{\"id\":\"pay\",\"title\":\"Pay now\"},{\"id\":\"later\",\"title\":"
	                  "\"Later\"}],\"options\":{\"preview_url\":true}}",
	                  &req);
	assert_string_equal(req.url, "http://127.0.0.1:9090/v21.0/106540352242922/messages");
	assert_true(has_header(req.headers, "Authorization: Bearer tok-123"));
	check_envelope(b, "interactive");
	json_t *it = json_object_get(b, "interactive");
	keys_are(it, "type", "body", "action", NULL);
	assert_string_equal(jstr(it, "type", NULL, NULL), "button");
	keys_are(json_object_get(it, "body"), "text", NULL);
	assert_string_equal(jstr(it, "body", "text", NULL), "Pay £120 now?");
	json_t *action = json_object_get(it, "action");
	keys_are(action, "buttons", NULL);
	json_t *btns = json_object_get(action, "buttons");
	assert_int_equal(json_array_size(btns), 2);
	const char *want[2][2] = {{"pay", "Pay now"}, {"later", "Later"}};
	for (size_t i = 0; i < 2; i++) {
		json_t *bt = json_array_get(btns, i);
		keys_are(bt, "type", "reply", NULL);
		assert_string_equal(jstr(bt, "type", NULL, NULL), "reply");
		keys_are(json_object_get(bt, "reply"), "id", "title", NULL);
		assert_string_equal(jstr(bt, "reply", "id", NULL), want[i][0]);
		assert_string_equal(jstr(bt, "reply", "title", NULL), want[i][1]);
	}
	json_decref(b);
	http_req_clear(&req);

	/* preview_url from options on a plain text. */
	b = build(
	    a, "{\"type\":\"text\",\"text\":\"https://x.test\",\"options\":{\"preview_url\":true}}",
	    &req);
	check_envelope(b, "text");
	keys_are(json_object_get(b, "text"), "preview_url", "body", NULL);
	assert_true(json_is_true(json_object_get(json_object_get(b, "text"), "preview_url")));
	json_decref(b);
	http_req_clear(&req);

	/* Actions are refused before anything is built. */
	struct message m = {.id = "x", .recipient = "447911123456"};
	m.content = "{\"type\":\"text\",\"text\":\"x\",\"actions\":[{\"title\":\"t\",\"url\":"
	            "\"https://x\"}]}";
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "actions");
	assert_null(req.body);
	m.content = "{\"type\":\"card\",\"card\":{\"title\":\"t\"}}";
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "type");
	channel_account_free(a);
}

static void test_build_send_media(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct http_req req;
	json_t *b =
	    build(a,
	          "{\"type\":\"document\",\"document\":{\"url\":\"https://files.test/s.pdf\","
	          "\"filename\":\"statement.pdf\",\"caption\":\"Your statement\"}}",
	          &req);
	check_envelope(b, "document");
	json_t *d = json_object_get(b, "document");
	keys_are(d, "link", "filename", "caption", NULL);
	assert_string_equal(jstr(d, "link", NULL, NULL), "https://files.test/s.pdf");
	assert_string_equal(jstr(d, "filename", NULL, NULL), "statement.pdf");
	assert_string_equal(jstr(d, "caption", NULL, NULL), "Your statement");
	json_decref(b);
	http_req_clear(&req);

	/* Only what was given. */
	b = build(a, "{\"type\":\"document\",\"document\":{\"url\":\"https://files.test/s.pdf\"}}",
	          &req);
	check_envelope(b, "document");
	keys_are(json_object_get(b, "document"), "link", NULL);
	json_decref(b);
	http_req_clear(&req);

	b = build(a,
	          "{\"type\":\"image\",\"image\":{\"url\":\"https://files.test/a.png\","
	          "\"caption\":\"Look é\"}}",
	          &req);
	check_envelope(b, "image");
	keys_are(json_object_get(b, "image"), "link", "caption", NULL);
	assert_string_equal(jstr(b, "image", "link", NULL), "https://files.test/a.png");
	assert_string_equal(jstr(b, "image", "caption", NULL), "Look é");
	json_decref(b);
	http_req_clear(&req);
	channel_account_free(a);
}

/* The PROVIDERS.md example, field by field: document header, body, quick reply. */
static void test_build_send_template_components(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct http_req req;
	json_t *b = build(a,
	                  "{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\","
	                  "\"language\":\"en_GB\",\"parameters\":[\"Ana\",\"£120.00\"],"
	                  "\"header\":{\"type\":\"document\",\"url\":\"https://files.test/s.pdf\","
	                  "\"filename\":\"statement.pdf\"},"
	                  "\"buttons\":[{\"index\":0,\"payload\":\"PAY_NOW\"},"
	                  "{\"index\":2,\"text\":\"inv/42\",\"type\":\"url\"}],"
	                  "\"regulatory\":{\"dlt_template_id\":\"1107\"}}}",
	                  &req);
	check_envelope(b, "template");
	json_t *t = json_object_get(b, "template");
	keys_are(t, "name", "language", "components", NULL);
	assert_string_equal(jstr(t, "name", NULL, NULL), "payment_reminder");
	keys_are(json_object_get(t, "language"), "code", NULL);
	assert_string_equal(jstr(t, "language", "code", NULL), "en_GB");
	json_t *comps = json_object_get(t, "components");
	assert_int_equal(json_array_size(comps), 4);

	json_t *h = json_array_get(comps, 0);
	keys_are(h, "type", "parameters", NULL);
	assert_string_equal(jstr(h, "type", NULL, NULL), "header");
	assert_int_equal(json_array_size(json_object_get(h, "parameters")), 1);
	json_t *hp = json_array_get(json_object_get(h, "parameters"), 0);
	keys_are(hp, "type", "document", NULL);
	assert_string_equal(jstr(hp, "type", NULL, NULL), "document");
	keys_are(json_object_get(hp, "document"), "link", "filename", NULL);
	assert_string_equal(jstr(hp, "document", "link", NULL), "https://files.test/s.pdf");
	assert_string_equal(jstr(hp, "document", "filename", NULL), "statement.pdf");

	json_t *body = json_array_get(comps, 1);
	keys_are(body, "type", "parameters", NULL);
	assert_string_equal(jstr(body, "type", NULL, NULL), "body");
	json_t *bp = json_object_get(body, "parameters");
	assert_int_equal(json_array_size(bp), 2);
	keys_are(json_array_get(bp, 0), "type", "text", NULL);
	assert_string_equal(jstr(json_array_get(bp, 0), "text", NULL, NULL), "Ana");
	assert_string_equal(jstr(json_array_get(bp, 1), "text", NULL, NULL), "£120.00");

	json_t *qr = json_array_get(comps, 2);
	keys_are(qr, "type", "sub_type", "index", "parameters", NULL);
	assert_string_equal(jstr(qr, "type", NULL, NULL), "button");
	assert_string_equal(jstr(qr, "sub_type", NULL, NULL), "quick_reply");
	assert_string_equal(jstr(qr, "index", NULL, NULL), "0"); /* a string, as Meta wants */
	json_t *qp = json_array_get(json_object_get(qr, "parameters"), 0);
	keys_are(qp, "type", "payload", NULL);
	assert_string_equal(jstr(qp, "type", NULL, NULL), "payload");
	assert_string_equal(jstr(qp, "payload", NULL, NULL), "PAY_NOW");

	json_t *url = json_array_get(comps, 3);
	keys_are(url, "type", "sub_type", "index", "parameters", NULL);
	assert_string_equal(jstr(url, "sub_type", NULL, NULL), "url");
	assert_string_equal(jstr(url, "index", NULL, NULL), "2");
	json_t *up = json_array_get(json_object_get(url, "parameters"), 0);
	keys_are(up, "type", "text", NULL);
	assert_string_equal(jstr(up, "type", NULL, NULL), "text");
	assert_string_equal(jstr(up, "text", NULL, NULL), "inv/42");
	json_decref(b);
	http_req_clear(&req);

	/* Text header (both spellings) and image header; no body parameters. */
	const char *text_headers[] = {"{\"type\":\"text\",\"text\":\"Order 42\"}",
	                              "{\"type\":\"text\",\"parameters\":[\"Order 42\"]}"};
	for (size_t i = 0; i < 2; i++) {
		char c[256];
		snprintf(c, sizeof c,
		         "{\"type\":\"template\",\"template\":{\"name\":\"shipped\",\"language\":"
		         "\"en\",\"header\":%s}}",
		         text_headers[i]);
		b = build(a, c, &req);
		comps = json_object_get(json_object_get(b, "template"), "components");
		assert_int_equal(json_array_size(comps), 1);
		hp = json_array_get(json_object_get(json_array_get(comps, 0), "parameters"), 0);
		keys_are(hp, "type", "text", NULL);
		assert_string_equal(jstr(hp, "type", NULL, NULL), "text");
		assert_string_equal(jstr(hp, "text", NULL, NULL), "Order 42");
		json_decref(b);
		http_req_clear(&req);
	}
	b = build(a,
	          "{\"type\":\"template\",\"template\":{\"name\":\"promo\",\"language\":\"en\","
	          "\"header\":{\"type\":\"image\",\"url\":\"https://files.test/p.png\"},"
	          "\"buttons\":[{\"index\":1,\"payload\":\"STOP_PROMOS\"}]}}",
	          &req);
	comps = json_object_get(json_object_get(b, "template"), "components");
	assert_int_equal(json_array_size(comps), 2);
	hp = json_array_get(json_object_get(json_array_get(comps, 0), "parameters"), 0);
	keys_are(hp, "type", "image", NULL);
	assert_string_equal(jstr(hp, "type", NULL, NULL), "image");
	keys_are(json_object_get(hp, "image"), "link", NULL);
	assert_string_equal(jstr(hp, "image", "link", NULL), "https://files.test/p.png");
	assert_string_equal(jstr(json_array_get(comps, 1), "sub_type", NULL, NULL), "quick_reply");
	assert_string_equal(jstr(json_array_get(comps, 1), "index", NULL, NULL), "1");
	json_decref(b);
	http_req_clear(&req);
	channel_account_free(a);
}

/* ---- parse_send ---- */

static void test_parse_send_table(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
#define ERRBODY(code, msg)                                                                         \
	"{\"error\":{\"message\":\"" msg "\",\"type\":\"OAuthException\","                         \
	"\"code\":" #code ",\"error_data\":{\"messaging_product\":\"whatsapp\","                   \
	"\"details\":\"d\"},\"fbtrace_id\":\"A1\"}}"
	struct {
		long status;
		const char *body;
		const char *retry_after;
		enum outcome_class cls;
		const char *code;
		const char *text;
		int64_t retry_us;
		bool blocked;
	} cases[] = {
	    {200,
	     "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"447911123456\","
	     "\"wa_id\":\"447911123456\"}],\"messages\":[{\"id\":\"wamid.HBgM123\","
	     "\"message_status\":\"accepted\"}]}",
	     NULL, OUTCOME_OK, "", "", 0, false},
	    {201, "{\"messages\":[{\"id\":\"wamid.X\"}]}", NULL, OUTCOME_OK, "", "", 0, false},
	    {200, "{\"messages\":[]}", NULL, OUTCOME_TRANSIENT, "http_200", NULL, 0, false},
	    {200, "not json", NULL, OUTCOME_TRANSIENT, "http_200", NULL, 0, false},
	    {429, ERRBODY(130429, "(#130429) Rate limit hit"), "1", OUTCOME_RATE_LIMITED, "130429",
	     "(#130429) Rate limit hit", 1000000, false},
	    {400, ERRBODY(131056, "pair"), NULL, OUTCOME_RATE_LIMITED, "131056", "pair", 6000000,
	     false},
	    {400, ERRBODY(131056, "pair"), "2", OUTCOME_RATE_LIMITED, "131056", "pair", 2000000,
	     false},
	    {400, ERRBODY(80007, "x"), NULL, OUTCOME_RATE_LIMITED, "80007", "x", 0, false},
	    {400, ERRBODY(4, "x"), " 30 ", OUTCOME_RATE_LIMITED, "4", "x", 30000000, false},
	    {400, ERRBODY(131048, "spam"), NULL, OUTCOME_RATE_LIMITED, "131048", "spam", 60000000,
	     false},
	    {500, ERRBODY(131000, "Something went wrong"), NULL, OUTCOME_TRANSIENT, "131000",
	     "Something went wrong", 0, false},
	    {503, ERRBODY(131016, "unavailable"), NULL, OUTCOME_TRANSIENT, "131016", "unavailable",
	     0, false},
	    {400, ERRBODY(1, "x"), NULL, OUTCOME_TRANSIENT, "1", "x", 0, false},
	    {400, ERRBODY(2, "x"), NULL, OUTCOME_TRANSIENT, "2", "x", 0, false},
	    {400, ERRBODY(131026, "Message Undeliverable."), NULL, OUTCOME_PERMANENT, "131026",
	     "Message Undeliverable.", 0, false},
	    {400, ERRBODY(131047, "Re-engagement message"), NULL, OUTCOME_PERMANENT, "131047",
	     "Re-engagement message", 0, false},
	    {400, ERRBODY(131049, "x"), NULL, OUTCOME_PERMANENT, "131049", "x", 0, false},
	    {400, ERRBODY(131051, "x"), NULL, OUTCOME_PERMANENT, "131051", "x", 0, false},
	    {400, ERRBODY(132000, "x"), NULL, OUTCOME_PERMANENT, "132000", "x", 0, false},
	    {400, ERRBODY(132001, "x"), NULL, OUTCOME_PERMANENT, "132001", "x", 0, false},
	    {400, ERRBODY(132012, "x"), NULL, OUTCOME_PERMANENT, "132012", "x", 0, false},
	    {400, ERRBODY(132015, "x"), NULL, OUTCOME_PERMANENT, "132015", "x", 0, false},
	    {400, ERRBODY(132016, "x"), NULL, OUTCOME_PERMANENT, "132016", "x", 0, false},
	    {400, ERRBODY(131009, "x"), NULL, OUTCOME_PERMANENT, "131009", "x", 0, false},
	    {400, ERRBODY(100, "(#100) Invalid parameter"), NULL, OUTCOME_PERMANENT, "100",
	     "(#100) Invalid parameter", 0, false},
	    {401, ERRBODY(190, "Invalid OAuth access token"), NULL, OUTCOME_PERMANENT, "190",
	     "Invalid OAuth access token", 0, true},
	    {400, ERRBODY(368, "blocked"), NULL, OUTCOME_PERMANENT, "368", "blocked", 0, true},
	    {400, ERRBODY(131031, "locked"), NULL, OUTCOME_PERMANENT, "131031", "locked", 0, true},
	    /* A known code wins over the HTTP status. */
	    {500, ERRBODY(131026, "x"), NULL, OUTCOME_PERMANENT, "131026", "x", 0, false},
	    {429, ERRBODY(131000, "x"), NULL, OUTCOME_TRANSIENT, "131000", "x", 0, false},
	    /* Unknown codes: by status. */
	    {400, ERRBODY(999999, "odd"), NULL, OUTCOME_PERMANENT, "999999", "odd", 0, false},
	    {502, ERRBODY(999999, "odd"), NULL, OUTCOME_TRANSIENT, "999999", "odd", 0, false},
	    {429, ERRBODY(999999, "odd"), "5", OUTCOME_RATE_LIMITED, "999999", "odd", 5000000,
	     false},
	    {429, "", NULL, OUTCOME_RATE_LIMITED, "http_429", "HTTP 429", 0, false},
	    {429, "{\"error\":{\"message\":\"slow\"}}", NULL, OUTCOME_RATE_LIMITED, "http_429",
	     "slow", 0, false},
	    /* Unparseable bodies: by status, body kept as text. */
	    {502, "<html>Bad Gateway</html>", NULL, OUTCOME_TRANSIENT, "http_502",
	     "<html>Bad Gateway</html>", 0, false},
	    {404, "Not Found", NULL, OUTCOME_PERMANENT, "http_404", "Not Found", 0, false},
	    {408, "", NULL, OUTCOME_TRANSIENT, "http_408", "HTTP 408", 0, false},
	    {400, "{\"error\":{\"code\":131026,\"error_data\":{\"details\":\"dd\"}}}", NULL,
	     OUTCOME_PERMANENT, "131026", "dd", 0, false},
	    /* No answer at all. */
	    {0, "Connection refused", NULL, OUTCOME_TRANSIENT, "network", "Connection refused", 0,
	     false},
	    {0, NULL, NULL, OUTCOME_TRANSIENT, "network", "", 0, false},
	    {503, "", "soon", OUTCOME_TRANSIENT, "http_503", "HTTP 503", 0, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct send_outcome o;
		memset(&o, 0x5a, sizeof o);
		const char *body = cases[i].body;
		a->ops->parse_send(a, cases[i].status, body, body ? strlen(body) : 0,
		                   cases[i].retry_after, &o);
		if (o.cls != cases[i].cls)
			fail_msg("case %zu: class %s, want %s", i, outcome_class_name(o.cls),
			         outcome_class_name(cases[i].cls));
		if (strcmp(o.error_code, cases[i].code) != 0)
			fail_msg("case %zu: code '%s', want '%s'", i, o.error_code, cases[i].code);
		if (cases[i].text && strcmp(o.error_text, cases[i].text) != 0)
			fail_msg("case %zu: text '%s', want '%s'", i, o.error_text, cases[i].text);
		if (o.retry_after_us != cases[i].retry_us)
			fail_msg("case %zu: retry %lld, want %lld", i, (long long)o.retry_after_us,
			         (long long)cases[i].retry_us);
		if (o.account_blocked != cases[i].blocked)
			fail_msg("case %zu: blocked %d", i, o.account_blocked);
		/* Only the pair rate limit (131056) is about one recipient: the
		 * account's other recipients must keep sending. */
		bool pair = strcmp(cases[i].code, "131056") == 0;
		enum rate_scope want = pair ? RATE_SCOPE_RECIPIENT
		                       : cases[i].cls == OUTCOME_RATE_LIMITED ? RATE_SCOPE_ACCOUNT
		                                                             : RATE_SCOPE_NONE;
		if (o.rate_scope != want)
			fail_msg("case %zu: rate_scope %s, want %s", i, rate_scope_name(o.rate_scope),
			         rate_scope_name(want));
		if (cases[i].cls == OUTCOME_OK)
			assert_true(strncmp(o.provider_id, "wamid.", 6) == 0);
		else
			assert_string_equal(o.provider_id, "");
	}
	assert_string_equal(outcome_class_name(OUTCOME_RATE_LIMITED), "rate_limited");

	/* Retry-After as an HTTP date about 20 s ahead. */
	char date[64];
	time_t t = (time_t)(hr_now_us() / 1000000) + 20;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	struct send_outcome o;
	a->ops->parse_send(a, 429, "", 0, date, &o);
	assert_true(o.retry_after_us > 18000000 && o.retry_after_us <= 20000000);
	channel_account_free(a);
}

/* ---- webhook_parse ---- */

static void parse_ok(const char *body, struct wh_parsed *p)
{
	struct hr_err err = {0};
	/* Read the fast way, as jansson reads it. */
	assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, body, strlen(body)), 0);
	assert_int_equal(ws_fast, 1);
	memset(p, 0, sizeof *p);
	int rc = channel_whatsapp.webhook_parse(NULL, body, strlen(body), p, &err);
	if (rc)
		fail_msg("parse failed: %s (%s)", err.msg, err.field);
}

static void test_parse_vector(void **state)
{
	(void)state;
	struct wh_parsed p;
	parse_ok(VEC_BODY, &p);
	assert_int_equal(p.nstatuses, 1);
	assert_int_equal(p.ninbound, 0);
	assert_string_equal(p.statuses[0].provider_id, "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3");
	assert_int_equal(p.statuses[0].status, MSG_DELIVERED);
	assert_string_equal(p.statuses[0].provider_ts, "1750263773");
	assert_true(p.statuses[0].provider_at == 1750263773LL * 1000000);
	assert_string_equal(p.statuses[0].error_code, "");
	wh_parsed_clear(&p);
	assert_null(p.statuses);
}

static void test_parse_multi(void **state)
{
	(void)state;
	const char *body =
	    "{\"object\":\"whatsapp_business_account\",\"entry\":["
	    "{\"id\":\"1\",\"changes\":["
	    " {\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\","
	    "  \"metadata\":{\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"1\"},"
	    "  \"statuses\":["
	    "   {\"id\":\"wamid.A\",\"status\":\"sent\",\"timestamp\":\"1750000001\","
	    "    \"recipient_id\":\"15550123456\",\"biz_opaque_callback_data\":\"01J\","
	    "    \"conversation\":{\"id\":\"c1\",\"origin\":{\"type\":\"utility\"}},"
	    "    "
	    "\"pricing\":{\"billable\":true,\"pricing_model\":\"PMP\",\"category\":\"utility\"}},"
	    "   {\"id\":\"wamid.A\",\"status\":\"played\",\"timestamp\":\"1750000002\"},"
	    "   {\"id\":\"wamid.B\",\"status\":\"read\",\"timestamp\":\"1750000003\"}]}},"
	    " {\"field\":\"message_template_status_update\",\"value\":{\"event\":\"APPROVED\"}}]},"
	    "{\"id\":\"2\",\"changes\":["
	    " {\"field\":\"messages\",\"value\":{\"statuses\":["
	    "   {\"id\":\"wamid.C\",\"status\":\"failed\",\"timestamp\":\"1750000004\","
	    "    \"recipient_id\":\"15550123456\",\"errors\":[{\"code\":131026,"
	    "    \"title\":\"Message undeliverable\",\"message\":\"Message undeliverable\","
	    "    \"error_data\":{\"details\":\"d\"}}]},"
	    "   {\"id\":\"wamid.D\",\"status\":\"failed\",\"timestamp\":1750000005,"
	    "    \"errors\":[{\"code\":131049,\"message\":\"not delivered\"}]},"
	    "   {\"id\":\"wamid.E\",\"status\":\"delivered\",\"timestamp\":\"1750000006\"}],"
	    "  \"messages\":["
	    "   {\"from\":\"15550123456\",\"id\":\"wamid.IN1\",\"timestamp\":\"1750000007\","
	    "    \"type\":\"text\",\"text\":{\"body\":\"STOP\"}}]}}]}]}";
	struct wh_parsed p;
	parse_ok(body, &p);
	struct {
		const char *id;
		enum msg_status st;
		const char *ts;
		const char *code, *text;
	} want[] = {
	    {"wamid.A", MSG_SENT, "1750000001", "", ""},
	    {"wamid.B", MSG_READ, "1750000003", "", ""},
	    {"wamid.C", MSG_FAILED, "1750000004", "131026", "Message undeliverable"},
	    {"wamid.D", MSG_FAILED, "1750000005", "131049", "not delivered"},
	    {"wamid.E", MSG_DELIVERED, "1750000006", "", ""},
	};
	assert_int_equal(p.nstatuses, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(p.statuses[i].provider_id, want[i].id);
		assert_int_equal(p.statuses[i].status, want[i].st);
		assert_string_equal(p.statuses[i].provider_ts, want[i].ts);
		assert_true(p.statuses[i].provider_at == strtoll(want[i].ts, NULL, 10) * 1000000);
		assert_string_equal(p.statuses[i].error_code, want[i].code);
		assert_string_equal(p.statuses[i].error_text, want[i].text);
	}
	assert_int_equal(p.ninbound, 1);
	assert_string_equal(p.inbound[0].kind, "text");
	assert_string_equal(p.inbound[0].text, "STOP");
	assert_null(p.inbound[0].payload);
	assert_string_equal(p.inbound[0].context_id, "");
	wh_parsed_clear(&p);
}

static void test_parse_replies(void **state)
{
	(void)state;
	const char *body =
	    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":["
	    "{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\","
	    "\"contacts\":[{\"profile\":{\"name\":\"Ana\"},\"wa_id\":\"447911123456\"}],"
	    "\"messages\":["
	    "{\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.ORIG1\"},"
	    " \"from\":\"447911123456\",\"id\":\"wamid.R1\",\"timestamp\":\"1750000100\","
	    " \"type\":\"button\",\"button\":{\"payload\":\"PAY_NOW\",\"text\":\"Pay now\"}},"
	    "{\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.ORIG2\"},"
	    " \"from\":\"447911123456\",\"id\":\"wamid.R2\",\"timestamp\":\"1750000101\","
	    " \"type\":\"interactive\",\"interactive\":{\"type\":\"button_reply\","
	    " \"button_reply\":{\"id\":\"yes\",\"title\":\"Yes\"}}},"
	    "{\"context\":{\"id\":\"wamid.ORIG3\"},"
	    " \"from\":\"447911123456\",\"id\":\"wamid.R3\",\"timestamp\":\"1750000102\","
	    " \"type\":\"interactive\",\"interactive\":{\"type\":\"list_reply\","
	    " \"list_reply\":{\"id\":\"opt2\",\"title\":\"Option 2\",\"description\":\"d\"}}},"
	    "{\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.ORIG4\"},"
	    " \"from\":\"447911123456\",\"id\":\"wamid.R4\",\"timestamp\":\"1750000103\","
	    " \"type\":\"text\",\"text\":{\"body\":\"Thanks!\"}},"
	    "{\"from\":\"447911123456\",\"id\":\"wamid.R5\",\"timestamp\":\"1750000104\","
	    " \"type\":\"reaction\",\"reaction\":{\"message_id\":\"wamid.ORIG5\",\"emoji\":\"👍\"}}"
	    "]}}]}]}";
	struct wh_parsed p;
	parse_ok(body, &p);
	struct {
		const char *id, *kind, *ctx, *text, *payload;
		int64_t at;
	} want[] = {
	    {"wamid.R1", "button", "wamid.ORIG1", "Pay now", "PAY_NOW", 1750000100},
	    {"wamid.R2", "interactive", "wamid.ORIG2", "Yes", "yes", 1750000101},
	    {"wamid.R3", "interactive", "wamid.ORIG3", "Option 2", "opt2", 1750000102},
	    {"wamid.R4", "text", "wamid.ORIG4", "Thanks!", NULL, 1750000103},
	    {"wamid.R5", "reaction", "wamid.ORIG5", "👍", NULL, 1750000104},
	};
	assert_int_equal(p.nstatuses, 0);
	assert_int_equal(p.ninbound, 5);
	for (size_t i = 0; i < 5; i++) {
		struct wh_inbound *in = &p.inbound[i];
		assert_string_equal(in->provider_msg_id, want[i].id);
		assert_string_equal(in->kind, want[i].kind);
		assert_string_equal(in->context_id, want[i].ctx);
		assert_string_equal(in->from, "447911123456");
		assert_string_equal(in->text, want[i].text);
		if (want[i].payload)
			assert_string_equal(in->payload, want[i].payload);
		else
			assert_null(in->payload);
		assert_true(in->provider_at == want[i].at * 1000000);
	}
	wh_parsed_clear(&p);
}

/* Media replies keep their caption; unknown interactive kinds are recorded
 * bare; a press without context links nothing; errors name the path. */
static void test_parse_more_inbound(void **state)
{
	(void)state;
#define ONE(msg)                                                                                   \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"        \
	"\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"messages\":[" msg  \
	"]}}]}]}"
	struct {
		const char *body;
		const char *kind, *ctx, *text, *payload; /* kind NULL: malformed, ctx = field */
	} cases[] = {
	    {ONE("{\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.O1\"},\"from\":\"4479\","
	         "\"id\":\"wamid.I1\",\"timestamp\":\"1750000200\",\"type\":\"image\",\"image\":{"
	         "\"id\":\"media1\",\"mime_type\":\"image/jpeg\",\"sha256\":\"x\",\"caption\":"
	         "\"my receipt\"}}"),
	     "image", "wamid.O1", "my receipt", NULL},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I2\",\"timestamp\":\"1750000201\",\"type\":"
	         "\"document\",\"document\":{\"id\":\"media2\",\"filename\":\"id.pdf\","
	         "\"mime_type\":\"application/pdf\"}}"),
	     "document", "", NULL, NULL},
	    {ONE("{\"context\":{\"id\":\"wamid.O3\"},\"from\":\"4479\",\"id\":\"wamid.I3\","
	         "\"timestamp\":\"1750000202\",\"type\":\"interactive\",\"interactive\":{\"type\":"
	         "\"nfm_reply\",\"nfm_reply\":{\"response_json\":\"{}\",\"body\":\"Sent\"}}}"),
	     "interactive", "wamid.O3", NULL, NULL},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I4\",\"timestamp\":\"1750000203\",\"type\":"
	         "\"interactive\",\"interactive\":{\"type\":\"button_reply\",\"button_reply\":{"
	         "\"id\":\"yes\",\"title\":\"Yes\"}}}"),
	     "interactive", "", "Yes", "yes"},
	    {ONE("{\"context\":{\"id\":\"wamid.O5\"},\"from\":\"4479\",\"id\":\"wamid.I5\","
	         "\"timestamp\":\"1750000204\",\"type\":\"button\",\"button\":{\"payload\":"
	         "\"PAY_NOW\"}}"),
	     "button", "wamid.O5", NULL, "PAY_NOW"},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I6\",\"timestamp\":\"1750000205\",\"type\":"
	         "\"interactive\",\"interactive\":{\"type\":\"list_reply\",\"list_reply\":{"
	         "\"title\":\"x\"}}}"),
	     NULL, "entry[0].changes[0].value.messages[0].interactive.list_reply.id", NULL, NULL},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I7\",\"timestamp\":\"1750000206\",\"type\":"
	         "\"interactive\",\"interactive\":{}}"),
	     NULL, "entry[0].changes[0].value.messages[0].interactive.type", NULL, NULL},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I8\",\"timestamp\":\"1750000207\",\"type\":"
	         "\"button\",\"button\":{\"payload\":7}}"),
	     NULL, "entry[0].changes[0].value.messages[0].button.payload", NULL, NULL},
	    {ONE("{\"from\":\"4479\",\"id\":\"wamid.I9\",\"timestamp\":\"1750000208\",\"type\":"
	         "\"interactive\",\"interactive\":\"yes\"}"),
	     NULL, "entry[0].changes[0].value.messages[0].interactive", NULL, NULL},
	    {ONE("{\"context\":{\"id\":5},\"from\":\"4479\",\"id\":\"wamid.I10\",\"timestamp\":"
	         "\"1750000209\",\"type\":\"text\",\"text\":{\"body\":\"x\"}}"),
	     NULL, "entry[0].changes[0].value.messages[0].context.id", NULL, NULL},
	};
#undef ONE
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wh_parsed p = {0};
		struct hr_err err = {0};
		ws_same_parse(&channel_whatsapp, NULL, cases[i].body, strlen(cases[i].body));
		assert_int_equal(ws_fast, cases[i].kind ? 1 : 0);
		int rc = channel_whatsapp.webhook_parse(NULL, cases[i].body, strlen(cases[i].body),
		                                        &p, &err);
		if (!cases[i].kind) {
			if (rc != HR_EINVAL)
				fail_msg("case %zu: rc %d", i, rc);
			if (strcmp(err.field, cases[i].ctx) != 0)
				fail_msg("case %zu: field '%s', want '%s'", i, err.field,
				         cases[i].ctx);
			assert_int_equal(p.ninbound, 0);
			wh_parsed_clear(&p);
			continue;
		}
		if (rc)
			fail_msg("case %zu: %s", i, err.msg);
		assert_int_equal(p.ninbound, 1);
		struct wh_inbound *in = &p.inbound[0];
		assert_string_equal(in->kind, cases[i].kind);
		assert_string_equal(in->context_id, cases[i].ctx);
		assert_string_equal(in->from, "4479");
		if (cases[i].text)
			assert_string_equal(in->text, cases[i].text);
		else
			assert_null(in->text);
		if (cases[i].payload)
			assert_string_equal(in->payload, cases[i].payload);
		else
			assert_null(in->payload);
		assert_int_equal(in->optout, 0);
		assert_null(in->auto_reply);
		wh_parsed_clear(&p);
	}
}

static void test_parse_malformed(void **state)
{
	(void)state;
#define WRAP(value)                                                                                \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\","                      \
	"\"changes\":[{\"field\":\"messages\",\"value\":{}},{\"field\":\"messages\","              \
	"\"value\":" value "}]}]}"
#define ST(x) "{\"id\":\"wamid.ok\",\"status\":\"sent\",\"timestamp\":\"1\"" x "}"
	struct {
		const char *body;
		const char *field;
	} cases[] = {
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[", "body[47]"},
	    {"[]", "body"},
	    {"{\"object\":\"page\",\"entry\":[]}", "object"},
	    {"{\"object\":\"whatsapp_business_account\"}", "entry"},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[5]}", "entry[0]"},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\"}]}",
	     "entry[0].changes"},
	    {WRAP("[]"), "entry[0].changes[1].value"},
	    {WRAP("{\"statuses\":{}}"), "entry[0].changes[1].value.statuses"},
	    {WRAP("{\"statuses\":[" ST("") "," ST("") "," ST("") ",{\"status\":\"sent\","
	                                                         "\"timestamp\":\"1\"}]}"),
	     "entry[0].changes[1].value.statuses[3].id"},
	    {WRAP("{\"statuses\":[{\"id\":7,\"status\":\"read\",\"timestamp\":\"1\"}]}"),
	     "entry[0].changes[1].value.statuses[0].id"},
	    {WRAP("{\"statuses\":[{\"id\":\"wamid.x\",\"timestamp\":\"1\"}]}"),
	     "entry[0].changes[1].value.statuses[0].status"},
	    {WRAP("{\"statuses\":[{\"id\":\"wamid.x\",\"status\":\"read\"}]}"),
	     "entry[0].changes[1].value.statuses[0].timestamp"},
	    {WRAP(
	         "{\"statuses\":[{\"id\":\"wamid.x\",\"status\":\"read\",\"timestamp\":\"12a\"}]}"),
	     "entry[0].changes[1].value.statuses[0].timestamp"},
	    {WRAP("{\"statuses\":[" ST(",\"errors\":{}") "]}"),
	     "entry[0].changes[1].value.statuses[0].errors"},
	    {WRAP("{\"statuses\":[" ST(",\"errors\":[1]") "]}"),
	     "entry[0].changes[1].value.statuses[0].errors[0]"},
	    {WRAP("{\"statuses\":[\"x\"]}"), "entry[0].changes[1].value.statuses[0]"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"timestamp\":\"1\",\"type\":\"text\","
	          "\"text\":{\"body\":\"x\"}}]}"),
	     "entry[0].changes[1].value.messages[0].from"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"from\":\"4479\",\"timestamp\":\"1\","
	          "\"type\":\"text\",\"text\":{}}]}"),
	     "entry[0].changes[1].value.messages[0].text.body"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"from\":\"4479\",\"timestamp\":\"1\","
	          "\"type\":\"button\",\"button\":{\"text\":\"Pay\"}}]}"),
	     "entry[0].changes[1].value.messages[0].button.payload"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"from\":\"4479\",\"timestamp\":\"1\","
	          "\"type\":\"interactive\",\"interactive\":{\"type\":\"button_reply\"}}]}"),
	     "entry[0].changes[1].value.messages[0].interactive.button_reply"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"from\":\"4479\",\"timestamp\":\"1\","
	          "\"type\":\"text\",\"text\":{\"body\":\"x\"},\"context\":\"wamid.c\"}]}"),
	     "entry[0].changes[1].value.messages[0].context"},
	    {WRAP("{\"messages\":[{\"id\":\"wamid.i\",\"from\":\"4479\",\"timestamp\":\"1\"}]}"),
	     "entry[0].changes[1].value.messages[0].type"},
	    /* An integer timestamp that would overflow microseconds. */
	    {WRAP("{\"statuses\":[{\"id\":\"wamid.x\",\"status\":\"read\","
	          "\"timestamp\":9223372036854775807}]}"),
	     "entry[0].changes[1].value.statuses[0].timestamp"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wh_parsed p = {0};
		struct hr_err err = {0};
		assert_int_equal(
		    ws_same_parse(&channel_whatsapp, NULL, cases[i].body, strlen(cases[i].body)),
		    HR_EINVAL);
		/* Something already parsed stays as it was. */
		struct wh_status *keep = wh_parsed_add_status(&p);
		hr_strlcpy(keep->provider_id, "wamid.keep", sizeof keep->provider_id);
		int rc = channel_whatsapp.webhook_parse(NULL, cases[i].body, strlen(cases[i].body),
		                                        &p, &err);
		if (rc != HR_EINVAL)
			fail_msg("case %zu: rc %d", i, rc);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
		assert_non_null(strstr(err.msg, cases[i].field));
		assert_int_equal(p.nstatuses, 1);
		assert_int_equal(p.ninbound, 0);
		assert_string_equal(p.statuses[0].provider_id, "wamid.keep");
		wh_parsed_clear(&p);
	}
}

/* Provider error text longer than the field, with multi-byte characters at the
 * cut, is stored as valid UTF-8 (it goes into JSON later). */
/* Every rate limit says whom it limits (PROVIDERS.md): the pair rate limit
 * (131056) one recipient; the number's throughput (130429), the WABA's and
 * the app's request limits (80007, 4), the spam limit (131048) and a bare
 * HTTP 429 the account. */
static void test_rate_scope(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	static const struct {
		long status;
		long code; /* 0: no Graph error body */
		enum rate_scope scope;
	} cases[] = {
	    {400, 131056, RATE_SCOPE_RECIPIENT}, {400, 130429, RATE_SCOPE_ACCOUNT},
	    {429, 130429, RATE_SCOPE_ACCOUNT},   {400, 80007, RATE_SCOPE_ACCOUNT},
	    {400, 4, RATE_SCOPE_ACCOUNT},        {400, 131048, RATE_SCOPE_ACCOUNT},
	    {429, 0, RATE_SCOPE_ACCOUNT},        {400, 131026, RATE_SCOPE_NONE},
	    {500, 131000, RATE_SCOPE_NONE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char body[160] = "";
		if (cases[i].code)
			snprintf(body, sizeof body,
			         "{\"error\":{\"message\":\"x\",\"type\":\"OAuthException\","
			         "\"code\":%ld,\"fbtrace_id\":\"A\"}}",
			         cases[i].code);
		struct send_outcome o;
		memset(&o, 0x5a, sizeof o);
		a->ops->parse_send(a, cases[i].status, body, strlen(body), NULL, &o);
		assert_int_equal(o.cls, cases[i].scope == RATE_SCOPE_NONE
		                            ? (cases[i].status == 500 ? OUTCOME_TRANSIENT
		                                                      : OUTCOME_PERMANENT)
		                            : OUTCOME_RATE_LIMITED);
		if (o.rate_scope != cases[i].scope)
			fail_msg("case %zu (%ld): scope %s, want %s", i, cases[i].code,
			         rate_scope_name(o.rate_scope), rate_scope_name(cases[i].scope));
	}
	assert_string_equal(rate_scope_name(RATE_SCOPE_RECIPIENT), "recipient");
	channel_account_free(a);
}

static void test_parse_send_utf8_error(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	char body[2048];
	int n = snprintf(body, sizeof body, "{\"error\":{\"code\":131026,\"message\":\"");
	for (int i = 0; i < 300; i++)
		n += snprintf(body + n, sizeof body - (size_t)n, "\xc3\xa9"); /* é: 600 bytes */
	snprintf(body + n, sizeof body - (size_t)n, "\"}}");
	struct send_outcome o;
	channel_whatsapp.parse_send(a, 400, body, strlen(body), NULL, &o);
	assert_int_equal(o.cls, OUTCOME_PERMANENT);
	assert_true(strlen(o.error_text) > 400);
	json_t *j = json_string(o.error_text); /* NULL if not valid UTF-8 */
	assert_non_null(j);
	json_decref(j);
	channel_account_free(a);
}

/* ---- the fast bodies and answers against jansson's ---- */

/* Every content type, with strings that need escaping, at the length limits
 * and with many values: the fast body is byte for byte jansson's. */
static void test_fast_bodies_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0", .recipient = "447911123456"};
	unsigned seed = 4242;
	static char t1[4 * 4096 + 1], t2[4 * 1024 + 1], t3[4 * 1024 + 1];
	int built = 0, refused = 0;
	/* Every control character alone in a text, and all of them at once. */
	for (int c = 1; c < 0x20; c++) {
		char s[4] = {'<', (char)c, '>', 0};
		m.content = fb_content(json_pack("{s:s, s:s}", "type", "text", "text", s));
		assert_int_equal(fb_same_request(a, &m, true), 0);
		free(m.content);
	}
	for (int i = 0; i < 1500; i++) {
		json_t *c;
		switch (i % 6) {
		case 0: /* text, sometimes at its 4096 characters, with preview_url */
			if (i % 60 == 0) {
				/* 4096 code points exactly: é " \ newline, then 4092 'a'. */
				memcpy(t1, "\xc3\xa9\"\\\n", 5);
				memset(t1 + 5, 'a', 4092);
				t1[4097] = '\0';
			} else {
				fb_random_nonempty(t1, 300, &seed);
			}
			c = json_pack("{s:s, s:s}", "type", "text", "text", t1);
			if (i % 4 == 0)
				json_object_set_new(c, "options",
				                    json_pack("{s:b}", "preview_url", i % 8 == 0));
			break;
		case 1: { /* interactive: 1..3 reply buttons */
			fb_random_nonempty(t1, 200, &seed);
			json_t *btns = json_array();
			int nb = 1 + i % 3;
			for (int b = 0; b < nb; b++) {
				char id[32], title[4 * 18 + 1];
				snprintf(id, sizeof id, "id-%d\"\\%d", b, i);
				fb_random_nonempty(title, 18, &seed);
				size_t tl = strlen(title);
				title[tl] = (char)('0' + b); /* unique titles */
				title[tl + 1] = '\0';
				json_array_append_new(
				    btns, json_pack("{s:s, s:s}", "id", id, "title", title));
			}
			c = json_pack("{s:s, s:s, s:o}", "type", "text", "text", t1, "buttons",
			              btns);
			break;
		}
		case 2: { /* template: many body values, a header, buttons */
			json_t *params = json_array();
			int np = i % 50 == 2 ? 200 : i % 7;
			for (int p = 0; p < np; p++) {
				fb_random_nonempty(t2, p == 0 && i % 10 == 2 ? 1024 : 40, &seed);
				json_array_append_new(params, json_string(t2));
			}
			json_t *t =
			    json_pack("{s:s, s:s, s:o}", "name", "payment_reminder", "language",
			              i % 3 ? "en_GB" : "pt", "parameters", params);
			switch (i % 4) {
			case 0:
				fb_random_nonempty(t3, 60, &seed);
				json_object_set_new(
				    t, "header",
				    json_pack("{s:s, s:s}", "type", "text", "text", t3));
				break;
			case 1:
				fb_random_nonempty(t3, 60, &seed);
				json_object_set_new(
				    t, "header",
				    json_pack("{s:s, s:[s]}", "type", "text", "parameters", t3));
				break;
			case 2:
				json_object_set_new(
				    t, "header",
				    json_pack("{s:s, s:s}", "type", "image", "url",
				              "https://cdn.example/a.png?x=\"1\"&y=é"));
				break;
			default:
				fb_random_nonempty(t3, 200, &seed);
				json_object_set_new(t, "header",
				                    json_pack("{s:s, s:s, s:s}", "type", "document",
				                              "url", "https://cdn.example/s.pdf",
				                              "filename", t3));
			}
			json_t *btns = json_array();
			for (int b = 0; b < i % 11 && b < 10; b++) {
				fb_random_nonempty(t3, 30, &seed);
				json_array_append_new(
				    btns, b % 2 ? json_pack("{s:i, s:s}", "index", b, "text", t3)
				                : json_pack("{s:i, s:s, s:s}", "index", b,
				                            "payload", t3, "type", "quick_reply"));
			}
			json_object_set_new(t, "buttons", btns);
			if (i % 5 == 0)
				json_object_set_new(t, "regulatory", json_pack("{s:s}", "k", "v"));
			c = json_pack("{s:s, s:o}", "type", "template", "template", t);
			break;
		}
		case 3: /* a template without variables: no components at all */
			c = json_pack("{s:s, s:{s:s, s:s, s:[], s:n}}", "type", "template",
			              "template", "name", "hello_world", "language", "en_US",
			              "parameters", "header");
			break;
		case 4: { /* document, with or without filename and caption */
			fb_random_nonempty(t2, 1024, &seed);
			fb_random_nonempty(t3, 240, &seed);
			json_t *d = json_pack("{s:s}", "url", "http://files.example/x.pdf");
			if (i % 3)
				json_object_set_new(d, "caption", json_string(t2));
			if (i % 2)
				json_object_set_new(d, "filename", json_string(t3));
			c = json_pack("{s:s, s:o}", "type", "document", "document", d);
			break;
		}
		default: { /* image */
			fb_random_nonempty(t2, 100, &seed);
			json_t *im = json_pack("{s:s}", "url", "https://img.example/p.jpg");
			if (i % 2)
				json_object_set_new(im, "caption", json_string(t2));
			c = json_pack("{s:s, s:o}", "type", "image", "image", im);
		}
		}
		m.content = fb_content(c);
		/* Half without Herald's id (no biz_opaque_callback_data). */
		if (i % 2)
			hr_strlcpy(m.id, "01JABCDEFGHJKMNPQRSTVWXYZ0", sizeof m.id);
		else
			m.id[0] = '\0';
		if (fb_same_request(a, &m, true) == 0) {
			assert_int_equal(fb_fast_hits, 1); /* not the fallback */
			built++;
		} else
			refused++;
		free(m.content);
	}
	/* Refused content is refused the same way (validation runs first). */
	static const char *const bad[] = {
	    "{\"type\":\"text\",\"text\":\"\"}",
	    "{\"type\":\"template\",\"template\":{\"name\":\"X\",\"language\":\"en\"}}",
	    "{\"type\":\"template\",\"template\":{\"name\":\"x\",\"language\":\"en\","
	    "\"buttons\":[{\"index\":0,\"payload\":null,\"text\":\"a\",\"type\":"
	    "\"quick_reply\"}]}}",
	    "not json",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m.content = (char *)bad[i];
		assert_int_equal(fb_same_request(a, &m, true), HR_EINVAL);
	}
	print_message("whatsapp: %d bodies equal byte for byte, %d refused alike\n", built,
	              refused);
	assert_int_equal(built + refused, 1500);
	assert_true(built >= 1400); /* the generator makes valid content */
	channel_account_free(a);
}

/* A plain text's content read with jsonr (no jansson tree at all): the same
 * body or the same refusal as jansson's way, for contents that bend it. */
static void test_fast_text_content(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0", .recipient = "447911123456"};
	static const struct fb_text_case cases[] = {
	    {"{\"type\":\"text\",\"text\":\"hi\"}", 0, 1},
	    {"{\"text\":\"hi\",\"type\":\"text\"}", 0, 1},
	    {" {\"type\" : \"text\" ,\n\"text\":\"hi\"} \n", 0, 1},
	    {"{\"type\":\"\\u0074ext\",\"text\":\"hi\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\\u0001\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"a\",\"text\":\"b\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"extra\":{\"a\":[1,2,null]}}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":{\"preview_url\":true}}", 0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":null}", 0, 0},
	    {"{\"\\u0074ype\":\"text\",\"text\":\"x\"}", 0, 0}, /* an escaped key */
	    {"{\"type\":\"text\",\"type\":\"image\",\"text\":\"x\"}", HR_EINVAL, 0},
	    {"{\"type\":\"image\",\"type\":\"text\",\"text\":\"x\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":null}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":5}", HR_EINVAL, 0},
	    {"{\"type\":\"text\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text \",\"text\":\"x\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":null}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"actions\":[]}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\"} x", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"n\":1e400}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"n\":1e5}", 0, 0}, /* an exponent */
	    {"{\"type\":\"text\",\"text\":\"\\u0000\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"\\ud800\"}", HR_EINVAL, 0},
	    {"[{\"type\":\"text\",\"text\":\"x\"}]", HR_EINVAL, 0},
	    {"", HR_EINVAL, 0},
	};
	fb_text_cases(a, &m, cases, sizeof cases / sizeof cases[0], 1);
	m.content = "{\"type\":\"text\",\"text\":\"hi\"}";
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_string_equal(req.body,
	                    "{\"messaging_product\":\"whatsapp\",\"recipient_type\":"
	                    "\"individual\",\"to\":\"447911123456\",\"type\":\"text\","
	                    "\"text\":{\"preview_url\":false,\"body\":\"hi\"},"
	                    "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRSTVWXYZ0\"}");
	http_req_clear(&req);
	/* 4096 characters are sent, 4097 refused, both ways. */
	char *c = malloc(4 * 4097 + 64);
	assert_non_null(c);
	for (int extra = 0; extra <= 1; extra++) {
		int k = sprintf(c, "{\"type\":\"text\",\"text\":\"");
		for (int i = 0; i < 4096 + extra; i++)
			k += sprintf(c + k, "%s", i % 2 ? "\xc3\xa9" : "\\u00e9");
		sprintf(c + k, "\"}");
		m.content = c;
		assert_int_equal(fb_same_request(a, &m, true), extra ? HR_EINVAL : 0);
	}
	free(c);
	channel_account_free(a);
}

/* A null payload is absent, as validation reads it: the button is a URL
 * button with its text, both ways (the jansson builder once sent
 * {"type":"payload","payload":null}). */
static void test_fast_null_payload(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m = {.id = "", .recipient = "447911123456"};
	m.content = "{\"type\":\"template\",\"template\":{\"name\":\"x\",\"language\":\"en\","
	            "\"buttons\":[{\"index\":1,\"payload\":null,\"text\":\"abc\"}]}}";
	assert_int_equal(fb_same_request(a, &m, true), 0);
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_non_null(strstr(req.body, "\"sub_type\":\"url\",\"index\":\"1\",\"parameters\":"
	                                 "[{\"type\":\"text\",\"text\":\"abc\"}]"));
	http_req_clear(&req);
	channel_account_free(a);
}

/* Answers: the fast reading of messages[0].id gives jansson's outcome for
 * good answers (escaped ids included), odd ones and broken ones. */
static void test_fast_answers_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("wa1", ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *ok =
	    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":"
	    "\"447911123456\",\"wa_id\":\"447911123456\"}],\"messages\":[{\"id\":"
	    "\"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3\",\"message_status\":\"accepted\"}]}";
	struct send_outcome o;
	assert_int_equal(fb_same_outcome(a, 200, ok, strlen(ok), NULL, &o), OUTCOME_OK);
	assert_string_equal(o.provider_id, "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3");
	assert_int_equal(fb_fast_hits, 1);
	/* Read without one jansson allocation; an error answer is jansson's. */
	fb_jansson_allocs = 0;
	json_set_alloc_funcs(fb_counting_malloc, free);
	a->ops->parse_send(a, 200, ok, strlen(ok), NULL, &o);
	assert_int_equal(fb_jansson_allocs, 0);
	a->ops->parse_send(a, 400, "{\"error\":{\"code\":100}}", 23, NULL, &o);
	json_set_alloc_funcs(malloc, free);
	assert_true(fb_jansson_allocs > 0);
	/* Escapes in the id come out unescaped. */
	const char *esc = "{\"messages\":[{\"id\":\"wamid.A\\/B\\u00e9\\ud83d\\ude00\\\"\"}]}";
	assert_int_equal(fb_same_outcome(a, 200, esc, strlen(esc), NULL, &o), OUTCOME_OK);
	assert_string_equal(o.provider_id, "wamid.A/B\xc3\xa9\xf0\x9f\x98\x80\"");
	assert_int_equal(fb_fast_hits, 1);
	/* An id that just fits, and one byte more. */
	char body[512], id[HR_PROVIDER_ID_MAX + 2];
	for (size_t len = HR_PROVIDER_ID_MAX - 2; len <= HR_PROVIDER_ID_MAX; len++) {
		memset(id, 'w', len);
		id[len] = '\0';
		int k = snprintf(body, sizeof body, "{\"messages\":[{\"id\":\"%s\"}]}", id);
		enum outcome_class cls = fb_same_outcome(a, 200, body, (size_t)k, NULL, &o);
		assert_int_equal(cls, len < HR_PROVIDER_ID_MAX ? OUTCOME_OK : OUTCOME_TRANSIENT);
		assert_int_equal(fb_fast_hits, len < HR_PROVIDER_ID_MAX);
	}
	/* Escapes that make it fit, or not. */
	int k = snprintf(body, sizeof body, "{\"messages\":[{\"id\":\"%.*s\\u00e9\"}]}",
	                 HR_PROVIDER_ID_MAX - 3,
	                 "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
	                 "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
	                 "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww");
	fb_same_outcome(a, 200, body, (size_t)k, NULL, NULL);
	/* Odd but valid answers. */
	static const char *const odd[] = {
	    "{\"messages\":[]}",
	    "{\"messages\":[{\"id\":\"\"}]}",
	    "{\"messages\":[{\"id\":1}]}",
	    "{\"messages\":[{\"id\":null}]}",
	    "{\"messages\":{\"id\":\"x\"}}",
	    "{\"messages\":[{\"ID\":\"x\"}]}",
	    "{\"messages\":[{\"id\":\"a\",\"id\":\"b\"}]}",
	    "{\"messages\":[{\"id\":\"a\"}],\"messages\":[{\"id\":\"b\"}]}",
	    "{\"messages\":[{\"id\":\"a\"}],\"messages\":[]}",
	    "{\"messages\":[[],{\"id\":\"b\"}]}",
	    "{\"messages\":[{\"\\u0069d\":\"esc\",\"id\":\"plain\"}]}",
	    "{\"messages\":[{\"id\":\"plain\",\"\\u0069d\":\"esc\"}]}",
	    "[{\"messages\":[{\"id\":\"x\"}]}]",
	    "{\"error\":{\"code\":131026,\"message\":\"undeliverable\"}}",
	    "{\"messages\":[{\"id\":\"x\"}],\"big\":1e400}",
	    "{\"messages\":[{\"id\":\"x\"}],\"big\":123456789012345678901234}",
	    "{\"messages\":[{\"id\":\"\\u0000x\"}]}",
	    "{\"messages\":[{\"id\":\"\\ud800x\"}]}",
	    "{\"messages\":[{\"id\":\"x\xc3\"}]}",
	};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
		fb_same_outcome(a, 200, odd[i], strlen(odd[i]), NULL, NULL);
	/* The duplicate keys resolve as jansson does: the last wins. */
	fb_same_outcome(a, 200, odd[6], strlen(odd[6]), NULL, &o);
	assert_string_equal(o.provider_id, "b");
	assert_int_equal(fb_fast_hits, 1);
	fb_same_outcome(a, 200, odd[10], strlen(odd[10]), NULL, &o);
	assert_string_equal(o.provider_id, "plain");
	fb_same_outcome(a, 200, odd[11], strlen(odd[11]), NULL, &o);
	assert_string_equal(o.provider_id, "esc");
	/* Error answers and no answer are jansson's alone; still the same. */
	fb_same_outcome(a, 400, odd[13], strlen(odd[13]), NULL, NULL);
	fb_same_outcome(a, 500, ok, strlen(ok), "7", NULL);
	fb_same_outcome(a, 0, "Connection refused", 18, NULL, NULL);
	fb_same_outcomes_malformed(a, ok);
	channel_account_free(a);
}

/* ---- webhooks read with jsonr: the same as with jansson ---- */

#define WA_ENV(value)                                                                              \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"        \
	"\"field\":\"messages\",\"value\":" value "}]}]}"
#define WA_ST(x) WA_ENV("{\"statuses\":[" x "]}")
#define WA_MSG(x) WA_ENV("{\"messages\":[" x "]}")
#define WA_M(type, x)                                                                              \
	"{\"from\":\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":\"1750000100\",\"type\":"     \
	"\"" type "\"" x "}"

/* Replies of every kind, in one body. */
static const char wa_replies[] =
    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":"
    "\"1\",\"changes\":[{\"field\":\"messages\",\"value\":{\"messages\":"
    "[{\"from\":\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":"
    "\"1750000100\",\"type\":\"text\",\"text\":{\"body\":\"STOP\"},"
    "\"context\":{\"id\":\"\"}},{\"from\":\"447911123456\",\"id\":"
    "\"wamid.M\",\"timestamp\":\"1750000100\",\"type\":\"button\","
    "\"button\":{\"payload\":\"P\\u00e9\",\"text\":\"Pay\"}},{\"from\":"
    "\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":\"1750000100\","
    "\"type\":\"interactive\",\"interactive\":{\"type\":\"button_reply\","
    "\"button_reply\":{\"id\":\"yes\",\"title\":\"Yes\"}}},{\"from\":"
    "\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":\"1750000100\","
    "\"type\":\"interactive\",\"interactive\":{\"type\":\"list_reply\","
    "\"list_reply\":{\"id\":\"o2\"}}},{\"from\":\"447911123456\","
    "\"id\":\"wamid.M\",\"timestamp\":\"1750000100\",\"type\":\"interactive\","
    "\"interactive\":{\"type\":\"nfm_reply\"}},{\"from\":\"447911123456\","
    "\"id\":\"wamid.M\",\"timestamp\":\"1750000100\",\"type\":\"image\","
    "\"image\":{\"id\":\"m1\",\"caption\":\"my receipt\"}},{\"from\":"
    "\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":\"1750000100\","
    "\"type\":\"document\",\"document\":{\"id\":\"m2\",\"caption\":"
    "7}},{\"from\":\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":"
    "\"1750000100\",\"type\":\"reaction\",\"reaction\":{\"message_id\":"
    "\"wamid.O\",\"emoji\":\"x\"}},{\"from\":\"447911123456\",\"id\":"
    "\"wamid.M\",\"timestamp\":\"1750000100\",\"type\":\"reaction\","
    "\"context\":{\"id\":\"wamid.C\"},\"reaction\":{\"message_id\":"
    "\"wamid.O\"}},{\"from\":\"447911123456\",\"id\":\"wamid.M\","
    "\"timestamp\":\"1750000100\",\"type\":\"reaction\",\"reaction\":"
    "5},{\"from\":\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":"
    "\"1750000100\",\"type\":\"a type name of thirty-one bytes\"},"
    "{\"from\":\"447911123456\",\"id\":\"wamid.M\",\"timestamp\":"
    "\"1750000100\",\"type\":\"text\",\"text\":{\"body\":\"\"}}]}}]}]}";

/*
 * A body like the simulator's (bench/run.sh's webhook phase): n statuses,
 * each with conversation, pricing and Herald's id echoed, into buf.
 */
static size_t wa_sim_body(char *buf, size_t cap, int n, const char *status)
{
	size_t k = (size_t)snprintf(buf, cap,
	                            "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":"
	                            "\"102290129340398\",\"changes\":[{\"value\":{"
	                            "\"messaging_product\":\"whatsapp\",\"metadata\":{"
	                            "\"display_phone_number\":\"15550783881\","
	                            "\"phone_number_id\":\"106540352242922\"},\"statuses\":[");
	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(
		    buf + k, cap - k,
		    "%s{\"id\":\"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3%06d\",\"status\":\"%s\","
		    "\"timestamp\":\"%d\",\"recipient_id\":\"447911%06d\","
		    "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRS%07d\","
		    "\"conversation\":{\"id\":\"c0ffee%d\",\"expiration_timestamp\":\"1750086400\","
		    "\"origin\":{\"type\":\"utility\"}},\"pricing\":{\"billable\":true,"
		    "\"pricing_model\":\"CBP\",\"category\":\"utility\"}}",
		    i ? "," : "", i, status, 1750000000 + i, i, i, i);
	k += (size_t)snprintf(buf + k, cap - k, "]},\"field\":\"messages\"}]}]}");
	assert_true(k < cap);
	return k;
}

static void test_fast_webhooks_equal(void **state)
{
	(void)state;
	static const struct ws_case cases[] = {
	    {VEC_BODY, 0, 1},
	    /* Escapes in values: read unescaped, as jansson does. */
	    {WA_ST("{\"id\":\"wamid.\\u00e9\\\"\\\\\\/x\",\"status\":\"r\\u0065ad\","
	           "\"timestamp\":\"\\u0031750000000\"}"),
	     0, 1},
	    {WA_ST("{\"id\":\"wamid.F\",\"status\":\"failed\",\"timestamp\":\"1750000000\","
	           "\"errors\":[{\"code\":\"1\\u00302\",\"title\":\"bad \\ud83d\\ude00\\n\\t"
	           "end\"}]}"),
	     0, 1},
	    {WA_ST("{\"id\":\"wamid.F\",\"status\":\"failed\",\"timestamp\":1750000000,"
	           "\"errors\":[{\"code\":131026,\"title\":\"Nachricht nicht zugestellt — ü 😀\"},"
	           "{\"code\":1}]}"),
	     0, 1},
	    /* Duplicate keys: the last one wins, everywhere. */
	    {WA_ST("{\"id\":\"wamid.A\",\"status\":\"sent\",\"status\":\"failed\",\"timestamp\":"
	           "\"1\",\"id\":\"wamid.B\",\"errors\":{},\"errors\":[{\"code\":7,\"code\":\"x\"}]"
	           "}"),
	     0, 1},
	    {"{\"object\":\"page\",\"entry\":5,\"object\":\"whatsapp_business_account\","
	     "\"entry\":[{\"changes\":[{\"value\":{\"statuses\":5,\"statuses\":[{\"id\":\"w\","
	     "\"status\":\"read\",\"timestamp\":\"2\"}]}}]}]}",
	     0, 1},
	    /* Missing and odd optional fields. */
	    {WA_ST("{\"id\":\"wamid.A\",\"status\":\"failed\",\"timestamp\":\"3\",\"errors\":[]}"),
	     0, 1},
	    {WA_ST(
	         "{\"id\":\"wamid.A\",\"status\":\"failed\",\"timestamp\":\"3\",\"errors\":[{}]}"),
	     0, 1},
	    {WA_ST("{\"id\":\"wamid.A\",\"status\":\"failed\",\"timestamp\":\"3\",\"errors\":[{"
	           "\"code\":1.5,\"title\":5,\"message\":\"from message\"}]}"),
	     0, 1},
	    {WA_ST("{\"id\":\"wamid.A\",\"status\":\"failed\",\"timestamp\":\"3\",\"errors\":[{"
	           "\"code\":-0,\"title\":null,\"message\":[]}]}"),
	     0, 1},
	    {WA_ST("{\"id\":\"w1\",\"status\":\"read\",\"timestamp\":0,"
	           "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRSTVWXYZ0\"},"
	           "{\"id\":\"w2\",\"status\":\"read\",\"timestamp\":999999999999,"
	           "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRSTVWXYZ\"},"
	           "{\"id\":\"w3\",\"status\":\"read\",\"timestamp\":\"000000000000\","
	           "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRSTVWXYZ00\"},"
	           "{\"id\":\"w4\",\"status\":\"read\",\"timestamp\":\"5\","
	           "\"biz_opaque_callback_data\":5},"
	           "{\"id\":\"w5\",\"status\":\"read\",\"timestamp\":\"5\","
	           "\"biz_opaque_callback_data\":\"81JABCDEFGHJKMNPQRSTVWXYZ0\"}"),
	     0, 1},
	    /* Statuses with nothing to apply are not read further. */
	    {WA_ST("{\"status\":\"played\"},{\"status\":\"deleted\",\"id\":5},{\"status\":"
	           "\"a status name far longer than any that Herald applies\"},{\"status\":\"\"}"),
	     0, 1},
	    /* Changes that are not messages are skipped, whatever their value. */
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":["
	     "{\"field\":\"account_update\",\"value\":5},"
	     "{\"field\":\"a field name longer than thirty-two bytes\",\"value\":5},"
	     "{\"field\":5,\"value\":{}},{\"value\":{\"statuses\":[],\"messages\":[]}}]},"
	     "{\"changes\":[]}]}",
	     0, 1},
	    /* Replies of every kind. */
	    {wa_replies, 0, 1},
	    /* Pretty-printed, with every kind of whitespace. */
	    {" \n\t{\r\n \"object\" : \"whatsapp_business_account\" ,\n \"entry\" : [ { "
	     "\"changes\" : [ { \"value\" : { \"statuses\" : [ { \"id\" : \"w\" , \"status\" : "
	     "\"read\" , \"timestamp\" : \"1\" } ] } } ] } ] }\n ",
	     0, 1},
	    /* What jsonr leaves to jansson, which takes it: an exponent, 19
	     * digits, an escaped key, nesting past JSONR_DEPTH_MAX. */
	    {WA_ST(
	         "{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\",\"pricing\":{\"x\":1e5}}"),
	     0, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\",\"n\":"
	           "1234567890123456789}"),
	     0, 0},
	    {WA_ST("{\"id\":\"w\",\"st\\u0061tus\":\"read\",\"timestamp\":\"1\"}"), 0, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\",\"deep\":"
	           "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	           "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"),
	     0, 0},
	    /* Errors: jansson's way names them. */
	    {"", HR_EINVAL, 0},
	    {"not json", HR_EINVAL, 0},
	    {"[]", HR_EINVAL, 0},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[]} x", HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":1e5}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":1.5}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":99999999999999999999}"),
	     HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":1000000000000}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":-1}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1234567890123\"}"), HR_EINVAL,
	     0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"\"}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\" 1\"}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"\",\"status\":\"read\",\"timestamp\":\"1\"}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\\u0000\",\"status\":\"read\",\"timestamp\":\"1\"}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":5,\"timestamp\":\"1\"}"), HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\",\"errors\":null}"),
	     HR_EINVAL, 0},
	    {WA_ST("{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\",\"errors\":[\"x\"]}"),
	     HR_EINVAL, 0},
	    {WA_ST("5"), HR_EINVAL, 0},
	    {WA_ENV("{\"statuses\":{}}"), HR_EINVAL, 0},
	    {WA_ENV("[]"), HR_EINVAL, 0},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[5]}]}", HR_EINVAL,
	     0},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":{}}]}", HR_EINVAL,
	     0},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":[[]]}", HR_EINVAL, 0},
	    {"{\"object\":\"whatsapp_business_accounts\",\"entry\":[]}", HR_EINVAL, 0},
	    {"{\"object\":5,\"entry\":[]}", HR_EINVAL, 0},
	    {"{\"entry\":[]}", HR_EINVAL, 0},
	    {"{\"object\":\"whatsapp_business_account\",\"entry\":{}}", HR_EINVAL, 0},
	    {WA_MSG(WA_M("text", ",\"text\":{\"body\":5}")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("text", ",\"text\":\"hi\"")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("text", "")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("button", ",\"button\":{\"payload\":\"P\",\"text\":5}")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("interactive", ",\"interactive\":{\"type\":5}")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("interactive", ",\"interactive\":{\"type\":\"list_reply\","
	                                "\"list_reply\":{\"id\":\"o\",\"title\":[]}}")),
	     HR_EINVAL, 0},
	    {WA_MSG(WA_M("reaction", ",\"reaction\":{\"emoji\":5}")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("reaction", ",\"reaction\":{\"message_id\":5}")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("image", ",\"context\":[]")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("a type name of thirty-two bytes!", "")), HR_EINVAL, 0},
	    {WA_MSG(WA_M("", "")), HR_EINVAL, 0},
	    {WA_MSG("{\"id\":\"wamid.M\",\"from\":5,\"timestamp\":\"1\",\"type\":\"text\"}"),
	     HR_EINVAL, 0},
	    {WA_MSG("{\"id\":\"wamid.M\",\"from\":\"4479\",\"type\":\"text\"}"), HR_EINVAL, 0},
	    {WA_MSG("7"), HR_EINVAL, 0},
	    /* A failure after good statuses and replies: nothing of it kept. */
	    {WA_ENV("{\"statuses\":[{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\"}],"
	            "\"messages\":[" WA_M("text",
	                                  ",\"text\":{\"body\":\"x\"}") ","
	                                                                "{\"id\":\"wamid.M\"}]}"),
	     HR_EINVAL, 0},
	};
	ws_cases(&channel_whatsapp, NULL, cases, sizeof cases / sizeof cases[0]);
	assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, NULL, 0), HR_EINVAL);
	assert_int_equal(ws_fast, 0);

	/* Fields at their sizes exactly, and one byte over (jansson's way
	 * then says "is too long"). */
	static char big[300000];
	char id[HR_PROVIDER_ID_MAX + 1];
	for (int over = 0; over <= 1; over++) {
		memset(id, 'i', sizeof id);
		id[HR_PROVIDER_ID_MAX - 1 + over] = '\0';
		char from[HR_ADDR_MAX + 1];
		memset(from, '4', sizeof from);
		from[HR_ADDR_MAX - 1 + over] = '\0';
		snprintf(
		    big, sizeof big,
		    WA_ENV("{\"statuses\":[{\"id\":\"%s\",\"status\":\"read\",\"timestamp\":"
		           "\"1\"}],\"messages\":[{\"id\":\"%s\",\"from\":\"%s\",\"timestamp\":"
		           "\"1\",\"type\":\"text\",\"text\":{\"body\":\"b\"},\"context\":{"
		           "\"id\":\"%s\"}}]}"),
		    id, id, from, id);
		assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, big, strlen(big)),
		                 over ? HR_EINVAL : 0);
		assert_int_equal(ws_fast, over ? 0 : 1);
	}
	/* Error texts and codes past their fields, cut at a character. */
	char text[4000];
	size_t k = 0;
	for (int i = 0; i < 300; i++)
		k += (size_t)snprintf(text + k, sizeof text - k, "é\\u00e9");
	snprintf(big, sizeof big,
	         WA_ST("{\"id\":\"w\",\"status\":\"failed\",\"timestamp\":\"1\",\"errors\":[{"
	               "\"code\":\"%s\",\"message\":\"%s\"}]}"),
	         text, text);
	assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, big, strlen(big)), 0);
	assert_int_equal(ws_fast, 1);

	/* The simulator's bodies: 10 statuses (over JSONR_TOKENS_MAX tokens),
	 * 1, and 2,000 (a 900 KB body is past the buffer: 500). */
	int sizes[] = {1, 10, 500};
	for (size_t i = 0; i < 3; i++) {
		size_t n = wa_sim_body(big, sizeof big, sizes[i], i % 2 ? "read" : "delivered");
		assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, big, n), 0);
		assert_int_equal(ws_fast, 1);
	}
	/* Past jsonr's cap: jansson's way, the same statuses. */
	k = wa_sim_body(big, sizeof big, 1, "read");
	k -= strlen("]},\"field\":\"messages\"}]}]}");
	k += (size_t)snprintf(big + k, sizeof big - k, "],\"pad\":[");
	for (int i = 0; i < JSONR_TOKENS_LARGE_MAX; i++)
		k += (size_t)snprintf(big + k, sizeof big - k, "%s0", i ? "," : "");
	k += (size_t)snprintf(big + k, sizeof big - k, "]},\"field\":\"messages\"}]}]}");
	assert_true(k < sizeof big - 1);
	assert_int_equal(ws_same_parse(&channel_whatsapp, NULL, big, k), 0);
	assert_int_equal(ws_fast, 0);
}

/* The simulator's 10-status body, read the fast way: no jansson allocation. */
static void test_fast_webhook_no_jansson(void **state)
{
	(void)state;
	static char body[16384];
	size_t n = wa_sim_body(body, sizeof body, 10, "read");
	struct wh_parsed p = {0};
	struct hr_err err = {0};
	fb_jansson_allocs = 0;
	json_set_alloc_funcs(fb_counting_malloc, free);
	int rc = channel_whatsapp.webhook_parse(NULL, body, n, &p, &err);
	json_set_alloc_funcs(malloc, free);
	assert_int_equal(rc, 0);
	assert_int_equal(fb_jansson_allocs, 0);
	assert_int_equal(p.nstatuses, 10);
	assert_string_equal(p.statuses[9].provider_id, "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3000009");
	assert_int_equal(p.statuses[9].status, MSG_READ);
	assert_string_equal(p.statuses[9].provider_ts, "1750000009");
	assert_true(p.statuses[9].provider_at == 1750000009LL * 1000000);
	assert_string_equal(p.statuses[9].client_ref, "01JABCDEFGHJKMNPQRS0000009");
	wh_parsed_clear(&p);
	/* Turned off: jansson's tree. */
	channel_fast_json = false;
	json_set_alloc_funcs(fb_counting_malloc, free);
	rc = channel_whatsapp.webhook_parse(NULL, body, n, &p, &err);
	json_set_alloc_funcs(malloc, free);
	channel_fast_json = true;
	assert_int_equal(rc, 0);
	assert_true(fb_jansson_allocs > 100);
	wh_parsed_clear(&p);
}

/* Mutations of a body with statuses and replies of every kind: whatever
 * the bytes, the same result both ways. */
static void test_fast_webhook_mutations(void **state)
{
	(void)state;
	static const char body[] = WA_ENV(
	    "{\"statuses\":[{\"id\":\"wamid.A\",\"status\":\"failed\",\"timestamp\":\"17\","
	    "\"biz_opaque_callback_data\":\"01JABCDEFGHJKMNPQRSTVWXYZ0\",\"errors\":[{\"code\":"
	    "131026,\"title\":\"T\\u00e9\"}]},{\"id\":\"wamid.B\",\"status\":\"read\","
	    "\"timestamp\":18}],\"messages\":[" WA_M(
	        "interactive",
	        ",\"context\":{\"id\":\"wamid.C\"},\"interactive\":{\"type\":"
	        "\"button_reply\",\"button_reply\":{\"id\":\"y\",\"title\":"
	        "\"Y\"}}") "," WA_M("reaction", ",\"reaction\":{\"message_id\":\"wamid.O\","
	                                        "\"emoji\":\"x\"}") "]}");
	int fast = 0, slow = 0;
	ws_mutations(&channel_whatsapp, NULL, body, 20000, 99, &fast, &slow);
	print_message("whatsapp webhook mutations: %d read the fast way, %d by jansson\n", fast,
	              slow);
	assert_true(fast > 3000);
	assert_true(slow > 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signature_vector),
	    cmocka_unit_test(test_signature_rejections),
	    cmocka_unit_test(test_handshake),
	    cmocka_unit_test(test_account_config_errors),
	    cmocka_unit_test(test_account_rate_limit),
	    cmocka_unit_test(test_account_set),
	    cmocka_unit_test(test_normalize_recipient),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_validate_types),
	    cmocka_unit_test(test_build_send_text),
	    cmocka_unit_test(test_build_send_template),
	    cmocka_unit_test(test_build_send_interactive),
	    cmocka_unit_test(test_build_send_media),
	    cmocka_unit_test(test_build_send_template_components),
	    cmocka_unit_test(test_parse_send_table),
	    cmocka_unit_test(test_rate_scope),
	    cmocka_unit_test(test_parse_vector),
	    cmocka_unit_test(test_parse_multi),
	    cmocka_unit_test(test_parse_replies),
	    cmocka_unit_test(test_parse_more_inbound),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_send_utf8_error),
	    cmocka_unit_test(test_fast_bodies_equal),
	    cmocka_unit_test(test_fast_null_payload),
	    cmocka_unit_test(test_fast_text_content),
	    cmocka_unit_test(test_fast_answers_equal),
	    cmocka_unit_test(test_fast_webhooks_equal),
	    cmocka_unit_test(test_fast_webhook_no_jansson),
	    cmocka_unit_test(test_fast_webhook_mutations),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
