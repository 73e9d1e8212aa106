/*
 * phone.h - phone numbers in E.164 (ITU-T E.164: a country code and up to 15
 * digits in all), as WhatsApp, Twilio and RBM want them.
 */
#ifndef HR_PHONE_H
#define HR_PHONE_H

#include <stdbool.h>

#include "herald.h"

/*
 * Normalises "+44 7911 123456", "(44) 7911-123456", "44.7911.123456" to
 * "+447911123456" (with_plus) or "447911123456" (WhatsApp's wa_id form):
 * spaces, dashes, dots and parentheses are dropped, one leading '+' is
 * allowed, 8 to 15 digits, no leading 0 (no country code starts with 0).
 * HR_EINVAL naming field "to" otherwise.
 */
int phone_e164(const char *in, bool with_plus, char out[HR_ADDR_MAX], struct hr_err *err);

#endif
