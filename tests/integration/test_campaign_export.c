/*
 * test_campaign_export.c - GET /v1/batches/{id}/export.csv and export.xlsx
 * against real `herald serve` and `herald sim` processes: a small campaign
 * (valid rows, one invalid, one duplicate, one the provider fails, one
 * answered with a button) is exported in both formats, and each file is read
 * back with Herald's own streaming reader (src/campaigns/sheet.h) and
 * checked row by row against GET /v1/messages/{id}; the workbook's Summary
 * sheet carries the batch's counters; another tenant gets 404.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "campaigns/sheet.h"
#include "harness.h"
#include "herald.h"

static struct world W;

#define FAIL_A "447400300005" /* the simulator fails this one (131026) */
#define OTHER_KEY "hk_other_0123456789abcdef"
#define NCOLS 19              /* Row, Recipient, 2 params, 15 outcome columns */

enum { C_ROW, C_TO, C_P1, C_P2, C_VALIDITY, C_REASON, C_MSG, C_STATUS, C_QUEUED, C_SENT,
       C_DELIVERED, C_READ, C_PROVIDER, C_ERRCODE, C_ERRTEXT, C_RKIND, C_RTEXT, C_RPAYLOAD,
       C_REPLIED };

static int setup(void **state)
{
	(void)state;
	world_init(&W, "    fail_recipients: [\"" FAIL_A "\"]\n", NULL);
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

static json_t *get_json(const char *path)
{
	struct resp r = api_get(&W, path);
	if (r.status != 200)
		fail_msg("GET %s answered %ld: %s", path, r.status, r.body);
	json_t *j = json_incref(r.json);
	resp_free(&r);
	return j;
}

/* Completed, every deliverable message read and the one reply counted. */
static bool batch_settled(struct world *w, void *arg)
{
	(void)w;
	json_t *b = world_batch(&W, arg);
	bool ok = !strcmp(json_string_value(json_object_get(b, "status")), "completed") &&
	          batch_messages(b, "read") == 3;
	json_decref(b);
	return ok;
}

static bool batch_replied(struct world *w, void *arg)
{
	(void)w;
	json_t *b = world_batch(&W, arg);
	bool ok = json_integer_value(json_object_get(b, "replied")) == 1;
	json_decref(b);
	return ok;
}

struct dl {
	long status;
	char disp[256], ctype[128];
	FILE *f;
};

static size_t on_header(char *p, size_t s, size_t n, void *arg)
{
	struct dl *d = arg;
	size_t len = s * n;
	char line[512];
	snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
	line[strcspn(line, "\r\n")] = '\0';
	if (!strncasecmp(line, "Content-Disposition: ", 21))
		snprintf(d->disp, sizeof d->disp, "%s", line + 21);
	if (!strncasecmp(line, "Content-Type: ", 14))
		snprintf(d->ctype, sizeof d->ctype, "%s", line + 14);
	return len;
}

/* GETs {api}path with key into file `to`: the status and two headers. */
static struct dl download(const char *path, const char *key, const char *to)
{
	struct dl d = {0};
	d.f = fopen(to, "wb");
	assert_non_null(d.f);
	char url[512], auth[128];
	snprintf(url, sizeof url, "%s%s", W.api, path);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
	CURL *c = curl_easy_init();
	assert_non_null(c);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	assert_non_null(h);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HTTPHEADER, h), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_WRITEDATA, d.f), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_HEADERDATA, &d), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L), CURLE_OK);
	assert_int_equal(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	assert_int_equal(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d.status), CURLE_OK);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	assert_int_equal(fclose(d.f), 0);
	d.f = NULL;
	return d;
}

/* The cell's text, "" past the row's last non-empty cell. */
static const char *cell(const struct sheet_row *r, int col)
{
	return (uint32_t)col < r->ncols ? r->cells[col].text : "";
}

/* What a row must say, from the upload and GET /v1/messages/{id}. */
struct want {
	const char *validity;
	bool message;
};

static const struct want wants[6] = {
    {"valid", true},     /* 1: read, then a button reply */
    {"valid", true},     /* 2: read */
    {"invalid", false},  /* 3: not a phone number */
    {"duplicate", false},/* 4: row 1's recipient again */
    {"valid", true},     /* 5: failed by the provider */
    {"valid", true},     /* 6: read; parameters with a comma, a quote, a formula */
};

/* Reads an export back and checks it row by row. csv: the formula cell
 * carries its apostrophe and times are RFC 3339; xlsx: typed cells. */
