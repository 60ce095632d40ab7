/* SPDX-License-Identifier: MIT */
/* The config loader's "include = PATH" in [routes NAME] sections: PATH made relative to the
 * main file's directory, a glob in its file name expanded (matches in strcmp order), the
 * bounds (files, bytes), the table of files and spans that positions are located by, and
 * sr_config_locate(). Not here: reading the included lines (config_reader.c reads them with
 * the reader of the main file, so the same line rules and messages apply) or what a route
 * line means (config_routes.c). Includes do not nest: nothing can form a cycle. */
#include "sniroute/config/config.h"

#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_loader.h"

const char *
sr_config_locate(const struct sr_config *cfg, unsigned pos, unsigned *line, size_t *file)
{
    const struct sr_config_span *s;
    size_t lo = 0;
    size_t hi = cfg->n_spans;

    if (file != NULL) {
        *file = 0;
    }
    if (cfg->n_spans == 0 || cfg->n_files == 0) {
        *line = pos;
        return NULL;
    }
    /* The last span that starts at or before <pos>; spans[0] starts at 0. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (cfg->spans[mid].pos <= pos) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    s = &cfg->spans[lo];
    *line = s->line + (pos - s->pos);
    if (file != NULL) {
        *file = s->file;
    }
    return cfg->files[s->file];
}

static bool
has_wildcard(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[') {
            return true;
        }
    }
    return false;
}

/* From the next position on, lines are file <file>'s from its line <line>. A span that
 * would start where the last one does (the last file had no line) replaces it. */
static bool
push_span(struct loader *ld, uint32_t file, uint32_t line)
{
    struct sr_config *cfg = ld->cfg;
    uint32_t pos = ld->line + 1;

    if (cfg->n_spans > 1 && cfg->spans[cfg->n_spans - 1].pos == pos) {
        cfg->n_spans--;
    }
    if (!grow(ld, (void **)&cfg->spans, &ld->spans_cap, cfg->n_spans + 1, sizeof(*cfg->spans))) {
        return false;
    }
    cfg->spans[cfg->n_spans].pos = pos;
    cfg->spans[cfg->n_spans].file = file;
    cfg->spans[cfg->n_spans].line = line;
    cfg->n_spans++;
    return true;
}

/* Read the file <path> for include number <inc>, whose line is at position <pos>. */
static void
include_file(struct loader *ld, size_t inc, const char *path, unsigned pos)
{
    struct sr_config *cfg = ld->cfg;
    char label[LABEL_MAX];
    struct stat st;
    size_t outer_file;
    unsigned outer_line;
    FILE *fp;

    section_label(ld, label, sizeof(label));
    if (cfg->n_files > SR_CONFIG_INCLUDE_FILES_MAX) {
        report(ld, pos, "%s: include: more than %u included files (a glob matching too much?)",
               label, SR_CONFIG_INCLUDE_FILES_MAX);
        return;
    }
    fp = fopen(path, "r");
    if (fp == NULL) {
        report(ld, pos, "%s: include: cannot open '%s': %s", label, path, strerror(errno));
        return;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        report(ld, pos, "%s: include: '%s' is not a regular file", label, path);
        fclose(fp);
        return;
    }
    if ((uint64_t)st.st_size > SR_CONFIG_INCLUDE_BYTES_MAX - ld->include_bytes) {
        report(ld, pos, "%s: include: '%s' would make more than %u MiB of included files", label,
               path, SR_CONFIG_INCLUDE_BYTES_MAX >> 20);
        fclose(fp);
        return;
    }
    ld->include_bytes += (size_t)st.st_size;
    if (!grow(ld, (void **)&cfg->files, &ld->files_cap, cfg->n_files + 1, sizeof(*cfg->files)) ||
        (cfg->files[cfg->n_files] = strdup(path)) == NULL) {
        report_oom(ld);
        fclose(fp);
        return;
    }
    cfg->n_files++;
    cfg->includes[inc].n_files++;
    sr_config_locate(cfg, pos, &outer_line, &outer_file);
    if (push_span(ld, (uint32_t)cfg->n_files - 1, 1)) {
        sr__config_read_included(ld, fp);
        /* The including file goes on after the include line. */
        push_span(ld, (uint32_t)outer_file, outer_line + 1);
    }
    fclose(fp);
}

static int
cmp_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void
sr__config_set_include(struct loader *ld, const struct keyword *kw, const char *key,
                       const char *value)
{
    struct sr_config *cfg = ld->cfg;
    struct sr_config_include *inc;
    const char *slash = strrchr(ld->path, '/');
    size_t dir_len = (value[0] != '/' && slash != NULL) ? (size_t)(slash - ld->path) + 1 : 0;
    size_t len = strlen(value);
    unsigned pos = ld->line; /* of the include line; ld->line moves on as files are read */
    char label[LABEL_MAX];
    const char *base;
    char *pattern;
    char *dir;
    glob_t g;
    size_t i;
    int rc;

    (void)kw;
    (void)key;
    section_label(ld, label, sizeof(label));
    if (!ld->can_include) {
        report(ld, ld->line, "%s: include: not available for a config read from a stream", label);
        return;
    }
    if (ld->is_included) {
        report(ld, ld->line, "%s: include in an included file (includes do not nest)", label);
        return;
    }
    if (len == 0) {
        report(ld, ld->line, "%s: include: empty value", label);
        return;
    }
    pattern = malloc(dir_len + len + 1);
    if (pattern == NULL) {
        report_oom(ld);
        return;
    }
    memcpy(pattern, ld->path, dir_len);
    memcpy(pattern + dir_len, value, len + 1);
    base = strrchr(pattern, '/');
    base = base != NULL ? base + 1 : pattern;
    /* Only the file name may be a glob: then the directory to watch is known. */
    if (has_wildcard(pattern, (size_t)(base - pattern))) {
        report(ld, ld->line, "%s: include '%s': a wildcard is allowed in the file name only", label,
               value);
        free(pattern);
        return;
    }
    if (base == pattern) {
        dir = strdup(".");
    } else {
        dir = strndup(pattern, base - pattern > 1 ? (size_t)(base - pattern) - 1 : 1);
    }
    if (dir == NULL || !grow(ld, (void **)&cfg->includes, &ld->includes_cap, cfg->n_includes + 1,
                             sizeof(*cfg->includes))) {
        report_oom(ld);
        free(dir);
        free(pattern);
        return;
    }
    inc = &cfg->includes[cfg->n_includes];
    inc->pattern = pattern;
    inc->dir = dir;
    inc->line = ld->line;
    inc->routes = ld->sec_index;
    inc->n_files = 0;
    inc->is_glob = has_wildcard(base, strlen(base));
    cfg->n_includes++;
    if (!inc->is_glob) {
        include_file(ld, cfg->n_includes - 1, pattern, pos);
        return;
    }
    rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        return; /* fine: lint says so */
    }
    if (rc == GLOB_NOSPACE) {
        report_oom(ld);
    } else if (rc != 0) {
        report(ld, pos, "%s: include '%s': cannot read the directory", label, value);
    } else {
        /* glob() sorts by the locale; the order routes are read in must not depend on it. */
        qsort(g.gl_pathv, g.gl_pathc, sizeof(*g.gl_pathv), cmp_text);
        for (i = 0; i < g.gl_pathc; i++) {
            include_file(ld, cfg->n_includes - 1, g.gl_pathv[i], pos);
        }
    }
    globfree(&g);
}

