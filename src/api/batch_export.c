/*
 * batch_export.c - the campaign export: GET /v1/batches/{id}/export.csv and
 * /v1/batches/{id}/export.xlsx. One line per uploaded row in row order: the
 * row as validated (recipient, each template parameter, valid / invalid with
 * its reason / duplicate) and what became of its message (status, sent,
 * delivered and read times, provider id, error, the latest reply or button
 * pressed). The .xlsx adds a "Summary" sheet with the batch's counters,
 * rates and timings.
 *
 * Memory does not grow with the batch: rows come from the store a page at a
 * time (store_ops.batch_export_rows, EXPORT_PAGE rows) and go out at once.
 *  - CSV is streamed (MHD_create_response_from_callback, chunked): each call
 *    of the reader callback formats the next page when the last one is sent.
 *    UTF-8 with a BOM, so Excel reads accents right; RFC 4180 quoting.
 *  - XLSX: libxlsxwriter in constant_memory mode (each row goes to its temp
 *    file as soon as the next starts) writes the workbook to a temp file,
 *    which is then opened, unlinked (the response's fd is the only reference:
 *    nothing is left behind whatever happens to the connection) and sent with
 *    MHD_create_response_from_fd64. The workbook is built in the request's
 *    thread before the answer starts.
 *
 * Ids (recipient, message and provider ids) are written as text cells in the
 * workbook, so Excel never shows a phone number as 4.47E+11. A CSV has no
 * types: it carries the digits as they are (Excel's own CSV import guesses;
 * the .xlsx is the file for Excel users).
 *
 * Text that came from outside (parameters, replies, provider errors) could
 * start with a formula character; in the CSV such a cell gets a leading
 * apostrophe (OWASP's CSV injection advice), in the workbook every text cell
 * is a string and never a formula.
 *
 * Times are UTC: ISO 8601 in the CSV, date-time cells in the workbook. They
 * are Herald's clock when it recorded the event (store.h, struct
 * batch_export_row).
 *
 * A campaign of a unit whose plugin declares export columns gets them last,
 * filled per row by its export_row hook (on the plugin pool, each call
 * bounded by the hook's deadline). A call that fails leaves its cells
 * empty; after EXPORT_PLUGIN_TIMEOUTS_MAX timeouts the rest of the export
 * stops calling the hook, so a hanging plugin cannot hold a download.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xlsxwriter.h>

#include "api/api_int.h"
#include "api/stream.h"
#include "plugins/plugins.h"

#define EXPORT_PAGE 1000          /* rows per store read */
#define EXPORT_PARAMS_MAX 256     /* parameter columns (batches.c BATCH_COLS_MAX) */
#define EXPORT_CSV_BLOCK 65536    /* MHD's block size for the CSV callback */
#define XLSX_MAX_ROWS 1048576     /* Excel's limit, the header included */
#define XLSX_MAX_STRING 32767     /* characters in one cell */
#define XLSX_ZIP64_ROWS 200000    /* past this, allow a container over 4 GiB */
#define EXPORT_EXTRA_MAX 64       /* a plugin's export columns (PLUGIN_KV_MAX) */
#define EXPORT_PLUGIN_TIMEOUTS_MAX 3

/* ---------------------------------------------------------------------------
 * One export line, shared by both formats.
 * ------------------------------------------------------------------------- */

enum cell_kind {
	CELL_TEXT,  /* system text: ids, statuses */
	CELL_FREE,  /* text from outside: params, replies, errors */
	CELL_INT,   /* row number */
	CELL_TIME,  /* microseconds, 0 = empty */
};

struct cell {
	enum cell_kind kind;
	const char *s;
	int64_t v;
};

/* The fixed columns around the parameters. */
static const char *const head_cols[] = {"Row", "Recipient"};
static const char *const tail_cols[] = {
    "Validity",      "Reason",          "Message ID", "Status",        "Queued at (UTC)",
    "Sent at (UTC)", "Delivered at (UTC)", "Read at (UTC)", "Provider ID", "Error code",
    "Error text",    "Reply type",      "Reply text", "Reply payload", "Replied at (UTC)",
};
#define HEAD_N (sizeof head_cols / sizeof *head_cols)
#define TAIL_N (sizeof tail_cols / sizeof *tail_cols)

