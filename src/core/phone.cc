/*
 * phone.cc - hr_phone_*: see phone.h for what is accepted and why.
 *
 * A C++17 shim over libphonenumber's PhoneNumberUtil. The rest of Herald is
 * C, so nothing C++ crosses the interface: every entry point catches every
 * exception, and every std::string lives and dies inside one call (results
 * are copied into the caller's fixed buffers).
 *
 * Our own scanner runs before libphonenumber sees anything. libphonenumber's
 * Parse() is lenient by design (it skips text before the number, maps
 * letters to keypad digits, reads RFC 3966 parameters); for an upload that
 * leniency turns wrong columns into wrong numbers. So the scanner bounds the
 * input, refuses anything but digits, '+' and separators, recognises
 * extensions, and hands libphonenumber only "+digits" or "digits".
 *
 * Thread safety: PhoneNumberUtil::GetInstance() is a leaky singleton behind
 * pthread_once in Debian's build (its headers pick singleton_posix.h on Linux
 * when neither I18N_PHONENUMBERS_USE_BOOST nor _USE_STDMUTEX is defined, and
 * the shared library exports Singleton<PhoneNumberUtil>::once_control_, so
 * ours and the library's agree; do not define either macro). Its const
 * methods are documented thread-safe: the regular-expression cache they
 * share is behind a lock. Our own state (the region table) is written once
 * under g_init_mu before g_ready is released.
 */
#include "core/phone.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <phonenumbers/phonemetadata.pb.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

/* The compiled-in metadata every PhoneNumberUtil loads (libphonenumber's
 * metadata.h, exported by the library but not installed by Debian). */
namespace i18n::phonenumbers
{
int metadata_size();
const void *metadata_get();
} // namespace i18n::phonenumbers

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

namespace
{

/* More digits than any number with an international prefix and a national
 * prefix can have (3 + 1 + 17); a longer run is refused without parsing. */
constexpr size_t kMaxDigits = 24;

std::mutex g_init_mu;
std::atomic<bool> g_ready{false};
const PhoneNumberUtil *g_util;
bool g_regions[26][26]; /* [A-Z][A-Z]: libphonenumber has metadata for it */

int init_locked()
{
	std::lock_guard<std::mutex> lock(g_init_mu);
	if (g_ready.load(std::memory_order_relaxed))
		return 0;
	const PhoneNumberUtil *u = PhoneNumberUtil::GetInstance();
	if (!u)
		return HR_EINTERNAL;
	std::set<std::string> regions;
	u->GetSupportedRegions(&regions);
	for (const std::string &r : regions)
		if (r.size() == 2 && r[0] >= 'A' && r[0] <= 'Z' && r[1] >= 'A' && r[1] <= 'Z')
			g_regions[r[0] - 'A'][r[1] - 'A'] = true;
	g_util = u;
	g_ready.store(true, std::memory_order_release);
	return 0;
}

void set_text(struct hr_phone_result *res, const char *text)
{
	size_t n = strlen(text);
	if (n >= sizeof res->text)
		n = sizeof res->text - 1;
	memcpy(res->text, text, n);
	res->text[n] = '\0';
}

/* Sets the reason and its text (the fixed one for the reason, unless the
 * caller gives a more specific one) and returns HR_EINVAL. */
int refuse(struct hr_phone_result *res, enum hr_phone_reason r, const char *text = nullptr)
{
	static const char *const fixed[] = {
	    "",
	    "no phone number",
	    "longer than 64 characters, not a phone number",
	    "not a phone number",
	    "not a phone number (contains letters)",
	    "in scientific notation, so digits are lost: format the column as text",
	    "has an extension: a message cannot be sent to an extension",
	    "default region needed for a local number (or write it with + and the country code)",
	    "unknown default region",
	    "invalid country code",
	    "too short",
	    "too long",
	    "wrong number of digits",
	    "local number: the area code is missing",
	    "not a valid number",
	    "internal error",
	};
	static_assert(sizeof fixed / sizeof fixed[0] == HR_PHONE_INTERNAL + 1,
	              "one text per reason");
	res->reason = r;
	set_text(res, text ? text : fixed[r]);
	return r == HR_PHONE_INTERNAL ? HR_EINTERNAL : HR_EINVAL;
}

bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Width of the whitespace at p (< e): 1 for ASCII blanks, 2 for the UTF-8
 * no-break space C2 A0, 0 for anything else. */
size_t space_width(const unsigned char *p, const unsigned char *e)
{
	if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '\v' || *p == '\f')
		return 1;
	if (*p == 0xC2 && e - p >= 2 && p[1] == 0xA0)
		return 2;
	return 0;
}

bool starts_nocase(const unsigned char *p, const unsigned char *e, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(e - p) < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)word[i])
			return false;
	}
	return true;
}

