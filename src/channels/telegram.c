/*
 * telegram.c - the Telegram Bot API adapter.
 *
 * Requests are `POST {base_url}/bot{token}/{method}` with a JSON body
 * (sendMessage, sendDocument, sendPhoto; answerCallbackQuery as a webhook
 * follow-up). Telegram has no templates and no delivery or read receipts: a
 * template is sent as its rendered body, and a message is final at `sent`.
 *
 * Account config: base_url (default https://api.telegram.org), bot_token and
 * webhook_secret (secret references, "env:X" / "file:/p"), rate_limit
 * (default 30/s, the registry reads it). Telegram also limits a bot to about
 * one message per second per chat and 20 per minute per group; Herald's
 * limit is per account, so bursts to one chat may meet 429s, which carry
 * parameters.retry_after and are honoured.
 *
 * Confirmed against public references (docs/issues search) while writing:
 *  - sendMessage text is 1-4096 characters after entities parsing; captions
 *    0-1024; InlineKeyboardButton.callback_data is 1-64 bytes; entity
 *    offsets count UTF-16 code units, so lengths are counted in those here;
 *  - failures are {"ok":false,"error_code":N,"description":"...",
 *    "parameters":{"retry_after":S}|{"migrate_to_chat_id":ID}} (the
 *    ResponseParameters object); a moved group answers 400 "Bad Request:
 *    group chat was upgraded to a supergroup chat" with migrate_to_chat_id
 *    (fits a signed 64-bit integer); a blocked bot gets 403 "Forbidden: bot
 *    was blocked by the user"; an unknown chat 400 "Bad Request: chat not
 *    found"; a wrong token 401 "Unauthorized";
 *  - setWebhook's secret_token is 1-256 characters of A-Z a-z 0-9 _ - and
 *    comes back in every update as X-Telegram-Bot-Api-Secret-Token;
 *  - a CallbackQuery carries id, from, the message the button was on (with
 *    its reply_markup), chat_instance and data; it must be answered with
 *    answerCallbackQuery or the client keeps showing a spinner.
 *
 * Mapping choices: reply buttons become callback buttons (callback_data =
 * the button id; the press names its message, so nothing else is needed to
 * link it), three to a row, then one row per URL action; a document's
 * filename is not sent (sendDocument by URL has no such field: Telegram
 * names the file from the URL); inbound "from" is the chat (the address
 * Herald sends to), also for a press in a group.
 *
 * The adapter does no I/O: build_send makes the request, parse_send
 * classifies the answer, webhook_* verify and parse what Telegram posts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "channels/channel.h"
#include "core/config.h"
#include "core/jsonr.h"
#include "core/jsonw.h"

#define TG_DEFAULT_BASE "https://api.telegram.org"
#define TG_TEXT_MAX 4096       /* UTF-16 units of a message text */
#define TG_CAPTION_MAX 1024    /* UTF-16 units of a caption */
#define TG_MARKUP_FACTOR 4     /* raw length allowed per unit with a parse_mode */
#define TG_CB_DATA_MAX 64      /* bytes of callback_data */
#define TG_BUTTON_TEXT_MAX 256 /* bytes of a button label (sanity bound) */
#define TG_BUTTONS_MAX 100     /* buttons in one inline keyboard */
#define TG_ROW_MAX 3           /* reply buttons per keyboard row (our layout) */
#define TG_URL_MAX 2048
#define TG_SECRET_MAX 256
#define TG_SECRET_HEADER "X-Telegram-Bot-Api-Secret-Token"

/* Resolved per-account state, owned by acct->priv. */
struct tg_priv {
	char *api_prefix; /* "{base_url}/bot{token}/": holds the token */
	char *webhook_secret;
};

static void tg_wipe_free(char *s)
{
	hr_secret_free(s);
}

static void tg_priv_free(struct tg_priv *p)
{
	if (!p)
		return;
	tg_wipe_free(p->api_prefix);
	tg_wipe_free(p->webhook_secret);
	free(p);
}

/* ---------------------------------------------------------------------------
 * Account configuration
 * ------------------------------------------------------------------------- */

static bool tg_token_char(char c, bool colon_ok)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || (colon_ok && c == ':');
}

/* BotFather tokens are "<bot id>:<secret>"; the token goes into a URL path,
 * so anything outside that alphabet is refused rather than escaped. */
static bool tg_bot_token_ok(const char *t)
{
	size_t n = strlen(t);
	if (n < 3 || n > 128 || !strchr(t, ':'))
		return false;
	for (; *t; t++)
		if (!tg_token_char(*t, true))
			return false;
	return true;
}

static bool tg_secret_token_ok(const char *t)
{
	size_t n = strlen(t);
	if (n < 1 || n > TG_SECRET_MAX)
		return false;
	for (; *t; t++)
		if (!tg_token_char(*t, false))
			return false;
	return true;
}

/* Validates the account's keys and resolves its secrets into acct->priv.
 * Cleans up after itself on failure. */
static int tg_account_load(struct channel_account *acct, struct hr_err *err)
{
	const char *base;
	char field[96];
	int rc = channel_cfg_url(acct, "base_url", TG_DEFAULT_BASE, &base, err);
	if (rc)
		return rc;
	struct tg_priv *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	char *token = NULL;
	if ((rc = channel_cfg_secret(acct, "bot_token", true, &token, err)) ||
	    (rc = channel_cfg_secret(acct, "webhook_secret", true, &p->webhook_secret, err)))
		goto fail;
	if (!tg_bot_token_ok(token)) {
		channel_cfg_field(field, sizeof field, acct, "bot_token");
		rc = hr_fail(err, HR_EINVAL, field,
		             "%s must look like \"123456:ABC-def_1\" (digits, ':', letters, "
		             "digits, '_' or '-')",
		             field);
		goto fail;
	}
	if (!tg_secret_token_ok(p->webhook_secret)) {
		channel_cfg_field(field, sizeof field, acct, "webhook_secret");
		rc = hr_fail(err, HR_EINVAL, field,
		             "%s must be 1..%d characters of A-Z, a-z, 0-9, '_' or '-' "
		             "(Telegram's secret_token alphabet)",
		             field, TG_SECRET_MAX);
		goto fail;
	}
	size_t blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (asprintf(&p->api_prefix, "%.*s/bot%s/", (int)blen, base, token) < 0) {
		p->api_prefix = NULL;
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		goto fail;
	}
	tg_wipe_free(token);
	acct->priv = p;
	return 0;
fail:
	tg_wipe_free(token);
	tg_priv_free(p);
	return rc;
}

static void tg_account_free(struct channel_account *acct)
{
	tg_priv_free(acct->priv);
	acct->priv = NULL;
}

