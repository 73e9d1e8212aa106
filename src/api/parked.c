/*
 * parked.c - GET /v1/webhooks/parked: the provider webhooks that matched
 * no message (a status for a provider id Herald never learnt) after the
 * reconciler's reconcile.inbox_park_after_s, newest first, for the
 * tenant's accounts. Paged like /v1/callbacks (limit, cursor).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

#define PARKED_LIST_DEFAULT 100
/* Enough of a raw body to see what it was about. */
#define PARKED_BODY_MAX 4096

static json_t *parked_json(const struct api_req *r, const struct inbox_row *w)
{
	char at[32];
	hr_time_format(w->received_at, at);
	char *body = malloc(PARKED_BODY_MAX + 1);
	if (!body)
		return NULL;
	hr_utf8_copy(body, w->body ? w->body : "", PARKED_BODY_MAX + 1);
	char err[sizeof w->error];
	hr_utf8_copy(err, w->error, sizeof err);
	json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:i, s:s, s:s, s:b}", "id", (json_int_t)w->id,
	                      "account", api_account_name(r->tenant, w->account_id), "channel",
	                      w->channel, "received_at", at, "attempts", w->attempts, "reason", err,
	                      "body", body, "body_truncated", w->body_len > PARKED_BODY_MAX);
	free(body);
	return j;
}

enum MHD_Result api_webhooks_parked(struct api_req *r)
{
	static const char *const allowed[] = {"limit", "cursor", NULL};
	struct hr_err err = {0};
	int rc = api_query_check(r, allowed, &err);
	int limit = PARKED_LIST_DEFAULT;
	const char *v = api_query(r, "limit");
	if (rc == 0 && v) {
		char *end;
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 1000)
			rc = hr_fail(&err, HR_EINVAL, "limit",
			             "limit must be an integer from 1 to 1000");
		limit = (int)n;
	}
	int64_t before = 0;
	const char *cur = api_query(r, "cursor");
	if (rc == 0 && cur) {
		char *end;
		before = strtoll(cur, &end, 10);
		if (*end || before < 1)
			rc = hr_fail(&err, HR_EINVAL, "cursor",
			             "cursor must be the next_cursor of a previous page");
	}
	if (rc)
		return api_fail(r, rc, &err);
	struct store *st = r->srv->o.store;
	struct inbox_row *rows = NULL;
	size_t n = 0;
	bool more = false;
	if ((rc = st->ops->inbox_parked(st, r->tenant, before, limit, &rows, &n, &more)))
		return api_fail(r, rc, NULL);
	int64_t last = n ? rows[n - 1].id : 0;
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *j = data ? parked_json(r, &rows[i]) : NULL;
		if (data && (!j || json_array_append_new(data, j) != 0)) {
			json_decref(data);
			data = NULL;
		}
		inbox_row_clear(&rows[i]);
	}
	free(rows);
	json_t *next = more && n ? json_sprintf("%lld", (long long)last) : json_null();
	if (!data) {
		json_decref(next);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, json_pack("{s:o, s:o}", "data", data, "next_cursor", next),
	                        NULL);
}
