/*
 * messages_read.c - GET /v1/messages/{id} (a message and its audit trail)
 * and GET /v1/messages (filtered, newest first, cursor paging). Every read
 * is scoped by the caller's tenant: another tenant's message is a 404.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

static json_t *time_json(int64_t us)
{
	if (us <= 0)
		return json_null();
	char buf[32];
	hr_time_format(us, buf);
	return json_string(buf);
}

/* A stored JSON text as a value, or null when absent or not JSON. */
static json_t *stored_json(const char *text)
{
	if (!text || !*text)
		return json_null();
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	return j ? j : json_null();
}

/*
 * Stored text as a JSON string. Much of it came from outside (message
 * bodies, provider ids and error texts) and is stored as given, so it may
 * not be valid UTF-8: then each invalid byte is shown as '?' (hr_utf8_copy
 * writes at most as many bytes as it reads, so nothing is cut). NULL only
 * when out of memory.
 */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s) + 1;
	char *t = malloc(n);
	if (!t)
		return NULL;
	hr_utf8_copy(t, s, n);
	j = json_string(t);
	free(t);
	return j;
}

static json_t *nullable_str(const char *s)
{
	return s && *s ? text_json(s) : json_null();
}

/* NULL when it cannot be built (out of memory): callers answer 500 rather
 * than leave the message out. */
static json_t *message_json(const struct message *m)
{
	json_t *err = json_null();
	if (m->error_code[0] || m->error_text[0])
		err = json_pack("{s:o, s:o}", "code", text_json(m->error_code), "message",
		                text_json(m->error_text));
	json_t *j = json_pack("{s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:i, s:o, s:o, s:o, s:o}",
	                      "id", text_json(m->id), "channel", text_json(m->channel),
	                      "account", text_json(api_account_name(m->tenant_id, m->account_id)),
	                      "to", text_json(m->recipient),
	                      "status", msg_status_name(m->status), "priority",
	                      m->priority == PRIO_TRANSACTIONAL ? "transactional" : "bulk",
	                      "delivery_policy", delivery_policy_name(m->policy),
	                      "content", stored_json(m->content), "body", nullable_str(m->body),
	                      "attempts", m->attempts, "provider_id",
	                      nullable_str(m->provider_id), "error", err, "created_at",
	                      time_json(m->created_at), "updated_at", time_json(m->updated_at));
	if (j && m->batch_id[0] &&
	    json_object_set_new(j, "batch_id", text_json(m->batch_id)) != 0) {
		json_decref(j);
		return NULL;
	}
	if (j && m->expires_at > 0 &&
	    json_object_set_new(j, "expires_at", time_json(m->expires_at)) != 0) {
		json_decref(j);
		return NULL;
	}
	/* Segments are what SMS is billed by; other channels have none. */
	if (j && strcmp(m->channel, "sms") == 0 &&
	    json_object_set_new(j, "segments", json_integer(m->segments)) != 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *event_json(const struct message_event *e)
{
	json_t *status = e->status >= 0 && e->status < MSG__COUNT
		? json_string(msg_status_name((enum msg_status)e->status))
		: json_null();
	return json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:o, s:o}", "id", (json_int_t)e->id, "at",
	                 time_json(e->at), "type", text_json(e->type), "source",
	                 text_json(e->source), "status", status, "applied", e->applied,
	                 "provider_at", time_json(e->provider_at), "detail",
	                 stored_json(e->detail));
}

/* A message (or event) that cannot be rendered is a 500 logged with the
 * message's id (api_fail logs every 500), never a silently shorter answer. */
static enum MHD_Result render_failed(struct api_req *r, const char *what, const char *id)
{
	struct hr_err err;
	char cid[HR_ID_LEN + 1];
	hr_fail(&err, HR_EINTERNAL, NULL, "cannot render %s as JSON (message %s)", what,
	        id ? api_clip(cid, sizeof cid, id) : "-");
	return api_fail(r, HR_EINTERNAL, &err);
}

/*
 * The recipient's whole route, from any of its messages: each step's
 * channel and account as planned, the message made for it (null until the
 * step is tried) and its status, and which step reached the recipient
 * (the first DELIVERED or READ; null while none has).
 */