/* ---------------------------------------------------------------------------
 * Recipients
 * ------------------------------------------------------------------------- */

/* A numeric chat id in canonical form ("-?[1-9][0-9]*") that fits int64. */
static bool tg_parse_chat_id(const char *s, long long *out)
{
	const char *d = s[0] == '-' ? s + 1 : s;
	size_t n = strlen(d);
	if (n == 0 || n > 19 || d[0] == '0' || strspn(d, "0123456789") != n)
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	if (out)
		*out = v;
	return true;
}

/*
 * Telegram addresses a chat by its numeric id (users positive, groups
 * negative, supergroups and channels -100...) or a public channel by
 * "@username" (5..32 of A-Z a-z 0-9 _). Usernames are case-insensitive, so
 * they are lower-cased: one chat, one address (suppressions and migrations
 * match by address). Surrounding blanks are dropped.
 */
static int tg_normalize(const char *in, char out[HR_ADDR_MAX], struct hr_err *err)
{
	if (!in)
		return hr_fail(err, HR_EINVAL, "to", "to is required");
	while (*in == ' ' || *in == '\t')
		in++;
	size_t n = strlen(in);
	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
		n--;
	if (n == 0)
		return hr_fail(err, HR_EINVAL, "to", "to is required");
	if (n > 33)
		return hr_fail(err, HR_EINVAL, "to",
		               "to must be a Telegram chat id (up to 20 characters) or "
		               "@channelusername (5 to 32 characters)");
	char buf[40];
	memcpy(buf, in, n);
	buf[n] = '\0';
	if (buf[0] == '@') {
		size_t un = n - 1;
		bool ok = un >= 5 && un <= 32;
		for (size_t i = 1; ok && i < n; i++) {
			char c = buf[i];
			ok = tg_token_char(c, false) && c != '-';
			if (c >= 'A' && c <= 'Z')
				buf[i] = (char)(c - 'A' + 'a');
		}
		if (!ok)
			return hr_fail(err, HR_EINVAL, "to",
			               "to: a channel username is '@' and 5 to 32 letters, digits "
			               "or '_'");
	} else if (n > 20 || !tg_parse_chat_id(buf, NULL)) {
		return hr_fail(err, HR_EINVAL, "to",
		               "to must be a Telegram chat id (an optional '-' and digits, no "
		               "leading zero) or @channelusername");
	}
	hr_strlcpy(out, buf, HR_ADDR_MAX);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Content
 * ------------------------------------------------------------------------- */

/* Length in UTF-16 code units of valid UTF-8 (jansson guarantees validity):
 * 4-byte sequences are surrogate pairs. */
static size_t tg_utf16_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c & 0xC0) != 0x80)
			n += c >= 0xF0 ? 2 : 1;
	}
	return n;
}

static bool tg_url_ok(const char *u, bool tg_scheme)
{
	size_t n = strlen(u);
	if (n > TG_URL_MAX)
		return false;
	const char *rest = NULL;
	if (strncasecmp(u, "https://", 8) == 0)
		rest = u + 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		rest = u + 7;
	else if (tg_scheme && strncasecmp(u, "tg://", 5) == 0)
		rest = u + 5;
	if (!rest || !*rest)
		return false;
	for (; *u; u++)
		if ((unsigned char)*u <= 0x20 || *u == 0x7f)
			return false;
	return true;
}

static const char *tg_parse_mode(const json_t *content)
{
	return json_string_value(
	    json_object_get(json_object_get(content, "options"), "parse_mode"));
}

/*
 * Checks a text or caption. Without a parse_mode the limit applies to the
 * text as given; with one, Telegram counts only what is left after parsing
 * the markup, so the raw text may be longer (up to TG_MARKUP_FACTOR times)
 * and Telegram has the last word.
 */
static int tg_check_text(const char *s, const char *field, size_t max, bool required, bool markup,
                         struct hr_err *err)
{
	if (!s || (required && !*s))
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	size_t n = tg_utf16_len(s);
	if (!markup && n > max)
		return hr_fail(err, HR_EINVAL, field,
		               "%s is longer than Telegram's %zu characters (%zu)", field, max, n);
	if (markup && n > max * TG_MARKUP_FACTOR)
		return hr_fail(err, HR_EINVAL, field,
		               "%s is longer than %zu characters even with markup (%zu)", field,
		               max * TG_MARKUP_FACTOR, n);
	return 0;
}

static int tg_check_options(const json_t *content, struct hr_err *err)
{
	json_t *o = json_object_get(content, "options");
	if (!o || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, "options", "options must be an object");
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		char field[80];
		snprintf(field, sizeof field, "options.%.48s", key);
		if (strcmp(key, "parse_mode") == 0) {
			const char *m = json_string_value(v);
			if (!m || (strcmp(m, "HTML") != 0 && strcmp(m, "MarkdownV2") != 0 &&
			           strcmp(m, "Markdown") != 0))
				return hr_fail(
				    err, HR_EINVAL, field,
				    "%s must be \"HTML\", \"MarkdownV2\" or \"Markdown\"", field);
		} else if (strcmp(key, "disable_notification") == 0) {
			if (!json_is_boolean(v))
				return hr_fail(err, HR_EINVAL, field, "%s must be true or false",
				               field);
		} else {
			return hr_fail(err, HR_EINVAL, field,
			               "%s is not a telegram option (parse_mode, "
			               "disable_notification)",
			               field);
		}
	}
	return 0;
}

/* Reply buttons become callback buttons (callback_data = id), actions URL
 * buttons; Telegram has no dial button. */
