/*
 * batch.c - `herald batch ...`: campaigns from the command line, a thin
 * client of /v1/batches (src/api/batches.c).
 *
 *   upload FILE ...   POST /v1/batches as multipart/form-data; the file is
 *                     streamed from disk by libcurl (curl_mime_filedata),
 *                     never read into memory; --watch then follows it
 *   list              GET /v1/batches with filters
 *   status ID         GET /v1/batches/{id} as a readable summary
 *   start|cancel ID   POST /v1/batches/{id}/start|cancel
 *   retry ID          POST /v1/batches/{id}/retry
 *   discard ID        DELETE /v1/batches/{id}
 *   report ID         GET /v1/batches/{id}/errors, every page (or the CSV)
 *   export ID         GET /v1/batches/{id}/export.xlsx|csv to a file
 *
 * Progress (the upload's bytes, a watched batch's messages) is drawn as a
 * bar on stderr when stderr is a terminal; otherwise it is plain lines, so
 * logs and pipes never see escape codes. Strings from the server are
 * printed with control characters replaced for the same reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli/cli_int.h"
#include "herald.h"

#define BATCH_REPORT_PAGE 1000      /* invalid rows per GET .../errors */
#define BATCH_REPORT_MAX_PAGES 100000 /* a server that never ends its pages */
#define BATCH_ERRBODY_MAX 65536     /* an error body kept from a download */
#define BATCH_STATUSES_MAX 16

/* Every option of any batch subcommand; each subcommand says which it takes. */
enum bopt {
	B_URL,
	B_KEY,
	B_JSON,
	B_HELP,
	B_NAME,
	B_CHANNEL,
	B_ACCOUNT,
	B_TEXT,
	B_TEMPLATE,
	B_LANGUAGE,
	B_RCOL,
	B_PARAMS,
	B_REGION,
	B_UNIT,
	B_SCHEDULE,
	B_DRY,
	B_START,
	B_SHEET,
	B_SEP,
	B_WATCH,
	B_STATUS,
	B_SINCE,
	B_UNTIL,
	B_LIMIT,
	B_CURSOR,
	B_STATUSES,
	B_CSV,
	B_FORMAT,
	B_OUTPUT,
	B_FORCE,
	B_REASON,
	B__COUNT
};

#define BO(x) (1000 + (x))
static const struct option batch_options[] = {
    {"url", required_argument, NULL, BO(B_URL)},
    {"key", required_argument, NULL, BO(B_KEY)},
    {"json", no_argument, NULL, BO(B_JSON)},
    {"help", no_argument, NULL, BO(B_HELP)},
    {"name", required_argument, NULL, BO(B_NAME)},
    {"channel", required_argument, NULL, BO(B_CHANNEL)},
    {"account", required_argument, NULL, BO(B_ACCOUNT)},
    {"text", required_argument, NULL, BO(B_TEXT)},
    {"template", required_argument, NULL, BO(B_TEMPLATE)},
    {"language", required_argument, NULL, BO(B_LANGUAGE)},
    {"lang", required_argument, NULL, BO(B_LANGUAGE)},
    {"recipient-column", required_argument, NULL, BO(B_RCOL)},
    {"params", required_argument, NULL, BO(B_PARAMS)},
    {"region", required_argument, NULL, BO(B_REGION)},
    {"unit", required_argument, NULL, BO(B_UNIT)},
    {"schedule-at", required_argument, NULL, BO(B_SCHEDULE)},
    {"dry-run", no_argument, NULL, BO(B_DRY)},
    {"start", required_argument, NULL, BO(B_START)},
    {"sheet", required_argument, NULL, BO(B_SHEET)},
    {"separator", required_argument, NULL, BO(B_SEP)},
    {"watch", no_argument, NULL, BO(B_WATCH)},
    {"status", required_argument, NULL, BO(B_STATUS)},
    {"since", required_argument, NULL, BO(B_SINCE)},
    {"until", required_argument, NULL, BO(B_UNTIL)},
    {"limit", required_argument, NULL, BO(B_LIMIT)},
    {"cursor", required_argument, NULL, BO(B_CURSOR)},
    {"statuses", required_argument, NULL, BO(B_STATUSES)},
    {"csv", no_argument, NULL, BO(B_CSV)},
    {"format", required_argument, NULL, BO(B_FORMAT)},
    {"output", required_argument, NULL, BO(B_OUTPUT)},
    {"force", no_argument, NULL, BO(B_FORCE)},
    {"reason", required_argument, NULL, BO(B_REASON)},
    {NULL, 0, NULL, 0},
};

/* How an option is named in messages, by enum bopt. */
static const char *const bopt_name[B__COUNT] = {
    [B_URL] = "--url",          [B_KEY] = "--key",
    [B_JSON] = "--json",        [B_HELP] = "--help",
    [B_NAME] = "--name",        [B_CHANNEL] = "--channel",
    [B_ACCOUNT] = "--account",  [B_TEXT] = "--text",
    [B_TEMPLATE] = "--template", [B_LANGUAGE] = "--language",
    [B_RCOL] = "--recipient-column", [B_PARAMS] = "--params",
    [B_REGION] = "--region",    [B_UNIT] = "--unit",
    [B_SCHEDULE] = "--schedule-at", [B_DRY] = "--dry-run",
    [B_START] = "--start",      [B_SHEET] = "--sheet",
    [B_SEP] = "--separator",    [B_WATCH] = "--watch",
    [B_STATUS] = "--status",    [B_SINCE] = "--since",
    [B_UNTIL] = "--until",      [B_LIMIT] = "--limit",
    [B_CURSOR] = "--cursor",    [B_STATUSES] = "--statuses",
    [B_CSV] = "--csv",          [B_FORMAT] = "--format",
    [B_OUTPUT] = "--output",    [B_FORCE] = "--force",
    [B_REASON] = "--reason",
};

#define BIT(x) (1u << (x))
#define B_COMMON (BIT(B_URL) | BIT(B_KEY) | BIT(B_JSON) | BIT(B_HELP))

struct batch_args {
	struct cli c;
	const char *v[B__COUNT]; /* an option's value; "" for a flag given */
	unsigned given;          /* BIT(enum bopt) */
	const char *positional[2];
	int npositional;
	bool tty; /* stderr is a terminal: progress as a bar */
};

