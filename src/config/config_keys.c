/* SPDX-License-Identifier: MIT */
/* The config loader's keyword table: each key of [sniroute], [listener NAME] and [upstream
 * NAME] with the setter that checks and stores its value (durations, sizes, counts, accounts,
 * addresses, PROXY protocol, CIDRs, allow and deny rules), and the handler that dispatches every
 * key through the table and refuses unknown and repeated ones. Not here: [routes] keys and route
 * targets (config_routes.c), checks that need the whole file (config_check.c). */
#include "sniroute/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/addr.h"
#include "sniroute/config/cidr.h"
#include "sniroute/config/pool.h"

#include "config_loader.h"

#define HINT_INDENT "(an indented line continues the previous value; remove the indentation)"

/* Durations above a year are surely typos, and the cap keeps "now + timeout" far from
 * overflowing anywhere. */
#define DURATION_MAX_MS (8760ull * 3600 * 1000)

/* ---- Values ---- */

/* Leading decimal digits of <s> into <*v> (at most 12, so no overflow); returns how many
 * were read. */
static size_t
parse_digits(const char *s, uint64_t *v)
{
    size_t i;

    *v = 0;
    for (i = 0; is_digit(s[i]); i++) {
        if (i == 12) {
            return 0;
        }
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return i;
}

/* Where a setter with an offset writes: the struct of the section being read. */
static char *
section_base(struct loader *ld, const struct keyword *kw)
{
    switch (kw->section) {
    case SEC_LISTENER:
        return (char *)&ld->cfg->listeners[ld->sec_index];
    case SEC_UPSTREAM:
        return (char *)&ld->cfg->pools[ld->sec_index];
    default:
        return (char *)ld->cfg;
    }
}

static void
set_duration(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);
    size_t i;

    for (i = 0; n > 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(value + n, units[i].unit) == 0) {
            break;
        }
    }
    if (n == 0 || i == sizeof(units) / sizeof(units[0])) {
        report(ld, ld->line,
               "%s: %s: bad duration '%s' (want an integer and a unit: ms, s, m or h, as in 5s)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (v == 0) {
        report(ld, ld->line, "%s: %s: bad duration '%s' (must be more than 0)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (v > DURATION_MAX_MS / units[i].ms) {
        report(ld, ld->line, "%s: %s: bad duration '%s' (at most 8760h)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (kw->section == SEC_UPSTREAM && v * units[i].ms < SR_CONFIG_HEALTH_CHECK_MIN_MS) {
        report(ld, ld->line, "%s: %s: bad duration '%s' (at least 100ms)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    *(uint64_t *)(void *)(section_base(ld, kw) + kw->offset) = v * units[i].ms;
}

/* A size in bytes, "k" for KiB: max_hello_size (512 .. 256k) or quic_hold_bytes (2400 ..
 * 1 MiB). */
static void
set_size(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    bool is_hold = strcmp(kw->key, "quic_hold_bytes") == 0;
    uint64_t min = is_hold ? SR_CONFIG_QUIC_HOLD_BYTES_MIN : SR_CONFIG_MAX_HELLO_SIZE_MIN;
    uint64_t max = is_hold ? SR_CONFIG_QUIC_HOLD_BYTES_MAX : SR_CONFIG_MAX_HELLO_SIZE_MAX;
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);

    if (n > 0 && (strcmp(value + n, "k") == 0 || strcmp(value + n, "K") == 0)) {
        v *= 1024;
    } else if (n == 0 || value[n] != '\0') {
        report(ld, ld->line,
               "%s: %s: bad size '%s' (want a number of bytes, optionally with k for x1024, "
               "as in 16k)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (v < min || v > max) {
        report(ld, ld->line, "%s: %s: bad size '%s' (must be %llu..%llu bytes)",
               section_label(ld, label, sizeof(label)), key, value, (unsigned long long)min,
               (unsigned long long)max);
        return;
    }
    *(size_t *)(void *)((char *)ld->cfg + kw->offset) = (size_t)v;
}

/* A count of connections: a decimal number, 0 meaning "no limit". <kw->offset> is in
 * struct sr_config for [sniroute], in struct sr_listener_config for [listener]. */
static void
set_count(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);
    if (n == 0 || value[n] != '\0' || v > SR_CONFIG_MAX_CONNECTIONS_MAX) {
        report(ld, ld->line, "%s: %s: bad count '%s' (want 0..%u; 0 means no limit)",
               section_label(ld, label, sizeof(label)), key, value, SR_CONFIG_MAX_CONNECTIONS_MAX);
        return;
    }
    if (kw->section == SEC_LISTENER && v != 0) {
        ld->ltmp[ld->sec_index].max_connections_line = ld->line;
    }
    *(uint32_t *)(void *)(section_base(ld, kw) + kw->offset) = (uint32_t)v;
}

/* max_new_connections_per_ip = N/s | N/m (N 1..SR_CONFIG_NEW_CONNECTIONS_MAX), or 0 for
 * no limit. */
static void
set_rate(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);

    (void)kw;
    if (n > 0 && v == 0 && value[n] == '\0') {
        l->max_new_conns = 0;
        return;
    }
    if (n == 0 || (strcmp(value + n, "/s") != 0 && strcmp(value + n, "/m") != 0)) {
        report(ld, ld->line,
               "%s: %s: bad rate '%s' (want a count per second or per minute, as in 50/s or "
               "600/m; 0 means no limit)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (v == 0 || v > SR_CONFIG_NEW_CONNECTIONS_MAX) {
        report(ld, ld->line, "%s: %s: bad rate '%s' (the count must be 1..%u)",
               section_label(ld, label, sizeof(label)), key, value, SR_CONFIG_NEW_CONNECTIONS_MAX);
        return;
    }
    l->max_new_conns = (uint32_t)v;
    l->max_new_conns_period_ms = value[n + 1] == 's' ? 1000 : 60000;
}

/* rate_limit_entries: how many buckets max_new_connections_per_ip keeps. */
static void
set_rate_entries(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);

    (void)kw;
    if (n == 0 || value[n] != '\0' || v < SR_CONFIG_RATE_LIMIT_ENTRIES_MIN ||
        v > SR_CONFIG_RATE_LIMIT_ENTRIES_MAX) {
        report(ld, ld->line, "%s: %s: bad count '%s' (want %u..%u)",
               section_label(ld, label, sizeof(label)), key, value,
               SR_CONFIG_RATE_LIMIT_ENTRIES_MIN, SR_CONFIG_RATE_LIMIT_ENTRIES_MAX);
        return;
    }
    ld->cfg->rate_limit_entries = (uint32_t)v;
}

static bool
is_empty(struct loader *ld, const char *key, const char *value)
{
    char label[LABEL_MAX];

    if (value[0] != '\0') {
        return false;
    }
    report(ld, ld->line, "%s: %s: empty value", section_label(ld, label, sizeof(label)), key);
    return true;
}

static void
set_access_log(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char *copy;

    (void)kw;
    if (is_empty(ld, key, value)) {
        return;
    }
    copy = strdup(value);
    if (copy == NULL) {
        report_oom(ld);
        return;
    }
    free(ld->cfg->access_log);
    ld->cfg->access_log = copy;
}

/* user and group: an account name as getpwnam/getgrnam take it. Whether it exists is
 * checked by the daemon (sniroute -t included): the loader does no lookups. */
static void
set_account(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    bool is_user = strcmp(kw->key, "user") == 0;
    char label[LABEL_MAX];
    char **slot = is_user ? &ld->cfg->user : &ld->cfg->group;
    size_t i;

    if (is_empty(ld, key, value)) {
        return;
    }
    for (i = 0; value[i] != '\0'; i++) {
        char c = value[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '-' || c == '.')) {
            report(ld, ld->line, "%s: %s: bad account name '%s'",
                   section_label(ld, label, sizeof(label)), key, value);
            return;
        }
    }
    free(*slot);
    *slot = strdup(value);
    if (*slot == NULL) {
        report_oom(ld);
        return;
    }
    if (is_user) {
        ld->cfg->user_line = ld->line;
    } else {
        ld->cfg->group_line = ld->line;
    }
}

/* workers = auto | N. */
static void
set_workers(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];
    uint64_t v;
    size_t n = parse_digits(value, &v);

    (void)kw;
    if (strcmp(value, "auto") == 0) {
        ld->cfg->workers = 0;
        ld->workers_line = ld->line;
        return;
    }
    if (n == 0 || value[n] != '\0' || v < 1 || v > SR_CONFIG_WORKERS_MAX) {
        report(ld, ld->line, "%s: %s: bad value '%s' (auto, or 1..%u)",
               section_label(ld, label, sizeof(label)), key, value, SR_CONFIG_WORKERS_MAX);
        return;
    }
    ld->cfg->workers = (uint32_t)v;
    ld->workers_line = ld->line;
}

