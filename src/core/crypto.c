/*
 * crypto.c - OpenSSL 3 wrappers (EVP_Q_mac, EVP_Digest, EVP_EncodeBlock).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/crypto.h"
#include "herald.h"

static void to_hex(const unsigned char *b, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * n] = '\0';
}

void hr_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	to_hex(md, 32, out);
}

static size_t hmac(const char *digest, const void *key, size_t keylen, const void *data, size_t len,
                   unsigned char *md, size_t mdsize)
{
	size_t outlen = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, key, keylen, data, len, md, mdsize,
	               &outlen))
		abort(); /* only fails on OOM or a broken OpenSSL install */
	return outlen;
}

void hr_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	hmac("SHA256", key, keylen, data, len, md, sizeof md);
	to_hex(md, 32, out);
}

void hr_hmac_sha1_b64(const void *key, size_t keylen, const void *data, size_t len, char out[29])
{
	unsigned char md[20];
	hmac("SHA1", key, keylen, data, len, md, sizeof md);
	EVP_EncodeBlock((unsigned char *)out, md, 20);
}

void hr_hmac_sha512_b64(const void *key, size_t keylen, const void *data, size_t len, char out[89])
{
	unsigned char md[64];
	hmac("SHA512", key, keylen, data, len, md, sizeof md);
	EVP_EncodeBlock((unsigned char *)out, md, 64);
}

char *hr_b64_encode(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

unsigned char *hr_b64_decode(const char *s, size_t slen, size_t *outlen)
{
	if (slen % 4 != 0)
		return NULL;
	unsigned char *out = malloc(slen / 4 * 3 + 1);
	if (!out)
		return NULL;
	int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)slen);
	if (n < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts padding as zero bytes: remove them. */
	if (slen >= 1 && s[slen - 1] == '=')
		n--;
	if (slen >= 2 && s[slen - 2] == '=')
		n--;
	out[n] = '\0';
	*outlen = (size_t)n;
	return out;
}

void hr_random_bytes(void *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1)
		abort();
}

double hr_random_unit(void)
{
	/* xorshift64*, seeded per thread from the CSPRNG. */
	static _Thread_local uint64_t s;
	if (s == 0) {
		hr_random_bytes(&s, sizeof s);
		s |= 1;
	}
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return (double)((s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
