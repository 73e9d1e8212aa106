/*
 * rbm.c - the RCS Business Messaging (Google RBM) adapter, channel "rcs".
 *
 * Wire formats are those in PROVIDERS.md. Confirmed against public references
 * (docs search) while writing this file:
 *  - phones.agentMessages.create: POST {base}/v1/phones/{E.164}/agentMessages
 *    ?messageId=&agentId=; the body is an AgentMessage (contentMessage with
 *    one of text, richCard{standaloneCard|carouselCard}, contentInfo{fileUrl},
 *    plus suggestions[]; top-level ttl or expireTime, messageTrafficType);
 *    success returns the AgentMessage with name phones/{E.164}/agentMessages/
 *    {messageId}. "messageId must be a UUID as defined in RFC 4122", and "the
 *    RBM platform ignores agent messages sent with an ID that was used by an
 *    earlier message" (the reference page). Herald's ids are ULIDs, which are
 *    128 bits like a UUID, so the messageId is the message id written as a
 *    UUID (rbm_uuid_from_id): retries of a message reuse it, and the UUID is
 *    the provider id webhooks are matched by. A repeat is answered 409
 *    ALREADY_EXISTS (the standard Google code; the brief's choice for the
 *    simulator, not confirmed in Google's pages), which means an earlier
 *    attempt was accepted: it counts as sent.
 *  - 404 NOT_FOUND: the user's device does not support RCS or has it
 *    disabled (or the agent is not launched on their network), the signal
 *    for fallback routing; 400 INVALID_ARGUMENT for features the device
 *    lacks; the whole AgentMessage is at most 250 KB.
 *  - limits (Google's and AWS's RCS pages agree): text 3,072 characters,
 *    card title 200, description 2,000, suggestion text 25, postbackData
 *    2,048, 11 suggestions per message and 4 per card, carousels 2..10 cards,
 *    media URLs 2,000 characters.
 *  - phones.getCapabilities: GET .../capabilities?requestId=&agentId= ->
 *    {"features":["REVOCATION","RICHCARD_STANDALONE","RICHCARD_CAROUSEL",
 *    "ACTION_CREATE_CALENDAR_EVENT","ACTION_DIAL","ACTION_OPEN_URL",
 *    "ACTION_SHARE_LOCATION","ACTION_VIEW_LOCATION"]} or 404.
 *  - server events {phoneNumber, messageId, agentId, eventType
 *    TTL_EXPIRATION_REVOKED|TTL_EXPIRATION_REVOKE_FAILED, eventId, sendTime}:
 *    the first means the message's ttl ran out undelivered and RBM revoked
 *    it (Herald: undelivered, a trigger for fallback); the second that
 *    revoking failed, so it may still be delivered (nothing to apply).
 *  - user events {senderPhoneNumber, eventType DELIVERED|READ|IS_TYPING,
 *    eventId, messageId, agentId}; user messages carry messageId, sendTime,
 *    text or suggestionResponse{postbackData, text, type} (or userFile,
 *    location). A suggestion response does not name the message it answers,
 *    so every suggestion's postbackData is "<message UUID>|<button id>".
 *
 * I/O. Adapters do no I/O on the caller's thread, with one exception here:
 * capability() (below). Access tokens (an RS256 JWT from the service account
 * exchanged at token_uri for an OAuth token) are fetched by one background
 * thread for all RBM accounts ("rbm-tokens"), never on the dispatcher's:
 *  - an account's first token is fetched when something first asks for it
 *    (`herald serve` asks for its configured accounts' at start and waits up
 *    to 5 s: await_ready), and a token is fetched anew 60 s (or half its
 *    lifetime, if shorter) before it expires while the account is used, so
 *    a send normally finds one ready; loading an account sends nothing;
 *  - build_send only reads the cache. Without a valid token the request goes
 *    without one (RBM answers 401, which parse_send makes transient: the
 *    message is retried with backoff and its error text says why there was
 *    no token) and the refresher is woken;
 *  - a failed fetch is retried after 5 s, doubling up to 5 min while it keeps
 *    failing; a 401 drops the cached token and wakes the refresher, so a
 *    revoked token is replaced;
 *  - fetches are blocking curl transfers with a 10 s timeout, one at a time,
 *    no lock held across them; an account freed meanwhile is freed by the
 *    refresher when its fetch ends (a reference count), so freeing never
 *    waits on the network.
 * capability() (the /v1/channels/{account}/capabilities API, on an HTTP
 * thread) asks RBM whether a number can receive RCS: a blocking transfer
 * with a 10 s timeout, which waits up to as long for a token if none is
 * cached.
 * Content mapping: text and rendered templates (the API renders Herald
 * templates into the message body; RBM has no templates of its own) become
 * contentMessage.text; "buttons" reply suggestions, "actions" dial/URL
 * suggestions; card a standalone rich card; carousel a carousel card;
 * document and image contentInfo.fileUrl (an image with a caption becomes a
 * card with the image and the caption as its description: RBM files carry
 * no text; a document's filename is not sent: RBM takes it from the URL).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jwt.h>

#include "channels/channel.h"
#include "core/phone.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/jsonr.h"
#include "core/jsonw.h"

/* Recipients are E.164 numbers. */
static int rbm_normalize(const char *in, char out[HR_ADDR_MAX], struct hr_err *err)
{
	return phone_e164(in, true, out, err);
}

#define RBM_SCOPE "https://www.googleapis.com/auth/rcsbusinessmessaging"
#define RBM_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define RBM_SIG_HEADER "X-Goog-Signature"
#define RBM_JWT_LIFETIME_S 3600          /* Google accepts at most one hour */
#define RBM_REFRESH_BEFORE_US 60000000LL /* fetch a new token 60 s before expiry */
#define RBM_FETCH_RETRY_US 5000000LL     /* after a failed fetch, wait this long, */
#define RBM_FETCH_RETRY_MAX_US 300000000LL /* doubling up to this */
#define RBM_HTTP_TIMEOUT_MS 10000L
#define RBM_RESP_MAX (64 * 1024)

#define RBM_TEXT_MAX 3072
#define RBM_SUGGESTION_TEXT_MAX 25
#define RBM_POSTBACK_MAX 2048
#define RBM_UUID_LEN 36
#define RBM_BUTTON_ID_MAX (RBM_POSTBACK_MAX - RBM_UUID_LEN - 1)
#define RBM_SUGGESTIONS_MAX 11
#define RBM_CARD_SUGGESTIONS_MAX 4
#define RBM_CARD_TITLE_MAX 200
#define RBM_CARD_DESC_MAX 2000
#define RBM_URL_MAX 2000
#define RBM_CAROUSEL_MIN 2
#define RBM_CAROUSEL_MAX 10

/* Resolved per-account state, owned by acct->priv. */
struct rbm_priv {
	char *base;         /* base_url without a trailing '/' */
	char *agent_id;     /* as configured */
	char *agent_esc;    /* URL-escaped, for query strings */
	char *client_email; /* service account: the JWT's iss */
	char *private_key;  /* service account: PEM */
	char *key_id;       /* service account: private_key_id, or NULL */
	char *token_uri;    /* service account: the JWT's aud and the token endpoint */
	char *client_token; /* webhook signature key and handshake token */

	pthread_mutex_t lock; /* guards the token cache below */
	char *token;          /* cached access token, or NULL */
	bool mask;            /* acct->mask_answers: never quote the endpoints */
	int64_t refresh_at;   /* monotonic us: fetch a new token from here on */
	int64_t expires_at;   /* monotonic us: the token is no longer valid */
	int64_t fetch_after;  /* monotonic us: no fetch before (failed or in progress) */
	int fail_streak;      /* fetches failed in a row (the retry doubles) */
	bool active;          /* a token was asked for: the refresher keeps one */
	bool used;            /* a token was asked for since the last fetch */
	char fetch_error[256];

	/* Under the refresher's lock (g_rf.lock): */
	struct rbm_priv *rf_next; /* in the refresher's list while listed */
	bool rf_listed;
	int rf_refs; /* the account's own, plus one while a fetch runs */
	atomic_bool rf_abort; /* freed mid-fetch: the fetch stops early */
};

static void rbm_priv_free(struct rbm_priv *p);
static int rf_add(struct rbm_priv *p, struct hr_err *err);

static void rbm_wipe_free(char *s)
{
	hr_secret_free(s);
}

static void rbm_priv_destroy(struct rbm_priv *p)
{
	free(p->base);
	free(p->agent_id);
	free(p->agent_esc);
	free(p->client_email);
	rbm_wipe_free(p->private_key);
	free(p->key_id);
	free(p->token_uri);
	rbm_wipe_free(p->client_token);
	rbm_wipe_free(p->token);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Number of Unicode code points in valid UTF-8 (jansson guarantees validity). */
static size_t rbm_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static bool rbm_is_http_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* ---------------------------------------------------------------------------
 * Account configuration
 * ------------------------------------------------------------------------- */

/* Copies sa[key] (a non-empty string) to *out; errors name field.key. */
static int rbm_sa_str(json_t *sa, const char *key, const char *field, bool required, char **out,
                      struct hr_err *err)
{
	json_t *v = json_object_get(sa, key);
	*out = NULL;
	if (!v && !required)
		return 0;
	if (!json_is_string(v) || !*json_string_value(v))
		return hr_fail(err, HR_EINVAL, field,
		               "%s: the service-account JSON needs \"%s\" (a non-empty string)",
		               field, key);
	*out = strdup(json_string_value(v));
	return *out ? 0 : hr_fail(err, HR_ENOMEM, field, "out of memory");
}

/* Reads the service-account JSON (client_email, private_key, token_uri). The
 * key is checked here, by signing a JWT, so a bad key stops the start. */
static int rbm_load_service_account(struct channel_account *acct, struct rbm_priv *p,
                                    struct hr_err *err)
{
	char field[96];
	channel_cfg_field(field, sizeof field, acct, "service_account");
	/* The JSON holds a private key: it stays in a file or the environment,
	 * never in the config (which the store keeps and the API shows). */
	const char *ref;
	int rc = channel_cfg_str(acct, "service_account", true, &ref, err);
	if (rc)
		return rc;
	if (strncmp(ref, "file:", 5) != 0 && strncmp(ref, "env:", 4) != 0)
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be a reference to the service-account JSON (file:/path or "
		               "env:NAME), not the JSON itself",
		               field);
	char *text = NULL;
	if ((rc = channel_cfg_secret(acct, "service_account", true, &text, err)))
		return rc;
	json_error_t je;
	json_t *sa = json_loads(text, 0, &je);
	rbm_wipe_free(text);
	if (!json_is_object(sa)) {
		/* Never quote the parser's text: it shows what the file holds
		 * ("near 'root'"), and the reference may point at anything. */
		json_decref(sa);
		explicit_bzero(&je, sizeof je);
		return hr_fail(err, HR_EINVAL, field, "%s is not a service-account JSON object",
		               field);
	}
	if ((rc = rbm_sa_str(sa, "client_email", field, true, &p->client_email, err)) ||
	    (rc = rbm_sa_str(sa, "private_key", field, true, &p->private_key, err)) ||
	    (rc = rbm_sa_str(sa, "token_uri", field, true, &p->token_uri, err)) ||
	    (rc = rbm_sa_str(sa, "private_key_id", field, false, &p->key_id, err))) {
		json_decref(sa);
		return rc;
	}
	json_decref(sa);
	char tfield[128];
	snprintf(tfield, sizeof tfield, "%s.token_uri", field);
	if ((rc = channel_url_check(acct, p->token_uri, tfield, err)))
		return rc;
	jwt_t *jwt = NULL;
	bool ok = jwt_new(&jwt) == 0 &&
	          jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)p->private_key,
	                      (int)strlen(p->private_key)) == 0;
	char *probe = ok ? jwt_encode_str(jwt) : NULL;
	jwt_free(jwt);
	if (!probe)
		return hr_fail(err, HR_EINVAL, field,
		               "%s: private_key is not a usable RSA private key (PEM)", field);
	free(probe);
	return 0;
}

