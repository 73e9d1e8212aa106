/*
 * recipients.c - a recipient's history for the dashboard:
 *   GET /v1/recipients/{to}           to: a phone number in any written
 *                                     form (as the message search reads it,
 *                                     region= for a national one) or a chat id
 *   GET /v1/messages/{id}/recipient   the same, for that message's recipient
 *                                     (a masked dashboard session never sees
 *                                     the number, so it links by message)
 *
 * One answer: the tenant's messages to the recipient across campaigns and
 * channels (newest first, paged by cursor, at most RECIP_PAGE_MAX a page),
 * its latest replies, its opt-out (suppression) state per channel and that
 * state's history (added, reason replaced, removed: when, why, from which
 * message, by whom), each bounded. Every read is the caller's tenant's and
 * an index range; a unit key sees its unit's messages and the replies to
 * them (and only through those does it know a recipient). A recipient the
 * caller has nothing for is a 404, the same answer whether or not another
 * tenant (or unit) has messaged it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "core/phone.h"

#define RECIP_PAGE_DEFAULT 50
#define RECIP_PAGE_MAX 200
#define RECIP_REPLIES_MAX 100 /* latest replies in one answer */
#define RECIP_HISTORY_MAX 100 /* latest opt-out changes in one answer */

static int parse_query(struct api_req *r, bool by_message, int *limit, const char **cursor,
                       const char **region, struct hr_err *err)
{
	static const char *const params[] = {"limit", "cursor", "region", NULL};
	static const char *const params_msg[] = {"limit", "cursor", NULL};
	int rc = api_query_check(r, by_message ? params_msg : params, err);
	if (rc)
		return rc;
	*limit = RECIP_PAGE_DEFAULT;
	const char *v = api_query(r, "limit");
	if (v && *v) {
		char *end;
		errno = 0;
		long n = strtol(v, &end, 10);
		if (errno || *end || n < 1 || n > RECIP_PAGE_MAX)
			return hr_fail(err, HR_EINVAL, "limit",
			               "limit must be an integer from 1 to %d", RECIP_PAGE_MAX);
		*limit = (int)n;
	}
	*cursor = api_query(r, "cursor");
	if (*cursor && !**cursor)
		*cursor = NULL;
	if (*cursor && !hr_id_valid(*cursor))
		return hr_fail(err, HR_EINVAL, "cursor",
		               "cursor must be the next_cursor of a previous page");
	*region = by_message ? NULL : api_query(r, "region");
	if (*region && !**region)
		*region = NULL;
	if (*region && !hr_phone_region_known(*region)) {
		char cv[8];
		return hr_fail(err, HR_EINVAL, "region",
		               "region must be an ISO 3166 country code such as GB, not '%s'",
		               api_clip(cv, sizeof cv, *region));
	}
	return 0;
}

/* The tenant's messages to the recipient: one page into *out. */
static int messages_page(struct api_req *r, char forms[2][HR_ADDR_MAX], size_t nforms, int limit,
                         const char *cursor, json_t **out, json_t **next, size_t *count)
{
	struct store *st = r->srv->o.store;
	struct msg_filter f;
	memset(&f, 0, sizeof f);
	f.status = -1;
	f.limit = limit;
	f.recipient = forms[0];
	f.recipient_alt[0] = nforms > 1 ? forms[1] : NULL;
	f.before_id = cursor;
	f.unit = r->who.unit[0] ? r->who.unit : NULL;
	struct message *ms = NULL;
	size_t n = 0;
	bool more = false;
	int rc = st->ops->message_list(st, r->tenant, &f, &ms, &n, &more);
	if (rc)
		return rc;
	json_t *data = json_array();
	size_t i = 0;
	while (data && i < n && json_array_append_new(data, api_message_json(&ms[i])) == 0)
		i++;
	*next = more && n ? json_string(ms[n - 1].id) : json_null();
	for (size_t k = 0; k < n; k++)
		message_clear(&ms[k]);
	free(ms);
	if (!data || i < n || !*next) {
		json_decref(data);
		json_decref(*next);
		return HR_ENOMEM;
	}
	*out = data;
	*count = n;
	return 0;
}

