/*
 * lc_batch.c - campaign (batch) rules above every store backend: the
 * counters each message change moves, kept in the same transaction as the
 * change; completion when every message of a batch has settled; the batch's
 * status table; its rows becoming messages exactly once; cancellation.
 *
 * Counters are not written per message. A run (one lifecycle function in
 * one transaction) accumulates the deltas it causes per batch in a small
 * table, and lc_run writes each touched batch once, with one statement,
 * before the transaction commits - so a claim of 100 messages of one
 * campaign costs one counter update, not 100, and never a recount. An item
 * rolled back (lc_item_end(tx, false)) takes its deltas back through an
 * undo log, so the counters always say what the committed rows say.
 *
 * The store-wide count of messages per status (message_status_count, what
 * /metrics reports) is kept the same way: one delta per status per run,
 * items undone taking theirs back through the same undo log, handed to the
 * backend once when the run's function returns (status_add); the backend
 * writes the deltas of a whole writer group with the group's commit.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"
#include "store/lifecycle.h"

#define TX_ERR(tx) ((tx)->ops->err(tx))
#define TX_JSON(tx) ((tx)->ops->json(tx))

struct acc_entry {
	char batch_id[HR_ID_LEN + 1];
	int64_t d[MSG__COUNT];
	int64_t replied;
};

/* The undo log's entry for the store-wide status counts (lc_acc.sd). */
#define ACC_STATUS_ENTRY UINT32_MAX
/* the undo log's entries for the daily counters (lc_acc.daily):
 * this bit and the entry's index. */
#define ACC_DAILY_BIT 0x80000000u

struct acc_undo {
	uint32_t entry; /* a batch's, or ACC_STATUS_ENTRY */
	int8_t status; /* -1: replied */
	int8_t amount;
};

struct lc_acc {
	struct acc_entry *e;
	size_t n, cap;
	struct acc_undo *undo; /* since the current item began */
	size_t nundo, capundo;
	bool in_item;
	bool oom;
	int64_t sd[MSG__COUNT]; /* store-wide status deltas (message_status_count) */
	struct daily_acc daily; /* the daily counters (store/daily.h) */
	const struct store *st; /* whose batches (nobatch below) */
	/* Follow-ups made by the run, by reason (lc_note_fallback). */
	const char *fb_reason[LC_FB_REASONS];
	int fb_count[LC_FB_REASONS];
	/* Notes for the store's observer (store_observe), only while one is
	 * set; an item undone takes back those it added (notes_mark). */
	struct obs_note *notes;
	size_t nnotes, capnotes, notes_mark;
};

/* One store_note with its strings held (heap). */
struct obs_note {
	char message_id[HR_ID_LEN + 1];
	char tenant_id[HR_NAME_MAX];
	bool reply;
	int from, to;
	char *text, *payload;
};

static _Atomic(store_observer_fn) obs_fn;
static void *_Atomic obs_arg;

void store_observe(store_observer_fn fn, void *arg)
{
	atomic_store(&obs_arg, arg);
	atomic_store(&obs_fn, fn);
}

static void notes_free(struct obs_note *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].text);
		free(v[i].payload);
	}
	free(v);
}

/* Hands committed notes to the observer, then frees them. */
static void notes_emit(struct obs_note *v, size_t n, bool committed)
{
	store_observer_fn fn = atomic_load(&obs_fn);
	if (committed && fn && n) {
		struct store_note *sn = calloc(n, sizeof *sn);
		for (size_t i = 0; sn && i < n; i++)
			sn[i] = (struct store_note){.message_id = v[i].message_id,
			                            .tenant_id = v[i].tenant_id,
			                            .kind = v[i].reply ? "reply" : "status",
			                            .from = v[i].from,
			                            .to = v[i].to,
			                            .text = v[i].text,
			                            .payload = v[i].payload};
		if (sn)
			fn(atomic_load(&obs_arg), sn, n);
		free(sn);
	}
	notes_free(v, n);
}

static struct obs_note *note_add(struct store_tx *tx)
{
	struct lc_acc *a = tx->acc;
	if (!a || !atomic_load(&obs_fn))
		return NULL;
	if (a->nnotes == a->capnotes) {
		size_t cap = a->capnotes ? a->capnotes * 2 : 16;
		struct obs_note *v = realloc(a->notes, cap * sizeof *v);
		if (!v)
			return NULL; /* a note lost, never the run */
		a->notes = v;
		a->capnotes = cap;
	}
	struct obs_note *o = &a->notes[a->nnotes++];
	memset(o, 0, sizeof *o);
	return o;
}

