/*
 * test_sheet.c - the streaming spreadsheet readers (campaigns/sheet.h) over
 * the fixtures in tests/fixtures/sheets/ (made by make_fixtures.py with
 * openpyxl and zipfile, and by make_lo_fixtures.sh with LibreOffice): every
 * value as the user means it, every hostile file refused with its own error
 * naming part, row, column and byte; then the number and date rules table by
 * table; then a generated 200,000-row csv and xlsx streamed in bounded memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <cmocka.h>
#include <zip.h>

#include "campaigns/sheet.h"
#include "campaigns/sheet_int.h"

/* ---- helpers ---- */

static char g_tmp[64];

static const char *fixture(const char *name)
{
	static char path[512];
	const char *src = getenv("HERALD_SRC");
	if (src)
		snprintf(path, sizeof path, "%s/tests/fixtures/sheets/%s", src, name);
	else /* run by hand from the build directory: find the source by this file */
		snprintf(path, sizeof path, "%.*s/../fixtures/sheets/%s",
		         (int)(strrchr(__FILE__, '/') - __FILE__), __FILE__, name);
	return path;
}

#define MAXR 16
#define MAXC 12
struct cellx {
	enum sheet_type type;
	unsigned flags;
	char text[64];
	size_t len;
};
struct rowx {
	uint32_t num, ncols;
	struct cellx c[MAXC];
};
struct got {
	int rc; /* of sheet_open, or of the sheet_next that ended the reading */
	uint32_t n;
	struct rowx r[MAXR];
	struct sheet_err err;
	char name[64];
};

/* Reads a whole (small) sheet into g, checking the row invariants on the
 * way: text NUL-terminated at len with no NUL inside, EMPTY cells "", the
 * last cell never EMPTY, row numbers increasing; and that an error sticks. */
static void read_all(const char *path, const struct sheet_opts *o, struct got *g)
{
	memset(g, 0, sizeof *g);
	struct sheet *s;
	g->rc = sheet_open(&s, path, o, &g->err);
	if (g->rc != 0) {
		assert_true(g->rc < 0);
		assert_true(g->err.msg[0] != '\0');
		return;
	}
	snprintf(g->name, sizeof g->name, "%s", sheet_name(s));
	struct sheet_row row;
	int rc;
	uint32_t last = 0;
	while ((rc = sheet_next(s, &row, &g->err)) == 1) {
		assert_true(g->n < MAXR);
		assert_true(row.num > last);
		last = row.num;
		assert_true(row.ncols >= 1 && row.ncols <= MAXC);
		assert_int_not_equal(row.cells[row.ncols - 1].type, SHEET_EMPTY);
		struct rowx *r = &g->r[g->n++];
		r->num = row.num;
		r->ncols = row.ncols;
		for (uint32_t i = 0; i < row.ncols; i++) {
			const struct sheet_cell *c = &row.cells[i];
			assert_non_null(c->text);
			assert_int_equal(c->text[c->len], '\0');
			assert_int_equal(strlen(c->text), c->len);
			if (c->type == SHEET_EMPTY)
				assert_int_equal(c->len, 0);
			r->c[i].type = c->type;
			r->c[i].flags = c->flags;
			r->c[i].len = c->len; /* long texts: len, and their start in text */
			snprintf(r->c[i].text, sizeof r->c[i].text, "%s", c->text);
		}
	}
	g->rc = rc;
	if (rc < 0) {
		assert_true(g->err.msg[0] != '\0');
		struct sheet_err again;
		assert_int_equal(sheet_next(s, &row, &again), rc); /* sticky */
		assert_int_equal(again.code, g->err.code);
		assert_string_equal(again.msg, g->err.msg);
	}
	sheet_close(s);
}

static void row_is(const struct got *g, uint32_t i, uint32_t num, uint32_t ncols)
{
	assert_true(i < g->n);
	assert_int_equal(g->r[i].num, num);
	assert_int_equal(g->r[i].ncols, ncols);
}

static void cell_is(const struct got *g, uint32_t i, uint32_t col, enum sheet_type type,
                    const char *text, unsigned flags)
{
	assert_true(i < g->n);
	assert_true(col < g->r[i].ncols);
	const struct cellx *c = &g->r[i].c[col];
	if (c->type != type || strcmp(c->text, text) != 0 || c->flags != flags)
		print_error("row %u col %u: got type %d \"%s\" flags %u, want %d \"%s\" %u\n",
		            g->r[i].num, col, c->type, c->text, c->flags, type, text, flags);
	assert_int_equal(c->type, type);
	assert_string_equal(c->text, text);
	assert_int_equal(c->len, strlen(text));
	assert_int_equal(c->flags, flags);
}

/* A whole row of strings. */
static void strings_are(const struct got *g, uint32_t i, uint32_t num, int n, ...)
{
	row_is(g, i, num, (uint32_t)n);
	va_list ap;
	va_start(ap, n);
	for (int k = 0; k < n; k++)
		cell_is(g, i, (uint32_t)k, SHEET_STRING, va_arg(ap, const char *), 0);
	va_end(ap);
}

static void err_is(const struct got *g, int rc, enum sheet_errc code, const char *part,
                   uint32_t row, const char *col, const char *needle)
{
	if (g->rc != rc || g->err.code != code || !strstr(g->err.msg, needle))
		print_error("got rc %d code %d: %s\n", g->rc, g->err.code, g->err.msg);
	assert_int_equal(g->rc, rc);
	assert_int_equal(g->err.code, code);
	if (part)
		assert_string_equal(g->err.part, part);
	assert_int_equal(g->err.row, row);
	assert_string_equal(g->err.col_name, col);
	assert_non_null(strstr(g->err.msg, needle));
}

static void zip_add_text(zip_t *z, const char *name, const char *text);

static const char *write_tmp(const char *name, const void *data, size_t n)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", g_tmp, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* ---- xlsx: values ---- */

