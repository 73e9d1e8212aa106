/*
 * lc_reconcile.c - the reconciler's rules and fallback routing, above every
 * store backend (lifecycle.h). The reconciler thread
 * (src/dispatch/reconciler.c) decides when to look; what is done to a
 * message, and the audit event that says why, is decided here, through
 * lc_transition for every status change.
 *
 * Fallback: a message with a route (herald.h struct message) whose step
 * fails, ends UNKNOWN, or gets no receipt by its deadline gets exactly one
 * follow-up on the next step. "Exactly one" is the store's primary key on
 * (route root, step) in message_fallback, written in the same transaction
 * as the status change (or the reconciler's finding) that asks for it and
 * as the follow-up's own row: whichever of a webhook, an outcome, the
 * reconciler, or a replay after a crash gets there first makes it; every
 * later one finds the key taken and makes nothing.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/segments.h"
#include "obs/metrics.h"
#include "store/lifecycle.h"

#define TX_ERR(tx) ((tx)->ops->err(tx))
#define TX_JSON(tx) ((tx)->ops->json(tx))

/* Each reconciler run handles at most this many rows per transaction. */
#define RECONCILE_BATCH_MAX 1000

static int detail_end(struct store_tx *tx, const char **out)
{
	*out = ev_json_end(TX_JSON(tx));
	return *out ? 0 : hr_fail(TX_ERR(tx), HR_ENOMEM, "message_event", "out of memory");
}

static int64_t tx_time(struct store_tx *tx, int64_t given)
{
	return given ? given : tx->ops->now(tx);
}

/* ---------------------------------------------------------------------------
 * Fallback.
 * ------------------------------------------------------------------------- */

/* The recipient as the next channel spells it: WhatsApp takes digits only,
 * SMS and RCS E.164 with its '+'. Other addresses are kept as they are (the
 * API admits routes over phone channels only). */
void lc_route_address(const char *channel, const char *in, char out[HR_ADDR_MAX])
{
	const char *digits = in[0] == '+' ? in + 1 : in;
	if (strcmp(channel, "whatsapp") == 0)
		hr_strlcpy(out, digits, HR_ADDR_MAX);
	else if (strcmp(channel, "sms") == 0 || strcmp(channel, "rcs") == 0)
		snprintf(out, HR_ADDR_MAX, "+%s", digits);
	else
		hr_strlcpy(out, in, HR_ADDR_MAX);
}

/* What the route says about step `step`: its channel and account, and the
 * follow-up's text. false (logged) when the stored route cannot say. */
static bool route_step_of(const char *route, int step, char channel[16], char account[HR_NAME_MAX],
                          char **text)
{
	json_error_t je;
	json_t *r = route ? json_loads(route, 0, &je) : NULL;
	json_t *s = json_array_get(json_object_get(r, "steps"), (size_t)step);
	const char *ch = json_string_value(json_object_get(s, "channel"));
	const char *ac = json_string_value(json_object_get(s, "account_id"));
	const char *tx = json_string_value(json_object_get(r, "text"));
	bool ok = ch && ac && tx && strlen(ch) < 16 && strlen(ac) < HR_NAME_MAX;
	if (ok) {
		hr_strlcpy(channel, ch, 16);
		hr_strlcpy(account, ac, HR_NAME_MAX);
		ok = (*text = strdup(tx)) != NULL;
	}
	json_decref(r);
	return ok;
}

/* The follow-up row: the original's recipient, tenant, unit, batch, policy,
 * expiry and callback URL on the next step's channel and account, saying
 * the route's text; the same route, one step on. */
