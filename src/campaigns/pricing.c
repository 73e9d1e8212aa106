/*
 * pricing.c - the config's price tables and an upload's cost estimate
 * (pricing.h). Prices are integers in millionths of the currency, so a
 * million rows' sum is exact; JSON gets decimals made from them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaigns/pricing.h"

#define PRICE_MAX 1000.0 /* in the currency: a bigger one is a typo */
#define CODES_MAX 300    /* calling codes in one table */

static const char *const wa_names[WA__COUNT] = {
    [WA_MARKETING] = "marketing",
    [WA_UTILITY] = "utility",
    [WA_AUTHENTICATION] = "authentication",
    [WA_SERVICE] = "service",
};

const char *wa_category_name(enum wa_category c)
{
	return (unsigned)c < WA__COUNT ? wa_names[c] : "unknown";
}

int wa_category_parse(const char *s, enum wa_category *out)
{
	for (int i = 0; s && i < WA__COUNT; i++)
		if (!strcmp(s, wa_names[i])) {
			*out = (enum wa_category)i;
			return 0;
		}
	return HR_EINVAL;
}

/* One price table: a default (has_default) and prices by calling code. */
struct ptable {
	bool present, has_default;
	int64_t def;
	int n;
	int code[CODES_MAX];
	int64_t price[CODES_MAX];
};

/* The channels with a price table; WhatsApp has one per category. */
enum { P_SMS, P_RCS, P_TELEGRAM, P__PLAIN };

struct pricing {
	char currency[4];
	struct ptable plain[P__PLAIN];
	struct ptable wa[WA__COUNT];
};

static const char *const plain_names[P__PLAIN] = {"sms", "rcs", "telegram"};

static int price_of(json_t *v, const char *key, int64_t *micro, struct hr_err *err)
{
	double d = json_is_number(v) ? json_number_value(v) : -1;
	if (!json_is_number(v) || !(d >= 0 && d <= PRICE_MAX))
		return hr_fail(err, HR_EINVAL, key, "%s must be a price from 0 to %.0f", key,
		               PRICE_MAX);
	*micro = (int64_t)llround(d * 1e6);
	return 0;
}

static int table_load(json_t *node, const char *path, struct ptable *t, struct hr_err *err)
{
	char key[128];
	if (!json_is_object(node))
		return hr_fail(err, HR_EINVAL, path,
		               "%s must map calling codes (\"44\") or default to prices", path);
	t->present = true;
	const char *k;
	json_t *v;
	json_object_foreach(node, k, v)
	{
		snprintf(key, sizeof key, "%s.%s", path, k);
		int64_t micro = 0;
		int rc = price_of(v, key, &micro, err);
		if (rc)
			return rc;
		if (!strcmp(k, "default")) {
			t->has_default = true;
			t->def = micro;
			continue;
		}
		size_t len = strlen(k);
		if (len < 1 || len > 3 || strspn(k, "0123456789") != len || k[0] == '0')
			return hr_fail(
			    err, HR_EINVAL, key,
			    "%s: a key is a calling code of 1 to 3 digits (\"44\") or default",
			    key);
		if (t->n == CODES_MAX)
			return hr_fail(err, HR_EINVAL, path, "%s has more than %d calling codes",
			               path, CODES_MAX);
		t->code[t->n] = atoi(k);
		t->price[t->n++] = micro;
	}
	return 0;
}

