/*
 * batches.c - campaigns over HTTP: POST /v1/batches (rows in a JSON body,
 * validated before anything is sent), GET one and the list, start, cancel,
 * the validation report and the batch's messages.
 *
 * Validation is the sending code itself: each row becomes the request
 * object a single send would be ({"channel", "account", "to", "template" or
 * "text"}) and goes through api_message_build, so a row that passes here
 * cannot fail later for a reason the upload could have told. What sending
 * cannot know is checked first: the recipient read as a person typed it
 * (libphonenumber with a default region for phone channels, an integer or
 * @name for Telegram), a parameter's size, a recipient already opted out,
 * and the same recipient twice (the later rows are kept as duplicates and
 * never sent; the store's unique key is what guarantees it).
 *
 * Request body:
 *   {"name", "channel", "account"?, "template": {"name", "language"} | "text",
 *    "recipient_column"?, "params"?: [column, ...], "default_region"?,
 *    "unit"?, "schedule_at"?, "dry_run"?, "start"?: "auto"|true|false,
 *    "delivery_policy"?: "at_least_once"|"at_most_once",
 *    "rows": [{column: value, ...}, ...]}
 * Defaults: the recipient column is the first of phone, to, recipient,
 * mobile, msisdn, chat_id (any case) present; the parameters are the
 * columns named 1..n when the template or text has n placeholders; start
 * "auto" starts a batch with no invalid row at once and leaves one with
 * errors VALIDATED until POST /v1/batches/{id}/start. Without
 * delivery_policy each message takes its template's, else its account's.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api_int.h"
#include "campaigns/pricing.h"
#include "campaigns/sheet.h"
#include "channels/channel.h"
#include "core/phone.h"
#include "core/template.h"
#include "dispatch/dispatch.h"
#include "plugins/datasource.h"
#include "plugins/plugins.h"

#define BATCH_CHUNK 250           /* rows per store write */
#define BATCH_PARAM_MAX 1024      /* bytes per parameter value */
#define BATCH_ERRORS_INLINE 100   /* invalid rows listed in the answer */
#define BATCH_NAME_MAX 127
#define BATCH_COLS_MAX 256

/* A spreadsheet cell that cannot be used as it is. */
enum { CELL_OK = 0, CELL_LOSSY = 1, CELL_NO_VALUE = 2, CELL_ERROR = 3 };

/* ---------------------------------------------------------------------------
 * A set of recipients seen (64-bit hashes, open addressing): the duplicate
 * check of one upload and the tenant's opt-outs. 8 bytes a row.
 * ------------------------------------------------------------------------- */

struct hset {
	uint64_t *slot;
	size_t cap, n;
};

static uint64_t fnv64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h ? h : 1; /* 0 marks an empty slot */
}

/* Adds s; true if it was there already. *oom on allocation failure. */
static bool hset_add(struct hset *h, const char *s, bool *oom)
{
	if ((h->n + 1) * 2 > h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		uint64_t *v = calloc(cap, sizeof *v);
		if (!v) {
			*oom = true;
			return false;
		}
		for (size_t i = 0; i < h->cap; i++)
			if (h->slot[i])
				for (size_t j = h->slot[i] & (cap - 1);; j = (j + 1) & (cap - 1))
					if (!v[j]) {
						v[j] = h->slot[i];
						break;
					}
		free(h->slot);
		h->slot = v;
		h->cap = cap;
	}
	uint64_t k = fnv64(s);
	for (size_t j = k & (h->cap - 1);; j = (j + 1) & (h->cap - 1)) {
		if (h->slot[j] == k)
			return true;
		if (!h->slot[j]) {
			h->slot[j] = k;
			h->n++;
			return false;
		}
	}
}

static bool hset_has(const struct hset *h, const char *s)
{
	if (!h->cap)
		return false;
	uint64_t k = fnv64(s);
	for (size_t j = k & (h->cap - 1);; j = (j + 1) & (h->cap - 1)) {
		if (h->slot[j] == k)
			return true;
		if (!h->slot[j])
			return false;
	}
}

/* ---------------------------------------------------------------------------
 * The spec of a batch: how a row becomes a message (shared with the runner).
 * ------------------------------------------------------------------------- */

struct bspec {
	const struct api_server *s;
	char tenant[HR_NAME_MAX];
	char unit[HR_NAME_MAX]; /* the batch's business unit, "" for none */
	const struct channel_account *acct;
	char tname[HR_NAME_MAX], lang[16];
	char *text;        /* a text campaign's body with {{n}}, heap; NULL for templates */
	int nparams;       /* placeholders of the template or text */
	char region[3];    /* default region for national numbers, "" for none */
	bool phone;        /* the channel's recipients are phone numbers */
	char *cb_url;      /* the batch's callback_url, heap; NULL: the tenant's */
	char policy[16];   /* the batch's delivery_policy, "" for the default */
	json_t *fallback;  /* route, fallback_after_s, fallback_text as given; NULL: none */
	int doc_param;     /* a template's document header: the URL is this parameter
	                    * (1-based) of each row; 0: no header */
	char doc_filename[128]; /* the document's file name, "" for none */
};

static void bspec_free(struct bspec *b)
{
	free(b->text);
	b->text = NULL;
	free(b->cb_url);
	b->cb_url = NULL;
	json_decref(b->fallback);
	b->fallback = NULL;
}

/* The fields of a batch that every one of its messages carries as given
 * (fallback routing: README "Fallback routing"). */
static const char *const fallback_keys[] = {"route", "fallback_after_s", "fallback_text"};

/* Those of them in obj, as a new object (NULL when none, or out of memory:
 * *oom says which). */
static json_t *fallback_of(json_t *obj, bool *oom)
{
	json_t *f = NULL;
	*oom = false;
	for (size_t i = 0; i < sizeof fallback_keys / sizeof *fallback_keys; i++) {
		json_t *v = json_object_get(obj, fallback_keys[i]);
		if (!v)
			continue;
		if ((!f && !(f = json_object())) || json_object_set(f, fallback_keys[i], v) != 0) {
			json_decref(f);
			*oom = true;
			return NULL;
		}
	}
	return f;
}

/* Whether an error api_message_build gave is about the batch's route (the
 * same for every row: the upload is refused, not each row). */
static bool fallback_field(const char *field)
{
	for (size_t i = 0; i < sizeof fallback_keys / sizeof *fallback_keys; i++)
		if (!strncmp(field, fallback_keys[i], strlen(fallback_keys[i])))
			return true;
	return false;
}

