/* SPDX-License-Identifier: MIT */
/* The UDP flow table: one worker's flows by (listening socket, client address and port), as
 * an intrusive hash table. The caller embeds a struct sr_flownode in each flow and owns the
 * flows; the table owns only its bucket array. Keys are hashed with SipHash-1-3 under a
 * secret the caller draws at random, so a client choosing its source addresses and ports
 * cannot make the chains long (anyone can send UDP from any port, and spoof the address).
 * Pure: no libuv, no I/O, no clock; not thread-safe (one table per worker). */
#ifndef SR_FLOWTAB_H
#define SR_FLOWTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* A flow's identity. IPv4 clients are kept as ::ffff:a.b.c.d, as sr_ipkey does. The pad is
 * zero (in a connection ID's key, sr_flowkey_set_cid(), every byte is set), so keys compare
 * and hash as plain bytes. */
struct sr_flowkey {
    uint8_t addr[16];
    uint16_t port; /* network byte order, as in the sockaddr */
    uint16_t pad;
    uint32_t sock; /* the caller's id of the listening socket */
};

/* Embedded in each flow. <key> is the caller's to set before sr_flowtab_insert() and must
 * not change while the node is in a table; the rest is the table's. */
struct sr_flownode {
    struct sr_flownode *next;
    uint64_t hash;
    struct sr_flowkey key;
};

struct sr_flowtab {
    struct sr_flownode **buckets; /* a power of two of them */
    size_t n_buckets;
    size_t n;        /* nodes in the table */
    uint64_t k0, k1; /* the SipHash key */
};

/* Start with a small bucket array. <k0> and <k1> are the hash key: draw them at random (a
 * table with a known key can be flooded into one chain). Returns 0, or -1 when out of
 * memory (then sr_flowtab_fini() is still safe). */
int sr_flowtab_init(struct sr_flowtab *t, uint64_t k0, uint64_t k1);

/* Free the bucket array. The nodes are the caller's and are not touched. */
void sr_flowtab_fini(struct sr_flowtab *t);

/* Fill <key> for a client at <sa> (AF_INET or AF_INET6) on listening socket <sock>. Returns
 * 0, or -1 for another address family (<key> is then zeroed). */
int sr_flowkey_set(struct sr_flowkey *key, uint32_t sock, const struct sockaddr *sa);

/* Fill <key> for the connection ID <cid>/<len> (<len> at most 20) on listening socket
 * <sock> (below 2^24), for a table of flows by the ID their server chose: the ID's bytes
 * fill addr, port and pad in order, zeros after; its length is the top byte of sock, so IDs
 * of different lengths never compare equal. */
void sr_flowkey_set_cid(struct sr_flowkey *key, uint32_t sock, const uint8_t *cid, size_t len);

/* The node with <key>, or NULL. */
struct sr_flownode *sr_flowtab_find(const struct sr_flowtab *t, const struct sr_flowkey *key);

/* Add <node> (its key set, not already in the table; the caller checks with find first if
 * a key may be present). Never fails: when the table is fuller than one node per bucket it
 * doubles, and if that allocation fails the chains just grow longer. */
void sr_flowtab_insert(struct sr_flowtab *t, struct sr_flownode *node);

/* Take <node>, which must be in <t>, out of it. */
void sr_flowtab_remove(struct sr_flowtab *t, struct sr_flownode *node);

/* The length of the longest chain: for tests and diagnostics (a scan of every bucket). */
size_t sr_flowtab_longest_chain(const struct sr_flowtab *t);

#endif
