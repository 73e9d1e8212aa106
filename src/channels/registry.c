/*
 * registry.c - the table of channel adapters, loaded accounts and the small
 * helpers every adapter shares (request and webhook-result memory).
 *
 * Adding a channel is one line in channel_table plus its adapter file.
 *
 * hr_channels links only hr_core, so nothing here may call into the store
 * library: account rows and inbound replies are freed field by field.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "channels/channel.h"
#include "core/jsonr.h"
#include "core/config.h"

struct channel_entry {
	const char *name;
	const struct channel_ops *ops;
	double default_rate; /* messages per second when "rate_limit" is absent */
};

static const struct channel_entry channel_table[] = {
    {"whatsapp", &channel_whatsapp, 80.0},
    {"telegram", &channel_telegram, 30.0},
    {"sms", &channel_sms, 10.0},
    {"rcs", &channel_rcs, 50.0},
};

#define CHANNEL_RATE_MAX 100000.0

static const struct channel_entry *channel_entry_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof channel_table / sizeof channel_table[0]; i++)
		if (strcmp(channel_table[i].name, name) == 0)
			return &channel_table[i];
	return NULL;
}

const struct channel_ops *channel_find(const char *name)
{
	const struct channel_entry *e = channel_entry_find(name);
	return e ? e->ops : NULL;
}

size_t channel_final_at_sent(const char **names, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof channel_table / sizeof channel_table[0]; i++)
		if (!channel_table[i].ops->has_receipts && n < max)
			names[n++] = channel_table[i].name;
	return n;
}

void http_req_clear(struct http_req *r)
{
	if (!r)
		return;
	free(r->url);
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r->userpwd);
	memset(r, 0, sizeof *r);
}

const char *outcome_class_name(enum outcome_class c)
{
	switch (c) {
	case OUTCOME_OK:
		return "ok";
	case OUTCOME_TRANSIENT:
		return "transient";
	case OUTCOME_RATE_LIMITED:
		return "rate_limited";
	case OUTCOME_PERMANENT:
		return "permanent";
	}
	return "unknown";
}

void wh_parsed_clear(struct wh_parsed *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->ninbound; i++) {
		free(p->inbound[i].text);
		free(p->inbound[i].payload);
		free(p->inbound[i].auto_reply);
	}
	for (size_t i = 0; i < p->nfollowups; i++)
		http_req_clear(&p->followups[i]);
	free(p->statuses);
	free(p->inbound);
	free(p->followups);
	memset(p, 0, sizeof *p);
}

/* Grows *arr (elements of size sz) so one more fits; false on OOM. */
static bool grow(void **arr, size_t n, size_t *cap, size_t sz)
{
	if (n < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, ncap * sz);
	if (!p)
		return false;
	*arr = p;
	*cap = ncap;
	return true;
}

struct wh_status *wh_parsed_add_status(struct wh_parsed *p)
{
	if (!grow((void **)&p->statuses, p->nstatuses, &p->capstatuses, sizeof *p->statuses))
		return NULL;
	struct wh_status *s = &p->statuses[p->nstatuses++];
	memset(s, 0, sizeof *s);
	return s;
}

struct http_req *wh_parsed_add_followup(struct wh_parsed *p)
{
	if (!grow((void **)&p->followups, p->nfollowups, &p->capfollowups, sizeof *p->followups))
		return NULL;
	struct http_req *r = &p->followups[p->nfollowups++];
	memset(r, 0, sizeof *r);
	return r;
}

struct wh_inbound *wh_parsed_add_inbound(struct wh_parsed *p)
{
	if (!grow((void **)&p->inbound, p->ninbound, &p->capinbound, sizeof *p->inbound))
		return NULL;
	struct wh_inbound *in = &p->inbound[p->ninbound++];
	memset(in, 0, sizeof *in);
	return in;
}

/*
 * Reads "rate_limit" (a positive number, or a numeric string as YAML may give)
 * from the account config; absent means the channel's default.
 */
