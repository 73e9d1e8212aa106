/*
 * webhooks.c - provider webhook ingress: /webhooks/{channel}/{account}.
 *
 * GET is the provider's subscription handshake. POST is an event: its
 * signature is checked over the exact raw bytes, then the raw body is
 * appended to the inbox in one durable write and answered 200 at once (with
 * the channel's webhook_answer, "{}" by default). No parsing or applying
 * happens here (the applier does that from the inbox), so a burst of
 * webhooks never makes a provider time out and retry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "obs/acct_health.h"
#include "obs/metrics.h"

struct wh_ctx {
	char *url; /* public URL of this request, query included */
	char dedupe[128];
	int rc;
	struct hr_err err;
};

static void wh_ctx_free(void *p)
{
	struct wh_ctx *w = p;
	if (w)
		free(w->url);
	free(w);
}

int api_webhook_resolve(struct api_req *r, const char *channel, const char *account)
{
	struct channel_account *a = account_set_find(r->srv->o.accounts, account);
	if (!a || strcmp(a->ops->name, channel) != 0)
		return HR_ENOTFOUND;
	r->account = a;
	return 0;
}

static const char *wh_header(void *ctx, const char *name)
{
	return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

static const char *wh_query(void *ctx, const char *name)
{
	return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

static void inbox_done(void *arg, int rc, const struct hr_err *err)
{
	struct api_req *r = arg;
	struct wh_ctx *w = r->priv;
	w->rc = rc;
	if (err)
		w->err = *err;
	if (rc == 0) {
		metrics_webhook(r->account->ops->name, M_WH_RECEIVED, 1);
		health_webhook(r->account->id, hr_now_us());
		if (r->srv->o.applier)
			applier_notify(r->srv->o.applier);
	}
	api_async_end(r);
}

static enum MHD_Result webhook_start(struct api_req *r)
{
	struct api_server *s = r->srv;
	const struct channel_account *acct = r->account;
	const char *chan = acct->ops->name;
	struct wh_ctx *w = calloc(1, sizeof *w);
	if (!w)
		return api_fail(r, HR_ENOMEM, NULL);
	r->priv = w;
	r->priv_free = wh_ctx_free;
	size_t ul = strlen(s->o.public_url) + strlen(r->raw_uri) + 1;
	w->url = malloc(ul);
	if (!w->url)
		return api_fail(r, HR_ENOMEM, NULL);
	snprintf(w->url, ul, "%s%s", s->o.public_url, r->raw_uri);

	struct wh_request req = {
	    .method = r->method,
	    .url = w->url,
	    .body = r->body,
	    .body_len = r->len,
	    .header = wh_header,
	    .query = wh_query,
	    .ctx = r->conn,
	};
	struct hr_err err;
	hr_err_clear(&err);

	/* Set-up handshakes first (WhatsApp's GET, RBM's POST {clientToken,
	 * secret}); they carry no signature by the providers' design. */
	if (acct->ops->webhook_handshake) {
		int status = 500;
		char *body = NULL;
		int rc = acct->ops->webhook_handshake(acct, &req, &status, &body);
		if (rc < 0) {
			free(body);
			return api_fail(r, rc, NULL);
		}
		if (rc == 1)
			return api_respond(r, status, body, body ? strlen(body) : 0,
			                   "text/plain; charset=utf-8", NULL);
		free(body);
	}
	if (strcmp(r->method, MHD_HTTP_METHOD_POST) != 0) {
		static const char *const allow[] = {"Allow", "POST", NULL};
		return api_fail_kind(r, APIERR_METHOD, "webhook events are POSTed", NULL, allow);
	}

	/* During a rotation (a changed secret file, a re-registered account)
	 * the previous secrets still verify for server.secret_grace_s: a
	 * provider that signed before it learnt the new secret, or retries
	 * such a delivery, is not refused. */
	bool by_prev = false;
	int rc = channel_webhook_verify_rotating(acct, &req, hr_now_us(), &by_prev, &err);
	if (rc == 0 && by_prev)
		hr_log(HR_LOG_WARN, "webhook",
		       "%s webhook for %s verified with the account's previous secret (rotation "
		       "grace)",
		       chan, acct->id);
	if (rc != 0) {
		metrics_webhook(chan, M_WH_REJECTED, 1);
		hr_log(HR_LOG_WARN, "webhook", "rejected %s webhook for %s: %s", chan, acct->id,
		       err.msg);
		return api_fail_kind(r, APIERR_BAD_SIGNATURE,
		                     err.msg[0] ? err.msg : "bad signature",
		                     err.field[0] ? err.field : NULL, NULL);
	}
	acct->ops->webhook_dedupe_key(&req, w->dedupe);

	if ((rc = api_async_begin(r)) != 0)
		return api_fail(r, rc, NULL);
	r->stage = 1;
	struct store *st = s->o.store;
	rc = st->ops->inbox_append(st, acct->id, chan, w->dedupe, r->body, r->len, inbox_done, r);
	if (rc != 0) {
		w->rc = rc;
		api_async_end(r);
	}
	return MHD_YES;
}

enum MHD_Result api_webhook(struct api_req *r)
{
	if (r->stage == 0)
		return webhook_start(r);
	struct wh_ctx *w = r->priv;
	if (w->rc != 0)
		return api_fail(r, w->rc, &w->err);
	/* The channel's own answer (Twilio: TwiML), else "{}". Should the copy
	 * fail the answer is an empty 200: the event is stored, and an empty
	 * 200 means "received" to every provider. */
	const struct wh_answer *a = r->account->ops->webhook_answer;
	char *ok = strdup(a ? a->body : "{}");
	return api_respond(r, 200, ok, ok ? strlen(ok) : 0,
	                   a ? a->content_type : "application/json", NULL);
}