static bool has(const struct batch_args *a, enum bopt o)
{
	return a->given & BIT(o);
}

static const char usage_batch[] =
    "usage: herald batch upload FILE --name NAME --channel CHANNEL [--account ID]\n"
    "                    (--text TEXT | --template NAME --language LANG)\n"
    "                    [--recipient-column COL] [--params COL,COL...] [--region GB]\n"
    "                    [--unit UNIT] [--schedule-at TIME] [--dry-run]\n"
    "                    [--start auto|true|false] [--sheet SHEET] [--separator C]\n"
    "                    [--watch]\n"
    "       herald batch list [--status S] [--unit U] [--name N] [--since T] [--until T]\n"
    "                         [--limit N] [--cursor C]\n"
    "       herald batch status ID\n"
    "       herald batch start ID [--watch]\n"
    "       herald batch cancel ID [--reason TEXT]\n"
    "       herald batch pause ID --reason TEXT\n"
    "       herald batch resume ID\n"
    "       herald batch retry ID [--statuses failed,undelivered] [--start true|false]\n"
    "       herald batch discard ID\n"
    "       herald batch report ID [--csv]\n"
    "       herald batch export ID --format xlsx|csv -o FILE [--force]\n\n"
    "upload sends a campaign file (.xlsx or .csv) to a running gateway, which checks\n"
    "every row and answers the counts and the first invalid rows; --dry-run only\n"
    "checks. --start auto (the default) starts a batch without invalid rows at once.\n"
    "--watch follows the sending until the batch is completed (exit 0) or cancelled\n"
    "or failed (exit 1). report lists every invalid row (row, column, reason); export\n"
    "downloads the batch's results and never overwrites FILE without --force.\n"
    "pause holds a processing batch's queued messages (what is in flight finishes);\n"
    "resume sends them again. The reason is recorded with who did it and when.\n"
    "Times are RFC 3339 (2026-01-15T10:00:00Z).\n\n"
    "  --url URL   gateway base URL (default $HERALD_URL or " CLI_DEFAULT_URL ")\n"
    "  --key KEY   API key (default $HERALD_API_KEY)\n"
    "  --json      print the API's JSON response as is\n\n"
    "Exit codes: 0 ok, 1 API error (or a watched batch not completed), 2 usage,\n"
    "3 server unreachable.\n";

/* ---------------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------------- */

static int busage(const char *sub, const char *fmt, const char *x)
{
	fprintf(stderr, "herald batch %s: ", sub);
	fprintf(stderr, fmt, x);
	fprintf(stderr, "\n\n%s", usage_batch);
	return CLI_EUSAGE;
}

/* s with control characters (escape codes included) shown as '?': text
 * from the server (a batch name, a cell) never drives the terminal. */