struct line {
	struct cell c[HEAD_N + EXPORT_PARAMS_MAX + TAIL_N + EXPORT_EXTRA_MAX];
	size_t n;
	json_t *params; /* the row's parameter array, held while c points into it */
	json_t *extra;  /* the plugin's columns of the row, held likewise */
	char reason[HR_NAME_MAX + 300];
};

/* The batch's unit's plugin when it adds export columns. */
struct export_plugin {
	struct plugins *ps;
	const struct plugin *pl; /* NULL: none */
	const char *const *cols;
	size_t ncols;
	char tenant[HR_NAME_MAX], unit[HR_NAME_MAX], batch_id[HR_ID_LEN + 1];
	int timeouts;
};

static void export_plugin_of(struct export_plugin *ep, struct plugins *ps, const struct batch *b)
{
	memset(ep, 0, sizeof *ep);
	ep->ps = ps;
	ep->pl = plugins_for_unit(ps, b->tenant_id, b->unit);
	ep->cols = plugin_export_columns(ep->pl);
	if (!ep->cols) {
		ep->pl = NULL;
		return;
	}
	while (ep->ncols < EXPORT_EXTRA_MAX && ep->cols[ep->ncols])
		ep->ncols++;
	hr_strlcpy(ep->tenant, b->tenant_id, sizeof ep->tenant);
	hr_strlcpy(ep->unit, b->unit, sizeof ep->unit);
	hr_strlcpy(ep->batch_id, b->id, sizeof ep->batch_id);
}

/* The row's plugin columns (NULL: all empty). */
static json_t *export_extra(struct export_plugin *ep, const struct batch_export_row *x)
{
	if (!ep->pl || ep->timeouts >= EXPORT_PLUGIN_TIMEOUTS_MAX)
		return NULL;
	struct message m = {0};
	hr_strlcpy(m.id, x->item.message_id, sizeof m.id);
	hr_strlcpy(m.tenant_id, ep->tenant, sizeof m.tenant_id);
	hr_strlcpy(m.unit, ep->unit, sizeof m.unit);
	hr_strlcpy(m.batch_id, ep->batch_id, sizeof m.batch_id);
	hr_strlcpy(m.recipient, x->item.recipient, sizeof m.recipient);
	hr_strlcpy(m.error_code, x->error_code, sizeof m.error_code);
	hr_strlcpy(m.provider_id, x->provider_id, sizeof m.provider_id);
	m.status = x->has_message ? x->status : MSG_QUEUED;
	json_t *out = NULL;
	char why[PLUGIN_REASON_MAX];
	enum plugin_outcome o = plugins_export_row(ep->ps, ep->pl, &m, &out, why, sizeof why);
	if (o == PO_TIMEOUT && ++ep->timeouts == EXPORT_PLUGIN_TIMEOUTS_MAX)
		hr_log(HR_LOG_WARN, "api",
		       "export of batch %s: %s; its columns stay empty from here", ep->batch_id,
		       why);
	return o == PO_OK ? out : NULL;
}

/* The batch's parameter count, from its spec (0 when it has none). */
static int spec_nparams(const struct batch *b)
{
	json_t *spec = b->spec ? json_loads(b->spec, 0, NULL) : NULL;
	json_int_t n = json_integer_value(json_object_get(spec, "nparams"));
	json_decref(spec);
	return n < 0 ? 0 : n > EXPORT_PARAMS_MAX ? EXPORT_PARAMS_MAX : (int)n;
}

/* The export's header of parameter i: the column it came from in the
 * upload (the spec's param_columns), or "Param N" for a batch without. */
static void param_header(const struct batch *b, int i, char *out, size_t size)
{
	json_t *spec = b->spec ? json_loads(b->spec, 0, NULL) : NULL;
	const char *name =
	    json_string_value(json_array_get(json_object_get(spec, "param_columns"), (size_t)i));
	if (name && *name)
		hr_utf8_copy(out, name, size);
	else
		snprintf(out, size, "Param %d", i + 1);
	json_decref(spec);
}

static void line_free(struct line *l)
{
	json_decref(l->params);
	l->params = NULL;
	json_decref(l->extra);
	l->extra = NULL;
}