static int insert_followup(struct store_tx *tx, const struct lc_msg *m, const char *id,
                           const char *root, int step, const char *channel, const char *account,
                           const char *text, const char *route, const char *callback_url,
                           const char *unit)
{
	json_t *c = json_pack("{s:s, s:s}", "type", "text", "text", text);
	char *content = c ? json_dumps(c, JSON_COMPACT) : NULL;
	json_decref(c);
	if (!content)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "fallback", "out of memory");
	struct message f = {.priority = m->batch_id[0] ? PRIO_BULK : PRIO_TRANSACTIONAL,
	                    .content = content,
	                    .body = (char *)text,
	                    .max_attempts = m->max_attempts,
	                    .policy = m->policy,
	                    .callback_url = (char *)callback_url,
	                    .expires_at = m->expires_at,
	                    .route = (char *)route,
	                    .route_step = step,
	                    .route_steps = m->route_steps,
	                    .fallback_after = m->fallback_after};
	hr_strlcpy(f.id, id, sizeof f.id);
	hr_strlcpy(f.tenant_id, m->tenant_id, sizeof f.tenant_id);
	hr_strlcpy(f.unit, unit, sizeof f.unit);
	hr_strlcpy(f.account_id, account, sizeof f.account_id);
	hr_strlcpy(f.channel, channel, sizeof f.channel);
	lc_route_address(channel, m->recipient, f.recipient);
	hr_strlcpy(f.batch_id, m->batch_id, sizeof f.batch_id);
	hr_strlcpy(f.route_root, root, sizeof f.route_root);
	if (strcmp(channel, "sms") == 0) {
		struct sms_info info;
		if (sms_segments(text, &info, NULL) == 0)
			f.segments = info.segments;
	}
	f.created_at = f.due_at = f.updated_at = tx->ops->now(tx);
	int rc = tx->ops->msg_insert(tx, &f);
	free(content);
	return rc;
}

int lc_fallback(struct store_tx *tx, struct lc_msg *m, const char *reason, const char *source)
{
	int next = m->route_step + 1;
	if (m->route_steps <= 0 || next >= m->route_steps)
		return 0;
	char *route = NULL, *cb_url = NULL, *text = NULL;
	char unit[HR_NAME_MAX];
	int rc = tx->ops->msg_route(tx, m->id, &route, &cb_url, unit);
	if (rc)
		return rc;
	char channel[16], account[HR_NAME_MAX];
	if (!route_step_of(route, next, channel, account, &text)) {
		/* Written by the API, which checked it: a route that cannot be
		 * read is a bug or damage, and must not hold up the status change
		 * that asked for it. */
		hr_log(HR_LOG_ERROR, "store", "message %s: route step %d unreadable; no fallback",
		       m->id, next);
		free(route);
		free(cb_url);
		return 0;
	}
	const char *root = m->route_root[0] ? m->route_root : m->id;
	char id[HR_ID_LEN + 1];
	hr_id_new(id);
	rc = tx->ops->fallback_put(tx, root, next, id, m->id, reason);
	if (rc == 1)
		rc = insert_followup(tx, m, id, root, next, channel, account, text, route, cb_url,
		                     unit);
	else if (rc == 0)
		rc = -1; /* made before: nothing more */
	free(route);
	free(cb_url);
	free(text);
	if (rc == -1)
		return 0;
	if (rc)
		return rc;
	lc_count(tx, m->batch_id, -1, MSG_QUEUED, false);
	lc_daily(tx, m->tenant_id, channel, -1, MSG_QUEUED, NULL); /* the follow-up's */

	/* Both messages name each other in their audit trails. */
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "fallback_of", m->id);
	ev_json_str(js, "route_root", root);
	ev_json_int(js, "step", next);
	ev_json_str(js, "reason", reason);
	struct lc_event acc = {
	    .type = "accepted", .source = source, .status = MSG_QUEUED, .applied = true};
	if ((rc = detail_end(tx, &acc.detail)) || (rc = tx->ops->event_insert(tx, id, &acc)))
		return rc;
	ev_json_begin(js);
	ev_json_str(js, "fallback_id", id);
	ev_json_str(js, "channel", channel);
	ev_json_str(js, "account_id", account);
	ev_json_int(js, "step", next);
	ev_json_str(js, "reason", reason);
	ev_json_str(js, "status", msg_status_name(m->status));
	struct lc_event fb = {.type = "fallback", .source = source, .status = -1, .applied = true};
	if ((rc = detail_end(tx, &fb.detail)) || (rc = tx->ops->event_insert(tx, m->id, &fb)))
		return rc;
	/* No longer waiting for its deadline: the reconciler would find it. */
	struct lc_update u = {.set = LC_SET_FALLBACK_AT, .fallback_at = 0};
	if ((rc = tx->ops->msg_update(tx, m, &u)))
		return rc;
	lc_note_fallback(tx, reason);
	return 1;
}

