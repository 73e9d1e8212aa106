/*
 * cli.c - `herald send` and `herald messages get|list`: a thin client of the
 * HTTP API over libcurl's easy interface (`herald batch` is in batch.c and
 * shares the HTTP helpers through cli_int.h).
 *
 * The CLI never talks to the store: everything goes through the same API a
 * customer uses, so what the CLI shows is what the API says. Errors are
 * turned into one clear line on stderr, and the exit code tells scripts
 * what happened: 0 ok, 1 the API refused or the message failed, 2 usage,
 * 3 the server could not be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/cli_int.h"
#include "herald.h"

#define CLI_MAX_PARAMS 100
#define CLI_MAX_BUTTONS 10
#define CLI_MAX_OPTIONS 20

/* ---------------------------------------------------------------------------
 * HTTP.
 * ------------------------------------------------------------------------- */

size_t cli_on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct cli_resp *r = ud;
	size_t l = sz * n;
	char *b = realloc(r->body, r->len + l + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, p, l);
	r->len += l;
	b[r->len] = '\0';
	r->body = b;
	return l;
}

static size_t cli_on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct cli_resp *r = ud;
	static const char name[] = "idempotent-replayed:";
	if (sz * n > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0)
		r->replayed = true;
	return sz * n;
}

/* Appends line (NULL: allocation failed) to *l; false, with *l freed, if
 * that fails, so a request never goes out with a header missing. */
static bool cli_header(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = line ? curl_slist_append(*l, line) : NULL;
	if (!n) {
		curl_slist_free_all(*l);
		*l = NULL;
		return false;
	}
	*l = n;
	return true;
}

int cli_http(const struct cli *c, const char *method, const char *path, const char *body,
             const char *idem_key, struct cli_resp *out)
{
	return cli_http_x(c, method, path, body, idem_key, NULL, NULL, out);
}

int cli_http_x(const struct cli *c, const char *method, const char *path, const char *body,
               const char *idem_key, cli_setup_fn setup, void *ud, struct cli_resp *out)
{
	memset(out, 0, sizeof *out);
	CURL *h = curl_easy_init();
	if (!h) {
		fprintf(stderr, "herald: cannot initialise libcurl\n");
		return CLI_EUNREACHABLE;
	}
	size_t ul = strlen(c->url);
	while (ul > 0 && c->url[ul - 1] == '/')
		ul--;
	char *url = malloc(ul + strlen(path) + 1);
	if (!url) {
		curl_easy_cleanup(h);
		return CLI_EUNREACHABLE;
	}
	memcpy(url, c->url, ul);
	strcpy(url + ul, path);

	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	char *auth = NULL, *idem = NULL;
	if (asprintf(&auth, "Authorization: Bearer %s", c->key) < 0)
		auth = NULL;
	if (idem_key && asprintf(&idem, "Idempotency-Key: %s", idem_key) < 0)
		idem = NULL;
	bool hdrs_ok = cli_header(&hdrs, "Accept: application/json") && cli_header(&hdrs, auth) &&
	               (!idem_key || cli_header(&hdrs, idem)) &&
	               (!body || cli_header(&hdrs, "Content-Type: application/json"));
	/* Every header and option is checked: a request never goes out
	 * half-configured. rc keeps the first failure. */
	CURLcode rc = hdrs_ok ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define CLI_OPT(o, v)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, o, v);                                            \
	} while (0)
	CLI_OPT(CURLOPT_URL, url);
	CLI_OPT(CURLOPT_HTTPHEADER, hdrs);
	CLI_OPT(CURLOPT_ERRORBUFFER, errbuf);
	CLI_OPT(CURLOPT_WRITEFUNCTION, cli_on_body);
	CLI_OPT(CURLOPT_WRITEDATA, out);
	CLI_OPT(CURLOPT_HEADERFUNCTION, cli_on_header);
	CLI_OPT(CURLOPT_HEADERDATA, out);
	CLI_OPT(CURLOPT_CONNECTTIMEOUT, 10L);
	CLI_OPT(CURLOPT_TIMEOUT, 120L); /* sync sends wait up to 60 s */
	CLI_OPT(CURLOPT_NOSIGNAL, 1L);
	CLI_OPT(CURLOPT_USERAGENT, "herald-cli/" HERALD_VERSION);
	CLI_OPT(CURLOPT_PROTOCOLS_STR, "http,https");
	CLI_OPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (body || !strcmp(method, "POST")) {
		/* A POST without a body (start, cancel) is still a POST. */
		CLI_OPT(CURLOPT_POSTFIELDS, body ? body : "");
		CLI_OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? strlen(body) : 0));
	}
	if (strcmp(method, "GET") && strcmp(method, "POST"))
		CLI_OPT(CURLOPT_CUSTOMREQUEST, method);
