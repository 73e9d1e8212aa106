/*
 * postgres_tx.c - the PostgreSQL backend's side of lifecycle.h: lifecycle
 * functions run as writer jobs (inside the group transaction, each in its
 * own savepoint), and struct store_tx_ops over the writer's connection and
 * prepared statements. Storage only: every decision is lifecycle.c's.
 *
 * Several nodes may run these transactions on one database at once, so the
 * rows a decision reads are locked as they are read: claims take QUEUED rows
 * with FOR UPDATE SKIP LOCKED (a row being claimed elsewhere is skipped, not
 * waited for), lease expiry likewise, and a single message read to decide
 * its next status (a send outcome, a webhook) with FOR UPDATE, so a lease
 * expiring on one node and a late outcome arriving on another are applied
 * one after the other, each seeing the other's result.
 *
 * Round trips. Each statement answered before the next is sent costs a
 * network round trip, which is what limited the delivery path (about nine
 * per message). So a transaction here
 * - reads what a run announces (store_tx_ops.prefetch: a batch's messages
 *   by id or by provider id, its inbox rows) with one statement each, all
 *   in one round trip, and keeps the rows in a cache that the single reads
 *   answer from and every write of the run keeps true (tx_row, tx_map);
 * - sends its writes (message updates, events, inbox marks, savepoints) in
 *   libpq's pipeline mode without waiting, and reads their results in one
 *   go (tx_sync) before the next read that needs the server, before an
 *   item that must be checked ends, and before the run returns: a run
 *   never returns 0 with a write that failed unread.
 * A batch of send outcomes or of webhook rows then costs two round trips
 * however large it is, instead of several per message.
 *
 * Items (per-outcome isolation) without a savepoint each: the writes of an
 * open item are held here, and sent when it ends with keep (dropped when
 * it is undone), so undoing one needs no statement; an item that must
 * read from the server or call a helper first gets its savepoint
 * ("promoted") and sends what it holds. A write of an item that fails when
 * its results are read after the item ended cannot be undone alone: the
 * whole run is undone to the savepoint taken at its first item, and run
 * again (tx_run, once) with every item "strict": its own savepoint, its
 * results read at its end, where item_end reports a failure as 1 (a round
 * trip per item, on this rare path only; outcomes that failed before the
 * rerun are logged twice). A run whose writes began before its first item
 * cannot be undone that way, so all its items are strict from the start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres.h"
#include "store/postgres_int.h"

struct job_lc {
	struct wr_job j;
	lc_tx_fn fn;
	void *ctx;
	bool ctx_inline;
};

/* What the claim statement found out beside the rows (see tx_claim). */
#define PG_CLAIM_SUPP_MAX 8
struct pg_claim_probe {
	bool valid;
	char account[HR_NAME_MAX];
	int alias_any;
	int nsupp;
	struct {
		char tenant[HR_NAME_MAX];
		char channel[16];
		int any;
	} supp[PG_CLAIM_SUPP_MAX];
};

/* Unread writes in the pipeline before a sync is forced: their results
 * wait in socket buffers and libpq's input buffer meanwhile (libpq reads
 * them in while a send would block, so this bounds memory, not a
 * deadlock), and a failure is found this much later. */
#define TX_PIPE_MAX 512
/* The item tag of commands sent outside any item. */
#define TX_OUTSIDE (-1)
/* tx_sync's `own` when no item's failure is expected. */
#define TX_NOBODY (-2)

/* A command sent in the transaction's pipeline, its result not read yet. */
struct tx_cmd {
	int item; /* the item it belongs to, or TX_OUTSIDE */
	enum { TC_STMT, TC_PREPARE, TC_UTIL } kind;
	enum pg_slot slot;
	const char *field;
	PGresult **out; /* where a read's result goes, else NULL */
};

/* A write of the open item, held until the item ends. The parameter texts
 * follow the struct. */
struct tx_held {
	enum pg_slot slot;
	const char *sql, *field;
	int n;
	const char *v[PG_PARAMS_MAX];
};

/* A message row as this transaction knows it: what a read would return now. */
struct tx_row {
	struct lc_msg m;
	char pid[HR_PROVIDER_ID_MAX]; /* its provider id, "" for none */
};

/* An inbox row as inbox_state returns it. */
struct tx_inbox {
	int64_t received_at;
	int attempts;
	char channel[16];
};

/* Map values besides an index into rows[] / inbox[]. */
#define TX_ABSENT (-1) /* no such row */
#define TX_ASK (-2)    /* not known here: ask the server */
#define TX_MISS (-3)   /* (map_get) never heard of */

/* A string -> int map (open addressing, never shrinks: forgetting a key
 * sets TX_ASK). */
struct tx_map {
	struct tx_slot {
		char *key;
		int val;
	} * v;
	size_t cap, n;
};

/* One change of the cache inside the open item, to undo with it. */
struct tx_undo {
	enum { TU_MAP, TU_ROW, TU_INBOX } kind;
	struct tx_map *map;
	char *key; /* TU_MAP: owned */
	int val;   /* TU_MAP: the old value; TU_ROW/TU_INBOX: the index */
	union {
		struct tx_row row;
		struct tx_inbox ib;
	} old;
};

struct pg_tx {
	struct store_tx base;
	struct pg_store *s;
	struct wr_job *j;
	struct pg_claim_probe probe;

	/* The pipeline: commands sent and not read. */
	struct tx_cmd *cmds;
	size_t ncmds, capcmds;
	bool lost;   /* the connection or the transaction is gone */
	bool replay; /* an ended item's write failed: run again (tx_run) */
	int replay_item;

	/* Items of this run of fn. */
	int items;       /* item_begin calls so far */
	int cur;         /* the open item, TX_OUTSIDE for none */
	bool promoted;   /* the open item's savepoint was sent */
	bool strict;     /* the open item is checked at its end */
	bool wrote;      /* a write outside items was sent */
	bool run_sp;     /* SAVEPOINT lc was sent (at the first item) */
	bool no_replay;  /* writes came before the first item: all strict */
	bool drain_only; /* fn failed: failures found now change nothing */
	struct tx_held **held;
	size_t nheld, capheld;
	bool rerun; /* this is the run again: every item is strict */

	/* The cache (see tx_prefetch). */
	bool cache_off;
	struct tx_row *rows;
	size_t nrows, caprows;
	struct tx_inbox *inbox;
	size_t ninbox, capinbox;
	struct tx_map ids, pairs, inboxes;
	/* Webhook statuses recorded per (message, inbox row): complete for
	 * every message in seen_msgs with every row in seen_rows (pf_seen). */
	struct tx_map seen, seen_msgs, seen_rows;
	struct tx_undo *undo;
	size_t nundo, capundo;
};

static const struct store_tx_ops pg_tx_ops;
static int tx_run(struct pg_tx *t, lc_tx_fn fn, void *ctx);

static int run_lc(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_lc *l = (struct job_lc *)j;
	struct pg_tx tx = {.base = {.ops = &pg_tx_ops}, .s = s, .j = j};
	void *ctx = l->ctx_inline ? (void *)(l + 1) : l->ctx;
	return tx_run(&tx, l->fn, ctx);
}
static int pg_lc_run(struct store *st, lc_tx_fn fn, void *ctx, size_t ctx_size, store_done_fn cb,
                     void *arg, struct hr_err *err)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!cb) {
		struct job_lc l = {.j = {.run = run_lc}, .fn = fn, .ctx = ctx};
		return wr_run_blocking(&s->wr, &l.j, err);
	}
	size_t size = sizeof(struct job_lc) + ctx_size;
	struct job_lc *l = calloc(1, size);
	if (!l)
		return HR_ENOMEM;
	l->j.run = run_lc;
	l->fn = fn;
	l->ctx_inline = true;
	memcpy(l + 1, ctx, ctx_size);
	int rc = wr_run_async(&s->wr, &l->j, size, cb, arg);
	free(l);
	return rc;
}

const struct lc_backend pg_lc_backend = {.run = pg_lc_run};

#define TX(t) ((struct pg_tx *)(t))
#define S(t) (TX(t)->s)
#define W(t) (&TX(t)->s->w)
#define E(t) (&TX(t)->j->err)

/* ---------------------------------------------------------------------------
 * The pipeline.
 * ------------------------------------------------------------------------- */

static void trip(struct pg_tx *t)
{
	atomic_fetch_add(&t->s->tx_trips, 1);
}

/* The transaction cannot go on: the connection goes (the server rolls
 * back; the writer sees it broken, fails the group and reconnects). */
static int tx_lose(struct pg_tx *t, const char *what)
{
	PGconn *c = W(t)->c;
	int rc = hr_fail(E(t), HR_EBUSY, "store", "postgres: %s: %s", what,
	                 c ? PQerrorMessage(c) : "not connected");
	if (c && (PQstatus(c) != CONNECTION_OK || PQpipelineStatus(c) != PQ_PIPELINE_OFF))
		pg_disconnect(W(t));
	t->lost = true;
	return rc;
}

/* What every call answers once the run cannot go on (lost, or to be run
 * again): the error that stopped it. */
static int tx_dead(struct pg_tx *t)
{
	return E(t)->code ? E(t)->code : HR_EIO;
}

static bool cmd_push(struct pg_tx *t, int item, int kind, enum pg_slot slot, const char *field,
                     PGresult **out)
{
	if (t->ncmds == t->capcmds) {
		size_t nc = t->capcmds ? t->capcmds * 2 : 64;
		struct tx_cmd *v = realloc(t->cmds, nc * sizeof *v);
		if (!v)
			return false;
		t->cmds = v;
		t->capcmds = nc;
	}
	t->cmds[t->ncmds++] = (struct tx_cmd){item, kind, slot, field, out};
	return true;
}

static void clear_outs(struct pg_tx *t)
{
	for (size_t i = 0; i < t->ncmds; i++)
		if (t->cmds[i].out && *t->cmds[i].out) {
			PQclear(*t->cmds[i].out);
			*t->cmds[i].out = NULL;
		}
}

/*
 * Sends the sync and reads the result of every command sent since the last
 * one (reads get theirs in *out). 0 if all succeeded. Otherwise the first
 * failure is in err (the transaction is then aborted until a rollback to
 * a savepoint), no *out is kept, and the code returned; if it belongs to
 * an item that already ended (not `own`, not outside items), the run is to
 * be undone and run again (t->replay).
 */
static int tx_sync(struct pg_tx *t, int own)
{
	PGconn *c = W(t)->c;
	if (!c || PQpipelineStatus(c) == PQ_PIPELINE_OFF)
		return t->lost ? tx_dead(t) : 0;
	if (!PQpipelineSync(c))
		return tx_lose(t, "cannot send");
	trip(t);
	long failed = -1;
	int frc = 0;
	for (size_t i = 0; i < t->ncmds; i++) {
		struct tx_cmd *d = &t->cmds[i];
		PGresult *r = PQgetResult(c);
		if (!r) {
			clear_outs(t);
			t->ncmds = 0;
			return tx_lose(t, "pipeline results missing");
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
			if (d->out)
				*d->out = r;
			else
				PQclear(r);
		} else {
			if (d->kind == TC_PREPARE)
				W(t)->prep[d->slot] = false;
			if (st != PGRES_PIPELINE_ABORTED && failed < 0) {
				failed = (long)i;
				frc = pg_fail(W(t), r, E(t), d->field);
			}
			PQclear(r);
		}
		if ((r = PQgetResult(c))) { /* each command's results end with NULL */
			PQclear(r);
			clear_outs(t);
			t->ncmds = 0;
			return tx_lose(t, "pipeline out of step");
		}
	}
	PGresult *r = PQgetResult(c);
	bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	if (failed >= 0 || !synced)
		clear_outs(t);
	int item = failed >= 0 ? t->cmds[failed].item : TX_OUTSIDE;
	t->ncmds = 0;
	if (!synced || !PQexitPipelineMode(c) || PQstatus(c) != CONNECTION_OK)
		return tx_lose(t, "pipeline sync");
	if (failed < 0)
		return 0;
	if (item == own || item == TX_OUTSIDE || t->drain_only)
		return frc;
	if (!t->run_sp || t->rerun) /* cannot happen: such items are strict */
		return tx_lose(t, "a write failed with nothing to roll back to");
	t->replay = true;
	t->replay_item = item;
	return frc;
}

static int tx_enter(struct pg_tx *t)
{
	PGconn *c = W(t)->c;
	if (!c)
		return tx_lose(t, "not connected");
	if (PQpipelineStatus(c) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c))
		return tx_lose(t, "cannot enter pipeline mode");
	return 0;
}

