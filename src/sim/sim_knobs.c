/*
 * sim_knobs.c - the simulator's knobs (error rates, delays, duplicates...)
 * and the reproducible random stream they are drawn with.
 *
 * Knobs are immutable once built: POST /sim/config builds a new snapshot and
 * swaps the pointer, so request threads read them without a lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_int.h"
#include "sim/sim_knobtab.h"

struct sim_knobs *sim_knobs_default(void)
{
	struct sim_knobs *k = calloc(1, sizeof *k);
	if (!k)
		return NULL;
	atomic_init(&k->refs, 1);
	k->sent_delay_ms = 10;
	k->delivered_delay_ms = 50;
	k->read_delay_ms = 100;
	k->read_rate = 1.0;
	k->webhook_batch = 1;
	k->webhook_retry_s = 60;
	return k;
}

void sim_knobs_ref(struct sim_knobs *k)
{
	atomic_fetch_add(&k->refs, 1);
}

static void recipients_free(struct sim_wa_recipient *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].reply);
		free(r[i].press);
	}
	free(r);
}

void sim_knobs_unref(struct sim_knobs *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	for (size_t i = 0; i < k->nfail; i++)
		free(k->fail_recipients[i]);
	free(k->fail_recipients);
	recipients_free(k->recipients, k->nrecipients);
	free(k);
}

/* The numeric knobs: name, where it lives, allowed range. */
/* clang-format off */
#define KN(f, lo, hi) {#f, offsetof(struct sim_knobs, f), lo, hi}
/* clang-format on */
static const struct sim_knob_num knob_nums[] = {
    KN(latency_ms, 0, 600000),
    KN(latency_jitter_ms, 0, 600000),
    KN(fail_rate, 0, 1),
    KN(rate_429, 0, 1),
    KN(rate_5xx, 0, 1),
    KN(sent_delay_ms, 0, 86400000),
    KN(delivered_delay_ms, 0, 86400000),
    KN(read_delay_ms, 0, 86400000),
    KN(read_rate, 0, 1),
    KN(dup_rate, 0, 1),
    KN(reorder_rate, 0, 1),
    KN(failed_after_sent_rate, 0, 1),
    KN(drop_rate, 0, 1),
    KN(webhook_retry_s, 0, 7 * 86400),
};
#undef KN

static int knobs_copy_fail(struct sim_knobs *k, char **list, size_t n)
{
	k->fail_recipients = n ? calloc(n, sizeof *k->fail_recipients) : NULL;
	if (n && !k->fail_recipients)
		return HR_ENOMEM;
	for (k->nfail = 0; k->nfail < n; k->nfail++) {
		k->fail_recipients[k->nfail] = strdup(list[k->nfail]);
		if (!k->fail_recipients[k->nfail])
			return HR_ENOMEM;
	}
	return 0;
}

