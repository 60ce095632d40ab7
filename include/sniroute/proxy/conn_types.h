/* SPDX-License-Identifier: MIT */
/* The state of one TCP connection of the proxy, from accept to the last close: struct
 * sr_conn, what only the way to the relay needs (struct sr_conn_setup), the relay's two
 * directions (struct sr_flow), and the set of a worker's connections. Types only: every
 * file of the connection path includes it; conn.c (the lifetime) calls down into intake.c
 * (the first bytes), connect.c, relay.c and handover.c, which report back what happened. */
#ifndef SR_CONN_TYPES_H
#define SR_CONN_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/config/route.h"
#include "sniroute/core/deadline.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/core/reactor.h"
#include "sniroute/core/resources.h"
#include "sniroute/core/shared.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/wire/httptrack.h"
#include "sniroute/wire/name.h"

struct sr_conn;
struct sr_conn_set;
struct sr_connect_result; /* connect.h */
struct sr_krelay;         /* krelay.h */
struct sr_krelay_worker;  /* krelay.c */

/* libuv's error codes are negated errno values on Unix (uv-errno.h). */
#define SR_ERRNO(e) (-(e))

/* The peek buffer's first size: today's largest common hellos (Chrome's, with a
 * post-quantum key share) are about 2 KB. */
#define SR_PEEK_INITIAL 4096

enum sr_conn_state {
    SR_CONN_HELLO,      /* peeking at the ClientHello */
    SR_CONN_REFUSING,   /* a TLS alert (or HTTP error) sent: lingering until the client closes */
    SR_CONN_RESOLVING,  /* uv_getaddrinfo in flight for the upstream's name */
    SR_CONN_CONNECTING, /* connecting to one resolved address and sending the first bytes */
    SR_CONN_RELAYING,   /* bytes flow both ways */
    SR_CONN_CLOSING,    /* sockets closed; freed after the current batch of events */
};

/* One direction of the relay (relay.c): bytes read from <src_fd> are written to <dst_fd>
 * through a pool buffer (recv/send) or, once a read has filled a whole buffer, through a
 * kernel pipe (splice). Either is held only while bytes are in flight. */
enum sr_flow_wait {
    SR_FLOW_WAIT_SRC, /* nothing in flight: wait for src to be readable */
    SR_FLOW_WAIT_DST, /* bytes in flight: wait for dst to be writable (src is not read) */
    SR_FLOW_DONE,     /* src sent FIN and it has been passed on */
    /* An HTTP client direction waiting for the backend's answer (an Upgrade or CONNECT,
     * or a full pipeline): src is not read until the response reader has seen it. */
    SR_FLOW_WAIT_PEER,
};

struct sr_flow {
    int src_fd;
    int dst_fd;
    int pipe_fds[2];  /* read end, write end; -1 when none */
    char *buf;        /* a pool buffer, NULL when none */
    uint32_t buf_off; /* buffer mode: bytes of buf already written */
    uint32_t pending; /* read from src, not yet written to dst */
    uint64_t n_bytes; /* read from src, for the log and the metrics */
    uint8_t wait;     /* enum sr_flow_wait */
    bool is_eof;      /* src sent FIN */
    bool is_shut;     /* dst's write side is shut down (FIN passed on) */
    bool is_bulk;     /* a read filled a whole buffer: splice from now on */
    /* src's receive queue was left at a segment's boundary: never read here, or the last
     * read emptied it. The kernel path (krelay.c) joins only then: it hands the program
     * whole segments, and one we had read part of would go out again whole. */
    bool is_whole;
    /* An HTTP listener's client-to-backend direction: read through the request-boundary
     * tracker, and sent from the connection's http_out. */
    bool is_tracked;
    /* An HTTP listener's backend-to-client direction while responses are matched to
     * requests: read into the buffer and scanned by the tracker's response reader, then
     * sent unchanged (no splice: the bytes must be seen). */
    bool is_scanned;
};

