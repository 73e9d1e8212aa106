/*
 * session.c - dashboard sign-in: a browser session by cookie, made from an
 * API key and carrying exactly that key's tenant, unit and scopes.
 *
 *   POST   /v1/session {"api_key"}  201, Set-Cookie herald_session (HttpOnly,
 *                                   SameSite=Strict, Secure behind https),
 *                                   the principal and the CSRF token
 *   GET    /v1/session              the session's principal and CSRF token
 *   DELETE /v1/session              sign out (X-CSRF-Token required)
 *   POST   /v1/session/unmask       {"reason"}: phone numbers shown for
 *                                   dashboard.unmask_s, recorded in the audit log
 *
 * The cookie is 32 random bytes (hex); the server keeps only its SHA-256,
 * so the table (memory, this node only) holds nothing a browser could
 * replay. A session keeps the hash of the key it was made from and every
 * request re-checks that key through the key cache (auth.c): a revoked key,
 * or a disabled tenant or unit, ends its sessions within the cache's TTL,
 * and the session never holds more than the key does now.
 *
 * CSRF: every request authenticated by the cookie, other than GET and HEAD,
 * must carry X-CSRF-Token equal to the session's token (kept server side,
 * compared in constant time); SameSite=Strict is the second fence. Sign-in
 * itself takes JSON only (Content-Type), which a cross-site form cannot send.
 *
 * Bounds: dashboard.max_sessions in all (a full table answers 503, expired
 * sessions are reclaimed first), dashboard.sessions_per_key per key (its
 * own oldest is ended: one key cannot take the table), an idle and an
 * absolute lifetime. The table is a flat array under one mutex: a lookup is
 * a scan of at most max_sessions 64-byte ids, well under the cost of the
 * request it guards.
 *
 * Masking: a session sees phone numbers masked in every JSON answer
 * (api_mask_json, applied in api_respond_json) and cannot export until an
 * unmask, which needs a reason and is audited.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "core/crypto.h"

#define SESSION_COOKIE "herald_session"
#define SESSION_KEY_MAX 512
#define SESSION_REASON_MAX 200

struct session {
	char id[65];   /* SHA-256 hex of the cookie; "" = free */
	char cred[65]; /* SHA-256 hex of the API key it was made from */
	char csrf[65];
	char actor[96];
	int64_t created, last, unmask_until; /* wall us */
	int streams;                         /* open /v1/events streams */
	char view_unit[HR_NAME_MAX];         /* narrowed to this unit ("": none) */
	bool login;                          /* a configured login, not a key: */
	struct api_principal who;            /* its tenant, unit, scopes and actor */
	char user[64];                       /* the login's name ("" for a key) */
	bool multi;                          /* the login may switch tenants */
	unsigned epoch;                      /* tenant switches so far (streams
	                                      * opened before one end) */
};

struct api_sessions {
	pthread_mutex_t lock;
	struct api_dash_opts o;
	struct session *slot;
	/* Streams of bearer credentials, by actor (sse.c counts them here
	 * too so one key cannot take every stream either). */
	struct {
		char actor[96];
		int streams;
	} * bearer;
};

int api_sessions_new(const struct api_dash_opts *o, struct api_sessions **out, struct hr_err *err)
{
	struct api_sessions *ss = calloc(1, sizeof *ss);
	if (!ss)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	ss->o = *o;
	ss->slot = calloc((size_t)o->max_sessions, sizeof *ss->slot);
	ss->bearer = calloc((size_t)o->max_event_streams, sizeof *ss->bearer);
	if (!ss->slot || !ss->bearer) {
		free(ss->slot);
		free(ss->bearer);
		free(ss);
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	pthread_mutex_init(&ss->lock, NULL);
	*out = ss;
	return 0;
}

void api_sessions_free(struct api_sessions *ss)
{
	if (!ss)
		return;
	explicit_bzero(ss->slot, (size_t)ss->o.max_sessions * sizeof *ss->slot);
	free(ss->slot);
	free(ss->bearer);
	pthread_mutex_destroy(&ss->lock);
	free(ss);
}

static bool session_live(const struct api_sessions *ss, const struct session *x, int64_t now)
{
	return x->id[0] && now - x->last < ss->o.session_idle_us &&
	       now - x->created < ss->o.session_max_age_us;
}

/* Under the lock: the live session with id, or NULL (an expired one found
 * is freed). */
static struct session *session_find(struct api_sessions *ss, const char *id, int64_t now)
{
	for (int i = 0; i < ss->o.max_sessions; i++) {
		struct session *x = &ss->slot[i];
		if (!x->id[0] || !hr_consteq(x->id, 64, id, 64))
			continue;
		if (session_live(ss, x, now))
			return x;
		if (x->streams == 0)
			explicit_bzero(x, sizeof *x);
		return NULL;
	}
	return NULL;
}

struct cookie_scan {
	const char *value;
	int n;
};

static enum MHD_Result cookie_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
	(void)kind;
	struct cookie_scan *c = cls;
	if (strcmp(key, SESSION_COOKIE) == 0) {
		c->value = value;
		c->n++;
	}
	return MHD_YES;
}

