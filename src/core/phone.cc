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
#include <mutex>
#include <new>
#include <set>
#include <string>

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

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
	const auto unknown = PhoneNumberUtil::UNKNOWN;
	PhoneNumber pn;
	PhoneNumberUtil::ErrorType pe = u->ParseAndKeepRawInput(text, region ? region : "ZZ", &pn);
	PhoneNumberUtil::PhoneNumberType type =
	    pe == PhoneNumberUtil::NO_PARSING_ERROR ? u->GetNumberType(pn) : unknown;
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
			PhoneNumberUtil::PhoneNumberType t = u->GetNumberType(alt);
			if (t != unknown) {
				pn = alt;
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