static json_t *reply_json(struct api_req *r, const struct inbound_row *in)
{
	struct channel_account *a = account_set_find(r->srv->o.accounts, in->account_id);
	return json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
	                 (json_int_t)in->id, "account", api_account_name(r->tenant, in->account_id),
	                 "channel", a ? json_string(a->ops->name) : json_null(), "message_id",
	                 in->message_id[0] ? json_string(in->message_id) : json_null(), "kind",
	                 api_text_or_null(in->kind), "text", api_text_or_null(in->text), "payload",
	                 api_text_or_null(in->payload), "from", api_text_or_null(in->sender),
	                 "received_at", api_time_json(in->received_at), "provider_at",
	                 api_time_json(in->provider_at));
}

static int replies_json(struct api_req *r, const char *const *forms, size_t nforms, json_t **out,
                        size_t *count)
{
	struct store *st = r->srv->o.store;
	struct inbound_row *v = NULL;
	size_t n = 0;
	int rc =
	    st->ops->recipient_inbound(st, r->tenant, forms, nforms, RECIP_REPLIES_MAX, &v, &n);
	if (rc)
		return rc;
	json_t *data = json_array();
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		/* A unit key sees the replies to its unit's messages only. */
		if (data && api_unit_visible(r, v[i].unit, false)) {
			if (json_array_append_new(data, reply_json(r, &v[i])) != 0) {
				json_decref(data);
				data = NULL;
			} else {
				(*count)++;
			}
		}
		inbound_row_clear(&v[i]);
	}
	free(v);
	if (!data)
		return HR_ENOMEM;
	*out = data;
	return 0;
}

/* Whether chans[0..n) holds name; appends it otherwise (up to max). */
static void channel_add(const char **chans, size_t *n, size_t max, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(chans[i], name) == 0)
			return;
	if (*n < max)
		chans[(*n)++] = name;
}

/*
 * The opt-out state on each channel the tenant sends on (its accounts'
 * channels) and on any channel the recipient has an entry for, and the
 * latest changes. A unit key sees the state (it decides whether the unit's
 * messages go out) but not which message caused a change: that message
 * may be another unit's.
 */
static int optout_json(struct api_req *r, const char *const *forms, size_t nforms, json_t **state,
                       json_t **history, size_t *count)
{
	struct store *st = r->srv->o.store;
	struct suppression_row *cur = NULL;
	struct supp_event_row *ev = NULL;
	size_t ncur = 0, nev = 0;
	int rc = st->ops->recipient_supp(st, r->tenant, forms, nforms, RECIP_HISTORY_MAX, &cur,
	                                 &ncur, &ev, &nev);
	if (rc)
		return rc;
	const char *chans[16];
	size_t nch = 0;
	const struct channel_account *a;
	for (size_t i = 0; (a = account_set_at(r->srv->o.accounts, i)) != NULL; i++)
		if (strcmp(a->tenant_id, r->tenant) == 0)
			channel_add(chans, &nch, 16, a->ops->name);
	for (size_t i = 0; i < ncur; i++)
		channel_add(chans, &nch, 16, cur[i].channel);
	json_t *s = json_array(), *h = json_array();
	bool ok = s && h;
	for (size_t c = 0; ok && c < nch; c++) {
		const struct suppression_row *e = NULL;
		for (size_t i = 0; i < ncur; i++)
			if (strcmp(cur[i].channel, chans[c]) == 0)
				e = &cur[i];
		json_t *o =
		    json_pack("{s:s, s:b, s:o, s:o}", "channel", chans[c], "suppressed", e != NULL,
		              "reason", e ? api_text_or_null(e->reason) : json_null(), "since",
		              e ? api_time_json(e->created_at) : json_null());
		ok = o && json_array_append_new(s, o) == 0;
	}
	for (size_t i = 0; ok && i < nev; i++) {
		bool show_msg = ev[i].message_id[0] && !r->who.unit[0];
		json_t *o = json_pack(
		    "{s:I, s:s, s:s, s:o, s:o, s:o, s:o}", "id", (json_int_t)ev[i].id, "channel",
		    ev[i].channel, "action", ev[i].action, "reason", api_text_or_null(ev[i].reason),
		    "message_id", show_msg ? json_string(ev[i].message_id) : json_null(), "by",
		    api_text_or_null(ev[i].actor), "at", api_time_json(ev[i].at));
		ok = o && json_array_append_new(h, o) == 0;
	}
	free(cur);
	free(ev);
	if (!ok) {
		json_decref(s);
		json_decref(h);
		return HR_ENOMEM;
	}
	*state = s;
	*history = h;
	*count = ncur + nev;
	return 0;
}

