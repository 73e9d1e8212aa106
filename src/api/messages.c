/*
 * messages.c - accepting messages: POST /v1/messages and /v1/messages:batch.
 *
 * Everything in a request is validated before anything is written, and every
 * error names its field ("to", "template.parameters[1]", "messages[17].to").
 * The accepted messages (and the idempotency record, if the client sent an
 * Idempotency-Key) go to the store in ONE write; the connection is suspended
 * until the writer has committed it, so a 202 always means durable. A sync
 * request registers its dispatcher watch before the insert (so no backend's
 * ordering of writes and callbacks can let the send finish unwatched) and
 * stays suspended (one pending count) until both the insert's callback and
 * the watch's have come, in whichever order.
 *
 * States of a request (r->stage): 0 validate and start the insert; 1 the
 * insert failed, or committed (and, for a sync request, its wait ended: an
 * outcome, or the timeout).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/accept_fast.h"
#include "api/api_int.h"
#include "core/crypto.h"
#include "core/jsonr.h"
#include "core/jsonw.h"
#include "core/segments.h"
#include "obs/metrics.h"
#include "store/group_done.h"

#define IDEM_KEY_MAX 255

enum { STAGE_START = 0, STAGE_INSERTED = 1 };

struct accept {
	bool batch;
	struct message *msgs;
	size_t n;
	char batch_id[HR_ID_LEN + 1];
	char *resp;                  /* the 202 body, also stored for replays */
	bool has_idem;
	char idem_key[HR_NAME_MAX + 1 + IDEM_KEY_MAX + 1]; /* "<unit>\x1f<key>" for a unit */
	char hash[65];
	struct idem_put idem;
	bool sync;
	int64_t timeout_us;
	char *batch_cb; /* the request's callback_url, heap */
	/* Callbacks still to come before the connection is resumed: the
	 * insert's, and a sync request's watch (in either order). */
	atomic_int left;
	/* Filled by the completion callbacks. */
	int rc;
	struct hr_err err;
	struct dispatch_result dres;
};

static void accept_free(void *p)
{
	struct accept *a = p;
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		message_clear(&a->msgs[i]);
	free(a->msgs);
	free(a->batch_cb);
	free(a->resp);
	free(a);
}

/* ---------------------------------------------------------------------------
 * Validation of one message object.
 * ------------------------------------------------------------------------- */

static int parse_priority(json_t *v, int *out, struct hr_err *err)
{
	const char *s = json_string_value(v);
	if (s && strcmp(s, "transactional") == 0)
		*out = PRIO_TRANSACTIONAL;
	else if (s && strcmp(s, "bulk") == 0)
		*out = PRIO_BULK;
	else
		return hr_fail(err, HR_EINVAL, "priority",
		               "priority must be \"transactional\" or \"bulk\"");
	return 0;
}

/* The account to send from: the one named (it must be the tenant's and of
 * the requested channel), or the tenant's first account of that channel. */
static int resolve_account(const struct api_server *s, const char *tenant, const char *unit,
                           const char *channel, const char *account,
                           struct channel_account **out, struct hr_err *err)
{
	struct account_set *set = s->o.accounts;
	char cc[32];
	if (account) {
		struct channel_account *a = api_account_lookup(s, tenant, account);
		/* A unit sends from its own accounts and the tenant's shared ones;
		 * a sibling unit's is as unknown as another tenant's. */
		if (a && unit && unit[0] && a->unit[0] && strcmp(a->unit, unit) != 0)
			a = NULL;
		if (!a) {
			char ca[HR_NAME_MAX];
			return hr_fail(err, HR_EINVAL, "account", "no account '%s' for this tenant",
			               api_clip(ca, sizeof ca, account));
		}
		if (strcmp(a->ops->name, channel) != 0)
			return hr_fail(err, HR_EINVAL, "account",
			               "account '%s' is a %s account, not %s",
			               api_account_name(tenant, a->id), a->ops->name,
			               api_clip(cc, sizeof cc, channel));
		*out = a;
		return 0;
	}
	if (!channel_find(channel))
		return hr_fail(err, HR_EINVAL, "channel", "unknown channel '%s'",
		               api_clip(cc, sizeof cc, channel));
	struct channel_account *a;
	for (size_t i = 0; (a = account_set_at(set, i)) != NULL; i++) {
		if (strcmp(a->tenant_id, tenant) == 0 && strcmp(a->ops->name, channel) == 0 &&
		    (!unit || !unit[0] || !a->unit[0] || strcmp(a->unit, unit) == 0)) {
			*out = a;
			return 0;
		}
	}
	return hr_fail(err, HR_EINVAL, "account", "this tenant has no %s account", channel);
}

struct parse_ctx {
	const struct api_server *s;
	const char *tenant;
	const char *unit;     /* the caller's business unit, "" or NULL for none */
	bool batch;           /* a batch item: no mode/timeout_ms */
	int default_prio;
	int64_t now;
	const char *batch_id;
	const char *callback_url; /* the batch request's, for items naming none */
};

static const char *const single_keys[] = {
	"channel", "account", "to", "priority", "delivery_policy", "mode", "timeout_ms",
	"callback_url", "expires_at", "ttl_seconds", "route", "fallback_after_s", "fallback_text",
	NULL,
};

/* The longest a message may wait to be sent (expires_at, ttl_seconds). */
#define EXPIRY_MAX_S (30LL * 86400)
/* A route's steps, and the longest a step waits for a receipt. */
#define ROUTE_STEPS_MAX 4
#define FALLBACK_AFTER_MAX_S (7LL * 86400)
#define FALLBACK_TEXT_MAX 1600

