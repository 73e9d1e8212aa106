/*
 * jwt.c - JWT bearer tokens (config auth.jwt), verified with libjwt 1.10.
 *
 * libjwt 1.10 verifies with whatever key it is given, for whatever
 * algorithm the token's header names: handed an RSA public key for a token
 * that says HS256, it would check an HMAC keyed with the public key (the
 * classic algorithm confusion). So Herald reads the header itself first,
 * refuses `none` and every algorithm not configured, picks the key by
 * algorithm (the shared secret only for HS256, public keys only for
 * RS256/ES256, by `kid` when the header names one) and checks afterwards
 * that libjwt verified with the same algorithm. Then exp (required), nbf,
 * iss and aud are checked with a small leeway, and the tenant, unit and
 * scopes come from the configured claim names.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "api/api_int.h"
#include "core/config.h"
#include "core/crypto.h"

#define JWT_MAX_KEYS 16

struct jwt_pubkey {
	char kid[128]; /* "" when none */
	jwt_alg_t alg; /* JWT_ALG_RS256 or JWT_ALG_ES256 */
	char *pem;
};

/* The keys tokens of one issuer are checked with: the server's (tenant "",
 * auth.jwt: its tokens may name any tenant) or one tenant's (tenants[].jwt:
 * its tokens may name that tenant only). */
struct jwt_keyset {
	char tenant[HR_NAME_MAX];
	char *hs_secret; /* NULL: HS256 not accepted */
	size_t hs_len;
	struct jwt_pubkey keys[JWT_MAX_KEYS];
	size_t nkeys;
};

#define JWT_MAX_SETS 65

struct api_jwt {
	struct jwt_keyset set[JWT_MAX_SETS];
	size_t nsets;
	char issuer[256], audience[256];
	char tenant_claim[64], unit_claim[64], scopes_claim[64], subject_claim[64];
	int64_t leeway_s;
};

void api_jwt_free(struct api_jwt *j)
{
	if (!j)
		return;
	for (size_t s = 0; s < j->nsets; s++) {
		struct jwt_keyset *k = &j->set[s];
		if (k->hs_secret) {
			explicit_bzero(k->hs_secret, k->hs_len);
			hr_secret_free(k->hs_secret);
		}
		for (size_t i = 0; i < k->nkeys; i++)
			free(k->keys[i].pem);
	}
	free(j);
}

/* base64url (no padding) -> heap bytes, NUL-terminated; NULL if invalid. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
	if (n % 4 == 1)
		return NULL;
	char *t = malloc(n + 4);
	if (!t)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			c = '!'; /* not base64url: make it fail */
		t[i] = c;
	}
	size_t m = n;
	while (m % 4)
		t[m++] = '=';
	unsigned char *out = hr_b64_decode(t, m, out_len);
	free(t);
	return out;
}

/* A JWK (RSA n/e or EC P-256 x/y) as a PEM public key; NULL if unusable. */
static char *jwk_to_pem(json_t *k, jwt_alg_t *alg)
{
	const char *kty = json_string_value(json_object_get(k, "kty"));
	if (!kty)
		return NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (!bld)
		return NULL;
	const char *type = NULL;
	unsigned char *a = NULL, *b = NULL, *pt = NULL;
	size_t alen = 0, blen = 0;
	BIGNUM *n = NULL, *e = NULL;
	bool ok = false;
	if (strcmp(kty, "RSA") == 0) {
		const char *ns = json_string_value(json_object_get(k, "n"));
		const char *es = json_string_value(json_object_get(k, "e"));
		if (ns && es && (a = b64url_decode(ns, strlen(ns), &alen)) &&
		    (b = b64url_decode(es, strlen(es), &blen)) &&
		    (n = BN_bin2bn(a, (int)alen, NULL)) && (e = BN_bin2bn(b, (int)blen, NULL)) &&
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			type = "RSA";
			*alg = JWT_ALG_RS256;
			ok = true;
		}
	} else if (strcmp(kty, "EC") == 0) {
		const char *crv = json_string_value(json_object_get(k, "crv"));
		const char *xs = json_string_value(json_object_get(k, "x"));
		const char *ys = json_string_value(json_object_get(k, "y"));
		if (crv && strcmp(crv, "P-256") == 0 && xs && ys &&
		    (a = b64url_decode(xs, strlen(xs), &alen)) && alen == 32 &&
		    (b = b64url_decode(ys, strlen(ys), &blen)) && blen == 32 && (pt = malloc(65))) {
			pt[0] = 0x04; /* uncompressed point */
			memcpy(pt + 1, a, 32);
			memcpy(pt + 33, b, 32);
			if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
			                                    "prime256v1", 0) &&
			    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
			                                     65)) {
				type = "EC";
				*alg = JWT_ALG_ES256;
				ok = true;
			}
		}
	}
	char *pem = NULL;
	OSSL_PARAM *params = ok ? OSSL_PARAM_BLD_to_param(bld) : NULL;
	EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
	EVP_PKEY *pkey = NULL;
	if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
		BIO *bio = BIO_new(BIO_s_mem());
		char *data;
		long len;
		if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
		    (len = BIO_get_mem_data(bio, &data)) > 0 && (pem = malloc((size_t)len + 1))) {
			memcpy(pem, data, (size_t)len);
			pem[len] = '\0';
		}
		BIO_free(bio);
	}
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	free(a);
	free(b);
	free(pt);
	return pem;
}

