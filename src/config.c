/* SPDX-License-Identifier: MIT */
/* The configuration loader. inih splits lines into key/value pairs; our reader in front of
 * it counts lines, refuses lines too long for inih's buffer and every line inih would
 * reject, and tracks sections itself (inih calls no handler for a section, and truncates
 * long names). The lines of [routes] sections, which may number millions, the reader splits
 * itself, the same way (see hand_over). A keyword table dispatches each key to a setter.
 * Every problem becomes one "FILE:LINE: ..." message and loading always reads to the end.
 * Nothing is bound or resolved here. */
#include "sniroute/config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "sniroute/addr.h"
#include "sniroute/name.h"
#include "sniroute/route.h"

#include "config_loader.h"

/* The reader below mirrors how inih classifies a line; it is written for these settings
 * (Debian's build of r55). A different build must be looked at, not silently misread. */
#if INI_HANDLER_LINENO || INI_ALLOW_NO_VALUE || INI_CALL_HANDLER_ON_NEW_SECTION ||                 \
    !INI_ALLOW_MULTILINE || !INI_ALLOW_INLINE_COMMENTS
#error "config.c mirrors inih with multi-line values and inline comments on, nothing else"
#endif

#define HINT_INDENT "(an indented line continues the previous value; remove the indentation)"

/* The reader's read-ahead, in bytes: big enough that a multi-megabyte route map costs a
 * few hundred reads, small enough not to matter for a small config. */
#define READ_BLOCK (256u * 1024)

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

