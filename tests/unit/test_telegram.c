/*
 * test_telegram.c - the Telegram Bot API adapter: account loading, chat id
 * normalisation, content validation, request bodies compared field by field
 * with the Bot API's documented shapes, answer classification (429 with
 * retry_after, chat migration, blocked, chat not found, bad token, 5xx),
 * the secret-token check, update parsing (texts, replies, button presses
 * with their answerCallbackQuery follow-up, malformed updates).
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
#include "herald.h"
#include "core/jsonr.h"
#include "fastbody_test.h"
#include "webhook_same_test.h"

#include "channel_test.h"

#define TOKEN "123456789:AAH-test_token"
#define SECRET "tg-Secret_42"
#define ACCT_CONFIG                                                                                \
	"{\"base_url\":\"http://127.0.0.1:9090/\",\"bot_token\":\"" TOKEN "\","                    \
	"\"webhook_secret\":\"env:TG_TEST_SECRET\"}"
#define API "http://127.0.0.1:9090/bot" TOKEN "/"

static struct channel_account *load(const char *config, struct hr_err *err)
{
	return channel_test_load("telegram", "tg1", config, err);
}

static int setup(void **state)
{
	(void)state;
	setenv("TG_TEST_SECRET", SECRET, 1);
	unsetenv("TG_TEST_SURELY_UNSET");
	return 0;
}

static char *repeat(const char *unit, size_t n)
{
	size_t u = strlen(unit);
	char *s = malloc(u * n + 1);
	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * u, unit, u);
	s[u * n] = '\0';
	return s;
}

/* ---- accounts ---- */

static void test_account_load(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	assert_ptr_equal(a->ops, &channel_telegram);
	assert_ptr_equal(channel_find("telegram"), &channel_telegram);
	assert_false(channel_telegram.has_receipts);
	assert_null(channel_telegram.webhook_handshake);
	assert_true(a->rate_limit == 30.0); /* the registry's default for telegram */
	channel_account_free(a);

	/* No base_url: Telegram's own; rate_limit as a YAML string. */
	a = load("{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"s\",\"rate_limit\":\"12\"}",
	         &err);
	assert_non_null(a);
	assert_true(a->rate_limit == 12.0);
	struct message m = {.recipient = "42", .content = "{\"type\":\"text\",\"text\":\"hi\"}"};
	struct http_req req;
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_string_equal(req.url, "https://api.telegram.org/bot" TOKEN "/sendMessage");
	http_req_clear(&req);
	channel_account_free(a);
}

