/* SPDX-License-Identifier: MIT */
/* The configuration: an INI file (read with inih) turned into a plain struct, with every
 * problem reported as "FILE:LINE: what is wrong". It validates everything it can without
 * touching the network: it binds nothing and resolves nothing. */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sniroute/config/access.h"
#include "sniroute/config/addr.h"
#include "sniroute/config/cidr.h"
#include "sniroute/config/pool.h"
#include "sniroute/config/route.h"

/* Longest section name after "listener " or "routes ". */
#define SR_CONFIG_NAME_MAX 63

/* Defaults, documented in the README's config reference. */
#define SR_CONFIG_HELLO_TIMEOUT_MS   5000u
#define SR_CONFIG_CONNECT_TIMEOUT_MS 5000u
#define SR_CONFIG_IDLE_TIMEOUT_MS    3600000u
#define SR_CONFIG_DRAIN_TIMEOUT_MS   30000u
#define SR_CONFIG_MAX_HELLO_SIZE     16384u
/* QUIC (protocol = quic listeners). 180 s: above the idle timeouts common QUIC stacks
 * default to (30 s in ngtcp2 and quic-go) and above Linux's conntrack timeout for an
 * established UDP stream (120 s), so sniroute is not the first to forget a live flow. */
#define SR_CONFIG_QUIC_IDLE_TIMEOUT_MS  180000u
#define SR_CONFIG_MAX_QUIC_FLOWS        100000u
#define SR_CONFIG_MAX_QUIC_FLOWS_PER_IP 256u
#define SR_CONFIG_QUIC_HOLD_BYTES       65536u
/* Bounds on quic_hold_bytes: two full-size Initial datagrams (a ClientHello with a
 * post-quantum key share spans two) at least; more than 1 MiB per unrouted flow would let
 * a few spoofed clients pin a lot of memory. */
#define SR_CONFIG_QUIC_HOLD_BYTES_MIN 2400u
#define SR_CONFIG_QUIC_HOLD_BYTES_MAX 1048576u
/* workers = N: at most this many. */
#define SR_CONFIG_WORKERS_MAX 64u

/* max_new_connections_per_ip = N/s | N/m: N at most this (a million new connections a
 * second from one address is no limit), and the [sniroute] rate_limit_entries bound on the
 * table of buckets: the default holds every address active within a refill period for
 * most sites (about 56 bytes an entry: 3.5 MiB), the range keeps it from one shard's
 * worth up to 1 GiB. */
#define SR_CONFIG_NEW_CONNECTIONS_MAX    1000000u
#define SR_CONFIG_RATE_LIMIT_ENTRIES     65536u
#define SR_CONFIG_RATE_LIMIT_ENTRIES_MIN 64u
#define SR_CONFIG_RATE_LIMIT_ENTRIES_MAX 16777216u

/* health_check intervals below this would be a load test of the upstream. */
#define SR_CONFIG_HEALTH_CHECK_MIN_MS 100u

/* Upper bound for the max_connections keys: more than a process can have descriptors for
 * is surely a typo. */
#define SR_CONFIG_MAX_CONNECTIONS_MAX 10000000u

/* Bounds on max_hello_size: below 512 real hellos do not fit; above 256 KiB a slow client
 * could pin too much memory per connection during the peek. */
#define SR_CONFIG_MAX_HELLO_SIZE_MIN 512u
#define SR_CONFIG_MAX_HELLO_SIZE_MAX 262144u

/* What a listener does with a valid hello that carries no server_name. */
enum sr_no_sni {
    SR_NO_SNI_DEFAULT = 0, /* use the route map's "default" entry (reject if it has none) */
    SR_NO_SNI_REJECT,      /* always refuse with a TLS alert */
};

/* How access-log lines are written. */
enum sr_log_format {
    SR_LOG_FORMAT_TEXT = 0, /* key=value after a timestamp */
    SR_LOG_FORMAT_JSON,     /* one JSON object a line, for log pipelines */
};

/* kernel_relay: how established TCP connections move their bytes once routed. */
enum sr_kernel_relay {
    SR_KERNEL_RELAY_OFF = 0, /* in the worker: recv/send, then splice (the default) */
    SR_KERNEL_RELAY_AUTO,    /* in the kernel (BPF sockmap) where it loads, else as off */
    SR_KERNEL_RELAY_SOCKMAP, /* in the kernel, or refuse to start */
};