static void test_xlsx_values(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("basic.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "Data"); /* the hidden first sheet is passed over */
	assert_int_equal(g.n, 7);
	strings_are(&g, 0, 1, 5, "phone", "name", "amount", "joined", "active");

	row_is(&g, 1, 2, 5);
	/* Stored as a number, shown by Excel as 4.47911E+11: every digit back. */
	cell_is(&g, 1, 0, SHEET_NUMBER, "447911123456", 0);
	cell_is(&g, 1, 1, SHEET_STRING, "Zo\xc3\xab \xc3\x84", 0);
	cell_is(&g, 1, 2, SHEET_NUMBER, "12.5", 0);
	cell_is(&g, 1, 3, SHEET_DATE, "2024-03-05T14:30:00", 0);
	cell_is(&g, 1, 4, SHEET_BOOL, "TRUE", 0);

	row_is(&g, 2, 3, 5);
	cell_is(&g, 2, 0, SHEET_NUMBER, "4111111111111111", SHEET_LOSSY_NUMBER);
	cell_is(&g, 2, 2, SHEET_NUMBER, "0.1", 0);
	cell_is(&g, 2, 3, SHEET_DATE, "2024-03-05", 0);
	cell_is(&g, 2, 4, SHEET_BOOL, "FALSE", 0);

	/* Rows 4 (empty) and 5 (styled empty cells) are skipped. */
	row_is(&g, 3, 6, 5);
	cell_is(&g, 3, 0, SHEET_FORMULA_NO_VALUE, "", 0); /* openpyxl: no cached value */
	cell_is(&g, 3, 1, SHEET_ERROR, "#N/A", 0);
	cell_is(&g, 3, 2, SHEET_NUMBER, "-3", 0);
	cell_is(&g, 3, 3, SHEET_NUMBER, "1e+20", SHEET_LOSSY_NUMBER);
	cell_is(&g, 3, 4, SHEET_NUMBER, "0.3", 0);

	/* Merged A7:C7: the value in A7, B7 and C7 empty. */
	row_is(&g, 4, 7, 4);
	cell_is(&g, 4, 0, SHEET_STRING, "merged", 0);
	cell_is(&g, 4, 1, SHEET_EMPTY, "", 0);
	cell_is(&g, 4, 2, SHEET_EMPTY, "", 0);
	cell_is(&g, 4, 3, SHEET_NUMBER, "123456789012345", 0); /* 15 digits: all kept */

	row_is(&g, 5, 8, 11);
	for (uint32_t c = 0; c < 10; c++)
		cell_is(&g, 5, c, SHEET_EMPTY, "", 0);
	cell_is(&g, 5, 10, SHEET_STRING, "far", 0);

	row_is(&g, 6, 9, 8);
	cell_is(&g, 6, 0, SHEET_DATE, "09:15:00", 0);            /* h:mm */
	cell_is(&g, 6, 1, SHEET_DATE, "36:00:00", 0);            /* [h]:mm:ss */
	cell_is(&g, 6, 2, SHEET_DATE, "2024-03-05", 0);          /* built-in 14 */
	cell_is(&g, 6, 3, SHEET_DATE, "2024-03-05T12:00:00", 0); /* built-in 22 */
	cell_is(&g, 6, 4, SHEET_NUMBER, "45356", 0);             /* 0.00 */
	cell_is(&g, 6, 5, SHEET_NUMBER, "45356", 0);             /* "day "0: quoted d */
	cell_is(&g, 6, 6, SHEET_NUMBER, "-1", 0);                /* no date before 1900 */
	cell_is(&g, 6, 7, SHEET_DATE, "18:00:00", 0);            /* [Red]h:mm AM/PM */
}

static void test_xlsx_sheets(void **state)
{
	(void)state;
	struct got g;
	struct sheet_opts o = {.sheet = "other"}; /* Excel's names ignore case */
	read_all(fixture("basic.xlsx"), &o, &g);
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "Other");
	assert_int_equal(g.n, 1);
	row_is(&g, 0, 1, 2);
	cell_is(&g, 0, 0, SHEET_STRING, "other", 0);
	cell_is(&g, 0, 1, SHEET_NUMBER, "1", 0);

	o.sheet = "Hidden"; /* hidden sheets are there when asked for by name */
	read_all(fixture("basic.xlsx"), &o, &g);
	assert_int_equal(g.rc, 0);
	strings_are(&g, 0, 1, 1, "not the default sheet");

	o.sheet = "Recipients";
	read_all(fixture("basic.xlsx"), &o, &g);
	err_is(&g, HR_ENOTFOUND, SHEET_E_NO_SHEET, "xl/workbook.xml", 0, "",
	       "no sheet named \"Recipients\". Its sheets are: \"Hidden\", \"Data\", \"Other\".");
}

struct names {
	int n;
	char name[8][32];
	bool hidden[8];
};

static int on_name(void *ud, const char *name, bool hidden)
{
	struct names *nm = ud;
	if (nm->n == 8)
		return -1;
	snprintf(nm->name[nm->n], sizeof nm->name[0], "%s", name);
	nm->hidden[nm->n++] = hidden;
	return 0;
}

static void test_xlsx_list(void **state)
{
	(void)state;
	struct names nm = {0};
	struct sheet_err err;
	assert_int_equal(sheet_list(fixture("basic.xlsx"), NULL, on_name, &nm, &err), 0);
	assert_int_equal(nm.n, 3);
	assert_string_equal(nm.name[0], "Hidden");
	assert_true(nm.hidden[0]);
	assert_string_equal(nm.name[1], "Data");
	assert_false(nm.hidden[1]);
	assert_string_equal(nm.name[2], "Other");
	assert_false(nm.hidden[2]);

	memset(&nm, 0, sizeof nm);
	assert_int_equal(sheet_list(fixture("lo_campaign.xlsx"), NULL, on_name, &nm, &err), 0);
	assert_int_equal(nm.n, 3);
	assert_string_equal(nm.name[1], "Recipients");

	/* A csv file has no named sheets; a damaged workbook says why. */
	memset(&nm, 0, sizeof nm);
	assert_int_equal(sheet_list(fixture("basic.csv"), NULL, on_name, &nm, &err), 0);
	assert_int_equal(nm.n, 0);
	assert_int_equal(sheet_list(fixture("no_workbook.xlsx"), NULL, on_name, &nm, &err),
	                 HR_EINVAL);
	assert_int_equal(err.code, SHEET_E_MISSING_PART);
	assert_int_equal(nm.n, 0);
}

