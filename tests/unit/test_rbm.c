/*
 * test_rbm.c - the RCS (Google RBM) adapter: the PROVIDERS.md signature
 * vector, the webhook handshake, request bodies field by field, the access
 * token (JWT claims and signature checked with the public key, caching,
 * a refused token dropped, a failing token endpoint), the capability check,
 * error classification, webhook parsing and its error paths, recipients,
 * content validation and account loading. A small libmicrohttpd server on
 * 127.0.0.1 plays Google's token endpoint and capability API.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include <jwt.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "channels/channel.h"
#include "core/crypto.h"
#include "herald.h"
#include "fastbody_test.h"
#include "webhook_same_test.h"

#include "channel_test.h"

#define VEC_TOKEN "SJENCPGJESMGUFPY"
#define VEC_DATA                                                                                   \
	"eyJzZW5kZXJQaG9uZU51bWJlciI6IisxNTU1MDEyMzQ1NiIsImV2ZW50VHlwZSI6IkRFTElWRVJFRCIsImV2ZW50" \
	"SWQi"                                                                                     \
	"OiJNeEFCQyIsIm1lc3NhZ2VJZCI6IjBmOWE2YzFlLTRjNzctNGE0ZS05ZDNlLTJiMWY3YTVkNmUwMSIsInNlbmRU" \
	"aW1l"                                                                                     \
	"IjoiMjAyNi0wMS0xNVQxMDowMDowMC4xMjM0NTZaIiwiYWdlbnRJZCI6ImhlcmFsZF9kZW1vX2FnZW50In0="
#define VEC_SIG                                                                                    \
	"KCGaIz53f71eIEwwsrk9nzo2mr4s6Lwyek//IAi+nra+hO5uKpkRRRh//NQQPCmT/R4sDIG/08SMM4h1iQP7HA=="
#define VEC_DECODED                                                                                \
	"{\"senderPhoneNumber\":\"+15550123456\",\"eventType\":\"DELIVERED\",\"eventId\":"         \
	"\"MxABC\","                                                                               \
	"\"messageId\":\"0f9a6c1e-4c77-4a4e-9d3e-2b1f7a5d6e01\",\"sendTime\":"                     \
	"\"2026-01-15T10:00:00.123456Z\",\"agentId\":\"herald_demo_agent\"}"
#define VEC_BODY                                                                                   \
	"{\"message\":{\"data\":\"" VEC_DATA "\",\"messageId\":\"2070443601311540\","              \
	"\"publishTime\":\"2026-01-15T10:00:00.200Z\"},\"subscription\":"                          \
	"\"projects/rbm-herald/subscriptions/rbm-agent-subscription\"}"

/* A ULID and the same 128 bits as a UUID (computed independently). */
#define MSG_ID "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define MSG_UUID "01563e3a-b5d3-d676-4c61-efb99302bd5b"

static char g_dir[64];
static char *g_priv_pem, *g_pub_pem;

/* ---- a fake Google: the token endpoint and the capability API ---- */

struct tsrv {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t lock;
	int token_status; /* answer of /token: 200 or an error */
	int expires_in;
	int token_delay_ms; /* answer /token this late */
	int token_requests;
	char assertion[4096];
	char grant_type[128];
	char content_type[128];
	int caps_requests;
	char caps_url[256], caps_agent[128], caps_request_id[64], caps_auth[256];
};
static struct tsrv T;

struct treq {
	char body[8192];
	size_t len;
};

static void form_value(const char *body, const char *key, char *out, size_t n)
{
	out[0] = '\0';
	size_t kl = strlen(key);
	for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			size_t vl = strcspn(p + kl + 1, "&");
			int ol = 0;
			char *v = curl_easy_unescape(NULL, p + kl + 1, (int)vl, &ol);
			hr_strlcpy(out, v ? v : "", n);
			curl_free(v);
			return;
		}
	}
}

static enum MHD_Result t_reply(struct MHD_Connection *c, unsigned status, const char *body)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result t_access(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
	(void)cls, (void)version, (void)method;
	struct treq *q = *con_cls;
	if (!q) {
		*con_cls = calloc(1, sizeof *q);
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		if (q->len + n < sizeof q->body) {
			memcpy(q->body + q->len, upload, n);
			q->len += n;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&T.lock);
	if (strcmp(url, "/token") == 0) {
		char out[512];
		T.token_requests++;
		form_value(q->body, "assertion", T.assertion, sizeof T.assertion);
		form_value(q->body, "grant_type", T.grant_type, sizeof T.grant_type);
		const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
		hr_strlcpy(T.content_type, ct ? ct : "", sizeof T.content_type);
		int st = T.token_status;
		int delay = T.token_delay_ms;
		if (delay) {
			pthread_mutex_unlock(&T.lock);
			usleep((useconds_t)delay * 1000);
			pthread_mutex_lock(&T.lock);
		}
		if (st == 200)
			snprintf(out, sizeof out,
			         "{\"access_token\":\"tok-%d\",\"expires_in\":%d,\"token_type\":"
			         "\"Bearer\"}",
			         T.token_requests, T.expires_in);
		else
			snprintf(out, sizeof out,
			         "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT "
			         "Signature.\"}");
		pthread_mutex_unlock(&T.lock);
		return t_reply(c, (unsigned)st, out);
	}
	T.caps_requests++;
	hr_strlcpy(T.caps_url, url, sizeof T.caps_url);
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "agentId");
	hr_strlcpy(T.caps_agent, v ? v : "", sizeof T.caps_agent);
	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "requestId");
	hr_strlcpy(T.caps_request_id, v ? v : "", sizeof T.caps_request_id);
	v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	hr_strlcpy(T.caps_auth, v ? v : "", sizeof T.caps_auth);
	pthread_mutex_unlock(&T.lock);
	if (strstr(url, "+15550000404"))
		return t_reply(
		    c, 404,
		    "{\"error\":{\"code\":404,\"message\":\"Requested entity was not found.\","
		    "\"status\":\"NOT_FOUND\"}}");
	if (strstr(url, "+15550000500"))
		return t_reply(
		    c, 500,
		    "{\"error\":{\"code\":500,\"message\":\"Internal error encountered.\","
		    "\"status\":\"INTERNAL\"}}");
	if (strstr(url, "+15550000401"))
		return t_reply(c, 401,
		               "{\"error\":{\"code\":401,\"message\":\"Request had invalid "
		               "authentication credentials.\",\"status\":\"UNAUTHENTICATED\"}}");
	return t_reply(c, 200,
	               "{\"features\":[\"RICHCARD_STANDALONE\",\"RICHCARD_CAROUSEL\","
	               "\"ACTION_DIAL\",\"ACTION_OPEN_URL\"]}");
}

static void t_done(void *cls, struct MHD_Connection *c, void **con_cls,
                   enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void tsrv_start(void)
{
	memset(&T, 0, sizeof T);
	pthread_mutex_init(&T.lock, NULL);
	T.token_status = 200;
	T.expires_in = 3599;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	T.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, t_access, NULL,
	                       MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, t_done, NULL,
	                       MHD_OPTION_END);
	assert_non_null(T.d);
	T.port = MHD_get_daemon_info(T.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void tsrv_stop(void)
{
	MHD_stop_daemon(T.d);
	pthread_mutex_destroy(&T.lock);
}

/* ---- keys, service accounts, accounts ---- */

static char *bio_string(BIO *b)
{
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);
	char *s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

/* An RSA key made at test time, as PKCS#8 PEM (what Google hands out) and
 * its public half. */
static void make_keys(void)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	g_priv_pem = bio_string(b);
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
	g_pub_pem = bio_string(b);
	EVP_PKEY_free(k);
}

/* Writes a service-account JSON file; returns "file:<path>" (static). */
static const char *write_sa(const char *name, const char *token_uri, const char *key)
{
	static char ref[300];
	char path[256];
	snprintf(path, sizeof path, "%s/%s", g_dir, name);
	json_t *sa = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account",
	                       "project_id", "rbm-herald", "private_key_id", "kid-0123",
	                       "private_key", key, "client_email",
	                       "herald@rbm-herald.iam.gserviceaccount.com", "token_uri", token_uri);
	assert_int_equal(json_dump_file(sa, path, JSON_INDENT(2)), 0);
	json_decref(sa);
	snprintf(ref, sizeof ref, "file:%s", path);
	return ref;
}

static char *acct_config(const char *base, const char *sa_ref)
{
	json_t *c =
	    json_pack("{s:s, s:s, s:s, s:s}", "base_url", base, "agent_id", "herald_demo_agent",
	              "service_account", sa_ref, "client_token", "env:RBM_TEST_CLIENT_TOKEN");
	char *s = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	return s;
}

static struct channel_account *load(const char *id, const char *config, struct hr_err *err)
{
	return channel_test_load("rcs", id, config, err);
}

/* An account whose token endpoint and API are the fake Google. */
static struct channel_account *live_account(const char *id)
{
	char base[64], uri[96];
	snprintf(base, sizeof base, "http://127.0.0.1:%d/", T.port);
	snprintf(uri, sizeof uri, "http://127.0.0.1:%d/token", T.port);
	char *cfg = acct_config(base, write_sa("live.json", uri, g_priv_pem));
	struct hr_err err = {0};
	struct channel_account *a = load(id, cfg, &err);
	free(cfg);
	if (!a)
		fail_msg("load: %s", err.msg);
	return a;
}

/* An account pointing at a closed port (bodies and parsing only). */
static struct channel_account *offline_account(void)
{
	char *cfg = acct_config("http://127.0.0.1:9/",
	                        write_sa("off.json", "http://127.0.0.1:9/token", g_priv_pem));
	struct hr_err err = {0};
	struct channel_account *a = load("rcs1", cfg, &err);
	free(cfg);
	if (!a)
		fail_msg("load: %s", err.msg);
	return a;
}

