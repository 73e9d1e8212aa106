/*
 * fastbody_test.h - what the channels' unit tests share to prove that the
 * fast request bodies (core/jsonw.h) and the fast reading of success answers
 * (core/jsonr.h) change nothing: each request is built, and each answer
 * classified, once with channel_fast_json on and once with it off (jansson's
 * way), and the results compared. Include after cmocka.h and channel.h.
 */
#ifndef HR_FASTBODY_TEST_H
#define HR_FASTBODY_TEST_H

#include <stdlib.h>
#include <string.h>

/* A random valid UTF-8 string of up to max code points (out holds 4 * max
 * + 1), biased to what needs escaping: control characters (no NUL), quotes,
 * backslashes, slashes, 2-, 3- and 4-byte characters, U+2028. */
static inline size_t fb_random_text(char *out, size_t max, unsigned *seed)
{
	size_t n = 0, k = (size_t)rand_r(seed) % (max + 1);
	for (size_t i = 0; i < k; i++) {
		unsigned cp;
		switch (rand_r(seed) % 11) {
		case 0:
			cp = 1 + (unsigned)rand_r(seed) % 0x1f;
			break;
		case 1:
			cp = (unsigned char)"\"\\/"[rand_r(seed) % 3];
			break;
		case 2:
			cp = 0x80 + (unsigned)rand_r(seed) % 0x780;
			break;
		case 3:
			do
				cp = 0x800 + (unsigned)rand_r(seed) % 0xf800;
			while (cp >= 0xd800 && cp <= 0xdfff);
			break;
		case 4:
			cp = 0x10000 + (unsigned)rand_r(seed) % 0x100000;
			break;
		case 5:
			cp = 0x2028;
			break;
		default:
			cp = 0x20 + (unsigned)rand_r(seed) % 0x5f;
		}
		n += hr_utf8_put(out + n, cp);
	}
	out[n] = '\0';
	return n;
}

/* A non-empty one (validation refuses empty strings). */
static inline void fb_random_nonempty(char *out, size_t max, unsigned *seed)
{
	do
		fb_random_text(out, max, seed);
	while (!out[0]);
}

/* Whether the last fb_same_request or fb_same_outcome went the fast way
 * (1) or fell back to jansson (0). */
static unsigned long fb_fast_hits;

/*
 * Builds m both ways and asserts the same result: the same code, and on
 * success the same URL and a body equal byte for byte (same_order: the
 * fast writer keeps jansson's key order) and as a JSON value (json_equal);
 * a body that is not JSON (Twilio's form) byte for byte.
 * Returns the code.
 */
static inline int fb_same_request(const struct channel_account *a, const struct message *m,
                                  bool same_order)
{
	struct http_req fast, ref;
	struct hr_err e1 = {0}, e2 = {0};
	channel_fast_json = true;
	fb_fast_hits = channel_fast_json_hits;
	int rc1 = a->ops->build_send(a, m, &fast, &e1);
	fb_fast_hits = channel_fast_json_hits - fb_fast_hits;
	channel_fast_json = false;
	int rc2 = a->ops->build_send(a, m, &ref, &e2);
	channel_fast_json = true;
	if (rc1 != rc2)
		fail_msg("build_send: %d fast, %d with jansson (%s / %s) for %s", rc1, rc2, e1.msg,
		         e2.msg, m->content);
	if (rc1) {
		assert_string_equal(e1.field, e2.field);
		assert_string_equal(e1.msg, e2.msg);
		return rc1;
	}
	assert_string_equal(fast.url, ref.url);
	assert_int_equal(fast.body_len, strlen(fast.body));
	if (same_order && strcmp(fast.body, ref.body) != 0)
		fail_msg("bodies differ:\n fast    %s\n jansson %s", fast.body, ref.body);
	assert_int_equal(fast.body_len, ref.body_len);
	if (fast.body[0] != '{') { /* a form (Twilio): bytes are all there is */
		assert_string_equal(fast.body, ref.body);
		http_req_clear(&fast);
		http_req_clear(&ref);
		return 0;
	}
	json_error_t je;
	json_t *j1 = json_loads(fast.body, 0, &je), *j2 = json_loads(ref.body, 0, &je);
	assert_non_null(j1);
	assert_non_null(j2);
	assert_true(json_equal(j1, j2));
	json_decref(j1);
	json_decref(j2);
	http_req_clear(&fast);
	http_req_clear(&ref);
	return 0;
}

/* Content as JSON text from a jansson value (stolen). Caller frees. */
static inline char *fb_content(json_t *v)
{
	assert_non_null(v);
	char *s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	assert_non_null(s);
	return s;
}

/* Classifies (status, body) both ways and asserts equal outcomes, field by
 * field. Returns the outcome's class. */
static inline enum outcome_class fb_same_outcome(const struct channel_account *a, long status,
                                                 const char *body, size_t len,
                                                 const char *retry_after, struct send_outcome *out)
{
	struct send_outcome fast, ref;
	channel_fast_json = true;
	fb_fast_hits = channel_fast_json_hits;
	a->ops->parse_send(a, status, body, len, retry_after, &fast);
	fb_fast_hits = channel_fast_json_hits - fb_fast_hits;
	channel_fast_json = false;
	a->ops->parse_send(a, status, body, len, retry_after, &ref);
	channel_fast_json = true;
	if (fast.cls != ref.cls || strcmp(fast.provider_id, ref.provider_id) != 0)
		fail_msg("status %ld %.*s: fast %d '%s', jansson %d '%s'", status,
		         body ? (int)len : 0, body ? body : "", fast.cls, fast.provider_id, ref.cls,
		         ref.provider_id);
	assert_string_equal(fast.error_code, ref.error_code);
	assert_string_equal(fast.error_text, ref.error_text);
	assert_int_equal(fast.retry_after_us, ref.retry_after_us);
	assert_int_equal(fast.account_blocked, ref.account_blocked);
	assert_int_equal(fast.rate_scope, ref.rate_scope);
	assert_string_equal(fast.new_recipient, ref.new_recipient);
	assert_int_equal(fast.suppress_recipient, ref.suppress_recipient);
	if (out)
		*out = fast;
	return fast.cls;
}

