/*
 * fuzz_csv.c - the campaign CSV reader (src/campaigns/sheet_csv.c): the
 * delimiter and encoding checks, the RFC 4180 state machine (quotes, line
 * ends, a quoted field spanning lines), the long-number detection. The
 * input is the file (a memfd, nothing on disk), read to the end or the
 * first error under small limits so the limit paths are reached too.
 * Oracles beyond the sanitizers (sheet.h's promises): row numbers rise,
 * a row's last cell is never empty, every cell is NUL-terminated at its
 * length and within max_cell_bytes, rows stay within max_cols and
 * max_rows, and every error comes with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "campaigns/sheet.h"

#define MAX_ROWS 2000
#define MAX_COLS 32
#define MAX_CELL 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 20)
		return 0;
	int fd = memfd_create("csv", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct sheet_opts o = {
	    .format = SHEET_FMT_CSV,
	    .limits = {.max_rows = MAX_ROWS, .max_cols = MAX_COLS, .max_cell_bytes = MAX_CELL},
	};
	struct sheet *s;
	struct sheet_err err;
	memset(&err, 0, sizeof err);
	int rc = sheet_open(&s, path, &o, &err);
	if (rc == 0) {
		struct sheet_row row;
		uint32_t last = 0, nrows = 0;
		while ((rc = sheet_next(s, &row, &err)) == 1) {
			if (row.num <= last || row.ncols == 0 || row.ncols > MAX_COLS ||
			    row.cells[row.ncols - 1].type == SHEET_EMPTY || ++nrows > MAX_ROWS)
				abort();
			last = row.num;
			for (uint32_t i = 0; i < row.ncols; i++) {
				const struct sheet_cell *c = &row.cells[i];
				if (c->text[c->len] != '\0' || strlen(c->text) != c->len ||
				    c->len > MAX_CELL ||
				    (c->type != SHEET_STRING && c->type != SHEET_EMPTY) ||
				    ((c->type == SHEET_EMPTY) != (c->len == 0)))
					abort();
			}
		}
		/* A dead reader keeps its error. */
		if (rc < 0) {
			struct sheet_err again;
			memset(&again, 0, sizeof again);
			if (sheet_next(s, &row, &again) != rc)
				abort();
		}
		sheet_close(s);
	}
	if (rc < 0 && err.msg[0] == '\0')
		abort();
	close(fd);
	return 0;
}