static int group_setup(void **state)
{
	(void)state;
	setenv("RBM_TEST_CLIENT_TOKEN", VEC_TOKEN, 1);
	snprintf(g_dir, sizeof g_dir, "/tmp/herald-rbm-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	make_keys();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	tsrv_start();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tsrv_stop();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	assert_int_equal(system(cmd), 0);
	free(g_priv_pem);
	free(g_pub_pem);
	curl_global_cleanup();
	return 0;
}

/* ---- a fake wh_request ---- */

struct fake_req {
	const char *sig;
};

static const char *fake_header(void *ctx, const char *name)
{
	struct fake_req *f = ctx;
	return strcasecmp(name, "X-Goog-Signature") == 0 ? f->sig : NULL;
}

static struct wh_request mkreq(struct fake_req *f, const char *method, const char *body)
{
	struct wh_request r = {.method = method,
	                       .url = "http://127.0.0.1/webhooks/rcs/rcs1",
	                       .body = body,
	                       .body_len = body ? strlen(body) : 0,
	                       .header = fake_header,
	                       .ctx = f};
	return r;
}

/* A Pub/Sub push carrying event (JSON text); *sig gets its signature. */
static char *envelope(const char *event, const char *pubsub_id, char sig[89])
{
	char *data = hr_b64_encode(event, strlen(event));
	json_t *m = json_pack("{s:s, s:s}", "data", data, "publishTime", "2026-01-15T10:00:01Z");
	if (pubsub_id)
		json_object_set_new(m, "messageId", json_string(pubsub_id));
	json_t *env = json_pack("{s:o, s:s}", "message", m, "subscription",
	                        "projects/rbm-herald/subscriptions/rbm-agent-subscription");
	char *s = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	free(data);
	if (sig)
		hr_hmac_sha512_b64(VEC_TOKEN, strlen(VEC_TOKEN), event, strlen(event), sig);
	return s;
}

/* ---- signatures and handshake ---- */

static void test_signature_vector(void **state)
{
	(void)state;
	size_t n = 0;
	unsigned char *raw = hr_b64_decode(VEC_DATA, strlen(VEC_DATA), &n);
	assert_non_null(raw);
	assert_int_equal(n, strlen(VEC_DECODED));
	assert_memory_equal(raw, VEC_DECODED, n);
	char sig[89];
	hr_hmac_sha512_b64(VEC_TOKEN, strlen(VEC_TOKEN), raw, n, sig);
	assert_string_equal(sig, VEC_SIG);
	free(raw);

	struct channel_account *a = offline_account();
	struct hr_err err = {0};
	struct fake_req f = {.sig = VEC_SIG};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	channel_account_free(a);
}

static void test_signature_rejections(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	char wrong[100];
	hr_strlcpy(wrong, VEC_SIG, sizeof wrong);
	wrong[5] = wrong[5] == 'A' ? 'B' : 'A';
	/* The same envelope with another event in data (signed for the vector). */
	char *other = envelope("{\"senderPhoneNumber\":\"+15550123456\",\"eventType\":\"READ\","
	                       "\"eventId\":\"MxABC\",\"messageId\":\"x\"}",
	                       "1", NULL);
	struct {
		const char *sig;
		const char *body;
		const char *says;
	} cases[] = {
	    {NULL, VEC_BODY, "missing"},
	    {"", VEC_BODY, "missing"},
	    {wrong, VEC_BODY, "does not match"},
	    {VEC_SIG, other, "does not match"},
	    {VEC_SIG, "{\"message\":{}}", "no base64"},
	    {VEC_SIG, "{\"message\":{\"data\":\"%%%not base64\"}}", "no base64"},
	    {VEC_SIG, "not json", "no base64"},
	    {VEC_SIG, "", "no base64"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct hr_err err = {0};
		struct fake_req f = {.sig = cases[i].sig};
		struct wh_request r = mkreq(&f, "POST", cases[i].body);
		assert_int_equal(a->ops->webhook_verify(a, &r, &err), HR_EAUTH);
		assert_string_equal(err.field, "X-Goog-Signature");
		if (!strstr(err.msg, cases[i].says))
			fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, cases[i].says);
	}
	/* Surrounding spaces in the header are tolerated. */
	struct hr_err err = {0};
	char padded[100];
	snprintf(padded, sizeof padded, " %s ", VEC_SIG);
	struct fake_req f = {.sig = padded};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	free(other);
	channel_account_free(a);
}

static void test_handshake(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct fake_req f = {0};
	int status = 0;
	char *body = NULL;
	struct wh_request r = mkreq(&f, "POST",
	                            "{\"clientToken\":\"" VEC_TOKEN "\","
	                            "\"secret\":\"s3cr3t-echo\"}");
	assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &body), 1);
	assert_int_equal(status, 200);
	assert_string_equal(body, "s3cr3t-echo");
	free(body);
	body = NULL;
	/* Not a handshake (0: go on to the signature check, which refuses it). */
	const char *nots[] = {
	    "{\"clientToken\":\"WRONGTOKEN000000\",\"secret\":\"x\"}",
	    "{\"clientToken\":\"" VEC_TOKEN "\"}",
	    "{\"clientToken\":\"" VEC_TOKEN "\",\"secret\":7}",
	    VEC_BODY,
	    "clientToken",
	};
	for (size_t i = 0; i < sizeof nots / sizeof nots[0]; i++) {
		r = mkreq(&f, "POST", nots[i]);
		assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &body), 0);
		assert_null(body);
	}
	r = mkreq(&f, "GET", "{\"clientToken\":\"" VEC_TOKEN "\",\"secret\":\"x\"}");
	assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &body), 0);
	channel_account_free(a);
}

/* ---- accounts ---- */

static void test_account_config_errors(void **state)
{
	(void)state;
	const char *sa = write_sa("cfg.json", "https://oauth2.googleapis.com/token", g_priv_pem);
	char sa_ref[300];
	hr_strlcpy(sa_ref, sa, sizeof sa_ref);
	char bad_key[300], no_uri[300], not_json[300];
	hr_strlcpy(bad_key,
	           write_sa("badkey.json", "https://oauth2.googleapis.com/token",
	                    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
	           sizeof bad_key);
	hr_strlcpy(no_uri, write_sa("nouri.json", "ftp://x/token", g_priv_pem), sizeof no_uri);
	char path[256];
	snprintf(path, sizeof path, "%s/notjson.json", g_dir);
	FILE *fp = fopen(path, "w");
	fputs("{client_email: nope", fp);
	fclose(fp);
	snprintf(not_json, sizeof not_json, "file:%s", path);
	struct {
		const char *base, *agent, *sa, *token;
		const char *field;
	} cases[] = {
	    {NULL, "a", sa_ref, "t", "accounts[r1].base_url"},
	    {"ftp://x", "a", sa_ref, "t", "accounts[r1].base_url"},
	    {"https://rcs", NULL, sa_ref, "t", "accounts[r1].agent_id"},
	    {"https://rcs", "bad agent/id", sa_ref, "t", "accounts[r1].agent_id"},
	    {"https://rcs", "a", NULL, "t", "accounts[r1].service_account"},
	    {"https://rcs", "a", "file:/nonexistent/sa.json", "t", "accounts[r1].service_account"},
	    {"https://rcs", "a", not_json, "t", "accounts[r1].service_account"},
	    /* a literal (the key would land in the store): refused */
	    {"https://rcs", "a", "{\"client_email\":\"x\",\"token_uri\":\"https://t\"}", "t",
	     "accounts[r1].service_account"},
	    /* no private_key */
	    {"https://rcs", "a", "env:RBM_TEST_SA_NOKEY", "t", "accounts[r1].service_account"},
	    {"https://rcs", "a", bad_key, "t", "accounts[r1].service_account"},
	    {"https://rcs", "a", no_uri, "t", "accounts[r1].service_account.token_uri"},
	    {"https://rcs", "a", sa_ref, NULL, "accounts[r1].client_token"},
	    {"https://rcs", "a", sa_ref, "env:RBM_TEST_UNSET_VAR", "accounts[r1].client_token"},
	};
	unsetenv("RBM_TEST_UNSET_VAR");
	setenv("RBM_TEST_SA_NOKEY", "{\"client_email\":\"x\",\"token_uri\":\"https://t\"}", 1);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *c = json_object();
		if (cases[i].base)
			json_object_set_new(c, "base_url", json_string(cases[i].base));
		if (cases[i].agent)
			json_object_set_new(c, "agent_id", json_string(cases[i].agent));
		if (cases[i].sa)
			json_object_set_new(c, "service_account", json_string(cases[i].sa));
		if (cases[i].token)
			json_object_set_new(c, "client_token", json_string(cases[i].token));
		char *cfg = json_dumps(c, JSON_COMPACT);
		json_decref(c);
		struct hr_err err = {0};
		assert_null(load("r1", cfg, &err));
		free(cfg);
		assert_int_equal(err.code, HR_EINVAL);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s' (%s), want '%s'", i, err.field, err.msg,
			         cases[i].field);
	}
	/* A good one, with a literal client token and the default rate. */
	json_t *c =
	    json_pack("{s:s, s:s, s:s, s:s}", "base_url", "https://rcs/", "agent_id",
	              "herald_demo_agent", "service_account", sa_ref, "client_token", "lit");
	char *cfg = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	struct hr_err err = {0};
	struct channel_account *a = load("r1", cfg, &err);
	free(cfg);
	assert_non_null(a);
	assert_string_equal(a->ops->name, "rcs");
	assert_true(a->ops->has_receipts);
	assert_non_null(a->ops->capability);
	assert_true(a->rate_limit > 0);
	channel_account_free(a);
}

/* ---- recipients, ids, content ---- */

static void test_normalize_recipient(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("rcs");
	assert_non_null(ops);
	struct {
		const char *in, *out;
	} ok[] = {
	    {"+15550123456", "+15550123456"},         {"15550123456", "+15550123456"},
	    {"+44 7911 123-456", "+447911123456"},    {"(555) 012.3456 ", "+5550123456"},
	    {"+123456789012345", "+123456789012345"},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char out[HR_ADDR_MAX];
		struct hr_err err = {0};
		assert_int_equal(ops->normalize_recipient(ok[i].in, out, &err), 0);
		assert_string_equal(out, ok[i].out);
	}
	const char *bad[] = {NULL,
	                     "",
	                     "+1234567",
	                     "+1234567890123456",
	                     "+0123456789",
	                     "+1555abc4567",
	                     "++15550123456",
	                     "1555+0123456"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[HR_ADDR_MAX];
		struct hr_err err = {0};
		assert_int_equal(ops->normalize_recipient(bad[i], out, &err), HR_EINVAL);
		assert_string_equal(err.field, "to");
	}
}