/* "4.47911E+11", "4E+11", "4.5e11": what a spreadsheet shows (and a CSV
 * export writes) for a long number in a General-formatted cell. */
bool is_scientific(const unsigned char *p, const unsigned char *e)
{
	const unsigned char *q = p;
	while (q < e && is_digit(*q))
		q++;
	if (q == p)
		return false;
	if (q < e && *q == '.') {
		const unsigned char *f = ++q;
		while (q < e && is_digit(*q))
			q++;
		if (q == f)
			return false;
	}
	if (q == e || (*q != 'e' && *q != 'E'))
		return false;
	q++;
	if (q < e && *q == '+')
		q++;
	const unsigned char *x = q;
	while (q < e && is_digit(*q))
		q++;
	return q == e && q > x;
}

/* If an extension starts at p (just after the number's digits): its marker,
 * then separators, then only digits and blanks to the end. */
bool is_extension(const unsigned char *p, const unsigned char *e)
{
	/* Longest first, so "extension" is not read as "ext" + "ension". */
	static const char *const markers[] = {";ext=", "extension", "extn", "ext", "x"};
	const char *const *m = std::find_if(std::begin(markers), std::end(markers),
	                                    [&](const char *w) { return starts_nocase(p, e, w); });
	if (m == std::end(markers))
		return false;
	const unsigned char *q = p + strlen(*m);
	while (q < e && (*q == '.' || *q == ':' || *q == ' ' || *q == '\t'))
		q++;
	size_t digits = 0;
	for (; q < e; q++) {
		if (is_digit(*q))
			digits++;
		else if (*q != ' ' && *q != '\t')
			return false;
	}
	return digits > 0;
}

struct scanned {
	char digits[kMaxDigits + 1];
	size_t n;
	bool plus;
};

/*
 * The strict scanner described in phone.h: trims, drops "tel:" and a
 * spreadsheet's ".0", keeps the digits and whether a '+' came first.
 * Returns HR_PHONE_OK or the reason (with res's text set) to refuse.
 */
int scan(const unsigned char *p, const unsigned char *e, struct scanned *out,
         struct hr_phone_result *res)
{
	size_t w;
	while (p < e && (w = space_width(p, e)) > 0)
		p += w;
	while (p < e) {
		if (space_width(e - 1, e) == 1)
			e--;
		else if (e - p >= 2 && e[-2] == 0xC2 && e[-1] == 0xA0)
			e -= 2;
		else
			break;
	}
	if (p == e)
		return refuse(res, HR_PHONE_EMPTY);
	if (starts_nocase(p, e, "tel:"))
		p += 4;
	if (is_scientific(p, e))
		return refuse(res, HR_PHONE_SCIENTIFIC);
	if (e - p >= 9 && e[-2] == '.' && e[-1] == '0') {
		const unsigned char *q = p;
		while (q < e - 2 && is_digit(*q))
			q++;
		if (q == e - 2)
			e -= 2;
	}

	out->n = 0;
	out->plus = false;
	while (p < e) {
		unsigned char c = *p;
		if (is_digit(c)) {
			if (out->n == kMaxDigits)
				return refuse(res, HR_PHONE_TOO_LONG);
			out->digits[out->n++] = (char)c;
			p++;
		} else if (c == '+' && !out->plus && out->n == 0) {
			out->plus = true;
			p++;
		} else if (c == '-' || c == '.' || c == '(' || c == ')' || c == '/') {
			p++;
		} else if ((w = space_width(p, e)) > 0) {
			p += w;
		} else if (out->n > 0 && is_extension(p, e)) {
			return refuse(res, HR_PHONE_EXTENSION);
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return refuse(res, HR_PHONE_LETTERS);
		} else if (c > ' ' && c < 0x7f) {
			char text[64];
			snprintf(text, sizeof text, "not a phone number (unexpected '%c')", c);
			return refuse(res, HR_PHONE_NOT_A_NUMBER, text);
		} else {
			/* Control characters, NUL, any other non-ASCII byte (so
			 * invalid UTF-8 too): never part of a number. */
			return refuse(res, HR_PHONE_NOT_A_NUMBER,
			              "not a phone number (contains a character other than digits, "
			              "spaces and + - . ( ) /)");
		}
	}
	if (out->n == 0)
		return refuse(res, HR_PHONE_NOT_A_NUMBER, "not a phone number (no digits)");
	out->digits[out->n] = '\0';
	return HR_PHONE_OK;
}

