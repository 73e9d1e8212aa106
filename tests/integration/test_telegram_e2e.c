/*
 * test_telegram_e2e.c - real `herald sim` + `herald serve` on loopback, the
 * Telegram channel end to end: texts with inline keyboards, templates,
 * documents and photos end at `sent` (Telegram has no receipts, nothing is
 * waited for); a scripted button press comes back as an inbound event on
 * the message and is answered exactly once; a reply too; a migrated group
 * is resent to its new id and later sends go there directly; a 429's
 * retry_after is honoured; a blocked bot fails with 403 at once; webhooks
 * without the right secret token are refused; the simulator answers like the
 * Bot API.
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

#include "harness.h"

#define TG_TOKEN "123456789:AAH-sim_token"
#define TG_SECRET "tg-secret-1"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(&W,
	            "      - id: acme-tg\n        channel: telegram\n        base_url: @SIM@\n"
	            "        bot_token: \"" TG_TOKEN "\"\n"
	            "        webhook_secret: " TG_SECRET "\n        rate_limit: 50\n",
	            "      - {name: payment_reminder, channel: telegram, language: en,"
	            " body: \"Hi {{1}}, pay {{2}}\"}\n",
	            "  telegram:\n    seed: 7\n    answer_delay_ms: 300\n    retry_after: 3\n"
	            "    recipients:\n"
	            "      \"1001\": {press: pay}\n"
	            "      \"1003\": {blocked: true}\n"
	            "      \"1004\": {reply: \"thanks!\"}\n"
	            "      \"-4000001\": {migrate_to: \"-1004000001\"}\n",
	            NULL, "dispatch:\n  backoff_base_ms: 200\n  backoff_max_ms: 2000\n");
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

/* ---- helpers ---- */

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* POSTs a message; asserts 202 and copies its id. */
static void send(const char *body, char id[32])
{
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != 202)
		fail_msg("POST /v1/messages: %ld %s", r.status, r.body);
	snprintf(id, 32, "%s", str(r.json, "id"));
	resp_free(&r);
}

/* The n-th (0-based) event of a type, or NULL; borrowed from m. */
static json_t *event(json_t *m, const char *type, int n)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(str(e, "type"), type) == 0 && n-- == 0)
			return e;
	}
	return NULL;
}

static int count_events(json_t *m, const char *type)
{
	int n = 0;
	while (event(m, type, n))
		n++;
	return n;
}

/* RFC 3339 "2026-01-15T10:00:00.123456Z" as microseconds. */
static int64_t at_us(json_t *e)
{
	struct tm tm = {0};
	int us = 0;
	const char *s = str(e, "at");
	if (sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
	           &tm.tm_min, &tm.tm_sec, &us) < 6)
		fail_msg("bad time '%s'", s);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000000 + us;
}

static json_t *sim_get(const char *path)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.sim, path);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	if (r.status != 200)
		fail_msg("GET %s: %ld %s", path, r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

static void sim_post(const char *path, const char *body)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", W.sim, path);
	struct resp r = http("POST", url, NULL, body, NULL);
	if (r.status < 200 || r.status >= 300)
		fail_msg("POST %s: %ld %s", path, r.status, r.body);
	resp_free(&r);
}

static long long tg_stat(const char *key)
{
	json_t *s = sim_get("/sim/stats");
	long long v = json_integer_value(json_object_get(json_object_get(s, "telegram"), key));
	json_decref(s);
	return v;
}

static long long rejected_429(void)
{
	json_t *s = sim_get("/sim/stats");
	long long v = json_integer_value(json_object_get(json_object_get(s, "rejected"), "429"));
	json_decref(s);
	return v;
}

static long long chat_sent(const char *chat)
{
	char path[96];
	snprintf(path, sizeof path, "/sim/telegram/chats/%s", chat);
	json_t *c = sim_get(path);
	long long n = json_integer_value(json_object_get(c, "sent"));
	json_decref(c);
	return n;
}

/* ---- tests ---- */

