/*
 * metrics.c - process-wide Prometheus counters, gauges and histograms.
 *
 * The hot paths (dispatcher, ingress, applier, every HTTP response) only do
 * relaxed atomic adds on fixed arrays indexed by a small channel slot, so
 * there is no lock and no allocation per event. Rendering takes a snapshot
 * of each number independently (a scrape is not a consistent cut, which is
 * what Prometheus expects of counters) and adds gauges read from the store.
 *
 * This file is the one place with global mutable state, as metrics.h says.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"
#include "store/store.h"

/* Channel slots: a fixed table so a counter is an array index, not a lookup. */
enum { M_CH_WHATSAPP, M_CH_SMS, M_CH_RCS, M_CH_TELEGRAM, M_CH_OTHER, M_CH__COUNT };

static const char *const metrics_channels[M_CH__COUNT] = {
    "whatsapp", "sms", "rcs", "telegram", "other",
};

static const char *const metrics_send_names[M_SEND__COUNT] = {
    [M_SEND_ATTEMPTED] = "attempted",
    [M_SEND_SUCCEEDED] = "succeeded",
    [M_SEND_FAILED] = "failed",
    [M_SEND_RETRIED] = "retried",
};

static const char *const metrics_wh_names[M_WH__COUNT] = {
    [M_WH_RECEIVED] = "received", [M_WH_REJECTED] = "rejected", [M_WH_APPLIED] = "applied",
    [M_WH_IGNORED] = "ignored",   [M_WH_INBOUND] = "inbound",
};