/* expires_at (RFC 3339) or ttl_seconds: *out the expiry (0: none). */
static int parse_expiry(json_t *o, int64_t now, int64_t *out, struct hr_err *err)
{
	json_t *jexp = json_object_get(o, "expires_at"), *jttl = json_object_get(o, "ttl_seconds");
	*out = 0;
	if (jexp && jttl)
		return hr_fail(err, HR_EINVAL, "ttl_seconds",
		               "give expires_at or ttl_seconds, not both");
	if (jttl) {
		if (!json_is_integer(jttl) || json_integer_value(jttl) < 1 ||
		    json_integer_value(jttl) > EXPIRY_MAX_S)
			return hr_fail(err, HR_EINVAL, "ttl_seconds",
			               "ttl_seconds must be an integer from 1 to %lld", EXPIRY_MAX_S);
		*out = now + (int64_t)json_integer_value(jttl) * 1000000;
	} else if (jexp) {
		int64_t t = 0;
		if (!json_is_string(jexp) || hr_time_parse(json_string_value(jexp), &t))
			return hr_fail(err, HR_EINVAL, "expires_at",
			               "expires_at must be an RFC 3339 time such as 2026-12-24T09:05:00Z");
		if (t <= now)
			return hr_fail(err, HR_EINVAL, "expires_at", "expires_at is in the past");
		if (t - now > EXPIRY_MAX_S * 1000000)
			return hr_fail(err, HR_EINVAL, "expires_at",
			               "expires_at is more than %lld days away", EXPIRY_MAX_S / 86400);
		*out = t;
	}
	return 0;
}

static bool route_channel_ok(const char *c)
{
	return strcmp(c, "whatsapp") == 0 || strcmp(c, "sms") == 0 || strcmp(c, "rcs") == 0;
}

/*
 * route: ["whatsapp","sms"] or [{"channel":"whatsapp","account":"wa-1"},...]
 * (2 to 4 steps over whatsapp, sms and rcs; a step names its account or
 * takes the tenant's first of that channel). The first step is the message
 * itself (its channel, and its account when it names one). The follow-ups
 * say fallback_text, or the message's rendered body. fallback_after_s: how
 * long a SENT step waits for a receipt before the next is tried (absent: a
 * step falls back on failure only). Fills m's route fields.
 */
