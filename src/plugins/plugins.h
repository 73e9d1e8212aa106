/*
 * plugins.h - Herald's side of the plugin contract (include/herald/plugin.h):
 * the loader (plugins.c: dlopen every .so of plugins.dir at start, check,
 * bind to units), the bounded worker pool every hook runs on (pool.c) and
 * the host API plugins call (host.c).
 *
 * Hooks never run on a caller's thread: a caller submits a job and either
 * waits for it up to the hook's deadline (upload rows, stats, export rows:
 * threads that may wait a bounded time) or polls it (the dispatcher's
 * loop, which never waits). A job past its deadline is abandoned: its
 * worker stays busy until the plugin returns, so each plugin may occupy at
 * most `workers - 1` workers when more than one plugin is loaded, and a
 * slow plugin cannot stall the others.
 */
#ifndef HR_PLUGINS_H
#define HR_PLUGINS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald.h"

struct plugins;
struct plugin;
struct message;
struct ds_registry;

enum plugin_hook {
	PH_INIT = 0,
	PH_LIST,
	PH_PREPARE,
	PH_BEFORE_SEND,
	PH_ON_STATUS,
	PH_ON_REPLY,
	PH_STATS,
	PH_EXPORT,
	PH__COUNT
};
const char *plugin_hook_name(enum plugin_hook h); /* "prepare", ... */

#define PLUGIN_REASON_MAX 256
#define PLUGIN_PARAMS_MAX 256
#define PLUGIN_ROUTE_MAX 256

/*
 * Loads plugins per cfg's `plugins` section (absent: an empty set, no
 * thread). Every failure names the file or the config key; on failure
 * nothing stays loaded. ds (borrowed for the set's life, may be NULL) is
 * what herald_ds_query reaches. *out is set on success only.
 */
int plugins_load(json_t *cfg, struct ds_registry *ds, struct plugins **out, struct hr_err *err);
/* Stops the pool (waits for running hooks), runs fini, unloads. NULL ok. */
void plugins_free(struct plugins *p);

size_t plugins_count(const struct plugins *p);
/* The plugin bound to tenant/unit, or NULL (also for p NULL, unit ""). */
const struct plugin *plugins_for_unit(const struct plugins *p, const char *tenant,
                                      const char *unit);
bool plugin_has(const struct plugin *pl, enum plugin_hook h);
const char *plugin_name(const struct plugin *pl);
/* True when some unit of tenant is bound to a plugin with hook h. */
bool plugins_tenant_has(const struct plugins *p, const char *tenant, enum plugin_hook h);
int64_t plugins_timeout_us(const struct plugins *p);
/* Jobs waiting for a worker now; and those plus the ones being run. */
size_t plugins_queue_len(struct plugins *p);
size_t plugins_pending(struct plugins *p);
/* [{name, version, abi, file, units: [tenant/unit...], hooks: [...]}]; with
 * tenant non-NULL only its units are listed (plugins without one of its
 * units are still listed, with no units). Caller decrefs. */
json_t *plugins_describe(const struct plugins *p, const char *tenant);
/* The extra export columns of pl (NULL-terminated), or NULL. */
const char *const *plugin_export_columns(const struct plugin *pl);

/* ---- calls ---- */

/* What a finished call says. */
enum plugin_outcome {
	PO_OK = 0,
	PO_ERROR,   /* the hook returned HERALD_ERROR (reason: its herald_fail) */
	PO_GARBAGE, /* the hook returned something else, or bad output */
	PO_TIMEOUT, /* past the deadline (or still queued at it) */
	PO_BUSY,    /* the pool's queue was full: not run */
};
const char *plugin_outcome_name(enum plugin_outcome o); /* "ok", "error", ... */

/* prepare: the row in, the draft out. Strings are the job's (heap). */
struct plugin_draft {
	char recipient[HR_ADDR_MAX];
	int nparams;
	char *params[PLUGIN_PARAMS_MAX];
	bool skip;
	char skip_reason[PLUGIN_REASON_MAX];
	/* What the plugin set instead of the upload's ("" = the upload's):
	 * herald_draft_set_channel / _set_route / _set_policy, as given (the
	 * upload checks them like its own fields). */
	char channel[16], account[HR_NAME_MAX];
	char route[PLUGIN_ROUTE_MAX];
	char policy[16];
};
void plugin_draft_clear(struct plugin_draft *d);

struct plugin_job;

/* Synchronous calls: run on the pool, wait up to the deadline. They return
 * the outcome; why gets "plugin <name>: <hook> <reason>" for anything but
 * PO_OK. */
enum plugin_outcome plugins_prepare(struct plugins *p, const struct plugin *pl, const char *tenant,
                                    const char *unit, const char *const *names,
                                    const char *const *values, size_t ncols, struct plugin_draft *d,
                                    char *why, size_t whylen);
