/* SPDX-License-Identifier: MIT */
/* An upstream pool ([upstream NAME], issue 5 part 4): the servers of one upstream, their
 * health as the caller reports it, and the choice of a server for a new connection
 * (round_robin, least_conn, random_two, source_hash), with retries that never try a server
 * twice for one connection. Pure: no libuv, no I/O, no clock (the caller passes the time
 * in), no allocation at all (the caller owns the struct), no locking (one pool per worker). */
#ifndef SR_POOL_H
#define SR_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most 64 servers in one pool, because a set of servers is one uint64_t bit mask: the
 * servers already tried for a connection (<exclude_mask> of sr_pool_pick()) and the
 * candidates inside a pick. That keeps a pick to a few word operations and a scan of at
 * most 64 entries, with no allocation. An SNI router's upstream is a handful of servers;
 * a farm larger than 64 behind one name belongs behind a load balancer of its own. The
 * config loader refuses a 65th `server =` line (SR_POOL_TOO_MANY_SERVERS). */
#define SR_POOL_MAX_SERVERS 64

/* Passive health defaults: 3 connect failures in a row take a server out for 10 s.
 * Three, not one, so that a single lost SYN or a backend's brief restart does not empty a
 * pool; ten seconds is long enough to stop hammering a dead server with every new
 * connection and short enough that a restarted one is back before anyone is paged. */
#define SR_POOL_FAIL_MAX_DEFAULT        3u
#define SR_POOL_FAIL_TIMEOUT_MS_DEFAULT 10000u

/* The length of a source_hash key: a client address as 16 bytes, IPv4 as ::ffff:a.b.c.d
 * (struct sr_ipkey of ipcount.h has exactly this layout). */
#define SR_POOL_KEY_LEN 16

enum sr_pool_balance {
    SR_POOL_ROUND_ROBIN = 0, /* "round_robin": each server in turn (the default) */
    SR_POOL_LEAST_CONN,      /* "least_conn": fewest open connections, ties in turn */
    SR_POOL_RANDOM_TWO,      /* "random_two": two at random, the one with fewer connections */
    SR_POOL_SOURCE_HASH,     /* "source_hash": a client address sticks to one server */
};

enum sr_pool_error {
    SR_POOL_OK = 0,
    SR_POOL_BAD_BALANCE,      /* not one of the four balance names */
    SR_POOL_NO_SERVERS,       /* a pool needs at least one server */
    SR_POOL_TOO_MANY_SERVERS, /* more than SR_POOL_MAX_SERVERS */
};

/* What sr_pool_pick() found. */
enum sr_pool_pick {
    SR_POOL_PICKED = 0,  /* <*index> is up: healthy and not out for failures */
    SR_POOL_LAST_RESORT, /* every server not yet tried is out for connect failures (passive
                            health), none is up: <*index> is the one whose time out ends
                            first. Worth a log line; see sr_pool_pick() for why. */
    SR_POOL_NONE_LEFT,   /* nothing to try: every server is in <exclude_mask> or fails its
                            health check; <*index> is untouched */
};

/* How a pool behaves; copied by sr_pool_init(). */
struct sr_pool_params {
    enum sr_pool_balance balance;
    uint32_t fail_max;        /* connect failures in a row that take a server out; 0: never
                                 (passive health off) */
    uint64_t fail_timeout_ms; /* how long a server stays out after its fail_max-th failure */
    uint64_t seed;            /* start of random_two's PRNG state; any value (0 included) */
};

/* One server. All fields are read-only for callers (metrics may read them); change them
 * only through the functions below. */
struct sr_pool_server {
    uint64_t id_hash;       /* hash of the server's text, its identity for source_hash */
    uint64_t down_until_ms; /* out for failures while now_ms < this; 0: not out */
    uint64_t n_picks;       /* times sr_pool_pick() chose it (last resort included) */
    uint64_t n_failures;    /* connect failures reported, ever */
    uint32_t n_fails;       /* connect failures in a row (stops counting at fail_max) */
    uint32_t n_active;      /* connections between sr_pool_conn_start() and _end() */
    /* The active health check's verdict; true until told otherwise. Atomic: one worker
     * checks for all, and writes it into every worker's copy of the pool. */
    _Atomic bool is_healthy;
};

/* A pool. Caller-owned storage (about 3 KiB at 64 servers); holds no pointer and no
 * resource, so there is nothing to release and a copy is a valid independent pool. */
struct sr_pool {
    struct sr_pool_params params;
    uint64_t rng;   /* random_two's splitmix64 state */
    size_t rr_next; /* where round_robin (and least_conn's tie break) looks first */
    size_t n;
    struct sr_pool_server servers[SR_POOL_MAX_SERVERS];
};

/* Set up <*pool> with <n> servers, server i being named by <ids>[i] (NUL-terminated; the
 * `server =` value as written, e.g. "10.0.1.1:443"). Only a hash of each name is kept, so
 * <ids> may go away after the call. All servers start healthy, not out, with no
 * connections. Returns SR_POOL_OK, SR_POOL_NO_SERVERS (<n> is 0) or SR_POOL_TOO_MANY_SERVERS
 * (over SR_POOL_MAX_SERVERS); on an error <*pool> is zeroed and must not be used.
 *
 * The name is the server's identity for source_hash: a client's server depends on the
 * names in the pool, not on their order or index, so reordering `server =` lines, a
 * reload, another worker or another sniroute with the same servers all send a client to
 * the same server (as long as it is up); adding a server moves only the clients it wins
 * (about 1/n), removing one only the clients it had. Two servers with the same name would
 * tie; the config loader should refuse duplicates. */