static void
set_watch(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "yes") == 0 || strcmp(value, "no") == 0) {
        ld->cfg->is_watched = value[0] == 'y';
        return;
    }
    report(ld, ld->line, "%s: %s: bad value '%s' (yes or no)",
           section_label(ld, label, sizeof(label)), key, value);
}

/* kernel_relay = off | auto | sockmap. */
static void
set_kernel_relay(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "off") == 0) {
        ld->cfg->kernel_relay = SR_KERNEL_RELAY_OFF;
    } else if (strcmp(value, "auto") == 0) {
        ld->cfg->kernel_relay = SR_KERNEL_RELAY_AUTO;
    } else if (strcmp(value, "sockmap") == 0) {
        ld->cfg->kernel_relay = SR_KERNEL_RELAY_SOCKMAP;
    } else {
        report(ld, ld->line, "%s: %s: bad value '%s' (off, auto or sockmap)",
               section_label(ld, label, sizeof(label)), key, value);
    }
}

static void
set_log_format(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "text") == 0) {
        ld->cfg->log_format = SR_LOG_FORMAT_TEXT;
    } else if (strcmp(value, "json") == 0) {
        ld->cfg->log_format = SR_LOG_FORMAT_JSON;
    } else {
        report(ld, ld->line, "%s: %s: bad value '%s' (text or json)",
               section_label(ld, label, sizeof(label)), key, value);
    }
}

