/*
 * channels.c - the tenant's sender accounts: GET /v1/channels, GET
 * /v1/channels/{id}, and POST /v1/channels {"id","channel",...config...}
 * to create one or update the tenant's own.
 *
 * Secrets never travel through the API: each adapter declares which of its
 * config keys hold secrets (channel_ops.secret_fields), and for those the
 * API takes only a reference, "env:NAME" or "file:/absolute/path"; a literal
 * is refused naming the key. The reference must lie in the tenant's own
 * namespace (channel.h, struct channel_policy), which the adapter's
 * channel_cfg_secret enforces when it loads the account; what a reference
 * holds, or whether a file exists, is never said. Reading, a reference is
 * shown as given and a literal (possible in the config file) as "***".
 *
 * Account ids are per tenant. An account a tenant creates is stored under
 * "<tenant>~<id>" (its webhook URL shows that), so two tenants may use the
 * same id and no answer tells one tenant which ids another has; config-file
 * accounts keep the id the operator gave them ('~' is not allowed there).
 *
 * A POST goes: validate -> channel_account_new_policy (the adapter validates
 * and resolves under the policy; errors name the key) -> store account_put
 * (with its audit row, one transaction) -> account_set_put (webhooks and
 * sends find it from then on; the replaced account's secrets still verify
 * webhooks for server.secret_grace_s) -> dispatcher_notify.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"

#define ACCOUNT_SEP '~'
/* An account's config as stored: every adapter's keys fit in a few KiB (the
 * longest, Twilio's help_text, is 1600 characters). The config stays in
 * memory while the server runs, also after an update (the replaced account
 * is retired, not freed), so a tenant must not pad it to the body limit. */
#define ACCOUNT_CONFIG_MAX (16u << 10)

const char *api_account_name(const char *tenant, const char *global_id)
{
	size_t tl = strlen(tenant);
	if (strncmp(global_id, tenant, tl) == 0 && global_id[tl] == ACCOUNT_SEP)
		return global_id + tl + 1;
	return global_id;
}

struct channel_account *api_account_lookup(const struct api_server *s, const char *tenant,
                                           const char *name)
{
	char gid[HR_NAME_MAX];
	struct channel_account *a = NULL;
	int n = snprintf(gid, sizeof gid, "%s%c%s", tenant, ACCOUNT_SEP, name);
	if (n > 0 && (size_t)n < sizeof gid && !strchr(name, ACCOUNT_SEP))
		a = account_set_find(s->o.accounts, gid);
	if (!a)
		a = account_set_find(s->o.accounts, name);
	return a && strcmp(a->tenant_id, tenant) == 0 ? a : NULL;
}

/* "env:NAME" (a valid variable name) or "file:/absolute/path". */
static bool secret_ref(const char *v)
{
	if (strncmp(v, "env:", 4) == 0) {
		const char *n = v + 4;
		if (!isalpha((unsigned char)*n) && *n != '_')
			return false;
		for (; *n; n++)
			if (!isalnum((unsigned char)*n) && *n != '_')
				return false;
		return true;
	}
	return strncmp(v, "file:/", 6) == 0 && v[6] != '\0';
}

/* A copy of an account's config with each declared secret that is not a
 * reference shown as "***". NULL when out of memory. */
