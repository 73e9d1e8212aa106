/*
 * sheet_sst.c - the shared-strings table of an xlsx workbook, kept in an
 * unlinked temporary file with an in-memory array of offsets (the scheme and
 * its bound are described in sheet.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "campaigns/xlsx_int.h"

#define SST_TOO_LONG (UINT32_C(1) << 31)
#define SST_WBUF 65536

static int sst_io_fail(struct sheet *s, const char *what)
{
	return sheet_fail(s, HR_EIO, SHEET_E_IO, s->x ? s->x->sst_part : NULL, 0, 0, -1,
	                  "The server could not %s its temporary copy of the workbook's strings "
	                  "(%s): try again later.",
	                  what, strerror(errno));
}

/* An unlinked file in dir: O_TMPFILE where the file system has it, else
 * mkstemp and unlink at once. Either way nothing is left behind. */
static int sst_tmpfile(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/sheet-sst-XXXXXX", dir) >= sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (unlink(path) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int sst_flush(struct sheet *s, struct sst *t)
{
	size_t done = 0;
	while (done < t->wlen) {
		ssize_t n = write(t->fd, t->wbuf + done, t->wlen - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sst_io_fail(s, "write");
		done += (size_t)n;
	}
	t->wlen = 0;
	return 0;
}

/* Ends string number t->n (its text is t->si). */
static int sst_commit(struct xl_part *pt)
{
	struct sheet *s = pt->s;
	struct sst *t = &s->x->sst;
	char a[32];
	bool too_long = t->si.over || t->si.len > s->lim.max_cell_bytes;
	size_t len = too_long ? 0 : t->si.len;
	/* The budget: the file's bytes and 4 bytes per string in memory
	 * (max_sst_bytes < 2 GiB keeps every offset below SST_TOO_LONG). */
	if (t->bytes + len + 4 * ((uint64_t)t->n + 2) > s->lim.max_sst_bytes)
		return sheet_fail(s, HR_ELIMIT, SHEET_E_SST_SIZE, pt->name, 0, 0,
		                  (int64_t)XML_GetCurrentByteIndex(pt->p),
		                  "The workbook's table of texts (%s) is larger than the limit of "
		                  "%s: split the data into smaller files.",
		                  pt->name, sheet_fmt_bytes(s->lim.max_sst_bytes, a));
	if (t->n + 2 > t->cap) {
		uint32_t cap = t->cap * 2;
		uint32_t *o = realloc(t->off, cap * sizeof *o);
		if (!o)
			return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, pt->name, 0, 0, -1,
			                  "Out of memory reading the workbook's texts.");
		t->off = o;
		t->cap = cap;
	}
	if (too_long)
		t->off[t->n] |= SST_TOO_LONG;
	for (size_t done = 0; done < len;) {
		if (t->wlen == SST_WBUF) {
			int rc = sst_flush(s, t);
			if (rc < 0)
				return rc;
		}
		size_t k = len - done < SST_WBUF - t->wlen ? len - done : SST_WBUF - t->wlen;
		memcpy(t->wbuf + t->wlen, t->si.p + done, k);
		t->wlen += k;
		done += k;
	}
	t->bytes += len;
	t->off[++t->n] = (uint32_t)t->bytes;
	return 0;
}

static void XMLCALL sst_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct sst *t = &pt->s->x->sst;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (strcmp(n, "si") == 0) {
		t->in_si = true;
		t->rph = 0;
		xbuf_clear(&t->si);
	} else if (t->in_si && strcmp(n, "rPh") == 0) {
		t->rph++;
	} else if (t->in_si && !t->rph && n[0] == 't' && !n[1]) {
		const char *sp = xl_attr(attrs, "space");
		t->preserve = sp && strcmp(sp, "preserve") == 0;
		t->in_t = true;
		t->run = t->si.len;
	}
}

static void XMLCALL sst_end(void *ud, const XML_Char *name)
{
	struct xl_part *pt = ud;
	struct sst *t = &pt->s->x->sst;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (t->in_t && n[0] == 't' && !n[1]) {
		t->in_t = false;
		xl_text_finish(&t->si, t->run, t->preserve);
	} else if (t->in_si && strcmp(n, "rPh") == 0) {
		t->rph--;
	} else if (t->in_si && strcmp(n, "si") == 0) {
		t->in_si = false;
		if (sst_commit(pt) < 0)
			xl_abort(pt);
	}
}