static void test_account_config_errors(void **state)
{
	(void)state;
	struct {
		const char *config;
		const char *field;
	} cases[] = {
	    {"{\"webhook_secret\":\"s\"}", "accounts[tg1].bot_token"},
	    {"{\"bot_token\":\"\",\"webhook_secret\":\"s\"}", "accounts[tg1].bot_token"},
	    {"{\"bot_token\":\"env:TG_TEST_SURELY_UNSET\",\"webhook_secret\":\"s\"}",
	     "accounts[tg1].bot_token"},
	    {"{\"bot_token\":\"123/../x:y\",\"webhook_secret\":\"s\"}", "accounts[tg1].bot_token"},
	    {"{\"bot_token\":\"nocolon\",\"webhook_secret\":\"s\"}", "accounts[tg1].bot_token"},
	    {"{\"bot_token\":\"" TOKEN "\"}", "accounts[tg1].webhook_secret"},
	    {"{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"has space\"}",
	     "accounts[tg1].webhook_secret"},
	    {"{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"a:b\"}",
	     "accounts[tg1].webhook_secret"},
	    {"{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":7}", "accounts[tg1].webhook_secret"},
	    {"{\"base_url\":\"ftp://x\",\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"s\"}",
	     "accounts[tg1].base_url"},
	    {"{\"base_url\":\"\",\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"s\"}",
	     "accounts[tg1].base_url"},
	    {"{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"s\",\"rate_limit\":-1}",
	     "accounts[tg1].rate_limit"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err = {0};
		struct channel_account *a = load(cases[i].config, &err);
		if (a)
			fail_msg("case %zu loaded", i);
		assert_int_equal(err.code, HR_EINVAL);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
	}
	/* A 256-character secret is Telegram's maximum; 257 is refused. */
	char cfg[700];
	char *s256 = repeat("a", 256);
	snprintf(cfg, sizeof cfg, "{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"%s\"}", s256);
	struct hr_err err = {0};
	struct channel_account *a = load(cfg, &err);
	assert_non_null(a);
	channel_account_free(a);
	snprintf(cfg, sizeof cfg, "{\"bot_token\":\"" TOKEN "\",\"webhook_secret\":\"%sa\"}", s256);
	assert_null(load(cfg, &err));
	assert_string_equal(err.field, "accounts[tg1].webhook_secret");
	free(s256);
}

/* ---- recipients ---- */

static void test_normalize_recipient(void **state)
{
	(void)state;
	static const struct recipient_case cases[] = {
	    {"123456789", "123456789"},
	    {"-1001234567890", "-1001234567890"},
	    {"-4012345", "-4012345"},
	    {"  42  ", "42"},
	    {"9223372036854775807", "9223372036854775807"},
	    {"@HeraldNews", "@heraldnews"},
	    {"@abc_1", "@abc_1"},
	    {"@abcd", NULL},                              /* 4 characters */
	    {"@abcdefghijabcdefghijabcdefghijabc", NULL}, /* 33 characters */
	    {"@herald-news", NULL},
	    {"@", NULL},
	    {"9223372036854775808", NULL}, /* does not fit int64 */
	    {"-92233720368547758080", NULL},
	    {"0", NULL},
	    {"0123", NULL},
	    {"-0", NULL},
	    {"-", NULL},
	    {"+44 7911 123456", NULL},
	    {"12 34", NULL},
	    {"herald", NULL},
	    {"", NULL},
	    {"   ", NULL},
	    {NULL, NULL},
	};
	check_recipients(&channel_telegram, cases, sizeof cases / sizeof cases[0]);
}

/* ---- content ---- */

static void test_validate(void **state)
{
	(void)state;
	char *t4096 = repeat("é", 4096); /* 4096 UTF-16 units: fits */
	char *t4097 = repeat("a", 4097);
	char *e2048 = repeat("😀", 2048); /* surrogate pairs: 4096 units, fits */
	char *e2049 = repeat("😀", 2049);
	char *c1025 = repeat("x", 1025);
	char *d65 = repeat("d", 65);
	char *h5000 = repeat("<b>x</b>", 625); /* 5000 raw: fine with a parse_mode */
	char big[12000], b1[12000], b2[12000], b3[2000];
	struct {
		const char *json;  /* NULL: built into big */
		const char *field; /* NULL: valid */
	} cases[] = {
	    {"{\"type\":\"text\",\"text\":\"hi\"}", NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"parse_mode\":\"HTML\"}}", NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"parse_mode\":\"MarkdownV2\","
	     "\"disable_notification\":true}}",
	     NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"parse_mode\":\"html\"}}",
	     "options.parse_mode"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"preview_url\":true}}",
	     "options.preview_url"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":{\"disable_notification\":1}}",
	     "options.disable_notification"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"options\":[]}", "options"},
	    {"{\"type\":\"text\",\"text\":\"\"}", "text"},
	    {"{\"type\":\"text\"}", "text"},
	    {"{\"type\":\"text\",\"text\":5}", "text"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"id\":\"yes\",\"title\":\"Yes\"},"
	     "{\"id\":\"no\",\"title\":\"No\"}],\"actions\":[{\"title\":\"Site\",\"url\":"
	     "\"https://example.com/x\"},{\"title\":\"App\",\"url\":\"tg://resolve?domain=x\"}]}",
	     NULL},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":{}}", "buttons"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[\"yes\"]}", "buttons[0]"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"title\":\"Yes\"}]}",
	     "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"id\":\"\",\"title\":\"Yes\"}]}",
	     "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},"
	     "{\"id\":\"a\",\"title\":\"B\"}]}",
	     "buttons[1].id"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[{\"id\":\"a\",\"title\":\"\"}]}",
	     "buttons[0].title"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"actions\":[{\"title\":\"Call\",\"dial\":"
	     "\"+15550100\"}]}",
	     "actions[0].dial"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"actions\":[{\"title\":\"Go\",\"url\":"
	     "\"javascript:alert(1)\"}]}",
	     "actions[0].url"},
	    {"{\"type\":\"text\",\"text\":\"hi\",\"actions\":[{\"url\":\"https://x.y\"}]}",
	     "actions[0].title"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.y/a.pdf\",\"filename\":"
	     "\"a.pdf\",\"caption\":\"Invoice\"}}",
	     NULL},
	    {"{\"type\":\"document\",\"document\":{\"filename\":\"a.pdf\"}}", "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"file:///etc/passwd\"}}",
	     "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x.y/a.pdf\",\"filename\":3}}",
	     "document.filename"},
	    {"{\"type\":\"document\"}", "document"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x.y/a.png\"}}", NULL},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x.y/a.png\",\"caption\":7}}",
	     "image.caption"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\",\"language\":"
	     "\"en\",\"parameters\":[\"Ana\"]}}",
	     NULL},
	    {"{\"type\":\"template\",\"template\":{\"parameters\":[]}}", "template.name"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"x\",\"parameters\":[1]}}",
	     "template.parameters[0]"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"x\",\"header\":{\"type\":\"text\","
	     "\"text\":\"h\"}}}",
	     "template.header"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"x\",\"buttons\":[{\"index\":0,"
	     "\"payload\":\"P\"}]}}",
	     "template.buttons"},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"t\"}}", "type"},
	    {"{\"type\":\"carousel\",\"cards\":[]}", "type"},
	    {"{\"text\":\"hi\"}", "type"},
	    {"[]", "content"},
	    {NULL, NULL},   /* 4096 é */
	    {NULL, "text"}, /* 4097 a */
	    {NULL, NULL},   /* 2048 emoji */
	    {NULL, "text"}, /* 2049 emoji */
	    {NULL, "image.caption"},
	    {NULL, "buttons[0].id"},
	    {NULL, NULL},   /* 5000 raw with HTML */
	    {NULL, "text"}, /* the same without a parse_mode */
	};
	snprintf(b1, sizeof b1, "{\"type\":\"text\",\"text\":\"%s\"}", t4096);
	size_t base = sizeof cases / sizeof cases[0] - 8;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *json = cases[i].json;
		switch ((int)(i - base)) {
		case 0:
			json = b1;
			break;
		case 1:
			snprintf(b2, sizeof b2, "{\"type\":\"text\",\"text\":\"%s\"}", t4097);
			json = b2;
			break;
		case 2:
			snprintf(big, sizeof big, "{\"type\":\"text\",\"text\":\"%s\"}", e2048);
			json = big;
			break;
		case 3:
			snprintf(big, sizeof big, "{\"type\":\"text\",\"text\":\"%s\"}", e2049);
			json = big;
			break;
		case 4:
			snprintf(b3, sizeof b3,
			         "{\"type\":\"image\",\"image\":{\"url\":\"https://x.y/p.png\","
			         "\"caption\":\"%s\"}}",
			         c1025);
			json = b3;
			break;
		case 5:
			snprintf(b3, sizeof b3,
			         "{\"type\":\"text\",\"text\":\"x\",\"buttons\":[{\"id\":\"%s\","
			         "\"title\":\"T\"}]}",
			         d65);
			json = b3;
			break;
		case 6:
			snprintf(big, sizeof big,
			         "{\"type\":\"text\",\"text\":\"%s\",\"options\":{\"parse_mode\":"
			         "\"HTML\"}}",
			         h5000);
			json = big;
			break;
		case 7:
			snprintf(big, sizeof big, "{\"type\":\"text\",\"text\":\"%s\"}", h5000);
			json = big;
			break;
		default:
			break;
		}
		json_error_t je;
		json_t *c = json_loads(json, 0, &je);
		if (!c)
			fail_msg("case %zu: bad test JSON: %s", i, je.text);
		struct hr_err err = {0};
		int rc = channel_telegram.validate(c, &err);
		json_decref(c);
		if (!cases[i].field && rc)
			fail_msg("case %zu refused: %s: %s", i, err.field, err.msg);
		if (cases[i].field) {
			if (rc != HR_EINVAL)
				fail_msg("case %zu accepted, want error on %s", i, cases[i].field);
			if (strcmp(err.field, cases[i].field) != 0)
				fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
				         cases[i].field, err.msg);
		}
	}
	/* 101 buttons are more than an inline keyboard holds. */
	json_t *many = json_pack("{s:s, s:s, s:[]}", "type", "text", "text", "x", "buttons");
	for (int i = 0; i < 101; i++) {
		char id[16];
		snprintf(id, sizeof id, "b%d", i);
		json_array_append_new(json_object_get(many, "buttons"),
		                      json_pack("{s:s, s:s}", "id", id, "title", id));
	}
	struct hr_err err = {0};
	assert_int_equal(channel_telegram.validate(many, &err), HR_EINVAL);
	assert_string_equal(err.field, "buttons");
	json_array_remove(json_object_get(many, "buttons"), 0);
	assert_int_equal(channel_telegram.validate(many, &err), 0);
	json_decref(many);
	free(t4096);
	free(t4097);
	free(e2048);
	free(e2049);
	free(c1025);
	free(d65);
	free(h5000);
}

/* ---- request bodies ---- */

/* Builds the request for content sent to `to`; returns the parsed body. */
static json_t *build(struct channel_account *a, const char *to, const char *content,
                     const char *body, const char *want_method)
{
	struct message m = {.id = "01JTESTMESSAGE0000000000AA"};
	hr_strlcpy(m.recipient, to, sizeof m.recipient);
	m.content = (char *)content;
	m.body = (char *)body;
	struct http_req req;
	struct hr_err err = {0};
	int rc = a->ops->build_send(a, &m, &req, &err);
	if (rc)
		fail_msg("build_send: %s: %s", err.field, err.msg);
	char url[256];
	snprintf(url, sizeof url, API "%s", want_method);
	assert_string_equal(req.url, url);
	assert_null(req.userpwd);
	bool ctype = false;
	for (struct curl_slist *h = req.headers; h; h = h->next)
		if (strcasecmp(h->data, "Content-Type: application/json") == 0)
			ctype = true;
	assert_true(ctype);
	assert_int_equal(req.body_len, strlen(req.body));
	json_error_t je;
	json_t *j = json_loads(req.body, 0, &je);
	assert_non_null(j);
	http_req_clear(&req);
	return j;
}

static void assert_keys(json_t *o, const char *const *keys)
{
	size_t n = 0;
	for (; keys[n]; n++)
		if (!json_object_get(o, keys[n]))
			fail_msg("key '%s' missing", keys[n]);
	if (json_object_size(o) != n) {
		char *s = json_dumps(o, 0);
		fail_msg("unexpected keys in %s", s);
	}
}