#undef CLI_OPT
	/* The caller's options last, so they may replace the defaults above
	 * (a file upload's timeout, a download's write function). */
	if (rc == CURLE_OK && setup)
		rc = setup(h, ud);

	int ret = 0;
	if (rc != CURLE_OK) {
		fprintf(stderr, "herald: cannot set up the request to %.*s: %s\n", (int)ul, c->url,
		        curl_easy_strerror(rc));
		ret = CLI_EUNREACHABLE;
	} else if ((rc = curl_easy_perform(h)) != CURLE_OK &&
	           (rc == CURLE_WRITE_ERROR || rc == CURLE_READ_ERROR)) {
		/* A local file could not be read or written: not the server's
		 * fault, and the caller's callback knows why (it prints it). */
		free(out->body);
		out->body = NULL;
		ret = CLI_EAPI;
	} else if (rc != CURLE_OK) {
		long oserr = 0;
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
		const char *why = oserr       ? strerror((int)oserr)
		                  : errbuf[0] ? errbuf
		                              : curl_easy_strerror(rc);
		fprintf(stderr, "herald: cannot reach %.*s: %s (is `herald serve` running?)\n",
		        (int)ul, c->url, why);
		free(out->body);
		out->body = NULL;
		ret = CLI_EUNREACHABLE;
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	}
	curl_slist_free_all(hdrs);
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(idem);
	free(url);
	curl_easy_cleanup(h);
	return ret;
}

int cli_api_error(const struct cli_resp *r)
{
	if (r->status == 401) {
		fprintf(stderr, "herald: the API key was refused (401)\n");
		return CLI_EAPI;
	}
	json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(e, "field"));
	if (msg && field)
		fprintf(stderr, "herald: %s (field: %s)\n", msg, field);
	else if (msg)
		fprintf(stderr, "herald: %s (%ld)\n", msg, r->status);
	else
		fprintf(stderr, "herald: the server answered HTTP %ld\n", r->status);
	json_decref(j);
	return CLI_EAPI;
}

json_t *cli_result(const struct cli *c, struct cli_resp *r, int *code)
{
	if (c->json && r->body) {
		fwrite(r->body, 1, r->len, stdout);
		if (r->len && r->body[r->len - 1] != '\n')
			fputc('\n', stdout);
	}
	if (r->status < 200 || r->status >= 300) {
		*code = cli_api_error(r);
		return NULL;
	}
	json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	if (!j) {
		fprintf(stderr, "herald: the server sent a response that is not JSON\n");
		*code = CLI_EAPI;
		return NULL;
	}
	*code = CLI_OK;
	return j;
}

const char *jstr(json_t *j, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : def;
}

/* ---------------------------------------------------------------------------
 * Options.
 * ------------------------------------------------------------------------- */

enum {
	OPT_URL = 1000,
	OPT_KEY,
	OPT_JSON,
	OPT_TO,
	OPT_TEXT,
	OPT_TEMPLATE,
	OPT_LANG,
	OPT_PARAM,
	OPT_CHANNEL,
	OPT_ACCOUNT,
	OPT_SYNC,
	OPT_TIMEOUT,
	OPT_IDEM,
	OPT_PRIORITY,
	OPT_STATUS,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_LIMIT,
	OPT_CURSOR,
	OPT_HELP,
	OPT_DOCUMENT,
	OPT_IMAGE,
	OPT_FILENAME,
	OPT_CAPTION,
	OPT_BUTTON,
	OPT_HEADER_TEXT,
	OPT_HEADER_IMAGE,
	OPT_HEADER_DOCUMENT,
	OPT_OPTION,
};

