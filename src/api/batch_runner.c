/*
 * batch_runner.c - the campaign runner: one thread that turns the rows of
 * started batches into messages and cancels the queued messages of stopped
 * ones, a chunk (one short transaction) at a time, so a million-row start
 * never holds the store's writer for long and single sends keep their
 * latency meanwhile.
 *
 * Messages are made ahead of the sending, not all at once: a campaign has
 * at most make_ahead (batches.make_ahead) messages made and not yet claimed;
 * its other rows wait, durable, as rows, and are made as the queue drains.
 * So starting a million-row campaign writes a window of messages, not a
 * million, the claim index stays small, and cancelling or pausing it has
 * only the window to stop.
 *
 * Everything it does is resumable from the store alone: a started batch not
 * yet ingested still has rows without a message (the store never makes two
 * messages for a row), a stopped batch still has queued messages. So after
 * a crash the runner simply finds them again. A batch left PENDING by an
 * upload the process died in cannot be finished (the file went with the
 * request): it is marked FAILED at start, with the reason.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "dispatch/dispatch.h"

#define RUN_CHUNK 250              /* rows per enqueue transaction */
#define RUN_POLL_US (1000 * 1000)  /* look again this often without a wake-up */
#define RUN_SCAN 100               /* batches per scan */
#define RUN_REFILL_US (100 * 1000) /* look this often while a window is full */

struct batch_runner {
	struct api_server *s;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, woken;
};

void batch_runner_wake(struct batch_runner *br)
{
	if (!br)
		return;
	pthread_mutex_lock(&br->lock);
	br->woken = true;
	pthread_cond_signal(&br->cond);
	pthread_mutex_unlock(&br->lock);
}

static bool stopping(struct batch_runner *br)
{
	pthread_mutex_lock(&br->lock);
	bool s = br->stop;
	pthread_mutex_unlock(&br->lock);
	return s;
}

/* A chunk of a started batch's rows read and made into messages, ready
 * for batch_enqueue. */
struct chunk {
	struct batch_runner *br;
	const struct batch *b;
	int64_t after; /* read rows after this one */
	size_t want;   /* rows to read (RUN_CHUNK, or less: the window's room) */
	struct batch_item *items;
	struct message *msgs;
	int64_t *rows;
	size_t n;
	size_t made; /* messages chunk_write made of it */
	int rc;
	struct hr_err err;
};

static void chunk_free(struct chunk *c)
{
	for (size_t i = 0; i < c->n; i++) {
		batch_item_clear(&c->items[i]);
		if (c->msgs)
			message_clear(&c->msgs[i]);
	}
	free(c->items);
	free(c->msgs);
	free(c->rows);
	c->items = NULL;
	c->msgs = NULL;
	c->rows = NULL;
	c->n = 0;
}

static void *chunk_build(void *arg)
{
	struct chunk *c = arg;
	struct store *st = c->br->s->o.store;
	hr_err_clear(&c->err);
	c->rc = st->ops->batch_items(st, c->b->id, BATCH_ITEMS_PENDING, c->after, c->want,
	                             &c->items, &c->n);
	if (c->rc)
		return NULL;
	c->msgs = calloc(c->n ? c->n : 1, sizeof *c->msgs);
	c->rows = calloc(c->n ? c->n : 1, sizeof *c->rows);
	c->rc = c->msgs && c->rows ? api_batch_messages_of(c->br->s, c->b, c->items, c->n, c->msgs,
	                                                   c->rows, &c->err)
	                           : HR_ENOMEM;
	return NULL;
}

/*
 * Writes a built chunk (c->rc is its build's result). 1 if more rows are
 * left, 0 when the batch is ingested, or an error. *after is the last row
 * dealt with: the next chunk reads on from it (reading from the first row
 * each time would step over every row made so far, a scan that grows with
 * the batch: quadratic in all).
 */
