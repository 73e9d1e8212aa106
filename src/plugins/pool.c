/*
 * pool.c - the bounded worker pool every plugin hook runs on, and the calls
 * made through it.
 *
 * Threads ("plugin" workers, plugins.workers of them) take jobs from one
 * FIFO queue (at most plugins.queue_max; a full queue refuses at once,
 * never blocks the caller). A worker skips a job whose plugin already
 * occupies per_plugin_max workers, so a plugin whose hooks hang holds at
 * most that many and the others keep running. A job still queued at its
 * deadline is not run (timeout); one that returns after its deadline is a
 * timeout too, its outputs ignored. Callers either wait on the pool's
 * condition up to the deadline or poll (plugins_job_poll). One lock guards
 * the queue and every job's state; hooks run without it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugins/plugins_int.h"
#include "store/store.h"

static const char *const hook_names[PH__COUNT] = {"init",        "list_campaigns", "prepare",
                                                  "before_send", "on_status",      "on_reply",
                                                  "unit_stats",  "export_row"};

const char *plugin_hook_name(enum plugin_hook h)
{
	return h < PH__COUNT ? hook_names[h] : "?";
}

const char *plugin_outcome_name(enum plugin_outcome o)
{
	static const char *const n[] = {"ok", "error", "garbage", "timeout", "busy"};
	return o <= PO_BUSY ? n[o] : "?";
}

void plugin_draft_clear(struct plugin_draft *d)
{
	for (int i = 0; i < d->nparams && i < PLUGIN_PARAMS_MAX; i++) {
		free(d->params[i]);
		d->params[i] = NULL;
	}
	d->nparams = 0;
}

static void job_free(struct plugin_job *j)
{
	free(j->msg.content);
	free(j->ev.text);
	free(j->ev.payload);
	free(j->verdict.text);
	if (j->prep) {
		for (size_t i = 0; i < j->prep->n; i++)
			plugin_draft_clear(&j->prep->rows[i].d);
		free(j->prep->text);
		free(j->prep->strs);
		free(j->prep);
	}
	json_decref(j->kv.obj);
	json_decref(j->filter.obj);
	if (j->list) {
		json_decref(j->list->arr);
		free(j->list);
	}
	free(j);
}

/* Drops one reference; the last frees. Pool lock held. */
static void job_unref_locked(struct plugin_job *j)
{
	if (--j->refs == 0)
		job_free(j);
}

void plugins_job_release(struct plugin_job *j)
{
	if (!j)
		return;
	struct plugins *p = j->host;
	pthread_mutex_lock(&p->lock);
	j->notify = NULL; /* never called once released */
	job_unref_locked(j);
	pthread_mutex_unlock(&p->lock);
}

static struct plugin_job *job_new(struct plugins *p, const struct plugin *pl, enum plugin_hook h,
                                  const char *tenant, const char *unit)
{
	struct plugin_job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->host = p;
	j->pl = (struct plugin *)pl;
	j->hook = h;
	hr_strlcpy(j->tenant, tenant ? tenant : "", sizeof j->tenant);
	hr_strlcpy(j->unit, unit ? unit : "", sizeof j->unit);
	j->deadline = hr_mono_us() + p->timeout_us;
	j->refs = 1;
	return j;
}

/* Appends j to the queue with one more reference for the worker. Pool
 * lock held. */
static void job_enqueue_locked(struct plugins *p, struct plugin_job *j)
{
	j->refs++;
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->queued++;
	pthread_cond_broadcast(&p->cond);
}

/* Queues j (one more reference for the worker). PO_OK, or PO_BUSY when the
 * queue is full or the pool stopping (the job then counts as not run). */
static enum plugin_outcome job_submit(struct plugins *p, struct plugin_job *j)
{
	pthread_mutex_lock(&p->lock);
	if (p->stopping || p->queued >= p->queue_max || p->nworkers == 0) {
		j->state = JOB_DONE;
		j->outcome = PO_BUSY;
		snprintf(j->reason, sizeof j->reason,
		         "plugin %s: %s not run: the plugin queue is full",
		         j->pl ? j->pl->name : "?", hook_names[j->hook]);
		pthread_mutex_unlock(&p->lock);
		if (j->pl)
			atomic_fetch_add(&j->pl->c[j->hook].busy, 1);
		return PO_BUSY;
	}
	job_enqueue_locked(p, j);
	pthread_mutex_unlock(&p->lock);
	return PO_OK;
}

