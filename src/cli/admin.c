/*
 * admin.c - `herald tenants|units|keys|audit|templates`: the admin API (and
 * the tenant's templates) from the
 * command line (src/api/admin.c says what each route does and who may
 * call it). Operators pass an operator key; a tenant's admin its own
 * `admin` key. Like every CLI command it talks to the API only.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

static const char usage_admin[] =
    "usage:\n"
    "  herald tenants list | create ID [--name N] | show ID | disable ID | enable ID\n"
    "  herald units   list TENANT | create TENANT ID [--name N] | disable TENANT ID | enable "
    "TENANT ID\n"
    "  herald keys    list TENANT | revoke TENANT PREFIX\n"
    "  herald keys    create TENANT --scope S [--scope S]... [--unit U] [--label L] [--expires "
    "RFC3339]\n"
    "  herald audit   [--tenant T] [--limit N] [--cursor C]\n"
    "  herald templates list | add CHANNEL NAME LANGUAGE BODY | rm CHANNEL NAME LANGUAGE\n"
    "options: --url URL (default $HERALD_URL), --key KEY (default $HERALD_API_KEY), --json\n"
    "scopes: messages:send messages:read campaigns:write campaigns:read templates:write\n"
    "        accounts:write suppressions:write metrics:read admin, or * for all\n"
    "A new key is printed once: store it now, Herald keeps only its hash.\n"
    "exit codes: 0 ok, 1 API error, 2 usage, 3 server unreachable\n";

struct admin_args {
	struct cli c;
	const char *name, *unit, *label, *expires, *tenant, *limit, *cursor;
	json_t *scopes;
	int npos;
	const char *pos[5];
};

static int parse(int argc, char **argv, struct admin_args *a)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
	                                     {"key", required_argument, NULL, 'k'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"name", required_argument, NULL, 'n'},
	                                     {"scope", required_argument, NULL, 's'},
	                                     {"unit", required_argument, NULL, 'U'},
	                                     {"label", required_argument, NULL, 'l'},
	                                     {"expires", required_argument, NULL, 'e'},
	                                     {"tenant", required_argument, NULL, 't'},
	                                     {"limit", required_argument, NULL, 'L'},
	                                     {"cursor", required_argument, NULL, 'c'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	memset(a, 0, sizeof *a);
	a->c.url = getenv("HERALD_URL");
	a->c.key = getenv("HERALD_API_KEY");
	a->scopes = json_array();
	if (!a->scopes)
		return CLI_EAPI;
	optind = 1;
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case 'u':
			a->c.url = optarg;
			break;
		case 'k':
			a->c.key = optarg;
			break;
		case 'j':
			a->c.json = true;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 's':
			json_array_append_new(a->scopes, json_string(optarg));
			break;
		case 'U':
			a->unit = optarg;
			break;
		case 'l':
			a->label = optarg;
			break;
		case 'e':
			a->expires = optarg;
			break;
		case 't':
			a->tenant = optarg;
			break;
		case 'L':
			a->limit = optarg;
			break;
		case 'c':
			a->cursor = optarg;
			break;
		case 'h':
			fputs(usage_admin, stdout);
			return -1;
		default:
			fprintf(stderr, "herald: bad option '%s'\n\n%s", argv[optind - 1],
			        usage_admin);
			return CLI_EUSAGE;
		}
	}
	for (; optind < argc; optind++) {
		if (a->npos == 5) {
			fprintf(stderr, "herald: too many arguments\n\n%s", usage_admin);
			return CLI_EUSAGE;
		}
		a->pos[a->npos++] = argv[optind];
	}
	if (!a->c.url)
		a->c.url = CLI_DEFAULT_URL;
	if (!a->c.key) {
		fprintf(stderr, "herald: no API key: set HERALD_API_KEY or pass --key\n");
		return CLI_EUSAGE;
	}
	return 0;
}

/* Path segments go into URLs: letters, digits, '_', '-' only (the API's ids). */
static bool seg_ok(const char *s)
{
	return s && *s && strlen(s) < 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
	           strlen(s);
}

static int need(const struct admin_args *a, int n, const char *what)
{
	if (a->npos != n) {
		fprintf(stderr, "herald: expected %s\n\n%s", what, usage_admin);
		return CLI_EUSAGE;
	}
	for (int i = 1; i < n; i++)
		if (!seg_ok(a->pos[i])) {
			fprintf(stderr, "herald: '%s' is not an id (letters, digits, '_', '-')\n",
			        a->pos[i]);
			return CLI_EUSAGE;
		}
	return 0;
}

