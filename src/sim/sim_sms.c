/*
 * sim_sms.c - the simulator's Twilio side: accounts and knobs from the
 * config, the Messages REST API as Twilio answers it, the /sim/sms/...
 * control endpoints, and the plan of callbacks each accepted message gets
 * (sim_sms_post.c posts them). See sim_sms.h for the surface.
 *
 * Request threads only compute and queue: the form is parsed with MHD's
 * post processor, the fate of a send is drawn from a per-request random
 * stream (seed, digest of the send, how often it was sent), and the lock is
 * held for table updates only.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/config.h"
#include "core/crypto.h"
#include "core/segments.h"
#include "sim/sim_knobtab.h"
#include "sim/sim_sms.h"

#define SMS_API "/2010-04-01/Accounts/"
#define SMS_BODY_MAX 1600
#define SMS_VALIDITY_MAX 36000
#define SMS_DEFAULT_SENDER "+15005550006"
#define SMS_ERR_INFO "https://www.twilio.com/docs/errors/"

/* ---------------------------------------------------------------------------
 * Knobs: immutable, refcounted snapshots (like sim_knobs.c's).
 * ------------------------------------------------------------------------- */

struct sms_override {
	char digits[HR_ADDR_MAX];
	int error, undelivered, failed; /* Twilio codes, 0 if not set */
	char *reply;
	bool lose_receipts; /* delivered/undelivered recorded, never posted */
};

struct sms_knobs {
	atomic_int refs;
	double latency_ms, latency_jitter_ms, rate_429, rate_5xx, fail_rate;
	double queued_delay_ms, sent_delay_ms, delivered_delay_ms, reply_delay_ms;
	double dup_rate, reorder_rate, webhook_retry_s, keep_messages;
	bool advanced_opt_out;
	bool has_seed;
	uint64_t seed;
	struct sms_override *over;
	size_t nover;
};

static void knobs_unref(struct sms_knobs *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	for (size_t i = 0; i < k->nover; i++)
		free(k->over[i].reply);
	free(k->over);
	free(k);
}

static struct sms_knobs *knobs_get(struct sim_sms *ss)
{
	pthread_mutex_lock(&ss->lock);
	struct sms_knobs *k = ss->knobs;
	atomic_fetch_add(&k->refs, 1);
	pthread_mutex_unlock(&ss->lock);
	return k;
}

/* clang-format off */
#define KN(f, lo, hi) {#f, offsetof(struct sms_knobs, f), lo, hi}
/* clang-format on */
static const struct sim_knob_num knob_nums[] = {
    KN(latency_ms, 0, 600000),
    KN(latency_jitter_ms, 0, 600000),
    KN(rate_429, 0, 1),
    KN(rate_5xx, 0, 1),
    KN(fail_rate, 0, 1),
    KN(queued_delay_ms, 0, 86400000),
    KN(sent_delay_ms, 0, 86400000),
    KN(delivered_delay_ms, 0, 86400000),
    KN(reply_delay_ms, 0, 86400000),
    KN(dup_rate, 0, 1),
    KN(reorder_rate, 0, 1),
    KN(webhook_retry_s, 0, 7 * 86400),
    KN(keep_messages, 1, 10000000),
};
#undef KN

static struct sms_knobs *knobs_default(void)
{
	struct sms_knobs *k = calloc(1, sizeof *k);
	if (!k)
		return NULL;
	atomic_init(&k->refs, 1);
	k->queued_delay_ms = 5;
	k->sent_delay_ms = 10;
	k->delivered_delay_ms = 50;
	k->reply_delay_ms = 20;
	k->webhook_retry_s = 60;
	k->keep_messages = 20000; /* about 2 KB each */
	return k;
}

static void digits_of(const char *in, char *out, size_t n)
{
	size_t k = 0;
	for (; in && *in && k + 1 < n; in++)
		if (*in >= '0' && *in <= '9')
			out[k++] = *in;
	out[k] = '\0';
}

/* A Twilio error code given in the config: five digits. */
static bool as_code(json_t *v, int *out)
{
	double d;
	if (!sim_as_number(v, &d) || d != (int)d || d < 10000 || d > 99999)
		return false;
	*out = (int)d;
	return true;
}

/* One recipients.<addr> entry. */
static int parse_override(const char *addr, json_t *o, const char *field, struct sms_override *ov,
                          struct hr_err *err)
{
	char f[160];
	memset(ov, 0, sizeof *ov);
	digits_of(addr, ov->digits, sizeof ov->digits);
	if (strlen(ov->digits) < 5)
		return hr_fail(err, HR_EINVAL, field, "%s.%s: not a phone number", field, addr);
	if (!json_is_object(o))
		return hr_fail(err, HR_EINVAL, field, "%s.%s must be an object", field, addr);
	const char *key;
	json_t *v;
	int kinds = 0;
	json_object_foreach(o, key, v)
	{
		snprintf(f, sizeof f, "%s.%s.%s", field, addr, key);
		int *code = strcmp(key, "error") == 0         ? &ov->error
		            : strcmp(key, "undelivered") == 0 ? &ov->undelivered
		            : strcmp(key, "failed") == 0      ? &ov->failed
		                                              : NULL;
		if (code) {
			kinds++;
			if (!as_code(v, code))
				return hr_fail(err, HR_EINVAL, f, "%s must be a Twilio error code",
				               f);
		} else if (strcmp(key, "lose_receipts") == 0) {
			if (!json_is_boolean(v))
				return hr_fail(err, HR_EINVAL, f, "%s must be true or false", f);
			ov->lose_receipts = json_is_true(v);
		} else if (strcmp(key, "reply") == 0) {
			const char *r = json_string_value(v);
			if (!r || !*r || strlen(r) > SMS_BODY_MAX * 4)
				return hr_fail(err, HR_EINVAL, f, "%s must be a non-empty string",
				               f);
			free(ov->reply);
			if (!(ov->reply = strdup(r)))
				return hr_fail(err, HR_ENOMEM, f, "out of memory");
		} else {
			return hr_fail(err, HR_EINVAL, f,
			               "%s is not known (error, undelivered, failed, reply, "
			               "lose_receipts)",
			               f);
		}
	}
	if (kinds > 1)
		return hr_fail(err, HR_EINVAL, field,
		               "%s.%s: give at most one of error, undelivered and failed", field,
		               addr);
	return 0;
}

