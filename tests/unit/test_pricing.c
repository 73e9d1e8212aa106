/*
 * test_pricing.c - the config's price tables and an upload's cost estimate
 * (campaigns/pricing.c): every key checked and named on error, a calling
 * code's own price before the default, WhatsApp by category, SMS by
 * segment, sums exact in millionths, no prices configured said as such
 * (never as zero), the group bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "campaigns/pricing.h"
#include "core/config.h"

static json_t *yaml(const char *text)
{
	struct hr_err err = {0};
	json_t *j = hr_config_parse(text, strlen(text), &err);
	if (!j)
		fail_msg("yaml: %s", err.msg);
	return j;
}

static const char GOOD[] = "pricing:\n"
                           "  currency: EUR\n"
                           "  sms: {default: 0.05, \"44\": 0.035, \"91\": 0.002}\n"
                           "  whatsapp:\n"
                           "    marketing: {default: 0.06, \"44\": 0.0529}\n"
                           "    utility: {\"44\": 0.022}\n"
                           "    service: {default: 0}\n"
                           "  rcs: {default: 0.01}\n";

static struct pricing *load(const char *text)
{
	json_t *c = yaml(text);
	struct pricing *p = NULL;
	struct hr_err err = {0};
	if (pricing_load(hr_cfg_get(c, "pricing"), &p, &err) != 0)
		fail_msg("pricing_load: %s: %s", err.field, err.msg);
	json_decref(c);
	return p;
}

static void test_prices(void **state)
{
	(void)state;
	struct pricing *p = load(GOOD);
	assert_string_equal(pricing_currency(p), "EUR");
	int64_t u;
	assert_true(pricing_price(p, "sms", 44, WA_MARKETING, &u));
	assert_int_equal(u, 35000);
	assert_true(pricing_price(p, "sms", 1, WA_MARKETING, &u)); /* the default */
	assert_int_equal(u, 50000);
	assert_true(pricing_price(p, "whatsapp", 44, WA_MARKETING, &u));
	assert_int_equal(u, 52900);
	assert_true(pricing_price(p, "whatsapp", 33, WA_MARKETING, &u));
	assert_int_equal(u, 60000);
	assert_true(pricing_price(p, "whatsapp", 44, WA_UTILITY, &u));
	assert_int_equal(u, 22000);
	assert_false(pricing_price(p, "whatsapp", 33, WA_UTILITY, &u));        /* no default */
	assert_false(pricing_price(p, "whatsapp", 44, WA_AUTHENTICATION, &u)); /* no table */
	assert_true(pricing_price(p, "whatsapp", 44, WA_SERVICE, &u));
	assert_int_equal(u, 0); /* configured free is free */
	assert_false(pricing_price(p, "telegram", 0, WA_MARKETING, &u));
	assert_false(pricing_price(NULL, "sms", 44, WA_MARKETING, &u));
	pricing_free(p);
	/* None configured: no table at all. */
	json_t *c = yaml("server: {}\n");
	assert_int_equal(pricing_load(hr_cfg_get(c, "pricing"), &p, NULL), 0);
	assert_null(p);
	json_decref(c);
}

