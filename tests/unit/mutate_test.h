/*
 * mutate_test.h - the random edits the differential tests make to a text
 * (jsonr against jansson, the channels' fast webhook reading against the
 * jansson one): each a byte replaced, deleted or inserted (a byte of pool),
 * or, with cut, the text cut short there.
 */
#ifndef HR_TEST_MUTATE_H
#define HR_TEST_MUTATE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* 1 to max_edits edits of buf[0..n); an insert only while the text is
 * shorter than cap. Returns the new length. */
static inline size_t mutate(char *buf, size_t n, size_t cap, unsigned *seed, int max_edits,
                            bool cut, const char *pool)
{
	size_t npool = strlen(pool);
	int edits = 1 + rand_r(seed) % max_edits;
	for (int e = 0; e < edits && n > 0; e++) {
		size_t at = (size_t)rand_r(seed) % n;
		char c = pool[(size_t)rand_r(seed) % npool];
		switch (rand_r(seed) % (cut ? 4 : 3)) {
		case 0:
			buf[at] = c;
			break;
		case 1:
			memmove(buf + at, buf + at + 1, n - at - 1);
			n--;
			break;
		case 2:
			if (n < cap) {
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = c;
				n++;
			}
			break;
		default:
			n = at;
		}
	}
	return n;
}

#endif
