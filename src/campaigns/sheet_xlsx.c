/*
 * sheet_xlsx.c - .xlsx workbooks: the zip (libzip), its parts read as XML
 * streams (expat), and the worksheet handed out row by row.
 *
 * The sheet is found the way Office does: _rels/.rels names the workbook
 * part, workbook.xml lists the sheets in tab order with a relationship id
 * each, and the workbook's .rels maps the id to the worksheet part (and names
 * the styles and shared-strings parts). File names are never guessed.
 *
 * Every part is hostile: sheet_xlpart.c refuses any DOCTYPE, counts the
 * inflated bytes and caps expat's memory; here the counts of sheets, styles
 * and zip members are bounded, and every cell reference, row number and
 * value is checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "campaigns/xlsx_int.h"

/* ---- paths and relationships ---- */

/* Resolves a relationship target against the directory of the part that
 * owns the .rels ("xl/"), or from the root when it starts with '/'. */
static int xl_resolve(const char *dir, const char *target, char out[XL_PATH_MAX])
{
	char tmp[2 * XL_PATH_MAX];
	if (target[0] == '/')
		snprintf(tmp, sizeof tmp, "%s", target + 1);
	else
		snprintf(tmp, sizeof tmp, "%s%s", dir, target);
	size_t n = 0;
	out[0] = '\0';
	for (char *seg = tmp, *next; seg; seg = next) {
		next = strchr(seg, '/');
		if (next)
			*next++ = '\0';
		if (!*seg || strcmp(seg, ".") == 0)
			continue;
		if (strcmp(seg, "..") == 0) {
			if (n == 0)
				return -1;
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			out[n] = '\0';
			continue;
		}
		size_t k = strlen(seg);
		if (n + (n ? 1 : 0) + k + 1 > XL_PATH_MAX)
			return -1;
		if (n)
			out[n++] = '/';
		memcpy(out + n, seg, k + 1);
		n += k;
	}
	return n ? 0 : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void XMLCALL xl_root_rels_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct xlsx *x = pt->s->x;
	if (pt->halt || strcmp(xl_local(name), "Relationship") != 0)
		return;
	const char *type = xl_attr(attrs, "Type"), *target = xl_attr(attrs, "Target");
	if (type && target && ends_with(type, "/officeDocument") && !x->wb_part[0] &&
	    xl_resolve("", target, x->wb_part) != 0)
		x->wb_part[0] = '\0';
}

static void XMLCALL xl_ignore_end(void *ud, const XML_Char *name)
{
	(void)ud, (void)name;
}

/* ---- workbook.xml ---- */