void lc_note_status(struct store_tx *tx, const char *message_id, const char *tenant_id, int from,
                    int to)
{
	struct obs_note *o = note_add(tx);
	if (!o)
		return;
	hr_strlcpy(o->message_id, message_id, sizeof o->message_id);
	hr_strlcpy(o->tenant_id, tenant_id, sizeof o->tenant_id);
	o->from = from;
	o->to = to;
}

void lc_note_reply(struct store_tx *tx, const char *message_id, const char *tenant_id,
                   const char *text, const char *payload)
{
	if (!message_id || !tenant_id)
		return;
	struct obs_note *o = note_add(tx);
	if (!o)
		return;
	hr_strlcpy(o->message_id, message_id, sizeof o->message_id);
	hr_strlcpy(o->tenant_id, tenant_id, sizeof o->tenant_id);
	o->reply = true;
	o->from = o->to = -1;
	o->text = text ? strdup(text) : NULL;
	o->payload = payload ? strdup(payload) : NULL;
}

const struct store *lc_tx_store(const struct store_tx *tx)
{
	return tx->acc ? tx->acc->st : NULL;
}

void lc_note_fallback(struct store_tx *tx, const char *reason)
{
	struct lc_acc *a = tx->acc;
	if (!a)
		return;
	size_t i = 0;
	while (i < LC_FB_REASONS - 1 && a->fb_reason[i] && strcmp(a->fb_reason[i], reason) != 0)
		i++;
	a->fb_reason[i] = reason;
	a->fb_count[i]++;
}

static struct acc_entry *acc_entry(struct lc_acc *a, const char *batch_id, uint32_t *idx)
{
	for (size_t i = a->n; i-- > 0;) /* the latest is the likeliest */
		if (strcmp(a->e[i].batch_id, batch_id) == 0) {
			*idx = (uint32_t)i;
			return &a->e[i];
		}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 8;
		struct acc_entry *e = realloc(a->e, cap * sizeof *e);
		if (!e)
			return NULL;
		a->e = e;
		a->cap = cap;
	}
	struct acc_entry *e = &a->e[a->n];
	memset(e, 0, sizeof *e);
	hr_strlcpy(e->batch_id, batch_id, sizeof e->batch_id);
	*idx = (uint32_t)a->n++;
	return e;
}

/* Remembers a delta of the open item, to take back if it is undone. */
static void acc_undo_push(struct lc_acc *a, uint32_t idx, int status, int amount)
{
	if (!a->in_item || !amount)
		return;
	if (a->nundo == a->capundo) {
		size_t cap = a->capundo ? a->capundo * 2 : 16;
		struct acc_undo *u = realloc(a->undo, cap * sizeof *u);
		if (!u) {
			a->oom = true;
			return;
		}
		a->undo = u;
		a->capundo = cap;
	}
	a->undo[a->nundo++] = (struct acc_undo){idx, (int8_t)status, (int8_t)amount};
}

static void acc_add(struct lc_acc *a, const char *batch_id, int status, int amount)
{
	uint32_t idx;
	struct acc_entry *e = acc_entry(a, batch_id, &idx);
	if (!e) {
		a->oom = true;
		return;
	}
	if (status < 0)
		e->replied += amount;
	else
		e->d[status] += amount;
	acc_undo_push(a, idx, status, amount);
}

static void acc_status(struct lc_acc *a, int status, int amount)
{
	a->sd[status] += amount;
	acc_undo_push(a, ACC_STATUS_ENTRY, status, amount);
}

void lc_daily(struct store_tx *tx, const char *tenant_id, const char *channel, int from, int to,
              const char *error_code)
{
	struct lc_acc *a = tx->acc;
	int kinds[DAILY__COUNT + 1];
	int n = a ? daily_kinds(from, to, kinds) : 0;
	const char *codes[DAILY__COUNT + 1] = {0};
	if (a && daily_counts_error(from, to, error_code)) {
		codes[n] = error_code;
		kinds[n++] = DAILY_ERROR;
	}
	if (!n)
		return;
	int32_t day = daily_day(tx->ops->now(tx));
	for (int i = 0; i < n; i++) {
		long idx = daily_add_at(&a->daily, tenant_id, channel, day, kinds[i], codes[i], 1);
		if (idx < 0) {
			a->oom = true;
			return;
		}
		acc_undo_push(a, ACC_DAILY_BIT | (uint32_t)idx, kinds[i], 1);
	}
}

