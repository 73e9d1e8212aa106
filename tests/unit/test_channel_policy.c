/*
 * test_channel_policy.c - what tenants may do with the accounts they create
 * (channels/registry.c, core/config.c): per-tenant secret namespaces and
 * their prefix-freeness, the restricted resolver (never quotes, never tells
 * whether a file exists, never leaves the namespace by "..", symlinks, FIFOs
 * or devices), declared secret fields enumerated over every channel (each
 * one refused when it points into another tenant's namespace), provider
 * origins and the operator's allowed origins, userinfo, and the masking of
 * what non-provider hosts answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "channels/channel.h"
#include "core/config.h"
#include "herald.h"

static char g_dir[64];        /* the operator's secret_file_dir */
static char g_sa_alpha[300];  /* alpha's service-account file */
static char g_sa_beta[300];   /* beta's */
static struct channel_policy g_policy;

#define ALPHA_TOKEN "alpha-token-Zq81"
#define BETA_TOKEN "beta-token-Xy12"
#define TG_ALPHA "111:alpha_Bot-Token"
#define TG_BETA "222:beta_Bot-Token"

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static char *make_key_pem(void)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	assert_non_null(k);
	BIO *b = BIO_new(BIO_s_mem());
	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);
	char *s = strndup(p, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	return s;
}

static void write_sa(const char *path, const char *pem)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "client_email",
	                      "agent@x.iam.gserviceaccount.com", "private_key", pem, "token_uri",
	                      "https://oauth2.googleapis.com/token");
	assert_non_null(j);
	char *t = json_dumps(j, 0);
	json_decref(j);
	write_file(path, t, 0600);
	free(t);
}

static void policy_from(struct channel_policy *p, const char *json, int want_rc,
                        const char *want_field)
{
	json_t *cfg = json_loads(json, 0, NULL);
	assert_non_null(cfg);
	struct hr_err err;
	hr_err_clear(&err);
	int rc = channel_policy_init(p, cfg, &err);
	json_decref(cfg);
	if (rc != want_rc)
		fail_msg("policy %s: rc %d (%s), want %d", json, rc, err.msg, want_rc);
	if (want_field)
		assert_string_equal(err.field, want_field);
}