/* The cookie's value when sent once; NULL when absent or repeated (which
 * copy was meant would be a guess). */
static const char *session_cookie_value(struct api_req *r, int *copies)
{
	struct cookie_scan c = {NULL, 0};
	MHD_get_connection_values(r->conn, MHD_COOKIE_KIND, cookie_one, &c);
	*copies = c.n;
	return c.n == 1 ? c.value : NULL;
}

bool api_session_cookie(struct api_req *r)
{
	int n;
	session_cookie_value(r, &n);
	return n > 0;
}

static bool is_read(const struct api_req *r)
{
	return !strcmp(r->method, MHD_HTTP_METHOD_GET) || !strcmp(r->method, MHD_HTTP_METHOD_HEAD);
}

/* The session of r's cookie: 0 with *sid its id, *csrf_ok whether
 * X-CSRF-Token matches, *masked; HR_EAUTH otherwise. The session's key is
 * returned in cred for the caller to re-check. */
static int session_lookup(struct api_req *r, char sid[65], char cred[65], bool *csrf_ok,
                          bool *masked, char view[HR_NAME_MAX], bool *login,
                          struct api_principal *who, unsigned *epoch, struct hr_err *err)
{
	struct api_sessions *ss = r->srv->sessions;
	int copies;
	const char *tok = session_cookie_value(r, &copies);
	if (copies > 1)
		return hr_fail(err, HR_EAUTH, "Cookie",
		               "the session cookie is sent more than once");
	if (!tok || strlen(tok) != 64)
		return hr_fail(err, HR_EAUTH, "Cookie", "no dashboard session: sign in");
	hr_sha256_hex(tok, 64, sid);
	const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
	int64_t now = hr_now_us();
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, sid, now);
	if (x) {
		x->last = now;
		memcpy(cred, x->cred, 65);
		*csrf_ok = given && hr_consteq(x->csrf, strlen(x->csrf), given, strlen(given));
		*masked = now >= x->unmask_until;
		memcpy(view, x->view_unit, HR_NAME_MAX);
		*login = x->login;
		if (x->login)
			*who = x->who;
		*epoch = x->epoch;
	}
	pthread_mutex_unlock(&ss->lock);
	if (!x)
		return hr_fail(
		    err, HR_EAUTH, "Cookie",
		    "the dashboard session has ended (signed out or expired): sign in again");
	return 0;
}

/* a login session's principal, if its tenant (and unit) are
 * still there and enabled. */
static int login_check(struct api_req *r, const struct api_principal *who, struct hr_err *err)
{
	struct store *st = r->srv->o.store;
	struct tenant_info t;
	memset(&t, 0, sizeof t);
	if (st->ops->tenant_get(st, who->tenant, &t) != 0 || t.disabled)
		return hr_fail(err, HR_EAUTH, "Cookie", "the session's tenant is disabled or gone");
	if (who->unit[0]) {
		struct unit_row u;
		memset(&u, 0, sizeof u);
		if (st->ops->unit_get(st, who->tenant, who->unit, &u) != 0 || u.disabled)
			return hr_fail(err, HR_EAUTH, "Cookie",
			               "the session's unit is disabled or gone");
	}
	r->who = *who;
	hr_strlcpy(r->tenant, who->tenant, sizeof r->tenant);
	return 0;
}

int api_session_auth(struct api_req *r, struct hr_err *err)
{
	char sid[65], cred[65], view[HR_NAME_MAX] = "";
	bool csrf_ok = false, masked = true, login = false;
	struct api_principal who;
	memset(&who, 0, sizeof who);
	unsigned epoch = 0;
	int rc = session_lookup(r, sid, cred, &csrf_ok, &masked, view, &login, &who, &epoch, err);
	if (rc)
		return rc;
	/* A configured login's session carries its principal; its tenant and
	 * unit are checked on every request, as a key's are through the key
	 * cache, so disabling either ends it. Otherwise the key, re-checked. */
	rc = login ? login_check(r, &who, err) : api_auth_key_hash(r, cred, err);
	explicit_bzero(cred, sizeof cred);
	if (rc)
		return rc;
	/* a tenant-wide key's session viewing one unit sees what
	 * that unit's key would (never more: a unit key's session has its own
	 * unit and no view). */
	if (view[0] && !r->who.unit[0]) {
		hr_strlcpy(r->who.unit, view, sizeof r->who.unit);
		r->unit_view = true;
	}
	if (!is_read(r) && !csrf_ok) {
		memset(&r->who, 0, sizeof r->who);
		r->tenant[0] = '\0';
		return hr_fail(err, HR_EFORBIDDEN, "X-CSRF-Token",
		               "a change made with a dashboard session needs the session's "
		               "X-CSRF-Token header");
	}
	memcpy(r->session, sid, sizeof r->session);
	r->session_epoch = epoch;
	r->masked = masked;
	/* Exports are files of phone numbers in full: not while masked. */
	const char *fmt = api_query(r, "format");
	if (masked && (r->route == ROUTE_BATCH_EXPORT_CSV || r->route == ROUTE_BATCH_EXPORT_XLSX ||
	               r->route == ROUTE_MESSAGES_EXPORT ||
	               (r->route == ROUTE_BATCH_ERRORS && fmt && !strcmp(fmt, "csv"))))
		return hr_fail(err, HR_EFORBIDDEN, "unmask",
		               "exports show phone numbers in full: unmask them first "
		               "(POST /v1/session/unmask, recorded in the audit log)");
	return 0;
}

