/*
 * test_campaign_cli.c - the real `herald batch` binary (HERALD_BIN) against
 * real `herald serve` and `herald sim` processes: a small CSV uploaded with
 * --watch is followed to completed (exit 0, the final status line), with
 * stdout and stderr not a terminal so neither carries an escape code;
 * `batch status --json` shows the same numbers as GET /v1/batches/{id};
 * `batch report` lists the invalid row; `batch cancel` of a scheduled batch
 * prints how many messages it stopped, and a --watch of that batch exits 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "herald.h"

static struct world W;
static char csv[300];

static int setup(void **state)
{
	(void)state;
	world_init(&W, NULL, NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	snprintf(csv, sizeof csv, "%s/people.csv", W.dir);
	FILE *f = fopen(csv, "w");
	assert_non_null(f);
	/* Row 3 (the file's own numbering, header is row 1) is invalid. */
	fputs("phone,who\n+447400300001,Ann\nnot a number,Bo\n+447400300002,Cy\n", f);
	assert_int_equal(fclose(f), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

struct run {
	int rc;
	char out[16384];
	char err[8192];
};

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
}

/* Runs `herald ARGS` (a shell fragment) with stdout and stderr in files:
 * neither is a terminal. */
static void run(struct run *r, const char *args)
{
	char cmd[2048], po[300], pe[300];
	snprintf(po, sizeof po, "%s/cli.out", W.dir);
	snprintf(pe, sizeof pe, "%s/cli.err", W.dir);
	snprintf(cmd, sizeof cmd, "HERALD_URL=%s HERALD_API_KEY=%s %s %s >%s 2>%s </dev/null",
	         W.api, W.key, getenv("HERALD_BIN"), args, po, pe);
	int st = system(cmd);
	assert_true(st != -1 && WIFEXITED(st));
	r->rc = WEXITSTATUS(st);
	slurp(po, r->out, sizeof r->out);
	slurp(pe, r->err, sizeof r->err);
}

#define assert_contains(hay, needle)                                                           \
	do {                                                                                   \
		if (!strstr((hay), (needle)))                                                  \
			fail_msg("'%s' not in:\n%s", (needle), (hay));                         \
	} while (0)

/* The id from the upload's first line: `batch ID "NAME" STATUS`. */
static void id_of(const char *out, char id[64])
{
	assert_int_equal(sscanf(out, "batch %63s ", id), 1);
}

static void test_upload_watch_status_report(void **state)
{
	(void)state;
	struct run r;
	char args[1024];
	snprintf(args, sizeof args,
	         "batch upload %s --name 'cli spring' --channel whatsapp --text 'Hi {{1}}' "
	         "--params who --start true --watch",
	         csv);
	run(&r, args);
	if (r.rc != 0)
		fail_msg("exit %d\nstdout:\n%s\nstderr:\n%s", r.rc, r.out, r.err);
	/* Not a terminal: plain lines only, in both streams. */
	assert_null(strchr(r.out, '\033'));
	assert_null(strchr(r.err, '\033'));
	assert_null(strchr(r.err, '\r'));
	char id[64];
	id_of(r.out, id);
	assert_contains(r.out, "\"cli spring\" processing\n");
	assert_contains(r.out, "rows        3 total, 2 valid, 1 invalid, 0 duplicates\n");
	assert_contains(r.out, "  row 3, column phone: ");
	assert_contains(r.err, "the server is checking the rows\n");
	/* The last line is the final status. */
	char want[256];
	snprintf(want, sizeof want, "batch %s completed: 2 of 2 settled (", id);
	const char *last = strstr(r.out, want);
	if (!last)
		fail_msg("no final line '%s' in:\n%s", want, r.out);
	assert_non_null(strchr(last, '\n'));
	assert_int_equal(strchr(last, '\n')[1], '\0');

	/* status --json: the numbers of GET /v1/batches/{id}. */
	snprintf(args, sizeof args, "batch status %s --json", id);
	run(&r, args);
	assert_int_equal(r.rc, 0);
	json_t *cli = json_loads(r.out, 0, NULL);
	assert_non_null(cli);
	json_t *api = world_batch(&W, id);
	assert_string_equal(json_string_value(json_object_get(cli, "status")), "completed");
	static const char *const objs[] = {"rows", "messages"};
	for (size_t i = 0; i < 2; i++)
		assert_true(json_equal(json_object_get(cli, objs[i]), json_object_get(api, objs[i])));
	static const char *const prog[] = {"made", "settled"};
	for (size_t i = 0; i < 2; i++)
		assert_int_equal(
		    json_integer_value(json_object_get(json_object_get(cli, "progress"), prog[i])),
		    json_integer_value(json_object_get(json_object_get(api, "progress"), prog[i])));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(cli, "progress"),
	                                                    "settled")),
	                 2);
	assert_string_equal(json_string_value(json_object_get(cli, "id")), id);
	json_decref(cli);
	json_decref(api);

	/* The readable summary. */
	snprintf(args, sizeof args, "batch status %s", id);
	run(&r, args);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "status      completed\n");
	assert_contains(r.out, "rows        3 total, 2 valid, 1 invalid, 0 duplicates\n");
	assert_null(strchr(r.out, '\033'));

	/* report: the invalid row, every page. */
	snprintf(args, sizeof args, "batch report %s", id);
	run(&r, args);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "       3  phone");
	assert_contains(r.out, "\n1 invalid row\n");
	snprintf(args, sizeof args, "batch report %s --csv", id);
	run(&r, args);
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, "row,column,recipient,reason\r\n3,\"phone\",");

	/* list finds it by name. */
	run(&r, "batch list --name 'cli spring'");
	assert_int_equal(r.rc, 0);
	assert_contains(r.out, id);
	assert_contains(r.out, "\n1 batch\n");
}