static void test_validate(void **state)
{
	(void)state;
	const struct channel_ops *ops = channel_find("rcs");
	char long_text[3100], long_title[40], long_desc[2100];
	memset(long_text, 'x', 3073);
	long_text[3073] = '\0';
	memset(long_title, 'y', 26);
	long_title[26] = '\0';
	memset(long_desc, 'z', 2001);
	long_desc[2001] = '\0';
	char twelve[1024] = "{\"type\":\"text\",\"text\":\"hi\",\"buttons\":[";
	for (int i = 0; i < 12; i++) {
		char b[48];
		snprintf(b, sizeof b, "%s{\"id\":\"b%d\",\"title\":\"B%d\"}", i ? "," : "", i, i);
		strcat(twelve, b);
	}
	strcat(twelve, "]}");
	char json_long_text[3200], json_long_title[200], json_long_desc[2200];
	snprintf(json_long_text, sizeof json_long_text, "{\"type\":\"text\",\"text\":\"%s\"}",
	         long_text);
	snprintf(json_long_title, sizeof json_long_title,
	         "{\"type\":\"text\",\"text\":\"a\",\"buttons\":[{\"id\":\"y\",\"title\":\"%s\"}]}",
	         long_title);
	snprintf(json_long_desc, sizeof json_long_desc,
	         "{\"type\":\"card\",\"card\":{\"description\":\"%s\"}}", long_desc);
	struct {
		const char *content;
		const char *field; /* NULL: valid */
	} cases[] = {
	    {"{\"type\":\"text\",\"text\":\"Hello\"}", NULL},
	    {"{\"type\":\"text\",\"text\":\"Pay?\",\"buttons\":[{\"id\":\"yes\",\"title\":\"Yes\"},"
	     "{\"id\":\"no\",\"title\":\"No\"}],\"actions\":[{\"title\":\"Call us\",\"dial\":"
	     "\"+15550100\"},{\"title\":\"Site\",\"url\":\"https://x.example\"}],\"options\":{"
	     "\"ttl\":\"86400s\",\"traffic_type\":\"TRANSACTION\"}}",
	     NULL},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"t\",\"language\":\"en\","
	     "\"parameters\":[\"a\"]}}",
	     NULL},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"T\",\"media_url\":\"https://x/i.png\","
	     "\"buttons\":[{\"id\":\"a\",\"title\":\"A\"}]}}",
	     NULL},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\"},{\"title\":\"B\"}]}", NULL},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x/s.pdf\",\"filename\":"
	     "\"s.pdf\"}}",
	     NULL},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/i.png\",\"caption\":\"c\"}}",
	     NULL},
	    {"[]", "content"},
	    {"{}", "type"},
	    {"{\"type\":\"video\"}", "type"},
	    {"{\"type\":\"text\"}", "text"},
	    {"{\"type\":\"text\",\"text\":\"\"}", "text"},
	    {json_long_text, "text"},
	    {json_long_title, "buttons[0].title"},
	    {twelve, "buttons"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"buttons\":{}}", "buttons"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"buttons\":[{\"title\":\"A\"}]}", "buttons[0].id"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"buttons\":[{\"id\":\"a\",\"title\":\"A\"},"
	     "{\"id\":\"a\",\"title\":\"B\"}]}",
	     "buttons[1].id"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"actions\":[{\"title\":\"A\"}]}", "actions[0]"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"actions\":[{\"title\":\"A\",\"dial\":\"555\"}]}",
	     "actions[0].dial"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"actions\":[{\"title\":\"A\",\"url\":\"x:y\"}]}",
	     "actions[0].url"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"options\":{\"ttl\":\"1 day\"}}", "options.ttl"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"options\":{\"traffic_type\":\"SPAM\"}}",
	     "options.traffic_type"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"options\":{\"preview_url\":true}}",
	     "options.preview_url"},
	    {"{\"type\":\"text\",\"text\":\"a\",\"options\":[]}", "options"},
	    {"{\"type\":\"template\"}", "template"},
	    {"{\"type\":\"template\",\"template\":{\"language\":\"en\"}}", "template.name"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"t\",\"language\":\"en\","
	     "\"header\":{\"type\":\"text\",\"text\":\"h\"}}}",
	     "template.header"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"t\",\"language\":\"en\","
	     "\"parameters\":[1]}}",
	     "template.parameters[0]"},
	    {"{\"type\":\"card\"}", "card"},
	    {"{\"type\":\"card\",\"card\":{}}", "card"},
	    {json_long_desc, "card.description"},
	    {"{\"type\":\"card\",\"card\":{\"media_url\":\"/rel.png\"}}", "card.media_url"},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"T\",\"buttons\":[{\"id\":\"1\",\"title\":"
	     "\"1\"},{\"id\":\"2\",\"title\":\"2\"},{\"id\":\"3\",\"title\":\"3\"}],\"actions\":[{"
	     "\"title\":\"4\",\"dial\":\"+15550100\"},{\"title\":\"5\",\"dial\":\"+15550100\"}]}}",
	     "card.actions"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\"}]}", "cards"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\"},{}]}", "cards[1]"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\",\"buttons\":[{\"id\":\"x\","
	     "\"title\":\"X\"}]},{\"title\":\"B\",\"buttons\":[{\"id\":\"x\",\"title\":\"Y\"}]}]}",
	     "cards[1].buttons[0].id"},
	    {"{\"type\":\"document\",\"document\":{}}", "document.url"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x/s.pdf\",\"caption\":\"c\"}}",
	     "document.caption"},
	    {"{\"type\":\"image\",\"image\":{\"url\":7}}", "image.url"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_error_t je;
		json_t *c = json_loads(cases[i].content, 0, &je);
		if (!c)
			fail_msg("case %zu: bad test JSON: %s", i, je.text);
		struct hr_err err = {0};
		int rc = ops->validate(c, &err);
		json_decref(c);
		if (!cases[i].field) {
			if (rc != 0)
				fail_msg("case %zu: refused: %s", i, err.msg);
			continue;
		}
		if (rc != HR_EINVAL || strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: rc %d field '%s' (%s), want '%s'", i, rc, err.field,
			         err.msg, cases[i].field);
	}
}

/* ---- sending ---- */

/* Builds a send of content; returns the parsed body (caller decrefs). */
static json_t *build(struct channel_account *a, const char *content, const char *body,
                     struct http_req *req)
{
	struct message m = {0};
	hr_strlcpy(m.id, MSG_ID, sizeof m.id);
	hr_strlcpy(m.recipient, "+15550123456", sizeof m.recipient);
	m.content = (char *)content;
	m.body = (char *)body;
	struct hr_err err = {0};
	if (a->ops->build_send(a, &m, req, &err) != 0)
		fail_msg("build_send: %s (%s)", err.msg, err.field);
	json_error_t je;
	json_t *j = json_loadb(req->body, req->body_len, 0, &je);
	assert_non_null(j);
	return j;
}

static const char *header_value(const struct curl_slist *h, const char *name)
{
	size_t n = strlen(name);
	for (; h; h = h->next)
		if (strncasecmp(h->data, name, n) == 0 && h->data[n] == ':')
			return h->data + n + 1 + (h->data[n + 1] == ' ');
	return NULL;
}

/* Compares j with the expected JSON text, field by field (json_equal is
 * deep, and the message names both sides). */
static void assert_json(json_t *j, const char *want)
{
	json_error_t je;
	json_t *w = json_loads(want, 0, &je);
	if (!w)
		fail_msg("bad expected JSON: %s", je.text);
	if (!json_equal(j, w)) {
		char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		char *exp = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
		fprintf(stderr, "got:  %s\nwant: %s\n", got, exp);
		free(got);
		free(exp);
		json_decref(w);
		fail_msg("JSON differs");
	}
	json_decref(w);
}

static void test_uuid_of_id(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct http_req req;
	json_t *j = build(a, "{\"type\":\"text\",\"text\":\"x\"}", NULL, &req);
	assert_non_null(strstr(req.url, "messageId=" MSG_UUID "&"));
	json_decref(j);
	http_req_clear(&req);
	/* Not a Herald id: refused before anything is sent. */
	struct message m = {.content = "{\"type\":\"text\",\"text\":\"x\"}"};
	hr_strlcpy(m.recipient, "+15550123456", sizeof m.recipient);
	const char *bad[] = {"", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01ARZ3NDEKTSV4RRFFQ69G5FA!",
	                     "01ARZ3NDEKTSV4RRFFQ69G5FA"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		hr_strlcpy(m.id, bad[i], sizeof m.id);
		struct hr_err err = {0};
		assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
		assert_string_equal(err.field, "id");
		assert_null(req.url);
	}
	/* The extremes of the mapping. */
	hr_strlcpy(m.id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", sizeof m.id);
	struct hr_err err = {0};
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_non_null(strstr(req.url, "messageId=ffffffff-ffff-ffff-ffff-ffffffffffff&"));
	http_req_clear(&req);
	hr_strlcpy(m.id, "00000000000000000000000000", sizeof m.id);
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), 0);
	assert_non_null(strstr(req.url, "messageId=00000000-0000-0000-0000-000000000000&"));
	http_req_clear(&req);
	channel_account_free(a);
}

