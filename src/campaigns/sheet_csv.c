/*
 * sheet_csv.c - RFC 4180 CSV, streamed through one fixed 64 KiB buffer.
 *
 * A byte-level state machine: fields may be quoted ("a,b", "say ""hi""",
 * line breaks inside); records end at LF, CRLF or a lone CR, mixed freely.
 * A UTF-8 BOM is skipped; the bytes are checked as UTF-8 as they pass (a
 * sequence may straddle two buffers), so the error can name the row and the
 * byte. Row numbers count records, as a spreadsheet shows them: a quoted
 * field spanning three lines is one row. Line breaks inside a quoted field
 * come out as "\n" whatever the file used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "campaigns/sheet_int.h"

enum csv_state {
	CSV_FIELD_START, /* nothing of the field read yet */
	CSV_UNQUOTED,
	CSV_QUOTED,
	CSV_QUOTE_SEEN, /* a quote inside a quoted field: "" or the end */
};

struct csv {
	int fd;
	char sep;
	bool eof;
	bool skip_lf;      /* the last record ended at a CR: a LF right after is its CRLF */
	bool cr_in_quotes; /* the last byte in a quoted field was a CR */
	size_t pos, len;
	int64_t base;  /* file offset of buf[0] */
	uint32_t rec;  /* the current record's number */
	uint32_t line; /* the current physical line */
	/* UTF-8 decoding, carried across buffers */
	unsigned need;
	uint32_t cp, min;
	int64_t seq_off;
	/* bytes that end a run of plain field bytes, unquoted and quoted */
	bool stop_unq[256], stop_q[256];
	unsigned char buf[SHEET_CHUNK];
};

static int csv_io_fail(struct sheet *s, const char *what)
{
	return sheet_fail(s, HR_EIO, SHEET_E_IO, NULL, 0, 0, -1, "The file could not be %s (%s).",
	                  what, strerror(errno));
}

/* Refills the buffer (pos == len). Sets eof at the end of the file. */
static int csv_fill(struct sheet *s)
{
	struct csv *c = s->c;
	c->base += (int64_t)c->len;
	c->pos = c->len = 0;
	for (;;) {
		ssize_t n = read(c->fd, c->buf, sizeof c->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return csv_io_fail(s, "read");
		if (n == 0) {
			c->eof = true;
			return 0;
		}
		c->len = (size_t)n;
		/* The file was checked at open; this catches one still growing. */
		if ((uint64_t)(c->base + n) > s->lim.max_file_bytes) {
			char a[32];
			return sheet_fail(s, HR_ELIMIT, SHEET_E_FILE_SIZE, NULL, 0, 0, c->base,
			                  "The file is larger than the limit of %s.",
			                  sheet_fmt_bytes(s->lim.max_file_bytes, a));
		}
		return 0;
	}
}

/* Picks ',' or ';': whichever the first record has more of outside quotes
 * (as far as the first buffer reaches), ',' on a tie. */
static char csv_detect_sep(const struct csv *c)
{
	size_t commas = 0, semis = 0;
	bool q = false;
	for (size_t i = c->pos; i < c->len; i++) {
		unsigned char b = c->buf[i];
		if (b == '"')
			q = !q;
		else if (!q && (b == '\n' || b == '\r'))
			break;
		else if (!q && b == ',')
			commas++;
		else if (!q && b == ';')
			semis++;
	}
	return semis > commas ? ';' : ',';
}

int csv_open(struct sheet *s, const char *path, char sep)
{
	struct csv *c = calloc(1, sizeof *c);
	if (!c)
		return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, NULL, 0, 0, -1,
		                  "Out of memory opening the file.");
	s->c = c;
	c->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->fd < 0)
		return csv_io_fail(s, "opened");
	struct stat st;
	if (fstat(c->fd, &st) != 0)
		return csv_io_fail(s, "read");
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > s->lim.max_file_bytes) {
		char a[32], b[32];
		return sheet_fail(
		    s, HR_ELIMIT, SHEET_E_FILE_SIZE, NULL, 0, 0, -1,
		    "The file is %s, over the limit of %s: split it into smaller files.",
		    sheet_fmt_bytes((uint64_t)st.st_size, a),
		    sheet_fmt_bytes(s->lim.max_file_bytes, b));
	}
	c->line = 1;
	int rc = csv_fill(s);
	if (rc < 0)
		return rc;
	const unsigned char *b = c->buf;
	if (c->len >= 38 && memcmp(b, "PK\3\4", 4) == 0 && memcmp(b + 30, "mimetype", 8) == 0)
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		    "This file is an OpenDocument spreadsheet (.ods), not a CSV file: "
		    "save it as \"CSV UTF-8\" or as .xlsx.");
	if (c->len >= 4 && memcmp(b, "PK\3\4", 4) == 0)
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		    "This file is an Excel workbook (.xlsx), not a CSV file: upload it "
		    "with the .xlsx extension.");
	if (c->len >= 4 && memcmp(b, "\xD0\xCF\x11\xE0", 4) == 0)
		return sheet_fail(s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		                  "This file is an old Excel 97-2003 workbook (.xls), not a CSV "
		                  "file: save it as .xlsx or as \"CSV UTF-8\".");
	if (c->len >= 2 && ((b[0] == 0xFF && b[1] == 0xFE) || (b[0] == 0xFE && b[1] == 0xFF)))
		return sheet_fail(s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		                  "This file is UTF-16 text (Excel's \"Unicode Text\"): save it as "
		                  "\"CSV UTF-8 (Comma delimited)\" instead.");
	if (c->len >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
		c->pos = 3;
	c->sep = sep ? sep : csv_detect_sep(c);
	if (c->sep == '"' || c->sep == '\r' || c->sep == '\n' || (unsigned char)c->sep >= 0x80)
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, -1,
		    "A quote, a line break or a non-ASCII byte cannot separate fields.");
	for (int i = 0; i < 256; i++) {
		bool special = i == '"' || i == '\r' || i == '\n' || i == 0 || i >= 0x80;
		c->stop_q[i] = special;
		c->stop_unq[i] = special || i == (unsigned char)c->sep;
	}
	return 0;
}

