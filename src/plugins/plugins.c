/*
 * plugins.c - loading plugins at start: the `plugins` config section,
 * dlopen of every *.so in plugins.dir (in name order), the checks of each
 * descriptor, the unit bindings, init; and the lookups the rest of Herald
 * makes (which plugin a unit has, what to list).
 *
 * All or nothing: the first problem unloads whatever was loaded (fini for
 * those already initialised) and is returned naming the file or the key,
 * so `herald serve` refuses to start rather than run half a set.
 *
 * Config:
 *   plugins:
 *     dir: /usr/lib/herald/plugins
 *     units: {"acme/collections": collections}   # tenant/unit: plugin name
 *     hook_timeout_ms: 2000     # each hook call's deadline
 *     workers: 4                # the worker pool
 *     queue_max: 4096           # jobs waiting at most
 *     arena_bytes: 1048576      # herald_alloc per call at most
 *     config: {collections: {source: payments}}   # each plugin's section
 */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "plugins/plugins_int.h"

#define PLUGINS_MAX 64
#define BINDINGS_MAX 4096

static bool name_ok(const char *s, size_t max, const char *extra)
{
	size_t n = s ? strnlen(s, max) : 0;
	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(extra, c)))
			return false;
	}
	return true;
}

bool plugin_has(const struct plugin *pl, enum plugin_hook h)
{
	if (!pl)
		return false;
	const struct herald_plugin *d = pl->d;
	switch (h) {
	case PH_INIT:
		return d->init != NULL;
	case PH_LIST:
		return d->list_campaigns != NULL;
	case PH_PREPARE:
		return d->prepare != NULL;
	case PH_BEFORE_SEND:
		return d->before_send != NULL;
	case PH_ON_STATUS:
		return d->on_status != NULL;
	case PH_ON_REPLY:
		return d->on_reply != NULL;
	case PH_STATS:
		return d->unit_stats != NULL;
	case PH_EXPORT:
		return d->export_row != NULL && d->export_columns && d->export_columns[0];
	default:
		return false;
	}
}

const char *plugin_name(const struct plugin *pl)
{
	return pl ? pl->name : "";
}

const char *const *plugin_export_columns(const struct plugin *pl)
{
	return plugin_has(pl, PH_EXPORT) ? pl->d->export_columns : NULL;
}

size_t plugins_count(const struct plugins *p)
{
	return p ? p->npl : 0;
}

int64_t plugins_timeout_us(const struct plugins *p)
{
	return p ? p->timeout_us : 0;
}

const struct plugin *plugins_for_unit(const struct plugins *p, const char *tenant, const char *unit)
{
	if (!p || !tenant || !unit || !*unit)
		return NULL;
	for (size_t i = 0; i < p->nbind; i++)
		if (strcmp(p->bind[i].unit, unit) == 0 && strcmp(p->bind[i].tenant, tenant) == 0)
			return p->bind[i].pl;
	return NULL;
}

bool plugins_tenant_has(const struct plugins *p, const char *tenant, enum plugin_hook h)
{
	if (!p || !tenant)
		return false;
	for (size_t i = 0; i < p->nbind; i++)
		if (strcmp(p->bind[i].tenant, tenant) == 0 && plugin_has(p->bind[i].pl, h))
			return true;
	return false;
}

