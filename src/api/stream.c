/*
 * stream.c - see stream.h.
 */
#include <string.h>

#include "api/stream.h"
#include "obs/metrics.h"

enum MHD_Result api_respond_with(struct api_req *r, struct MHD_Response *resp,
                                 const char *const *headers)
{
	for (size_t i = 0; headers[i]; i += 2)
		if (MHD_add_response_header(resp, headers[i], headers[i + 1]) != MHD_YES) {
			MHD_destroy_response(resp); /* frees what it holds */
			return api_fail(r, HR_ENOMEM, NULL);
		}
	enum MHD_Result ret = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	r->responded = true;
	if (ret == MHD_YES)
		metrics_http(200);
	return ret;
}

enum MHD_Result api_stream_respond(struct api_req *r, size_t block, MHD_ContentReaderCallback rd,
                                   void *cls, MHD_ContentReaderFreeCallback fr,
                                   const char *const *headers)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, block, rd, cls, fr);
	if (!resp) {
		fr(cls);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_with(r, resp, headers); /* a failure frees cls through fr */
}

size_t api_buf_take(struct hr_buf *b, size_t *off, char *buf, size_t max)
{
	if (*off < b->len) {
		size_t n = b->len - *off;
		if (n > max)
			n = max;
		memcpy(buf, b->p + *off, n);
		*off += n;
		return n;
	}
	b->len = *off = 0;
	return 0;
}

ssize_t api_pager_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct api_pager *p = cls;
	for (;;) {
		size_t n = api_buf_take(&p->out, &p->off, buf, max);
		if (n)
			return (ssize_t)n;
		if (p->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		int rc = p->page(p);
		if (rc) {
			p->failed(p, rc);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
	}
}
