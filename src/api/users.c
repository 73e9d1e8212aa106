/*
 * users.c - configured dashboard logins: besides an API key, a
 * person signs in with a name and password defined in the config:
 *
 *   dashboard:
 *     users:
 *       - {name: ana, password_hash: "$y$j9T$...", tenant: acme, unit: cards,
 *          role: operator}
 *
 * The hash is crypt(3)'s, made by `herald hash-password` (yescrypt,
 * libxcrypt); verification is libxcrypt's crypt_rn and a constant-time
 * comparison, nothing hand-written. An unknown name is checked against a
 * fixed dummy hash so that it costs what a known one does. Roles map to
 * scopes (viewer, operator, approver: api_user_scopes).
 *
 * Failed attempts are limited per user name and per client address: after
 * USER_FAIL_MAX failures within USER_FAIL_WINDOW_US, sign-ins for that name
 * or from that address answer 429 (Retry-After) until the window has
 * passed, right or wrong password alike; a success clears the name's count.
 * Both tables are fixed-size (USER_FAIL_SLOTS each, the stalest entry
 * reused), so a client cannot grow them.
 */
#include <crypt.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api/api_int.h"
#include "core/config.h"

#define USER_NAME_MAX 64
#define USER_PASSWORD_MAX 256
#define USER_FAIL_MAX 5
#define USER_FAIL_WINDOW_US (15 * 60 * 1000000LL)
#define USER_FAIL_SLOTS 1024
#define USER_TENANTS_MAX 1000 /* a login's tenants listed by id */

/* A valid yescrypt hash of a random password nobody knows: an unknown
 * name is verified against it, so it takes as long as a known one. */
static const char dummy_hash[] =
    "$y$j9T$Ekb7iLVtBsIlCkCv8rN0y0$dJqETBQdHKlT9xWL8cYwPiuillNH6lo3pDZOG/htXU4";

static const struct {
	const char *name;
	unsigned scopes;
} roles[] = {
    {"viewer", SCOPE_MESSAGES_READ | SCOPE_CAMPAIGNS_READ},
    {"operator", SCOPE_MESSAGES_READ | SCOPE_CAMPAIGNS_READ | SCOPE_MESSAGES_SEND |
                     SCOPE_CAMPAIGNS_WRITE | SCOPE_SUPPRESSIONS_WRITE | SCOPE_TEMPLATES_WRITE},
    {"approver", SCOPE_MESSAGES_READ | SCOPE_CAMPAIGNS_READ | SCOPE_MESSAGES_SEND |
                     SCOPE_CAMPAIGNS_WRITE | SCOPE_SUPPRESSIONS_WRITE | SCOPE_TEMPLATES_WRITE |
                     SCOPE_ACCOUNTS_WRITE},
};

bool api_user_scopes(const char *role, unsigned *scopes)
{
	for (size_t i = 0; role && i < sizeof roles / sizeof *roles; i++)
		if (!strcmp(role, roles[i].name)) {
			*scopes = roles[i].scopes;
			return true;
		}
	return false;
}

/* A tenants[] entry's id: the string, or the mapping's "id". */
static const char *user_entry_id(json_t *e)
{
	return json_is_object(e) ? json_string_value(json_object_get(e, "id"))
	                         : json_string_value(e);
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n >= USER_NAME_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") == n;
}

/*
 * A login's "tenants" (platform and on-call staff): "*" (every
 * tenant the store holds, now and later), or a list of 1 to
 * USER_TENANTS_MAX tenant ids, each a string or {id, role} (the role in
 * that tenant, the login's own otherwise). f is "dashboard.users[i]";
 * errors name "<f>.tenants" or "<f>.tenants[k]".
 */