/* The kind of a PEM public key: RS256 for RSA, ES256 for P-256; 0 else. */
static int pem_alg(const char *pem, jwt_alg_t *alg)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!k)
		return -1;
	int rc = 0;
	if (EVP_PKEY_is_a(k, "RSA"))
		*alg = JWT_ALG_RS256;
	else if (EVP_PKEY_is_a(k, "EC"))
		*alg = JWT_ALG_ES256;
	else
		rc = -1;
	EVP_PKEY_free(k);
	return rc;
}

static int add_key(struct jwt_keyset *j, const char *kid, char *pem, jwt_alg_t alg,
                   const char *field, struct hr_err *err)
{
	if (j->nkeys == JWT_MAX_KEYS) {
		free(pem);
		return hr_fail(err, HR_ELIMIT, field, "at most %d public keys", JWT_MAX_KEYS);
	}
	struct jwt_pubkey *k = &j->keys[j->nkeys++];
	hr_strlcpy(k->kid, kid ? kid : "", sizeof k->kid);
	k->alg = alg;
	k->pem = pem;
	return 0;
}

static int load_jwks(struct jwt_keyset *j, const char *path, struct hr_err *err)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return hr_fail(err, HR_EINVAL, "auth.jwt.jwks_file", "cannot read %s as JSON: %s",
		               path, jerr.text);
	json_t *keys = json_object_get(root, "keys");
	int rc = 0;
	if (!json_is_array(keys))
		rc = hr_fail(err, HR_EINVAL, "auth.jwt.jwks_file", "%s has no \"keys\" list", path);
	size_t i;
	json_t *k;
	json_array_foreach(keys, i, k)
	{
		if (rc)
			break;
		const char *use = json_string_value(json_object_get(k, "use"));
		if (use && strcmp(use, "sig") != 0)
			continue;
		jwt_alg_t alg;
		char *pem = jwk_to_pem(k, &alg);
		if (!pem) {
			rc = hr_fail(err, HR_EINVAL, "auth.jwt.jwks_file",
			             "%s: key %zu is not an RSA or P-256 public key", path, i);
			break;
		}
		const char *kalg = json_string_value(json_object_get(k, "alg"));
		if (kalg && jwt_str_alg(kalg) != alg) {
			free(pem);
			rc = hr_fail(err, HR_EINVAL, "auth.jwt.jwks_file",
			             "%s: key %zu says alg %s, which does not fit its type", path,
			             i, kalg);
			break;
		}
		rc = add_key(j, json_string_value(json_object_get(k, "kid")), pem, alg,
		             "auth.jwt.jwks_file", err);
	}
	json_decref(root);
	return rc;
}

/* One issuer's keys from c (hs256_secret, public_keys, jwks_file); base
 * names the config path in errors. */