static void XMLCALL xl_wb_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (!x->wb_root) {
		/* A Word or PowerPoint file has the same package, another root. */
		x->wb_root = true;
		if (strcmp(n, "workbook") != 0) {
			sheet_fail(
			    s, HR_EINVAL, SHEET_E_FORMAT, pt->name, 0, 0, 0,
			    "This file is an Office document but not an Excel workbook (its "
			    "main part %s is a \"%.40s\"): save the data from Excel as .xlsx.",
			    pt->name, n);
			xl_abort(pt);
		}
		return;
	}
	if (strcmp(n, "workbookPr") == 0) {
		const char *v = xl_attr(attrs, "date1904");
		x->date1904 = v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
	} else if (strcmp(n, "sheets") == 0) {
		x->in_sheets = true;
	} else if (strcmp(n, "sheet") == 0 && x->in_sheets) {
		const char *sn = xl_attr(attrs, "name"), *rid = xl_attr(attrs, "id");
		const char *state = xl_attr(attrs, "state");
		if (!sn || !rid || strlen(sn) >= sizeof x->sheets->name ||
		    strlen(rid) >= sizeof x->sheets->rid) {
			sheet_fail(
			    s, HR_EINVAL, SHEET_E_CONTENT, pt->name, 0, 0,
			    (int64_t)XML_GetCurrentByteIndex(pt->p),
			    "The workbook is damaged: a sheet in %s has no usable name or id. "
			    "Open it in Excel, save it again and upload the new copy.",
			    pt->name);
			xl_abort(pt);
			return;
		}
		if (x->nsheets == SHEET_MAX_SHEETS) {
			sheet_fail(
			    s, HR_ELIMIT, SHEET_E_CONTENT, pt->name, 0, 0, -1,
			    "The workbook has more than %u sheets: keep the one to send in a "
			    "file of its own.",
			    SHEET_MAX_SHEETS);
			xl_abort(pt);
			return;
		}
		if ((x->nsheets & (x->nsheets - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
			uint32_t cap = x->nsheets ? x->nsheets * 2 : 4;
			struct xl_sheetinfo *p = realloc(x->sheets, cap * sizeof *p);
			if (!p) {
				xl_nomem(s);
				xl_abort(pt);
				return;
			}
			x->sheets = p;
		}
		struct xl_sheetinfo *si = &x->sheets[x->nsheets++];
		memset(si, 0, sizeof *si);
		snprintf(si->name, sizeof si->name, "%s", sn);
		snprintf(si->rid, sizeof si->rid, "%s", rid);
		si->hidden = state && strcmp(state, "visible") != 0;
	}
}

static void XMLCALL xl_wb_end(void *ud, const XML_Char *name)
{
	struct xl_part *pt = ud;
	if (strcmp(xl_local(name), "sheets") == 0)
		pt->s->x->in_sheets = false;
}

static void XMLCALL xl_wb_rels_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct xlsx *x = pt->s->x;
	if (pt->halt || strcmp(xl_local(name), "Relationship") != 0)
		return;
	const char *id = xl_attr(attrs, "Id"), *type = xl_attr(attrs, "Type");
	const char *target = xl_attr(attrs, "Target"), *mode = xl_attr(attrs, "TargetMode");
	if (!id || !type || !target || (mode && strcmp(mode, "External") == 0))
		return;
	char dir[XL_PATH_MAX];
	snprintf(dir, sizeof dir, "%s", x->wb_part);
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[1] = '\0';
	else
		dir[0] = '\0';
	if (ends_with(type, "/styles")) {
		if (xl_resolve(dir, target, x->styles_part) != 0)
			x->styles_part[0] = '\0';
		return;
	}
	if (ends_with(type, "/sharedStrings")) {
		if (xl_resolve(dir, target, x->sst_part) != 0)
			x->sst_part[0] = '\0';
		return;
	}
	/* The sheets with this id (a binary search: a hostile rels part may
	 * list millions of relationships, the workbook thousands of sheets). */
	uint32_t lo = 0, hi = x->nsheets;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (strcmp(x->by_rid[mid]->rid, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < x->nsheets && strcmp(x->by_rid[lo]->rid, id) == 0; lo++) {
		struct xl_sheetinfo *si = x->by_rid[lo];
		si->kind = ends_with(type, "/worksheet") ? 1 : 2;
		if (xl_resolve(dir, target, si->target) != 0)
			si->target[0] = '\0';
	}
}

static int xl_cmp_rid(const void *a, const void *b)
{
	return strcmp((*(struct xl_sheetinfo *const *)a)->rid,
	              (*(struct xl_sheetinfo *const *)b)->rid);
}

static int xl_cmp_numfmt(const void *a, const void *b)
{
	uint32_t x = ((const struct xl_numfmt *)a)->id, y = ((const struct xl_numfmt *)b)->id;
	return x < y ? -1 : x > y;
}

/* ---- styles.xml: which cell styles show dates ---- */

static void XMLCALL xl_styles_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (strcmp(n, "numFmts") == 0) {
		x->in_numfmts = true;
	} else if (strcmp(n, "cellXfs") == 0) {
		x->in_cellxfs = true;
	} else if ((strcmp(n, "numFmt") == 0 && x->in_numfmts) ||
	           (strcmp(n, "xf") == 0 && x->in_cellxfs)) {
		bool is_fmt = n[0] == 'n';
		uint32_t count = is_fmt ? x->nnumfmt : x->nxf;
		if (count == SHEET_MAX_STYLES) {
			sheet_fail(s, HR_EINVAL, SHEET_E_CONTENT, pt->name, 0, 0, -1,
			           "The workbook has more than %u cell styles, more than Excel "
			           "allows: the file is damaged.",
			           SHEET_MAX_STYLES);
			xl_abort(pt);
			return;
		}
		const char *v = xl_attr(attrs, "numFmtId");
		uint32_t id = v ? (uint32_t)strtoul(v, NULL, 10) : 0;
		if ((count & (count - 1)) == 0) { /* grow at 0, 1, 2, 4, ... */
			uint32_t cap = count ? count * 2 : 16;
			void *p = is_fmt ? realloc(x->numfmt, cap * sizeof *x->numfmt)
			                 : realloc(x->xf_fmt, cap * sizeof *x->xf_fmt);
			if (!p) {
				xl_nomem(s);
				xl_abort(pt);
				return;
			}
			if (is_fmt)
				x->numfmt = p;
			else
				x->xf_fmt = p;
		}
		if (is_fmt) {
			const char *code = xl_attr(attrs, "formatCode");
			x->numfmt[x->nnumfmt].id = id;
			x->numfmt[x->nnumfmt].kind = (uint8_t)(code ? sheet_numfmt_kind(code) : 0);
			x->nnumfmt++;
		} else {
			x->xf_fmt[x->nxf++] = id;
		}
	}
}

static void XMLCALL xl_styles_end(void *ud, const XML_Char *name)
{
	struct xl_part *pt = ud;
	const char *n = xl_local(name);
	if (strcmp(n, "numFmts") == 0)
		pt->s->x->in_numfmts = false;
	else if (strcmp(n, "cellXfs") == 0)
		pt->s->x->in_cellxfs = false;
}