static int user_tenants_check(json_t *jts, const char *f, struct hr_err *err)
{
	char tf[128];
	snprintf(tf, sizeof tf, "%s.tenants", f);
	if (json_is_string(jts)) {
		if (strcmp(json_string_value(jts), "*") != 0)
			return hr_fail(err, HR_EINVAL, tf,
			               "%s must be a list of tenant ids or \"*\" (every tenant)",
			               tf);
		return 0;
	}
	if (!json_is_array(jts))
		return hr_fail(err, HR_EINVAL, tf,
		               "%s must be a list of tenant ids or \"*\" (every tenant)", tf);
	size_t n = json_array_size(jts);
	if (n == 0)
		return hr_fail(err, HR_EINVAL, tf, "%s is empty: list at least one tenant", tf);
	if (n > USER_TENANTS_MAX)
		return hr_fail(err, HR_EINVAL, tf,
		               "%s lists %zu tenants (at most %d; \"*\" for all)", tf, n,
		               USER_TENANTS_MAX);
	for (size_t k = 0; k < n; k++) {
		json_t *e = json_array_get(jts, k);
		char ef[160];
		snprintf(ef, sizeof ef, "%s[%zu]", tf, k);
		const char *id = user_entry_id(e);
		if (json_is_object(e)) {
			const char *key;
			json_t *v;
			json_object_foreach(e, key, v)
			{
				if (strcmp(key, "id") && strcmp(key, "role"))
					return hr_fail(err, HR_EINVAL, ef,
					               "%s.%.40s is not a known field (id, role)",
					               ef, key);
			}
			unsigned sc;
			json_t *jr = json_object_get(e, "role");
			if (jr && !api_user_scopes(json_string_value(jr), &sc))
				return hr_fail(err, HR_EINVAL, ef,
				               "%s.role must be viewer, operator or approver", ef);
		}
		if (!id || !*id || strlen(id) >= HR_NAME_MAX || !strcmp(id, "*"))
			return hr_fail(err, HR_EINVAL, ef, "%s must be a tenant id (or {id, role})",
			               ef);
		for (size_t j = 0; j < k; j++)
			if (!strcmp(user_entry_id(json_array_get(jts, j)), id))
				return hr_fail(err, HR_EINVAL, ef,
				               "%s: tenant '%s' is listed twice", ef, id);
	}
	return 0;
}

int api_users_check(json_t *cfg, struct hr_err *err)
{
	json_t *users = hr_cfg_get(cfg, "dashboard.users");
	if (!users || json_is_null(users))
		return 0;
	if (!json_is_array(users))
		return hr_fail(err, HR_EINVAL, "dashboard.users", "dashboard.users must be a list");
	size_t i;
	json_t *u;
	char f[96];
	json_array_foreach(users, i, u)
	{
		if (!json_is_object(u))
			return hr_fail(err, HR_EINVAL, "dashboard.users",
			               "dashboard.users[%zu] must be a mapping", i);
		const char *key;
		json_t *v;
		json_object_foreach(u, key, v)
		{
			if (strcmp(key, "name") && strcmp(key, "password_hash") &&
			    strcmp(key, "tenant") && strcmp(key, "unit") && strcmp(key, "role") &&
			    strcmp(key, "tenants")) {
				snprintf(f, sizeof f, "dashboard.users[%zu].%.40s", i, key);
				return hr_fail(err, HR_EINVAL, f, "%s is not a known field", f);
			}
		}
		const char *name = json_string_value(json_object_get(u, "name"));
		const char *hash = json_string_value(json_object_get(u, "password_hash"));
		const char *tenant = json_string_value(json_object_get(u, "tenant"));
		json_t *ju = json_object_get(u, "unit");
		const char *role = json_string_value(json_object_get(u, "role"));
		unsigned scopes;
		snprintf(f, sizeof f, "dashboard.users[%zu]", i);
		if (!name_ok(name))
			return hr_fail(
			    err, HR_EINVAL, f,
			    "%s.name must be 1-63 of letters, digits, '.', '_', '@', '-'", f);
		if (!hash || crypt_checksalt(hash) != CRYPT_SALT_OK || strlen(hash) < 20)
			return hr_fail(err, HR_EINVAL, f,
			               "%s.password_hash must be a crypt(3) hash (make one with "
			               "`herald hash-password`)",
			               f);
		json_t *jts = json_object_get(u, "tenants");
		if (jts && json_object_get(u, "tenant"))
			return hr_fail(err, HR_EINVAL, f,
			               "%s: give tenant (one) or tenants (several), not both", f);
		if (jts) {
			if (user_tenants_check(jts, f, err) ||
			    (ju && !json_is_null(ju) &&
			     hr_fail(err, HR_EINVAL, f,
			             "%s.unit: a login of several tenants is tenant-wide (no unit)",
			             f)))
				return err->code;
		} else if (!tenant || !*tenant || strlen(tenant) >= HR_NAME_MAX)
			return hr_fail(err, HR_EINVAL, f, "%s.tenant (or tenants) is required", f);
		if (ju && !json_is_null(ju) &&
		    (!json_is_string(ju) || !*json_string_value(ju) ||
		     json_string_length(ju) >= HR_NAME_MAX))
			return hr_fail(err, HR_EINVAL, f, "%s.unit must be a unit id", f);
		if (!api_user_scopes(role, &scopes))
			return hr_fail(err, HR_EINVAL, f,
			               "%s.role must be viewer, operator or approver", f);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(json_string_value(
			                json_object_get(json_array_get(users, k), "name")),
			            name))
				return hr_fail(err, HR_EINVAL, f, "%s.name '%s' is defined twice",
				               f, name);
	}
	return 0;
}

