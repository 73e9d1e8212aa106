/*
 * test_whatsapp_types.c - every WhatsApp message type through real `herald
 * serve` and `herald sim` processes: text, interactive reply buttons,
 * document, image and templates with header, body and button values, each
 * sent async and sync, reach their final state with the provider seeing
 * each exactly once; scripted recipients press buttons and reply (the
 * inbound events land on the message's audit trail, linked by context id)
 * or make the provider refuse with 131047 (failed at once, one attempt);
 * the sim refuses malformed bodies like Graph does; the API refuses what
 * WhatsApp cannot carry with a 422 naming the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define TO_PRESS_TEMPLATE "447700900001"
#define TO_PRESS_BUTTONS "447700900002"
#define TO_REFUSED "447700900003"
#define TO_REPLIES "447700900004"

static struct world W;

static int setup(void **state)
{
	(void)state;
	world_init2(&W, NULL,
	            "      - {name: statement_ready, channel: whatsapp, language: en_GB,"
	            " body: \"Hi {{1}}, your statement is ready\", header: {type: document},"
	            " buttons: [{type: quick_reply, params: 1}]}\n"
	            "      - {name: order_shipped, channel: whatsapp, language: en,"
	            " body: \"Order {{1}} is on its way\", header: {type: text, params: 1},"
	            " buttons: [{type: url, params: 1}]}\n"
	            "      - {name: spring_promo, channel: whatsapp, language: en,"
	            " body: \"Spring is here\", header: {type: image}}\n",
	            NULL,
	            "    recipients:\n"
	            "      \"" TO_PRESS_TEMPLATE "\": {press: PAY_NOW}\n"
	            "      \"" TO_PRESS_BUTTONS "\": {press: later}\n"
	            "      \"" TO_REFUSED "\": {error: 131047}\n"
	            "      \"" TO_REPLIES "\": {reply: \"thanks, got it\"}\n",
	            NULL);
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

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* POSTs {"channel":"whatsapp","to":to,<members>[,"mode":"sync"]}; returns the
 * answer (caller frees) after checking its HTTP status. */
static struct resp send_msg(const char *to, const char *members, bool sync, long want)
{
	char body[2048];
	snprintf(body, sizeof body, "{\"channel\":\"whatsapp\",\"to\":\"%s\",%s%s}", to, members,
	         sync ? ",\"mode\":\"sync\"" : "");
	struct resp r = api_post(&W, "/v1/messages", body);
	if (r.status != want)
		fail_msg("POST %s: %ld (want %ld) %s", body, r.status, want, r.body);
	return r;
}

/* The inbound events on a message's audit trail, as an array (caller frees). */
static json_t *inbound_events(json_t *m)
{
	json_t *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(m, "events"), i, e)
	{
		if (strcmp(jstr(e, "type"), "inbound") == 0)
			json_array_append(out, json_object_get(e, "detail"));
	}
	return out;
}

static bool has_inbound(struct world *w, void *arg)
{
	(void)w;
	json_t *m = world_message(&W, arg);
	json_t *in = inbound_events(m);
	bool ok = json_array_size(in) > 0;
	json_decref(in);
	json_decref(m);
	return ok;
}

static long sim_count(const char *id)
{
	char url[160];
	snprintf(url, sizeof url, "%s/sim/messages/%s", W.sim, id);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	long n = r.status == 200 ? (long)json_integer_value(json_object_get(r.json, "count")) : 0;
	resp_free(&r);
	return n;
}

/* ---- every type, async and sync ---- */