/* The PROXY protocol header sniroute sends to an upstream before the client's bytes. */
enum sr_proxy_protocol {
    SR_PROXY_PROTOCOL_NONE = 0,
    SR_PROXY_PROTOCOL_V1, /* text */
    SR_PROXY_PROTOCOL_V2, /* binary, with the server name as an AUTHORITY TLV */
};

/* An [upstream NAME] section: a pool of servers a route can name. */
struct sr_pool_config {
    char name[SR_CONFIG_NAME_MAX + 1];
    unsigned line;
    struct sr_addr *servers; /* at most SR_POOL_MAX_SERVERS; names resolved per connect */
    size_t n_servers;
    enum sr_pool_balance balance;
    enum sr_proxy_protocol proxy_protocol;
    uint64_t health_check_ms; /* active TCP check interval; 0: none */
    /* allow = CIDR, deny = CIDR: which clients may reach this upstream, checked once a
     * connection, request head or QUIC flow is routed (or sent as fallback) here. */
    struct sr_access_list access;
};

/* One distinct upstream address. Route values index sr_config.upstreams; the same text
 * used by many routes is stored once. */
struct sr_upstream {
    struct sr_addr addr; /* a HOST:PORT route target, when pool is 0 */
    unsigned line;       /* first line that named it */
    size_t pool;         /* 0: addr above; otherwise 1 + index into sr_config.pools */
};

/* Where each entry of one route table was written, for `sniroute explain`, /explain and
 * lint; the connection path never reads it. 8 bytes per route, beside the table's own ~50. */
struct sr_route_line {
    uint32_t entry; /* sr_route_hit.entry */
    uint32_t line;
};

struct sr_route_lines {
    struct sr_route_line *items; /* sorted by entry (the order routes were added) */
    size_t n;
    size_t cap;
    unsigned default_line; /* the "default" key; 0: none */
};

/* A [routes NAME] section. */
/* Longest ALPN protocol id in a route key ("acme-tls/1" is 10). */
#define SR_CONFIG_ALPN_MAX 64

/* Routes that apply only when the client offers ALPN protocol <proto>: keys written
 * "NAME[PROTO]" in a [routes] section. */
struct sr_alpn_routes {
    char proto[SR_CONFIG_ALPN_MAX + 1];
    size_t proto_len;
    struct sr_route_table *table; /* values are indexes into sr_config.upstreams */
    struct sr_route_lines lines;
};

struct sr_routes {
    char name[SR_CONFIG_NAME_MAX + 1];
    unsigned line;
    struct sr_route_table *table; /* values are indexes into sr_config.upstreams */
    struct sr_alpn_routes *alpn;  /* one table per protocol named; may be NULL */
    size_t n_alpn;
    struct sr_route_lines lines; /* of <table> */
};

/* Where a config's lines came from. Every line a config stores (in sr_listener_config,
 * sr_routes, sr_route_lines, sr_upstream, sr_pool_config, ...) is a position: lines are
 * numbered on across the main file and the files its [routes] sections include, in the order
 * they were read, so one uint32 names a file and a line. Without includes a position is the
 * line of the main file. sr_config_locate() turns a position back into FILE and LINE. */
struct sr_config_span {
    uint32_t pos;  /* first position of the span */
    uint32_t file; /* index into sr_config.files */
    uint32_t line; /* that file's line at <pos> */
};

/* "include = PATH" in a [routes NAME] section: route lines read from other files, as if
 * written at that line. PATH may be a glob in its last component; relative paths are
 * relative to the directory of the main file. Includes do not nest. */
struct sr_config_include {
    char *pattern;  /* the path or glob, made relative to the main file's directory; owned */
    char *dir;      /* the directory PATH names a file in (watch = yes watches it); owned */
    unsigned line;  /* position of the include line */
    size_t routes;  /* index into sr_config.routes */
    size_t n_files; /* files read for it (0: a glob that matched nothing) */
    bool is_glob;
};

/* Bounds on includes, against a glob that matches far more than meant: files read through
 * includes per config, and their bytes in all. 1,000,000 routes are about 50 MB. */
