/*
 * rows.c - the rows both backends read, decoded once (rows.h).
 */
#include "store/rows.h"

/* SELECT tenant_id, channel, recipient, reason, created_at FROM suppression */
int store_row_suppression(const struct store_cols *c, void *row, void *arg)
{
	struct suppression_row *e = row;
	(void)arg;
	c->ops->text(c, 0, e->tenant_id, sizeof e->tenant_id);
	c->ops->text(c, 1, e->channel, sizeof e->channel);
	c->ops->text(c, 2, e->recipient, sizeof e->recipient);
	c->ops->text(c, 3, e->reason, sizeof e->reason);
	e->created_at = c->ops->i64(c, 4);
	return 0;
}

/* SELECT id, channel, recipient, action, reason, message_id, actor, at
 * FROM suppression_event */
int store_row_supp_event(const struct store_cols *c, void *row, void *arg)
{
	struct supp_event_row *e = row;
	(void)arg;
	e->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, e->channel, sizeof e->channel);
	c->ops->text(c, 2, e->recipient, sizeof e->recipient);
	c->ops->text(c, 3, e->action, sizeof e->action);
	c->ops->text(c, 4, e->reason, sizeof e->reason);
	c->ops->text(c, 5, e->message_id, sizeof e->message_id);
	c->ops->text(c, 6, e->actor, sizeof e->actor);
	e->at = c->ops->i64(c, 7);
	return 0;
}

/* SELECT i.id, i.account_id, message id, unit id, i.sender, i.kind, i.text,
 * i.payload, i.provider_at, i.received_at FROM inbound i */
int store_row_inbound(const struct store_cols *c, void *row, void *arg)
{
	struct inbound_row *e = row;
	bool oom = false;
	(void)arg;
	e->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, e->account_id, sizeof e->account_id);
	c->ops->text(c, 2, e->message_id, sizeof e->message_id);
	c->ops->text(c, 3, e->unit, sizeof e->unit);
	c->ops->text(c, 4, e->sender, sizeof e->sender);
	c->ops->text(c, 5, e->kind, sizeof e->kind);
	e->text = c->ops->dup(c, 6, &oom);
	e->payload = c->ops->dup(c, 7, &oom);
	e->provider_at = c->ops->i64(c, 8);
	e->received_at = c->ops->i64(c, 9);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT account_id, tenant_id, reason, actor, at FROM account_pause */
int store_row_pause(const struct store_cols *c, void *row, void *arg)
{
	struct account_pause_row *e = row;
	(void)arg;
	c->ops->text(c, 0, e->account_id, sizeof e->account_id);
	c->ops->text(c, 1, e->tenant_id, sizeof e->tenant_id);
	c->ops->text(c, 2, e->reason, sizeof e->reason);
	c->ops->text(c, 3, e->actor, sizeof e->actor);
	e->at = c->ops->i64(c, 4);
	return 0;
}

/* SELECT channel, day, kind, code, sum(n) FROM daily_count */
int store_row_daily(const struct store_cols *c, void *row, void *arg)
{
	struct daily_ent *e = row;
	hr_strlcpy(e->tenant_id, arg, sizeof e->tenant_id);
	c->ops->text(c, 0, e->channel, sizeof e->channel);
	e->day = (int32_t)c->ops->i64(c, 1);
	e->kind = (int8_t)c->ops->i64(c, 2);
	c->ops->text(c, 3, e->code, sizeof e->code);
	e->n = c->ops->i64(c, 4);
	return 0;
}

/* SELECT id, tenant_id, message_id, kind, prev_status, status, text,
 * payload, created_at FROM plugin_event (a NULL status is -1) */