static int parse_route(const struct parse_ctx *pc, json_t *o, const struct channel_account *acct,
                       const char *body, struct message *m, struct hr_err *err)
{
	json_t *jr = json_object_get(o, "route");
	json_t *jafter = json_object_get(o, "fallback_after_s");
	json_t *jtext = json_object_get(o, "fallback_text");
	if (!jr) {
		if (jafter || jtext)
			return hr_fail(err, HR_EINVAL, jafter ? "fallback_after_s" : "fallback_text",
			               "%s needs a route", jafter ? "fallback_after_s" : "fallback_text");
		return 0;
	}
	size_t n = json_array_size(jr);
	if (!json_is_array(jr) || n < 2 || n > ROUTE_STEPS_MAX)
		return hr_fail(err, HR_EINVAL, "route",
		               "route must be an array of 2 to %d channels", ROUTE_STEPS_MAX);
	int64_t after = 0;
	if (jafter) {
		if (!json_is_integer(jafter) || json_integer_value(jafter) < 1 ||
		    json_integer_value(jafter) > FALLBACK_AFTER_MAX_S)
			return hr_fail(err, HR_EINVAL, "fallback_after_s",
			               "fallback_after_s must be an integer from 1 to %lld",
			               FALLBACK_AFTER_MAX_S);
		after = (int64_t)json_integer_value(jafter);
	}
	const char *text = body;
	if (jtext) {
		text = json_string_value(jtext);
		if (!text || !*text || strlen(text) > FALLBACK_TEXT_MAX)
			return hr_fail(err, HR_EINVAL, "fallback_text",
			               "fallback_text must be 1 to %d bytes of text", FALLBACK_TEXT_MAX);
	}
	if (!text || !*text)
		return hr_fail(err, HR_EINVAL, "fallback_text",
		               "this message has no text to send on the route's next channel: give "
		               "fallback_text");
	json_t *steps = json_array();
	int rc = steps ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_t *st = json_array_get(jr, i);
		const char *ch = json_is_string(st) ? json_string_value(st)
		                                    : json_string_value(json_object_get(st, "channel"));
		json_t *jacc = json_is_object(st) ? json_object_get(st, "account") : NULL;
		char field[32];
		snprintf(field, sizeof field, "route[%zu]", i);
		if (!ch || !route_channel_ok(ch) || (jacc && !json_is_string(jacc)) ||
		    (json_is_object(st) && json_object_size(st) > (jacc ? 2u : 1u))) {
			rc = hr_fail(err, HR_EINVAL, field,
			             "%s must be \"whatsapp\", \"sms\" or \"rcs\", or an object with "
			             "channel and account",
			             field);
			break;
		}
		const struct channel_account *a = NULL;
		if (i == 0) {
			if (strcmp(ch, acct->ops->name) != 0 ||
			    (jacc && strcmp(json_string_value(jacc), acct->id) != 0 &&
			     !api_account_lookup(pc->s, pc->tenant, json_string_value(jacc)))) {
				rc = hr_fail(err, HR_EINVAL, field,
				             "the route's first step is the message itself: %s", acct->ops->name);
				break;
			}
			a = acct;
		} else {
			struct channel_account *ra = NULL;
			if ((rc = resolve_account(pc->s, pc->tenant, pc->unit, ch,
			                          json_string_value(jacc), &ra, err))) {
				char msg[sizeof err->msg];
				hr_strlcpy(msg, err->msg, sizeof msg);
				rc = hr_fail(err, rc, field, "%s: %s", field, msg);
				break;
			}
			a = ra;
		}
		json_t *step = json_pack("{s:s, s:s}", "channel", a->ops->name, "account_id", a->id);
		if (!step || json_array_append_new(steps, step))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	json_t *route = NULL;
	if (rc == 0) {
		route = json_pack("{s:o, s:I, s:s}", "steps", steps, "fallback_after_s",
		                  (json_int_t)after, "text", text);
		steps = NULL;
		m->route = route ? json_dumps(route, JSON_COMPACT) : NULL;
		if (!m->route)
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	json_decref(steps);
	json_decref(route);
	if (rc)
		return rc;
	m->route_steps = (int)n;
	m->route_step = 0;
	m->fallback_after = after * 1000000;
	return 0;
}

/* The request keys of a message: its envelope here, its content in
 * content.c; a batch item has no mode or timeout_ms. */
static bool key_allowed(const char *key, bool batch)
{
	if (api_content_key(key))
		return true;
	for (const char *const *k = single_keys; *k; k++)
		if (strcmp(key, *k) == 0)
			return !batch || (strcmp(key, "mode") && strcmp(key, "timeout_ms"));
	return false;
}

/* The rest of a validated message: its id, owner, addresses and times. */
static void message_fill(const struct parse_ctx *pc, const struct channel_account *acct,
                         const char *to, int prio, struct message *m)
{
	hr_id_new(m->id);
	if (m->route)
		hr_strlcpy(m->route_root, m->id, sizeof m->route_root);
	hr_strlcpy(m->tenant_id, pc->tenant, sizeof m->tenant_id);
	hr_strlcpy(m->unit, pc->unit ? pc->unit : "", sizeof m->unit);
	hr_strlcpy(m->account_id, acct->id, sizeof m->account_id);
	hr_strlcpy(m->channel, acct->ops->name, sizeof m->channel);
	hr_strlcpy(m->recipient, to, sizeof m->recipient);
	hr_strlcpy(m->batch_id, pc->batch_id ? pc->batch_id : "", sizeof m->batch_id);
	m->status = MSG_QUEUED;
	m->priority = prio;
	m->attempts = 0;
	m->max_attempts = pc->s->max_attempts;
	m->created_at = m->updated_at = m->due_at = pc->now;
	m->lease_until = 0;
}

/* Validates one message object and fills m (content and body heap-owned).
 * sync/timeout_us are only set for single requests. */
static int parse_message(const struct parse_ctx *pc, json_t *o, struct message *m, bool *sync,
                         int64_t *timeout_us, struct hr_err *err)
{
	const struct api_server *s = pc->s;
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, "", "a message must be a JSON object");
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		if (!key_allowed(key, pc->batch)) {
			char f[HR_NAME_MAX];
			api_clip(f, sizeof f, key);
			return hr_fail(err, HR_EINVAL, f, "unknown field '%s'", f);
		}
	}

	json_t *jch = json_object_get(o, "channel");
	if (!jch)
		return hr_fail(err, HR_EINVAL, "channel", "channel is required");
	const char *channel = json_string_value(jch);
	if (!channel || !*channel)
		return hr_fail(err, HR_EINVAL, "channel", "channel must be a non-empty string");
	json_t *jacc = json_object_get(o, "account");
	if (jacc && !json_is_string(jacc))
		return hr_fail(err, HR_EINVAL, "account", "account must be a string");
	json_t *jto = json_object_get(o, "to");
	if (!jto)
		return hr_fail(err, HR_EINVAL, "to", "to is required");
	if (!json_is_string(jto))
		return hr_fail(err, HR_EINVAL, "to", "to must be a string");
	int prio = pc->default_prio, rc;
	json_t *jprio = json_object_get(o, "priority");
	if (jprio && (rc = parse_priority(jprio, &prio, err)) != 0)
		return rc;
	json_t *jpol = json_object_get(o, "delivery_policy");
	enum delivery_policy policy = POLICY_AT_LEAST_ONCE;
	if (jpol && delivery_policy_parse(json_string_value(jpol), &policy) != 0)
		return hr_fail(err, HR_EINVAL, "delivery_policy",
		               "delivery_policy must be \"at_least_once\" or \"at_most_once\"");

	if (!pc->batch) {
		json_t *jmode = json_object_get(o, "mode");
		const char *mode = jmode ? json_string_value(jmode) : "async";
		if (!mode || (strcmp(mode, "async") && strcmp(mode, "sync")))
			return hr_fail(err, HR_EINVAL, "mode",
			               "mode must be \"async\" or \"sync\"");
		*sync = strcmp(mode, "sync") == 0;
		if (*sync && !s->o.dispatcher)
			return hr_fail(err, HR_EINVAL, "mode",
			               "mode sync is not available: this server does not send");
		*timeout_us = s->o.sync_timeout_us;
		json_t *jto_ms = json_object_get(o, "timeout_ms");
		if (jto_ms) {
			int64_t max_ms = s->o.sync_max_timeout_us / 1000;
			if (!*sync)
				return hr_fail(err, HR_EINVAL, "timeout_ms",
				               "timeout_ms is only valid with mode sync");
			if (!json_is_integer(jto_ms) || json_integer_value(jto_ms) < 1 ||
			    json_integer_value(jto_ms) > max_ms)
				return hr_fail(err, HR_EINVAL, "timeout_ms",
				               "timeout_ms must be an integer from 1 to %lld",
				               (long long)max_ms);
			*timeout_us = (int64_t)json_integer_value(jto_ms) * 1000;
		}
	}

	/* Where its callbacks go (checked before the account, so the answer
	 * names callback_url whatever else is wrong). */
	if ((rc = api_callback_url(s, pc->tenant, json_object_get(o, "callback_url"),
	                           "callback_url", pc->callback_url, &m->callback_url, err)))
		return rc;

	struct channel_account *acct = NULL;
	rc = resolve_account(s, pc->tenant, pc->unit, channel, json_string_value(jacc), &acct, err);
	if (rc != 0 || !acct)
		return rc ? rc : HR_EINTERNAL;
	char to[HR_ADDR_MAX];
	rc = acct->ops->normalize_recipient(json_string_value(jto), to, err);
	if (rc != 0)
		return rc;

	json_t *content = NULL;
	char *body = NULL;
	struct tpl_defaults tpl;
	rc = api_content_build(s, pc->tenant, pc->unit, acct, o, &content, &body, &tpl, err);
	if (rc != 0)
		return rc;
	/* The message's own policy, else its template's, else its account's
	 * (which defaults to at_least_once: README "Guarantees"). */
	if (!jpol)
		policy = tpl.policy >= 0 ? (enum delivery_policy)tpl.policy : acct->delivery_policy;
	m->content = json_dumps(content, JSON_COMPACT);
	json_decref(content);
	m->body = body;
	if (!m->content) {
		json_decref(tpl.fallback);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	/* SMS is billed per segment: count them once, here, for the record. */
	if (strcmp(acct->ops->name, "sms") == 0 && body) {
		struct sms_info si;
		if ((rc = sms_segments(body, &si, err)) != 0) {
			json_decref(tpl.fallback);
			return rc;
		}
		m->segments = si.segments;
	}
	m->policy = policy;
	/* The message's own route (any of its three fields), else its
	 * template's (checked as the message's would be). */
	json_t *ro = o;
	if (tpl.fallback && !json_object_get(o, "route") &&
	    !json_object_get(o, "fallback_after_s") && !json_object_get(o, "fallback_text"))
		ro = tpl.fallback;
	rc = parse_expiry(o, pc->now, &m->expires_at, err);
	if (rc == 0)
		rc = parse_route(pc, ro, acct, body, m, err);
	json_decref(tpl.fallback);
	if (rc)
		return rc;

	message_fill(pc, acct, to, prio, m);
	return 0;
}

