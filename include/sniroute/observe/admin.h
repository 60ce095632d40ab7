/* SPDX-License-Identifier: MIT */
/* The admin endpoint: a tiny HTTP/1.1 server on one libuv loop that answers GET (and HEAD)
 * for /metrics, /healthz and /readyz, one request per connection (every response says
 * "Connection: close"). It is meant for loopback or a pod network, not the internet: no
 * keep-alive, no request bodies, no TLS, no auth. But whoever reaches it must not be able to
 * starve the liveness and readiness probes (a failed liveness probe restarts the router and
 * drops every relayed connection), so each connection is bounded in size (a head of at most
 * SR_ADMIN_HEAD_MAX bytes) and in time (SR_ADMIN_FIRST_BYTE_MS, SR_ADMIN_HEAD_MS,
 * SR_ADMIN_RESPONSE_MS), connections are capped per client address and in all, and a new
 * connection always gets in: at a cap it replaces the connection whose loss costs least. */
#ifndef SR_ADMIN_H
#define SR_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* A request head larger than this gets 431; Prometheus' scrape requests are ~300 bytes. */
#define SR_ADMIN_HEAD_MAX 8192
/* Time from the accept to the first byte of the request. Every client of this endpoint (the
 * kubelet, Prometheus, curl) writes its whole head as soon as it is connected, so one round
 * trip is enough; 1 s leaves room for two retransmissions of a lost segment (Linux's minimum
 * RTO is 200 ms) and is as long as a Kubernetes probe waits by default (timeoutSeconds 1). A
 * silent connection is closed without a word. */
#define SR_ADMIN_FIRST_BYTE_MS 1000
/* Time from the accept to the end of the request head: one more second for a head that
 * arrives in pieces. A slowloris head that never ends gets 408 then, however it dribbles. */
#define SR_ADMIN_HEAD_MS 2000
/* Time for the client to take the response (and then close): a /metrics text of a few MB
 * needs that at a few MB/s. A slow reader is closed then and its buffer freed. */
#define SR_ADMIN_RESPONSE_MS 5000
/* Open admin connections at once; a scraper needs one, a human with curl one more. At the cap
 * a new connection replaces the open one whose loss costs least (see SR_ADMIN_CONNS_PER_ADDR),
 * so the cap bounds memory (~8.6 KiB a connection) but turns no one away: a flood from many
 * addresses pushes out its own older connections, and a probe is lost only if 64 others
 * arrive between its handshake and its request (microseconds for the kubelet's client). */
#define SR_ADMIN_CONNS_MAX 64
/* Open connections from one client address (IPv4 and v4-mapped IPv6 count as one). The
 * kubelet needs two (liveness and readiness may overlap), a scraper one; 8 leaves room for a
 * few clients behind one NAT address. A new connection from an address at its cap replaces
 * that address's own connection whose loss costs least (an answered one lingering for its
 * close, then the oldest one still without a whole head, then the oldest response being
 * written), so a flood from one address churns only its own slots, and a probe that shares
 * the address still gets in unless 8 connections arrive before its head is read. */
#define SR_ADMIN_CONNS_PER_ADDR 8
/* /metrics (and /explain) bodies held at once; each may be megabytes, and a slow reader holds
 * its body until it has read it or SR_ADMIN_RESPONSE_MS. A new one replaces the oldest still
 * being written (its connection is closed; a scraper that reads at once is done long before
 * four later requests come). The replaced bodies are freed when libuv has cancelled their
 * writes, at the end of the loop iteration; until then they count, and at twice this many a
 * /metrics request gets 503. So memory is bounded by 8 bodies, not by SR_ADMIN_CONNS_MAX. */
#define SR_ADMIN_BODIES_MAX 4
/* Connections accepted per loop iteration. libuv accepts until the queue is empty; against a
 * flood that never ends, so then would the loop iteration, and a probe accepted early in it
 * would not be read before SR_ADMIN_CONNS_MAX later arrivals pushed it out. With at most 16
 * accepts between two polls, the head a probe sent with its connection is read long before
 * 64 others arrive. The data path shares this loop when workers = 1; it gets its turn too. */
#define SR_ADMIN_ACCEPTS_PER_TICK 16
/* The listen backlog, nginx's and redis's 511: a burst of connects (a flood, or probes and
 * scrapes arriving while the loop is busy) waits in the kernel instead of being dropped; a
 * dropped SYN costs the client a 1 s retransmit, all the time a probe has. Connections
 * waiting there cost kernel memory only, and are taken in order, their heads already in. */
#define SR_ADMIN_BACKLOG 511

/* --- The request-head parser (pure: no I/O, no allocation) ----------------------------- */

enum sr_admin_parse_status {
    SR_ADMIN_PARSE_NEED_MORE = 0, /* no end of head yet, and nothing wrong so far */
    SR_ADMIN_PARSE_OK,            /* a complete, valid head: see the request */
    SR_ADMIN_PARSE_BAD,           /* malformed: answer 400 */
    SR_ADMIN_PARSE_TOO_LARGE,     /* no end of head within SR_ADMIN_HEAD_MAX bytes: 431 */
};

enum sr_admin_method {
    SR_ADMIN_GET = 0,
    SR_ADMIN_HEAD,
    SR_ADMIN_OTHER, /* any other valid token: answered 405 (or 404 for an unknown path) */
};

