/*
 * plugins_api.c - the plugins over HTTP (plugins/plugins.h):
 *   GET /v1/plugins                 what is loaded: name, version, ABI,
 *                                   hooks and the units bound (an operator
 *                                   sees every tenant's and the files; a
 *                                   tenant admin its own units only)
 *   GET /v1/units/{unit}/stats      the unit's figures: Herald's own (its
 *                                   campaigns' counters) and its plugin's
 *                                   unit_stats hook
 *   GET /v1/units/{unit}/campaigns  its plugin's list_campaigns hook with
 *                                   the query's filters (default: the
 *                                   unit's batches)
 * A hook runs on the plugin pool; the HTTP thread waits for it no longer
 * than the hook's deadline (plugins.hook_timeout_ms), and a hook that
 * fails or times out answers 502 naming the plugin and the reason.
 * A unit of another tenant, or one a unit key is not for, is 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "plugins/plugins.h"

#define UNIT_STATS_BATCHES 1000 /* the latest campaigns a stats answer sums */

enum MHD_Result api_plugins_list(struct api_req *r)
{
	static const char *const allowed[] = {NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, allowed, &err);
	if (rc)
		return api_fail(r, rc, &err);
	json_t *list = plugins_describe(r->srv->o.plugins, r->who.operator? NULL : r->who.tenant);
	json_t *o = list ? json_pack("{s:o, s:i}", "plugins", list, "abi", 1) : NULL;
	if (!o)
		return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
	return api_respond_json(r, 200, o, NULL);
}

/* The unit of the path, checked: it exists for the caller's tenant and the
 * caller may see it (a unit key only its own). */
static int unit_of(struct api_req *r, struct hr_err *err)
{
	if (r->who.unit[0] && strcmp(r->who.unit, r->path_id) != 0)
		return hr_fail(err, HR_ENOTFOUND, "unit", "no such unit");
	struct unit_row u;
	int rc = r->srv->o.store->ops->unit_get(r->srv->o.store, r->tenant, r->path_id, &u);
	if (rc == HR_ENOTFOUND)
		return hr_fail(err, HR_ENOTFOUND, "unit", "no such unit");
	if (rc)
		return hr_fail(err, rc, "unit", "the unit could not be read");
	return 0;
}

/* A hook that did not answer: 502 (or 503 when the queue was full). */
static enum MHD_Result hook_failed(struct api_req *r, enum plugin_outcome o, const char *why)
{
	/* The code from errors.c's table (the OpenAPI document lists it), with
	 * how the hook ended beside the message. */
	enum api_errkind k = o == PO_BUSY ? APIERR_PLUGIN_BUSY : APIERR_PLUGIN_FAILED;
	json_t *e = api_error_json(api_errkind_code(k), why, NULL);
	if (!e || json_object_set_new(json_object_get(e, "error"), "outcome",
	                              json_string(plugin_outcome_name(o))) != 0) {
		json_decref(e);
		struct hr_err err;
		return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
	}
	return api_respond_json(r, api_errkind_status(k), e, NULL);
}

/* Herald's own figures of the unit: its latest campaigns' counters. */
static json_t *unit_counts(struct api_req *r, struct hr_err *err)
{
	struct batch_filter f = {.status = -1, .unit = r->path_id, .limit = UNIT_STATS_BATCHES};
	struct batch *v = NULL;
	size_t n = 0;
	bool more = false;
	struct store *st = r->srv->o.store;
	int rc = st->ops->batch_list(st, r->tenant, &f, &v, &n, &more);
	if (rc) {
		hr_fail(err, rc, "unit", "the unit's campaigns could not be read");
		return NULL;
	}
	int64_t total = 0, by[MSG__COUNT] = {0};
	for (size_t i = 0; i < n; i++) {
		total += v[i].valid;
		for (int s = 0; s < MSG__COUNT; s++)
			by[s] += v[i].by_status[s];
		batch_clear(&v[i]);
	}
	free(v);
	json_t *bs = json_object();
	for (int s = 0; bs && s < MSG__COUNT; s++)
		if (by[s])
			json_object_set_new(bs, msg_status_name((enum msg_status)s),
			                    json_integer(by[s]));
	json_t *o = bs ? json_pack("{s:I, s:b, s:I, s:o}", "campaigns", (json_int_t)n, "more", more,
	                           "messages", (json_int_t)total, "by_status", bs)
	               : NULL;
	if (!o)
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return o;
}

