/* SPDX-License-Identifier: MIT */
/* The config loader's line reader in front of inih, and sr_config_load(). It reads in big
 * blocks, counts lines, refuses lines too long for inih's buffer and every line inih would
 * reject, and tracks sections itself (inih truncates their names and reports none). It
 * splits [routes] lines, maybe millions, itself, as inih would (see hand_over). It parses
 * no value: keys go to the keyword table (config_keys.c). Nothing is bound or resolved. */
#include "sniroute/config/config.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "sniroute/config/route.h"

#include "config_loader.h"

/* The reader below mirrors how inih classifies a line; it is written for these settings
 * (Debian's build of r55). A different build must be looked at, not silently misread. */
#if INI_HANDLER_LINENO || INI_ALLOW_NO_VALUE || INI_CALL_HANDLER_ON_NEW_SECTION ||                 \
    !INI_ALLOW_MULTILINE || !INI_ALLOW_INLINE_COMMENTS
#error "config_reader.c mirrors inih with multi-line values and inline comments on, nothing else"
#endif

/* The reader's read-ahead, in bytes: big enough that a multi-megabyte route map costs a
 * few hundred reads, small enough not to matter for a small config. */
#define READ_BLOCK (256u * 1024)

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
    char at[WHERE_MAX];
    const char *name;
    size_t kind_len;
    size_t name_len;
    size_t i;
    bool is_listener;
    bool is_upstream;

    sr__config_end_section(ld);
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
            report(ld, ld->line, "duplicate section [sniroute] (first at %s)",
                   where(ld, ld->sniroute_line, at, sizeof(at)));
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
                report(ld, ld->line, "duplicate upstream '%.*s' (first at %s)", (int)name_len, name,
                       where(ld, cfg->pools[i].line, at, sizeof(at)));
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
                report(ld, ld->line, "duplicate listener '%.*s' (first at %s)", (int)name_len, name,
                       where(ld, cfg->listeners[i].line, at, sizeof(at)));
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
            report(ld, ld->line, "duplicate routes '%.*s' (first at %s)", (int)name_len, name,
                   where(ld, cfg->routes[i].line, at, sizeof(at)));
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

/* ---- The reader ---- */

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

/* The lines of a [routes] section, the millions of a big route map, do not go through
 * inih: classify() splits them as inih would and calls the handler itself, then hands
 * inih a blank line. That saves inih's scan of each line again, a strchr() call per byte.
 * inih's state stays right: it saw the section header, so its previous key is "none",
 * and every continuation line in the section comes here too. */
