/* SPDX-License-Identifier: MIT */
/* The deadline heap against a plain array: random sets, moves (earlier and later) and
 * clears keep the earliest on top and every index right; popping returns due order. */
#include "sniroute/core/deadline.h"

#include <stdlib.h>

#include "support/assert.h"

#define N 2000

static struct sr_deadline items[N];

static uint64_t
model_min(void)
{
    uint64_t min = UINT64_MAX;
    size_t i;

    for (i = 0; i < N; i++) {
        if (items[i].index != SR_DEADLINE_NONE && items[i].due_ms < min) {
            min = items[i].due_ms;
        }
    }
    return min;
}

static void
check_heap(const struct sr_deadline_heap *heap)
{
    size_t i;

    for (i = 0; i < heap->n; i++) {
        ASSERT_EQ(heap->items[i]->index, i);
        if (i > 0) {
            ASSERT(heap->items[(i - 1) / 2]->due_ms <= heap->items[i]->due_ms);
        }
    }
}

static void
test_against_model(void)
{
    struct sr_deadline_heap heap = {0};
    uint64_t last = 0;
    unsigned seed = 7;
    size_t n_set = 0;
    size_t round;
    size_t i;

    for (i = 0; i < N; i++) {
        sr_deadline_init(&items[i]);
    }
    for (round = 0; round < 20000; round++) {
        struct sr_deadline *d = &items[(size_t)rand_r(&seed) % N];

        if (rand_r(&seed) % 4 == 0) {
            n_set -= d->index != SR_DEADLINE_NONE;
            sr_deadline_clear(&heap, d);
            ASSERT_EQ(d->index, SR_DEADLINE_NONE);
        } else {
            n_set += d->index == SR_DEADLINE_NONE;
            ASSERT_EQ(sr_deadline_set(&heap, d, (uint64_t)(rand_r(&seed) % 100000)), 0);
        }
        ASSERT_EQ(heap.n, n_set);
        if (round % 97 == 0) {
            check_heap(&heap);
        }
        if (heap.n > 0) {
            ASSERT_EQ(sr_deadline_first(&heap)->due_ms, model_min());
        }
    }
    check_heap(&heap);
    /* Popping the first each time yields non-decreasing due times. */
    while (sr_deadline_first(&heap) != NULL) {
        struct sr_deadline *d = sr_deadline_first(&heap);

        ASSERT(d->due_ms >= last);
        last = d->due_ms;
        sr_deadline_clear(&heap, d);
    }
    ASSERT_EQ(model_min(), UINT64_MAX);
    sr_deadline_clear(&heap, &items[0]); /* clearing an unset one is a no-op */
    sr_deadline_heap_fini(&heap);
}

int
main(void)
{
    test_against_model();
    return 0;
}