static void
set_size(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
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
    if (v < SR_CONFIG_MAX_HELLO_SIZE_MIN || v > SR_CONFIG_MAX_HELLO_SIZE_MAX) {
        report(ld, ld->line, "%s: %s: bad size '%s' (must be %u..%u bytes)",
               section_label(ld, label, sizeof(label)), key, value, SR_CONFIG_MAX_HELLO_SIZE_MIN,
               SR_CONFIG_MAX_HELLO_SIZE_MAX);
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
    *(uint32_t *)(void *)(section_base(ld, kw) + kw->offset) = (uint32_t)v;
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
    /* Port 0 asks the kernel for a free port, different each time: never a clash. */
    for (i = 0; i < ld->n_listens && addr.port != 0; i++) {
        if (is_same_addr(&ld->listens[i].addr, &addr)) {
            report(ld, ld->line, "%s: listen address '%s' already used (first at %s:%u)",
                   section_label(ld, label, sizeof(label)), value, ld->path, ld->listens[i].line);
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

/* protocol = tls | http. */
static void
set_protocol(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    char label[LABEL_MAX];

    (void)kw;
    if (strcmp(value, "tls") == 0 || strcmp(value, "http") == 0) {
        ld->cfg->listeners[ld->sec_index].is_http = value[0] == 'h';
        return;
    }
    report(ld, ld->line, "%s: %s: bad value '%s' (tls or http)",
           section_label(ld, label, sizeof(label)), key, value);
}

/* fallback = TARGET: where a listener sends connections that do not start with TLS. */
static void
set_fallback(struct loader *ld, const struct keyword *kw, const char *key, const char *value)
{
    struct sr_listener_config *l = &ld->cfg->listeners[ld->sec_index];
    uint32_t target;

    (void)kw;
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
    {SEC_SNIROUTE, "admin", set_admin, 0, false},
    {SEC_SNIROUTE, "user", set_account, 0, false},
    {SEC_SNIROUTE, "group", set_account, 0, false},
    {SEC_SNIROUTE, "max_connections", set_count, offsetof(struct sr_config, max_connections),
     false},
    {SEC_SNIROUTE, "max_connections_per_ip", set_count,
     offsetof(struct sr_config, max_connections_per_ip), false},
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
    {SEC_UPSTREAM, "server", set_server, 0, true},
    {SEC_UPSTREAM, "balance", set_balance, 0, false},
    {SEC_UPSTREAM, "proxy_protocol", set_proxy_protocol, 0, false},
    {SEC_UPSTREAM, "health_check", set_duration, offsetof(struct sr_pool_config, health_check_ms),
     false},
    {SEC_ROUTES, NULL, sr__config_set_route, 0, true},
};

_Static_assert(sizeof(keywords) / sizeof(keywords[0]) <=
                   sizeof(((struct loader *)0)->seen) / sizeof(unsigned),
               "loader.seen must have a slot per keyword");

/* ---- Sections ---- */

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == '\n';
}

/* The reader found "[<text>/<len>]" on the current line. */
static void
begin_section(struct loader *ld, const char *text, size_t len)
{
    struct sr_config *cfg = ld->cfg;
    const char *name;
    size_t kind_len;
    size_t name_len;
    size_t i;
    bool is_listener;
    bool is_upstream;

    memset(ld->seen, 0, sizeof(ld->seen));
    ld->sec = SEC_SKIP;
    while (len > 0 && is_blank(text[0])) {
        text++;
        len--;
    }
    while (len > 0 && is_blank(text[len - 1])) {
        len--;
    }
    for (kind_len = 0; kind_len < len && !is_blank(text[kind_len]); kind_len++) {
    }
    name = text + kind_len;
    name_len = len - kind_len;
    while (name_len > 0 && is_blank(name[0])) {
        name++;
        name_len--;
    }

    if (kind_len == 8 && memcmp(text, "sniroute", 8) == 0 && name_len == 0) {
        if (ld->sniroute_line != 0) {
            report(ld, ld->line, "duplicate section [sniroute] (first at %s:%u)", ld->path,
                   ld->sniroute_line);
            return;
        }
        ld->sniroute_line = ld->line;
        ld->sec = SEC_SNIROUTE;
        return;
    }
    is_upstream = kind_len == 8 && memcmp(text, "upstream", 8) == 0;
    if (!((kind_len == 8 && memcmp(text, "listener", 8) == 0) ||
          (kind_len == 6 && memcmp(text, "routes", 6) == 0) || is_upstream)) {
        report(ld, ld->line,
               "unknown section [%.*s] (want [sniroute], [listener NAME], [routes NAME] or "
               "[upstream NAME])",
               (int)len, text);
        return;
    }
    is_listener = kind_len == 8 && !is_upstream;
    if (name_len == 0) {
        report(ld, ld->line, "section [%.*s] needs a name, as in [%.*s NAME]", (int)kind_len, text,
               (int)kind_len, text);
        return;
    }
    if (!is_valid_section_name(name, name_len)) {
        report(ld, ld->line, "bad %.*s name '%.*s' (1 to %d of A-Z a-z 0-9 _ -)", (int)kind_len,
               text, (int)name_len, name, SR_CONFIG_NAME_MAX);
        return;
    }
    if (is_upstream) {
        for (i = 0; i < cfg->n_pools; i++) {
            if (strlen(cfg->pools[i].name) == name_len &&
                memcmp(cfg->pools[i].name, name, name_len) == 0) {
                report(ld, ld->line, "duplicate upstream '%.*s' (first at %s:%u)", (int)name_len,
                       name, ld->path, cfg->pools[i].line);
                return;
            }
        }
        if (!grow(ld, (void **)&cfg->pools, &ld->pools_cap, cfg->n_pools + 1,
                  sizeof(*cfg->pools)) ||
            !grow(ld, (void **)&ld->pool_servers_cap, &ld->pool_servers_cap_n, cfg->n_pools + 1,
                  sizeof(*ld->pool_servers_cap))) {
            return;
        }
        memcpy(cfg->pools[cfg->n_pools].name, name, name_len);
        cfg->pools[cfg->n_pools].line = ld->line;
        ld->sec = SEC_UPSTREAM;
        ld->sec_index = cfg->n_pools++;
        return;
    }
    if (is_listener) {
        for (i = 0; i < cfg->n_listeners; i++) {
            if (strlen(cfg->listeners[i].name) == name_len &&
                memcmp(cfg->listeners[i].name, name, name_len) == 0) {
                report(ld, ld->line, "duplicate listener '%.*s' (first at %s:%u)", (int)name_len,
                       name, ld->path, cfg->listeners[i].line);
                return;
            }
        }
        if (!grow(ld, (void **)&cfg->listeners, &ld->listeners_cap, cfg->n_listeners + 1,
                  sizeof(*cfg->listeners))) {
            return;
        }
        if (!grow(ld, (void **)&ld->ltmp, &ld->ltmp_cap, cfg->n_listeners + 1, sizeof(*ld->ltmp)) ||
            !grow(ld, (void **)&ld->trusted_cap, &ld->trusted_cap_n, cfg->n_listeners + 1,
                  sizeof(*ld->trusted_cap))) {
            return;
        }
        memcpy(cfg->listeners[cfg->n_listeners].name, name, name_len);
        cfg->listeners[cfg->n_listeners].line = ld->line;
        cfg->listeners[cfg->n_listeners].no_sni = SR_NO_SNI_DEFAULT;
        ld->sec = SEC_LISTENER;
        ld->sec_index = cfg->n_listeners++;
        return;
    }
    for (i = 0; i < cfg->n_routes; i++) {
        if (strlen(cfg->routes[i].name) == name_len &&
            memcmp(cfg->routes[i].name, name, name_len) == 0) {
            report(ld, ld->line, "duplicate routes '%.*s' (first at %s:%u)", (int)name_len, name,
                   ld->path, cfg->routes[i].line);
            return;
        }
    }
    if (!grow(ld, (void **)&cfg->routes, &ld->routes_cap, cfg->n_routes + 1,
              sizeof(*cfg->routes))) {
        return;
    }
    if (!grow(ld, (void **)&ld->rtmp, &ld->rtmp_cap, cfg->n_routes + 1, sizeof(*ld->rtmp))) {
        return;
    }
    cfg->routes[cfg->n_routes].table = sr_route_table_new();
    if (cfg->routes[cfg->n_routes].table == NULL) {
        report_oom(ld);
        return;
    }
    memcpy(cfg->routes[cfg->n_routes].name, name, name_len);
    cfg->routes[cfg->n_routes].line = ld->line;
    ld->sec = SEC_ROUTES;
    ld->sec_index = cfg->n_routes++;
}

/* ---- The reader and the handler ---- */

/* Whether <c> is one of the bytes of <set>; unlike strchr(), never for '\0'. Inlined over
 * the constant sets below, so the reader costs no call per byte. */
static inline bool
is_one_of(char c, const char *set)
{
    for (; *set != '\0'; set++) {
        if (*set == c) {
            return true;
        }
    }
    return false;
}

/* inih's find_chars_or_comment(): the first of <chars> (at most 7 bytes) in <s>, or an
 * inline comment (a ';' after whitespace), or the end. strcspn() skips the bytes that can
 * be neither, many at a time; this runs over every key of the file. */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
    char stop[8 + sizeof(INI_INLINE_COMMENT_PREFIXES)];
    size_t n = strlen(chars);
    const char *p = s;

    assert(n < 8);
    memcpy(stop, chars, n);
    memcpy(stop + n, INI_INLINE_COMMENT_PREFIXES, sizeof(INI_INLINE_COMMENT_PREFIXES));
    for (;;) {
        p += strcspn(p, stop);
        if (*p == '\0' || is_one_of(*p, chars) || (p > s && is_blank(p[-1]))) {
            return p;
        }
        p++; /* a comment prefix not after whitespace is an ordinary byte */
    }
}

static int on_key(void *user, const char *section, const char *key, const char *value);

/* The lines of a [routes] section, the millions of a big route map, do not go through
 * inih: classify() splits them as inih would and calls the handler itself, then hands
 * inih a blank line. That saves inih's scan of each line again, a strchr() call per byte.
 * inih's state stays right: it saw the section header, so its previous key is "none",
 * and every continuation line in the section comes here too. */
static void
hand_over(struct loader *ld, char *str, const char *key, const char *value)
{
    on_key(ld, NULL, key, value);
    str[0] = '\0';
}

/* Look at the line in <str> (NUL-terminated, no line ending) the way inih is about to, and
 * replace any line inih would reject by one it accepts and that does nothing, after saying
 * what is wrong. So inih never stops to report an error we could not place, and every bad
 * line gets its own message. Sections are tracked here, since inih never tells the
 * handler about them. */
static void
classify(struct loader *ld, char *str)
{
    char *start = str;
    const char *end;
    char *sep;

    ld->is_continuation = false;
    while (is_blank(*start)) {
        start++;
    }
    if (*start == '\0' || is_one_of(*start, INI_START_COMMENT_PREFIXES)) {
        return; /* blank or comment */
    }
    if (ld->has_prev_key && start > str) {
        ld->is_continuation = true; /* inih passes it as another value of the previous key */
        if (ld->sec == SEC_ROUTES) {
            hand_over(ld, str, ld->prev_key, start); /* the handler ignores the value */
        }
        return;
    }
    if (*start == '[') {
        end = find_chars_or_comment(start + 1, "]");
        if (*end != ']') {
            report(ld, ld->line, "section header without ']'");
            ld->sec = SEC_SKIP; /* its keys are not the previous section's */
            strcpy(str, "[]");
        } else {
            const char *rest = end + 1;

            while (is_blank(*rest)) {
                rest++;
            }
            if (*rest != '\0' && !is_one_of(*rest, INI_START_COMMENT_PREFIXES)) {
                report(ld, ld->line, "unexpected text after ']'");
            }
            begin_section(ld, start + 1, (size_t)(end - start - 1));
        }
        ld->has_prev_key = false;
        return;
    }
    sep = (char *)find_chars_or_comment(start, "=:");
    if (*sep != '=' && *sep != ':') {
        report(ld, ld->line, "expected 'key = value' or '[section]'");
        str[0] = '\0';
        return;
    }
    end = sep;
    while (end > start && is_blank(end[-1])) {
        end--;
    }
    memcpy(ld->prev_key, start, (size_t)(end - start));
    ld->prev_key[end - start] = '\0';
    ld->has_prev_key = end > start; /* inih keeps an empty name, which means "none" */
    if (ld->sec == SEC_ROUTES) {
        /* inih's split of the value: up to an inline comment, whitespace trimmed. */
        char *value = sep + 1;
        char *value_end = (char *)find_chars_or_comment(value, "");

        *value_end = '\0';
        while (is_blank(*value)) {
            value++;
        }
        while (value_end > value && is_blank(value_end[-1])) {
            *--value_end = '\0';
        }
        hand_over(ld, str, ld->prev_key, value);
    }
}

/* Refill the read-ahead; returns false at the end of the file (or on a read error, which
 * load() reports through ferror()). */
static bool
fill(struct loader *ld)
{
    ld->in_pos = 0;
    ld->in_len = fread(ld->in, 1, READ_BLOCK, ld->fp);
    return ld->in_len > 0;
}

/* inih's reader: one physical line per call, however long. The line ends at '\n' or at
 * the end of the file; a '\r' just before either is part of the line ending and does not
 * count towards the length. */
static char *
read_line(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    size_t cap = (size_t)num - 1;
    size_t len = 0;   /* bytes of the line seen, line ending excluded */
    size_t n_str = 0; /* of which copied into <str>: at most <cap> */
    char last = '\0';
    bool is_long = false;
    bool has_nul = false;
    bool is_section = false;

    if (ld->in_pos == ld->in_len && !fill(ld)) {
        return NULL;
    }
    ld->line++;
    for (;;) {
        const char *seg = ld->in + ld->in_pos;
        size_t seg_len = ld->in_len - ld->in_pos;
        const char *nl = memchr(seg, '\n', seg_len);

        if (nl != NULL) {
            seg_len = (size_t)(nl - seg);
        }
        if (seg_len > 0) {
            size_t n = seg_len < cap - n_str ? seg_len : cap - n_str;

            memcpy(str + n_str, seg, n);
            n_str += n;
            len += seg_len;
            last = seg[seg_len - 1];
            has_nul = has_nul || memchr(seg, '\0', seg_len) != NULL;
        }
        ld->in_pos += seg_len + (nl != NULL ? 1 : 0);
        if (nl != NULL || (ld->in_pos == ld->in_len && !fill(ld))) {
            break;
        }
    }
    if (len > 0 && last == '\r') {
        len--; /* a CRLF line ending does not count towards the length */
        if (n_str > len) {
            n_str = len;
        }
    }
    is_long = len > cap;
    str[n_str] = '\0';
    len = n_str;
    if (ld->line == 1 && len >= 3 && memcmp(str, "\xEF\xBB\xBF", 3) == 0) {
        memmove(str, str + 3, len - 2); /* a UTF-8 byte-order mark; inih skips it too */
        len -= 3;
    }
    if (!is_long && !has_nul) {
        classify(ld, str);
        return str;
    }
    /* Hand inih nothing of it. A section header it must have been (or tried to be) leads
     * into a section whose keys are ignored, not into the previous section. */
    ld->is_continuation = false;
    is_section = str[strspn(str, " \t")] == '[';
    if (is_long) {
        report(ld, ld->line, "line too long (max %zu bytes)", cap);
    } else {
        report(ld, ld->line, "NUL byte in line");
    }
    if (is_section) {
        ld->sec = SEC_SKIP;
        strcpy(str, "[]");
        ld->has_prev_key = false;
    } else {
        str[0] = '\0';
    }
    return str;
}

static int
on_key(void *user, const char *section, const char *key, const char *value)
{
    struct loader *ld = user;
    char label[LABEL_MAX];
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
            report(ld, ld->line, "%s: duplicate key '%s' (first at %s:%u)",
                   section_label(ld, label, sizeof(label)), key, ld->path, ld->seen[i]);
            return 1;
        }
        ld->seen[i] = ld->line;
    }
    keywords[i].set(ld, &keywords[i], key, value);
    return 1; /* problems are reported above; inih must not count them again */
}

