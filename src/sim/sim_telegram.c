/*
 * sim_telegram.c - the simulator's Telegram Bot API (see sim_telegram.h).
 *
 * Answers are shaped like the Bot API's: {"ok":true,"result":<Message>} with
 * message ids counting up per chat, and {"ok":false,"error_code":N,
 * "description":"...","parameters":{...}} failures with Telegram's texts
 * ("Forbidden: bot was blocked by the user", "Bad Request: chat not found",
 * "Bad Request: group chat was upgraded to a supergroup chat" with
 * migrate_to_chat_id, "Too Many Requests: retry after N" with retry_after).
 * Telegram has no delivery receipts, so the only webhooks are the updates a
 * scripted user sends back (a button press or a reply) and raw updates a
 * test asks for.
 *
 * A send's fate is drawn from a random stream seeded by (seed, the body's
 * digest, how often that body was sent to that chat), as for WhatsApp, so a
 * seeded run repeats whatever the thread interleaving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/config.h"
#include "core/crypto.h"
#include "sim/sim_int.h"
#include "sim/sim_knobtab.h"
#include "sim/sim_telegram_int.h"

#define TG_TEXT_MAX 4096
#define TG_CAPTION_MAX 1024
#define TG_CB_DATA_MAX 64
#define TG_BUTTONS_MAX 100
#define TG_GROUP_USER 100000001LL /* who presses buttons in groups */
#define TG_QUERY_INVALID                                                                           \
	"Bad Request: query is too old and response timeout expired or query ID is invalid"

/* ---------------------------------------------------------------------------
 * Small tables
 * ------------------------------------------------------------------------- */

static uint64_t tg_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Finds key; creates a zeroed record when create. NULL: absent or OOM. */
static struct tg_node *tg_table_get(struct tg_table *t, const char *key, bool create)
{
	uint64_t h = tg_hash(key);
	if (t->nbuckets) {
		for (struct tg_node *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->next)
			if (n->hash == h && strcmp(n->key, key) == 0)
				return n;
	}
	if (!create)
		return NULL;
	if (t->n >= t->nbuckets) {
		size_t nb = t->nbuckets ? t->nbuckets * 2 : 256;
		struct tg_node **b = calloc(nb, sizeof *b);
		if (!b)
			return NULL;
		for (size_t i = 0; i < t->nbuckets; i++) {
			struct tg_node *n = t->buckets[i], *next;
			for (; n; n = next) {
				next = n->next;
				n->next = b[n->hash & (nb - 1)];
				b[n->hash & (nb - 1)] = n;
			}
		}
		free(t->buckets);
		t->buckets = b;
		t->nbuckets = nb;
	}
	size_t kl = strlen(key) + 1;
	struct tg_node *n = calloc(1, sizeof *n + kl);
	if (!n)
		return NULL;
	n->hash = h;
	memcpy(n->key, key, kl);
	n->next = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = n;
	t->n++;
	return n;
}

static void tg_table_free(struct tg_table *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct tg_node *n = t->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof *t);
}
/* ---------------------------------------------------------------------------
 * Bot API answers and objects
 * ------------------------------------------------------------------------- */

static char *tg_dump(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

/* {"ok":false,"error_code":code,"description":desc[,"parameters":params]} */
static void tg_fail(unsigned int *status, char **resp, int code, const char *desc, json_t *params)
{
	json_t *o = json_pack("{s:b, s:i, s:s}", "ok", 0, "error_code", code, "description", desc);
	if (o && params)
		json_object_set_new(o, "parameters", params);
	else
		json_decref(params);
	*status = (unsigned int)code;
	*resp = tg_dump(o);
}

/* UTF-16 units, counting only what is left after HTML markup when the text
 * is HTML (tags dropped, an entity is one character). */
static size_t tg_text_len(const char *s, const char *parse_mode)
{
	bool html = parse_mode && strcmp(parse_mode, "HTML") == 0;
	size_t n = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (html && c == '<') {
			const char *end = strchr(s, '>');
			if (end) {
				s = end;
				continue;
			}
		}
		if (html && c == '&') {
			const char *end = strchr(s, ';');
			if (end && end - s <= 10) {
				n++;
				s = end;
				continue;
			}
		}
		if ((c & 0xC0) != 0x80)
			n += c >= 0xF0 ? 2 : 1;
	}
	return n;
}

static bool tg_url_ok(const char *u, bool tg_scheme)
{
	return strncasecmp(u, "https://", 8) == 0 || strncasecmp(u, "http://", 7) == 0 ||
	       (tg_scheme && strncasecmp(u, "tg://", 5) == 0);
}