enum hr_phone_type type_of(PhoneNumberUtil::PhoneNumberType t)
{
	switch (t) {
	case PhoneNumberUtil::FIXED_LINE:
		return HR_PHONE_TYPE_FIXED_LINE;
	case PhoneNumberUtil::MOBILE:
		return HR_PHONE_TYPE_MOBILE;
	case PhoneNumberUtil::FIXED_LINE_OR_MOBILE:
		return HR_PHONE_TYPE_FIXED_LINE_OR_MOBILE;
	case PhoneNumberUtil::TOLL_FREE:
		return HR_PHONE_TYPE_TOLL_FREE;
	case PhoneNumberUtil::PREMIUM_RATE:
		return HR_PHONE_TYPE_PREMIUM_RATE;
	case PhoneNumberUtil::SHARED_COST:
		return HR_PHONE_TYPE_SHARED_COST;
	case PhoneNumberUtil::VOIP:
		return HR_PHONE_TYPE_VOIP;
	case PhoneNumberUtil::PERSONAL_NUMBER:
		return HR_PHONE_TYPE_PERSONAL;
	case PhoneNumberUtil::PAGER:
		return HR_PHONE_TYPE_PAGER;
	case PhoneNumberUtil::UAN:
		return HR_PHONE_TYPE_UAN;
	case PhoneNumberUtil::VOICEMAIL:
		return HR_PHONE_TYPE_VOICEMAIL;
	case PhoneNumberUtil::UNKNOWN:
		break;
	}
	return HR_PHONE_TYPE_UNKNOWN;
}

enum hr_phone_source source_of(PhoneNumber::CountryCodeSource s)
{
	switch (s) {
	case PhoneNumber::FROM_NUMBER_WITH_PLUS_SIGN:
		return HR_PHONE_SRC_PLUS;
	case PhoneNumber::FROM_NUMBER_WITH_IDD:
		return HR_PHONE_SRC_IDD;
	case PhoneNumber::FROM_NUMBER_WITHOUT_PLUS_SIGN:
		return HR_PHONE_SRC_DIGITS_PLUS;
	default:
		return HR_PHONE_SRC_NATIONAL;
	}
}

/*
 * The reason a parsed but invalid number is refused, with the region (or
 * country code, for non-geographic ones) it was judged against.
 */
int refuse_invalid(const PhoneNumberUtil *u, const PhoneNumber &pn, const char *default_region,
                   struct hr_phone_result *res)
{
	res->country_code = pn.country_code();
	std::string region;
	if (default_region && u->GetCountryCodeForRegion(default_region) == pn.country_code())
		region = default_region;
	else
		u->GetRegionCodeForCountryCode(pn.country_code(), &region);
	char where[32];
	if (region.size() == 2)
		snprintf(where, sizeof where, "region %s", region.c_str());
	else
		snprintf(where, sizeof where, "country code +%d", (int)pn.country_code());

	char text[sizeof res->text];
	switch (u->IsPossibleNumberWithReason(pn)) {
	case PhoneNumberUtil::INVALID_COUNTRY_CODE:
		return refuse(res, HR_PHONE_INVALID_COUNTRY_CODE);
	case PhoneNumberUtil::TOO_SHORT:
		return refuse(res, HR_PHONE_TOO_SHORT);
	case PhoneNumberUtil::TOO_LONG:
		return refuse(res, HR_PHONE_TOO_LONG);
	case PhoneNumberUtil::INVALID_LENGTH:
		snprintf(text, sizeof text, "wrong number of digits for %s", where);
		return refuse(res, HR_PHONE_WRONG_LENGTH, text);
	case PhoneNumberUtil::IS_POSSIBLE_LOCAL_ONLY:
		snprintf(text, sizeof text, "local number: the area code is missing (%s)", where);
		return refuse(res, HR_PHONE_LOCAL_ONLY, text);
	case PhoneNumberUtil::IS_POSSIBLE:
		break;
	}
	snprintf(text, sizeof text, "not a valid number for %s", where);
	return refuse(res, HR_PHONE_INVALID, text);
}

int refuse_parse_error(PhoneNumberUtil::ErrorType pe, struct hr_phone_result *res)
{
	switch (pe) {
	case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
		return refuse(res, HR_PHONE_INVALID_COUNTRY_CODE);
	case PhoneNumberUtil::TOO_LONG_NSN:
		return refuse(res, HR_PHONE_TOO_LONG);
	default:
		/* NOT_A_NUMBER: the scanner only passes digits, so what is left
		 * for libphonenumber to refuse is fewer than its minimum of 2;
		 * TOO_SHORT_AFTER_IDD, TOO_SHORT_NSN. */
		return refuse(res, HR_PHONE_TOO_SHORT);
	}
}