static int knobs_set_fail(struct sim_knobs *k, json_t *v, const char *field, struct hr_err *err)
{
	if (!json_is_array(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be a list of phone numbers", field);
	for (size_t i = 0; i < k->nfail; i++)
		free(k->fail_recipients[i]);
	free(k->fail_recipients);
	k->fail_recipients = NULL;
	k->nfail = 0;
	size_t n = json_array_size(v);
	if (n && !(k->fail_recipients = calloc(n, sizeof *k->fail_recipients)))
		return hr_fail(err, HR_ENOMEM, field, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		char digits[HR_ADDR_MAX];
		if (json_is_integer(e))
			snprintf(digits, sizeof digits, "%lld", (long long)json_integer_value(e));
		else if (json_is_string(e))
			sim_wire_digits(json_string_value(e), digits, sizeof digits);
		else
			digits[0] = '\0';
		if (!digits[0])
			return hr_fail(err, HR_EINVAL, field, "%s[%zu] must be a phone number",
			               field, i);
		if (!(k->fail_recipients[k->nfail] = strdup(digits)))
			return hr_fail(err, HR_ENOMEM, field, "out of memory");
		k->nfail++;
	}
	return 0;
}

/* Deep-copies base's recipient overrides into k (which has none yet). */
static int recipients_copy(struct sim_knobs *k, const struct sim_knobs *base)
{
	if (!base->nrecipients)
		return 0;
	k->recipients = calloc(base->nrecipients, sizeof *k->recipients);
	if (!k->recipients)
		return HR_ENOMEM;
	for (; k->nrecipients < base->nrecipients; k->nrecipients++) {
		const struct sim_wa_recipient *from = &base->recipients[k->nrecipients];
		struct sim_wa_recipient *to = &k->recipients[k->nrecipients];
		*to = *from;
		to->reply = from->reply ? strdup(from->reply) : NULL;
		to->press = from->press ? strdup(from->press) : NULL;
		if ((from->reply && !to->reply) || (from->press && !to->press)) {
			k->nrecipients++;
			return HR_ENOMEM;
		}
	}
	return 0;
}

/* One "<wa id>": {"error": N, "reply": "...", "press": "..."} entry. */
static int recipient_parse(struct sim_wa_recipient *r, const char *addr, json_t *v,
                           const char *field, struct hr_err *err)
{
	char f[160];
	memset(r, 0, sizeof *r);
	r->delivered_delay_ms = -1;
	sim_wire_digits(addr, r->to, sizeof r->to);
	if (strlen(r->to) < 5)
		return hr_fail(err, HR_EINVAL, field, "%s: '%s' is not a phone number", field,
		               addr);
	if (!json_is_object(v))
		return hr_fail(err, HR_EINVAL, field,
		               "%s.%s must be an object with error, reply or press", field, r->to);
	const char *key;
	json_t *x;
	json_object_foreach(v, key, x)
	{
		snprintf(f, sizeof f, "%s.%s.%s", field, r->to, key);
		if (strcmp(key, "error") == 0) {
			if (!json_is_integer(x) || json_integer_value(x) <= 0 ||
			    json_integer_value(x) > 9999999)
				return hr_fail(err, HR_EINVAL, f,
				               "%s must be a Graph error code (a positive integer)",
				               f);
			r->error = (int)json_integer_value(x);
		} else if (strcmp(key, "fate") == 0) {
			const char *t = json_string_value(x);
			if (t && strcmp(t, "failed") == 0)
				r->fate = SIM_FATE_FAILED;
			else if (t && strcmp(t, "silent") == 0)
				r->fate = SIM_FATE_SILENT;
			else if (t && strcmp(t, "normal") == 0)
				r->fate = SIM_FATE_NORMAL;
			else
				return hr_fail(err, HR_EINVAL, f,
				               "%s must be \"normal\", \"failed\" or \"silent\"", f);
		} else if (strcmp(key, "delivered_delay_ms") == 0) {
			if (!json_is_number(x) || json_number_value(x) < 0 ||
			    json_number_value(x) > 86400000)
				return hr_fail(err, HR_EINVAL, f, "%s must be 0 to 86400000", f);
			r->delivered_delay_ms = json_number_value(x);
		} else if (strcmp(key, "reply") == 0 || strcmp(key, "press") == 0) {
			const char *t = json_string_value(x);
			if (!t || !*t)
				return hr_fail(err, HR_EINVAL, f, "%s must be a non-empty string",
				               f);
			char **dst = key[0] == 'r' ? &r->reply : &r->press;
			if (!(*dst = strdup(t)))
				return hr_fail(err, HR_ENOMEM, f, "out of memory");
		} else {
			return hr_fail(err, HR_EINVAL, f,
			               "%s is not known (error, reply, press, fate, "
			               "delivered_delay_ms)",
			               f);
		}
	}
	return 0;
}

/* Replaces k's recipient overrides with those of the object v (null clears). */
static int recipients_set(struct sim_knobs *k, json_t *v, const char *field, struct hr_err *err)
{
	recipients_free(k->recipients, k->nrecipients);
	k->recipients = NULL;
	k->nrecipients = 0;
	if (json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return hr_fail(err, HR_EINVAL, field,
		               "%s must map phone numbers to {error, reply, press}", field);
	size_t n = json_object_size(v);
	if (n == 0)
		return 0;
	if (!(k->recipients = calloc(n, sizeof *k->recipients)))
		return hr_fail(err, HR_ENOMEM, field, "out of memory");
	const char *addr;
	json_t *x;
	json_object_foreach(v, addr, x)
	{
		int rc = recipient_parse(&k->recipients[k->nrecipients], addr, x, field, err);
		k->nrecipients++; /* counted even on failure: its strings are freed with k */
		if (rc)
			return rc;
	}
	return 0;
}

int sim_knobs_apply(const struct sim_knobs *base, json_t *obj, const char *prefix,
                    struct sim_knobs **out, struct hr_err *err)
{
	*out = NULL;
	if (obj && !json_is_object(obj))
		return hr_fail(err, HR_EINVAL, prefix, "%s must be an object", prefix);
	struct sim_knobs *k = malloc(sizeof *k);
	if (!k)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	memcpy(k, base, sizeof *k);
	atomic_init(&k->refs, 1);
	k->fail_recipients = NULL;
	k->nfail = 0;
	k->recipients = NULL;
	k->nrecipients = 0;
	int rc = knobs_copy_fail(k, base->fail_recipients, base->nfail);
	if (rc == 0)
		rc = recipients_copy(k, base);
	if (rc) {
		sim_knobs_unref(k);
		return hr_fail(err, rc, NULL, "out of memory");
	}
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		char field[96];
		snprintf(field, sizeof field, "%s%s", prefix, key);
		const struct sim_knob_num *kn =
		    sim_knob_num_find(knob_nums, sizeof knob_nums / sizeof knob_nums[0], key);
		double d;
		if (kn) {
			if ((rc = sim_knob_num_set(kn, k, v, field, err)))
				break;
		} else if (strcmp(key, "webhook_batch") == 0) {
			if (!sim_as_number(v, &d) || d != (int)d || d < 1 || d > 1000) {
				rc = hr_fail(err, HR_EINVAL, field,
				             "%s must be an integer in [1, 1000]", field);
				break;
			}
			k->webhook_batch = (int)d;
		} else if (strcmp(key, "seed") == 0) {
			if (json_is_null(v)) {
				k->has_seed = false;
			} else if (sim_as_number(v, &d) && d >= 0 && d == (double)(uint64_t)d) {
				k->has_seed = true;
				k->seed = json_is_integer(v) ? (uint64_t)json_integer_value(v)
				                             : (uint64_t)d;
			} else {
				rc = hr_fail(err, HR_EINVAL, field,
				             "%s must be a non-negative integer", field);
				break;
			}
		} else if (strcmp(key, "fail_recipients") == 0) {
			if ((rc = knobs_set_fail(k, v, field, err)))
				break;
		} else if (strcmp(key, "recipients") == 0) {
			if ((rc = recipients_set(k, v, field, err)))
				break;
		} else {
			rc = hr_fail(err, HR_EINVAL, field, "%s is not a known knob", field);
			break;
		}
	}
	if (rc) {
		sim_knobs_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

json_t *sim_knobs_json(const struct sim_knobs *k)
{
	json_t *o = json_object();
	sim_knob_nums_json(o, knob_nums, sizeof knob_nums / sizeof knob_nums[0], k);
	json_object_set_new(o, "webhook_batch", json_integer(k->webhook_batch));
	json_t *fr = json_array();
	for (size_t i = 0; i < k->nfail; i++)
		json_array_append_new(fr, json_string(k->fail_recipients[i]));
	json_object_set_new(o, "fail_recipients", fr);
	json_t *rs = json_object();
	for (size_t i = 0; i < k->nrecipients; i++) {
		const struct sim_wa_recipient *r = &k->recipients[i];
		json_t *e = json_object();
		if (r->error)
			json_object_set_new(e, "error", json_integer(r->error));
		if (r->reply)
			json_object_set_new(e, "reply", json_string(r->reply));
		if (r->press)
			json_object_set_new(e, "press", json_string(r->press));
		if (r->fate)
			json_object_set_new(e, "fate",
			                    json_string(r->fate == SIM_FATE_FAILED ? "failed" : "silent"));
		if (r->delivered_delay_ms >= 0)
			json_object_set_new(e, "delivered_delay_ms", json_real(r->delivered_delay_ms));
		json_object_set_new(rs, r->to, e);
	}
	json_object_set_new(o, "recipients", rs);
	json_object_set_new(o, "seed",
	                    k->has_seed ? json_integer((json_int_t)k->seed) : json_null());
	return o;
}

bool sim_knobs_fails_recipient(const struct sim_knobs *k, const char *to)
{
	char digits[HR_ADDR_MAX];
	if (!k->nfail)
		return false;
	sim_wire_digits(to, digits, sizeof digits);
	for (size_t i = 0; i < k->nfail; i++)
		if (strcmp(k->fail_recipients[i], digits) == 0)
			return true;
	return false;
}

const struct sim_wa_recipient *sim_knobs_recipient(const struct sim_knobs *k, const char *to)
{
	char digits[HR_ADDR_MAX];
	if (!k->nrecipients)
		return NULL;
	sim_wire_digits(to, digits, sizeof digits);
	for (size_t i = 0; i < k->nrecipients; i++)
		if (strcmp(k->recipients[i].to, digits) == 0)
			return &k->recipients[i];
	return NULL;
}

/* splitmix64 (Vigna): a tiny, well-mixed generator; each send gets its own. */
uint64_t sim_rng_next(struct sim_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double sim_rng_unit(struct sim_rng *r)
{
	return (double)(sim_rng_next(r) >> 11) / 9007199254740992.0;
}

void sim_rng_init(struct sim_rng *r, uint64_t seed, const unsigned char digest[32],
                  uint64_t attempt)
{
	uint64_t d = 0;
	memcpy(&d, digest, sizeof d);
	r->s = seed ^ d ^ (attempt * 0xd1342543de82ef95ULL);
	sim_rng_next(r); /* one step so nearby seeds diverge */
}