static void XMLCALL sst_text(void *ud, const XML_Char *p, int n)
{
	struct xl_part *pt = ud;
	struct sst *t = &pt->s->x->sst;
	if (!t->in_t || pt->halt)
		return;
	if (xbuf_put(&t->si, p, (size_t)n) < 0) {
		sheet_fail(pt->s, HR_ENOMEM, SHEET_E_NOMEM, pt->name, 0, 0, -1,
		           "Out of memory reading the workbook's texts.");
		xl_abort(pt);
	}
}

int sst_load(struct sheet *s, const char *part)
{
	struct xlsx *x = s->x;
	struct sst *t = &x->sst;
	const char *dir = s->tmpdir;
	if (!dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	t->fd = sst_tmpfile(dir);
	if (t->fd < 0)
		return sst_io_fail(s, "create");
	t->cap = 1024;
	t->off = malloc(t->cap * sizeof *t->off);
	t->wbuf = malloc(SST_WBUF);
	if (!t->off || !t->wbuf)
		return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, part, 0, 0, -1,
		                  "Out of memory reading the workbook's texts.");
	t->off[0] = 0;
	/* Raw text may shrink up to 7 times (_xHHHH_ escapes): anything past
	 * that is over the cell limit for sure and is not kept. */
	t->si.max = (size_t)s->lim.max_cell_bytes * 7 + 64;
	x->has_sst = true;
	int rc =
	    xl_parse_part(s, part, false, "the table of texts", sst_start, sst_end, sst_text, NULL);
	if (rc < 0)
		return rc;
	if (rc == 1) /* listed in the rels but absent: a cell using it will say so */
		x->has_sst = false;
	free(t->si.p);
	t->si = (struct xbuf){0};
	rc = sst_flush(s, t);
	free(t->wbuf);
	t->wbuf = NULL;
	return rc;
}

int sst_get(struct sheet *s, uint32_t i, const char **p, size_t *n)
{
	struct sst *t = &s->x->sst;
	if (t->off[i] & SST_TOO_LONG)
		return 1;
	uint64_t o = t->off[i] & ~SST_TOO_LONG, e = t->off[i + 1] & ~SST_TOO_LONG;
	size_t len = (size_t)(e - o);
	*n = len;
	if (len == 0) {
		*p = "";
		return 0;
	}
	struct sst_win *lru = &t->win[0];
	for (int k = 0; k < SST_NWIN; k++) {
		struct sst_win *w = &t->win[k];
		if (w->buf && o >= w->start && e <= w->end) {
			w->used = ++t->tick;
			*p = w->buf + (o - w->start);
			return 0;
		}
		if (w->used < lru->used)
			lru = w;
	}
	char *dst;
	size_t want;
	if (len > SST_WIN) { /* a long string: read on its own */
		if (len > t->bigcap) {
			char *b = realloc(t->big, len);
			if (!b)
				return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, NULL, 0, 0, -1,
				                  "Out of memory reading the workbook's texts.");
			t->big = b;
			t->bigcap = len;
		}
		dst = t->big;
		want = len;
	} else {
		if (!lru->buf && !(lru->buf = malloc(SST_WIN)))
			return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, NULL, 0, 0, -1,
			                  "Out of memory reading the workbook's texts.");
		dst = lru->buf;
		want = SST_WIN;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(t->fd, dst + got, want - got, (off_t)(o + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return sst_io_fail(s, "read");
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got < len) {
		errno = EIO;
		return sst_io_fail(s, "read");
	}
	if (dst != t->big) {
		lru->start = o;
		lru->end = o + got;
		lru->used = ++t->tick;
	}
	*p = dst;
	return 0;
}

void sst_free(struct sst *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	free(t->off);
	free(t->wbuf);
	free(t->si.p);
	free(t->big);
	for (int k = 0; k < SST_NWIN; k++)
		free(t->win[k].buf);
	memset(t->win, 0, sizeof t->win);
	t->off = NULL;
	t->wbuf = NULL;
	t->si.p = NULL;
	t->big = NULL;
}
