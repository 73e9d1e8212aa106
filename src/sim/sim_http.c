/*
 * sim_http.c - the simulator's HTTP side (libmicrohttpd, epoll thread pool):
 * the Cloud API send endpoint and the /sim/... control endpoints.
 *
 * A request never blocks its thread. With a latency knob the answer is built
 * at once, the connection is suspended and a RESUME event is scheduled; the
 * webhook thread resumes it when due and the handler then queues the answer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "sim/sim_int.h"
#include "sim/sim_rcs.h"
#include "sim/sim_sms.h"
#include "sim/sim_telegram.h"

/* Per-request state, freed in sim_completed. */
struct sim_req {
	char *body;
	size_t len, cap;
	bool too_large;
	struct MHD_Response *resp; /* built before a suspend, queued after resume */
	unsigned int status;
	bool was_suspended; /* counted in sim->suspended until completed */
};

/* What a route answers. body is heap JSON (NULL: out of memory). */
struct sim_reply {
	unsigned int status;
	char *body;
	bool retry_after;
	int64_t delay_us;
	bool drop; /* close the connection instead of answering (drop_rate) */
};

static void reply_json(struct sim_reply *rep, unsigned int status, json_t *o)
{
	rep->status = status;
	rep->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

static void reply_error(struct sim_reply *rep, unsigned int status, const char *field,
                        const char *msg)
{
	json_t *e = json_pack("{s:s}", "message", msg);
	if (field && *field)
		json_object_set_new(e, "field", json_string(field));
	reply_json(rep, status, json_pack("{s:o}", "error", e));
}

static void reply_graph(struct sim_reply *rep, unsigned int status, int code, const char *msg,
                        const char *details, const char *type, int subcode)
{
	rep->status = status;
	rep->body = sim_wire_error(code, msg, details, type, subcode);
}

/* ---------------------------------------------------------------------------
 * The send endpoint
 * ------------------------------------------------------------------------- */

static const char *bearer(struct MHD_Connection *c)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	auth += 7;
	while (*auth == ' ')
		auth++;
	return *auth ? auth : NULL;
}

/*
 * Plans a message's status webhooks: sent, then delivered and read (or
 * failed), each possibly duplicated, delivered/read possibly swapped in time.
 * All random draws happen in a fixed order so a seed reproduces them.
 */
