/*
 * limits.c - request rate limits per tenant and per credential, and the
 * answers for every limit a tenant can reach (README "Limits").
 *
 * Rates: each authenticated request takes a token from its credential's
 * bucket (limits.key_requests_per_s / key_burst, by the principal's actor:
 * "key:hk_…", "jwt:<sub>", "operator:…") and from its tenant's bucket
 * (limits.requests_per_s / burst, or the tenant's own rate from the store).
 * Both live in one core/limiter table (striped mutexes, bounded: what
 * happens at the bound is in limiter.h). The check runs after
 * authentication, so an unauthenticated flood costs a tenant nothing;
 * public routes (health, /metrics, webhooks) are never limited here.
 *
 * A tenant's own limits are read from the store and trusted for ttl_us
 * (the auth cache period, 5 s): an admin change on this node applies at
 * the next request (the handler forgets the entry), on other nodes within
 * that period. The cache is direct-mapped by tenant id: a collision only
 * costs a read.
 *
 * Caps the store enforces (HR_EQUOTA with the field naming which) are
 * answered here too: the daily cap 429 with Retry-After until the next
 * UTC midnight, the campaign cap 409 (see api_quota_fail).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/limiter.h"

#define TL_SLOTS 256

struct api_limits {
	struct limiter *lim;
	struct api_limit_opts o;
	int64_t ttl_us;
	pthread_mutex_t lock;
	struct {
		char tenant[HR_NAME_MAX];
		struct tenant_limits l;
		int64_t fetched; /* monotonic us */
	} slot[TL_SLOTS];
};

int api_limits_new(const struct api_limit_opts *o, int64_t ttl_us, struct api_limits **out,
                   struct hr_err *err)
{
	*out = NULL;
	struct api_limits *l = calloc(1, sizeof *l);
	if (!l)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	l->o = *o;
	if (l->o.max_buckets == 0)
		l->o.max_buckets = API_LIMIT_BUCKETS_DEFAULT;
	l->ttl_us = ttl_us > 0 ? ttl_us : 5 * 1000000LL;
	int rc = limiter_new(l->o.max_buckets, &l->lim);
	if (rc) {
		free(l);
		return hr_fail(err, rc, "limits.max_buckets", "cannot make the rate limit table");
	}
	pthread_mutex_init(&l->lock, NULL);
	*out = l;
	return 0;
}