static int xl_load_styles(struct sheet *s)
{
	struct xlsx *x = s->x;
	if (!x->styles_part[0])
		return 0; /* no styles: no dates, every number is a number */
	int rc = xl_parse_part(s, x->styles_part, false, "the styles part", xl_styles_start,
	                       xl_styles_end, NULL, NULL);
	if (rc < 0)
		return rc;
	if (x->nxf) {
		x->xf_kind = malloc(x->nxf);
		if (!x->xf_kind)
			return xl_nomem(s);
	}
	if (x->nnumfmt)
		qsort(x->numfmt, x->nnumfmt, sizeof *x->numfmt, xl_cmp_numfmt);
	for (uint32_t i = 0; i < x->nxf; i++) {
		struct xl_numfmt key = {.id = x->xf_fmt[i]};
		const struct xl_numfmt *f =
		    x->nnumfmt ? bsearch(&key, x->numfmt, x->nnumfmt, sizeof key, xl_cmp_numfmt)
		               : NULL;
		/* A numFmt element overrides a built-in id. */
		x->xf_kind[i] =
		    (uint8_t)(f ? (enum sheet_numkind)f->kind : sheet_numfmt_builtin(key.id));
	}
	return 0;
}

/* ---- opening ---- */

static uint32_t le16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int xl_damaged_end(struct sheet *s)
{
	return sheet_fail(s, HR_EINVAL, SHEET_E_DAMAGED, NULL, 0, 0, -1,
	                  "The workbook is damaged or incomplete: the end of the file is missing, "
	                  "so the upload may have been cut short. Upload it again, or open it in "
	                  "Excel and save it again.");
}

/*
 * Checks what the file is before libzip reads it: an OLE2 file is an old
 * .xls or an encrypted workbook, anything without the zip signature is not a
 * workbook, a zip without its end record was cut short, and a zip with more
 * members than any workbook has is refused before libzip allocates an entry
 * for each.
 */
static int xl_check_zip(struct sheet *s, int fd, uint64_t size)
{
	unsigned char head[4] = {0};
	if (pread(fd, head, 4, 0) < 0)
		return sheet_fail(s, HR_EIO, SHEET_E_IO, NULL, 0, 0, -1,
		                  "The file could not be read (%s).", strerror(errno));
	if (memcmp(head, "\xD0\xCF\x11\xE0", 4) == 0)
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		    "This file is an old Excel 97-2003 workbook (.xls) or a "
		    "password-protected workbook: save it in Excel as .xlsx without a "
		    "password and upload it again.");
	if (memcmp(head, "PK\3\4", 4) != 0 && memcmp(head, "PK\5\6", 4) != 0)
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, 0,
		    "This file is not an Excel .xlsx workbook (it is not a zip "
		    "archive). If it is a CSV file, upload it with the .csv extension; "
		    "an old .xls workbook must first be saved as .xlsx.");
	/* The end-of-central-directory record: in the last 22 + 65535 bytes. */
	size_t tail = size < 22 + 65535 ? (size_t)size : 22 + 65535;
	unsigned char *t = malloc(tail ? tail : 1);
	if (!t)
		return xl_nomem(s);
	ssize_t got = pread(fd, t, tail, (off_t)(size - tail));
	int64_t eocd = -1;
	for (int64_t i = got - 22; got >= 22 && i >= 0; i--) {
		if (memcmp(t + i, "PK\5\6", 4) == 0) {
			eocd = i;
			break;
		}
	}
	if (eocd < 0) {
		free(t);
		return xl_damaged_end(s);
	}
	uint64_t members = le16(t + eocd + 10);
	if (members == 0xFFFF && eocd >= 20 && memcmp(t + eocd - 20, "PK\6\7", 4) == 0) {
		/* zip64: the count is in the zip64 end record the locator points to */
		unsigned char z[56];
		uint64_t zoff = le64(t + eocd - 20 + 8);
		if (zoff > size || pread(fd, z, sizeof z, (off_t)zoff) != (ssize_t)sizeof z ||
		    memcmp(z, "PK\6\6", 4) != 0) {
			free(t);
			return xl_damaged_end(s);
		}
		members = le64(z + 32);
	}
	free(t);
	if (members > SHEET_MAX_ZIP_MEMBERS) {
		char a[32];
		return sheet_fail(s, HR_ELIMIT, SHEET_E_ZIP_MEMBERS, NULL, 0, 0, -1,
		                  "The file holds %s parts; an Excel workbook has at most a few "
		                  "thousand, so it was refused.",
		                  sheet_fmt_count(members, a));
	}
	return 0;
}