static void schedule_statuses(struct sim *s, int acct, const struct sim_send *snd,
                              const char *wamid, const struct sim_knobs *k, struct sim_rng *rng,
                              int64_t delay_us, const struct sim_wa_recipient *who)
{
	/* A recipient scripted to reply or press reads the message first. */
	bool answers = who && (who->reply || who->press);
	bool failed = sim_rng_unit(rng) < k->failed_after_sent_rate && !answers;
	bool reorder = sim_rng_unit(rng) < k->reorder_rate;
	bool read = sim_rng_unit(rng) < k->read_rate || answers;
	bool silent = false;
	if (who && who->fate == SIM_FATE_FAILED)
		failed = true;
	else if (who && who->fate == SIM_FATE_SILENT)
		silent = true;
	bool dup[3];
	int64_t dup_off[3];
	for (int i = 0; i < 3; i++) {
		dup[i] = sim_rng_unit(rng) < k->dup_rate;
		dup_off[i] = 2000 + (int64_t)(sim_rng_next(rng) % 18000);
	}
	struct sim_msg *m =
	    sim_msg_new(acct, wamid, snd->to, snd->cb, strcmp(snd->type, "template") == 0, rng);
	if (!m)
		return;
	int64_t mono = hr_mono_us() + delay_us, wall = hr_now_us() + delay_us;
	int64_t d_sent = (int64_t)(k->sent_delay_ms * 1000);
	int64_t d_del = (int64_t)(k->delivered_delay_ms * 1000);
	int64_t d_read = (int64_t)(k->read_delay_ms * 1000);
	if (who && who->delivered_delay_ms >= 0) {
		d_del = (int64_t)(who->delivered_delay_ms * 1000);
		read = reorder = false;
	}
	if (answers)
		m->after_read =
		    sim_wire_answer_post(s, acct, snd, wamid, who, wall + d_read + 1000000);
	struct sim_event ev[6];
	int n = 0;
	/* (status, when it is posted, when it happened) in posting order. */
	struct plan_step {
		int status;
		int64_t post, at;
	} plan[3];
	int np = 0;
	plan[np++] = (struct plan_step){SIM_ST_SENT, d_sent, d_sent};
	if (silent) {
		/* a receipt that never comes */
	} else if (failed) {
		plan[np++] = (struct plan_step){SIM_ST_FAILED, d_del, d_del};
	} else if (read && reorder) {
		plan[np++] = (struct plan_step){SIM_ST_READ, d_del, d_read};
		plan[np++] = (struct plan_step){SIM_ST_DELIVERED, d_read, d_del};
	} else {
		plan[np++] = (struct plan_step){SIM_ST_DELIVERED, d_del, d_del};
		if (read)
			plan[np++] = (struct plan_step){SIM_ST_READ, d_read, d_read};
	}
	for (int i = 0; i < np; i++) {
		ev[n++] = (struct sim_event){.due = mono + plan[i].post,
		                             .kind = SIM_EV_STATUS,
		                             .status = plan[i].status,
		                             .wall_us = wall + plan[i].at,
		                             .ptr = m};
	}
	for (int i = 0; i < np; i++) {
		if (!dup[i])
			continue;
		ev[n] = ev[i];
		ev[n++].due += dup_off[i];
	}
	atomic_store(&m->refs, n);
	if (!sim_sched_push(s, ev, (size_t)n)) {
		atomic_store(&m->refs, 1);
		sim_msg_unref(m);
	}
}

