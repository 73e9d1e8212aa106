/*
 * sqlite_hook.c - the webhook inbox: raw events appended by the ingress,
 * fetched by the applier, and applied in one transaction per applier batch
 * (status precedence, audit events, inbound replies and what they ask for:
 * opt-out, opt-in, an automatic answer; row states).
 *
 * Inbox row states: 0 new, 1 done, 2 waiting for a retry (a status named a
 * provider id we do not know yet, typically because the webhook overtook the
 * dispatcher's record of the send), 3 failed (malformed), 4 orphan (still
 * unmatched 24 h after it arrived).
 *
 * A webhook only ever touches messages of the account it arrived on:
 * provider ids are unique per account at best (Telegram's per chat), so
 * every lookup is by (account_id, provider_id). Text from providers and
 * customers is stored as valid UTF-8 (hr_utf8_copy), so reads never return
 * broken characters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/segments.h"
#include "store/sqlite_rows.h"

/* ---------------------------------------------------------------------------
 * Append, fetch, count.
 * ------------------------------------------------------------------------- */

struct job_inbox {
	struct wr_job j;
	const char *account_id, *channel, *dedupe_key, *body;
	size_t len;
};

static int run_inbox_append(void *be, struct wr_job *j)
{
	struct sq_store *s = be;
	struct job_inbox *a = (struct job_inbox *)j;
	/* OR IGNORE: a replay of a known (account, dedupe_key) writes nothing. */
	sqlite3_stmt *st = sq_wstmt(s, W_INBOX_INSERT,
		"INSERT OR IGNORE INTO webhook_inbox(account_id, channel, dedupe_key, received_at,"
		" body, state, attempts, next_try_at) VALUES(?1, ?2, ?3, ?4, ?5, 0, 0, ?4)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "webhook_inbox");
	sqlite3_bind_text(st, 1, a->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->channel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->dedupe_key ? a->dedupe_key : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, hr_now_us());
	sqlite3_bind_blob64(st, 5, a->body ? a->body : "", a->body ? a->len : 0, SQLITE_STATIC);
	return sq_step_done(s, st, &j->err, "webhook_inbox");
}

int sq_inbox_append(struct store *st, const char *account_id, const char *channel,
                    const char *dedupe_key, const char *body, size_t len, store_done_fn cb,
                    void *arg)
{
	struct sq_store *s = (struct sq_store *)st;
	if (!account_id || !*account_id || !channel || !*channel || (len && !body))
		return HR_EINVAL;
	/* One insert: it can run again (writer.h, replayable). */
	struct job_inbox a = {.j = {.run = run_inbox_append, .limited = true, .replayable = true},
	                      .account_id = account_id,
	                      .channel = channel,
	                      .dedupe_key = dedupe_key,
	                      .body = body,
	                      .len = len};
	if (cb)
		return wr_run_async(&s->wr, &a.j, sizeof a, cb, arg);
	return wr_run_blocking(&s->wr, &a.j, NULL);
}

int sq_row_inbox(sqlite3_stmt *q, struct inbox_row *row)
{
	row->id = sqlite3_column_int64(q, 0);
	sq_col_copy(q, 1, row->account_id, sizeof row->account_id);
	sq_col_copy(q, 2, row->channel, sizeof row->channel);
	sq_col_copy(q, 3, row->dedupe_key, sizeof row->dedupe_key);
	row->received_at = sqlite3_column_int64(q, 4);
	row->attempts = sqlite3_column_int(q, 5);
	const void *b = sqlite3_column_blob(q, 6);
	size_t blen = (size_t)sqlite3_column_bytes(q, 6);
	row->body = malloc(blen + 1);
	if (!row->body)
		return HR_ENOMEM;
	if (blen)
		memcpy(row->body, b, blen);
	row->body[blen] = '\0';
	row->body_len = blen;
	return 0;
}

/* The inbox row's body is a blob: read by SQLite's own decoder. */
static int row_inbox(const struct store_cols *c, void *row, void *arg)
{
	(void)arg;
	return sq_row_inbox((sqlite3_stmt *)c->res, row);
}

static void clear_inbox(void *row)
{
	inbox_row_clear(row);
}

int sq_inbox_fetch(struct store *st, int64_t now, int limit, struct inbox_row **out,
                   size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit <= 0)
		return limit < 0 ? HR_EINVAL : 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	/* New rows carry next_try_at = received_at, so one range condition
	 * covers both new rows and retries that are due. */
	sqlite3_stmt *q = sq_rstmt(r, R_INBOX_FETCH,
		"SELECT id, account_id, channel, dedupe_key, received_at, attempts, body"
		" FROM webhook_inbox WHERE state IN (0, 2) AND next_try_at <= ?1"
		" ORDER BY id LIMIT ?2");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	sqlite3_bind_int64(q, 1, now);
	sqlite3_bind_int(q, 2, limit);
	void *v;
	rc = sq_rows_read(r, q, sizeof **out, row_inbox, NULL, clear_inbox, &v, n);
	sq_reader_put(s, r);
	*out = v;
	return rc;
}

int sq_inbox_pending(struct store *st, int64_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*n = 0;
	struct sq_reader *r;
	sqlite3_stmt *q;
	int rc = sq_read_begin(s, R_INBOX_PENDING,
	                       "SELECT count(*) FROM webhook_inbox WHERE state IN (0, 2)", &r, &q);
	if (rc)
		return rc;
	rc = sq_read_i64(r, q, n);
	sq_reader_put(s, r);
	return rc;
}