static const struct {
	const char *name;
	const char *members;
	const char *body; /* the message's display body, NULL: not checked */
} types[] = {
    {"text", "\"text\":\"see https://127.0.0.1/x\",\"options\":{\"preview_url\":true}",
     "see https://127.0.0.1/x"},
    {"interactive",
     "\"text\":\"Pay £120 now?\",\"buttons\":[{\"id\":\"pay\",\"title\":\"Pay now\"},"
     "{\"id\":\"later\",\"title\":\"Later\"}]",
     "Pay £120 now?"},
    {"document",
     "\"document\":{\"url\":\"https://127.0.0.1/files/s.pdf\",\"filename\":\"statement.pdf\","
     "\"caption\":\"Your statement\"}",
     NULL},
    {"image", "\"image\":{\"url\":\"https://127.0.0.1/files/a.png\",\"caption\":\"Look\"}", NULL},
    {"template+document header+quick reply",
     "\"template\":{\"name\":\"statement_ready\",\"language\":\"en_GB\",\"parameters\":"
     "[\"Ana\"],\"header\":{\"type\":\"document\",\"url\":\"https://127.0.0.1/files/s.pdf\","
     "\"filename\":\"statement.pdf\"},\"buttons\":[{\"index\":0,\"payload\":\"PAY_NOW\"}]}",
     "Hi Ana, your statement is ready"},
    {"template+text header+url button",
     "\"template\":{\"name\":\"order_shipped\",\"language\":\"en\",\"parameters\":[\"42\"],"
     "\"header\":{\"type\":\"text\",\"parameters\":[\"#42\"]},"
     "\"buttons\":[{\"index\":0,\"text\":\"track/42\"}]}",
     "Order 42 is on its way"},
    {"template+image header",
     "\"template\":{\"name\":\"spring_promo\",\"language\":\"en\","
     "\"header\":{\"type\":\"image\",\"url\":\"https://127.0.0.1/files/p.png\"}}",
     "Spring is here"},
};
#define NTYPES (sizeof types / sizeof types[0])

static void test_every_type_async_and_sync(void **state)
{
	(void)state;
	char ids[NTYPES][2][40];
	for (size_t i = 0; i < NTYPES; i++) {
		for (int sync = 0; sync < 2; sync++) {
			char to[32];
			snprintf(to, sizeof to, "+44 7911 3%02zu%03d", i, sync);
			struct resp r = send_msg(to, types[i].members, sync, sync ? 200 : 202);
			snprintf(ids[i][sync], sizeof ids[i][sync], "%s", jstr(r.json, "id"));
			if (sync) {
				/* The provider's answer is in the response. */
				if (strcmp(jstr(r.json, "status"), "sent") != 0)
					fail_msg("%s sync: %s", types[i].name, r.body);
				assert_true(strncmp(jstr(r.json, "provider_id"), "wamid.", 6) == 0);
			} else {
				assert_string_equal(jstr(r.json, "status"), "queued");
			}
			resp_free(&r);
		}
	}
	for (size_t i = 0; i < NTYPES; i++) {
		for (int sync = 0; sync < 2; sync++) {
			const char *id = ids[i][sync];
			world_wait_status(&W, id, "read", 30);
			json_t *m = world_message(&W, id);
			assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
			assert_true(strncmp(jstr(m, "provider_id"), "wamid.", 6) == 0);
			if (types[i].body && strcmp(jstr(m, "body"), types[i].body) != 0)
				fail_msg("%s: body '%s', want '%s'", types[i].name, jstr(m, "body"),
				         types[i].body);
			json_decref(m);
			/* The sim accepted it (so it passed Graph's checks) exactly once. */
			if (sim_count(id) != 1)
				fail_msg("%s (%s): sim count %ld", types[i].name,
				         sync ? "sync" : "async", sim_count(id));
		}
	}
}

/* ---- scripted recipients ---- */

static json_t *wait_inbound(const char *id)
{
	if (!wait_until(has_inbound, &W, (void *)id, 30))
		fail_msg("no inbound event on %s", id);
	json_t *m = world_message(&W, id);
	json_t *in = inbound_events(m);
	json_decref(m);
	return in;
}

