/* SPDX-License-Identifier: MIT */
/* A QUIC client that comes back from another address or port (NAT rebinding): the flow is
 * found by the connection ID its server chose, seen in clear in the server's long header
 * packets, and follows the client to its new address. Off-path, nobody knows that ID; the
 * upstream sees no change (the flow's socket stays), so there is nothing for it to validate.
 * With several workers it works when the kernel hands the new address to the flow's worker
 * (SO_REUSEPORT hashes the address). */
#ifndef SR_QUICMIGRATE_H
#define SR_QUICMIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "sniroute/core/flowtab.h"
#include "sniroute/proxy/quicflow_types.h"
#include "sniroute/proxy/udp.h"

/* A datagram <d>/<len> from <f>'s upstream: if it begins with a long header packet, its
 * Source Connection ID is the one the client will address the server by; remember it
 * (the latest; an ID another flow holds stays that flow's). Costs a byte test otherwise. */
void sr__quic_cid_learn(struct sr_quic_flow *f, const uint8_t *d, size_t len);

/* The relaying flow on <s> whose server's connection ID datagram <d>/<len> is addressed
 * to, or NULL. */
struct sr_quic_flow *sr__quic_cid_find(struct sr_quic *q, const struct sr_quic_sock *s,
                                       const uint8_t *d, size_t len);

/* <f>'s client is now at <key>/<peer> (no flow there), reached from <local>: rekey it. */
void sr__quic_flow_migrate(struct sr_quic_flow *f, const struct sr_flowkey *key,
                           const union sr_udp_peer *peer, const struct sr_udp_local *local);

/* Forget <f>'s connection ID (at its end). */
void sr__quic_cid_forget(struct sr_quic_flow *f);

#endif