/* The request object of one message of the batch (caller decrefs). */
static json_t *row_request(const struct bspec *b, const char *to, const char *const *params,
                           char **rendered, struct hr_err *err)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "channel", b->acct->ops->name, "account",
	                      api_account_name(b->tenant, b->acct->id), "to", to);
	if (!o) {
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	int rc = 0;
	if ((b->cb_url && json_object_set_new(o, "callback_url", json_string(b->cb_url)) != 0) ||
	    (b->fallback && json_object_update(o, b->fallback) != 0)) {
		json_decref(o);
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	if (b->text) {
		*rendered = template_render(b->text, params, (size_t)b->nparams, err);
		if (!*rendered) {
			json_decref(o);
			return NULL;
		}
		rc = json_object_set_new(o, "text", json_string(*rendered));
	} else {
		json_t *ps = json_array();
		for (int i = 0; ps && i < b->nparams; i++)
			if (json_array_append_new(ps, json_string(params[i])) != 0) {
				json_decref(ps);
				ps = NULL;
			}
		json_t *t = ps ? json_pack("{s:s, s:s, s:o}", "name", b->tname, "language", b->lang,
		                           "parameters", ps)
		               : NULL;
		/* A document header whose link is one of the row's values (a
		 * monthly statement): checked as a single send's header is. */
		if (t && b->doc_param > 0 && b->doc_param <= b->nparams) {
			json_t *h = json_pack("{s:s, s:s}", "type", "document", "url",
			                      params[b->doc_param - 1]);
			if (h && b->doc_filename[0])
				json_object_set_new(h, "filename", json_string(b->doc_filename));
			if (!h || json_object_set_new(t, "header", h) != 0) {
				json_decref(t);
				t = NULL;
			}
		}
		rc = t ? json_object_set_new(o, "template", t) : -1;
	}
	if (rc == 0 && b->policy[0])
		rc = json_object_set_new(o, "delivery_policy", json_string(b->policy));
	if (rc != 0) {
		json_decref(o);
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	return o;
}

/* One message of the batch from a stored row: recipient (normalised) and
 * parameter values. */
static int row_message(const struct bspec *b, const char *batch_id, const char *to,
                       const char *const *params, json_t *ovr, int64_t now, struct message *m,
                       struct hr_err *err)
{
	char *rendered = NULL;
	json_t *o = row_request(b, to, params, &rendered, err);
	free(rendered);
	if (!o)
		return err->code ? err->code : HR_ENOMEM;
	/* The row's own sending, as its unit's plugin set it (row_overrides):
	 * a channel without an account takes that channel's default. */
	if (ovr) {
		if (json_object_get(ovr, "channel") && !json_object_get(ovr, "account"))
			json_object_del(o, "account");
		if (json_object_update(o, ovr) != 0) {
			json_decref(o);
			return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		}
	}
	int rc = api_message_build(b->s, b->tenant, b->unit, o, batch_id, now, m, err);
	json_decref(o);
	return rc;
}

/* Reads a batch's spec back from the store (the runner, a start). */
static int bspec_of(const struct api_server *s, const struct batch *bt, struct bspec *b,
                    struct hr_err *err)
{
	memset(b, 0, sizeof *b);
	b->s = s;
	hr_strlcpy(b->tenant, bt->tenant_id, sizeof b->tenant);
	hr_strlcpy(b->unit, bt->unit, sizeof b->unit);
	b->acct = account_set_find(s->o.accounts, bt->account_id);
	if (!b->acct)
		return hr_fail(err, HR_EINVAL, "account", "the batch's account %s is gone",
		               api_account_name(bt->tenant_id, bt->account_id));
	hr_strlcpy(b->tname, bt->template_name, sizeof b->tname);
	hr_strlcpy(b->lang, bt->language, sizeof b->lang);
	json_t *spec = bt->spec ? json_loads(bt->spec, 0, NULL) : NULL;
	const char *text = json_string_value(json_object_get(spec, "text"));
	const char *cb = json_string_value(json_object_get(spec, "callback_url"));
	b->nparams = (int)json_integer_value(json_object_get(spec, "nparams"));
	const char *pol = json_string_value(json_object_get(spec, "delivery_policy"));
	hr_strlcpy(b->policy, pol ? pol : "", sizeof b->policy);
	b->doc_param = (int)json_integer_value(json_object_get(spec, "document_param"));
	const char *dfn = json_string_value(json_object_get(spec, "document_filename"));
	hr_strlcpy(b->doc_filename, dfn ? dfn : "", sizeof b->doc_filename);
	bool oom;
	b->fallback = fallback_of(spec, &oom);
	if (oom || (text && !(b->text = strdup(text))) || (cb && !(b->cb_url = strdup(cb)))) {
		bspec_free(b);
		json_decref(spec);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	json_decref(spec);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Validation of one row.
 * ------------------------------------------------------------------------- */

struct vctx {
	struct bspec b;
	const char *const *headers; /* column names, in order */
	size_t nh;
	int rcol;                   /* the recipient's column */
	int pcols[BATCH_COLS_MAX];  /* each parameter's column */
	struct hset seen, supp;
	int64_t now;
	bool oom;
	struct hr_err fatal; /* why the whole upload is refused (validate_row: HR_EINVAL) */
	/* The unit's plugin when it has a prepare hook (plugins/plugins.h):
	 * each row passes it first. After PREPARE_TIMEOUTS_MAX of its calls
	 * timed out, the upload's remaining rows are refused without calling
	 * it, so a hanging plugin costs an upload seconds, not hours. */
	const struct plugin *prep;
	int prep_timeouts;
	/* The cost estimate of the rows that will become messages (channel,
	 * country, WhatsApp category, SMS segments); wa_category -1 on other
	 * channels; category_note says when the category was assumed. */
	struct pricing_estimate *est;
	int wa_category;
	char category_note[200];
};

#define PREPARE_TIMEOUTS_MAX 3

/* The recipient as the channel stores it; *cc the number's calling code
 * (0 when not a phone number); e164_out (HR_PHONE_E164_SIZE bytes, may be
 * NULL) its E.164 form, "" when not a phone number. */
static int row_recipient(const struct vctx *v, const char *raw, char out[HR_ADDR_MAX], char *why,
                         size_t why_size, int *cc, char *e164_out)
{
	char e164[HR_PHONE_E164_SIZE];
	*cc = 0;
	if (e164_out)
		e164_out[0] = '\0';
	if (v->b.phone) {
		struct hr_phone_result res;
		int rc = hr_phone_normalize(raw, strlen(raw), v->b.region[0] ? v->b.region : NULL,
		                            e164, sizeof e164, &res);
		/* No default region: digits alone (a number a spreadsheet stored as
		 * a number, its '+' gone) are read as country code and number. */
		if (rc == HR_EINVAL && res.reason == HR_PHONE_NEED_REGION && raw[0] != '0' &&
		    strspn(raw, "0123456789") == strlen(raw) && strlen(raw) < HR_PHONE_INPUT_MAX) {
			char plus[HR_PHONE_INPUT_MAX + 1];
			snprintf(plus, sizeof plus, "+%s", raw);
			rc = hr_phone_normalize(plus, strlen(plus), NULL, e164, sizeof e164, &res);
		}
		if (rc == HR_EINVAL) {
			snprintf(why, why_size, "%s", res.text);
			return rc;
		}
		if (rc)
			return rc;
		*cc = res.country_code;
		if (e164_out)
			memcpy(e164_out, e164, sizeof e164);
		raw = e164; /* then the channel's own form of it (WhatsApp: no '+') */
	}
	/* The channel's own form: WhatsApp's wa_id, Telegram's chat id (an
	 * integer, negative for groups) or @channel. */
	struct hr_err e = {0};
	if (v->b.acct->ops->normalize_recipient(raw, out, &e) != 0) {
		snprintf(why, why_size, "%s", e.msg);
		return HR_EINVAL;
	}
	return 0;
}

/* The column an error of api_message_build is about, from its field. */
static const char *field_column(const struct vctx *v, const char *field)
{
	if (!strcmp(field, "to"))
		return v->headers[v->rcol];
	unsigned idx;
	if (sscanf(field, "template.parameters[%u]", &idx) == 1 && idx < (unsigned)v->b.nparams)
		return v->headers[v->pcols[idx]];
	return "";
}

/*
 * Validates one row (vals[i] is column i's text, "" when empty) into it:
 * valid, or the column at fault and why. Parameter values are kept as a
 * JSON array (it->params, heap).
 */
/* Why a spreadsheet cell cannot be used as it is, or NULL. */
static const char *cell_problem(unsigned char bad, bool recipient)
{
	switch (bad) {
	case CELL_LOSSY:
		return recipient ? "stored as a number whose digits Excel rounded off: format the "
		                   "column as text and type the numbers again"
		                 : NULL;
	case CELL_NO_VALUE:
		return "a formula saved without its value: open the file, recalculate and save it";
	case CELL_ERROR:
		return "an Excel error value (such as #N/A)";
	default:
		return NULL;
	}
}

/*
 * The sending a unit's plugin set for a row (plugin_draft channel, account,
 * route, policy) as request fields, or *out NULL when it set none. A route
 * "whatsapp,sms:acme-sms" becomes ["whatsapp",{"channel":"sms",
 * "account":"acme-sms"}]. -1 with field and why for a route that cannot be
 * read, or field "" when out of memory.
 */
static int row_overrides(const struct plugin_draft *pd, json_t **out, char field[32], char *why,
                         size_t whylen)
{
	*out = NULL;
	if (!pd->channel[0] && !pd->route[0] && !pd->policy[0])
		return 0;
	json_t *o = json_object();
	if (!o)
		return -1;
	bool oom = false;
	if (pd->channel[0]) {
		oom |= json_object_set_new(o, "channel", json_string(pd->channel)) != 0;
		if (pd->account[0])
			oom |= json_object_set_new(o, "account", json_string(pd->account)) != 0;
	}
	if (pd->policy[0])
		oom |= json_object_set_new(o, "delivery_policy", json_string(pd->policy)) != 0;
	if (pd->route[0]) {
		json_t *r = json_array();
		char buf[PLUGIN_ROUTE_MAX];
		hr_strlcpy(buf, pd->route, sizeof buf);
		int steps = 0;
		for (char *step = buf, *next; r && !oom && step; step = next) {
			/* Each step, empty ones too (strtok would skip them). */
			if ((next = strchr(step, ',')))
				*next++ = '\0';
			char *colon = strchr(step, ':');
			if (colon)
				*colon = '\0';
			if (!*step || (colon && !colon[1])) {
				json_decref(r);
				json_decref(o);
				hr_strlcpy(field, "route", 32);
				snprintf(
				    why, whylen,
				    "route '%s' must be channels separated by commas, each with "
				    "':account' or not (step %d is empty)",
				    pd->route, steps + 1);
				return -1;
			}
			json_t *js =
			    colon ? json_pack("{s:s, s:s}", "channel", step, "account", colon + 1)
			          : json_string(step);
			oom |= !js || json_array_append_new(r, js) != 0;
			steps++;
		}
		oom |= !r || json_object_set_new(o, "route", r) != 0;
	}
	if (oom) {
		json_decref(o);
		return -1;
	}
	*out = o;
	return 0;
}

/* Which of the plugin's fields an error's field is about ("route[1]" is
 * the route's), or NULL. */
static const char *override_field(json_t *ovr, const char *field)
{
	static const char *const keys[] = {"channel", "account", "route", "delivery_policy"};
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		size_t n = strlen(keys[i]);
		if (json_object_get(ovr, keys[i]) && strncmp(field, keys[i], n) == 0 &&
		    (field[n] == '\0' || field[n] == '['))
			return keys[i];
	}
	return NULL;
}

/* pd: the row as the unit's plugin prepared it (recipient and parameters
 * instead of the mapped columns), or NULL. */
static int validate_row_as(struct vctx *v, int64_t row, const char *const *vals, size_t nvals,
                           const unsigned char *bad, struct batch_item *it,
                           const struct plugin_draft *pd)
{
	memset(it, 0, sizeof *it);
	it->row = row;
	const char *params[BATCH_COLS_MAX];
	char why[256] = "";
	const char *raw = pd ? pd->recipient : (size_t)v->rcol < nvals ? vals[v->rcol] : "";
	char to[HR_ADDR_MAX] = "";
	int rc;
	const char *problem = bad && (size_t)v->rcol < nvals ? cell_problem(bad[v->rcol], true) : NULL;
	if (problem) {
		snprintf(why, sizeof why, "%s", problem);
		goto invalid_recipient;
	}
	if (!*raw) {
		snprintf(why, sizeof why, "the recipient is empty");
		goto invalid_recipient;
	}
	int cc = 0;
	if ((rc = row_recipient(v, raw, to, why, sizeof why, &cc, NULL)) == HR_EINVAL)
		goto invalid_recipient;
	if (rc)
		return rc;
	hr_strlcpy(it->recipient, to, sizeof it->recipient);
	for (int i = 0; i < v->b.nparams; i++) {
		int c = v->pcols[i];
		params[i] = pd ? pd->params[i] : (size_t)c < nvals ? vals[c] : "";
		if (bad && (size_t)c < nvals && (problem = cell_problem(bad[c], false))) {
			hr_strlcpy(it->error_column, v->headers[c], sizeof it->error_column);
			hr_strlcpy(it->error, problem, sizeof it->error);
			return 0;
		}
		if (strlen(params[i]) > BATCH_PARAM_MAX) {
			hr_strlcpy(it->error_column, v->headers[c], sizeof it->error_column);
			snprintf(it->error, sizeof it->error, "longer than %d bytes", BATCH_PARAM_MAX);
			return 0;
		}
	}
	json_t *ovr = NULL;
	char ofield[32] = "";
	if (pd && row_overrides(pd, &ovr, ofield, why, sizeof why) != 0) {
		if (!ofield[0])
			return HR_ENOMEM;
		hr_strlcpy(it->error_column, ofield, sizeof it->error_column);
		snprintf(it->error, sizeof it->error, "plugin %s: %s", plugin_name(v->prep), why);
		return 0;
	}
	json_t *pj = json_array();
	for (int i = 0; pj && i < v->b.nparams; i++)
		if (json_array_append_new(pj, json_string(params[i])) != 0) {
			json_decref(pj);
			pj = NULL;
		}
	/* The row's own sending is kept after its parameters, for the start. */
	if (pj && ovr && json_array_append(pj, ovr) != 0) {
		json_decref(pj);
		pj = NULL;
	}
	it->params = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
	json_decref(pj);
	if (!it->params) {
		json_decref(ovr);
		return HR_ENOMEM;
	}

	/* The message exactly as the start will make it. */
	struct message m = {0};
	struct hr_err err = {0};
	rc = row_message(&v->b, "", to, params, ovr, v->now, &m, &err);
	int segments = m.segments;
	message_clear(&m);
	if (rc && rc != HR_ENOMEM && rc != HR_EINTERNAL && ovr) {
		/* With the plugin's own sending, whatever is refused is this
		 * row's (the campaign's route may not fit its channel). */
		const char *f = override_field(ovr, err.field);
		json_decref(ovr);
		hr_strlcpy(it->error_column, f ? f : field_column(v, err.field),
		           sizeof it->error_column);
		if (f)
			snprintf(it->error, sizeof it->error, "plugin %s set %s: %s",
			         plugin_name(v->prep), f, err.msg);
		else
			hr_strlcpy(it->error, err.msg, sizeof it->error);
		return 0;
	}
	json_decref(ovr);
	if (rc == HR_ENOMEM || rc == HR_EINTERNAL) {
		free(it->params); /* the caller frees only the rows it counted */
		it->params = NULL;
		return rc;
	}
	if (rc && fallback_field(err.field)) {
		v->fatal = err; /* the batch's route, not this row: refuse the upload */
		free(it->params); /* the caller frees only the rows it counted */
		it->params = NULL;
		return HR_EINVAL;
	}
	if (rc) {
		hr_strlcpy(it->error_column, field_column(v, err.field), sizeof it->error_column);
		hr_strlcpy(it->error, err.msg, sizeof it->error);
		return 0;
	}
	if (hset_has(&v->supp, to)) {
		hr_strlcpy(it->error_column, v->headers[v->rcol], sizeof it->error_column);
		snprintf(it->error, sizeof it->error, "the recipient opted out (suppressed)");
		return 0;
	}
	it->valid = true;
	it->duplicate = hset_add(&v->seen, to, &v->oom);
	if (!v->oom && !it->duplicate && v->est &&
	    pricing_estimate_add(v->est, v->b.acct->ops->name, cc, v->wa_category, segments))
		v->oom = true;
	return v->oom ? HR_ENOMEM : 0;

invalid_recipient:
	hr_strlcpy(it->recipient, raw, sizeof it->recipient);
	hr_strlcpy(it->error_column, v->headers[v->rcol], sizeof it->error_column);
	hr_strlcpy(it->error, why, sizeof it->error);
	return 0;
}

/* A row refused by (or on account of) the unit's plugin. */
static int plugin_row_invalid(struct batch_item *it, int64_t row, const char *raw, const char *why)
{
	memset(it, 0, sizeof *it);
	it->row = row;
	hr_strlcpy(it->recipient, raw, sizeof it->recipient);
	hr_strlcpy(it->error_column, "", sizeof it->error_column);
	hr_utf8_copy(it->error, why, sizeof it->error);
	return 0;
}

/* One row of a unit without a prepare hook: the checks every row passes.
 * (Rows of a unit whose plugin prepares them go through prep_next.) */
static int validate_row(struct vctx *v, int64_t row, const char *const *vals, size_t nvals,
                        const unsigned char *bad, struct batch_item *it)
{
	return validate_row_as(v, row, vals, nvals, bad, it, NULL);
}

/* ---- the unit's plugin's prepare over many rows at a time ----
 *
 * One pool round trip per row cost far more than a trivial hook (about
 * 44 us of CPU per row on a 100,000-row upload): rows are read ahead and
 * handed to the plugin PLUGIN_PREPARE_ROWS_MAX at a time, in one call of
 * plugins_prepare_rows, then checked one by one as before. The plugin's
 * per-row hook is unchanged (the batching is Herald's side). */

/* A row read ahead: its number, its values and cell problems (copies). */
struct prep_qrow {
	int64_t row;
	char *text;         /* the values, one allocation */
	const char **vals;  /* into text, nh of them */
	unsigned char *bad; /* nh flags */
};

struct prep_queue {
	size_t n, pos; /* rows read; items handed out */
	bool eof;
	struct prep_qrow rows[PLUGIN_PREPARE_ROWS_MAX];
	struct plugin_prep prep[PLUGIN_PREPARE_ROWS_MAX];
	struct batch_item out[PLUGIN_PREPARE_ROWS_MAX];
};

static void prep_queue_clear(struct prep_queue *q)
{
	for (size_t i = 0; i < q->n; i++) {
		free(q->rows[i].text);
		free(q->rows[i].vals);
		free(q->rows[i].bad);
		plugin_draft_clear(&q->prep[i].d);
	}
	/* Items made and not handed out (an error stopped the upload). */
	for (size_t i = q->pos; i < q->n; i++)
		free(q->out[i].params);
	memset(q->rows, 0, sizeof q->rows);
	q->n = q->pos = 0;
}

static int prep_qrow_copy(struct prep_qrow *r, int64_t row, const char *const *vals, size_t nh,
                          const unsigned char *bad)
{
	size_t bytes = 1;
	for (size_t c = 0; c < nh; c++)
		bytes += strlen(vals[c] ? vals[c] : "") + 1;
	r->row = row;
	r->text = malloc(bytes);
	r->vals = malloc((nh ? nh : 1) * sizeof *r->vals);
	r->bad = malloc(nh ? nh : 1);
	if (!r->text || !r->vals || !r->bad)
		return HR_ENOMEM;
	char *w = r->text;
	for (size_t c = 0; c < nh; c++) {
		size_t n = strlen(vals[c] ? vals[c] : "") + 1;
		memcpy(w, vals[c] ? vals[c] : "", n);
		r->vals[c] = w;
		w += n;
	}
	memcpy(r->bad, bad, nh);
	return 0;
}

/* What one row's prepare said, as the row's item (validate_row's rules). */
static int prep_row_item(struct vctx *v, struct prep_qrow *qr, struct plugin_prep *pp,
                         struct batch_item *it)
{
	const char *raw = (size_t)v->rcol < v->nh ? qr->vals[v->rcol] : "";
	if (pp->o != PO_OK)
		return plugin_row_invalid(it, qr->row, raw, pp->why);
	if (pp->d.skip)
		return plugin_row_invalid(it, qr->row, pp->d.recipient, pp->d.skip_reason);
	return validate_row_as(v, qr->row, qr->vals, v->nh, qr->bad, it, &pp->d);
}

static void vctx_free(struct vctx *v)
{
	pricing_estimate_free(v->est);
	v->est = NULL;
	bspec_free(&v->b);
	free(v->seen.slot);
	free(v->supp.slot);
}

/* ---------------------------------------------------------------------------
 * JSON of a batch.
 * ------------------------------------------------------------------------- */

static json_t *time_json(int64_t us)
{
	if (!us)
		return json_null();
	char t[32];
	hr_time_format(us, t);
	return json_string(t);
}

json_t *api_batch_json(const struct batch *b)
{
	json_t *msgs = json_object();
	int64_t made = 0, settled = 0;
	for (int i = 0; msgs && i < MSG__COUNT; i++) {
		json_object_set_new(msgs, msg_status_name((enum msg_status)i),
		                    json_integer(b->by_status[i]));
		made += b->by_status[i];
		if (batch_msg_settled((enum msg_status)i, b->receipts))
			settled += b->by_status[i];
	}
	/* Progress: settled messages over the rows that will be sent; the rate
	 * and the time left from the pace since the start. */
	int64_t sendable = b->valid;
	double rate = 0;
	json_t *eta = json_null();
	int64_t now = hr_now_us();
	/* The pace over the time it was sending: a paused campaign's clock
	 * stops at its pause, and the latest pause's length is left out after
	 * its resume (earlier pauses, rarer, still count). */
	int64_t end = b->status == BATCH_PAUSED && b->paused_at ? b->paused_at : now;
	if (b->status != BATCH_PAUSED && b->resumed_at > b->paused_at &&
	    b->paused_at > b->started_at)
		end -= b->resumed_at - b->paused_at;
	if (b->started_at && settled > 0 && end > b->started_at) {
		rate = (double)settled / ((double)(end - b->started_at) / 1e6);
		if (b->status == BATCH_PROCESSING && rate > 0 && sendable > settled)
			eta = json_integer((json_int_t)((double)(sendable - settled) / rate));
	}
	int64_t delivered = b->by_status[MSG_DELIVERED] + b->by_status[MSG_READ];
	json_t *j = json_pack(
	    "{s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:o, s:o,"
	    " s:{s:I, s:I, s:I, s:I}, s:o, s:I, s:I,"
	    " s:{s:I, s:I, s:f, s:o},"
	    " s:{s:o, s:o, s:o, s:o, s:o, s:o, s:o}}",
	    "id", b->id, "name", b->name, "status", batch_status_name(b->status), "unit",
	    b->unit[0] ? json_string(b->unit) : json_null(), "channel", b->channel, "account",
	    api_account_name(b->tenant_id, b->account_id), "template",
	    b->template_name[0] ? json_pack("{s:s, s:s}", "name", b->template_name, "language",
	                                    b->language)
	                        : json_null(),
	    "error", b->error[0] ? json_string(b->error) : json_null(), "retry_of",
	    b->retry_of[0] ? json_string(b->retry_of) : json_null(), "schedule_at",
	    time_json(b->schedule_at),
	    "rows", "total", (json_int_t)b->total, "valid", (json_int_t)b->valid, "invalid",
	    (json_int_t)b->invalid, "duplicates", (json_int_t)b->duplicates,
	    "messages", msgs, "replied", (json_int_t)b->replied, "delivered_or_read",
	    (json_int_t)delivered,
	    "progress", "made", (json_int_t)made, "settled", (json_int_t)settled,
	    "per_second", rate, "eta_seconds", eta,
	    "times", "created_at", time_json(b->created_at), "validated_at",
	    time_json(b->validated_at), "started_at", time_json(b->started_at), "completed_at",
	    time_json(b->completed_at), "cancelled_at", time_json(b->cancelled_at), "failed_at",
	    time_json(b->failed_at), "ingested", json_boolean(b->ingested));
	/* Who paused, resumed or cancelled it, when and why (the latest of
	 * each; the audit log has them all). */
	json_t *times = json_object_get(j, "times");
	if (times) {
		json_object_set_new(times, "paused_at", time_json(b->paused_at));
		json_object_set_new(times, "resumed_at", time_json(b->resumed_at));
	}
	if (j && json_object_set_new(
	             j, "operator",
	             json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "paused_by",
	                       b->paused_by[0] ? b->paused_by : NULL, "pause_reason",
	                       b->pause_reason[0] ? b->pause_reason : NULL, "resumed_by",
	                       b->resumed_by[0] ? b->resumed_by : NULL, "cancelled_by",
	                       b->cancelled_by[0] ? b->cancelled_by : NULL, "cancel_reason",
	                       b->cancel_reason[0] ? b->cancel_reason : NULL)) != 0) {
		json_decref(j);
		j = NULL;
	}
	/* The policy the batch asked for; null: each message's template's or
	 * account's. */
	json_t *spec = j && b->spec ? json_loads(b->spec, 0, NULL) : NULL;
	json_t *pol = json_object_get(spec, "delivery_policy");
	if (j && json_object_set_new(j, "delivery_policy",
	                             json_is_string(pol) ? json_copy(pol) : json_null()) != 0) {
		json_decref(j);
		j = NULL;
	}
	json_decref(spec);
	return j;
}

/* The batch's JSON with its retries and extra (taken), or an hr code. */
static int batch_answer(struct api_req *r, const char *id, json_t *extra, json_t **out)
{
	struct store *st = r->srv->o.store;
	struct batch b;
	*out = NULL;
	int rc = st->ops->batch_get(st, r->tenant, id, &b);
	if (rc) {
		json_decref(extra);
		return rc;
	}
	json_t *j = api_batch_json(&b);
	batch_clear(&b);
	/* The link back from a batch to the retries made of it. */
	struct batch_filter rf = {.status = -1, .limit = 100, .retry_of = id};
	struct batch *rl;
	size_t rn;
	bool more;
	json_t *retries = json_array();
	if (j && retries && st->ops->batch_list(st, r->tenant, &rf, &rl, &rn, &more) == 0) {
		for (size_t i = 0; i < rn; i++) {
			json_array_append_new(retries, json_string(rl[i].id));
			batch_clear(&rl[i]);
		}
		free(rl);
	}
	if (j)
		json_object_set(j, "retries", retries);
	json_decref(retries);
	if (j && extra)
		json_object_update(j, extra);
	json_decref(extra);
	*out = j;
	return j ? 0 : HR_ENOMEM;
}

static enum MHD_Result respond_batch(struct api_req *r, int status, const char *id,
                                     json_t *extra)
{
	json_t *j;
	int rc = batch_answer(r, id, extra, &j);
	return rc ? api_fail(r, rc, NULL) : api_respond_json(r, status, j, NULL);
}

/* ---------------------------------------------------------------------------
 * POST /v1/batches
 * ------------------------------------------------------------------------- */

static const char *const post_keys[] = {
    "name",
    "channel",
    "account",
    "template",
    "text",
    "recipient_column",
    "params",
    "default_region",
    "unit",
    "schedule_at",
    "dry_run",
    "start",
    "rows",
    "sheet",
    "separator",
    "callback_url",
    "delivery_policy",
    "route",
    "fallback_after_s",
    "fallback_text",
    "source",
    "query",
    "query_params",
    "document_param",
    "document_filename",
    "preview",
    NULL,
};

static int need_string(json_t *root, const char *key, size_t max, const char **out,
                       bool required, struct hr_err *err)
{
	json_t *v = json_object_get(root, key);
	*out = NULL;
	if (!v)
		return required ? hr_fail(err, HR_EINVAL, key, "%s is required", key) : 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
		return hr_fail(err, HR_EINVAL, key, "%s must be a string of 1 to %zu bytes", key, max);
	*out = json_string_value(v);
	return 0;
}

static int find_header(const char *const *headers, size_t nh, const char *name)
{
	for (size_t i = 0; i < nh; i++)
		if (!strcasecmp(headers[i], name))
			return (int)i;
	return -1;
}

/* "phone, name, amount" for an error that lists the file's columns. */
static void list_headers(const char *const *headers, size_t nh, char *out, size_t size)
{
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i < nh && o + 1 < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s", i ? ", " : "", headers[i]);
}

/* Resolves the mapping: recipient column and parameter columns. */
static int map_columns(struct vctx *v, json_t *root, struct hr_err *err)
{
	char cols[512];
	list_headers(v->headers, v->nh, cols, sizeof cols);
	const char *rc_name;
	int rc = need_string(root, "recipient_column", 64, &rc_name, false, err);
	if (rc)
		return rc;
	v->rcol = -1;
	if (rc_name) {
		if ((v->rcol = find_header(v->headers, v->nh, rc_name)) < 0)
			return hr_fail(err, HR_EINVAL, "recipient_column",
			               "no column '%s' (the columns are: %s)", rc_name, cols);
	} else {
		static const char *const guess[] = {"phone", "to", "recipient", "mobile", "msisdn",
		                                    "chat_id", NULL};
		for (const char *const *g = guess; *g && v->rcol < 0; g++)
			v->rcol = find_header(v->headers, v->nh, *g);
		if (v->rcol < 0)
			return hr_fail(err, HR_EINVAL, "recipient_column",
			               "say which column holds the recipients (the columns are: %s)",
			               cols);
	}
	json_t *jp = json_object_get(root, "params");
	if (jp) {
		if (!json_is_array(jp) || json_array_size(jp) != (size_t)v->b.nparams)
			return hr_fail(err, HR_EINVAL, "params",
			               "params must list %d column name%s, one per placeholder",
			               v->b.nparams, v->b.nparams == 1 ? "" : "s");
		for (int i = 0; i < v->b.nparams; i++) {
			const char *name = json_string_value(json_array_get(jp, (size_t)i));
			char f[32];
			snprintf(f, sizeof f, "params[%d]", i);
			if (!name)
				return hr_fail(err, HR_EINVAL, f, "%s must be a column name", f);
			if ((v->pcols[i] = find_header(v->headers, v->nh, name)) < 0) {
				char cn[64];
				return hr_fail(err, HR_EINVAL, f, "no column '%s' (the columns are: %s)",
				               api_clip(cn, sizeof cn, name), cols);
			}
		}
		return 0;
	}
	for (int i = 0; i < v->b.nparams; i++) {
		char name[16];
		snprintf(name, sizeof name, "%d", i + 1);
		if ((v->pcols[i] = find_header(v->headers, v->nh, name)) < 0)
			return hr_fail(err, HR_EINVAL, "params",
			               "the message has %d placeholder%s: name the columns in params, "
			               "or call them 1..%d (the columns are: %s)",
			               v->b.nparams, v->b.nparams == 1 ? "" : "s", v->b.nparams, cols);
	}
	return 0;
}

/* The spec from the request: account, content, region. */
static int parse_spec(struct api_req *r, json_t *root, struct vctx *v, const char **name,
                      struct hr_err *err)
{
	const struct api_server *s = r->srv;
	const char *channel, *account, *region, *text, *policy;
	int rc;
	if ((rc = need_string(root, "delivery_policy", 15, &policy, false, err)) ||
	    (rc = need_string(root, "name", BATCH_NAME_MAX, name, true, err)) ||
	    (rc = need_string(root, "channel", 15, &channel, true, err)) ||
	    (rc = need_string(root, "account", HR_NAME_MAX - 1, &account, false, err)) ||
	    (rc = need_string(root, "default_region", 2, &region, false, err)) ||
	    (rc = need_string(root, "text", 4096, &text, false, err)))
		return rc;
	v->b.s = s;
	hr_strlcpy(v->b.tenant, r->tenant, sizeof v->b.tenant);
	hr_strlcpy(v->b.unit, r->who.unit, sizeof v->b.unit);
	enum delivery_policy dp;
	if (policy && delivery_policy_parse(policy, &dp) != 0)
		return hr_fail(err, HR_EINVAL, "delivery_policy",
		               "delivery_policy must be \"at_least_once\" or \"at_most_once\"");
	hr_strlcpy(v->b.policy, policy ? policy : "", sizeof v->b.policy);
	const struct channel_account *acct = NULL;
	struct channel_account *a;
	for (size_t i = 0; (a = account_set_at(s->o.accounts, i)) != NULL && !acct; i++) {
		if (strcmp(a->tenant_id, r->tenant) != 0 || strcmp(a->ops->name, channel) != 0 ||
		    !api_unit_visible(r, a->unit, true))
			continue;
		if (!account || !strcmp(api_account_name(r->tenant, a->id), account))
			acct = a;
	}
	if (!acct) {
		char c1[32], c2[HR_NAME_MAX];
		return account ? hr_fail(err, HR_EINVAL, "account", "no %s account '%s' for this tenant",
		                         api_clip(c1, sizeof c1, channel),
		                         api_clip(c2, sizeof c2, account))
		               : hr_fail(err, HR_EINVAL, "channel", "this tenant has no %s account",
		                         api_clip(c1, sizeof c1, channel));
	}
	v->b.acct = acct;
	v->b.phone = strcmp(acct->ops->name, "telegram") != 0;
	if (region) {
		if (!hr_phone_region_known(region))
			return hr_fail(err, HR_EINVAL, "default_region",
			               "default_region must be an ISO 3166 country code such as GB");
		hr_strlcpy(v->b.region, region, sizeof v->b.region);
	}
	json_t *jt = json_object_get(root, "template");
	if ((jt != NULL) == (text != NULL))
		return hr_fail(err, HR_EINVAL, jt ? "text" : "template",
		               "give either template or text");
	/* A text is a free-form message: WhatsApp's service category. */
	v->wa_category = !strcmp(acct->ops->name, "whatsapp") ? WA_SERVICE : -1;
	if (text) {
		if ((rc = template_param_count(text, &v->b.nparams, err)))
			return rc;
		if (!(v->b.text = strdup(text)))
			return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	} else {
		const char *tn = json_string_value(json_object_get(jt, "name"));
		const char *tl = json_string_value(json_object_get(jt, "language"));
		if (!json_is_object(jt) || !tn || !tl || json_object_size(jt) != 2 ||
		    strlen(tn) >= sizeof v->b.tname || strlen(tl) >= sizeof v->b.lang)
			return hr_fail(err, HR_EINVAL, "template",
			               "template must be {\"name\", \"language\"}");
		struct template_row t;
		rc = s->o.store->ops->template_get(s->o.store, r->tenant, acct->ops->name, tn, tl, &t);
		if (rc == 0 && !api_unit_visible(r, t.unit_id, true)) {
			template_row_clear(&t); /* a sibling unit's: as absent as none */
			rc = HR_ENOTFOUND;
		}
		if (rc == HR_ENOTFOUND) {
			char c1[HR_NAME_MAX], c2[16];
			return hr_fail(err, HR_EINVAL, "template.name", "no template '%s' (%s) for %s",
			               api_clip(c1, sizeof c1, tn), api_clip(c2, sizeof c2, tl),
			               acct->ops->name);
		}
		if (rc)
			return rc;
		v->b.nparams = t.param_count;
		/* What Meta prices the template as, when it says (its extras'
		 * category); else the dearest, and the estimate says so. */
		if (!strcmp(acct->ops->name, "whatsapp")) {
			json_t *tc = t.config ? json_loads(t.config, 0, NULL) : NULL;
			enum wa_category c;
			if (wa_category_parse(json_string_value(json_object_get(tc, "category")),
			                      &c) == 0) {
				v->wa_category = (int)c;
			} else {
				v->wa_category = WA_MARKETING;
				char c1[HR_NAME_MAX];
				snprintf(v->category_note, sizeof v->category_note,
				         "template '%s' declares no category: priced as marketing",
				         api_clip(c1, sizeof c1, tn));
			}
			json_decref(tc);
		}
		template_row_clear(&t);
		hr_strlcpy(v->b.tname, tn, sizeof v->b.tname);
		hr_strlcpy(v->b.lang, tl, sizeof v->b.lang);
	}
	if (v->b.nparams > BATCH_COLS_MAX)
		return hr_fail(err, HR_ELIMIT, text ? "text" : "template",
		               "at most %d placeholders", BATCH_COLS_MAX);
	json_t *jdoc = json_object_get(root, "document_param");
	const char *dfn = NULL;
	if (jdoc && (text || !json_is_integer(jdoc) || json_integer_value(jdoc) < 1 ||
	             json_integer_value(jdoc) > v->b.nparams))
		return hr_fail(err, HR_EINVAL, "document_param",
		               "document_param must be the number of one of the template's "
		               "parameters (1 to %d): the one holding the document's link",
		               v->b.nparams);
	if ((rc = need_string(root, "document_filename", sizeof v->b.doc_filename - 1, &dfn, false,
	                      err)))
		return rc;
	if (dfn && !jdoc)
		return hr_fail(err, HR_EINVAL, "document_filename",
		               "document_filename goes with "
		               "document_param");
	v->b.doc_param = jdoc ? (int)json_integer_value(jdoc) : 0;
	hr_strlcpy(v->b.doc_filename, dfn ? dfn : "", sizeof v->b.doc_filename);
	return 0;
}

/* Columns of a JSON upload: the first row's keys, in order. */
static int json_headers(json_t *rows, const char **headers, size_t *nh, struct hr_err *err)
{
	json_t *first = json_array_get(rows, 0);
	if (!json_is_object(first))
		return hr_fail(err, HR_EINVAL, "rows[0]", "each row must be an object");
	const char *key;
	json_t *val;
	*nh = 0;
	json_object_foreach(first, key, val) {
		if (*nh == BATCH_COLS_MAX)
			return hr_fail(err, HR_ELIMIT, "rows[0]", "at most %d columns", BATCH_COLS_MAX);
		headers[(*nh)++] = key;
	}
	return 0;
}

/* A JSON row's values by column: strings as they are, numbers as their
 * digits, true/false, null as empty. */
static int json_row(json_t *o, const char *const *headers, size_t nh, const char **vals,
                    char numbuf[][32], size_t row, struct hr_err *err)
{
	char f[48];
	snprintf(f, sizeof f, "rows[%zu]", row);
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, f, "each row must be an object");
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val) {
		if (find_header(headers, nh, key) < 0) {
			char k[64];
			return hr_fail(err, HR_EINVAL, f, "%s has a column '%s' the first row lacks", f,
			               api_clip(k, sizeof k, key));
		}
	}
	for (size_t c = 0; c < nh; c++) {
		json_t *x = json_object_get(o, headers[c]);
		if (!x || json_is_null(x))
			vals[c] = "";
		else if (json_is_string(x))
			vals[c] = json_string_value(x);
		else if (json_is_integer(x)) {
			snprintf(numbuf[c], 32, "%lld", (long long)json_integer_value(x));
			vals[c] = numbuf[c];
		} else if (json_is_boolean(x))
			vals[c] = json_is_true(x) ? "true" : "false";
		else {
			snprintf(f, sizeof f, "rows[%zu].%s", row, headers[c]);
			return hr_fail(err, HR_EINVAL, f, "a cell must be a string, an integer, a "
			                                  "boolean or null");
		}
	}
	return 0;
}

