/* SPDX-License-Identifier: MIT */
/* The kernel path of the relay (kernel_relay = auto | sockmap): once a plain TCP relay has
 * forwarded its first bytes, both sockets join the process's BPF sockhash (core/sockmap.h)
 * and the kernel moves every later byte; the worker watches only for a FIN or an error.
 * What the relay promises still holds: a FIN is passed on only once every byte before it
 * is in the peer's send queue, a reset is passed on, the counts come from the BPF program,
 * and the idle timeout reads the program's time of the last byte. relay.c calls in here;
 * like the relay, it reports what happened and never closes (conn.c does). */
#ifndef SR_KRELAY_H
#define SR_KRELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "sniroute/proxy/conn_types.h"

/* What a kernel-relayed connection did (relay.c turns it into its enum sr_relay_result). */
enum sr_krelay_result {
    SR_KRELAY_GOING,         /* nothing to do, or a FIN waits for the bytes before it */
    SR_KRELAY_DONE,          /* both FINs passed on: close ("ok") */
    SR_KRELAY_CLIENT_RESET,  /* the client's socket failed (conn->detail): pass it on */
    SR_KRELAY_BACKEND_RESET, /* the backend's socket failed: pass it on */
};

/* A kernel-relayed connection's state (conn->krelay), allocated at the join. */
struct sr_krelay;

/* Start a worker's reader of the program's reports (set->krelay_worker): a socket whose
 * bytes pile up on its peer is reported, and paused until they drain (backpressure). A
 * no-op without the kernel path. Returns 0 or a UV_E* code (then no connection of this
 * worker joins the kernel path). */
int sr_krelay_worker_open(struct sr_conn_set *set);

/* Stop it, before the worker's reactor closes. Idempotent. */
void sr_krelay_worker_close(struct sr_conn_set *set);

/* Join <conn> (relaying, no HTTP tracking, nothing read and not yet written, both
 * directions waiting for their source, whose last read emptied it: struct sr_flow's
 * is_whole) to the kernel path if the process loaded it and the maps have room. Returns true when
 * the kernel now relays it (its sockets watched for a FIN or an error only); false: nothing
 * changed, the relay goes on in the worker. */
bool sr_krelay_start(struct sr_conn *conn);

/* <events> on the client socket (<is_client>) or the backend's of a joined connection. */
enum sr_krelay_result sr_krelay_event(struct sr_conn *conn, bool is_client, uint32_t events);

/* The connection's deadline: note the time of its last byte in conn->last_active_ms, and
 * look again at a FIN that waits for the kernel to pass the bytes before it on. Returns
 * what happened; <*recheck_ms> is when to look again (0: only at the idle timeout). */
enum sr_krelay_result sr_krelay_tick(struct sr_conn *conn, uint64_t *recheck_ms);

/* Leave the kernel path for a hand-over, if it is quiet: every byte the program took is
 * in its peer's send queue (a split's client direction is the worker's already), before and after the program stops taking bytes (which then
 * wait in the sockets). The sockets leave the maps, the counts go into the flows, and the
 * connection is an idle worker relay watched as one. Returns 0 then, or UV_EBUSY while
 * bytes are on their way (the kernel relays on as before: call again later). */
int sr_krelay_leave(struct sr_conn *conn);

/* Is the connection split: the client's direction back with the worker's relay (its socket
 * was paused because the backend reads slowly, and what the program took from it is
 * through), the backend's still the kernel's? Then relay.c pumps the client's direction
 * and passes its FIN on, and the kernel's side goes on as before. */
bool sr_krelay_is_split(const struct sr_conn *conn);

/* What to watch on the client's socket (<is_client>) or the backend's of a joined
 * connection, given <workers>: what the worker's relay wants there for its direction (0 for
 * none). */
uint32_t sr_krelay_watch(const struct sr_conn *conn, bool is_client, uint32_t workers);

/* Add the program's counts to the flows' n_bytes and free the state (before the log line;
 * the sockets stay in the maps until closed). Idempotent. */
void sr_krelay_settle(struct sr_conn *conn);

#endif
