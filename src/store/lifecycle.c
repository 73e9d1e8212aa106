/*
 * lifecycle.c - the rules of a message's life, above every store backend
 * (lifecycle.h says which). Each entry point runs its work through the
 * backend's lc_backend.run inside one transaction and touches rows only
 * through struct store_tx_ops.
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
#define REASON_MAX sizeof(((struct suppression_row *)0)->reason)

/* The error text of a suppressed message whose suppression has no reason. */
#define SUPPRESSED_TEXT "the recipient opted out"

#define INBOX_ORPHAN_AFTER_US (24LL * 3600 * 1000000)
#define INBOX_RETRY_BASE_US 200000LL
#define INBOX_RETRY_MAX_US 60000000LL
/* How long a reply may wait for the message it quotes: a provider's reply
 * webhook can overtake the dispatcher's record of the send it answers. */
#define INBOUND_LINK_WAIT_US (30 * 1000000LL)

/* Lease expiry handles this many messages per transaction, so one call with
 * a huge backlog never holds the writer for long. */
#define REQUEUE_BATCH 1000

/* ---------------------------------------------------------------------------
 * Argument checks every backend shares.
 * ------------------------------------------------------------------------- */

static int check_key(const char *v, size_t max, const char *field, struct hr_err *err)
{
	if (!v || !*v)
		return hr_fail(err, HR_EINVAL, field, "%s is empty", field);
	size_t n = strlen(v);
	if (n >= max)
		return hr_fail(err, HR_EINVAL, field, "%s is longer than %zu bytes", field,
		               max - 1);
	char copy[HR_ADDR_MAX > HR_NAME_MAX ? HR_ADDR_MAX : HR_NAME_MAX];
	if (hr_utf8_copy(copy, v, sizeof copy) != n || memcmp(copy, v, n) != 0)
		return hr_fail(err, HR_EINVAL, field, "%s is not valid UTF-8", field);
	return 0;
}

int lc_check_supp_keys(const char *tenant_id, const char *channel, const char *recipient,
                       struct hr_err *err)
{
	int rc = check_key(tenant_id, HR_NAME_MAX, "tenant_id", err);
	if (rc == 0)
		rc = check_key(channel, sizeof(((struct suppression_row *)0)->channel), "channel",
		               err);
	if (rc == 0)
		rc = check_key(recipient, HR_ADDR_MAX, "recipient", err);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Message retention: the rule (store.h, struct msg_retention), stated here
 * for every backend as three values their SQL binds.
 * ------------------------------------------------------------------------- */

static bool retention_channel_ok(const char *c)
{
	size_t n = c ? strlen(c) : 0;
	if (n == 0 || n >= sizeof(((struct message *)0)->channel))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '_' ||
		      c[i] == '-'))
			return false;
	return true;
}

int lc_retention_prepare(const struct msg_retention *r, struct lc_retention *out,
                         struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	if (!r || r->before <= 0)
		return hr_fail(err, HR_EINVAL, "before", "retention needs a cutoff time");
	if (r->batch < 0 || r->batch > LC_RETENTION_BATCH_MAX)
		return hr_fail(err, HR_EINVAL, "batch", "batch must be between 1 and %d",
		               LC_RETENTION_BATCH_MAX);
	if (r->max_batches < 0)
		return hr_fail(err, HR_EINVAL, "max_batches", "max_batches must be 0 or more");
	if (r->nfinal_at_sent > LC_RETENTION_CHANNELS_MAX ||
	    (r->nfinal_at_sent && !r->final_at_sent))
		return hr_fail(err, HR_EINVAL, "final_at_sent", "at most %d channels",
		               LC_RETENTION_CHANNELS_MAX);
	out->before = r->before;
	hr_id_time_prefix(r->before, out->before_id);
	out->batch = r->batch ? r->batch : LC_RETENTION_BATCH_DEFAULT;
	out->max_batches = r->max_batches;
	/* The names are checked to [a-z0-9_-], so the array needs no escaping. */
	size_t len = 0;
	out->channels[len++] = '[';
	for (size_t i = 0; i < r->nfinal_at_sent; i++) {
		const char *c = r->final_at_sent[i];
		if (!retention_channel_ok(c))
			return hr_fail(err, HR_EINVAL, "final_at_sent",
			               "channel name %zu is empty, too long or not [a-z0-9_-]", i);
		len += (size_t)snprintf(out->channels + len, sizeof out->channels - len, "%s\"%s\"",
		                        i ? "," : "", c);
	}
	out->channels[len++] = ']';
	out->channels[len] = '\0';
	for (int st = 0; st < MSG__COUNT; st++) {
		if (msg_status_settled((enum msg_status)st, true))
			out->settled |= (int64_t)1 << st;
		else if (msg_status_settled((enum msg_status)st, false))
			out->settled_at_sent |= (int64_t)1 << st;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * The one transition.
 * ------------------------------------------------------------------------- */

int lc_transition(struct store_tx *tx, struct lc_msg *m, const struct lc_update *u,
                  const struct lc_event *ev)
{
	if (!(u->set & LC_SET_STATUS))
		return hr_fail(TX_ERR(tx), HR_EINTERNAL, "status",
		               "a transition of %s without a status", m->id);
	struct lc_update uu = *u;
	if (u->status == MSG_SENT && m->status != MSG_SENT) {
		/* What staleness is measured from, and a routed message's
		 * deadline for a receipt (lc_reconcile.c). */
		int64_t now = tx->ops->now(tx);
		uu.set |= LC_SET_SENT_AT | LC_SET_FALLBACK_AT;
		uu.sent_at = now;
		uu.fallback_at = m->fallback_after > 0 && m->route_step + 1 < m->route_steps
		                     ? now + m->fallback_after
		                     : 0;
		m->sent_at = now;
	}
	u = &uu;
	int rc = tx->ops->msg_update(tx, m, u);
	if (rc)
		return rc;
	if (u->set & LC_SET_STALE)
		m->stale = true;
	/* Counters and hooks go here: every change of m->status passes this
	 * point once. Campaign counters (lc_batch.c) are written when the run
	 * ends, in the same transaction. */
	enum msg_status from = m->status;
	if (m->status != u->status) {
		lc_count(tx, m->batch_id, (int)m->status, (int)u->status, false);
		lc_daily(tx, m->tenant_id, m->channel, (int)m->status, (int)u->status,
		         u->error_code);
	}
	m->status = u->status;
	m->lease_until = 0;
	if ((u->set & LC_SET_PROVIDER_ID) && u->provider_id && u->provider_id[0])
		m->has_provider_id = true;
	if (u->set & LC_GIVE_BACK_ATTEMPT)
		m->attempts = m->attempts > 0 ? m->attempts - 1 : 0;
	/* The client's callback, in this same transaction (lc_callback.c). */
	if (from != m->status && (rc = lc_callback_status(tx, m, from)))
		return rc;
	/* The plugins' event, in this same transaction (lc_plugin.c). */
	if (from != m->status && (rc = lc_plugin_status(tx, m, from)))
		return rc;
	if (ev && (rc = tx->ops->event_insert(tx, m->id, ev)))
		return rc;
	/* A routed message that failed: its follow-up, in this same
	 * transaction (lc_reconcile.c). */
	return lc_fallback_on_status(tx, m, from, u, ev ? ev->source : "lifecycle");
}

void lc_claimed(struct store_tx *tx, const struct message *msgs, size_t n)
{
	/* QUEUED -> SENDING for each: the hook point for claims. */
	for (size_t i = 0; i < n; i++)
		lc_count(tx, msgs[i].batch_id, MSG_QUEUED, MSG_SENDING, false);
}

/* An event on a message whose status does not change (inbound replies,
 * ignored outcomes, recipient migration). */
static int lc_note(struct store_tx *tx, const char *message_id, const struct lc_event *ev)
{
	return tx->ops->event_insert(tx, message_id, ev);
}

/* The JSON just built, or HR_ENOMEM. */
static int detail_end(struct store_tx *tx, const char **out)
{
	*out = ev_json_end(TX_JSON(tx));
	return *out ? 0 : hr_fail(TX_ERR(tx), HR_ENOMEM, "message_event", "out of memory");
}

/* ---------------------------------------------------------------------------
 * Claim: suppression screening and alias rewriting.
 * ------------------------------------------------------------------------- */

struct claim_done;

struct claim_ctx {
	const char *account_id;
	int64_t now, lease_us;
	int limit;
	struct message *out;
	size_t n;
	struct claim_done *done; /* claim_async's: where the run leaves n */
};

/* An asynchronous claim's caller and what its run found (claim_async). */
struct claim_done {
	store_claim_fn cb;
	void *arg;
	struct message *out;
	size_t n;
	char account_id[HR_NAME_MAX];
};

/* The message's recipient moved (from -> to): rewritten, with its event. */
static int migrate_recipient(struct store_tx *tx, struct lc_msg *m, const char *from,
                             const char *to)
{
	struct lc_update u = {.set = LC_SET_RECIPIENT, .recipient = to};
	int rc = tx->ops->msg_update(tx, m, &u);
	if (rc)
		return rc;
	hr_strlcpy(m->recipient, to, sizeof m->recipient);
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "from", from);
	ev_json_str(js, "to", to);
	struct lc_event ev = {
	    .type = "recipient_migrated", .source = "dispatcher", .status = -1, .applied = true};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	return lc_note(tx, m->id, &ev);
}

/* A claimed message whose recipient opted out: SUPPRESSED instead of
 * SENDING, with the attempt the claim counted given back (nothing was
 * attempted), error code "suppressed" (clients match on it), the reason as
 * its error text, and a "suppressed" event. */
static int suppress_claimed(struct store_tx *tx, struct lc_msg *m, const char *reason)
{
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "reason", reason);
	struct lc_event ev = {.type = "suppressed",
	                      .source = "dispatcher",
	                      .status = MSG_SUPPRESSED,
	                      .applied = true};
	int rc = detail_end(tx, &ev.detail);
	if (rc)
		return rc;
	struct lc_update u = {.set = LC_SET_STATUS | LC_SET_ERROR | LC_GIVE_BACK_ATTEMPT,
	                      .status = MSG_SUPPRESSED,
	                      .error_code = "suppressed",
	                      .error_text = reason[0] ? reason : SUPPRESSED_TEXT};
	return lc_transition(tx, m, &u, &ev);
}