static const char *clean(char *buf, size_t size, const char *s)
{
	size_t i = 0;
	for (; s && s[i] && i + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	buf[i] = '\0';
	return buf;
}

static long long jint(json_t *j, const char *k1, const char *k2)
{
	json_t *x = json_object_get(j, k1);
	if (k2)
		x = json_object_get(x, k2);
	return (long long)json_integer_value(x);
}

/* Appends s to a path, percent-encoding all but unreserved characters (an
 * id comes from the user and goes into the URL path). */
static bool path_add(char *out, size_t size, const char *s, bool encode)
{
	size_t l = strlen(out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		bool plain = !encode || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		             (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
		             ch == '~';
		int n = plain ? snprintf(out + l, size - l, "%c", ch)
		              : snprintf(out + l, size - l, "%%%02X", ch);
		if (n < 0 || (size_t)n >= size - l)
			return false;
		l += (size_t)n;
	}
	return true;
}

/* "/v1/batches/{id}{tail}" in out. */
static bool batch_path(char *out, size_t size, const char *id, const char *tail)
{
	snprintf(out, size, "/v1/batches/");
	return path_add(out, size, id, true) && path_add(out, size, tail, false);
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps s seconds (whole), resuming after signals that do not end us. */
static void sleep_s(time_t s)
{
	struct timespec ts = {.tv_sec = s}, rem;
	while (nanosleep(&ts, &rem) != 0 && errno == EINTR)
		ts = rem;
}

static void human_bytes(char *out, size_t size, double n)
{
	if (n < 1024)
		snprintf(out, size, "%.0f B", n);
	else if (n < 1024 * 1024)
		snprintf(out, size, "%.1f KB", n / 1024);
	else
		snprintf(out, size, "%.1f MB", n / (1024 * 1024));
}

/* A 30-column bar of done/total on stderr, redrawn in place. */
static void draw_bar(double done, double total, const char *tail)
{
	int w = 30, fill = total > 0 ? (int)(done / total * w) : 0;
	if (fill > w)
		fill = w;
	fputs("\r\033[K[", stderr);
	for (int i = 0; i < w; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %3.0f%%  %s", total > 0 ? done / total * 100 : 0.0, tail);
	fflush(stderr);
}

/* ---------------------------------------------------------------------------
 * Options.
 * ------------------------------------------------------------------------- */

static int batch_parse(int argc, char **argv, const char *sub, struct batch_args *a)
{
	memset(a, 0, sizeof *a);
	a->c.url = getenv("HERALD_URL");
	a->c.key = getenv("HERALD_API_KEY");
	a->tty = isatty(STDERR_FILENO) == 1;
	optind = 0; /* glibc: full re-initialisation, so the CLI can run twice */
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, ":o:", batch_options, NULL)) != -1) {
		if (o == ':') {
			const char *w = argv[optind - 1];
			fprintf(stderr, "herald batch %s: %s needs a value\n", sub,
			        strcmp(w, "-o") ? w : "-o");
			return CLI_EUSAGE;
		}
		if (o == 'o')
			o = BO(B_OUTPUT);
		if (o < BO(0) || o >= BO(B__COUNT)) {
			fprintf(stderr, "herald batch %s: unknown option '%s'\n", sub,
			        argv[optind - 1]);
			return CLI_EUSAGE;
		}
		enum bopt b = (enum bopt)(o - BO(0));
		a->given |= BIT(b);
		a->v[b] = optarg ? optarg : "";
	}
	for (; optind < argc; optind++) {
		if (a->npositional == 2)
			return busage(sub, "too many arguments (from '%s')", argv[optind]);
		a->positional[a->npositional++] = argv[optind];
	}
	a->c.json = has(a, B_JSON);
	if (has(a, B_URL))
		a->c.url = a->v[B_URL];
	if (has(a, B_KEY))
		a->c.key = a->v[B_KEY];
	if (!a->c.url || !*a->c.url)
		a->c.url = CLI_DEFAULT_URL;
	return 0;
}

/* Refuses the first option given that sub does not take, naming it. */
static int batch_allow(const struct batch_args *a, const char *sub, unsigned allowed)
{
	for (int i = 0; i < B__COUNT; i++)
		if (has(a, (enum bopt)i) && !(allowed & BIT(i))) {
			char what[64];
			snprintf(what, sizeof what, "%s does not go with '%s'", bopt_name[i], sub);
			return busage(sub, "%s", what);
		}
	return 0;
}

static int batch_need_key(const struct batch_args *a)
{
	if (a->c.key && *a->c.key)
		return 0;
	fprintf(stderr, "herald: no API key: set HERALD_API_KEY or pass --key\n");
	return CLI_EUSAGE;
}

/* ---------------------------------------------------------------------------
 * Printing a batch.
 * ------------------------------------------------------------------------- */

/* "delivered 3, failed 1" (non-zero counts) into out; "none" if all zero. */
static void status_counts(json_t *b, char *out, size_t size)
{
	json_t *m = json_object_get(b, "messages");
	size_t l = 0;
	out[0] = '\0';
	for (int i = 0; i < MSG__COUNT; i++) {
		const char *name = msg_status_name((enum msg_status)i);
		long long n = (long long)json_integer_value(json_object_get(m, name));
		if (!n)
			continue;
		int k = snprintf(out + l, size - l, "%s%s %lld", l ? ", " : "", name, n);
		if (k < 0 || (size_t)k >= size - l)
			break;
		l += (size_t)k;
	}
	if (!l)
		snprintf(out, size, "none yet");
}

static void print_rows(json_t *b)
{
	printf("rows        %lld total, %lld valid, %lld invalid, %lld duplicates\n",
	       jint(b, "rows", "total"), jint(b, "rows", "valid"), jint(b, "rows", "invalid"),
	       jint(b, "rows", "duplicates"));
}

/* The inline invalid rows of an upload's answer. */
static void print_errors(json_t *errs)
{
	size_t i;
	json_t *e;
	json_array_foreach(errs, i, e) {
		char col[128], why[512];
		printf("  row %lld, column %s: %s\n", (long long)json_integer_value(json_object_get(e, "row")),
		       clean(col, sizeof col, jstr(e, "column", "?")),
		       clean(why, sizeof why, jstr(e, "reason", "")));
	}
}

static void print_summary(json_t *b)
{
	char s1[256], s2[256], counts[512];
	printf("id          %s\n", clean(s1, sizeof s1, jstr(b, "id", "")));
	printf("name        %s\n", clean(s1, sizeof s1, jstr(b, "name", "")));
	printf("status      %s\n", clean(s1, sizeof s1, jstr(b, "status", "")));
	printf("channel     %s (account %s)\n", clean(s1, sizeof s1, jstr(b, "channel", "")),
	       clean(s2, sizeof s2, jstr(b, "account", "")));
	json_t *t = json_object_get(b, "template");
	if (json_is_object(t))
		printf("template    %s (%s)\n", clean(s1, sizeof s1, jstr(t, "name", "")),
		       clean(s2, sizeof s2, jstr(t, "language", "")));
	if (jstr(b, "unit", NULL))
		printf("unit        %s\n", clean(s1, sizeof s1, jstr(b, "unit", "")));
	if (jstr(b, "schedule_at", NULL))
		printf("schedule    %s\n", clean(s1, sizeof s1, jstr(b, "schedule_at", "")));
	print_rows(b);
	json_t *p = json_object_get(b, "progress");
	printf("progress    %lld of %lld settled, %lld made, %.1f/s", jint(p, "settled", NULL),
	       jint(b, "rows", "valid"), jint(p, "made", NULL),
	       json_number_value(json_object_get(p, "per_second")));
	if (json_is_integer(json_object_get(p, "eta_seconds")))
		printf(", about %llds left", jint(p, "eta_seconds", NULL));
	printf("\n");
	status_counts(b, counts, sizeof counts);
	printf("messages    %s\n", counts);
	json_t *times = json_object_get(b, "times");
	static const char *const tk[][2] = {
	    {"created_at", "created"},     {"validated_at", "validated"}, {"started_at", "started"},
	    {"completed_at", "completed"}, {"cancelled_at", "cancelled"}, {"failed_at", "failed"}};
	for (size_t i = 0; i < sizeof tk / sizeof *tk; i++)
		if (jstr(times, tk[i][0], NULL))
			printf("%-11s %s\n", tk[i][1], clean(s1, sizeof s1, jstr(times, tk[i][0], "")));
	if (jstr(b, "error", NULL))
		printf("error       %s\n", clean(s1, sizeof s1, jstr(b, "error", "")));
	if (jstr(b, "retry_of", NULL))
		printf("retry of    %s\n", clean(s1, sizeof s1, jstr(b, "retry_of", "")));
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(b, "retries"), i, r)
		printf("retried as  %s\n", clean(s1, sizeof s1, json_string_value(r)));
}

/* ---------------------------------------------------------------------------
 * --watch: GET /v1/batches/{id} once a second until a final status.
 * ------------------------------------------------------------------------- */

static bool final_status(const char *s)
{
	return !strcmp(s, "completed") || !strcmp(s, "cancelled") || !strcmp(s, "failed");
}

