/*
 * sim.c - `herald sim`: configuration, start and stop, and the command.
 * The HTTP side is sim_http.c, the webhook thread sim_webhook.c, the wire
 * formats sim_wire.c, the knobs sim_knobs.c, the counters sim_stats.c.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/crypto.h"
#include "sim/sim_knobtab.h"
#include "sim/sim_int.h"
#include "sim/sim_rcs.h"
#include "sim/sim_sms.h"
#include "sim/sim_telegram.h"

#define SIM_DEFAULT_LISTEN "127.0.0.1:9090"
#define SIM_DEFAULT_HERALD "http://127.0.0.1:8080"

struct sim_knobs *sim_knobs_get(struct sim *s)
{
	pthread_mutex_lock(&s->knobs_lock);
	struct sim_knobs *k = s->knobs;
	sim_knobs_ref(k);
	pthread_mutex_unlock(&s->knobs_lock);
	return k;
}

uint64_t sim_seed(struct sim *s, const struct sim_knobs *k)
{
	return k->has_seed ? k->seed : s->random_seed;
}

const struct sim_account *sim_account_by_id(const struct sim *s, const char *id)
{
	for (size_t i = 0; i < s->naccounts; i++)
		if (strcmp(s->accounts[i].id, id) == 0)
			return &s->accounts[i];
	return NULL;
}

/*
 * Ids shaped like Meta's: "wamid." + base64 of a small record holding the
 * recipient and a 20-hex-digit message key (here a per-process random prefix
 * and a counter, so ids never repeat within a run and rarely across runs).
 */
void sim_wamid_new(struct sim *s, const char *to, bool inbound, char *out, size_t n)
{
	char digits[HR_ADDR_MAX];
	sim_wire_digits(to, digits, sizeof digits);
	uint64_t c = atomic_fetch_add(&s->id_counter, 1);
	unsigned char raw[128];
	size_t dl = strlen(digits), k = 0;
	raw[k++] = 0x1c;
	raw[k++] = 0x18;
	raw[k++] = (unsigned char)dl;
	memcpy(raw + k, digits, dl);
	k += dl;
	const unsigned char mid[] = {0x15, 0x02, 0x00, inbound ? 0x11 : 0x12, 0x18, 0x14};
	memcpy(raw + k, mid, sizeof mid);
	k += sizeof mid;
	char key[24];
	snprintf(key, sizeof key, "%08X%012llX", s->id_prefix,
	         (unsigned long long)(c & 0xffffffffffffULL));
	memcpy(raw + k, key, 20);
	k += 20;
	raw[k++] = 0x00;
	char *b64 = hr_b64_encode(raw, k);
	snprintf(out, n, "wamid.%s", b64 ? b64 : key);
	free(b64);
}

/* ---------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------- */

/* A string or an integer (YAML turns unquoted digits into numbers). */
static int cfg_text(json_t *obj, const char *key, const char *base, bool required, char **out,
                    struct hr_err *err)
{
	char field[160];
	snprintf(field, sizeof field, "%s.%s", base, key);
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		hr_fail(err, HR_EINVAL, field, "%s is required", field);
		return HR_EINVAL;
	}
	if (json_is_integer(v)) {
		char buf[32];
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		*out = strdup(buf);
	} else if (json_is_string(v) && *json_string_value(v)) {
		*out = strdup(json_string_value(v));
	} else {
		hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
		return HR_EINVAL;
	}
	if (!*out) {
		hr_fail(err, HR_ENOMEM, field, "out of memory");
		return HR_ENOMEM;
	}
	return 0;
}

/* The secret at key (resolved into *out) and its reference (*ref_out). */
static int cfg_secret(json_t *obj, const char *key, const char *base, char **out, char **ref_out,
                      struct hr_err *err)
{
	char *ref;
	int rc = cfg_text(obj, key, base, true, &ref, err);
	if (rc)
		return rc;
	char field[160];
	snprintf(field, sizeof field, "%s.%s", base, key);
	*out = hr_secret_resolve(ref, field, err);
	if (!*out) {
		free(ref);
		return err && err->code ? err->code : HR_EINVAL;
	}
	*ref_out = ref;
	return 0;
}