/* Loads the tenant's opt-outs for the channel into v->supp. */
static int load_suppressions(struct api_req *r, struct vctx *v)
{
	struct store *st = r->srv->o.store;
	struct suppression_row *rows;
	size_t n;
	int rc = st->ops->suppression_list(st, r->tenant, v->b.acct->ops->name, &rows, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n && !v->oom; i++)
		hset_add(&v->supp, rows[i].recipient, &v->oom);
	free(rows);
	return v->oom ? HR_ENOMEM : 0;
}

struct upload {
	json_t *errors; /* the first invalid rows, for the answer */
	int64_t total, valid, invalid, duplicates;
};

/* Counts an item and keeps the first invalid ones for the answer. */
static void upload_note(struct upload *u, const struct batch_item *it)
{
	u->total++;
	if (!it->valid) {
		u->invalid++;
		if (json_array_size(u->errors) < BATCH_ERRORS_INLINE)
			json_array_append_new(u->errors,
			                      json_pack("{s:I, s:s, s:s}", "row", (json_int_t)it->row,
			                                "column", it->error_column, "reason", it->error));
	} else if (it->duplicate)
		u->duplicates++;
	else
		u->valid++;
}

static void items_free(struct batch_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i].params);
}

/*
 * Checked rows are stored a chunk at a time on a thread of their own while
 * the next chunk is read and checked: the store's writer and the reading
 * then use both cores, where storing in line left the reader waiting for
 * every commit. One chunk is in flight at most (two buffers).
 */
