/*
 * evstream.c - see evstream.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/evstream.h"

static void *ticker(void *arg)
{
	struct es_hub *h = arg;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		for (struct es_stream *s = h->head; s; s = s->next)
			if (s->suspended) {
				s->suspended = false;
				MHD_resume_connection(s->conn);
			}
		if (h->stop && !h->head)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long ns = ts.tv_nsec + (long)(h->tick_us % 1000000) * 1000;
		ts.tv_sec += (time_t)(h->tick_us / 1000000) + ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int es_hub_start(struct es_hub *h, int64_t tick_us, struct hr_err *err)
{
	h->tick_us = tick_us;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (pthread_create(&h->th, NULL, ticker, h) != 0) {
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		return hr_fail(err, HR_EINTERNAL, NULL, "cannot start the event ticker");
	}
	return 0;
}

void es_hub_quiesce(struct es_hub *h)
{
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->cond);
	/* The ticker resumes the suspended ones at its next tick; from then on
	 * no reader suspends again (it sees stop and ends its stream). */
	for (int i = 0; i < 100; i++) {
		bool any = false;
		for (struct es_stream *s = h->head; s; s = s->next)
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

void es_hub_stop(struct es_hub *h)
{
	es_hub_quiesce(h);
	pthread_join(h->th, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
}

bool es_hub_stopping(struct es_hub *h)
{
	pthread_mutex_lock(&h->lock);
	bool stop = h->stop;
	pthread_mutex_unlock(&h->lock);
	return stop;
}

bool es_hub_reserve(struct es_hub *h, int max)
{
	pthread_mutex_lock(&h->lock);
	bool ok = h->n < max && !h->stop;
	if (ok)
		h->n++;
	pthread_mutex_unlock(&h->lock);
	return ok;
}

void es_hub_unreserve(struct es_hub *h)
{
	pthread_mutex_lock(&h->lock);
	h->n--;
	pthread_mutex_unlock(&h->lock);
}

void es_hub_link(struct es_hub *h, struct es_stream *s)
{
	s->hub = h;
	pthread_mutex_lock(&h->lock);
	s->next = h->head;
	if (h->head)
		h->head->prev = s;
	h->head = s;
	pthread_mutex_unlock(&h->lock);
}

void es_hub_unlink(struct es_stream *s)
{
	struct es_hub *h = s->hub;
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
	free(s->out.p);
	s->out = (struct hr_buf){0};
}

bool es_stream_suspend(struct es_stream *s)
{
	struct es_hub *h = s->hub;
	pthread_mutex_lock(&h->lock);
	if (h->stop) {
		pthread_mutex_unlock(&h->lock);
		return false;
	}
	s->suspended = true;
	MHD_suspend_connection(s->conn);
	pthread_mutex_unlock(&h->lock);
	return true;
}

enum MHD_Result es_respond(struct api_req *r, MHD_ContentReaderCallback rd, void *cls,
                           MHD_ContentReaderFreeCallback fr)
{
	static const char *const headers[] = {MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream",
	                                      MHD_HTTP_HEADER_CACHE_CONTROL, "no-store", NULL};
	return api_stream_respond(r, 4096, rd, cls, fr, headers);
}
