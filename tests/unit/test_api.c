/*
 * test_api.c - the HTTP API in-process: a real SQLite store in a temp dir,
 * real WhatsApp accounts, the server on a free loopback port, and libcurl
 * as the client. The sync-mode tests add a real dispatcher and a fake
 * WhatsApp provider (a tiny MHD server) so every sync outcome is real.
 */
#include <dirent.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "api/accept_fast.h"
#include "api/api_int.h"
#include "core/config.h"
#include "core/crypto.h"
#include "obs/metrics.h"

#define KEY_ACME "key-acme-0123456789"
#define KEY_OTHER "key-other-0123456789"
#define KEY_BULK "key-bulk-0123456789"
#define APP_SECRET "app-secret-123"

struct env {
	char dir[64];
	struct store *st;
	struct channel_policy policy;
	char origin[64]; /* an extra origin tenant accounts may use, or "" */
	struct account_set set;
	struct api_server *srv;
	struct dispatcher *disp;
	char base[64];
};

static struct env E; /* the main fixture: no dispatcher */

/* ---------------------------------------------------------------------------
 * Helpers: temp dirs, fixtures, HTTP.
 * ------------------------------------------------------------------------- */

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void put_account(struct store *st, const char *id, const char *tenant,
                        const char *base_url, const char *pnid)
{
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "{\"base_url\":\"%s\",\"phone_number_id\":\"%s\",\"access_token\":\"tok\","
	         "\"app_secret\":\"" APP_SECRET "\",\"verify_token\":\"vt-123\"}",
	         base_url, pnid);
	struct account_row a = {.config = cfg};
	hr_strlcpy(a.id, id, sizeof a.id);
	hr_strlcpy(a.tenant_id, tenant, sizeof a.tenant_id);
	hr_strlcpy(a.channel, "whatsapp", sizeof a.channel);
	struct hr_err err;
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
}

static void put_tenant_key(struct store *st, const char *tenant, const char *key)
{
	struct tenant_row t;
	memset(&t, 0, sizeof t);
	hr_strlcpy(t.id, tenant, sizeof t.id);
	hr_strlcpy(t.name, tenant, sizeof t.name);
	struct hr_err err;
	assert_int_equal(st->ops->tenant_upsert(st, &t, &err), 0);
	char hash[65];
	hr_sha256_hex(key, strlen(key), hash);
	assert_int_equal(st->ops->api_key_put(st, tenant, hash, "test", &err), 0);
}

static void put_template(struct store *st, const char *name, const char *lang,
                         const char *body, int nparams, const char *config)
{
	struct template_row t = {.body = (char *)body, .param_count = nparams,
	                         .config = (char *)config};
	hr_strlcpy(t.tenant_id, "acme", sizeof t.tenant_id);
	hr_strlcpy(t.channel, "whatsapp", sizeof t.channel);
	hr_strlcpy(t.name, name, sizeof t.name);
	hr_strlcpy(t.language, lang, sizeof t.language);
	struct hr_err err;
	assert_int_equal(st->ops->template_upsert(st, &t, &err), 0);
}

/* Store with tenants acme and other (with their keys) and acme's templates:
 * payment_reminder (body only), statement (document header, a quick reply
 * and a URL button with parameters), welcome (a text header parameter, a
 * static URL button, a quick reply, regulatory fields) and promo (image
 * header). */
static void env_store(struct env *e)
{
	strcpy(e->dir, "/tmp/herald-test-api-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	char path[128];
	snprintf(path, sizeof path, "%s/herald.db", e->dir);
	struct store_opts so = {0};
	struct hr_err err;
	hr_err_clear(&err);
	int rc = store_sqlite.open(path, &so, &e->st, &err);
	if (rc != 0)
		fail_msg("store open: %s", err.msg);
	put_tenant_key(e->st, "acme", KEY_ACME);
	put_tenant_key(e->st, "other", KEY_OTHER);
	struct template_row t = {.body = "Hi {{1}}, you owe {{2}}.", .param_count = 2};
	hr_strlcpy(t.tenant_id, "acme", sizeof t.tenant_id);
	hr_strlcpy(t.channel, "whatsapp", sizeof t.channel);
	hr_strlcpy(t.name, "payment_reminder", sizeof t.name);
	hr_strlcpy(t.language, "en_GB", sizeof t.language);
	assert_int_equal(e->st->ops->template_upsert(e->st, &t, &err), 0);
	put_template(e->st, "statement", "en", "Your statement for {{1}} is ready.", 1,
	             "{\"header\":{\"type\":\"document\",\"params\":0},\"buttons\":["
	             "{\"type\":\"quick_reply\",\"params\":1},{\"type\":\"url\",\"params\":1}]}");
	put_template(e->st, "welcome", "en", "Welcome {{1}}!", 1,
	             "{\"header\":{\"type\":\"text\",\"params\":1},\"buttons\":["
	             "{\"type\":\"url\",\"params\":0},{\"type\":\"quick_reply\",\"params\":1}],"
	             "\"regulatory\":{\"dlt_entity_id\":\"1101\",\"dlt_template_id\":\"1107\"}}");
	put_template(e->st, "promo", "en", "New in store", 0,
	             "{\"header\":{\"type\":\"image\",\"params\":0}}");
	put_template(e->st, "newsletter", "en", "News for {{1}}", 1,
	             "{\"delivery_policy\":\"at_most_once\"}");
	put_tenant_key(e->st, "bulk", KEY_BULK);
}

/* The operator's policy for tenant-created accounts: acme reads secrets from
 * HERALD_TEST_* and the fixture's directory, "other" from HERALD_OTHER_*;
 * they may send to http://127.0.0.1:9 (nothing listens) and e->origin. */
static void env_policy(struct env *e)
{
	char cfg[1024];
	snprintf(cfg, sizeof cfg,
	         "{\"server\":{\"allowed_origins\":[\"http://127.0.0.1:9\"%s%s%s]},"
	         "\"tenants\":[{\"id\":\"acme\",\"secret_env_prefix\":\"HERALD_TEST_\","
	         "\"secret_file_dir\":\"%s/\"},{\"id\":\"other\",\"secret_env_prefix\":"
	         "\"HERALD_OTHER_\"}]}",
	         e->origin[0] ? ",\"" : "", e->origin, e->origin[0] ? "\"" : "", e->dir);
	json_t *j = json_loads(cfg, 0, NULL);
	assert_non_null(j);
	struct hr_err err;
	hr_err_clear(&err);
	if (channel_policy_init(&e->policy, j, &err) != 0)
		fail_msg("policy: %s", err.msg);
	json_decref(j);
}

static void env_load_accounts(struct env *e)
{
	struct hr_err err;
	hr_err_clear(&err);
	env_policy(e);
	int rc = account_set_load_policy(e->st, &e->policy, &e->set, &err);
	if (rc != 0)
		fail_msg("account_set_load: %s (%s)", err.msg, err.field);
}

/* Starts the API on a free port; tweak (may be NULL) adjusts the options. */
static void env_start_with(struct env *e, void (*tweak)(struct api_opts *o))
{
	struct hr_err err;
	hr_err_clear(&err);
	int rc;
	struct api_opts o;
	api_opts_default(&o);
	o.port = 0;
	o.public_url = "https://herald.example";
	o.store = e->st;
	o.accounts = &e->set;
	o.dispatcher = e->disp;
	if (tweak)
		tweak(&o);
	rc = api_start(&o, &e->srv, &err);
	if (rc != 0)
		fail_msg("api_start: %s", err.msg);
	assert_true(api_port(e->srv) > 0);
	snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", api_port(e->srv));
}

static void env_start(struct env *e)
{
	env_start_with(e, NULL);
}

static void env_stop(struct env *e)
{
	api_stop(e->srv);
	dispatcher_stop(e->disp);
	account_set_clear(&e->set);
	channel_policy_clear(&e->policy);
	e->st->ops->close(e->st);
	rm_tree(e->dir);
	memset(e, 0, sizeof *e);
}

struct resp {
	long status;
	char *body;
	size_t len;
	char hdrs[8192];
	size_t hlen;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	assert_non_null(b);
	memcpy(b + r->len, p, sz * n);
	r->len += sz * n;
	b[r->len] = '\0';
	r->body = b;
	return sz * n;
}

static size_t on_hdr(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t l = sz * n;
	if (r->hlen + l < sizeof r->hdrs) {
		memcpy(r->hdrs + r->hlen, p, l);
		r->hlen += l;
		r->hdrs[r->hlen] = '\0';
	}
	return l;
}

struct upload {
	const char *data;
	size_t len, off;
};

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
	struct upload *u = ud;
	size_t l = sz * n;
	if (l > u->len - u->off)
		l = u->len - u->off;
	memcpy(buf, u->data + u->off, l);
	u->off += l;
	return l;
}

/* One request. key NULL = no Authorization; extra = NULL-terminated header
 * lines; chunked = send the body without Content-Length. */
