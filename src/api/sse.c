/*
 * sse.c - GET /v1/events: the dashboard's live feed, as Server-Sent Events.
 *
 *   event: campaigns   data: {"data":[<batch as GET /v1/batches shows it>...]}
 *
 * The caller's most recent campaigns (its unit's only, for a unit
 * credential; ?batch=<id> follows one campaign), sent when their counters
 * or statuses change, at most once per tick; a comment line (": heartbeat")
 * when nothing changed for dashboard.heartbeat_s, so proxies and the
 * browser see a live connection; "retry: 3000" first, so a browser
 * reconnects after a restart. A stream of a dashboard session ends when
 * the session does (sign-out, expiry).
 *
 * The mechanism is batch_events.c's: the response comes from a content
 * reader that suspends its connection when it has nothing to say, and one
 * ticker thread resumes every suspended stream each tick; no thread waits
 * for a client. Bounded: dashboard.max_event_streams in all and
 * dashboard.streams_per_session per session or credential; beyond either,
 * 429 with Retry-After, so streams cannot take the server's connections.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "obs/metrics.h"

#define EV_TICK_US (250 * 1000)
#define EV_RECENT 20 /* campaigns in each event */

struct ev_sub {
	struct ev_sub *next, *prev;
	struct api_events *hub;
	struct api_server *srv;
	struct MHD_Connection *conn;
	char tenant[HR_NAME_MAX];
	char unit[HR_NAME_MAX]; /* a unit credential's unit; "" = tenant-wide */
	char batch[HR_ID_LEN + 1];
	char session[65];
	unsigned epoch; /* dash3: the session's tenant switches when it opened */
	char actor[96];
	bool suspended; /* under hub->lock */
	bool ended;
	char *last; /* the last snapshot sent */
	int64_t last_us;
	struct hr_buf out;
	size_t off;
};

struct api_events {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ev_sub *head;
	int n;
	bool stop;
	struct api_dash_opts o;
	pthread_t th;
};

