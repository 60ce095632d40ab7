/* SPDX-License-Identifier: MIT */
/* One client connection, from accept to the last close callback: peek the ClientHello,
 * route it, resolve and connect to the upstream, send the peeked bytes, relay both ways.
 * Internal to the proxy (proxy.c owns the list of connections). */
#ifndef SR_CONN_H
#define SR_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "sniroute/config.h"
#include "sniroute/httptrack.h"
#include "sniroute/ipcount.h"
#include "sniroute/name.h"
#include "sniroute/proxy.h"
#include "sniroute/route.h"

/* The peek buffer's first size: today's largest common hellos (Chrome's, with a
 * post-quantum key share) are about 2 KB. */
#define SR_PEEK_INITIAL 4096

enum sr_conn_state {
    SR_CONN_HELLO,      /* reading the ClientHello into the peek buffer */
    SR_CONN_REFUSING,   /* writing a TLS alert before closing */
    SR_CONN_RESOLVING,  /* uv_getaddrinfo in flight for the upstream's name */
    SR_CONN_CONNECTING, /* uv_tcp_connect in flight to one resolved address */
    SR_CONN_RELAYING,   /* bytes flow both ways (peeked bytes first) */
    SR_CONN_CLOSING,    /* handles closing; freed when the last close callback runs */
};

/* One direction of the relay (relay.c): bytes read from <src_fd> are written to <dst_fd>
 * through a kernel pipe (splice) or, when none can be had, a pool buffer. Either is held
 * only while bytes are in flight. */
enum sr_flow_wait {
    SR_FLOW_WAIT_SRC, /* nothing in flight: wait for src to be readable */
    SR_FLOW_WAIT_DST, /* bytes in flight: wait for dst to be writable (src is not read) */
    SR_FLOW_DONE,     /* src sent FIN and it has been passed on */
};

struct sr_flow {
    int src_fd;
    int dst_fd;
    int pipe_fds[2];  /* read end, write end; -1 when none */
    char *buf;        /* the fallback: a pool buffer, NULL when none */
    size_t buf_off;   /* buffer mode: bytes of buf already written */
    size_t pending;   /* read from src, not yet written to dst */
    uint64_t n_bytes; /* read from src (for the client side: the peeked bytes included) */
    enum sr_flow_wait wait;
    bool is_eof;  /* src sent FIN */
    bool is_shut; /* dst's write side is shut down (FIN passed on) */
    /* An HTTP listener's client-to-backend direction: read (not spliced) through the
     * request-boundary tracker, and sent from <out>. NULL otherwise. */
    struct sr_http_track *track;
    struct sr_bytes *out;
};

struct sr_conn {
    struct sr_server *server;
    /* The config this connection was accepted under (a reference), its [listener] section
     * and route map: a reload does not change them under an open connection. */
    struct sr_generation *gen;
    const struct sr_listener_config *lcfg;
    const struct sr_routes *routes;
    struct sr_conn *prev;
    struct sr_conn *next;

    enum sr_conn_state state;
    int n_pending; /* open handles and requests that will call back; free at zero */

    uv_tcp_t client;
    uv_tcp_t backend;
    uv_timer_t timer; /* hello, then connect, then idle timeout */
    bool is_backend_open;

    /* The peek buffer: bytes from the client until routing is decided; then the first
     * write to the backend, then freed. */
    uint8_t *peek;
    size_t peek_len;
    size_t peek_cap; /* grows from SR_PEEK_INITIAL up to max_hello_size */
    size_t parse_at; /* parse again once peek_len reaches this */

    char sni[SR_NAME_MAX + 1]; /* normalized; "" when the hello had none */
    enum sr_route_kind route;
    bool is_fallback; /* not TLS, or silent: sent to the listener's fallback */
    bool has_ech;     /* the hello carried Encrypted Client Hello */
    const char *alpn_route; /* the ALPN condition of the route taken (config text), or NULL */
    /* protocol = http: the request-boundary tracker and its output, from routing on. */
    struct sr_http_track *http_track;
    struct sr_bytes http_out;
    size_t http_target; /* the upstream index the first request chose */
    const struct sr_upstream *upstream;
    /* The address being connected to: the route's HOST:PORT, or a server of its pool. */
    const struct sr_addr *target;
    struct sr_pool *pool; /* the generation's pool the target came from, or NULL */
    size_t pool_index;
    uint64_t pool_tried; /* servers of the pool tried for this connection (a bitmask) */
    bool is_pool_counted; /* sr_pool_conn_start was called for pool_index */
    enum sr_proxy_protocol proxy_send;
    uint8_t *proxy_header; /* the PROXY header being sent, until written */