static void test_build_text_keyboard(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	json_t *j = build(a, "-1001234567890",
	                  "{\"type\":\"text\",\"text\":\"<b>Pay</b> now?\",\"buttons\":["
	                  "{\"id\":\"pay:1\",\"title\":\"Pay now\"},{\"id\":\"later\",\"title\":"
	                  "\"Later\"},{\"id\":\"no\",\"title\":\"No\"},{\"id\":\"help\",\"title\":"
	                  "\"Help\"}],\"actions\":[{\"title\":\"Open site\",\"url\":"
	                  "\"https://example.com/pay\"}],\"options\":{\"parse_mode\":\"HTML\"}}",
	                  "<b>Pay</b> now?", "sendMessage");
	static const char *const keys[] = {"chat_id", "text", "parse_mode", "reply_markup", NULL};
	assert_keys(j, keys);
	json_t *cid = json_object_get(j, "chat_id");
	assert_true(json_is_integer(cid)); /* numeric ids go as JSON integers */
	assert_true(json_integer_value(cid) == -1001234567890LL);
	assert_string_equal(json_string_value(json_object_get(j, "text")), "<b>Pay</b> now?");
	assert_string_equal(json_string_value(json_object_get(j, "parse_mode")), "HTML");
	json_t *rm = json_object_get(j, "reply_markup");
	static const char *const rmkeys[] = {"inline_keyboard", NULL};
	assert_keys(rm, rmkeys);
	json_t *rows = json_object_get(rm, "inline_keyboard");
	/* Reply buttons three to a row, then one row per URL button. */
	assert_int_equal(json_array_size(rows), 3);
	assert_int_equal(json_array_size(json_array_get(rows, 0)), 3);
	assert_int_equal(json_array_size(json_array_get(rows, 1)), 1);
	assert_int_equal(json_array_size(json_array_get(rows, 2)), 1);
	struct {
		size_t row, col;
		const char *text, *key, *value;
	} want[] = {
	    {0, 0, "Pay now", "callback_data", "pay:1"},
	    {0, 1, "Later", "callback_data", "later"},
	    {0, 2, "No", "callback_data", "no"},
	    {1, 0, "Help", "callback_data", "help"},
	    {2, 0, "Open site", "url", "https://example.com/pay"},
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		json_t *b = json_array_get(json_array_get(rows, want[i].row), want[i].col);
		const char *bkeys[] = {"text", want[i].key, NULL};
		assert_keys(b, bkeys);
		assert_string_equal(json_string_value(json_object_get(b, "text")), want[i].text);
		assert_string_equal(json_string_value(json_object_get(b, want[i].key)),
		                    want[i].value);
	}
	json_decref(j);

	/* Plain text to a user: no parse_mode, no markup; a channel by @name. */
	j = build(a, "123456789", "{\"type\":\"text\",\"text\":\"hello\"}", "hello", "sendMessage");
	static const char *const plain[] = {"chat_id", "text", NULL};
	assert_keys(j, plain);
	assert_true(json_integer_value(json_object_get(j, "chat_id")) == 123456789);
	json_decref(j);
	j = build(a, "@heraldnews",
	          "{\"type\":\"text\",\"text\":\"news\",\"options\":{\"disable_notification\":"
	          "true}}",
	          "news", "sendMessage");
	static const char *const quiet[] = {"chat_id", "text", "disable_notification", NULL};
	assert_keys(j, quiet);
	assert_string_equal(json_string_value(json_object_get(j, "chat_id")), "@heraldnews");
	assert_true(json_is_true(json_object_get(j, "disable_notification")));
	json_decref(j);
	channel_account_free(a);
}

static void test_build_media_and_template(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	json_t *j = build(a, "42",
	                  "{\"type\":\"document\",\"document\":{\"url\":\"https://x.y/inv.pdf\","
	                  "\"filename\":\"inv.pdf\",\"caption\":\"Your invoice\"}}",
	                  "Your invoice", "sendDocument");
	static const char *const dkeys[] = {"chat_id", "document", "caption", NULL};
	assert_keys(j, dkeys);
	assert_true(json_integer_value(json_object_get(j, "chat_id")) == 42);
	assert_string_equal(json_string_value(json_object_get(j, "document")),
	                    "https://x.y/inv.pdf");
	assert_string_equal(json_string_value(json_object_get(j, "caption")), "Your invoice");
	json_decref(j);

	j = build(a, "42",
	          "{\"type\":\"image\",\"image\":{\"url\":\"https://x.y/p.png\",\"caption\":"
	          "\"*Look*\"},\"options\":{\"parse_mode\":\"MarkdownV2\"},\"buttons\":[{\"id\":"
	          "\"like\",\"title\":\"Like\"}]}",
	          "*Look*", "sendPhoto");
	static const char *const pkeys[] = {"chat_id",    "photo",        "caption",
	                                    "parse_mode", "reply_markup", NULL};
	assert_keys(j, pkeys);
	assert_string_equal(json_string_value(json_object_get(j, "photo")), "https://x.y/p.png");
	assert_string_equal(json_string_value(json_object_get(j, "parse_mode")), "MarkdownV2");
	json_decref(j);

	j = build(a, "42", "{\"type\":\"image\",\"image\":{\"url\":\"https://x.y/p.png\"}}", NULL,
	          "sendPhoto");
	static const char *const bare[] = {"chat_id", "photo", NULL};
	assert_keys(j, bare);
	json_decref(j);

	/* A template is its rendered body as text. */
	j = build(a, "42",
	          "{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\","
	          "\"language\":\"en\",\"parameters\":[\"Ana\",\"£5\"]}}",
	          "Hi Ana, pay £5", "sendMessage");
	static const char *const tkeys[] = {"chat_id", "text", NULL};
	assert_keys(j, tkeys);
	assert_string_equal(json_string_value(json_object_get(j, "text")), "Hi Ana, pay £5");
	json_decref(j);

	/* Refused at build time: a template without a rendered body, a card,
	 * content that is not JSON. */
	struct {
		const char *content, *body, *field;
	} bad[] = {
	    {"{\"type\":\"template\",\"template\":{\"name\":\"x\"}}", NULL, "body"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"x\"}}", "", "body"},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"t\"}}", "t", "type"},
	    {"{not json", "x", "content"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct message m = {.recipient = "42"};
		m.content = (char *)bad[i].content;
		m.body = (char *)bad[i].body;
		struct http_req req;
		hr_err_clear(&err);
		assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
		assert_string_equal(err.field, bad[i].field);
		assert_null(req.url);
		assert_null(req.body);
	}
	channel_account_free(a);
}

/* ---- answers ---- */

