/*
 * accept_fast.h - the switch and the counter of the single accept's fast
 * path (messages.c): the commonest request, {"channel", "account"?, "to",
 * "text"} with string values and nothing else, read with core/jsonr and
 * answered with core/jsonw instead of jansson trees. Anything else, and
 * every request the fast path would refuse, goes the jansson way, so the
 * outcome of every request is the same either way (tests/unit/test_api.c
 * compares both).
 */
#ifndef HR_API_ACCEPT_FAST_H
#define HR_API_ACCEPT_FAST_H

#include <stdatomic.h>
#include <stdbool.h>

/* true unless turned off; the tests turn it off for the jansson way's
 * result. Set before the server starts. */
extern bool api_fast_accept;
/* Single accepts the fast path built (the tests check that it served). */
extern atomic_ulong api_fast_accept_hits;

#endif