/* Sends one prepared statement (prepared first on this connection if it
 * was not) tagged with item; a read passes out. Past TX_PIPE_MAX unread
 * commands a write syncs (the open item's failure is then its own). */
static int tx_send(struct pg_tx *t, int item, enum pg_slot slot, const char *sql, int n,
                   const char *const *v, const char *field, PGresult **out)
{
	int rc = tx_enter(t);
	if (rc)
		return rc;
	PGconn *c = W(t)->c;
	char name[16];
	snprintf(name, sizeof name, "h%d", (int)slot);
	if (!W(t)->prep[slot]) {
		if (!PQsendPrepare(c, name, sql, 0, NULL) ||
		    !cmd_push(t, item, TC_PREPARE, slot, field, NULL))
			return tx_lose(t, "cannot send");
		W(t)->prep[slot] = true; /* taken back if the prepare fails */
	}
	if (!PQsendQueryPrepared(c, name, n, v, NULL, NULL, 0) ||
	    !cmd_push(t, item, TC_STMT, slot, field, out))
		return tx_lose(t, "cannot send");
	if (!out && t->ncmds >= TX_PIPE_MAX)
		return tx_sync(t, t->cur);
	return 0;
}

/* A statement without parameters (savepoints), sent in the pipeline. */
static int tx_util(struct pg_tx *t, int item, const char *sql)
{
	int rc = tx_enter(t);
	if (rc)
		return rc;
	if (!PQsendQueryParams(W(t)->c, sql, 0, NULL, NULL, NULL, NULL, 0) ||
	    !cmd_push(t, item, TC_UTIL, P__COUNT, "savepoint", NULL))
		return tx_lose(t, "cannot send");
	return 0;
}

/* ---------------------------------------------------------------------------
 * Items: held writes, promotion, the undo log.
 * ------------------------------------------------------------------------- */

static void held_drop(struct pg_tx *t)
{
	for (size_t i = 0; i < t->nheld; i++)
		free(t->held[i]);
	t->nheld = 0;
}

/* Keeps a copy of a write of the open item (its parameters are borrowed
 * from the caller). All are text parameters. */
static int tx_hold(struct pg_tx *t, enum pg_slot slot, const char *sql, const struct pg_params *p,
                   const char *field)
{
	size_t need = 0;
	for (int i = 0; i < p->n; i++)
		if (p->v[i])
			need += strlen(p->v[i]) + 1;
	if (t->nheld == t->capheld) {
		size_t nc = t->capheld ? t->capheld * 2 : 16;
		struct tx_held **v = realloc(t->held, nc * sizeof *v);
		if (!v)
			return hr_fail(E(t), HR_ENOMEM, field, "out of memory");
		t->held = v;
		t->capheld = nc;
	}
	struct tx_held *h = malloc(sizeof *h + need);
	if (!h)
		return hr_fail(E(t), HR_ENOMEM, field, "out of memory");
	*h = (struct tx_held){.slot = slot, .sql = sql, .field = field, .n = p->n};
	char *dst = (char *)(h + 1);
	for (int i = 0; i < p->n; i++) {
		h->v[i] = NULL;
		if (!p->v[i])
			continue;
		size_t len = strlen(p->v[i]) + 1;
		memcpy(dst, p->v[i], len);
		h->v[i] = dst;
		dst += len;
	}
	t->held[t->nheld++] = h;
	return 0;
}

/* Sends what the item held, tagged with it. */
static int held_send(struct pg_tx *t, int item)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < t->nheld; i++) {
		const struct tx_held *h = t->held[i];
		rc = tx_send(t, item, h->slot, h->sql, h->n, h->v, h->field, NULL);
	}
	held_drop(t);
	return rc;
}

/* The open item gets its savepoint, and what it held is sent after it:
 * from here on the server has all it wrote, and can undo it. */
static int tx_promote(struct pg_tx *t)
{
	if (t->cur == TX_OUTSIDE || t->promoted)
		return 0;
	int rc = tx_util(t, t->cur, "SAVEPOINT item");
	if (rc == 0)
		rc = held_send(t, t->cur);
	t->promoted = rc == 0;
	return rc;
}

static void undo_drop(struct pg_tx *t)
{
	for (size_t i = 0; i < t->nundo; i++)
		if (t->undo[i].kind == TU_MAP)
			free(t->undo[i].key);
	t->nundo = 0;
}

static void cache_reset(struct pg_tx *t);
static void map_put(struct tx_map *m, size_t slot, int val);
static size_t map_find(const struct tx_map *m, const char *key);

/* Puts the cache back as it was when the open item began. */
static void undo_all(struct pg_tx *t)
{
	while (t->nundo) {
		struct tx_undo *u = &t->undo[--t->nundo];
		if (u->kind == TU_ROW)
			t->rows[u->val] = u->old.row;
		else if (u->kind == TU_INBOX)
			t->inbox[u->val] = u->old.ib;
		else
			map_put(u->map, map_find(u->map, u->key), u->val);
		if (u->kind == TU_MAP)
			free(u->key);
	}
}

/* A new entry of the undo log, or NULL when there is no open item (nothing
 * to undo) or no memory: then the cache is turned off, which is always
 * right (the server answers instead). */
static struct tx_undo *undo_new(struct pg_tx *t, int kind)
{
	if (t->cur == TX_OUTSIDE || t->cache_off)
		return NULL;
	if (t->nundo == t->capundo) {
		size_t nc = t->capundo ? t->capundo * 2 : 16;
		struct tx_undo *v = realloc(t->undo, nc * sizeof *v);
		if (!v) {
			t->cache_off = true;
			return NULL;
		}
		t->undo = v;
		t->capundo = nc;
	}
	struct tx_undo *u = &t->undo[t->nundo++];
	u->kind = kind;
	u->key = NULL;
	return u;
}

/* ---------------------------------------------------------------------------
 * The cache.
 * ------------------------------------------------------------------------- */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* The slot of key: where it is, or the empty slot where it would go. */
static size_t map_find(const struct tx_map *m, const char *key)
{
	size_t i = (size_t)hash(key) & (m->cap - 1);
	while (m->v[i].key && strcmp(m->v[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int map_get(const struct tx_map *m, const char *key)
{
	if (!m->cap)
		return TX_MISS;
	size_t i = map_find(m, key);
	return m->v[i].key ? m->v[i].val : TX_MISS;
}

static void map_put(struct tx_map *m, size_t slot, int val)
{
	m->v[slot].val = val;
}

/* Sets key to val, adding it if new; false without memory. */
static bool map_set(struct tx_map *m, const char *key, int val)
{
	if ((m->n + 1) * 4 > m->cap * 3) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		struct tx_slot *v = calloc(nc, sizeof *v);
		if (!v)
			return false;
		struct tx_map bigger = {.v = v, .cap = nc, .n = m->n};
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i].key)
				bigger.v[map_find(&bigger, m->v[i].key)] = m->v[i];
		free(m->v);
		*m = bigger;
	}
	size_t i = map_find(m, key);
	if (!m->v[i].key) {
		if (!(m->v[i].key = strdup(key)))
			return false;
		m->n++;
	}
	m->v[i].val = val;
	return true;
}

static void map_free(struct tx_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].key);
	free(m->v);
	*m = (struct tx_map){0};
}

/* The key of a message by provider id: the account's length first, so no
 * two (account, provider id) pairs give the same text. NULL without memory. */
static char *pair_key(const char *account_id, const char *provider_id)
{
	size_t a = strlen(account_id), p = strlen(provider_id);
	char *k = malloc(a + p + 24);
	if (k)
		snprintf(k, a + p + 24, "%zu:%s%s", a, account_id, provider_id);
	return k;
}

static void cache_reset(struct pg_tx *t)
{
	map_free(&t->ids);
	map_free(&t->pairs);
	map_free(&t->inboxes);
	map_free(&t->seen);
	map_free(&t->seen_msgs);
	map_free(&t->seen_rows);
	free(t->rows);
	free(t->inbox);
	t->rows = NULL;
	t->inbox = NULL;
	t->nrows = t->caprows = t->ninbox = t->capinbox = 0;
	undo_drop(t);
	t->cache_off = false;
}

/* Stops answering from the cache for the rest of the run. */
static void cache_off(struct pg_tx *t)
{
	t->cache_off = true;
}

/* The key now names no row this transaction knows of (another row may
 * carry it): the server is asked. Undone with the open item. */
static void cache_forget(struct pg_tx *t, struct tx_map *m, const char *key)
{
	int old = map_get(m, key);
	if (old == TX_MISS || old == TX_ASK)
		return;
	struct tx_undo *u = undo_new(t, TU_MAP);
	if (t->cache_off)
		return;
	if (u) {
		if (!(u->key = strdup(key))) {
			t->nundo--;
			cache_off(t);
			return;
		}
		u->map = m;
		u->val = old;
	}
	map_put(m, map_find(m, key), TX_ASK);
}

static void cache_forget_pair(struct pg_tx *t, const char *account_id, const char *provider_id)
{
	char *k = pair_key(account_id, provider_id);
	if (!k) {
		cache_off(t);
		return;
	}
	cache_forget(t, &t->pairs, k);
	free(k);
}

/* Row idx as the open item found it, to put back if the item is undone. */
static void cache_save_row(struct pg_tx *t, int idx)
{
	struct tx_undo *u = undo_new(t, TU_ROW);
	if (u) {
		u->val = idx;
		u->old.row = t->rows[idx];
	}
}

/*
 * What `UPDATE message` (tx_msg_update) does to the row, done to the
 * cached row too, field by field as the statement does it, so the next
 * read answers what the database would. A provider id that changes makes
 * the messages of the new id unknown here (another row may carry it); the
 * key of the old one is checked against the row on every use
 * (tx_msg_by_provider).
 */
static void cache_update(struct pg_tx *t, const struct lc_msg *m, const struct lc_update *u)
{
	if (t->cache_off)
		return;
	unsigned f = u->set;
	int pmode = (f & LC_PROVIDER_ID_IF_NONE) ? 2 : (f & LC_SET_PROVIDER_ID) ? 1 : 0;
	const char *pid = u->provider_id && u->provider_id[0] ? u->provider_id : NULL;
	int idx = map_get(&t->ids, m->id);
	struct tx_row *row = idx >= 0 ? &t->rows[idx] : NULL;
	bool sets_pid =
	    pmode && pid && (!row || (pmode == 1 ? strcmp(row->pid, pid) != 0 : !row->pid[0]));
	if (sets_pid) {
		/* Its key is built from the account as read, which a name that
		 * long may have lost the end of. */
		if (strlen(m->account_id) + 1 >= sizeof m->account_id)
			cache_off(t);
		else
			cache_forget_pair(t, m->account_id, pid);
	}
	if (!row || t->cache_off)
		return;
	cache_save_row(t, idx);
	if (t->cache_off)
		return;
	if (f & LC_SET_STATUS) {
		row->m.status = u->status;
		row->m.lease_until = 0;
	}
	if (sets_pid) {
		hr_strlcpy(row->pid, pid, sizeof row->pid);
		row->m.has_provider_id = true;
	}
	if ((f & LC_SET_RECIPIENT) && u->recipient && u->recipient[0])
		hr_utf8_copy(row->m.recipient, u->recipient, sizeof row->m.recipient);
	if (f & LC_GIVE_BACK_ATTEMPT)
		row->m.attempts = row->m.attempts > 0 ? row->m.attempts - 1 : 0;
	if (f & LC_SET_SENT_AT)
		row->m.sent_at = u->sent_at;
	if (f & LC_SET_STALE)
		row->m.stale = true;
}

/* ---------------------------------------------------------------------------
 * A run of a lifecycle function, and running it again.
 * ------------------------------------------------------------------------- */

static void tx_free(struct pg_tx *t)
{
	cache_reset(t);
	held_drop(t);
	free(t->held);
	free(t->undo);
	free(t->cmds);
}

/* After fn returned rc: the run savepoint goes and every result still
 * unread is read, so the job never reports 0 over a write that failed. */
static int tx_finish(struct pg_tx *t, int rc)
{
	if (t->replay)
		return rc ? rc : tx_dead(t);
	if (t->lost)
		return tx_dead(t);
	if (rc == 0 && t->cur != TX_OUTSIDE)
		rc = hr_fail(E(t), HR_EINTERNAL, "item", "a run ended inside an item");
	if (rc) {
		t->drain_only = true; /* it fails whole: nothing to run again */
		tx_sync(t, TX_NOBODY);
		t->drain_only = false;
		return rc;
	}
	if (t->run_sp && (rc = tx_util(t, TX_OUTSIDE, "RELEASE SAVEPOINT lc")))
		return rc;
	return tx_sync(t, TX_NOBODY);
}