static int set_overrides(struct sms_knobs *k, json_t *v, const char *field, struct hr_err *err)
{
	if (!json_is_object(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be an object of phone numbers",
		               field);
	for (size_t i = 0; i < k->nover; i++)
		free(k->over[i].reply);
	free(k->over);
	k->over = NULL;
	k->nover = 0;
	size_t n = json_object_size(v);
	if (!(k->over = calloc(n ? n : 1, sizeof *k->over)))
		return hr_fail(err, HR_ENOMEM, field, "out of memory");
	const char *addr;
	json_t *o;
	json_object_foreach(v, addr, o)
	{
		int rc = parse_override(addr, o, field, &k->over[k->nover], err);
		if (rc) {
			free(k->over[k->nover].reply);
			return rc;
		}
		k->nover++;
	}
	return 0;
}

/* A copy of base with obj's keys applied; errors name "<prefix><key>". */
static int knobs_apply(const struct sms_knobs *base, json_t *obj, const char *prefix,
                       struct sms_knobs **out, struct hr_err *err)
{
	*out = NULL;
	if (obj && !json_is_null(obj) && !json_is_object(obj))
		return hr_fail(err, HR_EINVAL, prefix, "%s must be an object", prefix);
	struct sms_knobs *k = malloc(sizeof *k);
	if (!k)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	memcpy(k, base, sizeof *k);
	atomic_init(&k->refs, 1);
	k->over = base->nover ? calloc(base->nover, sizeof *k->over) : NULL;
	k->nover = 0;
	int rc = 0;
	for (size_t i = 0; i < base->nover && k->over; i++) {
		k->over[i] = base->over[i];
		k->over[i].reply = base->over[i].reply ? strdup(base->over[i].reply) : NULL;
		k->nover++;
		if (base->over[i].reply && !k->over[i].reply)
			rc = HR_ENOMEM;
	}
	if (rc || (base->nover && !k->over)) {
		knobs_unref(k);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		char field[96];
		snprintf(field, sizeof field, "%s%s", prefix, key);
		const struct sim_knob_num *kn =
		    sim_knob_num_find(knob_nums, sizeof knob_nums / sizeof knob_nums[0], key);
		if (kn) {
			if ((rc = sim_knob_num_set(kn, k, v, field, err)))
				break;
		} else if (strcmp(key, "advanced_opt_out") == 0) {
			if (!json_is_boolean(v)) {
				rc = hr_fail(err, HR_EINVAL, field, "%s must be true or false",
				             field);
				break;
			}
			k->advanced_opt_out = json_is_true(v);
		} else if (strcmp(key, "seed") == 0) {
			if ((rc = sim_knob_seed(v, field, &k->has_seed, &k->seed, err)))
				break;
		} else if (strcmp(key, "recipients") == 0) {
			if ((rc = set_overrides(k, v, field, err)))
				break;
		} else {
			rc = hr_fail(err, HR_EINVAL, field, "%s is not a known knob", field);
			break;
		}
	}
	if (rc) {
		knobs_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

static json_t *knobs_json(const struct sms_knobs *k)
{
	json_t *o = json_object();
	sim_knob_nums_json(o, knob_nums, sizeof knob_nums / sizeof knob_nums[0], k);
	json_object_set_new(o, "advanced_opt_out", json_boolean(k->advanced_opt_out));
	json_object_set_new(o, "seed",
	                    k->has_seed ? json_integer((json_int_t)k->seed) : json_null());
	json_t *r = json_object();
	for (size_t i = 0; i < k->nover; i++) {
		const struct sms_override *ov = &k->over[i];
		json_t *e = json_object();
		if (ov->error)
			json_object_set_new(e, "error", json_integer(ov->error));
		if (ov->undelivered)
			json_object_set_new(e, "undelivered", json_integer(ov->undelivered));
		if (ov->failed)
			json_object_set_new(e, "failed", json_integer(ov->failed));
		if (ov->reply)
			json_object_set_new(e, "reply", json_string(ov->reply));
		if (ov->lose_receipts)
			json_object_set_new(e, "lose_receipts", json_true());
		char key[HR_ADDR_MAX + 1];
		snprintf(key, sizeof key, "+%s", ov->digits);
		json_object_set_new(r, key, e);
	}
	json_object_set_new(o, "recipients", r);
	return o;
}

static const struct sms_override *knobs_override(const struct sms_knobs *k, const char *to)
{
	char d[HR_ADDR_MAX];
	digits_of(to, d, sizeof d);
	for (size_t i = 0; i < k->nover; i++)
		if (strcmp(k->over[i].digits, d) == 0)
			return &k->over[i];
	return NULL;
}

double sms_retry_window_s(struct sim *s)
{
	struct sms_knobs *k = knobs_get(s->sms);
	double w = k->webhook_retry_s;
	knobs_unref(k);
	return w;
}

/* ---------------------------------------------------------------------------
 * Accounts
 * ------------------------------------------------------------------------- */

static void account_free(struct sms_account *a)
{
	free(a->account_sid);
	if (a->auth_token)
		explicit_bzero(a->auth_token, strlen(a->auth_token));
	free(a->auth_token);
	free(a->api_key_sid);
	if (a->api_key_secret)
		explicit_bzero(a->api_key_secret, strlen(a->api_key_secret));
	free(a->api_key_secret);
	free(a->from);
	free(a->service_sid);
	free(a->sender);
	free(a->webhook_url);
}

/* A string key of the account; NULL when absent and not required. */
static int acct_str(json_t *cfg, const char *key, const char *base, bool required, bool secret,
                    char **out, struct hr_err *err)
{
	char field[160];
	snprintf(field, sizeof field, "%s.%s", base, key);
	json_t *v = json_object_get(cfg, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return required ? hr_fail(err, HR_EINVAL, field, "%s is required", field) : 0;
	if (!json_is_string(v) || !*json_string_value(v))
		return hr_fail(err, HR_EINVAL, field, "%s must be a non-empty string", field);
	*out = secret ? hr_secret_resolve(json_string_value(v), field, err)
	              : strdup(json_string_value(v));
	if (!*out)
		return err && err->code ? err->code : HR_ENOMEM;
	return 0;
}

static int load_account(struct sim *s, json_t *entry, const char *base, struct hr_err *err)
{
	struct sim_sms *ss = s->sms;
	struct sms_account *a = &ss->accounts[ss->naccounts];
	memset(a, 0, sizeof *a);
	char cbase[140];
	json_t *cfg = sim_account_entry(entry, base, a->id, sizeof a->id, cbase, sizeof cbase, err);
	if (!cfg)
		return err && err->code ? err->code : HR_EINVAL;
	if (!json_object_get(cfg, "account_sid")) { /* e.g. another tool's test stub */
		hr_log(HR_LOG_WARN, "sim", "%s (sms account %s) has no account_sid: not simulated",
		       base, a->id);
		return 0;
	}
	int rc;
	char *sender = NULL;
	if ((rc = acct_str(cfg, "account_sid", cbase, true, false, &a->account_sid, err)) ||
	    (rc = acct_str(cfg, "auth_token", cbase, true, true, &a->auth_token, err)) ||
	    (rc = acct_str(cfg, "api_key_sid", cbase, false, false, &a->api_key_sid, err)) ||
	    (rc = acct_str(cfg, "api_key_secret", cbase, a->api_key_sid != NULL, true,
	                   &a->api_key_secret, err)) ||
	    (rc = acct_str(cfg, "from", cbase, false, false, &a->from, err)) ||
	    (rc = acct_str(cfg, "messaging_service_sid", cbase, false, false, &a->service_sid,
	                   err)) ||
	    (rc = acct_str(cfg, "sim_sender", cbase, false, false, &sender, err))) {
		free(sender);
		account_free(a);
		return rc;
	}
	if (!a->from == !a->service_sid) {
		free(sender);
		account_free(a);
		return hr_fail(err, HR_EINVAL, base,
		               "%s: give exactly one of from and messaging_service_sid", base);
	}
	a->sender = sender ? sender : strdup(a->from ? a->from : SMS_DEFAULT_SENDER);
	size_t hl = strlen(s->herald_url);
	while (hl && s->herald_url[hl - 1] == '/')
		hl--;
	if (asprintf(&a->webhook_url, "%.*s/webhooks/sms/%s", (int)hl, s->herald_url, a->id) < 0)
		a->webhook_url = NULL;
	if (!a->sender || !a->webhook_url) {
		account_free(a);
		return hr_fail(err, HR_ENOMEM, base, "out of memory");
	}
	for (size_t i = 0; i < ss->naccounts; i++) {
		if (strcmp(ss->accounts[i].id, a->id) == 0) {
			account_free(a);
			return hr_fail(err, HR_EINVAL, base, "%s: id already used", base);
		}
	}
	ss->naccounts++;
	return 0;
}

/* Every tenants[].accounts[] entry with channel sms. */
static int load_accounts(struct sim *s, json_t *config, struct hr_err *err)
{
	s->sms->accounts = calloc(sim_config_account_slots(config) + 1, sizeof *s->sms->accounts);
	if (!s->sms->accounts)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return sim_config_each_account(s, config, "sms", load_account, err);
}

/* ---------------------------------------------------------------------------
 * Twilio's bodies
 * ------------------------------------------------------------------------- */

static void reply_json(struct sim_sms_reply *rep, unsigned int status, json_t *o)
{
	rep->status = status;
	rep->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

/* {"code","message","more_info","status"}, Twilio's REST error body. */
__attribute__((format(printf, 4, 5))) static void
reply_twilio(struct sim_sms_reply *rep, unsigned int status, int code, const char *fmt, ...)
{
	char msg[512], info[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	char clean[512];
	hr_utf8_copy(clean, msg, sizeof clean);
	snprintf(info, sizeof info, SMS_ERR_INFO "%d", code);
	reply_json(rep, status,
	           json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", clean, "more_info",
	                     info, "status", (int)status));
}

static void reply_plain(struct sim_sms_reply *rep, unsigned int status, const char *field,
                        const char *msg)
{
	reply_json(rep, status,
	           json_pack("{s:{s:s, s:s?}}", "error", "message", msg, "field", field));
}

/* Sends rejected for a recipient override, in Twilio's words where known. */
static void reply_code(struct sim_sms_reply *rep, int code, const char *to)
{
	switch (code) {
	case 21211:
		reply_twilio(rep, 400, code, "The 'To' number %s is not a valid phone number.", to);
		break;
	case 21610:
		reply_twilio(rep, 400, code, "Attempt to send to unsubscribed recipient");
		break;
	case 21614:
		reply_twilio(rep, 400, code, "'To' number %s is not a valid mobile number", to);
		break;
	case 21408:
		reply_twilio(rep, 400, code,
		             "Permission to send an SMS has not been enabled for the region "
		             "indicated by the 'To' number: %s",
		             to);
		break;
	case 20003:
		reply_twilio(rep, 401, code, "Authenticate");
		break;
	case 20429:
		reply_twilio(rep, 429, code, "Too Many Requests");
		break;
	case 20500:
		reply_twilio(rep, 500, code, "An internal server error has occurred");
		break;
	case 20503:
		reply_twilio(rep, 503, code, "Service is unavailable. Please try again");
		break;
	default:
		reply_twilio(rep, 400, code, "Twilio error %d (simulated)", code);
	}
}

/* RFC 2822 in UTC, as Twilio writes date_created. */
static void rfc2822(int64_t us, char out[40])
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
	         mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "SM"/"MM" + 32 hex digits, unique within the process. */
static void sid_new(struct sim *s, const char *prefix, char out[40])
{
	uint64_t c = atomic_fetch_add(&s->id_counter, 1);
	unsigned char rnd[4];
	hr_random_bytes(rnd, sizeof rnd);
	snprintf(out, 40, "%s%08x%02x%02x%02x%02x%016llx", prefix, s->id_prefix, rnd[0], rnd[1],
	         rnd[2], rnd[3], (unsigned long long)c);
}

static bool is_e164(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 9 && n <= 16 && s[0] == '+' && s[1] != '0' &&
	       strspn(s + 1, "0123456789") == n - 1;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Callbacks only go to loopback: the simulator never reaches outside. */
static bool is_loopback_url(const char *u)
{
	static const char *const hosts[] = {"http://127.0.0.1", "http://localhost", "http://[::1]",
	                                    NULL};
	for (int i = 0; hosts[i]; i++) {
		size_t n = strlen(hosts[i]);
		if (strncmp(u, hosts[i], n) == 0 && (u[n] == ':' || u[n] == '/' || !u[n]))
			return true;
	}
	return false;
}

static bool is_http_url(const char *u)
{
	const char *h = strncmp(u, "http://", 7) == 0    ? u + 7
	                : strncmp(u, "https://", 8) == 0 ? u + 8
	                                                 : NULL;
	return h && *h && *h != '/' && !strchr(u, ' ') && strlen(u) <= 4000;
}

/* ---------------------------------------------------------------------------
 * Form parsing with MHD's post processor
 * ------------------------------------------------------------------------- */

struct form_ctx {
	struct sms_form *f;
	char *buf; /* the value being collected (it may come in pieces) */
	size_t len, cap;
	bool oom;
};

static void form_flush(struct form_ctx *x)
{
	if (x->f->n == 0 || !x->buf)
		return;
	/* Invalid UTF-8 becomes '?', so values can always go into JSON. */
	char *v = malloc(x->len + 1);
	if (!v) {
		x->oom = true;
		return;
	}
	x->buf[x->len] = '\0';
	hr_utf8_copy(v, x->buf, x->len + 1);
	free(x->f->values[x->f->n - 1]);
	x->f->values[x->f->n - 1] = v;
	x->len = 0;
}

static enum MHD_Result form_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size)
{
	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	struct form_ctx *x = cls;
	if (off == 0) { /* a new parameter (repeated names come again at 0) */
		form_flush(x);
		sms_form_add(x->f, key, "");
		x->len = 0;
	}
	if (x->len + size + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 256;
		while (cap < x->len + size + 1)
			cap *= 2;
		char *b = realloc(x->buf, cap);
		if (!b) {
			x->oom = true;
			return MHD_NO;
		}
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, size);
	x->len += size;
	return MHD_YES;
}

/* Parses a urlencoded body. A body of another type is an empty form (Twilio
 * then reports the first missing parameter). false on OOM. */
static bool form_parse(struct MHD_Connection *c, const char *body, size_t len, struct sms_form *out)
{
	memset(out, 0, sizeof *out);
	struct form_ctx x = {.f = out};
	struct MHD_PostProcessor *pp = MHD_create_post_processor(c, 4096, form_iter, &x);
	if (!pp)
		return true;
	if (len)
		MHD_post_process(pp, body, len);
	MHD_destroy_post_processor(pp); /* delivers the last value */
	form_flush(&x);
	free(x.buf);
	return !x.oom && !out->oom;
}

static const char *form_get(const struct sms_form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->names[i], name) == 0)
			return f->values[i];
	return NULL;
}

static json_t *form_json(const struct sms_form *f)
{
	json_t *o = json_object();
	for (size_t i = 0; i < f->n; i++) {
		json_t *old = json_object_get(o, f->names[i]);
		json_t *v = json_string(f->values[i]);
		if (!old)
			json_object_set_new(o, f->names[i], v);
		else if (json_is_array(old))
			json_array_append_new(old, v);
		else
			json_object_set_new(o, f->names[i], json_pack("[O,o]", old, v));
	}
	return o;
}

/* ---------------------------------------------------------------------------
 * Tables (under ss->lock)
 * ------------------------------------------------------------------------- */

/* Counters of one recipient, created on first use. */
static json_t *recipient_get(struct sim_sms *ss, const char *to)
{
	char d[HR_ADDR_MAX];
	digits_of(to, d, sizeof d);
	json_t *r = json_object_get(ss->recipients, d);
	if (!r) {
		r = json_pack("{s:i, s:i, s:i}", "requests", 0, "accepted", 0, "rejected", 0);
		json_object_set_new(ss->recipients, d, r);
	}
	return r;
}

static void counter_add(json_t *o, const char *key)
{
	json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + 1));
}

static void optout_key(int acct, const char *addr, char *out, size_t n)
{
	char d[HR_ADDR_MAX];
	digits_of(addr, d, sizeof d);
	snprintf(out, n, "%d:%s", acct, d);
}

/* Keeps at most keep_messages records, dropping the oldest. */
static void messages_put(struct sim_sms *ss, const char *sid, json_t *rec, size_t keep)
{
	while (ss->ring_n >= keep && ss->ring_n > 0) {
		char *old = ss->ring[ss->ring_head];
		json_object_del(ss->messages, old);
		free(old);
		ss->ring_head = (ss->ring_head + 1) % ss->ring_cap;
		ss->ring_n--;
	}
	if (ss->ring_n == ss->ring_cap) {
		size_t cap = ss->ring_cap ? ss->ring_cap * 2 : 1024;
		char **r = malloc(cap * sizeof *r);
		if (!r) {
			json_decref(rec);
			return;
		}
		for (size_t i = 0; i < ss->ring_n; i++)
			r[i] = ss->ring[(ss->ring_head + i) % ss->ring_cap];
		free(ss->ring);
		ss->ring = r;
		ss->ring_cap = cap;
		ss->ring_head = 0;
	}
	char *copy = strdup(sid);
	if (!copy) {
		json_decref(rec);
		return;
	}
	ss->ring[(ss->ring_head + ss->ring_n) % ss->ring_cap] = copy;
	ss->ring_n++;
	json_object_set_new(ss->messages, sid, rec);
}

static int status_rank(const char *st)
{
	static const char *const order[] = {"accepted", "queued", "sending", "sent", NULL};
	for (int i = 0; st && order[i]; i++)
		if (strcmp(st, order[i]) == 0)
			return i;
	return st ? 4 : -1; /* delivered, undelivered, failed, read */
}

void sms_on_post(struct sim *s, const struct sms_post *p)
{
	struct sim_sms *ss = s->sms;
	pthread_mutex_lock(&ss->lock);
	json_t *rec = p->sid[0] ? json_object_get(ss->messages, p->sid) : NULL;
	if (rec && p->status[0]) {
		json_t *res = json_object_get(rec, "resource");
		/* A late (reordered) callback does not move the resource back. */
		if (status_rank(p->status) >
		    status_rank(json_string_value(json_object_get(res, "status")))) {
			char date[40];
			rfc2822(hr_now_us(), date);
			json_object_set_new(res, "status", json_string(p->status));
			json_object_set_new(res, "date_updated", json_string(date));
			if (strcmp(p->status, "sent") == 0)
				json_object_set_new(res, "date_sent", json_string(date));
			if (p->error_code)
				json_object_set_new(res, "error_code", json_integer(p->error_code));
		}
		json_array_append_new(json_object_get(rec, "callbacks"), json_string(p->status));
	}
	if (p->optout && p->acct >= 0) {
		char key[96];
		optout_key(p->acct, p->from, key, sizeof key);
		if (p->optout > 0)
			json_object_set_new(ss->optouts, key, json_true());
		else
			json_object_del(ss->optouts, key);
	}
	pthread_mutex_unlock(&ss->lock);
}

/* ---------------------------------------------------------------------------
 * Callbacks and inbound messages
 * ------------------------------------------------------------------------- */

/* +1 opt-out, -1 opt-in, 2 help, 0 none: the whole trimmed body, any case. */
static int keyword(const char *body)
{
	static const struct {
		const char *w;
		int k;
	} words[] = {
	    {"STOP", 1}, {"STOPALL", 1}, {"UNSUBSCRIBE", 1}, {"CANCEL", 1}, {"END", 1},
	    {"QUIT", 1}, {"OPTOUT", 1},  {"REVOKE", 1},      {"START", -1}, {"UNSTOP", -1},
	    {"YES", -1}, {"HELP", 2},    {"INFO", 2},
	};
	while (body && isspace((unsigned char)*body))
		body++;
	size_t n = body ? strlen(body) : 0;
	while (n && isspace((unsigned char)body[n - 1]))
		n--;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strlen(words[i].w) == n && strncasecmp(body, words[i].w, n) == 0)
			return words[i].k;
	return 0;
}

