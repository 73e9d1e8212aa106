/*
 * rows.h - one result row's columns, whichever backend read it, and the
 * rows both backends read decoded once (rows.c). A backend steps its own
 * statement (sqlite_rows.c, postgres_rows.c) and hands each row to a
 * store_row_fn through a struct store_cols; the SELECTs of both backends
 * name their columns in the order the decoder reads them (written above
 * each decoder).
 */
#ifndef HR_STORE_ROWS_H
#define HR_STORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/daily.h"
#include "store/store.h"

struct store_cols;

/* How one backend reads a column of the current row. */
struct store_cols_ops {
	/* Text into a fixed buffer as valid UTF-8, never cut inside a
	 * character ("" for NULL). */
	void (*text)(const struct store_cols *c, int col, char *dst, size_t size);
	/* Heap copy of the text, NULL for NULL; *oom set when allocation failed. */
	char *(*dup)(const struct store_cols *c, int col, bool *oom);
	/* The integer (0 for NULL). */
	int64_t (*i64)(const struct store_cols *c, int col);
	bool (*null)(const struct store_cols *c, int col);
	/* A boolean column (SQLite: an integer, not 0; PostgreSQL: t). */
	bool (*flag)(const struct store_cols *c, int col);
};

/* The current row: res is the backend's handle (a sqlite3_stmt, a PGresult),
 * row its index where the backend has one. Borrowed for one call. */
struct store_cols {
	const struct store_cols_ops *ops;
	const void *res;
	int row;
};

/* Reads the current row into row (zeroed before the call); arg is the
 * caller's. 0, or an HR_E* code (HR_ENOMEM) that ends the read. */
typedef int (*store_row_fn)(const struct store_cols *c, void *row, void *arg);

/* The decoders (store_row_fn). Each names its SELECT's columns. */
int store_row_suppression(const struct store_cols *c, void *row, void *arg);
int store_row_supp_event(const struct store_cols *c, void *row, void *arg);
int store_row_inbound(const struct store_cols *c, void *row, void *arg);
int store_row_pause(const struct store_cols *c, void *row, void *arg);
/* arg: the tenant id the counts are of (not a column). */
int store_row_daily(const struct store_cols *c, void *row, void *arg);
int store_row_plugin_event(const struct store_cols *c, void *row, void *arg);
int store_row_message_event(const struct store_cols *c, void *row, void *arg);
int store_row_account(const struct store_cols *c, void *row, void *arg);
int store_row_template(const struct store_cols *c, void *row, void *arg);
/* A row without its url answers HR_ENOMEM too (it is NOT NULL). */
int store_row_callback(const struct store_cols *c, void *row, void *arg);
int store_row_batch(const struct store_cols *c, void *row, void *arg);
int store_row_batch_item(const struct store_cols *c, void *row, void *arg);
int store_row_tenant(const struct store_cols *c, void *row, void *arg);
int store_row_unit(const struct store_cols *c, void *row, void *arg);
int store_row_key(const struct store_cols *c, void *row, void *arg);
/* Out of memory for before/after: logged, the text left NULL (a page of the
 * audit log is not failed for it). */
int store_row_audit(const struct store_cols *c, void *row, void *arg);

/* The clear functions of the rows that own heap memory, for a read that
 * fails half-way. */
void store_row_inbound_clear(void *row);
void store_row_plugin_event_clear(void *row);
void store_row_message_event_clear(void *row);
void store_row_account_clear(void *row);

#endif
