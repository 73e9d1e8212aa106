/*
 * test_applier.c - the webhook applier's follow-up requests (Telegram's
 * answerCallbackQuery and the like), against a real SQLite store and a fake
 * provider in this process: each libcurl option is checked (a request
 * libcurl refuses to set up is dropped, never sent half-configured), only
 * http(s) is spoken and a provider's redirect is never followed.
 */
#include <microhttpd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "channels/channel.h"
#include "store/store.h"
#include "webhooks/applier.h"

/* ---- fake provider: logs each request's path, redirects /moved ---- */

#define MAXLOG 16

static struct {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t lock;
	char paths[MAXLOG][64];
	int n;
} F;

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
	(void)cls, (void)method, (void)version, (void)data;
	if (!*con_cls) {
		*con_cls = &F;
		return MHD_YES;
	}
	if (*size) {
		*size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&F.lock);
	if (F.n < MAXLOG)
		snprintf(F.paths[F.n++], sizeof F.paths[0], "%s", url);
	pthread_mutex_unlock(&F.lock);
	bool moved = strcmp(url, "/moved") == 0;
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	if (moved) {
		char loc[64];
		snprintf(loc, sizeof loc, "http://127.0.0.1:%d/elsewhere", F.port);
		MHD_add_response_header(r, "Location", loc);
	}
	enum MHD_Result ret = MHD_queue_response(c, moved ? 302 : 200, r);
	MHD_destroy_response(r);
	return ret;
}

static int fake_count(void)
{
	pthread_mutex_lock(&F.lock);
	int n = F.n;
	pthread_mutex_unlock(&F.lock);
	return n;
}

/* ---- an adapter whose webhooks ask for follow-ups ---- */

static struct channel_ops followup_ops;

static int add_followup(struct wh_parsed *out, const char *url)
{
	struct http_req *r = wh_parsed_add_followup(out);
	if (!r)
		return HR_ENOMEM;
	r->url = strdup(url);
	r->body = strdup("{}");
	r->body_len = 2;
	return r->url && r->body ? 0 : HR_ENOMEM;
}

/* Asks, in order, for: a request whose URL libcurl refuses (over its 8 MB
 * limit), one with a scheme other than http(s), one to a URL that
 * redirects, and last a marker: when the marker arrives, the applier has
 * dealt with the others. */
static int followup_parse(const struct channel_account *acct, const char *body, size_t len,
                          struct wh_parsed *out, struct hr_err *err)
{
	(void)acct, (void)body, (void)len;
	size_t n = 8u * 1024 * 1024 + 16;
	char *huge = malloc(n + 1);
	if (!huge)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	int p = snprintf(huge, n + 1, "http://127.0.0.1:%d/", F.port);
	memset(huge + p, 'a', n - (size_t)p);
	huge[n] = '\0';
	char url[3][96];
	snprintf(url[0], sizeof url[0], "dict://127.0.0.1:%d/d", F.port);
	snprintf(url[1], sizeof url[1], "http://127.0.0.1:%d/moved", F.port);
	snprintf(url[2], sizeof url[2], "http://127.0.0.1:%d/marker", F.port);
	int rc = add_followup(out, huge);
	free(huge);
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = add_followup(out, url[i]);
	return rc ? hr_fail(err, rc, NULL, "out of memory") : 0;
}

static void appended(void *arg, int rc, const struct hr_err *err)
{
	(void)err;
	*(int *)arg = rc == 0 ? 1 : -1;
}

static void test_followups_checked_no_redirects(void **state)
{
	(void)state;
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.lock, NULL);
	F.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
	                       answer, NULL, MHD_OPTION_END);
	assert_non_null(F.d);
	F.port = MHD_get_daemon_info(F.d, MHD_DAEMON_INFO_BIND_PORT)->port;

	char dir[] = "/tmp/herald-applier-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[96];
	snprintf(path, sizeof path, "%s/t.db", dir);
	struct store_opts so = {0};
	struct hr_err err = {0};
	struct store *st = NULL;
	assert_int_equal(store_sqlite.open(path, &so, &st, &err), 0);
	struct tenant_row tr = {.id = "t1", .name = "T"};
	assert_int_equal(st->ops->tenant_upsert(st, &tr, &err), 0);
	struct account_row ar = {.id = "wa1", .tenant_id = "t1", .channel = "whatsapp"};
	ar.config = "{\"base_url\":\"http://127.0.0.1:9\",\"phone_number_id\":\"1\","
	            "\"access_token\":\"tok\",\"app_secret\":\"s\",\"verify_token\":\"v\"}";
	assert_int_equal(st->ops->account_upsert(st, &ar, &err), 0);
	struct account_set set;
	assert_int_equal(account_set_load(st, &set, &err), 0);
	followup_ops = channel_whatsapp;
	followup_ops.webhook_parse = followup_parse;
	struct channel_account *a = account_set_find(&set, "wa1");
	assert_non_null(a);
	a->ops = &followup_ops;

	struct applier *ap = NULL;
	assert_int_equal(applier_start(st, &set, 10, &ap, &err), 0);
	int done = 0;
	assert_int_equal(st->ops->inbox_append(st, "wa1", "whatsapp", "", "{}", 2, appended, &done),
	                 0);
	applier_notify(ap);
	/* Wait (with a deadline) for the marker, the last follow-up. */
	for (int i = 0; i < 1000 && fake_count() < 2; i++)
		usleep(10000);
	assert_int_equal(done, 1);
	applier_stop(ap);

	/* The refused URL and the dict:// one never went; the redirect was
	 * answered once and not followed; the marker came after it. */
	assert_int_equal(fake_count(), 2);
	assert_string_equal(F.paths[0], "/moved");
	assert_string_equal(F.paths[1], "/marker");

	account_set_clear(&set);
	st->ops->close(st);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	MHD_stop_daemon(F.d);
	pthread_mutex_destroy(&F.lock);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_followups_checked_no_redirects),
	};
	int rc = cmocka_run_group_tests_name("applier", tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
