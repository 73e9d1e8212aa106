/*
 * test_phone.c - hr_phone_*: normalising what people type into forms and
 * spreadsheets to E.164 through libphonenumber, the reasons given when a
 * number is refused, hostile input, and use from several threads at once.
 *
 * Expected values are exact. Regions follow libphonenumber 8.12.57's
 * metadata, which is finer than the country: +44 7911 12xxxx (the number in
 * Herald's examples) belongs to Guernsey (GG), so UK mobiles here are
 * +44 7400 xxxxxx (GB).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/phone.h"
#include "herald.h"

#define LEN_STRLEN SIZE_MAX

struct pcase {
	const char *in;
	size_t len; /* LEN_STRLEN: strlen(in) */
	const char *region;
	const char *e164; /* "" when refused */
	enum hr_phone_reason reason;
	const char *text;
	enum hr_phone_type type;
	enum hr_phone_source source;
	int cc;
	const char *found; /* res.region */
};

/* One case a line (clang-format would split them). */
/* clang-format off */
#define OK_(in, reg, e, ty, src, cc, found)                                                        \
	{in, LEN_STRLEN, reg, e, HR_PHONE_OK, "", HR_PHONE_TYPE_##ty, HR_PHONE_SRC_##src, cc, found}
#define NO_(in, reg, why, text, cc)                                                                \
	{in, LEN_STRLEN, reg, "", HR_PHONE_##why, text, HR_PHONE_TYPE_UNKNOWN, HR_PHONE_SRC_NONE, cc, ""}

static const char T_EXT[] = "has an extension: a message cannot be sent to an extension";
static const char T_BADCHAR[] =
    "not a phone number (contains a character other than digits, spaces and + - . ( ) /)";
static const char T_REGION[] =
    "default region needed for a local number (or write it with + and the country code)";

static const struct pcase cases[] = {
    /* Mobiles of six countries, national and international forms. */
    OK_("07400 123456", "GB", "+447400123456", MOBILE, NATIONAL, 44, "GB"),
    OK_("+44 7400 123456", "US", "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("+447400123456", NULL, "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("(201) 555-0123", "US", "+12015550123", FIXED_LINE_OR_MOBILE, NATIONAL, 1, "US"),
    /* NANPA's trunk prefix 1 is also its country code; libphonenumber
     * reads it as the latter (country code without '+'). */
    OK_("1 201 555 0123", "US", "+12015550123", FIXED_LINE_OR_MOBILE, DIGITS_PLUS, 1, "US"),
    OK_("+1 201-555-0123", NULL, "+12015550123", FIXED_LINE_OR_MOBILE, PLUS, 1, "US"),
    OK_("98765 43210", "IN", "+919876543210", MOBILE, NATIONAL, 91, "IN"),
    OK_("098765 43210", "IN", "+919876543210", MOBILE, NATIONAL, 91, "IN"),
    OK_("+91 98765 43210", "GB", "+919876543210", MOBILE, PLUS, 91, "IN"),
    OK_("0151 23456789", "DE", "+4915123456789", MOBILE, NATIONAL, 49, "DE"),
    OK_("+49 151 23456789", "DE", "+4915123456789", MOBILE, PLUS, 49, "DE"),
    OK_("(11) 98765-4321", "BR", "+5511987654321", MOBILE, NATIONAL, 55, "BR"),
    OK_("+55 11 98765 4321", NULL, "+5511987654321", MOBILE, PLUS, 55, "BR"),
    OK_("0803 123 4567", "NG", "+2348031234567", MOBILE, NATIONAL, 234, "NG"),
    OK_("+234 803 123 4567", "GB", "+2348031234567", MOBILE, PLUS, 234, "NG"),

    /* Digits without '+' (a number column in a spreadsheet). With the
     * default region's own country code libphonenumber strips it itself;
     * another country's is the spreadsheet rule's second reading. */
    OK_("447400123456", "GB", "+447400123456", MOBILE, DIGITS_PLUS, 44, "GB"),
    OK_("4915123456789", "GB", "+4915123456789", MOBILE, DIGITS_PLUS, 49, "DE"),
    OK_("12015550123", "GB", "+12015550123", FIXED_LINE_OR_MOBILE, DIGITS_PLUS, 1, "US"),
    OK_("2348031234567", "IN", "+2348031234567", MOBILE, DIGITS_PLUS, 234, "NG"),
    /* A valid national reading wins: 020 1555 0123 is a London number. */
    OK_("2015550123", "GB", "+442015550123", FIXED_LINE, NATIONAL, 44, "GB"),
    /* Starts with 0: never read as a country code, refused as national. */
    NO_("07400 12345", "GB", INVALID, "not a valid number for region GB", 44),
    /* The float a pandas column writes; ".0" after a shorter run is kept
     * (and refused, '.' being a separator it would be one digit more). */
    OK_("447400123456.0", "GB", "+447400123456", MOBILE, DIGITS_PLUS, 44, "GB"),
    NO_("4.47911E+11", "GB", SCIENTIFIC,
        "in scientific notation, so digits are lost: format the column as text", 0),
    NO_("4E+11", "GB", SCIENTIFIC,
        "in scientific notation, so digits are lost: format the column as text", 0),

    /* International prefixes. */
    OK_("00 44 7400 123456", "GB", "+447400123456", MOBILE, IDD, 44, "GB"),
    OK_("0049 151 23456789", "GB", "+4915123456789", MOBILE, IDD, 49, "DE"),
    OK_("0044 7400 123456", NULL, "+447400123456", MOBILE, IDD, 44, "GB"),
    OK_("011 44 7400 123456", "US", "+447400123456", MOBILE, IDD, 44, "GB"),
    /* 00 where the region's prefix is another: the second reading. */
    OK_("00 44 7400 123456", "US", "+447400123456", MOBILE, IDD, 44, "GB"),
    OK_("0049 151 23456789", "BR", "+4915123456789", MOBILE, IDD, 49, "DE"),
    NO_("00 1234", "US", TOO_SHORT, "too short", 1),
    /* 011 is not GB's international prefix: a 14-digit national number. */
    NO_("011 44 7400 123456", "GB", TOO_LONG, "too long", 44),
    NO_("011 44 7400 123456", NULL, NEED_REGION, T_REGION, 0),

    /* Punctuation, prefixes, whitespace. */
    OK_("+44 (0) 7400-123.456", "GB", "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("(+44) 7400/123456", "GB", "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("+44.7400.123.456", "GB", "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("tel:+44-7400-123456", NULL, "+447400123456", MOBILE, PLUS, 44, "GB"),
    OK_("TEL:07400123456", "GB", "+447400123456", MOBILE, NATIONAL, 44, "GB"),
    OK_(" \t07400 123456 \r\n", "GB", "+447400123456", MOBILE, NATIONAL, 44, "GB"),
    OK_("\xc2\xa0" "07400\xc2\xa0" "123456\xc2\xa0", "GB", "+447400123456", MOBILE, NATIONAL,
        44, "GB"),

    /* Other regions than the default. */
    OK_("+49 30 123456", "GB", "+4930123456", FIXED_LINE, PLUS, 49, "DE"),
    OK_("506 234 5678", "US", "+15062345678", FIXED_LINE_OR_MOBILE, NATIONAL, 1, "CA"),
    OK_("07797 712345", "GB", "+447797712345", MOBILE, NATIONAL, 44, "JE"),
    OK_("07911 123456", "GB", "+447911123456", MOBILE, NATIONAL, 44, "GG"),
    /* Types other than mobile. */
    OK_("020 7946 0000", "GB", "+442079460000", FIXED_LINE, NATIONAL, 44, "GB"),
    OK_("030 123456", "DE", "+4930123456", FIXED_LINE, NATIONAL, 49, "DE"),
    OK_("+800 1234 5678", NULL, "+80012345678", TOLL_FREE, PLUS, 800, ""),

    /* Lengths and country codes. */
    NO_("+44 74", NULL, TOO_SHORT, "too short", 44),
    NO_("12", "US", TOO_SHORT, "too short", 1),
    NO_("7", "US", TOO_SHORT, "too short", 0),
    NO_("+44 7400 1234567890", NULL, TOO_LONG, "too long", 44),
    NO_("+1234567890123456789012345", NULL, TOO_LONG, "too long", 0),
    NO_("1234567890123456789012345678901234567890123456789012345678901234", "GB", TOO_LONG,
        "too long", 0),
    /* Valid by libphonenumber's metadata (a German line with its
     * extension dialled straight on), but 17 and 16 digits: over E.164's
     * 15. */
    NO_("089 3713647685492", "DE", TOO_LONG,
        "too long (more than 15 digits with the country code)", 49),
    NO_("089 371364768549", "DE", TOO_LONG,
        "too long (more than 15 digits with the country code)", 49),
    OK_("089 37136476854", "DE", "+498937136476854", FIXED_LINE, NATIONAL, 49, "DE"),
    NO_("+234 802 123 456", NULL, WRONG_LENGTH, "wrong number of digits for region NG", 234),
    NO_("555 0123", "US", LOCAL_ONLY, "local number: the area code is missing (region US)", 1),
    NO_("+999 123 456 789", NULL, INVALID_COUNTRY_CODE, "invalid country code", 0),
    NO_("00 999 123 456", "GB", INVALID_COUNTRY_CODE, "invalid country code", 0),

    /* Not numbers. */
    NO_("", "GB", EMPTY, "no phone number", 0),
    NO_(" \t \xc2\xa0 ", "GB", EMPTY, "no phone number", 0),
    NO_("0800 FLOWERS", "GB", LETTERS, "not a phone number (contains letters)", 0),
    NO_("n/a", "GB", LETTERS, "not a phone number (contains letters)", 0),
    NO_("07400 123456 ext", "GB", LETTERS, "not a phone number (contains letters)", 0),
    NO_("44+7400123456", "GB", NOT_A_NUMBER, "not a phone number (unexpected '+')", 0),
    NO_("07400 123456, 07400 654321", "GB", NOT_A_NUMBER,
        "not a phone number (unexpected ',')", 0),
    NO_("+()", NULL, NOT_A_NUMBER, "not a phone number (no digits)", 0),
    NO_("07400 \xff 123456", "GB", NOT_A_NUMBER, T_BADCHAR, 0),
    NO_("07400 123456\xc2", "GB", NOT_A_NUMBER, T_BADCHAR, 0),
    NO_("\xef\xbc\x90" "7400 123456", "GB", NOT_A_NUMBER, T_BADCHAR, 0), /* fullwidth 0 */
    NO_("07400\x01" "123456", "GB", NOT_A_NUMBER, T_BADCHAR, 0),
    {"07400\0" "123456", 12, "GB", "", HR_PHONE_NOT_A_NUMBER, T_BADCHAR, HR_PHONE_TYPE_UNKNOWN,
     HR_PHONE_SRC_NONE, 0, ""},
    /* Only len bytes are read: the rest of this literal is not seen. */
    {"07400 123456 trailing", 12, "GB", "+447400123456", HR_PHONE_OK, "", HR_PHONE_TYPE_MOBILE,
     HR_PHONE_SRC_NATIONAL, 44, "GB"},

    /* Extensions. */
    NO_("07400 123456 x123", "GB", EXTENSION, T_EXT, 0),
    NO_("+1 201 555 0123 ext. 45", "US", EXTENSION, T_EXT, 0),
    NO_("+1 201 555 0123 Extension: 45", "US", EXTENSION, T_EXT, 0),
    NO_("tel:+12015550123;ext=45", NULL, EXTENSION, T_EXT, 0),
    NO_("tel:+12015550123;phone-context=example.com", NULL, NOT_A_NUMBER,
        "not a phone number (unexpected ';')", 0),

    /* Regions. */
    NO_("07400 123456", NULL, NEED_REGION, T_REGION, 0),
    NO_("07400 123456", "", NEED_REGION, T_REGION, 0),
    NO_("+44 7400 123456", "XX", UNKNOWN_REGION, "unknown default region 'XX'", 0),
    NO_("07400 123456", "gb", UNKNOWN_REGION, "unknown default region 'gb'", 0),
    NO_("07400 123456", "UK", UNKNOWN_REGION, "unknown default region 'UK'", 0),
    NO_("07400 123456", "United Kingdom", UNKNOWN_REGION, "unknown default region", 0),
};
/* clang-format on */
#define NCASES (sizeof cases / sizeof cases[0])

static size_t case_len(const struct pcase *c)
{
	return c->len == LEN_STRLEN ? strlen(c->in) : c->len;
}

/* The fields of one answer against the table; 0 when all agree. Used both
 * under cmocka (one case at a time) and from threads (which count). */
static int check_case(const struct pcase *c, int rc, const char *e164,
                      const struct hr_phone_result *r)
{
	int want_rc = c->reason == HR_PHONE_OK ? 0 : HR_EINVAL;
	return rc != want_rc || strcmp(e164, c->e164) != 0 || r->reason != c->reason ||
	       strcmp(r->text, c->text) != 0 || r->type != c->type || r->source != c->source ||
	       r->country_code != c->cc || strcmp(r->region, c->found) != 0;
}

static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		const struct pcase *c = &cases[i];
		char e164[HR_PHONE_E164_SIZE];
		struct hr_phone_result r;
		memset(e164, 'Z', sizeof e164);
		int rc = hr_phone_normalize(c->in, case_len(c), c->region, e164, sizeof e164, &r);
		if (check_case(c, rc, e164, &r)) {
			print_error(
			    "case %zu '%s' [%s]: rc=%d e164='%s' reason=%s text='%s' type=%s "
			    "source=%d cc=%d region='%s'\n",
			    i, c->in, c->region ? c->region : "NULL", rc, e164,
			    hr_phone_reason_name(r.reason), r.text, hr_phone_type_name(r.type),
			    (int)r.source, r.country_code, r.region);
			fail();
		}
	}
}

/* The input bound is on bytes, separators included: 64 pass, 65 do not. */
static void test_input_bound(void **state)
{
	(void)state;
	char in[HR_PHONE_INPUT_MAX + 2];
	char e164[HR_PHONE_E164_SIZE];
	struct hr_phone_result r;
	memset(in, ' ', sizeof in);
	memcpy(in, "+44 7400 123456", 15);
	in[sizeof in - 1] = '\0';

	assert_int_equal(hr_phone_normalize(in, 64, NULL, e164, sizeof e164, &r), 0);
	assert_string_equal(e164, "+447400123456");
	assert_int_equal(r.reason, HR_PHONE_OK);

	assert_int_equal(hr_phone_normalize(in, 65, NULL, e164, sizeof e164, &r), HR_EINVAL);
	assert_string_equal(e164, "");
	assert_int_equal(r.reason, HR_PHONE_INPUT_TOO_LONG);
	assert_string_equal(r.text, "longer than 64 characters, not a phone number");

	/* A huge input is refused on its length, not read. */
	size_t big = 1 << 20;
	char *huge = malloc(big);
	assert_non_null(huge);
	memset(huge, '7', big);
	assert_int_equal(hr_phone_normalize(huge, big, "GB", e164, sizeof e164, &r), HR_EINVAL);
	assert_int_equal(r.reason, HR_PHONE_INPUT_TOO_LONG);
	free(huge);
}

/* Misuse is a bug (HR_EINTERNAL), never a refused number; nothing is
 * written half, and res is optional. */
static void test_bad_arguments(void **state)
{
	(void)state;
	char e164[HR_PHONE_E164_SIZE];
	struct hr_phone_result r;

	assert_int_equal(hr_phone_normalize("+447400123456", 13, NULL, NULL, 17, &r), HR_EINTERNAL);
	assert_int_equal(r.reason, HR_PHONE_INTERNAL);
	assert_string_equal(r.text, "internal error");

	memset(e164, 'Z', sizeof e164);
	assert_int_equal(hr_phone_normalize("+447400123456", 13, NULL, e164, 16, &r), HR_EINTERNAL);
	assert_int_equal(e164[0], '\0');
	assert_int_equal(r.reason, HR_PHONE_INTERNAL);

	assert_int_equal(hr_phone_normalize(NULL, 5, "GB", e164, sizeof e164, &r), HR_EINTERNAL);
	assert_int_equal(r.reason, HR_PHONE_INTERNAL);
	assert_int_equal(hr_phone_normalize(NULL, 0, "GB", e164, sizeof e164, &r), HR_EINVAL);
	assert_int_equal(r.reason, HR_PHONE_EMPTY);

	assert_int_equal(hr_phone_normalize("07400123456", 11, "GB", e164, sizeof e164, NULL), 0);
	assert_string_equal(e164, "+447400123456");
	assert_int_equal(hr_phone_normalize("07400", 5, "GB", e164, sizeof e164, NULL), HR_EINVAL);
	assert_string_equal(e164, "");
}

static void test_region_known(void **state)
{
	(void)state;
	assert_int_equal(hr_phone_init(), 0);
	assert_int_equal(hr_phone_init(), 0);
	const char *yes[] = {"GB", "US", "IN", "DE", "BR", "NG", "JE", "GG", "CA", "FR", "AU"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		assert_true(hr_phone_region_known(yes[i]));
	const char *no[] = {"gb", "Gb", "ZZ", "UK", "XX", "001", "G", "", "GBR", "G\xc3\x9f"};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		assert_false(hr_phone_region_known(no[i]));
	assert_false(hr_phone_region_known(NULL));

	/* Exactly the alpha-2 regions of libphonenumber 8.12.57's metadata. */
	int n = 0;
	char r[3] = {0};
	for (r[0] = 'A'; r[0] <= 'Z'; r[0]++)
		for (r[1] = 'A'; r[1] <= 'Z'; r[1]++)
			n += hr_phone_region_known(r);
	assert_int_equal(n, 245);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(hr_phone_reason_name(HR_PHONE_OK), "ok");
	assert_string_equal(hr_phone_reason_name(HR_PHONE_TOO_SHORT), "too_short");
	assert_string_equal(hr_phone_reason_name(HR_PHONE_NEED_REGION), "region_needed");
	assert_string_equal(hr_phone_reason_name(HR_PHONE_INTERNAL), "internal");
	assert_string_equal(hr_phone_reason_name((enum hr_phone_reason)99), "?");
	assert_string_equal(hr_phone_type_name(HR_PHONE_TYPE_MOBILE), "mobile");
	assert_string_equal(hr_phone_type_name(HR_PHONE_TYPE_FIXED_LINE_OR_MOBILE),
	                    "fixed_line_or_mobile");
	assert_string_equal(hr_phone_type_name(HR_PHONE_TYPE_VOICEMAIL), "voicemail");
	assert_string_equal(hr_phone_type_name((enum hr_phone_type) - 1), "?");
	/* Every reason has a distinct name. */
	for (int a = HR_PHONE_OK; a <= HR_PHONE_INTERNAL; a++)
		for (int b = a + 1; b <= HR_PHONE_INTERNAL; b++)
			assert_string_not_equal(hr_phone_reason_name((enum hr_phone_reason)a),
			                        hr_phone_reason_name((enum hr_phone_reason)b));
}

/* ---- concurrency ---- */

#define THREADS 4
#define PER_THREAD 10000

struct worker {
	int id;
	int wrong, valid;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int j = 0; j < PER_THREAD; j++) {
		const struct pcase *c = &cases[((size_t)w->id * 7 + (size_t)j) % NCASES];
		char e164[HR_PHONE_E164_SIZE];
		struct hr_phone_result r;
		int rc = hr_phone_normalize(c->in, case_len(c), c->region, e164, sizeof e164, &r);
		if (check_case(c, rc, e164, &r))
			w->wrong++;
		if (rc == 0)
			w->valid++;
	}
	return NULL;
}

/*
 * Four threads normalising 10,000 numbers each, every answer exact. Listed
 * first in main() so that the threads also race on the library's lazy
 * initialisation (nothing before it has called an hr_phone_ function).
 */
static void test_concurrent(void **state)
{
	(void)state;
	pthread_t th[THREADS];
	struct worker w[THREADS];
	int want_valid = 0;
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.id = i};
		for (int j = 0; j < PER_THREAD; j++)
			want_valid +=
			    cases[((size_t)i * 7 + (size_t)j) % NCASES].reason == HR_PHONE_OK;
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	int wrong = 0, valid = 0;
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		wrong += w[i].wrong;
		valid += w[i].valid;
	}
	assert_int_equal(wrong, 0);
	assert_int_equal(valid, want_valid);
	assert_true(want_valid > 0 && want_valid < THREADS * PER_THREAD);
}

/* ---------------------------------------------------------------------------
 * The fast path (phone.cc) against the library alone: the same input gives
 * the same answer, field by field, with the fast path on and off.
 * ------------------------------------------------------------------------- */

struct answer {
	int rc;
	char e164[HR_PHONE_E164_SIZE];
	struct hr_phone_result r;
};

static void both_ways(const char *in, const char *region, struct answer *fast,
                      struct answer *slow)
{
	memset(fast, 0, sizeof *fast);
	memset(slow, 0, sizeof *slow);
	hr_phone_fast_path(true);
	fast->rc = hr_phone_normalize(in, strlen(in), region, fast->e164, sizeof fast->e164,
	                              &fast->r);
	hr_phone_fast_path(false);
	slow->rc = hr_phone_normalize(in, strlen(in), region, slow->e164, sizeof slow->e164,
	                              &slow->r);
	hr_phone_fast_path(true);
}

/* 1 when the two answers differ (and says how). */
static int differs(const char *in, const char *region)
{
	struct answer f, s;
	both_ways(in, region, &f, &s);
	if (f.rc == s.rc && !strcmp(f.e164, s.e164) && f.r.reason == s.r.reason &&
	    f.r.type == s.r.type && f.r.source == s.r.source &&
	    f.r.country_code == s.r.country_code && !strcmp(f.r.region, s.r.region) &&
	    !strcmp(f.r.text, s.r.text))
		return 0;
	fprintf(stderr,
	        "fast path differs on '%s' (region %s): fast rc %d %s %s type %d src %d cc %d "
	        "'%s' | library rc %d %s %s type %d src %d cc %d '%s'\n",
	        in, region ? region : "-", f.rc, f.e164, f.r.region, (int)f.r.type,
	        (int)f.r.source, f.r.country_code, f.r.text, s.rc, s.e164, s.r.region,
	        (int)s.r.type, (int)s.r.source, s.r.country_code, s.r.text);
	return 1;
}

/*
 * Every region's example number of every type libphonenumber has, written
 * four ways: +E.164, its digits without '+' (the spreadsheet rule, no
 * region), "00" and the digits, and the national significant number with
 * the region (the library parses, the fast path types it).
 */
static void test_fast_path_examples(void **state)
{
	(void)state;
	int numbers = 0, wrong = 0;
	char region[3] = "";
	for (char a = 'A'; a <= 'Z'; a++)
		for (char b = 'A'; b <= 'Z'; b++) {
			region[0] = a;
			region[1] = b;
			if (!hr_phone_region_known(region))
				continue;
			for (int type = 0; type <= 9; type++) {
				char e164[HR_PHONE_E164_SIZE], in[40];
				int rc = hr_phone_example(region, type, e164, sizeof e164);
				if (rc == HR_ENOTFOUND)
					continue;
				assert_int_equal(rc, 0);
				numbers++;
				wrong += differs(e164, NULL);
				wrong += differs(e164 + 1, NULL);
				snprintf(in, sizeof in, "00%s", e164 + 1);
				wrong += differs(in, NULL);
				wrong += differs(e164, region);
				struct hr_phone_result r;
				char out[HR_PHONE_E164_SIZE];
				assert_int_equal(hr_phone_normalize(e164, strlen(e164), NULL, out,
				                                    sizeof out, &r),
				                 0);
				/* The national significant number after the country code. */
				char cc[8];
				snprintf(cc, sizeof cc, "%d", r.country_code);
				wrong += differs(e164 + 1 + strlen(cc), region);
			}
		}
	assert_int_equal(wrong, 0);
	assert_int_equal(numbers, 1350); /* libphonenumber 8.12.57: 245 regions */
}

/* Random digits after random country codes (mostly invalid, many valid),
 * with and without '+', and as national numbers of random regions. */
static void test_fast_path_random(void **state)
{
	(void)state;
	static const char *const regions[] = {"GB", "US", "DE", "FR", "IN", "BR", "NG", "AU",
	                                      "CN", "IT", "JE", "CA", "RU", "KZ", "SG", "MX"};
	static const char *const ccs[] = {"1",  "44",  "49", "33", "91",  "55",  "234", "61",
	                                  "86", "39",  "7",  "65", "52",  "353", "971", "880",
	                                  "62", "254", "20", "90", "800", "882", "979", "999"};
	uint64_t x = 0x9E3779B97F4A7C15u;
	int wrong = 0, valid = 0;
	const int n = 20000;
	for (int i = 0; i < n; i++) {
		char in[40];
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		const char *cc = ccs[x % (sizeof ccs / sizeof ccs[0])];
		int len = 4 + (int)((x >> 8) % 12);
		int at = snprintf(in, sizeof in, "%s%s", (x >> 20) & 1 ? "+" : "", cc);
		for (int k = 0; k < len; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			in[at++] = (char)('0' + x % 10);
		}
		in[at] = '\0';
		const char *region = (x >> 30) & 1 ? regions[(x >> 32) % 16] : NULL;
		wrong += differs(in, region);
		char out[HR_PHONE_E164_SIZE];
		valid += hr_phone_normalize(in, strlen(in), region, out, sizeof out, NULL) == 0;
	}
	assert_int_equal(wrong, 0);
	assert_int_equal(valid, 1381); /* so valid numbers were compared too */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_concurrent), /* first: see its comment */
	    cmocka_unit_test(test_cases),         cmocka_unit_test(test_input_bound),
	    cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_region_known),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_fast_path_examples), cmocka_unit_test(test_fast_path_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
