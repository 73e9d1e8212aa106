/*
 * channel_test.h - helpers shared by the channel adapters' unit tests
 * (test_whatsapp.c, test_twilio.c, test_rbm.c, test_telegram.c). They speak
 * to an adapter only through struct channel_ops.
 *
 * Include after <setjmp.h>, <stdarg.h>, <stddef.h> and <cmocka.h>; the
 * helpers fail the running test through cmocka.
 */
#ifndef HR_TEST_CHANNEL_TEST_H
#define HR_TEST_CHANNEL_TEST_H

#include <stdio.h>
#include <string.h>

#include "channels/channel.h"
#include "herald.h"

/* An account of tenant t1 on channel, made from config (JSON text) as the
 * store would hand it over; NULL with err set when the adapter refuses it
 * (asserted to leave nothing behind). */
static inline struct channel_account *channel_test_load(const char *channel, const char *id,
                                                        const char *config, struct hr_err *err)
{
	struct account_row row = {.tenant_id = "t1"};
	hr_strlcpy(row.channel, channel, sizeof row.channel);
	hr_strlcpy(row.id, id, sizeof row.id);
	row.config = (char *)config;
	struct channel_account *a = NULL;
	int rc = channel_account_new(&row, &a, err);
	if (rc)
		assert_null(a);
	return a;
}

/* A provider answer, the error code parse_send records for it, and that
 * code's meaning (the overview's top failure codes), exactly. */
struct meaning_case {
	long status;
	const char *body, *code, *text;
};

/*
 * Checks each case through a's parse_send and meaning, then that none of
 * unknown (n_unknown codes the channel does not give) and NULL has a
 * meaning.
 */
static inline void check_error_meanings(struct channel_account *a,
                                        const char *(*meaning)(const char *),
                                        const struct meaning_case *cases, size_t n,
                                        const char *const *unknown, size_t n_unknown)
{
	assert_non_null(meaning);
	for (size_t i = 0; i < n; i++) {
		struct send_outcome o;
		a->ops->parse_send(a, cases[i].status, cases[i].body, strlen(cases[i].body), NULL,
		                   &o);
		assert_string_equal(o.error_code, cases[i].code);
		const char *m = meaning(o.error_code);
		if (!m || strcmp(m, cases[i].text) != 0)
			fail_msg("%s: '%s'", cases[i].code, m ? m : "(null)");
	}
	for (size_t i = 0; i < n_unknown; i++)
		if (meaning(unknown[i]))
			fail_msg("'%s' has a meaning: %s", unknown[i], meaning(unknown[i]));
	assert_null(meaning(NULL));
}

/* A recipient as a client writes it, and as the adapter stores it (NULL:
 * refused, HR_EINVAL on "to"). */
struct recipient_case {
	const char *in, *out;
};

/* Checks each case through ops->normalize_recipient. */
static inline void check_recipients(const struct channel_ops *ops,
                                    const struct recipient_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char out[HR_ADDR_MAX] = "";
		struct hr_err err = {0};
		int rc = ops->normalize_recipient(cases[i].in, out, &err);
		if (cases[i].out) {
			if (rc)
				fail_msg("case %zu '%s': %s", i, cases[i].in, err.msg);
			assert_string_equal(out, cases[i].out);
		} else {
			if (rc != HR_EINVAL)
				fail_msg("case %zu '%s' accepted as '%s'", i, cases[i].in, out);
			assert_string_equal(err.field, "to");
		}
	}
}

#endif