static void print_row(json_t *x, const char *const *cols)
{
	for (const char *const *c = cols; *c; c++) {
		json_t *v = json_object_get(x, *c);
		char buf[64];
		const char *s = json_string_value(v);
		if (json_is_boolean(v))
			s = json_is_true(v) ? "yes" : "no";
		else if (json_is_array(v)) {
			buf[0] = '\0';
			size_t i;
			json_t *e;
			json_array_foreach(v, i, e)
			{
				if (strlen(buf) +
				        strlen(json_string_value(e) ? json_string_value(e) : "") +
				        2 >=
				    sizeof buf)
					break;
				if (i)
					strcat(buf, ",");
				strcat(buf, json_string_value(e) ? json_string_value(e) : "");
			}
			s = buf;
		} else if (json_is_integer(v)) {
			snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
			s = buf;
		}
		printf("%s%s", c == cols ? "" : "  ", s ? s : "-");
	}
	printf("\n");
}

/* Runs one request and prints the answer (a list under list_key, one
 * object, or the new key). */
static int run(struct admin_args *a, const char *method, const char *path, json_t *body,
               const char *list_key, const char *const *cols)
{
	char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct cli_resp r;
	int rc = cli_http(&a->c, method, path, b, NULL, &r);
	free(b);
	if (rc)
		return rc;
	json_t *j = cli_result(&a->c, &r, &rc);
	free(r.body);
	if (!j)
		return rc;
	if (!a->c.json) {
		if (list_key) {
			size_t i;
			json_t *x;
			json_array_foreach(json_object_get(j, list_key), i, x) print_row(x, cols);
		} else {
			print_row(j, cols);
			const char *key = json_string_value(json_object_get(j, "key"));
			if (key)
				printf("key: %s\n(shown once: Herald keeps only its hash)\n", key);
		}
	}
	json_decref(j);
	return CLI_OK;
}

static const char *const tenant_cols[] = {"id", "name", "disabled", "created_at", NULL};
static const char *const unit_cols[] = {"tenant", "id", "name", "disabled", "created_at", NULL};
static const char *const key_cols[] = {"prefix",     "unit",       "scopes",     "label",
                                       "created_by", "expires_at", "revoked_at", "last_used_at",
                                       "source",     NULL};
static const char *const audit_cols[] = {"id", "at", "tenant", "actor", "action", "object", NULL};

static int tenants(struct admin_args *a)
{
	const char *sub = a->npos ? a->pos[0] : "";
	char path[160];
	int rc;
	if (!strcmp(sub, "list"))
		return (rc = need(a, 1, "tenants list"))
		           ? rc
		           : run(a, "GET", "/v1/tenants", NULL, "tenants", tenant_cols);
	if (!strcmp(sub, "create")) {
		if ((rc = need(a, 2, "tenants create ID")))
			return rc;
		return run(a, "POST", "/v1/tenants",
		           json_pack("{s:s, s:s?}", "id", a->pos[1], "name", a->name), NULL,
		           tenant_cols);
	}
	if (!strcmp(sub, "show") || !strcmp(sub, "disable") || !strcmp(sub, "enable")) {
		if ((rc = need(a, 2, "tenants show|disable|enable ID")))
			return rc;
		bool show = !strcmp(sub, "show");
		snprintf(path, sizeof path, "/v1/tenants/%s%s%s", a->pos[1], show ? "" : "/",
		         show ? "" : sub);
		return run(a, show ? "GET" : "POST", path, NULL, NULL, tenant_cols);
	}
	fprintf(stderr, "herald tenants: unknown subcommand '%s'\n\n%s", sub, usage_admin);
	return CLI_EUSAGE;
}

static int units(struct admin_args *a)
{
	const char *sub = a->npos ? a->pos[0] : "";
	char path[200];
	int rc;
	if (!strcmp(sub, "list")) {
		if ((rc = need(a, 2, "units list TENANT")))
			return rc;
		snprintf(path, sizeof path, "/v1/tenants/%s/units", a->pos[1]);
		return run(a, "GET", path, NULL, "units", unit_cols);
	}
	if (!strcmp(sub, "create")) {
		if ((rc = need(a, 3, "units create TENANT ID")))
			return rc;
		snprintf(path, sizeof path, "/v1/tenants/%s/units", a->pos[1]);
		return run(a, "POST", path,
		           json_pack("{s:s, s:s?}", "id", a->pos[2], "name", a->name), NULL,
		           unit_cols);
	}
	if (!strcmp(sub, "disable") || !strcmp(sub, "enable")) {
		if ((rc = need(a, 3, "units disable|enable TENANT ID")))
			return rc;
		snprintf(path, sizeof path, "/v1/tenants/%s/units/%s/%s", a->pos[1], a->pos[2],
		         sub);
		return run(a, "POST", path, NULL, NULL, unit_cols);
	}
	fprintf(stderr, "herald units: unknown subcommand '%s'\n\n%s", sub, usage_admin);
	return CLI_EUSAGE;
}