/* FNV-1a over <len> bytes of <p>, continuing from <h>. */
static uint64_t
hash_bytes(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}

/* Hash the name and bytes of <path> into <*h>; false if it cannot be read. */
static bool
hash_file(uint64_t *h, const char *path)
{
    char buf[65536];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        return false;
    }
    *h = hash_bytes(*h, path, strlen(path) + 1);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        *h = hash_bytes(*h, buf, n);
    }
    fclose(f);
    return true;
}

uint64_t
sr_config_sources_hash(const struct sr_config *cfg, const char *path)
{
    uint64_t h = 14695981039346656037ull;
    glob_t g;
    size_t i;
    size_t j;

    if (!hash_file(&h, path)) {
        return 0;
    }
    for (i = 0; i < cfg->n_includes; i++) {
        const struct sr_config_include *inc = &cfg->includes[i];

        if (!inc->is_glob) {
            if (!hash_file(&h, inc->pattern)) {
                h = hash_bytes(h, "-", 1); /* gone: differs from any content */
            }
            continue;
        }
        if (glob(inc->pattern, 0, NULL, &g) != 0) {
            h = hash_bytes(h, "0", 1); /* matches nothing (now) */
            continue;
        }
        qsort(g.gl_pathv, g.gl_pathc, sizeof(*g.gl_pathv), cmp_text);
        for (j = 0; j < g.gl_pathc; j++) {
            if (!hash_file(&h, g.gl_pathv[j])) {
                h = hash_bytes(h, "-", 1);
            }
        }
        globfree(&g);
    }
    return h != 0 ? h : 1;
}