int api_message_build(const struct api_server *s, const char *tenant, const char *unit, json_t *o,
                      const char *batch_id, int64_t now, struct message *m, struct hr_err *err)
{
	struct parse_ctx pc = {.s = s, .tenant = tenant, .unit = unit, .batch = true,
	                       .default_prio = PRIO_BULK, .now = now, .batch_id = batch_id};
	return parse_message(&pc, o, m, NULL, NULL, err);
}

/* ---------------------------------------------------------------------------
 * The fast single accept (accept_fast.h).
 * ------------------------------------------------------------------------- */

bool api_fast_accept = true;
atomic_ulong api_fast_accept_hits;

/* The longest text taken the fast way (bytes, unescaped); a longer one goes
 * the jansson way, which checks it against the channel's limit as ever. */
#define FAST_TEXT_MAX 4096

/* A request of the fast shape, its strings unescaped. */
struct fast_req {
	char channel[32];
	char account[HR_NAME_MAX];
	bool has_account;
	char to[128];
	char text[FAST_TEXT_MAX + 1];
	size_t text_len;
};

/*
 * Whether body is exactly {"channel", "account"?, "to", "text"} with string
 * values, each key once and none other, read with jsonr (which accepts only
 * JSON that jansson accepts and reads it the same): then q holds the
 * strings and the body is a JSON object json_loadb would take. Anything else
 * (another key or type, a duplicate, a string too long for q, JSON jsonr
 * declines) is false, and the request goes the jansson way.
 */
static bool fast_read_obj(const struct jsonr *jr, int obj, struct fast_req *q)
{
	enum { F_CHANNEL, F_ACCOUNT, F_TO, F_TEXT, F_N };
	static const char *const names[F_N] = {"channel", "account", "to", "text"};
	if (obj < 0 || jr->tok[obj].type != JSMN_OBJECT)
		return false;
	int at[F_N] = {-1, -1, -1, -1};
	int k = obj + 1;
	for (int i = 0; i < jr->tok[obj].size; i++) {
		size_t n = (size_t)(jr->tok[k].end - jr->tok[k].start);
		int f = 0;
		while (f < F_N && !(strlen(names[f]) == n &&
		                    memcmp(jr->js + jr->tok[k].start, names[f], n) == 0))
			f++;
		if (f == F_N || at[f] >= 0 || !jsonr_is_string(jr, k + 1))
			return false;
		at[f] = k + 1;
		k = jr->next[k + 1];
	}
	q->has_account = at[F_ACCOUNT] >= 0;
	return at[F_CHANNEL] >= 0 && at[F_TO] >= 0 && at[F_TEXT] >= 0 &&
	       jsonr_string(jr, at[F_CHANNEL], q->channel, sizeof q->channel, NULL) &&
	       q->channel[0] &&
	       (!q->has_account ||
	        jsonr_string(jr, at[F_ACCOUNT], q->account, sizeof q->account, NULL)) &&
	       jsonr_string(jr, at[F_TO], q->to, sizeof q->to, NULL) &&
	       jsonr_string(jr, at[F_TEXT], q->text, sizeof q->text, &q->text_len);
}

static bool fast_read(const char *body, size_t len, struct fast_req *q)
{
	struct jsonr jr;
	return api_fast_accept && jsonr_parse(&jr, body, len) == 0 && fast_read_obj(&jr, 0, q);
}

