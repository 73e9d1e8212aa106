/*
 * fuzz_whatsapp.c - the WhatsApp Cloud API adapter's handling of outside
 * bytes (src/channels/whatsapp.c): the GET hub.challenge handshake, the
 * X-Hub-Signature-256 check, the webhook parser, the send answer's
 * classification, recipient normalisation and content validation.
 * Input layout: fuzz_channel.h. Oracles beyond the sanitizers: a signature
 * is accepted exactly when it is sha256=<HMAC-SHA256(app secret, body)>;
 * the webhook body reads the same with jsonr as with jansson
 * (fuzz_webhook_same.h).
 */
#include <ctype.h>
#include <strings.h>

#include "core/crypto.h"
#include "fuzz_channel.h"
#include "fuzz_webhook_same.h"

#define SECRET "app-secret-123"

static struct channel_account *g_acct;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setenv("FUZZ_WA_VERIFY", "verify-me", 1);
	g_acct = fz_account(
	    "wa1", "whatsapp",
	    "{\"base_url\":\"http://127.0.0.1:9/\",\"phone_number_id\":\"106540352242922\","
	    "\"access_token\":\"tok-123\",\"app_secret\":\"" SECRET "\","
	    "\"verify_token\":\"env:FUZZ_WA_VERIFY\"}");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_req r;
	fz_req_split(data, size, &r);
	int vrc = fz_drive(g_acct, &r);
	char want[65];
	hr_hmac_sha256_hex(SECRET, strlen(SECRET), r.body ? r.body : "", r.len, want);
	const char *sig = r.line1;
	bool match = strncasecmp(sig, "sha256=", 7) == 0 && strlen(sig) == 71 &&
	             strncasecmp(sig + 7, want, 64) == 0;
	if ((vrc == 0) != match)
		abort();
	fz_webhook_same(g_acct, r.body, r.len);
	fz_req_free(&r);
	return 0;
}