int pricing_load(json_t *node, struct pricing **out, struct hr_err *err)
{
	*out = NULL;
	if (!node || json_is_null(node))
		return 0;
	if (!json_is_object(node))
		return hr_fail(err, HR_EINVAL, "pricing", "pricing must be a mapping");
	struct pricing *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, "pricing", "out of memory");
	int rc = 0;
	const char *k;
	json_t *v;
	json_object_foreach(node, k, v)
	{
		char path[96];
		snprintf(path, sizeof path, "pricing.%s", k);
		if (!strcmp(k, "currency")) {
			const char *c = json_string_value(v);
			if (!c || strlen(c) != 3 || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
				rc = hr_fail(err, HR_EINVAL, path,
				             "%s must be an ISO 4217 code such as EUR", path);
			else
				memcpy(p->currency, c, 4);
		} else if (!strcmp(k, "whatsapp")) {
			if (!json_is_object(v)) {
				rc = hr_fail(
				    err, HR_EINVAL, path,
				    "%s maps categories (marketing, utility, authentication,"
				    " service) to price tables",
				    path);
				break;
			}
			const char *ck;
			json_t *cv;
			json_object_foreach(v, ck, cv)
			{
				char cpath[128];
				snprintf(cpath, sizeof cpath, "%s.%s", path, ck);
				enum wa_category c;
				if (wa_category_parse(ck, &c) != 0) {
					rc = hr_fail(err, HR_EINVAL, cpath,
					             "%s: the categories are marketing, utility,"
					             " authentication and service",
					             cpath);
					break;
				}
				if ((rc = table_load(cv, cpath, &p->wa[c], err)))
					break;
			}
		} else {
			int i = 0;
			while (i < P__PLAIN && strcmp(k, plain_names[i]))
				i++;
			if (i == P__PLAIN)
				rc = hr_fail(
				    err, HR_EINVAL, path,
				    "%s: pricing has currency, sms, whatsapp, rcs and telegram",
				    path);
			else
				rc = table_load(v, path, &p->plain[i], err);
		}
		if (rc)
			break;
	}
	if (rc == 0 && !p->currency[0])
		rc = hr_fail(err, HR_EINVAL, "pricing.currency",
		             "pricing.currency is required (an ISO 4217 code such as EUR)");
	if (rc) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void pricing_free(struct pricing *p)
{
	free(p);
}

const char *pricing_currency(const struct pricing *p)
{
	return p ? p->currency : "";
}

static const struct ptable *table_for(const struct pricing *p, const char *channel,
                                      enum wa_category category)
{
	if (!p || !channel)
		return NULL;
	if (!strcmp(channel, "whatsapp"))
		return (unsigned)category < WA__COUNT ? &p->wa[category] : NULL;
	for (int i = 0; i < P__PLAIN; i++)
		if (!strcmp(channel, plain_names[i]))
			return &p->plain[i];
	return NULL;
}

bool pricing_price(const struct pricing *p, const char *channel, int cc, enum wa_category category,
                   int64_t *micro)
{
	const struct ptable *t = table_for(p, channel, category);
	if (!t || !t->present)
		return false;
	for (int i = 0; i < t->n; i++)
		if (t->code[i] == cc) {
			*micro = t->price[i];
			return true;
		}
	if (!t->has_default)
		return false;
	*micro = t->def;
	return true;
}

/* ---- an upload's estimate ---- */

struct group {
	char channel[16];
	int cc;
	int category; /* -1: not WhatsApp */
	int64_t messages, units;
};

struct pricing_estimate {
	const struct pricing *p;
	struct group *g;
	size_t n, cap;
	size_t last; /* the group found last: most rows repeat their neighbour's */
	int64_t messages, segments;
};

struct pricing_estimate *pricing_estimate_new(const struct pricing *p)
{
	struct pricing_estimate *e = calloc(1, sizeof *e);
	if (e)
		e->p = p;
	return e;
}

void pricing_estimate_free(struct pricing_estimate *e)
{
	if (!e)
		return;
	free(e->g);
	free(e);
}

static struct group *group_find(struct pricing_estimate *e, const char *channel, int cc,
                                int category)
{
	for (size_t k = 0; k < e->n; k++) {
		size_t i = k == 0 ? e->last : k - (k <= e->last);
		if (e->g[i].cc == cc && e->g[i].category == category &&
		    !strcmp(e->g[i].channel, channel)) {
			e->last = i;
			return &e->g[i];
		}
	}
	return NULL;
}

int pricing_estimate_add(struct pricing_estimate *e, const char *channel, int cc, int category,
                         int segments)
{
	if (!e || !channel)
		return HR_EINVAL;
	struct group *g = group_find(e, channel, cc, category);
	/* Past the bound: the channel's (and category's) "other" group, made
	 * once each (a handful beyond the bound at most). */
	if (!g && e->n >= PRICING_GROUPS_MAX && cc != 0) {
		cc = 0;
		g = group_find(e, channel, 0, category);
	}
	if (!g) {
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 16;
			struct group *ng = realloc(e->g, cap * sizeof *ng);
			if (!ng)
				return HR_ENOMEM;
			e->g = ng;
			e->cap = cap;
		}
		g = &e->g[e->n++];
		memset(g, 0, sizeof *g);
		hr_strlcpy(g->channel, channel, sizeof g->channel);
		g->cc = cc;
		g->category = category;
	}
	g->messages++;
	g->units += segments > 0 ? segments : 1;
	e->messages++;
	e->segments += segments > 0 ? segments : 0;
	return 0;
}