static void test_parse_send(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	struct {
		long status;
		const char *body;
		const char *retry_after; /* header */
		enum outcome_class cls;
		const char *provider_id, *code, *text_has, *new_recipient;
		int64_t retry_us;
		bool blocked;
	} cases[] = {
	    {200,
	     "{\"ok\":true,\"result\":{\"message_id\":42,\"from\":{\"id\":1,\"is_bot\":true},"
	     "\"chat\":{\"id\":123456789,\"type\":\"private\"},\"date\":1750263773,\"text\":"
	     "\"hi\"}}",
	     NULL, OUTCOME_OK, "123456789:42", "", "", "", 0, false},
	    {200,
	     "{\"ok\":true,\"result\":{\"message_id\":7,\"chat\":{\"id\":-1001234567890,"
	     "\"type\":\"channel\",\"username\":\"heraldnews\"},\"date\":1}}",
	     NULL, OUTCOME_OK, "-1001234567890:7", "", "", "", 0, false},
	    {200, "{\"ok\":true,\"result\":true}", NULL, OUTCOME_TRANSIENT, "", "http_200",
	     "without result", "", 0, false},
	    {429,
	     "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry after "
	     "35\",\"parameters\":{\"retry_after\":35}}",
	     NULL, OUTCOME_RATE_LIMITED, "", "429", "Too Many Requests", "", 35000000, false},
	    {429,
	     "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry after "
	     "5\",\"parameters\":{\"retry_after\":5}}",
	     "9", OUTCOME_RATE_LIMITED, "", "429", "retry after 5", "", 5000000, false},
	    {429, "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\"}", "3",
	     OUTCOME_RATE_LIMITED, "", "429", "Too Many", "", 3000000, false},
	    {400,
	     "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
	     "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":"
	     "-1001557912345}}",
	     NULL, OUTCOME_TRANSIENT, "", "400", "upgraded to a supergroup", "-1001557912345", 0,
	     false},
	    {403,
	     "{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was blocked by "
	     "the user\"}",
	     NULL, OUTCOME_PERMANENT, "", "403", "bot was blocked by the user", "", 0, false},
	    {400,
	     "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}",
	     NULL, OUTCOME_PERMANENT, "", "400", "chat not found", "", 0, false},
	    {400,
	     "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: can't parse "
	     "entities: Unsupported start tag \\\"x\\\" at byte offset 0\"}",
	     NULL, OUTCOME_PERMANENT, "", "400", "can't parse entities", "", 0, false},
	    {401, "{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized\"}", NULL,
	     OUTCOME_PERMANENT, "", "401", "Unauthorized", "", 0, true},
	    {404, "{\"ok\":false,\"error_code\":404,\"description\":\"Not Found\"}", NULL,
	     OUTCOME_PERMANENT, "", "404", "Not Found", "", 0, true},
	    {500,
	     "{\"ok\":false,\"error_code\":500,\"description\":\"Internal Server Error: restart\"}",
	     NULL, OUTCOME_TRANSIENT, "", "500", "Internal Server Error", "", 0, false},
	    {502, "<html>Bad Gateway</html>", NULL, OUTCOME_TRANSIENT, "", "http_502",
	     "Bad Gateway", "", 0, false},
	    {0, "Connection refused", NULL, OUTCOME_TRANSIENT, "", "network", "Connection refused",
	     "", 0, false},
	    {418, "", NULL, OUTCOME_PERMANENT, "", "http_418", "HTTP 418", "", 0, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct send_outcome o;
		memset(&o, 0x5a, sizeof o); /* parse_send must set every field */
		a->ops->parse_send(a, cases[i].status, cases[i].body, strlen(cases[i].body),
		                   cases[i].retry_after, &o);
		if (o.cls != cases[i].cls)
			fail_msg("case %zu: class %s, want %s", i, outcome_class_name(o.cls),
			         outcome_class_name(cases[i].cls));
		assert_string_equal(o.provider_id, cases[i].provider_id);
		assert_string_equal(o.error_code, cases[i].code);
		if (!strstr(o.error_text, cases[i].text_has))
			fail_msg("case %zu: text '%s' lacks '%s'", i, o.error_text,
			         cases[i].text_has);
		assert_string_equal(o.new_recipient, cases[i].new_recipient);
		if (o.retry_after_us != cases[i].retry_us)
			fail_msg("case %zu: retry_after %lld, want %lld", i,
			         (long long)o.retry_after_us, (long long)cases[i].retry_us);
		assert_int_equal(o.account_blocked, cases[i].blocked);
		assert_false(o.suppress_recipient);
		/* A 429 names no chat: the bot waits as a whole. */
		assert_int_equal(o.rate_scope, cases[i].cls == OUTCOME_RATE_LIMITED
		                                   ? RATE_SCOPE_ACCOUNT
		                                   : RATE_SCOPE_NONE);
	}
	channel_account_free(a);
}

/* ---- webhooks ---- */

struct fake_req {
	const char *name, *value;
};

static const char *fake_header(void *ctx, const char *name)
{
	struct fake_req *f = ctx;
	return f->name && strcasecmp(f->name, name) == 0 ? f->value : NULL;
}

static struct wh_request mkreq(struct fake_req *f, const char *body)
{
	struct wh_request r = {.method = "POST",
	                       .url = "http://127.0.0.1/webhooks/telegram/tg1",
	                       .body = body,
	                       .body_len = body ? strlen(body) : 0,
	                       .header = fake_header,
	                       .ctx = f};
	return r;
}

static void test_webhook_verify(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *body = "{\"update_id\":1}";
	struct {
		const char *name, *value;
		int rc;
		const char *says;
	} cases[] = {
	    {"X-Telegram-Bot-Api-Secret-Token", SECRET, 0, ""},
	    {"x-telegram-bot-api-secret-token", SECRET, 0, ""},
	    {"X-Telegram-Bot-Api-Secret-Token", "tg-Secret_43", HR_EAUTH, "does not match"},
	    {"X-Telegram-Bot-Api-Secret-Token", "tg-secret_42", HR_EAUTH, "does not match"},
	    {"X-Telegram-Bot-Api-Secret-Token", SECRET "x", HR_EAUTH, "does not match"},
	    {"X-Telegram-Bot-Api-Secret-Token", "tg-Secret_4", HR_EAUTH, "does not match"},
	    {"X-Telegram-Bot-Api-Secret-Token", "", HR_EAUTH, "missing"},
	    {NULL, NULL, HR_EAUTH, "missing"},
	    {"X-Hub-Signature-256", SECRET, HR_EAUTH, "missing"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fake_req f = {cases[i].name, cases[i].value};
		struct wh_request r = mkreq(&f, body);
		hr_err_clear(&err);
		int rc = a->ops->webhook_verify(a, &r, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].rc);
		if (rc) {
			assert_string_equal(err.field, "X-Telegram-Bot-Api-Secret-Token");
			if (!strstr(err.msg, cases[i].says))
				fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].says);
		}
	}
	channel_account_free(a);
}

static void test_dedupe_key(void **state)
{
	(void)state;
	struct {
		const char *body, *key;
	} cases[] = {
	    {"{\"update_id\":10000,\"message\":{}}", "update:10000"},
	    {"{\"callback_query\":{},\"update_id\":874199391}", "update:874199391"},
	    {"{\"update_id\":\"10000\"}", ""},
	    {"{}", ""},
	    {"not json", ""},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct fake_req f = {0};
		struct wh_request r = mkreq(&f, cases[i].body);
		char key[128] = "junk";
		channel_telegram.webhook_dedupe_key(&r, key);
		assert_string_equal(key, cases[i].key);
	}
}