static void handle_send(struct sim *s, struct MHD_Connection *c, const char *pnid,
                        struct sim_req *r, struct sim_reply *rep)
{
	sim_stats_request(&s->stats);
	struct sim_knobs *k = sim_knobs_get(s);
	rep->delay_us = (int64_t)(k->latency_ms * 1000);
	const char *token = bearer(c);
	int acct = -1;
	bool token_known = false;
	pthread_mutex_lock(&s->secrets_lock);
	for (size_t i = 0; token && i < s->naccounts; i++) {
		if (strcmp(token, s->accounts[i].access_token) != 0)
			continue;
		token_known = true;
		if (strcmp(pnid, s->accounts[i].phone_number_id) == 0)
			acct = (int)i;
	}
	pthread_mutex_unlock(&s->secrets_lock);
	char msg[512];
	if (!token_known) {
		sim_stats_reject(&s->stats, SIM_REJ_AUTH);
		reply_graph(rep, 401, 190, "Invalid OAuth access token - Cannot parse access token",
		            NULL, "OAuthException", 0);
		goto out;
	}
	if (acct < 0) {
		snprintf(
		    msg, sizeof msg,
		    "Unsupported post request. Object with ID '%.64s' does not exist, cannot be "
		    "loaded due to missing permissions, or does not support this operation. "
		    "Please read the Graph API documentation at "
		    "https://developers.facebook.com/docs/graph-api",
		    pnid);
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		reply_graph(rep, 400, 100, msg, NULL, "GraphMethodException", 33);
		goto out;
	}
	json_error_t je;
	json_t *body = r->too_large ? NULL : json_loadb(r->body ? r->body : "", r->len, 0, &je);
	struct sim_send snd;
	if (!body || !sim_wire_check_send(body, &snd, msg, sizeof msg)) {
		if (!body)
			snprintf(msg, sizeof msg, "(#100) %s",
			         r->too_large ? "The request body is too large"
			                      : "The request body is not valid JSON");
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		reply_graph(rep, 400, body ? snd.error_code : 100, msg, NULL, "OAuthException", 0);
		json_decref(body);
		goto out;
	}
	unsigned char digest[32];
	unsigned int dlen = 0;
	EVP_Digest(r->body, r->len, digest, &dlen, EVP_sha256(), NULL);
	uint64_t attempt = sim_stats_attempt(&s->stats, snd.to, digest);
	struct sim_rng rng;
	sim_rng_init(&rng, sim_seed(s, k), digest, attempt);
	double u429 = sim_rng_unit(&rng), u5xx = sim_rng_unit(&rng);
	double ufail = sim_rng_unit(&rng), ulat = sim_rng_unit(&rng);
	double udrop = sim_rng_unit(&rng); /* drawn last: earlier fates keep their values */
	rep->delay_us += (int64_t)(k->latency_jitter_ms * 1000 * ulat);
	bool undeliverable = sim_knobs_fails_recipient(k, snd.to);
	const struct sim_wa_recipient *who = sim_knobs_recipient(k, snd.to);
	if (who && who->error) {
		const char *details, *etype;
		unsigned int st = sim_wire_error_for(who->error, msg, sizeof msg, &details, &etype);
		sim_stats_reject(&s->stats, st == 429   ? SIM_REJ_429
		                            : st >= 500 ? SIM_REJ_5XX
		                            : st == 401 ? SIM_REJ_AUTH
		                                        : SIM_REJ_PERMANENT);
		reply_graph(rep, st, who->error, msg, details, etype, 0);
		rep->retry_after = st == 429;
	} else if (!undeliverable && u429 < k->rate_429) {
		sim_stats_reject(&s->stats, SIM_REJ_429);
		reply_graph(rep, 429, 130429, "(#130429) Rate limit hit",
		            "Cloud API message throughput has been reached.", "OAuthException", 0);
		rep->retry_after = true;
	} else if (!undeliverable && u5xx < k->rate_5xx) {
		sim_stats_reject(&s->stats, SIM_REJ_5XX);
		reply_graph(rep, 500, 131000, "(#131000) Something went wrong",
		            "Something went wrong", "OAuthException", 0);
	} else if (undeliverable || ufail < k->fail_rate) {
		sim_stats_reject(&s->stats, SIM_REJ_PERMANENT);
		reply_graph(rep, 400, 131026, "(#131026) Message Undeliverable.",
		            "Message Undeliverable.", "OAuthException", 0);
	} else {
		char wamid[128];
		sim_wamid_new(s, snd.to, false, wamid, sizeof wamid);
		sim_stats_accept(&s->stats, snd.to, digest, snd.cb, wamid);
		schedule_statuses(s, acct, &snd, wamid, k, &rng, rep->delay_us, who);
		rep->status = 200;
		rep->body = sim_wire_success(snd.to, wamid);
		rep->drop = udrop < k->drop_rate;
	}
	json_decref(body);
out:
	sim_knobs_unref(k);
}

/* Matches "/v{digits and dots}/{phone_number_id}/messages". */
static bool match_send(const char *url, char *pnid, size_t n)
{
	if (strncmp(url, "/v", 2) != 0)
		return false;
	const char *p = url + 2;
	size_t vl = strspn(p, "0123456789.");
	if (vl == 0 || p[vl] != '/')
		return false;
	p += vl + 1;
	const char *slash = strchr(p, '/');
	if (!slash || slash == p || (size_t)(slash - p) >= n || strcmp(slash, "/messages") != 0)
		return false;
	memcpy(pnid, p, (size_t)(slash - p));
	pnid[slash - p] = '\0';
	return true;
}

/* ---------------------------------------------------------------------------
 * Control endpoints
 * ------------------------------------------------------------------------- */

static json_t *parse_object(struct sim_req *r, struct sim_reply *rep)
{
	json_error_t je;
	json_t *o = r->too_large ? NULL : json_loadb(r->body ? r->body : "", r->len, 0, &je);
	if (!json_is_object(o)) {
		json_decref(o);
		reply_error(rep, 400, "body", "the body must be a JSON object");
		return NULL;
	}
	return o;
}