/* millionths as a JSON number with up to six decimals, exactly. */
static json_t *money(int64_t micro)
{
	char t[40];
	snprintf(t, sizeof t, "%lld.%06lld", (long long)(micro / 1000000),
	         (long long)(micro % 1000000));
	return json_real(strtod(t, NULL));
}

static int group_order(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	if (x->messages != y->messages)
		return x->messages > y->messages ? -1 : 1;
	int c = strcmp(x->channel, y->channel);
	if (c)
		return c;
	if (x->cc != y->cc)
		return x->cc < y->cc ? -1 : 1;
	return x->category - y->category;
}

json_t *pricing_estimate_json(const struct pricing_estimate *e, const char *category_note)
{
	if (!e)
		return NULL;
	struct group *sorted = NULL;
	if (e->n && !(sorted = malloc(e->n * sizeof *sorted)))
		return NULL;
	if (e->n) {
		memcpy(sorted, e->g, e->n * sizeof *sorted);
		qsort(sorted, e->n, sizeof *sorted, group_order);
	}
	json_t *by = json_array();
	int64_t total = 0, unpriced = 0;
	bool oom = !by;
	for (size_t i = 0; !oom && i < e->n; i++) {
		const struct group *g = &sorted[i];
		json_t *o =
		    json_pack("{s:s, s:i, s:I, s:I}", "channel", g->channel, "country_code", g->cc,
		              "messages", (json_int_t)g->messages, "units", (json_int_t)g->units);
		if (o && g->category >= 0)
			json_object_set_new(
			    o, "category",
			    json_string(wa_category_name((enum wa_category)g->category)));
		int64_t unit;
		if (o && e->p) {
			if (pricing_price(e->p, g->channel, g->cc, (enum wa_category)g->category,
			                  &unit)) {
				json_object_set_new(o, "unit_price", money(unit));
				json_object_set_new(o, "cost", money(unit * g->units));
				total += unit * g->units;
			} else {
				json_object_set_new(o, "unit_price", json_null());
				json_object_set_new(o, "cost", json_null());
				unpriced += g->messages;
			}
		}
		oom = !o || json_array_append_new(by, o) != 0;
	}
	free(sorted);
	json_t *j = oom ? NULL : json_object();
	if (!j || json_object_set_new(j, "priced", json_boolean(e->p != NULL)) ||
	    json_object_set_new(j, "messages", json_integer((json_int_t)e->messages)) ||
	    json_object_set_new(j, "sms_segments", json_integer((json_int_t)e->segments)) ||
	    json_object_set(j, "by", by)) {
		json_decref(j);
		json_decref(by);
		return NULL;
	}
	json_decref(by);
	if (e->p) {
		json_object_set_new(j, "currency", json_string(e->p->currency));
		json_object_set_new(j, "total", money(total));
		json_object_set_new(j, "unpriced_messages", json_integer((json_int_t)unpriced));
	} else {
		json_object_set_new(j, "note", json_string("no prices configured"));
	}
	if (category_note)
		json_object_set_new(j, "category_note", json_string(category_note));
	return j;
}