int store_row_plugin_event(const struct store_cols *c, void *row, void *arg)
{
	struct plugin_event_row *e = row;
	bool oom = false;
	(void)arg;
	e->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, e->tenant_id, sizeof e->tenant_id);
	c->ops->text(c, 2, e->message_id, sizeof e->message_id);
	e->kind = (int)c->ops->i64(c, 3);
	e->prev_status = c->ops->null(c, 4) ? -1 : (int)c->ops->i64(c, 4);
	e->status = c->ops->null(c, 5) ? -1 : (int)c->ops->i64(c, 5);
	e->text = c->ops->dup(c, 6, &oom);
	e->payload = c->ops->dup(c, 7, &oom);
	e->created_at = c->ops->i64(c, 8);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT id, message_id, at, provider_at, type, source, status, applied,
 * detail FROM message_event (a NULL status is -1) */
int store_row_message_event(const struct store_cols *c, void *row, void *arg)
{
	struct message_event *e = row;
	bool oom = false;
	(void)arg;
	e->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, e->message_id, sizeof e->message_id);
	e->at = c->ops->i64(c, 2);
	e->provider_at = c->ops->i64(c, 3);
	c->ops->text(c, 4, e->type, sizeof e->type);
	c->ops->text(c, 5, e->source, sizeof e->source);
	e->status = c->ops->null(c, 6) ? -1 : (int)c->ops->i64(c, 6);
	e->applied = c->ops->flag(c, 7);
	e->detail = c->ops->dup(c, 8, &oom);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT id, tenant_id, channel, config, api_created, unit_id FROM
 * channel_account */
