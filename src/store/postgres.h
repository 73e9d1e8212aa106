/*
 * postgres.h - extras of the PostgreSQL store backend beyond struct
 * store_ops, for tests and benchmarks. `st` must come from
 * store_postgres.open.
 */
#ifndef HR_STORE_POSTGRES_H
#define HR_STORE_POSTGRES_H

#include <stdint.h>

#include "store/store.h"

/* Writer figures since open: transactions committed and write jobs
 * completed (jobs / commits is the mean group size). Either may be NULL. */
void store_postgres_stats(struct store *st, uint64_t *commits, uint64_t *jobs);

/* Pipelines sent by the writer (round trips carrying several jobs) and
 * jobs that failed inside one (each costs a resend of the jobs after it). */
void store_postgres_pipe_stats(struct store *st, uint64_t *pipelines, uint64_t *failed_jobs);

/* Lifecycle runs (send outcomes, webhooks, claims, lease expiry): round
 * trips their reads and writes made (pipeline syncs, reads, and one per
 * helper call), and runs undone and run again because a write of an item
 * failed after the item ended. Either may be NULL. */
void store_postgres_tx_stats(struct store *st, uint64_t *round_trips, uint64_t *replays);

#endif
