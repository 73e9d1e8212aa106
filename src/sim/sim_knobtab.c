/*
 * sim_knobtab.c - see sim_knobtab.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_knobtab.h"

bool sim_as_number(json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (json_is_string(v) && *json_string_value(v)) {
		char *end;
		*out = strtod(json_string_value(v), &end);
		return *end == '\0';
	}
	return false;
}

const struct sim_knob_num *sim_knob_num_find(const struct sim_knob_num *tab, size_t n,
                                             const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, tab[i].name) == 0)
			return &tab[i];
	return NULL;
}

int sim_knob_num_set(const struct sim_knob_num *kn, void *knobs, json_t *v, const char *field,
                     struct hr_err *err)
{
	double d;
	if (!sim_as_number(v, &d) || d < kn->min || d > kn->max)
		return hr_fail(err, HR_EINVAL, field, "%s must be a number in [%g, %g]", field,
		               kn->min, kn->max);
	memcpy((char *)knobs + kn->off, &d, sizeof d);
	return 0;
}

void sim_knob_nums_json(json_t *o, const struct sim_knob_num *tab, size_t n, const void *knobs)
{
	for (size_t i = 0; i < n; i++) {
		double d;
		memcpy(&d, (const char *)knobs + tab[i].off, sizeof d);
		json_object_set_new(o, tab[i].name, json_real(d));
	}
}

int sim_knob_seed(json_t *v, const char *field, bool *has_seed, uint64_t *seed, struct hr_err *err)
{
	if (json_is_null(v)) {
		*has_seed = false;
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*has_seed = true;
		*seed = (uint64_t)json_integer_value(v);
	} else {
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-negative integer", field);
	}
	return 0;
}

json_t *sim_account_entry(json_t *entry, const char *base, char *id, size_t size, char *cbase,
                          size_t cbsize, struct hr_err *err)
{
	char field[192];
	const char *v = json_string_value(json_object_get(entry, "id"));
	snprintf(field, sizeof field, "%s.id", base);
	if (!v || !*v || strlen(v) >= size) {
		hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
		return NULL;
	}
	hr_strlcpy(id, v, size);
	json_t *cfg = json_object_get(entry, "config");
	if (json_is_object(cfg)) {
		snprintf(cbase, cbsize, "%s.config", base);
		return cfg;
	}
	hr_strlcpy(cbase, base, cbsize);
	return entry;
}