struct sr_admin_request {
    enum sr_admin_method method;
    const char *path; /* the target up to '?' or its end, into the caller's buffer */
    size_t path_len;
    const char *query; /* what follows the first '?' (maybe empty), or NULL: no '?' */
    size_t query_len;
    size_t head_len; /* bytes of the head, the empty line included */
};

/* Parse the request head at the start of <buf> (<len> bytes received so far, not
 * NUL-terminated) into <*req>, which is meaningful for OK only; its <path> points into <buf>.
 *
 * Accepts (RFC 9112): optional empty lines first (section 2.2), then
 * "METHOD SP origin-form SP HTTP/1.0|HTTP/1.1", then header lines "name: value" with a
 * token name and a value of visible characters, spaces and tabs, then an empty line. Lines
 * end with CRLF or a bare LF. Refuses as BAD: a method that is not a token, a target that
 * does not start with '/' or holds a byte outside 0x21-0x7E, any other version, a header
 * line without ':', with space before the ':' or an empty name, a folded line (obs-fold),
 * a bare CR or a control byte. Header values are not interpreted (a request body, if any, is
 * ignored: the connection closes after the response). TOO_LARGE when <len> reaches
 * SR_ADMIN_HEAD_MAX without the head ending; a head that ends within it is parsed. */
enum sr_admin_parse_status
sr_admin_parse_request(const char *buf, size_t len, struct sr_admin_request *req);

/* --- The server -------------------------------------------------------------------------- */

/* /metrics: fill *<out> with a heap buffer of *<len> bytes (the admin free()s it once the
 * response is sent) and return 0, or return a negative code (the admin answers 500). Runs on
 * the admin's loop thread. sr_metrics_format() has this shape once its workers and info are
 * bound in. */
typedef int (*sr_admin_metrics_fn)(void *ctx, char **out, size_t *len);

/* /readyz: NULL when ready (200 "ready"), else a short static reason such as "draining" or
 * "listeners not bound" (503 "not ready: REASON"). Runs on the admin's loop thread. */
typedef const char *(*sr_admin_ready_fn)(void *ctx);

/* /explain?QUERY: answer with a heap buffer in *<out> of *<len> bytes (the admin free()s it)
 * and return the HTTP status to send: 200, or 400/404 with the reason as the body. Return a
 * negative code (and no buffer) for a failure of its own: 500. <query> is the raw query
 * string (not decoded, maybe empty). Runs on the admin's loop thread. */
typedef int (*sr_admin_explain_fn)(void *ctx, const char *query, size_t query_len, char **out,
                                   size_t *len);

struct sr_admin_conn;

/* Caller-owned; all fields are private except those marked read-only. */
struct sr_admin {
    uv_loop_t *loop;
    uv_tcp_t listener;
    sr_admin_metrics_fn metrics_cb;
    sr_admin_ready_fn ready_cb;
    sr_admin_explain_fn explain_cb; /* NULL: /explain is not served (404) */
    void *ctx;
    uv_check_t tick;             /* after each poll: the accept budget starts again */
    struct sr_admin_conn *conns; /* every connection not yet freed, closing ones included */
    size_t n_conns;              /* read-only: in <conns> */
    size_t n_live;               /* read-only: in <conns> and not closing: what the caps count */
    size_t n_bodies;             /* read-only: response bodies not yet freed */
    size_t n_tick_accepts;       /* accepted since the last poll */
    size_t n_open; /* read-only: handles (listener, tick and connections) not yet closed */
    bool is_listening;
    bool is_stopped;
    bool is_accept_deferred;      /* a connection waits in libuv for the next tick */
    struct sockaddr_storage addr; /* read-only: the bound address, the OS's port for 0 */
    uint64_t n_accepted;          /* read-only: connections accepted */
    uint64_t n_requests;          /* read-only: responses started, any status */
    uint64_t n_evicted;           /* read-only: connections closed to make room for another */
};

/* Bind <addr> (IPv4 or IPv6, port 0 for any) on <loop> and start serving. <metrics_cb> and
 * <ready_cb> (either may be NULL: 500 for /metrics, always ready for /readyz) get <ctx>.
 * <admin> must stay put until its handles are closed (see sr_admin_stop). Returns 0, or a
 * negative UV_E* code; then nothing is left listening, but the loop must still run once to
 * close the handle before <admin> may go. */
int
sr_admin_start(struct sr_admin *admin, uv_loop_t *loop, const struct sockaddr *addr,
               sr_admin_metrics_fn metrics_cb, sr_admin_ready_fn ready_cb, void *ctx);

/* Serve /explain with <explain_cb> (same <ctx> as the other callbacks), from now on. Call it
 * after sr_admin_start() succeeded; NULL stops serving it. */
void
sr_admin_set_explain(struct sr_admin *admin, sr_admin_explain_fn explain_cb);

/* The same, with <fd> (when not -1) a listening socket already bound to <addr>, which
 * <admin> takes over and closes (a binary upgrade hands the old process's one over). */
int
sr_admin_start_fd(struct sr_admin *admin, uv_loop_t *loop, const struct sockaddr *addr, int fd,
                  sr_admin_metrics_fn metrics_cb, sr_admin_ready_fn ready_cb, void *ctx);

/* Stop listening and close every admin connection now (a response in flight is cut).
 * Idempotent. The handles close in the loop's next iteration: <admin> may be freed once
 * uv_run has returned (or admin->n_open is 0), and uv_loop_close then succeeds. */
void
sr_admin_stop(struct sr_admin *admin);

/* The bound port (host order), for tests and the startup notice. */
unsigned
sr_admin_port(const struct sr_admin *admin);

#endif