/* An inbound SMS from `from` to the account's number, signed for its URL. */
static struct sms_post *inbound_post(struct sim *s, int ai, const char *from, const char *body,
                                     bool advanced, char sid[40])
{
	const struct sms_account *a = &s->sms->accounts[ai];
	sid_new(s, "SM", sid);
	struct sms_info info = {.segments = 1};
	sms_segments(body, &info, NULL);
	char segs[16];
	snprintf(segs, sizeof segs, "%d", info.segments);
	int kw = keyword(body);
	struct sms_form f = {0};
	sms_form_add(&f, "ToCountry", "US");
	sms_form_add(&f, "SmsMessageSid", sid);
	sms_form_add(&f, "NumMedia", "0");
	sms_form_add(&f, "SmsSid", sid);
	sms_form_add(&f, "SmsStatus", "received");
	sms_form_add(&f, "Body", body);
	sms_form_add(&f, "To", a->sender);
	if (a->service_sid)
		sms_form_add(&f, "MessagingServiceSid", a->service_sid);
	sms_form_add(&f, "NumSegments", segs);
	sms_form_add(&f, "MessageSid", sid);
	sms_form_add(&f, "AccountSid", a->account_sid);
	sms_form_add(&f, "From", from);
	sms_form_add(&f, "ApiVersion", "2010-04-01");
	if (advanced && kw)
		sms_form_add(&f, "OptOutType", kw == 1 ? "STOP" : kw == -1 ? "START" : "HELP");
	struct sms_post *p = sms_post_new(a->webhook_url, &f, a->auth_token);
	sms_form_free(&f);
	if (p) {
		p->acct = ai;
		p->optout = kw == 1 || kw == -1 ? kw : 0;
		hr_strlcpy(p->from, from, sizeof p->from);
	}
	return p;
}

