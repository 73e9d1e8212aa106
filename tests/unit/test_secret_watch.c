/*
 * test_secret_watch.c - secret rotation without a restart (channel.h,
 * secret_watch.c): a changed secret file reloads its account and nothing
 * else; a reload that fails keeps the old secrets and is not retried until
 * the files change again; an account replaced meanwhile is not overwritten;
 * the previous secrets verify webhooks during the grace and not after; the
 * watcher thread does all of it by itself; and what a pass costs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "channels/channel.h"
#include "core/crypto.h"

static char dir[64];

static void put_file(const char *name, const char *text)
{
	/* As secret mounts do: write aside, then rename over. */
	char tmp[128], path[128];
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/herald-sw-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A WhatsApp account id whose access_token and app_secret are the files
 * tok_<id> and sec_<id> in dir. */
static struct channel_account *wa_account(const char *id)
{
	char cfg[1024];
	snprintf(cfg, sizeof cfg,
	         "{\"id\":\"%s\",\"base_url\":\"http://127.0.0.1:9\",\"phone_number_id\":\"1065\","
	         "\"access_token\":\"file:%s/tok_%s\",\"app_secret\":\"file:%s/sec_%s\","
	         "\"verify_token\":\"vt\"}",
	         id, dir, id, dir, id);
	struct account_row row;
	memset(&row, 0, sizeof row);
	hr_strlcpy(row.id, id, sizeof row.id);
	hr_strlcpy(row.tenant_id, "acme", sizeof row.tenant_id);
	hr_strlcpy(row.channel, "whatsapp", sizeof row.channel);
	row.config = cfg;
	struct channel_account *a = NULL;
	struct hr_err err;
	hr_err_clear(&err);
	assert_int_equal(channel_account_new(&row, &a, &err), 0);
	return a;
}

static void set_init(struct account_set *s, int64_t grace_us)
{
	memset(s, 0, sizeof *s);
	assert_int_equal(pthread_rwlock_init(&s->lock, NULL), 0);
	s->grace_us = grace_us;
}

/* The Authorization header the account's next send carries. */
static void auth_of(const struct channel_account *a, char *out, size_t n)
{
	struct message m;
	memset(&m, 0, sizeof m);
	hr_strlcpy(m.id, "01TESTMESSAGE0000000000000", sizeof m.id);
	hr_strlcpy(m.recipient, "447911000001", sizeof m.recipient);
	char content[] = "{\"type\":\"text\",\"text\":\"hi\"}";
	m.content = content;
	struct http_req req;
	memset(&req, 0, sizeof req);
	struct hr_err err;
	hr_err_clear(&err);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	out[0] = '\0';
	for (struct curl_slist *h = req.headers; h; h = h->next)
		if (strncasecmp(h->data, "Authorization:", 14) == 0)
			hr_strlcpy(out, h->data, n);
	http_req_clear(&req);
}

static const char *sig_header;
static const char *hdr(void *ctx, const char *name)
{
	(void)ctx;
	return strcasecmp(name, "X-Hub-Signature-256") == 0 ? sig_header : NULL;
}

/* Verifies body signed with secret against a at time now. */
static int verify(const struct channel_account *a, const char *secret, int64_t now, bool *by_prev)
{
	static const char body[] = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
	char hex[65], h[80];
	hr_hmac_sha256_hex(secret, strlen(secret), body, strlen(body), hex);
	snprintf(h, sizeof h, "sha256=%s", hex);
	sig_header = h;
	struct wh_request req = {.method = "POST",
	                         .url = "http://x/webhooks/whatsapp/a",
	                         .body = body,
	                         .body_len = strlen(body),
	                         .header = hdr};
	struct hr_err err;
	hr_err_clear(&err);
	return channel_webhook_verify_rotating(a, &req, now, by_prev, &err);
}