/* Waits (bounded by the deadline plus a little) for j. Returns its outcome. */
static enum plugin_outcome job_wait(struct plugins *p, struct plugin_job *j, char *why,
                                    size_t whylen)
{
	pthread_mutex_lock(&p->lock);
	while (j->state != JOB_DONE) {
		int64_t now = hr_mono_us();
		if (now >= j->deadline)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t left = j->deadline - now;
		ts.tv_sec += left / 1000000;
		ts.tv_nsec += (left % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	enum plugin_outcome o;
	if (j->state == JOB_DONE) {
		o = j->outcome;
		if (why)
			hr_strlcpy(why, j->reason, whylen);
	} else {
		o = PO_TIMEOUT;
		if (why)
			snprintf(why, whylen, "plugin %s: %s took more than %lld ms", j->pl->name,
			         hook_names[j->hook], (long long)(p->timeout_us / 1000));
	}
	pthread_mutex_unlock(&p->lock);
	return o;
}

/* ---- running one job (a worker, no lock held) ---- */

static void msg_view(struct herald_msg *v, const struct message *m)
{
	hr_strlcpy(v->id, m->id, sizeof v->id);
	hr_strlcpy(v->tenant, m->tenant_id, sizeof v->tenant);
	hr_strlcpy(v->unit, m->unit, sizeof v->unit);
	hr_strlcpy(v->channel, m->channel, sizeof v->channel);
	hr_strlcpy(v->account, m->account_id, sizeof v->account);
	hr_strlcpy(v->recipient, m->recipient, sizeof v->recipient);
	hr_strlcpy(v->batch, m->batch_id, sizeof v->batch);
	hr_strlcpy(v->status, msg_status_name(m->status), sizeof v->status);
	hr_strlcpy(v->error, m->error_code, sizeof v->error);
	v->attempt = m->attempts;
	free(v->content);
	v->content = m->content ? strdup(m->content) : NULL;
}

/* Events carry only the message id: the message as committed is read here,
 * and its unit picks the plugin. 0 to run, 1 nothing to do. */
static int event_resolve(struct plugins *p, struct plugin_job *j)
{
	if (!p->st)
		return 1;
	struct message m = {0};
	if (p->st->ops->message_get(p->st, j->tenant, j->message_id, &m) != 0)
		return 1;
	int rc = 1;
	const struct plugin *pl = m.unit[0] ? plugins_for_unit(p, m.tenant_id, m.unit) : NULL;
	if (pl && plugin_has(pl, j->hook)) {
		j->pl = (struct plugin *)pl;
		hr_strlcpy(j->unit, m.unit, sizeof j->unit);
		msg_view(&j->msg, &m);
		rc = 0;
	}
	message_clear(&m);
	return rc;
}

static int call_hook(struct plugin_job *j, struct herald_ctx *c)
{
	const struct herald_plugin *d = j->pl->d;
	switch (j->hook) {
	case PH_BEFORE_SEND:
		return d->before_send(c, &j->msg, &j->verdict);
	case PH_ON_STATUS:
		return d->on_status(c, &j->msg, &j->ev);
	case PH_ON_REPLY:
		return d->on_reply(c, &j->msg, &j->ev);
	case PH_STATS:
		return d->unit_stats(c, &j->kv);
	case PH_EXPORT:
		return d->export_row(c, &j->msg, &j->kv);
	case PH_LIST:
		return d->list_campaigns(c, &j->filter, j->list);
	default:
		return HERALD_ERROR;
	}
}

/* Whether the call's outputs are well-formed (a refused put, a list item
 * refused). */
static bool outputs_ok(const struct plugin_job *j)
{
	if ((j->hook == PH_STATS || j->hook == PH_EXPORT) && j->kv.bad)
		return false;
	if (j->hook == PH_LIST)
		for (size_t i = 0; i < j->list->n; i++)
			if (j->list->items[i].bad)
				return false;
	return true;
}

static void run_job(struct plugins *p, struct plugin_job *j)
{
	struct plugin *pl = j->pl;
	struct plugin_counters *pc = &pl->c[j->hook];
	struct herald_ctx c;
	plugin_ctx_begin(&c, pl, j->tenant, j->unit, j->deadline, p->arena_max);
	int64_t t0 = hr_mono_us();
	int rc = call_hook(j, &c);
	int64_t t1 = hr_mono_us();
	atomic_fetch_add(&pc->calls, 1);
	atomic_fetch_add(&pc->duration_us, (unsigned long long)(t1 - t0));
	enum plugin_outcome o = PO_OK;
	char reason[PLUGIN_REASON_MAX];
	if (t1 > j->deadline) {
		o = PO_TIMEOUT;
		snprintf(reason, sizeof reason, "plugin %s: %s took more than %lld ms", pl->name,
		         hook_names[j->hook], (long long)(p->timeout_us / 1000));
	} else if (rc == HERALD_ERROR) {
		o = PO_ERROR;
		snprintf(reason, sizeof reason, "plugin %s: %s failed: %s", pl->name,
		         hook_names[j->hook], c.reason[0] ? c.reason : "no reason given");
	} else if (rc != HERALD_OK) {
		o = PO_GARBAGE;
		snprintf(reason, sizeof reason,
		         "plugin %s: %s returned %d (not HERALD_OK or "
		         "HERALD_ERROR)",
		         pl->name, hook_names[j->hook], rc);
	} else if (!outputs_ok(j)) {
		o = PO_GARBAGE;
		snprintf(reason, sizeof reason,
		         "plugin %s: %s gave a key or value that is "
		         "empty, too long, not UTF-8 or one too many",
		         pl->name, hook_names[j->hook]);
	} else if (j->hook == PH_BEFORE_SEND && (j->verdict.skip || j->verdict.route)) {
		snprintf(reason, sizeof reason, "plugin %s: %s", pl->name, j->verdict.reason);
	} else {
		reason[0] = '\0';
	}
	plugin_ctx_end(&c);
	if (o == PO_TIMEOUT)
		atomic_fetch_add(&pc->timeouts, 1);
	else if (o != PO_OK)
		atomic_fetch_add(&pc->errors, 1);
	if (o != PO_OK && j->hook != PH_BEFORE_SEND)
		hr_log(HR_LOG_WARN, "plugin", "%s", reason); /* no audit trail of their own */
	pthread_mutex_lock(&p->lock);
	j->outcome = o;
	hr_strlcpy(j->reason, reason, sizeof j->reason);
	j->state = JOB_DONE;
	/* Done and notified at once: a caller that saw it done never misses
	 * (nor, after releasing it, gets) the call. */
	if (j->notify)
		j->notify(j->notify_arg);
	j->notify = NULL;
	pthread_mutex_unlock(&p->lock);
}

/*
 * prepare over a job's rows, in order, each call with its own deadline
 * (hook_timeout_ms, and never past the job's). Each row's outcome is
 * published as it finishes (prep->done), so a caller that stops waiting
 * at the job's deadline takes the rows done so far; the worker then stops
 * at the next row instead of running the rest for nobody.
 */
static void run_prep(struct plugins *p, struct plugin_job *j)
{
	struct plugin *pl = j->pl;
	struct plugin_counters *pc = &pl->c[PH_PREPARE];
	struct prep_rows *pr = j->prep;
	for (size_t i = 0; i < pr->n; i++) {
		int64_t t0 = hr_mono_us();
		if (t0 >= j->deadline)
			break;
		struct prep_row *r = &pr->rows[i];
		int64_t dl = t0 + p->timeout_us < j->deadline ? t0 + p->timeout_us : j->deadline;
		struct herald_ctx c;
		plugin_ctx_begin(&c, pl, j->tenant, j->unit, dl, p->arena_max);
		int rc = pl->d->prepare(&c, &r->rec, &r->draft);
		int64_t t1 = hr_mono_us();
		atomic_fetch_add(&pc->calls, 1);
		atomic_fetch_add(&pc->duration_us, (unsigned long long)(t1 - t0));
		enum plugin_outcome o = PO_OK;
		char reason[PLUGIN_REASON_MAX];
		if (t1 > dl) {
			o = PO_TIMEOUT;
			snprintf(reason, sizeof reason, "plugin %s: prepare took more than %lld ms",
			         pl->name, (long long)((dl - t0) / 1000));
		} else if (rc == HERALD_ERROR) {
			o = PO_ERROR;
			snprintf(reason, sizeof reason, "plugin %s: prepare failed: %s", pl->name,
			         c.reason[0] ? c.reason : "no reason given");
		} else if (rc != HERALD_OK) {
			o = PO_GARBAGE;
			snprintf(reason, sizeof reason,
			         "plugin %s: prepare returned %d (not HERALD_OK or HERALD_ERROR)",
			         pl->name, rc);
		} else if (r->d.skip) {
			snprintf(reason, sizeof reason, "plugin %s: %s", pl->name,
			         r->d.skip_reason);
		} else {
			reason[0] = '\0';
		}
		plugin_ctx_end(&c);
		if (o == PO_TIMEOUT)
			atomic_fetch_add(&pc->timeouts, 1);
		else if (o != PO_OK)
			atomic_fetch_add(&pc->errors, 1);
		pthread_mutex_lock(&p->lock);
		r->o = o;
		hr_strlcpy(r->reason, reason, sizeof r->reason);
		pr->done = i + 1;
		bool stop = pr->abandoned;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
	}
	pthread_mutex_lock(&p->lock);
	j->outcome = PO_OK;
	j->reason[0] = '\0';
	j->state = JOB_DONE;
	pthread_mutex_unlock(&p->lock);
}

/* The first queued job whose plugin has a free share of the workers, or
 * that is past its deadline (then it is finished without running, so a
 * stuck plugin's jobs never fill the queue for the others). */
static struct plugin_job *job_take_locked(struct plugins *p)
{
	struct plugin_job *prev = NULL;
	int64_t now = hr_mono_us();
	for (struct plugin_job *j = p->head; j; prev = j, j = j->next) {
		if (j->pl && j->pl->running >= p->per_plugin_max && now < j->deadline)
			continue;
		if (prev)
			prev->next = j->next;
		else
			p->head = j->next;
		if (p->tail == j)
			p->tail = prev;
		j->next = NULL;
		p->queued--;
		return j;
	}
	return NULL;
}

static void *worker_main(void *arg)
{
	struct plugins *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct plugin_job *j = NULL;
		while (!p->stopping && !(j = job_take_locked(p)))
			pthread_cond_wait(&p->cond, &p->lock);
		if (!j)
			break;
		p->busy++;
		if (hr_mono_us() >= j->deadline) {
			/* Waited past its deadline in the queue: not run. */
			j->state = JOB_DONE;
			j->outcome = PO_TIMEOUT;
			snprintf(j->reason, sizeof j->reason,
			         "plugin %s: %s not started within %lld ms (workers busy)",
			         j->pl ? j->pl->name : "?", hook_names[j->hook],
			         (long long)(p->timeout_us / 1000));
			if (j->pl)
				atomic_fetch_add(&j->pl->c[j->hook].timeouts, 1);
		} else {
			bool run = true;
			if (!j->pl) { /* an event: find the message's plugin */
				pthread_mutex_unlock(&p->lock);
				run = event_resolve(p, j) == 0;
				pthread_mutex_lock(&p->lock);
				if (run && j->pl->running >= p->per_plugin_max) {
					/* Its plugin holds its share: back in line. */
					if (p->tail)
						p->tail->next = j;
					else
						p->head = j;
					p->tail = j;
					p->queued++;
					p->busy--;
					continue;
				}
			}
			if (run) {
				j->state = JOB_RUNNING;
				if (j->queue_grace && hr_mono_us() + p->timeout_us < j->deadline)
					j->deadline = hr_mono_us() + p->timeout_us;
				j->pl->running++;
				pthread_mutex_unlock(&p->lock);
				if (j->hook == PH_PREPARE)
					run_prep(p, j);
				else
					run_job(p, j);
				pthread_mutex_lock(&p->lock);
				j->pl->running--;
			} else {
				j->state = JOB_DONE;
			}
		}
		/* Under the lock: a caller that released the job (and may free
		 * what notify reaches) is never called after. notify is quick. */
		if (j->notify)
			j->notify(j->notify_arg);
		job_unref_locked(j);
		p->busy--;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int plugins_pool_start(struct plugins *p, int workers, struct hr_err *err)
{
	p->workers = calloc((size_t)workers, sizeof *p->workers);
	if (!p->workers)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (int i = 0; i < workers; i++) {
		if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
			plugins_pool_stop(p);
			return hr_fail(err, HR_EINTERNAL, "plugins.workers",
			               "could not start plugin worker %d", i);
		}
		p->nworkers++;
	}
	return 0;
}

/* Stops the workers once the hooks they run return; queued jobs are
 * finished as not run. */
void plugins_pool_stop(struct plugins *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i], NULL);
	free(p->workers);
	p->workers = NULL;
	p->nworkers = 0;
	pthread_mutex_lock(&p->lock);
	while (p->head) {
		struct plugin_job *j = p->head;
		p->head = j->next;
		j->state = JOB_DONE;
		j->outcome = PO_BUSY;
		job_unref_locked(j);
	}
	p->tail = NULL;
	p->queued = 0;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

size_t plugins_pending(struct plugins *p)
{
	pthread_mutex_lock(&p->lock);
	size_t n = p->queued + p->busy;
	pthread_mutex_unlock(&p->lock);
	return n;
}

size_t plugins_queue_len(struct plugins *p)
{
	pthread_mutex_lock(&p->lock);
	size_t n = p->queued;
	pthread_mutex_unlock(&p->lock);
	return n;
}

/* ---- the calls ---- */

/* The job's deadline for n rows: the hook's timeout for the first
 * PLUGIN_PREPARE_ROWS_PER_TIMEOUT rows and as much again for each as many
 * more, counted from the submission (as every job's). */
static int64_t prep_deadline(const struct plugins *p, size_t n)
{
	size_t units = 1 + (n ? n - 1 : 0) / PLUGIN_PREPARE_ROWS_PER_TIMEOUT;
	return hr_mono_us() + p->timeout_us * (int64_t)units;
}

/* Copies the rows into a new job's prep (an abandoned job outlives the
 * caller's rows). NULL when out of memory. */
static struct prep_rows *prep_copy(const char *const *names, size_t ncols,
                                   const struct plugin_prep *rows, size_t n)
{
	struct prep_rows *pr = calloc(1, sizeof *pr + n * sizeof pr->rows[0]);
	if (!pr)
		return NULL;
	size_t bytes = 1;
	for (size_t c = 0; c < ncols; c++)
		bytes += strlen(names[c]) + 1;
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < ncols; c++)
			bytes += strlen(rows[i].values[c] ? rows[i].values[c] : "") + 1;
	pr->text = malloc(bytes);
	pr->strs = malloc((n + 1) * (ncols ? ncols : 1) * sizeof *pr->strs);
	bool ok = pr->text && pr->strs;
	char *w = pr->text;
	for (size_t k = 0; ok && k < (n + 1) * ncols; k++) {
		size_t row = k / ncols, c = k % ncols;
		const char *v = row == 0 ? names[c] : rows[row - 1].values[c];
		size_t len = strlen(v ? v : "") + 1;
		memcpy(w, v ? v : "", len);
		pr->strs[k] = w;
		w += len;
	}
	for (size_t i = 0; ok && i < n; i++) {
		struct prep_row *r = &pr->rows[i];
		const struct plugin_draft *in = &rows[i].d;
		pr->n = i + 1; /* freed with the job from here on */
		r->rec.names = pr->strs;
		r->rec.values = pr->strs + (i + 1) * ncols;
		r->rec.n = (int)ncols;
		r->draft.d = &r->d;
		hr_strlcpy(r->d.recipient, in->recipient, sizeof r->d.recipient);
		for (int k = 0; ok && k < in->nparams && k < PLUGIN_PARAMS_MAX; k++) {
			ok = (r->d.params[k] = strdup(in->params[k] ? in->params[k] : "")) != NULL;
			r->d.nparams = k + 1;
		}
	}
	if (!ok) {
		for (size_t i = 0; i < pr->n; i++)
			plugin_draft_clear(&pr->rows[i].d);
		free(pr->text);
		free(pr->strs);
		free(pr);
		return NULL;
	}
	pr->n = n;
	return pr;
}