static void test_build_bodies(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct {
		const char *content, *body, *want;
	} cases[] = {
	    {"{\"type\":\"text\",\"text\":\"Pay now?\",\"buttons\":[{\"id\":\"yes\",\"title\":"
	     "\"Yes\"},{\"id\":\"no\",\"title\":\"No\"}],\"actions\":[{\"title\":\"Call us\","
	     "\"dial\":\"+15550100\"},{\"id\":\"site\",\"title\":\"Website\",\"url\":"
	     "\"https://x.example/pay\"}],\"options\":{\"ttl\":\"86400s\",\"traffic_type\":"
	     "\"TRANSACTION\"}}",
	     NULL,
	     "{\"contentMessage\":{\"text\":\"Pay now?\",\"suggestions\":["
	     "{\"reply\":{\"text\":\"Yes\",\"postbackData\":\"" MSG_UUID "|yes\"}},"
	     "{\"reply\":{\"text\":\"No\",\"postbackData\":\"" MSG_UUID "|no\"}},"
	     "{\"action\":{\"text\":\"Call us\",\"postbackData\":\"" MSG_UUID "|action_0\","
	     "\"dialAction\":{\"phoneNumber\":\"+15550100\"}}},"
	     "{\"action\":{\"text\":\"Website\",\"postbackData\":\"" MSG_UUID "|site\","
	     "\"openUrlAction\":{\"url\":\"https://x.example/pay\"}}}]},"
	     "\"ttl\":\"86400s\",\"messageTrafficType\":\"TRANSACTION\"}"},
	    {"{\"type\":\"text\",\"text\":\"plain\"}", NULL,
	     "{\"contentMessage\":{\"text\":\"plain\"}}"},
	    {"{\"type\":\"template\",\"template\":{\"name\":\"payment_reminder\",\"language\":"
	     "\"en_GB\",\"parameters\":[\"Ana\",\"£1\"]},\"buttons\":[{\"id\":\"pay\",\"title\":"
	     "\"Pay\"}]}",
	     "Hi Ana, pay £1",
	     "{\"contentMessage\":{\"text\":\"Hi Ana, pay £1\",\"suggestions\":[{\"reply\":{"
	     "\"text\":\"Pay\",\"postbackData\":\"" MSG_UUID "|pay\"}}]}}"},
	    {"{\"type\":\"card\",\"card\":{\"title\":\"Your order\",\"description\":\"Shipped\","
	     "\"media_url\":\"https://x/box.png\",\"buttons\":[{\"id\":\"track\",\"title\":"
	     "\"Track\"}]},\"options\":{\"media_height\":\"TALL\"}}",
	     NULL,
	     "{\"contentMessage\":{\"richCard\":{\"standaloneCard\":{\"cardOrientation\":"
	     "\"VERTICAL\",\"cardContent\":{\"title\":\"Your order\",\"description\":\"Shipped\","
	     "\"media\":{\"height\":\"TALL\",\"contentInfo\":{\"fileUrl\":\"https://x/box.png\"}},"
	     "\"suggestions\":[{\"reply\":{\"text\":\"Track\",\"postbackData\":\"" MSG_UUID
	     "|track\"}}]}}}}}"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\",\"media_url\":\"https://x/a.png\","
	     "\"buttons\":[{\"id\":\"a\",\"title\":\"Pick A\"}]},{\"title\":\"B\",\"description\":"
	     "\"bee\",\"actions\":[{\"title\":\"Call\",\"dial\":\"+15550101\"}]}],\"buttons\":[{"
	     "\"id\":\"none\",\"title\":\"Neither\"}]}",
	     NULL,
	     "{\"contentMessage\":{\"richCard\":{\"carouselCard\":{\"cardWidth\":\"MEDIUM\","
	     "\"cardContents\":[{\"title\":\"A\",\"media\":{\"height\":\"MEDIUM\",\"contentInfo\":"
	     "{\"fileUrl\":\"https://x/a.png\"}},\"suggestions\":[{\"reply\":{\"text\":\"Pick A\","
	     "\"postbackData\":\"" MSG_UUID "|a\"}}]},{\"title\":\"B\",\"description\":\"bee\","
	     "\"suggestions\":[{\"action\":{\"text\":\"Call\",\"postbackData\":\"" MSG_UUID
	     "|action_0\",\"dialAction\":{\"phoneNumber\":\"+15550101\"}}}]}]}},"
	     "\"suggestions\":[{\"reply\":{\"text\":\"Neither\",\"postbackData\":\"" MSG_UUID
	     "|none\"}}]}}"},
	    {"{\"type\":\"carousel\",\"cards\":[{\"title\":\"A\"},{\"title\":\"B\"}],\"options\":{"
	     "\"card_width\":\"SMALL\"}}",
	     NULL,
	     "{\"contentMessage\":{\"richCard\":{\"carouselCard\":{\"cardWidth\":\"SMALL\","
	     "\"cardContents\":[{\"title\":\"A\"},{\"title\":\"B\"}]}}}}"},
	    {"{\"type\":\"document\",\"document\":{\"url\":\"https://x/statement.pdf\","
	     "\"filename\":\"statement.pdf\"}}",
	     NULL,
	     "{\"contentMessage\":{\"contentInfo\":{\"fileUrl\":\"https://x/statement.pdf\"}}}"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/i.png\"}}", NULL,
	     "{\"contentMessage\":{\"contentInfo\":{\"fileUrl\":\"https://x/i.png\"}}}"},
	    {"{\"type\":\"image\",\"image\":{\"url\":\"https://x/i.png\",\"caption\":\"Look\"}}",
	     NULL,
	     "{\"contentMessage\":{\"richCard\":{\"standaloneCard\":{\"cardOrientation\":"
	     "\"VERTICAL\",\"cardContent\":{\"description\":\"Look\",\"media\":{\"height\":"
	     "\"MEDIUM\",\"contentInfo\":{\"fileUrl\":\"https://x/i.png\"}}}}}}}"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct http_req req;
		json_t *j = build(a, cases[i].content, cases[i].body, &req);
		assert_json(j, cases[i].want);
		json_decref(j);
		assert_string_equal(req.url, "http://127.0.0.1:9/v1/phones/+15550123456/"
		                             "agentMessages?messageId=" MSG_UUID
		                             "&agentId=herald_demo_agent");
		assert_string_equal(header_value(req.headers, "Content-Type"), "application/json");
		assert_null(req.userpwd);
		http_req_clear(&req);
	}
	/* A template that rendered to nothing cannot be sent. */
	struct message m = {.content = "{\"type\":\"template\",\"template\":{\"name\":\"t\","
	                               "\"language\":\"en\"}}"};
	hr_strlcpy(m.id, MSG_ID, sizeof m.id);
	hr_strlcpy(m.recipient, "+15550123456", sizeof m.recipient);
	struct http_req req;
	struct hr_err err = {0};
	assert_int_equal(a->ops->build_send(a, &m, &req, &err), HR_EINVAL);
	assert_string_equal(err.field, "template");
	channel_account_free(a);
}

/* ---- access tokens ---- */

static void check_assertion(const char *assertion)
{
	jwt_t *j = NULL;
	assert_int_equal(
	    jwt_decode(&j, assertion, (const unsigned char *)g_pub_pem, (int)strlen(g_pub_pem)), 0);
	assert_int_equal(jwt_get_alg(j), JWT_ALG_RS256);
	assert_string_equal(jwt_get_grant(j, "iss"), "herald@rbm-herald.iam.gserviceaccount.com");
	assert_string_equal(jwt_get_grant(j, "scope"),
	                    "https://www.googleapis.com/auth/rcsbusinessmessaging");
	char aud[96];
	snprintf(aud, sizeof aud, "http://127.0.0.1:%d/token", T.port);
	assert_string_equal(jwt_get_grant(j, "aud"), aud);
	long iat = jwt_get_grant_int(j, "iat"), exp = jwt_get_grant_int(j, "exp");
	long now = (long)(hr_now_us() / 1000000);
	assert_true(iat <= now && iat >= now - 30);
	assert_int_equal(exp - iat, 3600);
	assert_string_equal(jwt_get_header(j, "kid"), "kid-0123");
	jwt_free(j);
	/* A different key does not verify it. */
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, k);
	char *other = bio_string(b);
	EVP_PKEY_free(k);
	j = NULL;
	assert_int_not_equal(
	    jwt_decode(&j, assertion, (const unsigned char *)other, (int)strlen(other)), 0);
	jwt_free(j);
	free(other);
}

static int token_requests(void)
{
	pthread_mutex_lock(&T.lock);
	int n = T.token_requests;
	pthread_mutex_unlock(&T.lock);
	return n;
}

static void send_once(struct channel_account *a, char *auth, size_t n)
{
	struct http_req req;
	json_t *j = build(a, "{\"type\":\"text\",\"text\":\"x\"}", NULL, &req);
	json_decref(j);
	const char *v = header_value(req.headers, "Authorization");
	hr_strlcpy(auth, v ? v : "", n);
	http_req_clear(&req);
}

/* Waits (10 s at most) until the fake Google has answered n token requests,
 * then checks that no more came. */
static void wait_token_requests(int n)
{
	int64_t deadline = hr_mono_us() + 10000000;
	while (token_requests() < n && hr_mono_us() < deadline)
		usleep(2000);
	assert_int_equal(token_requests(), n);
}

/* The token a send carries once the refresher has stored token number n. */
static void wait_send_token(struct channel_account *a, int n, char *auth, size_t len)
{
	char want[64];
	snprintf(want, sizeof want, "Bearer tok-%d", n);
	int64_t deadline = hr_mono_us() + 10000000;
	do {
		send_once(a, auth, len);
		if (strcmp(auth, want) == 0)
			return;
		usleep(2000);
	} while (hr_mono_us() < deadline);
	assert_string_equal(auth, want);
}

static void test_token_fetch_and_cache(void **state)
{
	(void)state;
	T.token_status = 200;
	T.expires_in = 3599;
	int base = token_requests();
	struct channel_account *a = live_account("live1");
	char auth[128];
	/* Loading the account asks nothing; the first send goes without a token
	 * and has it fetched in the background, once. */
	usleep(100000);
	assert_int_equal(token_requests(), base);
	send_once(a, auth, sizeof auth);
	wait_token_requests(base + 1);
	wait_send_token(a, base + 1, auth, sizeof auth);
	assert_string_equal(T.grant_type, "urn:ietf:params:oauth:grant-type:jwt-bearer");
	assert_string_equal(T.content_type, "application/x-www-form-urlencoded");
	check_assertion(T.assertion);

	/* Cached: no second fetch. */
	send_once(a, auth, sizeof auth);
	assert_int_equal(token_requests(), base + 1);

	/* RBM refuses it: transient, the token is dropped at once (the next send
	 * goes without it) and the refresher fetches a new one. */
	struct send_outcome o;
	const char *unauth = "{\"error\":{\"code\":401,\"message\":\"Request had invalid "
	                     "authentication credentials.\",\"status\":\"UNAUTHENTICATED\"}}";
	a->ops->parse_send(a, 401, unauth, strlen(unauth), NULL, &o);
	assert_int_equal(o.cls, OUTCOME_TRANSIENT);
	assert_string_equal(o.error_code, "UNAUTHENTICATED");
	wait_token_requests(base + 2);
	wait_send_token(a, base + 2, auth, sizeof auth);

	/* The token endpoint fails: requests go without a token (RBM will answer
	 * 401, a retry), the error says why, and it is not asked again for a
	 * while (5 s). */
	T.token_status = 400;
	a->ops->parse_send(a, 401, unauth, strlen(unauth), NULL, &o);
	wait_token_requests(base + 3);
	send_once(a, auth, sizeof auth);
	assert_string_equal(auth, "");
	int64_t deadline = hr_mono_us() + 10000000;
	for (;;) { /* the failure is stored just after the endpoint answered */
		a->ops->parse_send(a, 401, unauth, strlen(unauth), NULL, &o);
		if (strstr(o.error_text, "invalid_grant") || hr_mono_us() >= deadline)
			break;
		usleep(2000);
	}
	assert_int_equal(o.cls, OUTCOME_TRANSIENT);
	assert_non_null(strstr(o.error_text, "invalid_grant"));
	assert_non_null(strstr(o.error_text, "Invalid JWT Signature."));
	send_once(a, auth, sizeof auth);
	assert_string_equal(auth, "");
	usleep(200000);
	assert_int_equal(token_requests(), base + 3);
	channel_account_free(a);

	/* A short-lived token of an account in use is refreshed in the
	 * background before it runs out (at half its 4 s life); one no send
	 * asked for since is let lapse. */
	T.token_status = 200;
	T.expires_in = 4;
	base = token_requests();
	a = live_account("live2");
	send_once(a, auth, sizeof auth);
	wait_token_requests(base + 1);
	wait_send_token(a, base + 1, auth, sizeof auth);
	wait_token_requests(base + 2);
	wait_send_token(a, base + 2, auth, sizeof auth);
	int64_t t0 = hr_mono_us();
	wait_token_requests(base + 3); /* used since: refreshed again */
	assert_true(hr_mono_us() - t0 < 3500000);
	usleep(3000000); /* unused since: not refreshed at its half life */
	assert_int_equal(token_requests(), base + 3);
	T.expires_in = 3599;
	channel_account_free(a);
}

