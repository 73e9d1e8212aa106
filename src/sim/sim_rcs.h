/*
 * sim_rcs.h - the RCS Business Messaging (Google RBM) part of `herald sim`
 * (sim_rcs.c), for accounts with channel "rcs".
 *
 * HTTP surface (Google's formats and codes):
 *   POST /token   the OAuth token endpoint: form grant_type=urn:ietf:params:
 *        oauth:grant-type:jwt-bearer&assertion={JWT}; the JWT must be RS256,
 *        signed by the key of a configured service account (checked with its
 *        public half), iss = its client_email, aud = its token_uri, scope
 *        the RBM scope, exp - iat <= 3600 and not expired. 200 {"access_token",
 *        "expires_in","token_type":"Bearer"} or 400 {"error":"invalid_grant"|
 *        "invalid_scope"|"unsupported_grant_type","error_description"}.
 *   POST /v1/phones/{+E164}/agentMessages?messageId={uuid}&agentId={agent}
 *        Bearer token of that agent (401 UNAUTHENTICATED, 403
 *        PERMISSION_DENIED); the AgentMessage is checked like RBM (400
 *        INVALID_ARGUMENT naming the field); 404 NOT_FOUND for a non-RCS
 *        recipient; 429 RESOURCE_EXHAUSTED / 503 UNAVAILABLE by rate; a
 *        messageId accepted before gets 409 ALREADY_EXISTS; else 200 with the
 *        AgentMessage and its name phones/{E164}/agentMessages/{messageId}.
 *   GET  /v1/phones/{+E164}/capabilities?requestId={uuid}&agentId={agent}
 *        200 {"features":[...]} or 404 NOT_FOUND.
 *   POST /sim/rcs/inbound {"account","from","text"} or {"account","from",
 *        "postback_data","text"}: posts a user message; 202 {"messageId"}.
 *   GET  /sim/rcs/messages/{messageId}  {"to","accepted","attempts",
 *        "conflicts","body"} or 404
 *   GET|POST /sim/rcs/config  read / change sim.rcs at runtime
 * and an "rcs" object in /sim/stats: {"requests","accepted","duplicates",
 * "unique_messages","rejected":{"auth","invalid","not_found","429","5xx",
 * "scripted"},"tokens":{"issued","refused"},"capability_checks","presses",
 * "presses_missed","replies","webhooks":{"posted","events","failed_attempts",
 * "dropped","pending"}}.
 *
 * Webhooks: DELIVERED, then READ (by read_rate), then a recipient's scripted
 * answer, each a Pub/Sub push {"message":{"data","messageId","publishTime"},
 * "subscription"} to {herald}/webhooks/rcs/{account}, signed with
 * X-Goog-Signature = base64(HMAC-SHA512(client_token, decoded data)).
 *
 * Knobs (sim.rcs.* or POST /sim/rcs/config): latency_ms, rate_429, rate_5xx,
 * delivered_delay_ms, read_delay_ms, read_rate, dup_rate (a push delivered
 * twice, same Pub/Sub messageId), reorder_rate (READ posted before
 * DELIVERED), answer_delay_ms (after READ), webhook_retry_s, token_ttl_s
 * (expires_in), seed, and recipients: {"+1555...": {"not_rcs": true} |
 * {"press": "<button id>"} | {"reply": "text"} | {"error": 400|403|500|503} |
 * {"features": [...]}}. A press answers with the suggestion whose
 * postbackData ends in "|<button id>" (or equals it), as a user could only
 * press a suggestion that was sent; none: counted in presses_missed.
 *
 * Threads: request threads touch the tables under one mutex, never held for
 * I/O; one poster thread sends the webhooks in due order, retrying a failed
 * push with backoff until webhook_retry_s has passed.
 */
#ifndef HR_SIM_RCS_H
#define HR_SIM_RCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "herald.h"

struct sim;

/* Loads tenants[].accounts[] with channel rcs and sim.rcs and starts the
 * poster thread; s->rcs is set. Call before the HTTP side starts. */
int sim_rcs_start(struct sim *s, json_t *config, struct hr_err *err);
/* Stops the poster (pending webhooks are dropped) and frees s->rcs. NULL-safe. */
void sim_rcs_stop(struct sim *s);

/* Answers the request if url is an RCS route: *status, *resp (heap JSON) and
 * *delay_us are set and true is returned; false: not ours, nothing set. */
bool sim_rcs_route(struct sim *s, struct MHD_Connection *c, const char *url, const char *method,
                   const char *body, size_t len, bool too_large, unsigned int *status, char **resp,
                   int64_t *delay_us);

/* Adds the "rcs" object to a /sim/stats answer. */
void sim_rcs_stats_add(struct sim *s, json_t *stats);
/* Adds "rcs": {"<to>": {"accepted": 0|1 per messageId summed, "requests":
 * sends of any of its messageIds that reached the duplicate check}} to a
 * /sim/counts answer. */
void sim_rcs_counts_add(struct sim *s, json_t *counts);
/* Zeroes the counters (accepted messageIds are kept: RBM remembers them). */
void sim_rcs_reset(struct sim *s);

#endif
