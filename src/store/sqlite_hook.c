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
#include "store/sqlite_int.h"

enum { INBOX_NEW = 0, INBOX_DONE = 1, INBOX_RETRY = 2, INBOX_FAILED = 3, INBOX_ORPHAN = 4 };

#define INBOX_ORPHAN_AFTER_US (24LL * 3600 * 1000000)
#define INBOX_RETRY_BASE_US 200000LL
#define INBOX_RETRY_MAX_US 60000000LL

/* ---------------------------------------------------------------------------
 * Append, fetch, count.
 * ------------------------------------------------------------------------- */

struct job_inbox {
	struct sq_job j;
	const char *account_id, *channel, *dedupe_key, *body;
	size_t len;
};

static int run_inbox_append(struct sq_store *s, struct sq_job *j)
{
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
	struct job_inbox a = {.j = {.run = run_inbox_append, .limited = true},
	                      .account_id = account_id, .channel = channel,
	                      .dedupe_key = dedupe_key, .body = body, .len = len};
	if (cb)
		return sq_run_async(s, &a.j, sizeof a, cb, arg);
	return sq_run_blocking(s, &a.j, NULL);
}

int sq_inbox_fetch(struct store *st, int64_t now, int limit, struct inbox_row **out,
                   size_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*out = NULL;
	*n = 0;
	if (limit <= 0)
		return limit < 0 ? HR_EINVAL : 0;
	struct inbox_row *v = calloc((size_t)limit, sizeof *v);
	if (!v)
		return HR_ENOMEM;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc) {
		free(v);
		return rc;
	}
	/* New rows carry next_try_at = received_at, so one range condition
	 * covers both new rows and retries that are due. */
	sqlite3_stmt *q = sq_rstmt(r, R_INBOX_FETCH,
		"SELECT id, account_id, channel, dedupe_key, received_at, attempts, body"
		" FROM webhook_inbox WHERE state IN (0, 2) AND next_try_at <= ?1"
		" ORDER BY id LIMIT ?2");
	if (!q) {
		sq_reader_put(s, r);
		free(v);
		return HR_EIO;
	}
	sqlite3_bind_int64(q, 1, now);
	sqlite3_bind_int(q, 2, limit);
	size_t len = 0;
	int src;
	while ((src = sqlite3_step(q)) == SQLITE_ROW && len < (size_t)limit) {
		struct inbox_row *row = &v[len];
		row->id = sqlite3_column_int64(q, 0);
		sq_col_copy(q, 1, row->account_id, sizeof row->account_id);
		sq_col_copy(q, 2, row->channel, sizeof row->channel);
		sq_col_copy(q, 3, row->dedupe_key, sizeof row->dedupe_key);
		row->received_at = sqlite3_column_int64(q, 4);
		row->attempts = sqlite3_column_int(q, 5);
		const void *b = sqlite3_column_blob(q, 6);
		size_t blen = (size_t)sqlite3_column_bytes(q, 6);
		row->body = malloc(blen + 1);
		if (!row->body) {
			rc = HR_ENOMEM;
			break;
		}
		if (blen)
			memcpy(row->body, b, blen);
		row->body[blen] = '\0';
		row->body_len = blen;
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	if (rc) {
		for (size_t i = 0; i < len; i++)
			inbox_row_clear(&v[i]);
		free(v);
		return rc;
	}
	if (len == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = len;
	return 0;
}

int sq_inbox_pending(struct store *st, int64_t *n)
{
	struct sq_store *s = (struct sq_store *)st;
	*n = 0;
	struct sq_reader *r;
	int rc = sq_reader_get(s, &r);
	if (rc)
		return rc;
	sqlite3_stmt *q = sq_rstmt(r, R_INBOX_PENDING,
		"SELECT count(*) FROM webhook_inbox WHERE state IN (0, 2)");
	if (!q) {
		sq_reader_put(s, r);
		return HR_EIO;
	}
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW)
		*n = sqlite3_column_int64(q, 0);
	else
		rc = sq_fail(r->db, src, NULL, NULL);
	sq_reader_put(s, r);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Apply.
 * ------------------------------------------------------------------------- */

struct job_apply {
	struct sq_job j;
	const struct inbox_parsed *rows;
	size_t n;
	int64_t now;
	struct apply_stats stats;
};

/* The message a provider id names: rowid, id, status, tenant. */
struct target {
	int64_t rowid;
	char id[HR_ID_LEN + 1];
	char tenant_id[HR_NAME_MAX];
	enum msg_status status;
};

/* The message of `account_id` that the provider calls provider_id: 1 found,
 * 0 not found, or a negative HR_E* code. */
static int find_by_provider(struct sq_store *s, struct sq_job *j, const char *account_id,
                            const char *provider_id, struct target *t)
{
	if (!provider_id[0] || !account_id || !account_id[0])
		return 0;
	sqlite3_stmt *q = sq_wstmt(s, W_MSG_BY_PROVIDER,
		"SELECT rowid, id, status, tenant_id FROM message"
		" WHERE account_id = ?1 AND provider_id = ?2 LIMIT 1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	sqlite3_bind_text(q, 1, account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, provider_id, -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		t->rowid = sqlite3_column_int64(q, 0);
		sq_col_copy(q, 1, t->id, sizeof t->id);
		t->status = (enum msg_status)sqlite3_column_int(q, 2);
		sq_col_copy(q, 3, t->tenant_id, sizeof t->tenant_id);
	}
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, &j->err, "message");
}

