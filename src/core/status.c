/*
 * status.c - message status names and the precedence rules every status
 * change obeys (DESIGN.md, "Message lifecycle").
 *
 * The progress chain is QUEUED < SENDING < SENT < DELIVERED < READ: an event
 * applies only if it moves forward, so late or repeated webhooks never
 * downgrade a message. READ over anything below DELIVERED implies DELIVERED
 * (WhatsApp skips "delivered" when the chat is open). FAILED/UNDELIVERED
 * apply up to SENT (WhatsApp reports failures after "sent") but not after
 * DELIVERED. A DELIVERED or READ receipt after FAILED/UNDELIVERED/UNKNOWN
 * applies: the handset confirmed it, so the earlier verdict was wrong and the
 * record should say what really happened. CANCELLED/EXPIRED/SUPPRESSED are
 * only reachable before a send.
 */
#include <string.h>

#include "herald.h"

static const char *const names[MSG__COUNT] = {
    [MSG_QUEUED] = "queued",           [MSG_SENDING] = "sending",     [MSG_SENT] = "sent",
    [MSG_DELIVERED] = "delivered",     [MSG_READ] = "read",           [MSG_FAILED] = "failed",
    [MSG_UNDELIVERED] = "undelivered", [MSG_CANCELLED] = "cancelled", [MSG_EXPIRED] = "expired",
    [MSG_SUPPRESSED] = "suppressed",   [MSG_UNKNOWN] = "unknown",
};

const char *msg_status_name(enum msg_status s)
{
	return (unsigned)s < MSG__COUNT ? names[s] : "invalid";
}

int msg_status_parse(const char *name, enum msg_status *out)
{
	for (int i = 0; i < MSG__COUNT; i++)
		if (name && strcmp(name, names[i]) == 0) {
			*out = (enum msg_status)i;
			return 0;
		}
	return HR_EINVAL;
}

bool msg_status_final(enum msg_status s, bool channel_has_receipts)
{
	switch (s) {
	case MSG_SENT:
		return !channel_has_receipts;
	case MSG_DELIVERED:
		return false; /* READ may still come; not a failure */
	case MSG_READ:
	case MSG_FAILED:
	case MSG_UNDELIVERED:
	case MSG_CANCELLED:
	case MSG_EXPIRED:
	case MSG_SUPPRESSED:
		return true;
	default:
		return false;
	}
}

static const char *const policy_names[POLICY__COUNT] = {
    [POLICY_AT_LEAST_ONCE] = "at_least_once",
    [POLICY_AT_MOST_ONCE] = "at_most_once",
};

const char *delivery_policy_name(enum delivery_policy p)
{
	return (unsigned)p < POLICY__COUNT ? policy_names[p] : "invalid";
}

int delivery_policy_parse(const char *name, enum delivery_policy *out)
{
	for (int i = 0; i < POLICY__COUNT; i++)
		if (name && strcmp(name, policy_names[i]) == 0) {
			*out = (enum delivery_policy)i;
			return 0;
		}
	return HR_EINVAL;
}

static const char *const batch_names[BATCH__COUNT] = {
    [BATCH_PENDING] = "pending",       [BATCH_VALIDATED] = "validated",
    [BATCH_PROCESSING] = "processing", [BATCH_COMPLETED] = "completed",
    [BATCH_CANCELLED] = "cancelled",   [BATCH_FAILED] = "failed",
    [BATCH_PAUSED] = "paused",
};

const char *batch_status_name(enum batch_status s)
{
	return (unsigned)s < BATCH__COUNT ? batch_names[s] : "invalid";
}

int batch_status_parse(const char *name, enum batch_status *out)
{
	for (int i = 0; i < BATCH__COUNT; i++)
		if (name && strcmp(name, batch_names[i]) == 0) {
			*out = (enum batch_status)i;
			return 0;
		}
	return HR_EINVAL;
}

/* Forward only, never skipping validation; the three end states are final.
 * PAUSED is a side state of PROCESSING: back to it (resume), or stopped. */
