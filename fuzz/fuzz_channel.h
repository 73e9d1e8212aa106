/*
 * fuzz_channel.h - what the four channel targets (fuzz_whatsapp.c,
 * fuzz_twilio.c, fuzz_rbm.c, fuzz_telegram.c) share: an input split into a
 * webhook request, and one pass through everything an adapter does with
 * outside bytes, in the order the ingress (src/api/webhooks.c) and the
 * applier (src/webhooks/applier.c) call it:
 *
 *   handshake -> signature check -> dedupe key -> parse (the applier's)
 *
 * plus the provider's answer to a send (parse_send: classified the same with
 * channel_fast_json on and off), the request built from the body as a
 * message's content (build_send: the same both ways), to a status lookup
 * (parse_lookup), a recipient address (normalize_recipient) and message
 * content (validate), which also come from outside.
 *
 * Input layout (every part may be empty):
 *   byte 0          flags: bit 0 GET (else POST); bits 1-7 pick the HTTP
 *                   status of the send answer (fz_statuses)
 *   line 1          every header's value (signature, idempotency token,
 *                   Retry-After) and the recipient address
 *   line 2          the query string: name=value&... (up to FZ_QMAX pairs)
 *   the rest        the body, NUL-terminated past its length as the
 *                   server's body_append leaves it; NULL when empty, as
 *                   the server passes a request without one
 *
 * Header-only on purpose: one translation unit per target includes it.
 */
#ifndef HR_FUZZ_CHANNEL_H
#define HR_FUZZ_CHANNEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channels/channel.h"
#include "herald.h"

#define FZ_QMAX 8

struct fz_req {
	unsigned flags;
	char *line1;
	char *qbuf;
	const char *qk[FZ_QMAX], *qv[FZ_QMAX];
	size_t nq;
	char *body;
	size_t len;
};

static const long fz_statuses[] = {0,   200, 201, 202, 204, 400, 401, 403,
                                   404, 409, 429, 500, 502, 503, 504, 302};

/* A heap copy of n bytes, NUL-terminated (the harness owns every buffer so
 * ASan sees reads past the bytes the adapter was given). */
static char *fz_dup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* The next line of [*p, end): a heap copy without its '\n'; *p moves past it. */
static char *fz_line(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = fz_dup(*p, n);
	*p += n + (nl ? 1 : 0);
	return s;
}

static void fz_req_split(const uint8_t *data, size_t size, struct fz_req *r)
{
	memset(r, 0, sizeof *r);
	const uint8_t *p = data, *end = data + size;
	if (p < end)
		r->flags = *p++;
	r->line1 = fz_line(&p, end);
	r->qbuf = fz_line(&p, end);
	for (char *q = r->qbuf; q && *q && r->nq < FZ_QMAX;) {
		char *amp = strchr(q, '&');
		if (amp)
			*amp = '\0';
		char *eq = strchr(q, '=');
		if (eq)
			*eq = '\0';
		r->qk[r->nq] = q;
		r->qv[r->nq] = eq ? eq + 1 : "";
		r->nq++;
		q = amp ? amp + 1 : NULL;
	}
	r->len = (size_t)(end - p);
	r->body = r->len ? fz_dup(p, r->len) : NULL;
}

static void fz_req_free(struct fz_req *r)
{
	free(r->line1);
	free(r->qbuf);
	free(r->body);
}

static const char *fz_header(void *ctx, const char *name)
{
	(void)name;
	struct fz_req *r = ctx;
	return r->line1[0] ? r->line1 : NULL;
}

static const char *fz_query(void *ctx, const char *name)
{
	struct fz_req *r = ctx;
	for (size_t i = 0; i < r->nq; i++)
		if (strcmp(r->qk[i], name) == 0)
			return r->qv[i];
	return NULL;
}

/* The account the target fuzzes, loaded once (secrets from the environment
 * the target set; nothing is read from disk or the network). */
static struct channel_account *fz_account(const char *id, const char *channel, const char *config)
{
	struct account_row row = {.tenant_id = "t1"};
	hr_strlcpy(row.id, id, sizeof row.id);
	hr_strlcpy(row.channel, channel, sizeof row.channel);
	row.config = (char *)config;
	struct channel_account *a = NULL;
	struct hr_err err = {0};
	if (channel_account_new(&row, &a, &err) != 0) {
		fprintf(stderr, "fuzz: cannot load the %s account: %s\n", channel, err.msg);
		abort();
	}
	hr_strlcpy(a->webhook_url, "https://herald.example/webhooks/x/y", sizeof a->webhook_url);
	return a;
}

/* A string field of the adapter's output must end inside its array. */
#define FZ_TERMINATED(arr)                                                                         \
	do {                                                                                       \
		if (!memchr((arr), '\0', sizeof(arr)))                                             \
			abort();                                                                   \
	} while (0)

static void fz_check_parsed(const struct wh_parsed *p)
{
	for (size_t i = 0; i < p->nstatuses; i++) {
		const struct wh_status *s = &p->statuses[i];
		FZ_TERMINATED(s->provider_id);
		FZ_TERMINATED(s->provider_ts);
		FZ_TERMINATED(s->error_code);
		FZ_TERMINATED(s->error_text);
		FZ_TERMINATED(s->client_ref);
	}
	for (size_t i = 0; i < p->ninbound; i++) {
		const struct wh_inbound *in = &p->inbound[i];
		FZ_TERMINATED(in->provider_msg_id);
		FZ_TERMINATED(in->context_id);
		FZ_TERMINATED(in->from);
		FZ_TERMINATED(in->kind);
		if (in->optout < -1 || in->optout > 1)
			abort();
	}
}

