/*
 * sim_knobtab.h - what the providers' simulators read from their config
 * alike, written once (sim_knobtab.c): the numeric knobs (each simulator
 * keeps a table: name, the double's offset in its knobs struct, the
 * allowed range, and hands it here), the seed, an account entry's id.
 */
#ifndef HR_SIM_KNOBTAB_H
#define HR_SIM_KNOBTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "herald.h"

struct sim_knob_num {
	const char *name;
	size_t off; /* of a double in the knobs struct */
	double min, max;
};

/* A JSON number, or a string that is one whole number ("1.5"). */
bool sim_as_number(json_t *v, double *out);

/* The entry of tab (n entries) named key, or NULL. */
const struct sim_knob_num *sim_knob_num_find(const struct sim_knob_num *tab, size_t n,
                                             const char *key);
/* Sets the knob kn of the struct at knobs from v: 0, or HR_EINVAL
 * "<field> must be a number in [min, max]". */
int sim_knob_num_set(const struct sim_knob_num *kn, void *knobs, json_t *v, const char *field,
                     struct hr_err *err);
/* Adds each knob of tab as a real to o. */
void sim_knob_nums_json(json_t *o, const struct sim_knob_num *tab, size_t n, const void *knobs);

/* An accounts[] entry (at base in the config): its id copied into id
 * (size bytes), and the object its keys sit in, returned: the entry's
 * "config" object when it has one, else the entry itself; cbase (cbsize
 * bytes) gets that object's path ("<base>.config" or base). NULL with err
 * ("<base>.id must be a non-empty string") when the id is missing, empty or
 * too long. */
json_t *sim_account_entry(json_t *entry, const char *base, char *id, size_t size, char *cbase,
                          size_t cbsize, struct hr_err *err);

/* The "seed" knob: null unsets it; else a non-negative JSON integer, or
 * HR_EINVAL "<field> must be a non-negative integer". */
int sim_knob_seed(json_t *v, const char *field, bool *has_seed, uint64_t *seed, struct hr_err *err);

#endif