/* Opens the zip and reads the workbook's sheet list and relationships. */
static int xl_open_workbook(struct sheet *s, const char *path)
{
	struct xlsx *x = calloc(1, sizeof *x);
	if (!x)
		return xl_nomem(s);
	s->x = x;
	x->sst.fd = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sheet_fail(s, HR_EIO, SHEET_E_IO, NULL, 0, 0, -1,
		                  "The file could not be opened (%s).", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return sheet_fail(s, HR_EIO, SHEET_E_IO, NULL, 0, 0, -1,
		                  "The file could not be read (%s).", strerror(errno));
	}
	if ((uint64_t)st.st_size > s->lim.max_file_bytes) {
		char a[32], b[32];
		close(fd);
		return sheet_fail(
		    s, HR_ELIMIT, SHEET_E_FILE_SIZE, NULL, 0, 0, -1,
		    "The file is %s, over the limit of %s: split it into smaller files.",
		    sheet_fmt_bytes((uint64_t)st.st_size, a),
		    sheet_fmt_bytes(s->lim.max_file_bytes, b));
	}
	int rc = xl_check_zip(s, fd, (uint64_t)st.st_size);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	int ze = 0;
	x->zip = zip_fdopen(fd, ZIP_RDONLY, &ze); /* owns fd from here on success */
	if (!x->zip) {
		close(fd);
		if (ze == ZIP_ER_MEMORY)
			return xl_nomem(s);
		if (ze == ZIP_ER_NOZIP || ze == ZIP_ER_INCONS || ze == ZIP_ER_EOF ||
		    ze == ZIP_ER_SEEK || ze == ZIP_ER_READ)
			return xl_damaged_end(s);
		zip_error_t e;
		zip_error_init_with_code(&e, ze);
		rc = sheet_fail(s, HR_EINVAL, SHEET_E_DAMAGED, NULL, 0, 0, -1,
		                "The workbook is damaged: it could not be opened as a zip archive "
		                "(%s). Open it in Excel, save it again and upload the new copy.",
		                zip_error_strerror(&e));
		zip_error_fini(&e);
		return rc;
	}

	rc = xl_parse_part(s, "_rels/.rels", false, "the package relationships", xl_root_rels_start,
	                   xl_ignore_end, NULL, NULL);
	if (rc < 0)
		return rc;
	if (!x->wb_part[0]) { /* no _rels/.rels, or it names no workbook: the usual place */
		/* An OpenDocument file starts with a "mimetype" member instead. */
		if (zip_name_locate(x->zip, "mimetype", 0) >= 0 &&
		    zip_name_locate(x->zip, "xl/workbook.xml", ZIP_FL_NOCASE) < 0)
			return sheet_fail(s, HR_EINVAL, SHEET_E_FORMAT, NULL, 0, 0, -1,
			                  "This file is an OpenDocument spreadsheet (.ods), not an "
			                  "Excel workbook: save it as .xlsx or as CSV UTF-8.");
		snprintf(x->wb_part, sizeof x->wb_part, "xl/workbook.xml");
	}
	rc = xl_parse_part(s, x->wb_part, true, "the workbook part", xl_wb_start, xl_wb_end, NULL,
	                   NULL);
	if (rc < 0)
		return rc;
	if (x->nsheets) {
		x->by_rid = malloc(x->nsheets * sizeof *x->by_rid);
		if (!x->by_rid)
			return xl_nomem(s);
		for (uint32_t i = 0; i < x->nsheets; i++)
			x->by_rid[i] = &x->sheets[i];
		qsort(x->by_rid, x->nsheets, sizeof *x->by_rid, xl_cmp_rid);
	}
	/* "xl/workbook.xml" -> "xl/_rels/workbook.xml.rels" */
	char rels[XL_PATH_MAX + 16];
	const char *base = strrchr(x->wb_part, '/');
	int dirlen = base ? (int)(base - x->wb_part + 1) : 0;
	snprintf(rels, sizeof rels, "%.*s_rels/%s.rels", dirlen, x->wb_part,
	         base ? base + 1 : x->wb_part);
	return xl_parse_part(s, rels, true, "the list of the workbook's parts", xl_wb_rels_start,
	                     xl_ignore_end, NULL, NULL);
}

/* The sheet to read: by name, else the first visible worksheet. */
static int xl_pick_sheet(struct sheet *s, const char *want, struct xl_sheetinfo **out)
{
	struct xlsx *x = s->x;
	struct xl_sheetinfo *pick = NULL;
	if (want) {
		for (uint32_t i = 0; i < x->nsheets && !pick; i++)
			if (strcmp(x->sheets[i].name, want) == 0)
				pick = &x->sheets[i];
		for (uint32_t i = 0; i < x->nsheets && !pick; i++)
			if (strcasecmp(x->sheets[i].name, want) == 0)
				pick = &x->sheets[i];
		if (!pick) {
			char list[300] = "";
			size_t n = 0;
			for (uint32_t i = 0; i < x->nsheets && n < sizeof list - 1; i++) {
				if (x->sheets[i].kind != 1)
					continue;
				int k = snprintf(list + n, sizeof list - n, "%s\"%s\"",
				                 n ? ", " : "", x->sheets[i].name);
				if (k < 0 || (size_t)k >= sizeof list - n) {
					snprintf(list + n, sizeof list - n, ", ...");
					break;
				}
				n += (size_t)k;
			}
			return sheet_fail(s, HR_ENOTFOUND, SHEET_E_NO_SHEET, x->wb_part, 0, 0, -1,
			                  "The workbook has no sheet named \"%s\". Its sheets are: "
			                  "%s.",
			                  want, n ? list : "(none)");
		}
		if (pick->kind == 2)
			return sheet_fail(s, HR_EINVAL, SHEET_E_NO_SHEET, x->wb_part, 0, 0, -1,
			                  "Sheet \"%s\" is a chart, not a table of rows: choose "
			                  "another sheet.",
			                  pick->name);
	} else {
		for (uint32_t i = 0; i < x->nsheets && !pick; i++)
			if (x->sheets[i].kind == 1 && !x->sheets[i].hidden)
				pick = &x->sheets[i];
		for (uint32_t i = 0; i < x->nsheets && !pick; i++)
			if (x->sheets[i].kind == 1)
				pick = &x->sheets[i];
		if (!pick) {
			for (uint32_t i = 0; i < x->nsheets && !pick; i++)
				if (x->sheets[i].kind == 0)
					pick = &x->sheets[i]; /* reported just below */
			if (!pick)
				return sheet_fail(
				    s, HR_EINVAL, SHEET_E_NO_SHEET, x->wb_part, 0, 0, -1,
				    "The workbook has no worksheet with rows to read.");
		}
	}
	if (pick->kind == 0 || !pick->target[0])
		return sheet_fail(
		    s, HR_EINVAL, SHEET_E_MISSING_PART, x->wb_part, 0, 0, -1,
		    "The workbook is damaged: sheet \"%s\" has no part listed for it. "
		    "Open it in Excel, save it again and upload the new copy.",
		    pick->name);
	*out = pick;
	return 0;
}