/* What one accepted message is told about itself. */
struct plan {
	int ai;
	const char *sid, *to, *callback;
	const struct sms_override *ov;
	const struct sms_knobs *k;
	struct sim_rng *rng;
	int64_t t0; /* monotonic us: when the 201 leaves */
};

static struct sms_post *status_post(struct sim *s, const struct plan *pl, const char *st, int code,
                                    int64_t wall_us)
{
	const struct sms_account *a = &s->sms->accounts[pl->ai];
	struct sms_form f = {0};
	char num[16];
	sms_form_add(&f, "SmsSid", pl->sid);
	sms_form_add(&f, "SmsStatus", st);
	sms_form_add(&f, "MessageStatus", st);
	sms_form_add(&f, "To", pl->to);
	if (a->service_sid)
		sms_form_add(&f, "MessagingServiceSid", a->service_sid);
	sms_form_add(&f, "MessageSid", pl->sid);
	sms_form_add(&f, "AccountSid", a->account_sid);
	sms_form_add(&f, "From", a->sender);
	sms_form_add(&f, "ApiVersion", "2010-04-01");
	if (code) {
		snprintf(num, sizeof num, "%d", code);
		sms_form_add(&f, "ErrorCode", num);
	}
	if (strcmp(st, "delivered") == 0 || strcmp(st, "undelivered") == 0) {
		time_t t = (time_t)(wall_us / 1000000);
		struct tm tm;
		gmtime_r(&t, &tm);
		char dlr[16];
		strftime(dlr, sizeof dlr, "%y%m%d%H%M", &tm);
		sms_form_add(&f, "RawDlrDoneDate", dlr);
	}
	struct sms_post *p = sms_post_new(pl->callback, &f, a->auth_token);
	sms_form_free(&f);
	if (p) {
		hr_strlcpy(p->sid, pl->sid, sizeof p->sid);
		hr_strlcpy(p->status, st, sizeof p->status);
		p->error_code = code;
		p->acct = pl->ai;
	}
	return p;
}