static int set_status(struct sq_store *s, struct sq_job *j, const struct target *t,
                      enum msg_status status, const struct wh_status *ws, int64_t now)
{
	sqlite3_stmt *u = sq_wstmt(s, W_MSG_SET_STATUS,
		"UPDATE message SET status = ?2, updated_at = ?3, lease_until = 0,"
		" error_code = coalesce(?4, error_code), error_text = coalesce(?5, error_text)"
		" WHERE rowid = ?1");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message");
	bool failure = status == MSG_FAILED || status == MSG_UNDELIVERED;
	sqlite3_bind_int64(u, 1, t->rowid);
	sqlite3_bind_int(u, 2, status);
	sqlite3_bind_int64(u, 3, now);
	sq_bind_opt(u, 4, failure ? ws->error_code : NULL);
	sq_bind_opt(u, 5, failure ? ws->error_text : NULL);
	return sq_step_done(s, u, &j->err, "message");
}

/* The detail every webhook_status event carries; the caller may add fields
 * and must call sq_json_end. */
static void status_detail(struct sq_json *js, enum msg_status status,
                          const struct wh_status *ws, int64_t inbox_id)
{
	sq_json_begin(js);
	sq_json_str(js, "status", msg_status_name(status));
	if (ws->provider_ts[0])
		sq_json_str(js, "provider_ts", ws->provider_ts);
	if (ws->error_code[0])
		sq_json_str(js, "error_code", ws->error_code);
	if (ws->error_text[0])
		sq_json_str(js, "error_text", ws->error_text);
	sq_json_int(js, "inbox_id", inbox_id);
}

static int status_event(struct sq_store *s, struct sq_job *j, const struct target *t,
                        enum msg_status status, bool applied, const struct wh_status *ws,
                        int64_t now, int64_t inbox_id)
{
	const char *detail = sq_json_end(&s->json);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	return sq_event_insert(s, t->id, now, ws->provider_at, "webhook_status", "webhook",
	                       (int)status, applied, detail, inbox_id, &j->err);
}

/* 1 if this inbox row already recorded `status` for the message (on an
 * earlier attempt), 0 if not, or a negative HR_E* code. */
static int status_seen(struct sq_store *s, struct sq_job *j, const struct target *t,
                       int64_t inbox_id, enum msg_status status)
{
	sqlite3_stmt *q = sq_wstmt(s, W_EVENT_SEEN,
		"SELECT 1 FROM message_event WHERE message_id = ?1 AND inbox_id = ?2"
		" AND status = ?3 AND type = 'webhook_status' LIMIT 1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "message_event");
	sqlite3_bind_text(q, 1, t->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, inbox_id);
	sqlite3_bind_int(q, 3, (int)status);
	int src = sqlite3_step(q);
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, &j->err, "message_event");
}

/* The status with its provider texts made valid UTF-8 before they are stored. */
static void status_clean(struct wh_status *dst, const struct wh_status *src)
{
	*dst = *src;
	hr_utf8_copy(dst->provider_ts, src->provider_ts, sizeof dst->provider_ts);
	hr_utf8_copy(dst->error_code, src->error_code, sizeof dst->error_code);
	hr_utf8_copy(dst->error_text, src->error_text, sizeof dst->error_text);
}