/* Fills l from one row; l borrows from x until line_free. */
static void line_of(struct line *l, const struct batch_export_row *x, int nparams,
                    struct export_plugin *ep)
{
	const struct batch_item *it = &x->item;
	size_t k = 0;
	l->params = it->params ? json_loads(it->params, 0, NULL) : NULL;
	l->c[k++] = (struct cell){CELL_INT, NULL, it->row};
	l->c[k++] = (struct cell){CELL_TEXT, it->recipient, 0};
	for (int i = 0; i < nparams; i++) {
		const char *v = json_string_value(json_array_get(l->params, (size_t)i));
		l->c[k++] = (struct cell){CELL_FREE, v ? v : "", 0};
	}
	const char *validity = !it->valid ? "invalid" : it->duplicate ? "duplicate" : "valid";
	l->reason[0] = '\0';
	if (!it->valid)
		snprintf(l->reason, sizeof l->reason, "%s%s%s", it->error_column,
		         it->error_column[0] ? ": " : "", it->error);
	else if (it->duplicate)
		snprintf(l->reason, sizeof l->reason, "the same recipient as an earlier row (not sent)");
	bool m = x->has_message;
	l->c[k++] = (struct cell){CELL_TEXT, validity, 0};
	l->c[k++] = (struct cell){CELL_FREE, l->reason, 0};
	l->c[k++] = (struct cell){CELL_TEXT, it->message_id, 0};
	l->c[k++] = (struct cell){CELL_TEXT, m ? msg_status_name(x->status) : "", 0};
	l->c[k++] = (struct cell){CELL_TIME, NULL, m ? x->created_at : 0};
	l->c[k++] = (struct cell){CELL_TIME, NULL, x->sent_at};
	l->c[k++] = (struct cell){CELL_TIME, NULL, x->delivered_at};
	l->c[k++] = (struct cell){CELL_TIME, NULL, x->read_at};
	l->c[k++] = (struct cell){CELL_TEXT, x->provider_id, 0};
	l->c[k++] = (struct cell){CELL_FREE, x->error_code, 0};
	l->c[k++] = (struct cell){CELL_FREE, x->error_text, 0};
	l->c[k++] = (struct cell){CELL_TEXT, x->reply_kind, 0};
	l->c[k++] = (struct cell){CELL_FREE, x->reply_text ? x->reply_text : "", 0};
	l->c[k++] = (struct cell){CELL_FREE, x->reply_payload ? x->reply_payload : "", 0};
	l->c[k++] = (struct cell){CELL_TIME, NULL, x->replied_at};
	if (ep && ep->pl) {
		l->extra = export_extra(ep, x);
		for (size_t i = 0; i < ep->ncols; i++) {
			const char *v = json_string_value(json_object_get(l->extra, ep->cols[i]));
			l->c[k++] = (struct cell){CELL_FREE, v ? v : "", 0};
		}
	}
	l->n = k;
}

/* The batch of the request's tenant (404 for any other), checked before
 * anything is written. */
static int export_batch(struct api_req *r, struct batch *b, struct hr_err *err)
{
	static const char *const allowed[] = {NULL};
	int rc = api_query_check(r, allowed, err);
	if (rc)
		return rc;
	struct store *st = r->srv->o.store;
	return st->ops->batch_get(st, r->tenant, r->path_id, b);
}

/* "attachment; filename=batch-<id>.<ext>" from the stored id, keeping only
 * [A-Za-z0-9] (an id is Crockford base32; the name is never used). */
static void disposition(const struct batch *b, const char *ext, char *out, size_t size)
{
	char safe[HR_ID_LEN + 1];
	size_t k = 0;
	for (const char *p = b->id; *p && k < HR_ID_LEN; p++)
		if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
			safe[k++] = *p;
	safe[k] = '\0';
	snprintf(out, size, "attachment; filename=\"batch-%s.%s\"", safe, ext);
}

/* ---------------------------------------------------------------------------
 * CSV, streamed.
 * ------------------------------------------------------------------------- */

struct csv_stream {
	struct api_pager pg; /* first: the reader's cls */
	struct store *st;
	char batch_id[HR_ID_LEN + 1];
	int nparams;
	int64_t after; /* the last row formatted */
	struct line line;
	struct export_plugin ep;
};

/* RFC 4180: quoted when it holds a comma, quote, CR or LF; quotes doubled.
 * Outside text starting like a formula gets a leading apostrophe. */
