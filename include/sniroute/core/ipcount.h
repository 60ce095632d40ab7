/* SPDX-License-Identifier: MIT */
/* Open connections per client address, for max_connections_per_ip: a hash table from a
 * 16-byte address (IPv4 as ::ffff:a.b.c.d) to a count. Entries exist only while their
 * count is above zero, so the table is as large as the set of clients connected now. No
 * libuv, no I/O. */
#ifndef SR_IPCOUNT_H
#define SR_IPCOUNT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sockaddr;
struct sr_ipcount;

/* A client address as the table keys it. */
struct sr_ipkey {
    uint8_t bytes[16];
};

/* MurmurHash3's 64-bit finalizer: every input bit reaches every output bit. */
static inline uint64_t
sr_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* A hash of the 16 bytes of an address under <secret> (drawn at random by the table's
 * owner), for picking a shard: a client cannot aim its addresses at one shard without
 * knowing the secret. */
static inline uint64_t
sr_ipkey_hash(const uint8_t bytes[16], const uint64_t secret[2])
{
    uint64_t a;
    uint64_t b;

    memcpy(&a, bytes, 8);
    memcpy(&b, bytes + 8, 8);
    return sr_mix64(sr_mix64(a ^ secret[0]) ^ b ^ secret[1]);
}

/* Fill <key> from an AF_INET or AF_INET6 <sa> (IPv4 and v4-mapped IPv6 give the same key).
 * Returns 0, or -1 for another family. */
int sr_ipkey_from_sockaddr(struct sr_ipkey *key, const struct sockaddr *sa);

/* An empty table whose slots are chosen by sr_ipkey_hash() under <secret> (draw it at
 * random: with a known hash, a client holding many addresses, as an IPv6 prefix gives,
 * could pile them into one probe sequence), or NULL when out of memory. */
struct sr_ipcount *sr_ipcount_new(const uint64_t secret[2]);

/* Free <t>; NULL is accepted. */
void sr_ipcount_free(struct sr_ipcount *t);

/* Count one more connection from <key>; returns the new count, or 0 when out of memory
 * (nothing is counted then). */
uint32_t sr_ipcount_add(struct sr_ipcount *t, const struct sr_ipkey *key);

/* Count one connection less from <key>, which must have been added. */
void sr_ipcount_remove(struct sr_ipcount *t, const struct sr_ipkey *key);

/* The count for <key> (0 if absent). */
uint32_t sr_ipcount_get(const struct sr_ipcount *t, const struct sr_ipkey *key);

/* Addresses with a count above zero. */
size_t sr_ipcount_size(const struct sr_ipcount *t);

#endif
