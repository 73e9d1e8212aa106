/*
 * test_campaign_upload.c - campaign files uploaded as multipart/form-data
 * to a real `herald serve`: an .xlsx made by openpyxl (numbers stored as
 * numbers, digits Excel lost, a formula without a value) and a .csv are
 * read as streams and validated row by row with the file's own row
 * numbers; hostile files (not a zip, a truncated zip, a DTD, an external
 * entity, a missing part, a wrong extension) are
 * refused with a clear 422 naming the problem and nothing is created; the
 * upload limit answers 413.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

static struct world W;
static char fixtures[512];

static int setup(void **state)
{
	(void)state;
	const char *src = getenv("HERALD_SRC");
	snprintf(fixtures, sizeof fixtures, "%s/tests/fixtures/sheets", src ? src : ".");
	harness_server_extra("batches:\n  max_upload_bytes: 2000000\n");
	world_init(&W, NULL, NULL);
	world_start_sim(&W);
	world_start_serve(&W);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_free(&W);
	return 0;
}

static long batches_named(const char *name)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/batches?name=%s", name);
	struct resp r = api_get(&W, path);
	assert_int_equal(r.status, 200);
	long n = (long)json_array_size(json_object_get(r.json, "data"));
	resp_free(&r);
	return n;
}

/* openpyxl's workbook: the first visible sheet ("Data"; a hidden one comes
 * first); row 2 holds 447911123456 stored as a number, row 3 a 16-digit
 * number Excel rounded, row 6 a formula saved without its value. */
static void test_xlsx_rows(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof path, "%s/basic.xlsx", fixtures);
	static const char *const fields[] = {
	    "name", "xlsx upload", "channel", "whatsapp", "text", "Hi {{1}}, you owe {{2}}",
	    "recipient_column", "phone", "params", "name, amount", "dry_run", "true", NULL};
	struct resp r = world_upload(&W, path, "customers.xlsx", fields);
	if (r.status != 200)
		fail_msg("answered %ld: %s", r.status, r.body);
	/* Rows with a value: 2, 3, 6, 7 ("merged"), 8 (only K8), 9 (times and
	 * dates); row 5 has styled empty cells only. */
	assert_int_equal(batch_rows(r.json, "total"), 6);
	if (batch_rows(r.json, "valid") != 1)
		fail_msg("%s", r.body);
	assert_int_equal(batch_rows(r.json, "invalid"), 5);
	json_t *errs = json_object_get(r.json, "errors");
	assert_int_equal(json_array_size(errs), 5);
	static const int bad_rows[5] = {3, 6, 7, 8, 9};
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(errs, i);
		assert_int_equal(json_integer_value(json_object_get(e, "row")), bad_rows[i]);
		assert_string_equal(json_string_value(json_object_get(e, "column")), "phone");
	}
	json_t *e0 = json_array_get(errs, 0), *e1 = json_array_get(errs, 1);
	assert_non_null(strstr(json_string_value(json_object_get(e0, "reason")), "rounded"));
	assert_non_null(strstr(json_string_value(json_object_get(e1, "reason")), "formula"));
	resp_free(&r);
	assert_int_equal(batches_named("xlsx"), 0); /* a dry run creates nothing */

	/* For real, started despite the errors: the one valid row is sent. */
	static const char *const go[] = {
	    "name", "xlsx upload", "channel", "whatsapp", "text", "Hi {{1}}, you owe {{2}}",
	    "recipient_column", "phone", "params", "name,amount", "start", "true", NULL};
	r = world_upload(&W, path, "customers.xlsx", go);
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")), "processing");
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	char mpath[160];
	snprintf(mpath, sizeof mpath, "/v1/batches/%s/messages", id);
	json_t *msg = NULL;
	for (int i = 0; i < 400 && !msg; i++) {
		r = api_get(&W, mpath);
		if (json_array_size(json_object_get(r.json, "data")) == 1)
			msg = json_incref(json_array_get(json_object_get(r.json, "data"), 0));
		resp_free(&r);
		if (!msg)
			usleep(50000);
	}
	assert_non_null(msg);
	assert_string_equal(json_string_value(json_object_get(msg, "to")), "447911123456");
	json_decref(msg);
}