int xlsx_list(struct sheet *s, const char *path, int (*fn)(void *, const char *, bool), void *ud)
{
	int rc = xl_open_workbook(s, path);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < s->x->nsheets; i++) {
		struct xl_sheetinfo *si = &s->x->sheets[i];
		if (si->kind == 1 && (rc = fn(ud, si->name, si->hidden)) != 0)
			return rc;
	}
	return 0;
}

/* ---- the worksheet ---- */

static void xl_cell_fail(struct xl_part *pt, int hr, enum sheet_errc code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An error about the current cell: "Sheet "Data", cell C7: ..." */
static void xl_cell_fail(struct xl_part *pt, int hr, enum sheet_errc code, const char *fmt, ...)
{
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	char detail[400], cn[4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	sheet_fail(s, hr, code, pt->name, x->row, x->col + 1,
	           (int64_t)XML_GetCurrentByteIndex(pt->p), "Sheet \"%s\", cell %s%u: %s", s->name,
	           sheet_col_name(x->col, cn), x->row, detail);
	xl_abort(pt);
}

/*
 * A cell reference: 1 to 3 capital letters, then the row. Returns 0, -1 when
 * it is no reference, -2 when its column is past XFD.
 */
static int xl_parse_ref(const char *r, uint32_t *col, uint32_t *row)
{
	uint32_t c = 0;
	int letters = 0;
	for (; *r >= 'A' && *r <= 'Z'; r++, letters++) {
		if (letters == 4)
			return -2;
		c = c * 26 + (uint32_t)(*r - 'A' + 1);
	}
	uint32_t n = 0;
	int digits = 0;
	for (; *r >= '0' && *r <= '9'; r++, digits++) {
		if (digits == 8)
			return -1;
		n = n * 10 + (uint32_t)(*r - '0');
	}
	if (!letters || *r)
		return -1;
	if (c > SHEET_MAX_COL)
		return -2;
	if (digits && (n == 0 || n > SHEET_MAX_ROW))
		return -1;
	*col = c - 1;
	*row = n;
	return 0;
}

static void xl_row_start(struct xl_part *pt, const char **attrs)
{
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	const char *r = xl_attr(attrs, "r");
	uint32_t num = x->prev_row + 1;
	if (r) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(r, &end, 10);
		if (errno || *end || end == r || v == 0 || v > SHEET_MAX_ROW) {
			sheet_fail(
			    s, HR_EINVAL, SHEET_E_CELL_REF, pt->name, 0, 0,
			    (int64_t)XML_GetCurrentByteIndex(pt->p),
			    "Sheet \"%s\": row number \"%.20s\" is not one Excel allows (1 to "
			    "1,048,576): the file is damaged.",
			    s->name, r);
			xl_abort(pt);
			return;
		}
		num = (uint32_t)v;
	}
	if (num <= x->prev_row || num > SHEET_MAX_ROW) {
		sheet_fail(
		    s, HR_EINVAL, SHEET_E_CONTENT, pt->name, num, 0,
		    (int64_t)XML_GetCurrentByteIndex(pt->p),
		    num > SHEET_MAX_ROW
		        ? "Sheet \"%s\": there are rows past row %u, the last Excel allows: "
		          "the file is damaged."
		        : "Sheet \"%s\": row %u appears twice or out of order: the file is "
		          "damaged. Open it in Excel, save it again and upload the new copy.",
		    s->name, num > SHEET_MAX_ROW ? SHEET_MAX_ROW : num);
		xl_abort(pt);
		return;
	}
	x->row = x->prev_row = num;
	x->in_row = true;
	x->last_col = -1;
	s->rb.base = x->qcells;
	s->rb.ncols = 0;
	x->row_text = s->rb.len;
}

/* Queues the finished row; pauses the parser when the queue is full. */
static void xl_row_end(struct xl_part *pt)
{
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	x->in_row = false;
	if (!s->rb.ncols)
		return; /* wholly empty */
	if (x->qn == x->qcap) {
		uint32_t cap = x->qcap ? x->qcap * 2 : 64;
		struct xl_qrow *q = realloc(x->q, cap * sizeof *q);
		if (!q) {
			xl_nomem(s);
			xl_abort(pt);
			return;
		}
		x->q = q;
		x->qcap = cap;
	}
	x->q[x->qn++] = (struct xl_qrow){.num = x->row, .base = s->rb.base, .ncols = s->rb.ncols};
	x->qcells = s->rb.base + s->rb.ncols;
	if (x->qn >= XL_QUEUE_ROWS || x->qcells >= XL_QUEUE_CELLS || s->rb.len >= XL_QUEUE_BYTES) {
		pt->halt = true;
		XML_StopParser(pt->p, XML_TRUE);
	}
}

static void xl_cell_start(struct xl_part *pt, const char **attrs)
{
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	const char *r = NULL, *t = NULL, *st = NULL;
	for (const char **a = attrs; *a; a += 2) {
		const char *n = xl_local(a[0]);
		if (n[0] == 'r' && !n[1])
			r = a[1];
		else if (n[0] == 't' && !n[1])
			t = a[1];
		else if (n[0] == 's' && !n[1])
			st = a[1];
	}
	uint32_t col = (uint32_t)(x->last_col + 1), row = 0;
	if (r) {
		int rc = xl_parse_ref(r, &col, &row);
		if (rc < 0) {
			sheet_fail(s, HR_EINVAL, SHEET_E_CELL_REF, pt->name, x->row, 0,
			           (int64_t)XML_GetCurrentByteIndex(pt->p),
			           rc == -2
			               ? "Sheet \"%s\", row %u: cell reference \"%.20s\" is past "
			                 "column XFD, the last column Excel has: the file is "
			                 "damaged."
			               : "Sheet \"%s\", row %u: \"%.20s\" is not a cell reference: "
			                 "the file is damaged.",
			           s->name, x->row, r);
			xl_abort(pt);
			return;
		}
	} else if (col >= SHEET_MAX_COL) {
		sheet_fail(s, HR_EINVAL, SHEET_E_CELL_REF, pt->name, x->row, 0,
		           (int64_t)XML_GetCurrentByteIndex(pt->p),
		           "Sheet \"%s\", row %u has cells past column XFD, the last column Excel "
		           "has: the file is damaged.",
		           s->name, x->row);
		xl_abort(pt);
		return;
	}
	x->col = col;
	if ((int64_t)col <= x->last_col) {
		xl_cell_fail(pt, HR_EINVAL, SHEET_E_CONTENT,
		             "the cell appears twice or out of order: the file is damaged. Open it "
		             "in Excel, save it again and upload the new copy.");
		return;
	}
	x->last_col = col;
	x->ctype = 'n';
	if (t) {
		if (strcmp(t, "s") == 0)
			x->ctype = 's';
		else if (strcmp(t, "str") == 0)
			x->ctype = 'S';
		else if (strcmp(t, "inlineStr") == 0)
			x->ctype = 'i';
		else if (strcmp(t, "b") == 0)
			x->ctype = 'b';
		else if (strcmp(t, "e") == 0)
			x->ctype = 'e';
		else if (strcmp(t, "d") == 0)
			x->ctype = 'd';
		else if (strcmp(t, "n") != 0) {
			xl_cell_fail(pt, HR_EINVAL, SHEET_E_CONTENT,
			             "unknown cell type \"%.20s\": the file is damaged.", t);
			return;
		}
	}
	x->style = st ? (uint32_t)strtoul(st, NULL, 10) : 0;
	x->in_c = true;
	x->has_v = x->has_f = x->has_is = false;
	xbuf_clear(&x->val);
}

/* Puts the finished cell into the row. */
static void xl_cell_end(struct xl_part *pt)
{
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	struct xbuf *v = &x->val;
	x->in_c = false;
	char cn[4], a[32];
	if (v->over) {
		xl_cell_fail(pt, HR_ELIMIT, SHEET_E_CELL_SIZE,
		             "the cell holds more than %s of text, over the limit.",
		             sheet_fmt_bytes(s->lim.max_cell_bytes, a));
		return;
	}
	const char *text = v->p ? v->p : "";
	size_t len = v->len;
	enum sheet_type type;
	unsigned flags = 0;
	char num[SHEET_NUM_MAX];
	/* Values other than text may be pretty-printed: <v>\n  12\n</v>. */
	if (x->has_v && x->ctype != 'S' && x->ctype != 'i' && len &&
	    (xml_space(text[0]) || xml_space(text[len - 1]))) {
		xl_text_finish(v, 0, false);
		len = v->len;
	}
	/* An empty <v> is no value (openpyxl writes <f>..</f><v></v> for a
	 * formula it never computed), except for a text result: "" is "". */
	if (x->has_v && len == 0 && x->ctype != 'S' && x->ctype != 'i')
		x->has_v = false;
	if (!x->has_v && !x->has_is) {
		if (!x->has_f)
			return; /* styled but empty */
		type = SHEET_FORMULA_NO_VALUE;
		text = "";
		len = 0;
	} else {
		switch (x->ctype) {
		case 's': {
			uint64_t i = 0;
			size_t k = 0;
			while (k < len && k < 12 && text[k] >= '0' && text[k] <= '9')
				i = i * 10 + (uint64_t)(text[k++] - '0');
			if (len == 0 || k != len || i >= x->sst.n) {
				if (!x->has_sst)
					xl_cell_fail(
					    pt, HR_EINVAL, SHEET_E_CONTENT,
					    "the cell refers to shared string \"%.20s\" but "
					    "the workbook has no shared strings: the file is "
					    "damaged.",
					    text);
				else
					xl_cell_fail(
					    pt, HR_EINVAL, SHEET_E_CONTENT,
					    "the cell refers to shared string \"%.20s\" but "
					    "the workbook has only %u: the file is damaged.",
					    text, x->sst.n);
				return;
			}
			int rc = sst_get(s, (uint32_t)i, &text, &len);
			if (rc < 0) {
				xl_abort(pt);
				return;
			}
			if (rc == 1) {
				xl_cell_fail(pt, HR_ELIMIT, SHEET_E_CELL_SIZE,
				             "the cell holds more than %s of text, over the limit.",
				             sheet_fmt_bytes(s->lim.max_cell_bytes, a));
				return;
			}
			type = SHEET_STRING;
			break;
		}
		case 'i':
		case 'S':
			if (x->ctype == 'S')
				xl_text_finish(v, 0, true);
			text = v->p ? v->p : "";
			len = v->len;
			type = SHEET_STRING;
			break;
		case 'b':
			if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0) {
				text = "TRUE", len = 4;
			} else if (strcmp(text, "0") == 0 || strcmp(text, "false") == 0) {
				text = "FALSE", len = 5;
			} else {
				xl_cell_fail(pt, HR_EINVAL, SHEET_E_CONTENT,
				             "\"%.20s\" is not a TRUE/FALSE value: the file is "
				             "damaged.",
				             text);
				return;
			}
			type = SHEET_BOOL;
			break;
		case 'e':
			type = SHEET_ERROR;
			break;
		case 'd':
			type = SHEET_DATE;
			break;
		default: {
			double d = 0;
			int n = sheet_fmt_number(text, len, num, &flags, &d);
			if (n < 0) {
				xl_cell_fail(pt, HR_EINVAL, SHEET_E_CONTENT,
				             "\"%.30s\" is stored as a number but is not one: the "
				             "file is damaged.",
				             text);
				return;
			}
			type = SHEET_NUMBER;
			text = num;
			len = (size_t)n;
			enum sheet_numkind k = x->style < x->nxf
			                           ? (enum sheet_numkind)x->xf_kind[x->style]
			                           : SHEET_NK_NUMBER;
			if (k != SHEET_NK_NUMBER) {
				int m = sheet_fmt_serial(d, k, x->date1904, num);
				if (m >= 0) { /* else no date: stays the number */
					type = SHEET_DATE;
					len = (size_t)m;
					flags = 0;
				}
			}
			break;
		}
		}
	}
	if (len > s->lim.max_cell_bytes) {
		xl_cell_fail(pt, HR_ELIMIT, SHEET_E_CELL_SIZE,
		             "the cell holds %zu bytes of text, over the limit of %s.", len,
		             sheet_fmt_bytes(s->lim.max_cell_bytes, a));
		return;
	}
	if (len == 0 && type == SHEET_STRING)
		return;
	if (x->col >= s->lim.max_cols) {
		sheet_fail(s, HR_ELIMIT, SHEET_E_COLS, pt->name, x->row, x->col + 1,
		           (int64_t)XML_GetCurrentByteIndex(pt->p),
		           "Sheet \"%s\", row %u has a value in column %s, past the limit of %u "
		           "columns.",
		           s->name, x->row, sheet_col_name(x->col, cn), s->lim.max_cols);
		xl_abort(pt);
		return;
	}
	if (rowbuf_begin(&s->rb, x->col) < 0 || rowbuf_put(&s->rb, text, len) < 0 ||
	    rowbuf_end(&s->rb, type, flags) < 0) {
		xl_nomem(s);
		xl_abort(pt);
	}
}