/* The final line, on stdout: "batch ID completed: 2 of 2 settled (delivered 2)". */
static void print_final(json_t *b)
{
	char id[64], st[32], counts[512];
	status_counts(b, counts, sizeof counts);
	printf("batch %s %s: %lld of %lld settled (%s)\n", clean(id, sizeof id, jstr(b, "id", "")),
	       clean(st, sizeof st, jstr(b, "status", "")),
	       jint(json_object_get(b, "progress"), "settled", NULL), jint(b, "rows", "valid"),
	       counts);
	char why[512];
	if (jstr(b, "error", NULL))
		printf("  error: %s\n", clean(why, sizeof why, jstr(b, "error", "")));
}

/*
 * Follows a batch until it is completed, cancelled or failed: 0 for
 * completed, 1 otherwise (3 when the server goes away). On a terminal the
 * progress is a bar redrawn on stderr; otherwise one line on stdout each
 * time a count or the status changes (the rate alone moves every second
 * and would make a line a second).
 */
static int batch_watch(const struct batch_args *a, const char *id)
{
	char path[512];
	if (!batch_path(path, sizeof path, id, ""))
		return busage("upload", "%s", "the batch id is too long");
	struct cli quiet = a->c;
	quiet.json = false;
	char last[1024] = "";
	bool drawn = false;
	for (;;) {
		struct cli_resp r;
		int rc = cli_http(&quiet, "GET", path, NULL, NULL, &r);
		if (rc) {
			if (drawn)
				fputc('\n', stderr);
			return rc;
		}
		json_t *b = cli_result(&quiet, &r, &rc);
		free(r.body);
		if (!b) {
			if (drawn)
				fputc('\n', stderr);
			return rc;
		}
		const char *st = jstr(b, "status", "?");
		json_t *p = json_object_get(b, "progress");
		long long valid = jint(b, "rows", "valid"), settled = jint(p, "settled", NULL),
		          made = jint(p, "made", NULL);
		char counts[512], state[1024], stc[32];
		status_counts(b, counts, sizeof counts);
		snprintf(state, sizeof state, "%s  settled %lld/%lld  made %lld  (%s)",
		         clean(stc, sizeof stc, st), settled, valid, made, counts);
		char rate[64] = "";
		double ps = json_number_value(json_object_get(p, "per_second"));
		if (ps > 0) {
			int k = snprintf(rate, sizeof rate, "  %.1f/s", ps);
			if (json_is_integer(json_object_get(p, "eta_seconds")) && k > 0)
				snprintf(rate + k, sizeof rate - (size_t)k, "  eta %llds",
				         jint(p, "eta_seconds", NULL));
		}
		bool done = final_status(st);
		if (a->tty && !a->c.json) {
			char tail[1200];
			snprintf(tail, sizeof tail, "%s%s", state, rate);
			draw_bar((double)settled, (double)valid, tail);
			drawn = true;
		} else if (!a->c.json && strcmp(state, last) != 0 && !done) {
			printf("%s%s\n", state, rate);
			fflush(stdout);
		}
		snprintf(last, sizeof last, "%s", state);
		if (done) {
			if (drawn)
				fputc('\n', stderr);
			if (a->c.json) {
				char *s = json_dumps(b, JSON_COMPACT);
				if (s)
					puts(s);
				free(s);
			} else {
				print_final(b);
			}
			rc = strcmp(st, "completed") == 0 ? CLI_OK : CLI_EAPI;
			json_decref(b);
			return rc;
		}
		json_decref(b);
		sleep_s(1);
	}
}

/* ---------------------------------------------------------------------------
 * upload
 * ------------------------------------------------------------------------- */

struct upload_ctx {
	const struct batch_args *a;
	const char *file;
	curl_mime *mime;
	double last_draw;
	int quarter; /* plain lines: the last quarter reported */
	bool sent;   /* every byte is out: the server is checking the rows */
	bool drawn;
};

/* Upload progress: a bar on a terminal, a line per quarter otherwise, and
 * one line when the server has the whole file and checks it. */
static int upload_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                           curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow;
	struct upload_ctx *u = ud;
	if (ultotal <= 0 || u->sent)
		return 0;
	char done[32], total[32];
	human_bytes(done, sizeof done, (double)ulnow);
	human_bytes(total, sizeof total, (double)ultotal);
	bool all = ulnow >= ultotal;
	if (u->a->tty) {
		double now = mono_now();
		if (all || now - u->last_draw >= 0.1) {
			char tail[96];
			snprintf(tail, sizeof tail, "%s of %s", done, total);
			draw_bar((double)ulnow, (double)ultotal, tail);
			u->last_draw = now;
			u->drawn = true;
		}
		if (all) {
			fputs("\nuploaded; the server is checking the rows\n", stderr);
			u->drawn = false;
		}
	} else {
		int q = (int)(ulnow * 4 / ultotal);
		if (q > u->quarter && !all) {
			fprintf(stderr, "uploaded %d%% (%s of %s)\n", q * 25, done, total);
			u->quarter = q;
		}
		if (all)
			fprintf(stderr, "uploaded %s; the server is checking the rows\n", total);
	}
	u->sent = all;
	return 0;
}

static CURLcode mime_field(curl_mime *m, const char *name, const char *value)
{
	if (!value)
		return CURLE_OK;
	curl_mimepart *p = curl_mime_addpart(m);
	if (!p)
		return CURLE_OUT_OF_MEMORY;
	CURLcode rc = curl_mime_name(p, name);
	return rc ? rc : curl_mime_data(p, value, CURL_ZERO_TERMINATED);
}

static CURLcode upload_setup(CURL *h, void *ud)
{
	struct upload_ctx *u = ud;
	const struct batch_args *a = u->a;
	u->mime = curl_mime_init(h);
	if (!u->mime)
		return CURLE_OUT_OF_MEMORY;
	curl_mimepart *p = curl_mime_addpart(u->mime);
	const char *base = strrchr(u->file, '/');
	base = base ? base + 1 : u->file;
	/* The file goes from disk as libcurl reads it: never in memory. */
	CURLcode rc = p ? curl_mime_name(p, "file") : CURLE_OUT_OF_MEMORY;
	if (!rc)
		rc = curl_mime_filedata(p, u->file);
	if (!rc)
		rc = curl_mime_filename(p, base);
	const struct {
		const char *name;
		enum bopt o;
	} fields[] = {
	    {"name", B_NAME},         {"channel", B_CHANNEL},
	    {"account", B_ACCOUNT},   {"text", B_TEXT},
	    {"template_name", B_TEMPLATE}, {"template_language", B_LANGUAGE},
	    {"recipient_column", B_RCOL}, {"params", B_PARAMS},
	    {"default_region", B_REGION}, {"unit", B_UNIT},
	    {"schedule_at", B_SCHEDULE}, {"start", B_START},
	    {"sheet", B_SHEET},       {"separator", B_SEP},
	};
	for (size_t i = 0; !rc && i < sizeof fields / sizeof *fields; i++)
		rc = mime_field(u->mime, fields[i].name, a->v[fields[i].o]);
	if (!rc && has(a, B_DRY))
		rc = mime_field(u->mime, "dry_run", "true");
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_MIMEPOST, u->mime);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, upload_progress);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_XFERINFODATA, u);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	/* A big file takes long to send and the server checks every row
	 * before it answers: no overall limit, but a stalled transfer ends. */
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 600L);
	return rc;
}

