/*
 * auth.c - who is calling, and what they may do.
 *
 * Credentials: `Authorization: Bearer <credential>`, where the credential is
 * an API key (its SHA-256 is looked up in the store: the key itself is never
 * kept), an operator key (server.operator_keys: hashed at start, compared in
 * constant time), or a JWT (three dot-separated parts: jwt.c).
 *
 * Keys read from the store are cached in a small direct-mapped table for
 * ttl_us (5 s), so the hot path is a hash and a read lock. That TTL is the
 * bound on revocation across nodes; on this node the admin handlers flush
 * the cache when they revoke or disable anything. Failed lookups are never
 * cached: a key created on any node works at once, and a flood of bad keys
 * cannot evict good ones. A key's last use is recorded at most once a
 * minute, by an asynchronous store write the request never waits for.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "api/api_int.h"
#include "core/crypto.h"

#define API_KEY_MAX 512
#define API_JWT_MAX 8192
#define API_TOUCH_EVERY_US (60 * 1000000LL)

static const char *const scope_names[] = {
    "messages:send",  "messages:read",      "campaigns:write", "campaigns:read", "templates:write",
    "accounts:write", "suppressions:write", "metrics:read",    "admin",
};

const char *api_scope_name(unsigned scope)
{
	for (size_t i = 0; i < sizeof scope_names / sizeof *scope_names; i++)
		if (scope == 1u << i)
			return scope_names[i];
	return NULL;
}

int api_scopes_parse(const char *text, unsigned *out, struct hr_err *err, const char *field)
{
	*out = 0;
	if (!text)
		return hr_fail(err, HR_EINVAL, field, "scopes are required");
	const char *p = text;
	while (*p) {
		size_t skip = strspn(p, " ,\t");
		p += skip;
		size_t n = strcspn(p, " ,\t");
		if (n == 0)
			break;
		if (n == 1 && *p == '*') {
			*out |= SCOPE_ALL;
		} else {
			size_t i;
			for (i = 0; i < sizeof scope_names / sizeof *scope_names; i++)
				if (strlen(scope_names[i]) == n &&
				    memcmp(scope_names[i], p, n) == 0)
					break;
			if (i == sizeof scope_names / sizeof *scope_names) {
				char bad[48];
				hr_utf8_copy(bad, p, n + 1 < sizeof bad ? n + 1 : sizeof bad);
				return hr_fail(
				    err, HR_EINVAL, field,
				    "unknown scope '%s' (known: messages:send, "
				    "messages:read, campaigns:write, campaigns:read, "
				    "templates:write, "
				    "accounts:write, suppressions:write, metrics:read, admin)",
				    bad);
			}
			*out |= 1u << i;
		}
		p += n;
	}
	if (*out == 0)
		return hr_fail(err, HR_EINVAL, field, "at least one scope is required");
	return 0;
}

const char *api_scopes_text(unsigned scopes, char *buf, size_t size)
{
	if ((scopes & SCOPE_ALL) == SCOPE_ALL) {
		hr_strlcpy(buf, "*", size);
		return buf;
	}
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof scope_names / sizeof *scope_names; i++) {
		if (!(scopes & (1u << i)))
			continue;
		int n = snprintf(buf + len, size - len, "%s%s", len ? " " : "", scope_names[i]);
		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
	return buf;
}

/* ---------------------------------------------------------------------------
 * The key cache.
 * ------------------------------------------------------------------------- */

void api_keycache_init(struct api_keycache *c, int64_t ttl_us)
{
	memset(c->slot, 0, sizeof c->slot);
	c->ttl_us = ttl_us > 0 ? ttl_us : 5 * 1000000LL;
	pthread_rwlock_init(&c->lock, NULL);
}

void api_keycache_destroy(struct api_keycache *c)
{
	pthread_rwlock_destroy(&c->lock);
	/* The slots hold key hashes only, but leave nothing behind anyway. */
	memset(c->slot, 0, sizeof c->slot);
}

void api_keycache_flush(struct api_keycache *c)
{
	pthread_rwlock_wrlock(&c->lock);
	for (size_t i = 0; i < API_KEYCACHE_SLOTS; i++)
		c->slot[i].hash[0] = '\0';
	pthread_rwlock_unlock(&c->lock);
}

/* The hash is uniformly distributed: its first hex digits pick the slot. */
static unsigned keycache_slot(const char *hash)
{
	char pfx[9];
	memcpy(pfx, hash, 8);
	pfx[8] = '\0';
	return (unsigned)(strtoul(pfx, NULL, 16) % API_KEYCACHE_SLOTS);
}