static void test_template_quick_reply_press(void **state)
{
	(void)state;
	struct resp r = send_msg(TO_PRESS_TEMPLATE, types[4].members, false, 202);
	char id[40];
	snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
	resp_free(&r);
	world_wait_status(&W, id, "read", 30);
	json_t *in = wait_inbound(id);
	assert_int_equal(json_array_size(in), 1);
	json_t *d = json_array_get(in, 0);
	assert_string_equal(jstr(d, "kind"), "button");
	assert_string_equal(jstr(d, "payload"), "PAY_NOW");
	assert_string_equal(jstr(d, "from"), TO_PRESS_TEMPLATE);
	assert_true(strncmp(jstr(d, "provider_msg_id"), "wamid.", 6) == 0);
	json_decref(in);
	json_t *m = world_message(&W, id);
	assert_string_equal(jstr(m, "status"), "read"); /* a press changes no status */
	json_decref(m);
}

static void test_interactive_press_and_text_reply(void **state)
{
	(void)state;
	struct resp r = send_msg(TO_PRESS_BUTTONS, types[1].members, false, 202);
	char pressed[40], replied[40];
	snprintf(pressed, sizeof pressed, "%s", jstr(r.json, "id"));
	resp_free(&r);
	r = send_msg(TO_REPLIES, "\"text\":\"Did it arrive?\"", true, 200);
	snprintf(replied, sizeof replied, "%s", jstr(r.json, "id"));
	resp_free(&r);

	json_t *in = wait_inbound(pressed);
	assert_int_equal(json_array_size(in), 1);
	json_t *d = json_array_get(in, 0);
	assert_string_equal(jstr(d, "kind"), "interactive");
	assert_string_equal(jstr(d, "payload"), "later"); /* the button the script named */
	assert_string_equal(jstr(d, "text"), "Later");
	json_decref(in);
	world_wait_status(&W, pressed, "read", 30);

	in = wait_inbound(replied);
	assert_int_equal(json_array_size(in), 1);
	d = json_array_get(in, 0);
	assert_string_equal(jstr(d, "kind"), "text");
	assert_string_equal(jstr(d, "text"), "thanks, got it");
	assert_true(json_is_null(json_object_get(d, "payload")) || !json_object_get(d, "payload"));
	json_decref(in);
	world_wait_status(&W, replied, "read", 30);
}

static void test_refused_131047_fails_once(void **state)
{
	(void)state;
	for (int sync = 0; sync < 2; sync++) {
		struct resp r =
		    send_msg(TO_REFUSED, "\"text\":\"are you there?\"", sync, sync ? 200 : 202);
		char id[40];
		snprintf(id, sizeof id, "%s", jstr(r.json, "id"));
		if (sync) {
			assert_string_equal(jstr(r.json, "status"), "failed");
			assert_string_equal(jstr(json_object_get(r.json, "error"), "code"),
			                    "131047");
		}
		resp_free(&r);
		world_wait_status(&W, id, "failed", 30);
		json_t *m = world_message(&W, id);
		json_t *err = json_object_get(m, "error");
		assert_string_equal(jstr(err, "code"), "131047");
		assert_non_null(strstr(jstr(err, "message"), "Re-engagement"));
		assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
		json_t *pid = json_object_get(m, "provider_id");
		assert_true(!pid || json_is_null(pid) || !*json_string_value(pid));
		json_decref(m);
		assert_int_equal(sim_count(id), 0); /* refused: never accepted */
	}
}

/* ---- the sim checks bodies like Graph; the API refuses what WhatsApp lacks ---- */

