/*
 * collections.c - an example business-unit plugin: payment reminders from a
 * MariaDB/MySQL billing database, and "paid" replies written back to it.
 *
 * Built against include/herald/plugin.h only (see CMakeLists.txt beside it):
 *   cc -shared -fPIC -I include examples/plugins/collections/collections.c \
 *      -o collections.so
 *
 * The billing database (its data source is plugins.config.collections.source,
 * "billing" by default) holds:
 *   CREATE TABLE payments (id INT PRIMARY KEY, msisdn VARCHAR(32),
 *     customer VARCHAR(64), due DECIMAL(10,2), due_date DATE,
 *     paid TINYINT NOT NULL DEFAULT 0, paid_at DATETIME NULL,
 *     paid_message VARCHAR(32) NULL);
 *
 * Hooks:
 *  - prepare: a row of the campaign (from the data source's query, or an
 *    upload with the same columns) becomes a payment reminder: recipient
 *    msisdn, template parameters {{1}} customer, {{2}} amount with the
 *    configured currency ("£300.25"), {{3}} due date. A row already paid,
 *    or with nothing due, is skipped with the reason in the report.
 *  - on_reply: a reply or button press "paid" (any case, blanks around)
 *    marks the customer's unpaid payments paid, with the time and the
 *    message id, through herald_ds_exec.
 *  - export_row: columns "paid" ("paid" / "unpaid") and "paid_at".
 *  - unit_stats: payments, paid, unpaid and the amount still due.
 *
 * SQL is fixed text with ?N parameters: values never become SQL.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <herald/plugin.h>

static const char *source_of(struct herald_ctx *c)
{
	const char *s = herald_config_get(c, "source");
	return s && *s ? s : "billing";
}

static const char *currency_of(struct herald_ctx *c)
{
	const char *s = herald_config_get(c, "currency");
	return s ? s : "£";
}

static int init(struct herald_ctx *c)
{
	herald_log(c, HERALD_LOG_INFO, "collections: payments from data source %s", source_of(c));
	return HERALD_OK;
}

/* The first present column of names. */
static const char *col(const struct herald_record *r, const char *const *names)
{
	for (; *names; names++) {
		const char *v = herald_record_get(r, *names);
		if (v)
			return v;
	}
	return NULL;
}

static int prepare(struct herald_ctx *c, const struct herald_record *row, struct herald_draft *d)
{
	static const char *const to_cols[] = {"msisdn", "phone", NULL};
	static const char *const name_cols[] = {"customer", "name", NULL};
	static const char *const due_cols[] = {"due", "amount", NULL};
	static const char *const date_cols[] = {"due_date", NULL};
	static const char *const paid_cols[] = {"paid", NULL};
	const char *to = col(row, to_cols), *name = col(row, name_cols);
	const char *due = col(row, due_cols), *date = col(row, date_cols);
	const char *paid = col(row, paid_cols);
	if (!to || !name || !due || !date)
		return herald_fail(c, "a row needs msisdn, customer, due and due_date columns");
	if (paid && (!strcmp(paid, "1") || !strcasecmp(paid, "yes") || !strcasecmp(paid, "true")))
		return herald_draft_skip(d, "already paid");
	char *end = NULL;
	double amount = strtod(due, &end);
	if (end == due || *end != '\0')
		return herald_draft_skip(d, "the amount due is not a number");
	if (amount <= 0)
		return herald_draft_skip(d, "nothing is due");
	size_t n = strlen(currency_of(c)) + strlen(due) + 1;
	char *money = herald_alloc(c, n);
	if (!money)
		return herald_fail(c, "out of memory");
	snprintf(money, n, "%s%s", currency_of(c), due);
	if (herald_draft_set_recipient(d, to) != HERALD_OK ||
	    herald_draft_set_param(d, 0, name) != HERALD_OK ||
	    herald_draft_set_param(d, 1, money) != HERALD_OK ||
	    herald_draft_set_param(d, 2, date) != HERALD_OK)
		return herald_fail(c, "the reminder's values do not fit its template");
	herald_metric_add(c, "reminders_prepared", 1);
	return HERALD_OK;
}

