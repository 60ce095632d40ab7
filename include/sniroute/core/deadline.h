/* SPDX-License-Identifier: MIT */
/* A min-heap of deadlines: one per connection, one libuv timer per worker. A connection
 * embeds a 16-byte sr_deadline where a uv_timer_t would cost 152 bytes. Pure: no libuv,
 * no clock; the caller passes times in and asks for what is due. */
#ifndef SR_DEADLINE_H
#define SR_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

#define SR_DEADLINE_NONE SIZE_MAX

struct sr_deadline {
    uint64_t due_ms;
    size_t index; /* in the heap, or SR_DEADLINE_NONE when not set */
};

struct sr_deadline_heap {
    struct sr_deadline **items;
    size_t n;
    size_t cap;
};

static inline void
sr_deadline_init(struct sr_deadline *d)
{
    d->due_ms = 0;
    d->index = SR_DEADLINE_NONE;
}

/* Set <d> to <due_ms>, whether or not it was set. Returns 0, or -1 when out of memory
 * (then <d> is unchanged). */
int sr_deadline_set(struct sr_deadline_heap *heap, struct sr_deadline *d, uint64_t due_ms);

/* Unset <d> (nothing if it is not set). */
void sr_deadline_clear(struct sr_deadline_heap *heap, struct sr_deadline *d);

/* The earliest deadline, or NULL when none is set. */
static inline struct sr_deadline *
sr_deadline_first(const struct sr_deadline_heap *heap)
{
    return heap->n > 0 ? heap->items[0] : NULL;
}

/* Free the heap's array (every deadline must be cleared, or no longer used). */
void sr_deadline_heap_fini(struct sr_deadline_heap *heap);

#endif
