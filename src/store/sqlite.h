/*
 * sqlite.h - extras of the SQLite store backend beyond struct store_ops, for
 * tests and benchmarks. `st` must come from store_sqlite.open.
 */
#ifndef HR_STORE_SQLITE_H
#define HR_STORE_SQLITE_H

#include <stdint.h>

#include "store/store.h"

/*
 * Writer figures since open: transactions committed (group commits and solo
 * jobs) and write jobs completed. jobs / commits is the mean group size.
 * Either pointer may be NULL.
 */
void store_sqlite_stats(struct store *st, uint64_t *commits, uint64_t *jobs);
/* Groups the writer ran again, a savepoint per job, after one of their jobs
 * failed with none (writer.h, wr_ops.kept). */
uint64_t store_sqlite_replays(struct store *st);

/* Write jobs queued and not yet taken by the writer (tests use it to know
 * the queue is full without racing the writer). */
int store_sqlite_queued(struct store *st);

#endif
