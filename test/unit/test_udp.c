/* SPDX-License-Identifier: MIT */
/* Batched UDP on loopback (src/proxy/udp.c): a run of datagrams leaves as the datagrams it
 * was made of, whether the kernel cuts it (UDP_SEGMENT) or we do (after the kernel refused
 * once, as it does on a socket without UDP checksums); single datagrams of one size sent
 * together arrive as they were, sizes and order kept; a GSO sender's run arrives on a
 * flow socket as one entry with its segment size (UDP_GRO) and counts as its datagrams. */
#include "sniroute/proxy/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/assert.h"

/* A UDP socket bound to 127.0.0.1 on a free port; its address in <sin>. */
static int
bound(struct sockaddr_in *sin)
{
    socklen_t len = sizeof(*sin);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    ASSERT(fd >= 0);
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)sin, &len), 0);
    return fd;
}

/* Bytes that say where they are: datagram boundaries cannot shift unseen. */
static void
fill(uint8_t *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
    }
}

/* Receive exactly the datagrams <want>[0..n) on <fd>, in order, and then nothing. */
static void
expect_datagrams(int fd, const struct iovec *want, size_t n)
{
    static uint8_t buf[65536];
    struct pollfd p = {fd, POLLIN, 0};
    size_t i;
    ssize_t got;

    for (i = 0; i < n; i++) {
        ASSERT_EQ(poll(&p, 1, 2000), 1);
        got = recv(fd, buf, sizeof(buf), 0);
        if (got != (ssize_t)want[i].iov_len || memcmp(buf, want[i].iov_base, (size_t)got) != 0) {
            SR_FAIL("datagram %zu: %zd bytes, want %zu (or other bytes)", i, got, want[i].iov_len);
        }
    }
    ASSERT_EQ(poll(&p, 1, 50), 0);
}

/* A run of <n_seg> segments of <seg> bytes, the last <last> bytes, through sr_udp_send()
 * with <gso>; the receiver sees each segment. */
static void
send_run(int to, int from, uint16_t seg, size_t n_seg, size_t last, struct sr_udp_gso *gso)
{
    static uint8_t run[65536];
    struct iovec parts[64];
    struct iovec iov;
    size_t len = (n_seg - 1) * seg + last;
    size_t i;
    int err = -1;

    fill(run, len, (unsigned)n_seg);
    for (i = 0; i < n_seg; i++) {
        parts[i].iov_base = run + i * seg;
        parts[i].iov_len = i + 1 < n_seg ? seg : last;
    }
    iov.iov_base = run;
    iov.iov_len = len;
    ASSERT_EQ(sr_udp_send(from, NULL, NULL, &iov, &seg, 1, gso, &err), 1);
    ASSERT_EQ(err, 0);
    expect_datagrams(to, parts, n_seg);
}

static void
test_run_kernel_and_by_hand(void)
{
    struct sockaddr_in sin;
    int to = bound(&sin);
    int from = sr_udp_connect((struct sockaddr *)&sin, sizeof(sin));
    struct sr_udp_gso gso = {false};

    ASSERT(from >= 0);
    send_run(to, from, 1200, 5, 700, &gso);
    ASSERT(!gso.no_gso); /* loopback cuts GSO buffers */
    send_run(to, from, 1200, 54, 1200, &gso);
    gso.no_gso = true;
    send_run(to, from, 1200, 5, 700, &gso);
    send_run(to, from, 1350, 40, 1, &gso);
    close(from);
    close(to);
}

/* Datagrams of one size side by side go out together; a longer one starts a new group, a
 * shorter one ends its group; zero-length ones stay alone. What arrives is what was given. */