static int tg_check_keyboard(const json_t *content, struct hr_err *err)
{
	json_t *buttons = json_object_get(content, "buttons");
	json_t *actions = json_object_get(content, "actions");
	char field[64];
	if (buttons && !json_is_null(buttons) && !json_is_array(buttons))
		return hr_fail(err, HR_EINVAL, "buttons", "buttons must be an array");
	if (actions && !json_is_null(actions) && !json_is_array(actions))
		return hr_fail(err, HR_EINVAL, "actions", "actions must be an array");
	if (json_array_size(buttons) + json_array_size(actions) > TG_BUTTONS_MAX)
		return hr_fail(err, HR_EINVAL, json_array_size(buttons) ? "buttons" : "actions",
		               "an inline keyboard holds at most %d buttons", TG_BUTTONS_MAX);
	size_t i;
	json_t *b;
	json_array_foreach(buttons, i, b)
	{
		snprintf(field, sizeof field, "buttons[%zu]", i);
		if (!json_is_object(b))
			return hr_fail(err, HR_EINVAL, field, "%s must be an object", field);
		const char *id = json_string_value(json_object_get(b, "id"));
		const char *title = json_string_value(json_object_get(b, "title"));
		snprintf(field, sizeof field, "buttons[%zu].id", i);
		if (!id || !*id || strlen(id) > TG_CB_DATA_MAX)
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be 1 to %d bytes (Telegram's callback_data)", field,
			               TG_CB_DATA_MAX);
		for (size_t k = 0; k < i; k++) {
			const char *other =
			    json_string_value(json_object_get(json_array_get(buttons, k), "id"));
			if (other && strcmp(other, id) == 0)
				return hr_fail(err, HR_EINVAL, field,
				               "%s repeats buttons[%zu].id: a press could not "
				               "tell them apart",
				               field, k);
		}
		snprintf(field, sizeof field, "buttons[%zu].title", i);
		if (!title || !*title || strlen(title) > TG_BUTTON_TEXT_MAX)
			return hr_fail(err, HR_EINVAL, field, "%s must be 1 to %d bytes", field,
			               TG_BUTTON_TEXT_MAX);
	}
	json_array_foreach(actions, i, b)
	{
		snprintf(field, sizeof field, "actions[%zu]", i);
		if (!json_is_object(b))
			return hr_fail(err, HR_EINVAL, field, "%s must be an object", field);
		const char *title = json_string_value(json_object_get(b, "title"));
		const char *url = json_string_value(json_object_get(b, "url"));
		if (json_object_get(b, "dial")) {
			snprintf(field, sizeof field, "actions[%zu].dial", i);
			return hr_fail(err, HR_EINVAL, field,
			               "%s: Telegram has no call button (use a url action)", field);
		}
		snprintf(field, sizeof field, "actions[%zu].title", i);
		if (!title || !*title || strlen(title) > TG_BUTTON_TEXT_MAX)
			return hr_fail(err, HR_EINVAL, field, "%s must be 1 to %d bytes", field,
			               TG_BUTTON_TEXT_MAX);
		snprintf(field, sizeof field, "actions[%zu].url", i);
		if (!url || !tg_url_ok(url, true))
			return hr_fail(err, HR_EINVAL, field,
			               "%s must be an http(s):// or tg:// URL", field);
	}
	return 0;
}

/* document/image objects: a URL Telegram fetches, and an optional caption. */
static int tg_check_media(const json_t *content, const char *type, bool markup, struct hr_err *err)
{
	json_t *o = json_object_get(content, type);
	char field[48];
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, type, "%s must be an object", type);
	const char *url = json_string_value(json_object_get(o, "url"));
	snprintf(field, sizeof field, "%s.url", type);
	if (!url || !tg_url_ok(url, false))
		return hr_fail(err, HR_EINVAL, field, "%s must be an http:// or https:// URL",
		               field);
	json_t *cap = json_object_get(o, "caption");
	snprintf(field, sizeof field, "%s.caption", type);
	if (cap && !json_is_null(cap)) {
		int rc = tg_check_text(json_string_value(cap), field, TG_CAPTION_MAX, false, markup,
		                       err);
		if (rc)
			return rc;
	}
	json_t *fn = json_object_get(o, "filename");
	snprintf(field, sizeof field, "%s.filename", type);
	if (fn && !json_is_null(fn) && !json_is_string(fn))
		return hr_fail(err, HR_EINVAL, field, "%s must be a string", field);
	return 0;
}

/* Templates: Telegram has none, the API renders the body and that is sent as
 * text. Header and button parameters have nowhere to go. */
static int tg_check_template(const json_t *content, struct hr_err *err)
{
	json_t *t = json_object_get(content, "template");
	if (!json_is_object(t))
		return hr_fail(err, HR_EINVAL, "template", "template must be an object");
	const char *name = json_string_value(json_object_get(t, "name"));
	if (!name || !*name)
		return hr_fail(err, HR_EINVAL, "template.name",
		               "template.name must be a non-empty string");
	json_t *params = json_object_get(t, "parameters");
	if (params && !json_is_null(params) && !json_is_array(params))
		return hr_fail(err, HR_EINVAL, "template.parameters",
		               "template.parameters must be an array of strings");
	size_t i;
	json_t *p;
	json_array_foreach(params, i, p)
	{
		if (!json_is_string(p)) {
			char field[48];
			snprintf(field, sizeof field, "template.parameters[%zu]", i);
			return hr_fail(err, HR_EINVAL, field, "%s must be a string", field);
		}
	}
	if (json_object_get(t, "header"))
		return hr_fail(err, HR_EINVAL, "template.header",
		               "template.header is not supported on telegram (no template "
		               "headers)");
	if (json_object_get(t, "buttons"))
		return hr_fail(err, HR_EINVAL, "template.buttons",
		               "template.buttons is not supported on telegram (use buttons "
		               "with text)");
	return 0;
}

static int tg_validate(const json_t *content, struct hr_err *err)
{
	if (!json_is_object(content))
		return hr_fail(err, HR_EINVAL, "content", "content must be a JSON object");
	const char *type = json_string_value(json_object_get(content, "type"));
	if (!type)
		return hr_fail(err, HR_EINVAL, "type", "type is required");
	int rc = tg_check_options(content, err);
	if (rc)
		return rc;
	bool markup = tg_parse_mode(content) != NULL;
	if (strcmp(type, "text") == 0)
		rc = tg_check_text(json_string_value(json_object_get(content, "text")), "text",
		                   TG_TEXT_MAX, true, markup, err);
	else if (strcmp(type, "document") == 0 || strcmp(type, "image") == 0)
		rc = tg_check_media(content, type, markup, err);
	else if (strcmp(type, "template") == 0)
		rc = tg_check_template(content, err);
	else
		return hr_fail(err, HR_EINVAL, "type",
		               "type '%.32s' is not supported on telegram (text, template, "
		               "document, image)",
		               type);
	return rc ? rc : tg_check_keyboard(content, err);
}

/* ---------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------- */

/* {"inline_keyboard":[[reply buttons, TG_ROW_MAX a row]...,[url button]...]},
 * or NULL when the content has no buttons. */
static json_t *tg_keyboard(const json_t *content)
{
	json_t *buttons = json_object_get(content, "buttons");
	json_t *actions = json_object_get(content, "actions");
	if (json_array_size(buttons) + json_array_size(actions) == 0)
		return NULL;
	json_t *rows = json_array(), *row = NULL;
	size_t i;
	json_t *b;
	json_array_foreach(buttons, i, b)
	{
		if (!row || json_array_size(row) == TG_ROW_MAX) {
			row = json_array();
			json_array_append_new(rows, row);
		}
		json_array_append_new(row,
		                      json_pack("{s:O, s:O}", "text", json_object_get(b, "title"),
		                                "callback_data", json_object_get(b, "id")));
	}
	json_array_foreach(actions, i, b)
	{
		json_t *btn = json_pack("{s:O, s:O}", "text", json_object_get(b, "title"), "url",
		                        json_object_get(b, "url"));
		json_array_append_new(rows, json_pack("[o]", btn));
	}
	return json_pack("{s:o}", "inline_keyboard", rows);
}

