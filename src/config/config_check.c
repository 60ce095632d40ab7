/* SPDX-License-Identifier: MIT */
/* The config loader's checks that need the whole file, run once the reader is done: missing
 * keys and sections, "routes =" and pool names resolved, options that need each other. And
 * sr_config_fini(). Not here: reading the file or
 * parsing a value (config_reader.c, config_keys.c), which leave in struct loader what these
 * checks need. */
#include "sniroute/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/route.h"

#include "config_loader.h"

/* Give back what doubling left unused: the lines live as long as the config. */
static void
shrink_lines(struct sr_route_lines *lines)
{
    struct sr_route_line *items;

    if (lines->n == 0 || lines->n == lines->cap) {
        return;
    }
    items = realloc(lines->items, lines->n * sizeof(*items));
    if (items != NULL) {
        lines->items = items;
        lines->cap = lines->n;
    }
}

/* One finding of sr__config_end_section(), reported in line order with the others. */
struct section_problem {
    unsigned line;
    unsigned first_line; /* a listen address: where another listener has it */
    const char *key;     /* a key that does not apply to protocol = quic; NULL: a listen */
    size_t listen;       /* a listen address: its index in ld->listens */
};

void
sr__config_end_section(struct loader *ld)
{
    struct section_problem found[8];
    struct section_problem *p;
    const struct sr_listener_config *l;
    const struct listener_tmp *lt;
    char text[SR_ADDR_HOST_MAX + 16];
    char at[WHERE_MAX];
    size_t n = 0;
    size_t i;
    size_t j;

    if (ld->sec != SEC_LISTENER) {
        return;
    }
    l = &ld->cfg->listeners[ld->sec_index];
    lt = &ld->ltmp[ld->sec_index];
    /* PROXY headers, a fallback for non-TLS bytes and connection limits are about TCP; a
     * QUIC flow has none of them. */
    if (l->is_quic) {
        static const char *const keys[] = {"fallback", "proxy_protocol = accept",
                                           "max_connections"};
        const unsigned lines[] = {lt->fallback_line, lt->proxy_accept_line,
                                  lt->max_connections_line};

        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (lines[i] != 0) {
                found[n].line = lines[i];
                found[n].key = keys[i];
                n++;
            }
        }
    }
    /* This section's addresses against earlier listeners of the same transport (TCP for
     * tls and http, UDP for quic); within the section they were checked as they came. */
    for (i = 0; i < ld->n_listens; i++) {
        if (ld->listens[i].listener != ld->sec_index || ld->listens[i].addr.port == 0) {
            continue;
        }
        for (j = 0; j < i; j++) {
            const struct listen_seen *other = &ld->listens[j];

            if (other->listener != ld->sec_index &&
                ld->cfg->listeners[other->listener].is_quic == l->is_quic &&
                is_same_addr(&other->addr, &ld->listens[i].addr)) {
                break;
            }
        }
        if (j < i) {
            p = n < sizeof(found) / sizeof(found[0]) ? &found[n++] : NULL;
            if (p == NULL) {
                sr_addr_format(&ld->listens[i].addr, text, sizeof(text));
                report(ld, ld->listens[i].line,
                       "listener '%s': listen address '%s' already used (first at %s)", l->name,
                       text, where(ld, ld->listens[j].line, at, sizeof(at)));
                continue;
            }
            p->line = ld->listens[i].line;
            p->first_line = ld->listens[j].line;
            p->key = NULL;
            p->listen = i;
        }
    }
    /* A few findings at most: an insertion sort puts them in line order. */
    for (i = 1; i < n; i++) {
        struct section_problem tmp = found[i];

        for (j = i; j > 0 && found[j - 1].line > tmp.line; j--) {
            found[j] = found[j - 1];
        }
        found[j] = tmp;
    }
    for (i = 0; i < n; i++) {
        p = &found[i];
        if (p->key != NULL) {
            report(ld, p->line,
                   "listener '%s': %s does not apply to protocol = quic (a TCP listener's "
                   "option)",
                   l->name, p->key);
        } else {
            sr_addr_format(&ld->listens[p->listen].addr, text, sizeof(text));
            report(ld, p->line, "listener '%s': listen address '%s' already used (first at %s)",
                   l->name, text, where(ld, p->first_line, at, sizeof(at)));
        }
    }
}

