/* SPDX-License-Identifier: MIT */
/* The QUIC path (issue 13): protocol = quic listeners, one worker's UDP flows. A flow is a
 * client address and port on a listening socket. Its first datagrams go to the Initial
 * reader (wire/quic.h) and are held until the ClientHello is complete; then the routing
 * decision (config/decide.h, the same as TLS's) picks the upstream, a connected UDP socket
 * per flow is opened towards it (the route's HOST:PORT over UDP, or a server of its pool),
 * the held datagrams go out in order and every later datagram is relayed both ways,
 * unmodified. sniroute never sends a datagram of its own: a refused or malformed client
 * gets nothing back, so nothing here can be used to amplify or to reach an address that
 * has not proven it sent the datagram.
 *
 * Events: the sockets are in the worker's reactor (core/reactor.h), like the TCP path's:
 * 16 bytes and an epoll_ctl per socket, one epoll wakeup serving many flows, and nothing
 * here that a uv_udp_t would add (libuv reads one datagram per system call where recvmmsg
 * reads 32, and it has no way to send from a chosen source address). Timeouts are a
 * min-heap of deadlines (core/deadline.h) with one timer, checked lazily: a datagram only
 * stores the time, so the heap is touched once per timeout, never per datagram.
 *
 * Files: quicflow.c (this header: the path's start and end, each datagram to its flow)
 * calls down into quicintake.c (an unrouted flow: hold, read, route, resolve), quicrelay.c
 * (a routed flow's datagrams both ways), quicsock.c (quicsock.h: the listening sockets,
 * reload and upgrade) and quiclife.c (a flow's table, limits, deadlines, log line and end);
 * their shared types are in quicflow_types.h. The server (server.c) calls the functions
 * below and quicsock.h's at its start, reload, drain and end; they are its only contact
 * with the QUIC path. */
#ifndef SR_QUICFLOW_H
#define SR_QUICFLOW_H

#include <stdbool.h>

#include "sniroute/proxy/quicflow_types.h"

/* One worker's QUIC path, with no socket yet. NULL when out of memory or when libcrypto
 * cannot give AES-128-GCM, AES-128-ECB and HKDF (logged). */
struct sr_quic *sr_quic_new(const struct sr_quic_host *host);

/* Drain: take no new flow; relay the open ones until they end, or until drain_timeout
 * (then "drained"). After a binary upgrade (shared->handover_fd set) the new process reads
 * the same sockets, and a flow's datagrams would reach either process: so the sockets are
 * no longer read here and the flows end at once (flows are not handed over). A second call
 * ends every flow now. <q> may be NULL. */
void sr_quic_drain(struct sr_quic *q);

/* Draining, and no flow or socket left. True for NULL. */
bool sr_quic_is_stopped(const struct sr_quic *q);

/* After sr_quic_is_stopped(): close the timers; the loop may then end. Idempotent. */
void sr_quic_close(struct sr_quic *q);

/* After the loop has ended: free everything. NULL is accepted. */
void sr_quic_free(struct sr_quic *q);

#endif