void csv_close(struct sheet *s)
{
	struct csv *c = s->c;
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	s->c = NULL;
}

static int csv_bad_utf8(struct sheet *s, uint32_t col, int64_t off)
{
	struct csv *c = s->c;
	char cn[4];
	return sheet_fail(s, HR_EINVAL, SHEET_E_UTF8, NULL, c->rec, col + 1, off,
	                  "Row %u, column %s: the text is not valid UTF-8 (byte %lld of the file). "
	                  "The file was probably saved in another encoding: save it as \"CSV "
	                  "UTF-8\".",
	                  c->rec, sheet_col_name(col, cn), (long long)off);
}

/* One non-ASCII byte through the UTF-8 decoder. */
static int csv_utf8(struct sheet *s, unsigned char b, uint32_t col, int64_t off)
{
	struct csv *c = s->c;
	if (c->need == 0) {
		c->seq_off = off;
		if (b >= 0xC2 && b <= 0xDF)
			c->need = 1, c->cp = b & 0x1Fu, c->min = 0x80;
		else if (b >= 0xE0 && b <= 0xEF)
			c->need = 2, c->cp = b & 0x0Fu, c->min = 0x800;
		else if (b >= 0xF0 && b <= 0xF4)
			c->need = 3, c->cp = b & 0x07u, c->min = 0x10000;
		else
			return csv_bad_utf8(s, col, off);
		return 0;
	}
	if ((b & 0xC0) != 0x80)
		return csv_bad_utf8(s, col, c->seq_off);
	c->cp = (c->cp << 6) | (b & 0x3Fu);
	if (--c->need == 0 &&
	    (c->cp < c->min || (c->cp >= 0xD800 && c->cp <= 0xDFFF) || c->cp > 0x10FFFF))
		return csv_bad_utf8(s, col, c->seq_off);
	return 0;
}

/* Does the field look like Excel's display of a long number, 4.47911E+11?
 * Then the digits were gone before the CSV was written. */
static bool csv_sci_number(const char *p, size_t n)
{
	size_t i = 0;
	if (n > 24)
		return false;
	if (i < n && p[i] == '-')
		i++;
	if (i >= n || p[i] < '0' || p[i] > '9')
		return false;
	i++;
	if (i < n && (p[i] == '.' || p[i] == ',')) {
		i++;
		size_t d = i;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i >= n || (p[i] != 'E' && p[i] != 'e'))
		return false;
	i++;
	if (i < n && (p[i] == '+' || p[i] == '-'))
		i++;
	size_t d = i;
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	return i == n && i > d;
}

enum cell_put { CELL_OK, CELL_COLS, CELL_TOO_BIG, CELL_NOMEM };

/* Appends n bytes of a value at col to the record in rb, opening its cell
 * at the first: refused past the column limit or the cell size limit
 * (*flen bytes in the cell so far). */
