/*
 * segments.h - SMS segment counting (GSM 03.38 / 3GPP TS 23.038).
 *
 * GSM-7: the basic set costs one septet a character, the extension table
 * (^ { } \ [ ~ ] | € and form feed) two (escape + character); 160 septets fit
 * one segment, 153 per segment when concatenated (the UDH takes 7), and an
 * escape pair never straddles two segments. Anything outside GSM-7 makes the
 * whole message UCS-2: UTF-16 code units, 70 in one segment, 67 per segment
 * when concatenated, and a surrogate pair (an emoji) never split.
 */
#ifndef HR_SEGMENTS_H
#define HR_SEGMENTS_H

#include "herald.h"

enum sms_encoding { SMS_GSM7 = 0, SMS_UCS2 = 1 };

struct sms_info {
	enum sms_encoding encoding;
	int units;    /* septets (GSM-7) or UTF-16 code units (UCS-2) */
	int segments; /* 1 for an empty message */
};

/* HR_EINVAL (field "text") if text is not valid UTF-8. */
int sms_segments(const char *text, struct sms_info *out, struct hr_err *err);

#endif