/* ---- failed attempts ---- */

struct fail_slot {
	char key[USER_NAME_MAX + 8]; /* "u:<name>" or "a:<address>" */
	int n;
	int64_t first, last; /* wall us */
};

static struct {
	pthread_mutex_t lock;
	struct fail_slot slot[2][USER_FAIL_SLOTS];
} fails = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct fail_slot *fail_find(int table, const char *key, int64_t now, bool make)
{
	struct fail_slot *v = fails.slot[table], *stale = &v[0];
	for (int i = 0; i < USER_FAIL_SLOTS; i++) {
		if (v[i].key[0] && now - v[i].first >= USER_FAIL_WINDOW_US)
			memset(&v[i], 0, sizeof v[i]); /* its window is over */
		if (v[i].key[0] && !strcmp(v[i].key, key))
			return &v[i];
		if (!v[i].key[0] || v[i].last < stale->last)
			stale = &v[i];
		if (!v[i].key[0])
			stale = &v[i];
	}
	if (!make)
		return NULL;
	memset(stale, 0, sizeof *stale);
	hr_strlcpy(stale->key, key, sizeof stale->key);
	stale->first = now;
	return stale;
}

/* Seconds until name or address may try again, 0 when they may now. */
static int64_t fail_wait(const char *name, const char *addr, int64_t now)
{
	int64_t wait = 0;
	pthread_mutex_lock(&fails.lock);
	const char *keys[2] = {name, addr};
	for (int t = 0; t < 2; t++) {
		struct fail_slot *s = keys[t] ? fail_find(t, keys[t], now, false) : NULL;
		if (s && s->n >= USER_FAIL_MAX) {
			int64_t w = (s->first + USER_FAIL_WINDOW_US - now + 999999) / 1000000;
			if (w > wait)
				wait = w;
		}
	}
	pthread_mutex_unlock(&fails.lock);
	return wait;
}

static void fail_note(const char *name, const char *addr, bool ok, int64_t now)
{
	pthread_mutex_lock(&fails.lock);
	if (ok) {
		struct fail_slot *s = fail_find(0, name, now, false);
		if (s)
			memset(s, 0, sizeof *s);
	} else {
		const char *keys[2] = {name, addr};
		for (int t = 0; t < 2; t++) {
			struct fail_slot *s = keys[t] ? fail_find(t, keys[t], now, true) : NULL;
			if (s) {
				s->n++;
				s->last = now;
			}
		}
	}
	pthread_mutex_unlock(&fails.lock);
}

void api_user_fails_reset(void)
{
	pthread_mutex_lock(&fails.lock);
	memset(fails.slot, 0, sizeof fails.slot);
	pthread_mutex_unlock(&fails.lock);
}

/* ---- verification ---- */