/*
 * One reported status against its message, by precedence. *found is false
 * when the provider id is unknown on this account (the row is then retried
 * later). On a retry of the row (retried: it was applied before, with some
 * status unmatched), a status this row already recorded for the message is
 * skipped, so retries never duplicate audit events.
 */
static int apply_status(struct sq_store *s, struct job_apply *a,
                        const struct inbox_parsed *row, const struct wh_status *raw,
                        bool retried, bool *found)
{
	struct sq_job *j = &a->j;
	struct target t = {0};
	int rc = find_by_provider(s, j, row->account_id, raw->provider_id, &t);
	if (rc <= 0) {
		*found = false;
		return rc;
	}
	*found = true;
	if (retried && (rc = status_seen(s, j, &t, row->inbox_id, raw->status)) != 0)
		return rc < 0 ? rc : 0;
	struct wh_status clean;
	const struct wh_status *ws = &clean;
	status_clean(&clean, raw);
	enum status_verdict v = status_decide(t.status, ws->status);
	switch (v) {
	case STATUS_APPLY:
		if ((rc = set_status(s, j, &t, ws->status, ws, a->now)))
			return rc;
		status_detail(&s->json, ws->status, ws, row->inbox_id);
		rc = status_event(s, j, &t, ws->status, true, ws, a->now, row->inbox_id);
		a->stats.applied++;
		return rc;
	case STATUS_APPLY_IMPLIED:
		/* READ before DELIVERED: the handset must have had it. */
		status_detail(&s->json, MSG_DELIVERED, ws, row->inbox_id);
		sq_json_str(&s->json, "implied_by", msg_status_name(ws->status));
		if ((rc = status_event(s, j, &t, MSG_DELIVERED, true, ws, a->now, row->inbox_id)))
			return rc;
		if ((rc = set_status(s, j, &t, ws->status, ws, a->now)))
			return rc;
		status_detail(&s->json, ws->status, ws, row->inbox_id);
		rc = status_event(s, j, &t, ws->status, true, ws, a->now, row->inbox_id);
		a->stats.applied++;
		return rc;
	case STATUS_IGNORE_DUP:
	case STATUS_IGNORE_STALE:
	default:
		status_detail(&s->json, ws->status, ws, row->inbox_id);
		sq_json_str(&s->json, "ignored", v == STATUS_IGNORE_DUP ? "duplicate" : "stale");
		sq_json_str(&s->json, "current", msg_status_name(t.status));
		rc = status_event(s, j, &t, ws->status, false, ws, a->now, row->inbox_id);
		a->stats.ignored++;
		return rc;
	}
}

/* An inbound reply's texts as valid UTF-8; text/payload are heap copies. */
struct inbound_clean {
	char provider_msg_id[HR_PROVIDER_ID_MAX];
	char from[HR_ADDR_MAX];
	char kind[16];
	char *text, *payload;
};

static int inbound_clean(struct inbound_clean *c, const struct wh_inbound *in)
{
	bool oom = false;
	hr_utf8_copy(c->provider_msg_id, in->provider_msg_id, sizeof c->provider_msg_id);
	hr_utf8_copy(c->from, in->from, sizeof c->from);
	hr_utf8_copy(c->kind, in->kind, sizeof c->kind);
	c->text = sq_utf8_dup(in->text, &oom);
	c->payload = sq_utf8_dup(in->payload, &oom);
	return oom ? HR_ENOMEM : 0;
}

/* The tenant and channel an account belongs to: 1 found, 0 unknown account,
 * or a negative HR_E* code. */