static void handle_config(struct sim *s, struct sim_req *r, struct sim_reply *rep)
{
	json_t *o = parse_object(r, rep);
	if (!o)
		return;
	struct hr_err err = {0};
	struct sim_knobs *nk = NULL, *old;
	pthread_mutex_lock(&s->knobs_lock);
	int rc = sim_knobs_apply(s->knobs, o, "", &nk, &err);
	old = s->knobs;
	if (rc == 0)
		s->knobs = nk;
	pthread_mutex_unlock(&s->knobs_lock);
	json_decref(o);
	if (rc) {
		reply_error(rep, 400, err.field, err.msg);
		return;
	}
	sim_knobs_unref(old);
	reply_json(rep, 200, sim_knobs_json(nk));
}

static void handle_get_config(struct sim *s, struct sim_reply *rep)
{
	struct sim_knobs *k = sim_knobs_get(s);
	reply_json(rep, 200, sim_knobs_json(k));
	sim_knobs_unref(k);
}

/* Builds the messages[] entry of an inbound webhook from the test's request. */
static json_t *inbound_message(const struct sim_account *a, json_t *o, const char *from,
                               const char *wamid, struct sim_reply *rep)
{
	const char *text = json_string_value(json_object_get(o, "text"));
	const char *payload = json_string_value(json_object_get(o, "button_payload"));
	const char *reply_id = json_string_value(json_object_get(o, "reply_id"));
	const char *ctx = json_string_value(json_object_get(o, "context_id"));
	if ((text != NULL) + (payload != NULL) + (reply_id != NULL) != 1) {
		reply_error(rep, 400, "text",
		            "give exactly one of text, button_payload or reply_id");
		return NULL;
	}
	char ts[24];
	snprintf(ts, sizeof ts, "%lld", (long long)(hr_now_us() / 1000000));
	json_t *m = json_object();
	if (ctx && *ctx)
		json_object_set_new(m, "context",
		                    json_pack("{s:s, s:s}", "from", a->display_phone, "id", ctx));
	json_object_set_new(m, "from", json_string(from));
	json_object_set_new(m, "id", json_string(wamid));
	json_object_set_new(m, "timestamp", json_string(ts));
	if (text) {
		json_object_set_new(m, "type", json_string("text"));
		json_object_set_new(m, "text", json_pack("{s:s}", "body", text));
	} else if (payload) {
		const char *bt = json_string_value(json_object_get(o, "button_text"));
		json_object_set_new(m, "type", json_string("button"));
		json_object_set_new(
		    m, "button",
		    json_pack("{s:s, s:s}", "payload", payload, "text", bt ? bt : payload));
	} else {
		const char *title = json_string_value(json_object_get(o, "reply_title"));
		json_object_set_new(m, "type", json_string("interactive"));
		json_object_set_new(m, "interactive",
		                    json_pack("{s:s, s:{s:s, s:s}}", "type", "button_reply",
		                              "button_reply", "id", reply_id, "title",
		                              title ? title : reply_id));
	}
	return m;
}

static void handle_inbound(struct sim *s, struct sim_req *r, struct sim_reply *rep)
{
	json_t *o = parse_object(r, rep);
	if (!o)
		return;
	const char *id = json_string_value(json_object_get(o, "account"));
	const struct sim_account *a = id ? sim_account_by_id(s, id) : NULL;
	char from[HR_ADDR_MAX];
	sim_wire_digits(json_string_value(json_object_get(o, "from")), from, sizeof from);
	if (!a) {
		reply_error(rep, id ? 404 : 400, "account",
		            id ? "no whatsapp account with that id" : "account is required");
	} else if (strlen(from) < 5) {
		reply_error(rep, 400, "from", "from must be a phone number");
	} else {
		char wamid[128];
		sim_wamid_new(s, from, true, wamid, sizeof wamid);
		json_t *m = inbound_message(a, o, from, wamid, rep);
		if (m) {
			const char *name = json_string_value(json_object_get(o, "name"));
			json_t *value =
			    json_pack("{s:[{s:{s:s}, s:s}], s:[o]}", "contacts", "profile", "name",
			              name ? name : "Sim User", "wa_id", from, "messages", m);
			json_t *env = sim_wire_envelope(a, value);
			char *body = env ? json_dumps(env, JSON_COMPACT) : NULL;
			json_decref(env);
			struct sim_post *p = sim_post_new(a, (int)(a - s->accounts), body, 1, true);
			if (!p || !sim_post_submit(s, p)) {
				sim_post_free(p);
				reply_error(rep, 503, NULL, "the simulator is stopping");
			} else {
				reply_json(rep, 202,
				           json_pack("{s:s, s:s}", "id", wamid, "account", a->id));
			}
		}
	}
	json_decref(o);
}