static void
set_admin(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];
    enum sr_addr_error err;
    struct sr_addr addr;

    (void)kw;
    err = sr_addr_parse_listen(value, strlen(value), &addr);
    if (err != SR_ADDR_OK) {
        report(ld, ld->line, "%s: %s: bad address '%s': %s",
               section_label(ld, label, sizeof(label)), key, value, sr_addr_error_str(err));
        return;
    }
    if (addr.kind == SR_ADDR_NAME) {
        report(ld, ld->line,
               "%s: %s: '%s' is a host name (use an IP literal, as in 127.0.0.1:9090)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    ld->cfg->admin = addr;
    ld->cfg->has_admin = true;
}

static void
set_listen(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    struct listener_tmp *lt = &ld->ltmp[ld->sec_index];
    char label[LABEL_MAX];
    char at[WHERE_MAX];
    enum sr_addr_error err;
    struct sr_addr addr;
    size_t i;

    (void)kw;
    (void)key;
    lt->n_listen_keys++;
    err = sr_addr_parse_listen(value, strlen(value), &addr);
    if (err != SR_ADDR_OK) {
        report(ld, ld->line, "%s: bad listen address '%s': %s",
               section_label(ld, label, sizeof(label)), value, sr_addr_error_str(err));
        return;
    }
    if (addr.kind == SR_ADDR_NAME) {
        report(ld, ld->line,
               "%s: listen address '%s' is a host name (use an IPv4 or IPv6 literal, as in "
               "0.0.0.0:8443 or [::]:8443)",
               section_label(ld, label, sizeof(label)), value);
        return;
    }
    /* Port 0 asks the kernel for a free port, different each time: never a clash. Another
     * listener's address is checked when this section ends (sr__config_end_section): a
     * TCP and a QUIC listener may share one. */
    for (i = 0; i < ld->n_listens && addr.port != 0; i++) {
        if (ld->listens[i].listener == ld->sec_index && is_same_addr(&ld->listens[i].addr, &addr)) {
            report(ld, ld->line, "%s: listen address '%s' already used (first at %s)",
                   section_label(ld, label, sizeof(label)), value,
                   where(ld, ld->listens[i].line, at, sizeof(at)));
            return;
        }
    }
    if (!grow(ld, (void **)&ld->listens, &ld->listens_cap, ld->n_listens + 1,
              sizeof(*ld->listens)) ||
        !grow(ld, (void **)&l->listen, &lt->listen_cap, l->n_listen + 1, sizeof(*l->listen))) {
        return;
    }
    ld->listens[ld->n_listens].addr = addr;
    ld->listens[ld->n_listens].line = ld->line;
    ld->listens[ld->n_listens].listener = ld->sec_index;
    ld->n_listens++;
    l->listen[l->n_listen++] = addr;
}

static void
set_listener_routes(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct listener_tmp *lt = &ld->ltmp[ld->sec_index];

    (void)kw;
    lt->routes_line = ld->line;
    if (is_empty(ld, key, value)) {
        return;
    }
    snprintf(lt->routes, sizeof(lt->routes), "%s", value);
}

static void
set_no_sni(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "default") == 0) {
        l->no_sni = SR_NO_SNI_DEFAULT;
    } else if (strcmp(value, "reject") == 0) {
        l->no_sni = SR_NO_SNI_REJECT;
    } else {
        report(ld, ld->line, "%s: %s: bad value '%s' (default or reject)",
               section_label(ld, label, sizeof(label)), key, value);
    }
}