static bool rbm_agent_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* Validates the account's keys and resolves its secrets into acct->priv.
 * Cleans up after itself on failure. */
static int rbm_account_load(struct channel_account *acct, struct hr_err *err)
{
	const char *base, *agent;
	char field[96];
	int rc;
	if ((rc = channel_cfg_url(acct, "base_url", NULL, &base, err)) ||
	    (rc = channel_cfg_str(acct, "agent_id", true, &agent, err)))
		return rc;
	if (!rbm_agent_ok(agent)) {
		channel_cfg_field(field, sizeof field, acct, "agent_id");
		return hr_fail(err, HR_EINVAL, field,
		               "%s must be 1..128 letters, digits, '_', '-' or '.'", field);
	}
	struct rbm_priv *p = calloc(1, sizeof *p);
	if (!p)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&p->lock, NULL);
	size_t blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	p->base = strndup(base, blen);
	p->agent_id = strdup(agent);
	char *esc = curl_easy_escape(NULL, agent, 0);
	p->agent_esc = esc ? strdup(esc) : NULL; /* ours, so free() releases it */
	curl_free(esc);
	if (!p->base || !p->agent_id || !p->agent_esc) {
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		goto fail;
	}
	if ((rc = rbm_load_service_account(acct, p, err)) ||
	    (rc = channel_cfg_secret(acct, "client_token", true, &p->client_token, err)))
		goto fail;
	/* channel_cfg_url and the token_uri check set it. */
	p->mask = acct->mask_answers;
	if ((rc = rf_add(p, err)))
		goto fail;
	acct->priv = p;
	return 0;
fail:
	rbm_priv_free(p);
	return rc;
}

static void rbm_account_free(struct channel_account *acct)
{
	rbm_priv_free(acct->priv);
	acct->priv = NULL;
}

/* ---------------------------------------------------------------------------
 * HTTP (the token endpoint and the capability check only)
 * ------------------------------------------------------------------------- */

struct rbm_buf {
	char *data;
	size_t len;
	bool truncated;
};

static size_t rbm_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct rbm_buf *b = userdata;
	size_t n = size * nmemb;
	if (b->len + n > RBM_RESP_MAX) {
		b->truncated = true;
		return n; /* keep reading, keep nothing more */
	}
	char *d = realloc(b->data, b->len + n + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, ptr, n);
	b->data = d;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/*
 * One blocking request: GET when body is NULL, else POST; stop (or NULL), once
 * set, ends it early (libcurl looks at least once a second). *status is the HTTP
 * status (0 when there was no answer: why says what went wrong); *resp the
 * answer, heap, NUL-terminated (caller frees).
 */
/* CURLOPT_XFERINFOFUNCTION: a nonzero answer aborts the transfer. */
static int rbm_on_progress(void *stop, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                           curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return atomic_load((atomic_bool *)stop) ? 1 : 0;
}

static int rbm_http(const char *url, struct curl_slist *headers, const char *body,
                    atomic_bool *stop, long *status, char **resp, char *why, size_t whysz)
{
	*status = 0;
	*resp = NULL;
	CURL *e = curl_easy_init();
	if (!e) {
		snprintf(why, whysz, "cannot start an HTTP transfer");
		return HR_ENOMEM;
	}
	char errbuf[CURL_ERROR_SIZE] = "";
	struct rbm_buf b = {0};
	/* Every option is checked: a transfer that silently lacks its timeout
	 * or its protocol restriction is worse than no transfer. */
	CURLcode cc = CURLE_OK;
#define RBM_OPT(o, v)                                                                            \
	do {                                                                                     \
		if (cc == CURLE_OK)                                                              \
			cc = curl_easy_setopt(e, o, v);                                          \
	} while (0)
	RBM_OPT(CURLOPT_URL, url);
	RBM_OPT(CURLOPT_HTTPHEADER, headers);
	if (body) {
		RBM_OPT(CURLOPT_POST, 1L);
		RBM_OPT(CURLOPT_POSTFIELDS, body);
		RBM_OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	RBM_OPT(CURLOPT_WRITEFUNCTION, rbm_on_body);
	RBM_OPT(CURLOPT_WRITEDATA, &b);
	RBM_OPT(CURLOPT_ERRORBUFFER, errbuf);
	RBM_OPT(CURLOPT_NOSIGNAL, 1L);
	RBM_OPT(CURLOPT_TIMEOUT_MS, RBM_HTTP_TIMEOUT_MS);
	RBM_OPT(CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	RBM_OPT(CURLOPT_PROTOCOLS_STR, "http,https");
	RBM_OPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	RBM_OPT(CURLOPT_FOLLOWLOCATION, 0L);
	if (cc == CURLE_OK)
		cc = http_set_tls(e);
	if (stop) {
		RBM_OPT(CURLOPT_XFERINFOFUNCTION, rbm_on_progress);
		RBM_OPT(CURLOPT_XFERINFODATA, stop);
		RBM_OPT(CURLOPT_NOPROGRESS, 0L);
	}
#undef RBM_OPT
	if (cc != CURLE_OK) {
		snprintf(why, whysz, "cannot set up the HTTP transfer: %s", curl_easy_strerror(cc));
		curl_easy_cleanup(e);
		return HR_EINTERNAL;
	}
	cc = curl_easy_perform(e);
	if (cc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	else
		snprintf(why, whysz, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
	curl_easy_cleanup(e);
	if (cc != CURLE_OK) {
		free(b.data);
		return HR_EIO;
	}
	if (b.truncated) { /* never act on half an answer */
		snprintf(why, whysz, "the answer was larger than %d bytes", RBM_RESP_MAX);
		*status = 0;
		free(b.data);
		return HR_EIO;
	}
	*resp = b.data ? b.data : strdup("");
	return *resp ? 0 : HR_ENOMEM;
}

/* ---------------------------------------------------------------------------
 * Access tokens
 * ------------------------------------------------------------------------- */

/* The signed assertion for the token endpoint (heap, caller frees) or NULL. */
static char *rbm_jwt(const struct rbm_priv *p, int64_t now_s)
{
	jwt_t *jwt = NULL;
	char *out = NULL;
	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grant(jwt, "iss", p->client_email) == 0 &&
	    jwt_add_grant(jwt, "scope", RBM_SCOPE) == 0 &&
	    jwt_add_grant(jwt, "aud", p->token_uri) == 0 &&
	    jwt_add_grant_int(jwt, "iat", (long)now_s) == 0 &&
	    jwt_add_grant_int(jwt, "exp", (long)(now_s + RBM_JWT_LIFETIME_S)) == 0 &&
	    (!p->key_id || jwt_add_header(jwt, "kid", p->key_id) == 0) &&
	    jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)p->private_key,
	                (int)strlen(p->private_key)) == 0)
		out = jwt_encode_str(jwt);
	jwt_free(jwt);
	return out;
}

/*
 * Exchanges a fresh JWT for an access token at token_uri. On success *token
 * (heap) and *ttl_us; otherwise why says what the endpoint answered.
 */
static int rbm_fetch_token(struct rbm_priv *p, char **token, int64_t *ttl_us, char *why,
                           size_t whysz)
{
	*token = NULL;
	char *assertion = rbm_jwt(p, hr_now_us() / 1000000);
	if (!assertion) {
		snprintf(why, whysz, "cannot sign the token request with the service account key");
		return HR_EINVAL;
	}
	char *body = NULL;
	char *grant = curl_easy_escape(NULL, RBM_GRANT, 0);
	int n = grant ? asprintf(&body, "grant_type=%s&assertion=%s", grant, assertion) : -1;
	curl_free(grant);
	rbm_wipe_free(assertion);
	if (n < 0) {
		snprintf(why, whysz, "out of memory");
		return HR_ENOMEM;
	}
	struct curl_slist *h =
	    curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	if (h && !curl_slist_append(h, "Expect:")) {
		curl_slist_free_all(h);
		h = NULL;
	}
	long status = 0;
	char *resp = NULL;
	int rc = h ? rbm_http(p->token_uri, h, body, &p->rf_abort, &status, &resp, why, whysz)
	           : HR_ENOMEM;
	curl_slist_free_all(h);
	rbm_wipe_free(body);
	if (rc) {
		if (rc == HR_ENOMEM)
			snprintf(why, whysz, "out of memory");
		else if (p->mask)
			snprintf(why, whysz, "the token endpoint did not answer");
		return rc;
	}
	json_error_t je;
	json_t *root = json_loads(resp, 0, &je);
	const char *tok = json_string_value(json_object_get(root, "access_token"));
	json_t *exp = json_object_get(root, "expires_in");
	if (status == 200 && tok && *tok && strlen(tok) < 4096 && json_is_integer(exp) &&
	    json_integer_value(exp) > 0) {
		long long secs = json_integer_value(exp);
		*ttl_us = (secs > 86400 ? 86400 : secs) * 1000000LL;
		*token = strdup(tok);
		rc = *token ? 0 : HR_ENOMEM;
		if (rc)
			snprintf(why, whysz, "out of memory");
	} else {
		const char *e = json_string_value(json_object_get(root, "error"));
		const char *d = json_string_value(json_object_get(root, "error_description"));
		char ex[208];
		channel_body_excerpt(resp, strlen(resp), ex, sizeof ex);
		if (e)
			snprintf(why, whysz, "token endpoint answered HTTP %ld: %.60s%s%.150s",
			         status, e, d ? ": " : "", d ? d : "");
		else
			snprintf(why, whysz, "token endpoint answered HTTP %ld without a token: %s",
			         status, ex);
		rc = HR_EAUTH;
		if (p->mask)
			snprintf(why, whysz, "token endpoint answered HTTP %ld without a token",
			         status);
	}
	json_decref(root);
	hr_secret_free(resp); /* it holds the access token */
	return rc;
}

/*
 * The refresher: one thread for every RBM account (g_rf), started with the
 * first account and gone when the last one is freed. Lock order: g_rf.lock
 * before a priv's lock; neither is held across a fetch.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* an account was added or wants a token now */
	pthread_cond_t done; /* a fetch ended (capability() waits on it) */
	struct rbm_priv *head;
	bool running;
	bool wanted; /* woken since the last look at the list */
} g_rf = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          NULL, false, false};

/* When p's next fetch is due (monotonic us; INT64_MAX: none). An account
 * is fetched for only once something asked for its token, and refreshed
 * only while it is used: one no send asked for since its last fetch lets the
 * token lapse (the next ask fetches anew). Under p->lock. */
