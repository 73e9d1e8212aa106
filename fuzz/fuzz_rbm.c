/*
 * fuzz_rbm.c - the RCS Business Messaging adapter's handling of outside
 * bytes (src/channels/rbm.c): the {clientToken, secret} handshake, the
 * X-Goog-Signature check over the Pub/Sub envelope's decoded message.data,
 * the event parser, the API's answers, phone numbers and content.
 * Input layout: fuzz_channel.h. The service account's key is made in memory
 * and passed by env: reference (no file, no network: the token endpoint is
 * only called to send). Oracles beyond the sanitizers: a signature is
 * accepted exactly when it is base64(HMAC-SHA512(client token, data)); the
 * push reads the same with jsonr as with jansson (fuzz_webhook_same.h).
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/crypto.h"
#include "fuzz_channel.h"
#include "fuzz_webhook_same.h"

#define TOKEN "SJENCPGJESMGUFPY"

static struct channel_account *g_acct;

static char *rsa_pem(void)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	if (!k || !b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *s = fz_dup((const uint8_t *)p, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
	return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	char *pem = rsa_pem();
	json_t *sa = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "private_key",
	                       pem, "client_email", "herald@rbm-herald.iam.gserviceaccount.com",
	                       "token_uri", "http://127.0.0.1:9/token");
	char *text = sa ? json_dumps(sa, JSON_COMPACT) : NULL;
	if (!text)
		abort();
	setenv("FUZZ_RBM_SA", text, 1);
	setenv("FUZZ_RBM_TOKEN", TOKEN, 1);
	free(text);
	free(pem);
	json_decref(sa);
	g_acct =
	    fz_account("rcs1", "rcs",
	               "{\"base_url\":\"http://127.0.0.1:9/\",\"agent_id\":\"herald_demo_agent\","
	               "\"service_account\":\"env:FUZZ_RBM_SA\",\"client_token\":"
	               "\"env:FUZZ_RBM_TOKEN\"}");
	return 0;
}

/* Whether the header (spaces trimmed) is the signature of the body's data. */
static bool signed_ok(const struct fz_req *r)
{
	json_t *root = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	const char *data =
	    json_string_value(json_object_get(json_object_get(root, "message"), "data"));
	size_t dlen = 0;
	unsigned char *raw = data ? hr_b64_decode(data, strlen(data), &dlen) : NULL;
	json_decref(root);
	if (!raw)
		return false;
	char want[89];
	hr_hmac_sha512_b64(TOKEN, strlen(TOKEN), raw, dlen, want);
	free(raw);
	const char *s = r->line1;
	while (*s == ' ')
		s++;
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == ' ')
		n--;
	return n == strlen(want) && memcmp(s, want, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_req r;
	fz_req_split(data, size, &r);
	int vrc = fz_drive(g_acct, &r);
	if ((vrc == 0) != signed_ok(&r))
		abort();
	fz_webhook_same(g_acct, r.body, r.len);
	fz_req_free(&r);
	return 0;
}