/* The same serials in a 1900 and a 1904 workbook. */
static void test_xlsx_epochs(void **state)
{
	(void)state;
	static const char *const want1900[] = {"2024-03-05",         "1900-02-29", "1900-02-28",
	                                       "1900-03-01",         "1900-01-01", "12:00:00",
	                                       "2024-03-05T18:00:00"};
	static const char *const want1904[] = {"2028-03-06",         "1904-03-01", "1904-02-29",
	                                       "1904-03-02",         "1904-01-02", "12:00:00",
	                                       "2028-03-06T18:00:00"};
	struct got g;
	read_all(fixture("epoch1900.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 7);
	for (uint32_t i = 0; i < 7; i++) {
		row_is(&g, i, i + 1, 1);
		cell_is(&g, i, 0, SHEET_DATE, want1900[i], 0);
	}
	read_all(fixture("epoch1904.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 7);
	for (uint32_t i = 0; i < 7; i++) {
		row_is(&g, i, i + 1, 1);
		cell_is(&g, i, 0, SHEET_DATE, want1904[i], 0);
	}
}

/* Shared strings (rich text, phonetic runs, white space, escapes), inline
 * strings, cached formula results, cells and rows without r=, parts found
 * only through the relationships, an x: namespace prefix. */
static void test_xlsx_strings(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("rich.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "Texts");
	assert_int_equal(g.n, 7);
	strings_are(&g, 0, 1, 5, "plain", "Bold and plain", "Tokyo", "trimmed", "  kept  ");

	row_is(&g, 1, 2, 5);
	cell_is(&g, 1, 0, SHEET_STRING, "line1\r\nline2", 0);
	cell_is(&g, 1, 1, SHEET_STRING, "_x000D_ literal", 0);
	cell_is(&g, 1, 2, SHEET_STRING, "\xf0\x9f\x98\x80 smile", 0);
	cell_is(&g, 1, 3, SHEET_EMPTY, "", 0);
	cell_is(&g, 1, 4, SHEET_STRING, "a & b <c>", 0);

	row_is(&g, 2, 3, 7);
	cell_is(&g, 2, 0, SHEET_STRING, "inline", 0);
	cell_is(&g, 2, 1, SHEET_STRING, "inline ", 0);
	cell_is(&g, 2, 2, SHEET_STRING, "ab", 0); /* t="str": the cached result */
	cell_is(&g, 2, 3, SHEET_NUMBER, "4", 0);  /* formula with its cached value */
	cell_is(&g, 2, 4, SHEET_FORMULA_NO_VALUE, "", 0);
	cell_is(&g, 2, 5, SHEET_ERROR, "#N/A", 0);
	cell_is(&g, 2, 6, SHEET_BOOL, "FALSE", 0);

	row_is(&g, 3, 5, 8);
	cell_is(&g, 3, 0, SHEET_EMPTY, "", 0);
	cell_is(&g, 3, 2, SHEET_NUMBER, "7", 0);
	cell_is(&g, 3, 3, SHEET_NUMBER, "8", 0); /* no r=: after C5 */
	cell_is(&g, 3, 4, SHEET_NUMBER, "0.30000000000000004", SHEET_LOSSY_NUMBER);
	cell_is(&g, 3, 5, SHEET_NUMBER, "447911123456", 0); /* written 4.47911123456E+11 */
	cell_is(&g, 3, 6, SHEET_NUMBER, "0", 0);            /* -0 */
	cell_is(&g, 3, 7, SHEET_NUMBER, "0.001", 0);

	row_is(&g, 4, 6, 2);
	cell_is(&g, 4, 1, SHEET_DATE, "2024-03-05T10:00:00", 0); /* t="d" */
	row_is(&g, 5, 7, 3);
	cell_is(&g, 5, 0, SHEET_STRING, "x\ry", 0);
	cell_is(&g, 5, 1, SHEET_NUMBER, "12.5", 0); /* <v>\n 12.5 </v> */
	cell_is(&g, 5, 2, SHEET_BOOL, "TRUE", 0);
	strings_are(&g, 6, 9, 1, "plain"); /* row 8 held only "": skipped */

	struct sheet_opts o = {.sheet = "Empty"};
	read_all(fixture("rich.xlsx"), &o, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 0);
}

/* Workbooks written by LibreOffice from files written by hand. */
static void test_xlsx_libreoffice(void **state)
{
	(void)state;
	struct got g;
	struct sheet_opts o = {.sheet = "Recipients"};
	read_all(fixture("lo_campaign.xlsx"), &o, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 4);
	strings_are(&g, 0, 1, 6, "phone", "name", "due", "amount", "greeting", "check");

	row_is(&g, 1, 2, 6);
	cell_is(&g, 1, 0, SHEET_NUMBER, "447911123456", 0);
	cell_is(&g, 1, 1, SHEET_STRING, "Zo\xc3\xab", 0);
	cell_is(&g, 1, 2, SHEET_DATE, "2024-03-05", 0);
	cell_is(&g, 1, 3, SHEET_NUMBER, "10", 0);
	cell_is(&g, 1, 4, SHEET_STRING, "Hi Zo\xc3\xab", 0);
	cell_is(&g, 1, 5, SHEET_ERROR, "#DIV/0!", 0);

	row_is(&g, 2, 3, 6);
	cell_is(&g, 2, 0, SHEET_STRING, "447911123457", 0);
	cell_is(&g, 2, 1, SHEET_STRING, "Zo\xc3\xab", 0); /* the same shared string */
	cell_is(&g, 2, 2, SHEET_DATE, "2024-03-05T14:30:00", 0);
	cell_is(&g, 2, 3, SHEET_DATE, "09:15:00", 0);
	cell_is(&g, 2, 4, SHEET_STRING, "line one\nline two", 0);
	cell_is(&g, 2, 5, SHEET_ERROR, "#N/A", 0);

	/* Row 4 has only filled empty cells. */
	row_is(&g, 3, 5, 6);
	cell_is(&g, 3, 0, SHEET_STRING, "  padded ", 0);
	cell_is(&g, 3, 1, SHEET_STRING, "plain bold end", 0); /* three rich runs */
	cell_is(&g, 3, 2, SHEET_BOOL, "TRUE", 0);
	/* LibreOffice, like Excel, kept 15 digits of 4111111111111111. */
	cell_is(&g, 3, 3, SHEET_NUMBER, "4111111111111110", SHEET_LOSSY_NUMBER);
	cell_is(&g, 3, 4, SHEET_NUMBER, "-0.25", 0);
	cell_is(&g, 3, 5, SHEET_NUMBER, "14", 0);

	read_all(fixture("lo_campaign.xlsx"), NULL, &g); /* default: the first sheet */
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "Lookup");
	strings_are(&g, 0, 1, 1, "hidden");

	read_all(fixture("lo_plain.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 4);
	strings_are(&g, 0, 1, 3, "phone", "name", "city");
	row_is(&g, 1, 2, 3);
	cell_is(&g, 1, 0, SHEET_NUMBER, "447911123456", 0);
	cell_is(&g, 1, 1, SHEET_STRING, "Ann", 0);
	cell_is(&g, 1, 2, SHEET_STRING, "London", 0);
	cell_is(&g, 2, 1, SHEET_STRING, "Bob, Jr", 0);
	cell_is(&g, 3, 1, SHEET_STRING, "Ann", 0);
	cell_is(&g, 3, 2, SHEET_STRING, "New\nYork", 0);
}

/* Rows of one XML chunk that expand past the row queue's bound (short
 * references to a 2,000-byte shared string): the parser pauses and resumes
 * with not a row lost. */
static void test_xlsx_queue_full(void **state)
{
	(void)state;
	static char sst[3000], sheet[200000];
	char longtext[2001];
	memset(longtext, 'L', 2000);
	longtext[2000] = '\0';
	snprintf(sst, sizeof sst,
	         "<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><si>"
	         "<t>%s</t></si></sst>",
	         longtext);
	size_t n = (size_t)snprintf(sheet, sizeof sheet,
	                            "<worksheet xmlns=\"http://schemas.openxmlformats.org/"
	                            "spreadsheetml/2006/main\"><sheetData>");
	for (int r = 1; r <= 3000; r++)
		n += (size_t)snprintf(sheet + n, sizeof sheet - n,
		                      "<row><c t=\"s\"><v>0</v></c><c><v>%d</v></c></row>", r);
	n += (size_t)snprintf(sheet + n, sizeof sheet - n, "</sheetData></worksheet>");
	assert_true(n < sizeof sheet - 1);

	char path[256];
	snprintf(path, sizeof path, "%s/queue.xlsx", g_tmp);
	int ze;
	zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
	assert_non_null(z);
	zip_add_text(z, "xl/workbook.xml",
	             "<workbook xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
	             "relationships\"><sheets><sheet name=\"Q\" r:id=\"a\"/></sheets></workbook>");
	zip_add_text(z, "xl/_rels/workbook.xml.rels",
	             "<Relationships><Relationship Id=\"a\" Type=\"x/worksheet\" "
	             "Target=\"q.xml\"/><Relationship Id=\"b\" Type=\"x/sharedStrings\" "
	             "Target=\"s.xml\"/></Relationships>");
	zip_add_text(z, "xl/s.xml", sst);
	zip_add_text(z, "xl/q.xml", sheet);
	assert_int_equal(zip_close(z), 0); /* copies the buffers before they go */

	struct sheet *s;
	struct sheet_err err;
	assert_int_equal(sheet_open(&s, path, NULL, &err), 0);
	struct sheet_row row;
	uint32_t rows = 0;
	int rc;
	char want[16];
	while ((rc = sheet_next(s, &row, &err)) == 1) {
		rows++;
		assert_int_equal(row.num, rows);
		assert_int_equal(row.ncols, 2);
		assert_int_equal(row.cells[0].len, 2000);
		assert_string_equal(row.cells[0].text, longtext);
		snprintf(want, sizeof want, "%u", rows);
		assert_string_equal(row.cells[1].text, want);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(rows, 3000);
	sheet_close(s);
	assert_int_equal(unlink(path), 0);
}

/* ---- xlsx: hostile and damaged files ---- */

static void test_xlsx_not_a_workbook(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("notzip.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "not an Excel .xlsx workbook");
	read_all(fixture("oldxls.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "old Excel 97-2003 workbook (.xls)");
	read_all(fixture("truncated.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_DAMAGED, "", 0, "", "upload may have been cut short");
	/* Other packages and sheets that are no table. */
	read_all(fixture("ods.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "OpenDocument spreadsheet (.ods)");
	read_all(fixture("docx.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "word/document.xml", 0, "",
	       "an Office document but not an Excel workbook");
	read_all(fixture("chart.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_NO_SHEET, "xl/workbook.xml", 0, "",
	       "no worksheet with rows to read");
	read_all(fixture("chart.xlsx"), &(struct sheet_opts){.sheet = "Chart1"}, &g);
	err_is(&g, HR_EINVAL, SHEET_E_NO_SHEET, "xl/workbook.xml", 0, "",
	       "Sheet \"Chart1\" is a chart, not a table of rows");
	read_all(fixture("not_worksheet.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_NO_SHEET, "xl/worksheets/sheet1.xml", 0, "",
	       "is not a table of rows");
	FILE *ods = fopen(fixture("ods.xlsx"), "rb");
	assert_non_null(ods);
	static char obuf[4096];
	size_t on = fread(obuf, 1, sizeof obuf, ods);
	fclose(ods);
	read_all(write_tmp("sheet.csv", obuf, on), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "",
	       "OpenDocument spreadsheet (.ods), not a CSV");
	read_all(fixture("encrypted.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_ENCRYPTED, "xl/worksheets/sheet1.xml", 0, "",
	       "The workbook is password-protected");
	/* Empty files: no workbook; a csv of no rows. */
	read_all(write_tmp("empty.xlsx", "", 0), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "not an Excel .xlsx workbook");
	read_all(write_tmp("empty.csv", "", 0), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 0);
	read_all(write_tmp("empty.csv", "\xef\xbb\xbf\r\n\n", 5), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 0);
	/* A workbook named .csv is caught on the csv side too. */
	const char *p = write_tmp("book.csv", "PK\3\4rest", 8);
	read_all(p, NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "upload it with the .xlsx extension");
	/* With no telling extension the content decides. */
	FILE *in = fopen(fixture("basic.xlsx"), "rb");
	assert_non_null(in);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof buf, in);
	fclose(in);
	assert_true(n > 0 && n < sizeof buf);
	read_all(write_tmp("upload.bin", buf, n), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "Data");
	assert_int_equal(g.n, 7);
}

static void test_xlsx_missing_parts(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("no_workbook.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_MISSING_PART, "xl/workbook.xml", 0, "",
	       "the workbook part (xl/workbook.xml) is missing");
	read_all(fixture("no_rels.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_MISSING_PART, "xl/_rels/workbook.xml.rels", 0, "",
	       "(xl/_rels/workbook.xml.rels) is missing");
	read_all(fixture("no_sheet.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_MISSING_PART, "xl/worksheets/sheet1.xml", 0, "",
	       "sheet \"Sheet1\" (xl/worksheets/sheet1.xml) is missing");
}

static void test_xlsx_bombs(void **state)
{
	(void)state;
	struct got g;
	struct sheet_opts o = {.limits.max_member_bytes = 1 << 20};
	/* 4 MiB of XML in 5 KB: refused by the size in its header... */
	read_all(fixture("bomb.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_INFLATE, "xl/worksheets/sheet1.xml", 0, "",
	       "unpacks to more than 1 MB");
	assert_int_equal(g.err.offset, -1);
	/* ...and when the header lies (600 bytes), by counting what zlib gives. */
	read_all(fixture("bomb_lying.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_INFLATE, "xl/worksheets/sheet1.xml", 0, "",
	       "unpacks to more than 1 MB");
	assert_true(g.err.offset > (1 << 20) && g.err.offset <= (1 << 20) + SHEET_CHUNK);
	assert_int_equal(g.n, 1); /* the row before it was read */
	/* Within the limit the same file is fine. */
	read_all(fixture("bomb_lying.xlsx"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 1);
	cell_is(&g, 0, 0, SHEET_NUMBER, "1", 0);

	/* Billion laughs, and an external entity: any DOCTYPE is refused. */
	read_all(fixture("dtd.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_DTD, "xl/worksheets/sheet1.xml", 0, "",
	       "contains a DOCTYPE declaration");
	read_all(fixture("xxe.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_DTD, "xl/workbook.xml", 0, "", "DOCTYPE");

	/* One 20 MiB start tag: expat's memory cap, not 20 MiB of RAM. */
	read_all(fixture("huge_tag.xlsx"), NULL, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_XML_MEM, "xl/worksheets/sheet1.xml", 0, "",
	       "a single XML element needing more than 16 MB");
}

static void test_xlsx_malformed(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("malformed.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_XML, "xl/worksheets/sheet1.xml", 0, "",
	       "is not well-formed XML (mismatched tag) at line 3, column 32");
	assert_true(g.err.offset > 0);

	read_all(fixture("bad_sst_index.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_CONTENT, "xl/worksheets/sheet1.xml", 1, "B",
	       "Sheet \"Sheet1\", cell B1: the cell refers to shared string \"5\" but the "
	       "workbook has only 2");

	read_all(fixture("rows_order.xlsx"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_CONTENT, "xl/worksheets/sheet1.xml", 2, "",
	       "row 2 appears twice or out of order");
	assert_int_equal(g.n, 1); /* row 3 came first and was handed out */
	row_is(&g, 0, 3, 1);

	/* XFD is the last column Excel has; XFE is no column. */
	struct sheet_opts o = {.limits.max_cols = 16384};
	struct sheet *s;
	struct sheet_err err;
	assert_int_equal(sheet_open(&s, fixture("xfd.xlsx"), &o, &err), 0);
	struct sheet_row row;
	assert_int_equal(sheet_next(s, &row, &err), 1);
	assert_int_equal(row.ncols, 16384);
	assert_int_equal(row.cells[16383].type, SHEET_STRING);
	assert_string_equal(row.cells[16383].text, "last");
	assert_int_equal(row.cells[16382].type, SHEET_EMPTY);
	assert_int_equal(sheet_next(s, &row, &err), HR_EINVAL);
	assert_int_equal(err.code, SHEET_E_CELL_REF);
	assert_int_equal(err.row, 2);
	assert_non_null(strstr(err.msg, "cell reference \"XFE2\" is past column XFD"));
	sheet_close(s);
}

static void test_xlsx_limits(void **state)
{
	(void)state;
	struct got g;
	struct sheet_opts o = {.limits.max_rows = 2};
	read_all(fixture("basic.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_ROWS, "xl/worksheets/sheet2.xml", 3, "",
	       "more than 2 rows of data (row 3 is one too many)");
	assert_int_equal(g.n, 2);

	o = (struct sheet_opts){.limits.max_cols = 5};
	read_all(fixture("basic.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_COLS, "xl/worksheets/sheet2.xml", 8, "K",
	       "Sheet \"Data\", row 8 has a value in column K, past the limit of 5 columns");
	assert_int_equal(g.n, 5); /* rows 1-7 */

	o = (struct sheet_opts){.limits.max_cell_bytes = 4};
	read_all(fixture("basic.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_CELL_SIZE, "xl/worksheets/sheet2.xml", 1, "A",
	       "Sheet \"Data\", cell A1: the cell holds 5 bytes of text, over the limit of 4 "
	       "bytes.");

	o = (struct sheet_opts){.limits.max_file_bytes = 1000};
	read_all(fixture("basic.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_FILE_SIZE, "", 0, "", "over the limit of 1000 bytes");

	/* A shared string over the cell limit: reported at the cell using it. */
	o = (struct sheet_opts){.limits.max_cell_bytes = 10};
	read_all(fixture("rich.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_CELL_SIZE, "xl/data/texts.xml", 1, "B",
	       "Sheet \"Texts\", cell B1: the cell holds more than 10 bytes");

	o = (struct sheet_opts){.limits.max_sst_bytes = 64};
	read_all(fixture("rich.xlsx"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_SST_SIZE, "xl/strings.xml", 0, "",
	       "larger than the limit of 64 bytes");

	/* No place for the shared-strings file: an I/O error, said so. */
	o = (struct sheet_opts){.tmpdir = "/nonexistent-herald-dir"};
	read_all(fixture("rich.xlsx"), &o, &g);
	err_is(&g, HR_EIO, SHEET_E_IO, NULL, 0, "", "temporary copy of the workbook's strings");
}

static void put16(FILE *f, unsigned v)
{
	fputc((int)(v & 0xFF), f);
	fputc((int)(v >> 8 & 0xFF), f);
}

static void put32(FILE *f, uint32_t v)
{
	put16(f, v & 0xFFFF);
	put16(f, v >> 16);
}

static void put64(FILE *f, uint64_t v)
{
	put32(f, (uint32_t)v);
	put32(f, (uint32_t)(v >> 32));
}

/* A real zip of n empty stored members (libzip takes minutes to write
 * 10,000), its end record plain or zip64 (count 0xFFFF, the real count in
 * the zip64 record the locator points to). */
static void write_many_zip(const char *path, uint32_t n, bool zip64)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	char name[16];
	for (uint32_t i = 0; i < n; i++) {
		int len = snprintf(name, sizeof name, "m%05u", i);
		put32(f, 0x04034b50); /* local header */
		put16(f, 10), put16(f, 0), put16(f, 0), put16(f, 0), put16(f, 0);
		put32(f, 0), put32(f, 0), put32(f, 0);
		put16(f, (unsigned)len), put16(f, 0);
		fwrite(name, 1, (size_t)len, f);
	}
	long cd = ftell(f);
	for (uint32_t i = 0; i < n; i++) {
		int len = snprintf(name, sizeof name, "m%05u", i);
		put32(f, 0x02014b50); /* central directory header */
		put16(f, 20), put16(f, 10), put16(f, 0), put16(f, 0), put16(f, 0), put16(f, 0);
		put32(f, 0), put32(f, 0), put32(f, 0);
		put16(f, (unsigned)len), put16(f, 0), put16(f, 0), put16(f, 0), put16(f, 0);
		put32(f, 0);
		put32(f, i * (uint32_t)(30 + len));
		fwrite(name, 1, (size_t)len, f);
	}
	long end = ftell(f);
	if (zip64) {
		put32(f, 0x06064b50); /* zip64 end of central directory record */
		put64(f, 44);
		put16(f, 45), put16(f, 45), put32(f, 0), put32(f, 0);
		put64(f, n), put64(f, n);
		put64(f, (uint64_t)(end - cd)), put64(f, (uint64_t)cd);
		put32(f, 0x07064b50); /* its locator */
		put32(f, 0), put64(f, (uint64_t)end), put32(f, 1);
	}
	put32(f, 0x06054b50); /* end of central directory */
	put16(f, 0), put16(f, 0);
	put16(f, zip64 ? 0xFFFF : n), put16(f, zip64 ? 0xFFFF : n);
	put32(f, (uint32_t)(end - cd)), put32(f, (uint32_t)cd);
	put16(f, 0);
	assert_int_equal(fclose(f), 0);
}

/* A zip of 10,001 members is refused before libzip indexes them. */
static void test_xlsx_zip_members(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof path, "%s/many.xlsx", g_tmp);
	struct got g;
	for (int z64 = 0; z64 < 2; z64++) {
		write_many_zip(path, SHEET_MAX_ZIP_MEMBERS + 1, z64);
		read_all(path, NULL, &g);
		err_is(&g, HR_ELIMIT, SHEET_E_ZIP_MEMBERS, "", 0, "",
		       "The file holds 10,001 parts");
	}
	/* Up to the limit, the same zip is opened (and lacks a workbook). */
	for (int z64 = 0; z64 < 2; z64++) {
		write_many_zip(path, SHEET_MAX_ZIP_MEMBERS, z64);
		read_all(path, NULL, &g);
		err_is(&g, HR_EINVAL, SHEET_E_MISSING_PART, "xl/workbook.xml", 0, "",
		       "the workbook part (xl/workbook.xml) is missing");
	}
	assert_int_equal(unlink(path), 0);
}

/* ---- csv ---- */

static void test_csv_values(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("basic.csv"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_string_equal(g.name, "");
	assert_int_equal(g.n, 5);
	strings_are(&g, 0, 1, 3, "phone", "name", "note"); /* the BOM is gone */
	strings_are(&g, 1, 2, 3, "447911123456", "Zo\xc3\xab", "Hello, world");
	strings_are(&g, 2, 3, 3, "447911123457", "Bob \"The Builder\"", "line one\nline two");
	/* The line break inside quotes did not start a row: this is row 4. */
	strings_are(&g, 3, 4, 3, "447911123458", "Ann", "after");
	/* Row 5 (empty) and 6 (",,") are skipped; 7 has no final line break. */
	row_is(&g, 4, 7, 3);
	cell_is(&g, 4, 0, SHEET_STRING, "447911123459", 0);
	cell_is(&g, 4, 1, SHEET_EMPTY, "", 0);
	cell_is(&g, 4, 2, SHEET_STRING, "x", 0);

	read_all(fixture("semicolon.csv"), NULL, &g); /* ';' detected */
	assert_int_equal(g.rc, 0);
	strings_are(&g, 0, 1, 3, "phone", "amount", "name");
	strings_are(&g, 1, 2, 3, "447911123456", "12,5", "Smith; John");

	read_all(fixture("mixed_eol.csv"), NULL, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 4);
	strings_are(&g, 0, 1, 2, "a", "b");
	strings_are(&g, 1, 2, 2, "c", "d");
	strings_are(&g, 2, 3, 2, "e", "f");
	strings_are(&g, 3, 4, 2, "x\ny", "z");

	/* Excel's display of a long number, saved as text: flagged. */
	read_all(fixture("sci.csv"), NULL, &g);
	assert_int_equal(g.rc, 0);
	row_is(&g, 1, 2, 1);
	cell_is(&g, 1, 0, SHEET_STRING, "4.47911E+11", SHEET_LOSSY_NUMBER);
	cell_is(&g, 2, 0, SHEET_STRING, "447911123456", 0);
}

static void test_csv_separators(void **state)
{
	(void)state;
	struct got g;
	/* The first record decides, outside quotes: 2 ';' against 1 ','. */
	const char *p = write_tmp("sep1.csv", "\"a,b,c,d\";x,y;z\n1;2,3;4\n", 24);
	read_all(p, NULL, &g);
	assert_int_equal(g.rc, 0);
	strings_are(&g, 0, 1, 3, "a,b,c,d", "x,y", "z");
	strings_are(&g, 1, 2, 3, "1", "2,3", "4");
	/* Given, it wins: a tab. */
	p = write_tmp("sep2.txt", "a\tb,c\n", 6);
	struct sheet_opts o = {.csv_sep = '\t'};
	read_all(p, &o, &g);
	assert_int_equal(g.rc, 0);
	strings_are(&g, 0, 1, 2, "a", "b,c");
	/* A single column: ','. */
	p = write_tmp("sep3.csv", "phone\n1\n", 8);
	read_all(p, NULL, &g);
	assert_int_equal(g.rc, 0);
	strings_are(&g, 1, 2, 1, "1");
}

static void test_csv_errors(void **state)
{
	(void)state;
	struct got g;
	read_all(fixture("latin1.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_UTF8, "", 2, "B",
	       "Row 2, column B: the text is not valid UTF-8 (byte 26 of the file)");
	assert_int_equal(g.err.offset, 26);
	assert_int_equal(g.n, 1);

	read_all(fixture("unterminated.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_QUOTE, "", 3, "B",
	       "Row 3, column B: the quoted field that starts here (line 3, byte 10) is never "
	       "closed");
	assert_int_equal(g.err.offset, 10);
	assert_int_equal(g.n, 2);

	read_all(fixture("stray_quote.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_STRAY_QUOTE, "", 2, "B",
	       "Row 2, column B: a quote (\") appears in the middle of a field");
	assert_int_equal(g.err.offset, 8);

	read_all(fixture("after_quote.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_STRAY_QUOTE, "", 2, "A",
	       "Row 2, column A: there is text after the closing quote");
	assert_int_equal(g.err.offset, 7);

	read_all(fixture("utf16.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_FORMAT, "", 0, "", "UTF-16");

	read_all(fixture("nul.csv"), NULL, &g);
	err_is(&g, HR_EINVAL, SHEET_E_UTF8, "", 2, "B", "NUL byte (byte 6)");

	/* Bad UTF-8 of every kind: overlong, surrogate, past U+10FFFF, cut short. */
	static const char *const bad[] = {"a\n\xc0\xaf\n", "a\n\xed\xa0\x80\n",
	                                  "a\n\xf4\x90\x80\x80\n", "a\n\xe2\x82\n", "a\n\xe2\x82"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		read_all(write_tmp("bad.csv", bad[i], strlen(bad[i])), NULL, &g);
		err_is(&g, HR_EINVAL, SHEET_E_UTF8, "", 2, "A", "not valid UTF-8 (byte 2 ");
	}
}

static void test_csv_limits(void **state)
{
	(void)state;
	struct got g;
	struct sheet_opts o = {.limits.max_rows = 3};
	read_all(fixture("basic.csv"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_ROWS, "", 4, "", "more than 3 rows of data (row 4 is one");
	assert_int_equal(g.n, 3);

	o = (struct sheet_opts){.limits.max_cols = 2};
	read_all(fixture("basic.csv"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_COLS, "", 1, "C",
	       "Row 1 has a value in column C, past the limit of 2 columns");
	/* Empty fields past the limit are no value. */
	read_all(write_tmp("wide.csv", "a,b,,,,\n", 8), &o, &g);
	assert_int_equal(g.rc, 0);
	strings_are(&g, 0, 1, 2, "a", "b");

	o = (struct sheet_opts){.limits.max_cell_bytes = 12};
	read_all(fixture("basic.csv"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_CELL_SIZE, "", 3, "B",
	       "Row 3, column B: the cell holds more than 12 bytes of text");
	/* An unclosed quote usually shows as a huge cell: the message says so. */
	read_all(fixture("unterminated.csv"), &(struct sheet_opts){.limits.max_cell_bytes = 6}, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_CELL_SIZE, "", 3, "B",
	       "its closing quote is probably missing: the quoted field starts at line 3");

	o = (struct sheet_opts){.limits.max_file_bytes = 100};
	read_all(fixture("basic.csv"), &o, &g);
	err_is(&g, HR_ELIMIT, SHEET_E_FILE_SIZE, "", 0, "", "over the limit of 100 bytes");
}

/* Where the 64 KiB buffer ends: a character, a CRLF, a doubled quote and a
 * quoted CRLF split across two reads. */
static void test_csv_buffer_edges(void **state)
{
	(void)state;
	static char buf[4 * SHEET_CHUNK];
	struct got g;
	size_t n;
	/* "é" (C3 A9) with its first byte last in the buffer. */
	n = 0;
	n += (size_t)snprintf(buf + n, sizeof buf - n, "h\n");
	memset(buf + n, 'x', SHEET_CHUNK - 1 - n - 1);
	n = SHEET_CHUNK - 2;
	buf[n++] = ',';
	buf[n++] = '\xc3';
	buf[n++] = '\xa9';
	n += (size_t)snprintf(buf + n, sizeof buf - n, "\r\n\"q\"\"uote\",\"a\r\nb\"\n");
	read_all(write_tmp("edge1.csv", buf, n),
	         &(struct sheet_opts){.limits.max_cell_bytes = 1 << 17}, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 3);
	row_is(&g, 1, 2, 2);
	assert_int_equal(g.r[1].c[0].len, SHEET_CHUNK - 4);
	cell_is(&g, 1, 1, SHEET_STRING, "\xc3\xa9", 0);
	strings_are(&g, 2, 3, 2, "q\"uote", "a\nb");

	/* A CRLF and a doubled quote inside a quoted field, split by the
	 * boundary: the field is y...y + "\n" or "\"" + "z". */
	static const char *const tails[] = {"\r\n", "\"\""};
	static const char *const ends[] = {"\nz", "\"z"};
	for (size_t t = 0; t < 2; t++) {
		buf[0] = '"';
		memset(buf + 1, 'y', SHEET_CHUNK - 2);
		n = SHEET_CHUNK - 1;
		memcpy(buf + n, tails[t], 2);
		n += 2;
		n += (size_t)snprintf(buf + n, sizeof buf - n, "z\"\nnext\n");
		read_all(write_tmp("edge2.csv", buf, n),
		         &(struct sheet_opts){.limits.max_cell_bytes = 1 << 17}, &g);
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.n, 2);
		row_is(&g, 0, 1, 1);
		assert_int_equal(g.r[0].c[0].len, SHEET_CHUNK);
		assert_memory_equal(g.r[0].c[0].text, "yyyy", 4);
		strings_are(&g, 1, 2, 1, "next");
	}
	/* The tail ends are checked in full with a short field. */
	for (size_t t = 0; t < 2; t++) {
		n = (size_t)snprintf(buf, sizeof buf, "\"y%sz\"\n", tails[t]);
		read_all(write_tmp("edge2.csv", buf, n), NULL, &g);
		assert_int_equal(g.rc, 0);
		char want[8];
		snprintf(want, sizeof want, "y%s", ends[t]);
		strings_are(&g, 0, 1, 1, want);
	}
	/* A record's CRLF split: the LF is not an empty row 2. */
	memset(buf, 'y', SHEET_CHUNK - 1);
	n = SHEET_CHUNK - 1;
	n += (size_t)snprintf(buf + n, sizeof buf - n, "\r\nnext\r\n");
	read_all(write_tmp("edge2.csv", buf, n),
	         &(struct sheet_opts){.limits.max_cell_bytes = 1 << 17}, &g);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.r[0].c[0].len, SHEET_CHUNK - 1);
	strings_are(&g, 1, 2, 1, "next");
}

/* ---- numbers and dates, table by table ---- */

static void test_fmt_number(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
		unsigned flags;
	} t[] = {
	    {"447911123456", "447911123456", 0},
	    {"4.47911123456E+11", "447911123456", 0},
	    {"447911123456.0", "447911123456", 0},
	    {"0", "0", 0},
	    {"-0", "0", 0},
	    {"-0.0", "0", 0},
	    {"-3", "-3", 0},
	    {"0.1", "0.1", 0},
	    {"12.5", "12.5", 0},
	    {"123.456", "123.456", 0},
	    {"1.5E-7", "1.5e-07", 0},
	    {"999999999999999", "999999999999999", 0},                    /* 15 digits */
	    {"1000000000000000", "1000000000000000", SHEET_LOSSY_NUMBER}, /* 16 */
	    {"4111111111111111", "4111111111111111", SHEET_LOSSY_NUMBER},
	    {"9007199254740993", "9007199254740992", SHEET_LOSSY_NUMBER}, /* past 2^53 */
	    {"1e20", "1e+20", SHEET_LOSSY_NUMBER},
	    {"0.30000000000000004", "0.30000000000000004", SHEET_LOSSY_NUMBER},
	    {"3.1415926535897931", "3.141592653589793", SHEET_LOSSY_NUMBER}, /* 16 digits */
	    {"0.333333333333333", "0.333333333333333", 0},                   /* 15 */
	    {"-1234567.25", "-1234567.25", 0},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char out[SHEET_NUM_MAX];
		unsigned flags = 0;
		double d;
		int n = sheet_fmt_number(t[i].in, strlen(t[i].in), out, &flags, &d);
		if (n < 0 || strcmp(out, t[i].out) != 0 || flags != t[i].flags)
			print_error("%s: got %d \"%s\" %u\n", t[i].in, n, n >= 0 ? out : "", flags);
		assert_int_equal(n, (int)strlen(t[i].out));
		assert_string_equal(out, t[i].out);
		assert_int_equal(flags, t[i].flags);
	}
	static const char *const bad[] = {"",    "-",   "abc", "1e999", "0x10", " 1",
	                                  "nan", "inf", "1,5", "1.2.3", "--1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[SHEET_NUM_MAX];
		unsigned flags = 0;
		double d;
		assert_int_equal(sheet_fmt_number(bad[i], strlen(bad[i]), out, &flags, &d), -1);
	}
}

static void test_numfmt_kind(void **state)
{
	(void)state;
	static const struct {
		const char *code;
		enum sheet_numkind kind;
	} t[] = {
	    {"yyyy-mm-dd", SHEET_NK_DATE},
	    {"dd/mm/yyyy", SHEET_NK_DATE},
	    {"yyyy\\-mm\\-dd", SHEET_NK_DATE},
	    {"[$-409]mmmm d, yyyy", SHEET_NK_DATE},
	    {"mmm-yy", SHEET_NK_DATE},
	    {"m", SHEET_NK_DATE}, /* alone, m is a month */
	    {"h:mm", SHEET_NK_TIME},
	    {"mm:ss", SHEET_NK_TIME}, /* before s, m is minutes */
	    {"h:mm AM/PM", SHEET_NK_TIME},
	    {"[Red]h:mm a/p", SHEET_NK_TIME},
	    {"dd/mm/yyyy hh:mm", SHEET_NK_DATETIME},
	    {"yyyy-mm-dd\"T\"hh:mm:ss", SHEET_NK_DATETIME},
	    {"[h]:mm:ss", SHEET_NK_ELAPSED},
	    {"[mm]:ss", SHEET_NK_ELAPSED},
	    {"General", SHEET_NK_NUMBER},
	    {"0.00", SHEET_NK_NUMBER},
	    {"0.00E+00", SHEET_NK_NUMBER},
	    {"@", SHEET_NK_NUMBER},
	    {"\"day \"0", SHEET_NK_NUMBER},
	    {"#,##0 \"hrs\"", SHEET_NK_NUMBER},
	    {"[Red]0.00;[Blue]-0.00", SHEET_NK_NUMBER},
	    {"_(* #,##0_);_(* (#,##0);_(* \"-\"_);_(@_)", SHEET_NK_NUMBER},
	    {"0\\d", SHEET_NK_NUMBER},
	    {"[$USD] #,##0", SHEET_NK_NUMBER},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (sheet_numfmt_kind(t[i].code) != t[i].kind)
			print_error("%s: got %d\n", t[i].code, sheet_numfmt_kind(t[i].code));
		assert_int_equal(sheet_numfmt_kind(t[i].code), t[i].kind);
	}
	for (unsigned id = 0; id < 200; id++) {
		enum sheet_numkind want = SHEET_NK_NUMBER;
		if ((id >= 14 && id <= 17) || (id >= 27 && id <= 31) || id == 36 ||
		    (id >= 50 && id <= 58))
			want = SHEET_NK_DATE;
		else if ((id >= 18 && id <= 21) || id == 45 || id == 47 || (id >= 32 && id <= 35))
			want = SHEET_NK_TIME;
		else if (id == 22)
			want = SHEET_NK_DATETIME;
		else if (id == 46)
			want = SHEET_NK_ELAPSED;
		assert_int_equal(sheet_numfmt_builtin(id), want);
	}
}

static void test_fmt_serial(void **state)
{
	(void)state;
	static const struct {
		double serial;
		enum sheet_numkind kind;
		bool d1904;
		const char *out; /* NULL: no date */
	} t[] = {
	    {1, SHEET_NK_DATE, false, "1900-01-01"},
	    {59, SHEET_NK_DATE, false, "1900-02-28"},
	    {60, SHEET_NK_DATE, false, "1900-02-29"}, /* Excel's day that never was */
	    {61, SHEET_NK_DATE, false, "1900-03-01"},
	    {45356, SHEET_NK_DATE, false, "2024-03-05"},
	    {45356, SHEET_NK_DATE, true, "2028-03-06"},
	    {0, SHEET_NK_DATE, true, "1904-01-01"},
	    {2958465, SHEET_NK_DATE, false, "9999-12-31"},
	    {2958466, SHEET_NK_DATE, false, NULL},
	    {0, SHEET_NK_DATE, false, NULL}, /* Excel's "1900-01-00" */
	    {-1, SHEET_NK_DATE, false, NULL},
	    {-0.5, SHEET_NK_TIME, false, NULL},
	    {0.604166666666667, SHEET_NK_TIME, false, "14:30:00"},
	    {45356.604166666664, SHEET_NK_DATETIME, false, "2024-03-05T14:30:00"},
	    {0.5 + 1.0 / 86400000, SHEET_NK_TIME, false, "12:00:00.001"},
	    {0.999999999, SHEET_NK_DATETIME, false, "1900-01-01T00:00:00"}, /* rounds up */
	    {1.5, SHEET_NK_ELAPSED, false, "36:00:00"},
	    {5, SHEET_NK_ELAPSED, false, "120:00:00"},
	    {45356.75, SHEET_NK_TIME, false, "18:00:00"}, /* a time format shows the time */
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char out[SHEET_NUM_MAX];
		int n = sheet_fmt_serial(t[i].serial, t[i].kind, t[i].d1904, out);
		if (!t[i].out) {
			assert_int_equal(n, -1);
			continue;
		}
		if (n < 0 || strcmp(out, t[i].out) != 0)
			print_error("%.17g: got %d \"%s\"\n", t[i].serial, n, n >= 0 ? out : "");
		assert_int_equal(n, (int)strlen(t[i].out));
		assert_string_equal(out, t[i].out);
	}
}

static void test_col_name(void **state)
{
	(void)state;
	static const struct {
		uint32_t col;
		const char *name;
	} t[] = {{0, "A"},    {25, "Z"},    {26, "AA"},     {51, "AZ"},
	         {701, "ZZ"}, {702, "AAA"}, {16383, "XFD"}, {16384, "?"}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char out[4];
		assert_string_equal(sheet_col_name(t[i].col, out), t[i].name);
	}
}

/* ---- large files: streamed in bounded memory ---- */

#define BIG_ROWS 200000

/* Peak resident memory since the last reset_peak(), in kB. */
static long peak_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/* Linux 4.0+: writing 5 to clear_refs resets VmHWM to the current RSS, so
 * the peak measured next is the reader's, not the generator's before it. */
static void reset_peak(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	assert_non_null(f);
	assert_true(fputs("5", f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static const char *big_message =
    "Dear customer, your statement for March is ready: see the app for details.";

static void make_big_csv(const char *path)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "phone,name,city,message\r\n");
	for (int i = 0; i < BIG_ROWS; i++)
		fprintf(f, "%d,Customer %d,City %02d,\"%s %d\"\r\n", 447900000 + i, i, i % 50,
		        big_message, i);
	assert_int_equal(fclose(f), 0);
}

static void zip_add_text(zip_t *z, const char *name, const char *text)
{
	zip_source_t *src = zip_source_buffer(z, text, strlen(text), 0);
	assert_non_null(src);
	assert_true(zip_file_add(z, name, src, ZIP_FL_ENC_UTF_8) >= 0);
}

static void zip_add_file(zip_t *z, const char *name, const char *path)
{
	zip_source_t *src = zip_source_file(z, path, 0, -1);
	assert_non_null(src);
	assert_true(zip_file_add(z, name, src, ZIP_FL_ENC_UTF_8) >= 0);
}

/* The same rows as make_big_csv, as Excel would store them: phone a number,
 * name and message shared strings (unique), city a shared string of 50. */
static void make_big_xlsx(const char *path)
{
	char sheet[256], sst[256];
	snprintf(sheet, sizeof sheet, "%s/big-sheet.xml", g_tmp);
	snprintf(sst, sizeof sst, "%s/big-sst.xml", g_tmp);
	FILE *f = fopen(sst, "w");
	assert_non_null(f);
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sst xmlns=\"http://schemas."
	           "openxmlformats.org/spreadsheetml/2006/main\"><si><t>phone</t></si><si><t>"
	           "name</t></si><si><t>city</t></si><si><t>message</t></si>");
	for (int i = 0; i < 50; i++)
		fprintf(f, "<si><t>City %02d</t></si>", i);
	for (int i = 0; i < BIG_ROWS; i++) /* strings 54 + 2i and 55 + 2i */
		fprintf(f, "<si><t>Customer %d</t></si><si><t>%s %d</t></si>", i, big_message, i);
	fprintf(f, "</sst>");
	assert_int_equal(fclose(f), 0);

	f = fopen(sheet, "w");
	assert_non_null(f);
	fprintf(f,
	        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<worksheet xmlns=\"http://schemas."
	        "openxmlformats.org/spreadsheetml/2006/main\"><sheetData><row r=\"1\"><c r=\"A1\" "
	        "t=\"s\"><v>0</v></c><c r=\"B1\" t=\"s\"><v>1</v></c><c r=\"C1\" t=\"s\"><v>2</v>"
	        "</c><c r=\"D1\" t=\"s\"><v>3</v></c></row>");
	for (int i = 0; i < BIG_ROWS; i++) {
		int r = i + 2;
		fprintf(
		    f,
		    "<row r=\"%d\"><c r=\"A%d\"><v>%d</v></c><c r=\"B%d\" t=\"s\"><v>%d</v></c>"
		    "<c r=\"C%d\" t=\"s\"><v>%d</v></c><c r=\"D%d\" t=\"s\"><v>%d</v></c></row>",
		    r, r, 447900000 + i, r, 54 + 2 * i, r, 4 + i % 50, r, 55 + 2 * i);
	}
	fprintf(f, "</sheetData></worksheet>");
	assert_int_equal(fclose(f), 0);

	int ze;
	zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
	assert_non_null(z);
	zip_add_text(z, "[Content_Types].xml",
	             "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/"
	             "package/2006/content-types\"/>");
	zip_add_text(z, "_rels/.rels",
	             "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/"
	             "relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas."
	             "openxmlformats.org/officeDocument/2006/relationships/officeDocument\" "
	             "Target=\"xl/workbook.xml\"/></Relationships>");
	zip_add_text(
	    z, "xl/workbook.xml",
	    "<workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" "
	    "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
	    "relationships\"><sheets><sheet name=\"Big\" sheetId=\"1\" r:id=\"rId1\"/>"
	    "</sheets></workbook>");
	zip_add_text(z, "xl/_rels/workbook.xml.rels",
	             "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/"
	             "relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas."
	             "openxmlformats.org/officeDocument/2006/relationships/worksheet\" "
	             "Target=\"worksheets/sheet1.xml\"/><Relationship Id=\"rId2\" "
	             "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
	             "sharedStrings\" Target=\"sharedStrings.xml\"/></Relationships>");
	zip_add_file(z, "xl/sharedStrings.xml", sst);
	zip_add_file(z, "xl/worksheets/sheet1.xml", sheet);
	assert_int_equal(zip_close(z), 0);
	assert_int_equal(unlink(sheet), 0);
	assert_int_equal(unlink(sst), 0);
}

/* Files in g_tmp: the reader must leave none (its temp file is unlinked). */
static int count_files(void)
{
	DIR *d = opendir(g_tmp);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Reads all of path checking the rows against the generator; returns the
 * peak memory growth in kB while reading. */
static long stream_big(const char *path, uint64_t *bytes_seen)
{
	struct sheet_opts o = {.tmpdir = g_tmp, .limits.max_file_bytes = 1u << 30};
	int files = count_files();
	/* Give freed heap pages back first: otherwise the reader's buffers may
	 * land on pages the generator left resident and not show at all. */
	malloc_trim(0);
	long before = rss_kb();
	reset_peak();
	struct sheet *s;
	struct sheet_err err;
	assert_int_equal(sheet_open(&s, path, &o, &err), 0);
	assert_int_equal(count_files(), files);
	struct sheet_row row;
	uint32_t n = 0;
	char want[160];
	*bytes_seen = 0;
	int rc;
	while ((rc = sheet_next(s, &row, &err)) == 1) {
		n++;
		assert_int_equal(row.num, n);
		assert_int_equal(row.ncols, 4);
		for (uint32_t c = 0; c < 4; c++)
			*bytes_seen += row.cells[c].len;
		if (n == 1 || n % 49999 == 0 || n == BIG_ROWS + 1) {
			int i = (int)n - 2;
			if (n == 1) {
				assert_string_equal(row.cells[0].text, "phone");
				assert_string_equal(row.cells[3].text, "message");
				continue;
			}
			snprintf(want, sizeof want, "%d", 447900000 + i);
			assert_string_equal(row.cells[0].text, want);
			snprintf(want, sizeof want, "Customer %d", i);
			assert_string_equal(row.cells[1].text, want);
			snprintf(want, sizeof want, "City %02d", i % 50);
			assert_string_equal(row.cells[2].text, want);
			snprintf(want, sizeof want, "%s %d", big_message, i);
			assert_string_equal(row.cells[3].text, want);
			assert_int_equal(row.cells[3].type, SHEET_STRING);
		}
	}
	if (rc < 0)
		print_error("%s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_int_equal(n, BIG_ROWS + 1);
	long grew = peak_kb() - before;
	sheet_close(s);
	return grew;
}

static void test_big_files(void **state)
{
	(void)state;
	char csv[256], xlsx[256];
	snprintf(csv, sizeof csv, "%s/big.csv", g_tmp);
	snprintf(xlsx, sizeof xlsx, "%s/big.xlsx", g_tmp);
	make_big_csv(csv);
	make_big_xlsx(xlsx);
	uint64_t csv_bytes, xlsx_bytes;
	long csv_kb = stream_big(csv, &csv_bytes);
	long xlsx_kb = stream_big(xlsx, &xlsx_bytes);
	assert_int_equal(csv_bytes, xlsx_bytes); /* the same text either way */
	/* The csv is 24 MB, the workbook's XML 60 MB in all (a 400,000-entry
	 * shared-strings table among it): a reader that held either would grow
	 * far past these bounds. The xlsx reader's share that does grow with
	 * the file is the strings index, 4 bytes a string: 1.6 MB here. */
	print_message("big: %u rows, %llu text bytes; memory grew %ld kB (csv), %ld kB (xlsx)\n",
	              BIG_ROWS + 1, (unsigned long long)csv_bytes, csv_kb, xlsx_kb);
	assert_true(csv_bytes > 20u << 20);
	assert_true(csv_kb < 4 * 1024);
	assert_true(xlsx_kb < 12 * 1024);
	assert_int_equal(unlink(csv), 0);
	assert_int_equal(unlink(xlsx), 0);
}

static int group_setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(g_tmp, sizeof g_tmp, "%s/test_sheet-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(g_tmp) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	/* g_tmp is this test's own mkdtemp directory: all in it is ours. */
	DIR *d = opendir(g_tmp);
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
		unlink(p);
	}
	closedir(d);
	return rmdir(g_tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xlsx_values),        cmocka_unit_test(test_xlsx_sheets),
	    cmocka_unit_test(test_xlsx_list),          cmocka_unit_test(test_xlsx_epochs),
	    cmocka_unit_test(test_xlsx_strings),       cmocka_unit_test(test_xlsx_libreoffice),
	    cmocka_unit_test(test_xlsx_queue_full),    cmocka_unit_test(test_xlsx_not_a_workbook),
	    cmocka_unit_test(test_xlsx_missing_parts), cmocka_unit_test(test_xlsx_bombs),
	    cmocka_unit_test(test_xlsx_malformed),     cmocka_unit_test(test_xlsx_limits),
	    cmocka_unit_test(test_xlsx_zip_members),   cmocka_unit_test(test_csv_values),
	    cmocka_unit_test(test_csv_separators),     cmocka_unit_test(test_csv_errors),
	    cmocka_unit_test(test_csv_limits),         cmocka_unit_test(test_csv_buffer_edges),
	    cmocka_unit_test(test_fmt_number),         cmocka_unit_test(test_numfmt_kind),
	    cmocka_unit_test(test_fmt_serial),         cmocka_unit_test(test_col_name),
	    cmocka_unit_test(test_big_files),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