static void test_sim_refuses_malformed(void **state)
{
	(void)state;
	char url[160];
	snprintf(url, sizeof url, "%s/v21.0/106540352242922/messages", W.sim);
	const char *auth[] = {"Authorization: Bearer test-token", NULL};
#define SEND(x) "{\"messaging_product\":\"whatsapp\",\"to\":\"447911000777\"," x "}"
	struct {
		const char *body;
		int code;
		const char *says;
	} cases[] = {
	    {SEND(
	         "\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"body\":{\"text\":"
	         "\"x\"},\"action\":{\"buttons\":[]}}"),
	     100, "at least 1 and at most 3"},
	    {SEND(
	         "\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"body\":{\"text\":"
	         "\"x\"},\"action\":{\"buttons\":[{\"type\":\"reply\",\"reply\":{\"id\":\"a\","
	         "\"title\":\"A\"}},{\"type\":\"reply\",\"reply\":{\"id\":\"b\",\"title\":\"A\"}}]}"
	         "}"),
	     131009, "unique"},
	    {SEND(
	         "\"type\":\"interactive\",\"interactive\":{\"type\":\"button\",\"body\":{\"text\":"
	         "\"x\"},\"action\":{\"buttons\":[{\"type\":\"reply\",\"reply\":{\"id\":\"a\","
	         "\"title\":\"123456789012345678901\"}}]}}"),
	     100, "['reply']['title']"},
	    {SEND("\"type\":\"document\",\"document\":{\"caption\":\"no link\"}"), 100,
	     "either id or link"},
	    {SEND("\"type\":\"image\",\"image\":{\"link\":\"https://127.0.0.1/a.png\","
	          "\"filename\":\"a.png\"}"),
	     100, "Unexpected key"},
	    {SEND("\"type\":\"template\",\"template\":{\"name\":\"t\",\"language\":{\"code\":"
	          "\"en\"},"
	          "\"components\":[{\"type\":\"button\",\"sub_type\":\"quick_reply\",\"index\":"
	          "\"0\","
	          "\"parameters\":[{\"type\":\"text\",\"text\":\"x\"}]}]}"),
	     100, "must be payload"},
	    {SEND("\"type\":\"template\",\"template\":{\"name\":\"t\",\"language\":{\"code\":"
	          "\"en\"},"
	          "\"components\":[{\"type\":\"header\",\"parameters\":[{\"type\":\"document\","
	          "\"document\":{\"link\":\"not a url\"}}]}]}"),
	     100, "valid URL"},
	    {SEND("\"type\":\"sticker\",\"sticker\":{\"id\":\"1\"}"), 100, "Param type"},
	};
#undef SEND
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r = http("POST", url, NULL, cases[i].body, auth);
		json_t *e = json_object_get(r.json, "error");
		if (r.status != 400 ||
		    json_integer_value(json_object_get(e, "code")) != cases[i].code ||
		    !strstr(jstr(e, "message"), cases[i].says))
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		resp_free(&r);
	}
}

static void test_api_refuses_what_whatsapp_lacks(void **state)
{
	(void)state;
	struct {
		const char *members;
		const char *field;
	} cases[] = {
	    {"\"card\":{\"title\":\"A card\",\"description\":\"d\"}", "card"}, /* the request key */
	    {"\"text\":\"x\",\"actions\":[{\"title\":\"Call us\",\"dial\":\"+15550100\"}]",
	     "actions"},
	    {"\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"123456789012345678901\"}]",
	     "buttons[0].title"},
	    {"\"text\":\"x\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},{\"id\":\"b\",\"title\":"
	     "\"B\"},{\"id\":\"c\",\"title\":\"C\"},{\"id\":\"d\",\"title\":\"D\"}]",
	     "buttons"},
	    {"\"document\":{\"url\":\"ftp://127.0.0.1/s.pdf\"}", "document.url"},
	    {"\"text\":\"x\",\"options\":{\"parse_mode\":\"HTML\"}", "options.parse_mode"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r = send_msg("447911000888", cases[i].members, false, 422);
		json_t *e = json_object_get(r.json, "error");
		if (!jstr(e, "field") || strcmp(jstr(e, "field"), cases[i].field) != 0)
			fail_msg("case %zu: %s (want field %s)", i, r.body, cases[i].field);
		resp_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_type_async_and_sync),
	    cmocka_unit_test(test_template_quick_reply_press),
	    cmocka_unit_test(test_interactive_press_and_text_reply),
	    cmocka_unit_test(test_refused_131047_fails_once),
	    cmocka_unit_test(test_sim_refuses_malformed),
	    cmocka_unit_test(test_api_refuses_what_whatsapp_lacks),
	};
	return cmocka_run_group_tests_name("whatsapp_types", tests, setup, teardown);
}
