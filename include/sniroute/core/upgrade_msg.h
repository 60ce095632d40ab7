/* SPDX-License-Identifier: MIT */
/* The messages of a binary upgrade (upgrade.h) on its private socket pair: their format,
 * sending and receiving them with descriptors attached (SCM_RIGHTS), and the record of an
 * established connection handed over, with the checks a received one must pass. No
 * process, no loop: upgrade.c runs both sides of the exchange.
 *
 * The wire: SOCK_SEQPACKET messages of exactly one struct sr_upgrade_msg each, in native
 * byte order (both ends are on one machine), fds attached only to SR_UPGRADE_FDS.
 *   new -> old  HELLO  (config loaded and valid; send the sockets)
 *   old -> new  FDS    n descriptors attached (1 .. SR_UPGRADE_FDS_PER_MSG), repeated
 *   old -> new  END    n = how many descriptors FDS messages carried in all
 *   new -> old  READY  (every worker listens on its sockets; stop accepting)
 *   old -> new  CONN   an established connection: 2 descriptors (client, backend) and a
 *                      struct sr_upgrade_conn after the header; repeated, until old
 *                      closes its end (it has no connection left)
 * Anything else, a short or truncated message, or EOF before READY fails the upgrade: new
 * exits, old keeps serving as if nothing had happened. After READY a bad CONN message is a
 * failure of that one connection only (its descriptors are closed and it is counted).
 *
 * Versions. HELLO, FDS, END and READY are version 1 messages, so a version 1 process on
 * the other side still interoperates; HELLO's <n> says the highest version new speaks.
 * CONN is version 2: old sends connections only to a new process that said 2 or more, and
 * a version 1 old process simply closes the socket after READY. */
#ifndef SR_UPGRADE_MSG_H
#define SR_UPGRADE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sniroute/config/addr.h"

#define SR_UPGRADE_MAGIC   0x53525550u /* "SRUP" */
#define SR_UPGRADE_VERSION 2           /* what this build speaks: the connection handover */
/* The oldest version accepted, and the one the base messages (HELLO .. READY) carry. */
#define SR_UPGRADE_VERSION_BASE 1

/* Descriptors per FDS message (well below the kernel's SCM_MAX_FD of 253) and in all:
 * listeners times workers, plus the admin socket. */
#define SR_UPGRADE_FDS_PER_MSG 32
#define SR_UPGRADE_FDS_MAX     1024

/* How long either side waits for the other: new for the sockets, old for READY (new loads
 * its config in that time; a million routes take a few seconds). */
#define SR_UPGRADE_TIMEOUT_MS 60000

enum sr_upgrade_type {
    SR_UPGRADE_HELLO = 1,
    SR_UPGRADE_FDS = 2,
    SR_UPGRADE_END = 3,
    SR_UPGRADE_READY = 4,
    SR_UPGRADE_CONN = 5, /* version 2 */
};

/* One listening socket of a server, TCP or UDP, as the upgrade hands it over: a new
 * descriptor (close-on-exec; the caller closes it) and the address it is bound to. */
struct sr_listen_fd {
    int fd;
    char addr_text[SR_SOCKADDR_TEXT_MAX];
};

struct sr_upgrade_msg {
    uint32_t magic;   /* SR_UPGRADE_MAGIC */
    uint16_t version; /* SR_UPGRADE_VERSION */
    uint16_t type;    /* enum sr_upgrade_type */
    uint32_t pid;     /* the sender's */
    uint32_t n;       /* FDS: descriptors attached; END: descriptors sent in all; HELLO: the
                         highest version new speaks; CONN: 2; else 0 */
};

/* Each text of a handed-over connection, NUL included. */
#define SR_UPGRADE_TEXT_MAX 384

/* struct sr_upgrade_conn.flags */
#define SR_UPGRADE_CONN_FALLBACK 0x01u /* sent to the listener's fallback (route "fallback") */
#define SR_UPGRADE_CONN_ECH      0x02u /* the hello carried Encrypted Client Hello */
#define SR_UPGRADE_CONN_HTTP     0x04u /* accepted on a protocol = http listener */
#define SR_UPGRADE_CONN_FLAGS    0x07u

/* What the new process needs to go on relaying a connection and to log it at its end, in
 * native byte order after the header of a CONN message. The texts are NUL-terminated
 * within their arrays and checked on receipt (sr_upgrade_msg_check_conn); the rest of each
 * array is zero. */