/* The InlineKeyboardMarkup checks; returns Telegram's complaint or NULL. */
static const char *tg_check_markup(json_t *rm)
{
	if (!json_is_object(rm))
		return "Bad Request: can't parse reply keyboard markup JSON object";
	json_t *rows = json_object_get(rm, "inline_keyboard");
	if (!json_is_array(rows))
		return "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup must be "
		       "an Array";
	size_t i, j, total = 0;
	json_t *row, *b;
	json_array_foreach(rows, i, row)
	{
		if (!json_is_array(row))
			return "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup "
			       "must be an Array of Arrays";
		json_array_foreach(row, j, b)
		{
			const char *text = json_string_value(json_object_get(b, "text"));
			const char *cd = json_string_value(json_object_get(b, "callback_data"));
			const char *url = json_string_value(json_object_get(b, "url"));
			if (!json_is_object(b) || !text || !*text)
				return "Bad Request: can't parse inline keyboard button: Text must "
				       "be non-empty";
			if (!cd && !url)
				return "Bad Request: can't parse inline keyboard button: Text "
				       "buttons are unallowed in the inline keyboard";
			if (cd && (!*cd || strlen(cd) > TG_CB_DATA_MAX))
				return "Bad Request: BUTTON_DATA_INVALID";
			if (url && !tg_url_ok(url, true))
				return "Bad Request: BUTTON_URL_INVALID";
			total++;
		}
	}
	return total > TG_BUTTONS_MAX ? "Bad Request: too many inline keyboard buttons" : NULL;
}

/* Checks a send's fields like the Bot API; returns the complaint or NULL. */
static const char *tg_check_send(const char *method, json_t *req)
{
	const char *mode = NULL;
	json_t *pm = json_object_get(req, "parse_mode");
	if (pm) {
		mode = json_string_value(pm);
		if (!mode || (strcmp(mode, "HTML") != 0 && strcmp(mode, "MarkdownV2") != 0 &&
		              strcmp(mode, "Markdown") != 0))
			return "Bad Request: unsupported parse_mode";
	}
	if (strcmp(method, "sendMessage") == 0) {
		const char *text = json_string_value(json_object_get(req, "text"));
		if (!text || !*text)
			return "Bad Request: message text is empty";
		if (tg_text_len(text, mode) > TG_TEXT_MAX)
			return "Bad Request: message is too long";
	} else {
		bool doc = strcmp(method, "sendDocument") == 0;
		const char *url =
		    json_string_value(json_object_get(req, doc ? "document" : "photo"));
		if (!url || !*url)
			return doc ? "Bad Request: there is no document in the request"
			           : "Bad Request: there is no photo in the request";
		if (!tg_url_ok(url, false))
			return "Bad Request: wrong HTTP URL specified";
		json_t *cap = json_object_get(req, "caption");
		if (cap && !json_is_string(cap))
			return "Bad Request: can't parse caption";
		if (cap && tg_text_len(json_string_value(cap), mode) > TG_CAPTION_MAX)
			return "Bad Request: message caption is too long";
	}
	json_t *rm = json_object_get(req, "reply_markup");
	return rm ? tg_check_markup(rm) : NULL;
}

/*
 * The chat a chat_id names: "id" as text in *chat (an "@name" lower-cased)
 * and its numeric id (a channel by name gets a stable -100... id from its
 * name). false: no such chat.
 */
static bool tg_chat_parse(json_t *v, char *chat, size_t n, long long *id)
{
	if (json_is_integer(v)) {
		*id = (long long)json_integer_value(v);
		snprintf(chat, n, "%lld", *id);
		return *id != 0;
	}
	const char *s = json_string_value(v);
	if (!s || !*s || strlen(s) >= n)
		return false;
	if (s[0] == '@') {
		size_t l = strlen(s + 1);
		if (l < 5 || l > 32 ||
		    strspn(s + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
		                  "VWXYZ0123456789_") != l)
			return false;
		for (size_t i = 0; s[i]; i++)
			chat[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
		chat[l + 1] = '\0';
		*id = -(1000000000000LL + (long long)(tg_hash(chat) % 1000000000000ULL));
		return true;
	}
	char *end;
	long long x = strtoll(s, &end, 10);
	if (*end || x == 0)
		return false;
	*id = x;
	snprintf(chat, n, "%lld", x);
	return true;
}

static json_t *tg_chat_obj(long long id, const char *chat)
{
	if (chat[0] == '@')
		return json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)id, "title",
		                 "Sim channel", "username", chat + 1, "type", "channel");
	if (id > 0) {
		char un[40];
		snprintf(un, sizeof un, "sim_%lld", id);
		return json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)id, "first_name", "Sim",
		                 "username", un, "type", "private");
	}
	bool super = id <= -1000000000000LL;
	return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "title",
	                 super ? "Sim supergroup" : "Sim group", "type",
	                 super ? "supergroup" : "group");
}