    /* proxy_protocol = accept: the header's length at the start of the peek buffer once
     * parsed, and the client and destination it names (when it names any). */
    bool is_proxy_expected;
    size_t proxy_len;
    bool has_proxied;
    struct sr_ipkey source_key; /* the client for source_hash: proxied, or the peer */
    bool has_source_key;

    struct addrinfo *addrs;     /* from the resolver, freed at close */
    struct addrinfo *next_addr; /* next one to try */
    int last_connect_error;

    /* Memory per connection is what an idle relay costs, so what is done with before the
     * relay starts shares space with what the relay needs (C11 anonymous members: the
     * names read as plain fields). */
    union {
        /* Until the relay starts: addresses. */
        struct {
            struct sockaddr_storage peer; /* the TCP peer: a client, or a load balancer */
            struct sockaddr_storage proxied_src;
            struct sockaddr_storage proxied_dst;
            struct sockaddr_storage literal_addr; /* a literal upstream, as a one-entry */
            struct addrinfo literal_ai;           /* list for connect_next() */
        };
        /* Relaying (has_polls): poll handles on the two sockets. Initialized only after
         * the PROXY header, the last user of the addresses, has been built. */
        struct {
            uv_poll_t client_poll;
            uv_poll_t backend_poll;
        };
    };
    int client_events; /* what each poll handle watches */
    int backend_events;
    bool has_polls;

    /* One request is in flight at a time, so they share space: resolving, then
     * connecting, then the peeked bytes to the backend (or, instead of all that, a
     * refusal's alert and FIN to the client). libuv no longer touches a request once its
     * callback has run, which is where the next one starts. */
    union {
        uv_getaddrinfo_t resolve_req; /* SR_CONN_RESOLVING */
        uv_connect_t connect_req;     /* SR_CONN_CONNECTING */
        struct {
            uv_write_t write_req;       /* the peeked bytes, or a refusal's alert */
            uv_shutdown_t shutdown_req; /* a refusal's FIN */
        };
    };

    struct sr_flow up;   /* client to backend */
    struct sr_flow down; /* backend to client */

    /* Limits (proxy.c): which listener count and which client address this connection
     * is counted under. */
    bool is_shared_counted;   /* counted in shared->n_conns (and maybe the two below) */
    size_t lcount;            /* 1 + index into shared->lcounts; 0: not counted */
    struct sr_ipkey ipkey;
    bool has_ipkey;
    bool is_quiet;            /* refused over a limit: no access-log line of its own */

    /* Metrics (the server's registry): row ids, and whether accept was counted. */
    uint32_t lid;
    uint32_t uid;
    bool is_counted;
    uint64_t connect_start_ns;

    uint64_t start_ms;
    uint64_t last_active_ms;
    const char *outcome;
    const char *detail;
    char client_text[SR_SOCKADDR_TEXT_MAX];
};

/* Accept a pending connection on <listener> and start peeking. Returns 0 or a UV_E* code
 * (the connection is then already closed). */
int
sr_conn_accept(struct sr_listener *listener);

/* Close <conn> now with <outcome> (kept if one is already set), logging its access line.
 * Idempotent. */
void
sr_conn_close(struct sr_conn *conn, const char *outcome);

/* The same, ending the client or the backend side with an RST instead of a FIN: how a
 * reset on one side is passed on to the other. */
void
sr__conn_close_ex(struct sr_conn *conn, const char *outcome, bool reset_client,
                  bool reset_backend);

/* Close callback for every handle of a connection: frees it after the last one. */
void
sr__conn_on_handle_close(uv_handle_t *handle);

/* A tracked HTTP connection met a request it must not pass on (<r>: a head for a host
 * routed elsewhere, or broken framing): close it. */
void
sr__conn_http_refused(struct sr_conn *conn, enum sr_track_result r);

/* relay.c: start relaying once the peeked bytes are out (0 or a UV_E* code; on error the
 * caller closes); close its handles (inside sr__conn_close_ex); give back its pipes and
 * buffers (when the connection is freed). */
int
sr__relay_start(struct sr_conn *conn);
void
sr__relay_close(struct sr_conn *conn);
void
sr__relay_release(struct sr_conn *conn);

#endif