/* ---------------------------------------------------------------------------
 * The fast path: GetNumberType() of an international number ("+digits")
 * over libphonenumber's own metadata, matched with PCRE2.
 *
 * Why: a million-row upload spends ~16 us of CPU per number in
 * libphonenumber (phone_bench), most of it around the regular
 * expressions rather than in them: each match looks its pattern up in a
 * cache keyed by the pattern's text (hashing hundreds of bytes) under one
 * process-wide mutex, converts the number to UTF-16 and builds an ICU
 * matcher. That mutex also makes a second thread slower, not faster (two
 * threads: 1.0x the rows per second at 1.8x the CPU). Here each region's
 * patterns are compiled once (PCRE2, JIT) and matched without a lock, so
 * validation costs well under a microsecond and spreads over threads.
 *
 * What is replicated is the few steps of Parse() + GetNumberType() for
 * input of the form "+digits" (libphonenumber 8.12, phonenumberutil.cc):
 * the country code is the shortest 1-3 digit prefix that names one
 * (ExtractCountryCode); the rest is the national significant number unless
 * the country's national_prefix_for_parsing matches at its start (then
 * Parse() may strip it: not replicated, the library decides); the region
 * is the only one of the code, else the first of the code's regions whose
 * leading_digits match the start or whose patterns accept the number
 * (GetRegionCodeForNumberFromRegionList); the type is the first of
 * premium rate, toll free, shared cost, VoIP, personal, pager, UAN,
 * voicemail, fixed line / mobile whose possible lengths include the
 * length and whose pattern matches in full, behind the general
 * description (GetNumberTypeHelper). Anything else (no '+', a
 * non-geographic code, a national prefix that may be stripped, an
 * invalid number, whose reason the library words) goes to the library.
 * So the fast path only ever says "valid, of this type" where the library
 * would; tests/unit/test_phone.c checks that on every region's example
 * numbers and on a million random numbers.
 * ------------------------------------------------------------------------- */
} // namespace

namespace fast
{

enum { D_GENERAL, D_PREMIUM, D_TOLL_FREE, D_SHARED, D_VOIP, D_PERSONAL, D_PAGER,
       D_UAN, D_VOICEMAIL, D_FIXED, D_MOBILE, D_COUNT };

struct Desc {
	pcre2_code *re = nullptr; /* whole-number match; NULL: no pattern */
	bool any_length = true;   /* no possible lengths listed           */
	uint32_t lengths = 0;     /* else bit n: length n possible        */
};

struct Region {
	char code[3] = "";
	const i18n::phonenumbers::PhoneMetadata *md = nullptr;
	std::once_flag once;
	bool ok = false; /* every pattern compiled */
	bool same_mobile_fixed = false;
	pcre2_code *leading = nullptr; /* leading_digits, anchored at the start */
	pcre2_code *npp = nullptr;     /* national_prefix_for_parsing, same    */
	Desc d[D_COUNT];
};

constexpr int kCodes = 1000;

struct Table {
	i18n::phonenumbers::PhoneMetadataCollection all;
	std::vector<Region> regions;
	std::vector<Region *> by_cc[kCodes]; /* libphonenumber's order; empty: none */
	bool nongeo[kCodes] = {};
	~Table()
	{
		for (Region &r : regions) {
			pcre2_code_free(r.leading);
			pcre2_code_free(r.npp);
			for (Desc &d : r.d)
				pcre2_code_free(d.re);
		}
	}
};

std::once_flag g_once;
Table *g_table; /* NULL when the fast path could not be set up */
std::atomic<bool> g_enabled{true};

pcre2_code *compile(const std::string &pattern, bool whole)
{
	std::string p = whole ? "(?:" + pattern + ")\\z" : pattern;
	int code;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
	                               PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, &code, &off, nullptr);
	/* JIT is an optimisation: a pattern it cannot take is matched by the
	 * interpreter, with the same answer. */
	if (re)
		(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

bool set_desc(Desc &d, const i18n::phonenumbers::PhoneNumberDesc &pd)
{
	/* A type the region lacks lists -1 (no length is possible); lengths
	 * past 31 cannot occur (a national number has at most 17 digits). */
	d.any_length = pd.possible_length_size() == 0;
	for (int i = 0; i < pd.possible_length_size(); i++) {
		int n = pd.possible_length(i);
		if (n >= 0 && n <= 31)
			d.lengths |= 1u << n;
	}
	if (pd.national_number_pattern().empty())
		return true; /* matches nothing (RegexBasedMatcher) */
	return (d.re = compile(pd.national_number_pattern(), true)) != nullptr;
}

void compile_region(Region *r)
{
	const i18n::phonenumbers::PhoneMetadata &m = *r->md;
	const i18n::phonenumbers::PhoneNumberDesc *pd[D_COUNT] = {
	    &m.general_desc(), &m.premium_rate(), &m.toll_free(), &m.shared_cost(),
	    &m.voip(),         &m.personal_number(), &m.pager(), &m.uan(),
	    &m.voicemail(),    &m.fixed_line(),   &m.mobile()};
	bool ok = true;
	for (int i = 0; ok && i < D_COUNT; i++)
		ok = set_desc(r->d[i], *pd[i]);
	if (ok && m.has_leading_digits())
		ok = (r->leading = compile(m.leading_digits(), false)) != nullptr;
	if (ok && !m.national_prefix_for_parsing().empty())
		ok = (r->npp = compile(m.national_prefix_for_parsing(), false)) != nullptr;
	r->same_mobile_fixed = m.same_mobile_and_fixed_line_pattern();
	r->ok = ok;
}

void build()
{
	try {
		auto t = std::make_unique<Table>();
		if (!t->all.ParseFromArray(i18n::phonenumbers::metadata_get(),
		                           i18n::phonenumbers::metadata_size()))
			return;
		t->regions = std::vector<Region>(static_cast<size_t>(t->all.metadata_size()));
		std::map<std::string, Region *> by_id;
		for (int i = 0; i < t->all.metadata_size(); i++) {
			Region &r = t->regions[static_cast<size_t>(i)];
			r.md = &t->all.metadata(i);
			const std::string &id = r.md->id();
			if (id.size() == 2) {
				memcpy(r.code, id.c_str(), 3);
				by_id[id] = &r;
			}
		}
		std::set<int> codes;
		g_util->GetSupportedCallingCodes(&codes);
		for (int cc : codes) {
			if (cc <= 0 || cc >= kCodes)
				continue;
			std::list<std::string> list;
			g_util->GetRegionCodesForCountryCallingCode(cc, &list);
			std::vector<Region *> v;
			bool geo = !list.empty();
			for (const std::string &id : list) {
				auto it = by_id.find(id);
				if (it == by_id.end()) {
					geo = false; /* "001": non-geographic, the library's */
					break;
				}
				v.push_back(it->second);
			}
			if (geo)
				t->by_cc[cc] = std::move(v);
			else
				t->nongeo[cc] = true;
		}
		g_table = t.release();
	} catch (...) {
		g_table = nullptr; /* the library does everything */
	}
}

struct MatchData {
	pcre2_match_data *md = nullptr;
	~MatchData() { pcre2_match_data_free(md); }
};
thread_local MatchData tl_md;

bool match(const pcre2_code *re, const char *s, size_t n)
{
	return pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s), n, 0, 0, tl_md.md, nullptr) >= 0;
}