/* The user a scripted chat answers as: the chat's own user in a private
 * chat, a fixed member in groups. */
static json_t *tg_user_obj(long long chat_id)
{
	long long uid = chat_id > 0 ? chat_id : TG_GROUP_USER;
	char un[40];
	snprintf(un, sizeof un, "sim_%lld", uid);
	return json_pack("{s:I, s:b, s:s, s:s, s:s}", "id", (json_int_t)uid, "is_bot", 0,
	                 "first_name", "Sim", "username", un, "language_code", "en");
}

/* A file object for a URL: ids derived from the URL, so a resend of the same
 * file gets the same file_unique_id, as Telegram's do. */
static json_t *tg_file_obj(const char *url, const char *id_prefix)
{
	uint64_t h = tg_hash(url);
	char fid[64], uid[32];
	snprintf(fid, sizeof fid, "%s%016llx%08x", id_prefix, (unsigned long long)h,
	         (unsigned)(h >> 17));
	snprintf(uid, sizeof uid, "AgAD%012llx", (unsigned long long)(h & 0xffffffffffffULL));
	return json_pack("{s:s, s:s, s:I}", "file_id", fid, "file_unique_id", uid, "file_size",
	                 (json_int_t)(1024 + h % 500000));
}

/* The Message a successful send returns. */
static json_t *tg_message(const struct tg_account *a, const char *method, json_t *req,
                          const char *chat, long long chat_id, long long mid)
{
	json_t *m =
	    json_pack("{s:I, s:{s:I, s:b, s:s, s:s}, s:o, s:I}", "message_id", (json_int_t)mid,
	              "from", "id", (json_int_t)a->bot_id, "is_bot", 1, "first_name", "Herald Sim",
	              "username", "herald_sim_bot", "chat", tg_chat_obj(chat_id, chat), "date",
	              (json_int_t)(hr_now_us() / 1000000));
	if (!m)
		return NULL;
	if (strcmp(method, "sendMessage") == 0) {
		json_object_set(m, "text", json_object_get(req, "text"));
	} else if (strcmp(method, "sendDocument") == 0) {
		const char *url = json_string_value(json_object_get(req, "document"));
		json_t *doc = tg_file_obj(url, "BQACAgIAAxkDAAI");
		const char *slash = strrchr(url, '/');
		const char *name = slash && slash[1] ? slash + 1 : "document";
		size_t nl = strcspn(name, "?#");
		char fname[128];
		snprintf(fname, sizeof fname, "%.*s", (int)(nl < 100 ? nl : 100), name);
		size_t fl = strlen(fname);
		bool pdf = fl > 4 && strcasecmp(fname + fl - 4, ".pdf") == 0;
		json_object_set_new(doc, "file_name", json_string(fname));
		json_object_set_new(
		    doc, "mime_type",
		    json_string(pdf ? "application/pdf" : "application/octet-stream"));
		json_object_set_new(m, "document", doc);
	} else {
		const char *url = json_string_value(json_object_get(req, "photo"));
		json_t *small = tg_file_obj(url, "AgACAgIAAxkDAAs");
		json_t *big = tg_file_obj(url, "AgACAgIAAxkDAAm");
		json_object_set_new(small, "width", json_integer(90));
		json_object_set_new(small, "height", json_integer(67));
		json_object_set_new(big, "width", json_integer(800));
		json_object_set_new(big, "height", json_integer(600));
		json_object_set_new(m, "photo", json_pack("[o, o]", small, big));
	}
	json_t *cap = json_object_get(req, "caption");
	if (json_is_string(cap) && *json_string_value(cap))
		json_object_set(m, "caption", cap);
	json_t *rm = json_object_get(req, "reply_markup");
	if (rm)
		json_object_set(m, "reply_markup", rm);
	return m;
}

/* True if the message has a callback button carrying data. */
static bool tg_has_button(json_t *msg, const char *data)
{
	json_t *rows = json_object_get(json_object_get(msg, "reply_markup"), "inline_keyboard");
	size_t i, j;
	json_t *row, *b;
	json_array_foreach(rows, i, row)
	{
		json_array_foreach(row, j, b)
		{
			const char *cd = json_string_value(json_object_get(b, "callback_data"));
			if (cd && strcmp(cd, data) == 0)
				return true;
		}
	}
	return false;
}

static long long tg_next_update(struct sim_tg *t)
{
	pthread_mutex_lock(&t->lock);
	long long id = ++t->next_update;
	pthread_mutex_unlock(&t->lock);
	return id;
}