#define SR_CONFIG_INCLUDE_FILES_MAX 1024u
#define SR_CONFIG_INCLUDE_BYTES_MAX (256u << 20)

/* A [listener NAME] section. */
struct sr_listener_config {
    char name[SR_CONFIG_NAME_MAX + 1];
    unsigned line;
    struct sr_addr *listen; /* IPv4 or IPv6 literals only; at least one */
    size_t n_listen;
    size_t routes; /* index into sr_config.routes (valid when the load returned 0) */
    enum sr_no_sni no_sni;
    uint32_t max_connections; /* open connections through this listener; 0: no limit */
    /* proxy_protocol = accept: every connection starts with a PROXY header (v1 or v2),
     * accepted only from these sources; anyone else is refused. */
    bool is_proxy_accepted;
    struct sr_cidr_list trusted_proxies;
    /* fallback = TARGET: connections whose first bytes are not TLS go there, unmodified;
     * with fallback_timeout, so does a client silent that long (server-speaks-first
     * protocols). */
    size_t fallback;              /* 0: none; otherwise 1 + index into sr_config.upstreams */
    bool is_http; /* protocol = http: plain HTTP/1.x routed by Host, not TLS by SNI */
    /* protocol = quic: UDP; each client address and port is a flow routed by the SNI of its
     * QUIC Initial packets, and relayed as datagrams to the route's HOST:PORT over UDP. */
    bool is_quic;
    uint64_t fallback_timeout_ms; /* 0: none */
    /* max_new_connections_per_ip = N/s | N/m: new connections (QUIC: new flows) from one
     * client address (IPv6: one /64) through this listener, a token bucket of N refilled
     * over the period; 0: no limit. */
    uint32_t max_new_conns;
    uint32_t max_new_conns_period_ms; /* 1000 or 60000 */
    /* allow = CIDR, deny = CIDR: which clients may use this listener, checked at accept
     * (behind proxy_protocol = accept: on the address the PROXY header names). */
    struct sr_access_list access;
};

struct sr_config {
    uint64_t hello_timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t drain_timeout_ms;
    size_t max_hello_size;
    uint32_t max_connections;        /* open connections in all; 0: no limit */
    uint32_t max_connections_per_ip; /* open connections from one client address; 0: none */
    /* QUIC flows (protocol = quic listeners only; the two limits above count TCP only). */
    uint64_t quic_idle_timeout_ms;  /* a routed flow with one side quiet this long ends */
    uint32_t max_quic_flows;        /* flows of the process in all; 0: no limit */
    uint32_t max_quic_flows_per_ip; /* flows from one client address; 0: no limit */
    size_t quic_hold_bytes;         /* datagrams held per flow until its ClientHello is complete */
    uint32_t rate_limit_entries;    /* buckets of max_new_connections_per_ip kept, at most */
    char *access_log; /* "stdout" (the default), "stderr", "off" or a file path; owned */
    bool is_watched;  /* watch = yes: reload when the file changes */
    uint32_t workers; /* loops, one thread each; 0: auto (one per CPU); default 1 */
    enum sr_log_format log_format;
    enum sr_kernel_relay kernel_relay; /* read at start only: a reload keeps the first */
    bool has_admin;         /* admin = ADDR: serve /metrics, /healthz, /readyz there */
    struct sr_addr admin;   /* an IP literal; port 0 lets the kernel choose */
    char *user;       /* drop root to this user after binding; NULL: stay as started */
    char *group;      /* and to this group (default: the user's primary group); owned */
    unsigned user_line;
    unsigned group_line;

    struct sr_listener_config *listeners;
    size_t n_listeners;
    struct sr_routes *routes;
    size_t n_routes;
    struct sr_upstream *upstreams;
    size_t n_upstreams;
    struct sr_pool_config *pools;
    size_t n_pools;

    /* Where lines came from (see struct sr_config_span): files[0] is the main file, then
     * every included file in the order read; spans sorted by position. */
    char **files; /* owned */
    size_t n_files;
    struct sr_config_span *spans;
    size_t n_spans;
    struct sr_config_include *includes;
    size_t n_includes;
};

/* Receives one problem, formatted "FILE:LINE: what is wrong" (no trailing newline). The
 * string is valid only during the call. */
