/*
 * sqlite_rows.c - see sqlite_rows.h.
 */
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

static void col_text(const struct store_cols *c, int col, char *dst, size_t size)
{
	sq_col_copy((sqlite3_stmt *)c->res, col, dst, size);
}

static char *col_dup(const struct store_cols *c, int col, bool *oom)
{
	return sq_col_dup((sqlite3_stmt *)c->res, col, oom);
}

static int64_t col_i64(const struct store_cols *c, int col)
{
	return sqlite3_column_int64((sqlite3_stmt *)c->res, col);
}

static bool col_null(const struct store_cols *c, int col)
{
	return sqlite3_column_type((sqlite3_stmt *)c->res, col) == SQLITE_NULL;
}

static bool col_flag(const struct store_cols *c, int col)
{
	return sqlite3_column_int((sqlite3_stmt *)c->res, col) != 0;
}

static const struct store_cols_ops sq_cols_ops = {
    .text = col_text, .dup = col_dup, .i64 = col_i64, .null = col_null, .flag = col_flag};

struct store_cols sq_cols(sqlite3_stmt *q)
{
	return (struct store_cols){.ops = &sq_cols_ops, .res = q};
}

int sq_read_begin(struct sq_store *s, enum sq_rslot slot, const char *sql, struct sq_reader **r,
                  sqlite3_stmt **q)
{
	*q = NULL;
	int rc = sq_reader_get(s, r);
	if (rc)
		return rc;
	*q = sq_rstmt(*r, slot, sql);
	if (!*q) {
		sq_reader_put(s, *r);
		return HR_EIO;
	}
	return 0;
}

int sq_rows_read(struct sq_reader *r, sqlite3_stmt *q, size_t size, store_row_fn fill, void *arg,
                 void (*clear)(void *row), void **out, size_t *n)
{
	const struct store_cols c = sq_cols(q);
	char *v = NULL;
	size_t len = 0, cap = 0;
	int rc = 0, src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		if (len == cap) {
			size_t nc = cap ? cap * 2 : 8;
			char *nv = realloc(v, nc * size);
			if (!nv) {
				rc = HR_ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		void *row = v + len++ * size;
		memset(row, 0, size);
		if ((rc = fill(&c, row, arg)) != 0)
			break;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = sq_fail(r->db, src, NULL, NULL);
	sqlite3_reset(q);
	if (rc) {
		for (size_t i = 0; clear && i < len; i++)
			clear(v + i * size);
		free(v);
		v = NULL;
		len = 0;
	}
	*out = v;
	*n = len;
	return rc;
}

int sq_read_i64(struct sq_reader *r, sqlite3_stmt *q, int64_t *v)
{
	int rc = 0, src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		*v = sqlite3_column_int64(q, 0);
	else
		rc = sq_fail(r->db, src, NULL, NULL);
	sqlite3_reset(q);
	return rc;
}