/* A scripted chat answers an accepted message: a press of its button (if it
 * has one with that data) and/or a reply, answer_delay_ms later. */
static void tg_script_answer(struct sim *s, int acct, const struct tg_script *sc, json_t *msg,
                             const char *chat, long long chat_id, const struct tg_knobs *k)
{
	struct sim_tg *t = s->tg;
	int64_t delay = (int64_t)(k->answer_delay_ms * 1000);
	if (sc->press && tg_has_button(msg, sc->press)) {
		char cbid[40], inst[24];
		pthread_mutex_lock(&t->lock);
		snprintf(cbid, sizeof cbid, "%08x%010llx", t->cb_prefix,
		         (unsigned long long)++t->cb_counter);
		struct tg_node *n = tg_table_get(&t->callbacks, cbid, true);
		if (n) {
			t->cb_issued++;
			t->presses++;
		}
		pthread_mutex_unlock(&t->lock);
		snprintf(inst, sizeof inst, "%lld", (long long)(tg_hash(chat) >> 2));
		json_t *u = json_pack("{s:I, s:{s:s, s:o, s:O, s:s, s:s}}", "update_id",
		                      (json_int_t)tg_next_update(t), "callback_query", "id", cbid,
		                      "from", tg_user_obj(chat_id), "message", msg, "chat_instance",
		                      inst, "data", sc->press);
		if (!n || !sim_tg_post_submit(s, acct, tg_dump(u), delay))
			hr_log(HR_LOG_WARN, "sim", "telegram press on %s not posted", chat);
	}
	if (sc->reply) {
		pthread_mutex_lock(&t->lock);
		struct tg_node *n = tg_table_get(&t->chats, chat, true);
		long long mid = n ? ++n->a : 0;
		if (n)
			t->replies++;
		pthread_mutex_unlock(&t->lock);
		json_t *u = json_pack("{s:I, s:{s:I, s:o, s:o, s:I, s:s, s:O}}", "update_id",
		                      (json_int_t)tg_next_update(t), "message", "message_id",
		                      (json_int_t)mid, "from", tg_user_obj(chat_id), "chat",
		                      tg_chat_obj(chat_id, chat), "date",
		                      (json_int_t)(hr_now_us() / 1000000), "text", sc->reply,
		                      "reply_to_message", msg);
		if (!n || !sim_tg_post_submit(s, acct, tg_dump(u), delay))
			hr_log(HR_LOG_WARN, "sim", "telegram reply from %s not posted", chat);
	}
}

/* Counts a refused send against its chat. */
static void tg_count_reject(struct sim_tg *t, const char *chat)
{
	pthread_mutex_lock(&t->lock);
	struct tg_node *n = tg_table_get(&t->chats, chat, true);
	if (n) {
		if (!n->a)
			n->a = t->msg_base;
		n->c++;
	}
	pthread_mutex_unlock(&t->lock);
}

