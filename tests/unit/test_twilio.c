/*
 * test_twilio.c - the Twilio (channel "sms") adapter: the PROVIDERS.md
 * signature vector and rejections, request bodies field by field after
 * form-decoding, error classification, status callback and inbound parsing
 * (opt-out keywords, HELP auto-replies), malformed bodies, recipient
 * normalisation, content validation and account loading.
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
#include "herald.h"
#include "fastbody_test.h"

#include "channel_test.h"

/* PROVIDERS.md's vector, computed independently of Herald. */
#define VEC_TOKEN "12345"
#define VEC_URL "https://mycompany.com/myapp.php?foo=1&bar=2"
#define VEC_SIG "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
/* The vector's parameters, deliberately not in sorted order. */
#define VEC_BODY                                                                                   \
	"To=%2B18005551212&CallSid=CA1234567890ABCDE&From=%2B12349013030&Digits=1234"              \
	"&Caller=%2B12349013030"

#define SID "AC0123456789abcdef0123456789abcdef"
#define KEY_SID "SK0123456789abcdef0123456789abcdef"
#define MS_SID "MG0123456789abcdef0123456789abcdef"

#define ACCT_CONFIG                                                                                \
	"{\"base_url\":\"http://127.0.0.1:9090/\",\"account_sid\":\"" SID "\","                    \
	"\"auth_token\":\"" VEC_TOKEN "\",\"from\":\"+15005550006\","                              \
	"\"help_text\":\"Acme alerts. Reply STOP to stop.\"}"

static struct channel_account *load(const char *id, const char *config, struct hr_err *err)
{
	return channel_test_load("sms", id, config, err);
}

static int setup(void **state)
{
	(void)state;
	setenv("TW_TEST_KEY_SECRET", "key-secret-xyz", 1);
	unsetenv("TW_TEST_UNSET");
	return 0;
}

/* ---- a fake wh_request with headers from a small table ---- */

struct kv {
	const char *k, *v;
};
struct fake_req {
	struct kv headers[4];
};

static const char *fake_header(void *ctx, const char *name)
{
	struct fake_req *f = ctx;
	for (int i = 0; i < 4 && f->headers[i].k; i++)
		if (strcasecmp(f->headers[i].k, name) == 0)
			return f->headers[i].v;
	return NULL;
}

static struct wh_request mkreq(struct fake_req *f, const char *url, const char *body)
{
	struct wh_request r = {.method = "POST",
	                       .url = url,
	                       .body = body,
	                       .body_len = body ? strlen(body) : 0,
	                       .header = fake_header,
	                       .ctx = f};
	return r;
}

/*
 * Decodes a form body into {name: value} (a repeated name gets an array),
 * independently of the adapter: split on & and =, '+' is a space, curl
 * decodes %XX. Returns how many parameters there were in *n.
 */
static json_t *decode_form(const char *body, size_t *n)
{
	json_t *o = json_object();
	char *copy = strdup(body);
	*n = 0;
	for (char *save = NULL, *tok = strtok_r(copy, "&", &save); tok;
	     tok = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(tok, '=');
		assert_non_null(eq);
		*eq = '\0';
		for (char *p = eq + 1; *p; p++)
			if (*p == '+')
				*p = ' ';
		int nl = 0, vl = 0;
		char *name = curl_easy_unescape(NULL, tok, 0, &nl);
		char *value = curl_easy_unescape(NULL, eq + 1, 0, &vl);
		json_t *old = json_object_get(o, name);
		if (!old) {
			json_object_set_new(o, name, json_stringn(value, (size_t)vl));
		} else if (json_is_array(old)) {
			json_array_append_new(old, json_stringn(value, (size_t)vl));
		} else {
			json_t *arr = json_pack("[O,s%]", old, value, (size_t)vl);
			json_object_set_new(o, name, arr);
		}
		curl_free(name);
		curl_free(value);
		(*n)++;
	}
	free(copy);
	return o;
}

static const char *fget(json_t *form, const char *name)
{
	return json_string_value(json_object_get(form, name));
}

/* ---- signatures ---- */