int plugins_prepare_rows(struct plugins *p, const struct plugin *pl, const char *tenant,
                         const char *unit, const char *const *names, size_t ncols,
                         struct plugin_prep *rows, size_t n)
{
	if (n == 0)
		return 0;
	if (n > PLUGIN_PREPARE_ROWS_MAX || ncols > 4096)
		return HR_EINVAL;
	struct plugin_job *j = job_new(p, pl, PH_PREPARE, tenant, unit);
	if (!j || !(j->prep = prep_copy(names, ncols, rows, n))) {
		free(j);
		return HR_ENOMEM;
	}
	j->deadline = prep_deadline(p, n);
	enum plugin_outcome o = job_submit(p, j);
	if (o == PO_OK)
		(void)job_wait(p, j, NULL, 0);
	pthread_mutex_lock(&p->lock);
	struct prep_rows *pr = j->prep;
	pr->abandoned = true;
	size_t done = pr->done;
	bool ran = j->state == JOB_DONE && j->outcome == PO_OK;
	for (size_t i = 0; i < n; i++) {
		struct plugin_prep *out = &rows[i];
		struct prep_row *r = &pr->rows[i];
		if (i < done) {
			out->o = r->o;
			hr_strlcpy(out->why, r->reason, sizeof out->why);
			if (r->o != PO_OK)
				continue;
			/* The draft is the job's until done: moved out. */
			hr_strlcpy(out->d.recipient, r->d.recipient, sizeof out->d.recipient);
			for (int k = 0; k < out->d.nparams && k < r->d.nparams; k++) {
				free(out->d.params[k]);
				out->d.params[k] = r->d.params[k];
				r->d.params[k] = NULL;
			}
			out->d.skip = r->d.skip;
			memcpy(out->d.channel, r->d.channel, sizeof out->d.channel);
			memcpy(out->d.account, r->d.account, sizeof out->d.account);
			memcpy(out->d.route, r->d.route, sizeof out->d.route);
			memcpy(out->d.policy, r->d.policy, sizeof out->d.policy);
			hr_strlcpy(out->d.skip_reason, r->d.skip ? r->reason : "",
			           sizeof out->d.skip_reason);
		} else if (o == PO_BUSY || (j->state == JOB_DONE && !ran)) {
			/* Not run at all: the queue was full, or the job waited
			 * past its deadline for a worker. */
			out->o = j->outcome;
			hr_strlcpy(out->why, j->reason, sizeof out->why);
		} else {
			/* Past the job's deadline: the row being run, or one not
			 * reached because the rows before it took the time. */
			long long ms =
			    (long long)(p->timeout_us / 1000 *
			                (int64_t)(1 + (n - 1) / PLUGIN_PREPARE_ROWS_PER_TIMEOUT));
			out->o = PO_TIMEOUT;
			if (i == done && j->state == JOB_RUNNING) {
				/* Still in the hook: the worker counts it when it returns. */
				snprintf(out->why, sizeof out->why,
				         "plugin %s: prepare took more than %lld ms", pl->name,
				         (long long)(p->timeout_us / 1000));
			} else {
				snprintf(
				    out->why, sizeof out->why,
				    "plugin %s: prepare not reached: the %zu rows of its call took "
				    "more than %lld ms",
				    pl->name, n, ms);
				atomic_fetch_add(&j->pl->c[PH_PREPARE].timeouts, 1);
			}
		}
	}
	pthread_mutex_unlock(&p->lock);
	plugins_job_release(j);
	return 0;
}