/* {"type":"text","text":...}, as json_dumps(JSON_COMPACT) writes it. */
static char *fast_text_content(const char *text)
{
	struct jsonw w;
	jsonw_init(&w, 8 * FAST_TEXT_MAX + 64);
	jsonw_obj(&w);
	jsonw_kstr(&w, "type", "text");
	jsonw_kstr(&w, "text", text);
	jsonw_obj_end(&w);
	return jsonw_finish(&w, NULL, NULL);
}

/*
 * parse_message's steps for a request of the fast shape, in its order and
 * with its helpers: the callback URL (the tenant's own, none being given),
 * the account, the recipient, the content (checked by the account's
 * validate, as api_content_build checks a text), the policy, SMS segments.
 * 0 with m filled; 1 to decline when any step fails, so that the jansson
 * way runs the same steps again and answers the error as it always has.
 */
static int fast_single(const struct parse_ctx *pc, const struct fast_req *q, struct message *m)
{
	const struct api_server *s = pc->s;
	struct hr_err err;
	hr_err_clear(&err);
	struct channel_account *acct = NULL;
	char to[HR_ADDR_MAX];
	if (api_callback_url(s, pc->tenant, NULL, "callback_url", pc->callback_url,
	                     &m->callback_url, &err) != 0 ||
	    resolve_account(s, pc->tenant, pc->unit, q->channel, q->has_account ? q->account : NULL,
	                    &acct, &err) != 0 ||
	    !acct || acct->ops->normalize_recipient(q->to, to, &err) != 0)
		return 1;
	json_t *c = json_pack("{s:s, s:s}", "type", "text", "text", q->text);
	int rc = c ? acct->ops->validate(c, &err) : HR_ENOMEM;
	json_decref(c);
	if (rc != 0)
		return 1;
	m->content = fast_text_content(q->text);
	m->body = strdup(q->text);
	if (!m->content || !m->body)
		return 1;
	if (strcmp(acct->ops->name, "sms") == 0) {
		struct sms_info si;
		if (sms_segments(m->body, &si, &err) != 0)
			return 1;
		m->segments = si.segments;
	}
	m->policy = acct->delivery_policy;
	message_fill(pc, acct, to, pc->default_prio, m);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Idempotency.
 * ------------------------------------------------------------------------- */

static int idem_key_check(const char *key, struct hr_err *err)
{
	size_t n = strlen(key);
	if (n < 1 || n > IDEM_KEY_MAX)
		return hr_fail(err, HR_EINVAL, "Idempotency-Key",
		               "Idempotency-Key must be 1 to %d characters", IDEM_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
			return hr_fail(err, HR_EINVAL, "Idempotency-Key",
			               "Idempotency-Key must be printable ASCII");
	return 0;
}

/* Answers from a stored idempotency record: the same response for the same
 * request, an error for a different request under the same key. */
static enum MHD_Result idem_answer(struct api_req *r, struct idem_row *row, const char *hash)
{
	if (strcmp(row->request_hash, hash) != 0) {
		idem_row_clear(row);
		return api_fail_kind(r, APIERR_IDEM_MISMATCH,
		                     "this Idempotency-Key was used with a different request",
		                     "Idempotency-Key", NULL);
	}
	static const char *const replayed[] = {"Idempotent-Replayed", "true", NULL};
	char *body = row->response;
	row->response = NULL;
	int status = row->http_status;
	idem_row_clear(row);
	return api_respond(r, status, body, body ? strlen(body) : 0, "application/json",
	                   replayed);
}

/* ---------------------------------------------------------------------------
 * The request: validate all, one durable insert, answer (or wait, for sync).
 * ------------------------------------------------------------------------- */

/* One of the callbacks the suspended request waits for has come; the last
 * resumes it. Nothing may touch r or a after its own call here. */
static void accept_arrived(struct api_req *r, struct accept *a, int k)
{
	if (atomic_fetch_sub(&a->left, k) == k)
		api_async_end(r);
}

static void watch_done(void *arg, const struct dispatch_result *res)
{
	struct api_req *r = arg;
	struct accept *a = r->priv;
	a->dres = *res;
	accept_arrived(r, a, 1);
}


/* After a committed group's callbacks (store_group_done): wakes the
 * dispatcher once for all the group's accepts, then lets go of the hold
 * insert_done took, so api_stop cannot return (and the dispatcher be freed)
 * before this ran. */
static void group_notify(void *arg)
{
	struct api_server *s = arg;
	dispatcher_notify(s->o.dispatcher);
	api_pending_release(s);
}

/*
 * Once the insert committed or failed (on the writer's thread). A sync
 * request's watch was registered before the insert, so it may already have
 * fired (a backend may call this after other transactions ran); if the
 * insert failed, the watch can never fire for a message that does not
 * exist and is taken back, unless it is firing already (its timeout).
 */
static void insert_done(void *arg, int rc, const struct hr_err *err)
{
	struct api_req *r = arg;
	struct accept *a = r->priv;
	struct dispatcher *d = r->srv->o.dispatcher;
	a->rc = rc;
	if (err)
		a->err = *err;
	int k = 1;
	if (rc == 0) {
		metrics_accepted((int)a->n);
		/* Once per committed group, not once per request: each wake-up
		 * costs the dispatcher a turn (a claim), and the writer a send.
		 * This request is still pending here, so the hold is in time. */
		int q = d ? store_group_done(group_notify, r->srv) : 0;
		if (q == 1)
			api_pending_hold(r->srv);
		else if (q < 0)
			dispatcher_notify(d);
	} else if (a->sync && d && dispatcher_unwatch(d, a->msgs[0].id, r)) {
		k = 2;
	}
	accept_arrived(r, a, k);
}

static void prefix_item_field(struct hr_err *err, size_t i)
{
	char f[sizeof err->field + 32];
	if (err->field[0])
		snprintf(f, sizeof f, "messages[%zu].%s", i, err->field);
	else
		snprintf(f, sizeof f, "messages[%zu]", i);
	api_clip(err->field, sizeof err->field, f);
}

/* The 202 of a single accept, written as json_dumps(JSON_COMPACT) wrote the
 * jansson object it was built as (same keys, same order, same escaping). */
static char *single_answer(const struct message *m)
{
	struct jsonw w;
	jsonw_init(&w, 4096);
	jsonw_obj(&w);
	jsonw_kstr(&w, "id", m->id);
	jsonw_kstr(&w, "status", "queued");
	jsonw_kstr(&w, "channel", m->channel);
	jsonw_kstr(&w, "account", api_account_name(m->tenant_id, m->account_id));
	jsonw_kstr(&w, "to", m->recipient);
	jsonw_kstr(&w, "delivery_policy", delivery_policy_name(m->policy));
	if (strcmp(m->channel, "sms") == 0)
		jsonw_kint(&w, "segments", m->segments);
	jsonw_obj_end(&w);
	return jsonw_finish(&w, NULL, NULL);
}

/* root NULL: q is a request of the fast shape; if the fast way declines,
 * the body is parsed with jansson here and the jansson way runs. */
static int parse_single(struct api_req *r, struct accept *a, json_t *root, const struct fast_req *q,
                        struct hr_err *err)
{
	struct parse_ctx pc = {
		.s = r->srv, .tenant = r->tenant, .unit = r->who.unit, .batch = false,
		.default_prio = PRIO_TRANSACTIONAL, .now = hr_now_us(),
	};
	a->msgs = calloc(1, sizeof *a->msgs);
	if (!a->msgs)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	a->n = 1;
	int rc;
	if (!root && fast_single(&pc, q, &a->msgs[0]) == 0) {
		a->sync = false;
		a->timeout_us = r->srv->o.sync_timeout_us;
		atomic_fetch_add_explicit(&api_fast_accept_hits, 1, memory_order_relaxed);
	} else {
		json_t *own = NULL;
		if (!root) {
			/* Declined: start again from a clean message, the jansson way. */
			message_clear(&a->msgs[0]);
			json_error_t jerr;
			root = own = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
			if (!root)
				return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		}
		rc = parse_message(&pc, root, &a->msgs[0], &a->sync, &a->timeout_us, err);
		json_decref(own);
		if (rc != 0)
			return rc;
	}
	a->resp = single_answer(&a->msgs[0]);
	return a->resp ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
}

static int batch_answer(struct accept *a, size_t n, struct hr_err *err);

static int parse_batch(struct api_req *r, struct accept *a, json_t *root, struct hr_err *err)
{
	const struct api_server *s = r->srv;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "messages") && strcmp(key, "priority") &&
		    strcmp(key, "callback_url")) {
			char f[HR_NAME_MAX];
			api_clip(f, sizeof f, key);
			return hr_fail(err, HR_EINVAL, f, "unknown field '%s'", f);
		}
	}
	json_t *items = json_object_get(root, "messages");
	if (!json_is_array(items))
		return hr_fail(err, HR_EINVAL, "messages", "messages must be an array");
	size_t n = json_array_size(items);
	if (n == 0)
		return hr_fail(err, HR_EINVAL, "messages", "a batch needs at least one message");
	if (n > (size_t)s->o.max_batch)
		return hr_fail(err, HR_ELIMIT, "messages",
		               "a batch holds at most %d messages (%zu given)", s->o.max_batch, n);
	struct parse_ctx pc = {
		.s = s, .tenant = r->tenant, .unit = r->who.unit, .batch = true,
		.default_prio = PRIO_BULK, .now = hr_now_us(), .batch_id = a->batch_id,
	};
	json_t *jprio = json_object_get(root, "priority");
	int rc;
	if (jprio && (rc = parse_priority(jprio, &pc.default_prio, err)) != 0)
		return rc;
	/* A callback_url for the whole request: checked once, taken by every
	 * item that names none. */
	char *batch_cb = NULL;
	if ((rc = api_callback_url(s, r->tenant, json_object_get(root, "callback_url"),
	                           "callback_url", NULL, &batch_cb, err)))
		return rc;
	if (json_object_get(root, "callback_url"))
		pc.callback_url = a->batch_cb = batch_cb;
	else
		free(batch_cb);
	hr_id_new(a->batch_id);

	a->msgs = calloc(n, sizeof *a->msgs);
	if (!a->msgs)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		a->n = i + 1;
		rc = parse_message(&pc, json_array_get(items, i), &a->msgs[i], NULL, NULL, err);
		if (rc != 0) {
			prefix_item_field(err, i);
			return rc;
		}
	}

	return batch_answer(a, n, err);
}