/* A fresh entry for hash: its principal, and whether a use should be
 * recorded now (then the entry counts it as recorded). */
static bool keycache_get(struct api_keycache *c, const char *hash, struct api_principal *who,
                         int64_t *expires_at, bool *touch)
{
	unsigned i = keycache_slot(hash);
	bool hit = false;
	int64_t now = hr_now_us();
	pthread_rwlock_rdlock(&c->lock);
	if (hr_consteq(c->slot[i].hash, strlen(c->slot[i].hash), hash, 64) &&
	    hr_mono_us() - c->slot[i].fetched < c->ttl_us) {
		*who = c->slot[i].who;
		*expires_at = c->slot[i].expires_at;
		*touch = now - c->slot[i].touched >= API_TOUCH_EVERY_US;
		hit = true;
	}
	pthread_rwlock_unlock(&c->lock);
	if (hit && *touch) {
		pthread_rwlock_wrlock(&c->lock);
		if (strcmp(c->slot[i].hash, hash) == 0 &&
		    now - c->slot[i].touched >= API_TOUCH_EVERY_US)
			c->slot[i].touched = now;
		else
			*touch = false; /* another thread records it */
		pthread_rwlock_unlock(&c->lock);
	}
	return hit;
}

static void keycache_put(struct api_keycache *c, const char *hash, const struct api_principal *who,
                         int64_t expires_at, int64_t touched)
{
	unsigned i = keycache_slot(hash);
	pthread_rwlock_wrlock(&c->lock);
	/* The same key read again keeps the use this node recorded last. */
	if (strcmp(c->slot[i].hash, hash) == 0 && c->slot[i].touched > touched)
		touched = c->slot[i].touched;
	hr_strlcpy(c->slot[i].hash, hash, sizeof c->slot[i].hash);
	c->slot[i].who = *who;
	c->slot[i].expires_at = expires_at;
	c->slot[i].fetched = hr_mono_us();
	c->slot[i].touched = touched;
	pthread_rwlock_unlock(&c->lock);
}

static void touch_done(void *arg, int rc, const struct hr_err *err)
{
	(void)arg;
	if (rc)
		hr_log(HR_LOG_DEBUG, "auth", "recording a key's last use failed: %s",
		       err && err->msg[0] ? err->msg : hr_code_name(rc));
}

/* ---------------------------------------------------------------------------
 * Authentication.
 * ------------------------------------------------------------------------- */

/* SHA-256 fetched from OpenSSL's provider once: EVP_sha256() makes every
 * digest look the algorithm up again (OpenSSL 3), which was half the cost of
 * hashing a key on every request. Never freed: one per process. */
static EVP_MD *auth_md;
static pthread_once_t auth_md_once = PTHREAD_ONCE_INIT;

static void auth_md_fetch(void)
{
	auth_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* hr_sha256_hex of the credential, with the digest fetched once. */
static void auth_hash(const char *cred, size_t len, char out[65])
{
	static const char hx[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	pthread_once(&auth_md_once, auth_md_fetch);
	if (!auth_md || !EVP_Digest(cred, len, md, &n, auth_md, NULL) || n != 32) {
		hr_sha256_hex(cred, len, out);
		return;
	}
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = hx[md[i] >> 4];
		out[2 * i + 1] = hx[md[i] & 15];
	}
	out[64] = '\0';
}

/* Operator keys: compared against every configured hash in constant time. */
static bool operator_key(const struct api_server *s, const char *hash, struct api_principal *who)
{
	bool found = false;
	for (size_t i = 0; i < s->o.noperator; i++)
		if (hr_consteq(s->o.operator_hashes[i], 64, hash, 64)) {
			found = true;
			memset(who, 0, sizeof *who);
			who->operator= true;
			who->scopes = SCOPE_ADMIN;
			snprintf(who->actor, sizeof who->actor, "operator:%.8s", hash);
		}
	return found;
}

/* A JWT's tenant and unit must exist and be enabled (read once per token
 * per cache period, like a key). */
static int jwt_owner_check(struct api_server *s, const struct api_principal *w, struct hr_err *err)
{
	struct store *st = s->o.store;
	struct tenant_info t;
	int rc = st->ops->tenant_get(st, w->tenant, &t);
	if (rc == HR_ENOTFOUND || (rc == 0 && t.disabled))
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "the token's tenant is unknown or disabled");
	if (rc == 0 && w->unit[0]) {
		struct unit_row u;
		rc = st->ops->unit_get(st, w->tenant, w->unit, &u);
		if (rc == HR_ENOTFOUND || (rc == 0 && u.disabled))
			return hr_fail(err, HR_EAUTH, "Authorization",
			               "the token's unit is unknown or disabled");
	}
	if (rc)
		return hr_fail(err, rc, NULL, "tenant lookup failed: %s", hr_code_name(rc));
	return 0;
}