void api_limits_free(struct api_limits *l)
{
	if (!l)
		return;
	limiter_free(l->lim);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static unsigned tl_slot(const char *tenant)
{
	unsigned h = 2166136261u;
	for (const char *p = tenant; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % TL_SLOTS;
}

void api_limits_forget_tenant(struct api_limits *l, const char *tenant)
{
	if (!l)
		return;
	unsigned k = tl_slot(tenant);
	pthread_mutex_lock(&l->lock);
	if (strcmp(l->slot[k].tenant, tenant) == 0)
		l->slot[k].tenant[0] = '\0';
	pthread_mutex_unlock(&l->lock);
}

/* The tenant's own limits, from the cache or the store (no lock held
 * while reading it). A store that cannot answer leaves the defaults: a
 * store outage must not turn into refusing every request here. */
static struct tenant_limits tenant_limits_of(struct api_server *s, const char *tenant)
{
	struct api_limits *l = s->limits;
	unsigned k = tl_slot(tenant);
	int64_t now = hr_mono_us();
	struct tenant_limits out = {0};
	bool hit = false;
	pthread_mutex_lock(&l->lock);
	if (strcmp(l->slot[k].tenant, tenant) == 0 && now - l->slot[k].fetched < l->ttl_us) {
		out = l->slot[k].l;
		hit = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (hit)
		return out;
	struct store *st = s->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, tenant, &t);
	if (rc != 0 && rc != HR_ENOTFOUND)
		return out;
	if (rc == 0)
		out = t.limits;
	pthread_mutex_lock(&l->lock);
	hr_strlcpy(l->slot[k].tenant, tenant, sizeof l->slot[k].tenant);
	l->slot[k].l = out;
	l->slot[k].fetched = now;
	pthread_mutex_unlock(&l->lock);
	return out;
}

/* "5", "0.5", "12.25": a rate in thousandths, as people write it. */
static const char *rate_text(int64_t milli, char *buf, size_t size)
{
	if (milli % 1000 == 0)
		snprintf(buf, size, "%lld", (long long)(milli / 1000));
	else
		snprintf(buf, size, "%lld.%03lld", (long long)(milli / 1000),
		         (long long)(milli % 1000));
	size_t n = strlen(buf);
	if (strchr(buf, '.'))
		while (n && buf[n - 1] == '0')
			buf[--n] = '\0';
	return buf;
}

/* A burst of 0 means one second's worth at the rate (at least 1). */
static int64_t burst_of(int64_t milli, int64_t burst)
{
	if (burst > 0)
		return burst;
	int64_t b = (milli + 999) / 1000;
	return b > 0 ? b : 1;
}

int api_limits_check(struct api_server *s, const struct api_principal *who, int64_t *retry_s,
                     struct hr_err *err)
{
	struct api_limits *l = s->limits;
	*retry_s = 0;
	if (!l)
		return 0;
	int64_t now = hr_mono_us();
	char name[LIMITER_KEY_MAX], rt[32];
	struct limiter_rate kr = {l->o.key_rate_milli,
	                          burst_of(l->o.key_rate_milli, l->o.key_burst)};
	bool key_taken = false;
	if (kr.milli_per_s > 0 && who->actor[0]) {
		snprintf(name, sizeof name, "k:%s", who->actor);
		int64_t wait = limiter_take(l->lim, name, &kr, now);
		if (wait > 0) {
			*retry_s = limiter_retry_after_s(wait);
			return hr_fail(err, HR_EQUOTA, "key",
			               "this credential (%s) is limited to %s requests per second"
			               " (burst %lld): retry in %lld s",
			               who->actor, rate_text(kr.milli_per_s, rt, sizeof rt),
			               (long long)kr.burst, (long long)*retry_s);
		}
		key_taken = true;
	}
	if (!who->tenant[0])
		return 0; /* an operator: no tenant to share */
	struct tenant_limits own = tenant_limits_of(s, who->tenant);
	int64_t milli = own.rate_milli > 0 ? own.rate_milli : l->o.rate_milli;
	int64_t burst = own.rate_milli > 0 || own.burst > 0 ? own.burst : l->o.burst;
	struct limiter_rate tr = {milli, burst_of(milli, burst)};
	if (tr.milli_per_s <= 0)
		return 0;
	char tname[LIMITER_KEY_MAX];
	snprintf(tname, sizeof tname, "t:%s", who->tenant);
	int64_t wait = limiter_take(l->lim, tname, &tr, now);
	if (wait == 0)
		return 0;
	/* Refused for the tenant: the credential's token was not spent. */
	if (key_taken)
		limiter_give(l->lim, name, now);
	*retry_s = limiter_retry_after_s(wait);
	return hr_fail(err, HR_EQUOTA, "tenant",
	               "tenant '%s' is limited to %s requests per second (burst %lld): retry in"
	               " %lld s",
	               who->tenant, rate_text(tr.milli_per_s, rt, sizeof rt), (long long)tr.burst,
	               (long long)*retry_s);
}

/* Seconds from now to the next 00:00 UTC (at least 1), and its time. */
static int64_t until_midnight(char at[32])
{
	int64_t now = hr_now_us();
	int64_t next = (store_day(now) + 1) * STORE_DAY_US;
	hr_time_format(next, at);
	int64_t s = (next - now + 999999) / 1000000;
	return s > 0 ? s : 1;
}

enum MHD_Result api_quota_fail(struct api_req *r, const struct hr_err *err, int64_t retry_s)
{
	const char *field = err && err->field[0] ? err->field : "";
	const char *msg = err && err->msg[0] ? err->msg : "limit reached";
	char retry[24], text[sizeof err->msg + 96];
	if (!strcmp(field, "campaign_cap")) {
		/* Nothing but another campaign's end frees a place: no time to
		 * retry after, so a conflict with the tenant's state, not 429. */
		return api_fail_kind(r, APIERR_CAMPAIGN_CAP, msg, field, NULL);
	}
	if (!strcmp(field, "daily_cap")) {
		char at[32];
		retry_s = until_midnight(at);
		snprintf(text, sizeof text, "%s (next reset %s)", msg, at);
		snprintf(retry, sizeof retry, "%lld", (long long)retry_s);
		const char *extra[] = {"Retry-After", retry, NULL};
		return api_fail_kind(r, APIERR_DAILY_CAP, text, field, extra);
	}
	snprintf(retry, sizeof retry, "%lld", (long long)(retry_s > 0 ? retry_s : 1));
	const char *extra[] = {"Retry-After", retry, NULL};
	return api_fail_kind(r, APIERR_RATE_LIMITED, msg, field, extra);
}

/* ---- the admin route: POST /v1/tenants/{tenant}/limits (operators) ---- */

static json_t *limit_json(int64_t v)
{
	return v > 0 ? json_integer(v) : json_null();
}

json_t *api_limits_json(const struct tenant_limits *l, int64_t today)
{
	json_t *rate = l->rate_milli > 0 ? json_real((double)l->rate_milli / 1000) : json_null();
	json_t *o = json_pack("{s:o, s:o, s:o, s:o}", "requests_per_s", rate, "burst",
	                      limit_json(l->burst), "messages_per_day", limit_json(l->daily_cap),
	                      "campaigns_in_flight", limit_json(l->campaign_cap));
	if (o && today >= 0 && json_object_set_new(o, "messages_today", json_integer(today)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* One field of the body: absent leaves *v, null clears it (0), a number in
 * 1..max sets it (rates may be fractional: thousandths kept). */
static int limit_field(json_t *o, const char *field, int64_t scale, int64_t max, int64_t *v,
                       struct hr_err *err)
{
	json_t *j = json_object_get(o, field);
	if (!j)
		return 0;
	if (json_is_null(j)) {
		*v = 0;
		return 0;
	}
	if (!json_is_number(j))
		return hr_fail(err, HR_EINVAL, field, "%s must be a number or null", field);
	double d = json_number_value(j) * (double)scale;
	if (!(d >= 1) || d > (double)max * (double)scale || (scale == 1 && !json_is_integer(j)))
		return hr_fail(err, HR_EINVAL, field, "%s must be %s from %s to %lld, or null",
		               field, scale == 1 ? "a whole number" : "a number",
		               scale == 1 ? "1" : "0.001", (long long)max);
	*v = (int64_t)(d + 0.5);
	return 0;
}

enum MHD_Result api_tenant_limits(struct api_req *r)
{
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, r->path_tenant, &t);
	if (rc) {
		json_decref(o);
		if (rc == HR_ENOTFOUND)
			hr_fail(&err, rc, "tenant", "no such tenant");
		return api_fail(r, rc, rc == HR_ENOTFOUND ? &err : NULL);
	}
	static const char *const allowed[] = {"requests_per_s", "burst", "messages_per_day",
	                                      "campaigns_in_flight", NULL};
	struct tenant_limits l = t.limits;
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		const char *const *p;
		for (p = allowed; *p && strcmp(*p, k) != 0; p++)
			;
		if (!*p && !rc) {
			char clip[64];
			rc = hr_fail(&err, HR_EINVAL, api_clip(clip, sizeof clip, k),
			             "unknown field '%s'", clip);
		}
	}
	if (!rc)
		rc = limit_field(o, "requests_per_s", 1000, LIMITER_RATE_MAX / 1000, &l.rate_milli,
		                 &err);
	if (!rc)
		rc = limit_field(o, "burst", 1, LIMITER_BURST_MAX, &l.burst, &err);
	if (!rc)
		rc = limit_field(o, "messages_per_day", 1, 1000000000000LL, &l.daily_cap, &err);
	if (!rc)
		rc = limit_field(o, "campaigns_in_flight", 1, 1000000, &l.campaign_cap, &err);
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	struct audit_row a;
	char obj[96];
	snprintf(obj, sizeof obj, "tenant:%s", t.id);
	api_audit_row(r, t.id, "tenant.limits", obj, &a);
	json_t *before = api_limits_json(&t.limits, -1), *after = api_limits_json(&l, -1);
	a.before = before ? json_dumps(before, JSON_COMPACT) : NULL;
	a.after = after ? json_dumps(after, JSON_COMPACT) : NULL;
	json_decref(before);
	json_decref(after);
	rc = st->ops->tenant_set_limits(st, t.id, &l, &a, &err);
	free(a.before);
	free(a.after);
	if (rc)
		return api_fail(r, rc, &err);
	/* This node applies it from the next request. */
	api_limits_forget_tenant(r->srv->limits, t.id);
	int64_t today = 0;
	if (st->ops->tenant_usage(st, t.id, store_day(hr_now_us()), &today) != 0)
		today = 0;
	return api_respond_json(
	    r, 200, json_pack("{s:s, s:o}", "tenant", t.id, "limits", api_limits_json(&l, today)),
	    NULL);
}
