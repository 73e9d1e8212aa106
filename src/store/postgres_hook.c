/*
 * postgres_hook.c - the webhook inbox: raw events appended by the ingress,
 * fetched for inspection and counted for /metrics. Claims and application
 * are lifecycle.c's (postgres_tx.c). Bodies are bytea: stored exactly as
 * received, whatever bytes they hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/postgres_int.h"

struct job_inbox {
	struct wr_job j;
	const char *account_id, *channel, *dedupe_key, *body;
	size_t len;
};

static int run_inbox_append(void *be, struct wr_job *j)
{
	struct pg_store *s = be;
	struct job_inbox *a = (struct job_inbox *)j;
	struct pg_params p = {0};
	pp_text(&p, a->account_id);
	pp_text(&p, a->channel);
	pp_text(&p, a->dedupe_key ? a->dedupe_key : "");
	pp_i64(&p, s->gnow);
	pp_bytes(&p, a->body, a->body ? a->len : 0);
	/* A replay of a known (account, dedupe_key) writes nothing. */
	return pg_wdo(s, j, P_INBOX_INSERT,
	              "INSERT INTO webhook_inbox(account_id, channel, dedupe_key, received_at,"
	              " body, state, attempts, next_try_at) VALUES($1, $2, $3, $4, $5, 0, 0, $4)"
	              " ON CONFLICT (account_id, dedupe_key) WHERE dedupe_key <> '' DO NOTHING",
	              &p, "webhook_inbox", NULL);
}

int pg_inbox_append(struct store *st, const char *account_id, const char *channel,
                    const char *dedupe_key, const char *body, size_t len, store_done_fn cb,
                    void *arg)
{
	struct pg_store *s = (struct pg_store *)st;
	if (!account_id || !*account_id || !channel || !*channel || (len && !body))
		return HR_EINVAL;
	if (len > INT32_MAX)
		return HR_ELIMIT;
	struct job_inbox a = {.j = {.run = run_inbox_append, .limited = true, .pipeable = true},
	                      .account_id = account_id,
	                      .channel = channel,
	                      .dedupe_key = dedupe_key,
	                      .body = body,
	                      .len = len};
	if (cb)
		return wr_run_async(&s->wr, &a.j, sizeof a, cb, arg);
	return wr_run_blocking(&s->wr, &a.j, NULL);
}

int pg_inbox_rows(PGresult *r, struct inbox_row *v, size_t *n)
{
	int rows = PQntuples(r);
	*n = 0;
	if (!v)
		return rows ? HR_ENOMEM : 0;
	for (int i = 0; i < rows; i++) {
		struct inbox_row *row = &v[i];
		row->id = pg_col_i64(r, i, 0);
		pg_col_copy(r, i, 1, row->account_id, sizeof row->account_id);
		pg_col_copy(r, i, 2, row->channel, sizeof row->channel);
		pg_col_copy(r, i, 3, row->dedupe_key, sizeof row->dedupe_key);
		row->received_at = pg_col_i64(r, i, 4);
		row->attempts = (int)pg_col_i64(r, i, 5);
		if (pg_col_bytea(r, i, 6, &row->body, &row->body_len)) {
			for (int k = 0; k < i; k++)
				inbox_row_clear(&v[k]);
			return HR_ENOMEM;
		}
	}
	*n = (size_t)rows;
	return 0;
}

int pg_inbox_fetch(struct store *st, int64_t now, int limit, struct inbox_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit <= 0)
		return limit < 0 ? HR_EINVAL : 0;
	struct pg_params p = {0};
	pp_i64(&p, now);
	pp_i64(&p, limit);
	PGresult *r;
	/* New rows carry next_try_at = received_at, so one range condition
	 * covers new rows and retries that are due. */
	int rc = pg_read((struct pg_store *)st, P_INBOX_FETCH, -1,
	                 "SELECT id, account_id, channel, dedupe_key, received_at, attempts, body"
	                 " FROM webhook_inbox WHERE state IN (0, 2) AND next_try_at <= $1"
	                 " ORDER BY id LIMIT $2",
	                 &p, &r);
	if (rc)
		return rc;
	int rows = PQntuples(r);
	struct inbox_row *v = rows ? calloc((size_t)rows, sizeof *v) : NULL;
	if (rows && !v) {
		PQclear(r);
		return HR_ENOMEM;
	}
	rc = pg_inbox_rows(r, v, n);
	PQclear(r);
	if (rc) {
		free(v);
		*n = 0;
		return rc;
	}
	*out = v;
	return 0;
}

int pg_inbox_pending(struct store *st, int64_t *n)
{
	*n = 0;
	PGresult *r;
	int rc = pg_read((struct pg_store *)st, P_INBOX_PENDING, -1,
	                 "SELECT count(*) FROM webhook_inbox WHERE state IN (0, 2)", NULL, &r);
	if (rc)
		return rc;
	*n = pg_col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}