/* protocol = http: a request refused after others went to the backend. */
enum sr_http_stop {
    SR_HTTP_STOP_NONE,
    SR_HTTP_STOP_DRAINING,  /* the backend's write side is shut; its responses still flow */
    SR_HTTP_STOP_ANSWERING, /* the responses are through: our answer is being sent */
};

/* What only the way to the relay needs: allocated at accept, freed when the relay starts,
 * so an established connection does not carry it. */
struct sr_conn_setup {
    /* The hello is read with MSG_PEEK, so the kernel keeps its bytes and the relay moves
     * them like any others: <peek_len> bytes are waiting in the client socket. Only when it
     * comes in pieces (a peek cannot wait for more) are the bytes so far taken into <peek>,
     * and from then on read into it; they go out before the relay starts. */
    uint8_t *peek;         /* NULL until then */
    size_t peek_cap;       /* grows up to peek_max */
    size_t peek_len;       /* bytes seen: in <peek> if it is set, else still in the socket */
    size_t parse_at;       /* look again once peek_len reaches this */
    size_t proxy_len;      /* proxy_protocol = accept: the received header's length (not sent) */
    size_t sent;           /* of [PROXY header we send][peeked bytes after proxy_len] */
    uint8_t *proxy_header; /* the PROXY header we send, or NULL */
    size_t proxy_header_len;
    /* protocol = http: where the first request head's reading stopped (offsets from
     * proxy_len in the peeked bytes). */
    struct sr_http_reader http_reader;

    char sni[SR_NAME_MAX + 1]; /* normalized; "" when the hello had none */
    bool has_proxied;
    struct sockaddr_storage peer; /* the TCP peer: a client, or a load balancer */
    struct sockaddr_storage proxied_src;
    struct sockaddr_storage proxied_dst;
    struct sr_ipkey source_key; /* the client for source_hash: proxied, or the peer */
    bool has_source_key;

    struct sockaddr_storage literal_addr; /* a literal upstream, as a one-entry */
    struct addrinfo literal_ai;           /* list for connect_next() */
    struct addrinfo *addrs;               /* from the resolver, freed with the setup */
    struct addrinfo *next_addr;           /* next one to try */
    int last_connect_error;
    uint64_t pool_tried; /* servers of the pool tried for this connection (a bitmask) */
    uint64_t connect_start_ns;
    bool is_connected; /* a send went through or the connect was reported */
    uv_getaddrinfo_t resolve_req;
    /* Where the resolver's answer goes on (connect.c calls it; see connect.h). */
    void (*on_resolved)(struct sr_conn *conn, struct sr_connect_result r);
};

/* A connection taken over from the old process of a binary upgrade (upgrade_msg.h): what the
 * log line and the metrics need that the config cannot give, since the connection was
 * routed by another process, maybe under another config. */
struct sr_conn_adopted {
    uint64_t base_in;  /* bytes_in and bytes_out when taken over: the metrics count only */
    uint64_t base_out; /* what this process relayed, the log line the totals */
    bool has_uid;      /* the upstream has a metrics row (uid) */
    /* In the same allocation, after this struct: just their lengths. */
    const char *upstream;   /* as the log shows it; "" for none */
    const char *label;      /* the upstream's metrics label; "" for none */
    const char *alpn_route; /* NULL for none */
};

/* A worker's connections, and what they borrow from the worker: owned by the server (one
 * per worker), set up by sr_conn_set_init (conn.h) before the first accept. */
struct sr_conn_set {
    struct sr_resources *res;   /* the worker's loop, reactor, deadlines, pools */
    struct sr_metrics *metrics; /* the worker's registry (one writer: this loop) */
    struct sr_shared *shared;   /* the limits and the access log, all workers */
    size_t worker;              /* which copy of each pool is this worker's */
    struct sr_conn *head;       /* every open connection, for the drain and the handover */
    size_t n;
    uint64_t n_accepted;
    /* Closed connections, freed once the current batch of events is done (an event for
     * one of them may still be in it): the reactor runs the reaper after the batch. */
    struct sr_conn *dead;
    struct sr_reactor_task reaper;
    /* The kernel path's reports for this worker (krelay.h), NULL without it. */
    struct sr_krelay_worker *krelay_worker;
    /* Called when the last open connection has been freed (a drain may be over). */
    void (*on_empty)(struct sr_conn_set *set);
    void *data;
};