/*
 * Success answers that must classify the same both ways, for any channel:
 * malformed, truncated, trailing bytes, a NUL, a BOM, deep, too many
 * tokens, numbers jansson refuses. body_ok is a good answer of the channel
 * (its id field present); each case is derived from it.
 */
static inline void fb_same_outcomes_malformed(const struct channel_account *a, const char *body_ok)
{
	size_t n = strlen(body_ok);
	char buf[8192];
	assert_true(n + 64 < sizeof buf);
	/* Every truncation. */
	for (size_t cut = 0; cut <= n; cut++)
		fb_same_outcome(a, 200, body_ok, cut, NULL, NULL);
	/* Trailing bytes, a NUL inside, a BOM before. */
	static const char *const tails[] = {" ", "\n", "x", "{}", ",", "\0", "\xef\xbb\xbf"};
	for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		size_t tl = tails[i][0] ? strlen(tails[i]) : 1;
		memcpy(buf, body_ok, n);
		memcpy(buf + n, tails[i], tl);
		fb_same_outcome(a, 200, buf, n + tl, NULL, NULL);
		memcpy(buf, tails[i], tl);
		memcpy(buf + tl, body_ok, n);
		fb_same_outcome(a, 200, buf, n + tl, NULL, NULL);
	}
	/* Each byte replaced by characters that break or bend the text. */
	static const char repl[] = "\"\\{}[],:0-eu \x01\x80\xff";
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < sizeof repl - 1; k++) {
			memcpy(buf, body_ok, n);
			buf[i] = repl[k];
			fb_same_outcome(a, 200, buf, n, NULL, NULL);
			fb_same_outcome(a, 201, buf, n, NULL, NULL);
		}
	/* Oversized: more tokens than jsonr holds, around the good answer. */
	size_t k = 0;
	k += (size_t)snprintf(buf + k, sizeof buf - k, "{\"pad\":[");
	for (int i = 0; i < 400; i++)
		k += (size_t)snprintf(buf + k, sizeof buf - k, "%s1", i ? "," : "");
	k += (size_t)snprintf(buf + k, sizeof buf - k, "],\"rest\":%s}", body_ok);
	fb_same_outcome(a, 200, buf, k, NULL, NULL);
	/* Numbers jansson refuses, and ones jsonr leaves to jansson. */
	static const char *const nums[] = {"1e400", "99999999999999999999", "1e5", "-0", "0.5"};
	for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
		k = (size_t)snprintf(buf, sizeof buf, "{\"x\":%s,\"rest\":%s}", nums[i], body_ok);
		fb_same_outcome(a, 200, buf, k, NULL, NULL);
		memcpy(buf, body_ok, n);
		k = n - 1;
		k += (size_t)snprintf(buf + k, sizeof buf - k, ",\"x\":%s}", nums[i]);
		fb_same_outcome(a, 200, buf, k, NULL, NULL);
	}
	/* Empty and absent bodies. */
	fb_same_outcome(a, 200, "", 0, NULL, NULL);
	fb_same_outcome(a, 200, NULL, 0, NULL, NULL);
	fb_same_outcome(a, 204, NULL, 0, NULL, NULL);
	fb_same_outcome(a, 200, "{}", 2, NULL, NULL);
	fb_same_outcome(a, 200, "[]", 2, NULL, NULL);
	fb_same_outcome(a, 200, "null", 4, NULL, NULL);
}

/* Counts what jansson allocates (json_set_alloc_funcs). */
static size_t fb_jansson_allocs;
static inline void *fb_counting_malloc(size_t n)
{
	fb_jansson_allocs++;
	return malloc(n);
}

/* A content, build_send's answer for it, and whether its text is read the
 * fast way (1) or declined to jansson's (0). */
struct fb_text_case {
	const char *content;
	int rc;
	int fast;
};

/*
 * Each case's content built both ways (fb_same_request: the same answer
 * and request) with the answer given, and once more counting jansson's
 * allocations: none exactly when the text is read fast. hits: which
 * fb_fast_hits a built request shows (-1: not checked, 1: always fast, 2:
 * the case's own `fast`).
 */
static inline void fb_text_cases(struct channel_account *a, struct message *m,
                                 const struct fb_text_case *cases, size_t n, int hits)
{
	struct hr_err err = {0};
	for (size_t i = 0; i < n; i++) {
		m->content = (char *)cases[i].content;
		int rc = fb_same_request(a, m, true);
		if (rc != cases[i].rc)
			fail_msg("case %zu: %d, want %d", i, rc, cases[i].rc);
		unsigned long want = hits == 2 ? (unsigned long)cases[i].fast : (unsigned long)hits;
		if (rc == 0 && hits >= 0 && fb_fast_hits != want)
			fail_msg("case %zu: %lu fast hits", i, fb_fast_hits);
		struct http_req req;
		fb_jansson_allocs = 0;
		json_set_alloc_funcs(fb_counting_malloc, free);
		rc = a->ops->build_send(a, m, &req, &err);
		json_set_alloc_funcs(malloc, free);
		if ((fb_jansson_allocs == 0) != (cases[i].fast == 1))
			fail_msg("case %zu: %zu jansson allocations", i, fb_jansson_allocs);
		if (rc == 0)
			http_req_clear(&req);
	}
}

#endif
