/*
 * postgres_rows.c - see postgres_rows.h.
 */
#include <stdlib.h>
#include <string.h>

#include "store/postgres_rows.h"

static void col_text(const struct store_cols *c, int col, char *dst, size_t size)
{
	pg_col_copy(c->res, c->row, col, dst, size);
}

static char *col_dup(const struct store_cols *c, int col, bool *oom)
{
	return pg_col_dup(c->res, c->row, col, oom);
}

static int64_t col_i64(const struct store_cols *c, int col)
{
	return pg_col_i64(c->res, c->row, col);
}

static bool col_null(const struct store_cols *c, int col)
{
	return PQgetisnull(c->res, c->row, col);
}

static bool col_flag(const struct store_cols *c, int col)
{
	return pg_col_bool(c->res, c->row, col);
}

static const struct store_cols_ops pg_cols_ops = {
    .text = col_text, .dup = col_dup, .i64 = col_i64, .null = col_null, .flag = col_flag};

struct store_cols pg_cols(const PGresult *r, int row)
{
	return (struct store_cols){.ops = &pg_cols_ops, .res = r, .row = row};
}

int pg_rows_read(PGresult *r, size_t size, store_row_fn fill, void *arg, void (*clear)(void *row),
                 void **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int rows = PQntuples(r);
	char *v = rows ? calloc((size_t)rows, size) : NULL;
	if (rows && !v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	int rc = 0;
	for (int i = 0; i < rows; i++) {
		const struct store_cols c = pg_cols(r, i);
		if ((rc = fill(&c, v + (size_t)i * size, arg)) != 0)
			break;
	}
	PQclear(r);
	if (rc) {
		for (int i = 0; clear && i < rows; i++)
			clear(v + (size_t)i * size);
		free(v);
		return rc;
	}
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_row_one(const PGresult *r, store_row_fn fill, void *row, size_t size)
{
	const struct store_cols c = pg_cols(r, 0);
	memset(row, 0, size);
	return fill(&c, row, NULL);
}