/* A slow token endpoint never holds up build_send (the dispatcher's thread):
 * the send goes at once without a token and carries one once it came. */
static void test_token_never_blocks_send(void **state)
{
	(void)state;
	T.token_status = 200;
	T.expires_in = 3599;
	pthread_mutex_lock(&T.lock);
	T.token_delay_ms = 1500;
	pthread_mutex_unlock(&T.lock);
	int base = token_requests();
	struct channel_account *a = live_account("slow1");
	char auth[128];
	int64_t t0 = hr_mono_us();
	send_once(a, auth, sizeof auth);
	int64_t took = hr_mono_us() - t0;
	assert_string_equal(auth, "");
	assert_true(took < 500000); /* the fetch takes 1.5 s */
	/* Freed while its fetch is in flight (the endpoint has it and waits):
	 * freeing does not wait for it, and the refresher frees the account's
	 * state when the fetch ends (ASan would see a use after free or a
	 * leak). */
	wait_token_requests(base + 1);
	t0 = hr_mono_us();
	channel_account_free(a);
	assert_true(hr_mono_us() - t0 < 500000);
	a = live_account("slow2");
	send_once(a, auth, sizeof auth);
	wait_token_requests(base + 2);
	wait_send_token(a, base + 2, auth, sizeof auth);
	channel_account_free(a);

	/* At exit: the last account freed while its fetch waits on a 3 s
	 * endpoint; the fetch is aborted and the token thread ends well before
	 * the endpoint answers (a process must not run libcurl's cleanup with
	 * a transfer still going). */
	pthread_mutex_lock(&T.lock);
	T.token_delay_ms = 3000;
	pthread_mutex_unlock(&T.lock);
	a = live_account("slow3");
	send_once(a, auth, sizeof auth);
	wait_token_requests(base + 3);
	t0 = hr_mono_us();
	channel_account_free(a);
	assert_true(rbm_refresher_quiesce(hr_mono_us() + 2500000));
	assert_true(hr_mono_us() - t0 < 2000000);
	assert_true(rbm_refresher_quiesce(hr_mono_us())); /* ended stays ended */
	pthread_mutex_lock(&T.lock);
	T.token_delay_ms = 0;
	pthread_mutex_unlock(&T.lock);
}

static void test_capability(void **state)
{
	(void)state;
	T.token_status = 200;
	struct channel_account *a = live_account("caps");
	json_t *features = NULL;
	struct hr_err err = {0};
	assert_int_equal(a->ops->capability(a, "+1 555 000 1111", &features, &err), 0);
	assert_json(
	    features,
	    "[\"RICHCARD_STANDALONE\",\"RICHCARD_CAROUSEL\",\"ACTION_DIAL\",\"ACTION_OPEN_URL\"]");
	json_decref(features);
	assert_string_equal(T.caps_url, "/v1/phones/+15550001111/capabilities");
	assert_string_equal(T.caps_agent, "herald_demo_agent");
	assert_int_equal(strlen(T.caps_request_id), 36);
	assert_int_equal(T.caps_request_id[14], '4'); /* a version-4 UUID */
	assert_true(strncmp(T.caps_auth, "Bearer tok-", 11) == 0);
	char first_id[64];
	hr_strlcpy(first_id, T.caps_request_id, sizeof first_id);
	assert_int_equal(a->ops->capability(a, "+15550001111", &features, &err), 0);
	json_decref(features);
	assert_string_not_equal(T.caps_request_id, first_id); /* fresh per request */

	features = NULL;
	assert_int_equal(a->ops->capability(a, "+15550000404", &features, &err), HR_ENOTFOUND);
	assert_null(features);
	assert_non_null(strstr(err.msg, "not RCS-capable"));
	assert_int_equal(a->ops->capability(a, "+15550000500", &features, &err), HR_EBUSY);
	assert_non_null(strstr(err.msg, "INTERNAL"));
	int before = token_requests();
	assert_int_equal(a->ops->capability(a, "+15550000401", &features, &err), HR_EBUSY);
	assert_int_equal(a->ops->capability(a, "+15550001111", &features, &err), 0);
	json_decref(features);
	assert_int_equal(token_requests(), before + 1); /* the refused token was dropped */
	assert_int_equal(a->ops->capability(a, "not a number", &features, &err), HR_EINVAL);
	assert_string_equal(err.field, "to");
	channel_account_free(a);

	/* Unreachable provider: a clear "did not answer". */
	a = offline_account();
	assert_int_equal(a->ops->capability(a, "+15550001111", &features, &err), HR_EBUSY);
	assert_non_null(strstr(err.msg, "did not answer"));
	channel_account_free(a);
}

/* ---- classification ---- */