/* Both entry points: <fp> is the open file, or NULL when opening <name> failed with
 * <open_errno> (the defaults still go into <cfg>, so the caller sees the same struct). */
static size_t
load(struct sr_config *cfg, FILE *fp, int open_errno, const char *name, sr_config_error_fn on_error,
     void *ctx)
{
    struct loader ld;
    size_t i;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    cfg->hello_timeout_ms = SR_CONFIG_HELLO_TIMEOUT_MS;
    cfg->connect_timeout_ms = SR_CONFIG_CONNECT_TIMEOUT_MS;
    cfg->idle_timeout_ms = SR_CONFIG_IDLE_TIMEOUT_MS;
    cfg->drain_timeout_ms = SR_CONFIG_DRAIN_TIMEOUT_MS;
    cfg->max_hello_size = SR_CONFIG_MAX_HELLO_SIZE;
    cfg->workers = 1;

    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.path = name;
    ld.fp = fp;
    ld.on_error = on_error;
    ld.ctx = ctx;
    ld.sec = SEC_NONE;

    cfg->access_log = strdup("stdout");
    if (cfg->access_log == NULL) {
        report_oom(&ld);
        return ld.n_errors;
    }
    if (fp == NULL) {
        report(&ld, 0, "cannot open: %s", strerror(open_errno));
        return ld.n_errors;
    }
    ld.in = malloc(READ_BLOCK);
    if (ld.in == NULL) {
        report_oom(&ld);
        return ld.n_errors;
    }
    rc = ini_parse_stream(read_line, &ld, on_key, &ld);
    if (ferror(ld.fp)) {
        report(&ld, 0, "read error: %s", strerror(errno));
    } else if (rc != 0) {
        /* The reader hands inih only lines it accepts, so this means the mirror is wrong. */
        report(&ld, rc > 0 ? (unsigned)rc : 0, "syntax error");
    }
    sr__config_finish(&ld);

    for (i = 0; i < cfg->n_routes; i++) {
        free(ld.rtmp[i].origin);
    }
    free(ld.rtmp);
    free(ld.ltmp);
    free(ld.in);
    free(ld.listens);
    free(ld.up_slots);
    free(ld.pool_refs);
    free(ld.pool_servers_cap);
    free(ld.trusted_cap);
    return ld.n_errors;
}

size_t
sr_config_load(struct sr_config *cfg, const char *path, sr_config_error_fn on_error, void *ctx)
{
    FILE *fp = fopen(path, "r");
    size_t n = load(cfg, fp, errno, path, on_error, ctx);

    if (fp != NULL) {
        fclose(fp);
    }
    return n;
}

size_t
sr_config_load_stream(struct sr_config *cfg, FILE *fp, const char *name,
                      sr_config_error_fn on_error, void *ctx)
{
    return load(cfg, fp, 0, name, on_error, ctx);
}
