/*
 * crypto.h - hashing, HMAC, base64 and randomness over OpenSSL 3.
 * Nothing here is hand-rolled: each function is a thin wrapper that fixes the
 * encoding the providers use (hex or base64) in one place.
 */
#ifndef HR_CRYPTO_H
#define HR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* out gets 64 hex chars + NUL. */
void hr_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256(key, data) as lowercase hex (64 chars + NUL). */
void hr_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t len, char out[65]);
/* HMAC-SHA1(key, data) as standard base64 (28 chars + NUL). */
void hr_hmac_sha1_b64(const void *key, size_t keylen, const void *data, size_t len, char out[29]);
/* HMAC-SHA512(key, data) as standard base64 (88 chars + NUL). */
void hr_hmac_sha512_b64(const void *key, size_t keylen, const void *data, size_t len, char out[89]);

/* Standard base64 with padding. Returns a heap string (caller frees) or NULL. */
char *hr_b64_encode(const void *data, size_t len);
/* Decodes standard base64 (padding required, no whitespace). Returns heap bytes
 * (NUL-terminated for convenience, caller frees) and sets *outlen, or NULL when
 * the input is not valid base64. */
unsigned char *hr_b64_decode(const char *s, size_t slen, size_t *outlen);

/* Cryptographically secure random bytes; aborts if the OS cannot provide them. */
void hr_random_bytes(void *buf, size_t len);
/* Uniform double in [0,1) from a fast non-crypto PRNG (per thread). For jitter. */
double hr_random_unit(void);

#endif