static void test_rotate_file(void **state)
{
	(void)state;
	put_file("tok_wa1", "token-v1\n");
	put_file("sec_wa1", "secret-v1");
	put_file("tok_wa2", "other-token");
	put_file("sec_wa2", "other-secret");
	struct account_set s;
	set_init(&s, 60 * 1000000LL);
	struct channel_account *a1 = wa_account("wa1"), *a2 = wa_account("wa2");
	assert_int_equal(account_set_put(&s, a1), 0);
	assert_int_equal(account_set_put(&s, a2), 0);
	unsigned gen = account_set_generation(&s);
	char auth[256];
	auth_of(a1, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer token-v1");

	/* Nothing changed: nothing reloaded, the generation stays. */
	size_t nr = 9, nf = 9;
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 0);
	assert_int_equal(account_set_generation(&s), gen);

	/* Touched, or written again with the same content (a new inode):
	 * nothing to reload. */
	put_file("tok_wa1", "token-v1\n");
	char p1[128];
	snprintf(p1, sizeof p1, "%s/sec_wa1", dir);
	struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
	assert_int_equal(utimensat(AT_FDCWD, p1, times, 0), 0);
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 0);
	assert_int_equal(account_set_generation(&s), gen);
	assert_ptr_equal(account_set_find(&s, "wa1"), a1);

	/* The token and the secret of wa1 are rotated: wa1 only is reloaded. */
	put_file("tok_wa1", "token-v2\n");
	put_file("sec_wa1", "secret-v2");
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 1);
	assert_int_equal(nf, 0);
	assert_int_equal(account_set_generation(&s), gen + 1);
	struct channel_account *n1 = account_set_find(&s, "wa1");
	assert_ptr_not_equal(n1, a1);
	assert_ptr_equal(account_set_find(&s, "wa2"), a2);
	assert_ptr_equal(n1->prev, a1);
	auth_of(n1, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer token-v2");
	/* The retired account is still whole for whoever holds it. */
	auth_of(a1, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer token-v1");

	/* Webhooks: the new secret; the previous one during the grace only;
	 * never another. */
	int64_t now = hr_now_us();
	bool by_prev = true;
	assert_int_equal(verify(n1, "secret-v2", now, &by_prev), 0);
	assert_false(by_prev);
	assert_int_equal(verify(n1, "secret-v1", now, &by_prev), 0);
	assert_true(by_prev);
	assert_int_equal(verify(n1, "secret-v1", n1->prev_until, &by_prev), HR_EAUTH);
	assert_false(by_prev);
	assert_int_equal(verify(n1, "other-secret", now, &by_prev), HR_EAUTH);

	/* Twice in a row: the first two secrets verify (a chain), within the
	 * grace of each replacement. */
	put_file("sec_wa1", "secret-v3");
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 1);
	struct channel_account *n2 = account_set_find(&s, "wa1");
	now = hr_now_us();
	assert_int_equal(verify(n2, "secret-v3", now, &by_prev), 0);
	assert_false(by_prev);
	assert_int_equal(verify(n2, "secret-v2", now, &by_prev), 0);
	assert_true(by_prev);
	assert_int_equal(verify(n2, "secret-v1", now, &by_prev), 0);
	assert_true(by_prev);
	account_set_clear(&s);
}

static void test_rotate_failure(void **state)
{
	(void)state;
	put_file("tok_wa3", "token-a");
	put_file("sec_wa3", "secret-a");
	struct account_set s;
	set_init(&s, 0);
	struct channel_account *a = wa_account("wa3");
	assert_int_equal(account_set_put(&s, a), 0);
	unsigned gen = account_set_generation(&s);
	/* An empty file does not load: the account keeps its secrets. */
	put_file("tok_wa3", "\n");
	size_t nr = 9, nf = 9;
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 1);
	assert_ptr_equal(account_set_find(&s, "wa3"), a);
	assert_int_equal(account_set_generation(&s), gen);
	char auth[256];
	auth_of(a, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer token-a");
	/* Not retried (nor warned about again) until the file changes again. */
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 0);
	/* A missing file neither. */
	char p[128];
	snprintf(p, sizeof p, "%s/tok_wa3", dir);
	assert_int_equal(unlink(p), 0);
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 1);
	/* Fixed: reloaded. With no grace the old secret verifies nothing. */
	put_file("tok_wa3", "token-b");
	put_file("sec_wa3", "secret-b");
	account_set_rotate(&s, &nr, &nf);
	assert_int_equal(nr, 1);
	assert_int_equal(nf, 0);
	struct channel_account *n = account_set_find(&s, "wa3");
	auth_of(n, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer token-b");
	bool by_prev = true;
	assert_int_equal(verify(n, "secret-a", hr_now_us(), &by_prev), HR_EAUTH);
	assert_int_equal(verify(n, "secret-b", hr_now_us(), &by_prev), 0);
	account_set_clear(&s);
}

