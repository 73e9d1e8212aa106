/*
 * channels_health.c - a sender account's health and its pause:
 *   GET  /v1/channels/{id}/health   active, paused (by whom, why), held by
 *                                   a provider's rate limit or blocked
 *                                   credentials (why); configured vs
 *                                   observed send rate (last minute); queue
 *                                   depth; outcomes and error rate (last 15
 *                                   minutes); last success, failure and
 *                                   webhook; token expiry (RBM)
 *   POST /v1/channels/{id}/pause    {"reason"}: the dispatcher claims
 *                                   nothing for the account until resumed;
 *                                   its messages stay queued
 *   POST /v1/channels/{id}/resume   {"reason"?}
 *
 * The observed figures are this node's (obs/acct_health.h: counted as
 * sends happen, in memory); the queue depth is read from the claim index,
 * bounded; the pause is stored (account_pause) so that every node's
 * dispatcher honours it, with an audit row (channel.pause,
 * channel.resume) in the same transaction. Another tenant's account, or a
 * sibling unit's, is a 404; a unit key may pause only its unit's accounts,
 * not the tenant's shared ones.
 */
#include <string.h>

#include "api/api_int.h"
#include "obs/acct_health.h"

#define QUEUE_DEPTH_CAP 1000000 /* counted at most; more shows as capped */
#define PAUSE_REASON_MAX 255

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

/* The caller's account named in the path, or NULL after answering 404. */
static const struct channel_account *account_of(struct api_req *r, bool write, enum MHD_Result *ret)
{
	const struct channel_account *a = api_account_lookup(r->srv, r->tenant, r->path_id);
	/* Reading, a unit key sees the tenant's shared accounts too; changing,
	 * only its own unit's. */
	if (a && !api_unit_visible(r, a->unit, !write))
		a = NULL;
	if (!a) {
		struct hr_err err;
		char id[sizeof r->path_id];
		hr_fail(&err, HR_ENOTFOUND, NULL, "no channel account '%s'",
		        api_clip(id, sizeof id, r->path_id));
		*ret = api_fail(r, HR_ENOTFOUND, &err);
	}
	return a;
}

/* The health document; NULL with *rc set when the store failed. */
static json_t *health_json(struct api_req *r, const struct channel_account *a, int *rc)
{
	struct store *st = r->srv->o.store;
	int64_t now = hr_now_us();
	struct acct_health h;
	health_get(a->id, now, &h);
	int64_t depth = 0;
	*rc = st->ops->account_queue_depth(st, a->id, QUEUE_DEPTH_CAP, &depth);
	struct account_pause_row *pv = NULL;
	size_t np = 0;
	if (*rc == 0)
		*rc = st->ops->account_pauses(st, &pv, &np);
	if (*rc)
		return NULL;
	const struct account_pause_row *p = NULL;
	for (size_t i = 0; i < np; i++)
		if (strcmp(pv[i].account_id, a->id) == 0)
			p = &pv[i];
	const char *state = p                 ? "paused"
	                    : h.blocked       ? "blocked"
	                    : h.held_until_us ? "held"
	                                      : "active";
	json_t *paused = p ? json_pack("{s:o, s:o, s:o}", "reason", str_or_null(p->reason), "by",
	                               str_or_null(p->actor), "at", api_time_json(p->at))
	                   : json_null();
	free(pv);
	int64_t judged = h.ok + h.failed;
	json_t *recent = json_pack(
	    "{s:i, s:I, s:I, s:I, s:o}", "window_s", HEALTH_ERROR_WINDOW_S, "ok", (json_int_t)h.ok,
	    "failed", (json_int_t)h.failed, "retried", (json_int_t)h.retried, "error_rate",
	    judged + h.retried > 0
	        ? json_real((double)(h.failed + h.retried) / (double)(judged + h.retried))
	        : json_null());
	int64_t tok_exp = 0;
	char tok_err[256] = "";
	if (a->ops->token_state)
		a->ops->token_state(a, &tok_exp, tok_err, sizeof tok_err);
	json_t *j = json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:f, s:f, s:I, s:I, s:b, s:o, s:o, s:o, s:o, s:o, "
	    "s:b, s:s}",
	    "account", api_account_name(r->tenant, a->id), "channel", a->ops->name, "state", state,
	    "paused", paused, "held_until", api_time_json(h.held_until_us), "held_reason",
	    str_or_null(h.held_until_us ? h.held_why : NULL), "blocked_reason",
	    str_or_null(h.blocked ? h.blocked_why : NULL), "configured_rate", a->rate_limit,
	    "observed_rate", h.observed_rate, "sent_last_minute", (json_int_t)h.sent_window,
	    "queue_depth", (json_int_t)depth, "queue_depth_capped", depth >= QUEUE_DEPTH_CAP,
	    "recent", recent, "last_success_at", api_time_json(h.last_success_us),
	    "last_failure_at", api_time_json(h.last_failure_us), "last_error",
	    str_or_null(h.last_error), "last_webhook_at", api_time_json(h.last_webhook_us),
	    "has_token", a->ops->token_state != NULL, "figures", "node");
	if (j && a->ops->token_state &&
	    (json_object_set_new(j, "token_expires_at", api_time_json(tok_exp)) != 0 ||
	     json_object_set_new(j, "token_error", str_or_null(tok_err)) != 0)) {
		json_decref(j);
		j = NULL;
	}
	if (!j)
		*rc = HR_ENOMEM;
	return j;
}