static void
test_groups(void)
{
    static const size_t sizes[] = {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 500,
                                   1200, 1200, 1200, 1200, 1300, 1300, 20,   20,   20,   0,
                                   0,    64,   64,   1452, 1452, 1452, 1452, 1452, 1452, 1452,
                                   1452, 1452, 1452, 1452, 1452, 1452, 1452, 1452, 9000, 1};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    static uint8_t bytes[N][9000];
    struct iovec iov[N];
    struct sockaddr_in sin;
    int to = bound(&sin);
    int from = sr_udp_connect((struct sockaddr *)&sin, sizeof(sin));
    struct sr_udp_gso gso = {false};
    size_t i;
    int err = -1;

    ASSERT(from >= 0);
    for (i = 0; i < N; i++) {
        fill(bytes[i], sizes[i], (unsigned)i);
        iov[i].iov_base = bytes[i];
        iov[i].iov_len = sizes[i];
    }
    ASSERT_EQ(sr_udp_send(from, NULL, NULL, iov, NULL, N, &gso, &err), N);
    ASSERT_EQ(err, 0);
    expect_datagrams(to, iov, N);
    ASSERT(!gso.no_gso);
    close(from);
    close(to);
}

/* A socket without UDP checksums (SO_NO_CHECK) makes the kernel refuse GSO (EINVAL): the
 * run and the group still arrive whole, cut here, and the socket is marked. */
static void
test_kernel_refuses(void)
{
    static uint8_t a[1200];
    static uint8_t b[1200];
    struct iovec pair[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
    struct sockaddr_in sin;
    int to = bound(&sin);
    int from = sr_udp_connect((struct sockaddr *)&sin, sizeof(sin));
    struct sr_udp_gso gso = {false};
    int one = 1;
    int err = -1;

    ASSERT(from >= 0);
    ASSERT_EQ(setsockopt(from, SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)), 0);
    send_run(to, from, 1200, 5, 700, &gso);
    ASSERT(gso.no_gso);
    gso.no_gso = false;
    fill(a, sizeof(a), 1);
    fill(b, sizeof(b), 2);
    ASSERT_EQ(sr_udp_send(from, NULL, NULL, pair, NULL, 2, &gso, &err), 2);
    ASSERT_EQ(err, 0);
    expect_datagrams(to, pair, 2);
    ASSERT(gso.no_gso);
    close(from);
    close(to);
}

/* A GSO sender's run reaches a socket of sr_udp_connect() as one entry (UDP_GRO) with its
 * segment size, and is sent on as the same datagrams. */
static void
test_gro_receive(void)
{
    static struct sr_udp_batch batch;
    static uint8_t run[5 * 1200];
    struct sockaddr_in peer_sin;
    struct sockaddr_in flow_sin;
    int peer = bound(&peer_sin);
    int flow = sr_udp_connect((struct sockaddr *)&peer_sin, sizeof(peer_sin));
    socklen_t len = sizeof(flow_sin);
    struct sr_udp_gso gso = {false};
    struct pollfd p;
    struct iovec iov = {run, 4 * 1200 + 300};
    uint16_t seg = 1200;
    int err = -1;
    int n;

    ASSERT(flow >= 0);
    ASSERT_EQ(getsockname(flow, (struct sockaddr *)&flow_sin, &len), 0);
    ASSERT_EQ(connect(peer, (struct sockaddr *)&flow_sin, sizeof(flow_sin)), 0);
    ASSERT_EQ(sr_udp_batch_init(&batch), 0);
    fill(run, iov.iov_len, 9);
    ASSERT_EQ(sr_udp_send(peer, NULL, NULL, &iov, &seg, 1, &gso, &err), 1);
    p.fd = flow;
    p.events = POLLIN;
    ASSERT_EQ(poll(&p, 1, 2000), 1);
    n = sr_udp_recv(flow, &batch, SR_UDP_RUNS);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(batch.iov[0].iov_len, iov.iov_len);
    ASSERT_EQ(batch.seg[0], 1200);
    ASSERT_EQ(sr_udp_datagrams(batch.iov[0].iov_len, batch.seg[0]), 5);
    ASSERT_EQ(memcmp(batch.iov[0].iov_base, run, iov.iov_len), 0);
    ASSERT_EQ(sr_udp_datagrams(1200, 0), 1);
    ASSERT_EQ(sr_udp_datagrams(1200, 1200), 1);
    ASSERT_EQ(sr_udp_datagrams(2401, 1200), 3);
    sr_udp_batch_fini(&batch);
    close(flow);
    close(peer);
}

int
main(void)
{
    test_run_kernel_and_by_hand();
    test_groups();
    test_kernel_refuses();
    test_gro_receive();
    return 0;
}