static int upload_check(const struct batch_args *a)
{
	const char *start = a->v[B_START], *sep = a->v[B_SEP], *region = a->v[B_REGION];
	if (a->npositional != 1)
		return busage("upload", "%s", "give the file to upload (.xlsx or .csv)");
	if (!has(a, B_NAME) || !*a->v[B_NAME])
		return busage("upload", "%s", "--name is required");
	if (!has(a, B_CHANNEL) || !*a->v[B_CHANNEL])
		return busage("upload", "%s", "--channel is required");
	if (has(a, B_TEXT) == has(a, B_TEMPLATE))
		return busage("upload", "%s", "give exactly one of --text or --template");
	if (has(a, B_TEMPLATE) && !has(a, B_LANGUAGE))
		return busage("upload", "%s", "--template needs --language");
	if (has(a, B_LANGUAGE) && !has(a, B_TEMPLATE))
		return busage("upload", "%s", "--language goes with --template");
	if (start && strcmp(start, "auto") && strcmp(start, "true") && strcmp(start, "false"))
		return busage("upload", "--start needs auto, true or false, got '%s'", start);
	if (sep && strlen(sep) != 1)
		return busage("upload", "--separator needs one character, got '%s'", sep);
	if (region && (strlen(region) != 2 || !((region[0] | 0x20) >= 'a' && (region[0] | 0x20) <= 'z') ||
	               !((region[1] | 0x20) >= 'a' && (region[1] | 0x20) <= 'z')))
		return busage("upload", "--region needs a two-letter region such as GB, got '%s'",
		              region);
	if (has(a, B_WATCH) && has(a, B_DRY))
		return busage("upload", "%s", "--watch does not go with --dry-run (nothing is created)");
	if (has(a, B_WATCH) && start && !strcmp(start, "false"))
		return busage("upload", "%s", "--watch does not go with --start false (nothing is sent)");
	/* The file is checked here so a typo is a usage error, not a transfer
	 * that fails half-way. */
	const char *f = a->positional[0];
	int fd = open(f, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		int e = fd < 0 ? errno : EISDIR;
		if (fd >= 0)
			close(fd);
		char what[600];
		snprintf(what, sizeof what, "cannot read '%s': %s", f, strerror(e));
		return busage("upload", "%s", what);
	}
	close(fd);
	return 0;
}

static int batch_upload(struct batch_args *a)
{
	int rc;
	struct upload_ctx u = {.a = a, .file = a->positional[0]};
	struct cli_resp r;
	rc = cli_http_x(&a->c, "POST", "/v1/batches", NULL, NULL, upload_setup, &u, &r);
	if (u.drawn)
		fputc('\n', stderr);
	curl_mime_free(u.mime);
	if (rc == CLI_EAPI)
		fprintf(stderr, "herald batch upload: cannot read '%s' while sending it\n", u.file);
	if (rc)
		return rc;
	json_t *b = cli_result(&a->c, &r, &rc);
	free(r.body);
	if (!b)
		return rc;
	bool dry = json_is_true(json_object_get(b, "dry_run"));
	const char *st = jstr(b, "status", "?");
	char id[64], name[256], stc[32];
	clean(id, sizeof id, jstr(b, "id", ""));
	if (!a->c.json) {
		if (dry)
			printf("dry run: nothing was created\n");
		else
			printf("batch %s \"%s\" %s\n", id, clean(name, sizeof name, jstr(b, "name", "")),
			       clean(stc, sizeof stc, st));
		print_rows(b);
		print_errors(json_object_get(b, "errors"));
		if (json_is_true(json_object_get(b, "errors_truncated")))
			printf("  ... the first %zu invalid rows; all of them: herald batch report %s\n",
			       json_array_size(json_object_get(b, "errors")), dry ? "ID" : id);
		if (!dry && !strcmp(st, "validated"))
			printf("not started%s: start it with 'herald batch start %s'\n",
			       jint(b, "rows", "invalid") ? " (it has invalid rows)" : "", id);
	}
	fflush(stdout);
	if (has(a, B_WATCH) && !dry) {
		if (!strcmp(st, "validated") || !strcmp(st, "pending")) {
			fprintf(stderr, "herald batch upload: not watching: batch %s was not started\n",
			        id);
			rc = CLI_EAPI;
		} else {
			rc = batch_watch(a, id);
		}
	}
	json_decref(b);
	return rc;
}

/* ---------------------------------------------------------------------------
 * list, status, start, cancel, retry, discard
 * ------------------------------------------------------------------------- */

