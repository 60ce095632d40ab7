/* SPDX-License-Identifier: MIT */
/* A binary upgrade's connection handover, both sides: the old process sends an idle
 * established connection (its two sockets and a record of what its log line needs) to
 * the new one, which builds a connection from the record and relays on. The messages and
 * the socket pair are core/upgrade's; what a connection is, and when one may move, is
 * here. Closing and counting stay with the caller (conn.c). */
#ifndef SR_HANDOVER_H
#define SR_HANDOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "sniroute/core/generation.h"
#include "sniroute/core/upgrade_msg.h"
#include "sniroute/proxy/conn_types.h"

/* Old side: send <conn> to the new process over <sock> if nothing of it is in flight here
 * (relaying, no byte read and not yet written, no request tracker, and neither direction
 * at its end), its sockets out of the reactor first. Returns 0 when sent: the new process
 * holds the sockets, and the caller closes <conn> here without a word to either peer and
 * without a log line (the new process writes the one line, with the totals). Returns
 * UV_EBUSY when not now, UV_EAGAIN when the socket is full (try later), or another
 * negative UV_E* code (the new process is gone); <conn> then relays on here, watched as
 * before, unless watching again failed: then <*is_broken> is set and conn->detail says
 * why (the caller closes it with "error"). */
int sr_handover_send(struct sr_conn *conn, int sock, bool *is_broken);

/* New side: a connection relaying what <rec> describes, under <gen> (no reference taken:
 * the caller holds <gen> for it, sr_generation_hold): the [listener] of the same name
 * (else the first of the same protocol, else the first), the old process's totals and
 * texts for the log line, the start time moved back by its age (<now_ms>: the loop's
 * time), <uid> its upstream's metrics row (or UINT32_MAX). Its sockets, its set and
 * everything counted are the caller's to add.
 * NULL when out of memory. */
struct sr_conn *sr_handover_adopt(struct sr_generation *gen, const struct sr_upgrade_conn *rec,
                                  uint32_t uid, uint64_t now_ms);

#endif
