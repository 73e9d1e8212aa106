/*
 * phone.c - see phone.h.
 */
#include "core/phone.h"

int phone_e164(const char *in, bool with_plus, char out[HR_ADDR_MAX], struct hr_err *err)
{
	char digits[16];
	size_t n = 0;
	bool seen_plus = false;
	if (!in)
		return hr_fail(err, HR_EINVAL, "to", "to is required");
	for (const char *p = in; *p; p++) {
		char c = *p;
		if (c == ' ' || c == '-' || c == '(' || c == ')' || c == '.')
			continue;
		if (c == '+' && !seen_plus && n == 0) {
			seen_plus = true;
			continue;
		}
		if (c < '0' || c > '9')
			return hr_fail(err, HR_EINVAL, "to",
			               "to must be a phone number in E.164 format (+ and 8 to 15 "
			               "digits; spaces, dashes, dots and parentheses are ignored)");
		if (n == 15)
			return hr_fail(err, HR_EINVAL, "to", "to has more than 15 digits");
		digits[n++] = c;
	}
	if (n < 8)
		return hr_fail(err, HR_EINVAL, "to", "to must have 8 to 15 digits");
	if (digits[0] == '0')
		return hr_fail(err, HR_EINVAL, "to", "to must start with a country code, not 0");
	digits[n] = '\0';
	if (with_plus) {
		out[0] = '+';
		hr_strlcpy(out + 1, digits, HR_ADDR_MAX - 1);
	} else {
		hr_strlcpy(out, digits, HR_ADDR_MAX);
	}
	return 0;
}