/* Queues a post, and with probability dup_rate an identical second copy. */
static void push_maybe_dup(struct sim *s, const struct plan *pl, struct sms_post *p, int64_t due)
{
	double u = sim_rng_unit(pl->rng);
	if (p && u < pl->k->dup_rate)
		sms_sched_push(s, sms_post_dup(p), due + 5000);
	sms_sched_push(s, p, due);
}

/*
 * The callbacks of one accepted message: queued (Messaging Service only),
 * sent, then delivered or undelivered - or failed alone - with reorder_rate
 * swapping the last two, and a reply after delivery if the recipient has one.
 */
static void schedule(struct sim *s, const struct plan *pl)
{
	const struct sms_knobs *k = pl->k;
	const struct sms_account *a = &s->sms->accounts[pl->ai];
	int64_t wall0 = hr_now_us() + (pl->t0 - hr_mono_us());
	int64_t t_sent = pl->t0 + (int64_t)(k->sent_delay_ms * 1000);
	int64_t t_final = t_sent + (int64_t)(k->delivered_delay_ms * 1000);
	double ufail = sim_rng_unit(pl->rng), ureorder = sim_rng_unit(pl->rng);
	bool delivered = false;
	if (pl->callback) {
		if (a->service_sid) {
			int64_t t = pl->t0 + (int64_t)(k->queued_delay_ms * 1000);
			push_maybe_dup(s, pl, status_post(s, pl, "queued", 0, wall0), t);
		}
		if (pl->ov && pl->ov->failed) {
			push_maybe_dup(s, pl, status_post(s, pl, "failed", pl->ov->failed, wall0),
			               t_sent);
		} else {
			int code = pl->ov && pl->ov->undelivered ? pl->ov->undelivered
			           : ufail < k->fail_rate        ? 30003
			                                         : 0;
			delivered = code == 0;
			if (ureorder < k->reorder_rate) { /* the final status overtakes sent */
				int64_t t = t_sent;
				t_sent = t_final;
				t_final = t;
			}
			push_maybe_dup(s, pl, status_post(s, pl, "sent", 0, wall0), t_sent);
			int64_t wall = wall0 + (t_final - pl->t0);
			struct sms_post *fin =
			    status_post(s, pl, code ? "undelivered" : "delivered", code, wall);
			if (fin && pl->ov && pl->ov->lose_receipts) {
				fin->silent = true;
				sms_sched_push(s, fin, t_final);
			} else {
				push_maybe_dup(s, pl, fin, t_final);
			}
		}
	} else {
		delivered = !(pl->ov && (pl->ov->failed || pl->ov->undelivered));
	}
	if (delivered && pl->ov && pl->ov->reply) {
		char sid[40];
		int64_t t =
		    (t_sent > t_final ? t_sent : t_final) + (int64_t)(k->reply_delay_ms * 1000);
		sms_sched_push(
		    s, inbound_post(s, pl->ai, pl->to, pl->ov->reply, k->advanced_opt_out, sid), t);
	}
}

/* ---------------------------------------------------------------------------
 * The Messages API
 * ------------------------------------------------------------------------- */

/* The account the Basic credentials belong to, or -1; *sid_ok says whether
 * that account (or another with the same credentials) is url_sid's. */
static int authenticate(struct sim_sms *ss, struct MHD_Connection *c, const char *url_sid,
                        const char *from, const char *mssid, bool *cred_ok, bool *sid_ok)
{
	char *pass = NULL;
	char *user = MHD_basic_auth_get_username_password(c, &pass);
	int found = -1, first = -1;
	*cred_ok = *sid_ok = false;
	for (size_t i = 0; user && pass && i < ss->naccounts; i++) {
		const struct sms_account *a = &ss->accounts[i];
		bool ok = (strcmp(user, a->account_sid) == 0 && strcmp(pass, a->auth_token) == 0) ||
		          (a->api_key_sid && strcmp(user, a->api_key_sid) == 0 &&
		           strcmp(pass, a->api_key_secret) == 0);
		if (!ok)
			continue;
		*cred_ok = true;
		if (strcmp(a->account_sid, url_sid) != 0)
			continue;
		*sid_ok = true;
		if (first < 0)
			first = (int)i;
		if (found < 0 && ((from && a->from && strcmp(from, a->from) == 0) ||
		                  (mssid && a->service_sid && strcmp(mssid, a->service_sid) == 0)))
			found = (int)i;
	}
	if (user)
		MHD_free(user);
	if (pass)
		MHD_free(pass);
	return found >= 0 ? found : first;
}

