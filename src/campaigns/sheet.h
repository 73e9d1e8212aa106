/*
 * sheet.h - streaming readers for the spreadsheets behind bulk campaigns:
 * .xlsx workbooks (libzip + expat) and .csv files (RFC 4180), one row at a time.
 *
 * Design
 * ------
 * Streaming. sheet_next() hands back one row; the cells point into buffers
 * that are reused for the next row, so nothing is allocated per cell and
 * memory does not grow with the file:
 *  - .csv: read() into one fixed 64 KiB buffer; a byte-level state machine
 *    copies each field into the row buffer (quotes and line ends undone).
 *  - .xlsx: the worksheet part is inflated by libzip in 64 KiB chunks and fed
 *    to expat. The rows completed within one chunk are queued and handed out
 *    by the following sheet_next() calls; the next chunk is parsed when the
 *    queue is empty. The queue is bounded (4096 rows, 65536 cells, 1 MiB of
 *    text: a chunk of references to long shared strings can expand a lot);
 *    when it is full the handler suspends expat (XML_StopParser, resumable)
 *    and parsing resumes there once the queue is drained. (Suspending at
 *    every row instead made expat twice as slow.) The zip is never unpacked
 *    to disk or memory as a whole. Expat's own memory is capped per parser
 *    (SHEET_XML_MEM_MAX), which bounds what one huge tag could make it
 *    buffer. An error is reported after the rows parsed before it.
 *
 * Memory bound. Per open sheet: the 64 KiB read buffers, expat (capped), the
 * row queue (bounded above) plus one row being built (at most max_cols cells
 * of at most max_cell_bytes each), the workbook's sheet list and styles
 * (capped counts), and the shared-strings index below (4 bytes a string,
 * bounded by max_sst_bytes). Nothing depends on the number of rows.
 *
 * Shared strings (xlsx). sharedStrings.xml can be tens of MB for a big
 * workbook, so it is parsed once at open and its strings, already decoded
 * (runs joined, phonetic runs dropped, _xHHHH_ escapes undone), are written
 * back to back into an unlinked temporary file (O_TMPFILE, else
 * mkstemp+unlink, in opts.tmpdir). Memory keeps only an array of 4-byte
 * offsets, one per string (the file is kept under 2 GiB). The bytes of the
 * file plus the 4 bytes per string held in memory count against
 * limits.max_sst_bytes. Lookups go through 32 read windows of 16 KiB (least
 * recently used replaced): workbooks list their strings in order of first
 * use, so reading rows in order mostly hits the window read last, and
 * repeated values (a country column) stay cached.
 *
 * Cell text is what the user means, as UTF-8 and NUL-terminated:
 *  - numbers: a value stored as a number is printed from its double. An
 *    integral value below 2^53 prints as plain digits (447911123456, never
 *    4.47911E+11); any other value in the shortest form that reads back to the
 *    same double (%.15g, %.16g or %.17g; "0.1", "1e+20"). Excel keeps only 15
 *    significant digits, so SHEET_LOSSY_NUMBER is set when the shortest form
 *    needs more than 15, or the value is an integer of 16 or more digits
 *    (a card or account number Excel has already rounded): validation can say
 *    "stored as a number, digits lost: format the column as text".
 *  - dates: a number whose cell style is a date format (built-in ids 14-22,
 *    27-36, 45-47, 50-58, or a custom code with y/m/d/h/s or AM/PM outside
 *    quotes, escapes and [..] sections) becomes ISO 8601 showing what the
 *    format shows: "2024-03-05", "14:30:00", "2024-03-05T14:30:00", or for
 *    elapsed formats ([h]:mm) "36:00:00". 1900 dates keep Excel's fake
 *    1900-02-29 (serial 60); workbookPr date1904 switches to the 1904 epoch.
 *    Milliseconds appear only when not zero. A date-formatted number outside
 *    year 1900..9999 (or negative) stays a NUMBER. A t="d" cell (an ISO
 *    date written as text, as some producers do) is a DATE as written.
 *  - booleans: "TRUE" / "FALSE"; errors: the error text ("#N/A").
 *  - strings from xlsx (shared, inline, or a formula's cached text result):
 *    rich-text runs joined, _x000D_ escapes decoded, and leading/trailing
 *    white space of a <t> dropped unless it carries xml:space="preserve", as
 *    Excel reads it (LibreOffice and openpyxl write the attribute whenever it
 *    matters). An empty string is an EMPTY cell. A formula is read through
 *    its cached value; without one it is a FORMULA_NO_VALUE cell.
 *  - csv: every non-empty field is a STRING as written; SHEET_LOSSY_NUMBER is
 *    set on a field that looks like Excel's display of a long number
 *    (4.47911E+11): the digits were lost before the file was saved.
 * Wholly empty rows are skipped; row numbers stay those of the file (Excel's
 * r= attribute; for csv the record number, so a quoted field spanning lines
 * counts once).
 *
 * Errors. Every failure returns a negative HR_E code (herald.h) and fills a
 * struct sheet_err: a code, the part, row, column and byte offset, and a
 * message a business user can act on. After an error the reader is dead:
 * sheet_next() returns the same error again. (The xlsx reader finds an error
 * a chunk ahead; the rows before it are handed out first.)
 *
 * Not thread-safe per sheet: one struct sheet belongs to one thread at a time.
 * Numbers are parsed and printed with strtod/snprintf; Herald never calls
 * setlocale(), so the decimal point is '.'.
 */