void lc_count(struct store_tx *tx, const char *batch_id, int from, int to, bool replied)
{
	struct lc_acc *a = tx->acc;
	if (!a)
		return;
	if (from >= 0 && from < MSG__COUNT)
		acc_status(a, from, -1);
	if (to >= 0 && to < MSG__COUNT)
		acc_status(a, to, +1);
	if (!batch_id || !batch_id[0])
		return;
	if (from >= 0 && from < MSG__COUNT)
		acc_add(a, batch_id, from, -1);
	if (to >= 0 && to < MSG__COUNT)
		acc_add(a, batch_id, to, +1);
	if (replied)
		acc_add(a, batch_id, -1, +1);
}

/* A batch the run changed in a way that may complete it without moving a
 * message (its last rows were ingested). */
static void lc_batch_touch(struct store_tx *tx, const char *batch_id)
{
	uint32_t idx;
	if (tx->acc && !acc_entry(tx->acc, batch_id, &idx))
		tx->acc->oom = true;
}

int lc_item_begin(struct store_tx *tx)
{
	if (tx->acc) {
		tx->acc->in_item = true;
		tx->acc->nundo = 0;
		tx->acc->notes_mark = tx->acc->nnotes;
	}
	return tx->ops->item_begin(tx);
}

/* The backend first: an item kept can still come back undone (1: a write
 * of it failed as it was sent), and then its deltas go too. */
int lc_item_end(struct store_tx *tx, bool keep)
{
	int rc = tx->ops->item_end(tx, keep);
	struct lc_acc *a = tx->acc;
	if (a) {
		bool undone = !keep || rc != 0;
		for (size_t i = a->nundo; undone && i-- > 0;) {
			struct acc_undo *u = &a->undo[i];
			if (u->entry == ACC_STATUS_ENTRY)
				a->sd[u->status] -= u->amount;
			else if (u->entry & ACC_DAILY_BIT)
				a->daily.v[u->entry & ~ACC_DAILY_BIT].n -= u->amount;
			else if (u->status < 0)
				a->e[u->entry].replied -= u->amount;
			else
				a->e[u->entry].d[u->status] -= u->amount;
		}
		a->nundo = 0;
		a->in_item = false;
		while (undone && a->nnotes > a->notes_mark) {
			a->nnotes--;
			free(a->notes[a->nnotes].text);
			free(a->notes[a->nnotes].payload);
		}
	}
	return rc;
}

static bool batch_done(const struct lc_batch_state *s)
{
	if (s->status != BATCH_PROCESSING || !s->ingested)
		return false;
	for (int st = 0; st < MSG__COUNT; st++)
		if (s->by_status[st] && !batch_msg_settled((enum msg_status)st, s->receipts))
			return false;
	return true;
}

/*
 * Batch ids known to have no batch row (the ids POST /v1/messages:batch
 * gives its messages), per store, so their messages cost no counter update.
 * A "no" cannot turn into a "yes": a campaign's row is committed before any
 * of its messages exists, and ids are never reused. Direct-mapped, racy
 * only in what it forgets.
 */
#define NOBATCH_SLOTS 512
static struct {
	pthread_mutex_t lock;
	const struct store *st[NOBATCH_SLOTS];
	char id[NOBATCH_SLOTS][HR_ID_LEN + 1];
} nobatch = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned nobatch_slot(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % NOBATCH_SLOTS;
}

static bool nobatch_has(const struct store *st, const char *id)
{
	unsigned k = nobatch_slot(id);
	pthread_mutex_lock(&nobatch.lock);
	bool yes = nobatch.st[k] == st && strcmp(nobatch.id[k], id) == 0;
	pthread_mutex_unlock(&nobatch.lock);
	return yes;
}

static void nobatch_put(const struct store *st, const char *id)
{
	unsigned k = nobatch_slot(id);
	pthread_mutex_lock(&nobatch.lock);
	nobatch.st[k] = st;
	hr_strlcpy(nobatch.id[k], id, sizeof nobatch.id[k]);
	pthread_mutex_unlock(&nobatch.lock);
}

/* Forgets a store's entries (it is closing; another may get its address). */
void lc_batch_forget_store(const struct store *st)
{
	pthread_mutex_lock(&nobatch.lock);
	for (unsigned k = 0; k < NOBATCH_SLOTS; k++)
		if (nobatch.st[k] == st)
			nobatch.st[k] = NULL;
	pthread_mutex_unlock(&nobatch.lock);
}

/* Writes every touched batch's deltas (one statement each) and completes
 * the batches that have nothing left to wait for. */
