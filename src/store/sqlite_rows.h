/*
 * sqlite_rows.h - the SQLite backend's read loop, written once: step a
 * reader's prepared statement to its end, each row read into one more
 * element of a growing array (sqlite_rows.c). The statement and its
 * bindings stay the caller's; so does the reader connection.
 */
#ifndef HR_SQLITE_ROWS_H
#define HR_SQLITE_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "store/sqlite_int.h"

/* Reads the current row of q into row (zeroed before the call); arg is the
 * caller's. 0, or an HR_E* code (HR_ENOMEM) that ends the read. */
typedef int (*sq_row_fn)(sqlite3_stmt *q, void *row, void *arg);

/*
 * Steps q (prepared on reader r, bound by the caller) until SQLITE_DONE,
 * reading each row with fill into an array of `size`-byte elements; resets
 * q. 0 with *out (caller frees; NULL when no row) and *n rows; else an HR_E*
 * code (a step that failed is logged against r's connection by sq_fail),
 * the rows read so far given to clear (when not NULL) and freed, *out NULL
 * and *n 0. Does not give r back.
 */
int sq_rows_read(struct sq_reader *r, sqlite3_stmt *q, size_t size, sq_row_fn fill, void *arg,
                 void (*clear)(void *row), void **out, size_t *n);

/* Steps q (prepared on r, bound) for one row and reads its column 0 into
 * *v (0 when the step fails); resets q. 0 or an HR_E* code. */
int sq_read_i64(struct sq_reader *r, sqlite3_stmt *q, int64_t *v);

/* sq_row_fn for a suppression_row: SELECT tenant_id, channel, recipient,
 * reason, created_at (the list and a recipient's current entries). */
int sq_row_suppression(sqlite3_stmt *q, void *row, void *arg);

#endif
