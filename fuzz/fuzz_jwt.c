/*
 * fuzz_jwt.c - JWT bearer tokens (src/api/jwt.c): the compact-JWS splitter,
 * the header read before any key is chosen (alg, kid, enc), the tenant
 * claim that picks the key set, libjwt's verification and every claim check
 * after it; and the JWKS reader (jwk_to_pem) behind auth.jwt.jwks_file.
 *
 * Byte 0 picks the mode (mod 5); the rest is:
 *   0  a token as the Authorization header would carry it
 *   1  "<header JSON>\n<payload JSON>", base64url'd and HS256-signed here
 *      with the server's secret, so the claim checks are reached
 *   2  the same signed with tenant t2's own secret
 *   3  "<payload JSON>", signed ES256 by libjwt with the configured EC key
 *   4  a JWKS document, loaded as auth.jwt.jwks_file (a memfd, no file left)
 * Oracles beyond the sanitizers: a token names t2 exactly when t2's key
 * verified it (a tenant with its own keys is never reached with the
 * server's, and its key verifies nothing else); a verified principal has a
 * tenant; every error says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "api/api_int.h"

#define HS "0123456789abcdef0123456789abcdef-server"
#define HS2 "0123456789abcdef0123456789abcdef-tenant2"

static struct api_jwt *g_jwt;
static char *g_ec_priv;

static char *bio_text(BIO *b)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *s = malloc((size_t)n + 1);
	if (!s)
		abort();
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return s;
}

/* A fresh key pair's PEMs: public into the environment as name, private returned. */
static char *keypair(EVP_PKEY *k, const char *name)
{
	BIO *pub = BIO_new(BIO_s_mem()), *priv = BIO_new(BIO_s_mem());
	if (!k || !pub || !priv || PEM_write_bio_PUBKEY(pub, k) != 1 ||
	    PEM_write_bio_PrivateKey(priv, k, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	char *p = bio_text(pub);
	setenv(name, p, 1);
	free(p);
	EVP_PKEY_free(k);
	return bio_text(priv);
}

static const char CONFIG[] =
    "{\"auth\":{\"jwt\":{\"issuer\":\"https://idp.example\",\"audience\":\"herald\","
    "\"hs256_secret\":\"env:FZ_JWT_HS\",\"public_keys\":[{\"kid\":\"r1\",\"pem\":"
    "\"env:FZ_JWT_RSA\"},{\"kid\":\"e1\",\"pem\":\"env:FZ_JWT_EC\"}]}},"
    "\"tenants\":[{\"id\":\"t1\"},{\"id\":\"t2\",\"jwt\":{\"hs256_secret\":\"env:FZ_JWT_HS2\"}}]}";

static struct api_jwt *load(const char *text)
{
	json_t *cfg = json_loads(text, 0, NULL);
	struct api_jwt *j = NULL;
	struct hr_err err = {0};
	int rc = cfg ? api_jwt_load(cfg, &j, &err) : HR_EINVAL;
	json_decref(cfg);
	if (rc != 0 && err.msg[0] == '\0')
		abort();
	return rc == 0 ? j : NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setenv("FZ_JWT_HS", HS, 1);
	setenv("FZ_JWT_HS2", HS2, 1);
	free(keypair(EVP_RSA_gen(2048), "FZ_JWT_RSA"));
	g_ec_priv = keypair(EVP_EC_gen("P-256"), "FZ_JWT_EC");
	g_jwt = load(CONFIG);
	if (!g_jwt)
		abort();
	return 0;
}

static char *b64url(const unsigned char *p, size_t n)
{
	static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *s = malloc(n / 3 * 4 + 5), *o = s;
	if (!s)
		abort();
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = A[v >> 18], *o++ = A[v >> 12 & 63], *o++ = A[v >> 6 & 63], *o++ = A[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = A[v >> 18], *o++ = A[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = A[v >> 18], *o++ = A[v >> 12 & 63], *o++ = A[v >> 6 & 63];
	}
	*o = '\0';
	return s;
}

/* "<header>\n<payload>" as an HS256 compact JWS under secret. */
static char *hs256(const uint8_t *d, size_t n, const char *secret)
{
	const uint8_t *nl = memchr(d, '\n', n);
	size_t hn = nl ? (size_t)(nl - d) : n;
	char *h = b64url(d, hn);
	char *p = nl ? b64url(nl + 1, n - hn - 1) : b64url((const unsigned char *)"", 0);
	size_t sl = strlen(h) + 1 + strlen(p);
	char *si = malloc(sl + 1 + 48);
	if (!si)
		abort();
	snprintf(si, sl + 1, "%s.%s", h, p);
	unsigned char mac[32];
	unsigned ml = 0;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)si, sl, mac, &ml))
		abort();
	char *m = b64url(mac, ml);
	strcat(si, "."), strcat(si, m);
	free(h), free(p), free(m);
	return si;
}

static char *es256(const uint8_t *d, size_t n)
{
	char *payload = strndup((const char *)d, n);
	jwt_t *t = NULL;
	char *out = NULL;
	if (payload && jwt_new(&t) == 0 && jwt_add_grants_json(t, payload) == 0 &&
	    jwt_add_header(t, "kid", "e1") == 0 &&
	    jwt_set_alg(t, JWT_ALG_ES256, (const unsigned char *)g_ec_priv,
	                (int)strlen(g_ec_priv)) == 0)
		out = jwt_encode_str(t);
	jwt_free(t);
	free(payload);
	return out;
}

static void jwks(const uint8_t *d, size_t n)
{
	int fd = memfd_create("jwks", 0);
	if (fd < 0)
		return;
	if (write(fd, d, n) == (ssize_t)n) {
		char cfg[512];
		snprintf(cfg, sizeof cfg,
		         "{\"auth\":{\"jwt\":{\"audience\":\"herald\",\"jwks_file\":"
		         "\"/proc/self/fd/%d\"}}}",
		         fd);
		api_jwt_free(load(cfg));
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	int mode = data[0] % 5;
	data++, size--;
	if (mode == 4) {
		jwks(data, size);
		return 0;
	}
	char *tok = mode == 0   ? strndup((const char *)data, size)
	            : mode == 1 ? hs256(data, size, HS)
	            : mode == 2 ? hs256(data, size, HS2)
	                        : es256(data, size);
	if (!tok)
		return 0;
	/* Up to the first NUL: a header value is a C string (auth.c). */
	size_t len = strlen(tok);
	struct api_principal who;
	int64_t exp = 0;
	struct hr_err err = {0};
	int rc = api_jwt_verify(g_jwt, tok, len, &who, &exp, &err);
	if (rc != 0 && err.msg[0] == '\0')
		abort();
	if (rc == 0) {
		if (!who.tenant[0] || (mode == 2) != (strcmp(who.tenant, "t2") == 0))
			abort();
	}
	free(tok);
	return 0;
}
