/* SPDX-License-Identifier: MIT */
/* A QUIC flow's lifetime: into the table and out, its deadline on the worker's timer, the
 * process-wide flow limits, its access-log line and metrics at the end, and the reaper that
 * frees ended flows and closed sockets once the batch that ended them is over. It reads no
 * datagram and decides no route: the files above (quicflow.c, quicintake.c, quicrelay.c,
 * quicsock.c) call down here to start, time and end flows, and to close sockets. */
#ifndef SR_QUICLIFE_H
#define SR_QUICLIFE_H

#include <stdbool.h>
#include <stdint.h>

#include "sniroute/core/flowtab.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/quicflow_types.h"
#include "sniroute/proxy/udp.h"

/* Count <f> (its ipkey set) against the flow limits of every worker; false with <*why> the
 * limit it is over. _release gives back what <f> holds, if anything; idempotent. */
bool sr__quic_limits_admit(struct sr_quic *q, struct sr_quic_flow *f,
                           enum sr_metrics_quic_drop *why);
void sr__quic_limits_release(struct sr_quic_flow *f);

/* Set <f>'s deadline to <due_ms> (the loop's time; while draining, no later than the drain's
 * end) and re-arm the timer. Out of memory for the heap: logged, the deadline unchanged. */
void sr__quic_flow_deadline(struct sr_quic_flow *f, uint64_t due_ms);

/* Free <f>, ended and out of the table, with its setup and its generation reference. */
void sr__quic_flow_free(struct sr_quic_flow *f);

/* Free q->dead (flows) and q->dead_socks once the loop is past the current batch; then, if
 * the path drains and sr__quic_is_stopped(), call the host's on_idle. No-op once closed. */
void sr__quic_reap_later(struct sr_quic *q);

/* That reaper: a reactor task (q->reaper), run after the batch (quicflow.c sets it up). */
void sr__quic_reap(struct sr_reactor_task *task);

/* Close <s> now (its descriptor, so the address is free) and free it after the batch.
 * _maybe_close closes it only when it is retired or the path drains, and its last flow is
 * gone: nobody needs it any more. */
void sr__quic_sock_close(struct sr_quic_sock *s);
void sr__quic_sock_maybe_close(struct sr_quic_sock *s);

/* Take <f> out of q's list of flows waiting for their ClientHello (oldest first, for the
 * eviction in quicintake.c), if it is in it. */
void sr__quic_unrouted_unlink(struct sr_quic_flow *f);

/* A new flow for the client at <peer> on <s>, keyed <key>, replies leaving from <local>: in
 * the table, in state SR_QF_HELLO, with no generation, setup or deadline yet (the caller
 * sets what it needs). NULL when out of memory. */
struct sr_quic_flow *sr__quic_flow_new(struct sr_quic *q, struct sr_quic_sock *s,
                                       const struct sr_flowkey *key, const union sr_udp_peer *peer,
                                       const struct sr_udp_local *local);

/* End <f> with <outcome> (kept if one is set): one access-log line, the metrics, its socket
 * and counts released. A flow that never reached a working upstream stays in the table as
 * refused until its client has been quiet for hello_timeout, so that retransmits of a
 * refused Initial cost a lookup and nothing more; any other is gone (freed after the batch,
 * or after the resolver's callback). No-op for a flow already refused or closed. */
void sr__quic_flow_end(struct sr_quic_flow *f, const char *outcome);

/* A refused flow's memory goes; the client's next datagram is read afresh. */
void sr__quic_refused_forget(struct sr_quic_flow *f);

/* Draining, and no flow, socket or allocation left (dead ones included). */
bool sr__quic_is_stopped(const struct sr_quic *q);

#endif
