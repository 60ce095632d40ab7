/* SPDX-License-Identifier: MIT */
/* One TCP connection's lifetime, from accept (or adoption in a binary upgrade) to its
 * access-log line and the last close: it reacts to the sockets' events and to deadlines,
 * and calls down into the steps that do the work (intake.h, connect.h, relay.h,
 * handover.h), acting on what each reports: connect, answer and linger, relay, close. The
 * server (server.c) owns a worker's set of connections and drains it. */
#ifndef SR_CONN_H
#define SR_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "sniroute/config/config.h"
#include "sniroute/core/deadline.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/resources.h"
#include "sniroute/core/shared.h"
#include "sniroute/core/upgrade_msg.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/conn_types.h"

/* Set up <set> (zeroed before, with on_empty and data set if wanted) for a worker on
 * <res>'s loop: its connections borrow <res>, count in <metrics> and in <shared>'s limits,
 * and use pool copy <worker>. The reaper's handle does not keep the loop alive. */
void sr_conn_set_init(struct sr_conn_set *set, struct sr_resources *res, struct sr_metrics *metrics,
                      struct sr_shared *shared, size_t worker);

/* Close the set's handle once every connection is freed (set->n is 0). */
void sr_conn_set_close(struct sr_conn_set *set);

/* A connection for the socket <fd> just accepted from <peer> (zeroed if unknown) on
 * listener <lcfg> of <gen> (a reference is taken): counted against the limits (closed at
 * once, quietly, when over one) and watched for its first bytes, within hello_timeout.
 * Returns 0, or UV_ENOMEM when out of memory (logged; <fd> closed). */
int sr_conn_accept(struct sr_conn_set *set, struct sr_generation *gen,
                   const struct sr_listener_config *lcfg, int fd, const struct sockaddr *peer);

/* Binary upgrade, new side: go on relaying the connection <rec> describes between
 * <client_fd> and <backend_fd> (taken over: closed on any failure) as one of <set>'s,
 * under <gen> (the current config): counted in the limits (never refused) and as adopted
 * in the metrics (<uid>: the upstream's metrics row, or UINT32_MAX). Returns 0 or a UV_E*
 * code (logged; both descriptors closed). */
int sr_conn_adopt(struct sr_conn_set *set, struct sr_generation *gen,
                  const struct sr_upgrade_conn *rec, int client_fd, int backend_fd, uint32_t uid);

/* Binary upgrade, old side: hand <conn> to the new process over <sock> if nothing of it
 * is in flight here (see sr_handover_send), then close it here without a word to either
 * peer. It writes no access-log line (the new process writes the one line, with the
 * totals) and is counted as closed with outcome "handed_over". Returns 0 when handed
 * over, UV_EBUSY when not now, UV_EAGAIN when the socket is full (try later), or another
 * negative UV_E* code (the new process is gone: the connection stays here). */
int sr_conn_hand_over(struct sr_conn *conn, int sock);

/* Close <conn> now with <outcome> (kept if one is already set), logging its access line;
 * it is freed after the current batch of events. Idempotent. */
void sr_conn_close(struct sr_conn *conn, const char *outcome);

/* A connection's deadline <d> is due (the worker's resources call it: sr_resources_init). */
void sr_conn_on_deadline(struct sr_deadline *d);

#endif