static void test_bad_config_named(void **state)
{
	(void)state;
	static const struct {
		const char *yaml, *field;
	} bad[] = {
	    {"pricing: 3\n", "pricing"},
	    {"pricing: {sms: {default: 0.1}}\n", "pricing.currency"},
	    {"pricing: {currency: euro}\n", "pricing.currency"},
	    {"pricing: {currency: EUR, fax: {default: 1}}\n", "pricing.fax"},
	    {"pricing: {currency: EUR, sms: {default: -1}}\n", "pricing.sms.default"},
	    {"pricing: {currency: EUR, sms: {default: 1001}}\n", "pricing.sms.default"},
	    {"pricing: {currency: EUR, sms: {\"44\": cheap}}\n", "pricing.sms.44"},
	    {"pricing: {currency: EUR, sms: {\"044\": 1}}\n", "pricing.sms.044"},
	    {"pricing: {currency: EUR, sms: {\"4444\": 1}}\n", "pricing.sms.4444"},
	    {"pricing: {currency: EUR, sms: {GB: 1}}\n", "pricing.sms.GB"},
	    {"pricing: {currency: EUR, sms: 0.05}\n", "pricing.sms"},
	    {"pricing: {currency: EUR, whatsapp: {promo: {default: 1}}}\n",
	     "pricing.whatsapp.promo"},
	    {"pricing: {currency: EUR, whatsapp: 1}\n", "pricing.whatsapp"},
	    {"pricing: {currency: EUR, whatsapp: {utility: {\"1\": x}}}\n",
	     "pricing.whatsapp.utility.1"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		json_t *c = yaml(bad[i].yaml);
		struct pricing *p = (struct pricing *)1;
		struct hr_err err = {0};
		assert_int_equal(pricing_load(hr_cfg_get(c, "pricing"), &p, &err), HR_EINVAL);
		assert_null(p);
		if (strcmp(err.field, bad[i].field) != 0)
			fail_msg("%s: field %s, want %s (%s)", bad[i].yaml, err.field, bad[i].field,
			         err.msg);
		json_decref(c);
	}
}

static json_t *group(json_t *est, const char *channel, int cc, const char *category)
{
	size_t i;
	json_t *g;
	json_array_foreach(json_object_get(est, "by"), i, g)
	{
		const char *cat = json_string_value(json_object_get(g, "category"));
		if (!strcmp(json_string_value(json_object_get(g, "channel")), channel) &&
		    json_integer_value(json_object_get(g, "country_code")) == cc &&
		    ((!category && !cat) || (category && cat && !strcmp(cat, category))))
			return g;
	}
	fail_msg("no group %s/%d/%s", channel, cc, category ? category : "-");
	return NULL;
}

/* 3 x 0.035 (GB, 1 segment) + 2 x 2 segments x 0.002 (IN) + 1 x 3 x 0.05
 * (US, the default) = 0.105 + 0.008 + 0.15 = 0.263; WhatsApp 1000 GB
 * marketing at 0.0529 = 52.9, 1 US utility unpriced. Exact to the
 * millionth however many rows. */
static void test_estimate(void **state)
{
	(void)state;
	struct pricing *p = load(GOOD);
	struct pricing_estimate *e = pricing_estimate_new(p);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pricing_estimate_add(e, "sms", 44, -1, 1), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pricing_estimate_add(e, "sms", 91, -1, 2), 0);
	assert_int_equal(pricing_estimate_add(e, "sms", 1, -1, 3), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(pricing_estimate_add(e, "whatsapp", 44, WA_MARKETING, 0), 0);
	assert_int_equal(pricing_estimate_add(e, "whatsapp", 1, WA_UTILITY, 0), 0);
	json_t *j = pricing_estimate_json(e, "template 'x' declares no category");
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "priced")));
	assert_string_equal(json_string_value(json_object_get(j, "currency")), "EUR");
	assert_int_equal(json_integer_value(json_object_get(j, "messages")), 1007);
	assert_int_equal(json_integer_value(json_object_get(j, "sms_segments")), 10);
	assert_int_equal(json_integer_value(json_object_get(j, "unpriced_messages")), 1);
	assert_true(json_real_value(json_object_get(j, "total")) == 53.163);
	json_t *g = group(j, "sms", 91, NULL);
	assert_int_equal(json_integer_value(json_object_get(g, "messages")), 2);
	assert_int_equal(json_integer_value(json_object_get(g, "units")), 4);
	assert_true(json_real_value(json_object_get(g, "unit_price")) == 0.002);
	assert_true(json_real_value(json_object_get(g, "cost")) == 0.008);
	g = group(j, "whatsapp", 44, "marketing");
	assert_true(json_real_value(json_object_get(g, "cost")) == 52.9);
	g = group(j, "whatsapp", 1, "utility");
	assert_true(json_is_null(json_object_get(g, "cost")));
	/* Largest group first. */
	assert_int_equal(json_integer_value(json_object_get(
	                     json_array_get(json_object_get(j, "by"), 0), "messages")),
	                 1000);
	assert_string_equal(json_string_value(json_object_get(j, "category_note")),
	                    "template 'x' declares no category");
	json_decref(j);
	pricing_estimate_free(e);
	pricing_free(p);
}

/* No prices: the estimate says so, with the counts, and has no total. */
static void test_no_prices(void **state)
{
	(void)state;
	/* Nothing at all (every row invalid, or a preview). */
	struct pricing_estimate *none = pricing_estimate_new(NULL);
	json_t *z = pricing_estimate_json(none, NULL);
	assert_int_equal(json_array_size(json_object_get(z, "by")), 0);
	assert_int_equal(json_integer_value(json_object_get(z, "messages")), 0);
	json_decref(z);
	pricing_estimate_free(none);
	struct pricing_estimate *e = pricing_estimate_new(NULL);
	assert_int_equal(pricing_estimate_add(e, "sms", 44, -1, 2), 0);
	json_t *j = pricing_estimate_json(e, NULL);
	assert_false(json_is_true(json_object_get(j, "priced")));
	assert_string_equal(json_string_value(json_object_get(j, "note")), "no prices configured");
	assert_null(json_object_get(j, "total"));
	assert_int_equal(json_integer_value(json_object_get(j, "sms_segments")), 2);
	assert_null(json_object_get(json_array_get(json_object_get(j, "by"), 0), "cost"));
	json_decref(j);
	pricing_estimate_free(e);
}

/* Past PRICING_GROUPS_MAX distinct groups, rows go to country 0 ("other")
 * of their channel: bounded memory whatever a file holds. */
static void test_group_bound(void **state)
{
	(void)state;
	struct pricing *p = load(GOOD);
	struct pricing_estimate *e = pricing_estimate_new(p);
	for (int cc = 1; cc <= PRICING_GROUPS_MAX + 100; cc++)
		assert_int_equal(pricing_estimate_add(e, "sms", cc, -1, 1), 0);
	json_t *j = pricing_estimate_json(e, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "by")), PRICING_GROUPS_MAX + 1);
	json_t *other = group(j, "sms", 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(other, "messages")), 100);
	assert_int_equal(json_integer_value(json_object_get(j, "messages")),
	                 PRICING_GROUPS_MAX + 100);
	json_decref(j);
	pricing_estimate_free(e);
	pricing_free(p);
}

static void test_categories(void **state)
{
	(void)state;
	enum wa_category c;
	assert_int_equal(wa_category_parse("authentication", &c), 0);
	assert_int_equal(c, WA_AUTHENTICATION);
	assert_string_equal(wa_category_name(WA_SERVICE), "service");
	assert_int_equal(wa_category_parse("Marketing", &c), HR_EINVAL);
	assert_int_equal(wa_category_parse(NULL, &c), HR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prices),      cmocka_unit_test(test_bad_config_named),
	    cmocka_unit_test(test_estimate),    cmocka_unit_test(test_no_prices),
	    cmocka_unit_test(test_group_bound), cmocka_unit_test(test_categories),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