/* chat_id as Telegram takes it: an integer for numeric ids, else "@name". */
static json_t *tg_chat_id_json(const char *recipient)
{
	long long id;
	if (tg_parse_chat_id(recipient, &id))
		return json_integer((json_int_t)id);
	return json_string(recipient);
}

/* Builds the method's JSON body; *method names the Bot API method. */
static int tg_send_body(const struct message *m, json_t *content, const char **method, json_t **out,
                        struct hr_err *err)
{
	const char *type = json_string_value(json_object_get(content, "type"));
	const char *mode = tg_parse_mode(content);
	json_t *root = json_object();
	if (!root)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	json_object_set_new(root, "chat_id", tg_chat_id_json(m->recipient));
	if (strcmp(type, "text") == 0 || strcmp(type, "template") == 0) {
		*method = "sendMessage";
		if (strcmp(type, "text") == 0) {
			json_object_set(root, "text", json_object_get(content, "text"));
		} else {
			/* The API rendered the template into m->body. */
			int rc =
			    tg_check_text(m->body, "body", TG_TEXT_MAX, true, mode != NULL, err);
			if (rc) {
				json_decref(root);
				return rc;
			}
			json_object_set_new(root, "text", json_string(m->body));
		}
	} else {
		bool doc = strcmp(type, "document") == 0;
		*method = doc ? "sendDocument" : "sendPhoto";
		json_t *o = json_object_get(content, type);
		json_object_set(root, doc ? "document" : "photo", json_object_get(o, "url"));
		json_t *cap = json_object_get(o, "caption");
		if (json_is_string(cap) && *json_string_value(cap))
			json_object_set(root, "caption", cap);
	}
	if (mode)
		json_object_set_new(root, "parse_mode", json_string(mode));
	json_t *quiet =
	    json_object_get(json_object_get(content, "options"), "disable_notification");
	if (json_is_true(quiet))
		json_object_set_new(root, "disable_notification", json_true());
	json_t *kb = tg_keyboard(content);
	if (kb)
		json_object_set_new(root, "reply_markup", kb);
	*out = root;
	return 0;
}

/* "chat_id": a numeric chat as a number (as the jansson way writes it), a
 * @channel name as a string. */
static void tg_put_chat_id(struct jsonw *w, const char *recipient)
{
	jsonw_key(w, "chat_id");
	long long id;
	if (tg_parse_chat_id(recipient, &id))
		jsonw_int(w, id);
	else
		jsonw_str(w, recipient);
}

/*
 * the same body written directly (core/jsonw.h) for the common
 * shapes: sendMessage (text, template) and sendDocument / sendPhoto, with
 * their options. A message with reply buttons or URL actions keeps the
 * jansson builder above (its inline keyboard is rows of varying length):
 * NULL with *rc 0 declines, and so does any failure of the writer, so
 * jansson's builder decides then. *rc is set when the content is refused
 * (the rendered template's text), as tg_send_body refuses it.
 */
static char *tg_body_fast(const struct message *m, const json_t *content, const char **method,
                          int *rc, struct hr_err *err)
{
	*rc = 0;
	if (json_array_size(json_object_get(content, "buttons")) +
	        json_array_size(json_object_get(content, "actions")) >
	    0)
		return NULL;
	const char *type = json_string_value(json_object_get(content, "type"));
	const char *mode = tg_parse_mode(content);
	struct jsonw w;
	/* Bounded by its content (escaping makes at most six bytes of one). */
	jsonw_init(&w, 8 * (strlen(m->content) + (m->body ? strlen(m->body) : 0)) + 1024);
	jsonw_obj(&w);
	tg_put_chat_id(&w, m->recipient);
	if (strcmp(type, "text") == 0 || strcmp(type, "template") == 0) {
		*method = "sendMessage";
		if (strcmp(type, "text") == 0) {
			jsonw_kstr(&w, "text", json_string_value(json_object_get(content, "text")));
		} else {
			/* The API rendered the template into m->body. */
			*rc = tg_check_text(m->body, "body", TG_TEXT_MAX, true, mode != NULL, err);
			if (*rc) {
				jsonw_free(&w);
				return NULL;
			}
			jsonw_kstr(&w, "text", m->body);
		}
	} else {
		bool doc = strcmp(type, "document") == 0;
		*method = doc ? "sendDocument" : "sendPhoto";
		const json_t *o = json_object_get(content, type);
		jsonw_kstr(&w, doc ? "document" : "photo",
		           json_string_value(json_object_get(o, "url")));
		const char *cap = json_string_value(json_object_get(o, "caption"));
		if (cap && *cap)
			jsonw_kstr(&w, "caption", cap);
	}
	if (mode)
		jsonw_kstr(&w, "parse_mode", mode);
	if (json_is_true(
	        json_object_get(json_object_get(content, "options"), "disable_notification")))
		jsonw_kbool(&w, "disable_notification", true);
	jsonw_obj_end(&w);
	return jsonw_finish(&w, NULL, NULL);
}