/* ---------------------------------------------------------------------------
 * The routes.
 * ------------------------------------------------------------------------- */

static json_t *time_json(int64_t us)
{
	char buf[32];
	hr_time_format(us, buf);
	return json_string(buf);
}

static json_t *scopes_json(unsigned scopes)
{
	json_t *a = json_array();
	for (unsigned b = 1; a && b & SCOPE_ALL; b <<= 1)
		if ((scopes & b) && json_array_append_new(a, json_string(api_scope_name(b))) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* What the dashboard needs to know of its session. */
static json_t *session_json(const struct api_req *r, const struct session *x,
                            const struct api_dash_opts *o)
{
	return json_pack("{s:s, s:s?, s:b, s:o, s:s, s:s, s:o, s:o, s:I, s:b, s:o}", "tenant",
	                 r->who.tenant, "unit", r->who.unit[0] ? r->who.unit : NULL, "unit_view",
	                 r->unit_view, "scopes", scopes_json(r->who.scopes), "actor", r->who.actor,
	                 "csrf_token", x->csrf, "created_at", time_json(x->created), "expires_at",
	                 time_json(x->created + o->session_max_age_us), "idle_timeout_s",
	                 (json_int_t)(o->session_idle_us / 1000000), "masked",
	                 hr_now_us() >= x->unmask_until, "unmasked_until",
	                 x->unmask_until > hr_now_us() ? time_json(x->unmask_until) : json_null());
}

/*
 * "tenants", the tenants the session may switch to ([{id, name}],
 * its own included; one for a key's session or a login of one tenant) and
 * "tenant_switch" (whether it may switch at all), added to j. 0, or
 * HR_ENOMEM / the store's error.
 */
static int session_tenants_json(const struct api_req *r, const struct session *x, json_t *j)
{
	struct store *st = r->srv->o.store;
	struct tenant_info *v = NULL;
	size_t n = 0;
	int rc;
	if (x->multi) {
		rc = api_user_tenants(r->srv->o.auth_cfg, st, x->user, &v, &n);
	} else {
		v = calloc(1, sizeof *v);
		rc = v ? st->ops->tenant_get(st, r->who.tenant, v) : HR_ENOMEM;
		n = rc == 0;
	}
	json_t *a = rc == 0 ? json_array() : NULL;
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(
		        a, json_pack("{s:s, s:s}", "id", v[i].id, "name", v[i].name)) != 0) {
			json_decref(a);
			a = NULL;
		}
	free(v);
	if (rc)
		return rc;
	if (!a || json_object_set_new(j, "tenants", a) != 0 ||
	    json_object_set_new(j, "tenant_switch", json_boolean(x->multi)) != 0)
		return HR_ENOMEM;
	return 0;
}

/* The answer of GET /v1/session for snap (session_json and its tenants),
 * snap wiped after. 0 with *out, or HR_ENOMEM / the store's error with
 * *out NULL. */
static int session_answer(const struct api_req *r, struct session *snap, json_t **out)
{
	json_t *j = session_json(r, snap, &r->srv->sessions->o);
	int rc = j ? session_tenants_json(r, snap, j) : HR_ENOMEM;
	explicit_bzero(snap, sizeof *snap);
	if (rc) {
		json_decref(j);
		j = NULL;
	}
	*out = j;
	return rc;
}

/* The POSTs that change a dashboard session refuse a bearer credential:
 * HR_EINVAL on "session", saying why. */
static int session_only(const struct api_req *r, const char *why, struct hr_err *err)
{
	return r->session[0] ? 0 : hr_fail(err, HR_EINVAL, "session", "%s", why);
}

static void hex_random(char out[65])
{
	unsigned char b[32];
	hr_random_bytes(b, sizeof b);
	for (size_t i = 0; i < sizeof b; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	explicit_bzero(b, sizeof b);
}

/* A free slot for a new session of cred (under the lock): expired ones
 * reclaimed, the key's oldest ended when it has sessions_per_key; NULL
 * when the table is full of live sessions. */
static struct session *session_slot(struct api_sessions *ss, const char *cred, int64_t now)
{
	struct session *free_slot = NULL, *oldest = NULL;
	int mine = 0;
	for (int i = 0; i < ss->o.max_sessions; i++) {
		struct session *x = &ss->slot[i];
		if (x->id[0] && !session_live(ss, x, now) && x->streams == 0)
			explicit_bzero(x, sizeof *x);
		if (!x->id[0]) {
			if (!free_slot)
				free_slot = x;
			continue;
		}
		if (strcmp(x->cred, cred) == 0) {
			mine++;
			if (!oldest || x->created < oldest->created)
				oldest = x;
		}
	}
	if (mine >= ss->o.sessions_per_key && oldest) {
		explicit_bzero(oldest, sizeof *oldest);
		return oldest;
	}
	return free_slot;
}

static enum MHD_Result session_create(struct api_req *r, char cred[65], const char *user);

/* The client's address as text ("-" when MHD cannot say). */
static void client_addr(struct api_req *r, char out[64])
{
	hr_strlcpy(out, "-", 64);
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, 64);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, 64);
}