static int setup(void **state)
{
	(void)state;
	strcpy(g_dir, "/tmp/herald-test-policy-XXXXXX");
	assert_non_null(mkdtemp(g_dir));
	char d[128], p[256];
	snprintf(d, sizeof d, "%s/alpha", g_dir);
	assert_int_equal(mkdir(d, 0700), 0);
	snprintf(d, sizeof d, "%s/beta", g_dir);
	assert_int_equal(mkdir(d, 0700), 0);
	char *pem = make_key_pem();
	snprintf(g_sa_alpha, sizeof g_sa_alpha, "%s/alpha/sa.json", g_dir);
	write_sa(g_sa_alpha, pem);
	snprintf(g_sa_beta, sizeof g_sa_beta, "%s/beta/sa.json", g_dir);
	write_sa(g_sa_beta, pem);
	hr_secret_free(pem);
	snprintf(p, sizeof p, "%s/alpha/token", g_dir);
	write_file(p, ALPHA_TOKEN "\n", 0600);
	snprintf(p, sizeof p, "%s/beta/token", g_dir);
	write_file(p, BETA_TOKEN "\n", 0600);
	snprintf(p, sizeof p, "%s/beta/empty", g_dir);
	write_file(p, "", 0600);
	/* A link inside beta's directory to alpha's file, and one to /etc/passwd:
	 * the real path decides. */
	snprintf(p, sizeof p, "%s/beta/link-alpha", g_dir);
	assert_int_equal(symlink(g_sa_alpha, p), 0);
	snprintf(p, sizeof p, "%s/beta/link-passwd", g_dir);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	snprintf(p, sizeof p, "%s/beta/fifo", g_dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	snprintf(p, sizeof p, "%s/beta/subdir", g_dir);
	assert_int_equal(mkdir(p, 0700), 0);
	/* Larger than the 64 KiB a secret may be. */
	snprintf(p, sizeof p, "%s/beta/big", g_dir);
	char *big = malloc(70000);
	assert_non_null(big);
	memset(big, 'a', 69999);
	big[69999] = '\0';
	write_file(p, big, 0600);
	free(big);

	setenv("HERALD_SECRET_ALPHA__WA_TOKEN", ALPHA_TOKEN, 1);
	setenv("HERALD_SECRET_BETA__WA_TOKEN", BETA_TOKEN, 1);
	setenv("HERALD_SECRET_ALPHA__TG", TG_ALPHA, 1);
	setenv("HERALD_SECRET_BETA__TG", TG_BETA, 1);
	setenv("HERALD_SECRET_ALPHA__SA", "{\"root\":\"x:0:0\"}", 1);
	unsetenv("HERALD_SECRET_BETA__UNSET");

	char cfg[512];
	snprintf(cfg, sizeof cfg,
	         "{\"server\":{\"secret_file_dir\":\"%s\",\"allowed_origins\":"
	         "[\"http://127.0.0.1:9090\"]},\"tenants\":[{\"id\":\"alpha\"},{\"id\":\"beta\"}]}",
	         g_dir);
	policy_from(&g_policy, cfg, 0, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	channel_policy_clear(&g_policy);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- namespaces ---- */

static void test_namespaces(void **state)
{
	(void)state;
	const struct channel_tenant_ns *a = channel_policy_ns(&g_policy, "alpha");
	assert_non_null(a);
	assert_string_equal(a->env_prefix, "HERALD_SECRET_ALPHA__");
	char want[128];
	snprintf(want, sizeof want, "%s/alpha/", g_dir);
	assert_string_equal(a->file_dir, want);
	assert_null(channel_policy_ns(&g_policy, "gamma")); /* unknown: nothing allowed */

	struct channel_policy p;
	/* "acme" and "acme_uk" do not overlap ("ACME__" vs "ACME_UK__"). */
	policy_from(&p,
	            "{\"tenants\":[{\"id\":\"acme\"},{\"id\":\"acme_uk\"},{\"id\":\"acme-uk-2\"},"
	            "{\"id\":\"x.y\"}]}",
	            0, NULL);
	assert_string_equal(channel_policy_ns(&p, "acme")->env_prefix, "HERALD_SECRET_ACME__");
	assert_string_equal(channel_policy_ns(&p, "acme_uk")->env_prefix,
	                    "HERALD_SECRET_ACME_UK__");
	assert_string_equal(channel_policy_ns(&p, "acme-uk-2")->env_prefix,
	                    "HERALD_SECRET_ACME_UK_2__");
	assert_string_equal(channel_policy_ns(&p, "acme_uk")->file_dir,
	                    "/etc/herald/secrets/acme_uk/");
	channel_policy_clear(&p);

	/* Ids that encode alike must be told apart by the operator. */
	policy_from(&p, "{\"tenants\":[{\"id\":\"acme-uk\"},{\"id\":\"acme_uk\"}]}", HR_EINVAL,
	            "tenants[1].secret_env_prefix");
	policy_from(&p, "{\"tenants\":[{\"id\":\"Acme\"},{\"id\":\"acme\"}]}", HR_EINVAL,
	            "tenants[1].secret_env_prefix");
	/* ... which an explicit prefix does. */
	policy_from(&p,
	            "{\"tenants\":[{\"id\":\"acme-uk\"},{\"id\":\"acme_uk\",\"secret_env_prefix\":"
	            "\"UK2_\"}]}",
	            0, NULL);
	channel_policy_clear(&p);
	/* Explicit settings that overlap are refused too. */
	policy_from(&p,
	            "{\"tenants\":[{\"id\":\"a\",\"secret_env_prefix\":\"S_\"},{\"id\":\"b\","
	            "\"secret_env_prefix\":\"S_B\"}]}",
	            HR_EINVAL, "tenants[1].secret_env_prefix");
	policy_from(&p,
	            "{\"tenants\":[{\"id\":\"a\",\"secret_file_dir\":\"/s\"},{\"id\":\"b\","
	            "\"secret_file_dir\":\"/s/b\"}]}",
	            HR_EINVAL, "tenants[1].secret_file_dir");
	policy_from(&p, "{\"tenants\":[{\"id\":\"a\",\"secret_file_dir\":\"/s/../etc\"}]}",
	            HR_EINVAL, "tenants[0].secret_file_dir");
	policy_from(&p, "{\"tenants\":[{\"id\":\"a\",\"secret_env_prefix\":\"BAD-\"}]}", HR_EINVAL,
	            "tenants[0].secret_env_prefix");
	policy_from(&p, "{\"server\":{\"allowed_origins\":[\"ftp://x\"]}}", HR_EINVAL,
	            "server.allowed_origins[0]");
	policy_from(&p, "{\"server\":{\"allowed_origins\":[\"http://u:p@x\"]}}", HR_EINVAL,
	            "server.allowed_origins[0]");
	/* A tenant id that is no plain path component gets no directory. */
	policy_from(&p, "{\"tenants\":[{\"id\":\"../etc\"},{\"id\":\".hidden\"}]}", 0, NULL);
	assert_string_equal(channel_policy_ns(&p, "../etc")->file_dir, "");
	assert_string_equal(channel_policy_ns(&p, ".hidden")->file_dir, "");
	channel_policy_clear(&p);
}

/* ---- the restricted resolver ---- */

static void test_resolve_ns(void **state)
{
	(void)state;
	const struct channel_tenant_ns *b = channel_policy_ns(&g_policy, "beta");
	char ref[512];
	struct hr_err err;

	/* Inside: the value. */
	hr_err_clear(&err);
	char *v = hr_secret_resolve_ns("env:HERALD_SECRET_BETA__WA_TOKEN", b->env_prefix,
	                               b->file_dir, "f", &err);
	assert_non_null(v);
	assert_string_equal(v, BETA_TOKEN);
	hr_secret_free(v);
	snprintf(ref, sizeof ref, "file:%s/beta/token", g_dir);
	v = hr_secret_resolve_ns(ref, b->env_prefix, b->file_dir, "f", &err);
	assert_non_null(v);
	assert_string_equal(v, BETA_TOKEN);
	hr_secret_free(v);

	/* Outside the namespace: 403, and one text whatever the target. */
	const char *outside[] = {
	    "env:HERALD_SECRET_ALPHA__WA_TOKEN",
	    "env:HERALD_SECRET_ALPHA__SA",
	    "env:PATH",
	    "env:HERALD_SECRET_BETA__", /* the prefix alone */
	    "env:HERALD_SECRET_BETA__X-Y",
	    "file:/etc/shadow",
	    "file:/etc/passwd",
	    "file:/nonexistent/secret",
	    "literal",
	    NULL,
	};
	char first[sizeof err.msg] = "";
	for (size_t i = 0; outside[i]; i++) {
		hr_err_clear(&err);
		v = hr_secret_resolve_ns(outside[i], b->env_prefix, b->file_dir, "f", &err);
		if (v)
			fail_msg("%s resolved", outside[i]);
		assert_int_equal(err.code, HR_EFORBIDDEN);
		assert_string_equal(err.field, "f");
		assert_null(strstr(err.msg, "root"));
		assert_null(strstr(err.msg, "alpha"));
		assert_null(strstr(err.msg, "No such"));
		if (!first[0])
			hr_strlcpy(first, err.msg, sizeof first);
		else
			assert_string_equal(err.msg, first);
	}
	/* Paths that start inside but leave it, or hide: refused before any
	 * file is touched. */
	const char *sneaky[] = {"/beta/../alpha/token", "/beta/./token", "/beta//token",
	                        "/beta/.hidden", "/beta/", "/beta/sub/../../alpha/token", NULL};
	for (size_t i = 0; sneaky[i]; i++) {
		snprintf(ref, sizeof ref, "file:%s%s", g_dir, sneaky[i]);
		hr_err_clear(&err);
		assert_null(hr_secret_resolve_ns(ref, b->env_prefix, b->file_dir, "f", &err));
		if (err.code != HR_EFORBIDDEN)
			fail_msg("%s: %d %s", ref, err.code, err.msg);
		assert_string_equal(err.msg, first);
	}
	snprintf(ref, sizeof ref, "file:%s", g_sa_alpha);
	hr_err_clear(&err);
	assert_null(hr_secret_resolve_ns(ref, b->env_prefix, b->file_dir, "f", &err));
	assert_int_equal(err.code, HR_EFORBIDDEN);

	/* Inside the namespace but not usable: one 422 text for all of them,
	 * whether missing, a link out, a FIFO (which must not block), a
	 * directory, empty or too large. */
	const char *unusable[] = {"link-alpha", "link-passwd", "fifo", "subdir",
	                          "empty",      "big",         "missing", NULL};
	char unusable_msg[sizeof err.msg] = "";
	for (size_t i = 0; unusable[i]; i++) {
		snprintf(ref, sizeof ref, "file:%s/beta/%s", g_dir, unusable[i]);
		hr_err_clear(&err);
		v = hr_secret_resolve_ns(ref, b->env_prefix, b->file_dir, "f", &err);
		if (v)
			fail_msg("%s resolved to %zu bytes", ref, strlen(v));
		assert_int_equal(err.code, HR_EINVAL);
		assert_null(strstr(err.msg, "root"));
		assert_null(strstr(err.msg, "service_account"));
		if (!unusable_msg[0])
			hr_strlcpy(unusable_msg, err.msg, sizeof unusable_msg);
		else
			assert_string_equal(err.msg, unusable_msg);
	}
	hr_err_clear(&err);
	assert_null(hr_secret_resolve_ns("env:HERALD_SECRET_BETA__UNSET", b->env_prefix,
	                                 b->file_dir, "f", &err));
	assert_int_equal(err.code, HR_EINVAL);
	assert_string_equal(err.msg, unusable_msg);

	/* No namespace at all: nothing is allowed. */
	hr_err_clear(&err);
	assert_null(hr_secret_resolve_ns("env:HERALD_SECRET_BETA__WA_TOKEN", NULL, NULL, "f", &err));
	assert_int_equal(err.code, HR_EFORBIDDEN);
}

/* ---- every declared secret field of every channel ---- */

/* A complete, valid account config for a channel (beta's own secrets), as a
 * JSON object the caller owns. */
static json_t *good_config(const char *channel)
{
	char sa[320];
	snprintf(sa, sizeof sa, "file:%s", g_sa_beta);
	if (!strcmp(channel, "whatsapp"))
		return json_pack("{s:s, s:s, s:s, s:s, s:s}", "base_url", "https://graph.facebook.com",
		                 "phone_number_id", "1065", "access_token",
		                 "env:HERALD_SECRET_BETA__WA_TOKEN", "app_secret",
		                 "env:HERALD_SECRET_BETA__WA_TOKEN", "verify_token",
		                 "env:HERALD_SECRET_BETA__WA_TOKEN");
	if (!strcmp(channel, "sms"))
		return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "base_url", "https://api.twilio.com",
		                 "account_sid", "AC0123456789abcdef0123456789abcdef", "from",
		                 "+15005550006", "auth_token", "env:HERALD_SECRET_BETA__WA_TOKEN",
		                 "api_key_sid", "SK0123456789abcdef0123456789abcdef", "api_key_secret",
		                 "env:HERALD_SECRET_BETA__WA_TOKEN");
	if (!strcmp(channel, "rcs"))
		return json_pack("{s:s, s:s, s:s, s:s}", "base_url",
		                 "https://rcsbusinessmessaging.googleapis.com", "agent_id", "agent-1",
		                 "service_account", sa, "client_token",
		                 "env:HERALD_SECRET_BETA__WA_TOKEN");
	if (!strcmp(channel, "telegram"))
		return json_pack("{s:s, s:s}", "bot_token", "env:HERALD_SECRET_BETA__TG",
		                 "webhook_secret", "env:HERALD_SECRET_BETA__TG_HOOK");
	return NULL;
}

static int load_as(const char *tenant, const char *channel, json_t *cfg, bool restricted,
                   struct channel_account **out, struct hr_err *err)
{
	struct account_row row = {.id = "acct1", .api_created = restricted};
	hr_strlcpy(row.tenant_id, tenant, sizeof row.tenant_id);
	hr_strlcpy(row.channel, channel, sizeof row.channel);
	row.config = json_dumps(cfg, JSON_COMPACT);
	assert_non_null(row.config);
	hr_err_clear(err);
	int rc = channel_account_new_policy(&row, &g_policy, out, err);
	free(row.config);
	return rc;
}

static void test_every_secret_field(void **state)
{
	(void)state;
	setenv("HERALD_SECRET_BETA__TG_HOOK", "beta_hook", 1);
	setenv("HERALD_SECRET_ALPHA__TG_HOOK", "alpha_hook", 1);
	char alpha_sa[320], alpha_file[320];
	snprintf(alpha_sa, sizeof alpha_sa, "file:%s", g_sa_alpha);
	snprintf(alpha_file, sizeof alpha_file, "file:%s/alpha/token", g_dir);
	static const char *const channels[] = {"whatsapp", "sms", "rcs", "telegram"};
	size_t fields = 0;
	for (size_t c = 0; c < sizeof channels / sizeof *channels; c++) {
		const struct channel_ops *ops = channel_find(channels[c]);
		assert_non_null(ops);
		assert_non_null(ops->secret_fields);
		assert_non_null(ops->provider_origins);
		/* The positive control: beta's own references load. */
		json_t *cfg = good_config(channels[c]);
		assert_non_null(cfg);
		struct channel_account *a = NULL;
		struct hr_err err;
		if (load_as("beta", channels[c], cfg, true, &a, &err) != 0)
			fail_msg("%s: %s", channels[c], err.msg);
		assert_false(a->mask_answers);
		channel_account_free(a);
		/* Each declared field pointing at alpha's variable, alpha's file or
		 * a system file: 403 naming that field, nothing of the value. */
		for (const char *const *f = ops->secret_fields; *f; f++) {
			const char *refs[] = {"env:HERALD_SECRET_ALPHA__WA_TOKEN",
			                      "env:HERALD_SECRET_ALPHA__SA", alpha_sa, alpha_file,
			                      "file:/etc/shadow", NULL};
			for (size_t r = 0; refs[r]; r++) {
				json_t *bad = json_deep_copy(cfg);
				json_object_set_new(bad, *f, json_string(refs[r]));
				a = NULL;
				int rc = load_as("beta", channels[c], bad, true, &a, &err);
				json_decref(bad);
				if (rc != HR_EFORBIDDEN)
					fail_msg("%s.%s = %s: rc %d (%s)", channels[c], *f, refs[r], rc,
					         err.msg);
				assert_null(a);
				char want[96];
				snprintf(want, sizeof want, "accounts[acct1].%s", *f);
				assert_string_equal(err.field, want);
				assert_null(strstr(err.msg, ALPHA_TOKEN));
				assert_null(strstr(err.msg, "root"));
			}
			/* The operator's own (config) accounts are not restricted. */
			json_t *own = json_deep_copy(cfg);
			json_object_set_new(own, *f,
			                    json_string(strcmp(*f, "service_account") == 0
			                                    ? alpha_sa
			                                    : !strcmp(channels[c], "telegram")
			                                          ? "env:HERALD_SECRET_ALPHA__TG"
			                                          : "env:HERALD_SECRET_ALPHA__WA_TOKEN"));
			a = NULL;
			if (!strcmp(*f, "webhook_secret"))
				json_object_set_new(own, *f, json_string("env:HERALD_SECRET_ALPHA__TG_HOOK"));
			if (load_as("beta", channels[c], own, false, &a, &err) != 0)
				fail_msg("config %s.%s: %s", channels[c], *f, err.msg);
			channel_account_free(a);
			json_decref(own);
			fields++;
		}
		json_decref(cfg);
	}
	/* whatsapp 3, sms 2, rcs 2, telegram 2. */
	assert_int_equal(fields, 9);
}

/* An adapter may not read an undeclared key as a secret. */
static void test_undeclared_secret(void **state)
{
	(void)state;
	json_t *cfg = good_config("telegram");
	struct channel_account *a = NULL;
	struct hr_err err;
	assert_int_equal(load_as("beta", "telegram", cfg, true, &a, &err), 0);
	char *out = (char *)1;
	hr_err_clear(&err);
	assert_int_equal(channel_cfg_secret(a, "base_url", false, &out, &err), HR_EINTERNAL);
	assert_null(out);
	assert_true(channel_secret_field(a->ops, "bot_token"));
	assert_false(channel_secret_field(a->ops, "base_url"));
	channel_account_free(a);
	json_decref(cfg);
}

/* ---- origins ---- */

static void test_origins(void **state)
{
	(void)state;
	char o[160];
	assert_int_equal(channel_url_origin("HTTPS://Graph.Facebook.com/v21.0", o, sizeof o), 0);
	assert_string_equal(o, "https://graph.facebook.com:443");
	assert_int_equal(channel_url_origin("http://127.0.0.1:9090/x", o, sizeof o), 0);
	assert_string_equal(o, "http://127.0.0.1:9090");
	assert_int_equal(channel_url_origin("http://[::1]:80/", o, sizeof o), 0);
	assert_string_equal(o, "http://[::1]:80");
	assert_int_equal(channel_url_origin("http://user:pw@host/", o, sizeof o), HR_EINVAL);
	assert_int_equal(channel_url_origin("http://user@host/", o, sizeof o), HR_EINVAL);
	assert_int_equal(channel_url_origin("ftp://host/", o, sizeof o), HR_EINVAL);
	assert_int_equal(channel_url_origin("file:///etc/passwd", o, sizeof o), HR_EINVAL);
	assert_int_equal(channel_url_origin("graph.facebook.com", o, sizeof o), HR_EINVAL);
	/* An IPv6 zone id picks the interface, so the host it names: an origin
	 * without it would let "[fe80::1%25eth1]" pass as an allowed
	 * "[fe80::1]" on another link. */
	assert_int_equal(channel_url_origin("http://[fe80::1%25eth1]:9090/", o, sizeof o),
	                 HR_EINVAL);
	assert_int_equal(channel_url_origin("http://[fe80::1%eth1]:9090/", o, sizeof o), HR_EINVAL);
	{
		struct channel_policy p;
		policy_from(&p,
		            "{\"server\":{\"allowed_origins\":[\"http://[fe80::1]:9090\"]},"
		            "\"tenants\":[{\"id\":\"beta\"}]}",
		            0, NULL);
		json_t *cfg = good_config("whatsapp");
		json_object_set_new(cfg, "base_url", json_string("http://[fe80::1%25eth1]:9090"));
		struct account_row row = {.id = "acct1", .api_created = true};
		hr_strlcpy(row.tenant_id, "beta", sizeof row.tenant_id);
		hr_strlcpy(row.channel, "whatsapp", sizeof row.channel);
		row.config = json_dumps(cfg, JSON_COMPACT);
		json_decref(cfg);
		struct channel_account *a = NULL;
		struct hr_err err;
		hr_err_clear(&err);
		int rc = channel_account_new_policy(&row, &p, &a, &err);
		free(row.config);
		channel_account_free(a);
		channel_policy_clear(&p);
		if (rc == 0)
			fail_msg("a zone id passed as the allowed [fe80::1]");
		assert_string_equal(err.field, "accounts[acct1].base_url");
	}

	static const struct {
		const char *url;
		bool restricted;
		int rc;
		bool masked;
	} cases[] = {
	    {"https://graph.facebook.com", true, 0, false},
	    {"https://graph.facebook.com:443/", true, 0, false},
	    {"http://graph.facebook.com", true, HR_EFORBIDDEN, false}, /* https only */
	    {"https://graph.facebook.com:8443", true, HR_EFORBIDDEN, false},
	    {"https://graph.facebook.com.evil.test", true, HR_EFORBIDDEN, false},
	    {"http://169.254.169.254/latest/meta-data", true, HR_EFORBIDDEN, false},
	    {"http://localhost:9090", true, HR_EFORBIDDEN, false},
	    {"http://[::1]:9090", true, HR_EFORBIDDEN, false},
	    {"http://127.0.0.1:9091", true, HR_EFORBIDDEN, false},
	    {"http://127.0.0.1:9090", true, 0, true}, /* the operator allows it */
	    {"http://127.0.0.1:9090/", true, 0, true},
	    {"https://u:p@graph.facebook.com", true, HR_EINVAL, false},
	    {"https://graph.facebook.com/?x=1", true, HR_EINVAL, false},
	    {"ftp://graph.facebook.com", true, HR_EINVAL, false},
	    /* The operator's own accounts go where the operator says. */
	    {"http://169.254.169.254", false, 0, false},
	    {"http://u:p@127.0.0.1:9", false, HR_EINVAL, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *cfg = good_config("whatsapp");
		json_object_set_new(cfg, "base_url", json_string(cases[i].url));
		struct channel_account *a = NULL;
		struct hr_err err;
		int rc = load_as("beta", "whatsapp", cfg, cases[i].restricted, &a, &err);
		json_decref(cfg);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d (%s), want %d", cases[i].url, rc, err.msg, cases[i].rc);
		if (rc) {
			assert_string_equal(err.field, "accounts[acct1].base_url");
			continue;
		}
		assert_int_equal(a->mask_answers, cases[i].masked);
		channel_account_free(a);
	}
}

/* What a non-provider host answers is never passed on. */
static void test_outcome_sanitize(void **state)
{
	(void)state;
	json_t *cfg = good_config("whatsapp");
	json_object_set_new(cfg, "base_url", json_string("http://127.0.0.1:9090"));
	struct channel_account *a = NULL;
	struct hr_err err;
	assert_int_equal(load_as("beta", "whatsapp", cfg, true, &a, &err), 0);
	json_decref(cfg);
	assert_true(a->mask_answers);

	const char *html = "<html>ami-id instance-id secret</html>";
	struct send_outcome o = {0};
	a->ops->parse_send(a, 400, html, strlen(html), NULL, &o);
	channel_outcome_sanitize(a, 400, &o);
	assert_int_equal(o.cls, OUTCOME_PERMANENT);
	assert_null(strstr(o.error_text, "secret"));
	assert_string_equal(o.error_text, "HTTP 400 (answer withheld: not a provider's host)");

	const char *curl_text = "Failed to connect to 127.0.0.1 port 22: Connection refused";
	memset(&o, 0, sizeof o);
	a->ops->parse_send(a, 0, curl_text, strlen(curl_text), NULL, &o);
	channel_outcome_sanitize(a, 0, &o);
	assert_int_equal(o.cls, OUTCOME_TRANSIENT);
	assert_null(strstr(o.error_text, "port"));
	assert_null(strstr(o.error_text, "refused"));

	/* A success is left alone. */
	const char *ok = "{\"messages\":[{\"id\":\"wamid.X\"}]}";
	memset(&o, 0, sizeof o);
	a->ops->parse_send(a, 200, ok, strlen(ok), NULL, &o);
	channel_outcome_sanitize(a, 200, &o);
	assert_int_equal(o.cls, OUTCOME_OK);
	assert_string_equal(o.provider_id, "wamid.X");
	channel_account_free(a);

	/* The provider's own host: its answers are shown as they are. */
	cfg = good_config("whatsapp");
	assert_int_equal(load_as("beta", "whatsapp", cfg, true, &a, &err), 0);
	json_decref(cfg);
	memset(&o, 0, sizeof o);
	a->ops->parse_send(a, 0, curl_text, strlen(curl_text), NULL, &o);
	channel_outcome_sanitize(a, 0, &o);
	assert_non_null(strstr(o.error_text, "refused"));
	channel_account_free(a);
}

/* The service account's token_uri is a URL the account sends to as well. */
static void test_token_uri(void **state)
{
	(void)state;
	char *pem = make_key_pem();
	char path[256], ref[300];
	snprintf(path, sizeof path, "%s/beta/sa-evil.json", g_dir);
	json_t *j = json_pack("{s:s, s:s, s:s}", "client_email", "a@b", "private_key", pem,
	                      "token_uri", "http://169.254.169.254/token");
	char *t = json_dumps(j, 0);
	write_file(path, t, 0600);
	free(t);
	json_decref(j);
	hr_secret_free(pem);
	snprintf(ref, sizeof ref, "file:%s", path);
	json_t *cfg = good_config("rcs");
	json_object_set_new(cfg, "service_account", json_string(ref));
	struct channel_account *a = NULL;
	struct hr_err err;
	assert_int_equal(load_as("beta", "rcs", cfg, true, &a, &err), HR_EFORBIDDEN);
	assert_string_equal(err.field, "accounts[acct1].service_account.token_uri");
	json_decref(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_namespaces),     cmocka_unit_test(test_resolve_ns),
	    cmocka_unit_test(test_every_secret_field), cmocka_unit_test(test_undeclared_secret),
	    cmocka_unit_test(test_origins),        cmocka_unit_test(test_outcome_sanitize),
	    cmocka_unit_test(test_token_uri),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