static int batch_list(struct batch_args *a)
{
	static const struct {
		const char *name;
		enum bopt o;
	} q[] = {{"status", B_STATUS}, {"unit", B_UNIT},   {"name", B_NAME},     {"since", B_SINCE},
	         {"until", B_UNTIL},   {"limit", B_LIMIT}, {"cursor", B_CURSOR}};
	char path[2048] = "/v1/batches";
	char sep = '?';
	for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
		if (!has(a, q[i].o))
			continue;
		size_t l = strlen(path);
		snprintf(path + l, sizeof path - l, "%c%s=", sep, q[i].name);
		if (!path_add(path, sizeof path, a->v[q[i].o], true))
			return busage("list", "%s", "the filters are too long");
		sep = '&';
	}
	struct cli_resp r;
	int rc = cli_http(&a->c, "GET", path, NULL, NULL, &r);
	if (rc)
		return rc;
	json_t *j = cli_result(&a->c, &r, &rc);
	free(r.body);
	if (j && !a->c.json) {
		json_t *data = json_object_get(j, "data");
		printf("%-26s  %-24s  %-10s  %8s  %8s  %s\n", "ID", "NAME", "STATUS", "VALID",
		       "SETTLED", "CREATED");
		size_t i;
		json_t *b;
		json_array_foreach(data, i, b) {
			char s1[64], s2[32], s3[64];
			printf("%-26s  ", clean(s1, sizeof s1, jstr(b, "id", "")));
			print_cell(clean(s3, sizeof s3, jstr(b, "name", "")), 24);
			int w = (int)strlen(s3);
			printf("%*s  %-10s  %8lld  %8lld  %s\n", w < 24 ? 24 - w : 0, "",
			       clean(s2, sizeof s2, jstr(b, "status", "")), jint(b, "rows", "valid"),
			       jint(json_object_get(b, "progress"), "settled", NULL),
			       clean(s1, sizeof s1, jstr(json_object_get(b, "times"), "created_at", "")));
		}
		size_t n = json_array_size(data);
		printf("%zu batch%s", n, n == 1 ? "" : "es");
		char cur[64];
		if (jstr(j, "next_cursor", NULL))
			printf("; next page: --cursor %s", clean(cur, sizeof cur, jstr(j, "next_cursor", "")));
		printf("\n");
	}
	json_decref(j);
	return rc;
}

/* One request about one batch (path tail, method, JSON body); the parsed
 * answer (caller decrefs) or NULL with *rc set. */
static json_t *batch_call(const struct batch_args *a, const char *sub, const char *method,
                          const char *tail, const char *body, int *rc)
{
	char path[512];
	if (!batch_path(path, sizeof path, a->positional[0], tail)) {
		*rc = busage(sub, "%s", "the batch id is too long");
		return NULL;
	}
	struct cli_resp r;
	if ((*rc = cli_http(&a->c, method, path, body, NULL, &r)))
		return NULL;
	json_t *j = cli_result(&a->c, &r, rc);
	free(r.body);
	return j;
}

static int batch_status(struct batch_args *a)
{
	int rc;
	json_t *b = batch_call(a, "status", "GET", "", NULL, &rc);
	if (b && !a->c.json)
		print_summary(b);
	json_decref(b);
	return rc;
}

static int batch_start(struct batch_args *a)
{
	int rc;
	json_t *b = batch_call(a, "start", "POST", "/start", NULL, &rc);
	char id[64], st[32];
	if (b && !a->c.json)
		printf("batch %s %s\n", clean(id, sizeof id, jstr(b, "id", "")),
		       clean(st, sizeof st, jstr(b, "status", "")));
	fflush(stdout);
	if (b && has(a, B_WATCH))
		rc = batch_watch(a, a->positional[0]);
	json_decref(b);
	return rc;
}

/* {"reason": "..."} of --reason, or NULL without one (caller frees). */
static char *reason_json(const struct batch_args *a)
{
	if (!has(a, B_REASON))
		return NULL;
	json_t *o = json_pack("{s:s}", "reason", a->v[B_REASON]);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

static int pause_check(const struct batch_args *a)
{
	if (!has(a, B_REASON) || !a->v[B_REASON][0])
		return busage("pause", "%s", "--reason is required: say why the batch is paused");
	return 0;
}

static int batch_pause(struct batch_args *a)
{
	int rc;
	char *body = reason_json(a);
	if (!body) {
		fprintf(stderr, "herald batch pause: out of memory\n");
		return CLI_EAPI;
	}
	json_t *b = batch_call(a, "pause", "POST", "/pause", body, &rc);
	free(body);
	char id[64], st[32];
	if (b && !a->c.json) {
		json_t *m = json_object_get(b, "messages");
		long long held = jint(m, "queued", NULL);
		printf("batch %s %s: %lld queued message%s held\n",
		       clean(id, sizeof id, jstr(b, "id", "")),
		       clean(st, sizeof st, jstr(b, "status", "")), held, held == 1 ? "" : "s");
	}
	json_decref(b);
	return rc;
}

static int batch_resume(struct batch_args *a)
{
	int rc;
	json_t *b = batch_call(a, "resume", "POST", "/resume", NULL, &rc);
	char id[64], st[32];
	if (b && !a->c.json)
		printf("batch %s %s\n", clean(id, sizeof id, jstr(b, "id", "")),
		       clean(st, sizeof st, jstr(b, "status", "")));
	json_decref(b);
	return rc;
}

static int batch_cancel(struct batch_args *a)
{
	int rc;
	char *body = reason_json(a);
	if (has(a, B_REASON) && !body) {
		fprintf(stderr, "herald batch cancel: out of memory\n");
		return CLI_EAPI;
	}
	json_t *b = batch_call(a, "cancel", "POST", "/cancel", body, &rc);
	free(body);
	char id[64], st[32];
	if (b && !a->c.json) {
		long long n = jint(b, "stopped", NULL);
		printf("batch %s %s: %lld message%s stopped\n", clean(id, sizeof id, jstr(b, "id", "")),
		       clean(st, sizeof st, jstr(b, "status", "")), n, n == 1 ? "" : "s");
	}
	json_decref(b);
	return rc;
}

static int retry_check(const struct batch_args *a)
{
	const char *start = a->v[B_START];
	if (start && strcmp(start, "true") && strcmp(start, "false"))
		return busage("retry", "--start needs true or false, got '%s'", start);
	return 0;
}

static int batch_retry(struct batch_args *a)
{
	const char *start = a->v[B_START];
	json_t *body = json_object(), *sts = json_array();
	bool ok = body && sts && json_object_set(body, "statuses", sts) == 0;
	if (ok && start)
		ok = json_object_set_new(body, "start", json_boolean(!strcmp(start, "true"))) == 0;
	int rc = 0;
	const char *p = has(a, B_STATUSES) ? a->v[B_STATUSES] : "failed";
	while (ok && !rc) {
		size_t n = strcspn(p, ",");
		while (n && p[n - 1] == ' ')
			n--;
		if (n == 0 || json_array_size(sts) == BATCH_STATUSES_MAX)
			rc = busage("retry", "%s", n ? "too many --statuses"
			                              : "--statuses needs names such as failed,undelivered");
		else
			ok = json_array_append_new(sts, json_stringn(p, n)) == 0;
		p += strcspn(p, ",");
		if (!*p)
			break;
		p++;
		while (*p == ' ')
			p++;
	}
	char *s = ok && !rc ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(sts);
	json_decref(body);
	if (rc)
		return rc;
	if (!s) {
		fprintf(stderr, "herald: out of memory\n");
		return CLI_EAPI;
	}
	json_t *b = batch_call(a, "retry", "POST", "/retry", s, &rc);
	free(s);
	char id[64], st[32], old[64];
	if (b && !a->c.json)
		printf("batch %s %s: retry of %s, %lld rows\n", clean(id, sizeof id, jstr(b, "id", "")),
		       clean(st, sizeof st, jstr(b, "status", "")),
		       clean(old, sizeof old, a->positional[0]), jint(b, "rows", "total"));
	json_decref(b);
	return rc;
}

static int batch_discard(struct batch_args *a)
{
	char path[512];
	if (!batch_path(path, sizeof path, a->positional[0], ""))
		return busage("discard", "%s", "the batch id is too long");
	struct cli_resp r;
	int rc = cli_http(&a->c, "DELETE", path, NULL, NULL, &r);
	if (rc)
		return rc;
	if (r.status >= 200 && r.status < 300) {
		char id[64];
		if (!a->c.json)
			printf("batch %s discarded\n", clean(id, sizeof id, a->positional[0]));
	} else {
		rc = cli_api_error(&r);
	}
	free(r.body);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Downloads: report --csv to stdout, export to a file.
 * ------------------------------------------------------------------------- */

struct dl {
	CURL *h;
	FILE *f;
	struct cli_resp *r;
	long long bytes;
	int werr; /* errno of a failed write */
};

/* The body goes to the file only when the answer is a success; an error's
 * body is kept in memory (bounded) to be shown. */
static size_t dl_write(char *p, size_t sz, size_t n, void *ud)
{
	struct dl *d = ud;
	size_t l = sz * n;
	long st = 0;
	if (curl_easy_getinfo(d->h, CURLINFO_RESPONSE_CODE, &st) != CURLE_OK)
		st = 0;
	if (st < 200 || st >= 300)
		return d->r->len + l > BATCH_ERRBODY_MAX ? l : cli_on_body(p, sz, n, d->r);
	if (fwrite(p, 1, l, d->f) != l) {
		d->werr = errno ? errno : EIO;
		return 0;
	}
	d->bytes += (long long)l;
	return l;
}

static CURLcode dl_setup(CURL *h, void *ud)
{
	struct dl *d = ud;
	d->h = h;
	CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dl_write);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
	/* A big export takes a while: no overall limit, but a stall ends it. */
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	if (!rc)
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 600L);
	return rc;
}

