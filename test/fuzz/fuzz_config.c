/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the config loader, and through it inih, the line reader, addr, name
 * and route. Loads the input twice from memory (fmemopen) and requires: every message is
 * "NAME:LINE: ..." with LINE within the input's lines, or the file-level "NAME: ...", with
 * no control bytes; the count returned equals the messages given; both loads say and build
 * exactly the same; a load that returns 0 is complete (every listener has an address and a
 * routes map, every route value names an upstream). sr_config_fini after each load lets
 * LeakSanitizer see anything the loader forgets. Then sr_addr_parse and sr_name_normalize
 * on the raw input. Deterministic: no clock, no global state survives a run.
 * Seeds: test/fuzz/corpus/config and test/fixtures/config. */
#include "sniroute/config/config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/addr.h"
#include "sniroute/wire/name.h"
#include "sniroute/config/route.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.ini"

/* Every message of one load, concatenated, one per line. */
struct messages {
    char *text;
    size_t len;
    size_t n;
    unsigned n_lines; /* lines in the input, as the loader counts them */
};

static void
on_error(void *ctx, const char *msg)
{
    struct messages *m = ctx;
    size_t len = strlen(msg);
    const char *p;
    char *end;
    unsigned long line;

    /* "NAME: text" (the file as a whole) or "NAME:LINE: text" with 1 <= LINE <= lines. */
    CHECK(strncmp(msg, NAME ":", sizeof(NAME)) == 0);
    p = msg + sizeof(NAME);
    if (*p == ' ') {
        CHECK(p[1] != '\0');
    } else {
        CHECK(*p >= '1' && *p <= '9');
        line = strtoul(p, &end, 10);
        CHECK(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
        CHECK(line >= 1 && line <= m->n_lines);
    }
    for (p = msg; *p != '\0'; p++) {
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    m->text = realloc(m->text, m->len + len + 2);
    CHECK(m->text != NULL);
    memcpy(m->text + m->len, msg, len);
    m->text[m->len + len] = '\n';
    m->len += len + 1;
    m->text[m->len] = '\0';
    m->n++;
}

static size_t
load(struct sr_config *cfg, const uint8_t *data, size_t size, struct messages *m)
{
    /* An exact-size copy, so ASan sees a read past the end; fmemopen wants size > 0 on
     * some libcs, hence the extra byte that is never part of the stream. */
    char *copy = malloc(size + 1);
    FILE *fp;
    size_t n;

    CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    fp = fmemopen(copy, size > 0 ? size : 1, "r");
    CHECK(fp != NULL);
    if (size == 0) {
        (void)getc(fp); /* leave it at EOF: the stream is the empty input */
    }
    n = sr_config_load_stream(cfg, fp, NAME, on_error, m);
    fclose(fp);
    free(copy);
    CHECK(n == m->n);
    return n;
}

/* Line count as the loader's reader sees it: '\n' ends a line, a last line needs none. */
static unsigned
count_lines(const uint8_t *data, size_t size)
{
    unsigned n = 0;
    size_t i;

    for (i = 0; i < size; i++) {
        n += data[i] == '\n';
    }
    return n + (size > 0 && data[size - 1] != '\n');
}

static bool
addr_eq(const struct sr_addr *a, const struct sr_addr *b)
{
    return a->kind == b->kind && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Look <name> up in <t>: the same answer from both loads, a value naming an upstream. */
static void
check_lookup(const struct sr_config *a, const struct sr_config *b, size_t r, const char *name)
{
    struct sr_route_hit ha;
    struct sr_route_hit hb;

    sr_route_lookup(a->routes[r].table, name, strlen(name), &ha);
    sr_route_lookup(b->routes[r].table, name, strlen(name), &hb);
    CHECK(ha.kind == hb.kind);
    if (ha.kind != SR_ROUTE_MISS) {
        CHECK(ha.value == hb.value && ha.value < a->n_upstreams);
    }
}

/* Two loads of the same bytes built the same thing. When <is_valid>, also complete. */
static void
check_same(const struct sr_config *a, const struct sr_config *b, bool is_valid)
{
    struct sr_route_hit hit;
    size_t i;
    size_t j;

    CHECK(a->hello_timeout_ms == b->hello_timeout_ms);
    CHECK(a->connect_timeout_ms == b->connect_timeout_ms);
    CHECK(a->idle_timeout_ms == b->idle_timeout_ms);
    CHECK(a->drain_timeout_ms == b->drain_timeout_ms);
    CHECK(a->max_hello_size == b->max_hello_size);
    CHECK(a->max_hello_size >= SR_CONFIG_MAX_HELLO_SIZE_MIN &&
          a->max_hello_size <= SR_CONFIG_MAX_HELLO_SIZE_MAX);
    CHECK(a->hello_timeout_ms > 0 && a->connect_timeout_ms > 0 && a->idle_timeout_ms > 0 &&
          a->drain_timeout_ms > 0);
    CHECK(a->access_log != NULL && b->access_log != NULL &&
          strcmp(a->access_log, b->access_log) == 0 && a->access_log[0] != '\0');
    CHECK(a->n_listeners == b->n_listeners);
    CHECK(a->n_routes == b->n_routes);
    CHECK(a->n_upstreams == b->n_upstreams);
    CHECK(a->n_pools == b->n_pools);
    for (i = 0; i < a->n_upstreams; i++) {
        CHECK(a->upstreams[i].pool == b->upstreams[i].pool);
        CHECK(addr_eq(&a->upstreams[i].addr, &b->upstreams[i].addr));
        if (a->upstreams[i].pool == 0) {
            /* An unresolved pool name leaves an empty target, but only in a failed load. */
            CHECK(a->upstreams[i].addr.port != 0 || !is_valid);
        } else if (is_valid) {
            /* A route naming a pool: the pool exists and has servers with ports. */
            const struct sr_pool_config *pc = &a->pools[a->upstreams[i].pool - 1];

            CHECK(a->upstreams[i].pool <= a->n_pools);
            CHECK(pc->n_servers >= 1 && pc->n_servers <= SR_POOL_MAX_SERVERS);
            for (j = 0; j < pc->n_servers; j++) {
                CHECK(pc->servers[j].port != 0);
            }
        }
    }
    for (i = 0; i < a->n_listeners; i++) {
        const struct sr_listener_config *la = &a->listeners[i];
        const struct sr_listener_config *lb = &b->listeners[i];

        CHECK(strcmp(la->name, lb->name) == 0 && la->name[0] != '\0');
        CHECK(la->line == lb->line && la->no_sni == lb->no_sni);
        CHECK(la->n_listen == lb->n_listen);
        for (j = 0; j < la->n_listen; j++) {
            CHECK(addr_eq(&la->listen[j], &lb->listen[j]));
            CHECK(la->listen[j].kind != SR_ADDR_NAME);
        }
        if (is_valid) {
            CHECK(la->n_listen >= 1);
            CHECK(la->routes == lb->routes && la->routes < a->n_routes);
        }
    }
    for (i = 0; i < a->n_routes; i++) {
        CHECK(strcmp(a->routes[i].name, b->routes[i].name) == 0);
        CHECK(sr_route_count(a->routes[i].table) == sr_route_count(b->routes[i].table));
        if (!is_valid) {
            continue; /* values of a failed load may be UINT32_MAX (a bad upstream) */
        }
        CHECK(sr_route_count(a->routes[i].table) >= 1);
        if (sr_route_lookup_default(a->routes[i].table, &hit) != SR_ROUTE_MISS) {
            CHECK(hit.kind == SR_ROUTE_DEFAULT && hit.value < a->n_upstreams);
        }
        check_lookup(a, b, i, "example.com");
        check_lookup(a, b, i, "www.example.com");
        check_lookup(a, b, i, "default");
        for (j = 0; j < a->n_upstreams; j++) {
            if (a->upstreams[j].addr.kind == SR_ADDR_NAME) {
                check_lookup(a, b, i, a->upstreams[j].addr.host);
            }
        }
    }
}

/* The input as one address and as one host name: the loader only hands these functions
 * what survived inih, so feed them raw bytes too. */
static void
fuzz_addr_name(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1);
    char norm[SR_NAME_MAX + 1];
    char text[SR_ADDR_HOST_MAX + 16];
    struct sr_addr addr;
    struct sr_addr again;
    size_t norm_len;
    int n;

    CHECK(copy != NULL);
    memcpy(copy, data, size);
    if (sr_addr_parse_listen(copy, size, &addr) == SR_ADDR_OK) {
        /* Formatting and parsing again gives the same address. */
        n = sr_addr_format(&addr, text, sizeof(text));
        CHECK(n > 0 && (size_t)n < sizeof(text));
        CHECK(sr_addr_parse_listen(text, (size_t)n, &again) == SR_ADDR_OK);
        CHECK(addr_eq(&addr, &again));
        CHECK((sr_addr_parse(copy, size, &again) == SR_ADDR_OK) == (addr.port != 0));
    }
    if (sr_name_normalize((const uint8_t *)copy, size, norm, &norm_len) == SR_NAME_OK) {
        CHECK(norm_len > 0 && norm_len <= SR_NAME_MAX && norm[norm_len] == '\0');
        CHECK(strlen(norm) == norm_len);
        CHECK(sr_name_validate((const uint8_t *)norm, norm_len) == SR_NAME_OK);
    } else {
        CHECK(sr_name_validate((const uint8_t *)copy, size) != SR_NAME_OK);
    }
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct messages ma = {NULL, 0, 0, count_lines(data, size)};
    struct messages mb = {NULL, 0, 0, ma.n_lines};
    struct sr_config a;
    struct sr_config b;
    size_t na;
    size_t nb;

    na = load(&a, data, size, &ma);
    nb = load(&b, data, size, &mb);
    CHECK(na == nb && ma.len == mb.len);
    CHECK(ma.len == 0 || memcmp(ma.text, mb.text, ma.len) == 0);
    check_same(&a, &b, na == 0);
    sr_config_fini(&a);
    sr_config_fini(&b);
    CHECK(a.listeners == NULL && a.routes == NULL && a.access_log == NULL);
    free(ma.text);
    free(mb.text);

    fuzz_addr_name(data, size);
    return 0;
}