void api_csv_field(struct hr_buf *b, const char *s, bool free_text)
{
	bool formula = free_text && s[0] && strchr("=+-@\t\r", s[0]) != NULL;
	bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;
	if (!quote) {
		hr_buf_put(b, s, strlen(s));
		return;
	}
	hr_buf_put(b, "\"", 1);
	if (formula)
		hr_buf_put(b, "'", 1);
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "\"");
		hr_buf_put(b, p, n);
		p += n;
		if (*p == '"') {
			hr_buf_put(b, "\"\"", 2);
			p++;
		}
	}
	hr_buf_put(b, "\"", 1);
}

static void csv_header(struct hr_buf *b, const struct batch *bt, int nparams,
                       const struct export_plugin *ep)
{
	hr_buf_put(b, "\xEF\xBB\xBF", 3); /* UTF-8 BOM: Excel reads the file as UTF-8 */
	for (size_t i = 0; i < HEAD_N; i++)
		hr_buf_printf(b, "%s%s", i ? "," : "", head_cols[i]);
	for (int i = 0; i < nparams; i++) {
		char h[HR_NAME_MAX];
		param_header(bt, i, h, sizeof h);
		hr_buf_put(b, ",", 1);
		api_csv_field(b, h, true);
	}
	for (size_t i = 0; i < TAIL_N; i++)
		hr_buf_printf(b, ",%s", tail_cols[i]);
	for (size_t i = 0; ep->pl && i < ep->ncols; i++)
		hr_buf_printf(b, ",%s", ep->cols[i]); /* checked names: [a-z0-9_-] */
	hr_buf_put(b, "\r\n", 2);
}

static void csv_line(struct hr_buf *b, const struct line *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct cell *c = &l->c[i];
		if (i)
			hr_buf_put(b, ",", 1);
		if (c->kind == CELL_INT) {
			hr_buf_printf(b, "%lld", (long long)c->v);
		} else if (c->kind == CELL_TIME) {
			if (c->v) {
				char t[32];
				hr_time_format(c->v, t);
				hr_buf_put(b, t, strlen(t));
			}
		} else {
			api_csv_field(b, c->s, c->kind == CELL_FREE);
		}
	}
	hr_buf_put(b, "\r\n", 2);
}

/* Formats the next page into cs->pg.out: 0, or an HR_E code. */
static int csv_page(struct api_pager *p)
{
	struct csv_stream *cs = (struct csv_stream *)p;
	struct batch_export_row *v;
	size_t n;
	int rc = cs->st->ops->batch_export_rows(cs->st, cs->batch_id, cs->after, EXPORT_PAGE, &v, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		line_of(&cs->line, &v[i], cs->nparams, &cs->ep);
		csv_line(&p->out, &cs->line);
		line_free(&cs->line);
		cs->after = v[i].item.row;
		batch_export_row_clear(&v[i]);
	}
	free(v);
	if (n < EXPORT_PAGE)
		p->done = true;
	return p->out.oom ? HR_ENOMEM : 0;
}

static void csv_failed(struct api_pager *p, int rc)
{
	struct csv_stream *cs = (struct csv_stream *)p;
	hr_log(HR_LOG_ERROR, "api", "export of batch %s failed after row %lld: %s", cs->batch_id,
	       (long long)cs->after, hr_code_name(rc));
}

static void csv_free(void *cls)
{
	struct csv_stream *cs = cls;
	line_free(&cs->line);
	free(cs->pg.out.p);
	free(cs);
}

