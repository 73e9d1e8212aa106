/*
 * phone.h - phone numbers in E.164 (ITU-T E.164: a country code and up to 15
 * digits in all), as WhatsApp, Twilio and RBM want them.
 *
 * Two layers:
 *   phone_e164()         a strict syntactic check of a number already in
 *                        international form (phone.c), used by the channel
 *                        adapters on every send.
 *   hr_phone_normalize() reads what people type into forms and spreadsheets
 *                        (national numbers, punctuation, "00" prefixes,
 *                        digits without '+') and validates it against
 *                        libphonenumber's per-country metadata (phone.cc, a
 *                        C++ shim over Debian's libphonenumber 8.12), with a
 *                        reason a business user can act on when it fails.
 */
#ifndef HR_PHONE_H
#define HR_PHONE_H

#include <stdbool.h>
#include <stddef.h>

#include "herald.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Normalises "+44 7911 123456", "(44) 7911-123456", "44.7911.123456" to
 * "+447911123456" (with_plus) or "447911123456" (WhatsApp's wa_id form):
 * spaces, dashes, dots and parentheses are dropped, one leading '+' is
 * allowed, 8 to 15 digits, no leading 0 (no country code starts with 0).
 * HR_EINVAL naming field "to" otherwise.
 */
int phone_e164(const char *in, bool with_plus, char out[HR_ADDR_MAX], struct hr_err *err);

/* ---------------------------------------------------------------------------
 * hr_phone_*: parsing and validation through libphonenumber.
 * ------------------------------------------------------------------------- */

/* Longer input is refused before it is parsed (a phone number with every
 * separator a person might type fits in well under 64 bytes). */
#define HR_PHONE_INPUT_MAX 64
/* Size of the E.164 output buffer: '+', at most 15 digits, NUL. */
#define HR_PHONE_E164_SIZE 17

/*
 * Why a number was refused. The values may be stored with a campaign's rows:
 * never renumber, only append. hr_phone_reason_name() gives a stable code
 * ("too_short") for APIs and exports; the result's text is for people.
 */
enum hr_phone_reason {
	HR_PHONE_OK = 0,
	HR_PHONE_EMPTY = 1,                /* nothing but whitespace             */
	HR_PHONE_INPUT_TOO_LONG = 2,       /* more than HR_PHONE_INPUT_MAX bytes */
	HR_PHONE_NOT_A_NUMBER = 3,         /* a character no number contains,
	                                      a misplaced '+', no digits at all */
	HR_PHONE_LETTERS = 4,              /* "0800 FLOWERS", "n/a", "unknown"   */
	HR_PHONE_SCIENTIFIC = 5,           /* "4.47911E+11": digits already lost */
	HR_PHONE_EXTENSION = 6,            /* "x123", "ext. 123", ";ext=123"     */
	HR_PHONE_NEED_REGION = 7,          /* a national number, no default region */
	HR_PHONE_UNKNOWN_REGION = 8,       /* the default region is not one we know */
	HR_PHONE_INVALID_COUNTRY_CODE = 9, /* "+999 ..."                         */
	HR_PHONE_TOO_SHORT = 10,
	HR_PHONE_TOO_LONG = 11,
	HR_PHONE_WRONG_LENGTH = 12, /* between the shortest and longest, but no
	                               number of the region has this length */
	HR_PHONE_LOCAL_ONLY = 13,   /* a local number: the area code is missing */
	HR_PHONE_INVALID = 14,      /* right length, but no such number exists */
	HR_PHONE_INTERNAL = 15,     /* out of memory, a bad argument, a bug    */
};

/* What libphonenumber's metadata says the (valid) number is. */
enum hr_phone_type {
	HR_PHONE_TYPE_UNKNOWN = 0,
	HR_PHONE_TYPE_FIXED_LINE = 1,
	HR_PHONE_TYPE_MOBILE = 2,
	HR_PHONE_TYPE_FIXED_LINE_OR_MOBILE = 3, /* NANPA (US, CA, ...) and others
	                                           where the number cannot tell */
	HR_PHONE_TYPE_TOLL_FREE = 4,
	HR_PHONE_TYPE_PREMIUM_RATE = 5,
	HR_PHONE_TYPE_SHARED_COST = 6,
	HR_PHONE_TYPE_VOIP = 7,
	HR_PHONE_TYPE_PERSONAL = 8,
	HR_PHONE_TYPE_PAGER = 9,
	HR_PHONE_TYPE_UAN = 10, /* "universal access" company numbers */
	HR_PHONE_TYPE_VOICEMAIL = 11,
};

/* How the country code was found: a bulk upload can report how many rows
 * were read as national numbers of the default region, and which ones were
 * read by the digits-without-'+' rule (hr_phone_normalize). */
enum hr_phone_source {
	HR_PHONE_SRC_NONE = 0,        /* not found (the number was refused)  */
	HR_PHONE_SRC_PLUS = 1,        /* written with '+'                    */
	HR_PHONE_SRC_IDD = 2,         /* after an international prefix: "00", or
	                                 the default region's own ("011" in US) */
	HR_PHONE_SRC_NATIONAL = 3,    /* a national number of the default region */
	HR_PHONE_SRC_DIGITS_PLUS = 4, /* digits without '+' read as country code
	                                 and number                           */
};

struct hr_phone_result {
	enum hr_phone_reason reason;
	enum hr_phone_type type;     /* valid numbers only, else UNKNOWN      */
	enum hr_phone_source source; /* valid numbers only, else NONE         */
	int country_code;            /* 44; 0 when none was found             */
	char region[3];              /* "GB", "JE", "CA": the region the number
	                                belongs to (valid numbers only); "" for
	                                non-geographic ones (+800, +882, ...) */
	char text[96];               /* the reason in English for a business
	                                user ("too short", "not a valid number for
	                                region GB"); "" when valid              */
};

/*
 * Loads libphonenumber's metadata (a few milliseconds, once) so the first
 * number a request or upload parses does not pay for it, and so a process
 * can fail at startup rather than on a row. Optional: every hr_phone_
 * function calls it. Thread-safe and idempotent; a failed attempt (out of
 * memory) is retried by the next call. 0, HR_ENOMEM or HR_EINTERNAL.
 */
int hr_phone_init(void);

/* True when `region` is an upper-case ISO 3166 alpha-2 code libphonenumber
 * has metadata for ("GB", "US", "JE"); false for "gb", "ZZ", "UK", "001",
 * NULL. Thread-safe, allocation-free after hr_phone_init(). */
bool hr_phone_region_known(const char *region);

/*
 * Reads `len` bytes of `input` (need not be NUL-terminated; embedded NULs
 * are refused) as a phone number and writes its E.164 form ("+447400123456")
 * into e164, which must hold HR_PHONE_E164_SIZE bytes. `default_region`
 * ("GB"; NULL or "" for none; must pass hr_phone_region_known) is the
 * country a number without a country code belongs to: per tenant or per
 * upload. `res` (NULL to ignore) gets the reason, and for a valid number its
 * type, region, country code and how that code was found.
 *
 * Returns 0 for a valid number; HR_EINVAL when the input is refused (reason
 * and text say why; e164 is ""); HR_ENOMEM, or HR_EINTERNAL for a bad
 * argument (NULL e164, e164_size < HR_PHONE_E164_SIZE, NULL input with
 * len > 0) or a bug, with reason HR_PHONE_INTERNAL. Never writes e164 half.
 * Thread-safe; allocates nothing that outlives the call.
 *
 * What is accepted, in order:
 *   - surrounding whitespace (including the no-break space U+00A0 that
 *     copying from web pages brings) and a "tel:" prefix are dropped;
 *   - "4.47911E+11" (a spreadsheet's display of a long number, its last
 *     digits already lost) is refused as HR_PHONE_SCIENTIFIC, and a trailing
 *     ".0" after 7 or more digits ("447400123456.0", a float column written
 *     out by pandas and friends) is dropped: a dotted number never ends in a
 *     one-digit group;
 *   - then only digits, one '+' before the first digit, and the separators
 *     space, tab, no-break space, - . ( ) / are allowed. An extension after
 *     the number ("x123", "ext 123", "ext. 123", "extension 123", ";ext=123")
 *     is HR_PHONE_EXTENSION: a message cannot be delivered to one, and
 *     dropping it silently would send to the switchboard. Any other letter is
 *     HR_PHONE_LETTERS (vanity numbers such as "0800 FLOWERS" included:
 *     libphonenumber would map letters to digits, but in an upload a letter
 *     means the wrong column or a note, not a keypad);
 *   - with '+', the digits are a country code and number, whatever the
 *     default region. "+44 (0) 7400 123456" is understood (the national
 *     prefix in brackets is dropped);
 *   - without '+' and with a default region, the number is read as that
 *     region reads it: a national number ("07400 123456" in GB), after the
 *     region's international prefix ("00 44 ..." in GB, "011 44 ..." in US:
 *     "011" is not an international prefix in GB or IN, where it begins
 *     national numbers, e.g. Delhi's 011), or starting with the region's own
 *     country code ("447400123456" in GB);
 *   - the spreadsheet rule: if that reading is not a valid number, the input
 *     had no '+', and its first digit is not 0, the digits are read once more
 *     as country code and number ("4915123456789" with default GB becomes
 *     +4915123456789, a German mobile). Excel stores a number typed as
 *     +4915123456789 as the integer 4915123456789, and a CSV of it has no
 *     '+'. The national reading always wins when it is valid, so a valid
 *     local number is never reinterpreted; the rule only rescues rows that
 *     would otherwise be refused, and such a row's source is
 *     HR_PHONE_SRC_DIGITS_PLUS so an upload can report it. A national
 *     number starts with 0 in most countries that have a trunk prefix, so
 *     "0..." is not read this way; but "00..." that the region did not take
 *     as its international prefix ("00 44 ..." in US, whose prefix is 011)
 *     is read once more as "+" and what follows: no country's area codes
 *     begin with 0, so "00" never starts a national number. "011" gets no
 *     such second reading (Sheffield's 0114 is a national number in GB). If
 *     both readings fail, the reason given is the national reading's;
 *   - without '+' and without a default region, "00" is taken as the
 *     international prefix (ITU's recommended one, used in most of the
 *     world); anything else is HR_PHONE_NEED_REGION.
 * The result must be a valid number by libphonenumber's metadata (not only
 * a plausible length) with at most 15 digits (E.164's limit, which the
 * metadata exceeds for some German lines), of any type: whether a fixed line or premium number
 * may receive a message is the caller's decision (res->type).
 */
int hr_phone_normalize(const char *input, size_t len, const char *default_region, char *e164,
                       size_t e164_size, struct hr_phone_result *res);

/* The fast path for "+digits" numbers (phone.cc: libphonenumber's own
 * metadata matched with PCRE2) is on by default; tests and phone_bench
 * switch it off to compare with the library alone. Not for production. */
void hr_phone_fast_path(bool on);

/* libphonenumber's example number of a region (hr_phone_region_known) and
 * type (its PhoneNumberType: 0 fixed line ... 9 voicemail) in E.164, for
 * tests. 0, HR_ENOTFOUND (the region has none of that type), HR_EINVAL. */
int hr_phone_example(const char *region, int type, char *e164, size_t size);

/* Stable lower-case codes: "ok", "too_short", ...; "mobile", "fixed_line",
 * "fixed_line_or_mobile", ...; "?" for a value out of range. */
const char *hr_phone_reason_name(enum hr_phone_reason r);
const char *hr_phone_type_name(enum hr_phone_type t);

#ifdef __cplusplus
}
#endif

#endif