static void check_rows(const char *path, bool csv)
{
	struct sheet *s;
	struct sheet_err e;
	struct sheet_opts o = {.format = csv ? SHEET_FMT_CSV : SHEET_FMT_XLSX,
	                       .sheet = csv ? NULL : "Rows",
	                       .tmpdir = W.dir};
	if (sheet_open(&s, path, &o, &e) != 0)
		fail_msg("%s: %s", path, e.msg);
	struct sheet_row row;
	assert_int_equal(sheet_next(s, &row, &e), 1);
	assert_int_equal(row.ncols, NCOLS);
	assert_string_equal(cell(&row, C_ROW), "Row");
	/* The parameters' headers are the upload's column names; one that
	 * starts like a formula is defused in the CSV as a cell would be. */
	assert_string_equal(cell(&row, C_P1), "name");
	assert_string_equal(cell(&row, C_P2), csv ? "'=amount" : "=amount");
	assert_string_equal(cell(&row, C_STATUS), "Status");
	assert_string_equal(cell(&row, C_REPLIED), "Replied at (UTC)");
	for (int i = 0; i < 6; i++) {
		assert_int_equal(sheet_next(s, &row, &e), 1);
		char num[8];
		snprintf(num, sizeof num, "%d", i + 1);
		assert_string_equal(cell(&row, C_ROW), num);
		assert_string_equal(cell(&row, C_VALIDITY), wants[i].validity);
		if (!wants[i].message) {
			assert_string_equal(cell(&row, C_MSG), "");
			assert_string_equal(cell(&row, C_STATUS), "");
			assert_string_equal(cell(&row, C_SENT), "");
			if (i == 2)
				assert_string_equal(cell(&row, C_REASON),
				                    "phone: not a phone number (contains letters)");
			else
				assert_non_null(strstr(cell(&row, C_REASON), "same recipient"));
			continue;
		}
		assert_string_equal(cell(&row, C_REASON), "");
		char mp[96];
		snprintf(mp, sizeof mp, "/v1/messages/%s", cell(&row, C_MSG));
		json_t *m = get_json(mp);
		/* Recipients are text cells: digits, never 4.47E+11. */
		assert_string_equal(cell(&row, C_TO), json_string_value(json_object_get(m, "to")));
		assert_int_equal(row.cells[C_TO].type, SHEET_STRING);
		assert_string_equal(cell(&row, C_STATUS),
		                    json_string_value(json_object_get(m, "status")));
		json_t *pid = json_object_get(m, "provider_id");
		assert_string_equal(cell(&row, C_PROVIDER), json_is_string(pid) ? json_string_value(pid) : "");
		json_t *err = json_object_get(m, "error");
		assert_string_equal(cell(&row, C_ERRCODE),
		                    json_is_object(err)
		                        ? json_string_value(json_object_get(err, "code")) : "");
		assert_true(strlen(cell(&row, C_QUEUED)) >= 19);
		if (i == 4) {
			assert_string_equal(cell(&row, C_STATUS), "failed");
			assert_string_equal(cell(&row, C_ERRCODE), "131026");
			assert_string_equal(cell(&row, C_SENT), "");
			assert_string_equal(cell(&row, C_READ), "");
		} else {
			assert_string_equal(cell(&row, C_STATUS), "read");
			/* Times: sent <= delivered <= read (ISO 8601 sorts as text). */
			const char *t[3] = {cell(&row, C_SENT), cell(&row, C_DELIVERED),
			                    cell(&row, C_READ)};
			for (int k = 0; k < 3; k++)
				assert_true(strlen(t[k]) >= 19 && !strncmp(t[k], "20", 2));
			if (csv) {
				assert_true(strcmp(t[0], t[1]) <= 0);
				assert_true(strcmp(t[1], t[2]) <= 0);
				assert_int_equal(t[0][strlen(t[0]) - 1], 'Z');
			}
		}
		if (i == 0) {
			assert_string_equal(cell(&row, C_P1), "Ana");
			assert_string_equal(cell(&row, C_RKIND), "button");
			assert_string_equal(cell(&row, C_RTEXT), "Pay now");
			assert_string_equal(cell(&row, C_RPAYLOAD), "PAY_NOW");
			assert_true(strlen(cell(&row, C_REPLIED)) >= 19);
		} else {
			assert_string_equal(cell(&row, C_RKIND), "");
		}
		if (i == 5) {
			assert_string_equal(cell(&row, C_P1), "O\"Neil, Jr");
			assert_string_equal(cell(&row, C_P2), csv ? "'=1+2" : "=1+2");
		}
		json_decref(m);
	}
	assert_int_equal(sheet_next(s, &row, &e), 0);
	sheet_close(s);
}