enum MHD_Result api_channel_health(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const none[] = {NULL};
	int rc = api_query_check(r, none, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	enum MHD_Result ret;
	const struct channel_account *a = account_of(r, false, &ret);
	if (!a)
		return ret;
	json_t *j = health_json(r, a, &rc);
	if (!j)
		return api_fail(r, rc, NULL);
	return api_respond_json(r, 200, j, NULL);
}

static enum MHD_Result pause_set(struct api_req *r, bool pause)
{
	struct store *st = r->srv->o.store;
	enum MHD_Result ret;
	const struct channel_account *a = account_of(r, true, &ret);
	if (!a)
		return ret;
	json_t *root = api_body_object(r, &ret);
	if (!root)
		return ret;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "reason") != 0) {
			char f[HR_NAME_MAX];
			api_clip(f, sizeof f, key);
			rc = hr_fail(&err, HR_EINVAL, f, "unknown field '%s'", f);
			break;
		}
	}
	json_t *jr = json_object_get(root, "reason");
	if (rc == 0 && jr && (!json_is_string(jr) || json_string_length(jr) > PAUSE_REASON_MAX))
		rc = hr_fail(&err, HR_EINVAL, "reason",
		             "reason must be a string of at most %d bytes", PAUSE_REASON_MAX);
	const char *reason = jr ? json_string_value(jr) : NULL;
	if (rc == 0 && pause && (!reason || !*reason))
		rc = hr_fail(&err, HR_EINVAL, "reason",
		             "reason is required: say why the account is paused");
	struct account_pause_row p;
	memset(&p, 0, sizeof p);
	hr_strlcpy(p.account_id, a->id, sizeof p.account_id);
	hr_strlcpy(p.tenant_id, a->tenant_id, sizeof p.tenant_id);
	hr_strlcpy(p.reason, reason ? reason : "", sizeof p.reason);
	hr_strlcpy(p.actor, r->who.actor, sizeof p.actor);
	struct audit_row au;
	char obj[96];
	snprintf(obj, sizeof obj, "account:%s", api_account_name(a->tenant_id, a->id));
	if (rc == 0)
		rc = api_audit_json(r, r->tenant, pause ? "account.pause" : "account.resume", obj,
		                    NULL, json_pack("{s:s}", "reason", p.reason), &au);
	if (rc == 0) {
		rc = st->ops->account_pause_set(st, &p, pause, &au, &err);
		api_audit_done(&au);
	}
	json_decref(root);
	if (rc == HR_ENOTFOUND) { /* resuming an account that is not paused */
		hr_fail(&err, HR_ECONFLICT, "account", "account %s is not paused",
		        api_account_name(a->tenant_id, a->id));
		rc = HR_ECONFLICT;
	}
	if (rc != 0)
		return api_fail(r, rc, &err);
	if (r->srv->o.dispatcher)
		dispatcher_notify(r->srv->o.dispatcher); /* this node's: at once */
	json_t *j = health_json(r, a, &rc);
	if (!j)
		return api_fail(r, rc, NULL);
	return api_respond_json(r, 200, j, NULL);
}

enum MHD_Result api_channel_pause(struct api_req *r)
{
	return pause_set(r, true);
}

enum MHD_Result api_channel_resume(struct api_req *r)
{
	return pause_set(r, false);
}
