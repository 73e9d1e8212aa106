/*
 * argcheck.h - argument checks and answers both backends give, written once
 * (argcheck.c): what a caller may ask of a store_ops call, and the texts of
 * its refusals, do not depend on which backend answers; so do the calls
 * that are only another call in other words.
 */
#ifndef HR_STORE_ARGCHECK_H
#define HR_STORE_ARGCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* api_key_prune: the keep list as one JSON array text (*keep, caller
 * frees). 0, or HR_EINVAL / HR_ENOMEM with err naming tenant_id or
 * keep_hashes. */
int store_key_keep_json(const char *tenant_id, const char *const *keep_hashes, size_t n,
                        char **keep, struct hr_err *err);

/* key_create: a 64-digit hash, a tenant and scopes (HR_EINVAL naming the
 * field otherwise). */
int store_key_check(const struct key_row *k, struct hr_err *err);

/* callback_done: o names n known states (HR_EINVAL otherwise). */
int store_callback_done_check(const struct callback_outcome *o, size_t n, struct hr_err *err);

/* callback_replay: a tenant, and one id or a limit of 1..10000. */
int store_callback_replay_check(const char *tenant_id, int64_t id, int limit, struct hr_err *err);
/* callback_replay of one id that changed nothing: HR_ENOTFOUND when the
 * tenant has no such callback, else HR_ECONFLICT (it is still pending);
 * err says which. */
int store_callback_replay_none(struct store *st, const char *tenant_id, int64_t id,
                               struct hr_err *err);

/* recipient_supp and recipient_inbound: a tenant, 1..STORE_RECIP_FORMS
 * written forms of the recipient ("+447911123456", "447911123456", the
 * value as given), and a limit of 1..STORE_RECIP_LIMIT_MAX. */
#define STORE_RECIP_FORMS 3
#define STORE_RECIP_LIMIT_MAX 1000
bool store_recipient_args_ok(const char *tenant_id, size_t nforms, int limit);

/* suppression_put and suppression_delete, the older signatures: one
 * suppression_change each (through st's ops), with actor "api". */
int store_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, const char *reason, struct hr_err *err);
int store_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                             const char *recipient, struct hr_err *err);

#endif