/*
 * prepare over many rows in one pool job (what an upload does: one pool
 * round trip per row cost more than a trivial hook itself). The rows run
 * in order on one worker, each call with hook_timeout_ms at most; the job
 * has hook_timeout_ms for its first PLUGIN_PREPARE_ROWS_PER_TIMEOUT rows
 * and as much again for each as many more, and the caller waits that long
 * at most. A row not finished by then is PO_TIMEOUT, its why naming the
 * plugin. Each row: values (ncols, NULL as "") and d (the row as mapped)
 * in; o, why ("plugin <name>: ..." unless PO_OK, and a skip's reason) and,
 * for PO_OK, d as prepared out. 0, or HR_ENOMEM / HR_EINVAL (more than
 * PLUGIN_PREPARE_ROWS_MAX rows) with nothing run.
 */
#define PLUGIN_PREPARE_ROWS_MAX 256
#define PLUGIN_PREPARE_ROWS_PER_TIMEOUT 64
struct plugin_prep {
	const char *const *values;
	struct plugin_draft d;
	enum plugin_outcome o;
	char why[PLUGIN_REASON_MAX];
};
int plugins_prepare_rows(struct plugins *p, const struct plugin *pl, const char *tenant,
                         const char *unit, const char *const *names, size_t ncols,
                         struct plugin_prep *rows, size_t n);
/* unit_stats: *out an object of key -> string (caller decrefs). */
enum plugin_outcome plugins_stats(struct plugins *p, const struct plugin *pl, const char *tenant,
                                  const char *unit, json_t **out, char *why, size_t whylen);
/* export_row: *out an object column -> string (caller decrefs). */
enum plugin_outcome plugins_export_row(struct plugins *p, const struct plugin *pl,
                                       const struct message *m, json_t **out, char *why,
                                       size_t whylen);
/* list_campaigns: filters an object of key -> string (borrowed); *out an
 * array of objects (caller decrefs). */
enum plugin_outcome plugins_list(struct plugins *p, const struct plugin *pl, const char *tenant,
                                 const char *unit, json_t *filters, json_t **out, char *why,
                                 size_t whylen);

/* Asynchronous before_send (the dispatcher's gate): the job runs on the
 * pool; notify(arg) is called (from a worker, quick) once it is done.
 * NULL when the job cannot be made (out of memory): treat as PO_BUSY. */
struct plugin_job *plugins_before_send_submit(struct plugins *p, const struct plugin *pl,
                                              const struct message *m, void (*notify)(void *),
                                              void *arg);
/* Whether the job is finished (done or past its deadline at now_mono). When
 * true: *out its outcome, skip/reason the verdict (reason: "plugin <name>:
 * ..." for skips and failures). */
bool plugins_job_poll(struct plugin_job *j, int64_t now_mono, enum plugin_outcome *out, bool *skip,
                      char *reason, size_t reasonlen);
int64_t plugins_job_deadline(const struct plugin_job *j);
/* A before_send job's route change (herald_verdict_route): after
 * plugins_job_poll said PO_OK without a skip, true and *out filled when the
 * plugin asked for one (out->text heap, the caller frees it; NULL: none
 * given); false otherwise. */
struct plugin_route {
	char channel[16], account[HR_NAME_MAX];
	char *text;
};
bool plugins_job_route(struct plugin_job *j, struct plugin_route *out);
/* The caller is done with the job (a running one finishes on its own);
 * its notify is never called after this returns. */
void plugins_job_release(struct plugin_job *j);

/*
 * After-commit events (on_status / on_reply) through the store's durable
 * outbox (store.h plugin_event_row; events.c): plugins_events_start tells
 * the store which tenants get events (those with such a hook bound) and
 * starts the deliverer, which hands them to the pool with backpressure,
 * never dropping one; plugins_events_wake nudges it (a run that wrote
 * events committed: the store's observer). Stopped by plugins_free, before
 * the store closes. 0 or an error.
 */
struct store;
int plugins_events_start(struct plugins *p, struct store *st, struct hr_err *err);
void plugins_events_wake(struct plugins *p);
/* Direct events, without the outbox (tests of the hooks): queued, never
 * waited for, refused when the queue is full. The message's unit is read
 * from the store by the worker (msg_get). */
void plugins_set_store(struct plugins *p, struct store *st);
void plugins_status_event(struct plugins *p, const char *message_id, const char *tenant, int from,
                          int to);
void plugins_reply_event(struct plugins *p, const char *message_id, const char *tenant,
                         const char *text, const char *payload);

/* Prometheus text of the plugin metrics (calls, errors, timeouts,
 * duration per plugin and hook; each plugin's own counters). */
void plugins_metrics_render(const struct plugins *p, struct hr_buf *b);

#endif