struct put_behind {
	struct store *st;
	const char *batch_id;
	struct batch_item *items;
	size_t n;
	pthread_t th;
	bool running;
	int rc;
	struct hr_err err;
};

static void *put_behind_run(void *arg)
{
	struct put_behind *p = arg;
	p->rc = p->st->ops->batch_items_put(p->st, p->batch_id, p->items, p->n, &p->err);
	return NULL;
}

/* Waits for the chunk in flight: its result (0 if none was). */
static int put_behind_wait(struct put_behind *p, struct hr_err *err)
{
	if (!p->running)
		return 0;
	pthread_join(p->th, NULL);
	p->running = false;
	items_free(p->items, p->n);
	p->n = 0;
	if (p->rc)
		*err = p->err;
	return p->rc;
}

/* Hands items[0..n) over (swapping buffers with the helper's) and starts
 * storing them; *items is then a free buffer. */
static int put_behind_start(struct put_behind *p, struct batch_item **items, size_t n,
                            struct hr_err *err)
{
	int rc = put_behind_wait(p, err);
	if (rc)
		return rc;
	struct batch_item *t = p->items;
	p->items = *items;
	p->n = n;
	*items = t;
	hr_err_clear(&p->err);
	if (pthread_create(&p->th, NULL, put_behind_run, p) != 0) {
		put_behind_run(p); /* no thread: store it in line */
		rc = p->rc;
		if (rc)
			*err = p->err;
		items_free(p->items, p->n);
		p->n = 0;
		return rc;
	}
	p->running = true;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Where the rows come from: a JSON array, or an uploaded .xlsx/.csv read as
 * a stream (the first row with a value holds the column names).
 * ------------------------------------------------------------------------- */

struct rowsrc {
	json_t *rows; /* JSON */
	size_t next;
	struct sheet *sh; /* upload, or a data-source query's rows */
	int qfd;          /* the query's rows as CSV (an unnamed file) + 1; 0: none */
	char hbuf[BATCH_COLS_MAX][64];
	const char *headers[BATCH_COLS_MAX];
	size_t nh;
	const char *vals[BATCH_COLS_MAX];
	unsigned char bad[BATCH_COLS_MAX];
	char nums[BATCH_COLS_MAX][32];
};

/* A sheet reader's error as the API's: what, where, in words. */
static int sheet_fail(const struct sheet_err *se, struct hr_err *err)
{
	int code = se->code == SHEET_E_NOMEM ? HR_ENOMEM
	           : se->code == SHEET_E_IO  ? HR_EIO
	           : se->code == SHEET_E_ROWS || se->code == SHEET_E_COLS ||
	                   se->code == SHEET_E_FILE_SIZE || se->code == SHEET_E_CELL_SIZE ||
	                   se->code == SHEET_E_INFLATE || se->code == SHEET_E_SST_SIZE
	               ? HR_ELIMIT
	               : HR_EINVAL;
	char field[32] = "file";
	if (se->row && se->col)
		snprintf(field, sizeof field, "file:%s%u", se->col_name, se->row);
	else if (se->row)
		snprintf(field, sizeof field, "file:row %u", se->row);
	return hr_fail(err, code, field, "%s", se->msg);
}

static int src_headers(struct rowsrc *rs, struct hr_err *err);

static int src_open_sheet(struct rowsrc *rs, struct api_req *r, json_t *root, struct hr_err *err)
{
	const struct api_upload *u = r->upload;
	const char *fname = api_upload_filename(u), *dot = strrchr(fname, '.');
	struct sheet_opts o = {.tmpdir = r->srv->o.upload_dir};
	if (dot && (!strcasecmp(dot, ".xlsx") || !strcasecmp(dot, ".xlsm")))
		o.format = SHEET_FMT_XLSX;
	else if (dot && (!strcasecmp(dot, ".csv") || !strcasecmp(dot, ".txt")))
		o.format = SHEET_FMT_CSV;
	else
		return hr_fail(err, HR_EINVAL, "file",
		               "upload an .xlsx or .csv file (got '%s')", fname[0] ? fname : "no name");
	o.sheet = json_string_value(json_object_get(root, "sheet"));
	const char *sep = json_string_value(json_object_get(root, "separator"));
	if (sep && (strlen(sep) != 1 || (sep[0] != ',' && sep[0] != ';' && sep[0] != '\t')))
		return hr_fail(err, HR_EINVAL, "separator", "separator must be , or ; or a tab");
	o.csv_sep = sep ? sep[0] : 0;
	o.limits.max_rows = (uint32_t)r->srv->o.max_batch_rows + 1;
	o.limits.max_cols = BATCH_COLS_MAX;
	o.limits.max_file_bytes = r->srv->o.max_upload_bytes;
	struct sheet_err se = {0};
	if (sheet_open(&rs->sh, api_upload_path(u), &o, &se) != 0)
		return sheet_fail(&se, err);
	return src_headers(rs, err);
}

/* The open sheet's first row with a value: the column names. */
static int src_headers(struct rowsrc *rs, struct hr_err *err)
{
	struct sheet_err se = {0};
	struct sheet_row row;
	int k = sheet_next(rs->sh, &row, &se);
	if (k < 0)
		return sheet_fail(&se, err);
	if (k == 0)
		return hr_fail(err, HR_EINVAL, "file", "the sheet is empty: no column names, no rows");
	for (uint32_t c = 0; c < row.ncols; c++) {
		const char *t = row.cells[c].text;
		char letter[4];
		if (!*t)
			t = sheet_col_name(c + 1, letter);
		if (strlen(t) >= sizeof rs->hbuf[0])
			return hr_fail(err, HR_EINVAL, "file",
			               "the column name in %s%u is over 63 bytes",
			               sheet_col_name(c + 1, letter), row.num);
		hr_strlcpy(rs->hbuf[c], t, sizeof rs->hbuf[c]);
		for (size_t p = 0; p < c; p++)
			if (!strcasecmp(rs->hbuf[p], rs->hbuf[c]))
				return hr_fail(err, HR_EINVAL, "file", "two columns are called '%s'",
				               rs->hbuf[c]);
		rs->headers[c] = rs->hbuf[c];
	}
	rs->nh = row.ncols;
	return 0;
}

/*
 * Rows from a data source (plugins/datasource.h): {"source", "query",
 * "query_params"}. The tenant names one of the source's configured queries
 * (never SQL) and gives its parameters as values; a source the tenant is not
 * listed under is "not found", exactly like one that does not exist. The
 * rows are written as CSV to an unnamed file in upload_dir (bounded by
 * max_upload_bytes and max_batch_rows, like an upload) and read back by
 * the CSV reader, so validation, the report, progress, cancel, retry and
 * export are those of an uploaded file.
 */
#define QUERY_PARAMS_MAX 32

struct qspool {
	FILE *f;
	uint64_t bytes, max_bytes;
	int64_t rows, max_rows;
	int rc;
	struct hr_err *err;
};

static void csv_field(FILE *f, const char *v)
{
	fputc('"', f);
	for (; *v; v++) {
		if (*v == '"')
			fputc('"', f);
		fputc(*v, f);
	}
	fputc('"', f);
}

static int qspool_row(void *ctx, int ncols, const char *const *names, const char *const *values)
{
	struct qspool *q = ctx;
	if (ncols > BATCH_COLS_MAX) {
		q->rc = hr_fail(q->err, HR_ELIMIT, "query",
		                "the query returns %d columns (at most %d)", ncols, BATCH_COLS_MAX);
		return 1;
	}
	if (q->rows == 0) {
		for (int i = 0; i < ncols; i++) {
			if (i)
				fputc(',', q->f);
			csv_field(q->f, names[i]);
		}
		fputs("\r\n", q->f);
	}
	if (++q->rows > q->max_rows) {
		q->rc = hr_fail(q->err, HR_ELIMIT, "query",
		                "the query returns more than %lld rows (a campaign's limit)",
		                (long long)q->max_rows);
		return 1;
	}
	for (int i = 0; i < ncols; i++) {
		if (i)
			fputc(',', q->f);
		csv_field(q->f, values[i] ? values[i] : "");
		q->bytes += (values[i] ? strlen(values[i]) : 0) + 3;
	}
	fputs("\r\n", q->f);
	if (q->bytes > q->max_bytes) {
		q->rc = hr_fail(q->err, HR_ELIMIT, "query",
		                "the query returns more than %llu bytes (a campaign's limit)",
		                (unsigned long long)q->max_bytes);
		return 1;
	}
	return 0;
}

/* Whether the tenant may read the source's named query: 404 for a source
 * it is not listed under (as for one that does not exist) and for a name
 * that is not one of the source's queries. *sql: the query's SQL. */
static int src_query_check(struct api_req *r, json_t *root, const char **sql, struct hr_err *err)
{
	struct api_server *s = r->srv;
	const char *source = NULL, *qname = NULL;
	int rc;
	if ((rc = need_string(root, "source", 63, &source, true, err)) ||
	    (rc = need_string(root, "query", 63, &qname, true, err)))
		return rc;
	if (!s->o.datasources || !ds_tenant_allowed(s->o.datasources, source, r->tenant))
		return hr_fail(err, HR_ENOTFOUND, "source", "no data source '%s'", source);
	*sql = ds_named_query(s->o.datasources, source, qname);
	if (!*sql)
		return hr_fail(
		    err, HR_ENOTFOUND, "query",
		    "data source '%s' has no query named '%s' (name one of its configured "
		    "queries: SQL is never taken from a request)",
		    source, qname);
	return 0;
}

static int src_open_query(struct rowsrc *rs, struct api_req *r, json_t *root, struct hr_err *err)
{
	struct api_server *s = r->srv;
	const char *source = NULL, *qname = NULL;
	int rc;
	if ((rc = need_string(root, "source", 63, &source, true, err)) ||
	    (rc = need_string(root, "query", 63, &qname, true, err)))
		return rc;
	if (r->upload || json_object_get(root, "rows"))
		return hr_fail(
		    err, HR_EINVAL, "source",
		    "a campaign's rows come from a file, rows or a source: not two of them");
	const char *sql;
	if ((rc = src_query_check(r, root, &sql, err)))
		return rc;
	json_t *jp = json_object_get(root, "query_params");
	const char *params[QUERY_PARAMS_MAX];
	char nums[QUERY_PARAMS_MAX][32];
	size_t np = 0;
	if (jp && (!json_is_array(jp) || json_array_size(jp) > QUERY_PARAMS_MAX))
		return hr_fail(err, HR_EINVAL, "query_params",
		               "query_params must be a list of at most %d values",
		               QUERY_PARAMS_MAX);
	for (np = 0; jp && np < json_array_size(jp); np++) {
		json_t *v = json_array_get(jp, np);
		char f[32];
		snprintf(f, sizeof f, "query_params[%zu]", np);
		if (json_is_string(v) && json_string_length(v) <= BATCH_PARAM_MAX &&
		    strlen(json_string_value(v)) == json_string_length(v))
			params[np] = json_string_value(v);
		else if (json_is_integer(v))
			snprintf(nums[np], sizeof nums[np], "%" JSON_INTEGER_FORMAT,
			         json_integer_value(v)),
			    params[np] = nums[np];
		else if (json_is_real(v))
			snprintf(nums[np], sizeof nums[np], "%.17g", json_real_value(v)),
			    params[np] = nums[np];
		else if (json_is_null(v))
			params[np] = NULL;
		else
			return hr_fail(err, HR_EINVAL, f,
			               "%s must be a string of at most %d bytes, a number or null",
			               f, BATCH_PARAM_MAX);
	}
	int fd =
	    open(s->o.upload_dir ? s->o.upload_dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(dup(fd), "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return hr_fail(err, HR_EIO, "source", "cannot spool the query's rows");
	}
	rs->qfd = fd + 1;
	struct qspool q = {.f = f,
	                   .max_bytes = s->o.max_upload_bytes,
	                   .max_rows = s->o.max_batch_rows,
	                   .err = err};
	char derr[512];
	rc = ds_query(s->o.datasources, source, sql, params, (int)np, 0, qspool_row, &q, derr,
	              sizeof derr);
	if (fclose(f) != 0 && rc == 0 && q.rc == 0)
		return hr_fail(err, HR_EIO, "source", "cannot spool the query's rows (disk full?)");
	if (q.rc)
		return q.rc;
	if (rc != 0) {
		/* The driver's text names the source; it is the operator's SQL and
		 * server, so say what failed without the server's detail. */
		hr_log(HR_LOG_WARN, "batches", "%s", derr);
		return hr_fail(err, HR_EBUSY, "source", "data source '%s' could not be read: %s",
		               source,
		               strstr(derr, "timed out")        ? "the query timed out"
		               : strstr(derr, "cannot connect") ? "cannot connect"
		                                                : "the query failed");
	}
	if (q.rows == 0)
		return hr_fail(err, HR_EINVAL, "query",
		               "query '%s' of data source '%s' returned no rows", qname, source);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	struct sheet_opts o = {.format = SHEET_FMT_CSV, .csv_sep = ','};
	o.limits.max_rows = (uint32_t)s->o.max_batch_rows + 1;
	o.limits.max_cols = BATCH_COLS_MAX;
	o.limits.max_file_bytes = s->o.max_upload_bytes + (uint64_t)q.rows * 8 + 65536;
	struct sheet_err se = {0};
	if (sheet_open(&rs->sh, path, &o, &se) != 0)
		return sheet_fail(&se, err);
	return src_headers(rs, err);
}

/* The next row: 1 (*rowno, rs->vals/bad filled), 0 at the end, or an error. */
static int src_next(struct rowsrc *rs, int64_t *rowno, struct hr_err *err)
{
	if (rs->rows) {
		if (rs->next >= json_array_size(rs->rows))
			return 0;
		size_t i = rs->next++;
		*rowno = (int64_t)i + 1;
		memset(rs->bad, 0, rs->nh);
		int rc = json_row(json_array_get(rs->rows, i), rs->headers, rs->nh, rs->vals, rs->nums,
		                  i, err);
		return rc ? rc : 1;
	}
	struct sheet_row row;
	struct sheet_err se = {0};
	int k = sheet_next(rs->sh, &row, &se);
	if (k < 0)
		return sheet_fail(&se, err);
	if (k == 0)
		return 0;
	*rowno = row.num;
	for (size_t c = 0; c < rs->nh; c++) {
		const struct sheet_cell *cell = c < row.ncols ? &row.cells[c] : NULL;
		rs->vals[c] = cell ? cell->text : "";
		rs->bad[c] = !cell ? CELL_OK
		             : cell->type == SHEET_FORMULA_NO_VALUE ? CELL_NO_VALUE
		             : cell->type == SHEET_ERROR ? CELL_ERROR
		             : (cell->type == SHEET_NUMBER && (cell->flags & SHEET_LOSSY_NUMBER))
		                 ? CELL_LOSSY
		                 : CELL_OK;
	}
	/* Cells right of the last named column are notes, like any column the
	 * mapping does not use: not read. */
	return 1;
}

/* Reads up to PLUGIN_PREPARE_ROWS_MAX rows, runs the unit's plugin's prepare
 * over them in one call and checks each: q->out[0..n) filled. 0 (q->n is 0
 * at the end of the rows), or an error (err set; HR_EINVAL: v->fatal). */
static int prep_next(struct vctx *v, struct rowsrc *rs, struct prep_queue *q, struct hr_err *err)
{
	prep_queue_clear(q);
	int rc = 0;
	while (!q->eof && q->n < PLUGIN_PREPARE_ROWS_MAX) {
		int64_t rowno = 0;
		int k = src_next(rs, &rowno, err);
		if (k < 0)
			return k;
		if (k == 0) {
			q->eof = true;
			break;
		}
		struct prep_qrow *r = &q->rows[q->n];
		struct plugin_prep *pp = &q->prep[q->n];
		memset(pp, 0, sizeof *pp);
		q->n++;
		if ((rc = prep_qrow_copy(r, rowno, rs->vals, rs->nh, rs->bad)))
			return hr_fail(err, rc, NULL, "out of memory");
		pp->values = r->vals;
		const char *raw = (size_t)v->rcol < rs->nh ? r->vals[v->rcol] : "";
		hr_strlcpy(pp->d.recipient, raw, sizeof pp->d.recipient);
		for (int i = 0; i < v->b.nparams; i++) {
			int c = v->pcols[i];
			if (!(pp->d.params[i] = strdup((size_t)c < rs->nh ? r->vals[c] : "")))
				return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
			pp->d.nparams = i + 1;
		}
	}
	if (q->n == 0)
		return 0;
	/* After PREPARE_TIMEOUTS_MAX calls that timed out, the rest of the
	 * upload is refused without calling the plugin. */
	if (v->prep_timeouts >= PREPARE_TIMEOUTS_MAX) {
		for (size_t i = 0; i < q->n; i++) {
			q->prep[i].o = PO_BUSY;
			snprintf(
			    q->prep[i].why, sizeof q->prep[i].why,
			    "plugin %s: prepare not called: %d of its calls in this upload timed "
			    "out",
			    plugin_name(v->prep), v->prep_timeouts);
		}
	} else if ((rc = plugins_prepare_rows(v->b.s->o.plugins, v->prep, v->b.tenant, v->b.unit,
	                                      v->headers, v->nh, q->prep, q->n))) {
		return hr_fail(err, rc, NULL, "out of memory");
	} else {
		bool late = false;
		for (size_t i = 0; i < q->n; i++)
			late = late || q->prep[i].o == PO_TIMEOUT;
		v->prep_timeouts += late;
	}
	size_t made = 0;
	for (; made < q->n; made++)
		if ((rc = prep_row_item(v, &q->rows[made], &q->prep[made], &q->out[made])))
			break;
	if (rc) {
		/* The items made so far are freed by the next clear; the one
		 * that failed freed its own. */
		for (size_t i = made; i < q->n; i++)
			q->out[i].params = NULL;
		q->pos = 0;
		if (rc == HR_EINVAL) {
			*err = v->fatal;
			return rc;
		}
		return hr_fail(err, rc, NULL, "%s",
		               rc == HR_ENOMEM ? "out of memory" : hr_code_name(rc));
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Preview (POST /v1/batches with "preview": N): the first rows of a file as
 * the upload would read them, before anything is created.
 * ------------------------------------------------------------------------- */

#define PREVIEW_ROWS_MAX 50
#define PREVIEW_VALUE_MAX 256 /* bytes of a cell shown */

/* v as a masked session sees a phone number (session.c's masking). */
static json_t *preview_str(const char *v, bool masked)
{
	char buf[PREVIEW_VALUE_MAX + 1];
	hr_utf8_copy(buf, v ? v : "", sizeof buf);
	if (!masked || !buf[0])
		return json_string(buf);
	json_t *tmp = json_pack("{s:s}", "to", buf);
	api_mask_json(tmp);
	json_t *m = json_incref(json_object_get(tmp, "to"));
	json_decref(tmp);
	return m;
}

/*
 * The column names, the mapping the upload would use (the recipient column
 * and each placeholder's column, by name or by the defaults; when it cannot
 * be resolved, mapping_error says why and what was found is still shown),
 * and the first n rows: every value, the recipient as given, its E.164 form
 * and the channel's form, or why it is not a number, and the row's verdict
 * as the upload would give it (valid, duplicate, or the column and reason).
 * Reads n + 1 rows at most (the last only to say whether more follow).
 */
static int preview_run(struct vctx *v, struct rowsrc *rs, json_t *root, int n, bool masked,
                       json_t **out, struct hr_err *err)
{
	*out = NULL;
	json_t *o = json_object(), *hs = json_array(), *rows = json_array(), *map = json_object();
	int rc = o && hs && rows && map ? 0 : HR_ENOMEM;
	for (size_t i = 0; rc == 0 && i < v->nh; i++)
		if (json_array_append_new(hs, json_string(v->headers[i])))
			rc = HR_ENOMEM;
	struct hr_err merr = {0};
	int mrc = rc ? 0 : map_columns(v, root, &merr);
	if (mrc && mrc != HR_EINVAL)
		rc = mrc;
	bool mapped = rc == 0 && mrc == 0;
	if (rc == 0) {
		json_t *pc = json_array();
		for (int i = 0; mapped && pc && i < v->b.nparams; i++)
			json_array_append_new(pc, json_string(v->headers[v->pcols[i]]));
		if (!pc ||
		    json_object_set_new(map, "recipient_column",
		                        v->rcol >= 0 ? json_string(v->headers[v->rcol])
		                                     : json_null()) ||
		    json_object_set_new(map, "placeholders", json_integer(v->b.nparams)) ||
		    json_object_set_new(map, "params", mapped ? pc : json_null()))
			rc = HR_ENOMEM;
		if (!mapped)
			json_decref(pc);
		if (rc == 0 && !mapped &&
		    json_object_set_new(
		        map, "error",
		        json_pack("{s:s, s:s}", "field", merr.field, "message", merr.msg)))
			rc = HR_ENOMEM;
	}
	int64_t rowno = 0;
	bool more = false;
	for (int k = 0; rc == 0; k++) {
		int got = src_next(rs, &rowno, err);
		if (got < 0) {
			rc = got;
			break;
		}
		if (got == 0)
			break;
		if (k == n) {
			more = true;
			break;
		}
		json_t *vals = json_object(), *row = json_object();
		if (!vals || !row) {
			json_decref(vals);
			json_decref(row);
			rc = HR_ENOMEM;
			break;
		}
		for (size_t c = 0; c < v->nh; c++)
			json_object_set_new(vals, v->headers[c],
			                    preview_str(rs->vals[c], masked && (int)c == v->rcol));
		json_object_set_new(row, "row", json_integer((json_int_t)rowno));
		json_object_set_new(row, "values", vals);
		if (v->rcol >= 0) {
			const char *given = rs->vals[v->rcol];
			char chan[HR_ADDR_MAX] = "", why[256] = "", e164[HR_PHONE_E164_SIZE] = "";
			int cc = 0;
			int r2 = *given ? row_recipient(v, given, chan, why, sizeof why, &cc, e164)
			                : (snprintf(why, sizeof why, "the recipient is empty"),
			                   HR_EINVAL);
			if (r2 && r2 != HR_EINVAL) {
				json_decref(row);
				rc = r2;
				break;
			}
			json_object_set_new(
			    row, "recipient",
			    json_pack(
			        "{s:o, s:o, s:o, s:o}", "given", preview_str(given, masked), "e164",
			        r2 == 0 && e164[0] ? preview_str(e164, masked) : json_null(),
			        "normalized", r2 == 0 ? preview_str(chan, masked) : json_null(),
			        "reason", r2 ? json_string(why) : json_null()));
		}
		if (mapped) {
			struct batch_item it;
			int r3 = validate_row(v, rowno, rs->vals, rs->nh, rs->bad, &it);
			if (r3 == HR_EINVAL) {
				/* The batch's own route is refused: the upload would be. */
				json_decref(row);
				*err = v->fatal;
				rc = r3;
				break;
			}
			if (r3) {
				json_decref(row);
				rc = r3;
				break;
			}
			json_object_set_new(row, "valid", json_boolean(it.valid && !it.duplicate));
			json_object_set_new(row, "duplicate",
			                    json_boolean(it.valid && it.duplicate));
			if (!it.valid)
				json_object_set_new(row, "error",
				                    json_pack("{s:s, s:s}", "column",
				                              it.error_column, "reason", it.error));
			free(it.params);
		}
		if (json_array_append_new(rows, row))
			rc = HR_ENOMEM;
	}
	if (rc == 0 &&
	    (json_object_set_new(o, "preview", json_true()) || json_object_set(o, "headers", hs) ||
	     json_object_set(o, "mapping", map) || json_object_set(o, "rows", rows) ||
	     json_object_set_new(o, "more", json_boolean(more))))
		rc = HR_ENOMEM;
	json_decref(hs);
	json_decref(map);
	json_decref(rows);
	if (rc) {
		json_decref(o);
		if (!err->code)
			hr_fail(err, rc, NULL,
			        rc == HR_ENOMEM ? "out of memory" : "preview failed");
		return rc;
	}
	*out = o;
	return 0;
}

/* A form field holding a list (parameter columns, a route's channels):
 * items separated by commas, blanks around them dropped. NULL when out of
 * memory. */
static json_t *form_list(const char *t)
{
	json_t *a = json_array();
	for (const char *p = t; a && *p;) {
		size_t n = strcspn(p, ",");
		while (n && (p[n - 1] == ' '))
			n--;
		json_array_append_new(a, json_stringn(p, n));
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
		while (*p == ' ')
			p++;
	}
	return a;
}

/* The form fields of an upload as the JSON body's keys. */
static json_t *fields_spec(const struct api_upload *u, struct hr_err *err)
{
	json_t *f = api_upload_fields(u), *o = json_object(), *v;
	const char *key;
	const char *tname = NULL, *tlang = NULL;
	if (!o) {
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		return NULL;
	}
	json_object_foreach(f, key, v) {
		const char *t = json_string_value(v);
		int rc = 0;
		if (!strcmp(key, "template_name"))
			tname = t;
		else if (!strcmp(key, "template_language"))
			tlang = t;
		else if (!strcmp(key, "dry_run") || !strcmp(key, "start")) {
			bool yes = !strcmp(t, "true") || !strcmp(t, "1"),
			     no = !strcmp(t, "false") || !strcmp(t, "0");
			if (!strcmp(key, "start") && !strcmp(t, "auto"))
				rc = json_object_set_new(o, key, json_string("auto"));
			else if (yes || no)
				rc = json_object_set_new(o, key, json_boolean(yes));
			else {
				hr_fail(err, HR_EINVAL, key, "%s must be true or false", key);
				json_decref(o);
				return NULL;
			}
		} else if (!strcmp(key, "params") || !strcmp(key, "route")) {
			rc = json_object_set_new(o, key, form_list(t));
		} else if (!strcmp(key, "fallback_after_s") || !strcmp(key, "preview")) {
			char *end;
			errno = 0;
			long long n = strtoll(t, &end, 10);
			if (errno || end == t || *end) {
				hr_fail(err, HR_EINVAL, key, "%s must be a whole number%s", key,
				        strcmp(key, "preview") ? " of seconds" : " of rows");
				json_decref(o);
				return NULL;
			}
			rc = json_object_set_new(o, key, json_integer(n));
		} else if (!strcmp(key, "rows")) {
			hr_fail(err, HR_EINVAL, "rows", "send the rows in the file, not as a field");
			json_decref(o);
			return NULL;
		} else
			rc = json_object_set(o, key, v);
		if (rc) {
			hr_fail(err, HR_ENOMEM, NULL, "out of memory");
			json_decref(o);
			return NULL;
		}
	}
	if (tname || tlang)
		json_object_set_new(o, "template", json_pack("{s:s?, s:s?}", "name", tname, "language",
		                                             tlang));
	return o;
}

/* What the upload's thread found: an answer, or an error to answer with. */
struct post_job {
	struct api_req *r;
	json_t *root;
	int rc, status;
	json_t *out;
	struct hr_err err;
};

static void post_job_free(void *p)
{
	struct post_job *j = p;
	json_decref(j->root);
	json_decref(j->out);
	free(j);
}

/* The whole upload: rows read, checked, stored; runs on its own thread. */
static void post_run(struct post_job *job)
{
	struct api_req *r = job->r;
	struct api_server *s = r->srv;
	struct store *st = s->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	json_t *root = job->root;
	struct vctx *v = calloc(1, sizeof *v);
	struct rowsrc *rs = calloc(1, sizeof *rs);
	struct batch_item *items = calloc(BATCH_CHUNK, sizeof *items);
	struct put_behind put = {.st = st, .items = calloc(BATCH_CHUNK, sizeof *items)};
	struct upload up = {.errors = json_array()};
	struct batch b = {0};
	size_t nit = 0;
	bool created = false;
	int rc = v && rs && items && put.items && up.errors ? 0 : HR_ENOMEM;
	const char *key, *name = NULL, *unit = NULL;
	json_t *x;
	if (rc == 0)
		json_object_foreach(root, key, x) {
			bool known = false;
			for (const char *const *k = post_keys; *k && !known; k++)
				known = !strcmp(key, *k);
			if (!known) {
				char f[HR_NAME_MAX];
				rc = hr_fail(&err, HR_EINVAL, api_clip(f, sizeof f, key),
				             "unknown field '%s'", f);
				break;
			}
		}
	/* Who may read which source is settled before anything else is. */
	const char *qsql;
	if (rc == 0 && json_object_get(root, "source"))
		rc = src_query_check(r, root, &qsql, &err);
	if (rc == 0)
		rc = parse_spec(r, root, v, &name, &err);
	if (rc == 0) {
		bool oom;
		v->b.fallback = fallback_of(root, &oom);
		if (oom)
			rc = hr_fail(&err, HR_ENOMEM, NULL, "out of memory");
	}
	if (rc == 0)
		rc = need_string(root, "unit", HR_NAME_MAX - 1, &unit, false, &err);
	/* A unit's credential makes its own unit's campaigns only. */
	if (rc == 0 && r->who.unit[0]) {
		if (unit && strcmp(unit, r->who.unit) != 0)
			rc = hr_fail(&err, HR_EFORBIDDEN, "unit",
			             "this credential makes campaigns of unit '%s' only", r->who.unit);
		unit = r->who.unit;
	}
	if (rc == 0 && unit)
		hr_strlcpy(v->b.unit, unit, sizeof v->b.unit);
	if (rc == 0 && unit) {
		const struct plugin *pl = plugins_for_unit(s->o.plugins, r->tenant, unit);
		v->prep = plugin_has(pl, PH_PREPARE) ? pl : NULL;
	}
	/* The batch's own callback URL, checked now; its messages take it
	 * (the rows' requests carry it, row_request). */
	char *cb_url = NULL;
	if (rc == 0 && json_object_get(root, "callback_url"))
		rc = api_callback_url(s, r->tenant, json_object_get(root, "callback_url"),
		                      "callback_url", NULL, &cb_url, &err);
	json_t *jdry = json_object_get(root, "dry_run"), *jstart = json_object_get(root, "start");
	json_t *jsched = json_object_get(root, "schedule_at"), *rows = json_object_get(root, "rows");
	bool dry = json_is_true(jdry);
	/* A preview reads the first rows only and creates nothing. */
	json_t *jprev = json_object_get(root, "preview");
	int preview = 0;
	if (rc == 0 && jprev) {
		if (!json_is_integer(jprev) || json_integer_value(jprev) < 1 ||
		    json_integer_value(jprev) > PREVIEW_ROWS_MAX)
			rc = hr_fail(&err, HR_EINVAL, "preview",
			             "preview must be a number of rows from 1 to %d",
			             PREVIEW_ROWS_MAX);
		else
			preview = (int)json_integer_value(jprev);
		dry = true;
	}
	json_t *pout = NULL;
	int start = -1; /* auto */
	int64_t schedule_at = 0;
	if (rc == 0 && jdry && !json_is_boolean(jdry))
		rc = hr_fail(&err, HR_EINVAL, "dry_run", "dry_run must be true or false");
	if (rc == 0 && jstart) {
		if (json_is_boolean(jstart))
			start = json_is_true(jstart);
		else if (!json_is_string(jstart) || strcmp(json_string_value(jstart), "auto"))
			rc = hr_fail(&err, HR_EINVAL, "start", "start must be true, false or \"auto\"");
	}
	if (rc == 0 && jsched &&
	    (!json_is_string(jsched) || hr_time_parse(json_string_value(jsched), &schedule_at)))
		rc = hr_fail(&err, HR_EINVAL, "schedule_at",
		             "schedule_at must be an RFC 3339 time such as 2026-12-24T09:00:00Z");
	bool from_source = json_object_get(root, "source") != NULL;
	if (rc == 0 && from_source) {
		rc = src_open_query(rs, r, root, &err);
	} else if (rc == 0 &&
	           (json_object_get(root, "query") || json_object_get(root, "query_params"))) {
		rc = hr_fail(&err, HR_EINVAL, "source", "query and query_params go with a source");
	} else if (rc == 0 && r->upload) {
		rc = src_open_sheet(rs, r, root, &err);
	} else if (rc == 0) {
		if (!json_is_array(rows) || json_array_size(rows) == 0)
			rc = hr_fail(&err, HR_EINVAL, "rows", "rows must be a non-empty array of objects");
		else if (json_array_size(rows) > (size_t)s->o.max_batch_rows)
			rc = hr_fail(&err, HR_ELIMIT, "rows", "a batch holds at most %d rows (%zu given)",
			             s->o.max_batch_rows, json_array_size(rows));
		if (rc == 0)
			rc = json_headers(rows, rs->headers, &rs->nh, &err);
		/* The rows' shape first: a malformed row refuses the upload before
		 * anything is created. */
		for (size_t i = 0; rc == 0 && i < json_array_size(rows); i++)
			rc = json_row(json_array_get(rows, i), rs->headers, rs->nh, rs->vals, rs->nums, i,
			              &err);
		rs->rows = rows;
	}
	v->headers = rs->headers;
	v->nh = rs->nh;
	if (rc == 0 && !preview)
		rc = map_columns(v, root, &err);
	if (rc == 0)
		rc = load_suppressions(r, v);
	if (rc == 0 && preview)
		rc = preview_run(v, rs, root, preview, r->masked, &pout, &err);
	if (rc == 0 && !(v->est = pricing_estimate_new(s->o.pricing)))
		rc = hr_fail(&err, HR_ENOMEM, NULL, "out of memory");
	v->now = hr_now_us();

	/* The batch first (PENDING): rows go in as they are checked. */
	if (rc == 0 && !dry) {
		hr_id_new(b.id);
		hr_strlcpy(b.tenant_id, r->tenant, sizeof b.tenant_id);
		hr_strlcpy(b.unit, unit ? unit : "", sizeof b.unit);
		hr_strlcpy(b.name, name, sizeof b.name);
		hr_strlcpy(b.channel, v->b.acct->ops->name, sizeof b.channel);
		hr_strlcpy(b.account_id, v->b.acct->id, sizeof b.account_id);
		hr_strlcpy(b.template_name, v->b.tname, sizeof b.template_name);
		hr_strlcpy(b.language, v->b.lang, sizeof b.language);
		b.receipts = v->b.acct->ops->has_receipts;
		b.schedule_at = schedule_at;
		json_t *spec = json_pack("{s:i, s:s, s:s}", "nparams", v->b.nparams, "region",
		                         v->b.region, "source",
		                         from_source ? "query"
		                         : r->upload ? "file"
		                                     : "json");
		if (spec && from_source) {
			json_object_set(spec, "data_source", json_object_get(root, "source"));
			json_object_set(spec, "query", json_object_get(root, "query"));
		}
		if (spec && v->b.text)
			json_object_set_new(spec, "text", json_string(v->b.text));
		if (spec && cb_url)
			json_object_set_new(spec, "callback_url", json_string(cb_url));
		if (spec && v->b.policy[0])
			json_object_set_new(spec, "delivery_policy", json_string(v->b.policy));
		if (spec && v->b.doc_param)
			json_object_set_new(spec, "document_param", json_integer(v->b.doc_param));
		if (spec && v->b.doc_filename[0])
			json_object_set_new(spec, "document_filename",
			                    json_string(v->b.doc_filename));
		if (spec && v->b.fallback)
			json_object_update(spec, v->b.fallback);
		if (spec && r->upload)
			json_object_set_new(spec, "file", json_string(api_upload_filename(r->upload)));
		/* The columns the parameters came from, for the export's headers. */
		json_t *cols = spec ? json_array() : NULL;
		for (int i = 0; cols && i < v->b.nparams; i++)
			json_array_append_new(cols, json_string(v->headers[v->pcols[i]]));
		if (cols)
			json_object_set_new(spec, "param_columns", cols);
		b.spec = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
		json_decref(spec);
		rc = b.spec ? st->ops->batch_create(st, &b, &err) : HR_ENOMEM;
		created = rc == 0;
	}
	int64_t rowno = 0;
	int k;
	/* With the unit's plugin's prepare, rows go through it a call of many
	 * rows at a time (prep_next); without, one by one. */
	struct prep_queue *pq = NULL;
	if (rc == 0 && v->prep && !(pq = calloc(1, sizeof *pq)))
		rc = hr_fail(&err, HR_ENOMEM, NULL, "out of memory");
	while (rc == 0 && !preview) {
		if (pq) {
			if (pq->pos == pq->n) {
				if (pq->eof || (rc = prep_next(v, rs, pq, &err)) || pq->n == 0)
					break;
				continue;
			}
			items[nit] = pq->out[pq->pos++];
		} else {
			if ((k = src_next(rs, &rowno, &err)) <= 0) {
				rc = k;
				break;
			}
			if ((rc = validate_row(v, rowno, rs->vals, rs->nh, rs->bad, &items[nit]))) {
				if (rc == HR_EINVAL)
					err = v->fatal;
				break;
			}
		}
		upload_note(&up, &items[nit]);
		if (++nit == BATCH_CHUNK) {
			put.batch_id = b.id;
			if (!dry)
				rc = put_behind_start(&put, &items, nit, &err);
			else
				items_free(items, nit);
			nit = 0;
		}
	}
	{
		struct hr_err e2 = {0};
		int prc = put_behind_wait(&put, &e2);
		if (rc == 0 && prc) {
			rc = prc;
			err = e2;
		}
	}
	if (rc == 0 && nit && !dry)
		rc = st->ops->batch_items_put(st, b.id, items, nit, &err);
	items_free(items, nit);
	if (rc == 0 && up.total == 0 && !preview)
		rc = hr_fail(&err, HR_EINVAL,
		             from_source ? "query"
		             : r->upload ? "file"
		                         : "rows",
		             "there are no rows under the column names");
	if (rc == 0 && !dry)
		rc = st->ops->batch_set_status(st, r->tenant, b.id, BATCH_VALIDATED, NULL, &err);
	bool go = rc == 0 && !dry && (start == 1 || (start < 0 && up.invalid == 0));
	if (go && up.valid + up.duplicates == 0 && start < 0)
		go = false;
	bool kept = false;
	if (go && (rc = st->ops->batch_set_status(st, r->tenant, b.id, BATCH_PROCESSING, NULL,
	                                          &err)) == 0) {
		batch_runner_wake(s->runner);
	} else if (go && rc == HR_EQUOTA) {
		/* Refused by a tenant cap (README "Limits"): the upload itself is
		 * good, so it stays VALIDATED to be started when there is room,
		 * and the error says which campaign that is. */
		char msg[sizeof err.msg + 160];
		snprintf(msg, sizeof msg,
		         "%s; campaign %s is kept validated: start it with POST /v1/batches/%s/start",
		         err.msg, b.id, b.id);
		hr_utf8_copy(err.msg, msg, sizeof err.msg);
		kept = true;
	}
	/* An upload that failed half-way leaves nothing behind (no message is
	 * made before a start); if even that fails, the batch is marked failed
	 * with the reason rather than left pending. */
	if (rc != 0 && created && !kept) {
		struct hr_err e2 = {0};
		if (st->ops->batch_discard(st, r->tenant, b.id, &e2) != 0) {
			char why[300];
			snprintf(why, sizeof why, "upload failed: %s",
			         err.msg[0] ? err.msg : hr_code_name(rc));
			st->ops->batch_set_status(st, r->tenant, b.id, BATCH_FAILED, why, &e2);
		}
	}
	if (pq) {
		prep_queue_clear(pq);
		free(pq);
	}
	if (rs) {
		sheet_close(rs->sh);
		if (rs->qfd)
			close(rs->qfd - 1);
	}
	json_t *estimate =
	    rc == 0 && v
	        ? pricing_estimate_json(v->est, v->category_note[0] ? v->category_note : NULL)
	        : NULL;
	if (rc == 0 && !estimate)
		rc = hr_fail(&err, HR_ENOMEM, NULL, "out of memory");
	vctx_free(v);
	free(v);
	free(rs);
	free(items);
	free(put.items);
	free(cb_url);
	char id[HR_ID_LEN + 1];
	hr_strlcpy(id, b.id, sizeof id);
	batch_clear(&b);
	if (rc != 0 || preview) {
		json_decref(up.errors);
		json_decref(estimate);
		job->rc = rc;
		job->err = err;
		job->out = rc ? NULL : pout;
		if (rc)
			json_decref(pout);
		job->status = 200;
		return;
	}
	json_t *report = json_pack("{s:o, s:b, s:o}", "errors", up.errors, "errors_truncated",
	                           up.invalid > BATCH_ERRORS_INLINE, "estimate", estimate);
	if (dry) {
		json_t *j = json_pack("{s:b, s:{s:I, s:I, s:I, s:I}}", "dry_run", 1, "rows", "total",
		                      (json_int_t)up.total, "valid", (json_int_t)up.valid,
		                      "invalid", (json_int_t)up.invalid, "duplicates",
		                      (json_int_t)up.duplicates);
		if (j && report)
			json_object_update(j, report);
		json_decref(report);
		job->out = j;
		job->rc = j ? 0 : HR_ENOMEM;
		job->status = 200;
		return;
	}
	job->rc = batch_answer(r, id, report, &job->out);
	job->status = 201;
}

/*
 * Reading and checking a big file takes seconds (a million rows: tens of
 * them); a libmicrohttpd pool thread held that long would stall every
 * other connection it serves. So the upload runs on a thread of its own
 * while the request waits suspended, at most POST_WORKERS at a time (503
 * beyond: try again), and the handler answers when it is resumed.
 */
#define POST_WORKERS 2
static atomic_int post_running;

static void *post_worker(void *arg)
{
	struct post_job *j = arg;
	post_run(j);
	atomic_fetch_sub(&post_running, 1);
	api_async_end(j->r);
	return NULL;
}

enum MHD_Result api_batches_post(struct api_req *r)
{
	if (r->stage == 1) {
		struct post_job *j = r->priv;
		if (j->rc)
			return api_fail(r, j->rc, &j->err);
		json_t *out = j->out;
		j->out = NULL;
		return api_respond_json(r, j->status, out, NULL);
	}
	struct hr_err err;
	hr_err_clear(&err);
	enum MHD_Result ret;
	json_t *root = r->upload ? fields_spec(r->upload, &err) : api_body_object(r, &ret);
	if (!root)
		return r->upload ? api_fail(r, err.code, &err) : ret;
	struct post_job *j = calloc(1, sizeof *j);
	if (!j) {
		json_decref(root);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	j->r = r;
	j->root = root;
	r->priv = j;
	r->priv_free = post_job_free;
	if (atomic_fetch_add(&post_running, 1) >= POST_WORKERS) {
		atomic_fetch_sub(&post_running, 1);
		hr_fail(&err, HR_EBUSY, NULL, "%d uploads are being read: try again shortly",
		        POST_WORKERS);
		return api_fail(r, HR_EBUSY, &err);
	}
	if (api_async_begin(r) != 0) {
		atomic_fetch_sub(&post_running, 1);
		return api_fail(r, HR_EBUSY, NULL);
	}
	r->stage = 1;
	pthread_t th;
	pthread_attr_t at;
	bool started = pthread_attr_init(&at) == 0 &&
	               pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0 &&
	               pthread_create(&th, &at, post_worker, j) == 0;
	pthread_attr_destroy(&at);
	if (!started) {
		atomic_fetch_sub(&post_running, 1);
		j->rc = hr_fail(&j->err, HR_EBUSY, NULL, "cannot start reading the upload: try again");
		api_async_end(r); /* answered at stage 1 */
	}
	return MHD_YES;
}

/* ---------------------------------------------------------------------------
 * Reading, starting, cancelling.
 * ------------------------------------------------------------------------- */

enum MHD_Result api_batch_get(struct api_req *r)
{
	return respond_batch(r, 200, r->path_id, NULL);
}

static const char *qarg(struct api_req *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

enum MHD_Result api_batches_list(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const allowed[] = {"status", "unit", "name", "since", "until",
	                                      "limit", "cursor", NULL};
	int rc = api_query_check(r, allowed, &err);
	struct batch_filter f = {.status = -1, .limit = 50};
	const char *v;
	if (rc == 0 && (v = qarg(r, "status"))) {
		enum batch_status bs;
		char c[32];
		if (batch_status_parse(v, &bs))
			rc = hr_fail(&err, HR_EINVAL, "status", "unknown batch status '%s'",
			             api_clip(c, sizeof c, v));
		f.status = (int)bs;
	}
	f.unit = qarg(r, "unit");
	if (r->who.unit[0]) /* a unit's credential lists its own unit's only */
		f.unit = r->who.unit;
	f.name_like = qarg(r, "name");
	f.before_id = qarg(r, "cursor");
	if (rc == 0 && (v = qarg(r, "since")) && hr_time_parse(v, &f.since_us))
		rc = hr_fail(&err, HR_EINVAL, "since", "since must be an RFC 3339 time");
	if (rc == 0 && (v = qarg(r, "until")) && hr_time_parse(v, &f.until_us))
		rc = hr_fail(&err, HR_EINVAL, "until", "until must be an RFC 3339 time");
	if (rc == 0 && (v = qarg(r, "limit"))) {
		char *end;
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 1000)
			rc = hr_fail(&err, HR_EINVAL, "limit", "limit must be 1 to 1000");
		f.limit = (int)n;
	}
	if (rc)
		return api_fail(r, rc, &err);
	struct batch *list;
	size_t n;
	bool more;
	if ((rc = st->ops->batch_list(st, r->tenant, &f, &list, &n, &more)))
		return api_fail(r, rc, NULL);
	json_t *data = json_array();
	for (size_t i = 0; i < n; i++) {
		if (data && json_array_append_new(data, api_batch_json(&list[i])) != 0) {
			json_decref(data);
			data = NULL;
		}
		batch_clear(&list[i]);
	}
	json_t *next = more && n ? json_string(list[n - 1].id) : json_null();
	free(list);
	if (!data) {
		json_decref(next);
		return api_fail(r, HR_ENOMEM, NULL);
	}
	return api_respond_json(r, 200, json_pack("{s:o, s:o}", "data", data, "next_cursor", next),
	                        NULL);
}

enum MHD_Result api_batch_start(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	if (!r->srv->runner) {
		hr_fail(&err, HR_EINVAL, "", "this server does not send: start the batch on one that does");
		return api_fail(r, HR_EINVAL, &err);
	}
	/* A paused batch goes on with /resume (recorded with who and when),
	 * never with a second start. */
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc)
		return api_fail(r, rc, NULL);
	bool paused = b.status == BATCH_PAUSED;
	batch_clear(&b);
	if (paused) {
		hr_fail(&err, HR_EINVAL, "status",
		        "the batch is paused: resume it with POST /v1/batches/%s/resume",
		        r->path_id);
		return api_fail(r, HR_EINVAL, &err);
	}
	rc = st->ops->batch_set_status(st, r->tenant, r->path_id, BATCH_PROCESSING, NULL, &err);
	if (rc)
		return api_fail(r, rc, &err);
	batch_runner_wake(r->srv->runner);
	return respond_batch(r, 200, r->path_id, NULL);
}

#define REASON_MAX_BYTES 200 /* a pause's or cancel's reason */

/*
 * The body of a pause or a cancel: {"reason": "..."}, 1..200 bytes of text
 * without control characters (it is shown in the dashboard and the audit
 * log). An empty body is no reason: refused when required (a pause),
 * accepted otherwise (a cancel, as before reasons existed). 0, or an error
 * already answered (*ret) or to answer (err).
 */
static int reason_body(struct api_req *r, bool required, char out[REASON_MAX_BYTES + 1],
                       enum MHD_Result *ret, bool *answered, struct hr_err *err)
{
	out[0] = '\0';
	*answered = false;
	if (!r->len)
		return required ? hr_fail(err, HR_EINVAL, "reason",
		                          "reason is required: say why (1 to %d bytes)",
		                          REASON_MAX_BYTES)
		                : 0;
	json_t *root = api_body_object(r, ret);
	if (!root) {
		*answered = true;
		return HR_EINVAL;
	}
	int rc = 0;
	const char *key;
	json_t *x;
	json_object_foreach(root, key, x)
	{
		if (strcmp(key, "reason") != 0) {
			char f[HR_NAME_MAX];
			rc = hr_fail(err, HR_EINVAL, api_clip(f, sizeof f, key),
			             "unknown field '%s'", f);
			break;
		}
	}
	json_t *v = json_object_get(root, "reason");
	if (rc == 0 && !v && required)
		rc = hr_fail(err, HR_EINVAL, "reason",
		             "reason is required: say why (1 to %d bytes)", REASON_MAX_BYTES);
	if (rc == 0 && v) {
		const char *t = json_string_value(v);
		size_t len = t ? json_string_length(v) : 0;
		bool ctrl = false;
		for (size_t k = 0; t && k < len; k++)
			ctrl |= (unsigned char)t[k] < 0x20 || t[k] == 0x7f;
		if (!t || len == 0 || len > REASON_MAX_BYTES || ctrl)
			rc = hr_fail(
			    err, HR_EINVAL, "reason",
			    "reason must be text of 1 to %d bytes without control characters",
			    REASON_MAX_BYTES);
		else
			memcpy(out, t, len + 1);
	}
	json_decref(root);
	return rc;
}

/* The tenant's batch exists (0), or the error to answer: checked before a
 * body is read, so another tenant's campaign is a 404 whatever was sent. */
static int batch_visible(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc == 0)
		batch_clear(&b);
	return rc;
}

/*
 * A person's transition of a batch (cancel, pause, resume) with its audit
 * row and reason in the store's one transaction. from_paused: only a
 * PAUSED batch may take it (a resume; otherwise /resume would start a
 * validated one). The batch as it was is in *was.
 */
static int person_transition(struct api_req *r, enum batch_status to, const char *action,
                             const char *reason, bool from_paused, struct hr_err *err)
{
	struct store *st = r->srv->o.store;
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc)
		return hr_fail(err, rc, "batch_id", "no batch %s", r->path_id);
	if (from_paused && b.status != BATCH_PAUSED) {
		rc = hr_fail(err, HR_EINVAL, "status",
		             "only a paused batch can be resumed (it is %s)",
		             batch_status_name(b.status));
		batch_clear(&b);
		return rc;
	}
	char obj[96];
	snprintf(obj, sizeof obj, "batch:%s", b.id);
	struct audit_row au;
	rc = api_audit_json(
	    r, r->tenant, action, obj, json_pack("{s:s}", "status", batch_status_name(b.status)),
	    json_pack("{s:s, s:s?, s:s?}", "status", batch_status_name(to), "unit",
	              b.unit[0] ? b.unit : NULL, "reason", reason[0] ? reason : NULL),
	    &au);
	batch_clear(&b);
	if (rc)
		return hr_fail(err, rc, NULL, "out of memory");
	rc = st->ops->batch_set_status_audit(st, r->tenant, r->path_id, to,
	                                     reason[0] ? reason : NULL, &au, err);
	api_audit_done(&au);
	if (rc == 0 && r->srv->runner)
		batch_runner_wake(r->srv->runner);
	return rc;
}

/* A person's move of a visible batch with its {"reason"} (required or
 * optional): false when made; otherwise true, and *ret is the answer given. */
static bool reasoned_transition(struct api_req *r, enum batch_status to, const char *action,
                                bool need_reason, enum MHD_Result *ret)
{
	struct hr_err err;
	hr_err_clear(&err);
	char reason[REASON_MAX_BYTES + 1];
	bool answered;
	int rc = batch_visible(r);
	if (rc) {
		*ret = api_fail(r, rc, NULL);
		return true;
	}
	rc = reason_body(r, need_reason, reason, ret, &answered, &err);
	if (answered)
		return true;
	if (rc == 0)
		rc = person_transition(r, to, action, reason, false, &err);
	if (rc)
		*ret = api_fail(r, rc, &err);
	return rc != 0;
}

/*
 * Stops the batch and answers how many messages it stopped: those queued
 * when the cancel committed and the valid rows not yet made into messages
 * (none of them will be sent: the runner cancels the queued ones, and a
 * claim of one cancels it instead of sending). What is in flight finishes.
 * An optional {"reason"} is recorded with who cancelled.
 */
enum MHD_Result api_batch_cancel(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	enum MHD_Result ret;
	if (reasoned_transition(r, BATCH_CANCELLED, "batch.cancel", false, &ret))
		return ret;
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc)
		return api_fail(r, rc, NULL);
	int64_t made = 0;
	for (int i = 0; i < MSG__COUNT; i++)
		made += b.by_status[i];
	int64_t stopped = b.by_status[MSG_QUEUED] + b.by_status[MSG_CANCELLED] +
	                  (b.valid > made ? b.valid - made : 0);
	batch_clear(&b);
	return respond_batch(r, 200, r->path_id,
	                     json_pack("{s:I}", "stopped", (json_int_t)stopped));
}

/*
 * POST /v1/batches/{id}/pause {"reason": "..."}: a PROCESSING batch stops
 * sending. Its queued messages are held in the pause's transaction (they
 * stay queued and counted so), its rows not yet made wait; what is in
 * flight finishes. Answers the batch.
 */
enum MHD_Result api_batch_pause(struct api_req *r)
{
	enum MHD_Result ret;
	if (reasoned_transition(r, BATCH_PAUSED, "batch.pause", true, &ret))
		return ret;
	return respond_batch(r, 200, r->path_id, NULL);
}

/* POST /v1/batches/{id}/resume: a PAUSED batch sends again (its held
 * messages back in the queue with the due times they had). */
enum MHD_Result api_batch_resume(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	int rc = batch_visible(r);
	if (rc)
		return api_fail(r, rc, NULL);
	if (r->len) {
		hr_fail(&err, HR_EINVAL, "body", "resume takes no body");
		return api_fail(r, HR_EINVAL, &err);
	}
	if (!r->srv->runner) {
		hr_fail(&err, HR_EINVAL, "",
		        "this server does not send: resume the batch on one that does");
		return api_fail(r, HR_EINVAL, &err);
	}
	rc = person_transition(r, BATCH_PROCESSING, "batch.resume", "", true, &err);
	return rc ? api_fail(r, rc, &err) : respond_batch(r, 200, r->path_id, NULL);
}

/* The validation report: invalid rows in row order, as JSON pages or a CSV
 * download (format=csv, every invalid row). */
enum MHD_Result api_batch_errors(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const allowed[] = {"after", "limit", "format", NULL};
	int rc = api_query_check(r, allowed, &err);
	const char *fmt = qarg(r, "format"), *v;
	bool csv = fmt && !strcmp(fmt, "csv");
	int64_t after = 0;
	int limit = csv ? 100000 : 100;
	if (rc == 0 && fmt && !csv && strcmp(fmt, "json"))
		rc = hr_fail(&err, HR_EINVAL, "format", "format must be json or csv");
	if (rc == 0 && (v = qarg(r, "after"))) {
		char *end;
		after = strtoll(v, &end, 10);
		if (*end || after < 0)
			rc = hr_fail(&err, HR_EINVAL, "after", "after must be a row number");
	}
	if (rc == 0 && !csv && (v = qarg(r, "limit"))) {
		char *end;
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 1000)
			rc = hr_fail(&err, HR_EINVAL, "limit", "limit must be 1 to 1000");
		limit = (int)n;
	}
	struct batch b;
	if (rc == 0 && (rc = st->ops->batch_get(st, r->tenant, r->path_id, &b)) == 0)
		batch_clear(&b);
	if (rc)
		return api_fail(r, rc, &err);
	struct batch_item *items;
	size_t n;
	if ((rc = st->ops->batch_items(st, r->path_id, BATCH_ITEMS_INVALID, after, limit, &items,
	                               &n)))
		return api_fail(r, rc, NULL);
	enum MHD_Result ret;
	if (csv) {
		struct hr_buf out = {0};
		hr_buf_printf(&out, "row,column,recipient,reason\r\n");
		for (size_t i = 0; i < n; i++) {
			const char *f[3] = {items[i].error_column, items[i].recipient, items[i].error};
			hr_buf_printf(&out, "%lld", (long long)items[i].row);
			for (int k = 0; k < 3; k++) { /* RFC 4180: quoted, quotes doubled */
				hr_buf_put(&out, ",\"", 2);
				for (const char *p = f[k]; *p; p++) {
					hr_buf_put(&out, p, 1);
					if (*p == '"')
						hr_buf_put(&out, "\"", 1);
				}
				hr_buf_put(&out, "\"", 1);
			}
			hr_buf_put(&out, "\r\n", 2);
		}
		static const char *const hdr[] = {"Content-Disposition",
		                                  "attachment; filename=\"errors.csv\"", NULL};
		ret = out.oom ? api_fail(r, HR_ENOMEM, NULL)
		              : api_respond(r, 200, out.p, out.len, "text/csv; charset=utf-8", hdr);
		if (out.oom)
			free(out.p);
	} else {
		json_t *data = json_array();
		for (size_t i = 0; data && i < n; i++)
			if (json_array_append_new(
			        data, json_pack("{s:I, s:s, s:s, s:s}", "row", (json_int_t)items[i].row,
			                        "column", items[i].error_column, "recipient",
			                        items[i].recipient, "reason", items[i].error)) != 0) {
				json_decref(data);
				data = NULL;
			}
		json_t *next = data && n == (size_t)limit ? json_integer(items[n - 1].row) : json_null();
		ret = data ? api_respond_json(r, 200,
		                              json_pack("{s:o, s:o}", "data", data, "next_after", next),
		                              NULL)
		           : api_fail(r, HR_ENOMEM, NULL);
	}
	for (size_t i = 0; i < n; i++)
		batch_item_clear(&items[i]);
	free(items);
	return ret;
}