static json_t *route_json(struct store *st, const struct message *m)
{
	json_t *plan = json_loads(m->route, 0, NULL);
	json_t *steps = json_object_get(plan, "steps");
	struct message *v = NULL;
	size_t n = 0;
	if (!json_is_array(steps) || st->ops->message_route(st, m->tenant_id, m->route_root, &v, &n)) {
		json_decref(plan);
		return NULL;
	}
	json_t *out = json_array(), *reached = json_null();
	bool ok = out && reached;
	for (size_t i = 0; ok && i < json_array_size(steps); i++) {
		json_t *s = json_array_get(steps, i);
		const struct message *sm = NULL;
		for (size_t k = 0; k < n; k++)
			if (v[k].route_step == (int)i)
				sm = &v[k];
		const char *acc = json_string_value(json_object_get(s, "account_id"));
		json_t *e = json_pack(
		    "{s:i, s:O, s:o, s:o, s:o}", "step", (int)i, "channel", json_object_get(s, "channel"),
		    "account", text_json(api_account_name(m->tenant_id, acc ? acc : "")), "message_id",
		    sm ? text_json(sm->id) : json_null(), "status",
		    sm ? json_string(msg_status_name(sm->status)) : json_null());
		ok = e && json_array_append_new(out, e) == 0;
		if (ok && sm && json_is_null(reached) &&
		    (sm->status == MSG_DELIVERED || sm->status == MSG_READ)) {
			reached = json_pack("{s:i, s:s, s:s}", "step", (int)i, "channel", sm->channel,
			                    "message_id", sm->id);
			ok = reached != NULL;
		}
	}
	json_t *j = ok ? json_pack("{s:s, s:i, s:O, s:o, s:o}", "root_id", m->route_root, "step",
	                           m->route_step, "fallback_after_s",
	                           json_object_get(plan, "fallback_after_s"), "steps", out,
	                           "reached_by", reached)
	               : NULL;
	if (!j) {
		json_decref(out);
		json_decref(reached);
	}
	for (size_t k = 0; k < n; k++)
		message_clear(&v[k]);
	free(v);
	json_decref(plan);
	return j;
}

enum MHD_Result api_message_get(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	if (!hr_id_valid(r->path_id)) {
		char id[sizeof r->path_id];
		hr_fail(&err, HR_ENOTFOUND, NULL, "no message %s",
		        api_clip(id, sizeof id, r->path_id));
		return api_fail(r, HR_ENOTFOUND, &err);
	}
	struct message m;
	memset(&m, 0, sizeof m);
	int rc = st->ops->message_get(st, r->tenant, r->path_id, &m);
	if (rc == 0 && !api_unit_visible(r, m.unit, false)) {
		message_clear(&m); /* a sibling unit's: as absent as another tenant's */
		rc = HR_ENOTFOUND;
	}
	if (rc != 0) {
		hr_fail(&err, rc, NULL, "no message %s", r->path_id);
		return api_fail(r, rc, &err);
	}
	struct message_event *ev = NULL;
	size_t n = 0;
	rc = st->ops->message_events(st, m.id, &ev, &n);
	if (rc != 0) {
		message_clear(&m);
		return api_fail(r, rc, NULL);
	}
	json_t *j = message_json(&m);
	json_t *events = json_array();
	const char *bad = !j ? "the message" : !events ? "the events" : NULL;
	if (!bad && m.route && m.route_root[0]) {
		json_t *route = route_json(st, &m);
		if (!route || json_object_set_new(j, "route", route) != 0)
			bad = "the route";
	}
	for (size_t i = 0; i < n; i++) {
		if (!bad && json_array_append_new(events, event_json(&ev[i])) != 0)
			bad = "an event";
		message_event_clear(&ev[i]);
	}
	free(ev);
	if (!bad && json_object_set_new(j, "events", events) != 0) {
		events = NULL; /* consumed even on failure */
		bad = "the events";
	}
	if (bad) {
		json_decref(events);
		json_decref(j);
		enum MHD_Result ret = render_failed(r, bad, m.id);
		message_clear(&m);
		return ret;
	}
	message_clear(&m);
	return api_respond_json(r, 200, j, NULL);
}

/* ---------------------------------------------------------------------------
 * Listing.
 * ------------------------------------------------------------------------- */

/*
 * A time filter: unix seconds ("1767225600") or RFC 3339
 * ("2026-01-01T00:00:00Z", fractional seconds and a +hh:mm offset allowed).
 * strptime reads the calendar part; the fraction and offset are a few
 * fixed-width fields it has no conversion for.
 */
static int parse_time(const char *s, int64_t *out)
{
	if (*s && strspn(s, "0123456789") == strlen(s)) {
		errno = 0;
		long long v = strtoll(s, NULL, 10);
		if (errno || v > 253402300799LL) /* 9999-12-31 */
			return HR_EINVAL;
		*out = v * 1000000;
		return 0;
	}
	return hr_time_parse(s, out);
}

static const char *const list_params[] = {
	"status", "channel", "to", "since", "until", "limit", "cursor", NULL,
};

struct list_unknown {
	char name[HR_NAME_MAX];
};

static enum MHD_Result find_unknown(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
	(void)kind, (void)value;
	struct list_unknown *u = cls;
	for (const char *const *p = list_params; *p; p++)
		if (strcmp(key, *p) == 0)
			return MHD_YES;
	api_clip(u->name, sizeof u->name, key); /* MHD has decoded %XX: any bytes */
	return MHD_NO;
}

