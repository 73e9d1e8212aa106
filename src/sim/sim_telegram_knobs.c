/*
 * sim_telegram_knobs.c - the Telegram simulator's knobs (sim.telegram.*,
 * POST /sim/telegram/config) and per-chat scripts. A snapshot is immutable
 * once built and refcounted: a new one is swapped in under knobs_lock, so a
 * request reads its snapshot without a lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim/sim_int.h"
#include "sim/sim_knobtab.h"
#include "sim/sim_telegram_int.h"

void sim_tg_knobs_unref(struct tg_knobs *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	for (size_t i = 0; i < k->nscripts; i++) {
		free(k->scripts[i].press);
		free(k->scripts[i].reply);
	}
	free(k->scripts);
	free(k);
}

struct tg_knobs *sim_tg_knobs_get(struct sim_tg *t)
{
	pthread_mutex_lock(&t->knobs_lock);
	struct tg_knobs *k = t->knobs;
	atomic_fetch_add(&k->refs, 1);
	pthread_mutex_unlock(&t->knobs_lock);
	return k;
}

/* clang-format off */
#define TKN(f, lo, hi) {#f, offsetof(struct tg_knobs, f), lo, hi}
/* clang-format on */
static const struct sim_knob_num tg_knob_nums[] = {
    TKN(latency_ms, 0, 600000),
    TKN(latency_jitter_ms, 0, 600000),
    TKN(rate_429, 0, 1),
    TKN(retry_after, 1, 3600),
    TKN(rate_5xx, 0, 1),
    TKN(fail_rate, 0, 1),
    TKN(answer_delay_ms, 0, 86400000),
    TKN(webhook_retry_s, 0, 7 * 86400),
};
#undef TKN

/* A string or an integer (YAML turns unquoted ids into numbers) as text. */
static bool tg_as_text(json_t *v, char *out, size_t n)
{
	if (json_is_integer(v))
		snprintf(out, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_string(v) && *json_string_value(v) && strlen(json_string_value(v)) < n)
		hr_strlcpy(out, json_string_value(v), n);
	else
		return false;
	return true;
}