/*
 * POST /v1/batches/{id}/retry {"statuses": ["failed", ...], "start": true}:
 * a new batch of exactly the rows whose message ended in one of the
 * statuses (default: failed), linked both ways (retry_of; the old one lists
 * it under retries), with the same content, account and schedule, started
 * at once unless start is false.
 */
enum MHD_Result api_batch_retry(struct api_req *r)
{
	struct api_server *s = r->srv;
	struct store *st = s->o.store;
	enum MHD_Result ret;
	json_t *root = r->len ? api_body_object(r, &ret) : json_object();
	if (!root)
		return r->len ? ret : api_fail(r, HR_ENOMEM, NULL);
	struct hr_err err;
	hr_err_clear(&err);
	int rc = 0;
	const char *key;
	json_t *x;
	json_object_foreach(root, key, x) {
		if (strcmp(key, "statuses") && strcmp(key, "start")) {
			char f[HR_NAME_MAX];
			rc = hr_fail(&err, HR_EINVAL, api_clip(f, sizeof f, key), "unknown field '%s'", f);
			break;
		}
	}
	unsigned mask = 1u << MSG_FAILED;
	json_t *js = json_object_get(root, "statuses"), *jstart = json_object_get(root, "start");
	if (rc == 0 && js) {
		mask = 0;
		size_t i;
		json_t *e;
		if (!json_is_array(js) || json_array_size(js) == 0)
			rc = hr_fail(&err, HR_EINVAL, "statuses",
			             "statuses must be a non-empty array of message statuses");
		json_array_foreach(js, i, e) {
			enum msg_status ms;
			if (rc == 0 && msg_status_parse(json_string_value(e), &ms) != 0) {
				char f[32];
				snprintf(f, sizeof f, "statuses[%zu]", i);
				rc = hr_fail(&err, HR_EINVAL, f, "%s is not a message status", f);
			}
			if (rc == 0)
				mask |= 1u << ms;
		}
	}
	if (rc == 0 && jstart && !json_is_boolean(jstart))
		rc = hr_fail(&err, HR_EINVAL, "start", "start must be true or false");
	bool start = !jstart || json_is_true(jstart);
	json_decref(root);
	struct batch old = {0}, nb = {0};
	if (rc == 0)
		rc = st->ops->batch_get(st, r->tenant, r->path_id, &old);
	if (rc)
		return api_fail(r, rc, &err);
	nb = old;
	nb.spec = old.spec; /* borrowed: the same content and options */
	hr_id_new(nb.id);
	snprintf(nb.name, sizeof nb.name, "%.*s (retry)", (int)sizeof nb.name - 10, old.name);
	hr_strlcpy(nb.retry_of, old.id, sizeof nb.retry_of);
	nb.created_at = 0;
	rc = st->ops->batch_create(st, &nb, &err);
	int64_t after = 0, total = 0;
	while (rc == 0) {
		struct batch_item *items;
		size_t n;
		if ((rc = st->ops->batch_items_by_status(st, old.id, mask, after, BATCH_CHUNK, &items,
		                                         &n)))
			break;
		if (n)
			rc = st->ops->batch_items_put(st, nb.id, items, n, &err);
		after = n ? items[n - 1].row : after;
		total += (int64_t)n;
		for (size_t i = 0; i < n; i++)
			batch_item_clear(&items[i]);
		free(items);
		if (n < BATCH_CHUNK)
			break;
	}
	if (rc == 0 && total == 0)
		rc = hr_fail(&err, HR_EINVAL, "statuses",
		             "no message of batch %s has one of those statuses", old.id);
	if (rc == 0)
		rc = st->ops->batch_set_status(st, r->tenant, nb.id, BATCH_VALIDATED, NULL, &err);
	if (rc == 0 && start &&
	    (rc = st->ops->batch_set_status(st, r->tenant, nb.id, BATCH_PROCESSING, NULL, &err)) == 0)
		batch_runner_wake(s->runner);
	char id[HR_ID_LEN + 1];
	hr_strlcpy(id, nb.id, sizeof id);
	if (rc) {
		struct hr_err e2 = {0};
		st->ops->batch_discard(st, r->tenant, id, &e2);
	}
	batch_clear(&old);
	if (rc)
		return api_fail(r, rc, &err);
	return respond_batch(r, 201, id, NULL);
}