/* The 202 of a batch: every item or none (a 202 that lists fewer ids than
 * it accepted would be stored for replays too). */
static int batch_answer(struct accept *a, size_t n, struct hr_err *err)
{
	json_t *list = json_array();
	json_t *resp = json_pack("{s:I, s:s, s:o}", "count", (json_int_t)n, "batch_id",
	                         a->batch_id, "messages", list);
	for (size_t i = 0; resp && i < n; i++)
		if (json_array_append_new(list, json_pack("{s:s, s:s}", "id", a->msgs[i].id, "to",
		                                          a->msgs[i].recipient)) != 0) {
			json_decref(resp);
			return hr_fail(err, HR_ENOMEM, NULL, "cannot build the answer for item %zu",
			               i);
		}
	a->resp = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	json_decref(resp);
	return a->resp ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
}

/*
 * A batch of the fast shape, {"messages": [...]} with nothing else and every
 * item a single request's fast shape, built without a jansson tree: each
 * item by fast_single, in parse_batch's context (bulk priority, the batch's
 * id, no request-wide callback URL). 0 when built; 1 to decline (any other
 * shape, an item the fast way declines, more tokens than jsonr reads), with
 * nothing kept, so parse_batch runs on the jansson tree and answers as it
 * always has (test_api test_fast_accept_batch compares both).
 */