/* An account replaced meanwhile (an API re-registration) is not
 * overwritten by a reload of the one it replaced. */
static void test_replace_conflict(void **state)
{
	(void)state;
	put_file("tok_wa4", "t4");
	put_file("sec_wa4", "s4");
	struct account_set s;
	set_init(&s, 1000000);
	struct channel_account *a = wa_account("wa4"), *b = wa_account("wa4"),
	                       *c = wa_account("wa4");
	assert_int_equal(account_set_put(&s, a), 0);
	assert_int_equal(account_set_put(&s, b), 0); /* the API's */
	assert_ptr_equal(b->prev, a);
	assert_true(b->prev_until > 0);
	assert_int_equal(account_set_replace(&s, a, c), HR_ECONFLICT);
	assert_ptr_equal(account_set_find(&s, "wa4"), b);
	assert_int_equal(account_set_replace(&s, b, c), 0);
	assert_ptr_equal(account_set_find(&s, "wa4"), c);
	/* An id not in the set. */
	struct channel_account *d = wa_account("wa4");
	hr_strlcpy(d->id, "wa4-other", sizeof d->id);
	assert_int_equal(account_set_replace(&s, c, d), HR_ECONFLICT);
	channel_account_free(d);
	account_set_clear(&s);
}

static atomic_int changes;
static void on_change(void *arg)
{
	(void)arg;
	atomic_fetch_add(&changes, 1);
}

/* The thread: a rotated file is picked up within a few intervals. */
static void test_watch_thread(void **state)
{
	(void)state;
	put_file("tok_wa5", "t5-v1");
	put_file("sec_wa5", "s5-v1");
	struct account_set s;
	set_init(&s, 1000000);
	struct channel_account *a = wa_account("wa5");
	assert_int_equal(account_set_put(&s, a), 0);
	struct secret_watch *w = NULL;
	struct hr_err err;
	hr_err_clear(&err);
	assert_int_equal(secret_watch_start(&s, 5000, on_change, NULL, &w, &err), HR_EINVAL);
	assert_string_equal(err.field, "server.secret_check_ms");
	hr_err_clear(&err);
	assert_int_equal(secret_watch_start(&s, 20000, on_change, NULL, &w, &err), 0);
	put_file("tok_wa5", "t5-v2");
	int64_t deadline = hr_mono_us() + 5000000;
	while (account_set_find(&s, "wa5") == a && hr_mono_us() < deadline) {
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	struct channel_account *n = account_set_find(&s, "wa5");
	assert_ptr_not_equal(n, a);
	while (atomic_load(&changes) == 0 && hr_mono_us() < deadline) {
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(atomic_load(&changes), 1);
	char auth[256];
	auth_of(n, auth, sizeof auth);
	assert_string_equal(auth, "Authorization: Bearer t5-v2");
	secret_watch_stop(w);
	account_set_clear(&s);
}

/* What a pass costs when nothing changed: 1,000 accounts, two file
 * references each (printed; the bound is generous for sanitizer builds). */
static void test_pass_cost(void **state)
{
	(void)state;
	struct account_set s;
	set_init(&s, 0);
	enum { N = 1000 };
	for (int i = 0; i < N; i++) {
		char id[32], f[48];
		snprintf(id, sizeof id, "c%04d", i);
		snprintf(f, sizeof f, "tok_%s", id);
		put_file(f, "tok");
		snprintf(f, sizeof f, "sec_%s", id);
		put_file(f, "sec");
		assert_int_equal(account_set_put(&s, wa_account(id)), 0);
	}
	size_t nr = 9, nf = 9;
	int64_t t0 = hr_mono_us();
	for (int k = 0; k < 10; k++)
		account_set_rotate(&s, &nr, &nf);
	int64_t per_pass = (hr_mono_us() - t0) / 10;
	assert_int_equal(nr, 0);
	assert_int_equal(nf, 0);
	printf("secret watch: one pass over %d accounts (%d file references) took %lld us\n", N,
	       2 * N, (long long)per_pass);
	assert_true(per_pass < 2000000);
	account_set_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rotate_file),      cmocka_unit_test(test_rotate_failure),
	    cmocka_unit_test(test_replace_conflict), cmocka_unit_test(test_watch_thread),
	    cmocka_unit_test(test_pass_cost),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