/* The credential whose SHA-256 is hash (cred itself is needed for a JWT
 * only: NULL for a key known by its hash, as a dashboard session knows
 * it). */
static int cred_auth(struct api_req *r, const char *hash, const char *cred, size_t len, bool jwt,
                     struct hr_err *err)
{
	struct api_server *s = r->srv;
	if (!jwt && operator_key(s, hash, &r->who))
		return 0;
	int64_t expires_at = 0;
	bool touch = false;
	if (!keycache_get(&s->keys, hash, &r->who, &expires_at, &touch)) {
		struct api_principal who = {0};
		int rc;
		if (jwt) {
			if ((rc = api_jwt_verify(s->jwt, cred, len, &who, &expires_at, err)) != 0 ||
			    (rc = jwt_owner_check(s, &who, err)) != 0)
				return rc;
			keycache_put(&s->keys, hash, &who, expires_at, INT64_MAX / 2);
			r->who = who;
			return 0;
		}
		struct key_row k;
		rc = s->o.store->ops->key_lookup(s->o.store, hash, &k);
		if (rc == HR_ENOTFOUND)
			return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");
		if (rc != 0)
			return hr_fail(err, rc, NULL, "API key lookup failed: %s",
			               hr_code_name(rc));
		if (k.revoked_at)
			return hr_fail(err, HR_EAUTH, "Authorization", "API key %s was revoked",
			               k.prefix[0] ? k.prefix : "(config)");
		if (k.tenant_disabled)
			return hr_fail(err, HR_EAUTH, "Authorization",
			               "the key's tenant is disabled");
		if (k.unit_id[0] && k.unit_disabled)
			return hr_fail(err, HR_EAUTH, "Authorization",
			               "the key's unit is disabled");
		hr_strlcpy(who.tenant, k.tenant_id, sizeof who.tenant);
		hr_strlcpy(who.unit, k.unit_id, sizeof who.unit);
		struct hr_err perr;
		if (api_scopes_parse(k.scopes, &who.scopes, &perr, "scopes") != 0) {
			hr_log(HR_LOG_WARN, "auth", "key %s has unreadable scopes: %s",
			       k.prefix[0] ? k.prefix : "(config)", perr.msg);
			return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");
		}
		if (k.prefix[0])
			snprintf(who.actor, sizeof who.actor, "key:%s", k.prefix);
		else
			snprintf(who.actor, sizeof who.actor, "key:cfg_%.8s", hash);
		expires_at = k.expires_at;
		int64_t now = hr_now_us();
		touch = now - k.last_used_at >= API_TOUCH_EVERY_US;
		keycache_put(&s->keys, hash, &who, k.expires_at, touch ? now : k.last_used_at);
		r->who = who;
	}
	if (expires_at && hr_now_us() >= expires_at) {
		memset(&r->who, 0, sizeof r->who);
		return hr_fail(err, HR_EAUTH, "Authorization",
		               jwt ? "token expired" : "API key expired");
	}
	if (touch && !jwt)
		s->o.store->ops->key_touch(s->o.store, hash, hr_now_us(), touch_done, NULL);
	return 0;
}

int api_auth(struct api_req *r, struct hr_err *err)
{
	memset(&r->who, 0, sizeof r->who);
	r->tenant[0] = '\0';
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
	/* No bearer credential: a dashboard session's cookie, if any
	 * (session.c: the key it was made from, checked as below, and the
	 * CSRF token on anything but a read). */
	if (!h && api_session_cookie(r))
		return api_session_auth(r, err);
	if (!h)
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "missing API key: send 'Authorization: Bearer <key>'");
	if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "unsupported authorization scheme: use 'Bearer <key>'");
	const char *key = h + 7;
	while (*key == ' ' || *key == '\t')
		key++;
	size_t len = strlen(key);
	while (len && isspace((unsigned char)key[len - 1]))
		len--;
	if (len == 0)
		return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");
	/* A JWT has dots; API keys have none. */
	bool jwt = memchr(key, '.', len) != NULL;
	if (jwt && len > API_JWT_MAX)
		return hr_fail(err, HR_EAUTH, "Authorization", "token too long");
	if (jwt && !r->srv->jwt)
		return hr_fail(err, HR_EAUTH, "Authorization",
		               "bearer tokens (JWT) are not accepted by this server");
	if (!jwt && len > API_KEY_MAX)
		return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");
	char hash[65];
	auth_hash(key, len, hash);
	int rc = cred_auth(r, hash, key, len, jwt, err);
	if (rc == 0)
		hr_strlcpy(r->tenant, r->who.tenant, sizeof r->tenant);
	return rc;
}