static void test_webhook_text_and_reply(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	struct wh_parsed p = {0};
	const char *text = "{\"update_id\":10000,\"message\":{\"message_id\":1365,\"from\":{"
	                   "\"id\":1111111,\"is_bot\":false,\"first_name\":\"Ana\"},\"chat\":{"
	                   "\"id\":1111111,\"type\":\"private\",\"first_name\":\"Ana\"},\"date\":"
	                   "1441645532,\"text\":\"Hello\"}}";
	assert_int_equal(a->ops->webhook_parse(a, text, strlen(text), &p, &err), 0);
	assert_int_equal(p.nstatuses, 0); /* no receipts on Telegram, ever */
	assert_int_equal(p.nfollowups, 0);
	assert_int_equal(p.ninbound, 1);
	struct wh_inbound *in = &p.inbound[0];
	assert_string_equal(in->provider_msg_id, "1111111:1365");
	assert_string_equal(in->from, "1111111");
	assert_string_equal(in->kind, "text");
	assert_string_equal(in->text, "Hello");
	assert_null(in->payload);
	assert_string_equal(in->context_id, "");
	assert_true(in->provider_at == 1441645532LL * 1000000);
	assert_int_equal(in->optout, 0);
	assert_null(in->auto_reply);

	/* A reply in a group: linked to the message replied to. */
	const char *reply =
	    "{\"update_id\":10001,\"message\":{\"message_id\":77,\"from\":{\"id\":5,\"is_bot\":"
	    "false,\"first_name\":\"Bo\"},\"chat\":{\"id\":-1001234567890,\"type\":\"supergroup\","
	    "\"title\":\"Ops\"},\"date\":1441645600,\"text\":\"done\",\"reply_to_message\":{"
	    "\"message_id\":76,\"from\":{\"id\":9,\"is_bot\":true},\"chat\":{\"id\":"
	    "-1001234567890,\"type\":\"supergroup\"},\"date\":1441645500,\"text\":\"Deploy?\"}}}";
	assert_int_equal(a->ops->webhook_parse(a, reply, strlen(reply), &p, &err), 0);
	assert_int_equal(p.ninbound, 2);
	in = &p.inbound[1];
	assert_string_equal(in->provider_msg_id, "-1001234567890:77");
	assert_string_equal(in->context_id, "-1001234567890:76");
	assert_string_equal(in->from, "-1001234567890");
	assert_string_equal(in->text, "done");

	/* A photo with a caption is a "media" inbound with the caption as text. */
	const char *photo = "{\"update_id\":10002,\"message\":{\"message_id\":9,\"chat\":{\"id\":"
	                    "42,\"type\":\"private\"},\"date\":1,\"photo\":[{\"file_id\":\"A\","
	                    "\"file_unique_id\":\"a\",\"width\":90,\"height\":90}],\"caption\":"
	                    "\"receipt\"}}";
	assert_int_equal(a->ops->webhook_parse(a, photo, strlen(photo), &p, &err), 0);
	assert_int_equal(p.ninbound, 3);
	assert_string_equal(p.inbound[2].kind, "media");
	assert_string_equal(p.inbound[2].text, "receipt");

	/* Nothing to record: a service message, an edit, a membership change. */
	const char *none[] = {
	    "{\"update_id\":10003,\"message\":{\"message_id\":10,\"chat\":{\"id\":-4012345,"
	    "\"type\":\"group\"},\"date\":1,\"migrate_to_chat_id\":-1001557912345}}",
	    "{\"update_id\":10004,\"edited_message\":{\"message_id\":1,\"chat\":{\"id\":1},"
	    "\"date\":1,\"edit_date\":2,\"text\":\"x\"}}",
	    "{\"update_id\":10005,\"my_chat_member\":{\"chat\":{\"id\":1},\"date\":1}}",
	};
	for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
		assert_int_equal(a->ops->webhook_parse(a, none[i], strlen(none[i]), &p, &err), 0);
	assert_int_equal(p.ninbound, 3);
	assert_int_equal(p.nfollowups, 0);
	wh_parsed_clear(&p);
	channel_account_free(a);
}

static void test_webhook_button_press(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	struct wh_parsed p = {0};
	const char *press =
	    "{\"update_id\":10010,\"callback_query\":{\"id\":\"4382bfdwdsb323b2d9\",\"from\":{"
	    "\"id\":1111111,\"is_bot\":false,\"first_name\":\"Ana\"},\"message\":{\"message_id\":"
	    "42,\"from\":{\"id\":9,\"is_bot\":true},\"chat\":{\"id\":1111111,\"type\":"
	    "\"private\"},\"date\":1441645532,\"text\":\"Pay now?\",\"reply_markup\":{"
	    "\"inline_keyboard\":[[{\"text\":\"Pay now\",\"callback_data\":\"pay:1\"},{\"text\":"
	    "\"Later\",\"callback_data\":\"later\"}]]}},\"chat_instance\":\"-5312345\",\"data\":"
	    "\"later\"}}";
	assert_int_equal(a->ops->webhook_parse(a, press, strlen(press), &p, &err), 0);
	assert_int_equal(p.nstatuses, 0);
	assert_int_equal(p.ninbound, 1);
	struct wh_inbound *in = &p.inbound[0];
	assert_string_equal(in->kind, "button");
	assert_string_equal(in->payload, "later");
	assert_string_equal(in->text, "Later"); /* the pressed button's label */
	assert_string_equal(in->context_id, "1111111:42");
	assert_string_equal(in->from, "1111111");
	assert_string_equal(in->provider_msg_id, "4382bfdwdsb323b2d9");

	/* The follow-up: answerCallbackQuery with exactly the query's id. */
	assert_int_equal(p.nfollowups, 1);
	struct http_req *f = &p.followups[0];
	assert_string_equal(f->url, API "answerCallbackQuery");
	assert_null(f->userpwd);
	bool ctype = false;
	for (struct curl_slist *h = f->headers; h; h = h->next)
		if (strcasecmp(h->data, "Content-Type: application/json") == 0)
			ctype = true;
	assert_true(ctype);
	assert_int_equal(f->body_len, strlen(f->body));
	json_t *j = json_loads(f->body, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_object_size(j), 1);
	assert_string_equal(json_string_value(json_object_get(j, "callback_query_id")),
	                    "4382bfdwdsb323b2d9");
	json_decref(j);

	/* An inline-mode press has no message: from the user, unlinked, answered. */
	const char *inl = "{\"update_id\":10011,\"callback_query\":{\"id\":\"77\",\"from\":{"
	                  "\"id\":555,\"is_bot\":false,\"first_name\":\"Cy\"},"
	                  "\"inline_message_id\":\"AAA\",\"chat_instance\":\"1\",\"data\":\"x\"}}";
	assert_int_equal(a->ops->webhook_parse(a, inl, strlen(inl), &p, &err), 0);
	assert_int_equal(p.ninbound, 2);
	assert_string_equal(p.inbound[1].from, "555");
	assert_string_equal(p.inbound[1].context_id, "");
	assert_string_equal(p.inbound[1].payload, "x");
	assert_null(p.inbound[1].text);
	assert_int_equal(p.nfollowups, 2);
	wh_parsed_clear(&p);
	channel_account_free(a);
}

static void test_webhook_malformed(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	struct {
		const char *body, *field;
	} cases[] = {
	    {"{\"update_id\":1,", "body[15]"},
	    {"[1]", "body"},
	    {"{\"message\":{\"message_id\":1,\"chat\":{\"id\":1},\"text\":\"x\"}}",
	     "update.update_id"},
	    {"{\"update_id\":\"1\"}", "update.update_id"},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"text\":\"x\"}}", "message.chat"},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":\"1\"},\"text\":"
	     "\"x\"}}",
	     "message.chat.id"},
	    {"{\"update_id\":1,\"message\":{\"chat\":{\"id\":1},\"text\":\"x\"}}",
	     "message.message_id"},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":1},\"text\":5}}",
	     "message.text"},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":1},\"date\":\"x\","
	     "\"text\":\"x\"}}",
	     "message.date"},
	    {"{\"update_id\":1,\"message\":{\"message_id\":2,\"chat\":{\"id\":1},\"text\":\"x\","
	     "\"reply_to_message\":{\"chat\":{\"id\":1}}}}",
	     "message.reply_to_message.message_id"},
	    {"{\"update_id\":1,\"message\":[]}", "message"},
	    {"{\"update_id\":1,\"callback_query\":{\"from\":{\"id\":1},\"data\":\"x\"}}",
	     "callback_query.id"},
	    {"{\"update_id\":1,\"callback_query\":{\"id\":\"q\",\"data\":\"x\"}}",
	     "callback_query.from"},
	    {"{\"update_id\":1,\"callback_query\":{\"id\":\"q\",\"message\":{\"message_id\":1},"
	     "\"data\":\"x\"}}",
	     "callback_query.message.chat"},
	    {"{\"update_id\":1,\"callback_query\":{\"id\":\"q\",\"from\":{\"id\":1},\"data\":3}}",
	     "callback_query.data"},
	    {"{\"update_id\":1,\"callback_query\":\"q\"}", "callback_query"},
	};
	/* Start from a parsed event: a failed parse must leave it as it was. */
	struct wh_parsed p = {0};
	const char *ok = "{\"update_id\":9,\"callback_query\":{\"id\":\"q0\",\"from\":{\"id\":1},"
	                 "\"data\":\"d\"}}";
	assert_int_equal(a->ops->webhook_parse(a, ok, strlen(ok), &p, &err), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hr_err_clear(&err);
		int rc = a->ops->webhook_parse(a, cases[i].body, strlen(cases[i].body), &p, &err);
		if (rc != HR_EINVAL)
			fail_msg("case %zu accepted", i);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s', want '%s' (%s)", i, err.field,
			         cases[i].field, err.msg);
		assert_int_equal(p.ninbound, 1);
		assert_int_equal(p.nfollowups, 1);
		assert_int_equal(p.nstatuses, 0);
	}
	assert_string_equal(p.inbound[0].payload, "d");
	wh_parsed_clear(&p);
	channel_account_free(a);
}