static void XMLCALL xl_ws_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct xl_part *pt = ud;
	struct xlsx *x = pt->s->x;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (x->in_c) {
		if (n[0] == 'v' && !n[1]) {
			x->has_v = true;
			x->cap = true;
			xbuf_clear(&x->val); /* only the last <v> counts */
		} else if (n[0] == 'f' && !n[1]) {
			x->has_f = true;
		} else if (strcmp(n, "is") == 0) {
			x->has_is = true;
			x->in_is = true;
			x->rph = 0;
			xbuf_clear(&x->val);
		} else if (x->in_is && strcmp(n, "rPh") == 0) {
			x->rph++;
		} else if (x->in_is && n[0] == 't' && !n[1] && !x->rph) {
			const char *sp = xl_attr(attrs, "space");
			x->preserve = sp && strcmp(sp, "preserve") == 0;
			x->cap = true;
			x->run = x->val.len;
		}
		return;
	}
	if (x->in_row) {
		if (n[0] == 'c' && !n[1])
			xl_cell_start(pt, attrs);
		return;
	}
	if (x->in_sd) {
		if (strcmp(n, "row") == 0)
			xl_row_start(pt, attrs);
		return;
	}
	if (!x->ws_root) {
		x->ws_root = true;
		if (strcmp(n, "worksheet") != 0) { /* a chartsheet or a dialogsheet */
			sheet_fail(pt->s, HR_EINVAL, SHEET_E_NO_SHEET, pt->name, 0, 0, 0,
			           "Sheet \"%s\" is not a table of rows (its part %s is a "
			           "\"%.40s\"): choose another sheet.",
			           pt->s->name, pt->name, n);
			xl_abort(pt);
		}
		return;
	}
	if (strcmp(n, "sheetData") == 0)
		x->in_sd = true;
}