static void
set_server(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_pool_config *pc = &ld->cfg->pools[ld->sec_index];
    size_t *cap = &ld->pool_servers_cap[ld->sec_index];
    char label[LABEL_MAX];
    enum sr_addr_error err;
    struct sr_addr addr;
    size_t i;

    (void)kw;
    section_label(ld, label, sizeof(label));
    err = sr_addr_parse(value, strlen(value), &addr);
    if (err != SR_ADDR_OK) {
        report(ld, ld->line, "%s: %s: bad address '%s': %s", label, key, value,
               sr_addr_error_str(err));
        return;
    }
    for (i = 0; i < pc->n_servers; i++) {
        if (is_same_addr(&pc->servers[i], &addr)) {
            report(ld, ld->line, "%s: %s: '%s' listed twice", label, key, value);
            return;
        }
    }
    if (pc->n_servers == SR_POOL_MAX_SERVERS) {
        report(ld, ld->line, "%s: %s: more than %d servers", label, key, SR_POOL_MAX_SERVERS);
        return;
    }
    if (!grow(ld, (void **)&pc->servers, cap, pc->n_servers + 1, sizeof(*pc->servers))) {
        return;
    }
    pc->servers[pc->n_servers++] = addr;
}

static void
set_balance(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    (void)kw;
    if (sr_pool_balance_parse(value, strlen(value), &ld->cfg->pools[ld->sec_index].balance) !=
        SR_POOL_OK) {
        report(ld, ld->line,
               "%s: %s: bad value '%s' (round_robin, least_conn, random_two or source_hash)",
               section_label(ld, label, sizeof(label)), key, value);
    }
}