static void test_signature_vector(void **state)
{
	(void)state;
	/* The scheme itself, straight from PROVIDERS.md. */
	const char *s = VEC_URL "CallSidCA1234567890ABCDECaller+12349013030Digits1234"
	                        "From+12349013030To+18005551212";
	char b64[29];
	hr_hmac_sha1_b64(VEC_TOKEN, 5, s, strlen(s), b64);
	assert_string_equal(b64, VEC_SIG);

	struct hr_err err = {0};
	struct channel_account *a = load("sms1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct fake_req f = {.headers = {{"x-twilio-signature", VEC_SIG}}};
	struct wh_request r = mkreq(&f, VEC_URL, VEC_BODY);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	/* The same parameters encoded differently ('+' for a space is not used
	 * here; lower-case hex escapes) sign the same. */
	const char *body2 = "Caller=%2b12349013030&Digits=1234&CallSid=CA1234567890ABCDE"
	                    "&To=%2b18005551212&From=%2b12349013030";
	r = mkreq(&f, VEC_URL, body2);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	channel_account_free(a);
}

static void test_signature_rejections(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("sms1", ACCT_CONFIG, &err);
	assert_non_null(a);
	char wrong[40];
	hr_strlcpy(wrong, VEC_SIG, sizeof wrong);
	wrong[5] = wrong[5] == 'A' ? 'B' : 'A';
	struct {
		const char *sig, *url, *body, *says;
	} cases[] = {
	    {NULL, VEC_URL, VEC_BODY, "missing"},
	    {"", VEC_URL, VEC_BODY, "missing"},
	    {wrong, VEC_URL, VEC_BODY, "does not match"},
	    {VEC_SIG, VEC_URL,
	     "To=%2B18005551212&CallSid=CA1234567890ABCDE&From=%2B12349013030"
	     "&Digits=1235&Caller=%2B12349013030",
	     "does not match"}, /* altered body */
	    {VEC_SIG, "https://mycompany.com/myapp.php", VEC_BODY, "does not match"}, /* URL */
	    {VEC_SIG, VEC_URL, VEC_BODY "&Extra=1", "does not match"}, /* added param */
	    {VEC_SIG "x", VEC_URL, VEC_BODY, "does not match"},        /* longer */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fake_req f = {.headers = {{"X-Twilio-Signature", cases[i].sig}}};
		struct wh_request r = mkreq(&f, cases[i].url, cases[i].body);
		hr_err_clear(&err);
		assert_int_equal(a->ops->webhook_verify(a, &r, &err), HR_EAUTH);
		assert_string_equal(err.field, "X-Twilio-Signature");
		assert_non_null(strstr(err.msg, cases[i].says));
	}
	/* Another account's token does not verify the vector. */
	struct channel_account *b =
	    load("sms2",
	         "{\"base_url\":\"http://127.0.0.1:9090\",\"account_sid\":\"" SID "\","
	         "\"auth_token\":\"54321\",\"from\":\"+15005550006\"}",
	         &err);
	assert_non_null(b);
	struct fake_req f = {.headers = {{"X-Twilio-Signature", VEC_SIG}}};
	struct wh_request r = mkreq(&f, VEC_URL, VEC_BODY);
	assert_int_equal(b->ops->webhook_verify(b, &r, &err), HR_EAUTH);
	channel_account_free(b);
	channel_account_free(a);
}

static void test_dedupe_key(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("sms");
	assert_non_null(ops);
	char out[128];
	struct fake_req f = {.headers = {{"I-Twilio-Idempotency-Token", "8c1f2a-77e0"}}};
	struct wh_request r = mkreq(&f, VEC_URL, "");
	ops->webhook_dedupe_key(&r, out);
	assert_string_equal(out, "8c1f2a-77e0");
	struct fake_req none = {0};
	r = mkreq(&none, VEC_URL, "");
	ops->webhook_dedupe_key(&r, out);
	assert_string_equal(out, "");
	char longtok[300];
	memset(longtok, 'a', sizeof longtok - 1);
	longtok[sizeof longtok - 1] = '\0';
	struct fake_req lf = {.headers = {{"I-Twilio-Idempotency-Token", longtok}}};
	r = mkreq(&lf, VEC_URL, "");
	ops->webhook_dedupe_key(&r, out);
	assert_int_equal(strlen(out), 7 + 64);
	assert_true(strncmp(out, "sha256:", 7) == 0);
	longtok[200] = 'b'; /* differs after any prefix: a different key */
	char out2[128];
	ops->webhook_dedupe_key(&r, out2);
	assert_string_not_equal(out, out2);
}

/* ---- accounts ---- */

static void test_account_config_errors(void **state)
{
	(void)state;
#define B "\"base_url\":\"http://127.0.0.1:9090\","
#define S "\"account_sid\":\"" SID "\","
#define T "\"auth_token\":\"tok\","
	struct {
		const char *config, *field;
	} cases[] = {
	    {"{" S T "\"from\":\"+15005550006\"}", "accounts[x].base_url"},
	    {"{\"base_url\":\"ftp://h\"," S T "\"from\":\"+15005550006\"}", "accounts[x].base_url"},
	    {"{" B T "\"from\":\"+15005550006\"}", "accounts[x].account_sid"},
	    {"{" B "\"account_sid\":\"AC123\"," T "\"from\":\"+15005550006\"}",
	     "accounts[x].account_sid"},
	    {"{" B "\"account_sid\":\"SK0123456789abcdef0123456789abcdef\"," T
	     "\"from\":\"+15005550006\"}",
	     "accounts[x].account_sid"},
	    {"{" B S "\"from\":\"+15005550006\"}", "accounts[x].auth_token"},
	    {"{" B S "\"auth_token\":\"env:TW_TEST_UNSET\",\"from\":\"+15005550006\"}",
	     "accounts[x].auth_token"},
	    {"{" B S "\"auth_token\":\"tok\"}", "accounts[x].from"},
	    {"{" B S T "\"from\":\"+15005550006\",\"messaging_service_sid\":\"" MS_SID "\"}",
	     "accounts[x].messaging_service_sid"},
	    {"{" B S T "\"from\":\"not a number!\"}", "accounts[x].from"},
	    {"{" B S T "\"from\":\"+0123456789\"}", "accounts[x].from"},
	    {"{" B S T "\"messaging_service_sid\":\"MG12\"}", "accounts[x].messaging_service_sid"},
	    {"{" B S T "\"from\":\"+15005550006\",\"api_key_sid\":\"SK1\"}",
	     "accounts[x].api_key_sid"},
	    {"{" B S T "\"from\":\"+15005550006\",\"api_key_sid\":\"" KEY_SID "\"}",
	     "accounts[x].api_key_secret"},
	    {"{" B S T "\"from\":\"+15005550006\",\"api_key_secret\":\"s\"}",
	     "accounts[x].api_key_secret"},
	    {"{" B S T "\"from\":\"+15005550006\",\"status_callback\":\"/relative\"}",
	     "accounts[x].status_callback"},
	    {"{" B S T "\"from\":\"+15005550006\",\"help_text\":\"\"}", "accounts[x].help_text"},
	    {"{" B S T "\"from\":\"+15005550006\",\"rate_limit\":-1}", "accounts[x].rate_limit"},
	};
#undef B
#undef S
#undef T
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err = {0};
		struct channel_account *a = load("x", cases[i].config, &err);
		if (a)
			fail_msg("case %zu loaded: %s", i, cases[i].config);
		assert_int_equal(err.code, HR_EINVAL);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
	}
	/* Good variants: a short code, an alphanumeric sender, a messaging
	 * service; no rate_limit means the registry's default of 10/s. */
	const char *good[] = {
	    "{\"base_url\":\"https://api.twilio.com\",\"account_sid\":\"" SID "\","
	    "\"auth_token\":\"t\",\"from\":\"898211\"}",
	    "{\"base_url\":\"https://api.twilio.com\",\"account_sid\":\"" SID "\","
	    "\"auth_token\":\"t\",\"from\":\"ACME Bank\"}",
	    "{\"base_url\":\"https://api.twilio.com\",\"account_sid\":\"" SID "\","
	    "\"auth_token\":\"t\",\"messaging_service_sid\":\"" MS_SID "\"}",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct hr_err err = {0};
		struct channel_account *a = load("g", good[i], &err);
		if (!a)
			fail_msg("good %zu: %s", i, err.msg);
		assert_true(a->rate_limit == 10.0);
		assert_string_equal(a->ops->name, "sms");
		assert_true(a->ops->has_receipts);
		channel_account_free(a);
	}
}

