/*
 * plugins.c - `herald plugins list`: the plugins a running gateway loaded
 * (GET /v1/plugins): name, version, ABI, the units bound and the hooks it
 * has. An operator key sees every tenant's units and the files; a
 * tenant's admin key its own units. Like every CLI command it talks to the
 * API only.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

static const char usage_plugins[] =
    "usage: herald plugins list [--url URL] [--key KEY] [--json]\n"
    "options: --url URL (default $HERALD_URL), --key KEY (default $HERALD_API_KEY)\n"
    "exit codes: 0 ok, 1 API error, 2 usage, 3 server unreachable\n";

/* The strings of a JSON array joined with ",", "-" when empty. */
static void join(json_t *arr, char *out, size_t size)
{
	size_t o = 0, i;
	json_t *x;
	out[0] = '\0';
	json_array_foreach(arr, i, x)
	{
		const char *s = json_string_value(x);
		if (s && o < size)
			o += (size_t)snprintf(out + o, size - o, "%s%s", o ? "," : "", s);
	}
	if (!out[0])
		snprintf(out, size, "-");
}

int cli_plugins(int argc, char **argv)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
	                                     {"key", required_argument, NULL, 'k'},
	                                     {"json", no_argument, NULL, 'j'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct cli c = {.url = getenv("HERALD_URL"), .key = getenv("HERALD_API_KEY")};
	optind = 1;
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case 'u':
			c.url = optarg;
			break;
		case 'k':
			c.key = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'h':
			fputs(usage_plugins, stdout);
			return CLI_OK;
		default:
			fprintf(stderr, "herald plugins: bad option '%s'\n\n%s", argv[optind - 1],
			        usage_plugins);
			return CLI_EUSAGE;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "list") != 0 || optind + 1 != argc) {
		fputs(usage_plugins, stderr);
		return CLI_EUSAGE;
	}
	struct cli_resp r;
	int rc = cli_http(&c, "GET", "/v1/plugins", NULL, NULL, &r);
	if (rc)
		return rc;
	json_t *j = cli_result(&c, &r, &rc);
	free(r.body);
	if (!j)
		return rc;
	if (!c.json) {
		printf("%-20s %-10s %-3s %-32s %s\n", "NAME", "VERSION", "ABI", "UNITS", "HOOKS");
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(j, "plugins"), i, p)
		{
			char units[1024], hooks[256];
			join(json_object_get(p, "units"), units, sizeof units);
			join(json_object_get(p, "hooks"), hooks, sizeof hooks);
			/* The version is the plugin's free text: one line. */
			char version[64];
			snprintf(version, sizeof version, "%s", jstr(p, "version", ""));
			for (char *v = version; *v; v++)
				if ((unsigned char)*v < 0x20)
					*v = ' ';
			printf("%-20s %-10s %-3lld %-32s %s\n", jstr(p, "name", ""), version,
			       (long long)json_integer_value(json_object_get(p, "abi")), units,
			       hooks);
		}
	}
	json_decref(j);
	return CLI_OK;
}