/* GET path into f; 0 or an exit code after saying why. */
static int download(const struct batch_args *a, const char *path, FILE *f, long long *bytes,
                    const char *what)
{
	struct cli_resp r = {0};
	struct dl d = {.f = f, .r = &r};
	int rc = cli_http_x(&a->c, "GET", path, NULL, NULL, dl_setup, &d, &r);
	if (d.werr)
		fprintf(stderr, "herald: cannot write %s: %s\n", what, strerror(d.werr));
	if (!rc && (r.status < 200 || r.status >= 300))
		rc = cli_api_error(&r);
	free(r.body);
	*bytes = d.bytes;
	return rc ? rc : d.werr ? CLI_EAPI : CLI_OK;
}

static int batch_report(struct batch_args *a)
{
	char base[512];
	if (!batch_path(base, sizeof base, a->positional[0], "/errors"))
		return busage("report", "%s", "the batch id is too long");
	if (has(a, B_CSV)) {
		char path[600];
		long long n;
		snprintf(path, sizeof path, "%s?format=csv", base);
		int rc = download(a, path, stdout, &n, "the report to stdout");
		if (fflush(stdout) != 0 && !rc) {
			fprintf(stderr, "herald: cannot write the report to stdout: %s\n",
			        strerror(errno));
			rc = CLI_EAPI;
		}
		return rc;
	}
	/* Every page, in row order; all rows gathered first for --json so
	 * the output is one document. */
	struct cli quiet = a->c;
	quiet.json = false;
	json_t *all = a->c.json ? json_array() : NULL;
	if (a->c.json && !all)
		return CLI_EAPI;
	long long after = 0, count = 0;
	int rc = 0;
	if (!a->c.json)
		printf("%8s  %-20s  %s\n", "ROW", "COLUMN", "REASON");
	for (int page = 0; page < BATCH_REPORT_MAX_PAGES; page++) {
		char path[600];
		snprintf(path, sizeof path, "%s?limit=%d&after=%lld", base, BATCH_REPORT_PAGE, after);
		struct cli_resp r;
		if ((rc = cli_http(&quiet, "GET", path, NULL, NULL, &r)))
			break;
		json_t *j = cli_result(&quiet, &r, &rc);
		free(r.body);
		if (!j)
			break;
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(j, "data"), i, e) {
			count++;
			if (all) {
				json_array_append(all, e);
				continue;
			}
			char col[128], why[512];
			printf("%8lld  %-20s  %s\n", (long long)json_integer_value(json_object_get(e, "row")),
			       clean(col, sizeof col, jstr(e, "column", "")),
			       clean(why, sizeof why, jstr(e, "reason", "")));
		}
		json_t *next = json_object_get(j, "next_after");
		/* A next row not after this one would loop forever: stop. */
		bool more = json_is_integer(next) && json_integer_value(next) > after;
		if (more)
			after = (long long)json_integer_value(next);
		json_decref(j);
		if (!more)
			break;
	}
	if (!rc && all) {
		json_t *doc = json_pack("{s:O}", "data", all);
		char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		if (s)
			puts(s);
		else
			rc = CLI_EAPI;
		free(s);
	} else if (!rc) {
		printf("%lld invalid row%s\n", count, count == 1 ? "" : "s");
	}
	json_decref(all);
	return rc;
}

