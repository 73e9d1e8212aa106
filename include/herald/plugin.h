/*
 * herald/plugin.h - the whole contract between Herald and a business-unit
 * plugin (ABI version 1.1: see HERALD_PLUGIN_ABI_MINOR). A plugin includes
 * this header and nothing else of Herald's; it sees opaque handles and the
 * functions below, never
 * Herald's structs, jansson or libcurl types, so Herald's internals may
 * change without breaking a plugin built against ABI 1.
 *
 * A plugin is a shared object (cc -shared -fPIC -I include x.c -o x.so) put
 * in the configured plugin directory (plugins.dir). At start Herald loads
 * every *.so there, reads the one descriptor it exports with
 * HERALD_PLUGIN(...), checks the ABI version, runs init, and binds the
 * plugin to the business units named in plugins.units. Any problem (a
 * wrong ABI, a duplicate name, a missing symbol, a failing init, a unit
 * bound to an unknown plugin) stops `herald serve` with an error naming
 * the file; nothing is half-loaded.
 *
 * Threads: hooks run on Herald's plugin worker pool, several at once
 * (also several calls of the same hook): a plugin keeps no unguarded
 * mutable globals. Each call has a deadline (plugins.hook_timeout_ms); a
 * call past it is abandoned (its result ignored, the reason recorded) and
 * must still return eventually, since its worker stays busy until then.
 *
 * Ownership, everywhere below:
 *  - Every handle Herald passes in (ctx, records, messages, outputs) and
 *    every string read from one is borrowed for the duration of the call
 *    only; keep nothing of it after the hook returns.
 *  - Strings a plugin passes to a setter are copied by Herald before the
 *    setter returns: the plugin may free or reuse them at once.
 *  - herald_alloc/herald_strdup memory belongs to the call's arena and is
 *    freed by Herald when the hook returns; never free() it.
 *  - herald_config_get strings live as long as the plugin is loaded.
 *  - The descriptor and everything it points to (name, version,
 *    export_columns) are the plugin's, static, and must stay unchanged.
 */
#ifndef HERALD_PLUGIN_H
#define HERALD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HERALD_PLUGIN_ABI 1
/*
 * Versions. HERALD_PLUGIN_ABI, the descriptor's abi field, changes only
 * when a plugin built before could not work any more (a descriptor field
 * moved, a function changed meaning); Herald refuses a plugin of another
 * ABI, and one whose descriptor's size field is not this header's.
 * Additions an older plugin never sees keep ABI 1 and raise
 * HERALD_PLUGIN_ABI_MINOR instead, which a plugin may test at compile
 * time (#if HERALD_PLUGIN_ABI_MINOR >= 1):
 *   1.0  the first ABI (no HERALD_PLUGIN_ABI_MINOR defined);
 *   1.1  host functions herald_verdict_route (before_send changes a
 *        message's route) and herald_draft_set_channel / _set_route /
 *        _set_policy (prepare sets a row's sending); the descriptor is
 *        unchanged, so 1.0 plugins load and run as before.
 * A plugin that calls a 1.1 function does not load on a Herald of 1.0:
 * the start fails naming the plugin's file and the missing symbol (the
 * loader resolves every symbol at start), never at the first call. A
 * later minor version that appends hooks to the descriptor would accept
 * the smaller size of older plugins, reading their missing hooks as
 * absent; nothing is appended in 1.1.
 */
#define HERALD_PLUGIN_ABI_MINOR 1

/* What every hook returns. Anything else is "garbage": recorded as an error
 * of the plugin, the call's outputs ignored. */
#define HERALD_OK 0
#define HERALD_ERROR (-1)

enum herald_log_level {
	HERALD_LOG_DEBUG = 0,
	HERALD_LOG_INFO = 1,
	HERALD_LOG_WARN = 2,
	HERALD_LOG_ERROR = 3,
};

/* ---- opaque handles (all borrowed for one call) ---- */
struct herald_ctx;     /* one call: the plugin, its unit, arena, deadline   */
struct herald_record;  /* a spreadsheet row or data-source record: columns   */
struct herald_draft;   /* the message prepare makes from a record            */
struct herald_msg;     /* a read-only view of a stored message               */
struct herald_verdict; /* what before_send decides                          */
struct herald_event;   /* a status change or a reply / button press          */
struct herald_kv;      /* an output of key -> value pairs (stats, columns)   */
struct herald_filter;  /* list_campaigns' filters (query parameters)         */
struct herald_list;    /* list_campaigns' output: items of key -> value      */