enum sr_pool_error sr_pool_init(struct sr_pool *pool, const struct sr_pool_params *params,
                                const char *const *ids, size_t n);

/* Choose a server for a new connection, or for the next attempt of one whose connect to
 * another server failed. <exclude_mask> has bit i set for each server i this connection
 * has tried already (0 for a first attempt); those are never chosen again, so the retry
 * loop is bounded by the number of servers. <client_key> (SR_POOL_KEY_LEN bytes) is read
 * only by source_hash; NULL there means round robin for this pick (no address, nothing to
 * stick to). Writes the server's index to <*index> and counts the pick, unless it returns
 * SR_POOL_NONE_LEFT. <now_ms> is any monotonic clock in milliseconds, the same one given to
 * sr_pool_report_failure().
 *
 * A server is up when its health check passes (sr_pool_set_healthy()) and it is not out
 * for connect failures (sr_pool_report_failure()). The balance algorithm chooses among the
 * up servers not in <exclude_mask>:
 * - round_robin: the first such server at or after the last choice's successor, cyclically.
 * - least_conn: fewest n_active; among equals, round_robin's rule, so equal servers share
 *   the load instead of the lowest index taking it all.
 * - random_two: two different servers drawn uniformly from the PRNG in the pool; the one
 *   with fewer n_active (on a tie the first drawn). Never the more loaded of the two, and
 *   herd-free: unlike least_conn, many workers with stale counts do not all pile on the
 *   same least loaded server.
 * - source_hash: rendezvous (highest random weight) hashing: every server gets the score
 *   hash(client key, server name) and the highest score wins. When a server goes down,
 *   only the clients whose highest score was that server move (each to its second
 *   highest); everyone else stays; when it comes back they return. A retry after a failed
 *   connect goes to the next highest score, also the same server for every attempt of
 *   every client with that address.
 *
 * When no server is up, the servers are split by the reason. One that fails its health
 * check is never chosen: the checker saw it fail just now, and "no new connections until
 * it passes again" is the promise of `health_check` (HAProxy answers 503 here too). But if
 * the only servers left are out for connect failures, pick answers SR_POOL_LAST_RESORT
 * with the one whose time out ends first (ties: the balance algorithm among them) rather
 * than nothing. Passive health is a guess from a few failed connects; when it has guessed
 * every server dead, refusing every client for up to fail_timeout_ms turns a short blip
 * (a network hiccup, all backends restarting together) into an outage that long, while one
 * more connect attempt costs at most connect_timeout. nginx does the same in spirit: when
 * all peers have failed it marks them live again for a quick recovery. <exclude_mask>
 * still bounds it: each server at most once per connection. */
enum sr_pool_pick sr_pool_pick(struct sr_pool *pool, uint64_t now_ms, const uint8_t *client_key,
                               uint64_t exclude_mask, size_t *index);

/* A connect to server <i> failed at <now_ms>. Counts a failure in a row; the fail_max-th
 * (and every later one until a success) puts the server out until <now_ms> +
 * fail_timeout_ms. When that time comes the server is picked again as usual (half-open): a
 * success closes the circuit (sr_pool_report_success()), the next failure at once puts it
 * out for another fail_timeout_ms. Returns true if this failure took the server out (it was
 * not out for failures before: log it), false otherwise (still in, or already out and now
 * out for longer). <i> must be below the pool's size. */
bool sr_pool_report_failure(struct sr_pool *pool, size_t i, uint64_t now_ms);

/* A connect to server <i> succeeded: its failures in a row go back to 0 and, if it was out
 * (a last resort that worked), it is back in at once. */
void sr_pool_report_success(struct sr_pool *pool, size_t i);

/* A connection to server <i> starts / ends, for least_conn and random_two. Call start right
 * after the pick, before the connect (connects in flight count, or a burst of new clients
 * would all pick the same idle server), and end exactly once per start: when that attempt
 * fails or when the connection closes. end without a start is a bug (assert). */
void sr_pool_conn_start(struct sr_pool *pool, size_t i);
void sr_pool_conn_end(struct sr_pool *pool, size_t i);

/* The active health check's verdict for server <i>. Independent of passive health: a
 * server is up when the check passes AND it is not out for connect failures; passing a
 * check does not clear connect failures (a check every few seconds would otherwise wipe
 * the passive state as fast as it builds). Calling it with an unchanged verdict is fine. */
void sr_pool_set_healthy(struct sr_pool *pool, size_t i, bool is_healthy);

/* True if server <i> is up at <now_ms>: healthy and not out for connect failures. */
bool sr_pool_is_up(const struct sr_pool *pool, size_t i, uint64_t now_ms);

/* Read a `balance =` value: <text>/<len> must be exactly one of "round_robin",
 * "least_conn", "random_two", "source_hash" (lower case, no spaces). Returns SR_POOL_OK and
 * sets <*out>, or SR_POOL_BAD_BALANCE and leaves <*out> alone. */
enum sr_pool_error sr_pool_balance_parse(const char *text, size_t len, enum sr_pool_balance *out);

/* The config spelling of <balance>, e.g. "least_conn"; "?" for a value out of range. */
const char *sr_pool_balance_name(enum sr_pool_balance balance);

/* A static English phrase for <err>, e.g. "not one of round_robin, least_conn, ...". */
const char *sr_pool_error_str(enum sr_pool_error err);

#endif
