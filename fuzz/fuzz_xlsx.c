/*
 * fuzz_xlsx.c - the campaign .xlsx reader (src/campaigns/sheet_xlsx.c and
 * its parts: shared strings, styles and number formats, workbook
 * relationships; libzip + expat underneath). Built by fuzz/CMakeLists.txt
 * (-DHERALD_FUZZ=ON); the CSV reader has its own target (fuzz_csv.c).
 *
 * The first input byte picks what the rest is: a worksheet, a
 * shared-strings part, a styles part or a workbook part (each put in an
 * otherwise valid workbook, stored uncompressed so the fuzzer's bytes reach
 * the XML handlers), or a whole zip file. Every row read is checked against
 * the promises of sheet.h; any error must come with a message. The zip is a
 * memfd and the shared strings' spill file is unlinked (O_TMPFILE):
 * nothing is left on disk.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "campaigns/sheet.h"

struct member {
	const char *name;
	const uint8_t *data;
	size_t len;
};

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
	}
	return ~c;
}

static void put16(FILE *f, unsigned v)
{
	fputc((int)(v & 0xFF), f);
	fputc((int)(v >> 8 & 0xFF), f);
}

static void put32(FILE *f, uint32_t v)
{
	put16(f, v & 0xFFFF);
	put16(f, v >> 16);
}

/* A zip of stored members. */
static void write_zip(FILE *f, const struct member *m, int n)
{
	long off[8];
	for (int i = 0; i < n; i++) {
		off[i] = ftell(f);
		uint32_t crc = crc32_of(m[i].data, m[i].len);
		put32(f, 0x04034b50), put16(f, 10), put16(f, 0), put16(f, 0), put16(f, 0);
		put16(f, 0), put32(f, crc), put32(f, (uint32_t)m[i].len),
		    put32(f, (uint32_t)m[i].len);
		put16(f, (unsigned)strlen(m[i].name)), put16(f, 0);
		fputs(m[i].name, f);
		fwrite(m[i].data, 1, m[i].len, f);
	}
	long cd = ftell(f);
	for (int i = 0; i < n; i++) {
		uint32_t crc = crc32_of(m[i].data, m[i].len);
		put32(f, 0x02014b50), put16(f, 20), put16(f, 10), put16(f, 0), put16(f, 0);
		put16(f, 0), put16(f, 0), put32(f, crc), put32(f, (uint32_t)m[i].len);
		put32(f, (uint32_t)m[i].len), put16(f, (unsigned)strlen(m[i].name)), put16(f, 0);
		put16(f, 0), put16(f, 0), put16(f, 0), put32(f, 0), put32(f, (uint32_t)off[i]);
		fputs(m[i].name, f);
	}
	long end = ftell(f);
	put32(f, 0x06054b50), put16(f, 0), put16(f, 0), put16(f, (unsigned)n),
	    put16(f, (unsigned)n);
	put32(f, (uint32_t)(end - cd)), put32(f, (uint32_t)cd), put16(f, 0);
}

#define S(x) (const uint8_t *)(x), sizeof(x) - 1
static const char MAIN[] = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
static const char WB[] =
    "<workbook xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">"
    "<workbookPr date1904=\"0\"/><sheets><sheet name=\"S\" r:id=\"a\"/></sheets></workbook>";
static const char RELS[] =
    "<Relationships><Relationship Id=\"a\" Type=\"x/worksheet\" Target=\"ws.xml\"/>"
    "<Relationship Id=\"b\" Type=\"x/sharedStrings\" Target=\"sst.xml\"/>"
    "<Relationship Id=\"c\" Type=\"x/styles\" Target=\"st.xml\"/></Relationships>";
static const char WS[] =
    "<worksheet><sheetData><row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c><c r=\"B1\" s=\"1\">"
    "<v>45356.5</v></c><c s=\"2\"><v>60</v></c><c t=\"s\"><v>3</v></c></row><row><c t=\"s\">"
    "<v>1</v></c><c s=\"3\"><v>0.75</v></c><c t=\"s\"><v>2</v></c></row></sheetData></worksheet>";
static const char SST[] = "<sst><si><t>a</t></si><si><r><t>b</t></r><r><t xml:space=\"preserve\">"
                          " c</t></r></si><si><t>_x000D_</t></si><si><t/></si></sst>";
static const char ST[] = "<styleSheet><numFmts><numFmt numFmtId=\"164\" formatCode=\"yyyy-mm-dd\"/>"
                         "</numFmts><cellXfs><xf numFmtId=\"0\"/><xf numFmtId=\"164\"/><xf "
                         "numFmtId=\"14\"/><xf numFmtId=\"46\"/></cellXfs></styleSheet>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 5 + 1; /* 1..5: mode 0 (csv) is fuzz_csv.c's */
	data++, size--;
	int fd = memfd_create("sheet", 0);
	if (fd < 0)
		return 0;
	FILE *f = fdopen(dup(fd), "wb");
	if (!f) {
		close(fd);
		return 0;
	}
	struct member m[5] = {
	    {"xl/workbook.xml", S(WB)}, {"xl/_rels/workbook.xml.rels", S(RELS)},
	    {"xl/ws.xml", S(WS)},       {"xl/sst.xml", S(SST)},
	    {"xl/st.xml", S(ST)},
	};
	(void)MAIN;
	if (mode == 5) {
		fwrite(data, 1, size, f);
	} else {
		int which = mode == 1 ? 2 : mode == 2 ? 3 : mode == 3 ? 4 : 0;
		m[which].data = data;
		m[which].len = size;
		write_zip(f, m, 5);
	}
	fclose(f);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct sheet_opts o = {
	    .format = SHEET_FMT_XLSX,
	    .limits = {.max_rows = 10000,
	               .max_cols = 64,
	               .max_cell_bytes = 4096,
	               .max_member_bytes = 4 << 20,
	               .max_sst_bytes = 1 << 20},
	};
	struct sheet *s;
	struct sheet_err err;
	int rc = sheet_open(&s, path, &o, &err);
	if (rc == 0) {
		struct sheet_row row;
		uint32_t last = 0;
		while ((rc = sheet_next(s, &row, &err)) == 1) {
			if (row.num <= last || row.ncols == 0 ||
			    row.cells[row.ncols - 1].type == SHEET_EMPTY)
				abort();
			last = row.num;
			for (uint32_t i = 0; i < row.ncols; i++) {
				const struct sheet_cell *c = &row.cells[i];
				if (c->text[c->len] != '\0' || strlen(c->text) != c->len ||
				    c->len > 4096)
					abort();
			}
		}
		sheet_close(s);
	}
	if (rc < 0 && err.msg[0] == '\0')
		abort();
	close(fd);
	return 0;
}