/* proxy_protocol: v1 | v2 | none in [upstream]; accept | none in [listener]. */
static void
set_proxy_protocol(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    if (kw->section == SEC_LISTENER) {
        if (strcmp(value, "accept") == 0 || strcmp(value, "none") == 0) {
            ld->cfg->listeners[ld->sec_index].is_proxy_accepted = value[0] == 'a';
            ld->ltmp[ld->sec_index].proxy_accept_line = value[0] == 'a' ? ld->line : 0;
            return;
        }
        report(ld, ld->line, "%s: %s: bad value '%s' (accept or none)",
               section_label(ld, label, sizeof(label)), key, value);
        return;
    }
    if (strcmp(value, "v1") == 0) {
        ld->cfg->pools[ld->sec_index].proxy_protocol = SR_PROXY_PROTOCOL_V1;
    } else if (strcmp(value, "v2") == 0) {
        ld->cfg->pools[ld->sec_index].proxy_protocol = SR_PROXY_PROTOCOL_V2;
    } else if (strcmp(value, "none") == 0) {
        ld->cfg->pools[ld->sec_index].proxy_protocol = SR_PROXY_PROTOCOL_NONE;
    } else {
        report(ld, ld->line, "%s: %s: bad value '%s' (v1, v2 or none)",
               section_label(ld, label, sizeof(label)), key, value);
    }
}

/* trusted_proxies: CIDRs separated by spaces or commas; the key may repeat (lines are
 * short: inih allows 199 bytes). */
static void
set_trusted_proxies(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_cidr_list *list = &ld->cfg->listeners[ld->sec_index].trusted_proxies;
    size_t *cap = &ld->trusted_cap[ld->sec_index];
    char label[LABEL_MAX];
    const char *p = value;

    (void)kw;
    section_label(ld, label, sizeof(label));
    if (is_empty(ld, key, value)) {
        return;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, " ,\t");
        enum sr_cidr_error err;
        struct sr_cidr cidr;
        char shown[SR_CIDR_TEXT_MAX];

        if (len == 0) {
            p++;
            continue;
        }
        err = sr_cidr_parse(p, len, &cidr);
        if (err == SR_CIDR_HOST_BITS && sr_cidr_format(&cidr, shown, sizeof(shown)) > 0) {
            report(ld, ld->line, "%s: %s: '%.*s': %s (did you mean %s?)", label, key, (int)len, p,
                   sr_cidr_error_str(err), shown);
        } else if (err != SR_CIDR_OK) {
            report(ld, ld->line, "%s: %s: '%.*s': %s", label, key, (int)len, p,
                   sr_cidr_error_str(err));
        } else if (grow(ld, (void **)&list->items, cap, list->n + 1, sizeof(*list->items))) {
            list->items[list->n++] = cidr;
        }
        p += len;
    }
}

/* allow = CIDR and deny = CIDR (access.h) in [listener] and [upstream]: one or more ranges
 * separated by spaces or commas, a bare address being one host; the keys may repeat. */
