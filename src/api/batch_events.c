/*
 * batch_events.c - GET /v1/batches/{id}/events: a campaign's progress as
 * Server-Sent Events. Each subscriber gets an "progress" event when its
 * batch's counters or status change (at most one per tick, SSE_TICK_US:
 * a few a second), a comment line every SSE_KEEPALIVE_US so proxies keep
 * the stream open, and a final "end" event when the batch is completed,
 * cancelled or failed, after which the stream closes.
 *
 * No thread waits for a subscriber: the response is produced by a content
 * reader callback that, when there is nothing new, suspends its connection
 * (MHD's pool threads stay free for the API) and returns 0; one ticker
 * thread resumes every suspended subscriber each tick, and the callback
 * looks again (one indexed read of the batch row). Subscribers are bounded
 * (SSE_MAX in all): the 65th gets a 503.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/evstream.h"

#define SSE_TICK_US (300 * 1000)
#define SSE_KEEPALIVE_US (15 * 1000000LL)
#define SSE_MAX 64

struct sse_sub {
	struct es_stream es; /* first: the hub's list holds it */
	struct api_server *srv;
	char tenant[HR_NAME_MAX];
	char id[HR_ID_LEN + 1];
	char session[65]; /* a dashboard session's ("" for a bearer credential), */
	unsigned epoch;   /* which ends the stream when it ends or switches tenants */
	bool ended;       /* the final event is out (or being sent) */
	char *last;       /* the last snapshot sent */
	int64_t last_us;
};

struct sse_hub {
	struct es_hub es;
};

int api_sse_start(struct sse_hub **out, struct hr_err *err)
{
	struct sse_hub *h = calloc(1, sizeof *h);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	int rc = es_hub_start(&h->es, SSE_TICK_US, err);
	if (rc) {
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Ends every stream (each callback sees stop and closes) and waits until
 * none is suspended. Call before MHD_stop_daemon's final cleanup needs no
 * suspended connection. */
void api_sse_quiesce(struct sse_hub *h)
{
	if (h)
		es_hub_quiesce(&h->es);
}

void api_sse_free(struct sse_hub *h)
{
	if (!h)
		return;
	es_hub_stop(&h->es);
	free(h);
}

/* What the stream shows of a batch, and whether it is over. */
static char *snapshot(struct sse_sub *s, bool *final, bool *gone)
{
	struct store *st = s->srv->o.store;
	struct batch b;
	*final = *gone = false;
	int rc = st->ops->batch_get(st, s->tenant, s->id, &b);
	if (rc) {
		*gone = rc == HR_ENOTFOUND;
		return NULL;
	}
	*final = b.status == BATCH_COMPLETED || b.status == BATCH_CANCELLED ||
	         b.status == BATCH_FAILED;
	json_t *j = api_batch_json(&b);
	batch_clear(&b);
	/* The rate and ETA change every second by themselves: an event is for
	 * a change of the counters or the status, so they are left out of the
	 * comparison by leaving them out of the event (GET has them). */
	json_object_del(j, "progress");
	char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return txt;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct sse_sub *s = cls;
	struct hr_buf *out = &s->es.out;
	for (;;) {
		size_t took = api_buf_take(out, &s->es.off, buf, max);
		if (took)
			return (ssize_t)took;
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		bool final, gone;
		char *now = snapshot(s, &final, &gone);
		if (s->session[0] && !api_session_alive(s->srv, s->session, s->epoch)) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		int64_t t = hr_mono_us();
		bool stop = es_hub_stopping(s->es.hub);
		if (gone || (!now && stop)) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (now && (!s->last || strcmp(now, s->last) != 0)) {
			hr_buf_printf(out, "event: %s\ndata: %s\n\n", final ? "end" : "progress",
			              now);
			free(s->last);
			s->last = now;
			s->last_us = t;
			s->ended = final;
		} else {
			free(now);
			if (final || stop) { /* nothing new, and nothing more will come */
				if (!s->last)
					return MHD_CONTENT_READER_END_OF_STREAM;
				hr_buf_printf(out, "event: end\ndata: %s\n\n", s->last);
				s->ended = true;
			} else if (t - s->last_us >= SSE_KEEPALIVE_US) {
				hr_buf_printf(out, ": keepalive\n\n");
				s->last_us = t;
			}
		}
		if (out->oom)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (out->len)
			continue;
		/* Nothing to say until the next tick (a stop: the next round ends
		 * the stream). */
		if (es_stream_suspend(&s->es))
			return 0;
	}
}

static void sse_free(void *cls)
{
	struct sse_sub *s = cls;
	es_hub_unlink(&s->es);
	free(s->last);
	free(s);
}

enum MHD_Result api_batch_events(struct api_req *r)
{
	struct api_server *srv = r->srv;
	struct sse_hub *h = srv->sse;
	struct store *st = srv->o.store;
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc)
		return api_fail(r, rc, NULL);
	batch_clear(&b);
	struct sse_sub *s = calloc(1, sizeof *s);
	if (!s)
		return api_fail(r, HR_ENOMEM, NULL);
	s->es.conn = r->conn;
	s->srv = srv;
	hr_strlcpy(s->tenant, r->tenant, sizeof s->tenant);
	hr_strlcpy(s->id, r->path_id, sizeof s->id);
	memcpy(s->session, r->session, sizeof s->session);
	s->epoch = r->session_epoch;
	if (!es_hub_reserve(&h->es, SSE_MAX)) {
		free(s);
		struct hr_err err;
		hr_fail(&err, HR_EBUSY, NULL, "too many event streams are open (at most %d)", SSE_MAX);
		return api_fail(r, HR_EBUSY, &err);
	}
	es_hub_link(&h->es, &s->es);
	return es_respond(r, sse_read, s, sse_free);
}