struct sr_upgrade_conn {
    uint64_t start_ms;  /* wall clock at accept, ms since the epoch */
    uint64_t bytes_in;  /* from the client so far, the hello included */
    uint64_t bytes_out; /* to the client so far */
    /* For the log: the TCP peer, or who a PROXY header named; AF_UNSPEC when unknown. */
    struct sockaddr_storage client;
    uint8_t route; /* enum sr_route_kind */
    uint8_t flags; /* SR_UPGRADE_CONN_* */
    uint8_t reserved[6];
    char listener[SR_UPGRADE_TEXT_MAX];   /* the [listener] section's name */
    char sni[SR_UPGRADE_TEXT_MAX];        /* normalized server name; "" for none */
    char upstream[SR_UPGRADE_TEXT_MAX];   /* as the log shows it; "" for none */
    char label[SR_UPGRADE_TEXT_MAX];      /* the upstream's metrics label; "" for none */
    char alpn_route[SR_UPGRADE_TEXT_MAX]; /* the ALPN condition of the route; "" for none */
};

/* One message on <sock>: the header (<version>, <type>, <n>, our pid), then <body_len>
 * bytes of <body> (CONN only), with <n_fds> descriptors attached (at most
 * SR_UPGRADE_FDS_PER_MSG). <flags>: MSG_DONTWAIT or 0. Returns 0, UV_EAGAIN (would block),
 * UV_EIO (sent in part), or another negated errno. */
int sr_upgrade_msg_send(int sock, uint16_t version, uint16_t type, uint32_t n, const int *fds,
                        size_t n_fds, const void *body, size_t body_len, int flags);

/* A base message (version SR_UPGRADE_VERSION_BASE, understood by every version), blocking
 * up to the socket's send timeout. */
int sr_upgrade_msg_send_base(int sock, uint16_t type, uint32_t n, const int *fds, size_t n_fds);

/* One message into <msg> and its descriptors (close-on-exec) into <fds>, at most
 * SR_UPGRADE_FDS_PER_MSG (*<n_fds> says how many). <flags>: MSG_DONTWAIT or 0. Returns 0,
 * UV_EOF, UV_EAGAIN (with MSG_DONTWAIT), another negated errno, or UV_EPROTO for anything
 * but one whole message of a known version (its descriptors are closed then). */
int sr_upgrade_msg_recv(int sock, struct sr_upgrade_msg *msg, int *fds, size_t *n_fds, int flags);

/* Close the <n> descriptors of <fds>. */
void sr_upgrade_msg_close_fds(const int *fds, size_t n);

/* Check a received connection: every text NUL-terminated and made of the characters the
 * log allows (the server name a valid host name), route and flags known, the client
 * address IPv4, IPv6 or unspecified, and both descriptors TCP sockets (IPv4 or IPv6) that
 * are not listening (both -1: the record alone, as the sender checks it before sending).
 * Returns NULL when all is well, or a static phrase saying what is not. */
const char *sr_upgrade_msg_check_conn(const struct sr_upgrade_conn *rec, int client_fd,
                                      int backend_fd);

/* Hand one connection to the new process over <sock> (an sr_upgrade.handover_fd, upgrade.h): <rec>
 * and its two descriptors in one CONN message, without blocking. Thread-safe (one message
 * is one datagram). The caller closes its descriptors afterwards either way. Returns 0
 * (sent: the new process owns the connection now), UV_EAGAIN (the socket is full, or too
 * many descriptors are in flight: try again later), or another negative UV_E* code (the
 * new process is gone: send nothing more). */
int sr_upgrade_msg_send_conn(int sock, const struct sr_upgrade_conn *rec, int client_fd,
                             int backend_fd);

/* One CONN message from <sock> (without blocking) into <rec> and <fds> (client, backend),
 * the sender's pid into <*pid>. Returns 0 (checked with sr_upgrade_msg_check_conn, both
 * descriptors open and the callee's), UV_EAGAIN, UV_EOF, UV_EPROTO (a bad message: its
 * descriptors are closed and <*why> says what was wrong), or another negated errno (the
 * socket failed). */
int sr_upgrade_msg_recv_conn(int sock, struct sr_upgrade_conn *rec, int fds[2], uint32_t *pid,
                             const char **why);

#endif
