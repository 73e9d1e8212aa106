/*
 * fuzz_webhook_same.h - the oracle the channel targets share for webhook
 * bodies read with jsonr (channel_fast_json on): the body parsed the fast
 * way and with channel_fast_json off (jansson's way) gives the same code,
 * the same error (field and text) and the same statuses, replies and
 * follow-up requests, field for field. Include after fuzz_channel.h.
 */
#ifndef HR_FUZZ_WEBHOOK_SAME_H
#define HR_FUZZ_WEBHOOK_SAME_H

#include <stdlib.h>
#include <string.h>

#include "channels/channel.h"

static int fz_strcmp_null(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b);
}

static bool fz_parsed_same(const struct wh_parsed *f, const struct wh_parsed *j)
{
	if (f->nstatuses != j->nstatuses || f->ninbound != j->ninbound ||
	    f->nfollowups != j->nfollowups)
		return false;
	for (size_t i = 0; i < f->nstatuses; i++) {
		const struct wh_status *a = &f->statuses[i], *b = &j->statuses[i];
		if (strcmp(a->provider_id, b->provider_id) || a->status != b->status ||
		    a->provider_at != b->provider_at || strcmp(a->provider_ts, b->provider_ts) ||
		    strcmp(a->error_code, b->error_code) || strcmp(a->error_text, b->error_text) ||
		    strcmp(a->client_ref, b->client_ref))
			return false;
	}
	for (size_t i = 0; i < f->ninbound; i++) {
		const struct wh_inbound *a = &f->inbound[i], *b = &j->inbound[i];
		if (strcmp(a->provider_msg_id, b->provider_msg_id) || a->optout != b->optout ||
		    fz_strcmp_null(a->auto_reply, b->auto_reply) ||
		    strcmp(a->context_id, b->context_id) || strcmp(a->from, b->from) ||
		    strcmp(a->kind, b->kind) || fz_strcmp_null(a->text, b->text) ||
		    fz_strcmp_null(a->payload, b->payload) || a->provider_at != b->provider_at)
			return false;
	}
	for (size_t i = 0; i < f->nfollowups; i++) {
		const struct http_req *a = &f->followups[i], *b = &j->followups[i];
		if (fz_strcmp_null(a->url, b->url) || a->body_len != b->body_len ||
		    (a->body_len && memcmp(a->body, b->body, a->body_len)) ||
		    fz_strcmp_null(a->userpwd, b->userpwd))
			return false;
		const struct curl_slist *ha = a->headers, *hb = b->headers;
		for (; ha && hb; ha = ha->next, hb = hb->next)
			if (strcmp(ha->data, hb->data))
				return false;
		if (ha || hb)
			return false;
	}
	return true;
}

/* Aborts unless a's webhook_parse reads body the same both ways. */
static void fz_webhook_same(const struct channel_account *a, const char *body, size_t len)
{
	struct wh_parsed f = {0}, j = {0};
	struct hr_err ef = {0}, ej = {0};
	channel_fast_json = true;
	int rf = a->ops->webhook_parse(a, body, len, &f, &ef);
	channel_fast_json = false;
	int rj = a->ops->webhook_parse(a, body, len, &j, &ej);
	channel_fast_json = true;
	if (rf != rj || strcmp(ef.field, ej.field) || strcmp(ef.msg, ej.msg) ||
	    !fz_parsed_same(&f, &j))
		abort();
	wh_parsed_clear(&f);
	wh_parsed_clear(&j);
}

#endif