/* A POST of a JSON body to {api_prefix}{method}; takes ownership of body. */
static int tg_request(const struct tg_priv *p, const char *method, char *body, struct http_req *out,
                      struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	out->body = body;
	if (body && asprintf(&out->url, "%s%s", p->api_prefix, method) < 0)
		out->url = NULL;
	out->headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* No "Expect: 100-continue" round trip before larger bodies. */
	struct curl_slist *h = out->headers ? curl_slist_append(out->headers, "Expect:") : NULL;
	if (!out->body || !out->url || !h) {
		http_req_clear(out);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	out->body_len = strlen(out->body);
	return 0;
}

/*
 * the commonest content, a plain text ({"type":"text","text":..}
 * with no options, buttons or actions; other keys are ignored, as
 * tg_validate ignores them), read with jsonr instead of a jansson tree and
 * checked as tg_validate checks it (non-empty, at most TG_TEXT_MAX UTF-16
 * units), then written as tg_body_fast writes it: sendMessage's body, or
 * NULL to decline (anything else, or anything tg_validate would refuse,
 * goes the jansson way, which builds or refuses it as before).
 */
static char *tg_text_fast(const struct message *m)
{
	static const char *const refuse[] = {"options", "buttons", "actions", NULL};
	char *text = channel_plain_text(m->content, refuse);
	if (!text)
		return NULL;
	char *body = NULL;
	if (tg_utf16_len(text) <= TG_TEXT_MAX) {
		struct jsonw w;
		jsonw_init(&w, 8 * strlen(m->content) + 1024);
		jsonw_obj(&w);
		tg_put_chat_id(&w, m->recipient);
		jsonw_kstr(&w, "text", text);
		jsonw_obj_end(&w);
		body = jsonw_finish(&w, NULL, NULL);
	}
	free(text);
	return body;
}

static int tg_build_send(const struct channel_account *acct, const struct message *m,
                         struct http_req *out, struct hr_err *err)
{
	memset(out, 0, sizeof *out);
	char *text_body = channel_fast_json ? tg_text_fast(m) : NULL;
	if (text_body) {
		channel_fast_json_hits++;
		return tg_request(acct->priv, "sendMessage", text_body, out, err);
	}
	json_error_t je;
	json_t *content = m->content ? json_loads(m->content, 0, &je) : NULL;
	if (!content)
		return hr_fail(err, HR_EINVAL, "content", "message content is not valid JSON");
	int rc = tg_validate(content, err);
	const char *method = NULL;
	char *body = NULL;
	if (rc == 0 && channel_fast_json) {
		body = tg_body_fast(m, content, &method, &rc, err);
		if (body)
			channel_fast_json_hits++;
	}
	if (rc == 0 && !body) { /* switched off, or declined: jansson's way */
		json_t *root = NULL;
		rc = tg_send_body(m, content, &method, &root, err);
		body = rc ? NULL : json_dumps(root, JSON_COMPACT);
		json_decref(root);
	}
	json_decref(content);
	if (rc)
		return rc;
	return tg_request(acct->priv, method, body, out, err);
}

/* Retry-After as delta seconds (the body's retry_after is preferred). */
static int64_t tg_retry_header_us(const char *v)
{
	if (!v)
		return 0;
	char *end;
	long long secs = strtoll(v, &end, 10);
	while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
		end++;
	if (end == v || *end || secs <= 0)
		return 0;
	return (secs > 86400 ? 86400 : secs) * 1000000LL;
}

/* "<chat id>:<message id>" from a sent Message, or false. */
static bool tg_provider_id(json_t *msg, char *out, size_t n)
{
	json_t *mid = json_object_get(msg, "message_id");
	json_t *cid = json_object_get(json_object_get(msg, "chat"), "id");
	if (!json_is_integer(mid) || !json_is_integer(cid))
		return false;
	snprintf(out, n, "%lld:%lld", (long long)json_integer_value(cid),
	         (long long)json_integer_value(mid));
	return true;
}

/*
 * a success answer's "ok":true, result.message_id and
 * result.chat.id read without a jansson tree (core/jsonr.h). true and out
 * filled (OK) only when all three are there as jansson would read them;
 * anything else goes the jansson way, which decides as before.
 */
static bool tg_sent_fast(const char *body, size_t len, struct send_outcome *out)
{
	struct jsonr r;
	long long mid, cid;
	if (jsonr_parse(&r, body, len) != 0 || !jsonr_is_true(&r, jsonr_get(&r, 0, "ok")))
		return false;
	int res = jsonr_get(&r, 0, "result");
	if (!jsonr_int(&r, jsonr_get(&r, res, "message_id"), &mid) ||
	    !jsonr_int(&r, jsonr_get(&r, jsonr_get(&r, res, "chat"), "id"), &cid))
		return false;
	snprintf(out->provider_id, sizeof out->provider_id, "%lld:%lld", cid, mid);
	out->cls = OUTCOME_OK;
	channel_fast_json_hits++;
	return true;
}

/*
 * Classifies an answer to a send. ok:true with a message is success; a
 * group that became a supergroup is resent at once to its new id; 429 waits
 * parameters.retry_after; 401 (and 404, which the Bot API answers for a
 * token it cannot route) stop the account; other 4xx are permanent
 * (blocked, chat not found, bad request); 5xx and no answer are transient.
 */
static void tg_parse_send(const struct channel_account *acct, long http_status, const char *body,
                          size_t len, const char *retry_after, struct send_outcome *out)
{
	(void)acct;
	memset(out, 0, sizeof *out);
	if (channel_network_outcome(http_status, body, len, out))
		return;
	if (http_status >= 200 && http_status < 300 && channel_fast_json &&
	    tg_sent_fast(body, len, out))
		return;
	json_error_t je;
	json_t *root = (body && len) ? json_loadb(body, len, 0, &je) : NULL;
	if (http_status >= 200 && http_status < 300 && json_is_true(json_object_get(root, "ok"))) {
		if (tg_provider_id(json_object_get(root, "result"), out->provider_id,
		                   sizeof out->provider_id)) {
			out->cls = OUTCOME_OK;
		} else {
			out->cls = OUTCOME_TRANSIENT;
			snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
			hr_strlcpy(out->error_text,
			           "success answer without result.message_id and result.chat.id",
			           sizeof out->error_text);
		}
		json_decref(root);
		return;
	}
	json_t *jcode = json_object_get(root, "error_code");
	long code = json_is_integer(jcode) ? (long)json_integer_value(jcode) : http_status;
	if (json_is_integer(jcode))
		snprintf(out->error_code, sizeof out->error_code, "%ld", code);
	else
		snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
	const char *desc = json_string_value(json_object_get(root, "description"));
	if (desc)
		hr_utf8_copy(out->error_text, desc, sizeof out->error_text);
	else
		channel_body_excerpt(body, len, out->error_text, sizeof out->error_text);
	if (!out->error_text[0])
		snprintf(out->error_text, sizeof out->error_text, "HTTP %ld", http_status);

	json_t *params = json_object_get(root, "parameters");
	json_t *ra = json_object_get(params, "retry_after");
	json_t *mig = json_object_get(params, "migrate_to_chat_id");
	out->retry_after_us = tg_retry_header_us(retry_after);
	if (json_is_integer(ra) && json_integer_value(ra) > 0)
		out->retry_after_us =
		    (json_integer_value(ra) > 86400 ? 86400 : json_integer_value(ra)) * 1000000LL;
	if (json_is_integer(mig) && json_integer_value(mig) != 0) {
		out->cls = OUTCOME_TRANSIENT;
		out->retry_after_us = 0;
		snprintf(out->new_recipient, sizeof out->new_recipient, "%lld",
		         (long long)json_integer_value(mig));
	} else if (code == 429 || http_status == 429) {
		/* "Too Many Requests: retry after N" names no chat: the bot as a
		 * whole waits (PROVIDERS.md). */
		out->cls = OUTCOME_RATE_LIMITED;
		out->rate_scope = RATE_SCOPE_ACCOUNT;
	} else if (code == 401 || code == 404) {
		out->cls = OUTCOME_PERMANENT;
		out->account_blocked = true;
	} else {
		channel_http_outcome(out, code >= 500 ? code : http_status);
	}
	json_decref(root);
}

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

static int tg_webhook_verify(const struct channel_account *acct, const struct wh_request *req,
                             struct hr_err *err)
{
	const struct tg_priv *p = acct->priv;
	const char *given = req->header ? req->header(req->ctx, TG_SECRET_HEADER) : NULL;
	if (!given || !*given)
		return hr_fail(err, HR_EAUTH, TG_SECRET_HEADER, "missing %s header",
		               TG_SECRET_HEADER);
	if (!hr_consteq(given, strlen(given), p->webhook_secret, strlen(p->webhook_secret)))
		return hr_fail(err, HR_EAUTH, TG_SECRET_HEADER,
		               "%s does not match this account's webhook_secret", TG_SECRET_HEADER);
	return 0;
}

/* update_id is Telegram's idempotency key: a redelivered update repeats it. */
static void tg_webhook_dedupe_key(const struct wh_request *req, char out[128])
{
	out[0] = '\0';
	json_error_t je;
	json_t *root = req->body ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
	json_t *id = json_object_get(root, "update_id");
	if (json_is_integer(id))
		snprintf(out, 128, "update:%lld", (long long)json_integer_value(id));
	json_decref(root);
}

static int tg_bad(struct hr_err *err, const char *path, const char *what)
{
	hr_fail(err, HR_EINVAL, path, "%s %s", path, what);
	return HR_EINVAL;
}

/* obj[key] must be an integer; base names obj in errors. */
static int tg_int(json_t *obj, const char *key, const char *base, long long *out,
                  struct hr_err *err)
{
	char path[96];
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v)) {
		snprintf(path, sizeof path, "%s.%s", base, key);
		return tg_bad(err, path, v ? "must be an integer" : "is missing");
	}
	*out = (long long)json_integer_value(v);
	return 0;
}