struct sr_conn {
    struct sr_conn_set *set; /* the worker's: resources, metrics, the other connections */
    /* The config this connection was accepted under (a reference), its [listener] section
     * and route map: a reload does not change them under an open connection. */
    struct sr_generation *gen;
    const struct sr_listener_config *lcfg;
    const struct sr_routes *routes;
    struct sr_conn *prev;
    struct sr_conn *next;
    struct sr_conn *next_dead; /* closed, waiting for the end of the batch to be freed */

    struct sr_conn_setup *setup; /* until the relay starts */
    struct sr_watch client;
    struct sr_watch backend;     /* fd -1 while there is no backend socket */
    struct sr_deadline deadline; /* hello, connect, linger or idle timeout */
    struct sr_flow up;           /* client to backend */
    struct sr_flow down;         /* backend to client */

    uint8_t state;        /* enum sr_conn_state */
    uint8_t route;        /* enum sr_route_kind */
    uint8_t proxy_send;   /* enum sr_proxy_protocol, for the upstream */
    bool is_resolving;    /* a resolver request will still call back */
    bool is_fallback;     /* not TLS, or silent: sent to the listener's fallback */
    bool has_ech;         /* the hello carried Encrypted Client Hello */
    bool is_pool_counted; /* sr_pool_conn_start was called for pool_index */
    bool is_quiet;        /* refused over a limit, or handed over: no access-log line here */
    bool is_counted;      /* accept was counted in the metrics */

    const char *alpn_route; /* the ALPN condition of the route taken (config text), or NULL */
    /* Refused by an access rule (outcome "denied"): the rule's label (config text) and its
     * metric id; NULL otherwise. */
    const char *denied_by;
    uint32_t denied_id;
    char *sni; /* the normalized name for the log line (heap), or NULL for none */
    /* protocol = http: the request-boundary tracker and its output, from routing on. */
    struct sr_http_track *http_track;
    struct sr_bytes http_out;
    size_t http_target; /* the upstream index the first request chose */
    /* A refused request (host_changed, malformed) does not cut what came before it: the
     * requests before it are forwarded, the backend's write side is shut, the responses it
     * still owes reach the client whole, and only then does the client get <http_refusal>
     * (421 or 400, with Connection: close; 0 when no answer can be placed after the
     * responses) and a lingering close. */
    uint8_t http_stop;    /* enum sr_http_stop */
    uint8_t http_refused; /* enum sr_track_result: why */
    uint16_t http_refusal;
    struct sr_conn_adopted *adopted; /* handed over by an old process; NULL otherwise */
    struct sr_krelay *krelay;        /* relayed by the kernel (krelay.h); NULL otherwise */
    const struct sr_upstream *upstream;
    /* The address being connected to: the route's HOST:PORT, or a server of its pool. */
    const struct sr_addr *target;
    struct sr_pool *pool; /* the generation's pool the target came from, or NULL */
    size_t pool_index;

    /* Limits (shared.h): which listener count and which client address this connection
     * is counted under. */
    struct sr_admission adm;

    /* Metrics (the worker's registry): row ids. */
    uint32_t lid;
    uint32_t uid;

    uint64_t start_ms;
    uint64_t last_active_ms;
    const char *outcome;
    const char *detail;
    /* The client for the log: the TCP peer, or who a PROXY header named. */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } client_addr;
};

/* The normalized server name, wherever it is kept now ("" for none). */
static inline const char *
sr_conn_sni(const struct sr_conn *conn)
{
    if (conn->setup != NULL) {
        return conn->setup->sni;
    }
    return conn->sni != NULL ? conn->sni : "";
}

/* The worker loop's time, in milliseconds. */
static inline uint64_t
sr_conn_now(const struct sr_conn *conn)
{
    return uv_now(conn->set->res->loop);
}

#endif