/* Sent is final on Telegram: no webhook is waited for, none ever comes. */
static void test_text_keyboard_sent(void **state)
{
	(void)state;
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"1000\",\"text\":\"<b>Pay</b> now?\","
	     "\"buttons\":[{\"id\":\"pay\",\"title\":\"Pay\"},{\"id\":\"later\",\"title\":"
	     "\"Later\"}],\"actions\":[{\"title\":\"Site\",\"url\":\"https://example.com\"}],"
	     "\"options\":{\"parse_mode\":\"HTML\"}}",
	     id);
	world_wait_status(&W, id, "sent", 30);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "channel"), "telegram");
	assert_string_equal(str(m, "to"), "1000");
	assert_true(strncmp(str(m, "provider_id"), "1000:", 5) == 0);
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
	assert_int_equal(count_events(m, "sent"), 1);
	json_decref(m);
	assert_int_equal(chat_sent("1000"), 1);

	/* Sync mode answers at `sent` too. */
	struct resp r = api_post(&W, "/v1/messages",
	                         "{\"channel\":\"telegram\",\"to\":\"1000\",\"text\":\"otp 4321\","
	                         "\"mode\":\"sync\"}");
	if (r.status != 200)
		fail_msg("sync send: %ld %s", r.status, r.body);
	assert_string_equal(str(r.json, "status"), "sent");
	assert_true(strncmp(str(r.json, "provider_id"), "1000:", 5) == 0);
	resp_free(&r);

	/* A template is its rendered body. */
	send("{\"channel\":\"telegram\",\"to\":\"@HeraldNews\",\"template\":{\"name\":"
	     "\"payment_reminder\",\"language\":\"en\",\"parameters\":[\"Ana\",\"£5\"]}}",
	     id);
	world_wait_status(&W, id, "sent", 30);
	m = world_message(&W, id);
	assert_string_equal(str(m, "to"), "@heraldnews");
	assert_string_equal(str(m, "body"), "Hi Ana, pay £5");
	json_decref(m);
	assert_int_equal(chat_sent("@heraldnews"), 1);

	/* Still sent a while later, with no webhook events. */
	sleep(1);
	m = world_message(&W, id);
	assert_string_equal(str(m, "status"), "sent");
	assert_int_equal(count_events(m, "webhook_status"), 0);
	json_decref(m);
	/* Validation is the channel's: a card is a 422 naming "type". */
	r = api_post(&W, "/v1/messages",
	             "{\"channel\":\"telegram\",\"to\":\"1000\",\"card\":{\"title\":\"x\"}}");
	assert_int_equal(r.status, 422);
	resp_free(&r);
	r = api_post(&W, "/v1/messages",
	             "{\"channel\":\"telegram\",\"to\":\"+44 7911\",\"text\":\"x\"}");
	assert_int_equal(r.status, 422);
	resp_free(&r);
}

static void test_document_and_photo(void **state)
{
	(void)state;
	char doc[32], img[32];
	send("{\"channel\":\"telegram\",\"to\":\"1002\",\"document\":{\"url\":"
	     "\"https://example.com/invoice.pdf\",\"filename\":\"invoice.pdf\",\"caption\":"
	     "\"Your invoice\"}}",
	     doc);
	send("{\"channel\":\"telegram\",\"to\":\"1002\",\"image\":{\"url\":"
	     "\"https://example.com/p.png\",\"caption\":\"A photo\"}}",
	     img);
	world_wait_status(&W, doc, "sent", 30);
	world_wait_status(&W, img, "sent", 30);
	json_t *d = world_message(&W, doc), *i = world_message(&W, img);
	/* Message ids count up per chat: two different ids in chat 1002. */
	assert_true(strncmp(str(d, "provider_id"), "1002:", 5) == 0);
	assert_true(strncmp(str(i, "provider_id"), "1002:", 5) == 0);
	assert_string_not_equal(str(d, "provider_id"), str(i, "provider_id"));
	json_decref(d);
	json_decref(i);
	assert_int_equal(chat_sent("1002"), 2);
}

static bool has_inbound(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	bool ok = event(m, "inbound", 0) != NULL;
	json_decref(m);
	return ok;
}

static bool answered(struct world *w, void *arg)
{
	(void)w;
	return tg_stat("callback_answers") >= *(long long *)arg;
}