int api_auth_key_hash(struct api_req *r, const char hash[65], struct hr_err *err)
{
	memset(&r->who, 0, sizeof r->who);
	r->tenant[0] = '\0';
	int rc = cred_auth(r, hash, NULL, 0, false, err);
	if (rc == 0)
		hr_strlcpy(r->tenant, r->who.tenant, sizeof r->tenant);
	return rc;
}

/* ---------------------------------------------------------------------------
 * Authorisation.
 * ------------------------------------------------------------------------- */

int api_authorize(struct api_req *r, unsigned scope, enum api_access access, struct hr_err *err)
{
	const struct api_principal *w = &r->who;
	if (access == ACCESS_PUBLIC)
		return 0;
	/* The scope first: a missing one is answered the same whatever the
	 * object, so it tells nothing about other tenants. */
	if (scope && !(w->scopes & scope))
		return hr_fail(err, HR_EFORBIDDEN, "scope", "this credential lacks the scope '%s'",
		               api_scope_name(scope));
	if (w->operator) {
		if (access == ACCESS_OPERATOR || access == ACCESS_ADMIN)
			return 0;
		return hr_fail(err, HR_EFORBIDDEN, "Authorization",
		               "operator keys manage tenants and keys; they read and send nothing");
	}
	switch (access) {
	case ACCESS_OPERATOR:
		return hr_fail(err, HR_EFORBIDDEN, "Authorization",
		               "this route needs an operator key");
	case ACCESS_ADMIN:
		/* Another tenant's /v1/tenants/{tenant}: as if it did not exist.
		 * Routes without {tenant} (/v1/audit) are the caller's own. */
		if (r->path_tenant[0] && strcmp(r->path_tenant, w->tenant) != 0)
			return hr_fail(err, HR_ENOTFOUND, "tenant", "no such tenant");
		/* fall through */
	case ACCESS_TENANT_WIDE:
		if (w->unit[0])
			return hr_fail(
			    err, HR_EFORBIDDEN, "Authorization",
			    "this route needs a tenant-wide credential, not one of unit '%s'",
			    w->unit);
		return 0;
	default:
		return 0;
	}
}

/*
 * A unit credential on /v1/batches/{id}/...: the campaign must be its
 * unit's, checked here before any handler reads or changes it, so every
 * campaign route (cancel, pause, resume, start, retry, delete, exports, events) answers a
 * sibling unit's campaign as one that does not exist.
 */
int api_unit_precheck(struct api_req *r, struct hr_err *err)
{
	if (!r->who.unit[0])
		return 0;
	switch (r->route) {
	case ROUTE_BATCH:
	case ROUTE_BATCH_START:
	case ROUTE_BATCH_CANCEL:
	case ROUTE_BATCH_ERRORS:
	case ROUTE_BATCH_MESSAGES:
	case ROUTE_BATCH_RETRY:
	case ROUTE_BATCH_EVENTS:
	case ROUTE_BATCH_EXPORT_CSV:
	case ROUTE_BATCH_EXPORT_XLSX:
	case ROUTE_BATCH_PAUSE:
	case ROUTE_BATCH_RESUME:
	case ROUTE_BATCH_BREAKDOWN: {
		struct store *st = r->srv->o.store;
		struct batch b;
		int rc = st->ops->batch_get(st, r->tenant, r->path_id, &b);
		if (rc == HR_ENOTFOUND)
			return 0; /* the handler answers it as usual */
		if (rc)
			return hr_fail(err, rc, NULL, "campaign lookup failed");
		bool mine = api_unit_visible(r, b.unit, false);
		batch_clear(&b);
		if (!mine)
			return hr_fail(err, HR_ENOTFOUND, NULL, "not found");
		return 0;
	}
	default:
		return 0;
	}
}

bool api_unit_visible(const struct api_req *r, const char *unit, bool shared_ok)
{
	if (!r->who.unit[0])
		return true;
	if (!unit || !unit[0])
		return shared_ok;
	return strcmp(unit, r->who.unit) == 0;
}