static void http_ex(const char *base, const char *method, const char *path, const char *key,
                    const char *body, size_t blen, const char *const *extra, int chunked,
                    struct resp *out)
{
	memset(out, 0, sizeof *out);
	CURL *c = curl_easy_init();
	assert_non_null(c);
	char url[4096];
	snprintf(url, sizeof url, "%s%s", base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_hdr);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	/* No "Expect: 100-continue" unless the caller asks for it. */
	bool expect = false;
	for (const char *const *x = extra; x && *x; x++)
		expect = expect || strncasecmp(*x, "Expect:", 7) == 0;
	struct curl_slist *h = expect ? NULL : curl_slist_append(NULL, "Expect:");
	char auth[256];
	if (key) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
	}
	for (; extra && *extra; extra++)
		h = curl_slist_append(h, *extra);
	struct upload up = {body, blen, 0};
	if (body && chunked) {
		h = curl_slist_append(h, "Transfer-Encoding: chunked");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &up);
	} else if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	}
	if (strcmp(method, "GET") && strcmp(method, "POST"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	else if (!strcmp(method, "POST") && !body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

static void http(const char *method, const char *path, const char *key, const char *body,
                 struct resp *out)
{
	http_ex(E.base, method, path, key, body, body ? strlen(body) : 0, NULL, 0, out);
}

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* Value of a response header (case-insensitive name), or NULL. */
static const char *header(struct resp *r, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	for (char *line = r->hdrs; line && *line;) {
		char *eol = strstr(line, "\r\n");
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			size_t l = eol ? (size_t)(eol - v) : strlen(v);
			if (l >= size)
				l = size - 1;
			memcpy(out, v, l);
			out[l] = '\0';
			return out;
		}
		line = eol ? eol + 2 : NULL;
	}
	return NULL;
}

static json_t *body_json(struct resp *r)
{
	json_error_t je;
	json_t *j = r->body ? json_loadb(r->body, r->len, 0, &je) : NULL;
	if (!j)
		fail_msg("response %ld is not JSON: %s", r->status, r->body ? r->body : "(empty)");
	return j;
}

static const char *jstr(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

/* The error body has the stable shape; field NULL means "no field". */
static void check_error(struct resp *r, long status, const char *code, const char *field)
{
	if (r->status != status)
		fail_msg("status %ld, want %ld: %s", r->status, status, r->body);
	char ct[128];
	assert_non_null(header(r, "Content-Type", ct, sizeof ct));
	assert_string_equal(ct, "application/json");
	json_t *j = body_json(r);
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(jstr(e, "code"), code);
	assert_non_null(jstr(e, "message"));
	assert_true(strlen(jstr(e, "message")) > 0);
	if (field) {
		if (!jstr(e, "field") || strcmp(jstr(e, "field"), field) != 0)
			fail_msg("field %s, want %s: %s", jstr(e, "field"), field, r->body);
	} else {
		assert_null(json_object_get(e, "field"));
	}
	json_decref(j);
}

static int64_t count_messages(struct store *st, const char *tenant)
{
	int64_t counts[MSG__COUNT], sum = 0;
	assert_int_equal(st->ops->message_counts(st, tenant, counts), 0);
	for (int i = 0; i < MSG__COUNT; i++)
		sum += counts[i];
	return sum;
}

static int64_t inbox_pending(void)
{
	int64_t n = -1;
	assert_int_equal(E.st->ops->inbox_pending(E.st, &n), 0);
	return n;
}

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	env_store(&E);
	put_account(E.st, "demo-wa", "acme", "http://127.0.0.1:9", "106540352242922");
	put_account(E.st, "second-wa", "acme", "http://127.0.0.1:9", "106540352242923");
	put_account(E.st, "other-wa", "other", "http://127.0.0.1:9", "106540352242924");
	/* Tenant bulk's only account sends at_most_once unless told otherwise. */
	struct account_row bulk = {
	    .config = "{\"base_url\":\"http://127.0.0.1:9\",\"phone_number_id\":\"106540352242925\","
	              "\"access_token\":\"tok\",\"app_secret\":\"" APP_SECRET "\","
	              "\"verify_token\":\"vt-123\",\"delivery_policy\":\"at_most_once\"}"};
	strcpy(bulk.id, "bulk-wa");
	strcpy(bulk.tenant_id, "bulk");
	strcpy(bulk.channel, "whatsapp");
	struct hr_err err;
	assert_int_equal(E.st->ops->account_upsert(E.st, &bulk, &err), 0);
	env_load_accounts(&E);
	env_start(&E);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	env_stop(&E);
	curl_global_cleanup();
	return 0;
}

/* ---------------------------------------------------------------------------
 * Tests.
 * ------------------------------------------------------------------------- */

static void test_health_and_routes(void **state)
{
	(void)state;
	struct resp r;
	http("GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	char v[256];
	assert_string_equal(header(&r, "Content-Type", v, sizeof v), "application/json");
	json_t *j = body_json(&r);
	assert_string_equal(jstr(j, "status"), "ok");
	json_decref(j);
	resp_free(&r);

	http("GET", "/readyz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);

	http("GET", "/nope", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("GET", "/v1/messages/x/y", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);

	http("DELETE", "/v1/messages", KEY_ACME, NULL, &r);
	check_error(&r, 405, "method_not_allowed", NULL);
	assert_non_null(header(&r, "Allow", v, sizeof v));
	assert_string_equal(v, "GET, HEAD, POST");
	resp_free(&r);
	http("GET", "/v1/messages:batch", KEY_ACME, NULL, &r);
	check_error(&r, 405, "method_not_allowed", NULL);
	assert_string_equal(header(&r, "Allow", v, sizeof v), "POST");
	resp_free(&r);
	http("POST", "/healthz", NULL, "{}", &r);
	check_error(&r, 405, "method_not_allowed", NULL);
	resp_free(&r);
}

static void test_auth(void **state)
{
	(void)state;
	const char *body = "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\"}";
	int64_t before = count_messages(E.st, NULL);
	struct resp r;
	http("POST", "/v1/messages", NULL, body, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	http("POST", "/v1/messages", "wrong-key", body, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	static const char *const basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
	http_ex(E.base, "POST", "/v1/messages", NULL, body, strlen(body), basic, 0, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	http("GET", "/v1/messages", NULL, NULL, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	assert_int_equal(count_messages(E.st, NULL), before);
	/* The right key twice: the second is served from the cache. */
	for (int i = 0; i < 2; i++) {
		http("GET", "/v1/messages?limit=1", KEY_ACME, NULL, &r);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
}

static void test_validation(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		long status;
		const char *code, *field;
	} cases[] = {
		{"{\"channel\":\"whatsapp\",\"text\":\"hi\"}", 422, "invalid", "to"},
		{"{\"to\":\"+447911123456\",\"text\":\"hi\"}", 422, "invalid", "channel"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\"}", 422, "invalid", "text"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"template\":{\"name\":\"payment_reminder\",\"language\":\"en_GB\"}}",
		 422, "invalid", "template"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"colour\":\"red\"}", 422, "invalid", "colour"},
		{"{\"channel\":\"whatsapp\",\"to\":", 400, "invalid_json", NULL},
		{"not json at all", 400, "invalid_json", NULL},
		{"{\"a\":1,\"a\":2}", 400, "invalid_json", NULL},
		{"[1,2]", 422, "invalid", NULL},
		{"{\"channel\":\"whatsapp\",\"to\":\"abc\",\"text\":\"hi\"}", 422, "invalid", "to"},
		{"{\"channel\":\"whatsapp\",\"to\":42,\"text\":\"hi\"}", 422, "invalid", "to"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"\"}", 422,
		 "invalid", "text"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":7}", 422, "invalid",
		 "text"},
		{"{\"channel\":\"telepathy\",\"to\":\"+447911123456\",\"text\":\"hi\"}", 422,
		 "invalid", "channel"},
		/* The account must match the channel and belong to the tenant. */
		{"{\"channel\":\"sms\",\"account\":\"demo-wa\",\"to\":\"+447911123456\","
		 "\"text\":\"hi\"}", 422, "invalid", "account"},
		{"{\"channel\":\"whatsapp\",\"account\":\"other-wa\",\"to\":\"+447911123456\","
		 "\"text\":\"hi\"}", 422, "invalid", "account"},
		{"{\"channel\":\"whatsapp\",\"account\":\"nope\",\"to\":\"+447911123456\","
		 "\"text\":\"hi\"}", 422, "invalid", "account"},
		/* Templates: exists, parameter count, shape. */
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"no_such\",\"language\":\"en_GB\",\"parameters\":[]}}", 422, "invalid",
		 "template.name"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"payment_reminder\",\"language\":\"fr\",\"parameters\":[\"a\",\"b\"]}}", 422,
		 "invalid", "template.name"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"payment_reminder\",\"language\":\"en_GB\",\"parameters\":[\"Ana\"]}}", 422,
		 "invalid", "template.parameters"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"payment_reminder\",\"language\":\"en_GB\",\"parameters\":[\"a\",\"b\",\"c\"]}}",
		 422, "invalid", "template.parameters[2]"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"payment_reminder\",\"language\":\"en_GB\",\"parameters\":[\"a\",5]}}", 422,
		 "invalid", "template.parameters[1]"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{\"name\":"
		 "\"payment_reminder\",\"language\":\"en_GB\",\"x\":1}}", 422, "invalid",
		 "template.x"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":\"hi\"}", 422,
		 "invalid", "template"},
		/* Modes and priorities. */
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"mode\":\"sync\"}", 422, "invalid", "mode"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"mode\":\"later\"}", 422, "invalid", "mode"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"timeout_ms\":100}", 422, "invalid", "timeout_ms"},
		{"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\","
		 "\"priority\":\"urgent\"}", 422, "invalid", "priority"},
	};
	int64_t before = count_messages(E.st, NULL);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct resp r;
		http("POST", "/v1/messages", KEY_ACME, cases[i].body, &r);
		if (r.status != cases[i].status)
			fail_msg("case %zu: status %ld: %s", i, r.status, r.body);
		check_error(&r, cases[i].status, cases[i].code, cases[i].field);
		resp_free(&r);
	}
	assert_int_equal(count_messages(E.st, NULL), before);

	/* A malformed Idempotency-Key is named as the field. */
	char longkey[300] = "Idempotency-Key: ";
	memset(longkey + strlen(longkey), 'k', 270);
	longkey[sizeof longkey - 1] = '\0';
	const char *hdr[] = {longkey, NULL};
	const char *ok = "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\"}";
	struct resp r;
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, ok, strlen(ok), hdr, 0, &r);
	check_error(&r, 422, "invalid", "Idempotency-Key");
	resp_free(&r);
}

/* Accepts a message and returns its id (static buffer per call site). */
static void accept_one(const char *key, const char *body, char id[HR_ID_LEN + 1])
{
	struct resp r;
	http("POST", "/v1/messages", key, body, &r);
	if (r.status != 202)
		fail_msg("accept: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	hr_strlcpy(id, jstr(j, "id"), HR_ID_LEN + 1);
	json_decref(j);
	resp_free(&r);
}

/* The policy a message is accepted with: its own, else its template's,
 * else its account's (at_least_once by default); shown on GET. */
static const char *policy_of(const char *key, const char *id)
{
	static char out[32];
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r;
	http("GET", path, key, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	hr_strlcpy(out, jstr(j, "delivery_policy"), sizeof out);
	json_decref(j);
	resp_free(&r);
	return out;
}

static void test_delivery_policy(void **state)
{
	(void)state;
	static const struct {
		const char *key, *body, *want;
	} cases[] = {
	    {KEY_ACME, "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"a\"}",
	     "at_least_once"},
	    {KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"a\","
	     "\"delivery_policy\":\"at_most_once\"}",
	     "at_most_once"},
	    /* The template's declaration... */
	    {KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"template\":{\"name\":"
	     "\"newsletter\",\"language\":\"en\",\"parameters\":[\"Ana\"]}}",
	     "at_most_once"},
	    /* ... which the message overrides. */
	    {KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"template\":{\"name\":"
	     "\"newsletter\",\"language\":\"en\",\"parameters\":[\"Ana\"]},"
	     "\"delivery_policy\":\"at_least_once\"}",
	     "at_least_once"},
	    /* The account's, under a template that declares none... */
	    {KEY_BULK,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"b\"}",
	     "at_most_once"},
	    /* ... and the message over the account. */
	    {KEY_BULK,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"b\","
	     "\"delivery_policy\":\"at_least_once\"}",
	     "at_least_once"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resp r;
		http("POST", "/v1/messages", cases[i].key, cases[i].body, &r);
		if (r.status != 202)
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		json_t *j = body_json(&r);
		assert_string_equal(jstr(j, "delivery_policy"), cases[i].want);
		char id[HR_ID_LEN + 1];
		hr_strlcpy(id, jstr(j, "id"), sizeof id);
		json_decref(j);
		resp_free(&r);
		if (strcmp(policy_of(cases[i].key, id), cases[i].want) != 0)
			fail_msg("case %zu: GET says %s", i, policy_of(cases[i].key, id));
		struct message m;
		memset(&m, 0, sizeof m);
		assert_int_equal(E.st->ops->message_get(E.st, NULL, id, &m), 0);
		assert_string_equal(delivery_policy_name(m.policy), cases[i].want);
		message_clear(&m);
	}
	/* Batch items carry their own. */
	struct resp r;
	http("POST", "/v1/messages:batch", KEY_ACME,
	     "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"c\","
	     "\"delivery_policy\":\"at_most_once\"},{\"channel\":\"whatsapp\",\"to\":"
	     "\"447911123457\",\"text\":\"d\"}]}",
	     &r);
	assert_int_equal(r.status, 202);
	json_t *j = body_json(&r);
	json_t *msgs = json_object_get(j, "messages");
	assert_int_equal(json_array_size(msgs), 2);
	assert_string_equal(policy_of(KEY_ACME, jstr(json_array_get(msgs, 0), "id")),
	                    "at_most_once");
	assert_string_equal(policy_of(KEY_ACME, jstr(json_array_get(msgs, 1), "id")),
	                    "at_least_once");
	json_decref(j);
	resp_free(&r);
	/* Anything else is refused, naming the field. */
	http("POST", "/v1/messages", KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"a\","
	     "\"delivery_policy\":\"exactly_once\"}",
	     &r);
	check_error(&r, 422, "invalid", "delivery_policy");
	resp_free(&r);
	http("POST", "/v1/messages:batch", KEY_ACME,
	     "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"c\","
	     "\"delivery_policy\":1}]}",
	     &r);
	check_error(&r, 422, "invalid", "messages[0].delivery_policy");
	resp_free(&r);
}

static void test_accept_get_isolation(void **state)
{
	(void)state;
	int64_t before = count_messages(E.st, "acme");
	struct resp r;
	http("POST", "/v1/messages", KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 123456\",\"text\":\"Hello there\"}", &r);
	assert_int_equal(r.status, 202);
	char v[128];
	assert_string_equal(header(&r, "Content-Type", v, sizeof v), "application/json");
	json_t *j = body_json(&r);
	char id[HR_ID_LEN + 1];
	assert_true(hr_id_valid(jstr(j, "id")));
	hr_strlcpy(id, jstr(j, "id"), sizeof id);
	assert_string_equal(jstr(j, "status"), "queued");
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_string_equal(jstr(j, "account"), "demo-wa"); /* the tenant's first */
	assert_string_equal(jstr(j, "to"), "447911123456");
	assert_string_equal(jstr(j, "delivery_policy"), "at_least_once");
	assert_int_equal(json_object_size(j), 6);
	json_decref(j);
	resp_free(&r);
	assert_int_equal(count_messages(E.st, "acme"), before + 1);

	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	http("GET", path, KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(jstr(j, "id"), id);
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_string_equal(jstr(j, "account"), "demo-wa");
	assert_string_equal(jstr(j, "to"), "447911123456");
	assert_string_equal(jstr(j, "status"), "queued");
	assert_string_equal(jstr(j, "priority"), "transactional");
	assert_string_equal(jstr(json_object_get(j, "content"), "type"), "text");
	assert_string_equal(jstr(json_object_get(j, "content"), "text"), "Hello there");
	assert_string_equal(jstr(j, "body"), "Hello there");
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 0);
	assert_true(json_is_null(json_object_get(j, "provider_id")));
	assert_true(json_is_null(json_object_get(j, "error")));
	const char *created = jstr(j, "created_at");
	assert_non_null(created);
	assert_int_equal(strlen(created), 27); /* 2026-01-15T10:00:00.123456Z */
	assert_int_equal(created[26], 'Z');
	assert_non_null(jstr(j, "updated_at"));
	json_t *events = json_object_get(j, "events");
	assert_int_equal(json_array_size(events), 1);
	json_t *ev = json_array_get(events, 0);
	assert_string_equal(jstr(ev, "type"), "accepted");
	assert_string_equal(jstr(ev, "source"), "api");
	assert_string_equal(jstr(ev, "status"), "queued");
	assert_true(json_is_true(json_object_get(ev, "applied")));
	assert_true(json_is_integer(json_object_get(ev, "id")));
	assert_non_null(jstr(ev, "at"));
	assert_true(json_is_null(json_object_get(ev, "provider_at")));
	assert_non_null(json_object_get(ev, "detail"));
	json_decref(j);
	resp_free(&r);

	/* Another tenant, an unknown id and a malformed id: all 404. */
	http("GET", path, KEY_OTHER, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("GET", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("GET", "/v1/messages/not-an-id", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	/* Nor does the other tenant's list show it. */
	http("GET", "/v1/messages?limit=1000", KEY_OTHER, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, id));
	resp_free(&r);

	/* A template message: content is canonical, body is rendered. */
	http("POST", "/v1/messages", KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"account\":\"second-wa\",\"to\":\"447911123457\","
	     "\"template\":{\"name\":\"payment_reminder\",\"language\":\"en_GB\","
	     "\"parameters\":[\"Ana\",\"\xc2\xa3" "120.00\"]},\"priority\":\"bulk\"}",
	     &r);
	if (r.status != 202)
		fail_msg("template accept: %ld %s", r.status, r.body);
	j = body_json(&r);
	assert_string_equal(jstr(j, "account"), "second-wa");
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(j, "id"));
	json_decref(j);
	resp_free(&r);
	http("GET", path, KEY_ACME, NULL, &r);
	j = body_json(&r);
	assert_string_equal(jstr(j, "body"), "Hi Ana, you owe \xc2\xa3" "120.00.");
	assert_string_equal(jstr(j, "priority"), "bulk");
	json_t *c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "template");
	json_t *t = json_object_get(c, "template");
	assert_string_equal(jstr(t, "name"), "payment_reminder");
	assert_string_equal(jstr(t, "language"), "en_GB");
	assert_int_equal(json_array_size(json_object_get(t, "parameters")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(t, "parameters"), 0)),
	                    "Ana");
	json_decref(j);
	resp_free(&r);
}

static void test_idempotency(void **state)
{
	(void)state;
	const char *body = "{\"channel\":\"whatsapp\",\"to\":\"+447700900500\",\"text\":\"once\"}";
	const char *hdr[] = {"Idempotency-Key: order-42", NULL};
	int64_t before = count_messages(E.st, "acme");
	struct resp r1, r2, r3;
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), hdr, 0, &r1);
	assert_int_equal(r1.status, 202);
	char v[64];
	assert_null(header(&r1, "Idempotent-Replayed", v, sizeof v));
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), hdr, 0, &r2);
	assert_int_equal(r2.status, 202);
	assert_string_equal(r2.body, r1.body);
	assert_string_equal(header(&r2, "Idempotent-Replayed", v, sizeof v), "true");
	assert_int_equal(count_messages(E.st, "acme"), before + 1);

	/* Same key, different request: refused, nothing written. */
	const char *other =
		"{\"channel\":\"whatsapp\",\"to\":\"+447700900500\",\"text\":\"twice\"}";
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, other, strlen(other), hdr, 0, &r3);
	check_error(&r3, 422, "idempotency_mismatch", "Idempotency-Key");
	assert_int_equal(count_messages(E.st, "acme"), before + 1);
	resp_free(&r1);
	resp_free(&r2);
	resp_free(&r3);

	/* Keys are per tenant: the other tenant's same key is a new request. */
	int64_t other_before = count_messages(E.st, "other");
	http_ex(E.base, "POST", "/v1/messages", KEY_OTHER, body, strlen(body), hdr, 0, &r1);
	assert_int_equal(r1.status, 202);
	assert_null(header(&r1, "Idempotent-Replayed", v, sizeof v));
	assert_int_equal(count_messages(E.st, "other"), other_before + 1);
	resp_free(&r1);

	/* Batch requests replay the same way. */
	const char *batch = "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447700900501\","
	                    "\"text\":\"a\"},{\"channel\":\"whatsapp\",\"to\":\"447700900502\","
	                    "\"text\":\"b\"}]}";
	const char *bh[] = {"Idempotency-Key: batch-7", NULL};
	before = count_messages(E.st, "acme");
	http_ex(E.base, "POST", "/v1/messages:batch", KEY_ACME, batch, strlen(batch), bh, 0, &r1);
	assert_int_equal(r1.status, 202);
	http_ex(E.base, "POST", "/v1/messages:batch", KEY_ACME, batch, strlen(batch), bh, 0, &r2);
	assert_int_equal(r2.status, 202);
	assert_string_equal(r1.body, r2.body);
	assert_string_equal(header(&r2, "Idempotent-Replayed", v, sizeof v), "true");
	assert_int_equal(count_messages(E.st, "acme"), before + 2);
	resp_free(&r1);
	resp_free(&r2);
}

static char *make_batch(int n, int bad_index, const char *prefix)
{
	size_t cap = (size_t)n * 96 + 64;
	char *b = malloc(cap);
	assert_non_null(b);
	size_t off = (size_t)snprintf(b, cap, "{%s\"messages\":[", prefix ? prefix : "");
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(b + off, cap - off,
		                        "%s{\"channel\":\"whatsapp\",\"to\":\"%s\","
		                        "\"text\":\"m%d\"}",
		                        i ? "," : "", i == bad_index ? "12" : "+447700800000", i);
	snprintf(b + off, cap - off, "]}");
	return b;
}

static void test_batch(void **state)
{
	(void)state;
	struct resp r;
	int64_t before = count_messages(E.st, "acme");
	char *b = make_batch(1000, -1, NULL);
	http("POST", "/v1/messages:batch", KEY_ACME, b, &r);
	free(b);
	if (r.status != 202)
		fail_msg("batch: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "count")), 1000);
	json_t *ms = json_object_get(j, "messages");
	assert_int_equal(json_array_size(ms), 1000);
	assert_true(hr_id_valid(jstr(json_array_get(ms, 999), "id")));
	assert_string_equal(jstr(json_array_get(ms, 0), "to"), "447700800000");
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(json_array_get(ms, 500), "id"));
	json_decref(j);
	resp_free(&r);
	assert_int_equal(count_messages(E.st, "acme"), before + 1000);
	/* Batch messages default to bulk priority. */
	http("GET", path, KEY_ACME, NULL, &r);
	j = body_json(&r);
	assert_string_equal(jstr(j, "priority"), "bulk");
	assert_string_equal(jstr(j, "body"), "m500");
	json_decref(j);
	resp_free(&r);

	/* One bad row names its index and nothing is written. */
	before = count_messages(E.st, "acme");
	b = make_batch(50, 17, NULL);
	http("POST", "/v1/messages:batch", KEY_ACME, b, &r);
	free(b);
	check_error(&r, 422, "invalid", "messages[17].to");
	resp_free(&r);
	/* Over the limit: refused naming the limit. */
	b = make_batch(10001, -1, NULL);
	http("POST", "/v1/messages:batch", KEY_ACME, b, &r);
	free(b);
	check_error(&r, 413, "too_large", "messages");
	assert_non_null(strstr(r.body, "10000"));
	resp_free(&r);
	assert_int_equal(count_messages(E.st, "acme"), before);

	static const struct {
		const char *body, *field;
	} bad[] = {
		{"{\"messages\":[]}", "messages"},
		{"{\"messages\":{}}", "messages"},
		{"{}", "messages"},
		{"{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447700800000\","
		 "\"text\":\"x\"}],\"mode\":\"sync\"}", "mode"},
		{"{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447700800000\",\"text\":\"x\","
		 "\"mode\":\"async\"}]}", "messages[0].mode"},
		{"{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447700800000\",\"text\":\"x\"},"
		 "7]}", "messages[1]"},
		{"{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"447700800000\","
		 "\"text\":\"x\"}],\"priority\":\"soon\"}", "priority"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		http("POST", "/v1/messages:batch", KEY_ACME, bad[i].body, &r);
		check_error(&r, 422, "invalid", bad[i].field);
		resp_free(&r);
	}
	assert_int_equal(count_messages(E.st, "acme"), before);

	/* A top-level priority applies to the items. */
	http("POST", "/v1/messages:batch", KEY_ACME,
	     "{\"priority\":\"transactional\",\"messages\":[{\"channel\":\"whatsapp\","
	     "\"to\":\"447700800001\",\"text\":\"x\"}]}", &r);
	assert_int_equal(r.status, 202);
	j = body_json(&r);
	snprintf(path, sizeof path, "/v1/messages/%s",
	         jstr(json_array_get(json_object_get(j, "messages"), 0), "id"));
	json_decref(j);
	resp_free(&r);
	http("GET", path, KEY_ACME, NULL, &r);
	j = body_json(&r);
	assert_string_equal(jstr(j, "priority"), "transactional");
	json_decref(j);
	resp_free(&r);
}

static void test_list(void **state)
{
	(void)state;
	char ids[5][HR_ID_LEN + 1];
	for (int i = 0; i < 5; i++)
		accept_one(KEY_ACME,
		           "{\"channel\":\"whatsapp\",\"to\":\"+447700900123\",\"text\":\"list\"}",
		           ids[i]);
	/* Pages of two, newest first, following next_cursor. */
	char path[256] = "/v1/messages?to=%2B447700900123&limit=2";
	int seen = 0;
	for (int page = 0; page < 3; page++) {
		struct resp r;
		http("GET", path, KEY_ACME, NULL, &r);
		assert_int_equal(r.status, 200);
		json_t *j = body_json(&r);
		json_t *data = json_object_get(j, "data");
		size_t n = json_array_size(data);
		assert_int_equal(n, page < 2 ? 2 : 1);
		for (size_t i = 0; i < n; i++) {
			json_t *m = json_array_get(data, i);
			assert_string_equal(jstr(m, "id"), ids[4 - seen]);
			assert_string_equal(jstr(m, "to"), "447700900123");
			assert_null(json_object_get(m, "events"));
			seen++;
		}
		json_t *next = json_object_get(j, "next_cursor");
		if (page < 2) {
			assert_string_equal(json_string_value(next), ids[5 - seen]);
			snprintf(path, sizeof path, "/v1/messages?to=447700900123&limit=2"
			         "&cursor=%s", json_string_value(next));
		} else {
			assert_true(json_is_null(next));
		}
		json_decref(j);
		resp_free(&r);
	}
	assert_int_equal(seen, 5);

	static const struct {
		const char *query;
		int want; /* -1: at least one */
	} filters[] = {
		{"to=447700900123&status=queued&channel=whatsapp", 5},
		{"to=447700900123&status=sent", 0},
		{"to=447700900123&since=2000-01-01T00:00:00Z", 5},
		{"to=447700900123&since=2000-01-01T01:00:00.5%2B01:00", 5},
		{"to=447700900123&until=2000-01-01T00:00:00Z", 0},
		{"to=447700900123&since=4102444800", 0}, /* 2100 */
		{"to=447700900123&until=4102444800", 5},
		{"status=queued&limit=3", 3},
	};
	for (size_t i = 0; i < sizeof filters / sizeof *filters; i++) {
		snprintf(path, sizeof path, "/v1/messages?%s", filters[i].query);
		struct resp r;
		http("GET", path, KEY_ACME, NULL, &r);
		if (r.status != 200)
			fail_msg("%s: %ld %s", path, r.status, r.body);
		json_t *j = body_json(&r);
		if ((int)json_array_size(json_object_get(j, "data")) != filters[i].want)
			fail_msg("%s: %zu results, want %d", path,
			         json_array_size(json_object_get(j, "data")), filters[i].want);
		json_decref(j);
		resp_free(&r);
	}

	static const struct {
		const char *query, *field;
	} bad[] = {
		{"status=bogus", "status"},   {"limit=0", "limit"},
		{"limit=1001", "limit"},      {"limit=ten", "limit"},
		{"since=yesterday", "since"}, {"until=2026-13-01T00:00:00Z", "until"},
		{"cursor=zzz", "cursor"},     {"colour=red", "colour"},
		{"channel=telepathy", "channel"},
		{"since=4102444800&until=4102444700", "until"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(path, sizeof path, "/v1/messages?%s", bad[i].query);
		struct resp r;
		http("GET", path, KEY_ACME, NULL, &r);
		check_error(&r, 422, "invalid", bad[i].field);
		resp_free(&r);
	}
}

static void test_size_limits(void **state)
{
	(void)state;
	size_t big = (4u << 20) + 16;
	char *b = malloc(big);
	assert_non_null(b);
	memset(b, ' ', big);
	b[0] = '{';
	b[big - 1] = '}';
	int64_t before = count_messages(E.st, NULL);
	struct resp r;
	/* The declared length is refused before the body: the client waits for
	 * that answer (100-continue) instead of writing 4 MiB into a connection
	 * the server closes, which fails the send now and then. */
	static const char *const expect[] = {"Expect: 100-continue", NULL};
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, b, big, expect, 0, &r);
	check_error(&r, 413, "too_large", NULL);
	resp_free(&r);
	/* Without a Content-Length the server counts and stops storing. */
	http_ex(E.base, "POST", "/v1/messages", KEY_ACME, b, big, NULL, 1, &r);
	check_error(&r, 413, "too_large", NULL);
	resp_free(&r);
	/* Webhooks have their own, smaller limit. */
	http_ex(E.base, "POST", "/webhooks/whatsapp/demo-wa", NULL, b, (1u << 20) + 1, expect, 0,
	        &r);
	check_error(&r, 413, "too_large", NULL);
	resp_free(&r);
	free(b);
	assert_int_equal(count_messages(E.st, NULL), before);

	/* Headers: up to max_header_bytes (16 KiB) pass; beyond it MHD refuses. */
	static const struct {
		size_t bytes;
		long status;
	} hl[] = {{8192, 200}, {15 * 1024, 200}, {18 * 1024, 431}, {64 * 1024, 431}};
	char *h = malloc(70000);
	assert_non_null(h);
	for (size_t i = 0; i < sizeof hl / sizeof *hl; i++) {
		strcpy(h, "X-Padding: ");
		memset(h + 11, 'a', hl[i].bytes - 11);
		h[hl[i].bytes] = '\0';
		const char *hdr[] = {h, NULL};
		http_ex(E.base, "GET", "/healthz", NULL, NULL, 0, hdr, 0, &r);
		if (r.status != hl[i].status)
			fail_msg("%zu bytes of headers: %ld, want %ld", hl[i].bytes, r.status,
			         hl[i].status);
		resp_free(&r);
	}
	free(h);
	/* The server still serves after refusing. */
	http("GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
}

static const char wa_body[] =
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\","
	"\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"
	"\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},"
	"\"statuses\":[{\"id\":\"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3\",\"status\":\"delivered\","
	"\"timestamp\":\"1750263773\",\"recipient_id\":\"15550123456\"}]},\"field\":"
	"\"messages\"}]}]}";

static void test_webhooks(void **state)
{
	(void)state;
	struct resp r;
	int64_t pending = inbox_pending();
	size_t len = strlen(wa_body);

	/* Unsigned and badly signed: 401, nothing stored. */
	http_ex(E.base, "POST", "/webhooks/whatsapp/demo-wa", NULL, wa_body, len, NULL, 0, &r);
	check_error(&r, 401, "bad_signature", "X-Hub-Signature-256");
	resp_free(&r);
	const char *bad[] = {"X-Hub-Signature-256: sha256=0000000000000000000000000000000000000"
	                     "000000000000000000000000000", NULL};
	http_ex(E.base, "POST", "/webhooks/whatsapp/demo-wa", NULL, wa_body, len, bad, 0, &r);
	check_error(&r, 401, "bad_signature", "X-Hub-Signature-256");
	resp_free(&r);
	assert_int_equal(inbox_pending(), pending);

	/* Correctly signed: 200 {} and one inbox row. The PROVIDERS.md vector. */
	char hex[65], sig[128];
	hr_hmac_sha256_hex(APP_SECRET, strlen(APP_SECRET), wa_body, len, hex);
	assert_string_equal(hex,
	                    "9ac0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f");
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	const char *good[] = {sig, NULL};
	http_ex(E.base, "POST", "/webhooks/whatsapp/demo-wa", NULL, wa_body, len, good, 0, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{}");
	resp_free(&r);
	assert_int_equal(inbox_pending(), pending + 1);
	/* The body is verified byte for byte: one byte more fails. */
	char *tampered = malloc(len + 2);
	memcpy(tampered, wa_body, len);
	tampered[len] = ' ';
	tampered[len + 1] = '\0';
	http_ex(E.base, "POST", "/webhooks/whatsapp/demo-wa", NULL, tampered, len + 1, good, 0, &r);
	check_error(&r, 401, "bad_signature", "X-Hub-Signature-256");
	resp_free(&r);
	free(tampered);
	/* Another account's secret is the same here, so the URL's account decides
	 * where the row goes; an unknown account or channel is a 404. */
	http_ex(E.base, "POST", "/webhooks/whatsapp/nope", NULL, wa_body, len, good, 0, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http_ex(E.base, "POST", "/webhooks/sms/demo-wa", NULL, wa_body, len, good, 0, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	assert_int_equal(inbox_pending(), pending + 1);

	/* GET handshake. */
	http("GET",
	     "/webhooks/whatsapp/demo-wa?hub.mode=subscribe&hub.verify_token=vt-123"
	     "&hub.challenge=1158201444",
	     NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "1158201444");
	char v[128];
	assert_non_null(header(&r, "Content-Type", v, sizeof v));
	assert_non_null(strstr(v, "text/plain"));
	resp_free(&r);
	http("GET",
	     "/webhooks/whatsapp/demo-wa?hub.mode=subscribe&hub.verify_token=wrong"
	     "&hub.challenge=1158201444",
	     NULL, NULL, &r);
	assert_int_equal(r.status, 403);
	assert_null(r.body ? strstr(r.body, "1158201444") : NULL);
	resp_free(&r);
}

/*
 * The scrape listener (server.metrics_listen): its own port, /metrics with
 * no credential and the same store counts as the API port's, nothing else;
 * an address that is not one is refused naming the key; without the
 * option there is none.
 */
static void test_metrics_listener(void **state)
{
	(void)state;
	assert_int_equal(api_metrics_port(E.srv), -1);
	struct api_opts o;
	api_opts_default(&o);
	o.port = 0;
	o.store = E.st;
	o.accounts = &E.set;
	o.metrics_listen_addr = "127.0.0.1";
	o.metrics_port = 0;
	struct api_server *srv = NULL;
	struct hr_err err;
	hr_err_clear(&err);
	assert_int_equal(api_start(&o, &srv, &err), 0);
	int mp = api_metrics_port(srv);
	assert_true(mp > 0 && mp != api_port(srv));
	char base[64];
	snprintf(base, sizeof base, "http://127.0.0.1:%d", mp);
	struct resp r;
	http_ex(base, "GET", "/metrics", NULL, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	char v[128];
	assert_non_null(header(&r, "Content-Type", v, sizeof v));
	assert_non_null(strstr(v, "text/plain; version=0.0.4"));
	int64_t g[MSG__COUNT];
	assert_int_equal(E.st->ops->message_gauges(E.st, g), 0);
	char line[96];
	snprintf(line, sizeof line, "\nherald_queue_depth{status=\"queued\"} %lld\n",
	         (long long)g[MSG_QUEUED]);
	assert_non_null(strstr(r.body, line));
	resp_free(&r);
	http_ex(base, "GET", "/v1/messages", KEY_ACME, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	http_ex(base, "DELETE", "/metrics", NULL, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 405);
	resp_free(&r);
	/* The API port's /metrics still needs the scope. */
	char api_base[64];
	snprintf(api_base, sizeof api_base, "http://127.0.0.1:%d", api_port(srv));
	http_ex(api_base, "GET", "/metrics", NULL, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	api_stop(srv);

	o.metrics_listen_addr = "not-an-address";
	srv = NULL;
	hr_err_clear(&err);
	assert_int_equal(api_start(&o, &srv, &err), HR_EINVAL);
	assert_null(srv);
	assert_string_equal(err.field, "server.metrics_listen");
}

static void test_metrics_endpoint(void **state)
{
	(void)state;
	struct resp r;
	/* metrics:read is needed (the config key has every scope). */
	http("GET", "/metrics", NULL, NULL, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	http("GET", "/metrics", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	char v[128];
	assert_non_null(header(&r, "Content-Type", v, sizeof v));
	assert_non_null(strstr(v, "text/plain; version=0.0.4"));
	assert_non_null(strstr(r.body, "# TYPE herald_http_responses_total counter"));
	/* Earlier tests accepted messages and stored one webhook. */
	const char *acc = strstr(r.body, "\nherald_messages_accepted_total ");
	assert_non_null(acc);
	assert_true(atol(acc + 32) >= 1000);
	const char *wh = strstr(r.body, "herald_webhooks_total{channel=\"whatsapp\","
	                                "result=\"received\"} ");
	assert_non_null(wh);
	assert_true(atol(strchr(wh, '}') + 2) >= 1);
	wh = strstr(r.body, "herald_webhooks_total{channel=\"whatsapp\",result=\"rejected\"} ");
	assert_non_null(wh);
	assert_true(atol(strchr(wh, '}') + 2) >= 2);
	const char *q = strstr(r.body, "herald_queue_depth{status=\"queued\"} ");
	assert_non_null(q);
	assert_true(atol(strchr(q, '}') + 2) >= 1000);
	const char *h4 = strstr(r.body, "herald_http_responses_total{code=\"4xx\"} ");
	assert_non_null(h4);
	assert_true(atol(strchr(h4, '}') + 2) >= 10);
	resp_free(&r);
}

/* ---------------------------------------------------------------------------
 * Outside text echoed back stays valid UTF-8; stored text never drops a
 * message from an answer.
 * ------------------------------------------------------------------------- */

static void test_utf8_echo(void **state)
{
	(void)state;
	/* Unknown keys are named as the field, cut to the 63 bytes that fit on
	 * a character boundary: never half a character, never a 500. */
	static const struct {
		size_t ks;
		const char *tail, *kept;
	} keys[] = {
		{62, "\xc3\xa9", ""},                        /* é would need 64 bytes */
		{61, "\xc3\xa9", "\xc3\xa9"},                /* exactly 63 */
		{61, "\xe2\x82\xac", ""},                    /* € */
		{60, "\xe2\x82\xac", "\xe2\x82\xac"},
		{60, "\xf0\x9f\x98\x80", ""},                /* U+1F600 */
		{59, "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
	};
	static const struct {
		const char *path, *fmt, *field_prefix;
	} where[] = {
		{"/v1/messages",
		 "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"hi\",\"%s\":1}",
		 ""},
		{"/v1/messages:batch", "{\"%s\":1,\"messages\":[{\"channel\":\"whatsapp\",\"to\":"
		 "\"+447911123456\",\"text\":\"hi\"}]}", ""},
		{"/v1/messages:batch", "{\"messages\":[{\"channel\":\"whatsapp\",\"to\":"
		 "\"+447911123456\",\"text\":\"hi\",\"%s\":1}]}", "messages[0]."},
		{"/v1/messages", "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"template\":{"
		 "\"name\":\"payment_reminder\",\"language\":\"en_GB\",\"%s\":1}}", "template."},
	};
	int64_t before = count_messages(E.st, NULL);
	for (size_t w = 0; w < sizeof where / sizeof *where; w++)
		for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
			char key[80], body[512], field[128];
			memset(key, 'k', keys[i].ks);
			snprintf(key + keys[i].ks, sizeof key - keys[i].ks, "%s", keys[i].tail);
			snprintf(body, sizeof body, where[w].fmt, key);
			snprintf(field, sizeof field, "%s%.*s%s", where[w].field_prefix,
			         (int)keys[i].ks, key, keys[i].kept);
			struct resp r;
			http("POST", where[w].path, KEY_ACME, body, &r);
			if (r.status != 422)
				fail_msg("%s key %zu: status %ld: %s", where[w].path, i, r.status,
				         r.body);
			check_error(&r, 422, "invalid", field);
			resp_free(&r);
		}
	assert_int_equal(count_messages(E.st, NULL), before);

	/* Query parameters arrive %-decoded: any bytes at all. */
	static const struct {
		const char *query, *field;
	} q[] = {
		{"%FF%FEx=1", "??x"},
		{"x%C3=1", "x?"},
		{"status=%FF%C3%A9", "status"},
		{"channel=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9"
		 "%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9", "channel"},
	};
	for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
		char path[512];
		snprintf(path, sizeof path, "/v1/messages?%s", q[i].query);
		struct resp r;
		http("GET", path, KEY_ACME, NULL, &r);
		check_error(&r, 422, "invalid", q[i].field);
		resp_free(&r);
	}
	/* So do path segments. */
	struct resp r;
	http("GET", "/v1/messages/%FF%C3", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);

	/* A parse error inside multi-byte text is a clean 400 (jansson's error
	 * text can quote the input). */
	char bad[1024] = "{\"a\":\"";
	for (int i = 0; i < 150; i++)
		strcat(bad, "\xc3\xa9");
	strcat(bad, "\x01\"}");
	http("POST", "/v1/messages", KEY_ACME, bad, &r);
	check_error(&r, 400, "invalid_json", NULL);
	resp_free(&r);
}

/* Stored text that is not UTF-8 (as a provider or an old client gave it)
 * is shown with '?' for each bad byte; the message is never left out. */
static void test_stored_text(void **state)
{
	(void)state;
	struct env e;
	memset(&e, 0, sizeof e);
	env_store(&e);
	put_account(e.st, "demo-wa", "acme", "http://127.0.0.1:9", "106540352242922");
	env_load_accounts(&e);
	env_start(&e);

	struct message m[2];
	memset(m, 0, sizeof m);
	int64_t now = hr_now_us();
	for (int i = 0; i < 2; i++) {
		hr_id_new(m[i].id);
		hr_strlcpy(m[i].tenant_id, "acme", sizeof m[i].tenant_id);
		hr_strlcpy(m[i].account_id, "demo-wa", sizeof m[i].account_id);
		hr_strlcpy(m[i].channel, "whatsapp", sizeof m[i].channel);
		hr_strlcpy(m[i].recipient, "447700900777", sizeof m[i].recipient);
		m[i].content = i ? "{\"type\":\"text\",\"text\":\"fine\"}"
		                 : "{\"type\":\"text\",\"text\":\"caf\\u00e9\"}";
		m[i].body = i ? "fine" : "caf\xe9 \xff!";
		m[i].status = MSG_QUEUED;
		m[i].max_attempts = 8;
		m[i].created_at = m[i].updated_at = m[i].due_at = now + i;
	}
	struct store *st = e.st;
	assert_int_equal(st->ops->message_insert(st, m, 2, NULL, NULL, NULL), 0);
	/* The first fails at the provider with an error text in Latin-1. */
	struct message claimed[2];
	size_t n = 0;
	assert_int_equal(st->ops->claim(st, "demo-wa", hr_now_us() + 1000, 30000000, 1, claimed,
	                                &n),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(claimed[0].id, m[0].id);
	message_clear(&claimed[0]);
	struct send_result res = {.attempt = 1, .kind = SEND_FAILED, .http_status = 400};
	hr_strlcpy(res.message_id, m[0].id, sizeof res.message_id);
	hr_strlcpy(res.error_code, "13\xff", sizeof res.error_code);
	hr_strlcpy(res.error_text, "r\xe9sum\xe9 refus\xe9", sizeof res.error_text);
	hr_strlcpy(res.provider_id, "wamid.\xc3", sizeof res.provider_id);
	assert_int_equal(st->ops->record_results(st, &res, 1, NULL, NULL), 0);

	struct resp r;
	http_ex(e.base, "GET", "/v1/messages?to=447700900777", KEY_ACME, NULL, 0, NULL, 0, &r);
	if (r.status != 200)
		fail_msg("list: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	json_t *data = json_object_get(j, "data");
	assert_int_equal(json_array_size(data), 2);
	json_t *bad = json_array_get(data, 1); /* newest first */
	assert_string_equal(jstr(bad, "id"), m[0].id);
	assert_string_equal(jstr(bad, "body"), "caf? ?!");
	assert_string_equal(jstr(json_object_get(bad, "content"), "text"), "caf\xc3\xa9");
	assert_string_equal(jstr(bad, "status"), "failed");
	assert_string_equal(jstr(json_object_get(bad, "error"), "code"), "13?");
	assert_string_equal(jstr(json_object_get(bad, "error"), "message"), "r?sum? refus?");
	assert_string_equal(jstr(json_array_get(data, 0), "body"), "fine");
	json_decref(j);
	resp_free(&r);

	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", m[0].id);
	http_ex(e.base, "GET", path, KEY_ACME, NULL, 0, NULL, 0, &r);
	if (r.status != 200)
		fail_msg("get: %ld %s", r.status, r.body);
	j = body_json(&r);
	assert_string_equal(jstr(j, "body"), "caf? ?!");
	assert_string_equal(jstr(json_object_get(j, "error"), "message"), "r?sum? refus?");
	assert_true(json_array_size(json_object_get(j, "events")) >= 2);
	json_decref(j);
	resp_free(&r);
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * dispatch.max_attempts reaches the messages the API accepts.
 * ------------------------------------------------------------------------- */

static void three_attempts(struct api_opts *o)
{
	o->max_attempts = 3;
}

static int stored_max_attempts(struct env *e)
{
	static const char body[] =
		"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"tries\"}";
	char id[HR_ID_LEN + 1];
	struct resp r;
	http_ex(e->base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0, &r);
	if (r.status != 202)
		fail_msg("accept: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	hr_strlcpy(id, jstr(j, "id"), sizeof id);
	json_decref(j);
	resp_free(&r);
	struct message m;
	memset(&m, 0, sizeof m);
	assert_int_equal(e->st->ops->message_get(e->st, "acme", id, &m), 0);
	int n = m.max_attempts;
	message_clear(&m);
	return n;
}

static void test_max_attempts(void **state)
{
	(void)state;
	struct env e;
	memset(&e, 0, sizeof e);
	env_store(&e);
	put_account(e.st, "demo-wa", "acme", "http://127.0.0.1:9", "106540352242922");
	env_load_accounts(&e);
	env_start_with(&e, three_attempts);
	assert_int_equal(stored_max_attempts(&e), 3);
	api_stop(e.srv);
	/* 0 is the dispatcher's default. */
	env_start(&e);
	struct dispatch_opts dop;
	dispatch_opts_default(&dop);
	assert_int_equal(stored_max_attempts(&e), dop.max_attempts);
	/* A negative count is refused, naming the config key. */
	struct api_opts o;
	api_opts_default(&o);
	o.port = 0;
	o.store = e.st;
	o.accounts = &e.set;
	o.max_attempts = -1;
	struct api_server *srv = NULL;
	struct hr_err err;
	hr_err_clear(&err);
	assert_int_equal(api_start(&o, &srv, &err), HR_EINVAL);
	assert_null(srv);
	assert_string_equal(err.field, "dispatch.max_attempts");
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * Content model: every content kind, shapes, templates' declarations.
 * ------------------------------------------------------------------------- */

#define MSG_TO "\"channel\":\"whatsapp\",\"to\":\"+447911123456\","
#define STMT "\"template\":{\"name\":\"statement\",\"language\":\"en\",\"parameters\":[\"May\"],"
#define STMT_DOC "\"header\":{\"type\":\"document\",\"url\":\"https://x.test/s.pdf\"}"
#define WELCOME "\"template\":{\"name\":\"welcome\",\"language\":\"en\",\"parameters\":[\"Ana\"],"

static void test_content_validation(void **state)
{
	(void)state;
	static const struct {
		const char *body, *field;
	} cases[] = {
		/* One content kind, named by the second one given. */
		{"{" MSG_TO "\"text\":\"hi\",\"document\":{\"url\":\"https://x.test/a.pdf\"}}",
		 "document"},
		{"{" MSG_TO "\"image\":{\"url\":\"https://x.test/a.png\"},"
		 "\"card\":{\"title\":\"t\"}}",
		 "card"},
		{"{" MSG_TO "\"options\":{}}", "text"},
		/* Buttons and actions go with text; options is an object. */
		{"{" MSG_TO "\"document\":{\"url\":\"https://x.test/a.pdf\"},\"buttons\":[]}",
		 "buttons"},
		{"{" MSG_TO "\"image\":{\"url\":\"https://x.test/a.png\"},\"actions\":[]}",
		 "actions"},
		{"{" MSG_TO "\"text\":\"hi\",\"buttons\":{\"id\":\"y\"}}", "buttons"},
		{"{" MSG_TO "\"text\":\"hi\",\"actions\":\"call\"}", "actions"},
		{"{" MSG_TO "\"text\":\"hi\",\"options\":[1]}", "options"},
		/* Documents and images: an object with a url and known keys. */
		{"{" MSG_TO "\"document\":\"https://x.test/a.pdf\"}", "document"},
		{"{" MSG_TO "\"document\":{\"filename\":\"a.pdf\"}}", "document.url"},
		{"{" MSG_TO "\"document\":{\"url\":\"\"}}", "document.url"},
		{"{" MSG_TO "\"document\":{\"link\":\"https://x.test/a.pdf\"}}", "document.link"},
		{"{" MSG_TO "\"document\":{\"url\":\"https://x.test/a.pdf\",\"caption\":5}}",
		 "document.caption"},
		{"{" MSG_TO "\"image\":{\"url\":\"https://x.test/a.png\",\"filename\":\"a.png\"}}",
		 "image.filename"},
		/* Cards and carousels. */
		{"{" MSG_TO "\"card\":{}}", "card"},
		{"{" MSG_TO "\"card\":{\"title\":\"t\",\"image_url\":\"u\"}}", "card.image_url"},
		{"{" MSG_TO "\"card\":{\"title\":\"t\",\"buttons\":{}}}", "card.buttons"},
		{"{" MSG_TO "\"carousel\":[]}", "carousel"},
		{"{" MSG_TO "\"carousel\":[{\"title\":\"a\"},{\"foo\":1}]}", "carousel[1].foo"},
		{"{" MSG_TO "\"carousel\":{\"cards\":[{\"title\":5}]}}", "carousel.cards[0].title"},
		{"{" MSG_TO "\"carousel\":{\"items\":[]}}", "carousel.items"},
		/* Valid content the channel does not support: named by its key. */
		{"{" MSG_TO "\"card\":{\"title\":\"Offer\",\"description\":\"d\"}}", "card"},
		{"{" MSG_TO "\"carousel\":[{\"title\":\"A\"},{\"title\":\"B\"}]}", "carousel"},
		/* Template header, as the template declares it. */
		{"{" MSG_TO STMT "\"buttons\":[{\"payload\":\"P\"},{\"text\":\"x\"}]}}",
		 "template.header"},
		{"{" MSG_TO STMT "\"header\":{\"type\":\"image\","
		 "\"url\":\"https://x.test/a.png\"}}}",
		 "template.header.type"},
		{"{" MSG_TO STMT "\"header\":{\"type\":\"document\"}}}", "template.header.url"},
		{"{" MSG_TO STMT "\"header\":{\"type\":\"document\",\"url\":\"u\","
		 "\"caption\":\"c\"}}}",
		 "template.header.caption"},
		{"{" MSG_TO STMT "\"header\":[]}}", "template.header"},
		{"{" MSG_TO "\"template\":{\"name\":\"payment_reminder\",\"language\":\"en_GB\","
		 "\"parameters\":[\"a\",\"b\"],"
		 "\"header\":{\"type\":\"text\",\"parameters\":[\"x\"]}}}",
		 "template.header"},
		{"{" MSG_TO WELCOME "\"buttons\":[{\"index\":1,\"payload\":\"GO\"}]}}",
		 "template.header"},
		{"{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"parameters\":[]},"
		 "\"buttons\":[{\"index\":1,\"payload\":\"GO\"}]}}", "template.header.parameters"},
		{"{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"parameters\":[\"a\",\"b\"]},"
		 "\"buttons\":[{\"index\":1,\"payload\":\"GO\"}]}}",
		 "template.header.parameters[1]"},
		{"{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"parameters\":[7]},"
		 "\"buttons\":[{\"index\":1,\"payload\":\"GO\"}]}}",
		 "template.header.parameters[0]"},
		{"{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"text\":\"a\","
		 "\"parameters\":[\"a\"]},"
		 "\"buttons\":[{\"index\":1,\"payload\":\"GO\"}]}}", "template.header.text"},
		/* Template buttons: one entry per declared button with a parameter. */
		{"{" MSG_TO STMT STMT_DOC "}}", "template.buttons[0].payload"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"payload\":\"P\"}]}}",
		 "template.buttons[1].text"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"payload\":\"P\"},"
		 "{\"index\":1,\"payload\":\"x\"}]}}", "template.buttons[1].payload"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"text\":\"P\"},"
		 "{\"index\":1,\"text\":\"x\"}]}}", "template.buttons[0].text"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"payload\":\"\"},"
		 "{\"index\":1,\"text\":\"x\"}]}}", "template.buttons[0].payload"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":5,\"payload\":\"P\"}]}}",
		 "template.buttons[0].index"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":-1,\"payload\":\"P\"}]}}",
		 "template.buttons[0].index"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"payload\":\"a\"},"
		 "{\"index\":0,\"payload\":\"b\"}]}}", "template.buttons[1].index"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[{\"index\":0,\"payload\":\"a\","
		 "\"label\":\"b\"}]}}", "template.buttons[0].label"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":[\"a\"]}}", "template.buttons[0]"},
		{"{" MSG_TO STMT STMT_DOC ",\"buttons\":{}}}", "template.buttons"},
		{"{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"text\":\"Ana\"},"
		 "\"buttons\":[{\"text\":\"x\"}]}}", "template.buttons[0]"},
		{"{" MSG_TO "\"template\":{\"name\":\"payment_reminder\",\"language\":\"en_GB\","
		 "\"parameters\":[\"a\",\"b\"],\"buttons\":[{\"payload\":\"x\"}]}}",
		 "template.buttons[0]"},
		/* Body parameters are still counted. */
		{"{" MSG_TO "\"template\":{\"name\":\"statement\",\"language\":\"en\","
		 "\"parameters\":[]," STMT_DOC "}}", "template.parameters"},
	};
	int64_t before = count_messages(E.st, NULL);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct resp r;
		http("POST", "/v1/messages", KEY_ACME, cases[i].body, &r);
		if (r.status != 422 || !strstr(r.body, cases[i].field))
			fail_msg("case %zu: %ld %s (want field %s)", i, r.status, r.body,
			         cases[i].field);
		check_error(&r, 422, "invalid", cases[i].field);
		resp_free(&r);
	}
	/* In a batch, the field carries the item's index. */
	struct resp r;
	http("POST", "/v1/messages:batch", KEY_ACME,
	     "{\"messages\":[{" MSG_TO "\"text\":\"ok\"},{" MSG_TO
	     "\"document\":{\"caption\":\"c\"}}]}",
	     &r);
	check_error(&r, 422, "invalid", "messages[1].document.url");
	resp_free(&r);
	assert_int_equal(count_messages(E.st, NULL), before);
}

/* Accepts body as acme and returns the stored message (GET /v1/messages/{id}). */
static json_t *accept_and_get(const char *body)
{
	char id[HR_ID_LEN + 1], path[64];
	accept_one(KEY_ACME, body, id);
	snprintf(path, sizeof path, "/v1/messages/%s", id);
	struct resp r;
	http("GET", path, KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	resp_free(&r);
	return j;
}

static void test_content_accept(void **state)
{
	(void)state;
	/* Text with reply buttons and options: copied as given. */
	json_t *j = accept_and_get("{" MSG_TO "\"text\":\"Pay now?\",\"buttons\":[{\"id\":\"yes\","
	                           "\"title\":\"Yes\"},{\"id\":\"no\",\"title\":\"No\"}],"
	                           "\"options\":{\"preview_url\":true}}");
	json_t *c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "text");
	assert_string_equal(jstr(c, "text"), "Pay now?");
	json_t *b = json_object_get(c, "buttons");
	assert_int_equal(json_array_size(b), 2);
	assert_string_equal(jstr(json_array_get(b, 1), "id"), "no");
	assert_string_equal(jstr(json_array_get(b, 1), "title"), "No");
	assert_true(json_is_true(json_object_get(json_object_get(c, "options"), "preview_url")));
	assert_string_equal(jstr(j, "body"), "Pay now?");
	assert_null(json_object_get(j, "segments"));
	json_decref(j);

	/* A template with a document header and both buttons, given out of
	 * order: canonical content lists them by index. */
	j = accept_and_get("{" MSG_TO STMT "\"header\":{\"type\":\"document\",\"url\":"
	                   "\"https://x.test/s.pdf\",\"filename\":\"May.pdf\"},\"buttons\":["
	                   "{\"index\":1,\"text\":\"acc/42\"},"
	                   "{\"index\":0,\"payload\":\"PAY\"}]}}");
	assert_string_equal(jstr(j, "body"), "Your statement for May is ready.");
	c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "template");
	json_t *t = json_object_get(c, "template");
	assert_string_equal(jstr(t, "name"), "statement");
	assert_string_equal(jstr(t, "language"), "en");
	json_t *h = json_object_get(t, "header");
	assert_int_equal(json_object_size(h), 3);
	assert_string_equal(jstr(h, "type"), "document");
	assert_string_equal(jstr(h, "url"), "https://x.test/s.pdf");
	assert_string_equal(jstr(h, "filename"), "May.pdf");
	b = json_object_get(t, "buttons");
	assert_int_equal(json_array_size(b), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "index")), 0);
	assert_string_equal(jstr(json_array_get(b, 0), "payload"), "PAY");
	assert_int_equal(json_object_size(json_array_get(b, 0)), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 1), "index")), 1);
	assert_string_equal(jstr(json_array_get(b, 1), "text"), "acc/42");
	assert_null(json_object_get(t, "regulatory"));
	json_decref(j);

	/* A text header parameter becomes the header's text; the template's
	 * regulatory fields are carried; the static URL button takes nothing. */
	j = accept_and_get("{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"parameters\":"
	                   "[\"Ana\"]},\"buttons\":[{\"index\":1,\"payload\":\"START\"}]}}");
	t = json_object_get(json_object_get(j, "content"), "template");
	h = json_object_get(t, "header");
	assert_int_equal(json_object_size(h), 2);
	assert_string_equal(jstr(h, "type"), "text");
	assert_string_equal(jstr(h, "text"), "Ana");
	b = json_object_get(t, "buttons");
	assert_int_equal(json_array_size(b), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "index")), 1);
	assert_string_equal(jstr(json_array_get(b, 0), "payload"), "START");
	json_t *reg = json_object_get(t, "regulatory");
	assert_int_equal(json_object_size(reg), 2);
	assert_string_equal(jstr(reg, "dlt_entity_id"), "1101");
	assert_string_equal(jstr(reg, "dlt_template_id"), "1107");
	json_decref(j);
	/* ... and its single value may be given as "text". */
	j = accept_and_get("{" MSG_TO WELCOME "\"header\":{\"type\":\"text\",\"text\":\"Bo\"},"
	                   "\"buttons\":[{\"index\":1,\"payload\":\"S\"}]}}");
	h = json_object_get(json_object_get(json_object_get(j, "content"), "template"), "header");
	assert_string_equal(jstr(h, "text"), "Bo");
	json_decref(j);

	/* An image header; no buttons declared, none sent. */
	j = accept_and_get("{" MSG_TO "\"template\":{\"name\":\"promo\",\"language\":\"en\","
	                   "\"header\":{\"type\":\"image\",\"url\":\"https://x.test/p.png\"}}}");
	t = json_object_get(json_object_get(j, "content"), "template");
	assert_string_equal(jstr(json_object_get(t, "header"), "url"), "https://x.test/p.png");
	assert_null(json_object_get(t, "buttons"));
	assert_int_equal(json_array_size(json_object_get(t, "parameters")), 0);
	assert_string_equal(jstr(j, "body"), "New in store");
	json_decref(j);

	/* Documents and images: the body is the caption, else the filename. */
	j = accept_and_get("{" MSG_TO "\"document\":{\"url\":\"https://x.test/s.pdf\","
	                   "\"filename\":\"statement.pdf\",\"caption\":\"Your May statement\"}}");
	c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "document");
	json_t *d = json_object_get(c, "document");
	assert_int_equal(json_object_size(d), 3);
	assert_string_equal(jstr(d, "url"), "https://x.test/s.pdf");
	assert_string_equal(jstr(d, "filename"), "statement.pdf");
	assert_string_equal(jstr(j, "body"), "Your May statement");
	json_decref(j);
	j = accept_and_get("{" MSG_TO "\"document\":{\"url\":\"https://x.test/s.pdf\","
	                   "\"filename\":\"statement.pdf\"}}");
	assert_string_equal(jstr(j, "body"), "statement.pdf");
	json_decref(j);
	j = accept_and_get("{" MSG_TO "\"image\":{\"url\":\"https://x.test/a.png\"}}");
	c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "image");
	assert_string_equal(jstr(json_object_get(c, "image"), "url"), "https://x.test/a.png");
	assert_true(json_is_null(json_object_get(j, "body")));
	json_decref(j);
}

/* ---------------------------------------------------------------------------
 * Suppressions.
 * ------------------------------------------------------------------------- */

/* The "to" values of a suppression listing, comma-joined. */
static void supp_list(const char *key, const char *query, char *out, size_t size)
{
	char path[128];
	snprintf(path, sizeof path, "/v1/suppressions%s", query);
	struct resp r;
	http("GET", path, key, NULL, &r);
	if (r.status != 200)
		fail_msg("list: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	json_t *data = json_object_get(j, "data");
	assert_true(json_is_array(data));
	out[0] = '\0';
	size_t i;
	json_t *row;
	json_array_foreach(data, i, row) {
		assert_non_null(jstr(row, "channel"));
		assert_non_null(jstr(row, "reason"));
		const char *at = jstr(row, "created_at");
		assert_non_null(at);
		assert_int_equal(strlen(at), 27);
		size_t l = strlen(out);
		snprintf(out + l, size - l, "%s%s", l ? "," : "", jstr(row, "to"));
	}
	json_decref(j);
	resp_free(&r);
}

static void test_suppressions(void **state)
{
	(void)state;
	struct resp r;
	http("POST", "/v1/suppressions", KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"+44 7911 000001\",\"reason\":\"asked by phone\"}",
	     &r);
	assert_int_equal(r.status, 201);
	json_t *j = body_json(&r);
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_string_equal(jstr(j, "to"), "447911000001"); /* normalised */
	assert_string_equal(jstr(j, "reason"), "asked by phone");
	json_decref(j);
	resp_free(&r);
	http("POST", "/v1/suppressions", KEY_ACME,
	     "{\"channel\":\"whatsapp\",\"to\":\"447911000002\"}", &r);
	assert_int_equal(r.status, 201);
	j = body_json(&r);
	assert_string_equal(jstr(j, "reason"), "api");
	json_decref(j);
	resp_free(&r);

	static const struct {
		const char *body;
		long status;
		const char *field;
	} bad[] = {
		{"{\"channel\":\"pigeon\",\"to\":\"447911000003\"}", 422, "channel"},
		{"{\"to\":\"447911000003\"}", 422, "channel"},
		{"{\"channel\":\"whatsapp\"}", 422, "to"},
		{"{\"channel\":\"whatsapp\",\"to\":\"call me\"}", 422, "to"},
		{"{\"channel\":\"whatsapp\",\"to\":\"447911000003\",\"reason\":7}", 422, "reason"},
		{"{\"channel\":\"whatsapp\",\"to\":\"447911000003\",\"colour\":\"red\"}", 422,
		 "colour"},
		{"[]", 422, NULL},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		http("POST", "/v1/suppressions", KEY_ACME, bad[i].body, &r);
		check_error(&r, bad[i].status, "invalid", bad[i].field);
		resp_free(&r);
	}
	char longreason[400];
	snprintf(longreason, sizeof longreason,
	         "{\"channel\":\"whatsapp\",\"to\":\"447911000003\",\"reason\":\"%0300d\"}", 0);
	http("POST", "/v1/suppressions", KEY_ACME, longreason, &r);
	check_error(&r, 422, "invalid", "reason");
	resp_free(&r);
	http("POST", "/v1/suppressions", KEY_ACME, "{\"channel\":", &r);
	check_error(&r, 400, "invalid_json", NULL);
	resp_free(&r);

	char list[512];
	supp_list(KEY_ACME, "?channel=whatsapp", list, sizeof list);
	assert_string_equal(list, "447911000001,447911000002");
	supp_list(KEY_ACME, "", list, sizeof list);
	assert_string_equal(list, "447911000001,447911000002");
	supp_list(KEY_OTHER, "", list, sizeof list); /* per tenant */
	assert_string_equal(list, "");
	http("GET", "/v1/suppressions?channel=pigeon", KEY_ACME, NULL, &r);
	check_error(&r, 422, "invalid", "channel");
	resp_free(&r);
	http("GET", "/v1/suppressions?to=1", KEY_ACME, NULL, &r);
	check_error(&r, 422, "invalid", "to");
	resp_free(&r);
	http("GET", "/v1/suppressions", NULL, NULL, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);

	/* Deleting: another tenant cannot; the owner can, once; the path's
	 * recipient is normalised like the body's ("%2B" is '+'). */
	http("DELETE", "/v1/suppressions/whatsapp/447911000001", KEY_OTHER, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("DELETE", "/v1/suppressions/whatsapp/%2B447911000001", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	resp_free(&r);
	http("DELETE", "/v1/suppressions/whatsapp/447911000001", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("DELETE", "/v1/suppressions/pigeon/447911000002", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("DELETE", "/v1/suppressions/whatsapp/abc", KEY_ACME, NULL, &r);
	check_error(&r, 422, "invalid", "to");
	resp_free(&r);
	http("GET", "/v1/suppressions/whatsapp/447911000002", KEY_ACME, NULL, &r);
	check_error(&r, 405, "method_not_allowed", NULL);
	char v[64];
	assert_string_equal(header(&r, "Allow", v, sizeof v), "DELETE");
	resp_free(&r);
	http("DELETE", "/v1/suppressions", KEY_ACME, NULL, &r);
	check_error(&r, 405, "method_not_allowed", NULL);
	resp_free(&r);
	supp_list(KEY_ACME, "?channel=whatsapp", list, sizeof list);
	assert_string_equal(list, "447911000002");
	http("DELETE", "/v1/suppressions/whatsapp/447911000002", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 204);
	resp_free(&r);
	supp_list(KEY_ACME, "", list, sizeof list);
	assert_string_equal(list, "");
}

/* ---------------------------------------------------------------------------
 * Channel accounts through the API.
 * ------------------------------------------------------------------------- */

#define NEW_SECRET "api-app-secret-456"

/* A WhatsApp account body; secrets by reference (env and a file). */
static void wa_account_body(char *out, size_t size, const char *id, const char *base_url,
                            const char *pnid, const char *extra)
{
	snprintf(out, size,
	         "{\"id\":\"%s\",\"channel\":\"whatsapp\",\"base_url\":\"%s\",\"phone_number_id\":"
	         "\"%s\",\"access_token\":\"env:HERALD_TEST_WA_TOKEN\",\"app_secret\":"
	         "\"env:HERALD_TEST_WA_SECRET\",\"verify_token\":\"file:%s/vt\","
	         "\"rate_limit\":5%s}",
	         id, base_url, pnid, E.dir, extra ? extra : "");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static json_t *find_account(json_t *list, const char *id)
{
	size_t i;
	json_t *a;
	json_array_foreach(list, i, a)
		if (!strcmp(jstr(a, "id"), id))
			return a;
	return NULL;
}

/* An account's config is kept in memory for as long as the server runs (a
 * replaced one is retired, not freed) and in the store: a tenant may not make
 * it megabytes of padding, 4 MiB a request. */
static void test_channel_config_size(void **state)
{
	(void)state;
	setenv("HERALD_TEST_WA_TOKEN", "api-token-1", 1);
	setenv("HERALD_TEST_WA_SECRET", NEW_SECRET, 1);
	char vt[128];
	snprintf(vt, sizeof vt, "%s/vt", E.dir);
	write_file(vt, "api-verify-1\n");
	enum { PAD = 64 * 1024 };
	char *pad = malloc(PAD + 32);
	assert_non_null(pad);
	strcpy(pad, ",\"note\":\"");
	size_t l = strlen(pad);
	memset(pad + l, 'x', PAD);
	strcpy(pad + l + PAD, "\"");
	size_t size = PAD + 1024;
	char *body = malloc(size);
	assert_non_null(body);
	wa_account_body(body, size, "big-wa", "http://127.0.0.1:9", "555000999", pad);
	struct resp r;
	http("POST", "/v1/channels", KEY_ACME, body, &r);
	check_error(&r, 413, "too_large", NULL);
	resp_free(&r);
	assert_null(account_set_find(&E.set, "acme~big-wa"));
	free(body);
	free(pad);
}

/* A tenant whose own id leaves no room for "~<id>" is told so, with the room
 * it has (none), not a wrapped-around size_t. */
static void test_channel_id_room(void **state)
{
	(void)state;
	struct resp r;
	char tenant[HR_NAME_MAX];
	memset(tenant, 't', sizeof tenant - 1);
	tenant[sizeof tenant - 1] = '\0';
	put_tenant_key(E.st, tenant, "key-long-tenant-0123456789");
	http_ex(E.base, "POST", "/v1/channels", "key-long-tenant-0123456789",
	        "{\"id\":\"a\",\"channel\":\"whatsapp\"}",
	        strlen("{\"id\":\"a\",\"channel\":\"whatsapp\"}"), NULL, 0, &r);
	check_error(&r, 422, "invalid", "id");
	if (!strstr(r.body, "at most 0 characters"))
		fail_msg("%s", r.body);
	resp_free(&r);
}

static void test_channels_api(void **state)
{
	(void)state;
	setenv("HERALD_TEST_WA_TOKEN", "api-token-1", 1);
	setenv("HERALD_TEST_WA_SECRET", NEW_SECRET, 1);
	char vt[128];
	snprintf(vt, sizeof vt, "%s/vt", E.dir);
	write_file(vt, "api-verify-1\n");
	account_set_public_url(&E.set, "https://herald.example/");

	char body[1024];
	struct resp r;
	wa_account_body(body, sizeof body, "api-wa", "http://127.0.0.1:9", "555000111", NULL);
	http("POST", "/v1/channels", KEY_ACME, body, &r);
	if (r.status != 201)
		fail_msg("create: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	assert_string_equal(jstr(j, "id"), "api-wa");
	assert_string_equal(jstr(j, "channel"), "whatsapp");
	assert_true(json_number_value(json_object_get(j, "rate_limit")) == 5.0);
	/* The tenant's ids are its own: stored as acme~api-wa. */
	assert_string_equal(jstr(j, "webhook_url"),
	                    "https://herald.example/webhooks/whatsapp/acme~api-wa");
	json_t *cfg = json_object_get(j, "config");
	assert_string_equal(jstr(cfg, "access_token"), "env:HERALD_TEST_WA_TOKEN");
	assert_string_equal(jstr(cfg, "app_secret"), "env:HERALD_TEST_WA_SECRET");
	char vtref[160];
	snprintf(vtref, sizeof vtref, "file:%s", vt);
	assert_string_equal(jstr(cfg, "verify_token"), vtref);
	assert_string_equal(jstr(cfg, "phone_number_id"), "555000111");
	assert_null(json_object_get(cfg, "id"));
	assert_null(json_object_get(cfg, "channel"));
	assert_null(strstr(r.body, "api-token-1"));
	assert_null(strstr(r.body, NEW_SECRET));
	json_decref(j);
	resp_free(&r);

	/* The tenant's list: config-file accounts show literal secrets as ***. */
	http("GET", "/v1/channels", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	json_t *data = json_object_get(j, "data");
	assert_int_equal(json_array_size(data), 3);
	assert_non_null(find_account(data, "api-wa"));
	assert_null(find_account(data, "other-wa"));
	json_t *demo = find_account(data, "demo-wa");
	assert_non_null(demo);
	cfg = json_object_get(demo, "config");
	assert_string_equal(jstr(cfg, "access_token"), "***");
	assert_string_equal(jstr(cfg, "app_secret"), "***");
	assert_string_equal(jstr(cfg, "verify_token"), "***");
	assert_string_equal(jstr(cfg, "base_url"), "http://127.0.0.1:9");
	assert_true(json_number_value(json_object_get(demo, "rate_limit")) == 80.0);
	assert_null(strstr(r.body, APP_SECRET));
	assert_null(strstr(r.body, "\"tok\""));
	json_decref(j);
	resp_free(&r);
	http("GET", "/v1/channels", KEY_OTHER, NULL, &r);
	j = body_json(&r);
	assert_int_equal(json_array_size(json_object_get(j, "data")), 1);
	assert_non_null(find_account(json_object_get(j, "data"), "other-wa"));
	json_decref(j);
	resp_free(&r);
	http("GET", "/v1/channels?x=1", KEY_ACME, NULL, &r);
	check_error(&r, 422, "invalid", "x");
	resp_free(&r);

	/* One account: the owner sees it, another tenant gets a 404. */
	http("GET", "/v1/channels/api-wa", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(jstr(j, "id"), "api-wa");
	json_decref(j);
	resp_free(&r);
	http("GET", "/v1/channels/api-wa", KEY_OTHER, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http("GET", "/v1/channels/nope", KEY_ACME, NULL, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);

	/* Refusals: literal secrets, another tenant's id, bad config. */
#define WA_BASE "{\"id\":\"x-wa\",\"channel\":\"whatsapp\",\"base_url\":\"http://127.0.0.1:9\"," \
                "\"phone_number_id\":\"1\","
#define WA_OKS "\"app_secret\":\"env:HERALD_TEST_WA_SECRET\",\"verify_token\":" \
               "\"env:HERALD_TEST_WA_SECRET\""
	static const struct {
		const char *body;
		long status;
		const char *code, *field;
	} bad[] = {
		{WA_BASE "\"access_token\":\"literal-token\"," WA_OKS "}", 422, "invalid",
		 "access_token"},
		{WA_BASE "\"access_token\":\"env:HERALD_TEST_WA_TOKEN\",\"app_secret\":42,"
		 "\"verify_token\":\"env:HERALD_TEST_WA_SECRET\"}", 422, "invalid", "app_secret"},
		/* References outside the tenant's namespace: the server would read
		 * and send any variable or file otherwise. */
		{WA_BASE "\"access_token\":\"env:PATH\"," WA_OKS "}", 403, "forbidden",
		 "access_token"},
		{WA_BASE "\"access_token\":\"env:HERALD_OTHER_WA\"," WA_OKS "}", 403, "forbidden",
		 "access_token"},
		{WA_BASE "\"access_token\":\"file:/etc/passwd\"," WA_OKS "}", 403, "forbidden",
		 "access_token"},
		{WA_BASE "\"access_token\":\"file:/tmp/../etc/passwd\"," WA_OKS "}", 403,
		 "forbidden", "access_token"},
		{WA_BASE "\"access_token\":\"env:\"," WA_OKS "}", 422, "invalid", "access_token"},
		{WA_BASE "\"access_token\":\"env:HERALD_TEST_WA_TOKEN\",\"app_secret\":"
		 "\"file:relative\",\"verify_token\":\"env:HERALD_TEST_WA_SECRET\"}", 422, "invalid",
		 "app_secret"},
		{WA_BASE "\"access_token\":\"env:HERALD_TEST_WA_TOKEN\",\"app_secret\":"
		 "\"env:HERALD_TEST_WA_SECRET\",\"verify_token\":[\"env:HERALD_TEST_A\",\"b\"]}", 422,
		 "invalid", "verify_token"},
		/* Another tenant's id is simply free in this tenant's space: the
		 * answer is the one any new id gets (here: the config is incomplete). */
		{"{\"id\":\"other-wa\",\"channel\":\"whatsapp\"}", 422, "invalid", "base_url"},
		{"{\"id\":\"a/b\",\"channel\":\"whatsapp\"}", 422, "invalid", "id"},
		{"{\"id\":\"a~b\",\"channel\":\"whatsapp\"}", 422, "invalid", "id"},
		{"{\"id\":\"\",\"channel\":\"whatsapp\"}", 422, "invalid", "id"},
		{"{\"channel\":\"whatsapp\"}", 422, "invalid", "id"},
		{"{\"id\":\"x-wa\"}", 422, "invalid", "channel"},
		{"{\"id\":\"x-wa\",\"channel\":\"pigeon\"}", 422, "invalid", "channel"},
		/* The adapter's own checks, named by the request's key. */
		{"{\"id\":\"x-wa\",\"channel\":\"whatsapp\",\"base_url\":\"http://127.0.0.1:9\","
		 "\"access_token\":\"env:HERALD_TEST_WA_TOKEN\"}", 422, "invalid",
		 "phone_number_id"},
		{WA_BASE "\"access_token\":\"env:HERALD_TEST_UNSET_VAR\"," WA_OKS "}", 422, "invalid",
		 "access_token"},
		{WA_BASE "\"access_token\":\"env:HERALD_TEST_WA_TOKEN\"," WA_OKS ",\"rate_limit\":-1}",
		 422, "invalid", "rate_limit"},
		/* Only the provider's origin, or one the operator allows. */
		{"{\"id\":\"x-wa\",\"channel\":\"whatsapp\",\"base_url\":\"http://169.254.169.254/\","
		 "\"phone_number_id\":\"1\",\"access_token\":\"env:HERALD_TEST_WA_TOKEN\"," WA_OKS "}",
		 403, "forbidden", "base_url"},
		{"{\"id\":\"x-wa\",\"channel\":\"whatsapp\",\"base_url\":\"http://u:p@127.0.0.1:9\","
		 "\"phone_number_id\":\"1\",\"access_token\":\"env:HERALD_TEST_WA_TOKEN\"," WA_OKS "}",
		 422, "invalid", "base_url"},
	};
#undef WA_BASE
#undef WA_OKS
	unsetenv("HERALD_TEST_UNSET_VAR");
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		http("POST", "/v1/channels", KEY_ACME, bad[i].body, &r);
		if (r.status != bad[i].status)
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		check_error(&r, bad[i].status, bad[i].code, bad[i].field);
		assert_null(strstr(r.body, "literal-token"));
		assert_null(strstr(r.body, "root"));
		resp_free(&r);
	}
	/* None of them exists now; other-wa is still the other tenant's. */
	assert_null(account_set_find(&E.set, "acme~x-wa"));
	assert_null(account_set_find(&E.set, "acme~other-wa"));
	assert_string_equal(account_set_find(&E.set, "other-wa")->tenant_id, "other");

	/* An update by the owner: 200, and the new config is in force. */
	wa_account_body(body, sizeof body, "api-wa", "http://127.0.0.1:9", "555000222", NULL);
	http("POST", "/v1/channels", KEY_ACME, body, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	http("GET", "/v1/channels/api-wa", KEY_ACME, NULL, &r);
	j = body_json(&r);
	assert_string_equal(jstr(json_object_get(j, "config"), "phone_number_id"), "555000222");
	json_decref(j);
	resp_free(&r);
	/* ... and another tenant neither takes the id over nor uses acme's
	 * secrets: the same body from "other" names acme's variables. */
	http("POST", "/v1/channels", KEY_OTHER, body, &r);
	check_error(&r, 403, "forbidden", "access_token");
	resp_free(&r);
	assert_string_equal(account_set_find(&E.set, "acme~api-wa")->tenant_id, "acme");
	assert_null(account_set_find(&E.set, "other~api-wa"));

	/* It is in the store too (a restart loads it). */
	struct account_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(E.st->ops->account_list(E.st, "acme", &rows, &n), 0);
	bool stored = false;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(rows[i].id, "acme~api-wa")) {
			stored = true;
			assert_true(rows[i].api_created);
			assert_non_null(strstr(rows[i].config, "555000222"));
			assert_non_null(strstr(rows[i].config, "env:HERALD_TEST_WA_TOKEN"));
			assert_null(strstr(rows[i].config, "api-token-1"));
		}
		free(rows[i].config);
	}
	free(rows);
	assert_true(stored);

	/* Webhooks for it are verified with its own secret, and it sends. */
	size_t len = strlen(wa_body);
	char hex[65], sig[128];
	hr_hmac_sha256_hex(NEW_SECRET, strlen(NEW_SECRET), wa_body, len, hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	const char *good[] = {sig, NULL};
	int64_t pending = inbox_pending();
	http_ex(E.base, "POST", "/webhooks/whatsapp/acme~api-wa", NULL, wa_body, len, good, 0, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	assert_int_equal(inbox_pending(), pending + 1);
	hr_hmac_sha256_hex(APP_SECRET, strlen(APP_SECRET), wa_body, len, hex);
	snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
	http_ex(E.base, "POST", "/webhooks/whatsapp/acme~api-wa", NULL, wa_body, len, good, 0, &r);
	check_error(&r, 401, "bad_signature", "X-Hub-Signature-256");
	resp_free(&r);
	http("GET",
	     "/webhooks/whatsapp/acme~api-wa?hub.mode=subscribe&hub.verify_token=api-verify-1"
	     "&hub.challenge=77",
	     NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "77");
	resp_free(&r);
	char id[HR_ID_LEN + 1];
	accept_one(KEY_ACME,
	           "{\"channel\":\"whatsapp\",\"account\":\"api-wa\",\"to\":\"447911123456\","
	           "\"text\":\"from the new account\"}",
	           id);
	struct message m;
	memset(&m, 0, sizeof m);
	assert_int_equal(E.st->ops->message_get(E.st, "acme", id, &m), 0);
	assert_string_equal(m.account_id, "acme~api-wa");
	message_clear(&m);
	unlink(vt);
}

/* The config file's template declarations reach the store as
 * template_row.config, checked with errors naming the key. */
static void test_template_config_sync(void **state)
{
	(void)state;
	static const char good[] =
		"tenants:\n"
		"  - id: acme\n"
		"    templates:\n"
		"      - name: invoice\n"
		"        channel: whatsapp\n"
		"        language: en\n"
		"        body: \"Invoice {{1}}\"\n"
		"        header: {type: document}\n"
		"        buttons: [{type: quick_reply, params: 1}, {type: url, params: \"0\"}]\n"
		"        regulatory: {dlt_entity_id: \"1101\", dlt_template_id: \"1107\"}\n"
		"      - name: plain\n"
		"        channel: whatsapp\n"
		"        language: en\n"
		"        body: \"Hello\"\n";
	struct hr_err err;
	hr_err_clear(&err);
	json_t *cfg = hr_config_parse(good, strlen(good), &err);
	assert_non_null(cfg);
	int rc = serve_sync_config(cfg, E.st, &err);
	json_decref(cfg);
	if (rc)
		fail_msg("sync: %s (%s)", err.msg, err.field);
	struct template_row t;
	memset(&t, 0, sizeof t);
	assert_int_equal(E.st->ops->template_get(E.st, "acme", "whatsapp", "invoice", "en", &t), 0);
	assert_int_equal(t.param_count, 1);
	assert_non_null(t.config);
	json_t *c = json_loads(t.config, 0, NULL);
	assert_non_null(c);
	json_t *h = json_object_get(c, "header");
	assert_string_equal(jstr(h, "type"), "document");
	assert_int_equal(json_integer_value(json_object_get(h, "params")), 0);
	json_t *b = json_object_get(c, "buttons");
	assert_int_equal(json_array_size(b), 2);
	assert_string_equal(jstr(json_array_get(b, 0), "type"), "quick_reply");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "params")), 1);
	assert_string_equal(jstr(json_array_get(b, 1), "type"), "url");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 1), "params")), 0);
	assert_string_equal(jstr(json_object_get(c, "regulatory"), "dlt_template_id"), "1107");
	json_decref(c);
	template_row_clear(&t);
	assert_int_equal(E.st->ops->template_get(E.st, "acme", "whatsapp", "plain", "en", &t), 0);
	assert_null(t.config);
	template_row_clear(&t);

	/* The synced template is what the API checks against. */
	struct resp r;
	http("POST", "/v1/messages", KEY_ACME,
	     "{" MSG_TO "\"template\":{\"name\":\"invoice\",\"language\":\"en\",\"parameters\":"
	     "[\"42\"],\"header\":{\"type\":\"document\",\"url\":\"https://x.test/i.pdf\"}}}",
	     &r);
	check_error(&r, 422, "invalid", "template.buttons[0].payload");
	resp_free(&r);

	static const struct {
		const char *decl, *field;
	} bad[] = {
		{"header: {type: video}", "tenants[0].templates[0].header"},
		{"header: text", "tenants[0].templates[0].header"},
		{"header: {type: text, params: 2}", "tenants[0].templates[0].header.params"},
		{"buttons: [{type: url}, {type: call}]", "tenants[0].templates[0].buttons[1]"},
		{"buttons: [{type: url, params: 3}]", "tenants[0].templates[0].buttons[0].params"},
		{"buttons: {type: url}", "tenants[0].templates[0].buttons"},
		{"regulatory: [1]", "tenants[0].templates[0].regulatory"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char text[512];
		snprintf(text, sizeof text,
		         "tenants:\n  - id: acme\n    templates:\n      - name: broken\n"
		         "        channel: whatsapp\n        language: en\n        body: \"x\"\n"
		         "        %s\n",
		         bad[i].decl);
		hr_err_clear(&err);
		cfg = hr_config_parse(text, strlen(text), &err);
		assert_non_null(cfg);
		rc = serve_sync_config(cfg, E.st, &err);
		json_decref(cfg);
		if (rc != HR_EINVAL || strcmp(err.field, bad[i].field) != 0)
			fail_msg("case %zu: rc %d field '%s' (%s), want %s", i, rc, err.field,
			         err.msg, bad[i].field);
	}
}

/* ---------------------------------------------------------------------------
 * SMS: segments, suppressions and templates on a second channel.
 * ------------------------------------------------------------------------- */

#define SMS_SID "AC0123456789abcdef0123456789abcdef"

static void put_sms_account(struct store *st, const char *id, const char *tenant)
{
	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "{\"base_url\":\"http://127.0.0.1:9\",\"account_sid\":\"" SMS_SID "\","
	         "\"auth_token\":\"sms-auth-token\",\"from\":\"+15005550006\"}");
	struct account_row a = {.config = cfg};
	hr_strlcpy(a.id, id, sizeof a.id);
	hr_strlcpy(a.tenant_id, tenant, sizeof a.tenant_id);
	hr_strlcpy(a.channel, "sms", sizeof a.channel);
	struct hr_err err;
	assert_int_equal(st->ops->account_upsert(st, &a, &err), 0);
}

/* POSTs a Twilio webhook form to path, signed as Twilio signs it: over
 * server.public_url + path + signed_text, the parameters' decoded names and
 * values concatenated in name order (the caller writes it out). */
static void twilio_post(struct env *e, const char *path, const char *form, const char *signed_text,
                        struct resp *r)
{
	char url[256], sig[29], hdr[80];
	snprintf(url, sizeof url, "https://herald.example%s%s", path, signed_text);
	hr_hmac_sha1_b64("sms-auth-token", 14, url, strlen(url), sig);
	snprintf(hdr, sizeof hdr, "X-Twilio-Signature: %s", sig);
	const char *h[] = {hdr, "Content-Type: application/x-www-form-urlencoded", NULL};
	http_ex(e->base, "POST", path, NULL, form, strlen(form), h, 0, r);
}

/* Twilio takes a webhook's answer as TwiML: status callbacks and inbound
 * messages are both answered 200 with the empty <Response/> as text/xml,
 * while a bad signature keeps the JSON error. */
static void twilio_webhook_answers(struct env *e)
{
	static const char twiml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";
	const char *path = "/webhooks/sms/demo-sms";
	struct resp r;
	char ct[64];
	twilio_post(e, path,
	            "AccountSid=" SMS_SID "&Body=STOP&From=%2B15550100007&MessageSid=SM01"
	            "&NumMedia=0&To=%2B15005550006",
	            "AccountSid" SMS_SID "BodySTOPFrom+15550100007MessageSidSM01NumMedia0"
	            "To+15005550006",
	            &r);
	if (r.status != 200)
		fail_msg("inbound: %ld %s", r.status, r.body);
	assert_string_equal(r.body, twiml);
	assert_non_null(header(&r, "Content-Type", ct, sizeof ct));
	assert_string_equal(ct, "text/xml");
	resp_free(&r);
	twilio_post(e, path,
	            "AccountSid=" SMS_SID "&MessageSid=SM02&MessageStatus=delivered"
	            "&To=%2B15550100001",
	            "AccountSid" SMS_SID "MessageSidSM02MessageStatusdeliveredTo+15550100001", &r);
	if (r.status != 200)
		fail_msg("status callback: %ld %s", r.status, r.body);
	assert_string_equal(r.body, twiml);
	assert_non_null(header(&r, "Content-Type", ct, sizeof ct));
	assert_string_equal(ct, "text/xml");
	resp_free(&r);
	const char *bad[] = {"X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL};
	http_ex(e->base, "POST", path, NULL, "MessageSid=SM03", 15, bad, 0, &r);
	check_error(&r, 401, "bad_signature", "X-Twilio-Signature");
	resp_free(&r);
}

/* Sends one SMS text as acme on e; checks the 202's and the stored
 * message's segment count. */
static void sms_segments_case(struct env *e, const char *text, int want)
{
	json_t *req = json_pack("{s:s, s:s, s:s}", "channel", "sms", "to", "+1 555 010 0001",
	                        "text", text);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct resp r;
	http_ex(e->base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0, &r);
	free(body);
	if (r.status != 202)
		fail_msg("sms accept: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	resp_free(&r);
	assert_string_equal(jstr(j, "to"), "+15550100001");
	if (json_integer_value(json_object_get(j, "segments")) != want)
		fail_msg("%zu bytes: segments %lld in the 202, want %d", strlen(text),
		         (long long)json_integer_value(json_object_get(j, "segments")), want);
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(j, "id"));
	json_decref(j);
	http_ex(e->base, "GET", path, KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "segments")), want);
	assert_string_equal(jstr(j, "body"), text);
	json_decref(j);
	resp_free(&r);
}

/* n copies of the UTF-8 character c. */
static char *repeat(const char *c, int n)
{
	size_t l = strlen(c);
	char *s = malloc(l * (size_t)n + 1);
	assert_non_null(s);
	for (int i = 0; i < n; i++)
		memcpy(s + l * (size_t)i, c, l);
	s[l * (size_t)n] = '\0';
	return s;
}

static void test_sms(void **state)
{
	(void)state;
	struct env e;
	memset(&e, 0, sizeof e);
	env_store(&e);
	put_account(e.st, "demo-wa", "acme", "http://127.0.0.1:9", "106540352242922");
	put_sms_account(e.st, "demo-sms", "acme");
	struct template_row t = {.body = "Your OTP is {{1}}", .param_count = 1,
	                         .config = "{\"regulatory\":{\"dlt_entity_id\":\"1101\","
	                                   "\"dlt_template_id\":\"1107\"}}"};
	hr_strlcpy(t.tenant_id, "acme", sizeof t.tenant_id);
	hr_strlcpy(t.channel, "sms", sizeof t.channel);
	hr_strlcpy(t.name, "otp", sizeof t.name);
	hr_strlcpy(t.language, "en", sizeof t.language);
	struct hr_err err;
	assert_int_equal(e.st->ops->template_upsert(e.st, &t, &err), 0);
	env_load_accounts(&e);
	env_start(&e);

	/* Segments: GSM-7 160/153, extension characters count 2, UCS-2 70/67. */
	static const struct {
		const char *ch;
		int n, want;
	} seg[] = {
		{"a", 1, 1},         {"a", 160, 1},     {"a", 161, 2},   {"a", 306, 2},
		{"a", 307, 3},       {"\xe2\x82\xac", 80, 1}, /* € */ {"\xe2\x82\xac", 81, 2},
		{"\xd0\x96", 70, 1}, /* Ж */ {"\xd0\x96", 71, 2}, {"\xd0\x96", 134, 2},
		{"\xd0\x96", 135, 3},
	};
	for (size_t i = 0; i < sizeof seg / sizeof *seg; i++) {
		char *text = repeat(seg[i].ch, seg[i].n);
		sms_segments_case(&e, text, seg[i].want);
		free(text);
	}

	/* A template on SMS: rendered, counted, regulatory fields carried. */
	struct resp r;
	const char *tb = "{\"channel\":\"sms\",\"to\":\"+15550100002\",\"template\":{\"name\":"
	                 "\"otp\",\"language\":\"en\",\"parameters\":[\"123456\"]}}";
	http_ex(e.base, "POST", "/v1/messages", KEY_ACME, tb, strlen(tb), NULL, 0, &r);
	if (r.status != 202)
		fail_msg("sms template: %ld %s", r.status, r.body);
	json_t *j = body_json(&r);
	resp_free(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "segments")), 1);
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(j, "id"));
	json_decref(j);
	http_ex(e.base, "GET", path, KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	assert_string_equal(jstr(j, "body"), "Your OTP is 123456");
	json_t *reg = json_object_get(json_object_get(json_object_get(j, "content"), "template"),
	                              "regulatory");
	assert_string_equal(jstr(reg, "dlt_entity_id"), "1101");
	assert_string_equal(jstr(reg, "dlt_template_id"), "1107");
	json_decref(j);
	resp_free(&r);

	/* Suppressions are per channel, in the channel's normal form. */
	const char *sb = "{\"channel\":\"sms\",\"to\":\"+1 (555) 010-0009\",\"reason\":\"STOP\"}";
	http_ex(e.base, "POST", "/v1/suppressions", KEY_ACME, sb, strlen(sb), NULL, 0, &r);
	assert_int_equal(r.status, 201);
	j = body_json(&r);
	assert_string_equal(jstr(j, "to"), "+15550100009");
	json_decref(j);
	resp_free(&r);
	http_ex(e.base, "GET", "/v1/suppressions?channel=whatsapp", KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	assert_int_equal(json_array_size(json_object_get(j, "data")), 0);
	json_decref(j);
	resp_free(&r);
	http_ex(e.base, "GET", "/v1/suppressions?channel=sms", KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	json_t *row = json_array_get(json_object_get(j, "data"), 0);
	assert_string_equal(jstr(row, "channel"), "sms");
	assert_string_equal(jstr(row, "to"), "+15550100009");
	assert_string_equal(jstr(row, "reason"), "STOP");
	json_decref(j);
	resp_free(&r);
	struct suppression_row *rows = NULL;
	size_t n = 0;
	assert_int_equal(e.st->ops->suppression_list(e.st, "acme", "sms", &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].recipient, "+15550100009");
	free(rows);
	http_ex(e.base, "DELETE", "/v1/suppressions/whatsapp/15550100009", KEY_ACME, NULL, 0, NULL,
	        0, &r);
	check_error(&r, 404, "not_found", NULL);
	resp_free(&r);
	http_ex(e.base, "DELETE", "/v1/suppressions/sms/15550100009", KEY_ACME, NULL, 0, NULL, 0,
	        &r);
	assert_int_equal(r.status, 204);
	resp_free(&r);

	/* An account keeps its channel; the SMS account's sids are shown, its
	 * literal auth token is not. */
	const char *cb = "{\"id\":\"demo-sms\",\"channel\":\"whatsapp\"}";
	http_ex(e.base, "POST", "/v1/channels", KEY_ACME, cb, strlen(cb), NULL, 0, &r);
	check_error(&r, 409, "conflict", "channel");
	resp_free(&r);
	http_ex(e.base, "GET", "/v1/channels/demo-sms", KEY_ACME, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(jstr(j, "channel"), "sms");
	assert_string_equal(jstr(json_object_get(j, "config"), "account_sid"), SMS_SID);
	assert_string_equal(jstr(json_object_get(j, "config"), "auth_token"), "***");
	assert_null(strstr(r.body, "sms-auth-token"));
	json_decref(j);
	resp_free(&r);

	twilio_webhook_answers(&e);
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * RCS: an account made through the API (service account by file reference),
 * cards and carousels, and the adapter's errors named as the request's.
 * ------------------------------------------------------------------------- */

/* Writes a service-account JSON with a fresh RSA key to path. */
static void write_service_account(const char *path)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	assert_non_null(key);
	BIO *bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
	char *pem = NULL;
	long n = BIO_get_mem_data(bio, &pem);
	char *pemz = strndup(pem, (size_t)n);
	json_t *sa = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "client_email",
	                       "herald@test.iam.gserviceaccount.com", "private_key", pemz,
	                       "token_uri", "http://127.0.0.1:9/token");
	assert_int_equal(json_dump_file(sa, path, 0), 0);
	json_decref(sa);
	free(pemz);
	BIO_free(bio);
	EVP_PKEY_free(key);
}

static void test_rcs_content(void **state)
{
	(void)state;
	struct env e;
	memset(&e, 0, sizeof e);
	env_store(&e);
	env_load_accounts(&e);
	env_start(&e);
	char sa[128], body[512];
	snprintf(sa, sizeof sa, "%s/sa.json", e.dir);
	write_service_account(sa);
	setenv("HERALD_TEST_RBM_CLIENT_TOKEN", "rbm-client-token", 1);
	snprintf(body, sizeof body,
	         "{\"id\":\"api-rcs\",\"channel\":\"rcs\",\"base_url\":\"http://127.0.0.1:9\","
	         "\"agent_id\":\"herald-test\",\"service_account\":\"file:%s\","
	         "\"client_token\":\"env:HERALD_TEST_RBM_CLIENT_TOKEN\"}",
	         sa);
	struct resp r;
	http_ex(e.base, "POST", "/v1/channels", KEY_ACME, body, strlen(body), NULL, 0, &r);
	if (r.status != 201)
		fail_msg("create rcs: %ld %s", r.status, r.body);
	assert_null(strstr(r.body, "PRIVATE KEY"));
	resp_free(&r);

	static const struct {
		const char *content;
		long status;
		const char *field;
	} cases[] = {
		{"\"carousel\":[{\"title\":\"A\",\"media_url\":\"https://x.test/a.png\"},"
		 "{\"title\":\"B\",\"description\":\"b\"}]", 202, NULL},
		{"\"carousel\":{\"cards\":[{\"title\":\"A\"},{\"title\":\"B\"}]}", 202, NULL},
		{"\"card\":{\"title\":\"Offer\",\"description\":\"d\",\"buttons\":[{\"id\":\"y\","
		 "\"title\":\"Yes\"}]}", 202, NULL},
		/* The adapter's limits, named by the request's keys. */
		{"\"carousel\":[{\"title\":\"only one\"}]", 422, "carousel"},
		{"\"carousel\":{\"cards\":[{\"title\":\"only one\"}]}", 422, "carousel.cards"},
		{"\"carousel\":[{\"title\":\"A\"},{\"title\":\"B\",\"media_url\":\"not a url\"}]", 422,
		 "carousel[1].media_url"},
		{"\"template\":{\"name\":\"t\",\"language\":\"en\"}", 422, "template.name"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(body, sizeof body, "{\"channel\":\"rcs\",\"to\":\"+447911123456\",%s}",
		         cases[i].content);
		http_ex(e.base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0, &r);
		if (r.status != cases[i].status)
			fail_msg("case %zu: %ld %s", i, r.status, r.body);
		if (cases[i].field)
			check_error(&r, 422, "invalid", cases[i].field);
		resp_free(&r);
	}

	/* The carousel as stored: canonical "cards", body = the titles. */
	snprintf(body, sizeof body,
	         "{\"channel\":\"rcs\",\"to\":\"+447911123456\",\"carousel\":[{\"title\":\"Gold\"},"
	         "{\"title\":\"Silver\"},{\"description\":\"no title\"}],\"options\":{\"ttl\":"
	         "\"86400s\"}}");
	http_ex(e.base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0, &r);
	assert_int_equal(r.status, 202);
	json_t *j = body_json(&r);
	assert_string_equal(jstr(j, "account"), "api-rcs");
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(j, "id"));
	json_decref(j);
	resp_free(&r);
	http_ex(e.base, "GET", path, KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	json_t *c = json_object_get(j, "content");
	assert_string_equal(jstr(c, "type"), "carousel");
	assert_int_equal(json_array_size(json_object_get(c, "cards")), 3);
	assert_string_equal(jstr(json_array_get(json_object_get(c, "cards"), 1), "title"),
	                    "Silver");
	assert_string_equal(jstr(json_object_get(c, "options"), "ttl"), "86400s");
	assert_string_equal(jstr(j, "body"), "Gold\nSilver");
	json_decref(j);
	resp_free(&r);
	env_stop(&e);
}

/* ---------------------------------------------------------------------------
 * Sync mode against a real dispatcher and a fake WhatsApp provider.
 * ------------------------------------------------------------------------- */

static enum MHD_Result fake_wa(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload, size_t *upload_size, void **req)
{
	(void)cls, (void)method, (void)version, (void)upload;
	if (!*req) {
		*req = conn;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	unsigned status = 200;
	const char *body = "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":"
	                   "\"447911123456\",\"wa_id\":\"447911123456\"}],\"messages\":[{\"id\":"
	                   "\"wamid.TEST1\"}]}";
	if (strstr(url, "/2002/")) {
		status = 400;
		body = "{\"error\":{\"message\":\"(#131026) Message undeliverable\",\"type\":"
		       "\"OAuthException\",\"code\":131026,\"fbtrace_id\":\"x\"}}";
	} else if (strstr(url, "/2003/")) {
		status = 500;
		body = "{\"error\":{\"message\":\"Something went wrong\",\"code\":131000}}";
	} else if (strstr(url, "/2004/")) {
		usleep(1500 * 1000); /* slower than the request's timeout_ms */
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
	                                                         MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static json_t *sync_send(struct env *e, const char *account, const char *extra, long want)
{
	char body[256];
	snprintf(body, sizeof body,
	         "{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"+447911123456\","
	         "\"text\":\"hi\",\"mode\":\"sync\"%s}",
	         account, extra);
	struct resp r;
	http_ex(e->base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0, &r);
	if (r.status != want)
		fail_msg("sync %s: %ld, want %ld: %s", account, r.status, want, r.body);
	json_t *j = body_json(&r);
	resp_free(&r);
	return j;
}

/* The fake provider on a free loopback port; its base URL goes to url. */
static struct MHD_Daemon *fake_wa_start(char url[64])
{
	struct MHD_Daemon *wa = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
		fake_wa, NULL, MHD_OPTION_SOCK_ADDR,
		&(struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)},
		MHD_OPTION_END);
	assert_non_null(wa);
	snprintf(url, 64, "http://127.0.0.1:%u",
	         MHD_get_daemon_info(wa, MHD_DAEMON_INFO_BIND_PORT)->port);
	return wa;
}

/* A store with accounts at the fake provider (ok, fail, retry, slow), a real
 * dispatcher and the API. ops (may be NULL) replaces the store's functions
 * before anything runs; tweak (may be NULL) adjusts the API's options. */
static void sync_env(struct env *e, const char *wa_url, const struct store_ops *ops,
                     void (*tweak)(struct api_opts *o))
{
	memset(e, 0, sizeof *e);
	env_store(e);
	hr_strlcpy(e->origin, wa_url, sizeof e->origin);
	if (ops)
		e->st->ops = ops;
	put_account(e->st, "ok-wa", "acme", wa_url, "2001");
	put_account(e->st, "fail-wa", "acme", wa_url, "2002");
	put_account(e->st, "retry-wa", "acme", wa_url, "2003");
	put_account(e->st, "slow-wa", "acme", wa_url, "2004");
	env_load_accounts(e);
	struct hr_err err;
	hr_err_clear(&err);
	struct dispatch_opts dop;
	dispatch_opts_default(&dop);
	dop.backoff_base_us = 60 * 1000000LL; /* no second attempt during the test */
	dop.backoff_max_us = 120 * 1000000LL;
	/* Sync waits expire on the dispatcher's sweep: keep it finer than the
	 * fake provider's 1.5 s delay so the timeout case cannot race it. */
	dop.reconcile_every_us = 100000;
	int rc = dispatcher_start(e->st, &e->set, &dop, &e->disp, &err);
	if (rc != 0)
		fail_msg("dispatcher_start: %s", err.msg);
	env_start_with(e, tweak);
}

static void test_sync_mode(void **state)
{
	(void)state;
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, NULL, NULL);

	json_t *j = sync_send(&e, "ok-wa", "", 200);
	assert_string_equal(jstr(j, "status"), "sent");
	assert_string_equal(jstr(j, "provider_id"), "wamid.TEST1");
	assert_string_equal(jstr(j, "to"), "447911123456");
	char path[64];
	snprintf(path, sizeof path, "/v1/messages/%s", jstr(j, "id"));
	json_decref(j);
	struct resp r;
	http_ex(e.base, "GET", path, KEY_ACME, NULL, 0, NULL, 0, &r);
	j = body_json(&r);
	assert_string_equal(jstr(j, "status"), "sent");
	assert_string_equal(jstr(j, "provider_id"), "wamid.TEST1");
	assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
	json_decref(j);
	resp_free(&r);

	j = sync_send(&e, "fail-wa", "", 200);
	assert_string_equal(jstr(j, "status"), "failed");
	assert_string_equal(jstr(json_object_get(j, "error"), "code"), "131026");
	assert_non_null(strstr(jstr(json_object_get(j, "error"), "message"), "undeliverable"));
	json_decref(j);

	j = sync_send(&e, "retry-wa", "", 202);
	assert_string_equal(jstr(j, "status"), "queued");
	assert_true(json_is_true(json_object_get(j, "retrying")));
	assert_string_equal(jstr(json_object_get(j, "error"), "code"), "131000");
	json_decref(j);

	int64_t t0 = hr_mono_us();
	j = sync_send(&e, "slow-wa", ",\"timeout_ms\":300", 202);
	int64_t took = hr_mono_us() - t0;
	assert_true(json_is_true(json_object_get(j, "sync_timeout")));
	assert_true(!strcmp(jstr(j, "status"), "queued") || !strcmp(jstr(j, "status"), "sending"));
	assert_true(took >= 250000 && took < 1300000);
	json_decref(j);

	j = sync_send(&e, "ok-wa", ",\"timeout_ms\":600001", 422);
	assert_string_equal(jstr(json_object_get(j, "error"), "field"), "timeout_ms");
	json_decref(j);

	env_stop(&e);
	MHD_stop_daemon(wa);
}

/* An account created through the API is sent through at once. */
static void test_channel_api_send(void **state)
{
	(void)state;
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, NULL, NULL);
	setenv("HERALD_TEST_WA_TOKEN", "api-token-1", 1);
	setenv("HERALD_TEST_WA_SECRET", NEW_SECRET, 1);
	char body[1024];
	snprintf(body, sizeof body,
	         "{\"id\":\"new-wa\",\"channel\":\"whatsapp\",\"base_url\":\"%s\","
	         "\"phone_number_id\":\"2001\",\"access_token\":\"env:HERALD_TEST_WA_TOKEN\","
	         "\"app_secret\":\"env:HERALD_TEST_WA_SECRET\","
	         "\"verify_token\":\"env:HERALD_TEST_WA_SECRET\"}",
	         wa_url);
	struct resp r;
	http_ex(e.base, "POST", "/v1/channels", KEY_ACME, body, strlen(body), NULL, 0, &r);
	if (r.status != 201)
		fail_msg("create: %ld %s", r.status, r.body);
	resp_free(&r);
	json_t *j = sync_send(&e, "new-wa", "", 200);
	assert_string_equal(jstr(j, "status"), "sent");
	assert_string_equal(jstr(j, "account"), "new-wa");
	assert_string_equal(jstr(j, "provider_id"), "wamid.TEST1");
	json_decref(j);
	env_stop(&e);
	MHD_stop_daemon(wa);
}

/* ---------------------------------------------------------------------------
 * Sync mode under load and with a slow server: the watch must exist before
 * the message can be claimed, whenever MHD gets round to the connection.
 * ------------------------------------------------------------------------- */

/* A request from a plain thread: no cmocka calls here (they may not fail
 * off the main thread). Returns the curl code. */
static CURLcode post_raw(const char *base, const char *path, const char *key,
                         const char *body, long *status, struct resp *out)
{
	memset(out, 0, sizeof *out);
	CURL *c = curl_easy_init();
	if (!c)
		return CURLE_FAILED_INIT;
	char url[256], auth[128];
	snprintf(url, sizeof url, "%s%s", base, path);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

struct sync_call {
	const char *base;
	const char *body;
	CURLcode rc;
	long status;
	struct resp r;
	int64_t took_us;
};

static void *sync_call_run(void *p)
{
	struct sync_call *c = p;
	int64_t t0 = hr_mono_us();
	c->rc = post_raw(c->base, "/v1/messages", KEY_ACME, c->body, &c->status, &c->r);
	c->took_us = hr_mono_us() - t0;
	return NULL;
}

/* A sync answer that reports the send: 200, "sent", no sync_timeout. */
static void check_sync_sent(struct sync_call *c, const char *what)
{
	if (c->rc != CURLE_OK)
		fail_msg("%s: %s", what, curl_easy_strerror(c->rc));
	if (c->status != 200)
		fail_msg("%s: status %ld: %s", what, c->status, c->r.body);
	json_t *j = body_json(&c->r);
	assert_string_equal(jstr(j, "status"), "sent");
	assert_string_equal(jstr(j, "provider_id"), "wamid.TEST1");
	assert_null(json_object_get(j, "sync_timeout"));
	json_decref(j);
}

#define SYNC_CONCURRENT 20

static void test_sync_concurrent(void **state)
{
	(void)state;
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, NULL, NULL);

	static const char body[] = "{\"channel\":\"whatsapp\",\"account\":\"ok-wa\",\"to\":"
	                           "\"+447911123456\",\"text\":\"hi\",\"mode\":\"sync\","
	                           "\"timeout_ms\":8000}";
	struct sync_call calls[SYNC_CONCURRENT];
	pthread_t th[SYNC_CONCURRENT];
	for (int i = 0; i < SYNC_CONCURRENT; i++) {
		calls[i] = (struct sync_call){.base = e.base, .body = body};
		assert_int_equal(pthread_create(&th[i], NULL, sync_call_run, &calls[i]), 0);
	}
	for (int i = 0; i < SYNC_CONCURRENT; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < SYNC_CONCURRENT; i++) {
		char what[32];
		snprintf(what, sizeof what, "sync request %d", i);
		check_sync_sent(&calls[i], what);
		/* Well within the 8 s timeout: the provider answers at once. */
		if (calls[i].took_us > 4000000)
			fail_msg("%s took %lld us", what, (long long)calls[i].took_us);
		resp_free(&calls[i].r);
	}
	env_stop(&e);
	MHD_stop_daemon(wa);
}

/*
 * The gate: a store whose insert completion waits (on the writer thread)
 * until a "blocker" request holds the API's only MHD thread, and whose key
 * lookup for the blocker holds that thread until the gated message has been
 * sent and recorded. The connection is resumed while MHD cannot run it, and
 * the dispatcher claims, sends and records in the meantime: a watch
 * registered by the handler after the resume would come too late.
 */
#define BLOCKER_KEY "blocker-key"

static struct gate {
	atomic_bool armed;
	sem_t inserted;       /* the gated insert was queued */
	sem_t blocked;        /* the blocker holds the MHD thread */
	char id[HR_ID_LEN + 1];
	store_done_fn cb;
	void *arg;
	atomic_bool saw_sent; /* the blocker saw the message sent while holding */
} G;

static struct store_ops gate_ops;

static void sem_wait_s(sem_t *s, int secs, int *rc)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	*rc = sem_timedwait(s, &ts);
}

static void gate_done(void *arg, int rc, const struct hr_err *err)
{
	(void)arg;
	int w;
	sem_wait_s(&G.blocked, 10, &w);
	G.cb(G.arg, rc, err);
}

static int gate_insert(struct store *st, const struct message *m, size_t n,
                       const struct idem_put *idem, store_done_fn cb, void *arg)
{
	bool armed = true;
	if (!cb || !atomic_compare_exchange_strong(&G.armed, &armed, false))
		return store_sqlite.message_insert(st, m, n, idem, cb, arg);
	hr_strlcpy(G.id, m[0].id, sizeof G.id);
	G.cb = cb;
	G.arg = arg;
	int rc = store_sqlite.message_insert(st, m, n, idem, gate_done, NULL);
	sem_post(&G.inserted);
	return rc;
}

static int gate_key_lookup(struct store *st, const char *hash, struct key_row *out)
{
	char h[65];
	hr_sha256_hex(BLOCKER_KEY, strlen(BLOCKER_KEY), h);
	if (strcmp(hash, h) != 0)
		return store_sqlite.key_lookup(st, hash, out);
	sem_post(&G.blocked);
	for (int i = 0; i < 500; i++) {
		struct message m;
		memset(&m, 0, sizeof m);
		int rc = store_sqlite.message_get(st, NULL, G.id, &m);
		enum msg_status s = m.status;
		message_clear(&m);
		if (rc == 0 && s == MSG_SENT) {
			atomic_store(&G.saw_sent, true);
			break;
		}
		usleep(10000);
	}
	/* The outcome is committed; give the writer time to run its callbacks
	 * (where the dispatcher fires watches) while this thread is still held. */
	usleep(300000);
	return HR_ENOTFOUND;
}

static void one_thread(struct api_opts *o)
{
	o->threads = 1;
}

static void test_sync_watch_before_claim(void **state)
{
	(void)state;
	gate_ops = store_sqlite;
	gate_ops.message_insert = gate_insert;
	gate_ops.key_lookup = gate_key_lookup;
	assert_int_equal(sem_init(&G.inserted, 0, 0), 0);
	assert_int_equal(sem_init(&G.blocked, 0, 0), 0);
	atomic_store(&G.saw_sent, false);
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, &gate_ops, one_thread);

	atomic_store(&G.armed, true);
	struct sync_call c = {
		.base = e.base,
		.body = "{\"channel\":\"whatsapp\",\"account\":\"ok-wa\",\"to\":\"+447911123456\","
		        "\"text\":\"gated\",\"mode\":\"sync\",\"timeout_ms\":3000}",
	};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, sync_call_run, &c), 0);
	int rc;
	sem_wait_s(&G.inserted, 10, &rc);
	assert_int_equal(rc, 0);
	/* Holds the MHD thread from before the insert's callback until the send
	 * is recorded; refused in the end (an unknown key). */
	struct resp r;
	http_ex(e.base, "GET", "/v1/messages", BLOCKER_KEY, NULL, 0, NULL, 0, &r);
	check_error(&r, 401, "unauthorized", "Authorization");
	resp_free(&r);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(atomic_load(&G.saw_sent)); /* the window was really exercised */
	check_sync_sent(&c, "gated sync request");
	/* Answered by the watch, not by the 3 s timeout. */
	assert_true(c.took_us < 2500000);
	resp_free(&c.r);

	env_stop(&e);
	MHD_stop_daemon(wa);
	sem_destroy(&G.inserted);
	sem_destroy(&G.blocked);
}

/*
 * A backend may call an insert's callback late: after the message was
 * claimed, sent and recorded (another node's dispatcher on a shared
 * database; here a wrapper that holds the callback back until the message
 * is SENT). The sync request must still get the send's outcome: its watch
 * exists from before the insert.
 */
static struct late {
	atomic_bool armed;
	char id[HR_ID_LEN + 1];
	store_done_fn cb;
	void *arg;
	int rc;
	struct hr_err err;
	sem_t committed;
	struct store *st;
	atomic_bool saw_sent;
} L;

static struct store_ops late_ops;

static void *late_deliver(void *p)
{
	(void)p;
	int w;
	sem_wait_s(&L.committed, 10, &w);
	for (int i = 0; i < 500 && L.rc == 0; i++) {
		struct message m;
		memset(&m, 0, sizeof m);
		int rc = store_sqlite.message_get(L.st, NULL, L.id, &m);
		enum msg_status st = m.status;
		message_clear(&m);
		if (rc == 0 && st == MSG_SENT) {
			atomic_store(&L.saw_sent, true);
			break;
		}
		usleep(10000);
	}
	L.cb(L.arg, L.rc, L.rc ? &L.err : NULL);
	return NULL;
}

static void late_done(void *arg, int rc, const struct hr_err *err)
{
	(void)arg;
	L.rc = rc;
	if (err)
		L.err = *err;
	sem_post(&L.committed);
}

static int late_insert(struct store *st, const struct message *m, size_t n,
                       const struct idem_put *idem, store_done_fn cb, void *arg)
{
	bool armed = true;
	if (!cb || !atomic_compare_exchange_strong(&L.armed, &armed, false))
		return store_sqlite.message_insert(st, m, n, idem, cb, arg);
	hr_strlcpy(L.id, m[0].id, sizeof L.id);
	L.cb = cb;
	L.arg = arg;
	L.st = st;
	pthread_t t;
	if (pthread_create(&t, NULL, late_deliver, NULL) != 0 || pthread_detach(t) != 0)
		return HR_ENOMEM;
	return store_sqlite.message_insert(st, m, n, idem, late_done, NULL);
}

static void test_sync_insert_callback_late(void **state)
{
	(void)state;
	late_ops = store_sqlite;
	late_ops.message_insert = late_insert;
	assert_int_equal(sem_init(&L.committed, 0, 0), 0);
	atomic_store(&L.saw_sent, false);
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, &late_ops, NULL);
	atomic_store(&L.armed, true);
	struct sync_call c = {
		.base = e.base,
		.body = "{\"channel\":\"whatsapp\",\"account\":\"ok-wa\",\"to\":\"+447911123456\","
		        "\"text\":\"late\",\"mode\":\"sync\",\"timeout_ms\":3000}",
	};
	sync_call_run(&c);
	assert_true(atomic_load(&L.saw_sent)); /* the callback really came after the send */
	check_sync_sent(&c, "sync request with a late insert callback");
	assert_true(c.took_us < 2500000); /* by the watch, not the timeout */
	resp_free(&c.r);
	env_stop(&e);
	MHD_stop_daemon(wa);
	sem_destroy(&L.committed);
}

/* server.sync_timeout_ms above the per-request cap raises the cap. */
static void long_sync_timeout(struct api_opts *o)
{
	o->sync_timeout_us = 90 * 1000000LL;
}

static void test_sync_timeout_config(void **state)
{
	(void)state;
	struct api_opts o;
	api_opts_default(&o);
	assert_true(o.sync_timeout_us < 90 * 1000000LL);
	assert_true(o.sync_max_timeout_us < 90 * 1000000LL);
	char wa_url[64];
	struct MHD_Daemon *wa = fake_wa_start(wa_url);
	struct env e;
	sync_env(&e, wa_url, NULL, long_sync_timeout);

	json_t *j = sync_send(&e, "ok-wa", ",\"timeout_ms\":90000", 200);
	assert_string_equal(jstr(j, "status"), "sent");
	json_decref(j);
	j = sync_send(&e, "ok-wa", ",\"timeout_ms\":90001", 422);
	json_t *err = json_object_get(j, "error");
	assert_string_equal(jstr(err, "field"), "timeout_ms");
	assert_non_null(strstr(jstr(err, "message"), "90000"));
	json_decref(j);
	env_stop(&e);
	MHD_stop_daemon(wa);
}

/* ---------------------------------------------------------------------------
 * A store that fails on purpose: busy writer (at once and from the writer's
 * callback), I/O errors on reads.
 * ------------------------------------------------------------------------- */

/* The tenant's own limits (the rate check reads them): this store cannot
 * read, so the config's defaults apply. */
static int fs_tenant_get(struct store *st, const char *id, struct tenant_info *out)
{
	(void)st, (void)id;
	memset(out, 0, sizeof *out);
	return HR_EIO;
}

static int fs_key_lookup(struct store *st, const char *hash, struct key_row *out)
{
	(void)st;
	char h[65];
	hr_sha256_hex(KEY_ACME, strlen(KEY_ACME), h);
	if (strcmp(hash, h) == 0) {
		memset(out, 0, sizeof *out);
		hr_strlcpy(out->tenant_id, "acme", HR_NAME_MAX);
		hr_strlcpy(out->scopes, "*", sizeof out->scopes);
		out->last_used_at = INT64_MAX / 2; /* no touch: this store writes nothing */
		return 0;
	}
	hr_sha256_hex("io-error", 8, h);
	return strcmp(hash, h) == 0 ? HR_EIO : HR_ENOTFOUND;
}

static int fs_read_fail(struct store *st, int64_t *n)
{
	(void)st, (void)n;
	return HR_EIO;
}

static int fs_counts_fail(struct store *st, int64_t c[MSG__COUNT])
{
	(void)st, (void)c;
	return HR_EIO;
}

struct fs_cb {
	store_done_fn cb;
	void *arg;
};

static void *fs_writer(void *p)
{
	struct fs_cb *c = p;
	usleep(20000);
	struct hr_err err;
	hr_fail(&err, HR_EBUSY, NULL, "writer queue full");
	c->cb(c->arg, HR_EBUSY, &err);
	free(c);
	return NULL;
}

/* Text "now": refused when queued; anything else: refused by the writer. */
static int fs_insert(struct store *st, const struct message *m, size_t n,
                     const struct idem_put *idem, store_done_fn cb, void *arg)
{
	(void)st, (void)n, (void)idem;
	assert_non_null(cb); /* the API never blocks on a write */
	if (strstr(m[0].content, "\"now\""))
		return HR_EBUSY;
	struct fs_cb *c = malloc(sizeof *c);
	c->cb = cb;
	c->arg = arg;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fs_writer, c), 0);
	pthread_detach(t);
	return 0;
}

static void test_failing_store(void **state)
{
	(void)state;
	static struct store_ops ops = {.name = "failing"};
	ops.key_lookup = fs_key_lookup;
	ops.tenant_get = fs_tenant_get;
	ops.inbox_pending = fs_read_fail;
	ops.message_gauges = fs_counts_fail;
	ops.message_insert = fs_insert;
	struct store st = {.ops = &ops};
	char cfg[] = "{\"base_url\":\"http://127.0.0.1:9\",\"phone_number_id\":\"1\","
	             "\"access_token\":\"t\",\"app_secret\":\"s\",\"verify_token\":\"v\"}";
	struct account_row row = {.id = "wa", .tenant_id = "acme", .channel = "whatsapp",
	                          .config = cfg};
	struct channel_account *acct;
	struct hr_err err;
	assert_int_equal(channel_account_new(&row, &acct, &err), 0);
	struct account_set set = {.items = &acct, .n = 1};
	struct api_opts o;
	api_opts_default(&o);
	o.port = 0;
	o.store = &st;
	o.accounts = &set;
	struct api_server *srv;
	assert_int_equal(api_start(&o, &srv, &err), 0);
	char base[64];
	snprintf(base, sizeof base, "http://127.0.0.1:%d", api_port(srv));

	struct resp r;
	char v[32];
	const char *now = "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"now\"}";
	http_ex(base, "POST", "/v1/messages", KEY_ACME, now, strlen(now), NULL, 0, &r);
	check_error(&r, 503, "busy", NULL);
	assert_string_equal(header(&r, "Retry-After", v, sizeof v), "1");
	resp_free(&r);
	const char *later = "{\"channel\":\"whatsapp\",\"to\":\"447911123456\",\"text\":\"x\"}";
	http_ex(base, "POST", "/v1/messages", KEY_ACME, later, strlen(later), NULL, 0, &r);
	check_error(&r, 503, "busy", NULL);
	assert_string_equal(header(&r, "Retry-After", v, sizeof v), "1");
	resp_free(&r);
	/* A store error behind auth is a 500 that leaks no detail. */
	http_ex(base, "GET", "/v1/messages", "io-error", NULL, 0, NULL, 0, &r);
	check_error(&r, 500, "internal", NULL);
	assert_null(strstr(r.body, "lookup"));
	resp_free(&r);
	/* Not ready when the store cannot answer; metrics leave its gauges out. */
	http_ex(base, "GET", "/readyz", NULL, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 503);
	resp_free(&r);
	http_ex(base, "GET", "/metrics", KEY_ACME, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "herald_queue_depth"));
	resp_free(&r);
	api_stop(srv);
	channel_account_free(acct);
}

/* store.message_retention_days: 0 (forever) by default, 1..3650 else,
 * refused by name otherwise; the tick the server runs once a minute then
 * removes an old failed message (GET answers a plain 404) and keeps an old
 * scheduled one, and counts it in /metrics. */
static void test_message_retention_tick(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		int64_t days; /* -1: refused */
	} cases[] = {
	    {"store: {}\n", 0},
	    {"store: {message_retention_days: 0}\n", 0},
	    {"store: {message_retention_days: 30}\n", 30},
	    {"store: {message_retention_days: \"3650\"}\n", 3650},
	    {"store: {message_retention_days: 3651}\n", -1},
	    {"store: {message_retention_days: -1}\n", -1},
	    {"store: {message_retention_days: 2.5}\n", -1},
	    {"store: {message_retention_days: forever}\n", -1},
	};
	struct retention_opts o;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err;
		hr_err_clear(&err);
		json_t *cfg = hr_config_parse(cases[i].yaml, strlen(cases[i].yaml), &err);
		assert_non_null(cfg);
		int rc = serve_retention_opts(cfg, &o, &err);
		json_decref(cfg);
		if (cases[i].days < 0) {
			assert_int_equal(rc, HR_EINVAL);
			assert_string_equal(err.field, "store.message_retention_days");
			assert_non_null(strstr(err.msg, "store.message_retention_days"));
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(o.message_keep_us, cases[i].days * 86400 * 1000000LL);
			assert_int_equal(o.inbox_keep_us, 72 * 3600 * 1000000LL);
			assert_int_equal(o.idem_keep_us, 24 * 3600 * 1000000LL);
		}
	}

	struct hr_err err;
	hr_err_clear(&err);
	static const char yaml[] = "store: {message_retention_days: 30}\n";
	json_t *cfg = hr_config_parse(yaml, sizeof yaml - 1, &err);
	assert_non_null(cfg);
	assert_int_equal(serve_retention_opts(cfg, &o, &err), 0);
	json_decref(cfg);
	int64_t old = hr_now_us() - 40 * 86400 * 1000000LL;
	struct message m[2];
	for (int i = 0; i < 2; i++) {
		memset(&m[i], 0, sizeof m[i]);
		hr_id_at(old + i * 1000, m[i].id);
		strcpy(m[i].tenant_id, "acme");
		strcpy(m[i].account_id, "retention-wa");
		strcpy(m[i].channel, "whatsapp");
		strcpy(m[i].recipient, "447911123456");
		m[i].content = (char *)"{\"type\":\"text\",\"text\":\"old\"}";
		m[i].created_at = old + i * 1000;
		/* The second is scheduled a day ahead: queued, however old. */
		m[i].due_at = i ? hr_now_us() + 86400 * 1000000LL : old;
	}
	assert_int_equal(E.st->ops->message_insert(E.st, m, 2, NULL, NULL, NULL), 0);
	struct message c;
	size_t n;
	assert_int_equal(
	    E.st->ops->claim(E.st, "retention-wa", hr_now_us(), 30 * 1000000LL, 1, &c, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c.id, m[0].id);
	message_clear(&c);
	struct send_result fr = {.kind = SEND_FAILED, .attempt = 1, .http_status = 400};
	strcpy(fr.message_id, m[0].id);
	assert_int_equal(E.st->ops->record_results(E.st, &fr, 1, NULL, NULL), 0);

	char path[2][64];
	struct resp r;
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof path[i], "/v1/messages/%s", m[i].id);
		http("GET", path[i], KEY_ACME, NULL, &r);
		assert_int_equal(r.status, 200);
		resp_free(&r);
	}
	serve_retention_tick(E.st, &o);
	http("GET", path[0], KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	http("GET", path[1], KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	assert_string_equal(jstr(j, "status"), "queued");
	json_decref(j);
	resp_free(&r);
	http("GET", "/metrics", KEY_ACME, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\nherald_retention_removed_total{what=\"messages\"} 1\n"));
	assert_non_null(strstr(r.body, "\nherald_retention_removed_total{what=\"events\"} 2\n"));
	resp_free(&r);
	/* accepted and failed: its events went with it. A second tick finds
	 * nothing more. */
	serve_retention_tick(E.st, &o);
	http("GET", "/metrics", KEY_ACME, NULL, &r);
	assert_non_null(strstr(r.body, "\nherald_retention_removed_total{what=\"messages\"} 1\n"));
	resp_free(&r);
}

/* ---------------------------------------------------------------------------
 * The single accept's fast path against the jansson way.
 * ------------------------------------------------------------------------- */

/* The two ways' stored messages are the same but for their ids; both are
 * cleared. */
static void same_stored(struct message m[2])
{
	assert_string_equal(m[0].content, m[1].content);
	assert_string_equal(m[0].body, m[1].body);
	assert_string_equal(m[0].recipient, m[1].recipient);
	assert_string_equal(m[0].account_id, m[1].account_id);
	assert_string_equal(m[0].channel, m[1].channel);
	assert_string_equal(m[0].unit, m[1].unit);
	assert_int_equal(m[0].policy, m[1].policy);
	assert_int_equal(m[0].priority, m[1].priority);
	assert_int_equal(m[0].segments, m[1].segments);
	assert_int_equal(m[0].max_attempts, m[1].max_attempts);
	assert_int_equal(m[0].expires_at, m[1].expires_at);
	assert_int_equal(m[0].status, MSG_QUEUED);
	assert_true((m[0].callback_url == NULL) == (m[1].callback_url == NULL));
	assert_true((m[0].route == NULL) == (m[1].route == NULL));
	message_clear(&m[0]);
	message_clear(&m[1]);
}

/* A server with acme's WhatsApp and SMS accounts, for the fast-path tests. */
static void fast_env(struct env *e)
{
	memset(e, 0, sizeof *e);
	env_store(e);
	put_account(e->st, "demo-wa", "acme", "http://127.0.0.1:9", "106540352242922");
	put_sms_account(e->st, "demo-sms", "acme");
	env_load_accounts(e);
	env_start(e);
}

/* POSTs body once the fast way and once the jansson way; both answers must
 * be byte for byte the same (the ids swapped) and so must the stored
 * messages. Returns how many of the two the fast path built. */
static unsigned long fast_vs_jansson(struct env *e, const char *body, long want_status)
{
	struct resp r[2];
	struct message m[2];
	memset(m, 0, sizeof m);
	unsigned long hits = 0;
	for (int i = 0; i < 2; i++) {
		api_fast_accept = i == 0;
		unsigned long h0 = atomic_load(&api_fast_accept_hits);
		http_ex(e->base, "POST", "/v1/messages", KEY_ACME, body, strlen(body), NULL, 0,
		        &r[i]);
		hits += atomic_load(&api_fast_accept_hits) - h0;
		if (r[i].status != want_status)
			fail_msg("%s way: status %ld, want %ld: %s (body %s)",
			         i ? "jansson" : "fast", r[i].status, want_status, r[i].body, body);
		if (r[i].status == 202) {
			json_t *j = body_json(&r[i]);
			const char *id = jstr(j, "id");
			assert_non_null(id);
			assert_int_equal(e->st->ops->message_get(e->st, "acme", id, &m[i]), 0);
			json_decref(j);
		}
	}
	api_fast_accept = true;
	if (want_status == 202) {
		/* The fast answer with the jansson answer's id in it. */
		char *id0 = strstr(r[0].body, m[0].id);
		assert_non_null(id0);
		memcpy(id0, m[1].id, strlen(m[1].id));
		same_stored(m);
	}
	assert_string_equal(r[0].body, r[1].body);
	resp_free(&r[0]);
	resp_free(&r[1]);
	return hits;
}

static void test_fast_accept(void **state)
{
	(void)state;
	struct env e;
	fast_env(&e);
	/* A 5,000-byte text (over what the fast way reads, and WhatsApp's
	 * limit), and a 200-digit SMS (two segments). */
	static char long_text[5200];
	int n = snprintf(long_text, sizeof long_text,
	                 "{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"");
	memset(long_text + n, 'a', 5000);
	strcpy(long_text + n + 5000, "\"}");
	char sms_long[400];
	snprintf(sms_long, sizeof sms_long,
	         "{\"channel\":\"sms\",\"account\":\"demo-sms\",\"to\":\"+15550100001\","
	         "\"text\":\"%0200d\"}",
	         7);
	static const struct {
		const char *body;
		long status;
		unsigned long fast; /* built the fast way (of the two posts) */
	} cases[] = {
	    /* The fast shape, accepted. */
	    {"{\"channel\":\"whatsapp\",\"account\":\"demo-wa\",\"to\":\"+447911123456\","
	     "\"text\":\"Your Herald verification code is 482913.\"}",
	     202, 1},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+44 7911 123456\",\"text\":\"hi\"}", 202, 1},
	    {" {\"text\":\"caf\\u00e9 \\\"q\\\" \\\\ \\/ \\n\\t\\u0001 \\ud83d\\ude00 "
	     "\xe2\x82\xac\","
	     "\"to\":\"+447911123456\",\"channel\":\"whatsapp\"}\n",
	     202, 1},
	    {"{\"channel\":\"sms\",\"account\":\"demo-sms\",\"to\":\"+15550100001\","
	     "\"text\":\"\xe2\x82\xac \xc3\xa9t\xc3\xa9\"}",
	     202, 1},
	    /* Accepted the jansson way: other keys or types. */
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"x\","
	     "\"priority\":\"bulk\"}",
	     202, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"x\",\"mode\":"
	     "\"async\"}",
	     202, 0},
	    /* Refused: the fast way declines and the jansson way answers. */
	    {"{\"channel\":\"whatsapp\",\"account\":\"nope\",\"to\":\"+447911123456\","
	     "\"text\":\"x\"}",
	     422, 0},
	    {"{\"channel\":\"sms\",\"account\":\"demo-wa\",\"to\":\"+447911123456\",\"text\":"
	     "\"x\"}",
	     422, 0},
	    {"{\"channel\":\"fax\",\"to\":\"+447911123456\",\"text\":\"x\"}", 422, 0},
	    {"{\"channel\":\"\",\"to\":\"+447911123456\",\"text\":\"x\"}", 422, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"\"}", 422, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"not a number\",\"text\":\"x\"}", 422, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":5}", 422, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\"}", 422, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"a\",\"text\":\"b\"}",
	     400, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"a\\u0000b\"}", 400, 0},
	    {"{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"x\"} x", 400, 0},
	    {"{\"channel\":\"whatsapp\",", 400, 0},
	    {"[\"channel\"]", 422, 0},
	};
	unsigned long fast = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		unsigned long got = fast_vs_jansson(&e, cases[i].body, cases[i].status);
		if (got != cases[i].fast)
			fail_msg("case %zu: built the fast way %lu times, want %lu", i, got,
			         cases[i].fast);
		fast += got;
	}
	assert_int_equal(fast, 4);
	assert_int_equal(fast_vs_jansson(&e, sms_long, 202), 1);
	assert_int_equal(fast_vs_jansson(&e, long_text, 422), 0);
	env_stop(&e);
}

