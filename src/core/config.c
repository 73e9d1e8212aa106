/*
 * config.c - YAML config via libfyaml, re-emitted as JSON and held as a
 * jansson tree: one parser for the file format, one data model for readers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

json_t *hr_config_load(const char *path, struct hr_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		hr_fail(err, HR_EIO, "config", "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	fclose(f);
	struct fy_parse_cfg cfg = {.flags = FYPCF_DEFAULT_DOC};
	return from_fy(fy_document_build_from_file(&cfg, path), path, err);
}

json_t *hr_config_parse(const char *text, size_t len, struct hr_err *err)
{
	struct fy_parse_cfg cfg = {.flags = FYPCF_DEFAULT_DOC};
	return from_fy(fy_document_build_from_string(&cfg, text, len), "config", err);
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
		return strdup(buf);
	}
	return strdup(ref);
}
