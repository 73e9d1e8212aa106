/*
 * sheet_xlpart.c - zip members of a workbook read as XML streams: inflated
 * by libzip in chunks with the real inflated bytes counted, parsed by expat
 * with its memory capped and any DOCTYPE refused; plus the text helpers the
 * xlsx parts share (_xHHHH_ escapes, xml:space).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaigns/xlsx_int.h"

/* ---- small helpers ---- */

int xbuf_put(struct xbuf *b, const char *p, size_t n)
{
	if (b->over)
		return 0;
	if (b->len + n + 1 > b->max) {
		b->over = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

const char *xl_attr(const char **attrs, const char *local)
{
	for (const char **a = attrs; *a; a += 2)
		if (strcmp(xl_local(a[0]), local) == 0)
			return a[1];
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* _xHHHH_ at p (with at least 7 bytes left)? The code unit, else -1. */
static long xl_escape_at(const char *p, const char *end)
{
	if (end - p < 7 || p[0] != '_' || p[1] != 'x' || p[6] != '_')
		return -1;
	long u = 0;
	for (int i = 2; i < 6; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return -1;
		u = u * 16 + h;
	}
	return u;
}

void xl_text_finish(struct xbuf *b, size_t from, bool preserve)
{
	if (b->over || !b->p)
		return;
	char *s = b->p + from, *e = b->p + b->len;
	if (!preserve) {
		while (s < e && xml_space(*s))
			s++;
		while (e > s && xml_space(e[-1]))
			e--;
	}
	char *o = b->p + from;
	if (!memchr(s, '_', (size_t)(e - s))) { /* the usual case: no escapes */
		memmove(o, s, (size_t)(e - s));
		o += e - s;
	} else {
		for (const char *p = s; p < e;) {
			long u = xl_escape_at(p, e);
			if (u < 0) {
				*o++ = *p++;
				continue;
			}
			p += 7;
			unsigned long cp = (unsigned long)u;
			if (u >= 0xD800 && u <= 0xDBFF) {
				long lo = xl_escape_at(p, e);
				if (lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + (((unsigned long)u - 0xD800) << 10) +
					     ((unsigned long)lo - 0xDC00);
					p += 7;
				} else {
					cp = 0xFFFD;
				}
			} else if ((u >= 0xDC00 && u <= 0xDFFF) || u == 0) {
				cp = 0xFFFD; /* a lone surrogate, or NUL: not text */
			}
			o += hr_utf8_put(o, cp);
		}
	}
	b->len = (size_t)(o - b->p);
	b->p[b->len] = '\0';
}

/* ---- expat's memory, capped per parser ---- */

/* The parser whose allocations are being made on this thread: set before
 * every expat call (expat's allocator has no user pointer). Each block
 * remembers its parser, so realloc and free need no context. */
static _Thread_local struct xl_mem *xl_mem_cur;

typedef union {
	struct {
		struct xl_mem *m;
		size_t n;
	} h;
	max_align_t align;
} xl_hdr;

static void *xl_malloc(size_t n)
{
	struct xl_mem *m = xl_mem_cur;
	if (m && m->used + n > SHEET_XML_MEM_MAX) {
		m->capped = true;
		return NULL;
	}
	xl_hdr *h = malloc(sizeof *h + n);
	if (!h)
		return NULL;
	h->h.m = m;
	h->h.n = n;
	if (m)
		m->used += n;
	return h + 1;
}

static void *xl_realloc(void *p, size_t n)
{
	if (!p)
		return xl_malloc(n);
	xl_hdr *h = (xl_hdr *)p - 1;
	struct xl_mem *m = h->h.m;
	size_t old = h->h.n;
	if (m && n > old && m->used + (n - old) > SHEET_XML_MEM_MAX) {
		m->capped = true;
		return NULL;
	}
	xl_hdr *q = realloc(h, sizeof *q + n);
	if (!q)
		return NULL;
	if (m)
		m->used = m->used - old + n;
	q->h.n = n;
	return q + 1;
}

static void xl_free(void *p)
{
	if (!p)
		return;
	xl_hdr *h = (xl_hdr *)p - 1;
	if (h->h.m)
		h->h.m->used -= h->h.n;
	free(h);
}

static const XML_Memory_Handling_Suite xl_mm = {xl_malloc, xl_realloc, xl_free};

/* ---- zip members as XML streams ---- */

int xl_nomem(struct sheet *s)
{
	return sheet_fail(s, HR_ENOMEM, SHEET_E_NOMEM, NULL, 0, 0, -1,
	                  "Out of memory reading the workbook.");
}

int xl_zip_fail(struct sheet *s, const char *part, zip_error_t *ze)
{
	int code = zip_error_code_zip(ze);
	if (code == ZIP_ER_NOPASSWD || code == ZIP_ER_WRONGPASSWD || code == ZIP_ER_ENCRNOTSUPP)
		return sheet_fail(s, HR_EINVAL, SHEET_E_ENCRYPTED, part, 0, 0, -1,
		                  "The workbook is password-protected: remove the password in "
		                  "Excel (File > Info > Protect Workbook) and upload it again.");
	if (code == ZIP_ER_MEMORY)
		return xl_nomem(s);
	return sheet_fail(s, HR_EINVAL, SHEET_E_DAMAGED, part, 0, 0, -1,
	                  "The workbook is damaged: its part %s could not be read (%s). Open it "
	                  "in Excel, save it again and upload the new copy.",
	                  part, zip_error_strerror(ze));
}

/* A DOCTYPE can declare entities (the "billion laughs" bomb) or pull in
 * external files; no Office part has one, so any is refused. */
static void XMLCALL xl_on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                                  const XML_Char *pubid, int has_internal)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal;
	struct xl_part *pt = ud;
	sheet_fail(pt->s, HR_EINVAL, SHEET_E_DTD, pt->name, 0, 0,
	           (int64_t)XML_GetCurrentByteIndex(pt->p),
	           "The workbook part %s contains a DOCTYPE declaration, which Excel never "
	           "writes and which can hide an entity-expansion attack: the file was refused.",
	           pt->name);
	xl_abort(pt);
}

static void XMLCALL xl_on_entity(void *ud, const XML_Char *name, int is_param,
                                 const XML_Char *value, int value_len, const XML_Char *base,
                                 const XML_Char *sysid, const XML_Char *pubid,
                                 const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid;
	(void)pubid, (void)notation;
	xl_on_doctype(ud, NULL, NULL, NULL, 0);
}

void xl_abort(struct xl_part *pt)
{
	if (!pt->halt) {
		pt->halt = true;
		XML_StopParser(pt->p, XML_FALSE);
	}
}

int xl_part_open(struct sheet *s, struct xl_part *pt, const char *name, bool required,
                 const char *what, XML_StartElementHandler start, XML_EndElementHandler end,
                 XML_CharacterDataHandler text, void *ctx)
{
	struct xlsx *x = s->x;
	memset(pt, 0, sizeof *pt);
	pt->s = s;
	pt->ctx = ctx;
	snprintf(pt->name, sizeof pt->name, "%s", name);
	zip_int64_t idx = zip_name_locate(x->zip, name, ZIP_FL_NOCASE);
	if (idx < 0) {
		if (!required)
			return 1;
		return sheet_fail(s, HR_EINVAL, SHEET_E_MISSING_PART, name, 0, 0, -1,
		                  "The workbook is damaged: %s (%s) is missing from it. Open it in "
		                  "Excel, save it again as .xlsx and upload the new copy.",
		                  what, name);
	}
	zip_stat_t st;
	zip_stat_init(&st);
	if (zip_stat_index(x->zip, (zip_uint64_t)idx, 0, &st) != 0)
		return xl_zip_fail(s, name, zip_get_error(x->zip));
	char a[32];
	if ((st.valid & ZIP_STAT_SIZE) && st.size > s->lim.max_member_bytes)
		return sheet_fail(s, HR_ELIMIT, SHEET_E_INFLATE, name, 0, 0, -1,
		                  "The workbook part %s unpacks to more than %s, over the limit: "
		                  "split the data into smaller files.",
		                  name, sheet_fmt_bytes(s->lim.max_member_bytes, a));
	pt->zf = zip_fopen_index(x->zip, (zip_uint64_t)idx, 0);
	if (!pt->zf)
		return xl_zip_fail(s, name, zip_get_error(x->zip));
	xl_mem_cur = &pt->mem;
	pt->p = XML_ParserCreate_MM(NULL, &xl_mm, NULL);
	if (!pt->p)
		return xl_nomem(s);
	XML_SetUserData(pt->p, pt);
	XML_SetElementHandler(pt->p, start, end);
	if (text)
		XML_SetCharacterDataHandler(pt->p, text);
	XML_SetStartDoctypeDeclHandler(pt->p, xl_on_doctype);
	XML_SetEntityDeclHandler(pt->p, xl_on_entity);
	return 0;
}

void xl_part_close(struct xl_part *pt)
{
	if (pt->p) {
		xl_mem_cur = &pt->mem;
		XML_ParserFree(pt->p);
		xl_mem_cur = NULL;
		pt->p = NULL;
	}
	if (pt->zf) {
		zip_fclose(pt->zf);
		pt->zf = NULL;
	}
}

static int xl_xml_error(struct xl_part *pt)
{
	struct sheet *s = pt->s;
	enum XML_Error e = XML_GetErrorCode(pt->p);
	unsigned long line = XML_GetCurrentLineNumber(pt->p);
	unsigned long col = XML_GetCurrentColumnNumber(pt->p) + 1;
	int64_t off = (int64_t)XML_GetCurrentByteIndex(pt->p);
	if (e == XML_ERROR_NO_MEMORY && pt->mem.capped) {
		char a[32];
		return sheet_fail(s, HR_ELIMIT, SHEET_E_XML_MEM, pt->name, 0, 0, off,
		                  "The workbook part %s has a single XML element needing more than "
		                  "%s near line %lu: the file was refused.",
		                  pt->name, sheet_fmt_bytes(SHEET_XML_MEM_MAX, a), line);
	}
	if (e == XML_ERROR_NO_MEMORY)
		return xl_nomem(s);
	return sheet_fail(s, HR_EINVAL, SHEET_E_XML, pt->name, 0, 0, off,
	                  "The workbook is damaged: its part %s is not well-formed XML (%s) at "
	                  "line %lu, column %lu. Open it in Excel, save it again and upload the "
	                  "new copy.",
	                  pt->name, XML_ErrorString(e), line, col);
}

int xl_step(struct xl_part *pt)
{
	struct sheet *s = pt->s;
	char a[32];
	enum XML_Status st;
	xl_mem_cur = &pt->mem;
	if (pt->suspended) {
		pt->suspended = false;
		pt->halt = false;
		st = XML_ResumeParser(pt->p);
	} else if (pt->final_fed) {
		return 0;
	} else {
		void *buf = XML_GetBuffer(pt->p, SHEET_CHUNK);
		if (!buf)
			return xl_xml_error(pt);
		zip_int64_t n = zip_fread(pt->zf, buf, SHEET_CHUNK);
		if (n < 0)
			return xl_zip_fail(s, pt->name, zip_file_get_error(pt->zf));
		pt->inflated += (uint64_t)n;
		if (pt->inflated > s->lim.max_member_bytes)
			return sheet_fail(s, HR_ELIMIT, SHEET_E_INFLATE, pt->name, 0, 0,
			                  (int64_t)pt->inflated,
			                  "The workbook part %s unpacks to more than %s, over the "
			                  "limit: split the data into smaller files.",
			                  pt->name, sheet_fmt_bytes(s->lim.max_member_bytes, a));
		pt->final_fed = n == 0;
		st = XML_ParseBuffer(pt->p, (int)n, n == 0);
	}
	if (st == XML_STATUS_SUSPENDED) {
		pt->suspended = true;
		return 1;
	}
	if (st == XML_STATUS_ERROR) {
		if (s->failed)
			return s->failed;
		if (pt->finished)
			return 0;
		return xl_xml_error(pt);
	}
	return pt->final_fed ? 0 : 2;
}

int xl_pump(struct xl_part *pt)
{
	int rc;
	while ((rc = xl_step(pt)) == 2)
		;
	return rc == 1 ? HR_EINTERNAL : rc; /* only the worksheet pauses */
}

int xl_parse_part(struct sheet *s, const char *name, bool required, const char *what,
                  XML_StartElementHandler start, XML_EndElementHandler end,
                  XML_CharacterDataHandler text, void *ctx)
{
	/* On the heap: expat's allocator reaches pt->mem through a
	 * thread-local pointer, which must not point into a stack frame. */
	struct xl_part *pt = malloc(sizeof *pt);
	if (!pt)
		return xl_nomem(s);
	int rc = xl_part_open(s, pt, name, required, what, start, end, text, ctx);
	if (rc == 0)
		rc = xl_pump(pt);
	xl_part_close(pt);
	free(pt);
	return rc;
}