bool batch_status_allowed(enum batch_status cur, enum batch_status next)
{
	switch (cur) {
	case BATCH_PENDING:
		return next == BATCH_VALIDATED || next == BATCH_CANCELLED || next == BATCH_FAILED;
	case BATCH_VALIDATED:
		return next == BATCH_PROCESSING || next == BATCH_CANCELLED || next == BATCH_FAILED;
	case BATCH_PROCESSING:
		return next == BATCH_COMPLETED || next == BATCH_CANCELLED || next == BATCH_FAILED ||
		       next == BATCH_PAUSED;
	case BATCH_PAUSED:
		return next == BATCH_PROCESSING || next == BATCH_CANCELLED || next == BATCH_FAILED;
	default:
		return false;
	}
}

/* Settled for retention (below), and UNKNOWN: never sent again by itself,
 * so a campaign does not wait for it (a late receipt still moves it). */
bool batch_msg_settled(enum msg_status s, bool channel_has_receipts)
{
	return s == MSG_UNKNOWN || msg_status_settled(s, channel_has_receipts);
}

/*
 * Settled is final, and DELIVERED too: the only thing that can still happen
 * to a delivered message is a READ receipt, which many never send (SMS has
 * no read receipts at all; WhatsApp users turn them off). Treating DELIVERED
 * as open would keep most successful messages forever. The set is closed
 * under status_decide (nothing moves a settled message back to an open
 * status: a late DELIVERED after FAILED stays settled), which is what lets
 * retention check a month once and then drop it.
 */
bool msg_status_settled(enum msg_status s, bool channel_has_receipts)
{
	return s == MSG_DELIVERED || msg_status_final(s, channel_has_receipts);
}

static bool in_chain(enum msg_status s)
{
	return s <= MSG_READ;
}

enum status_verdict status_decide(enum msg_status cur, enum msg_status next)
{
	if (cur == next)
		return STATUS_IGNORE_DUP;
	switch (next) {
	case MSG_SENDING:
		return cur == MSG_QUEUED ? STATUS_APPLY : STATUS_IGNORE_STALE;
	case MSG_QUEUED: /* retry or lease expiry */
		return cur == MSG_SENDING ? STATUS_APPLY : STATUS_IGNORE_STALE;
	case MSG_SENT:
		return (cur < MSG_SENT || cur == MSG_UNKNOWN) ? STATUS_APPLY : STATUS_IGNORE_STALE;
	case MSG_DELIVERED:
		if (in_chain(cur))
			return cur < MSG_DELIVERED ? STATUS_APPLY : STATUS_IGNORE_STALE;
		return (cur == MSG_FAILED || cur == MSG_UNDELIVERED || cur == MSG_UNKNOWN)
		           ? STATUS_APPLY
		           : STATUS_IGNORE_STALE;
	case MSG_READ:
		if (cur == MSG_DELIVERED)
			return STATUS_APPLY;
		if (in_chain(cur) || cur == MSG_FAILED || cur == MSG_UNDELIVERED ||
		    cur == MSG_UNKNOWN)
			return STATUS_APPLY_IMPLIED;
		return STATUS_IGNORE_STALE;
	case MSG_FAILED:
	case MSG_UNDELIVERED:
		return (cur <= MSG_SENT || cur == MSG_UNKNOWN) ? STATUS_APPLY : STATUS_IGNORE_STALE;
	case MSG_CANCELLED:
	case MSG_EXPIRED:
	case MSG_SUPPRESSED:
		return cur == MSG_QUEUED ? STATUS_APPLY : STATUS_IGNORE_STALE;
	case MSG_UNKNOWN:
		return cur == MSG_SENDING ? STATUS_APPLY : STATUS_IGNORE_STALE;
	default:
		return STATUS_IGNORE_STALE;
	}
}

const char *status_verdict_name(enum status_verdict v)
{
	switch (v) {
	case STATUS_APPLY:
		return "applied";
	case STATUS_APPLY_IMPLIED:
		return "applied_implied";
	case STATUS_IGNORE_DUP:
		return "ignored_duplicate";
	default:
		return "ignored_stale";
	}
}