/*
 * POST /v1/session {"name","password"}: a configured login
 * (users.c). The password leaves memory with the body; a refusal says only
 * "wrong name or password" (and is logged with the name and address); too
 * many failures are 429 with Retry-After; a success is audited
 * (session.signin, actor user:<name>) before the session exists.
 */
static enum MHD_Result login_post(struct api_req *r, json_t *o)
{
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	const char *name = json_string_value(json_object_get(o, "name"));
	json_t *jp = json_object_get(o, "password");
	/* a login of several tenants may start in one of them. */
	json_t *jt = json_object_get(o, "tenant");
	char want[HR_NAME_MAX] = "";
	int rc = 0;
	if (json_object_get(o, "api_key"))
		rc = hr_fail(&err, HR_EINVAL, "api_key",
		             "sign in with an API key or with a name and password, not both");
	else if (!name || !*name)
		rc = hr_fail(&err, HR_EINVAL, "name", "name is required (a string)");
	else if (!json_is_string(jp))
		rc = hr_fail(&err, HR_EINVAL, "password", "password is required (a string)");
	else if (jt && !json_is_null(jt) &&
	         (!json_is_string(jt) || !json_string_length(jt) ||
	          json_string_length(jt) >= sizeof want))
		rc = hr_fail(&err, HR_EINVAL, "tenant", "tenant must be a tenant id");
	else if (json_is_string(jt))
		hr_strlcpy(want, json_string_value(jt), sizeof want);
	char addr[64], uname[64];
	client_addr(r, addr);
	hr_utf8_copy(uname, name ? name : "", sizeof uname);
	struct api_principal who;
	memset(&who, 0, sizeof who);
	int64_t retry = 0;
	if (rc == 0)
		rc = api_user_verify(r->srv->o.auth_cfg, name, json_string_value(jp), addr, &who,
		                     &retry, &err);
	explicit_bzero(r->body, r->len);
	if (json_is_string(jp))
		explicit_bzero((char *)json_string_value(jp), json_string_length(jp));
	json_decref(o);
	if (rc == HR_EQUOTA) {
		hr_log(HR_LOG_WARN, "api", "dashboard sign-in of user %s from %s held back: %s",
		       uname, addr, err.msg);
		return api_quota_fail(r, &err, retry);
	}
	if (rc == HR_EAUTH)
		hr_log(HR_LOG_WARN, "api", "dashboard sign-in refused: user %s from %s", uname,
		       addr);
	/* The tenant it starts in, and its role there. */
	if (rc == 0)
		rc = api_user_principal(r->srv->o.auth_cfg, st, uname, want[0] ? want : NULL, &who,
		                        &err);
	if (rc == 0 && (rc = login_check(r, &who, &err)) != 0)
		hr_strlcpy(err.field, "name", sizeof err.field);
	if (rc)
		return api_fail(r, rc, &err);
	char object[96];
	snprintf(object, sizeof object, "user:%s", uname);
	struct audit_row a;
	rc = api_audit_json(
	    r, who.tenant, "session.signin", object, NULL,
	    json_pack("{s:s, s:s?}", "address", addr, "unit", who.unit[0] ? who.unit : NULL), &a);
	if (rc == 0) {
		rc = st->ops->audit_append(st, &a, &err);
		api_audit_done(&a);
	}
	if (rc) /* no sign-in that the audit log does not show */
		return api_fail(r, rc, &err);
	char cred[65];
	hr_sha256_hex(object, strlen(object), cred);
	return session_create(r, cred, uname);
}

