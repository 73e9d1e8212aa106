/*
 * config.c - YAML config via libfyaml, re-emitted as JSON and held as a
 * jansson tree: one parser for the file format, one data model for readers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include <libfyaml.h>

#include "core/config.h"

static json_t *from_fy(struct fy_document *fyd, const char *what, struct hr_err *err)
{
	if (!fyd) {
		hr_fail(err, HR_EINVAL, what, "%s is not valid YAML", what);
		return NULL;
	}
	char *js = fy_emit_document_to_string(fyd, FYECF_MODE_JSON_ONELINE);
	fy_document_destroy(fyd);
	if (!js) {
		hr_fail(err, HR_EINVAL, what, "%s could not be converted", what);
		return NULL;
	}
	json_error_t je;
	json_t *root = json_loads(js, JSON_DECODE_ANY, &je);
	free(js);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		hr_fail(err, HR_EINVAL, what, "%s must be a mapping at the top level", what);
		return NULL;
	}
	return root;
}

/* A config file is a few KiB; this bounds what a wrong path (a log, a
 * device) makes Herald read. */
#define CONFIG_MAX_BYTES (4 << 20)

/*
 * Only UTF-8 text (no NUL) reaches libfyaml: Debian 12's libfyaml 0.8 never
 * returns from a directive line holding a byte that is not UTF-8 ("%\x80":
 * found by fuzz/fuzz_config.c), and YAML streams are Unicode text anyway.
 * text[len] must be '\0'.
 */
static json_t *parse_text(const char *text, size_t len, const char *what, struct hr_err *err)
{
	size_t bad = hr_utf8_check(text, len);
	if (bad < len) {
		size_t line = 1;
		for (size_t i = 0; i < bad; i++)
			line += text[i] == '\n';
		hr_fail(err, HR_EINVAL, what, "%s is not UTF-8 text (line %zu, byte %zu)", what,
		        line, bad + 1);
		return NULL;
	}
	struct fy_parse_cfg cfg = {.flags = FYPCF_DEFAULT_DOC};
	return from_fy(fy_document_build_from_string(&cfg, text, len), what, err);
}

json_t *hr_config_load(const char *path, struct hr_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		hr_fail(err, HR_EIO, "config", "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *text = malloc(CONFIG_MAX_BYTES + 1);
	size_t len = text ? fread(text, 1, CONFIG_MAX_BYTES + 1, f) : 0;
	int rerr = ferror(f);
	fclose(f);
	if (!text) {
		hr_fail(err, HR_ENOMEM, "config", "out of memory");
		return NULL;
	}
	json_t *root = NULL;
	if (rerr)
		hr_fail(err, HR_EIO, "config", "cannot read %s", path);
	else if (len > CONFIG_MAX_BYTES)
		hr_fail(err, HR_ELIMIT, "config", "%s is larger than %d MiB", path,
		        CONFIG_MAX_BYTES >> 20);
	else {
		text[len] = '\0';
		root = parse_text(text, len, path, err);
	}
	free(text);
	return root;
}

json_t *hr_config_parse(const char *text, size_t len, struct hr_err *err)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		hr_fail(err, HR_ENOMEM, "config", "out of memory");
		return NULL;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	json_t *root = parse_text(copy, len, "config", err);
	free(copy);
	return root;
}

json_t *hr_cfg_get(json_t *root, const char *path)
{
	char key[128];
	json_t *node = root;
	while (node && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof key)
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		node = json_is_object(node) ? json_object_get(node, key) : NULL;
		path += n + (dot ? 1 : 0);
	}
	return node;
}

const char *hr_cfg_str(json_t *root, const char *path, const char *def, struct hr_err *err)
{
	json_t *v = hr_cfg_get(root, path);
	if (!v || json_is_null(v))
		return def;
	if (!json_is_string(v)) {
		hr_fail(err, HR_EINVAL, path, "%s must be a string", path);
		return def;
	}
	return json_string_value(v);
}

static bool as_number(json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (json_is_string(v)) {
		char *end;
		const char *s = json_string_value(v);
		errno = 0;
		*out = strtod(s, &end);
		return *s && *end == '\0' && errno == 0;
	}
	return false;
}