void
sr__config_finish(struct loader *ld)
{
    struct sr_config *cfg = ld->cfg;
    size_t i;
    size_t j;

    if (cfg->n_listeners == 0) {
        report(ld, 0, "no [listener NAME] section (at least one is required)");
    }
    /* Every worker binds the same address: a port the kernel picks would differ. */
    for (i = 0; i < cfg->n_listeners && cfg->workers != 1; i++) {
        for (j = 0; j < cfg->listeners[i].n_listen; j++) {
            if (cfg->listeners[i].listen[j].port == 0) {
                report(ld, ld->workers_line,
                       "sniroute: workers: listener '%s' listens on port 0, which needs "
                       "workers = 1",
                       cfg->listeners[i].name);
                break;
            }
        }
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        struct sr_listener_config *l = &cfg->listeners[i];
        struct listener_tmp *lt = &ld->ltmp[i];

        if (lt->n_listen_keys == 0) {
            report(ld, l->line, "listener '%s': no listen address", l->name);
        }
        if (lt->routes_line == 0) {
            report(ld, l->line, "listener '%s': missing key 'routes'", l->name);
            continue;
        }
        if (lt->routes[0] == '\0') {
            continue; /* "routes =" was reported as empty */
        }
        for (j = 0; j < cfg->n_routes; j++) {
            if (strcmp(cfg->routes[j].name, lt->routes) == 0) {
                break;
            }
        }
        if (j == cfg->n_routes) {
            report(ld, lt->routes_line, "listener '%s': no [routes %s] section", l->name,
                   lt->routes);
        } else {
            l->routes = j;
        }
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        struct sr_listener_config *l = &cfg->listeners[i];

        /* Accepting PROXY headers from anyone would let anyone claim any address. */
        if (l->is_proxy_accepted && l->trusted_proxies.n == 0) {
            report(ld, l->line,
                   "listener '%s': proxy_protocol = accept needs trusted_proxies (the CIDRs "
                   "of the load balancers in front)",
                   l->name);
        }
        if (l->fallback_timeout_ms != 0 && l->fallback == 0) {
            report(ld, l->line, "listener '%s': fallback_timeout without fallback", l->name);
        }
        if (!l->is_proxy_accepted && l->trusted_proxies.n > 0) {
            report(ld, l->line, "listener '%s': trusted_proxies without proxy_protocol = accept",
                   l->name);
        }
    }
    for (i = 0; i < cfg->n_pools; i++) {
        if (cfg->pools[i].n_servers == 0) {
            report(ld, cfg->pools[i].line, "upstream '%s': no server (add server = HOST:PORT)",
                   cfg->pools[i].name);
        }
    }
    for (i = 0; i < ld->n_pool_refs; i++) {
        const struct pool_ref *ref = &ld->pool_refs[i];

        for (j = 0; j < cfg->n_pools; j++) {
            if (strcmp(cfg->pools[j].name, ref->name) == 0) {
                cfg->upstreams[ref->upstream].pool = j + 1;
                break;
            }
        }
        if (j == cfg->n_pools) {
            report(ld, ref->line, "%s: bad upstream '%s': missing ':port' (or no [upstream %s])",
                   ref->where, ref->name, ref->name);
        }
    }
    for (i = 0; i < cfg->n_routes; i++) {
        struct routes_tmp *rt = &ld->rtmp[i];

        /* An empty map refuses every connection: surely a mistake, not a way to say so. */
        if (rt->n_keys == 0) {
            report(ld, cfg->routes[i].line,
                   "routes '%s': no routes (add at least one, or a default = HOST:PORT)",
                   cfg->routes[i].name);
        }
        shrink_lines(&cfg->routes[i].lines);
        for (j = 0; j < cfg->routes[i].n_alpn; j++) {
            shrink_lines(&cfg->routes[i].alpn[j].lines);
        }
    }
}

void
sr_config_fini(struct sr_config *cfg)
{
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].listen);
        free(cfg->listeners[i].trusted_proxies.items);
        sr_access_fini(&cfg->listeners[i].access);
    }
    free(cfg->listeners);
    for (i = 0; i < cfg->n_routes; i++) {
        sr_route_table_free(cfg->routes[i].table);
        free(cfg->routes[i].lines.items);
        for (size_t k = 0; k < cfg->routes[i].n_alpn; k++) {
            sr_route_table_free(cfg->routes[i].alpn[k].table);
            free(cfg->routes[i].alpn[k].lines.items);
        }
        free(cfg->routes[i].alpn);
    }
    free(cfg->routes);
    free(cfg->upstreams);
    for (i = 0; i < cfg->n_pools; i++) {
        free(cfg->pools[i].servers);
        sr_access_fini(&cfg->pools[i].access);
    }
    free(cfg->pools);
    for (i = 0; i < cfg->n_files; i++) {
        free(cfg->files[i]);
    }
    free(cfg->files);
    free(cfg->spans);
    for (i = 0; i < cfg->n_includes; i++) {
        free(cfg->includes[i].pattern);
        free(cfg->includes[i].dir);
    }
    free(cfg->includes);
    free(cfg->access_log);
    free(cfg->user);
    free(cfg->group);
    memset(cfg, 0, sizeof(*cfg));
}