static bool all_digits(const char *s, size_t max)
{
	size_t n = strlen(s);
	return n >= 1 && n <= max && strspn(s, "0123456789") == n;
}

/* Twilio's checks, first failure wins; 0 if the send is well formed. */
static int check_send(const struct sms_form *f, const struct sms_account *a,
                      struct sim_sms_reply *rep)
{
	const char *to = form_get(f, "To"), *from = form_get(f, "From");
	const char *mssid = form_get(f, "MessagingServiceSid"), *body = form_get(f, "Body");
	const char *media = form_get(f, "MediaUrl"), *vp = form_get(f, "ValidityPeriod");
	const char *cb = form_get(f, "StatusCallback");
	const char *pe = form_get(f, "DltPEId"), *tpl = form_get(f, "DltTemplateId");
	if (!to || !*to)
		reply_twilio(rep, 400, 21604, "A 'To' phone number is required.");
	else if (!is_e164(to))
		reply_twilio(rep, 400, 21211, "The 'To' number %.40s is not a valid phone number.",
		             to);
	else if ((!from || !*from) && (!mssid || !*mssid))
		reply_twilio(rep, 400, 21603, "A 'From' phone number is required.");
	else if (mssid && *mssid && (!a->service_sid || strcmp(mssid, a->service_sid) != 0))
		reply_twilio(rep, 404, 21701, "The Messaging Service %.40s does not exist", mssid);
	else if ((!mssid || !*mssid) && (!a->from || strcmp(from, a->from) != 0))
		reply_twilio(rep, 400, 21606,
		             "The From phone number %.40s is not a valid, SMS-capable inbound "
		             "phone number or short code for your account.",
		             from);
	else if ((!body || !*body) && (!media || !*media))
		reply_twilio(rep, 400, 21602, "Message body is required.");
	else if (body && utf8_chars(body) > SMS_BODY_MAX)
		reply_twilio(rep, 400, 21617,
		             "The concatenated message body exceeds the 1600 character limit.");
	else if (vp && (!all_digits(vp, 5) || atoi(vp) < 1 || atoi(vp) > SMS_VALIDITY_MAX))
		reply_twilio(rep, 400, 21624, "Invalid validity period value");
	else if (cb && !is_http_url(cb))
		reply_twilio(rep, 400, 21609, "The StatusCallback URL %.80s is not a valid URL.",
		             cb);
	else if (pe && !all_digits(pe, 30))
		reply_twilio(rep, 400, 21900, "DltPEId is invalid");
	else if (tpl && !all_digits(tpl, 30))
		reply_twilio(rep, 400, 21901, "DltTemplateId is invalid");
	else
		return 0;
	return -1;
}

/* The Message resource, as Twilio returns it from create and fetch. */
static json_t *resource_new(const struct sms_account *a, const struct sms_form *f, const char *sid,
                            bool ms)
{
	const char *to = form_get(f, "To"), *body = form_get(f, "Body");
	const char *media = form_get(f, "MediaUrl");
	struct sms_info info = {.segments = 1};
	if (body)
		sms_segments(body, &info, NULL);
	char date[40], segs[16], uri[160], media_uri[160];
	rfc2822(hr_now_us(), date);
	snprintf(segs, sizeof segs, "%d", info.segments);
	snprintf(uri, sizeof uri, SMS_API "%s/Messages/%s.json", a->account_sid, sid);
	snprintf(media_uri, sizeof media_uri, SMS_API "%s/Messages/%s/Media.json", a->account_sid,
	         sid);
	json_t *r = json_pack(
	    "{s:s, s:s, s:s, s:s, s:n, s:s, s:s, s:n, s:n, s:s?, s:s?, s:s, s:s, s:n, s:s, s:s, "
	    "s:s, s:{s:s}, s:s, s:s}",
	    "account_sid", a->account_sid, "api_version", "2010-04-01", "body", body ? body : "",
	    "date_created", date, "date_sent", "date_updated", date, "direction", "outbound-api",
	    "error_code", "error_message", "from", ms ? NULL : a->from, "messaging_service_sid",
	    ms ? a->service_sid : NULL, "num_media", media ? "1" : "0", "num_segments", segs,
	    "price", "price_unit", "USD", "sid", sid, "status", ms ? "accepted" : "queued",
	    "subresource_uris", "media", media_uri, "to", to, "uri", uri);
	if (r && ms)
		json_object_set_new(r, "from", json_null());
	if (r && !ms)
		json_object_set_new(r, "messaging_service_sid", json_null());
	return r;
}

/* sha256 of what identifies a send's content: To, sender, Body, MediaUrl. */
static void send_digest(const struct sms_form *f, unsigned char d[32])
{
	const char *parts[] = {form_get(f, "To"), form_get(f, "From"),
	                       form_get(f, "MessagingServiceSid"), form_get(f, "Body"),
	                       form_get(f, "MediaUrl")};
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int dl = 0;
	memset(d, 0, 32);
	if (!ctx)
		return;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		const char *p = parts[i] ? parts[i] : "";
		EVP_DigestUpdate(ctx, p, strlen(p) + 1); /* with the NUL as separator */
	}
	EVP_DigestFinal_ex(ctx, d, &dl);
	EVP_MD_CTX_free(ctx);
}