static const struct option cli_options[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"key", required_argument, NULL, OPT_KEY},
    {"json", no_argument, NULL, OPT_JSON},
    {"to", required_argument, NULL, OPT_TO},
    {"text", required_argument, NULL, OPT_TEXT},
    {"template", required_argument, NULL, OPT_TEMPLATE},
    {"lang", required_argument, NULL, OPT_LANG},
    {"param", required_argument, NULL, OPT_PARAM},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"sync", no_argument, NULL, OPT_SYNC},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"idempotency-key", required_argument, NULL, OPT_IDEM},
    {"priority", required_argument, NULL, OPT_PRIORITY},
    {"status", required_argument, NULL, OPT_STATUS},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"cursor", required_argument, NULL, OPT_CURSOR},
    {"help", no_argument, NULL, OPT_HELP},
    {"document", required_argument, NULL, OPT_DOCUMENT},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"filename", required_argument, NULL, OPT_FILENAME},
    {"caption", required_argument, NULL, OPT_CAPTION},
    {"button", required_argument, NULL, OPT_BUTTON},
    {"header-text", required_argument, NULL, OPT_HEADER_TEXT},
    {"header-image", required_argument, NULL, OPT_HEADER_IMAGE},
    {"header-document", required_argument, NULL, OPT_HEADER_DOCUMENT},
    {"option", required_argument, NULL, OPT_OPTION},
    {NULL, 0, NULL, 0},
};

/* Everything any subcommand accepts; each checks which ones it allows. */
struct cli_args {
	struct cli c;
	const char *to, *text, *tpl, *lang, *channel, *account, *idem, *priority;
	const char *params[CLI_MAX_PARAMS];
	int nparams;
	const char *document, *image, *filename, *caption;
	const char *header_text, *header_image, *header_document;
	const char *buttons[CLI_MAX_BUTTONS]; /* "ID:TITLE" */
	int nbuttons;
	const char *options[CLI_MAX_OPTIONS]; /* "KEY=VALUE" */
	int noptions;
	bool sync;
	long timeout_ms;
	const char *status, *since, *until, *limit, *cursor;
	bool help;
	const char *positional[4];
	int npositional;
};

static const char usage_send[] =
    "usage: herald send --to RECIPIENT CONTENT [--channel whatsapp|sms|rcs|telegram]\n"
    "                   [--account ID] [--option KEY=VALUE]...\n"
    "                   [--priority transactional|bulk] [--sync [--timeout-ms N]]\n"
    "                   [--idempotency-key KEY] [--json] [--url URL] [--key KEY]\n"
    "CONTENT is one of:\n"
    "  --text TEXT [--button ID:TITLE]...\n"
    "  --template NAME --lang LANG [--param VALUE]...\n"
    "             [--header-text VALUE | --header-image URL |\n"
    "              --header-document URL [--filename F]]\n"
    "  --document URL [--filename F] [--caption C]\n"
    "  --image URL [--caption C]\n\n"
    "Sends one message through a running gateway. With --sync, waits for the\n"
    "provider's answer; a failed send then exits 1. --option sets a channel\n"
    "option (preview_url=true, validity_period=600, ttl=86400s, parse_mode=HTML);\n"
    "a VALUE that reads as JSON (true, 600) is sent as such, anything else as text.\n\n"
    "  --url URL   gateway base URL (default $HERALD_URL or " CLI_DEFAULT_URL ")\n"
    "  --key KEY   API key (default $HERALD_API_KEY)\n"
    "  --json      print the API's JSON response as is\n\n"
    "Exit codes: 0 ok, 1 API error or failed send, 2 usage, 3 server unreachable.\n";

static const char usage_messages[] =
    "usage: herald messages get ID [--json]\n"
    "       herald messages list [--status S] [--channel C] [--to NUMBER] [--since T]\n"
    "                            [--until T] [--limit N] [--cursor C] [--json]\n\n"
    "get prints a message and its audit trail; list prints messages newest first.\n"
    "Times are RFC 3339 (2026-01-15T10:00:00Z) or unix seconds.\n\n"
    "  --url URL   gateway base URL (default $HERALD_URL or " CLI_DEFAULT_URL ")\n"
    "  --key KEY   API key (default $HERALD_API_KEY)\n"
    "  --json      print the API's JSON response as is\n\n"
    "Exit codes: 0 ok, 1 API error, 2 usage, 3 server unreachable.\n";

/* Parses argv (argv[0] is the subcommand word). Returns 0 or CLI_EUSAGE
 * after printing what is wrong. */
