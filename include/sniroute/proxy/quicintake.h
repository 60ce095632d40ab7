/* SPDX-License-Identifier: MIT */
/* An unrouted QUIC flow: its first datagrams read by the Initial reader (wire/quic.h) and
 * held until the ClientHello is complete, then the routing decision (config/decide.h, as
 * for TLS), the upstream's address (a pool's server, the resolver for a name) and the
 * connect (quicrelay.h). It moves no datagram of a routed flow; it starts and ends flows
 * through quiclife.h. */
#ifndef SR_QUICINTAKE_H
#define SR_QUICINTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/core/flowtab.h"
#include "sniroute/proxy/quicflow_types.h"
#include "sniroute/proxy/udp.h"

/* The first datagram <d>/<len> from a client (at <peer>, sent to <local>) that has no flow
 * on <s> (<key>): dropped unless it starts an Initial within the limits; a flow routed at
 * once when the ClientHello is whole, else one that holds the datagram (the oldest such flow
 * evicted past SR_QUIC_UNROUTED_MAX); a client whose Initial is malformed is remembered as
 * refused. */
void sr__quic_flow_start(struct sr_quic *q, struct sr_quic_sock *s, const struct sr_flowkey *key,
                         const union sr_udp_peer *peer, const struct sr_udp_local *local,
                         const uint8_t *d, size_t len);

/* A later datagram of a flow still reading its ClientHello (SR_QF_HELLO). The flow keeps
 * only the datagrams the reader took, not its reassembly state (18 KB): each new datagram is
 * read after the held ones again, from datagram 0, into the worker's scratch state. A real
 * client's hello takes one or two datagrams; SR_QUIC_HOLD_DGRAMS_MAX bounds the rest. A
 * datagram the reader refuses is dropped and the flow kept (a spoofed datagram must not end
 * someone else's flow), unless the hello grew past max_hello_size. */
void sr__quic_flow_hello_datagram(struct sr_quic_flow *f, const uint8_t *d, size_t len);

/* Keep <d>/<len> with the flow until it can be sent (SR_QF_HELLO, SR_QF_RESOLVING). False
 * (and the flow ended) when that would pass quic_hold_bytes or SR_QUIC_HOLD_DGRAMS_MAX. */
bool sr__quic_flow_hold(struct sr_quic_flow *f, const uint8_t *d, size_t len);

#endif
