/* SPDX-License-Identifier: MIT */
/* Client access rules (issue 15): the `allow = CIDR` and `deny = CIDR` lines of a [listener]
 * or [upstream] section, and the one test "may this client address pass them". The order
 * is fixed, not the file's: a matching deny refuses, whatever allows it too; then a
 * matching allow admits; then a section with any allow line refuses the rest, and one
 * without admits everyone. Every range lives in one 128-bit space where an IPv4 address is
 * its v4-mapped IPv6 form (cidr.h), so a client arriving as ::ffff:a.b.c.d on a dual-stack
 * socket meets the IPv4 rules. The check is pure: no allocation, no I/O, O(rules) with two
 * 64-bit compares a rule. Building the list (at config load) allocates. */
#ifndef SR_ACCESS_H
#define SR_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sniroute/config/cidr.h"

/* Rules one section may hold, allow and deny together. A check walks them all in the worst
 * case, once per connection (and per HTTP request head): 256 costs well under a
 * microsecond, and longer lists (a country's ranges) belong in a firewall. */
#define SR_ACCESS_RULES_MAX 256

/* Longest rule label: "upstream:" + a section name (63) + ":not_allowed" or ":allow:" and
 * a range (SR_CIDR_TEXT_MAX), and the NUL. */
#define SR_ACCESS_LABEL_MAX (9 + 63 + 7 + SR_CIDR_TEXT_MAX + 1)

enum sr_access_kind {
    SR_ACCESS_DENY = 0,
    SR_ACCESS_ALLOW,
};

struct sr_access_rule {
    /* The range in the 128-bit space, as two words loaded from its bytes in network order
     * (memcpy, so the host's byte order does not matter): a peer matches when
     * (peer & mask) == net, word by word. */
    uint64_t net[2];
    uint64_t mask[2];
    struct sr_cidr cidr; /* as written, for messages and lint */
    uint32_t line;       /* the config position of its line (sr_config_locate) */
    uint8_t kind;        /* enum sr_access_kind */
    /* "SECTION:NAME:KIND:RANGE", e.g. "listener:https:deny:203.0.113.0/24": what the
     * access log's rule= and the metric's rule label say. Owned by the list. */
    char *label;
    /* A process-wide number for <label>, for the denial metric: set by the server when it
     * takes the config (sr_generation_prepare); 0 until then. */
    uint32_t label_id;
};

/* The rules of one section. Zeroed means "no rules": everyone is admitted. */
struct sr_access_list {
    struct sr_access_rule *rules; /* every deny first, then every allow; each in file order */
    size_t n;
    size_t n_deny; /* rules[0 .. n_deny) deny, the rest allow */
    size_t cap;
    /* "SECTION:NAME:not_allowed": the label of a refusal because no allow line matched;
     * set with the first allow line. Owned. */
    char *not_allowed;
    uint32_t not_allowed_id; /* as sr_access_rule.label_id */
};

/* What a check said. */
struct sr_access_result {
    bool is_allowed;
    /* The rule that decided: the deny that refused, or the allow that admitted; NULL when
     * no rule matched (admitted when the list has no allow line, refused when it has). */
    const struct sr_access_rule *rule;
    /* Refused: the deny rule's label or the list's not_allowed label. Admitted: the allow
     * rule's label, or NULL. Points into the list. */
    const char *label;
    uint32_t label_id; /* of <label>, as sr_access_rule.label_id; 0 when <label> is NULL */
};

enum sr_access_error {
    SR_ACCESS_OK = 0,
    SR_ACCESS_FULL,   /* SR_ACCESS_RULES_MAX rules already */
    SR_ACCESS_NO_MEM, /* out of memory */
};

/* Add the range <c> (from sr_cidr_parse(), SR_CIDR_OK) as a rule of <kind> written at
 * position <line> to <acl>, in the section named "<section>:<name>" ("listener", "https").
 * Denies stay before allows; within a kind, rules keep the order they were added in.
 * Returns OK, FULL or NO_MEM (then <acl> is unchanged). */
enum sr_access_error sr_access_add(struct sr_access_list *acl, enum sr_access_kind kind,
                                   const struct sr_cidr *c, uint32_t line, const char *section,
                                   const char *name);

/* Check the client address <sa> (AF_INET or AF_INET6; ports ignored) against <acl> by the
 * fixed order above, into <*out>. Any other family, or NULL, matches no rule: admitted by a
 * list without allow lines, refused by one with. Returns out->is_allowed. No allocation. */
bool sr_access_check(const struct sr_access_list *acl, const struct sockaddr *sa,
                     struct sr_access_result *out);

/* Every address of <inner> lies in <outer> (both rules of lists built by sr_access_add). */
bool sr_access_rule_within(const struct sr_access_rule *inner, const struct sr_access_rule *outer);

/* <a> and <b> share at least one address. */
bool sr_access_rules_overlap(const struct sr_access_rule *a, const struct sr_access_rule *b);

/* The word of <kind>: "allow" or "deny". */
const char *sr_access_kind_name(enum sr_access_kind kind);

/* Free what <acl> owns and zero it. Safe on a zeroed list. */
void sr_access_fini(struct sr_access_list *acl);

#endif