static int cli_parse(int argc, char **argv, const char *cmd, struct cli_args *a)
{
	memset(a, 0, sizeof *a);
	a->c.url = getenv("HERALD_URL");
	a->c.key = getenv("HERALD_API_KEY");
	optind = 0; /* glibc: full re-initialisation, so cli_main can run twice */
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, ":", cli_options, NULL)) != -1) {
		char *end;
		switch (o) {
		case OPT_URL:
			a->c.url = optarg;
			break;
		case OPT_KEY:
			a->c.key = optarg;
			break;
		case OPT_JSON:
			a->c.json = true;
			break;
		case OPT_HELP:
			a->help = true;
			break;
		case OPT_TO:
			a->to = optarg;
			break;
		case OPT_CHANNEL:
			a->channel = optarg;
			break;
		case OPT_TEXT:
			a->text = optarg;
			break;
		case OPT_TEMPLATE:
			a->tpl = optarg;
			break;
		case OPT_LANG:
			a->lang = optarg;
			break;
		case OPT_ACCOUNT:
			a->account = optarg;
			break;
		case OPT_SYNC:
			a->sync = true;
			break;
		case OPT_IDEM:
			a->idem = optarg;
			break;
		case OPT_PRIORITY:
			a->priority = optarg;
			break;
		case OPT_PARAM:
			if (a->nparams == CLI_MAX_PARAMS) {
				fprintf(stderr, "herald %s: at most %d --param\n", cmd,
				        CLI_MAX_PARAMS);
				return CLI_EUSAGE;
			}
			a->params[a->nparams++] = optarg;
			break;
		case OPT_TIMEOUT:
			errno = 0;
			a->timeout_ms = strtol(optarg, &end, 10);
			if (errno || *end || a->timeout_ms < 1) {
				fprintf(stderr, "herald %s: --timeout-ms needs a positive number\n",
				        cmd);
				return CLI_EUSAGE;
			}
			break;
		case OPT_STATUS:
			a->status = optarg;
			break;
		case OPT_SINCE:
			a->since = optarg;
			break;
		case OPT_UNTIL:
			a->until = optarg;
			break;
		case OPT_LIMIT:
			a->limit = optarg;
			break;
		case OPT_CURSOR:
			a->cursor = optarg;
			break;
		case OPT_DOCUMENT:
			a->document = optarg;
			break;
		case OPT_IMAGE:
			a->image = optarg;
			break;
		case OPT_FILENAME:
			a->filename = optarg;
			break;
		case OPT_CAPTION:
			a->caption = optarg;
			break;
		case OPT_HEADER_TEXT:
			a->header_text = optarg;
			break;
		case OPT_HEADER_IMAGE:
			a->header_image = optarg;
			break;
		case OPT_HEADER_DOCUMENT:
			a->header_document = optarg;
			break;
		case OPT_BUTTON:
			if (a->nbuttons == CLI_MAX_BUTTONS) {
				fprintf(stderr, "herald %s: at most %d --button\n", cmd,
				        CLI_MAX_BUTTONS);
				return CLI_EUSAGE;
			}
			a->buttons[a->nbuttons++] = optarg;
			break;
		case OPT_OPTION:
			if (a->noptions == CLI_MAX_OPTIONS) {
				fprintf(stderr, "herald %s: at most %d --option\n", cmd,
				        CLI_MAX_OPTIONS);
				return CLI_EUSAGE;
			}
			a->options[a->noptions++] = optarg;
			break;
		case ':':
			fprintf(stderr, "herald %s: %s needs a value\n", cmd, argv[optind - 1]);
			return CLI_EUSAGE;
		default:
			fprintf(stderr, "herald %s: unknown option '%s'\n", cmd, argv[optind - 1]);
			return CLI_EUSAGE;
		}
	}
	for (; optind < argc; optind++) {
		if (a->npositional == (int)(sizeof a->positional / sizeof *a->positional)) {
			fprintf(stderr, "herald %s: too many arguments\n", cmd);
			return CLI_EUSAGE;
		}
		a->positional[a->npositional++] = argv[optind];
	}
	if (!a->c.url || !*a->c.url)
		a->c.url = CLI_DEFAULT_URL;
	return 0;
}