static int account_rate(struct channel_account *a, double def, struct hr_err *err)
{
	json_t *v = json_object_get(a->config, "rate_limit");
	char field[HR_NAME_MAX + 32];
	snprintf(field, sizeof field, "accounts[%s].rate_limit", a->id);
	double d = def;
	if (v && !json_is_null(v)) {
		char *end = NULL;
		if (json_is_number(v)) {
			d = json_number_value(v);
		} else if (json_is_string(v) && *json_string_value(v)) {
			d = strtod(json_string_value(v), &end);
			if (*end)
				return hr_fail(err, HR_EINVAL, field, "%s must be a number", field);
		} else {
			return hr_fail(err, HR_EINVAL, field, "%s must be a number", field);
		}
		if (!(d > 0 && d <= CHANNEL_RATE_MAX))
			return hr_fail(err, HR_EINVAL, field, "%s must be > 0 and <= %g", field,
			               CHANNEL_RATE_MAX);
	}
	a->rate_limit = d;
	return 0;
}

/* Reads "delivery_policy" ("at_least_once" | "at_most_once") from the
 * account config; absent means at_least_once (README "Guarantees"). */
static int account_delivery_policy(struct channel_account *a, struct hr_err *err)
{
	json_t *v = json_object_get(a->config, "delivery_policy");
	a->delivery_policy = POLICY_AT_LEAST_ONCE;
	if (!v || json_is_null(v))
		return 0;
	if (delivery_policy_parse(json_string_value(v), &a->delivery_policy) == 0)
		return 0;
	char field[HR_NAME_MAX + 32];
	snprintf(field, sizeof field, "accounts[%s].delivery_policy", a->id);
	return hr_fail(err, HR_EINVAL, field, "%s must be \"at_least_once\" or \"at_most_once\"",
	               field);
}

int channel_account_new(const struct account_row *row, struct channel_account **out,
                        struct hr_err *err)
{
	return channel_account_new_policy(row, NULL, out, err);
}

