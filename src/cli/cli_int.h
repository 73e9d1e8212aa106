/*
 * cli_int.h - what the CLI's commands share: the HTTP helpers over libcurl
 * (cli.c) and the exit codes. `herald batch` (batch.c) uses them.
 */
#ifndef HR_CLI_INT_H
#define HR_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

/* Exit codes: scripts rely on them (see the usage texts). */
enum { CLI_OK = 0, CLI_EAPI = 1, CLI_EUSAGE = 2, CLI_EUNREACHABLE = 3 };

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"

struct cli {
	const char *url;
	const char *key;
	bool json;
};

/* A response: status and the body collected in memory (caller frees body). */
struct cli_resp {
	long status;
	char *body;
	size_t len;
	bool replayed;
};

/* Extra options for one request, set after the defaults (so it may replace
 * them). Returns the first setopt that failed, or CURLE_OK. */
typedef CURLcode (*cli_setup_fn)(CURL *h, void *ud);

/* Sends one request. Returns 0 with *out filled (any HTTP status), or
 * CLI_EUNREACHABLE after printing why the server could not be reached (or
 * the request could not be set up), or CLI_EAPI when a local file could not
 * be read or written (CURLE_READ_ERROR/CURLE_WRITE_ERROR from a callback of
 * setup's, which says why). body is JSON or NULL. */
int cli_http(const struct cli *c, const char *method, const char *path, const char *body,
             const char *idem_key, struct cli_resp *out);
int cli_http_x(const struct cli *c, const char *method, const char *path, const char *body,
               const char *idem_key, cli_setup_fn setup, void *ud, struct cli_resp *out);
/* The default write callback: appends to the struct cli_resp in ud. */
size_t cli_on_body(char *p, size_t sz, size_t n, void *ud);
/* Prints an API error in one line; returns the exit code. */
int cli_api_error(const struct cli_resp *r);
/* Common tail of every command: raw JSON on --json, errors, parsing. Returns
 * the parsed body (caller decrefs) or NULL with *code set. */
json_t *cli_result(const struct cli *c, struct cli_resp *r, int *code);
/* j[key] as a string, or def. */
const char *jstr(json_t *j, const char *key, const char *def);
/* Prints at most `width` bytes of s without cutting a UTF-8 sequence, with
 * newlines shown as spaces so a table row stays one line. */
void print_cell(const char *s, int width);

/* `herald batch ...` (batch.c); argv[0] is "batch". */
int cli_batch(int argc, char **argv);
/* `herald tenants|units|keys|audit ...` (admin.c); argv[0] is the command. */
int cli_admin(int argc, char **argv);
/* `herald plugins list` (plugins.c); argv[0] is "plugins". */
int cli_plugins(int argc, char **argv);

#endif