/* Options only `send` takes, and options only `messages list` takes. */
static bool cli_has_send_opts(const struct cli_args *a)
{
	return a->text || a->tpl || a->lang || a->nparams || a->account || a->sync || a->idem ||
	       a->priority || a->timeout_ms || a->document || a->image || a->filename ||
	       a->caption || a->header_text || a->header_image || a->header_document ||
	       a->nbuttons || a->noptions;
}

static bool cli_has_list_opts(const struct cli_args *a)
{
	return a->status || a->since || a->until || a->limit || a->cursor;
}

static int cli_need_key(const struct cli_args *a)
{
	if (a->c.key && *a->c.key)
		return 0;
	fprintf(stderr, "herald: no API key: set HERALD_API_KEY or pass --key\n");
	return CLI_EUSAGE;
}

/* ---------------------------------------------------------------------------
 * herald send
 * ------------------------------------------------------------------------- */

/* "ID:TITLE" or "KEY=VALUE": both sides non-empty. */
static bool cli_pair_ok(const char *s, char sep)
{
	const char *p = strchr(s, sep);
	return p && p != s && p[1];
}

static int cli_send_check(const struct cli_args *a)
{
	const char *why = NULL, *bad_button = NULL, *bad_option = NULL;
	int kinds = !!a->text + !!a->tpl + !!a->document + !!a->image;
	int headers = !!a->header_text + !!a->header_image + !!a->header_document;
	for (int i = 0; !bad_button && i < a->nbuttons; i++)
		if (!cli_pair_ok(a->buttons[i], ':'))
			bad_button = a->buttons[i];
	for (int i = 0; !bad_option && i < a->noptions; i++)
		if (!cli_pair_ok(a->options[i], '='))
			bad_option = a->options[i];
	if (cli_has_list_opts(a))
		why = "--status/--since/--until/--limit/--cursor belong to 'messages list'";
	else if (a->npositional)
		why = "unexpected argument";
	else if (!a->to)
		why = "--to is required";
	else if (kinds != 1)
		why = "give exactly one of --text, --template, --document or --image";
	else if (a->tpl && !a->lang)
		why = "--template needs --lang";
	else if (!a->tpl && (a->lang || a->nparams))
		why = "--lang and --param go with --template";
	else if (!a->tpl && headers)
		why = "--header-text/--header-image/--header-document go with --template";
	else if (headers > 1)
		why = "give at most one of --header-text, --header-image or --header-document";
	else if (a->filename && !a->document && !a->header_document)
		why = "--filename goes with --document or --header-document";
	else if (a->caption && !a->document && !a->image)
		why = "--caption goes with --document or --image";
	else if (a->nbuttons && !a->text)
		why = "--button goes with --text (reply buttons on a text message)";
	else if (a->timeout_ms && !a->sync)
		why = "--timeout-ms goes with --sync";
	if (!why && (bad_button || bad_option)) {
		fprintf(stderr, "herald send: %s needs %s, got '%s'\n\n%s",
		        bad_button ? "--button" : "--option", bad_button ? "ID:TITLE" : "KEY=VALUE",
		        bad_button ? bad_button : bad_option, usage_send);
		return CLI_EUSAGE;
	}
	if (why) {
		fprintf(stderr, "herald send: %s\n\n%s", why, usage_send);
		return CLI_EUSAGE;
	}
	return 0;
}

/* An --option value: JSON when it reads as JSON (true, 600, "x"), else text. */
static json_t *cli_option_value(const char *v)
{
	json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
	return j ? j : json_string(v);
}

/* Adds a new empty object or array under key of parent and returns it
 * (borrowed: the parent owns it from the start, so nothing leaks when a
 * later step fails). NULL when out of memory. */
static json_t *cli_child(json_t *parent, const char *key, bool array)
{
	json_t *c = array ? json_array() : json_object();
	return c && json_object_set_new(parent, key, c) == 0 ? c : NULL;
}

static bool cli_set_str(json_t *o, const char *key, const char *v)
{
	return !v || json_object_set_new(o, key, json_string(v)) == 0;
}