static const char *qarg(struct api_req *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

/* Recipients are stored normalised: normalise the filter with the channel's
 * rules (the given channel, or the only channel the tenant has). */
static int normalize_filter_to(struct api_req *r, const char *channel, const char *in,
                               char out[HR_ADDR_MAX], struct hr_err *err)
{
	const struct channel_ops *ops = channel ? channel_find(channel) : NULL;
	if (!channel) {
		struct account_set *set = r->srv->o.accounts;
		const struct channel_account *a;
		for (size_t i = 0; (a = account_set_at(set, i)) != NULL; i++) {
			if (strcmp(a->tenant_id, r->tenant) != 0)
				continue;
			if (ops && ops != a->ops) {
				ops = NULL; /* several channels: use the value as given */
				break;
			}
			ops = a->ops;
		}
	}
	if (!ops) {
		if (strlen(in) >= HR_ADDR_MAX)
			return hr_fail(err, HR_EINVAL, "to", "to is too long");
		hr_strlcpy(out, in, HR_ADDR_MAX);
		return 0;
	}
	return ops->normalize_recipient(in, out, err);
}

static int parse_list_query(struct api_req *r, struct msg_filter *f, char to[HR_ADDR_MAX],
                            struct hr_err *err)
{
	struct list_unknown u = {""};
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, find_unknown, &u);
	if (u.name[0])
		return hr_fail(err, HR_EINVAL, u.name, "unknown query parameter '%s'", u.name);

	memset(f, 0, sizeof *f);
	f->status = -1;
	f->limit = LIST_LIMIT_DEFAULT;
	const char *v;
	if ((v = qarg(r, "status"))) {
		enum msg_status s;
		if (msg_status_parse(v, &s) != 0) {
			char cv[32];
			return hr_fail(err, HR_EINVAL, "status", "unknown status '%s'",
			               api_clip(cv, sizeof cv, v));
		}
		f->status = (int)s;
	}
	if ((v = qarg(r, "channel"))) {
		if (!channel_find(v)) {
			char cv[32];
			return hr_fail(err, HR_EINVAL, "channel", "unknown channel '%s'",
			               api_clip(cv, sizeof cv, v));
		}
		f->channel = v;
	}
	if ((v = qarg(r, "to"))) {
		int rc = normalize_filter_to(r, f->channel, v, to, err);
		if (rc != 0)
			return rc;
		f->recipient = to;
	}
	if ((v = qarg(r, "since")) && parse_time(v, &f->since_us) != 0)
		return hr_fail(err, HR_EINVAL, "since",
		               "since must be RFC 3339 (2026-01-15T10:00:00Z) or unix seconds");
	if ((v = qarg(r, "until")) && parse_time(v, &f->until_us) != 0)
		return hr_fail(err, HR_EINVAL, "until",
		               "until must be RFC 3339 (2026-01-15T10:00:00Z) or unix seconds");
	if (f->since_us && f->until_us && f->until_us <= f->since_us)
		return hr_fail(err, HR_EINVAL, "until", "until must be after since");
	if ((v = qarg(r, "limit"))) {
		char *end;
		errno = 0;
		long n = strtol(v, &end, 10);
		if (errno || *end || n < 1 || n > LIST_LIMIT_MAX)
			return hr_fail(err, HR_EINVAL, "limit",
			               "limit must be an integer from 1 to %d", LIST_LIMIT_MAX);
		f->limit = (int)n;
	}
	if ((v = qarg(r, "cursor"))) {
		if (!hr_id_valid(v))
			return hr_fail(err, HR_EINVAL, "cursor",
			               "cursor must be the next_cursor of a previous page");
		f->before_id = v;
	}
	return 0;
}

enum MHD_Result api_messages_list(struct api_req *r)
{
	return api_messages_list_in(r, NULL);
}

enum MHD_Result api_messages_list_in(struct api_req *r, const char *batch_id)
{
	struct store *st = r->srv->o.store;
	struct msg_filter f;
	char to[HR_ADDR_MAX];
	struct hr_err err;
	hr_err_clear(&err);
	int rc = parse_list_query(r, &f, to, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	f.batch_id = batch_id;
	f.unit = r->who.unit[0] ? r->who.unit : NULL;

	struct message *ms = NULL;
	size_t n = 0;
	bool more = false;
	rc = st->ops->message_list(st, r->tenant, &f, &ms, &n, &more);
	if (rc != 0)
		return api_fail(r, rc, NULL);
	/* All of the page or a 500: a page silently missing a message would
	 * also move the cursor past it. */
	json_t *data = json_array();
	size_t i = 0;
	while (data && i < n && json_array_append_new(data, message_json(&ms[i])) == 0)
		i++;
	enum MHD_Result ret;
	if (!data || i < n) {
		json_decref(data);
		ret = render_failed(r, "the listing", i < n ? ms[i].id : NULL);
	} else {
		json_t *next = more && n ? json_string(ms[n - 1].id) : json_null();
		ret = api_respond_json(r, 200,
		                       json_pack("{s:o, s:o}", "data", data, "next_cursor", next),
		                       NULL);
	}
	for (size_t k = 0; k < n; k++)
		message_clear(&ms[k]);
	free(ms);
	return ret;
}
