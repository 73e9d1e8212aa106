/*
 * evstream.h - the Server-Sent Events plumbing both event feeds use
 * (batch_events.c: GET /v1/batches/{id}/events; sse.c: GET /v1/events).
 *
 * No thread waits for a client: a stream's response comes from a content
 * reader that, when it has nothing to say, suspends its connection (MHD's
 * pool threads stay free) and returns 0; one ticker thread per hub resumes
 * every suspended stream each tick and the reader looks again. A feed
 * embeds struct es_stream in its subscriber and keeps what it shows; the
 * hub keeps the list, the count against the feed's bound, and the ticker.
 */
#ifndef HR_API_EVSTREAM_H
#define HR_API_EVSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api_int.h"
#include "api/stream.h"

struct es_hub;

/* One open stream. */
struct es_stream {
	struct es_stream *next, *prev;
	struct es_hub *hub;
	struct MHD_Connection *conn;
	bool suspended;    /* under hub->lock */
	struct hr_buf out; /* bytes still to send */
	size_t off;
};

struct es_hub {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct es_stream *head;
	int n; /* streams counted against the bound (reserved or linked) */
	bool stop;
	int64_t tick_us;
	pthread_t th;
};

/* Starts h's ticker (a tick every tick_us). 0, or HR_EINTERNAL with err
 * set ("cannot start the event ticker") and h left unusable. */
int es_hub_start(struct es_hub *h, int64_t tick_us, struct hr_err *err);
/* Ends every stream (each reader sees the stop and closes); returns once
 * none is suspended any more, or after about 5 s. */
void es_hub_quiesce(struct es_hub *h);
/* Quiesces, waits for the last stream to go, and ends the ticker. */
void es_hub_stop(struct es_hub *h);
bool es_hub_stopping(struct es_hub *h);

/* Counts one stream more when fewer than max are counted and the hub is
 * not stopping; false otherwise. */
bool es_hub_reserve(struct es_hub *h, int max);
void es_hub_unreserve(struct es_hub *h);
/* Links s (reserved) into the hub: the ticker resumes it from then on. */
void es_hub_link(struct es_hub *h, struct es_stream *s);
/* Unlinks s, uncounts it and frees its buffer (the feed's free callback). */
void es_hub_unlink(struct es_stream *s);

/* The reader's first step: api_buf_take(&s->out, &s->off, ...) (stream.h). */
/* The reader's last step when it has nothing to send: suspends the
 * connection until the next tick and returns true (the reader returns 0);
 * false when the hub is stopping (the reader looks again and ends). */
bool es_stream_suspend(struct es_stream *s);

/* Answers r with the stream: 200, text/event-stream, no-store, content
 * from rd. A failure answers HR_ENOMEM, cls freed through fr. */
enum MHD_Result es_respond(struct api_req *r, MHD_ContentReaderCallback rd, void *cls,
                           MHD_ContentReaderFreeCallback fr);

#endif