/* Discards a batch that sent nothing (a report not wanted): 204. */
enum MHD_Result api_batch_delete(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	int rc = st->ops->batch_discard(st, r->tenant, r->path_id, &err);
	if (rc)
		return api_fail(r, rc, &err);
	return api_respond(r, 204, NULL, 0, NULL, NULL);
}

enum MHD_Result api_batch_messages(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct batch b;
	int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
	if (rc)
		return api_fail(r, rc, NULL);
	batch_clear(&b);
	return api_messages_list_in(r, r->path_id);
}

#define BREAKDOWN_SAMPLE 10000 /* failed messages, and latest replies, read at most */

/*
 * GET /v1/batches/{id}/breakdown: the campaign detail's failures by
 * provider error code and its replies by kind and button payload, each
 * from a bounded read (store.h, batch_breakdown: at most 10,000 failed
 * messages, among the store's latest 10,000 replies), beside the exact
 * totals the counters keep; "sampled" says when a list is from part of
 * them.
 */
enum MHD_Result api_batch_breakdown(struct api_req *r)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	static const char *const allowed[] = {NULL};
	int rc = api_query_check(r, allowed, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct batch b;
	if ((rc = st->ops->batch_get(st, r->tenant, r->path_id, &b)))
		return api_fail(r, rc, NULL);
	int64_t failed = b.by_status[MSG_FAILED] + b.by_status[MSG_UNDELIVERED];
	int64_t replied = b.replied;
	batch_clear(&b);
	struct batch_tally *fl = NULL, *rp = NULL;
	size_t nf = 0, nr = 0;
	int64_t fs = 0, rs = 0;
	if ((rc = st->ops->batch_breakdown(st, r->path_id, BREAKDOWN_SAMPLE, &fl, &nf, &fs, &rp,
	                                   &nr, &rs)))
		return api_fail(r, rc, NULL);
	json_t *codes = json_array(), *kinds = json_array();
	for (size_t i = 0; codes && i < nf; i++)
		json_array_append_new(codes,
		                      json_pack("{s:s, s:s, s:I}", "code", fl[i].key, "text",
		                                fl[i].detail, "count", (json_int_t)fl[i].count));
	for (size_t i = 0; kinds && i < nr; i++)
		json_array_append_new(
		    kinds, json_pack("{s:s, s:o, s:I}", "kind", rp[i].key, "payload",
		                     rp[i].detail[0] ? json_string(rp[i].detail) : json_null(),
		                     "count", (json_int_t)rp[i].count));
	free(fl);
	free(rp);
	json_t *j = codes && kinds ? json_pack("{s:{s:I, s:I, s:b, s:O}, s:{s:I, s:I, s:i, s:O}}",
	                                       "failures", "total", (json_int_t)failed, "counted",
	                                       (json_int_t)fs, "sampled", fs < failed, "by_code",
	                                       codes, "replies", "replied_messages",
	                                       (json_int_t)replied, "counted", (json_int_t)rs,
	                                       "latest_replies_read", BREAKDOWN_SAMPLE, "by", kinds)
	                           : NULL;
	json_decref(codes);
	json_decref(kinds);
	return j ? api_respond_json(r, 200, j, NULL) : api_fail(r, HR_ENOMEM, NULL);
}

