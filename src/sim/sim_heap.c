/*
 * sim_heap.c - see sim_heap.h.
 */
#include "sim/sim_heap.h"

static void swap(char *a, char *b, size_t size)
{
	for (size_t k = 0; k < size; k++) {
		char t = a[k];
		a[k] = b[k];
		b[k] = t;
	}
}

void sim_heap_up(void *heap, size_t size, size_t i, sim_heap_less less)
{
	char *h = heap;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!less(h + i * size, h + p * size))
			break;
		swap(h + i * size, h + p * size, size);
		i = p;
	}
}

void sim_heap_down(void *heap, size_t size, size_t n, size_t i, sim_heap_less less)
{
	char *h = heap;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && less(h + l * size, h + m * size))
			m = l;
		if (r < n && less(h + r * size, h + m * size))
			m = r;
		if (m == i)
			return;
		swap(h + i * size, h + m * size, size);
		i = m;
	}
}
