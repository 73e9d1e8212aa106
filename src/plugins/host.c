/*
 * host.c - the functions include/herald/plugin.h declares: what a plugin
 * calls (log, metrics, its config, data sources, the call's arena) and the
 * accessors of the handles it is given. Herald exports exactly these
 * herald_* symbols from its executable (src/plugins/exports.list), so a
 * plugin links against nothing.
 *
 * Everything a plugin hands in is hostile: strings are checked for UTF-8
 * and length before they are copied, indexes are bounded, and a refused
 * output marks the call's output as garbage instead of half-applying it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/datasource.h"
#include "plugins/plugins_int.h"

#define ARENA_CHUNK (16 * 1024)

void plugin_ctx_begin(struct herald_ctx *c, struct plugin *pl, const char *tenant, const char *unit,
                      int64_t deadline, size_t arena_max)
{
	memset(c, 0, sizeof *c);
	c->pl = pl;
	c->tenant = tenant ? tenant : "";
	c->unit = unit ? unit : "";
	c->deadline = deadline;
	c->arena_max = arena_max;
}

void plugin_ctx_end(struct herald_ctx *c)
{
	struct arena_chunk *a = c->arena;
	while (a) {
		struct arena_chunk *n = a->next;
		free(a);
		a = n;
	}
	c->arena = NULL;
}

/* A string a plugin gave: non-NULL, valid UTF-8 and shorter than max. */
static bool text_ok(const char *s, size_t max)
{
	if (!s)
		return false;
	size_t n = strnlen(s, max);
	return n < max && hr_utf8_check(s, n) == n;
}

/* A channel or account name a plugin gave: 1..max-1 printable ASCII bytes
 * without spaces (what config ids are made of). */
