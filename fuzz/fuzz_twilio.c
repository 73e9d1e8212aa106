/*
 * fuzz_twilio.c - the Twilio SMS adapter's handling of outside bytes
 * (src/channels/twilio.c): the form-encoded (x-www-form-urlencoded) body
 * parser behind both the X-Twilio-Signature check and the status/inbound
 * parser (STOP/START/HELP keywords), the send and lookup answers, phone
 * numbers and content. Input layout: fuzz_channel.h.
 */
#include "fuzz_channel.h"

static struct channel_account *g_acct;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	g_acct = fz_account("sms1", "sms",
	                    "{\"base_url\":\"http://127.0.0.1:9/\",\"account_sid\":"
	                    "\"AC0123456789abcdef0123456789abcdef\",\"auth_token\":"
	                    "\"12345\",\"from\":\"+15005550006\","
	                    "\"help_text\":\"Acme alerts. Reply STOP to stop.\"}");
	/* Twilio's documented signature vector (PROVIDERS.md): token 12345 over
	 * this URL, so the seed corpus's signed body passes the check. */
	hr_strlcpy(g_acct->webhook_url, "https://mycompany.com/myapp.php?foo=1&bar=2",
	           sizeof g_acct->webhook_url);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_req r;
	fz_req_split(data, size, &r);
	fz_drive(g_acct, &r);
	fz_req_free(&r);
	return 0;
}