enum plugin_outcome plugins_prepare(struct plugins *p, const struct plugin *pl, const char *tenant,
                                    const char *unit, const char *const *names,
                                    const char *const *values, size_t ncols, struct plugin_draft *d,
                                    char *why, size_t whylen)
{
	struct plugin_prep row = {.values = values, .d = *d};
	if (plugins_prepare_rows(p, pl, tenant, unit, names, ncols > 4096 ? 4096 : ncols, &row,
	                         1) != 0) {
		snprintf(why, whylen, "plugin %s: out of memory", plugin_name(pl));
		return PO_BUSY;
	}
	*d = row.d; /* the params moved in and out: d's own pointers */
	hr_strlcpy(why, row.why, whylen);
	return row.o;
}

static enum plugin_outcome kv_call(struct plugins *p, struct plugin_job *j, json_t **out, char *why,
                                   size_t whylen)
{
	*out = NULL;
	enum plugin_outcome o = job_submit(p, j);
	if (o == PO_OK)
		o = job_wait(p, j, why, whylen);
	else
		hr_strlcpy(why, j->reason, whylen);
	if (o == PO_OK) {
		pthread_mutex_lock(&p->lock);
		*out = j->hook == PH_LIST ? json_incref(j->list->arr) : json_incref(j->kv.obj);
		pthread_mutex_unlock(&p->lock);
	}
	plugins_job_release(j);
	return o;
}

