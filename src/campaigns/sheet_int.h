/*
 * sheet_int.h - what the sheet readers share: the reader struct, the row
 * builder, error filling, and the number and date rules (sheet_num.c), which
 * are exposed here so the unit test can check them table by table.
 */
#ifndef HR_SHEET_INT_H
#define HR_SHEET_INT_H

#include <stdarg.h>

#include "campaigns/sheet.h"

#define SHEET_CHUNK 65536 /* read/inflate/XML feed size */
/* Expat's allocations per parser: its buffer must hold the largest single
 * token (a start tag with all its attributes), so a 500 MB attribute would
 * otherwise make it allocate 500 MB. Real parts need well under 1 MiB. */
#define SHEET_XML_MEM_MAX (16u << 20)
/* A workbook has tens to a few thousand members; libzip keeps an entry per
 * member in memory, so a zip of a million tiny members is refused up front. */
#define SHEET_MAX_ZIP_MEMBERS 10000
#define SHEET_MAX_SHEETS 4096  /* sheets listed in workbook.xml */
#define SHEET_MAX_STYLES 65536 /* cellXfs entries (Excel's limit is 64000) */
#define SHEET_MAX_ROW 1048576u /* Excel's last row */
#define SHEET_MAX_COL 16384u   /* Excel's last column, XFD */

/*
 * Rows being built. Cells are added in increasing column order; text is
 * appended to one buffer and cells keep offsets into it until
 * rowbuf_finish() turns them into pointers (the buffer may move while it
 * grows). Buffers are kept from row to row: no allocation per cell.
 *
 * The current row's cells start at index `base`: the csv reader keeps it 0
 * (one row at a time); the xlsx reader queues the rows of one XML chunk one
 * after another (base = the cells used so far) and hands them out in turn.
 */
struct rowbuf {
	struct sheet_cell *cells;
	size_t *off;
	uint32_t cap;   /* cells allocated */
	uint32_t base;  /* the current row's first cell */
	uint32_t ncols; /* one past its last non-empty cell */
	char *text;
	size_t len, tcap;
	uint32_t col; /* cell being built */
	size_t start; /* its first text byte */
};

struct xlsx;
struct csv;

struct sheet {
	enum sheet_format fmt;
	struct sheet_limits lim;
	const char *tmpdir;
	struct sheet_err err;
	int failed; /* the HR_E code of a sticky error, 0 when none */
	char name[256];
	char part[96];     /* the worksheet's zip member (xlsx), "" for csv */
	uint32_t rows_out; /* non-empty rows returned so far */
	struct rowbuf rb;
	struct xlsx *x;
	struct csv *c;
};

/* Fills s->err and returns hr (negative); the failure becomes sticky.
 * col is 1-based (0: none), off -1 when unknown. */
int sheet_fail(struct sheet *s, int hr, enum sheet_errc code, const char *part, uint32_t row,
               uint32_t col, int64_t off, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* "1,048,576": counts in messages read better with separators. */
const char *sheet_fmt_count(uint64_t n, char out[32]);
/* "200 MB" / "64 KB" / "512 bytes" for limits in messages. */
const char *sheet_fmt_bytes(uint64_t n, char out[32]);

/* Forgets every row: the next starts at cell 0, text offset 0. */
void rowbuf_reset(struct rowbuf *rb);
/* Starts cell col of the current row (> every column begun before in it). */
int rowbuf_begin(struct rowbuf *rb, uint32_t col);
int rowbuf_put(struct rowbuf *rb, const char *p, size_t n);
/* Ends the cell: an empty text becomes no cell at all. */
int rowbuf_end(struct rowbuf *rb, enum sheet_type type, unsigned flags);
/* Fills row from the ncols cells at base (text pointers fixed up): valid
 * until text is added or the buffer reset. */
void rowbuf_finish(struct rowbuf *rb, struct sheet_row *row, uint32_t num, uint32_t base,
                   uint32_t ncols);
void rowbuf_free(struct rowbuf *rb);

int xlsx_open(struct sheet *s, const char *path, const char *want);
int xlsx_next(struct sheet *s, struct sheet_row *row);
void xlsx_close(struct sheet *s);
int xlsx_list(struct sheet *s, const char *path, int (*fn)(void *, const char *, bool), void *ud);

int csv_open(struct sheet *s, const char *path, char sep);
int csv_next(struct sheet *s, struct sheet_row *row);
void csv_close(struct sheet *s);

/* ---- numbers and dates (sheet_num.c) ---- */

#define SHEET_NUM_MAX 40 /* room for any number or date text, with the NUL */

/* How a cell style shows a number. */
enum sheet_numkind {
	SHEET_NK_NUMBER = 0,
	SHEET_NK_DATE,     /* 2024-03-05 */
	SHEET_NK_TIME,     /* 14:30:00 */
	SHEET_NK_DATETIME, /* 2024-03-05T14:30:00 */
	SHEET_NK_ELAPSED,  /* [h]:mm:ss -> 36:00:00 */
};

/* Built-in number format ids (ECMA-376 18.8.30) that show dates or times. */
enum sheet_numkind sheet_numfmt_builtin(unsigned id);
/* A custom format code, by the date/time tokens it has outside quotes,
 * backslash escapes, _x / *x fillers and [..] sections ([h], [mm], [ss]
 * count as elapsed time). */
enum sheet_numkind sheet_numfmt_kind(const char *code);

/*
 * Prints the number written as v (NUL-terminated, as in an xlsx <v>) by the
 * rules in sheet.h into out; sets SHEET_LOSSY_NUMBER in *flags when digits
 * may be lost and the value in *val. Returns the length, or -1 when v is not
 * a finite number.
 */
int sheet_fmt_number(const char *v, size_t n, char out[SHEET_NUM_MAX], unsigned *flags,
                     double *val);
/*
 * Prints an Excel date serial as ISO 8601 for kind (not SHEET_NK_NUMBER).
 * Returns the length, or -1 when the serial is no date (negative, before
 * 1900 or after 9999 where the date shows).
 */
int sheet_fmt_serial(double serial, enum sheet_numkind kind, bool date1904,
                     char out[SHEET_NUM_MAX]);

#endif
