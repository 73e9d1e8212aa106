/*
 * daily.c - the daily counters' rule and their in-memory aggregate
 * (daily.h).
 */
#include <stdlib.h>
#include <string.h>

#include "store/daily.h"

const char *daily_kind_name(enum daily_kind k)
{
	static const char *const names[DAILY__COUNT] = {"accepted", "sent", "delivered", "read",
	                                                "failed"};
	return (unsigned)k < DAILY__COUNT ? names[k] : NULL;
}

int32_t daily_day(int64_t at_us)
{
	int64_t s = at_us / 1000000;
	return (int32_t)(s >= 0 ? s / 86400 : -((-s + 86399) / 86400));
}

long daily_add_at(struct daily_acc *a, const char *tenant_id, const char *channel, int32_t day,
                  int kind, const char *code, int64_t n)
{
	if (!n || !tenant_id || !channel)
		return -1;
	if (!code)
		code = "";
	/* The latest key is the likeliest (a group's messages share a few). */
	for (size_t i = a->n; i-- > 0;) {
		struct daily_ent *e = &a->v[i];
		if (e->kind == kind && e->day == day && strcmp(e->channel, channel) == 0 &&
		    strcmp(e->code, code) == 0 && strcmp(e->tenant_id, tenant_id) == 0) {
			e->n += n;
			return (long)i;
		}
	}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 8;
		struct daily_ent *v = realloc(a->v, cap * sizeof *v);
		if (!v) {
			a->oom = true;
			return -1;
		}
		a->v = v;
		a->cap = cap;
	}
	struct daily_ent *e = &a->v[a->n];
	memset(e, 0, sizeof *e);
	hr_strlcpy(e->tenant_id, tenant_id, sizeof e->tenant_id);
	hr_strlcpy(e->channel, channel, sizeof e->channel);
	e->day = day;
	e->kind = (int8_t)kind;
	hr_utf8_copy(e->code, code, sizeof e->code);
	e->n = n;
	return (long)a->n++;
}

void daily_add(struct daily_acc *a, const char *tenant_id, const char *channel, int32_t day,
               int kind, const char *code, int64_t n)
{
	(void)daily_add_at(a, tenant_id, channel, day, kind, code, n);
}

static bool at_least_sent(int s)
{
	return s == MSG_SENT || s == MSG_DELIVERED || s == MSG_READ;
}

static bool at_least_delivered(int s)
{
	return s == MSG_DELIVERED || s == MSG_READ;
}

static bool failed(int s)
{
	return s == MSG_FAILED || s == MSG_UNDELIVERED;
}

int daily_kinds(int from, int to, int kinds[DAILY__COUNT])
{
	int n = 0;
	if (from == to)
		return 0;
	if (from < 0)
		kinds[n++] = DAILY_ACCEPTED;
	if (at_least_sent(to) && !at_least_sent(from))
		kinds[n++] = DAILY_SENT;
	if (at_least_delivered(to) && !at_least_delivered(from))
		kinds[n++] = DAILY_DELIVERED;
	if (to == MSG_READ)
		kinds[n++] = DAILY_READ;
	if (failed(to) && !failed(from))
		kinds[n++] = DAILY_FAILED;
	return n;
}

bool daily_counts_error(int from, int to, const char *code)
{
	return code && code[0] && failed(to) && !failed(from);
}

void daily_transition(struct daily_acc *a, const char *tenant_id, const char *channel,
                      int64_t at_us, int from, int to)
{
	int kinds[DAILY__COUNT];
	int n = daily_kinds(from, to, kinds);
	int32_t day = n ? daily_day(at_us) : 0;
	for (int i = 0; i < n; i++)
		daily_add(a, tenant_id, channel, day, kinds[i], NULL, 1);
}

void daily_merge(struct daily_acc *into, const struct daily_acc *from)
{
	for (size_t i = 0; i < from->n; i++) {
		const struct daily_ent *e = &from->v[i];
		daily_add(into, e->tenant_id, e->channel, e->day, e->kind, e->code, e->n);
	}
	if (from->oom)
		into->oom = true;
}

void daily_clear(struct daily_acc *a)
{
	a->n = 0;
	a->oom = false;
}

void daily_free(struct daily_acc *a)
{
	free(a->v);
	memset(a, 0, sizeof *a);
}

bool daily_copy(struct daily_acc *into, const struct daily_acc *from)
{
	daily_clear(into);
	daily_merge(into, from);
	return !into->oom;
}