static bool name_text_ok(const char *s, size_t max)
{
	size_t n = s ? strnlen(s, max) : 0;
	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* ---- host API ---- */

void herald_log(struct herald_ctx *c, enum herald_log_level level, const char *fmt, ...)
{
	if (!c || !fmt)
		return;
	char line[1024], clean[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	hr_utf8_copy(clean, line, sizeof clean);
	for (char *p = clean; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' '; /* one line per call: no forged log lines */
	enum hr_log_level l = level <= HERALD_LOG_DEBUG  ? HR_LOG_DEBUG
	                      : level == HERALD_LOG_INFO ? HR_LOG_INFO
	                      : level == HERALD_LOG_WARN ? HR_LOG_WARN
	                                                 : HR_LOG_ERROR;
	hr_log(l, "plugin", "%s%s%s: %s", c->pl->name, c->unit[0] ? " unit " : "", c->unit, clean);
}

static bool metric_name_ok(const char *s)
{
	size_t n = s ? strnlen(s, 64) : 0;
	return n > 0 && n < 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

void herald_metric_add(struct herald_ctx *c, const char *name, long long n)
{
	if (!c || !metric_name_ok(name))
		return;
	struct plugin *pl = c->pl;
	int k = atomic_load(&pl->nmetrics);
	for (int i = 0; i < k; i++)
		if (strcmp(pl->metrics[i].name, name) == 0) {
			atomic_fetch_add(&pl->metrics[i].value, n);
			return;
		}
	pthread_mutex_lock(&pl->mlock);
	k = atomic_load(&pl->nmetrics);
	int i = 0;
	while (i < k && strcmp(pl->metrics[i].name, name) != 0)
		i++;
	if (i == k && k < PLUGIN_METRICS_MAX) {
		hr_strlcpy(pl->metrics[k].name, name, sizeof pl->metrics[k].name);
		atomic_store(&pl->metrics[k].value, 0);
		atomic_store(&pl->nmetrics, k + 1); /* published after the name */
	}
	pthread_mutex_unlock(&pl->mlock);
	if (i < PLUGIN_METRICS_MAX)
		atomic_fetch_add(&pl->metrics[i].value, n);
}

const char *herald_config_get(struct herald_ctx *c, const char *key)
{
	if (!c || !key)
		return NULL;
	return json_string_value(json_object_get(c->pl->config, key));
}

int herald_fail(struct herald_ctx *c, const char *fmt, ...)
{
	if (!c || !fmt || c->reason[0])
		return HERALD_ERROR;
	char tmp[PLUGIN_REASON_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	hr_utf8_copy(c->reason, tmp[0] ? tmp : "failed", sizeof c->reason);
	return HERALD_ERROR;
}

void *herald_alloc(struct herald_ctx *c, size_t n)
{
	if (!c || n == 0 || n > c->arena_max || c->arena_used + n > c->arena_max)
		return NULL;
	size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	struct arena_chunk *a = c->arena;
	if (!a || a->cap - a->used < need) {
		size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
		a = malloc(sizeof *a + cap);
		if (!a)
			return NULL;
		a->cap = cap;
		a->used = 0;
		a->next = c->arena;
		c->arena = a;
	}
	void *p = (char *)a->data + a->used;
	a->used += need;
	c->arena_used += need;
	return p;
}

char *herald_strdup(struct herald_ctx *c, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = herald_alloc(c, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

const char *herald_tenant(struct herald_ctx *c)
{
	return c ? c->tenant : "";
}

const char *herald_unit(struct herald_ctx *c)
{
	return c ? c->unit : "";
}

long long herald_ms_left(struct herald_ctx *c)
{
	if (!c || !c->deadline)
		return c ? plugins_timeout_us(c->pl->host) / 1000 : 0;
	int64_t left = c->deadline - hr_mono_us();
	return left > 0 ? left / 1000 : 0;
}

static int ds_timeout(struct herald_ctx *c)
{
	long long ms = herald_ms_left(c);
	return ms < 1 ? 1 : ms > 3600000 ? 3600000 : (int)ms;
}

int herald_ds_query(struct herald_ctx *c, const char *source, const char *sql,
                    const char *const *params, int nparams, herald_row_fn row, void *arg)
{
	if (!c)
		return HERALD_ERROR;
	if (!source || !sql || nparams < 0 || (nparams && !params) || !row)
		return herald_fail(c, "herald_ds_query: source, sql and row are required");
	if (!c->pl->host->ds)
		return herald_fail(c, "no data source named %s", source);
	char err[256] = "";
	if (ds_query(c->pl->host->ds, source, sql, params, nparams, ds_timeout(c), row, arg, err,
	             sizeof err) != 0)
		return herald_fail(c, "%s", err[0] ? err : "data source query failed");
	return HERALD_OK;
}

int herald_ds_exec(struct herald_ctx *c, const char *source, const char *sql,
                   const char *const *params, int nparams, long long *affected)
{
	if (!c)
		return HERALD_ERROR;
	long long dummy;
	if (!source || !sql || nparams < 0 || (nparams && !params))
		return herald_fail(c, "herald_ds_exec: source and sql are required");
	if (!c->pl->host->ds)
		return herald_fail(c, "no data source named %s", source);
	char err[256] = "";
	if (ds_exec(c->pl->host->ds, source, sql, params, nparams, ds_timeout(c),
	            affected ? affected : &dummy, err, sizeof err) != 0)
		return herald_fail(c, "%s", err[0] ? err : "data source statement failed");
	return HERALD_OK;
}

/* ---- records ---- */

int herald_record_count(const struct herald_record *r)
{
	return r ? r->n : 0;
}

const char *herald_record_name(const struct herald_record *r, int i)
{
	return r && i >= 0 && i < r->n ? r->names[i] : NULL;
}

const char *herald_record_value(const struct herald_record *r, int i)
{
	return r && i >= 0 && i < r->n ? r->values[i] : NULL;
}

const char *herald_record_get(const struct herald_record *r, const char *name)
{
	for (int i = 0; r && name && i < r->n; i++)
		if (strcmp(r->names[i], name) == 0)
			return r->values[i];
	return NULL;
}

/* ---- drafts ---- */

const char *herald_draft_recipient(const struct herald_draft *d)
{
	return d ? d->d->recipient : NULL;
}

int herald_draft_param_count(const struct herald_draft *d)
{
	return d ? d->d->nparams : 0;
}

const char *herald_draft_param(const struct herald_draft *d, int i)
{
	return d && i >= 0 && i < d->d->nparams ? d->d->params[i] : NULL;
}

int herald_draft_set_recipient(struct herald_draft *d, const char *to)
{
	if (!d || !text_ok(to, HR_ADDR_MAX) || !*to)
		return HERALD_ERROR;
	hr_strlcpy(d->d->recipient, to, sizeof d->d->recipient);
	return HERALD_OK;
}

int herald_draft_set_param(struct herald_draft *d, int i, const char *value)
{
	if (!d || i < 0 || i >= d->d->nparams || !text_ok(value, 1025))
		return HERALD_ERROR;
	char *v = strdup(value);
	if (!v)
		return HERALD_ERROR;
	free(d->d->params[i]);
	d->d->params[i] = v;
	return HERALD_OK;
}

int herald_draft_set_channel(struct herald_draft *d, const char *channel, const char *account)
{
	if (!d || !name_text_ok(channel, sizeof d->d->channel) ||
	    (account && *account && !name_text_ok(account, sizeof d->d->account)))
		return HERALD_ERROR;
	hr_strlcpy(d->d->channel, channel, sizeof d->d->channel);
	hr_strlcpy(d->d->account, account ? account : "", sizeof d->d->account);
	return HERALD_OK;
}

int herald_draft_set_route(struct herald_draft *d, const char *route)
{
	if (!d || !route || (*route && !name_text_ok(route, sizeof d->d->route)))
		return HERALD_ERROR;
	hr_strlcpy(d->d->route, route, sizeof d->d->route);
	return HERALD_OK;
}

int herald_draft_set_policy(struct herald_draft *d, const char *policy)
{
	if (!d || !name_text_ok(policy, sizeof d->d->policy))
		return HERALD_ERROR;
	hr_strlcpy(d->d->policy, policy, sizeof d->d->policy);
	return HERALD_OK;
}

int herald_draft_skip(struct herald_draft *d, const char *reason)
{
	if (!d)
		return HERALD_ERROR;
	d->d->skip = true;
	hr_utf8_copy(d->d->skip_reason, reason && *reason ? reason : "skipped",
	             PLUGIN_SKIP_REASON_MAX + 1);
	return HERALD_OK;
}

/* ---- messages ---- */

#define MSG_GETTER(fn, field)                                                                      \
	const char *fn(const struct herald_msg *m)                                                 \
	{                                                                                          \
		return m ? m->field : "";                                                          \
	}
MSG_GETTER(herald_msg_id, id)
MSG_GETTER(herald_msg_tenant, tenant)
MSG_GETTER(herald_msg_unit, unit)
MSG_GETTER(herald_msg_channel, channel)
MSG_GETTER(herald_msg_account, account)
MSG_GETTER(herald_msg_recipient, recipient)
MSG_GETTER(herald_msg_batch, batch)
MSG_GETTER(herald_msg_status, status)
MSG_GETTER(herald_msg_error, error)
#undef MSG_GETTER

const char *herald_msg_content(const struct herald_msg *m)
{
	return m && m->content ? m->content : "";
}

int herald_msg_attempt(const struct herald_msg *m)
{
	return m ? m->attempt : 0;
}

/* ---- verdicts ---- */

int herald_verdict_skip(struct herald_verdict *v, const char *reason)
{
	if (!v)
		return HERALD_ERROR;
	v->skip = true;
	hr_utf8_copy(v->reason, reason && *reason ? reason : "skipped", sizeof v->reason);
	return HERALD_OK;
}

int herald_verdict_route(struct herald_verdict *v, const char *channel, const char *account,
                         const char *text, const char *reason)
{
	if (!v || (!channel && !account) || (channel && !name_text_ok(channel, 16)) ||
	    (account && !name_text_ok(account, HR_NAME_MAX)) ||
	    (text && !text_ok(text, PLUGIN_ROUTE_TEXT_MAX + 1)))
		return HERALD_ERROR;
	char *t = text && *text ? strdup(text) : NULL;
	if (text && *text && !t)
		return HERALD_ERROR;
	free(v->text);
	v->text = t;
	v->route = true;
	hr_strlcpy(v->channel, channel ? channel : "", sizeof v->channel);
	hr_strlcpy(v->account, account ? account : "", sizeof v->account);
	if (!v->skip)
		hr_utf8_copy(v->reason, reason && *reason ? reason : "route changed",
		             sizeof v->reason);
	return HERALD_OK;
}

/* ---- events ---- */

const char *herald_event_kind(const struct herald_event *e)
{
	return e ? e->kind : "";
}

const char *herald_event_status(const struct herald_event *e)
{
	return e ? e->status : "";
}

const char *herald_event_from(const struct herald_event *e)
{
	return e ? e->from : "";
}

const char *herald_event_text(const struct herald_event *e)
{
	return e && e->text ? e->text : "";
}

const char *herald_event_payload(const struct herald_event *e)
{
	return e && e->payload ? e->payload : "";
}

/* ---- key -> value ---- */

int herald_kv_put(struct herald_kv *o, const char *key, const char *value)
{
	if (!o || !o->obj)
		return HERALD_ERROR;
	if (!text_ok(key, 64) || !*key || !text_ok(value, PLUGIN_KV_VALUE_MAX + 1) ||
	    (!json_object_get(o->obj, key) && json_object_size(o->obj) >= PLUGIN_KV_MAX) ||
	    json_object_set_new(o->obj, key, json_string(value)) != 0) {
		o->bad = true;
		return HERALD_ERROR;
	}
	return HERALD_OK;
}

/* ---- list_campaigns ---- */

const char *herald_filter_get(const struct herald_filter *f, const char *key)
{
	return f && key ? json_string_value(json_object_get(f->obj, key)) : NULL;
}

struct herald_kv *herald_list_add(struct herald_list *l)
{
	if (!l || l->n >= PLUGIN_LIST_MAX)
		return NULL;
	json_t *o = json_object();
	if (!o || json_array_append_new(l->arr, o) != 0)
		return NULL;
	struct herald_kv *kv = &l->items[l->n++];
	kv->obj = o;
	kv->bad = false;
	return kv;
}