static void test_parse_send_table(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct {
		long status;
		const char *body;
		const char *retry_after;
		enum outcome_class cls;
		const char *code;
		const char *provider_id;
		int64_t retry_us;
	} cases[] = {
	    {200,
	     "{\"name\":\"phones/+15550123456/agentMessages/" MSG_UUID "\",\"sendTime\":"
	     "\"2026-01-15T10:00:00Z\",\"contentMessage\":{\"text\":\"x\"}}",
	     NULL, OUTCOME_OK, "", MSG_UUID, 0},
	    {200, "{}", NULL, OUTCOME_TRANSIENT, "http_200", "", 0},
	    {404,
	     "{\"error\":{\"code\":404,\"message\":\"Requested entity was not found.\",\"status\":"
	     "\"NOT_FOUND\"}}",
	     NULL, OUTCOME_PERMANENT, "not_rcs_capable", "", 0},
	    {409,
	     "{\"error\":{\"code\":409,\"message\":\"Requested entity already exists: "
	     "phones/+15550123456/agentMessages/" MSG_UUID "\",\"status\":\"ALREADY_EXISTS\"}}",
	     NULL, OUTCOME_OK, "", MSG_UUID, 0},
	    {409,
	     "{\"error\":{\"code\":409,\"message\":\"Requested entity already exists\","
	     "\"status\":\"ALREADY_EXISTS\"}}",
	     NULL, OUTCOME_OK, "", "", 0},
	    {409, "{\"error\":{\"code\":409,\"message\":\"x\",\"status\":\"ABORTED\"}}", NULL,
	     OUTCOME_PERMANENT, "ABORTED", "", 0},
	    {429,
	     "{\"error\":{\"code\":429,\"message\":\"Quota exceeded\",\"status\":"
	     "\"RESOURCE_EXHAUSTED\"}}",
	     "7", OUTCOME_RATE_LIMITED, "RESOURCE_EXHAUSTED", "", 7000000},
	    {429, "", NULL, OUTCOME_RATE_LIMITED, "http_429", "", 0},
	    {500,
	     "{\"error\":{\"code\":500,\"message\":\"Internal error\",\"status\":\"INTERNAL\"}}",
	     NULL, OUTCOME_TRANSIENT, "INTERNAL", "", 0},
	    {503,
	     "{\"error\":{\"code\":503,\"message\":\"The service is currently unavailable.\","
	     "\"status\":\"UNAVAILABLE\"}}",
	     NULL, OUTCOME_TRANSIENT, "UNAVAILABLE", "", 0},
	    {502, "<html>bad gateway</html>", NULL, OUTCOME_TRANSIENT, "http_502", "", 0},
	    {400,
	     "{\"error\":{\"code\":400,\"message\":\"Invalid suggestion\",\"status\":"
	     "\"INVALID_ARGUMENT\"}}",
	     NULL, OUTCOME_PERMANENT, "INVALID_ARGUMENT", "", 0},
	    {403,
	     "{\"error\":{\"code\":403,\"message\":\"Agent not launched\",\"status\":"
	     "\"PERMISSION_DENIED\"}}",
	     NULL, OUTCOME_PERMANENT, "PERMISSION_DENIED", "", 0},
	    {401,
	     "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication "
	     "credentials.\",\"status\":\"UNAUTHENTICATED\"}}",
	     NULL, OUTCOME_TRANSIENT, "UNAUTHENTICATED", "", 0},
	    {0, "Connection refused", NULL, OUTCOME_TRANSIENT, "network", "", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct send_outcome o;
		a->ops->parse_send(a, cases[i].status, cases[i].body, strlen(cases[i].body),
		                   cases[i].retry_after, &o);
		if (o.cls != cases[i].cls || strcmp(o.error_code, cases[i].code) != 0 ||
		    strcmp(o.provider_id, cases[i].provider_id) != 0)
			fail_msg("case %zu: class %s code '%s' id '%s' (%s)", i,
			         outcome_class_name(o.cls), o.error_code, o.provider_id,
			         o.error_text);
		assert_int_equal(o.retry_after_us, cases[i].retry_us);
		assert_false(o.suppress_recipient);
		assert_string_equal(o.new_recipient, "");
		/* RESOURCE_EXHAUSTED is the agent's quota: account-wide. */
		assert_int_equal(o.rate_scope, cases[i].cls == OUTCOME_RATE_LIMITED
		                                   ? RATE_SCOPE_ACCOUNT
		                                   : RATE_SCOPE_NONE);
		if (cases[i].status == 404)
			assert_string_equal(o.error_text,
			                    "recipient is not RCS-capable (404 NOT_FOUND)");
		if (cases[i].cls != OUTCOME_OK)
			assert_true(o.error_text[0] != '\0');
	}
	channel_account_free(a);
}

/* the meaning of each code parse_send and the webhook record (the
 * overview's top failure codes), exact; NULL for a code RBM does not give. */
static void test_error_meaning(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	const char *(*meaning)(const char *) = channel_rcs.error_meaning;
	static const struct meaning_case cases[] = {
	    {404, "{\"error\":{\"code\":404,\"status\":\"NOT_FOUND\"}}", "not_rcs_capable",
	     "Recipient cannot receive RCS (device not capable or RCS off; 404 NOT_FOUND): falls "
	     "back when routed"},
	    {400, "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\"}}", "INVALID_ARGUMENT",
	     "Invalid request (400): a field, or a feature the recipient's device lacks"},
	    {400, "{\"error\":{\"code\":400,\"status\":\"FAILED_PRECONDITION\"}}",
	     "FAILED_PRECONDITION",
	     "Refused in the current state (400), e.g. the agent is not "
	     "launched"},
	    {403, "{\"error\":{\"code\":403,\"status\":\"PERMISSION_DENIED\"}}",
	     "PERMISSION_DENIED",
	     "Agent not allowed (403): not launched on the recipient's carrier, or the service "
	     "account lacks access"},
	    {401, "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\"}}", "UNAUTHENTICATED",
	     "Access token missing, expired or revoked (401); retried with a new token"},
	    {429, "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}",
	     "RESOURCE_EXHAUSTED", "The agent's request quota is used up (429); retried later"},
	    {409, "{\"error\":{\"code\":409,\"status\":\"ABORTED\"}}", "ABORTED",
	     "Aborted by a concurrent request (409)"},
	    {500, "{\"error\":{\"code\":500,\"status\":\"INTERNAL\"}}", "INTERNAL",
	     "RBM internal error (500); retried"},
	    {503, "{\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\"}}", "UNAVAILABLE",
	     "RBM is unavailable (503); retried"},
	    {504, "{\"error\":{\"code\":504,\"status\":\"DEADLINE_EXCEEDED\"}}",
	     "DEADLINE_EXCEEDED", "RBM did not answer in time (504); retried"},
	    {502, "<html>bad gateway</html>", "http_502",
	     "The provider failed (HTTP 5xx) without an error body; retried"},
	    {429, "", "http_429", "Too many requests (HTTP 429) without a body; retried later"},
	    {400, "", "http_400",
	     "The provider refused the request (HTTP 4xx) without an error body"},
	    {200, "{}", "http_200", "A success answer without the message's id; retried"},
	    {0, "Connection refused", "network",
	     "No answer from the provider (connection refused, reset or timed out); retried"},
	};
	/* Codes RBM does not give, or another channel's. */
	static const char *const unknown[] = {"131026",   "403",       "SOMETHING_ELSE", "http_",
	                                      "http_5x3", "http_5000", "not_rcs",        ""};
	check_error_meanings(a, meaning, cases, sizeof cases / sizeof *cases, unknown,
	                     sizeof unknown / sizeof *unknown);
	assert_string_equal(meaning("TTL_EXPIRATION_REVOKED"),
	                    "Not delivered before its ttl ran out: RBM revoked it");
	channel_account_free(a);
}

/* ---- webhooks ---- */

static void test_parse_vector(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct wh_parsed p = {0};
	struct hr_err err = {0};
	assert_int_equal(a->ops->webhook_parse(a, VEC_BODY, strlen(VEC_BODY), &p, &err), 0);
	assert_int_equal(p.nstatuses, 1);
	assert_int_equal(p.ninbound, 0);
	assert_int_equal(p.statuses[0].status, MSG_DELIVERED);
	assert_string_equal(p.statuses[0].provider_id, "0f9a6c1e-4c77-4a4e-9d3e-2b1f7a5d6e01");
	assert_string_equal(p.statuses[0].provider_ts, "2026-01-15T10:00:00.123456Z");
	assert_int_equal(p.statuses[0].provider_at, 1768471200123456LL);
	wh_parsed_clear(&p);
	char key[128];
	struct fake_req f = {0};
	struct wh_request r = mkreq(&f, "POST", VEC_BODY);
	a->ops->webhook_dedupe_key(&r, key);
	assert_string_equal(key, "ps:2070443601311540");
	channel_account_free(a);
}

static void test_parse_table(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct {
		const char *event;
		int nstatus, ninbound;
		int status;
		const char *id, *kind, *text, *payload, *context, *from;
	} cases[] = {
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"eventType\":\"READ\",\"eventId\":\"e2\","
	     "\"messageId\":\"" MSG_UUID "\",\"sendTime\":\"2026-01-15T10:00:05+01:00\","
	     "\"agentId\":\"herald_demo_agent\"}",
	     1, 0, MSG_READ, MSG_UUID, NULL, NULL, NULL, NULL, NULL},
	    {"{\"phoneNumber\":\"+15550123456\",\"messageId\":\"" MSG_UUID "\",\"agentId\":"
	     "\"a\",\"eventType\":\"TTL_EXPIRATION_REVOKED\",\"eventId\":\"e5\",\"sendTime\":"
	     "\"2026-01-16T10:00:00Z\"}",
	     1, 0, MSG_UNDELIVERED, MSG_UUID, NULL, NULL, NULL, NULL, NULL},
	    {"{\"phoneNumber\":\"+15550123456\",\"messageId\":\"" MSG_UUID "\",\"agentId\":"
	     "\"a\",\"eventType\":\"TTL_EXPIRATION_REVOKE_FAILED\",\"eventId\":\"e6\"}",
	     0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"eventType\":\"IS_TYPING\",\"eventId\":"
	     "\"e3\",\"agentId\":\"herald_demo_agent\"}",
	     0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"eventType\":\"UNSUBSCRIBE\",\"eventId\":"
	     "\"e4\",\"agentId\":\"herald_demo_agent\"}",
	     0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER1\",\"sendTime\":"
	     "\"2026-01-15T10:01:00Z\",\"text\":\"Where is my parcel?\",\"agentId\":\"a\"}",
	     0, 1, 0, "MsUSER1", "text", "Where is my parcel?", NULL, "", "+15550123456"},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER2\",\"sendTime\":"
	     "\"2026-01-15T10:01:00Z\",\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID
	     "|yes\",\"text\":\"Yes\",\"type\":\"REPLY\"},\"agentId\":\"a\"}",
	     0, 1, 0, "MsUSER2", "button", "Yes", "yes", MSG_UUID, "+15550123456"},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER3\",\"sendTime\":"
	     "\"2026-01-15T10:01:00Z\",\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID
	     "|a|b\",\"text\":\"Call\",\"type\":\"ACTION\"}}",
	     0, 1, 0, "MsUSER3", "button", "Call", "a|b", MSG_UUID, "+15550123456"},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER4\","
	     "\"suggestionResponse\":{\"postbackData\":\"foreign_payload\",\"text\":\"X\"}}",
	     0, 1, 0, "MsUSER4", "button", "X", "foreign_payload", "", "+15550123456"},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER5\",\"userFile\":{"
	     "\"payload\":{\"mimeType\":\"image/jpeg\",\"fileSizeBytes\":10,\"fileUri\":"
	     "\"https://rcs.example/f\",\"fileName\":\"f.jpg\"}}}",
	     0, 1, 0, "MsUSER5", "file", "https://rcs.example/f", NULL, "", "+15550123456"},
	    {"{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsUSER6\",\"location\":{"
	     "\"latitude\":51.5,\"longitude\":-0.12}}",
	     0, 1, 0, "MsUSER6", "location", "51.5000000,-0.1200000", NULL, "", "+15550123456"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *body = envelope(cases[i].event, "77", NULL);
		struct wh_parsed p = {0};
		struct hr_err err = {0};
		if (a->ops->webhook_parse(a, body, strlen(body), &p, &err) != 0)
			fail_msg("case %zu: %s (%s)", i, err.msg, err.field);
		assert_int_equal(p.nstatuses, cases[i].nstatus);
		assert_int_equal(p.ninbound, cases[i].ninbound);
		if (cases[i].nstatus) {
			assert_int_equal(p.statuses[0].status, cases[i].status);
			assert_string_equal(p.statuses[0].provider_id, cases[i].id);
			if (cases[i].status == MSG_UNDELIVERED) {
				assert_string_equal(p.statuses[0].error_code,
				                    "TTL_EXPIRATION_REVOKED");
				assert_non_null(strstr(p.statuses[0].error_text, "expired"));
			} else {
				assert_string_equal(p.statuses[0].error_code, "");
			}
		}
		if (cases[i].ninbound) {
			struct wh_inbound *in = &p.inbound[0];
			assert_string_equal(in->provider_msg_id, cases[i].id);
			assert_string_equal(in->kind, cases[i].kind);
			assert_string_equal(in->from, cases[i].from);
			assert_string_equal(in->context_id, cases[i].context);
			if (cases[i].text)
				assert_string_equal(in->text, cases[i].text);
			if (cases[i].payload)
				assert_string_equal(in->payload, cases[i].payload);
			else
				assert_null(in->payload);
			assert_int_equal(in->optout, 0);
			assert_null(in->auto_reply);
		}
		if (i == 0) /* +01:00 is an hour earlier in UTC */
			assert_int_equal(p.statuses[0].provider_at, 1768467605000000LL);
		wh_parsed_clear(&p);
		free(body);
	}
	channel_account_free(a);
}