/* Undoes the run (to the savepoint of its first item) so that it can run
 * again, every item checked alone. */
static int tx_rewind(struct pg_tx *t)
{
	int item = t->replay_item;
	hr_log(HR_LOG_WARN, "store",
	       "a write of item %d failed after the item ended (%s); undoing the run and"
	       " running it again with each item checked alone",
	       item, E(t)->msg);
	trip(t);
	int rc = pg_simple(W(t), "ROLLBACK TO SAVEPOINT lc", E(t), "savepoint");
	if (rc)
		return rc;
	t->rerun = true;
	atomic_fetch_add(&t->s->tx_replays, 1);
	/* What the undone run noted for the status counts goes with it (the
	 * run made again notes its own). */
	static const int64_t none[MSG__COUNT];
	if ((rc = pg_status_note(t->s, t->j, none, E(t))))
		return rc;
	cache_reset(t);
	held_drop(t);
	t->replay = false;
	t->items = 0;
	t->cur = TX_OUTSIDE;
	t->promoted = t->wrote = false;
	hr_err_clear(E(t));
	return 0;
}

/* Runs fn, and again from the start each time a write of one of its items
 * turns out to have failed after the item ended (lc_tx_fn says why that is
 * allowed): a failing item is undone alone, as if it had been checked. */
static int tx_run(struct pg_tx *t, lc_tx_fn fn, void *ctx)
{
	t->cur = TX_OUTSIDE;
	int rc;
	for (;;) {
		rc = tx_finish(t, fn(&t->base, ctx));
		if (!t->replay || (rc = tx_rewind(t)))
			break;
	}
	tx_free(t);
	return rc;
}

/* ---------------------------------------------------------------------------
 * The transaction's primitives.
 * ------------------------------------------------------------------------- */

/* The database's clock when the group began (now()): one time for every
 * job of the transaction, from the one clock all nodes share. */
static int64_t tx_now(struct store_tx *t)
{
	return S(t)->gnow;
}

static struct hr_err *tx_err(struct store_tx *t)
{
	return E(t);
}

static struct ev_json *tx_json(struct store_tx *t)
{
	return &S(t)->json;
}

/* A write: held if the open item has no savepoint, else sent. */
static int tx_write(struct pg_tx *t, enum pg_slot slot, const char *sql, const struct pg_params *p,
                    const char *field)
{
	if (t->lost || t->replay)
		return tx_dead(t);
	if (t->cur != TX_OUTSIDE && !t->promoted)
		return tx_hold(t, slot, sql, p, field);
	if (t->cur == TX_OUTSIDE)
		t->wrote = true;
	return tx_send(t, t->cur, slot, sql, p->n, p->v, field, NULL);
}

/* A statement whose result is needed now (writes set: it also writes):
 * sent after what is pending, in the same round trip. *out to PQclear. */
static int tx_read(struct pg_tx *t, enum pg_slot slot, const char *sql, const struct pg_params *p,
                   PGresult **out, const char *field, bool writes)
{
	*out = NULL;
	if (t->lost || t->replay)
		return tx_dead(t);
	int rc = tx_promote(t);
	if (rc)
		return rc;
	if (writes && t->cur == TX_OUTSIDE)
		t->wrote = true;
	if ((rc = tx_send(t, t->cur, slot, sql, p->n, p->v, field, out)))
		return rc;
	return tx_sync(t, t->cur);
}

/* Before a helper of another file runs its statements directly: all that
 * is pending is sent and read, and the pipeline left. */
static int tx_direct(struct pg_tx *t, bool writes)
{
	if (t->lost || t->replay)
		return tx_dead(t);
	int rc = tx_promote(t);
	if (rc == 0)
		rc = tx_sync(t, t->cur);
	if (rc == 0 && writes && t->cur == TX_OUTSIDE)
		t->wrote = true;
	if (rc == 0)
		trip(t);
	return rc;
}

/* An item: its writes are held until it ends (no statement); a strict one
 * gets its savepoint now. The first item of a run that wrote nothing yet
 * also marks where a rerun starts (SAVEPOINT lc). */
static int tx_item_begin(struct store_tx *st)
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	if (t->cur != TX_OUTSIDE)
		return hr_fail(E(t), HR_EINTERNAL, "item", "an item inside an item");
	int rc;
	if (!t->run_sp && !t->no_replay) {
		if (t->wrote)
			t->no_replay = true;
		else if ((rc = tx_util(t, TX_OUTSIDE, "SAVEPOINT lc")))
			return rc;
		else
			t->run_sp = true;
	}
	t->cur = t->items++;
	t->promoted = false;
	t->strict = t->no_replay || t->rerun;
	undo_drop(t);
	held_drop(t);
	return t->strict ? tx_promote(t) : 0;
}

/* Undoes the open item on the server (it has a savepoint): first what is
 * pending is read (its own failure is what is being undone; another's
 * means a rerun), then the rollback. */
static int item_rollback(struct pg_tx *t, int item)
{
	int rc = tx_sync(t, item);
	if (t->replay || t->lost)
		return tx_dead(t);
	if (rc)
		hr_err_clear(E(t));
	trip(t);
	return pg_simple(W(t), "ROLLBACK TO SAVEPOINT item; RELEASE SAVEPOINT item", E(t),
	                 "savepoint");
}

static int tx_item_end(struct store_tx *st, bool keep)
{
	struct pg_tx *t = TX(st);
	int item = t->cur, rc = 0;
	if (item == TX_OUTSIDE)
		return hr_fail(E(t), HR_EINTERNAL, "item", "item_end without item_begin");
	bool promoted = t->promoted;
	t->cur = TX_OUTSIDE;
	t->promoted = false;
	if (t->lost || t->replay) {
		undo_drop(t);
		held_drop(t);
		return tx_dead(t);
	}
	if (!keep) {
		undo_all(t);
		held_drop(t);
		return promoted ? item_rollback(t, item) : 0;
	}
	if (!promoted) { /* what it held goes now, read with the rest later */
		undo_drop(t);
		return held_send(t, item);
	}
	rc = tx_util(t, item, "RELEASE SAVEPOINT item");
	/* Strict: read now, so a failure here is this item's alone. The
	 * RELEASE was skipped with the rest, so its savepoint still stands. */
	if (rc == 0 && t->strict)
		rc = tx_sync(t, item);
	if (rc == 0 || t->replay || t->lost) {
		undo_drop(t);
		return rc;
	}
	struct hr_err why = *E(t);
	undo_all(t);
	trip(t);
	if ((rc = pg_simple(W(t), "ROLLBACK TO SAVEPOINT item; RELEASE SAVEPOINT item", E(t),
	                    "savepoint")))
		return rc;
	*E(t) = why;
	return 1;
}

/* Alive while the transaction can still be rolled back to a savepoint:
 * not lost, not to be run again, and (outside the pipeline) in a
 * transaction, aborted or not. */
static bool tx_alive(struct store_tx *st)
{
	struct pg_tx *t = TX(st);
	PGconn *c = W(t)->c;
	if (t->lost || t->replay || !c || PQstatus(c) != CONNECTION_OK)
		return false;
	if (PQpipelineStatus(c) != PQ_PIPELINE_OFF)
		return true;
	PGTransactionStatusType ts = PQtransactionStatus(c);
	return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

#define LC_MSG_COLS                                                                                \
	"id, tenant_id, account_id, channel, recipient, status, attempts, max_attempts,"           \
	" provider_id IS NOT NULL, lease_until, batch_id, delivery_policy, expires_at,"            \
	" route_step, route_steps, route_root, fallback_after, sent_at, stale,"                    \
	" callback_url IS NOT NULL"
#define LC_MSG_NCOLS 20 /* the columns row_lc_msg reads */

static void row_lc_msg(const PGresult *r, int i, struct lc_msg *m)
{
	memset(m, 0, sizeof *m);
	m->key = -1; /* rows are found again by id */
	pg_col_copy(r, i, 0, m->id, sizeof m->id);
	pg_col_copy(r, i, 1, m->tenant_id, sizeof m->tenant_id);
	pg_col_copy(r, i, 2, m->account_id, sizeof m->account_id);
	pg_col_copy(r, i, 3, m->channel, sizeof m->channel);
	pg_col_copy(r, i, 4, m->recipient, sizeof m->recipient);
	m->status = (enum msg_status)pg_col_i64(r, i, 5);
	m->attempts = (int)pg_col_i64(r, i, 6);
	m->max_attempts = (int)pg_col_i64(r, i, 7);
	m->has_provider_id = pg_col_bool(r, i, 8);
	m->lease_until = pg_col_i64(r, i, 9);
	pg_col_copy(r, i, 10, m->batch_id, sizeof m->batch_id);
	m->policy = (enum delivery_policy)pg_col_i64(r, i, 11);
	m->expires_at = pg_col_i64(r, i, 12);
	m->route_step = (int)pg_col_i64(r, i, 13);
	m->route_steps = (int)pg_col_i64(r, i, 14);
	pg_col_copy(r, i, 15, m->route_root, sizeof m->route_root);
	m->fallback_after = pg_col_i64(r, i, 16);
	m->sent_at = pg_col_i64(r, i, 17);
	m->stale = pg_col_i64(r, i, 18) != 0;
	m->callback = pg_col_bool(r, i, 19) ? LC_CB_SOME : LC_CB_NONE;
}

/* ---------------------------------------------------------------------------
 * Prefetch: the batch's rows in one round trip.
 * ------------------------------------------------------------------------- */

/* Keys that go into a prefetch array: printable ASCII only, so no key can
 * make the one statement fail for all (one that could, e.g. invalid UTF-8,
 * is read alone, failing alone as before). */
static bool key_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* Appends s as the next element of a text[] literal being built in b
 * (b starts with "{"): quoted, with '"' and '\' escaped. */
static void arr_add(struct hr_buf *b, const char *s)
{
	if (b->len > 1)
		hr_buf_put(b, ",", 1);
	hr_buf_put(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			hr_buf_put(b, "\\", 1);
		hr_buf_put(b, s, 1);
	}
	hr_buf_put(b, "\"", 1);
}

/* The columns of a prefetched message: the row as LC_MSG_COLS, its provider
 * id, and whether this transaction holds its lock. */
#define PF_COLS LC_MSG_COLS ", coalesce(provider_id, '')"
#define PF_PID LC_MSG_NCOLS
#define PF_LOCKED (LC_MSG_NCOLS + 1)

/*
 * Locking. Like the single reads, a prefetch locks each message it returns
 * (FOR UPDATE) for the rest of the transaction, so no other node changes
 * a row between the read a decision is made on and the write that follows
 * it: an outcome and a webhook, or a lease expiring elsewhere, for the same
 * message are applied one after the other, each seeing the other's result.
 * Unlike them it never waits: rows another transaction holds are skipped
 * (SKIP LOCKED), returned unlocked by the second half, and left to the
 * single read, which waits for them as before. So a prefetch cannot
 * deadlock with another node's, and a conflict costs what it cost before
 * (that one read), not the batch.
 *
 * Messages by provider id are read one statement per account (all in the
 * same round trip): `provider_id = ANY(...)` walks message_provider once,
 * where a join with the list of pairs would probe every partition once per
 * pair, or scan them, as the planner's statistics of a fast-changing table
 * lead it.
 */
static const char SQL_PF_MSG[] =
    "WITH l AS (SELECT " PF_COLS " FROM message WHERE id = ANY($1::text[])"
    "  FOR UPDATE SKIP LOCKED)"
    " SELECT l.*, true FROM l"
    " UNION ALL SELECT " PF_COLS ", false FROM message"
    "  WHERE id = ANY($1::text[]) AND id NOT IN (SELECT id FROM l)";

static const char SQL_PF_PAIRS[] =
    "WITH l AS (SELECT " PF_COLS " FROM message"
    "  WHERE account_id = $1 AND provider_id = ANY($2::text[]) FOR UPDATE SKIP LOCKED)"
    " SELECT l.*, true FROM l"
    " UNION ALL SELECT " PF_COLS ", false FROM message"
    "  WHERE account_id = $1 AND provider_id = ANY($2::text[])"
    "  AND id NOT IN (SELECT id FROM l)";

/* The webhook statuses recorded for some messages by some inbox rows: what
 * event_seen asks, for all of them at once. */
static const char SQL_PF_SEEN[] =
    "SELECT message_id, inbox_id, status FROM message_event"
    " WHERE message_id = ANY($1::text[]) AND inbox_id = ANY($2::bigint[])"
    " AND type = 'webhook_status' AND status IS NOT NULL";

static const char SQL_PF_INBOX[] = "SELECT id, received_at, attempts, channel FROM webhook_inbox"
                                   " WHERE id = ANY($1::bigint[])";

/* Keeps the prefetched message rows: each by id, and (pairs) by the
 * (account, provider id) it was asked for. A key with a row locked
 * elsewhere is left to the server; of several rows with one provider id,
 * the lowest id answers. false without memory. */
static bool pf_keep_rows(struct pg_tx *t, const PGresult *r, bool pairs)
{
	for (int i = 0; i < PQntuples(r); i++) {
		const char *id = PQgetvalue(r, i, 0);
		char *pk = NULL;
		if (pairs && !(pk = pair_key(PQgetvalue(r, i, 2), PQgetvalue(r, i, PF_PID))))
			return false;
		bool ok = true;
		if (!pg_col_bool(r, i, PF_LOCKED)) {
			if (map_get(&t->ids, id) < 0)
				ok = map_set(&t->ids, id, TX_ASK);
			if (ok && pairs)
				ok = map_set(&t->pairs, pk, TX_ASK);
			free(pk);
			if (!ok)
				return false;
			continue;
		}
		struct tx_row row;
		row_lc_msg(r, i, &row.m);
		pg_col_copy(r, i, PF_PID, row.pid, sizeof row.pid);
		int idx = map_get(&t->ids, id);
		if (idx < 0) {
			if (t->nrows == t->caprows) {
				size_t nc = t->caprows ? t->caprows * 2 : 64;
				struct tx_row *v = realloc(t->rows, nc * sizeof *v);
				if (!v) {
					free(pk);
					return false;
				}
				t->rows = v;
				t->caprows = nc;
			}
			idx = (int)t->nrows++;
			ok = map_set(&t->ids, id, idx);
		}
		t->rows[idx] = row;
		if (ok && pairs) {
			int old = map_get(&t->pairs, pk);
			if (old == TX_MISS || old == TX_ABSENT ||
			    (old >= 0 && strcmp(t->rows[old].m.id, row.m.id) > 0))
				ok = map_set(&t->pairs, pk, idx);
		}
		free(pk);
		if (!ok)
			return false;
	}
	return true;
}

static bool pf_keep_inbox(struct pg_tx *t, const PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (t->ninbox == t->capinbox) {
			size_t nc = t->capinbox ? t->capinbox * 2 : 64;
			struct tx_inbox *v = realloc(t->inbox, nc * sizeof *v);
			if (!v)
				return false;
			t->inbox = v;
			t->capinbox = nc;
		}
		struct tx_inbox *ib = &t->inbox[t->ninbox];
		ib->received_at = pg_col_i64(r, i, 1);
		ib->attempts = (int)pg_col_i64(r, i, 2);
		pg_col_copy(r, i, 3, ib->channel, sizeof ib->channel);
		if (!map_set(&t->inboxes, PQgetvalue(r, i, 0), (int)t->ninbox++))
			return false;
	}
	return true;
}

