/*
 * upload.c - multipart/form-data request bodies (campaign uploads) streamed
 * to disk as they arrive: libmicrohttpd's post processor splits the parts,
 * the file part goes to an unnamed temporary file (O_TMPFILE: nothing is
 * left behind if the process dies), the small fields to memory. Nothing is
 * ever held whole: the file is read afterwards by the streaming sheet
 * readers through /proc/self/fd/N.
 *
 * Limits: the whole body (api_opts.max_upload_bytes, checked as bytes
 * arrive, beside Content-Length), one file part, at most UPLOAD_FIELDS
 * other fields of at most UPLOAD_FIELD_BYTES each.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api_int.h"

#define UPLOAD_FIELDS 32
#define UPLOAD_FIELD_BYTES (64 * 1024)

struct api_upload {
	struct MHD_PostProcessor *pp;
	int fd;                    /* the file part, -1 until it starts */
	char filename[128];        /* as the client named it (sanitised), "" if none */
	char path[64];             /* /proc/self/fd/N */
	uint64_t file_bytes;
	int nfiles;
	json_t *fields;            /* name -> string */
	struct hr_buf cur;         /* the field being received */
	char cur_key[64];
	struct hr_err err;         /* the first problem, reported at the end */
	const char *tmpdir;
};

static int upload_fail(struct api_upload *u, int code, const char *field, const char *msg)
{
	if (!u->err.code)
		hr_fail(&u->err, code, field, "%s", msg);
	return MHD_NO;
}

/* Keeps a client's file name only as a label: its extension says the format. */
static void clean_name(char *dst, size_t size, const char *name)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	const char *b2 = strrchr(base, '\\');
	base = b2 ? b2 + 1 : base;
	size_t o = 0;
	for (const char *p = base; *p && o + 1 < size; p++) {
		unsigned char c = (unsigned char)*p;
		dst[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '_' : (char)c;
	}
	dst[o] = 0;
}

static int flush_field(struct api_upload *u)
{
	if (!u->cur_key[0])
		return 0;
	if (u->cur.oom)
		return upload_fail(u, HR_ENOMEM, u->cur_key, "out of memory");
	if (json_object_size(u->fields) >= UPLOAD_FIELDS)
		return upload_fail(u, HR_ELIMIT, u->cur_key, "too many form fields");
	if (json_object_get(u->fields, u->cur_key))
		return upload_fail(u, HR_EINVAL, u->cur_key, "a form field is given twice");
	if (json_object_set_new(u->fields, u->cur_key,
	                        json_stringn(u->cur.p ? u->cur.p : "", u->cur.len)) != 0)
		return upload_fail(u, HR_EINVAL, u->cur_key,
		                   "a form field is not valid UTF-8 text");
	u->cur.len = 0;
	u->cur_key[0] = 0;
	return 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *ctype, const char *enc,
                               const char *data, uint64_t off, size_t size)
{
	(void)kind, (void)ctype, (void)enc;
	struct api_upload *u = cls;
	if (u->err.code)
		return MHD_NO;
	if (!key)
		key = "";
	if (filename) {
		if (strcmp(key, "file") != 0)
			return upload_fail(u, HR_EINVAL, key, "the file goes in the form field 'file'");
		if (off == 0) {
			if (u->nfiles++)
				return upload_fail(u, HR_EINVAL, "file", "upload one file at a time");
			if (flush_field(u))
				return MHD_NO;
			clean_name(u->filename, sizeof u->filename, filename);
			u->fd = open(u->tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
			if (u->fd < 0)
				return upload_fail(u, HR_EIO, "file", "cannot store the upload");
			snprintf(u->path, sizeof u->path, "/proc/self/fd/%d", u->fd);
		}
		for (size_t done = 0; done < size;) {
			ssize_t w = write(u->fd, data + done, size - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return upload_fail(u, HR_EIO, "file", "cannot store the upload (disk full?)");
			done += (size_t)w;
		}
		u->file_bytes += size;
		return MHD_YES;
	}
	if (off == 0 || strcmp(key, u->cur_key) != 0) {
		if (flush_field(u))
			return MHD_NO;
		if (!*key || strlen(key) >= sizeof u->cur_key)
			return upload_fail(u, HR_EINVAL, "", "a form field has no or too long a name");
		hr_strlcpy(u->cur_key, key, sizeof u->cur_key);
	}
	if (u->cur.len + size > UPLOAD_FIELD_BYTES)
		return upload_fail(u, HR_ELIMIT, key, "a form field is over 64 KiB");
	hr_buf_put(&u->cur, data, size);
	return MHD_YES;
}

int api_upload_begin(struct api_req *r, struct hr_err *err)
{
	struct api_upload *u = calloc(1, sizeof *u);
	if (!u || !(u->fields = json_object())) {
		free(u);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	u->fd = -1;
	u->tmpdir = r->srv->o.upload_dir ? r->srv->o.upload_dir : "/tmp";
	u->pp = MHD_create_post_processor(r->conn, 64 * 1024, on_part, u);
	if (!u->pp) {
		json_decref(u->fields);
		free(u);
		return hr_fail(err, HR_EINVAL, "Content-Type",
		               "a multipart/form-data body needs a boundary in its Content-Type");
	}
	r->upload = u;
	return 0;
}

int api_upload_feed(struct api_req *r, const char *data, size_t n)
{
	struct api_upload *u = r->upload;
	if (u->err.code)
		return u->err.code;
	if (MHD_post_process(u->pp, data, n) != MHD_YES && !u->err.code)
		hr_fail(&u->err, HR_EINVAL, "", "the multipart body is malformed");
	return u->err.code;
}

int api_upload_finish(struct api_req *r, struct hr_err *err)
{
	struct api_upload *u = r->upload;
	if (!u->err.code && MHD_destroy_post_processor(u->pp) != MHD_YES)
		hr_fail(&u->err, HR_EINVAL, "", "the multipart body ended early");
	u->pp = NULL;
	if (!u->err.code)
		flush_field(u);
	if (!u->err.code && u->fd < 0)
		hr_fail(&u->err, HR_EINVAL, "file", "the form has no file: send it as the field 'file'");
	if (u->err.code) {
		*err = u->err;
		return u->err.code;
	}
	return 0;
}

void api_upload_free(struct api_upload *u)
{
	if (!u)
		return;
	if (u->pp)
		MHD_destroy_post_processor(u->pp);
	if (u->fd >= 0)
		close(u->fd);
	json_decref(u->fields);
	free(u->cur.p);
	free(u);
}

const char *api_upload_path(const struct api_upload *u)
{
	return u->path;
}

const char *api_upload_filename(const struct api_upload *u)
{
	return u->filename;
}

json_t *api_upload_fields(const struct api_upload *u)
{
	return u->fields;
}