static void test_press_and_reply(void **state)
{
	(void)state;
	long long answers0 = tg_stat("callback_answers");
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"1001\",\"text\":\"Pay now?\",\"buttons\":["
	     "{\"id\":\"pay\",\"title\":\"Pay now\"},{\"id\":\"later\",\"title\":\"Later\"}]}",
	     id);
	world_wait_status(&W, id, "sent", 30);
	assert_true(wait_until(has_inbound, &W, id, 30));
	json_t *m = world_message(&W, id);
	json_t *d = json_object_get(event(m, "inbound", 0), "detail");
	assert_string_equal(str(d, "kind"), "button");
	assert_string_equal(str(d, "payload"), "pay");
	assert_string_equal(str(d, "text"), "Pay now");
	assert_string_equal(str(d, "from"), "1001");
	assert_string_equal(str(m, "status"), "sent"); /* a press changes no status */
	json_decref(m);
	/* Herald answered the callback query: exactly once. */
	long long want = answers0 + 1;
	assert_true(wait_until(answered, &W, &want, 30));
	sleep(1);
	assert_int_equal(tg_stat("callback_answers"), answers0 + 1);
	assert_int_equal(tg_stat("callback_repeat_answers"), 0);
	assert_int_equal(tg_stat("callback_unknown_answers"), 0);

	/* A reply to the message is an inbound text linked to it. */
	send("{\"channel\":\"telegram\",\"to\":\"1004\",\"text\":\"Got it?\"}", id);
	world_wait_status(&W, id, "sent", 30);
	assert_true(wait_until(has_inbound, &W, id, 30));
	m = world_message(&W, id);
	d = json_object_get(event(m, "inbound", 0), "detail");
	assert_string_equal(str(d, "kind"), "text");
	assert_string_equal(str(d, "text"), "thanks!");
	json_decref(m);
}

static void test_migrated_chat(void **state)
{
	(void)state;
	long long mig0 = tg_stat("migrations");
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"-4000001\",\"text\":\"Group notice\"}", id);
	world_wait_status(&W, id, "sent", 30);
	json_t *m = world_message(&W, id);
	assert_string_equal(str(m, "to"), "-1004000001");
	assert_true(strncmp(str(m, "provider_id"), "-1004000001:", 12) == 0);
	json_t *retry = event(m, "retry", 0);
	assert_non_null(retry);
	assert_string_equal(str(json_object_get(retry, "detail"), "error_code"), "400");
	assert_int_equal(count_events(m, "recipient_migrated"), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 2);
	json_decref(m);
	assert_int_equal(tg_stat("migrations"), mig0 + 1);

	/* The next message to the old id goes to the new one directly. */
	send("{\"channel\":\"telegram\",\"to\":\"-4000001\",\"text\":\"Second notice\"}", id);
	world_wait_status(&W, id, "sent", 30);
	m = world_message(&W, id);
	assert_string_equal(str(m, "to"), "-1004000001");
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
	assert_int_equal(count_events(m, "recipient_migrated"), 1);
	assert_null(event(m, "retry", 0));
	json_decref(m);
	assert_int_equal(tg_stat("migrations"), mig0 + 1);
	assert_int_equal(chat_sent("-1004000001"), 2);
}

static bool saw_429(struct world *w, void *arg)
{
	(void)w;
	return rejected_429() > *(long long *)arg;
}

static void test_retry_after_honoured(void **state)
{
	(void)state;
	long long r0 = rejected_429();
	sim_post("/sim/telegram/config", "{\"rate_429\":1.0,\"retry_after\":3}");
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"1005\",\"text\":\"slow down\"}", id);
	bool saw = wait_until(saw_429, &W, &r0, 30);
	sim_post("/sim/telegram/config", "{\"rate_429\":0}");
	assert_true(saw);
	world_wait_status(&W, id, "sent", 30);
	json_t *m = world_message(&W, id);
	json_t *retry = event(m, "retry", 0), *sent = event(m, "sent", 0);
	assert_non_null(retry);
	assert_non_null(sent);
	json_t *d = json_object_get(retry, "detail");
	assert_string_equal(str(d, "error_code"), "429");
	assert_string_equal(str(d, "class"), "rate_limited");
	/* Scheduled no sooner than retry_after, and sent no sooner either
	 * (backoff alone would be 100..200 ms here). */
	int64_t due = (int64_t)json_integer_value(json_object_get(d, "due_at"));
	if (due - at_us(retry) < 2900000)
		fail_msg("retry due %lld us after the 429", (long long)(due - at_us(retry)));
	if (at_us(sent) - at_us(retry) < 2900000)
		fail_msg("sent %lld us after the 429", (long long)(at_us(sent) - at_us(retry)));
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 2);
	json_decref(m);
}

