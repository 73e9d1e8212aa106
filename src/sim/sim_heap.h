/*
 * sim_heap.h - the binary min-heap the simulators' schedulers keep their
 * due work in (sim_heap.c): webhook events (sim_webhook.c), SMS status
 * callbacks (sim_sms_post.c), RBM pushes (sim_rcs.c). An array of `size`-
 * byte elements ordered by less (each scheduler's: due time, then push
 * order); the caller owns the array and its locking.
 */
#ifndef HR_SIM_HEAP_H
#define HR_SIM_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef bool (*sim_heap_less)(const void *a, const void *b);

/* Moves element i up to its place (after it was set at the end). */
void sim_heap_up(void *heap, size_t size, size_t i, sim_heap_less less);
/* Moves element i down to its place among the first n. */
void sim_heap_down(void *heap, size_t size, size_t n, size_t i, sim_heap_less less);

#endif
