/*
 * applier.h - the webhook applier: a thread that works through the inbox in
 * batches, parses each raw event with its channel adapter and applies the
 * result through store->apply_inbox (status precedence, audit events,
 * inbound replies) in one transaction per batch.
 */
#ifndef HR_APPLIER_H
#define HR_APPLIER_H

#include "channels/channel.h"
#include "store/store.h"

struct applier;

int applier_start(struct store *st, struct account_set *accounts, int batch, struct applier **out,
                  struct hr_err *err);
void applier_stop(struct applier *a);
/* New inbox rows were committed: wake the applier. Thread-safe, cheap. */
void applier_notify(struct applier *a);

#endif