static void lc_msg_from(struct lc_msg *l, const struct message *m)
{
	memset(l, 0, sizeof *l);
	hr_strlcpy(l->id, m->id, sizeof l->id);
	hr_strlcpy(l->tenant_id, m->tenant_id, sizeof l->tenant_id);
	hr_strlcpy(l->account_id, m->account_id, sizeof l->account_id);
	hr_strlcpy(l->channel, m->channel, sizeof l->channel);
	hr_strlcpy(l->recipient, m->recipient, sizeof l->recipient);
	l->status = (enum msg_status)m->status;
	l->attempts = m->attempts;
	l->max_attempts = m->max_attempts;
	l->has_provider_id = m->provider_id[0] != '\0';
	l->lease_until = m->lease_until;
	hr_strlcpy(l->batch_id, m->batch_id, sizeof l->batch_id);
	l->policy = m->policy;
	l->expires_at = m->expires_at;
	l->route_step = m->route_step;
	l->route_steps = m->route_steps;
	hr_strlcpy(l->route_root, m->route_root, sizeof l->route_root);
	l->fallback_after = m->fallback_after;
	l->key = -1; /* by id */
}

/*
 * Screens the claimed rows: an address the account knows has moved is
 * rewritten (and returned rewritten), then a recipient on the tenant's
 * suppression list for the channel (under its old or new address) becomes
 * SUPPRESSED and is returned with that status (the caller must not send
 * it). One probe per claim for aliases and one per (tenant, channel) for
 * suppressions decide whether any per-message lookup is needed, so the
 * common case costs two index seeks per claim.
 */
static int claim_screen(struct store_tx *tx, struct claim_ctx *c)
{
	int alias = tx->ops->alias_any(tx, c->account_id);
	if (alias < 0)
		return alias;
	char tenant[HR_NAME_MAX] = "", channel[16] = "";
	int supp = -1, rc;
	struct lc_screen_cache bc = {.status = -1};
	for (size_t i = 0; i < c->n; i++) {
		struct message *m = &c->out[i];
		struct lc_msg lm;
		lc_msg_from(&lm, m);
		/* A message of a cancelled campaign is cancelled, not sent. */
		if ((rc = lc_batch_screen(tx, &bc, m, &lm)))
			return rc;
		/* A message past its expiry (an OTP nobody can use any more) is
		 * never sent, however it got here. */
		if ((rc = lc_claim_expired(tx, m, &lm, c->now)) < 0)
			return rc;
		if (m->status != MSG_SENDING)
			continue;
		char orig[HR_ADDR_MAX], to[HR_ADDR_MAX];
		bool moved = false;
		hr_strlcpy(orig, m->recipient, sizeof orig);
		if (alias && (rc = tx->ops->alias_get(tx, c->account_id, orig, to)) != 0) {
			if (rc < 0)
				return rc;
			if (strcmp(to, orig) != 0) {
				if ((rc = migrate_recipient(tx, &lm, orig, to)))
					return rc;
				hr_strlcpy(m->recipient, to, sizeof m->recipient);
				moved = true;
			}
		}
		if (supp < 0 || strcmp(tenant, m->tenant_id) != 0 ||
		    strcmp(channel, m->channel) != 0) {
			hr_strlcpy(tenant, m->tenant_id, sizeof tenant);
			hr_strlcpy(channel, m->channel, sizeof channel);
			if ((supp = tx->ops->supp_any(tx, tenant, channel)) < 0)
				return supp;
		}
		if (!supp)
			continue;
		char reason[REASON_MAX];
		rc = tx->ops->supp_reason(tx, tenant, channel, m->recipient, reason, sizeof reason);
		if (rc == 0 && moved)
			rc = tx->ops->supp_reason(tx, tenant, channel, orig, reason, sizeof reason);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			if ((rc = suppress_claimed(tx, &lm, reason)))
				return rc;
			/* Returned marked, not sent: the dispatcher tells a sync
			 * waiter at once instead of letting it time out. */
			m->status = MSG_SUPPRESSED;
			m->attempts = lm.attempts;
			hr_utf8_copy(m->error_text, reason[0] ? reason : SUPPRESSED_TEXT,
			             sizeof m->error_text);
			hr_strlcpy(m->error_code, "suppressed", sizeof m->error_code);
		}
	}
	return 0;
}

/* The caller's time when it gave one (tests), else the database's. */
static int64_t tx_time(struct store_tx *tx, int64_t given)
{
	return given ? given : tx->ops->now(tx);
}

static int claim_run(struct store_tx *tx, void *arg)
{
	struct claim_ctx *c = arg;
	/* A run again (lc_tx_fn) claims afresh: what the run before it read
	 * is freed first. */
	for (size_t i = 0; i < c->n; i++)
		message_clear(&c->out[i]);
	c->n = 0;
	c->now = tx_time(tx, c->now);
	int rc = tx->ops->claim(tx, c->account_id, c->now, c->now + c->lease_us, c->limit, c->out,
	                        &c->n);
	if (c->done)
		c->done->n = c->n; /* what claim_async_done clears if this rolls back */
	if (rc)
		return rc;
	lc_claimed(tx, c->out, c->n);
	return c->n ? claim_screen(tx, c) : 0;
}