enum plugin_outcome plugins_stats(struct plugins *p, const struct plugin *pl, const char *tenant,
                                  const char *unit, json_t **out, char *why, size_t whylen)
{
	struct plugin_job *j = job_new(p, pl, PH_STATS, tenant, unit);
	if (!j || !(j->kv.obj = json_object())) {
		free(j);
		*out = NULL;
		snprintf(why, whylen, "out of memory");
		return PO_BUSY;
	}
	return kv_call(p, j, out, why, whylen);
}

enum plugin_outcome plugins_export_row(struct plugins *p, const struct plugin *pl,
                                       const struct message *m, json_t **out, char *why,
                                       size_t whylen)
{
	struct plugin_job *j = job_new(p, pl, PH_EXPORT, m->tenant_id, m->unit);
	if (!j || !(j->kv.obj = json_object())) {
		free(j);
		*out = NULL;
		snprintf(why, whylen, "out of memory");
		return PO_BUSY;
	}
	msg_view(&j->msg, m);
	return kv_call(p, j, out, why, whylen);
}

enum plugin_outcome plugins_list(struct plugins *p, const struct plugin *pl, const char *tenant,
                                 const char *unit, json_t *filters, json_t **out, char *why,
                                 size_t whylen)
{
	struct plugin_job *j = job_new(p, pl, PH_LIST, tenant, unit);
	if (j)
		j->list = calloc(1, sizeof *j->list);
	if (!j || !j->list || !(j->list->arr = json_array()) ||
	    !(j->filter.obj = json_deep_copy(filters ? filters : json_object()))) {
		if (j)
			job_free(j);
		*out = NULL;
		snprintf(why, whylen, "out of memory");
		return PO_BUSY;
	}
	return kv_call(p, j, out, why, whylen);
}