/* ---- the fast bodies and answers against jansson's ---- */

/* sendMessage, sendDocument and sendPhoto written directly are jansson's
 * bodies byte for byte; with buttons or actions jansson still builds it. */
static void test_fast_bodies_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	static char t1[4 * 1000 + 1], t2[4 * 300 + 1];
	static const char *const chats[] = {"42", "-1001234567890", "@channel_name",
	                                    "9223372036854775807"};
	unsigned seed = 99;
	int fast = 0, fallback = 0, refused = 0;
	for (int i = 0; i < 1200; i++) {
		struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0"};
		hr_strlcpy(m.recipient, chats[i % 4], sizeof m.recipient);
		json_t *c;
		switch (i % 4) {
		case 0:
			fb_random_nonempty(t1, 1000, &seed);
			c = json_pack("{s:s, s:s}", "type", "text", "text", t1);
			break;
		case 1:
			fb_random_nonempty(t1, 1000, &seed);
			m.body = t1;
			c = json_pack("{s:s, s:{s:s, s:s, s:[s]}}", "type", "template", "template",
			              "name", "otp", "language", "en", "parameters", "1234");
			break;
		case 2:
			fb_random_text(t2, 300, &seed);
			c = json_pack("{s:s, s:{s:s, s:s}}", "type", "document", "document", "url",
			              "https://files.example/a.pdf", "caption", t2);
			break;
		default:
			fb_random_text(t2, 300, &seed);
			c = json_pack("{s:s, s:{s:s}}", "type", "image", "image", "url",
			              "https://img.example/p.jpg?a=1&b=\"2\"");
			if (t2[0])
				json_object_set_new(json_object_get(c, "image"), "caption",
				                    json_string(t2));
		}
		json_t *opts = json_object();
		if (i % 3 == 0)
			json_object_set_new(opts, "parse_mode",
			                    json_string(i % 2 ? "HTML" : "MarkdownV2"));
		if (i % 5 == 0)
			json_object_set_new(opts, "disable_notification",
			                    json_boolean(i % 10 == 0));
		json_object_set_new(c, "options", opts);
		bool keyboard = i % 7 == 0;
		if (keyboard)
			json_object_set_new(c, "buttons",
			                    json_pack("[{s:s, s:s}]", "id", "yes", "title", "Yes"));
		m.content = fb_content(c);
		if (fb_same_request(a, &m, true) == 0) {
			assert_int_equal(fb_fast_hits, !keyboard);
			if (keyboard)
				fallback++;
			else
				fast++;
		} else {
			refused++;
		}
		free(m.content);
	}
	/* A rendered template refused the same way both ways. */
	struct message m = {.recipient = "42", .body = ""};
	m.content = "{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"language\":\"en\"}}";
	assert_int_equal(fb_same_request(a, &m, true), HR_EINVAL);
	char *big = repeat("x", 4097);
	m.body = big;
	assert_int_equal(fb_same_request(a, &m, true), HR_EINVAL);
	free(big);
	print_message("telegram: %d fast bodies, %d with a keyboard by jansson, all equal; %d "
	              "refused alike\n",
	              fast, fallback, refused);
	assert_int_equal(fast + fallback + refused, 1200);
	assert_true(fast >= 900);
	channel_account_free(a);
}

/* A plain text's content read with jsonr: the same body byte for byte, or
 * the same refusal, as jansson's way, without one jansson allocation. */
static void test_fast_text_content(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0", .recipient = "42"};
	static const struct fb_text_case cases[] = {
	    {"{\"type\":\"text\",\"text\":\"Your code is 482913\"}", 0, 1},
	    {"{\"text\":\"<b>x</b>\\n\",\"type\":\"text\"}", 0, 1},
	    {"{\"type\":\"\\u0074ext\",\"text\":\"\\u00e9\\ud83d\\ude00\\\"\\/\\u001f\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"a\",\"text\":\"b\"}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"extra\":[1,{\"k\":null}]}", 0, 1},
	    {"{\"type\":\"text\",\"text\":\"x\",\"options\":{\"parse_mode\":\"HTML\"}}", 0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"buttons\":null}", 0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"actions\":[]}", 0, 0},
	    {"{\"type\":\"text\",\"text\":\"x\",\"n\":1e5}", 0, 0},
	    {"{\"type\":\"text\",\"type\":\"image\",\"text\":\"x\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"\"}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":null}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":7}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"x\"}}", HR_EINVAL, 0},
	    {"{\"type\":\"text\",\"text\":\"\\ud800\"}", HR_EINVAL, 0},
	};
	static const char *const chats[] = {"42", "-1001234567890", "@name"};
	for (size_t c = 0; c < 3; c++) {
		hr_strlcpy(m.recipient, chats[c], sizeof m.recipient);
		fb_text_cases(a, &m, cases, sizeof cases / sizeof cases[0], -1);
	}
	/* 4096 UTF-16 units are sent, 4097 refused: 😀 counts two. */
	char *c = malloc(4 * 4097 + 64);
	assert_non_null(c);
	for (int extra = 0; extra <= 1; extra++) {
		int k = sprintf(c, "{\"type\":\"text\",\"text\":\"%s", extra ? "a" : "");
		for (int i = 0; i < 2048; i++)
			k += sprintf(c + k, "%s", i % 2 ? "\xf0\x9f\x98\x80" : "\\ud83d\\ude00");
		sprintf(c + k, "\"}");
		m.content = c;
		assert_int_equal(fb_same_request(a, &m, true), extra ? HR_EINVAL : 0);
	}
	free(c);
	channel_account_free(a);
}

/* Answers: result.message_id and result.chat.id read fast give jansson's
 * outcome, also for odd and broken answers. */
static void test_fast_answers_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *ok =
	    "{\"ok\":true,\"result\":{\"message_id\":4711,\"from\":{\"id\":123456789,"
	    "\"is_bot\":true,\"first_name\":\"Herald\"},\"chat\":{\"id\":-1001234567890,"
	    "\"title\":\"Ops \\\"team\\\" \\ud83d\\ude00\",\"type\":\"supergroup\"},"
	    "\"date\":1750263773,\"text\":\"Hello\\nworld\"}}";
	struct send_outcome o;
	assert_int_equal(fb_same_outcome(a, 200, ok, strlen(ok), NULL, &o), OUTCOME_OK);
	assert_string_equal(o.provider_id, "-1001234567890:4711");
	assert_int_equal(fb_fast_hits, 1);
	static const char *const odd[] = {
	    "{\"ok\":false,\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"ok\":\"true\",\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"ok\":1,\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"ok\":true}",
	    "{\"ok\":true,\"result\":true}",
	    "{\"ok\":true,\"result\":{\"message_id\":\"1\",\"chat\":{\"id\":2}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1.0,\"chat\":{\"id\":2}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":2.5}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":1e3}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":-9223372036854775808}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":9223372036854775808}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{}}}",
	    "{\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":2},\"message_id\":3}}",
	    "{\"ok\":true,\"ok\":false,\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"ok\":false,\"ok\":true,\"result\":{\"message_id\":1,\"chat\":{\"id\":2}}}",
	    "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\","
	    "\"parameters\":{\"retry_after\":7}}",
	};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		fb_same_outcome(a, 200, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 400, odd[i], strlen(odd[i]), "3", NULL);
	}
	fb_same_outcome(a, 200, odd[13], strlen(odd[13]), NULL, &o);
	assert_string_equal(o.provider_id, "2:3"); /* the last message_id, as jansson */
	assert_int_equal(fb_fast_hits, 1);
	fb_same_outcome(a, 0, "timeout", 7, NULL, NULL);
	fb_same_outcomes_malformed(a, ok);
	channel_account_free(a);
}