static int claim_order(const void *a, const void *b)
{
	const struct message *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

int lc_claim(const struct lc_backend *b, struct store *st, const char *account_id, int64_t now,
             int64_t lease_us, int limit, struct message *out, size_t *n)
{
	*n = 0;
	if (!account_id || !*account_id || limit < 0)
		return HR_EINVAL;
	if (limit == 0)
		return 0;
	struct claim_ctx c = {
	    .account_id = account_id, .now = now, .lease_us = lease_us, .limit = limit, .out = out};
	int rc = lc_run(b, st, claim_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc) {
		/* Rolled back: the rows read into out[] were never claimed. */
		for (size_t i = 0; i < c.n; i++)
			message_clear(&out[i]);
		return rc;
	}
	/* A backend's claim need not return rows in order; callers want it. */
	qsort(out, c.n, sizeof *out, claim_order);
	*n = c.n;
	return 0;
}

/* On the writer thread once the claim's transaction ended: committed, the
 * rows are the caller's in claim order; rolled back, none was claimed. */
static void claim_async_done(void *arg, int rc, const struct hr_err *err)
{
	(void)err;
	struct claim_done *d = arg;
	if (rc) {
		for (size_t i = 0; i < d->n; i++)
			message_clear(&d->out[i]);
		d->n = 0;
	} else {
		qsort(d->out, d->n, sizeof *d->out, claim_order);
	}
	d->cb(d->arg, rc, d->out, d->n);
	free(d);
}

int lc_claim_async(const struct lc_backend *b, struct store *st, const char *account_id,
                   int64_t now, int64_t lease_us, int limit, struct message *out, store_claim_fn cb,
                   void *arg)
{
	if (!account_id || !*account_id || strlen(account_id) >= HR_NAME_MAX || limit < 1 || !cb)
		return HR_EINVAL;
	struct claim_done *d = calloc(1, sizeof *d);
	if (!d)
		return HR_ENOMEM;
	*d = (struct claim_done){.cb = cb, .arg = arg, .out = out};
	hr_strlcpy(d->account_id, account_id, sizeof d->account_id);
	/* The context is copied into the job: the id it points at is d's. */
	struct claim_ctx c = {.account_id = d->account_id,
	                      .now = now,
	                      .lease_us = lease_us,
	                      .limit = limit,
	                      .out = out,
	                      .done = d};
	int rc = lc_run(b, st, claim_run, &c, sizeof c, claim_async_done, d, NULL);
	if (rc)
		free(d); /* not queued: the callback never comes */
	return rc;
}

/* ---------------------------------------------------------------------------
 * Send outcomes.
 * ------------------------------------------------------------------------- */

struct results_ctx {
	const struct send_result *r;
	size_t n;
};

/*
 * Whether an outcome may change its message. Only the claim that is still
 * current may: the message is SENDING with the attempt number the claim
 * gave it. A result for an older attempt (its lease expired, the message
 * was claimed again) is stale: applying it would overwrite the newer
 * attempt's state. The one exception is a message that lease expiry gave up
 * on as UNKNOWN: a late SENT or FAILED for that same last attempt is exactly
 * the answer that was missing (no claim can have happened since).
 */
static bool result_current(const struct send_result *r, const struct lc_msg *m)
{
	if (m->attempts != r->attempt)
		return false;
	return m->status == MSG_SENDING ||
	       (m->status == MSG_UNKNOWN && r->kind != SEND_RETRY && r->kind != SEND_UNKNOWN);
}

/* The provider said the recipient opted out (Twilio 21610): a fact about the
 * address, not about this attempt, so it is recorded even for a stale
 * outcome. Reason "<error_code>: <error_text>". */
static int suppress_from_result(struct store_tx *tx, const struct lc_msg *m, const char *code,
                                const char *text)
{
	char reason[REASON_MAX];
	const char *one = code[0] ? code : text[0] ? text : "provider reported an opt-out";
	if (code[0] && text[0])
		snprintf(reason, sizeof reason, "%s: %s", code, text);
	else
		snprintf(reason, sizeof reason, "%s", one);
	struct supp_change c = {.tenant_id = m->tenant_id,
	                        .channel = m->channel,
	                        .recipient = m->recipient,
	                        .reason = reason,
	                        .message_id = m->id,
	                        .actor = "provider"};
	int rc = lc_supp_change(tx, &c);
	return rc < 0 ? rc : 0;
}

/* The recipient moved (new_recipient): the message follows it, and the
 * account remembers old -> new so later claims of messages still addressed
 * to the old address send them to the new one. Only for a current outcome:
 * a stale one must not rewrite a message a newer attempt owns. */
static int move_from_result(struct store_tx *tx, struct lc_msg *m, const struct send_result *r)
{
	char to[HR_ADDR_MAX], from[HR_ADDR_MAX];
	hr_utf8_copy(to, r->new_recipient, sizeof to);
	if (!to[0] || strcmp(to, m->recipient) == 0)
		return 0;
	hr_strlcpy(from, m->recipient, sizeof from);
	int rc = migrate_recipient(tx, m, from, to);
	if (rc == 0)
		rc = tx->ops->alias_put(tx, m->account_id, from, to);
	return rc;
}

/* The event detail of one outcome. */
static int result_detail(struct store_tx *tx, const struct send_result *r, const char *pid,
                         const char *code, const char *text, bool apply, const struct lc_msg *m,
                         bool pid_stored, const char **out)
{
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	if (r->http_status)
		ev_json_int(js, "http_status", r->http_status);
	ev_json_int(js, "latency_ms", r->latency_us / 1000);
	ev_json_int(js, "attempt", r->attempt);
	if (pid[0])
		ev_json_str(js, "provider_id", pid);
	if (code[0])
		ev_json_str(js, "error_code", code);
	if (text[0])
		ev_json_str(js, "error_text", text);
	if (r->error_class)
		ev_json_str(js, "class", r->error_class);
	if (r->rate_scope)
		ev_json_str(js, "rate_scope", r->rate_scope);
	if (r->kind == SEND_RETRY)
		ev_json_int(js, "due_at", r->due_at);
	if (r->unknown_reason) {
		/* The request was written and no answer came: the provider may
		 * have it. The audit trail says what Herald did about it. */
		ev_json_str(js, "unknown_outcome", r->unknown_reason);
		if (r->kind == SEND_RETRY) {
			ev_json_str(js, "policy", delivery_policy_name(POLICY_AT_LEAST_ONCE));
			ev_json_str(js, "reason", "resend after unknown outcome");
			ev_json_bool(js, "possible_duplicate", true);
		} else if (r->kind == SEND_UNKNOWN) {
			ev_json_str(js, "policy", delivery_policy_name(m->policy));
			ev_json_str(js, "reason",
			            m->policy == POLICY_AT_MOST_ONCE
			                ? "at_most_once: the request may have reached the provider, "
			                  "so it is never sent again by itself"
			                : "attempts spent: the last request may have reached the "
			                  "provider");
		}
	}
	if (r->suppress)
		ev_json_bool(js, "recipient_suppressed", true);
	if (!apply) {
		ev_json_str(js, "ignored", "stale_attempt");
		ev_json_int(js, "current_attempt", m->attempts);
		ev_json_str(js, "current", msg_status_name(m->status));
		if (pid_stored)
			ev_json_bool(js, "provider_id_stored", true);
	}
	return detail_end(tx, out);
}

/* Whether a message on channel `from` may move to channel `to`: the same
 * channel, or between the phone channels (as routes may). */
static bool reroute_channels_ok(const char *from, const char *to)
{
	static const char *const phone[] = {"whatsapp", "sms", "rcs"};
	if (strcmp(from, to) == 0)
		return true;
	bool a = false, b = false;
	for (size_t i = 0; i < 3; i++) {
		a = a || strcmp(from, phone[i]) == 0;
		b = b || strcmp(to, phone[i]) == 0;
	}
	return a && b;
}

/*
 * A plugin's route change (SEND_REROUTE): nothing was sent, so the message
 * goes back to QUEUED, due now, with its attempt given back, on the new
 * account. The account must be the message's own tenant's, on the channel
 * asked for (checked here, in the transaction, whatever the dispatcher
 * checked before); a change that is refused queues the message again as
 * it was. Either way the event names the plugin's reason and both routes,
 * and the error code tells the next claim not to ask the plugin again
 * (dispatcher.c), so a plugin cannot bounce a message between accounts.
 * A new channel gets the plugin's text as a text message, the recipient
 * spelt as that channel spells it. A stale result (the claim is no longer
 * current) is recorded as ignored.
 */
static int reroute_one(struct store_tx *tx, const struct send_result *r)
{
	struct lc_msg m;
	int rc = tx->ops->msg_get(tx, r->message_id, &m);
	if (rc)
		return rc;
	char why[HR_ERRTEXT_MAX], acct[HR_NAME_MAX], chan[16];
	hr_utf8_copy(why, r->error_text, sizeof why);
	hr_utf8_copy(acct, r->route_account, sizeof acct);
	hr_utf8_copy(chan, r->route_channel, sizeof chan);
	bool apply = m.status == MSG_SENDING && m.attempts == r->attempt;
	const char *refused = NULL;
	char a_tenant[HR_NAME_MAX] = "", a_channel[16] = "";
	if (apply) {
		int found = tx->ops->account_of(tx, acct, a_tenant, a_channel);
		if (found < 0)
			return found;
		/* Another tenant's account reads exactly like one that does not
		 * exist: the audit trail is the message's tenant's to read. */
		if (!found || strcmp(a_tenant, m.tenant_id) != 0)
			refused = "no such account of the message's tenant";
		else if (strcmp(a_channel, chan) != 0)
			refused = "the account is not on that channel";
		else if (!reroute_channels_ok(m.channel, chan))
			refused = "a message cannot move between these channels";
		else if (strcmp(m.channel, chan) != 0 && (!r->route_text || !r->route_text[0]))
			refused = "no text to send on the new channel";
	}
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "error_code", refused ? "plugin_route_refused" : "plugin_rerouted");
	ev_json_str(js, "error_text", why);
	ev_json_str(js, "from_channel", m.channel);
	ev_json_str(js, "from_account", m.account_id);
	ev_json_str(js, "channel", chan);
	ev_json_str(js, "account_id", acct);
	ev_json_int(js, "attempt", r->attempt);
	if (refused)
		ev_json_str(js, "refused", refused);
	if (!apply) {
		ev_json_str(js, "ignored", "stale_attempt");
		ev_json_str(js, "current", msg_status_name(m.status));
	}
	struct lc_event ev = {.type = refused ? "route_refused" : "rerouted",
	                      .source = "dispatcher",
	                      .status = MSG_QUEUED,
	                      .applied = apply};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	if (!apply)
		return lc_note(tx, m.id, &ev);
	char text[HR_ERRTEXT_MAX];
	if (refused)
		snprintf(text, sizeof text, "%.300s (route to %s refused: %s)", why, acct, refused);
	else
		hr_strlcpy(text, why, sizeof text);
	if (!refused) {
		bool moved = strcmp(m.channel, chan) != 0;
		char to[HR_ADDR_MAX];
		char *content = NULL;
		int segments = 0;
		if (moved) {
			lc_route_address(chan, m.recipient, to);
			json_t *c = json_pack("{s:s, s:s}", "type", "text", "text", r->route_text);
			content = c ? json_dumps(c, JSON_COMPACT) : NULL;
			json_decref(c);
			if (!content)
				return hr_fail(TX_ERR(tx), HR_ENOMEM, "message", "out of memory");
			struct sms_info info;
			if (strcmp(chan, "sms") == 0 &&
			    sms_segments(r->route_text, &info, NULL) == 0)
				segments = info.segments;
		} else {
			hr_strlcpy(to, m.recipient, sizeof to);
		}
		rc = tx->ops->msg_reroute(tx, &m, acct, chan, to, content,
		                          moved ? r->route_text : NULL, segments);
		free(content);
		if (rc)
			return rc;
		hr_strlcpy(m.account_id, acct, sizeof m.account_id);
		hr_strlcpy(m.channel, chan, sizeof m.channel);
		hr_strlcpy(m.recipient, to, sizeof m.recipient);
	}
	struct lc_update u = {.set =
	                          LC_SET_STATUS | LC_SET_DUE | LC_SET_ERROR | LC_GIVE_BACK_ATTEMPT,
	                      .status = MSG_QUEUED,
	                      .due_at = tx->ops->now(tx),
	                      .error_code = refused ? "plugin_route_refused" : "plugin_rerouted",
	                      .error_text = text};
	return lc_transition(tx, &m, &u, &ev);
}