int store_row_account(const struct store_cols *c, void *row, void *arg)
{
	struct account_row *a = row;
	bool oom = false;
	(void)arg;
	c->ops->text(c, 0, a->id, sizeof a->id);
	c->ops->text(c, 1, a->tenant_id, sizeof a->tenant_id);
	c->ops->text(c, 2, a->channel, sizeof a->channel);
	a->config = c->ops->dup(c, 3, &oom);
	a->api_created = c->ops->flag(c, 4);
	c->ops->text(c, 5, a->unit_id, sizeof a->unit_id);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT tenant_id, channel, name, language, body, param_count, config,
 * unit_id FROM template */
int store_row_template(const struct store_cols *c, void *row, void *arg)
{
	struct template_row *t = row;
	bool oom = false;
	(void)arg;
	c->ops->text(c, 0, t->tenant_id, sizeof t->tenant_id);
	c->ops->text(c, 1, t->channel, sizeof t->channel);
	c->ops->text(c, 2, t->name, sizeof t->name);
	c->ops->text(c, 3, t->language, sizeof t->language);
	t->body = c->ops->dup(c, 4, &oom);
	t->param_count = (int)c->ops->i64(c, 5);
	t->config = c->ops->dup(c, 6, &oom);
	c->ops->text(c, 7, t->unit_id, sizeof t->unit_id);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT the callback_outbox columns of CB_COLS (sqlite_cb.c, postgres_cb.c):
 * id, tenant_id, message_id, batch_id, event, status, prev_status,
 * provider_id, error_code, error_text, detail, url, occurred_at, state,
 * attempts, next_try_at, lease_until, delivered_at, updated_at, last_http,
 * last_error (a NULL status is -1) */
int store_row_callback(const struct store_cols *c, void *row, void *arg)
{
	struct callback_row *r = row;
	bool oom = false;
	(void)arg;
	r->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, r->tenant_id, sizeof r->tenant_id);
	c->ops->text(c, 2, r->message_id, sizeof r->message_id);
	c->ops->text(c, 3, r->batch_id, sizeof r->batch_id);
	c->ops->text(c, 4, r->event, sizeof r->event);
	r->status = c->ops->null(c, 5) ? -1 : (int)c->ops->i64(c, 5);
	r->prev_status = c->ops->null(c, 6) ? -1 : (int)c->ops->i64(c, 6);
	c->ops->text(c, 7, r->provider_id, sizeof r->provider_id);
	c->ops->text(c, 8, r->error_code, sizeof r->error_code);
	c->ops->text(c, 9, r->error_text, sizeof r->error_text);
	r->detail = c->ops->dup(c, 10, &oom);
	r->url = c->ops->dup(c, 11, &oom);
	r->occurred_at = c->ops->i64(c, 12);
	r->state = (enum callback_state)c->ops->i64(c, 13);
	r->attempts = (int)c->ops->i64(c, 14);
	r->next_try_at = c->ops->i64(c, 15);
	r->lease_until = c->ops->i64(c, 16);
	r->delivered_at = c->ops->i64(c, 17);
	r->updated_at = c->ops->i64(c, 18);
	r->last_http = (int)c->ops->i64(c, 19);
	c->ops->text(c, 20, r->last_error, sizeof r->last_error);
	return oom || !r->url ? HR_ENOMEM : 0;
}

/* SELECT the batch columns of BATCH_COLS (sqlite_batch.c, postgres_batch.c):
 * id, tenant_id, unit, name, channel, account_id, template_name, language,
 * receipts, spec, status, error, retry_of, ingested, the twelve times and
 * counts from schedule_at to replied, n_<status> for each status, then
 * paused_at, resumed_at, paused_by, resumed_by, cancelled_by, pause_reason,
 * cancel_reason */
int store_row_batch(const struct store_cols *c, void *row, void *arg)
{
	struct batch *b = row;
	bool oom = false;
	(void)arg;
	c->ops->text(c, 0, b->id, sizeof b->id);
	c->ops->text(c, 1, b->tenant_id, sizeof b->tenant_id);
	c->ops->text(c, 2, b->unit, sizeof b->unit);
	c->ops->text(c, 3, b->name, sizeof b->name);
	c->ops->text(c, 4, b->channel, sizeof b->channel);
	c->ops->text(c, 5, b->account_id, sizeof b->account_id);
	c->ops->text(c, 6, b->template_name, sizeof b->template_name);
	c->ops->text(c, 7, b->language, sizeof b->language);
	b->receipts = c->ops->flag(c, 8);
	b->spec = c->ops->dup(c, 9, &oom);
	b->status = (enum batch_status)c->ops->i64(c, 10);
	c->ops->text(c, 11, b->error, sizeof b->error);
	c->ops->text(c, 12, b->retry_of, sizeof b->retry_of);
	b->ingested = c->ops->flag(c, 13);
	int64_t *t[] = {&b->schedule_at,  &b->created_at,   &b->validated_at, &b->started_at,
	                &b->completed_at, &b->cancelled_at, &b->failed_at,    &b->total,
	                &b->valid,        &b->invalid,      &b->duplicates,   &b->replied};
	for (size_t k = 0; k < sizeof t / sizeof *t; k++)
		*t[k] = c->ops->i64(c, 14 + (int)k);
	for (int k = 0; k < MSG__COUNT; k++)
		b->by_status[k] = c->ops->i64(c, 26 + k);
	int n = 26 + MSG__COUNT;
	b->paused_at = c->ops->i64(c, n);
	b->resumed_at = c->ops->i64(c, n + 1);
	c->ops->text(c, n + 2, b->paused_by, sizeof b->paused_by);
	c->ops->text(c, n + 3, b->resumed_by, sizeof b->resumed_by);
	c->ops->text(c, n + 4, b->cancelled_by, sizeof b->cancelled_by);
	c->ops->text(c, n + 5, b->pause_reason, sizeof b->pause_reason);
	c->ops->text(c, n + 6, b->cancel_reason, sizeof b->cancel_reason);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT row_no, recipient, params, valid, duplicate, error_column, error,
 * message_id FROM batch_item (the backends' ITEM_COLS) */
int store_row_batch_item(const struct store_cols *c, void *row, void *arg)
{
	struct batch_item *it = row;
	bool oom = false;
	(void)arg;
	it->row = c->ops->i64(c, 0);
	c->ops->text(c, 1, it->recipient, sizeof it->recipient);
	it->params = c->ops->dup(c, 2, &oom);
	it->valid = c->ops->flag(c, 3);
	it->duplicate = c->ops->flag(c, 4);
	c->ops->text(c, 5, it->error_column, sizeof it->error_column);
	c->ops->text(c, 6, it->error, sizeof it->error);
	c->ops->text(c, 7, it->message_id, sizeof it->message_id);
	return oom ? HR_ENOMEM : 0;
}

/* SELECT id, name, disabled, created_at, rate_milli, rate_burst, daily_cap,
 * campaign_cap FROM tenant (a NULL limit reads 0: none) */
int store_row_tenant(const struct store_cols *c, void *row, void *arg)
{
	struct tenant_info *t = row;
	(void)arg;
	c->ops->text(c, 0, t->id, sizeof t->id);
	c->ops->text(c, 1, t->name, sizeof t->name);
	t->disabled = c->ops->flag(c, 2);
	t->created_at = c->ops->i64(c, 3);
	t->limits.rate_milli = c->ops->i64(c, 4);
	t->limits.burst = c->ops->i64(c, 5);
	t->limits.daily_cap = c->ops->i64(c, 6);
	t->limits.campaign_cap = c->ops->i64(c, 7);
	return 0;
}

/* SELECT tenant_id, id, name, disabled, created_at FROM business_unit */
int store_row_unit(const struct store_cols *c, void *row, void *arg)
{
	struct unit_row *u = row;
	(void)arg;
	c->ops->text(c, 0, u->tenant_id, sizeof u->tenant_id);
	c->ops->text(c, 1, u->id, sizeof u->id);
	c->ops->text(c, 2, u->name, sizeof u->name);
	u->disabled = c->ops->flag(c, 3);
	u->created_at = c->ops->i64(c, 4);
	return 0;
}

/* SELECT key_hash, prefix, tenant_id, unit_id, label, scopes, created_by,
 * created_at, expires_at, revoked_at, last_used_at, api_created FROM
 * api_key (the backends' KEY_COLS) */
int store_row_key(const struct store_cols *c, void *row, void *arg)
{
	struct key_row *k = row;
	(void)arg;
	c->ops->text(c, 0, k->hash, sizeof k->hash);
	c->ops->text(c, 1, k->prefix, sizeof k->prefix);
	c->ops->text(c, 2, k->tenant_id, sizeof k->tenant_id);
	c->ops->text(c, 3, k->unit_id, sizeof k->unit_id);
	c->ops->text(c, 4, k->label, sizeof k->label);
	c->ops->text(c, 5, k->scopes, sizeof k->scopes);
	c->ops->text(c, 6, k->created_by, sizeof k->created_by);
	k->created_at = c->ops->i64(c, 7);
	k->expires_at = c->ops->i64(c, 8);
	k->revoked_at = c->ops->i64(c, 9);
	k->last_used_at = c->ops->i64(c, 10);
	k->api_created = c->ops->flag(c, 11);
	return 0;
}

/* SELECT id, tenant_id, actor, at, action, object, before, after FROM
 * admin_audit */
int store_row_audit(const struct store_cols *c, void *row, void *arg)
{
	struct audit_row *a = row;
	bool oom = false;
	(void)arg;
	a->id = c->ops->i64(c, 0);
	c->ops->text(c, 1, a->tenant_id, sizeof a->tenant_id);
	c->ops->text(c, 2, a->actor, sizeof a->actor);
	a->at = c->ops->i64(c, 3);
	c->ops->text(c, 4, a->action, sizeof a->action);
	c->ops->text(c, 5, a->object, sizeof a->object);
	a->before = c->ops->dup(c, 6, &oom);
	a->after = c->ops->dup(c, 7, &oom);
	if (oom)
		hr_log(HR_LOG_WARN, "store", "audit row %lld: out of memory for before/after",
		       (long long)a->id);
	return 0;
}

void store_row_inbound_clear(void *row)
{
	inbound_row_clear(row);
}

void store_row_plugin_event_clear(void *row)
{
	plugin_event_row_clear(row);
}

void store_row_message_event_clear(void *row)
{
	message_event_clear(row);
}

void store_row_account_clear(void *row)
{
	account_row_clear(row);
}