enum MHD_Result api_batch_export_csv(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	struct batch b;
	int rc = export_batch(r, &b, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct csv_stream *cs = calloc(1, sizeof *cs);
	if (!cs) {
		batch_clear(&b);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	cs->pg.page = csv_page;
	cs->pg.failed = csv_failed;
	cs->st = r->srv->o.store;
	hr_strlcpy(cs->batch_id, b.id, sizeof cs->batch_id);
	cs->nparams = spec_nparams(&b);
	export_plugin_of(&cs->ep, r->srv->o.plugins, &b);
	char disp[96];
	disposition(&b, "csv", disp, sizeof disp);
	/* The header and the first page now, so a store that fails at once
	 * gets a proper error status instead of a cut download. */
	csv_header(&cs->pg.out, &b, cs->nparams, &cs->ep);
	batch_clear(&b);
	if ((rc = csv_page(&cs->pg)) != 0) {
		csv_free(cs);
		return api_fail(r, rc, NULL);
	}
	const char *const headers[] = {MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv; charset=utf-8",
	                               MHD_HTTP_HEADER_CONTENT_DISPOSITION, disp, NULL};
	return api_stream_respond(r, EXPORT_CSV_BLOCK, api_pager_read, cs, csv_free, headers);
}

/* ---------------------------------------------------------------------------
 * XLSX, built in a temp file, then sent from its fd.
 * ------------------------------------------------------------------------- */

struct xlsx {
	lxw_workbook *wb;
	lxw_worksheet *rows, *sum;
	lxw_format *bold, *when, *pct;
	lxw_error err; /* the first write error */
};

static void xl_check(struct xlsx *x, lxw_error e)
{
	if (e != LXW_NO_ERROR && x->err == LXW_NO_ERROR)
		x->err = e;
}

/* A text cell, cut to Excel's 32,767 characters on a UTF-8 boundary (a
 * longer cell would make libxlsxwriter refuse the write). */
static void xl_text(struct xlsx *x, lxw_worksheet *ws, lxw_row_t row, lxw_col_t col,
                    const char *s, lxw_format *f)
{
	if (!s || !*s)
		return; /* an empty cell: nothing written */
	size_t chars = 0, i = 0;
	for (; s[i]; i++) {
		if (((unsigned char)s[i] & 0xC0) != 0x80 && ++chars > XLSX_MAX_STRING)
			break;
	}
	if (!s[i]) {
		xl_check(x, worksheet_write_string(ws, row, col, s, f));
		return;
	}
	char *cut = strndup(s, i);
	if (!cut) {
		xl_check(x, LXW_ERROR_MEMORY_MALLOC_FAILED);
		return;
	}
	xl_check(x, worksheet_write_string(ws, row, col, cut, f));
	free(cut);
}

static void xl_time(struct xlsx *x, lxw_worksheet *ws, lxw_row_t row, lxw_col_t col, int64_t us)
{
	if (!us)
		return;
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm))
		return;
	lxw_datetime dt = {.year = tm.tm_year + 1900,
	                   .month = tm.tm_mon + 1,
	                   .day = tm.tm_mday,
	                   .hour = tm.tm_hour,
	                   .min = tm.tm_min,
	                   .sec = tm.tm_sec + (double)(us % 1000000 / 1000) / 1000.0};
	xl_check(x, worksheet_write_datetime(ws, row, col, &dt, x->when));
}

static void xl_line(struct xlsx *x, lxw_row_t row, const struct line *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct cell *c = &l->c[i];
		lxw_col_t col = (lxw_col_t)i;
		if (c->kind == CELL_INT)
			xl_check(x, worksheet_write_number(x->rows, row, col, (double)c->v, NULL));
		else if (c->kind == CELL_TIME)
			xl_time(x, x->rows, row, col, c->v);
		else
			xl_text(x, x->rows, row, col, c->s, NULL);
	}
}

static void xl_header(struct xlsx *x, const struct batch *b, int nparams,
                      const struct export_plugin *ep)
{
	lxw_col_t col = 0;
	for (size_t i = 0; i < HEAD_N; i++)
		xl_check(x, worksheet_write_string(x->rows, 0, col++, head_cols[i], x->bold));
	for (int i = 0; i < nparams; i++) {
		char h[HR_NAME_MAX];
		param_header(b, i, h, sizeof h);
		xl_check(x, worksheet_write_string(x->rows, 0, col++, h, x->bold));
	}
	for (size_t i = 0; i < TAIL_N; i++)
		xl_check(x, worksheet_write_string(x->rows, 0, col++, tail_cols[i], x->bold));
	for (size_t i = 0; ep->pl && i < ep->ncols; i++)
		xl_check(x, worksheet_write_string(x->rows, 0, col++, ep->cols[i], x->bold));
	xl_check(x, worksheet_set_column(x->rows, 1, 1, 16, NULL));
	xl_check(x, worksheet_set_column(x->rows, (lxw_col_t)(HEAD_N + (size_t)nparams) + 2,
	                                 (lxw_col_t)(HEAD_N + (size_t)nparams) + 2, 28, NULL));
	xl_check(x, worksheet_set_column(x->rows, (lxw_col_t)(HEAD_N + (size_t)nparams) + 4,
	                                 (lxw_col_t)(HEAD_N + (size_t)nparams) + 7, 20, NULL));
	worksheet_freeze_panes(x->rows, 1, 0);
}