/* SEND_NOTE: an audit event and nothing else (a route change the
 * dispatcher refused at once: the send goes on as it was). */
static int note_one(struct store_tx *tx, const struct send_result *r)
{
	struct lc_msg m;
	int rc = tx->ops->msg_get(tx, r->message_id, &m);
	if (rc)
		return rc;
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "error_code", r->error_code);
	ev_json_str(js, "error_text", r->error_text);
	if (r->route_channel[0])
		ev_json_str(js, "channel", r->route_channel);
	if (r->route_account[0])
		ev_json_str(js, "account_id", r->route_account);
	ev_json_int(js, "attempt", r->attempt);
	struct lc_event ev = {.type = r->note_type ? r->note_type : "note",
	                      .source = "dispatcher",
	                      .status = -1,
	                      .applied = false};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	return lc_note(tx, m.id, &ev);
}

/*
 * One outcome: the transition if the result is current (result_current)
 * and its audit event either way. A stale SEND_OK still stores its provider
 * id when the message has none: the provider did accept that copy, and its
 * receipts must find the message. Then what the outcome says about the
 * recipient: an opt-out (suppress) and a new address (new_recipient). Texts
 * from the provider are stored as valid UTF-8. HR_ENOTFOUND for a message
 * id that does not exist.
 */
static int record_one(struct store_tx *tx, const struct send_result *r)
{
	char pid[HR_PROVIDER_ID_MAX], code[HR_ERRCODE_MAX], text[HR_ERRTEXT_MAX];
	hr_utf8_copy(pid, r->provider_id, sizeof pid);
	hr_utf8_copy(code, r->error_code, sizeof code);
	hr_utf8_copy(text, r->error_text, sizeof text);

	if (r->kind == SEND_REROUTE)
		return reroute_one(tx, r);
	if (r->kind == SEND_NOTE)
		return note_one(tx, r);
	struct lc_update u = {.set = LC_SET_STATUS};
	const char *type;
	switch (r->kind) {
	case SEND_OK:
		type = "sent";
		u.status = MSG_SENT;
		u.set |= LC_SET_PROVIDER_ID | LC_SET_ERROR;
		u.provider_id = pid;
		u.error_code = u.error_text = "";
		break;
	case SEND_RETRY:
		type = "retry";
		u.status = MSG_QUEUED;
		u.set |= LC_SET_DUE | LC_SET_ERROR;
		u.due_at = r->due_at;
		u.error_code = code;
		u.error_text = text;
		break;
	case SEND_FAILED:
		type = "failed";
		u.status = MSG_FAILED;
		u.set |= LC_SET_ERROR;
		u.error_code = code;
		u.error_text = text;
		break;
	case SEND_SKIPPED:
		type = "skipped";
		u.status = MSG_CANCELLED;
		u.set |= LC_SET_ERROR;
		u.error_code = code;
		u.error_text = text;
		break;
	case SEND_UNKNOWN:
		/* The id the sender chose (RBM), so a late receipt finds it. */
		type = "unknown_outcome";
		u.status = MSG_UNKNOWN;
		u.set |= LC_SET_ERROR | LC_PROVIDER_ID_IF_NONE;
		u.provider_id = pid;
		u.error_code = code;
		u.error_text = text;
		break;
	default:
		return hr_fail(TX_ERR(tx), HR_EINVAL, "kind", "unknown send result kind %d",
		               r->kind);
	}

	struct lc_msg m;
	int rc = tx->ops->msg_get(tx, r->message_id, &m);
	if (rc)
		return rc;
	bool apply = result_current(r, &m);
	bool pid_stored = !apply && r->kind == SEND_OK && pid[0] && !m.has_provider_id;
	const char *detail;
	if ((rc = result_detail(tx, r, pid, code, text, apply, &m, pid_stored, &detail)))
		return rc;
	struct lc_event ev = {.type = type,
	                      .source = "dispatcher",
	                      .status = (int)u.status,
	                      .applied = apply,
	                      .detail = detail};
	if (apply) {
		rc = lc_transition(tx, &m, &u, &ev);
	} else {
		if (pid_stored) {
			struct lc_update p = {.set = LC_PROVIDER_ID_IF_NONE, .provider_id = pid};
			if ((rc = tx->ops->msg_update(tx, &m, &p)))
				return rc;
		}
		rc = lc_note(tx, m.id, &ev);
	}
	if (rc)
		return rc;
	if (r->suppress && (rc = suppress_from_result(tx, &m, code, text)))
		return rc;
	return apply ? move_from_result(tx, &m, r) : 0;
}

/* The batch's messages, read at once where the backend can (a hint: if
 * the list cannot be made, each is read as it comes). */
static int results_prefetch(struct store_tx *tx, const struct results_ctx *a)
{
	if (!tx->ops->prefetch || a->n == 0)
		return 0;
	const char **ids = malloc(a->n * sizeof *ids);
	if (!ids)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		ids[i] = a->r[i].message_id;
	struct lc_want w = {.msg_ids = ids, .nmsg_ids = a->n};
	int rc = tx->ops->prefetch(tx, &w);
	free(ids);
	return rc;
}