static int fast_batch(struct api_req *r, struct accept *a, struct hr_err *err)
{
	const struct api_server *s = r->srv;
	if (!api_fast_accept)
		return 1;
	struct jsonr jr;
	struct fast_req *q = NULL;
	int rc = 1;
	if (jsonr_parse_large(&jr, r->body, r->len, JSONR_TOKENS_LARGE_MAX) != 0 ||
	    jr.tok[0].type != JSMN_OBJECT || jr.tok[0].size != 1)
		goto out;
	int items = jsonr_get(&jr, 0, "messages");
	if (items < 0 || jr.tok[items].type != JSMN_ARRAY)
		goto out;
	size_t n = (size_t)jr.tok[items].size;
	if (n == 0 || n > (size_t)s->o.max_batch || !(q = malloc(sizeof *q)))
		goto out;
	hr_id_new(a->batch_id);
	struct parse_ctx pc = {
	    .s = s,
	    .tenant = r->tenant,
	    .unit = r->who.unit,
	    .batch = true,
	    .default_prio = PRIO_BULK,
	    .now = hr_now_us(),
	    .batch_id = a->batch_id,
	};
	if (!(a->msgs = calloc(n, sizeof *a->msgs)))
		goto out;
	int it = items + 1;
	for (size_t i = 0; i < n; i++, it = jr.next[it]) {
		a->n = i + 1;
		if (!fast_read_obj(&jr, it, q) || fast_single(&pc, q, &a->msgs[i]) != 0)
			goto out;
	}
	rc = batch_answer(a, n, err) == 0 ? 0 : 1;
out:
	if (rc != 0 && a->msgs) {
		for (size_t i = 0; i < a->n; i++)
			message_clear(&a->msgs[i]);
		free(a->msgs);
		a->msgs = NULL;
		a->n = 0;
		hr_err_clear(err);
	}
	if (rc == 0)
		atomic_fetch_add_explicit(&api_fast_accept_hits, 1, memory_order_relaxed);
	free(q);
	jsonr_free(&jr);
	return rc;
}

int api_messages_validate(struct api_req *r, json_t *root, bool batch, char **resp,
                          struct hr_err *err)
{
	*resp = NULL;
	struct accept *a = calloc(1, sizeof *a);
	if (!a)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	a->batch = batch;
	int rc = batch ? parse_batch(r, a, root, err) : parse_single(r, a, root, NULL, err);
	if (rc == 0) {
		*resp = a->resp;
		a->resp = NULL;
	}
	accept_free(a);
	return rc;
}

static enum MHD_Result accept_start(struct api_req *r, bool batch)
{
	struct api_server *s = r->srv;
	struct store *st = s->o.store;
	struct hr_err err;
	hr_err_clear(&err);

	struct accept *a = calloc(1, sizeof *a);
	if (!a)
		return api_fail(r, HR_ENOMEM, NULL);
	a->batch = batch;
	r->priv = a;
	r->priv_free = accept_free;
	/* A request of the fast shape needs no jansson tree: it is a JSON
	 * object, so api_body_object would take it. A batch of that shape is
	 * built here (fast_batch), before anything else is looked at: it has no
	 * error to answer, so what follows (the Idempotency-Key, a replay) goes
	 * exactly as the jansson way's; a replay just drops what was built. */
	struct fast_req q;
	json_t *root = NULL;
	bool fast = batch ? fast_batch(r, a, &err) == 0 : fast_read(r->body, r->len, &q);
	if (!fast) {
		enum MHD_Result ret;
		root = api_body_object(r, &ret);
		if (!root)
			return ret;
	}

	int rc;
	const char *key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
	if (key) {
		if ((rc = idem_key_check(key, &err)) != 0) {
			json_decref(root);
			return api_fail(r, rc, &err);
		}
		a->has_idem = true;
		/* Per unit: a sibling unit reusing a key neither replays the other's
		 * answer nor learns it was used (0x1f never occurs in a key, so a
		 * tenant-wide key cannot collide with a unit's). */
		snprintf(a->idem_key, sizeof a->idem_key, "%s%s%s", r->who.unit,
		         r->who.unit[0] ? "\x1f" : "", key);
		hr_sha256_hex(r->body, r->len, a->hash);
		struct idem_row row;
		memset(&row, 0, sizeof row);
		rc = st->ops->idem_get(st, r->tenant, a->idem_key, &row);
		if (rc == 0) {
			json_decref(root);
			return idem_answer(r, &row, a->hash);
		}
		if (rc != HR_ENOTFOUND) {
			json_decref(root);
			return api_fail(r, rc, NULL);
		}
	}

	rc = batch ? (fast ? 0 : parse_batch(r, a, root, &err))
	           : parse_single(r, a, root, fast ? &q : NULL, &err);
	json_decref(root);
	if (rc != 0)
		return api_fail(r, rc, &err);