static void
set_access(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    bool is_listener = kw->section == SEC_LISTENER;
    struct sr_access_list *acl = is_listener ? &ld->cfg->listeners[ld->sec_index].access
                                             : &ld->cfg->pools[ld->sec_index].access;
    const char *name =
        is_listener ? ld->cfg->listeners[ld->sec_index].name : ld->cfg->pools[ld->sec_index].name;
    enum sr_access_kind kind = key[0] == 'a' ? SR_ACCESS_ALLOW : SR_ACCESS_DENY;
    char label[LABEL_MAX];
    const char *p = value;

    section_label(ld, label, sizeof(label));
    if (is_empty(ld, key, value)) {
        return;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, " ,\t");
        enum sr_cidr_error err;
        enum sr_access_error aerr;
        struct sr_cidr cidr;
        char shown[SR_CIDR_TEXT_MAX + 1];

        if (len == 0) {
            p++;
            continue;
        }
        err = sr_cidr_parse(p, len, &cidr);
        if (err == SR_CIDR_HOST_BITS && sr_cidr_format(&cidr, shown, sizeof(shown)) > 0) {
            report(ld, ld->line, "%s: %s: '%.*s': %s (did you mean %s?)", label, key, (int)len, p,
                   sr_cidr_error_str(err), shown);
        } else if (err != SR_CIDR_OK) {
            report(ld, ld->line, "%s: %s: '%.*s': %s", label, key, (int)len, p,
                   sr_cidr_error_str(err));
        } else {
            aerr = sr_access_add(acl, kind, &cidr, ld->line, is_listener ? "listener" : "upstream",
                                 name);
            if (aerr == SR_ACCESS_FULL) {
                report(ld, ld->line, "%s: %s: more than %d allow and deny ranges in one section",
                       label, key, SR_ACCESS_RULES_MAX);
                return;
            }
            if (aerr != SR_ACCESS_OK) {
                report_oom(ld);
                return;
            }
        }
        p += len;
    }
}

/* protocol = tls | http | quic. */
static void
set_protocol(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "tls") == 0 || strcmp(value, "http") == 0 || strcmp(value, "quic") == 0) {
        l->is_http = value[0] == 'h';
        l->is_quic = value[0] == 'q';
        return;
    }
    report(ld, ld->line, "%s: %s: bad value '%s' (tls, http or quic)",
           section_label(ld, label, sizeof(label)), key, value);
}

/* fallback = TARGET: where a listener sends connections that do not start with TLS. */
static void
set_fallback(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    uint32_t target;

    (void)kw;
    ld->ltmp[ld->sec_index].fallback_line = ld->line;
    target = sr__config_intern_target(ld, value, key, false);
    if (target != UINT32_MAX) {
        l->fallback = (size_t)target + 1;
    }
}

static const struct keyword keywords[] = {
    {SEC_SNIROUTE, "hello_timeout", set_duration, offsetof(struct sr_config, hello_timeout_ms),
     false},
    {SEC_SNIROUTE, "connect_timeout", set_duration, offsetof(struct sr_config, connect_timeout_ms),
     false},
    {SEC_SNIROUTE, "idle_timeout", set_duration, offsetof(struct sr_config, idle_timeout_ms),
     false},
    {SEC_SNIROUTE, "drain_timeout", set_duration, offsetof(struct sr_config, drain_timeout_ms),
     false},
    {SEC_SNIROUTE, "max_hello_size", set_size, offsetof(struct sr_config, max_hello_size), false},
    {SEC_SNIROUTE, "access_log", set_access_log, 0, false},
    {SEC_SNIROUTE, "watch", set_watch, 0, false},
    {SEC_SNIROUTE, "workers", set_workers, 0, false},
    {SEC_SNIROUTE, "log_format", set_log_format, 0, false},
    {SEC_SNIROUTE, "kernel_relay", set_kernel_relay, 0, false},
    {SEC_SNIROUTE, "admin", set_admin, 0, false},
    {SEC_SNIROUTE, "user", set_account, 0, false},
    {SEC_SNIROUTE, "group", set_account, 0, false},
    {SEC_SNIROUTE, "max_connections", set_count, offsetof(struct sr_config, max_connections),
     false},
    {SEC_SNIROUTE, "max_connections_per_ip", set_count,
     offsetof(struct sr_config, max_connections_per_ip), false},
    {SEC_SNIROUTE, "quic_idle_timeout", set_duration,
     offsetof(struct sr_config, quic_idle_timeout_ms), false},
    {SEC_SNIROUTE, "max_quic_flows", set_count, offsetof(struct sr_config, max_quic_flows), false},
    {SEC_SNIROUTE, "max_quic_flows_per_ip", set_count,
     offsetof(struct sr_config, max_quic_flows_per_ip), false},
    {SEC_SNIROUTE, "quic_hold_bytes", set_size, offsetof(struct sr_config, quic_hold_bytes), false},
    {SEC_SNIROUTE, "rate_limit_entries", set_rate_entries, 0, false},
    {SEC_LISTENER, "listen", set_listen, 0, true},
    {SEC_LISTENER, "routes", set_listener_routes, 0, false},
    {SEC_LISTENER, "no_sni", set_no_sni, 0, false},
    {SEC_LISTENER, "max_connections", set_count,
     offsetof(struct sr_listener_config, max_connections), false},
    {SEC_LISTENER, "proxy_protocol", set_proxy_protocol, 0, false},
    {SEC_LISTENER, "protocol", set_protocol, 0, false},
    {SEC_LISTENER, "fallback", set_fallback, 0, false},
    {SEC_LISTENER, "fallback_timeout", set_duration,
     offsetof(struct sr_listener_config, fallback_timeout_ms), false},
    {SEC_LISTENER, "trusted_proxies", set_trusted_proxies, 0, true},
    {SEC_LISTENER, "max_new_connections_per_ip", set_rate, 0, false},
    {SEC_LISTENER, "allow", set_access, 0, true},
    {SEC_LISTENER, "deny", set_access, 0, true},
    {SEC_UPSTREAM, "server", set_server, 0, true},
    {SEC_UPSTREAM, "balance", set_balance, 0, false},
    {SEC_UPSTREAM, "proxy_protocol", set_proxy_protocol, 0, false},
    {SEC_UPSTREAM, "health_check", set_duration, offsetof(struct sr_pool_config, health_check_ms),
     false},
    {SEC_UPSTREAM, "allow", set_access, 0, true},
    {SEC_UPSTREAM, "deny", set_access, 0, true},
    {SEC_ROUTES, "include", sr__config_set_include, 0, true},
    {SEC_ROUTES, NULL, sr__config_set_route, 0, true},
};