static void route(struct sim *s, struct MHD_Connection *c, const char *url, const char *method,
                  struct sim_req *r, struct sim_reply *rep)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	char pnid[128];
	if (sim_tg_route(s, url, method, r->body, r->len, r->too_large, &rep->status, &rep->body,
	                 &rep->delay_us))
		return;
	if (sim_rcs_route(s, c, url, method, r->body, r->len, r->too_large, &rep->status,
	                  &rep->body, &rep->delay_us))
		return;
	struct sim_sms_reply sr;
	if (sim_sms_route(s, c, url, method, r->body, r->len, r->too_large, &sr)) {
		rep->status = sr.status;
		rep->body = sr.body;
		rep->delay_us = sr.delay_us;
		return;
	}
	if (match_send(url, pnid, sizeof pnid)) {
		if (post)
			handle_send(s, c, pnid, r, rep);
		else
			reply_graph(rep, 400, 100, "Unsupported get request.", NULL,
			            "GraphMethodException", 0);
	} else if (get && strcmp(url, "/sim/stats") == 0) {
		json_t *st = sim_stats_json(&s->stats);
		sim_tg_stats_add(s, st);
		sim_rcs_stats_add(s, st);
		reply_json(rep, 200, st);
	} else if (get && strncmp(url, "/sim/messages/", 14) == 0 && url[14]) {
		json_t *m = sim_stats_message_json(&s->stats, url + 14);
		if (m)
			reply_json(rep, 200, m);
		else
			reply_error(rep, 404, NULL, "no send with that callback data");
	} else if (get && strcmp(url, "/sim/counts") == 0) {
		json_t *sends = sim_stats_counts_json(&s->stats);
		json_t *o = sends ? json_pack("{s:o}", "sends", sends) : NULL;
		sim_rcs_counts_add(s, o);
		reply_json(rep, 200, o);
	} else if (get && strcmp(url, "/sim/duplicates") == 0) {
		reply_json(rep, 200, sim_stats_duplicates_json(&s->stats));
	} else if (post && strcmp(url, "/sim/reset") == 0) {
		sim_stats_reset(&s->stats);
		sim_tg_reset(s);
		sim_rcs_reset(s);
		reply_json(rep, 200, json_pack("{s:b}", "reset", 1));
	} else if (strcmp(url, "/sim/config") == 0 && (get || post)) {
		if (post)
			handle_config(s, r, rep);
		else
			handle_get_config(s, rep);
	} else if (post && strcmp(url, "/sim/whatsapp/inbound") == 0) {
		handle_inbound(s, r, rep);
	} else if (post && strcmp(url, "/sim/whatsapp/rotate") == 0) {
		/* Credentials rotated at the provider: read the references again. */
		size_t n = 0;
		struct hr_err err;
		hr_err_clear(&err);
		if (sim_rotate_secrets(s, &n, &err) == 0)
			reply_json(rep, 200, json_pack("{s:I}", "rotated", (json_int_t)n));
		else
			reply_error(rep, 422, NULL, err.msg);
	} else if (get && strcmp(url, "/healthz") == 0) {
		reply_json(rep, 200, json_pack("{s:s}", "status", "ok"));
	} else {
		reply_error(rep, 404, NULL, "unknown path");
	}
}