int sim_rotate_secrets(struct sim *s, size_t *n, struct hr_err *err)
{
	*n = 0;
	char **tok = calloc(s->naccounts + 1, sizeof *tok),
	     **sec = calloc(s->naccounts + 1, sizeof *sec);
	int rc = tok && sec ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; rc == 0 && i < s->naccounts; i++) {
		struct sim_account *a = &s->accounts[i];
		if (!(tok[i] = hr_secret_resolve(a->token_ref, "access_token", err)) ||
		    !(sec[i] = hr_secret_resolve(a->secret_ref, "app_secret", err)))
			rc = err->code ? err->code : HR_EINVAL;
	}
	if (rc == 0) {
		pthread_mutex_lock(&s->secrets_lock);
		for (size_t i = 0; i < s->naccounts; i++) {
			struct sim_account *a = &s->accounts[i];
			if (strcmp(a->access_token, tok[i]) != 0 ||
			    strcmp(a->app_secret, sec[i]) != 0)
				(*n)++;
			char *t = a->access_token, *x = a->app_secret;
			a->access_token = tok[i];
			a->app_secret = sec[i];
			tok[i] = t; /* freed below */
			sec[i] = x;
		}
		pthread_mutex_unlock(&s->secrets_lock);
	}
	for (size_t i = 0; tok && sec && i < s->naccounts; i++) {
		hr_secret_free(tok[i]);
		hr_secret_free(sec[i]);
	}
	free(tok);
	free(sec);
	return rc;
}

static void account_free(struct sim_account *a)
{
	free(a->phone_number_id);
	free(a->access_token);
	free(a->app_secret);
	free(a->token_ref);
	free(a->secret_ref);
	free(a->display_phone);
	free(a->waba_id);
	free(a->webhook_url);
}

/* One tenants[t].accounts[i] entry; its keys may sit in a "config" object. */
static int load_account(struct sim *s, json_t *entry, const char *base, struct hr_err *err)
{
	struct sim_account *a = &s->accounts[s->naccounts];
	memset(a, 0, sizeof *a);
	char cbase[140];
	json_t *cfg = sim_account_entry(entry, base, a->id, sizeof a->id, cbase, sizeof cbase, err);
	if (!cfg)
		return err && err->code ? err->code : HR_EINVAL;
	int rc;
	if ((rc = cfg_text(cfg, "phone_number_id", cbase, true, &a->phone_number_id, err)) ||
	    (rc = cfg_secret(cfg, "access_token", cbase, &a->access_token, &a->token_ref, err)) ||
	    (rc = cfg_secret(cfg, "app_secret", cbase, &a->app_secret, &a->secret_ref, err)) ||
	    (rc = cfg_text(cfg, "display_phone_number", cbase, false, &a->display_phone, err)) ||
	    (rc = cfg_text(cfg, "waba_id", cbase, false, &a->waba_id, err))) {
		account_free(a);
		return rc;
	}
	a->secrets_lock = &s->secrets_lock;
	if (!a->display_phone)
		a->display_phone = strdup(a->phone_number_id);
	if (!a->waba_id)
		a->waba_id = strdup(a->phone_number_id);
	size_t hl = strlen(s->herald_url);
	while (hl && s->herald_url[hl - 1] == '/')
		hl--;
	if (asprintf(&a->webhook_url, "%.*s/webhooks/whatsapp/%s", (int)hl, s->herald_url, a->id) <
	    0)
		a->webhook_url = NULL;
	if (!a->display_phone || !a->waba_id || !a->webhook_url) {
		account_free(a);
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	}
	for (size_t i = 0; i < s->naccounts; i++) {
		if (strcmp(s->accounts[i].phone_number_id, a->phone_number_id) == 0 ||
		    strcmp(s->accounts[i].id, a->id) == 0) {
			account_free(a);
			return hr_fail(err, HR_EINVAL, base,
			               "%s: id or phone_number_id already used by account '%s'",
			               base, s->accounts[i].id);
		}
	}
	s->naccounts++;
	return 0;
}

/* Every tenants[].accounts[] entry with channel whatsapp. */
size_t sim_config_account_slots(json_t *config)
{
	size_t total = 0, ti;
	json_t *t;
	json_array_foreach(json_object_get(config, "tenants"), ti, t) total +=
	    json_array_size(json_object_get(t, "accounts"));
	return total;
}

