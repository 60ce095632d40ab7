/* SPDX-License-Identifier: MIT */
/* Private to the config loader (src/config_*.c): no other module includes it. The loader's
 * state (struct loader), the grammar's types, and helpers every part uses: report() for each
 * "FILE:LINE: ..." message, grow(), section_label(). These are static inline, so the parts
 * share them under their short names and the library exports only sr__config_* besides. */
#ifndef SR_CONFIG_LOADER_H
#define SR_CONFIG_LOADER_H

#include "sniroute/config/config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "sniroute/config/addr.h"
#include "sniroute/wire/name.h"

/* The loader, in the order a file goes through it. inih splits lines into key/value pairs;
 * config_reader.c, in front of it, reads and counts the lines and refuses those inih would
 * misread or reject; config_keys.c dispatches each key through the keyword table to its
 * setter; config_routes.c holds the setter of [routes] keys and the route targets; after
 * the last line, config_check.c checks what needs the whole file. Every problem becomes
 * one "FILE:LINE: ..." message and loading always reads to the end. */

enum section_kind {
    SEC_NONE,     /* before the first section header */
    SEC_SNIROUTE, /* [sniroute] */
    SEC_LISTENER, /* [listener NAME] */
    SEC_ROUTES,   /* [routes NAME] */
    SEC_UPSTREAM, /* [upstream NAME] */
    SEC_SKIP,     /* a section already reported as wrong: its keys are ignored */
};

struct loader;

/* Room for a section label, as section_label() writes it. */
#define LABEL_MAX (SR_CONFIG_NAME_MAX + 16)

/* A route target naming [upstream NAME]: which target, which name, where first named. */
struct pool_ref {
    uint32_t upstream;
    char name[SR_CONFIG_NAME_MAX + 1];
    unsigned line;
    char where[LABEL_MAX + SR_NAME_MAX + 16]; /* "routes 'm': route 'x'", for the message */
};

/* One key of the grammar: sniproxy's struct Keyword, nginx's command arrays. */
struct keyword {
    enum section_kind section;
    const char *key; /* NULL: any key (the routes of a [routes] section) */
    void (*set)(struct loader *ld, const struct keyword *kw, const char *key, const char *value);
    size_t offset; /* in struct sr_config, for setters shared by several keys */
    bool is_repeatable;
};

/* What a [listener] section needs until the end of the file. */
struct listener_tmp {
    char routes[INI_MAX_LINE]; /* the name given by "routes =", resolved at the end */
    unsigned routes_line;      /* 0: no "routes =" yet */
    size_t listen_cap;
    size_t n_listen_keys; /* good or bad: "no listen address" only when there was none */
    /* Where keys that do not apply to protocol = quic were given (0: not given), checked
     * when the section ends, since protocol may come after them. */
    unsigned fallback_line;
    unsigned proxy_accept_line;
    unsigned max_connections_line;
};

/* What a [routes] section needs until the end of the file. Route values are upstream
 * indexes from the start; a duplicate finds the first one's line in the table's lines. */
struct routes_tmp {
    size_t n_keys; /* every key seen, good or bad */
};

/* A listen address and where it was first given, to refuse the same one twice. Listeners
 * have a handful of addresses, so a linear scan is fine. TCP (tls, http) and UDP (quic)
 * listeners may share an address: which one a listener is, is known when its section ends. */
struct listen_seen {
    struct sr_addr addr;
    unsigned line;
    size_t listener; /* index into cfg->listeners */
};

struct loader {
    struct sr_config *cfg;
    const char *path;
    FILE *fp;
    /* Read-ahead: the file is read in big blocks, not a byte or a stdio buffer at a time
     * (a route map may be tens of megabytes). Bytes [in_pos, in_len) are not consumed. */
    char *in;
    size_t in_pos;
    size_t in_len;
    sr_config_error_fn on_error;
    void *ctx;
    size_t n_errors;
    bool is_oom;

    /* Reader state: the line inih is working on, and our mirror of inih's own state. */
    unsigned line;
    bool is_continuation; /* inih will hand this line to the previous key */
    bool has_prev_key;    /* inih's prev_name is set */
    char prev_key[INI_MAX_LINE];

    /* The current section. */
    enum section_kind sec;
    size_t sec_index; /* into cfg->listeners or cfg->routes */
    unsigned seen[48];
    unsigned sniroute_line;

    size_t listeners_cap;
    struct listener_tmp *ltmp; /* parallel to cfg->listeners */
    size_t ltmp_cap;
    size_t routes_cap;
    struct routes_tmp *rtmp; /* parallel to cfg->routes */
    size_t rtmp_cap;
    struct listen_seen *listens;
    size_t n_listens;
    size_t listens_cap;

    size_t pools_cap;
    unsigned workers_line;    /* 0: workers not set */
    size_t *pool_servers_cap; /* parallel to cfg->pools */
    size_t pool_servers_cap_n;
    size_t trusted_cap_n;
    size_t *trusted_cap; /* parallel to cfg->listeners */
    /* Route targets that name a pool: the name, resolved at the end. */
    struct pool_ref *pool_refs;
    size_t n_pool_refs;
    size_t pool_refs_cap;

    /* Upstream set: open addressing over cfg->upstreams, slot = index + 1, 0 empty. */
    uint32_t *up_slots;
    /* The last target text interned and its index (see intern_target); length 0: none. */
    char last_target[INI_MAX_LINE];
    size_t last_target_len;
    uint32_t last_target_index;
    size_t up_slots_cap;
    size_t upstreams_cap;