static void result_not_recorded(struct store_tx *tx, const struct send_result *r)
{
	hr_log(HR_LOG_WARN, "store", "send outcome for %s not recorded: %s", r->message_id,
	       TX_ERR(tx)->msg);
	hr_err_clear(TX_ERR(tx));
}

/*
 * All the outcomes as one item: what a run of outcomes that all apply (the
 * usual case) costs. An item is a savepoint, and SQLite copies every page
 * a savepoint changes that was already changed in the transaction into its
 * sub-journal: one item per outcome copied the same hot pages (the tables'
 * last leaves, the indexes' hot leaves) once per outcome, a third of the
 * cost of recording one (store_bench deliver: 21-25 -> 14-17 µs). 0 when
 * every outcome was recorded; 1 when one failed and the item was undone
 * (the caller records them one by one); < 0 when the transaction is lost.
 * Only for a backend that reads rows as it goes: one that prefetched them
 * for the run (PostgreSQL) keeps the changed rows in its cache, which an
 * undone item would leave stale.
 */
static int results_one_item(struct store_tx *tx, struct results_ctx *a)
{
	int rc = lc_item_begin(tx);
	if (rc)
		return rc; /* HR_E* codes are negative */
	for (size_t i = 0; i < a->n && rc == 0; i++)
		rc = record_one(tx, &a->r[i]);
	if (!tx->ops->alive(tx))
		return rc ? rc
		          : hr_fail(TX_ERR(tx), HR_EIO, "record_results", "transaction aborted");
	if (rc)
		hr_err_clear(TX_ERR(tx)); /* recorded again one by one, and logged then */
	int end = lc_item_end(tx, rc == 0);
	if (end < 0)
		return end;
	if (end > 0)
		hr_err_clear(TX_ERR(tx));
	return rc == 0 && end == 0 ? 0 : 1;
}

/* Each outcome in its own item: one that fails is undone alone and logged,
 * the others stay, and the run succeeds. Only losing the whole transaction
 * fails it. */
static int results_run(struct store_tx *tx, void *arg)
{
	struct results_ctx *a = arg;
	int rc = results_prefetch(tx, a);
	if (rc)
		return rc;
	if (a->n > 1 && !tx->ops->prefetch) {
		rc = results_one_item(tx, a);
		if (rc <= 0)
			return rc;
	}
	for (size_t i = 0; i < a->n; i++) {
		if ((rc = lc_item_begin(tx)))
			return rc;
		rc = record_one(tx, &a->r[i]);
		if (!tx->ops->alive(tx))
			return rc ? rc
			          : hr_fail(TX_ERR(tx), HR_EIO, "record_results",
			                    "transaction aborted");
		if (rc)
			result_not_recorded(tx, &a->r[i]);
		int end = lc_item_end(tx, rc == 0 ? true : false);
		if (end < 0)
			return end;
		if (end > 0)
			result_not_recorded(tx, &a->r[i]);
	}
	return 0;
}

int lc_record_results(const struct lc_backend *b, struct store *st, const struct send_result *r,
                      size_t n, store_done_fn cb, void *arg)
{
	if (n && !r)
		return HR_EINVAL;
	struct results_ctx c = {.r = r, .n = n};
	return lc_run(b, st, results_run, &c, sizeof c, cb, arg, NULL);
}

/* ---------------------------------------------------------------------------
 * Lease expiry.
 * ------------------------------------------------------------------------- */

/* Per channel, what one run of lease expiry did (metrics after commit). */
#define REQUEUE_CHANNELS 8
struct requeue_count {
	char channel[16];
	int unknown, resent;
};

struct requeue_ctx {
	int64_t now;
	int n;
	bool more;
	/* Set afresh by each run (a run may be replayed: lc_tx_fn). */
	struct requeue_count by[REQUEUE_CHANNELS];
	size_t nby;
};

static void requeue_note(struct requeue_ctx *c, const char *channel, bool unknown)
{
	size_t i = 0;
	while (i < c->nby && strcmp(c->by[i].channel, channel) != 0)
		i++;
	if (i == c->nby) {
		if (c->nby == REQUEUE_CHANNELS)
			i = REQUEUE_CHANNELS - 1; /* more channels than slots: lumped */
		else
			hr_strlcpy(c->by[c->nby++].channel, channel, sizeof c->by[0].channel);
	}
	if (unknown)
		c->by[i].unknown++;
	else
		c->by[i].resent++;
}

/*
 * A SENDING message whose lease ran out belonged to a process that stopped
 * while it held it: the request may or may not have reached the provider.
 * An at_most_once message goes to UNKNOWN (never sent again by itself); so
 * does one on its last allowed attempt, since another attempt beyond the
 * limit would be a duplicate nobody allowed. Any other goes back to the
 * queue, and its event says the next send is a possible duplicate.
 */
static int requeue_run(struct store_tx *tx, void *arg)
{
	struct requeue_ctx *c = arg;
	c->now = tx_time(tx, c->now);
	c->nby = 0;
	memset(c->by, 0, sizeof c->by);
	struct lc_msg *rows = calloc(REQUEUE_BATCH, sizeof *rows);
	if (!rows)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "requeue", "out of memory");
	size_t n = 0;
	int rc = tx->ops->lease_expired(tx, c->now, REQUEUE_BATCH, rows, &n);
	size_t held = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct lc_msg *m = &rows[i];
		/* Still being sent by this process: its outcome is on the way. */
		if (store_held(lc_tx_store(tx), m->id, c->now)) {
			held++;
			continue;
		}
		int lim = m->max_attempts > 0 ? m->max_attempts : LC_MAX_ATTEMPTS_DEFAULT;
		bool at_most_once = m->policy == POLICY_AT_MOST_ONCE;
		bool spent = at_most_once || m->attempts >= lim;
		struct ev_json *js = TX_JSON(tx);
		ev_json_begin(js);
		ev_json_int(js, "lease_until", m->lease_until);
		ev_json_int(js, "attempt", m->attempts);
		ev_json_int(js, "max_attempts", lim);
		ev_json_str(js, "policy", delivery_policy_name(m->policy));
		ev_json_str(js, "outcome", spent ? "unknown" : "requeued");
		ev_json_str(js, "unknown_outcome", metrics_unknown_name(M_UNK_LEASE));
		if (at_most_once)
			ev_json_str(js, "reason",
			            "at_most_once: the process stopped while the request may have "
			            "been with the provider, so it is never sent again by itself");
		else if (spent)
			ev_json_str(
			    js, "reason",
			    "lease expired on the last attempt: the process stopped between "
			    "handing the message to the provider and recording the answer");
		else {
			ev_json_str(js, "reason", "resend after unknown outcome");
			ev_json_bool(js, "possible_duplicate", true);
		}
		requeue_note(c, m->channel, spent);
		struct lc_event ev = {.type = "lease_expired",
		                      .source = "reconciler",
		                      .status = spent ? MSG_UNKNOWN : MSG_QUEUED,
		                      .applied = true};
		if ((rc = detail_end(tx, &ev.detail)))
			break;
		struct lc_update u = {.set = LC_SET_STATUS,
		                      .status = spent ? MSG_UNKNOWN : MSG_QUEUED};
		if (!spent) {
			u.set |= LC_SET_DUE;
			u.due_at = c->now;
		}
		rc = lc_transition(tx, m, &u, &ev);
	}
	free(rows);
	if (rc == 0) {
		c->n += (int)(n - held);
		/* A page with held rows would come back the same: the rest waits
		 * for the next period. */
		c->more = n == REQUEUE_BATCH && held == 0;
	}
	return rc;
}

int lc_requeue_expired(const struct lc_backend *b, struct store *st, int64_t now, int *n)
{
	struct requeue_ctx c = {.now = now};
	int rc;
	do {
		c.more = false;
		rc = lc_run(b, st, requeue_run, &c, sizeof c, NULL, NULL, NULL);
		for (size_t i = 0; rc == 0 && i < c.nby; i++) {
			metrics_unknown(c.by[i].channel, M_UNK_LEASE, c.by[i].unknown);
			metrics_resend_unknown(c.by[i].channel, M_UNK_LEASE, c.by[i].resent);
			metrics_reconcile(M_REC_LEASE_UNKNOWN, c.by[i].unknown);
			metrics_reconcile(M_REC_LEASE_REQUEUED, c.by[i].resent);
		}
	} while (rc == 0 && c.more);
	if (n)
		*n = rc ? 0 : c.n;
	return rc;
}