/* "paid", in any case, with blanks around it. */
static int says_paid(const char *s)
{
	if (!s)
		return 0;
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return n == 4 && !strncasecmp(s, "paid", 4);
}

static int on_reply(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{
	if (!says_paid(herald_event_text(e)) && !says_paid(herald_event_payload(e))) {
		herald_metric_add(c, "other_replies", 1);
		return HERALD_OK;
	}
	const char *params[] = {herald_msg_recipient(m), herald_msg_id(m)};
	long long n = 0;
	if (herald_ds_exec(c, source_of(c),
	                   "UPDATE payments SET paid = 1, paid_at = NOW(), paid_message = ?2 "
	                   "WHERE msisdn = ?1 AND paid = 0",
	                   params, 2, &n) != HERALD_OK)
		return HERALD_ERROR; /* the reason is recorded already */
	herald_metric_add(c, "payments_marked_paid", n);
	herald_log(c, HERALD_LOG_INFO, "collections: %lld payment(s) of message %s marked paid", n,
	           herald_msg_id(m));
	return HERALD_OK;
}

struct paid_row {
	int found, paid;
	char at[32];
};

static int read_paid(void *arg, int ncols, const char *const *names, const char *const *values)
{
	(void)names;
	struct paid_row *p = arg;
	if (ncols < 2)
		return 1;
	p->found = 1;
	p->paid = values[0] && strcmp(values[0], "0") != 0;
	snprintf(p->at, sizeof p->at, "%s", values[1] ? values[1] : "");
	return 1; /* the latest payment is enough */
}

static int export_row(struct herald_ctx *c, const struct herald_msg *m, struct herald_kv *out)
{
	const char *params[] = {herald_msg_recipient(m)};
	struct paid_row p = {0};
	if (herald_ds_query(c, source_of(c),
	                    "SELECT paid, paid_at FROM payments WHERE msisdn = ?1 "
	                    "ORDER BY paid ASC, due_date DESC LIMIT 1",
	                    params, 1, read_paid, &p) != HERALD_OK)
		return HERALD_ERROR;
	if (!p.found)
		return HERALD_OK; /* not a customer of the table: columns stay empty */
	if (herald_kv_put(out, "paid", p.paid ? "paid" : "unpaid") != HERALD_OK ||
	    herald_kv_put(out, "paid_at", p.at) != HERALD_OK)
		return herald_fail(c, "cannot fill the export columns");
	return HERALD_OK;
}

struct totals {
	char v[4][48];
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
	if (herald_ds_query(
	        c, source_of(c),
	        "SELECT COUNT(*), COALESCE(SUM(paid), 0), COALESCE(SUM(1 - paid), 0), "
	        "COALESCE(SUM(CASE WHEN paid = 0 THEN due ELSE 0 END), 0) FROM payments",
	        NULL, 0, read_totals, &t) != HERALD_OK)
		return HERALD_ERROR;
	if (herald_kv_put(out, "payments", t.v[0]) != HERALD_OK ||
	    herald_kv_put(out, "paid", t.v[1]) != HERALD_OK ||
	    herald_kv_put(out, "unpaid", t.v[2]) != HERALD_OK ||
	    herald_kv_put(out, "outstanding", t.v[3]) != HERALD_OK)
		return herald_fail(c, "cannot fill the statistics");
	return HERALD_OK;
}

static const char *const export_columns[] = {"paid", "paid_at", NULL};

HERALD_PLUGIN(.name = "collections", .version = "1.0.0", .init = init, .prepare = prepare,
              .on_reply = on_reply, .export_columns = export_columns, .export_row = export_row,
              .unit_stats = unit_stats);