static void test_parse_malformed(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	char *no_id =
	    envelope("{\"senderPhoneNumber\":\"+1\",\"eventType\":\"DELIVERED\"}", "1", NULL);
	char *bad_time = envelope("{\"senderPhoneNumber\":\"+1\",\"eventType\":\"READ\","
	                          "\"messageId\":\"m\",\"sendTime\":\"yesterday\"}",
	                          "1", NULL);
	char *neither = envelope("{\"senderPhoneNumber\":\"+1\"}", "1", NULL);
	char *no_sender = envelope("{\"messageId\":\"m\",\"text\":\"hi\"}", "1", NULL);
	char *bad_type = envelope("{\"senderPhoneNumber\":\"+1\",\"eventType\":5}", "1", NULL);
	char *bad_sr = envelope("{\"senderPhoneNumber\":\"+1\",\"messageId\":\"m\","
	                        "\"suggestionResponse\":{\"text\":\"x\"}}",
	                        "1", NULL);
	char *arr = envelope("[1,2]", "1", NULL);
	struct {
		const char *body, *field;
	} cases[] = {
	    {"not json", "body[3]"},
	    {"{}", "message"},
	    {"{\"message\":{\"data\":7}}", "message.data"},
	    {"{\"message\":{\"data\":\"@@@@\"}}", "message.data"},
	    {arr, "message.data"},
	    {no_id, "data.messageId"},
	    {bad_time, "data.sendTime"},
	    {neither, "data"},
	    {no_sender, "data.senderPhoneNumber"},
	    {bad_type, "data.eventType"},
	    {bad_sr, "data.suggestionResponse.postbackData"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wh_parsed p = {0};
		/* Something parsed earlier stays; nothing of the bad body is added. */
		char *good = envelope("{\"senderPhoneNumber\":\"+1\",\"messageId\":\"u\",\"text\":"
		                      "\"t\"}",
		                      "2", NULL);
		struct hr_err err = {0};
		assert_int_equal(a->ops->webhook_parse(a, good, strlen(good), &p, &err), 0);
		free(good);
		assert_int_equal(
		    a->ops->webhook_parse(a, cases[i].body, strlen(cases[i].body), &p, &err),
		    HR_EINVAL);
		if (strcmp(err.field, cases[i].field) != 0)
			fail_msg("case %zu: field '%s' (%s), want '%s'", i, err.field, err.msg,
			         cases[i].field);
		assert_int_equal(p.ninbound, 1);
		assert_int_equal(p.nstatuses, 0);
		wh_parsed_clear(&p);
	}
	free(no_id);
	free(bad_time);
	free(neither);
	free(no_sender);
	free(bad_type);
	free(bad_sr);
	free(arr);
	channel_account_free(a);
}

static void test_dedupe_keys(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	struct fake_req f = {0};
	char key[128];
	char *b1 = envelope("{\"senderPhoneNumber\":\"+1\",\"eventType\":\"READ\",\"eventId\":"
	                    "\"EV9\",\"messageId\":\"m\"}",
	                    NULL, NULL);
	char *b2 = envelope("{\"senderPhoneNumber\":\"+1\",\"messageId\":\"USR7\",\"text\":\"t\"}",
	                    NULL, NULL);
	char *b3 = envelope("{\"senderPhoneNumber\":\"+1\",\"messageId\":\"USR7\",\"text\":\"t\"}",
	                    "PS1", NULL);
	struct {
		const char *body, *key;
	} cases[] = {{b1, "ev:EV9"}, {b2, "um:USR7"}, {b3, "ps:PS1"}, {"garbage", ""}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wh_request r = mkreq(&f, "POST", cases[i].body);
		a->ops->webhook_dedupe_key(&r, key);
		assert_string_equal(key, cases[i].key);
	}
	free(b1);
	free(b2);
	free(b3);
	channel_account_free(a);
}

/* Signing, verifying and parsing agree on what envelope() builds. */
static void test_signed_roundtrip(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	char sig[89];
	char *body = envelope("{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"U1\","
	                      "\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID "|pay\","
	                      "\"text\":\"Pay\",\"type\":\"REPLY\"}}",
	                      "9", sig);
	struct fake_req f = {.sig = sig};
	struct wh_request r = mkreq(&f, "POST", body);
	struct hr_err err = {0};
	int status = 0;
	char *hs = NULL;
	assert_int_equal(a->ops->webhook_handshake(a, &r, &status, &hs), 0);
	assert_int_equal(a->ops->webhook_verify(a, &r, &err), 0);
	struct wh_parsed p = {0};
	assert_int_equal(a->ops->webhook_parse(a, body, strlen(body), &p, &err), 0);
	assert_int_equal(p.ninbound, 1);
	assert_string_equal(p.inbound[0].payload, "pay");
	assert_string_equal(p.inbound[0].context_id, MSG_UUID);
	wh_parsed_clear(&p);
	free(body);
	channel_account_free(a);
}

/* ---- the fast bodies and answers against jansson's ---- */

/* A text or rendered template without suggestions is written directly,
 * byte for byte jansson's; everything else is still jansson's, equal too. */
static void test_fast_bodies_equal(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	static char t1[4 * 3072 + 1];
	unsigned seed = 31337;
	int fast = 0, fallback = 0, refused = 0;
	for (int i = 0; i < 1000; i++) {
		struct message m = {0};
		hr_strlcpy(m.id, MSG_ID, sizeof m.id);
		hr_strlcpy(m.recipient, "+15550123456", sizeof m.recipient);
		json_t *c;
		bool want_fast = true;
		fb_random_nonempty(t1, i % 100 == 0 ? 3072 : 400, &seed);
		if (i % 2) {
			c = json_pack("{s:s, s:s}", "type", "text", "text", t1);
		} else {
			m.body = t1;
			c = json_pack("{s:s, s:{s:s, s:s}}", "type", "template", "template", "name",
			              "otp", "language", "en");
		}
		json_t *opts = json_object();
		if (i % 3 == 0)
			json_object_set_new(opts, "ttl", json_string("86400s"));
		if (i % 4 == 0)
			json_object_set_new(opts, "traffic_type", json_string("TRANSACTION"));
		json_object_set_new(c, "options", opts);
		if (i % 9 == 0) { /* suggestions: jansson builds it */
			json_object_set_new(c, "buttons",
			                    json_pack("[{s:s, s:s}]", "id", "yes", "title", "Yes"));
			want_fast = false;
		}
		m.content = fb_content(c);
		if (fb_same_request(a, &m, true) == 0) {
			assert_int_equal(fb_fast_hits, want_fast);
			if (want_fast)
				fast++;
			else
				fallback++;
		} else {
			refused++;
		}
		free(m.content);
	}
	/* A template body it would refuse: declined, and refused as before. */
	struct message m = {0};
	hr_strlcpy(m.id, MSG_ID, sizeof m.id);
	hr_strlcpy(m.recipient, "+15550123456", sizeof m.recipient);
	m.content = "{\"type\":\"template\",\"template\":{\"name\":\"otp\",\"language\":\"en\"}}";
	m.body = "";
	assert_int_equal(fb_same_request(a, &m, true), HR_EINVAL);
	char *big = malloc(3074);
	assert_non_null(big);
	memset(big, 'x', 3073);
	big[3073] = '\0';
	m.body = big;
	assert_int_equal(fb_same_request(a, &m, true), HR_EINVAL);
	free(big);
	/* Cards, carousels and media: jansson's, as before. */
	m.body = NULL;
	m.content = "{\"type\":\"card\",\"card\":{\"title\":\"T\",\"description\":\"D\"}}";
	assert_int_equal(fb_same_request(a, &m, true), 0);
	assert_int_equal(fb_fast_hits, 0);
	print_message("rcs: %d fast bodies, %d with suggestions by jansson, all equal; %d refused "
	              "alike\n",
	              fast, fallback, refused);
	assert_int_equal(fast + fallback + refused, 1000);
	assert_true(fast >= 850);
	channel_account_free(a);
}

/* Answers: the name read fast gives jansson's outcome, for good, odd and
 * broken answers. */
static void test_fast_answers_equal(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	const char *ok =
	    "{\"name\":\"phones/+15550123456/agentMessages/" MSG_UUID "\","
	    "\"sendTime\":\"2026-01-15T10:00:00.123456Z\",\"contentMessage\":{\"text\":"
	    "\"Ol\\u00e1\\n\",\"suggestions\":[{\"reply\":{\"text\":\"Yes\","
	    "\"postbackData\":\"x|yes\"}}]}}";
	struct send_outcome o;
	assert_int_equal(fb_same_outcome(a, 200, ok, strlen(ok), NULL, &o), OUTCOME_OK);
	assert_string_equal(o.provider_id, MSG_UUID);
	assert_int_equal(fb_fast_hits, 1);
	static const char *const odd[] = {
	    "{\"name\":\"phones\\/+1\\/agentMessages\\/abc\\u00e9\"}",
	    "{\"name\":\"phones/+1/agentMessages/\"}",
	    "{\"name\":\"phones/+1/other/abc\"}",
	    "{\"name\":\"abc\"}",
	    "{\"name\":1}",
	    "{\"name\":null}",
	    "{\"name\":\"phones/+1/agentMessages/a\",\"name\":\"phones/+1/agentMessages/b\"}",
	    "{\"error\":{\"code\":409,\"message\":\"Message " MSG_UUID " already exists\","
	    "\"status\":\"ALREADY_EXISTS\"}}",
	    "{\"error\":{\"code\":404,\"message\":\"not found\",\"status\":\"NOT_FOUND\"}}",
	};
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		fb_same_outcome(a, 200, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 409, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 404, odd[i], strlen(odd[i]), NULL, NULL);
		fb_same_outcome(a, 503, odd[i], strlen(odd[i]), "5", NULL);
	}
	fb_same_outcome(a, 200, odd[0], strlen(odd[0]), NULL, &o);
	assert_string_equal(o.provider_id, "abc\xc3\xa9");
	assert_int_equal(fb_fast_hits, 1);
	fb_same_outcome(a, 200, odd[6], strlen(odd[6]), NULL, &o);
	assert_string_equal(o.provider_id, "b");
	/* A name longer than the fast reader's buffer: jansson's way, same. */
	char body[1200];
	int k = snprintf(body, sizeof body, "{\"name\":\"phones/%0600d/agentMessages/abc\"}", 1);
	assert_int_equal(fb_same_outcome(a, 200, body, (size_t)k, NULL, &o), OUTCOME_OK);
	assert_int_equal(fb_fast_hits, 0);
	fb_same_outcome(a, 0, "refused", 7, NULL, NULL);
	fb_same_outcomes_malformed(a, ok);
	channel_account_free(a);
}