enum MHD_Result api_session_post(struct api_req *r)
{
	struct api_server *s = r->srv;
	struct hr_err err;
	hr_err_clear(&err);
	const char *ct =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
	    (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
		hr_fail(&err, HR_EINVAL, "Content-Type",
		        "sign in with a JSON body "
		        "(Content-Type: application/json)");
		return api_fail(r, HR_EINVAL, &err);
	}
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"api_key", "name", "password", "tenant", NULL};
	int rc = api_keys_check(o, allowed, &err);
	/* a configured login instead of a key. */
	if (rc == 0 && json_object_get(o, "name"))
		return login_post(r, o);
	const char *key = json_string_value(json_object_get(o, "api_key"));
	size_t klen = key ? strlen(key) : 0;
	if (rc == 0 && !key)
		rc = hr_fail(&err, HR_EINVAL, "api_key", "api_key is required (a string)");
	if (rc == 0 && json_object_get(o, "tenant"))
		rc = hr_fail(&err, HR_EINVAL, "tenant",
		             "an API key belongs to one tenant: tenant is for logins of several");
	if (rc == 0 && (klen == 0 || klen > SESSION_KEY_MAX))
		rc = hr_fail(&err, HR_EAUTH, "api_key", "invalid API key");
	if (rc == 0 && memchr(key, '.', klen))
		rc = hr_fail(&err, HR_EINVAL, "api_key",
		             "sign in with an API key (bearer tokens are for API calls)");
	char cred[65] = "";
	if (rc == 0) {
		hr_sha256_hex(key, klen, cred);
		rc = api_auth_key_hash(r, cred, &err);
		if (rc == HR_EAUTH)
			hr_strlcpy(err.field, "api_key", sizeof err.field);
	}
	/* The key's bytes leave memory with the body. */
	explicit_bzero(r->body, r->len);
	json_t *jk = json_object_get(o, "api_key");
	if (jk && key)
		explicit_bzero((char *)key, klen);
	json_decref(o);
	if (rc == 0 && r->who.operator)
		rc = hr_fail(&err, HR_EFORBIDDEN, "api_key",
		             "operator keys manage tenants: they cannot sign in to the dashboard");
	int64_t retry_s = 0;
	if (rc == 0 && (rc = api_limits_check(s, &r->who, &retry_s, &err)) != 0) {
		explicit_bzero(cred, sizeof cred);
		return api_quota_fail(r, &err, retry_s);
	}
	if (rc) {
		explicit_bzero(cred, sizeof cred);
		return api_fail(r, rc, &err);
	}

	return session_create(r, cred, NULL);
}

/* A new session for r->who (made from the key whose hash is cred, or the
 * configured login user, cred then the hash of "user:<name>"): the cookie,
 * 201. */
static enum MHD_Result session_create(struct api_req *r, char cred[65], const char *user)
{
	bool login = user != NULL;
	struct api_sessions *ss = r->srv->sessions;
	struct hr_err err;
	hr_err_clear(&err);
	enum MHD_Result ret;
	char tok[65], sid[65];
	hex_random(tok);
	hr_sha256_hex(tok, 64, sid);
	int64_t now = hr_now_us();
	struct session snap;
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_slot(ss, cred, now);
	if (x) {
		memset(x, 0, sizeof *x);
		memcpy(x->id, sid, sizeof x->id);
		memcpy(x->cred, cred, 65);
		hex_random(x->csrf);
		hr_strlcpy(x->actor, r->who.actor, sizeof x->actor);
		x->created = x->last = now;
		x->login = login;
		if (login) {
			x->who = r->who;
			hr_strlcpy(x->user, user, sizeof x->user);
			x->multi = api_user_multi(r->srv->o.auth_cfg, user);
		}
		snap = *x;
	}
	pthread_mutex_unlock(&ss->lock);
	explicit_bzero(cred, 65);
	if (!x) {
		explicit_bzero(tok, sizeof tok);
		hr_fail(&err, HR_EBUSY, NULL,
		        "too many dashboard sessions are open (at most %d): try again later",
		        ss->o.max_sessions);
		return api_fail(r, HR_EBUSY, &err);
	}
	char cookie[256];
	snprintf(cookie, sizeof cookie,
	         SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s", tok,
	         (long long)(ss->o.session_max_age_us / 1000000),
	         ss->o.secure_cookie ? "; Secure" : "");
	explicit_bzero(tok, sizeof tok);
	const char *extra[] = {"Set-Cookie", cookie, "Cache-Control", "no-store", NULL};
	json_t *j;
	session_answer(r, &snap, &j); /* NULL: api_respond_json answers the failure */
	ret = api_respond_json(r, 201, j, extra);
	explicit_bzero(cookie, sizeof cookie);
	return ret;
}

/* GET and DELETE: public in the route table (a session is their subject,
 * not a bearer credential), so they authenticate here. A query on them is
 * a mistake: refused before anything. */
static int session_subject(struct api_req *r, struct hr_err *err)
{
	static const char *const none[] = {NULL};
	int rc = api_query_check(r, none, err);
	return rc ? rc : api_session_auth(r, err);
}

enum MHD_Result api_session_get(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	int rc = session_subject(r, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct api_sessions *ss = r->srv->sessions;
	struct session snap;
	bool found = false;
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, r->session, hr_now_us());
	if (x) {
		snap = *x;
		found = true;
	}
	pthread_mutex_unlock(&ss->lock);
	if (!found)
		return api_fail(r, HR_EAUTH, NULL);
	json_t *j;
	if ((rc = session_answer(r, &snap, &j)) != 0) /* or the store could not say which tenants */
		return api_fail(r, rc, NULL);
	/* the units a tenant-wide session may view (the switcher). */
	if (j && (!r->who.unit[0] || r->unit_view)) {
		struct store *st = r->srv->o.store;
		struct unit_row *u = NULL;
		size_t nu = 0;
		json_t *units = json_array();
		if (units && st->ops->unit_list(st, r->tenant, &u, &nu) == 0) {
			for (size_t i = 0; i < nu; i++)
				if (!u[i].disabled)
					json_array_append_new(units,
					                      json_pack("{s:s, s:s}", "id", u[i].id,
					                                "name", u[i].name));
			free(u);
		}
		if (!units || json_object_set_new(j, "units", units) != 0) {
			json_decref(j);
			j = NULL;
		}
	}
	if (!j)
		return api_fail(r, HR_ENOMEM, NULL);
	const char *extra[] = {"Cache-Control", "no-store", NULL};
	return api_respond_json(r, 200, j, extra);
}