int api_user_verify(json_t *cfg, const char *name, const char *password, const char *addr,
                    struct api_principal *who, int64_t *retry_s, struct hr_err *err)
{
	*retry_s = 0;
	if (!name || !password || strlen(name) >= USER_NAME_MAX ||
	    strlen(password) > USER_PASSWORD_MAX)
		return hr_fail(err, HR_EAUTH, "password", "wrong name or password");
	char ukey[USER_NAME_MAX + 8], akey[80];
	snprintf(ukey, sizeof ukey, "u:%s", name);
	snprintf(akey, sizeof akey, "a:%.70s", addr ? addr : "-");
	int64_t now = hr_now_us();
	int64_t wait = fail_wait(ukey, akey, now);
	if (wait > 0) {
		*retry_s = wait;
		return hr_fail(err, HR_EQUOTA, "password",
		               "too many failed sign-ins for this name or from this address: try "
		               "again in %lld s",
		               (long long)wait);
	}
	json_t *users = hr_cfg_get(cfg, "dashboard.users"), *found = NULL;
	size_t i;
	json_t *u;
	json_array_foreach(users, i, u)
	{
		const char *un =
		    json_is_object(u) ? json_string_value(json_object_get(u, "name")) : NULL;
		if (un && !strcmp(un, name))
			found = u;
	}
	const char *hash =
	    found ? json_string_value(json_object_get(found, "password_hash")) : NULL;
	if (!hash)
		hash = dummy_hash;
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (!cd)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	const char *out = crypt_rn(password, hash, cd, sizeof *cd);
	size_t hl = strlen(hash);
	bool ok = out && strlen(out) == hl && CRYPTO_memcmp(out, hash, hl) == 0 && found;
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	fail_note(ukey, akey, ok, now);
	if (!ok)
		return hr_fail(err, HR_EAUTH, "password", "wrong name or password");
	memset(who, 0, sizeof *who);
	snprintf(who->actor, sizeof who->actor, "user:%s", name);
	return 0;
}

/* ---- the tenants of a login ---- */

static json_t *user_find(json_t *cfg, const char *name)
{
	size_t i;
	json_t *u;
	json_array_foreach(hr_cfg_get(cfg, "dashboard.users"), i, u)
	{
		const char *un =
		    json_is_object(u) ? json_string_value(json_object_get(u, "name")) : NULL;
		if (un && name && !strcmp(un, name))
			return u;
	}
	return NULL;
}

/* Whether login u may see tenant id; *role its role there. */
static bool user_allows(json_t *u, const char *id, const char **role)
{
	*role = json_string_value(json_object_get(u, "role"));
	json_t *jts = json_object_get(u, "tenants");
	if (!jts) {
		const char *t = json_string_value(json_object_get(u, "tenant"));
		return t && !strcmp(t, id);
	}
	if (json_is_string(jts))
		return true; /* "*" */
	size_t k;
	json_t *e;
	json_array_foreach(jts, k, e)
	{
		const char *eid = user_entry_id(e);
		if (eid && !strcmp(eid, id)) {
			const char *r = json_string_value(json_object_get(e, "role"));
			if (r)
				*role = r;
			return true;
		}
	}
	return false;
}

bool api_user_multi(json_t *cfg, const char *name)
{
	json_t *jts = json_object_get(user_find(cfg, name), "tenants");
	return jts && (json_is_string(jts) || json_array_size(jts) > 1);
}

