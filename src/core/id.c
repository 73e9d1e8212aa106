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

/* 48 bits of milliseconds then 80 random bits, as 26 base32 digits (the
 * first holds only 3 bits: 130 bits of output, the top 2 zero). */
static void id_encode(uint64_t ms, const unsigned char rnd[10], char out[HR_ID_LEN + 1])
{
	unsigned char b[16];
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (8 * (5 - i)));
	memcpy(b + 6, rnd, 10);
	int bit = -2;
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

void hr_id_new(char out[HR_ID_LEN + 1])
{
	unsigned char rnd[10];
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
	memcpy(rnd, last_rand, 10);
	pthread_mutex_unlock(&id_lock);
	id_encode(ms, rnd, out);
}

/* Times before the epoch or past the 48 bits of milliseconds a ULID holds
 * (year 10889) are clamped to its ends. */
static uint64_t id_ms(int64_t us)
{
	if (us <= 0)
		return 0;
	uint64_t ms = (uint64_t)us / 1000;
	return ms > 0xFFFFFFFFFFFFull ? 0xFFFFFFFFFFFFull : ms;
}

void hr_id_at(int64_t us, char out[HR_ID_LEN + 1])
{
	unsigned char rnd[10];
	hr_random_bytes(rnd, sizeof rnd);
	id_encode(id_ms(us), rnd, out);
}

void hr_id_time_prefix(int64_t us, char out[HR_ID_TIME_LEN + 1])
{
	static const unsigned char zero[10];
	char id[HR_ID_LEN + 1];
	id_encode(id_ms(us), zero, id);
	memcpy(out, id, HR_ID_TIME_LEN);
	out[HR_ID_TIME_LEN] = '\0';
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