/* sendMessage, sendDocument, sendPhoto. */
static void tg_send(struct sim *s, int acct, const char *method, json_t *req, const char *raw,
                    size_t rawlen, struct tg_knobs *k, unsigned int *status, char **resp,
                    int64_t *delay_us)
{
	struct sim_tg *t = s->tg;
	char chat[HR_ADDR_MAX];
	long long chat_id;
	json_t *cid = json_object_get(req, "chat_id");
	if (!cid || (json_is_string(cid) && !*json_string_value(cid))) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_fail(status, resp, 400, "Bad Request: chat_id is empty", NULL);
		return;
	}
	if (!tg_chat_parse(cid, chat, sizeof chat, &chat_id)) {
		sim_stats_reject(&s->stats, SIM_REJ_PERMANENT);
		tg_fail(status, resp, 400, "Bad Request: chat not found", NULL);
		return;
	}
	const char *bad = tg_check_send(method, req);
	if (bad) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 400, bad, NULL);
		return;
	}
	unsigned char digest[32];
	unsigned int dlen = 0;
	EVP_Digest(raw, rawlen, digest, &dlen, EVP_sha256(), NULL);
	uint64_t attempt = sim_stats_attempt(&s->stats, chat, digest);
	struct sim_rng rng;
	sim_rng_init(&rng, k->has_seed ? k->seed : s->random_seed, digest, attempt);
	double u429 = sim_rng_unit(&rng), u5xx = sim_rng_unit(&rng);
	double ufail = sim_rng_unit(&rng), ulat = sim_rng_unit(&rng);
	*delay_us += (int64_t)(k->latency_jitter_ms * 1000 * ulat);
	const struct tg_script *sc = sim_tg_script_find(k, chat);

	if (sc && sc->blocked) {
		pthread_mutex_lock(&t->lock);
		t->blocked++;
		pthread_mutex_unlock(&t->lock);
		sim_stats_reject(&s->stats, SIM_REJ_PERMANENT);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 403, "Forbidden: bot was blocked by the user", NULL);
		return;
	}
	if (sc && sc->migrate_to[0]) {
		char *end;
		long long to = strtoll(sc->migrate_to, &end, 10);
		pthread_mutex_lock(&t->lock);
		t->migrations++;
		pthread_mutex_unlock(&t->lock);
		sim_stats_reject(&s->stats, SIM_REJ_PERMANENT);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 400,
		        "Bad Request: group chat was upgraded to a supergroup chat",
		        json_pack("{s:I}", "migrate_to_chat_id", (json_int_t)to));
		return;
	}
	if (u429 < k->rate_429) {
		char desc[64];
		int ra = (int)k->retry_after;
		snprintf(desc, sizeof desc, "Too Many Requests: retry after %d", ra);
		sim_stats_reject(&s->stats, SIM_REJ_429);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 429, desc, json_pack("{s:i}", "retry_after", ra));
		return;
	}
	if (u5xx < k->rate_5xx) {
		sim_stats_reject(&s->stats, SIM_REJ_5XX);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 500, "Internal Server Error", NULL);
		return;
	}
	if (ufail < k->fail_rate) {
		sim_stats_reject(&s->stats, SIM_REJ_PERMANENT);
		tg_count_reject(t, chat);
		tg_fail(status, resp, 400, "Bad Request: chat not found", NULL);
		return;
	}
	pthread_mutex_lock(&t->lock);
	struct tg_node *n = tg_table_get(&t->chats, chat, true);
	long long mid = 0;
	if (n) {
		if (!n->a)
			n->a = t->msg_base;
		mid = ++n->a;
		n->b++;
		t->sent++;
	}
	pthread_mutex_unlock(&t->lock);
	json_t *msg = n ? tg_message(&t->accounts[acct], method, req, chat, chat_id, mid) : NULL;
	if (!msg) {
		tg_fail(status, resp, 500, "Internal Server Error: out of memory", NULL);
		return;
	}
	char pid[96];
	snprintf(pid, sizeof pid, "%lld:%lld", chat_id, mid);
	sim_stats_accept(&s->stats, chat, digest, NULL, pid);
	if (sc)
		tg_script_answer(s, acct, sc, msg, chat, chat_id, k);
	*status = 200;
	*resp = tg_dump(json_pack("{s:b, s:o}", "ok", 1, "result", msg));
}

static void tg_answer_callback(struct sim *s, json_t *req, unsigned int *status, char **resp)
{
	struct sim_tg *t = s->tg;
	const char *id = json_string_value(json_object_get(req, "callback_query_id"));
	pthread_mutex_lock(&t->lock);
	struct tg_node *n = id ? tg_table_get(&t->callbacks, id, false) : NULL;
	long long before = n ? n->a++ : -1;
	if (n)
		t->cb_answers++;
	if (before > 0)
		t->cb_repeat++;
	if (!n)
		t->cb_unknown++;
	pthread_mutex_unlock(&t->lock);
	if (before != 0) { /* unknown, or already answered */
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_fail(status, resp, 400, TG_QUERY_INVALID, NULL);
		return;
	}
	*status = 200;
	*resp = tg_dump(json_pack("{s:b, s:b}", "ok", 1, "result", 1));
}

/* POST /bot{token}/{method}. */
static void tg_api(struct sim *s, const char *url, const char *body, size_t len, bool too_large,
                   unsigned int *status, char **resp, int64_t *delay_us)
{
	struct sim_tg *t = s->tg;
	sim_stats_request(&s->stats);
	struct tg_knobs *k = sim_tg_knobs_get(t);
	*delay_us = (int64_t)(k->latency_ms * 1000);
	const char *p = url + 4, *slash = strchr(p, '/');
	int acct = -1;
	for (size_t i = 0; slash && i < t->naccounts; i++)
		if (strlen(t->accounts[i].token) == (size_t)(slash - p) &&
		    strncmp(t->accounts[i].token, p, (size_t)(slash - p)) == 0)
			acct = (int)i;
	const char *method = slash ? slash + 1 : "";
	if (acct < 0) {
		sim_stats_reject(&s->stats, SIM_REJ_AUTH);
		tg_fail(status, resp, slash ? 401 : 404, slash ? "Unauthorized" : "Not Found",
		        NULL);
		sim_tg_knobs_unref(k);
		return;
	}
	bool send = strcmp(method, "sendMessage") == 0 || strcmp(method, "sendDocument") == 0 ||
	            strcmp(method, "sendPhoto") == 0;
	if (!send && strcmp(method, "answerCallbackQuery") != 0) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_fail(status, resp, 404, "Not Found", NULL);
		sim_tg_knobs_unref(k);
		return;
	}
	json_error_t je;
	json_t *req = too_large ? NULL : json_loadb(body ? body : "", len, 0, &je);
	if (too_large) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_fail(status, resp, 413, "Request Entity Too Large", NULL);
	} else if (!json_is_object(req) && len > 0) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		tg_fail(status, resp, 400, "Bad Request: can't parse JSON object", NULL);
	} else {
		if (!req)
			req = json_object(); /* no parameters at all */
		if (send)
			tg_send(s, acct, method, req, body ? body : "", len, k, status, resp,
			        delay_us);
		else
			tg_answer_callback(s, req, status, resp);
	}
	json_decref(req);
	sim_tg_knobs_unref(k);
}

