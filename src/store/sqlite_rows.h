/*
 * sqlite_rows.h - the SQLite backend's read loop, written once: step a
 * reader's prepared statement to its end, each row decoded (store/rows.h)
 * into one more element of a growing array (sqlite_rows.c). The statement
 * and its bindings stay the caller's; so does the reader connection.
 */
#ifndef HR_SQLITE_ROWS_H
#define HR_SQLITE_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "store/rows.h"
#include "store/sqlite_int.h"

/* A pooled reader of s and its cached statement for slot (prepared from sql
 * on first use): 0 with *r (give it back with sq_reader_put) and *q, or
 * sq_reader_get's code, or HR_EIO with the reader given back. */
int sq_read_begin(struct sq_store *s, enum sq_rslot slot, const char *sql, struct sq_reader **r,
                  sqlite3_stmt **q);

/* The current row of q, for a decoder (store/rows.h). */
struct store_cols sq_cols(sqlite3_stmt *q);

/*
 * Steps q (prepared on reader r, bound by the caller) until SQLITE_DONE,
 * reading each row with fill (c->res is q) into an array of `size`-byte
 * elements; resets q. 0 with *out (caller frees; NULL when no row) and *n
 * rows; else an HR_E* code (a step that failed is logged against r's
 * connection by sq_fail), the rows read so far given to clear (when not
 * NULL) and freed, *out NULL and *n 0. Does not give r back.
 */
int sq_rows_read(struct sq_reader *r, sqlite3_stmt *q, size_t size, store_row_fn fill, void *arg,
                 void (*clear)(void *row), void **out, size_t *n);

/* Steps q (prepared on r, bound) for one row and reads its column 0 into
 * *v (untouched when the step fails); resets q. 0 or an HR_E* code. */
int sq_read_i64(struct sq_reader *r, sqlite3_stmt *q, int64_t *v);

#endif
