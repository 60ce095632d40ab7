/* SPDX-License-Identifier: MIT */
/* Config generations (generation.h) as the workers hold them: a worker's connections
 * count in that worker's hold, so only its first takes a reference and only its last
 * gives it back (accept and close write no shared line); holds of two workers are apart;
 * a worker without a hold (an unprepared generation) falls back to references; and the
 * shared counters every worker writes per connection sit on lines of their own. */
#include "sniroute/core/generation.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sniroute/core/shared.h"
#include "support/assert.h"

static void
on_error(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "config: %s\n", msg);
}

static struct sr_generation *
load(void)
{
    static const char text[] = "[listener a]\nlisten = 127.0.0.1:0\nroutes = r\n\n"
                               "[routes r]\na.example = 127.0.0.1:9\n";
    char path[] = "/tmp/sr-test-generation-XXXXXX";
    struct sr_generation *gen;
    size_t n_errors = 0;
    int fd = mkstemp(path);
    FILE *f;

    ASSERT(fd >= 0);
    f = fdopen(fd, "w");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
    ASSERT_EQ(fclose(f), 0);
    gen = sr_generation_load(path, on_error, NULL, &n_errors);
    unlink(path);
    ASSERT(gen != NULL);
    ASSERT_EQ(n_errors, 0);
    return gen;
}

static size_t
refs(struct sr_generation *gen)
{
    return atomic_load(&gen->n_refs);
}

static void
test_holds(void)
{
    struct sr_shared shared;
    struct sr_generation *gen = load();
    size_t i;

    ASSERT_EQ(sr_shared_init(&shared, 2), 0);
    ASSERT_EQ(sr_generation_prepare(gen, &shared), 0);
    ASSERT_EQ(gen->n_holds, 2);
    ASSERT_EQ((uintptr_t)gen % 64, 0);
    ASSERT_EQ((uintptr_t)&gen->holds[1] - (uintptr_t)&gen->holds[0], 64);
    ASSERT_EQ(refs(gen), 1); /* main's */

    /* 1000 connections on worker 0: one reference for all of them. */
    for (i = 0; i < 1000; i++) {
        ASSERT(sr_generation_hold(gen, 0) == gen);
    }
    ASSERT_EQ(refs(gen), 2);
    ASSERT_EQ(gen->holds[0].n, 1000);
    /* Worker 1's first connection: a reference of its own. */
    ASSERT(sr_generation_hold(gen, 1) == gen);
    ASSERT_EQ(refs(gen), 3);
    for (i = 0; i < 999; i++) {
        sr_generation_release(gen, 0);
    }
    ASSERT_EQ(refs(gen), 3); /* worker 0 still has one connection on it */
    sr_generation_release(gen, 0);
    ASSERT_EQ(refs(gen), 2);
    ASSERT_EQ(gen->holds[0].n, 0);
    /* A worker beyond the holds: a plain reference per connection. */
    ASSERT(sr_generation_hold(gen, 7) == gen);
    ASSERT_EQ(refs(gen), 3);
    sr_generation_release(gen, 7);
    ASSERT_EQ(refs(gen), 2);

    /* Main lets go first (a reload): worker 1's last connection frees it (ASan: no leak,
     * no use after free). */
    sr_generation_unref(gen);
    ASSERT_EQ(refs(gen), 1);
    sr_generation_release(gen, 1);
    sr_generation_release(NULL, 0);
    sr_shared_fini(&shared);
}

static void
test_unprepared(void)
{
    struct sr_generation *gen = load();

    ASSERT_EQ(gen->n_holds, 0);
    ASSERT(sr_generation_hold(gen, 0) == gen);
    ASSERT_EQ(refs(gen), 2);
    sr_generation_release(gen, 0);
    ASSERT_EQ(refs(gen), 1);
    sr_generation_unref(gen);
}

/* Written by every worker at every accept and close: n_conns (and n_quic_flows per flow)
 * share no line with anything, nor does a generation's n_refs. */
static void
test_layout(void)
{
    ASSERT_EQ(offsetof(struct sr_shared, n_conns) % 64, 0);
    ASSERT_EQ(offsetof(struct sr_shared, lchunks) - offsetof(struct sr_shared, n_conns), 64);
    ASSERT_EQ(offsetof(struct sr_shared, n_quic_flows) % 64, 0);
    ASSERT_EQ(offsetof(struct sr_shared, quic_fd_budget) - offsetof(struct sr_shared, n_quic_flows),
              64);
    ASSERT_EQ(offsetof(struct sr_generation, n_refs) % 64, 0);
    ASSERT_EQ(offsetof(struct sr_generation, holds) - offsetof(struct sr_generation, n_refs), 64);
}

int
main(void)
{
    test_holds();
    test_unprepared();
    test_layout();
    printf("test_generation: ok\n");
    return 0;
}