	if (a->has_idem)
		a->idem = (struct idem_put){
		    .tenant_id = r->tenant,
		    .key = a->idem_key,
		    .request_hash = a->hash,
		    .http_status = 202,
		    .response = a->resp,
		    /* Past the unit prefix: the key the client sent. */
		    .client_key = a->idem_key + (r->who.unit[0] ? strlen(r->who.unit) + 1 : 0),
		};
	struct dispatcher *d = s->o.dispatcher;
	if (!d)
		a->sync = false; /* an API-only role: the 202 is all there is */
	if ((rc = api_async_begin(r)) != 0)
		return api_fail(r, rc, NULL);
	r->stage = STAGE_INSERTED;
	atomic_init(&a->left, a->sync ? 2 : 1);
	/* The watch first: see insert_done. */
	if (a->sync && (rc = dispatcher_watch(d, a->msgs[0].id, a->timeout_us, watch_done, r))) {
		a->rc = rc;
		hr_fail(&a->err, rc, NULL, "cannot wait for the send");
		accept_arrived(r, a, 2);
		return MHD_YES;
	}
	rc = st->ops->message_insert(st, a->msgs, a->n, a->has_idem ? &a->idem : NULL,
	                             insert_done, r);
	if (rc != 0) {
		/* Not queued, so no callback will come: stand in for it. */
		a->rc = rc;
		hr_fail(&a->err, rc, NULL, "the write could not be queued");
		insert_done(r, rc, NULL);
	}
	return MHD_YES;
}

static enum MHD_Result respond_accepted(struct api_req *r, struct accept *a)
{
	char *body = a->resp;
	a->resp = NULL;
	return api_respond(r, 202, body, strlen(body), "application/json", NULL);
}

static enum MHD_Result accept_watched(struct api_req *r);

static enum MHD_Result accept_inserted(struct api_req *r)
{
	struct api_server *s = r->srv;
	struct accept *a = r->priv;
	if (a->rc == HR_ECONFLICT && a->has_idem) {
		/* A concurrent request with the same key committed first. */
		struct idem_row row;
		memset(&row, 0, sizeof row);
		int rc = s->o.store->ops->idem_get(s->o.store, r->tenant, a->idem_key, &row);
		if (rc == 0)
			return idem_answer(r, &row, a->hash);
		return api_fail(r, rc == HR_ENOTFOUND ? HR_ECONFLICT : rc, &a->err);
	}
	if (a->rc != 0)
		return api_fail(r, a->rc, &a->err);
	/* Committed; a sync request's watch has fired too. */
	return a->sync ? accept_watched(r) : respond_accepted(r, a);
}

/* The provider's words (ids, error codes and texts) are echoed to the
 * client: each goes through hr_utf8_copy, so a provider that answers in
 * broken UTF-8 cannot turn an outcome into a 500. */
static enum MHD_Result accept_watched(struct api_req *r)
{
	struct api_server *s = r->srv;
	struct accept *a = r->priv;
	const struct message *m = &a->msgs[0];
	const struct dispatch_result *d = &a->dres;
	char pid[HR_PROVIDER_ID_MAX], code[HR_ERRCODE_MAX], text[HR_ERRTEXT_MAX];
	int status = 202;
	const char *state = "queued";
	json_t *extra = json_object();
	bool ok = extra != NULL;
	if (d->rc == 0 && d->kind == SEND_OK) {
		status = 200;
		state = "sent";
		api_clip(pid, sizeof pid, d->provider_id);
		ok = ok && !json_object_set_new(extra, "provider_id", json_string(pid));
	} else if (d->rc == 0) {
		api_clip(code, sizeof code, d->error_code);
		api_clip(text, sizeof text, d->error_text);
		json_t *e = json_pack("{s:s, s:s}", "code", code, "message", text);
		if (d->kind == SEND_FAILED) {
			status = 200;
			state = "failed";
		} else if (d->kind == SEND_UNKNOWN) {
			/* Settled as far as sending goes: never sent again by
			 * itself; a late receipt may still move it. */
			status = 200;
			state = "unknown";
		} else {
			ok = ok && !json_object_set_new(extra, "retrying", json_true());
		}
		if (!ok)
			json_decref(e);
		else if (json_object_set_new(extra, "error", e) != 0)
			ok = false; /* e was consumed */
	} else {
		/* No outcome in time: report where the message is now. */
		struct message cur;
		memset(&cur, 0, sizeof cur);
		if (s->o.store->ops->message_get(s->o.store, r->tenant, m->id, &cur) == 0) {
			state = msg_status_name(cur.status);
			api_clip(pid, sizeof pid, cur.provider_id);
			if (pid[0])
				ok = ok && !json_object_set_new(extra, "provider_id",
				                                json_string(pid));
			message_clear(&cur);
		}
		ok = ok && !json_object_set_new(extra, "sync_timeout", json_true());
	}
	json_t *j = ok ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", m->id, "status",
	                           state, "channel", m->channel, "account",
	                           api_account_name(m->tenant_id, m->account_id), "to",
	                           m->recipient, "delivery_policy",
	                           delivery_policy_name(m->policy))
	               : NULL;
	if (j && strcmp(m->channel, "sms") == 0)
		ok = !json_object_set_new(extra, "segments", json_integer(m->segments));
	if (j && (!ok || json_object_update(j, extra) != 0)) {
		json_decref(j);
		j = NULL;
	}
	json_decref(extra);
	/* j NULL: api_respond_json logs it and answers 500, never a partial body. */
	return api_respond_json(r, status, j, NULL);
}

static enum MHD_Result accept_step(struct api_req *r, bool batch)
{
	switch (r->stage) {
	case STAGE_START: return accept_start(r, batch);
	case STAGE_INSERTED: return accept_inserted(r);
	default: return api_fail(r, HR_EINTERNAL, NULL);
	}
}

enum MHD_Result api_messages_post(struct api_req *r)
{
	return accept_step(r, false);
}

enum MHD_Result api_messages_batch(struct api_req *r)
{
	return accept_step(r, true);
}