enum MHD_Result api_session_delete(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	int rc = session_subject(r, &err);
	if (rc)
		return api_fail(r, rc, &err);
	struct api_sessions *ss = r->srv->sessions;
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, r->session, hr_now_us());
	if (x) {
		/* Ended now; a stream still open keeps the slot (its id, no
		 * key, never live again) until it closes (stream_release). */
		int streams = x->streams;
		char id[65];
		memcpy(id, x->id, sizeof id);
		explicit_bzero(x, sizeof *x);
		if (streams) {
			memcpy(x->id, id, sizeof x->id);
			x->streams = streams;
		}
	}
	pthread_mutex_unlock(&ss->lock);
	const char *extra[] = {"Set-Cookie",
	                       SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
	                       "Cache-Control", "no-store", NULL};
	return api_respond(r, 204, NULL, 0, NULL, extra);
}

enum MHD_Result api_session_unmask(struct api_req *r)
{
	struct api_server *s = r->srv;
	struct hr_err err;
	hr_err_clear(&err);
	if (session_only(r, "unmasking is for dashboard sessions: API keys see numbers in full",
	                 &err))
		return api_fail(r, HR_EINVAL, &err);
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"reason", NULL};
	int rc = api_keys_check(o, allowed, &err);
	const char *reason = json_string_value(json_object_get(o, "reason"));
	size_t rl = reason ? strlen(reason) : 0;
	if (rc == 0 && (!reason || rl < 3 || rl > SESSION_REASON_MAX))
		rc = hr_fail(&err, HR_EINVAL, "reason",
		             "reason is required: why the numbers are needed (3 to %d characters)",
		             SESSION_REASON_MAX);
	if (rc) {
		json_decref(o);
		return api_fail(r, rc, &err);
	}
	struct api_sessions *ss = s->sessions;
	int64_t until = hr_now_us() + ss->o.unmask_us;
	char object[96];
	snprintf(object, sizeof object, "session:%.12s", r->session);
	struct audit_row a;
	rc = api_audit_json(r, r->tenant, "session.unmask", object, NULL,
	                    json_pack("{s:s, s:o}", "reason", reason, "until", time_json(until)),
	                    &a);
	json_decref(o);
	if (rc)
		return api_fail(r, rc, NULL);
	/* Recorded first: no number is shown unaudited. */
	rc = s->o.store->ops->audit_append(s->o.store, &a, &err);
	api_audit_done(&a);
	if (rc)
		return api_fail(r, rc, &err);
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, r->session, hr_now_us());
	if (x)
		x->unmask_until = until;
	pthread_mutex_unlock(&ss->lock);
	if (!x)
		return api_fail(r, HR_EAUTH, NULL);
	return api_respond_json(
	    r, 200, json_pack("{s:b, s:o}", "masked", 0, "unmasked_until", time_json(until)), NULL);
}

/* ---------------------------------------------------------------------------
 * Masking and stream accounting.
 * ------------------------------------------------------------------------- */

/* Keys whose string values are recipients' numbers or chat ids. */
static bool mask_key(const char *k)
{
	static const char *const keys[] = {"to",     "from",    "recipient", "phone",
	                                   "msisdn", "chat_id", "wa_id",     NULL};
	for (const char *const *p = keys; *p; p++)
		if (strcasecmp(k, *p) == 0) /* "To", "From" in raw provider fields too */
			return true;
	return false;
}

/* "+447911123456" -> "+4479•••••56": the country and operator prefix and
 * the last two digits stay, enough to tell numbers apart on a screen. */
static json_t *masked_string(const char *v)
{
	size_t n = strlen(v);
	if (n < 6)
		return json_string("•••");
	size_t keep = v[0] == '+' ? 5 : 4;
	char out[256];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 4 < sizeof out; i++) {
		if (i < keep || i + 2 >= n) {
			out[o++] = v[i];
		} else if ((unsigned char)v[i] < 0x80 || ((unsigned char)v[i] & 0xC0) == 0xC0) {
			memcpy(out + o, "•", 3); /* one per character */
			o += 3;
		}
	}
	out[o] = '\0';
	return json_string(out);
}

void api_mask_json(json_t *j)
{
	if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach(j, i, v) api_mask_json(v);
	} else if (json_is_object(j)) {
		const char *k;
		json_t *v;
		void *tmp;
		json_object_foreach_safe(j, tmp, k, v)
		{
			if (json_is_string(v) && mask_key(k)) {
				json_t *m = masked_string(json_string_value(v));
				if (!m || json_object_set_new(j, k, m) != 0)
					json_object_set_new(j, k, json_string("•••"));
			} else {
				api_mask_json(v);
			}
		}
	}
}

/* Under the lock: the bearer credential's stream counter (created when
 * create; NULL when the table is full or, without create, absent). */