int64_t hr_cfg_int(json_t *root, const char *path, int64_t def, int64_t min, int64_t max,
                   struct hr_err *err)
{
	json_t *v = hr_cfg_get(root, path);
	double d;
	if (!v || json_is_null(v))
		return def;
	if (!as_number(v, &d) || d != (double)(int64_t)d) {
		hr_fail(err, HR_EINVAL, path, "%s must be an integer", path);
		return def;
	}
	if (d < (double)min || d > (double)max) {
		hr_fail(err, HR_EINVAL, path, "%s must be between %lld and %lld", path,
		        (long long)min, (long long)max);
		return def;
	}
	return (int64_t)d;
}

double hr_cfg_num(json_t *root, const char *path, double def, double min, double max,
                  struct hr_err *err)
{
	json_t *v = hr_cfg_get(root, path);
	double d;
	if (!v || json_is_null(v))
		return def;
	if (!as_number(v, &d)) {
		hr_fail(err, HR_EINVAL, path, "%s must be a number", path);
		return def;
	}
	if (d < min || d > max) {
		hr_fail(err, HR_EINVAL, path, "%s must be between %g and %g", path, min, max);
		return def;
	}
	return d;
}

bool hr_cfg_bool(json_t *root, const char *path, bool def, struct hr_err *err)
{
	json_t *v = hr_cfg_get(root, path);
	if (!v || json_is_null(v))
		return def;
	if (json_is_boolean(v))
		return json_is_true(v);
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
			return true;
		if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
			return false;
	}
	hr_fail(err, HR_EINVAL, path, "%s must be true or false", path);
	return def;
}

char *hr_secret_resolve(const char *ref, const char *field, struct hr_err *err)
{
	if (!ref) {
		hr_fail(err, HR_EINVAL, field, "%s is required", field);
		return NULL;
	}
	if (strncmp(ref, "env:", 4) == 0) {
		const char *v = getenv(ref + 4);
		if (!v || !*v) {
			hr_fail(err, HR_EINVAL, field, "%s: environment variable %s is not set",
			        field, ref + 4);
			return NULL;
		}
		return strdup(v);
	}
	if (strncmp(ref, "file:", 5) == 0) {
		FILE *f = fopen(ref + 5, "r");
		if (!f) {
			hr_fail(err, HR_EINVAL, field, "%s: cannot read %s: %s", field, ref + 5,
			        strerror(errno));
			return NULL;
		}
		char buf[8192];
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		char *out = strdup(buf);
		explicit_bzero(buf, sizeof buf);
		return out;
	}
	return strdup(ref);
}

#define SECRET_FILE_MAX (64 * 1024)

/* A path below dir made only of plain components ([A-Za-z0-9._-], none
 * starting with '.'), so "..", "//" and hidden files never get that far. */
static bool plain_path_below(const char *path, const char *dir)
{
	size_t dl = strlen(dir);
	if (dl == 0 || dir[dl - 1] != '/' || strncmp(path, dir, dl) != 0)
		return false;
	const char *p = path + dl;
	if (!*p)
		return false;
	bool start = true;
	for (; *p; p++) {
		if (*p == '/') {
			if (start)
				return false;
			start = true;
			continue;
		}
		if (start && *p == '.')
			return false;
		start = false;
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	}
	return !start;
}

/* Reads a regular file of at most SECRET_FILE_MAX bytes whose real path is
 * inside dir. NULL for anything else. Never blocks on a FIFO or device. */