/* ---- recipients and validation ---- */

static void test_normalize_recipient(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("sms");
	static const struct recipient_case cases[] = {
	    {"+447911123456", "+447911123456"},
	    {"+44 7911 123456", "+447911123456"},
	    {"447911123456", "+447911123456"},
	    {"+1 (555) 010-0001", "+15550100001"},
	    {"+1.555.010.0001", "+15550100001"},
	    {"+12345678", "+12345678"},               /* 8 digits */
	    {"+123456789012345", "+123456789012345"}, /* 15 digits */
	    {"+1234567", NULL},                       /* 7 digits */
	    {"+1234567890123456", NULL},              /* 16 digits */
	    {"07911123456", NULL},                    /* national, no country code */
	    {"+44 7911 12345x", NULL},
	    {"++447911123456", NULL},
	    {"4479+11123456", NULL},
	    {"", NULL},
	    {NULL, NULL},
	};
	check_recipients(ops, cases, sizeof cases / sizeof cases[0]);
}

static void test_validate(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("sms");
	static char long_text[2048];
	memset(long_text, 'a', 1601);
	long_text[1601] = '\0';
	char long_json[2100], ok_json[2100];
	snprintf(long_json, sizeof long_json, "{\"type\":\"text\",\"text\":\"%s\"}", long_text);
	long_text[1600] = '\0';
	snprintf(ok_json, sizeof ok_json, "{\"type\":\"text\",\"text\":\"%s\"}", long_text);
	struct {
		const char *content, *field; /* field NULL: valid */
	} cases[] = {
	    {"{\"type\":\"text\",\"text\":\"hi\"}", NULL},
	    {ok_json, NULL},
	    {long_json, "text"},
	    {"{\"type\":\"text\",\"text\":\"\"}", "text"},
	    {"{\"type\":\"text\"}", "text"},
	    {"{\"text\":\"hi\"}", "type"},
	    {"[1]", "content"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"id\":\"y\",\"title\":\"Y\"}]}",
	     "buttons"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"actions\":[{\"title\":\"t\",\"url\":\"u\"}]}",
	     "actions"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x/a.pdf\"}}", "type"},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"t\"}}", "type"},
	    {"{\"type\":\"carousel\",\"cards\":[]}", "type"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/a.png\",\"caption\":\"c\"}}",
	     NULL},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/a.png\"}}", NULL},
	    {"{\"type\":\"image\",\"image\":{\"caption\":\"c\"}}", "image.url"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"file:///etc/passwd\"}}", "image.url"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/a.png\",\"caption\":7}}",
	     "image.caption"},
	    {"{\"type\":\"image\",\"image\":\"https://x\"}", "image"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"parameters\":[\"1\"]}}",
	     NULL},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"\"}}", "template.name"},
	    {"{\"type\":\"template\",\"template\":\"otp\"}", "template"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"parameters\":[1]}}",
	     "template.parameters[0]"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"header\":{\"type\":\"text\"}}"
	     "}",
	     "template.header"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"buttons\":[]}}",
	     "template.buttons"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":{"
	     "\"dlt_entity_id\":\"1201159543060917386\",\"dlt_template_id\":1107161234567890123,"
	     "\"ContentSid\":\"HX0123\"}}}",
	     NULL},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":{"
	     "\"dlt_entity\":\"1\"}}}",
	     "template.regulatory.dlt_entity"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":{"
	     "\"Body\":\"x\"}}}",
	     "template.regulatory.Body"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":{"
	     "\"dlt_template_id\":{\"id\":1}}}}",
	     "template.regulatory.dlt_template_id"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":{"
	     "\"dlt_template_id\":-5}}}",
	     "template.regulatory.dlt_template_id"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"regulatory\":[1]}}",
	     "template.regulatory"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"validity_period\":600}}", NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"validity_period\":36000}}", NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"validity_period\":36001}}",
	     "options.validity_period"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"validity_period\":0}}",
	     "options.validity_period"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"validity_period\":\"60\"}}",
	     "options.validity_period"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"parse_mode\":\"HTML\"}}",
	     "options.parse_mode"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":[]}", "options"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_error_t je;
		json_t *c = json_loads(cases[i].content, 0, &je);
		assert_non_null(c);
		struct hr_err err = {0};
		int rc = ops->validate(c, &err);
		json_decref(c);
		if (!cases[i].field) {
			if (rc)
				fail_msg("case %zu refused: %s", i, err.msg);
			continue;
		}
		if (rc != HR_EINVAL)
			fail_msg("case %zu accepted: %.80s", i, cases[i].content);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
	}
}

/* ---- sending ---- */

static struct message mkmsg(const char *to, const char *content, const char *body)
{
	struct message m = {0};
	hr_strlcpy(m.id, "01JABCDEFGHJKMNPQRSTVWXYZ0", sizeof m.id);
	hr_strlcpy(m.recipient, to, sizeof m.recipient);
	m.content = (char *)content;
	m.body = (char *)body;
	return m;
}

static bool has_header(const struct curl_slist *h, const char *want)
{
	for (; h; h = h->next)
		if (strcasecmp(h->data, want) == 0)
			return true;
	return false;
}