static int tg_scripts_set(struct tg_knobs *k, json_t *v, const char *field, struct hr_err *err)
{
	if (!json_is_object(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be a map of chat id to script",
		               field);
	for (size_t i = 0; i < k->nscripts; i++) {
		free(k->scripts[i].press);
		free(k->scripts[i].reply);
	}
	free(k->scripts);
	k->nscripts = 0;
	k->scripts = NULL;
	if (json_object_size(v) == 0)
		return 0;
	if (!(k->scripts = calloc(json_object_size(v), sizeof *k->scripts)))
		return hr_fail(err, HR_ENOMEM, field, "out of memory");
	const char *chat;
	json_t *o;
	json_object_foreach(v, chat, o)
	{
		char f[160];
		snprintf(f, sizeof f, "%s.%.40s", field, chat);
		if (!*chat || strlen(chat) >= HR_ADDR_MAX || !json_is_object(o))
			return hr_fail(err, HR_EINVAL, f, "%s must be an object keyed by a chat id",
			               f);
		struct tg_script *sc = &k->scripts[k->nscripts++];
		hr_strlcpy(sc->chat, chat, sizeof sc->chat);
		const char *key;
		json_t *x;
		json_object_foreach(o, key, x)
		{
			snprintf(f, sizeof f, "%s.%.40s.%.16s", field, chat, key);
			if (strcmp(key, "blocked") == 0 && json_is_boolean(x)) {
				sc->blocked = json_is_true(x);
			} else if (strcmp(key, "migrate_to") == 0) {
				if (!tg_as_text(x, sc->migrate_to, sizeof sc->migrate_to))
					return hr_fail(err, HR_EINVAL, f, "%s must be a chat id",
					               f);
			} else if ((strcmp(key, "press") == 0 || strcmp(key, "reply") == 0) &&
			           json_is_string(x) && *json_string_value(x)) {
				char **dst = key[0] == 'p' ? &sc->press : &sc->reply;
				free(*dst);
				if (!(*dst = strdup(json_string_value(x))))
					return hr_fail(err, HR_ENOMEM, f, "out of memory");
			} else {
				return hr_fail(err, HR_EINVAL, f,
				               "%s: a script is blocked (bool), migrate_to (chat "
				               "id), press or reply (non-empty strings)",
				               f);
			}
		}
	}
	return 0;
}

static struct tg_knobs *tg_knobs_copy(const struct tg_knobs *base)
{
	struct tg_knobs *k = malloc(sizeof *k);
	if (!k)
		return NULL;
	memcpy(k, base, sizeof *k);
	atomic_init(&k->refs, 1);
	k->scripts = base->nscripts ? calloc(base->nscripts, sizeof *k->scripts) : NULL;
	k->nscripts = 0;
	if (base->nscripts && !k->scripts) {
		free(k);
		return NULL;
	}
	for (size_t i = 0; i < base->nscripts; i++) {
		struct tg_script *d = &k->scripts[k->nscripts++];
		*d = base->scripts[i];
		d->press = base->scripts[i].press ? strdup(base->scripts[i].press) : NULL;
		d->reply = base->scripts[i].reply ? strdup(base->scripts[i].reply) : NULL;
		if ((base->scripts[i].press && !d->press) ||
		    (base->scripts[i].reply && !d->reply)) {
			sim_tg_knobs_unref(k);
			return NULL;
		}
	}
	return k;
}

/* A copy of base with obj's keys applied; errors name "<prefix><key>". */
int sim_tg_knobs_apply(const struct tg_knobs *base, json_t *obj, const char *prefix,
                       struct tg_knobs **out, struct hr_err *err)
{
	*out = NULL;
	if (obj && !json_is_null(obj) && !json_is_object(obj))
		return hr_fail(err, HR_EINVAL, prefix, "%s must be an object", prefix);
	struct tg_knobs *k = tg_knobs_copy(base);
	if (!k)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	const char *key;
	json_t *v;
	int rc = 0;
	json_object_foreach(obj, key, v)
	{
		char field[96];
		snprintf(field, sizeof field, "%s%.40s", prefix, key);
		const struct sim_knob_num *kn = sim_knob_num_find(
		    tg_knob_nums, sizeof tg_knob_nums / sizeof tg_knob_nums[0], key);
		if (kn) {
			if ((rc = sim_knob_num_set(kn, k, v, field, err)))
				break;
		} else if (strcmp(key, "seed") == 0) {
			if ((rc = sim_knob_seed(v, field, &k->has_seed, &k->seed, err)))
				break;
		} else if (strcmp(key, "recipients") == 0) {
			if ((rc = tg_scripts_set(k, v, field, err)))
				break;
		} else {
			rc = hr_fail(err, HR_EINVAL, field, "%s is not a known telegram knob",
			             field);
			break;
		}
	}
	if (rc) {
		sim_tg_knobs_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

json_t *sim_tg_knobs_json(const struct tg_knobs *k)
{
	json_t *o = json_object();
	sim_knob_nums_json(o, tg_knob_nums, sizeof tg_knob_nums / sizeof tg_knob_nums[0], k);
	json_object_set_new(o, "seed",
	                    k->has_seed ? json_integer((json_int_t)k->seed) : json_null());
	json_t *r = json_object();
	for (size_t i = 0; i < k->nscripts; i++) {
		const struct tg_script *sc = &k->scripts[i];
		json_t *x = json_object();
		if (sc->blocked)
			json_object_set_new(x, "blocked", json_true());
		if (sc->migrate_to[0])
			json_object_set_new(x, "migrate_to", json_string(sc->migrate_to));
		if (sc->press)
			json_object_set_new(x, "press", json_string(sc->press));
		if (sc->reply)
			json_object_set_new(x, "reply", json_string(sc->reply));
		json_object_set_new(r, sc->chat, x);
	}
	json_object_set_new(o, "recipients", r);
	return o;
}

/* The script for a chat ("@names" compare without case), or NULL. */
const struct tg_script *sim_tg_script_find(const struct tg_knobs *k, const char *chat)
{
	for (size_t i = 0; i < k->nscripts; i++) {
		const char *c = k->scripts[i].chat;
		if (chat[0] == '@' ? strcasecmp(c, chat) == 0 : strcmp(c, chat) == 0)
			return &k->scripts[i];
	}
	return NULL;
}