/* IsNumberMatchingDesc() */
bool matches(const Desc &d, const char *nsn, size_t n)
{
	if (!d.any_length && (n > 31 || !(d.lengths & (1u << n))))
		return false;
	return d.re && match(d.re, nsn, n);
}

/* GetNumberTypeHelper() */
PhoneNumberUtil::PhoneNumberType type_in(const Region &r, const char *nsn, size_t n)
{
	if (!matches(r.d[D_GENERAL], nsn, n))
		return PhoneNumberUtil::UNKNOWN;
	static const PhoneNumberUtil::PhoneNumberType in_order[] = {
	    PhoneNumberUtil::PREMIUM_RATE, PhoneNumberUtil::TOLL_FREE,
	    PhoneNumberUtil::SHARED_COST,  PhoneNumberUtil::VOIP,
	    PhoneNumberUtil::PERSONAL_NUMBER, PhoneNumberUtil::PAGER,
	    PhoneNumberUtil::UAN,          PhoneNumberUtil::VOICEMAIL};
	for (int i = D_PREMIUM; i <= D_VOICEMAIL; i++)
		if (matches(r.d[i], nsn, n))
			return in_order[i - D_PREMIUM];
	if (matches(r.d[D_FIXED], nsn, n))
		return r.same_mobile_fixed || matches(r.d[D_MOBILE], nsn, n)
		           ? PhoneNumberUtil::FIXED_LINE_OR_MOBILE
		           : PhoneNumberUtil::FIXED_LINE;
	if (!r.same_mobile_fixed && matches(r.d[D_MOBILE], nsn, n))
		return PhoneNumberUtil::MOBILE;
	return PhoneNumberUtil::UNKNOWN;
}

Region *ready(Region *r)
{
	std::call_once(r->once, compile_region, r);
	return r->ok ? r : nullptr;
}

/* The table, ready to match on this thread; NULL when the fast path is
 * off or could not be set up (then the library decides everything). */
const Table *table()
{
	if (!g_enabled.load(std::memory_order_relaxed))
		return nullptr;
	std::call_once(g_once, build);
	if (!tl_md.md && !(tl_md.md = pcre2_match_data_create(1, nullptr)))
		return nullptr;
	return g_table;
}

int type_of_nsn(int cc, const char *nsn, size_t len, PhoneNumberUtil::PhoneNumberType *type,
                const char **region, int *cc_out);

/*
 * digits: what followed the '+'. 1 and the answer when the number is valid
 * (*type, the region and the country code); 0 when the library must
 * decide.
 */
