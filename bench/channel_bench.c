/*
 * channel_bench.c - the dispatcher's per-message channel work, alone: one
 * build_send and one parse_send of a success answer, for each channel's
 * commonest message (bench/run.sh's WhatsApp OTP text; an SMS; a Telegram
 * text; an RCS text), once the jansson way (channel_fast_json off) and once
 * the fast way (core/jsonw.h bodies, core/jsonr.h answers). No network, no
 * store: what stages.sh's "dispatcher" row holds of the adapters, measured
 * where a shared machine's load moves it little (CPU time of one thread).
 * Each pass checks every request body and outcome against the first one's,
 * so a fast wrong answer cannot pass as a figure.
 *
 * usage: channel_bench [--messages N]     (default 200000 per channel and way)
 * Prints one line per channel and way:
 *   channel_bench channel=C way=jansson|fast messages=N cpu_us_per_message=X
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channels/channel.h"
#include "herald.h"

struct bench_case {
	const char *channel, *config, *recipient, *content, *answer;
	long status;
};

static const struct bench_case cases[] = {
    {"whatsapp",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"phone_number_id\":\"106540352242922\","
     "\"access_token\":\"tok-123\",\"app_secret\":\"s\",\"verify_token\":\"v\"}",
     "447900000001",
     "{\"type\":\"text\",\"text\":\"Your Herald verification code is 482913. It expires in 10 "
     "minutes.\"}",
     "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"447900000001\",\"wa_id\":"
     "\"447900000001\"}],\"messages\":[{\"id\":\"wamid.HBgMNDQ3OTAwMDAwMDAxFQIAERgSMDFKQUJD\"}]}",
     200},
    {"sms",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"account_sid\":\"AC0123456789abcdef0123456789abcdef\","
     "\"auth_token\":\"t\",\"from\":\"+15005550006\"}",
     "+447900000001",
     "{\"type\":\"text\",\"text\":\"Your Herald verification code is 482913. It expires in 10 "
     "minutes.\"}",
     "{\"account_sid\":\"AC0123456789abcdef0123456789abcdef\",\"api_version\":\"2010-04-01\","
     "\"body\":\"Your Herald verification code is 482913. It expires in 10 minutes.\","
     "\"date_created\":\"Thu, 24 Aug 2023 05:01:45 +0000\",\"date_sent\":null,\"direction\":"
     "\"outbound-api\",\"error_code\":null,\"error_message\":null,\"from\":\"+15005550006\","
     "\"num_media\":\"0\",\"num_segments\":\"1\",\"price\":null,\"price_unit\":\"USD\","
     "\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\",\"to\":"
     "\"+447900000001\",\"uri\":\"/2010-04-01/Accounts/AC1/Messages/SM1.json\"}",
     201},
    {"telegram",
     "{\"base_url\":\"http://127.0.0.1:9/\",\"bot_token\":\"123456789:AAH-test_token\","
     "\"webhook_secret\":\"s\"}",
     "123456789",
     "{\"type\":\"text\",\"text\":\"Your Herald verification code is 482913. It expires in 10 "
     "minutes.\"}",
     "{\"ok\":true,\"result\":{\"message_id\":4711,\"from\":{\"id\":123456789,\"is_bot\":true,"
     "\"first_name\":\"Herald\"},\"chat\":{\"id\":123456789,\"type\":\"private\"},\"date\":"
     "1750263773,\"text\":\"Your Herald verification code is 482913. It expires in 10 "
     "minutes.\"}}",
     200},
};

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One way over n messages; checks each against want_body/want_id (set by
 * the first pass). */
static double run(const struct channel_account *a, const struct bench_case *c, long n,
                  char **want_body, char *want_id)
{
	struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0"};
	hr_strlcpy(m.recipient, c->recipient, sizeof m.recipient);
	m.content = (char *)c->content;
	size_t alen = strlen(c->answer);
	double t0 = cpu_s();
	for (long i = 0; i < n; i++) {
		struct http_req req;
		struct hr_err err = {0};
		if (a->ops->build_send(a, &m, &req, &err) != 0) {
			fprintf(stderr, "channel_bench: %s: build_send: %s\n", c->channel, err.msg);
			exit(1);
		}
		if (!*want_body)
			*want_body = strdup(req.body);
		else if (strcmp(*want_body, req.body) != 0) {
			fprintf(stderr, "channel_bench: %s: bodies differ\n", c->channel);
			exit(1);
		}
		http_req_clear(&req);
		struct send_outcome o;
		a->ops->parse_send(a, c->status, c->answer, alen, NULL, &o);
		if (o.cls != OUTCOME_OK) {
			fprintf(stderr, "channel_bench: %s: answer not ok\n", c->channel);
			exit(1);
		}
		if (!*want_id)
			hr_strlcpy(want_id, o.provider_id, HR_PROVIDER_ID_MAX);
		else if (strcmp(want_id, o.provider_id) != 0) {
			fprintf(stderr, "channel_bench: %s: ids differ\n", c->channel);
			exit(1);
		}
	}
	return (cpu_s() - t0) * 1e6 / (double)n;
}

int main(int argc, char **argv)
{
	long n = 200000;
	static const struct option opts[] = {{"messages", required_argument, NULL, 'n'},
	                                     {NULL, 0, NULL, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o != 'n' || (n = strtol(optarg, NULL, 10)) < 1) {
			fprintf(stderr, "usage: channel_bench [--messages N]\n");
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct bench_case *c = &cases[i];
		struct account_row row = {.id = "bench", .tenant_id = "t1"};
		hr_strlcpy(row.channel, c->channel, sizeof row.channel);
		row.config = (char *)c->config;
		struct channel_account *a = NULL;
		struct hr_err err = {0};
		if (channel_account_new(&row, &a, &err) != 0) {
			fprintf(stderr, "channel_bench: %s: %s\n", c->channel, err.msg);
			return 1;
		}
		char *body = NULL, id[HR_PROVIDER_ID_MAX] = "";
		/* Warm up both ways, then alternate so that drift hits both. */
		channel_fast_json = false;
		run(a, c, n / 10 + 1, &body, id);
		channel_fast_json = true;
		run(a, c, n / 10 + 1, &body, id);
		double slow = 0, fast = 0;
		for (int r = 0; r < 4; r++) {
			channel_fast_json = false;
			slow += run(a, c, n / 4, &body, id) / 4;
			channel_fast_json = true;
			fast += run(a, c, n / 4, &body, id) / 4;
		}
		printf(
		    "channel_bench channel=%s way=jansson messages=%ld cpu_us_per_message=%.2f\n",
		    c->channel, n, slow);
		printf("channel_bench channel=%s way=fast messages=%ld cpu_us_per_message=%.2f\n",
		       c->channel, n, fast);
		free(body);
		channel_account_free(a);
	}
	return 0;
}