int channel_account_new_policy(const struct account_row *row, const struct channel_policy *policy,
                               struct channel_account **out, struct hr_err *err)
{
	char field[HR_NAME_MAX + 32];
	*out = NULL;
	const struct channel_entry *e = channel_entry_find(row->channel);
	if (!e) {
		snprintf(field, sizeof field, "accounts[%s].channel", row->id);
		return hr_fail(err, HR_EINVAL, field, "%s: unknown channel '%s'", field,
		               row->channel);
	}
	struct channel_account *a = calloc(1, sizeof *a);
	if (!a)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	hr_strlcpy(a->id, row->id, sizeof a->id);
	hr_strlcpy(a->tenant_id, row->tenant_id, sizeof a->tenant_id);
	hr_strlcpy(a->unit, row->unit_id, sizeof a->unit);
	a->restricted = row->api_created;
	a->policy = policy;
	json_error_t je;
	a->config = row->config ? json_loads(row->config, 0, &je) : json_object();
	if (!a->config || !json_is_object(a->config)) {
		snprintf(field, sizeof field, "accounts[%s]", row->id);
		channel_account_free(a);
		return hr_fail(err, HR_EINVAL, field, "%s: config must be a JSON object", field);
	}
	int rc = account_rate(a, e->default_rate, err);
	if (rc == 0)
		rc = account_delivery_policy(a, err);
	if (rc == 0) {
		a->ops = e->ops;
		/* Before the files are read: a change after this is seen by the
		 * watcher's next pass, never lost (secret_watch.c). */
		a->secret_fp = channel_secret_fingerprint(a);
		a->has_sum = channel_secret_sum(a, a->secret_sum);
		rc = e->ops->account_load(a, err);
		if (rc)
			a->ops = NULL; /* account_load cleaned up after itself */
	}
	if (rc) {
		channel_account_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

size_t account_set_await_ready(struct account_set *s, int64_t deadline_us)
{
	size_t waiting = 0;
	pthread_rwlock_rdlock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		const struct channel_account *a = s->items[i];
		if (a->ops && a->ops->await_ready && !a->ops->await_ready(a, deadline_us))
			waiting++;
	}
	pthread_rwlock_unlock(&s->lock);
	return waiting;
}

void channel_account_free(struct channel_account *a)
{
	if (!a)
		return;
	if (a->ops && a->ops->account_free)
		a->ops->account_free(a);
	json_decref(a->config);
	free(a);
}

static int account_cmp(const void *x, const void *y)
{
	const struct channel_account *const *a = x, *const *b = y;
	return strcmp((*a)->id, (*b)->id);
}

/*
 * Loads every account in the store. All or nothing: one account that does
 * not load fails the whole set, with the error naming it, so a typo in one
 * account's config stops the start instead of silently dropping its sends.
 */
int account_set_load(struct store *st, struct account_set *out, struct hr_err *err)
{
	return account_set_load_policy(st, NULL, out, err);
}

int account_set_load_policy(struct store *st, const struct channel_policy *policy,
                            struct account_set *out, struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	pthread_rwlock_init(&out->lock, NULL);
	out->policy = policy;
	struct account_row *rows = NULL;
	size_t n = 0;
	int rc = st->ops->account_list(st, NULL, &rows, &n);
	if (rc) {
		pthread_rwlock_destroy(&out->lock);
		return hr_fail(err, rc, "accounts", "cannot list accounts: %s", hr_code_name(rc));
	}
	if (n && !(out->items = calloc(n, sizeof *out->items))) {
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		rc = HR_ENOMEM;
	}
	out->cap = n;
	for (size_t i = 0; rc == 0 && out->items && i < n; i++) {
		rc = channel_account_new_policy(&rows[i], policy, &out->items[out->n], err);
		if (rc == 0) {
			out->n++;
		} else if (rows[i].api_created && rc != HR_ENOMEM) {
			/* A tenant's account the operator's policy no longer allows:
			 * its sends wait; the operator's own accounts still start. */
			hr_log(HR_LOG_WARN, "channels",
			       "tenant %s's account %s is not loaded: %s", rows[i].tenant_id,
			       rows[i].id, err->msg);
			hr_err_clear(err);
			rc = 0;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(rows[i].config);
	free(rows);
	if (rc == 0 && out->items && out->n > 1) {
		qsort(out->items, out->n, sizeof *out->items, account_cmp);
		for (size_t i = 1; i < out->n; i++) {
			if (strcmp(out->items[i - 1]->id, out->items[i]->id) == 0) {
				char field[HR_NAME_MAX + 16];
				snprintf(field, sizeof field, "accounts[%s]", out->items[i]->id);
				rc = hr_fail(err, HR_EINVAL, field, "%s is defined twice", field);
				break;
			}
		}
	}
	if (rc)
		account_set_clear(out);
	return rc;
}

static void fill_webhook_url(const struct account_set *s, struct channel_account *a)
{
	if (s->public_url[0])
		snprintf(a->webhook_url, sizeof a->webhook_url, "%.150s/webhooks/%s/%s",
		         s->public_url, a->ops->name, a->id);
}

void account_set_public_url(struct account_set *s, const char *public_url)
{
	pthread_rwlock_wrlock(&s->lock);
	hr_strlcpy(s->public_url, public_url ? public_url : "", sizeof s->public_url);
	size_t l = strlen(s->public_url);
	while (l > 0 && s->public_url[l - 1] == '/')
		s->public_url[--l] = '\0';
	for (size_t i = 0; i < s->n; i++)
		fill_webhook_url(s, s->items[i]);
	pthread_rwlock_unlock(&s->lock);
}

/* Index of id in the sorted items, or where it would go (*found false). */
static size_t locate(const struct account_set *s, const char *id, bool *found)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->items[mid]->id, id);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Under the write lock: a takes over from the account at items[i]; the old
 * one is retired and its secrets keep verifying webhooks for the grace. */
static int replace_at(struct account_set *s, size_t i, struct channel_account *a)
{
	/* Retire, don't free: another thread may hold the old pointer. */
	struct channel_account **r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
	if (!r)
		return HR_ENOMEM;
	s->retired = r;
	s->retired[s->nretired++] = s->items[i];
	a->prev = s->items[i];
	a->prev_until = s->grace_us > 0 ? hr_now_us() + s->grace_us : 0;
	s->items[i] = a;
	return 0;
}

int account_set_replace(struct account_set *s, const struct channel_account *old,
                        struct channel_account *a)
{
	pthread_rwlock_wrlock(&s->lock);
	bool found = false;
	size_t i = s->n ? locate(s, a->id, &found) : 0;
	int rc = found && s->items[i] == old ? 0 : HR_ECONFLICT;
	if (rc == 0) {
		fill_webhook_url(s, a);
		rc = replace_at(s, i, a);
	}
	if (rc == 0)
		s->generation++;
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int account_set_put(struct account_set *s, struct channel_account *a)
{
	pthread_rwlock_wrlock(&s->lock);
	fill_webhook_url(s, a);
	bool found;
	size_t i = locate(s, a->id, &found);
	int rc = 0;
	if (found) {
		rc = replace_at(s, i, a);
	} else {
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 8;
			struct channel_account **it = realloc(s->items, cap * sizeof *it);
			if (!it)
				rc = HR_ENOMEM;
			else
				s->items = it, s->cap = cap;
		}
		if (rc == 0) {
			memmove(&s->items[i + 1], &s->items[i], (s->n - i) * sizeof *s->items);
			s->items[i] = a;
			s->n++;
		}
	}
	if (rc == 0)
		s->generation++;
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

struct channel_account *account_set_find(struct account_set *s, const char *id)
{
	if (!s || !id)
		return NULL;
	pthread_rwlock_rdlock(&s->lock);
	bool found = false;
	size_t i = s->n ? locate(s, id, &found) : 0;
	struct channel_account *a = found ? s->items[i] : NULL;
	pthread_rwlock_unlock(&s->lock);
	return a;
}

struct channel_account *account_set_at(struct account_set *s, size_t i)
{
	pthread_rwlock_rdlock(&s->lock);
	struct channel_account *a = i < s->n ? s->items[i] : NULL;
	pthread_rwlock_unlock(&s->lock);
	return a;
}

unsigned account_set_generation(struct account_set *s)
{
	pthread_rwlock_rdlock(&s->lock);
	unsigned g = s->generation;
	pthread_rwlock_unlock(&s->lock);
	return g;
}

void account_set_clear(struct account_set *s)
{
	if (!s || (!s->items && !s->retired && !s->n && !s->cap))
		return;
	for (size_t i = 0; s->items && i < s->n; i++)
		channel_account_free(s->items[i]);
	for (size_t i = 0; i < s->nretired; i++)
		channel_account_free(s->retired[i]);
	free(s->items);
	free(s->retired);
	pthread_rwlock_destroy(&s->lock);
	memset(s, 0, sizeof *s);
}

bool channel_fast_json = true; /* channel.h */
_Thread_local unsigned long channel_fast_json_hits;

char *channel_plain_text(const char *content, const char *const *refuse)
{
	struct jsonr r;
	char type[8];
	if (!content || jsonr_parse(&r, content, strlen(content)) != 0 ||
	    !jsonr_string(&r, jsonr_get(&r, 0, "type"), type, sizeof type, NULL) ||
	    strcmp(type, "text") != 0)
		return NULL;
	for (size_t i = 0; refuse && refuse[i]; i++)
		if (jsonr_get(&r, 0, refuse[i]) >= 0)
			return NULL;
	int t = jsonr_get(&r, 0, "text");
	if (!jsonr_is_string(&r, t))
		return NULL;
	/* Unescaped, a string is never longer than its JSON form. */
	size_t cap = (size_t)(r.tok[t].end - r.tok[t].start) + 1, n = 0;
	char *text = malloc(cap);
	if (text && (!jsonr_string(&r, t, text, cap, &n) || n == 0)) {
		free(text);
		text = NULL;
	}
	return text;
}

int64_t channel_retry_after_us(const char *v)
{
	if (!v)
		return 0;
	while (*v == ' ' || *v == '\t')
		v++;
	if (!*v)
		return 0;
	char *end;
	long long secs = strtoll(v, &end, 10);
	while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
		end++;
	if (end != v && *end == '\0')
		return secs <= 0 ? 0 : (secs > 86400 ? 86400 : secs) * 1000000LL;
	time_t when = curl_getdate(v, NULL);
	if (when <= 0)
		return 0;
	/* Capped in seconds before converting: curl reads any year a provider
	 * (or whoever answers) writes ("Wed, 21 Oct 1302072"), and such a date
	 * in microseconds overflows int64 (found by fuzz/fuzz_twilio.c). */
	int64_t now = hr_now_us();
	if ((int64_t)when - now / 1000000 > 86400)
		return 86400 * 1000000LL;
	int64_t delta = (int64_t)when * 1000000LL - now;
	if (delta > 86400 * 1000000LL)
		delta = 86400 * 1000000LL;
	return delta > 0 ? delta : 0;
}

void channel_body_excerpt(const char *body, size_t len, char *out, size_t outsz)
{
	size_t n = 0;
	for (size_t i = 0; body && i < len && n + 1 < outsz && n < 200; i++)
		out[n++] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
	if (outsz)
		out[n] = '\0';
}

void channel_cfg_field(char *out, size_t n, const struct channel_account *a, const char *key)
{
	snprintf(out, n, "accounts[%s].%s", a->id, key);
}

int channel_cfg_str(const struct channel_account *a, const char *key, bool required,
                    const char **out, struct hr_err *err)
{
	char field[96];
	channel_cfg_field(field, sizeof field, a, key);
	json_t *v = json_object_get(a->config, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		return hr_fail(err, HR_EINVAL, field, "%s is required", field);
	}
	if (!json_is_string(v) || !*json_string_value(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	*out = json_string_value(v);
	return 0;
}

bool channel_secret_field(const struct channel_ops *ops, const char *key)
{
	for (const char *const *f = ops && ops->secret_fields ? ops->secret_fields : NULL; f && *f;
	     f++)
		if (strcmp(*f, key) == 0)
			return true;
	return false;
}

int channel_cfg_secret(const struct channel_account *a, const char *key, bool required,
                       char **out, struct hr_err *err)
{
	const char *ref;
	*out = NULL;
	char field[96];
	channel_cfg_field(field, sizeof field, a, key);
	/* Secrets are declared, not guessed from names: an adapter reading an
	 * undeclared key as a secret would escape the API's reference check. */
	if (!channel_secret_field(a->ops, key))
		return hr_fail(err, HR_EINTERNAL, field, "%s is not a declared secret of %s",
		               field, a->ops ? a->ops->name : "?");
	int rc = channel_cfg_str(a, key, required, &ref, err);
	if (rc || !ref)
		return rc;
	if (a->restricted) {
		const struct channel_tenant_ns *ns = channel_policy_ns(a->policy, a->tenant_id);
		*out = hr_secret_resolve_ns(ref, ns ? ns->env_prefix : NULL,
		                            ns ? ns->file_dir : NULL, field, err);
	} else {
		*out = hr_secret_resolve(ref, field, err);
	}
	if (!*out)
		return err && err->code ? err->code : HR_EINVAL;
	if (!**out) {
		free(*out);
		*out = NULL;
		return hr_fail(err, HR_EINVAL, field, "%s resolves to an empty secret", field);
	}
	return 0;
}

int channel_url_origin(const char *url, char *out, size_t outsz)
{
	CURLU *u = curl_url();
	if (!u)
		return HR_ENOMEM;
	char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pw = NULL, *zone = NULL;
	int rc = HR_EINVAL;
	/* No IPv6 zone id: it picks the interface, so which host answers, and
	 * CURLUPART_HOST leaves it out ("[fe80::1%25eth1]" would pass as an
	 * allowed "[fe80::1]" on another link). */
	if (url && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0) &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && *host &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER &&
	    curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_NO_PASSWORD &&
	    curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_NO_ZONEID) {
		int n = snprintf(out, outsz, "%s://%s:%s", scheme, host, port);
		if (n > 0 && (size_t)n < outsz) {
			for (char *c = out; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			rc = 0;
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(user);
	curl_free(pw);
	curl_free(zone);
	curl_url_cleanup(u);
	return rc;
}

/* Whether origin (canonical) is one of the NULL-terminated URLs in list. */
static bool origin_listed(const char *origin, const char *const *list)
{
	char o[160];
	for (; list && *list; list++)
		if (channel_url_origin(*list, o, sizeof o) == 0 && strcmp(o, origin) == 0)
			return true;
	return false;
}

int channel_url_check(struct channel_account *a, const char *url, const char *field,
                      struct hr_err *err)
{
	char origin[160];
	if (channel_url_origin(url, origin, sizeof origin) != 0 || strchr(url, '#') ||
	    strchr(url, ' '))
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be an absolute http:// or https:// URL with a host and "
		               "without user:password@ or an IPv6 zone id",
		               field);
	if (!a->restricted)
		return 0;
	bool provider = origin_listed(origin, a->ops->provider_origins);
	bool allowed = provider;
	for (size_t i = 0; !allowed && a->policy && i < a->policy->norigins; i++)
		allowed = strcmp(a->policy->origins[i], origin) == 0;
	if (!allowed) {
		char list[256] = "";
		for (const char *const *o = a->ops->provider_origins; o && *o; o++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
			         list[0] ? ", " : "", *o);
		return hr_fail(err, HR_EFORBIDDEN, field,
		               "%s: accounts created through the API may only send to %s (or to "
		               "an origin the operator allows)",
		               field, list[0] ? list : "their provider");
	}
	if (!provider)
		a->mask_answers = true;
	return 0;
}

int channel_cfg_url(struct channel_account *a, const char *key, const char *def,
                    const char **out, struct hr_err *err)
{
	int rc = channel_cfg_str(a, key, def == NULL, out, err);
	if (rc)
		return rc;
	if (!*out)
		*out = def;
	char field[96];
	channel_cfg_field(field, sizeof field, a, key);
	if (strchr(*out, '?'))
		return hr_fail(err, HR_EINVAL, field, "%s must not have a query string", field);
	return channel_url_check(a, *out, field, err);
}

void channel_outcome_sanitize(const struct channel_account *a, long http_status,
                              struct send_outcome *out)
{
	if (!a || !a->mask_answers || out->cls == OUTCOME_OK)
		return;
	/* The class and the provider's error code still drive retries and
	 * show in the API; the free text could carry anything the host said. */
	if (http_status == 0)
		hr_strlcpy(out->error_text, "no answer (details withheld: not a provider's host)",
		           sizeof out->error_text);
	else
		snprintf(out->error_text, sizeof out->error_text,
		         "HTTP %ld (answer withheld: not a provider's host)", http_status);
}

bool channel_network_outcome(long http_status, const char *body, size_t len,
                             struct send_outcome *out)
{
	if (http_status != 0)
		return false;
	out->cls = OUTCOME_TRANSIENT;
	hr_strlcpy(out->error_code, "network", sizeof out->error_code);
	channel_body_excerpt(body, len, out->error_text, sizeof out->error_text);
	return true;
}

const char *rate_scope_name(enum rate_scope s)
{
	switch (s) {
	case RATE_SCOPE_ACCOUNT:
		return "account";
	case RATE_SCOPE_RECIPIENT:
		return "recipient";
	default:
		return "none";
	}
}

void channel_http_outcome(struct send_outcome *out, long http_status)
{
	out->cls = channel_http_class(http_status);
	out->rate_scope = out->cls == OUTCOME_RATE_LIMITED ? RATE_SCOPE_ACCOUNT : RATE_SCOPE_NONE;
}

const char *channel_common_meaning(const char *code)
{
	if (!code)
		return NULL;
	if (!strcmp(code, "network"))
		return "No answer from the provider (connection refused, reset or timed out); "
		       "retried";
	if (strncmp(code, "http_", 5) != 0 || strlen(code) != 8 ||
	    strspn(code + 5, "0123456789") != 3)
		return NULL;
	long st = strtol(code + 5, NULL, 10);
	if (st >= 200 && st < 300)
		return "A success answer without the message's id; retried";
	if (st == 429)
		return "Too many requests (HTTP 429) without a body; retried later";
	if (st == 408)
		return "The provider timed out the request (HTTP 408); retried";
	if (st >= 500 && st < 600)
		return "The provider failed (HTTP 5xx) without an error body; retried";
	if (st >= 400 && st < 500)
		return "The provider refused the request (HTTP 4xx) without an error body";
	return NULL;
}

enum outcome_class channel_http_class(long http_status)
{
	if (http_status == 429)
		return OUTCOME_RATE_LIMITED;
	if (http_status >= 500 || http_status == 408)
		return OUTCOME_TRANSIENT;
	return OUTCOME_PERMANENT;
}

/* ---------------------------------------------------------------------------
 * The operator's policy for tenant-created accounts (channel.h).
 * ------------------------------------------------------------------------- */

#define POLICY_ENV_BASE "HERALD_SECRET_"
#define POLICY_DIR_BASE "/etc/herald/secrets/"

/* The tenant id as an environment-name part: letters and digits upper-cased,
 * every run of other characters one '_', none at either end. With "__" after
 * it, two different encodings never make one prefix of the other. */
static void env_encode(const char *tenant, char *out, size_t outsz)
{
	size_t n = 0;
	bool sep = false;
	for (const char *c = tenant; *c && n + 2 < outsz; c++) {
		if (isalnum((unsigned char)*c)) {
			if (sep && n > 0)
				out[n++] = '_';
			sep = false;
			out[n++] = (char)toupper((unsigned char)*c);
		} else {
			sep = true;
		}
	}
	out[n] = '\0';
}

static bool env_name_ok(const char *s)
{
	if (!*s || isdigit((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

/* A single path component a tenant id may be used as. */
static bool dir_component_ok(const char *s)
{
	if (!*s || *s == '.')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	return true;
}

void channel_policy_clear(struct channel_policy *p)
{
	if (!p)
		return;
	free(p->origins);
	free(p->ns);
	memset(p, 0, sizeof *p);
}

const struct channel_tenant_ns *channel_policy_ns(const struct channel_policy *p,
                                                  const char *tenant_id)
{
	for (size_t i = 0; p && tenant_id && i < p->nns; i++)
		if (strcmp(p->ns[i].tenant_id, tenant_id) == 0)
			return &p->ns[i];
	return NULL;
}

/* One tenant's namespace from its config entry t (index ti) and the bases. */
static int policy_tenant(struct channel_tenant_ns *ns, json_t *t, size_t ti, const char *env_base,
                         const char *dir_base, struct hr_err *err)
{
	char f[96];
	const char *id = json_string_value(json_object_get(t, "id"));
	snprintf(f, sizeof f, "tenants[%zu].id", ti);
	if (!id || !*id || strlen(id) >= sizeof ns->tenant_id)
		return hr_fail(err, HR_EINVAL, f, "%s is required (1..63 chars)", f);
	hr_strlcpy(ns->tenant_id, id, sizeof ns->tenant_id);
	snprintf(f, sizeof f, "tenants[%zu].secret_env_prefix", ti);
	const char *ep = hr_cfg_str(t, "secret_env_prefix", NULL, err);
	if (err && err->code)
		return err->code;
	if (ep) {
		if (!env_name_ok(ep) || strlen(ep) >= sizeof ns->env_prefix)
			return hr_fail(err, HR_EINVAL, f,
			               "%s must be a variable-name prefix (letters, digits, '_')", f);
		hr_strlcpy(ns->env_prefix, ep, sizeof ns->env_prefix);
	} else if (*env_base) {
		char enc[HR_NAME_MAX];
		env_encode(id, enc, sizeof enc);
		if (*enc)
			snprintf(ns->env_prefix, sizeof ns->env_prefix, "%s%s__", env_base, enc);
	}
	snprintf(f, sizeof f, "tenants[%zu].secret_file_dir", ti);
	const char *fd = hr_cfg_str(t, "secret_file_dir", NULL, err);
	if (err && err->code)
		return err->code;
	if (fd) {
		size_t l = strlen(fd);
		if (fd[0] != '/' || l + 2 >= sizeof ns->file_dir || strstr(fd, "/.") ||
		    strstr(fd, "//"))
			return hr_fail(err, HR_EINVAL, f,
			               "%s must be an absolute directory without '.' components", f);
		snprintf(ns->file_dir, sizeof ns->file_dir, "%s%s", fd, fd[l - 1] == '/' ? "" : "/");
	} else if (*dir_base && dir_component_ok(id)) {
		snprintf(ns->file_dir, sizeof ns->file_dir, "%s%s%s/", dir_base,
		         dir_base[strlen(dir_base) - 1] == '/' ? "" : "/", id);
	}
	return 0;
}

static bool is_prefix(const char *a, const char *b)
{
	return *a && *b && strncmp(a, b, strlen(a)) == 0;
}

int channel_policy_init(struct channel_policy *p, json_t *cfg, struct hr_err *err)
{
	memset(p, 0, sizeof *p);
	const char *env_base =
	    hr_cfg_str(cfg, "server.secret_env_prefix", POLICY_ENV_BASE, err);
	const char *dir_base = hr_cfg_str(cfg, "server.secret_file_dir", POLICY_DIR_BASE, err);
	if (err && err->code)
		return err->code;
	if (*env_base && !env_name_ok(env_base))
		return hr_fail(err, HR_EINVAL, "server.secret_env_prefix",
		               "server.secret_env_prefix must be letters, digits and '_'");
	if (*dir_base && (dir_base[0] != '/' || strstr(dir_base, "/.")))
		return hr_fail(err, HR_EINVAL, "server.secret_file_dir",
		               "server.secret_file_dir must be an absolute directory");

	json_t *origins = hr_cfg_get(cfg, "server.allowed_origins");
	if (origins && !json_is_array(origins) && !json_is_null(origins))
		return hr_fail(err, HR_EINVAL, "server.allowed_origins",
		               "server.allowed_origins must be a list of URLs");
	size_t no = json_array_size(origins);
	if (no && !(p->origins = calloc(no, sizeof *p->origins)))
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < no; i++) {
		const char *u = json_string_value(json_array_get(origins, i));
		if (!u || channel_url_origin(u, p->origins[i], sizeof p->origins[i]) != 0) {
			char f[64];
			snprintf(f, sizeof f, "server.allowed_origins[%zu]", i);
			channel_policy_clear(p);
			return hr_fail(err, HR_EINVAL, f,
			               "%s must be an http(s) origin such as "
			               "\"http://127.0.0.1:9090\"",
			               f);
		}
		p->norigins++;
	}

	json_t *tenants = json_object_get(cfg, "tenants");
	size_t nt = json_array_size(tenants);
	if (nt && !(p->ns = calloc(nt, sizeof *p->ns))) {
		channel_policy_clear(p);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	for (size_t i = 0; i < nt; i++) {
		int rc = policy_tenant(&p->ns[i], json_array_get(tenants, i), i, env_base, dir_base,
		                       err);
		if (rc) {
			channel_policy_clear(p);
			return rc;
		}
		p->nns++;
	}
	/* No namespace may contain another's: tenant "acme" must not read
	 * "acme_uk"'s variables or files. */
	for (size_t i = 0; i < p->nns; i++) {
		for (size_t j = 0; j < p->nns; j++) {
			if (i == j)
				continue;
			const struct channel_tenant_ns *a = &p->ns[i], *b = &p->ns[j];
			bool env = is_prefix(a->env_prefix, b->env_prefix);
			if (env || is_prefix(a->file_dir, b->file_dir)) {
				char f[64];
				snprintf(f, sizeof f, "tenants[%zu].%s", j,
				         env ? "secret_env_prefix" : "secret_file_dir");
				int rc = hr_fail(err, HR_EINVAL, f,
				                 "tenants '%s' and '%s' have overlapping secret "
				                 "namespaces (%s, %s): set %s for one of them",
				                 a->tenant_id, b->tenant_id,
				                 env ? a->env_prefix : a->file_dir,
				                 env ? b->env_prefix : b->file_dir,
				                 env ? "secret_env_prefix" : "secret_file_dir");
				channel_policy_clear(p);
				return rc;
			}
		}
	}
	return 0;
}