static void test_build_send_text(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	hr_strlcpy(a->webhook_url, "https://herald.example/webhooks/sms/acme-sms",
	           sizeof a->webhook_url);
	const char *text = "Your code: 12 & 34 = 46?\nCaf\xc3\xa9 \xe2\x82\xac+5 100%";
	char content[256];
	snprintf(content, sizeof content,
	         "{\"type\":\"text\",\"text\":\"Your code: 12 & 34 = 46?\\nCaf\xc3\xa9 "
	         "\xe2\x82\xac+5 100%%\",\"options\":{\"validity_period\":600}}");
	struct message m = mkmsg("+447911123456", content, text);
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_string_equal(req.url,
	                    "http://127.0.0.1:9090/2010-04-01/Accounts/" SID "/Messages.json");
	assert_string_equal(req.userpwd, SID ":" VEC_TOKEN);
	assert_true(has_header(req.headers, "Content-Type: application/x-www-form-urlencoded"));
	assert_int_equal(req.body_len, strlen(req.body));
	/* Only unreserved characters appear unencoded. */
	for (const char *p = req.body; *p; p++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		                       "0123456789-._~%&=",
		                       *p));
	size_t n;
	json_t *f = decode_form(req.body, &n);
	assert_int_equal(n, 5);
	assert_string_equal(fget(f, "To"), "+447911123456");
	assert_string_equal(fget(f, "From"), "+15005550006");
	assert_string_equal(fget(f, "Body"), text);
	assert_string_equal(fget(f, "StatusCallback"),
	                    "https://herald.example/webhooks/sms/acme-sms");
	assert_string_equal(fget(f, "ValidityPeriod"), "600");
	assert_null(json_object_get(f, "MessagingServiceSid"));
	json_decref(f);
	http_req_clear(&req);

	/* No public URL yet and no status_callback: no StatusCallback at all. */
	a->webhook_url[0] = '\0';
	m = mkmsg("+447911123456", "{\"type\":\"text\",\"text\":\"hi\"}", "hi");
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	f = decode_form(req.body, &n);
	assert_int_equal(n, 3);
	assert_null(json_object_get(f, "StatusCallback"));
	assert_null(json_object_get(f, "ValidityPeriod"));
	json_decref(f);
	http_req_clear(&req);

	/* Content the channel refuses never becomes a request. */
	m = mkmsg("+447911123456", "{\"type\":\"document\",\"document\":{\"url\":\"https://x\"}}",
	          NULL);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "type");
	assert_null(req.body);
	m = mkmsg("+447911123456", "not json", NULL);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "content");
	channel_account_free(a);
}

static void test_build_send_service_template_regulatory(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a =
	    load("in-sms",
	         "{\"base_url\":\"https://api.twilio.com\",\"account_sid\":\"" SID "\","
	         "\"auth_token\":\"tok\",\"api_key_sid\":\"" KEY_SID "\","
	         "\"api_key_secret\":\"env:TW_TEST_KEY_SECRET\","
	         "\"messaging_service_sid\":\"" MS_SID "\","
	         "\"status_callback\":\"https://hooks.example/twilio?acct=in\"}",
	         &err);
	if (!a)
		fail_msg("%s", err.msg);
	assert_non_null(a);
	hr_strlcpy(a->webhook_url, "https://herald.example/webhooks/sms/in-sms",
	           sizeof a->webhook_url);
	const char *content =
	    "{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"language\":\"en\","
	    "\"parameters\":[\"4821\"],\"regulatory\":{\"dlt_entity_id\":\"1201159543060917386\","
	    "\"dlt_template_id\":1107161234567890123}}}";
	struct message m = mkmsg("+919812345678", content, "Your OTP is 4821 - ACME");
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_string_equal(req.url,
	                    "https://api.twilio.com/2010-04-01/Accounts/" SID "/Messages.json");
	assert_string_equal(req.userpwd, KEY_SID ":key-secret-xyz");
	size_t n;
	json_t *f = decode_form(req.body, &n);
	assert_int_equal(n, 6);
	assert_string_equal(fget(f, "To"), "+919812345678");
	assert_string_equal(fget(f, "MessagingServiceSid"), MS_SID);
	assert_null(json_object_get(f, "From"));
	assert_string_equal(fget(f, "Body"), "Your OTP is 4821 - ACME");
	assert_string_equal(fget(f, "StatusCallback"), "https://hooks.example/twilio?acct=in");
	assert_string_equal(fget(f, "DltPEId"), "1201159543060917386");
	assert_string_equal(fget(f, "DltTemplateId"), "1107161234567890123");
	json_decref(f);
	http_req_clear(&req);

	/* A template without a rendered body cannot be sent. */
	m = mkmsg("+919812345678", content, NULL);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "body");
	channel_account_free(a);
}

static void test_build_send_image(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m =
	    mkmsg("+15550100001",
	          "{\"type\":\"image\",\"image\":{\"url\":\"https://cdn.example/a b.png?x=1\","
	          "\"caption\":\"Your receipt\"}}",
	          "Your receipt");
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	size_t n;
	json_t *f = decode_form(req.body, &n);
	assert_int_equal(n, 4);
	assert_string_equal(fget(f, "MediaUrl"), "https://cdn.example/a b.png?x=1");
	assert_string_equal(fget(f, "Body"), "Your receipt");
	json_decref(f);
	http_req_clear(&req);
	m = mkmsg("+15550100001", "{\"type\":\"image\",\"image\":{\"url\":\"https://cdn/a.png\"}}",
	          NULL);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	f = decode_form(req.body, &n);
	assert_int_equal(n, 3);
	assert_null(json_object_get(f, "Body"));
	assert_string_equal(fget(f, "MediaUrl"), "https://cdn/a.png");
	json_decref(f);
	http_req_clear(&req);
	channel_account_free(a);
}

