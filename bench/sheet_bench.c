/*
 * sheet_bench.c - rows per second through the spreadsheet readers.
 * Usage: sheet_bench [--dump] [--sheet NAME] FILE... (make big ones with
 * tests/fixtures/sheets/make_big.py). Prints rows, cells, seconds, rows/s
 * and the process's peak RSS for each file; --dump prints every row too
 * (row number, then type:text per cell), for looking at a fixture.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "campaigns/sheet.h"

/* User + system CPU seconds so far: the machine is shared, so wall time
 * alone says little. */
static double cpu_secs(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long peak_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	static const char *types[] = {"empty", "str", "num", "bool", "date", "err", "fnv"};
	bool dump = false;
	struct sheet_opts o = {0};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--dump") == 0)
			dump = true;
		else if (strcmp(argv[i], "--sheet") == 0 && i + 1 < argc)
			o.sheet = argv[++i];
		else
			break;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: %s [--dump] [--sheet NAME] FILE...\n", argv[0]);
		return 2;
	}
	for (; i < argc; i++) {
		int64_t t0 = hr_mono_us();
		double c0 = cpu_secs();
		struct sheet *s;
		struct sheet_err err;
		if (sheet_open(&s, argv[i], &o, &err) != 0) {
			fprintf(stderr, "%s: %s\n", argv[i], err.msg);
			return 1;
		}
		int64_t t1 = hr_mono_us();
		struct sheet_row row;
		uint64_t rows = 0, cells = 0, bytes = 0;
		int rc;
		while ((rc = sheet_next(s, &row, &err)) == 1) {
			rows++;
			cells += row.ncols;
			if (dump) {
				printf("%u:", row.num);
				for (uint32_t c = 0; c < row.ncols; c++)
					printf(" %s%s:[%s]", types[row.cells[c].type],
					       row.cells[c].flags & SHEET_LOSSY_NUMBER ? "!" : "",
					       row.cells[c].text);
				printf("\n");
			}
			for (uint32_t c = 0; c < row.ncols; c++)
				bytes += row.cells[c].len;
		}
		int64_t t2 = hr_mono_us();
		sheet_close(s);
		if (rc < 0) {
			fprintf(stderr, "%s: %s [code %d part %s row %u col %s offset %lld]\n",
			        argv[i], err.msg, err.code, err.part, err.row, err.col_name,
			        (long long)err.offset);
			return 1;
		}
		double secs = (double)(t2 - t0) / 1e6, cpu = cpu_secs() - c0;
		printf("%s: %llu rows, %llu cells, %llu text bytes; open %.3f s, total %.3f s "
		       "wall, %.3f s CPU, %.0f rows/s (by CPU time); peak RSS %ld kB\n",
		       argv[i], (unsigned long long)rows, (unsigned long long)cells,
		       (unsigned long long)bytes, (double)(t1 - t0) / 1e6, secs, cpu,
		       (double)rows / cpu, peak_kb());
	}
	return 0;
}