static int acc_flush(struct store_tx *tx, struct lc_acc *a)
{
	if (a->oom)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "batch", "out of memory");
	for (size_t i = 0; i < a->n; i++) {
		struct acc_entry *e = &a->e[i];
		struct lc_batch_state after;
		if (nobatch_has(a->st, e->batch_id))
			continue;
		int rc = tx->ops->batch_add(tx, e->batch_id, e->d, e->replied, &after);
		if (rc < 0)
			return rc;
		if (rc == 0)
			nobatch_put(a->st, e->batch_id);
		if (rc == 0 || !batch_done(&after))
			continue;
		if ((rc = tx->ops->batch_set(tx, e->batch_id, BATCH_COMPLETED, tx->ops->now(tx), NULL,
		                             -1)))
			return rc;
	}
	/* The store-wide status counts, handed over even when nothing moved:
	 * a run made again from the start (lc_tx_fn) replaces what its undone
	 * attempt handed over. */
	int rc = tx->ops->status_add(tx, a->sd);
	return rc ? rc : tx->ops->daily_add(tx, &a->daily);
}

/* ---------------------------------------------------------------------------
 * Every lifecycle run: the function, then its counters, in one transaction.
 * ------------------------------------------------------------------------- */

/* The follow-ups a run made, by reason: counted in /metrics only once the
 * run is committed (a run rolled back made none). */
struct fb_counts {
	const char *reason[LC_FB_REASONS];
	int count[LC_FB_REASONS];
	struct obs_note *notes; /* for the observer, once committed (heap) */
	size_t nnotes;
};

static void fb_emit(const struct fb_counts *c)
{
	for (size_t i = 0; i < LC_FB_REASONS && c->reason[i]; i++)
		metrics_fallback(c->reason[i], c->count[i]);
}

struct lc_wrap {
	const struct store *st;
	lc_tx_fn fn;
	void *ctx;   /* the caller's (blocking runs) */
	bool inline_ctx; /* async runs: the context follows, copied by the backend */
	struct fb_counts *fb; /* where the run's follow-ups are reported */
};

static int wrap_run(struct store_tx *tx, void *arg)
{
	struct lc_wrap *w = arg;
	struct lc_acc acc = {.st = w->st};
	tx->acc = &acc;
	int rc = w->fn(tx, w->inline_ctx ? (void *)(w + 1) : w->ctx);
	if (rc == 0)
		rc = acc_flush(tx, &acc);
	/* Set, not added: a backend may run the function again from the start
	 * (lifecycle.h, lc_tx_fn). */
	notes_emit(w->fb->notes, w->fb->nnotes, false); /* a rerun's are replaced */
	memset(w->fb, 0, sizeof *w->fb);
	for (size_t i = 0; rc == 0 && i < LC_FB_REASONS && acc.fb_reason[i]; i++) {
		w->fb->reason[i] = acc.fb_reason[i];
		w->fb->count[i] = acc.fb_count[i];
	}
	if (rc == 0) {
		w->fb->notes = acc.notes;
		w->fb->nnotes = acc.nnotes;
	} else {
		notes_free(acc.notes, acc.nnotes);
	}
	tx->acc = NULL;
	free(acc.e);
	free(acc.undo);
	daily_free(&acc.daily);
	return rc;
}

/* An async run's completion: its follow-ups are counted if it committed,
 * then the caller's callback. */
struct fb_done {
	struct fb_counts fb;
	store_done_fn cb;
	void *arg;
};

static void fb_done_cb(void *arg, int rc, const struct hr_err *err)
{
	struct fb_done *d = arg;
	if (rc == 0)
		fb_emit(&d->fb);
	notes_emit(d->fb.notes, d->fb.nnotes, rc == 0);
	d->cb(d->arg, rc, err);
	free(d);
}

