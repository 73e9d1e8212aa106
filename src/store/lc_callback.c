/*
 * lc_callback.c - which changes a client's system hears of, decided once
 * above every backend (lifecycle.h). lc_transition and the reply path call
 * in here inside the transaction that makes the change, so the outbox row
 * (store.h: callback_row) commits or rolls back with it.
 *
 * What is reported: every status change a client can see (sent, delivered,
 * read, failed, undelivered, cancelled, expired, suppressed, unknown, and
 * a message going back to the queue only when it was not the dispatcher's
 * own retry), and every reply or button press stored for the first time.
 * The dispatcher's internal QUEUED <-> SENDING moves (a claim, a retry, a
 * lease expiring before the last attempt) are not: they say nothing about
 * the message's fate, and a retrying provider would flood the receiver.
 */
#include <stdlib.h>
#include <string.h>

#include "store/lifecycle.h"

/* A reply's text and payload are cut here in a callback (the inbound table
 * keeps them whole): a receiver's request stays bounded. */
#define CB_TEXT_MAX 16384

static const char *const state_names[CB__COUNT] = {"pending", "delivered", "dead"};

const char *callback_state_name(int state)
{
	return state >= 0 && state < CB__COUNT ? state_names[state] : "?";
}

int callback_state_parse(const char *s)
{
	for (int i = 0; s && i < CB__COUNT; i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -1;
}

void callback_row_clear(struct callback_row *r)
{
	free(r->detail);
	free(r->url);
	memset(r, 0, sizeof *r);
}

int lc_callback_check_list(int state, int64_t before_id, int limit)
{
	if (state < -1 || state >= CB__COUNT || before_id < 0 || limit < 1 || limit > 1000)
		return HR_EINVAL;
	return 0;
}

/* Whether a move from -> to is one the client hears of. */
static bool status_reported(enum msg_status from, enum msg_status to)
{
	if (from == to)
		return false;
	/* The dispatcher's own bookkeeping: claimed, retried, requeued. */
	if (to == MSG_SENDING)
		return false;
	if (to == MSG_QUEUED && (from == MSG_SENDING || from == MSG_QUEUED))
		return false;
	return true;
}

int lc_callback_status(struct store_tx *tx, const struct lc_msg *m, enum msg_status from)
{
	if (!status_reported(from, m->status) || !tx->ops->callback_add ||
	    m->callback == LC_CB_NONE)
		return 0;
	struct lc_callback c = {.event = "message.status",
	                        .message_id = m->id,
	                        .status = (int)m->status,
	                        .prev_status = (int)from};
	return tx->ops->callback_add(tx, &c);
}

/* Appends key: s cut to CB_TEXT_MAX bytes on a character boundary, and
 * notes the cut. */
static void put_text(struct ev_json *j, const char *key, const char *s, bool *cut)
{
	if (!s)
		return;
	size_t n = strlen(s);
	if (n < CB_TEXT_MAX) {
		ev_json_str(j, key, s);
		return;
	}
	char *copy = malloc(CB_TEXT_MAX);
	if (!copy) {
		j->oom = true;
		return;
	}
	hr_utf8_copy(copy, s, CB_TEXT_MAX);
	ev_json_str(j, key, copy);
	free(copy);
	*cut = true;
}

int lc_callback_inbound(struct store_tx *tx, const char *message_id, const char *account_id,
                        const struct lc_inbound *in)
{
	if (!tx->ops->callback_add)
		return 0;
	/* Its own builder: the transaction's (tx->ops->json) may hold an
	 * event detail the caller has not written yet. */
	struct ev_json j = {0};
	bool cut = false;
	ev_json_begin(&j);
	ev_json_str(&j, "kind", in->kind ? in->kind : "");
	ev_json_str(&j, "from", in->from ? in->from : "");
	if (in->provider_msg_id && in->provider_msg_id[0])
		ev_json_str(&j, "provider_msg_id", in->provider_msg_id);
	put_text(&j, "text", in->text, &cut);
	put_text(&j, "payload", in->payload, &cut);
	if (cut)
		ev_json_bool(&j, "truncated", true);
	if (in->provider_at)
		ev_json_int(&j, "provider_at", in->provider_at);
	const char *detail = ev_json_end(&j);
	int rc;
	if (!detail) {
		rc = hr_fail(tx->ops->err(tx), HR_ENOMEM, "callback", "out of memory");
	} else {
		struct lc_callback c = {.event = "message.inbound",
		                        .message_id = message_id,
		                        .account_id = account_id,
		                        .status = -1,
		                        .prev_status = -1,
		                        .detail = detail};
		rc = tx->ops->callback_add(tx, &c);
	}
	free(j.buf);
	return rc;
}
