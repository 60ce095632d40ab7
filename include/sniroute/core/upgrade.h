/* SPDX-License-Identifier: MIT */
/* Binary upgrade (SIGUSR2): the running process (old) starts the binary found at the path
 * it was started from (new) with the same arguments and one end of a private socketpair;
 * new loads its config, asks for the listening sockets, receives them over SCM_RIGHTS,
 * adopts those whose address is still configured and says "ready"; old then stops
 * accepting and drains. The kernel sockets are never closed in between (new holds a copy
 * before old lets go of its own), so no connection is refused and no accept queue is lost.
 * This module does the handoff only: main decides when, and server.c asks it for a socket.
 * The messages on the socket pair, and their format, are upgrade_msg.h's. */
#ifndef SR_UPGRADE_H
#define SR_UPGRADE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <uv.h>

#include "sniroute/core/upgrade_msg.h"

/* The environment variable that tells a new process which descriptor is its end of the
 * handoff socket. Removed from the environment as soon as it is read. */
#define SR_UPGRADE_ENV "SNIROUTE_UPGRADE_FD"

/* ---- The new process ---------------------------------------------------------------- */

/* One inherited listening socket, checked on receipt: a listening TCP socket or a bound,
 * unconnected UDP socket (protocol = quic), IPv4 or IPv6. Its type (SO_TYPE) and bound
 * address (getsockname) are the key, not anything the message says. */
struct sr_inherited_socket {
    int fd;
    int type; /* SOCK_STREAM or SOCK_DGRAM */
    struct sockaddr_storage addr;
    bool is_taken;
};

/* The sockets new received. Owned by main; server.c takes from it while the workers start
 * (sr_inherited_take), then main closes what is left (sr_inherited_release). */
struct sr_inherited {
    uv_mutex_t lock; /* workers start one after the other, but a reload could come later */
    struct sr_inherited_socket *sockets;
    size_t n;
    uint32_t from_pid;
    /* Every acquisition of <lock> is counted here when set (main points it at the shared
     * process-wide lock count: every worker may take this lock). */
    _Atomic uint64_t *n_locks;
};

/* The handoff descriptor from the environment (SR_UPGRADE_ENV), or -1 when this is not an
 * upgrade. Removes the variable and marks the descriptor close-on-exec. A value that is not
 * an open descriptor is reported on stderr and yields -1 (a normal start). */
int sr_upgrade_env_fd(void);

/* Send HELLO on <fd> and receive the sockets into <set> (initialized here). Blocks for at
 * most SR_UPGRADE_TIMEOUT_MS. Returns 0, or a negative UV_E* code after logging why (<set>
 * is then empty). Either way <set> is freed with sr_inherited_fini. */
int sr_upgrade_receive(int fd, struct sr_inherited *set);

/* The fewest workers that adopt every inherited socket: the most sockets with one address
 * and type (old's workers each had their own SO_REUSEPORT socket). Fewer workers would have to
 * close one, and with it the connections waiting in its accept queue. */
size_t sr_inherited_min_workers(const struct sr_inherited *set);

/* A new descriptor (close-on-exec) for worker <worker>'s socket bound to <sa>, or -1 when
 * no inherited socket has that address (bind a new one). With k sockets for the address,
 * worker w gets socket w % k: every socket has a taker, and a worker beyond k shares one
 * (both loops accept from one queue). <set> may be NULL. Thread-safe. */
int sr_inherited_take(struct sr_inherited *set, const struct sockaddr *sa, size_t worker);

/* The same for a socket of <type>: SOCK_STREAM (what sr_inherited_take takes) or SOCK_DGRAM
 * (a QUIC listener's UDP socket; TCP and UDP may share an address). */
int sr_inherited_take_type(struct sr_inherited *set, const struct sockaddr *sa, int type,
                           size_t worker);

/* Once every worker listens: close every inherited descriptor (taken ones were
 * duplicated, so the listeners keep theirs) and log the addresses no one took; later takes
 * find nothing. */
void sr_inherited_release(struct sr_inherited *set);

/* Release, then free what is left (the lock); after the workers have stopped. */
void sr_inherited_fini(struct sr_inherited *set);