static int account_of(struct sq_store *s, struct sq_job *j, const char *account_id,
                      char tenant[HR_NAME_MAX], char channel[16])
{
	sqlite3_stmt *q = sq_wstmt(s, W_ACCOUNT_TENANT,
		"SELECT tenant_id, channel FROM channel_account WHERE id = ?1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "channel_account");
	sqlite3_bind_text(q, 1, account_id ? account_id : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		sq_col_copy(q, 0, tenant, HR_NAME_MAX);
		sq_col_copy(q, 1, channel, 16);
	}
	sqlite3_reset(q);
	if (src == SQLITE_ROW)
		return 1;
	return src == SQLITE_DONE ? 0 : sq_fail(s->wdb, src, &j->err, "channel_account");
}

/* "inbound STOP": the keyword as the customer sent it, trimmed, upper-cased
 * (ASCII) and clipped, so the list shows which word opted them out. */
static void optout_reason(char *dst, size_t size, const struct inbound_clean *c)
{
	const char *t = c->text && *c->text ? c->text : c->payload ? c->payload : "";
	while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')
		t++;
	char kw[33];
	hr_utf8_copy(kw, t, sizeof kw);
	size_t n = strlen(kw);
	while (n && (kw[n - 1] == ' ' || kw[n - 1] == '\t' || kw[n - 1] == '\r' ||
	             kw[n - 1] == '\n'))
		kw[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (kw[i] >= 'a' && kw[i] <= 'z')
			kw[i] = (char)(kw[i] - 'a' + 'A');
	snprintf(dst, size, "inbound %s", n ? kw : "opt-out");
}

/*
 * The answer to an inbound (a HELP text): a new QUEUED text message from the
 * same account back to the sender, with an "accepted" event naming the
 * inbound it answers; the dispatcher sends it like any other. *id gets its
 * id. Sender addresses and texts are stored as valid UTF-8.
 */
static int queue_auto_reply(struct sq_store *s, struct sq_job *j, const char *tenant,
                            const char *account_id, const char *channel,
                            const struct inbound_clean *c, const char *reply_raw,
                            char id[HR_ID_LEN + 1])
{
	bool oom = false;
	char *reply = sq_utf8_dup(reply_raw, &oom);
	if (oom)
		return hr_fail(&j->err, HR_ENOMEM, "auto_reply", "out of memory");
	struct message m = {.priority = PRIO_TRANSACTIONAL, .body = reply};
	hr_id_new(m.id);
	hr_strlcpy(m.tenant_id, tenant, sizeof m.tenant_id);
	hr_strlcpy(m.account_id, account_id, sizeof m.account_id);
	hr_strlcpy(m.channel, channel, sizeof m.channel);
	hr_strlcpy(m.recipient, c->from, sizeof m.recipient);
	if (strcmp(channel, "sms") == 0) {
		struct sms_info info;
		if (sms_segments(reply, &info, NULL) == 0)
			m.segments = info.segments;
	}
	int64_t now = hr_now_us();
	m.created_at = m.due_at = m.updated_at = now;
	struct sq_json *js = &s->json;
	sq_json_begin(js);
	sq_json_str(js, "type", "text");
	sq_json_str(js, "text", reply);
	m.content = (char *)sq_json_end(js);
	int rc = m.content ? sq_message_row_insert(s, &m, now, &j->err)
	                   : hr_fail(&j->err, HR_ENOMEM, "auto_reply", "out of memory");
	free(reply);
	if (rc)
		return rc;
	sq_json_begin(js);
	sq_json_str(js, "auto_reply_to", c->provider_msg_id);
	const char *detail = sq_json_end(js);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	rc = sq_event_insert(s, m.id, now, 0, "accepted", "webhook", MSG_QUEUED, true, detail, 0,
	                     &j->err);
	if (rc == 0)
		memcpy(id, m.id, sizeof m.id);
	return rc;
}

/*
 * What a new inbound asks of the account's tenant: an opt-out keyword puts
 * the sender on the suppression list for the row's channel (reason
 * "inbound <KEYWORD>"), an opt-in takes them off (absent is fine), and an
 * auto_reply is queued back to them. The tenant is the account's
 * (channel_account), or failing that the linked message's; with neither the
 * request is logged and skipped rather than failing the applier's whole
 * batch over a row it can never apply.
 */
static int inbound_effects(struct sq_store *s, struct job_apply *a,
                           const struct inbox_parsed *row, const char *row_channel,
                           const struct wh_inbound *in, const struct inbound_clean *c,
                           const struct target *linked, char reply_id[HR_ID_LEN + 1])
{
	struct sq_job *j = &a->j;
	if (!in->optout && !in->auto_reply)
		return 0;
	char tenant[HR_NAME_MAX] = "", channel[16] = "";
	int rc = account_of(s, j, row->account_id, tenant, channel);
	if (rc < 0)
		return rc;
	rc = 0;
	if (!tenant[0] && linked)
		hr_strlcpy(tenant, linked->tenant_id, sizeof tenant);
	if (row_channel[0])
		hr_strlcpy(channel, row_channel, sizeof channel);
	if (!tenant[0] || !channel[0] || !c->from[0]) {
		hr_log(HR_LOG_WARN, "store",
		       "inbound %s on account %s: no tenant, channel or sender; opt-out and"
		       " auto-reply skipped", c->provider_msg_id, row->account_id);
		return 0;
	}
	if (in->optout > 0) {
		char reason[SQ_REASON_MAX];
		optout_reason(reason, sizeof reason, c);
		rc = sq_supp_put(s, tenant, channel, c->from, reason, a->now, &j->err);
	} else if (in->optout < 0) {
		rc = sq_supp_delete(s, tenant, channel, c->from, NULL, &j->err);
	}
	if (rc == 0 && in->auto_reply)
		rc = queue_auto_reply(s, j, tenant, row->account_id, channel, c, in->auto_reply,
		                      reply_id);
	return rc;
}

/* A reply: stored once per provider message id, linked to the message it
 * answers when the context names one we sent from the same account. Only a
 * reply stored now (not a replay of one already stored) has effects
 * (inbound_effects): a replayed STOP after a START must not opt out again,
 * and a replayed HELP must not answer twice. */
static int store_inbound(struct sq_store *s, struct job_apply *a,
                         const struct inbox_parsed *row, const char *row_channel,
                         const struct wh_inbound *in, const struct inbound_clean *c,
                         int64_t received_at)
{
	struct sq_job *j = &a->j;
	struct target t = {0};
	int linked = find_by_provider(s, j, row->account_id, in->context_id, &t);
	if (linked < 0)
		return linked;
	sqlite3_stmt *st = sq_wstmt(s, W_INBOUND_INSERT,
		"INSERT OR IGNORE INTO inbound(tenant_id, account_id, message_id, provider_msg_id,"
		" sender, kind, text, payload, provider_at, received_at)"
		" VALUES(coalesce(?1, (SELECT tenant_id FROM channel_account WHERE id = ?2)),"
		" ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
	if (!st)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "inbound");
	sq_bind_opt(st, 1, linked ? t.tenant_id : NULL);
	sqlite3_bind_text(st, 2, row->account_id ? row->account_id : "", -1, SQLITE_STATIC);
	sq_bind_opt(st, 3, linked ? t.id : NULL);
	sqlite3_bind_text(st, 4, c->provider_msg_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, c->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, c->kind, -1, SQLITE_STATIC);
	sq_bind_opt(st, 7, c->text);
	sq_bind_opt(st, 8, c->payload);
	sqlite3_bind_int64(st, 9, in->provider_at);
	sqlite3_bind_int64(st, 10, received_at);
	int rc = sq_step_done(s, st, &j->err, "inbound");
	if (rc)
		return rc;
	if (sqlite3_changes(s->wdb) == 0)
		return 0; /* seen before */
	a->stats.inbound++;
	char reply_id[HR_ID_LEN + 1] = "";
	if ((rc = inbound_effects(s, a, row, row_channel, in, c, linked ? &t : NULL, reply_id)))
		return rc;
	if (!linked)
		return 0;
	struct sq_json *js = &s->json;
	sq_json_begin(js);
	sq_json_str(js, "kind", c->kind);
	sq_json_str(js, "text", c->text);
	sq_json_str(js, "payload", c->payload);
	sq_json_str(js, "from", c->from);
	sq_json_str(js, "provider_msg_id", c->provider_msg_id);
	if (in->optout)
		sq_json_str(js, "optout", in->optout > 0 ? "stop" : "start");
	if (reply_id[0])
		sq_json_str(js, "auto_reply_id", reply_id);
	const char *detail = sq_json_end(js);
	if (!detail)
		return hr_fail(&j->err, HR_ENOMEM, "message_event", "out of memory");
	return sq_event_insert(s, t.id, a->now, in->provider_at, "inbound", "webhook", -1, true,
	                       detail, row->inbox_id, &j->err);
}

static int apply_inbound(struct sq_store *s, struct job_apply *a,
                         const struct inbox_parsed *row, const char *row_channel,
                         const struct wh_inbound *in, int64_t received_at)
{
	struct inbound_clean c = {0};
	int rc = inbound_clean(&c, in);
	if (rc)
		rc = hr_fail(&a->j.err, rc, "inbound", "out of memory");
	else
		rc = store_inbound(s, a, row, row_channel, in, &c, received_at);
	free(c.text);
	free(c.payload);
	return rc;
}

static int mark_row(struct sq_store *s, struct sq_job *j, int64_t id, int state, int attempts,
                    int64_t next_try_at, const char *error)
{
	sqlite3_stmt *u = sq_wstmt(s, W_INBOX_MARK,
		"UPDATE webhook_inbox SET state = ?2, attempts = ?3,"
		" next_try_at = coalesce(?4, next_try_at), error = ?5 WHERE id = ?1");
	if (!u)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "webhook_inbox");
	char clean[512]; /* adapter errors and provider ids may quote the raw body */
	if (error)
		hr_utf8_copy(clean, error, sizeof clean);
	sqlite3_bind_int64(u, 1, id);
	sqlite3_bind_int(u, 2, state);
	sqlite3_bind_int(u, 3, attempts);
	if (next_try_at)
		sqlite3_bind_int64(u, 4, next_try_at);
	else
		sqlite3_bind_null(u, 4);
	sq_bind_opt(u, 5, error ? clean : NULL);
	return sq_step_done(s, u, &j->err, "webhook_inbox");
}

static int apply_row(struct sq_store *s, struct job_apply *a, const struct inbox_parsed *row)
{
	struct sq_job *j = &a->j;
	int64_t received_at = a->now;
	int attempts = 0;
	char channel[16] = "";
	sqlite3_stmt *q = sq_wstmt(s, W_INBOX_STATE,
		"SELECT received_at, attempts, channel FROM webhook_inbox WHERE id = ?1");
	if (!q)
		return sq_fail(s->wdb, SQLITE_ERROR, &j->err, "webhook_inbox");
	sqlite3_bind_int64(q, 1, row->inbox_id);
	int src = sqlite3_step(q);
	if (src == SQLITE_ROW) {
		received_at = sqlite3_column_int64(q, 0);
		attempts = sqlite3_column_int(q, 1);
		sq_col_copy(q, 2, channel, sizeof channel);
	}
	sqlite3_reset(q);
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return sq_fail(s->wdb, src, &j->err, "webhook_inbox");

	if (row->malformed) {
		a->stats.malformed++;
		return mark_row(s, j, row->inbox_id, INBOX_FAILED, attempts + 1, 0,
		                row->error[0] ? row->error : "malformed");
	}
	/* attempts > 0: an earlier attempt committed this row's effects but left
	 * some status unmatched. Its inbound replies were all stored then. */
	bool retried = attempts > 0;
	int rc, unmatched = 0;
	const char *missing = NULL;
	for (size_t k = 0; k < row->nstatuses; k++) {
		bool found;
		if ((rc = apply_status(s, a, row, &row->statuses[k], retried, &found)))
			return rc;
		if (!found) {
			unmatched++;
			missing = row->statuses[k].provider_id;
		}
	}
	for (size_t k = 0; k < row->ninbound && !retried; k++)
		if ((rc = apply_inbound(s, a, row, channel, &row->inbound[k], received_at)))
			return rc;
	if (!unmatched)
		return mark_row(s, j, row->inbox_id, INBOX_DONE, attempts + 1, 0, NULL);

	a->stats.unmatched += unmatched;
	char why[HR_PROVIDER_ID_MAX + 64];
	if (a->now - received_at >= INBOX_ORPHAN_AFTER_US) {
		snprintf(why, sizeof why, "unknown provider id %s after 24 h", missing);
		return mark_row(s, j, row->inbox_id, INBOX_ORPHAN, attempts + 1, 0, why);
	}
	int64_t delay = INBOX_RETRY_BASE_US << (attempts < 20 ? attempts : 20);
	if (delay > INBOX_RETRY_MAX_US)
		delay = INBOX_RETRY_MAX_US;
	snprintf(why, sizeof why, "unknown provider id %s", missing);
	return mark_row(s, j, row->inbox_id, INBOX_RETRY, attempts + 1, a->now + delay, why);
}

static int run_apply(struct sq_store *s, struct sq_job *j)
{
	struct job_apply *a = (struct job_apply *)j;
	memset(&a->stats, 0, sizeof a->stats);
	for (size_t i = 0; i < a->n; i++) {
		int rc = apply_row(s, a, &a->rows[i]);
		if (rc)
			return rc;
	}
	return 0;
}

int sq_apply_inbox(struct store *st, const struct inbox_parsed *rows, size_t n, int64_t now,
                   struct apply_stats *stats)
{
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (n && !rows)
		return HR_EINVAL;
	struct job_apply a = {.j = {.run = run_apply}, .rows = rows, .n = n, .now = now};
	int rc = sq_run_blocking((struct sq_store *)st, &a.j, NULL);
	if (rc == 0 && stats)
		*stats = a.stats;
	return rc;
}