_Static_assert(sizeof(keywords) / sizeof(keywords[0]) <=
                   sizeof(((struct loader *)0)->seen) / sizeof(unsigned),
               "loader.seen must have a slot per keyword");

int
sr__config_on_key(void *user, const char *section, const char *key, const char *value)
{
    struct loader *ld = user;
    char label[LABEL_MAX];
    char at[WHERE_MAX];
    size_t i;

    (void)section; /* our reader tracks sections; inih truncates long names */
    if (ld->sec == SEC_SKIP) {
        return 1;
    }
    if (ld->sec == SEC_NONE) {
        report(ld, ld->line, "key '%s' outside any section", key);
        return 1;
    }
    /* The section's label is formatted only for a message: a [routes] section may have
     * millions of keys. */
    if (ld->is_continuation) {
        report(ld, ld->line, "%s: duplicate key '%s' " HINT_INDENT,
               section_label(ld, label, sizeof(label)), ld->prev_key);
        return 1;
    }
    if (key[0] == '\0') {
        report(ld, ld->line, "%s: empty key", section_label(ld, label, sizeof(label)));
        return 1;
    }
    for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
        if (keywords[i].section == ld->sec &&
            (keywords[i].key == NULL || strcmp(keywords[i].key, key) == 0)) {
            break;
        }
    }
    if (i == sizeof(keywords) / sizeof(keywords[0])) {
        report(ld, ld->line, "%s: unknown key '%s'", section_label(ld, label, sizeof(label)), key);
        return 1;
    }
    if (!keywords[i].is_repeatable) {
        if (ld->seen[i] != 0) {
            report(ld, ld->line, "%s: duplicate key '%s' (first at %s)",
                   section_label(ld, label, sizeof(label)), key,
                   where(ld, ld->seen[i], at, sizeof(at)));
            return 1;
        }
        ld->seen[i] = ld->line;
    }
    keywords[i].set(ld, &keywords[i], key, value);
    return 1; /* problems are reported above; inih must not count them again */
}
