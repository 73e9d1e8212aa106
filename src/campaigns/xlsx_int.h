/*
 * xlsx_int.h - the insides of the xlsx reader: zip members read as XML
 * streams (sheet_xlpart.c), the shared-strings store (sheet_sst.c), and the
 * workbook, styles and worksheet (sheet_xlsx.c).
 */
#ifndef HR_XLSX_INT_H
#define HR_XLSX_INT_H

#include <expat.h>
#include <zip.h>

#include "campaigns/sheet_int.h"

#define XL_PATH_MAX 256

/* A growable byte buffer that refuses to grow past cap. */
struct xbuf {
	char *p;
	size_t len, cap, max;
	bool over; /* something was refused: the text is incomplete */
};
/* Appends; past b->max sets over and drops the bytes. -1 only on ENOMEM. */
int xbuf_put(struct xbuf *b, const char *p, size_t n);
static inline void xbuf_clear(struct xbuf *b)
{
	b->len = 0;
	b->over = false;
	if (b->p)
		b->p[0] = '\0';
}

/* Expat's allocations for one parser, capped at SHEET_XML_MEM_MAX. */
struct xl_mem {
	size_t used;
	bool capped; /* an allocation was refused for the cap, not by malloc */
};

/*
 * One zip member read as an XML stream: inflated in SHEET_CHUNK pieces,
 * counting the real inflated bytes against max_member_bytes, fed to expat.
 * Handlers get the part as user data and reach their own state through ctx.
 */
struct xl_part {
	struct sheet *s;
	char name[XL_PATH_MAX];
	zip_file_t *zf;
	XML_Parser p;
	struct xl_mem mem;
	uint64_t inflated;
	bool final_fed; /* the last (empty) buffer was given to expat */
	bool suspended; /* a handler paused the parser to hand out a row */
	bool halt;      /* a handler stopped or paused: ignore callbacks until resumed */
	bool finished;  /* a handler saw all it wanted and stopped the parser */
	void *ctx;
};

/*
 * Opens member `name` (case-insensitive, as OPC part names are). Returns 0,
 * 1 when it is missing and !required, or an error (a missing required part
 * is SHEET_E_MISSING_PART, with `what` saying what the part is for).
 */
int xl_part_open(struct sheet *s, struct xl_part *pt, const char *name, bool required,
                 const char *what, XML_StartElementHandler start, XML_EndElementHandler end,
                 XML_CharacterDataHandler text, void *ctx);
/* Parses one chunk (or resumes a paused parser): 2 when the chunk is done
 * and more follow, 1 when a handler paused the parser, 0 at the end of the
 * part (or when a handler finished it), or an error. */
int xl_step(struct xl_part *pt);
/* Steps to the end of the part: 0 or an error (no handler may pause). */
int xl_pump(struct xl_part *pt);
/* Opens, parses to the end and closes a part: 0, 1 when it is missing and
 * not required, or an error. */
int xl_parse_part(struct sheet *s, const char *name, bool required, const char *what,
                  XML_StartElementHandler start, XML_EndElementHandler end,
                  XML_CharacterDataHandler text, void *ctx);
/* Errors every part can meet: out of memory, a zip member unreadable. */
int xl_nomem(struct sheet *s);
int xl_zip_fail(struct sheet *s, const char *part, zip_error_t *ze);
void xl_part_close(struct xl_part *pt);
/* Stops the parse from inside a handler after an error was filled in. */
void xl_abort(struct xl_part *pt);

/* The local part of an element or attribute name ("x:row" -> "row"). */
static inline const char *xl_local(const char *name)
{
	const char *c = name;
	for (const char *p = name; *p; p++)
		if (*p == ':')
			c = p + 1;
	return c;
}
static inline bool xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
/* An attribute's value by local name, or NULL. */
const char *xl_attr(const char **attrs, const char *local);
/*
 * Finishes the text of one <t> that starts at b->p + from: without
 * xml:space="preserve" leading and trailing white space goes (as Excel reads
 * it), and _xHHHH_ escapes become their characters (_x000D_ is a CR,
 * _x005F_ an underscore). In place; the text only shrinks.
 */