/* ---------------------------------------------------------------------------
 * For the runner: a batch's messages from its stored rows.
 * ------------------------------------------------------------------------- */

int api_batch_messages_of(const struct api_server *s, const struct batch *bt,
                          const struct batch_item *items, size_t n, struct message *out,
                          int64_t *rows, struct hr_err *err)
{
	struct bspec b;
	int rc = bspec_of(s, bt, &b, err);
	int64_t now = hr_now_us();
	int64_t due = bt->schedule_at > now ? bt->schedule_at : now;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_t *pj = items[i].params ? json_loads(items[i].params, 0, NULL) : json_array();
		const char *params[BATCH_COLS_MAX];
		size_t np = json_array_size(pj);
		/* A row its unit's plugin sent its own way carries that after
		 * its parameters (validate_row_as). */
		json_t *ovr = np > 0 ? json_array_get(pj, np - 1) : NULL;
		if (json_is_object(ovr))
			np--;
		else
			ovr = NULL;
		if (!pj || np != (size_t)b.nparams || np > BATCH_COLS_MAX) {
			json_decref(pj);
			rc = hr_fail(err, HR_EINTERNAL, "params", "row %lld: stored parameters unreadable",
			             (long long)items[i].row);
			break;
		}
		for (size_t k = 0; k < np; k++)
			params[k] = json_string_value(json_array_get(pj, k));
		rc = row_message(&b, bt->id, items[i].recipient, params, ovr, now, &out[i], err);
		json_decref(pj);
		if (rc) {
			char why[sizeof err->msg];
			hr_strlcpy(why, err->msg, sizeof why);
			hr_fail(err, rc, "row", "row %lld: %s", (long long)items[i].row, why);
			break;
		}
		out[i].due_at = due;
		rows[i] = items[i].row;
	}
	bspec_free(&b);
	return rc;
}