/* "<chat.id>:<message_id>" of a Message object at base. */
static int tg_msg_ref(json_t *msg, const char *base, long long *chat, char *ref, size_t n,
                      struct hr_err *err)
{
	char path[96];
	long long mid;
	if (!json_is_object(msg))
		return tg_bad(err, base, "must be an object");
	json_t *c = json_object_get(msg, "chat");
	snprintf(path, sizeof path, "%s.chat", base);
	if (!json_is_object(c))
		return tg_bad(err, path, c ? "must be an object" : "is missing");
	int rc = tg_int(c, "id", path, chat, err);
	if (!rc)
		rc = tg_int(msg, "message_id", base, &mid, err);
	if (!rc)
		snprintf(ref, n, "%lld:%lld", *chat, mid);
	return rc;
}

static int tg_dup_str(json_t *v, char **dst, const char *path, struct hr_err *err)
{
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return tg_bad(err, path, "must be a string");
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : hr_fail(err, HR_ENOMEM, path, "out of memory");
}

/* The keys of a Message that make it a customer's media message. */
static const char *const tg_media[] = {"photo",    "document",   "video",   "audio",
                                       "voice",    "video_note", "sticker", "animation",
                                       "location", "contact",    "poll",    NULL};

/*
 * A user's message to the bot. Text messages are kind "text"; photos,
 * documents and other media are kind "media" with their caption as the
 * text. Service messages (members joining, a group migrating) carry neither
 * and are not customer replies: nothing is recorded for them.
 */
static int tg_parse_message(json_t *msg, const char *base, struct wh_parsed *out,
                            struct hr_err *err)
{
	const char *const *media = tg_media;
	char ref[HR_PROVIDER_ID_MAX], path[96];
	long long chat, date = 0;
	int rc = tg_msg_ref(msg, base, &chat, ref, sizeof ref, err);
	if (rc)
		return rc;
	json_t *text = json_object_get(msg, "text");
	const char *kind = text ? "text" : NULL;
	for (int i = 0; !kind && media[i]; i++)
		if (json_object_get(msg, media[i]))
			kind = "media";
	if (!kind)
		return 0;
	if (json_object_get(msg, "date") && (rc = tg_int(msg, "date", base, &date, err)))
		return rc;
	json_t *reply = json_object_get(msg, "reply_to_message");
	char ctx[HR_PROVIDER_ID_MAX] = "";
	if (reply) {
		long long rchat;
		snprintf(path, sizeof path, "%s.reply_to_message", base);
		if ((rc = tg_msg_ref(reply, path, &rchat, ctx, sizeof ctx, err)))
			return rc;
	}
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in)
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	/* `in` is owned by out now: the caller's rollback frees what we set. */
	hr_strlcpy(in->provider_msg_id, ref, sizeof in->provider_msg_id);
	hr_strlcpy(in->context_id, ctx, sizeof in->context_id);
	snprintf(in->from, sizeof in->from, "%lld", chat);
	hr_strlcpy(in->kind, kind, sizeof in->kind);
	in->provider_at = date > 0 && date < 100000000000LL ? date * 1000000LL : 0;
	snprintf(path, sizeof path, "%s.%s", base, text ? "text" : "caption");
	return tg_dup_str(text ? text : json_object_get(msg, "caption"), &in->text, path, err);
}

/* The label of the inline button whose callback_data is data, or NULL. */
static const char *tg_button_label(json_t *msg, const char *data)
{
	json_t *rows = json_object_get(json_object_get(msg, "reply_markup"), "inline_keyboard");
	size_t i, j;
	json_t *row, *b;
	json_array_foreach(rows, i, row)
	{
		json_array_foreach(row, j, b)
		{
			const char *cd = json_string_value(json_object_get(b, "callback_data"));
			if (cd && data && strcmp(cd, data) == 0)
				return json_string_value(json_object_get(b, "text"));
		}
	}
	return NULL;
}

/*
 * A checked button press recorded: the inbound (id, the message it was on
 * as ctx, from, data as payload and label as text, each may be NULL) and
 * the answerCallbackQuery follow-up. Both ways of reading an update end
 * here, so they record alike.
 */
