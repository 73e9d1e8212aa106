/*
 * fuzz_telegram.c - the Telegram Bot API adapter's handling of outside bytes
 * (src/channels/telegram.c): the X-Telegram-Bot-Api-Secret-Token check, the
 * update parser, the Bot API's answers (parse_send), chat ids and content.
 * Input layout: fuzz_channel.h. Oracles beyond the sanitizers: the secret
 * header is accepted exactly when it is the account's webhook_secret; the
 * update reads the same with jsonr as with jansson (fuzz_webhook_same.h).
 */
#include "fuzz_channel.h"
#include "fuzz_webhook_same.h"

#define SECRET "tg-Secret_42"

static struct channel_account *g_acct;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	setenv("FUZZ_TG_SECRET", SECRET, 1);
	g_acct =
	    fz_account("tg1", "telegram",
	               "{\"base_url\":\"http://127.0.0.1:9/\",\"bot_token\":"
	               "\"123456789:AAH-test_token\",\"webhook_secret\":\"env:FUZZ_TG_SECRET\"}");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_req r;
	fz_req_split(data, size, &r);
	int vrc = fz_drive(g_acct, &r);
	if ((vrc == 0) != (strcmp(r.line1, SECRET) == 0))
		abort();
	fz_webhook_same(g_acct, r.body, r.len);
	fz_req_free(&r);
	return 0;
}