/* Scheduled for tomorrow: the cancel prints how many it stopped (both valid
 * rows), and a watch of the batch ends with exit 1 and the final line. */
static void test_cancel_scheduled(void **state)
{
	(void)state;
	char when[40];
	hr_time_format(hr_now_us() + 24LL * 3600 * 1000000, when);
	struct run r;
	char args[1024];
	snprintf(args, sizeof args,
	         "batch upload %s --name 'cli later' --channel whatsapp --text 'Hi {{1}}' "
	         "--params who --start true --schedule-at %s",
	         csv, when);
	run(&r, args);
	if (r.rc != 0)
		fail_msg("exit %d\nstdout:\n%s\nstderr:\n%s", r.rc, r.out, r.err);
	char id[64];
	id_of(r.out, id);
	assert_contains(r.out, "processing\n");

	/* A watch, running while the batch is cancelled. */
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
	         "HERALD_URL=%s HERALD_API_KEY=%s %s batch upload %s --name 'cli watched' "
	         "--channel whatsapp --text 'Hi {{1}}' --params who --start true "
	         "--schedule-at %s --watch 2>&1",
	         W.api, W.key, getenv("HERALD_BIN"), csv, when);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char line[512], wid[64] = "";
	while (!wid[0] && fgets(line, sizeof line, p))
		if (!strncmp(line, "batch ", 6))
			id_of(line, wid);
	assert_true(wid[0]);

	snprintf(args, sizeof args, "batch cancel %s", id);
	run(&r, args);
	if (r.rc != 0)
		fail_msg("cancel %s: exit %d: %s%s", id, r.rc, r.out, r.err);
	snprintf(line, sizeof line, "batch %s cancelled: 2 messages stopped\n", id);
	assert_string_equal(r.out, line);
	snprintf(args, sizeof args, "batch cancel %s", wid);
	run(&r, args);
	if (r.rc != 0)
		fail_msg("cancel %s: exit %d: %s%s", wid, r.rc, r.out, r.err);

	char rest[8192] = "";
	size_t n = fread(rest, 1, sizeof rest - 1, p);
	rest[n] = '\0';
	int st = pclose(p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	snprintf(line, sizeof line, "batch %s cancelled: ", wid);
	assert_contains(rest, line);
	assert_null(strchr(rest, '\033'));

	/* Cancelled is final: the API's refusal, exit 1. */
	snprintf(args, sizeof args, "batch cancel %s", id);
	run(&r, args);
	assert_int_equal(r.rc, 1);
	assert_true(r.err[0] != '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upload_watch_status_report),
	    cmocka_unit_test(test_cancel_scheduled),
	};
	return cmocka_run_group_tests_name("campaign cli", tests, setup, teardown);
}