/* An error must say what is wrong. */
static void fz_check_err(int rc, const struct hr_err *err)
{
	if (rc < 0 && rc != HR_ENOMEM && err->msg[0] == '\0')
		abort();
}

/* One pass through the adapter; returns the signature check's result. */
static int fz_drive(struct channel_account *a, const struct fz_req *r)
{
	const struct channel_ops *ops = a->ops;
	struct wh_request req = {
	    .method = (r->flags & 1) ? "GET" : "POST",
	    .url = a->webhook_url,
	    .body = r->body,
	    .body_len = r->len,
	    .header = fz_header,
	    .query = fz_query,
	    .ctx = (void *)r,
	};
	if (ops->webhook_handshake) {
		int status = 0;
		char *answer = NULL;
		int rc = ops->webhook_handshake(a, &req, &status, &answer);
		if (rc == 1 && (!answer || status < 100 || status > 599))
			abort();
		free(answer);
	}
	struct hr_err err = {0};
	int vrc = ops->webhook_verify(a, &req, &err);
	fz_check_err(vrc, &err);
	if (vrc != 0 && vrc != HR_EAUTH && vrc != HR_ENOMEM)
		abort();
	char dedupe[128];
	memset(dedupe, 'x', sizeof dedupe);
	ops->webhook_dedupe_key(&req, dedupe);
	FZ_TERMINATED(dedupe);

	/* The applier parses what the ingress stored: the same bytes. */
	struct wh_parsed parsed = {0};
	memset(&err, 0, sizeof err);
	int prc = ops->webhook_parse(a, r->body, r->len, &parsed, &err);
	fz_check_err(prc, &err);
	if (prc == 0)
		fz_check_parsed(&parsed);
	else if (parsed.nstatuses || parsed.ninbound)
		abort(); /* "on error out is left as it was" */
	wh_parsed_clear(&parsed);

	struct send_outcome out;
	memset(&out, 0, sizeof out);
	long status = fz_statuses[(r->flags >> 1) % (sizeof fz_statuses / sizeof fz_statuses[0])];
	ops->parse_send(a, status, r->body ? r->body : "", r->len, r->line1[0] ? r->line1 : NULL,
	                &out);
	FZ_TERMINATED(out.provider_id);
	FZ_TERMINATED(out.error_code);
	FZ_TERMINATED(out.error_text);
	FZ_TERMINATED(out.new_recipient);
	if (out.cls == OUTCOME_RATE_LIMITED && out.rate_scope == RATE_SCOPE_NONE)
		abort(); /* channel.h: a bug in the adapter */
	if (out.retry_after_us < 0 || out.retry_after_us > 86400LL * 1000000)
		abort();
	/* reading a success answer without jansson changes no outcome. */
	struct send_outcome ref;
	memset(&ref, 0, sizeof ref);
	channel_fast_json = false;
	ops->parse_send(a, status, r->body ? r->body : "", r->len, r->line1[0] ? r->line1 : NULL,
	                &ref);
	channel_fast_json = true;
	if (out.cls != ref.cls || strcmp(out.provider_id, ref.provider_id) != 0 ||
	    strcmp(out.error_code, ref.error_code) != 0 ||
	    strcmp(out.error_text, ref.error_text) != 0 ||
	    /* an HTTP-date Retry-After counts from now: the calls are apart */
	    llabs(out.retry_after_us - ref.retry_after_us) > 1000000 ||
	    out.account_blocked != ref.account_blocked || out.rate_scope != ref.rate_scope ||
	    strcmp(out.new_recipient, ref.new_recipient) != 0 ||
	    out.suppress_recipient != ref.suppress_recipient)
		abort();
	if (ops->parse_lookup) {
		struct stale_answer sa;
		memset(&sa, 0, sizeof sa);
		ops->parse_lookup(a, status, r->body ? r->body : "", r->len, &sa);
	}

	char addr[HR_ADDR_MAX];
	memset(&err, 0, sizeof err);
	int nrc = ops->normalize_recipient(r->line1, addr, &err);
	fz_check_err(nrc, &err);
	if (nrc == 0)
		FZ_TERMINATED(addr);

	/* a request built from the body as a message's content is the
	 * same (code, URL, body bytes) with channel_fast_json on and off. */
	if (r->body) {
		struct message m = {.id = "01JABCDEFGHJKMNPQRSTVWXYZ0"};
		hr_strlcpy(m.recipient, nrc == 0 ? addr : "+447911123456", sizeof m.recipient);
		m.content = r->body;
		m.body = r->line1;
		struct http_req q1, q2;
		struct hr_err e1 = {0}, e2 = {0};
		int b1 = ops->build_send(a, &m, &q1, &e1);
		channel_fast_json = false;
		int b2 = ops->build_send(a, &m, &q2, &e2);
		channel_fast_json = true;
		if (b1 != b2 ||
		    (b1 == 0 && (strcmp(q1.url, q2.url) != 0 || q1.body_len != q2.body_len ||
		                 memcmp(q1.body, q2.body, q1.body_len) != 0)))
			abort();
		if (b1 == 0) {
			http_req_clear(&q1);
			http_req_clear(&q2);
		}
	}

	json_t *content =
	    r->body ? json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (content) {
		memset(&err, 0, sizeof err);
		fz_check_err(ops->validate(content, &err), &err);
		json_decref(content);
	}
	return vrc;
}

#endif