#ifndef HR_SHEET_H
#define HR_SHEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"

enum sheet_type {
	SHEET_EMPTY = 0,
	SHEET_STRING,
	SHEET_NUMBER,
	SHEET_BOOL,
	SHEET_DATE,             /* a date, a time of day or a duration, ISO 8601 */
	SHEET_ERROR,            /* an Excel error value: text is "#N/A", "#DIV/0!", ... */
	SHEET_FORMULA_NO_VALUE, /* a formula saved without its result (text "") */
};

/* Cell flags. */
#define SHEET_LOSSY_NUMBER 0x1u /* digits may have been lost (see above) */

struct sheet_cell {
	enum sheet_type type;
	unsigned flags;
	const char *text; /* UTF-8, NUL-terminated; "" for EMPTY */
	size_t len;
};

/* One row: borrowed until the next sheet_next() or sheet_close(). */
struct sheet_row {
	uint32_t num;                   /* row number in the file, 1-based */
	uint32_t ncols;                 /* cells[0..ncols-1]; the last is never EMPTY */
	const struct sheet_cell *cells; /* index 0 = column A */
};

enum sheet_format {
	SHEET_FMT_AUTO = 0, /* by extension (.xlsx/.xlsm, .csv/.txt), else by content */
	SHEET_FMT_XLSX,
	SHEET_FMT_CSV,
};

/* Zero fields take the defaults in brackets. */
struct sheet_limits {
	uint32_t max_rows;         /* rows with a value [1,048,576] */
	uint32_t max_cols;         /* a value past this column is an error [256] */
	uint32_t max_cell_bytes;   /* UTF-8 bytes of one cell [32 KiB] */
	uint64_t max_member_bytes; /* inflated bytes of any one zip member [1 GiB] */
	uint64_t max_sst_bytes;    /* shared strings: temp file + 4 B/string [256 MiB],
	                            * at most 2 GiB - 1 */
	uint64_t max_file_bytes;   /* the file as uploaded [200 MiB] */
};

struct sheet_opts {
	enum sheet_format format;
	const char *sheet;  /* xlsx: sheet name (ASCII case-insensitive); NULL: the
	                     * first visible worksheet. Ignored for csv. */
	char csv_sep;       /* 0: ',' or ';', whichever the first record has more
	                     * of outside quotes (',' on a tie); else this byte */
	const char *tmpdir; /* for the shared-strings temp file; NULL: $TMPDIR or /tmp */
	struct sheet_limits limits;
};