/* Every key asked for that found no row: known absent. */
static bool pf_keep_absent(struct pg_tx *t, const struct lc_want *w)
{
	bool ok = true;
	for (size_t i = 0; ok && i < w->nmsg_ids; i++)
		if (key_ok(w->msg_ids[i]) && map_get(&t->ids, w->msg_ids[i]) == TX_MISS)
			ok = map_set(&t->ids, w->msg_ids[i], TX_ABSENT);
	for (size_t i = 0; ok && i < w->npkeys; i++) {
		const struct lc_pkey *k = &w->pkeys[i];
		if (!key_ok(k->account_id) || !key_ok(k->provider_id))
			continue;
		char *pk = pair_key(k->account_id, k->provider_id);
		ok = pk && (map_get(&t->pairs, pk) != TX_MISS || map_set(&t->pairs, pk, TX_ABSENT));
		free(pk);
	}
	char key[24];
	for (size_t i = 0; ok && i < w->ninbox; i++) {
		snprintf(key, sizeof key, "%lld", (long long)w->inbox_ids[i]);
		if (map_get(&t->inboxes, key) == TX_MISS)
			ok = map_set(&t->inboxes, key, TX_ABSENT);
	}
	return ok;
}

static int pkey_cmp(const void *a, const void *b)
{
	const struct lc_pkey *x = *(const struct lc_pkey *const *)a;
	const struct lc_pkey *y = *(const struct lc_pkey *const *)b;
	int c = strcmp(x->account_id, y->account_id);
	return c ? c : strcmp(x->provider_id, y->provider_id);
}

/* The prefetch statements sent, their results to come in r[] (sized
 * before anything is sent: the pipeline holds pointers into it). */
enum pf_kind { PF_BY_ID, PF_BY_PAIR, PF_INBOX };
struct pf_sent {
	PGresult **r;
	enum pf_kind *kind;
	size_t n;
};

/* Sends the statements of the prefetch: messages by id, by provider id
 * (one per account), inbox rows. 0 (ps->n may be 0), HR_ENOMEM when a list
 * could not be made (what was sent is still read), or the error of a lost
 * connection. */
static int pf_send(struct pg_tx *t, const struct lc_want *w, struct pf_sent *ps)
{
	const struct lc_pkey **k = malloc((w->npkeys ? w->npkeys : 1) * sizeof *k);
	if (!k)
		return HR_ENOMEM;
	size_t nk = 0, accounts = 0;
	for (size_t i = 0; i < w->npkeys; i++)
		if (key_ok(w->pkeys[i].account_id) && key_ok(w->pkeys[i].provider_id))
			k[nk++] = &w->pkeys[i];
	qsort(k, nk, sizeof *k, pkey_cmp);
	for (size_t i = 0; i < nk; i++)
		accounts += i == 0 || strcmp(k[i]->account_id, k[i - 1]->account_id) != 0;
	ps->r = calloc(accounts + 2, sizeof *ps->r);
	ps->kind = calloc(accounts + 2, sizeof *ps->kind);
	if (!ps->r || !ps->kind) {
		free(k);
		return HR_ENOMEM;
	}

	struct hr_buf a = {0};
	int rc = 0;
	hr_buf_put(&a, "{", 1);
	for (size_t i = 0; i < w->nmsg_ids; i++)
		if (key_ok(w->msg_ids[i]))
			arr_add(&a, w->msg_ids[i]);
	hr_buf_put(&a, "}", 1);
	if (a.oom) {
		rc = HR_ENOMEM;
	} else if (a.len > 2) {
		const char *v[1] = {a.p};
		ps->kind[ps->n] = PF_BY_ID;
		rc = tx_send(t, TX_OUTSIDE, P_PREFETCH_MSG, SQL_PF_MSG, 1, v, "message",
		             &ps->r[ps->n++]);
	}
	for (size_t i = 0, j; rc == 0 && i < nk; i = j) {
		a.len = 0;
		hr_buf_put(&a, "{", 1);
		for (j = i; j < nk && strcmp(k[j]->account_id, k[i]->account_id) == 0; j++)
			arr_add(&a, k[j]->provider_id);
		hr_buf_put(&a, "}", 1);
		if (a.oom) {
			rc = HR_ENOMEM;
			break;
		}
		const char *v[2] = {k[i]->account_id, a.p};
		ps->kind[ps->n] = PF_BY_PAIR;
		rc = tx_send(t, TX_OUTSIDE, P_PREFETCH_PAIRS, SQL_PF_PAIRS, 2, v, "message",
		             &ps->r[ps->n++]);
	}
	free(k);
	if (rc == 0 && w->ninbox) {
		a.len = 0;
		hr_buf_put(&a, "{", 1);
		for (size_t i = 0; i < w->ninbox; i++)
			hr_buf_printf(&a, "%s%lld", i ? "," : "", (long long)w->inbox_ids[i]);
		hr_buf_put(&a, "}", 1);
		if (a.oom) {
			rc = HR_ENOMEM;
		} else {
			const char *v[1] = {a.p};
			ps->kind[ps->n] = PF_INBOX;
			rc = tx_send(t, TX_OUTSIDE, P_PREFETCH_INBOX, SQL_PF_INBOX, 1, v,
			             "webhook_inbox", &ps->r[ps->n++]);
		}
	}
	free(a.p);
	return rc;
}

static void seen_key(char *k, size_t size, const char *message_id, int64_t inbox_id, int status)
{
	snprintf(k, size, "%s:%lld:%d", message_id, (long long)inbox_id, status);
}

/* Whether seen holds every status recorded for (message, inbox row). */
static bool seen_known(const struct pg_tx *t, const char *message_id, int64_t inbox_id)
{
	char k[24];
	snprintf(k, sizeof k, "%lld", (long long)inbox_id);
	return !t->cache_off && map_get(&t->seen_msgs, message_id) >= 0 &&
	       map_get(&t->seen_rows, k) >= 0;
}

/*
 * For the statuses of retried inbox rows (attempts > 0) whose message the
 * prefetch found: which statuses those rows already recorded for those
 * messages, read in one more round trip (only when there are such rows),
 * so event_seen need not ask one by one. 0, or the error of the statement.
 */
static int pf_seen(struct pg_tx *t, const struct lc_want *w)
{
	struct hr_buf ms = {0}, rs = {0};
	hr_buf_put(&ms, "{", 1);
	hr_buf_put(&rs, "{", 1);
	bool ok = true;
	char k[24];
	for (size_t i = 0; ok && i < w->npkeys; i++) {
		const struct lc_pkey *pk = &w->pkeys[i];
		snprintf(k, sizeof k, "%lld", (long long)pk->inbox_id);
		int ib = pk->inbox_id ? map_get(&t->inboxes, k) : TX_MISS;
		if (ib < 0 || t->inbox[ib].attempts == 0)
			continue;
		char *key = pair_key(pk->account_id, pk->provider_id);
		int idx = key ? map_get(&t->pairs, key) : TX_MISS;
		free(key);
		if (idx < 0)
			continue; /* event_seen will ask */
		const char *id = t->rows[idx].m.id;
		if (map_get(&t->seen_msgs, id) == TX_MISS) {
			arr_add(&ms, id);
			ok = map_set(&t->seen_msgs, id, 1);
		}
		if (ok && map_get(&t->seen_rows, k) == TX_MISS) {
			hr_buf_printf(&rs, "%s%s", rs.len > 1 ? "," : "", k);
			ok = map_set(&t->seen_rows, k, 1);
		}
	}
	hr_buf_put(&ms, "}", 1);
	hr_buf_put(&rs, "}", 1);
	int rc = 0;
	PGresult *r = NULL;
	if (!ok || ms.oom || rs.oom) {
		cache_off(t);
	} else if (ms.len > 2) {
		const char *v[2] = {ms.p, rs.p};
		rc =
		    tx_send(t, TX_OUTSIDE, P_PREFETCH_SEEN, SQL_PF_SEEN, 2, v, "message_event", &r);
		if (rc == 0)
			rc = tx_sync(t, TX_OUTSIDE);
	}
	free(ms.p);
	free(rs.p);
	for (int i = 0; r && i < PQntuples(r); i++) {
		char sk[HR_ID_LEN + 64];
		seen_key(sk, sizeof sk, PQgetvalue(r, i, 0), pg_col_i64(r, i, 1),
		         (int)pg_col_i64(r, i, 2));
		if (!map_set(&t->seen, sk, 1))
			cache_off(t);
	}
	PQclear(r);
	return rc;
}

/*
 * Reads what the run announced with one statement per kind (per account
 * for messages by provider id), all in one round trip, into the cache. A
 * hint: keys that could make a statement fail for all (key_ok), and
 * everything when memory runs out, are left to the single reads. Ignored
 * inside an item (the undo log covers changes, not additions).
 */
static int tx_prefetch(struct store_tx *st, const struct lc_want *w)
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	if (t->cache_off || t->cur != TX_OUTSIDE)
		return 0;
	struct pf_sent ps = {0};
	int rc = pf_send(t, w, &ps);
	bool oom = rc == HR_ENOMEM;
	if (oom)
		rc = 0; /* what was sent is read, then the cache is left off */
	if (rc == 0 && ps.n)
		rc = tx_sync(t, TX_OUTSIDE);
	bool kept = !oom;
	for (size_t i = 0; rc == 0 && kept && i < ps.n; i++)
		kept = ps.kind[i] == PF_INBOX ? pf_keep_inbox(t, ps.r[i])
		                              : pf_keep_rows(t, ps.r[i], ps.kind[i] == PF_BY_PAIR);
	if (rc == 0 && kept)
		kept = pf_keep_absent(t, w);
	if (rc == 0 && !kept)
		cache_off(t); /* out of memory: the server answers instead */
	if (rc == 0 && !t->cache_off)
		rc = pf_seen(t, w);
	for (size_t i = 0; i < ps.n; i++)
		PQclear(ps.r[i]);
	free(ps.r);
	free(ps.kind);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Messages.
 * ------------------------------------------------------------------------- */

