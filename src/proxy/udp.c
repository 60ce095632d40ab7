/* SPDX-License-Identifier: MIT */
/* UDP sockets and batched datagrams for the QUIC path (udp.h). */
#include "sniroute/proxy/udp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Socket buffers asked for on a listening socket: one socket carries every flow of a worker,
 * so a burst from many clients must not overflow the kernel's default (about 200 KB). The
 * kernel caps this at net.core.rmem_max / wmem_max without complaint. */
#define SR_UDP_LISTEN_BUF (4 * 1024 * 1024)

int
sr_udp_batch_init(struct sr_udp_batch *b)
{
    memset(b, 0, sizeof(*b));
    b->bufs = malloc((size_t)SR_UDP_BATCH * SR_UDP_BUF_SIZE);
    return b->bufs == NULL ? -ENOMEM : 0;
}

void
sr_udp_batch_fini(struct sr_udp_batch *b)
{
    free(b->bufs);
    b->bufs = NULL;
}

static bool
is_wildcard(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6) {
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
    }
    return ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
}

/* Don't fragment, and do not shrink to the kernel's idea of the path MTU either: a QUIC
 * endpoint probes the path itself and must see a too-large datagram lost, not cut (RFC
 * 9000 14: never fragmented). IP_PMTUDISC_PROBE sets DF and ignores the cached PMTU. */
static int
set_dont_fragment(int fd, int family)
{
    int v4 = IP_PMTUDISC_PROBE;
    int v6 = IPV6_PMTUDISC_PROBE;

    if (family == AF_INET6) {
        return setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof(v6));
    }
    return setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof(v4));
}

int
sr_udp_listen(const struct sockaddr *sa, bool is_reuseport, int fd, bool *has_pktinfo)
{
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int buf = SR_UDP_LISTEN_BUF;
    int on = 1;
    bool is_inherited = fd >= 0;
    int rc;

    *has_pktinfo = is_wildcard(sa);
    if (!is_inherited) {
        fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -errno;
        }
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    /* No SO_REUSEADDR: for UDP it would let another socket bind the same address and take
     * our datagrams. Buffers are best effort. */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (set_dont_fragment(fd, sa->sa_family) != 0 ||
        (*has_pktinfo && sa->sa_family == AF_INET &&
         setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0) ||
        (*has_pktinfo && sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) != 0)) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (is_inherited) {
        return fd; /* bound, with SO_REUSEPORT and V6ONLY as the old process set them */
    }
    if ((is_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) ||
        bind(fd, sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int
sr_udp_connect(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0) {
        return -errno;
    }
    if (set_dont_fragment(fd, sa->sa_family) != 0 || connect(fd, sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int
sr_udp_recv(int fd, struct sr_udp_batch *b, bool with_peer, bool with_pktinfo)
{
    int n;
    int i;

    for (i = 0; i < SR_UDP_BATCH; i++) {
        struct msghdr *h = &b->msgs[i].msg_hdr;

        b->iov[i].iov_base = b->bufs + (size_t)i * SR_UDP_BUF_SIZE;
        b->iov[i].iov_len = SR_UDP_BUF_SIZE;
        h->msg_iov = &b->iov[i];
        h->msg_iovlen = 1;
        h->msg_name = with_peer ? &b->peers[i] : NULL;
        h->msg_namelen = with_peer ? sizeof(b->peers[i]) : 0;
        h->msg_control = with_pktinfo ? b->ctrl[i].buf : NULL;
        h->msg_controllen = with_pktinfo ? sizeof(b->ctrl[i].buf) : 0;
        h->msg_flags = 0;
    }
    do {
        n = recvmmsg(fd, b->msgs, SR_UDP_BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
    for (i = 0; i < n; i++) {
        b->iov[i].iov_len = b->msgs[i].msg_len;
    }
    return n;
}

void
sr_udp_local_of(const struct sr_udp_batch *b, int i, struct sr_udp_local *local)
{
    struct msghdr *h = (struct msghdr *)&b->msgs[i].msg_hdr;
    struct cmsghdr *c;

    memset(local, 0, sizeof(*local));
    if (h->msg_control == NULL) {
        return;
    }
    for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;

            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->family = AF_INET;
            local->addr.v4 = pi.ipi_addr; /* the datagram's destination */
            return;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;

            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->family = AF_INET6;
            local->addr.v6 = pi.ipi6_addr;
            local->ifindex = pi.ipi6_ifindex;
            return;
        }
    }
}

/* The control message that sets a datagram's source address. */
static size_t
local_cmsg(const struct sr_udp_local *local, void *buf, size_t cap)
{
    struct msghdr h;
    struct cmsghdr *c;

    memset(&h, 0, sizeof(h));
    h.msg_control = buf;
    h.msg_controllen = cap;
    c = CMSG_FIRSTHDR(&h);
    if (local->family == AF_INET) {
        struct in_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        pi.ipi_spec_dst = local->addr.v4; /* the source; the routing table picks the way */
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    {
        struct in6_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        pi.ipi6_addr = local->addr.v6;
        /* A link-local source means nothing without its interface; others route freely. */
        pi.ipi6_ifindex = IN6_IS_ADDR_LINKLOCAL(&local->addr.v6) ? local->ifindex : 0;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
}

size_t
sr_udp_send(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
            struct iovec *iov, size_t n, int *err)
{
    struct mmsghdr msgs[SR_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctrl;
    size_t ctrl_len = 0;
    size_t done = 0;
    size_t i;
    int rc;

    *err = 0;
    if (local != NULL && local->family != 0) {
        ctrl_len = local_cmsg(local, ctrl.buf, sizeof(ctrl.buf));
    }
    while (done < n) {
        size_t k = n - done < SR_UDP_BATCH ? n - done : SR_UDP_BATCH;

        for (i = 0; i < k; i++) {
            struct msghdr *h = &msgs[i].msg_hdr;

            memset(h, 0, sizeof(*h));
            h->msg_iov = &iov[done + i];
            h->msg_iovlen = 1;
            if (peer != NULL) {
                h->msg_name = (void *)&peer->sa;
                h->msg_namelen = peer->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                : sizeof(struct sockaddr_in);
            }
            if (ctrl_len > 0) {
                h->msg_control = ctrl.buf; /* only read: one copy serves every message */
                h->msg_controllen = ctrl_len;
            }
        }
        do {
            rc = sendmmsg(fd, msgs, (unsigned)k, MSG_DONTWAIT);
        } while (rc < 0 && errno == EINTR);
        if (rc <= 0) {
            *err = rc < 0 ? errno : EIO;
            break;
        }
        done += (size_t)rc;
    }
    return done;
}
