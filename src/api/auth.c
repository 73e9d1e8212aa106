/*
 * auth.c - Bearer API keys. The store keeps only sha256(key); a request's
 * key is hashed and looked up, and positive answers are cached in a small
 * direct-mapped table so the hot path is a hash and a read lock, not a
 * database read. Failed lookups are never cached: a key added to the store
 * works at once, and a flood of bad keys cannot evict good ones.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "core/crypto.h"

#define API_KEY_MAX 512

void api_keycache_init(struct api_keycache *c)
{
	memset(c->slot, 0, sizeof c->slot);
	pthread_rwlock_init(&c->lock, NULL);
}

void api_keycache_destroy(struct api_keycache *c)
{
	pthread_rwlock_destroy(&c->lock);
	/* The slots hold key hashes only, but leave nothing behind anyway. */
	memset(c->slot, 0, sizeof c->slot);
}

/* The hash is uniformly distributed: its first hex digits pick the slot. */
static unsigned keycache_slot(const char *hash)
{
	char pfx[9];
	memcpy(pfx, hash, 8);
	pfx[8] = '\0';
	return (unsigned)(strtoul(pfx, NULL, 16) % API_KEYCACHE_SLOTS);
}

static bool keycache_get(struct api_keycache *c, const char *hash, char tenant[HR_NAME_MAX])
{
	unsigned i = keycache_slot(hash);
	bool hit = false;
	pthread_rwlock_rdlock(&c->lock);
	if (hr_consteq(c->slot[i].hash, strlen(c->slot[i].hash), hash, 64)) {
		hr_strlcpy(tenant, c->slot[i].tenant, HR_NAME_MAX);
		hit = true;
	}
	pthread_rwlock_unlock(&c->lock);
	return hit;
}

static void keycache_put(struct api_keycache *c, const char *hash, const char *tenant)
{
	unsigned i = keycache_slot(hash);
	pthread_rwlock_wrlock(&c->lock);
	hr_strlcpy(c->slot[i].hash, hash, sizeof c->slot[i].hash);
	hr_strlcpy(c->slot[i].tenant, tenant, sizeof c->slot[i].tenant);
	pthread_rwlock_unlock(&c->lock);
}

int api_auth(struct api_req *r, struct hr_err *err)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
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
	if (len == 0 || len > API_KEY_MAX)
		return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");

	char hash[65];
	hr_sha256_hex(key, len, hash);
	struct api_server *s = r->srv;
	if (keycache_get(&s->keys, hash, r->tenant))
		return 0;
	int rc = s->o.store->ops->api_key_lookup(s->o.store, hash, r->tenant);
	if (rc == HR_ENOTFOUND)
		return hr_fail(err, HR_EAUTH, "Authorization", "invalid API key");
	if (rc != 0)
		return hr_fail(err, rc, NULL, "API key lookup failed: %s", hr_code_name(rc));
	keycache_put(&s->keys, hash, r->tenant);
	return 0;
}