static int tg_callback_record(const struct channel_account *acct, const char *id, const char *ctx,
                              const char *from, const char *data, const char *label,
                              struct wh_parsed *out, struct hr_err *err)
{
	const char *base = "callback_query";
	const struct tg_priv *p = acct->priv;
	json_t *ans = json_pack("{s:s}", "callback_query_id", id);
	char *body = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
	json_decref(ans);
	struct http_req req;
	int rc;
	if ((rc = tg_request(p, "answerCallbackQuery", body, &req, err)))
		return rc;
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	struct http_req *f = in ? wh_parsed_add_followup(out) : NULL;
	if (!f) {
		http_req_clear(&req);
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	}
	*f = req;
	hr_strlcpy(in->provider_msg_id, id, sizeof in->provider_msg_id);
	hr_strlcpy(in->context_id, ctx, sizeof in->context_id);
	hr_strlcpy(in->from, from, sizeof in->from);
	hr_strlcpy(in->kind, "button", sizeof in->kind);
	if (data && !(in->payload = strdup(data)))
		return hr_fail(err, HR_ENOMEM, "callback_query.data", "out of memory");
	if (label && !(in->text = strdup(label)))
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	return 0;
}

/*
 * A button press: an inbound "button" linked to the message the button was
 * on, and an answerCallbackQuery follow-up so the user's spinner stops. A
 * press on an inline-mode message (no "message") cannot be linked; it is
 * still recorded, from the user, and answered.
 */
static int tg_parse_callback(const struct channel_account *acct, json_t *cq, struct wh_parsed *out,
                             struct hr_err *err)
{
	const char *base = "callback_query";
	if (!json_is_object(cq))
		return tg_bad(err, base, "must be an object");
	const char *id = json_string_value(json_object_get(cq, "id"));
	if (!id || !*id || strlen(id) >= HR_PROVIDER_ID_MAX)
		return tg_bad(err, "callback_query.id", "must be a non-empty string");
	json_t *msg = json_object_get(cq, "message");
	char ctx[HR_PROVIDER_ID_MAX] = "", from[HR_ADDR_MAX] = "";
	int rc;
	if (msg) {
		long long chat;
		if ((rc = tg_msg_ref(msg, "callback_query.message", &chat, ctx, sizeof ctx, err)))
			return rc;
		snprintf(from, sizeof from, "%lld", chat);
	} else {
		long long uid;
		json_t *user = json_object_get(cq, "from");
		if (!json_is_object(user))
			return tg_bad(err, "callback_query.from", "must be an object");
		if ((rc = tg_int(user, "id", "callback_query.from", &uid, err)))
			return rc;
		snprintf(from, sizeof from, "%lld", uid);
	}
	json_t *data = json_object_get(cq, "data");
	if (data && !json_is_string(data))
		return tg_bad(err, "callback_query.data", "must be a string");

	const char *label =
	    json_string_value(data) ? tg_button_label(msg, json_string_value(data)) : NULL;
	return tg_callback_record(acct, id, ctx, from, json_string_value(data), label, out, err);
}

/*
 * The fast way (channel_fast_json): the same reading over jsonr's tokens
 * (core/jsonr.h) instead of a jansson tree. Each tg_f* function takes what
 * its jansson twin accepts and records the same; wherever the twin would
 * fail it returns false instead, as for any text jsonr refuses, and the
 * caller drops what was added and reads the update the jansson way, which
 * gives the error.
 */

/* tg_msg_ref. */
static bool tg_fmsg_ref(const struct jsonr *r, int msg, long long *chat, char *ref, size_t n)
{
	long long mid;
	if (!jsonr_is_object(r, msg) ||
	    !jsonr_int(r, jsonr_get(r, jsonr_get(r, msg, "chat"), "id"), chat) ||
	    !jsonr_int(r, jsonr_get(r, msg, "message_id"), &mid))
		return false;
	snprintf(ref, n, "%lld:%lld", *chat, mid);
	return true;
}

/* tg_dup_str: absent and null leave *dst. */
static bool tg_fdup_str(const struct jsonr *r, int v, char **dst)
{
	if (v < 0 || jsonr_is_null(r, v))
		return true;
	return (*dst = jsonr_strdup(r, v, NULL)) != NULL;
}

/* tg_parse_message. */
static bool tg_fparse_message(const struct jsonr *r, int msg, struct wh_parsed *out)
{
	char ref[HR_PROVIDER_ID_MAX];
	long long chat, date = 0;
	if (!tg_fmsg_ref(r, msg, &chat, ref, sizeof ref))
		return false;
	int text = jsonr_get(r, msg, "text");
	const char *kind = text >= 0 ? "text" : NULL;
	for (int i = 0; !kind && tg_media[i]; i++)
		if (jsonr_get(r, msg, tg_media[i]) >= 0)
			kind = "media";
	if (!kind)
		return true;
	if (jsonr_get(r, msg, "date") >= 0 && !jsonr_int(r, jsonr_get(r, msg, "date"), &date))
		return false;
	int reply = jsonr_get(r, msg, "reply_to_message");
	char ctx[HR_PROVIDER_ID_MAX] = "";
	long long rchat;
	if (reply >= 0 && !tg_fmsg_ref(r, reply, &rchat, ctx, sizeof ctx))
		return false;
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in)
		return false;
	hr_strlcpy(in->provider_msg_id, ref, sizeof in->provider_msg_id);
	hr_strlcpy(in->context_id, ctx, sizeof in->context_id);
	snprintf(in->from, sizeof in->from, "%lld", chat);
	hr_strlcpy(in->kind, kind, sizeof in->kind);
	in->provider_at = date > 0 && date < 100000000000LL ? date * 1000000LL : 0;
	return tg_fdup_str(r, text >= 0 ? text : jsonr_get(r, msg, "caption"), &in->text);
}

/* tg_button_label: the token of the label (-1: none, as NULL there). */
static int tg_fbutton_label(const struct jsonr *r, int msg, const char *data)
{
	int rows = jsonr_get(r, jsonr_get(r, msg, "reply_markup"), "inline_keyboard");
	int nrows = jsonr_is_array(r, rows) ? jsonr_size(r, rows) : 0;
	for (int i = 0, row = rows + 1; i < nrows; i++, row = jsonr_after(r, row)) {
		int nb = jsonr_is_array(r, row) ? jsonr_size(r, row) : 0;
		for (int j = 0, b = row + 1; j < nb; j++, b = jsonr_after(r, b))
			if (jsonr_string_is(r, jsonr_get(r, b, "callback_data"), data)) {
				int t = jsonr_get(r, b, "text");
				return jsonr_is_string(r, t) ? t : -1;
			}
	}
	return -1;
}