static int chunk_write(struct chunk *c, int64_t *after)
{
	struct batch_runner *br = c->br;
	const struct batch *b = c->b;
	struct store *st = br->s->o.store;
	size_t made = 0;
	bool last = c->n < c->want;
	int rc = c->rc;
	struct hr_err err = c->err;
	if (rc == 0)
		rc = st->ops->batch_enqueue(st, b->id, c->rows, c->msgs, c->n, last, &made, &err);
	if (rc && rc != HR_EBUSY && rc != HR_EIO) {
		/* A row that cannot be made now (its account or template went away
		 * since validation): the batch stops with the reason, rather than
		 * the runner trying it for ever. The daily cap too (its start was
		 * checked, so other sends took the room since): the campaign stops
		 * there and says why; as for any failed batch, its messages not yet
		 * claimed are cancelled (they stay counted for the day). */
		char why[400];
		if (rc == HR_EQUOTA)
			snprintf(why, sizeof why, "stopped at the daily message cap: %s", err.msg);
		else
			snprintf(why, sizeof why, "cannot make the messages: %s", err.msg);
		struct hr_err e2 = {0};
		if (st->ops->batch_set_status(st, NULL, b->id, BATCH_FAILED, why, &e2) == 0)
			hr_log(HR_LOG_WARN, "batch", "batch %s failed: %s", b->id, why);
	} else if (rc && strcmp(err.field, "paused") != 0) {
		/* (A batch paused meanwhile is busy too: it waits, quietly, for
		 * its resume; the next scan looks only at processing ones.) */
		hr_log(HR_LOG_WARN, "batch", "batch %s: enqueue failed (%s), trying again", b->id,
		       err.msg);
	}
	if (rc == 0 && c->n)
		*after = c->items[c->n - 1].row;
	if (rc)
		return rc;
	c->made = made;
	if (made && br->s->o.dispatcher)
		dispatcher_notify(br->s->o.dispatcher);
	return last ? 0 : 1;
}

/*
 * A batch's rows, chunk by chunk, for as long as it has more and nothing
 * else waits (at most `turns` chunks). The next chunk is read and built on
 * a helper thread while this one is written: building (JSON, content,
 * ids) and the store's writer then use both cores, where one after the
 * other left each idle half the time. The rows the helper reads are past
 * the ones being written, so neither sees the other's work. *room is how
 * many more messages the batch may have made (its window, less what waits
 * in its queue): it stops once that is used up.
 */
static int ingest_turns(struct batch_runner *br, const struct batch *b, int64_t *after, int turns,
                        int64_t *room)
{
	struct chunk cur = {.br = br,
	                    .b = b,
	                    .after = *after,
	                    .want = *room < RUN_CHUNK ? (size_t)*room : RUN_CHUNK};
	if (cur.want == 0)
		return 1;
	chunk_build(&cur);
	int rc = 1;
	while (rc == 1 && turns-- > 0 && *room > 0 && !stopping(br)) {
		/* The next chunk, if the window has room for it beside this one. */
		int64_t left = *room - (int64_t)cur.n;
		struct chunk next = {.br = br,
		                     .b = b,
		                     .want = left < RUN_CHUNK ? (size_t)(left > 0 ? left : 0)
		                                              : RUN_CHUNK};
		pthread_t th;
		bool ahead = false;
		if (cur.rc == 0 && cur.n == cur.want && turns > 0 && next.want > 0) {
			next.after = cur.items[cur.n - 1].row;
			ahead = pthread_create(&th, NULL, chunk_build, &next) == 0;
		}
		rc = chunk_write(&cur, after);
		*room -= (int64_t)cur.made;
		if (ahead)
			pthread_join(th, NULL);
		chunk_free(&cur);
		if (!ahead || rc != 1) {
			chunk_free(&next);
			break;
		}
		cur = next;
	}
	chunk_free(&cur);
	return rc;
}

#define RUN_TURNS 16 /* chunks of one batch before the next batch's turn */

/* Every batch the scan finds, RUN_TURNS chunks each in turn, so one large
 * start does not keep a small one waiting; a batch whose window is full
 * waits for the next scan (RUN_REFILL_US: at a send rate below ten windows
 * a second its queue never runs dry). Whether a window was full. */
static bool ingest_page(struct batch_runner *br, struct batch *list, size_t n)
{
	int64_t *after = calloc(n ? n : 1, sizeof *after);
	int64_t *room = calloc(n ? n : 1, sizeof *room);
	bool any = n > 0 && after && room;
	int64_t window = br->s->o.make_ahead;
	for (size_t i = 0; any && i < n; i++)
		room[i] = window > 0 ? window - list[i].by_status[MSG_QUEUED] : INT64_MAX;
	while (any && !stopping(br)) {
		any = false;
		for (size_t i = 0; i < n && !stopping(br); i++) {
			if (list[i].ingested || room[i] <= 0)
				continue;
			int rc = ingest_turns(br, &list[i], &after[i], RUN_TURNS, &room[i]);
			if (rc == 1 && room[i] > 0)
				any = true;
			else if (rc != 1)
				list[i].ingested = true; /* done, failed, or next scan */
		}
	}
	bool full = false;
	for (size_t i = 0; i < n && room; i++)
		if (!list[i].ingested && room[i] <= 0)
			full = true;
	free(after);
	free(room);
	return full;
}

/* Every processing batch with rows left, a page (RUN_SCAN) at a time: a
 * batch waiting with a full window stays "not ingested" for as long as it
 * sends, so there may be more of them than one page. */