static json_t *mask(const struct channel_ops *ops, json_t *cfg)
{
	json_t *o = json_deep_copy(cfg);
	for (const char *const *f = ops->secret_fields; o && f && *f; f++) {
		json_t *v = json_object_get(o, *f);
		if (v && !json_is_null(v) && !(json_is_string(v) && secret_ref(json_string_value(v))) &&
		    json_object_set_new(o, *f, json_string("***")) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* Each declared secret the client sent must be a reference, not the value. */
static int check_refs(const struct channel_ops *ops, json_t *root, struct hr_err *err)
{
	for (const char *const *f = ops->secret_fields; f && *f; f++) {
		json_t *v = json_object_get(root, *f);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v) || !secret_ref(json_string_value(v)))
			return hr_fail(err, HR_EINVAL, *f,
			               "%s is a secret: give a reference, \"env:NAME\" or "
			               "\"file:/path\", not the value",
			               *f);
	}
	return 0;
}

/* The API's view of an account. NULL when out of memory. */
static json_t *account_json(const struct channel_account *a)
{
	json_t *cfg = mask(a->ops, a->config);
	if (!cfg)
		return NULL;
	json_object_del(cfg, "id");
	json_object_del(cfg, "channel");
	return json_pack("{s:s, s:s, s:f, s:s, s:o, s:o}", "id",
	                 api_account_name(a->tenant_id, a->id), "channel", a->ops->name,
	                 "rate_limit", a->rate_limit, "delivery_policy",
	                 delivery_policy_name(a->delivery_policy), "webhook_url",
	                 a->webhook_url[0] ? json_string(a->webhook_url) : json_null(), "config",
	                 cfg);
}

enum MHD_Result api_channels_list(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const none[] = {NULL};
	int rc = api_query_check(r, none, &err);
	if (rc != 0)
		return api_fail(r, rc, &err);
	json_t *data = json_array();
	const struct channel_account *a;
	bool ok = data != NULL;
	for (size_t i = 0; ok && (a = account_set_at(r->srv->o.accounts, i)) != NULL; i++)
		if (strcmp(a->tenant_id, r->tenant) == 0 && api_unit_visible(r, a->unit, true))
			ok = json_array_append_new(data, account_json(a)) == 0;
	if (!ok) {
		json_decref(data);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, json_pack("{s:o}", "data", data), NULL);
}

enum MHD_Result api_channel_get(struct api_req *r)
{
	const struct channel_account *a = api_account_lookup(r->srv, r->tenant, r->path_id);
	if (a && !api_unit_visible(r, a->unit, true))
		a = NULL; /* a sibling unit's account: as absent as another tenant's */
	if (!a) {
		/* Another tenant's account is as absent as one that does not exist. */
		struct hr_err err;
		char id[sizeof r->path_id];
		hr_fail(&err, HR_ENOTFOUND, NULL, "no channel account '%s'",
		        api_clip(id, sizeof id, r->path_id));
		return api_fail(r, HR_ENOTFOUND, &err);
	}
	return api_respond_json(r, 200, account_json(a), NULL);
}

/* Ids appear in webhook URLs: letters, digits, '.', '_' and '-'. */
static bool account_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= HR_NAME_MAX)
		return false;
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && *id != '.' && *id != '_' && *id != '-')
			return false;
	return true;
}

/* The adapter names config keys "accounts[<id>].key": the client sent "key". */
static void strip_account_prefix(struct hr_err *err, const char *id)
{
	char pfx[HR_NAME_MAX + 16];
	int n = snprintf(pfx, sizeof pfx, "accounts[%s]", id);
	if (n <= 0 || strncmp(err->field, pfx, (size_t)n) != 0)
		return;
	const char *rest = err->field + n;
	if (*rest == '.')
		rest++;
	char f[sizeof err->field];
	hr_strlcpy(f, *rest ? rest : "id", sizeof f);
	hr_strlcpy(err->field, f, sizeof err->field);
}

/* Validates, stores and publishes one account; *created tells 201 from 200.
 * Runs under channels_lock, so the owner check and the write are one step.
 * The audit row (before: the account as it was, reference taken; after:
 * as stored) is written in the same transaction as the account. */
static int channel_put(struct api_req *r, json_t *root, json_t *before,
                       struct channel_account **out, bool *created, struct hr_err *err)
{
	struct api_server *s = r->srv;
	json_t *jid = json_object_get(root, "id"), *jch = json_object_get(root, "channel");
	const char *id = json_string_value(jid), *channel = json_string_value(jch);
	if (!id || !account_id_ok(id))
		return hr_fail(err, HR_EINVAL, "id",
		               "id must be 1..63 letters, digits, '.', '_' or '-'");
	if (!channel)
		return hr_fail(err, HR_EINVAL, "channel", "channel is required");
	if (!channel_find(channel)) {
		char cv[HR_NAME_MAX];
		return hr_fail(err, HR_EINVAL, "channel", "unknown channel '%s'",
		               api_clip(cv, sizeof cv, channel));
	}
	const struct channel_ops *ops = channel_find(channel);
	/* The tenant's own account of that id (config or API), else a new one
	 * in the tenant's id space: another tenant's ids are invisible here. */
	const struct channel_account *old = api_account_lookup(s, r->tenant, id);
	/* A unit changes only its own accounts: a sibling's or a shared one
	 * (the tenant's) is not its to overwrite (409: the id is taken). */
	if (old && r->who.unit[0] && strcmp(old->unit, r->who.unit) != 0)
		return hr_fail(err, HR_ECONFLICT, "id", "account id '%s' is taken", id);
	char gid[HR_NAME_MAX];
	if (old) {
		hr_strlcpy(gid, old->id, sizeof gid);
	} else {
		int n = snprintf(gid, sizeof gid, "%s%c%s", r->tenant, ACCOUNT_SEP, id);
		size_t tl = strlen(r->tenant);
		if (n < 0 || (size_t)n >= sizeof gid)
			return hr_fail(err, HR_EINVAL, "id",
			               "id is too long: at most %zu characters for this tenant",
			               tl + 2 < sizeof gid ? sizeof gid - 2 - tl : 0);
	}
	if (old && old->ops != ops)
		return hr_fail(err, HR_ECONFLICT, "channel",
		               "account '%s' is a %s account; its channel cannot change", id,
		               old->ops->name);
	*created = old == NULL;
	int rc = check_refs(ops, root, err);
	if (rc)
		return rc;