int lc_run(const struct lc_backend *b, struct store *st, lc_tx_fn fn, void *ctx,
           size_t ctx_size, store_done_fn cb, void *arg, struct hr_err *err)
{
	if (!cb) {
		struct fb_counts fb = {0};
		struct lc_wrap w = {.st = st, .fn = fn, .ctx = ctx, .fb = &fb};
		int rc = b->run(st, wrap_run, &w, sizeof w, NULL, NULL, err);
		if (rc == 0)
			fb_emit(&fb);
		notes_emit(fb.notes, fb.nnotes, rc == 0);
		return rc;
	}
	size_t size = sizeof(struct lc_wrap) + ctx_size;
	struct lc_wrap *w = malloc(size);
	struct fb_done *d = calloc(1, sizeof *d);
	if (!w || !d) {
		free(w);
		free(d);
		return HR_ENOMEM;
	}
	d->cb = cb;
	d->arg = arg;
	*w = (struct lc_wrap){.st = st, .fn = fn, .inline_ctx = true, .fb = &d->fb};
	memcpy(w + 1, ctx, ctx_size);
	int rc = b->run(st, wrap_run, w, size, fb_done_cb, d, err);
	if (rc != 0)
		free(d); /* not queued: the callback never comes */
	free(w);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Rows, status, ingestion, cancellation.
 * ------------------------------------------------------------------------- */

/* The batch, or HR_ENOTFOUND naming it; with tenant_id, only the tenant's. */
static int get_state(struct store_tx *tx, const char *tenant_id, const char *id,
                     struct lc_batch_state *s)
{
	int rc = tx->ops->batch_state(tx, id, s);
	if (rc < 0)
		return rc;
	if (rc == 0 || (tenant_id && strcmp(tenant_id, s->tenant_id) != 0))
		return hr_fail(TX_ERR(tx), HR_ENOTFOUND, "batch_id", "no batch %s", id);
	return 0;
}

struct items_ctx {
	const char *batch_id;
	const struct batch_item *items;
	size_t n;
};

static int items_run(struct store_tx *tx, void *arg)
{
	struct items_ctx *c = arg;
	struct lc_batch_state s;
	int rc = get_state(tx, NULL, c->batch_id, &s);
	if (rc)
		return rc;
	if (s.status != BATCH_PENDING)
		return hr_fail(TX_ERR(tx), HR_EINVAL, "status",
		               "rows can be added only while the batch is pending (it is %s)",
		               batch_status_name(s.status));
	int64_t valid = 0, invalid = 0, dup = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct batch_item *it = &c->items[i];
		if (it->row < 1)
			return hr_fail(TX_ERR(tx), HR_EINVAL, "row", "row numbers start at 1, got %lld",
			               (long long)it->row);
		if (!it->valid)
			invalid++;
		else if (it->duplicate)
			dup++;
		else
			valid++;
	}
	int64_t found = 0;
	if ((rc = tx->ops->items_insert(tx, c->batch_id, c->items, c->n, &found)))
		return rc;
	return tx->ops->batch_rows_add(tx, c->batch_id, (int64_t)c->n, valid - found, invalid,
	                               dup + found);
}

int lc_batch_items_put(const struct lc_backend *b, struct store *st, const char *batch_id,
                       const struct batch_item *items, size_t n, struct hr_err *err)
{
	if (!batch_id || !hr_id_valid(batch_id) || (n && !items))
		return hr_fail(err, HR_EINVAL, "batch_id", "a batch id and rows are required");
	struct items_ctx c = {.batch_id = batch_id, .items = items, .n = n};
	return lc_run(b, st, items_run, &c, sizeof c, NULL, NULL, err);
}

/*
 * A start within the tenant's caps: fewer campaigns PROCESSING than its
 * campaign cap, and room left in today's message cap for every valid row
 * (a start that could not finish today is refused whole rather than cut
 * off part way; a race with other sends may still stop it part way, see
 * enqueue_run). Both read in the start's own transaction, so two starts
 * at once cannot both take the last place.
 */
static int start_check(struct store_tx *tx, const char *tenant_id, const char *batch_id,
                       bool resume)
{
	struct lc_start_limits l = {0};
	int rc = tx->ops->start_limits(tx, tenant_id, batch_id, &l);
	if (rc)
		return rc;
	/* A paused campaign gave up its place (it is not PROCESSING); taking
	 * it again is checked like a start. Its messages counted against the
	 * day as they were made, so the daily cap is not asked again. */
	if (resume)
		l.daily_cap = 0;
	if (l.campaign_cap > 0 && l.processing >= l.campaign_cap)
		return hr_fail(TX_ERR(tx), HR_EQUOTA, "campaign_cap",
		               "tenant '%s' may run %lld campaign%s at once and %lld %s running:"
		               " wait for one to complete or cancel one",
		               tenant_id, (long long)l.campaign_cap, l.campaign_cap == 1 ? "" : "s",
		               (long long)l.processing, l.processing == 1 ? "is" : "are");
	if (l.daily_cap > 0 && l.valid > l.daily_cap - l.today)
		return hr_fail(TX_ERR(tx), HR_EQUOTA, "daily_cap",
		               "tenant '%s' has a daily cap of %lld messages: %lld accepted today"
		               " (UTC), the campaign's %lld rows do not fit; the count resets at"
		               " 00:00 UTC",
		               tenant_id, (long long)l.daily_cap, (long long)l.today,
		               (long long)l.valid);
	return 0;
}

struct status_ctx {
	const char *tenant_id, *id, *error;
	enum batch_status to;
	const struct audit_row *audit; /* NULL: none */
};

