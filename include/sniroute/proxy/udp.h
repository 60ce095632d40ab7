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

/* A peer address that fits either family. */
union sr_udp_peer {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* Received datagrams and where they are from, for one recvmmsg. Caller-owned; about 10 KB
 * plus the buffers (SR_UDP_BATCH * SR_UDP_BUF_SIZE of address space). */
struct sr_udp_batch {
    struct mmsghdr msgs[SR_UDP_BATCH];
    struct iovec iov[SR_UDP_BATCH];
    union sr_udp_peer peers[SR_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctrl[SR_UDP_BATCH];
    uint8_t *bufs;
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
 * port unreachable as ECONNREFUSED. Returns the descriptor or a negative errno. */
int sr_udp_connect(const struct sockaddr *sa, socklen_t len);

/* Receive up to SR_UDP_BATCH datagrams from <fd> into <b> without blocking: with their
 * senders if <with_peer>, with their local address if <with_pktinfo>. Returns how many (0:
 * none waiting), or a negative errno (a pending ICMP error on a connected socket reads as
 * -ECONNREFUSED and the like). Datagram i is b->iov[i] (iov_len set to its length) from
 * b->peers[i]; b->msgs[i].msg_hdr.msg_flags has MSG_TRUNC if it did not fit (it cannot). */
int sr_udp_recv(int fd, struct sr_udp_batch *b, bool with_peer, bool with_pktinfo);

/* The local address datagram <i> of <b> came to (family 0 if the kernel said nothing). */
void sr_udp_local_of(const struct sr_udp_batch *b, int i, struct sr_udp_local *local);

/* Send the <n> datagrams <iov>[0..n) to <peer> (NULL: <fd> is connected) from <local>
 * (NULL or family 0: let the kernel choose), in order, without blocking. Returns how many
 * went, always the first ones: a failure (a full socket buffer, an ICMP error of an earlier
 * datagram, one too large for the interface) ends the batch, the rest unsent, with its
 * errno in <*err> (0 if all went). UDP may drop anyway; QUIC resends what is lost. */
size_t sr_udp_send(int fd, const union sr_udp_peer *peer, const struct sr_udp_local *local,
                   struct iovec *iov, size_t n, int *err);

#endif