struct plugin_job *plugins_before_send_submit(struct plugins *p, const struct plugin *pl,
                                              const struct message *m, void (*notify)(void *),
                                              void *arg)
{
	struct plugin_job *j = job_new(p, pl, PH_BEFORE_SEND, m->tenant_id, m->unit);
	if (!j)
		return NULL;
	msg_view(&j->msg, m);
	j->notify = notify;
	j->notify_arg = arg;
	(void)job_submit(p, j); /* a refused job is DONE with PO_BUSY */
	return j;
}

bool plugins_job_poll(struct plugin_job *j, int64_t now_mono, enum plugin_outcome *out, bool *skip,
                      char *reason, size_t reasonlen)
{
	struct plugins *p = j->host;
	pthread_mutex_lock(&p->lock);
	bool done = j->state == JOB_DONE;
	if (done) {
		*out = j->outcome;
		*skip = j->outcome == PO_OK && j->verdict.skip;
		hr_strlcpy(reason, j->reason, reasonlen);
	} else if (now_mono >= j->deadline) {
		done = true;
		*out = PO_TIMEOUT;
		*skip = false;
		snprintf(reason, reasonlen, "plugin %s: %s took more than %lld ms", j->pl->name,
		         hook_names[j->hook], (long long)(p->timeout_us / 1000));
	}
	pthread_mutex_unlock(&p->lock);
	return done;
}

