/*
 * test_faults_disk.c - the SQLite store cannot write, under a running
 * `herald serve` (with `herald sim` as the provider):
 *  (a) its filesystem fills: the database lives on a small tmpfs, mounted in
 *      a private mount namespace of this test (unshare(CLONE_NEWNS): the
 *      servers it starts inherit it, nobody else sees it), and a ballast
 *      file takes the rest of the space;
 *  (b) the database files become unwritable: chattr +i (FS_IMMUTABLE_FL),
 *      which even root cannot write through (chmod would not stop root, nor
 *      a process that has the file open).
 * Either way: POST /v1/messages answers 503 with an error that says the
 * store cannot write, and nothing of a refused request is kept; a provider's
 * webhook is answered 5xx (the provider retries it); and once the space is
 * freed or the files writable again, Herald goes on by itself, no restart:
 * new sends are accepted and delivered, the messages accepted before the
 * trouble are delivered, the webhook refused during it is taken on the
 * provider's retry.
 *
 * Needs root (mount, chattr); skipped otherwise, saying why.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "faults_common.h"
#include "harness.h"

static struct world W;
static bool can_mount;
static char why_not[160];

#define MAX_PROBES 3000 /* sends tried before the disk must have refused one */

/* Rewrites the config's store path to `db` (the harness wrote w->db). */
static void move_db(struct world *w, const char *db)
{
	FILE *f = fopen(w->config, "r");
	assert_non_null(f);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strstr(buf, w->db);
	assert_non_null(p);
	f = fopen(w->config, "w");
	assert_non_null(f);
	fprintf(f, "%.*s%s%s", (int)(p - buf), buf, db, p + strlen(w->db));
	fclose(f);
	snprintf(w->db, sizeof w->db, "%s", db);
}

/* POST one text message to `to`; the response (caller frees). */
static struct resp send_to(const char *to)
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"to\":\"%s\",\"text\":\"disk test %s\"}", to, to);
	return api_post(&W, "/v1/messages", body);
}

/* A status webhook as Meta signs it (X-Hub-Signature-256 over the body with
 * the app secret). Returns the HTTP status. */