int classify(const char *digits, size_t n, PhoneNumberUtil::PhoneNumberType *type,
             const char **region, int *cc_out)
{
	const Table *t = table();
	if (!t || n < 4 || digits[0] == '0')
		return 0;
	int cc = 0;
	size_t i = 0;
	while (i < 3) {
		cc = cc * 10 + (digits[i++] - '0');
		if (!t->by_cc[cc].empty() || t->nongeo[cc])
			break;
		if (i == 3)
			return 0; /* no country code: the library words it */
	}
	if (t->nongeo[cc])
		return 0;
	const char *nsn = digits + i;
	size_t len = n - i;
	if (len < 2 || len > 17)
		return 0;
	Region *main = ready(t->by_cc[cc][0]);
	if (!main || (main->npp && match(main->npp, nsn, len)))
		return 0;
	return type_of_nsn(cc, nsn, len, type, region, cc_out);
}

/*
 * GetNumberType() and GetRegionCodeForNumber() of a parsed number: its
 * country code and national significant number. 1 when it is valid (with
 * its type and region), 0 when invalid or not for the fast path.
 */
int type_of_nsn(int cc, const char *nsn, size_t len, PhoneNumberUtil::PhoneNumberType *type,
                const char **region, int *cc_out)
{
	const Table *t = table();
	if (!t || cc <= 0 || cc >= kCodes || t->by_cc[cc].empty() || len > 31)
		return 0;
	const std::vector<Region *> &list = t->by_cc[cc];
	Region *main = ready(list[0]);
	if (!main)
		return 0;
	Region *found = nullptr;
	if (list.size() == 1) {
		found = main;
	} else {
		for (Region *r : list) {
			if (!ready(r))
				return 0;
			if (r->leading ? match(r->leading, nsn, len)
			               : type_in(*r, nsn, len) != PhoneNumberUtil::UNKNOWN) {
				found = r;
				break;
			}
		}
	}
	if (!found)
		return 0;
	PhoneNumberUtil::PhoneNumberType ty = type_in(*found, nsn, len);
	if (ty == PhoneNumberUtil::UNKNOWN)
		return 0;
	*type = ty;
	*region = found->code;
	*cc_out = cc;
	return 1;
}

} // namespace fast

namespace
{

/* GetNumberType() of a parsed number: the fast path's answer when it has
 * one (then *region is the number's region), else the library's. */
PhoneNumberUtil::PhoneNumberType number_type(const PhoneNumberUtil *u, const PhoneNumber &pn,
                                             const char **region)
{
	*region = nullptr;
	std::string nsn;
	u->GetNationalSignificantNumber(pn, &nsn);
	PhoneNumberUtil::PhoneNumberType t;
	int cc;
	if (fast::type_of_nsn(pn.country_code(), nsn.data(), nsn.size(), &t, region, &cc))
		return t;
	*region = nullptr;
	return u->GetNumberType(pn);
}

/* hr_phone_normalize() after its arguments are checked and the library is
 * loaded; may throw (std::string, protobuf), the caller catches. */
int normalize(const unsigned char *in, size_t len, const char *default_region, char *e164,
              struct hr_phone_result *res)
{
	const PhoneNumberUtil *u = g_util;
	const char *region = default_region && *default_region ? default_region : nullptr;
	if (region && !hr_phone_region_known(region)) {
		char text[64];
		bool printable = strlen(region) <= 3;
		for (const char *c = region; printable && *c; c++)
			printable = *c > ' ' && *c < 0x7f && *c != '\'';
		if (printable)
			snprintf(text, sizeof text, "unknown default region '%s'", region);
		return refuse(res, HR_PHONE_UNKNOWN_REGION, printable ? text : nullptr);
	}
	if (len > HR_PHONE_INPUT_MAX)
		return refuse(res, HR_PHONE_INPUT_TOO_LONG);
	struct scanned s;
	if (scan(in, in + len, &s, res) != HR_PHONE_OK)
		return HR_EINVAL;

	std::string text;
	bool idd_rule = false;
	if (s.plus) {
		text = "+";
		text += s.digits;
	} else if (region) {
		text = s.digits;
	} else if (s.n > 2 && s.digits[0] == '0' && s.digits[1] == '0') {
		text = "+";
		text += s.digits + 2;
		idd_rule = true;
	} else {
		return refuse(res, HR_PHONE_NEED_REGION);
	}