static int status_run(struct store_tx *tx, void *arg)
{
	struct status_ctx *c = arg;
	struct lc_batch_state s;
	int rc = get_state(tx, c->tenant_id, c->id, &s);
	if (rc)
		return rc;
	if (!batch_status_allowed(s.status, c->to))
		return hr_fail(TX_ERR(tx), HR_EINVAL, "status", "a %s batch cannot become %s",
		               batch_status_name(s.status), batch_status_name(c->to));
	bool resume = s.status == BATCH_PAUSED && c->to == BATCH_PROCESSING;
	if (c->to == BATCH_PROCESSING && (rc = start_check(tx, s.tenant_id, c->id, resume)))
		return rc;
	int64_t now = tx->ops->now(tx);
	/* A resume keeps started_at (the first start) and stamps resumed_at. */
	rc =
	    tx->ops->batch_set(tx, c->id, c->to, resume ? 0 : now,
	                       c->to == BATCH_FAILED ? (c->error ? c->error : "failed") : NULL, -1);
	int64_t moved = 0;
	/* Pausing holds what is queued, in this transaction: from its commit
	 * no claim can take one (a message claimed before it finishes; one
	 * queued again later, a retry, is held by lc_batch_screen). */
	if (rc == 0 && (c->to == BATCH_PAUSED || resume))
		rc = tx->ops->batch_hold(tx, c->id, c->to == BATCH_PAUSED, &moved);
	if (rc == 0 && resume)
		lc_batch_touch(tx, c->id); /* everything settled while paused: complete now */
	if (rc == 0 && (c->to == BATCH_PAUSED || c->to == BATCH_CANCELLED || resume))
		rc = tx->ops->batch_note(tx, c->id, c->to, resume, now,
		                         c->audit ? c->audit->actor : NULL,
		                         c->to == BATCH_FAILED ? NULL : c->error);
	return rc == 0 && c->audit ? tx->ops->audit_insert(tx, c->audit) : rc;
}

int lc_batch_set_status(const struct lc_backend *b, struct store *st, const char *tenant_id,
                        const char *id, enum batch_status to, const char *error,
                        struct hr_err *err)
{
	if (!id || !hr_id_valid(id))
		return hr_fail(err, HR_ENOTFOUND, "batch_id", "no batch %s", id ? id : "");
	if ((unsigned)to >= BATCH__COUNT)
		return hr_fail(err, HR_EINVAL, "status", "unknown batch status %d", (int)to);
	struct status_ctx c = {.tenant_id = tenant_id, .id = id, .error = error, .to = to};
	return lc_run(b, st, status_run, &c, sizeof c, NULL, NULL, err);
}

int lc_batch_set_status_audit(const struct lc_backend *b, struct store *st, const char *tenant_id,
                              const char *id, enum batch_status to, const char *error,
                              const struct audit_row *a, struct hr_err *err)
{
	if (a && (!a->tenant_id[0] || !a->actor[0] || !a->action[0] || !a->object[0]))
		return hr_fail(err, HR_EINVAL, "audit",
		               "an audit row needs tenant, actor, action and object");
	if (!id || !hr_id_valid(id))
		return hr_fail(err, HR_ENOTFOUND, "batch_id", "no batch %s", id ? id : "");
	if ((unsigned)to >= BATCH__COUNT)
		return hr_fail(err, HR_EINVAL, "status", "unknown batch status %d", (int)to);
	struct status_ctx c = {
	    .tenant_id = tenant_id, .id = id, .error = error, .to = to, .audit = a};
	return lc_run(b, st, status_run, &c, sizeof c, NULL, NULL, err);
}

static int discard_run(struct store_tx *tx, void *arg)
{
	struct status_ctx *c = arg;
	struct lc_batch_state s;
	int rc = get_state(tx, c->tenant_id, c->id, &s);
	if (rc)
		return rc;
	int64_t made = 0;
	for (int i = 0; i < MSG__COUNT; i++)
		made += s.by_status[i];
	bool before_start = s.status == BATCH_PENDING || s.status == BATCH_VALIDATED ||
	                    (s.status == BATCH_FAILED && made == 0);
	if (!before_start || made)
		return hr_fail(TX_ERR(tx), HR_EINVAL, "status",
		               "a %s batch with messages cannot be discarded (cancel it)",
		               batch_status_name(s.status));
	return tx->ops->batch_delete(tx, c->id);
}