json_t *plugins_describe(const struct plugins *p, const char *tenant)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && p && i < p->npl; i++) {
		struct plugin *pl = p->pl[i];
		json_t *units = json_array(), *hooks = json_array();
		for (size_t b = 0; units && b < p->nbind; b++) {
			if (p->bind[b].pl != pl ||
			    (tenant && strcmp(tenant, p->bind[b].tenant) != 0))
				continue;
			char tu[2 * HR_NAME_MAX];
			snprintf(tu, sizeof tu, "%s/%s", p->bind[b].tenant, p->bind[b].unit);
			json_array_append_new(units, json_string(tu));
		}
		for (int h = 0; hooks && h < PH__COUNT; h++)
			if (plugin_has(pl, (enum plugin_hook)h))
				json_array_append_new(
				    hooks, json_string(plugin_hook_name((enum plugin_hook)h)));
		json_t *o =
		    json_pack("{s:s, s:s, s:i, s:o, s:o}", "name", pl->name, "version", pl->version,
		              "abi", (int)pl->d->abi, "units", units ? units : json_array(),
		              "hooks", hooks ? hooks : json_array());
		/* The file path is the operator's business, not a tenant's. */
		if (o && !tenant) {
			const char *base = strrchr(pl->file, '/');
			json_object_set_new(o, "file", json_string(base ? base + 1 : pl->file));
		}
		if (!o || json_array_append_new(arr, o) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* ---- loading ---- */

static void plugin_unload(struct plugin *pl)
{
	if (!pl)
		return;
	if (pl->inited && pl->d->fini) {
		struct herald_ctx c;
		plugin_ctx_begin(&c, pl, "", "", 0, pl->host ? pl->host->arena_max : 1 << 20);
		pl->d->fini(&c);
		plugin_ctx_end(&c);
	}
	if (pl->dl)
		dlclose(pl->dl);
	json_decref(pl->config);
	pthread_mutex_destroy(&pl->mlock);
	free(pl);
}

void plugins_free(struct plugins *p)
{
	if (!p)
		return;
	plugins_events_stop(p);
	plugins_pool_stop(p);
	for (size_t i = p->npl; i-- > 0;)
		plugin_unload(p->pl[i]);
	free(p->pl);
	free(p->bind);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.so names of dir, sorted (heap array of heap strings). */
static int list_dir(const char *dir, char ***out, size_t *n, struct hr_err *err)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return hr_fail(err, HR_EINVAL, "plugins.dir", "plugins.dir %s cannot be read: %m",
		               dir);
	char **v = NULL;
	size_t cap = 0;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0 || e->d_name[0] == '.')
			continue;
		if (*n == PLUGINS_MAX) {
			rc = hr_fail(err, HR_ELIMIT, "plugins.dir",
			             "plugins.dir %s holds more than %d plugins", dir, PLUGINS_MAX);
			break;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			char **nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
				break;
			}
			v = nv;
		}
		if (!(v[*n] = strdup(e->d_name))) {
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (rc) {
		for (size_t i = 0; i < *n; i++)
			free(v[i]);
		free(v);
		*n = 0;
		return rc;
	}
	if (*n)
		qsort(v, *n, sizeof *v, cmp_str);
	*out = v;
	return 0;
}

/* A plugin's config section as an object of strings (numbers and booleans
 * as their text). */
static int plugin_config(json_t *section, const char *name, json_t **out, struct hr_err *err)
{
	*out = json_object();
	if (!*out)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	json_t *c = json_object_get(section, name);
	if (!c)
		return 0;
	if (!json_is_object(c))
		return hr_fail(err, HR_EINVAL, "plugins.config", "plugins.config.%s must be a map",
		               name);
	const char *k;
	json_t *v;
	json_object_foreach(c, k, v)
	{
		char text[64];
		const char *s = NULL;
		if (json_is_string(v))
			s = json_string_value(v);
		else if (json_is_integer(v))
			snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v)),
			    s = text;
		else if (json_is_real(v))
			snprintf(text, sizeof text, "%.17g", json_real_value(v)), s = text;
		else if (json_is_boolean(v))
			s = json_is_true(v) ? "true" : "false";
		if (!s)
			return hr_fail(err, HR_EINVAL, "plugins.config",
			               "plugins.config.%s.%s must be a string, number or boolean",
			               name, k);
		if (json_object_set_new(*out, k, json_string(s)) != 0)
			return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	return 0;
}

