/*
 * stats_daily.c - GET /v1/stats/daily?days=N: the tenant's
 * messages per UTC day and channel (accepted, sent, delivered, read,
 * failed) for the last N days (1-31, default 2: today and yesterday),
 * oldest first, with each day's delivery rate (delivered / sent). Read
 * from the daily counters the store keeps as messages change
 * (store/daily.h), never from a scan of messages. The counters are the
 * tenant's, not split by unit: a tenant-wide credential only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "store/daily.h"

#define DAYS_DEFAULT 2
#define DAYS_MAX 31
#define CHANNELS_MAX 16

static json_t *day_json(int32_t day, const struct daily_ent *v, size_t n, const char **chans,
                        size_t nch)
{
	char date[16];
	time_t t = (time_t)day * 86400;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%Y-%m-%d", &tm);
	json_t *arr = json_array();
	for (size_t c = 0; arr && c < nch; c++) {
		int64_t k[DAILY__COUNT] = {0};
		for (size_t i = 0; i < n; i++)
			if (v[i].day == day && !strcmp(v[i].channel, chans[c]) &&
			    (unsigned)v[i].kind < DAILY__COUNT)
				k[v[i].kind] += v[i].n;
		json_t *o = json_pack(
		    "{s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "channel", chans[c], "accepted",
		    (json_int_t)k[DAILY_ACCEPTED], "sent", (json_int_t)k[DAILY_SENT], "delivered",
		    (json_int_t)k[DAILY_DELIVERED], "read", (json_int_t)k[DAILY_READ], "failed",
		    (json_int_t)k[DAILY_FAILED], "delivery_rate",
		    k[DAILY_SENT] ? json_real((double)k[DAILY_DELIVERED] / (double)k[DAILY_SENT])
		                  : json_null());
		if (!o || json_array_append_new(arr, o) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	return arr ? json_pack("{s:s, s:o}", "date", date, "channels", arr) : NULL;
}

/* The range's most frequent failure codes (DAILY_ERROR counters), each
 * with what its channel's error table says it means. */
#define TOP_CODES 10
static json_t *failure_codes_json(const struct daily_ent *v, size_t n)
{
	struct code_sum {
		const char *channel, *code;
		int64_t n;
	} top[64];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i].kind != DAILY_ERROR || !v[i].code[0])
			continue;
		size_t j = 0;
		while (j < k &&
		       (strcmp(top[j].channel, v[i].channel) || strcmp(top[j].code, v[i].code)))
			j++;
		if (j == k) {
			if (k == sizeof top / sizeof *top)
				continue; /* bounded: codes past the first 64 distinct ones are left
				             out */
			top[k++] = (struct code_sum){v[i].channel, v[i].code, 0};
		}
		top[j].n += v[i].n;
	}
	for (size_t i = 1; i < k; i++) /* by count, then code: a stable answer */
		for (size_t j = i; j > 0 && (top[j].n > top[j - 1].n ||
		                             (top[j].n == top[j - 1].n &&
		                              strcmp(top[j].code, top[j - 1].code) < 0));
		     j--) {
			struct code_sum t = top[j];
			top[j] = top[j - 1];
			top[j - 1] = t;
		}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < k && i < TOP_CODES; i++) {
		const struct channel_ops *ops = channel_find(top[i].channel);
		const char *meaning =
		    ops && ops->error_meaning ? ops->error_meaning(top[i].code) : NULL;
		json_t *o = json_pack("{s:s, s:s, s:I, s:o}", "channel", top[i].channel, "code",
		                      top[i].code, "count", (json_int_t)top[i].n, "meaning",
		                      meaning ? json_string(meaning) : json_null());
		if (!o || json_array_append_new(arr, o) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	return arr;
}

enum MHD_Result api_stats_daily(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const params[] = {"days", NULL};
	int rc = api_query_check(r, params, &err);
	int days = DAYS_DEFAULT;
	const char *v = api_query(r, "days");
	if (rc == 0 && v && *v) {
		char *end;
		errno = 0;
		long d = strtol(v, &end, 10);
		if (errno || *end || d < 1 || d > DAYS_MAX)
			rc = hr_fail(&err, HR_EINVAL, "days",
			             "days must be an integer from 1 to %d", DAYS_MAX);
		else
			days = (int)d;
	}
	if (rc)
		return api_fail(r, rc, &err);
	int32_t today = daily_day(hr_now_us());
	struct daily_ent *rows = NULL;
	size_t n = 0;
	rc = st->ops->daily_counts(st, r->tenant, today - days + 1, today, &rows, &n);
	if (rc)
		return api_fail(r, rc, NULL);
	/* Every channel the tenant has an account on, then any other counted. */
	const char *chans[CHANNELS_MAX];
	size_t nch = 0;
	const struct channel_account *a;
	for (size_t i = 0; (a = account_set_at(r->srv->o.accounts, i)) != NULL; i++) {
		if (strcmp(a->tenant_id, r->tenant) != 0)
			continue;
		bool seen = false;
		for (size_t c = 0; c < nch; c++)
			seen = seen || !strcmp(chans[c], a->ops->name);
		if (!seen && nch < CHANNELS_MAX)
			chans[nch++] = a->ops->name;
	}
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t c = 0; c < nch; c++)
			seen = seen || !strcmp(chans[c], rows[i].channel);
		if (!seen && nch < CHANNELS_MAX)
			chans[nch++] = rows[i].channel;
	}
	json_t *codes = failure_codes_json(rows, n);
	json_t *out = codes ? json_array() : NULL;
	for (int32_t d = today - days + 1; out && d <= today; d++) {
		json_t *dj = day_json(d, rows, n, chans, nch);
		if (!dj || json_array_append_new(out, dj) != 0) {
			json_decref(out);
			out = NULL;
		}
	}
	free(rows);
	if (!out) {
		json_decref(codes);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(
	    r, 200,
	    json_pack("{s:s, s:o, s:o}", "timezone", "UTC", "days", out, "failure_codes", codes),
	    NULL);
}
