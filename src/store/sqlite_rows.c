/*
 * sqlite_rows.c - see sqlite_rows.h.
 */
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_rows.h"

int sq_rows_read(struct sq_reader *r, sqlite3_stmt *q, size_t size, sq_row_fn fill, void *arg,
                 void (*clear)(void *row), void **out, size_t *n)
{
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
		if ((rc = fill(q, row, arg)) != 0)
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

int sq_row_suppression(sqlite3_stmt *q, void *row, void *arg)
{
	struct suppression_row *e = row;
	(void)arg;
	sq_col_copy(q, 0, e->tenant_id, sizeof e->tenant_id);
	sq_col_copy(q, 1, e->channel, sizeof e->channel);
	sq_col_copy(q, 2, e->recipient, sizeof e->recipient);
	sq_col_copy(q, 3, e->reason, sizeof e->reason);
	e->created_at = sqlite3_column_int64(q, 4);
	return 0;
}
