/* SPDX-License-Identifier: MIT */
/* Client access rules (access.h): the list built at config load, each range kept as a mask
 * and a network in the 128-bit space, so a check is two ANDs and two compares a rule. Not
 * here: parsing the config's text (config_keys.c), what a refusal looks like on the wire
 * (the proxy), which rules shadow which in words (lint.c). */
#include "sniroute/config/access.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ::ffff:0:0/96 prefix (RFC 4291 2.5.5.2) under which IPv4 lives in the 128-bit space. */
static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* <sa>'s address in the 128-bit space, as two words; false for any other family. */
static bool
peer_words(const struct sockaddr *sa, uint64_t out[2])
{
    uint8_t b[16];

    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(b, v4mapped_prefix, sizeof(v4mapped_prefix));
        memcpy(b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return false;
    }
    memcpy(out, b, 16);
    return true;
}

/* <c>'s network and mask in the 128-bit space. */
static void
rule_words(const struct sr_cidr *c, uint64_t net[2], uint64_t mask[2])
{
    uint8_t n[16];
    uint8_t m[16];
    unsigned prefix = c->prefix_len;
    size_t i;

    if (c->family == AF_INET) {
        memcpy(n, v4mapped_prefix, sizeof(v4mapped_prefix));
        memcpy(n + 12, c->addr, 4);
        prefix += 96;
    } else {
        memcpy(n, c->addr, 16);
    }
    for (i = 0; i < 16; i++) {
        unsigned bit = (unsigned)i * 8;

        m[i] = prefix >= bit + 8 ? 0xff
               : prefix <= bit   ? 0
                                 : (uint8_t)(0xff << (8 - (prefix - bit)));
        n[i] &= m[i];
    }
    memcpy(net, n, 16);
    memcpy(mask, m, 16);
}

static bool
rule_matches(const struct sr_access_rule *r, const uint64_t peer[2])
{
    return ((peer[0] & r->mask[0]) == r->net[0]) & ((peer[1] & r->mask[1]) == r->net[1]);
}

enum sr_access_error
sr_access_add(struct sr_access_list *acl, enum sr_access_kind kind, const struct sr_cidr *c,
              uint32_t line, const char *section, const char *name)
{
    char range[SR_CIDR_TEXT_MAX + 1];
    char label[SR_ACCESS_LABEL_MAX];
    struct sr_access_rule r;
    size_t at;

    if (acl->n >= SR_ACCESS_RULES_MAX) {
        return SR_ACCESS_FULL;
    }
    if (acl->n == acl->cap) {
        size_t cap = acl->cap == 0 ? 4 : acl->cap * 2;
        struct sr_access_rule *rules = realloc(acl->rules, cap * sizeof(*rules));

        if (rules == NULL) {
            return SR_ACCESS_NO_MEM;
        }
        acl->rules = rules;
        acl->cap = cap;
    }
    if (kind == SR_ACCESS_ALLOW && acl->not_allowed == NULL) {
        snprintf(label, sizeof(label), "%s:%s:not_allowed", section, name);
        acl->not_allowed = strdup(label);
        if (acl->not_allowed == NULL) {
            return SR_ACCESS_NO_MEM;
        }
    }
    memset(&r, 0, sizeof(r));
    if (sr_cidr_format(c, range, sizeof(range)) == 0) {
        range[0] = '\0';
    }
    snprintf(label, sizeof(label), "%s:%s:%s:%s", section, name, sr_access_kind_name(kind), range);
    r.label = strdup(label);
    if (r.label == NULL) {
        return SR_ACCESS_NO_MEM;
    }
    rule_words(c, r.net, r.mask);
    r.cidr = *c;
    r.line = line;
    r.kind = (uint8_t)kind;
    /* Denies first, so a check can stop at the first deny that matches and at the first
     * allow after them. */
    at = kind == SR_ACCESS_DENY ? acl->n_deny : acl->n;
    memmove(&acl->rules[at + 1], &acl->rules[at], (acl->n - at) * sizeof(r));
    acl->rules[at] = r;
    acl->n++;
    if (kind == SR_ACCESS_DENY) {
        acl->n_deny++;
    }
    return SR_ACCESS_OK;
}

bool
sr_access_check(const struct sr_access_list *acl, const struct sockaddr *sa,
                struct sr_access_result *out)
{
    uint64_t peer[2];
    bool has_peer = peer_words(sa, peer);
    size_t i;

    out->is_allowed = true;
    out->rule = NULL;
    out->label = NULL;
    out->label_id = 0;
    for (i = 0; has_peer && i < acl->n; i++) {
        if (rule_matches(&acl->rules[i], peer)) {
            out->rule = &acl->rules[i];
            out->label = out->rule->label;
            out->label_id = out->rule->label_id;
            out->is_allowed = i >= acl->n_deny;
            return out->is_allowed;
        }
    }
    if (acl->n > acl->n_deny) {
        out->is_allowed = false;
        out->label = acl->not_allowed;
        out->label_id = acl->not_allowed_id;
    }
    return out->is_allowed;
}

bool
sr_access_rule_within(const struct sr_access_rule *inner, const struct sr_access_rule *outer)
{
    /* Inner's mask at least as long as outer's, and inner's network inside outer. */
    return (inner->mask[0] & outer->mask[0]) == outer->mask[0] &&
           (inner->mask[1] & outer->mask[1]) == outer->mask[1] &&
           (inner->net[0] & outer->mask[0]) == outer->net[0] &&
           (inner->net[1] & outer->mask[1]) == outer->net[1];
}

bool
sr_access_rules_overlap(const struct sr_access_rule *a, const struct sr_access_rule *b)
{
    /* Two prefixes share an address only if one contains the other. */
    return sr_access_rule_within(a, b) || sr_access_rule_within(b, a);
}

const char *
sr_access_kind_name(enum sr_access_kind kind)
{
    return kind == SR_ACCESS_ALLOW ? "allow" : "deny";
}

void
sr_access_fini(struct sr_access_list *acl)
{
    size_t i;

    for (i = 0; i < acl->n; i++) {
        free(acl->rules[i].label);
    }
    free(acl->rules);
    free(acl->not_allowed);
    memset(acl, 0, sizeof(*acl));
}
