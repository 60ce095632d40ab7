/* SPDX-License-Identifier: MIT */
/* Open connections per client address, for max_connections_per_ip: a hash table from a
 * 16-byte address (IPv4 as ::ffff:a.b.c.d) to a count. Entries exist only while their
 * count is above zero, so the table is as large as the set of clients connected now. No
 * libuv, no I/O. */
#ifndef SR_IPCOUNT_H
#define SR_IPCOUNT_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;
struct sr_ipcount;

/* A client address as the table keys it. */
struct sr_ipkey {
    uint8_t bytes[16];
};

/* Fill <key> from an AF_INET or AF_INET6 <sa> (IPv4 and v4-mapped IPv6 give the same key).
 * Returns 0, or -1 for another family. */
int
sr_ipkey_from_sockaddr(struct sr_ipkey *key, const struct sockaddr *sa);

/* An empty table, or NULL when out of memory. */
struct sr_ipcount *
sr_ipcount_new(void);

/* Free <t>; NULL is accepted. */
void
sr_ipcount_free(struct sr_ipcount *t);

/* Count one more connection from <key>; returns the new count, or 0 when out of memory
 * (nothing is counted then). */
uint32_t
sr_ipcount_add(struct sr_ipcount *t, const struct sr_ipkey *key);

/* Count one connection less from <key>, which must have been added. */
void
sr_ipcount_remove(struct sr_ipcount *t, const struct sr_ipkey *key);

/* The count for <key> (0 if absent). */
uint32_t
sr_ipcount_get(const struct sr_ipcount *t, const struct sr_ipkey *key);

/* Addresses with a count above zero. */
size_t
sr_ipcount_size(const struct sr_ipcount *t);

#endif