/* the meaning of each code parse_send records (the overview's top
 * failure codes), exact; NULL for a code Telegram does not give. */
static void test_error_meaning(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	const char *(*meaning)(const char *) = channel_telegram.error_meaning;
	static const struct meaning_case cases[] = {
	    {400,
	     "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}",
	     "400",
	     "Bad request: chat not found, text empty or too long, entities that do not parse, or "
	     "a bad parameter (the error text says which)"},
	    {401, "{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized\"}", "401",
	     "Bot token invalid or revoked: the account's sends stop"},
	    {403,
	     "{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was blocked by "
	     "the user\"}",
	     "403",
	     "Forbidden: the bot was blocked by the user, removed from the group or channel, or "
	     "may not start this chat"},
	    {404, "{\"ok\":false,\"error_code\":404,\"description\":\"Not Found\"}", "404",
	     "Bot token or method not found: the account's sends stop"},
	    {409,
	     "{\"ok\":false,\"error_code\":409,\"description\":\"Conflict: terminated by other "
	     "getUpdates request\"}",
	     "409", "Conflict: another webhook or getUpdates session uses this bot"},
	    {429,
	     "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry after "
	     "35\",\"parameters\":{\"retry_after\":35}}",
	     "429", "Too many requests: retried after the retry_after Telegram gives"},
	    {500,
	     "{\"ok\":false,\"error_code\":500,\"description\":\"Internal Server Error: restart\"}",
	     "500", "Telegram server error (5xx); retried"},
	    {400, "{\"ok\":false,\"error_code\":420,\"description\":\"Flood: wait\"}", "420",
	     "Refused by Telegram (4xx; the error text says why)"},
	    {502, "<html>Bad Gateway</html>", "http_502",
	     "The provider failed (HTTP 5xx) without an error body; retried"},
	    {418, "", "http_418",
	     "The provider refused the request (HTTP 4xx) without an error body"},
	    {200, "{\"ok\":true,\"result\":true}", "http_200",
	     "A success answer without the message's id; retried"},
	    {0, "Connection refused", "network",
	     "No answer from the provider (connection refused, reset or timed out); retried"},
	};
	static const char *const unknown[] = {
	    "131026", "not_rcs_capable", "UNAVAILABLE", "40", "4000", "600", "http_9", ""};
	check_error_meanings(a, meaning, cases, sizeof cases / sizeof *cases, unknown,
	                     sizeof unknown / sizeof *unknown);
	channel_account_free(a);
}

/* ---- updates read with jsonr: the same as with jansson ---- */

#define TG_MSG(x)                                                                                  \
	"{\"update_id\":10000,\"message\":{\"message_id\":1365,\"chat\":{\"id\":1111111,"          \
	"\"type\":\"private\"},\"date\":1441645532" x "}}"
#define TG_CQ(x) "{\"update_id\":10010,\"callback_query\":{\"id\":\"4382bf\"" x "}}"
#define TG_KB(rows) ",\"reply_markup\":{\"inline_keyboard\":" rows "}"
#define TG_ON(kb)                                                                                  \
	",\"message\":{\"message_id\":42,\"chat\":{\"id\":1111111,\"type\":\"private\"},"          \
	"\"date\":1,\"text\":\"Pay?\"" kb "}"