/* dlopen and check one file. */
static int load_one(struct plugins *p, const char *dir, const char *fname, json_t *confsec,
                    struct hr_err *err)
{
	struct plugin *pl = calloc(1, sizeof *pl);
	if (!pl)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&pl->mlock, NULL);
	pl->host = p;
	snprintf(pl->file, sizeof pl->file, "%s/%s", dir, fname);
	int rc = 0;
	/* RTLD_NOW: a symbol the plugin needs and Herald lacks is an error
	 * here, at start, not a crash at its first call. RTLD_LOCAL: plugins
	 * never see each other's symbols. */
	dlerror();
	pl->dl = dlopen(pl->file, RTLD_NOW | RTLD_LOCAL);
	if (!pl->dl) {
		const char *e = dlerror();
		rc = hr_fail(err, HR_EINVAL, "plugins.dir", "plugin %s cannot be loaded: %s",
		             pl->file, e ? e : "unknown error");
		goto fail;
	}
	dlerror();
	pl->d = dlsym(pl->dl, "herald_plugin");
	if (!pl->d) {
		rc = hr_fail(err, HR_EINVAL, "plugins.dir",
		             "plugin %s has no symbol herald_plugin (declare it with "
		             "HERALD_PLUGIN(...) from herald/plugin.h)",
		             pl->file);
		goto fail;
	}
	if (pl->d->abi != HERALD_PLUGIN_ABI) {
		rc =
		    hr_fail(err, HR_EINVAL, "plugins.dir",
		            "plugin %s speaks plugin ABI %u; this Herald speaks ABI %d: rebuild it "
		            "against this Herald's herald/plugin.h",
		            pl->file, (unsigned)pl->d->abi, HERALD_PLUGIN_ABI);
		goto fail;
	}
	if (pl->d->size != sizeof(struct herald_plugin)) {
		rc = hr_fail(err, HR_EINVAL, "plugins.dir",
		             "plugin %s has a descriptor of %u bytes, ABI %d's has %zu: rebuild it "
		             "against this Herald's herald/plugin.h",
		             pl->file, (unsigned)pl->d->size, HERALD_PLUGIN_ABI,
		             sizeof(struct herald_plugin));
		goto fail;
	}
	if (!name_ok(pl->d->name, sizeof pl->name, "_-")) {
		rc = hr_fail(err, HR_EINVAL, "plugins.dir",
		             "plugin %s has no valid name (1..63 of a-z, 0-9, '_', '-')", pl->file);
		goto fail;
	}
	hr_strlcpy(pl->name, pl->d->name, sizeof pl->name);
	hr_utf8_copy(pl->version, pl->d->version ? pl->d->version : "", sizeof pl->version);
	for (size_t i = 0; i < p->npl; i++)
		if (strcmp(p->pl[i]->name, pl->name) == 0) {
			rc = hr_fail(
			    err, HR_ECONFLICT, "plugins.dir",
			    "plugin %s is named '%s', like plugin %s already loaded: plugin "
			    "names must be unique",
			    pl->file, pl->name, p->pl[i]->file);
			goto fail;
		}
	const char *const *cols = pl->d->export_columns;
	for (size_t i = 0; cols && cols[i]; i++)
		if (i >= PLUGIN_KV_MAX || !name_ok(cols[i], 64, "_-")) {
			rc = hr_fail(
			    err, HR_EINVAL, "plugins.dir",
			    "plugin %s: export column %zu is not a valid name or one too many "
			    "(at most %d of 1..63 of a-z, 0-9, '_', '-')",
			    pl->file, i, PLUGIN_KV_MAX);
			goto fail;
		}
	if ((rc = plugin_config(confsec, pl->name, &pl->config, err)))
		goto fail;
	p->pl[p->npl++] = pl;
	return 0;
fail:
	plugin_unload(pl);
	return rc;
}

static int read_units(struct plugins *p, json_t *cfg, json_t *units, struct hr_err *err)
{
	if (!units)
		return 0;
	if (!json_is_object(units))
		return hr_fail(err, HR_EINVAL, "plugins.units",
		               "plugins.units must be a map of tenant/unit: plugin name");
	size_t n = json_object_size(units);
	if (n > BINDINGS_MAX)
		return hr_fail(err, HR_ELIMIT, "plugins.units", "plugins.units holds more than %d",
		               BINDINGS_MAX);
	p->bind = calloc(n ? n : 1, sizeof *p->bind);
	if (!p->bind)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	const char *k;
	json_t *v;
	json_object_foreach(units, k, v)
	{
		char f[200];
		snprintf(f, sizeof f, "plugins.units.%s", k);
		const char *slash = strchr(k, '/');
		if (!slash || slash == k || (size_t)(slash - k) >= HR_NAME_MAX ||
		    strlen(slash + 1) >= HR_NAME_MAX || !slash[1] || strchr(slash + 1, '/'))
			return hr_fail(err, HR_EINVAL, f, "%s: the key must be tenant/unit", f);
		struct plugin_binding *b = &p->bind[p->nbind];
		memcpy(b->tenant, k, (size_t)(slash - k));
		b->tenant[slash - k] = '\0';
		hr_strlcpy(b->unit, slash + 1, sizeof b->unit);
		const char *name = json_string_value(v);
		if (!name)
			return hr_fail(err, HR_EINVAL, f, "%s must be a plugin name", f);
		for (size_t i = 0; i < p->npl && !b->pl; i++)
			if (strcmp(p->pl[i]->name, name) == 0)
				b->pl = p->pl[i];
		if (!b->pl) {
			char names[512] = "";
			size_t o = 0;
			for (size_t i = 0; i < p->npl && o < sizeof names; i++)
				o += (size_t)snprintf(names + o, sizeof names - o, "%s%s",
				                      i ? ", " : "", p->pl[i]->name);
			return hr_fail(err, HR_EINVAL, f,
			               "%s names plugin '%s', which is not loaded "
			               "(loaded: %s)",
			               f, name, p->npl ? names : "none");
		}
		/* The unit must be one the config defines for that tenant. */
		bool found = false;
		size_t ti, ui;
		json_t *t, *u;
		json_array_foreach(json_object_get(cfg, "tenants"), ti, t)
		{
			if (!json_is_string(json_object_get(t, "id")) ||
			    strcmp(json_string_value(json_object_get(t, "id")), b->tenant) != 0)
				continue;
			json_array_foreach(json_object_get(t, "units"), ui, u)
			{
				const char *uid = json_is_string(u)
				                      ? json_string_value(u)
				                      : json_string_value(json_object_get(u, "id"));
				if (uid && strcmp(uid, b->unit) == 0)
					found = true;
			}
		}
		if (!found)
			return hr_fail(err, HR_EINVAL, f,
			               "%s: tenant '%s' has no unit '%s' in the config", f,
			               b->tenant, b->unit);
		p->nbind++;
	}
	return 0;
}