    /* Includes (config_include.c). Positions: ld->line counts lines across every file
     * read (see struct sr_config_span); <first_pos> is the position of the current file's
     * first line. */
    bool can_include; /* false for a stream: it has no directory */
    bool is_included; /* reading an included file now */
    unsigned first_pos;
    size_t include_bytes; /* read through includes so far */
    size_t files_cap;
    size_t spans_cap;
    size_t includes_cap;
};

/* ---- Shared by every part of the loader ---- */

static inline void report(struct loader *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "FILE:LINE" of position <pos> (see struct sr_config_span), into <buf>. */
static inline const char *
where(const struct loader *ld, unsigned pos, char *buf, size_t cap)
{
    unsigned line;
    const char *file = sr_config_locate(ld->cfg, pos, &line, NULL);

    snprintf(buf, cap, "%s:%u", file != NULL ? file : ld->path, line);
    return buf;
}

/* Room for where()'s text. */
#define WHERE_MAX 4200

/* Format one problem at position <line> (0: the file as a whole) and hand it to the
 * caller. Bytes a terminal would act on (control characters from a damaged file) are
 * shown as '?'. */
static inline void
report(struct loader *ld, unsigned line, const char *fmt, ...)
{
    char msg[1024 + 4096 + WHERE_MAX];
    char at[WHERE_MAX];
    va_list ap;
    int n;
    char *p;

    n = line > 0 ? snprintf(msg, sizeof(msg), "%s: ", where(ld, line, at, sizeof(at)))
                 : snprintf(msg, sizeof(msg), "%s: ", ld->path);
    if (n < 0 || (size_t)n >= sizeof(msg)) {
        n = 0;
    }
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    for (p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
    ld->n_errors++;
    ld->on_error(ld->ctx, msg);
}

static inline void
report_oom(struct loader *ld)
{
    if (!ld->is_oom) {
        ld->is_oom = true;
        report(ld, ld->line, "out of memory");
    }
}

/* Grow <*arr> of <*cap> elements of <size> bytes to hold <need>; new elements zeroed. */
static inline bool
grow(struct loader *ld, void **arr, size_t *cap, size_t need, size_t size)
{
    size_t new_cap;
    void *p;

    if (need <= *cap) {
        return true;
    }
    new_cap = *cap ? *cap * 2 : 4;
    while (new_cap < need) {
        new_cap *= 2;
    }
    p = realloc(*arr, new_cap * size);
    if (p == NULL) {
        report_oom(ld);
        return false;
    }
    memset((char *)p + *cap * size, 0, (new_cap - *cap) * size);
    *arr = p;
    *cap = new_cap;
    return true;
}

/* "sniroute", "listener 'https'" or "routes 'main'": how messages name the section. */
static inline const char *
section_label(const struct loader *ld, char *buf, size_t cap)
{
    switch (ld->sec) {
    case SEC_LISTENER:
        snprintf(buf, cap, "listener '%s'", ld->cfg->listeners[ld->sec_index].name);
        break;
    case SEC_ROUTES:
        snprintf(buf, cap, "routes '%s'", ld->cfg->routes[ld->sec_index].name);
        break;
    case SEC_UPSTREAM:
        snprintf(buf, cap, "upstream '%s'", ld->cfg->pools[ld->sec_index].name);
        break;
    default:
        snprintf(buf, cap, "sniroute");
        break;
    }
    return buf;
}

static inline bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool
is_same_addr(const struct sr_addr *a, const struct sr_addr *b)
{
    return a->kind == b->kind && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Listener and routes names: [A-Za-z0-9_-]{1,63}, safe in a log line and a metric label. */
static inline bool
is_valid_section_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > SR_CONFIG_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

/* ---- Between the parts ---- */

/* The section being read ends (a new one starts, or the file ends): checks of a [listener]
 * section that need all its keys but nothing after it (config_check.c): a listen address
 * another listener of the same transport has, keys that do not apply to protocol = quic. */
void
sr__config_end_section(struct loader *ld);

/* The checks that need the whole file, once the reader has read it (config_check.c): every
 * listener has an address and a [routes] section that exists, options that need each other
 * come together, pools have servers and every pool a route names exists.
 * Reports problems; the file-level ones with line 0. */
void
sr__config_finish(struct loader *ld);

/* A route target as a value names it: HOST:PORT, or a bare name for an [upstream NAME]
 * pool, which may come later in the file (config_routes.c). <key> and <is_route> say who
 * named it, for messages. Returns its index in cfg->upstreams, or UINT32_MAX after
 * reporting a bad address (or running out of memory). */
uint32_t
sr__config_intern_target(struct loader *ld, const char *value, const char *key, bool is_route);

/* The setter of "include = PATH" in a [routes] section: reads the route lines of the
 * file, or of every file a glob matches, through sr__config_read_included()
 * (config_include.c). */
void
sr__config_set_include(struct loader *ld, const struct keyword *kw, const char *key,
                       const char *value);

/* Read the lines of the included file <fp> (open, positioned at its start) as lines of the
 * current [routes] section, then give the reader back its state for the including file
 * (config_reader.c). Problems are reported at their positions. Returns false on a read
 * error (reported). */
bool
sr__config_read_included(struct loader *ld, FILE *fp);

/* The setter of every key of a [routes] section: NAME, *.SUFFIX, default or NAME[ALPN],
 * added to its table with the line it came from (config_routes.c). */
void
sr__config_set_route(struct loader *ld, const struct keyword *kw, const char *key,
                     const char *value);

/* inih's handler, which the reader also calls itself for the lines of [routes] sections:
 * refuses a key outside any section, a repeated key, an unknown key, and dispatches the
 * rest through the keyword table (config_keys.c). Returns 1: problems are reported here,
 * inih must not count them again. */
int
sr__config_on_key(void *user, const char *section, const char *key, const char *value);

#endif