int api_user_principal(json_t *cfg, struct store *st, const char *name, const char *tenant,
                       struct api_principal *who, struct hr_err *err)
{
	json_t *u = user_find(cfg, name);
	if (!u)
		return hr_fail(err, HR_EAUTH, "name", "no such login");
	char pick[HR_NAME_MAX] = "";
	const char *role = NULL;
	if (tenant) {
		struct tenant_info t;
		memset(&t, 0, sizeof t);
		/* Not listed, unknown and disabled answer alike: which tenants
		 * exist is nobody's business but the operator's. */
		if (strlen(tenant) >= HR_NAME_MAX || !user_allows(u, tenant, &role) ||
		    st->ops->tenant_get(st, tenant, &t) != 0 || t.disabled)
			return hr_fail(err, HR_ENOTFOUND, "tenant", "no such tenant");
		hr_strlcpy(pick, tenant, sizeof pick);
	} else if (!json_object_get(u, "tenants")) {
		hr_strlcpy(pick, json_string_value(json_object_get(u, "tenant")), sizeof pick);
		role = json_string_value(json_object_get(u, "role"));
	} else {
		/* The first the login may see that is enabled: the list's order,
		 * or the store's for "*". */
		struct tenant_info *all = NULL;
		size_t n = 0;
		if (st->ops->tenant_list(st, &all, &n) != 0)
			return hr_fail(err, HR_EIO, NULL, "cannot read the tenants");
		json_t *jts = json_object_get(u, "tenants");
		size_t k;
		json_t *e;
		if (json_is_array(jts)) {
			json_array_foreach(jts, k, e)
			{
				for (size_t i = 0; !pick[0] && i < n; i++)
					if (!all[i].disabled &&
					    !strcmp(all[i].id, user_entry_id(e)))
						hr_strlcpy(pick, all[i].id, sizeof pick);
				if (pick[0])
					break;
			}
		} else {
			for (size_t i = 0; !pick[0] && i < n; i++)
				if (!all[i].disabled)
					hr_strlcpy(pick, all[i].id, sizeof pick);
		}
		free(all);
		if (!pick[0] || !user_allows(u, pick, &role))
			return hr_fail(err, HR_EAUTH, "name",
			               "none of this login's tenants is enabled");
	}
	memset(who, 0, sizeof *who);
	hr_strlcpy(who->tenant, pick, sizeof who->tenant);
	const char *unit =
	    json_object_get(u, "tenants") ? NULL : json_string_value(json_object_get(u, "unit"));
	if (unit)
		hr_strlcpy(who->unit, unit, sizeof who->unit);
	if (!api_user_scopes(role, &who->scopes))
		return hr_fail(err, HR_EAUTH, "name", "the login's role is not known");
	snprintf(who->actor, sizeof who->actor, "user:%s", name);
	return 0;
}

int api_user_tenants(json_t *cfg, struct store *st, const char *name, struct tenant_info **out,
                     size_t *n)
{
	*out = NULL;
	*n = 0;
	json_t *u = user_find(cfg, name);
	struct tenant_info *all = NULL;
	size_t na = 0;
	if (!u)
		return HR_ENOTFOUND;
	if (st->ops->tenant_list(st, &all, &na) != 0)
		return HR_EIO;
	size_t k = 0;
	for (size_t i = 0; i < na && k < USER_TENANTS_MAX; i++) {
		const char *role;
		if (!all[i].disabled && user_allows(u, all[i].id, &role))
			all[k++] = all[i];
	}
	*out = all;
	*n = k;
	return 0;
}

int api_users_check_tenants(json_t *cfg, struct store *st, struct hr_err *err)
{
	size_t i;
	json_t *u;
	json_array_foreach(hr_cfg_get(cfg, "dashboard.users"), i, u)
	{
		json_t *jts = json_object_get(u, "tenants");
		const char *one = json_string_value(json_object_get(u, "tenant"));
		size_t n = jts ? json_array_size(jts) : 1; /* "*": 0, nothing to check */
		for (size_t k = 0; k < n; k++) {
			const char *id = jts ? user_entry_id(json_array_get(jts, k)) : one;
			struct tenant_info t;
			memset(&t, 0, sizeof t);
			if (id && st->ops->tenant_get(st, id, &t) == 0)
				continue;
			char f[128];
			if (jts)
				snprintf(f, sizeof f, "dashboard.users[%zu].tenants[%zu]", i, k);
			else
				snprintf(f, sizeof f, "dashboard.users[%zu].tenant", i);
			return hr_fail(err, HR_EINVAL, f,
			               "%s: no tenant '%.63s' (tenants[] or "
			               "POST /v1/tenants makes one)",
			               f, id ? id : "");
		}
	}
	return 0;
}