/* The Summary sheet: the batch's kept counters, rates over the messages
 * made, and timings. */
static void xl_summary(struct xlsx *x, const struct batch *b)
{
	lxw_worksheet *ws = x->sum;
	lxw_row_t row = 0;
	xl_check(x, worksheet_set_column(ws, 0, 0, 28, NULL));
	xl_check(x, worksheet_set_column(ws, 1, 1, 30, NULL));
#define TEXT(k, v)                                                                                 \
	do {                                                                                       \
		xl_check(x, worksheet_write_string(ws, row, 0, k, x->bold));                       \
		xl_text(x, ws, row++, 1, v, NULL);                                                 \
	} while (0)
#define NUM(k, v, f)                                                                               \
	do {                                                                                       \
		xl_check(x, worksheet_write_string(ws, row, 0, k, x->bold));                       \
		xl_check(x, worksheet_write_number(ws, row++, 1, (double)(v), f));                 \
	} while (0)
#define WHEN(k, v)                                                                                 \
	do {                                                                                       \
		xl_check(x, worksheet_write_string(ws, row, 0, k, x->bold));                       \
		xl_time(x, ws, row++, 1, v);                                                       \
	} while (0)
	TEXT("Batch ID", b->id);
	TEXT("Name", b->name);
	TEXT("Status", batch_status_name(b->status));
	TEXT("Channel", b->channel);
	TEXT("Account", api_account_name(b->tenant_id, b->account_id));
	TEXT("Template", b->template_name);
	TEXT("Language", b->language);
	TEXT("Unit", b->unit);
	TEXT("Error", b->error);
	TEXT("Retry of", b->retry_of);
	NUM("Rows", b->total, NULL);
	NUM("Valid rows", b->valid, NULL);
	NUM("Invalid rows", b->invalid, NULL);
	NUM("Duplicate rows", b->duplicates, NULL);
	int64_t made = 0, settled = 0;
	for (int i = 0; i < MSG__COUNT; i++) {
		made += b->by_status[i];
		if (batch_msg_settled((enum msg_status)i, b->receipts))
			settled += b->by_status[i];
	}
	NUM("Messages", made, NULL);
	for (int i = 0; i < MSG__COUNT; i++) {
		char k[48];
		snprintf(k, sizeof k, "Messages %s", msg_status_name((enum msg_status)i));
		NUM(k, b->by_status[i], NULL);
	}
	NUM("Replied", b->replied, NULL);
	double den = made > 0 ? (double)made : 1;
	int64_t delivered = b->by_status[MSG_DELIVERED] + b->by_status[MSG_READ];
	int64_t failed = b->by_status[MSG_FAILED] + b->by_status[MSG_UNDELIVERED];
	NUM("Delivered rate (delivered or read / messages)", (double)delivered / den, x->pct);
	NUM("Read rate (read / messages)", (double)b->by_status[MSG_READ] / den, x->pct);
	NUM("Failure rate (failed or undelivered / messages)", (double)failed / den, x->pct);
	NUM("Reply rate (replied / messages)", (double)b->replied / den, x->pct);
	WHEN("Created at (UTC)", b->created_at);
	WHEN("Validated at (UTC)", b->validated_at);
	WHEN("Scheduled for (UTC)", b->schedule_at);
	WHEN("Started at (UTC)", b->started_at);
	WHEN("Completed at (UTC)", b->completed_at);
	WHEN("Cancelled at (UTC)", b->cancelled_at);
	WHEN("Failed at (UTC)", b->failed_at);
	int64_t end = b->completed_at    ? b->completed_at
	              : b->cancelled_at  ? b->cancelled_at
	              : b->failed_at     ? b->failed_at
	              : b->started_at    ? hr_now_us()
	                                 : 0;
	if (b->started_at && end > b->started_at) {
		double secs = (double)(end - b->started_at) / 1e6;
		NUM("Duration (seconds, start to end or now)", secs, NULL);
		NUM("Settled per second", (double)settled / secs, NULL);
	}
	WHEN("Exported at (UTC)", hr_now_us());
#undef TEXT
#undef NUM
#undef WHEN
}