static int load_keyset(json_t *c, const char *base, struct jwt_keyset *j, struct hr_err *err)
{
	int rc = 0;
	char field[160];
	const char *s = hr_cfg_str(c, "hs256_secret", NULL, err);
	if (s) {
		snprintf(field, sizeof field, "%s.hs256_secret", base);
		j->hs_secret = hr_secret_resolve(s, field, err);
		if (!j->hs_secret)
			rc = err->code ? err->code : HR_EINVAL;
		else if ((j->hs_len = strlen(j->hs_secret)) < 32)
			rc = hr_fail(err, HR_EINVAL, field, "%s must be 32 bytes at least", field);
	}
	json_t *pks = json_object_get(c, "public_keys");
	size_t i;
	json_t *pk;
	json_array_foreach(pks, i, pk)
	{
		if (rc)
			break;
		snprintf(field, sizeof field, "%s.public_keys[%zu]", base, i);
		const char *ref = json_is_string(pk)
		                      ? json_string_value(pk)
		                      : json_string_value(json_object_get(pk, "pem"));
		const char *kid = json_string_value(json_object_get(pk, "kid"));
		char *pem = ref ? hr_secret_resolve(ref, field, err) : NULL;
		jwt_alg_t alg;
		if (!pem) {
			rc = hr_fail(err, HR_EINVAL, field,
			             "%s: a PEM public key (file:/path) is required", field);
		} else if (pem_alg(pem, &alg) != 0) {
			hr_secret_free(pem);
			rc = hr_fail(err, HR_EINVAL, field,
			             "%s is not an RSA or EC public key in PEM", field);
		} else {
			char *copy = strdup(pem);
			hr_secret_free(pem);
			rc = copy ? add_key(j, kid, copy, alg, field, err)
			          : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		}
	}
	const char *jwks = rc ? NULL : hr_cfg_str(c, "jwks_file", NULL, err);
	if (jwks)
		rc = load_jwks(j, jwks, err);
	if (rc == 0 && err->code)
		rc = err->code;
	if (rc == 0 && !j->hs_secret && j->nkeys == 0)
		rc = hr_fail(err, HR_EINVAL, base,
		             "%s needs hs256_secret, public_keys or jwks_file", base);
	return rc;
}

