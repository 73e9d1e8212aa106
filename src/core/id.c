/*
 * id.c - ULIDs (https://github.com/ulid/spec): 48-bit Unix milliseconds then
 * 80 random bits, Crockford base32. Within one millisecond the random part
 * is incremented rather than redrawn, so ids from one process are strictly
 * increasing: B-tree inserts append at the right edge (10x faster in SQLite
 * than random keys) and "ORDER BY id" is creation order.
 */
#include <pthread.h>
#include <string.h>

#include "core/crypto.h"
#include "herald.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms;
static unsigned char last_rand[10];

void hr_id_new(char out[HR_ID_LEN + 1])
{
	unsigned char b[16];
	uint64_t ms = (uint64_t)(hr_now_us() / 1000);

	pthread_mutex_lock(&id_lock);
	if (ms <= last_ms) {
		/* Same (or earlier: clock stepped back) millisecond: increment. */
		ms = last_ms;
		for (int i = 9; i >= 0; i--)
			if (++last_rand[i] != 0)
				break;
	} else {
		last_ms = ms;
		hr_random_bytes(last_rand, sizeof last_rand);
		last_rand[0] &= 0x7f; /* headroom so increments never overflow */
	}
	memcpy(b + 6, last_rand, 10);
	pthread_mutex_unlock(&id_lock);

	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (8 * (5 - i)));

	/* 128 bits -> 26 base32 digits (the first holds only 3 bits). */
	int bit = -2; /* 130 bits of output, top 2 are zero */
	for (int i = 0; i < HR_ID_LEN; i++) {
		int v = 0;
		for (int k = 0; k < 5; k++, bit++) {
			v <<= 1;
			if (bit >= 0 && (b[bit / 8] >> (7 - bit % 8)) & 1)
				v |= 1;
		}
		out[i] = b32[v];
	}
	out[HR_ID_LEN] = '\0';
}

bool hr_id_valid(const char *s)
{
	if (!s || strlen(s) != HR_ID_LEN)
		return false;
	if (s[0] > '7')
		return false;
	for (int i = 0; i < HR_ID_LEN; i++)
		if (!strchr(b32, s[i]) || s[i] == '\0')
			return false;
	return true;
}
