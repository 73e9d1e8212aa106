/*
 * registry.c - the table of channel adapters, loaded accounts and the small
 * helpers every adapter shares (request and webhook-result memory).
 *
 * Adding a channel is one line in channel_table plus its adapter file.
 *
 * hr_channels links only hr_core, so nothing here may call into the store
 * library: account rows and inbound replies are freed field by field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channels/channel.h"
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

int channel_account_new(const struct account_row *row, struct channel_account **out,
                        struct hr_err *err)
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
	json_error_t je;
	a->config = row->config ? json_loads(row->config, 0, &je) : json_object();
	if (!a->config || !json_is_object(a->config)) {
		snprintf(field, sizeof field, "accounts[%s]", row->id);
		channel_account_free(a);
		return hr_fail(err, HR_EINVAL, field, "%s: config must be a JSON object", field);
	}
	int rc = account_rate(a, e->default_rate, err);
	if (rc == 0) {
		a->ops = e->ops;
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
	memset(out, 0, sizeof *out);
	pthread_rwlock_init(&out->lock, NULL);
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
		rc = channel_account_new(&rows[i], &out->items[i], err);
		if (rc == 0)
			out->n++;
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

int account_set_put(struct account_set *s, struct channel_account *a)
{
	pthread_rwlock_wrlock(&s->lock);
	fill_webhook_url(s, a);
	bool found;
	size_t i = locate(s, a->id, &found);
	int rc = 0;
	if (found) {
		/* Retire, don't free: another thread may hold the old pointer. */
		struct channel_account **r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
		if (!r) {
			rc = HR_ENOMEM;
		} else {
			s->retired = r;
			s->retired[s->nretired++] = s->items[i];
			s->items[i] = a;
		}
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
	int64_t delta = (int64_t)when * 1000000LL - hr_now_us();
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

int channel_cfg_secret(const struct channel_account *a, const char *key, bool required,
                       char **out, struct hr_err *err)
{
	const char *ref;
	*out = NULL;
	int rc = channel_cfg_str(a, key, required, &ref, err);
	if (rc || !ref)
		return rc;
	char field[96];
	channel_cfg_field(field, sizeof field, a, key);
	*out = hr_secret_resolve(ref, field, err);
	if (!*out)
		return err && err->code ? err->code : HR_EINVAL;
	if (!**out) {
		free(*out);
		*out = NULL;
		return hr_fail(err, HR_EINVAL, field, "%s resolves to an empty secret", field);
	}
	return 0;
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

enum outcome_class channel_http_class(long http_status)
{
	if (http_status == 429)
		return OUTCOME_RATE_LIMITED;
	if (http_status >= 500 || http_status == 408)
		return OUTCOME_TRANSIENT;
	return OUTCOME_PERMANENT;
}