void xl_text_finish(struct xbuf *b, size_t from, bool preserve);

/*
 * The shared-strings table (the scheme is in sheet.h): strings in an
 * unlinked temp file, their offsets in memory, read back through windows.
 */
#define SST_NWIN 32
#define SST_WIN 16384
struct sst_win {
	uint64_t start, end, used;
	char *buf;
};
struct sst {
	int fd;
	uint32_t *off; /* n+1 offsets; the top bit of off[i] marks string i too long */
	uint32_t n, cap;
	uint64_t bytes; /* written to the file */
	char *wbuf;
	size_t wlen;
	struct xbuf si; /* the string being read */
	bool in_si, in_t, preserve;
	int rph; /* depth inside <rPh> (phonetic runs: not part of the text) */
	size_t run;
	struct sst_win win[SST_NWIN];
	uint64_t tick;
	char *big; /* strings longer than a window */
	size_t bigcap;
};

/* Reads the part into s->x->sst. 0 or an error. */
int sst_load(struct sheet *s, const char *part);
/* String i: 0 with *p and *n set (valid until the next sst_get), 1 if it is over
 * max_cell_bytes, or an error for a failed read (filled in). */
int sst_get(struct sheet *s, uint32_t i, const char **p, size_t *n);
void sst_free(struct sst *t);

struct xl_sheetinfo {
	char name[256];
	char rid[64];
	char target[XL_PATH_MAX];
	bool hidden;
	int kind; /* 0 no relationship seen, 1 worksheet, 2 chart or other */
};

struct xlsx {
	zip_t *zip;
	char wb_part[XL_PATH_MAX], styles_part[XL_PATH_MAX], sst_part[XL_PATH_MAX];
	bool date1904;
	bool in_sheets;
	bool wb_root, ws_root; /* the root element of the workbook, the worksheet seen */
	struct xl_sheetinfo *sheets;
	struct xl_sheetinfo **by_rid; /* the sheets sorted by relationship id */
	uint32_t nsheets;
	/* styles: the number format of each cellXfs entry, then its kind */
	uint32_t *xf_fmt;
	uint8_t *xf_kind;
	uint32_t nxf;
	struct xl_numfmt {
		uint32_t id;
		uint8_t kind;
	} * numfmt; /* sorted by id once read */
	uint32_t nnumfmt;
	bool in_cellxfs, in_numfmts;
	struct sst sst;
	bool has_sst;
	/* the worksheet being read */
	struct xl_part ws;
	bool ws_open, in_sd, in_row, in_c, in_is, cap, preserve;
	int rph;
	uint32_t row, prev_row; /* prev_row: the last row element's number */
	int64_t last_col;       /* in this row, -1 before the first cell */
	uint32_t col, style;
	char ctype; /* 'n', 's', 'S' (str), 'i' (inlineStr), 'b', 'e', 'd' */
	char cref[16];
	bool has_v, has_f, has_is;
	size_t run;
	struct xbuf val;
	/* Rows finished and not yet handed out, their cells in s->rb one row
	 * after another. Parsing a whole chunk before handing rows out is
	 * twice as fast as pausing expat at every row; the queue is bounded
	 * (XL_QUEUE_*: a chunk of references to long shared strings could
	 * otherwise expand a lot), past that the parser pauses. */
	struct xl_qrow {
		uint32_t num, base, ncols;
	} * q;
	uint32_t qn, qhead, qcap;
	uint32_t qcells; /* cells used by queued rows: the next row's base */
	size_t row_text; /* where the current row's text starts in s->rb */
	bool ws_done;
};
#define XL_QUEUE_ROWS 4096
#define XL_QUEUE_CELLS 65536
#define XL_QUEUE_BYTES (1u << 20)

#endif
