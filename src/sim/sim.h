/*
 * sim.h - `herald sim`: a provider simulator speaking the WhatsApp Cloud API
 * on loopback. It answers sends like Meta does (bodies, codes, errors), then
 * posts signed status webhooks to Herald, with knobs for latency, error
 * rates, duplicates and reordering, and counts every send it accepted so a
 * test can prove each message reached the provider exactly once.
 *
 * HTTP surface (JSON everywhere):
 *   POST /v{N}/{phone_number_id}/messages   the Cloud API send endpoint
 *   POST /sim/whatsapp/inbound             {"account","from","text"} or
 *        {"account","from","button_payload","button_text","context_id"} or
 *        {"account","from","reply_id","reply_title","context_id"} (interactive
 *        button_reply): posts a signed messages[] webhook; 202 {"id":wamid}
 *   GET  /sim/stats                         {"requests","accepted","rejected":{"429",
 *        "5xx","permanent","auth","invalid"},"unique_messages","duplicates",
 *        "unique_bodies","body_duplicates","webhooks":{"posted","statuses",
 *        "inbound","failed_attempts","dropped","pending"}}
 *   GET  /sim/messages/{callback data}      {"count","wamids","to"} or 404
 *   GET  /sim/counts                        {"sends":{"<to>":n,...},"rcs":{"<to>":
 *        {"accepted","requests"}}}: accepted sends per recipient (WhatsApp,
 *        SMS and Telegram alike, summed over bodies), RCS messageIds per phone
 *   GET  /sim/duplicates                    {"count":K,"messages":{cb:n,...},
 *                                            "bodies":[{"to","sha256","count"}]}
 *   POST /sim/reset                         clears the counters
 *   GET|POST /sim/config                    read / change the knobs at runtime
 *   GET  /healthz
 *
 * Knobs (sim.whatsapp.* in the config, or POST /sim/config): latency_ms,
 * latency_jitter_ms, fail_rate, rate_429, rate_5xx, sent_delay_ms,
 * delivered_delay_ms, read_delay_ms, read_rate, dup_rate, reorder_rate,
 * failed_after_sent_rate, webhook_batch, fail_recipients, seed,
 * webhook_retry_s (also sim.webhook_retry_s), and recipients: per-recipient
 * scripts {"<wa id>": {"error": 131047, "reply": "text", "press": "PAY_NOW"}}
 * (error: every send to it gets that Graph error; reply: once the POST
 * carrying "read" is done, an inbound text with context = the message;
 * press: likewise a button press, the template quick reply "button" with
 * that payload, or the interactive button_reply whose id is the value, else
 * the first button; POST /sim/config {"recipients":...} replaces the whole
 * map, null clears it). Sends are checked like Graph does for text, template
 * (header/body/button components), interactive reply buttons, document and
 * image. With a seed, a message's fate depends only on (seed, recipient and
 * body, how often that body was sent), not on thread timing. Each message's
 * webhooks are posted one after the other (the next waits for the previous
 * POST to finish), so they arrive in the planned order; reorder_rate swaps
 * delivered and read on purpose. At high send rates use webhook_batch > 1, as
 * Meta does: one webhook thread posted about 13,000 single-status POSTs/s in
 * a 2-core in-process test.
 *
 * Threads: the MHD pool (sim.threads, default 2, epoll) answers requests and
 * never sleeps: a latency knob suspends the connection and the webhook
 * thread resumes it when due. One webhook thread owns the schedule (a
 * min-heap under a mutex held only to push/pop) and a curl multi handle
 * (sim.webhook_concurrency POSTs in flight, default 32).
 */
#ifndef HR_SIM_H
#define HR_SIM_H

#include <jansson.h>

#include "herald.h"

struct sim;

/* Command-line values that win over the config file. NULL = not given. */
struct sim_overrides {
	const char *listen;     /* "HOST:PORT"; port 0 picks a free port */
	const char *herald_url; /* Herald's base URL for webhooks */
	const char *port_file;  /* written with the bound port after binding */
};

/*
 * Starts a simulator from a loaded config (the same file as `herald serve`:
 * sim.*, server.public_url, tenants[].accounts[] with channel whatsapp).
 * config is borrowed for the call only. Caller stops with sim_stop.
 */
int sim_start(json_t *config, const struct sim_overrides *o, struct sim **out, struct hr_err *err);
/* The bound TCP port. */
int sim_port(const struct sim *s);
/* Stops accepting, answers suspended requests, stops the webhook thread
 * (undelivered webhooks are dropped) and frees everything. NULL is fine. */
void sim_stop(struct sim *s);

/* `herald sim --config FILE [--listen H:P] [--herald-url URL] [--port-file P]`:
 * runs until SIGINT/SIGTERM. argv[0] is "sim". */
int sim_main(int argc, char **argv);

#endif