static void handle_send(struct sim *s, struct MHD_Connection *c, const char *url_sid,
                        const char *body, size_t len, bool too_large, struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	sim_stats_request(&s->stats);
	struct sms_knobs *k = knobs_get(ss);
	rep->delay_us = (int64_t)(k->latency_ms * 1000);
	struct sms_form f = {0};
	if (!too_large && !form_parse(c, body, len, &f)) {
		reply_plain(rep, 500, NULL, "out of memory");
		goto out;
	}
	bool cred_ok, sid_ok;
	int ai = authenticate(ss, c, url_sid, form_get(&f, "From"),
	                      form_get(&f, "MessagingServiceSid"), &cred_ok, &sid_ok);
	if (!cred_ok) {
		sim_stats_reject(&s->stats, SIM_REJ_AUTH);
		reply_twilio(rep, 401, 20003, "Authenticate");
		goto out;
	}
	if (!sid_ok) {
		sim_stats_reject(&s->stats, SIM_REJ_AUTH);
		reply_twilio(rep, 404, 20404,
		             "The requested resource " SMS_API "%.40s/Messages.json "
		             "was not found",
		             url_sid);
		goto out;
	}
	const struct sms_account *a = &ss->accounts[ai];
	if (too_large) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		reply_twilio(rep, 413, 21617, "The request body is too large");
		goto out;
	}
	const char *to = form_get(&f, "To");
	if (check_send(&f, a, rep)) {
		sim_stats_reject(&s->stats, SIM_REJ_INVALID);
		goto out;
	}
	unsigned char digest[32];
	send_digest(&f, digest);
	uint64_t attempt = sim_stats_attempt(&s->stats, to, digest);
	struct sim_rng rng;
	sim_rng_init(&rng, k->has_seed ? k->seed : s->random_seed, digest, attempt);
	double u429 = sim_rng_unit(&rng), u5xx = sim_rng_unit(&rng), ulat = sim_rng_unit(&rng);
	rep->delay_us += (int64_t)(k->latency_jitter_ms * 1000 * ulat);
	const struct sms_override *ov = knobs_override(k, to);
	char okey[96];
	optout_key(ai, to, okey, sizeof okey);
	pthread_mutex_lock(&ss->lock);
	json_t *rc = recipient_get(ss, to);
	counter_add(rc, "requests");
	bool opted_out = json_object_get(ss->optouts, okey) != NULL;
	pthread_mutex_unlock(&ss->lock);
	int code = opted_out ? 21610 : ov && ov->error ? ov->error : 0;
	if (code) {
		sim_stats_reject(&s->stats, code == 20429                   ? SIM_REJ_429
		                            : code >= 20500 && code < 20600 ? SIM_REJ_5XX
		                                                            : SIM_REJ_PERMANENT);
		reply_code(rep, code, to);
	} else if (u429 < k->rate_429) {
		sim_stats_reject(&s->stats, SIM_REJ_429);
		reply_code(rep, 20429, to);
	} else if (u5xx < k->rate_5xx) {
		sim_stats_reject(&s->stats, SIM_REJ_5XX);
		reply_code(rep, 20500, to);
	}
	if (rep->status) {
		pthread_mutex_lock(&ss->lock);
		counter_add(recipient_get(ss, to), "rejected");
		pthread_mutex_unlock(&ss->lock);
		goto out;
	}
	/* Accepted. */
	char sid[40];
	const char *media = form_get(&f, "MediaUrl");
	sid_new(s, media ? "MM" : "SM", sid);
	bool ms = form_get(&f, "MessagingServiceSid") != NULL;
	/* The answer is written before the record is shared with the callback
	 * thread, which updates the resource's status. */
	json_t *res = resource_new(a, &f, sid, ms);
	char *answer = res ? json_dumps(res, JSON_COMPACT) : NULL;
	json_t *rec = NULL;
	if (answer)
		rec = json_pack("{s:o, s:o, s:[]}", "resource", res, "params", form_json(&f),
		                "callbacks");
	else
		json_decref(res);
	if (!rec) {
		free(answer);
		reply_plain(rep, 500, NULL, "out of memory");
		goto out;
	}
	sim_stats_accept(&s->stats, to, digest, sid, sid);
	const char *text = form_get(&f, "Body");
	pthread_mutex_lock(&ss->lock);
	json_t *r = recipient_get(ss, to);
	counter_add(r, "accepted");
	json_object_set_new(r, "last_body", json_string(text ? text : ""));
	messages_put(ss, sid, rec, (size_t)k->keep_messages);
	pthread_mutex_unlock(&ss->lock);
	const char *cb = form_get(&f, "StatusCallback");
	if (cb && !is_loopback_url(cb)) {
		hr_log(HR_LOG_WARN, "sim",
		       "sms: StatusCallback %s is not on loopback: no callbacks", cb);
		cb = NULL;
	}
	struct plan pl = {.ai = ai,
	                  .sid = sid,
	                  .to = to,
	                  .callback = cb,
	                  .ov = ov,
	                  .k = k,
	                  .rng = &rng,
	                  .t0 = hr_mono_us() + rep->delay_us};
	schedule(s, &pl);
	rep->status = 201;
	rep->body = answer;
out:
	sms_form_free(&f);
	knobs_unref(k);
}

static void handle_fetch(struct sim *s, struct MHD_Connection *c, const char *url_sid,
                         const char *sid, struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	bool cred_ok, sid_ok;
	authenticate(ss, c, url_sid, NULL, NULL, &cred_ok, &sid_ok);
	if (!cred_ok) {
		reply_twilio(rep, 401, 20003, "Authenticate");
		return;
	}
	pthread_mutex_lock(&ss->lock);
	json_t *rec = sid_ok ? json_object_get(ss->messages, sid) : NULL;
	json_t *res = json_object_get(rec, "resource");
	json_t *copy =
	    res && strcmp(json_string_value(json_object_get(res, "account_sid")), url_sid) == 0
	        ? json_deep_copy(res)
	        : NULL;
	pthread_mutex_unlock(&ss->lock);
	if (copy)
		reply_json(rep, 200, copy);
	else
		reply_twilio(rep, 404, 20404,
		             "The requested resource " SMS_API "%.40s/Messages/%.40s.json was not "
		             "found",
		             url_sid, sid);
}

/* ---------------------------------------------------------------------------
 * Control endpoints
 * ------------------------------------------------------------------------- */

static json_t *parse_object(const char *body, size_t len, bool too_large, struct sim_sms_reply *rep)
{
	json_error_t je;
	json_t *o = too_large ? NULL : json_loadb(body ? body : "", len, 0, &je);
	if (!json_is_object(o)) {
		json_decref(o);
		reply_plain(rep, 400, "body", "the body must be a JSON object");
		return NULL;
	}
	return o;
}

static void handle_inbound(struct sim *s, const char *body, size_t len, bool too_large,
                           struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	json_t *o = parse_object(body, len, too_large, rep);
	if (!o)
		return;
	const char *id = json_string_value(json_object_get(o, "account"));
	const char *from = json_string_value(json_object_get(o, "from"));
	const char *text = json_string_value(json_object_get(o, "body"));
	int ai = -1;
	for (size_t i = 0; id && i < ss->naccounts; i++)
		if (strcmp(ss->accounts[i].id, id) == 0)
			ai = (int)i;
	if (ai < 0)
		reply_plain(rep, id ? 404 : 400, "account",
		            id ? "no sms account with that id" : "account is required");
	else if (!from || !*from || strlen(from) >= HR_ADDR_MAX)
		reply_plain(rep, 400, "from", "from must be a phone number");
	else if (!text)
		reply_plain(rep, 400, "body", "body must be a string");
	if (rep->status) {
		json_decref(o);
		return;
	}
	struct sms_knobs *k = knobs_get(ss);
	char sid[40];
	struct sms_post *p = inbound_post(s, ai, from, text, k->advanced_opt_out, sid);
	knobs_unref(k);
	if (!p) {
		reply_plain(rep, 500, NULL, "out of memory");
	} else {
		sms_sched_push(s, p, hr_mono_us());
		reply_json(rep, 202, json_pack("{s:s, s:s}", "sid", sid, "account", id));
	}
	json_decref(o);
}

