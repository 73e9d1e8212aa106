/*
 * sheet.c - the reader's front: options and limits, choosing the format,
 * errors, and the row builder shared by the xlsx and csv readers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "campaigns/sheet_int.h"

const char *sheet_col_name(uint32_t col, char out[4])
{
	if (col >= SHEET_MAX_COL) {
		memcpy(out, "?", 2);
		return out;
	}
	char tmp[4];
	int n = 0;
	uint32_t c = col + 1;
	while (c) {
		c--;
		tmp[n++] = (char)('A' + c % 26);
		c /= 26;
	}
	for (int i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return out;
}

const char *sheet_fmt_count(uint64_t n, char out[32])
{
	char tmp[32];
	int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)n);
	int k = 0;
	for (int i = 0; i < len; i++) {
		if (i && (len - i) % 3 == 0)
			out[k++] = ',';
		out[k++] = tmp[i];
	}
	out[k] = '\0';
	return out;
}

const char *sheet_fmt_bytes(uint64_t n, char out[32])
{
	if (n >= (1u << 20) && n % (1u << 20) == 0)
		snprintf(out, 32, "%llu MB", (unsigned long long)(n >> 20));
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(out, 32, "%llu KB", (unsigned long long)(n >> 10));
	else
		snprintf(out, 32, "%llu bytes", (unsigned long long)n);
	return out;
}

int sheet_fail(struct sheet *s, int hr, enum sheet_errc code, const char *part, uint32_t row,
               uint32_t col, int64_t off, const char *fmt, ...)
{
	if (s->failed) /* the first error is the one that explains */
		return s->failed;
	struct sheet_err *e = &s->err;
	e->code = code;
	snprintf(e->part, sizeof e->part, "%s", part ? part : "");
	e->row = row;
	e->col = col;
	e->col_name[0] = '\0';
	if (col)
		sheet_col_name(col - 1, e->col_name);
	e->offset = off;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	s->failed = hr;
	return hr;
}

/* ---- the row builder ---- */

void rowbuf_reset(struct rowbuf *rb)
{
	rb->base = 0;
	rb->ncols = 0;
	rb->len = 0;
}

int rowbuf_begin(struct rowbuf *rb, uint32_t col)
{
	uint32_t idx = rb->base + col; /* both bounded: no overflow */
	if (idx >= rb->cap) {
		uint32_t cap = rb->cap ? rb->cap : 16;
		while (cap <= idx)
			cap *= 2;
		struct sheet_cell *c = realloc(rb->cells, cap * sizeof *c);
		if (!c)
			return HR_ENOMEM;
		rb->cells = c;
		size_t *o = realloc(rb->off, cap * sizeof *o);
		if (!o)
			return HR_ENOMEM;
		rb->off = o;
		rb->cap = cap;
	}
	for (uint32_t i = rb->base + rb->ncols; i < idx; i++)
		rb->cells[i] = (struct sheet_cell){.type = SHEET_EMPTY};
	rb->col = col;
	rb->start = rb->len;
	return 0;
}

int rowbuf_put(struct rowbuf *rb, const char *p, size_t n)
{
	if (rb->len + n + 1 > rb->tcap) {
		size_t cap = rb->tcap ? rb->tcap : 4096;
		while (cap < rb->len + n + 1)
			cap *= 2;
		char *t = realloc(rb->text, cap);
		if (!t)
			return HR_ENOMEM;
		rb->text = t;
		rb->tcap = cap;
	}
	memcpy(rb->text + rb->len, p, n);
	rb->len += n;
	return 0;
}

int rowbuf_end(struct rowbuf *rb, enum sheet_type type, unsigned flags)
{
	size_t n = rb->len - rb->start;
	if (n == 0 && (type == SHEET_STRING || type == SHEET_EMPTY)) {
		return 0; /* "" is an empty cell */
	}
	if (rowbuf_put(rb, "", 1) != 0)
		return HR_ENOMEM;
	uint32_t idx = rb->base + rb->col;
	rb->cells[idx] = (struct sheet_cell){.type = type, .flags = flags, .len = n};
	rb->off[idx] = rb->start;
	rb->ncols = rb->col + 1;
	return 0;
}

void rowbuf_finish(struct rowbuf *rb, struct sheet_row *row, uint32_t num, uint32_t base,
                   uint32_t ncols)
{
	for (uint32_t i = base; i < base + ncols; i++) {
		struct sheet_cell *c = &rb->cells[i];
		c->text = c->type == SHEET_EMPTY ? "" : rb->text + rb->off[i];
	}
	row->num = num;
	row->ncols = ncols;
	row->cells = rb->cells + base;
}

void rowbuf_free(struct rowbuf *rb)
{
	free(rb->cells);
	free(rb->off);
	free(rb->text);
	memset(rb, 0, sizeof *rb);
}

/* ---- opening ---- */

