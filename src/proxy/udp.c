/* SPDX-License-Identifier: MIT */
/* UDP sockets and batched datagrams for the QUIC path (udp.h). */
#include "sniroute/proxy/udp.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/udp.h>
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
    int on = 1;
    int rc;

    if (fd < 0) {
        return -errno;
    }
    if (set_dont_fragment(fd, sa->sa_family) != 0 || connect(fd, sa, len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    (void)setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)); /* best effort: see udp.h */
    return fd;
}

int
sr_udp_recv(int fd, struct sr_udp_batch *b, unsigned flags)
{
    /* The control buffer is only worth the kernel's time where something may be in it. */
    bool with_ctrl = (flags & (SR_UDP_PKTINFO | SR_UDP_RUNS)) != 0;
    struct cmsghdr *c;
    int n;
    int i;

    for (i = 0; i < SR_UDP_BATCH; i++) {
        struct msghdr *h = &b->msgs[i].msg_hdr;

        b->iov[i].iov_base = b->bufs + (size_t)i * SR_UDP_BUF_SIZE;
        b->iov[i].iov_len = SR_UDP_BUF_SIZE;
        h->msg_iov = &b->iov[i];
        h->msg_iovlen = 1;
        h->msg_name = (flags & SR_UDP_PEER) != 0 ? &b->peers[i] : NULL;
        h->msg_namelen = (flags & SR_UDP_PEER) != 0 ? sizeof(b->peers[i]) : 0;
        h->msg_control = with_ctrl ? b->ctrl[i].buf : NULL;
        h->msg_controllen = with_ctrl ? sizeof(b->ctrl[i].buf) : 0;
        h->msg_flags = 0;
    }
    do {
        n = recvmmsg(fd, b->msgs, SR_UDP_BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
    for (i = 0; i < n; i++) {
        struct msghdr *h = &b->msgs[i].msg_hdr;

        b->iov[i].iov_len = b->msgs[i].msg_len;
        b->seg[i] = 0;
        if (h->msg_control == NULL) {
            continue;
        }
        for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                int size;

                memcpy(&size, CMSG_DATA(c), sizeof(size));
                b->seg[i] = size > 0 && size <= UINT16_MAX ? (uint16_t)size : 0;
            }
        }
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

/* Room for the control messages of one sent datagram: its source address and its
 * segment size. */
union send_ctrl {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
};

/* Write into <h>'s control buffer (room for union send_ctrl) the message that sets the
 * source address (<local>, if it names one) and the one that makes the kernel cut the
 * datagram into segments of <seg> bytes (if > 0); set msg_controllen (0 if neither). */
static void
set_ctrl(struct msghdr *h, const struct sr_udp_local *local, uint16_t seg)
{
    struct cmsghdr *c;
    size_t len = 0;

    if (local == NULL && seg == 0) {
        h->msg_control = NULL; /* the common case: a connected socket, one datagram */
        h->msg_controllen = 0;
        return;
    }
    h->msg_controllen = sizeof(union send_ctrl);
    memset(h->msg_control, 0, sizeof(union send_ctrl));
    c = CMSG_FIRSTHDR(h);
    if (local != NULL && local->family == AF_INET) {
        struct in_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        pi.ipi_spec_dst = local->addr.v4; /* the source; the routing table picks the way */
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        len += CMSG_SPACE(sizeof(pi));
        c = CMSG_NXTHDR(h, c);
    } else if (local != NULL && local->family == AF_INET6) {
        struct in6_pktinfo pi;

        memset(&pi, 0, sizeof(pi));
        pi.ipi6_addr = local->addr.v6;
        /* A link-local source means nothing without its interface; others route freely. */
        pi.ipi6_ifindex = IN6_IS_ADDR_LINKLOCAL(&local->addr.v6) ? local->ifindex : 0;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        len += CMSG_SPACE(sizeof(pi));
        c = CMSG_NXTHDR(h, c);
    }
    if (seg > 0) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        len += CMSG_SPACE(sizeof(seg));
    }
    h->msg_controllen = len;
    if (len == 0) {
        h->msg_control = NULL;
    }
}

static bool
is_run(const struct iovec *iov, const uint16_t *seg, size_t i)
{
    return seg != NULL && seg[i] > 0 && iov[i].iov_len > seg[i];
}

/* Send the run <run> as its datagrams of <seg> bytes, one by one in batches: where the
 * kernel will not cut it. True if all went. */
static bool
send_cut(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
         const struct iovec *run, uint16_t seg, int *err)
{
    struct iovec parts[SR_UDP_BATCH];
    size_t off = 0;

    while (off < run->iov_len) {
        size_t k = 0;

        for (; k < SR_UDP_BATCH && off < run->iov_len; k++) {
            size_t left = run->iov_len - off;

            parts[k].iov_base = (uint8_t *)run->iov_base + off;
            parts[k].iov_len = left < seg ? left : seg;
            off += parts[k].iov_len;
        }
        if (sr_udp_send(fd, peer, local, parts, NULL, k, NULL, err) < k) {
            return false;
        }
    }
    return true;
}

/* One sendmsg's worth of entries: <n> entries from <first>, sent as one buffer the kernel
 * cuts into datagrams of <seg> bytes (0: one entry, one datagram). */
struct send_group {
    size_t first;
    size_t n;
    uint16_t seg;
};

/* The group that starts at entry <i> of <iov>[0..n). A run stays alone; single datagrams
 * next to each other join while they have one size (the last may be shorter, and ends the
 * group): one trip through the kernel's stack for all of them, and the same datagrams on
 * the wire, since the kernel cuts at the size they had. */
static struct send_group
group_at(const struct iovec *iov, const uint16_t *seg, size_t i, size_t n, bool is_gso)
{
    struct send_group g = {i, 1, 0};
    size_t size = iov[i].iov_len;
    size_t total = size;

    if (is_run(iov, seg, i)) {
        g.seg = seg[i];
        return g;
    }
    if (!is_gso || size == 0) {
        return g;
    }
    while (i + g.n < n && g.n < SR_UDP_GSO_SEGMENTS && !is_run(iov, seg, i + g.n) &&
           iov[i + g.n].iov_len <= size && iov[i + g.n].iov_len > 0 &&
           total + iov[i + g.n].iov_len <= SR_UDP_GSO_BYTES) {
        total += iov[i + g.n].iov_len;
        g.n++;
        if (iov[i + g.n - 1].iov_len < size) {
            break;
        }
    }
    if (g.n > 1) {
        g.seg = (uint16_t)size;
    }
    return g;
}

/* Send group <g> without the kernel's help: its datagrams one by one. True if all went. */
static bool
send_group_cut(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
               struct iovec *iov, struct send_group g, int *err)
{
    if (g.n == 1) {
        return send_cut(fd, peer, local, &iov[g.first], g.seg, err);
    }
    return sr_udp_send(fd, peer, local, &iov[g.first], NULL, g.n, NULL, err) == g.n;
}

size_t
sr_udp_send(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
            struct iovec *iov, const uint16_t *seg, size_t n, struct sr_udp_gso *gso, int *err)
{
    struct mmsghdr msgs[SR_UDP_BATCH];
    struct send_group groups[SR_UDP_BATCH];
    union send_ctrl ctrl[SR_UDP_BATCH];
    bool is_gso = gso != NULL && !gso->no_gso;
    size_t done = 0;
    size_t next;
    size_t k;
    size_t m;
    int rc;

    *err = 0;
    if (local != NULL && local->family == 0) {
        local = NULL;
    }
    while (done < n) {
        for (k = 0, next = done; next < n && k < SR_UDP_BATCH; k++) {
            struct msghdr *h = &msgs[k].msg_hdr;

            groups[k] = group_at(iov, seg, next, n, is_gso);
            if (groups[k].seg > 0 && !is_gso) {
                break; /* a run the kernel will not cut: by hand, below */
            }
            memset(h, 0, sizeof(*h));
            h->msg_iov = &iov[next];
            h->msg_iovlen = groups[k].n;
            if (peer != NULL) {
                h->msg_name = (void *)&peer->sa;
                h->msg_namelen = peer->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                : sizeof(struct sockaddr_in);
            }
            h->msg_control = ctrl[k].buf;
            set_ctrl(h, local, groups[k].seg);
            next += groups[k].n;
        }
        if (k == 0) {
            if (!send_group_cut(fd, peer, local, iov, groups[0], err)) {
                break;
            }
            done += groups[0].n;
            continue;
        }
        do {
            rc = sendmmsg(fd, msgs, (unsigned)k, MSG_DONTWAIT);
        } while (rc < 0 && errno == EINTR);
        for (m = 0; rc > 0 && m < (size_t)rc; m++) {
            done += groups[m].n;
        }
        if (rc > 0) {
            continue;
        }
        *err = rc < 0 ? errno : EIO;
        /* EIO: the way out cannot checksum a GSO buffer; EINVAL: segments too many or too
         * large for it. If sending them one by one works, the kernel's GSO was the fault. */
        if ((*err == EIO || *err == EINVAL) && groups[0].seg > 0) {
            if (!send_group_cut(fd, peer, local, iov, groups[0], err)) {
                break;
            }
            gso->no_gso = true;
            is_gso = false;
            done += groups[0].n;
            continue;
        }
        break;
    }
    return done;
}