static bool ingest_all(struct batch_runner *br)
{
	struct store *st = br->s->o.store;
	char cursor[sizeof((struct batch *)0)->id] = "";
	bool full = false, more = true;
	while (more && !stopping(br)) {
		struct batch_filter f = {.status = BATCH_PROCESSING,
		                         .limit = RUN_SCAN,
		                         .not_ingested = true,
		                         .before_id = cursor[0] ? cursor : NULL};
		struct batch *list;
		size_t n;
		if (st->ops->batch_list(st, NULL, &f, &list, &n, &more))
			break;
		if (ingest_page(br, list, n))
			full = true;
		if (n)
			hr_strlcpy(cursor, list[n - 1].id, sizeof cursor);
		else
			more = false;
		for (size_t i = 0; i < n; i++)
			batch_clear(&list[i]);
		free(list);
	}
	return full;
}

/* Cancels the queued messages of stopped batches. */
static void cancel_all(struct batch_runner *br)
{
	struct store *st = br->s->o.store;
	for (int which = 0; which < 2; which++) {
		struct batch_filter f = {.status = which ? BATCH_FAILED : BATCH_CANCELLED,
		                         .limit = RUN_SCAN, .has_queued = true};
		struct batch *list;
		size_t n;
		bool more;
		if (st->ops->batch_list(st, NULL, &f, &list, &n, &more))
			continue;
		for (size_t i = 0; i < n; i++) {
			int64_t k;
			while (!stopping(br) &&
			       st->ops->batch_cancel_step(st, list[i].id, RUN_CHUNK, &k) == 0 && k > 0)
				;
			batch_clear(&list[i]);
		}
		free(list);
	}
}

/* Uploads that were in progress when the process stopped. Called before
 * the API listens (api_start): once it does, a PENDING batch may be a live
 * upload of this process, which this must never fail. */
void batch_runner_fail_interrupted(struct api_server *s)
{
	struct store *st = s->o.store;
	/* A page at a time until none is left (or a page changes nothing: a
	 * store that refuses is not asked for ever). */
	for (bool progress = true; progress;) {
		progress = false;
		struct batch_filter f = {.status = BATCH_PENDING, .limit = 1000};
		struct batch *list;
		size_t n;
		bool more;
		if (st->ops->batch_list(st, NULL, &f, &list, &n, &more))
			return;
		for (size_t i = 0; i < n; i++) {
			struct hr_err err = {0};
			if (st->ops->batch_set_status(st, NULL, list[i].id, BATCH_FAILED,
			                              "the upload was interrupted (the server stopped "
			                              "while reading it): upload the file again",
			                              &err) == 0) {
				hr_log(HR_LOG_WARN, "batch", "batch %s: upload interrupted, marked failed",
				       list[i].id);
				progress = true;
			}
			batch_clear(&list[i]);
		}
		free(list);
		if (!more)
			break;
	}
}

static void *runner_main(void *arg)
{
	struct batch_runner *br = arg;
	for (;;) {
		int64_t wait_us = ingest_all(br) ? RUN_REFILL_US : RUN_POLL_US;
		cancel_all(br);
		pthread_mutex_lock(&br->lock);
		if (!br->woken && !br->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + (wait_us % 1000000) * 1000;
			ts.tv_sec += wait_us / 1000000 + ns / 1000000000;
			ts.tv_nsec = ns % 1000000000;
			pthread_cond_timedwait(&br->cond, &br->lock, &ts);
		}
		br->woken = false;
		bool stop = br->stop;
		pthread_mutex_unlock(&br->lock);
		if (stop)
			break;
	}
	return NULL;
}

int batch_runner_start(struct api_server *s, struct batch_runner **out, struct hr_err *err)
{
	*out = NULL;
	struct batch_runner *br = calloc(1, sizeof *br);
	if (!br)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	br->s = s;
	pthread_mutex_init(&br->lock, NULL);
	pthread_cond_init(&br->cond, NULL);
	if (pthread_create(&br->th, NULL, runner_main, br) != 0) {
		pthread_mutex_destroy(&br->lock);
		pthread_cond_destroy(&br->cond);
		free(br);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the campaign runner");
	}
	*out = br;
	return 0;
}

void batch_runner_stop(struct batch_runner *br)
{
	if (!br)
		return;
	pthread_mutex_lock(&br->lock);
	br->stop = true;
	pthread_cond_signal(&br->cond);
	pthread_mutex_unlock(&br->lock);
	pthread_join(br->th, NULL);
	pthread_mutex_destroy(&br->lock);
	pthread_cond_destroy(&br->cond);
	free(br);
}