/* Writes the workbook to path: 0, or an HR_E code with err filled. */
static int xlsx_build(struct store *st, struct plugins *ps, const struct batch *b, const char *path,
                      const char *tmpdir, struct hr_err *err)
{
	struct export_plugin ep;
	export_plugin_of(&ep, ps, b);
	lxw_workbook_options opts = {.constant_memory = LXW_TRUE,
	                             .tmpdir = (char *)tmpdir,
	                             .use_zip64 = b->total > XLSX_ZIP64_ROWS ? LXW_TRUE : LXW_FALSE};
	struct xlsx x = {0};
	x.wb = workbook_new_opt(path, &opts);
	if (!x.wb)
		return hr_fail(err, HR_EIO, NULL, "cannot create the workbook");
	x.rows = workbook_add_worksheet(x.wb, "Rows");
	x.sum = workbook_add_worksheet(x.wb, "Summary");
	x.bold = workbook_add_format(x.wb);
	x.when = workbook_add_format(x.wb);
	x.pct = workbook_add_format(x.wb);
	int rc = 0;
	if (!x.rows || !x.sum || !x.bold || !x.when || !x.pct) {
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	} else {
		format_set_bold(x.bold);
		format_set_num_format(x.when, "yyyy-mm-dd hh:mm:ss");
		format_set_num_format(x.pct, "0.00%");
		int nparams = spec_nparams(b);
		xl_header(&x, b, nparams, &ep);
		xl_summary(&x, b);
		struct line *l = calloc(1, sizeof *l);
		if (!l)
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		int64_t after = 0;
		lxw_row_t row = 1;
		while (rc == 0 && x.err == LXW_NO_ERROR) {
			struct batch_export_row *v;
			size_t n;
			if ((rc = st->ops->batch_export_rows(st, b->id, after, EXPORT_PAGE, &v, &n)))
				break;
			for (size_t i = 0; i < n; i++) {
				if (row < XLSX_MAX_ROWS) {
					line_of(l, &v[i], nparams, &ep);
					xl_line(&x, row++, l);
					line_free(l);
				} else if (rc == 0) {
					rc = hr_fail(err, HR_ELIMIT, "format",
					             "more rows than a worksheet holds (%d): export as csv",
					             XLSX_MAX_ROWS - 1);
				}
				after = v[i].item.row;
				batch_export_row_clear(&v[i]);
			}
			free(v);
			if (n < EXPORT_PAGE)
				break;
		}
		free(l);
	}
	if (rc == 0 && x.err != LXW_NO_ERROR)
		rc = hr_fail(err, HR_EIO, NULL, "cannot write the workbook: %s", lxw_strerror(x.err));
	lxw_error ce = workbook_close(x.wb); /* frees it; writes the zip */
	if (rc == 0 && ce != LXW_NO_ERROR)
		rc = hr_fail(err, HR_EIO, NULL, "cannot write the workbook: %s", lxw_strerror(ce));
	return rc;
}

/*
 * The workbook is built on a thread of its own while the request waits
 * suspended (a million rows take a minute: no HTTP thread is held for it),
 * at most XLSX_BUILDERS at a time (beyond: 503, try again). Then the
 * handler runs again and sends the finished file from its descriptor.
 */
#define XLSX_BUILDERS 2
static atomic_int xlsx_building;

struct xlsx_job {
	struct api_req *r;
	struct batch b;
	char path[512], tmpdir[256], disp[96];
	int rc, fd;
	struct hr_err err;
};

static void xlsx_job_free(void *p)
{
	struct xlsx_job *j = p;
	if (j->fd >= 0)
		close(j->fd);
	batch_clear(&j->b);
	free(j);
}

static void *xlsx_worker(void *arg)
{
	struct xlsx_job *j = arg;
	j->rc = xlsx_build(j->r->srv->o.store, j->r->srv->o.plugins, &j->b, j->path, j->tmpdir,
	                   &j->err);
	j->fd = j->rc == 0 ? open(j->path, O_RDONLY | O_CLOEXEC) : -1;
	if (j->rc == 0 && j->fd < 0)
		j->rc = hr_fail(&j->err, HR_EIO, NULL, "cannot reopen the workbook");
	unlink(j->path); /* the fd (if any) is now the file's only reference */
	atomic_fetch_sub(&xlsx_building, 1);
	api_async_end(j->r); /* the handler runs again and answers */
	return NULL;
}

