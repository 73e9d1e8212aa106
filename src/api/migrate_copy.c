/*
 * migrate_copy.c - `herald migrate --from sqlite:PATH --to postgres:URL`:
 * the command-line side of store/copy.h (arguments, the password, the
 * per-table summary). Exit codes as the other commands: 0 done and
 * verified, 1 the copy failed or was refused (the target unchanged), 2 bad
 * arguments.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "store/copy.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: herald migrate --from sqlite:PATH --to postgres:URL\n"
	           "       [--password-env NAME | --password-file PATH] [--force]\n\n"
	           "Copies a whole installation (tenants, API keys, accounts, templates, messages\n"
	           "and their audit trails, inbound replies, suppressions, aliases, idempotency\n"
	           "keys, webhook inbox) from a SQLite store into a PostgreSQL one, whose schema\n"
	           "it makes, and verifies every table by row count and checksum before it\n"
	           "commits. Stop the servers on both sides first.\n\n"
	           "  --from           sqlite:PATH, the source database file (opened read-only)\n"
	           "  --to             postgres:URL, a libpq conninfo or URI (postgresql://...)\n"
	           "  --password-env   read the target's password from this environment variable\n"
	           "  --password-file  read it from this file\n"
	           "  --force          the target may hold rows: empty its herald tables first\n"
	           "                   (TRUNCATE, in the copy's transaction) - never a merge\n");
}

/* "postgres:URL" -> URL; a bare postgres:// or postgresql:// URI as is. */
static const char *target_dsn(const char *to)
{
	if (!strncmp(to, "postgres://", 11) || !strncmp(to, "postgresql://", 13))
		return to;
	if (!strncmp(to, "postgres:", 9))
		return to + 9;
	if (!strncmp(to, "postgresql:", 11))
		return to + 11;
	return NULL;
}

static int arg_error(const char *arg, const char *msg, const char *value)
{
	fprintf(stderr, "herald migrate: %s: %s%s%s%s\n", arg, msg, value ? " (got \"" : "",
	        value ? value : "", value ? "\")" : "");
	return 2;
}

int migrate_copy_main(int argc, char **argv)
{
	static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
	                                     {"to", required_argument, NULL, 't'},
	                                     {"password-env", required_argument, NULL, 'e'},
	                                     {"password-file", required_argument, NULL, 'p'},
	                                     {"force", no_argument, NULL, 'F'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *from = NULL, *to = NULL, *penv = NULL, *pfile = NULL;
	bool force = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'e':
			penv = optarg;
			break;
		case 'p':
			pfile = optarg;
			break;
		case 'F':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		return arg_error(argv[optind], "unexpected argument", NULL);
	if (!from)
		return arg_error("--from", "required: sqlite:PATH", NULL);
	if (!to)
		return arg_error("--to", "required: postgres:URL", NULL);
	if (strncmp(from, "sqlite:", 7) != 0 || !from[7])
		return arg_error("--from", "must be sqlite:PATH", from);
	const char *dsn = target_dsn(to);
	if (!dsn || !*dsn)
		return arg_error("--to", "must be postgres:URL (a libpq conninfo or URI)", NULL);
	if (penv && pfile)
		return arg_error("--password-env",
		                 "give --password-env or --password-file, not both", NULL);

	struct hr_err err = {0};
	char *password = NULL;
	if (penv || pfile) {
		char ref[1100];
		snprintf(ref, sizeof ref, "%s:%s", penv ? "env" : "file", penv ? penv : pfile);
		const char *field = penv ? "--password-env" : "--password-file";
		if (!*(penv ? penv : pfile))
			return arg_error(field, "must not be empty", NULL);
		if (penv && !getenv(penv))
			return arg_error(field, "the environment variable is not set", penv);
		password = hr_secret_resolve(ref, field, &err);
		if (!password) {
			fprintf(stderr, "herald migrate: %s: %s\n", field, err.msg);
			return 2;
		}
	}

	struct store_copy_opts o = {
	    .sqlite_path = from + 7, .pg_dsn = dsn, .pg_password = password, .force = force};
	struct store_copy_report rep;
	printf("herald migrate: copying %s into PostgreSQL%s\n", from + 7,
	       force ? " (--force: the target's herald tables are emptied first)" : "");
	fflush(stdout);
	int rc = store_copy_sqlite_to_postgres(&o, &rep, &err);
	if (password)
		hr_secret_free(password);

	int64_t cleared = 0;
	for (size_t i = 0; i < rep.n; i++)
		cleared += rep.t[i].cleared;
	if (rc == 0 && cleared)
		printf("herald migrate: --force emptied %lld rows from the target\n",
		       (long long)cleared);
	if (rc == 0 && rep.partitions_made)
		printf("herald migrate: made %d monthly partitions for the source's months\n",
		       rep.partitions_made);
	if (rc == 0 || rep.rows) {
		printf("%-16s %10s  %-16s %8s %8s\n", "table", "rows", "checksum", "copy s",
		       "verify s");
		for (size_t i = 0; i < rep.n; i++) {
			const struct store_copy_table *t = &rep.t[i];
			printf("%-16s %10lld  %-16.16s %8.3f %8.3f\n", t->name, (long long)t->rows,
			       t->source_sum[0] ? t->source_sum : "-", t->copy_s, t->verify_s);
		}
	}
	if (rc) {
		if (err.field[0] && !strstr(err.msg, err.field))
			fprintf(stderr, "herald migrate: %s: %s\n", err.field, err.msg);
		else
			fprintf(stderr, "herald migrate: %s\n", err.msg);
		fprintf(stderr, "herald migrate: nothing was committed; the target is as it was\n");
		return 1;
	}
	double copy_s = 0, verify_s = 0;
	for (size_t i = 0; i < rep.n; i++) {
		copy_s += rep.t[i].copy_s;
		verify_s += rep.t[i].verify_s;
	}
	printf("herald migrate: copied %lld rows in %.2f s (%.0f rows/s), verified in %.2f s, "
	       "%.2f s in all\n",
	       (long long)rep.rows, copy_s, copy_s > 0 ? (double)rep.rows / copy_s : 0.0, verify_s,
	       rep.seconds);
	printf("herald migrate: verified: every table's row count and checksum match\n");
	return 0;
}