static void test_parse_send_table(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("sms");
	struct {
		long http;
		const char *body, *retry_after;
		enum outcome_class cls;
		const char *code, *text_has, *provider_id;
		bool blocked, suppress;
		int64_t retry_us;
	} cases[] = {
	    {201,
	     "{\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\","
	     "\"num_segments\":\"1\",\"error_code\":null,\"error_message\":null}",
	     NULL, OUTCOME_OK, "", "", "SM0123456789abcdef0123456789abcdef", false, false, 0},
	    {201, "{\"status\":\"queued\"}", NULL, OUTCOME_TRANSIENT, "http_201", "without a sid",
	     "", false, false, 0},
	    {400,
	     "{\"code\":21211,\"message\":\"The 'To' number +1555 is not a valid phone number.\","
	     "\"more_info\":\"https://www.twilio.com/docs/errors/21211\",\"status\":400}",
	     NULL, OUTCOME_PERMANENT, "21211", "not a valid phone number", "", false, false, 0},
	    {400,
	     "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\","
	     "\"status\":400}",
	     NULL, OUTCOME_PERMANENT, "21610", "unsubscribed", "", false, true, 0},
	    {400, "{\"code\":21614,\"message\":\"not a mobile number\",\"status\":400}", NULL,
	     OUTCOME_PERMANENT, "21614", "mobile", "", false, false, 0},
	    {400, "{\"code\":21408,\"message\":\"Permission to send an SMS has not been enabled\"}",
	     NULL, OUTCOME_PERMANENT, "21408", "enabled", "", false, false, 0},
	    {429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}", "2",
	     OUTCOME_RATE_LIMITED, "20429", "Too Many", "", false, false, 2000000},
	    {429, "", NULL, OUTCOME_RATE_LIMITED, "http_429", "HTTP 429", "", false, false, 0},
	    /* An HTTP date years ahead (fuzz/regress/twilio/retry-after-year-overflow:
	     * it overflowed int64 microseconds): capped at a day. */
	    {429, "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}",
	     "Wed, 21 Oct 1302072 07:28:00 GMT", OUTCOME_RATE_LIMITED, "20429", "Too Many", "",
	     false, false, 86400LL * 1000000},
	    {429, "{\"code\":14107,\"message\":\"SMS send rate limit exceeded\"}", NULL,
	     OUTCOME_RATE_LIMITED, "14107", "rate limit", "", false, false, 0},
	    {429, "{\"code\":30001,\"message\":\"Queue overflow\"}", NULL, OUTCOME_RATE_LIMITED,
	     "30001", "Queue overflow", "", false, false, 0},
	    {500, "{\"code\":20500,\"message\":\"Internal Server Error\"}", NULL, OUTCOME_TRANSIENT,
	     "20500", "Internal", "", false, false, 0},
	    {503, "<html>Service Unavailable</html>", NULL, OUTCOME_TRANSIENT, "http_503",
	     "Service Unavailable", "", false, false, 0},
	    {502, "{\"code\":29999,\"message\":\"odd\"}", NULL, OUTCOME_TRANSIENT, "29999", "odd",
	     "", false, false, 0},
	    {400, "{\"code\":29999,\"message\":\"odd\"}", NULL, OUTCOME_PERMANENT, "29999", "odd",
	     "", false, false, 0},
	    {408, "", NULL, OUTCOME_TRANSIENT, "http_408", "HTTP 408", "", false, false, 0},
	    {401,
	     "{\"code\":20003,\"message\":\"Authenticate\",\"more_info\":"
	     "\"https://www.twilio.com/docs/errors/20003\",\"status\":401}",
	     NULL, OUTCOME_PERMANENT, "20003", "Authenticate", "", true, false, 0},
	    {404, "{\"code\":20404,\"message\":\"The requested resource was not found\"}", NULL,
	     OUTCOME_PERMANENT, "20404", "not found", "", true, false, 0},
	    {400, "{\"code\":21606,\"message\":\"The From phone number is not valid\"}", NULL,
	     OUTCOME_PERMANENT, "21606", "From", "", true, false, 0},
	    {400, "{\"code\":\"21211\"}", NULL, OUTCOME_PERMANENT, "21211", "Invalid 'To'", "",
	     false, false, 0}, /* string code, no message: the table's text */
	    {0, "Connection refused", NULL, OUTCOME_TRANSIENT, "network", "refused", "", false,
	     false, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct send_outcome o;
		ops->parse_send(NULL, cases[i].http, cases[i].body, strlen(cases[i].body),
		                cases[i].retry_after, &o);
		if (o.cls != cases[i].cls)
			fail_msg("case %zu: class %s, want %s", i, outcome_class_name(o.cls),
			         outcome_class_name(cases[i].cls));
		assert_string_equal(o.error_code, cases[i].code);
		if (!strstr(o.error_text, cases[i].text_has))
			fail_msg("case %zu: text '%s' lacks '%s'", i, o.error_text,
			         cases[i].text_has);
		assert_string_equal(o.provider_id, cases[i].provider_id);
		assert_int_equal(o.account_blocked, cases[i].blocked);
		assert_int_equal(o.suppress_recipient, cases[i].suppress);
		assert_int_equal(o.retry_after_us, cases[i].retry_us);
		assert_string_equal(o.new_recipient, "");
		/* Twilio's limits are all the account's (or its queue's). */
		assert_int_equal(o.rate_scope, cases[i].cls == OUTCOME_RATE_LIMITED
		                                   ? RATE_SCOPE_ACCOUNT
		                                   : RATE_SCOPE_NONE);
	}
}

/* ---- webhooks ---- */