/*
 * export: the file is written under a temporary name beside FILE and moved
 * into place only when the download is complete, so FILE is never half
 * written; without --force an existing FILE is refused before asking the
 * server, and the final move refuses one that appeared meanwhile.
 */
static int export_check(const struct batch_args *a)
{
	const char *fmt = a->v[B_FORMAT], *out = a->v[B_OUTPUT];
	if (!fmt)
		return busage("export", "%s", "--format is required (xlsx or csv)");
	if (strcmp(fmt, "xlsx") && strcmp(fmt, "csv"))
		return busage("export", "--format needs xlsx or csv, got '%s'", fmt);
	if (!out || !*out)
		return busage("export", "%s", "-o FILE is required");
	struct stat sb;
	if (!has(a, B_FORCE) && lstat(out, &sb) == 0) {
		fprintf(stderr, "herald batch export: '%s' exists: pass --force to overwrite it\n",
		        out);
		return CLI_EUSAGE;
	}
	return 0;
}

static int batch_export(struct batch_args *a)
{
	const char *fmt = a->v[B_FORMAT], *out = a->v[B_OUTPUT];
	bool force = has(a, B_FORCE);
	char path[512], tail[32];
	snprintf(tail, sizeof tail, "/export.%s", fmt);
	if (!batch_path(path, sizeof path, a->positional[0], tail))
		return busage("export", "%s", "the batch id is too long");
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.XXXXXX", out) < 0) {
		fprintf(stderr, "herald: out of memory\n");
		return CLI_EAPI;
	}
	int fd = mkstemp(tmp);
	FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!f) {
		fprintf(stderr, "herald batch export: cannot create a file beside '%s': %s\n", out,
		        strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(tmp);
		return CLI_EAPI;
	}
	long long bytes = 0;
	int rc = download(a, path, f, &bytes, out);
	if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
		fprintf(stderr, "herald batch export: cannot write '%s': %s\n", out, strerror(errno));
		rc = CLI_EAPI;
	}
	if (fclose(f) != 0 && !rc) {
		fprintf(stderr, "herald batch export: cannot write '%s': %s\n", out, strerror(errno));
		rc = CLI_EAPI;
	}
	if (!rc) {
		/* --force replaces atomically; otherwise link() fails on a file
		 * that appeared since the check instead of replacing it. */
		int moved = force ? rename(tmp, out) : link(tmp, out);
		if (moved != 0) {
			fprintf(stderr, "herald batch export: cannot create '%s': %s\n", out,
			        strerror(errno));
			rc = errno == EEXIST ? CLI_EUSAGE : CLI_EAPI;
		}
	}
	if (rc || !force)
		unlink(tmp);
	free(tmp);
	if (!rc && !a->c.json)
		printf("wrote %s (%lld bytes)\n", out, bytes);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Dispatch.
 * ------------------------------------------------------------------------- */

static const struct {
	const char *name;
	int (*fn)(struct batch_args *);
	int (*check)(const struct batch_args *); /* usage, before the key is asked for */
	unsigned allowed;
} batch_cmds[] = {
    {"upload", batch_upload, upload_check,
     BIT(B_NAME) | BIT(B_CHANNEL) | BIT(B_ACCOUNT) | BIT(B_TEXT) | BIT(B_TEMPLATE) |
         BIT(B_LANGUAGE) | BIT(B_RCOL) | BIT(B_PARAMS) | BIT(B_REGION) | BIT(B_UNIT) |
         BIT(B_SCHEDULE) | BIT(B_DRY) | BIT(B_START) | BIT(B_SHEET) | BIT(B_SEP) | BIT(B_WATCH)},
    {"list", batch_list, NULL,
     BIT(B_STATUS) | BIT(B_UNIT) | BIT(B_NAME) | BIT(B_SINCE) | BIT(B_UNTIL) | BIT(B_LIMIT) |
         BIT(B_CURSOR)},
    {"status", batch_status, NULL, 0},
    {"start", batch_start, NULL, BIT(B_WATCH)},
    {"cancel", batch_cancel, NULL, BIT(B_REASON)},
    {"pause", batch_pause, pause_check, BIT(B_REASON)},
    {"resume", batch_resume, NULL, 0},
    {"retry", batch_retry, retry_check, BIT(B_STATUSES) | BIT(B_START)},
    {"discard", batch_discard, NULL, 0},
    {"report", batch_report, NULL, BIT(B_CSV)},
    {"export", batch_export, export_check, BIT(B_FORMAT) | BIT(B_OUTPUT) | BIT(B_FORCE)},
};

int cli_batch(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_batch, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EUSAGE : CLI_OK;
	}
	const char *sub = argv[1];
	size_t k = 0;
	while (k < sizeof batch_cmds / sizeof *batch_cmds && strcmp(batch_cmds[k].name, sub))
		k++;
	if (k == sizeof batch_cmds / sizeof *batch_cmds) {
		char s[64];
		fprintf(stderr, "herald batch: unknown subcommand '%s'\n\n%s", clean(s, sizeof s, sub),
		        usage_batch);
		return CLI_EUSAGE;
	}
	struct batch_args a;
	int rc = batch_parse(argc - 1, argv + 1, sub, &a);
	if (rc)
		return rc;
	if (has(&a, B_HELP)) {
		fputs(usage_batch, stdout);
		return CLI_OK;
	}
	if ((rc = batch_allow(&a, sub, batch_cmds[k].allowed | B_COMMON)))
		return rc;
	/* Every command but list and upload takes exactly one batch id. */
	bool one_id = strcmp(sub, "upload") && strcmp(sub, "list");
	if (!strcmp(sub, "list") && a.npositional)
		return busage(sub, "unexpected argument '%s'", a.positional[0]);
	if (one_id && a.npositional != 1)
		return busage(sub, "%s", a.npositional ? "too many arguments" : "give the batch id");
	if (batch_cmds[k].check && (rc = batch_cmds[k].check(&a)))
		return rc;
	if ((rc = batch_need_key(&a)))
		return rc;
	return batch_cmds[k].fn(&a);
}