/* The same for a batch: POSTed both ways, the answers the same but for the
 * ids (each message's "to", the count), every stored message the same and
 * in its answer's batch; an error answer byte for byte the same. Returns
 * how many of the two the fast path built. */
static unsigned long fast_batch_vs_jansson(struct env *e, const char *body, long want_status)
{
	struct resp r[2];
	unsigned long hits = 0;
	for (int i = 0; i < 2; i++) {
		api_fast_accept = i == 0;
		unsigned long h0 = atomic_load(&api_fast_accept_hits);
		http_ex(e->base, "POST", "/v1/messages:batch", KEY_ACME, body, strlen(body), NULL,
		        0, &r[i]);
		hits += atomic_load(&api_fast_accept_hits) - h0;
		if (r[i].status != want_status)
			fail_msg("%s way: status %ld, want %ld: %s (body %s)",
			         i ? "jansson" : "fast", r[i].status, want_status, r[i].body, body);
	}
	api_fast_accept = true;
	if (want_status != 202) {
		assert_string_equal(r[0].body, r[1].body);
	} else {
		json_t *j[2] = {body_json(&r[0]), body_json(&r[1])};
		json_t *l[2] = {json_object_get(j[0], "messages"),
		                json_object_get(j[1], "messages")};
		assert_int_equal(json_object_size(j[0]), 3);
		assert_int_equal(json_object_size(j[1]), 3);
		assert_int_equal(json_integer_value(json_object_get(j[0], "count")),
		                 json_integer_value(json_object_get(j[1], "count")));
		assert_int_equal(json_array_size(l[0]), json_array_size(l[1]));
		for (size_t k = 0; k < json_array_size(l[0]); k++) {
			struct message m[2];
			memset(m, 0, sizeof m);
			for (int i = 0; i < 2; i++) {
				json_t *it = json_array_get(l[i], k);
				assert_int_equal(json_object_size(it), 2);
				assert_int_equal(
				    e->st->ops->message_get(e->st, "acme", jstr(it, "id"), &m[i]),
				    0);
				assert_string_equal(m[i].recipient, jstr(it, "to"));
				assert_string_equal(m[i].batch_id, jstr(j[i], "batch_id"));
			}
			same_stored(m);
		}
		json_decref(j[0]);
		json_decref(j[1]);
	}
	resp_free(&r[0]);
	resp_free(&r[1]);
	return hits;
}

