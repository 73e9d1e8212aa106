/*
 * sim_telegram.h - the Telegram Bot API part of `herald sim` (sim_telegram.c).
 *
 * HTTP surface:
 *   POST /bot{token}/sendMessage|sendDocument|sendPhoto|answerCallbackQuery
 *        validated like the Bot API, answered with its bodies and codes
 *        (401 for an unknown token, 400/403/429 with "parameters" as
 *        Telegram sends them); message_id counts up per chat.
 *   POST /sim/telegram/update   {"account":id, ...update}: posts a raw update
 *        (update_id assigned if absent) to {herald}/webhooks/telegram/{id}
 *        with X-Telegram-Bot-Api-Secret-Token; 202 {"update_id":N}
 *   GET|POST /sim/telegram/config   read / change sim.telegram at runtime
 *   GET  /sim/telegram/chats/{chat}     {"chat","sent","rejected","last_message_id"}
 *   GET  /sim/telegram/callbacks/{id}   {"id","answers"} or 404
 * and a "telegram" object in /sim/stats: {"sent","callback_queries",
 * "callback_answers","callback_repeat_answers","callback_unknown_answers",
 * "migrations","blocked","presses","replies","updates":{"posted",
 * "failed_attempts","dropped","pending"}}. Sends also count in the shared
 * requests/accepted/rejected/body figures, updates in "webhooks".
 *
 * Knobs (sim.telegram.*): latency_ms, latency_jitter_ms, rate_429 and
 * retry_after (seconds, in parameters.retry_after), rate_5xx, fail_rate
 * (400 chat not found), answer_delay_ms (before a scripted press or reply),
 * webhook_retry_s, seed, and per-chat scripts
 * recipients: {"<chat>": {"blocked": true} | {"migrate_to": "-100123"} |
 * {"press": "<callback data>"} | {"reply": "text"}}. A press is posted as a
 * callback_query on the sent message, only if that message has a callback
 * button with that data (as a real user could press); a reply as a message
 * with reply_to_message = the sent message.
 *
 * Threads: request threads use the tables under one mutex (never held for
 * I/O); one poster thread sends updates, retrying with backoff until
 * webhook_retry_s has passed. Files: sim_telegram.c (the Bot API, control
 * endpoints, start/stop), sim_telegram_knobs.c, sim_telegram_post.c (the
 * poster), sim_telegram_int.h (what they share).
 */
#ifndef HR_SIM_TELEGRAM_H
#define HR_SIM_TELEGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "herald.h"

struct sim;

/* Loads tenants[].accounts[] with channel telegram and sim.telegram, and
 * starts the poster thread; s->tg is set. Call before the HTTP side starts. */
int sim_tg_start(struct sim *s, json_t *config, struct hr_err *err);
/* Stops the poster (pending updates are dropped) and frees s->tg. NULL-safe. */
void sim_tg_stop(struct sim *s);

/* Answers the request if url is a Telegram route: *status, *body (heap JSON)
 * and *delay_us (latency to apply before answering) are set and true is
 * returned. false: not ours, nothing set. */
bool sim_tg_route(struct sim *s, const char *url, const char *method, const char *body, size_t len,
                  bool too_large, unsigned int *status, char **resp, int64_t *delay_us);

/* Adds the "telegram" object to a /sim/stats answer. */
void sim_tg_stats_add(struct sim *s, json_t *stats);
/* Zeroes the counters (message ids keep counting: they must not repeat). */
void sim_tg_reset(struct sim *s);

#endif
