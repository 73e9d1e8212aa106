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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "obs/metrics.h"

#define SSE_TICK_US (300 * 1000)
#define SSE_KEEPALIVE_US (15 * 1000000LL)
#define SSE_MAX 64

struct sse_sub {
	struct sse_sub *next, *prev;
	struct sse_hub *hub;
	struct api_server *srv;
	struct MHD_Connection *conn;
	char tenant[HR_NAME_MAX];
	char id[HR_ID_LEN + 1];
	char session[65]; /* dash3: a dashboard session's ("" for a bearer credential), */
	unsigned epoch;   /* which ends the stream when it ends or switches tenants */
	bool suspended;   /* under hub->lock */
	bool ended;     /* the final event is out (or being sent) */
	char *last;     /* the last snapshot sent */
	int64_t last_us;
	struct hr_buf out; /* bytes still to send */
	size_t off;
};

struct sse_hub {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sse_sub *head;
	int n;
	bool stop;
	pthread_t th;
};

static void *ticker(void *arg)
{
	struct sse_hub *h = arg;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		for (struct sse_sub *s = h->head; s; s = s->next)
			if (s->suspended) {
				s->suspended = false;
				MHD_resume_connection(s->conn);
			}
		if (h->stop && !h->head)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long ns = ts.tv_nsec + (SSE_TICK_US % 1000000) * 1000;
		ts.tv_sec += SSE_TICK_US / 1000000 + ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int api_sse_start(struct sse_hub **out, struct hr_err *err)
{
	struct sse_hub *h = calloc(1, sizeof *h);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (pthread_create(&h->th, NULL, ticker, h) != 0) {
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		free(h);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the event ticker");
	}
	*out = h;
	return 0;
}

/* Ends every stream (each callback sees stop and closes) and waits until
 * the last subscriber is gone, MHD having closed them all. Call before
 * MHD_stop_daemon's final cleanup needs no suspended connection. */
void api_sse_quiesce(struct sse_hub *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->cond);
	/* The ticker resumes the suspended ones at its next tick; from then on
	 * no callback suspends again (it sees stop and ends its stream). */
	for (int i = 0; i < 100; i++) {
		bool any = false;
		for (struct sse_sub *s = h->head; s; s = s->next)
			any |= s->suspended;
		if (!any)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
}

void api_sse_free(struct sse_hub *h)
{
	if (!h)
		return;
	api_sse_quiesce(h);
	pthread_join(h->th, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
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
	struct sse_hub *h = s->hub;
	for (;;) {
		if (s->off < s->out.len) {
			size_t n = s->out.len - s->off;
			if (n > max)
				n = max;
			memcpy(buf, s->out.p + s->off, n);
			s->off += n;
			return (ssize_t)n;
		}
		s->out.len = s->off = 0;
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		bool final, gone;
		char *now = snapshot(s, &final, &gone);
		if (s->session[0] && !api_session_alive(s->srv, s->session, s->epoch)) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		int64_t t = hr_mono_us();
		pthread_mutex_lock(&h->lock);
		bool stop = h->stop;
		pthread_mutex_unlock(&h->lock);
		if (gone || (!now && stop)) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (now && (!s->last || strcmp(now, s->last) != 0)) {
			hr_buf_printf(&s->out, "event: %s\ndata: %s\n\n", final ? "end" : "progress", now);
			free(s->last);
			s->last = now;
			s->last_us = t;
			s->ended = final;
		} else {
			free(now);
			if (final || stop) { /* nothing new, and nothing more will come */
				if (!s->last)
					return MHD_CONTENT_READER_END_OF_STREAM;
				hr_buf_printf(&s->out, "event: end\ndata: %s\n\n", s->last);
				s->ended = true;
			} else if (t - s->last_us >= SSE_KEEPALIVE_US) {
				hr_buf_printf(&s->out, ": keepalive\n\n");
				s->last_us = t;
			}
		}
		if (s->out.oom)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (s->out.len)
			continue;
		/* Nothing to say until the next tick. */
		pthread_mutex_lock(&h->lock);
		if (h->stop) {
			pthread_mutex_unlock(&h->lock);
			continue; /* the next round ends the stream */
		}
		s->suspended = true;
		MHD_suspend_connection(s->conn);
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
}

static void sse_free(void *cls)
{
	struct sse_sub *s = cls;
	struct sse_hub *h = s->hub;
	pthread_mutex_lock(&h->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		h->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	h->n--;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	free(s->last);
	free(s->out.p);
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
	s->hub = h;
	s->srv = srv;
	s->conn = r->conn;
	hr_strlcpy(s->tenant, r->tenant, sizeof s->tenant);
	hr_strlcpy(s->id, r->path_id, sizeof s->id);
	memcpy(s->session, r->session, sizeof s->session);
	s->epoch = r->session_epoch;
	pthread_mutex_lock(&h->lock);
	bool full = h->n >= SSE_MAX || h->stop;
	if (!full) {
		s->next = h->head;
		if (h->head)
			h->head->prev = s;
		h->head = s;
		h->n++;
	}
	pthread_mutex_unlock(&h->lock);
	if (full) {
		free(s);
		struct hr_err err;
		hr_fail(&err, HR_EBUSY, NULL, "too many event streams are open (at most %d)", SSE_MAX);
		return api_fail(r, HR_EBUSY, &err);
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
	if (!resp) {
		sse_free(s);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http(200);
	return ret;
}