int api_jwt_load(json_t *cfg, struct api_jwt **out, struct hr_err *err)
{
	*out = NULL;
	json_t *c = cfg ? hr_cfg_get(cfg, "auth.jwt") : NULL;
	json_t *tenants = cfg ? hr_cfg_get(cfg, "tenants") : NULL;
	bool any_tenant = false;
	size_t ti;
	json_t *t;
	json_array_foreach(tenants, ti, t) any_tenant = any_tenant || json_object_get(t, "jwt");
	if ((!c || json_is_null(c)) && !any_tenant)
		return 0;
	if (!json_is_object(c))
		return hr_fail(err, HR_EINVAL, "auth.jwt",
		               "auth.jwt must be a mapping (with the audience, at least)");
	struct api_jwt *j = calloc(1, sizeof *j);
	if (!j)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	int rc = 0;
	hr_err_clear(err);
	hr_strlcpy(j->issuer, hr_cfg_str(c, "issuer", "", err), sizeof j->issuer);
	hr_strlcpy(j->audience, hr_cfg_str(c, "audience", "", err), sizeof j->audience);
	hr_strlcpy(j->tenant_claim, hr_cfg_str(c, "tenant_claim", "tenant", err),
	           sizeof j->tenant_claim);
	hr_strlcpy(j->unit_claim, hr_cfg_str(c, "unit_claim", "unit", err), sizeof j->unit_claim);
	hr_strlcpy(j->scopes_claim, hr_cfg_str(c, "scopes_claim", "scope", err),
	           sizeof j->scopes_claim);
	hr_strlcpy(j->subject_claim, hr_cfg_str(c, "subject_claim", "sub", err),
	           sizeof j->subject_claim);
	j->leeway_s = hr_cfg_int(c, "leeway_seconds", 30, 0, 300, err);
	rc = err->code;
	/* The server's own issuer, when it has keys. */
	if (rc == 0 && (json_object_get(c, "hs256_secret") || json_object_get(c, "public_keys") ||
	                json_object_get(c, "jwks_file")))
		rc = load_keyset(c, "auth.jwt", &j->set[j->nsets++], err);
	json_array_foreach(tenants, ti, t)
	{
		json_t *tj = json_object_get(t, "jwt");
		if (rc || !tj)
			continue;
		char base[64];
		snprintf(base, sizeof base, "tenants[%zu].jwt", ti);
		const char *id = json_string_value(json_object_get(t, "id"));
		if (!json_is_object(tj) || !id)
			rc = hr_fail(err, HR_EINVAL, base,
			             "%s must be a mapping of a tenant with an id", base);
		else if (j->nsets == JWT_MAX_SETS)
			rc =
			    hr_fail(err, HR_ELIMIT, base,
			            "at most %d tenants with their own JWT keys", JWT_MAX_SETS - 1);
		else {
			struct jwt_keyset *k = &j->set[j->nsets++];
			hr_strlcpy(k->tenant, id, sizeof k->tenant);
			rc = load_keyset(tj, base, k, err);
		}
	}
	if (rc == 0 && j->nsets == 0)
		rc = hr_fail(err, HR_EINVAL, "auth.jwt",
		             "auth.jwt needs hs256_secret, public_keys or jwks_file");
	if (rc == 0 && !j->audience[0])
		rc = hr_fail(err, HR_EINVAL, "auth.jwt.audience",
		             "auth.jwt.audience is required: a token meant for another service "
		             "must not work here");
	if (rc) {
		api_jwt_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

static bool aud_ok(jwt_t *t, const char *want)
{
	const char *s = jwt_get_grant(t, "aud");
	if (s)
		return strcmp(s, want) == 0;
	char *arr = jwt_get_grants_json(t, "aud");
	if (!arr)
		return false;
	json_t *a = json_loads(arr, 0, NULL);
	free(arr);
	bool ok = false;
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) ok =
	    ok || (json_is_string(v) && strcmp(json_string_value(v), want) == 0);
	json_decref(a);
	return ok;
}

/* 9999-12-31T23:59:59Z: the largest NumericDate taken. */
#define JWT_DATE_MAX 253402300799LL

/*
 * A date claim (seconds since 1970): 1 present (*v set), 0 absent, -1 not a
 * number or beyond year 9999 either way. The bound keeps exp + leeway in
 * microseconds inside int64: a signed token with "exp":410244480000000
 * overflowed it (found by fuzz/fuzz_jwt.c), and a real that large was cast
 * to int64 unchecked.
 */
static int num_claim(jwt_t *t, const char *name, int64_t *v)
{
	char *j = jwt_get_grants_json(t, name);
	if (!j)
		return 0;
	json_t *x = json_loads(j, JSON_DECODE_ANY, NULL);
	free(j);
	int rc = -1;
	if (json_is_integer(x) && json_integer_value(x) >= -JWT_DATE_MAX &&
	    json_integer_value(x) <= JWT_DATE_MAX) {
		*v = json_integer_value(x);
		rc = 1;
	} else if (json_is_real(x) && json_real_value(x) >= (double)-JWT_DATE_MAX &&
	           json_real_value(x) <= (double)JWT_DATE_MAX) {
		*v = (int64_t)json_real_value(x);
		rc = 1;
	}
	json_decref(x);
	return rc;
}

/* Scopes from a string ("a b") or a list of strings; unknown names grant
 * nothing (an identity provider's tokens carry scopes for other services). */
static unsigned scopes_claim(jwt_t *t, const char *name)
{
	unsigned out = 0;
	char *j = jwt_get_grants_json(t, name);
	if (!j)
		return 0;
	json_t *x = json_loads(j, JSON_DECODE_ANY, NULL);
	free(j);
	json_t *list = json_is_array(x) ? x : NULL;
	size_t n = list ? json_array_size(list) : json_is_string(x) ? 1 : 0;
	for (size_t i = 0; i < n; i++) {
		json_t *v = list ? json_array_get(list, i) : x;
		const char *s = json_string_value(v);
		while (s && *s) {
			s += strspn(s, " ,");
			size_t k = strcspn(s, " ,");
			for (unsigned b = 1; b <= SCOPE_ADMIN; b <<= 1) {
				const char *nm = api_scope_name(b);
				if (k && strlen(nm) == k && memcmp(nm, s, k) == 0)
					out |= b;
			}
			s += k;
		}
	}
	json_decref(x);
	return out;
}

int api_jwt_verify(const struct api_jwt *j, const char *token, size_t len,
                   struct api_principal *who, int64_t *expires_us, struct hr_err *err)
{
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "malformed token (not a compact JWS)");
	size_t hlen;
	unsigned char *hdr = b64url_decode(token, (size_t)(d1 - token), &hlen);
	json_t *h = hdr ? json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, NULL) : NULL;
	free(hdr);
	const char *alg_s = json_string_value(json_object_get(h, "alg"));
	char alg[16] = "", kid[128] = "";
	if (alg_s)
		hr_strlcpy(alg, alg_s, sizeof alg);
	const char *kid_s = json_string_value(json_object_get(h, "kid"));
	if (kid_s)
		hr_strlcpy(kid, kid_s, sizeof kid);
	bool enc = json_object_get(h, "enc") != NULL;
	json_decref(h);
	if (!alg[0])
		return hr_fail(err, HR_EAUTH, "Authorization", "malformed token header (no alg)");
	if (enc)
		return hr_fail(err, HR_EAUTH, "Authorization", "encrypted tokens are not accepted");
	if (strcasecmp(alg, "none") == 0)
		return hr_fail(err, HR_EAUTH, "Authorization", "unsigned token (alg none) refused");
	jwt_alg_t want = jwt_str_alg(alg);
	if (want != JWT_ALG_HS256 && want != JWT_ALG_RS256 && want != JWT_ALG_ES256)
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "token algorithm not accepted (HS256, RS256, ES256 only)");
	if (d2 + 1 == token + len)
		return hr_fail(err, HR_EAUTH, "Authorization", "token has no signature");

	/* Which keys: the named tenant's own when it has them (then nothing
	 * else verifies a token naming it), else the server's. The claim is
	 * read before verifying only to choose; it is checked again after. */
	char claimed[HR_NAME_MAX] = "";
	size_t plen;
	unsigned char *pl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &plen);
	json_t *pj = pl ? json_loadb((const char *)pl, plen, 0, NULL) : NULL;
	free(pl);
	const char *ct = json_string_value(json_object_get(pj, j->tenant_claim));
	if (ct)
		hr_strlcpy(claimed, ct, sizeof claimed);
	json_decref(pj);
	const struct jwt_keyset *ks = NULL;
	for (size_t i = 0; i < j->nsets; i++)
		if (j->set[i].tenant[0] && strcmp(j->set[i].tenant, claimed) == 0)
			ks = &j->set[i];
	for (size_t i = 0; !ks && i < j->nsets; i++)
		if (!j->set[i].tenant[0])
			ks = &j->set[i];
	if (!ks)
		return hr_fail(err, HR_EAUTH, "Authorization", "no key configured for this token");

	char *tok = strndup(token, len);
	if (!tok)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	jwt_t *t = NULL;
	bool tried = false;
	if (want == JWT_ALG_HS256) {
		if (ks->hs_secret) {
			tried = true;
			if (jwt_decode(&t, tok, (const unsigned char *)ks->hs_secret,
			               (int)ks->hs_len))
				t = NULL;
		}
	} else {
		for (size_t i = 0; i < ks->nkeys && !t; i++) {
			if (ks->keys[i].alg != want ||
			    (kid[0] && ks->keys[i].kid[0] && strcmp(kid, ks->keys[i].kid) != 0))
				continue;
			tried = true;
			if (jwt_decode(&t, tok, (const unsigned char *)ks->keys[i].pem,
			               (int)strlen(ks->keys[i].pem)))
				t = NULL;
		}
	}
	free(tok);
	if (!tried)
		return hr_fail(err, HR_EAUTH, "Authorization", "no key configured for %s tokens",
		               jwt_alg_str(want));
	if (!t)
		return hr_fail(err, HR_EAUTH, "Authorization", "token signature does not verify");
	int rc = 0;
	int64_t now = hr_now_us() / 1000000, exp = 0, nbf = 0;
	int has_exp = num_claim(t, "exp", &exp), has_nbf = num_claim(t, "nbf", &nbf);
	const char *tenant = jwt_get_grant(t, j->tenant_claim);
	const char *unit = jwt_get_grant(t, j->unit_claim);
	const char *sub = jwt_get_grant(t, j->subject_claim);
	if (jwt_get_alg(t) != want)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token signature does not verify");
	else if (has_exp == 0)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token has no numeric exp claim");
	else if (has_exp < 0)
		rc = hr_fail(
		    err, HR_EAUTH, "Authorization",
		    "token's exp claim is not a date (seconds since 1970, year 9999 at most)");
	else if (now > exp + j->leeway_s)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token expired");
	else if (has_nbf < 0)
		rc = hr_fail(
		    err, HR_EAUTH, "Authorization",
		    "token's nbf claim is not a date (seconds since 1970, year 9999 at most)");
	else if (has_nbf == 1 && now + j->leeway_s < nbf)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token not yet valid (nbf)");
	else if (j->issuer[0] &&
	         (!jwt_get_grant(t, "iss") || strcmp(jwt_get_grant(t, "iss"), j->issuer) != 0))
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token issuer not accepted");
	else if (!aud_ok(t, j->audience))
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token audience is not this service");
	else if (!tenant || !*tenant || strlen(tenant) >= HR_NAME_MAX)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token names no tenant (claim '%s')",
		             j->tenant_claim);
	else if (ks->tenant[0] && strcmp(tenant, ks->tenant) != 0)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token signature does not verify");
	else if (unit && strlen(unit) >= HR_NAME_MAX)
		rc = hr_fail(err, HR_EAUTH, "Authorization", "token's unit claim is too long");
	if (rc == 0) {
		memset(who, 0, sizeof *who);
		hr_strlcpy(who->tenant, tenant, sizeof who->tenant);
		hr_strlcpy(who->unit, unit ? unit : "", sizeof who->unit);
		who->scopes = scopes_claim(t, j->scopes_claim);
		char sb[80];
		hr_utf8_copy(sb, sub ? sub : "?", sizeof sb);
		snprintf(who->actor, sizeof who->actor, "jwt:%s", sb);
		*expires_us = (exp + j->leeway_s + 1) * 1000000;
	}
	jwt_free(t);
	return rc;
}
