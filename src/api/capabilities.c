/*
 * capabilities.c - GET /v1/channels/{account}/capabilities?to=+1555...: asks
 * the account's provider whether a recipient can receive that channel (RBM's
 * capability check), for clients and, later, fallback routing.
 *
 *   200 {"account","channel","to","capable":true,"features":[...]}
 *   200 {"account","channel","to","capable":false,"reason":"not_rcs_capable",
 *        "detail":"..."}
 *   404 the tenant has no such account; 422 the channel has no capability
 *   check, or "to" is missing or not an address of the channel; 503 the
 *   provider could not answer (its error in the message).
 *
 * The provider call blocks up to ~10 s, so it runs on a short-lived thread of
 * its own while the connection is suspended: the server's few MHD threads
 * keep serving. At most CAPS_MAX_THREADS checks run at once (503 beyond), so
 * clients cannot make the server start threads without bound. Accounts are
 * never freed while the server runs (a replaced one is retired), so the
 * thread may use the pointer it was given.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define CAPS_MAX_THREADS 16

/* Checks in progress, over all servers of the process (a thread is a
 * process resource). */
static atomic_int caps_running;

struct caps_ctx {
	struct api_req *r;
	const struct channel_account *acct;
	char to[HR_ADDR_MAX];
	int rc;
	json_t *features;
	struct hr_err err;
};

static void caps_free(void *p)
{
	struct caps_ctx *c = p;
	if (c)
		json_decref(c->features);
	free(c);
}

/* The worker: asks the provider, then hands the request back to MHD. */
static void *caps_main(void *arg)
{
	struct caps_ctx *c = arg;
	hr_err_clear(&c->err);
	c->rc = c->acct->ops->capability(c->acct, c->to, &c->features, &c->err);
	if (c->rc == HR_EBUSY && c->acct->mask_answers)
		/* Not a provider's host: what it answered stays with us. */
		hr_fail(&c->err, HR_EBUSY, "to",
		        "the capability check got no usable answer (details withheld: not a "
		        "provider's host)");
	atomic_fetch_sub(&caps_running, 1);
	api_async_end(c->r); /* c may be freed from here on */
	return NULL;
}

static enum MHD_Result caps_start(struct api_req *r)
{
	static const char *const params[] = {"to", NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, params, &err);
	if (rc)
		return api_fail(r, rc, &err);
	const struct channel_account *a = api_account_lookup(r->srv, r->tenant, r->path_id);
	if (a && !api_unit_visible(r, a->unit, true))
		a = NULL; /* a sibling unit's account: as absent as another tenant's */
	if (!a) {
		char id[sizeof r->path_id];
		hr_fail(&err, HR_ENOTFOUND, NULL, "no channel account '%s'",
		        api_clip(id, sizeof id, r->path_id));
		return api_fail(r, HR_ENOTFOUND, &err);
	}
	if (!a->ops->capability) {
		hr_fail(&err, HR_EINVAL, "account",
		        "%s accounts have no capability check (only rcs has one)", a->ops->name);
		return api_fail(r, HR_EINVAL, &err);
	}
	const char *to = api_query(r, "to");
	if (!to) {
		hr_fail(&err, HR_EINVAL, "to", "the query parameter to is required");
		return api_fail(r, HR_EINVAL, &err);
	}
	struct caps_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return api_fail(r, HR_ENOMEM, NULL);
	r->priv = c;
	r->priv_free = caps_free;
	c->r = r;
	c->acct = a;
	if ((rc = a->ops->normalize_recipient(to, c->to, &err)) != 0)
		return api_fail(r, rc, &err);
	if (atomic_fetch_add(&caps_running, 1) >= CAPS_MAX_THREADS) {
		atomic_fetch_sub(&caps_running, 1);
		hr_fail(&err, HR_EBUSY, NULL,
		        "too many capability checks in progress (at most %d); try again",
		        CAPS_MAX_THREADS);
		return api_fail(r, HR_EBUSY, &err);
	}
	if ((rc = api_async_begin(r)) != 0) {
		atomic_fetch_sub(&caps_running, 1);
		return api_fail(r, rc, NULL);
	}
	r->stage = 1;
	pthread_attr_t attr;
	pthread_t th;
	bool attr_ok = pthread_attr_init(&attr) == 0;
	if (!attr_ok || pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
	    pthread_create(&th, &attr, caps_main, c) != 0) {
		atomic_fetch_sub(&caps_running, 1);
		c->rc = hr_fail(&c->err, HR_EBUSY, NULL, "cannot start the capability check");
		api_async_end(r);
	}
	if (attr_ok)
		pthread_attr_destroy(&attr);
	return MHD_YES;
}

enum MHD_Result api_channel_capabilities(struct api_req *r)
{
	if (r->stage == 0)
		return caps_start(r);
	struct caps_ctx *c = r->priv;
	const char *chan = c->acct->ops->name;
	const char *name = api_account_name(c->acct->tenant_id, c->acct->id);
	if (c->rc == 0) {
		json_t *j =
		    json_pack("{s:s, s:s, s:s, s:b, s:O}", "account", name, "channel", chan,
		              "to", c->to, "capable", 1, "features", c->features);
		return api_respond_json(r, 200, j, NULL);
	}
	if (c->rc == HR_ENOTFOUND) {
		char reason[HR_NAME_MAX + 16], detail[sizeof c->err.msg];
		snprintf(reason, sizeof reason, "not_%s_capable", chan);
		json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "account", name,
		                      "channel", chan, "to", c->to, "capable", 0, "reason", reason,
		                      "detail", api_clip(detail, sizeof detail, c->err.msg));
		return api_respond_json(r, 200, j, NULL);
	}
	return api_fail(r, c->rc, &c->err);
}