static char *read_secret_file(const char *path, const char *dir)
{
	char real[PATH_MAX], realdir[PATH_MAX];
	if (!realpath(path, real) || !realpath(dir, realdir))
		return NULL;
	size_t rl = strlen(realdir);
	if (strncmp(real, realdir, rl) != 0 || real[rl] != '/')
		return NULL;
	int fd = open(real, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    st.st_size <= SECRET_FILE_MAX && (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		size_t n = 0;
		while (n < (size_t)st.st_size) {
			ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		buf[n] = '\0';
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		if (n == 0 || strlen(buf) != n) { /* empty, or NUL inside */
			explicit_bzero(buf, (size_t)st.st_size + 1);
			free(buf);
			buf = NULL;
		}
	}
	close(fd);
	return buf;
}

char *hr_secret_resolve_ns(const char *ref, const char *env_prefix, const char *file_dir,
                           const char *field, struct hr_err *err)
{
	bool allowed = false;
	if (ref && strncmp(ref, "env:", 4) == 0) {
		const char *name = ref + 4;
		size_t pl = env_prefix ? strlen(env_prefix) : 0;
		allowed = pl > 0 && strncmp(name, env_prefix, pl) == 0 && name[pl] != '\0';
		for (const char *c = name; allowed && *c; c++)
			allowed = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			          (*c >= '0' && *c <= '9') || *c == '_';
	} else if (ref && strncmp(ref, "file:", 5) == 0) {
		allowed = file_dir && plain_path_below(ref + 5, file_dir);
	}
	if (!allowed) {
		hr_fail(err, HR_EFORBIDDEN, field,
		        "%s: this secret reference is not allowed for this tenant (use env:%s... "
		        "or file:%s...)",
		        field, env_prefix ? env_prefix : "(none)", file_dir ? file_dir : "(none)");
		return NULL;
	}
	char *out = NULL;
	if (ref[0] == 'e') {
		const char *v = getenv(ref + 4);
		out = v && *v && strlen(v) <= SECRET_FILE_MAX ? strdup(v) : NULL;
	} else {
		out = read_secret_file(ref + 5, file_dir);
	}
	if (!out)
		hr_fail(err, HR_EINVAL, field,
		        "%s: this secret reference cannot be used (it must name a non-empty "
		        "variable or a readable regular file)",
		        field);
	return out;
}

/* ---------------------------------------------------------------------------
 * data_sources
 * ------------------------------------------------------------------------- */

const char *hr_ds_driver_name(enum hr_ds_driver d)
{
	switch (d) {
	case HR_DS_MARIADB:
		return "mariadb";
	case HR_DS_POSTGRES:
		return "postgres";
	case HR_DS_REDSHIFT:
		return "redshift";
	case HR_DS_ODBC:
		return "odbc";
	}
	return "?";
}

/* [A-Za-z0-9_-], 1..63: source, query and tenant-facing names. */
static bool ds_plain_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

void hr_ds_conf_free(struct hr_ds_conf *c, size_t n)
{
	if (!c)
		return;
	for (size_t i = 0; i < n; i++) {
		struct hr_ds_conf *d = &c[i];
		free(d->name);
		free(d->host);
		free(d->socket);
		free(d->database);
		free(d->user);
		free(d->dsn);
		if (d->password) {
			explicit_bzero(d->password, strlen(d->password));
			free(d->password);
		}
		for (size_t t = 0; t < d->ntenants; t++)
			free(d->tenants[t]);
		free(d->tenants);
		for (size_t q = 0; q < d->nqueries; q++) {
			free(d->queries[q].name);
			free(d->queries[q].sql);
		}
		free(d->queries);
	}
	free(c);
}

/* An optional string key of entry e copied into *dst (NULL when absent). */
static int ds_str(json_t *e, const char *key, const char *at, char **dst, size_t max,
                  struct hr_err *err)
{
	json_t *v = json_object_get(e, key);
	*dst = NULL;
	if (!v || json_is_null(v))
		return 0;
	char field[96];
	snprintf(field, sizeof field, "%s.%s", at, key);
	if (!json_is_string(v) || json_string_length(v) == 0)
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v))
		return hr_fail(err, HR_EINVAL, field, "%s is longer than %zu bytes or holds a NUL",
		               field, max);
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : hr_fail(err, HR_ENOMEM, field, "out of memory");
}

