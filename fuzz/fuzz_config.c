/*
 * fuzz_config.c - the config loader (src/core/config.c): a YAML (or JSON)
 * file read by libfyaml, re-emitted as JSON and parsed by jansson, exactly
 * as `herald serve` reads its config (hr_config_load on a path: here a
 * memfd's /proc/self/fd/N, so nothing is left on disk). Then the readers
 * that take the tree apart without a server: the typed getters on every
 * key `serve` reads, the retention options, and the tenant secret
 * namespaces and allowed origins (channel_policy_init), and the copy of
 * tenants, units, API keys, accounts and templates into the store
 * (serve_sync_config) against a stand-in store that takes every row.
 * serve_sync_config resolves API key references as `serve` does: env:
 * or file: (stdin is /dev/null here, so a reference to it cannot block).
 * Oracles beyond the sanitizers: a loaded config is a JSON object; a getter
 * that fails names its key; every error says what is wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/api_int.h"
#include "channels/channel.h"
#include "core/config.h"

static const char *const int_keys[] = {
    "batches.max_rows",
    "callbacks.backoff_base_ms",
    "callbacks.max_attempts",
    "dispatch.max_in_flight",
    "dispatch.lease_seconds",
    "reconcile.interval_ms",
    "server.max_body_bytes",
    "server.max_connections_per_ip",
    "server.threads",
    "store.group_max",
    "store.queue_max",
    "webhooks.apply_batch",
    "server.port",
    NULL,
};
static const char *const str_keys[] = {
    "server.listen",
    "server.public_url",
    "store.driver",
    "store.path",
    "store.url",
    "store.synchronous",
    "batches.upload_dir",
    "server.secret_env_prefix",
    NULL,
};

/* The units created so far by the input being run (unit_get finds them). */
static char g_units[64][2 * HR_NAME_MAX];
static size_t g_nunits;

static int fake_tenant_upsert(struct store *st, const struct tenant_row *t, struct hr_err *err)
{
	(void)st, (void)t, (void)err;
	return 0;
}
static int fake_unit_create(struct store *st, const struct unit_row *u, bool if_absent,
                            const struct audit_row *a, struct hr_err *err)
{
	(void)st, (void)if_absent, (void)a, (void)err;
	if (g_nunits < 64)
		snprintf(g_units[g_nunits++], sizeof g_units[0], "%s/%s", u->tenant_id, u->id);
	return 0;
}
static int fake_unit_get(struct store *st, const char *tenant_id, const char *id,
                         struct unit_row *out)
{
	(void)st;
	char k[sizeof g_units[0]];
	snprintf(k, sizeof k, "%s/%s", tenant_id, id);
	for (size_t i = 0; i < g_nunits; i++)
		if (strcmp(g_units[i], k) == 0) {
			memset(out, 0, sizeof *out);
			return 0;
		}
	return HR_ENOTFOUND;
}
static int fake_key_seed(struct store *st, const struct key_row *k, struct hr_err *err)
{
	(void)st, (void)err;
	if (strlen(k->hash) != 64)
		abort();
	return 0;
}
static int fake_key_prune(struct store *st, const char *tenant_id, const char *const *keep,
                          size_t n, struct hr_err *err)
{
	(void)st, (void)tenant_id, (void)keep, (void)n, (void)err;
	return 0;
}
static int fake_account_upsert(struct store *st, const struct account_row *a, struct hr_err *err)
{
	(void)st, (void)err;
	if (!a->id[0] || !a->config || !channel_find(a->channel))
		abort();
	return 0;
}
static int fake_template_upsert(struct store *st, const struct template_row *t, struct hr_err *err)
{
	(void)st, (void)err;
	/* serve checks a template's config; the API reads it back as an object. */
	if (t->config) {
		json_t *c = json_loads(t->config, 0, NULL);
		if (!json_is_object(c))
			abort();
		json_decref(c);
	}
	return 0;
}
static const struct store_ops FAKE_OPS = {
    .tenant_upsert = fake_tenant_upsert,
    .unit_create = fake_unit_create,
    .unit_get = fake_unit_get,
    .key_seed = fake_key_seed,
    .api_key_prune = fake_key_prune,
    .account_upsert = fake_account_upsert,
    .template_upsert = fake_template_upsert,
};
static struct store g_store = {.ops = &FAKE_OPS};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 0) < 0)
		abort();
	close(fd);
	return 0;
}

static void check(const struct hr_err *err, const char *key)
{
	if (err->code && (err->msg[0] == '\0' || (key && strcmp(err->field, key) != 0)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	int fd = memfd_create("config", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct hr_err err = {0};
	json_t *cfg = hr_config_load(path, &err);
	close(fd);
	if (!cfg) {
		if (err.msg[0] == '\0')
			abort();
		return 0;
	}
	if (!json_is_object(cfg))
		abort();
	for (const char *const *k = int_keys; *k; k++) {
		memset(&err, 0, sizeof err);
		int64_t v = hr_cfg_int(cfg, *k, 7, 1, 1000, &err);
		check(&err, *k);
		if (!err.code && (v < 1 || v > 1000))
			abort();
		memset(&err, 0, sizeof err);
		hr_cfg_num(cfg, *k, 0.5, 0, 1e6, &err);
		check(&err, *k);
		memset(&err, 0, sizeof err);
		hr_cfg_bool(cfg, *k, false, &err);
		check(&err, *k);
	}
	for (const char *const *k = str_keys; *k; k++) {
		memset(&err, 0, sizeof err);
		hr_cfg_str(cfg, *k, "", &err);
		check(&err, *k);
	}
	struct retention_opts ro;
	memset(&err, 0, sizeof err);
	serve_retention_opts(cfg, &ro, &err);
	check(&err, NULL);
	struct channel_policy pol;
	memset(&err, 0, sizeof err);
	int rc = channel_policy_init(&pol, cfg, &err);
	check(&err, NULL);
	if (rc == 0) {
		size_t ti;
		json_t *t;
		json_array_foreach(hr_cfg_get(cfg, "tenants"), ti, t)
		{
			const char *id = json_string_value(json_object_get(t, "id"));
			const struct channel_tenant_ns *ns =
			    id ? channel_policy_ns(&pol, id) : NULL;
			if (ns && (!memchr(ns->env_prefix, '\0', sizeof ns->env_prefix) ||
			           !memchr(ns->file_dir, '\0', sizeof ns->file_dir)))
				abort();
		}
		channel_policy_clear(&pol);
	}
	g_nunits = 0;
	memset(&err, 0, sizeof err);
	if (serve_sync_config(cfg, &g_store, &err) != 0 && err.msg[0] == '\0')
		abort();
	json_decref(cfg);
	return 0;
}