static void XMLCALL xl_ws_end(void *ud, const XML_Char *name)
{
	struct xl_part *pt = ud;
	struct sheet *s = pt->s;
	struct xlsx *x = s->x;
	if (pt->halt)
		return;
	const char *n = xl_local(name);
	if (x->in_c) {
		if (n[0] == 'v' && !n[1]) {
			x->cap = false;
		} else if (x->in_is && n[0] == 't' && !n[1] && !x->rph && x->cap) {
			x->cap = false;
			xl_text_finish(&x->val, x->run, x->preserve);
		} else if (x->in_is && strcmp(n, "rPh") == 0) {
			x->rph--;
		} else if (strcmp(n, "is") == 0) {
			x->in_is = false;
		} else if (n[0] == 'c' && !n[1]) {
			x->cap = false;
			xl_cell_end(pt);
		}
		return;
	}
	if (x->in_row) {
		if (strcmp(n, "row") == 0)
			xl_row_end(pt);
		return;
	}
	if (x->in_sd && strcmp(n, "sheetData") == 0) {
		/* Nothing after the rows matters (merged ranges, print setup). */
		x->in_sd = false;
		pt->finished = true;
		xl_abort(pt);
	}
}

static void XMLCALL xl_ws_text(void *ud, const XML_Char *p, int n)
{
	struct xl_part *pt = ud;
	struct xlsx *x = pt->s->x;
	if (!x->cap || pt->halt)
		return;
	if (xbuf_put(&x->val, p, (size_t)n) < 0) {
		xl_nomem(pt->s);
		xl_abort(pt);
	}
}