/* tg_parse_callback. */
static bool tg_fparse_callback(const struct channel_account *acct, const struct jsonr *r, int cq,
                               struct wh_parsed *out)
{
	char id[HR_PROVIDER_ID_MAX], ctx[HR_PROVIDER_ID_MAX] = "", from[HR_ADDR_MAX] = "";
	size_t idlen;
	/* jsonr_string refuses an id of HR_PROVIDER_ID_MAX bytes or more. */
	if (!jsonr_is_object(r, cq) ||
	    !jsonr_string(r, jsonr_get(r, cq, "id"), id, sizeof id, &idlen) || idlen == 0)
		return false;
	int msg = jsonr_get(r, cq, "message");
	long long who;
	if (msg >= 0) {
		if (!tg_fmsg_ref(r, msg, &who, ctx, sizeof ctx))
			return false;
	} else {
		int user = jsonr_get(r, cq, "from");
		if (!jsonr_is_object(r, user) || !jsonr_int(r, jsonr_get(r, user, "id"), &who))
			return false;
	}
	snprintf(from, sizeof from, "%lld", who);
	int dt = jsonr_get(r, cq, "data");
	if (dt >= 0 && !jsonr_is_string(r, dt))
		return false;
	char *data = dt >= 0 ? jsonr_strdup(r, dt, NULL) : NULL;
	int lt = data ? tg_fbutton_label(r, msg, data) : -1;
	char *label = lt >= 0 ? jsonr_strdup(r, lt, NULL) : NULL;
	struct hr_err scratch;
	bool ok = (dt < 0 || data) && (lt < 0 || label) &&
	          tg_callback_record(acct, id, ctx, from, data, label, out, &scratch) == 0;
	free(data);
	free(label);
	return ok;
}

/* tg_webhook_parse's reading of the update at root. */
static bool tg_fparse_update(const struct channel_account *acct, const struct jsonr *r,
                             struct wh_parsed *out)
{
	long long update_id;
	if (!jsonr_is_object(r, 0) || !jsonr_int(r, jsonr_get(r, 0, "update_id"), &update_id))
		return false;
	int msg = jsonr_get(r, 0, "message"), cq = jsonr_get(r, 0, "callback_query");
	if (msg >= 0)
		return tg_fparse_message(r, msg, out);
	if (cq >= 0)
		return tg_fparse_callback(acct, r, cq, out);
	return true; /* edited_message, channel_post, my_chat_member, ...: nothing to apply. */
}

/* Drops what a parse added to out past ni replies and nf follow-ups. */
static void tg_parsed_rollback(struct wh_parsed *out, size_t ni, size_t nf)
{
	for (size_t k = ni; k < out->ninbound; k++) { /* no store calls here */
		free(out->inbound[k].text);
		free(out->inbound[k].payload);
		free(out->inbound[k].auto_reply);
	}
	for (size_t k = nf; k < out->nfollowups; k++)
		http_req_clear(&out->followups[k]);
	out->ninbound = ni;
	out->nfollowups = nf;
}

/* Parses one Update; on error out is left as it was. */
static int tg_webhook_parse(const struct channel_account *acct, const char *body, size_t len,
                            struct wh_parsed *out, struct hr_err *err)
{
	size_t ni = out->ninbound, nf = out->nfollowups;
	if (channel_fast_json && body) {
		struct jsonr r;
		bool ok = jsonr_parse_large(&r, body, len, JSONR_TOKENS_LARGE_MAX) == 0 &&
		          tg_fparse_update(acct, &r, out);
		jsonr_free(&r);
		if (ok) {
			channel_fast_json_hits++;
			return 0;
		}
		tg_parsed_rollback(out, ni, nf);
	}
	json_error_t je;
	json_t *root = json_loadb(body ? body : "", len, 0, &je);
	if (!root) {
		char field[32];
		snprintf(field, sizeof field, "body[%d]", je.position);
		return hr_fail(err, HR_EINVAL, field, "%s: body is not JSON (%s)", field, je.text);
	}
	long long update_id;
	int rc = json_is_object(root) ? tg_int(root, "update_id", "update", &update_id, err)
	                              : tg_bad(err, "body", "must be a JSON object");
	if (!rc && json_object_get(root, "message"))
		rc = tg_parse_message(json_object_get(root, "message"), "message", out, err);
	else if (!rc && json_object_get(root, "callback_query"))
		rc = tg_parse_callback(acct, json_object_get(root, "callback_query"), out, err);
	/* edited_message, channel_post, my_chat_member, ...: nothing to apply. */
	json_decref(root);
	if (rc)
		tg_parsed_rollback(out, ni, nf);
	return rc;
}

static const char *const tg_secrets[] = {"bot_token", "webhook_secret", NULL};
static const char *const tg_origins[] = {TG_DEFAULT_BASE, NULL};

/*
 * what the codes this adapter records mean, for the overview's top
 * failure codes. tg_parse_send records the Bot API's error_code ("400",
 * "403", ...), whose description tells the case apart (kept as the
 * message's error text): each meaning names the classes of description
 * that code comes with (PROVIDERS.md, the Bot API's answers); any other
 * 4xx or 5xx code by its class; "http_<status>" and "network" as every
 * adapter's.
 */
static const char *tg_error_meaning(const char *code)
{
	static const struct {
		const char *code, *text;
	} known[] = {
	    {"400", "Bad request: chat not found, text empty or too long, entities that do not "
	            "parse, or a bad parameter (the error text says which)"},
	    {"401", "Bot token invalid or revoked: the account's sends stop"},
	    {"403", "Forbidden: the bot was blocked by the user, removed from the group or "
	            "channel, or may not start this chat"},
	    {"404", "Bot token or method not found: the account's sends stop"},
	    {"409", "Conflict: another webhook or getUpdates session uses this bot"},
	    {"429", "Too many requests: retried after the retry_after Telegram gives"},
	};
	for (size_t i = 0; code && i < sizeof known / sizeof *known; i++)
		if (!strcmp(known[i].code, code))
			return known[i].text;
	if (code && strlen(code) == 3 && strspn(code, "0123456789") == 3) {
		if (code[0] == '5')
			return "Telegram server error (5xx); retried";
		if (code[0] == '4')
			return "Refused by Telegram (4xx; the error text says why)";
	}
	return channel_common_meaning(code);
}

const struct channel_ops channel_telegram = {
    .name = "telegram",
    .error_meaning = tg_error_meaning,
    .has_receipts = false,
    .secret_fields = tg_secrets,
    .provider_origins = tg_origins,
    .account_load = tg_account_load,
    .account_free = tg_account_free,
    .normalize_recipient = tg_normalize,
    .validate = tg_validate,
    .build_send = tg_build_send,
    .parse_send = tg_parse_send,
    .webhook_handshake = NULL,
    .webhook_verify = tg_webhook_verify,
    .webhook_dedupe_key = tg_webhook_dedupe_key,
    .webhook_parse = tg_webhook_parse,
};
