/*
 * webhook_same_test.h - what the channels' unit tests share to prove that
 * reading webhook bodies with jsonr (channel_fast_json on, core/jsonr.h)
 * changes nothing: each body is parsed once the fast way and once with
 * channel_fast_json off (jansson's way), each time into a struct wh_parsed
 * that already holds one status, and the codes, the errors (field and text)
 * and every status, reply and follow-up request compared field by field.
 * Include after cmocka.h and channel.h.
 */
#ifndef HR_WEBHOOK_SAME_TEST_H
#define HR_WEBHOOK_SAME_TEST_H

#include <stdlib.h>
#include <string.h>
#include "mutate_test.h"

/* Whether the last ws_same_parse went the fast way (1) or fell back to
 * jansson (0). */
static unsigned long ws_fast;

static inline void ws_str_same(const char *what, size_t i, const char *a, const char *b)
{
	if (!a || !b) {
		if (a != b)
			fail_msg("%s[%zu]: fast %s, jansson %s", what, i, a ? a : "NULL",
			         b ? b : "NULL");
		return;
	}
	if (strcmp(a, b) != 0)
		fail_msg("%s[%zu]: fast '%s', jansson '%s'", what, i, a, b);
}

static inline void ws_parsed_same(const struct wh_parsed *f, const struct wh_parsed *j)
{
	assert_int_equal(f->nstatuses, j->nstatuses);
	for (size_t i = 0; i < f->nstatuses; i++) {
		const struct wh_status *a = &f->statuses[i], *b = &j->statuses[i];
		ws_str_same("provider_id", i, a->provider_id, b->provider_id);
		assert_int_equal(a->status, b->status);
		assert_true(a->provider_at == b->provider_at);
		ws_str_same("provider_ts", i, a->provider_ts, b->provider_ts);
		ws_str_same("error_code", i, a->error_code, b->error_code);
		ws_str_same("error_text", i, a->error_text, b->error_text);
		ws_str_same("client_ref", i, a->client_ref, b->client_ref);
	}
	assert_int_equal(f->ninbound, j->ninbound);
	for (size_t i = 0; i < f->ninbound; i++) {
		const struct wh_inbound *a = &f->inbound[i], *b = &j->inbound[i];
		ws_str_same("provider_msg_id", i, a->provider_msg_id, b->provider_msg_id);
		assert_int_equal(a->optout, b->optout);
		ws_str_same("auto_reply", i, a->auto_reply, b->auto_reply);
		ws_str_same("context_id", i, a->context_id, b->context_id);
		ws_str_same("from", i, a->from, b->from);
		ws_str_same("kind", i, a->kind, b->kind);
		ws_str_same("text", i, a->text, b->text);
		ws_str_same("payload", i, a->payload, b->payload);
		assert_true(a->provider_at == b->provider_at);
	}
	assert_int_equal(f->nfollowups, j->nfollowups);
	for (size_t i = 0; i < f->nfollowups; i++) {
		const struct http_req *a = &f->followups[i], *b = &j->followups[i];
		ws_str_same("followup url", i, a->url, b->url);
		assert_int_equal(a->body_len, b->body_len);
		if (a->body_len && memcmp(a->body, b->body, a->body_len) != 0)
			fail_msg("followup body[%zu]: fast %s, jansson %s", i, a->body, b->body);
		const struct curl_slist *ha = a->headers, *hb = b->headers;
		for (; ha && hb; ha = ha->next, hb = hb->next)
			ws_str_same("followup header", i, ha->data, hb->data);
		assert_true(!ha && !hb);
		ws_str_same("followup userpwd", i, a->userpwd, b->userpwd);
	}
}

/*
 * Parses body[0..len) both ways through a's adapter (ops; a may be NULL
 * when the adapter reads no account) and asserts the same result. Returns
 * the code; ws_fast says which way the fast side went.
 */
static inline int ws_same_parse(const struct channel_ops *ops, const struct channel_account *a,
                                const char *body, size_t len)
{
	struct wh_parsed f = {0}, j = {0};
	struct hr_err ef = {0}, ej = {0};
	struct wh_status *kf = wh_parsed_add_status(&f), *kj = wh_parsed_add_status(&j);
	assert_non_null(kf);
	assert_non_null(kj);
	hr_strlcpy(kf->provider_id, "keep", sizeof kf->provider_id);
	hr_strlcpy(kj->provider_id, "keep", sizeof kj->provider_id);
	channel_fast_json = true;
	unsigned long hits = channel_fast_json_hits;
	int rf = ops->webhook_parse(a, body, len, &f, &ef);
	ws_fast = channel_fast_json_hits - hits;
	channel_fast_json = false;
	hits = channel_fast_json_hits;
	int rj = ops->webhook_parse(a, body, len, &j, &ej);
	assert_int_equal(channel_fast_json_hits, hits); /* off means off */
	channel_fast_json = true;
	if (rf != rj)
		fail_msg("webhook_parse: %d fast (%s), %d with jansson (%s) for %.*s", rf, ef.msg,
		         rj, ej.msg, body ? (int)len : 0, body ? body : "");
	if (rf && ws_fast)
		fail_msg("an error counted as served fast");
	assert_string_equal(ef.field, ej.field);
	assert_string_equal(ef.msg, ej.msg);
	ws_parsed_same(&f, &j);
	assert_string_equal(f.statuses[0].provider_id, "keep");
	wh_parsed_clear(&f);
	wh_parsed_clear(&j);
	return rf;
}

/* A body of the corpus, the code it parses to, and whether the fast way
 * serves it (1) or leaves it to jansson (0). */
struct ws_case {
	const char *body;
	int rc;
	int fast;
};

static inline void ws_cases(const struct channel_ops *ops, const struct channel_account *a,
                            const struct ws_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = ws_same_parse(ops, a, cases[i].body, strlen(cases[i].body));
		if (rc != cases[i].rc || ws_fast != (unsigned long)cases[i].fast)
			fail_msg("case %zu: rc %d fast %lu, want rc %d fast %d: %s", i, rc, ws_fast,
			         cases[i].rc, cases[i].fast, cases[i].body);
	}
}

/*
 * Every truncation of body, every byte replaced by characters that break or
 * bend it, and `random` random edits (a byte changed, deleted or inserted,
 * the text cut short; 1-3 a body): the same both ways. Counts in fast and
 * slow (may be NULL) how many went each way.
 */
static inline void ws_mutations(const struct channel_ops *ops, const struct channel_account *a,
                                const char *body, int random, unsigned seed, int *fast, int *slow)
{
	size_t n = strlen(body);
	char *buf = malloc(n + 8);
	assert_non_null(buf);
	int nf = 0, ns = 0;
	for (size_t cut = 0; cut <= n; cut++) {
		ws_same_parse(ops, a, body, cut);
		ws_fast ? nf++ : ns++;
	}
	static const char repl[] = "\"\\{}[],:0-e \x01\x80";
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof repl - 1; k++) {
			memcpy(buf, body, n);
			buf[i] = repl[k];
			ws_same_parse(ops, a, buf, n);
			ws_fast ? nf++ : ns++;
		}
	static const char pool[] =
	    "\"\\{}[],:0123456789-.eEtrufalsn u/\x01\x1f\x7f\x80\xc3\xa9\xff";
	for (int r = 0; r < random; r++) {
		size_t m = n;
		memcpy(buf, body, n);
		m = mutate(buf, m, n + 8, &seed, 3, true, pool);
		ws_same_parse(ops, a, buf, m);
		ws_fast ? nf++ : ns++;
	}
	free(buf);
	if (fast)
		*fast = nf;
	if (slow)
		*slow = ns;
}

#endif