/* Latency bucket upper bounds in microseconds and as Prometheus "le" labels. */
#define M_BUCKETS 13
static const int64_t metrics_bucket_us[M_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const metrics_bucket_le[M_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "10",
};

/* HTTP status classes rendered: 2xx, 4xx, 5xx (others are not produced). */
enum { M_HTTP_2XX, M_HTTP_4XX, M_HTTP_5XX, M_HTTP__COUNT };
static const char *const metrics_http_names[M_HTTP__COUNT] = {"2xx", "4xx", "5xx"};

static _Atomic uint64_t m_sends[M_CH__COUNT][M_SEND__COUNT];
static _Atomic uint64_t m_webhooks[M_CH__COUNT][M_WH__COUNT];
/* Per-bucket (non-cumulative) counts; the last slot is "above every bound". */
static _Atomic uint64_t m_lat_bucket[M_CH__COUNT][M_BUCKETS + 1];
static _Atomic uint64_t m_lat_sum_us[M_CH__COUNT];
static _Atomic uint64_t m_lat_count[M_CH__COUNT];
static _Atomic int64_t m_inflight;
static _Atomic uint64_t m_http[M_HTTP__COUNT];
static _Atomic uint64_t m_accepted;
static _Atomic uint64_t m_guard[M_GUARD__COUNT];
static _Atomic uint64_t m_retained_msgs, m_retained_events, m_retained_months;
static _Atomic uint64_t m_unknown[M_CH__COUNT][M_UNK__COUNT];
static _Atomic uint64_t m_resend_unknown[M_CH__COUNT][M_UNK__COUNT];

static const char *const metrics_unknown_names[M_UNK__COUNT] = {
    [M_UNK_TIMEOUT] = "timeout_after_write",
    [M_UNK_CONN_LOST] = "connection_lost_after_write",
    [M_UNK_LEASE] = "lease_expired_in_flight",
    [M_UNK_GATEWAY] = "gateway_timeout",
};

static int metrics_slot(const char *channel)
{
	if (channel)
		for (int i = 0; i < M_CH_OTHER; i++)
			if (strcmp(channel, metrics_channels[i]) == 0)
				return i;
	return M_CH_OTHER;
}

void metrics_send(const char *channel, enum metric_send what, int n)
{
	if ((unsigned)what >= M_SEND__COUNT || n <= 0)
		return;
	atomic_fetch_add_explicit(&m_sends[metrics_slot(channel)][what], (uint64_t)n,
	                          memory_order_relaxed);
}

void metrics_send_latency(const char *channel, int64_t us)
{
	int ch = metrics_slot(channel);
	if (us < 0)
		us = 0;
	int b = 0;
	while (b < M_BUCKETS && us > metrics_bucket_us[b])
		b++;
	atomic_fetch_add_explicit(&m_lat_bucket[ch][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m_lat_sum_us[ch], (uint64_t)us, memory_order_relaxed);
	atomic_fetch_add_explicit(&m_lat_count[ch], 1, memory_order_relaxed);
}

void metrics_inflight_add(int delta)
{
	atomic_fetch_add_explicit(&m_inflight, delta, memory_order_relaxed);
}

void metrics_webhook(const char *channel, enum metric_webhook what, int n)
{
	if ((unsigned)what >= M_WH__COUNT || n <= 0)
		return;
	atomic_fetch_add_explicit(&m_webhooks[metrics_slot(channel)][what], (uint64_t)n,
	                          memory_order_relaxed);
}

void metrics_http(int status)
{
	int cls;
	if (status >= 200 && status < 300)
		cls = M_HTTP_2XX;
	else if (status >= 400 && status < 500)
		cls = M_HTTP_4XX;
	else if (status >= 500 && status < 600)
		cls = M_HTTP_5XX;
	else
		return;
	atomic_fetch_add_explicit(&m_http[cls], 1, memory_order_relaxed);
}

void metrics_http_guard(enum metric_http_guard what)
{
	if ((unsigned)what < M_GUARD__COUNT)
		atomic_fetch_add_explicit(&m_guard[what], 1, memory_order_relaxed);
}

const char *metrics_unknown_name(enum metric_unknown why)
{
	return (unsigned)why < M_UNK__COUNT ? metrics_unknown_names[why] : NULL;
}

void metrics_unknown(const char *channel, enum metric_unknown why, int n)
{
	if ((unsigned)why < M_UNK__COUNT && n > 0)
		atomic_fetch_add_explicit(&m_unknown[metrics_slot(channel)][why], (uint64_t)n,
		                          memory_order_relaxed);
}

void metrics_resend_unknown(const char *channel, enum metric_unknown why, int n)
{
	if ((unsigned)why < M_UNK__COUNT && n > 0)
		atomic_fetch_add_explicit(&m_resend_unknown[metrics_slot(channel)][why],
		                          (uint64_t)n, memory_order_relaxed);
}

void metrics_accepted(int n)
{
	if (n > 0)
		atomic_fetch_add_explicit(&m_accepted, (uint64_t)n, memory_order_relaxed);
}

static _Atomic uint64_t m_callback[M_CB__COUNT];

void metrics_callback(enum metric_callback what, int n)
{
	if ((unsigned)what < M_CB__COUNT && n > 0)
		atomic_fetch_add_explicit(&m_callback[what], (uint64_t)n, memory_order_relaxed);
}

static _Atomic uint64_t m_reconcile[M_REC__COUNT];
static const char *const reconcile_names[M_REC__COUNT] = {
    [M_REC_LEASE_REQUEUED] = "lease_requeued", [M_REC_LEASE_UNKNOWN] = "lease_unknown",
    [M_REC_EXPIRED] = "expired",               [M_REC_LOOKUP_APPLIED] = "lookup_applied",
    [M_REC_STALE] = "stale",                   [M_REC_FALLBACK_DUE] = "fallback_deadline",
    [M_REC_INBOX_PARKED] = "inbox_parked",
};

void metrics_reconcile(enum metric_reconcile what, int n)
{
	if ((unsigned)what < M_REC__COUNT && n > 0)
		atomic_fetch_add_explicit(&m_reconcile[what], (uint64_t)n, memory_order_relaxed);
}

#define M_FB__COUNT 7
static _Atomic uint64_t m_fallback[M_FB__COUNT];
static const char *const fallback_names[M_FB__COUNT] = {
    "failed", "undelivered", "unknown", "not_rcs_capable", "no_receipt", "stale", "other"};

void metrics_fallback(const char *reason, int n)
{
	if (n <= 0)
		return;
	int i = 0;
	while (i < M_FB__COUNT - 1 && (!reason || strcmp(reason, fallback_names[i]) != 0))
		i++;
	atomic_fetch_add_explicit(&m_fallback[i], (uint64_t)n, memory_order_relaxed);
}

void metrics_retention(int64_t messages, int64_t events, int months)
{
	if (messages > 0)
		atomic_fetch_add_explicit(&m_retained_msgs, (uint64_t)messages,
		                          memory_order_relaxed);
	if (events > 0)
		atomic_fetch_add_explicit(&m_retained_events, (uint64_t)events,
		                          memory_order_relaxed);
	if (months > 0)
		atomic_fetch_add_explicit(&m_retained_months, (uint64_t)months,
		                          memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static void render_header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The latency histogram: cumulative buckets, +Inf equal to _count, sum in seconds. */
static void render_latency(FILE *f)
{
	static const char name[] = "herald_send_latency_seconds";
	render_header(f, name, "histogram", "Provider round trip of one send attempt.");
	for (int ch = 0; ch < M_CH__COUNT; ch++) {
		const char *chn = metrics_channels[ch];
		uint64_t cum = 0;
		for (int b = 0; b < M_BUCKETS; b++) {
			cum += ld(&m_lat_bucket[ch][b]);
			fprintf(f, "%s_bucket{channel=\"%s\",le=\"%s\"} %llu\n", name, chn,
			        metrics_bucket_le[b], (unsigned long long)cum);
		}
		cum += ld(&m_lat_bucket[ch][M_BUCKETS]);
		fprintf(f, "%s_bucket{channel=\"%s\",le=\"+Inf\"} %llu\n", name, chn,
		        (unsigned long long)cum);
		uint64_t sum = ld(&m_lat_sum_us[ch]);
		fprintf(f, "%s_sum{channel=\"%s\"} %llu.%06llu\n", name, chn,
		        (unsigned long long)(sum / 1000000), (unsigned long long)(sum % 1000000));
		/* Count from the bucket total so +Inf and _count always agree. */
		fprintf(f, "%s_count{channel=\"%s\"} %llu\n", name, chn, (unsigned long long)cum);
	}
}

/* Gauges from the store: skipped (not rendered as zero) when a read fails, so
 * a scrape never reports an empty queue that is really an unreadable one.
 * Messages by status come from the counts the store keeps as messages
 * change (store.h message_gauges: a handful of rows), never from counting
 * the message table, so a scrape costs the same at ten messages or ten
 * million. They count the messages in the store: retention's deletes
 * take theirs out. */
static void render_store(FILE *f, struct store *st)
{
	int64_t counts[MSG__COUNT];
	if (st->ops->message_gauges && st->ops->message_gauges(st, counts) == 0) {
		render_header(f, "herald_queue_depth", "gauge",
		              "Messages in the store by current status.");
		for (int s = 0; s < MSG__COUNT; s++)
			fprintf(f, "herald_queue_depth{status=\"%s\"} %lld\n",
			        msg_status_name((enum msg_status)s), (long long)counts[s]);
	}
	int64_t pending;
	if (st->ops->inbox_pending && st->ops->inbox_pending(st, &pending) == 0) {
		render_header(f, "herald_webhook_inbox_pending", "gauge",
		              "Webhook inbox rows not yet applied.");
		fprintf(f, "herald_webhook_inbox_pending %lld\n", (long long)pending);
	}
	int64_t cb[CB__COUNT];
	if (st->ops->callback_counts && st->ops->callback_counts(st, cb) == 0) {
		render_header(f, "herald_callback_outbox_depth", "gauge",
		              "Callbacks to client systems waiting (pending) or given up (dead).");
		fprintf(f, "herald_callback_outbox_depth{state=\"pending\"} %lld\n",
		        (long long)cb[CB_PENDING]);
		fprintf(f, "herald_callback_outbox_depth{state=\"dead\"} %lld\n",
		        (long long)cb[CB_DEAD]);
	}
	/* The group commit's effect: jobs (an accept, a claim, a batch of
	 * outcomes) per transaction. The benchmark sizes its raw SQLite
	 * baseline's transactions from these. */
	if (st->ops->write_stats) {
		uint64_t commits = 0, jobs = 0;
		st->ops->write_stats(st, &commits, &jobs);
		render_header(f, "herald_store_commits_total", "counter",
		              "Transactions the store's writer committed.");
		fprintf(f, "herald_store_commits_total %llu\n", (unsigned long long)commits);
		render_header(f, "herald_store_jobs_total", "counter",
		              "Writes (jobs) the store's writer ran, grouped into its commits.");
		fprintf(f, "herald_store_jobs_total %llu\n", (unsigned long long)jobs);
	}
}

static void (*m_extra_fn)(void *arg, struct hr_buf *b);
static void *m_extra_arg;

void metrics_set_extra(void (*fn)(void *arg, struct hr_buf *b), void *arg)
{
	m_extra_arg = arg;
	m_extra_fn = fn;
}

int metrics_render(struct store *st, char **out, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return HR_ENOMEM;

	render_header(f, "herald_sends_total", "counter", "Send attempts and their outcomes.");
	for (int ch = 0; ch < M_CH__COUNT; ch++)
		for (int w = 0; w < M_SEND__COUNT; w++)
			fprintf(f, "herald_sends_total{channel=\"%s\",outcome=\"%s\"} %llu\n",
			        metrics_channels[ch], metrics_send_names[w],
			        (unsigned long long)ld(&m_sends[ch][w]));

	render_latency(f);

	render_header(f, "herald_messages_unknown_total", "counter",
	              "Messages whose send outcome is unknown and that are not sent again.");
	for (int ch = 0; ch < M_CH__COUNT; ch++)
		for (int w = 0; w < M_UNK__COUNT; w++)
			fprintf(f, "herald_messages_unknown_total{channel=\"%s\",reason=\"%s\"} %llu\n",
			        metrics_channels[ch], metrics_unknown_names[w],
			        (unsigned long long)ld(&m_unknown[ch][w]));
	render_header(f, "herald_resends_after_unknown_total", "counter",
	              "at_least_once sends made again after an unknown outcome (possible "
	              "duplicates).");
	for (int ch = 0; ch < M_CH__COUNT; ch++)
		for (int w = 0; w < M_UNK__COUNT; w++)
			fprintf(f,
			        "herald_resends_after_unknown_total{channel=\"%s\",reason=\"%s\"} "
			        "%llu\n",
			        metrics_channels[ch], metrics_unknown_names[w],
			        (unsigned long long)ld(&m_resend_unknown[ch][w]));

	render_header(f, "herald_sends_in_flight", "gauge", "Provider requests in flight.");
	fprintf(f, "herald_sends_in_flight %lld\n",
	        (long long)atomic_load_explicit(&m_inflight, memory_order_relaxed));

	render_header(f, "herald_messages_accepted_total", "counter",
	              "Messages durably accepted by the API.");
	fprintf(f, "herald_messages_accepted_total %llu\n", (unsigned long long)ld(&m_accepted));

	render_header(f, "herald_webhooks_total", "counter", "Provider webhooks and their events.");
	for (int ch = 0; ch < M_CH__COUNT; ch++)
		for (int w = 0; w < M_WH__COUNT; w++)
			fprintf(f, "herald_webhooks_total{channel=\"%s\",result=\"%s\"} %llu\n",
			        metrics_channels[ch], metrics_wh_names[w],
			        (unsigned long long)ld(&m_webhooks[ch][w]));

	render_header(f, "herald_http_responses_total", "counter", "HTTP responses by class.");
	for (int c = 0; c < M_HTTP__COUNT; c++)
		fprintf(f, "herald_http_responses_total{code=\"%s\"} %llu\n", metrics_http_names[c],
		        (unsigned long long)ld(&m_http[c]));

	render_header(f, "herald_http_connections_refused_total", "counter",
	              "Connections closed at accept: over the total or the per-address limit.");
	fprintf(f, "herald_http_connections_refused_total{reason=\"limit\"} %llu\n",
	        (unsigned long long)ld(&m_guard[M_GUARD_REFUSED_LIMIT]));
	fprintf(f, "herald_http_connections_refused_total{reason=\"per_ip\"} %llu\n",
	        (unsigned long long)ld(&m_guard[M_GUARD_REFUSED_ADDR]));
	render_header(f, "herald_http_requests_cut_total", "counter",
	              "Connections closed because a request's head or body came too slowly.");
	fprintf(f, "herald_http_requests_cut_total{phase=\"head\"} %llu\n",
	        (unsigned long long)ld(&m_guard[M_GUARD_CUT_HEAD]));
	fprintf(f, "herald_http_requests_cut_total{phase=\"body\"} %llu\n",
	        (unsigned long long)ld(&m_guard[M_GUARD_CUT_BODY]));

	render_header(f, "herald_retention_removed_total", "counter",
	              "Rows message retention removed (store.message_retention_days).");
	fprintf(f, "herald_retention_removed_total{what=\"messages\"} %llu\n",
	        (unsigned long long)ld(&m_retained_msgs));
	fprintf(f, "herald_retention_removed_total{what=\"events\"} %llu\n",
	        (unsigned long long)ld(&m_retained_events));
	render_header(f, "herald_retention_months_dropped_total", "counter",
	              "Months of message partitions retention dropped whole (PostgreSQL).");
	fprintf(f, "herald_retention_months_dropped_total %llu\n",
	        (unsigned long long)ld(&m_retained_months));

	render_header(f, "herald_callbacks_total", "counter",
	              "Callback attempts to client systems: sent (2xx), failed, and rows dead-lettered.");
	static const char *const cb_what[M_CB__COUNT] = {"sent", "failed", "dead"};
	for (int i = 0; i < M_CB__COUNT; i++)
		fprintf(f, "herald_callbacks_total{outcome=\"%s\"} %llu\n", cb_what[i],
		        (unsigned long long)ld(&m_callback[i]));

	render_header(f, "herald_reconciler_actions_total", "counter",
	              "What the reconciler did, by action.");
	for (int i = 0; i < M_REC__COUNT; i++)
		fprintf(f, "herald_reconciler_actions_total{action=\"%s\"} %llu\n",
		        reconcile_names[i], (unsigned long long)ld(&m_reconcile[i]));
	render_header(f, "herald_fallbacks_total", "counter",
	              "Follow-up messages made on a route's next channel, by reason.");
	for (int i = 0; i < M_FB__COUNT; i++)
		fprintf(f, "herald_fallbacks_total{reason=\"%s\"} %llu\n", fallback_names[i],
		        (unsigned long long)ld(&m_fallback[i]));

	if (st)
		render_store(f, st);
	if (m_extra_fn) {
		struct hr_buf xb = {0};
		m_extra_fn(m_extra_arg, &xb);
		if (xb.oom)
			fprintf(f, "# plugin metrics: out of memory\n");
		else if (xb.len)
			fwrite(xb.p, 1, xb.len, f);
		free(xb.p);
	}

	if (fclose(f) != 0 || !buf) {
		free(buf);
		return HR_ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}