enum sheet_errc {
	SHEET_E_NONE = 0,
	SHEET_E_IO,           /* the file or the temp file could not be read/written */
	SHEET_E_NOMEM,        /* allocation failed */
	SHEET_E_FILE_SIZE,    /* the file is over max_file_bytes */
	SHEET_E_FORMAT,       /* not the format expected: not a zip, .xls, UTF-16 */
	SHEET_E_ENCRYPTED,    /* password-protected workbook */
	SHEET_E_DAMAGED,      /* truncated zip, unreadable member, bad CRC */
	SHEET_E_MISSING_PART, /* workbook, rels, worksheet, ... not in the zip */
	SHEET_E_NO_SHEET,     /* no sheet of that name, or no worksheet at all */
	SHEET_E_INFLATE,      /* a member inflates past max_member_bytes */
	SHEET_E_ZIP_MEMBERS,  /* more zip members than any workbook has */
	SHEET_E_DTD,          /* DOCTYPE / entity declarations: refused */
	SHEET_E_XML,          /* not well-formed XML (line, column) */
	SHEET_E_XML_MEM,      /* one XML token needs more memory than allowed */
	SHEET_E_CONTENT,      /* well-formed but wrong: bad shared-string index,
	                       * rows or cells out of order, a bad number */
	SHEET_E_CELL_REF,     /* a cell reference that is not one (or past XFD) */
	SHEET_E_ROWS,         /* more rows than max_rows */
	SHEET_E_COLS,         /* a value past max_cols */
	SHEET_E_CELL_SIZE,    /* a cell over max_cell_bytes */
	SHEET_E_SST_SIZE,     /* shared strings over max_sst_bytes */
	SHEET_E_UTF8,         /* csv: invalid UTF-8 or a NUL byte */
	SHEET_E_QUOTE,        /* csv: a quoted field never closed */
	SHEET_E_STRAY_QUOTE,  /* csv: a quote inside an unquoted field, or text
	                       * after a closing quote */
};

struct sheet_err {
	enum sheet_errc code;
	char part[96];    /* zip member ("xl/worksheets/sheet1.xml"), "" for csv */
	uint32_t row;     /* row number in the file, 0 when not about a row */
	uint32_t col;     /* 1-based column, 0 when not about a column */
	char col_name[4]; /* "A".."XFD", "" when col is 0 */
	int64_t offset;   /* byte offset in the file (csv) or the inflated
	                   * XML part (xlsx); -1 when not known */
	char msg[512];    /* one or two sentences for the person who uploaded it */
};

struct sheet;

/*
 * Opens path and selects the sheet to read. For xlsx this reads the workbook,
 * its relationships, styles and the whole shared-strings table (into the temp
 * file); the rows are read by sheet_next(). opts may be NULL. On success the
 * caller owns *out and frees it with sheet_close(). Returns 0 or a negative
 * HR_E code (HR_EINVAL bad file, HR_ELIMIT a limit, HR_ENOTFOUND no such
 * sheet, HR_EIO, HR_ENOMEM) with err filled.
 */
int sheet_open(struct sheet **out, const char *path, const struct sheet_opts *opts,
               struct sheet_err *err);

/*
 * The next row with at least one non-empty cell: 1 and *row filled, 0 at the
 * end of the sheet, or a negative HR_E code with err filled (and the same
 * error on every later call).
 */
int sheet_next(struct sheet *s, struct sheet_row *row, struct sheet_err *err);

void sheet_close(struct sheet *s); /* NULL is fine */

/* The selected sheet's name ("" for csv). Borrowed until sheet_close(). */
const char *sheet_name(const struct sheet *s);

/*
 * Calls fn for each worksheet of an xlsx workbook in tab order (chart sheets
 * are not listed); a non-zero return from fn stops the walk and is returned.
 * A csv file has no named sheets: fn is not called and 0 is returned.
 */
int sheet_list(const char *path, const struct sheet_opts *opts,
               int (*fn)(void *ud, const char *name, bool hidden), void *ud, struct sheet_err *err);

/* Column letters for a 0-based column: 0 -> "A", 25 -> "Z", 16383 -> "XFD".
 * Columns past XFD give "?". Returns out. */
const char *sheet_col_name(uint32_t col, char out[4]);

#endif