int64_t plugins_job_deadline(const struct plugin_job *j)
{
	return j->deadline;
}

bool plugins_job_route(struct plugin_job *j, struct plugin_route *out)
{
	struct plugins *p = j->host;
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&p->lock);
	bool r =
	    j->state == JOB_DONE && j->outcome == PO_OK && !j->verdict.skip && j->verdict.route;
	if (r) {
		hr_strlcpy(out->channel, j->verdict.channel, sizeof out->channel);
		hr_strlcpy(out->account, j->verdict.account, sizeof out->account);
		out->text = j->verdict.text; /* the caller's now */
		j->verdict.text = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* ---- after-commit events ---- */

void plugins_set_store(struct plugins *p, struct store *st)
{
	if (p)
		p->st = st;
}

struct plugin_job *plugins_event_job(struct plugins *p, const char *message_id, const char *tenant,
                                     bool reply, int from, int to, const char *text,
                                     const char *payload)
{
	struct plugin_job *j = job_new(p, NULL, reply ? PH_ON_REPLY : PH_ON_STATUS, tenant, "");
	if (!j)
		return NULL;
	hr_strlcpy(j->message_id, message_id, sizeof j->message_id);
	if (reply) {
		hr_strlcpy(j->ev.kind, "reply", sizeof j->ev.kind);
		j->ev.text = text ? strdup(text) : NULL;
		j->ev.payload = payload ? strdup(payload) : NULL;
		if ((text && !j->ev.text) || (payload && !j->ev.payload)) {
			job_free(j);
			return NULL;
		}
	} else {
		hr_strlcpy(j->ev.kind, "status", sizeof j->ev.kind);
		hr_strlcpy(j->ev.from, from >= 0 ? msg_status_name((enum msg_status)from) : "",
		           sizeof j->ev.from);
		hr_strlcpy(j->ev.status, to >= 0 ? msg_status_name((enum msg_status)to) : "",
		           sizeof j->ev.status);
	}
	j->ev_from = from;
	j->ev_to = to;
	return j;
}

enum plugin_outcome plugins_job_submit_room(struct plugins *p, struct plugin_job *j, size_t room,
                                            const atomic_bool *stop)
{
	if (room < 1)
		room = 1;
	pthread_mutex_lock(&p->lock);
	while (!p->stopping && p->nworkers > 0 && p->queued >= room && !atomic_load(stop))
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->stopping || p->nworkers == 0 || atomic_load(stop)) {
		j->state = JOB_DONE;
		j->outcome = PO_BUSY;
		pthread_mutex_unlock(&p->lock);
		return PO_BUSY;
	}
	/* Its time starts now, not while it waited for room, and allows for
	 * the jobs queued ahead of it (each a hook's timeout at most): an
	 * event is not given up for waiting its turn. Started, it gets the
	 * hook's timeout (worker_main). */
	j->deadline = hr_mono_us() + p->timeout_us * (int64_t)(1 + p->queued);
	j->queue_grace = true;
	job_enqueue_locked(p, j);
	pthread_mutex_unlock(&p->lock);
	return PO_OK;
}

