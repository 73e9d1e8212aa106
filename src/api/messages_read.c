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
#include "api/stream.h"
#include "core/phone.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

json_t *api_time_json(int64_t us)
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

json_t *api_text_or_null(const char *s)
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
	json_t *j = json_pack(
	    "{s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:i, s:o, s:o, s:o, s:o}", "id",
	    text_json(m->id), "channel", text_json(m->channel), "account",
	    text_json(api_account_name(m->tenant_id, m->account_id)), "to", text_json(m->recipient),
	    "status", msg_status_name(m->status), "priority",
	    m->priority == PRIO_TRANSACTIONAL ? "transactional" : "bulk", "delivery_policy",
	    delivery_policy_name(m->policy), "content", stored_json(m->content), "body",
	    api_text_or_null(m->body), "attempts", m->attempts, "provider_id",
	    api_text_or_null(m->provider_id), "error", err, "created_at",
	    api_time_json(m->created_at), "updated_at", api_time_json(m->updated_at));
	if (j && m->batch_id[0] &&
	    json_object_set_new(j, "batch_id", text_json(m->batch_id)) != 0) {
		json_decref(j);
		return NULL;
	}
	if (j && m->expires_at > 0 &&
	    json_object_set_new(j, "expires_at", api_time_json(m->expires_at)) != 0) {
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
	                 api_time_json(e->at), "type", text_json(e->type), "source",
	                 text_json(e->source), "status", status, "applied", e->applied,
	                 "provider_at", api_time_json(e->provider_at), "detail",
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

/* The search's filters (GET /v1/messages, its CSV export, and a campaign's
 * messages, whose path names the campaign instead of batch_id). */
static const char *const list_params[] = {
    "status",      "channel",         "to",      "region",     "id",
    "provider_id", "idempotency_key", "account", "error_code", "since",
    "until",       "limit",           "cursor",  "batch_id",   NULL,
};
static const char *const batch_list_params[] = {
    "status",  "channel",    "to",    "region", "id",    "provider_id", "idempotency_key",
    "account", "error_code", "since", "until",  "limit", "cursor",      NULL,
};

static const char *qarg(struct api_req *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

/* A text filter compared as is: at most max bytes (what the column can
 * hold), so a longer one is an error rather than a search that can never
 * match. */
static int text_arg(struct api_req *r, const char *name, size_t max, const char **out,
                    struct hr_err *err)
{
	const char *v = qarg(r, name);
	if (v && strlen(v) > max)
		return hr_fail(err, HR_EINVAL, name, "%s is longer than %zu bytes", name, max);
	*out = v;
	return 0;
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

/* The forms a recipient filter takes (see to_filter). */
struct to_forms {
	char to[HR_ADDR_MAX];
	char plus[HR_ADDR_MAX];   /* "+447911123456" */
	char digits[HR_ADDR_MAX]; /* "447911123456" */
};

/*
 * The recipient filter. With a channel, the value is normalised by that
 * channel's rules, as messages of it are stored. Without one, a value that
 * reads as a phone number matches it on every channel: WhatsApp stores
 * "447911123456", SMS and RCS "+447911123456", so "+44 7911 123456",
 * "447911123456" and "0044 7911 123456" all find both; region reads a
 * national number ("07911 123456" with GB) through libphonenumber
 * (core/phone.h). Anything else (a Telegram chat id such as "-1001234",
 * "@channel") goes through the old rule: the tenant's only channel's
 * normalisation, or the value as given.
 */
static int to_filter(struct api_req *r, struct msg_filter *f, const char *v, const char *region,
                     struct to_forms *t, struct hr_err *err)
{
	char e164[HR_PHONE_E164_SIZE];
	if (region) {
		struct hr_phone_result res;
		int rc = hr_phone_normalize(v, strlen(v), region, e164, sizeof e164, &res);
		if (rc == HR_EINVAL)
			return hr_fail(err, HR_EINVAL, "to", "to is not a phone number of %s: %s",
			               region, res.text);
		if (rc)
			return hr_fail(err, rc, "to", "cannot read to as a phone number");
		v = e164;
	}
	int rc;
	if (f->channel) {
		if ((rc = normalize_filter_to(r, f->channel, v, t->to, err)) == 0)
			f->recipient = t->to;
		return rc;
	}
	/* Digits with or without '+' (phone_e164), then the "00" prefix and
	 * other international forms libphonenumber reads without a region. */
	struct hr_err perr;
	bool phone = phone_e164(v, true, t->plus, &perr) == 0;
	if (!phone && strlen(v) <= HR_PHONE_INPUT_MAX &&
	    hr_phone_normalize(v, strlen(v), NULL, e164, sizeof e164, NULL) == 0) {
		hr_strlcpy(t->plus, e164, sizeof t->plus);
		phone = true;
	}
	if (phone) {
		hr_strlcpy(t->digits, t->plus + 1, sizeof t->digits);
		f->recipient = t->plus;
		f->recipient_alt[0] = t->digits;
		return 0;
	}
	if (region)
		return hr_fail(err, HR_EINVAL, "to", "to is not a phone number");
	if ((rc = normalize_filter_to(r, NULL, v, t->to, err)) == 0)
		f->recipient = t->to;
	return rc;
}

/* recipients.c reads a recipient as the search does. */
int api_recipient_forms(struct api_req *r, const char *v, const char *region,
                        char forms[2][HR_ADDR_MAX], size_t *n, struct hr_err *err)
{
	struct msg_filter f;
	struct to_forms t;
	memset(&f, 0, sizeof f);
	memset(&t, 0, sizeof t);
	int rc = to_filter(r, &f, v, region, &t, err);
	if (rc)
		return rc;
	*n = 0;
	hr_strlcpy(forms[(*n)++], f.recipient, HR_ADDR_MAX);
	if (f.recipient_alt[0])
		hr_strlcpy(forms[(*n)++], f.recipient_alt[0], HR_ADDR_MAX);
	return 0;
}

json_t *api_message_json(const struct message *m)
{
	return message_json(m);
}

static int parse_list_query(struct api_req *r, struct msg_filter *f, struct to_forms *to,
                            bool in_batch, int limit_default, int limit_max, struct hr_err *err)
{
	int rc = api_query_check(r, in_batch ? batch_list_params : list_params, err);
	if (rc)
		return rc;

	memset(f, 0, sizeof *f);
	f->status = -1;
	f->limit = limit_default;
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
	const char *region = qarg(r, "region");
	if (region && !hr_phone_region_known(region)) {
		char cv[8];
		return hr_fail(err, HR_EINVAL, "region",
		               "region must be an ISO 3166 country code such as GB, not '%s'",
		               api_clip(cv, sizeof cv, region));
	}
	if ((v = qarg(r, "to")) && (rc = to_filter(r, f, v, region, to, err)) != 0)
		return rc;
	if (region && !v)
		return hr_fail(err, HR_EINVAL, "region", "region reads the phone number in to");
	if ((v = qarg(r, "id"))) {
		if (!hr_id_valid(v))
			return hr_fail(err, HR_EINVAL, "id", "id must be a Herald message id");
		f->id = v;
	}
	if ((v = qarg(r, "batch_id"))) {
		if (!hr_id_valid(v))
			return hr_fail(err, HR_EINVAL, "batch_id",
			               "batch_id must be a campaign id");
		f->batch_id = v;
	}
	if ((rc = text_arg(r, "provider_id", HR_PROVIDER_ID_MAX - 1, &f->provider_id, err)) ||
	    (rc = text_arg(r, "idempotency_key", 255, &f->idem_key, err)) ||
	    (rc = text_arg(r, "error_code", HR_ERRCODE_MAX - 1, &f->error_code, err)))
		return rc;
	if ((v = qarg(r, "account"))) {
		/* The tenant's own account names only: another tenant's is as
		 * unknown as one that does not exist. */
		const struct channel_account *a = api_account_lookup(r->srv, r->tenant, v);
		if (!a) {
			char cv[HR_NAME_MAX];
			return hr_fail(err, HR_EINVAL, "account", "no account '%s'",
			               api_clip(cv, sizeof cv, v));
		}
		f->account_id = a->id;
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
		if (errno || *end || n < 1 || n > limit_max)
			return hr_fail(err, HR_EINVAL, "limit",
			               "limit must be an integer from 1 to %d", limit_max);
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
	struct to_forms to;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = parse_list_query(r, &f, &to, batch_id != NULL, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
	                          &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	if (batch_id)
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

/* ---------------------------------------------------------------------------
 * CSV export of a search: GET /v1/messages/export.csv, the same filters.
 * ------------------------------------------------------------------------- */

#define EXPORT_PAGE 1000            /* messages per store read */
#define EXPORT_LIMIT_DEFAULT 100000 /* rows when the client names no limit */
#define EXPORT_LIMIT_MAX 1000000    /* rows one export may have */
#define EXPORT_BLOCK 65536          /* MHD's block size for the callback */

static const char export_head[] =
    "\xEF\xBB\xBF" /* UTF-8 BOM: Excel reads the file as UTF-8 */
    "id,created_at,updated_at,channel,account,to,status,provider_id,error_code,error_text,"
    "batch_id,attempts,segments\r\n";

/*
 * The stream's own copy of the filter: the response outlives the handler
 * that parsed the query. Memory is one page of messages and its text,
 * whatever the export's length; the rows are bounded by limit.
 */
struct export_stream {
	struct api_pager pg; /* first: the reader's cls */
	struct store *st;
	char tenant[HR_NAME_MAX], unit[HR_NAME_MAX];
	struct to_forms to;
	char id[HR_ID_LEN + 1], batch[HR_ID_LEN + 1], cursor[HR_ID_LEN + 1];
	char channel[16], account[HR_NAME_MAX], provider[HR_PROVIDER_ID_MAX];
	char idem[256], error[HR_ERRCODE_MAX];
	struct msg_filter f;
	int64_t left; /* rows still to write */
};

/* Points f's strings at the stream's copies (each fits: parse_list_query
 * bounded them, or they are the server's own). */
static void export_copy(struct export_stream *x, const struct msg_filter *f,
                        const struct to_forms *to)
{
#define KEEP(field, buf)                                                                           \
	x->f.field = f->field ? (hr_strlcpy(x->buf, f->field, sizeof x->buf), x->buf) : NULL
	x->f = *f;
	x->to = *to;
	KEEP(id, id);
	KEEP(batch_id, batch);
	KEEP(channel, channel);
	KEEP(account_id, account);
	KEEP(provider_id, provider);
	KEEP(idem_key, idem);
	KEEP(error_code, error);
	KEEP(before_id, cursor);
	KEEP(unit, unit);
#undef KEEP
	/* recipient and its other forms point into to (to_filter). */
	const char *forms[] = {to->to, to->plus, to->digits};
	const char *xforms[] = {x->to.to, x->to.plus, x->to.digits};
	for (int k = 0; k < 3; k++) {
		if (f->recipient == forms[k])
			x->f.recipient = xforms[k];
		for (int a = 0; a < 2; a++)
			if (f->recipient_alt[a] == forms[k])
				x->f.recipient_alt[a] = xforms[k];
	}
}

static void export_line(struct hr_buf *b, const struct message *m)
{
	char c[32], u[32];
	if (m->created_at > 0)
		hr_time_format(m->created_at, c);
	else
		c[0] = '\0';
	if (m->updated_at > 0)
		hr_time_format(m->updated_at, u);
	else
		u[0] = '\0';
	hr_buf_printf(b, "%s,%s,%s,%s,", m->id, c, u, m->channel);
	/* As the campaign export: account names, recipients (normalised by
	 * their channel) and provider ids quoted where needed; the provider's
	 * error code and text are outside text, never read as a formula. */
	api_csv_field(b, api_account_name(m->tenant_id, m->account_id), false);
	hr_buf_put(b, ",", 1);
	api_csv_field(b, m->recipient, false);
	hr_buf_printf(b, ",%s,", msg_status_name(m->status));
	api_csv_field(b, m->provider_id, false);
	hr_buf_put(b, ",", 1);
	api_csv_field(b, m->error_code, true);
	hr_buf_put(b, ",", 1);
	api_csv_field(b, m->error_text, true);
	hr_buf_put(b, ",", 1);
	hr_buf_printf(b, "%s,%d,%d\r\n", m->batch_id, m->attempts, m->segments);
}

/* The next page into x->pg.out: 0, or an HR_E code. */
static int export_page(struct api_pager *p)
{
	struct export_stream *x = (struct export_stream *)p;
	x->f.limit = x->left < EXPORT_PAGE ? (int)x->left : EXPORT_PAGE;
	struct message *ms = NULL;
	size_t n = 0;
	bool more = false;
	int rc = x->st->ops->message_list(x->st, x->tenant, &x->f, &ms, &n, &more);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		export_line(&p->out, &ms[i]);
		message_clear(&ms[i]);
	}
	if (n) {
		hr_strlcpy(x->cursor, ms[n - 1].id, sizeof x->cursor);
		x->f.before_id = x->cursor;
	}
	free(ms);
	x->left -= (int64_t)n;
	if (!more || x->left <= 0)
		p->done = true;
	return p->out.oom ? HR_ENOMEM : 0;
}

static void export_failed(struct api_pager *p, int rc)
{
	struct export_stream *x = (struct export_stream *)p;
	hr_log(HR_LOG_ERROR, "api", "message export of tenant %s failed after %s: %s", x->tenant,
	       x->cursor[0] ? x->cursor : "the start", hr_code_name(rc));
}

static void export_free(void *cls)
{
	struct export_stream *x = cls;
	free(x->pg.out.p);
	free(x);
}

/*
 * Streams the search's messages as CSV, newest first, at most limit rows
 * (default 100,000, at most 1,000,000): when exactly limit rows came there
 * may be more, and cursor=<the last id> continues. The header and the first
 * page are read before the status line, so a bad filter or a store that
 * fails at once gets a proper error.
 */
enum MHD_Result api_messages_export_csv(struct api_req *r)
{
	struct msg_filter f;
	struct to_forms to;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = parse_list_query(r, &f, &to, false, EXPORT_LIMIT_DEFAULT, EXPORT_LIMIT_MAX, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	f.unit = r->who.unit[0] ? r->who.unit : NULL;
	struct export_stream *x = calloc(1, sizeof *x);
	if (!x)
		return api_fail(r, HR_ENOMEM, NULL);
	x->pg.page = export_page;
	x->pg.failed = export_failed;
	x->st = r->srv->o.store;
	hr_strlcpy(x->tenant, r->tenant, sizeof x->tenant);
	x->left = f.limit;
	export_copy(x, &f, &to);
	hr_buf_put(&x->pg.out, export_head, sizeof export_head - 1);
	if ((rc = export_page(&x->pg)) != 0) {
		export_free(x);
		return api_fail(r, rc, NULL);
	}
	static const char *const headers[] = {
	    MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv; charset=utf-8",
	    MHD_HTTP_HEADER_CONTENT_DISPOSITION, "attachment; filename=\"messages.csv\"", NULL};
	return api_stream_respond(r, EXPORT_BLOCK, api_pager_read, x, export_free, headers);
}