int sim_config_each_account(struct sim *s, json_t *config, const char *channel, sim_account_fn fn,
                            struct hr_err *err)
{
	json_t *tenants = json_object_get(config, "tenants");
	if (!tenants)
		return 0;
	if (!json_is_array(tenants))
		return hr_fail(err, HR_EINVAL, "tenants", "tenants must be a list");
	size_t ti, ai;
	json_t *t, *acc;
	json_array_foreach(tenants, ti, t)
	{
		json_t *accounts = json_object_get(t, "accounts");
		char base[96];
		if (accounts && !json_is_array(accounts)) {
			snprintf(base, sizeof base, "tenants[%zu].accounts", ti);
			return hr_fail(err, HR_EINVAL, base, "%s must be a list", base);
		}
		json_array_foreach(accounts, ai, acc)
		{
			const char *ch = json_string_value(json_object_get(acc, "channel"));
			if (!ch || strcmp(ch, channel) != 0)
				continue;
			snprintf(base, sizeof base, "tenants[%zu].accounts[%zu]", ti, ai);
			int rc = fn(s, acc, base, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int load_accounts(struct sim *s, json_t *config, struct hr_err *err)
{
	s->accounts = calloc(sim_config_account_slots(config) + 1, sizeof *s->accounts);
	if (!s->accounts)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return sim_config_each_account(s, config, "whatsapp", load_account, err);
}

static int load_knobs(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_knobs *def = sim_knobs_default(), *k = NULL;
	if (!def)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	json_t *retry = hr_cfg_get(config, "sim.webhook_retry_s");
	json_t *extra = json_object();
	if (retry)
		json_object_set(extra, "webhook_retry_s", retry);
	int rc = sim_knobs_apply(def, extra, "sim.", &k, err);
	json_decref(extra);
	sim_knobs_unref(def);
	if (rc)
		return rc;
	json_t *wa = hr_cfg_get(config, "sim.whatsapp");
	if (wa && !json_is_null(wa)) {
		struct sim_knobs *k2 = NULL;
		rc = sim_knobs_apply(k, wa, "sim.whatsapp.", &k2, err);
		sim_knobs_unref(k);
		if (rc)
			return rc;
		k = k2;
	}
	s->knobs = k;
	return 0;
}

/* "HOST:PORT" with PORT in 0..65535. */
static int parse_listen(const char *v, char *host, size_t hn, int *port, struct hr_err *err)
{
	const char *colon = v ? strrchr(v, ':') : NULL;
	char *end;
	long p = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || colon == v || (size_t)(colon - v) >= hn || !colon[1] || *end || p < 0 ||
	    p > 65535)
		return hr_fail(err, HR_EINVAL, "sim.listen",
		               "sim.listen must look like 127.0.0.1:9090 (got '%s')", v ? v : "");
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = '\0';
	*port = (int)p;
	return 0;
}

/* Written to PATH.tmp then renamed, so a reader never sees half a number. */
static int write_port_file(const char *path, int port, struct hr_err *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return hr_fail(err, HR_EIO, "--port-file", "cannot write %s: %s", tmp,
		               strerror(errno));
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return hr_fail(err, HR_EIO, "--port-file", "cannot write %s: %s", path,
		               strerror(errno));
	return 0;
}

int sim_start(json_t *config, const struct sim_overrides *o, struct sim **out, struct hr_err *err)
{
	static const struct sim_overrides none;
	if (!o)
		o = &none;
	*out = NULL;
	struct sim *s = calloc(1, sizeof *s);
	if (!s)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_init(&s->knobs_lock, NULL);
	pthread_mutex_init(&s->secrets_lock, NULL);
	pthread_mutex_init(&s->sched_lock, NULL);
	int rc = sim_stats_init(&s->stats);
	hr_random_bytes(&s->random_seed, sizeof s->random_seed);
	hr_random_bytes(&s->id_prefix, sizeof s->id_prefix);
	struct hr_err cerr = {0};
	const char *herald =
	    o->herald_url ? o->herald_url
	                  : hr_cfg_str(config, "server.public_url", SIM_DEFAULT_HERALD, &cerr);
	const char *listen =
	    o->listen ? o->listen : hr_cfg_str(config, "sim.listen", SIM_DEFAULT_LISTEN, &cerr);
	int threads = (int)hr_cfg_int(config, "sim.threads", 2, 1, 16, &cerr);
	s->webhook_concurrency =
	    (int)hr_cfg_int(config, "sim.webhook_concurrency", 32, 1, 1024, &cerr);
	if (!rc && cerr.code)
		rc = hr_fail(err, cerr.code, cerr.field, "%s", cerr.msg);
	char host[64];
	int port = 0;
	if (!rc && !(s->herald_url = strdup(herald)))
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	if (!rc)
		rc = parse_listen(listen, host, sizeof host, &port, err);
	if (!rc)
		rc = load_accounts(s, config, err);
	if (!rc)
		rc = load_knobs(s, config, err);
	if (!rc)
		rc = sim_tg_start(s, config, err);
	if (!rc)
		rc = sim_sms_start(s, config, err);
	if (!rc)
		rc = sim_rcs_start(s, config, err);
	if (!rc)
		rc = sim_webhook_start(s, err);
	if (!rc)
		rc = sim_http_start(s, host, port, threads, err);
	if (!rc && o->port_file)
		rc = write_port_file(o->port_file, s->port, err);
	if (rc) {
		sim_stop(s);
		return rc;
	}
	if (s->naccounts == 0)
		hr_log(HR_LOG_WARN, "sim",
		       "no whatsapp accounts in the config: every send gets 401");
	*out = s;
	return 0;
}

int sim_port(const struct sim *s)
{
	return s->port;
}

void sim_stop(struct sim *s)
{
	if (!s)
		return;
	if (s->daemon) {
		/* Stop accepting, answer what is suspended (up to 2 s), then close. */
		MHD_socket lsock = MHD_quiesce_daemon(s->daemon);
		sim_webhook_quiesce(s);
		for (int i = 0; i < 200 && atomic_load(&s->suspended) > 0; i++)
			usleep(10000);
		MHD_stop_daemon(s->daemon);
		if (lsock != MHD_INVALID_SOCKET)
			close(lsock);
		s->daemon = NULL;
	}
	sim_webhook_stop(s);
	sim_tg_stop(s);
	sim_sms_stop(s);
	sim_rcs_stop(s);
	for (size_t i = 0; i < s->naccounts; i++)
		account_free(&s->accounts[i]);
	free(s->accounts);
	sim_knobs_unref(s->knobs);
	sim_stats_free(&s->stats);
	pthread_mutex_destroy(&s->knobs_lock);
	pthread_mutex_destroy(&s->secrets_lock);
	pthread_mutex_destroy(&s->sched_lock);
	free(s->herald_url);
	free(s);
	curl_global_cleanup();
}

/* ---------------------------------------------------------------------------
 * The command
 * ------------------------------------------------------------------------- */

static void sim_usage(FILE *f)
{
	fprintf(
	    f, "usage: herald sim --config FILE [--listen HOST:PORT] [--herald-url URL]\n"
	       "                  [--port-file PATH]\n\n"
	       "Simulates the WhatsApp Cloud API, Twilio Messaging, Google RBM (with its\n"
	       "token endpoint) and the Telegram Bot API on HOST:PORT (default "
	       "sim.listen, " SIM_DEFAULT_LISTEN ")\n"
	       "for the accounts in the config, and posts signed webhooks to\n"
	       "URL/webhooks/{whatsapp|sms|rcs|telegram}/{account} (default server.public_url).\n"
	       "Knobs: sim.<channel>.* in the config, or POST /sim/config, /sim/sms/config,\n"
	       "/sim/rcs/config, /sim/telegram/config. Counts: GET /sim/stats, /sim/duplicates.\n"
	       "Credentials rotated at the provider: POST /sim/whatsapp/rotate reads the WhatsApp\n"
	       "accounts' access_token and app_secret references again.\n");
}

int sim_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"listen", required_argument, NULL, 'l'},
	    {"herald-url", required_argument, NULL, 'u'},
	    {"port-file", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	struct sim_overrides o = {0};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:l:u:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			o.listen = optarg;
			break;
		case 'u':
			o.herald_url = optarg;
			break;
		case 'p':
			o.port_file = optarg;
			break;
		case 'h':
			sim_usage(stdout);
			return 0;
		default:
			sim_usage(stderr);
			return 2;
		}
	}
	if (!config_path || optind < argc) {
		sim_usage(stderr);
		return 2;
	}
	struct hr_err err = {0};
	json_t *config = hr_config_load(config_path, &err);
	if (!config) {
		fprintf(stderr, "herald sim: %s\n", err.msg);
		return 1;
	}
	/* Signals are taken by sigwait below; every thread started after this
	 * inherits the mask, so none of them is interrupted. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct sim *s = NULL;
	int rc = sim_start(config, &o, &s, &err);
	json_decref(config);
	if (rc) {
		fprintf(stderr, "herald sim: %s\n", err.msg);
		return 1;
	}
	printf("herald sim listening on http://%s:%d\n", s->host, s->port);
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	hr_log(HR_LOG_INFO, "sim", "signal %d: shutting down", sig);
	sim_stop(s);
	return 0;
}
