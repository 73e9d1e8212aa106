/*
 * pricing.h - what a campaign will cost, estimated before it is sent: the
 * prices of the config's `pricing:` section (README "Configuration"), per
 * channel, country (the E.164 number's calling code) and, for WhatsApp, the
 * message's category; and an upload's estimate built from its valid rows.
 *
 *   pricing:
 *     currency: EUR                 # ISO 4217, three capital letters
 *     sms:      {default: 0.05, "44": 0.035, "91": 0.002}   # per segment
 *     whatsapp:                     # per message, by category
 *       marketing:      {default: 0.06, "44": 0.0529}
 *       utility:        {default: 0.02}
 *       authentication: {default: 0.03}
 *       service:        {default: 0}
 *     rcs:      {default: 0.01}     # per message
 *     telegram: {default: 0}
 *
 * A price table maps a calling code (1 to 3 digits, as a string) or
 * "default" (every other code) to a price of 0 to 1000 in the currency; a
 * price is kept in millionths (integers: sums never drift). A message with
 * no price (its channel, category or country not in the tables) is counted
 * as unpriced, never as free.
 */
#ifndef HR_PRICING_H
#define HR_PRICING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald.h"

/* WhatsApp's conversation categories, as Meta prices them. */
enum wa_category {
	WA_MARKETING = 0,
	WA_UTILITY = 1,
	WA_AUTHENTICATION = 2,
	WA_SERVICE = 3,
	WA__COUNT
};
const char *wa_category_name(enum wa_category c);            /* "marketing", ... */
int wa_category_parse(const char *s, enum wa_category *out); /* 0 or HR_EINVAL */

struct pricing;

/* Reads the `pricing` node (NULL: none configured, *out NULL and 0).
 * HR_EINVAL naming the key ("pricing.sms.44") for anything wrong. The
 * result is immutable and thread-safe to read; pricing_free() it. */
int pricing_load(json_t *node, struct pricing **out, struct hr_err *err);
void pricing_free(struct pricing *p);
const char *pricing_currency(const struct pricing *p);

/* The price in millionths of one unit (an SMS segment, or a message) on
 * channel to calling code cc, category for WhatsApp (ignored elsewhere):
 * the code's own price, else the table's default. false when there is none
 * (or p is NULL). */
bool pricing_price(const struct pricing *p, const char *channel, int cc, enum wa_category category,
                   int64_t *micro);

/*
 * An upload's estimate, row by row (pricing_estimate_add for each valid row
 * that will become a message), then as JSON. At most PRICING_GROUPS_MAX
 * (channel, country, category) groups are kept apart; rows past that go to
 * one group of country 0 ("other", still priced by the default). Not
 * thread-safe: one per upload.
 */
#define PRICING_GROUPS_MAX 512
struct pricing_estimate;
struct pricing_estimate *pricing_estimate_new(const struct pricing *p);
void pricing_estimate_free(struct pricing_estimate *e);
/* segments: the message's SMS segments (0 elsewhere; a unit is then one
 * message). category: WhatsApp's, or -1 elsewhere. HR_ENOMEM. */
int pricing_estimate_add(struct pricing_estimate *e, const char *channel, int cc, int category,
                         int segments);
/*
 * {"priced": true, "currency", "total", "messages", "sms_segments",
 *  "unpriced_messages", "by": [{"channel", "country_code", "category"?,
 *  "messages", "units", "unit_price", "cost"}], "category_assumed"?}
 * or, with no pricing configured, {"priced": false, "note": "no prices
 * configured", "messages", "sms_segments", "by": [... without prices]}.
 * Amounts are numbers in the currency (millionths exactly, as decimals).
 * category_note, when not NULL, is added as "category_note". New reference,
 * NULL on OOM.
 */
json_t *pricing_estimate_json(const struct pricing_estimate *e, const char *category_note);

#endif