static int keys(struct admin_args *a)
{
	const char *sub = a->npos ? a->pos[0] : "";
	char path[200];
	int rc;
	if (!strcmp(sub, "list")) {
		if ((rc = need(a, 2, "keys list TENANT")))
			return rc;
		snprintf(path, sizeof path, "/v1/tenants/%s/keys", a->pos[1]);
		return run(a, "GET", path, NULL, "keys", key_cols);
	}
	if (!strcmp(sub, "create")) {
		if ((rc = need(a, 2, "keys create TENANT --scope S")))
			return rc;
		if (json_array_size(a->scopes) == 0) {
			fprintf(stderr,
			        "herald: keys create needs --scope (one per scope, or '*')\n");
			return CLI_EUSAGE;
		}
		snprintf(path, sizeof path, "/v1/tenants/%s/keys", a->pos[1]);
		json_t *b = json_pack("{s:O, s:s?, s:s?, s:s?}", "scopes", a->scopes, "unit",
		                      a->unit, "label", a->label, "expires_at", a->expires);
		return run(a, "POST", path, b, NULL, key_cols);
	}
	if (!strcmp(sub, "revoke")) {
		if ((rc = need(a, 3, "keys revoke TENANT PREFIX")))
			return rc;
		snprintf(path, sizeof path, "/v1/tenants/%s/keys/%s/revoke", a->pos[1], a->pos[2]);
		static const char *const cols[] = {"prefix", "revoked", NULL};
		return run(a, "POST", path, NULL, NULL, cols);
	}
	fprintf(stderr, "herald keys: unknown subcommand '%s'\n\n%s", sub, usage_admin);
	return CLI_EUSAGE;
}

static const char *const template_cols[] = {"channel", "name",        "language", "unit",
                                            "body",    "param_count", NULL};

/* Template key parts go into the path: letters, digits, '_', '-', '.'. */
static bool tseg_ok(const char *s)
{
	return s && *s && strlen(s) < 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") ==
	           strlen(s) &&
	       s[0] != '.';
}

static int templates(struct admin_args *a)
{
	const char *sub = a->npos ? a->pos[0] : "";
	char path[256];
	int rc;
	if (!strcmp(sub, "list"))
		return (rc = need(a, 1, "templates list"))
		           ? rc
		           : run(a, "GET", "/v1/templates?limit=1000", NULL, "data", template_cols);
	if (!strcmp(sub, "add")) {
		if (a->npos != 5) {
			fprintf(stderr, "herald: templates add CHANNEL NAME LANGUAGE BODY\n\n%s",
			        usage_admin);
			return CLI_EUSAGE;
		}
		return run(a, "POST", "/v1/templates",
		           json_pack("{s:s, s:s, s:s, s:s}", "channel", a->pos[1], "name",
		                     a->pos[2], "language", a->pos[3], "body", a->pos[4]),
		           NULL, template_cols);
	}
	if (!strcmp(sub, "rm")) {
		if (a->npos != 4) {
			fprintf(stderr, "herald: templates rm CHANNEL NAME LANGUAGE\n\n%s",
			        usage_admin);
			return CLI_EUSAGE;
		}
		if (!tseg_ok(a->pos[1]) || !tseg_ok(a->pos[2]) || !tseg_ok(a->pos[3])) {
			fprintf(stderr, "herald: bad channel, name or language\n");
			return CLI_EUSAGE;
		}
		snprintf(path, sizeof path, "/v1/templates/%s/%s/%s", a->pos[1], a->pos[2],
		         a->pos[3]);
		static const char *const cols[] = {"channel", "name", "language", "deleted", NULL};
		return run(a, "DELETE", path, NULL, NULL, cols);
	}
	fprintf(stderr, "herald templates: unknown subcommand '%s'\n\n%s", sub, usage_admin);
	return CLI_EUSAGE;
}

static int audit(struct admin_args *a)
{
	int rc;
	if ((rc = need(a, 0, "audit [--tenant T] [--limit N] [--cursor C]")))
		return rc;
	if ((a->tenant && !seg_ok(a->tenant)) ||
	    (a->limit && strspn(a->limit, "0123456789") != strlen(a->limit)) ||
	    (a->cursor && strspn(a->cursor, "0123456789") != strlen(a->cursor))) {
		fprintf(stderr, "herald: bad --tenant, --limit or --cursor\n");
		return CLI_EUSAGE;
	}
	char path[256];
	snprintf(path, sizeof path, "/v1/audit?limit=%s%s%s%s%s", a->limit ? a->limit : "100",
	         a->tenant ? "&tenant=" : "", a->tenant ? a->tenant : "",
	         a->cursor ? "&cursor=" : "", a->cursor ? a->cursor : "");
	return run(a, "GET", path, NULL, "entries", audit_cols);
}

int cli_admin(int argc, char **argv)
{
	struct admin_args a;
	int rc = parse(argc, argv, &a);
	if (rc == 0) {
		if (!strcmp(argv[0], "tenants"))
			rc = tenants(&a);
		else if (!strcmp(argv[0], "units"))
			rc = units(&a);
		else if (!strcmp(argv[0], "keys"))
			rc = keys(&a);
		else if (!strcmp(argv[0], "templates"))
			rc = templates(&a);
		else
			rc = audit(&a);
	} else if (rc < 0) {
		rc = CLI_OK; /* --help */
	}
	json_decref(a.scopes);
	return rc;
}