typedef void (*sr_config_error_fn)(void *ctx, const char *msg);

/* Read <path> into <cfg> (which need not be initialized). Every problem found is passed to
 * <on_error> with <ctx>; the file is read to the end whatever happens, so one run reports
 * them all. Returns the number of problems: 0 means <cfg> is complete and valid. Whatever
 * it returns, the caller must call sr_config_fini(<cfg>) afterwards.
 *
 * Messages are "FILE:LINE: what is wrong", one per problem, in line order, except that
 * what needs a whole [listener] section (an address another listener of the same transport
 * has; an option protocol = quic does not take) comes when the section ends; then the
 * checks that need the whole file (a listener's missing keys, a [routes] name that is not
 * defined, an empty [routes] section). Problems of the file as a whole have no line:
 * "FILE: cannot open: ...", "FILE: no [listener NAME] section (...)". Inside a section the
 * text starts with "sniroute: ", "listener 'NAME': " or "routes 'NAME': ". Control bytes
 * from the file are shown as '?'.
 *
 * Rules beyond the grammar: lines are at most 199 bytes (inih's buffer, less the NUL; the
 * line ending does not count); keys are case-sensitive; every [routes] section must hold at
 * least one entry (an empty map would refuse every connection); a [routes] section no
 * listener names is allowed; access_log defaults to "stdout"; durations are at most 8760h;
 * a listener's <routes> index is meaningful only when the load returned 0.
 *
 * Includes: "include = PATH" in a [routes] section reads the route lines of PATH (a glob in
 * the file name allowed, matches read in strcmp order) at that point, as if written there;
 * "include" is therefore not a route name. A plain PATH that cannot be opened is a
 * problem, a glob that matches nothing is not. An included file holds route lines,
 * comments and blank lines only (a "[...]" line, or an include, in it is a problem), with the
 * same line rules; its problems are "INCLUDED:LINE: ..." and a route defined twice is a
 * problem wherever the two are, naming both places. At most SR_CONFIG_INCLUDE_FILES_MAX
 * files and SR_CONFIG_INCLUDE_BYTES_MAX bytes are included. */
size_t
sr_config_load(struct sr_config *cfg, const char *path, sr_config_error_fn on_error, void *ctx);

/* Like sr_config_load(), from the open stream <fp> (not NULL), which is read to its end but
 * not closed; <name> stands for the file in messages ("NAME:LINE: ..."). For tests and
 * the fuzz target, which load from memory (fmemopen). A stream has no directory: "include"
 * is refused there, so nothing but the stream is read. */
size_t
sr_config_load_stream(struct sr_config *cfg, FILE *fp, const char *name,
                      sr_config_error_fn on_error, void *ctx);

/* The file and line of position <pos> (see struct sr_config_span): returns the file's path
 * (valid while <cfg> lives) and sets <*line>. For a config without a table of files (zeroed,
 * or not loaded from a file) returns NULL with <*line> = <pos>; also <*file> (when not NULL)
 * receives the file's index, 0 for the main file. */
const char *
sr_config_locate(const struct sr_config *cfg, unsigned pos, unsigned *line, size_t *file);

/* A hash of what loading <path> would read now, for watch = yes to tell a change from a
 * touch: the bytes of <path> and, for each include of <cfg> (loaded from <path> before), the
 * names and bytes of the files it names or its glob matches now. A change of the include
 * lines themselves changes <path>'s bytes. Returns 0 when <path> cannot be read (a
 * rename in progress), never 0 otherwise. Reads every file: O(their size). */
uint64_t
sr_config_sources_hash(const struct sr_config *cfg, const char *path);

/* The line of the route that produced <hit> in the table <lines> belongs to: the default's
 * for SR_ROUTE_DEFAULT, 0 for a miss or an entry it does not know. O(log n). */
unsigned
sr_config_route_line(const struct sr_route_lines *lines, const struct sr_route_hit *hit);

/* The same for an entry id (sr_route_hit.entry, sr_route_entry.entry); 0 if unknown. */
unsigned
sr_config_entry_line(const struct sr_route_lines *lines, uint32_t entry);

/* Free everything <cfg> owns and zero it. Safe on a zeroed or failed config. */
void
sr_config_fini(struct sr_config *cfg);

#endif