enum plugin_outcome plugins_job_await(struct plugins *p, struct plugin_job *j)
{
	return job_wait(p, j, NULL, 0);
}

void plugins_pool_kick(struct plugins *p)
{
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Direct submission without the outbox (tests of the hooks): a full queue
 * refuses the event (counted). The server uses the outbox (events.c). */
static void event_submit(struct plugins *p, struct plugin_job *j)
{
	if (job_submit(p, j) != PO_OK)
		atomic_fetch_add(&p->events.dropped, 1);
	plugins_job_release(j);
}

void plugins_status_event(struct plugins *p, const char *message_id, const char *tenant, int from,
                          int to)
{
	if (!p || !p->nworkers || !plugins_tenant_has(p, tenant, PH_ON_STATUS))
		return;
	struct plugin_job *j =
	    plugins_event_job(p, message_id, tenant, false, from, to, NULL, NULL);
	if (!j) {
		atomic_fetch_add(&p->events.dropped, 1);
		return;
	}
	event_submit(p, j);
}

void plugins_reply_event(struct plugins *p, const char *message_id, const char *tenant,
                         const char *text, const char *payload)
{
	if (!p || !p->nworkers || !message_id || !plugins_tenant_has(p, tenant, PH_ON_REPLY))
		return;
	struct plugin_job *j =
	    plugins_event_job(p, message_id, tenant, true, -1, -1, text, payload);
	if (!j) {
		atomic_fetch_add(&p->events.dropped, 1);
		return;
	}
	event_submit(p, j);
}

/* ---- metrics ---- */

void plugins_metrics_render(const struct plugins *p, struct hr_buf *b)
{
	if (!p || p->npl == 0)
		return;
	static const struct {
		const char *name, *help;
		size_t off;
		bool seconds;
	} series[] = {
	    {"herald_plugin_calls_total", "Plugin hook calls run.",
	     offsetof(struct plugin_counters, calls), false},
	    {"herald_plugin_errors_total", "Plugin hook calls that failed or returned garbage.",
	     offsetof(struct plugin_counters, errors), false},
	    {"herald_plugin_timeouts_total", "Plugin hook calls past their deadline.",
	     offsetof(struct plugin_counters, timeouts), false},
	    {"herald_plugin_busy_total", "Plugin hook calls refused: the queue was full.",
	     offsetof(struct plugin_counters, busy), false},
	    {"herald_plugin_duration_seconds_total", "Time spent in plugin hooks.",
	     offsetof(struct plugin_counters, duration_us), true},
	};
	for (size_t s = 0; s < sizeof series / sizeof *series; s++) {
		hr_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", series[s].name,
		              series[s].help, series[s].name);
		for (size_t i = 0; i < p->npl; i++)
			for (int h = 0; h < PH__COUNT; h++) {
				if (h != PH_INIT && !plugin_has(p->pl[i], (enum plugin_hook)h))
					continue;
				const atomic_ullong *v =
				    (const atomic_ullong *)((const char *)&p->pl[i]->c[h] +
				                            series[s].off);
				unsigned long long x = atomic_load(v);
				if (series[s].seconds)
					hr_buf_printf(b, "%s{plugin=\"%s\",hook=\"%s\"} %.6f\n",
					              series[s].name, p->pl[i]->name, hook_names[h],
					              (double)x / 1e6);
				else
					hr_buf_printf(b, "%s{plugin=\"%s\",hook=\"%s\"} %llu\n",
					              series[s].name, p->pl[i]->name, hook_names[h],
					              x);
			}
	}
	plugins_events_metrics(p, b);
	hr_buf_printf(b, "# HELP herald_plugin_metric_total Counters plugins keep "
	                 "(herald_metric_add).\n# TYPE herald_plugin_metric_total counter\n");
	for (size_t i = 0; i < p->npl; i++) {
		struct plugin *pl = p->pl[i];
		int k = atomic_load(&pl->nmetrics);
		for (int m = 0; m < k; m++)
			hr_buf_printf(
			    b, "herald_plugin_metric_total{plugin=\"%s\",name=\"%s\"} %lld\n",
			    pl->name, pl->metrics[m].name,
			    (long long)atomic_load(&pl->metrics[m].value));
	}
}
