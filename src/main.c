/*
 * main.c - subcommand dispatch, nothing else.
 */
#include <stdio.h>
#include <string.h>

#include "herald.h"

int serve_main(int argc, char **argv);   /* api/serve.c   */
int migrate_main(int argc, char **argv); /* api/serve.c   */
int sim_main(int argc, char **argv);     /* sim/sim.c     */
int cli_main(int argc, char **argv);     /* cli/cli.c: send, messages, batch */
int hash_password_main(int argc, char **argv); /* cli/passwd.c */

static void usage(FILE *f)
{
	fprintf(f,
	        "herald %s - multi-channel messaging gateway\n\n"
	        "usage: herald <command> [options]\n\n"
	        "  serve     run the gateway (API, webhooks, dispatcher, applier)\n"
	        "  sim       run the provider simulator\n"
	        "  migrate   apply database migrations and exit\n"
	        "  send      send a message through a running gateway\n"
	        "  messages  get or list messages (messages get ID | messages list)\n"
	        "  batch     campaigns: upload a file, watch, list, status, start, cancel,\n"
	        "            retry, discard, report, export\n"
	        "  tenants   tenants (operators): list, create, show, disable, enable\n"
	        "  units     a tenant's business units: list, create, disable, enable\n"
	        "  keys      a tenant's API keys: list, create (shown once), revoke\n"
	        "  audit     the log of administrative actions\n"
	        "  templates the tenant's message templates: list, add, rm\n"
	        "  plugins   the business-unit plugins loaded: list\n"
	        "  hash-password  a password hash (yescrypt) for dashboard.users\n"
	        "  version   print the version\n\n"
	        "Run 'herald <command> --help' for a command's options.\n",
	        HERALD_VERSION);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "serve"))
		return serve_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "sim"))
		return sim_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "migrate"))
		return migrate_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "send") || !strcmp(cmd, "messages") || !strcmp(cmd, "batch") ||
	    !strcmp(cmd, "tenants") || !strcmp(cmd, "units") || !strcmp(cmd, "keys") ||
	    !strcmp(cmd, "audit") || !strcmp(cmd, "templates") || !strcmp(cmd, "plugins"))
		return cli_main(argc, argv);
	if (!strcmp(cmd, "hash-password"))
		return hash_password_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("herald %s\n", HERALD_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "herald: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