/* ---------------------------------------------------------------------------
 * Webhook inbox claims: the row's next try time is its lease.
 * ------------------------------------------------------------------------- */

struct inbox_claim_ctx {
	int64_t now, until, lease_us;
	int limit;
	struct inbox_row *out;
	size_t n;
};

static int inbox_claim_run(struct store_tx *tx, void *arg)
{
	struct inbox_claim_ctx *c = arg;
	/* A run again (lc_tx_fn) claims afresh: what the run before it read
	 * is freed first. */
	for (size_t i = 0; i < c->n; i++)
		inbox_row_clear(&c->out[i]);
	c->n = 0;
	if (!c->now) {
		c->now = tx->ops->now(tx);
		c->until = c->now > INT64_MAX - c->lease_us ? INT64_MAX : c->now + c->lease_us;
	}
	return tx->ops->inbox_claim(tx, c->now, c->until, c->limit, c->out, &c->n);
}

static int inbox_order(const void *a, const void *b)
{
	const struct inbox_row *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

int lc_inbox_claim(const struct lc_backend *b, struct store *st, int64_t now, int64_t lease_us,
                   int limit, struct inbox_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit <= 0 || lease_us <= 0)
		return limit < 0 || lease_us <= 0 ? HR_EINVAL : 0;
	struct inbox_claim_ctx c = {.now = now, .lease_us = lease_us, .limit = limit};
	/* A lease past the end of time is the end of time. */
	c.until = now > INT64_MAX - lease_us ? INT64_MAX : now + lease_us;
	if (!(c.out = calloc((size_t)limit, sizeof *c.out)))
		return HR_ENOMEM;
	int rc = lc_run(b, st, inbox_claim_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc || c.n == 0) {
		for (size_t i = 0; i < c.n; i++)
			inbox_row_clear(&c.out[i]);
		free(c.out);
		return rc;
	}
	qsort(c.out, c.n, sizeof *c.out, inbox_order);
	*out = c.out;
	*n = c.n;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Webhooks: statuses by precedence, inbound replies and what they ask for.
 * ------------------------------------------------------------------------- */

struct apply_ctx {
	const struct inbox_parsed *rows;
	size_t n;
	int64_t now;
	struct apply_stats stats;
};

/* The detail every webhook_status event carries; the caller may add fields
 * before detail_end. */
static void status_detail(struct ev_json *js, enum msg_status status, const struct wh_status *ws,
                          int64_t inbox_id)
{
	ev_json_begin(js);
	ev_json_str(js, "status", msg_status_name(status));
	if (ws->provider_ts[0])
		ev_json_str(js, "provider_ts", ws->provider_ts);
	if (ws->error_code[0])
		ev_json_str(js, "error_code", ws->error_code);
	if (ws->error_text[0])
		ev_json_str(js, "error_text", ws->error_text);
	ev_json_int(js, "inbox_id", inbox_id);
}

/* The status with its provider texts made valid UTF-8 before they are stored. */
static void status_clean(struct wh_status *dst, const struct wh_status *src)
{
	*dst = *src;
	hr_utf8_copy(dst->provider_ts, src->provider_ts, sizeof dst->provider_ts);
	hr_utf8_copy(dst->error_code, src->error_code, sizeof dst->error_code);
	hr_utf8_copy(dst->error_text, src->error_text, sizeof dst->error_text);
}

/* Moves m to status as a webhook reported it (failures keep the provider's
 * error), with the applied event. */
static int webhook_transition(struct store_tx *tx, struct lc_msg *m, enum msg_status status,
                              const struct wh_status *ws, int64_t inbox_id)
{
	bool failure = status == MSG_FAILED || status == MSG_UNDELIVERED;
	struct lc_update u = {.set = LC_SET_STATUS | LC_SET_ERROR | LC_KEEP_ERROR,
	                      .status = status,
	                      .error_code = failure ? ws->error_code : "",
	                      .error_text = failure ? ws->error_text : ""};
	struct lc_event ev = {.type = "webhook_status",
	                      .source = "webhook",
	                      .status = (int)status,
	                      .applied = true,
	                      .provider_at = ws->provider_at,
	                      .inbox_id = inbox_id};
	int rc = detail_end(tx, &ev.detail);
	return rc ? rc : lc_transition(tx, m, &u, &ev);
}

/*
 * A status whose provider id no message of the account has, but which
 * carries the id Herald sent with the request (client_ref): the message
 * whose send answer never came (timed out, connection lost, process
 * killed), so Herald never learnt the provider's id. It adopts the id when
 * it is UNKNOWN, has no provider id yet and is of this account; then the
 * status applies as any other. A message that already has a provider id
 * keeps it: a status of another copy (an at_least_once resend) must not
 * take it over. A SENDING message is left alone: its send's answer is
 * being recorded, and the status is retried until it has been (the usual
 * webhook-before-result race). 1 adopted (*m filled), 0 not, or an error.
 */
static int adopt_by_client_ref(struct store_tx *tx, const struct inbox_parsed *row,
                               const struct wh_status *raw, struct lc_msg *m)
{
	if (!raw->client_ref[0] || !hr_id_valid(raw->client_ref))
		return 0;
	int rc = tx->ops->msg_get(tx, raw->client_ref, m);
	if (rc == HR_ENOTFOUND) {
		hr_err_clear(TX_ERR(tx));
		return 0;
	}
	if (rc)
		return rc;
	if (m->status != MSG_UNKNOWN || m->has_provider_id ||
	    strcmp(m->account_id, row->account_id) != 0)
		return 0;
	char pid[HR_PROVIDER_ID_MAX];
	hr_utf8_copy(pid, raw->provider_id, sizeof pid);
	struct lc_update u = {.set = LC_PROVIDER_ID_IF_NONE, .provider_id = pid};
	if ((rc = tx->ops->msg_update(tx, m, &u)))
		return rc;
	m->has_provider_id = true;
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "provider_id", pid);
	ev_json_str(js, "by", "client_ref");
	ev_json_int(js, "inbox_id", row->inbox_id);
	struct lc_event ev = {.type = "provider_id_learnt",
	                      .source = "webhook",
	                      .status = -1,
	                      .applied = true,
	                      .inbox_id = row->inbox_id};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	return (rc = lc_note(tx, m->id, &ev)) ? rc : 1;
}

/*
 * One reported status against its message, by precedence. *found is false
 * when the provider id is unknown on this account (the row is then retried
 * later). On a retry of the row (retried: it was applied before, with some
 * status unmatched), a status this row already recorded for the message is
 * skipped, so retries never duplicate audit events.
 */
static int apply_status(struct store_tx *tx, struct apply_ctx *a, const struct inbox_parsed *row,
                        const struct wh_status *raw, bool retried, bool *found)
{
	struct lc_msg m;
	*found = false;
	if (!raw->provider_id[0] || !row->account_id || !row->account_id[0])
		return 0;
	int rc = tx->ops->msg_by_provider(tx, row->account_id, raw->provider_id, &m);
	if (rc == 0)
		rc = adopt_by_client_ref(tx, row, raw, &m);
	if (rc <= 0)
		return rc;
	*found = true;
	if (retried && (rc = tx->ops->event_seen(tx, m.id, row->inbox_id, raw->status)) != 0)
		return rc < 0 ? rc : 0;
	struct wh_status ws;
	status_clean(&ws, raw);
	struct ev_json *js = TX_JSON(tx);
	enum status_verdict v = status_decide(m.status, ws.status);
	switch (v) {
	case STATUS_APPLY:
		status_detail(js, ws.status, &ws, row->inbox_id);
		a->stats.applied++;
		return webhook_transition(tx, &m, ws.status, &ws, row->inbox_id);
	case STATUS_APPLY_IMPLIED:
		/* READ before DELIVERED: the handset must have had it. */
		status_detail(js, MSG_DELIVERED, &ws, row->inbox_id);
		ev_json_str(js, "implied_by", msg_status_name(ws.status));
		if ((rc = webhook_transition(tx, &m, MSG_DELIVERED, &ws, row->inbox_id)))
			return rc;
		status_detail(js, ws.status, &ws, row->inbox_id);
		a->stats.applied++;
		return webhook_transition(tx, &m, ws.status, &ws, row->inbox_id);
	case STATUS_IGNORE_DUP:
	case STATUS_IGNORE_STALE:
	default: {
		status_detail(js, ws.status, &ws, row->inbox_id);
		ev_json_str(js, "ignored", v == STATUS_IGNORE_DUP ? "duplicate" : "stale");
		ev_json_str(js, "current", msg_status_name(m.status));
		struct lc_event ev = {.type = "webhook_status",
		                      .source = "webhook",
		                      .status = (int)ws.status,
		                      .applied = false,
		                      .provider_at = ws.provider_at,
		                      .inbox_id = row->inbox_id};
		if ((rc = detail_end(tx, &ev.detail)))
			return rc;
		a->stats.ignored++;
		return lc_note(tx, m.id, &ev);
	}
	}
}