int lc_fallback_on_status(struct store_tx *tx, struct lc_msg *m, enum msg_status from,
                          const struct lc_update *u, const char *source)
{
	if (from == m->status || m->route_steps <= m->route_step + 1)
		return 0;
	bool not_capable = (u->set & LC_SET_ERROR) && u->error_code &&
	                   strcmp(u->error_code, "not_rcs_capable") == 0;
	const char *reason;
	switch (m->status) {
	case MSG_FAILED:
		reason = not_capable ? "not_rcs_capable" : "failed";
		break;
	case MSG_UNDELIVERED:
		reason = not_capable ? "not_rcs_capable" : "undelivered";
		break;
	case MSG_UNKNOWN:
		reason = "unknown";
		break;
	default:
		return 0;
	}
	int rc = lc_fallback(tx, m, reason, source);
	return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------------------
 * Expiry.
 * ------------------------------------------------------------------------- */

static int expire_one(struct store_tx *tx, struct lc_msg *m, const char *source, bool claimed)
{
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_int(js, "expires_at", m->expires_at);
	ev_json_str(js, "reason",
	            claimed ? "past its expiry when claimed: not sent"
	                    : "past its expiry while queued: not sent");
	struct lc_event ev = {
	    .type = "expired", .source = source, .status = MSG_EXPIRED, .applied = true};
	int rc = detail_end(tx, &ev.detail);
	if (rc)
		return rc;
	struct lc_update u = {.set = LC_SET_STATUS | LC_SET_ERROR,
	                      .status = MSG_EXPIRED,
	                      .error_code = "expired",
	                      .error_text = "the message expired before it was sent"};
	if (claimed)
		u.set |= LC_GIVE_BACK_ATTEMPT; /* nothing was attempted */
	return lc_transition(tx, m, &u, &ev);
}

int lc_claim_expired(struct store_tx *tx, struct message *m, struct lc_msg *lm, int64_t now)
{
	if (m->status != MSG_SENDING || m->expires_at <= 0 || m->expires_at > now)
		return 0;
	int rc = expire_one(tx, lm, "dispatcher", true);
	if (rc)
		return rc;
	m->status = MSG_EXPIRED;
	m->attempts = lm->attempts;
	hr_strlcpy(m->error_code, "expired", sizeof m->error_code);
	hr_strlcpy(m->error_text, "the message expired before it was sent", sizeof m->error_text);
	return 1;
}

struct scan_ctx {
	int64_t now;
	int limit;
	int n;
};

static int expire_run(struct store_tx *tx, void *arg)
{
	struct scan_ctx *c = arg;
	c->now = tx_time(tx, c->now);
	c->n = 0;
	struct lc_msg *rows = calloc((size_t)c->limit, sizeof *rows);
	if (!rows)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "expire", "out of memory");
	size_t n = 0;
	int rc = tx->ops->msg_expired(tx, c->now, c->limit, rows, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = expire_one(tx, &rows[i], "reconciler", false);
	free(rows);
	if (rc == 0)
		c->n = (int)n;
	return rc;
}

static int scan_limit(int limit)
{
	return limit <= 0 || limit > RECONCILE_BATCH_MAX ? RECONCILE_BATCH_MAX : limit;
}

int lc_reconcile_expire(const struct lc_backend *b, struct store *st, int64_t now, int limit,
                        int *n)
{
	struct scan_ctx c = {.now = now, .limit = scan_limit(limit)};
	int rc = lc_run(b, st, expire_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc == 0)
		metrics_reconcile(M_REC_EXPIRED, c.n);
	if (n)
		*n = rc ? 0 : c.n;
	return rc;
}

/* ---------------------------------------------------------------------------
 * A route's deadline: SENT with no receipt by fallback_at.
 * ------------------------------------------------------------------------- */

static int fallback_due_run(struct store_tx *tx, void *arg)
{
	struct scan_ctx *c = arg;
	c->now = tx_time(tx, c->now);
	c->n = 0;
	struct lc_msg *rows = calloc((size_t)c->limit, sizeof *rows);
	if (!rows)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "fallback", "out of memory");
	size_t n = 0;
	int made = 0;
	int rc = tx->ops->fallback_due(tx, c->now, c->limit, rows, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = lc_fallback(tx, &rows[i], "no_receipt", "reconciler");
		if (rc == 1) {
			made++;
			rc = 0;
		} else if (rc == 0) {
			/* Made before (by a failure webhook racing this scan) or no
			 * next step: stop waiting all the same. */
			struct lc_update u = {.set = LC_SET_FALLBACK_AT, .fallback_at = 0};
			rc = tx->ops->msg_update(tx, &rows[i], &u);
		}
	}
	free(rows);
	if (rc == 0)
		c->n = made;
	return rc;
}