static void test_fast_accept_batch(void **state)
{
	(void)state;
	struct env e;
	fast_env(&e);
#define FA                                                                                         \
	"{\"channel\":\"whatsapp\",\"account\":\"demo-wa\",\"to\":\"+447911123456\",\"text\":"     \
	"\"a\"}"
#define FB                                                                                         \
	"{\"text\":\"caf\\u00e9 \\\"q\\\" \\ud83d\\ude00\",\"to\":\"+44 7911 "                     \
	"123457\",\"channel\":\"whatsapp\"}"
#define FC                                                                                         \
	"{\"channel\":\"sms\",\"account\":\"demo-sms\",\"to\":\"+15550100001\",\"text\":"          \
	"\"\xe2\x82\xac\"}"
	static const struct {
		const char *body;
		long status;
		unsigned long fast;
	} cases[] = {
	    /* The fast shape, accepted. */
	    {"{\"messages\":[" FA "," FB "," FC "]}", 202, 1},
	    {" {\"messages\":[" FC "]}\n", 202, 1},
	    /* Accepted the jansson way: an item or the request with more. */
	    {"{\"messages\":[" FA ",{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":"
	     "\"x\",\"priority\":\"transactional\"}]}",
	     202, 0},
	    {"{\"messages\":[" FA "],\"priority\":\"transactional\"}", 202, 0},
	    /* Refused: declined, and answered by the jansson way. */
	    {"{\"messages\":[" FA ",{\"channel\":\"whatsapp\",\"to\":\"not a number\",\"text\":"
	     "\"x\"}]}",
	     422, 0},
	    {"{\"messages\":[" FA
	     ",{\"channel\":\"fax\",\"to\":\"+447911123456\",\"text\":\"x\"}]}",
	     422, 0},
	    {"{\"messages\":[]}", 422, 0},
	    {"{\"messages\":{}}", 422, 0},
	    {"{\"messages\":[" FA "],\"messages\":[" FA "]}", 400, 0},
	    {"{\"messages\":[{\"channel\":\"whatsapp\",\"to\":\"+447911123456\",\"text\":\"a\","
	     "\"text\":\"b\"}]}",
	     400, 0},
	    {"{\"messages\":[" FA "]} x", 400, 0},
	    {"{\"messages\":[" FA, 400, 0},
	    {"{\"mesages\":[" FA "]}", 422, 0},
	    {"[" FA "]", 422, 0},
	};
#undef FA
#undef FB
#undef FC
	unsigned long fast = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		unsigned long got = fast_batch_vs_jansson(&e, cases[i].body, cases[i].status);
		if (got != cases[i].fast)
			fail_msg("case %zu: built the fast way %lu times, want %lu", i, got,
			         cases[i].fast);
		fast += got;
	}
	assert_int_equal(fast, 2);
	env_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health_and_routes),
	    cmocka_unit_test(test_auth),
	    cmocka_unit_test(test_validation),
	    cmocka_unit_test(test_fast_accept),
	    cmocka_unit_test(test_fast_accept_batch),
	    cmocka_unit_test(test_accept_get_isolation),
	    cmocka_unit_test(test_delivery_policy),
	    cmocka_unit_test(test_idempotency),
	    cmocka_unit_test(test_batch),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_size_limits),
	    cmocka_unit_test(test_webhooks),
	    cmocka_unit_test(test_metrics_endpoint),
	    cmocka_unit_test(test_metrics_listener),
	    cmocka_unit_test(test_message_retention_tick),
	    cmocka_unit_test(test_utf8_echo),
	    cmocka_unit_test(test_stored_text),
	    cmocka_unit_test(test_max_attempts),
	    cmocka_unit_test(test_content_validation),
	    cmocka_unit_test(test_content_accept),
	    cmocka_unit_test(test_suppressions),
	    cmocka_unit_test(test_channels_api),
	    cmocka_unit_test(test_channel_config_size),
	    cmocka_unit_test(test_channel_id_room),
	    cmocka_unit_test(test_template_config_sync),
	    cmocka_unit_test(test_sms),
	    cmocka_unit_test(test_rcs_content),
	    cmocka_unit_test(test_sync_mode),
	    cmocka_unit_test(test_channel_api_send),
	    cmocka_unit_test(test_sync_concurrent),
	    cmocka_unit_test(test_sync_watch_before_claim),
	    cmocka_unit_test(test_sync_insert_callback_late),
	    cmocka_unit_test(test_sync_timeout_config),
	    cmocka_unit_test(test_failing_store),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