/* ---- the descriptor ---- */

/*
 * Every hook is optional (NULL); the default when absent is written beside
 * it. A hook returns HERALD_OK, or HERALD_ERROR after herald_fail() saying
 * why (the reason is recorded in the message's audit trail, or the row's
 * validation error, with the plugin's name).
 */
struct herald_plugin {
	uint32_t abi;        /* HERALD_PLUGIN_ABI, set by HERALD_PLUGIN */
	uint32_t size;       /* sizeof(struct herald_plugin), set by HERALD_PLUGIN */
	const char *name;    /* 1..63 of [a-z0-9_-], unique among loaded plugins */
	const char *version; /* free text, e.g. "1.2.0" */

	/* At start, once, before any hook; HERALD_ERROR stops Herald's start.
	 * Default: nothing. */
	int (*init)(struct herald_ctx *c);
	/* At stop, once, after the last hook returned. Default: nothing. */
	void (*fini)(struct herald_ctx *c);

	/* GET /v1/units/{unit}/campaigns?k=v: campaigns the unit offers, given
	 * the query's filters; each item added with herald_list_add. Default:
	 * the unit's batches as Herald stores them. */
	int (*list_campaigns)(struct herald_ctx *c, const struct herald_filter *f,
	                      struct herald_list *out);
	/* One row of an upload (or record of a data source) of the unit becomes
	 * a message: change the recipient or the template parameters, set the
	 * row's channel, route or delivery policy (1.1), or skip the row with
	 * a reason (it is reported invalid, never sent). Herald hands the pool
	 * many rows per job; the hook still sees one row per call, each call
	 * with its own deadline. Default: the row as the upload's column
	 * mapping reads it. */
	int (*prepare)(struct herald_ctx *c, const struct herald_record *row,
	               struct herald_draft *d);
	/* Just before a message of the unit is sent: allow (do nothing), skip
	 * with a reason (the message becomes CANCELLED, never sent) or send it
	 * on another route (herald_verdict_route, 1.1). Default: allow. An error or a timeout sends nothing: the message is
	 * retried later like a transient failure, and fails once its attempts
	 * are spent. */
	int (*before_send)(struct herald_ctx *c, const struct herald_msg *m,
	                   struct herald_verdict *v);
	/* After a status change of a message of the unit is committed (async:
	 * never delays the change). Default: nothing. Delivered at least once:
	 * the event is stored with the change and called again after a crash
	 * (or a store error) that came before it was marked done, so make the
	 * hook idempotent (key on herald_msg_id and the event's status). A
	 * message's events come in commit order, each once the one before
	 * returned or passed its deadline; an error or a timeout is logged and
	 * counted, and the event counts as done. */
	int (*on_status)(struct herald_ctx *c, const struct herald_msg *m,
	                 const struct herald_event *e);
	/* After a reply or button press linked to a message of the unit is
	 * committed (async). Default: nothing. At least once and in order, as
	 * on_status. */
	int (*on_reply)(struct herald_ctx *c, const struct herald_msg *m,
	                const struct herald_event *e);
	/* GET /v1/units/{unit}/stats: the unit's figures (herald_kv_put).
	 * Default: none beyond Herald's own counts. */
	int (*unit_stats)(struct herald_ctx *c, struct herald_kv *out);
	/* Extra columns of a campaign export (CSV and XLSX), NULL-terminated
	 * names; export_row fills them per message (herald_kv_put with those
	 * names; a column not put is empty). Default: no extra column. */
	const char *const *export_columns;
	int (*export_row)(struct herald_ctx *c, const struct herald_msg *m, struct herald_kv *out);
};

/*
 * Declares the plugin's one exported descriptor, e.g.
 *   HERALD_PLUGIN(.name = "collections", .version = "1.0", .prepare = prep);
 */
#define HERALD_PLUGIN(...)                                                                         \
	__attribute__((visibility("default"))) const struct herald_plugin herald_plugin = {        \
	    .abi = HERALD_PLUGIN_ABI, .size = sizeof(struct herald_plugin), __VA_ARGS__}