static int64_t rf_due(struct rbm_priv *p, int64_t now)
{
	if (!p->active)
		return INT64_MAX;
	if (p->token && now < p->refresh_at)
		return p->refresh_at;
	if (p->token && !p->used) {
		p->active = false;
		return INT64_MAX;
	}
	return p->fetch_after; /* 0 (now) unless a failure holds it off */
}

/* One fetch for p, its outcome stored in p's cache. */
static void rf_fetch(struct rbm_priv *p)
{
	char *fresh = NULL;
	int64_t ttl = 0;
	char ferr[256] = "";
	int rc = rbm_fetch_token(p, &fresh, &ttl, ferr, sizeof ferr);
	int64_t now = hr_mono_us();
	pthread_mutex_lock(&p->lock);
	if (rc == 0) {
		rbm_wipe_free(p->token);
		p->token = fresh;
		p->expires_at = now + ttl;
		int64_t early = ttl / 2 < RBM_REFRESH_BEFORE_US ? ttl / 2 : RBM_REFRESH_BEFORE_US;
		p->refresh_at = p->expires_at - early;
		p->fetch_after = 0;
		p->fail_streak = 0;
		p->used = false;
		p->fetch_error[0] = '\0';
	} else {
		int64_t wait = RBM_FETCH_RETRY_US;
		for (int i = 0; i < p->fail_streak && wait < RBM_FETCH_RETRY_MAX_US; i++)
			wait *= 2;
		if (wait > RBM_FETCH_RETRY_MAX_US)
			wait = RBM_FETCH_RETRY_MAX_US;
		p->fail_streak++;
		p->fetch_after = now + wait;
		snprintf(p->fetch_error, sizeof p->fetch_error, "access token fetch failed: %.200s",
		         ferr);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc && !atomic_load(&p->rf_abort))
		hr_log(HR_LOG_WARN, "rbm", "agent %s: access token fetch failed: %.200s (next try in %lld s)",
		       p->agent_id, ferr, (long long)((p->fetch_after - now) / 1000000));
}

static void *rf_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_rf.lock);
	while (g_rf.head) {
		int64_t now = hr_mono_us();
		struct rbm_priv *next = NULL;
		int64_t due = INT64_MAX;
		for (struct rbm_priv *p = g_rf.head; p; p = p->rf_next) {
			pthread_mutex_lock(&p->lock);
			int64_t d = rf_due(p, now);
			pthread_mutex_unlock(&p->lock);
			if (d < due) {
				due = d;
				next = p;
			}
		}
		g_rf.wanted = false;
		if (due > now) {
			/* Sleep until the earliest is due, or a minute, or a wake. */
			int64_t until = due - now < 60000000LL ? due : now + 60000000LL;
			int64_t real = hr_now_us() + (until - now);
			struct timespec ts = {.tv_sec = real / 1000000, .tv_nsec = (real % 1000000) * 1000};
			while (!g_rf.wanted && g_rf.head &&
			       pthread_cond_timedwait(&g_rf.wake, &g_rf.lock, &ts) == 0)
				;
			continue;
		}
		next->rf_refs++;
		pthread_mutex_unlock(&g_rf.lock);
		rf_fetch(next);
		pthread_mutex_lock(&g_rf.lock);
		bool gone = --next->rf_refs == 0;
		pthread_cond_broadcast(&g_rf.done);
		if (gone) {
			pthread_mutex_unlock(&g_rf.lock);
			rbm_priv_destroy(next);
			pthread_mutex_lock(&g_rf.lock);
		}
	}
	g_rf.running = false;
	pthread_cond_broadcast(&g_rf.done);
	pthread_mutex_unlock(&g_rf.lock);
	return NULL;
}

/*
 * Waits (until deadline_us, monotonic) for the refresher to end once every
 * account is freed, so a process can exit (and libcurl and OpenSSL clean up)
 * with no fetch still running; a fetch for a freed account is aborted.
 * Whether it ended.
 */
bool rbm_refresher_quiesce(int64_t deadline_us)
{
	pthread_mutex_lock(&g_rf.lock);
	for (;;) {
		int64_t now = hr_mono_us();
		if (!g_rf.running || now >= deadline_us)
			break;
		int64_t real = hr_now_us() + (deadline_us - now);
		struct timespec ts = {.tv_sec = real / 1000000, .tv_nsec = (real % 1000000) * 1000};
		pthread_cond_timedwait(&g_rf.done, &g_rf.lock, &ts);
	}
	bool ended = !g_rf.running;
	pthread_mutex_unlock(&g_rf.lock);
	return ended;
}

/* Lists p (a new account) and starts the refresher if it is not running. */
static int rf_add(struct rbm_priv *p, struct hr_err *err)
{
	pthread_mutex_lock(&g_rf.lock);
	if (!g_rf.running) {
		pthread_t t;
		pthread_attr_t at;
		int rc = pthread_attr_init(&at);
		if (rc == 0) {
			rc = pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			if (rc == 0)
				rc = pthread_create(&t, &at, rf_main, NULL);
			pthread_attr_destroy(&at);
		}
		if (rc) {
			pthread_mutex_unlock(&g_rf.lock);
			return hr_fail(err, HR_ENOMEM, NULL, "cannot start the RBM token thread: %s",
			               strerror(rc));
		}
		pthread_setname_np(t, "rbm-tokens");
		g_rf.running = true;
	}
	p->rf_refs = 1;
	p->rf_listed = true;
	p->rf_next = g_rf.head;
	g_rf.head = p;
	g_rf.wanted = true;
	pthread_cond_signal(&g_rf.wake);
	pthread_mutex_unlock(&g_rf.lock);
	return 0;
}

/* The account is freed: unlists p; frees it now, or the refresher does when
 * the fetch it runs for p ends. */
static void rbm_priv_free(struct rbm_priv *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&g_rf.lock);
	bool gone = true;
	if (p->rf_listed) {
		struct rbm_priv **pp = &g_rf.head;
		while (*pp && *pp != p)
			pp = &(*pp)->rf_next;
		if (*pp)
			*pp = p->rf_next;
		p->rf_listed = false;
		gone = --p->rf_refs == 0;
		if (!gone)
			atomic_store(&p->rf_abort, true); /* its fetch runs: cut it short */
		pthread_cond_signal(&g_rf.wake); /* the last one gone: the thread ends */
	}
	pthread_mutex_unlock(&g_rf.lock);
	if (gone)
		rbm_priv_destroy(p);
}

/* Wakes the refresher: p has no usable token. */
static void rf_want(void)
{
	pthread_mutex_lock(&g_rf.lock);
	g_rf.wanted = true;
	pthread_cond_signal(&g_rf.wake);
	pthread_mutex_unlock(&g_rf.lock);
}

/* A copy of p's token if it is still valid (NULL, with why, otherwise), and
 * whether it is due for a refresh. Under p->lock. */
static char *token_copy(struct rbm_priv *p, int64_t now, bool *stale, char *why, size_t whysz)
{
	*stale = !p->token || now >= p->refresh_at;
	if (p->token && now < p->expires_at)
		return strdup(p->token);
	snprintf(why, whysz, "%s",
	         p->fetch_error[0] ? p->fetch_error : "no access token yet (it is being fetched)");
	return NULL;
}

/*
 * A usable access token (heap copy, caller wipes and frees) or NULL with why,
 * from the cache only. With wait_us > 0 (capability(), on an HTTP thread) it
 * waits up to that long for the refresher when there is none; build_send
 * passes 0 and never waits.
 */
static char *rbm_token(struct rbm_priv *p, int64_t wait_us, char *why, size_t whysz)
{
	bool stale;
	pthread_mutex_lock(&p->lock);
	char *out = token_copy(p, hr_mono_us(), &stale, why, whysz);
	int64_t fetch_after = p->fetch_after;
	bool was_active = p->active;
	p->active = p->used = true;
	pthread_mutex_unlock(&p->lock);
	if (!stale && was_active)
		return out;
	rf_want();
	if (out || wait_us <= 0 || fetch_after > hr_mono_us())
		return out; /* a failing endpoint is not waited on */
	int64_t deadline = hr_mono_us() + wait_us;
	pthread_mutex_lock(&g_rf.lock);
	for (;;) {
		pthread_mutex_lock(&p->lock);
		out = token_copy(p, hr_mono_us(), &stale, why, whysz);
		bool failed = p->fetch_after > hr_mono_us();
		pthread_mutex_unlock(&p->lock);
		int64_t now = hr_mono_us();
		if (out || failed || now >= deadline)
			break;
		int64_t real = hr_now_us() + (deadline - now);
		struct timespec ts = {.tv_sec = real / 1000000, .tv_nsec = (real % 1000000) * 1000};
		pthread_cond_timedwait(&g_rf.done, &g_rf.lock, &ts);
	}
	pthread_mutex_unlock(&g_rf.lock);
	return out;
}

/* channel_ops.await_ready: the first token came, or its fetch failed. */
static bool rbm_await_ready(const struct channel_account *acct, int64_t deadline_us)
{
	struct rbm_priv *p = acct->priv;
	bool ready = false;
	pthread_mutex_lock(&p->lock);
	p->active = p->used = true;
	pthread_mutex_unlock(&p->lock);
	rf_want();
	pthread_mutex_lock(&g_rf.lock);
	for (;;) {
		pthread_mutex_lock(&p->lock);
		ready = p->token != NULL || p->fail_streak > 0;
		pthread_mutex_unlock(&p->lock);
		int64_t now = hr_mono_us();
		if (ready || now >= deadline_us)
			break;
		int64_t real = hr_now_us() + (deadline_us - now);
		struct timespec ts = {.tv_sec = real / 1000000, .tv_nsec = (real % 1000000) * 1000};
		pthread_cond_timedwait(&g_rf.done, &g_rf.lock, &ts);
	}
	pthread_mutex_unlock(&g_rf.lock);
	return ready;
}

/* Forgets the cached token (RBM refused it): the refresher fetches anew. */
static void rbm_token_drop(struct rbm_priv *p)
{
	pthread_mutex_lock(&p->lock);
	rbm_wipe_free(p->token);
	p->token = NULL;
	p->refresh_at = p->expires_at = 0; /* fetch_after stays: a failing endpoint
	                                    * is not asked again at once */
	pthread_mutex_unlock(&p->lock);
	rf_want();
}

/* The last fetch failure, if any ("" otherwise), for 401 error texts. */
static void rbm_token_error(struct rbm_priv *p, char *out, size_t n)
{
	pthread_mutex_lock(&p->lock);
	snprintf(out, n, "%s", p->fetch_error);
	pthread_mutex_unlock(&p->lock);
}

/* "Authorization: Bearer <token>" in a new header list, or a list without it
 * when no token could be had (RBM then answers 401: a transient failure). */