/* ---------------------------------------------------------------------------
 * Control endpoints
 * ------------------------------------------------------------------------- */

static void tg_ctl_error(unsigned int *status, char **resp, unsigned int code, const char *field,
                         const char *msg)
{
	json_t *e = json_pack("{s:s}", "message", msg);
	if (field && *field)
		json_object_set_new(e, "field", json_string(field));
	*status = code;
	*resp = tg_dump(json_pack("{s:o}", "error", e));
}

/* POST /sim/telegram/update {"account", ...update}. */
static void tg_ctl_update(struct sim *s, json_t *o, unsigned int *status, char **resp)
{
	struct sim_tg *t = s->tg;
	const char *id = json_string_value(json_object_get(o, "account"));
	int acct = -1;
	for (size_t i = 0; id && i < t->naccounts; i++)
		if (strcmp(t->accounts[i].id, id) == 0)
			acct = (int)i;
	if (acct < 0) {
		tg_ctl_error(status, resp, id ? 404 : 400, "account",
		             id ? "no telegram account with that id" : "account is required");
		return;
	}
	json_t *u = json_deep_copy(o);
	json_object_del(u, "account");
	json_t *uid = json_object_get(u, "update_id");
	if (uid && !json_is_integer(uid)) {
		json_decref(u);
		tg_ctl_error(status, resp, 400, "update_id", "update_id must be an integer");
		return;
	}
	if (!uid)
		json_object_set_new(u, "update_id", json_integer((json_int_t)tg_next_update(t)));
	long long update_id = (long long)json_integer_value(json_object_get(u, "update_id"));
	/* A callback query posted this way may be answered like a scripted one. */
	const char *cbid =
	    json_string_value(json_object_get(json_object_get(u, "callback_query"), "id"));
	if (cbid) {
		pthread_mutex_lock(&t->lock);
		if (tg_table_get(&t->callbacks, cbid, true))
			t->cb_issued++;
		pthread_mutex_unlock(&t->lock);
	}
	if (!sim_tg_post_submit(s, acct, tg_dump(u), 0)) {
		tg_ctl_error(status, resp, 503, NULL, "the simulator is stopping");
		return;
	}
	*status = 202;
	*resp = tg_dump(json_pack("{s:I, s:s}", "update_id", (json_int_t)update_id, "account",
	                          t->accounts[acct].id));
}

static void tg_ctl_config(struct sim *s, json_t *o, unsigned int *status, char **resp)
{
	struct sim_tg *t = s->tg;
	struct hr_err err = {0};
	struct tg_knobs *nk = NULL, *old = NULL;
	pthread_mutex_lock(&t->knobs_lock);
	int rc = sim_tg_knobs_apply(t->knobs, o, "", &nk, &err);
	if (rc == 0) {
		old = t->knobs;
		t->knobs = nk;
	}
	pthread_mutex_unlock(&t->knobs_lock);
	if (rc) {
		tg_ctl_error(status, resp, 400, err.field, err.msg);
		return;
	}
	sim_tg_knobs_unref(old);
	*status = 200;
	*resp = tg_dump(sim_tg_knobs_json(nk));
}