/* The Summary sheet: label in A, value in B. */
static void check_summary(const char *path, const char *id)
{
	struct sheet *s;
	struct sheet_err e;
	struct sheet_opts o = {.format = SHEET_FMT_XLSX, .sheet = "Summary", .tmpdir = W.dir};
	if (sheet_open(&s, path, &o, &e) != 0)
		fail_msg("%s: %s", path, e.msg);
	static const struct {
		const char *k, *v;
	} want[] = {{"Batch ID", NULL},       {"Name", "Export <test>"}, {"Status", "completed"},
	            {"Rows", "6"},            {"Valid rows", "4"},       {"Invalid rows", "1"},
	            {"Duplicate rows", "1"},  {"Messages", "4"},         {"Messages read", "3"},
	            {"Messages failed", "1"}, {"Replied", "1"},
	            {"Read rate (read / messages)", "0.75"},
	            {"Failure rate (failed or undelivered / messages)", "0.25"}};
	size_t found = 0;
	struct sheet_row row;
	int rc;
	while ((rc = sheet_next(s, &row, &e)) == 1) {
		for (size_t k = 0; k < sizeof want / sizeof *want; k++)
			if (!strcmp(cell(&row, 0), want[k].k)) {
				assert_string_equal(cell(&row, 1), want[k].v ? want[k].v : id);
				found++;
			}
		if (!strcmp(cell(&row, 0), "Completed at (UTC)"))
			assert_int_equal(row.cells[1].type, SHEET_DATE);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(found, sizeof want / sizeof *want);
	sheet_close(s);
}

static void test_export_small_campaign(void **state)
{
	(void)state;
	const char *phones[6] = {"07400 300001", "07400 300002", "not a number",
	                         "+44 7400 300001", "07400 300005", "07400 300006"};
	json_t *rows = json_array();
	for (int i = 0; i < 6; i++)
		json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "phone", phones[i], "name",
		                                      i == 5 ? "O\"Neil, Jr" : "Ana", "=amount",
		                                      i == 5 ? "=1+2" : "£5"));
	json_t *req = json_pack("{s:s, s:s, s:{s:s, s:s}, s:[s, s], s:s, s:b, s:o}", "name",
	                        "Export <test>", "channel", "whatsapp", "template", "name",
	                        "payment_reminder", "language", "en_GB", "params", "name",
	                        "=amount", "default_region", "GB", "start", 1, "rows", rows);
	char *js = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct resp r = api_post(&W, "/v1/batches", js);
	free(js);
	if (r.status != 201)
		fail_msg("upload answered %ld: %s", r.status, r.body);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "id")));
	resp_free(&r);
	assert_true(wait_until(batch_settled, &W, id, 120));

	/* A button pressed on row 1's message. */
	char p[256];
	snprintf(p, sizeof p, "/v1/batches/%s/messages?limit=100", id);
	json_t *list = get_json(p);
	json_t *m1 = NULL, *m;
	size_t i;
	json_array_foreach(json_object_get(list, "data"), i, m)
	{
		if (strstr(json_string_value(json_object_get(m, "to")), "447400300001"))
			m1 = m;
	}
	assert_non_null(m1);
	char body[512], url[128];
	snprintf(body, sizeof body,
	         "{\"account\":\"acme-wa\",\"from\":\"447400300001\",\"button_payload\":\"PAY_NOW\","
	         "\"button_text\":\"Pay now\",\"context_id\":\"%s\"}",
	         json_string_value(json_object_get(m1, "provider_id")));
	json_decref(list);
	snprintf(url, sizeof url, "%s/sim/whatsapp/inbound", W.sim);
	r = http("POST", url, NULL, body, NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	assert_true(wait_until(batch_replied, &W, id, 30));

	char csv[400], xlsx[400], path[128], disp[128];
	snprintf(csv, sizeof csv, "%s/export.csv", W.dir);
	snprintf(xlsx, sizeof xlsx, "%s/export.xlsx", W.dir);

	snprintf(path, sizeof path, "/v1/batches/%s/export.csv", id);
	struct dl d = download(path, W.key, csv);
	assert_int_equal(d.status, 200);
	assert_string_equal(d.ctype, "text/csv; charset=utf-8");
	snprintf(disp, sizeof disp, "attachment; filename=\"batch-%s.csv\"", id);
	assert_string_equal(d.disp, disp);
	FILE *f = fopen(csv, "rb");
	assert_non_null(f);
	unsigned char bom[3] = {0};
	assert_int_equal(fread(bom, 1, 3, f), 3);
	fclose(f);
	assert_memory_equal(bom, "\xEF\xBB\xBF", 3);
	check_rows(csv, true);

	snprintf(path, sizeof path, "/v1/batches/%s/export.xlsx", id);
	d = download(path, W.key, xlsx);
	assert_int_equal(d.status, 200);
	assert_string_equal(d.ctype,
	                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
	snprintf(disp, sizeof disp, "attachment; filename=\"batch-%s.xlsx\"", id);
	assert_string_equal(d.disp, disp);
	check_rows(xlsx, false);
	check_summary(xlsx, id);

	/* Another tenant, an unknown batch, an unknown argument. */
	char junk[400];
	snprintf(junk, sizeof junk, "%s/junk", W.dir);
	const char *ext[2] = {"csv", "xlsx"};
	for (int k = 0; k < 2; k++) {
		snprintf(path, sizeof path, "/v1/batches/%s/export.%s", id, ext[k]);
		assert_int_equal(download(path, OTHER_KEY, junk).status, 404);
		snprintf(path, sizeof path, "/v1/batches/01ARZ3NDEKTSV4RRFFQ69G5FAV/export.%s", ext[k]);
		assert_int_equal(download(path, W.key, junk).status, 404);
		snprintf(path, sizeof path, "/v1/batches/%s/export.%s?x=1", id, ext[k]);
		assert_int_equal(download(path, W.key, junk).status, 422);
	}
	unlink(junk);
	unlink(csv);
	unlink(xlsx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_export_small_campaign),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
