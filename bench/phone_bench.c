/*
 * phone_bench.c - phone numbers normalised per second through
 * hr_phone_normalize(), as a bulk upload validates its rows.
 *
 * The rows cycle through a fixed mix of what a real upload holds: national
 * and international numbers of several countries with and without
 * punctuation, digits without '+' (the spreadsheet rule's second parse),
 * and refused rows (too short, letters, a non-number). The library is
 * loaded (hr_phone_init) before the clock starts. Each phase checks that
 * every row got the answer it got the first time, so a fast wrong answer
 * cannot pass as a figure.
 *
 * usage: phone_bench [--rows N] [--threads T]
 * Prints one line per phase (1 thread, then T threads splitting N rows):
 *   phone_bench threads=T rows=N seconds=S rows_per_s=X cpu_us_per_row=C valid=V
 * cpu_us_per_row is the process's CPU time per row: on a machine shared with
 * other work it says what a row costs when rows_per_s (wall clock) cannot.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/phone.h"
#include "herald.h"

struct row {
	const char *in, *region;
};

static const struct row rows[] = {
    {"07400 123456", "GB"},     {"+44 7400 123456", "GB"},
    {"447400123456", "GB"},     {"020 7946 0000", "GB"},
    {"(201) 555-0123", "US"},   {"+1 201 555 0123", NULL},
    {"12015550123", "GB"},      {"98765 43210", "IN"},
    {"+91 98765 43210", "IN"},  {"0151 23456789", "DE"},
    {"4915123456789", "GB"},    {"(11) 98765-4321", "BR"},
    {"0803 123 4567", "NG"},    {"0044 7400 123456", NULL},
    {"06 12 34 56 78", "FR"},   {"0412 345 678", "AU"},
    {"07400 12345", "GB"},      {"call me", "GB"},
    {"+999 123 456 789", NULL}, {"12", "US"},
    {"07400 123456 x12", "GB"}, {"+86 138 1234 5678", "CN"},
    {"+61 412 345 678", NULL},  {"5062345678", "US"},
};
#define NROWS (sizeof rows / sizeof rows[0])

static int expect_rc[NROWS];
static char expect_e164[NROWS][HR_PHONE_E164_SIZE];
static long rows_per_thread;

struct job {
	long offset, valid, wrong;
};

static void *run(void *arg)
{
	struct job *j = arg;
	char out[HR_PHONE_E164_SIZE];
	struct hr_phone_result res;
	for (long i = 0; i < rows_per_thread; i++) {
		size_t k = (size_t)(j->offset + i) % NROWS;
		int rc = hr_phone_normalize(rows[k].in, strlen(rows[k].in), rows[k].region, out,
		                            sizeof out, &res);
		if (rc == 0)
			j->valid++;
		if (rc != expect_rc[k] || strcmp(out, expect_e164[k]) != 0)
			j->wrong++;
	}
	return NULL;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int phase(int threads, long total)
{
	pthread_t tid[64];
	struct job jobs[64];
	rows_per_thread = total / threads;
	int64_t t0 = hr_mono_us();
	double c0 = cpu_s();
	for (int t = 0; t < threads; t++) {
		jobs[t] = (struct job){.offset = t * 7};
		if (pthread_create(&tid[t], NULL, run, &jobs[t]) != 0) {
			fprintf(stderr, "phone_bench: pthread_create failed\n");
			return 1;
		}
	}
	long valid = 0, wrong = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(tid[t], NULL);
		valid += jobs[t].valid;
		wrong += jobs[t].wrong;
	}
	double secs = (double)(hr_mono_us() - t0) / 1e6;
	double cpu = cpu_s() - c0;
	long done = rows_per_thread * threads;
	printf("phone_bench threads=%d rows=%ld seconds=%.2f rows_per_s=%.0f cpu_us_per_row=%.2f "
	       "valid=%ld\n",
	       threads, done, secs, (double)done / secs, cpu * 1e6 / (double)done, valid);
	if (wrong) {
		fprintf(stderr, "phone_bench: %ld rows changed their answer\n", wrong);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long total = 1000000;
	int threads = 2;
	static const struct option lo[] = {{"rows", required_argument, NULL, 'r'},
	                                   {"threads", required_argument, NULL, 't'},
	                                   {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'r')
			total = atol(optarg);
		else if (c == 't')
			threads = atoi(optarg);
		else
			return 2;
	}
	if (total < 1 || threads < 1 || threads > 64) {
		fprintf(stderr, "usage: phone_bench [--rows N>0] [--threads 1..64]\n");
		return 2;
	}
	if (hr_phone_init() != 0) {
		fprintf(stderr, "phone_bench: hr_phone_init failed\n");
		return 1;
	}
	for (size_t k = 0; k < NROWS; k++)
		expect_rc[k] = hr_phone_normalize(rows[k].in, strlen(rows[k].in), rows[k].region,
		                                  expect_e164[k], HR_PHONE_E164_SIZE, NULL);
	if (phase(1, total) != 0)
		return 1;
	if (threads > 1 && phase(threads, total) != 0)
		return 1;
	return 0;
}