/* An inbound reply's texts as valid UTF-8; text/payload are heap copies. */
struct inbound_clean {
	char provider_msg_id[HR_PROVIDER_ID_MAX];
	char from[HR_ADDR_MAX];
	char kind[16];
	char *text, *payload;
};

static char *utf8_dup(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (!d) {
		*oom = true;
		return NULL;
	}
	hr_utf8_copy(d, s, n);
	return d;
}

static int inbound_clean(struct inbound_clean *c, const struct wh_inbound *in)
{
	bool oom = false;
	hr_utf8_copy(c->provider_msg_id, in->provider_msg_id, sizeof c->provider_msg_id);
	hr_utf8_copy(c->from, in->from, sizeof c->from);
	hr_utf8_copy(c->kind, in->kind, sizeof c->kind);
	c->text = utf8_dup(in->text, &oom);
	c->payload = utf8_dup(in->payload, &oom);
	return oom ? HR_ENOMEM : 0;
}

/* "inbound STOP": the keyword as the customer sent it, trimmed, upper-cased
 * (ASCII) and clipped, so the list shows which word opted them out. */
static void optout_reason(char *dst, size_t size, const struct inbound_clean *c)
{
	const char *t = c->text && *c->text ? c->text : c->payload ? c->payload : "";
	while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')
		t++;
	char kw[33];
	hr_utf8_copy(kw, t, sizeof kw);
	size_t n = strlen(kw);
	while (n &&
	       (kw[n - 1] == ' ' || kw[n - 1] == '\t' || kw[n - 1] == '\r' || kw[n - 1] == '\n'))
		kw[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (kw[i] >= 'a' && kw[i] <= 'z')
			kw[i] = (char)(kw[i] - 'a' + 'A');
	snprintf(dst, size, "inbound %s", n ? kw : "opt-out");
}

/*
 * The answer to an inbound (a HELP text): a new QUEUED text message from the
 * same account back to the sender, with an "accepted" event naming the
 * inbound it answers; the dispatcher sends it like any other. *id gets its
 * id.
 */
static int queue_auto_reply(struct store_tx *tx, const char *tenant, const char *account_id,
                            const char *channel, const struct inbound_clean *c,
                            const char *reply_raw, char id[HR_ID_LEN + 1])
{
	bool oom = false;
	char *reply = utf8_dup(reply_raw, &oom);
	if (oom)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "auto_reply", "out of memory");
	struct message m = {.priority = PRIO_TRANSACTIONAL, .body = reply};
	hr_id_new(m.id);
	hr_strlcpy(m.tenant_id, tenant, sizeof m.tenant_id);
	hr_strlcpy(m.account_id, account_id, sizeof m.account_id);
	hr_strlcpy(m.channel, channel, sizeof m.channel);
	hr_strlcpy(m.recipient, c->from, sizeof m.recipient);
	if (strcmp(channel, "sms") == 0) {
		struct sms_info info;
		if (sms_segments(reply, &info, NULL) == 0)
			m.segments = info.segments;
	}
	int64_t now = tx->ops->now(tx);
	m.created_at = m.due_at = m.updated_at = now;
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "type", "text");
	ev_json_str(js, "text", reply);
	const char *content = ev_json_end(js);
	char *owned = content ? strdup(content) : NULL;
	m.content = owned;
	int rc = owned ? tx->ops->msg_insert(tx, &m)
	               : hr_fail(TX_ERR(tx), HR_ENOMEM, "auto_reply", "out of memory");
	free(owned);
	free(reply);
	if (rc)
		return rc;
	lc_count(tx, "", -1, MSG_QUEUED, false);
	lc_daily(tx, m.tenant_id, m.channel, -1, MSG_QUEUED, NULL);
	ev_json_begin(js);
	ev_json_str(js, "auto_reply_to", c->provider_msg_id);
	struct lc_event ev = {
	    .type = "accepted", .source = "webhook", .status = MSG_QUEUED, .applied = true};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	rc = lc_note(tx, m.id, &ev);
	if (rc == 0)
		memcpy(id, m.id, sizeof m.id);
	return rc;
}

/*
 * What a new inbound asks of the account's tenant: an opt-out keyword puts
 * the sender on the suppression list for the row's channel (reason
 * "inbound <KEYWORD>"), an opt-in takes them off (absent is fine), and an
 * auto_reply is queued back to them. The tenant is the account's, or failing
 * that the linked message's; with neither the request is logged and skipped
 * rather than failing the applier's whole batch over a row it can never
 * apply.
 */
static int inbound_effects(struct store_tx *tx, const struct inbox_parsed *row,
                           const char *row_channel, const struct wh_inbound *in,
                           const struct inbound_clean *c, const struct lc_msg *linked,
                           char reply_id[HR_ID_LEN + 1])
{
	if (!in->optout && !in->auto_reply)
		return 0;
	char tenant[HR_NAME_MAX] = "", channel[16] = "";
	int rc = tx->ops->account_of(tx, row->account_id ? row->account_id : "", tenant, channel);
	if (rc < 0)
		return rc;
	rc = 0;
	if (!tenant[0] && linked)
		hr_strlcpy(tenant, linked->tenant_id, sizeof tenant);
	if (row_channel[0])
		hr_strlcpy(channel, row_channel, sizeof channel);
	if (!tenant[0] || !channel[0] || !c->from[0]) {
		hr_log(HR_LOG_WARN, "store",
		       "inbound %s on account %s: no tenant, channel or sender; opt-out and"
		       " auto-reply skipped",
		       c->provider_msg_id, row->account_id);
		return 0;
	}
	if (in->optout) {
		char reason[REASON_MAX] = "";
		if (in->optout > 0)
			optout_reason(reason, sizeof reason, c);
		struct supp_change sc = {.tenant_id = tenant,
		                         .channel = channel,
		                         .recipient = c->from,
		                         .remove = in->optout < 0,
		                         .reason = reason,
		                         .message_id = linked ? linked->id : NULL,
		                         .actor = "webhook"};
		rc = lc_supp_change(tx, &sc);
		if (rc > 0)
			rc = 0;
	}
	if (rc == 0 && in->auto_reply)
		rc = queue_auto_reply(tx, tenant, row->account_id, channel, c, in->auto_reply,
		                      reply_id);
	return rc;
}

/* A reply: stored once per provider message id, linked to the message it
 * answers when the context names one we sent from the same account. Only a
 * reply stored now (not a replay) has effects (inbound_effects): a replayed
 * STOP after a START must not opt out again, and a replayed HELP must not
 * answer twice. A reply quoting a message not known (yet) on the account
 * waits (*deferred, the row is retried) up to INBOUND_LINK_WAIT_US for the
 * send's record, then is stored unlinked — except one that asks for
 * something (an opt-out, an answer), which never waits. */