static struct curl_slist *rbm_headers(struct rbm_priv *p, bool json_body, int64_t wait_us)
{
	char why[256] = "";
	char *tok = rbm_token(p, wait_us, why, sizeof why);
	struct curl_slist *h = NULL;
	if (tok) {
		char *line = NULL;
		if (asprintf(&line, "Authorization: Bearer %s", tok) >= 0) {
			h = curl_slist_append(NULL, line);
			rbm_wipe_free(line);
		}
		rbm_wipe_free(tok);
		if (!h)
			return NULL;
	}
	struct curl_slist *t;
	if (json_body) {
		if (!(t = curl_slist_append(h, "Content-Type: application/json")))
			goto oom;
		h = t;
		/* No "Expect: 100-continue" round trip before larger bodies. */
		if (!(t = curl_slist_append(h, "Expect:")))
			goto oom;
		h = t;
	} else {
		if (!(t = curl_slist_append(h, "Accept: application/json")))
			goto oom;
		h = t;
	}
	return h;
oom:
	curl_slist_free_all(h);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Recipients and ids
 * ------------------------------------------------------------------------- */

/*
 * A Herald id (ULID: 128 bits in 26 Crockford base32 digits, the first holding
 * 3) written as a UUID, 8-4-4-4-12 lower-case hex: RBM wants a UUID as the
 * messageId and the mapping is one-to-one, so a retry reuses it.
 */
static int rbm_uuid_from_id(const char *id, char out[RBM_UUID_LEN + 1])
{
	static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	unsigned char b[16] = {0};
	if (!id || strlen(id) != HR_ID_LEN)
		return HR_EINVAL;
	int bit = -2; /* 130 bits of digits, the top 2 must be zero */
	for (int i = 0; i < HR_ID_LEN; i++) {
		const char *q = strchr(b32, toupper((unsigned char)id[i]));
		if (!q)
			return HR_EINVAL;
		int v = (int)(q - b32);
		for (int k = 4; k >= 0; k--, bit++) {
			int set = (v >> k) & 1;
			if (bit < 0) {
				if (set)
					return HR_EINVAL;
			} else if (set) {
				b[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
			}
		}
	}
	snprintf(out, RBM_UUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Content validation
 * ------------------------------------------------------------------------- */

/* Button ids seen so far in one message: a press must name one button. */
struct rbm_ids {
	const char *v[RBM_SUGGESTIONS_MAX + RBM_CAROUSEL_MAX * RBM_CARD_SUGGESTIONS_MAX];
	size_t n;
};

/* "<field> <what>", naming field. */
static int rbm_bad(struct hr_err *err, const char *field, const char *what)
{
	return hr_fail(err, HR_EINVAL, field, "%s %s", field, what);
}

/* A string member: required or not, 1..max characters (max 0: no limit). */
static int rbm_text(const json_t *obj, const char *key, const char *base, bool required, size_t max,
                    const char **out, struct hr_err *err)
{
	char field[96];
	snprintf(field, sizeof field, "%s%s%s", base, *base ? "." : "", key);
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return rbm_bad(err, field, "is required");
		return 0;
	}
	if (!json_is_string(v) || !*json_string_value(v))
		return rbm_bad(err, field, "must be a non-empty string");
	if (max && rbm_chars(json_string_value(v)) > max)
		return hr_fail(err, HR_EINVAL, field, "%s is longer than %zu characters", field,
		               max);
	*out = json_string_value(v);
	return 0;
}

static int rbm_check_url(const json_t *obj, const char *key, const char *base, bool required,
                         struct hr_err *err)
{
	const char *u;
	int rc = rbm_text(obj, key, base, required, RBM_URL_MAX, &u, err);
	if (rc || !u)
		return rc;
	if (!rbm_is_http_url(u)) {
		char field[96];
		snprintf(field, sizeof field, "%s%s%s", base, *base ? "." : "", key);
		return rbm_bad(err, field, "must be an http:// or https:// URL");
	}
	return 0;
}

/* Remembers a button id; refuses a repeat within the message. */
static int rbm_id_add(struct rbm_ids *ids, const char *id, const char *field, struct hr_err *err)
{
	for (size_t i = 0; i < ids->n; i++)
		if (strcmp(ids->v[i], id) == 0)
			return hr_fail(err, HR_EINVAL, field,
			               "%s '%.64s' is used twice in this message: a press would be "
			               "ambiguous",
			               field, id);
	if (ids->n < sizeof ids->v / sizeof ids->v[0])
		ids->v[ids->n++] = id;
	return 0;
}

static bool rbm_dial_ok(const char *s)
{
	size_t n = strlen(s);
	return n >= 4 && n <= 16 && s[0] == '+' && strspn(s + 1, "0123456789") == n - 1;
}

/* "buttons" and "actions" of a message (base "") or a card ("card",
 * "cards[2]"): at most max suggestions together. */
static int rbm_check_suggestions(const json_t *obj, const char *base, size_t max,
                                 struct rbm_ids *ids, struct hr_err *err)
{
	static const char *const kinds[] = {"buttons", "actions"};
	size_t total = 0;
	char field[128];
	for (int k = 0; k < 2; k++) {
		json_t *arr = json_object_get(obj, kinds[k]);
		snprintf(field, sizeof field, "%s%s%s", base, *base ? "." : "", kinds[k]);
		if (!arr || json_is_null(arr))
			continue;
		if (!json_is_array(arr))
			return rbm_bad(err, field, "must be an array of objects");
		total += json_array_size(arr);
		if (total > max)
			return hr_fail(
			    err, HR_EINVAL, field,
			    "%s: at most %zu suggestions (buttons and actions together)%s", field,
			    max, base[0] ? " per card" : " per message");
		size_t i;
		json_t *s;
		json_array_foreach(arr, i, s)
		{
			char item[160], sub[176];
			snprintf(item, sizeof item, "%s[%zu]", field, i);
			if (!json_is_object(s))
				return rbm_bad(err, item, "must be an object");
			const char *title, *id;
			int rc =
			    rbm_text(s, "title", item, true, RBM_SUGGESTION_TEXT_MAX, &title, err);
			if (rc)
				return rc;
			rc = rbm_text(s, "id", item, k == 0, 0, &id, err);
			if (rc)
				return rc;
			snprintf(sub, sizeof sub, "%s.id", item);
			if (id && strlen(id) > RBM_BUTTON_ID_MAX)
				return hr_fail(err, HR_EINVAL, sub, "%s is longer than %d bytes",
				               sub, RBM_BUTTON_ID_MAX);
			if (id && (rc = rbm_id_add(ids, id, sub, err)))
				return rc;
			if (k == 0)
				continue;
			json_t *dial = json_object_get(s, "dial"), *url = json_object_get(s, "url");
			if ((dial != NULL) == (url != NULL))
				return rbm_bad(err, item, "needs exactly one of dial or url");
			if (dial) {
				snprintf(sub, sizeof sub, "%s.dial", item);
				if (!json_is_string(dial) || !rbm_dial_ok(json_string_value(dial)))
					return rbm_bad(err, sub,
					               "must be a phone number in E.164 format "
					               "(+ and digits)");
			} else if ((rc = rbm_check_url(s, "url", item, true, err))) {
				return rc;
			}
		}
	}
	return 0;
}

static int rbm_check_card(const json_t *card, const char *base, struct rbm_ids *ids,
                          struct hr_err *err)
{
	if (!json_is_object(card))
		return rbm_bad(err, base, "must be an object");
	const char *title, *desc;
	int rc;
	if ((rc = rbm_text(card, "title", base, false, RBM_CARD_TITLE_MAX, &title, err)) ||
	    (rc = rbm_text(card, "description", base, false, RBM_CARD_DESC_MAX, &desc, err)) ||
	    (rc = rbm_check_url(card, "media_url", base, false, err)))
		return rc;
	if (!title && !desc && !json_object_get(card, "media_url"))
		return rbm_bad(err, base, "needs at least one of title, description or media_url");
	return rbm_check_suggestions(card, base, RBM_CARD_SUGGESTIONS_MAX, ids, err);
}

/* "86400s", "3.5s": a protobuf Duration as JSON writes it. */
static bool rbm_duration_ok(const char *s)
{
	size_t d = strspn(s, "0123456789");
	if (d == 0 || d > 12)
		return false;
	s += d;
	if (*s == '.') {
		size_t f = strspn(s + 1, "0123456789");
		if (f == 0 || f > 9)
			return false;
		s += 1 + f;
	}
	return s[0] == 's' && s[1] == '\0';
}

static bool rbm_one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

static const char *const rbm_traffic[] = {"AUTHENTICATION", "TRANSACTION",     "PROMOTION",
                                          "SERVICEREQUEST", "ACKNOWLEDGEMENT", NULL};
static const char *const rbm_heights[] = {"SHORT", "MEDIUM", "TALL", NULL};
static const char *const rbm_widths[] = {"SMALL", "MEDIUM", NULL};

/* options: ttl, traffic_type, media_height, card_width; nothing else. */
static int rbm_check_options(const json_t *content, struct hr_err *err)
{
	json_t *o = json_object_get(content, "options");
	if (!o || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return rbm_bad(err, "options", "must be an object");
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		char field[HR_NAME_MAX + 16], k[HR_NAME_MAX];
		hr_utf8_copy(k, key, sizeof k);
		snprintf(field, sizeof field, "options.%s", k);
		const char *s = json_string_value(v);
		if (strcmp(key, "ttl") == 0) {
			if (!s || !rbm_duration_ok(s))
				return rbm_bad(err, field,
				               "must be a duration in seconds like \"86400s\"");
		} else if (strcmp(key, "traffic_type") == 0) {
			if (!s || !rbm_one_of(s, rbm_traffic))
				return rbm_bad(
				    err, field,
				    "must be one of AUTHENTICATION, TRANSACTION, PROMOTION, "
				    "SERVICEREQUEST, ACKNOWLEDGEMENT");
		} else if (strcmp(key, "media_height") == 0) {
			if (!s || !rbm_one_of(s, rbm_heights))
				return rbm_bad(err, field, "must be SHORT, MEDIUM or TALL");
		} else if (strcmp(key, "card_width") == 0) {
			if (!s || !rbm_one_of(s, rbm_widths))
				return rbm_bad(err, field, "must be SMALL or MEDIUM");
		} else {
			return rbm_bad(err, field,
			               "is not an rcs option (ttl, traffic_type, media_height, "
			               "card_width)");
		}
	}
	return 0;
}

/* Herald templates are rendered by the API into the body, sent as text. */
static int rbm_check_template(const json_t *content, struct hr_err *err)
{
	json_t *t = json_object_get(content, "template");
	if (!json_is_object(t))
		return rbm_bad(err, "template", "must be an object");
	const char *s;
	int rc;
	if ((rc = rbm_text(t, "name", "template", true, 0, &s, err)) ||
	    (rc = rbm_text(t, "language", "template", true, 0, &s, err)))
		return rc;
	static const char *const unsupported[] = {"header", "buttons"};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(t, unsupported[i]);
		if (v && !json_is_null(v)) {
			char field[32];
			snprintf(field, sizeof field, "template.%s", unsupported[i]);
			return rbm_bad(err, field,
			               "is not supported on rcs (templates are sent as text; use "
			               "card, image or buttons instead)");
		}
	}
	json_t *params = json_object_get(t, "parameters");
	if (params && !json_is_null(params) && !json_is_array(params))
		return rbm_bad(err, "template.parameters", "must be an array of strings");
	size_t i;
	json_t *p;
	json_array_foreach(params, i, p)
	{
		if (!json_is_string(p)) {
			char field[48];
			snprintf(field, sizeof field, "template.parameters[%zu]", i);
			return rbm_bad(err, field, "must be a string");
		}
	}
	return 0;
}

static int rbm_validate(const json_t *content, struct hr_err *err)
{
	if (!json_is_object(content))
		return hr_fail(err, HR_EINVAL, "content", "content must be a JSON object");
	const char *type = json_string_value(json_object_get(content, "type"));
	if (!type)
		return hr_fail(err, HR_EINVAL, "type", "type is required");
	struct rbm_ids ids = {.n = 0};
	const char *s;
	int rc = rbm_check_options(content, err);
	if (rc)
		return rc;
	if (strcmp(type, "text") == 0) {
		rc = rbm_text(content, "text", "", true, RBM_TEXT_MAX, &s, err);
	} else if (strcmp(type, "template") == 0) {
		rc = rbm_check_template(content, err);
	} else if (strcmp(type, "card") == 0) {
		rc = rbm_check_card(json_object_get(content, "card"), "card", &ids, err);
	} else if (strcmp(type, "carousel") == 0) {
		json_t *cards = json_object_get(content, "cards");
		if (!json_is_array(cards))
			return rbm_bad(err, "cards", "must be an array of cards");
		size_t n = json_array_size(cards);
		if (n < RBM_CAROUSEL_MIN || n > RBM_CAROUSEL_MAX)
			return hr_fail(err, HR_EINVAL, "cards",
			               "cards must hold %d to %d cards (has %zu)", RBM_CAROUSEL_MIN,
			               RBM_CAROUSEL_MAX, n);
		size_t i;
		json_t *c;
		json_array_foreach(cards, i, c)
		{
			char base[32];
			snprintf(base, sizeof base, "cards[%zu]", i);
			if ((rc = rbm_check_card(c, base, &ids, err)))
				return rc;
		}
	} else if (strcmp(type, "document") == 0) {
		json_t *d = json_object_get(content, "document");
		if (!json_is_object(d))
			return rbm_bad(err, "document", "must be an object");
		if ((rc = rbm_check_url(d, "url", "document", true, err)) ||
		    (rc = rbm_text(d, "filename", "document", false, 0, &s, err)))
			return rc;
		json_t *cap = json_object_get(d, "caption");
		if (cap && !json_is_null(cap))
			return rbm_bad(err, "document.caption",
			               "is not supported on rcs (RBM files carry no text; send a "
			               "text message with it)");
	} else if (strcmp(type, "image") == 0) {
		json_t *im = json_object_get(content, "image");
		if (!json_is_object(im))
			return rbm_bad(err, "image", "must be an object");
		if ((rc = rbm_check_url(im, "url", "image", true, err)) ||
		    (rc = rbm_text(im, "caption", "image", false, RBM_CARD_DESC_MAX, &s, err)))
			return rc;
	} else {
		char t[32];
		hr_utf8_copy(t, type, sizeof t);
		return hr_fail(err, HR_EINVAL, "type",
		               "type '%s' is not supported on rcs (text, template, card, carousel, "
		               "document, image)",
		               t);
	}
	if (rc)
		return rc;
	return rbm_check_suggestions(content, "", RBM_SUGGESTIONS_MAX, &ids, err);
}

/* ---------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------- */

/* "<message uuid>|<button id>" */
static json_t *rbm_postback(const char *ref, const char *id)
{
	char *s = NULL;
	if (asprintf(&s, "%s|%s", ref, id) < 0)
		return NULL;
	json_t *j = json_string(s);
	free(s);
	return j;
}

/* The suggestions[] of a message or a card, or NULL when it has none. */
static json_t *rbm_suggestions(const json_t *obj, const char *ref)
{
	json_t *buttons = json_object_get(obj, "buttons"),
	       *actions = json_object_get(obj, "actions");
	if (json_array_size(buttons) + json_array_size(actions) == 0)
		return NULL;
	json_t *out = json_array();
	size_t i;
	json_t *b;
	json_array_foreach(buttons, i, b)
	{
		json_array_append_new(
		    out, json_pack("{s:{s:O, s:o}}", "reply", "text", json_object_get(b, "title"),
		                   "postbackData",
		                   rbm_postback(ref, json_string_value(json_object_get(b, "id")))));
	}
	json_array_foreach(actions, i, b)
	{
		char dflt[32];
		snprintf(dflt, sizeof dflt, "action_%zu", i);
		const char *id = json_string_value(json_object_get(b, "id"));
		json_t *a = json_pack("{s:O, s:o}", "text", json_object_get(b, "title"),
		                      "postbackData", rbm_postback(ref, id ? id : dflt));
		json_t *dial = json_object_get(b, "dial");
		if (dial)
			json_object_set_new(a, "dialAction",
			                    json_pack("{s:O}", "phoneNumber", dial));
		else
			json_object_set_new(a, "openUrlAction",
			                    json_pack("{s:O}", "url", json_object_get(b, "url")));
		json_array_append_new(out, json_pack("{s:o}", "action", a));
	}
	return out;
}

/* A CardContent: title, description, media, suggestions (those present). */
static json_t *rbm_card_content(const json_t *card, const char *ref, const char *height)
{
	json_t *cc = json_object();
	static const char *const keys[] = {"title", "description"};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(card, keys[i]);
		if (json_is_string(v))
			json_object_set(cc, keys[i], v);
	}
	json_t *media = json_object_get(card, "media_url");
	if (json_is_string(media))
		json_object_set_new(
		    cc, "media",
		    json_pack("{s:s, s:{s:O}}", "height", height, "contentInfo", "fileUrl", media));
	json_t *sugg = rbm_suggestions(card, ref);
	if (sugg)
		json_object_set_new(cc, "suggestions", sugg);
	return cc;
}

static json_t *rbm_standalone(json_t *card_content)
{
	return json_pack("{s:{s:{s:s, s:o}}}", "richCard", "standaloneCard", "cardOrientation",
	                 "VERTICAL", "cardContent", card_content);
}

/* The AgentMessage for validated content. */
static json_t *rbm_agent_message(const json_t *content, const struct message *m, const char *ref,
                                 struct hr_err *err)
{
	const char *type = json_string_value(json_object_get(content, "type"));
	json_t *opts = json_object_get(content, "options");
	const char *height = json_string_value(json_object_get(opts, "media_height"));
	const char *width = json_string_value(json_object_get(opts, "card_width"));
	json_t *cm = NULL;
	if (strcmp(type, "text") == 0) {
		cm = json_pack("{s:O}", "text", json_object_get(content, "text"));
	} else if (strcmp(type, "template") == 0) {
		if (!m->body || !*m->body) {
			hr_fail(err, HR_EINVAL, "template",
			        "the template rendered to an empty body");
			return NULL;
		}
		if (rbm_chars(m->body) > RBM_TEXT_MAX) {
			hr_fail(err, HR_EINVAL, "template",
			        "the rendered template is longer than %d characters", RBM_TEXT_MAX);
			return NULL;
		}
		cm = json_pack("{s:s}", "text", m->body);
	} else if (strcmp(type, "card") == 0) {
		cm = rbm_standalone(rbm_card_content(json_object_get(content, "card"), ref,
		                                     height ? height : "MEDIUM"));
	} else if (strcmp(type, "carousel") == 0) {
		json_t *list = json_array();
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(content, "cards"), i, c)
		{
			json_array_append_new(list,
			                      rbm_card_content(c, ref, height ? height : "MEDIUM"));
		}
		cm = json_pack("{s:{s:{s:s, s:o}}}", "richCard", "carouselCard", "cardWidth",
		               width ? width : "MEDIUM", "cardContents", list);
	} else if (strcmp(type, "document") == 0) {
		cm = json_pack("{s:{s:O}}", "contentInfo", "fileUrl",
		               json_object_get(json_object_get(content, "document"), "url"));
	} else { /* image */
		json_t *im = json_object_get(content, "image");
		json_t *cap = json_object_get(im, "caption");
		if (json_is_string(cap)) {
			json_t *card = json_pack("{s:O, s:O}", "description", cap, "media_url",
			                         json_object_get(im, "url"));
			cm =
			    rbm_standalone(rbm_card_content(card, ref, height ? height : "MEDIUM"));
			json_decref(card);
		} else {
			cm = json_pack("{s:{s:O}}", "contentInfo", "fileUrl",
			               json_object_get(im, "url"));
		}
	}
	json_t *sugg = cm ? rbm_suggestions(content, ref) : NULL;
	if (sugg)
		json_object_set_new(cm, "suggestions", sugg);
	json_t *root = cm ? json_pack("{s:o}", "contentMessage", cm) : NULL;
	const char *ttl = json_string_value(json_object_get(opts, "ttl"));
	const char *traffic = json_string_value(json_object_get(opts, "traffic_type"));
	if (root && ttl)
		json_object_set_new(root, "ttl", json_string(ttl));
	if (root && traffic)
		json_object_set_new(root, "messageTrafficType", json_string(traffic));
	if (!root)
		hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	return root;
}

