/* SPDX-License-Identifier: MIT */
/* A binary min-heap of deadlines ordered by due time; each knows its index, so updating
 * or removing one is O(log n). */
#include "sniroute/core/deadline.h"

#include <stdlib.h>

static void
place(struct sr_deadline_heap *heap, size_t i, struct sr_deadline *d)
{
    heap->items[i] = d;
    d->index = i;
}

static void
sift_up(struct sr_deadline_heap *heap, size_t i)
{
    struct sr_deadline *d = heap->items[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (heap->items[parent]->due_ms <= d->due_ms) {
            break;
        }
        place(heap, i, heap->items[parent]);
        i = parent;
    }
    place(heap, i, d);
}

static void
sift_down(struct sr_deadline_heap *heap, size_t i)
{
    struct sr_deadline *d = heap->items[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= heap->n) {
            break;
        }
        if (child + 1 < heap->n && heap->items[child + 1]->due_ms < heap->items[child]->due_ms) {
            child++;
        }
        if (d->due_ms <= heap->items[child]->due_ms) {
            break;
        }
        place(heap, i, heap->items[child]);
        i = child;
    }
    place(heap, i, d);
}

int
sr_deadline_set(struct sr_deadline_heap *heap, struct sr_deadline *d, uint64_t due_ms)
{
    uint64_t old = d->due_ms;

    if (d->index != SR_DEADLINE_NONE) {
        d->due_ms = due_ms;
        if (due_ms < old) {
            sift_up(heap, d->index);
        } else {
            sift_down(heap, d->index);
        }
        return 0;
    }
    if (heap->n == heap->cap) {
        size_t cap = heap->cap == 0 ? 64 : heap->cap * 2;
        struct sr_deadline **items = realloc(heap->items, cap * sizeof(*items));

        if (items == NULL) {
            return -1;
        }
        heap->items = items;
        heap->cap = cap;
    }
    d->due_ms = due_ms;
    place(heap, heap->n++, d);
    sift_up(heap, d->index);
    return 0;
}

void
sr_deadline_clear(struct sr_deadline_heap *heap, struct sr_deadline *d)
{
    size_t i = d->index;
    struct sr_deadline *last;

    if (i == SR_DEADLINE_NONE) {
        return;
    }
    d->index = SR_DEADLINE_NONE;
    last = heap->items[--heap->n];
    if (i == heap->n) {
        return;
    }
    place(heap, i, last);
    if (i > 0 && heap->items[(i - 1) / 2]->due_ms > last->due_ms) {
        sift_up(heap, i);
    } else {
        sift_down(heap, i);
    }
}

void
sr_deadline_heap_fini(struct sr_deadline_heap *heap)
{
    free(heap->items);
    heap->items = NULL;
    heap->n = 0;
    heap->cap = 0;
}