static void *ev_ticker(void *arg)
{
	struct api_events *h = arg;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		for (struct ev_sub *s = h->head; s; s = s->next)
			if (s->suspended) {
				s->suspended = false;
				MHD_resume_connection(s->conn);
			}
		if (h->stop && !h->head)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long ns = ts.tv_nsec + (EV_TICK_US % 1000000) * 1000;
		ts.tv_sec += EV_TICK_US / 1000000 + ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int api_events_new(const struct api_dash_opts *o, struct api_events **out, struct hr_err *err)
{
	struct api_events *h = calloc(1, sizeof *h);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	h->o = *o;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (pthread_create(&h->th, NULL, ev_ticker, h) != 0) {
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		free(h);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the event ticker");
	}
	*out = h;
	return 0;
}

/* Ends every stream: each reader sees stop and closes; returns when none is
 * suspended any more (MHD then closes them). */
void api_events_quiesce(struct api_events *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->cond);
	for (int i = 0; i < 100; i++) {
		bool any = false;
		for (struct ev_sub *s = h->head; s; s = s->next)
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

void api_events_free(struct api_events *h)
{
	if (!h)
		return;
	api_events_quiesce(h);
	pthread_join(h->th, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}

/* The rate and ETA change every second by themselves: events are for
 * changes of counters and statuses, so they are left out (GET has them;
 * the dashboard computes a rate from the counters it sees). */
static void ev_trim(json_t *j)
{
	json_t *p = json_object_get(j, "progress");
	json_object_del(p, "per_second");
	json_object_del(p, "eta_seconds");
}

/* The campaigns the stream shows, as one JSON text (NULL on a store
 * error: nothing is sent that tick). */
static char *ev_snapshot(struct ev_sub *s, bool *gone)
{
	struct store *st = s->srv->o.store;
	*gone = false;
	json_t *data = json_array();
	if (!data)
		return NULL;
	if (s->batch[0]) {
		struct batch b;
		int rc = st->ops->batch_get(st, s->tenant, s->batch, &b);
		if (rc) {
			*gone = rc == HR_ENOTFOUND;
			json_decref(data);
			return NULL;
		}
		json_t *j = api_batch_json(&b);
		batch_clear(&b);
		ev_trim(j);
		if (!j || json_array_append_new(data, j) != 0) {
			json_decref(data);
			return NULL;
		}
	} else {
		struct batch_filter f = {.status = -1, .limit = EV_RECENT};
		if (s->unit[0])
			f.unit = s->unit;
		struct batch *list;
		size_t n;
		bool more;
		if (st->ops->batch_list(st, s->tenant, &f, &list, &n, &more) != 0) {
			json_decref(data);
			return NULL;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *j = api_batch_json(&list[i]);
			ev_trim(j);
			if (data && (!j || json_array_append_new(data, j) != 0)) {
				json_decref(data);
				data = NULL;
			}
			batch_clear(&list[i]);
		}
		free(list);
		if (!data)
			return NULL;
	}
	json_t *o = json_pack("{s:o}", "data", data);
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return txt;
}

static ssize_t ev_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct ev_sub *s = cls;
	struct api_events *h = s->hub;
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
		pthread_mutex_lock(&h->lock);
		bool stop = h->stop;
		pthread_mutex_unlock(&h->lock);
		if (stop || (s->session[0] && !api_session_alive(s->srv, s->session, s->epoch)))
			return MHD_CONTENT_READER_END_OF_STREAM;
		bool gone;
		char *now = ev_snapshot(s, &gone);
		/* dash3: a switch of tenant while the snapshot was read: it is
		 * not sent (nothing read after a switch goes out). */
		if (!gone && s->session[0] && !api_session_alive(s->srv, s->session, s->epoch))
			gone = true;
		if (gone) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		int64_t t = hr_mono_us();
		if (!s->last)
			hr_buf_printf(&s->out, "retry: 3000\n\n");
		if (now && (!s->last || strcmp(now, s->last) != 0)) {
			hr_buf_printf(&s->out, "event: campaigns\ndata: %s\n\n", now);
			free(s->last);
			s->last = now;
			s->last_us = t;
		} else {
			free(now);
			if (t - s->last_us >= h->o.heartbeat_us) {
				hr_buf_printf(&s->out, ": heartbeat\n\n");
				s->last_us = t;
			}
		}
		if (s->out.oom)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (s->out.len)
			continue;
		pthread_mutex_lock(&h->lock);
		if (h->stop) {
			pthread_mutex_unlock(&h->lock);
			continue;
		}
		s->suspended = true;
		MHD_suspend_connection(s->conn);
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
}

static void ev_free(void *cls)
{
	struct ev_sub *s = cls;
	struct api_events *h = s->hub;
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
	api_session_stream_release(s->srv, s->session, s->actor);
	free(s->last);
	free(s->out.p);
	free(s);
}

enum MHD_Result api_events_get(struct api_req *r)
{
	struct api_server *srv = r->srv;
	struct api_events *h = srv->events;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const allowed[] = {"batch", NULL};
	int rc = api_query_check(r, allowed, &err);
	const char *batch = api_query(r, "batch");
	if (rc == 0 && batch && strlen(batch) > HR_ID_LEN)
		rc = hr_fail(&err, HR_ENOTFOUND, "batch", "no such campaign");
	if (rc == 0 && batch) {
		/* The campaign must be the caller's (and its unit's). */
		struct batch b;
		struct store *st = srv->o.store;
		rc = st->ops->batch_get(st, r->tenant, batch, &b);
		if (rc == 0) {
			if (!api_unit_visible(r, b.unit, false))
				rc = hr_fail(&err, HR_ENOTFOUND, "batch", "no such campaign");
			batch_clear(&b);
		} else if (rc == HR_ENOTFOUND) {
			hr_fail(&err, HR_ENOTFOUND, "batch", "no such campaign");
		}
	}
	if (rc)
		return api_fail(r, rc, &err);
	struct ev_sub *s = calloc(1, sizeof *s);
	if (!s)
		return api_fail(r, HR_ENOMEM, NULL);
	s->hub = h;
	s->srv = srv;
	s->conn = r->conn;
	hr_strlcpy(s->tenant, r->tenant, sizeof s->tenant);
	hr_strlcpy(s->unit, r->who.unit, sizeof s->unit);
	hr_strlcpy(s->batch, batch ? batch : "", sizeof s->batch);
	memcpy(s->session, r->session, sizeof s->session);
	s->epoch = r->session_epoch;
	hr_strlcpy(s->actor, r->who.actor, sizeof s->actor);
	/* The global cap first (it is the one that protects connections),
	 * then the caller's own. */
	pthread_mutex_lock(&h->lock);
	bool full = h->n >= h->o.max_event_streams || h->stop;
	if (!full)
		h->n++; /* reserved; linked below */
	pthread_mutex_unlock(&h->lock);
	if (full) {
		free(s);
		hr_fail(&err, HR_EQUOTA, "event_streams",
		        "too many event streams are open on this server (at most %d)",
		        h->o.max_event_streams);
		return api_quota_fail(r, &err, 5);
	}
	if ((rc = api_session_stream_acquire(srv, s->session, s->epoch, s->actor, &err)) != 0) {
		pthread_mutex_lock(&h->lock);
		h->n--;
		pthread_mutex_unlock(&h->lock);
		free(s);
		return rc == HR_EQUOTA ? api_quota_fail(r, &err, 5) : api_fail(r, rc, &err);
	}
	pthread_mutex_lock(&h->lock);
	s->next = h->head;
	if (h->head)
		h->head->prev = s;
	h->head = s;
	pthread_mutex_unlock(&h->lock);
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, ev_read, s, ev_free);
	if (!resp) {
		ev_free(s);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
	        MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES) {
		MHD_destroy_response(resp); /* frees s through ev_free */
		return api_fail(r, HR_ENOMEM, NULL);
	}
	enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http(200);
	return ret;
}