static int store_inbound(struct store_tx *tx, struct apply_ctx *a, const struct inbox_parsed *row,
                         const char *row_channel, const struct wh_inbound *in,
                         const struct inbound_clean *c, int64_t received_at, bool *deferred)
{
	struct lc_msg t;
	int linked = 0;
	*deferred = false;
	if (in->context_id[0] && row->account_id && row->account_id[0])
		linked = tx->ops->msg_by_provider(tx, row->account_id, in->context_id, &t);
	if (linked < 0)
		return linked;
	/* Only a reply with its own id can wait: a retry must recognise it. */
	if (!linked && in->context_id[0] && c->provider_msg_id[0] && !in->optout &&
	    !in->auto_reply && a->now - received_at < INBOUND_LINK_WAIT_US) {
		*deferred = true;
		return 0;
	}
	/* A campaign counts the messages answered, not the answers. */
	int answered = linked && t.batch_id[0] ? tx->ops->inbound_exists(tx, t.id) : 1;
	if (answered < 0)
		return answered;
	struct lc_inbound li = {.tenant_id = linked ? t.tenant_id : NULL,
	                        .account_id = row->account_id ? row->account_id : "",
	                        .message_id = linked ? t.id : NULL,
	                        .provider_msg_id = c->provider_msg_id,
	                        .from = c->from,
	                        .kind = c->kind,
	                        .text = c->text,
	                        .payload = c->payload,
	                        .provider_at = in->provider_at,
	                        .received_at = received_at};
	int rc = tx->ops->inbound_insert(tx, &li);
	if (rc <= 0)
		return rc; /* an error, or seen before */
	a->stats.inbound++;
	if ((rc = lc_callback_inbound(tx, li.message_id, li.account_id, &li)))
		return rc;
	if (linked && (rc = lc_plugin_reply(tx, t.id, t.tenant_id, c->text, c->payload)))
		return rc;
	if (!answered)
		lc_count(tx, t.batch_id, -1, -1, true);
	char reply_id[HR_ID_LEN + 1] = "";
	if ((rc = inbound_effects(tx, row, row_channel, in, c, linked ? &t : NULL, reply_id)))
		return rc;
	if (!linked)
		return 0;
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "kind", c->kind);
	ev_json_str(js, "text", c->text);
	ev_json_str(js, "payload", c->payload);
	ev_json_str(js, "from", c->from);
	ev_json_str(js, "provider_msg_id", c->provider_msg_id);
	if (in->optout)
		ev_json_str(js, "optout", in->optout > 0 ? "stop" : "start");
	if (reply_id[0])
		ev_json_str(js, "auto_reply_id", reply_id);
	struct lc_event ev = {.type = "inbound",
	                      .source = "webhook",
	                      .status = -1,
	                      .applied = true,
	                      .provider_at = in->provider_at,
	                      .inbox_id = row->inbox_id};
	if ((rc = detail_end(tx, &ev.detail)))
		return rc;
	return lc_note(tx, t.id, &ev);
}

static int apply_inbound(struct store_tx *tx, struct apply_ctx *a, const struct inbox_parsed *row,
                         const char *row_channel, const struct wh_inbound *in, int64_t received_at,
                         bool *deferred)
{
	struct inbound_clean c = {0};
	int rc = inbound_clean(&c, in);
	if (rc)
		rc = hr_fail(TX_ERR(tx), rc, "inbound", "out of memory");
	else
		rc = store_inbound(tx, a, row, row_channel, in, &c, received_at, deferred);
	free(c.text);
	free(c.payload);
	return rc;
}

/* Marks a row; its error text (adapter errors and provider ids may quote the
 * raw body) is stored as valid UTF-8. */
static int mark_row(struct store_tx *tx, int64_t id, int state, int attempts, int64_t next_try_at,
                    const char *error)
{
	char clean[512];
	if (error)
		hr_utf8_copy(clean, error, sizeof clean);
	return tx->ops->inbox_mark(tx, id, state, attempts, next_try_at, error ? clean : NULL);
}

static int apply_row(struct store_tx *tx, struct apply_ctx *a, const struct inbox_parsed *row)
{
	int64_t received_at = a->now;
	int attempts = 0;
	char channel[16] = "";
	int rc = tx->ops->inbox_state(tx, row->inbox_id, &received_at, &attempts, channel);
	if (rc < 0)
		return rc;
	if (row->malformed) {
		a->stats.malformed++;
		return mark_row(tx, row->inbox_id, INBOX_FAILED, attempts + 1, 0,
		                row->error[0] ? row->error : "malformed");
	}
	/* attempts > 0: an earlier attempt committed this row's effects but left
	 * something unmatched. Statuses it recorded are skipped (event_seen);
	 * replies with an id it stored are seen again by inbound_insert and do
	 * nothing; a reply without an id was stored then (it never waits) and is
	 * skipped. */
	bool retried = attempts > 0;
	int unmatched = 0;
	const char *missing = NULL;
	for (size_t k = 0; k < row->nstatuses; k++) {
		bool found;
		if ((rc = apply_status(tx, a, row, &row->statuses[k], retried, &found)))
			return rc;
		if (!found) {
			unmatched++;
			missing = row->statuses[k].provider_id;
		}
	}
	for (size_t k = 0; k < row->ninbound; k++) {
		bool deferred = false;
		if (retried && !row->inbound[k].provider_msg_id[0])
			continue;
		if ((rc = apply_inbound(tx, a, row, channel, &row->inbound[k], received_at,
		                        &deferred)))
			return rc;
		if (deferred) {
			unmatched++;
			missing = row->inbound[k].context_id;
		}
	}
	if (!unmatched)
		return mark_row(tx, row->inbox_id, INBOX_DONE, attempts + 1, 0, NULL);

	a->stats.unmatched += unmatched;
	char why[HR_PROVIDER_ID_MAX + 64];
	if (a->now - received_at >= INBOX_ORPHAN_AFTER_US) {
		snprintf(why, sizeof why, "unknown provider id %s after 24 h", missing);
		return mark_row(tx, row->inbox_id, INBOX_ORPHAN, attempts + 1, 0, why);
	}
	int64_t delay = INBOX_RETRY_BASE_US << (attempts < 20 ? attempts : 20);
	if (delay > INBOX_RETRY_MAX_US)
		delay = INBOX_RETRY_MAX_US;
	snprintf(why, sizeof why, "unknown provider id %s", missing);
	return mark_row(tx, row->inbox_id, INBOX_RETRY, attempts + 1, a->now + delay, why);
}

/* Every inbox row of the batch and every message its statuses and replies
 * name, read at once where the backend can (a hint: if the lists cannot be
 * made, each is read as it comes). */
static int apply_prefetch(struct store_tx *tx, const struct apply_ctx *a)
{
	if (!tx->ops->prefetch || a->n == 0)
		return 0;
	size_t nkeys = 0;
	for (size_t i = 0; i < a->n; i++)
		nkeys += a->rows[i].nstatuses + a->rows[i].ninbound;
	int64_t *inbox = malloc(a->n * sizeof *inbox);
	struct lc_pkey *keys = malloc((nkeys ? nkeys : 1) * sizeof *keys);
	struct lc_want w = {.inbox_ids = inbox, .pkeys = keys};
	for (size_t i = 0; inbox && keys && i < a->n; i++) {
		const struct inbox_parsed *row = &a->rows[i];
		inbox[w.ninbox++] = row->inbox_id;
		if (row->malformed || !row->account_id || !row->account_id[0])
			continue;
		for (size_t k = 0; k < row->nstatuses; k++)
			if (row->statuses[k].provider_id[0])
				keys[w.npkeys++] = (struct lc_pkey){
				    row->account_id, row->statuses[k].provider_id, row->inbox_id};
		for (size_t k = 0; k < row->ninbound; k++)
			if (row->inbound[k].context_id[0])
				keys[w.npkeys++] = (struct lc_pkey){row->account_id,
				                                    row->inbound[k].context_id, 0};
	}
	int rc = inbox && keys ? tx->ops->prefetch(tx, &w) : 0;
	free(inbox);
	free(keys);
	return rc;
}

static int apply_run(struct store_tx *tx, void *arg)
{
	struct apply_ctx *a = arg;
	a->now = tx_time(tx, a->now);
	memset(&a->stats, 0, sizeof a->stats);
	int rc = apply_prefetch(tx, a);
	for (size_t i = 0; rc == 0 && i < a->n; i++)
		rc = apply_row(tx, a, &a->rows[i]);
	return rc;
}

int lc_apply_inbox(const struct lc_backend *b, struct store *st, const struct inbox_parsed *rows,
                   size_t n, int64_t now, struct apply_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (n && !rows)
		return HR_EINVAL;
	struct apply_ctx a = {.rows = rows, .n = n, .now = now};
	int rc = lc_run(b, st, apply_run, &a, sizeof a, NULL, NULL, NULL);
	if (rc == 0 && stats)
		*stats = a.stats;
	return rc;
}
