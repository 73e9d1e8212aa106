/*
 * channels.c - the tenant's sender accounts: GET /v1/channels, GET
 * /v1/channels/{id}, and POST /v1/channels {"id","channel",...config...}
 * to create one or update the tenant's own.
 *
 * Secrets never travel through the API: a config key that names a secret
 * (it contains "token", "secret", "password", "key" or "auth") must hold a
 * reference, "env:NAME" or "file:/absolute/path", which the server resolves;
 * a literal is refused naming the key. Reading, a reference is shown as
 * given and a literal (possible in the config file) as "***".
 *
 * A POST goes: check owner (another tenant's id is 409) and references ->
 * channel_account_new (the adapter validates and resolves; errors name the
 * key) -> store account_upsert -> account_set_put (webhooks and sends find
 * it from then on) -> dispatcher_notify.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"

static const char *const secret_words[] = {"token", "secret", "password", "key", "auth", NULL};

/* Whether a config key names a secret (case-insensitive substring). */
static bool secret_key(const char *k)
{
	for (const char *const *w = secret_words; *w; w++)
		if (strcasestr(k, *w))
			return true;
	return false;
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

/* A copy of a config value with every secret that is not a reference shown
 * as "***". Anything under a secret key counts as secret. */
static json_t *mask(json_t *v, bool secret)
{
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *c;
		json_object_foreach(v, k, c)
		{
			if (!o ||
			    json_object_set_new(o, k, mask(c, secret || secret_key(k))) != 0) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			if (!a || json_array_append_new(a, mask(c, secret)) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	if (!secret || json_is_null(v) || (json_is_string(v) && secret_ref(json_string_value(v))))
		return json_deep_copy(v);
	return json_string("***");
}

/* Whether a reference points where the operator allows API-created
 * accounts to read secrets from (api.h, secret_env_prefix/secret_file_dir). */
static bool ref_allowed(const struct api_opts *o, const char *v)
{
	if (strncmp(v, "env:", 4) == 0)
		return o->secret_env_prefix && *o->secret_env_prefix &&
		       strncmp(v + 4, o->secret_env_prefix, strlen(o->secret_env_prefix)) == 0;
	return o->secret_file_dir && *o->secret_file_dir &&
	       strncmp(v + 5, o->secret_file_dir, strlen(o->secret_file_dir)) == 0 &&
	       !strstr(v, "/../") && !strstr(v, "/./");
}

/* Finds the first secret that is not an allowed reference, naming its path. */
static int check_refs(const struct api_opts *o, json_t *v, const char *path, bool secret,
                      struct hr_err *err)
{
	char p[sizeof err->field];
	if (json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach(v, k, c)
		{
			char ck[HR_NAME_MAX];
			api_clip(ck, sizeof ck, k);
			snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", ck);
			int rc = check_refs(o, c, p, secret || secret_key(k), err);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			snprintf(p, sizeof p, "%s[%zu]", path, i);
			int rc = check_refs(o, c, p, secret, err);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!secret || json_is_null(v))
		return 0;
	if (!json_is_string(v) || !secret_ref(json_string_value(v)))
		return hr_fail(err, HR_EINVAL, path,
		               "%s is a secret: give a reference, \"env:NAME\" or \"file:/path\", "
		               "not the value",
		               path);
	if (!ref_allowed(o, json_string_value(v)))
		return hr_fail(err, HR_EFORBIDDEN, path,
		               "%s: accounts created through the API may only reference "
		               "env:%s* or file:%s*",
		               path, o->secret_env_prefix ? o->secret_env_prefix : "",
		               o->secret_file_dir ? o->secret_file_dir : "");
	return 0;
}

/* The API's view of an account. NULL when out of memory. */
static json_t *account_json(const struct channel_account *a)
{
	json_t *cfg = mask(a->config, false);
	if (!cfg)
		return NULL;
	json_object_del(cfg, "id");
	json_object_del(cfg, "channel");
	return json_pack("{s:s, s:s, s:f, s:o, s:o}", "id", a->id, "channel", a->ops->name,
	                 "rate_limit", a->rate_limit, "webhook_url",
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
		if (strcmp(a->tenant_id, r->tenant) == 0)
			ok = json_array_append_new(data, account_json(a)) == 0;
	if (!ok) {
		json_decref(data);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, json_pack("{s:o}", "data", data), NULL);
}

enum MHD_Result api_channel_get(struct api_req *r)
{
	const struct channel_account *a = account_set_find(r->srv->o.accounts, r->path_id);
	if (!a || strcmp(a->tenant_id, r->tenant) != 0) {
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
 * Runs under channels_lock, so the owner check and the write are one step. */
static int channel_put(struct api_req *r, json_t *root, struct channel_account **out, bool *created,
                       struct hr_err *err)
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
	const struct channel_account *old = account_set_find(s->o.accounts, id);
	if (old && strcmp(old->tenant_id, r->tenant) != 0)
		return hr_fail(err, HR_ECONFLICT, "id", "account id '%s' is taken", id);
	if (old && strcmp(old->ops->name, channel) != 0)
		return hr_fail(err, HR_ECONFLICT, "channel",
		               "account '%s' is a %s account; its channel cannot change", id,
		               old->ops->name);
	*created = old == NULL;
	int rc = check_refs(&s->o, root, "", false, err);
	if (rc)
		return rc;

	struct account_row row;
	memset(&row, 0, sizeof row);
	hr_strlcpy(row.id, id, sizeof row.id);
	hr_strlcpy(row.tenant_id, r->tenant, sizeof row.tenant_id);
	hr_strlcpy(row.channel, channel, sizeof row.channel);
	row.config = json_dumps(root, JSON_COMPACT);
	if (!row.config)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	struct channel_account *a = NULL;
	rc = channel_account_new(&row, &a, err);
	if (rc) {
		strip_account_prefix(err, id);
		free(row.config);
		return rc;
	}
	struct store *st = s->o.store;
	rc = st->ops->account_upsert(st, &row, err);
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
	int rc = channel_put(r, root, &a, &created, &err);
	pthread_mutex_unlock(&s->channels_lock);
	json_decref(root);
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