static int tx_msg_get(struct store_tx *st, const char *id, struct lc_msg *out)
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	int idx = t->cache_off ? TX_MISS : map_get(&t->ids, id);
	if (idx >= 0 && strcmp(t->rows[idx].m.id, id) == 0) {
		*out = t->rows[idx].m;
		return 0;
	}
	if (idx == TX_ABSENT)
		return hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
	struct pg_params p = {0};
	pp_text(&p, id);
	PGresult *r;
	int rc =
	    tx_read(t, P_MSG_STATE, "SELECT " LC_MSG_COLS " FROM message WHERE id = $1 FOR UPDATE",
	            &p, &r, "message", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found)
		row_lc_msg(r, 0, out);
	PQclear(r);
	return found ? 0 : hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
}

static int tx_msg_by_provider(struct store_tx *st, const char *account_id, const char *provider_id,
                              struct lc_msg *out)
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	char *k = t->cache_off ? NULL : pair_key(account_id, provider_id);
	int idx = k ? map_get(&t->pairs, k) : TX_MISS;
	free(k);
	if (idx >= 0) {
		/* The row may have taken another provider id since (cache_update). */
		const struct tx_row *row = &t->rows[idx];
		if (strcmp(row->pid, provider_id) == 0 &&
		    strcmp(row->m.account_id, account_id) == 0) {
			*out = row->m;
			return 1;
		}
	} else if (idx == TX_ABSENT) {
		return 0;
	}
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_text(&p, provider_id);
	PGresult *r;
	int rc = tx_read(t, P_MSG_BY_PROVIDER,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE account_id = $1"
	                 " AND provider_id = $2 LIMIT 1 FOR UPDATE",
	                 &p, &r, "message", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found)
		row_lc_msg(r, 0, out);
	PQclear(r);
	return found;
}

/* One statement for every update lifecycle makes: each optional part is
 * switched by a flag parameter, so it is prepared once. */
static const char SQL_LC_UPDATE[] =
    "UPDATE message SET"
    " status = CASE WHEN $2::boolean THEN $3::smallint ELSE status END,"
    " lease_until = CASE WHEN $2::boolean THEN 0 ELSE lease_until END,"
    " provider_id = CASE WHEN $4::int = 1 THEN coalesce($5::text, provider_id)"
    "  WHEN $4::int = 2 THEN coalesce(provider_id, $5::text) ELSE provider_id END,"
    " error_code = CASE WHEN $6::int = 1 THEN $7::text"
    "  WHEN $6::int = 2 THEN coalesce($7::text, error_code) ELSE error_code END,"
    " error_text = CASE WHEN $6::int = 1 THEN $8::text"
    "  WHEN $6::int = 2 THEN coalesce($8::text, error_text) ELSE error_text END,"
    " due_at = CASE WHEN $9::boolean THEN $10::bigint ELSE due_at END,"
    " recipient = coalesce($11::text, recipient),"
    " attempts = CASE WHEN $12::boolean THEN greatest(attempts - 1, 0) ELSE attempts END,"
    " sent_at = CASE WHEN $14::boolean THEN $15::bigint ELSE sent_at END,"
    " fallback_at = CASE WHEN $16::boolean THEN $17::bigint ELSE fallback_at END,"
    " stale = CASE WHEN $18::boolean THEN 1 ELSE stale END,"
    " updated_at = $13::bigint"
    " WHERE id = $1";

static int tx_msg_update(struct store_tx *st, const struct lc_msg *m, const struct lc_update *u)
{
	struct pg_tx *t = TX(st);
	unsigned f = u->set;
	struct pg_params p = {0};
	pp_text(&p, m->id);
	pp_bool(&p, (f & LC_SET_STATUS) != 0);
	pp_i64(&p, (int)u->status);
	pp_i64(&p, (f & LC_PROVIDER_ID_IF_NONE) ? 2 : (f & LC_SET_PROVIDER_ID) ? 1 : 0);
	pp_opt(&p, u->provider_id);
	pp_i64(&p, !(f & LC_SET_ERROR) ? 0 : (f & LC_KEEP_ERROR) ? 2 : 1);
	pp_opt(&p, u->error_code);
	pp_opt(&p, u->error_text);
	pp_bool(&p, (f & LC_SET_DUE) != 0);
	pp_i64(&p, u->due_at);
	pp_opt(&p, (f & LC_SET_RECIPIENT) ? u->recipient : NULL);
	pp_bool(&p, (f & LC_GIVE_BACK_ATTEMPT) != 0);
	pp_i64(&p, S(t)->gnow);
	pp_bool(&p, (f & LC_SET_SENT_AT) != 0);
	pp_i64(&p, u->sent_at);
	pp_bool(&p, (f & LC_SET_FALLBACK_AT) != 0);
	pp_i64(&p, u->fallback_at);
	pp_bool(&p, (f & LC_SET_STALE) != 0);
	int rc = tx_write(t, P_LC_UPDATE, SQL_LC_UPDATE, &p, "message");
	if (rc == 0)
		cache_update(t, m, u);
	return rc;
}

static int tx_msg_insert(struct store_tx *st, const struct message *m)
{
	struct pg_tx *t = TX(st);
	int rc = tx_direct(t, true);
	if (rc)
		return rc;
	if (!t->cache_off)
		cache_forget(t, &t->ids, m->id);
	return pg_message_row_insert(S(t), m, S(t)->gnow, E(t));
}
/* Claim order, which UPDATE ... RETURNING does not keep. */
static int claim_cmp(const void *a, const void *b)
{
	const struct message *x = a, *y = b;
	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

/*
 * One statement per account and batch: the MATERIALIZED CTE walks the
 * partial index of QUEUED rows in claim order and locks up to limit of
 * them, skipping rows another claimer holds, then the UPDATE moves exactly
 * those. (Without MATERIALIZED the planner may inline the subquery and run
 * the LIMIT more than once.) Each returned row also says whether the
 * account has any recipient alias and whether its tenant has any
 * suppressed recipient on its channel: the two probes lifecycle's screening
 * asks next, answered from here (tx_alias_any, tx_supp_any) instead of two
 * more round trips.
 */
static int tx_claim(struct store_tx *st, const char *account_id, int64_t now, int64_t lease_until,
                    int limit, struct message *out, size_t *n)
{
	struct pg_tx *t = TX(st);
	*n = 0;
	cache_off(t); /* it changes rows the cache may hold */
	struct pg_params p = {0};
	pp_text(&p, account_id);
	pp_i64(&p, now);
	pp_i64(&p, lease_until);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = tx_read(
	    t, P_CLAIM,
	    "WITH c AS MATERIALIZED (SELECT id FROM message WHERE status = 0"
	    "  AND account_id = $1 AND due_at <= $2 ORDER BY priority, due_at, id LIMIT $4"
	    "  FOR UPDATE SKIP LOCKED)"
	    " UPDATE message m SET status = 1, attempts = m.attempts + 1, lease_until = $3,"
	    " updated_at = $2 FROM c WHERE m.id = c.id"
	    " RETURNING m.id, m.tenant_id, m.account_id, m.channel, m.recipient, m.batch_id,"
	    " m.content, m.body, m.status, m.priority, m.attempts, m.max_attempts, m.created_at,"
	    " m.updated_at, m.due_at, m.lease_until, m.provider_id, m.error_code, m.error_text,"
	    " m.segments, m.delivery_policy, m.expires_at, m.route, m.route_step,"
	    " m.route_steps, m.route_root, m.fallback_after,"
	    " EXISTS(SELECT 1 FROM recipient_alias WHERE account_id = $1),"
	    " EXISTS(SELECT 1 FROM suppression s WHERE s.tenant_id = m.tenant_id"
	    "  AND s.channel = m.channel), m.unit_id",
	    &p, &r, "claim", true);
	if (rc)
		return rc;
	int rows = PQntuples(r);
	struct pg_claim_probe *pr = &t->probe;
	memset(pr, 0, sizeof *pr);
	pr->valid = rows > 0;
	hr_strlcpy(pr->account, account_id, sizeof pr->account);
	for (int i = 0; i < rows && i < limit; i++) {
		if ((rc = pg_row_message(r, i, 0, &out[*n]))) {
			hr_fail(E(t), rc, "claim", "out of memory");
			break;
		}
		/* The unit: the dispatcher's plugin gate needs it. */
		pg_col_copy(r, i, 29, out[*n].unit, sizeof out[*n].unit);
		const struct message *m = &out[*n];
		pr->alias_any = pg_col_bool(r, i, 27);
		int k = 0;
		while (k < pr->nsupp && (strcmp(pr->supp[k].tenant, m->tenant_id) != 0 ||
		                         strcmp(pr->supp[k].channel, m->channel) != 0))
			k++;
		if (k == pr->nsupp && k < PG_CLAIM_SUPP_MAX) {
			hr_strlcpy(pr->supp[k].tenant, m->tenant_id, sizeof pr->supp[k].tenant);
			hr_strlcpy(pr->supp[k].channel, m->channel, sizeof pr->supp[k].channel);
			pr->supp[k].any = pg_col_bool(r, i, 28);
			pr->nsupp++;
		}
		(*n)++;
	}
	if (rc)
		pr->valid = false;
	PQclear(r);
	if (rc) {
		for (size_t i = 0; i < *n; i++)
			message_clear(&out[i]);
		*n = 0;
		return rc;
	}
	qsort(out, *n, sizeof *out, claim_cmp);
	return 0;
}

static int tx_lease_expired(struct store_tx *st, int64_t now, int limit, struct lc_msg *out,
                            size_t *n)
{
	struct pg_tx *t = TX(st);
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, limit);
	PGresult *r;
	/* Walks the partial index of SENDING rows by lease_until. */
	int rc = tx_read(t, P_LEASE_EXPIRED,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE status = 1 AND lease_until < $1"
	                 " LIMIT $2 FOR UPDATE SKIP LOCKED",
	                 &p, &r, "message", false);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r) && i < limit; i++)
		row_lc_msg(r, i, &out[(*n)++]);
	PQclear(r);
	return 0;
}

static int tx_event_insert(struct store_tx *st, const char *message_id, const struct lc_event *e)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_text(&p, message_id);
	pp_i64(&p, S(t)->gnow);
	pp_i64(&p, e->provider_at);
	pp_text(&p, e->type);
	pp_text(&p, e->source);
	if (e->status < 0)
		pp_text(&p, NULL);
	else
		pp_i64(&p, e->status);
	pp_bool(&p, e->applied);
	pp_text(&p, e->detail);
	if (e->inbox_id)
		pp_i64(&p, e->inbox_id);
	else
		pp_text(&p, NULL);
	int rc = tx_write(t, P_EVENT_INSERT,
	                  "INSERT INTO message_event(message_id, at, provider_at, type, source,"
	                  " status, applied, detail, inbox_id)"
	                  " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	                  &p, "message_event");
	/* What event_seen answers from includes it now. */
	if (rc == 0 && e->inbox_id && e->status >= 0 && strcmp(e->type, "webhook_status") == 0 &&
	    seen_known(t, message_id, e->inbox_id)) {
		char k[HR_ID_LEN + 64];
		seen_key(k, sizeof k, message_id, e->inbox_id, e->status);
		int old = map_get(&t->seen, k);
		if (old != 1) {
			struct tx_undo *u = undo_new(t, TU_MAP);
			if (u && !(u->key = strdup(k))) {
				t->nundo--;
				cache_off(t);
			} else if (u) {
				u->map = &t->seen;
				u->val = old == TX_MISS ? TX_ABSENT : old;
			}
			if (!t->cache_off && !map_set(&t->seen, k, 1))
				cache_off(t);
		}
	}
	return rc;
}

