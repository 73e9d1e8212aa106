/*
 * lc_supp.c - every change of the suppression list (opt-outs), with its
 * history: an entry added by an inbound STOP, by a provider's opt-out error
 * or by the API, its reason replaced, or removed by an inbound START or by
 * the API. One function makes the change and writes the history line in the
 * same transaction, so the history is never missing a change and never
 * holds one that did not happen. Backends only store (supp_put, supp_delete,
 * supp_log); what counts as a change is decided here.
 */
#include <string.h>

#include "store/lifecycle.h"

#define TX_ERR(tx) ((tx)->ops->err(tx))
#define REASON_MAX sizeof(((struct suppression_row *)0)->reason)

int lc_supp_change(struct store_tx *tx, const struct supp_change *c)
{
	char before[REASON_MAX] = "";
	int had =
	    tx->ops->supp_reason(tx, c->tenant_id, c->channel, c->recipient, before, sizeof before);
	if (had < 0)
		return had;
	int rc;
	const char *action;
	if (c->remove) {
		if (!had)
			return 0;
		rc = tx->ops->supp_delete(tx, c->tenant_id, c->channel, c->recipient);
		action = "removed";
	} else {
		const char *reason = c->reason ? c->reason : "";
		/* The stored reason is cut to its column: compare what would be
		 * stored, so a long reason given twice is no change either. */
		char now[REASON_MAX];
		hr_utf8_copy(now, reason, sizeof now);
		if (had && strcmp(before, now) == 0)
			return 0;
		rc = tx->ops->supp_put(tx, c->tenant_id, c->channel, c->recipient, reason);
		action = had ? "updated" : "added";
	}
	if (rc == 0)
		rc = tx->ops->supp_log(tx, c, action);
	return rc ? rc : 1;
}

static int change_run(struct store_tx *tx, void *arg)
{
	const struct supp_change *c = arg;
	int rc = lc_supp_change(tx, c);
	if (rc == 0 && c->remove)
		return hr_fail(TX_ERR(tx), HR_ENOTFOUND, "recipient", "%s is not suppressed on %s",
		               c->recipient, c->channel);
	return rc < 0 ? rc : 0;
}

int lc_suppression_change(const struct lc_backend *b, struct store *st, const struct supp_change *c,
                          struct hr_err *err)
{
	int rc = lc_check_supp_keys(c->tenant_id, c->channel, c->recipient, err);
	if (rc)
		return rc;
	struct supp_change copy = *c;
	return lc_run(b, st, change_run, &copy, sizeof copy, NULL, NULL, err);
}

/* ---------------------------------------------------------------------------
 * Account pauses: the pause row and its audit row, one
 * transaction.
 * ------------------------------------------------------------------------- */

struct pause_ctx {
	const struct account_pause_row *p;
	bool paused;
	const struct audit_row *audit;
};

static int pause_run(struct store_tx *tx, void *arg)
{
	struct pause_ctx *c = arg;
	int rc;
	if (c->paused) {
		rc = tx->ops->pause_put(tx, c->p);
	} else {
		rc = tx->ops->pause_delete(tx, c->p->account_id);
		if (rc == 0)
			return hr_fail(TX_ERR(tx), HR_ENOTFOUND, "account", "%s is not paused",
			               c->p->account_id);
		if (rc > 0)
			rc = 0;
	}
	return rc == 0 && c->audit ? tx->ops->audit_insert(tx, c->audit) : rc;
}

int lc_account_pause_set(const struct lc_backend *b, struct store *st,
                         const struct account_pause_row *p, bool paused, const struct audit_row *a,
                         struct hr_err *err)
{
	if (!p || !p->account_id[0])
		return hr_fail(err, HR_EINVAL, "account", "account is required");
	struct pause_ctx c = {.p = p, .paused = paused, .audit = a};
	return lc_run(b, st, pause_run, &c, sizeof c, NULL, NULL, err);
}