/* ---- the host API (Herald exports these; a plugin calls them) ---- */

/* Logs a line tagged with the plugin's name. */
void herald_log(struct herald_ctx *c, enum herald_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds n to the plugin's counter `name` ([a-z0-9_], 1..63 chars; at most 64
 * names per plugin, further names are ignored): exported on /metrics as
 * herald_plugin_metric_total{plugin="...",name="..."}. */
void herald_metric_add(struct herald_ctx *c, const char *name, long long n);
/* The value of key in the plugin's config section (plugins.config.<name>),
 * or NULL. Lives as long as the plugin is loaded. */
const char *herald_config_get(struct herald_ctx *c, const char *key);
/* Records why the call failed (the first reason wins) and returns
 * HERALD_ERROR, so a hook can `return herald_fail(c, "...")`. */
int herald_fail(struct herald_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Memory from the call's arena, freed by Herald after the hook returns
 * (never free() it). NULL when out of memory or past the arena's limit
 * (plugins.arena_bytes, 1 MiB by default). */
void *herald_alloc(struct herald_ctx *c, size_t n);
char *herald_strdup(struct herald_ctx *c, const char *s);
/* The tenant and unit this call is for ("" in init/fini); milliseconds left
 * before the call's deadline (0 when past it). */
const char *herald_tenant(struct herald_ctx *c);
const char *herald_unit(struct herald_ctx *c);
long long herald_ms_left(struct herald_ctx *c);

/* A named data source (config data_sources): a parameterised query, ?1..?n
 * for params[0..n-1]; row() is called once per row with column names and
 * values (NULL for SQL NULL, borrowed for that call); a non-zero return
 * stops early. Bounded by the call's deadline. HERALD_OK, or HERALD_ERROR
 * with the reason recorded as by herald_fail. */
typedef int (*herald_row_fn)(void *arg, int ncols, const char *const *names,
                             const char *const *values);
int herald_ds_query(struct herald_ctx *c, const char *source, const char *sql,
                    const char *const *params, int nparams, herald_row_fn row, void *arg);
/* A statement without rows (UPDATE, INSERT); *affected (may be NULL) gets
 * the row count. */
int herald_ds_exec(struct herald_ctx *c, const char *source, const char *sql,
                   const char *const *params, int nparams, long long *affected);

/* ---- records (prepare's input) ---- */
int herald_record_count(const struct herald_record *r);
const char *herald_record_name(const struct herald_record *r, int i);  /* NULL out of range */
const char *herald_record_value(const struct herald_record *r, int i); /* NULL out of range */
/* The value of the column named name (exact), or NULL. */
const char *herald_record_get(const struct herald_record *r, const char *name);

/* ---- drafts (prepare's output) ---- */
const char *herald_draft_recipient(const struct herald_draft *d);
int herald_draft_param_count(const struct herald_draft *d);
const char *herald_draft_param(const struct herald_draft *d,
                               int i); /* 0-based; NULL out of range */
/* Setters: HERALD_OK, or HERALD_ERROR for a bad index, a value that is not
 * UTF-8 or is too long (recipient 63 bytes, a parameter 1024). */
int herald_draft_set_recipient(struct herald_draft *d, const char *to);
int herald_draft_set_param(struct herald_draft *d, int i, const char *value);
/* The row is not sent; reason (up to 200 bytes) shows in the upload's
 * validation report as "plugin <name>: <reason>". */
int herald_draft_skip(struct herald_draft *d, const char *reason);
/*
 * Per-row sending (added in ABI 1.1; see HERALD_PLUGIN_ABI_MINOR), each in
 * place of the upload's own field of the same name and checked exactly as
 * it is: a value Herald refuses makes the row invalid, the validation
 * report naming the row and the field ("channel", "account", "route",
 * "delivery_policy"); the rest of the upload goes on. The setters copy the
 * text (printable ASCII, no spaces) and return HERALD_ERROR only for NULL
 * or text too long or not of that kind, leaving the draft as it was.
 *  - channel ("whatsapp", "sms", "rcs", "telegram", up to 15 bytes) and
 *    account (one of the tenant's account ids, up to 63; NULL: the unit's
 *    or tenant's default for channel). The campaign's template or text
 *    then goes on that channel (a template must exist there).
 *  - route: the fallback route, channels in order separated by commas, a
 *    step's account after a colon, e.g. "whatsapp,sms" or
 *    "whatsapp,sms:acme-sms" (up to 255 bytes; "" keeps the campaign's).
 *    Its first step is the message's own channel.
 *  - policy: "at_most_once" or "at_least_once".
 */
int herald_draft_set_channel(struct herald_draft *d, const char *channel, const char *account);
int herald_draft_set_route(struct herald_draft *d, const char *route);
int herald_draft_set_policy(struct herald_draft *d, const char *policy);

/* ---- messages (read-only) ---- */
const char *herald_msg_id(const struct herald_msg *m);
const char *herald_msg_tenant(const struct herald_msg *m);
const char *herald_msg_unit(const struct herald_msg *m);
const char *herald_msg_channel(const struct herald_msg *m);
const char *herald_msg_account(const struct herald_msg *m);
const char *herald_msg_recipient(const struct herald_msg *m);
const char *herald_msg_batch(const struct herald_msg *m);   /* "" when none */
const char *herald_msg_status(const struct herald_msg *m);  /* "queued", "sent", ... */
const char *herald_msg_content(const struct herald_msg *m); /* canonical JSON text */
const char *herald_msg_error(const struct herald_msg *m);   /* error code, "" when none */
int herald_msg_attempt(const struct herald_msg *m);

/* ---- before_send's verdict ---- */
/* Skip the message with reason (up to 200 bytes): it becomes CANCELLED with
 * error code "plugin_skip" and text "plugin <name>: <reason>". */
int herald_verdict_skip(struct herald_verdict *v, const char *reason);
/*
 * Send the message on another route instead (added in ABI 1.1; see
 * HERALD_PLUGIN_ABI_MINOR): channel ("whatsapp", "sms", "rcs", "telegram")
 * and/or account, the id of one of the message's tenant's channel accounts
 * (account NULL: the tenant's first account on channel; channel NULL: the
 * account's). Between channels only whatsapp, sms and rcs stand in for
 * each other; text (UTF-8, up to 1600 bytes) is what the message says on
 * the new channel (NULL: its rendered text, as a route's fallback says);
 * on the same channel the content is kept and text ignored. reason (up to
 * 200 bytes) is recorded in the message's audit trail as "plugin <name>:
 * <reason>" with both routes. Nothing is sent on the old route: the
 * message is queued on the new one at once, its attempt given back, and
 * is then sent there without calling before_send again. A route Herald
 * refuses (an account that is not the message's tenant's or not known, a
 * channel that cannot carry the message) changes nothing: the message is
 * sent as it was and the refusal is recorded in its audit trail. A skip
 * wins over a route. HERALD_ERROR for bad arguments (the verdict is then
 * unchanged).
 */
int herald_verdict_route(struct herald_verdict *v, const char *channel, const char *account,
                         const char *text, const char *reason);

/* ---- events ---- */
const char *herald_event_kind(const struct herald_event *e);    /* "status" or "reply" */
const char *herald_event_status(const struct herald_event *e);  /* new status ("status") */
const char *herald_event_from(const struct herald_event *e);    /* old status, "" for replies */
const char *herald_event_text(const struct herald_event *e);    /* reply text, "" otherwise */
const char *herald_event_payload(const struct herald_event *e); /* button payload or "" */

/* ---- key -> value outputs ---- */
/* Adds or replaces key (1..63 bytes) with value (UTF-8, up to 1024 bytes);
 * at most 64 keys. HERALD_OK or HERALD_ERROR. */
int herald_kv_put(struct herald_kv *o, const char *key, const char *value);

/* ---- list_campaigns ---- */
/* The filter's value of key (a query parameter), or NULL. */
const char *herald_filter_get(const struct herald_filter *f, const char *key);
/* A new item of the list (at most 1000), filled with herald_kv_put; NULL
 * past the limit. */
struct herald_kv *herald_list_add(struct herald_list *l);

#ifdef __cplusplus
}
#endif

#endif /* HERALD_PLUGIN_H */
