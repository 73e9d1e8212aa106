/*
 * plugins_int.h - what the loader (plugins.c), the pool (pool.c) and the
 * host API (host.c) share. Nothing outside src/plugins/ includes this.
 */
#ifndef HR_PLUGINS_INT_H
#define HR_PLUGINS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "herald/plugin.h"
#include "plugins/plugins.h"

#define PLUGIN_METRICS_MAX 64
#define PLUGIN_KV_MAX 64
#define PLUGIN_KV_VALUE_MAX 1024
#define PLUGIN_LIST_MAX 1000
#define PLUGIN_SKIP_REASON_MAX 200
#define PLUGIN_ROUTE_TEXT_MAX 1600

/* Per hook: calls, errors (error or garbage), timeouts, time spent. */
struct plugin_counters {
	atomic_ullong calls, errors, timeouts, busy, dropped;
	atomic_ullong duration_us;
};

struct plugin_metric {
	char name[64];
	atomic_llong value;
};

struct plugin {
	char name[64];
	char version[64];
	char file[512];
	void *dl;
	const struct herald_plugin *d;
	json_t *config; /* its plugins.config section (object of strings), owned */
	bool inited;
	int running; /* jobs on workers now (pool lock) */
	struct plugin_counters c[PH__COUNT];
	pthread_mutex_t mlock; /* metric names */
	struct plugin_metric metrics[PLUGIN_METRICS_MAX];
	atomic_int nmetrics;
	struct plugins *host;
};

struct plugin_binding {
	char tenant[HR_NAME_MAX];
	char unit[HR_NAME_MAX];
	struct plugin *pl;
};

/* A job's kind-specific parts. */
struct herald_msg {
	char id[HR_ID_LEN + 1];
	char tenant[HR_NAME_MAX], unit[HR_NAME_MAX], channel[16], account[HR_NAME_MAX];
	char recipient[HR_ADDR_MAX], batch[HR_ID_LEN + 1], status[16], error[HR_ERRCODE_MAX];
	char *content; /* heap */
	int attempt;
};

struct herald_record {
	const char *const *names, *const *values; /* job-owned copies */
	int n;
};

struct herald_draft {
	struct plugin_draft *d;
	int nparams_limit;
};

struct herald_verdict {
	bool skip;
	char reason[PLUGIN_SKIP_REASON_MAX + 1];
	/* herald_verdict_route (the reason above is the route's when !skip) */
	bool route;
	char channel[16], account[HR_NAME_MAX];
	char *text; /* heap, may be NULL */
};

struct herald_event {
	char kind[8];
	char status[16], from[16];
	char *text, *payload; /* heap, may be NULL */
};

struct herald_kv {
	json_t *obj; /* key -> string */
	bool bad;    /* a put was refused: the output is garbage */
};

struct herald_filter {
	json_t *obj;
};

struct herald_list {
	json_t *arr;
	struct herald_kv items[PLUGIN_LIST_MAX];
	size_t n;
};

/* The arena of one call. */
struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct herald_ctx {
	struct plugin *pl;
	const char *tenant, *unit;
	int64_t deadline; /* monotonic us; 0: none (init/fini) */
	struct arena_chunk *arena;
	size_t arena_used, arena_max;
	char reason[PLUGIN_REASON_MAX];
};

enum job_state { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE };

/* prepare over many rows in one job (plugins_prepare_rows): copies of the
 * rows (an abandoned job outlives the caller's), the drafts the hook
 * edits, and each row's outcome. */
struct prep_row {
	struct herald_record rec;
	struct herald_draft draft;
	struct plugin_draft d;
	enum plugin_outcome o;
	char reason[PLUGIN_REASON_MAX];
};

struct prep_rows {
	size_t n;
	size_t done;       /* rows finished, in order (pool lock) */
	bool abandoned;    /* the caller stopped waiting: run no more (pool lock) */
	char *text;        /* every name and value, one allocation */
	const char **strs; /* the names, then each row's values */
	struct prep_row rows[];
};

struct plugin_job {
	struct plugin_job *next; /* queue */
	struct plugins *host;
	struct plugin *pl;
	enum plugin_hook hook;
	char tenant[HR_NAME_MAX], unit[HR_NAME_MAX];
	char message_id[HR_ID_LEN + 1]; /* events: read from the store by the worker */
	int64_t deadline;               /* monotonic us */
	enum job_state state;
	int refs; /* pool lock */
	enum plugin_outcome outcome;
	char reason[PLUGIN_REASON_MAX];
	void (*notify)(void *);
	void *notify_arg;

	struct herald_msg msg;
	struct prep_rows *prep; /* prepare: its rows (job-owned) */
	struct herald_verdict verdict;
	struct herald_event ev;
	int ev_from, ev_to;
	bool queue_grace; /* outbox events: their deadline allows the queue's wait,
	                   * and is cut to the hook's timeout when started */
	struct herald_kv kv;
	struct herald_filter filter;
	struct herald_list *list;
};

struct plugins {
	struct plugin **pl;
	size_t npl;
	struct plugin_binding *bind;
	size_t nbind;
	int64_t timeout_us;
	size_t arena_max;
	struct ds_registry *ds;
	struct store *st;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* workers wait for jobs; callers for results */
	struct plugin_job *head, *tail;
	size_t queued, queue_max;
	size_t busy; /* jobs a worker has taken and not finished */
	int per_plugin_max;
	pthread_t *workers;
	int nworkers;
	bool stopping;
	struct plugin_counters events; /* direct events refused (plugins_status_event) */
	struct plugin_events *ev;      /* the outbox's deliverer (events.c), NULL when off */
};

/* host.c: a call's context; end frees its arena. */
void plugin_ctx_begin(struct herald_ctx *c, struct plugin *pl, const char *tenant, const char *unit,
                      int64_t deadline, size_t arena_max);
void plugin_ctx_end(struct herald_ctx *c);

/* pool.c */
int plugins_pool_start(struct plugins *p, int workers, struct hr_err *err);
void plugins_pool_stop(struct plugins *p);
/* An on_status (reply false: from -> to) or on_reply (text, payload
 * copied) job for the message; its plugin is found by the worker. NULL
 * when out of memory. */
struct plugin_job *plugins_event_job(struct plugins *p, const char *message_id, const char *tenant,
                                     bool reply, int from, int to, const char *text,
                                     const char *payload);
/* Queues j once fewer than room jobs are queued (waits for a worker to
 * take one: backpressure, never a refusal), its deadline counted from
 * then. PO_BUSY (j not queued) when *stop or the pool stops meanwhile. */
enum plugin_outcome plugins_job_submit_room(struct plugins *p, struct plugin_job *j, size_t room,
                                            const atomic_bool *stop);
/* Waits for j up to its deadline: its outcome (PO_TIMEOUT past it). */
enum plugin_outcome plugins_job_await(struct plugins *p, struct plugin_job *j);
/* Wakes whoever waits on the pool's condition (a stop flag changed). */
void plugins_pool_kick(struct plugins *p);

/* events.c */
void plugins_events_stop(struct plugins *p);
void plugins_events_metrics(const struct plugins *p, struct hr_buf *b);

#endif