bool sim_tg_route(struct sim *s, const char *url, const char *method, const char *body, size_t len,
                  bool too_large, unsigned int *status, char **resp, int64_t *delay_us)
{
	struct sim_tg *t = s->tg;
	if (!t)
		return false;
	if (strncmp(url, "/bot", 4) == 0) {
		tg_api(s, url, body, len, too_large, status, resp, delay_us);
		return true;
	}
	if (strncmp(url, "/sim/telegram/", 14) != 0)
		return false;
	*delay_us = 0;
	const char *sub = url + 14;
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	json_t *o = NULL;
	if (post) {
		json_error_t je;
		o = too_large ? NULL : json_loadb(body ? body : "", len, 0, &je);
		if (!json_is_object(o)) {
			json_decref(o);
			tg_ctl_error(status, resp, 400, "body", "the body must be a JSON object");
			return true;
		}
	}
	if (post && strcmp(sub, "update") == 0) {
		tg_ctl_update(s, o, status, resp);
	} else if (post && strcmp(sub, "config") == 0) {
		tg_ctl_config(s, o, status, resp);
	} else if (get && strcmp(sub, "config") == 0) {
		struct tg_knobs *k = sim_tg_knobs_get(t);
		*status = 200;
		*resp = tg_dump(sim_tg_knobs_json(k));
		sim_tg_knobs_unref(k);
	} else if (get && (strncmp(sub, "chats/", 6) == 0 || strncmp(sub, "callbacks/", 10) == 0)) {
		bool chats = sub[0] == 'c' && sub[1] == 'h';
		const char *key = sub + (chats ? 6 : 10);
		json_t *ans = NULL;
		pthread_mutex_lock(&t->lock);
		struct tg_node *n = tg_table_get(chats ? &t->chats : &t->callbacks, key, false);
		if (n && chats)
			ans = json_pack("{s:s, s:I, s:I, s:I}", "chat", key, "sent",
			                (json_int_t)n->b, "rejected", (json_int_t)n->c,
			                "last_message_id", (json_int_t)(n->b ? n->a : 0));
		else if (n)
			ans = json_pack("{s:s, s:I}", "id", key, "answers", (json_int_t)n->a);
		pthread_mutex_unlock(&t->lock);
		if (n) {
			*status = 200;
			*resp = tg_dump(ans);
		} else {
			tg_ctl_error(status, resp, 404, NULL,
			             chats ? "the simulator never saw that chat"
			                   : "the simulator never issued that callback query");
		}
	} else {
		tg_ctl_error(status, resp, 404, NULL, "unknown path");
	}
	json_decref(o);
	return true;
}

void sim_tg_stats_add(struct sim *s, json_t *stats)
{
	struct sim_tg *t = s->tg;
	if (!t || !stats)
		return;
	pthread_mutex_lock(&t->lock);
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "sent",
	                      (json_int_t)t->sent, "callback_queries", (json_int_t)t->cb_issued,
	                      "callback_answers", (json_int_t)t->cb_answers,
	                      "callback_repeat_answers", (json_int_t)t->cb_repeat,
	                      "callback_unknown_answers", (json_int_t)t->cb_unknown, "migrations",
	                      (json_int_t)t->migrations, "blocked", (json_int_t)t->blocked,
	                      "presses", (json_int_t)t->presses, "replies", (json_int_t)t->replies);
	pthread_mutex_unlock(&t->lock);
	if (o)
		json_object_set_new(
		    o, "updates",
		    json_pack("{s:I, s:I, s:I, s:I}", "posted", (json_int_t)atomic_load(&t->posted),
		              "failed_attempts", (json_int_t)atomic_load(&t->failed), "dropped",
		              (json_int_t)atomic_load(&t->dropped), "pending",
		              (json_int_t)atomic_load(&t->pending)));
	json_object_set_new(stats, "telegram", o);
}

void sim_tg_reset(struct sim *s)
{
	struct sim_tg *t = s->tg;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->sent = t->cb_issued = t->cb_answers = t->cb_repeat = t->cb_unknown = 0;
	t->migrations = t->blocked = t->presses = t->replies = 0;
	for (size_t i = 0; i < t->chats.nbuckets; i++)
		for (struct tg_node *n = t->chats.buckets[i]; n; n = n->next)
			n->b = n->c = 0; /* n->a, the last message id, keeps counting */
	for (size_t i = 0; i < t->callbacks.nbuckets; i++)
		for (struct tg_node *n = t->callbacks.buckets[i]; n; n = n->next)
			n->a = 0;
	pthread_mutex_unlock(&t->lock);
	atomic_store(&t->posted, 0);
	atomic_store(&t->failed, 0);
	atomic_store(&t->dropped, 0);
}

/* ---------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------- */

static void tg_account_free(struct tg_account *a)
{
	free(a->token);
	free(a->secret);
	free(a->webhook_url);
}

/* A required secret (a reference or a literal) of an account entry. */
static int tg_cfg_secret(json_t *cfg, const char *key, const char *base, char **out,
                         struct hr_err *err)
{
	char field[160];
	snprintf(field, sizeof field, "%s.%s", base, key);
	const char *ref = json_string_value(json_object_get(cfg, key));
	if (!ref || !*ref)
		return hr_fail(err, HR_EINVAL, field, "%s is required", field);
	*out = hr_secret_resolve(ref, field, err);
	if (!*out)
		return err && err->code ? err->code : HR_EINVAL;
	return 0;
}