/* ---------------------------------------------------------------------------
 * MHD glue
 * ------------------------------------------------------------------------- */

static enum MHD_Result send_reply(struct sim *s, struct MHD_Connection *c, struct sim_req *r,
                                  struct sim_reply *rep)
{
	static const char oom[] = "{\"error\":{\"message\":\"out of memory\"}}";
	struct MHD_Response *resp;
	if (rep->drop) {
		/* Accepted, then the connection closes unanswered. */
		free(rep->body);
		return MHD_NO;
	}
	if (rep->body) {
		resp = MHD_create_response_from_buffer(strlen(rep->body), rep->body,
		                                       MHD_RESPMEM_MUST_FREE);
	} else {
		rep->status = 500;
		resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
		                                       MHD_RESPMEM_PERSISTENT);
	}
	if (!resp) {
		free(rep->body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (rep->retry_after)
		MHD_add_response_header(resp, "Retry-After", "1");
	if (rep->delay_us > 0) {
		r->resp = resp;
		r->status = rep->status;
		r->was_suspended = true;
		atomic_fetch_add(&s->suspended, 1);
		MHD_suspend_connection(c);
		struct sim_event ev = {
		    .due = hr_mono_us() + rep->delay_us, .kind = SIM_EV_RESUME, .ptr = c};
		if (!sim_sched_push(s, &ev, 1))
			MHD_resume_connection(c); /* stopping: answer now */
		return MHD_YES;
	}
	enum MHD_Result ret = MHD_queue_response(c, rep->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result sim_access(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	(void)version;
	struct sim *s = cls;
	struct sim_req *r = *con_cls;
	if (!r) {
		r = calloc(1, sizeof *r);
		*con_cls = r;
		return r ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (r->too_large || r->len + n > SIM_BODY_MAX) {
			r->too_large = true;
			return MHD_YES;
		}
		if (r->len + n + 1 > r->cap) {
			size_t cap = r->cap ? r->cap : 1024;
			while (cap < r->len + n + 1)
				cap *= 2;
			char *b = realloc(r->body, cap);
			if (!b)
				return MHD_NO;
			r->body = b;
			r->cap = cap;
		}
		memcpy(r->body + r->len, upload, n);
		r->len += n;
		r->body[r->len] = '\0';
		return MHD_YES;
	}
	if (r->resp) { /* resumed after a latency wait */
		enum MHD_Result ret = MHD_queue_response(c, r->status, r->resp);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		return ret;
	}
	struct sim_reply rep = {0};
	route(s, c, url, method, r, &rep);
	return send_reply(s, c, r, &rep);
}

static void sim_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
	struct sim *s = cls;
	(void)c;
	(void)toe;
	struct sim_req *r = *con_cls;
	if (!r)
		return;
	if (r->was_suspended)
		atomic_fetch_sub(&s->suspended, 1);
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

static void sim_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof buf, fmt, ap);
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	hr_log(HR_LOG_DEBUG, "sim", "mhd: %s", buf);
}

int sim_http_start(struct sim *s, const char *host, int port, int threads, struct hr_err *err)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return hr_fail(err, HR_EINVAL, "sim.listen",
		               "sim.listen: '%s' is not an IPv4 address", host);
	/* No MHD_USE_TURBO: measured, it halves throughput once connections are
	 * suspended and resumed (the latency knob), for no gain without. */
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	s->daemon = MHD_start_daemon(
	    flags, (uint16_t)port, NULL, NULL, sim_access, s, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads, MHD_OPTION_CONNECTION_LIMIT, 4096u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	    MHD_OPTION_NOTIFY_COMPLETED, sim_completed, s, MHD_OPTION_EXTERNAL_LOGGER, sim_mhd_log,
	    s, MHD_OPTION_END);
	if (!s->daemon)
		return hr_fail(err, HR_EIO, "sim.listen", "cannot listen on %s:%d", host, port);
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? info->port : port;
	hr_strlcpy(s->host, host, sizeof s->host);
	return 0;
}