	/*
	 * Valid means GetNumberType() != UNKNOWN: in libphonenumber 8.12
	 * IsValidNumber() is GetRegionCodeForNumber() + GetNumberTypeHelper()
	 * != UNKNOWN, and GetNumberType() is the same two steps returning the
	 * type, so calling both (as the library's own examples do) matches
	 * every pattern twice: a third of the time per row. Checked against
	 * IsValidNumber() on every region's example numbers and 600,000
	 * random ones, no difference.
	 */
	if (s.plus || idd_rule) {
		const char *d = s.digits + (idd_rule ? 2 : 0);
		size_t dn = s.n - (idd_rule ? 2 : 0);
		PhoneNumberUtil::PhoneNumberType ft;
		const char *freg;
		int fcc;
		if (dn + 1 < HR_PHONE_E164_SIZE && fast::classify(d, dn, &ft, &freg, &fcc)) {
			e164[0] = '+';
			memcpy(e164 + 1, d, dn);
			e164[dn + 1] = '\0';
			res->type = type_of(ft);
			res->source = idd_rule ? HR_PHONE_SRC_IDD : HR_PHONE_SRC_PLUS;
			res->country_code = fcc;
			memcpy(res->region, freg, 3);
			return 0;
		}
	}

	const auto unknown = PhoneNumberUtil::UNKNOWN;
	PhoneNumber pn;
	PhoneNumberUtil::ErrorType pe = u->ParseAndKeepRawInput(text, region ? region : "ZZ", &pn);
	const char *pn_region = nullptr; /* the fast path's answer, if it had one */
	PhoneNumberUtil::PhoneNumberType type =
	    pe == PhoneNumberUtil::NO_PARSING_ERROR ? number_type(u, pn, &pn_region) : unknown;
	enum hr_phone_source source =
	    idd_rule ? HR_PHONE_SRC_IDD : source_of(pn.country_code_source());
	/* The second reading (phone.h): the digits as country code and number,
	 * or after "00" where that is not the region's own prefix. */
	const char *intl = nullptr;
	if (type == unknown && region && !s.plus)
		intl = s.digits[0] != '0' ? s.digits : s.digits[1] == '0' ? s.digits + 2 : nullptr;
	if (intl && *intl) {
		PhoneNumber alt;
		if (u->Parse("+" + std::string(intl), "ZZ", &alt) ==
		    PhoneNumberUtil::NO_PARSING_ERROR) {
			const char *alt_region;
			PhoneNumberUtil::PhoneNumberType t = number_type(u, alt, &alt_region);
			if (t != unknown) {
				pn = alt;
				pn_region = alt_region;
				type = t;
				source =
				    intl == s.digits ? HR_PHONE_SRC_DIGITS_PLUS : HR_PHONE_SRC_IDD;
			}
		}
	}
	if (type == unknown) {
		if (pe != PhoneNumberUtil::NO_PARSING_ERROR)
			return refuse_parse_error(pe, res);
		return refuse_invalid(u, pn, region, res);
	}
	if (pn.has_extension()) /* the scanner refuses them first */
		return refuse(res, HR_PHONE_EXTENSION);

	std::string out, found;
	u->Format(pn, PhoneNumberUtil::E164, &out);
	if (out.size() >= HR_PHONE_E164_SIZE) {
		/* libphonenumber's metadata accepts some national numbers longer
		 * than E.164 allows (German fixed lines with the extension dialled
		 * straight on: +49 89 3713647685492); no provider takes them. */
		res->country_code = pn.country_code();
		return refuse(res, HR_PHONE_TOO_LONG,
		              "too long (more than 15 digits with the country code)");
	}
	if (pn_region)
		found = pn_region;
	else
		u->GetRegionCodeForNumber(pn, &found);
	res->type = type_of(type);
	res->source = source;
	res->country_code = pn.country_code();
	if (found.size() == 2)
		memcpy(res->region, found.c_str(), 3);
	memcpy(e164, out.c_str(), out.size() + 1);
	return 0;
}

} // namespace

extern "C" int hr_phone_init(void)
{
	if (g_ready.load(std::memory_order_acquire))
		return 0;
	try {
		return init_locked();
	} catch (const std::bad_alloc &) {
		return HR_ENOMEM;
	} catch (...) {
		return HR_EINTERNAL;
	}
}

extern "C" void hr_phone_fast_path(bool on)
{
	fast::g_enabled.store(on, std::memory_order_relaxed);
}

extern "C" int hr_phone_example(const char *region, int type, char *e164, size_t size)
{
	if (!e164 || size < HR_PHONE_E164_SIZE || !hr_phone_region_known(region) || type < 0 ||
	    type > PhoneNumberUtil::VOICEMAIL)
		return HR_EINVAL;
	e164[0] = '\0';
	try {
		PhoneNumber pn;
		if (!g_util->GetExampleNumberForType(
		        region, static_cast<PhoneNumberUtil::PhoneNumberType>(type), &pn))
			return HR_ENOTFOUND;
		std::string out;
		g_util->Format(pn, PhoneNumberUtil::E164, &out);
		if (out.size() >= size)
			return HR_ENOTFOUND;
		memcpy(e164, out.c_str(), out.size() + 1);
		return 0;
	} catch (const std::bad_alloc &) {
		return HR_ENOMEM;
	} catch (...) {
		return HR_EINTERNAL;
	}
}