static int ds_entry(json_t *e, const char *at, struct hr_ds_conf *d, struct hr_err *err)
{
	static const char *const keys[] = {"name",       "driver",  "host",     "port", "socket",
	                                   "database",   "user",    "password", "dsn",  "pool_size",
	                                   "timeout_ms", "tenants", "queries",  NULL};
	char field[96];
	if (!json_is_object(e))
		return hr_fail(err, HR_EINVAL, at, "%s must be a mapping", at);
	const char *k;
	json_t *v;
	json_object_foreach(e, k, v)
	{
		bool known = false;
		for (size_t i = 0; keys[i] && !known; i++)
			known = strcmp(k, keys[i]) == 0;
		if (!known) {
			snprintf(field, sizeof field, "%s.%.40s", at, k);
			return hr_fail(err, HR_EINVAL, field, "%s: unknown key", field);
		}
	}
	int rc;
	char *driver = NULL, *pw = NULL;
	if ((rc = ds_str(e, "name", at, &d->name, 63, err)) ||
	    (rc = ds_str(e, "driver", at, &driver, 16, err)) ||
	    (rc = ds_str(e, "host", at, &d->host, 255, err)) ||
	    (rc = ds_str(e, "socket", at, &d->socket, 255, err)) ||
	    (rc = ds_str(e, "database", at, &d->database, 255, err)) ||
	    (rc = ds_str(e, "user", at, &d->user, 255, err)) ||
	    (rc = ds_str(e, "dsn", at, &d->dsn, 4096, err)) ||
	    (rc = ds_str(e, "password", at, &pw, 4096, err))) {
		free(driver);
		free(pw);
		return rc;
	}
	snprintf(field, sizeof field, "%s.name", at);
	if (!d->name || !ds_plain_name(d->name)) {
		free(driver);
		free(pw);
		return hr_fail(err, HR_EINVAL, field,
		               "%s is required: 1 to 63 letters, digits, '_' or '-'", field);
	}
	snprintf(field, sizeof field, "%s.driver", at);
	if (!driver)
		rc = hr_fail(err, HR_EINVAL, field,
		             "%s is required (mariadb, postgres, redshift or odbc)", field);
	else if (!strcmp(driver, "mariadb") || !strcmp(driver, "mysql"))
		d->driver = HR_DS_MARIADB;
	else if (!strcmp(driver, "postgres") || !strcmp(driver, "postgresql"))
		d->driver = HR_DS_POSTGRES;
	else if (!strcmp(driver, "redshift"))
		d->driver = HR_DS_REDSHIFT;
	else if (!strcmp(driver, "odbc"))
		d->driver = HR_DS_ODBC;
	else
		rc = hr_fail(err, HR_EINVAL, field,
		             "%s must be mariadb, postgres, redshift or odbc, not \"%.32s\"", field,
		             driver);
	free(driver);
	if (rc) {
		free(pw);
		return rc;
	}
	if (d->driver == HR_DS_ODBC && !d->dsn) {
		free(pw);
		snprintf(field, sizeof field, "%s.dsn", at);
		return hr_fail(err, HR_EINVAL, field, "%s is required for the odbc driver", field);
	}
	if (d->driver != HR_DS_ODBC && (d->dsn || (!d->host && !d->socket) || !d->database)) {
		free(pw);
		snprintf(field, sizeof field, "%s.%s", at,
		         d->dsn         ? "dsn"
		         : !d->database ? "database"
		                        : "host");
		return hr_fail(err, HR_EINVAL, field, "%s: %s", field,
		               d->dsn         ? "dsn is for the odbc driver only"
		               : !d->database ? "database is required"
		                              : "host or socket is required");
	}
	if (pw) {
		snprintf(field, sizeof field, "%s.password", at);
		d->password = hr_secret_resolve(pw, field, err);
		explicit_bzero(pw, strlen(pw));
		free(pw);
		if (!d->password)
			return err ? err->code : HR_EINVAL;
	}
	struct hr_err e2 = {0};
	snprintf(field, sizeof field, "%s.port", at);
	d->port = (int)hr_cfg_int(e, "port", 0, 1, 65535, &e2);
	if (e2.code)
		return hr_fail(err, HR_EINVAL, field, "%s must be an integer from 1 to 65535",
		               field);
	snprintf(field, sizeof field, "%s.pool_size", at);
	d->pool_size = (int)hr_cfg_int(e, "pool_size", 4, 1, 64, &e2);
	if (e2.code)
		return hr_fail(err, HR_EINVAL, field, "%s must be an integer from 1 to 64", field);
	snprintf(field, sizeof field, "%s.timeout_ms", at);
	d->timeout_ms = (int)hr_cfg_int(e, "timeout_ms", 5000, 100, 600000, &e2);
	if (e2.code)
		return hr_fail(err, HR_EINVAL, field, "%s must be an integer from 100 to 600000",
		               field);

	json_t *ten = json_object_get(e, "tenants");
	snprintf(field, sizeof field, "%s.tenants", at);
	if (ten && !json_is_null(ten)) {
		if (!json_is_array(ten) || json_array_size(ten) > HR_DS_MAX_TENANTS)
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be a list of at most %d tenant ids", field,
			               HR_DS_MAX_TENANTS);
		d->tenants = calloc(json_array_size(ten) + 1, sizeof *d->tenants);
		if (!d->tenants)
			return hr_fail(err, HR_ENOMEM, field, "out of memory");
		size_t i;
		json_array_foreach(ten, i, v)
		{
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) > 128) {
				snprintf(field, sizeof field, "%s.tenants[%zu]", at, i);
				return hr_fail(err, HR_EINVAL, field, "%s must be a tenant id",
				               field);
			}
			if (!(d->tenants[d->ntenants++] = strdup(json_string_value(v))))
				return hr_fail(err, HR_ENOMEM, field, "out of memory");
		}
	}
	json_t *qs = json_object_get(e, "queries");
	snprintf(field, sizeof field, "%s.queries", at);
	if (qs && !json_is_null(qs)) {
		if (!json_is_object(qs) || json_object_size(qs) > HR_DS_MAX_QUERIES)
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be a mapping of at most %d name: SQL pairs", field,
			               HR_DS_MAX_QUERIES);
		d->queries = calloc(json_object_size(qs) + 1, sizeof *d->queries);
		if (!d->queries)
			return hr_fail(err, HR_ENOMEM, field, "out of memory");
		json_object_foreach(qs, k, v)
		{
			snprintf(field, sizeof field, "%s.queries.%.40s", at, k);
			if (!ds_plain_name(k))
				return hr_fail(
				    err, HR_EINVAL, field,
				    "%s: a query name is 1 to 63 letters, digits, '_' or '-'",
				    field);
			if (!json_is_string(v) || json_string_length(v) == 0 ||
			    json_string_length(v) > HR_DS_MAX_SQL ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return hr_fail(err, HR_EINVAL, field,
				               "%s must be SQL text of 1 to %d bytes", field,
				               HR_DS_MAX_SQL);
			struct hr_ds_query *q = &d->queries[d->nqueries++];
			q->name = strdup(k);
			q->sql = strdup(json_string_value(v));
			if (!q->name || !q->sql)
				return hr_fail(err, HR_ENOMEM, field, "out of memory");
		}
	}
	return 0;
}