static void handle_config(struct sim *s, const char *method, const char *body, size_t len,
                          bool too_large, struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	if (strcmp(method, "GET") == 0) {
		struct sms_knobs *k = knobs_get(ss);
		reply_json(rep, 200, knobs_json(k));
		knobs_unref(k);
		return;
	}
	json_t *o = parse_object(body, len, too_large, rep);
	if (!o)
		return;
	struct hr_err err = {0};
	struct sms_knobs *nk = NULL, *old;
	pthread_mutex_lock(&ss->lock);
	int rc = knobs_apply(ss->knobs, o, "", &nk, &err);
	old = ss->knobs;
	if (rc == 0)
		ss->knobs = nk;
	pthread_mutex_unlock(&ss->lock);
	json_decref(o);
	if (rc) {
		reply_plain(rep, 400, err.field, err.msg);
		return;
	}
	knobs_unref(old);
	reply_json(rep, 200, knobs_json(nk));
}

static void handle_recipient(struct sim *s, const char *addr, struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	char d[HR_ADDR_MAX];
	digits_of(addr, d, sizeof d);
	pthread_mutex_lock(&ss->lock);
	json_t *r = json_object_get(ss->recipients, d);
	json_t *copy = r ? json_deep_copy(r) : NULL;
	bool out = false;
	for (size_t i = 0; i < ss->naccounts; i++) {
		char key[96];
		optout_key((int)i, d, key, sizeof key);
		out = out || json_object_get(ss->optouts, key);
	}
	pthread_mutex_unlock(&ss->lock);
	if (!copy) {
		reply_plain(rep, 404, NULL, "no send to that recipient");
		return;
	}
	json_object_set_new(copy, "opted_out", json_boolean(out));
	reply_json(rep, 200, copy);
}

static void handle_message(struct sim *s, const char *sid, struct sim_sms_reply *rep)
{
	struct sim_sms *ss = s->sms;
	pthread_mutex_lock(&ss->lock);
	json_t *rec = json_object_get(ss->messages, sid);
	json_t *copy = rec ? json_deep_copy(rec) : NULL;
	pthread_mutex_unlock(&ss->lock);
	if (copy)
		reply_json(rep, 200, copy);
	else
		reply_plain(rep, 404, NULL, "no message with that sid (or it was dropped)");
}

/* "{AccountSid}/Messages.json" or "{AccountSid}/Messages/{Sid}.json" after
 * the API prefix; *sid is "" for the first. */
static bool match_api(const char *rest, char *acct, size_t an, char *sid, size_t sn)
{
	const char *slash = strchr(rest, '/');
	if (!slash || slash == rest || (size_t)(slash - rest) >= an)
		return false;
	memcpy(acct, rest, (size_t)(slash - rest));
	acct[slash - rest] = '\0';
	sid[0] = '\0';
	if (strcmp(slash, "/Messages.json") == 0)
		return true;
	const char *m = "/Messages/";
	if (strncmp(slash, m, strlen(m)) != 0)
		return false;
	const char *p = slash + strlen(m);
	size_t n = strlen(p);
	if (n <= 5 || strcmp(p + n - 5, ".json") != 0 || n - 5 >= sn || memchr(p, '/', n - 5))
		return false;
	memcpy(sid, p, n - 5);
	sid[n - 5] = '\0';
	return true;
}

bool sim_sms_route(struct sim *s, struct MHD_Connection *c, const char *url, const char *method,
                   const char *body, size_t len, bool too_large, struct sim_sms_reply *rep)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	char acct[64], sid[64];
	memset(rep, 0, sizeof *rep);
	if (!s->sms)
		return false;
	if (strncmp(url, SMS_API, strlen(SMS_API)) == 0) {
		if (!match_api(url + strlen(SMS_API), acct, sizeof acct, sid, sizeof sid))
			reply_twilio(rep, 404, 20404, "The requested resource %.100s was not found",
			             url);
		else if (!sid[0] && post)
			handle_send(s, c, acct, body, len, too_large, rep);
		else if (sid[0] && get)
			handle_fetch(s, c, acct, sid, rep);
		else
			reply_twilio(rep, 405, 20004, "Method not allowed");
		return true;
	}
	if (strncmp(url, "/sim/sms/", 9) != 0)
		return false;
	const char *rest = url + 9;
	if (post && strcmp(rest, "inbound") == 0)
		handle_inbound(s, body, len, too_large, rep);
	else if ((get || post) && strcmp(rest, "config") == 0)
		handle_config(s, method, body, len, too_large, rep);
	else if (get && strncmp(rest, "messages/", 9) == 0 && rest[9])
		handle_message(s, rest + 9, rep);
	else if (get && strncmp(rest, "recipients/", 11) == 0 && rest[11])
		handle_recipient(s, rest + 11, rep);
	else
		reply_plain(rep, 404, NULL, "unknown path");
	return true;
}

/* ---------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------- */

int sim_sms_start(struct sim *s, json_t *config, struct hr_err *err)
{
	struct sim_sms *ss = calloc(1, sizeof *ss);
	if (!ss)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&ss->lock, NULL);
	s->sms = ss;
	ss->messages = json_object();
	ss->optouts = json_object();
	ss->recipients = json_object();
	struct sms_knobs *def = knobs_default();
	if (!ss->messages || !ss->optouts || !ss->recipients || !def) {
		knobs_unref(def);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	/* sim.webhook_retry_s applies to every channel; sim.sms.* wins. */
	json_t *base = json_object();
	json_t *retry = hr_cfg_get(config, "sim.webhook_retry_s");
	if (retry)
		json_object_set(base, "webhook_retry_s", retry);
	struct sms_knobs *k1 = NULL;
	int rc = knobs_apply(def, base, "sim.", &k1, err);
	json_decref(base);
	knobs_unref(def);
	if (rc)
		return rc;
	json_t *cfg = hr_cfg_get(config, "sim.sms");
	rc = knobs_apply(k1, cfg, "sim.sms.", &ss->knobs, err);
	knobs_unref(k1);
	if (rc)
		return rc;
	if ((rc = load_accounts(s, config, err)))
		return rc;
	return sms_sched_start(s, err);
}

void sim_sms_stop(struct sim *s)
{
	struct sim_sms *ss = s->sms;
	if (!ss)
		return;
	sms_sched_stop(s);
	for (size_t i = 0; i < ss->naccounts; i++)
		account_free(&ss->accounts[i]);
	free(ss->accounts);
	for (size_t i = 0; i < ss->ring_n; i++)
		free(ss->ring[(ss->ring_head + i) % ss->ring_cap]);
	free(ss->ring);
	json_decref(ss->messages);
	json_decref(ss->optouts);
	json_decref(ss->recipients);
	knobs_unref(ss->knobs);
	pthread_mutex_destroy(&ss->lock);
	free(ss);
	s->sms = NULL;
}
