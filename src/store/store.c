/*
 * store.c - the backend registry and the _clear helpers of the row types
 * declared in store.h. Adding a backend adds one line to `backends`.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/store.h"

static const struct store_ops *const backends[] = {
	&store_sqlite,
	&store_postgres,
};

const struct store_ops *store_backend(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

void send_result_clear(struct send_result *r)
{
	free(r->route_text);
	r->route_text = NULL;
}

void inbound_row_clear(struct inbound_row *r)
{
	free(r->text);
	free(r->payload);
	memset(r, 0, sizeof *r);
}

void batch_clear(struct batch *b)
{
	free(b->spec);
	memset(b, 0, sizeof *b);
}

void batch_item_clear(struct batch_item *it)
{
	free(it->params);
	memset(it, 0, sizeof *it);
}

void batch_export_row_clear(struct batch_export_row *r)
{
	batch_item_clear(&r->item);
	free(r->reply_text);
	free(r->reply_payload);
	memset(r, 0, sizeof *r);
}

void audit_row_clear(struct audit_row *a)
{
	if (!a)
		return;
	free(a->before);
	free(a->after);
	a->before = a->after = NULL;
}

void account_row_clear(struct account_row *a)
{
	free(a->config);
	memset(a, 0, sizeof *a);
}

void template_row_clear(struct template_row *t)
{
	free(t->body);
	free(t->config);
	memset(t, 0, sizeof *t);
}

int store_template_config_check(const struct template_row *t, struct hr_err *err)
{
	if (t->config && *t->config) {
		json_error_t jerr;
		json_t *cfg = json_loads(t->config, JSON_REJECT_DUPLICATES, &jerr);
		bool parsed = cfg != NULL, object = json_is_object(cfg);
		json_decref(cfg);
		if (!object)
			return hr_fail(err, HR_EINVAL, "template.config",
			               "template config is not a JSON object%s%s",
			               parsed ? "" : ": ", parsed ? "" : jerr.text);
	}
	return 0;
}

int store_template_check(const struct template_row *t, struct hr_err *err)
{
	if (!t || !t->tenant_id[0] || !t->channel[0] || !t->name[0] || !t->language[0])
		return hr_fail(err, HR_EINVAL, "template",
		               "template needs tenant, channel, name and language");
	return store_template_config_check(t, err);
}

int store_audit_check(const struct audit_row *a, struct hr_err *err)
{
	if (a && (!a->tenant_id[0] || !a->actor[0] || !a->action[0] || !a->object[0]))
		return hr_fail(err, HR_EINVAL, "audit",
		               "an audit row needs tenant, actor, action and object");
	return 0;
}

void idem_row_clear(struct idem_row *r)
{
	free(r->response);
	memset(r, 0, sizeof *r);
}

void inbox_row_clear(struct inbox_row *r)
{
	free(r->body);
	memset(r, 0, sizeof *r);
}

void wh_inbound_clear(struct wh_inbound *in)
{
	free(in->text);
	free(in->payload);
	free(in->auto_reply);
	memset(in, 0, sizeof *in);
}