static const char *const plugin_keys[] = {"dir",       "units",       "hook_timeout_ms", "workers",
                                          "queue_max", "arena_bytes", "config",          NULL};

int plugins_load(json_t *cfg, struct ds_registry *ds, struct plugins **out, struct hr_err *err)
{
	*out = NULL;
	struct plugins *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	p->ds = ds;
	p->timeout_us = 2000000;
	p->arena_max = 1 << 20;
	json_t *sec = hr_cfg_get(cfg, "plugins");
	char **files = NULL;
	size_t nfiles = 0;
	int rc = 0;
	if (!sec)
		goto done;
	if (!json_is_object(sec)) {
		rc = hr_fail(err, HR_EINVAL, "plugins", "plugins must be a map");
		goto done;
	}
	const char *k;
	json_t *v;
	json_object_foreach(sec, k, v)
	{
		bool known = false;
		for (const char *const *kk = plugin_keys; *kk && !known; kk++)
			known = strcmp(*kk, k) == 0;
		if (!known) {
			char f[128];
			snprintf(f, sizeof f, "plugins.%s", k);
			rc = hr_fail(err, HR_EINVAL, f, "unknown key %s", f);
			goto done;
		}
	}
	p->timeout_us = hr_cfg_int(sec, "hook_timeout_ms", 2000, 1, 600000, err) * 1000;
	int workers = (int)hr_cfg_int(sec, "workers", 4, 1, 256, err);
	p->queue_max = (size_t)hr_cfg_int(sec, "queue_max", 4096, 1, 1000000, err);
	p->arena_max = (size_t)hr_cfg_int(sec, "arena_bytes", 1 << 20, 4096, 1 << 30, err);
	const char *dir = hr_cfg_str(sec, "dir", NULL, err);
	json_t *confsec = json_object_get(sec, "config");
	if (err && err->code) {
		rc = err->code;
		goto done;
	}
	if (confsec && !json_is_object(confsec)) {
		rc = hr_fail(err, HR_EINVAL, "plugins.config", "plugins.config must be a map");
		goto done;
	}
	if (!dir || !*dir) {
		rc = hr_fail(err, HR_EINVAL, "plugins.dir", "plugins.dir is required");
		goto done;
	}
	if ((rc = list_dir(dir, &files, &nfiles, err)))
		goto done;
	p->pl = calloc(nfiles ? nfiles : 1, sizeof *p->pl);
	if (!p->pl) {
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < nfiles && rc == 0; i++)
		rc = load_one(p, dir, files[i], confsec, err);
	if (rc)
		goto done;
	/* A config section for a plugin that is not there is a typo. */
	json_object_foreach(confsec, k, v)
	{
		bool found = false;
		for (size_t i = 0; i < p->npl && !found; i++)
			found = strcmp(p->pl[i]->name, k) == 0;
		if (!found) {
			rc = hr_fail(err, HR_EINVAL, "plugins.config",
			             "plugins.config.%s: no plugin named '%s' is loaded", k, k);
			goto done;
		}
	}
	if ((rc = read_units(p, cfg, json_object_get(sec, "units"), err)))
		goto done;
	for (size_t i = 0; i < p->npl && rc == 0; i++) {
		struct plugin *pl = p->pl[i];
		if (!pl->d->init) {
			pl->inited = true;
			continue;
		}
		struct herald_ctx c;
		plugin_ctx_begin(&c, pl, "", "", 0, p->arena_max);
		int r = pl->d->init(&c);
		if (r == HERALD_OK)
			pl->inited = true;
		else
			rc = hr_fail(err, HR_EINVAL, "plugins.dir",
			             "plugin %s (%s): init failed: %s", pl->file, pl->name,
			             r != HERALD_ERROR
			                 ? "it returned neither HERALD_OK nor HERALD_ERROR"
			             : c.reason[0] ? c.reason
			                           : "no reason given");
		plugin_ctx_end(&c);
	}
	if (rc == 0 && p->npl)
		rc = plugins_pool_start(p, workers, err);
	if (rc == 0)
		p->per_plugin_max = p->npl > 1 && workers > 1 ? workers - 1 : workers;
done:
	for (size_t i = 0; i < nfiles; i++)
		free(files[i]);
	free(files);
	if (rc) {
		plugins_free(p);
		return rc;
	}
	if (p->npl)
		hr_log(HR_LOG_INFO, "plugins", "%zu plugins loaded, %zu units bound", p->npl,
		       p->nbind);
	*out = p;
	return 0;
}