int lc_reconcile_fallback_due(const struct lc_backend *b, struct store *st, int64_t now, int limit,
                              int *n)
{
	struct scan_ctx c = {.now = now, .limit = scan_limit(limit)};
	int rc = lc_run(b, st, fallback_due_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc == 0)
		metrics_reconcile(M_REC_FALLBACK_DUE, c.n);
	if (n)
		*n = rc ? 0 : c.n;
	return rc;
}

/* ---------------------------------------------------------------------------
 * Stale SENT messages: what a lookup said, or a mark.
 * ------------------------------------------------------------------------- */

struct settle_ctx {
	const struct stale_answer *a;
	size_t n;
	struct stale_stats stats; /* set afresh by each run */
};

/* The provider's answer to a lookup, applied by precedence as a webhook's
 * would be. 1 when it moved the message, 0 when it did not (the answer
 * ranks at or below SENT). */
static int settle_answer(struct store_tx *tx, struct lc_msg *m, const struct stale_answer *a)
{
	enum status_verdict v = status_decide(m->status, a->status);
	if (v != STATUS_APPLY && v != STATUS_APPLY_IMPLIED)
		return 0;
	enum msg_status steps[2] = {a->status, a->status};
	int nsteps = 1;
	if (v == STATUS_APPLY_IMPLIED) {
		steps[0] = MSG_DELIVERED;
		nsteps = 2;
	}
	char code[HR_ERRCODE_MAX], text[HR_ERRTEXT_MAX], pst[32];
	hr_utf8_copy(code, a->error_code, sizeof code);
	hr_utf8_copy(text, a->error_text, sizeof text);
	hr_utf8_copy(pst, a->provider_status, sizeof pst);
	for (int i = 0; i < nsteps; i++) {
		enum msg_status s = steps[i];
		bool failure = s == MSG_FAILED || s == MSG_UNDELIVERED;
		struct ev_json *js = TX_JSON(tx);
		ev_json_begin(js);
		ev_json_str(js, "status", msg_status_name(s));
		ev_json_str(js, "provider_status", pst);
		if (failure && code[0])
			ev_json_str(js, "error_code", code);
		if (failure && text[0])
			ev_json_str(js, "error_text", text);
		if (i == 0 && nsteps == 2)
			ev_json_str(js, "implied_by", msg_status_name(a->status));
		ev_json_str(js, "reason", "no receipt in time: the provider was asked");
		struct lc_event ev = {.type = "lookup_status",
		                      .source = "reconciler",
		                      .status = (int)s,
		                      .applied = true};
		int rc = detail_end(tx, &ev.detail);
		if (rc)
			return rc;
		struct lc_update u = {.set = LC_SET_STATUS | LC_SET_ERROR | LC_KEEP_ERROR |
		                             LC_SET_STALE,
		                      .status = s,
		                      .error_code = failure ? code : "",
		                      .error_text = failure ? text : ""};
		if ((rc = lc_transition(tx, m, &u, &ev)))
			return rc;
	}
	return 1;
}

static int settle_one(struct store_tx *tx, struct settle_ctx *c, const struct stale_answer *a)
{
	struct lc_msg m;
	int rc = tx->ops->msg_get(tx, a->message_id, &m);
	if (rc == HR_ENOTFOUND) {
		hr_err_clear(TX_ERR(tx));
		c->stats.skipped++;
		return 0;
	}
	if (rc)
		return rc;
	/* A receipt (or another reconciler) got there since the list was read. */
	if (m.status != MSG_SENT || m.stale) {
		c->stats.skipped++;
		return 0;
	}
	if (a->answered) {
		if ((rc = settle_answer(tx, &m, a)) < 0)
			return rc;
		if (rc == 1) {
			c->stats.applied++;
			return 0;
		}
	}
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_int(js, "sent_at", m.sent_at);
	if (a->answered) {
		char pst[32];
		hr_utf8_copy(pst, a->provider_status, sizeof pst);
		ev_json_str(js, "provider_status", pst);
		ev_json_str(js, "reason",
		            "no receipt in time; the provider still says it is not"
		            " delivered");
	} else if (a->lookup_error[0]) {
		char why[256];
		hr_utf8_copy(why, a->lookup_error, sizeof why);
		ev_json_str(js, "lookup_error", why);
		ev_json_str(js, "reason", "no receipt in time; the provider could not be asked");
	} else {
		ev_json_str(js, "reason", "no receipt in time; the channel has no status lookup");
	}
	struct lc_event ev = {
	    .type = "stale", .source = "reconciler", .status = -1, .applied = true};
	if ((rc = detail_end(tx, &ev.detail)) || (rc = tx->ops->event_insert(tx, m.id, &ev)))
		return rc;
	struct lc_update u = {.set = LC_SET_STALE};
	if ((rc = tx->ops->msg_update(tx, &m, &u)))
		return rc;
	m.stale = true;
	c->stats.marked++;
	rc = lc_fallback(tx, &m, "stale", "reconciler");
	if (rc == 1)
		c->stats.fallbacks++;
	return rc < 0 ? rc : 0;
}