int lc_batch_discard(const struct lc_backend *b, struct store *st, const char *tenant_id,
                     const char *id, struct hr_err *err)
{
	if (!id || !hr_id_valid(id))
		return hr_fail(err, HR_ENOTFOUND, "batch_id", "no batch %s", id ? id : "");
	struct status_ctx c = {.tenant_id = tenant_id, .id = id};
	return lc_run(b, st, discard_run, &c, sizeof c, NULL, NULL, err);
}

struct enqueue_ctx {
	const char *batch_id;
	const int64_t *rows;
	const struct message *msgs;
	size_t n;
	bool last;
	size_t made;
};

static int enqueue_run(struct store_tx *tx, void *arg)
{
	struct enqueue_ctx *c = arg;
	c->made = 0;
	struct lc_batch_state s;
	int rc = get_state(tx, NULL, c->batch_id, &s);
	if (rc)
		return rc;
	/* Paused: nothing is made (the runner finds the batch again once it
	 * is resumed); busy, not invalid, so the runner does not fail it. */
	if (s.status == BATCH_PAUSED)
		return hr_fail(TX_ERR(tx), HR_EBUSY, "paused",
		               "the batch is paused: its rows become messages once it is resumed");
	if (s.status != BATCH_PROCESSING)
		return hr_fail(TX_ERR(tx), HR_EINVAL, "status",
		               "messages are made only while the batch is processing (it is %s)",
		               batch_status_name(s.status));
	for (size_t i = 0; i < c->n; i++) {
		const struct message *m = &c->msgs[i];
		if (strcmp(m->batch_id, c->batch_id) != 0)
			return hr_fail(TX_ERR(tx), HR_EINVAL, "batch_id",
			               "message %s is not of batch %s", m->id, c->batch_id);
		if ((rc = tx->ops->item_take(tx, c->batch_id, c->rows[i], m->id)) < 0)
			return rc;
		if (rc == 0)
			continue; /* made before (a resumed start), or not sendable */
		if ((rc = tx->ops->msg_insert(tx, m)))
			return rc;
		struct lc_event ev = {.type = "accepted",
		                      .source = "batch",
		                      .status = MSG_QUEUED,
		                      .applied = true};
		if ((rc = tx->ops->event_insert(tx, m->id, &ev)))
			return rc;
		lc_count(tx, c->batch_id, -1, MSG_QUEUED, false);
		lc_daily(tx, m->tenant_id, m->channel, -1, MSG_QUEUED, NULL);
		c->made++;
	}
	/* The chunk's messages count against today's cap, all or none: past
	 * it the run fails and nothing of the chunk is written. */
	if (c->made && (rc = tx->ops->daily_take(tx, s.tenant_id, (int64_t)c->made)))
		return rc;
	if (c->last) {
		if ((rc = tx->ops->batch_set(tx, c->batch_id, BATCH_PROCESSING, 0, NULL, 1)))
			return rc;
		lc_batch_touch(tx, c->batch_id); /* an empty batch completes now */
	}
	return 0;
}

int lc_batch_enqueue(const struct lc_backend *b, struct store *st, const char *batch_id,
                     const int64_t *rows, const struct message *msgs, size_t n, bool last,
                     size_t *made, struct hr_err *err)
{
	if (made)
		*made = 0;
	if (!batch_id || !hr_id_valid(batch_id) || (n && (!rows || !msgs)))
		return hr_fail(err, HR_EINVAL, "batch_id", "a batch id, rows and messages are required");
	struct enqueue_ctx c = {.batch_id = batch_id, .rows = rows, .msgs = msgs, .n = n,
	                        .last = last};
	int rc = lc_run(b, st, enqueue_run, &c, sizeof c, NULL, NULL, err);
	if (rc == 0 && made)
		*made = c.made;
	return rc;
}

/* The message of a stopped batch, claimed or still queued: cancelled with
 * its event (the status change goes through lc_transition like any). */
static int cancel_msg(struct store_tx *tx, struct lc_msg *m, enum batch_status why, bool claimed)
{
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "batch_id", m->batch_id);
	ev_json_str(js, "reason", why == BATCH_FAILED ? "batch failed" : "batch cancelled");
	struct lc_event ev = {.type = "cancelled",
	                      .source = "batch",
	                      .status = MSG_CANCELLED,
	                      .applied = true};
	if (!(ev.detail = ev_json_end(js)))
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "message_event", "out of memory");
	struct lc_update u = {.set = LC_SET_STATUS | LC_SET_ERROR,
	                      .status = MSG_CANCELLED,
	                      .error_code = "cancelled",
	                      .error_text = why == BATCH_FAILED ? "the batch failed"
	                                                        : "the batch was cancelled"};
	if (claimed)
		u.set |= LC_GIVE_BACK_ATTEMPT;
	return lc_transition(tx, m, &u, &ev);
}