static void test_blocked_fails(void **state)
{
	(void)state;
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"1003\",\"text\":\"hello?\"}", id);
	world_wait_status(&W, id, "failed", 30);
	json_t *m = world_message(&W, id);
	json_t *err = json_object_get(m, "error");
	assert_string_equal(str(err, "code"), "403");
	assert_non_null(strstr(str(err, "message"), "bot was blocked by the user"));
	assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1); /* no retry */
	json_decref(m);
	/* the overview's top failure codes say what it means. */
	char meaning[256];
	assert_int_equal(world_failure_code(&W, "telegram", "403", meaning, sizeof meaning), 1);
	assert_string_equal(meaning, "Forbidden: the bot was blocked by the user, removed from the "
	                             "group or channel, or may not start this chat");
}

/* Updates without the secret token are refused; a raw update posted by the
 * sim with it is accepted and linked. */
static void test_webhook_secret(void **state)
{
	(void)state;
	char url[256];
	snprintf(url, sizeof url, "%s/webhooks/telegram/acme-tg", W.api);
	const char *body = "{\"update_id\":5,\"message\":{\"message_id\":1,\"chat\":{\"id\":1000,"
	                   "\"type\":\"private\"},\"date\":1750263773,\"text\":\"hi\"}}";
	struct resp r = http("POST", url, NULL, body, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	const char *wrong[] = {"X-Telegram-Bot-Api-Secret-Token: tg-secret-2", NULL};
	r = http("POST", url, NULL, body, wrong);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	const char *good[] = {"X-Telegram-Bot-Api-Secret-Token: " TG_SECRET, NULL};
	r = http("POST", url, NULL, body, good);
	assert_int_equal(r.status, 200);
	resp_free(&r);

	/* A reply posted through the sim's raw update endpoint links by
	 * reply_to_message to a message Herald sent. */
	char id[32];
	send("{\"channel\":\"telegram\",\"to\":\"1006\",\"text\":\"Question?\"}", id);
	world_wait_status(&W, id, "sent", 30);
	json_t *m = world_message(&W, id);
	const char *pid = str(m, "provider_id");
	long long mid = strtoll(strchr(pid, ':') + 1, NULL, 10);
	json_decref(m);
	char upd[512];
	snprintf(upd, sizeof upd,
	         "{\"account\":\"acme-tg\",\"message\":{\"message_id\":%lld,\"from\":{\"id\":1006,"
	         "\"is_bot\":false,\"first_name\":\"Di\"},\"chat\":{\"id\":1006,\"type\":"
	         "\"private\"},\"date\":1750263773,\"text\":\"Answer\",\"reply_to_message\":{"
	         "\"message_id\":%lld,\"chat\":{\"id\":1006,\"type\":\"private\"},\"date\":1}}}",
	         mid + 1, mid);
	sim_post("/sim/telegram/update", upd);
	assert_true(wait_until(has_inbound, &W, id, 30));
	m = world_message(&W, id);
	assert_string_equal(str(json_object_get(event(m, "inbound", 0), "detail"), "text"),
	                    "Answer");
	json_decref(m);
}

/* The simulator itself answers like the Bot API: codes, bodies, parameters. */
static void test_sim_speaks_bot_api(void **state)
{
	(void)state;
	struct {
		const char *method, *body;
		long status;
		const char *description; /* NULL: ok:true */
	} cases[] = {
	    {"sendMessage", "{\"chat_id\":2001,\"text\":\"hi\"}", 200, NULL},
	    {"sendMessage", "{\"chat_id\":\"2001\",\"text\":\"hi again\"}", 200, NULL},
	    {"sendMessage", "{\"text\":\"hi\"}", 400, "Bad Request: chat_id is empty"},
	    {"sendMessage", "{\"chat_id\":2001}", 400, "Bad Request: message text is empty"},
	    {"sendMessage", "{\"chat_id\":\"nobody\",\"text\":\"x\"}", 400,
	     "Bad Request: chat not found"},
	    {"sendMessage", "{\"chat_id\":2001,\"text\":\"x\",\"parse_mode\":\"html\"}", 400,
	     "Bad Request: unsupported parse_mode"},
	    {"sendMessage",
	     "{\"chat_id\":2001,\"text\":\"x\",\"reply_markup\":{\"inline_keyboard\":[[{\"text\":"
	     "\"B\",\"callback_data\":\"0123456789012345678901234567890123456789012345678901234567"
	     "890123456\"}]]}}",
	     400, "Bad Request: BUTTON_DATA_INVALID"},
	    {"sendMessage",
	     "{\"chat_id\":2001,\"text\":\"x\",\"reply_markup\":{\"inline_keyboard\":[[{\"text\":"
	     "\"B\"}]]}}",
	     400,
	     "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in "
	     "the inline keyboard"},
	    {"sendDocument", "{\"chat_id\":2001}", 400,
	     "Bad Request: there is no document in the request"},
	    {"sendPhoto", "{\"chat_id\":2001,\"photo\":\"https://x.y/p.png\"}", 200, NULL},
	    {"sendMessage", "{\"chat_id\":1003,\"text\":\"x\"}", 403,
	     "Forbidden: bot was blocked by the user"},
	    {"answerCallbackQuery", "{\"callback_query_id\":\"never-issued\"}", 400,
	     "Bad Request: query is too old and response timeout expired or query ID is invalid"},
	    {"getMe", "{}", 404, "Not Found"},
	};
	long long last = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char url[256];
		snprintf(url, sizeof url, "%s/bot" TG_TOKEN "/%s", W.sim, cases[i].method);
		struct resp r = http("POST", url, NULL, cases[i].body, NULL);
		if (r.status != cases[i].status)
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		assert_non_null(r.json);
		if (!cases[i].description) {
			assert_true(json_is_true(json_object_get(r.json, "ok")));
			json_t *res = json_object_get(r.json, "result");
			long long mid = json_integer_value(json_object_get(res, "message_id"));
			assert_true(json_integer_value(json_object_get(json_object_get(res, "chat"),
			                                               "id")) == 2001);
			assert_true(mid > last); /* counting up in chat 2001 */
			last = mid;
		} else {
			assert_false(json_is_true(json_object_get(r.json, "ok")));
			assert_int_equal(json_integer_value(json_object_get(r.json, "error_code")),
			                 cases[i].status);
			assert_string_equal(str(r.json, "description"), cases[i].description);
		}
		resp_free(&r);
	}
	/* The wrong token: 401 as Telegram answers it. */
	char url[256];
	snprintf(url, sizeof url, "%s/bot123456789:wrong/sendMessage", W.sim);
	struct resp r = http("POST", url, NULL, "{\"chat_id\":2001,\"text\":\"x\"}", NULL);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.body, "{\"ok\":false,\"error_code\":401,\"description\":"
	                            "\"Unauthorized\"}");
	resp_free(&r);
	/* A migrated group names its new id in parameters. */
	snprintf(url, sizeof url, "%s/bot" TG_TOKEN "/sendMessage", W.sim);
	r = http("POST", url, NULL, "{\"chat_id\":-4000001,\"text\":\"x\"}", NULL);
	assert_int_equal(r.status, 400);
	json_t *p = json_object_get(r.json, "parameters");
	assert_true(json_integer_value(json_object_get(p, "migrate_to_chat_id")) == -1004000001LL);
	resp_free(&r);
	/* 429 carries retry_after in parameters, and says it. */
	sim_post("/sim/telegram/config", "{\"rate_429\":1.0,\"retry_after\":7}");
	r = http("POST", url, NULL, "{\"chat_id\":2001,\"text\":\"y\"}", NULL);
	sim_post("/sim/telegram/config", "{\"rate_429\":0,\"retry_after\":3}");
	assert_int_equal(r.status, 429);
	assert_string_equal(str(r.json, "description"), "Too Many Requests: retry after 7");
	p = json_object_get(r.json, "parameters");
	assert_int_equal(json_integer_value(json_object_get(p, "retry_after")), 7);
	resp_free(&r);
	/* Knobs are checked. */
	char curl[256];
	snprintf(curl, sizeof curl, "%s/sim/telegram/config", W.sim);
	r = http("POST", curl, NULL, "{\"rate_429\":2}", NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_keyboard_sent),   cmocka_unit_test(test_document_and_photo),
	    cmocka_unit_test(test_press_and_reply),      cmocka_unit_test(test_migrated_chat),
	    cmocka_unit_test(test_retry_after_honoured), cmocka_unit_test(test_blocked_fails),
	    cmocka_unit_test(test_webhook_secret),       cmocka_unit_test(test_sim_speaks_bot_api),
	};
	return cmocka_run_group_tests_name("telegram", tests, setup, teardown);
}