/* The request's content keys; false when out of memory. */
static bool cli_send_content(const struct cli_args *a, json_t *j)
{
	bool ok = true;
	if (a->text) {
		ok = cli_set_str(j, "text", a->text);
		json_t *buttons = ok && a->nbuttons ? cli_child(j, "buttons", true) : NULL;
		ok = ok && (buttons || !a->nbuttons);
		for (int i = 0; ok && i < a->nbuttons; i++) {
			const char *colon = strchr(a->buttons[i], ':');
			ok = !json_array_append_new(buttons,
			                            json_pack("{s:s%, s:s}", "id", a->buttons[i],
			                                      (size_t)(colon - a->buttons[i]),
			                                      "title", colon + 1));
		}
	} else if (a->document || a->image) {
		json_t *m = cli_child(j, a->document ? "document" : "image", false);
		ok = m && cli_set_str(m, "url", a->document ? a->document : a->image) &&
		     cli_set_str(m, "filename", a->filename) &&
		     cli_set_str(m, "caption", a->caption);
	} else {
		json_t *t = cli_child(j, "template", false);
		ok = t && cli_set_str(t, "name", a->tpl) && cli_set_str(t, "language", a->lang);
		json_t *params = ok ? cli_child(t, "parameters", true) : NULL;
		ok = ok && params;
		for (int i = 0; ok && i < a->nparams; i++)
			ok = !json_array_append_new(params, json_string(a->params[i]));
		const char *type = a->header_text       ? "text"
		                   : a->header_image    ? "image"
		                   : a->header_document ? "document"
		                                        : NULL;
		json_t *h = ok && type ? cli_child(t, "header", false) : NULL;
		ok = ok && (h || !type);
		if (ok && h) {
			ok = cli_set_str(h, "type", type);
			if (ok && a->header_text)
				ok = !json_object_set_new(h, "parameters",
				                          json_pack("[s]", a->header_text));
			else if (ok)
				ok = cli_set_str(h, "url",
				                 a->header_image ? a->header_image
				                                 : a->header_document) &&
				     (!a->header_document ||
				      cli_set_str(h, "filename", a->filename));
		}
	}
	json_t *o = ok && a->noptions ? cli_child(j, "options", false) : NULL;
	ok = ok && (o || !a->noptions);
	for (int i = 0; ok && i < a->noptions; i++) {
		const char *eq = strchr(a->options[i], '=');
		char key[128];
		snprintf(key, sizeof key, "%.*s", (int)(eq - a->options[i]), a->options[i]);
		ok = !json_object_set_new(o, key, cli_option_value(eq + 1));
	}
	return ok;
}

