/*
 * suppressions.c - the tenant's opt-out list: GET /v1/suppressions
 * [?channel=C], POST /v1/suppressions {"channel","to","reason"?} and
 * DELETE /v1/suppressions/{channel}/{to}.
 *
 * A suppressed recipient is never sent to on that channel (the claim turns
 * the message SUPPRESSED). Recipients are kept in the channel's normal form,
 * so "+44 7911 123456" and "447911123456" are the same entry on WhatsApp.
 * Every operation is scoped by the caller's tenant. The store calls block
 * this server thread for one group commit: suppression edits are rare.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define SUPP_REASON_MAX 255 /* suppression_row.reason holds 255 bytes */

static int supp_channel(const char *name, const char *field, const struct channel_ops **out,
                        struct hr_err *err)
{
	*out = name ? channel_find(name) : NULL;
	if (*out)
		return 0;
	char cn[32];
	if (!name)
		return hr_fail(err, HR_EINVAL, field, "%s is required", field);
	return hr_fail(err, HR_EINVAL, field, "unknown channel '%s'",
	               api_clip(cn, sizeof cn, name));
}

static json_t *supp_json(const struct suppression_row *s)
{
	char at[32], to[HR_ADDR_MAX], reason[sizeof s->reason];
	hr_time_format(s->created_at, at);
	return json_pack("{s:s, s:s, s:s, s:s}", "channel", s->channel, "to",
	                 api_clip(to, sizeof to, s->recipient), "reason",
	                 api_clip(reason, sizeof reason, s->reason), "created_at", at);
}

enum MHD_Result api_suppressions_list(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const params[] = {"channel", NULL};
	int rc = api_query_check(r, params, &err);
	const char *channel = api_query(r, "channel");
	const struct channel_ops *ops;
	if (rc == 0 && channel)
		rc = supp_channel(channel, "channel", &ops, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);

	struct suppression_row *rows = NULL;
	size_t n = 0;
	rc = st->ops->suppression_list(st, r->tenant, channel, &rows, &n);
	if (rc != 0)
		return api_fail(r, rc, NULL);
	json_t *data = json_array();
	size_t i = 0;
	while (data && i < n && json_array_append_new(data, supp_json(&rows[i])) == 0)
		i++;
	free(rows);
	if (!data || i < n) {
		json_decref(data);
		hr_fail(&err, HR_ENOMEM, NULL, "cannot render the suppression list");
		return api_fail(r, HR_ENOMEM, &err);
	}
	return api_respond_json(r, 200, json_pack("{s:o}", "data", data), NULL);
}

enum MHD_Result api_suppressions_post(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	enum MHD_Result ret;
	json_t *root = api_body_object(r, &ret);
	if (!root)
		return ret;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "channel") && strcmp(key, "to") && strcmp(key, "reason")) {
			char f[HR_NAME_MAX];
			api_clip(f, sizeof f, key);
			rc = hr_fail(&err, HR_EINVAL, f, "unknown field '%s'", f);
			break;
		}
	}
	const struct channel_ops *ops = NULL;
	json_t *jto = json_object_get(root, "to"), *jreason = json_object_get(root, "reason");
	if (rc == 0)
		rc = supp_channel(json_string_value(json_object_get(root, "channel")), "channel",
		                  &ops, &err);
	assert(rc != 0 || ops); /* supp_channel returns 0 only with a channel */
	if (rc == 0 && !json_is_string(jto))
		rc = hr_fail(&err, HR_EINVAL, "to", "to must be a string");
	if (rc == 0 && jreason &&
	    (!json_is_string(jreason) || json_string_length(jreason) > SUPP_REASON_MAX))
		rc = hr_fail(&err, HR_EINVAL, "reason",
		             "reason must be a string of at most %d bytes", SUPP_REASON_MAX);
	char to[HR_ADDR_MAX];
	if (rc == 0)
		rc = ops->normalize_recipient(json_string_value(jto), to, &err);
	const char *reason = jreason ? json_string_value(jreason) : "api";
	if (rc == 0) { /* with who did it, for the recipient's opt-out history */
		struct supp_change c = {.tenant_id = r->tenant,
		                        .channel = ops->name,
		                        .recipient = to,
		                        .reason = reason,
		                        .actor = r->who.actor};
		rc = st->ops->suppression_change(st, &c, &err);
	}
	json_t *out =
	    rc == 0 ? json_pack("{s:s, s:s, s:s}", "channel", ops->name, "to", to, "reason", reason)
	            : NULL;
	json_decref(root);
	if (rc != 0)
		return api_fail(r, rc, &err);
	return api_respond_json(r, 201, out, NULL);
}

enum MHD_Result api_suppression_delete(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	const struct channel_ops *ops = channel_find(r->path_channel);
	char to[HR_ADDR_MAX];
	if (!ops) {
		char cn[sizeof r->path_channel];
		hr_fail(&err, HR_ENOTFOUND, NULL, "unknown channel '%s'",
		        api_clip(cn, sizeof cn, r->path_channel));
		return api_fail(r, HR_ENOTFOUND, &err);
	}
	int rc = ops->normalize_recipient(r->path_id, to, &err);
	if (rc == 0) {
		struct supp_change c = {.tenant_id = r->tenant,
		                        .channel = ops->name,
		                        .recipient = to,
		                        .remove = true,
		                        .actor = r->who.actor};
		rc = st->ops->suppression_change(st, &c, &err);
	}
	if (rc == HR_ENOTFOUND) {
		hr_fail(&err, rc, NULL, "%s is not suppressed on %s", to, ops->name);
		return api_fail(r, rc, &err);
	}
	if (rc != 0)
		return api_fail(r, rc, &err);
	return api_respond(r, 204, NULL, 0, NULL, NULL);
}
