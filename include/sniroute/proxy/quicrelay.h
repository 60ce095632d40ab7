/* SPDX-License-Identifier: MIT */
/* The relay of a routed QUIC flow: its connected socket towards the upstream opened, what
 * was held sent, then datagrams both ways in batches (sendmmsg up, recvmmsg and sendmmsg
 * down, from the address the client sent to). It decides no route and reads no Initial;
 * it ends a flow only through quiclife.h, when the upstream cannot be reached. */
#ifndef SR_QUICRELAY_H
#define SR_QUICRELAY_H

#include <stddef.h>
#include <stdint.h>

#include <netdb.h>

#include "sniroute/proxy/quicflow_types.h"

/* Open <f>'s socket to the first address of <ai> that takes a connect (UDP: a route
 * exists), then relay: send the held datagrams and <cur>/<cur_len> (the datagram that
 * completed the ClientHello, not held; or NULL) in the order received, free the setup and
 * wait connect_timeout for the upstream's first datagram. On failure the flow ends. */
void sr__quic_flow_connect(struct sr_quic_flow *f, const struct addrinfo *ai, const uint8_t *cur,
                           size_t cur_len);

/* The client datagrams gathered for one relaying flow (q->run_flow, q->run) go out in one
 * sendmmsg; call before the batch's buffers are read into again. */
void sr__quic_run_flush(struct sr_quic *q);

#endif