static char *cli_send_body(const struct cli_args *a)
{
	json_t *j =
	    json_pack("{s:s, s:s}", "channel", a->channel ? a->channel : "whatsapp", "to", a->to);
	if (!j)
		return NULL;
	if (a->account)
		json_object_set_new(j, "account", json_string(a->account));
	if (!cli_send_content(a, j)) {
		json_decref(j);
		return NULL;
	}
	if (a->priority)
		json_object_set_new(j, "priority", json_string(a->priority));
	if (a->sync) {
		json_object_set_new(j, "mode", json_string("sync"));
		if (a->timeout_ms)
			json_object_set_new(j, "timeout_ms", json_integer(a->timeout_ms));
	}
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

static int cli_send(int argc, char **argv)
{
	struct cli_args a;
	int rc = cli_parse(argc, argv, "send", &a);
	if (rc)
		return rc;
	if (a.help) {
		fputs(usage_send, stdout);
		return CLI_OK;
	}
	if ((rc = cli_send_check(&a)) || (rc = cli_need_key(&a)))
		return rc;
	char *body = cli_send_body(&a);
	if (!body) {
		fprintf(stderr, "herald: out of memory\n");
		return CLI_EAPI;
	}
	struct cli_resp r;
	rc = cli_http(&a.c, "POST", "/v1/messages", body, a.idem, &r);
	free(body);
	if (rc)
		return rc;
	json_t *j = cli_result(&a.c, &r, &rc);
	if (j) {
		const char *status = jstr(j, "status", "?");
		json_t *err = json_object_get(j, "error");
		if (!a.c.json) {
			printf("%s %s  %s/%s -> %s", status, jstr(j, "id", "?"),
			       jstr(j, "channel", "?"), jstr(j, "account", "?"),
			       jstr(j, "to", "?"));
			if (json_string_value(json_object_get(j, "provider_id")))
				printf("  provider id %s", jstr(j, "provider_id", ""));
			if (r.replayed)
				printf("  (idempotent replay)");
			printf("\n");
			bool retrying = json_is_true(json_object_get(j, "retrying"));
			if (json_is_object(err))
				printf("  error %s: %s%s\n", jstr(err, "code", "?"),
				       jstr(err, "message", ""), retrying ? " (will retry)" : "");
			if (json_is_true(json_object_get(j, "sync_timeout")))
				printf("  no answer from the provider yet: check with "
				       "'herald messages get %s'\n",
				       jstr(j, "id", "?"));
		}
		if (strcmp(status, "failed") == 0) {
			if (a.c.json)
				fprintf(stderr, "herald: the message failed\n");
			rc = CLI_EAPI;
		}
		json_decref(j);
	}
	free(r.body);
	return rc;
}

/* ---------------------------------------------------------------------------
 * herald messages get | list
 * ------------------------------------------------------------------------- */

void print_cell(const char *s, int width)
{
	int n = 0;
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	bool cut = (int)len > width;
	int room = cut ? width - 3 : width;
	while (*p && n < room) {
		int l = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : 4;
		if (n + l > room)
			break;
		for (int i = 0; i < l && p[i]; i++)
			putchar(p[i] == '\n' || p[i] == '\r' || p[i] == '\t' ? ' ' : p[i]);
		p += l;
		n += l;
	}
	if (cut)
		fputs("...", stdout);
}

static void print_message(json_t *m)
{
	printf("id         %s\n", jstr(m, "id", ""));
	printf("status     %s\n", jstr(m, "status", ""));
	printf("channel    %s (account %s)\n", jstr(m, "channel", ""), jstr(m, "account", ""));
	printf("to         %s\n", jstr(m, "to", ""));
	printf("priority   %s\n", jstr(m, "priority", ""));
	printf("attempts   %lld\n", (long long)json_integer_value(json_object_get(m, "attempts")));
	printf("provider   %s\n", jstr(m, "provider_id", "-"));
	json_t *err = json_object_get(m, "error");
	if (json_is_object(err))
		printf("error      %s: %s\n", jstr(err, "code", ""), jstr(err, "message", ""));
	printf("created    %s\n", jstr(m, "created_at", ""));
	printf("updated    %s\n", jstr(m, "updated_at", ""));
	/* A multi-line body stays in its column. */
	fputs("body       ", stdout);
	for (const char *p = jstr(m, "body", ""); *p; p++)
		fputs(*p == '\n' ? "\n           " : (char[]){*p, 0}, stdout);
	putchar('\n');
	json_t *events = json_object_get(m, "events");
	printf("\n%-27s  %-15s  %-11s  %-10s  %-7s  %s\n", "TIME", "TYPE", "STATUS", "SOURCE",
	       "APPLIED", "DETAIL");
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
	{
		json_t *d = json_object_get(e, "detail");
		char *detail = json_is_null(d) || !d ? NULL : json_dumps(d, JSON_COMPACT);
		printf("%-27s  %-15s  %-11s  %-10s  %-7s  %s\n", jstr(e, "at", ""),
		       jstr(e, "type", ""), jstr(e, "status", "-"), jstr(e, "source", ""),
		       json_is_true(json_object_get(e, "applied")) ? "yes" : "no",
		       detail ? detail : "");
		free(detail);
	}
}

static int cli_messages_get(struct cli_args *a)
{
	if (a->npositional != 1 || cli_has_send_opts(a) || cli_has_list_opts(a) || a->to ||
	    a->channel) {
		fprintf(stderr, "herald messages get: %s\n\n%s",
		        a->npositional != 1 ? "give one message id" : "get takes only an id",
		        usage_messages);
		return CLI_EUSAGE;
	}
	int rc = cli_need_key(a);
	if (rc)
		return rc;
	CURL *h = curl_easy_init();
	char *id = h ? curl_easy_escape(h, a->positional[0], 0) : NULL;
	char *path = NULL;
	if (!id || asprintf(&path, "/v1/messages/%s", id) < 0)
		path = NULL;
	curl_free(id);
	curl_easy_cleanup(h);
	if (!path) {
		fprintf(stderr, "herald: out of memory\n");
		return CLI_EAPI;
	}
	struct cli_resp r;
	rc = cli_http(&a->c, "GET", path, NULL, NULL, &r);
	free(path);
	if (rc)
		return rc;
	json_t *j = cli_result(&a->c, &r, &rc);
	if (j && !a->c.json)
		print_message(j);
	json_decref(j);
	free(r.body);
	return rc;
}

static int cli_messages_list(struct cli_args *a)
{
	if (a->npositional || cli_has_send_opts(a)) {
		fprintf(stderr, "herald messages list: unexpected argument\n\n%s", usage_messages);
		return CLI_EUSAGE;
	}
	int rc = cli_need_key(a);
	if (rc)
		return rc;
	const struct {
		const char *name, *value;
	} q[] = {
	    {"status", a->status}, {"channel", a->channel}, {"to", a->to},
	    {"since", a->since},   {"until", a->until},     {"limit", a->limit},
	    {"cursor", a->cursor},
	};
	CURL *h = curl_easy_init();
	if (!h)
		return CLI_EUNREACHABLE;
	char path[2048] = "/v1/messages";
	size_t off = strlen(path);
	char sep = '?';
	for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
		if (!q[i].value)
			continue;
		char *v = curl_easy_escape(h, q[i].value, 0);
		int n =
		    v ? snprintf(path + off, sizeof path - off, "%c%s=%s", sep, q[i].name, v) : -1;
		curl_free(v);
		if (n < 0 || (size_t)n >= sizeof path - off) {
			curl_easy_cleanup(h);
			fprintf(stderr, "herald messages list: filters too long\n");
			return CLI_EUSAGE;
		}
		off += (size_t)n;
		sep = '&';
	}
	curl_easy_cleanup(h);

	struct cli_resp r;
	rc = cli_http(&a->c, "GET", path, NULL, NULL, &r);
	if (rc)
		return rc;
	json_t *j = cli_result(&a->c, &r, &rc);
	if (j && !a->c.json) {
		json_t *data = json_object_get(j, "data");
		printf("%-26s  %-27s  %-11s  %-9s  %-16s  %s\n", "ID", "CREATED", "STATUS",
		       "CHANNEL", "TO", "BODY");
		size_t i;
		json_t *m;
		json_array_foreach(data, i, m)
		{
			printf("%-26s  %-27s  %-11s  %-9s  %-16s  ", jstr(m, "id", ""),
			       jstr(m, "created_at", ""), jstr(m, "status", ""),
			       jstr(m, "channel", ""), jstr(m, "to", ""));
			print_cell(jstr(m, "body", ""), 40);
			putchar('\n');
		}
		const char *next = jstr(j, "next_cursor", NULL);
		size_t n = json_array_size(data);
		printf("%zu message%s", n, n == 1 ? "" : "s");
		if (next)
			printf("; next page: --cursor %s", next);
		printf("\n");
	}
	json_decref(j);
	free(r.body);
	return rc;
}