static int tx_event_seen(struct store_tx *st, const char *message_id, int64_t inbox_id,
                         enum msg_status status)
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	if (seen_known(t, message_id, inbox_id)) {
		char k[HR_ID_LEN + 64];
		seen_key(k, sizeof k, message_id, inbox_id, (int)status);
		return map_get(&t->seen, k) == 1;
	}
	struct pg_params p = {0};
	pp_text(&p, message_id);
	pp_i64(&p, inbox_id);
	pp_i64(&p, (int)status);
	PGresult *r;
	int rc = tx_read(t, P_EVENT_SEEN,
	                 "SELECT 1 FROM message_event WHERE message_id = $1 AND inbox_id = $2"
	                 " AND status = $3 AND type = 'webhook_status' LIMIT 1",
	                 &p, &r, "message_event", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

static int tx_supp_any(struct store_tx *st, const char *tenant_id, const char *channel)
{
	struct pg_tx *t = TX(st);
	const struct pg_claim_probe *pr = &t->probe;
	for (int k = 0; pr->valid && k < pr->nsupp; k++)
		if (strcmp(pr->supp[k].tenant, tenant_id) == 0 &&
		    strcmp(pr->supp[k].channel, channel) == 0)
			return pr->supp[k].any;
	int rc = tx_direct(t, false);
	return rc ? rc : pg_supp_any(S(t), tenant_id, channel, E(t));
}

static int tx_supp_reason(struct store_tx *st, const char *tenant_id, const char *channel,
                          const char *recipient, char *reason, size_t reason_size)
{
	struct pg_tx *t = TX(st);
	char r[PG_REASON_MAX];
	int rc = tx_direct(t, false);
	if (rc)
		return rc;
	rc = pg_supp_reason(S(t), tenant_id, channel, recipient, r, E(t));
	if (rc == 1)
		hr_strlcpy(reason, r, reason_size);
	return rc;
}

static int tx_supp_put(struct store_tx *st, const char *tenant_id, const char *channel,
                       const char *recipient, const char *reason)
{
	struct pg_tx *t = TX(st);
	t->probe.valid = false; /* the claim's probes no longer hold */
	int rc = tx_direct(t, true);
	return rc ? rc : pg_supp_put(S(t), tenant_id, channel, recipient, reason, S(t)->gnow, E(t));
}

static int tx_pause_put(struct store_tx *st, const struct account_pause_row *p)
{
	struct pg_tx *t = TX(st);
	int rc = tx_direct(t, true);
	return rc ? rc : pg_pause_put(S(t), p, S(t)->gnow, E(t));
}

static int tx_pause_delete(struct store_tx *st, const char *account_id)
{
	struct pg_tx *t = TX(st);
	int rc = tx_direct(t, true);
	return rc ? rc : pg_pause_delete(S(t), account_id, E(t));
}

static int tx_supp_log(struct store_tx *st, const struct supp_change *c, const char *action)
{
	struct pg_tx *t = TX(st);
	int rc = tx_direct(t, true);
	return rc ? rc : pg_supp_log(S(t), c, action, S(t)->gnow, E(t));
}

static int tx_supp_delete(struct store_tx *st, const char *tenant_id, const char *channel,
                          const char *recipient)
{
	struct pg_tx *t = TX(st);
	t->probe.valid = false; /* the claim's probes no longer hold */
	int rc = tx_direct(t, true);
	return rc ? rc : pg_supp_delete(S(t), tenant_id, channel, recipient, NULL, E(t));
}

static int tx_alias_any(struct store_tx *st, const char *account_id)
{
	struct pg_tx *t = TX(st);
	const struct pg_claim_probe *pr = &t->probe;
	if (pr->valid && strcmp(pr->account, account_id) == 0)
		return pr->alias_any;
	int rc = tx_direct(t, false);
	return rc ? rc : pg_alias_any(S(t), account_id, E(t));
}

static int tx_alias_get(struct store_tx *st, const char *account_id, const char *old,
                        char new_addr[HR_ADDR_MAX])
{
	struct pg_tx *t = TX(st);
	int rc = tx_direct(t, false);
	return rc ? rc : pg_alias_get(S(t), account_id, old, new_addr, E(t));
}

static int tx_alias_put(struct store_tx *st, const char *account_id, const char *old,
                        const char *new_addr)
{
	struct pg_tx *t = TX(st);
	t->probe.valid = false; /* the claim's probes no longer hold */
	int rc = tx_direct(t, true);
	return rc ? rc : pg_alias_put(S(t), account_id, old, new_addr, S(t)->gnow, E(t));
}

static int tx_account_of(struct store_tx *st, const char *account_id, char tenant[HR_NAME_MAX],
                         char channel[16])
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_text(&p, account_id);
	PGresult *r;
	int rc = tx_read(t, P_ACCOUNT_TENANT,
	                 "SELECT tenant_id, channel FROM channel_account WHERE id = $1", &p, &r,
	                 "channel_account", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found) {
		pg_col_copy(r, 0, 0, tenant, HR_NAME_MAX);
		pg_col_copy(r, 0, 1, channel, 16);
	}
	PQclear(r);
	return found;
}

static int tx_inbound_insert(struct store_tx *st, const struct lc_inbound *in)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_opt(&p, in->tenant_id);
	pp_text(&p, in->account_id);
	pp_opt(&p, in->message_id);
	pp_text(&p, in->provider_msg_id ? in->provider_msg_id : "");
	pp_text(&p, in->from);
	pp_text(&p, in->kind);
	pp_opt(&p, in->text);
	pp_opt(&p, in->payload);
	pp_i64(&p, in->provider_at);
	pp_i64(&p, in->received_at);
	PGresult *r;
	int rc = tx_read(
	    t, P_INBOUND_INSERT,
	    "INSERT INTO inbound(tenant_id, account_id, message_id, provider_msg_id, sender, kind,"
	    " text, payload, provider_at, received_at)"
	    " VALUES(coalesce($1::text, (SELECT tenant_id FROM channel_account WHERE id = $2)),"
	    " $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	    " ON CONFLICT (provider_msg_id, account_id) WHERE provider_msg_id <> '' DO NOTHING",
	    &p, &r, "inbound", true);
	if (rc)
		return rc;
	int stored = atoi(PQcmdTuples(r)) > 0;
	PQclear(r);
	return stored;
}

static int tx_inbox_state(struct store_tx *st, int64_t id, int64_t *received_at, int *attempts,
                          char channel[16])
{
	struct pg_tx *t = TX(st);
	if (t->lost || t->replay)
		return tx_dead(t);
	char key[24];
	snprintf(key, sizeof key, "%lld", (long long)id);
	int idx = t->cache_off ? TX_MISS : map_get(&t->inboxes, key);
	if (idx >= 0) {
		*received_at = t->inbox[idx].received_at;
		*attempts = t->inbox[idx].attempts;
		memcpy(channel, t->inbox[idx].channel, 16);
		return 1;
	}
	if (idx == TX_ABSENT)
		return 0;
	struct pg_params p = {0};
	pp_i64(&p, id);
	PGresult *r;
	int rc = tx_read(t, P_INBOX_STATE,
	                 "SELECT received_at, attempts, channel FROM webhook_inbox WHERE id = $1",
	                 &p, &r, "webhook_inbox", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	if (found) {
		*received_at = pg_col_i64(r, 0, 0);
		*attempts = (int)pg_col_i64(r, 0, 1);
		pg_col_copy(r, 0, 2, channel, 16);
	}
	PQclear(r);
	return found;
}

static int inbox_cmp(const void *a, const void *b)
{
	const struct inbox_row *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int tx_inbox_claim(struct store_tx *st, int64_t now, int64_t until, int limit,
                          struct inbox_row *out, size_t *n)
{
	struct pg_tx *t = TX(st);
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, until);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = tx_read(t, P_INBOX_CLAIM,
	                 "WITH c AS MATERIALIZED (SELECT id FROM webhook_inbox"
	                 "  WHERE state IN (0, 2) AND next_try_at <= $1 ORDER BY id LIMIT $3"
	                 "  FOR UPDATE SKIP LOCKED)"
	                 " UPDATE webhook_inbox w SET next_try_at = $2 FROM c WHERE w.id = c.id"
	                 " RETURNING w.id, w.account_id, w.channel, w.dedupe_key, w.received_at,"
	                 " w.attempts, w.body",
	                 &p, &r, "webhook_inbox", true);
	if (rc)
		return rc;
	if (PQntuples(r) > limit) {
		PQclear(r);
		return hr_fail(E(t), HR_EINTERNAL, "webhook_inbox", "claim returned too many rows");
	}
	rc = pg_inbox_rows(r, out, n);
	PQclear(r);
	if (rc)
		return hr_fail(E(t), rc, "webhook_inbox", "out of memory");
	qsort(out, *n, sizeof *out, inbox_cmp);
	return 0;
}

static int tx_inbox_mark(struct store_tx *st, int64_t id, int state, int attempts,
                         int64_t next_try_at, const char *error)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_i64(&p, id);
	pp_i64(&p, state);
	pp_i64(&p, attempts);
	if (next_try_at)
		pp_i64(&p, next_try_at);
	else
		pp_text(&p, NULL);
	pp_opt(&p, error);
	int rc = tx_write(t, P_INBOX_MARK,
	                  "UPDATE webhook_inbox SET state = $2, attempts = $3,"
	                  " next_try_at = coalesce($4, next_try_at), error = $5 WHERE id = $1",
	                  &p, "webhook_inbox");
	char key[24];
	snprintf(key, sizeof key, "%lld", (long long)id);
	int idx = rc || t->cache_off ? TX_MISS : map_get(&t->inboxes, key);
	if (idx >= 0) {
		struct tx_undo *u = undo_new(t, TU_INBOX);
		if (u) {
			u->val = idx;
			u->old.ib = t->inbox[idx];
		}
		t->inbox[idx].attempts = attempts;
	}
	return rc;
}

/* ---------------------------------------------------------------------------
 * Campaigns.
 * ------------------------------------------------------------------------- */

_Static_assert(MSG__COUNT == 11, "one n_<status> column per message status");
#define PG_BATCH_STATE                                                                             \
	"tenant_id, status, ingested, receipts, n_queued, n_sending, n_sent, n_delivered, n_read," \
	" n_failed, n_undelivered, n_cancelled, n_expired, n_suppressed, n_unknown"

static int state_result(PGresult *r, struct lc_batch_state *out)
{
	int found = PQntuples(r) > 0;
	if (found) {
		memset(out, 0, sizeof *out);
		pg_col_copy(r, 0, 0, out->tenant_id, sizeof out->tenant_id);
		out->status = (enum batch_status)pg_col_i64(r, 0, 1);
		out->ingested = pg_col_bool(r, 0, 2);
		out->receipts = pg_col_bool(r, 0, 3);
		for (int i = 0; i < MSG__COUNT; i++)
			out->by_status[i] = pg_col_i64(r, 0, 4 + i);
	}
	PQclear(r);
	return found;
}

/* A plain read, no FOR SHARE: the run usually updates the same row at its
 * end (batch_add), and two runs holding SHARE locks and then both asking
 * for the row's update lock would deadlock. A claim racing a cancel that
 * commits at the same moment may still send what it claimed: in flight,
 * as the cancel's answer says. */
static int tx_batch_state(struct store_tx *t, const char *batch_id, struct lc_batch_state *out)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	PGresult *r;
	int rc = tx_read(TX(t), P_BATCH_STATE, "SELECT " PG_BATCH_STATE " FROM batch WHERE id = $1",
	                 &p, &r, "batch", false);
	return rc ? rc : state_result(r, out);
}

static int tx_batch_add(struct store_tx *t, const char *batch_id, const int64_t delta[MSG__COUNT],
                        int64_t replied, struct lc_batch_state *after)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	for (int i = 0; i < MSG__COUNT; i++)
		pp_i64(&p, delta[i]);
	pp_i64(&p, replied);
	PGresult *r;
	int rc =
	    tx_read(TX(t), P_BATCH_ADD,
	            "UPDATE batch SET n_queued = n_queued + $2, n_sending = n_sending + $3,"
	            " n_sent = n_sent + $4, n_delivered = n_delivered + $5, n_read = n_read + $6,"
	            " n_failed = n_failed + $7, n_undelivered = n_undelivered + $8,"
	            " n_cancelled = n_cancelled + $9, n_expired = n_expired + $10,"
	            " n_suppressed = n_suppressed + $11, n_unknown = n_unknown + $12,"
	            " replied = replied + $13 WHERE id = $1 RETURNING " PG_BATCH_STATE,
	            &p, &r, "batch", true);
	return rc ? rc : state_result(r, after);
}

/* the run's daily counters, noted for the group's commit. */
static int tx_daily_add(struct store_tx *t, const struct daily_acc *d)
{
	return pg_daily_note(S(t), TX(t)->j, d, E(t));
}

/* Noted for the group's commit (postgres.c w_commit): no statement here. */
static int tx_status_add(struct store_tx *t, const int64_t delta[MSG__COUNT])
{
	return pg_status_note(S(t), TX(t)->j, delta, E(t));
}

static int tx_batch_rows_add(struct store_tx *t, const char *batch_id, int64_t total, int64_t valid,
                             int64_t invalid, int64_t duplicates)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, total);
	pp_i64(&p, valid);
	pp_i64(&p, invalid);
	pp_i64(&p, duplicates);
	return tx_write(TX(t), P_BATCH_ROWS_ADD,
	                "UPDATE batch SET total = total + $2, valid = valid + $3,"
	                " invalid = invalid + $4, duplicates = duplicates + $5 WHERE id = $1",
	                &p, "batch");
}