static void test_csv_rows(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof path, "%s/up.csv", W.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	/* BOM, semicolons, a quoted name with the separator, CRLF, a number
	 * Excel turned into 4.47911E+11 when it saved the CSV. */
	fputs("\xef\xbb\xbfPhone;Who\r\n07400 111001;\"Smith; Ann\"\r\n4.47911E+11;Bo\r\n"
	      "07400 111003;Cy\r\n",
	      f);
	fclose(f);
	static const char *const fields[] = {"name", "csv upload", "channel", "whatsapp",
	                                     "text", "Hi {{1}}", "params", "Who",
	                                     "default_region", "GB", "start", "false", NULL};
	struct resp r = world_upload(&W, path, "list.csv", fields);
	if (r.status != 201)
		fail_msg("answered %ld: %s", r.status, r.body);
	assert_string_equal(json_string_value(json_object_get(r.json, "status")), "validated");
	assert_int_equal(batch_rows(r.json, "total"), 3);
	assert_int_equal(batch_rows(r.json, "valid"), 2);
	json_t *e = json_array_get(json_object_get(r.json, "errors"), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "row")), 3);
	assert_string_equal(json_string_value(json_object_get(e, "column")), "Phone");
	resp_free(&r);
}

/* Hostile files: each a 422 naming the file's problem; nothing created. */
static void test_hostile_files(void **state)
{
	(void)state;
	static const struct {
		const char *file, *as, *needle;
	} cases[] = {
	    {"notzip.xlsx", "evil.xlsx", "zip"},
	    {"truncated.xlsx", "cut.xlsx", ""},
	    {"dtd.xlsx", "bomb.xlsx", ""},
	    {"xxe.xlsx", "xxe.xlsx", ""},
	    {"no_workbook.xlsx", "parts.xlsx", ""},
	    {"basic.csv", "list.exe", "xlsx or .csv"},
	};
	static const char *const fields[] = {"name", "hostile", "channel", "whatsapp",
	                                     "text", "hello", NULL};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char path[600];
		snprintf(path, sizeof path, "%s/%s", fixtures, cases[i].file);
		struct resp r = world_upload(&W, path, cases[i].as, fields);
		if (r.status != 422 && r.status != 413)
			fail_msg("%s answered %ld: %s", cases[i].file, r.status, r.body);
		json_t *err = json_object_get(r.json, "error");
		const char *field = json_string_value(json_object_get(err, "field"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		if (!field || strncmp(field, "file", 4) != 0)
			fail_msg("%s: %s", cases[i].file, r.body);
		if (!strstr(msg, cases[i].needle))
			fail_msg("%s: message '%s' lacks '%s'", cases[i].file, msg, cases[i].needle);
		resp_free(&r);
	}
	assert_int_equal(batches_named("hostile"), 0);
}

/* Over batches.max_upload_bytes (2 MB here): 413, nothing created. */
static void test_upload_limit(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof path, "%s/big.csv", W.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("phone\n", f);
	for (int i = 0; i < 250000; i++)
		fprintf(f, "+4474003%05d\n", i % 100000);
	fclose(f);
	static const char *const fields[] = {"name", "toobig", "channel", "whatsapp",
	                                     "text", "hello", NULL};
	struct resp r = world_upload(&W, path, "big.csv", fields);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	assert_int_equal(batches_named("toobig"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xlsx_rows),
	    cmocka_unit_test(test_csv_rows),
	    cmocka_unit_test(test_hostile_files),
	    cmocka_unit_test(test_upload_limit),
	};
	return cmocka_run_group_tests_name("campaign upload", tests, setup, teardown);
}