static int settle_run(struct store_tx *tx, void *arg)
{
	struct settle_ctx *c = arg;
	memset(&c->stats, 0, sizeof c->stats);
	for (size_t i = 0; i < c->n; i++) {
		int rc = lc_item_begin(tx);
		if (rc)
			return rc;
		struct stale_stats before = c->stats;
		rc = settle_one(tx, c, &c->a[i]);
		if (!tx->ops->alive(tx))
			return rc ? rc
			          : hr_fail(TX_ERR(tx), HR_EIO, "stale", "transaction aborted");
		if (rc) {
			hr_log(HR_LOG_WARN, "store", "stale message %s not settled: %s",
			       c->a[i].message_id, TX_ERR(tx)->msg);
			hr_err_clear(TX_ERR(tx));
			c->stats = before;
		}
		int end = lc_item_end(tx, rc == 0);
		if (end < 0)
			return end;
		if (end > 0) {
			hr_err_clear(TX_ERR(tx));
			c->stats = before;
		}
	}
	return 0;
}

int lc_stale_settle(const struct lc_backend *b, struct store *st, const struct stale_answer *a,
                    size_t n, struct stale_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (n && !a)
		return HR_EINVAL;
	struct settle_ctx c = {.a = a, .n = n};
	int rc = lc_run(b, st, settle_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc)
		return rc;
	metrics_reconcile(M_REC_LOOKUP_APPLIED, c.stats.applied);
	metrics_reconcile(M_REC_STALE, c.stats.marked);
	if (stats)
		*stats = c.stats;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Webhooks that matched no message: parked.
 * ------------------------------------------------------------------------- */

struct park_ctx {
	int64_t before;
	int limit;
	int n;
};

static int park_run(struct store_tx *tx, void *arg)
{
	struct park_ctx *c = arg;
	c->n = 0;
	int64_t *ids = calloc((size_t)c->limit, sizeof *ids);
	if (!ids)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "inbox", "out of memory");
	size_t n = 0;
	int rc = tx->ops->inbox_waiting(tx, c->before, c->limit, ids, &n);
	int parked = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int64_t received_at = 0;
		int attempts = 0;
		char channel[16] = "";
		rc = tx->ops->inbox_state(tx, ids[i], &received_at, &attempts, channel);
		if (rc <= 0)
			continue; /* an error ends the loop; a row gone is skipped */
		char why[160];
		snprintf(
		    why, sizeof why,
		    "parked by the reconciler: no message matched after %d attempts over %lld s",
		    attempts, (long long)((tx->ops->now(tx) - received_at) / 1000000));
		rc = tx->ops->inbox_mark(tx, ids[i], INBOX_ORPHAN, attempts, 0, why);
		parked += rc == 0;
	}
	free(ids);
	if (rc == 0)
		c->n = parked;
	return rc;
}

int lc_inbox_park(const struct lc_backend *b, struct store *st, int64_t received_before, int limit,
                  int *n)
{
	if (received_before <= 0)
		return HR_EINVAL;
	struct park_ctx c = {.before = received_before, .limit = scan_limit(limit)};
	int rc = lc_run(b, st, park_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc == 0) {
		metrics_reconcile(M_REC_INBOX_PARKED, c.n);
		if (c.n)
			hr_log(HR_LOG_WARN, "reconciler",
			       "parked %d webhook(s) that matched no message (GET "
			       "/v1/webhooks/parked)",
			       c.n);
	}
	if (n)
		*n = rc ? 0 : c.n;
	return rc;
}
