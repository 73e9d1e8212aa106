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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/evstream.h"

#define EV_TICK_US (250 * 1000)
#define EV_RECENT 20 /* campaigns in each event */

struct ev_sub {
	struct es_stream es; /* first: the hub's list holds it */
	struct api_events *hub;
	struct api_server *srv;
	char tenant[HR_NAME_MAX];
	char unit[HR_NAME_MAX]; /* a unit credential's unit; "" = tenant-wide */
	char batch[HR_ID_LEN + 1];
	char session[65];
	unsigned epoch; /* the session's tenant switches when it opened */
	char actor[96];
	bool ended;
	char *last; /* the last snapshot sent */
	int64_t last_us;
};

struct api_events {
	struct es_hub es;
	struct api_dash_opts o;
};

int api_events_new(const struct api_dash_opts *o, struct api_events **out, struct hr_err *err)
{
	struct api_events *h = calloc(1, sizeof *h);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	h->o = *o;
	int rc = es_hub_start(&h->es, EV_TICK_US, err);
	if (rc) {
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* Ends every stream: each reader sees stop and closes; returns when none is
 * suspended any more (MHD then closes them). */
void api_events_quiesce(struct api_events *h)
{
	if (h)
		es_hub_quiesce(&h->es);
}

void api_events_free(struct api_events *h)
{
	if (!h)
		return;
	es_hub_stop(&h->es);
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
	struct hr_buf *out = &s->es.out;
	for (;;) {
		size_t took = api_buf_take(out, &s->es.off, buf, max);
		if (took)
			return (ssize_t)took;
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (es_hub_stopping(&h->es) ||
		    (s->session[0] && !api_session_alive(s->srv, s->session, s->epoch)))
			return MHD_CONTENT_READER_END_OF_STREAM;
		bool gone;
		char *now = ev_snapshot(s, &gone);
		/* a switch of tenant while the snapshot was read: it is
		 * not sent (nothing read after a switch goes out). */
		if (!gone && s->session[0] && !api_session_alive(s->srv, s->session, s->epoch))
			gone = true;
		if (gone) {
			free(now);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		int64_t t = hr_mono_us();
		if (!s->last)
			hr_buf_printf(out, "retry: 3000\n\n");
		if (now && (!s->last || strcmp(now, s->last) != 0)) {
			hr_buf_printf(out, "event: campaigns\ndata: %s\n\n", now);
			free(s->last);
			s->last = now;
			s->last_us = t;
		} else {
			free(now);
			if (t - s->last_us >= h->o.heartbeat_us) {
				hr_buf_printf(out, ": heartbeat\n\n");
				s->last_us = t;
			}
		}
		if (out->oom)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (out->len)
			continue;
		if (es_stream_suspend(&s->es))
			return 0;
	}
}

static void ev_free(void *cls)
{
	struct ev_sub *s = cls;
	es_hub_unlink(&s->es);
	api_session_stream_release(s->srv, s->session, s->actor);
	free(s->last);
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
	s->es.conn = r->conn;
	hr_strlcpy(s->tenant, r->tenant, sizeof s->tenant);
	hr_strlcpy(s->unit, r->who.unit, sizeof s->unit);
	hr_strlcpy(s->batch, batch ? batch : "", sizeof s->batch);
	memcpy(s->session, r->session, sizeof s->session);
	s->epoch = r->session_epoch;
	hr_strlcpy(s->actor, r->who.actor, sizeof s->actor);
	/* The global cap first (it is the one that protects connections),
	 * then the caller's own. */
	if (!es_hub_reserve(&h->es, h->o.max_event_streams)) {
		free(s);
		hr_fail(&err, HR_EQUOTA, "event_streams",
		        "too many event streams are open on this server (at most %d)",
		        h->o.max_event_streams);
		return api_quota_fail(r, &err, 5);
	}
	if ((rc = api_session_stream_acquire(srv, s->session, s->epoch, s->actor, &err)) != 0) {
		es_hub_unreserve(&h->es);
		free(s);
		return rc == HR_EQUOTA ? api_quota_fail(r, &err, 5) : api_fail(r, rc, &err);
	}
	es_hub_link(&h->es, &s->es);
	return es_respond(r, ev_read, s, ev_free);
}