static void test_parse_status_table(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct {
		const char *status, *extra;
		int want; /* -1: nothing to apply */
		const char *code, *text_has;
		int64_t at;
	} cases[] = {
	    {"queued", "", -1, "", "", 0},
	    {"accepted", "", -1, "", "", 0},
	    {"scheduled", "", -1, "", "", 0},
	    {"canceled", "", -1, "", "", 0},
	    {"mystery", "", -1, "", "", 0},
	    {"sending", "", MSG_SENT, "", "", 0},
	    {"sent", "", MSG_SENT, "", "", 0},
	    {"delivered", "&RawDlrDoneDate=2508241505", MSG_DELIVERED, "", "",
	     1756047900LL * 1000000},
	    {"delivered", "&RawDlrDoneDate=2513241505", MSG_DELIVERED, "", "", 0}, /* month 13 */
	    {"read", "", MSG_READ, "", "", 0},
	    {"undelivered", "&ErrorCode=30003", MSG_UNDELIVERED, "30003", "Unreachable", 0},
	    {"undelivered", "&ErrorCode=30005", MSG_UNDELIVERED, "30005", "Unknown destination", 0},
	    {"undelivered", "&ErrorCode=30006", MSG_UNDELIVERED, "30006", "Landline", 0},
	    {"undelivered", "&ErrorCode=30007", MSG_UNDELIVERED, "30007", "filtered", 0},
	    {"failed", "&ErrorCode=30008", MSG_FAILED, "30008", "Unknown error", 0},
	    {"failed", "&ErrorCode=39999", MSG_FAILED, "39999", "Twilio error 39999", 0},
	    {"failed", "&ErrorCode=30008&ErrorMessage=Carrier+said+no", MSG_FAILED, "30008",
	     "Carrier said no", 0},
	    {"failed", "", MSG_FAILED, "", "", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char body[512];
		snprintf(body, sizeof body,
		         "SmsSid=SMaaaa&SmsStatus=%s&MessageStatus=%s&To=%%2B447911123456"
		         "&MessageSid=SMaaaa&AccountSid=" SID "&From=%%2B15005550006"
		         "&ApiVersion=2010-04-01%s",
		         cases[i].status, cases[i].status, cases[i].extra);
		struct wh_parsed p = {0};
		if (a->ops->webhook_parse(a, body, strlen(body), &p, &err) != 0)
			fail_msg("case %zu: %s", i, err.msg);
		assert_int_equal(p.ninbound, 0);
		if (cases[i].want < 0) {
			assert_int_equal(p.nstatuses, 0);
		} else {
			assert_int_equal(p.nstatuses, 1);
			struct wh_status *s = &p.statuses[0];
			assert_string_equal(s->provider_id, "SMaaaa");
			if ((int)s->status != cases[i].want)
				fail_msg("case %zu: status %d, want %d", i, s->status,
				         cases[i].want);
			assert_string_equal(s->error_code, cases[i].code);
			if (!strstr(s->error_text, cases[i].text_has))
				fail_msg("case %zu: text '%s'", i, s->error_text);
			assert_int_equal(s->provider_at, cases[i].at);
			if (cases[i].at)
				assert_string_equal(s->provider_ts, "2508241505");
		}
		wh_parsed_clear(&p);
	}
	channel_account_free(a);
}

static void test_optout_keywords(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct {
		const char *body, *opt_out_type;
		int optout;
		bool help;
	} cases[] = {
	    {"STOP", NULL, 1, false},
	    {"stop", NULL, 1, false},
	    {"  Stop\n", NULL, 1, false},
	    {"STOPALL", NULL, 1, false},
	    {"unsubscribe", NULL, 1, false},
	    {"Cancel", NULL, 1, false},
	    {"END", NULL, 1, false},
	    {"quit", NULL, 1, false},
	    {"OPTOUT", NULL, 1, false},
	    {"revoke", NULL, 1, false},
	    {"START", NULL, -1, false},
	    {"unstop", NULL, -1, false},
	    {"Yes", NULL, -1, false},
	    {"HELP", NULL, 0, true},
	    {" info ", NULL, 0, true},
	    {"stop it", NULL, 0, false},
	    {"please STOP", NULL, 0, false},
	    {"STOP!", NULL, 0, false},
	    {"", NULL, 0, false},
	    {"Hello there", NULL, 0, false},
	    {"Arr\xc3\xaa"
	     "t",
	     "STOP", 1, false}, /* Advanced Opt-Out classified it */
	    {"Commencer", "START", -1, false},
	    {"Aide", "HELP", 0, true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *enc = curl_easy_escape(NULL, cases[i].body, 0);
		char body[512];
		snprintf(body, sizeof body,
		         "ToCountry=US&SmsMessageSid=SMin%zu&NumMedia=0&SmsSid=SMin%zu"
		         "&SmsStatus=received&Body=%s&To=%%2B15005550006&NumSegments=1"
		         "&MessageSid=SMin%zu&AccountSid=" SID "&From=%%2B1+555+010+0001"
		         "&ApiVersion=2010-04-01%s%s",
		         i, i, enc, i, cases[i].opt_out_type ? "&OptOutType=" : "",
		         cases[i].opt_out_type ? cases[i].opt_out_type : "");
		curl_free(enc);
		struct wh_parsed p = {0};
		if (a->ops->webhook_parse(a, body, strlen(body), &p, &err) != 0)
			fail_msg("case %zu: %s", i, err.msg);
		assert_int_equal(p.nstatuses, 0);
		assert_int_equal(p.ninbound, 1);
		struct wh_inbound *in = &p.inbound[0];
		char sid[16];
		snprintf(sid, sizeof sid, "SMin%zu", i);
		assert_string_equal(in->provider_msg_id, sid);
		assert_string_equal(in->from, "+15550100001"); /* normalised like "to" */
		assert_string_equal(in->kind, "text");
		assert_string_equal(in->context_id, "");
		assert_string_equal(in->text, cases[i].body);
		assert_null(in->payload);
		if (in->optout != cases[i].optout)
			fail_msg("case %zu (%s): optout %d", i, cases[i].body, in->optout);
		if (cases[i].help)
			assert_string_equal(in->auto_reply, "Acme alerts. Reply STOP to stop.");
		else
			assert_null(in->auto_reply);
		wh_parsed_clear(&p);
	}
	/* Without help_text, HELP is only recorded. */
	struct channel_account *b =
	    load("b",
	         "{\"base_url\":\"http://127.0.0.1:1\",\"account_sid\":\"" SID "\","
	         "\"auth_token\":\"t\",\"from\":\"+15005550006\"}",
	         &err);
	assert_non_null(b);
	const char *help = "MessageSid=SMh&From=%2B15550100001&Body=HELP";
	struct wh_parsed p = {0};
	assert_int_equal(b->ops->webhook_parse(b, help, strlen(help), &p, &err), 0);
	assert_int_equal(p.ninbound, 1);
	assert_null(p.inbound[0].auto_reply);
	assert_int_equal(p.inbound[0].optout, 0);
	wh_parsed_clear(&p);
	channel_account_free(b);
	channel_account_free(a);
}

static void test_parse_inbound_mms_and_shortcode(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *mms = "MessageSid=MMabc&From=%2B447911123456&To=%2B15005550006&Body="
	                  "&NumMedia=1&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fmedia%2FME1"
	                  "&MediaContentType0=image%2Fjpeg";
	struct wh_parsed p = {0};
	assert_int_equal(a->ops->webhook_parse(a, mms, strlen(mms), &p, &err), 0);
	assert_int_equal(p.ninbound, 1);
	assert_string_equal(p.inbound[0].kind, "media");
	assert_string_equal(p.inbound[0].payload, "https://api.twilio.com/media/ME1");
	assert_string_equal(p.inbound[0].text, "");
	assert_string_equal(p.inbound[0].provider_msg_id, "MMabc");
	wh_parsed_clear(&p);
	/* A short code sender is kept as given. */
	const char *sc = "SmsMessageSid=SMsc&From=898211&Body=hi";
	assert_int_equal(a->ops->webhook_parse(a, sc, strlen(sc), &p, &err), 0);
	assert_string_equal(p.inbound[0].from, "898211");
	assert_string_equal(p.inbound[0].provider_msg_id, "SMsc");
	wh_parsed_clear(&p);
	channel_account_free(a);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	char longsid[400];
	memcpy(longsid, "MessageStatus=sent&MessageSid=", 30);
	memset(longsid + 30, 'S', 200);
	longsid[230] = '\0';
	struct {
		const char *body, *field;
	} cases[] = {
	    {"{\"MessageStatus\":\"sent\",\"MessageSid\":\"SM1\"}", "MessageStatus"},
	    {"", "MessageStatus"},
	    {"&&&", "MessageStatus"},
	    {"MessageStatus=delivered&To=%2B1555", "MessageSid"},
	    {"MessageStatus=delivered&MessageSid=", "MessageSid"},
	    {"Body=hello&MessageSid=SM1", "From"},
	    {"Body=hello&From=%2B15550100001", "MessageSid"},
	    {"Body=a%00b&From=%2B15550100001&MessageSid=SM1", "Body"},
	    {"Bo%00dy=x&MessageStatus=sent&MessageSid=SM1", "body"},
	    {longsid, "MessageSid"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wh_parsed p = {0};
		hr_err_clear(&err);
		int rc = a->ops->webhook_parse(a, cases[i].body, strlen(cases[i].body), &p, &err);
		if (rc != HR_EINVAL)
			fail_msg("case %zu parsed (rc %d)", i, rc);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
		assert_int_equal(p.nstatuses, 0);
		assert_int_equal(p.ninbound, 0);
		wh_parsed_clear(&p);
	}
	channel_account_free(a);
}

/* Twilio reads a webhook's answer as TwiML: every accepted callback and
 * inbound message is answered with the empty <Response/> as text/xml (JSON
 * makes Twilio log error 12300 per request). The other channels keep the
 * default answer (NULL: "{}" as application/json). */
static void test_webhook_answer(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("sms");
	assert_non_null(ops);
	assert_non_null(ops->webhook_answer);
	assert_string_equal(ops->webhook_answer->content_type, "text/xml");
	assert_string_equal(ops->webhook_answer->body,
	                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
	const char *others[] = {"whatsapp", "rcs", "telegram"};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
		const struct channel_ops *o = channel_find(others[i]);
		assert_non_null(o);
		assert_null(o->webhook_answer);
	}
}

/* The status lookup the reconciler makes (GET the Message resource) and
 * what each answer means; a SID that could reshape the URL is refused. */
static void test_lookup(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("acme-sms", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct http_req req;
	assert_int_equal(a->ops->build_lookup(a, "SM0123456789abcdef0123456789abcdef", &req, &err),
	                 0);
	assert_string_equal(req.url, "http://127.0.0.1:9090/2010-04-01/Accounts/" SID
	                             "/Messages/SM0123456789abcdef0123456789abcdef.json");
	assert_string_equal(req.userpwd, SID ":" VEC_TOKEN);
	assert_null(req.body);
	http_req_clear(&req);
	static const char *const bad[] = {"", "SM../../x", "SM1?a=b", "SM%2F", NULL};
	for (int i = 0; bad[i]; i++) {
		assert_int_equal(a->ops->build_lookup(a, bad[i], &req, &err), HR_EINVAL);
		assert_string_equal(err.field, "provider_id");
	}
	static const struct {
		long http;
		const char *body;
		bool answered;
		enum msg_status status;
		const char *code;
	} t[] = {
	    {200, "{\"sid\":\"SM1\",\"status\":\"delivered\",\"error_code\":null}", true,
	     MSG_DELIVERED, ""},
	    {200, "{\"status\":\"undelivered\",\"error_code\":30003}", true, MSG_UNDELIVERED,
	     "30003"},
	    {200, "{\"status\":\"failed\",\"error_code\":\"30008\"}", true, MSG_FAILED, "30008"},
	    {200, "{\"status\":\"sent\"}", true, MSG_SENT, ""},
	    {200, "{\"status\":\"queued\"}", true, MSG_QUEUED, ""},
	    {200, "{\"status\":\"mystery\"}", false, MSG_QUEUED, ""},
	    {200, "not json", false, MSG_QUEUED, ""},
	    {404, "{\"code\":20404,\"message\":\"not found\"}", false, MSG_QUEUED, ""},
	    {0, "Connection refused", false, MSG_QUEUED, ""},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct stale_answer ans = {0};
		a->ops->parse_lookup(a, t[i].http, t[i].body, strlen(t[i].body), &ans);
		assert_int_equal(ans.answered, t[i].answered);
		if (t[i].answered) {
			assert_int_equal(ans.status, t[i].status);
			assert_string_equal(ans.error_code, t[i].code);
			assert_string_equal(ans.lookup_error, "");
		} else {
			assert_true(ans.lookup_error[0] != '\0');
		}
	}
	channel_account_free(a);
}

/* A plain text's content read with jsonr: the same form byte for byte, or
 * the same refusal, as jansson's way, without one jansson allocation. */
static void test_fast_text_content(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("sms1", ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0", .recipient = "+14155552345"};
	static const struct fb_text_case cases[] = {
	    {"{\"type\":\"text\",\"text\":\"Your code is 482913\"}", 0, 1},
	    {"{\"text\":\"a&b=c+d %\\n\",\"type\":\"text\"}", 0, 1},
	    {"{\"type\":\"\\u0074ext\",\"text\":\"\\u00e9\\ud83d\\ude00\\\"\\/\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"a\",\"text\":\"b\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"extra\":[1,{\"k\":null}]}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":{\"validity_period\":60}}", 0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"template\":{\"regulatory\":{\"entity_id\":\"E1\"}"
	     "}}",
	     0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"n\":1e5}", 0, 0},
	    {"{\"type\":\"text\",\"type\":\"image\",\"text\":\"x\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":null}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":7}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":[]}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"actions\":null}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\"}}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"\\u0000\"}", HR_EINVAL, 0},
	};
	fb_text_cases(a, &m, cases, sizeof cases / sizeof cases[0], 2);
	/* Random texts up to and past the limit. */
	unsigned seed = 5;
	static char t[4 * 1700 + 1];
	int fast = 0, refused = 0;
	for (int i = 0; i < 600; i++) {
		fb_random_nonempty(t, i % 50 ? 200 : 1700, &seed);
		m.content = fb_content(json_pack("{s:s, s:s}", "type", "text", "text", t));
		if (fb_same_request(a, &m, true) == 0) {
			assert_int_equal(fb_fast_hits, 1);
			fast++;
		} else {
			refused++;
		}
		free(m.content);
	}
	print_message("sms: %d texts read fast, forms equal; %d refused alike\n", fast, refused);
	assert_int_equal(fast + refused, 600);
	assert_true(fast >= 580);
	channel_account_free(a);
}

/* ---- the fast reading of answers against jansson's ---- */

/* The request is a form (no JSON to build); the answer's sid read fast
 * gives jansson's outcome, for good, odd and broken answers. */
static void test_fast_answers_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load("sms1", ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *ok =
	    "{\"account_sid\":\"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\",\"api_version\":\"2010-04-"
	    "01\","
	    "\"body\":\"Ol\\u00e1 \\\"Ana\\\"\\nyour code is 482913\",\"date_created\":\"Thu, 24 "
	    "Aug 2023 05:01:45 +0000\",\"date_sent\":null,\"direction\":\"outbound-api\","
	    "\"error_code\":null,\"error_message\":null,\"from\":\"+14155552345\","
	    "\"num_media\":\"0\",\"num_segments\":\"1\",\"price\":null,\"price_unit\":\"USD\","
	    "\"messaging_service_sid\":null,\"sid\":\"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
	    "\"status\":\"queued\",\"subresource_uris\":{\"media\":\"/2010-04-01/Accounts/AC1/"
	    "Messages/SM1/Media.json\"},\"to\":\"+14155552345\",\"uri\":\"/2010-04-01/Accounts/"
	    "AC1/Messages/SM1.json\"}";
	struct send_outcome o;
	assert_int_equal(fb_same_outcome(a, 201, ok, strlen(ok), NULL, &o), OUTCOME_OK);
	assert_string_equal(o.provider_id, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(fb_fast_hits, 1);
	static const char *const odd[] = {
	    "{\"sid\":\"SM\\/1\\u00e9\"}",
	    "{\"sid\":\"\"}",
	    "{\"sid\":null}",
	    "{\"sid\":42}",
	    "{\"SID\":\"SM1\"}",
	    "{\"sid\":\"SM1\",\"sid\":\"SM2\"}",
	    "{\"sid\":[\"SM1\"]}",
	    "[{\"sid\":\"SM1\"}]",
	    "{\"code\":21610,\"message\":\"Attempt to send to unsubscribed recipient\","
	    "\"more_info\":\"https://www.twilio.com/docs/errors/21610\",\"status\":400}",
	};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		fb_same_outcome(a, 201, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 400, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 429, odd[i], strlen(odd[i]), "2", NULL);
	}
	fb_same_outcome(a, 201, odd[0], strlen(odd[0]), NULL, &o);
	assert_string_equal(o.provider_id, "SM/1\xc3\xa9");
	assert_int_equal(fb_fast_hits, 1);
	fb_same_outcome(a, 201, odd[5], strlen(odd[5]), NULL, &o);
	assert_string_equal(o.provider_id, "SM2");
	char body[512], sid[HR_PROVIDER_ID_MAX + 2];
	for (size_t len = HR_PROVIDER_ID_MAX - 2; len <= HR_PROVIDER_ID_MAX; len++) {
		memset(sid, 'S', len);
		sid[len] = '\0';
		int k = snprintf(body, sizeof body, "{\"sid\":\"%s\"}", sid);
		assert_int_equal(fb_same_outcome(a, 201, body, (size_t)k, NULL, NULL),
		                 len < HR_PROVIDER_ID_MAX ? OUTCOME_OK : OUTCOME_TRANSIENT);
	}
	fb_same_outcome(a, 0, "Could not connect", 17, NULL, NULL);
	fb_same_outcomes_malformed(a, ok);
	channel_account_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signature_vector),
	    cmocka_unit_test(test_signature_rejections),
	    cmocka_unit_test(test_dedupe_key),
	    cmocka_unit_test(test_account_config_errors),
	    cmocka_unit_test(test_normalize_recipient),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_build_send_text),
	    cmocka_unit_test(test_build_send_service_template_regulatory),
	    cmocka_unit_test(test_build_send_image),
	    cmocka_unit_test(test_parse_send_table),
	    cmocka_unit_test(test_fast_answers_equal),
	    cmocka_unit_test(test_fast_text_content),
	    cmocka_unit_test(test_parse_status_table),
	    cmocka_unit_test(test_optout_keywords),
	    cmocka_unit_test(test_parse_inbound_mms_and_shortcode),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_webhook_answer),
	    cmocka_unit_test(test_lookup),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