static long signed_webhook(const char *wamid)
{
	char body[1024];
	snprintf(body, sizeof body,
	         "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\","
	         "\"changes\":[{\"field\":\"messages\",\"value\":{\"messaging_product\":"
	         "\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\","
	         "\"phone_number_id\":\"106540352242922\"},\"statuses\":[{\"id\":\"%s\","
	         "\"status\":\"delivered\",\"timestamp\":\"1767225600\",\"recipient_id\":"
	         "\"447700900001\"}]}}]}]}",
	         wamid);
	char hex[65], sig[96], url[160];
	hr_hmac_sha256_hex(FC_WA_APP_SECRET, strlen(FC_WA_APP_SECRET), body, strlen(body), hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	snprintf(url, sizeof url, "%s/webhooks/whatsapp/acme-wa", W.api);
	const char *h[] = {sig, "Content-Type: application/json", NULL};
	struct resp r = http("POST", url, NULL, body, h);
	long st = r.status;
	resp_free(&r);
	return st;
}

static long sim_stat(const char *group, const char *key)
{
	char url[128];
	snprintf(url, sizeof url, "%s/sim/stats", W.sim);
	struct resp r = http("GET", url, NULL, NULL, NULL);
	assert_int_equal(r.status, 200);
	json_t *o = group ? json_object_get(r.json, group) : r.json;
	long v = (long)json_integer_value(json_object_get(o, key));
	resp_free(&r);
	return v;
}

struct ids {
	char (*id)[32];
	char (*to)[24];
	int n;
};

static void ids_add(struct ids *s, const char *id, const char *to)
{
	s->id = realloc(s->id, (size_t)(s->n + 1) * sizeof *s->id);
	s->to = realloc(s->to, (size_t)(s->n + 1) * sizeof *s->to);
	assert_non_null(s->id);
	assert_non_null(s->to);
	snprintf(s->id[s->n], 32, "%s", id);
	snprintf(s->to[s->n], 24, "%s", to);
	s->n++;
}

static void ids_free(struct ids *s)
{
	free(s->id);
	free(s->to);
	memset(s, 0, sizeof *s);
}

static bool all_read(struct world *w, void *arg)
{
	const struct ids *s = arg;
	json_t *all = fc_list_all(w);
	bool ok = true;
	for (int i = 0; i < s->n && ok; i++)
		ok = strcmp(fc_str(json_object_get(all, s->id[i]), "status"), "read") == 0;
	json_decref(all);
	return ok;
}

/*
 * The common course: a few messages delivered; `breakit` takes the disk
 * away; sends until the API refuses one (every one accepted before is kept
 * to be checked); the refusal, the webhook; `fixit` gives the disk back;
 * then recovery, with no restart.
 */
static void trouble(const char *what, void (*breakit)(void), void (*fixit)(void))
{
	struct ids ok = {0}, refused = {0};
	char to[24];
	int seq = 0;
	for (int i = 0; i < 5; i++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		struct resp r = send_to(to);
		assert_int_equal(r.status, 202);
		ids_add(&ok, fc_str(r.json, "id"), to);
		resp_free(&r);
	}
	assert_true(wait_until(all_read, &W, &ok, 30));

	/* Sends in flight and receipts on their way when the disk goes: the
	 * provider answers after 300 ms, so the outcomes of these and their
	 * webhooks meet the disk that cannot write. */
	fc_sim_config(&W, "", "{\"latency_ms\": 300}");
	int inflight = 30;
	for (int i = 0; i < inflight; i++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		struct resp r = send_to(to);
		assert_int_equal(r.status, 202);
		ids_add(&ok, fc_str(r.json, "id"), to);
		resp_free(&r);
	}
	usleep(100000);
	breakit();
	fc_sim_config(&W, "", "{\"latency_ms\": 0}");
	long wh_failed0 = sim_stat("webhooks", "failed_attempts");
	struct resp r = {0};
	int probes = 0;
	for (; probes < MAX_PROBES; probes++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		r = send_to(to);
		if (r.status != 202)
			break;
		ids_add(&ok, fc_str(r.json, "id"), to);
		resp_free(&r);
	}
	print_message("%s: %d sends accepted after the disk went, then %ld: %s\n", what, probes,
	              r.status, r.body);
	assert_true(probes < MAX_PROBES);
	assert_int_equal(r.status, 503);
	json_t *err = json_object_get(r.json, "error");
	assert_string_equal(fc_str(err, "code"), "busy");
	assert_non_null(strstr(fc_str(err, "message"), "cannot write"));
	ids_add(&refused, "", to);
	resp_free(&r);
	/* A few more refusals, each a request that must leave nothing. */
	for (int i = 0; i < 5; i++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		r = send_to(to);
		assert_int_equal(r.status, 503);
		ids_add(&refused, "", to);
		resp_free(&r);
	}
	/* A provider's webhook: refused with a status it retries (5xx). One
	 * the simulator sends (an inbound message) is retried by it. */
	long st = signed_webhook("wamid.HBgMNDQ3NzAwOTAwMDAxFQIAERgSDISK");
	print_message("%s: a signed webhook is answered %ld\n", what, st);
	assert_int_equal(st, 503);
	char url[128];
	snprintf(url, sizeof url, "%s/sim/whatsapp/inbound", W.sim);
	r = http("POST", url, NULL,
	         "{\"account\":\"acme-wa\",\"from\":\"447700900555\",\"text\":\"disk full?\"}",
	         NULL);
	assert_int_equal(r.status, 202);
	resp_free(&r);
	for (int i = 0; i < 100 && sim_stat("webhooks", "failed_attempts") == wh_failed0; i++)
		usleep(50000);
	assert_true(sim_stat("webhooks", "failed_attempts") > wh_failed0);
	/* Still refusing a while later (nothing has freed space by itself). */
	usleep(500000);
	fc_recipient(FC_WA, seq++, to, sizeof to);
	r = send_to(to);
	assert_int_equal(r.status, 503);
	ids_add(&refused, "", to);
	resp_free(&r);

	fixit();
	double t0 = fc_now();
	int waited = 0;
	for (;; waited++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		r = send_to(to);
		if (r.status == 202)
			break;
		assert_int_equal(r.status, 503);
		ids_add(&refused, "", to);
		resp_free(&r);
		assert_true(fc_now() - t0 < 30);
		usleep(100000);
	}
	ids_add(&ok, fc_str(r.json, "id"), to);
	resp_free(&r);
	double t_back = fc_now() - t0;
	for (int i = 0; i < 20; i++) {
		fc_recipient(FC_WA, seq++, to, sizeof to);
		r = send_to(to);
		assert_int_equal(r.status, 202);
		ids_add(&ok, fc_str(r.json, "id"), to);
		resp_free(&r);
	}
	/* Everything accepted, before, during and after, is delivered. */
	bool done = wait_until(all_read, &W, &ok, 60);
	if (!done) {
		json_t *all = fc_list_all(&W);
		for (int i = 0; i < ok.n; i++) {
			const char *s = fc_str(json_object_get(all, ok.id[i]), "status");
			if (strcmp(s, "read") != 0)
				print_message("%s: %s\n", ok.id[i], s);
		}
		json_decref(all);
	}
	assert_true(done);
	/* Nothing of a refused request was kept. */
	json_t *all = fc_list_all(&W);
	assert_int_equal(json_object_size(all), ok.n);
	const char *id;
	json_t *m;
	json_object_foreach(all, id, m)
	{
		const char *mto = fc_str(m, "to");
		mto += *mto == '+';
		for (int i = 0; i < refused.n; i++)
			if (strcmp(mto, refused.to[i]) == 0)
				fail_msg("refused send to %s was kept as %s", refused.to[i], id);
	}
	json_decref(all);
	/* The simulator's inbound webhook went through on a retry. */
	for (int i = 0; i < 200 && sim_stat("webhooks", "pending") != 0; i++)
		usleep(100000);
	assert_int_equal(sim_stat("webhooks", "pending"), 0);
	assert_int_equal(sim_stat("webhooks", "dropped"), 0);
	/* No message reached the provider twice: an outcome the store could not
	 * record was kept and recorded when it could, not left to its lease. */
	long dups = sim_stat(NULL, "duplicates");
	if (dups) {
		char url[128];
		snprintf(url, sizeof url, "%s/sim/duplicates", W.sim);
		r = http("GET", url, NULL, NULL, NULL);
		print_message("%s: duplicates %s\n", what, r.body);
		resp_free(&r);
	}
	assert_int_equal(dups, 0);
	print_message("%s: %d accepted (all read, %d of them in flight when the disk went), %d "
	              "refused with 503 (none kept), accepting again %.2f s after the disk came "
	              "back (%d refusals meanwhile), no restart\n",
	              what, ok.n, inflight, refused.n, t_back, waited);
	ids_free(&ok);
	ids_free(&refused);
}

/* ---- (a) a full tmpfs ---- */

static char mnt[300], ballast[320];

static void fill(void)
{
	snprintf(ballast, sizeof ballast, "%s/ballast", mnt);
	int fd = open(ballast, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static char chunk[1 << 16];
	memset(chunk, 'x', sizeof chunk);
	/* Bounded by the tmpfs's size: it ends in ENOSPC. */
	for (;;) {
		ssize_t n = write(fd, chunk, sizeof chunk);
		if (n < 0) {
			assert_int_equal(errno, ENOSPC);
			break;
		}
		if (n < (ssize_t)sizeof chunk) {
			/* The last bytes that fit; the next write says ENOSPC. */
			continue;
		}
	}
	assert_int_equal(close(fd), 0);
}

static void unfill(void)
{
	assert_int_equal(unlink(ballast), 0);
}

static void test_tmpfs_full(void **state)
{
	(void)state;
	if (!can_mount) {
		print_message("skipped: %s\n", why_not);
		skip();
	}
	world_init(&W, NULL, "dispatch:\n  backoff_base_ms: 100\n  backoff_max_ms: 500\n");
	snprintf(mnt, sizeof mnt, "%s/store", W.dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0700") != 0)
		fail_msg("mount tmpfs on %s: %s", mnt, strerror(errno));
	char db[320];
	snprintf(db, sizeof db, "%s/herald.db", mnt);
	move_db(&W, db);
	world_start_sim(&W);
	world_start_serve(&W);
	trouble("full tmpfs", fill, unfill);
	world_stop_serve(&W);
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	world_free(&W);
}

/* ---- (b) unwritable database files ---- */

static int set_immutable(const char *path, bool on)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	int flags = 0;
	int rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
	if (rc == 0) {
		flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
		rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
	int e = rc ? -errno : 0;
	close(fd);
	return e;
}

/* The database and its write-ahead log: every write goes to one of them.
 * The shared-memory index stays writable (it is mapped; SQLite rebuilds it
 * anyway). */
static void make_ro(void)
{
	char wal[320];
	snprintf(wal, sizeof wal, "%s-wal", W.db);
	int rc = set_immutable(W.db, true);
	if (rc == 0)
		rc = set_immutable(wal, true);
	if (rc != 0)
		fail_msg("chattr +i %s: %s", W.db, strerror(-rc));
}

static void make_rw(void)
{
	char wal[320];
	snprintf(wal, sizeof wal, "%s-wal", W.db);
	assert_int_equal(set_immutable(W.db, false), 0);
	assert_int_equal(set_immutable(wal, false), 0);
}

/* Runs even when the test failed half-way: an immutable file left behind
 * could not be removed by anyone's clean-up, root's included. */
static int ro_teardown(void **state)
{
	(void)state;
	char wal[320];
	snprintf(wal, sizeof wal, "%s-wal", W.db);
	if (W.db[0]) {
		(void)set_immutable(W.db, false);
		(void)set_immutable(wal, false);
	}
	return 0;
}

static void test_readonly_db(void **state)
{
	(void)state;
	world_init(&W, NULL, "dispatch:\n  backoff_base_ms: 100\n  backoff_max_ms: 500\n");
	world_start_sim(&W);
	world_start_serve(&W);
	/* Whether this filesystem has the flag at all (ext4, xfs, btrfs do;
	 * tmpfs and overlayfs may not). */
	int rc = set_immutable(W.db, true);
	if (rc == 0)
		rc = set_immutable(W.db, false);
	if (rc != 0) {
		print_message("skipped: chattr +i on %s: %s\n", W.db, strerror(-rc));
		world_free(&W);
		skip();
	}
	trouble("read-only database", make_ro, make_rw);
	world_free(&W);
}

int main(void)
{
	/* A private mount namespace for this process and what it starts: the
	 * tmpfs is seen by no one else and goes away with the namespace. */
	if (geteuid() != 0)
		snprintf(why_not, sizeof why_not, "not root (mounting a tmpfs needs it)");
	else if (unshare(CLONE_NEWNS) != 0)
		snprintf(why_not, sizeof why_not, "unshare(CLONE_NEWNS): %s", strerror(errno));
	else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		snprintf(why_not, sizeof why_not, "making mounts private: %s", strerror(errno));
	else
		can_mount = true;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tmpfs_full),
	    cmocka_unit_test_teardown(test_readonly_db, ro_teardown),
	};
	return cmocka_run_group_tests_name("faults_disk", tests, NULL, NULL);
}