static void sheet_defaults(struct sheet *s, const struct sheet_opts *o)
{
	struct sheet_limits l = o ? o->limits : (struct sheet_limits){0};
	if (!l.max_rows)
		l.max_rows = SHEET_MAX_ROW;
	if (!l.max_cols)
		l.max_cols = 256;
	if (l.max_cols > SHEET_MAX_COL)
		l.max_cols = SHEET_MAX_COL;
	if (!l.max_cell_bytes)
		l.max_cell_bytes = 32 << 10;
	if (!l.max_member_bytes)
		l.max_member_bytes = (uint64_t)1 << 30;
	if (!l.max_sst_bytes)
		l.max_sst_bytes = (uint64_t)256 << 20;
	if (l.max_sst_bytes > INT32_MAX) /* the offsets are 31 bits */
		l.max_sst_bytes = INT32_MAX;
	if (!l.max_file_bytes)
		l.max_file_bytes = (uint64_t)200 << 20;
	s->lim = l;
	s->tmpdir = o ? o->tmpdir : NULL;
	s->err.offset = -1;
}

static bool ends_with(const char *path, const char *ext)
{
	size_t n = strlen(path), e = strlen(ext);
	return n > e && strcasecmp(path + n - e, ext) == 0;
}

/* The format the caller asked for, else the extension's, else the content's:
 * a zip is taken for a workbook, anything else for text. */
static enum sheet_format sheet_pick_format(const char *path, enum sheet_format f)
{
	if (f != SHEET_FMT_AUTO)
		return f;
	if (ends_with(path, ".xlsx") || ends_with(path, ".xlsm"))
		return SHEET_FMT_XLSX;
	if (ends_with(path, ".csv") || ends_with(path, ".txt"))
		return SHEET_FMT_CSV;
	unsigned char magic[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, magic, sizeof magic);
		close(fd);
		if (n == 4 && memcmp(magic, "PK\3\4", 4) == 0)
			return SHEET_FMT_XLSX;
	}
	return SHEET_FMT_CSV;
}

static void sheet_copy_err(const struct sheet *s, struct sheet_err *err)
{
	if (err)
		*err = s->err;
}

int sheet_open(struct sheet **out, const char *path, const struct sheet_opts *opts,
               struct sheet_err *err)
{
	*out = NULL;
	struct sheet *s = calloc(1, sizeof *s);
	if (!s) {
		if (err) {
			memset(err, 0, sizeof *err);
			err->code = SHEET_E_NOMEM;
			err->offset = -1;
			snprintf(err->msg, sizeof err->msg, "Out of memory opening the file.");
		}
		return HR_ENOMEM;
	}
	sheet_defaults(s, opts);
	s->fmt = sheet_pick_format(path, opts ? opts->format : SHEET_FMT_AUTO);
	int rc = s->fmt == SHEET_FMT_XLSX ? xlsx_open(s, path, opts ? opts->sheet : NULL)
	                                  : csv_open(s, path, opts ? opts->csv_sep : 0);
	if (rc < 0) {
		sheet_copy_err(s, err);
		sheet_close(s);
		return rc;
	}
	if (err) {
		memset(err, 0, sizeof *err);
		err->offset = -1;
	}
	*out = s;
	return 0;
}

int sheet_next(struct sheet *s, struct sheet_row *row, struct sheet_err *err)
{
	/* Each reader returns a sticky error itself: the xlsx reader only
	 * after the rows parsed before it are handed out. */
	int rc = s->fmt == SHEET_FMT_XLSX ? xlsx_next(s, row) : csv_next(s, row);
	if (rc < 0) {
		if (!s->failed) /* every path fills err; make sure it sticks */
			sheet_fail(s, rc, SHEET_E_IO, NULL, 0, 0, -1,
			           "The file could not be read.");
		sheet_copy_err(s, err);
		return s->failed;
	}
	if (rc > 0 && ++s->rows_out > s->lim.max_rows) {
		char a[32];
		rc = sheet_fail(s, HR_ELIMIT, SHEET_E_ROWS, s->part, row->num, 0, -1,
		                "The sheet has more than %s rows of data (row %u is one too many): "
		                "split it into smaller files.",
		                sheet_fmt_count(s->lim.max_rows, a), row->num);
		sheet_copy_err(s, err);
		return rc;
	}
	return rc;
}

void sheet_close(struct sheet *s)
{
	if (!s)
		return;
	xlsx_close(s);
	csv_close(s);
	rowbuf_free(&s->rb);
	free(s);
}

const char *sheet_name(const struct sheet *s)
{
	return s->name;
}

int sheet_list(const char *path, const struct sheet_opts *opts,
               int (*fn)(void *ud, const char *name, bool hidden), void *ud, struct sheet_err *err)
{
	struct sheet *s = calloc(1, sizeof *s);
	if (!s)
		return HR_ENOMEM;
	sheet_defaults(s, opts);
	int rc = 0;
	if (sheet_pick_format(path, opts ? opts->format : SHEET_FMT_AUTO) == SHEET_FMT_XLSX)
		rc = xlsx_list(s, path, fn, ud);
	if (rc < 0 || s->failed)
		sheet_copy_err(s, err);
	sheet_close(s);
	return rc;
}
