/*
 * copy.h - copying a whole installation from a SQLite store into a
 * PostgreSQL one (`herald migrate --from sqlite:PATH --to postgres:URL`),
 * verified table by table. copy.c is the one place that knows both schemas
 * at once.
 *
 * What it guarantees: the target's schema is made or upgraded by the
 * PostgreSQL backend's own open (its migrations and partitions); every
 * table that carries state is copied from one read transaction of the
 * source (a consistent snapshot) into one transaction of the target, ids
 * kept (ULIDs, event, inbox and inbound ids) and the target's sequences set
 * past them; then, still inside that transaction, each table's row count
 * and an order-independent checksum of its rows are computed on both sides
 * and must be equal. Only then is the target committed: a copy that fails
 * in any way, verification included, leaves the target as it was.
 *
 * A target whose tables hold any row is refused (HR_ECONFLICT, the tables
 * and their counts named) unless opts.force, which empties those tables
 * (TRUNCATE, in the same transaction) first: the target then holds the
 * source's installation and nothing else. Never a merge.
 *
 * Servers should be stopped on both sides: writes to the source after the
 * snapshot are not copied, and the target's tables are locked against
 * writes for the whole copy.
 */
#ifndef HR_STORE_COPY_H
#define HR_STORE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald.h"

/* The schema versions the copier knows (sqlite_schema.c, postgres_schema.c):
 * a database at another version is refused. A new migration on either side
 * means teaching copy.c its columns and raising these (test_copy checks
 * they match the backends' migration lists). */
#define STORE_COPY_SQLITE_VERSION 14
#define STORE_COPY_PG_VERSION 13

struct store_copy_opts {
	const char *sqlite_path; /* the source database file */
	const char *pg_dsn;      /* libpq conninfo or URI */
	const char *pg_password; /* overrides the dsn's; NULL: none */
	bool force;              /* empty a non-empty target first */
};

/* What happened to one table. */
struct store_copy_table {
	const char *name;    /* static */
	int64_t rows;        /* copied from the source */
	int64_t target_rows; /* counted in the target after the copy */
	int64_t cleared;     /* rows --force removed from the target first */
	char source_sum[65]; /* hex SHA-256, see store_copy_sum */
	char target_sum[65];
	double copy_s, verify_s;
};

#define STORE_COPY_TABLES_MAX 32

struct store_copy_report {
	struct store_copy_table t[STORE_COPY_TABLES_MAX];
	size_t n;
	int64_t rows;        /* all tables */
	int partitions_made; /* monthly partitions made for the source's months */
	double seconds;      /* open to commit */
};

/*
 * Copies and verifies as above. 0 when the target was committed and every
 * table verified; else an HR_E* code with err naming the argument ("--from",
 * "--to") or the table, and *rep filled as far as it got. rep is the
 * caller's.
 */
int store_copy_sqlite_to_postgres(const struct store_copy_opts *o, struct store_copy_report *rep,
                                  struct hr_err *err);

/*
 * The checksum, exposed for tests. Each row is reduced to a canonical text
 * - per column, NULL as "N;" and any other value as "<bytes>:<value>;",
 * where integers and booleans are their decimal text (true = 1), text its
 * UTF-8 bytes and binary its lowercase hex - and that text to its SHA-256;
 * the table's checksum is the SHA-256 of the sorted row digests, so row
 * order does not matter but every value, and which row holds it, does.
 */
struct store_copy_val {
	const char *p; /* NULL: SQL NULL */
	size_t len;
};
struct store_copy_sum {
	unsigned char (*d)[32];
	size_t n, cap;
	bool oom;
};
/* Adds one row (already in canonical value form). */
void store_copy_sum_row(struct store_copy_sum *s, const struct store_copy_val *v, size_t n);
/* Writes the checksum's hex and frees what s holds. */
void store_copy_sum_final(struct store_copy_sum *s, char hex[65]);

#endif