static int *bearer_count(struct api_sessions *ss, const char *actor, bool create)
{
	int *free_slot = NULL;
	for (int i = 0; i < ss->o.max_event_streams; i++) {
		if (ss->bearer[i].streams > 0 && strcmp(ss->bearer[i].actor, actor) == 0)
			return &ss->bearer[i].streams;
		if (ss->bearer[i].streams == 0 && !free_slot) {
			free_slot = &ss->bearer[i].streams;
			if (create)
				hr_strlcpy(ss->bearer[i].actor, actor, sizeof ss->bearer[i].actor);
		}
	}
	return create ? free_slot : NULL;
}

int api_session_stream_acquire(struct api_server *s, const char *sid, unsigned epoch,
                               const char *actor, struct hr_err *err)
{
	struct api_sessions *ss = s->sessions;
	int rc = 0;
	pthread_mutex_lock(&ss->lock);
	int *count;
	if (sid[0]) {
		struct session *x = session_find(ss, sid, hr_now_us());
		count = x && x->epoch == epoch ? &x->streams : NULL;
		if (!x)
			rc = hr_fail(err, HR_EAUTH, "Cookie", "the dashboard session has ended");
		else if (!count) /* switched while this request was on its way */
			rc = hr_fail(err, HR_ECONFLICT, "tenant",
			             "the session switched tenants: open the stream again");
	} else {
		count = bearer_count(ss, actor, true);
		if (!count) /* more credentials than streams: the global cap answers */
			rc = hr_fail(err, HR_EQUOTA, "event_streams",
			             "too many event streams are open (at most %d)",
			             ss->o.max_event_streams);
	}
	if (rc == 0 && *count >= ss->o.streams_per_session)
		rc = hr_fail(err, HR_EQUOTA, "event_streams",
		             "%d event streams are open for this %s already (at most %d)", *count,
		             sid[0] ? "session" : "credential", ss->o.streams_per_session);
	else if (rc == 0)
		++*count;
	pthread_mutex_unlock(&ss->lock);
	return rc;
}

void api_session_stream_release(struct api_server *s, const char *sid, const char *actor)
{
	struct api_sessions *ss = s->sessions;
	pthread_mutex_lock(&ss->lock);
	if (sid[0]) {
		for (int i = 0; i < ss->o.max_sessions; i++) {
			struct session *x = &ss->slot[i];
			if (x->streams > 0 && strcmp(x->id, sid) == 0) {
				if (--x->streams == 0 && !session_live(ss, x, hr_now_us()))
					explicit_bzero(x, sizeof *x);
				break;
			}
		}
	} else {
		int *count = bearer_count(ss, actor, false);
		if (count)
			--*count;
	}
	pthread_mutex_unlock(&ss->lock);
}

bool api_session_alive(struct api_server *s, const char *sid, unsigned epoch)
{
	struct api_sessions *ss = s->sessions;
	pthread_mutex_lock(&ss->lock);
	const struct session *x = session_find(ss, sid, hr_now_us());
	bool alive = x && x->epoch == epoch;
	pthread_mutex_unlock(&ss->lock);
	return alive;
}

/* POST /v1/session/view {"unit": "<id>" | null}. A tenant-wide
 * key's session narrowed to one of the tenant's (enabled) units, so every
 * screen shows what that unit's key would, or back to the whole tenant
 * (null). Only narrowing: a unit key's session has its unit and no view. */
enum MHD_Result api_session_view(struct api_req *r)
{
	struct hr_err err;
	hr_err_clear(&err);
	if (session_only(
	        r, "a unit view is for dashboard sessions: an API key names its unit itself", &err))
		return api_fail(r, HR_EINVAL, &err);
	if (r->who.unit[0] && !r->unit_view) {
		hr_fail(&err, HR_EFORBIDDEN, "unit", "this session's key sees its own unit only");
		return api_fail(r, HR_EFORBIDDEN, &err);
	}
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"unit", NULL};
	int rc = api_keys_check(o, allowed, &err);
	json_t *ju = json_object_get(o, "unit");
	char unit[HR_NAME_MAX] = "";
	if (rc == 0 && !ju)
		rc = hr_fail(&err, HR_EINVAL, "unit",
		             "unit is required: a unit id, or null for all");
	if (rc == 0 && !json_is_null(ju)) {
		const char *u = json_string_value(ju);
		struct unit_row row;
		memset(&row, 0, sizeof row);
		struct store *st = r->srv->o.store;
		if (!u || !*u || strlen(u) >= sizeof unit)
			rc = hr_fail(&err, HR_EINVAL, "unit", "unit must be a unit id or null");
		else if (st->ops->unit_get(st, r->tenant, u, &row) != 0 || row.disabled)
			rc = hr_fail(&err, HR_EINVAL, "unit", "no unit '%.63s' in this tenant", u);
		else
			hr_strlcpy(unit, u, sizeof unit);
	}
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	struct api_sessions *ss = r->srv->sessions;
	bool found = false;
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, r->session, hr_now_us());
	if (x) {
		hr_strlcpy(x->view_unit, unit, sizeof x->view_unit);
		found = true;
	}
	pthread_mutex_unlock(&ss->lock);
	if (!found)
		return api_fail(r, HR_EAUTH, NULL);
	return api_respond_json(
	    r, 200, json_pack("{s:o}", "unit", unit[0] ? json_string(unit) : json_null()), NULL);
}