/*
 * the AgentMessage of a text (or a rendered template) without
 * suggestions, written directly (core/jsonw.h): {"contentMessage":{"text":
 * ..},"ttl":..,"messageTrafficType":..}, byte for byte what
 * rbm_agent_message and json_dumps write. Everything else (suggestions,
 * cards, carousels, media, a template body it would refuse) is declined
 * (NULL) and built by rbm_agent_message: cards and carousels are genuinely
 * variable, and declining keeps its errors exactly as they are.
 */
static char *rbm_body_fast(const json_t *content, const struct message *m)
{
	const char *type = json_string_value(json_object_get(content, "type"));
	const char *text;
	if (json_array_size(json_object_get(content, "buttons")) +
	        json_array_size(json_object_get(content, "actions")) >
	    0)
		return NULL;
	if (strcmp(type, "text") == 0)
		text = json_string_value(json_object_get(content, "text"));
	else if (strcmp(type, "template") == 0 && m->body && *m->body &&
	         rbm_chars(m->body) <= RBM_TEXT_MAX)
		text = m->body;
	else
		return NULL;
	json_t *opts = json_object_get(content, "options");
	const char *ttl = json_string_value(json_object_get(opts, "ttl"));
	const char *traffic = json_string_value(json_object_get(opts, "traffic_type"));
	struct jsonw w;
	/* Bounded by its content (escaping makes at most six bytes of one). */
	jsonw_init(&w, 8 * (strlen(m->content) + (m->body ? strlen(m->body) : 0)) + 1024);
	jsonw_obj(&w);
	jsonw_key(&w, "contentMessage");
	jsonw_obj(&w);
	jsonw_kstr(&w, "text", text);
	jsonw_obj_end(&w);
	if (ttl)
		jsonw_kstr(&w, "ttl", ttl);
	if (traffic)
		jsonw_kstr(&w, "messageTrafficType", traffic);
	jsonw_obj_end(&w);
	return jsonw_finish(&w, NULL, NULL);
}