	struct account_row row;
	memset(&row, 0, sizeof row);
	hr_strlcpy(row.id, gid, sizeof row.id);
	hr_strlcpy(row.tenant_id, r->tenant, sizeof row.tenant_id);
	hr_strlcpy(row.channel, channel, sizeof row.channel);
	/* Whatever a tenant writes is loaded under the policy, now and after a
	 * restart, including its update of an account from the config file
	 * (the config puts the operator's version back at the next start). */
	row.api_created = true;
	hr_strlcpy(row.unit_id, old ? old->unit : r->who.unit, sizeof row.unit_id);
	row.config = json_dumps(root, JSON_COMPACT);
	if (!row.config)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	if (strlen(row.config) > ACCOUNT_CONFIG_MAX) {
		free(row.config);
		return hr_fail(err, HR_ELIMIT, NULL, "the account's config is over %u bytes",
		               ACCOUNT_CONFIG_MAX);
	}
	struct channel_account *a = NULL;
	rc = channel_account_new_policy(&row, s->o.accounts->policy, &a, err);
	if (rc) {
		strip_account_prefix(err, gid);
		free(row.config);
		return rc;
	}
	struct store *st = s->o.store;
	/* The config as stored (secrets are references, never values). */
	char obj[96];
	snprintf(obj, sizeof obj, "account:%s", id);
	struct audit_row au;
	rc = api_audit_json(r, r->tenant, *created ? "account.create" : "account.update", obj,
	                    json_incref(before),
	                    json_pack("{s:s, s:s?, s:O}", "channel", a->ops->name, "unit",
	                              a->unit[0] ? a->unit : NULL, "config", a->config),
	                    &au);
	if (rc) {
		hr_fail(err, rc, NULL, "out of memory");
	} else {
		rc = st->ops->account_put(st, &row, &au, err);
		api_audit_done(&au);
	}
	free(row.config);
	if (rc == 0 && (rc = account_set_put(s->o.accounts, a)) != 0)
		hr_fail(err, rc, NULL, "cannot add the account to the running set");
	if (rc) {
		channel_account_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

enum MHD_Result api_channels_post(struct api_req *r)
{
	struct api_server *s = r->srv;
	enum MHD_Result ret;
	json_t *root = api_body_object(r, &ret);
	if (!root)
		return ret;
	struct hr_err err;
	hr_err_clear(&err);
	struct channel_account *a = NULL;
	bool created = false;
	pthread_mutex_lock(&s->channels_lock);
	/* The account as it was, for the audit log. */
	const char *pid = json_string_value(json_object_get(root, "id"));
	const struct channel_account *prev = api_account_lookup(s, r->tenant, pid ? pid : "");
	json_t *before = prev ? json_pack("{s:s, s:s?, s:O}", "channel", prev->ops->name, "unit",
	                                  prev->unit[0] ? prev->unit : NULL, "config", prev->config)
	                      : NULL;
	int rc = channel_put(r, root, before, &a, &created, &err);
	pthread_mutex_unlock(&s->channels_lock);
	json_decref(root);
	json_decref(before);
	if (rc != 0)
		return api_fail(r, rc, &err);
	/* New accounts get their own send queue on the dispatcher's next pass. */
	if (s->o.dispatcher)
		dispatcher_notify(s->o.dispatcher);
	hr_log(HR_LOG_INFO, "api", "tenant %s %s %s account %s", r->tenant,
	       created ? "created" : "updated", a->ops->name, a->id);
	/* a stays valid: the set retires replaced accounts, never frees them. */
	return api_respond_json(r, created ? 201 : 200, account_json(a), NULL);
}