static int tx_batch_set(struct store_tx *t, const char *batch_id, enum batch_status to, int64_t at,
                        const char *error, int ingested)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, (int)to);
	pp_i64(&p, at);
	pp_text(&p, error);
	pp_i64(&p, ingested);
	return tx_write(
	    TX(t), P_BATCH_SET,
	    "UPDATE batch SET status = $2::smallint,"
	    " validated_at = CASE WHEN $2 = 1 AND $3::bigint > 0 THEN $3::bigint ELSE validated_at "
	    "END,"
	    " started_at = CASE WHEN $2 = 2 AND $3::bigint > 0 THEN $3::bigint ELSE started_at END,"
	    " completed_at = CASE WHEN $2 = 3 AND $3::bigint > 0 THEN $3::bigint ELSE completed_at "
	    "END,"
	    " cancelled_at = CASE WHEN $2 = 4 AND $3::bigint > 0 THEN $3::bigint ELSE cancelled_at "
	    "END,"
	    " failed_at = CASE WHEN $2 = 5 AND $3::bigint > 0 THEN $3::bigint ELSE failed_at END,"
	    " error = coalesce($4, error),"
	    " ingested = CASE WHEN $5::int >= 0 THEN $5::int > 0 ELSE ingested END WHERE id = $1",
	    &p, "batch");
}

enum { ITEM_COLS = 7 };

/* Rows [0, n) of items whose take[] is set, as unnest arrays in p. */
static int item_arrays(struct store_tx *t, struct pg_params *p, struct hr_buf col[ITEM_COLS],
                       const struct batch_item *items, size_t n, const bool *take, bool dup)
{
	for (size_t i = 0; i < n; i++) {
		const struct batch_item *it = &items[i];
		if (!take[i])
			continue;
		pg_arr_i64(&col[0], it->row);
		pg_arr_text(&col[1], it->recipient);
		pg_arr_text(&col[2], it->params);
		pg_arr_bool(&col[3], it->valid);
		pg_arr_bool(&col[4], dup || (it->valid && it->duplicate));
		pg_arr_text(&col[5], it->valid ? NULL : it->error_column);
		pg_arr_text(&col[6], it->valid ? NULL : it->error);
	}
	for (int c = 0; c < ITEM_COLS; c++) {
		const char *v = pg_arr_end(&col[c]);
		if (!v)
			return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
		pp_text(p, v);
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

#define PG_ITEM_INSERT                                                                             \
	"INSERT INTO batch_item(batch_id, row_no, recipient, params, valid, duplicate,"            \
	" error_column, error) SELECT $1, r, rc, pa, v, d, ec, e FROM unnest($2::bigint[],"        \
	" $3::text[], $4::text[], $5::boolean[], $6::boolean[], $7::text[], $8::text[])"           \
	" AS u(r, rc, pa, v, d, ec, e)"

/*
 * All the rows in one statement; the unique key over (batch, recipient) of
 * the valid rows turns a repeated recipient into nothing inserted (ON
 * CONFLICT DO NOTHING also covers two such rows within the statement), and
 * those rows go in again, as duplicates, with a second statement. A row
 * number stored before fails the whole call (primary key).
 */
static int tx_items_insert(struct store_tx *t, const char *batch_id, const struct batch_item *items,
                           size_t n, int64_t *dups)
{
	*dups = 0;
	if (n == 0)
		return 0;
	bool *take = malloc(n * sizeof *take);
	if (!take)
		return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
	for (size_t i = 0; i < n; i++)
		take[i] = true;
	struct hr_buf col[ITEM_COLS] = {0};
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	PGresult *r = NULL;
	int rc = tx_direct(TX(t), true); /* both statements below run directly */
	if (!rc)
		rc = item_arrays(t, &p, col, items, n, take, false);
	if (!rc)
		rc = pg_exec(W(t), P_ITEM_INSERT,
		             PG_ITEM_INSERT
		             " ON CONFLICT (batch_id, recipient)"
		             " WHERE valid AND NOT duplicate DO NOTHING RETURNING row_no",
		             &p, &r, E(t), "batch_item");
	for (int c = 0; c < ITEM_COLS; c++)
		free(col[c].p), col[c] = (struct hr_buf){0};
	if (rc == HR_ECONFLICT)
		rc = hr_fail(E(t), rc, "row", "a row number of these rows is already stored");
	if (rc) {
		free(take);
		return rc;
	}
	/* Inserted rows come back (row numbers are unique within the call,
	 * else the statement failed); the others repeat a recipient. */
	int nr = PQntuples(r);
	int64_t *got = malloc(((size_t)nr + 1) * sizeof *got);
	if (!got) {
		PQclear(r);
		free(take);
		return hr_fail(E(t), HR_ENOMEM, "batch_item", "out of memory");
	}
	for (int k = 0; k < nr; k++)
		got[k] = pg_col_i64(r, k, 0);
	PQclear(r);
	qsort(got, (size_t)nr, sizeof *got, cmp_i64);
	for (size_t i = 0; i < n; i++)
		take[i] = !bsearch(&items[i].row, got, (size_t)nr, sizeof *got, cmp_i64);
	free(got);
	size_t left = n - (size_t)nr;
	if (left) {
		struct pg_params q = {0};
		pp_text(&q, batch_id);
		rc = item_arrays(t, &q, col, items, n, take, true);
		if (!rc)
			rc = pg_exec(W(t), P_ITEM_DUP_INSERT, PG_ITEM_INSERT, &q, NULL, E(t),
			             "batch_item");
		for (int c = 0; c < ITEM_COLS; c++)
			free(col[c].p);
		*dups = (int64_t)left;
	}
	free(take);
	return rc;
}

static int tx_item_take(struct store_tx *t, const char *batch_id, int64_t row,
                        const char *message_id)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, row);
	pp_text(&p, message_id);
	PGresult *r;
	int rc = tx_read(TX(t), P_ITEM_TAKE,
	                 "UPDATE batch_item SET message_id = $3 WHERE batch_id = $1 AND row_no = $2"
	                 " AND message_id IS NULL AND valid AND NOT duplicate RETURNING 1",
	                 &p, &r, "batch_item", true);
	if (rc)
		return rc;
	int taken = PQntuples(r) > 0;
	PQclear(r);
	return taken;
}

static int tx_batch_queued(struct store_tx *t, const char *batch_id, int limit, struct lc_msg *out,
                           size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = tx_read(TX(t), P_BATCH_QUEUED,
	                 "SELECT " LC_MSG_COLS " FROM message WHERE batch_id = $1 AND status = 0"
	                 " LIMIT $2 FOR UPDATE SKIP LOCKED",
	                 &p, &r, "message", false);
	if (rc)
		return rc;
	int nr = PQntuples(r);
	for (int i = 0; i < nr && i < limit; i++)
		row_lc_msg(r, i, &out[(*n)++]);
	PQclear(r);
	return 0;
}

static int tx_batch_hold(struct store_tx *t, const char *batch_id, bool hold, int64_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, LC_HOLD_BASE);
	if (!hold)
		pp_i64(&p, tx_now(t));
	PGresult *r;
	int rc = hold ? tx_read(TX(t), P_BATCH_HOLD,
	                        "WITH u AS (UPDATE message SET due_at = due_at + $2::bigint"
	                        " WHERE batch_id = $1 AND status = 0 AND due_at < $2::bigint"
	                        " RETURNING 1) SELECT count(*) FROM u",
	                        &p, &r, "message", true)
	              : tx_read(TX(t), P_BATCH_RELEASE,
	                        "WITH u AS (UPDATE message"
	                        " SET due_at = greatest(due_at - $2::bigint, $3::bigint)"
	                        " WHERE batch_id = $1 AND status = 0 AND due_at >= $2::bigint"
	                        " RETURNING 1) SELECT count(*) FROM u",
	                        &p, &r, "message", true);
	if (rc)
		return rc;
	*n = PQntuples(r) ? pg_col_i64(r, 0, 0) : 0;
	PQclear(r);
	return 0;
}

static int tx_batch_note(struct store_tx *t, const char *batch_id, enum batch_status to,
                         bool resume, int64_t at, const char *actor, const char *reason)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	pp_i64(&p, (int)to);
	pp_i64(&p, at);
	pp_opt(&p, actor);
	pp_opt(&p, reason);
	pp_bool(&p, resume);
	return tx_write(
	    TX(t), P_BATCH_NOTE,
	    "UPDATE batch SET"
	    " paused_at = CASE WHEN $2 = 6 THEN $3::bigint ELSE paused_at END,"
	    " paused_by = CASE WHEN $2 = 6 THEN $4::text ELSE paused_by END,"
	    " pause_reason = CASE WHEN $2 = 6 THEN $5::text ELSE pause_reason END,"
	    " resumed_at = CASE WHEN $6::boolean THEN $3::bigint ELSE resumed_at END,"
	    " resumed_by = CASE WHEN $6::boolean THEN $4::text ELSE resumed_by END,"
	    " cancelled_by = CASE WHEN $2 = 4 THEN $4::text ELSE cancelled_by END,"
	    " cancel_reason = CASE WHEN $2 = 4 THEN $5::text ELSE cancel_reason END WHERE id = $1",
	    &p, "batch");
}

static int tx_batch_delete(struct store_tx *t, const char *batch_id)
{
	struct pg_params p = {0};
	pp_text(&p, batch_id);
	int rc = tx_write(TX(t), P_BATCH_DELETE_ITEMS, "DELETE FROM batch_item WHERE batch_id = $1",
	                  &p, "batch");
	return rc ? rc
	          : tx_write(TX(t), P_BATCH_DELETE, "DELETE FROM batch WHERE id = $1", &p, "batch");
}

static int tx_audit_insert(struct store_tx *t, const struct audit_row *a)
{
	struct pg_params p = {0};
	pp_text(&p, a->tenant_id);
	pp_text(&p, a->actor);
	pp_i64(&p, a->at ? a->at : tx_now(t));
	pp_text(&p, a->action);
	pp_text(&p, a->object);
	pp_opt(&p, a->before);
	pp_opt(&p, a->after);
	return tx_write(
	    TX(t), P_AUDIT_INSERT_TX,
	    "INSERT INTO admin_audit(tenant_id, actor, at, action, object, before, after)"
	    " VALUES($1, $2, $3, $4, $5, $6, $7)",
	    &p, "admin_audit");
}

static int tx_inbound_exists(struct store_tx *t, const char *message_id)
{
	struct pg_params p = {0};
	pp_text(&p, message_id);
	PGresult *r;
	int rc =
	    tx_read(TX(t), P_INBOUND_EXISTS, "SELECT 1 FROM inbound WHERE message_id = $1 LIMIT 1",
	            &p, &r, "inbound", false);
	if (rc)
		return rc;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

/* A write like the others: sent in the pipeline (or held by the open
 * item), its statement reading the message row as the run's earlier
 * writes left it. */
static int tx_callback_add(struct store_tx *st, const struct lc_callback *c)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pg_cb_add_params(&p, c, S(t)->gnow);
	return c->message_id
	           ? tx_write(t, P_CB_ADD_MSG, pg_sql_cb_add_msg, &p, "callback_outbox")
	           : tx_write(t, P_CB_ADD_TENANT, pg_sql_cb_add_tenant, &p, "callback_outbox");
}

/* A plugin event (lc_plugin.c): a write like callback_add. */
static int tx_plugin_event_add(struct store_tx *st, const struct lc_plugin_event *e)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pg_pev_add_params(&p, e, S(t)->gnow);
	return tx_write(t, P_PEV_ADD, pg_sql_pev_add, &p, "plugin_event");
}

/* Up to limit rows of a locking SELECT of LC_MSG_COLS bound to ($1 now,
 * $2 limit); rows another transaction holds are skipped (the next scan
 * finds them). */
static int lc_msg_scan(struct pg_tx *t, enum pg_slot slot, const char *sql, int64_t now,
                       int limit, struct lc_msg *out, size_t *n)
{
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = tx_read(t, slot, sql, &p, &r, "message", false);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r) && i < limit; i++)
		row_lc_msg(r, i, &out[(*n)++]);
	PQclear(r);
	return 0;
}

static int tx_msg_expired(struct store_tx *st, int64_t now, int limit, struct lc_msg *out,
                          size_t *n)
{
	return lc_msg_scan(TX(st), P_MSG_EXPIRED,
	                   "SELECT " LC_MSG_COLS " FROM message WHERE status = 0 AND expires_at > 0"
	                   " AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
	                   " FOR UPDATE SKIP LOCKED",
	                   now, limit, out, n);
}

