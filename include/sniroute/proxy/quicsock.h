/* SPDX-License-Identifier: MIT */
/* The UDP listening sockets of one worker's QUIC path: one per address of its protocol =
 * quic listeners, bound (or inherited in a binary upgrade) with pktinfo on a wildcard
 * address, kept across reloads while configured, retired when not. Neither reads them (that
 * is quicflow.c, through the reader it lends in struct sr_quic) nor frees them (quiclife.c
 * closes a retired one once its last flow is gone). */
#ifndef SR_QUICSOCK_H
#define SR_QUICSOCK_H

#include <stddef.h>

#include "sniroute/core/generation.h"
#include "sniroute/core/upgrade_msg.h"
#include "sniroute/proxy/quicflow_types.h"

/* A reload or the start, in two steps so that TCP and UDP change together or not at all.
 * prepare: bind a UDP socket for each address of <gen>'s quic listeners that has none yet
 * (taking an inherited one after a binary upgrade; "listening on ADDR (listener NAME)" for
 * each); 0, or a negative UV_E* code after closing what it bound (logged) -- then nothing
 * changed. commit: new flows now use <gen> (the caller holds a reference for as long as
 * this path may use it: until the next commit or the end); sockets whose address is gone
 * take no new flows and close once their flows end. abort: undo a prepare. */
int sr_quic_prepare(struct sr_quic *q, struct sr_generation *gen);
void sr_quic_commit(struct sr_quic *q, struct sr_generation *gen);
void sr_quic_abort(struct sr_quic *q);

/* Duplicates (close-on-exec) of the listening UDP sockets still configured, at most <cap>,
 * for a binary upgrade. Returns how many. <q> may be NULL. */
size_t sr_quic_listen_fds(const struct sr_quic *q, struct sr_listen_fd *out, size_t cap);

#endif
