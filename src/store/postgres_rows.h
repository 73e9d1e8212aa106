/*
 * postgres_rows.h - the PostgreSQL backend's read loop, written once: a
 * result's rows decoded (store/rows.h) into one array (postgres_rows.c).
 */
#ifndef HR_POSTGRES_ROWS_H
#define HR_POSTGRES_ROWS_H

#include <stddef.h>

#include "store/postgres_int.h"
#include "store/rows.h"

/* Row row of r, for a decoder (store/rows.h). */
struct store_cols pg_cols(const PGresult *r, int row);

/* Decodes row 0 of r into row (size bytes, zeroed first): fill's answer;
 * r stays the caller's. */
int pg_row_one(const PGresult *r, store_row_fn fill, void *row, size_t size);

/*
 * Reads every row of r with fill (c->res is r, c->row the row) into a heap
 * array of `size`-byte elements, zeroed; clears r (PQclear) in every case.
 * 0 with *out (caller frees; NULL when no row) and *n rows; else an HR_E*
 * code, the rows given to clear (when not NULL) and freed, *out NULL and
 * *n 0.
 */
int pg_rows_read(PGresult *r, size_t size, store_row_fn fill, void *arg, void (*clear)(void *row),
                 void **out, size_t *n);

#endif
