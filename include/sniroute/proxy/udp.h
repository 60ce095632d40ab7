/* SPDX-License-Identifier: MIT */
/* UDP sockets for the QUIC path (quicflow.h): the listening socket of a protocol = quic
 * listener, a flow's connected socket towards its upstream, and datagrams moved in batches
 * (recvmmsg/sendmmsg) with the local address each came to (IP_PKTINFO, IPV6_RECVPKTINFO),
 * so that on a wildcard listener a reply leaves from the address the client sent to. Plain
 * system calls on descriptors; no flow state, no event loop. Linux. */
#ifndef SR_UDP_H
#define SR_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Datagrams per recvmmsg/sendmmsg. Each system call costs about a microsecond on top of the
 * copy: 32 make that small against the bytes, and keep one socket's turn short. */
#define SR_UDP_BATCH 32

/* A buffer sent with UDP_SEGMENT: at most this many datagrams (the kernel's limit since
 * 4.18; 6.x allows 128) and this many bytes (an IPv4 packet's limit, less its headers). */
#define SR_UDP_GSO_SEGMENTS 64
#define SR_UDP_GSO_BYTES    65507

/* Room per received datagram: the largest UDP payload there is (SR_QUIC_MAX_DATAGRAM is
 * 65527), so nothing is ever truncated. The batch's buffers are one allocation the kernel
 * backs with pages only where datagrams are written: a 1200-byte datagram touches one. */
#define SR_UDP_BUF_SIZE 65536

/* The local address a datagram came to, to send the replies from. <family> 0: the socket is
 * bound to one address (or pktinfo was absent): send without saying. */
struct sr_udp_local {
    sa_family_t family;
    uint32_t ifindex; /* IPv6: used for link-local addresses only */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;
};

/* What sr_udp_recv() asks the kernel for besides the bytes. */
enum sr_udp_recv_flags {
    SR_UDP_PEER = 1 << 0,    /* each datagram's sender */
    SR_UDP_PKTINFO = 1 << 1, /* the local address each came to */
    SR_UDP_RUNS = 1 << 2,    /* runs the kernel coalesced (a socket of sr_udp_connect()) */
};

/* A peer address that fits either family. */
union sr_udp_peer {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* Received datagrams and where they are from, for one recvmmsg. Caller-owned; about 10 KB
 * plus the buffers (SR_UDP_BATCH * SR_UDP_BUF_SIZE of address space). Entry i is one
 * datagram, or with seg[i] > 0 a run of datagrams of seg[i] bytes each (the last may be
 * shorter) that the kernel coalesced on a socket with UDP_GRO: they stay a run, and leave
 * as the same datagrams (sr_udp_send()). */
struct sr_udp_batch {
    struct mmsghdr msgs[SR_UDP_BATCH];
    struct iovec iov[SR_UDP_BATCH];
    union sr_udp_peer peers[SR_UDP_BATCH];
    uint16_t seg[SR_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl[SR_UDP_BATCH];
    uint8_t *bufs;
};

/* How the datagrams a sender wrote are sent on: whole runs with UDP_SEGMENT (GSO), until
 * the kernel refuses that on a socket (no checksum offload on the way out, say); then
 * <no_gso> is set and runs are cut into datagrams here. One per sending socket. */
struct sr_udp_gso {
    bool no_gso;
};

/* Allocate the batch's buffers; 0 or -ENOMEM. _fini frees them (safe after a failed init). */
int sr_udp_batch_init(struct sr_udp_batch *b);
void sr_udp_batch_fini(struct sr_udp_batch *b);

/* A bound UDP socket for a QUIC listener at <sa> (IPv4 or IPv6; IPv6 only for [::]): non-
 * blocking, close-on-exec, SO_REUSEPORT if <is_reuseport> (several workers: the kernel
 * hashes the client's address and port to one socket, so a flow stays with one worker),
 * the don't-fragment bit set on what it sends (QUIC's path MTU probes rely on it), larger
 * socket buffers where the system allows, and pktinfo on when bound to a wildcard address
 * (<*has_pktinfo>). With <fd> >= 0 (a socket inherited in a binary upgrade) the same
 * options are set on it instead of opening one. Returns the descriptor or a negative errno
 * (<fd> is closed then). */
int sr_udp_listen(const struct sockaddr *sa, bool is_reuseport, int fd, bool *has_pktinfo);

/* A connected UDP socket towards <sa> (<len> bytes), non-blocking, close-on-exec, DF set:
 * a flow's socket, which receives datagrams from that address only and learns of an ICMP
 * port unreachable as ECONNREFUSED. UDP_GRO is on where the kernel has it (4.18 and later,
 * silently off before): a run of datagrams the upstream sent with GSO, or back to back,
 * arrives as one buffer and costs one copy and one entry of a batch instead of dozens.
 * Returns the descriptor or a negative errno. */
int sr_udp_connect(const struct sockaddr *sa, socklen_t len);

/* Receive up to SR_UDP_BATCH entries from <fd> into <b> without blocking, with what
 * <flags> (enum sr_udp_recv_flags) ask. Returns how many (0: none waiting), or a negative
 * errno (a pending ICMP error on a connected socket reads as -ECONNREFUSED and the like).
 * Entry i is b->iov[i] (iov_len set to its length) from b->peers[i], a run of datagrams if
 * b->seg[i] > 0; b->msgs[i].msg_hdr.msg_flags has MSG_TRUNC if it did not fit (it cannot). */
int sr_udp_recv(int fd, struct sr_udp_batch *b, unsigned flags);

/* Datagrams in entry <len> bytes long with segment size <seg> (0: one). */
static inline uint64_t
sr_udp_datagrams(size_t len, uint16_t seg)
{
    return seg == 0 || len <= seg ? 1 : (len + seg - 1) / seg;
}

/* The local address datagram <i> of <b> came to (family 0 if the kernel said nothing). */
void sr_udp_local_of(const struct sr_udp_batch *b, int i, struct sr_udp_local *local);

/* Send the <n> entries <iov>[0..n) to <peer> (NULL: <fd> is connected) from <local>
 * (NULL or family 0: let the kernel choose), in order, without blocking. With <seg> (NULL:
 * every entry is one datagram), entry i with seg[i] > 0 is a run of datagrams of that size
 * as sr_udp_recv() gave it. With <gso> (NULL: no GSO), a run leaves in one sendmsg with
 * UDP_SEGMENT, and so do neighbouring single datagrams of one size; the kernel cuts them
 * into the very datagrams given. Where it refuses (<gso>->no_gso set from then on) runs are
 * cut here and datagrams go one by one. Returns how many entries went, always the first
 * ones: a failure (a full socket buffer, an ICMP error of an earlier datagram, one too large
 * for the interface) ends the batch, the rest unsent, with its errno in <*err> (0 if all
 * went). UDP may drop anyway; QUIC resends what is lost. */
size_t sr_udp_send(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
                   struct iovec *iov, const uint16_t *seg, size_t n, struct sr_udp_gso *gso,
                   int *err);

#endif