struct cancel_ctx {
	const char *batch_id;
	int limit;
	int64_t n;
};

static int cancel_run(struct store_tx *tx, void *arg)
{
	struct cancel_ctx *c = arg;
	c->n = 0;
	struct lc_batch_state s;
	int rc = get_state(tx, NULL, c->batch_id, &s);
	if (rc)
		return rc;
	if (s.status != BATCH_CANCELLED && s.status != BATCH_FAILED)
		return 0;
	struct lc_msg *rows = calloc((size_t)c->limit, sizeof *rows);
	if (!rows)
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "batch", "out of memory");
	size_t n = 0;
	rc = tx->ops->batch_queued(tx, c->batch_id, c->limit, rows, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = cancel_msg(tx, &rows[i], s.status, false);
	free(rows);
	if (rc == 0)
		c->n = (int64_t)n;
	return rc;
}

int lc_batch_cancel_step(const struct lc_backend *b, struct store *st, const char *batch_id,
                         int limit, int64_t *n)
{
	*n = 0;
	if (!batch_id || !hr_id_valid(batch_id) || limit < 1 || limit > 100000)
		return HR_EINVAL;
	struct cancel_ctx c = {.batch_id = batch_id, .limit = limit};
	int rc = lc_run(b, st, cancel_run, &c, sizeof c, NULL, NULL, NULL);
	if (rc == 0)
		*n = c.n;
	return rc;
}

/*
 * A message of a paused batch that a claim took anyway (queued again after
 * the pause held the others: a retry's backoff ran out, a lease expired):
 * back to QUEUED, held, its attempt given back, with a "held" event. The
 * batch's status is the one the claim's screen reads already (cached per
 * claim), so this costs the hot path nothing.
 */
static int hold_claimed(struct store_tx *tx, struct message *m, struct lc_msg *lm)
{
	struct ev_json *js = TX_JSON(tx);
	ev_json_begin(js);
	ev_json_str(js, "batch_id", m->batch_id);
	ev_json_str(js, "reason", "batch paused");
	struct lc_event ev = {
	    .type = "held", .source = "batch", .status = MSG_QUEUED, .applied = true};
	if (!(ev.detail = ev_json_end(js)))
		return hr_fail(TX_ERR(tx), HR_ENOMEM, "message_event", "out of memory");
	int64_t due = m->due_at > tx->ops->now(tx) ? m->due_at : tx->ops->now(tx);
	struct lc_update u = {.set = LC_SET_STATUS | LC_SET_DUE | LC_GIVE_BACK_ATTEMPT,
	                      .status = MSG_QUEUED,
	                      .due_at = due < LC_HOLD_BASE ? due + LC_HOLD_BASE : due};
	int rc = lc_transition(tx, lm, &u, &ev);
	if (rc == 0) {
		m->status = MSG_QUEUED; /* not sent: the dispatcher skips it */
		m->attempts = lm->attempts;
	}
	return rc;
}

int lc_batch_screen(struct store_tx *tx, struct lc_screen_cache *c, struct message *m,
                    struct lc_msg *lm)
{
	if (!m->batch_id[0])
		return 0;
	if (tx->acc && nobatch_has(tx->acc->st, m->batch_id))
		return 0; /* a JSON batch request's id: no campaign to screen by */
	if (c->status < 0 || strcmp(c->batch_id, m->batch_id) != 0) {
		struct lc_batch_state s;
		int rc = tx->ops->batch_state(tx, m->batch_id, &s);
		if (rc < 0)
			return rc;
		if (rc == 0 && tx->acc)
			nobatch_put(tx->acc->st, m->batch_id);
		hr_strlcpy(c->batch_id, m->batch_id, sizeof c->batch_id);
		c->status = rc ? (int)s.status : BATCH_PROCESSING; /* a JSON batch: no row */
	}
	if (c->status == BATCH_PAUSED)
		return hold_claimed(tx, m, lm);
	if (c->status != BATCH_CANCELLED && c->status != BATCH_FAILED)
		return 0;
	enum batch_status why = (enum batch_status)c->status;
	int rc = cancel_msg(tx, lm, why, true);
	if (rc)
		return rc;
	m->status = MSG_CANCELLED;
	m->attempts = lm->attempts;
	hr_strlcpy(m->error_code, "cancelled", sizeof m->error_code);
	hr_strlcpy(m->error_text,
	           why == BATCH_FAILED ? "the batch failed" : "the batch was cancelled",
	           sizeof m->error_text);
	return 0;
}
