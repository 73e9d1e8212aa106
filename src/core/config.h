/*
 * config.h - Herald's configuration: one YAML file (libfyaml) loaded once and
 * turned into a jansson tree, so the rest of the code reads one JSON shape
 * through a few typed getters that name the offending key on error.
 *
 * Secrets are never inline in production: a value "env:NAME" reads the
 * environment variable NAME, "file:/path" reads the file (trailing newline
 * trimmed); anything else is taken literally (handy for the demo).
 */
#ifndef HR_CONFIG_H
#define HR_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald.h"

/* Loads a YAML (or JSON) file into a jansson object. Caller json_decref()s. */
json_t *hr_config_load(const char *path, struct hr_err *err);
/* Parses YAML text (for tests). Caller json_decref()s. */
json_t *hr_config_parse(const char *text, size_t len, struct hr_err *err);

/* Path lookup with dots: "server.listen". Returns a borrowed node or NULL. */
json_t *hr_cfg_get(json_t *root, const char *path);

/* Typed getters: return def when the key is absent; set err (naming `path`)
 * and return def when present with the wrong type or out of range. Numbers
 * given as YAML strings ("80") are accepted. */
const char *hr_cfg_str(json_t *root, const char *path, const char *def, struct hr_err *err);
int64_t hr_cfg_int(json_t *root, const char *path, int64_t def, int64_t min, int64_t max,
                   struct hr_err *err);
double hr_cfg_num(json_t *root, const char *path, double def, double min, double max,
                  struct hr_err *err);
bool hr_cfg_bool(json_t *root, const char *path, bool def, struct hr_err *err);

/* Resolves a secret reference ("env:X", "file:/p", or a literal). Returns a
 * heap string (caller frees) or NULL with err naming `field`. */
char *hr_secret_resolve(const char *ref, const char *field, struct hr_err *err);
/*
 * Resolves a reference that must lie in one namespace: "env:NAME" with NAME
 * starting with env_prefix, or "file:PATH" naming a regular file whose real
 * path (symlinks resolved) is inside file_dir (which ends with '/'); either
 * may be NULL to allow none. For references a client supplied: HR_EFORBIDDEN
 * "not allowed" when outside the namespace, HR_EINVAL "cannot be used" when
 * inside but unset, unreadable, not a regular file, empty or larger than
 * 64 KiB; neither error says which, what the reference holds, or whether a
 * file exists. Caller frees the result with hr_secret_free.
 */
char *hr_secret_resolve_ns(const char *ref, const char *env_prefix, const char *file_dir,
                           const char *field, struct hr_err *err);

/*
 * data_sources (src/plugins/datasource.h documents the keys): the checked
 * section, one entry per source, passwords resolved (env:/file:). Everything
 * is owned by the array; hr_ds_conf_free() wipes the passwords and frees it.
 */
enum hr_ds_driver {
	HR_DS_MARIADB = 0,
	HR_DS_POSTGRES,
	HR_DS_REDSHIFT, /* libpq: Redshift speaks PostgreSQL's protocol */
	HR_DS_ODBC,
};
const char *hr_ds_driver_name(enum hr_ds_driver d);

struct hr_ds_query {
	char *name;
	char *sql;
};

struct hr_ds_conf {
	char *name;
	enum hr_ds_driver driver;
	char *host;   /* NULL: none */
	int port;     /* 0: the driver's default */
	char *socket; /* MariaDB: the socket file; PostgreSQL: its directory */
	char *database;
	char *user;
	char *dsn;      /* ODBC: "DSN=name" or a driver connection string */
	char *password; /* resolved secret or NULL; wiped by hr_ds_conf_free */
	int pool_size;
	int timeout_ms;
	char **tenants;
	size_t ntenants;
	struct hr_ds_query *queries;
	size_t nqueries;
};

#define HR_DS_MAX_SOURCES 64
#define HR_DS_MAX_QUERIES 256
#define HR_DS_MAX_TENANTS 1024
#define HR_DS_MAX_SQL (64 * 1024)

/* Checks and copies root's data_sources. 0 with *out NULL and *n 0 when the
 * section is absent; else 0 and an array the caller frees with
 * hr_ds_conf_free, or a negative code with err naming the key
 * ("data_sources[1].driver") and nothing allocated. */
int hr_cfg_data_sources(json_t *root, struct hr_ds_conf **out, size_t *n, struct hr_err *err);
void hr_ds_conf_free(struct hr_ds_conf *c, size_t n);

#endif