/* ---- pushes read with jsonr: the same as with jansson ---- */

/* event wrapped as a push (envelope) and read both ways; the code, and
 * ws_fast says which way the fast side went. */
static int rbm_same(const struct channel_account *a, const char *event)
{
	char *body = envelope(event, "77", NULL);
	assert_non_null(body);
	int rc = ws_same_parse(&channel_rcs, a, body, strlen(body));
	free(body);
	return rc;
}

#define RBM_U(x) "{\"senderPhoneNumber\":\"+15550123456\",\"messageId\":\"MsU\"" x "}"
#define RBM_E(type, x) "{\"eventType\":\"" type "\",\"messageId\":\"" MSG_UUID "\"" x "}"

static void test_fast_webhooks_equal(void **state)
{
	(void)state;
	struct channel_account *a = offline_account();
	static const struct ws_case events[] = {
	    {RBM_E("READ", ",\"sendTime\":\"2026-01-15T10:00:05+01:00\",\"agentId\":\"a\""), 0, 1},
	    {RBM_E("DELIVERED", ",\"sendTime\":\"2026-01-15T10:00:00.123456Z\""), 0, 1},
	    {RBM_E("TTL_EXPIRATION_REVOKED", ",\"eventId\":\"e5\""), 0, 1},
	    {RBM_E("TTL_EXPIRATION_REVOKE_FAILED", ""), 0, 1},
	    {RBM_E("IS_TYPING", ",\"messageId\":5"), 0, 1},
	    {RBM_E("\\u0052EAD", ""), 0, 1},
	    {RBM_E("READ", ",\"messageId\":\"m\\u00e9\\ud83d\\ude00\""), 0, 1},
	    {RBM_E("READ", ",\"eventType\":\"DELIVERED\",\"messageId\":\"last\""), 0, 1},
	    {RBM_U(",\"text\":\"Where is my parcel? \\\"\\u00e9\\\" 😀\",\"sendTime\":"
	           "\"2026-01-15T10:01:00Z\""),
	     0, 1},
	    {RBM_U(",\"text\":\"\""), 0, 1},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID "|yes\",\"text\":"
	           "\"Yes\",\"type\":\"REPLY\"}"),
	     0, 1},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID "|a|b\"}"), 0, 1},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"01563e3a-b5d3-d676-4c61-"
	           "efb99302bd5g|x\",\"text\":\"X\"}"),
	     0, 1},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"foreign\\u007cpayload\"}"), 0, 1},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"\"}"), 0, 1},
	    {RBM_U(",\"text\":5,\"suggestionResponse\":{\"postbackData\":\"p\"}"), 0, 1},
	    {RBM_U(",\"userFile\":{\"payload\":{\"mimeType\":\"image/jpeg\",\"fileUri\":"
	           "\"https:\\/\\/rcs.example\\/f\"}}"),
	     0, 1},
	    {RBM_U(",\"userFile\":{\"payload\":5}"), 0, 1},
	    {RBM_U(",\"userFile\":5"), 0, 1},
	    {RBM_U(",\"location\":5"), 0, 1},
	    {RBM_U(""), 0, 1},
	    {RBM_U(",\"text\":null"), 0, 1},
	    /* What jsonr leaves to jansson, which takes it: a location (its
	     * doubles), an exponent, an escaped key. */
	    {RBM_U(",\"location\":{\"latitude\":51.5,\"longitude\":-0.12}"), 0, 0},
	    {RBM_U(",\"location\":{\"latitude\":\"51.5\",\"longitude\":-0}"), 0, 0},
	    {RBM_U(",\"text\":\"t\",\"n\":2E2"), 0, 0},
	    {RBM_U(",\"t\\u0065xt\":\"t\""), 0, 0},
	    /* Errors: jansson's way names them. */
	    {"[1,2]", HR_EINVAL, 0},
	    {"{", HR_EINVAL, 0},
	    {"", HR_EINVAL, 0},
	    {"{\"senderPhoneNumber\":\"+1\"}", HR_EINVAL, 0},
	    {RBM_E("READ", ",\"messageId\":\"\""), HR_EINVAL, 0},
	    {RBM_E("READ", ",\"messageId\":null"), HR_EINVAL, 0},
	    {RBM_E("READ", ",\"sendTime\":\"yesterday\""), HR_EINVAL, 0},
	    {RBM_E("READ", ",\"sendTime\":null"), HR_EINVAL, 0},
	    {RBM_E("READ", ",\"sendTime\":\"2026-01-15T10:00:00.1234567890123456789012345Z\""),
	     HR_EINVAL, 0},
	    {"{\"eventType\":null}", HR_EINVAL, 0},
	    {"{\"eventType\":5,\"messageId\":\"m\"}", HR_EINVAL, 0},
	    {"{\"messageId\":\"m\",\"text\":\"hi\"}", HR_EINVAL, 0},
	    {RBM_U(",\"senderPhoneNumber\":\"\""), HR_EINVAL, 0},
	    {RBM_U(",\"suggestionResponse\":{\"text\":\"x\"}"), HR_EINVAL, 0},
	    {RBM_U(",\"suggestionResponse\":[]"), HR_EINVAL, 0},
	    {RBM_U(",\"suggestionResponse\":{\"postbackData\":\"p\",\"text\":5}"), HR_EINVAL, 0},
	    {RBM_U(",\"userFile\":{\"payload\":{\"fileUri\":7}}"), HR_EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
		int rc = rbm_same(a, events[i].body);
		if (rc != events[i].rc || ws_fast != (unsigned long)events[i].fast)
			fail_msg("event %zu: rc %d fast %lu, want rc %d fast %d: %s", i, rc,
			         ws_fast, events[i].rc, events[i].fast, events[i].body);
	}
	/* The push around the event. */
	char *good = envelope(RBM_U(",\"text\":\"t\""), "1", NULL);
	char *slashed = malloc(2 * strlen(good) + 1); /* every '/' written "\/" */
	assert_non_null(slashed);
	size_t k = 0;
	for (const char *c = good; *c; c++) {
		if (*c == '/')
			slashed[k++] = '\\';
		slashed[k++] = *c;
	}
	slashed[k] = '\0';
	assert_non_null(strchr(good, '/'));
	const struct ws_case pushes[] = {
	    {VEC_BODY, 0, 1},
	    {good, 0, 1},
	    {slashed, 0, 1},
	    {"not json", HR_EINVAL, 0},
	    {"{}", HR_EINVAL, 0},
	    {"[]", HR_EINVAL, 0},
	    {"{\"message\":null}", HR_EINVAL, 0},
	    {"{\"message\":{\"data\":7}}", HR_EINVAL, 0},
	    {"{\"message\":{\"data\":\"@@@@\"}}", HR_EINVAL, 0},
	    {"{\"message\":{\"data\":\"\"}}", HR_EINVAL, 0},
	    {"{\"message\":{\"data\":\"e30=\"},\"message\":{}}", HR_EINVAL, 0},
	    {"{\"message\":{}, \"message\":{\"data\":\"e30=\"}}", HR_EINVAL, 0}, /* {} */
	};
	ws_cases(&channel_rcs, a, pushes, sizeof pushes / sizeof pushes[0]);

	/* A messageId at its size exactly, and one byte over. */
	for (int over = 0; over <= 1; over++) {
		char ev[HR_PROVIDER_ID_MAX + 128], id[HR_PROVIDER_ID_MAX + 1];
		memset(id, 'm', sizeof id);
		id[HR_PROVIDER_ID_MAX - 1 + over] = '\0';
		snprintf(ev, sizeof ev, "{\"eventType\":\"READ\",\"messageId\":\"%s\"}", id);
		assert_int_equal(rbm_same(a, ev), over ? HR_EINVAL : 0);
		assert_int_equal(ws_fast, over ? 0 : 1);
	}

	/* Mutations of events inside a valid push, and of a whole push. */
	static const char pool[] = "\"\\{}[],:0123456789-.eEtrufalsn u/|\x01\x80\xc3\xa9\xff";
	static const char *const seeds[] = {
	    RBM_E("READ", ",\"sendTime\":\"2026-01-15T10:00:05+01:00\""),
	    RBM_U(",\"suggestionResponse\":{\"postbackData\":\"" MSG_UUID "|yes\",\"text\":"
	          "\"Y\\u00e9\"}"),
	    RBM_U(",\"userFile\":{\"payload\":{\"fileUri\":\"u\"}},\"text\":5"),
	};
	unsigned seed = 31;
	int fast = 0, slow = 0;
	char buf[512];
	for (int i = 0; i < 6000; i++) {
		const char *ev = seeds[i % 3];
		size_t n = strlen(ev);
		memcpy(buf, ev, n);
		n = mutate(buf, n, sizeof buf - 1, &seed, 2, false, pool);
		buf[n] = '\0';
		if (memchr(buf, '\0', n))
			continue; /* envelope takes C strings */
		rbm_same(a, buf);
		ws_fast ? fast++ : slow++;
	}
	int f2 = 0, s2 = 0;
	ws_mutations(&channel_rcs, a, good, 3000, 32, &f2, &s2);
	print_message("rcs push mutations: %d read the fast way, %d by jansson\n", fast + f2,
	              slow + s2);
	assert_true(fast + f2 > 1500);
	assert_true(slow + s2 > 1500);
	free(good);
	free(slashed);
	channel_account_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_signature_vector),
	    cmocka_unit_test(test_signature_rejections),
	    cmocka_unit_test(test_handshake),
	    cmocka_unit_test(test_account_config_errors),
	    cmocka_unit_test(test_normalize_recipient),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_uuid_of_id),
	    cmocka_unit_test(test_build_bodies),
	    cmocka_unit_test(test_token_fetch_and_cache),
	    cmocka_unit_test(test_token_never_blocks_send),
	    cmocka_unit_test(test_capability),
	    cmocka_unit_test(test_parse_send_table),
	    cmocka_unit_test(test_fast_bodies_equal),
	    cmocka_unit_test(test_fast_answers_equal),
	    cmocka_unit_test(test_parse_vector),
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_fast_webhooks_equal),
	    cmocka_unit_test(test_dedupe_keys),
	    cmocka_unit_test(test_signed_roundtrip),
	    cmocka_unit_test(test_error_meaning),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
