/*
 * argcheck.c - see argcheck.h.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/argcheck.h"

int store_key_keep_json(const char *tenant_id, const char *const *keep_hashes, size_t n,
                        char **keep, struct hr_err *err)
{
	*keep = NULL;
	if (!tenant_id || !*tenant_id)
		return hr_fail(err, HR_EINVAL, "tenant_id", "tenant id is empty");
	if (n && !keep_hashes)
		return hr_fail(err, HR_EINVAL, "keep_hashes", "no list for %zu hashes", n);
	json_t *arr = json_array();
	if (!arr)
		return hr_fail(err, HR_ENOMEM, "keep_hashes", "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (!keep_hashes[i] || !*keep_hashes[i]) {
			json_decref(arr);
			return hr_fail(err, HR_EINVAL, "keep_hashes", "hash %zu is empty", i);
		}
		json_t *h = json_string(keep_hashes[i]);
		if (!h || json_array_append_new(arr, h)) {
			json_decref(arr);
			return hr_fail(err, HR_EINVAL, "keep_hashes", "hash %zu is not UTF-8", i);
		}
	}
	*keep = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (!*keep)
		return hr_fail(err, HR_ENOMEM, "keep_hashes", "out of memory");
	return 0;
}

int store_key_check(const struct key_row *k, struct hr_err *err)
{
	if (!k || strlen(k->hash) != 64)
		return hr_fail(err, HR_EINVAL, "hash", "key hash must be 64 hex digits");
	if (!k->tenant_id[0])
		return hr_fail(err, HR_EINVAL, "tenant", "key has no tenant");
	if (!k->scopes[0])
		return hr_fail(err, HR_EINVAL, "scopes", "key has no scopes");
	return 0;
}

int store_callback_done_check(const struct callback_outcome *o, size_t n, struct hr_err *err)
{
	if (n && !o)
		return HR_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (o[i].state < CB_PENDING || o[i].state >= CB__COUNT)
			return hr_fail(err, HR_EINVAL, "state", "unknown callback state %d",
			               (int)o[i].state);
	return 0;
}

int store_callback_replay_check(const char *tenant_id, int64_t id, int limit, struct hr_err *err)
{
	if (!tenant_id || !*tenant_id || id < 0 || (id == 0 && (limit < 1 || limit > 10000)))
		return hr_fail(err, HR_EINVAL, id == 0 ? "limit" : "id", "bad replay request");
	return 0;
}

int store_callback_replay_none(struct store *st, const char *tenant_id, int64_t id,
                               struct hr_err *err)
{
	struct callback_row r;
	int rc = st->ops->callback_get(st, tenant_id, id, &r);
	callback_row_clear(&r); /* callback_get zeroes it first: safe on any answer */
	if (rc == HR_ENOTFOUND)
		return hr_fail(err, rc, "id", "no callback %lld", (long long)id);
	if (rc)
		return rc;
	return hr_fail(err, HR_ECONFLICT, "state",
	               "callback %lld is still pending: it is sent as soon as it is due",
	               (long long)id);
}

int store_suppression_put(struct store *st, const char *tenant_id, const char *channel,
                          const char *recipient, const char *reason, struct hr_err *err)
{
	struct supp_change c = {.tenant_id = tenant_id,
	                        .channel = channel,
	                        .recipient = recipient,
	                        .reason = reason,
	                        .actor = "api"};
	return st->ops->suppression_change(st, &c, err);
}

int store_suppression_delete(struct store *st, const char *tenant_id, const char *channel,
                             const char *recipient, struct hr_err *err)
{
	struct supp_change c = {.tenant_id = tenant_id,
	                        .channel = channel,
	                        .recipient = recipient,
	                        .remove = true,
	                        .actor = "api"};
	return st->ops->suppression_change(st, &c, err);
}

bool store_recipient_args_ok(const char *tenant_id, size_t nforms, int limit)
{
	return tenant_id && *tenant_id && nforms >= 1 && nforms <= STORE_RECIP_FORMS &&
	       limit >= 1 && limit <= STORE_RECIP_LIMIT_MAX;
}