/*
 * POST /v1/session/tenant {"tenant": "<id>"}. A configured login
 * of several tenants (dashboard.users[].tenants: platform and on-call
 * staff) moves its session to another of them: the principal is made
 * anew for that tenant (its role there, tenant-wide), the unit view and
 * any unmask end (an unmask was recorded in the tenant left), and every
 * event stream the session opened before ends at its next tick (the epoch
 * changes), so none keeps showing the tenant left; the browser's
 * EventSource reconnects to the new one.
 *
 * Refusals: a bearer credential 422 (it has no session); a key's session
 * or a login of one tenant 403 (nothing to switch to); a tenant the login
 * does not list, an unknown one and a disabled one alike 404 "no such
 * tenant". The switch is written first to the audit log of the tenant
 * entered (session.tenant, object user:<name>, before {"tenant": from},
 * after {"tenant": to, "address"}): a tenant's log shows everyone who came
 * into its data, by sign-in or by switch. That tenant's own admins see
 * "before" as null (api_audit_list): the tenant left is another
 * customer's name; operators see both.
 */
enum MHD_Result api_session_tenant(struct api_req *r)
{
	struct api_sessions *ss = r->srv->sessions;
	struct store *st = r->srv->o.store;
	struct hr_err err;
	hr_err_clear(&err);
	if (session_only(r,
	                 "switching tenants is for dashboard sessions: an API key belongs to one "
	                 "tenant",
	                 &err))
		return api_fail(r, HR_EINVAL, &err);
	enum MHD_Result ret;
	json_t *o = api_body_object(r, &ret);
	if (!o)
		return ret;
	static const char *const allowed[] = {"tenant", NULL};
	int rc = api_keys_check(o, allowed, &err);
	json_t *jt = json_object_get(o, "tenant");
	char to[HR_NAME_MAX] = "";
	if (rc == 0 && (!json_is_string(jt) || !json_string_length(jt)))
		rc = hr_fail(&err, HR_EINVAL, "tenant", "tenant is required (a tenant id)");
	else if (rc == 0)
		hr_utf8_copy(to, json_string_value(jt), sizeof to);
	bool too_long = rc == 0 && json_string_length(jt) >= sizeof to;
	json_decref(o);
	if (rc)
		return api_fail(r, rc, &err);
	char user[64] = "", from[HR_NAME_MAX] = "";
	bool multi = false;
	pthread_mutex_lock(&ss->lock);
	struct session *x = session_find(ss, r->session, hr_now_us());
	if (x) {
		hr_strlcpy(user, x->user, sizeof user);
		hr_strlcpy(from, x->who.tenant, sizeof from);
		multi = x->multi;
	}
	pthread_mutex_unlock(&ss->lock);
	if (!x)
		return api_fail(r, HR_EAUTH, NULL);
	if (!multi) {
		hr_fail(&err, HR_EFORBIDDEN, "tenant",
		        "this session sees one tenant: only a login of several tenants switches");
		return api_fail(r, HR_EFORBIDDEN, &err);
	}
	struct api_principal who;
	memset(&who, 0, sizeof who);
	rc = too_long ? hr_fail(&err, HR_ENOTFOUND, "tenant", "no such tenant")
	              : api_user_principal(r->srv->o.auth_cfg, st, user, to, &who, &err);
	if (rc)
		return api_fail(r, rc, &err);
	if (strcmp(from, to) != 0) {
		char addr[64], object[96];
		client_addr(r, addr);
		snprintf(object, sizeof object, "user:%s", user);
		struct audit_row a;
		rc = api_audit_json(r, to, "session.tenant", object,
		                    json_pack("{s:s}", "tenant", from),
		                    json_pack("{s:s, s:s}", "tenant", to, "address", addr), &a);
		if (rc == 0) {
			rc = st->ops->audit_append(st, &a, &err);
			api_audit_done(&a);
		}
		if (rc) /* no switch that the audit log does not show */
			return api_fail(r, rc, &err);
	}
	struct session snap;
	pthread_mutex_lock(&ss->lock);
	x = session_find(ss, r->session, hr_now_us());
	if (x && strcmp(from, to) != 0) {
		x->who = who;
		x->view_unit[0] = '\0';
		x->unmask_until = 0;
		x->epoch++;
	}
	if (x)
		snap = *x;
	pthread_mutex_unlock(&ss->lock);
	if (!x)
		return api_fail(r, HR_EAUTH, NULL);
	hr_log(HR_LOG_INFO, "api", "dashboard session of user %s switched from tenant %s to %s",
	       user, from, to);
	/* The answer is GET /v1/session's, for the tenant entered. */
	r->who = snap.who;
	hr_strlcpy(r->tenant, snap.who.tenant, sizeof r->tenant);
	r->unit_view = false;
	r->masked = true;
	json_t *j;
	if (session_answer(r, &snap, &j) != 0)
		return api_fail(r, HR_ENOMEM, NULL);
	const char *extra[] = {"Cache-Control", "no-store", NULL};
	return api_respond_json(r, 200, j, extra);
}