static int cli_messages(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_messages, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EUSAGE : CLI_OK;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "get") && strcmp(sub, "list")) {
		fprintf(stderr, "herald messages: unknown subcommand '%s'\n\n%s", sub,
		        usage_messages);
		return CLI_EUSAGE;
	}
	struct cli_args a;
	char cmd[32];
	snprintf(cmd, sizeof cmd, "messages %s", sub);
	int rc = cli_parse(argc - 1, argv + 1, cmd, &a);
	if (rc)
		return rc;
	if (a.help) {
		fputs(usage_messages, stdout);
		return CLI_OK;
	}
	return strcmp(sub, "get") == 0 ? cli_messages_get(&a) : cli_messages_list(&a);
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "herald: expected 'send', 'messages' or 'batch'\n");
		return CLI_EUSAGE;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc;
	if (strcmp(argv[1], "send") == 0) {
		rc = cli_send(argc - 1, argv + 1);
	} else if (strcmp(argv[1], "messages") == 0) {
		rc = cli_messages(argc - 1, argv + 1);
	} else if (strcmp(argv[1], "batch") == 0) {
		rc = cli_batch(argc - 1, argv + 1);
	} else if (!strcmp(argv[1], "tenants") || !strcmp(argv[1], "units") ||
	           !strcmp(argv[1], "keys") || !strcmp(argv[1], "audit") ||
	           !strcmp(argv[1], "templates")) {
		rc = cli_admin(argc - 1, argv + 1);
	} else if (!strcmp(argv[1], "plugins")) {
		rc = cli_plugins(argc - 1, argv + 1);
	} else {
		fprintf(stderr, "herald: unknown command '%s'\n", argv[1]);
		rc = CLI_EUSAGE;
	}
	fflush(stdout);
	curl_global_cleanup();
	return rc;
}