static void
hand_over(struct loader *ld, char *str, const char *key, const char *value)
{
    sr__config_on_key(ld, NULL, key, value);
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
    if (*start == '[' && ld->is_included) {
        char label[LABEL_MAX];

        report(ld, ld->line,
               "%s: a section header in an included file (it holds route lines only: NAME = "
               "TARGET, comments, blank lines)",
               section_label(ld, label, sizeof(label)));
        ld->has_prev_key = false;
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
    if (ld->line == ld->first_pos && len >= 3 && memcmp(str, "\xEF\xBB\xBF", 3) == 0) {
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

bool
sr__config_read_included(struct loader *ld, FILE *fp)
{
    /* The including file's reader state: its read-ahead and inih's previous key. */
    FILE *outer_fp = ld->fp;
    char *outer_in = ld->in;
    size_t outer_pos = ld->in_pos;
    size_t outer_len = ld->in_len;
    unsigned outer_first = ld->first_pos;
    bool outer_has_prev = ld->has_prev_key;
    char outer_prev[INI_MAX_LINE];
    char str[INI_MAX_LINE];
    bool is_ok = true;

    memcpy(outer_prev, ld->prev_key, sizeof(outer_prev));
    ld->in = malloc(READ_BLOCK);
    if (ld->in == NULL) {
        ld->in = outer_in;
        report_oom(ld);
        return false;
    }
    ld->fp = fp;
    ld->in_pos = 0;
    ld->in_len = 0;
    ld->first_pos = ld->line + 1;
    ld->has_prev_key = false;
    ld->is_included = true;
    /* The same reader as for inih, with the same limit: every line is a route line (or a
     * problem), which classify() hands to the handler itself. */
    while (read_line(str, INI_MAX_LINE, ld) != NULL) {
    }
    if (ferror(fp)) {
        report(ld, 0, "read error: %s", strerror(errno));
        is_ok = false;
    }
    free(ld->in);
    ld->is_included = false;
    ld->is_continuation = false;
    ld->fp = outer_fp;
    ld->in = outer_in;
    ld->in_pos = outer_pos;
    ld->in_len = outer_len;
    ld->first_pos = outer_first;
    ld->has_prev_key = outer_has_prev;
    memcpy(ld->prev_key, outer_prev, sizeof(outer_prev));
    return is_ok;
}

/* Both entry points: <fp> is the open file, or NULL when opening <name> failed with
 * <open_errno> (the defaults still go into <cfg>, so the caller sees the same struct);
 * <open_errno> -1: a stream, which cannot include files. */
static size_t
load(struct sr_config *cfg, FILE *fp, int open_errno, const char *name, sr_config_error_fn on_error,
     void *ctx)
{
    struct loader ld;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    cfg->hello_timeout_ms = SR_CONFIG_HELLO_TIMEOUT_MS;
    cfg->connect_timeout_ms = SR_CONFIG_CONNECT_TIMEOUT_MS;
    cfg->idle_timeout_ms = SR_CONFIG_IDLE_TIMEOUT_MS;
    cfg->drain_timeout_ms = SR_CONFIG_DRAIN_TIMEOUT_MS;
    cfg->max_hello_size = SR_CONFIG_MAX_HELLO_SIZE;
    cfg->quic_idle_timeout_ms = SR_CONFIG_QUIC_IDLE_TIMEOUT_MS;
    cfg->max_quic_flows = SR_CONFIG_MAX_QUIC_FLOWS;
    cfg->max_quic_flows_per_ip = SR_CONFIG_MAX_QUIC_FLOWS_PER_IP;
    cfg->quic_hold_bytes = SR_CONFIG_QUIC_HOLD_BYTES;
    cfg->rate_limit_entries = SR_CONFIG_RATE_LIMIT_ENTRIES;
    cfg->workers = 1;

    memset(&ld, 0, sizeof(ld));
    ld.cfg = cfg;
    ld.path = name;
    ld.fp = fp;
    ld.on_error = on_error;
    ld.ctx = ctx;
    ld.sec = SEC_NONE;
    ld.first_pos = 1;
    ld.can_include = open_errno >= 0;

    cfg->access_log = strdup("stdout");
    if (cfg->access_log == NULL) {
        report_oom(&ld);
        return ld.n_errors;
    }
    if (fp == NULL) {
        report(&ld, 0, "cannot open: %s", strerror(open_errno));
        return ld.n_errors;
    }
    /* The table of files and spans: the main file from its line 1 (position = line). */
    cfg->files = malloc(sizeof(*cfg->files));
    cfg->spans = calloc(1, sizeof(*cfg->spans));
    if (cfg->files == NULL || cfg->spans == NULL || (cfg->files[0] = strdup(name)) == NULL) {
        report_oom(&ld);
        return ld.n_errors;
    }
    cfg->n_files = 1;
    cfg->n_spans = 1;
    ld.files_cap = 1;
    ld.spans_cap = 1;
    ld.in = malloc(READ_BLOCK);
    if (ld.in == NULL) {
        report_oom(&ld);
        return ld.n_errors;
    }
    rc = ini_parse_stream(read_line, &ld, sr__config_on_key, &ld);
    if (ferror(ld.fp)) {
        report(&ld, 0, "read error: %s", strerror(errno));
    } else if (rc != 0) {
        /* The reader hands inih only lines it accepts, so this means the mirror is wrong. */
        report(&ld, rc > 0 ? (unsigned)rc : 0, "syntax error");
    }
    sr__config_end_section(&ld);
    sr__config_finish(&ld);

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
    size_t n = load(cfg, fp, fp != NULL ? 0 : errno, path, on_error, ctx);

    if (fp != NULL) {
        fclose(fp);
    }
    return n;
}

size_t
sr_config_load_stream(struct sr_config *cfg, FILE *fp, const char *name,
                      sr_config_error_fn on_error, void *ctx)
{
    return load(cfg, fp, -1, name, on_error, ctx);
}