static int tx_fallback_due(struct store_tx *st, int64_t now, int limit, struct lc_msg *out,
                           size_t *n)
{
	return lc_msg_scan(TX(st), P_FALLBACK_DUE,
	                   "SELECT " LC_MSG_COLS " FROM message WHERE status = 2 AND fallback_at > 0"
	                   " AND fallback_at <= $1 ORDER BY fallback_at LIMIT $2"
	                   " FOR UPDATE SKIP LOCKED",
	                   now, limit, out, n);
}

static int tx_msg_route(struct store_tx *st, const char *id, char **route, char **callback_url,
                        char unit[HR_NAME_MAX])
{
	struct pg_tx *t = TX(st);
	*route = *callback_url = NULL;
	unit[0] = '\0';
	struct pg_params p = {0};
	pp_text(&p, id);
	PGresult *r;
	int rc = tx_read(t, P_MSG_ROUTE,
	                 "SELECT route, callback_url, unit_id FROM message WHERE id = $1", &p, &r,
	                 "message", false);
	if (rc)
		return rc;
	bool oom = false;
	int found = PQntuples(r) > 0;
	if (found) {
		*route = pg_col_dup(r, 0, 0, &oom);
		*callback_url = pg_col_dup(r, 0, 1, &oom);
		if (!PQgetisnull(r, 0, 2))
			hr_strlcpy(unit, PQgetvalue(r, 0, 2), HR_NAME_MAX);
	}
	PQclear(r);
	if (!found)
		return hr_fail(E(t), HR_ENOTFOUND, "message_id", "no message %s", id);
	if (oom) {
		free(*route);
		free(*callback_url);
		*route = *callback_url = NULL;
		return hr_fail(E(t), HR_ENOMEM, "message", "out of memory");
	}
	return 0;
}

/* The primary key decides: a second follow-up for (root, step), from this
 * node or another, inserts nothing (and waits for the first's transaction
 * to end before it can tell). */
static int tx_fallback_put(struct store_tx *st, const char *root_id, int step,
                           const char *message_id, const char *from_id, const char *reason)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_text(&p, root_id);
	pp_i64(&p, step);
	pp_text(&p, message_id);
	pp_text(&p, from_id);
	pp_text(&p, reason);
	pp_i64(&p, S(t)->gnow);
	PGresult *r;
	int rc = tx_read(t, P_FALLBACK_PUT,
	                 "INSERT INTO message_fallback(root_id, step, message_id, from_id, reason,"
	                 " created_at) VALUES($1, $2, $3, $4, $5, $6)"
	                 " ON CONFLICT (root_id, step) DO NOTHING RETURNING 1",
	                 &p, &r, "message_fallback", true);
	if (rc)
		return rc;
	int made = PQntuples(r) > 0;
	PQclear(r);
	return made;
}

static int tx_inbox_waiting(struct store_tx *st, int64_t before, int limit, int64_t *ids,
                            size_t *n)
{
	struct pg_tx *t = TX(st);
	*n = 0;
	struct pg_params p = {0};
	pp_i64(&p, before);
	pp_i64(&p, limit);
	PGresult *r;
	int rc = tx_read(t, P_INBOX_WAITING,
	                 "SELECT id FROM webhook_inbox WHERE state = 2 AND received_at < $1"
	                 " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
	                 &p, &r, "webhook_inbox", false);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(r) && i < limit; i++)
		ids[(*n)++] = pg_col_i64(r, i, 0);
	PQclear(r);
	return 0;
}

/* A plugin's route change (lifecycle.c SEND_REROUTE): the row's account,
 * channel and recipient, and its content when the channel changed. The
 * cache's copy of the row (and its provider-id pairs, keyed by account)
 * would be stale: the rest of the run asks the server. */
static int tx_msg_reroute(struct store_tx *st, const struct lc_msg *m, const char *account_id,
                          const char *channel, const char *recipient, const char *content,
                          const char *body, int segments)
{
	struct pg_tx *t = TX(st);
	struct pg_params p = {0};
	pp_text(&p, m->id);
	pp_text(&p, account_id);
	pp_text(&p, channel);
	pp_text(&p, recipient);
	pp_opt(&p, content);
	pp_opt(&p, body);
	pp_i64(&p, segments);
	int rc = tx_write(t, P_MSG_REROUTE,
	                  "UPDATE message SET account_id = $2, channel = $3, recipient = $4,"
	                  " content = coalesce($5::text, content),"
	                  " body = CASE WHEN $5::text IS NULL THEN body ELSE $6::text END,"
	                  " segments = CASE WHEN $5::text IS NULL THEN segments ELSE $7::int END"
	                  " WHERE id = $1",
	                  &p, "message");
	cache_off(t);
	return rc;
}

static int tx_daily_take(struct store_tx *t, const char *tenant_id, int64_t n)
{
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, store_day(S(t)->gnow));
	pp_i64(&p, n);
	PGresult *r;
	int rc = tx_read(TX(t), P_DAILY_TAKE, "SELECT herald_daily_take($1, $2, $3)", &p, &r,
	                 "daily_cap", true);
	PQclear(r);
	return rc;
}

/* The tenant's row is locked until the start commits, so concurrent
 * starts of one tenant, on any node, see each other's campaigns. */
static int tx_start_limits(struct store_tx *t, const char *tenant_id, const char *batch_id,
                           struct lc_start_limits *out)
{
	memset(out, 0, sizeof *out);
	struct pg_params p = {0};
	pp_text(&p, tenant_id);
	pp_i64(&p, store_day(S(t)->gnow));
	pp_text(&p, batch_id);
	PGresult *r;
	int rc = tx_read(TX(t), P_START_LIMITS,
	                 "SELECT daily_cap, campaign_cap,"
	                 " (SELECT count FROM tenant_daily WHERE tenant_id = $1 AND day = $2),"
	                 " (SELECT count(*) FROM batch WHERE tenant_id = $1 AND status = 2),"
	                 " (SELECT valid FROM batch WHERE id = $3)"
	                 " FROM tenant WHERE id = $1 FOR UPDATE",
	                 &p, &r, "tenant", true);
	if (rc)
		return rc;
	if (PQntuples(r)) {
		out->daily_cap = pg_col_i64(r, 0, 0);
		out->campaign_cap = pg_col_i64(r, 0, 1);
		out->today = pg_col_i64(r, 0, 2);
		out->processing = pg_col_i64(r, 0, 3);
		out->valid = pg_col_i64(r, 0, 4);
	}
	PQclear(r);
	return 0;
}

static const struct store_tx_ops pg_tx_ops = {
    .now = tx_now,
    .err = tx_err,
    .json = tx_json,
    .item_begin = tx_item_begin,
    .item_end = tx_item_end,
    .alive = tx_alive,
    .prefetch = tx_prefetch,
    .msg_get = tx_msg_get,
    .msg_by_provider = tx_msg_by_provider,
    .msg_update = tx_msg_update,
    .msg_insert = tx_msg_insert,
    .claim = tx_claim,
    .lease_expired = tx_lease_expired,
    .event_insert = tx_event_insert,
    .event_seen = tx_event_seen,
    .supp_any = tx_supp_any,
    .supp_reason = tx_supp_reason,
    .supp_put = tx_supp_put,
    .supp_delete = tx_supp_delete,
    .supp_log = tx_supp_log,
    .pause_put = tx_pause_put,
    .pause_delete = tx_pause_delete,
    .alias_any = tx_alias_any,
    .alias_get = tx_alias_get,
    .alias_put = tx_alias_put,
    .account_of = tx_account_of,
    .inbound_insert = tx_inbound_insert,
    .inbox_state = tx_inbox_state,
    .inbox_claim = tx_inbox_claim,
    .inbox_mark = tx_inbox_mark,
    .batch_state = tx_batch_state,
    .batch_add = tx_batch_add,
    .status_add = tx_status_add,
    .daily_add = tx_daily_add,
    .batch_rows_add = tx_batch_rows_add,
    .batch_set = tx_batch_set,
    .items_insert = tx_items_insert,
    .item_take = tx_item_take,
    .batch_queued = tx_batch_queued,
    .batch_hold = tx_batch_hold,
    .batch_note = tx_batch_note,
    .inbound_exists = tx_inbound_exists,
    .batch_delete = tx_batch_delete,
    .audit_insert = tx_audit_insert,
    .callback_add = tx_callback_add,
    .plugin_event_add = tx_plugin_event_add,
    .msg_expired = tx_msg_expired,
    .fallback_due = tx_fallback_due,
    .msg_route = tx_msg_route,
    .fallback_put = tx_fallback_put,
    .inbox_waiting = tx_inbox_waiting,
    .msg_reroute = tx_msg_reroute,
    .daily_take = tx_daily_take,
    .start_limits = tx_start_limits,
};

/* ---- the shared rules, bound to this backend (filled into store_postgres) ---- */

int pg_claim(struct store *st, const char *account_id, int64_t now, int64_t lease_us, int limit,
             struct message *out, size_t *n)
{
	return lc_claim(&pg_lc_backend, st, account_id, now, lease_us, limit, out, n);
}

int pg_claim_async(struct store *st, const char *account_id, int64_t now, int64_t lease_us,
                   int limit, struct message *out, store_claim_fn cb, void *arg)
{
	return lc_claim_async(&pg_lc_backend, st, account_id, now, lease_us, limit, out, cb, arg);
}

int pg_record_results(struct store *st, const struct send_result *r, size_t n, store_done_fn cb,
                      void *arg)
{
	return lc_record_results(&pg_lc_backend, st, r, n, cb, arg);
}

int pg_requeue_expired(struct store *st, int64_t now, int *n)
{
	return lc_requeue_expired(&pg_lc_backend, st, now, n);
}

int pg_inbox_claim(struct store *st, int64_t now, int64_t lease_us, int limit,
                   struct inbox_row **out, size_t *n)
{
	return lc_inbox_claim(&pg_lc_backend, st, now, lease_us, limit, out, n);
}

int pg_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats)
{
	return lc_apply_inbox(&pg_lc_backend, st, rows, n, now, stats);
}

int pg_batch_items_put(struct store *st, const char *batch_id, const struct batch_item *items,
                       size_t n, struct hr_err *err)
{
	return lc_batch_items_put(&pg_lc_backend, st, batch_id, items, n, err);
}

int pg_batch_set_status_audit(struct store *st, const char *tenant_id, const char *id,
                              enum batch_status to, const char *error, const struct audit_row *a,
                              struct hr_err *err)
{
	return lc_batch_set_status_audit(&pg_lc_backend, st, tenant_id, id, to, error, a, err);
}

int pg_batch_set_status(struct store *st, const char *tenant_id, const char *id,
                        enum batch_status to, const char *error, struct hr_err *err)
{
	return lc_batch_set_status(&pg_lc_backend, st, tenant_id, id, to, error, err);
}

int pg_batch_enqueue(struct store *st, const char *batch_id, const int64_t *rows,
                     const struct message *msgs, size_t n, bool last, size_t *made,
                     struct hr_err *err)
{
	return lc_batch_enqueue(&pg_lc_backend, st, batch_id, rows, msgs, n, last, made, err);
}

int pg_batch_discard(struct store *st, const char *tenant_id, const char *id, struct hr_err *err)
{
	return lc_batch_discard(&pg_lc_backend, st, tenant_id, id, err);
}

int pg_batch_cancel_step(struct store *st, const char *batch_id, int limit, int64_t *n)
{
	return lc_batch_cancel_step(&pg_lc_backend, st, batch_id, limit, n);
}

void store_postgres_tx_stats(struct store *st, uint64_t *round_trips, uint64_t *replays)
{
	struct pg_store *s = (struct pg_store *)st;
	if (round_trips)
		*round_trips = atomic_load(&s->tx_trips);
	if (replays)
		*replays = atomic_load(&s->tx_replays);
}

int pg_reconcile_expire(struct store *st, int64_t now, int limit, int *n)
{
	return lc_reconcile_expire(&pg_lc_backend, st, now, limit, n);
}

int pg_reconcile_fallback_due(struct store *st, int64_t now, int limit, int *n)
{
	return lc_reconcile_fallback_due(&pg_lc_backend, st, now, limit, n);
}

int pg_stale_settle(struct store *st, const struct stale_answer *a, size_t n,
                    struct stale_stats *stats)
{
	return lc_stale_settle(&pg_lc_backend, st, a, n, stats);
}

int pg_inbox_park(struct store *st, int64_t received_before, int limit, int *n)
{
	return lc_inbox_park(&pg_lc_backend, st, received_before, limit, n);
}
