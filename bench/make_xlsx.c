/*
 * make_xlsx.c - the campaign benchmark's spreadsheet (bench/run.sh, phase
 * campaign), written by libxlsxwriter in constant-memory mode as a business
 * tool would: a header row, then ROWS rows of phone (stored as a number, as
 * Excel does with a typed number), name (unique per row), city (one of 50)
 * and a due date with a date style.
 *
 * usage: make_xlsx OUT.xlsx ROWS
 */
#include <stdio.h>
#include <stdlib.h>

#include <xlsxwriter.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: make_xlsx OUT.xlsx ROWS\n");
		return 2;
	}
	long rows = strtol(argv[2], NULL, 10);
	if (rows < 1 || rows > 1048575) {
		fprintf(stderr, "make_xlsx: ROWS must be 1..1048575\n");
		return 2;
	}
	lxw_workbook_options o = {.constant_memory = LXW_TRUE, .use_zip64 = LXW_TRUE};
	lxw_workbook *wb = workbook_new_opt(argv[1], &o);
	lxw_worksheet *ws = wb ? workbook_add_worksheet(wb, "Customers") : NULL;
	lxw_format *date = wb ? workbook_add_format(wb) : NULL;
	if (!ws || !date) {
		fprintf(stderr, "make_xlsx: cannot create %s\n", argv[1]);
		return 1;
	}
	format_set_num_format(date, "yyyy-mm-dd");
	const char *head[] = {"phone", "name", "city", "due"};
	lxw_error e = LXW_NO_ERROR;
	for (int c = 0; c < 4 && !e; c++)
		e = worksheet_write_string(ws, 0, (lxw_col_t)c, head[c], NULL);
	char name[32], city[16];
	for (long r = 1; r <= rows && !e; r++) {
		snprintf(name, sizeof name, "Customer %ld", r);
		snprintf(city, sizeof city, "City %02ld", r % 50);
		lxw_datetime due = {2024, 3, (int)(1 + r % 28), 0, 0, 0};
		if (!(e = worksheet_write_number(ws, (lxw_row_t)r, 0, 447400000000.0 + (double)r, NULL)) &&
		    !(e = worksheet_write_string(ws, (lxw_row_t)r, 1, name, NULL)) &&
		    !(e = worksheet_write_string(ws, (lxw_row_t)r, 2, city, NULL)))
			e = worksheet_write_datetime(ws, (lxw_row_t)r, 3, &due, date);
	}
	lxw_error ce = workbook_close(wb);
	if (e || ce) {
		fprintf(stderr, "make_xlsx: %s\n", lxw_strerror(e ? e : ce));
		return 1;
	}
	return 0;
}