/* Tell old that this process serves: it stops accepting and drains. <fd> stays open for
 * the connections old hands over next (sr_adopter_start), or the caller closes it.
 * Returns 0, or a negative UV_E* code (old then keeps serving too, until it is stopped). */
int sr_upgrade_ready(int fd);

struct sr_adopter;

/* A connection received and checked: <client_fd> and <backend_fd> (close-on-exec) are the
 * callee's to keep or close; <rec> lives only for the call. */
typedef void (*sr_adopter_conn_fn)(struct sr_adopter *a, const struct sr_upgrade_conn *rec,
                                   int client_fd, int backend_fd);

/* The new process's end of the handoff after READY: CONN messages, read on the main loop
 * until old closes its end (it holds no connection any more) or sr_adopter_stop. */
struct sr_adopter {
    uv_poll_t poll;
    int sock; /* -1 once closed */
    bool is_open;
    uint32_t from_pid;
    uint64_t n_adopted; /* handed to on_conn */
    uint64_t n_failed;  /* bad messages or descriptors: closed */
    sr_adopter_conn_fn on_conn;
    void *data;
};

/* Watch <sock> (taking it over: it is closed by sr_adopter_stop) on <loop>. The handle
 * does not keep the loop alive. Returns 0, or a negative UV_E* code (<sock> closed). */
int sr_adopter_start(struct sr_adopter *a, uv_loop_t *loop, int sock, uint32_t from_pid,
                     sr_adopter_conn_fn on_conn, void *data);

/* Stop reading and close the socket: old then keeps and drains what it still has. Logs
 * how many connections were adopted. Idempotent. */
void sr_adopter_stop(struct sr_adopter *a);

/* ---- The old process ---------------------------------------------------------------- */

struct sr_upgrade;

/* Fill <fds> with new descriptors (the upgrade closes them) of every listening socket the
 * process would hand over, at most <cap>; return how many. Duplicates of one socket are
 * fine: they are sent once. */
typedef size_t (*sr_upgrade_collect_fn)(struct sr_upgrade *up, int *fds, size_t cap);

/* The outcome: 0 when new said READY (stop accepting now), or a negative UV_E* code when
 * the upgrade failed (already logged; keep serving). Called once per sr_upgrade_start. */
typedef void (*sr_upgrade_done_fn)(struct sr_upgrade *up, int status);

struct sr_upgrade {
    uv_loop_t *loop;
    uv_process_t child;
    uv_poll_t poll;
    uv_timer_t timer;
    int sock;              /* our end of the socketpair, -1 once closed */
    int pid;               /* new's */
    size_t n_open;         /* handles not yet closed: a new upgrade waits for 0 */
    bool is_running;       /* between start and done */
    bool has_sent;         /* the sockets went out (one HELLO only) */
    bool has_exited;       /* new's exit was seen */
    bool has_eof;          /* new closed its end */
    uint32_t peer_version; /* the highest version new speaks (its HELLO) */
    /* After READY from a new process that takes connections (version 2): our end of the
     * socketpair, kept open for sr_upgrade_msg_send_conn; on_done's caller takes it (and
     * closes it once no worker sends any more). -1 otherwise. */
    int handover_fd;
    sr_upgrade_collect_fn collect;
    sr_upgrade_done_fn on_done;
    void *data;
};

/* Start an upgrade: run <exe> with <argv> (NULL-terminated) and the handoff descriptor,
 * and answer it on <loop>. <up> must be zeroed (or idle: n_open == 0), with collect,
 * on_done and data set. Returns 0, or a negative UV_E* code (nothing started; logged). */
int sr_upgrade_start(struct sr_upgrade *up, uv_loop_t *loop, const char *exe, char *const *argv);

/* Give up an upgrade in progress (old is stopping): new is sent SIGTERM, on_done gets
 * UV_ECANCELED. Closes every handle; a no-op when idle. */
void sr_upgrade_abort(struct sr_upgrade *up);

/* The absolute path of the running binary, read at start (before a package upgrade
 * replaces the file, /proc/self/exe still names the path; after, it names a deleted
 * inode). Falls back to <argv0>. */
void sr_upgrade_exe_path(char *out, size_t cap, const char *argv0);

#endif