static enum MHD_Result xlsx_answer(struct api_req *r, struct xlsx_job *j)
{
	struct stat sb;
	int rc = j->rc;
	if (rc == 0 && fstat(j->fd, &sb) != 0)
		rc = hr_fail(&j->err, HR_EIO, NULL, "cannot read the workbook's size");
	if (rc) {
		if (rc == HR_EIO || rc == HR_ENOMEM)
			hr_log(HR_LOG_ERROR, "api", "export of batch %s: %s", r->path_id, j->err.msg);
		return api_fail(r, rc, rc == HR_ELIMIT || rc == HR_EBUSY ? &j->err : NULL);
	}
	struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)sb.st_size, j->fd);
	if (!resp)
		return api_fail(r, HR_ENOMEM, NULL);
	j->fd = -1; /* the response owns it now (closed when MHD destroys it) */
	const char *const headers[] = {
	    MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	    MHD_HTTP_HEADER_CONTENT_DISPOSITION, j->disp, NULL};
	return api_respond_with(r, resp, headers);
}

enum MHD_Result api_batch_export_xlsx(struct api_req *r)
{
	if (r->stage == 1)
		return xlsx_answer(r, r->priv);
	struct hr_err err;
	hr_err_clear(&err);
	struct xlsx_job *j = calloc(1, sizeof *j);
	if (!j)
		return api_fail(r, HR_ENOMEM, NULL);
	j->fd = -1;
	j->r = r;
	int rc = export_batch(r, &j->b, &err);
	if (rc) {
		free(j);
		return api_fail(r, rc, &err);
	}
	r->priv = j;
	r->priv_free = xlsx_job_free;
	if (j->b.total >= XLSX_MAX_ROWS)
		return api_fail(r, hr_fail(&err, HR_ELIMIT, "format",
		                           "more rows than a worksheet holds (%d): export as csv",
		                           XLSX_MAX_ROWS - 1),
		                &err);
	const char *tmpdir = getenv("TMPDIR");
	if (!tmpdir || !*tmpdir || strlen(tmpdir) >= sizeof j->tmpdir)
		tmpdir = "/tmp";
	hr_strlcpy(j->tmpdir, tmpdir, sizeof j->tmpdir);
	snprintf(j->path, sizeof j->path, "%s/herald-export-XXXXXX", tmpdir);
	/* mkstemp makes the name ours (O_EXCL); libxlsxwriter then rewrites it. */
	int fd = mkstemp(j->path);
	if (fd < 0) {
		hr_log(HR_LOG_ERROR, "api", "export: cannot create a temp file in %s: %s", tmpdir,
		       strerror(errno));
		return api_fail(r, HR_EIO, NULL);
	}
	close(fd);
	disposition(&j->b, "xlsx", j->disp, sizeof j->disp);
	if (atomic_fetch_add(&xlsx_building, 1) >= XLSX_BUILDERS) {
		atomic_fetch_sub(&xlsx_building, 1);
		unlink(j->path);
		hr_fail(&err, HR_EBUSY, NULL,
		        "%d spreadsheet exports are being built: try again shortly", XLSX_BUILDERS);
		return api_fail(r, HR_EBUSY, &err);
	}
	if (api_async_begin(r) != 0) {
		atomic_fetch_sub(&xlsx_building, 1);
		unlink(j->path);
		return api_fail(r, HR_EBUSY, NULL);
	}
	r->stage = 1;
	pthread_t th;
	pthread_attr_t at;
	bool started = pthread_attr_init(&at) == 0 &&
	               pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0 &&
	               pthread_create(&th, &at, xlsx_worker, j) == 0;
	pthread_attr_destroy(&at);
	if (!started) {
		atomic_fetch_sub(&xlsx_building, 1);
		unlink(j->path);
		j->rc = hr_fail(&j->err, HR_EBUSY, NULL, "cannot start the export: try again");
		api_async_end(r); /* answered by stage 1 */
	}
	return MHD_YES;
}