extern "C" bool hr_phone_region_known(const char *region)
{
	/* Each byte is checked before the next is read: never past a NUL. */
	if (!region || region[0] < 'A' || region[0] > 'Z' || region[1] < 'A' || region[1] > 'Z' ||
	    region[2] != '\0')
		return false;
	if (hr_phone_init() != 0)
		return false;
	return g_regions[region[0] - 'A'][region[1] - 'A'];
}

extern "C" int hr_phone_normalize(const char *input, size_t len, const char *default_region,
                                  char *e164, size_t e164_size, struct hr_phone_result *res)
{
	struct hr_phone_result ignored;
	if (!res)
		res = &ignored;
	memset(res, 0, sizeof *res);
	if (e164 && e164_size > 0)
		e164[0] = '\0';
	if (!e164 || e164_size < HR_PHONE_E164_SIZE || (!input && len > 0))
		return refuse(res, HR_PHONE_INTERNAL);
	int rc = hr_phone_init();
	if (rc != 0) {
		refuse(res, HR_PHONE_INTERNAL);
		return rc;
	}
	try {
		rc = normalize(reinterpret_cast<const unsigned char *>(input), len, default_region,
		               e164, res);
	} catch (const std::bad_alloc &) {
		rc = HR_ENOMEM;
	} catch (...) {
		rc = HR_EINTERNAL;
	}
	if (rc == HR_ENOMEM || rc == HR_EINTERNAL) {
		/* Whatever normalize() had filled in belongs to no answer. */
		memset(res, 0, sizeof *res);
		refuse(res, HR_PHONE_INTERNAL);
		e164[0] = '\0';
	}
	return rc;
}

/*
 * The names take what a C caller passes, which may be out of the enum's
 * range (a reason stored by a newer Herald, read back by an older one). In
 * C++ merely reading such an enum is undefined (UBSan's -fsanitize=enum
 * traps it), so the value is copied out as the int it is in C.
 */
static int enum_value(const void *e)
{
	int v;
	static_assert(sizeof(enum hr_phone_reason) == sizeof v &&
	                  sizeof(enum hr_phone_type) == sizeof v,
	              "C enums are ints here");
	memcpy(&v, e, sizeof v);
	return v;
}

extern "C" const char *hr_phone_reason_name(enum hr_phone_reason r)
{
	switch (enum_value(&r)) {
	case HR_PHONE_OK:
		return "ok";
	case HR_PHONE_EMPTY:
		return "empty";
	case HR_PHONE_INPUT_TOO_LONG:
		return "input_too_long";
	case HR_PHONE_NOT_A_NUMBER:
		return "not_a_number";
	case HR_PHONE_LETTERS:
		return "letters";
	case HR_PHONE_SCIENTIFIC:
		return "scientific_notation";
	case HR_PHONE_EXTENSION:
		return "extension";
	case HR_PHONE_NEED_REGION:
		return "region_needed";
	case HR_PHONE_UNKNOWN_REGION:
		return "unknown_region";
	case HR_PHONE_INVALID_COUNTRY_CODE:
		return "invalid_country_code";
	case HR_PHONE_TOO_SHORT:
		return "too_short";
	case HR_PHONE_TOO_LONG:
		return "too_long";
	case HR_PHONE_WRONG_LENGTH:
		return "wrong_length";
	case HR_PHONE_LOCAL_ONLY:
		return "local_only";
	case HR_PHONE_INVALID:
		return "invalid";
	case HR_PHONE_INTERNAL:
		return "internal";
	}
	return "?";
}

extern "C" const char *hr_phone_type_name(enum hr_phone_type t)
{
	switch (enum_value(&t)) {
	case HR_PHONE_TYPE_UNKNOWN:
		return "unknown";
	case HR_PHONE_TYPE_FIXED_LINE:
		return "fixed_line";
	case HR_PHONE_TYPE_MOBILE:
		return "mobile";
	case HR_PHONE_TYPE_FIXED_LINE_OR_MOBILE:
		return "fixed_line_or_mobile";
	case HR_PHONE_TYPE_TOLL_FREE:
		return "toll_free";
	case HR_PHONE_TYPE_PREMIUM_RATE:
		return "premium_rate";
	case HR_PHONE_TYPE_SHARED_COST:
		return "shared_cost";
	case HR_PHONE_TYPE_VOIP:
		return "voip";
	case HR_PHONE_TYPE_PERSONAL:
		return "personal";
	case HR_PHONE_TYPE_PAGER:
		return "pager";
	case HR_PHONE_TYPE_UAN:
		return "uan";
	case HR_PHONE_TYPE_VOICEMAIL:
		return "voicemail";
	}
	return "?";
}