int hr_cfg_data_sources(json_t *root, struct hr_ds_conf **out, size_t *n, struct hr_err *err)
{
	*out = NULL;
	*n = 0;
	json_t *list = root ? json_object_get(root, "data_sources") : NULL;
	if (!list || json_is_null(list))
		return 0;
	if (!json_is_array(list) || json_array_size(list) > HR_DS_MAX_SOURCES)
		return hr_fail(err, HR_EINVAL, "data_sources",
		               "data_sources must be a list of at most %d sources",
		               HR_DS_MAX_SOURCES);
	size_t cnt = json_array_size(list);
	struct hr_ds_conf *c = calloc(cnt + 1, sizeof *c);
	if (!c)
		return hr_fail(err, HR_ENOMEM, "data_sources", "out of memory");
	for (size_t i = 0; i < cnt; i++) {
		char at[48];
		snprintf(at, sizeof at, "data_sources[%zu]", i);
		int rc = ds_entry(json_array_get(list, i), at, &c[i], err);
		for (size_t j = 0; rc == 0 && j < i; j++)
			if (!strcmp(c[j].name, c[i].name)) {
				char field[64];
				snprintf(field, sizeof field, "%s.name", at);
				rc = hr_fail(err, HR_EINVAL, field,
				             "%s: \"%s\" is already the name of data_sources[%zu]",
				             field, c[i].name, j);
			}
		if (rc) {
			hr_ds_conf_free(c, i + 1);
			return rc;
		}
	}
	*out = c;
	*n = cnt;
	return 0;
}
