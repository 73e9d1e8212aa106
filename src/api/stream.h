/*
 * stream.h - responses of unknown length whose body a content reader
 * produces as it goes (stream.c): the event feeds (evstream.h) and the
 * downloads (batch_export.c, messages_read.c) queue theirs here, and a
 * download written a page at a time reads through one api_pager.
 */
#ifndef HR_API_STREAM_H
#define HR_API_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api_int.h"

/*
 * Answers r with 200 and resp (which this takes: destroyed in every case),
 * with headers: name, value pairs, NULL-terminated; HR_ENOMEM answered when
 * a header cannot be added.
 */
enum MHD_Result api_respond_with(struct api_req *r, struct MHD_Response *resp,
                                 const char *const *headers);

/*
 * Answers r with 200 and a body from rd (block bytes a call at most), with
 * headers: name, value pairs, NULL-terminated. On failure to make the
 * response, HR_ENOMEM is answered and cls freed through fr.
 */
enum MHD_Result api_stream_respond(struct api_req *r, size_t block, MHD_ContentReaderCallback rd,
                                   void *cls, MHD_ContentReaderFreeCallback fr,
                                   const char *const *headers);

/* Copies up to max of the bytes of b from *off on into buf and returns
 * their count; 0 when all were taken (b and *off are then emptied for
 * what comes next). */
size_t api_buf_take(struct hr_buf *b, size_t *off, char *buf, size_t max);

/* A download written a page at a time: the first member of the
 * download's own state, which is its cls. */
struct api_pager {
	/* Formats the next page into out, setting done after the last: 0 or an
	 * HR_E code. */
	int (*page)(struct api_pager *p);
	/* Logs a page that failed once the status line was out (the body is
	 * then cut, so the client sees a broken download). */
	void (*failed)(struct api_pager *p, int rc);
	bool done;
	struct hr_buf out;
	size_t off; /* bytes of out handed to MHD */
};

/* The content reader of an api_pager (cls). */
ssize_t api_pager_read(void *cls, uint64_t pos, char *buf, size_t max);

#endif