static enum MHD_Result answer(struct api_req *r, char forms[2][HR_ADDR_MAX], size_t nforms,
                              int limit, const char *cursor)
{
	const char *const fv[2] = {forms[0], nforms > 1 ? forms[1] : forms[0]};
	json_t *msgs = NULL, *next = NULL, *replies = NULL, *state = NULL, *history = NULL;
	size_t nmsg = 0, nrep = 0, nopt = 0;
	int rc = messages_page(r, forms, nforms, limit, cursor, &msgs, &next, &nmsg);
	if (rc == 0)
		rc = replies_json(r, fv, nforms, &replies, &nrep);
	if (rc == 0)
		rc = optout_json(r, fv, nforms, &state, &history, &nopt);
	/* A unit key knows a recipient only through its unit's messages and
	 * the replies to them: the tenant's opt-outs alone do not make one. */
	if (r->who.unit[0])
		nopt = 0;
	if (rc == 0 && !cursor && nmsg == 0 && nrep == 0 && nopt == 0)
		rc = HR_ENOTFOUND;
	if (rc) {
		json_decref(msgs);
		json_decref(next);
		json_decref(replies);
		json_decref(state);
		json_decref(history);
		struct hr_err err;
		hr_err_clear(&err);
		if (rc == HR_ENOTFOUND)
			hr_fail(&err, rc, NULL,
			        "no messages, replies or opt-outs for this recipient");
		return api_fail(r, rc, rc == HR_ENOTFOUND ? &err : NULL);
	}
	return api_respond_json(r, 200,
	                        json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "to", forms[0],
	                                  "messages", msgs, "next_cursor", next, "replies", replies,
	                                  "opt_out", state, "opt_out_history", history),
	                        NULL);
}

enum MHD_Result api_recipient_get(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	int limit;
	const char *cursor, *region;
	int rc = parse_query(r, false, &limit, &cursor, &region, &err);
	char forms[2][HR_ADDR_MAX];
	size_t nforms = 0;
	if (rc == 0)
		rc = api_recipient_forms(r, r->path_id, region, forms, &nforms, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	return answer(r, forms, nforms, limit, cursor);
}

enum MHD_Result api_message_recipient_get(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	int limit;
	const char *cursor, *region;
	int rc = parse_query(r, true, &limit, &cursor, &region, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	struct message m;
	memset(&m, 0, sizeof m);
	rc = hr_id_valid(r->path_id) ? st->ops->message_get(st, r->tenant, r->path_id, &m)
	                             : HR_ENOTFOUND;
	if (rc == 0 && !api_unit_visible(r, m.unit, false))
		rc = HR_ENOTFOUND; /* a sibling unit's: as absent as another tenant's */
	char forms[2][HR_ADDR_MAX];
	size_t nforms = 0;
	if (rc == 0)
		rc = api_recipient_forms(r, m.recipient, NULL, forms, &nforms, &err);
	message_clear(&m);
	if (rc == HR_ENOTFOUND) {
		char id[sizeof r->path_id];
		hr_fail(&err, rc, NULL, "no message %s", api_clip(id, sizeof id, r->path_id));
	}
	if (rc != 0)
		return api_fail(r, rc, &err);
	return answer(r, forms, nforms, limit, cursor);
}