enum MHD_Result api_unit_stats(struct api_req *r)
{
	static const char *const allowed[] = {NULL};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = api_query_check(r, allowed, &err);
	if (rc == 0)
		rc = unit_of(r, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct plugins *ps = r->srv->o.plugins;
	const struct plugin *pl = plugins_for_unit(ps, r->tenant, r->path_id);
	json_t *stats = NULL;
	if (plugin_has(pl, PH_STATS)) {
		char why[PLUGIN_REASON_MAX];
		enum plugin_outcome o =
		    plugins_stats(ps, pl, r->tenant, r->path_id, &stats, why, sizeof why);
		if (o != PO_OK)
			return hook_failed(r, o, why);
	}
	json_t *herald = unit_counts(r, &err);
	if (!herald) {
		json_decref(stats);
		return api_fail(r, err.code, &err);
	}
	json_t *o = json_pack("{s:s, s:o, s:o, s:o}", "unit", r->path_id, "plugin",
	                      pl ? json_string(plugin_name(pl)) : json_null(), "herald", herald,
	                      "stats", stats ? stats : json_object());
	if (!o)
		return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
	return api_respond_json(r, 200, o, NULL);
}

/* The query's arguments as filters (each a string). */
static enum MHD_Result add_filter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
	(void)kind;
	json_t *f = cls;
	if (key && json_object_size(f) < 32 && strlen(key) < 64)
		json_object_set_new(f, key, json_string(value ? value : ""));
	return MHD_YES;
}

enum MHD_Result api_unit_campaigns(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	int rc = unit_of(r, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct plugins *ps = r->srv->o.plugins;
	const struct plugin *pl = plugins_for_unit(ps, r->tenant, r->path_id);
	if (!plugin_has(pl, PH_LIST)) {
		/* The default: the unit's batches, newest first. */
		struct batch_filter f = {.status = -1, .unit = r->path_id, .limit = 100};
		struct batch *v = NULL;
		size_t n = 0;
		bool more = false;
		struct store *st = r->srv->o.store;
		if ((rc = st->ops->batch_list(st, r->tenant, &f, &v, &n, &more)))
			return api_fail(
			    r, hr_fail(&err, rc, "unit", "the campaigns could not be read"), &err);
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "id", v[i].id,
			                                     "name", v[i].name, "status",
			                                     batch_status_name(v[i].status)));
		for (size_t i = 0; i < n; i++)
			batch_clear(&v[i]);
		free(v);
		json_t *o = arr ? json_pack("{s:s, s:n, s:o}", "unit", r->path_id, "plugin",
		                            "campaigns", arr)
		                : NULL;
		if (!o)
			return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
		return api_respond_json(r, 200, o, NULL);
	}
	json_t *filters = json_object();
	if (!filters)
		return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_filter, filters);
	json_t *items = NULL;
	char why[PLUGIN_REASON_MAX];
	enum plugin_outcome o =
	    plugins_list(ps, pl, r->tenant, r->path_id, filters, &items, why, sizeof why);
	json_decref(filters);
	if (o != PO_OK)
		return hook_failed(r, o, why);
	json_t *out = json_pack("{s:s, s:s, s:o}", "unit", r->path_id, "plugin", plugin_name(pl),
	                        "campaigns", items);
	if (!out)
		return api_fail(r, hr_fail(&err, HR_ENOMEM, NULL, "out of memory"), &err);
	return api_respond_json(r, 200, out, NULL);
}