static inline enum cell_put cell_put(struct sheet *s, struct rowbuf *rb, uint32_t col,
                                     bool *open_cell, size_t *flen, const char *p, size_t n)
{
	if (col >= s->lim.max_cols)
		return CELL_COLS;
	if (*flen + n > s->lim.max_cell_bytes)
		return CELL_TOO_BIG;
	if (!*open_cell) {
		if (rowbuf_begin(rb, col) < 0)
			return CELL_NOMEM;
		*open_cell = true;
	}
	if (rowbuf_put(rb, p, n) < 0)
		return CELL_NOMEM;
	*flen += n;
	return CELL_OK;
}

/*
 * Reads one record into s->rb. Returns 1 with a record (possibly all
 * empty), 0 at the end of the file, or an error.
 */
static int csv_record(struct sheet *s)
{
	struct csv *c = s->c;
	struct rowbuf *rb = &s->rb;
	enum csv_state st = CSV_FIELD_START;
	uint32_t col = 0;
	bool started = false, open_cell = false;
	uint32_t q_line = 0; /* where the current quoted field began */
	int64_t q_off = 0;
	size_t flen = 0; /* bytes in the current field */
	uint32_t max_cell = s->lim.max_cell_bytes;
	char cn[4], a[32];
	int rc;
	enum cell_put put = CELL_OK;
	int64_t put_off = 0; /* where a value refused by cell_put starts */
	rowbuf_reset(rb);

	for (;;) {
		if (c->pos == c->len) {
			if (c->eof || csv_fill(s) < 0 || c->eof) {
				if (s->failed)
					return s->failed;
				break;
			}
		}
		unsigned char b = c->buf[c->pos];
		int64_t off = c->base + (int64_t)c->pos;
		if (!started) {
			if (c->skip_lf && b == '\n') { /* the LF of a CRLF */
				c->skip_lf = false;
				c->pos++;
				continue;
			}
			c->skip_lf = false;
			if (c->rec == UINT32_MAX)
				return sheet_fail(s, HR_ELIMIT, SHEET_E_ROWS, NULL, c->rec, 0, off,
				                  "The file has too many rows.");
			c->rec++;
			started = true;
		}
		if (b == 0)
			return sheet_fail(
			    s, HR_EINVAL, SHEET_E_UTF8, NULL, c->rec, col + 1, off,
			    "Row %u, column %s: the file contains a NUL byte (byte %lld), "
			    "so it is not a text file. Save it as \"CSV UTF-8\".",
			    c->rec, sheet_col_name(col, cn), (long long)off);
		if (b < 0x80 && c->need)
			return csv_bad_utf8(s, col, c->seq_off);

		/* A run of plain bytes: copied in one go. */
		const bool *stop = st == CSV_QUOTED ? c->stop_q : c->stop_unq;
		if (!stop[b] && st != CSV_QUOTE_SEEN) {
			size_t j = c->pos + 1;
			while (j < c->len && !stop[c->buf[j]])
				j++;
			size_t n = j - c->pos;
			if (st == CSV_FIELD_START)
				st = CSV_UNQUOTED;
			put = cell_put(s, rb, col, &open_cell, &flen, (const char *)c->buf + c->pos,
			               n);
			if (put != CELL_OK) {
				put_off = off;
				goto put_failed;
			}
			c->pos = j;
			c->cr_in_quotes = false;
			continue;
		}
		c->pos++;
		if (b >= 0x80) { /* a byte of a multi-byte character */
			if (st == CSV_QUOTE_SEEN)
				goto after_quote;
			if ((rc = csv_utf8(s, b, col, off)) < 0)
				return rc;
			if (st == CSV_FIELD_START)
				st = CSV_UNQUOTED;
			put = cell_put(s, rb, col, &open_cell, &flen, (const char *)&b, 1);
			if (put != CELL_OK) {
				put_off = off;
				goto put_failed;
			}
			c->cr_in_quotes = false;
			continue;
		}
		switch (st) {
		case CSV_FIELD_START:
		case CSV_UNQUOTED:
			if (b == '"') {
				if (st == CSV_UNQUOTED)
					return sheet_fail(
					    s, HR_EINVAL, SHEET_E_STRAY_QUOTE, NULL, c->rec,
					    col + 1, off,
					    "Row %u, column %s: a quote (\") appears in the middle "
					    "of "
					    "a field that does not start with one (byte %lld). Put "
					    "the whole field in quotes and double the quote inside "
					    "it (\"\"), or remove it.",
					    c->rec, sheet_col_name(col, cn), (long long)off);
				st = CSV_QUOTED;
				q_line = c->line;
				q_off = off;
				c->cr_in_quotes = false;
				continue;
			}
			break; /* a separator or a line end: below */
		case CSV_QUOTED:
			if (b == '"') {
				st = CSV_QUOTE_SEEN;
				c->cr_in_quotes = false;
				continue;
			}
			/* A line break inside quotes is data, stored as "\n". */
			if (b == '\n' && c->cr_in_quotes) {
				c->cr_in_quotes = false;
				continue;
			}
			c->cr_in_quotes = b == '\r';
			c->line++;
			put = cell_put(s, rb, col, &open_cell, &flen, "\n", 1);
			if (put != CELL_OK) {
				put_off = off;
				goto put_failed;
			}
			continue;
		case CSV_QUOTE_SEEN:
			if (b == '"') { /* "" is one quote */
				put = cell_put(s, rb, col, &open_cell, &flen, "\"", 1);
				if (put != CELL_OK) {
					put_off = off;
					goto put_failed;
				}
				st = CSV_QUOTED;
				continue;
			}
			if (b != (unsigned char)c->sep && b != '\n' && b != '\r')
				goto after_quote;
			break;
		}
		/* b is a separator or a line end: the field is complete. */
		if (open_cell) {
			unsigned fl =
			    csv_sci_number(rb->text + rb->start, flen) ? SHEET_LOSSY_NUMBER : 0;
			if (rowbuf_end(rb, SHEET_STRING, fl) < 0)
				goto nomem;
			open_cell = false;
		}
		flen = 0;
		st = CSV_FIELD_START;
		if (b == (unsigned char)c->sep) {
			col++;
			continue;
		}
		c->line++;
		c->skip_lf = b == '\r';
		return 1;
	}

	/* The end of the file. */
	if (c->need)
		return csv_bad_utf8(s, col, c->seq_off);
	if (st == CSV_QUOTED)
		return sheet_fail(s, HR_EINVAL, SHEET_E_QUOTE, NULL, c->rec, col + 1, q_off,
		                  "Row %u, column %s: the quoted field that starts here (line %u, "
		                  "byte %lld) is never closed: a closing quote (\") is missing, so "
		                  "the rest of the file would be read as one cell.",
		                  c->rec, sheet_col_name(col, cn), q_line, (long long)q_off);
	if (!started)
		return 0;
	if (open_cell) {
		unsigned fl = csv_sci_number(rb->text + rb->start, flen) ? SHEET_LOSSY_NUMBER : 0;
		if (rowbuf_end(rb, SHEET_STRING, fl) < 0)
			goto nomem;
	}
	return 1;

after_quote:
	return sheet_fail(
	    s, HR_EINVAL, SHEET_E_STRAY_QUOTE, NULL, c->rec, col + 1, c->base + (int64_t)c->pos - 1,
	    "Row %u, column %s: there is text after the closing quote of a quoted "
	    "field (byte %lld). Put the whole field in quotes and double every quote "
	    "inside it (\"\").",
	    c->rec, sheet_col_name(col, cn), (long long)(c->base + (int64_t)c->pos - 1));
put_failed:
	if (put == CELL_COLS)
		return sheet_fail(s, HR_ELIMIT, SHEET_E_COLS, NULL, c->rec, col + 1, put_off,
		                  "Row %u has a value in column %s, past the limit of %u columns.",
		                  c->rec, sheet_col_name(col, cn), s->lim.max_cols);
	if (put == CELL_NOMEM)
		goto nomem;
	/* CELL_TOO_BIG: the cell holds more than the limit */
	if (st == CSV_QUOTED)
		return sheet_fail(
		    s, HR_ELIMIT, SHEET_E_CELL_SIZE, NULL, c->rec, col + 1, q_off,
		    "Row %u, column %s: the cell holds more than %s of text, over the "
		    "limit. If it should be short, its closing quote is probably "
		    "missing: the quoted field starts at line %u.",
		    c->rec, sheet_col_name(col, cn), sheet_fmt_bytes(max_cell, a), q_line);
	return sheet_fail(s, HR_ELIMIT, SHEET_E_CELL_SIZE, NULL, c->rec, col + 1, -1,
	                  "Row %u, column %s: the cell holds more than %s of text, over the limit.",
	                  c->rec, sheet_col_name(col, cn), sheet_fmt_bytes(max_cell, a));
nomem:
	return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, NULL, c->rec, col + 1, -1,
	                  "Out of memory reading row %u.", c->rec);
}

int csv_next(struct sheet *s, struct sheet_row *row)
{
	if (s->failed)
		return s->failed;
	for (;;) {
		int rc = csv_record(s);
		if (rc <= 0)
			return rc;
		if (s->rb.ncols) { /* wholly empty records are skipped */
			rowbuf_finish(&s->rb, row, s->c->rec, 0, s->rb.ncols);
			return 1;
		}
	}
}
