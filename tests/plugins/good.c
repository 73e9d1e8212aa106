/*
 * good.c - a test plugin using every hook (tests/unit/test_plugin.c,
 * tests/integration/test_plugins.c). Built as good.so; built again as
 * dup.so with -DPLUGIN_NAME="good" under another file name for the
 * duplicate-name test, and as other.so named "other".
 *
 *  prepare:     param 0 becomes "<param 0> from <column 'name'>" when the
 *               row has a column "name"; rows whose column "skip" is "yes"
 *               are skipped ("asked to skip"); "garbage" column "yes":
 *               returns 42; "fail" "yes": HERALD_ERROR. Columns send_by
 *               (and send_account), policy and route set the row's
 *               channel (and account), delivery policy and route.
 *  before_send: recipients ending in 9 are skipped ("ends in 9"); ending
 *               in 8: HERALD_ERROR ("refuses 8"); ending in 7: returns 7.
 *               Route changes: ending in 5 go by SMS ("prefers sms", text
 *               "SMS from <name>"); in 4 via account acme-wa2 ("second
 *               number"); in 6 via account beta-sms, another tenant's
 *               ("tries beta's account"); in 0 via account nope, unknown
 *               ("tries an unknown account").
 *  on_status:   counts status_<status> (herald_metric_add).
 *  on_reply:    counts replies.
 *  unit_stats:  {"plugin": name, "config_greeting": config "greeting"}.
 *  export:      column "paid" = "no", "plugin" = name.
 *  list:        one item per filter key, {"filter": key, "value": value}
 *               when filter "n" is absent; else n items.
 */
#include <stdlib.h>
#include <string.h>

#include "herald/plugin.h"

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "good"
#endif

static int ends_in(const char *s, char c)
{
	size_t n = strlen(s);
	return n > 0 && s[n - 1] == c;
}

static int yes(const struct herald_record *r, const char *col)
{
	const char *v = herald_record_get(r, col);
	return v && strcmp(v, "yes") == 0;
}

static int prep(struct herald_ctx *c, const struct herald_record *r, struct herald_draft *d)
{
	if (yes(r, "garbage"))
		return 42;
	if (yes(r, "fail"))
		return herald_fail(c, "row refused by %s", PLUGIN_NAME);
	if (yes(r, "skip"))
		return herald_draft_skip(d, "asked to skip");
	/* Per-row sending from the columns send_by, send_account, policy and
	 * route when the row has them (ABI 1.1). */
	const char *by = herald_record_get(r, "send_by");
	const char *acct = herald_record_get(r, "send_account");
	if (by && *by && herald_draft_set_channel(d, by, acct && *acct ? acct : NULL) != HERALD_OK)
		return herald_fail(c, "set_channel refused");
	const char *pol = herald_record_get(r, "policy");
	if (pol && *pol && herald_draft_set_policy(d, pol) != HERALD_OK)
		return herald_fail(c, "set_policy refused");
	const char *route = herald_record_get(r, "route");
	if (route && *route && herald_draft_set_route(d, route) != HERALD_OK)
		return herald_fail(c, "set_route refused");
	const char *name = herald_record_get(r, "name");
	if (name && herald_draft_param_count(d) > 0) {
		const char *p0 = herald_draft_param(d, 0);
		size_t n = strlen(p0) + strlen(name) + 8;
		char *v = herald_alloc(c, n);
		if (!v)
			return herald_fail(c, "no memory");
		strcpy(v, p0);
		strcat(v, " from ");
		strcat(v, name);
		if (herald_draft_set_param(d, 0, v) != HERALD_OK)
			return herald_fail(c, "set_param refused");
	}
	herald_metric_add(c, "prepared", 1);
	return HERALD_OK;
}

static int before(struct herald_ctx *c, const struct herald_msg *m, struct herald_verdict *v)
{
	const char *to = herald_msg_recipient(m);
	herald_metric_add(c, "before_send", 1);
	if (ends_in(to, '9'))
		return herald_verdict_skip(v, "ends in 9");
	if (ends_in(to, '8'))
		return herald_fail(c, "refuses 8");
	if (ends_in(to, '7'))
		return 7;
	if (ends_in(to, '5'))
		return herald_verdict_route(v, "sms", NULL, "SMS from " PLUGIN_NAME, "prefers sms");
	if (ends_in(to, '4'))
		return herald_verdict_route(v, NULL, "acme-wa2", NULL, "second number");
	if (ends_in(to, '6'))
		return herald_verdict_route(v, NULL, "beta-sms", NULL, "tries beta's account");
	if (ends_in(to, '0'))
		return herald_verdict_route(v, NULL, "nope", NULL, "tries an unknown account");
	return HERALD_OK;
}

static int status(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{
	(void)m;
	char name[64] = "status_";
	strncat(name, herald_event_status(e), sizeof name - 8);
	herald_metric_add(c, name, 1);
	return HERALD_OK;
}

static int reply(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{
	(void)m;
	(void)e;
	herald_metric_add(c, "replies", 1);
	return HERALD_OK;
}

static int stats(struct herald_ctx *c, struct herald_kv *out)
{
	const char *g = herald_config_get(c, "greeting");
	if (herald_kv_put(out, "plugin", PLUGIN_NAME) != HERALD_OK)
		return herald_fail(c, "put refused");
	if (g && herald_kv_put(out, "config_greeting", g) != HERALD_OK)
		return herald_fail(c, "put refused");
	if (herald_kv_put(out, "unit", herald_unit(c)) != HERALD_OK)
		return herald_fail(c, "put refused");
	return HERALD_OK;
}

static const char *const cols[] = {"paid", "plugin", NULL};

static int export_row(struct herald_ctx *c, const struct herald_msg *m, struct herald_kv *out)
{
	(void)c;
	herald_kv_put(out, "paid", ends_in(herald_msg_recipient(m), '1') ? "yes" : "no");
	herald_kv_put(out, "plugin", PLUGIN_NAME);
	return HERALD_OK;
}

static int list(struct herald_ctx *c, const struct herald_filter *f, struct herald_list *l)
{
	const char *n = herald_filter_get(f, "n");
	int k = n ? atoi(n) : 1;
	for (int i = 0; i < k; i++) {
		struct herald_kv *it = herald_list_add(l);
		if (!it)
			return herald_fail(c, "list full at %d", i);
		herald_kv_put(it, "name", PLUGIN_NAME);
		herald_kv_put(it, "unit", herald_unit(c));
	}
	return HERALD_OK;
}

HERALD_PLUGIN(.name = PLUGIN_NAME, .version = "1.0.0", .prepare = prep, .before_send = before,
              .on_status = status, .on_reply = reply, .unit_stats = stats, .export_columns = cols,
              .export_row = export_row, .list_campaigns = list);
