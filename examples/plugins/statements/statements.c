/*
 * statements.c - an example business-unit plugin: monthly statements from a
 * PostgreSQL (or Redshift) table, each sent as a WhatsApp template with the
 * statement as its document header and, when WhatsApp fails or stays without
 * a receipt, an SMS carrying the link (the campaign's route [whatsapp, sms]
 * and fallback_text do the fallback; this plugin shapes each message).
 *
 * Built against include/herald/plugin.h only (see CMakeLists.txt beside it).
 *
 * The statements database (data source plugins.config.statements.source,
 * "statements" by default; links must start with plugins.config.statements.
 * link_prefix, "https://" by default) holds:
 *   CREATE TABLE statements (id serial PRIMARY KEY, phone text, name text,
 *     month text, url text, balance numeric(12,2),
 *     sent_whatsapp timestamptz, sent_sms timestamptz);
 *
 * Hooks:
 *  - prepare: a row (phone, name, month, url) becomes the message: recipient
 *    phone, {{1}} name, {{2}} month, {{3}} the link (the document's URL and
 *    the SMS fallback's text). A link that is not under link_prefix, or a
 *    row without one, is skipped with the reason.
 *  - list_campaigns: the months with statements, newest first (filter
 *    "limit", default 12), with how many statements each has.
 *  - on_status: a statement delivered records on which channel, in the
 *    table (sent_whatsapp / sent_sms) through herald_ds_exec.
 *  - unit_stats: statements, months, and how many went by WhatsApp / SMS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <herald/plugin.h>

static const char *source_of(struct herald_ctx *c)
{
	const char *s = herald_config_get(c, "source");
	return s && *s ? s : "statements";
}

static const char *prefix_of(struct herald_ctx *c)
{
	const char *s = herald_config_get(c, "link_prefix");
	return s && *s ? s : "https://";
}

static int prepare(struct herald_ctx *c, const struct herald_record *row, struct herald_draft *d)
{
	const char *to = herald_record_get(row, "phone");
	const char *name = herald_record_get(row, "name");
	const char *month = herald_record_get(row, "month");
	const char *url = herald_record_get(row, "url");
	if (!to || !name || !month)
		return herald_fail(c, "a row needs phone, name, month and url columns");
	if (!url || !*url)
		return herald_draft_skip(d, "the statement has no link yet");
	const char *prefix = prefix_of(c);
	if (strncmp(url, prefix, strlen(prefix)) != 0 || strchr(url, ' '))
		return herald_draft_skip(d,
		                         "the statement link is not under the configured prefix");
	if (herald_draft_set_recipient(d, to) != HERALD_OK ||
	    herald_draft_set_param(d, 0, name) != HERALD_OK ||
	    herald_draft_set_param(d, 1, month) != HERALD_OK ||
	    herald_draft_set_param(d, 2, url) != HERALD_OK)
		return herald_fail(c, "the statement's values do not fit its template");
	herald_metric_add(c, "statements_prepared", 1);
	return HERALD_OK;
}

struct months {
	struct herald_ctx *c;
	struct herald_list *out;
	int full;
};

static int add_month(void *arg, int ncols, const char *const *names, const char *const *values)
{
	(void)names;
	struct months *m = arg;
	if (ncols < 2)
		return 1;
	struct herald_kv *kv = herald_list_add(m->out);
	if (!kv) {
		m->full = 1;
		return 1;
	}
	herald_kv_put(kv, "month", values[0] ? values[0] : "");
	herald_kv_put(kv, "statements", values[1] ? values[1] : "0");
	return 0;
}

static int list_campaigns(struct herald_ctx *c, const struct herald_filter *f,
                          struct herald_list *out)
{
	const char *limit = herald_filter_get(f, "limit");
	char *end = NULL;
	long n = limit ? strtol(limit, &end, 10) : 12;
	if (limit && (end == limit || *end || n < 1 || n > 120))
		return herald_fail(c, "limit must be a number of months from 1 to 120");
	char lim[16];
	snprintf(lim, sizeof lim, "%ld", n);
	const char *params[] = {lim};
	struct months m = {c, out, 0};
	if (herald_ds_query(c, source_of(c),
	                    "SELECT month, COUNT(*) FROM statements GROUP BY month "
	                    "ORDER BY month DESC LIMIT CAST(?1 AS integer)",
	                    params, 1, add_month, &m) != HERALD_OK)
		return HERALD_ERROR;
	return HERALD_OK;
}

static int on_status(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{
	const char *st = herald_event_status(e);
	if (strcmp(st, "delivered") != 0 && strcmp(st, "read") != 0)
		return HERALD_OK;
	const char *ch = herald_msg_channel(m);
	const char *sql;
	if (!strcmp(ch, "whatsapp"))
		sql = "UPDATE statements SET sent_whatsapp = now() WHERE phone = ?1 "
		      "AND sent_whatsapp IS NULL";
	else if (!strcmp(ch, "sms"))
		sql =
		    "UPDATE statements SET sent_sms = now() WHERE phone = ?1 AND sent_sms IS NULL";
	else
		return HERALD_OK;
	const char *params[] = {herald_msg_recipient(m)};
	long long n = 0;
	if (herald_ds_exec(c, source_of(c), sql, params, 1, &n) != HERALD_OK)
		return HERALD_ERROR;
	herald_metric_add(c, !strcmp(ch, "sms") ? "delivered_sms" : "delivered_whatsapp", n);
	return HERALD_OK;
}

struct totals {
	char v[4][32];
};

static int read_totals(void *arg, int ncols, const char *const *names, const char *const *values)
{
	(void)names;
	struct totals *t = arg;
	for (int i = 0; i < ncols && i < 4; i++)
		snprintf(t->v[i], sizeof t->v[i], "%s", values[i] ? values[i] : "0");
	return 0;
}

static int unit_stats(struct herald_ctx *c, struct herald_kv *out)
{
	struct totals t = {0};
	if (herald_ds_query(c, source_of(c),
	                    "SELECT COUNT(*), COUNT(DISTINCT month), COUNT(sent_whatsapp), "
	                    "COUNT(sent_sms) FROM statements",
	                    NULL, 0, read_totals, &t) != HERALD_OK)
		return HERALD_ERROR;
	if (herald_kv_put(out, "statements", t.v[0]) != HERALD_OK ||
	    herald_kv_put(out, "months", t.v[1]) != HERALD_OK ||
	    herald_kv_put(out, "by_whatsapp", t.v[2]) != HERALD_OK ||
	    herald_kv_put(out, "by_sms", t.v[3]) != HERALD_OK)
		return herald_fail(c, "cannot fill the statistics");
	return HERALD_OK;
}

HERALD_PLUGIN(.name = "statements", .version = "1.0.0", .prepare = prepare,
              .list_campaigns = list_campaigns, .on_status = on_status, .unit_stats = unit_stats);