int xlsx_open(struct sheet *s, const char *path, const char *want)
{
	int rc = xl_open_workbook(s, path);
	if (rc < 0)
		return rc;
	struct xlsx *x = s->x;
	struct xl_sheetinfo *si = NULL;
	if ((rc = xl_pick_sheet(s, want, &si)) < 0)
		return rc;
	snprintf(s->name, sizeof s->name, "%s", si->name);
	snprintf(s->part, sizeof s->part, "%s", si->target);
	if ((rc = xl_load_styles(s)) < 0)
		return rc;
	if (x->sst_part[0]) {
		if ((rc = sst_load(s, x->sst_part)) < 0)
			return rc;
	}
	/* Escapes and white space only shrink a text, and at most 7 to 1: a
	 * cell whose raw text is past 7 times the limit is over it for sure. */
	x->val.max = (size_t)s->lim.max_cell_bytes * 7 + 64;
	char what[300];
	snprintf(what, sizeof what, "sheet \"%s\"", si->name);
	x->ws_open = true; /* xl_part_close is safe from here on */
	rc = xl_part_open(s, &x->ws, si->target, true, what, xl_ws_start, xl_ws_end, xl_ws_text,
	                  NULL);
	return rc < 0 ? rc : 0;
}

/* Empties the queue once every row in it was handed out. A chunk usually
 * ends inside a row: that row's cells and text move to the front. */
static void xl_queue_reset(struct sheet *s)
{
	struct xlsx *x = s->x;
	struct rowbuf *rb = &s->rb;
	x->qhead = x->qn = x->qcells = 0;
	if (!x->in_row) {
		rowbuf_reset(rb);
		return;
	}
	size_t from = x->row_text;
	if (from) {
		memmove(rb->text, rb->text + from, rb->len - from);
		rb->len -= from;
	}
	for (uint32_t i = 0; i < rb->ncols; i++) {
		rb->cells[i] = rb->cells[rb->base + i];
		rb->off[i] = rb->off[rb->base + i] - from;
	}
	rb->base = 0;
	x->row_text = 0;
}

/* Rows come from the queue; when it is empty, chunks are parsed until it
 * is not. An error is reported once the rows before it are handed out. */
int xlsx_next(struct sheet *s, struct sheet_row *row)
{
	struct xlsx *x = s->x;
	if (x->qhead == x->qn) {
		xl_queue_reset(s);
		while (x->qn == 0) {
			if (s->failed)
				return s->failed;
			if (x->ws_done)
				return 0;
			int rc = xl_step(&x->ws);
			if (rc < 0 && x->qn == 0)
				return rc;
			if (rc == 0)
				x->ws_done = true;
		}
	}
	struct xl_qrow *r = &x->q[x->qhead++];
	rowbuf_finish(&s->rb, row, r->num, r->base, r->ncols);
	return 1;
}

void xlsx_close(struct sheet *s)
{
	struct xlsx *x = s->x;
	if (!x)
		return;
	if (x->ws_open)
		xl_part_close(&x->ws);
	if (x->zip)
		zip_discard(x->zip);
	sst_free(&x->sst);
	free(x->sheets);
	free(x->by_rid);
	free(x->xf_fmt);
	free(x->xf_kind);
	free(x->numfmt);
	free(x->val.p);
	free(x->q);
	free(x);
	s->x = NULL;
}