static void test_fast_webhooks_equal(void **state)
{
	(void)state;
	struct hr_err err = {0};
	struct channel_account *a = load(ACCT_CONFIG, &err);
	assert_non_null(a);
	static const struct ws_case cases[] = {
	    {TG_MSG(",\"text\":\"Hello\""), 0, 1},
	    {TG_MSG(",\"text\":\"H\\u00e9llo \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\n\",\"from\":{"
	            "\"id\":1,\"is_bot\":false,\"first_name\":\"Ana\"}"),
	     0, 1},
	    {TG_MSG(",\"text\":\"olá 😀\",\"entities\":[{\"type\":\"bold\",\"offset\":0,"
	            "\"length\":3}]"),
	     0, 1},
	    {TG_MSG(",\"text\":null"), 0, 1},
	    {TG_MSG(",\"text\":null,\"caption\":\"c\""), 0, 1},
	    {TG_MSG(",\"photo\":[{\"file_id\":\"A\"}],\"caption\":\"receipt\""), 0, 1},
	    {TG_MSG(",\"sticker\":{},\"caption\":null"), 0, 1},
	    {TG_MSG(",\"poll\":5"), 0, 1},
	    {TG_MSG(",\"new_chat_members\":[{\"id\":1}]"), 0, 1},
	    {TG_MSG(",\"text\":\"x\",\"reply_to_message\":{\"message_id\":76,\"chat\":{\"id\":"
	            "-1001234567890},\"text\":\"Deploy?\"}"),
	     0, 1},
	    /* date: absent, zero, negative, huge: provider_at 0 unless plausible. */
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":{\"id\":2},\"text\":\"x\"}}",
	     0, 1},
	    {TG_MSG(",\"date\":0,\"text\":\"x\""), 0, 1},
	    {TG_MSG(",\"date\":-5,\"text\":\"x\""), 0, 1},
	    {TG_MSG(",\"date\":999999999999999999,\"text\":\"x\""), 0, 1},
	    /* Duplicate keys: the last wins. */
	    {TG_MSG(",\"text\":5,\"text\":\"last\",\"chat\":{\"id\":9}"), 0, 1},
	    {"{\"update_id\":\"x\",\"update_id\":-3,\"message\":{\"message_id\":1,\"chat\":{\"id\":"
	     "2},"
	     "\"text\":\"x\"}}",
	     0, 1},
	    /* Both message and callback_query: the message only. */
	    {"{\"update_id\":1,\"callback_query\":5,\"message\":{\"message_id\":1,\"chat\":{\"id\":"
	     "2},\"text\":\"x\"}}",
	     0, 1},
	    {"{\"update_id\":10004,\"edited_message\":{\"message_id\":1,\"chat\":{\"id\":1},"
	     "\"date\":1,\"edit_date\":2,\"text\":\"x\"}}",
	     0, 1},
	    {"{\"update_id\":1}", 0, 1},
	    /* Button presses: the label of the pressed button, escapes compared
	     * unescaped, the first match wins, odd keyboards ignored. */
	    {TG_CQ(",\"data\":\"later\"" TG_ON(
	         TG_KB("[[{\"text\":\"Pay now\",\"callback_data\":\"pay:1\"},{\"text\":\"Later\","
	               "\"callback_data\":\"later\"}]]"))),
	     0, 1},
	    {TG_CQ(",\"data\":\"l\\u00e4ter\"" TG_ON(
	         TG_KB("[[{\"text\":\"L\\u00e4ter "
	               "\\ud83d\\ude00\",\"callback_data\":\"lä\\u0074er\"}]]"))),
	     0, 1},
	    {TG_CQ(
	         ",\"data\":\"x\"" TG_ON(TG_KB("[5,[5,{\"callback_data\":\"x\",\"text\":7},"
	                                       "{\"callback_data\":\"x\",\"text\":\"second\"}]]"))),
	     0, 1},
	    {TG_CQ(",\"data\":\"x\"" TG_ON(TG_KB("[[{\"callback_data\":\"xx\",\"text\":\"a\"},"
	                                         "{\"callback_data\":\"\",\"text\":\"b\"}]]"))),
	     0, 1},
	    {TG_CQ(
	         ",\"data\":\"\"" TG_ON(TG_KB("[[{\"callback_data\":\"\",\"text\":\"empty\"}]]"))),
	     0, 1},
	    {TG_CQ(",\"data\":\"x\"" TG_ON(TG_KB("{}"))), 0, 1},
	    {TG_CQ(",\"data\":\"x\"" TG_ON(",\"reply_markup\":5")), 0, 1},
	    {TG_CQ(TG_ON(TG_KB("[[{\"callback_data\":\"x\",\"text\":\"a\"}]]"))), 0, 1},
	    {TG_CQ(",\"from\":{\"id\":555},\"inline_message_id\":\"AAA\",\"data\":\"x\""), 0, 1},
	    {TG_CQ(",\"from\":{\"id\":555}"), 0, 1},
	    /* What jsonr leaves to jansson, which takes it. */
	    {TG_MSG(",\"text\":\"x\",\"n\":1e3"), 0, 0},
	    {TG_MSG(",\"t\\u0065xt\":\"x\""), 0, 0},
	    /* Errors: jansson's way names them. */
	    {"", HR_EINVAL, 0},
	    {"{\"update_id\":1,", HR_EINVAL, 0},
	    {"[1]", HR_EINVAL, 0},
	    {"{\"update_id\":1.0}", HR_EINVAL, 0},
	    {"{\"update_id\":12345678901234567890}", HR_EINVAL, 0},
	    {"{\"update_id\":\"1\"}", HR_EINVAL, 0},
	    {"{\"update_id\":1,\"message\":null}", HR_EINVAL, 0},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"text\":\"x\"}}", HR_EINVAL, 0},
	    {"{\"update_id\":1,\"message\":{\"message_id\":1,\"chat\":5,\"text\":\"x\"}}",
	     HR_EINVAL, 0},
	    {TG_MSG(",\"text\":5"), HR_EINVAL, 0},
	    {TG_MSG(",\"photo\":[],\"caption\":[]"), HR_EINVAL, 0},
	    {TG_MSG(",\"date\":1.5,\"text\":\"x\""), HR_EINVAL, 0},
	    {TG_MSG(",\"text\":\"x\",\"reply_to_message\":5"), HR_EINVAL, 0},
	    {TG_MSG(",\"text\":\"x\",\"reply_to_message\":{\"message_id\":1,\"chat\":{}}"),
	     HR_EINVAL, 0},
	    {"{\"update_id\":1,\"callback_query\":null}", HR_EINVAL, 0},
	    {TG_CQ(",\"id\":\"\",\"from\":{\"id\":1}"), HR_EINVAL, 0},
	    {TG_CQ(",\"id\":7,\"from\":{\"id\":1}"), HR_EINVAL, 0},
	    {TG_CQ(",\"data\":\"x\""), HR_EINVAL, 0},
	    {TG_CQ(",\"from\":{\"id\":\"1\"}"), HR_EINVAL, 0},
	    {TG_CQ(",\"from\":{\"id\":1},\"data\":null"), HR_EINVAL, 0},
	    {TG_CQ(",\"from\":{\"id\":1},\"data\":[]"), HR_EINVAL, 0},
	    {TG_CQ(",\"message\":{\"chat\":{\"id\":1}},\"data\":\"x\""), HR_EINVAL, 0},
	};
	ws_cases(&channel_telegram, a, cases, sizeof cases / sizeof cases[0]);

	/* A callback id at its size exactly, and one byte over. */
	static char big[200000];
	for (int over = 0; over <= 1; over++) {
		char id[HR_PROVIDER_ID_MAX + 1];
		memset(id, 'q', sizeof id);
		id[HR_PROVIDER_ID_MAX - 1 + over] = '\0';
		snprintf(big, sizeof big,
		         "{\"update_id\":1,\"callback_query\":{\"id\":\"%s\",\"from\":{\"id\":1}}}",
		         id);
		assert_int_equal(ws_same_parse(&channel_telegram, a, big, strlen(big)),
		                 over ? HR_EINVAL : 0);
		assert_int_equal(ws_fast, over ? 0 : 1);
	}
	/* A keyboard of 2,000 buttons (past JSONR_TOKENS_MAX), the last pressed. */
	size_t k = (size_t)snprintf(big, sizeof big,
	                            "{\"update_id\":1,\"callback_query\":{\"id\":\"q\","
	                            "\"data\":\"b1999\",\"message\":{\"message_id\":3,\"chat\":{"
	                            "\"id\":4},\"reply_markup\":{\"inline_keyboard\":[");
	for (int i = 0; i < 2000; i++)
		k += (size_t)snprintf(big + k, sizeof big - k,
		                      "%s[{\"text\":\"B %d\",\"callback_data\":\"b%d\"}]",
		                      i ? "," : "", i, i);
	k += (size_t)snprintf(big + k, sizeof big - k, "]}}}}");
	assert_true(k < sizeof big - 1);
	struct wh_parsed p = {0};
	assert_int_equal(ws_same_parse(&channel_telegram, a, big, k), 0);
	assert_int_equal(ws_fast, 1);
	assert_int_equal(a->ops->webhook_parse(a, big, k, &p, &err), 0);
	assert_string_equal(p.inbound[0].text, "B 1999");
	assert_string_equal(p.inbound[0].payload, "b1999");
	assert_string_equal(p.followups[0].body, "{\"callback_query_id\":\"q\"}");
	wh_parsed_clear(&p);

	/* Mutations of a press and of a reply. */
	int fast = 0, slow = 0, f2 = 0, s2 = 0;
	ws_mutations(&channel_telegram, a,
	             TG_CQ(",\"data\":\"later\"" TG_ON(
	                 TG_KB("[[{\"text\":\"Pay \\u00e9\",\"callback_data\":\"pay:1\"},{\"text\":"
	                       "\"Later\",\"callback_data\":\"later\"}]]"))),
	             8000, 7, &fast, &slow);
	ws_mutations(&channel_telegram, a,
	             TG_MSG(",\"text\":\"x\",\"reply_to_message\":{\"message_id\":76,\"chat\":{"
	                    "\"id\":-1001234567890},\"text\":\"Deploy?\"}"),
	             8000, 8, &f2, &s2);
	print_message("telegram update mutations: %d read the fast way, %d by jansson\n", fast + f2,
	              slow + s2);
	assert_true(fast + f2 > 2000);
	assert_true(slow + s2 > 2000);
	channel_account_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_account_load),
	    cmocka_unit_test(test_account_config_errors),
	    cmocka_unit_test(test_normalize_recipient),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_build_text_keyboard),
	    cmocka_unit_test(test_build_media_and_template),
	    cmocka_unit_test(test_parse_send),
	    cmocka_unit_test(test_error_meaning),
	    cmocka_unit_test(test_fast_bodies_equal),
	    cmocka_unit_test(test_fast_answers_equal),
	    cmocka_unit_test(test_fast_webhooks_equal),
	    cmocka_unit_test(test_fast_text_content),
	    cmocka_unit_test(test_webhook_verify),
	    cmocka_unit_test(test_dedupe_key),
	    cmocka_unit_test(test_webhook_text_and_reply),
	    cmocka_unit_test(test_webhook_button_press),
	    cmocka_unit_test(test_webhook_malformed),
	};
	return cmocka_run_group_tests_name("telegram", tests, setup, NULL);
}