static int rbm_build_send(const struct channel_account *acct, const struct message *m,
                          struct http_req *out, struct hr_err *err)
{
	struct rbm_priv *p = acct->priv;
	memset(out, 0, sizeof *out);
	char ref[RBM_UUID_LEN + 1];
	if (rbm_uuid_from_id(m->id, ref) != 0)
		return hr_fail(err, HR_EINVAL, "id", "message id '%.32s' is not a Herald id",
		               m->id);
	/* The messageId is ours: it is the provider id even when an answer
	 * (409 for a retry of an accepted send) does not echo it. */
	hr_strlcpy(out->provider_id, ref, sizeof out->provider_id);
	char to[HR_ADDR_MAX];
	int rc = rbm_normalize(m->recipient, to, err);
	if (rc)
		return rc;
	json_error_t je;
	json_t *content = m->content ? json_loads(m->content, 0, &je) : NULL;
	if (!content)
		return hr_fail(err, HR_EINVAL, "content", "message content is not valid JSON");
	if ((rc = rbm_validate(content, err)) != 0) {
		json_decref(content);
		return rc;
	}
	out->body = channel_fast_json ? rbm_body_fast(content, m) : NULL;
	if (out->body) {
		channel_fast_json_hits++;
	} else { /* switched off, or declined: jansson's way */
		json_t *root = rbm_agent_message(content, m, ref, err);
		if (!root) {
			json_decref(content);
			return err && err->code ? err->code : HR_ENOMEM;
		}
		out->body = json_dumps(root, JSON_COMPACT);
		json_decref(root);
	}
	json_decref(content);
	if (out->body &&
	    asprintf(&out->url, "%s/v1/phones/%s/agentMessages?messageId=%s&agentId=%s", p->base,
	             to, ref, p->agent_esc) < 0)
		out->url = NULL;
	if (out->body && out->url)
		out->headers = rbm_headers(p, true, 0); /* never waits */
	if (!out->body || !out->url || !out->headers) {
		http_req_clear(out);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	out->body_len = strlen(out->body);
	return 0;
}

/* The last path segment of "phones/+1.../agentMessages/{id}", if it fits. */
static bool rbm_name_id(const char *name, char *out, size_t n)
{
	const char *slash = name ? strrchr(name, '/') : NULL;
	if (!slash || !slash[1] || strlen(slash + 1) >= n || !strstr(name, "/agentMessages/"))
		return false;
	hr_strlcpy(out, slash + 1, n);
	return true;
}

/* The first UUID-shaped word in s (an ALREADY_EXISTS message may name it). */
static bool rbm_find_uuid(const char *s, char out[RBM_UUID_LEN + 1])
{
	static const int dash[] = {8, 13, 18, 23};
	for (; s && *s; s++) {
		bool ok = true;
		for (int i = 0; ok && i < RBM_UUID_LEN; i++) {
			bool want_dash =
			    i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
			ok = want_dash ? s[i] == '-' : isxdigit((unsigned char)s[i]) != 0;
		}
		if (ok && !isxdigit((unsigned char)s[RBM_UUID_LEN])) {
			memcpy(out, s, RBM_UUID_LEN);
			out[RBM_UUID_LEN] = '\0';
			return true;
		}
	}
	return false;
}

/*
 * a success answer's "name" read without a jansson tree
 * (core/jsonr.h), its last segment the provider id. true and out filled
 * (OK) only when jsonr reads the answer and the name is a string that
 * rbm_name_id takes; anything else goes the jansson way, which decides as
 * before.
 */
static bool rbm_sent_fast(const char *body, size_t len, struct send_outcome *out)
{
	struct jsonr r;
	char name[512];
	if (jsonr_parse(&r, body, len) != 0 ||
	    !jsonr_string(&r, jsonr_get(&r, 0, "name"), name, sizeof name, NULL) ||
	    !rbm_name_id(name, out->provider_id, sizeof out->provider_id)) {
		out->provider_id[0] = '\0';
		return false;
	}
	out->cls = OUTCOME_OK;
	channel_fast_json_hits++;
	return true;
}

/*
 * Classifies an answer to a send. 404 is the provider telling us the number
 * cannot receive RCS: permanent, with a code the fallback route can act on.
 * 409 ALREADY_EXISTS means an earlier attempt of this messageId was accepted.
 * 401 is transient: the token expired or was revoked, or none could be had
 * (the cache is dropped, so the retry fetches a new one).
 */
static void rbm_parse_send(const struct channel_account *acct, long http_status, const char *body,
                           size_t len, const char *retry_after, struct send_outcome *out)
{
	struct rbm_priv *p = acct->priv;
	memset(out, 0, sizeof *out);
	out->retry_after_us = channel_retry_after_us(retry_after);
	if (channel_network_outcome(http_status, body, len, out))
		return;
	if (http_status >= 200 && http_status < 300 && channel_fast_json &&
	    rbm_sent_fast(body, len, out))
		return;
	json_error_t je;
	json_t *root = (body && len) ? json_loadb(body, len, 0, &je) : NULL;
	json_t *e = json_object_get(root, "error");
	const char *gstatus = json_string_value(json_object_get(e, "status"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (http_status >= 200 && http_status < 300) {
		if (rbm_name_id(json_string_value(json_object_get(root, "name")), out->provider_id,
		                sizeof out->provider_id)) {
			out->cls = OUTCOME_OK;
		} else {
			out->cls = OUTCOME_TRANSIENT;
			snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
			hr_strlcpy(out->error_text, "success answer without an agentMessages name",
			           sizeof out->error_text);
		}
		json_decref(root);
		return;
	}
	if (gstatus)
		hr_utf8_copy(out->error_code, gstatus, sizeof out->error_code);
	else
		snprintf(out->error_code, sizeof out->error_code, "http_%ld", http_status);
	if (msg)
		hr_utf8_copy(out->error_text, msg, sizeof out->error_text);
	else
		channel_body_excerpt(body, len, out->error_text, sizeof out->error_text);
	if (!out->error_text[0])
		snprintf(out->error_text, sizeof out->error_text, "HTTP %ld", http_status);

	if (http_status == 409 && (!gstatus || strcmp(gstatus, "ALREADY_EXISTS") == 0)) {
		/* Accepted before (the answer to that attempt was lost). */
		char id[RBM_UUID_LEN + 1];
		out->cls = OUTCOME_OK;
		if (rbm_find_uuid(msg, id))
			hr_strlcpy(out->provider_id, id, sizeof out->provider_id);
		out->error_code[0] = '\0';
		out->error_text[0] = '\0';
	} else if (http_status == 404) {
		out->cls = OUTCOME_PERMANENT;
		hr_strlcpy(out->error_code, "not_rcs_capable", sizeof out->error_code);
		hr_strlcpy(out->error_text, "recipient is not RCS-capable (404 NOT_FOUND)",
		           sizeof out->error_text);
	} else if (http_status == 401) {
		out->cls = OUTCOME_TRANSIENT;
		rbm_token_drop(p);
		char why[256];
		rbm_token_error(p, why, sizeof why);
		if (why[0]) {
			size_t l = strlen(out->error_text);
			snprintf(out->error_text + l, sizeof out->error_text - l, " (%s)", why);
		}
	} else if (http_status == 429 || (gstatus && strcmp(gstatus, "RESOURCE_EXHAUSTED") == 0)) {
		/* The agent's (the Google Cloud project's) quota: account-wide. */
		out->cls = OUTCOME_RATE_LIMITED;
		out->rate_scope = RATE_SCOPE_ACCOUNT;
	} else {
		/* 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED: permanent; 5xx transient */
		channel_http_outcome(out, http_status);
	}
	json_decref(root);
}

/* ---------------------------------------------------------------------------
 * Capability check
 * ------------------------------------------------------------------------- */

/*
 * Asks RBM which RCS features the number supports (blocking, 10 s at most).
 * 0 and *features (an array, caller decrefs); HR_ENOTFOUND when it cannot
 * receive RCS; HR_EBUSY when RBM could not answer (network, 5xx, 429, a
 * refused token), err saying what happened.
 */
static int rbm_capability(const struct channel_account *acct, const char *recipient,
                          json_t **features, struct hr_err *err)
{
	struct rbm_priv *p = acct->priv;
	*features = NULL;
	char to[HR_ADDR_MAX];
	int rc = rbm_normalize(recipient, to, err);
	if (rc)
		return rc;
	unsigned char r[16];
	hr_random_bytes(r, sizeof r);
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	char url[512];
	int n =
	    snprintf(url, sizeof url,
	             "%s/v1/phones/%s/capabilities?requestId=%02x%02x%02x%02x-%02x%02x-%02x%02x-"
	             "%02x%02x-%02x%02x%02x%02x%02x%02x&agentId=%s",
	             p->base, to, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
	             r[11], r[12], r[13], r[14], r[15], p->agent_esc);
	if (n < 0 || (size_t)n >= sizeof url)
		return hr_fail(err, HR_EINVAL, "base_url", "the capability URL is too long");
	struct curl_slist *h = rbm_headers(p, false, RBM_HTTP_TIMEOUT_MS * 1000LL);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	long status = 0;
	char *resp = NULL, why[256] = "";
	rc = rbm_http(url, h, NULL, NULL, &status, &resp, why, sizeof why);
	curl_slist_free_all(h);
	if (rc)
		return hr_fail(err, HR_EBUSY, "to", "RBM did not answer the capability check: %s",
		               why);
	json_error_t je;
	json_t *root = json_loads(resp, 0, &je);
	json_t *e = json_object_get(root, "error");
	const char *gstatus = json_string_value(json_object_get(e, "status"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	char ex[208];
	channel_body_excerpt(resp, strlen(resp), ex, sizeof ex);
	free(resp);
	json_t *f = json_object_get(root, "features");
	if (status == 200 && (!f || json_is_array(f))) {
		*features = f ? json_incref(f) : json_array();
		rc = *features ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	} else if (status == 200) {
		rc = hr_fail(err, HR_EBUSY, "to", "RBM answered the capability check with %s", ex);
	} else if (status == 404) {
		rc = hr_fail(err, HR_ENOTFOUND, "to", "%s is not RCS-capable (404 NOT_FOUND)", to);
	} else {
		if (status == 401)
			rbm_token_drop(p);
		char detail[256];
		rbm_token_error(p, detail, sizeof detail);
		char m[200];
		hr_utf8_copy(m, msg ? msg : ex, sizeof m);
		rc = hr_fail(err, HR_EBUSY, "to",
		             "RBM refused the capability check: HTTP %ld %s: %s%s%s", status,
		             gstatus ? gstatus : "", m, status == 401 && detail[0] ? "; " : "",
		             status == 401 ? detail : "");
	}
	json_decref(root);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

/* RBM's webhook set-up: POST {"clientToken","secret"}; echo the secret. */
static int rbm_webhook_handshake(const struct channel_account *acct, const struct wh_request *req,
                                 int *status, char **body)
{
	const struct rbm_priv *p = acct->priv;
	if (strcmp(req->method, "POST") != 0 || !req->body ||
	    !memmem(req->body, req->body_len, "clientToken", 11))
		return 0;
	json_error_t je;
	json_t *root = json_loadb(req->body, req->body_len, 0, &je);
	const char *tok = json_string_value(json_object_get(root, "clientToken"));
	const char *secret = json_string_value(json_object_get(root, "secret"));
	bool ok = tok && secret && !json_object_get(root, "message") &&
	          hr_consteq(tok, strlen(tok), p->client_token, strlen(p->client_token));
	if (ok) {
		*status = 200;
		*body = strdup(secret);
	}
	json_decref(root);
	if (!ok)
		return 0; /* not ours: the signature check refuses it */
	return *body ? 1 : HR_ENOMEM;
}

/* The base64 message.data of a Pub/Sub push (borrowed from root) or NULL. */
static const char *rbm_envelope_data(json_t *root)
{
	return json_string_value(json_object_get(json_object_get(root, "message"), "data"));
}

static int rbm_webhook_verify(const struct channel_account *acct, const struct wh_request *req,
                              struct hr_err *err)
{
	const struct rbm_priv *p = acct->priv;
	const char *sig = req->header ? req->header(req->ctx, RBM_SIG_HEADER) : NULL;
	if (!sig || !*sig)
		return hr_fail(err, HR_EAUTH, RBM_SIG_HEADER, "missing %s header", RBM_SIG_HEADER);
	while (*sig == ' ')
		sig++;
	size_t sl = strlen(sig);
	while (sl > 0 && sig[sl - 1] == ' ')
		sl--;
	/* The signature covers the decoded message.data, so the envelope is
	 * parsed first; nothing from it is used unless the signature holds. */
	json_error_t je;
	json_t *root = req->body ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
	const char *data = rbm_envelope_data(root);
	size_t dlen = 0;
	unsigned char *raw = data ? hr_b64_decode(data, strlen(data), &dlen) : NULL;
	json_decref(root);
	if (!raw)
		return hr_fail(err, HR_EAUTH, RBM_SIG_HEADER,
		               "cannot verify %s: the body has no base64 message.data",
		               RBM_SIG_HEADER);
	char want[89];
	hr_hmac_sha512_b64(p->client_token, strlen(p->client_token), raw, dlen, want);
	free(raw);
	if (!hr_consteq(sig, sl, want, strlen(want)))
		return hr_fail(
		    err, HR_EAUTH, RBM_SIG_HEADER,
		    "%s does not match message.data (wrong client token or altered body)",
		    RBM_SIG_HEADER);
	return 0;
}

/* Decodes message.data into a JSON object (caller decrefs), or NULL. */
static json_t *rbm_decode_event(json_t *root)
{
	const char *data = rbm_envelope_data(root);
	size_t dlen = 0;
	unsigned char *raw = data ? hr_b64_decode(data, strlen(data), &dlen) : NULL;
	if (!raw)
		return NULL;
	json_error_t je;
	json_t *ev = json_loadb((const char *)raw, dlen, 0, &je);
	free(raw);
	if (ev && !json_is_object(ev)) {
		json_decref(ev);
		ev = NULL;
	}
	return ev;
}

/* Pub/Sub's message id (a redelivery repeats it), else the event's own id. */
static void rbm_webhook_dedupe_key(const struct wh_request *req, char out[128])
{
	out[0] = '\0';
	json_error_t je;
	json_t *root = req->body ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
	const char *id =
	    json_string_value(json_object_get(json_object_get(root, "message"), "messageId"));
	if (id && *id && strlen(id) < 120) {
		snprintf(out, 128, "ps:%s", id);
	} else {
		json_t *ev = rbm_decode_event(root);
		const char *eid = json_string_value(json_object_get(ev, "eventId"));
		const char *mid = json_string_value(json_object_get(ev, "messageId"));
		if (eid && *eid && strlen(eid) < 120)
			snprintf(out, 128, "ev:%s", eid);
		else if (mid && *mid && strlen(mid) < 120 && !json_object_get(ev, "eventType"))
			snprintf(out, 128, "um:%s", mid);
		json_decref(ev);
	}
	json_decref(root);
}

/* Copies ev[key] (a non-empty string that fits) into dst; names data.key. */
static int rbm_str(json_t *ev, const char *key, bool required, char *dst, size_t n,
                   struct hr_err *err)
{
	char path[64];
	snprintf(path, sizeof path, "data.%s", key);
	json_t *v = json_object_get(ev, key);
	if (!v)
		return required ? hr_fail(err, HR_EINVAL, path, "%s is missing", path) : 0;
	if (!json_is_string(v) || !*json_string_value(v))
		return hr_fail(err, HR_EINVAL, path, "%s must be a non-empty string", path);
	if (strlen(json_string_value(v)) >= n)
		return hr_fail(err, HR_EINVAL, path, "%s is too long", path);
	hr_utf8_copy(dst, json_string_value(v), n);
	return 0;
}

/* sendTime: kept as given and as microseconds; optional. */
static int rbm_send_time(json_t *ev, char *ts, size_t tsn, int64_t *us, struct hr_err *err)
{
	json_t *v = json_object_get(ev, "sendTime");
	if (!v)
		return 0;
	const char *s = json_string_value(v);
	if (!s || strlen(s) >= tsn || hr_time_parse(s, us) != 0)
		return hr_fail(err, HR_EINVAL, "data.sendTime",
		               "data.sendTime must be an RFC 3339 time");
	if (ts)
		hr_strlcpy(ts, s, tsn);
	return 0;
}

static int rbm_dupstr(json_t *obj, const char *key, const char *path, char **dst,
                      struct hr_err *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return hr_fail(err, HR_EINVAL, path, "%s must be a string", path);
	free(*dst);
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : hr_fail(err, HR_ENOMEM, path, "out of memory");
}

/* A user message: text, a suggestion press, a file or a location. */
static int rbm_parse_user_message(json_t *ev, struct wh_parsed *out, struct hr_err *err)
{
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in)
		return hr_fail(err, HR_ENOMEM, "data", "out of memory");
	/* `in` is owned by out now: the caller's rollback frees what is set. */
	int rc;
	if ((rc = rbm_str(ev, "messageId", true, in->provider_msg_id, sizeof in->provider_msg_id,
	                  err)) ||
	    (rc = rbm_str(ev, "senderPhoneNumber", true, in->from, sizeof in->from, err)) ||
	    (rc = rbm_send_time(ev, NULL, 40, &in->provider_at, err)))
		return rc;
	json_t *sr = json_object_get(ev, "suggestionResponse");
	json_t *file = json_object_get(ev, "userFile");
	json_t *loc = json_object_get(ev, "location");
	if (json_is_string(json_object_get(ev, "text"))) {
		hr_strlcpy(in->kind, "text", sizeof in->kind);
		return rbm_dupstr(ev, "text", "data.text", &in->text, err);
	}
	if (sr) {
		if (!json_is_object(sr))
			return hr_fail(err, HR_EINVAL, "data.suggestionResponse",
			               "data.suggestionResponse must be an object");
		const char *pb = json_string_value(json_object_get(sr, "postbackData"));
		if (!pb)
			return hr_fail(err, HR_EINVAL, "data.suggestionResponse.postbackData",
			               "data.suggestionResponse.postbackData must be a string");
		hr_strlcpy(in->kind, "button", sizeof in->kind);
		const char *bar = strchr(pb, '|');
		char ref[RBM_UUID_LEN + 1];
		if (bar && bar - pb == RBM_UUID_LEN && rbm_find_uuid(pb, ref)) {
			hr_strlcpy(in->context_id, ref, sizeof in->context_id);
			pb = bar + 1; /* ours: "<message uuid>|<button id>" */
		}
		if (!(in->payload = strdup(pb)))
			return hr_fail(err, HR_ENOMEM, "data", "out of memory");
		return rbm_dupstr(sr, "text", "data.suggestionResponse.text", &in->text, err);
	}
	if (json_is_object(file)) {
		hr_strlcpy(in->kind, "file", sizeof in->kind);
		json_t *pl = json_object_get(file, "payload");
		return rbm_dupstr(pl, "fileUri", "data.userFile.payload.fileUri", &in->text, err);
	}
	if (json_is_object(loc)) {
		hr_strlcpy(in->kind, "location", sizeof in->kind);
		json_t *la = json_object_get(loc, "latitude"),
		       *lo = json_object_get(loc, "longitude");
		if (json_is_number(la) && json_is_number(lo) &&
		    asprintf(&in->text, "%.7f,%.7f", json_number_value(la), json_number_value(lo)) <
		        0)
			in->text = NULL;
		return 0;
	}
	hr_strlcpy(in->kind, "other", sizeof in->kind); /* recorded, without text */
	return 0;
}

static int rbm_parse_event(json_t *ev, struct wh_parsed *out, struct hr_err *err)
{
	json_t *et = json_object_get(ev, "eventType");
	if (!json_is_string(et))
		return hr_fail(err, HR_EINVAL, "data.eventType", "data.eventType must be a string");
	const char *type = json_string_value(et);
	enum msg_status st;
	bool revoked = false;
	if (strcmp(type, "DELIVERED") == 0) {
		st = MSG_DELIVERED;
	} else if (strcmp(type, "READ") == 0) {
		st = MSG_READ;
	} else if (strcmp(type, "TTL_EXPIRATION_REVOKED") == 0) {
		st = MSG_UNDELIVERED; /* a server event: its ttl ran out, RBM took it back */
		revoked = true;
	} else {
		/* IS_TYPING, TTL_EXPIRATION_REVOKE_FAILED (it may still arrive),
		 * subscription events: nothing to apply. */
		return 0;
	}
	struct wh_status tmp = {.status = st};
	if (revoked) {
		hr_strlcpy(tmp.error_code, type, sizeof tmp.error_code);
		hr_strlcpy(tmp.error_text,
		           "the message expired (ttl) before delivery and was revoked",
		           sizeof tmp.error_text);
	}
	int rc;
	if ((rc = rbm_str(ev, "messageId", true, tmp.provider_id, sizeof tmp.provider_id, err)) ||
	    (rc =
	         rbm_send_time(ev, tmp.provider_ts, sizeof tmp.provider_ts, &tmp.provider_at, err)))
		return rc;
	struct wh_status *dst = wh_parsed_add_status(out);
	if (!dst)
		return hr_fail(err, HR_ENOMEM, "data", "out of memory");
	*dst = tmp;
	return 0;
}

/*
 * The fast way (channel_fast_json): the push and the event inside it read
 * with jsonr (core/jsonr.h) instead of jansson trees. Each rbm_f* function
 * takes what its jansson twin accepts and records the same; wherever the
 * twin would fail it returns false instead, as for any text jsonr refuses
 * and for a shared location (its coordinates are jansson's doubles), and
 * the caller drops what was added and reads the push the jansson way,
 * which records it or gives the error.
 */

/* rbm_str. */
static bool rbm_fstr(const struct jsonr *r, int ev, const char *key, bool required, char *dst,
                     size_t n)
{
	int v = jsonr_get(r, ev, key);
	size_t len;
	if (v < 0)
		return !required;
	/* A string shorter than n copies whole: hr_utf8_copy's cut never falls. */
	return jsonr_string(r, v, dst, n, &len) && len > 0;
}

/* rbm_send_time; ts may be NULL. */
static bool rbm_fsend_time(const struct jsonr *r, int ev, char *ts, size_t tsn, int64_t *us)
{
	int v = jsonr_get(r, ev, "sendTime");
	char buf[64];
	if (v < 0)
		return true;
	if (tsn > sizeof buf || !jsonr_string(r, v, buf, tsn, NULL) || hr_time_parse(buf, us) != 0)
		return false;
	if (ts)
		hr_strlcpy(ts, buf, tsn);
	return true;
}

/* rbm_dupstr. */
static bool rbm_fdupstr(const struct jsonr *r, int obj, const char *key, char **dst)
{
	int v = jsonr_get(r, obj, key);
	if (v < 0)
		return true;
	if (!jsonr_is_string(r, v))
		return false;
	free(*dst);
	return (*dst = jsonr_strdup(r, v, NULL)) != NULL;
}

/* rbm_parse_user_message. */
static bool rbm_fparse_user_message(const struct jsonr *r, int ev, struct wh_parsed *out)
{
	struct wh_inbound *in = wh_parsed_add_inbound(out);
	if (!in ||
	    !rbm_fstr(r, ev, "messageId", true, in->provider_msg_id, sizeof in->provider_msg_id) ||
	    !rbm_fstr(r, ev, "senderPhoneNumber", true, in->from, sizeof in->from) ||
	    !rbm_fsend_time(r, ev, NULL, 40, &in->provider_at))
		return false;
	int sr = jsonr_get(r, ev, "suggestionResponse");
	if (jsonr_is_string(r, jsonr_get(r, ev, "text"))) {
		hr_strlcpy(in->kind, "text", sizeof in->kind);
		return rbm_fdupstr(r, ev, "text", &in->text);
	}
	if (sr >= 0) {
		int pbt = jsonr_get(r, sr, "postbackData");
		if (!jsonr_is_object(r, sr) || !jsonr_is_string(r, pbt))
			return false;
		char *pbs = jsonr_strdup(r, pbt, NULL);
		if (!pbs)
			return false;
		hr_strlcpy(in->kind, "button", sizeof in->kind);
		const char *pb = pbs, *bar = strchr(pb, '|');
		char ref[RBM_UUID_LEN + 1];
		if (bar && bar - pb == RBM_UUID_LEN && rbm_find_uuid(pb, ref)) {
			hr_strlcpy(in->context_id, ref, sizeof in->context_id);
			pb = bar + 1;
		}
		in->payload = strdup(pb);
		free(pbs);
		return in->payload && rbm_fdupstr(r, sr, "text", &in->text);
	}
	int file = jsonr_get(r, ev, "userFile");
	if (jsonr_is_object(r, file)) {
		hr_strlcpy(in->kind, "file", sizeof in->kind);
		return rbm_fdupstr(r, jsonr_get(r, file, "payload"), "fileUri", &in->text);
	}
	if (jsonr_is_object(r, jsonr_get(r, ev, "location")))
		return false; /* the jansson way formats its doubles */
	hr_strlcpy(in->kind, "other", sizeof in->kind);
	return true;
}

/* rbm_parse_event. */
static bool rbm_fparse_event(const struct jsonr *r, int ev, struct wh_parsed *out)
{
	int et = jsonr_get(r, ev, "eventType");
	if (!jsonr_is_string(r, et))
		return false;
	enum msg_status st;
	bool revoked = false;
	if (jsonr_string_is(r, et, "DELIVERED")) {
		st = MSG_DELIVERED;
	} else if (jsonr_string_is(r, et, "READ")) {
		st = MSG_READ;
	} else if (jsonr_string_is(r, et, "TTL_EXPIRATION_REVOKED")) {
		st = MSG_UNDELIVERED;
		revoked = true;
	} else {
		return true;
	}
	struct wh_status tmp = {.status = st};
	if (revoked) {
		hr_strlcpy(tmp.error_code, "TTL_EXPIRATION_REVOKED", sizeof tmp.error_code);
		hr_strlcpy(tmp.error_text,
		           "the message expired (ttl) before delivery and was revoked",
		           sizeof tmp.error_text);
	}
	if (!rbm_fstr(r, ev, "messageId", true, tmp.provider_id, sizeof tmp.provider_id) ||
	    !rbm_fsend_time(r, ev, tmp.provider_ts, sizeof tmp.provider_ts, &tmp.provider_at))
		return false;
	struct wh_status *dst = wh_parsed_add_status(out);
	if (!dst)
		return false;
	*dst = tmp;
	return true;
}

/* rbm_webhook_parse's reading of the push in r: its message.data decoded
 * and read as the event. */
static bool rbm_fparse_push(const struct jsonr *r, struct wh_parsed *out)
{
	int msg = jsonr_get(r, 0, "message");
	int dt = jsonr_get(r, msg, "data");
	if (!jsonr_is_object(r, msg) || !jsonr_is_string(r, dt))
		return false;
	size_t n = 0, dlen = 0;
	char *data = jsonr_strdup(r, dt, &n);
	unsigned char *raw = data ? hr_b64_decode(data, n, &dlen) : NULL;
	free(data);
	if (!raw)
		return false;
	struct jsonr e;
	bool ok = jsonr_parse_large(&e, (const char *)raw, dlen, JSONR_TOKENS_LARGE_MAX) == 0 &&
	          jsonr_is_object(&e, 0);
	if (ok) {
		if (jsonr_get(&e, 0, "eventType") >= 0)
			ok = rbm_fparse_event(&e, 0, out);
		else if (jsonr_get(&e, 0, "messageId") >= 0)
			ok = rbm_fparse_user_message(&e, 0, out);
		else
			ok = false;
	}
	jsonr_free(&e);
	free(raw);
	return ok;
}

/* Drops what a parse added to out past ns statuses and ni replies. */
static void rbm_parsed_rollback(struct wh_parsed *out, size_t ns, size_t ni)
{
	for (size_t k = ni; k < out->ninbound; k++) {
		free(out->inbound[k].text);
		free(out->inbound[k].payload);
	}
	out->nstatuses = ns;
	out->ninbound = ni;
}

/* Parses one Pub/Sub push; on error out is left as it was. */
static int rbm_webhook_parse(const struct channel_account *acct, const char *body, size_t len,
                             struct wh_parsed *out, struct hr_err *err)
{
	(void)acct;
	size_t ns = out->nstatuses, ni = out->ninbound;
	if (channel_fast_json && body) {
		struct jsonr r;
		bool ok = jsonr_parse_large(&r, body, len, JSONR_TOKENS_LARGE_MAX) == 0 &&
		          rbm_fparse_push(&r, out);
		jsonr_free(&r);
		if (ok) {
			channel_fast_json_hits++;
			return 0;
		}
		rbm_parsed_rollback(out, ns, ni);
	}
	json_error_t je;
	json_t *root = json_loadb(body ? body : "", len, 0, &je);
	if (!root) {
		char field[32];
		snprintf(field, sizeof field, "body[%d]", je.position);
		return hr_fail(err, HR_EINVAL, field, "%s: body is not JSON (%s)", field, je.text);
	}
	int rc;
	json_t *ev = NULL;
	if (!json_is_object(json_object_get(root, "message"))) {
		rc = hr_fail(err, HR_EINVAL, "message",
		             "message must be an object (a Pub/Sub push)");
	} else if (!rbm_envelope_data(root)) {
		rc = hr_fail(err, HR_EINVAL, "message.data", "message.data must be a string");
	} else if (!(ev = rbm_decode_event(root))) {
		rc = hr_fail(err, HR_EINVAL, "message.data",
		             "message.data must be base64 of a JSON object");
	} else {
		if (json_object_get(ev, "eventType"))
			rc = rbm_parse_event(ev, out, err);
		else if (json_object_get(ev, "messageId"))
			rc = rbm_parse_user_message(ev, out, err);
		else
			rc = hr_fail(err, HR_EINVAL, "data",
			             "data is neither a user event (eventType) nor a user message "
			             "(messageId)");
		if (rc)
			rbm_parsed_rollback(out, ns, ni);
	}
	json_decref(ev);
	json_decref(root);
	return rc;
}

static const char *const rbm_secrets[] = {"service_account", "client_token", NULL};
/* The API and the token endpoint a service account names. */
static const char *const rbm_origins[] = {"https://rcsbusinessmessaging.googleapis.com",
                                          "https://oauth2.googleapis.com", NULL};

/* the token's expiry for the account health view (channel.h). */
static void rbm_token_state(const struct channel_account *acct, int64_t *expires_us, char *error,
                            size_t error_size)
{
	struct rbm_priv *p = acct->priv;
	*expires_us = 0;
	if (error_size)
		error[0] = '\0';
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	int64_t mono = hr_mono_us();
	if (p->token && p->expires_at > mono)
		*expires_us = hr_now_us() + (p->expires_at - mono);
	if (error_size)
		hr_strlcpy(error, p->fetch_error, error_size);
	pthread_mutex_unlock(&p->lock);
}

/*
 * what the codes this adapter records mean, for the overview's top
 * failure codes. rbm_parse_send records Google's status name from the
 * error body (google.rpc.Code names, PROVIDERS.md's classes), the reason
 * not_rcs_capable for a 404, "http_<status>" for an answer without an
 * error body and "network" for none; rbm_parse_event records
 * TTL_EXPIRATION_REVOKED for a message whose ttl ran out undelivered.
 */
static const struct {
	const char *code, *text;
} rbm_meanings[] = {
    {"not_rcs_capable", "Recipient cannot receive RCS (device not capable or RCS off; 404 "
                        "NOT_FOUND): falls back when routed"},
    {"NOT_FOUND", "Recipient cannot receive RCS (404)"},
    {"INVALID_ARGUMENT", "Invalid request (400): a field, or a feature the recipient's device "
                         "lacks"},
    {"FAILED_PRECONDITION", "Refused in the current state (400), e.g. the agent is not "
                            "launched"},
    {"PERMISSION_DENIED", "Agent not allowed (403): not launched on the recipient's carrier, "
                          "or the service account lacks access"},
    {"UNAUTHENTICATED", "Access token missing, expired or revoked (401); retried with a new "
                        "token"},
    {"RESOURCE_EXHAUSTED", "The agent's request quota is used up (429); retried later"},
    {"ABORTED", "Aborted by a concurrent request (409)"},
    {"INTERNAL", "RBM internal error (500); retried"},
    {"UNAVAILABLE", "RBM is unavailable (503); retried"},
    {"DEADLINE_EXCEEDED", "RBM did not answer in time (504); retried"},
    {"TTL_EXPIRATION_REVOKED", "Not delivered before its ttl ran out: RBM revoked it"},
};

static const char *rbm_error_meaning(const char *code)
{
	for (size_t i = 0; code && i < sizeof rbm_meanings / sizeof *rbm_meanings; i++)
		if (!strcmp(rbm_meanings[i].code, code))
			return rbm_meanings[i].text;
	return channel_common_meaning(code);
}

const struct channel_ops channel_rcs = {
    .name = "rcs",
    .error_meaning = rbm_error_meaning,
    .token_state = rbm_token_state,
    .has_receipts = true,
    .secret_fields = rbm_secrets,
    .provider_origins = rbm_origins,
    .account_load = rbm_account_load,
    .account_free = rbm_account_free,
    .await_ready = rbm_await_ready,
    .normalize_recipient = rbm_normalize,
    .validate = rbm_validate,
    .build_send = rbm_build_send,
    .parse_send = rbm_parse_send,
    .webhook_handshake = rbm_webhook_handshake,
    .webhook_verify = rbm_webhook_verify,
    .webhook_dedupe_key = rbm_webhook_dedupe_key,
    .webhook_parse = rbm_webhook_parse,
    .capability = rbm_capability,
};