/* One tenants[t].accounts[i] entry with channel telegram. */
static int tg_load_account(struct sim *s, json_t *entry, const char *base, struct hr_err *err)
{
	struct sim_tg *t = s->tg;
	struct tg_account *a = &t->accounts[t->naccounts];
	memset(a, 0, sizeof *a);
	char cbase[140];
	json_t *cfg = sim_account_entry(entry, base, a->id, sizeof a->id, cbase, sizeof cbase, err);
	if (!cfg)
		return err && err->code ? err->code : HR_EINVAL;
	int rc;
	if ((rc = tg_cfg_secret(cfg, "bot_token", cbase, &a->token, err)) ||
	    (rc = tg_cfg_secret(cfg, "webhook_secret", cbase, &a->secret, err))) {
		tg_account_free(a);
		return rc;
	}
	a->bot_id = strtoll(a->token, NULL, 10);
	size_t hl = strlen(s->herald_url);
	while (hl && s->herald_url[hl - 1] == '/')
		hl--;
	if (asprintf(&a->webhook_url, "%.*s/webhooks/telegram/%s", (int)hl, s->herald_url, a->id) <
	    0) {
		a->webhook_url = NULL;
		tg_account_free(a);
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	}
	for (size_t i = 0; i < t->naccounts; i++) {
		if (strcmp(t->accounts[i].id, a->id) == 0 ||
		    strcmp(t->accounts[i].token, a->token) == 0) {
			tg_account_free(a);
			return hr_fail(err, HR_EINVAL, base,
			               "%s: id or bot_token already used by account '%s'", base,
			               t->accounts[i].id);
		}
	}
	t->naccounts++;
	return 0;
}

static int tg_load_accounts(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_tg *t = s->tg;
	t->accounts = calloc(sim_config_account_slots(config) + 1, sizeof *t->accounts);
	if (!t->accounts)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return sim_config_each_account(s, config, "telegram", tg_load_account, err);
}

int sim_tg_start(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_tg *t = calloc(1, sizeof *t);
	if (!t)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	s->tg = t;
	pthread_mutex_init(&t->knobs_lock, NULL);
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->qlock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* due times are hr_mono_us */
	pthread_cond_init(&t->qcond, &ca);
	pthread_condattr_destroy(&ca);
	uint64_t r[2];
	hr_random_bytes(r, sizeof r);
	t->msg_base = (long long)(r[0] % 100000);
	t->next_update = 100000000 + (long long)(r[1] % 800000000);
	hr_random_bytes(&t->cb_prefix, sizeof t->cb_prefix);

	struct tg_knobs def = {.retry_after = 1, .answer_delay_ms = 300, .webhook_retry_s = 60};
	json_t *retry = hr_cfg_get(config, "sim.webhook_retry_s");
	if (retry)
		sim_as_number(retry, &def.webhook_retry_s); /* YAML may quote numbers */
	int rc = sim_tg_knobs_apply(&def, hr_cfg_get(config, "sim.telegram"), "sim.telegram.",
	                            &t->knobs, err);
	if (!rc)
		rc = tg_load_accounts(s, config, err);
	if (!rc && pthread_create(&t->thread, NULL, sim_tg_poster_main, s) != 0)
		rc = hr_fail(err, HR_EINTERNAL, NULL, "cannot start the telegram poster thread");
	if (!rc) {
		t->started = true;
		pthread_setname_np(t->thread, "sim-telegram");
	}
	return rc; /* on failure sim_stop -> sim_tg_stop cleans up */
}

void sim_tg_stop(struct sim *s)
{
	struct sim_tg *t = s ? s->tg : NULL;
	if (!t)
		return;
	pthread_mutex_lock(&t->qlock);
	t->stop = true;
	pthread_cond_signal(&t->qcond);
	pthread_mutex_unlock(&t->qlock);
	if (t->started)
		pthread_join(t->thread, NULL);
	while (t->queue) {
		struct tg_post *p = t->queue;
		t->queue = p->next;
		sim_tg_post_free(p);
	}
	for (size_t i = 0; i < t->naccounts; i++)
		tg_account_free(&t->accounts[i]);
	free(t->accounts);
	sim_tg_knobs_unref(t->knobs);
	tg_table_free(&t->chats);
	tg_table_free(&t->callbacks);
	pthread_cond_destroy(&t->qcond);
	pthread_mutex_destroy(&t->qlock);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->knobs_lock);
	free(t);
	s->tg = NULL;
}
